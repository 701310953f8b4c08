"""The ``torch.compile`` SU(N) gauge and Wilson-Dirac kernels (backends/_kernels_torch_sun.py,
backends/_kernels_torch_dirac.py; the GPU path of issue 19, opt-in), and the 2D U(1) and phi^4 ones of
backends/_kernels_torch.py, against the generic Array API code (the CG updates: tests/linalg/test_cg_fused.py).

They are compiled here on the CPU (Inductor's C++ backend) and, where a GPU is present, on CUDA (Triton),
through the ``dev`` parameter (``-k cuda`` selects the GPU cases: benchmarks/gpu_kernels.sh). The SU(N) and
Wilson-Dirac kernels use the arithmetic of the generic code, so the check is 1e-14 relative in float64 (the
U(1) and phi^4 ones fuse their trigonometry: 1e-13). Each distinct graph costs Inductor 5-25 s to compile on a
cold cache; the cases are
chosen to cover every branch (nd = 2, 3, 4 for the staples and the gamma tables, Nc = 1, 2, 3, both boundaries,
D and D^dag, with and without alpha, source dimensions) with few graphs, and later tests reuse the shapes of
earlier ones.
"""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.actions.dirac import WilsonDirac
from latticekit.actions.even_odd import EvenOddDirac
from latticekit.actions.wilson_gauge import wilson_gauge_action, wilson_gauge_force
from latticekit.backends import _fast, _kernels_torch, _kernels_torch_dirac, _kernels_torch_sun
from latticekit.observables.plaquette import average_plaquette, plaquette_field
from latticekit.testing import assert_close

torch = pytest.importorskip("torch")

# the torch devices of the ``torch_backends`` fixture (tests/conftest.py) as a parameter, so that a GPU session
# can select its cases by id without compiling the CPU graphs too
DEVICES = [pytest.param("cpu", id="cpu"),
           pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                    reason="no CUDA device visible to torch"))]


@pytest.fixture(autouse=True)
def _generic_reference(monkeypatch):
    """References come from the generic code: no fast path unless a test registers one."""
    monkeypatch.setenv("LATTICEKIT_FAST_KERNELS", "0")


def _gauge(G, lat, batch, seed, dev):
    U = G.random(backends.rng(seed, backend="numpy"), batch + (lat.nd,), lat.shape)
    return torch.tensor(np.ascontiguousarray(U), device=dev)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("N, shape", [(3, (4, 4)), (2, (3, 2, 4)), (4, (2, 4))])
@pytest.mark.parametrize("dev", DEVICES)
def test_sun_kernels_match_generic(dev, N, shape):
    """The sum in 2D and the field in 3D (several planes; both share ``_plaquettes``), the force in both (the
    staple loop over rho with one and with two other directions)."""
    G, lat = lk.SU(N), lk.Lattice(shape)
    nd = lat.nd
    U = _gauge(G, lat, (2,), 5 + N, dev)
    if nd == 2:
        s = _kernels_torch_sun.sun_re_tr_plaquette_sum(U, nd)
        assert s.shape == (2,)
        assert _rel(s, wilson_gauge_action(U, 1.0, G, lat) * (-N)) < 1e-14
    else:
        f = _kernels_torch_sun.sun_plaquette_field(U, nd)
        assert f.shape == (2, 3) + shape
        assert _rel(f, plaquette_field(U, G, lat)) < 1e-14
    for beta in (2.5, 6.0):               # a new beta is a new tensor value, not a new graph
        F = _kernels_torch_sun.sun_wilson_force(U, beta, nd)
        assert F.shape == U.shape and F.dtype == U.dtype
        assert _rel(F, wilson_gauge_force(U, beta, G, lat)) < 1e-14
    # the force is traceless anti-Hermitian
    FF = F.movedim((-nd - 2, -nd - 1), (-2, -1))
    assert float((FF + FF.conj().transpose(-1, -2)).abs().max()) < 1e-14
    assert float(FF.diagonal(dim1=-2, dim2=-1).sum(-1).abs().max()) < 1e-14


