"""Short U(1) flow training runs that compare model and optimiser variants at equal CPU time.

2D U(1), L = 8, beta = 2 (the issue's quality case), Haar prior, 16 gauge-equivariant layers by
default; Adam in float32 with a cosine learning rate over the CPU-time budget (to 1%), one torch
thread. Every quarter of the budget (and at the end) the model is evaluated in float64 on 2048
samples drawn with a fixed seed: the variance of the log-weights and the ESS. One JSON line per
run on stdout. Run by hand, two at a time on a 2-core machine, e.g.

    python benchmarks/u1_flow_variants.py --tag base >> benchmarks/results/u1_flow_variants_6min.jsonl
    python benchmarks/u1_flow_variants.py --hidden 16 --tag h16 >> benchmarks/results/u1_flow_variants_6min.jsonl
    python benchmarks/u1_flow_variants.py --impl nd --tag nd16 >> ...   # the Nd (checkerboard) layers in 2D

The curve entries are ``[cpu_s, step, var_log_w, ess]``. Results: benchmarks/README.md.
"""

import argparse
import copy
import json
import math
import time

import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow


def _log_weights_stats(model: Model, action: WilsonGaugeAction, n: int = 2048, seed: int = 999) -> tuple[float, float]:
    """var(log w) and the relative ESS of ``n`` float64 samples of a copy of ``model``."""
    m = copy.deepcopy(model).to(torch.float64)
    with torch.no_grad():
        x, lq = m.sample(n, lk.backends.rng(seed, backend="torch"))
        lw = -action.action(x) - lq
    lw = lw - lw.max()
    w = lw.exp()
    return float(lw.var()), float(w.sum() ** 2 / (w * w).sum() / len(w))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=6, help="CPU-time budget of the training steps")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", default="8,8", help="hidden channels of the context CNNs, comma separated")
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--zero-init", action="store_true", help="start every layer as the identity")
    p.add_argument("--act", default="leaky_relu")
    p.add_argument("--betas", default="0.9,0.999", help="Adam betas")
    p.add_argument("--L", type=int, default=8)
    p.add_argument("--beta", type=float, default=2.0)
    p.add_argument("--tag", default="", help="name of the run in the output line")
    p.add_argument("--impl", default="stripe", choices=["stripe", "nd"],
                   help="stripe: u1_gauge_flow masks='stripes' (Kanwar); nd: masks='checkerboard' (period 2 in 2D)")
    p.add_argument("--compile", action="store_true", help="TrainConfig.compile (compiled splines)")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lat = lk.Lattice((a.L, a.L))
    hidden = tuple(int(h) for h in a.hidden.split(",") if h)
    flow = u1_gauge_flow(lat, a.layers, masks="checkerboard" if a.impl == "nd" else "stripes", bins=a.bins,
                         hidden=hidden, kernel_size=a.kernel, act=a.act, zero_init=a.zero_init)
    model = Model(HaarPrior(lk.U1, lat), flow)
    action = WilsonGaugeAction(lk.U1, lat, a.beta)
    cfg = TrainConfig(steps=10**9, batch_size=a.batch, lr=a.lr, dtype="float32", seed=1,
                      betas=tuple(float(b) for b in a.betas.split(",")), compile=a.compile)
    tr = Trainer(model, action, cfg)
    factor = [1.0]      # cosine over the CPU-time budget, to 1% (the step count is not known in advance)
    tr.scheduler = torch.optim.lr_scheduler.LambdaLR(tr.optimizer, lambda _s: factor[0])
    budget, cpu, next_eval, curve = a.minutes * 60.0, 0.0, 0.0, []
    while cpu < budget:
        if cpu >= next_eval:
            v, e = _log_weights_stats(tr.model, action)
            curve.append((round(cpu), tr.step, round(v, 3), round(e, 3)))
            next_eval += budget / 4
        factor[0] = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(cpu / budget, 1.0)))
        t = time.process_time()
        tr.train_step()
        cpu += time.process_time() - t
    v, e = _log_weights_stats(tr.model, action)
    curve.append((round(cpu), tr.step, round(v, 3), round(e, 3)))
    print(json.dumps({"tag": a.tag, "args": vars(a), "curve": curve, "final_var": v, "final_ess": e}), flush=True)


if __name__ == "__main__":
    main()
