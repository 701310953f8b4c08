"""Paired, interleaved timing of a 2D U(1) flow training step (L = 8, batch 64, hidden (16,), compiled
splines, one thread) with the previous implementation (torch circular F.pad in the context nets, the
per-tensor Adam loop) and the one current when it was written (periodic_pad by index_select, fused Adam; periodic_pad is one
cat per axis since bench_flow_peer.py).

Both trainers live in one process; blocks of 20 steps alternate between them (order swapped every
block), so slow phases of a shared machine hit both alike. Reports the medians and the spread of the
per-block ratio. Run by hand:

    python benchmarks/u1_step_paired.py --layers 16,24 --out benchmarks/results/u1_step_paired.json
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import latticekit as lk
import latticekit.flows.nets as nets
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow
from latticekit.utils import atomic_write

BLOCK = 20  # training steps per timed block


def circular_pad(x: torch.Tensor, p: int, axes: list[int]) -> torch.Tensor:
    """The previous padding: torch's circular ``F.pad`` over the two trailing (lattice) axes."""
    wanted = {a % x.ndim for a in axes}
    pad: list[int] = []
    for d in reversed(range(x.ndim - 2, x.ndim)):
        pad += [p, p] if d in wanted else [0, 0]
    return F.pad(x, pad, mode="circular")


def compare(layers: int, blocks: int) -> dict:
    """Old and new trainer side by side; blocks of BLOCK steps alternate, order swapped every block."""
    lat = lk.Lattice((8, 8))
    trainers, pads = {}, {"old": circular_pad, "new": nets.periodic_pad}
    for name, fused in (("old", False), ("new", True)):
        torch.manual_seed(0)
        model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, layers, bins=8, hidden=(16,)))
        trainers[name] = Trainer(model, WilsonGaugeAction(lk.U1, lat, 2.0),
                                 TrainConfig(steps=10**9, batch_size=64, lr=2e-3, dtype="float32", seed=1,
                                             compile=True, fused=fused))
    per_step: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for name in trainers:                      # warm-up (spline compilation, allocator)
            nets.periodic_pad = pads[name]
            for _ in range(BLOCK):
                trainers[name].train_step()
        for rep in range(blocks):
            for name in (("old", "new") if rep % 2 == 0 else ("new", "old")):
                nets.periodic_pad = pads[name]
                t = time.process_time()
                for _ in range(BLOCK):
                    trainers[name].train_step()
                per_step[name].append((time.process_time() - t) / BLOCK)
    finally:
        nets.periodic_pad = pads["new"]
    ratios = [o / n for o, n in zip(per_step["old"], per_step["new"])]
    print(f"{layers} layers: median CPU s/step old {statistics.median(per_step['old']):.4f}, new "
          f"{statistics.median(per_step['new']):.4f}; old/new per block: median {statistics.median(ratios):.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}", flush=True)
    return {"layers": layers, "old_s_per_step": per_step["old"], "new_s_per_step": per_step["new"],
            "median_ratio_old_over_new": statistics.median(ratios)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", default="16,24", help="comma-separated stack depths")
    p.add_argument("--blocks", type=int, default=12, help="timed blocks per trainer")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    results = [compare(int(n), a.blocks) for n in a.layers.split(",") if n.strip()]
    out = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "torch": torch.__version__,
           "results": results}
    atomic_write(a.out, (json.dumps(out, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
