"""Activation checkpointing of flow layers: memory of one layer instead of all, for one more forward pass.

Training a flow by reverse KL keeps, for the backward pass, what every layer saved in the forward pass: with
the 4D QCD architecture of arXiv:2208.03832 about 0.4 MB (gauge flow) and 1.9 MB (pseudofermion flow) per
site and sample in float64 (``benchmarks/README.md``, "4D QCD flows"), which at the paper's batches is more
than one GPU holds. With :func:`recompute_layers` every :class:`~latticekit.flows.base.Flow` in a model runs
each of its layers under :func:`torch.utils.checkpoint.checkpoint` (the non-reentrant form): only the layer's
inputs are kept and its forward pass is run again during the backward pass. Gradients are the same (the
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

from .base import Flow

__all__ = ["recompute_layers", "recomputed"]


def recompute_layers(model: nn.Module, enabled: bool = True) -> int:
    """Switch activation checkpointing on (or off) for every :class:`Flow` in ``model``; returns how many.

    A Flow nested in another one runs its own layers checkpointed and is not checkpointed as a whole by
    the outer one (that would run its layers a third time).
    """
    flows = [m for m in model.modules() if isinstance(m, Flow)]
    for f in flows:
        f.recompute = bool(enabled)
    return len(flows)


def recomputed(fn: Callable[..., Any], x: torch.Tensor, context: Any) -> Any:
    """``fn(x, context=context)`` with its activations recomputed in the backward pass."""
    return checkpoint(fn, x, context=context, use_reentrant=False)
