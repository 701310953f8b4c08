"""Typed settings: the one validator behind every configuration key of latticekit.

Settings are plain :mod:`dataclasses`. The type hints say what a key holds; ``field(metadata=...)``
(or :func:`setting`, which builds such a field) says which values are allowed. :func:`parse` builds an
instance from a TOML-shaped mapping and refuses, with a :class:`ConfigError` that names the key as the
TOML spells it (``sampler.step_size``), every key it does not know, every value of the wrong type,
every non-finite number and every value out of range, before any work starts.

Decision: dataclasses and this validator, not pydantic. The rules are few (the types of TOML values,
finite numbers, bounds, choices, list lengths, one check function per key); a dataclass can be
declared by library code (a theory declares its ``[action]`` parameters in :mod:`latticekit.theories`)
without importing the application tier or a third-party package; the error messages are ours, so they
name the key exactly as the user wrote it; and latticekit gains no dependency. Cross-key rules (a
heatbath needs even extents, Hasenbusch shifts increase) belong to the owner of the keys and are
written there, raising the same :class:`ConfigError`.

Metadata understood by :func:`parse` (all optional):

``doc``
    One line describing the key (documentation, error hints).
``ge``, ``gt``, ``le``, ``lt``
    Bounds of a number; for a list of numbers, bounds of every item.
``choices``
    The allowed values (strings, usually).
``odd``
    Integers only: must be odd.
``min_items``, ``max_items``
    Length of a list.
``check``
    ``check(value) -> str | None``: a further test; a string is the error text (without the key).
``aliases``
    Other names accepted for the key (old spellings); giving a key and its alias together is an error.

Types understood: ``bool``, ``int``, ``float`` (an integer is accepted and converted), ``str``,
``list[T]`` and ``tuple[T, ...]`` (TOML arrays, read as lists), ``T | None`` (None only from Python;
TOML has no null) and ``Literal[...]``.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass
... class Hmc:
...     step_size: float = setting(0.1, gt=0.0, le=10.0, doc="molecular-dynamics step")
...     n_steps: int = setting(10, ge=1)
>>> parse(Hmc, {"step_size": 0.05}, "sampler")
Hmc(step_size=0.05, n_steps=10)
>>> parse(Hmc, {"step_size": float("inf")}, "sampler")
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: sampler.step_size: expected a finite number, got inf
>>> parse(Hmc, {"stepsize": 0.1}, "sampler")
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: unknown key sampler.stepsize; expected one of n_steps, step_size
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from typing import Any, Callable, Iterable, Mapping

__all__ = ["ConfigError", "as_dict", "check_value", "describe_fields", "field_names", "parse", "setting"]


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key (``sampler.step_size``)."""


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, doc: str = "",
            **rules: Any) -> Any:
    """A dataclass field with validation rules in its metadata (see the module docstring).

    Lists are copied, so ``setting([8, 8])`` is a safe default.

    Examples
    --------
    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class Net:
    ...     hidden: list[int] = setting([8, 8], ge=1, doc="channels")
    >>> fields(Net)[0].metadata["ge"], Net().hidden
    (1, [8, 8])
    """
    unknown = set(rules) - _RULES
    if unknown:
        raise TypeError(f"setting(): unknown rules {sorted(unknown)}; expected some of {sorted(_RULES)}")
    if isinstance(default, (list, dict)):
        value = default
        default, default_factory = dataclasses.MISSING, (lambda: copy.deepcopy(value))
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"doc": doc, **rules})


_RULES = {"ge", "gt", "le", "lt", "choices", "odd", "min_items", "max_items", "check", "aliases"}


def field_names(cls: type, *, aliases: bool = False) -> list[str]:
    """The keys a settings class reads (with their aliases when ``aliases=True``)."""
    out = []
    for f in dataclasses.fields(cls):
        out.append(f.name)
        if aliases:
            out.extend(f.metadata.get("aliases", ()))
    return out


