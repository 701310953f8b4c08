#!/usr/bin/env python
"""4D QCD flows (model.coupling = "qcd4d", arXiv:2208.03832): cost per training step and memory against volume.

Run by hand (not part of the test suite)::

    python benchmarks/bench_qcd4d.py scaling --out benchmarks/results/qcd4d_scaling_h200.json --device cuda
    python benchmarks/bench_qcd4d.py scaling --out /tmp/qcd4d_cpu.json --device cpu --L 2 --batch 8 --steps 3

``scaling`` builds the paper's architecture (48 spectral coupling layers on the shifted-stripe masks, CNNs
[32, 32, 32] with 16 spline knots; 36 pseudofermion layers with n_PT = 6, H = 4 and an 8-channel context) for
SU(3), beta = 1, kappa = 0.1 on L^4 lattices and times training steps of both stages of the job
(:func:`latticekit.app.flows.qcd4d_models.qcd4d_stages`): the marginal stage (the gauge flow against
``S_g - log det(D D^dag + mu0)`` with the stochastic determinant gradient) and the conditional stage (the
joint reverse KL with the marginal frozen). Per stage and L: the median wall time of ``--steps`` steps after
one warm-up step (device synchronised before each clock read), the time per site and per sample, and the
peak device memory of a step (``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the peak resident set
of the stage, warm-up included, above the resident set before it: a coarser number, and None where an
earlier larger peak of the process hides it, which is why the lattices run in increasing size). A CPU run
that exceeds the machine's memory is killed by the kernel, not reported: size ``--batch`` and ``--L`` to fit
(about 2.6 MB per site and sample in float64 with the paper's architecture, measured). Also recorded: the number of parameters, CG iterations are
not (they are inside the action), and the device copy bandwidth measured in the same run (for scale: a flow
step is not a bandwidth-bound kernel). ``--batch`` is the batch of both stages (the paper: 512 and 640-800).

The JSON (``meta``: command line, date, device, versions, load) is written atomically after every lattice.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import time
from typing import Any

import torch

from bench_common import machine, write_json

PAPER_MODEL = {"coupling": "qcd4d", "n_layers": 48, "hidden": [32, 32, 32], "bins": 16, "pf_layers": 36, "n_pt": 6,
               "pt_hidden": 4, "context_hidden": 8, "conditional_steps": [1], "conditional_batch_size": [2],
               "conditional_lr": [1e-4], "conditional_step_size": [0]}


def config(L: int, batch: int, model: dict[str, Any], recompute: bool = False) -> Any:
    from latticekit.app.config import FlowConfig

    return FlowConfig.from_dict({
        "lattice": {"shape": [L] * 4},
        "action": {"kind": "wilson_nf2", "group": "SU3", "beta": 1.0, "kappa": 0.1, "cg_tol": 1e-10},
        "model": {**model, "conditional_batch_size": [batch]},
        "train": {"steps": 1, "batch_size": batch, "lr": 1e-3, "eps": 0.01, "clip_norm": 10.0, "clip_value": 0.1,
                  "dtype": "float64", "seed": 1, "checkpoint_every": 0, "recompute_layers": recompute},
    })


def copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy of 2^27 float64 (1 GiB; 2^24 on the CPU), GB/s counting read + write, best of 5."""
    n = 2 ** 27 if device.type == "cuda" else 2 ** 24
    a = torch.ones(n, dtype=torch.float64, device=device)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(6):
        sync(device)
        t = time.perf_counter()
        b.copy_(a)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * 8 * n / best / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def rss_bytes() -> int:
    """The process's resident set now (Linux ``/proc/self/status``; 0 where that is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def time_stage(model: Any, stage: Any, steps: int, device: torch.device) -> dict[str, Any]:
    from latticekit.flows.train import Trainer

    # CPU: the process's peak RSS only grows, so a stage's own peak is seen only where it exceeds every
    # earlier one (warm-up step included, from the RSS before the stage); else it is reported as None
    rss0, hwm0 = (rss_bytes(), peak_bytes(device)) if device.type == "cpu" else (0, 0)
    stage.prepare(model)
    cfg = dataclasses.replace(stage.config, steps=steps + 1, checkpoint_every=0, checkpoint_path=None,
                              device=str(device))
    tr = Trainer(model, stage.action, cfg)
    tr.train_step()  # warm-up (allocations, CG workspaces)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        m = tr.train_step()
        sync(device)
        times.append(time.perf_counter() - t)
        losses.append(float(m["loss"]))
    if device.type == "cuda":
        peak, kind = peak_bytes(device), "max_memory_allocated of the timed steps"
    else:
        hwm = peak_bytes(device)
        peak = hwm - rss0 if hwm > hwm0 else None
        kind = ("peak RSS of the stage (warm-up included) minus the RSS before it; None where an earlier, larger "
                "peak of the process hides it")
    return {"steps": steps, "step_s_median": statistics.median(times), "step_s": times,
            "peak_bytes": peak, "peak_kind": kind, "losses": losses}


def run_scaling(args: argparse.Namespace) -> None:
    from latticekit.app.flows.models import build_flow
    from latticekit.app.flows.qcd4d_models import qcd4d_stages

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible to torch")
    torch.set_num_threads(args.threads)
    # large temporaries from the heap, as in `latticekit train` (backends/_malloc.py); --default-malloc: glibc's
    # own thresholds, as the files recorded before 2026-12-05 09:00 ran
    from latticekit.backends import configure_malloc
    malloc = configure_malloc() if not args.default_malloc else False
    meta = {"command": " ".join([sys.executable] + sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(), "device": str(device), "batch": args.batch, "steps": args.steps,
            "model": PAPER_MODEL if not args.small else "small", "recompute_layers": args.recompute,
            "configure_malloc": malloc, "complete": False}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        meta["gpu"] = {"name": p.name, "memory_bytes": int(p.total_memory)}
    meta["copy_bandwidth_GBps"] = copy_bandwidth(device)
    out: dict[str, Any] = {"meta": meta, "lattices": []}
    model_spec = dict(PAPER_MODEL)
    if args.small:
        model_spec.update(n_layers=8, hidden=[8], bins=8, pf_layers=12, context_hidden=4)
    for L in args.L:
        cfg = config(L, args.batch, model_spec, args.recompute)
        model, _, lat = build_flow(cfg)
        stages = qcd4d_stages(cfg, device)
        row: dict[str, Any] = {"L": L, "sites": lat.volume, "n_parameters": int(sum(p.numel() for p in model.parameters()))}
        for st in stages[:2]:
            try:
                r = time_stage(model, st, args.steps, device)
            except torch.OutOfMemoryError as exc:  # record the limit and go on
                r = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
                torch.cuda.empty_cache()
            if "step_s_median" in r:
                r["s_per_site_per_sample"] = r["step_s_median"] / (lat.volume * args.batch)
            row[st.name] = r
            pk = r.get("peak_bytes")
            print(f"L={L} {st.name}: {r.get('step_s_median', r.get('error'))} s/step, "
                  f"peak {'-' if pk is None else f'{pk / 2**30:.2f} GiB'}", flush=True)
        out["lattices"].append(row)
        write_json(args.out, out)
        del model, stages
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out["meta"]["complete"] = True
    out["meta"]["load_avg_end"] = list(os.getloadavg())
    write_json(args.out, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("scaling", help="cost per step and memory against L")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--L", type=int, nargs="+", default=[2, 4, 6, 8])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--recompute", action="store_true", help="[train] recompute_layers = true (activation "
                   "checkpointing: less memory, about one more forward pass per step)")
    p.add_argument("--small", action="store_true", help="a small architecture (a test of the script)")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold alone (by default "
                   "the script calls latticekit.backends.configure_malloc(), as the jobs do)")
    args = ap.parse_args(argv)
    run_scaling(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
