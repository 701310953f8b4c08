"""The flow layer contract and the composition of layers (DESIGN.md, "Flow layer contract").

A flow layer is a :class:`torch.nn.Module` with

* ``forward(x, context=None) -> (y, logdet)`` and
* ``inverse(y, context=None) -> (x, logdet)``,

where ``logdet`` has one entry per batch element and equals ``log|det dy/dx|`` (for the inverse:
``log|det dx/dy|``). Densities of real fields are with respect to Lebesgue measure, densities of
gauge fields with respect to the product of normalised Haar measures. ``context`` is an optional
conditioning tensor (e.g. a coarse field in a multiscale model) passed unchanged to every layer.

Examples
--------
>>> import torch
>>> class Shift(FlowLayer):
...     def forward(self, x, context=None):
...         return x + 1.0, x.new_zeros(x.shape[0])
...     def inverse(self, y, context=None):
...         return y - 1.0, y.new_zeros(y.shape[0])
>>> f = Flow([Shift(), Shift()])
>>> y, ld = f(torch.zeros(2, 3))
>>> y[0].tolist(), ld.tolist()
([2.0, 2.0, 2.0], [0.0, 0.0])
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ["Flow", "FlowLayer", "InverseFlow", "append_context", "sum_sites"]


def sum_sites(t: torch.Tensor, n_event: int) -> torch.Tensor:
    """Sum the last ``n_event`` axes (one value per batch element).

    Examples
    --------
    >>> import torch
    >>> sum_sites(torch.ones(2, 3, 4), 2).tolist()
    [12.0, 12.0]
    """
    if n_event == 0:
        return t
    return t.sum(dim=tuple(range(-n_event, 0)))


def append_context(feats: torch.Tensor, context: Any, channels: int, batch: tuple[int, ...],
                   lattice_shape: tuple[int, ...]) -> torch.Tensor:
    """Network input ``(prod(batch), C, *L)`` with the layer's external context appended as channels.

    ``context`` must have shape ``batch + (channels,) + lattice_shape`` when the layer was built with
    ``channels > 0``, and must be None otherwise; a ValueError says what was expected. The context is
    cast to the dtype of ``feats``.

    Examples
    --------
    >>> import torch
    >>> f = torch.zeros(6, 2, 4, 4)
    >>> append_context(f, torch.ones(2, 3, 1, 4, 4), 1, (2, 3), (4, 4)).shape
    torch.Size([6, 3, 4, 4])
    >>> append_context(f, None, 0, (2, 3), (4, 4)) is f
    True
    """
    if channels:
        want = tuple(batch) + (channels,) + tuple(lattice_shape)
        if context is None or tuple(context.shape) != want:
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"context has shape {got}; expected {want} (batch, {channels} context channels, lattice)")
        return torch.cat([feats, context.reshape((-1, channels) + tuple(lattice_shape)).to(feats.dtype)], dim=1)
    if context is not None:
        raise ValueError("context: this layer was built with context_channels=0 and takes no context")
    return feats


class FlowLayer(nn.Module):
    """Base class of invertible layers: subclasses implement :meth:`forward` and :meth:`inverse`, or
    one method ``_transform(x, context, inverse)`` that does both (the gauge coupling layers, whose
    two directions differ only in the spline direction).

    Examples
    --------
    >>> issubclass(Flow, FlowLayer)
    True
    """

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D401
        """``(y, log|det dy/dx|)`` per batch element."""
        if hasattr(self, "_transform"):
            return self._transform(x, context, inverse=False)  # type: ignore[attr-defined]
        raise TypeError(f"{type(self).__name__} does not implement forward(x, context=None)")

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, log|det dx/dy|)`` per batch element."""
        if hasattr(self, "_transform"):
            return self._transform(y, context, inverse=True)  # type: ignore[attr-defined]
        raise TypeError(f"{type(self).__name__} does not implement inverse(y, context=None)")



class Flow(FlowLayer):
    """Composition ``f = f_n o ... o f_1`` of flow layers with the summed log-determinant.

    Parameters
    ----------
    layers : iterable of FlowLayer
        Applied in order by :meth:`forward`, in reverse order by :meth:`inverse`.

    Examples
    --------
    >>> import torch
    >>> f = Flow([])
    >>> y, ld = f(torch.ones(3, 2))
    >>> bool((y == 1).all()), ld.tolist()
    (True, [0.0, 0.0, 0.0])
    """

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.Module) or not callable(getattr(layer, "inverse", None)):
                raise TypeError(f"layers[{i}]={type(layer).__name__}: expected a torch.nn.Module with "
                                "forward(x, context=None) and inverse(y, context=None)")
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    @staticmethod
    def _zero(x: torch.Tensor, batch_ndim: int) -> torch.Tensor:
        real = x.real.dtype if x.is_complex() else x.dtype
        return torch.zeros(x.shape[:batch_ndim], dtype=real, device=x.device)

    #: recompute each layer's activations in the backward pass instead of keeping them (activation
    #: checkpointing; set by :func:`~latticekit.flows.recompute.recompute_layers`)
    recompute: bool = False

    #: the compiled callers of the layers (a :class:`~latticekit.flows.compiled_layers.LayerCompiler`, set by
    #: :func:`~latticekit.flows.compiled_layers.compile_layers`); None: each layer is called eagerly
    compiled: Any = None

    def _run(self, index: int, layer: nn.Module, inverse: bool, x: torch.Tensor,
             context: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self.compiled is not None and index not in self.compiled.eager:   # (eager: layers that hold a Flow)
            fn: Any = functools.partial(self.compiled, index, layer, inverse)
        else:
            fn = layer.inverse if inverse else layer.__call__
        # a layer that recomputes by itself (a nested Flow, a LocalCNF) is not checkpointed as a whole as well:
        # that would run its inner work a third time
        if self.recompute and torch.is_grad_enabled() and not getattr(layer, "recompute", False):
            from .recompute import recomputed

            return recomputed(fn, x, context)
        return fn(x, context=context)

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        total: torch.Tensor | None = None
        for i, layer in enumerate(self.layers):
            x, ld = self._run(i, layer, False, x, context)
            total = ld if total is None else total + ld
        return x, (self._zero(x, 1) if total is None else total)

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        total: torch.Tensor | None = None
        for i in reversed(range(len(self.layers))):
            y, ld = self._run(i, self.layers[i], True, y, context)
            total = ld if total is None else total + ld
        return y, (self._zero(y, 1) if total is None else total)


class InverseFlow(FlowLayer):
    """The inverse of a layer as a layer (``forward`` is the wrapped layer's ``inverse``).

    Examples
    --------
    >>> import torch
    >>> f = InverseFlow(Flow([]))
    >>> f(torch.zeros(1, 2))[0].shape
    torch.Size([1, 2])
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layer.inverse(x, context=context)

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layer(y, context=context)
