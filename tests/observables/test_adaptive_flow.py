"""The adaptive-step Wilson flow (latticekit.observables.adaptive_flow, arXiv:1301.4388): the embedded estimate is
second order and the kept update is the library's RK3 step, the flow agrees with fine fixed steps to within what
delta allows, lands on the requested times, is gauge covariant, grows its steps as the field smooths, and refuses
bad input."""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit.gauge import gauge_transform, random_gauge_field
from latticekit.observables import energy_density_plaquette, wilson_flow, wilson_flow_adaptive, wilson_flow_step
from latticekit.observables.adaptive_flow import _distance, _rk3_and_second_order
from latticekit.testing import assert_close


@pytest.mark.parametrize("gname", ["SU3", "U1"])
def test_embedded_estimate_is_second_order_and_the_kept_step_is_rk3(bk, gname: str):
    """d(eps) = max ||V_RK3 - V'|| is the local error of the second-order update, O(eps^3): halving eps divides it
    by 8 (measured 7.9-8.1 here; exp(2 Z_1 - Z_0) applied to W_1 instead of V_t, a first-order estimate,
    gives 2.0). The kept field is wilson_flow_step's, to the last bit."""
    G = lk.SU(3) if gname == "SU3" else lk.U1
    lat = lk.Lattice((4, 4))
    U = wilson_flow(random_gauge_field(G, lat, bk.rng(1), batch_shape=(2,)), G, lat, 0.2, eps=0.05, measure=None)[0]
    d = []
    for eps in (0.04, 0.02, 0.01):
        V3, V2 = _rk3_and_second_order(U, G, lat, eps)
        assert_close(bk.to_numpy(V3), bk.to_numpy(wilson_flow_step(U, G, lat, eps)), rtol=0, atol=0)
        d.append(_distance(V3, V2, G, lat))
    ratios = [d[0] / d[1], d[1] / d[2]]
    assert all(6.5 < r < 9.0 for r in ratios), (d, ratios)


def test_agrees_with_fine_fixed_steps_and_lands_on_the_times(bk):
    """SU(2) 4x4 from a Haar-random start to t = 0.5, measured at 0.1 and 0.3: against fixed RK3 steps of 0.01
    (their own error 5e-7 in E, from steps of 0.0025), E differs by 9.7e-5 at delta = 1e-3 and by 1.1e-5 at
    delta = 1e-4 (about delta / 10; the bounds are 3x these, and the error must fall with delta); the step sizes
    add up to t and the measurement times are hit exactly."""
    G, lat = lk.SU(2), lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, bk.rng(2), batch_shape=(2,))

    def E(V, t):
        return energy_density_plaquette(V, G, lat)

    _, ref = wilson_flow(U, G, lat, 0.5, eps=0.01, measure=E)
    ref_t, ref_v = bk.to_numpy(ref["t"]), bk.to_numpy(ref["values"])
    want = np.stack([ref_v[int(np.argmin(np.abs(ref_t - x)))] for x in (0.0, 0.1, 0.3, 0.5)])
    errs, n = {}, {}
    for delta in (1e-3, 1e-4):
        V, h = wilson_flow_adaptive(U, G, lat, 0.5, delta=delta, times=[0.1, 0.3], measure=E)
        assert bk.to_numpy(h["t"]).tolist() == [0.0, 0.1, 0.3, 0.5]
        assert_close(sum(h["step_sizes"]), 0.5, rtol=1e-12, atol=0)
        assert h["n_steps"] == len(h["step_sizes"])
        errs[delta], n[delta] = float(np.abs(bk.to_numpy(h["values"]) - want).max()), h["n_steps"]
    assert errs[1e-3] < 3e-4 and errs[1e-4] < 3e-5 and errs[1e-4] < errs[1e-3] / 4, errs
    assert n[1e-3] < n[1e-4] < 50, n       # fewer steps than the fixed 0.01 at either delta


def test_steps_grow_as_the_field_smooths(numpy_bk):
    """SU(2) 6x6 from a Haar-random start to t = 4 at delta = 1e-5: the steps grow from 0.01 to about 0.1 (the
    generator falls as the field smooths), 96 steps where the first step size would need 400. NumPy only: the step
    control is host arithmetic on the distance, the same for every backend (tested above)."""
    G, lat = lk.SU(2), lk.Lattice((6, 6))
    U = random_gauge_field(G, lat, numpy_bk.rng(2), batch_shape=(2,))
    _, h = wilson_flow_adaptive(U, G, lat, 4.0, delta=1e-5, measure=None)
    s = h["step_sizes"]
    assert max(s) > 5 * s[0] and h["n_steps"] < 0.5 * 4.0 / s[0], (h["n_steps"], s[0], max(s))


def test_is_gauge_covariant_with_the_same_steps(bk):
    """d is gauge invariant (||Omega V Omega^dag - Omega V' Omega^dag|| = ||V - V'||), so a gauge-transformed field
    takes the same steps and flows to the transformed result."""
    G, lat = lk.SU(2), lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, bk.rng(4), batch_shape=(1,))
    Om = G.random(bk.rng(5), (1,), lat.shape)
    V, h = wilson_flow_adaptive(U, G, lat, 0.5, delta=1e-5, measure=None)
    Vt, ht = wilson_flow_adaptive(gauge_transform(U, Om, G, lat), G, lat, 0.5, delta=1e-5, measure=None)
    assert_close(np.asarray(ht["step_sizes"]), np.asarray(h["step_sizes"]), rtol=1e-9, atol=0)
    assert_close(bk.to_numpy(Vt), bk.to_numpy(gauge_transform(V, Om, G, lat)), rtol=0, atol=1e-11)


