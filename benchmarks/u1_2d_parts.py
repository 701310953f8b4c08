#!/usr/bin/env python
"""Where the 2D U(1) plaquette kernel's time goes at each L: the parts of ``backends/_numba_u1_2d.py`` timed alone.

The numba kernel ``_u1_2d_plaquette_flat`` (docs/kernels.md) takes one of two routes per chunk of whole
configurations, chosen by the row length (``_U1_FUSED_L1`` = 32):

    two passes (short rows)  ``angles``: theta_01 of every site into a chunk buffer (additions, the wrapped
                             sites fixed up per configuration), then ``cos``: the sin/cos polynomial in place
                             over the whole chunk, then ``sums``: the per-configuration sums;
    one pass (long rows)     ``fused``: angles and polynomial in one loop per configuration
                             (``_u1_2d_trig_rows``: rows [0, L0 - 1) flat, the last row, the row ends through
                             a small buffer), then ``sums``.

This script calls those compiled parts directly, on one thread, over ``--sites`` sites per call (the same
work at every L), and times every (L, part) interleaved, ``--rounds`` rounds, the order reversed every other
round (the VM's speed drifts by up to 30% from second to second), each timed call after an untimed one (so
the field is in the last-level cache, as in the ``cache`` regime of ``bench_scaling.py``). It answers why the
kernel's cost per site is not flat in L: which part grows at small L, and what the polynomial alone costs. ``cos`` and ``sums`` run
on a buffer of random angles in [-3, 3] (their cost does not depend on L beyond the chunk length).

    NUMBA_NUM_THREADS=1 python benchmarks/u1_2d_parts.py --out benchmarks/results/u1_2d_parts.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _env_info, script_parser, write_result  # noqa: E402  (shared harness)

SIZES = (8, 16, 32, 64, 128)
PARTS = ("angles", "cos", "sums", "fused")


def _compiled() -> dict[str, Any]:
    """Serial drivers around the library's compiled parts (numba functions called from numba)."""
    import numba

    from latticekit.backends._numba_gauge import _U1_SITES_2D
    from latticekit.backends._numba_u1_2d import _sum8_at, _u1_2d_angles, _u1_2d_trig_rows, _u1_cos_inplace

    @numba.njit
    def angles(f, L0, L1, B, cpc, buf):  # pragma: no cover - compiled
        V = L0 * L1
        for c in range(0, B, cpc):
            for b in range(c, min(B, c + cpc)):
                _u1_2d_angles(buf, (b - c) * V, f, 2 * b * V, 0, L0, L0, L1)
        return buf[0]

    @numba.njit
    def cos(buf, n, reps):  # pragma: no cover - compiled
        s = 0
        for _ in range(reps):
            s += _u1_cos_inplace(buf, 0, n)
        return s

    @numba.njit
    def sums(buf, V, n, reps):  # pragma: no cover - compiled
        s = 0.0
        for _ in range(reps):
            for b in range(0, n, V):
                s += _sum8_at(buf, b, V)
        return s

    @numba.njit
    def fused(f, L0, L1, B, cpc, buf, t):  # pragma: no cover - compiled
        V = L0 * L1
        for c in range(0, B, cpc):
            for b in range(c, min(B, c + cpc)):
                _u1_2d_trig_rows(buf, (b - c) * V, f, 2 * b * V, 0, L0, L0, L1, t, False)
        return buf[0]

    return {"angles": angles, "cos": cos, "sums": sums, "fused": fused, "chunk": _U1_SITES_2D}


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    import latticekit as lk
    from latticekit import backends

    t0 = time.time()
    k = _compiled()
    tot = args.sites
    calls: dict[tuple[int, str], Any] = {}
    for L in SIZES:
        B = tot // (L * L)
        V = L * L
        th = np.asarray(lk.U1.random(backends.rng(3), (B, 2), (L, L))).reshape(-1)
        cpc = max(1, k["chunk"] // V)
        n = cpc * V                                   # one chunk: the buffer the two-pass route works in
        buf = np.empty(max(n, V) + 8)
        rnd = np.random.default_rng(0).uniform(-3.0, 3.0, buf.size)
        t = np.empty(L + 8)
        reps = max(1, tot // n)

        def fresh(rnd: Any = rnd, buf: Any = buf) -> Any:
            buf[:] = rnd                               # cos works in place: the same angles every call
            return buf

        calls[(L, "angles")] = (lambda th=th, L=L, B=B, cpc=cpc, buf=buf: k["angles"](th, L, L, B, cpc, buf))
        calls[(L, "cos")] = (lambda n=n, reps=reps, fresh=fresh: k["cos"](fresh(), n, reps))
        calls[(L, "sums")] = (lambda V=V, n=n, reps=reps, buf=buf: k["sums"](buf, V, n, reps))
        calls[(L, "fused")] = (lambda th=th, L=L, B=B, cpc=cpc, buf=buf, t=t: k["fused"](th, L, L, B, cpc, buf, t))
        for fn in (calls[(L, p)] for p in PARTS):
            fn()
            fn()
    sites = {L: (tot // (L * L)) * L * L for L in SIZES}
    times: dict[tuple[int, str], list[float]] = {}
    for r in range(args.rounds):
        for L in (SIZES if r % 2 == 0 else SIZES[::-1]):
            for p in PARTS:
                fn = calls[(L, p)]
                fn()                                   # untimed: the other sizes' calls evicted this one's data
                t1 = time.perf_counter()
                fn()
                times.setdefault((L, p), []).append(time.perf_counter() - t1)
    rows = []
    for L in SIZES:
        row: dict[str, Any] = {"L": L, "sites": sites[L]}
        for p in PARTS:
            ts = np.asarray(times[(L, p)])
            # cos and sums run on whole chunks reps times: tot // n * n sites, equal to sites[L] for these sizes
            row[f"{p}_ns_per_site"] = float(np.median(ts)) / sites[L] * 1e9
        row["two_pass_ns_per_site"] = row["angles_ns_per_site"] + row["cos_ns_per_site"] + row["sums_ns_per_site"]
        row["one_pass_ns_per_site"] = row["fused_ns_per_site"] + row["sums_ns_per_site"]
        rows.append(row)
        print(f"  L = {L:3d}: angles {row['angles_ns_per_site']:.2f}  cos {row['cos_ns_per_site']:.2f}  "
              f"sums {row['sums_ns_per_site']:.2f}  fused {row['fused_ns_per_site']:.2f}   two-pass "
              f"{row['two_pass_ns_per_site']:.2f}  one-pass {row['one_pass_ns_per_site']:.2f} ns/site", flush=True)
    meta = _env_info(argv)
    meta["wall_s"] = time.time() - t0
    return {"meta": meta, "sites_per_call": tot, "rounds": args.rounds, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = script_parser(__doc__)
    ap.add_argument("--sites", type=int, default=1 << 18, help="sites per call (default 2^18: in cache)")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds over all (L, part)")
    args = ap.parse_args(argv)
    if args.sites < 128 * 128 or args.rounds < 1:
        ap.error(f"--sites must be at least 16384 (one 128 x 128 configuration) and --rounds at least 1, "
                 f"got {args.sites} and {args.rounds}")
    return write_result(run(args, [__file__] + argv), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
