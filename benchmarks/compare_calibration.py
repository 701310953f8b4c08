"""Calibration of the p-values of ``latticekit compare`` (latticekit.analysis.histogram_compare).

Pairs of *equally distributed* ensembles are compared; a calibrated test puts 1% of the pairs below p = 0.01 and
5% below 0.05. Per pair, three observables of the same draws, ``x``, ``|x|`` and ``x^2`` (strongly correlated),
are compared one by one (``compare_histograms``) and summed two ways: as if independent (``combine_chi2``) and
with their correlation from a joint bootstrap (``joint_chi2``, what ``latticekit compare`` reports as the total).

Kinds: ``iid`` (standard normal draws) and ``ar1`` (Gaussian AR(1) chains, rho = 0.9, tau_int = 9.5).

    python benchmarks/compare_calibration.py --kind iid --pairs 200 --out benchmarks/results/compare_calibration_iid.json
    python benchmarks/compare_calibration.py --kind ar1 --pairs 200 --out benchmarks/results/compare_calibration_ar1.json
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time

import numpy as np
from scipy import signal

from bench_common import write_json
from latticekit.analysis import combine_chi2, compare_histograms, joint_chi2


def _ar1(n: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    eta = rng.standard_normal(n)
    x, _ = signal.lfilter([math.sqrt(1 - rho ** 2)], [1.0, -rho], eta, zi=[rho * rng.standard_normal()])
    return x


def _fractions(p: np.ndarray) -> dict[str, float]:
    return {"below_0.01": float(np.mean(p < 0.01)), "below_0.05": float(np.mean(p < 0.05)),
            "binomial_sd_0.05": math.sqrt(0.05 * 0.95 / p.size)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("iid", "ar1"), required=True)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    n = 4000 if a.kind == "iid" else 8000
    t0 = time.time()
    p_obs: dict[str, list[float]] = {"x": [], "|x|": [], "x^2": []}
    p_ind, p_joint, h_ind, h_joint = [], [], [], []
    for k in range(a.pairs):
        rng = np.random.default_rng(1000 + k)
        x, y = (rng.standard_normal(n), rng.standard_normal(n)) if a.kind == "iid" else \
            (_ar1(n, 0.9, rng), _ar1(n, 0.9, rng))
        fa = {"x": x, "|x|": np.abs(x), "x^2": x ** 2}
        fb = {"x": y, "|x|": np.abs(y), "x^2": y ** 2}
        cs = {o: compare_histograms(fa[o], fb[o], bins=a.bins, n_boot=a.n_boot, rng=7 * k + i)
              for i, o in enumerate(fa)}
        for o, c in cs.items():
            p_obs[o].append(c.p_value)
        ind, jt = combine_chi2(cs.values()), joint_chi2(cs, fa, fb, rng=k, n_boot=a.n_boot)
        p_ind.append(ind.p_value)
        p_joint.append(jt.p_value)
        h_ind.append(ind.dof_effective)
        h_joint.append(jt.dof_effective)
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "kind": a.kind, "draws_per_ensemble": n, "pairs": a.pairs, "bins": a.bins, "n_boot": a.n_boot,
        "per_observable": {o: _fractions(np.asarray(v)) for o, v in p_obs.items()},
        "total_independent": {**_fractions(np.asarray(p_ind)), "mean_dof_effective": float(np.mean(h_ind))},
        "total_joint": {**_fractions(np.asarray(p_joint)), "mean_dof_effective": float(np.mean(h_joint))},
        "seconds": time.time() - t0,
    }
    write_json(a.out, result)
    print(result)


if __name__ == "__main__":
    main()
