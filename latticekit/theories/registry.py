"""The theory registry: ``action.kind`` -> theory class.

Adding a theory means adding its module to this package and one line to :data:`THEORIES` (and its
tests); no job or shared function branches on the kind. Entries are ``"module:Class"`` strings loaded
on first use, so looking up one theory imports only its module.

Examples
--------
>>> theory_kinds()
('wilson', 'wilson_nf2', 'phi4')
>>> theory_class("phi4").__name__
'Phi4Theory'
>>> make_theory("wilson", (4, 4), {"group": "SU2", "beta": 2.0}).describe()
'SU(2) Wilson (beta=2.0)'
>>> make_theory("wilson", (4, 4), {"lam": 0.5})
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: unknown key action.lam; action.kind = 'wilson' takes group, beta
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

from latticekit.utils.schema import ConfigError, field_names, parse

__all__ = ["THEORIES", "make_theory", "parse_params", "theory_class", "theory_kinds"]

#: ``action.kind`` -> ``"module:Class"`` (modules relative to latticekit.theories)
THEORIES: dict[str, str] = {
    "wilson": "wilson:WilsonTheory",
    "wilson_nf2": "wilson_nf2:WilsonNf2Theory",
    "phi4": "phi4:Phi4Theory",
}


def theory_kinds() -> tuple[str, ...]:
    """The registered ``action.kind`` values."""
    return tuple(THEORIES)


def theory_class(kind: str) -> Any:
    """The theory class registered as ``kind``; :class:`ConfigError` (key ``action.kind``) if none is."""
    if not isinstance(kind, str) or kind not in THEORIES:
        raise ConfigError(f"action.kind: expected one of {theory_kinds()}, got {kind!r}")
    module, _, name = THEORIES[kind].partition(":")
    cls = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    if cls.kind != kind:  # pragma: no cover - registry authoring error
        raise RuntimeError(f"registry entry {kind!r} -> {THEORIES[kind]} has kind {cls.kind!r}")
    return cls


def parse_params(kind: str, data: Mapping[str, Any] | None, *, strict: bool = True) -> Any:
    """The validated ``[action]`` parameters (without ``kind``) of the theory ``kind``."""
    cls = theory_class(kind)
    takes = ", ".join(field_names(cls.Params, aliases=False))
    return parse(cls.Params, data, "action", strict=strict, reads=f"action.kind = {kind!r} takes {takes}")


def make_theory(kind: str, lattice: Any, params: Mapping[str, Any] | None = None,
                measure: Mapping[str, Any] | None = None) -> Any:
    """A theory instance from plain values: ``kind``, the lattice (a :class:`~latticekit.Lattice` or
    extents) and the ``[action]`` parameters and theory-specific ``[measure]`` keys as mappings, all
    validated (:class:`ConfigError` names the key)."""
    cls = theory_class(kind)
    shape: Sequence[int] = getattr(lattice, "shape", lattice)
    p = parse_params(kind, params)
    m = parse(cls.Measure, measure, "measure")
    return cls(tuple(shape), p, m)
