"""Actions: the Wilson gauge action (U(1), SU(N)), real scalar phi^4 theory, Wilson fermions and pseudofermions.

One definition of each action serves HMC (``force``), measurements and flow training (torch
autograd through the same array code). Conventions are fixed in DESIGN.md and in the module
docstrings of :mod:`latticekit.actions.wilson_gauge` and :mod:`latticekit.actions.phi4`.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.actions import WilsonGaugeAction
>>> from latticekit.gauge import cold_gauge_field
>>> lat = lk.Lattice((4, 4))
>>> float(WilsonGaugeAction(lk.U1, lat, beta=2.0)(cold_gauge_field(lk.U1, lat)))
-32.0
"""

from __future__ import annotations

from .dirac import (
    GAMMA_BASIS,
    WilsonDirac,
    apply_gamma5,
    gamma5_matrix,
    gamma_matrices,
    kappa_from_mass,
    mass_from_kappa,
    spin_dim,
    wilson_dirac,
    wilson_dirac_dagger,
    wilson_dirac_normal,
)
from .dirac_dense import dirac_dense_matrix, wilson_hopping_matrix
from .even_odd import EvenOddDirac, even_odd_masks, schur_complement
from .hasenbusch import HasenbuschAction, HasenbuschMonomial, hasenbusch_monomials
from .pseudofermion import (
    PseudofermionAction,
    apply_twisted,
    apply_twisted_dagger,
    pseudofermion_action,
    pseudofermion_force,
    pseudofermion_force_coords,
    pseudofermion_heatbath,
    regulated_normal,
    solve_normal,
)
from .phi4 import (
    Phi4Action,
    hopping_from_mass,
    mass_from_hopping,
    phi4_action,
    phi4_action_mass,
    phi4_force,
    phi4_force_mass,
)
from .wilson_gauge import WilsonGaugeAction, staple_from_links, staples, wilson_gauge_action, wilson_gauge_force

__all__ = [
    "apply_gamma5",
    "apply_twisted",
    "apply_twisted_dagger",
    "dirac_dense_matrix",
    "even_odd_masks",
    "EvenOddDirac",
    "gamma5_matrix",
    "GAMMA_BASIS",
    "gamma_matrices",
    "hasenbusch_monomials",
    "HasenbuschAction",
    "HasenbuschMonomial",
    "hopping_from_mass",
    "kappa_from_mass",
    "mass_from_hopping",
    "mass_from_kappa",
    "phi4_action",
    "phi4_action_mass",
    "phi4_force",
    "phi4_force_mass",
    "Phi4Action",
    "pseudofermion_action",
    "pseudofermion_force",
    "pseudofermion_force_coords",
    "pseudofermion_heatbath",
    "PseudofermionAction",
    "regulated_normal",
    "schur_complement",
    "solve_normal",
    "spin_dim",
    "staple_from_links",
    "staples",
    "wilson_dirac",
    "wilson_dirac_dagger",
    "wilson_dirac_normal",
    "wilson_gauge_action",
    "wilson_gauge_force",
    "wilson_hopping_matrix",
    "WilsonDirac",
    "WilsonGaugeAction",
]
