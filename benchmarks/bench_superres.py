#!/usr/bin/env python
"""Super-resolving RG flows for phi^4 (Bauer, Kapust, Pawlowski, Temmen): IR- and UV-matching on CPU, and the profile of a training step.

Run by hand (not part of the test suite). Writes JSON atomically after every case, with the command line and
the machine (CPU model, cores, load average at start and end, torch threads).

    # IR-matching (Sec. VI): coarse 4x4 phi^4 with learnable kappa_L (lam = 0.01 fixed) sampled by batched
    # differentiable Langevin (tau = 0.01, 5e4 thermalisation steps, 500 per training step), upsampled by
    # --levels doublings T = F o N o U (local CNF with the App. C hyperparameters F = 11, D = 10, F' = D' = 20,
    # kernel size 2) to a fine lattice at fixed (kappa, lam); Adam (0.8, 0.9), lr 0.01 decaying by 0.997 per
    # step (App. C); log Z gradient from 1024 independent HMC chains with reweighting (R_W = 0.85)
    python benchmarks/bench_superres.py ir --kappa 0.25 --levels 1 --steps 300 \
        --out benchmarks/results/superres_ir_L8.json

    # profile of the training step (forward = sample + action, backward = gradients + Adam; field evaluations of
    # the CNF per step; the cProfile functions with the most own time), IR- and UV-matching, 8x8, batch 64
    python benchmarks/bench_superres.py profile --family superres --kernel 2 --steps 3 --threads 1 \
        --out benchmarks/results/superres_profile_ir_conv.json
    python benchmarks/bench_superres.py profile --family superres_uv --kernel 3 --steps 3 --threads 1 \
        --out benchmarks/results/superres_profile_uv_conv.json
    # the same with the earlier form of the CNF's kernel sum (a loop of torch.roll over the offsets)
    python benchmarks/bench_superres.py profile --family superres --kernel 2 --steps 3 --threads 1 --offset-loop \
        --out benchmarks/results/superres_profile_ir_loop.json
    python benchmarks/bench_superres.py profile --family superres_uv --kernel 3 --steps 3 --threads 1 --offset-loop \
        --out benchmarks/results/superres_profile_uv_loop.json

    # UV-matching ladder (App. A, Figs. 8-10) through the superres_uv train job (resumable in --folder): the coarse
    # theory fixed, the fine kappa learned; per level the learned and ESS-optimal kappa, the ESS/N at both (Kish,
    # --eval-n fresh draws) and the CPU time. 1D (Figs. 8-9: L = 8 -> 512, kappa 0.1, lambda 0.01) and 2D (Fig. 10)
    python benchmarks/bench_superres.py uv --nd 1 --coarse 8 --levels 6 --kappa 0.1 --steps 200 --retrain 100 \
        --folder /tmp/uv1d --out benchmarks/results/superres_uv_1d.json
    python benchmarks/bench_superres.py uv --nd 2 --coarse 4 --levels 2 --kappa 0.25 --steps 100 --retrain 40 \
        --folder /tmp/uv2d --out benchmarks/results/superres_uv_2d_L16.json

    # smoke run (a minute)
    python benchmarks/bench_superres.py ir --levels 1 --steps 3 --batch 8 --n-therm 200 --n-langevin 10 \
        --eval-n 64 --out /tmp/superres_smoke.json

The model is the ``superres`` family's (``latticekit train`` builds the same from a configuration). ESS is the
Kish ESS/N of ``--eval-n`` fresh proposals (the paper's ESS/N); the proposals are those of the family's sample
chain: coarse configurations from independent HMC chains at the learned couplings (exact stationary
distribution), not from the training Langevin batch (step-size bias, correlated draws).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

import latticekit as lk
from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.superres_models import superres_sampler
from latticekit.flows import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, write_json  # noqa: E402

#: the families' defaults are init = "gerdes" and noise_width = "configurations" since 2026-12-06; the benchmark
#: keeps "normal" and "pooled", with which every result recorded before then was run, so that their commands
#: reproduce them
INIT_HELP = "the CNFs' initialisation ([model] init; default here: normal, as the results recorded without --init)"
WIDTH_HELP = ("the noise's initial sigma from coarse samples ([model] noise_width; default here: pooled, as the "
              "results recorded without --noise-width)")


def build(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The IR-matching model of the ``superres`` family (coarse theory prior with learnable kappa_L and
    ``args.levels`` doublings), built from a configuration as ``latticekit train`` builds it."""
    L = args.coarse * 2 ** args.levels
    cfg = FlowConfig.from_dict({
        "lattice": {"shape": [L, L]}, "action": {"kind": "phi4", "kappa": args.kappa, "lam": args.lam},
        "model": {"coupling": "superres", "n_layers": args.levels, "learn": ["kappa"], "langevin_step": args.tau,
                  "n_therm": args.n_therm, "n_langevin": args.n_langevin, "log_z_samples": args.log_z_n,
                  "hmc_traj": args.hmc_traj, "r_w": args.r_w, "n_basis": args.F, "n_time": args.D,
                  "bond_basis": args.Fp, "bond_time": args.Dp, "kernel_size": args.kernel,
                  "ode_train_rtol": args.ode_train_tol, "ode_train_atol": args.ode_train_tol, "init": args.init,
                  "noise_width": args.noise_width},
        "train": {"seed": args.seed, "dtype": "float64"}})
    model, action, _ = build_flow(cfg)
    return model.to(torch.float64), cfg, action


