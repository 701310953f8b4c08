"""Argument checks of the pseudofermion API: integers and real numbers, named in the error (bools and fractional
values were truncated silently, e.g. ``n_pf=2.9`` ran with 2 and ``kappa=True`` with 1; user probe). The ``latticekit``
configs refuse the same values through their schema; these checks give the library calls the same errors."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_int", "check_real"]


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; a bool, a fractional or a non-numeric value is a ValueError naming ``name``.

    Examples
    --------
    >>> check_int(3.0, "n_pf", 1)
    3
    >>> check_int(True, "n_pf", 1)
    Traceback (most recent call last):
    ...
    ValueError: n_pf=True: expected an integer >= 1
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"
    if not ok or not math.isfinite(float(value)) or float(value) != int(value) or int(value) < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def check_real(value: Any, name: str) -> float:
    """``value`` as a finite float; a bool or a non-numeric value is a ValueError naming ``name``."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or type(value).__name__ == "bool_" \
            or not math.isfinite(float(value)):
        raise ValueError(f"{name}={value!r}: expected a finite real number")
    return float(value)
