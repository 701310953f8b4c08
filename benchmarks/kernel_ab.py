#!/usr/bin/env python
"""A kernel change, timed paired: a numba kernel module of an earlier commit against the working tree's.

The module ``backends/<module>.py`` at git revision ``--rev`` is loaded under another name (its relative
imports pointed at the installed package), and its fast path ``--fn`` is called beside the present one on the
same field: first checked bit-identical, then timed interleaved (``--rounds`` rounds, the order of the two
reversed every other round, one untimed call before each timed one). For each L the ratio
new / old is the median over rounds of the per-round ratio, so the VM's drift (up to 30% from second to second)
cancels in the pair. phi^4 kernels (``phi4_action``, ``phi4_force``) in ``--nd`` dimensions on random fields of
``--sites`` sites per call: batches of L^nd configurations viewing one buffer; U(1) plaquette and force
(``u1_plaquette_cos_sum``, ``u1_wilson_force``) on random angles. ``--common`` takes ``backends/_numba_common.py``
(the helpers the kernels share) from ``--rev`` as well.

    NUMBA_NUM_THREADS=1 python benchmarks/kernel_ab.py --module _numba_phi4 --rev 8077856 --fn phi4_force \\
        --out benchmarks/results/phi4_onepass_ab_force_dram_1t.json
    NUMBA_NUM_THREADS=1 python benchmarks/kernel_ab.py --rev e93d11b --fn phi4_force --nd 4 --L 4,8,16 \\
        --out benchmarks/results/phi4_nd_ab_force_4d_dram_1t.json
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _env_info, script_parser, write_result  # noqa: E402  (shared harness)

ROOT = Path(__file__).resolve().parents[1]
FNS = ("phi4_action", "phi4_force", "u1_plaquette_cos_sum", "u1_wilson_force")


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def _import_source(name: str, src: str) -> Any:
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_old(module: str, rev: str, common: bool = False) -> Any:
    """``backends/<module>.py`` as of ``rev``, imported as ``_old_<module>`` with its relative imports
    (``from ._numba_common import ...``) taken from the installed ``latticekit.backends``, or, with ``common``,
    ``_numba_common`` from ``rev`` as well (for a change to the shared helpers)."""
    src = _git_show(rev, f"backends/{module}.py")
    if common:
        csrc = _git_show(rev, "backends/_numba_common.py").replace("from ._", "from latticekit.backends._")
        _import_source("_old__numba_common", csrc)
        src = src.replace("from ._numba_common import", "from _old__numba_common import")
    src = src.replace("from ._", "from latticekit.backends._")
    src = src.replace("from . import", "from latticekit.backends import")
    return _import_source(f"_old_{module}", src)


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    import importlib

    from latticekit import backends

    backends.configure_malloc()
    t0 = time.time()
    old = load_old(args.module, args.rev, args.common)
    new = importlib.import_module(f"latticekit.backends.{args.module}")
    u1 = args.fn.startswith("u1_")
    rng = np.random.default_rng(1)
    f = rng.uniform(-np.pi, np.pi, size=args.nd * args.sites) if u1 else rng.normal(size=args.sites)
    kappa, lam, beta = 0.25, 1.1, 2.0
    extra = {"phi4_action": (kappa, lam, args.nd), "phi4_force": (kappa, lam, args.nd),
             "u1_plaquette_cos_sum": (args.nd,), "u1_wilson_force": (beta, args.nd)}[args.fn]
    result: dict[str, Any] = {"meta": _env_info(argv), "rev": args.rev, "common": args.common, "fn": args.fn,
                              "nd": args.nd,
                              "sites": args.sites, "rounds": args.rounds, "by_L": {}}
    for L in [int(x) for x in args.L.split(",")]:
        phi = f.reshape((-1,) + ((args.nd,) if u1 else ()) + (L,) * args.nd)
        calls = {"old": lambda phi=phi: getattr(old, args.fn)(phi, *extra),
                 "new": lambda phi=phi: getattr(new, args.fn)(phi, *extra)}
        a, b = calls["old"](), calls["new"]()
        if a is None or b is None or not np.array_equal(a, b):
            raise SystemExit(f"{args.fn} at L = {L}: the two kernels' outputs differ (or one declined)")
        ts: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for v in (("old", "new") if r % 2 == 0 else ("new", "old")):
                calls[v]()                                  # untimed: data back in cache, output allocated
                t1 = time.perf_counter()
                calls[v]()
                ts[v].append(time.perf_counter() - t1)
        ratio = np.asarray(ts["new"]) / np.asarray(ts["old"])
        row = {v: float(np.median(ts[v])) / args.sites * 1e9 for v in ts}
        row = {"old_ns_per_site": row["old"], "new_ns_per_site": row["new"],
               "new_over_old": float(np.median(ratio)),
               "new_over_old_16_84": [float(np.percentile(ratio, 16)), float(np.percentile(ratio, 84))]}
        result["by_L"][str(L)] = row
        print(f"  {args.fn} L={L:4d} old {row['old_ns_per_site']:.3f} new {row['new_ns_per_site']:.3f} ns/site, "
              f"new/old {row['new_over_old']:.3f} ({row['new_over_old_16_84'][0]:.3f}-"
              f"{row['new_over_old_16_84'][1]:.3f})", flush=True)
    result["meta"]["wall_s"] = time.time() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = script_parser(__doc__)
    ap.add_argument("--module", default="_numba_phi4", help="module under backends/ (default _numba_phi4)")
    ap.add_argument("--rev", required=True, help="git revision of the earlier module")
    ap.add_argument("--fn", choices=FNS, required=True, help="the fast path to time")
    ap.add_argument("--common", action="store_true", help="take backends/_numba_common.py from --rev as well")
    ap.add_argument("--nd", type=int, default=2, help="lattice dimensions (default 2)")
    ap.add_argument("--L", default="8,16,32,64,128", help="comma-separated L (each L^nd must divide --sites)")
    ap.add_argument("--sites", type=int, default=1 << 22, help="sites per call (default 2^22: DRAM)")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved rounds")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.L.split(",")]
    if args.rounds < 1 or args.nd < 1 or any(L < 1 or args.sites % L ** args.nd for L in sizes):
        ap.error(f"--rounds and --nd must be at least 1 and every L^nd must divide --sites ({args.sites}); got --nd "
                 f"{args.nd}, --L {args.L}")
    return write_result(run(args, [__file__] + argv), args.out)


if __name__ == "__main__":
    raise SystemExit(main())
