"""The numba fast paths (backends/_numba_gauge.py, _numba_phi4.py, _numba_dirac.py, _numba_sun_exp.py, ...)
behind the fast-path registry.

Every compiled kernel is checked against the generic Array API code (run with
``LATTICEKIT_FAST_KERNELS=0``) on random batched fields in 2D, 3D and 4D (odd and 1-3 site extents,
the unrolled SU(2)/SU(3) kernels of backends/_numba_su3.py and the generic-N ones), to 1e-13 relative; the
fallback (other backends, non-contiguous or float32 inputs) and the off switch are checked too.
Kernels compile once per process (or load from numba's on-disk cache): all tests use the same
dtypes and array ranks, so each kernel has one specialisation.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.actions import phi4_action, phi4_force, wilson_gauge_action, wilson_gauge_force
from latticekit.backends import _fast, _kernels_torch, _numba_cg, _numba_dirac, _numba_gauge, _numba_linalg, _numba_phi4
from latticekit.backends import _numba_sun_exp
from latticekit.observables import average_plaquette, plaquette_field
from latticekit.testing import assert_close

pytest.importorskip("numba", reason="the fast paths need numba (pip install latticekit[fast])")

RTOL = 1e-13
NUMBA_NAMES = (_numba_gauge.NAMES + _numba_phi4.NAMES + _numba_dirac.NAMES + _numba_linalg.NAMES + _numba_cg.NAMES
               + _numba_sun_exp.NAMES)


def _is_numba_kernel(fn):
    return getattr(fn, "__module__", "").rsplit(".", 1)[-1] in _fast.NUMBA_MODULES


def _generic(monkeypatch, fn, *args):
    with monkeypatch.context() as m:
        m.setenv("LATTICEKIT_FAST_KERNELS", "0")
        assert backends.fast_path("phi4_action", np.ones(2)) is None
        return fn(*args)


def _close(got, want, rtol=RTOL):
    """max |got - want| <= rtol * max |want| (norm-wise: relative to the largest entry)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want))), 1e-300)
    assert_close(got, want, rtol=0, atol=rtol * scale)


def _spy(monkeypatch, name):
    """Wrap the registered numpy kernel ``name`` and count the calls that it did not decline."""
    fn = backends.fast_path(name, np.ones(1))
    assert fn is not None, f"{name} is not registered for numpy"
    calls = []

    def wrapped(*a, **kw):
        out = fn(*a, **kw)
        calls.append(out is not None)
        return out

    monkeypatch.setitem(_fast._REGISTRY, (name, "numpy"), wrapped)
    return calls


@pytest.fixture(autouse=True)
def _fast_on(monkeypatch):
    monkeypatch.delenv("LATTICEKIT_FAST_KERNELS", raising=False)


def test_registered_for_numpy_only():
    x = np.zeros((2, 4, 4))
    for name in NUMBA_NAMES:
        assert backends.fast_path(name, x) is not None
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, 4, 4)
    # the torch.compile kernels are opt-in (LATTICEKIT_FAST_KERNELS=1); the one numba kernel that takes
    # torch CPU tensors by default is the compiled CG (no autograd through it; zero-copy views)
    if not any(n in _kernels_torch.NAMES and b == "torch" for n, b in _fast._REGISTRY):
        assert backends.fast_path("u1_plaquette_cos_sum", t) is None
    torch_default = [n for n in NUMBA_NAMES if backends.fast_path(n, t) is not None
                     and n not in _kernels_torch.NAMES]
    assert torch_default == ["wilson_normal_cg"]


def test_one_module_per_physics_area():
    """Each numba module registers its own names (no name twice) through the one registry, and the
    registered numpy fast path of each name is that module's kernel."""
    mods = [importlib.import_module(f"latticekit.backends.{m}") for m in _fast.NUMBA_MODULES]
    assert [m.__name__.rsplit(".", 1)[-1] for m in mods] == ["_numba_gauge", "_numba_phi4", "_numba_dirac",
                                                                 "_numba_linalg", "_numba_cg", "_numba_sun_exp"]
    names = [n for m in mods for n in m.NAMES]
    assert len(names) == len(set(names)) == len(NUMBA_NAMES)
    x = np.zeros(3)
    for m in mods:
        assert sorted(m.kernels()) == sorted(m.NAMES)
        for name in m.NAMES:
            assert backends.fast_path(name, x) is getattr(m, name)


