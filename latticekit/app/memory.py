"""Memory a job needs, estimated before it allocates anything.

A lattice too large for the machine used to fail inside NumPy (``MemoryError`` with a traceback, or the
kernel's out-of-memory killer) after the job had started. :func:`check_memory` compares a lower bound of
what the job will hold with the memory available and refuses, naming the keys and both sizes, before
any work. The bound is deliberately low (so no feasible run is refused): two copies of the fields of
every chain or batch member, since every sampler and flow keeps the current fields while it builds the
next ones, and every job copies them to the host to save its state. Samplers hold more (momenta,
forces, staples), so a run that passes may still be tight.

Examples
--------
>>> format_bytes(160e9), format_bytes(4608)
('160 GB', '4.61 kB')
>>> available_memory() is None or available_memory() > 0
True
"""

from __future__ import annotations

import os

from latticekit.utils.schema import ConfigError

__all__ = ["COPIES", "available_memory", "check_memory", "format_bytes"]

#: copies of the fields a job holds at least (the current fields and the next ones)
COPIES = 2


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units (kB, MB, GB, TB), three significant digits."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def available_memory() -> int | None:
    """Bytes of memory available to this process: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the
    physical memory (``os.sysconf``); None where neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - platforms without sysconf
        return None


def check_memory(field_bytes: int, count: int, what: str, *, available: int | None = None) -> None:
    """Refuse (:class:`ConfigError`) a job whose ``count`` fields of ``field_bytes`` bytes, held
    :data:`COPIES` times, exceed the available memory.

    Parameters
    ----------
    field_bytes : int
        Bytes of one field (:meth:`latticekit.theories.Theory.field_bytes`).
    count : int
        Fields held at once (``sampler.chains``, ``train.batch_size``).
    what : str
        The keys that set the size, for the message (e.g. ``"lattice.shape [4096, 4096] with
        sampler.chains = 8"``).
    available : int, optional
        Bytes available (default :func:`available_memory`).

    Examples
    --------
    >>> check_memory(160_000_000_000, 8, "lattice.shape [100000, 100000] with sampler.chains = 8",
    ...              available=64_000_000_000)
    Traceback (most recent call last):
    ...
    latticekit.utils.schema.ConfigError: lattice.shape [100000, 100000] with sampler.chains = 8 needs at least 2.56 TB of memory (2 copies of 8 fields of 160 GB), more than the 64 GB available; use a smaller lattice or fewer chains/samples
    """
    avail = available_memory() if available is None else available
    need = COPIES * count * field_bytes
    if avail is not None and need > avail:
        raise ConfigError(f"{what} needs at least {format_bytes(need)} of memory ({COPIES} copies of {count} fields "
                          f"of {format_bytes(field_bytes)}), more than the {format_bytes(avail)} available; use a "
                          "smaller lattice or fewer chains/samples")
