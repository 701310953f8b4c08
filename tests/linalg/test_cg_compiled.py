"""The compiled whole-loop CG on the Wilson normal operator (backends/_numba_cg.py, ``WilsonDirac.normal_solver``).

Oracle: the Python loop of :func:`latticekit.linalg.cg` on the same operator (``WilsonDirac.normal``,
``EvenOddDirac.normal``), which the rest of the suite checks against dense matrices. Both run the same
iteration, so after a fixed number of steps their iterates agree to round-off (1e-12 relative: a few
CG steps on the float64 sums of up to 10^4 products, reordered), and a converged solve takes the same
number of iterations per chain (the residual ratios stay 1e-10 away from a tie). Also checked: start
vectors, sources broadcast over a gauge batch, a zero right-hand side, ``maxiter`` failures reported
like the loop's, the caller's arrays untouched, a chain's result independent of its batch, and the
cases the kernel declines.
"""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.actions import EvenOddDirac, WilsonDirac, solve_normal
from latticekit.backends import _numba_cg as kc
from latticekit.linalg import ConvergenceError, cg
from latticekit.testing import assert_close

pytest.importorskip("numba", reason="the compiled CG needs numba (pip install latticekit[fast])")

RTOL = 1e-12

CASES = [  # group, lattice, kappa: the 2D U(1) kernel, the row kernel (2D SU(3), 4D; odd extent 2D U(1))
    ("U1", (8, 8), 0.24),
    ("U1", (4, 6), 0.2),
    ("U1", (3, 4), 0.2),
    ("SU3", (4, 4), 0.2),
    ("SU2", (2, 4, 2, 4), 0.12),
    ("SU3", (4, 2, 2, 4), 0.12),
    ("U1", (4, 4, 2, 2), 0.12),
]


@pytest.fixture(autouse=True)
def _fast_on(monkeypatch):
    monkeypatch.delenv("LATTICEKIT_FAST_KERNELS", raising=False)


def _op(group, shape, kappa, batch=(2,), seed=3):
    g = lk.U1 if group == "U1" else lk.SU(int(group[2:]))
    lat = lk.Lattice(shape)
    rng = backends.rng(seed)
    U = g.random(rng, batch + (lat.nd,), lat.shape)
    return WilsonDirac(U, g, lat, kappa=kappa), rng


def _pair(A, b, fused, **kw):
    """The compiled and the Python-loop solve of the same system."""
    assert fused is not None
    got = cg(A, b, fused=fused, **kw)
    want = cg(A, b, **kw)
    return got, want


@pytest.mark.parametrize("mu", [0.0, 0.3])
@pytest.mark.parametrize("group,shape,kappa", CASES)
def test_compiled_cg_matches_the_loop(group, shape, kappa, mu):
    D, rng = _op(group, shape, kappa)
    b = D.random_field(rng, (3, 2))                    # 3 sources on each of 2 configurations
    A = lambda v: D.normal(v, mu)  # noqa: E731
    # a fixed number of steps: the iterates themselves
    (x1, i1), (x2, i2) = _pair(A, b, D.normal_solver(mu), tol=1e-14, maxiter=5, batch_ndim=2, raise_on_failure=False)
    assert_close(x1, x2, rtol=0, atol=RTOL * np.abs(x2).max())
    assert i1.iterations.tolist() == i2.iterations.tolist() == [[5, 5]] * 3
    assert_close(i1.residual, i2.residual, rtol=1e-9)
    # converged solves: same iteration counts, true residual below tol
    (x1, i1), (x2, i2) = _pair(A, b, D.normal_solver(mu), tol=1e-11, batch_ndim=2)
    assert i1.iterations.tolist() == i2.iterations.tolist()
    assert bool(np.all(i1.converged)) and float(np.max(i1.residual)) < 2e-11
    assert_close(x1, x2, rtol=0, atol=1e-8 * np.abs(x2).max())


