"""Flow-model family ``multiscale``: a multiscale prior (arXiv:2404.10819) and a small fine-lattice flow.

``[model] coupling = "multiscale"`` (the family key; issue 15 called it ``kind = "multiscale"``) builds
``Model(MultiscalePrior(...), fine_flow)`` (:mod:`latticekit.flows.multiscale`): the paper's best models,
"the multiscale model integrated into the overall model as a prior, with an additional flow applied at the
finest scale" (Sec. 3.2), trained end to end by reverse KL.

``[model]`` keys of the multiscale prior:

* ``coarse_shape`` (list, default 2 sites per direction, fewer where the lattice is smaller): the coarse
  lattice; the target ``lattice.shape`` must be ``coarse_shape x 2^k`` in every direction;
* ``order`` (list of directions, default the directions in turn): the doubling order;
* ``coarse_prior`` (``"haar"``; ``"theory"``: the coarse Wilson theory at ``coarse_beta``, drawn by
  ``coarse_sweeps`` heatbath sweeps, even coarse extents);
* ``prior`` (``"auto"``: the heatbath-like prior of eq. 6 for U(1) and SU(2), Haar for SU(N >= 3);
  ``"heatbath"``, ``"haar"``), ``prior_beta`` (its initial staple weight, default ``action.beta``),
  ``learn_beta`` (true);
* ``conditional_layer`` (``"auto"``: circular splines for U(1), spectral flows for SU(N); ``"residual"``),
  ``conditional_layers`` (2), ``conditional_bins`` (8), ``conditional_hidden`` ([16]).

Keys of the fine flow (the gauge couplings of :mod:`.gauge_models`): ``n_layers`` (default: every link
updated once, 8 stripe layers in 2D, ``2 Nd`` checkerboard layers otherwise; 0: no fine flow), ``fine_masks``
(``"auto"``: stripes in 2D when the extents are multiples of 4, else checkerboard), ``hidden``,
``kernel_size``, ``act``, ``bins``, ``zero_init`` (default true: training starts from the multiscale prior),
``loop_context``.

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 2.0},
...                             "model": {"coupling": "multiscale", "n_layers": 2, "hidden": [4]}})
>>> model, action, lat = build_flow(cfg)
>>> type(model.prior).__name__, model.prior.coarse, model.prior.order, len(model.flow)
('MultiscalePrior', (2, 2), [0, 1, 0, 1], 2)
>>> FlowConfig.from_dict({"lattice": {"shape": [8, 6]}, "model": {"coupling": "multiscale"}})
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: model.coarse_shape: coarse=(2, 2): the target lattice (8, 6) must be coarse x 2^k in every direction; direction 1 has 6 = 2 x 3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .models import FlowFamily
from .scalar_models import check_activation

__all__ = ["MULTISCALE", "MultiscaleSettings", "coarse_shape", "multiscale_flow"]


@dataclass
class MultiscaleSettings:
    """``[model]`` keys of ``coupling = "multiscale"`` (module docstring)."""

    n_layers: int | None = setting(None, ge=0, doc="fine-flow coupling layers (0: the multiscale prior alone)")
    fine_masks: str = setting("auto", choices=("auto", "stripes", "checkerboard"), doc="masks of the fine flow")
    hidden: list[int] = setting([8], ge=1, doc="hidden channels of the fine flow's CNN")
    kernel_size: int = setting(3, ge=1, odd=True, doc="fine-flow CNN kernel size (odd)")
    act: str = setting("leaky_relu", check=check_activation, doc="activation")
    bins: int = setting(8, ge=2, doc="spline bins of the fine flow")
    zero_init: bool = setting(True, doc="start the fine flow at the identity map")
    loop_context: bool = setting(True, doc="fine flow: feed the two-plaquette loops to the nets")
    coarse_shape: list[int] = setting([], ge=1, doc="coarse lattice (default 2 sites per direction)")
    order: list[int] = setting([], ge=0, doc="doubling directions (default the directions in turn)")
    coarse_prior: str = setting("haar", choices=("haar", "theory"), doc="coarse prior")
    coarse_beta: float | None = setting(None, ge=0.0, le=1e4, doc="coupling of the coarse theory prior")
    coarse_sweeps: int = setting(20, ge=1, doc="heatbath sweeps per draw of the coarse theory prior")
    prior: str = setting("auto", choices=("auto", "heatbath", "haar"), doc="prior of the staple-conditional models")
    prior_beta: float | None = setting(None, ge=-1e4, le=1e4, doc="initial staple weight of the heatbath prior "
                                       "(default action.beta)")
    learn_beta: bool = setting(True, doc="train the staple weights of the heatbath prior")
    conditional_layer: str = setting("auto", choices=("auto", "spline", "spectral", "residual"),
                                     doc="coupling type of the staple-conditional models")
    conditional_layers: int = setting(2, ge=0, doc="couplings per staple-conditional model")
    conditional_bins: int = setting(8, ge=2, doc="spline bins of the staple-conditional couplings")
    conditional_hidden: list[int] = setting([16], ge=1, doc="hidden widths of the staple-conditional MLPs")


def coarse_shape(shape: Sequence[int], settings: Any) -> tuple[int, ...]:
    """``model.coarse_shape``, or 2 sites per direction (1 where the lattice has one site)."""
    if settings.coarse_shape:
        return tuple(int(c) for c in settings.coarse_shape)
    return tuple(min(2, int(L)) for L in shape)


def _fine_masks(shape: Sequence[int], settings: Any) -> str:
    if settings.fine_masks != "auto":
        return settings.fine_masks
    return "stripes" if len(shape) == 2 and all(L % 4 == 0 for L in shape) else "checkerboard"


def _check(shape: Sequence[int], settings: Any) -> None:
    from latticekit.flows.multiscale import doubling_order, doublings

    coarse = coarse_shape(shape, settings)
    try:
        doublings(coarse, shape)
    except ValueError as exc:
        raise ConfigError(f"model.coarse_shape: {exc}") from None
    try:
        doubling_order(coarse, shape, settings.order or None)
    except ValueError as exc:
        raise ConfigError(f"model.order: {exc}") from None
    if settings.prior_beta == 0 and settings.learn_beta and settings.prior != "haar":
        raise ConfigError("model.prior_beta: 0 with learn_beta = true makes the gradient of the heatbath prior's "
                          "staple weights singular (training stopped on a NaN gradient); start from a nonzero weight "
                          "or use prior = 'haar'")
    if settings.coarse_prior == "theory":
        if settings.coarse_beta is None:
            raise ConfigError("model.coarse_beta: coarse_prior = 'theory' needs the coupling of the coarse theory")
        if any(c % 2 for c in coarse):
            raise ConfigError(f"model.coarse_shape: coarse_prior = 'theory' is drawn by the heatbath, which needs even "
                              f"coarse extents, got {list(coarse)} (use coarse_prior = 'haar')")
    elif settings.coarse_beta is not None:
        raise ConfigError("model.coarse_beta: only read with coarse_prior = 'theory'")
    masks = _fine_masks(shape, settings)
    if settings.n_layers != 0:
        if masks == "stripes" and (len(shape) != 2 or any(L % 4 for L in shape)):
            raise ConfigError(f"model.fine_masks: the stripe couplings need a 2D lattice with extents divisible by 4, "
                              f"got {list(shape)}; use fine_masks = 'checkerboard' (even extents) or n_layers = 0")
        if masks == "checkerboard" and any(L % 2 for L in shape):
            raise ConfigError(f"lattice.shape: the checkerboard couplings of the fine flow need even extents, got "
                              f"{list(shape)}; use n_layers = 0 for a multiscale prior alone")


def _default_layers(shape: Sequence[int]) -> int:
    # every link updated once: 8 stripe layers in 2D (2 directions x 4 offsets), 2 Nd checkerboard layers
    return 8 if len(shape) == 2 and all(L % 4 == 0 for L in shape) else 2 * len(shape)


def multiscale_flow(theory: Any, s: MultiscaleSettings) -> Any:
    """``Model(MultiscalePrior, fine flow)`` of ``theory`` (module docstring)."""
    from latticekit.flows import Flow, Model
    from latticekit.flows.multiscale import ConditionalSpec, MultiscalePrior

    from .gauge_models import gauge_flow

    G, lat = theory.group, theory.lattice
    spec = ConditionalSpec(prior=s.prior, beta=float(theory.params.beta if s.prior_beta is None else s.prior_beta),
                           learn_beta=s.learn_beta, layer=s.conditional_layer, n_layers=s.conditional_layers,
                           bins=s.conditional_bins, hidden=tuple(s.conditional_hidden), act=s.act, zero_init=True)
    try:
        spec.check(G)
    except ValueError as exc:
        key = "model.conditional_layer" if str(exc).startswith("layer") else "model.prior"
        raise ConfigError(f"{key}: {exc} (action.group = {G.name!r})") from None
    prior = MultiscalePrior(G, lat, coarse_shape(lat.shape, s), order=s.order or None, coarse_prior=s.coarse_prior,
                            coarse_beta=s.coarse_beta, coarse_sweeps=s.coarse_sweeps, spec=spec)
    flow = gauge_flow(theory, s, _fine_masks(lat.shape, s)).flow if s.n_layers else Flow([])
    return Model(prior, flow)


MULTISCALE = FlowFamily("multiscale", MultiscaleSettings, multiscale_flow, _default_layers, _check)
