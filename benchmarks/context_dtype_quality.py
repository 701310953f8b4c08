"""Flow quality with bfloat16 context networks against float32 ones: the same training, ESS and time.

Two latticekit trainers of the neumc-comparison architecture (``bench_flow_peer.py``: 2D U(1), 16 stripe layers,
hidden ``32, 32``, 8 spline bins, float32, Adam lr 1e-3, beta 1) start from the same parameters and prior seed
and differ only in ``TrainConfig.context_dtype`` (None or ``"bfloat16"``). They train in alternating blocks of
``--block-steps`` steps on one thread (so that a slow phase of the machine hits both), ``--steps`` steps each;
the CPU time of each is summed. Then each model draws ``--samples`` fresh configurations (float32, its own
context setting, the same seed) and the Kish ESS / N of their importance weights is reported, together with the
losses of the last 10 steps and the ESS's bootstrap error. The ESS is the project's one definition (docs/flows.md, "ESS"): Kish ESS / N of N
independent flow draws.

Run by hand (not part of the test suite)::

    python benchmarks/context_dtype_quality.py --L 8 --steps 100 --out benchmarks/results/context_dtype_quality_L8.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_flow_peer as peer  # noqa: E402

import latticekit as lk  # noqa: E402
from latticekit.utils import atomic_write  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--block-steps", type=int, default=5)
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.steps < 10 or args.L % 4 or args.block_steps < 1:
        ap.error("--steps must be >= 10, --L a multiple of 4, --block-steps >= 1")
    torch.set_num_threads(1)
    malloc = lk.backends.configure_malloc()
    base = dict(layers=16, knots=9, hidden=(32, 32), kernel=3, beta=1.0, batch=args.batch, lr=1e-3,
                dtype="float32", seed=args.seed, compile=False, compile_layers=False)
    runs: dict[str, Any] = {}
    for name in ("float32", "bfloat16"):
        tr, model = peer.build_latticekit(args.L, argparse.Namespace(context_dtype=name, **base))
        runs[name] = {"trainer": tr, "model": model, "cpu_s": 0.0, "losses": []}
    out: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "configure_malloc": malloc, "loadavg_start": os.getloadavg(),
                           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "architecture": {**{k: v for k, v in base.items() if k not in ("compile", "compile_layers")},
                                            "hidden": list(base["hidden"]), "L": args.L},
                           "ess_definition": "Kish ESS / N of N fresh flow draws (float32, each model's own context "
                                             "dtype, the same seed)",
                           "results": {}}
    done = 0
    while done < args.steps:
        n = min(args.block_steps, args.steps - done)
        for name in (("float32", "bfloat16") if (done // args.block_steps) % 2 == 0 else ("bfloat16", "float32")):
            r = runs[name]
            t = time.process_time()
            for _ in range(n):
                r["losses"].append(float(r["trainer"].train_step()["loss"]))
            r["cpu_s"] += time.process_time() - t
        done += n
        print(f"{done} steps:", {k: round(v["cpu_s"], 1) for k, v in runs.items()}, flush=True)
    for name, r in runs.items():
        tr, model = r["trainer"], r["model"]
        g = lk.backends.rng(args.seed + 7, backend="torch")
        lw = []
        with torch.no_grad():
            for i in range(0, args.samples, 1024):
                x, log_q = model.sample(min(1024, args.samples - i), g)
                lw.append(-tr.action_fn(x) - log_q)
        log_w = torch.cat(lw).double()
        # the ESS's statistical error: the spread of the Kish ESS / N over bootstrap resamples of the draws
        gen = torch.Generator().manual_seed(args.seed)
        boot = torch.tensor([peer.kish(log_w[torch.randint(len(log_w), (len(log_w),), generator=gen)])
                             for _ in range(200)])
        out["results"][name] = {"steps": len(r["losses"]), "cpu_s": r["cpu_s"],
                                "cpu_s_per_step": r["cpu_s"] / len(r["losses"]),
                                "loss_mean_last10": sum(r["losses"][-10:]) / 10,
                                "ess_per_n": peer.kish(log_w), "ess_per_n_bootstrap_error": float(boot.std()),
                                "var_log_w": float(log_w.var()),
                                "samples": args.samples}
        print(name, out["results"][name], flush=True)
    f, b = out["results"]["float32"], out["results"]["bfloat16"]
    out["bfloat16_over_float32"] = {"cpu_s_per_step": b["cpu_s_per_step"] / f["cpu_s_per_step"],
                                    "ess_per_n": b["ess_per_n"] / f["ess_per_n"]}
    out["loadavg_end"] = os.getloadavg()
    out["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write(args.out, (json.dumps(out, indent=1) + "\n").encode())
    print(out["bfloat16_over_float32"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
