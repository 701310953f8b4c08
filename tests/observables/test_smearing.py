"""Stout smearing (latticekit.observables.smearing) against an independent implementation of Morningstar and
Peardon's formulas, gauge covariance, the group, and the Euler step of the Wilson flow."""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit.gauge import gauge_transform, random_gauge_field
from latticekit.observables import average_plaquette, stout_smear, wilson_flow
from latticekit.testing import assert_close


def _reference_su(U: np.ndarray, N: int, nd: int, rho: float, dirs: tuple[int, ...]) -> np.ndarray:
    """One step written from the paper, independently of the library: U (nd, N, N, *L), one configuration.

    C_mu = rho sum_nu [U_nu(x) U_mu(x+nu) U_nu(x+mu)^dag + U_nu(x-nu)^dag U_mu(x-nu) U_nu(x-nu+mu)],
    Omega = C U^dag, Q = (i/2)(Omega^dag - Omega) - (i/2N) tr(Omega^dag - Omega), U' = exp(iQ) U with exp(iQ)
    from the eigen-decomposition of the Hermitian Q.
    """
    links = [np.moveaxis(U[mu], (0, 1), (-2, -1)) for mu in range(nd)]     # (*L, N, N)

    def sh(f: np.ndarray, mu: int, s: int) -> np.ndarray:                   # f(x + s mu)
        return np.roll(f, -s, axis=mu)

    def dag(m: np.ndarray) -> np.ndarray:
        return np.conj(np.swapaxes(m, -1, -2))

    out = []
    for mu in range(nd):
        if mu not in dirs:
            out.append(U[mu])
            continue
        C = np.zeros_like(links[mu])
        for nu in dirs:
            if nu == mu:
                continue
            Um, Un = links[mu], links[nu]
            C += Un @ sh(Um, nu, 1) @ dag(sh(Un, mu, 1))
            Unm = sh(Un, nu, -1)
            C += dag(Unm) @ sh(Um, nu, -1) @ sh(sh(Un, nu, -1), mu, 1)
        Om = rho * C @ dag(links[mu])
        D = dag(Om) - Om
        Q = 0.5j * D - (0.5j / N) * np.trace(D, axis1=-2, axis2=-1)[..., None, None] * np.eye(N)
        w, v = np.linalg.eigh(Q)
        expiQ = v @ (np.exp(1j * w)[..., None] * dag(v))
        out.append(np.moveaxis(expiQ @ links[mu], (-2, -1), (0, 1)))
    return np.stack(out)


def _reference_u1(theta: np.ndarray, nd: int, rho: float, dirs: tuple[int, ...]) -> np.ndarray:
    """The same for U(1) angles (nd, *L): theta' = theta + Im Omega (no trace to remove)."""
    e = np.exp(1j * theta)
    out = []
    for mu in range(nd):
        if mu not in dirs:
            out.append(theta[mu])
            continue
        C = np.zeros(theta.shape[1:], dtype=complex)
        for nu in dirs:
            if nu == mu:
                continue
            C += e[nu] * np.roll(e[mu], -1, nu) * np.conj(np.roll(e[nu], -1, mu))
            C += np.conj(np.roll(e[nu], 1, nu)) * np.roll(e[mu], 1, nu) * np.roll(np.roll(e[nu], 1, nu), -1, mu)
        out.append(theta[mu] + np.imag(rho * C * np.conj(e[mu])))
    return np.stack(out)


CASES = [  # group, shape, directions
    ("SU3", (4, 4, 4, 4), None),
    ("SU3", (4, 4, 2, 6), (1, 2, 3)),
    ("SU2", (4, 6, 4), None),
    ("SU2", (2, 4, 4, 4), (0, 2)),
    ("U1", (6, 4), None),
    ("U1", (4, 4, 4, 4), (1, 3)),
]


