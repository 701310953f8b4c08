"""Thread counts of numba, torch and BLAS/OpenMP, set on purpose: :func:`configure_threads`.

Each library that computes in parallel starts its own pool, sized by its own rule (numba and torch:
the number of cores; OpenBLAS: the CPU count when numpy loads), and none of them looks at the others
or at what else runs on the machine. On a shared machine that oversubscribes the cores -- more
threads run than cores are free (user time above wall time) -- and a parallel region waits for its
slowest thread, which waits for a time slice: runs here slowed 10-20x under load. Jobs therefore
call :func:`configure_threads` once at start; nothing calls it at import.

What can and cannot be controlled from inside the process:

* numba: ``numba.set_num_threads`` at once when numba is loaded, else when the numba kernels load
  (the request is remembered). Loading the kernels launches numba's pool, whose OpenMP layer resets the
  process-wide OpenMP count (torch's intra-op count where both share ``libgomp``); torch's count is put
  back at that point (:func:`_numba_loaded`). At most ``NUMBA_NUM_THREADS`` (the pool numba launched, default the
  CPU count). numba's count belongs to the calling Python thread: call this in the thread that runs
  the kernels.
* torch: ``torch.set_num_threads`` (intra-op pool) when torch is imported; a torch imported later
  reads the exported ``OMP_NUM_THREADS``. The inter-op pool is left alone (torch allows setting it only
  before any parallel work).
* BLAS (OpenBLAS, MKL, BLIS) and OpenMP runtimes already loaded -- numpy is, since
  ``latticekit.backends`` imports it: through threadpoolctl (a dependency of latticekit). Without
  threadpoolctl they keep the threads they started with; the environment variables are read only
  when a library loads, so setting them now is too late for numpy's BLAS.
* child processes (distributed workers) and libraries loaded later: ``OMP_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` are exported with the chosen count.
  ``NUMBA_NUM_THREADS`` is not (it fixes numba's pool size for good).

Examples
--------
>>> from latticekit import backends
>>> n, source = backends.default_thread_count()
>>> n >= 1 and source in ("OMP_NUM_THREADS", "affinity")
True
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

__all__ = ["THREAD_ENV_VARS", "configure_threads", "default_thread_count"]

#: Exported by :func:`configure_threads` for libraries loaded later and for child processes.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_NUMBA_REQUEST: int | None = None   # applied by _numba_loaded when the numba kernels load


def _cpus_available() -> int:
    """The CPUs this process may run on (its affinity mask), or the CPU count where there is no mask."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


def default_thread_count() -> tuple[int, str]:
    """The thread count to use by default and where it came from.

    ``OMP_NUM_THREADS`` when it is set to a positive integer (the first entry of a nested list such as
    ``"4,2"``), else the size of the affinity mask ``os.sched_getaffinity(0)`` (the CPUs this process
    may run on: a batch system or ``taskset`` restricts it), else ``os.cpu_count()``.

    Returns
    -------
    (n, source)
        ``source`` is ``"OMP_NUM_THREADS"`` or ``"affinity"``.
    """
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw:
        try:
            n = int(raw.split(",")[0])
        except ValueError:
            n = 0
        if n >= 1:
            return n, "OMP_NUM_THREADS"
        warnings.warn(f"OMP_NUM_THREADS={raw!r} is not a positive integer; ignored (using the CPUs this "
                      f"process may run on)", RuntimeWarning, stacklevel=2)
    return _cpus_available(), "affinity"


def _set_numba(numba: Any, n: int) -> int:
    numba.set_num_threads(max(1, min(n, int(numba.config.NUMBA_NUM_THREADS))))
    return int(numba.get_num_threads())


def _numba_loaded(numba: Any) -> None:
    """Called by ``_numba_common`` when the numba kernels load: launch numba's thread pool now, apply a count
    requested before, and leave torch's intra-op count as it was.

    numba's OpenMP threading layer sets the process-wide OpenMP count to its pool size
    (``NUMBA_NUM_THREADS``, default the CPU count) when it launches the pool; where torch uses the same
    OpenMP runtime (one ``libgomp.so.1`` in the process), that is torch's intra-op count too. Without the
    restore below, a ``torch.set_num_threads(1)`` or ``configure_threads(1)`` made before the kernels load
    was silently undone by the first fast path (measured: torch back to 2 threads on 2 cores, training steps
    10x slower beside a busy core). The pool is launched here, where the count can be put back, rather than at
    the first parallel kernel call.
    """
    torch = sys.modules.get("torch")
    keep = int(torch.get_num_threads()) if torch is not None else None
    if _NUMBA_REQUEST is not None:
        _set_numba(numba, _NUMBA_REQUEST)
    else:
        numba.get_num_threads()          # launches the pool
    if torch is not None and keep is not None and int(torch.get_num_threads()) != keep:
        torch.set_num_threads(keep)


def configure_threads(n: int | None = None) -> dict[str, Any]:
    """Set the thread counts of numba, torch and BLAS/OpenMP to ``n``; returns what was set.

    Jobs call this once at start (never at import). See the module docstring for what each
    library allows.

    Parameters
    ----------
    n
        Threads per parallel region; default :func:`default_thread_count` (``OMP_NUM_THREADS`` if set,
        else the size of the affinity mask).

    Returns
    -------
    dict
        ``threads`` (the count) and ``source`` (``"argument"``, ``"OMP_NUM_THREADS"`` or
        ``"affinity"``); ``numba``, ``torch``, ``blas``, ``openmp``: the count now in effect for each
        (``blas``/``openmp``: the largest over the loaded libraries of that kind), or None where it
        was not set now; ``env``: the exported variables; ``notes``: why something was not set.

    Raises
    ------
    TypeError, ValueError
        ``n`` is not a positive integer.

    Examples
    --------
    >>> from latticekit import backends
    >>> info = backends.configure_threads(1)
    >>> info["threads"], info["source"], info["env"]["OMP_NUM_THREADS"]
    (1, 'argument', '1')
    """
    global _NUMBA_REQUEST
    if n is None:
        n, source = default_thread_count()
    else:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n: expected a positive integer number of threads or None, got {n!r}")
        if n < 1:
            raise ValueError(f"n: expected a positive integer number of threads, got {n}")
        source = "argument"
    info: dict[str, Any] = {"threads": n, "source": source, "numba": None, "torch": None, "blas": None,
                            "openmp": None, "env": {}, "notes": []}
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(n)
        info["env"][var] = str(n)

    _NUMBA_REQUEST = n
    if "numba" in sys.modules:
        info["numba"] = _set_numba(sys.modules["numba"], n)
    else:
        info["notes"].append("numba not loaded: the count is applied when the numba kernels load")

    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(n)
        info["torch"] = int(torch.get_num_threads())
    else:
        info["notes"].append("torch not imported: a later import reads OMP_NUM_THREADS")

    try:
        import threadpoolctl
    except ImportError:
        info["notes"].append("threadpoolctl not installed: BLAS/OpenMP libraries already loaded keep the "
                             "threads they started with")
    else:
        threadpoolctl.threadpool_limits(limits=n)   # every loaded BLAS and OpenMP runtime
        for lib in threadpoolctl.threadpool_info():
            api = lib.get("user_api")
            if api in ("blas", "openmp"):
                info[api] = max(info[api] or 0, int(lib["num_threads"]))
    return info
