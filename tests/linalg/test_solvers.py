"""Batched Krylov solvers: against dense solves, per-chain convergence and failure reporting."""

import numpy as np
import pytest

from latticekit.linalg import ConvergenceError, bicgstab, cg, cgne, cgnr, inner, norm2
from latticekit.testing import assert_close


def _hpd(rng, nb, n, cond):
    """Batch of random HPD matrices with condition numbers ``cond[b]``."""
    out = []
    for b in range(nb):
        q, _ = np.linalg.qr(rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n)))
        ev = np.geomspace(1.0, cond[b], n)
        out.append((q * ev) @ q.conj().T)
    return np.stack(out)


def _matop(bk, A):
    Ab = bk.asarray(A)
    xp = bk.xp
    return lambda v: xp.matmul(Ab, v[..., None])[..., 0]


def test_cg_against_dense_solve(bk):
    rng = np.random.default_rng(0)
    A = _hpd(rng, 3, 12, [1.0, 10.0, 1e3])
    b = rng.normal(size=(3, 12)) + 1j * rng.normal(size=(3, 12))
    x, info = cg(_matop(bk, A), bk.asarray(b), tol=1e-12, batch_ndim=1)
    ref = np.linalg.solve(A, b[..., None])[..., 0]
    assert_close(bk.to_numpy(x), ref, rtol=1e-5, atol=1e-9)
    conv = bk.to_numpy(info.converged)
    its = bk.to_numpy(info.iterations)
    assert conv.tolist() == [True, True, True]
    # per-chain iteration counts: A = identity converges in one step, harder chains need more
    assert its[0] == 1 and its[2] > its[1] > 1
    assert_close(info.residual, 0.0, rtol=0, atol=1e-10)  # relative residual norms: all below 1e-10


def test_converged_chains_freeze(bk):
    """A chain that converged early keeps its solution while the others iterate."""
    rng = np.random.default_rng(1)
    A = _hpd(rng, 2, 10, [1.0, 1e4])
    b = rng.normal(size=(2, 10)) + 0j
    x, info = cg(_matop(bk, A), bk.asarray(b), tol=1e-12, batch_ndim=1)
    x0, _ = cg(_matop(bk, A[:1]), bk.asarray(b[:1]), tol=1e-12, batch_ndim=1)
    assert np.array_equal(bk.to_numpy(x)[0], bk.to_numpy(x0)[0])


def test_convergence_error_names_chains(bk):
    rng = np.random.default_rng(2)
    A = _hpd(rng, 3, 30, [1.0, 1e6, 1e6])
    b = rng.normal(size=(3, 30)) + 0j
    with pytest.raises(ConvergenceError, match=r"2 chain\(s\): chain \(1,\)") as exc:
        cg(_matop(bk, A), bk.asarray(b), tol=1e-12, maxiter=5, batch_ndim=1)
    info = exc.value.info
    assert bk.to_numpy(info.converged).tolist() == [True, False, False]
    assert [i for i, _ in info.failed()] == [(1,), (2,)]
    x, info = cg(_matop(bk, A), bk.asarray(b), tol=1e-12, maxiter=5, batch_ndim=1, raise_on_failure=False)
    assert bk.to_numpy(info.converged).tolist() == [True, False, False]
    assert bk.to_numpy(info.iterations).tolist() == [1, 5, 5]


def test_cg_unbatched_zero_rhs_and_x0(bk):
    A = np.diag([1.0, 2.0, 4.0]) + 0j
    op = _matop(bk, A)
    x, info = cg(op, bk.asarray(np.zeros(3, dtype=complex)))
    assert bool(info.converged)
    assert_close(bk.to_numpy(x), 0.0, rtol=0, atol=1e-8)
    b = bk.asarray(np.array([1.0, 1.0, 1.0], dtype=complex))
    x, info = cg(op, b, x0=bk.asarray(np.array([1.0, 0.5, 0.0], dtype=complex)), tol=1e-14)
    assert_close(bk.to_numpy(x), [1.0, 0.5, 0.25], rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="tol"):
        cg(op, b, tol=0.0)
    with pytest.raises(ValueError, match="maxiter"):
        cg(op, b, maxiter=0)


