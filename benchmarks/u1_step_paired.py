"""Paired, interleaved timing of a 2D U(1) flow training step (L = 8, batch 64, hidden (16,), compiled
splines, one thread) with the previous implementation (torch circular F.pad in the context nets, the
per-tensor Adam loop) and the current one (periodic_pad by index_select, fused Adam).

Both trainers live in one process; blocks of 20 steps alternate between them (order swapped every
block), so slow phases of a shared machine hit both alike. Reports the medians and the spread of the
per-block ratio. Run by hand:

    python benchmarks/u1_step_paired.py --layers 16,24 --out benchmarks/results/u1_step_paired.json
"""
import argparse, json, os, sys, time, statistics, torch, latticekit as lk
import torch.nn.functional as F
import latticekit.flows.nets as nets
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow
p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--layers", default="16,24")
p.add_argument("--blocks", type=int, default=12)
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(1)
new_pad = nets.periodic_pad
def old_pad(x, p, axes):
    axes = sorted(a % x.ndim for a in axes); pad = []
    for d in reversed(range(x.ndim - 2, x.ndim)):
        pad += [p, p] if d in axes else [0, 0]
    return F.pad(x, pad, mode="circular")
results = []
for layers in [int(x) for x in a.layers.split(",")]:
    lat = lk.Lattice((8, 8))
    trs = {}
    for name, fused in (("old", False), ("new", True)):
        torch.manual_seed(0)
        model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, layers, bins=8, hidden=(16,)))
        trs[name] = Trainer(model, WilsonGaugeAction(lk.U1, lat, 2.0),
                            TrainConfig(steps=10**9, batch_size=64, lr=2e-3, dtype="float32", seed=1, compile=True, fused=fused))
    pads = {"old": old_pad, "new": new_pad}
    for name in trs:
        nets.periodic_pad = pads[name]
        for _ in range(20): trs[name].train_step()
    res = {"old": [], "new": []}
    for rep in range(a.blocks):
        for name in (("old", "new") if rep % 2 == 0 else ("new", "old")):
            nets.periodic_pad = pads[name]
            t = time.process_time()
            for _ in range(20): trs[name].train_step()
            res[name].append((time.process_time() - t) / 20)
    ratios = [o / n for o, n in zip(res["old"], res["new"])]
    results.append({"layers": layers, "old_s_per_step": res["old"], "new_s_per_step": res["new"],
                    "median_ratio_old_over_new": statistics.median(ratios)})
    print(layers, "layers: old median", round(statistics.median(res["old"]), 4), "new median", round(statistics.median(res["new"]), 4),
          "paired ratio old/new median", round(statistics.median(ratios), 3), "min/max", round(min(ratios), 3), round(max(ratios), 3))
out = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "torch": torch.__version__,
       "results": results}
with open(a.out + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(a.out + ".tmp", a.out)
