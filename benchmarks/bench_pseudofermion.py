#!/usr/bin/env python
"""Pseudofermion flows (Abbott et al., arXiv:2207.08945): reproduction of Figs. 3-5 on CPU, and flows against HMC.

Run by hand (not part of the test suite); every sub-command writes its JSON atomically after each case, with the
command line, the machine (CPU model, cores, load average at start and end), torch threads and versions.

    # Fig. 4: Schwinger model, L = 8, beta = 2, kappa = 0.265: joint and marginal ESS for five pseudofermion
    # targets (none, EO, EO + 1, 2, 3 Hasenbusch steps with mu = 0.001, 0.01, 0.05), the same training (steps,
    # batch, LR schedule, architecture) for every target; condition numbers of every monomial's kernel
    python benchmarks/bench_pseudofermion.py fig4 --steps 300 --save-dir benchmarks/results/pf_models \
        --out benchmarks/results/pseudofermion_fig4.json

    # Fig. 4 with staged training: the five targets' conditional models trained on ONE frozen marginal model, the
    # marginal stage of a `latticekit train` job of the example (its architecture and [model] keys; the action's
    # even_odd / hasenbusch_mus replaced per target). The marginal target p(U) is the same for all five (the
    # monomials multiply to det(M + mu0), det D_sc = det D), so the comparison isolates the conditional models
    python benchmarks/bench_pseudofermion.py fig4c --example examples/schwinger_pf_eo_hb.toml \
        --marginal schwinger-pf/stages/0_marginal.pt --steps 500 --out benchmarks/results/pseudofermion_fig4c.json

    # the saved models again on more draws (ESS, mean log w = log Z - KL, condition numbers)
    python benchmarks/bench_pseudofermion.py eval --eval-n 8192 --model benchmarks/results/pf_models/none.pt \
        --model benchmarks/results/pf_models/eo.pt --out benchmarks/results/pseudofermion_fig4_eval.json

    # Fig. 3: ESS(N_pf) for N_pf = 1 ... 64 with the fit of eq. (45), on a model saved by fig4 or on the folder of a
    # pseudofermion `latticekit train` run (e.g. of examples/schwinger_pf_eo_hb3.toml, the paper's Fig. 3 target)
    python benchmarks/bench_pseudofermion.py npf --model schwinger-pf3 --out benchmarks/results/pseudofermion_npf.json
    # ... and its summary (means, fits, the ratio to the marginal ESS of the same fields) recomputed from a file
    python benchmarks/bench_pseudofermion.py npf-summary --input benchmarks/results/pseudofermion_npf.json \
        --out benchmarks/results/pseudofermion_npf_summary.json

    # flow MCMC (pseudo-marginal, N_pf pseudofermions) against pseudofermion HMC of the same theory
    python benchmarks/bench_pseudofermion.py hmc --model benchmarks/results/pf_models/eo_hb3.pt --n-pf 8 \
        --out benchmarks/results/pseudofermion_vs_hmc.json

    # Sec. IV.B: 2D SU(3), Nf = 2, beta = 6, kappa = 0.265, EO + one Hasenbusch step (mu = 0.3), alternating
    # spatial/spin partitioning, L = 8 on CPU
    python benchmarks/bench_pseudofermion.py fig4 --group SU3 --beta 6 --targets eo+0.3 --partitioning alternating \
        --pt-hidden 4 --steps 200 --out benchmarks/results/pseudofermion_su3.json

    # training step with the compiled CG loop (backends/_numba_cg.py, on torch CPU through zero-copy views)
    # against the Python loop of latticekit.linalg.cg (the kernel unregistered), two identical trainers,
    # blocks alternating in one process
    python benchmarks/bench_pseudofermion.py step --targets "eo+0.001" --blocks 6 --block-steps 3 \
        --out benchmarks/results/pseudofermion_step_cg.json

    # smoke run (a minute)
    python benchmarks/bench_pseudofermion.py fig4 --L 4 --steps 2 --batch 8 --eval-n 64 --gauge-layers 2 \
        --pf-layers 2 --out /tmp/pf_smoke.json

ESS is the Kish ESS/N of ``--eval-n`` fresh draws (eq. 15 of the paper, the definition it uses): the joint ESS
with one pseudofermion per monomial (eq. 40), the marginal ESS with the exact determinant (dense, eq. 19).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.analysis import ess as kish
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, sun_gauge_flow, u1_gauge_flow
from latticekit.flows.pseudofermion import (
    JointAction,
    JointModel,
    ess_vs_npf,
    fit_ess_npf,
    fit_npf_ratio,
    monomial_targets,
    pf_weights,
    pseudo_marginal_metropolis,
)
from latticekit.groups import group_from_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gamma, machine, write_json  # noqa: E402

PAPER_FIG4 = {  # read off Fig. 4 / Sec. IV.A.2 of arXiv:2207.08945 (after ~27k steps, batch 4096)
    "none": {"joint": 0.02, "marginal": 0.125}, "eo": {"joint": 0.05, "marginal": 0.155},
    "eo+0.001": {"joint": 0.075, "marginal": 0.26}, "eo+0.001,0.01": {"joint": 0.093, "marginal": 0.29},
    "eo+0.001,0.01,0.05": {"joint": 0.145, "marginal": 0.30},
}
NAMES = {"none": "none", "eo": "eo", "eo+0.001": "eo_hb1", "eo+0.001,0.01": "eo_hb2", "eo+0.001,0.01,0.05": "eo_hb3"}


def parse_target(spec: str) -> tuple[bool, list[float]]:
    """``none`` | ``eo`` | ``eo+mu1,mu2,...`` | ``plain+mu1,...`` -> (even_odd, Hasenbusch shifts)."""
    head, _, mus = spec.partition("+")
    if head not in ("none", "eo", "plain"):
        raise ValueError(f"--targets: {spec!r}: expected none, eo, eo+mu1,mu2,... or plain+mu1,...")
    return head == "eo", [float(m) for m in mus.split(",")] if mus else []


def build(spec: dict[str, Any]) -> tuple[JointModel, Any, list[Any], list[Any], lk.Lattice]:
    """Joint model, gauge action, training targets (regulated) and sampling targets of a case."""
    G = group_from_name(spec["group"])
    lat = lk.Lattice((spec["L"], spec["L"]))
    eo, mus = parse_target(spec["target"])
    torch.manual_seed(spec["seed"])
    gl = spec["gauge_layers"]
    hidden = tuple(spec["hidden"])
    flow = (u1_gauge_flow(lat, gl, hidden=hidden) if G is lk.U1 else sun_gauge_flow(G, lat, gl, hidden=hidden))
    marginal = Model(HaarPrior(G, lat), flow)
    kw = dict(even_odd=eo, hasenbusch_mus=mus, tol=1e-10, maxiter=4000)
    train_targets = monomial_targets(G, lat, spec["kappa"], mu0=spec["mu0"], **kw)
    targets = monomial_targets(G, lat, spec["kappa"], **kw)
    model = JointModel.build(marginal, targets, n_layers=spec["pf_layers"], partitioning=spec["partitioning"],
                             n_pt=spec["n_pt"] or None, hidden_features=spec["pt_hidden"], n_hidden=spec["n_hidden"])
    return model.double(), WilsonGaugeAction(G, lat, spec["beta"]), train_targets, targets, lat


def spec_of(args: argparse.Namespace, target: str) -> dict[str, Any]:
    return {"group": args.group, "L": args.L, "beta": args.beta, "kappa": args.kappa, "target": target,
            "gauge_layers": args.gauge_layers, "hidden": args.hidden, "pf_layers": args.pf_layers,
            "partitioning": args.partitioning, "n_pt": args.n_pt, "pt_hidden": args.pt_hidden,
            "n_hidden": args.n_hidden, "mu0": args.mu0, "seed": args.seed}


def evaluate(model: JointModel, gauge: Any, targets: list[Any], n: int, seed: int) -> dict[str, Any]:
    rng = lk.backends.rng(10_000 + seed, backend="torch")
    w = pf_weights(model, gauge, targets, n, rng, n_pf=1, batch_size=256, dense=True)
    lw = w.log_w_joint.cpu().numpy()
    lm = w.log_w_marginal.cpu().numpy()
    # mean log w: log Z - KL. log Z = log int dU exp(-S_g) det M is the same for every pseudofermion target (the
    # monomials of eq. 38 multiply to det M; det D_sc = det D), so differences of mean log w between targets are
    # differences of the KL divergences, meaningful where the ESS of a few thousand draws is not
    return {"joint_ess": float(kish(lw)), "marginal_ess": float(kish(lm)),
            "ess_n": n, "joint_var_log_w": float(np.var(lw)), "joint_mean_log_w": float(np.mean(lw)),
            "marginal_mean_log_w": float(np.mean(lm)), "marginal_var_log_w": float(np.var(lm)),
            "condition_numbers": [{"monomial": repr(t), "mean": float(c.mean()), "max": float(c.max())}
                                  for t, c in zip(targets, w.condition_numbers)]}


def train_curve(tr: Trainer, steps: int, target: str, points: int) -> tuple[list[dict[str, Any]], float, float]:
    """Train ``tr`` to ``steps``; the loss and batch ESS at ``points`` evenly spaced steps, CPU and wall seconds."""
    c0, t0 = time.process_time(), time.time()
    curve = []
    while tr.step < steps:
        m = tr.train_step()
        if tr.step % max(1, steps // points) == 0 or tr.step == steps:
            curve.append({"step": tr.step, "loss": m["loss"], "batch_joint_ess": m["ess"]})
            print(f"{target}: step {tr.step} loss {m['loss']:.4g} ess {m['ess']:.4f}", flush=True)
    return curve, time.process_time() - c0, time.time() - t0


def run_fig4(args: argparse.Namespace, out: dict[str, Any]) -> None:
    for target in args.targets:
        spec = spec_of(args, target)
        model, gauge, train_targets, targets, lat = build(spec)
        cfg = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, optimizer="adamw", eps=args.adam_eps,
                          schedule="step", step_size=max(1, args.steps // 2), gamma=0.5, dtype="float64",
                          seed=args.seed)
        tr = Trainer(model, JointAction(gauge, train_targets), cfg)
        curve, cpu, wall = train_curve(tr, args.steps, target, 20)
        ev = evaluate(model, gauge, targets, args.eval_n, args.seed)
        res = {"target": target, "spec": spec, "train_steps": tr.step, "train_cpu_s": round(cpu, 1),
               "train_wall_s": round(wall, 1), "n_parameters": int(sum(p.numel() for p in model.parameters())),
               "curve": curve, **ev, "paper": PAPER_FIG4.get(target)}
        if args.save_dir:
            os.makedirs(args.save_dir, exist_ok=True)
            path = os.path.join(args.save_dir, NAMES.get(target, target.replace("+", "_").replace(",", "_")) + ".pt")
            torch.save({"spec": spec, "state": model.state_dict()}, path)
            res["saved"] = path
        out["results"].append(res)
        print(f"{target}: joint ESS {ev['joint_ess']:.4f}, marginal ESS {ev['marginal_ess']:.4f}", flush=True)
        out["machine_at_end"] = machine()
        write_json(args.out, out)


def run_fig4c(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Conditional models of every target on one frozen marginal model (module docstring)."""
    import tomllib

    from latticekit.app.config import FlowConfig
    from latticekit.app.flows.models import build_flow
    from latticekit.app.flows.pf_targets import theory_targets

    with open(args.example, "rb") as f:
        base = tomllib.load(f)
    state = torch.load(args.marginal, map_location="cpu", weights_only=False)
    marginal_state = {k: v for k, v in state["model"].items() if k.startswith(("flow.", "prior."))}
    out["marginal"] = {"checkpoint": args.marginal, "step": state.get("step"), "tensors": len(marginal_state)}
    for target in args.targets:
        eo, mus = parse_target(target)
        conf = {k: dict(v) for k, v in base.items()}
        conf["action"].update(even_odd=eo, hasenbusch_mus=mus)
        conf["model"].update(objective="conditional")
        conf["model"].pop("n_pt", None)  # the family's default: 6 with EO, 3 without (App. B.3)
        cfg = FlowConfig.from_dict(conf)
        model, action, _lat = build_flow(cfg)  # the regulated joint action; the marginal frozen
        model = model.double()
        missing = model.load_state_dict(marginal_state, strict=False)
        bad = [k for k in missing.missing_keys if k.startswith(("flow.", "prior."))] + list(missing.unexpected_keys)
        if bad:
            raise SystemExit(f"--marginal: {args.marginal} does not fit the example's marginal flow ({bad[:3]} ...)")
        tc = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, optimizer="adam", schedule="constant",
                         dtype="float64", seed=args.seed)
        tr = Trainer(model, action, tc)
        curve, cpu, wall = train_curve(tr, args.steps, target, 10)
        gauge = cfg.theory.make_action()
        ev = evaluate(model, gauge, theory_targets(cfg.theory), args.eval_n, args.seed)
        ev["conditional_kl"] = ev["marginal_mean_log_w"] - ev["joint_mean_log_w"]
        out["results"].append({"target": target, "train_steps": tr.step, "train_cpu_s": round(cpu, 1),
                               "train_wall_s": round(wall, 1), "curve": curve, **ev, "paper": PAPER_FIG4.get(target),
                               "conditional_parameters": int(sum(p.numel() for p in model.conditionals.parameters()))})
        print(f"{target}: joint ESS {ev['joint_ess']:.4f}, marginal ESS {ev['marginal_ess']:.4f}, conditional KL "
              f"{ev['conditional_kl']:.2f}", flush=True)
        out["machine_at_end"] = machine()
        write_json(args.out, out)


