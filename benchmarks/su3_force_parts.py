"""Where the time of the 4D SU(3) numba Wilson force goes: the kernel with one part removed at a time.

The force kernel of ``backends/_numba_su3.py`` (``_force_kernel3``, written by ``tools/gen_numba_sun.py``) does,
per row of sites, 44 row copies into the blocked planar buffers (``_loadb3``: 4 ``U_d(x)``, 4 ``U_d(x - d)``,
6 per plane), 12 staple-pair loops of 4 SU(3) products each (``_staples_row3``) and 4 force loops of one
product, the projection and the store (``_force_row3``). This script regenerates the module text with the
generator, removes the calls of one part from ``_force_kernel3`` (the line becomes ``pass``; nothing else
changes), and times the variants interleaved, round after round, in the same process:

    full           the kernel as in the library
    no_T_loads     without the 36 per-plane copies (the staples then read stale buffers: timing only)
    no_loads       without all 44 copies
    no_staples     without the 12 staple-pair loops (48 of the 52 products per site)
    no_force_rows  without the 4 force loops
    loads_only     without staples and force loops

The differences to ``full`` are the cost of each part. Because compiled-code and buffer placement change
from process to process (measured: the same variant differs by up to 10% between processes, by 2% within
one), the timing runs in ``--procs`` fresh processes and the JSON keeps each one's medians. The in-run
float64 matmul rate (NumPy/BLAS, one thread, 1024 x 1024) is the practical FMA peak the products are
compared with. Results are timing-only for the reduced variants; ``full`` is checked against the library
kernel (bit-identical).

    NUMBA_NUM_THREADS=1 python benchmarks/su3_force_parts.py --L 16 --procs 3 \\
        --out benchmarks/results/su3_force_parts_L16.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: variant name -> regular expressions of the call lines removed from ``_force_kernel3``
VARIANTS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no_T_loads": (r"_loadb3\(T\[",),
    "no_loads": (r"_loadb3\(",),
    "no_staples": (r"_staples_row3\(",),
    "no_force_rows": (r"_force_row3\(",),
    "loads_only": (r"_staples_row3\(", r"_force_row3\("),
}
PRODUCTS_STAPLES = 48      # per site: 12 staple pairs x 4 products
PRODUCTS_FORCE = 4         # per site: one U_mu A_mu per link
FLOPS_PER_PRODUCT = 216    # 3x3 complex: 27 complex multiply-adds = 27 x 8
COPIES = 44                # row copies per site (4 + 4 + 6 x 6)


def variant_text(drop: tuple[str, ...]) -> str:
    """The generated SU(3) module (hand-written head included) with the lines matching ``drop`` in
    ``_force_kernel3`` replaced by ``pass``."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gen_numba_sun as g
    text = g.generate(3)
    head = ("from __future__ import annotations\nimport numpy as np\n"
            "from latticekit.backends._numba_common import _jit, _prange, _shift\n"
            f"_BW = {g.BW}\n\n")
    before, sep, kern = text.partition("def _force_kernel3")
    if not sep:
        raise RuntimeError("tools/gen_numba_sun.py: no _force_kernel3 in the generated text")
    lines = []
    removed = 0
    for ln in kern.split("\n"):
        if any(re.search(p, ln) for p in drop):
            lines.append(ln[:len(ln) - len(ln.lstrip())] + "pass")
            removed += 1
        else:
            lines.append(ln)
    if drop and removed == 0:
        raise RuntimeError(f"no line of _force_kernel3 matches {drop}: the generator changed")
    return head + before + sep + "\n".join(lines)


def su3_field(L: int, seed: int) -> Any:
    """A random SU(3)-valued (unitary, by QR) 4D field ``(1, 4, 3, 3, L, L, L, L)`` complex128."""
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = (1, 4, 3, 3) + (L,) * 4
    a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    m = np.moveaxis(a.reshape(1, 4, 3, 3, -1), -1, 2)
    q, _ = np.linalg.qr(m)
    return np.ascontiguousarray(np.moveaxis(q, 2, -1).reshape(shape))


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    import numpy as np
    a = np.random.default_rng(0).normal(size=(n, n))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(reps))
    return 2.0 * n ** 3 / best / 1e9


