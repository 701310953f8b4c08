#!/usr/bin/env python
"""Roofline benchmark of the core kernels: plaquette, Wilson action/force, phi^4 action/force.

Run by hand (not part of the test suite)::

    python benchmarks/bench_core.py --out benchmarks/results/core_$(hostname).json          # full, < 10 min
    python benchmarks/bench_core.py --out /tmp/core_quick.json --quick                      # ~1 min

One run measures, on the same machine and in the same process,

1. the memory bandwidth (STREAM-like copy / scale / add / triad on arrays much larger than the
   last-level cache, NumPy and torch, best of N) -- the roofline reference;
2. every kernel (median time per call after warm-up; 2D U(1) and phi^4, 4D U(1) and phi^4, 4D SU(3)) on
   NumPy and torch (CPU), together with the
   minimal compulsory memory traffic of the kernel (read every input field once, write every output
   once; see ``bytes_model`` in the JSON and benchmarks/README.md), the achieved GB/s and its ratio to
   the measured bandwidth.

The JSON is written atomically (temporary file, then ``os.replace``). Benchmarks are host-side code:
they name numpy and torch directly; the kernels themselves come from latticekit.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib
import json
import os
import platform
import socket
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

import latticekit as lk
from latticekit import backends
from latticekit.utils import atomic_write

try:  # torch is optional: without it only the NumPy rows are measured
    import torch
except ImportError:  # pragma: no cover - depends on the installation
    torch = None

__all__ = ["main", "measure_bandwidth", "time_call"]


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def time_call(fn: Callable[[], Any], *, warmup: int = 1, min_repeats: int = 3, max_repeats: int = 30,
              budget_s: float = 2.0, sync: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Time ``fn()``: ``warmup`` untimed calls, then repeats until ``min_repeats`` are done and either
    ``max_repeats`` or ``budget_s`` seconds of timed calls are reached. Returns median/min/max seconds.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called after the warm-up and after every timed call,
    before the clock is read, so that asynchronous (GPU) work is inside the measured interval."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or (len(times) < max_repeats and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": len(times)}


def nbytes(x: Any) -> int:
    """Bytes of an array (NumPy, torch or CuPy) or of a tuple/list of arrays; Python scalars count 8."""
    if isinstance(x, (tuple, list)):
        return sum(nbytes(y) for y in x)
    if isinstance(x, (int, float, complex)):
        return 8
    if torch is not None and isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if not isinstance(x, (np.ndarray, np.generic)) and isinstance(getattr(x, "nbytes", None), int):
        return int(x.nbytes)  # device arrays (CuPy): np.asarray would refuse or copy to the host
    return int(np.asarray(x).nbytes)


# ------------------------------------------------------------------------------------------------
# memory-bandwidth probe
# ------------------------------------------------------------------------------------------------
def measure_bandwidth(n: int, repeats: int) -> dict[str, Any]:
    """STREAM-like kernels on float64 arrays of ``n`` elements (STREAM byte counting: copy and scale
    move 16 B per element, add and triad 24 B; write-allocate traffic is not counted).

    NumPy runs single-threaded (ufuncs are not parallel); torch uses ``torch.get_num_threads()``
    threads. NumPy's triad needs two passes (``a = s*c; a += b``), torch's is one fused call, so the
    torch triad is the cleanest measure of what a fused kernel can stream.
    """
    out: dict[str, Any] = {"elements": n, "array_MB": n * 8 / 1e6, "repeats": repeats, "GBps": {}}

    def best(fn: Callable[[], Any]) -> float:
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    a = np.full(n, 1.0)
    b = np.full(n, 2.0)
    c = np.full(n, 3.0)
    s = 3.0
    res = out["GBps"]
    res["numpy_copy"] = 16 * n / best(lambda: np.copyto(a, b)) / 1e9
    res["numpy_scale"] = 16 * n / best(lambda: np.multiply(b, s, out=a)) / 1e9
    res["numpy_add"] = 24 * n / best(lambda: np.add(b, c, out=a)) / 1e9

    def np_triad() -> None:
        np.multiply(c, s, out=a)
        np.add(a, b, out=a)

    res["numpy_triad_2pass"] = 24 * n / best(np_triad) / 1e9
    res["numpy_sum"] = 8 * n / best(lambda: float(np.sum(b))) / 1e9
    if torch is not None:
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        res["torch_copy"] = 16 * n / best(lambda: ta.copy_(tb)) / 1e9
        res["torch_scale"] = 16 * n / best(lambda: torch.mul(tb, s, out=ta)) / 1e9
        res["torch_add"] = 24 * n / best(lambda: torch.add(tb, tc, out=ta)) / 1e9
        res["torch_triad"] = 24 * n / best(lambda: torch.add(tb, tc, alpha=s, out=ta)) / 1e9
        res["torch_sum"] = 8 * n / best(lambda: float(tb.sum())) / 1e9
        del ta, tb, tc
    del a, b, c
    gc.collect()
    out["reference_GBps"] = max(res.values())
    out["reference_kernel"] = max(res, key=res.get)
    out["numpy_reference_GBps"] = max(v for k, v in res.items() if k.startswith("numpy"))
    if torch is not None:
        out["torch_reference_GBps"] = max(v for k, v in res.items() if k.startswith("torch"))
    return out


# ------------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------------
def raw_average_plaquette(U: Any, group: Any, lattice: lk.Lattice) -> Any:
    """Average plaquette from group operations only (``mul``, ``re_trace_mul_adj``, ``shift``):
    the baseline "straightforward array code" against which library kernels are compared."""
    xp = backends.array_namespace(U)
    nd = lattice.nd
    k = U.ndim - nd - len(group.element_shape) - 1
    links = [U[(slice(None),) * k + (mu, ...)] for mu in range(nd)]
    acc = None
    planes = lattice.planes()
    for mu, nu in planes:
        a = group.mul(links[mu], lattice.shift(links[nu], mu, 1), nd=nd)
        b = group.mul(links[nu], lattice.shift(links[mu], nu, 1), nd=nd)
        p = xp.mean(group.re_trace_mul_adj(a, b, nd=nd), axis=tuple(range(-nd, 0)))
        acc = p if acc is None else acc + p
    return acc / (len(planes) * group.N)


def _library(module: str, *names: str) -> tuple[Any, ...] | str:
    """The named objects of a latticekit module, or the reason they cannot be imported."""
    try:
        mod = importlib.import_module(module)
        return tuple(getattr(mod, n) for n in names)
    except Exception as exc:  # report, do not crash the whole run
        return f"{module}.{'/'.join(names)} unavailable: {type(exc).__name__}: {exc}"


def gauge_kernels(group: Any, lattice: lk.Lattice, beta: float) -> dict[str, tuple[Callable[[Any], Any] | None, str]]:
    """Callables ``U -> result`` for the gauge kernels, with their byte-model text."""
    out: dict[str, tuple[Callable[[Any], Any] | None, str]] = {}
    out["plaquette_raw"] = (lambda U: raw_average_plaquette(U, group, lattice),
                            "read U once + write (*B,) averages")
    lib = _library("latticekit.observables", "average_plaquette")
    out["plaquette"] = ((lambda U: lib[0](U, group, lattice)) if isinstance(lib, tuple) else None,
                        "read U once + write (*B,) averages" if isinstance(lib, tuple) else lib)
    act = _library("latticekit.actions", "WilsonGaugeAction")
    if isinstance(act, tuple):
        A = act[0](group, lattice, beta)
        out["action"] = (A.action, "read U once + write (*B,) actions")
        out["force"] = (A.force, "read U once + write the force field once (its actual array size)")
    else:
        out["action"] = (None, act)
        out["force"] = (None, act)
    return out


def compiled_gauge_kernels(lattice: lk.Lattice, beta: float) -> dict[str, tuple[Callable[[Any], Any], str]]:
    """The U(1) kernels through the registered fast paths (``backends._kernels_torch``)."""
    nd = lattice.nd
    npl = len(lattice.planes())
    vol = lattice.volume

    def cos_sum(U: Any) -> Any:
        return backends.fast_path("u1_plaquette_cos_sum", U)(U, nd)

    return {"plaquette": (lambda U: cos_sum(U) / (vol * npl), "read U once + write (*B,) averages"),
            "action": (lambda U: (-beta) * cos_sum(U), "read U once + write (*B,) actions"),
            "force": (lambda U: backends.fast_path("u1_wilson_force", U)(U, beta, nd),
                      "read U once + write the force field once (its actual array size)")}


def compiled_phi4_kernels(lattice: lk.Lattice, kappa: float, lam: float) -> dict[str, tuple[Callable[[Any], Any], str]]:
    nd = lattice.nd
    return {"action": (lambda p: backends.fast_path("phi4_action", p)(p, kappa, lam, nd),
                       "read phi once + write (*B,) actions"),
            "force": (lambda p: backends.fast_path("phi4_force", p)(p, kappa, lam, nd),
                      "read phi once + write the force field once")}


def phi4_kernels(lattice: lk.Lattice, kappa: float, lam: float) -> dict[str, tuple[Callable[[Any], Any] | None, str]]:
    lib = _library("latticekit.actions", "Phi4Action")
    if not isinstance(lib, tuple):
        return {"action": (None, lib), "force": (None, lib)}
    S = lib[0](lattice, kappa, lam)
    return {"action": (S.action, "read phi once + write (*B,) actions"),
            "force": (S.force, "read phi once + write the force field once")}


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def _env_info(argv: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + argv),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "latticekit": lk.__version__,
        "os_cpu_count": os.cpu_count(),
        "sched_getaffinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_num_threads": torch.get_num_threads() if torch is not None else None,
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "llc_bytes": _LLC,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                                "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LATTICEKIT_BACKEND",
                                                "LATTICEKIT_FAST_KERNELS")},
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        info["threadpoolctl"] = threadpool_info()
    except ImportError:
        info["threadpoolctl"] = "not installed"
    try:
        registry = importlib.import_module("backends._fast")._REGISTRY
        info["fast_paths"] = sorted(f"{n}[{b}]" for n, b in registry)
    except Exception:
        try:
            from latticekit.backends import _fast

            info["fast_paths"] = sorted(f"{n}[{b}]" for n, b in _fast._REGISTRY)
        except Exception as exc:
            info["fast_paths"] = f"unknown: {exc}"
    return info


def _convert(x: Any, backend: str) -> Any:
    return backends.from_numpy(backends.to_numpy(x), backend=backend)


def _llc_bytes() -> int | None:
    """Size of the largest CPU cache (sysfs), or None."""
    best = None
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for d in base.glob("index*"):
        try:
            txt = (d / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(txt[-1:], 1)
        val = int(txt.rstrip("KMG")) * mult
        best = val if best is None or val > best else best
    return best


_LLC = _llc_bytes()


def _fast_env(fn: Callable[[Any], Any] | None, on: bool) -> Callable[[Any], Any] | None:
    """``fn`` run with the fast-path registry switched on or off (``LATTICEKIT_FAST_KERNELS``)."""
    if fn is None:
        return None

    def call(x: Any) -> Any:
        old = os.environ.get("LATTICEKIT_FAST_KERNELS")
        if on:
            os.environ.pop("LATTICEKIT_FAST_KERNELS", None)
        else:
            os.environ["LATTICEKIT_FAST_KERNELS"] = "0"
        try:
            return fn(x)
        finally:
            if old is None:
                os.environ.pop("LATTICEKIT_FAST_KERNELS", None)
            else:
                os.environ["LATTICEKIT_FAST_KERNELS"] = old

    return call


def _numba_ok() -> bool:
    try:
        from latticekit.backends import _numba_common
    except ImportError:
        return False
    return _numba_common.available()


def _row(suite: str, kernel: str, backend: str, L: int, nd: int, batch: int, field: Any,
         fn: Callable[[Any], Any] | None, model: str, ref: dict[str, Any], timing: dict[str, Any],
         check: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"suite": suite, "kernel": kernel, "backend": backend, "L": L, "nd": nd, "batch": batch,
                           "sites": batch * L**nd, "bytes_model": model}
    if fn is None:
        row["status"] = "skipped"
        row["reason"] = model
        return row
    try:
        out = fn(field)
        row["bytes"] = nbytes(field) + nbytes(out)
        if _LLC is not None:
            row["fits_in_llc"] = row["bytes"] <= _LLC
        if check is not None:  # a fast path must agree with the library kernel
            want = backends.to_numpy(check(field))
            got = backends.to_numpy(out)
            row["max_rel_err_vs_library"] = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))
        del out
        t = time_call(lambda: fn(field), **timing)
    except Exception as exc:
        row["status"] = "error"
        row["reason"] = f"{type(exc).__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=3)
        return row
    row.update(t)
    row["status"] = "ok"
    row["ns_per_site"] = t["median_s"] / row["sites"] * 1e9
    row["GBps"] = row["bytes"] / t["median_s"] / 1e9
    row["GBps_best"] = row["bytes"] / t["min_s"] / 1e9
    row["fraction_of_bandwidth"] = row["GBps"] / ref["reference_GBps"]
    bref = ref.get(f"{backend.split('+')[0]}_reference_GBps")
    if bref:
        row["fraction_of_backend_bandwidth"] = row["GBps"] / bref
    return row


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    quick = args.quick
    if args.torch_threads and torch is not None:
        torch.set_num_threads(args.torch_threads)
    compiled = bool(args.compiled) and torch is not None and "torch" in args.backends.split(",")
    if compiled:
        from latticekit.backends import _kernels_torch

        _kernels_torch.register()
    numba_rows = bool(args.numba) and "numpy" in args.backends.split(",") and _numba_ok()
    if numba_rows and args.numba_threads:
        import numba

        numba.set_num_threads(args.numba_threads)
    # the library functions allocate their outputs (hundreds of MB at the DRAM sizes): from the heap, as in the
    # jobs (backends/_malloc.py), unless --default-malloc (glibc's 32 MB mmap threshold: a page fault per 4 kB
    # page of every output, as the files recorded before 2026-12-05 10:30 ran)
    malloc = backends.configure_malloc() if not args.default_malloc else False
    result: dict[str, Any] = {"meta": _env_info(argv), "quick": quick, "compiled": compiled, "numba": numba_rows,
                              "configure_malloc": malloc}
    if numba_rows:
        import numba

        result["meta"]["numba"] = {"version": numba.__version__, "threads": numba.get_num_threads(),
                                   "threading_layer_config": numba.config.THREADING_LAYER}
    n_bw = 1 << (24 if quick else 25)
    print(f"bandwidth probe: 3 x {n_bw * 8 / 1e6:.0f} MB arrays ...", flush=True)
    bw = measure_bandwidth(n_bw, 3 if quick else 5)
    result["bandwidth"] = bw
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in bw["GBps"].items()) + " GB/s", flush=True)
    timing = dict(warmup=1, min_repeats=3, max_repeats=10 if quick else 20, budget_s=0.5 if quick else 1.0)
    be_list = [b for b in args.backends.split(",") if b]
    if torch is None:
        be_list = [b for b in be_list if b != "torch"]
    rows: list[dict[str, Any]] = []
    result["rows"] = rows

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        if row["status"] == "ok":
            print(f"  {row['suite']:7s} {row['kernel']:14s} {row['backend']:6s} L={row['L']:4d} B={row['batch']:4d} "
                  f"{row['median_s'] * 1e3:9.2f} ms {row['ns_per_site']:9.1f} ns/site {row['GBps']:6.2f} GB/s "
                  f"{100 * row['fraction_of_bandwidth']:5.1f}%" + ("  (fits in LLC)" if row.get("fits_in_llc") else ""),
                  flush=True)
        else:
            print(f"  {row['suite']:7s} {row['kernel']:14s} {row['backend']:6s} L={row['L']:4d} {row['status']}: "
                  f"{row.get('reason', '')[:120]}", flush=True)

    # -- 2D U(1) --------------------------------------------------------------------------------
    u1_sizes = [16, 32, 64] if quick else [16, 32, 64, 128, 256]
    u1_batch = 64 if quick else args.batch
    result["notes"] = []
    for L in u1_sizes:
        lat = lk.Lattice((L, L))
        U0 = lk.U1.random(backends.rng(L, backend="numpy"), (u1_batch, 2), lat.shape)
        kern = gauge_kernels(lk.U1, lat, beta=2.0)
        for be in be_list:
            U = _convert(U0, be)
            for name, (fn, model) in kern.items():
                report(_row("u1_2d", name, be, L, 2, u1_batch, U, _fast_env(fn, False), model, bw, timing))
            if be == "numpy" and numba_rows:
                for name, (fn, model) in kern.items():
                    if name != "plaquette_raw":
                        report(_row("u1_2d", name, "numpy+numba", L, 2, u1_batch, U, _fast_env(fn, True), model, bw,
                                    timing, check=_fast_env(fn, False)))
            if be == "torch" and compiled:
                for name, (fn, model) in compiled_gauge_kernels(lat, 2.0).items():
                    report(_row("u1_2d", name, "torch+compile", L, 2, u1_batch, U, fn, model, bw, timing,
                                check=_fast_env(kern[name][0], False)))
            del U
            gc.collect()
    # -- phi^4 2D ---------------------------------------------------------------------------------
    for L in u1_sizes:
        lat = lk.Lattice((L, L))
        p0 = backends.rng(100 + L, backend="numpy").normal((u1_batch,) + lat.shape)
        kern = phi4_kernels(lat, kappa=0.2, lam=0.02)
        for be in be_list:
            p = _convert(p0, be)
            for name, (fn, model) in kern.items():
                report(_row("phi4_2d", name, be, L, 2, u1_batch, p, _fast_env(fn, False), model, bw, timing))
            if be == "numpy" and numba_rows:
                for name, (fn, model) in kern.items():
                    report(_row("phi4_2d", name, "numpy+numba", L, 2, u1_batch, p, _fast_env(fn, True), model, bw,
                                timing, check=_fast_env(fn, False)))
            if be == "torch" and compiled:
                for name, (fn, model) in compiled_phi4_kernels(lat, 0.2, 0.02).items():
                    report(_row("phi4_2d", name, "torch+compile", L, 2, u1_batch, p, fn, model, bw, timing,
                                check=_fast_env(kern[name][0], False)))
            del p
            gc.collect()
    # -- 4D U(1) and phi^4 (the row kernels of more than two dimensions) --------------------------
    nd_sizes = [8] if quick else [8, 16]
    nd_batch = 4 if quick else 16
    for L in nd_sizes:
        lat = lk.Lattice((L,) * 4)
        cases = (("u1_4d", lk.U1.random(backends.rng(2000 + L, backend="numpy"), (nd_batch, 4), lat.shape),
                  gauge_kernels(lk.U1, lat, beta=1.0)),
                 ("phi4_4d", backends.rng(3000 + L, backend="numpy").normal((nd_batch,) + lat.shape),
                  phi4_kernels(lat, kappa=0.1, lam=0.02)))
        for suite, x0, kern in cases:
            for be in be_list:
                x = _convert(x0, be)
                for name, (fn, model) in kern.items():
                    if name != "plaquette_raw":
                        report(_row(suite, name, be, L, 4, nd_batch, x, _fast_env(fn, False), model, bw, timing))
                if be == "numpy" and numba_rows:
                    for name, (fn, model) in kern.items():
                        if name != "plaquette_raw":
                            report(_row(suite, name, "numpy+numba", L, 4, nd_batch, x, _fast_env(fn, True), model,
                                        bw, timing, check=_fast_env(fn, False)))
                del x
                gc.collect()
    # -- 4D SU(3) ----------------------------------------------------------------------------------
    su3_sizes = [8] if quick else [8, 16]
    G = lk.SU(3)
    for L in su3_sizes:
        lat = lk.Lattice((L,) * 4)
        # C-contiguous (SU(N).random returns a transposed view; the numba kernels take C order only)
        U0 = np.ascontiguousarray(G.random(backends.rng(1000 + L, backend="numpy"), (1, 4), lat.shape))
        kern = gauge_kernels(G, lat, beta=6.0)
        for be in be_list:
            U = _convert(U0, be)
            for name, (fn, model) in kern.items():
                report(_row("su3_4d", name, be, L, 4, 1, U, _fast_env(fn, False), model, bw, timing))
            if be == "numpy" and numba_rows:
                for name, (fn, model) in kern.items():
                    if name != "plaquette_raw":
                        report(_row("su3_4d", name, "numpy+numba", L, 4, 1, U, _fast_env(fn, True), model, bw,
                                    timing, check=_fast_env(fn, False)))
            if be == "torch" and compiled:   # the library calls, routed to backends/_kernels_torch_sun.py
                for name, (fn, model) in kern.items():
                    if name != "plaquette_raw":
                        report(_row("su3_4d", name, "torch+compile", L, 4, 1, U, _fast_env(fn, True), model, bw,
                                    timing, check=_fast_env(fn, False)))
            del U
            gc.collect()
    return result


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON to ``path`` through a temporary file in the same directory and ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode())


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script: its docstring's first line as the description and the
    ``--out`` option every script has (the JSON file, written by :func:`write_result`)."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON results file (written atomically)")
    return ap


def write_result(result: dict[str, Any], out: str) -> int:
    """The end of a benchmark script: the load average at the end into ``result["meta"]``, the JSON written
    atomically to ``out``, one line printed; returns the exit status 0."""
    result["meta"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    write_json_atomic(result, out)
    print(f"written {out} ({result['meta']['wall_s']:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    ap = script_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (about a minute)")
    ap.add_argument("--backends", default="numpy,torch", help="comma-separated: numpy,torch")
    ap.add_argument("--batch", type=int, default=256, help="batch of the 2D U(1) and phi^4 runs (default 256)")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--no-compiled", dest="compiled", action="store_false",
                    help="skip the torch.compile fast paths (backends/_kernels_torch.py)")
    ap.add_argument("--no-numba", dest="numba", action="store_false",
                    help="skip the numpy+numba rows (the numba fast paths, backends/_numba_*.py)")
    ap.add_argument("--numba-threads", type=int, default=0, help="numba.set_num_threads (default: numba's choice)")
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold alone (by default "
                    "the script calls latticekit.backends.configure_malloc(), as the jobs do)")
    args = ap.parse_args(argv[1:])
    t0 = time.perf_counter()
    res = run(args, argv)
    res["meta"]["wall_s"] = time.perf_counter() - t0
    res["meta"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    write_json_atomic(res, args.out)
    print(f"wrote {args.out} in {res['meta']['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