def load(path: str) -> tuple[JointModel, Any, list[Any], dict[str, Any]]:
    """Model, gauge action, sampling targets and description of a fig4 save or a `latticekit train` run."""
    blob = None if os.path.isdir(path) else torch.load(path, map_location="cpu", weights_only=False)
    if blob is None or "config" in blob:  # a `latticekit train` checkpoint carries its configuration
        return load_run(path)
    model, gauge, _tt, targets, _lat = build(blob["spec"])
    model.load_state_dict(blob["state"])
    model.eval()
    return model, gauge, targets, blob["spec"]


def load_run(path: str) -> tuple[JointModel, Any, list[Any], dict[str, Any]]:
    """A pseudofermion-family `latticekit train` run (its folder or checkpoint), as ``latticekit sample`` reads it."""
    from latticekit.app.flows.pf_targets import theory_targets
    from latticekit.app.flows.sample import load_trained

    model, _action, cfg, payload = load_trained(path)
    if not isinstance(model, JointModel):
        raise SystemExit(f"--model: {path} is not a pseudofermion-family run (its model is {type(model).__name__})")
    model.set_objective("joint")
    th = cfg.theory
    mus = ",".join(str(m) for m in th.params.hasenbusch_mus)
    spec = {"run": os.path.abspath(path), "step": payload.get("step"), "group": th.params.group,
            "L": list(th.lattice.shape), "beta": th.params.beta, "kappa": th.params.kappa,
            "target": ("eo" if th.params.even_odd else "none") + ("+" + mus if mus else "")}
    return model, th.make_action(), theory_targets(th), spec


