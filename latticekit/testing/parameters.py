"""Perturb a torch module's parameters reproducibly (torch imported lazily).

Freshly built flow layers are often exactly the identity (``zero_init``) or close to it, which would
make property tests vacuous; :func:`randomize_parameters` moves every parameter by a seeded Gaussian
step so that the layer really transforms.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["randomize_parameters"]


# real precisions by name: the library's words ('double'/'single', as latticekit.backends.precision_bits) and
# the torch dtype names
_REAL_NAMES = {"double": "float64", "float64": "float64", "64": "float64", 64: "float64",
               "single": "float32", "float32": "float32", "32": "float32", 32: "float32",
               "half": "float16", "float16": "float16", "bfloat16": "bfloat16"}
# the complex dtype that goes with a real one (complex parameters stay complex)
_COMPLEX_PARTNER = {"float64": "complex128", "float32": "complex64", "float16": "complex32"}
_ACCEPTED = ("'double'/'float64'/64, 'single'/'float32'/32, 'half'/'float16', 'bfloat16', a real floating "
             "torch.dtype, or None (keep)")


def _real_dtype(torch: Any, dtype: Any) -> Any:
    """The real floating torch dtype named by ``dtype`` (None: None); a ValueError naming ``dtype`` otherwise."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if dtype.is_floating_point:
            return dtype
    elif isinstance(dtype, (str, int)) and not isinstance(dtype, bool):
        name = _REAL_NAMES.get(dtype.lower() if isinstance(dtype, str) else dtype)
        if name is not None:
            return getattr(torch, name)
    raise ValueError(f"dtype={dtype!r}: expected a real floating precision: {_ACCEPTED}; complex parameters get "
                     "the matching complex dtype")


def randomize_parameters(module: Any, seed: int, scale: float = 0.3, dtype: Any = "float64") -> Any:
    """Add ``scale * N(0, 1)`` (from a torch generator seeded with ``seed``) to every parameter of
    ``module``, then cast it to ``dtype``; returns the module.

    Parameters
    ----------
    module : torch.nn.Module
    seed : int
        Non-negative seed of a private ``torch.Generator`` (the global torch generator is not touched).
    scale : float
        Standard deviation of the perturbation, a positive finite number. A complex parameter gets a
        complex normal step of that standard deviation (``E|z|^2 = scale^2``).
    dtype : str or torch.dtype or None
        Real floating precision of the result: ``"double"`` / ``"float64"`` (default), ``"single"`` /
        ``"float32"`` (the library's precision words or torch's names), ``"half"`` / ``"float16"``,
        ``"bfloat16"``, a real floating ``torch.dtype``; ``None`` keeps the dtypes. Floating parameters
        and buffers get this dtype, complex ones the matching complex dtype (float64 -> complex128,
        float32 -> complex64): a complex parameter is never made real.

    Raises
    ------
    TypeError
        ``module`` is not a ``torch.nn.Module``, or ``seed`` is not an integer.
    ValueError
        A negative ``seed``, a ``scale`` that is not positive and finite, or an unknown or complex
        ``dtype``.

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
    >>> randomize_parameters(torch.nn.Linear(2, 1), 0, dtype="single").weight.dtype
    torch.float32
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module={type(module).__name__}: expected a torch.nn.Module")
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError(f"seed={seed!r}: expected a non-negative integer")
    if int(seed) < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale < math.inf:
        raise ValueError(f"scale={scale!r}: expected a positive finite number (the standard deviation of the step)")
    real = _real_dtype(torch, dtype)
    cplx = None if real is None else _COMPLEX_PARTNER.get(str(real).rsplit(".", 1)[-1])
    if real is not None and cplx is None and any(t.is_complex() for t in module.parameters()):
        raise ValueError(f"dtype={dtype!r}: has no complex partner for the module's complex parameters")
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in module.parameters():
            p.add_((float(scale) * torch.randn(p.shape, generator=g, dtype=p.dtype)).to(p.device))
    if real is None:
        return module
    cdt = None if cplx is None else getattr(torch, cplx)

    def convert(t: Any) -> Any:
        if t.is_complex():
            return t.to(cdt)
        return t.to(real) if t.is_floating_point() else t

    # Module.to(dtype) would cast complex tensors to the real dtype (dropping the imaginary part): apply the same
    # conversion as Module.to (parameters, their gradients and buffers, in place of the module) with the
    # complex partner for complex tensors
    return module._apply(convert)
