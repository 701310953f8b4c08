"""Argument checks shared by the action constructors and functions: couplings, flags, solver settings.

Each raises before any work, naming the argument and what was expected (DESIGN.md, Errors). A string
such as ``beta="5.7"`` or a bool such as ``kappa=True`` is refused rather than converted: ``float()``
would accept the first and read the second as 1.

Examples
--------
>>> from latticekit.actions._checks import real_number
>>> real_number("beta", 5.7)
5.7
>>> real_number("beta", "5.7")
Traceback (most recent call last):
    ...
TypeError: beta='5.7': expected a real number, got str
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

from latticekit.backends import array_namespace

__all__ = ["flag", "positive_int", "real_number", "real_number_or_array"]


def real_number(name: str, v: Any, *, finite: bool = True) -> float:
    """``float(v)`` for a real Python/NumPy scalar (not bool, str or complex), finite unless told."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}={v!r}: expected a real number, got {type(v).__name__}")
    x = float(v)
    if finite and not math.isfinite(x):
        raise ValueError(f"{name}={v!r}: expected a finite real number")
    return x


def real_number_or_array(name: str, v: Any) -> Any:
    """A real scalar (checked as :func:`real_number`, returned unchanged) or an array of a real floating
    dtype (e.g. a torch tensor requiring grad, so that derivatives w.r.t. the coupling flow); arrays are
    not inspected element-wise (that would synchronise a GPU on every call)."""
    if hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, numbers.Number):
        try:
            xp = array_namespace(v)
        except (TypeError, ValueError):   # not an array of a supported library (BackendError)
            raise TypeError(f"{name}: expected a real number or a real floating array, got "
                            f"{type(v).__name__}") from None
        if not xp.isdtype(v.dtype, "real floating"):
            raise TypeError(f"{name}: expected a real number or a real floating array, got an array of dtype {v.dtype}")
        return v
    real_number(name, v)
    return v


def flag(name: str, v: Any) -> bool:
    """``v`` if it is a bool (Python or NumPy); a string such as ``"no"`` would otherwise read as True."""
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    raise TypeError(f"{name}={v!r}: expected True or False, got {type(v).__name__}")


def positive_int(name: str, v: Any) -> int:
    """``v`` as an int if it is an integer >= 1 (not bool, not a float such as 2.5)."""
    if isinstance(v, bool):
        raise TypeError(f"{name}={v!r}: expected a positive integer, got bool")
    try:
        n = operator.index(v)
    except TypeError:
        raise TypeError(f"{name}={v!r}: expected a positive integer, got {type(v).__name__}") from None
    if n < 1:
        raise ValueError(f"{name}={v!r}: expected a positive integer")
    return n
