"""The fused CG vector updates (backends/_numba_linalg.py) behind the fast-path registry.

Each kernel is checked against the NumPy expression it replaces (1e-14 relative: sums of a few
thousand products in float64, reordered into chunks); CG with the kernels is checked against CG with
the fast paths off (``LATTICEKIT_FAST_KERNELS=0``) on the Wilson-Dirac normal operator, against the
caller's arrays being left untouched, and against the bit-identity of a chain solved alone or in a batch.
"""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.actions import WilsonDirac
from latticekit.backends import _fast, _numba_linalg as kl
from latticekit.linalg import cg
from latticekit.testing import assert_close

pytest.importorskip("numba", reason="the fused CG updates need numba (pip install latticekit[fast])")

RTOL = 1e-14


@pytest.fixture(autouse=True)
def _fast_on(monkeypatch):
    monkeypatch.delenv("LATTICEKIT_FAST_KERNELS", raising=False)


def _field(rng, shape, complex_=True):
    a = rng.normal(size=shape)
    return a + 1j * rng.normal(size=shape) if complex_ else a


# chain lengths below, at and above the chunk size (float64 entries: complex counts twice)
SHAPES = [((3,), (5, 4)), ((2, 2), (kl.CHUNK // 2 + 7,)), ((1,), (3, kl.CHUNK // 4 + 1)), ((4,), (kl.CHUNK // 2,))]


@pytest.mark.parametrize("complex_", [True, False])
@pytest.mark.parametrize("bshape,fshape", SHAPES)
def test_kernels_match_numpy(bshape, fshape, complex_):
    rng = np.random.default_rng(5)
    nbd = len(bshape)
    ax = tuple(range(nbd, nbd + len(fshape)))
    x, r, p, Ap = (_field(rng, bshape + fshape, complex_) for _ in range(4))
    alpha = rng.normal(size=bshape)
    alpha.reshape(-1)[0] = 0.0                          # a chain that is not updated
    beta = rng.normal(size=bshape)
    active = rng.random(size=bshape) < 0.6
    active.reshape(-1)[-1] = False
    bc = (Ellipsis,) + (None,) * len(fshape)

    want = np.sum(np.real(np.conj(p) * Ap), axis=ax)
    got = kl.batched_re_inner(p, Ap, nbd)
    assert got.shape == bshape
    assert_close(got, want, rtol=0, atol=RTOL * np.max(np.abs(want)))

    xw, rw = x + alpha[bc] * p, r - alpha[bc] * Ap
    rrw = np.sum(np.abs(rw) ** 2, axis=ax)
    rr = kl.cg_update_xr(x, r, p, Ap, alpha, nbd)
    for g, w in ((x, xw), (r, rw), (rr, rrw)):
        assert_close(g, w, rtol=0, atol=RTOL * np.max(np.abs(w)))

    pw = np.where(active[bc], r + beta[bc] * p, p)
    out = kl.cg_update_p(p, r, beta, active, nbd)
    assert out is p
    assert_close(p, pw, rtol=0, atol=RTOL * np.max(np.abs(pw)))
    assert np.array_equal(p[~active], pw[~active])      # inactive chains untouched, bit for bit


def test_kernels_decline_unqualified_inputs():
    rng = np.random.default_rng(6)
    a = _field(rng, (2, 8))
    al = np.ones(2)
    assert kl.batched_re_inner(a.astype(np.complex64), a.astype(np.complex64), 1) is None   # dtype
    assert kl.batched_re_inner(a[:, ::2], a[:, ::2], 1) is None                              # not contiguous
    assert kl.batched_re_inner(a, a[:, :4].copy(), 1) is None                                # shapes differ
    assert kl.batched_re_inner(a, a.real.copy(), 1) is None                                  # dtypes differ
    assert kl.batched_re_inner(a, a, 2) is None                                              # no field axis
    assert kl.cg_update_xr(a, a.copy(), a.copy(), a.copy(), np.ones(3), 1) is None           # alpha shape
    assert kl.cg_update_xr(a, a.copy(), a.copy(), a.copy(), [1.0, 1.0], 1) is None           # alpha not an array
    assert kl.cg_update_p(a, a.copy(), al, np.ones(2), 1) is None                            # active not bool
    ro = a.copy()
    ro.flags.writeable = False
    assert kl.cg_update_p(ro, a, al, np.ones(2, bool), 1) is None                            # read-only
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, 8, dtype=torch.complex128)
    assert backends.fast_path("cg_update_xr", t) is None                                     # numpy only


def _dirac(L=8, B=3, kappa=0.2, seed=3):
    lat = lk.Lattice((L, L))
    rng = backends.rng(seed)
    U = np.asarray(lk.U1.random(rng, (B, 2), lat.shape))
    D = WilsonDirac(U, lk.U1, lat, kappa=kappa)
    b = np.asarray(D.random_field(rng))
    return D, b, U


def _spy(monkeypatch):
    calls = []
    for name in kl.NAMES:
        fn = backends.fast_path(name, np.ones(1))

        def wrapped(*a, _fn=fn, **kw):
            out = _fn(*a, **kw)
            calls.append(out is not None)
            return out

        monkeypatch.setitem(_fast._REGISTRY, (name, "numpy"), wrapped)
    return calls


def test_cg_fused_matches_generic(monkeypatch):
    """Same iterations and solutions (to round-off amplified by the solve) with and without the kernels."""
    D, b, _ = _dirac()
    calls = _spy(monkeypatch)
    x0 = 0.1 * b
    b_copy, x0_copy = b.copy(), x0.copy()
    x, info = cg(D.normal, b, x0, tol=1e-11, batch_ndim=1)
    assert calls and all(calls)                          # the kernels ran and did not decline
    assert np.array_equal(b, b_copy) and np.array_equal(x0, x0_copy)   # the caller's arrays untouched
    with monkeypatch.context() as m:
        m.setenv("LATTICEKIT_FAST_KERNELS", "0")
        n_before = len(calls)
        xg, infog = cg(D.normal, b, x0, tol=1e-11, batch_ndim=1)
        assert len(calls) == n_before                    # generic run: no kernel call
    assert np.array_equal(info.iterations, infog.iterations)
    # both solutions satisfy |b - A x| <= 1e-11 |b|; A = D D^dag has condition number ~1e2-1e3 here,
    # so they agree to ~1e-9 relative; reordered round-off alone would not separate them further
    assert float(np.max(info.residual)) <= 1e-11 and float(np.max(infog.residual)) <= 1e-11
    assert_close(x, xg, rtol=0, atol=1e-8 * np.max(np.abs(xg)))


def test_cg_chain_bit_identical_alone_and_in_batch():
    """The kernels' chunking depends on the chain length only: a chain solved alone repeats its
    iterates from the batched solve bit for bit (the per-chain masks of CG do the rest)."""
    D, b, U = _dirac(B=3)
    x, info = cg(D.normal, b, tol=1e-10, batch_ndim=1)
    D1 = WilsonDirac(np.ascontiguousarray(U[1:2]), lk.U1, lk.Lattice((8, 8)), kappa=0.2)
    x1, info1 = cg(D1.normal, np.ascontiguousarray(b[1:2]), tol=1e-10, batch_ndim=1)
    assert int(info1.iterations[0]) == int(info.iterations[1])
    assert np.array_equal(x1[0], x[1])


def test_torch_compiled_cg_updates(monkeypatch):
    """The torch.compile versions of the three updates (backends/_kernels_torch.py, the GPU path: opt-in,
    compiled here on CPU) against the numba kernels, and a CG solve with them against the generic code."""
    torch = pytest.importorskip("torch")
    from latticekit.backends import _kernels_torch as kt

    rng = np.random.default_rng(8)
    shape = (3, 2, 5, 4)
    x, r, p, Ap = (_field(rng, shape) for _ in range(4))
    alpha, beta = rng.normal(size=3), rng.normal(size=3)
    alpha[0] = 0.0
    active = np.array([True, False, True])
    T = [torch.tensor(a) for a in (x, r, p, Ap)]
    fn = {n: kt._lazy(n) for n in kl.NAMES}
    assert_close(fn["batched_re_inner"](T[2], T[3], 1).numpy(), kl.batched_re_inner(p, Ap, 1), rtol=0, atol=1e-12)
    rr_t = fn["cg_update_xr"](*T, torch.tensor(alpha), 1)
    rr_n = kl.cg_update_xr(x, r, p, Ap, alpha, 1)
    assert_close(rr_t.numpy(), rr_n, rtol=0, atol=1e-12 * np.max(rr_n))
    for t, a in zip(T[:2], (x, r)):                     # updated in place, like the numba kernels
        assert_close(t.numpy(), a, rtol=0, atol=1e-14 * np.max(np.abs(a)))
    assert fn["cg_update_p"](T[2], T[1], torch.tensor(beta), torch.tensor(active), 1) is T[2]
    kl.cg_update_p(p, r, beta, active, 1)
    assert_close(T[2].numpy(), p, rtol=0, atol=1e-14 * np.max(np.abs(p)))
    # declines: non-contiguous field, per-chain array of the wrong shape, numpy input
    assert fn["batched_re_inner"](T[0].transpose(2, 3), T[1].transpose(2, 3), 1) is None
    assert fn["cg_update_xr"](*T, torch.zeros(2, dtype=torch.float64), 1) is None
    assert fn["cg_update_p"](p, r, beta, active, 1) is None
    # and decline where autograd has to see the update (in place: "modified by an inplace operation" in backward)
    G = [t.clone().requires_grad_(k == 3) for k, t in enumerate(T)]
    assert fn["cg_update_xr"](*G, torch.tensor(alpha), 1) is None
    assert fn["cg_update_p"](G[2], G[1], torch.tensor(beta, requires_grad=True), torch.tensor(active), 1) is None
    with torch.no_grad():
        assert fn["cg_update_xr"](*G, torch.tensor(alpha), 1) is not None

    A = torch.tensor(np.stack([np.diag(np.geomspace(1.0, c, 40)) for c in (10.0, 1e3)]) + 0j)
    b = torch.tensor(_field(rng, (2, 40)))

    def op(v):
        return torch.einsum("bij,bj->bi", A, v)

    xg, infog = cg(op, b, tol=1e-12, batch_ndim=1)       # generic (torch has no fast path by default)
    calls = []
    for name in kl.NAMES:
        def spy(*a, _f=fn[name], **kw):
            out = _f(*a, **kw)
            calls.append(out is not None)
            return out
        monkeypatch.setitem(_fast._REGISTRY, (name, "torch"), spy)
    xf, infof = cg(op, b, tol=1e-12, batch_ndim=1)
    assert calls and all(calls)                          # the compiled updates ran, none declined
    # the same iterations up to one: Inductor's code rounds differently from torch's kernels (FMA contraction and
    # vector widths depend on the CPU), and a residual that lands within a few percent of tol can cross it one
    # iteration later (on an AMD EPYC: 77 against 78, residuals 6.0e-13 and 5.3e-14 for tol 1e-12)
    assert int((infof.iterations - infog.iterations).abs().max()) <= 1, (infof.iterations, infog.iterations)
    assert_close(xf.numpy(), xg.numpy(), rtol=0, atol=1e-10 * float(xg.abs().max()))
    # a gradient through the solve with the compiled kernels registered (it crashed: the in-place updates); against
    # the exact solve's, for a Hermitian parametrisation of the operator (CG assumes one)
    Bs = A.clone().requires_grad_(True)
    H = (Bs + Bs.conj().transpose(-1, -2)) / 2
    xs, _ = cg(lambda v: torch.einsum("bij,bj->bi", H, v), b, tol=1e-12, batch_ndim=1)
    g = torch.autograd.grad(xs.abs().pow(2).sum(), Bs)[0]
    Be = A.clone().requires_grad_(True)
    ge = torch.autograd.grad(torch.linalg.solve((Be + Be.conj().transpose(-1, -2)) / 2, b).abs().pow(2).sum(), Be)[0]
    assert_close(g.numpy(), ge.numpy(), rtol=0, atol=1e-10 * float(ge.abs().max()))