def _timed(f: Callable[[], Any]) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time every variant (modules already written into ``args.moddir``) in this process."""
    import numpy as np
    sys.path.insert(0, args.moddir)
    from latticekit.backends import configure_malloc
    from latticekit.backends import _numba_su3
    from latticekit.backends._numba_common import _chunking, _geometry
    configure_malloc()
    U = su3_field(args.L, args.seed)
    nd = 4
    _, _, dims, K, R, Lx = _geometry(U, nd, 3)
    rpc, _ = _chunking(1, R, Lx, 256)      # as sun_wilson_force
    Uf = U.reshape(1, nd, 3, 3, R, Lx).view(np.float64)
    F = np.empty(U.shape, dtype=np.complex128)
    Ff = F.reshape(1, nd, 3, 3, R, Lx).view(np.float64)
    mods = {name: importlib.import_module(f"su3parts_{name}") for name in VARIANTS}
    ref = np.empty_like(F)
    _numba_su3._force_kernel3(Uf, dims, K, rpc, 1.0, ref.reshape(1, nd, 3, 3, R, Lx).view(np.float64))
    for name, mod in mods.items():          # compile (or load from the cache) and warm up
        mod._force_kernel3(Uf, dims, K, rpc, 1.0, Ff)
        if name == "full" and not np.array_equal(F, ref):
            raise RuntimeError("the regenerated full kernel differs from the library's")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, mod in mods.items():
            dt = _timed(lambda: mod._force_kernel3(Uf, dims, K, rpc, 1.0, Ff))
            times[name].append(dt / (R * Lx) * 1e9)
    return {"ns_per_site": {n: float(np.median(v)) for n, v in times.items()},
            "ns_per_site_spread": {n: [float(min(v)), float(max(v))] for n, v in times.items()},
            "matmul_gflops": matmul_gflops(), "geometry": {"K": int(K), "rows": int(R), "row_length": int(Lx),
                                                          "rows_per_chunk": int(rpc)}}


def parts(ns: dict[str, float], matmul: float) -> dict[str, float]:
    """The cost of each part (ns per site) from one process's medians, and the product rate."""
    full = ns["full"]
    staples = full - ns["no_staples"]
    force_rows = full - ns["no_force_rows"]
    loads = full - ns["no_loads"]
    return {"full": full, "loads_44": loads, "per_copy": loads / COPIES, "T_loads_36": full - ns["no_T_loads"],
            "staples_48_products": staples, "force_rows": force_rows,
            "staples_gflops": PRODUCTS_STAPLES * FLOPS_PER_PRODUCT / staples,
            "staples_fraction_of_matmul": PRODUCTS_STAPLES * FLOPS_PER_PRODUCT / staples / matmul,
            "loads_only": ns["loads_only"], "loads_share": loads / full}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=16, help="4D lattice extent (default 16)")
    p.add_argument("--procs", type=int, default=3, help="fresh processes (default 3)")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds per process (default 9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON file to write (atomically)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--moddir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.L < 2 or args.procs < 1 or args.rounds < 1:
        p.error("--L must be >= 2, --procs and --rounds >= 1")
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if not args.out:
        p.error("--out is required")
    t0 = time.time()
    load0 = list(os.getloadavg())
    moddir = tempfile.mkdtemp(prefix="su3parts_")
    for name, drop in VARIANTS.items():
        with open(os.path.join(moddir, f"su3parts_{name}.py"), "w") as fh:
            fh.write(variant_text(drop))
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "1"),
               OMP_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "1"),
               MKL_NUM_THREADS=os.environ.get("NUMBA_NUM_THREADS", "1"))
    runs = []
    for i in range(args.procs):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--moddir", moddir, "--L", str(args.L),
               "--rounds", str(args.rounds), "--seed", str(args.seed)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return out.returncode
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["parts"] = parts(r["ns_per_site"], r["matmul_gflops"])
        runs.append(r)
        print(f"process {i}: " + ", ".join(f"{k} {v:.3g}" for k, v in r["parts"].items()), flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_common import machine, write_json
    keys = runs[0]["parts"].keys()
    summary = {k: {"median": sorted(r["parts"][k] for r in runs)[len(runs) // 2],
                   "min": min(r["parts"][k] for r in runs), "max": max(r["parts"][k] for r in runs)} for k in keys}
    write_json(args.out, {
        "command": " ".join(["NUMBA_NUM_THREADS=" + os.environ.get("NUMBA_NUM_THREADS", "(unset)"), "python"]
                            + [os.path.relpath(os.path.abspath(__file__), ROOT)] + (argv or sys.argv[1:])),
        "what": "4D SU(3) Wilson force, numba: the kernel with one part removed at a time (ns per site, "
                "one configuration); parts = full minus the variant without it",
        "L": args.L, "numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "machine": machine(),
        "load_avg_start": load0, "load_avg_end": list(os.getloadavg()), "wall_s": time.time() - t0,
        "variants": {n: list(d) for n, d in VARIANTS.items()}, "processes": runs, "summary": summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