def evaluate(model: Any, cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Kish ESS/N of ``eval_n`` proposals whose coarse fields come from independent HMC chains (the family's
    sample chain, :func:`~latticekit.app.flows.superres_models.superres_sampler`)."""
    with torch.no_grad():
        res, extra = superres_sampler(model, cfg.theory, cfg.model.variant, args.eval_n,
                                      lk.backends.rng(args.seed + 4, backend="torch"), observables={},
                                      batch_size=args.eval_n)
    lw = torch.as_tensor(res.proposal_log_w)
    return {"ess": extra["proposal_ess"], "n": args.eval_n, "var_log_w": float(lw.var()),
            "mean_log_w": float(lw.mean()), "acceptance": float(res.acceptance.rate)}


def cmd_ir(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"benchmark": "superres_ir", "paper": "Bauer, Kapust, Pawlowski, Temmen, Sec. VI",
                           "command": "python " + " ".join(sys.argv),
                           "ess_definition": "Kish ESS/N of --eval-n fresh proposals (coarse fields from "
                                             "independent HMC chains at the learned couplings)",
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": vars(args)}
    model, cfg, action = build(args)
    c, log_z = model.prior.couplings, model.prior.log_z
    out["fine_lattice"] = list(model.fine_shape)
    out["n_parameters"] = sum(p.numel() for p in model.parameters())
    out["untrained"] = evaluate(model, cfg, args)
    tr = Trainer(model, action,
                 TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, betas=(0.8, 0.9),
                             schedule="step", step_size=1, gamma=0.997, seed=args.seed, progress=False))
    curve, t0, c0 = [], time.time(), time.process_time()
    for step in range(1, args.steps + 1):
        m = tr.train_step()
        if step % args.log_every == 0 or step == args.steps:
            curve.append({"step": step, "loss": m["loss"], "batch_ess": m.get("ess"),
                          "cpu_s": time.process_time() - c0,
                          "kappa_L": float(c.kappa.detach()), "sigma": [float(T.noise.sigma.detach()) for T in model.flows],
                          "log_z_draws": log_z.n_draws})
            if args.eval_every and (step % args.eval_every == 0 or step == args.steps):
                c1 = time.process_time()
                curve[-1]["eval"] = evaluate(model, cfg, args)   # its CPU time is left out of cpu_s
                c0 += time.process_time() - c1
            print(f"step {step}: loss {m['loss']:.3f} ess {m.get('ess', float('nan')):.3f} "
                  f"kappa_L {float(c.kappa.detach()):.5f} log Z draws {log_z.n_draws}"
                  + (f" eval ESS/N {curve[-1]['eval']['ess']:.4f}" if "eval" in curve[-1] else ""), flush=True)
            out["curve"] = curve
            write_json(args.out, out)
    out["train_wall_s"], out["train_cpu_s"] = time.time() - t0, time.process_time() - c0
    out["trained"] = evaluate(model, cfg, args)
    out["kappa_L"] = float(c.kappa.detach())
    out["machine_at_end"] = machine()
    write_json(args.out, out)
    print(f"ESS/N untrained {out['untrained']['ess']:.4f} -> trained {out['trained']['ess']:.4f}; "
          f"kappa_L {args.kappa} -> {out['kappa_L']:.5f}; wrote {args.out}")


def cmd_field(args: argparse.Namespace) -> None:
    """One ``LocalCNF`` field evaluation (App. C sizes, random weights, float64) at ``--batch`` on ``L x L``: wall and
    system time and minor page faults per call, with the convolution in one call and in pieces of at most
    ``LocalCNF._COLUMN_BYTES`` of column buffer (``local_cnf._convolve``), under the jobs' allocator setting."""
    import resource

    from latticekit.flows.superres import LocalCNF
    from latticekit.testing import randomize_parameters

    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"benchmark": "superres_field", "command": "python " + " ".join(sys.argv),
                           "configure_malloc": lk.backends.configure_malloc(), "machine_at_start": machine(),
                           "settings": vars(args), "results": []}
    torch.manual_seed(0)
    layer = LocalCNF((args.L, args.L), kernel_size=args.kernel).to(torch.float64)
    randomize_parameters(layer, 0, scale=0.1)
    psi = torch.randn(args.batch, args.L, args.L, dtype=torch.float64) * 0.5
    kern = layer.block_kernels().detach()
    ref = None
    with torch.no_grad():
        # pieces first (a clean heap), then one call, then pieces again (after the large buffers came and went)
        default = LocalCNF._COLUMN_BYTES
        cases = [("pieces", default), ("one call", 2 ** 62), ("pieces", default)]
        if args.column_mb:   # pieces of several bounds, each before and after the one call
            sized = [(f"pieces {mb:g} MB", int(mb * 2 ** 20)) for mb in args.column_mb]
            cases = sized + [("one call", 2 ** 62)] + sized[::-1]
        out["column_bytes_default"] = default
        for label, limit in cases:
            layer._COLUMN_BYTES = limit
            g, _ = layer._field_and_divergence(psi, 0.3, kern)   # warm-up
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(args.reps):
                g, _ = layer._field_and_divergence(psi, 0.3, kern)
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            ref = g if ref is None else ref
            row = {"convolution": label, "column_bytes_limit": limit, "wall_ms": (t1 - t0) / args.reps * 1e3,
                   "system_ms": (r1.ru_stime - r0.ru_stime) / args.reps * 1e3,
                   "minor_faults": (r1.ru_minflt - r0.ru_minflt) / args.reps,
                   "max_abs_diff_to_first": float((g - ref).abs().max())}
            out["results"].append(row)
            print(row, flush=True)
        layer._COLUMN_BYTES = default
    out["machine_at_end"] = machine()
    write_json(args.out, out)


