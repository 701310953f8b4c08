"""Monte Carlo samplers: HMC (any field kind), heatbath/overrelaxation (Wilson gauge), Langevin.

Every sampler works on batches of independent chains (leading batch axes), takes an explicit
``rng`` (``latticekit.backends.rng(seed, backend=, device=)``) and offers
``step(x) -> (x, StepInfo)`` and ``run(x, n, measure=None, every=1) -> (x, MCHistory)``.
A *target* is any object with ``action(x) -> (*B,)`` and ``force(x)`` (``latticekit.actions``).
Algorithms, conventions and references: docs/mc.md.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.actions import WilsonGaugeAction
>>> from latticekit.mc import HMC, Heatbath
>>> from latticekit.observables import average_plaquette
>>> lat = lk.Lattice((8, 8)); rng = lk.backends.rng(0)
>>> U0 = lk.gauge.cold_gauge_field(lk.U1, lat, batch_shape=(4,))      # 4 chains
>>> hmc = HMC(WilsonGaugeAction(lk.U1, lat, beta=2.0), rng=rng, step_size=0.1, n_steps=10)
>>> U, hist = hmc.run(U0, 5, measure=lambda U: average_plaquette(U, lk.U1, lat))
>>> hist.measurements.shape, hist.dH.shape
((5, 4), (5, 4))
>>> hb = Heatbath(lk.U1, lat, beta=2.0, rng=rng, n_overrelax=1)
>>> U, hist = hb.run(U0, 5, measure=lambda U: average_plaquette(U, lk.U1, lat))
>>> hist.measurements.shape
(5, 4)
"""

from __future__ import annotations

from .base import MCHistory, Sampler, StepInfo
from .fields import FieldKind, RealField, SUNField, U1Field, field_kind
from .heatbath import (
    Heatbath,
    HeatbathConvergenceError,
    staple_sum,
    su2_heatbath_x0,
    su2_random_with_x0,
    von_mises,
)
from .hmc import HMC, infer_field_kind
from .integrators import OMELYAN_LAMBDA, Integrator, Leapfrog, Omelyan, integrator_from_name
from .langevin import Langevin, langevin_step
from .nf2 import MultiTimescale, Nf2HMC, Nf2Target
from .toy import GaussianAction, QuarticAction, SingleLinkAction

__all__ = [
    "FieldKind",
    "GaussianAction",
    "HMC",
    "Heatbath",
    "HeatbathConvergenceError",
    "Integrator",
    "Langevin",
    "Leapfrog",
    "MCHistory",
    "MultiTimescale",
    "Nf2HMC",
    "Nf2Target",
    "OMELYAN_LAMBDA",
    "Omelyan",
    "QuarticAction",
    "RealField",
    "SUNField",
    "Sampler",
    "SingleLinkAction",
    "StepInfo",
    "U1Field",
    "field_kind",
    "infer_field_kind",
    "integrator_from_name",
    "langevin_step",
    "staple_sum",
    "su2_heatbath_x0",
    "su2_random_with_x0",
    "von_mises",
]
