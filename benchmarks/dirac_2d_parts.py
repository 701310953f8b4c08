#!/usr/bin/env python
"""Why the 2D U(1) Wilson-Dirac kernel's cost per site depends on L: arithmetic against memory.

The numba kernel ``_wilson_dirac_u1_2d`` (``backends/_numba_dirac.py``) runs its per-configuration body
``_u1_2d_config`` (two passes over the configuration's V sites plus the wrapped entries) over chunks of
configurations. This script times, at L = 8 ... 128 on one thread, interleaved (``--rounds`` rounds, the order
reversed every other round; the VM's speed drifts by up to 30% from second to second):

    resident    the body over a few configurations (``--resident-sites`` sites in all, default 2^10 or one
                configuration, in L1/L2) again and again: the arithmetic and the per-configuration work,
                without the memory traffic of a large batch;
    cache       the library kernel over 2^18 sites (in the last-level cache), after an untimed call;
    dram        the library kernel over 2^22 sites (far outside it);
    dram_pf     as ``dram`` with a software prefetch (``llvm.prefetch``) of the next configuration's field
                and links before each configuration's passes: tests whether the small-L cost in DRAM is the
                memory latency that the hardware prefetcher leaves exposed between short configurations;
    cache_call  as ``cache`` with the body compiled as a function of its own and called per configuration
                (the kernel before 2026-12-07, when the body was inlined into the chunk loop).

All variants' outputs are checked equal to the library kernel's. ns per site; the flatness is max / min over L.

    NUMBA_NUM_THREADS=1 python benchmarks/dirac_2d_parts.py --out benchmarks/results/dirac_2d_parts.json
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


def _compiled() -> dict[str, Any]:
    import numba
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from latticekit.backends._numba_dirac import _u1_2d_config

    @intrinsic
    def prefetch(typingctx: Any, arr: Any, idx: Any) -> Any:
        """``llvm.prefetch`` (read, high locality) of the element ``arr[idx]`` of a 1D array."""
        sig = types.void(arr, idx)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [i8p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    @numba.njit
    def scratch(V, L1):  # pragma: no cover - compiled
        """The body's four half-spinor buffers (as ``_wilson_dirac_u1_2d`` allocates them)."""
        c = np.complex128
        return np.empty(V + L1, dtype=c), np.empty(V + L1, dtype=c), np.empty(V + 1, dtype=c), np.empty(V + 1, dtype=c)

    @numba.njit
    def resident(psi, U, L0, L1, cq, cr, reps, out):  # pragma: no cover - compiled
        V = L0 * L1
        n = psi.shape[0] // (2 * V)
        hn, hs, he, hw = scratch(V, L1)
        for _ in range(reps):
            for b in range(n):
                o = np.uint64(b * 2 * V)
                _u1_2d_config(out, psi, U, o, o, L0, L1, 1.0, -0.24, True, cq, cr, hn, hs, he, hw)
        return out[0]

    @numba.njit
    def with_prefetch(psi, U, L0, L1, cq, cr, out):  # pragma: no cover - compiled
        V = L0 * L1
        n = psi.shape[0] // (2 * V)
        hn, hs, he, hw = scratch(V, L1)
        for b in range(n):
            if b + 1 < n:   # the next configuration's field and links, one prefetch per 64-byte line
                p = np.uint64((b + 1) * 2 * V)
                for q in range(np.uint64(0), np.uint64(2 * V), np.uint64(4)):
                    prefetch(psi, p + q)
                    prefetch(U, p + q)
            o = np.uint64(b * 2 * V)
            _u1_2d_config(out, psi, U, o, o, L0, L1, 1.0, -0.24, True, cq, cr, hn, hs, he, hw)
        return out[0]

    body_call = numba.njit(inline="never")(_u1_2d_config.py_func)

    @numba.njit(parallel=True)
    def kernel_call(psi, U, L0, L1, cq, cr, alpha, beta, anti, cpc, out):  # pragma: no cover - compiled
        """``_wilson_dirac_u1_2d`` as it was before the body was inlined (the same loop, the body called)."""
        V = L0 * L1
        SB = psi.shape[0] // (2 * V)
        B = U.shape[0] // (2 * V)
        nc = (SB + cpc - 1) // cpc
        for c in numba.prange(nc):
            hn, hs, he, hw = scratch(V, L1)
            for sb in range(c * cpc, min(SB, c * cpc + cpc)):
                body_call(out, psi, U, np.uint64(sb * 2 * V), np.uint64((sb % B) * 2 * V), L0, L1, alpha, beta,
                          anti, cq, cr, hn, hs, he, hw)

    return {"resident": resident, "prefetch": with_prefetch, "call": kernel_call}