def count_field_evaluations() -> dict[str, int]:
    """Count the CNF field evaluations of this process from now on: ``LocalCNF._field_and_divergence`` wrapped,
    its calls in the returned dict's ``"n"`` (reset it by hand)."""
    from latticekit.flows.superres import LocalCNF

    calls = {"n": 0}
    original = LocalCNF._field_and_divergence

    def counted(self: Any, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        return original(self, *a, **k)

    LocalCNF._field_and_divergence = counted  # type: ignore[method-assign]
    return calls


def cmd_profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    from latticekit.flows.superres import LocalCNF
    from latticekit.flows.train import reverse_kl_loss

    torch.set_num_threads(args.threads)
    L = args.coarse * 2 ** args.levels
    model_keys = {"coupling": args.family, "n_layers": args.levels, "log_z_samples": args.log_z_n,
                  "hmc_traj": args.hmc_traj, "n_basis": args.F, "n_time": args.D, "bond_basis": args.Fp,
                  "bond_time": args.Dp, "kernel_size": args.kernel, "init": args.init, "noise_width": args.noise_width}
    if args.family == "superres":
        model_keys.update(n_therm=args.n_therm, n_langevin=args.n_langevin)
    cfg = FlowConfig.from_dict({"lattice": {"shape": [L, L]},
                                "action": {"kind": "phi4", "kappa": args.kappa, "lam": args.lam},
                                "model": model_keys, "train": {"seed": args.seed, "dtype": "float64"}})
    model, action, _ = build_flow(cfg)
    target = model.target if args.family == "superres_uv" else action
    tr = Trainer(model, target, TrainConfig(steps=args.steps + 1, batch_size=args.batch, lr=0.01, betas=(0.8, 0.9),
                                            seed=args.seed))
    calls = count_field_evaluations()
    if args.offset_loop:  # the loop over offsets (torch.roll) instead of one convolution: the earlier form
        LocalCNF.conv_max_nd = 0
    out: dict[str, Any] = {"benchmark": "superres_profile", "command": "python " + " ".join(sys.argv),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": vars(args), "fine_lattice": [L, L]}
    tr.train_step()  # warm-up (thermalisation of the coarse sampler, first log Z set)
    steps, prof = [], cProfile.Profile()
    for _ in range(args.steps):
        calls["n"] = 0
        prof.enable()
        t0 = time.perf_counter()
        tr.optimizer.zero_grad(set_to_none=True)
        loss, log_w = reverse_kl_loss(tr.model, tr.action_fn, args.batch, tr.rng)
        t1 = time.perf_counter()
        n_fwd = calls["n"]
        tr._apply_gradients(loss, float(loss.detach()), log_w)
        t2 = time.perf_counter()
        prof.disable()
        steps.append({"forward_s": t1 - t0, "backward_s": t2 - t1, "field_evaluations": n_fwd})
    stats = pstats.Stats(prof)
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
    out["steps"] = steps
    out["mean_step_s"] = sum(s["forward_s"] + s["backward_s"] for s in steps) / len(steps)
    out["top_own_time"] = [{"function": f"{k[0]}:{k[1]}({k[2]})", "calls": v[1], "own_s": v[2], "cumulative_s": v[3]}
                           for k, v in top]
    out["machine_at_end"] = machine()
    write_json(args.out, out)
    print(f"{args.family} {L}x{L} batch {args.batch}: {out['mean_step_s']:.2f} s/step "
          f"({steps[-1]['forward_s']:.2f} forward, {steps[-1]['backward_s']:.2f} backward, "
          f"{steps[-1]['field_evaluations']} CNF field evaluations); wrote {args.out}")


def cmd_uv(args: argparse.Namespace) -> None:
    import json

    from latticekit.app.flows.train import train_job

    torch.set_num_threads(args.threads)
    L = args.coarse * 2 ** args.levels
    cfg = {"lattice": {"shape": [L] * args.nd}, "action": {"kind": "phi4", "kappa": args.kappa, "lam": args.lam},
           "model": {"coupling": "superres_uv", "n_layers": args.levels, "log_z_samples": args.log_z_n,
                     "hmc_traj": args.hmc_traj, "n_basis": args.F, "n_time": args.D, "bond_basis": args.Fp,
                     "bond_time": args.Dp, "kernel_size": args.kernel, "retrain_steps": args.retrain,
                     "lr_factor": 0.2, "check_every": args.check_every, "patience": args.patience,
                     "min_delta": args.min_delta, "scan_width": args.scan_width, "init": args.init,
                     "noise_width": args.noise_width},
           "train": {"steps": args.steps, "batch_size": args.batch, "lr": args.lr, "warmup_steps": args.warmup,
                     "betas": [0.8, 0.9],
                     "schedule": "step", "step_size": 1, "gamma": 0.997, "seed": args.seed, "dtype": "float64",
                     "eval_batch_size": args.eval_n, "checkpoint_every": 10,
                     "recompute_layers": args.recompute}}
    if args.ode_train_tol is not None:
        cfg["model"].update(ode_train_rtol=args.ode_train_tol, ode_train_atol=args.ode_train_tol)
    out: dict[str, Any] = {"benchmark": "superres_uv", "paper": "Bauer, Kapust, Pawlowski, Temmen, App. A",
                           "command": "python " + " ".join(sys.argv),
                           "ess_definition": "Kish ESS/N of --eval-n fresh draws of the model at the given fine "
                                             "kappa (coarse fields from independent HMC chains)",
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": vars(args), "config": cfg}
    res = train_job(cfg, out=args.folder, progress=True)
    lines = [json.loads(x) for x in (Path(args.folder) / "metrics.jsonl").read_text().splitlines()]
    levels = []
    for e in res["levels"]:
        mine = [m for m in lines if m["level"] == e["level"]]
        levels.append({**e, "cpu_s": mine[-1]["cpu_s"] - (lines[lines.index(mine[0]) - 1]["cpu_s"]
                                                          if lines.index(mine[0]) else 0.0)})
    out["levels"] = levels
    out["total_cpu_s"] = lines[-1]["cpu_s"]
    out["machine_at_end"] = machine()
    write_json(args.out, out)
    for e in levels:
        print(f"L = {e['lattice']}: {e['steps']} steps, kappa learned {e['kappa_learned']:.5f} (ESS/N "
              f"{e['ess_at_learned']:.3f}), ESS-optimal {e['kappa']:.5f} (ESS/N {e['ess']:.3f}), {e['cpu_s']:.0f} CPU s")


def _memory_variant(folder: str, variant: str, threads: int, reps: int, grad_file: str) -> dict[str, Any]:
    """One training step's forward and backward pass (no optimiser update) of the run in ``folder`` at its
    checkpoint, in this (fresh) process, with the gradients of the ODE solves taken by ``variant``:
    ``direct`` (backpropagation through the dopri5 steps), ``recompute`` (train.recompute_layers: each layer's
    graph rebuilt in the backward pass) or ``adjoint`` (model.adjoint: torchdiffeq's adjoint ODE)."""
    import json
    import resource

    import numpy as np

    from latticekit.flows import conv_pieces
    from latticekit.flows.superres import LocalCNF
    from latticekit.flows.train import reverse_kl_loss

    def max_rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    torch.set_num_threads(threads)
    lk.backends.configure_malloc()   # as the train job does (latticekit.app.cli): no page faults per solve
    stored = json.loads((Path(folder) / "config.json").read_text())
    stored["train"]["recompute_layers"] = variant == "recompute"
    cfg = FlowConfig.from_stored(stored)
    model, action, _ = build_flow(cfg)
    tr = Trainer(model, action, cfg.train.train_config(None, Path(grad_file).with_suffix(".unused.pt")))
    step = tr.load(str(Path(folder) / "checkpoint.pt"))
    for m in model.modules():   # after loading: the checkpoint's architecture hash includes the repr's adjoint=
        if isinstance(m, LocalCNF):
            m.adjoint = variant == "adjoint"
    calls = count_field_evaluations()
    row: dict[str, Any] = {"variant": variant, "checkpoint_step": step, "max_rss_mb_before": max_rss_mb(),
                           "column_bytes": conv_pieces.COLUMN_BYTES,
                           "configure_malloc": lk.backends.configure_malloc(),
                           "steps": []}
    tr.model.train()
    for rep in range(reps):
        tr.optimizer.zero_grad(set_to_none=True)
        calls["n"] = 0
        t0, c0 = time.perf_counter(), time.process_time()
        loss, log_w = reverse_kl_loss(tr.model, tr.action_fn, tr.config.batch_size, tr.rng)
        t1, c1, n_fwd = time.perf_counter(), time.process_time(), calls["n"]
        loss.backward()
        t2, c2 = time.perf_counter(), time.process_time()
        row["steps"].append({"loss": float(loss.detach()), "forward_s": t1 - t0, "backward_s": t2 - t1,
                             "forward_cpu_s": c1 - c0, "backward_cpu_s": c2 - c1, "field_evaluations_forward": n_fwd,
                             "field_evaluations_backward": calls["n"] - n_fwd, "max_rss_mb": max_rss_mb()})
        if rep == 0:
            np.savez(grad_file, **{n: p.grad.detach().numpy() for n, p in tr.model.named_parameters()
                                   if p.grad is not None})
        print(variant, row["steps"][-1], flush=True)
    return row


def cmd_memory_one(args: argparse.Namespace) -> None:
    """One variant of ``memory`` in this process (its peak RSS is this process's); writes the row to ``--row``."""
    write_json(args.row, _memory_variant(args.folder, args.variant, args.threads, args.reps, args.grads))


def cmd_memory(args: argparse.Namespace) -> None:
    """Peak memory and time of a training step of a trained run, one fresh process per gradient variant; the
    gradients of the first step compared with those of ``direct`` (the same prior draws: the checkpoint's
    generator)."""
    import json
    import subprocess
    import tempfile

    import numpy as np

    out: dict[str, Any] = {"benchmark": "superres_memory", "command": "python " + " ".join(sys.argv),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": vars(args), "variants": []}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for variant in args.variants:
            files[variant], row_file = str(Path(tmp) / f"{variant}.npz"), Path(tmp) / f"{variant}.json"
            subprocess.run([sys.executable, __file__, "memory-one", "--folder", args.folder, "--variant", variant,
                            "--threads", str(args.threads), "--reps", str(args.reps), "--grads", files[variant],
                            "--row", str(row_file)], check=True)
            row = json.loads(row_file.read_text())
            out["variants"].append(row)
            if "direct" in files and variant != "direct":
                ref, new = np.load(files["direct"]), np.load(files[variant])
                num = sum(float(((new[k] - ref[k]) ** 2).sum()) for k in ref.files)
                den = sum(float((ref[k] ** 2).sum()) for k in ref.files)
                row["gradient_rel_diff_to_direct"] = (num / den) ** 0.5
            write_json(args.out, out)
    out["machine_at_end"] = machine()
    write_json(args.out, out)
    for row in out["variants"]:
        s = row["steps"][-1]
        print(f"{row['variant']:>9}: max RSS {s['max_rss_mb']:.0f} MB (before the steps "
              f"{row['max_rss_mb_before']:.0f}), forward {s['forward_s']:.1f} s, backward {s['backward_s']:.1f} s, "
              f"field evaluations {s['field_evaluations_forward']} + {s['field_evaluations_backward']}, "
              "gradient vs direct "
              f"{row.get('gradient_rel_diff_to_direct', 0.0):.2e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ir = sub.add_parser("ir", help="IR-matching (Sec. VI)")
    ir.add_argument("--out", required=True)
    ir.add_argument("--seed", type=int, default=0)
    ir.add_argument("--threads", type=int, default=1)
    ir.add_argument("--coarse", type=int, default=4, help="coarse linear size (the paper: 4)")
    ir.add_argument("--levels", type=int, default=1, help="doublings: fine size = coarse * 2^levels")
    ir.add_argument("--kappa", type=float, default=0.25, help="fine kappa (the paper's Fig. 5: 0.25)")
    ir.add_argument("--lam", type=float, default=0.01, help="lambda on both lattices (the paper: 0.01)")
    ir.add_argument("--steps", type=int, default=300)
    ir.add_argument("--batch", type=int, default=64)
    ir.add_argument("--lr", type=float, default=0.01)
    ir.add_argument("--tau", type=float, default=0.01, help="Langevin step (App. C)")
    ir.add_argument("--n-therm", type=int, default=50000)
    ir.add_argument("--n-langevin", type=int, default=500, help="re-thermalisation steps per training step")
    ir.add_argument("--log-z-n", type=int, default=1024, help="samples for the log Z gradient")
    ir.add_argument("--hmc-traj", type=int, default=30)
    ir.add_argument("--r-w", type=float, default=0.85)
    ir.add_argument("--F", type=int, default=11)
    ir.add_argument("--D", type=int, default=10)
    ir.add_argument("--Fp", type=int, default=20)
    ir.add_argument("--Dp", type=int, default=20)
    ir.add_argument("--kernel", type=int, default=2,
                    help="CNF window per axis (2: the block, as the results before 2026-12-05 12:00 were run; the "
                         "superres family's default is now 5)")
    ir.add_argument("--eval-n", type=int, default=4096)
    ir.add_argument("--log-every", type=int, default=10)
    ir.add_argument("--eval-every", type=int, default=0,
                    help="also evaluate --eval-n fresh proposals every this many steps (a multiple of --log-every; "
                         "0: only before and after training)")
    ir.add_argument("--ode-train-tol", type=float, default=None,
                    help="rtol = atol of the CNF solves in training steps (default: the eval tolerance, 1e-8)")
    pr = sub.add_parser("profile", help="time the phases of a training step")
    uv = sub.add_parser("uv", help="UV-matching ladder (App. A)")
    for p in (ir, pr, uv):
        p.add_argument("--init", choices=("normal", "gerdes"), default="normal", help=INIT_HELP)
        p.add_argument("--noise-width", choices=("pooled", "configurations"), default="pooled", help=WIDTH_HELP)
    pr.add_argument("--family", choices=("superres", "superres_uv"), default="superres")
    pr.add_argument("--out", required=True)
    pr.add_argument("--offset-loop", action="store_true", help="time the roll loop instead of the convolution")
    for name, kind, default in (("seed", int, 0), ("threads", int, 2), ("coarse", int, 4), ("levels", int, 1),
                                ("kappa", float, 0.25), ("lam", float, 0.01), ("steps", int, 3), ("batch", int, 64),
                                ("n-therm", int, 50000), ("n-langevin", int, 500), ("log-z-n", int, 1024),
                                ("hmc-traj", int, 30), ("F", int, 11), ("D", int, 10), ("Fp", int, 20),
                                ("Dp", int, 20), ("kernel", int, 2)):
        pr.add_argument(f"--{name}", type=kind, default=default)
    uv.add_argument("--out", required=True)
    uv.add_argument("--folder", required=True, help="the train job's folder (resumes there)")
    for name, kind, default in (("seed", int, 0), ("threads", int, 2), ("nd", int, 2), ("coarse", int, 4),
                                ("levels", int, 2), ("kappa", float, 0.25), ("lam", float, 0.01), ("steps", int, 100),
                                ("retrain", int, 50), ("check-every", int, 10), ("patience", int, 2),
                                ("min-delta", float, 0.005), ("scan-width", float, 0.05), ("batch", int, 32),
                                ("eval-n", int, 256), ("log-z-n", int, 512), ("hmc-traj", int, 20), ("F", int, 11),
                                ("D", int, 10), ("Fp", int, 20), ("Dp", int, 20), ("kernel", int, 3),
                                ("lr", float, 0.01), ("warmup", int, 0)):
        uv.add_argument(f"--{name}", type=kind, default=default)
    uv.add_argument("--ode-train-tol", type=float, default=None,
                    help="rtol = atol of the CNF solves in training steps (default: the eval tolerance, 1e-8)")
    uv.add_argument("--recompute", action="store_true",
                    help="[train] recompute_layers: recompute the CNF field evaluations in the backward pass")
    fe = sub.add_parser("field", help="time one CNF field evaluation with and without the batch pieces")
    fe.add_argument("--out", required=True)
    fe.add_argument("--column-mb", type=float, nargs="+", default=None,
                    help="time pieces of these column-buffer bounds (MB) beside the one call")
    for name, kind, default in (("L", int, 16), ("kernel", int, 5), ("batch", int, 1024), ("reps", int, 6),
                                ("threads", int, 1)):
        fe.add_argument(f"--{name}", type=kind, default=default)
    me = sub.add_parser("memory", help="peak memory of a training step: backprop, recompute or adjoint ODE gradients")
    me.add_argument("--folder", required=True, help="a trained superres run (config.json, checkpoint.pt)")
    me.add_argument("--out", required=True)
    me.add_argument("--variants", nargs="+", choices=("direct", "recompute", "adjoint"),
                    default=["direct", "recompute", "adjoint"])
    me.add_argument("--reps", type=int, default=2)
    me.add_argument("--threads", type=int, default=1)
    mo = sub.add_parser("memory-one", help="one variant of memory (run by memory in a fresh process)")
    for name, kind in (("folder", str), ("variant", str), ("threads", int), ("reps", int), ("grads", str),
                       ("row", str)):
        mo.add_argument(f"--{name}", type=kind, required=True)
    args = p.parse_args()
    commands = {"memory-one": cmd_memory_one, "ir": cmd_ir, "profile": cmd_profile, "uv": cmd_uv, "field": cmd_field,
                "memory": cmd_memory}
    commands[args.cmd](args)


if __name__ == "__main__":
    main()
