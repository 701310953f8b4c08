"""Gauge groups: U(1) (angles) and SU(N) (matrices) behind one interface (:class:`Group`).

Examples
--------
>>> from latticekit.groups import U1, SU, group_from_name
>>> group_from_name("SU3") is SU(3)
True
"""

from __future__ import annotations

from .base import Group, NonUnitaryError, wrap_angle
from .sun import SU, SUGroup
from .u1 import U1, U1Group

__all__ = ["Group", "NonUnitaryError", "SU", "SUGroup", "U1", "U1Group", "group_from_name", "wrap_angle"]


def group_from_name(name: str) -> Group:
    """Group from a name such as ``"U1"``, ``"U(1)"``, ``"SU2"``, ``"SU(3)"``."""
    key = str(name).upper().replace("(", "").replace(")", "").replace(" ", "")
    if key == "U1":
        return U1
    if key.startswith("SU") and key[2:].isdigit() and int(key[2:]) >= 2:
        return SU(int(key[2:]))
    raise ValueError(f"group={name!r}: expected 'U1' or 'SU<N>' with N >= 2 (e.g. 'SU3')")
