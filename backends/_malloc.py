"""Keep large CPU allocations in the heap (glibc): no page faults for every large temporary.

glibc's ``malloc`` serves a request above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and gives it back with
``munmap`` when it is freed. The threshold adapts upwards to the largest freed block, but only up to 32 MB on
64-bit systems; every larger block is mapped anew, so each of its pages costs a page fault (a zeroed page from
the kernel) every time a temporary of that size is created. torch allocates its CPU tensors with ``malloc``,
so a loop over tensors above 32 MB pays that on every operation: the super-resolving flow's ODE solves at batch
1024 on 16x16 (tensors of 1024 x 256 x 20 float64 = 42 MB) spent 59% of a one-hour sample job in the kernel
(2259 s system time, 1.05e9 minor page faults; benchmarks/README.md), and a loop of elementwise operations on
such tensors ran 2.8x slower than with the blocks kept (one thread, the same machine; ``tests/test_malloc.py``
checks the page faults).

:func:`configure_malloc` raises both ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to 1 GiB with ``mallopt``:
blocks up to that size come from the heap and freed memory stays there for the next temporary. The price is
that the process keeps its peak heap (freed memory is reused, not returned to the system until exit), which
is what a batch job wants. It is called by the ``latticekit`` jobs (application tier, next to the thread
counts), never at import; ``LATTICEKIT_MALLOC=default`` keeps glibc's behaviour. Elsewhere (another C library,
macOS, Windows) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["configure_malloc"]

_M_TRIM_THRESHOLD = -1   # glibc <malloc.h>
_M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30         # 1 GiB


def configure_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB so that large temporaries reuse heap memory.

    Returns
    -------
    bool
        True where the thresholds were set (Linux with glibc, ``LATTICEKIT_MALLOC`` not ``default``), False
        where nothing was changed.

    Examples
    --------
    >>> from latticekit.backends import configure_malloc
    >>> isinstance(configure_malloc(), bool)
    True
    """
    if os.environ.get("LATTICEKIT_MALLOC", "").strip().lower() in ("default", "0", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):   # not glibc (e.g. musl)
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # setting either one also switches off glibc's dynamic adjustment of both (mallopt(3))
    return bool(mallopt(_M_TRIM_THRESHOLD, _LIMIT) == 1 and mallopt(_M_MMAP_THRESHOLD, _LIMIT) == 1)
