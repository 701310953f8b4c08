"""Flow-model families of gauge fields: ``plaquette`` and ``checkerboard`` couplings.

Both are gauge-equivariant plaquette couplings on a Haar prior. ``plaquette`` is the standard stack of
the lattice's dimension: in 2D the stripe masks of Kanwar et al. 2020 (period 4; extents divisible by
4), in ``Nd >= 3`` the checkerboard masks (even extents). ``checkerboard`` selects the checkerboard
masks in any ``Nd >= 2`` (in ``Nd >= 3`` the same model as ``plaquette``).

``[model]`` keys: ``n_layers``, ``hidden``, ``kernel_size``, ``act``, ``bins``, ``zero_init`` and
``loop_context`` (the layer-invariant two-plaquette loops as network input). ``rectangle_context`` is
accepted as another name of ``loop_context``: it is the name used before, and run folders written then
store it in ``config.json``.

Default depth: 16 stripe layers in 2D (every (direction, offset) pair twice); a checkerboard stack has
one full ``(mu, nu, parity)`` cycle, ``2 Nd (Nd - 1)`` layers, but at least ``4 Nd`` so that every link
is updated at least twice (2D 8, 3D 12, 4D 24).

Examples
--------
>>> from latticekit.utils import parse
>>> parse(PLAQUETTE.settings, {"rectangle_context": False}, "model").loop_context
False
>>> PLAQUETTE.default_layers((8, 8)), PLAQUETTE.default_layers((4, 4, 4, 4)), CHECKERBOARD.default_layers((8, 8))
(16, 24, 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .models import FlowFamily
from .scalar_models import check_activation

__all__ = ["CHECKERBOARD", "PLAQUETTE", "GaugeSettings", "gauge_flow"]


@dataclass
class GaugeSettings:
    """``[model]`` keys of the gauge families."""

    n_layers: int | None = setting(None, ge=1, doc="coupling layers (default: see the module docstring)")
    hidden: list[int] = setting([8, 8], ge=1, doc="hidden channels of the CNN")
    kernel_size: int = setting(3, ge=1, odd=True, doc="CNN kernel size (odd)")
    act: str = setting("leaky_relu", check=check_activation, doc="activation")
    bins: int = setting(8, ge=2, doc="spline bins")
    zero_init: bool = setting(False, doc="start at the identity map")
    loop_context: bool = setting(True, aliases=("rectangle_context",),
                                 doc="feed the layer-invariant two-plaquette loops to the nets")


def gauge_flow(theory: Any, s: GaugeSettings, masks: str) -> Any:
    """The gauge flow model (Haar prior + coupling stack) of ``theory`` with ``masks`` = ``"stripes"``
    (2D, Kanwar et al.) or ``"checkerboard"`` (any Nd).

    This is the one place that calls the gauge coupling stacks of :mod:`latticekit.flows`.
    """
    from latticekit.flows import HaarPrior, Model, sun_gauge_flow, u1_gauge_flow
    from latticekit.groups import U1

    G, lat = theory.group, theory.lattice
    kw: dict[str, Any] = {"masks": masks, "bins": s.bins, "hidden": tuple(s.hidden), "kernel_size": s.kernel_size,
                          "act": s.act, "zero_init": s.zero_init, "loop_context": s.loop_context}
    flow = u1_gauge_flow(lat, s.n_layers, **kw) if G is U1 else sun_gauge_flow(G, lat, s.n_layers, **kw)
    return Model(HaarPrior(G, lat), flow)


def _checkerboard_layers(shape: Sequence[int]) -> int:
    nd = len(shape)
    return max(2 * nd * (nd - 1), 4 * nd)


def _check_checkerboard(shape: Sequence[int], settings: Any) -> None:
    if any(s % 2 for s in shape):
        raise ConfigError(f"lattice.shape: the checkerboard plaquette couplings of a {len(shape)}D gauge flow "
                          f"need even extents, got {list(shape)}")


def _check_plaquette(shape: Sequence[int], settings: Any) -> None:
    if len(shape) == 2:
        if any(s % 4 for s in shape):
            raise ConfigError(f"lattice.shape: the 2D stripe plaquette couplings (model.coupling = 'plaquette' in "
                              f"2D) need extents divisible by 4, got {list(shape)}; model.coupling = "
                              f"'checkerboard' needs even extents only")
    else:
        _check_checkerboard(shape, settings)


PLAQUETTE = FlowFamily(
    "plaquette", GaugeSettings,
    lambda theory, s: gauge_flow(theory, s, "stripes" if theory.lattice.nd == 2 else "checkerboard"),
    lambda shape: 16 if len(shape) == 2 else _checkerboard_layers(shape), _check_plaquette)
CHECKERBOARD = FlowFamily("checkerboard", GaugeSettings, lambda theory, s: gauge_flow(theory, s, "checkerboard"),
                          _checkerboard_layers, _check_checkerboard)
