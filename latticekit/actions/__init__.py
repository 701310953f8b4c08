"""Actions: the Wilson gauge action (U(1), SU(N)) and real scalar phi^4 theory.

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

from .phi4 import (
    Phi4Action,
    hopping_from_mass,
    mass_from_hopping,
    phi4_action,
    phi4_action_mass,
    phi4_force,
    phi4_force_mass,
)
from .wilson_gauge import WilsonGaugeAction, staples, wilson_gauge_action, wilson_gauge_force

__all__ = [
    "Phi4Action",
    "WilsonGaugeAction",
    "hopping_from_mass",
    "mass_from_hopping",
    "phi4_action",
    "phi4_action_mass",
    "phi4_force",
    "phi4_force_mass",
    "staples",
    "wilson_gauge_action",
    "wilson_gauge_force",
]
