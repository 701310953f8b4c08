"""Context networks in bfloat16: mixed precision for the convolutions of a float32 flow.

The convolutions of the context networks are most of a training step's arithmetic at large batch (about 70% of
the 2D U(1) step at L = 8, batch 1024, on one CPU core: benchmarks/README.md, "The flow step against neumc").
CPUs with bfloat16 instructions (AVX512-BF16, AMX) and GPUs with bfloat16 tensor cores run them at about twice
the float32 rate or more. :func:`set_context_dtype` makes every :class:`~latticekit.flows.nets.ConvNet` of a
model run its convolutions in bfloat16 when its input is float32, through ``torch.autocast`` (PyTorch's
automatic mixed precision; the parameters, their gradients and the optimizer stay float32, autocast casts the
weights per call). The output of each net is returned in float32.

Only the context networks change. The coupling transforms (splines, affine maps, matrix exponentials), their
log-Jacobians, the priors and the actions stay in the model's dtype. A context network produces the
*parameters* of a layer's transform from the frozen variables, and the layer computes its map and log-Jacobian
in float32 from exactly those parameters; so ``log q`` returned with a sample is the density of the map that
drew it, whatever the rounding of the parameters. (The map ``x_a -> h(x_a; theta(x_f))`` is a bijection for
every ``x_f`` with a triangular Jacobian whose determinant is that of ``h`` at the ``theta`` used; the
rounding only makes ``theta(x_f)`` a step function at bfloat16's resolution, as it is at float32's
without this option.) Flow MCMC and reweighting therefore stay exact; what the option can change is the
quality of the fit (the ESS at a given training cost), which benchmarks/README.md measures
("bfloat16 context networks").

Evaluating ``log q`` of a *given* configuration (``Model.log_prob``, the inverse direction) recomputes the
parameters from frozen variables that the inverse reproduces to float32 rounding, not bit for bit: where a
bfloat16 rounding falls the other way, that parameter moves by one bfloat16 unit (2^-8 relative). Sampling
(``Model.sample``, flow MCMC, ``latticekit sample``) never does this. Float64 models, and float64 copies of a
float32 model (the default for sampling gauge flows), are not affected: autocast leaves float64 alone.

The option is for float32 training (``TrainConfig(dtype="float32", context_dtype="bfloat16")``, ``[train]
context_dtype = "bfloat16"``). On a CPU without bfloat16 instructions the convolutions run emulated and slower;
measure first (``benchmarks/bench_flow_peer.py --context-dtype bfloat16``). float16 is not offered: without loss
scaling its gradients underflow.

Examples
--------
>>> import torch
>>> from latticekit.flows import ConvNet
>>> net = ConvNet(2, 2, 3, hidden=(4,))
>>> set_context_dtype(net, "bfloat16")
1
>>> net(torch.randn(5, 2, 4, 4)).dtype       # computed in bfloat16, returned in float32
torch.float32
>>> set_context_dtype(net, None)              # back to float32 convolutions
1
"""

from __future__ import annotations

import torch
from torch import nn

from .nets import ConvNet

__all__ = ["CONTEXT_DTYPES", "set_context_dtype"]

#: the reduced-precision dtypes a context network can run its convolutions in
CONTEXT_DTYPES: tuple[str, ...] = ("bfloat16",)


def set_context_dtype(model: nn.Module, dtype: str | torch.dtype | None) -> int:
    """Run the convolutions of every :class:`~latticekit.flows.nets.ConvNet` in ``model`` in ``dtype`` for float32
    inputs (module docstring); ``None`` restores float32.

    Parameters
    ----------
    model : torch.nn.Module
        A model, flow, layer or network; every ``ConvNet`` among its modules (itself included) is set.
    dtype : {"bfloat16", torch.bfloat16, None}

    Returns
    -------
    int
        The number of networks set (0: the model has no ``ConvNet``).

    Examples
    --------
    >>> import torch
    >>> from latticekit.flows import ConvNet
    >>> set_context_dtype(torch.nn.Sequential(ConvNet(1, 1, 1), ConvNet(1, 1, 1)), torch.bfloat16)
    2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected a torch.nn.Module")
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
        if name not in CONTEXT_DTYPES:
            raise ValueError(f"dtype={dtype}: expected one of {CONTEXT_DTYPES} or None (float32)")
        value: torch.dtype | None = dtype
    elif dtype is None:
        value = None
    elif isinstance(dtype, str) and dtype in CONTEXT_DTYPES:
        value = getattr(torch, dtype)
    else:
        raise ValueError(f"dtype={dtype!r}: expected one of {CONTEXT_DTYPES} or None (float32)")
    nets = [m for m in model.modules() if isinstance(m, ConvNet)]
    for net in nets:
        net.compute_dtype = value
    return len(nets)