@pytest.mark.parametrize("mu", [0.0, 0.2])
@pytest.mark.parametrize("group,shape,kappa", [c for c in CASES if all(n % 2 == 0 for n in c[1])])
def test_compiled_even_odd_cg_matches_the_loop(group, shape, kappa, mu):
    D, rng = _op(group, shape, kappa)
    E = EvenOddDirac(D)
    A = lambda v: E.normal(v, mu)  # noqa: E731
    b = D.random_field(rng, (2,))                      # NOT restricted to even sites: the operator projects
    (x1, i1), (x2, i2) = _pair(A, b, E.normal_solver(mu), tol=1e-14, maxiter=6, batch_ndim=1, raise_on_failure=False)
    assert_close(x1, x2, rtol=0, atol=RTOL * np.abs(x2).max())
    be = E.mask(b)
    (x1, i1), (x2, i2) = _pair(A, be, E.normal_solver(mu), tol=1e-11, batch_ndim=1)
    assert i1.iterations.tolist() == i2.iterations.tolist()
    assert float(np.abs(E.odd(x1)).max()) == 0.0       # the solution stays on the even sites
    assert_close(x1, x2, rtol=0, atol=1e-8 * np.abs(x2).max())


def test_start_vector_and_unbatched_call():
    D, rng = _op("U1", (6, 6), 0.22, batch=())
    b = D.random_field(rng)
    x0 = D.random_field(rng)
    x0_copy, b_copy = x0.copy(), b.copy()
    (x1, i1), (x2, i2) = _pair(D.normal, b, D.normal_solver(), x0=x0, tol=1e-14, maxiter=4,
                               raise_on_failure=False)
    assert_close(x1, x2, rtol=0, atol=RTOL * np.abs(x2).max())
    assert i1.iterations.shape == () and int(i1.iterations) == 4
    assert np.array_equal(x0, x0_copy) and np.array_equal(b, b_copy)   # the caller's arrays untouched
    # from the solution itself: converged before the first step
    xs, _ = cg(D.normal, b, tol=1e-12, fused=D.normal_solver())
    x, info = cg(D.normal, b, x0=xs, tol=1e-8, fused=D.normal_solver())
    assert bool(info.converged) and int(info.iterations) == 0


def test_zero_source_and_batch_independence():
    D, rng = _op("SU3", (4, 4), 0.2, batch=(3,))
    b = D.random_field(rng)
    b[1] = 0.0
    x, info = cg(D.normal, b, tol=1e-12, batch_ndim=1, fused=D.normal_solver())
    assert info.converged.tolist() == [True, True, True] and int(info.iterations[1]) == 0
    assert float(np.abs(x[1]).max()) == 0.0
    # chain 2 solved alone on its configuration: bit-identical (sequential sums over the chain)
    D2 = WilsonDirac(D.U[2:3], D.group, D.lattice, kappa=D.kappa)
    x2, _ = cg(D2.normal, b[2:3], tol=1e-12, batch_ndim=1, fused=D2.normal_solver())
    assert np.array_equal(x2[0], x[2])


def test_maxiter_failure_is_reported_like_the_loop():
    D, rng = _op("U1", (8, 8), 0.24)
    b = D.random_field(rng)
    with pytest.raises(ConvergenceError, match="maxiter=3") as e1:
        cg(D.normal, b, tol=1e-12, maxiter=3, batch_ndim=1, fused=D.normal_solver())
    with pytest.raises(ConvergenceError, match="maxiter=3") as e2:
        cg(D.normal, b, tol=1e-12, maxiter=3, batch_ndim=1)
    assert_close(e1.value.info.residual, e2.value.info.residual, rtol=1e-9)
    assert e1.value.info.iterations.tolist() == [3, 3]


def test_wrong_batch_ndim_is_named():
    D, rng = _op("U1", (4, 4), 0.2)
    b = D.random_field(rng)                              # two chains
    with pytest.raises(ValueError, match="batch_ndim=0"):
        cg(D.normal, b, tol=1e-10, fused=D.normal_solver())