def test_float32_and_a_delta_below_its_resolution(numpy_bk):
    """Single-precision fields flow at delta = 1.2e-6 (ten times float32's epsilon; d's rounding floor is near 1e-7: 5e-7
    still worked here, 1e-7 crept on with steps of 3e-6 and a helper's run took 25 minutes at the default
    max_steps); a smaller delta is refused before any work, and a flow that needs more than max_steps stops with
    an error naming it."""
    bk, G, lat = numpy_bk, lk.SU(2), lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, bk.rng(6), batch_shape=(1,), precision="single")
    V, h = wilson_flow_adaptive(U, G, lat, 0.5, delta=1.2e-6)
    assert V.dtype == U.dtype and h["t"].dtype == np.float32 and h["n_steps"] > 0
    with pytest.raises(ValueError, match=r"^delta=1e-07: below what a complex64 field resolves \(10 x its machine "):
        wilson_flow_adaptive(U, G, lat, 0.5, delta=1e-7)
    with pytest.raises(RuntimeError, match=r"^wilson_flow_adaptive: 5 steps \(max_steps\) reached flow time .* raise "
                                           r"max_steps or delta"):
        wilson_flow_adaptive(U, G, lat, 0.5, delta=1e-4, max_steps=np.int64(5))


def test_zero_flow_time_and_no_measurements(numpy_bk):
    G, lat = lk.U1, lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, numpy_bk.rng(7))
    V, h = wilson_flow_adaptive(U, G, lat, 0.0)
    assert V is U and h["t"].tolist() == [0.0] and h["n_steps"] == 0
    V, h = wilson_flow_adaptive(U, G, lat, 0.3, measure=None)
    assert set(h) == {"t", "n_steps", "n_rejected", "step_sizes"} and h["t"].tolist() == []


@pytest.mark.parametrize("kwargs, match", [
    ({"t": -1.0}, r"^t=-1.0: expected a finite flow time >= 0"),
    ({"delta": 0.0}, r"^delta=0.0: expected a finite positive number"),
    ({"delta": 10}, r"^delta=10: expected a bound below 0.1 on the per-step link distance"),
    ({"eps0": float("nan")}, r"^eps0=nan: expected a finite positive number"),
    ({"eps_max": -1}, r"^eps_max=-1: expected a finite positive number"),
    ({"max_steps": 0}, r"^max_steps=0: expected an integer >= 1"),
    ({"times": [0.5, 0.2]}, r"^times=\[0.5, 0.2\]: expected strictly increasing flow times in \(0, t=1.0\]"),
    ({"times": [2.0]}, r"^times=\[2.0\]: expected strictly increasing"),
    ({"times": "ab"}, r"^times='ab': expected a sequence of flow times"),
    ({"measure": "all"}, r"^measure='all': expected 'default', a callable"),
])
def test_bad_arguments_are_named(kwargs: dict, match: str):
    G, lat = lk.U1, lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, lk.backends.rng(0))
    args = {"t": 1.0, **kwargs}
    t = args.pop("t")
    with pytest.raises(ValueError, match=match):
        wilson_flow_adaptive(U, G, lat, t, **args)


def test_a_last_time_within_rounding_of_t_is_t_and_measurements_may_be_numbers(bk):
    """times=[0.3] with t = 0.1 * 3 measured twice (at 0.3 and 0.30000000000000004, after a step of 6e-17), and a
    measure returning Python floats failed after the whole flow with "arrays from different or unsupported array
    libraries: []" (user probe): the last time is t, and numbers are measurements (0-d arrays of U's library);
    anything else is refused at the first measurement, naming measure."""
    G, lat = lk.U1, lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, bk.rng(3))
    xp = bk.xp
    V, h = wilson_flow_adaptive(U, G, lat, 0.1 * 3, times=[0.3], measure=lambda V, t: float(xp.mean(V)))
    assert bk.to_numpy(h["t"]).tolist() == [0.0, 0.1 * 3] and tuple(h["values"].shape) == (2,)
    assert_close(bk.to_numpy(h["values"])[1], float(xp.mean(V)), rtol=1e-15, atol=1e-15)
    for flow in (wilson_flow_adaptive, wilson_flow):
        _, h = flow(U, G, lat, 0.2, measure=lambda V, t: {"time": t, "E": energy_density_plaquette(V, G, lat)})
        assert_close(bk.to_numpy(h["time"]), bk.to_numpy(h["t"]), rtol=1e-15, atol=0)
        assert tuple(h["E"].shape) == tuple(h["t"].shape) and tuple(h["t"].shape)[0] >= 2
        with pytest.raises(TypeError, match=r"^measure returned str 'x'; expected an array, a real number or a dict"):
            flow(U, G, lat, 0.2, measure=lambda V, t: "x")