def test_normal_equations_and_bicgstab(bk):
    rng = np.random.default_rng(3)
    n = 10
    D = np.eye(n) * 3 + rng.normal(size=(2, n, n)) * 0.4 + 1j * rng.normal(size=(2, n, n)) * 0.4
    b = rng.normal(size=(2, n)) + 1j * rng.normal(size=(2, n))
    ref = np.linalg.solve(D, b[..., None])[..., 0]
    Dop = _matop(bk, D)
    Ddag = _matop(bk, np.conj(np.swapaxes(D, -1, -2)))
    for solver in (cgne, cgnr):
        x, info = solver(Dop, Ddag, bk.asarray(b), tol=1e-13, batch_ndim=1)
        assert_close(bk.to_numpy(x), ref, rtol=1e-5, atol=1e-9, msg=solver.__name__)
        assert info.solver == solver.__name__
    x, info = bicgstab(Dop, bk.asarray(b), tol=1e-13, batch_ndim=1)
    assert_close(bk.to_numpy(x), ref, rtol=1e-5, atol=1e-9)
    assert info.all_converged


def test_reductions(bk):
    a = np.array([[1 + 1j, 2.0], [0.0, 1j]])
    b = np.array([[1.0, 1j], [2.0, 3.0]])
    assert_close(bk.to_numpy(norm2(bk.asarray(a), 1)), [6.0, 1.0], rtol=1e-5, atol=1e-8)
    assert_close(bk.to_numpy(inner(bk.asarray(a), bk.asarray(b + 0j), 1)), np.sum(np.conj(a) * b, axis=1),
                 rtol=1e-5, atol=1e-8)


def test_cg_freezes_chain_where_operator_is_not_positive(bk):
    """A chain whose operator is negative definite (p^dag A p < 0 from the first step) is frozen at once
    and reported unconverged with zero iterations; the other chains converge, and the solve stops
    instead of running to maxiter."""
    rng = np.random.default_rng(4)
    A = _hpd(rng, 2, 8, [10.0, 10.0])
    A[1] = -A[1]
    b = rng.normal(size=(2, 8)) + 0j
    x, info = cg(_matop(bk, A), bk.asarray(b), tol=1e-12, maxiter=10**6, batch_ndim=1, raise_on_failure=False)
    assert bk.to_numpy(info.converged).tolist() == [True, False]
    its = bk.to_numpy(info.iterations)
    assert its[1] == 0 and 1 < its[0] <= 8 + 4   # exact arithmetic: at most n = 8 steps; round-off may add a few
    assert_close(bk.to_numpy(x)[1], 0.0, rtol=0, atol=0)
    assert bk.to_numpy(info.indefinite).tolist() == [False, True]
    with pytest.raises(ConvergenceError, match="not positive definite there"):
        cg(_matop(bk, A), bk.asarray(b), tol=1e-12, batch_ndim=1)


def test_convergence_means_the_true_residual(bk):
    """In single precision the recursive residual drifts below tol while the true one stalls (float32 resolves about
    1e-7 times the condition number): such a solve was reported converged with a true residual 1e5 times tol. Now
    converged means |b - A x| <= tol |b|: chains whose recursive residual said so are restarted from x, and a tol
    the precision cannot reach fails with a message that says why; a reachable tol converges for every chain."""
    rng = np.random.default_rng(7)
    A = _hpd(rng, 4, 40, [30.0] * 4).astype(np.complex64)
    b = (rng.normal(size=(4, 40)) + 1j * rng.normal(size=(4, 40))).astype(np.complex64)
    x, info = cg(_matop(bk, A), bk.asarray(b), tol=1e-12, maxiter=400, batch_ndim=1, raise_on_failure=False)
    res = bk.to_numpy(info.residual)
    assert not bk.to_numpy(info.converged).any() and (res > 1e-9).all()
    with pytest.raises(ConvergenceError, match="complex64 arithmetic resolves a true residual of about 1e-7 times"):
        cg(_matop(bk, A), bk.asarray(b), tol=1e-12, maxiter=400, batch_ndim=1)
    x, info = cg(_matop(bk, A), bk.asarray(b), tol=1e-5, batch_ndim=1)
    assert bk.to_numpy(info.converged).all() and (bk.to_numpy(info.residual) <= 1e-5).all()
    # the residual reported is the true one
    true = np.linalg.norm(b - np.einsum("bij,bj->bi", A, bk.to_numpy(x)), axis=1) / np.linalg.norm(b, axis=1)
    assert_close(bk.to_numpy(info.residual), true, rtol=1e-3, atol=1e-7)


def test_unbatched_failure_names_no_chain(bk):
    with pytest.raises(ConvergenceError, match=r"^cg did not converge to tol=1e-10 within maxiter=2: residual "):
        cg(_matop(bk, np.diag(np.geomspace(1.0, 100.0, 20))), bk.asarray(np.ones(20)), maxiter=2)


