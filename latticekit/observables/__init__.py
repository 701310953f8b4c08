"""Observables: plaquettes, Wilson and Polyakov loops, topology and clover quantities, scalar correlators.

All functions take arrays of any supported backend and return arrays of the same namespace and
device, vectorised over leading batch axes. Definitions and normalisations: docs/observables.md.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.gauge import cold_gauge_field
>>> from latticekit.observables import average_plaquette, topological_charge_u1_2d, u1_flux_field
>>> lat = lk.Lattice((8, 8))
>>> float(average_plaquette(cold_gauge_field(lk.SU(3), lat), lk.SU(3), lat))
1.0
>>> round(float(topological_charge_u1_2d(u1_flux_field(lat, 3), lat)), 9)
3.0
"""

from __future__ import annotations

from .adaptive_flow import wilson_flow_adaptive
from .fermionic import chiral_condensate, chiral_condensate_exact, dirac_condition_number, pion_correlator, point_sources, propagator
from .gradient_flow import flow_beta, flow_generator, flow_observables, wilson_flow, wilson_flow_step
from .loops import average_polyakov_loop, polyakov_loop, wilson_line, wilson_loop, wilson_loops
from .plaquette import average_plaquette, energy_density_plaquette, plane_plaquettes, plaquette_field, plaquettes
from .scalar import (
    abs_magnetization,
    connected_two_point,
    correlation_length_second_moment,
    magnetization,
    susceptibility,
    two_point,
    two_point_momentum,
    zero_momentum_correlator,
)
from .smearing import stout_smear
from .topology import (
    clover_field_strength,
    energy_density_clover,
    energy_density_clover_field,
    topological_charge_clover,
    topological_charge_density_clover,
    topological_charge_u1_2d,
    u1_flux_field,
)

__all__ = [
    "abs_magnetization",
    "average_plaquette",
    "average_polyakov_loop",
    "chiral_condensate",
    "chiral_condensate_exact",
    "clover_field_strength",
    "connected_two_point",
    "correlation_length_second_moment",
    "dirac_condition_number",
    "energy_density_clover",
    "energy_density_clover_field",
    "energy_density_plaquette",
    "flow_beta",
    "flow_generator",
    "flow_observables",
    "magnetization",
    "pion_correlator",
    "plane_plaquettes",
    "plaquette_field",
    "plaquettes",
    "point_sources",
    "polyakov_loop",
    "propagator",
    "stout_smear",
    "susceptibility",
    "topological_charge_clover",
    "topological_charge_density_clover",
    "topological_charge_u1_2d",
    "two_point",
    "two_point_momentum",
    "u1_flux_field",
    "wilson_flow",
    "wilson_flow_adaptive",
    "wilson_flow_step",
    "wilson_line",
    "wilson_loop",
    "wilson_loops",
    "zero_momentum_correlator",
]
