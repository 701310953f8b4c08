"""Flow-model family ``plaquette_prior``: 2D U(1) plaquette-variable prior, optionally with gauge couplings.

``[model] coupling = "plaquette_prior"`` builds ``Model(U1PlaquettePrior(...), fine_flow)``
(:mod:`latticekit.flows.u1_plaquette_prior`): every plaquette but one drawn independently from the exact
one-plaquette law, the links assembled in the complete axial gauge and gauge-randomised. With the default
``n_layers = 0`` nothing is trained: the prior alone is an exact flow-MCMC proposal whose Kish ESS is known in
closed form (about ``1 / sqrt(pi beta)`` on large lattices) and whose topological charge never freezes; training
then fits the one concentration ``kappa`` of the plaquette law by reverse KL (``learn_beta = true``, the default:
the optimum is ``kappa = beta (1 + (I_1/I_0)(kappa)^{V-2})``, ``beta`` itself on large lattices). With
``n_layers > 0`` the gauge-equivariant plaquette couplings of :mod:`.gauge_models` (stripe masks) act on top
and are trained with it. ``n_layers = 0`` with ``learn_beta = false`` leaves nothing to train and is refused
(use :class:`latticekit.flows.u1_plaquette_prior.U1PlaquettePrior` directly for the fixed prior).

2D U(1) only (``action.group = "U1"``, a 2D lattice): in higher dimensions the plaquettes obey Bianchi
identities and in 2D SU(N) the constraint is non-Abelian.

``[model]`` keys: ``n_layers`` (default 0), ``prior_beta`` (default ``action.beta``), ``learn_beta`` (true);
of the couplings: ``hidden``, ``kernel_size``, ``act``, ``bins``, ``zero_init`` (true), ``loop_context``.

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 3.0},
...                             "model": {"coupling": "plaquette_prior"}})
>>> model, action, lat = build_flow(cfg)
>>> type(model.prior).__name__, float(model.prior.kappa.detach()), len(model.flow)
('U1PlaquettePrior', 3.0, 0)
>>> FlowConfig.from_dict({"lattice": {"shape": [4, 4, 4]}, "model": {"coupling": "plaquette_prior"}})
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: lattice.shape: model.coupling = 'plaquette_prior' is the 2D U(1) plaquette-variable prior; got a 3D lattice [4, 4, 4]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .gauge_models import GaugeSettings
from .models import FlowFamily

__all__ = ["PLAQUETTE_PRIOR", "PlaquettePriorSettings", "plaquette_prior_flow"]


@dataclass
class PlaquettePriorSettings(GaugeSettings):
    """``[model]`` keys of ``coupling = "plaquette_prior"`` (module docstring): the gauge couplings' keys
    (:class:`~.gauge_models.GaugeSettings`) with other defaults, and the prior's."""

    n_layers: int | None = setting(None, ge=0, doc="gauge coupling layers on top of the prior (0: the prior alone)")
    zero_init: bool = setting(True, doc="start the couplings at the identity map (the prior alone)")
    prior_beta: float | None = setting(None, ge=0.0, le=1e4, doc="concentration of the one-plaquette law "
                                       "(default action.beta)")
    learn_beta: bool = setting(True, doc="train the concentration of the one-plaquette law")


def _check(shape: Sequence[int], settings: Any) -> None:
    if len(shape) != 2:
        raise ConfigError(f"lattice.shape: model.coupling = 'plaquette_prior' is the 2D U(1) plaquette-variable "
                          f"prior; got a {len(shape)}D lattice {list(shape)}")
    if settings.n_layers == 0 and not settings.learn_beta:
        raise ConfigError("model.learn_beta: with n_layers = 0 and learn_beta = false the model has nothing to train; "
                          "set learn_beta = true or n_layers > 0")
    if settings.learn_beta and settings.prior_beta == 0:
        # kappa = |sum_i beta_i e^{i sigma_i}| is not differentiable at 0: the first step's gradient was NaN
        raise ConfigError("model.prior_beta = 0 with learn_beta = true: the concentration of the one-plaquette law "
                          "has no gradient at 0; start from a small positive value (e.g. 0.1), or set learn_beta = "
                          "false for the Haar prior")
    if settings.n_layers and any(L % 4 for L in shape):
        raise ConfigError(f"lattice.shape: the stripe couplings on top of the plaquette prior (n_layers = "
                          f"{settings.n_layers}) need extents divisible by 4, got {list(shape)}; use n_layers = 0")


def plaquette_prior_flow(theory: Any, s: PlaquettePriorSettings) -> Any:
    """``Model(U1PlaquettePrior, couplings)`` of ``theory`` (module docstring)."""
    from latticekit.flows import Flow, Model
    from latticekit.flows.u1_plaquette_prior import U1PlaquettePrior
    from latticekit.groups import U1

    from .gauge_models import gauge_flow

    if theory.group is not U1:
        raise ConfigError(f"action.group: model.coupling = 'plaquette_prior' is for U(1) (the plaquettes of 2D "
                          f"SU(N) obey a non-Abelian constraint); got {theory.group.name!r}")
    beta = float(theory.params.beta if s.prior_beta is None else s.prior_beta)
    prior = U1PlaquettePrior(theory.lattice, beta, learn_beta=s.learn_beta)
    flow = gauge_flow(theory, s, "stripes").flow if s.n_layers else Flow([])
    return Model(prior, flow)


PLAQUETTE_PRIOR = FlowFamily("plaquette_prior", PlaquettePriorSettings, plaquette_prior_flow, lambda shape: 0, _check)
