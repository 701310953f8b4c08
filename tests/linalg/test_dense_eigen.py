"""Dense operator matrices, log-determinants, Lanczos/power-iteration eigenvalue estimates."""

import functools
import warnings

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac
from latticekit.linalg import (
    EigenvalueConvergenceWarning,
    condition_number,
    dense_matrix,
    eigvalsh_dense,
    extremal_eigenvalues,
    lanczos,
    logdet_normal,
    power_iteration,
    slogdet_dense,
)
from latticekit.testing import assert_close


def test_dense_matrix_roundtrip(bk):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(2, 6, 6)) + 1j * rng.normal(size=(2, 6, 6))
    Ab = bk.asarray(A)
    xp = bk.xp

    def op(v):  # vectors of shape (2, 3); operator batch (2,)
        k = v.shape[0]
        w = xp.matmul(Ab, xp.reshape(v, (k, 1, 6, 1)))
        return xp.reshape(w, (k, 2, 2, 3))

    M = dense_matrix(op, (2, 3), like=Ab, batch_shape=(2,), chunk=4)
    assert_close(bk.to_numpy(M), A, rtol=1e-5, atol=1e-8)
    # support restricts rows and columns
    sup = bk.asarray(np.array([[True, False, True], [False, True, False]]))
    Ms = dense_matrix(op, (2, 3), like=Ab, batch_shape=(2,), support=sup)
    idx = [0, 2, 4]
    assert_close(bk.to_numpy(Ms), A[:, idx][:, :, idx], rtol=1e-5, atol=1e-8)
    _, logabs = np.linalg.slogdet(A)
    _, l = slogdet_dense(op, (2, 3), like=Ab, batch_shape=(2,))
    assert_close(bk.to_numpy(l), logabs, rtol=1e-12, atol=1e-8)
    assert_close(bk.to_numpy(logdet_normal(op, (2, 3), like=Ab, batch_shape=(2,))), 2 * logabs, rtol=1e-12, atol=1e-8)


def test_dense_matrix_errors():
    with pytest.raises(ValueError, match="shape="):
        dense_matrix(lambda v: v)
    with pytest.raises(TypeError, match="op"):
        dense_matrix(3)


def test_lanczos_and_power_iteration(bk):
    rng = np.random.default_rng(1)
    n = 40
    q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
    ev = np.linspace(0.1, 5.0, n)
    A = (q * ev) @ q.conj().T
    Ab = bk.asarray(A)
    op = lambda v: bk.xp.matmul(Ab, v[..., None])[..., 0]  # noqa: E731
    v0 = bk.asarray(rng.normal(size=n) + 0j)
    ritz = bk.to_numpy(lanczos(op, v0, n))
    assert_close(np.sort(ritz.real), ev, rtol=1e-5, atol=1e-8)
    lo, hi = extremal_eigenvalues(op, (n,), like=Ab, method="lanczos", k=n)
    assert_close(float(bk.to_numpy(lo)), 0.1, rtol=0, atol=1e-8)
    assert_close(float(bk.to_numpy(hi)), 5.0, rtol=0, atol=1e-8)
    lo, hi = extremal_eigenvalues(op, (n,), like=Ab, method="dense")
    assert_close(float(bk.to_numpy(hi / lo)), 50.0, rtol=1e-10, atol=0)
    assert_close(float(bk.to_numpy(power_iteration(op, v0, 400))), 5.0, rtol=1e-3, atol=0)
    with pytest.raises(ValueError, match="method"):
        extremal_eigenvalues(op, (n,), like=Ab, method="magic")


def test_lanczos_restart_on_invariant_subspace(bk):
    """Degenerate spectrum: the Krylov space closes early; restarts still give all eigenvalues."""
    A = bk.asarray(np.diag([1.0, 1.0, 1.0, 3.0, 3.0]).astype(complex))
    op = lambda v: bk.xp.matmul(A, v[..., None])[..., 0]  # noqa: E731
    ritz = bk.to_numpy(lanczos(op, bk.asarray(np.ones(5, dtype=complex)), 5))
    assert_close(np.sort(ritz.real), [1, 1, 1, 3, 3], rtol=1e-5, atol=1e-10)


