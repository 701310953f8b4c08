"""Argument checks shared by the observables (private)."""

from __future__ import annotations

import numbers

from typing import Any

from latticekit.gauge import check_gauge_field
from latticekit.groups import Group
from latticekit.lattice import Lattice


def check_gauge(U: Any, group: Group, lattice: Lattice, min_nd: int = 1) -> None:
    """Validate group, lattice and the gauge-field shape ``(*B, Nd, *G, *L)`` of ``U``."""
    if not isinstance(group, Group):
        raise TypeError(f"group={group!r}: expected a latticekit Group (U1 or SU(N))")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if lattice.nd < min_nd:
        raise ValueError(f"lattice={lattice}: this observable needs at least {min_nd} dimensions")
    check_gauge_field(U, group, lattice, name="U")


def check_plane(mu: int, nu: int, lattice: Lattice) -> tuple[int, int]:
    """Validate a plane ``(mu, nu)`` with two different directions; returns them as Python ints."""
    for name, d in (("mu", mu), ("nu", nu)):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= d < lattice.nd:
            raise ValueError(f"{name}={d!r}: expected a direction in 0..{lattice.nd - 1}")
    if mu == nu:
        raise ValueError(f"mu={mu}, nu={nu}: expected two different directions")
    return int(mu), int(nu)


def is_u1(group: Group) -> bool:
    return tuple(group.element_shape) == ()


def site_axes(lattice: Lattice) -> tuple[int, ...]:
    return tuple(range(-lattice.nd, 0))
