"""The SU(3) exponential: the numba kernels (backends/_numba_sun_exp.py) against the generic closed form.

Both in one process, interleaved: the registry entries of ``sun_exp`` and ``sun_exp_mul`` (the fused ``exp(X) W``
of the flow's update) are removed for the generic rounds (every other fast path stays on). Times ``SUGroup.exp`` on random algebra elements and the Wilson flow of a real 8^4 SU(3) file, and
records how far the two flowed fields differ.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/sun_exp_bench.py --out benchmarks/results/sun_exp_numba.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import latticekit as lk
from latticekit.backends import _fast
from latticekit.observables import energy_density_clover, wilson_flow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="/work/shared/data/configs/su3_8x8x8x8.ildg")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lk.backends.configure_malloc()                      # as the jobs do (README: large temporaries)
    U, meta = lk.io.load(a.config)
    G, lat = lk.SU(3), lk.Lattice(meta.lattice)
    X = G.random_algebra(lk.backends.rng(1, backend="numpy"), (4,), lat.shape, scale=0.1)

    def flow():
        return wilson_flow(U, G, lat, 0.4, eps=0.02, measure=lambda V, t: t * t * energy_density_clover(V, G, lat))

    lk.backends.fast_path("sun_exp", X)                 # registers the built-in kernels
    names = (("sun_exp", "numpy"), ("sun_exp_mul", "numpy"))
    kerns = {k: _fast._REGISTRY[k] for k in names}

    def mode(m: str) -> None:
        for k in names:
            if m == "fast":
                _fast._REGISTRY[k] = kerns[k]
            else:
                _fast._REGISTRY.pop(k, None)

    res: dict = {"exp_s": {"fast": [], "generic": []}, "flow_s": {"fast": [], "generic": []}}
    for m in ("fast", "generic"):                       # warm-up: compilation or cache load
        mode(m)
        G.exp(X, nd=4)
        flow()
    for _ in range(a.rounds):
        for m in ("fast", "generic"):
            mode(m)
            t = time.perf_counter()
            G.exp(X, nd=4)
            res["exp_s"][m].append(time.perf_counter() - t)
            t = time.perf_counter()
            flow()
            res["flow_s"][m].append(time.perf_counter() - t)
    mode("fast")
    Vf, hf = flow()
    mode("generic")
    Vg, hg = flow()
    mode("fast")
    res["max_abs_diff_flowed_field"] = float(np.max(np.abs(Vf - Vg)))
    res["max_abs_diff_t2E"] = float(np.max(np.abs(hf["values"] - hg["values"])))
    for k in ("exp_s", "flow_s"):
        f, g = statistics.median(res[k]["fast"]), statistics.median(res[k]["generic"])
        res[k].update(median_fast=f, median_generic=g, generic_over_fast=g / f)
    res.update(
        benchmark=__doc__.splitlines()[0],
        cases={"exp": "4 x 8^4 x 4 = 65536 random algebra elements, scale 0.1",
               "flow": f"Wilson flow of {os.path.basename(a.config)} to t = 0.4, eps = 0.02, t^2 E (clover) at "
                       "every step"},
        command=" ".join([os.path.basename(sys.executable), *sys.argv]),
        machine={"cpu": platform.processor() or platform.machine(),
                 "numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "load_avg": os.getloadavg()},
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: {kk: v for kk, v in res[k].items() if kk.startswith(("median", "generic_"))}
                      for k in ("exp_s", "flow_s")}, indent=1))


if __name__ == "__main__":
    main()