def as_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict form of a settings instance, in field order; None values are left out (TOML has no
    null), lists are copied.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class A:
    ...     x: int = 1
    ...     y: "float | None" = None
    >>> as_dict(A())
    {'x': 1}
    """
    return {f.name: copy.deepcopy(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None}


def parse(cls: type, data: Mapping[str, Any] | None, section: str, *, strict: bool = True,
          reads: str | None = None) -> Any:
    """Build and validate an instance of the settings dataclass ``cls`` from ``data``.

    Parameters
    ----------
    cls : dataclass type
        The settings; type hints and field metadata give the rules.
    data : mapping or None
        The keys given (e.g. one TOML table); missing keys take their defaults.
    section : str
        Prefix of the key names in error messages (``"sampler"`` gives ``sampler.step_size``).
    strict : bool
        True: a key ``cls`` does not read is an error. False: such keys are ignored (for configurations
        stored by earlier versions, which wrote keys that are no longer read).
    reads : str, optional
        What to say after an unknown key instead of the list of known keys.

    Raises
    ------
    ConfigError
        Naming the first bad key.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{section}]: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    known: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        known[f.name] = f.name
        for alias in f.metadata.get("aliases", ()):
            known[alias] = f.name
    kwargs: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in data.items():
        if key not in known:
            if strict:
                hint = reads if reads is not None else f"expected one of {', '.join(sorted(field_names(cls)))}"
                raise ConfigError(f"unknown key {_join(section, key)}; {hint}")
            continue
        name = known[key]
        if name in given_as:
            alias = key if key != name else given_as[name]   # whichever of the two is not the field's own name
            raise ConfigError(f"{_join(section, key)}: {_join(section, given_as[name])} is given too; "
                              f"{alias!r} is another name of {name!r}, give one of them")
        given_as[name] = key
        f = next(x for x in dataclasses.fields(cls) if x.name == name)
        kwargs[name] = check_value(_join(section, key), value, hints[name], f.metadata)
    for f in dataclasses.fields(cls):
        if f.init and f.name not in kwargs and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(section, f.name)}: required ({f.metadata.get('doc') or 'no default'})")
    return cls(**kwargs)


def _join(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def check_value(key: str, value: Any, hint: Any, rules: Mapping[str, Any]) -> Any:
    """``value`` coerced to the type ``hint`` and checked against ``rules``; raises :class:`ConfigError`."""
    value = _coerce(key, value, hint)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    for name, test, text in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                             ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        bound = rules.get(name)
        if bound is None:
            continue
        numbers = [v for v in items if _is_number(v)]
        if any(not test(v, bound) for v in numbers):
            what = f"items {text} {bound:g}" if isinstance(value, list) else f"{text} {bound:g}"
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
    choices = rules.get("choices")
    if choices is not None and any(v not in choices for v in items):
        raise ConfigError(f"{key}: expected one of {tuple(choices)}, got {value!r}")
    if rules.get("odd") and any(isinstance(v, int) and v % 2 == 0 for v in items):
        raise ConfigError(f"{key}: expected an odd number, got {value!r}")
    if isinstance(value, list):
        lo, hi = rules.get("min_items"), rules.get("max_items")
        if lo is not None and len(value) < lo:
            raise ConfigError(f"{key}: expected at least {lo} item(s), got {value!r}")
        if hi is not None and len(value) > hi:
            raise ConfigError(f"{key}: expected at most {hi} item(s), got {value!r}")
    check: Callable[[Any], str | None] | None = rules.get("check")
    if check is not None:
        problem = check(value)
        if problem:
            raise ConfigError(f"{key}: {problem}")
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None and len(inner) < len(args):
            return None
        if len(inner) != 1:  # pragma: no cover - schema authoring error
            raise TypeError(f"{key}: unions other than T | None are not supported ({hint})")
        return _coerce(key, value, inner[0])
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {args}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_describe(hint)}, got {value!r}")
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items, got {value!r}")
            return [_item(key, v, a, hint, value) for v, a in zip(value, args)]
        item = args[0] if args else Any
        return [_item(key, v, item, hint, value) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if not _is_number(value):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"{key}: type {hint!r} is not supported by latticekit.utils.schema")  # pragma: no cover


def _item(key: str, v: Any, hint: Any, whole_hint: Any, whole: Any) -> Any:
    try:
        return _coerce(key, v, hint)
    except ConfigError:
        raise ConfigError(f"{key}: expected {_describe(whole_hint)}, got {whole!r}") from None


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    names = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
    if origin in (list, tuple):
        item = args[0] if args else Any
        if typing.get_origin(item) in (list, tuple):
            return f"a list of lists of {names.get(typing.get_args(item)[0], 'values')}"
        return f"a list of {names.get(item, 'values')}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(hint, str(hint))


def describe_fields(cls: type) -> Iterable[tuple[str, Any, str]]:
    """``(name, default, doc)`` of every field (for documentation and error hints)."""
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        yield f.name, default, f.metadata.get("doc", "")