@pytest.mark.parametrize("shape,batch", [
    ((6, 5), (3,)), ((4, 3, 5, 2), (2,)), ((4, 4), ()),
    # 2D (fused row kernel): odd extents, rows of 1-3 sites, rows longer than a SIMD vector with a
    # remainder, two batch axes; 3D (generic-nd kernel)
    ((3, 2), (2, 2)), ((1, 3), (2,)), ((5, 1), ()), ((2, 19), (3,)), ((3, 2, 5), (2,)),
    # nd >= 3 (rows of the last two axes, or of the last one from 64 sites on; outer neighbour rows from a
    # table; in-row shifts along either axis): axes of 1 and 2 sites, lines of one site, five dimensions
    ((2, 3, 65), (2,)), ((3, 1, 2, 2), ()), ((3, 2, 4, 1), (2,)), ((2, 3, 2, 2, 3), ()), ((2, 2, 2), (3,)),
])
def test_u1_kernels_match_generic(monkeypatch, shape, batch):
    lat = lk.Lattice(shape)
    nd = lat.nd
    th = 3.0 * lk.U1.random(backends.rng(1), batch + (nd,), lat.shape)   # unwrapped angles too
    calls = _spy(monkeypatch, "u1_wilson_force")
    for fn, args in [(average_plaquette, (th, lk.U1, lat)), (plaquette_field, (th, lk.U1, lat)),
                     (wilson_gauge_action, (th, 1.7, lk.U1, lat)), (wilson_gauge_force, (th, 1.7, lk.U1, lat))]:
        _close(fn(*args), _generic(monkeypatch, fn, *args))
    assert calls == [True]
    assert _numba_gauge.u1_plaquette_cos_sum(th, nd).shape == batch


@pytest.mark.parametrize("shape", [(4, 6), (3, 4, 2)])
def test_u1_large_angles_use_exact_trigonometry(monkeypatch, shape):
    lat = lk.Lattice(shape)
    th = lk.U1.random(backends.rng(2), (2, lat.nd), lat.shape) + 3.0e6   # beyond the polynomial's range
    for fn, args in [(wilson_gauge_action, (th, 1.0, lk.U1, lat)), (wilson_gauge_force, (th, 1.0, lk.U1, lat))]:
        _close(fn(*args), _generic(monkeypatch, fn, *args), rtol=1e-9)   # angles carry 1e6 * eps
    assert _numba_gauge.u1_plaquette_cos_sum(th, lat.nd) is not None


# 2D U(1): flat chunks of whole rows of the flattened batch (several configurations, or part of one);
# short rows through an angle buffer, long rows (L1 >= _U1_FUSED_L1) with the angles in the polynomial's loop
U1_2D_SHAPES = [(2, 2), (3, 3), (8, 8), (6, 5), (5, 6), (1, 4), (4, 1), (16, 3), (1, 1), (3, 40)]
U1_2D_FUSED = [1, 1 << 30]   # _U1_FUSED_L1: every row fused, no row fused


def _u1_2d_check(monkeypatch, shape, batch, seed, rtol=RTOL, offset=0.0):
    lat = lk.Lattice(shape)
    th = 3.0 * lk.U1.random(backends.rng(seed), batch + (2,), lat.shape) + offset   # unwrapped angles too
    fcalls = _spy(monkeypatch, "u1_wilson_force")
    pcalls = _spy(monkeypatch, "u1_plaquette_cos_sum")
    for fn, args in [(average_plaquette, (th, lk.U1, lat)), (plaquette_field, (th, lk.U1, lat)),
                     (wilson_gauge_action, (th, 1.7, lk.U1, lat)), (wilson_gauge_force, (th, 1.7, lk.U1, lat))]:
        got = fn(*args)
        if fn is wilson_gauge_force:
            assert got.shape == th.shape
        _close(got, _generic(monkeypatch, fn, *args), rtol=rtol)
    assert fcalls == [True] and pcalls and all(pcalls)
    assert _numba_gauge.u1_plaquette_cos_sum(th, 2).shape == batch
    assert _numba_gauge.u1_plaquette_field(th, 2).shape == batch + (1,) + shape


