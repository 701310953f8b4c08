"""Wilson gauge theory through the registry: observables equal the library's functions on every backend,
exact values equal latticekit.exact called directly, checks refuse what cannot run."""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit import exact, observables as obs
from latticekit.gauge import gauge_transform, random_gauge_field
from latticekit.mc import HMC, Heatbath
from latticekit.testing import assert_close
from latticekit.testing.equivariance import random_gauge_transformation
from latticekit.theories import make_theory
from latticekit.utils import ConfigError


def test_observables_are_the_library_functions(bk) -> None:
    lat = lk.Lattice((4, 4))
    th = make_theory("wilson", lat, {"group": "U1", "beta": 1.3}, {"wilson_loops": [[2, 1], [4, 4]]})
    assert th.observable_names() == ["plaquette", "topological_charge", "wilson_loop_2x1", "wilson_loop_4x4"]
    U = random_gauge_field(lk.U1, lat, bk.rng(0), (3,))
    m = th.measure(U)
    for v in m.values():  # arrays of the field's backend
        assert lk.backends.array_namespace(v) is lk.backends.array_namespace(U)
    assert_close(bk.to_numpy(m["plaquette"]), bk.to_numpy(obs.average_plaquette(U, lk.U1, lat)), rtol=1e-14, atol=0)
    assert_close(bk.to_numpy(m["topological_charge"]), bk.to_numpy(obs.topological_charge_u1_2d(U, lat)),
                 rtol=1e-14, atol=0)
    assert_close(bk.to_numpy(m["wilson_loop_2x1"]), bk.to_numpy(obs.wilson_loop(U, lk.U1, lat, 1, 2)),
                 rtol=1e-14, atol=0)
    # chi_t = <Q^2>/V from the means of Q^2
    d = th.derived()["chi_t"]
    Q = bk.to_numpy(m["topological_charge"])
    assert_close(d.func(np.mean(np.stack(d.series({"topological_charge": Q})), axis=-1)), np.mean(Q ** 2) / 16,
                 rtol=1e-6, atol=0)


def test_observables_in_3d_and_su3(bk) -> None:
    lat = lk.Lattice((2, 4, 2))
    G = lk.SU(3)
    th = make_theory("wilson", lat, {"group": "SU3", "beta": 5.0})
    assert th.observable_names() == ["plaquette", "polyakov_loop_abs", "polyakov_loop_re"]
    assert th.derived() == {} and th.exact() == {}
    U = random_gauge_field(G, lat, bk.rng(1), (2,))
    m = th.measure(U)
    assert_close(bk.to_numpy(m["plaquette"]), bk.to_numpy(obs.average_plaquette(U, G, lat)), rtol=1e-13, atol=0)
    P = bk.to_numpy(obs.average_polyakov_loop(U, G, lat))
    assert_close(bk.to_numpy(m["polyakov_loop_abs"]), np.abs(P), rtol=1e-13, atol=0)
    assert_close(bk.to_numpy(m["polyakov_loop_re"]), P.real, rtol=1e-13, atol=0)
    assert bk.to_numpy(m["polyakov_loop_re"]).dtype == np.float64   # real, not complex with zero imaginary part
    assert th.summary_observables() == ["plaquette"]


def _check_flowed_charge(b, group: str, shape: tuple[int, ...]) -> None:
    lat = lk.Lattice(shape)
    th = make_theory("wilson", lat, {"group": group, "beta": 2.0},
                     {"flowed_topology_t": 0.1, "flowed_topology_eps": 0.05})
    assert th.observable_names()[-1] == "topological_charge_flowed"
    G = th.group
    U = random_gauge_field(G, lat, b.rng(3), (2,))
    q = b.to_numpy(th.measure(U, ["topological_charge_flowed"])["topological_charge_flowed"])
    V, _ = obs.wilson_flow(U, G, lat, 0.1, eps=0.05, measure=None)
    direct = b.to_numpy(obs.topological_charge_clover(V, G, lat))
    assert_close(q, direct, rtol=1e-13, atol=1e-15)
    assert float(np.max(np.abs(q))) > 1e-3          # a random field has a charge far from 0: the check is not 0 == 0
    Om = random_gauge_transformation(U, G, lat, b.rng(4))
    q_rot = b.to_numpy(th.measure(gauge_transform(U, Om, G, lat), ["topological_charge_flowed"])
                       ["topological_charge_flowed"])
    assert_close(q_rot, q, rtol=0, atol=1e-9)


