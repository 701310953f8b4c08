"""Shared machinery of the ``torch.compile`` fast paths (``_kernels_torch*.py``): one code object per graph
variant, small device constants built once, and the check of a real coupling."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

__all__ = ["compile_variant", "device_constant", "device_scalar", "real_scalar"]

_CONSTANTS: dict[tuple[Any, ...], Any] = {}


def device_constant(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """The small tensor ``make()`` built once per hashable ``key`` (which names its dtype and device): no
    host-to-device copy per call on a GPU. At most 256 are kept."""
    t = _CONSTANTS.get(key)
    if t is None:
        t = make()
        if len(_CONSTANTS) < 256:
            _CONSTANTS[key] = t
    return t


def device_scalar(v: float, dtype: Any, device: Any) -> Any:
    """A cached 0-d tensor of ``v`` on ``device``: a compiled graph takes scalars as tensors, so that a new
    value does not recompile (a Python float recompiles once, or at every value with dynamo's
    ``specialize_float``)."""
    import torch

    return device_constant(("scalar", float(v), dtype, device), lambda: torch.tensor(float(v), dtype=dtype).to(device))


def real_scalar(v: Any) -> bool:
    """True for a finite real number (Python or NumPy; not a bool): a coupling the kernels take."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def compile_variant(fn: Callable[..., Any], tag: str, **options: Any) -> Callable[..., Any]:
    """``torch.compile(..., **options)`` of a copy of ``fn`` with a code object of its own, named ``<name>_<tag>``.

    Dynamo keeps its compiled graphs per code object and stops compiling one (falling back to eager, with a
    warning) after ``torch._dynamo.config.recompile_limit`` (8) variants. Graphs that differ by Python
    constants (nd, gamma tables, boundary conditions) each get their own code object here, so that a process
    that meets many variants (the test suite, a job with 2D and 4D theories) keeps every one of them compiled.
    The flow layers (:func:`latticekit.flows.compile_layers`) get one code object per layer the same way.
    """
    import types

    import torch

    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}", co_qualname=f"{fn.__qualname__}_{tag}")
    return torch.compile(types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__),
                         **options)
