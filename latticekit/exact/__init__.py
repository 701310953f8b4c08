"""Exact and analytic results: references for ensembles and for tests.

Host-side code (NumPy/SciPy): scalars from ``scipy.special`` and small FFTs; array results are
handed to the requested backend through ``latticekit.backends``.  See ``docs/exact.md``.

* :mod:`~latticekit.exact.u1_2d` -- 2D U(1) Wilson theory on a torus: ``ln Z``, plaquette,
  Wilson loops, topological charge (``<Q^2>``, ``chi_t``, ``P(Q)``, ``Z(theta)``).
* :mod:`~latticekit.exact.sun_2d` -- 2D SU(N) Wilson theory: one-plaquette integrals, torus
  ``ln Z``/plaquette/Wilson loops by character expansion, Gross-Witten limit.
* :mod:`~latticekit.exact.free_scalar` -- free lattice scalar field: propagator, susceptibility,
  time-slice correlator, second-moment correlation length, ``ln Z``.
* :mod:`~latticekit.exact.phi4_conventions` -- hopping <-> (m^2, lambda) conversion of phi^4.

Examples
--------
>>> from latticekit import exact
>>> round(exact.u1_2d_plaquette(1.0), 12)          # I_1(1)/I_0(1)
0.446389965897
"""

from __future__ import annotations

from .free_scalar import (
    free_scalar_log_z,
    free_scalar_momentum_propagator,
    free_scalar_pole_mass,
    free_scalar_propagator,
    free_scalar_second_moment_correlation_length,
    free_scalar_susceptibility,
    free_scalar_timeslice_correlator,
)
from .phi4_conventions import (
    phi4_action_hopping,
    phi4_action_m2,
    phi4_field_scale,
    phi4_hopping_to_m2,
    phi4_m2_to_hopping,
)
from .sun_2d import (
    gross_witten_plaquette,
    sun_2d_character_ratio,
    sun_2d_log_z,
    sun_2d_one_plaquette_log_z,
    sun_2d_plaquette,
    sun_2d_wilson_loop,
    sun_character_coefficient_quadrature,
    sun_dimension,
    sun_irreps,
    sun_max_beta,
)
from .u1_2d import (
    u1_2d_charge_distribution,
    u1_2d_log_z,
    u1_2d_plaquette,
    u1_2d_q2,
    u1_2d_theta_ratio,
    u1_2d_topological_susceptibility,
    u1_2d_wilson_loop,
)

__all__ = [
    "free_scalar_log_z",
    "free_scalar_momentum_propagator",
    "free_scalar_pole_mass",
    "free_scalar_propagator",
    "free_scalar_second_moment_correlation_length",
    "free_scalar_susceptibility",
    "free_scalar_timeslice_correlator",
    "gross_witten_plaquette",
    "phi4_action_hopping",
    "phi4_action_m2",
    "phi4_field_scale",
    "phi4_hopping_to_m2",
    "phi4_m2_to_hopping",
    "sun_2d_character_ratio",
    "sun_2d_log_z",
    "sun_2d_one_plaquette_log_z",
    "sun_2d_plaquette",
    "sun_2d_wilson_loop",
    "sun_character_coefficient_quadrature",
    "sun_dimension",
    "sun_irreps",
    "sun_max_beta",
    "u1_2d_charge_distribution",
    "u1_2d_log_z",
    "u1_2d_plaquette",
    "u1_2d_q2",
    "u1_2d_theta_ratio",
    "u1_2d_topological_susceptibility",
    "u1_2d_wilson_loop",
]