def run_eval(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Re-evaluate saved models (``--model`` may be given several times) on ``--eval-n`` fresh draws."""
    for path in args.model:
        model, gauge, targets, spec = load(path)
        out["results"].append({"target": spec["target"], "model": path, "spec": spec,
                               **evaluate(model, gauge, targets, args.eval_n, args.seed), "paper": PAPER_FIG4.get(spec["target"])})
        r = out["results"][-1]
        print(f"{spec['target']}: joint ESS {r['joint_ess']:.4f} mean log w {r['joint_mean_log_w']:.3f}; marginal ESS "
              f"{r['marginal_ess']:.4f} mean log w {r['marginal_mean_log_w']:.3f}", flush=True)
        out["machine_at_end"] = machine()
        write_json(args.out, out)


def log_ratio_moments(w: Any) -> dict[str, dict[str, float]]:
    """Mean and variance over the gauge fields of ``log r_Npf(U) = log w_Npf(U) - log w_marg(U)`` for every ``N_pf``.

    ``r_Npf`` is the pseudofermion estimator of the determinant relative to the exact one (mean 1 at fixed ``U``,
    eq. 44); ``-E[log r_1]`` is the conditional models' KL divergence averaged over ``q(U)``. A pseudo-marginal chain
    mixes well when ``Var(log r_Npf)`` is of order 1 (Doucet, Pitt, Deligiannidis and Kohn, Biometrika 102 (2015)
    295: the best cost per independent sample at a standard deviation of about 1.2) and sticks when it is much
    larger: a proposal whose estimate came out high holds the chain."""
    out = {}
    for k, v in sorted(w.log_w.items()):
        d = (v - w.log_w_marginal).double().cpu().numpy()
        out[str(k)] = {"mean": float(d.mean()), "var": float(d.var(ddof=1))}
    return out


def npf_summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and error of ESS(N_pf) over independent draw sets, the eq. (45) fit, and the ratio to the marginal ESS.

    ``reps``: per draw set, ``{"ess": {N_pf: ESS}, "marginal_ess": ESS}`` on the same gauge fields. The Kish ESS of a
    few thousand heavy-tailed weights scatters by a factor ~3 between draw sets, and that scatter comes from the
    gauge fields (``w_Npf(U) = w_marg(U) r_Npf(U)`` with ``r`` the pseudofermion average of ``p(phi|U)/q(phi|U)``,
    mean 1 at fixed ``U``). The ratio ``ESS(N_pf) / ESS_marg`` on the same fields cancels most of it:
    ``1/ESS(N_pf) = (1/ESS_marg)(1 + C/N_pf)`` with ``C = E[w_marg^2 Var(r_1|U)] / E[w_marg^2]`` (App. A of
    arXiv:2207.08945, eq. 45 with ``ESS(inf)`` the marginal ESS of the same fields), fitted to the mean ratios by
    ``fit_npf_ratio``.
    """
    def mean_err(xs: list[float]) -> dict[str, Any]:
        return {"mean": float(np.mean(xs)),
                "error": float(np.std(xs, ddof=1) / np.sqrt(len(xs))) if len(xs) > 1 else None}

    ns = sorted(int(n) for n in reps[0]["ess"])
    ess = {n: [float(x["ess"][n] if n in x["ess"] else x["ess"][str(n)]) for x in reps] for n in ns}
    marg = [float(x["marginal_ess"]) for x in reps]
    mean = {n: float(np.mean(v)) for n, v in ess.items()}
    e_inf, C = fit_ess_npf(ns, [mean[n] for n in ns])
    ratio = {n: [e / m for e, m in zip(v, marg)] for n, v in ess.items()}
    c_ratio = fit_npf_ratio(ns, [float(np.mean(ratio[n])) for n in ns])
    noise = {}
    if all("log_ratio" in x for x in reps):
        noise = {"log_ratio": {str(n): {m: mean_err([x["log_ratio"][str(n)][m] for x in reps]) for m in ("mean", "var")}
                               for n in ns},
                 "log_ratio_definition": "mean and variance over the gauge fields of log w_Npf - log w_marg "
                                         "(log_ratio_moments)"}
    return {**noise, "ess_vs_npf": {str(n): mean_err(ess[n]) for n in ns}, "marginal_ess": mean_err(marg),
            "fit": {"ess_inf": e_inf, "C": C, "formula": "ESS(N_pf) = ESS(inf)/(1 + C/N_pf), eq. 45"},
            "ratio_to_marginal": {str(n): mean_err(ratio[n]) for n in ns},
            "ratio_fit": {"C": c_ratio, "formula": "ESS(N_pf)/ESS_marg = 1/(1 + C/N_pf) on the same gauge fields "
                                                   "(eq. 45 with ESS(inf) = ESS_marg), least squares in 1/N_pf"},
            "per_rep": [{"ess": {str(k): v for k, v in x["ess"].items()}, "marginal_ess": x["marginal_ess"],
                         **({"log_ratio": x["log_ratio"]} if "log_ratio" in x else {})} for x in reps]}


def run_npf(args: argparse.Namespace, out: dict[str, Any]) -> None:
    model, gauge, targets, spec = load(args.model)
    reps = []
    for r in range(args.reps):
        rng = lk.backends.rng(20_000 + r, backend="torch")
        w = pf_weights(model, gauge, targets, args.eval_n, rng, n_pf=args.npf_max, batch_size=256, dense=True)
        reps.append({"ess": ess_vs_npf(w), "marginal_ess": float(kish(w.log_w_marginal.cpu().numpy())),
                     "log_ratio": log_ratio_moments(w)})
        print(f"rep {r}: {reps[-1]}", flush=True)
    out["results"].append({"spec": spec, "model": args.model, "ess_n": args.eval_n, "reps": len(reps),
                           **npf_summary(reps)})
    out["machine_at_end"] = machine()
    write_json(args.out, out)


def run_npf_summary(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """``npf_summary`` of the ``per_rep`` lists of an earlier ``npf`` file (``--input``), e.g. one written before
    the ratio to the marginal ESS was part of it; the input's command, settings and machine are kept under
    ``source``."""
    import json

    with open(args.input) as f:
        src = json.load(f)
    out["source"] = {"file": args.input, **{k: v for k, v in src.items() if k != "results"}}
    for res in src["results"]:
        out["results"].append({**res, **npf_summary(res["per_rep"])})
    write_json(args.out, out)


def run_hmc(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from latticekit.app.run import run_job
    from latticekit.theories.wilson_nf2 import WilsonNf2Params, WilsonNf2Theory

    model, gauge, targets, spec = load(args.model)
    eo, mus = parse_target(spec["target"])
    theory = WilsonNf2Theory((spec["L"], spec["L"]), WilsonNf2Params(group=spec["group"], beta=spec["beta"],
                                                                     kappa=spec["kappa"], even_odd=eo,
                                                                     hasenbusch_mus=mus))
    names = [n for n in theory.observable_names() if n != "topological_charge" or theory.is_u1_2d]
    obs_fns = theory.observables(names)
    rng = lk.backends.rng(args.seed, backend="torch")
    t0 = time.time()
    res = pseudo_marginal_metropolis(model, gauge, targets, args.mcmc, rng, n_pf=args.n_pf, batch_size=256,
                                     observables=obs_fns)
    flow = {"n_pf": args.n_pf, "steps": args.mcmc, "acceptance": float(res.acceptance.rate),
            "proposal_ess": float(res.proposal_ess), "wall_s": round(time.time() - t0, 1),
            "observables": {k: {"value": float(r.value), "error": float(r.error), "tau_int": float(r.tau_int)}
                            for k, r in res.analysis.items()}}
    if theory.is_u1_2d:
        flow["observables"]["chi_t"] = gamma(res.observables["topological_charge"] ** 2 / theory.lattice.volume)
    print("flow:", flow, flush=True)
    hmc_dir = args.hmc_dir or os.path.join(os.path.dirname(os.path.abspath(args.out)), "pf_hmc_run")
    cfg = {"lattice": {"shape": [spec["L"], spec["L"]]},
           "action": {"kind": "wilson_nf2", "group": spec["group"], "beta": spec["beta"], "kappa": spec["kappa"],
                      "even_odd": eo, "hasenbusch_mus": mus or [0.2]},
           "sampler": {"algorithm": "hmc", "chains": args.hmc_chains, "thermalization": 50,
                       "measurements": args.hmc_meas, "step_size": 0.2, "n_steps": 5, "integrator": "omelyan",
                       "n_inner": 2},
           "measure": {"every": 1}, "output": {"checkpoint_every": 50, "store_every": 1000}}
    t0 = time.time()
    hmc = run_job(cfg, out=hmc_dir, progress=False, echo=False)
    out["results"].append({"spec": spec, "model": args.model, "flow": flow,
                           "hmc": {"config": cfg, "folder": hmc_dir, "wall_s": round(time.time() - t0, 1),
                                   "observables": hmc.get("observables", hmc)}})
    out["machine_at_end"] = machine()
    write_json(args.out, out)


def run_step(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """CPU time per training step with and without the compiled CG loop, paired (alternating blocks)."""
    from latticekit.backends import _fast

    key = ("wilson_normal_cg", "torch")
    lk.backends.fast_path("wilson_normal_cg", torch.zeros(1))       # load the built-in registrations
    compiled = _fast._REGISTRY.get(key)
    if compiled is None:
        raise SystemExit("step: no compiled CG registered for torch (numba missing?): nothing to compare")
    for target in args.targets:
        spec = spec_of(args, target)
        trainers = {}
        for variant in ("compiled loop", "loop"):
            model, gauge, train_targets, _, _ = build(spec)
            cfg = TrainConfig(steps=10 ** 9, batch_size=args.batch, lr=args.lr, optimizer="adamw", eps=args.adam_eps,
                              dtype="float64", seed=args.seed)
            trainers[variant] = Trainer(model, JointAction(gauge, train_targets), cfg)
        times: dict[str, list[float]] = {v: [] for v in trainers}
        losses: dict[str, list[float]] = {v: [] for v in trainers}
        for block in range(args.blocks + 1):                       # block 0: warm-up (compilation), not kept
            for variant, tr in trainers.items():
                if variant == "loop":
                    _fast._REGISTRY.pop(key, None)
                try:
                    c0 = time.process_time()
                    for _ in range(args.block_steps):
                        losses[variant].append(tr.train_step()["loss"])
                    dt = (time.process_time() - c0) / args.block_steps
                finally:
                    _fast._REGISTRY[key] = compiled
                if block:
                    times[variant].append(dt)
        ratio = [a / b for a, b in zip(times["compiled loop"], times["loop"])]
        res = {"target": target, "spec": spec, "batch": args.batch, "blocks": args.blocks,
               "block_steps": args.block_steps, "cpu_s_per_step": times,
               "median_cpu_s_per_step": {v: float(np.median(t)) for v, t in times.items()},
               "ratio_compiled_over_loop": {"median": float(np.median(ratio)), "min": min(ratio), "max": max(ratio)},
               "max_rel_loss_difference": float(np.max(np.abs(np.subtract(losses["compiled loop"], losses["loop"]))
                                                       / np.abs(losses["loop"])))}
        out["results"].append(res)
        print(f"{target}: {res['median_cpu_s_per_step']} s/step, compiled / loop {res['ratio_compiled_over_loop']}",
              flush=True)
        out["machine_at_end"] = machine()
        write_json(args.out, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("fig4", "fig4c", "eval", "npf", "npf-summary", "hmc", "step"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--eval-n", type=int, default=4096, help="fresh draws per ESS (the paper: 4096)")
        if name in ("fig4", "step"):
            p.add_argument("--group", default="U1")
            p.add_argument("--L", type=int, default=8)
            p.add_argument("--beta", type=float, default=2.0)
            p.add_argument("--kappa", type=float, default=0.265)
            p.add_argument("--targets", type=lambda s: s.split(";"), default=list(PAPER_FIG4),
                           help="';'-separated: none;eo;eo+0.001;... (default: the five of Fig. 4)")
            p.add_argument("--steps", type=int, default=300)
            p.add_argument("--batch", type=int, default=64)
            p.add_argument("--lr", type=float, default=5e-4, help="the paper: 5e-4 halved every 10k steps")
            p.add_argument("--adam-eps", type=float, default=0.02, help="App. B.3: 0.02 (Schwinger), 0.01 (SU(3))")
            p.add_argument("--gauge-layers", type=int, default=16)
            p.add_argument("--hidden", type=lambda s: [int(x) for x in s.split(",")], default=[16])
            p.add_argument("--pf-layers", type=int, default=8, help="the paper: 24 at L = 8")
            p.add_argument("--partitioning", default="spatial")
            p.add_argument("--n-pt", type=int, default=0, help="0: 6 with EO, 3 without (App. B.3)")
            p.add_argument("--pt-hidden", type=int, default=2)
            p.add_argument("--n-hidden", type=int, default=16)
            p.add_argument("--mu0", type=float, default=1e-5)
            p.add_argument("--save-dir", default="")
            if name == "step":
                p.add_argument("--blocks", type=int, default=6)
                p.add_argument("--block-steps", type=int, default=3)
        elif name == "fig4c":
            p.add_argument("--example", required=True, help="the example TOML whose marginal stage --marginal is")
            p.add_argument("--marginal", required=True, help="stages/0_marginal.pt of a staged latticekit train job")
            p.add_argument("--targets", type=lambda s: s.split(";"), default=list(PAPER_FIG4),
                           help="';'-separated: none;eo;eo+0.001;... (default: the five of Fig. 4)")
            p.add_argument("--steps", type=int, default=500)
            p.add_argument("--batch", type=int, default=64)
            p.add_argument("--lr", type=float, default=1e-3)
        elif name == "eval":
            p.add_argument("--model", action="append", required=True, help="models saved by fig4 --save-dir")
        elif name == "npf-summary":
            p.add_argument("--input", required=True, help="a JSON file written by npf")
        else:
            p.add_argument("--model", required=True,
                           help="a model saved by fig4 --save-dir, or a pseudofermion `latticekit train` run folder")
        if name == "npf":
            p.add_argument("--npf-max", type=int, default=64)
            p.add_argument("--reps", type=int, default=10, help="independent ESS estimates (the paper: 10)")
        if name == "hmc":
            p.add_argument("--n-pf", type=int, default=8)
            p.add_argument("--mcmc", type=int, default=8192)
            p.add_argument("--hmc-dir", default="")
            p.add_argument("--hmc-chains", type=int, default=8)
            p.add_argument("--hmc-meas", type=int, default=500)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"benchmark": f"pseudofermion_{args.cmd}", "paper": "arXiv:2207.08945",
                           "command": " ".join([os.path.basename(sys.executable)] + (sys.argv if argv is None else
                                                                                      ["bench_pseudofermion.py", *argv])),
                           "ess_definition": "Kish ESS/N of --eval-n fresh draws (eq. 15); joint: one pseudofermion "
                                             "per monomial (eq. 40); marginal: exact determinant (eq. 19)",
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": {k: v for k, v in vars(args).items()}, "results": []}
    t0 = time.time()
    jobs = {"fig4": run_fig4, "fig4c": run_fig4c, "eval": run_eval, "npf": run_npf, "npf-summary": run_npf_summary,
            "hmc": run_hmc, "step": run_step}
    jobs[args.cmd](args, out)
    out["wall_s"] = round(time.time() - t0, 1)
    write_json(args.out, out)
    print(f"wrote {args.out} in {out['wall_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