@pytest.mark.parametrize("fused", U1_2D_FUSED)
@pytest.mark.parametrize("shape", U1_2D_SHAPES)
@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_u1_2d_kernels_match_generic(monkeypatch, shape, batch, fused):
    monkeypatch.setattr(_numba_gauge, "_U1_FUSED_L1", fused)
    _u1_2d_check(monkeypatch, shape, batch, 20)


@pytest.mark.parametrize("fused", U1_2D_FUSED)
@pytest.mark.parametrize("sites", [1, 8, 40, 64, 200, 1 << 14])
def test_u1_2d_chunking(monkeypatch, sites, fused):
    """Chunks of part of a configuration (with the row before the first for the force), of one, and of
    several (with a partial last chunk), by the chunk size: the same results."""
    monkeypatch.setattr(_numba_gauge, "_U1_SITES_2D", sites)
    monkeypatch.setattr(_numba_gauge, "_U1_FUSED_L1", fused)
    for shape, batch in [((8, 8), (7,)), ((6, 5), (3,)), ((3, 1), (37,)), ((2, 2), (50,)), ((5, 6), ())]:
        _u1_2d_check(monkeypatch, shape, batch, 21)


@pytest.mark.parametrize("fused", U1_2D_FUSED)
def test_u1_2d_large_angles(monkeypatch, fused):
    """Plaquette angles beyond the polynomial's range -- in every chunk, or in two plaquettes of one
    configuration (the other chunks keep the polynomial) -- go through math.sin/cos. The angles are
    exact in any order of the sum (links: multiples of 2^62, or one link 2^64 among small ones), so the
    kernels must agree with the generic code to round-off; the polynomial is wrong there (its quadrant
    count overflows int64)."""
    monkeypatch.setattr(_numba_gauge, "_U1_FUSED_L1", fused)
    monkeypatch.setattr(_numba_gauge, "_U1_SITES_2D", 64)
    for shape, batch, every in [((4, 6), (2,), True), ((8, 8), (), True), ((3, 3), (16,), True), ((2, 2), (20,), True),
                                ((6, 5), (4,), False), ((2, 2), (20,), False)]:
        lat = lk.Lattice(shape)
        th = 3.0 * lk.U1.random(backends.rng(22), batch + (2,), lat.shape)
        if every:
            th = 2.0 ** 62 * np.random.default_rng(22).integers(-64, 65, th.shape)
        else:
            th[(2, 1) + tuple(n - 1 for n in shape)] = 2.0 ** 64   # one link: the two plaquettes that hold it
        for fn, args in [(average_plaquette, (th, lk.U1, lat)), (plaquette_field, (th, lk.U1, lat)),
                         (wilson_gauge_force, (th, 1.7, lk.U1, lat))]:
            _close(fn(*args), _generic(monkeypatch, fn, *args))


@pytest.mark.parametrize("N,shape,batch", [
    (3, (4, 6), (2,)), (3, (2, 3, 4, 4), ()), (2, (4, 3, 2, 3), (2,)),
    # the unrolled N = 2, 3 kernels (backends/_numba_su3.py): odd and 2-3 site extents, two batch axes,
    # nd = 2, 3, 4, rows of one axis (last extent >= 64, not a multiple of the SIMD width) and of two
    (3, (3, 5), (2, 2)), (3, (2, 3, 3), ()), (3, (3, 2, 3, 3), ()), (3, (2, 3, 1, 67), ()),
    (2, (3, 3), (3,)), (2, (2, 3, 5), (2,)), (2, (3, 2, 2, 3), ()),
    (4, (2, 3, 2, 3), ()),   # N = 4: the generic-N kernels of _numba_gauge
])
def test_sun_kernels_match_generic(monkeypatch, N, shape, batch):
    G = lk.SU(N)
    lat = lk.Lattice(shape)
    U = np.ascontiguousarray(G.random(backends.rng(3), batch + (lat.nd,), lat.shape))
    calls = _spy(monkeypatch, "sun_wilson_force")
    for fn, args in [(average_plaquette, (U, G, lat)), (plaquette_field, (U, G, lat)),
                     (wilson_gauge_action, (U, 5.5, G, lat)), (wilson_gauge_force, (U, 5.5, G, lat))]:
        _close(fn(*args), _generic(monkeypatch, fn, *args))
    assert calls == [True]
    F = wilson_gauge_force(U, 5.5, G, lat)   # traceless anti-Hermitian
    Fm = np.moveaxis(F, (-lat.nd - 2, -lat.nd - 1), (-2, -1))
    assert_close(Fm + np.conj(np.swapaxes(Fm, -1, -2)), 0.0, rtol=0, atol=1e-13)
    assert_close(np.trace(Fm, axis1=-2, axis2=-1), 0.0, rtol=0, atol=1e-13)


