"""phi^4 through the registry: observables equal the library's functions on every backend, exact free-field
values equal latticekit.exact, the susceptibility is one observable with one name in every job."""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit import exact, observables as obs
from latticekit.actions import Phi4Action
from latticekit.analysis import gamma_method
from latticekit.testing import assert_close
from latticekit.theories import make_theory
from latticekit.utils import ConfigError


def test_observables_are_the_library_functions(bk) -> None:
    lat = lk.Lattice((6, 4))
    th = make_theory("phi4", lat, {"kappa": 0.2, "lam": 0.3})
    assert th.observable_names() == ["magnetization", "abs_magnetization", "m2", "action_density",
                                     "C_t0", "C_t1", "C_t2", "C_t3"]
    phi = bk.rng(0).normal((3, 6, 4))
    m = th.measure(phi)
    M = bk.to_numpy(obs.magnetization(phi, lat))
    assert_close(bk.to_numpy(m["magnetization"]), M, rtol=1e-14, atol=0)
    assert_close(bk.to_numpy(m["abs_magnetization"]), np.abs(M), rtol=1e-14, atol=0)
    assert_close(bk.to_numpy(m["m2"]), M * M, rtol=1e-14, atol=0)
    S = bk.to_numpy(Phi4Action(lat, 0.2, 0.3).action(phi))
    assert_close(bk.to_numpy(m["action_density"]), S / 24, rtol=1e-14, atol=0)
    C = bk.to_numpy(obs.zero_momentum_correlator(phi, lat, mu=0))
    for t in range(4):
        assert_close(bk.to_numpy(m[f"C_t{t}"]), C[:, t], rtol=1e-12, atol=1e-14)


def test_susceptibility_is_v_m2_in_both_jobs() -> None:
    # the run job analysed V <M^2> as a function of <m2>; the flow job used to analyse the per-sample
    # V M^2 (then called `chi`). Both are the same estimate: value and error agree to rounding.
    lat = lk.Lattice((4, 4))
    th = make_theory("phi4", lat, {"kappa": 0.2, "lam": 0.5})
    d = th.derived()["susceptibility"]
    m2 = np.random.default_rng(3).gamma(2.0, 0.05, size=(500,))
    via_func = gamma_method(np.stack(d.series({"m2": m2})), d.func)
    per_sample = gamma_method(16 * m2)
    assert_close(via_func.value, per_sample.value, rtol=0, atol=1e-12)
    assert_close(via_func.error, per_sample.error, rtol=1e-9, atol=0)
    assert_close(d.per_config({"m2": m2}), 16 * m2, rtol=1e-7, atol=0)
    assert th.summary_observables() == ["abs_magnetization", "susceptibility", "magnetization", "action_density"]


def test_exact_values_through_the_registry_are_latticekit_exact() -> None:
    shape = (8, 4)
    th = make_theory("phi4", shape, {"kappa": 0.15, "lam": 0.0})
    e = th.exact()
    assert e["susceptibility"] == exact.free_scalar_susceptibility(shape, kappa=0.15)
    C = np.asarray(exact.free_scalar_timeslice_correlator(shape, kappa=0.15, backend="numpy"))
    assert [e[f"C_t{t}"] for t in range(5)] == [float(c) for c in C[:5]]
    assert e["magnetization"] == 0.0
    assert make_theory("phi4", shape, {"kappa": 0.15, "lam": 0.5}).exact() == {"magnetization": 0.0}
    assert make_theory("phi4", shape, {"kappa": 0.0, "lam": 0.0}).exact() == {"magnetization": 0.0}


def test_checks() -> None:
    # the free field is normalisable for kappa < 1/(2 Nd) only
    with pytest.raises(ConfigError, match=r"action\.kappa: the free field"):
        make_theory("phi4", (4, 4, 4), {"kappa": 1 / 6, "lam": 0.0})
    make_theory("phi4", (4, 4, 4), {"kappa": 1 / 6, "lam": 0.1})
    th = make_theory("phi4", (5,), {"kappa": 0.2, "lam": 0.1})     # any Nd, odd extents for the run job
    assert th.samplers.keys() == {"hmc"} and th.flow_families == ("affine", "spline", "superres", "superres_uv", "cnf")
    assert th.describe() == "phi^4 (kappa=0.2, lambda=0.1)"
    with pytest.raises(ConfigError, match=r"action\.lam: expected >= 0"):
        make_theory("phi4", (4, 4), {"lam": -0.1})
