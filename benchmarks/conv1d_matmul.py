"""float64 1D convolutions on the CPU: torch's fallback against one matrix product (``conv_pieces._conv1d_matmul``).

The 4D separable convolutions of the QCD flows (:class:`latticekit.flows.ConvNet` with ``separable=True``) are
periodic 1D convolutions along one lattice axis with the other axes folded into the batch. torch has no oneDNN
float64 convolution; its fallback multiplies one sample at a time, ``(C_out, C_in k) x (C_in k, L_out)``. For the
short axes of 4D lattices (``L_out`` = 2, 4, 8) that is thousands of products of a few columns. The alternative
builds the ``(N L_out, C_in k)`` window matrix once and makes one product. This script times both, forward and
forward + backward (gradients of input, weight and bias), on the shapes the models use and on longer axes, and
records where the product wins (``conv_pieces.MATMUL_MAX_LENGTH``).

Shapes (``N`` = batch x sites of the other axes): the pseudofermion context trunk (6 -> 8 channels) and head
(its widening convolution, 8 -> 1764 at ``n_PT = 6``, ``H = 4``) of the 2^4 QCD example, the marginal model's
16 -> 16 and the paper's 32 -> 32, each at ``L`` = 2, 4, 8, 16 and 32 (kernel 3, periodic padding 1: input
``L + 2``), with ``N`` chosen so that the output has about 2^21 numbers. One thread, median of ``--repeat`` runs
after one warm-up.

    python benchmarks/conv1d_matmul.py --out benchmarks/results/conv1d_matmul.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import finish, machine, write_json  # noqa: E402

from latticekit.flows.conv_pieces import MATMUL_MAX_LENGTH, _conv1d_matmul  # noqa: E402

CHANNELS = [(8, 1764), (6, 8), (16, 16), (32, 32)]
LENGTHS = [2, 4, 8, 16, 32]
OUTPUT_NUMBERS = 2 ** 21


def _median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def case(c_in: int, c_out: int, length: int, repeat: int) -> dict[str, Any]:
    n = max(1, OUTPUT_NUMBERS // (c_out * length))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c_in, length + 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c_out, c_in, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True)
    ref, mm = F.conv1d(x, w, b), _conv1d_matmul(x, w, b)
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    g_ref = torch.autograd.grad(ref, (x, w, b), grad)
    g_mm = torch.autograd.grad(mm, (x, w, b), grad)
    pairs = zip((mm.detach(),) + g_mm, (ref.detach(),) + g_ref)
    rel = max(float((a - r).abs().max() / r.abs().max()) for a, r in pairs)
    row: dict[str, Any] = {"c_in": c_in, "c_out": c_out, "L_out": length, "N": n, "max_rel_difference": rel}
    with torch.no_grad():
        row["forward_ms"] = {"torch_conv1d": _median_ms(lambda: F.conv1d(x, w, b), repeat),
                             "matmul": _median_ms(lambda: _conv1d_matmul(x, w, b), repeat)}
    row["forward_backward_ms"] = {
        "torch_conv1d": _median_ms(lambda: torch.autograd.grad(F.conv1d(x, w, b), (x, w, b), grad), repeat),
        "matmul": _median_ms(lambda: torch.autograd.grad(_conv1d_matmul(x, w, b), (x, w, b), grad), repeat)}
    for k in ("forward_ms", "forward_backward_ms"):
        row[k]["speedup"] = row[k]["torch_conv1d"] / row[k]["matmul"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out: dict[str, Any] = {"benchmark": "conv1d_matmul", "command": " ".join([sys.executable] + sys.argv),
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
                           "matmul_max_length": MATMUL_MAX_LENGTH, "cases": []}
    for c_in, c_out in CHANNELS:
        for length in LENGTHS:
            row = case(c_in, c_out, length, args.repeat)
            out["cases"].append(row)
            print(f"{c_in:>3} -> {c_out:<5} L_out={length:<3} N={row['N']:<7} "
                  f"forward x{row['forward_ms']['speedup']:.2f}  "
                  f"forward+backward x{row['forward_backward_ms']['speedup']:.2f}", flush=True)
            write_json(args.out, out)
    finish(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