def test_a_nan_source_is_named_in_the_failure(bk):
    """A NaN in the source made the loop report "not positive definite there" and the compiled CG "within
    maxiter" (user probe): the message now says the residual is NaN and what can hold it. batch_ndim must be an
    integer (True was read as 1)."""
    rng = np.random.default_rng(4)
    A = _hpd(rng, 2, 8, [1.0, 10.0])
    b = rng.normal(size=(2, 8)) + 0j
    b[1, 3] = np.nan
    with pytest.raises(ConvergenceError, match=r"the residual is NaN: the source b"):
        cg(_matop(bk, A), bk.asarray(b), tol=1e-12, batch_ndim=1)
    with pytest.raises(ValueError, match=r"^batch_ndim=True"):
        cg(_matop(bk, A), bk.asarray(b), batch_ndim=True)


def test_a_stalled_true_residual_is_not_blamed_on_maxiter(bk):
    """In double precision a tol below the precision floor failed with "did not converge ... within maxiter=20000"
    after 180 iterations (user probe: 8x8 U(1) at kappa = 0.5, tol = 1e-12): the solver had stopped because the true
    residual stayed above tol after MAX_RESTARTS restarts. The failure now names that reason and its remedies in
    any precision, and info.stalled records it; a solve that runs out of iterations still names maxiter."""
    rng = np.random.default_rng(7)
    A = _hpd(rng, 3, 40, [30.0] * 3)
    b = rng.normal(size=(3, 40)) + 1j * rng.normal(size=(3, 40))
    stall = (r"^cg did not converge to tol=1e-20 \(the true residual \|b - A x\| stalled above tol at the precision "
             r"floor: .* of maxiter=10000 iterations\) for 3 chain\(s\): .*complex128 arithmetic .*: use a larger tol "
             r"or a better-conditioned operator .*; raising maxiter does not help$")
    with pytest.raises(ConvergenceError, match=stall) as exc:
        cg(_matop(bk, A), bk.asarray(b), tol=1e-20, maxiter=10**4, batch_ndim=1)
    assert "within maxiter" not in str(exc.value)
    info = exc.value.info
    assert bk.to_numpy(info.stalled).tolist() == [True] * 3 and not bk.to_numpy(info.converged).any()
    assert (bk.to_numpy(info.iterations) < 1000).all()            # far below maxiter: more would not help
    assert (bk.to_numpy(info.residual) < 1e-12).all()             # stalled at the double precision floor
    with pytest.raises(ConvergenceError, match=r"^cg did not converge to tol=1e-20 \(the true residual .* stalled"
                                               r".*\): residual .*raising maxiter does not help$") as exc:
        cg(_matop(bk, A[0]), bk.asarray(b[0]), tol=1e-20, maxiter=10**4)     # a single system
    assert bool(bk.to_numpy(exc.value.info.stalled))
    # out of iterations: maxiter, not stalled
    with pytest.raises(ConvergenceError, match=r"^cg did not converge to tol=1e-12 within maxiter=5 for 3 ") as exc:
        cg(_matop(bk, _hpd(rng, 3, 40, [1e4] * 3)), bk.asarray(b), tol=1e-12, maxiter=5, batch_ndim=1)
    assert not bk.to_numpy(exc.value.info.stalled).any() and "stalled" not in str(exc.value)


def test_chains_that_stop_for_different_reasons_each_name_theirs(bk):
    """A batch with a stalled chain, a NaN source and an operator that is not positive definite names the reason of
    each chain (the message gave one reason for all)."""
    rng = np.random.default_rng(8)
    A = _hpd(rng, 3, 16, [30.0] * 3)
    A[2] = -A[2]
    b = rng.normal(size=(3, 16)) + 1j * rng.normal(size=(3, 16))
    b[1, 0] = np.nan
    with pytest.raises(ConvergenceError, match=r"^cg did not converge to tol=1e-20 for 3 chain\(s\): "
                                               r"chain \(0,\): residual \S+ \(stalled\), chain \(1,\): residual nan "
                                               r"\(NaN\), chain \(2,\): residual \S+ \(not positive definite\); "
                                               r"stalled: the true residual .*; NaN: the residual is NaN.*; "
                                               r"not positive definite: <p, A p> <= 0.*raising maxiter does not "
                                               r"help$") as exc:
        cg(_matop(bk, A), bk.asarray(b), tol=1e-20, maxiter=10**4, batch_ndim=1)
    assert bk.to_numpy(exc.value.info.stalled).tolist() == [True, False, False]
