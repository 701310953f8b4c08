#!/usr/bin/env python
"""Train the 4D QCD joint model (model.coupling = "qcd4d") at L^4 within a wall-time budget, then flow-MCMC sample it.

Run by hand (not part of the test suite), e.g. on a GPU after ``bench_qcd4d.py scaling`` measured the step times::

    python benchmarks/qcd4d_train_budget.py --L 4 --device cuda --budget 200 \\
        --scaling benchmarks/results/qcd4d_scaling_h200.json --out benchmarks/results/qcd4d_train_L4_h200.json

The model is the paper's (arXiv:2208.03832 Sec. 3.1; 48 spectral couplings on the shifted-stripe masks, 36
pseudofermion layers), SU(3), beta = 1, kappa = 0.1, the paper's optimiser settings (Adam eps 1e-2, clipping
by norm 10 and value 0.1, lr 1e-3 for the marginal and 1e-4 for the conditional stage). The step counts
split ``--budget`` seconds evenly between the marginal and the conditional stage using the median step times
of ``--scaling`` at this L and batch (or ``--marginal-steps``/``--conditional-steps``). After training,
``latticekit sample``'s job runs ``--n`` pseudo-marginal flow-MCMC steps with ``--n-pf`` pseudofermion draws
per gauge field. The JSON holds the command, the step counts, train.json (ESS of the final evaluation: Kish
ESS/N of eval draws, one pseudofermion per gauge field) and sample.json (acceptance, proposal ESS, joint /
pseudo-marginal / marginal ESS, observables). This is a budgeted run, orders of magnitude shorter than the
paper's 82k steps at batch 512-800: its ESS is not the paper's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import machine, write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--workdir", default="/tmp/qcd4d_budget")
    ap.add_argument("--L", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--budget", type=float, default=200.0, help="training wall seconds (both stages)")
    ap.add_argument("--scaling", default=None, help="bench_qcd4d.py scaling JSON with this L and batch")
    ap.add_argument("--marginal-steps", type=int, default=None)
    ap.add_argument("--conditional-steps", type=int, default=None)
    ap.add_argument("--n", type=int, default=1024, help="flow-MCMC steps")
    ap.add_argument("--n-pf", type=int, default=8)
    ap.add_argument("--small", action="store_true", help="a small architecture (a test of the script)")
    args = ap.parse_args(argv)

    from latticekit.app.flows.sample import sample_job
    from latticekit.app.flows.train import train_job

    t_m = t_c = None
    if args.scaling:
        d = json.loads(Path(args.scaling).read_text())
        row = next((r for r in d["lattices"] if r["L"] == args.L), None)
        if row is None or d["meta"]["batch"] != args.batch:
            sys.exit(f"--scaling {args.scaling}: no row for L = {args.L} at batch {args.batch}")
        t_m, t_c = row["marginal"]["step_s_median"], row["conditional_1"]["step_s_median"]
    n_m = args.marginal_steps if args.marginal_steps is not None else max(1, int(0.5 * args.budget / (t_m or 1.0)))
    n_c = args.conditional_steps if args.conditional_steps is not None else max(1, int(0.5 * args.budget / (t_c or 1.0)))
    cfg = {
        "lattice": {"shape": [args.L] * 4},
        "action": {"kind": "wilson_nf2", "group": "SU3", "beta": 1.0, "kappa": 0.1, "cg_tol": 1e-10},
        "model": {"coupling": "qcd4d", "conditional_steps": [n_c], "conditional_batch_size": [args.batch],
                  "conditional_lr": [1e-4], "conditional_step_size": [0], "n_pf": args.n_pf,
                  **({"n_layers": 8, "hidden": [8], "bins": 8, "pf_layers": 12, "context_hidden": 4} if args.small
                     else {})},
        "train": {"steps": n_m, "batch_size": args.batch, "lr": 1e-3, "eps": 0.01, "clip_norm": 10.0,
                  "clip_value": 0.1, "dtype": "float64", "seed": 1, "eval_batch_size": 1024,
                  "checkpoint_every": 50},
        "sample": {"n": args.n, "batch": 256, "seed": 1},
    }
    out: dict[str, Any] = {"meta": {"command": " ".join([sys.executable] + sys.argv),
                                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
                                    "device": args.device, "complete": False},
                           "config": cfg, "step_s_from_scaling": {"marginal": t_m, "conditional": t_c}}
    if args.device.startswith("cuda"):
        import torch

        out["meta"]["gpu"] = torch.cuda.get_device_name(0)
    t0 = time.time()
    tr = train_job(cfg, out=args.workdir, device=args.device, fresh=True, progress=False)
    out["train"] = {k: tr[k] for k in ("status", "steps", "ess", "ess_n", "ess_definition", "var_log_w", "kl",
                                       "n_parameters", "wall_s", "stages")}
    out["train_wall_s"] = round(time.time() - t0, 2)
    write_json(args.out, out)
    t1 = time.time()
    s = sample_job(args.workdir, n=args.n, device=args.device, n_pf=args.n_pf)
    out["sample"] = {k: s.get(k) for k in ("acceptance", "proposal_ess", "proposal_ess_n", "n_pf", "joint_ess",
                                           "pseudo_marginal_ess", "marginal_ess", "ess_definition", "observables")}
    out["sample_wall_s"] = round(time.time() - t1, 2)
    out["meta"]["complete"] = True
    write_json(args.out, out)
    print(json.dumps({k: out[k] for k in ("train_wall_s", "sample_wall_s")}), json.dumps(out["train"]["ess"]),
          json.dumps({k: out["sample"][k] for k in ("acceptance", "proposal_ess", "pseudo_marginal_ess")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