def _case(L: int, batch: int) -> tuple[Any, ...]:
    import latticekit as lk
    from latticekit import backends
    from latticekit.actions import WilsonDirac
    from latticekit.backends import _numba_dirac as kd

    lat = lk.Lattice((L, L))
    th = np.asarray(lk.U1.random(backends.rng(3), (batch, 2), lat.shape))
    D = WilsonDirac(th, lk.U1, lat, kappa=0.24)
    psi = np.asarray(D.random_field(backends.rng(5)))
    links = np.asarray(D._links_for_kernels())
    _, cproj, crec = kd._gamma_arrays(D._gam, False)
    cq = np.ascontiguousarray(cproj[:, :, 0])
    cr = np.ascontiguousarray(crec[:, :, 0])
    ref = kd.wilson_dirac_apply(psi, links, D._gam, 1.0, -0.24)
    return psi, links, D._gam, cq, cr, ref


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    from latticekit import backends
    from latticekit.backends import _numba_dirac as kd

    backends.configure_malloc()
    t0 = time.time()
    k = _compiled()
    calls: dict[tuple[str, int], Any] = {}
    sites: dict[tuple[str, int], int] = {}
    for L in SIZES:
        V = L * L
        nres = max(1, args.resident_sites // V)
        psi, links, gam, cq, cr, ref = _case(L, nres)
        reps = max(1, (1 << 18) // (nres * V))
        out = np.empty(psi.size, dtype=np.complex128)
        k["resident"](psi.reshape(-1), links.reshape(-1), L, L, cq, cr, 1, out)
        if not np.array_equal(out, ref.reshape(-1)):
            raise SystemExit(f"resident body differs from the library kernel at L = {L}")
        calls[("resident", L)] = (lambda a=(psi.reshape(-1), links.reshape(-1), L, L, cq, cr, reps, out):
                                  k["resident"](*a))
        sites[("resident", L)] = reps * nres * V
        for regime, tot in (("cache", args.sites), ("dram", args.sites_dram)):
            psi, links, gam, cq, cr, ref = _case(L, max(1, tot // V))
            calls[(regime, L)] = (lambda psi=psi, links=links, gam=gam:
                                  kd.wilson_dirac_apply(psi, links, gam, 1.0, -0.24))
            sites[(regime, L)] = psi.size // 2
            if regime == "cache":   # the chunking of backends/_numba_dirac.py's _u1_2d on one thread
                out = np.empty(psi.size, dtype=np.complex128)
                cpc = max(1, min(kd._U1_2D_CHUNK // V, -(-(psi.size // (2 * V)) // 4)))
                a = (psi.reshape(-1), links.reshape(-1), L, L, cq, cr, 1.0, -0.24, True, cpc, out)
                k["call"](*a)
                if not np.array_equal(out, ref.reshape(-1)):
                    raise SystemExit(f"called-body kernel differs from the library kernel at L = {L}")
                calls[("cache_call", L)] = (lambda a=a: k["call"](*a))
                sites[("cache_call", L)] = psi.size // 2
            if regime == "dram":
                out = np.empty(psi.size, dtype=np.complex128)
                k["prefetch"](psi.reshape(-1), links.reshape(-1), L, L, cq, cr, out)
                if not np.array_equal(out, ref.reshape(-1)):
                    raise SystemExit(f"prefetch variant differs from the library kernel at L = {L}")
                calls[("dram_pf", L)] = (lambda a=(psi.reshape(-1), links.reshape(-1), L, L, cq, cr, out):
                                         k["prefetch"](*a))
                sites[("dram_pf", L)] = psi.size // 2
            del ref
    variants = ("resident", "cache", "cache_call", "dram", "dram_pf")
    for fn in calls.values():
        fn()
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(args.rounds):
        for L in (SIZES if r % 2 == 0 else SIZES[::-1]):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                fn = calls[(v, L)]
                if v.startswith("cache"):
                    fn()                           # untimed: the other calls evicted this one's data
                t1 = time.perf_counter()
                fn()
                times.setdefault((v, L), []).append(time.perf_counter() - t1)
    result: dict[str, Any] = {"meta": _env_info(argv), "rounds": args.rounds, "variants": {}}
    for v in variants:
        ns = {str(L): float(np.median(times[(v, L)])) / sites[(v, L)] * 1e9 for L in SIZES}
        result["variants"][v] = {"ns_per_site_by_L": ns, "flatness": max(ns.values()) / min(ns.values()),
                                 "sites_per_call_by_L": {str(L): sites[(v, L)] for L in SIZES}}
        print(f"  {v:9s} " + "  ".join(f"L={L}: {ns[str(L)]:.2f}" for L in SIZES)
              + f"   max/min {result['variants'][v]['flatness']:.2f}", flush=True)
    result["meta"]["wall_s"] = time.time() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = script_parser(__doc__)
    ap.add_argument("--sites", type=int, default=1 << 18, help="sites per call, cache regime")
    ap.add_argument("--sites-dram", type=int, default=1 << 22, help="sites per call, DRAM regime")
    ap.add_argument("--resident-sites", type=int, default=1 << 10, help="sites kept resident (at least one config)")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    args = ap.parse_args(argv)
    if args.rounds < 1 or min(args.sites, args.sites_dram) < 128 * 128:
        ap.error("--rounds must be at least 1 and --sites, --sites-dram at least 16384 (one 128 x 128 configuration)")
    return write_result(run(args, [__file__] + argv), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
