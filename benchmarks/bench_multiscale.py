#!/usr/bin/env python
"""Multiscale flows (Abbott et al., arXiv:2404.10819): reproduction of Figs. 2 and 4, and flows against HMC.

Run by hand (not part of the test suite); every sub-command writes its JSON atomically after each case, with
the command line, the machine (CPU model, cores, load average at start and end), torch threads and versions.

    # Fig. 2: 2D, Haar 2x2 coarse prior -> 8x8; ESS against beta for (a) multiscale prior + small fine flow
    # and (b) the same fine flow on a Haar prior, equal CPU-time training budget per model; flow-MCMC
    # plaquette, chi_t and P(Q) (U(1)) against latticekit.exact; KL with the exact log Z
    python benchmarks/bench_multiscale.py fig2 --group U1 --betas 2,4,6,8,12,16 --budget-min 10 \
        --out benchmarks/results/multiscale_fig2_u1.json
    python benchmarks/bench_multiscale.py fig2 --group SU3 --betas 4,8,12,16 --budget-min 15 \
        --out benchmarks/results/multiscale_fig2_su3.json

    # Fig. 4: 4D, Haar 2^4 coarse prior -> 4^4; KL against beta, log Z estimated from the best model at each
    # beta (Sec. 4.1), the same constant for both models
    python benchmarks/bench_multiscale.py fig4 --group U1 --betas 0.5,1.0,1.5,2.0 --budget-min 15 \
        --out benchmarks/results/multiscale_fig4_u1.json
    python benchmarks/bench_multiscale.py fig4 --group SU3 --betas 2,4,6,8 --budget-min 20 \
        --out benchmarks/results/multiscale_fig4_su3.json

    # Issue 15, item 9: 2D U(1), L = 16: HMC cost per independent Q sample (bench_hmc.py tau, run here, same
    # machine) against flow MCMC (multiscale prior + fine flow, trained at 8x8, grown to 16x16, trained on)
    python benchmarks/bench_multiscale.py hmc --betas 6,8 --budget-small-min 20 --budget-large-min 40 \
        --mcmc 20000 --out benchmarks/results/multiscale_vs_hmc.json
    # the same comparison with the 2D U(1) plaquette-variable prior alone (nothing trained), HMC rerun beside it
    python benchmarks/bench_multiscale.py hmc --model plaquette_prior --fine-layers 0 --betas 6,8 --mcmc 100000 \
        --hmc-meas 20000 --out benchmarks/results/plaquette_prior_vs_hmc.json

    # smoke run (a minute): every sub-command with tiny settings
    python benchmarks/bench_multiscale.py fig2 --group U1 --betas 2 --budget-min 0.05 --mcmc 256 --eval-n 256 \
        --fine-layers 2 --out /tmp/ms_smoke.json

ESS is the Kish ESS per sample of ``--eval-n`` fresh draws (docs/flows.md "ESS"); the proposal ESS of the
flow-MCMC chain is reported with its N too. KL = log Z - mean log w (eq. 3), log Z exact in 2D
(latticekit.exact), estimated as log mean w otherwise (latticekit.flows.multiscale.flow_diagnostics).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latticekit as lk
from latticekit import exact
from latticekit import observables as obs
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import (
    Flow,
    HaarPrior,
    Model,
    TrainConfig,
    Trainer,
    independence_metropolis,
    sun_gauge_flow,
    u1_gauge_flow,
)
from latticekit.flows.multiscale import ConditionalSpec, MultiscalePrior, flow_diagnostics
from latticekit.groups import group_from_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gamma, machine, write_json  # noqa: E402


# -- models -----------------------------------------------------------------------------------------------
def fine_flow(G: Any, lat: lk.Lattice, n_layers: int, hidden: tuple[int, ...]) -> Any:
    if n_layers == 0:
        return Flow([])
    masks = "stripes" if lat.nd == 2 and all(L % 4 == 0 for L in lat.shape) else "checkerboard"
    if G is lk.U1:
        return u1_gauge_flow(lat, n_layers, masks=masks, hidden=hidden, zero_init=True)
    return sun_gauge_flow(G, lat, n_layers, masks=masks, hidden=hidden, zero_init=True)


def build(kind: str, G: Any, lat: lk.Lattice, beta: float, args: argparse.Namespace) -> Model:
    flow = fine_flow(G, lat, args.fine_layers, tuple(args.hidden))
    if kind == "flow":
        return Model(HaarPrior(G, lat), flow)
    spec = ConditionalSpec(prior="auto", beta=beta, n_layers=args.cond_layers, hidden=tuple(args.cond_hidden),
                           layer="auto")
    coarse = tuple(min(args.coarse, L) for L in lat.shape)
    return Model(MultiscalePrior(G, lat, coarse, spec=spec), flow)


# -- training and evaluation ----------------------------------------------------------------------------
def train(model: Model, action: Any, budget_s: float, args: argparse.Namespace, seed: int,
          trainer: Trainer | None = None) -> tuple[Trainer, dict[str, Any]]:
    """Train for ``budget_s`` CPU seconds of training steps (process time), cosine lr over that clock."""
    if trainer is None:
        cfg = TrainConfig(steps=10**9, batch_size=args.batch, lr=args.lr, dtype=args.train_dtype, seed=seed,
                          progress=False)
        trainer = Trainer(model, action, cfg)
    factor = [1.0]
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _s: factor[0])
    cpu, wall, steps0 = 0.0, 0.0, trainer.step
    while cpu < budget_s:
        factor[0] = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(cpu / budget_s, 1.0)))
        c, w = time.process_time(), time.time()
        trainer.train_step()
        cpu += time.process_time() - c
        wall += time.time() - w
    hist = trainer.history[steps0:]
    return trainer, {"steps": trainer.step - steps0, "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
                     "cpu_s_per_step": round(cpu / max(1, trainer.step - steps0), 4),
                     "loss_last50": float(np.mean([h["loss"] for h in hist[-50:]])) if hist else None}


def u1_2d_observables(lat: lk.Lattice) -> dict[str, Any]:
    V = lat.volume
    return {"plaquette": lambda U: obs.average_plaquette(U, lk.U1, lat),
            "Q": lambda U: obs.topological_charge_u1_2d(U, lat),
            "chi_t": lambda U: obs.topological_charge_u1_2d(U, lat) ** 2 / V}


@torch.no_grad()
def evaluate(model: Model, action: Any, G: Any, lat: lk.Lattice, beta: float, args: argparse.Namespace, seed: int,
             log_z: float | None) -> dict[str, Any]:
    m64 = copy.deepcopy(model).to(torch.float64)
    out: dict[str, Any] = {"diagnostics": flow_diagnostics(m64, action, args.eval_n,
                                                           lk.backends.rng(seed, backend="torch"), log_z=log_z)}
    out["diagnostics"]["log_z_source"] = "exact (latticekit.exact)" if log_z is not None else "estimate (log mean w)"
    if args.mcmc and lat.nd == 2:
        obsf = u1_2d_observables(lat) if G is lk.U1 else {"plaquette": lambda U: obs.average_plaquette(U, G, lat)}
        t = time.time()
        res = independence_metropolis(m64, action, args.mcmc, lk.backends.rng(seed + 1, backend="torch"),
                                      observables=obsf, batch_size=1024)
        mc: dict[str, Any] = {"proposals": args.mcmc, "acceptance": float(res.acceptance.rate),
                              "proposal_ess": float(res.proposal_ess), "wall_s": round(time.time() - t, 1)}
        ref = {"plaquette": exact.u1_2d_plaquette(beta, lat.shape) if G is lk.U1 else
               exact.sun_2d_plaquette(beta, G.N, lat.shape)}
        if G is lk.U1:
            ref["chi_t"] = exact.u1_2d_topological_susceptibility(beta, lat.shape)
        for name, val in ref.items():
            g = gamma(res.observables[name])
            g.update(exact=float(val), deviation_sigma=(g["value"] - val) / g["error"] if g["error"] > 0 else None)
            mc[name] = g
        if G is lk.U1:
            Q = np.rint(res.observables["Q"]).astype(int)
            qv, pq = exact.u1_2d_charge_distribution(beta, lat.shape, q_max=3)
            mc["P(Q)"] = []
            for q, p in zip(qv, pq):
                g = gamma((Q == q).astype(float))
                mc["P(Q)"].append({"Q": int(q), **g, "exact": float(p),
                                   "deviation_sigma": (g["value"] - p) / g["error"] if g["error"] > 0 else None})
        out["flow_mcmc"] = mc
    return out


def exact_log_z(G: Any, lat: lk.Lattice, beta: float) -> float | None:
    if lat.nd != 2:
        return None
    return float(exact.u1_2d_log_z(beta, lat.shape) if G is lk.U1 else exact.sun_2d_log_z(beta, G.N, lat.shape))


# -- Fig. 2 and Fig. 4 ------------------------------------------------------------------------------------
def run_figure(args: argparse.Namespace, out: dict[str, Any]) -> None:
    G = lk.U1 if args.group == "U1" else group_from_name(args.group)
    lat = lk.Lattice((8, 8) if args.cmd == "fig2" else (4, 4, 4, 4))
    done = {row["beta"] for row in out["results"]}
    for beta in args.betas:
        if beta in done:
            print(f"[{args.cmd} {args.group} beta={beta}] kept from {args.out} (--resume)", flush=True)
            continue
        action = WilsonGaugeAction(G, lat, beta)
        row: dict[str, Any] = {"beta": beta, "lattice": list(lat.shape), "models": {}}
        log_z = exact_log_z(G, lat, beta)
        for kind in ("multiscale", "flow"):
            torch.manual_seed(args.seed)
            model = build(kind, G, lat, beta, args)
            tr, info = train(model, action, 60 * args.budget_min, args, seed=1 + args.seed)
            info["n_parameters"] = int(sum(p.numel() for p in model.parameters()))
            info["evaluation"] = evaluate(tr.model, action, G, lat, beta, args, 10_000 + args.seed, log_z)
            row["models"][kind] = info
            print(f"[{args.cmd} {args.group} beta={beta}] {kind}: {info['steps']} steps, "
                  f"ESS={info['evaluation']['diagnostics']['ess']:.4f} (N={args.eval_n}), "
                  f"KL={info['evaluation']['diagnostics']['kl']:.3f}", flush=True)
        if log_z is None:
            # Sec. 4.1: log Z "from the best model", the same constant for both models. log mean w is a lower
            # bound of log Z in expectation (Jensen), so the larger of the estimates is the tighter one; the
            # highest-ESS rule used before (multiscale_fig4_u1.json) picks at random when both ESS are ~1/N
            best = max(row["models"], key=lambda k: row["models"][k]["evaluation"]["diagnostics"]["log_z_estimate"])
            lz = row["models"][best]["evaluation"]["diagnostics"]["log_z_estimate"]
            for info in row["models"].values():
                d = info["evaluation"]["diagnostics"]
                d["kl_common_log_z"] = lz + d["loss"]
            row["log_z"] = {"value": lz, "from": best, "rule": "largest log mean w"}
        else:
            row["log_z"] = {"value": log_z, "from": "exact"}
        out["results"].append(row)
        out["results"].sort(key=lambda r: r["beta"])
        out["machine_at_end"] = machine()
        write_json(args.out, out)


def resume_from(path: str, out: dict[str, Any]) -> None:
    """Keep the finished betas of an earlier run written with the same settings (the betas, the output name
    and the resume flag aside); refuse a file written with other settings rather than mix them in one figure."""
    import json

    if not os.path.exists(path):
        return
    with open(path) as fh:
        old = json.load(fh)
    ignore = {"betas", "out", "resume"}
    mine = {k: v for k, v in out["settings"].items() if k not in ignore}
    theirs = {k: v for k, v in old.get("settings", {}).items() if k not in ignore}
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise SystemExit(f"--resume: {path} was written with other settings ({', '.join(diff)}); "
                         "choose another --out")
    out["results"] = [r for r in old["results"] if r["beta"] in out["settings"]["betas"]]
    out["commands"] = old.get("commands", [old["command"]]) + [out["command"]]
    out["runs"] = old.get("runs", [{"started": old["started"], "machine_at_start": old["machine_at_start"],
                                    "machine_at_end": old.get("machine_at_end")}])
    out["runs"].append({"started": out["started"], "machine_at_start": out["machine_at_start"]})


# -- item 9: flows against HMC ---------------------------------------------------------------------------------
def grow(small: Model, large: Model) -> int:
    """Copy the parameters of a model trained on a smaller lattice into the same architecture on a larger one:
    same names and shapes (CNN weights, staple-conditional models of the shared coarse scales); the new finest
    doubling layers start from the trained ones of the same direction two layers before. Returns the count."""
    src = small.state_dict()
    dst = large.state_dict()
    n = 0
    for k, v in dst.items():
        cand = k
        if cand not in src and ".model.layers." in k:
            head, rest = k.split(".model.layers.", 1)
            i, tail = rest.split(".", 1)
            n_small = 1 + max(int(s.split(".model.layers.", 1)[1].split(".", 1)[0]) for s in src
                              if ".model.layers." in s)
            j = int(i)
            while j >= n_small:
                j -= 2
            cand = f"{head}.model.layers.{j}.{tail}"
        if cand in src and src[cand].shape == v.shape:
            dst[k] = src[cand].clone()
            n += 1
    large.load_state_dict(dst)
    return n


def hmc_flow_model(args: argparse.Namespace, beta: float, large: lk.Lattice, act: Any
                   ) -> tuple[Model, dict[str, Any], float]:
    """The flow of the HMC comparison and its training record: ``(model, info, training wall seconds)``.

    ``multiscale``: multiscale prior + fine flow, trained at L/2, grown to L (:func:`grow`), trained on.
    ``plaquette_prior``: the 2D U(1) plaquette-variable prior at ``kappa = beta``
    (:mod:`latticekit.flows.u1_plaquette_prior`), plus ``--fine-layers`` stripe couplings trained for
    ``--budget-large-min`` when that is > 0; with ``--fine-layers 0`` nothing is trained (0 s).
    """
    G = lk.U1
    if args.model == "plaquette_prior":
        from latticekit.flows.u1_plaquette_prior import U1PlaquettePrior

        torch.manual_seed(args.seed)
        prior = U1PlaquettePrior(large, beta)
        model = Model(prior, fine_flow(G, large, args.fine_layers, tuple(args.hidden)))
        info: dict[str, Any] = {"exact_ess_of_prior": prior.exact_ess(), "fine_layers": args.fine_layers}
        train_s = 0.0
        if args.fine_layers:
            _, info["train"] = train(model, act, 60 * args.budget_large_min, args, 2 + args.seed)
            train_s = info["train"]["train_wall_s"]
        return model, info, train_s
    small = lk.Lattice((args.L // 2, args.L // 2))
    torch.manual_seed(args.seed)
    m_small = build("multiscale", G, small, beta, args)
    _, info_s = train(m_small, WilsonGaugeAction(G, small, beta), 60 * args.budget_small_min, args, 1 + args.seed)
    m_large = build("multiscale", G, large, beta, args)
    copied = grow(m_small, m_large)
    tr, info_l = train(m_large, act, 60 * args.budget_large_min, args, 2 + args.seed)
    return tr.model, {"train_small": info_s, "train_large": info_l, "parameters_copied": copied}, \
        info_s["train_wall_s"] + info_l["train_wall_s"]


def run_hmc(args: argparse.Namespace, out: dict[str, Any]) -> None:
    import json

    import bench_hmc

    if args.hmc_json:
        hmc_path = args.hmc_json
    else:
        hmc_path = os.path.splitext(args.out)[0] + "_hmc_tau.json"
        bench_hmc.main(["bench_hmc.py", "tau", "--sampler", "hmc", "--betas", ",".join(map(str, args.betas)),
                        "--L", str(args.L), "--chains", str(args.hmc_chains), "--n-meas", str(args.hmc_meas),
                        "--max-wall-s", str(args.hmc_max_wall_s), "--out", hmc_path, "--torch-threads",
                        str(torch.get_num_threads())])
    with open(hmc_path) as fh:
        hmc = json.load(fh)
    out["hmc_file"] = hmc_path
    G = lk.U1
    for beta in args.betas:
        h = next(b for b in hmc["betas"] if abs(b["beta"] - beta) < 1e-12)
        tau_q = h["Q"]["tau_int"]
        # bench_hmc.py flags a chain too short for its tau: the estimate at W_max is then a lower bound, and so
        # is the HMC cost below (the comparison errs in HMC's favour)
        q_lower_bound = bool(h["Q"].get("windowing_failed", False))
        hmc_cost = 2 * tau_q * h["s_per_chain_update"]          # seconds per independent Q sample, one chain
        large = lk.Lattice((args.L, args.L))
        act = WilsonGaugeAction(G, large, beta)
        model, flow_info, train_s = hmc_flow_model(args, beta, large, act)
        m64 = copy.deepcopy(model).to(torch.float64)
        c0, w0 = time.process_time(), time.time()
        res = independence_metropolis(m64, act, args.mcmc, lk.backends.rng(7 + args.seed, backend="torch"),
                                      observables=u1_2d_observables(large), batch_size=1024)
        mc_cpu, mc_wall = time.process_time() - c0, time.time() - w0
        gq = gamma(np.rint(res.observables["Q"]))
        gchi = gamma(res.observables["chi_t"])
        chi_exact = exact.u1_2d_topological_susceptibility(beta, large.shape)
        flow_cost = 2 * gq["tau_int"] * mc_wall / args.mcmc
        gain = hmc_cost - flow_cost
        row = {"beta": beta, "L": args.L,
               "hmc": {"tau_int_Q": tau_q, "tau_int_Q_is_lower_bound": q_lower_bound,
                       "tau_int_Q_error": h["Q"].get("tau_int_error"),
                       "s_per_trajectory": h["s_per_chain_update"],
                       "s_per_independent_Q": hmc_cost, "acceptance": h.get("acceptance")},
               "flow": {"model": args.model, **flow_info,
                        "proposals": args.mcmc, "acceptance": float(res.acceptance.rate),
                        "proposal_ess": float(res.proposal_ess), "proposal_ess_n": args.mcmc,
                        "tau_int_Q": gq["tau_int"], "tau_int_Q_error": gq.get("tau_int_error"),
                        "s_per_proposal": mc_wall / args.mcmc, "cpu_s_per_proposal": mc_cpu / args.mcmc,
                        "s_per_independent_Q": flow_cost,
                        "cpu_s_per_independent_Q": 2 * gq["tau_int"] * mc_cpu / args.mcmc,
                        "chi_t": {**gchi, "exact": chi_exact,
                                  "deviation_sigma": (gchi["value"] - chi_exact) / gchi["error"] if gchi["error"] else None}},
               "cost_ratio_flow_over_hmc": flow_cost / hmc_cost,
               "goal_ratio_at_most": 0.1,
               "break_even": ({"independent_samples": train_s / gain, "hmc_seconds": train_s / gain * hmc_cost,
                               "training_wall_s": train_s} if gain > 0 else None),
               "note": "wall seconds on this machine for both; HMC per chain (the chains of bench_hmc run as a batch)"}
        out["results"].append(row)
        out["machine_at_end"] = machine()
        write_json(args.out, out)
        print(f"[hmc beta={beta}] HMC {hmc_cost:.3g} s/indep Q, flow {flow_cost:.3g} s/indep Q, "
              f"ratio {flow_cost / hmc_cost:.3g}", flush=True)


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("fig2", "fig4", "hmc"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--betas", type=_floats, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--batch", type=int, default=64 if name != "fig4" else 16)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--train-dtype", default="float32", choices=["float32", "float64"])
        p.add_argument("--coarse", type=int, default=2, help="coarse extent per direction (the paper: 2)")
        p.add_argument("--cond-layers", type=int, default=2, help="couplings per staple-conditional model")
        p.add_argument("--cond-hidden", type=_ints, default=[16])
        p.add_argument("--hidden", type=_ints, default=[8], help="fine-flow CNN channels")
        p.add_argument("--eval-n", type=int, default=4096, help="fresh draws for ESS, KL, log Z")
        p.add_argument("--mcmc", type=int, default=8192, help="flow-MCMC proposals (2D)")
        if name in ("fig2", "fig4"):
            p.add_argument("--group", default="U1", help="U1 or SU3 (any SU<N>)")
            p.add_argument("--budget-min", type=float, default=10.0, help="CPU minutes of training per model")
            p.add_argument("--resume", action="store_true",
                           help="keep the betas already in --out (written with the same settings) and run the rest")
            # the paper: 48 U(1) coupling layers; SU(3) one iteration of direction and location updates (12 in
            # 2D, 64 in 4D); the 8x8 / 4^4 fine flows here default to the layers that update every link twice
            p.add_argument("--fine-layers", type=int, default=16 if name == "fig2" else 16)
        else:
            p.add_argument("--L", type=int, default=16)
            p.add_argument("--model", default="multiscale", choices=["multiscale", "plaquette_prior"],
                           help="the flow: multiscale prior + fine flow (curriculum L/2 -> L), or the 2D U(1) "
                                "plaquette-variable prior (+ --fine-layers couplings; 0: nothing trained)")
            p.add_argument("--fine-layers", type=int, default=16)
            p.add_argument("--budget-small-min", type=float, default=20.0)
            p.add_argument("--budget-large-min", type=float, default=40.0)
            p.add_argument("--hmc-json", default="", help="reuse a bench_hmc.py tau result instead of running it")
            p.add_argument("--hmc-chains", type=int, default=32)
            p.add_argument("--hmc-meas", type=int, default=4000)
            p.add_argument("--hmc-max-wall-s", type=float, default=3600.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"benchmark": f"multiscale_{args.cmd}", "paper": "arXiv:2404.10819",
                           "command": " ".join([os.path.basename(sys.executable)] + (sys.argv if argv is None else
                                                                                      ["bench_multiscale.py", *argv])),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": {k: v for k, v in vars(args).items()}, "results": []}
    if getattr(args, "resume", False):
        resume_from(args.out, out)
    t0 = time.time()
    if args.cmd == "hmc":
        run_hmc(args, out)
    else:
        run_figure(args, out)
    out["wall_s"] = round(time.time() - t0, 1)
    write_json(args.out, out)
    print(f"wrote {args.out} in {out['wall_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
