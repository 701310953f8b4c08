"""Argument checks shared by the checkers: bad input is refused before any work, naming the argument."""

from __future__ import annotations

import math
from typing import Any

from latticekit.groups import Group, NonUnitaryError
from latticekit.lattice import Lattice

from ._close import loosest_tolerances

__all__ = ["check_callable", "check_group", "check_in_group", "check_lattice", "check_nonempty",
           "unitarity_tolerance"]

# Largest unitarity defect ``||U^dag U - 1||_F + |det U - 1|`` (per link; dimensionless, links have unit norm)
# accepted by the checkers, by the real precision of the array. Round-off leaves ~1e-15..1e-13 in float64 after a
# few products, exponentials or projections, and ~1e-6 in float32 (Haar links drawn in float32 already have 1e-6),
# so both limits leave >= 10x headroom for correctly built links while refusing links that are not group elements
# to working precision (a float32 field cast to float64: ~1e-6; 1.1 * U; 2 * Omega). The limits are tight because
# a defect d biases the checks at first order: the SU(N) output coordinates ``project_algebra(y y0^dag)`` of
# autograd_logdet assume ``y0 y0^dag = 1``, and its log det of the identity map was measured off by about
# 5 d (SU(3), 4x4, 256 coordinates per sample; ~sqrt(#coordinates) d), so 1e-10 keeps that bias below 1e-9, under
# the float64 log-det tolerance 1e-8, and 1e-5 keeps it below the float32 one, 1e-4; a non-unitary Omega breaks the
# gauge invariance of traces at O(d |output|).
_UNITARITY_TOLERANCES = {
    "float64": (1e-10, 0.0),
    "complex128": (1e-10, 0.0),
    "float32": (1e-5, 0.0),
    "complex64": (1e-5, 0.0),
    "float16": (1e-2, 0.0),
    "complex32": (1e-2, 0.0),
    "bfloat16": (1e-2, 0.0),
}


def unitarity_tolerance(x: Any) -> float:
    """The largest unitarity defect accepted for the links ``x``: 1e-10 in float64 / complex128, 1e-5 in
    float32 / complex64, 1e-2 in half precisions (the float64 value for anything else).

    Examples
    --------
    >>> import numpy as np
    >>> unitarity_tolerance(np.ones(2, dtype=np.complex64)), unitarity_tolerance(np.ones(2))
    (1e-05, 1e-10)
    """
    return (loosest_tolerances([x], _UNITARITY_TOLERANCES) or _UNITARITY_TOLERANCES["float64"])[0]


def check_callable(f: Any, name: str) -> None:
    if not callable(f):
        raise TypeError(f"{name}={f!r}: expected a callable (a function or a flow layer)")


def check_group(group: Any, name: str = "group") -> Group:
    """``group`` if it is a latticekit Group; a TypeError naming ``name`` otherwise (a name such as 'SU(2)' gets
    the fix: the library's physics functions take group objects, and ``latticekit.group_from_name`` makes one)."""
    if isinstance(group, Group):
        return group
    hint = f"; for a name use latticekit.group_from_name({group!r})" if isinstance(group, str) else ""
    raise TypeError(f"{name}={group!r}: expected a latticekit Group (latticekit.U1 or latticekit.SU(N)){hint}")


def check_lattice(lattice: Any, name: str = "lattice") -> Lattice:
    """``lattice`` if it is a latticekit.Lattice; a TypeError naming ``name`` otherwise."""
    if isinstance(lattice, Lattice):
        return lattice
    hint = f"; for extents use latticekit.Lattice({tuple(lattice)!r})" if isinstance(lattice, (tuple, list)) else ""
    raise TypeError(f"{name}={lattice!r}: expected a latticekit.Lattice{hint}")


def check_nonempty(x: Any, name: str) -> None:
    """ValueError when the array ``x`` has no elements: every check of it would pass vacuously."""
    shape = getattr(x, "shape", None)
    if shape is not None and math.prod(tuple(shape)) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}): nothing to check")


def check_in_group(x: Any, group: Group, nd: int, name: str, why: str = "") -> None:
    """Shape, dtype and unitarity of the links ``x`` (``nd`` site axes); :class:`NonUnitaryError` (a ValueError)
    naming ``name`` when the defect exceeds :func:`unitarity_tolerance`."""
    try:
        group.check(x, nd=nd, name=name, tol=unitarity_tolerance(x))
    except NonUnitaryError as exc:
        raise NonUnitaryError(f"{exc}{why}; re-unitarise with {group.name}.normalize or build the links in this "
                              "precision") from None