@pytest.mark.parametrize("scale", [1e-7, 0.02, 0.08, 0.3, 1.0, 4.0])
@pytest.mark.parametrize("shape,batch", [((4, 6), (2, 2)), ((3, 2, 5, 2), (4,)), ((7,), ()), ((1, 1), (3,))])
def test_sun_exp_matches_generic(monkeypatch, shape, batch, scale):
    """exp of SU(3) algebra elements against the generic closed form: every branch (the series for c1 < 0.02,
    the closed form with both signs of c0, xi0's expansion) over the scales; the result is in SU(3)."""
    G, nd = lk.SU(3), len(shape)
    X = G.random_algebra(backends.rng(31), batch, shape, scale=scale)
    assert backends.fast_path("sun_exp", X) is _numba_sun_exp.sun_exp
    got = G.exp(X, nd=nd)
    want = _generic(monkeypatch, lambda A: G.exp(A, nd=nd), X)
    # the products are summed in another order: rounding of the angles, amplified like the generic code's
    assert_close(got, want, rtol=0, atol=1e-14 * max(1.0, scale))
    assert float(np.max(G.defect(got, nd=nd))) < 1e-13 * max(1.0, scale)
    assert_close(G.exp(-X, nd=nd), G.adjoint(got, nd=nd), rtol=0, atol=1e-14 * max(1.0, scale))   # exp(-X) = exp(X)^dag
    # the fused update exp(X) W of the flow and of HMC moves, against the generic product of the generic exp
    W = G.random(backends.rng(34), batch, shape)
    assert backends.fast_path("sun_exp_mul", X) is _numba_sun_exp.sun_exp_mul
    want_mul = _generic(monkeypatch, lambda A: G.mul(G.exp(A, nd=nd), W, nd=nd), X)
    assert_close(G.exp_mul(X, W, nd=nd), want_mul, rtol=0, atol=1e-14 * max(1.0, scale))


def test_sun_exp_declines_and_serves_the_flow(monkeypatch):
    G, lat = lk.SU(3), lk.Lattice((4, 4))
    X = G.random_algebra(backends.rng(32), (2, 2), lat.shape, scale=0.5)
    for bad in (X[..., ::-1], X.astype(np.complex64)):
        assert _numba_sun_exp.sun_exp(bad, 3, 2) is None
        assert_close(G.exp(bad, nd=2), _generic(monkeypatch, lambda A: G.exp(A, nd=2), bad), rtol=0, atol=1e-6)
    assert _numba_sun_exp.sun_exp(X, 2, 2) is None                       # SU(2): its own closed form
    W = G.random(backends.rng(35), (2, 2), lat.shape)
    for bad_x, bad_w in ((X, W[..., ::-1]), (X, W[:1]), (X.astype(np.complex64), W)):   # layout, broadcast, dtype
        assert _numba_sun_exp.sun_exp_mul(bad_x, bad_w, 3, 2) is None
        assert_close(G.exp_mul(bad_x, bad_w, nd=2),
                     _generic(monkeypatch, lambda A: G.mul(G.exp(A, nd=2), bad_w, nd=2), bad_x), rtol=0, atol=1e-6)
    assert _numba_sun_exp.sun_exp(X, 3, 3) is None                       # the matrices are not at axes -nd-2, -nd-1
    from latticekit.observables import wilson_flow
    U = G.random(backends.rng(33), (2, 2), lat.shape)
    got = wilson_flow(U, G, lat, 0.2, eps=0.05, measure=None)[0]
    want = _generic(monkeypatch, lambda V: wilson_flow(V, G, lat, 0.2, eps=0.05, measure=None)[0], U)
    assert_close(got, want, rtol=0, atol=1e-13)


