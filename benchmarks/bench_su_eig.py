#!/usr/bin/env python
"""Cost of the per-matrix Cayley shift of ``SU(N).eig`` (2026-12-05 fix), measured inside one process.

``SU(N).eig`` picks, per matrix, the best of ``N + 1`` Cayley shifts by ``|det(1 + W)|`` before the Hermitian
``eigh`` (latticekit/groups/sun.py). This script times, on the same matrices and interleaved (median of
``--reps``):

* ``eig``: the whole decomposition as the library runs it;
* ``shift_selection``: the part the fix added, ``N + 1`` determinants ``|det(1 + e^{-i alpha_j} U)|`` and the
  argmax (the same expressions as the library, timed on their own);
* ``spectral_step``: forward + backward of one SU(3) spectral coupling stack (``sun_gauge_flow``, 4 layers) on
  the same lattice, which calls ``eig`` once per layer, to put the cost in the context of a training step.

The added cost of the fix is ``shift_selection``; the decomposition before it ran the rest (one shift).

    python benchmarks/bench_su_eig.py --out benchmarks/results/su_eig_shift_cost.json

Writes JSON atomically with the command line and the machine's load.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import latticekit as lk
from latticekit.backends import array_namespace
from latticekit.groups.sun import _CAYLEY_ALPHA

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, write_json  # noqa: E402


def shift_selection(xp: Any, G: Any, Ug: Any) -> Any:
    """The N + 1 determinants and the argmax of ``SU(N).eig`` (matrices on the last two axes)."""
    eye = xp.eye(G.N, dtype=Ug.dtype)
    phases = [complex(math.cos(a), -math.sin(a))
              for a in (_CAYLEY_ALPHA + 2.0 * math.pi * j / (G.N + 1) for j in range(G.N + 1))]
    dets = xp.stack([xp.abs(xp.linalg.det(eye + Ug * p)) for p in phases], axis=0)
    return xp.argmax(dets, axis=0)


def timed(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    for f in fns.values():                      # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):                       # interleaved
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--N", type=int, default=3)
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    G, lat = lk.SU(args.N), lk.Lattice((args.L, args.L))
    out: dict[str, Any] = {"benchmark": "su_eig_shift_cost", "command": "python " + " ".join(sys.argv),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine_at_start": machine(),
                           "settings": vars(args), "results": []}
    n_mat = args.batch * 2 * lat.volume
    for backend, dtype in (("torch", torch.complex64), ("torch", torch.complex128), ("numpy", np.complex128)):
        rng = lk.backends.rng(0, backend=backend)
        U = G.random(rng, (args.batch, 2), lat.shape, precision="single" if dtype == torch.complex64 else "double")
        xp = array_namespace(U)
        Ug = G._group_last(U, 2)                  # (*B, *S, N, N), as eig arranges it
        t = timed({"eig": lambda: G.eig(U, nd=2), "shift_selection": lambda: shift_selection(xp, G, Ug)}, args.reps)
        row = {"backend": backend, "dtype": str(dtype), "matrices": n_mat, "eig_s": t["eig"],
               "shift_selection_s": t["shift_selection"], "shift_fraction_of_eig": t["shift_selection"] / t["eig"],
               "eig_us_per_matrix": 1e6 * t["eig"] / n_mat}
        out["results"].append(row)
        print(row, flush=True)
    # the context: one SU(3) spectral coupling stack, forward + backward (eig once per layer)
    from latticekit.flows import HaarPrior, Model, sun_gauge_flow

    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 4, hidden=(8,))).to(torch.float32)
    r = lk.backends.rng(1, backend="torch")
    calls = {"n": 0, "matrices": 0}
    orig = type(G).eig

    def counting(self: Any, U: Any, *, nd: int) -> Any:
        calls["n"] += 1
        calls["matrices"] += U.numel() // (self.N * self.N)
        return orig(self, U, nd=nd)

    def step() -> None:
        x, lq = model.sample(args.batch, r)
        lq.mean().backward()

    type(G).eig = counting
    try:
        step()
        eig_calls, eig_matrices = calls["n"], calls["matrices"]
    finally:
        type(G).eig = orig
    t = timed({"step": step}, max(3, args.reps // 3))
    out["spectral_step"] = {"layers": 4, "batch": args.batch, "dtype": "float32", "step_s": t["step"],
                            "eig_calls_per_step": eig_calls, "eig_matrices_per_step": eig_matrices}
    c64 = next(r for r in out["results"] if r["dtype"] == str(torch.complex64))
    # the shift's share of the step: its time per matrix (complex64, measured above) x the matrices the step
    # decomposes (the shift selection is elementwise over matrices, so its cost scales with their number)
    out["spectral_step"]["shift_share_estimate"] = eig_matrices * c64["shift_selection_s"] / n_mat / t["step"]
    print(out["spectral_step"], flush=True)
    out["machine_at_end"] = machine()
    write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
