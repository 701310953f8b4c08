"""dtype helpers: names to dtypes, real <-> complex partners."""

from __future__ import annotations

from types import ModuleType
from typing import Any

_PRECISIONS = {"double": 64, "float64": 64, "64": 64, 64: 64, "single": 32, "float32": 32, "32": 32, 32: 32}


def precision_bits(precision: Any) -> int:
    """64 for 'double' (also 'float64', 64, '64'), 32 for 'single'; a ValueError naming ``precision`` otherwise."""
    try:
        return _PRECISIONS[precision]
    except (KeyError, TypeError):
        raise ValueError(f"precision={precision!r}: expected 'double'/64 or 'single'/32") from None


def real_dtype(xp: ModuleType, precision: Any = "double") -> Any:
    """The real floating dtype of ``xp`` at ``precision`` ('double'/64 or 'single'/32)."""
    return xp.float64 if precision_bits(precision) == 64 else xp.float32


def complex_dtype(xp: ModuleType, precision: Any = "double") -> Any:
    """The complex dtype of ``xp`` at ``precision`` ('double' -> complex128, 'single' -> complex64)."""
    return xp.complex128 if precision_bits(precision) == 64 else xp.complex64


def is_complex(x: Any, xp: ModuleType | None = None) -> bool:
    """Whether array ``x`` has a complex floating dtype."""
    from ._namespace import array_namespace

    xp = xp or array_namespace(x)
    return bool(xp.isdtype(x.dtype, "complex floating"))


def real_dtype_for(dtype: Any, xp: ModuleType) -> Any:
    """Real partner of a floating dtype (complex128 -> float64, complex64 -> float32, reals unchanged)."""
    if dtype == xp.complex128:
        return xp.float64
    if dtype == xp.complex64:
        return xp.float32
    return dtype


def complex_dtype_for(dtype: Any, xp: ModuleType) -> Any:
    """Complex partner of a floating dtype (float64 -> complex128, float32 -> complex64)."""
    if dtype == xp.float64:
        return xp.complex128
    if dtype == xp.float32:
        return xp.complex64
    if dtype in (xp.complex64, xp.complex128):
        return dtype
    raise ValueError(f"dtype {dtype} has no complex partner; expected float32/float64")
