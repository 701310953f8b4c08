"""Activation checkpointing of flow layers: memory of one layer instead of all, for one more forward pass.

Training a flow by reverse KL keeps, for the backward pass, what every layer saved in the forward pass: with
the 4D QCD architecture of arXiv:2208.03832 about 0.4 MB (gauge flow) and 1.9 MB (pseudofermion flow) per
site and sample in float64 (``benchmarks/README.md``, "4D QCD flows"), which at the paper's batches is more
than one GPU holds. With :func:`recompute_layers` every :class:`~latticekit.flows.base.Flow` in a model runs
each of its layers under :func:`torch.utils.checkpoint.checkpoint` (the non-reentrant form): only the layer's
inputs are kept and its forward pass is run again during the backward pass. The super-resolving flows' ODE
layer (:class:`~latticekit.flows.superres.LocalCNF`) does the same per evaluation of its vector field inside
the solver (what backpropagation through dopri5 keeps grows with the solver steps: 15 GB at 16x16 after
training; ``benchmarks/README.md``, super-resolving flows). Gradients are the same (the
layers are deterministic); a step costs about one more forward pass. The option is ``recompute_layers`` of
:class:`~latticekit.flows.train.TrainConfig` and of the ``[train]`` section of ``latticekit train``, the same
idea as PyTorch's ``checkpoint_sequential`` and the "gradient checkpointing" of large language models.

Examples
--------
>>> import torch
>>> from latticekit.flows import Flow
>>> from latticekit.flows.recompute import recompute_layers
>>> f = Flow([Flow([])])
>>> recompute_layers(f)
2
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["recompute_layers", "recomputed"]


def recompute_layers(model: nn.Module, enabled: bool = True) -> int:
    """Switch activation checkpointing on (or off) for every module of ``model`` that supports it; returns
    how many.

    A module supports it by declaring a boolean class attribute ``recompute`` and honouring it: a
    :class:`~latticekit.flows.base.Flow` checkpoints each of its layers, and the super-resolving flows' ODE layer
    (:class:`~latticekit.flows.superres.LocalCNF`) each evaluation of its vector field, so that backpropagation
    through the solver keeps one field per solver stage instead of every stage's activations. A module that
    recomputes by itself inside a Flow (a nested Flow, a LocalCNF) is not checkpointed as a whole by the outer
    Flow as well (that would run its inner work a third time).
    """
    layers = [m for m in model.modules() if isinstance(getattr(type(m), "recompute", None), bool)]
    for f in layers:
        f.recompute = bool(enabled)
    return len(layers)


def recomputed(fn: Callable[..., Any], x: torch.Tensor, context: Any) -> Any:
    """``fn(x, context=context)`` with its activations recomputed in the backward pass."""
    return checkpoint(fn, x, context=context, use_reentrant=False)