def test_generated_sun_kernels_are_current():
    """backends/_numba_su3.py and _numba_su2.py below their banner lines are the output of
    tools/gen_numba_sun.py (edit the script, not the text), with the same block width _BW."""
    import importlib.util
    import pathlib

    from latticekit.backends import _numba_su3

    path = pathlib.Path(__file__).resolve().parents[1] / "tools" / "gen_numba_sun.py"
    spec = importlib.util.spec_from_file_location("gen_numba_sun", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.BW == _numba_su3._BW
    for n in gen.COLOURS:
        _, body = gen.split_module(gen.module_path(n).read_text(), n)
        assert body == gen.generate(n), f"{gen.module_path(n).name} differs: run python tools/gen_numba_sun.py"
    with pytest.raises(ValueError, match="n=4"):
        gen.generate(4)


# nD kernels (rows of the last axis or the last two; outer neighbour rows and wrapped in-row sites from
# tables): planes with lines of 1 and 2 sites, an axis of length 1, rows of one axis (last extent >= 64)
@pytest.mark.parametrize("shape,batch", [((8, 6), (3,)), ((3, 4, 2, 5), (2,)), ((7,), ()), ((1,), (2,)),
                                         ((2, 3, 70), (2,)), ((4, 1, 3, 2), ()), ((2, 2, 2, 2), (3,)),
                                         ((3, 5, 1), (2,)), ((2, 3, 2, 4, 3), ())])
def test_phi4_kernels_match_generic(monkeypatch, shape, batch):
    lat = lk.Lattice(shape)
    phi = backends.rng(4).normal(batch + shape)
    calls = _spy(monkeypatch, "phi4_force")
    for fn in (phi4_action, phi4_force):
        _close(fn(phi, lat, 0.21, 0.03), _generic(monkeypatch, fn, phi, lat, 0.21, 0.03))
    S = lk.actions.Phi4Action(lat, 0.21, 0.03)
    _close(S.force(phi), _generic(monkeypatch, S.force, phi))
    assert calls == [True, True]



# 2D phi^4: chunks of whole rows of the flattened batch (several configurations, or part of one)
PHI4_2D_SHAPES = [(2, 2), (3, 3), (8, 8), (6, 5), (5, 6), (2, 7), (1, 4), (4, 1), (1, 1), (16, 3)]


@pytest.mark.parametrize("shape", PHI4_2D_SHAPES)
@pytest.mark.parametrize("batch", [(), (2, 3)])
def test_phi4_2d_kernels_match_generic(monkeypatch, shape, batch):
    lat = lk.Lattice(shape)
    phi = backends.rng(14).normal(batch + shape)
    calls = _spy(monkeypatch, "phi4_force")
    acalls = _spy(monkeypatch, "phi4_action")
    for fn in (phi4_action, phi4_force):
        got = fn(phi, lat, 0.21, 0.03)
        assert got.shape == (batch if fn is phi4_action else batch + shape)
        _close(got, _generic(monkeypatch, fn, phi, lat, 0.21, 0.03))
    assert calls == [True] and acalls == [True]


@pytest.mark.parametrize("sites", [1, 8, 40, 64, 200, 1 << 14])
def test_phi4_2d_chunking(monkeypatch, sites):
    """Chunks of part of a configuration, of one, and of several (with a partial last chunk), by the
    chunk size: the same results."""
    monkeypatch.setattr(_numba_phi4, "_SITES_2D", sites)
    for shape, batch in [((8, 8), (7,)), ((6, 5), (3,)), ((3, 1), (37,)), ((2, 2), (50,))]:
        lat = lk.Lattice(shape)
        phi = backends.rng(15).normal(batch + shape)
        for fn in (phi4_action, phi4_force):
            _close(fn(phi, lat, 0.21, 0.03), _generic(monkeypatch, fn, phi, lat, 0.21, 0.03))

def test_spy_sees_kernel_calls(monkeypatch):
    lat = lk.Lattice((4, 4))
    phi = backends.rng(5).normal((2, 4, 4))
    calls = _spy(monkeypatch, "phi4_action")
    phi4_action(phi, lat, 0.2, 0.1)
    phi4_action(phi[:, ::-1], lat, 0.2, 0.1)              # non-contiguous: declined
    phi4_action(phi.astype(np.float32), lat, 0.2, 0.1)    # float32: declined
    assert calls == [True, False, False]


def test_fallback_for_unqualified_inputs(monkeypatch, bk):
    """Other backends never reach the numba kernels; numpy inputs they cannot take are declined,
    and in all cases the public functions give the generic result."""
    lat = lk.Lattice((4, 6))
    th0 = lk.U1.random(backends.rng(6), (2, 2), lat.shape)
    phi0 = backends.rng(7).normal((2, 4, 6))
    if bk.name == "numpy":
        variants = [(th0[..., ::-1], phi0[..., ::-1]),                            # non-contiguous
                    (th0.astype(np.float32), phi0.astype(np.float32))]         # not float64
        for th, phi in variants:
            assert _numba_gauge.u1_plaquette_cos_sum(th, 2) is None
            assert _numba_gauge.u1_wilson_force(th, 1.0, 2) is None
            assert _numba_phi4.phi4_force(phi, 0.2, 0.1, 2) is None
        assert _numba_phi4.phi4_force(phi0, np.ones(()), 0.1, 2) is None   # array coupling
        ro = th0.copy()
        ro.flags.writeable = False
        assert _numba_gauge.u1_plaquette_cos_sum(ro, 2) is None
        U = lk.SU(2).random(backends.rng(8), (2,), lat.shape)
        assert _numba_gauge.sun_re_tr_plaquette_sum(U.astype(np.complex64), 2) is None
        U3 = np.ascontiguousarray(lk.SU(3).random(backends.rng(8), (2,), lat.shape))
        ro3 = U3.copy()
        ro3.flags.writeable = False
        for bad in (U3[..., ::-1], U3.astype(np.complex64), ro3, U3.real.copy()):   # N = 3 kernels decline too
            assert _numba_gauge.sun_re_tr_plaquette_sum(bad, 2) is None
            assert _numba_gauge.sun_plaquette_field(bad, 2) is None
            assert _numba_gauge.sun_wilson_force(bad, 1.0, 2) is None
        assert _numba_gauge.sun_wilson_force(U3, np.ones(()), 2) is None           # array coupling
        assert _numba_gauge.sun_wilson_force(U3, 1.0, 2) is not None
    else:
        th, phi = bk.asarray(th0), bk.asarray(phi0)
        for name in NUMBA_NAMES:
            fp = backends.fast_path(name, th)
            if name == "wilson_normal_cg" and bk.name == "torch" and str(th.device) == "cpu":
                assert fp is _numba_cg.wilson_normal_cg_torch   # views CPU tensors (tests/linalg/test_cg_compiled.py)
                continue
            assert fp is None or not _is_numba_kernel(fp)
        variants = [(th, phi)]
    for th, phi in variants:
        got = bk.to_numpy(wilson_gauge_force(th, 1.0, lk.U1, lat))
        want = bk.to_numpy(_generic(monkeypatch, wilson_gauge_force, th, 1.0, lk.U1, lat))
        _close(got, want, rtol=1e-6 if want.dtype == np.float32 else RTOL)
        got = bk.to_numpy(phi4_action(phi, lat, 0.2, 0.1))
        want = bk.to_numpy(_generic(monkeypatch, phi4_action, phi, lat, 0.2, 0.1))
        _close(got, want, rtol=1e-6 if want.dtype == np.float32 else RTOL)


def test_switch_off_disables_fast_paths(monkeypatch):
    lat = lk.Lattice((4, 4))
    th = lk.U1.random(backends.rng(9), (2, 2), lat.shape)

    def boom(*args):
        raise AssertionError("the fast path must not run with LATTICEKIT_FAST_KERNELS=0")

    monkeypatch.setitem(_fast._REGISTRY, ("u1_plaquette_cos_sum", "numpy"), boom)
    with pytest.raises(AssertionError, match="must not run"):
        average_plaquette(th, lk.U1, lat)
    for off in ("0", "false", "off"):
        monkeypatch.setenv("LATTICEKIT_FAST_KERNELS", off)
        assert backends.fast_path("u1_plaquette_cos_sum", th) is None
        float(average_plaquette(th, lk.U1, lat)[0])   # generic code, no error


def test_no_registration_at_import():
    import subprocess
    import sys

    code = ("import sys, latticekit; from latticekit.backends import _fast; "
            "assert not _fast._BUILTINS_LOADED and 'numba' not in sys.modules; "
            "assert not [m for m in sys.modules if m.startswith('latticekit.backends._numba')]; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# -- Wilson-Dirac ----------------------------------------------------------------------------------
def _dirac_case(G, shape, batch, sources, seed):
    from latticekit.actions import WilsonDirac

    lat = lk.Lattice(shape)
    r = backends.rng(seed)
    U = G.random(r, batch + (lat.nd,), lat.shape)
    D = WilsonDirac(U, G, lat, kappa=0.13)
    psi = np.ascontiguousarray(r.complex_normal(sources + batch + D.field_shape))
    return D, psi


@pytest.mark.parametrize("G,shape,batch,sources", [
    (lk.U1, (6, 4), (2,), ()),            # short rows: in-row neighbours by index
    (lk.U1, (4, 40), (), (3,)),           # long rows (wrap-around site split off); sources on one field
    (lk.SU(3), (4, 2, 4, 2), (2,), ()),   # 4D: rows of the last two axes
    (lk.SU(2), (4, 6), (2,), (2,)),       # SU(N) in 2D, sources x gauge batch
    (lk.U1, (2, 4, 2, 3), (), ()),        # U(1) in 4D
])
def test_wilson_dirac_matches_generic(monkeypatch, G, shape, batch, sources):
    D, psi = _dirac_case(G, shape, batch, sources, 10)
    calls = _spy(monkeypatch, "wilson_dirac_apply")
    for fn in (D.apply, D.apply_dagger, D.normal, D.hop, lambda v: D.hop(v, dagger=True)):
        _close(fn(psi), _generic(monkeypatch, fn, psi))
    assert calls and all(calls)
    # gamma_5-hermiticity and the anti-periodic boundary through the kernel alone
    chi = np.ascontiguousarray(backends.rng(11).complex_normal(psi.shape))
    lhs, rhs = np.vdot(chi, D.apply(psi)), np.vdot(D.apply_dagger(chi), psi)
    assert_close(rhs, lhs, rtol=1e-12, atol=0)



def _dirac_2d_check(monkeypatch, shape, batch, sources, antiperiodic, seed):
    from latticekit.actions import WilsonDirac

    lat = lk.Lattice(shape)
    r = backends.rng(seed)
    U = lk.U1.random(r, batch + (2,), lat.shape)
    D = WilsonDirac(U, lk.U1, lat, kappa=0.13, antiperiodic=antiperiodic)
    psi = np.ascontiguousarray(r.complex_normal(sources + batch + D.field_shape))
    for fn in (D.apply, D.apply_dagger, D.normal, D.hop, lambda v: D.hop(v, dagger=True)):
        _close(fn(psi), _generic(monkeypatch, fn, psi))


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (8, 8), (6, 5), (5, 6), (2, 7), (2, 1), (4, 1), (3, 16)])
@pytest.mark.parametrize("batch,sources", [((), ()), ((2, 3), ()), ((2,), (3,))])
def test_wilson_dirac_2d_u1_matches_generic(monkeypatch, shape, batch, sources):
    """The 2D U(1) kernel (whole configurations, flat offsets), periodic and anti-periodic in time."""
    calls = []
    real = _numba_dirac._u1_2d
    monkeypatch.setattr(_numba_dirac, "_u1_2d", lambda *a: calls.append(1) or real(*a))
    for anti in (True, False):
        _dirac_2d_check(monkeypatch, shape, batch, sources, anti, 16)
    assert len(calls) == 12   # 6 kernel calls (normal: two) per boundary condition, none declined