def test_solve_normal_uses_the_compiled_loop(monkeypatch):
    D, rng = _op("U1", (4, 4), 0.2)
    b = D.random_field(rng)
    calls = []
    real = kc.wilson_normal_cg
    monkeypatch.setitem(backends._fast._REGISTRY, ("wilson_normal_cg", "numpy"),
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    x, info = solve_normal(D, b, 0.1, tol=1e-12)
    assert calls == [1]
    assert_close(D.normal(x, 0.1), b, rtol=0, atol=1e-10 * np.abs(b).max())
    x, info = EvenOddDirac(D).solve(b, tol=1e-12)
    assert calls == [1, 1]
    assert_close(D.apply(x), b, rtol=0, atol=1e-9 * np.abs(b).max())


def test_declines_what_it_does_not_handle(monkeypatch):
    D, rng = _op("U1", (4, 6), 0.2)
    links = D._links_for_kernels()
    gam = D._gam
    b = D.random_field(rng)
    assert kc.wilson_normal_cg(b.astype(np.complex64), links, gam, 0.2, 0.0) is None       # precision
    assert kc.wilson_normal_cg(np.asfortranarray(b), links, gam, 0.2, 0.0) is None         # memory order
    assert kc.wilson_normal_cg(b, links, gam, 0.2, 0.0, x0=b[..., :3]) is None              # x0 shape
    assert kc.wilson_normal_cg(b[..., :3], links, gam, 0.2, 0.0) is None                     # lattice
    D3, _ = _op("U1", (3, 4), 0.2)
    assert kc.wilson_normal_cg(D3.random_field(rng), D3._links_for_kernels(), gam, 0.2, 0.0, even_odd=True) is None
    monkeypatch.setenv("LATTICEKIT_FAST_KERNELS", "0")
    assert D.normal_solver() is None
    with pytest.raises(ValueError, match="mu"):
        D.normal_solver(-1.0)


def test_every_backend_solves_and_numpy_and_torch_cpu_have_the_compiled_loop(bk):
    D, rng = _op("U1", (4, 4), 0.2)
    b = D.random_field(rng)
    want, _ = solve_normal(D, b, 0.1, tol=1e-12)
    Db = WilsonDirac(bk.asarray(D.U), D.group, D.lattice, kappa=D.kappa)
    solver = Db.normal_solver(0.1)
    bb = bk.asarray(b)
    compiled = bk.name == "numpy" or (bk.name == "torch" and bb.device.type == "cpu")
    assert (solver is not None and solver(bb, None, 1e-12, 100) is not None) == compiled
    got, info = solve_normal(Db, bb, 0.1, tol=1e-12)
    assert bool(info.all_converged)
    assert_close(bk.to_numpy(got), want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_torch_autograd_through_the_solve_declines_the_compiled_loop():
    """A solve that autograd must see runs the differentiable Python loop: d/db of Re<c, A^{-1} b> is A^{-1} c."""
    torch = pytest.importorskip("torch")
    D, rng = _op("U1", (4, 4), 0.2, batch=())
    Dt = WilsonDirac(torch.from_numpy(D.U), D.group, D.lattice, kappa=D.kappa)
    b = torch.from_numpy(D.random_field(rng)).requires_grad_(True)
    c = torch.from_numpy(D.random_field(rng))
    assert Dt.normal_solver()(b, None, 1e-12, 100) is None
    with torch.no_grad():
        assert Dt.normal_solver()(b, None, 1e-12, 100) is not None
    x, _ = solve_normal(Dt, b, tol=1e-13)
    (torch.conj(c) * x).sum().real.backward()
    want, _ = solve_normal(D, c.numpy(), tol=1e-13)    # A Hermitian: d Re<c, A^{-1} b> / d b* = A^{-1} c
    assert_close(b.grad.numpy(), want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_threads_do_not_change_a_chain():
    """prange over chains: with 1 or 2 threads every chain's iterates are bit-identical (sequential sums per chain)."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread (NUMBA_NUM_THREADS=1): nothing to compare")
    D, rng = _op("SU2", (2, 4, 2, 4), 0.12, batch=(5,))
    b = D.random_field(rng)
    nt = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        x1, i1 = cg(D.normal, b, tol=1e-11, batch_ndim=1, fused=D.normal_solver())
        numba.set_num_threads(2)
        x2, i2 = cg(D.normal, b, tol=1e-11, batch_ndim=1, fused=D.normal_solver())
    finally:
        numba.set_num_threads(nt)
    assert np.array_equal(x1, x2) and i1.iterations.tolist() == i2.iterations.tolist()
