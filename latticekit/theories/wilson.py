"""Pure-gauge Wilson theory, U(1) or SU(N), on a lattice of any dimension ``Nd >= 2``.

Action ``S = -(beta/N) sum_x sum_{mu<nu} Re tr P_{mu nu}(x)`` (:class:`latticekit.actions.WilsonGaugeAction`).

* ``[action]``: ``group`` (``"U1"`` or ``"SU<N>"``, N >= 2), ``beta`` (``0 < beta <= 1e4``: no study
  goes beyond O(100); the bound catches typos such as ``1e300`` before the action overflows).
* ``[measure]``: ``wilson_loops = [[T, R], ...]``, ``T`` links along direction 0 and ``R`` along
  direction 1, each at most the extent of its direction; ``flowed_topology_t`` (flow time ``t/a^2 >= 0``
  of the flowed topological charge; 0, the default, measures none; 4D SU(N) only) and
  ``flowed_topology_eps`` (its largest RK3 step, default 0.01).
* Observables: ``plaquette`` (:func:`~latticekit.observables.average_plaquette`, any Nd);
  ``topological_charge`` ``Q = (1/2pi) sum_x arg P_01(x)`` (2D U(1) only); ``polyakov_loop_abs``
  ``|<P>|`` and ``polyakov_loop_re`` ``Re <P>`` (Nd >= 3; ``<P>`` the average Polyakov loop
  ``(1/N) tr prod_t U_0`` of :func:`~latticekit.observables.average_polyakov_loop`, so ``N`` times it is the
  ``L`` of eq. (3) of arXiv:2208.03832); ``wilson_loop_{T}x{R}``; ``topological_charge_flowed`` (4D SU(N)
  with ``flowed_topology_t > 0``): the clover charge
  (:func:`~latticekit.observables.topological_charge_clover`) of the field after Wilson flow
  (:func:`~latticekit.observables.wilson_flow`) to ``t/a^2 = flowed_topology_t``; derived:
  ``chi_t = <Q^2>/V`` (2D U(1)).
* Exact values (:mod:`latticekit.exact`, 2D only): the torus plaquette and Wilson loops (U(1): every
  loop; SU(N): contractible loops ``T < L0``, ``R < L1``), and for U(1) ``chi_t``, ``<Q> = 0`` and the
  charge distribution ``P(Q)``.
* Samplers: ``hmc``, ``heatbath`` (Cabibbo-Marinari/Kennedy-Pendleton with overrelaxation; even
  extents); a reference run prefers the heatbath (several times faster per independent sample).
* Flow-model families: ``plaquette`` (2D: the stripe masks of Kanwar et al.; Nd >= 3: checkerboard
  masks) and ``checkerboard`` (any Nd).

Examples
--------
>>> import numpy as np
>>> th = WilsonTheory((4, 4), WilsonParams(group="U1", beta=1.0))
>>> th.observable_names(), list(th.derived())
(['plaquette', 'topological_charge'], ['chi_t'])
>>> U = th.initial_field(2, None)
>>> np.asarray(th.measure(U)["plaquette"]).tolist()
[1.0, 1.0]
>>> round(th.exact()["plaquette"], 6)
0.446394
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.groups import U1Group, group_from_name
from latticekit.utils.schema import ConfigError, setting

from .base import Derived, Measurement, Theory
from .samplers import HeatbathSettings, HMCSettings, build_hmc

__all__ = ["BETA_MAX", "FLOW_EPS_MAX", "WilsonMeasure", "WilsonParams", "WilsonTheory", "check_group"]

#: largest accepted ``action.beta`` (typo guard; see the module docstring)
BETA_MAX = 1e4


def check_group(name: str) -> str | None:
    """None for a valid gauge group name, else the error text."""
    try:
        group_from_name(name)
    except ValueError:
        return f"expected 'U1' or 'SU<N>' with N >= 2 (e.g. 'SU3'), got {name!r}"
    return None


@dataclass
class WilsonParams:
    """``[action]`` keys of ``kind = "wilson"``."""

    group: str = setting("U1", check=check_group, doc="gauge group: U1 or SU<N>")
    beta: float = setting(2.0, gt=0.0, le=BETA_MAX, doc="inverse coupling")

    def __post_init__(self) -> None:
        # one spelling per group ('su2', 'SU(2)' -> 'SU2'): a run's identity is its configuration as read, and a
        # rerun of the same theory spelt otherwise was refused as another run (user probe)
        if isinstance(self.group, str) and check_group(self.group) is None:
            G = group_from_name(self.group)
            self.group = "U1" if isinstance(G, U1Group) else f"SU{G.N}"


def _check_loops(loops: list[list[int]]) -> str | None:
    for k, wl in enumerate(loops):
        if not (isinstance(wl, list) and len(wl) == 2 and all(isinstance(v, int) and v >= 1 for v in wl)):
            return f"expected pairs [T, R] of positive integers, got {wl!r}"
        if wl in loops[:k]:     # one observable measured twice: its series got every value twice (user probe)
            return f"the loop {wl!r} is listed twice; expected each [T, R] once"
    return None


#: largest accepted ``measure.flowed_topology_eps``: Luscher's RK3 has a global error O(eps^3); steps beyond
#: 0.1 are no longer a controlled integration of the flow (0.01 to 0.05 is usual)
FLOW_EPS_MAX = 0.1


@dataclass
class WilsonMeasure:
    """``[measure]`` keys of gauge theories."""

    wilson_loops: list[list[int]] = setting([], check=_check_loops,
                                            doc="[[T, R], ...]: T links along direction 0, R along direction 1")
    flowed_topology_t: float = setting(0.0, ge=0.0, doc="flow time t/a^2 of topological_charge_flowed (4D SU(N)); "
                                                        "0: not measured")
    flowed_topology_eps: float = setting(0.01, gt=0.0, le=FLOW_EPS_MAX,
                                         doc="largest RK3 step of the Wilson flow of topological_charge_flowed")


class WilsonTheory(Theory):
    """Pure-gauge Wilson theory (see the module docstring)."""

    kind = "wilson"
    Params = WilsonParams
    Measure = WilsonMeasure
    samplers = {"hmc": HMCSettings, "heatbath": HeatbathSettings}
    reference_sampler = "heatbath"
    flow_families = ("plaquette", "checkerboard", "multiscale", "plaquette_prior")
    is_gauge = True

    @classmethod
    def check(cls, params: Any, shape: Sequence[int]) -> None:
        if len(shape) < 2:
            raise ConfigError(f"lattice.shape: a gauge theory needs at least 2 dimensions (its action sums "
                              f"plaquettes), got {list(shape)}")

    @classmethod
    def check_measure(cls, options: Any, shape: Sequence[int], params: Any = None) -> None:
        for t, r in options.wilson_loops:
            if len(shape) < 2 or t > shape[0] or r > shape[1]:
                raise ConfigError(f"measure.wilson_loops: the loop [{t}, {r}] (T along direction 0, R along "
                                  f"direction 1) is larger than the lattice {list(shape)}")
        if options.flowed_topology_t > 0:
            # the clover charge eps_{mu nu rho sigma} tr F F exists in 4D; for U(1) it is not the SU(N) instanton
            # number this observable is meant for (2D U(1) has the geometric topological_charge instead)
            if len(shape) != 4:
                raise ConfigError(f"measure.flowed_topology_t = {options.flowed_topology_t}: the flowed clover "
                                  f"topological charge needs a 4D lattice, got lattice.shape {list(shape)}; "
                                  "leave it 0")
            if params is not None and isinstance(group_from_name(params.group), U1Group):
                raise ConfigError(f"measure.flowed_topology_t = {options.flowed_topology_t}: the flowed clover "
                                  f"topological charge is measured for SU(N) only, got action.group = "
                                  f"{params.group!r}; leave it 0")

    def unavailable_hint(self, unknown: Sequence[str]) -> str:
        # the names of these observables come from [measure] settings; the list of available names did not say so
        # (user probe)
        hints = []
        if any(n.startswith("wilson_loop_") for n in unknown):
            hints.append("wilson_loop_TxR is measured for each [T, R] listed in measure.wilson_loops")
        if "topological_charge_flowed" in unknown:
            hints.append("topological_charge_flowed needs measure.flowed_topology_t > 0 (4D SU(N))")
        return "".join(f"; {h}" for h in hints)

    @classmethod
    def check_sampler(cls, algorithm: str, settings: Any, shape: Sequence[int]) -> None:
        super().check_sampler(algorithm, settings, shape)
        if algorithm == "heatbath" and any(L % 2 for L in shape):
            raise ConfigError(f"lattice.shape: the checkerboard heatbath needs even extents, got {list(shape)}")

    @property
    def group(self) -> Any:
        """The gauge group object."""
        return group_from_name(self.params.group)

    @property
    def is_u1_2d(self) -> bool:
        """2D U(1): the theory with a topological charge and exact ``chi_t``."""
        return isinstance(self.group, U1Group) and self.lattice.nd == 2

    def make_action(self) -> Any:
        from latticekit.actions import WilsonGaugeAction

        return WilsonGaugeAction(self.group, self.lattice, self.params.beta)

    def initial_field(self, n: int, rng: Any, *, backend: str | None = None, device: Any = None) -> Any:
        """Cold start (all links 1); ``rng`` is not used."""
        from latticekit.gauge import cold_gauge_field

        return cold_gauge_field(self.group, self.lattice, (n,), backend=backend, device=device)

    def sampler(self, algorithm: str, settings: Any = None, *, rng: Any) -> Any:
        settings = settings if settings is not None else self.samplers[algorithm]()
        if algorithm == "heatbath":
            from latticekit.mc import Heatbath

            return Heatbath(self.group, self.lattice, self.params.beta, rng=rng, n_overrelax=settings.overrelaxation)
        if algorithm == "hmc":
            return build_hmc(self.action, settings, rng)
        raise ValueError(f"algorithm={algorithm!r}: expected one of {tuple(self.samplers)}")

    def field_bytes(self) -> int:
        """``Nd`` links per site, each an element of the group: a float64 angle (U(1)) or a complex128
        ``N x N`` matrix (SU(N)).

        >>> WilsonTheory((4, 4), WilsonParams(group="SU3")).field_bytes()
        4608
        """
        G, lat = self.group, self.lattice
        per_element = 8 * (2 if G.dtype_kind == "complex floating" else 1)
        for n in G.element_shape:
            per_element *= int(n)
        return lat.nd * int(lat.volume) * per_element

    def describe(self) -> str:
        return f"{self.group.name} Wilson (beta={self.params.beta})"

    def ensemble_params(self) -> dict[str, Any]:
        return {"beta": self.params.beta}

    # -- observables ---------------------------------------------------------------------------------
    def measurements(self) -> list[Measurement]:
        from latticekit import observables as obs
        from latticekit.backends import array_namespace

        G, lat = self.group, self.lattice
        out = [Measurement(("plaquette",), lambda U: {"plaquette": obs.average_plaquette(U, G, lat)})]
        if self.is_u1_2d:
            out.append(Measurement(("topological_charge",),
                                   lambda U: {"topological_charge": obs.topological_charge_u1_2d(U, lat)}))
        if lat.nd >= 3:
            def polyakov(U: Any) -> dict[str, Any]:
                xp, P = array_namespace(U), obs.average_polyakov_loop(U, G, lat)  # complex (B,), one product
                return {"polyakov_loop_abs": xp.abs(P), "polyakov_loop_re": xp.real(P)}

            out.append(Measurement(("polyakov_loop_abs", "polyakov_loop_re"), polyakov))
        for t, r in self.measure_options.wilson_loops:
            name = f"wilson_loop_{t}x{r}"
            out.append(Measurement((name,), lambda U, t=t, r=r, name=name: {
                name: obs.wilson_loop(U, G, lat, r, t, mu=0, nu=1)}))
        t_flow = self.measure_options.flowed_topology_t
        if t_flow > 0:  # check_measure allowed it: 4D SU(N)
            eps = self.measure_options.flowed_topology_eps

            def flowed_charge(U: Any) -> dict[str, Any]:
                V, _ = obs.wilson_flow(U, G, lat, t_flow, eps=eps, measure=None)
                return {"topological_charge_flowed": obs.topological_charge_clover(V, G, lat)}

            out.append(Measurement(("topological_charge_flowed",), flowed_charge))
        return out

    def derived(self) -> dict[str, Derived]:
        if not self.is_u1_2d:
            return {}
        V = self.lattice.volume
        # chi_t = <Q^2> / V: a function of the mean of Q^2, analysed with the Gamma method
        return {"chi_t": Derived(("topological_charge",), lambda v: [v["topological_charge"] ** 2],
                                 lambda a: a[0] / V, "topological susceptibility <Q^2>/V",
                                 per_config=lambda v: v["topological_charge"] ** 2 / V)}

    def integer_observables(self) -> list[str]:
        # Q = (1/2pi) sum_x arg P_01(x) is an integer on every 2D U(1) configuration (the args sum to 2 pi Q)
        return ["topological_charge"] if self.is_u1_2d else []

    def summary_observables(self) -> list[str]:
        have = set(self.observable_names()) | set(self.derived())
        return [n for n in ("plaquette", "chi_t", "topological_charge") if n in have]

    # -- exact results -------------------------------------------------------------------------------
    def exact(self) -> dict[str, float]:
        from latticekit import exact

        lat, b = self.lattice, self.params.beta
        shape = lat.shape
        out: dict[str, float] = {}
        if lat.nd != 2:
            return out
        G = self.group
        if isinstance(G, U1Group):
            out["plaquette"] = float(exact.u1_2d_plaquette(b, shape))
            out["chi_t"] = float(exact.u1_2d_topological_susceptibility(b, shape))
            out["topological_charge"] = 0.0
            for t, r in self.measure_options.wilson_loops:
                out[f"wilson_loop_{t}x{r}"] = float(exact.u1_2d_wilson_loop(b, t, r, shape))
        else:
            out["plaquette"] = float(exact.sun_2d_plaquette(b, G.N, shape))
            for t, r in self.measure_options.wilson_loops:
                if t < shape[0] and r < shape[1]:  # the torus formula holds for contractible loops
                    out[f"wilson_loop_{t}x{r}"] = float(exact.sun_2d_wilson_loop(b, G.N, t, r, shape))
        return out

    def exact_log_z(self) -> float | None:
        # 2D only: character expansion on the torus with the normalised Haar measure (Z = 1 at beta = 0),
        # the measure of HaarPrior, so log w = -S - log q averages to this log Z under exp(log w)
        from latticekit import exact

        lat, b = self.lattice, self.params.beta
        if lat.nd != 2:
            return None
        if isinstance(self.group, U1Group):
            return float(exact.u1_2d_log_z(b, lat.shape))
        return float(exact.sun_2d_log_z(b, self.group.N, lat.shape))

    def exact_distribution(self, name: str, bound: int) -> tuple[Any, Any] | None:
        if name != "topological_charge" or not self.is_u1_2d:
            return None
        from latticekit.exact import u1_2d_charge_distribution

        return u1_2d_charge_distribution(self.params.beta, self.lattice.shape, q_max=bound)
