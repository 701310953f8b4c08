#!/usr/bin/env python
"""Short write streams: the cost per site of plain loops over configurations of V = L x L sites against L.

The 2D Wilson-Dirac kernel (``backends/_numba_dirac.py``, ``_u1_2d_config``) writes both spin components of a
site in one loop: two output streams V entries apart, each V entries long. Its cost per site depends on L
(``dirac_2d_parts.py``) although its arithmetic does not. This script times loops with no arithmetic beyond one
addition per entry, over complex128 arrays laid out as the kernel's field (configuration, spin, site), to see
which access pattern alone makes the cost depend on L on this machine. Variants, per configuration at offset
``o`` (spin components at ``o`` and ``o + V``):

    flat         one loop over the whole array, ``O[i] = P[i] + U[i]`` (no configurations: the reference);
    one_stream   one loop over the configuration's 2V entries, ``O[o + i] = P[o + i] + U[o + i]``;
    two_loops    one loop per spin component: ``O[o + x] = P[o + x] + U[o + x]``, then the same at ``o + V``;
    both_spins   one loop writing both components, as the Dirac kernel's pass B: ``O[o + x] = ...`` and
                 ``O[o + V + x] = ...`` in the same iteration (two read streams per input, two write streams);
    reads_two    one loop per component, each reading both components: ``O[o + x] = P[o + x] + P[o + V + x]``,
                 then ``O[o + V + x] = P[o + x] - P[o + V + x]`` (two read streams, one write stream);
    writes_two   one loop reading one stream and writing two: ``O[o + x] = P[o + x]``, ``O[o + V + x] = -P[o + x]``.

By default every L uses the same three arrays (only the loops' view of them changes), so that the sizes differ in
nothing but the loops; ``--arrays-per-L`` allocates new arrays for each L instead, as ``bench_scaling.py`` does,
which measures where the arrays landed as well. Timing as ``bench_scaling.py``: every size built first,
``--rounds`` interleaved rounds with the order reversed every other round (the VM's speed drifts by up to 30% from
second to second), in the cache regime an untimed call before each timed one. ns per site (a site: its two spin
components); the flatness is max / min over L.

    NUMBA_NUM_THREADS=1 python benchmarks/write_streams.py --out benchmarks/results/write_streams.json
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
VARIANTS = ("flat", "one_stream", "two_loops", "both_spins", "reads_two", "writes_two")


def _compiled() -> dict[str, Any]:
    import numba

    # uint64 offsets as in the Dirac kernel (no negative-index wrap-around checks in the loops)
    @numba.njit
    def flat(P, U, V, O):  # pragma: no cover - compiled
        for i in range(P.shape[0]):
            O[i] = P[i] + U[i]

    @numba.njit
    def one_stream(P, U, V, O):  # pragma: no cover - compiled
        for b in range(P.shape[0] // (2 * V)):
            o = np.uint64(b * 2 * V)
            for i in range(np.uint64(0), np.uint64(2 * V)):
                O[o + i] = P[o + i] + U[o + i]

    @numba.njit
    def two_loops(P, U, V, O):  # pragma: no cover - compiled
        for b in range(P.shape[0] // (2 * V)):
            o = np.uint64(b * 2 * V)
            o1 = o + np.uint64(V)
            for x in range(np.uint64(0), np.uint64(V)):
                O[o + x] = P[o + x] + U[o + x]
            for x in range(np.uint64(0), np.uint64(V)):
                O[o1 + x] = P[o1 + x] + U[o1 + x]

    @numba.njit
    def both_spins(P, U, V, O):  # pragma: no cover - compiled
        for b in range(P.shape[0] // (2 * V)):
            o = np.uint64(b * 2 * V)
            o1 = o + np.uint64(V)
            for x in range(np.uint64(0), np.uint64(V)):
                O[o + x] = P[o + x] + U[o + x]
                O[o1 + x] = P[o1 + x] + U[o1 + x]

    @numba.njit
    def reads_two(P, U, V, O):  # pragma: no cover - compiled
        for b in range(P.shape[0] // (2 * V)):
            o = np.uint64(b * 2 * V)
            o1 = o + np.uint64(V)
            for x in range(np.uint64(0), np.uint64(V)):
                O[o + x] = P[o + x] + P[o1 + x]
            for x in range(np.uint64(0), np.uint64(V)):
                O[o1 + x] = P[o + x] - P[o1 + x]

    @numba.njit
    def writes_two(P, U, V, O):  # pragma: no cover - compiled
        for b in range(P.shape[0] // (2 * V)):
            o = np.uint64(b * 2 * V)
            o1 = o + np.uint64(V)
            for x in range(np.uint64(0), np.uint64(V)):
                a = P[o + x]
                O[o + x] = a
                O[o1 + x] = -a

    return {"flat": flat, "one_stream": one_stream, "two_loops": two_loops, "both_spins": both_spins,
            "reads_two": reads_two, "writes_two": writes_two}


def _expected(v: str, P: Any, U: Any, V: int) -> Any:
    """What variant ``v`` writes, computed with NumPy (the check before timing)."""
    if v in ("flat", "one_stream", "two_loops", "both_spins"):
        return P + U
    p = P.reshape(-1, 2, V)
    if v == "reads_two":
        return np.stack([p[:, 0] + p[:, 1], p[:, 0] - p[:, 1]], axis=1).reshape(-1)
    return np.stack([p[:, 0], -p[:, 0]], axis=1).reshape(-1)


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from latticekit import backends

    backends.configure_malloc()
    t0 = time.time()
    k = _compiled()
    rng = np.random.default_rng(1)
    result: dict[str, Any] = {"meta": _env_info(argv), "rounds": args.rounds, "regimes": {}}
    for regime, tot in (("cache", args.sites), ("dram", args.sites_dram)):
        arrays = {}
        for L in SIZES:
            if args.arrays_per_L or not arrays:
                P = rng.standard_normal(2 * tot) + 1j * rng.standard_normal(2 * tot)
                U = np.exp(1j * rng.standard_normal(2 * tot))
                O = np.empty_like(P)
            arrays[L] = (P, U, O)
            for v in VARIANTS:
                k[v](P, U, L * L, arrays[L][2])
                if not np.array_equal(arrays[L][2], _expected(v, P, U, L * L)):
                    raise SystemExit(f"{v} differs from its NumPy expression at L = {L}")
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for L in (SIZES if r % 2 == 0 else SIZES[::-1]):
                for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                    a = (*arrays[L][:2], L * L, arrays[L][2])
                    if regime == "cache":
                        k[v](*a)                   # untimed: the other calls evicted this one's data
                    t1 = time.perf_counter()
                    k[v](*a)
                    times.setdefault((v, L), []).append(time.perf_counter() - t1)
        res = {}
        for v in VARIANTS:
            ns = {str(L): float(np.median(times[(v, L)])) / tot * 1e9 for L in SIZES}
            res[v] = {"ns_per_site_by_L": ns, "flatness": max(ns.values()) / min(ns.values())}
            print(f"  {regime:5s} {v:10s} " + "  ".join(f"L={L}: {ns[str(L)]:.2f}" for L in SIZES)
                  + f"   max/min {res[v]['flatness']:.2f}", flush=True)
        result["regimes"][regime] = {"sites_per_call": tot, "variants": res}
        del arrays
    result["meta"]["wall_s"] = time.time() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = script_parser(__doc__)
    ap.add_argument("--sites", type=int, default=1 << 18, help="sites per call, cache regime")
    ap.add_argument("--sites-dram", type=int, default=1 << 22, help="sites per call, DRAM regime")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    ap.add_argument("--arrays-per-L", action="store_true", help="new arrays for every L (as bench_scaling.py "
                    "allocates them) instead of the same three arrays, viewed as configurations of each size")
    args = ap.parse_args(argv)
    if args.rounds < 1 or min(args.sites, args.sites_dram) < 128 * 128:
        ap.error("--rounds must be at least 1 and --sites, --sites-dram at least 16384 (one 128 x 128 configuration)")
    return write_result(run(args, [__file__] + argv), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
