"""Paired timing of the U(1) flow training step with and without the row-slab stripe evaluation (one thread).

``ConvNet.forward_stripe`` evaluates the last two convolutions of a context net on row slabs when the stripe
period allows it (``_stripe_slabs``); before, only the last one was restricted to the stripe. This script
builds the architecture of ``bench_flow_peer.py`` (16 stripe layers, hidden (32, 32), 8 bins, float32, batch
1024, neumc's mask order) once and times ``Trainer.train_step`` in blocks that alternate between the present
method and the previous one (the full net up to the last layer, then the strided last convolution), in one
process with the same model, so slow phases of the machine hit both alike. Losses of the two variants are equal
to rounding (checked on one batch before timing). Both run with ``configure_malloc`` as the jobs do.

Run by hand::

    python benchmarks/stripe_slabs_paired.py --L 8 --out /tmp/stripe_slabs.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import torch

import latticekit as lk
from latticekit.flows.nets import _CONV_FN, ConvNet, periodic_pad
from latticekit.utils import atomic_write

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_flow_peer import build_latticekit  # noqa: E402

NEW = ConvNet.forward_stripe


def previous_forward_stripe(self: ConvNet, x: torch.Tensor, axis: int, period: int, offset: int) -> torch.Tensor:
    """The method before the row slabs (non-separable nets): full net up to the last layer, strided last one."""
    nd = self.nd
    L = x.shape[2 + axis]
    rows = torch.arange(offset, L, period, device=x.device)
    last = self.net[-1]
    h = x
    for mod in list(self.net)[:-1]:
        h = mod(h)
    k = last.kernel_size[0]
    p = k // 2
    idx = torch.remainder(rows[:, None] + torch.arange(-p, p + 1, device=x.device)[None, :], L).reshape(-1)
    h = h.index_select(2 + axis, idx)
    if p:
        h = periodic_pad(h, p, [2 + a for a in range(nd) if a != axis])
    stride = [1] * nd
    stride[axis] = k
    return _CONV_FN[nd](h, last.weight, last.bias, stride=tuple(stride))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=8)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--block-steps", type=int, default=3)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    malloc = lk.backends.configure_malloc()
    cfg = argparse.Namespace(layers=16, hidden=(32, 32), kernel=3, knots=9, beta=1.0, lr=1e-3, dtype="float32",
                             compile=False, seed=1, batch=a.batch)
    tr, model = build_latticekit(a.L, cfg)
    # one batch through both methods: the same log q
    with torch.no_grad():
        g = lk.backends.rng(7, backend="torch")
        x, _ = model.sample(64, g)
        ConvNet.forward_stripe = NEW
        lq_new = model.log_prob(x)
        ConvNet.forward_stripe = previous_forward_stripe
        lq_old = model.log_prob(x)
    diff = float((lq_new - lq_old).abs().max())
    variants = {"slabs": NEW, "previous": previous_forward_stripe}
    t: dict[str, list[float]] = {k: [] for k in variants}
    la0 = os.getloadavg()
    for k, f in variants.items():            # warm-up
        ConvNet.forward_stripe = f
        tr.train_step()
    names = list(variants)
    for b in range(a.blocks):
        for k in (names if b % 2 == 0 else names[::-1]):
            ConvNet.forward_stripe = variants[k]
            t0 = time.process_time()
            for _ in range(a.block_steps):
                tr.train_step()
            t[k].append((time.process_time() - t0) / a.block_steps)
    ConvNet.forward_stripe = NEW
    ratios = [x / y for x, y in zip(t["slabs"], t["previous"])]
    out: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                           "torch": torch.__version__, "threads": 1, "configure_malloc": malloc, "L": a.L,
                           "batch": a.batch, "log_q_max_abs_diff": diff, "cpu_s_per_step": t,
                           "median_cpu_s_per_step": {k: statistics.median(v) for k, v in t.items()},
                           "ratio_slabs_over_previous": {"median": statistics.median(ratios), "min": min(ratios),
                                                         "max": max(ratios)},
                           "loadavg_start": la0, "loadavg_end": os.getloadavg()}
    atomic_write(a.out, (json.dumps(out, indent=1) + "\n").encode())
    print(json.dumps({k: out[k] for k in ("log_q_max_abs_diff", "median_cpu_s_per_step", "ratio_slabs_over_previous",
                                          "loadavg_start", "loadavg_end")}, indent=1))


if __name__ == "__main__":
    main()
