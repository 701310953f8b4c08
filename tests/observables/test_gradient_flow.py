"""Wilson flow (RK3): order of the integrator, gauge covariance, monotonic action, topology."""

from __future__ import annotations

import math

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions import wilson_gauge_action, wilson_gauge_force
from latticekit.gauge import cold_gauge_field, gauge_transform, random_gauge_field
from latticekit.observables.gradient_flow import (
    flow_beta,
    flow_generator,
    flow_observables,
    wilson_flow,
    wilson_flow_step,
)
from latticekit.observables import topological_charge_u1_2d, u1_flux_field
from latticekit.testing import assert_close

GROUPS = [lk.U1, lk.SU(2), lk.SU(3)]


def _field(bk, group, lat, seed=0, batch=(2,), rough=0.8):
    rng = bk.rng(seed)
    if group is lk.U1:
        return random_gauge_field(group, lat, rng, batch)
    return group.near_identity(rng, batch + (lat.nd,), lat.shape, eps=rough)


def _flow(U, group, lat, t, n):
    V = U
    for _ in range(n):
        V = wilson_flow_step(V, group, lat, t / n)
    return V


@pytest.mark.parametrize("group", [lk.U1, lk.SU(2)], ids=str)
def test_rk3_global_error_is_third_order(bk, group):
    lat = lk.Lattice((2, 4))
    U = _field(bk, group, lat)
    t = 0.4
    ref = bk.to_numpy(_flow(U, group, lat, t, 36))
    errs = [np.abs(bk.to_numpy(_flow(U, group, lat, t, n)) - ref).max() for n in (6, 12)]
    order = math.log2(errs[0] / errs[1])
    assert_close(order, 3.0, rtol=0, atol=0.5, msg=f"order {order}, errors {errs}")


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_flow_is_gauge_covariant(bk, group):
    lat = lk.Lattice((4, 4)) if group is not lk.SU(3) else lk.Lattice((2, 4))
    U = _field(bk, group, lat, seed=1)
    Om = group.random(bk.rng(2), (2,), lat.shape)
    a = gauge_transform(_flow(U, group, lat, 0.2, 2), Om, group, lat)
    b = _flow(gauge_transform(U, Om, group, lat), group, lat, 0.2, 2)
    if group is lk.U1:  # angles: compare modulo 2 pi
        assert_close(np.angle(np.exp(1j * (bk.to_numpy(a) - bk.to_numpy(b)))), 0.0, rtol=0, atol=1e-12)
    else:
        assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_cold_and_pure_gauge_fields_stay_put(bk, group):
    lat = lk.Lattice((4, 4))
    U = cold_gauge_field(group, lat, (2,), backend=bk.name, device=bk.device)
    V = wilson_flow_step(U, group, lat, 0.1)
    assert np.abs(bk.to_numpy(V) - bk.to_numpy(U)).max() == 0.0
    Om = group.random(bk.rng(3), (2,), lat.shape)
    W = gauge_transform(U, Om, group, lat)
    E = bk.to_numpy(flow_observables(wilson_flow_step(W, group, lat, 0.1), group, lat)["E_plaquette"])
    assert_close(E, 0.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("group", GROUPS, ids=str)
def test_flow_lowers_the_action_monotonically(bk, group):
    lat = lk.Lattice((4, 4)) if group is not lk.SU(3) else lk.Lattice((2, 2))
    U = random_gauge_field(group, lat, bk.rng(4), (2,))
    V, hist = wilson_flow(U, group, lat, t=0.6, eps=0.05, every=2)
    E = bk.to_numpy(hist["E_plaquette"])  # (n_meas, 2)
    assert E.shape == (7, 2)
    assert np.all(np.diff(E, axis=0) < 0)
    P = 1.0 - E / (2 * lat.nd * (lat.nd - 1) / 2)  # plaquette increases
    assert np.all(np.diff(P, axis=0) > 0)
    assert_close(bk.to_numpy(hist["t2E_plaquette"]), bk.to_numpy(hist["t"])[:, None] ** 2 * E, rtol=1e-5, atol=1e-8)
    if group is not lk.U1:
        assert_close(group.defect(V, nd=2), 0.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("group", [lk.U1, lk.SU(2)], ids=str)
def test_dS_dt_is_minus_force_squared(bk, group):
    """Steepest descent: d S_flow / dt = -sum_a (d_a S_flow)^2 (the sign and the normalisation of Z)."""
    lat = lk.Lattice((4, 4))
    U = _field(bk, group, lat, seed=5, rough=0.5)
    b = flow_beta(group)
    h = 1e-3
    Sp = bk.to_numpy(wilson_gauge_action(_flow(U, group, lat, h, 1), b, group, lat))
    Sm = bk.to_numpy(wilson_gauge_action(_flow(U, group, lat, -h, 1), b, group, lat))
    F = wilson_gauge_force(U, b, group, lat)
    f2 = bk.to_numpy(group.algebra_norm2(F, nd=lat.nd)).reshape(2, -1).sum(axis=1)
    assert_close((Sp - Sm) / (2 * h), -f2, rtol=1e-5, atol=1e-8)
    assert_close(bk.to_numpy(flow_generator(U, group, lat)), -bk.to_numpy(F), rtol=1e-5, atol=1e-8)


def test_flow_preserves_the_topological_charge_of_a_smooth_u1_field(bk):
    lat = lk.Lattice((8, 8))
    U = u1_flux_field(lat, 1, backend=bk.name, device=bk.device)
    U = U + 0.3 * bk.rng(6).normal(tuple(U.shape))
    q0 = float(topological_charge_u1_2d(U, lat))
    V, hist = wilson_flow(U, lk.U1, lat, t=2.0, eps=0.1, every=10)
    Q = bk.to_numpy(hist["Q"])
    assert round(q0) == 1
    assert_close(Q, 1.0, rtol=1e-5, atol=1e-9)
    # the flux field is the minimum of the action at Q = 1: E(t) approaches 2 (1 - cos(2 pi / V))
    E = bk.to_numpy(hist["E_plaquette"])
    emin = 2 * (1 - math.cos(2 * math.pi / 64))
    assert E[-1] < E[0]
    assert_close(E[-1], emin, rtol=0, atol=0.05 * E[0])


def test_4d_su2_flow_runs_and_smooths(bk):
    lat = lk.Lattice((2, 2, 2, 2))
    G = lk.SU(2)
    U = G.near_identity(bk.rng(7), (1, 4), lat.shape, eps=0.6)
    V, hist = wilson_flow(U, G, lat, t=0.2, eps=0.1)
    E = bk.to_numpy(hist["E_clover"])
    assert np.all(np.diff(E[:, 0]) < 0) and "Q" in hist and hist["Q"].shape == (3, 1)


def test_flow_beta_and_bad_input():
    assert flow_beta(lk.SU(3)) == 6.0 and flow_beta(lk.SU(2)) == 4.0 and flow_beta(lk.U1) == 1.0
    lat = lk.Lattice((4, 4))
    U = cold_gauge_field(lk.SU(2), lat)
    with pytest.raises(ValueError, match="eps"):
        wilson_flow_step(U, lk.SU(2), lat, 0.0)
    with pytest.raises(ValueError, match="t="):
        wilson_flow(U, lk.SU(2), lat, t=-1.0)
    with pytest.raises(ValueError, match="measure"):
        wilson_flow(U, lk.SU(2), lat, t=1.0, measure="plaquette")
    with pytest.raises(ValueError, match="2 dimensions"):
        wilson_flow_step(cold_gauge_field(lk.U1, lk.Lattice((4,))), lk.U1, lk.Lattice((4,)), 0.1)
    with pytest.raises(TypeError, match="group"):
        flow_beta("SU3")
    with pytest.raises(ValueError, match=r"^every=True: expected an integer >= 1"):
        wilson_flow(U, lk.SU(2), lat, t=0.3, eps=0.1, every=True)
    _, h = wilson_flow(U, lk.SU(2), lat, t=0.4, eps=0.1, every=np.int64(2))   # NumPy ints were refused
    assert h["t"].shape == (3,)
    V, h = wilson_flow(U, lk.SU(2), lat, t=0.3, eps=0.1, measure=None)
    assert h["t"].shape == (0,)
    V, h = wilson_flow(U, lk.SU(2), lat, t=0.3, eps=0.1, measure=lambda V, t: lk.SU(2).re_trace(V, nd=2))
    assert h["values"].shape == (4, 2, 4, 4)
