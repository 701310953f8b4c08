"""latticekit.backends.configure_threads: thread counts of numba, torch and BLAS set on purpose.

The root conftest puts the thread counts, the exported variables and a pending numba request back
after every test of this file.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from latticekit import backends
from latticekit.backends import _threads


def _affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def test_default_from_omp_num_threads_else_affinity(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert backends.default_thread_count() == (_affinity(), "affinity")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert backends.default_thread_count() == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")          # nested OpenMP list: the outer level
    assert backends.default_thread_count() == (4, "OMP_NUM_THREADS")
    for bad in ("many", "0", "-2"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS"):
            assert backends.default_thread_count() == (_affinity(), "affinity")


@pytest.mark.parametrize("bad,exc", [("2", TypeError), (1.5, TypeError), (True, TypeError), (0, ValueError),
                                     (-1, ValueError)])
def test_bad_count_is_refused_naming_n(bad, exc):
    with pytest.raises(exc, match=r"^n: expected a positive integer"):
        backends.configure_threads(bad)


def test_sets_loaded_libraries_and_exports_the_variables():
    """numba and torch as loaded in this process (torch only where installed); 2 threads so that the
    change from the suite's one thread is visible."""
    numba = pytest.importorskip("numba", reason="numba is not installed")
    torch = None
    if importlib.util.find_spec("torch") is not None:
        import torch
    info = backends.configure_threads(2)
    assert (info["threads"], info["source"]) == (2, "argument")
    want_numba = min(2, numba.config.NUMBA_NUM_THREADS)
    assert info["numba"] == numba.get_num_threads() == want_numba
    if torch is not None:
        assert info["torch"] == torch.get_num_threads() == 2
    else:
        assert info["torch"] is None and any("torch not imported" in n for n in info["notes"])
    assert all(os.environ[v] == "2" for v in _threads.THREAD_ENV_VARS) and info["env"]["MKL_NUM_THREADS"] == "2"
    assert _threads._NUMBA_REQUEST == 2
    info = backends.configure_threads(1)
    assert info["numba"] == numba.get_num_threads() == 1
    if torch is not None:
        assert info["torch"] == torch.get_num_threads() == 1


def test_blas_through_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    import numpy  # noqa: F401  (its BLAS is loaded)

    blas = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy's BLAS is not visible to threadpoolctl here")
    info = backends.configure_threads(2)
    assert info["blas"] == 2
    assert {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"} == {2}
    assert backends.configure_threads(1)["blas"] == 1


def test_fresh_process_import_changes_nothing_and_later_loads_follow():
    """In a fresh interpreter: ``import latticekit`` sets no thread count; a count requested before
    numba is loaded is applied when the numba kernels load; a torch imported afterwards starts with
    it; the affinity mask bounds the default."""
    code = textwrap.dedent("""
        import importlib.util, os, sys
        os.environ.pop("OMP_NUM_THREADS", None)
        import latticekit
        from latticekit import backends
        from latticekit.backends import _threads
        assert _threads._NUMBA_REQUEST is None and "numba" not in sys.modules
        assert "OMP_NUM_THREADS" not in os.environ
        full = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
        if full is not None:
            os.sched_setaffinity(0, {min(full)})
            assert backends.default_thread_count() == (1, "affinity")
        info = backends.configure_threads()
        n = info["threads"]
        if full is not None:   # all CPUs again: libraries loaded from here on would default to more
            os.sched_setaffinity(0, full)
        assert info["numba"] is None and any("numba" in s for s in info["notes"]), info
        if importlib.util.find_spec("numba") is not None:
            import numpy as np
            assert backends.fast_path("phi4_action", np.zeros(3)) is not None   # the kernels load
            import numba
            assert numba.get_num_threads() == min(n, numba.config.NUMBA_NUM_THREADS)
        if importlib.util.find_spec("torch") is not None:
            import torch
            assert torch.get_num_threads() == n, (torch.get_num_threads(), n)
        print("ok", n)
    """)
    env = {k: v for k, v in os.environ.items() if k not in _threads.THREAD_ENV_VARS}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "1" if hasattr(os, "sched_setaffinity") else str(_affinity())]


@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
def test_numba_kernels_keep_the_count():
    """The Wilson-Dirac kernel drops to one thread for small fields and restores the configured count."""
    import numba
    import numpy as np

    import latticekit as lk
    from latticekit.actions import WilsonDirac

    backends.configure_threads(2)
    lat = lk.Lattice((4, 4))
    D = WilsonDirac(lk.U1.random(backends.rng(0), (2,), lat.shape), lk.U1, lat, kappa=0.2)
    D.apply(np.ascontiguousarray(backends.rng(1).complex_normal(D.field_shape)))
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)


@pytest.mark.skipif(importlib.util.find_spec("numba") is None or importlib.util.find_spec("torch") is None,
                    reason="needs numba and torch")
@pytest.mark.parametrize("how", ["configure_threads", "OMP_NUM_THREADS"])
def test_loading_the_numba_kernels_keeps_torch_threads(how):
    """torch imported first with one thread (set by configure_threads, or read from OMP_NUM_THREADS = 1 in the
    environment), then the numba kernels load: numba's OpenMP layer, launching its pool (NUMBA_NUM_THREADS = 2
    here) while OMP_NUM_THREADS is set, can reset the process-wide OpenMP count, which is torch's count too; the
    loader puts torch's back. Without the restore the configure_threads case fails here (torch at 2 threads,
    checked when the fix was made); the OMP_NUM_THREADS case guards the same property. The negative control
    (the launch outside the loader) is the next test."""
    code = textwrap.dedent(f"""
        import torch
        import numpy as np
        from latticekit import backends
        if {how!r} == "configure_threads":
            backends.configure_threads(1)
        assert torch.get_num_threads() == 1
        assert backends.fast_path("phi4_action", np.zeros(3)) is not None   # the kernels load (pool launched)
        import numba
        assert torch.get_num_threads() == 1, torch.get_num_threads()
        print("ok", numba.config.NUMBA_NUM_THREADS)
    """)
    env = {k: v for k, v in os.environ.items() if k not in _threads.THREAD_ENV_VARS}
    env["NUMBA_NUM_THREADS"] = "2"
    if how == "OMP_NUM_THREADS":
        env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "2"]


@pytest.mark.skipif(importlib.util.find_spec("numba") is None or importlib.util.find_spec("torch") is None,
                    reason="needs numba and torch")
def test_numba_pool_launch_resets_torch_threads_without_the_loader():
    """Negative control of the test above: with OMP_NUM_THREADS = 1 in the environment, launching numba's pool
    directly (not through latticekit's loader) changes torch's count from 1 to numba's pool size where numba's
    OpenMP layer and torch share the OpenMP runtime; with another threading layer (TBB, workqueue) there is
    nothing to restore."""
    code = textwrap.dedent("""
        import torch
        import numba
        assert torch.get_num_threads() == 1
        numba.get_num_threads()                  # launches numba's pool
        print(torch.get_num_threads(), numba.threading_layer())
    """)
    env = {k: v for k, v in os.environ.items() if k not in _threads.THREAD_ENV_VARS}
    env.update(NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    n, layer = out.stdout.split()
    if layer != "omp":
        pytest.skip(f"numba's threading layer is {layer!r}, not OpenMP: it does not touch torch's count")
    assert n == "2"