def test_flowed_topological_charge_is_flow_then_clover_charge(bk) -> None:
    """``topological_charge_flowed`` is wilson_flow followed by topological_charge_clover, called directly,
    and gauge invariant, on 2^4 SU(2). Short flow (t = 0.1, 2 RK3 steps of 0.05; at most 2 s per backend,
    array_api_strict): the identity of the two computations does not depend on the flow time. The invariance
    tolerance 1e-9 is rounding: Q is a sum of O(V) products of O(1) link matrices through 6 exponentials, in
    float64, while Q itself is O(0.01-0.1) here."""
    _check_flowed_charge(bk, "SU2", (2, 2, 2, 2))


def test_flowed_topological_charge_su3(numpy_bk) -> None:
    """The same on 3x2x2x2 SU(3) (odd extent: the clover leaves differ from their mirror images), NumPy only:
    0.1 s there, 10 s on array_api_strict, whose generic SU(3) path the SU(2) test above already covers."""
    _check_flowed_charge(numpy_bk, "SU3", (3, 2, 2, 2))


def test_flowed_topological_charge_is_off_by_default_and_checked() -> None:
    th = make_theory("wilson", (2, 2, 2, 2), {"group": "SU2"})
    assert "topological_charge_flowed" not in th.observable_names()
    assert "topological_charge_flowed" not in make_theory("wilson_nf2", (2, 2, 2, 2), {"group": "SU3"},
                                                          {"flowed_topology_t": 0.0}).observable_names()
    nf2 = make_theory("wilson_nf2", (2, 2, 2, 2), {"group": "SU3", "kappa": 0.1}, {"flowed_topology_t": 4.0})
    assert "topological_charge_flowed" in nf2.observable_names()     # the Nf = 2 theory inherits it
    with pytest.raises(ConfigError, match=r"^measure\.flowed_topology_t = 1\.0: .* needs a 4D lattice"):
        make_theory("wilson", (4, 4, 4), {"group": "SU3"}, {"flowed_topology_t": 1.0})
    with pytest.raises(ConfigError,
                       match=r"^measure\.flowed_topology_t = 1\.0: .* SU\(N\) only, got action\.group = 'U1'"):
        make_theory("wilson", (2, 2, 2, 2), {"group": "U1"}, {"flowed_topology_t": 1.0})
    with pytest.raises(ConfigError, match=r"^measure\.flowed_topology_t: expected >= 0"):
        make_theory("wilson", (2, 2, 2, 2), {"group": "SU2"}, {"flowed_topology_t": -1.0})
    with pytest.raises(ConfigError, match=r"^measure\.flowed_topology_eps"):
        make_theory("wilson", (2, 2, 2, 2), {"group": "SU2"}, {"flowed_topology_t": 1.0, "flowed_topology_eps": 0.5})


def test_observables_on_torch_flow_batches() -> None:
    torch = pytest.importorskip("torch")
    lat = lk.Lattice((4, 4))
    th = make_theory("wilson", lat, {"group": "U1", "beta": 1.0})
    U = torch.as_tensor(np.asarray(random_gauge_field(lk.U1, lat, lk.backends.rng(2), (5,))))
    f = th.observables(["plaquette", "topological_charge"])
    assert isinstance(f["plaquette"](U), torch.Tensor) and f["topological_charge"](U).shape == (5,)


