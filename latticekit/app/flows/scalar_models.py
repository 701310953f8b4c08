"""Flow-model families of scalar fields: ``affine`` and ``spline`` checkerboard couplings.

Both alternate the checkerboard parity of :func:`latticekit.flows.scalar_coupling_flow` (Albergo,
Kanwar & Shanahan 2019) on a Gaussian prior; the lattice extents must be even. ``affine`` reads
``tanh_scale``; ``spline`` reads ``bins`` and ``bound`` (monotone rational-quadratic splines with
identity tails).

Examples
--------
>>> from latticekit.utils import parse
>>> parse(SPLINE.settings, {"bins": 4, "hidden": [4]}, "model")
SplineSettings(n_layers=None, hidden=[4], kernel_size=3, act='leaky_relu', zero_init=False, prior_std=1.0, bins=4, bound=4.0)
>>> parse(AFFINE.settings, {"bins": 4}, "model")
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: unknown key model.bins; expected one of act, hidden, kernel_size, n_layers, prior_std, tanh_scale, zero_init
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .models import FlowFamily

__all__ = ["AFFINE", "SPLINE", "AffineSettings", "SplineSettings", "check_activation"]


def check_activation(name: str) -> str | None:
    """None for an activation of :data:`latticekit.flows.ACTIVATIONS`, else the error text."""
    from latticekit.flows.nets import ACTIVATIONS

    return None if name in ACTIVATIONS else f"expected one of {', '.join(ACTIVATIONS)}, got {name!r}"


@dataclass
class _ScalarSettings:
    n_layers: int | None = setting(None, ge=1, doc="coupling layers (default 8)")
    hidden: list[int] = setting([8, 8], ge=1, doc="hidden channels of the CNN")
    kernel_size: int = setting(3, ge=1, odd=True, doc="CNN kernel size (odd)")
    act: str = setting("leaky_relu", check=check_activation, doc="activation")
    zero_init: bool = setting(False, doc="start at the identity map")
    prior_std: float = setting(1.0, gt=0.0, le=1e3, doc="width of the Gaussian prior")


@dataclass
class AffineSettings(_ScalarSettings):
    """``[model]`` keys of ``coupling = "affine"``."""

    tanh_scale: bool = setting(True, doc="bound the log-scale with tanh")


@dataclass
class SplineSettings(_ScalarSettings):
    """``[model]`` keys of ``coupling = "spline"``."""

    bins: int = setting(8, ge=2, doc="spline bins")
    bound: float = setting(4.0, gt=0.0, le=1e3, doc="spline interval [-bound, bound]")


def _check(shape: Sequence[int], settings: Any) -> None:
    # any number of dimensions: the CNN uses separable 1D convolutions for Nd >= 4 (nets.ConvNet)
    if any(s % 2 for s in shape):
        raise ConfigError(f"lattice.shape: checkerboard couplings need even extents, got {list(shape)}")


def _build(coupling: str) -> Any:
    def build(theory: Any, s: Any) -> Any:
        from latticekit.flows.model import Model
        from latticekit.flows.priors import GaussianPrior
        from latticekit.flows.scalar_couplings import scalar_coupling_flow

        lat = theory.lattice
        kw: dict[str, Any] = {"hidden": tuple(s.hidden), "kernel_size": s.kernel_size, "act": s.act,
                              "zero_init": s.zero_init}
        if coupling == "affine":
            kw["tanh_scale"] = s.tanh_scale
        else:
            kw.update(bins=s.bins, bound=s.bound)
        return Model(GaussianPrior(lat.shape, std=s.prior_std), scalar_coupling_flow(lat, s.n_layers, coupling, **kw))

    return build


AFFINE = FlowFamily("affine", AffineSettings, _build("affine"), lambda shape: 8, _check)
SPLINE = FlowFamily("spline", SplineSettings, _build("spline"), lambda shape: 8, _check)