@pytest.mark.parametrize("dev", DEVICES)
def test_sun_plaquette_gradient_matches_generic(dev):
    """Autograd through the compiled plaquette sum (AOTAutograd) against autograd through the generic code."""
    G, lat = lk.SU(3), lk.Lattice((4, 4))
    U0 = _gauge(G, lat, (2,), 3, dev)
    grads = []
    for fn in (lambda U: _kernels_torch_sun.sun_re_tr_plaquette_sum(U, 2),
               lambda U: wilson_gauge_action(U, 1.0, G, lat) * (-3)):
        U = U0.clone().requires_grad_(True)
        (fn(U) * torch.tensor([0.3, -1.2], dtype=torch.float64, device=dev)).sum().backward()
        grads.append(U.grad)
    assert _rel(grads[0], grads[1]) < 1e-14


@pytest.mark.parametrize("dev", DEVICES)
def test_wilson_dirac_link_gradient_matches_generic(dev):
    """Autograd through the compiled hopping term w.r.t. the links (the pseudofermion flows differentiate
    ``D psi`` through the gauge field) against autograd through the generic code."""
    G, lat = lk.SU(3), lk.Lattice((4, 4))
    U0 = _gauge(G, lat, (2,), 1, dev)
    D0 = WilsonDirac(U0, G, lat, kappa=0.12)
    psi, chi = (torch.tensor(np.asarray(D0.random_field(backends.rng(s, backend="numpy"))), device=dev)
                for s in (2, 3))
    grads = []
    for fast in (False, True):
        U = U0.clone().requires_grad_(True)
        D = WilsonDirac(U, G, lat, kappa=0.12)
        out = (_kernels_torch_dirac.wilson_dirac_apply(psi, D._links_for_kernels(), D._gam, 1.0, -0.12) if fast
               else D.apply(psi))
        (chi.conj() * out).real.sum().backward()
        grads.append(U.grad)
    assert _rel(grads[1], grads[0]) < 1e-14


@pytest.mark.parametrize("gname, shape, sources",
                         [("U1", (4, 6), (3,)), ("SU3", (4, 4), ()), ("U1", (4, 2, 2, 3), (2,))])
@pytest.mark.parametrize("dev", DEVICES)
def test_wilson_dirac_matches_generic(dev, gname, shape, sources):
    G = lk.U1 if gname == "U1" else lk.SU(3)
    lat = lk.Lattice(shape)
    U = _gauge(G, lat, (2,), 7, dev)
    for anti in (True, False):
        D = WilsonDirac(U, G, lat, kappa=0.13, antiperiodic=anti)
        psi = torch.tensor(np.asarray(D.random_field(backends.rng(9, backend="numpy"), sources + (2,))),
                           device=dev)
        links = D._links_for_kernels()
        for dag in (False, True):
            out = _kernels_torch_dirac.wilson_dirac_apply(psi, links, D._gam, 1.0, -0.13, dagger=dag,
                                                          antiperiodic=anti)
            assert out.shape == psi.shape and out.dtype == psi.dtype
            assert _rel(out, D.apply_dagger(psi) if dag else D.apply(psi)) < 1e-14
            hop = _kernels_torch_dirac.wilson_dirac_apply(psi, links, D._gam, 0.0, 1.0, dagger=dag,
                                                          antiperiodic=anti)
            assert _rel(hop, D.hop(psi, dagger=dag)) < 1e-14


def test_declines_unqualified_inputs():
    G, lat = lk.SU(3), lk.Lattice((4, 4))
    U = _gauge(G, lat, (), 1, "cpu")
    sun = _kernels_torch_sun
    assert sun.sun_re_tr_plaquette_sum(U.numpy(), 2) is None                      # not a tensor
    assert sun.sun_re_tr_plaquette_sum(U.real, 2) is None                         # not complex
    assert sun.sun_re_tr_plaquette_sum(U, 3) is None                              # layout of another nd
    assert sun.sun_re_tr_plaquette_sum(U[..., :1, :1, :, :], 2) is None          # 1 x 1: not SU(N)
    assert sun.sun_wilson_force(U, 1 + 2j, 2) is None                             # complex beta
    D = WilsonDirac(U, G, lat, kappa=0.1)
    psi = torch.tensor(np.asarray(D.random_field(backends.rng(2, backend="numpy"))))
    links = D._links_for_kernels()
    wd = _kernels_torch_dirac.wilson_dirac_apply
    assert wd(psi.numpy(), links, D._gam, 1.0, -0.1) is None
    assert wd(psi.to(torch.complex64), links, D._gam, 1.0, -0.1) is None         # mixed precision
    assert wd(psi, links, D._gam, 1.0, 0.1j) is None                              # complex beta
    assert wd(psi, links, D._gam[:1], 1.0, -0.1) is None                          # one direction
    assert wd(psi[..., :2, :], links, D._gam, 1.0, -0.1) is None                 # wrong lattice
    diag = ((0, 1), (1, -1))                                                      # a diagonal "gamma"
    assert wd(psi, links, (D._gam[0], diag), 1.0, -0.1) is None