def test_wilson_dirac_2d_u1_chunks_and_row_kernel(monkeypatch):
    """One or several configurations per chunk (and a partial last chunk) give the same results, and so
    does the row kernel, which takes 2D U(1) lattices above ``_U1_2D_MAX_SITES``."""
    for chunk in (1, 30, 64, 1 << 12):
        monkeypatch.setattr(_numba_dirac, "_U1_2D_CHUNK", chunk)
        _dirac_2d_check(monkeypatch, (6, 5), (7,), (), True, 17)
        _dirac_2d_check(monkeypatch, (2, 1), (3,), (2,), False, 18)
    monkeypatch.setattr(_numba_dirac, "_U1_2D_MAX_SITES", 4)
    calls = []
    monkeypatch.setattr(_numba_dirac, "_u1_2d", lambda *a: calls.append(1))
    _dirac_2d_check(monkeypatch, (6, 5), (2,), (), True, 19)
    assert not calls

def test_wilson_dirac_declines(monkeypatch, bk):
    """Non-contiguous, read-only, complex64 fermions and mismatched batches are declined by the kernel (generic
    code runs, same result; complex64 fermions on complex128 links are refused by the operator before it); other
    backends never reach the numba kernel."""
    D, psi = _dirac_case(lk.U1, (4, 6), (2,), (), 12)
    if bk.name != "numpy":
        from latticekit.actions import WilsonDirac

        Dk = WilsonDirac(bk.asarray(D.U), lk.U1, D.lattice, kappa=D.kappa)
        fp = backends.fast_path("wilson_dirac_apply", Dk.U)
        assert fp is None or not _is_numba_kernel(fp)
        _close(bk.to_numpy(Dk.apply(bk.asarray(psi))), D.apply(psi))
        return
    kern = _numba_dirac.wilson_dirac_apply
    D.apply(psi)
    links, gam = D._fast_links, D._gam
    assert kern(psi, links, gam, 1.0, -D.kappa) is not None
    ro = psi.copy()
    ro.flags.writeable = False
    for bad in (np.asfortranarray(psi), ro, psi.astype(np.complex64), psi[:1]):
        assert kern(bad, links, gam, 1.0, -D.kappa) is None
    assert kern(psi, links, gam, np.ones(()), -D.kappa) is None          # array coefficient
    calls = _spy(monkeypatch, "wilson_dirac_apply")
    want = _generic(monkeypatch, D.apply, psi)
    _close(D.apply(np.asfortranarray(psi)), want)
    assert calls == [False]
    with pytest.raises(TypeError, match="psi has dtype complex64"):
        D.apply(psi.astype(np.complex64))


