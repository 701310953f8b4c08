"""Settings of the reference samplers a theory offers (the ``[sampler]`` keys of one algorithm).

Each algorithm reads its own keys and no others: ``overrelaxation`` belongs to the heatbath and is
refused with ``algorithm = "hmc"``; ``n_inner`` (Sexton-Weingarten inner gauge steps) belongs to the
Nf = 2 HMC. A theory lists the algorithms it supports in ``Theory.samplers``.

Bounds (checked before any work): the step size is positive and at most 10 (a leapfrog step beyond 2 is
unstable for a unit-frequency oscillator, so larger values are typos); step counts are positive.

Examples
--------
>>> from latticekit.utils import parse
>>> parse(HMCSettings, {"step_size": 0.05, "integrator": "leapfrog"}, "sampler")
HMCSettings(step_size=0.05, n_steps=10, integrator='leapfrog')
>>> parse(HMCSettings, {"overrelaxation": 2}, "sampler")
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: unknown key sampler.overrelaxation; expected one of integrator, n_steps, step_size
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latticekit.utils.schema import setting

__all__ = ["HMCSettings", "HeatbathSettings", "Nf2HMCSettings", "build_hmc"]

INTEGRATORS = ("leapfrog", "omelyan")


@dataclass
class HMCSettings:
    """Hybrid Monte Carlo (:class:`latticekit.mc.HMC`)."""

    step_size: float = setting(0.1, gt=0.0, le=10.0, doc="molecular-dynamics step size")
    n_steps: int = setting(10, ge=1, doc="steps per trajectory")
    integrator: str = setting("omelyan", choices=INTEGRATORS, doc="leapfrog or omelyan (2MN)")


@dataclass
class Nf2HMCSettings(HMCSettings):
    """HMC with two flavours of pseudofermions (:class:`latticekit.mc.Nf2HMC`)."""

    n_inner: int = setting(0, ge=0, doc="0: one time scale; k >= 1: gauge force on k inner steps "
                                        "(Sexton-Weingarten)")


@dataclass
class HeatbathSettings:
    """Heatbath + overrelaxation for Wilson gauge theories (:class:`latticekit.mc.Heatbath`)."""

    overrelaxation: int = setting(1, ge=0, doc="overrelaxation sweeps after each heatbath sweep")


def build_hmc(action: Any, settings: HMCSettings, rng: Any) -> Any:
    """An :class:`latticekit.mc.HMC` on ``action`` with ``settings``."""
    from latticekit.mc import HMC

    return HMC(action, rng=rng, step_size=settings.step_size, n_steps=settings.n_steps,
               integrator=settings.integrator)
