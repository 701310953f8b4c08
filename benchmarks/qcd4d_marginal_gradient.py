"""Is the stochastic log-det gradient what limits the marginal stage of the 2^4 QCD example? Train it both ways.

The marginal stage of the ``qcd4d`` family trains ``q(U)`` against ``S_g - log det(D D^dag + mu0)`` with the
one-noise-vector estimator ``d log det M = E_eta[Re eta^dag M^{-1} dM eta]`` (arXiv:2106.05934 App. C;
``MarginalAction``). On 2^4 the 192 x 192 matrix ``M = D D^dag`` is small enough to differentiate exactly:
``log det(M + mu0) = 2 sum_i log L_ii`` from the Cholesky factor of the dense matrix (``linalg.dense_matrix``,
built by applying the operator to unit vectors, so autograd flows through ``D[U]``). This script trains the
example's marginal model (``examples/qcd4d_nf2.toml``: its architecture, ``[train]`` options and seed) with
``--gradient stochastic`` (``MarginalAction(gradient="normal")``, the App. C form the family used when these
results were recorded), ``--gradient dirac`` (the lower-variance form, now the family's default) or ``--gradient
dense`` (the exact gradient, ``MarginalAction(gradient="dense")``), the same
seed and hence the same draws of the flow's prior, and evaluates the Kish ESS/N of ``--eval-n`` fresh draws
against the *exact* marginal target ``exp(-S_g) det(D D^dag)`` (dense eigenvalues, no regulator) every
``--eval-every`` steps, with its own generator (the evaluations do not disturb the training stream).

    python benchmarks/qcd4d_marginal_gradient.py --gradient stochastic --steps 200 \
        --out benchmarks/results/qcd4d_marginal_gradient_stochastic.json
    python benchmarks/qcd4d_marginal_gradient.py --gradient dense --steps 200 \
        --out benchmarks/results/qcd4d_marginal_gradient_dense.json

If the estimator's noise limited training, the exact gradient would reach a lower loss and a higher ESS at
equal steps.

``--set SECTION.KEY=VALUE`` (repeatable; VALUE is JSON, e.g. ``model.hidden=[32,32]``) changes the example's
configuration before the model is built: a capacity study of the marginal model at equal steps, e.g.

    python benchmarks/qcd4d_marginal_gradient.py --gradient stochastic --steps 600 --eval-every 100 \
        --set model.hidden=[32,32] --set model.n_layers=24 --out /tmp/qcd4d_marginal_capacity.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from typing import Any

import torch

import latticekit as lk
from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.pseudofermion_models import theory_targets
from latticekit.flows.pseudofermion import MarginalAction
from latticekit.flows.train import TrainConfig, Trainer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine, write_json  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "qcd4d_nf2.toml")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gradient", choices=("stochastic", "dirac", "dense"), required=True,
                   help="stochastic: the App. C estimator ('normal' form); dirac: the lower-variance form; "
                        "dense: the exact gradient")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-n", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override an option of the example (VALUE as JSON); repeatable")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.steps < 1 or a.eval_every < 1 or a.eval_n < 2:
        p.error("--steps >= 1, --eval-every >= 1 and --eval-n >= 2 are required")
    torch.set_num_threads(a.threads)
    with open(EXAMPLE, "rb") as f:
        conf = tomllib.load(f)
    for item in a.set:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in conf:
            p.error(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {sorted(conf)}")
        try:
            conf[section][name] = json.loads(value)
        except json.JSONDecodeError:
            conf[section][name] = value
    cfg = FlowConfig.from_dict(conf)
    t, s, theory = cfg.train, cfg.model.variant, cfg.theory
    model, _, _ = build_flow(cfg)
    model = model.to(torch.float64)
    model.freeze_marginal(False)
    model.conditionals.requires_grad_(False)
    model.set_objective("marginal")
    gauge = theory.make_action()
    targets = theory_targets(theory, s.mu0)
    # the family's marginal stage (qcd4d_stages): noise generator seeded with train.seed + 1; "stochastic" is the
    # "normal" form of arXiv:2106.05934 App. C, which the recorded results used
    action = MarginalAction(gauge, targets, lk.backends.rng(t.seed + 1, backend="torch"), n_noise=s.n_noise,
                            gradient={"stochastic": "normal"}.get(a.gradient, a.gradient))
    exact = MarginalAction(gauge, theory_targets(theory, 0.0), lk.backends.rng(0, backend="torch"))
    erng = lk.backends.rng(12345, backend="torch")

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            lw = []
            for k in range(0, a.eval_n, 256):
                x, lq = model.sample(min(256, a.eval_n - k), erng)
                lw.append(-exact.action(x.U) - lq)   # exact value: dense eigenvalues; the surrogate's is zero
            w = torch.cat(lw)
            r = torch.exp(w - w.max())
            return {"ess": float(r.sum() ** 2 / (r ** 2).sum() / len(w)), "var_log_w": float(w.var()), "n": len(w)}

    out: dict[str, Any] = {"benchmark": "qcd4d_marginal_gradient", "command": "python " + " ".join(sys.argv),
                           "gradient": a.gradient, "example": "examples/qcd4d_nf2.toml",
                           "ess_definition": "Kish ESS/N of --eval-n fresh draws of q(U) against exp(-S_g) det(D D^dag)",
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": vars(a), "n_parameters_marginal": sum(q.numel() for q in model.flow.parameters()),
                           "curve": []}
    tr = Trainer(model, action, TrainConfig(steps=a.steps, batch_size=t.batch_size, lr=t.lr, eps=t.eps,
                                            clip_norm=t.clip_norm, clip_value=t.clip_value, seed=t.seed,
                                            progress=False))
    cpu = 0.0
    for step in range(1, a.steps + 1):
        c0 = time.process_time()
        m = tr.train_step()
        cpu += time.process_time() - c0
        if step % a.eval_every == 0 or step == a.steps:
            out["curve"].append({"step": step, "loss": m["loss"], "train_cpu_s": cpu, **evaluate()})
            print(out["curve"][-1], flush=True)
            write_json(a.out, out)
    out["machine_at_end"] = machine()
    write_json(a.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
