#!/usr/bin/env python
"""GPU roofline benchmark: latticekit's core kernels on torch CUDA and CuPy against the measured device bandwidth.

Run by hand (not part of the test suite)::

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu_h100.json                 # full, ~4-6 min on an H100
    python benchmarks/bench_gpu.py --out /tmp/gpu_quick.json --quick                      # ~1-2 min on a GPU
    python benchmarks/bench_gpu.py --out /tmp/gpu_cpu.json --device cpu --quick           # no GPU: torch CPU, small sizes

One run measures, in the same process and on the same device:

1. **Device bandwidth**: STREAM-like copy / scale / add / triad on float64 arrays of 2^27 elements
   (1 GiB each; ``--quick`` 2^25, ``--device cpu`` 2^24), with torch and with CuPy, timed with CUDA
   events, best of 10 after warm-up. STREAM byte counting (copy and scale move 16 B per element, add
   and triad 24 B; write-allocate traffic is not counted). The reference bandwidth is the largest of
   these numbers; ``torch_reference_GBps`` and ``cupy_reference_GBps`` are the per-backend maxima.
2. **Kernels** (float64 / complex128), each timed with a device synchronisation before the clock is
   read (``bench_core.time_call(..., sync=...)``; median of >= 10 calls after warm-up, up to 100 calls
   or about 1 s): 2D U(1) plaquette (array-code baseline and library) / action / force and 2D phi^4
   action / force at L = 64, 256, 1024, batch 64; 4D SU(3) plaquette / action / force at L = 8, 16, 24
   (batch 1); the 4D SU(3) Wilson-Dirac operator ``D psi`` and ``D D^dag psi`` at L = 8, 16; and a CG
   solve of ``D D^dag x = b`` (tol 1e-10) at L = 8, 16, reported per iteration. The byte models are
   those of ``bench_core`` (``_row``: read every input field once, write every output once) and of
   ``bench_dirac.dirac_bytes`` (``D psi``: read psi and links, write the result). Every row also has the
   maximum relative error of one call against the NumPy result on the host (for batched 2D fields,
   on the first ``--check-batch`` configurations).

``--device cpu`` runs torch on the CPU at small sizes (CuPy rows are skipped with the reason): a test of
the script on a machine without a GPU, not a GPU measurement. ``--device cuda`` stops with an error
when no CUDA device is visible to torch (or, with ``--backends cupy``, to CuPy).

The JSON (``meta``: date, command line, host, versions, GPU name / memory / driver from
``torch.cuda.get_device_properties``, CuPy and ``nvidia-smi``, wall time) is written atomically after
every section (``complete`` is false until the end). Benchmarks are host-side code: they name numpy,
torch and cupy directly; the kernels come from latticekit.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import (  # noqa: E402  (shared harness)
    _env_info,
    _fast_env,
    _row,
    compiled_gauge_kernels,
    compiled_phi4_kernels,
    gauge_kernels,
    phi4_kernels,
    time_call,
    write_json_atomic,
)
from bench_dirac import dirac_bytes  # noqa: E402  (the Wilson-Dirac byte model)

import latticekit as lk  # noqa: E402
from latticekit import backends  # noqa: E402
from latticekit.actions import WilsonDirac  # noqa: E402
from latticekit.linalg import cg  # noqa: E402

try:  # torch is optional: without it only CuPy rows can be measured
    import torch
except ImportError:  # pragma: no cover - depends on the installation
    torch = None

__all__ = ["Target", "main", "resolve_targets", "stream_bandwidth"]

KNOWN_BACKENDS = ("torch", "cupy")
SECTIONS = ("u1", "phi4", "su3", "dirac", "cg")

# sizes per (device, quick): 2D lattice sizes (U(1), phi^4), 4D SU(3) sizes, Wilson-Dirac and CG sizes,
# log2 of the bandwidth-probe array length
SIZES: dict[tuple[str, bool], dict[str, Any]] = {
    ("cuda", False): {"l2d": [64, 256, 1024], "su3": [8, 16, 24], "dirac": [8, 16], "cg": [8, 16], "bw_log2": 27},
    ("cuda", True): {"l2d": [64, 256], "su3": [8, 16], "dirac": [8, 16], "cg": [8], "bw_log2": 25},
    ("cpu", False): {"l2d": [16, 64], "su3": [8], "dirac": [8], "cg": [8], "bw_log2": 24},
    ("cpu", True): {"l2d": [16, 64], "su3": [8], "dirac": [4, 8], "cg": [4], "bw_log2": 24},
}


# ------------------------------------------------------------------------------------------------
# where the arrays live
# ------------------------------------------------------------------------------------------------
class Target:
    """One (backend, device) pair: how arrays are made there, how to wait for them, how to time them."""

    def __init__(self, backend: str, device: str) -> None:
        self.backend = backend
        self.device = device
        self.cuda = device != "cpu"
        if backend == "cupy":
            import cupy

            self._cupy = cupy
            self._dev = cupy.cuda.Device(int(device.split(":")[1]) if ":" in device else 0)

    def put(self, a: np.ndarray) -> Any:
        """A C-contiguous copy of host array ``a`` on this target (``backends.asarray``)."""
        return backends.asarray(np.ascontiguousarray(a), backend=self.backend, device=self.device)

    def sync(self) -> None:
        """Wait until all work queued on the device is done (no-op on the CPU)."""
        if not self.cuda:
            return
        if self.backend == "torch":
            torch.cuda.synchronize()
        else:
            self._dev.synchronize()

    @property
    def sync_fn(self) -> Callable[[], None] | None:
        return self.sync if self.cuda else None

    def free(self) -> None:
        """Return cached device memory (torch caching allocator / CuPy memory pool)."""
        gc.collect()
        if not self.cuda:
            return
        self.sync()
        if self.backend == "torch":
            torch.cuda.empty_cache()
        else:
            self._cupy.get_default_memory_pool().free_all_blocks()
            self._cupy.get_default_pinned_memory_pool().free_all_blocks()

    def elapsed(self, fn: Callable[[], Any]) -> float:
        """Seconds of device time of one ``fn()`` (CUDA events; perf_counter + sync on the CPU)."""
        if not self.cuda:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        if self.backend == "torch":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        start, end = self._cupy.cuda.Event(), self._cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return self._cupy.cuda.get_elapsed_time(start, end) / 1e3

    def __str__(self) -> str:
        return f"{self.backend}:{self.device}"


def resolve_targets(device: str, names: list[str]) -> tuple[list[Target], dict[str, str]]:
    """Targets to measure and the reasons for the backends skipped.

    Raises ``RuntimeError`` with a clear message when ``device == 'cuda'`` and no requested backend sees
    a CUDA device (or torch is requested and sees none), or when nothing at all can be measured.
    """
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    for name in names:
        if name == "torch":
            if torch is None:
                if device == "cuda":
                    raise RuntimeError("--device cuda: torch is not installed (pass --backends cupy to measure CuPy only)")
                skipped["torch"] = "torch is not installed"
                continue
            if device == "cuda" and not torch.cuda.is_available():
                raise RuntimeError(
                    f"--device cuda: no CUDA device is visible to torch (torch {torch.__version__}, built for CUDA "
                    f"{torch.version.cuda}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). "
                    "Run on a machine with an NVIDIA GPU, or use --device cpu to test the script on the CPU.")
            targets.append(Target("torch", "cuda" if device == "cuda" else "cpu"))
        elif name == "cupy":
            if device == "cpu":
                skipped["cupy"] = "cupy arrays live on the GPU; not measured with --device cpu"
                continue
            try:
                import cupy

                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:  # ImportError or CUDA runtime errors
                skipped["cupy"] = f"cupy unavailable: {type(exc).__name__}: {exc}"
                continue
            if n < 1:
                skipped["cupy"] = "cupy sees no CUDA device"
                continue
            targets.append(Target("cupy", "cuda:0"))
    if not targets:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no backend requested"
        if device == "cuda":
            raise RuntimeError(f"--device cuda: no CUDA device is usable by the requested backends ({why})")
        raise RuntimeError(f"--device {device}: nothing to measure ({why})")
    return targets, skipped


# ------------------------------------------------------------------------------------------------
# GPU description
# ------------------------------------------------------------------------------------------------
def _nvidia_smi() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"available": False}
    fields = "name,memory.total,driver_version,clocks.max.sm,clocks.max.memory,power.limit,pstate,temperature.gpu"
    out: dict[str, Any] = {"available": True, "query": fields}
    try:
        p = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True, text=True,
                           timeout=30)
        out["gpus"] = [line.strip() for line in p.stdout.splitlines() if line.strip()]
        if p.returncode != 0:
            out["stderr"] = p.stderr.strip()[-500:]
    except Exception as exc:  # report, never crash the benchmark
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def gpu_info(targets: list[Target]) -> dict[str, Any]:
    """Everything known about the GPU: torch and CuPy device properties, driver, nvidia-smi, peak bandwidth."""
    info: dict[str, Any] = {}
    if torch is not None:
        info["torch_cuda_version"] = torch.version.cuda
        info["torch_cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            try:
                p = torch.cuda.get_device_properties(0)
                info["torch_device"] = {
                    "name": p.name, "total_memory_bytes": int(p.total_memory), "capability": f"{p.major}.{p.minor}",
                    "multi_processor_count": p.multi_processor_count,
                    **{k: getattr(p, k) for k in ("L2_cache_size", "memory_clock_rate", "memory_bus_width")
                       if hasattr(p, k)}}
                info["torch_device_count"] = torch.cuda.device_count()
            except Exception as exc:
                info["torch_device"] = f"unavailable: {type(exc).__name__}: {exc}"
    if any(t.backend == "cupy" for t in targets):
        import cupy

        rt = cupy.cuda.runtime
        cp: dict[str, Any] = {"version": cupy.__version__}
        for key, fn in (("runtime_version", rt.runtimeGetVersion), ("driver_version", rt.driverGetVersion)):
            try:
                cp[key] = fn()
            except Exception as exc:
                cp[key] = f"unknown: {exc}"
        try:
            props = rt.getDeviceProperties(0)
            for k in ("name", "totalGlobalMem", "multiProcessorCount", "l2CacheSize", "memoryClockRate",
                      "memoryBusWidth", "clockRate"):
                if k in props:
                    v = props[k]
                    cp[k] = v.decode() if isinstance(v, bytes) else v
        except Exception as exc:
            cp["properties"] = f"unavailable: {type(exc).__name__}: {exc}"
        # attributes (CUDA 13 dropped some fields of cudaDeviceProp): 36 memory clock (kHz), 37 bus width (bits),
        # 38 L2 cache size (bytes)
        for k, attr in (("memoryClockRate", 36), ("memoryBusWidth", 37), ("l2CacheSize", 38)):
            if k not in cp:
                try:
                    cp[k] = rt.deviceGetAttribute(attr, 0)
                except Exception:
                    pass
        info["cupy"] = cp
    info["nvidia_smi"] = _nvidia_smi()
    # theoretical peak from the memory clock and bus width (double data rate)
    td = info.get("torch_device") if isinstance(info.get("torch_device"), dict) else {}
    cp_info = info.get("cupy", {})

    def first(*vals: Any) -> Any:
        return next((v for v in vals if isinstance(v, (int, float)) and v > 0), None)

    clk = first(cp_info.get("memoryClockRate"), td.get("memory_clock_rate"))
    bus = first(cp_info.get("memoryBusWidth"), td.get("memory_bus_width"))
    if clk and bus:
        info["theoretical_peak_GBps"] = 2 * float(clk) * 1e3 * float(bus) / 8 / 1e9
        info["theoretical_peak_note"] = "2 x memory clock (kHz, device property) x bus width (bits) / 8"
    l2 = first(cp_info.get("l2CacheSize"), td.get("L2_cache_size"))
    info["l2_cache_bytes"] = int(l2) if l2 else None
    return info


# ------------------------------------------------------------------------------------------------
# memory-bandwidth probe
# ------------------------------------------------------------------------------------------------
def _stream_ops(t: Target, n: int, notes: list[str]) -> dict[str, tuple[int, Callable[[], Any]]]:
    """The four STREAM kernels on three fresh float64 arrays of ``n`` elements on ``t``: name -> (B/element, fn)."""
    s = 3.0
    if t.backend == "torch":
        dev = torch.device(t.device)
        a = torch.full((n,), 1.0, dtype=torch.float64, device=dev)
        b = torch.full((n,), 2.0, dtype=torch.float64, device=dev)
        c = torch.full((n,), 3.0, dtype=torch.float64, device=dev)
        return {"copy": (16, lambda: a.copy_(b)), "scale": (16, lambda: torch.mul(b, s, out=a)),
                "add": (24, lambda: torch.add(b, c, out=a)), "triad": (24, lambda: torch.add(b, c, alpha=s, out=a))}
    cupy = t._cupy
    with t._dev:
        a = cupy.full((n,), 1.0, dtype=cupy.float64)
        b = cupy.full((n,), 2.0, dtype=cupy.float64)
        c = cupy.full((n,), 3.0, dtype=cupy.float64)
    ops: dict[str, tuple[int, Callable[[], Any]]] = {
        "copy": (16, lambda: cupy.copyto(a, b)), "scale": (16, lambda: cupy.multiply(b, s, out=a)),
        "add": (24, lambda: cupy.add(b, c, out=a))}
    try:
        triad_k = cupy.ElementwiseKernel("float64 b, float64 c, float64 s", "float64 a", "a = b + s * c",
                                         "latticekit_stream_triad")
        triad_k(b, c, s, a)
        ops["triad"] = (24, lambda: triad_k(b, c, s, a))
    except Exception as exc:
        notes.append(f"cupy fused triad unavailable ({type(exc).__name__}: {exc}); two passes")

        def triad_2pass() -> None:
            cupy.multiply(c, s, out=a)
            cupy.add(a, b, out=a)

        ops["triad_2pass"] = (24, triad_2pass)
    return ops


def stream_bandwidth(targets: list[Target], n: int, repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
    """STREAM-like copy / scale / add / triad on float64 arrays of ``n`` elements on every target.

    Timed with CUDA events on the GPU (perf_counter on the CPU), best of ``repeats`` after ``warmup``
    calls; STREAM byte counting (16 B per element for copy and scale, 24 B for add and triad). The torch
    triad is one fused call (``torch.add(b, c, alpha=s, out=a)``); CuPy's is a fused ``ElementwiseKernel``
    (two passes, ``triad_2pass``, only if that kernel cannot be compiled).
    """
    out: dict[str, Any] = {"elements": n, "array_MB": n * 8 / 1e6, "repeats": repeats, "warmup": warmup,
                           "timer": {}, "GBps": {}, "notes": []}
    res = out["GBps"]
    for t in targets:
        out["timer"][t.backend] = "CUDA events" if t.cuda else "perf_counter"
        ops: dict[str, tuple[int, Callable[[], Any]]] = {}
        try:
            ops = _stream_ops(t, n, out["notes"])
            for name, (per_elem, fn) in ops.items():
                for _ in range(warmup):
                    fn()
                t.sync()
                res[f"{t.backend}_{name}"] = per_elem * n / min(t.elapsed(fn) for _ in range(repeats)) / 1e9
        except Exception as exc:  # report, do not crash the whole run
            out["notes"].append(f"{t.backend} bandwidth probe failed: {type(exc).__name__}: {exc}")
        finally:
            ops.clear()  # drops the arrays held by the closures
            fn = None
        t.free()
    if not res:
        raise RuntimeError("the bandwidth probe failed on every backend: " + "; ".join(out["notes"]))
    out["reference_GBps"] = max(res.values())
    out["reference_kernel"] = max(res, key=res.get)
    for t in targets:
        vals = [v for k, v in res.items() if k.startswith(t.backend + "_")]
        if vals:
            out[f"{t.backend}_reference_GBps"] = max(vals)
    return out


# ------------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------------
def _rel_err(got: Any, want: np.ndarray) -> float:
    got = np.asarray(backends.to_numpy(got))
    want = np.asarray(want)
    if got.shape != want.shape:
        raise ValueError(f"result shape {got.shape} differs from the NumPy reference {want.shape}")
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-300))


def _host_refs(kernels: dict[str, tuple[Callable[[Any], Any] | None, str]], field_np: np.ndarray,
               ) -> dict[str, np.ndarray | str]:
    """NumPy results of every kernel on the host (or the reason there is none)."""
    refs: dict[str, np.ndarray | str] = {}
    for name, (fn, _model) in kernels.items():
        if fn is None:
            continue
        try:
            refs[name] = np.array(backends.to_numpy(fn(field_np)))
        except Exception as exc:
            refs[name] = f"numpy reference failed: {type(exc).__name__}: {exc}"
    return refs


def _finish(row: dict[str, Any], target: Target, fn: Callable[[Any], Any] | None, field: Any,
            ref: np.ndarray | str | None, check_batch: int | None, l2: int | None) -> dict[str, Any]:
    """Add device, correctness check (one more call, compared with the host NumPy result) and cache flags."""
    row["device"] = target.device
    if target.cuda:
        row.pop("fits_in_llc", None)  # the host's last-level cache says nothing about the GPU
        if l2 and "bytes" in row:
            row["fits_in_l2"] = row["bytes"] <= l2
    if row.get("status") != "ok" or fn is None:
        return row
    if isinstance(ref, str) or ref is None:
        row["max_rel_err_vs_numpy"] = None
        row["check"] = ref or "no reference"
        return row
    try:
        got = backends.to_numpy(fn(field))
        if check_batch is not None:
            got = got[:check_batch]
        row["max_rel_err_vs_numpy"] = _rel_err(got, ref)
        row["check"] = ("numpy on the host, " + (f"first {check_batch} configurations" if check_batch is not None
                                                 else "whole field"))
    except Exception as exc:
        row["max_rel_err_vs_numpy"] = None
        row["check"] = f"failed: {type(exc).__name__}: {exc}"
    return row


def field_rows(suite: str, L: int, nd: int, batch: int, field_np: np.ndarray,
               kernels: dict[str, tuple[Callable[[Any], Any] | None, str]],
               compiled: dict[str, tuple[Callable[[Any], Any], str]] | None, targets: list[Target],
               bw: dict[str, Any], timing: dict[str, Any], check_batch: int, l2: int | None,
               report: Callable[[dict[str, Any]], None]) -> None:
    """Rows of the field kernels (gauge / phi^4) of one size on every target, via ``bench_core._row``."""
    cb = min(check_batch, batch) if batch > 1 else None
    refs = _host_refs(kernels, field_np[:cb] if cb is not None else field_np)
    for t in targets:
        try:
            field = t.put(field_np)
        except Exception as exc:
            report({"suite": suite, "kernel": "(upload)", "backend": t.backend, "device": t.device, "L": L,
                    "batch": batch, "status": "error", "reason": f"{type(exc).__name__}: {exc}"})
            t.free()
            continue
        tm = dict(timing, sync=t.sync_fn)
        for name, (fn, model) in kernels.items():
            f = _fast_env(fn, False) if compiled is not None else fn  # generic code when fast paths are registered
            row = _row(suite, name, t.backend, L, nd, batch, field, f, model, bw, tm)
            report(_finish(row, t, f, field, refs.get(name), cb, l2))
        if compiled is not None and t.backend == "torch":
            for name, (fn, model) in compiled.items():
                row = _row(suite, name, "torch+compile", L, nd, batch, field, fn, model, bw, tm)
                report(_finish(row, t, fn, field, refs.get(name), cb, l2))
        del field
        t.free()


def _dirac_case(L: int, kappa: float) -> tuple[lk.Lattice, Any, np.ndarray, WilsonDirac, np.ndarray]:
    G = lk.SU(3)
    lat = lk.Lattice((L,) * 4)
    rng = backends.rng(11 + L, backend="numpy")
    U0 = np.ascontiguousarray(G.random(rng, (1, 4), lat.shape))
    D0 = WilsonDirac(U0, G, lat, kappa=kappa)
    psi0 = np.ascontiguousarray(D0.random_field(rng))
    return lat, G, U0, D0, psi0


def _throughput(row: dict[str, Any], nbytes: int, seconds: float, best_s: float, bw: dict[str, Any], t: Target,
                l2: int | None) -> dict[str, Any]:
    """Fill ns/site, GB/s and fractions of the reference bandwidth (as ``bench_core._row`` does)."""
    row["bytes"] = nbytes
    row["ns_per_site"] = seconds / row["sites"] * 1e9
    row["GBps"] = nbytes / seconds / 1e9
    row["GBps_best"] = nbytes / best_s / 1e9
    row["fraction_of_bandwidth"] = row["GBps"] / bw["reference_GBps"]
    bref = bw.get(f"{t.backend}_reference_GBps")
    if bref:
        row["fraction_of_backend_bandwidth"] = row["GBps"] / bref
    if t.cuda and l2:
        row["fits_in_l2"] = nbytes <= l2
    return row


def _dirac_target(t: Target, base: dict[str, Any], lat: lk.Lattice, G: Any, U0: np.ndarray, psi0: np.ndarray,
                  kappa: float, ref: dict[str, np.ndarray], one: int, bw: dict[str, Any], timing: dict[str, Any],
                  l2: int | None, compiled: bool = False) -> list[dict[str, Any]]:
    U = t.put(U0)
    psi = t.put(psi0)
    t.sync()
    t0 = time.perf_counter()
    D = WilsonDirac(U, G, lat, kappa=kappa)
    t.sync()
    t_ctor = time.perf_counter() - t0
    rows = []
    variants = [(t.backend, False)] + ([("torch+compile", True)] if compiled and t.backend == "torch" else [])
    for backend, fast in variants:   # generic code, then (torch, --compiled) backends/_kernels_torch_dirac.py
        for kernel, fn, nb, model in (
                ("apply", D.apply, one, "read psi + read links + write D psi (bench_dirac.dirac_bytes)"),
                ("normal", D.normal, 2 * one, "2 x (read psi + read links + write result) (D D^dag psi)")):
            f = _fast_env(fn, fast) if compiled else fn
            err = _rel_err(f(psi), ref[kernel])
            tt = time_call(lambda: f(psi), **dict(timing, sync=t.sync_fn))
            row = {**base, "backend": backend, "kernel": kernel, "bytes_model": model, "constructor_s": t_ctor,
                   "max_rel_err_vs_numpy": err, "check": "numpy on the host, whole field", **tt, "status": "ok"}
            rows.append(_throughput(row, nb, tt["median_s"], tt["min_s"], bw, t, l2))
    return rows


def dirac_rows(sizes: list[int], targets: list[Target], bw: dict[str, Any], timing: dict[str, Any],
               l2: int | None, report: Callable[[dict[str, Any]], None], kappa: float = 0.12,
               compiled: bool = False) -> None:
    """``D psi`` and ``D D^dag psi`` of the 4D SU(3) Wilson-Dirac operator (batch 1), bench_dirac byte model."""
    for L in sizes:
        lat, G, U0, D0, psi0 = _dirac_case(L, kappa)
        ref = {"apply": np.asarray(D0.apply(psi0)), "normal": np.asarray(D0.normal(psi0))}
        one = dirac_bytes(1, 4, G.N, lat.volume)
        for t in targets:
            base = {"suite": "dirac_su3_4d", "backend": t.backend, "device": t.device, "L": L, "nd": 4, "batch": 1,
                    "sites": lat.volume, "kappa": kappa}
            try:
                for row in _dirac_target(t, base, lat, G, U0, psi0, kappa, ref, one, bw, timing, l2, compiled):
                    report(row)
            except Exception as exc:
                report({**base, "kernel": "apply/normal", "status": "error", "reason": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=3)})
            t.free()


def _cg_target(t: Target, base: dict[str, Any], lat: lk.Lattice, G: Any, U0: np.ndarray, b0: np.ndarray,
               D0: WilsonDirac, x_ref: np.ndarray, kappa: float, tol: float, maxiter: int, quick: bool,
               bw: dict[str, Any], l2: int | None) -> dict[str, Any]:
    U = t.put(U0)
    b = t.put(b0)
    D = WilsonDirac(U, G, lat, kappa=kappa)
    state: dict[str, Any] = {}

    def solve() -> None:
        state["x"], state["info"] = cg(D.normal, b, tol=tol, maxiter=maxiter, batch_ndim=1)

    long = t.cuda and not quick
    tt = time_call(solve, warmup=1, min_repeats=5 if long else 3, max_repeats=20, budget_s=2.0 if long else 1.0,
                   sync=t.sync_fn)
    info = state["info"]
    it = int(np.max(backends.to_numpy(info.iterations)))
    x = np.asarray(backends.to_numpy(state["x"]))
    host_res = float(np.linalg.norm(b0 - np.asarray(D0.normal(x))) / np.linalg.norm(b0))
    row = {**base, **tt, "status": "ok", "iterations": it,
           "converged": bool(np.all(backends.to_numpy(info.converged))),
           "true_residual_device": float(np.max(backends.to_numpy(info.residual))),
           "true_residual_host": host_res,
           "max_rel_err_vs_numpy": _rel_err(x, x_ref), "check": "solution vs numpy CG on the host",
           "bytes_model": "per iteration: one D D^dag application = 2 x bench_dirac.dirac_bytes; the CG vector "
                          "updates, the reductions (one host sync per iteration) and the final true-residual "
                          "application are not counted",
           "per_iteration_s": tt["median_s"] / it}
    return _throughput(row, 2 * dirac_bytes(1, 4, G.N, lat.volume), tt["median_s"] / it, tt["min_s"] / it, bw, t, l2)


def cg_rows(sizes: list[int], targets: list[Target], bw: dict[str, Any], quick: bool, l2: int | None,
            report: Callable[[dict[str, Any]], None], kappa: float = 0.12, tol: float = 1e-10,
            maxiter: int = 2000, compiled: bool = False) -> None:
    """CG on ``D D^dag x = b`` (4D SU(3), batch 1): time per solve and per iteration, operator GB/s per iteration.

    ``ns_per_site``, ``GBps`` and the fractions refer to one iteration (``per_iteration_s``)."""
    for L in sizes:
        lat, G, U0, D0, _ = _dirac_case(L, kappa)
        b0 = np.ascontiguousarray(D0.random_field(backends.rng(7, backend="numpy")))
        t0 = time.perf_counter()
        x_ref, info_ref = cg(D0.normal, b0, tol=tol, maxiter=maxiter, batch_ndim=1)
        host_s = time.perf_counter() - t0
        x_ref = np.asarray(x_ref)
        for t in targets:
            base = {"suite": "cg_su3_4d", "kernel": "cg (D D^dag)", "backend": t.backend, "device": t.device, "L": L,
                    "nd": 4, "batch": 1, "sites": lat.volume, "kappa": kappa, "tol": tol,
                    "host_numpy_solve_s": host_s,
                    "host_numpy_iterations": int(np.max(backends.to_numpy(info_ref.iterations)))}
            # with --compiled: the generic CG (fast paths off) and, beside it, the compiled hopping term and CG
            # updates (backends/_kernels_torch*.py)
            variants = [(t.backend, False), ("torch+compile", True)] if compiled and t.backend == "torch" else \
                [(t.backend, None)]
            for backend, fast in variants:
                def run(_: Any, b: str = backend) -> dict[str, Any]:
                    return _cg_target(t, {**base, "backend": b}, lat, G, U0, b0, D0, x_ref, kappa, tol, maxiter,
                                      quick, bw, l2)

                try:
                    report((_fast_env(run, fast) if fast is not None else run)(None))
                except Exception as exc:
                    report({**base, "backend": backend, "status": "error", "reason": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=3)})
            t.free()


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def _print_row(row: dict[str, Any]) -> None:
    if row.get("status") == "ok":
        ms = (row["per_iteration_s"] if "per_iteration_s" in row else row["median_s"]) * 1e3
        extra = f"  it={row['iterations']}" if "iterations" in row else ""
        err = row.get("max_rel_err_vs_numpy")
        print(f"  {row['suite']:12s} {row['kernel']:13s} {row['backend']:13s} L={row['L']:4d} B={row['batch']:3d} "
              f"{ms:10.4f} ms {row['GBps']:8.1f} GB/s {100 * row['fraction_of_bandwidth']:5.1f}%  "
              f"err {err if err is None else format(err, '.1e')}{extra}"
              + ("  [fits in L2]" if row.get("fits_in_l2") else ""), flush=True)
    else:
        print(f"  {row['suite']:12s} {row['kernel']:13s} {row['backend']:13s} L={row['L']:4d} {row.get('status')}: "
              f"{str(row.get('reason', ''))[:160]}", flush=True)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Compact text table of the measured rows (CG: per iteration)."""
    head = (f"{'suite':12s} {'kernel':13s} {'backend':13s} {'L':>5s} {'B':>3s} {'ms/call':>11s} {'GB/s':>8s} "
            f"{'%BW':>6s} {'rel.err':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("status") == "ok":
            per_it = "per_iteration_s" in r
            ms = (r["per_iteration_s"] if per_it else r["median_s"]) * 1e3
            err = r.get("max_rel_err_vs_numpy")
            lines.append(f"{r['suite']:12s} {r['kernel']:13s} {r['backend']:13s} {r['L']:5d} {r['batch']:3d} "
                         f"{ms:11.4f} {r['GBps']:8.1f} {100 * r['fraction_of_bandwidth']:6.1f} "
                         f"{'-' if err is None else format(err, '8.1e'):>8s}"
                         + (f"  (per iteration, {r['iterations']} it)" if per_it else ""))
        else:
            lines.append(f"{r['suite']:12s} {r['kernel']:13s} {r['backend']:13s} {r['L']:5d} "
                         f"{r.get('batch', 0):3d} {r.get('status')}: {str(r.get('reason', ''))[:80]}")
    return "\n".join(lines)


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    t_start = time.perf_counter()
    if args.torch_threads and torch is not None:
        torch.set_num_threads(args.torch_threads)
    names = [b for b in args.backends.split(",") if b]
    targets, skipped = resolve_targets(args.device, names)
    sizes = SIZES[(args.device, bool(args.quick))]
    result: dict[str, Any] = {"meta": _env_info(argv), "device": args.device, "quick": bool(args.quick),
                              "targets": [str(t) for t in targets], "skipped_backends": skipped,
                              "sizes": sizes, "complete": False}
    meta = result["meta"]
    try:
        import cupy

        meta["cupy"] = cupy.__version__
    except Exception as exc:
        meta["cupy"] = f"not importable: {type(exc).__name__}"
    meta["gpu"] = gpu_info(targets) if args.device == "cuda" else None
    l2 = meta["gpu"]["l2_cache_bytes"] if meta["gpu"] else None
    for k, v in skipped.items():
        print(f"skipping {k}: {v}", flush=True)
    if meta["gpu"] and isinstance(meta["gpu"].get("torch_device"), dict):
        g = meta["gpu"]["torch_device"]
        print(f"GPU: {g['name']}, {g['total_memory_bytes'] / 2**30:.1f} GiB, capability {g['capability']}", flush=True)

    def save() -> None:
        meta["wall_s"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(result, args.out)

    compiled = None
    if args.compiled and any(t.backend == "torch" for t in targets):
        from latticekit.backends import _kernels_torch

        _kernels_torch.register()
        compiled = True
    result["compiled"] = bool(compiled)

    n_bw = 1 << (args.bw_log2 or sizes["bw_log2"])
    print(f"bandwidth probe: 3 x {n_bw * 8 / 2**20:.0f} MiB float64 arrays per backend ...", flush=True)
    bw = stream_bandwidth(targets, n_bw, repeats=10)
    result["bandwidth"] = bw
    print("  " + ", ".join(f"{k} {v:.0f}" for k, v in bw["GBps"].items()) + " GB/s; reference "
          f"{bw['reference_GBps']:.0f} GB/s ({bw['reference_kernel']})", flush=True)
    for note in bw["notes"]:
        print("  note: " + note, flush=True)
    rows: list[dict[str, Any]] = []
    result["rows"] = rows
    save()

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        _print_row(row)

    if args.device == "cuda":
        timing = dict(warmup=2, min_repeats=10, max_repeats=100, budget_s=1.0)
    else:  # a test of the script on the host: few repeats
        timing = dict(warmup=1, min_repeats=3, max_repeats=10, budget_s=0.3)
    result["timing"] = timing
    batch = args.batch
    l2d = sizes["l2d"]
    if "u1" in args.sections:
        for L in l2d:
            lat = lk.Lattice((L, L))
            U0 = np.ascontiguousarray(lk.U1.random(backends.rng(L, backend="numpy"), (batch, 2), lat.shape))
            field_rows("u1_2d", L, 2, batch, U0, gauge_kernels(lk.U1, lat, beta=2.0),
                       compiled_gauge_kernels(lat, 2.0) if compiled else None, targets, bw, timing,
                       args.check_batch, l2, report)
            del U0
            gc.collect()
        save()
    if "phi4" in args.sections:
        for L in l2d:
            lat = lk.Lattice((L, L))
            p0 = np.ascontiguousarray(backends.rng(100 + L, backend="numpy").normal((batch,) + lat.shape))
            field_rows("phi4_2d", L, 2, batch, p0, phi4_kernels(lat, kappa=0.2, lam=0.02),
                       compiled_phi4_kernels(lat, 0.2, 0.02) if compiled else None, targets, bw, timing,
                       args.check_batch, l2, report)
            del p0
            gc.collect()
        save()
    if "su3" in args.sections:
        G = lk.SU(3)
        for L in sizes["su3"]:
            lat = lk.Lattice((L,) * 4)
            U0 = np.ascontiguousarray(G.random(backends.rng(1000 + L, backend="numpy"), (1, 4), lat.shape))
            kern = gauge_kernels(G, lat, beta=6.0)
            # compiled: the library calls with the fast paths on (backends/_kernels_torch_sun.py)
            comp = ({n: (_fast_env(f, True), m) for n, (f, m) in kern.items() if n != "plaquette_raw" and f is not None}
                    if compiled else None)
            field_rows("su3_4d", L, 4, 1, U0, kern, comp, targets, bw, timing, args.check_batch, l2, report)
            del U0
            gc.collect()
        save()
    if "dirac" in args.sections:
        dirac_rows(sizes["dirac"], targets, bw, timing, l2, report, compiled=bool(compiled))
        save()
    if "cg" in args.sections:
        cg_rows(sizes["cg"], targets, bw, bool(args.quick), l2, report, compiled=bool(compiled))
        save()
    table = summary_table(rows)
    result["table"] = table.splitlines()
    print(f"\nreference bandwidth {bw['reference_GBps']:.1f} GB/s ({bw['reference_kernel']}); "
          f"%BW = achieved GB/s (byte model) / reference", flush=True)
    print(table, flush=True)
    meta["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:  # the registry is filled lazily, so _env_info (at the start) sees it empty
        from latticekit.backends import _fast

        meta["fast_paths_at_end"] = sorted(f"{n}[{b}]" for n, b in _fast._REGISTRY)
    except Exception as exc:
        meta["fast_paths_at_end"] = f"unknown: {exc}"
    result["complete"] = True
    save()
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON results file (written atomically after every section)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (U(1)/phi^4 L <= 256, SU(3) L <= 16)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default; error if no CUDA device is visible) or cpu (torch CPU, small sizes: "
                         "a test of the script)")
    ap.add_argument("--backends", default="torch,cupy",
                    help="comma list of torch, cupy (default both; cupy is skipped with the reason if unusable)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--batch", type=int, default=64, help="batch of the 2D U(1) and phi^4 fields (default 64)")
    ap.add_argument("--check-batch", type=int, default=4,
                    help="configurations of a batched field checked against NumPy on the host (default 4)")
    ap.add_argument("--bw-log2", type=int, default=0,
                    help="log2 of the bandwidth-probe array length (default 27; --quick 25; --device cpu 24)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads for the host side and --device cpu (default: torch's choice)")
    ap.add_argument("--compiled", action="store_true",
                    help="also the torch.compile fast paths of backends/_kernels_torch.py (U(1), phi^4; rows "
                         "'torch+compile'; compilation adds minutes)")
    args = ap.parse_args(argv)
    bad = [b for b in args.backends.split(",") if b and b not in KNOWN_BACKENDS]
    if bad:
        ap.error(f"--backends: unknown {bad}; expected a comma list of {', '.join(KNOWN_BACKENDS)}")
    args.sections = [s for s in args.sections.split(",") if s]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"--sections: unknown {bad}; expected a comma list of {', '.join(SECTIONS)}")
    if args.batch < 1 or args.check_batch < 1:
        ap.error("--batch and --check-batch: expected positive integers")
    try:
        res = run(args, ["benchmarks/bench_gpu.py"] + argv)
    except RuntimeError as exc:
        if str(exc).startswith("--device"):
            print(f"bench_gpu.py: error: {exc}", file=sys.stderr)
            return 2
        raise
    print(f"wrote {args.out} ({res['meta']['wall_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