def test_wilson_dirac_switch_off(monkeypatch):
    D, psi = _dirac_case(lk.U1, (4, 4), (1,), (), 13)

    def boom(*args, **kwargs):
        raise AssertionError("the fast path must not run with LATTICEKIT_FAST_KERNELS=0")

    monkeypatch.setitem(_fast._REGISTRY, ("wilson_dirac_apply", "numpy"), boom)
    with pytest.raises(AssertionError, match="must not run"):
        D.apply(psi)
    monkeypatch.setenv("LATTICEKIT_FAST_KERNELS", "0")
    D.apply(psi)
    D.hop(psi, dagger=True)


def test_small_calls_run_on_one_thread():
    """``_launch``: a kernel call estimated below 2 ms runs on one thread (parallel regions stall on busy
    machines), a larger one on all, and the thread count is restored either way; the U(1) force of a small
    batch goes through it and gives the same numbers."""
    import numba

    from latticekit.backends import _numba_common

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba was started with one thread (NUMBA_NUM_THREADS=1): nothing to switch")
    seen = []
    nt = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        _numba_common._launch(lambda: seen.append(numba.get_num_threads()), 1e5)
        _numba_common._launch(lambda: seen.append(numba.get_num_threads()), 1e8)
        assert seen == [1, 2] and numba.get_num_threads() == 2
        th = lk.U1.random(backends.rng(4), (3, 2), (8, 8))
        f2 = _numba_gauge.u1_wilson_force(th, 1.3, 2)
        numba.set_num_threads(1)
        assert np.array_equal(f2, _numba_gauge.u1_wilson_force(th, 1.3, 2))
    finally:
        numba.set_num_threads(nt)