@pytest.mark.parametrize("gname, shape, dirs", CASES)
def test_stout_matches_independent_formula(bk, gname: str, shape: tuple[int, ...], dirs: tuple[int, ...] | None):
    G, lat = lk.groups.group_from_name(gname), lk.Lattice(shape)
    nd = lat.nd
    rho, steps = 0.13, 2
    U = random_gauge_field(G, lat, bk.rng(3), batch_shape=(2,))
    V = bk.to_numpy(stout_smear(U, G, lat, rho, steps, directions=dirs))
    U0 = bk.to_numpy(U)
    d = tuple(range(nd)) if dirs is None else dirs
    for b in range(2):
        R = U0[b]
        for _ in range(steps):
            R = _reference_u1(R, nd, rho, d) if gname == "U1" else _reference_su(R, G.N, nd, rho, d)
        # float64 arithmetic in both; the library's closed-form exp against eigh: rounding only
        assert_close(V[b], R, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gname, dirs", [("SU3", None), ("SU3", (1, 2, 3)), ("SU2", None), ("U1", None)])
def test_stout_is_gauge_covariant_and_stays_in_the_group(bk, gname: str, dirs: tuple[int, ...] | None):
    G, lat = lk.groups.group_from_name(gname), lk.Lattice((4, 4, 2, 4))
    U = random_gauge_field(G, lat, bk.rng(5), batch_shape=(1,))
    Om = G.random(bk.rng(6), (1,), lat.shape)
    V = stout_smear(U, G, lat, 0.12, 3, directions=dirs)
    Vt = stout_smear(gauge_transform(U, Om, G, lat), G, lat, 0.12, 3, directions=dirs)
    assert_close(bk.to_numpy(G.normalize(Vt, nd=lat.nd)),
                 bk.to_numpy(G.normalize(gauge_transform(V, Om, G, lat), nd=lat.nd)), rtol=0, atol=1e-12)
    if gname != "U1":
        assert float(bk.to_numpy(G.defect(V, nd=lat.nd)).max()) < 1e-13
    # a negative control: without the transformation of the smeared field the two differ at O(1)
    assert float(np.abs(bk.to_numpy(Vt) - bk.to_numpy(gauge_transform(U, Om, G, lat))).max()) > 0.1


def test_stout_steps_converge_to_the_wilson_flow(numpy_bk):
    """n steps of rho = t/n are the Euler integration of the flow (RK3 at eps = 0.02 is exact to ~5e-6 here).

    NumPy only (1.5 s; 15 s on array_api_strict): 56 smearing steps and 45 flow-force evaluations. The step
    itself is compared with the paper's formula on every backend (test_stout_matches_independent_formula)."""
    bk = numpy_bk
    G, lat = lk.SU(2), lk.Lattice((2, 4, 4))
    U = stout_smear(random_gauge_field(G, lat, bk.rng(7), batch_shape=(1,)), G, lat, 0.1, 2)   # a rough start
    t = 0.3
    W, _ = wilson_flow(U, G, lat, t, eps=0.02, measure=None)
    W = bk.to_numpy(W)
    V = {n: bk.to_numpy(stout_smear(U, G, lat, t / n, n)) for n in (8, 16, 32)}
    errs = [float(np.abs(V[n] - W).max()) for n in (8, 16, 32)]
    # first order: halving the step halves the error (the O(1/n^2) correction moves the ratio by < 0.05 here);
    # a step of the wrong size or sign, or a missing staple, leaves an O(1) error that does not shrink
    for a, b in zip(errs, errs[1:]):
        assert 0.45 < b / a < 0.56, errs
    # and the Richardson combination 2 V_32 - V_16 removes the O(1/n) term: 2.3e-4 against 8.0e-3 here
    assert float(np.abs(2 * V[32] - V[16] - W).max()) < 0.1 * errs[-1], errs


def test_stout_smooths_and_leaves_other_links(bk):
    G, lat = lk.SU(3), lk.Lattice((4, 2, 4, 2))
    U = random_gauge_field(G, lat, bk.rng(9), batch_shape=(1,))
    p = [float(bk.to_numpy(average_plaquette(stout_smear(U, G, lat, 0.1, n), G, lat))[0]) for n in range(4)]
    assert p[0] < p[1] < p[2] < p[3], p                       # steepest descent of the Wilson action
    V = stout_smear(U, G, lat, 0.1, 2, directions=(1, 2, 3))
    assert bool(bk.to_numpy(V[:, 0, ...] == U[:, 0, ...]).all())       # time links untouched by spatial smearing
    assert bool(bk.to_numpy(stout_smear(U, G, lat, 0.1, 0) == U).all())


@pytest.mark.parametrize("kwargs, match", [
    ({"rho": -0.1}, "rho=-0.1"),
    ({"rho": float("nan")}, "rho=nan"),
    ({"rho": "0.1"}, "rho='0.1'"),
    ({"rho": 0.1, "n_steps": -1}, "n_steps=-1"),
    ({"rho": 0.1, "n_steps": 1.5}, "n_steps=1.5"),
    ({"rho": 0.1, "directions": (1,)}, "at least two"),
    ({"rho": 0.1, "directions": (1, 1, 2)}, "listed twice"),
    ({"rho": 0.1, "directions": (1, 4)}, "directions 0 .. 3"),
    ({"rho": 0.1, "directions": 3}, "expected a sequence"),
])
def test_stout_bad_arguments_are_named(kwargs: dict, match: str):
    G, lat = lk.SU(2), lk.Lattice((2, 2, 2, 2))
    U = lk.gauge.cold_gauge_field(G, lat, (1,))
    with pytest.raises((ValueError, TypeError), match=match):
        stout_smear(U, G, lat, **kwargs)


@pytest.mark.parametrize("gname, dirs", [("U1", None), ("SU2", (0, 2)), ("SU3", None)])
def test_stout_is_differentiable(torch_backends, gname: str, dirs: tuple[int, ...] | None):
    """torch autograd through the smearing: the directional derivative of a smeared plaquette along a random
    algebra direction against the central difference (float64, h = 1e-5: truncation ~1e-10, rounding ~1e-11)."""
    import torch

    G = lk.groups.group_from_name(gname)
    lat = lk.Lattice((2, 2, 4) if gname != "U1" else (3, 3))
    for b in torch_backends:
        U0 = random_gauge_field(G, lat, b.rng(11), batch_shape=(1,))
        shape = (1, lat.nd, G.algebra_dim) + lat.shape
        gen = torch.Generator(b.device).manual_seed(0)
        x = 0.1 * torch.randn(shape, dtype=torch.float64, device=b.device, generator=gen)
        v = torch.randn(shape, dtype=torch.float64, device=b.device, generator=gen)

        def f(omega: torch.Tensor) -> torch.Tensor:
            U = G.exp_mul(G.from_coords(omega, nd=lat.nd), U0, nd=lat.nd)
            return average_plaquette(stout_smear(U, G, lat, 0.15, 2, directions=dirs), G, lat).sum()

        x.requires_grad_()
        (g,) = torch.autograd.grad(f(x), x)
        h = 1e-5
        with torch.no_grad():
            fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
        assert_close(float((g * v).sum()), float(fd), rtol=1e-7, atol=1e-9)