def test_condition_number_of_dirac_normal_batched(bk):
    lat = lk.Lattice((4, 4))
    U = lk.U1.random(bk.rng(0), (2, 2), lat.shape)
    D = WilsonDirac(U, lk.U1, lat, kappa=0.22)
    dense = bk.to_numpy(condition_number(D.normal, D.field_shape, like=U, batch_shape=D.batch_shape, method="dense"))
    lz = bk.to_numpy(condition_number(D.normal, D.field_shape, like=U, batch_shape=D.batch_shape, method="lanczos",
                                      k=32))
    assert dense.shape == (2,)
    assert_close(lz, dense, rtol=1e-6, atol=1e-8)
    ev = bk.to_numpy(eigvalsh_dense(D.normal, D.field_shape, like=U, batch_shape=(2,)))
    assert_close(dense, ev[:, -1] / ev[:, 0], rtol=1e-5, atol=1e-8)


_LANCZOS_LAT = lk.Lattice((28, 28))   # 2 * 784 = 1568 complex unknowns: just above DENSE_LIMIT = 1536


@functools.lru_cache(maxsize=1)
def _lanczos_case():
    """A rough U(1) field (angles halved) at kappa = 0.26 and its exact condition number (dense, NumPy, ~2 s)."""
    from latticekit.actions import dirac_dense_matrix
    from latticekit.actions.dirac import gamma5_matrix

    U = 0.5 * lk.gauge.random_gauge_field(lk.U1, _LANCZOS_LAT, lk.backends.rng(3), batch_shape=(1,))
    D = WilsonDirac(U, lk.U1, _LANCZOS_LAT, kappa=0.26)
    M = np.asarray(dirac_dense_matrix(D))[0]
    g5 = np.broadcast_to(np.real(np.diag(gamma5_matrix(2))).reshape(2, 1, 1, 1), D.field_shape).ravel()
    ev = np.abs(np.linalg.eigvalsh(g5[:, None] * M))   # gamma5 D is Hermitian: eig(D D^dag) = eig(gamma5 D)^2
    return U, (ev.max() / ev.min()) ** 2


def test_lanczos_converges_above_dense_limit(bk):
    """Lanczos extends the chain until the extremal Ritz residuals meet tol (the fixed 60-80 steps gave
    kappa-dependent underestimates: 15% low on a thermalised 32x32 field); ~3 s with the dense reference."""
    U, exact = _lanczos_case()
    D = WilsonDirac(bk.asarray(U), lk.U1, _LANCZOS_LAT, kappa=0.26)
    assert 2 * _LANCZOS_LAT.volume > lk.linalg.eigen.DENSE_LIMIT
    with warnings.catch_warnings():
        warnings.simplefilter("error", EigenvalueConvergenceWarning)
        cond = condition_number(D.normal, D.field_shape, like=D.like, batch_shape=D.batch_shape)
    assert_close(bk.to_numpy(cond), np.array([exact]), rtol=1e-5, atol=0)
    with pytest.warns(EigenvalueConvergenceWarning, match=r"maxiter=30 steps: lambda_min \(chain \(0,\)\)"):
        condition_number(D.normal, D.field_shape, like=D.like, batch_shape=D.batch_shape, k=20, maxiter=30)


def test_even_odd_dense_limit_counts_support(bk):
    """Even/odd acts on half the sites: 28x28 U(1) has 784 unknowns, so "auto" is the exact dense path
    (it compared prod(field_shape) = 1568 with the limit and ran Lanczos)."""
    from latticekit.actions.even_odd import EvenOddDirac
    from latticekit.observables import dirac_condition_number

    U = lk.U1.random(bk.rng(4), (1, 2), _LANCZOS_LAT.shape)
    E = EvenOddDirac(WilsonDirac(U, lk.U1, _LANCZOS_LAT, kappa=0.24))
    assert_close(bk.to_numpy(dirac_condition_number(E)), bk.to_numpy(dirac_condition_number(E, method="dense")),
                 rtol=1e-12, atol=0)


def test_lanczos_options_accept_numpy_integers(bk):
    A = bk.asarray(np.diag(np.linspace(0.5, 3.0, 20)).astype(complex))
    op = lambda v: bk.xp.matmul(A, v[..., None])[..., 0]  # noqa: E731
    lo, hi = extremal_eigenvalues(op, (20,), like=A, method="lanczos", k=np.int64(20), maxiter=np.int32(20))
    assert_close(float(bk.to_numpy(hi / lo)), 6.0, rtol=1e-8, atol=0)
    for kw, match in [({"k": 0}, "k: expected a positive integer"), ({"k": True}, "k: expected"),
                      ({"maxiter": 2.5}, "maxiter: expected a positive integer"),
                      ({"tol": float("nan")}, "tol: expected a finite positive")]:
        with pytest.raises(ValueError, match=match):
            extremal_eigenvalues(op, (20,), like=A, method="lanczos", **kw)