def test_exact_values_through_the_registry_are_latticekit_exact() -> None:
    shape = (6, 4)
    th = make_theory("wilson", shape, {"group": "U1", "beta": 1.7}, {"wilson_loops": [[2, 2], [6, 4]]})
    e = th.exact()
    assert e["plaquette"] == exact.u1_2d_plaquette(1.7, shape)
    assert e["chi_t"] == exact.u1_2d_topological_susceptibility(1.7, shape)
    assert e["topological_charge"] == 0.0
    assert e["wilson_loop_2x2"] == exact.u1_2d_wilson_loop(1.7, 2, 2, shape)
    assert e["wilson_loop_6x4"] == exact.u1_2d_wilson_loop(1.7, 6, 4, shape)   # U(1): also the whole torus
    q, p = th.exact_distribution("topological_charge", 3)
    q0, p0 = exact.u1_2d_charge_distribution(1.7, shape, q_max=3)
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(p, p0)
    su = make_theory("wilson", shape, {"group": "SU3", "beta": 4.0}, {"wilson_loops": [[1, 2], [6, 1]]})
    e = su.exact()
    assert e["plaquette"] == exact.sun_2d_plaquette(4.0, 3, shape)
    assert e["wilson_loop_1x2"] == exact.sun_2d_wilson_loop(4.0, 3, 1, 2, shape)
    assert "wilson_loop_6x1" not in e          # not contractible: the torus formula does not apply
    assert su.exact_distribution("topological_charge", 3) is None


def test_samplers_and_checks() -> None:
    th = make_theory("wilson", (4, 4), {"group": "SU2", "beta": 2.0})
    cls = type(th)
    hb = th.sampler("heatbath", cls.samplers["heatbath"](overrelaxation=3), rng=lk.backends.rng(0))
    assert isinstance(hb, Heatbath) and hb.n_overrelax == 3
    hmc = th.sampler("hmc", cls.samplers["hmc"](step_size=0.05, n_steps=7), rng=lk.backends.rng(0))
    assert isinstance(hmc, HMC) and (hmc.step_size, hmc.n_steps) == (0.05, 7)
    assert th.describe() == "SU(2) Wilson (beta=2.0)" and th.ensemble_params() == {"beta": 2.0}
    with pytest.raises(ConfigError, match=r"lattice\.shape: a gauge theory needs at least 2 dimensions"):
        make_theory("wilson", (4,))
    with pytest.raises(ConfigError, match=r"lattice\.shape: the checkerboard heatbath needs even extents"):
        cls.check_sampler("heatbath", cls.samplers["heatbath"](), (5, 4))
    with pytest.raises(ConfigError, match="larger than the lattice"):
        make_theory("wilson", (4, 4), {}, {"wilson_loops": [[2, 5]]})
    # a loop listed twice was two measurements of one name: a run recorded each value twice (tau_int doubled)
    with pytest.raises(ConfigError, match=r"measure\.wilson_loops.*the loop \[2, 1\] is listed twice"):
        make_theory("wilson", (4, 4), {}, {"wilson_loops": [[2, 1], [2, 1]]})
    th = make_theory("wilson", (4, 4), {}, {"wilson_loops": [[2, 1]]})
    th.measurements = lambda: [m for m in type(th).measurements(th) for _ in range(2)]   # a theory that repeats
    with pytest.raises(ValueError, match=r"the observables \['plaquette', .*'wilson_loop_2x1'\] are measured twice"):
        th.observable_names()
    with pytest.raises(ConfigError, match="SU<N>"):
        make_theory("wilson", (4, 4), {"group": "U2"})


@pytest.mark.parametrize("group, beta", [("U1", 1.0), ("SU2", 2.0), ("SU3", 3.0)])
def test_exact_log_z_is_the_haar_average_of_exp_minus_s(bk, group, beta) -> None:
    """Z = E_Haar[exp(-S)] with the normalised Haar measure: the convention the flows' log q refers to.
    40000 Haar fields on 2x2; the deviation is bounded by 5 delta-method errors (each < 0.03, while beta/N in
    place of beta moves log Z by 0.5 to 1.4 here, so a wrong coupling or measure convention fails)."""
    lat = lk.Lattice((2, 2))
    th = make_theory("wilson", lat, {"group": group, "beta": beta})
    U = random_gauge_field(th.group, lat, bk.rng(11), (40_000,))
    lw = -bk.to_numpy(th.action.action(U))
    est, err = lk.analysis.log_z_estimate(lw)
    assert err < 0.03
    assert abs(est - th.exact_log_z()) < 5 * err
    assert make_theory("wilson", (2, 2, 2), {"group": group, "beta": beta}).exact_log_z() is None
