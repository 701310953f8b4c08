"""Quality benchmark of the flow layer: ESS and flow-MCMC acceptance against CPU training time.

Run by hand (not part of the test suite)::

    python benchmarks/bench_flows.py --out benchmarks/results/flows_$(hostname).json
    python benchmarks/bench_flows.py --cases phi4_L8,u1_L8 --budget-min 10 --threads 1 --out /tmp/f.json

Cases (see benchmarks/README.md, section "Flow quality"):

* ``phi4_L8``  phi^4 in 2D, L = 8, hopping form kappa = 0.25, lambda = 0.5; affine checkerboard couplings.
  Flow-MCMC observables (|M|, chi = V <M^2>) are compared with a short latticekit HMC run.
* ``u1_L8``    2D U(1), L = 8, beta = 2; gauge-equivariant plaquette couplings with circular splines.
  Flow-MCMC plaquette and chi_t are compared with the exact values (latticekit.exact).
* ``u1_L16``   2D U(1), L = 16, beta = 4 (same model family).
* ``su3_L8``   2D SU(3), L = 8, beta = 4 (spectral couplings of ``latticekit.flows.sun_couplings``).

Every case trains with a wall-clock budget; every ``--eval-every-s`` seconds the ESS of 2048 fresh
samples is measured in float64 (training runs in ``--train-dtype``, float32 by default, which is
~3x faster on this CPU). At the end an independence-Metropolis chain of ``--mcmc`` proposals is run
in float64 and its observables are analysed with the Gamma method. The JSON (command, CPU, torch
threads, wall times, curves, results) is rewritten atomically after every case.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import socket
import sys
import time
from typing import Any

import numpy as np
import torch

import latticekit as lk
from latticekit import observables as obs
from latticekit.actions import Phi4Action, WilsonGaugeAction
from latticekit.analysis import ess as ess_fn
from latticekit.analysis import gamma_method
from latticekit.utils import atomic_path, atomic_write
from latticekit.flows import (
    GaussianPrior,
    HaarPrior,
    Model,
    TrainConfig,
    Trainer,
    draw_weighted,
    independence_metropolis,
    scalar_coupling_flow,
    u1_gauge_flow,
)


def cpu_info() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"model": model, "logical_cpus": os.cpu_count(), "machine": platform.machine(),
            "load_avg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def write_json(path: str, data: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def gamma(values: np.ndarray) -> dict[str, float]:
    r = gamma_method(np.asarray(values, dtype=np.float64))
    return {"value": float(r.value), "error": float(r.error), "tau_int": float(r.tau_int)}


# -- cases ----------------------------------------------------------------------------------------
def case_phi4(L: int) -> dict[str, Any]:
    lat = lk.Lattice((L, L))
    kappa, lam = 0.25, 0.5
    model = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 12, "affine", hidden=(16, 16)))
    V = lat.volume
    observables = {
        "abs_magnetization": lambda x: obs.magnetization(x, lat).abs(),
        "chi": lambda x: V * obs.magnetization(x, lat) ** 2,
    }
    return {"name": f"phi4_L{L}", "lattice": lat, "action": Phi4Action(lat, kappa, lam), "model": model,
            "params": {"kappa": kappa, "lam": lam, "form": "hopping"}, "observables": observables,
            "model_desc": "Gaussian prior + 12 affine checkerboard couplings, CNN hidden (16, 16), kernel 3",
            "batch_size": 128, "lr": 1e-3}


def case_u1(L: int, beta: float, layers: int = 16, hidden: tuple[int, ...] = (8, 8)) -> dict[str, Any]:
    lat = lk.Lattice((L, L))
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, layers, bins=8, hidden=hidden))
    V = lat.volume
    observables = {
        "plaquette": lambda U: obs.average_plaquette(U, lk.U1, lat),
        "chi_t": lambda U: obs.topological_charge_u1_2d(U, lat) ** 2 / V,
        "topological_charge": lambda U: obs.topological_charge_u1_2d(U, lat),
    }
    return {"name": f"u1_L{L}", "lattice": lat, "action": WilsonGaugeAction(lk.U1, lat, beta), "model": model,
            "params": {"beta": beta}, "observables": observables,
            "model_desc": f"Haar prior + {layers} U(1) plaquette couplings (circular RQ splines, 8 bins, "
                          f"plaquette + 2x1 rectangle context, offsets 3..0), CNN hidden {hidden}",
            "batch_size": 64, "lr": 2e-3}


def case_sun(N: int, L: int, beta: float) -> dict[str, Any]:
    from latticekit.flows import sun_gauge_flow

    lat, G = lk.Lattice((L, L)), lk.SU(N)
    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 16, bins=8, hidden=(8, 8)))
    return {"name": f"su{N}_L{L}", "lattice": lat, "action": WilsonGaugeAction(G, lat, beta), "model": model,
            "params": {"beta": beta, "N": N}, "observables": {"plaquette": lambda U: obs.average_plaquette(U, G, lat)},
            "model_desc": f"Haar prior + 16 SU({N}) spectral plaquette couplings (canonical-cell splines, 8 bins, "
                          "plaquette + 2x1 loop context, offsets 3..0), CNN hidden (8, 8)",
            "batch_size": 64, "lr": 2e-3}


def reference_sun(case: dict[str, Any]) -> dict[str, Any]:
    from latticekit import exact

    p = case["params"]
    return {"method": "exact (latticekit.exact)",
            "plaquette": float(exact.sun_2d_plaquette(p["beta"], p["N"], case["lattice"].shape))}


def reference_phi4(case: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """A short latticekit HMC run (numpy) for |M| and chi = V <M^2>."""
    from latticekit.mc import HMC

    lat, S = case["lattice"], case["action"]
    chains = 16
    hmc = HMC(S, rng=lk.backends.rng(77), step_size=0.1, n_steps=10, integrator="omelyan")
    x = lk.backends.rng(78).normal((chains,) + lat.shape, std=0.1)
    t0 = time.time()
    for _ in range(200):
        x, _info = hmc.step(x)
    absm, chi, acc = [], [], []
    while time.time() - t0 < budget_s or len(absm) < 100:
        x, info = hmc.step(x)
        M = np.asarray(obs.magnetization(x, lat))
        absm.append(np.abs(M))
        chi.append(lat.volume * M ** 2)
        acc.append(np.mean(np.asarray(info.accepted, dtype=float)))
    absm_a, chi_a = np.array(absm).T, np.array(chi).T     # (chains, n)
    ra = gamma_method([a for a in absm_a])
    rc = gamma_method([c for c in chi_a])
    return {"method": "latticekit HMC (numpy, omelyan, eps=0.1, 10 steps)", "chains": chains,
            "trajectories_per_chain": len(absm), "thermalization": 200, "acceptance": float(np.mean(acc)),
            "abs_magnetization": {"value": float(ra.value), "error": float(ra.error), "tau_int": float(ra.tau_int)},
            "chi": {"value": float(rc.value), "error": float(rc.error), "tau_int": float(rc.tau_int)},
            "wall_s": round(time.time() - t0, 1)}


def reference_u1(case: dict[str, Any]) -> dict[str, Any]:
    from latticekit import exact

    beta, shape = case["params"]["beta"], case["lattice"].shape
    return {"method": "exact (latticekit.exact)", "plaquette": float(exact.u1_2d_plaquette(beta, shape)),
            "chi_t": float(exact.u1_2d_topological_susceptibility(beta, shape)), "topological_charge": 0.0}


@torch.no_grad()
def eval_ess(model64: Model, action: Any, n: int, seed: int, device: str = "cpu") -> dict[str, float]:
    _x, lw = draw_weighted(model64, action, n, lk.backends.rng(seed, backend="torch", device=device),
                           batch_size=1024)
    lw = lw.cpu().numpy()
    return {"ess": float(ess_fn(lw)), "var_log_w": float(np.var(lw)), "mean_log_w": float(np.mean(lw))}


def run_case(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    if args.batch:
        case["batch_size"] = args.batch
    if args.lr:
        case["lr"] = args.lr
    cfg = TrainConfig(steps=10**9, batch_size=case["batch_size"], lr=case["lr"], dtype=args.train_dtype, seed=1 + args.seed,
                      device=args.device, gradient=args.gradient, compile=args.compile)
    tr = Trainer(case["model"], case["action"], cfg)
    budget = args.budget_min * 60.0
    # learning-rate factor: constant, or a cosine over the budget clock (the step count that fits into
    # the budget is not known in advance, so the schedule follows the clock, down to 1% of lr)
    lr_factor = [1.0]
    tr.scheduler = torch.optim.lr_scheduler.LambdaLR(tr.optimizer, lambda _s: lr_factor[0])
    max_wall = args.max_wall_min * 60.0 if args.max_wall_min else math.inf
    curve = []
    t0 = time.time()
    t_train = 0.0       # wall seconds spent in training steps
    c_train = 0.0       # CPU seconds (process time) spent in training steps
    next_eval = 0.0
    print(f"[{case['name']}] training for {args.budget_min} {args.budget_kind} min", flush=True)
    while True:
        clock = c_train if args.budget_kind == "cpu" else t_train
        out_of_time = clock >= budget or time.time() - t0 >= max_wall
        if clock >= next_eval or out_of_time:
            m64 = copy.deepcopy(tr.model).to(torch.float64)
            e = eval_ess(m64, case["action"], 2048, 10_000 + tr.step, args.device)
            e.update(step=tr.step, train_s=round(t_train, 1), train_cpu_s=round(c_train, 1), loss_recent=float(np.mean([h["loss"] for h in
                                                                                        tr.history[-50:]]))
                     if tr.history else None)
            curve.append(e)
            print(f"[{case['name']}] wall={t_train:7.1f}s cpu={c_train:7.1f}s step={tr.step:6d} ESS={e['ess']:.4f} "
                  f"var_log_w={e['var_log_w']:.3f}", flush=True)
            next_eval += args.eval_every_s
            if out_of_time:
                break
        if args.schedule == "cosine":
            lr_factor[0] = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(clock / budget, 1.0)))
        ts, cs = time.time(), time.process_time()
        tr.train_step()
        t_train += time.time() - ts
        c_train += time.process_time() - cs
    if args.save_model:
        # the trained weights, for longer flow-MCMC chains later (atomic: temporary file + os.replace)
        path = os.path.join(args.save_model, f"{case['name']}_seed{args.seed}.pt")
        os.makedirs(args.save_model, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"state_dict": tr.model.state_dict(), "model": case["model_desc"], "steps": tr.step}, tmp)
    # flow MCMC in float64
    m64 = copy.deepcopy(tr.model).to(torch.float64)
    ts = time.time()
    res = independence_metropolis(m64, case["action"], args.mcmc,
                                  lk.backends.rng(4242 + args.seed, backend="torch", device=args.device),
                                  observables=case["observables"], batch_size=1024)
    mcmc_s = time.time() - ts
    flow_obs = {k: {"value": float(v.value), "error": float(v.error), "tau_int": float(v.tau_int)}
                for k, v in res.analysis.items()}
    target = 0.5
    reached = next((c for c in curve if c["ess"] >= target), None)
    key = "train_cpu_s" if args.budget_kind == "cpu" else "train_s"
    return {
        "case": case["name"], "lattice": list(case["lattice"].shape), "params": case["params"],
        "model": case["model_desc"], "n_parameters": sum(p.numel() for p in tr.model.parameters()),
        "train": {"seed": args.seed, "batch_size": case["batch_size"], "lr": case["lr"], "optimizer": "adam (fused)" if cfg.fused else "adam",
                  "schedule": "constant" if args.schedule == "constant" else "cosine over the budget clock to 1%",
                  "device": args.device, "gradient": args.gradient, "compile_splines": args.compile,
                  "dtype": args.train_dtype, "steps": tr.step, "train_s": round(t_train, 1),
                  "train_cpu_s": round(c_train, 1), "s_per_step": round(t_train / max(tr.step, 1), 4),
                  "cpu_s_per_step": round(c_train / max(tr.step, 1), 4)},
        "curve": curve,
        "final_ess": curve[-1]["ess"],
        "goal": {"ess": target, "within_cpu_s": 1800, "reached_at": None if reached is None else
                 {"train_s": reached["train_s"], "train_cpu_s": reached["train_cpu_s"], "step": reached["step"],
                  "ess": reached["ess"]}, "budget": {"kind": args.budget_kind, "minutes": args.budget_min,
                                                     "clock_at_end_s": curve[-1][key]}},
        "flow_mcmc": {"proposals": args.mcmc, "acceptance": float(res.acceptance.rate),
                      "proposal_ess": float(res.proposal_ess), "observables": flow_obs, "wall_s": round(mcmc_s, 1)},
        "wall_s": round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=f"benchmarks/results/flows_{socket.gethostname()}.json")
    p.add_argument("--cases", default="phi4_L8,u1_L8,u1_L16,su3_L8")
    p.add_argument("--budget-min", type=float, default=10.0, help="training budget per case (minutes)")
    p.add_argument("--budget-kind", default="wall", choices=["wall", "cpu"],
                   help="budget and evaluation clock: wall time or process CPU time of the training steps")
    p.add_argument("--max-wall-min", type=float, default=0.0, help="also stop a case after this wall time (0: no cap)")
    p.add_argument("--eval-every-s", type=float, default=60.0, help="evaluation interval on the budget clock")
    p.add_argument("--mcmc", type=int, default=8192, help="flow-MCMC proposals per case")
    p.add_argument("--hmc-s", type=float, default=60.0, help="wall-clock seconds of the phi^4 HMC reference")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--train-dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                   help="learning rate: constant, or cosine decay over the budget clock")
    p.add_argument("--gradient", default="reparam", choices=["reparam", "path"],
                   help="reverse-KL gradient estimator (TrainConfig.gradient)")
    p.add_argument("--device", default="cpu", help="torch device of training, evaluation and flow MCMC (cpu, cuda)")
    p.add_argument("--compile", action="store_true",
                   help="evaluate the coupling splines with torch.compile (TrainConfig.compile)")
    p.add_argument("--batch", type=int, default=0, help="override the batch size of every case (0: case default)")
    p.add_argument("--lr", type=float, default=0.0, help="override the learning rate of every case (0: case default)")
    p.add_argument("--save-model", default="", help="folder to save the trained weights in (CASE_seedS.pt); "
                   "empty: not saved")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights (torch), of the training data (1 + seed) and of the flow-MCMC "
                        "chain (4242 + seed); 0 reproduces the earlier runs")
    p.add_argument("--u1-layers", type=int, default=16, help="coupling layers of the U(1) cases")
    p.add_argument("--u1-hidden", default="8,8", help="hidden channels of the U(1) context nets")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch sees no CUDA device (torch {torch.__version__})")
    torch.set_num_threads(args.threads)
    u1_hidden = tuple(int(h) for h in args.u1_hidden.split(",") if h.strip())
    out: dict[str, Any] = {
        "benchmark": "flows", "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "host": socket.gethostname(), "cpu": cpu_info(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cases": [],
    }
    t_all = time.time()
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        torch.manual_seed(args.seed)  # the initial weights (drawn when the case builds its model)
        if name == "phi4_L8":
            case = case_phi4(8)
            r = run_case(case, args)
            r["reference"] = reference_phi4(case, args.hmc_s)
        elif name == "u1_L8":
            case = case_u1(8, 2.0, args.u1_layers, u1_hidden)
            r = run_case(case, args)
            r["reference"] = reference_u1(case)
        elif name == "u1_L16":
            case = case_u1(16, 4.0, args.u1_layers, u1_hidden)
            r = run_case(case, args)
            r["reference"] = reference_u1(case)
        elif name == "su3_L8":
            case = case_sun(3, 8, 4.0)
            r = run_case(case, args)
            r["reference"] = reference_sun(case)
        else:
            raise SystemExit(f"unknown case {name!r}")
        ref = r.get("reference")
        if ref and "flow_mcmc" in r:
            for k, v in r["flow_mcmc"]["observables"].items():
                rv = ref.get(k)
                if isinstance(rv, dict):
                    err = math.hypot(v["error"], rv["error"])
                    v["reference"], v["deviation_sigma"] = rv["value"], (v["value"] - rv["value"]) / err
                elif isinstance(rv, float):
                    v["reference"] = rv
                    v["deviation_sigma"] = (v["value"] - rv) / v["error"] if v["error"] > 0 else None
        out["cases"].append(r)
        out["wall_s"] = round(time.time() - t_all, 1)
        write_json(args.out, out)
        print(json.dumps({k: r.get(k) for k in ("case", "final_ess", "goal", "skipped")}), flush=True)
    out["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
