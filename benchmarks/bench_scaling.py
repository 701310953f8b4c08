#!/usr/bin/env python
"""Cost per site and memory against the lattice size L for the 2D kernels (issue 19, item 4).

Run by hand (not part of the test suite)::

    python benchmarks/bench_scaling.py --out benchmarks/results/scaling_2d_vm.json          # ~3 min
    python benchmarks/bench_scaling.py --out /tmp/scaling_quick.json --quick

For each kernel -- U(1) plaquette and Wilson force, phi^4 action and force, the Wilson-Dirac operator
``D psi`` on U(1) links -- and each backend (``numpy``: with the numba fast paths where registered;
``torch``: one thread), and for L = 8, 16, 32, 64, 128:

* **Cost per site** at a fixed number of sites per call: the batch is ``sites // L^2``, so every L does
  the same work and moves the same bytes; the median time per call divided by the sites. Two totals:
  ``--sites`` (default 2^18: every array in the last-level cache) and ``--sites-dram`` (default 2^22:
  far outside it). Flat cost means that short rows, the per-configuration set-up and the per-call
  overhead are negligible from L = 8 on. ``flatness`` is max / min of the per-site cost over L. The sizes
  are timed interleaved (``--rounds``; see :func:`cost_rows`), and ``flatness_16_84`` is its spread when
  the rounds are resampled. (Files before 2026-12-07 timed each L in its own block of about a second.)
* **Memory against volume** at batch 1: the peak of the memory allocated during one call
  (``tracemalloc``, which sees NumPy's allocations; torch tensors are not traced, so NumPy only: with
  the fast paths, ``numpy``, and without, ``numpy-generic``), fitted as ``peak = fixed + bytes_per_site * L^2``. Linear in volume means the fit
  holds at every L (``max_deviation_from_affine_fit_over_largest_peak`` small) with ``bytes_per_site`` a small
  multiple of the input's bytes per site (the output and a constant number of temporaries).

The JSON (command, host, CPU, versions, load average at start and end, thread counts) is written
atomically; every row has the command that made the file in ``meta``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _env_info, script_parser, time_call, write_result  # noqa: E402  (shared harness)

import latticekit as lk  # noqa: E402
from latticekit import backends  # noqa: E402
from latticekit.actions import Phi4Action, WilsonDirac, WilsonGaugeAction  # noqa: E402
from latticekit.observables import average_plaquette  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - depends on the installation
    torch = None

SIZES = (8, 16, 32, 64, 128)


def _shared_inputs(total: int, backend: str) -> dict[str, Any]:
    """One buffer per input field holding ``total`` sites, on ``backend``: the link angles (2 per site),
    phi (1) and psi (2 spin components), random. :func:`_kernels` views them as batches of L x L
    configurations, so every L reads the same memory (a site's entries are contiguous in the same order
    for every L: ``(batch, 2, L, L)`` and ``(batch, L, L)`` row-major)."""
    th = np.random.default_rng(3).uniform(-np.pi, np.pi, size=2 * total)
    phi = np.random.default_rng(4).normal(size=total)
    r = np.random.default_rng(5)
    psi = r.normal(size=2 * total) + 1j * r.normal(size=2 * total)
    return {k: backends.from_numpy(v, backend=backend, copy=True) for k, v in (("th", th), ("phi", phi),
                                                                                 ("psi", psi))}


def _kernels(L: int, batch: int, backend: str, shared: dict[str, Any] | None = None
             ) -> dict[str, tuple[Callable[[], Any], Any]]:
    """``name -> (call, input field)`` for the five 2D kernels on a random batch of fields: views of the
    ``shared`` buffers (:func:`_shared_inputs`; ``batch * L * L`` sites) or, without them, new arrays."""
    lat = lk.Lattice((L, L))
    if shared is None:
        th = np.asarray(lk.U1.random(backends.rng(3), (batch, 2), lat.shape))
        phi = np.random.default_rng(4).normal(size=(batch, L, L))
        th_b = backends.from_numpy(th, backend=backend, copy=True)
        phi_b = backends.from_numpy(phi, backend=backend, copy=True)
    else:
        th_b = shared["th"].reshape(batch, 2, L, L)
        phi_b = shared["phi"].reshape(batch, L, L)
    S = WilsonGaugeAction(lk.U1, lat, 2.0)
    P = Phi4Action(lat, 0.25, 1.1)
    D = WilsonDirac(th_b, lk.U1, lat, kappa=0.24)
    if shared is None:
        psi = backends.from_numpy(np.asarray(D.random_field(backends.rng(5))), backend=backend, copy=True)
    else:
        psi = shared["psi"].reshape(batch, 2, 1, L, L)
        # the kernels' link array (the phases, (batch, 2, 1, 1, L, L)) is built per operator; it is an
        # elementwise function of the shared angles in the same flat order, so the first one built is
        # shared by all L, checked equal to each operator's own
        fl = D._links_for_kernels()
        if "links" not in shared:
            shared["links"] = fl.reshape(-1)
        elif not np.array_equal(np.asarray(fl).reshape(-1), np.asarray(shared["links"])):
            raise SystemExit(f"the Dirac operator's links at L = {L} differ from the shared ones")
        else:
            D._fast_links = shared["links"].reshape(fl.shape)
    return {
        "u1_plaquette": (lambda: average_plaquette(th_b, lk.U1, lat), th_b),
        "u1_force": (lambda: S.force(th_b), th_b),
        "phi4_action": (lambda: P.action(phi_b), phi_b),
        "phi4_force": (lambda: P.force(phi_b), phi_b),
        "dirac_apply": (lambda: D.apply(psi), psi),
    }


def cost_rows(args: argparse.Namespace, total: int, label: str, report: Callable[[dict[str, Any]], None]) -> None:
    """Per-site cost of every kernel at every L, **interleaved**: all sizes are built first, then ``--rounds``
    rounds each make ``--calls`` calls of every (L, kernel), the order of the sizes reversed every other
    round (in the cache regime after one untimed call, which brings the data back into the last-level cache).
    A row's cost is the median over rounds of each round's median call. This VM's speed drifts by
    up to 30% from one second to the next (the same call, timed back to back for 20 s: block medians
    1.23-1.63 ns per site); timed in rounds of a few milliseconds per size, the drift reaches every L
    alike instead of showing up as a dependence on L, as it did when each L was timed in its own block.

    Every L reads the same memory: the inputs are views of one set of buffers (:func:`_shared_inputs`),
    so the sizes differ in nothing but the kernels' view of it. With new arrays per L (``--arrays-per-L``,
    the files before 2026-12-07 04:30) where each array landed adds to the differences between L: a flat
    loop ``O = P + U`` over 2^22 sites gave max/min 1.22 over five sets of arrays in DRAM against 1.04 on
    one set (``write_streams.py``; results/write_streams*.json). For the library's kernels the two ways
    agree within the spread between runs (benchmarks/README.md)."""
    for backend in args.backends.split(","):
        cases = {}
        shared = None if args.arrays_per_L else _shared_inputs(total, backend)
        for L in SIZES:
            batch = max(1, total // (L * L))
            cases[L] = (batch, _kernels(L, batch, backend, shared))
            for fn, _ in cases[L][1].values():
                fn()
                fn()                                       # warm-up: compilation, caches, the allocator
        per_round: dict[tuple[int, str], list[float]] = {}
        for r in range(args.rounds):
            for L in (SIZES if r % 2 == 0 else SIZES[::-1]):
                for name, (fn, _) in cases[L][1].items():
                    # cache regime: one untimed call first (the other sizes' calls evicted this one's data)
                    t = time_call(fn, warmup=1 if label == "cache" else 0, min_repeats=args.calls,
                                  max_repeats=args.calls, budget_s=0.0)
                    per_round.setdefault((L, name), []).append(t["median_s"])
        for L in SIZES:
            batch = cases[L][0]
            sites = batch * L * L
            for name in cases[L][1]:
                ts = np.asarray(per_round[(L, name)])
                report({"section": "cost", "regime": label, "kernel": name, "backend": backend, "L": L,
                        "batch": batch, "sites": sites, "rounds": int(ts.size),
                        "median_s": float(np.median(ts)), "min_s": float(ts.min()), "max_s": float(ts.max()),
                        "round_medians_s": ts.tolist(),
                        "ns_per_site": float(np.median(ts)) / sites * 1e9,
                        "ns_per_site_best": float(ts.min()) / sites * 1e9})
        del cases, shared
        gc.collect()


def flatness_interval(sel: list[dict[str, Any]], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """16th and 84th percentiles of max/min over L of the median per-site cost, resampling the rounds
    (the same rounds for every L: a round is one pass over all sizes, so the sizes stay paired)."""
    t = np.asarray([np.asarray(r["round_medians_s"]) / r["sites"] for r in sel])   # (n_L, rounds)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.shape[1], size=(n_boot, t.shape[1]))
    med = np.median(t[:, idx], axis=2)                                               # (n_L, n_boot)
    flat = med.max(axis=0) / med.min(axis=0)
    return float(np.percentile(flat, 16)), float(np.percentile(flat, 84))


def memory_rows(args: argparse.Namespace, report: Callable[[dict[str, Any]], None]) -> None:
    old = os.environ.get("LATTICEKIT_FAST_KERNELS")
    try:
        for mode, flag in (("numpy", "1"), ("numpy-generic", "0")):
            os.environ["LATTICEKIT_FAST_KERNELS"] = flag   # numpy-generic: the Array API code, fast paths off
            for L in SIZES:
                for name, (fn, field) in _kernels(L, 1, "numpy").items():
                    fn()                             # warm-up: compilation and caches outside the trace
                    gc.collect()
                    tracemalloc.start()
                    tracemalloc.reset_peak()
                    base = tracemalloc.get_traced_memory()[0]
                    fn()
                    peak = tracemalloc.get_traced_memory()[1] - base
                    tracemalloc.stop()
                    report({"section": "memory", "kernel": name, "backend": mode, "L": L, "batch": 1,
                            "input_bytes": int(field.nbytes), "peak_alloc_bytes": int(peak),
                            "peak_over_input": peak / field.nbytes})
    finally:
        if old is None:
            os.environ.pop("LATTICEKIT_FAST_KERNELS", None)
        else:
            os.environ["LATTICEKIT_FAST_KERNELS"] = old


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    t0 = time.time()
    if torch is not None:
        torch.set_num_threads(1)
    # outputs from the heap, as in the jobs (backends/_malloc.py), unless --default-malloc (glibc's 32 MB mmap
    # threshold: a page fault per 4 kB page of every output above it, as the files before 2026-12-05 10:30 ran)
    malloc = backends.configure_malloc() if not args.default_malloc else False
    result: dict[str, Any] = {"meta": _env_info(argv), "configure_malloc": malloc}
    result["meta"]["fast_paths_numpy"] = sorted(n for (n, b) in backends._fast._REGISTRY if b == "numpy") \
        if backends.fast_path("u1_wilson_force", np.ones(1)) is not None else []
    rows: list[dict[str, Any]] = []
    result["rows"] = rows

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        if row["section"] == "cost":
            print(f"  {row['regime']:5s} {row['kernel']:13s} {row['backend']:6s} L={row['L']:4d} B={row['batch']:6d} "
                  f"{row['ns_per_site']:8.2f} ns/site", flush=True)
        else:
            print(f"  memory {row['backend']:13s} {row['kernel']:13s} L={row['L']:4d} peak {row['peak_alloc_bytes'] / 1e6:9.3f} MB "
                  f"= {row['peak_over_input']:.2f} x input", flush=True)

    cost_rows(args, args.sites, "cache", report)
    if not args.quick:
        cost_rows(args, args.sites_dram, "dram", report)
    memory_rows(args, report)
    summary = []
    for regime in sorted({r["regime"] for r in rows if r["section"] == "cost"}):
        for backend in args.backends.split(","):
            for name in sorted({r["kernel"] for r in rows if r["section"] == "cost"}):
                sel = [r for r in rows if r["section"] == "cost" and r.get("regime") == regime
                       and r["backend"] == backend and r["kernel"] == name]
                if sel:
                    c = [r["ns_per_site"] for r in sel]
                    lo, hi = flatness_interval(sel)
                    summary.append({"regime": regime, "backend": backend, "kernel": name,
                                    "ns_per_site_by_L": {str(r["L"]): r["ns_per_site"] for r in sel},
                                    "flatness": max(c) / min(c), "flatness_16_84": [lo, hi],
                                    "flat_within_20pct": max(c) / min(c) <= 1.2})
    for name, mode in sorted({(r["kernel"], r["backend"]) for r in rows if r["section"] == "memory"}):
        sel = [r for r in rows if r["section"] == "memory" and r["kernel"] == name and r["backend"] == mode]
        V = np.array([r["L"] ** 2 for r in sel], dtype=float)
        peak = np.array([r["peak_alloc_bytes"] for r in sel], dtype=float)
        slope, icpt = np.polyfit(V, peak, 1)            # peak = intercept + slope * volume
        dev = np.abs(peak - (icpt + slope * V)) / peak.max()   # in units of the largest peak (L = 128)
        summary.append({"regime": "memory", "backend": mode, "kernel": name,
                        "peak_bytes_by_L": {str(r["L"]): r["peak_alloc_bytes"] for r in sel},
                        "bytes_per_site": slope, "fixed_bytes": icpt,
                        "input_bytes_per_site": sel[-1]["input_bytes"] / V[-1],
                        "max_deviation_from_affine_fit_over_largest_peak": float(dev.max())})
    result["summary"] = summary
    for s in summary:
        if "flatness" in s:
            print(f"  {s['regime']:5s} {s['backend']:6s} {s['kernel']:13s} max/min per-site cost over L: "
                  f"{s['flatness']:.2f} (rounds resampled, 16-84%: "
                  f"{s['flatness_16_84'][0]:.2f}-{s['flatness_16_84'][1]:.2f})", flush=True)
        else:
            print(f"  memory {s['backend']:13s} {s['kernel']:13s} peak = {s['fixed_bytes']:.0f} B + {s['bytes_per_site']:.1f} B/site "
                  f"(input {s['input_bytes_per_site']:.0f} B/site; largest deviation from the fit "
                  f"{100 * s['max_deviation_from_affine_fit_over_largest_peak']:.1f}% of the L = 128 peak)", flush=True)
    result["meta"]["wall_s"] = time.time() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = script_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="the in-cache sizes only")
    ap.add_argument("--backends", default="numpy,torch", help="comma list of numpy, torch")
    ap.add_argument("--sites", type=int, default=1 << 18, help="sites per call, in-cache regime")
    ap.add_argument("--sites-dram", type=int, default=1 << 22, help="sites per call, DRAM regime")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds over all sizes (see cost_rows)")
    ap.add_argument("--calls", type=int, default=1, help="calls of each (L, kernel) per round")
    ap.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold alone (by default "
                    "the script calls latticekit.backends.configure_malloc(), as the jobs do)")
    ap.add_argument("--arrays-per-L", action="store_true", help="new input arrays for every L (the files before "
                    "2026-12-07 04:30) instead of views of one set of buffers (see cost_rows)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        ap.error(f"--rounds and --calls must be at least 1, got {args.rounds} and {args.calls}")
    for t in (args.sites, args.sites_dram):
        if t % (SIZES[-1] ** 2) and not args.arrays_per_L:
            ap.error(f"--sites and --sites-dram must be multiples of {SIZES[-1] ** 2} (whole {SIZES[-1]} x "
                     f"{SIZES[-1]} configurations, so that every L views the same buffer), got {t}")
    if "torch" in args.backends and torch is None:
        ap.error("--backends names torch, which is not installed")
    return write_result(run(args, [__file__] + argv), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
