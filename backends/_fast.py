"""One dispatch point for backend-specific fast paths.

Physics code is written once in Array API form. Where a backend has a faster primitive (a fused
kernel, a library routine), it is registered here under a name and looked up at the call site;
the generic code is the fallback, so there are never two full copies of an algorithm.
"""

from __future__ import annotations

from typing import Any, Callable

from ._namespace import backend_name

_REGISTRY: dict[tuple[str, str], Callable[..., Any]] = {}


def register_fast_path(name: str, backend: str, fn: Callable[..., Any]) -> None:
    """Register ``fn`` as the fast implementation of operation ``name`` for ``backend``."""
    _REGISTRY[(name, backend)] = fn


def fast_path(name: str, x: Any) -> Callable[..., Any] | None:
    """The registered fast implementation of ``name`` for the backend of array ``x``, or None."""
    if not _REGISTRY:
        return None
    return _REGISTRY.get((name, backend_name(x)))
