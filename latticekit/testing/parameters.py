"""Perturb a torch module's parameters reproducibly (torch imported lazily).

Freshly built flow layers are often exactly the identity (``zero_init``) or close to it, which would
make property tests vacuous; :func:`randomize_parameters` moves every parameter by a seeded Gaussian
step so that the layer really transforms.
"""

from __future__ import annotations

from typing import Any

__all__ = ["randomize_parameters"]


def randomize_parameters(module: Any, seed: int, scale: float = 0.3, dtype: Any = "float64") -> Any:
    """Add ``scale * N(0, 1)`` (from a torch generator seeded with ``seed``) to every parameter of
    ``module``, then cast it to ``dtype``; returns the module.

    Parameters
    ----------
    module : torch.nn.Module
    seed : int
        Seed of a private ``torch.Generator`` (the global torch generator is not touched).
    scale : float
        Standard deviation of the perturbation.
    dtype : str or torch.dtype or None
        Floating dtype of the result (``None``: keep).

    Examples
    --------
    >>> import torch
    >>> m = torch.nn.Linear(2, 1)
    >>> torch.nn.init.zeros_(m.weight); torch.nn.init.zeros_(m.bias)  # doctest: +ELLIPSIS
    Parameter...
    >>> a = randomize_parameters(m, 0).weight.detach().clone()
    >>> bool(a.abs().max() > 0), a.dtype
    (True, torch.float64)
    >>> m2 = torch.nn.Linear(2, 1); torch.nn.init.zeros_(m2.weight); torch.nn.init.zeros_(m2.bias)  # doctest: +ELLIPSIS
    Parameter...
    >>> bool(torch.equal(randomize_parameters(m2, 0).weight, a))
    True
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module={type(module).__name__}: expected a torch.nn.Module")
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            p.add_((scale * torch.randn(p.shape, generator=g, dtype=p.dtype)).to(p.device))
    if dtype is None:
        return module
    return module.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
