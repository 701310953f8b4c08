"""Two ways to cut the convolution time of the 2D gauge flow layers, timed against the present one (one thread).

The context net of ``bench_flow_peer.py`` (``2 -> 32 -> 32 -> 25``, 3 x 3 periodic kernels, LeakyReLU, float32,
batch 1024) evaluated, forward and backward with input gradients, on one stripe ``x_0 = 1 (mod 4)``:

* ``current``: :meth:`latticekit.flows.nets.ConvNet.forward_stripe` (the full net up to the last layer, the last
  convolution on the stripe rows only, by a strided convolution over the gathered rows);
* ``slab0`` / ``slab1``: all convolutions from layer ``j`` (0 or 1) on row slabs folded into the batch: the
  ``2 (D - j) + 1`` rows around each stripe row are gathered and every later convolution runs unpadded along
  axis 0, so layer ``i`` evaluates ``2 (D - i) - 1`` rows per stripe row (the middle convolution 3 of 4 rows:
  25% fewer FLOPs in the largest layer);
* ``full``: the whole net everywhere, then the stripe selected.

And one 32 -> 32 layer as ``F.conv2d`` (oneDNN) against ``unfold`` + matrix product (im2col + GEMM).
All variants are checked against ``current`` before timing (max abs difference recorded). Blocks of steps
alternate between variants; CPU time (``process_time``) per step, medians over blocks.

``--pieces``: instead, the same context net in float64 (the dtype of gauge-flow sampling) evaluated on the whole
lattice, forward without gradients (sampling) and forward + backward (float64 training), with every convolution
in one call and in batch pieces of at most ``conv_pieces.COLUMN_BYTES`` of column buffer
(:mod:`latticekit.flows.conv_pieces`), under the jobs' allocator setting: wall, user and system time and minor
page faults per call, alternating blocks.

Run by hand::

    python benchmarks/conv_variants.py --out /tmp/conv_variants.json
    python benchmarks/conv_variants.py --pieces --L 32 --batch 1024 --blocks 4 --steps 2 --out /tmp/conv_pieces.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from latticekit.flows import conv_pieces
from latticekit.flows.nets import ConvNet, periodic_pad
from latticekit.utils import atomic_write


def slab_fn(net: ConvNet, j: int, L: int, period: int, offset: int) -> Callable[[torch.Tensor], torch.Tensor]:
    convs = [m for m in net.net if isinstance(m, torch.nn.Conv2d)]
    acts = [m for m in net.net if not isinstance(m, torch.nn.Conv2d)]
    D = len(convs)
    W = 2 * (D - j) + 1
    rows = torch.arange(offset, L, period)
    n = rows.numel()
    idx = torch.remainder(rows[:, None] + torch.arange(-(W // 2), W // 2 + 1)[None, :], L).reshape(-1)

    def f(x: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        h = x
        for i in range(j):
            h = acts[i](convs[i](h))
        C = h.shape[1]
        h = h.index_select(2, idx).reshape(N, C, n, W, L).transpose(1, 2).reshape(N * n, C, W, L)
        for i in range(j, D):
            h = F.conv2d(periodic_pad(h, 1, [3]), convs[i].weight, convs[i].bias)
            if i < D - 1:
                h = acts[i](h)
        return h.reshape(N, n, -1, L).transpose(1, 2)
    return f


def timed(fns: dict[str, Callable[[], Any]], blocks: int, steps: int) -> dict[str, float]:
    for f in fns.values():
        f()
    t: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for b in range(blocks):
        for k in (names if b % 2 == 0 else names[::-1]):
            t0 = time.process_time()
            for _ in range(steps):
                fns[k]()
            t[k].append((time.process_time() - t0) / steps)
    return {k: statistics.median(v) for k, v in t.items()}


def pieces(a: argparse.Namespace, out: dict[str, Any]) -> None:
    """The float64 context net with its convolutions in one call against in pieces (module docstring)."""
    import resource

    from latticekit.backends import configure_malloc

    out["configure_malloc"] = configure_malloc()
    out["column_bytes"] = conv_pieces.COLUMN_BYTES
    net = ConvNet(2, 2, 25, hidden=(32, 32)).to(torch.float64)
    x = torch.randn(a.batch, 2, a.L, a.L, dtype=torch.float64)
    limits = {"one call": 2 ** 62, "pieces": conv_pieces.COLUMN_BYTES}
    if a.column_mb:   # pieces of several sizes (labels "pieces N MB"); the library's default is COLUMN_BYTES
        default = conv_pieces.COLUMN_BYTES
        limits = {"one call": 2 ** 62, **{f"pieces {mb:g} MB": int(mb * 2 ** 20) for mb in a.column_mb}}
        out["column_bytes_default"] = default

    def run(mode: str, limit: int) -> None:
        conv_pieces.COLUMN_BYTES = limit
        if mode == "forward":
            with torch.no_grad():
                net(x)
        else:
            net.zero_grad()
            net(x).square().sum().backward()
    refs = {}
    for label, limit in limits.items():
        conv_pieces.COLUMN_BYTES = limit
        with torch.no_grad():
            refs[label] = net(x)
    out["max_abs_diff_forward"] = max(float((refs[k] - refs["one call"]).abs().max()) for k in refs)
    rows: list[dict[str, Any]] = []
    for mode in ("forward", "forward_backward"):
        for label, limit in limits.items():
            run(mode, limit)                                            # warm-up
        for b in range(a.blocks):
            for label in (list(limits) if b % 2 == 0 else list(limits)[::-1]):
                r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                for _ in range(a.steps):
                    run(mode, limits[label])
                w1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                rows.append({"mode": mode, "convolution": label, "block": b,
                             "wall_ms": (w1 - w0) / a.steps * 1e3,
                             "user_ms": (r1.ru_utime - r0.ru_utime) / a.steps * 1e3,
                             "system_ms": (r1.ru_stime - r0.ru_stime) / a.steps * 1e3,
                             "minor_faults": (r1.ru_minflt - r0.ru_minflt) / a.steps})
    conv_pieces.COLUMN_BYTES = out.get("column_bytes_default", limits.get("pieces"))
    out["blocks"] = rows
    keys = ("wall_ms", "user_ms", "system_ms", "minor_faults")
    out["median"] = {f"{m}, {lab}": {k: statistics.median(r[k] for r in rows if (r["mode"], r["convolution"]) == (m, lab))
                                     for k in keys}
                     for m in ("forward", "forward_backward") for lab in limits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=8)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", required=True)
    p.add_argument("--pieces", action="store_true", help="float64 context net: convolutions in one call vs in pieces")
    p.add_argument("--column-mb", type=float, nargs="+", default=None,
                   help="with --pieces: time pieces of these column-buffer bounds (MB) beside the one call")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    L, N = a.L, a.batch
    out: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                           "torch": torch.__version__, "threads": 1, "L": L, "batch": N,
                           "loadavg_start": os.getloadavg()}
    if a.pieces:
        pieces(a, out)
        out["loadavg_end"] = os.getloadavg()
        atomic_write(a.out, (json.dumps(out, indent=1) + "\n").encode())
        print(json.dumps(out["median"], indent=1))
        return
    net = ConvNet(2, 2, 25, hidden=(32, 32))
    x = torch.randn(N, 2, L, L, requires_grad=True)
    variants = {"current": lambda x: net.forward_stripe(x, 0, 4, 1),
                "full": lambda x: net(x)[:, :, 1::4],
                "slab0": slab_fn(net, 0, L, 4, 1), "slab1": slab_fn(net, 1, L, 4, 1)}
    ref = variants["current"](x)
    out["net_max_abs_diff"] = {k: float((f(x) - ref).detach().abs().max()) for k, f in variants.items()}

    def step(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def g() -> None:
            net.zero_grad()
            x.grad = None
            f(x).square().sum().backward()
        return g
    t = timed({k: step(f) for k, f in variants.items()}, a.blocks, a.steps)
    out["net_s_per_step"] = t
    out["net_ratio_to_current"] = {k: v / t["current"] for k, v in t.items()}

    C = O = 32
    w = torch.randn(O, C, 3, 3, requires_grad=True)
    bias = torch.randn(O, requires_grad=True)
    h = torch.randn(N, C, L, L, requires_grad=True)

    def direct(h: torch.Tensor) -> torch.Tensor:
        return F.conv2d(periodic_pad(h, 1, [2, 3]), w, bias)

    def gemm(h: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(periodic_pad(h, 1, [2, 3]), 3)                 # (N, C 9, L L)
        return (torch.matmul(w.reshape(O, -1), cols) + bias[:, None]).reshape(N, O, L, L)
    r = direct(h)
    out["layer_max_abs_diff_gemm"] = float((gemm(h) - r).detach().abs().max())
    g = torch.randn_like(r)

    def lstep(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def s() -> None:
            h.grad = w.grad = bias.grad = None
            f(h).backward(g)
        return s
    tl = timed({"conv2d": lstep(direct), "unfold_matmul": lstep(gemm)}, a.blocks, a.steps)
    flops = 3 * 2 * N * L * L * C * O * 9     # forward, input gradient, weight gradient
    out["layer_s_per_step"] = tl
    out["layer_gflops_per_s"] = {k: flops / v / 1e9 for k, v in tl.items()}
    out["loadavg_end"] = os.getloadavg()
    atomic_write(a.out, (json.dumps(out, indent=1) + "\n").encode())
    print(json.dumps({k: out[k] for k in ("net_ratio_to_current", "layer_s_per_step", "layer_gflops_per_s")}, indent=1))


if __name__ == "__main__":
    main()