def test_registered_kernels_run_behind_the_library_calls(monkeypatch):
    """With the kernels registered, the library's own calls (action, force, plaquette, D, D^dag, the even/odd
    Schur operator) run them, and agree with the generic code; every name of ``_kernels_torch.NAMES`` is
    registered."""
    G, lat = lk.SU(3), lk.Lattice((4, 4))      # the shapes of the tests above: their graphs, no new compilation
    U = _gauge(G, lat, (2,), 4, "cpu")
    D = WilsonDirac(U, G, lat, kappa=0.12)
    psi = torch.tensor(np.asarray(D.random_field(backends.rng(3, backend="numpy"))))
    Deo = EvenOddDirac(D)
    psi_e = Deo.even(psi)

    def everything():
        return [wilson_gauge_action(U, 5.0, G, lat), wilson_gauge_force(U, 5.0, G, lat), average_plaquette(U, G, lat),
                plaquette_field(U, G, lat), D.apply(psi), D.apply_dagger(psi), Deo.apply(psi_e),
                Deo.apply_dagger(psi_e)]

    ref = everything()
    monkeypatch.setattr(_fast, "_REGISTRY", dict(_fast._REGISTRY))
    monkeypatch.setattr(_fast, "_BUILTINS_LOADED", True)
    monkeypatch.setenv("LATTICEKIT_FAST_KERNELS", "1")
    assert _kernels_torch.register() == _kernels_torch.NAMES
    assert all((n, "torch") in _fast._REGISTRY for n in _kernels_torch.NAMES)
    calls = []
    for name in _kernels_torch_sun.NAMES + _kernels_torch_dirac.NAMES:
        def spy(*a, _f=_fast._REGISTRY[(name, "torch")], _n=name, **kw):
            out = _f(*a, **kw)
            calls.append((_n, out is not None))
            return out
        _fast._REGISTRY[(name, "torch")] = spy
    got = everything()
    assert {n for n, ok in calls if ok} == set(_kernels_torch_sun.NAMES + _kernels_torch_dirac.NAMES)
    assert all(ok for _, ok in calls)
    for g, r in zip(got, ref):
        assert_close(g.numpy(), r.numpy(), rtol=1e-14, atol=1e-14 * float(r.abs().max()))


@pytest.mark.parametrize("dev", DEVICES)
def test_u1_and_phi4_compiled_kernels_match_generic(dev, monkeypatch):
    """The 2D U(1) and phi^4 kernels of backends/_kernels_torch.py (measured in bench_gpu.py, used on a GPU with
    ``LATTICEKIT_FAST_KERNELS=1``) against the generic code; their arithmetic differs (fused cos/sin, another
    summation order), so 1e-13 relative."""
    from latticekit.actions.phi4 import Phi4Action

    lat = lk.Lattice((4, 6))
    th = torch.tensor(lk.U1.random(backends.rng(2, backend="numpy"), (3, 2), lat.shape), device=dev)
    phi = torch.tensor(backends.rng(4, backend="numpy").normal((3,) + lat.shape), device=dev)
    S = Phi4Action(lat, 0.21, 0.03)
    ref = [wilson_gauge_action(th, 1.7, lk.U1, lat), wilson_gauge_force(th, 1.7, lk.U1, lat), S.action(phi),
           S.force(phi)]
    fn = {n: _kernels_torch._lazy(n) for n in ("u1_plaquette_cos_sum", "u1_wilson_force", "phi4_action", "phi4_force")}
    got = [-1.7 * fn["u1_plaquette_cos_sum"](th, 2), fn["u1_wilson_force"](th, 1.7, 2),
           fn["phi4_action"](phi, 0.21, 0.03, 2), fn["phi4_force"](phi, 0.21, 0.03, 2)]
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        assert _rel(g, r) < 1e-13
