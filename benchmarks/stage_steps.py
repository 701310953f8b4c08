"""Time the training steps of every stage of a staged flow job (pseudofermion and qcd4d families) from its config.

For paired comparisons of two versions of the code on one machine: run this file once per checkout (``PYTHONPATH``
pointing at the checkout) on the same config, one after the other, and compare the medians; the losses of the
timed steps are recorded so that a change meant to keep the arithmetic can be checked to rounding. Each stage
starts from the freshly built model (the marginal stage's weights are not trained first), so the conditional
stage's numbers are per-step costs, not a continuation of a run.

    PYTHONPATH=. python benchmarks/stage_steps.py examples/qcd4d_nf2.toml --steps 8 --out /tmp/new.json

One torch thread unless ``--threads``; ``--stages`` picks stages by index (default: all).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import finish, machine, write_json  # noqa: E402


def _commit(path: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per stage (after one warm-up step)")
    ap.add_argument("--stages", type=int, nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import latticekit
    from latticekit.app.config import FlowConfig
    from latticekit.app.flows.models import build_flow
    from latticekit.app.flows.pf_staged import pf_stages
    from latticekit.backends import configure_malloc
    from latticekit.flows.train import Trainer

    configure_malloc()  # as `latticekit train` does
    cfg = FlowConfig.from_file(args.config)
    model, _, _ = build_flow(cfg)
    stages = pf_stages(cfg, torch.device("cpu"))  # the stages of the pseudofermion and qcd4d jobs
    code = os.path.dirname(os.path.dirname(os.path.abspath(latticekit.__file__)))
    out: dict[str, Any] = {"benchmark": "stage_steps", "command": " ".join([sys.executable] + sys.argv),
                           "config": os.path.abspath(args.config), "code": code, "commit": _commit(code),
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "stages": []}
    for i, st in enumerate(stages):
        if args.stages is not None and i not in args.stages:
            continue
        st.prepare(model)
        c = dataclasses.replace(st.config, steps=args.steps + 1, checkpoint_every=0, checkpoint_path=None)
        tr = Trainer(model, st.action, c)
        tr.train_step()
        times, losses = [], []
        for _ in range(args.steps):
            t = time.perf_counter()
            m = tr.train_step()
            times.append(time.perf_counter() - t)
            losses.append(float(m["loss"]))
        row = {"stage": st.name, "batch_size": c.batch_size, "step_s_median": statistics.median(times),
               "step_s": times, "losses": losses}
        out["stages"].append(row)
        print(f"{st.name}: {row['step_s_median']:.3f} s/step (batch {c.batch_size})", flush=True)
        write_json(args.out, out)
    finish(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
