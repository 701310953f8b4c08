"""Exact references for the 2^4 QCD example that share no code with HMC or the flows: reweighted gauge fields.

``--nd 2`` (or 3) does the same for SU(3) in fewer dimensions, e.g. the 2D point of ``examples/su3_2d_nf2.toml``:

    python benchmarks/qcd4d_exact_reference.py --nd 2 --L 8 --beta 6 --kappa 0.265 --method heatbath \
        --chains 64 --meas 100 --hmc su3-hmc/results.json --out benchmarks/results/su3_2d_heatbath_reweighted_L8.json

On the example's 2^4 lattice (SU(3), beta = 1, kappa = 0.1, Nf = 2, antiperiodic time) the expectation value of an
observable O is ``<O> = E_Haar[O w] / E_Haar[w]`` with ``w = exp(-S_g(U)) det(D D^dag)``: Haar-random gauge fields
(``SU(3).random``), the Wilson gauge action (``WilsonGaugeAction``) and the exact determinant of the Wilson-Dirac
operator from its dense 192 x 192 matrix (``WilsonDirac``, ``linalg.logdet_normal``: an LU slogdet, where the
pseudofermion flows' targets use eigenvalues of the normal operator and HMC a CG-solved pseudofermion action).
Reweighting estimate with jackknife errors (``analysis.reweight``) and the Kish ESS of the weights; the NumPy
backend (the numba Wilson-Dirac kernel), in batches.

A second estimate with tamer weights (``--method heatbath``): independent heatbath chains of the *pure gauge*
theory at the same beta (``latticekit.mc.Heatbath``, one heatbath and two overrelaxation sweeps per step), whose
measurements are reweighted by ``det(D D^dag)`` alone; errors by a jackknife over the chains (each chain one
block, so the autocorrelation inside a chain is accounted for). ``--pion`` also measures the pion correlator
``C_pi_t0 .. C_pi_t(L/2)`` on these fields (the ``wilson_nf2`` theory's measurement: point source at the origin,
even/odd CG to 1e-10) and reweights it alike: a reference for the pion correlator of HMC and the flows whose gauge
fields share nothing with either:

    python benchmarks/qcd4d_exact_reference.py --nd 2 --L 8 --beta 6 --kappa 0.265 --method heatbath \
        --chains 64 --meas 100 --therm 20 --pion --hmc su3-hmc/results.json \
        --out benchmarks/results/su3_2d_heatbath_reweighted_pion_L8.json

    python benchmarks/qcd4d_exact_reference.py --method haar --n 40960 --hmc qcd4d-hmc/results.json \
        --out benchmarks/results/qcd4d_haar_reference_L2.json
    python benchmarks/qcd4d_exact_reference.py --method heatbath --chains 128 --meas 100 --hmc qcd4d-hmc/results.json \
        --out benchmarks/results/qcd4d_heatbath_reweighted_L2.json

(``qcd4d-hmc``: the HMC run of ``examples/qcd4d_nf2_hmc.toml``, for the deviation in the JSON.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import latticekit as lk
from latticekit.actions import WilsonDirac, WilsonGaugeAction
from latticekit.analysis import ess, reweight
from latticekit.linalg import logdet_normal
from latticekit.observables import average_plaquette, pion_correlator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200000, help="Haar fields (default 200000)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--L", type=int, default=2)
    p.add_argument("--nd", type=int, default=4, help="dimensions (2: the 2D SU(3) point of examples/su3_2d_nf2.toml)")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--kappa", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--method", choices=("haar", "heatbath"), default="haar")
    p.add_argument("--chains", type=int, default=256, help="heatbath: independent chains")
    p.add_argument("--meas", type=int, default=200, help="heatbath: measurements per chain")
    p.add_argument("--therm", type=int, default=20, help="heatbath: steps before the first measurement")
    p.add_argument("--every", type=int, default=2, help="heatbath: steps between measurements")
    p.add_argument("--pion", action="store_true",
                   help="heatbath: also the pion correlator C_pi_t0..C_pi_t(L/2) (point source, CG, as the theory "
                        "measures it), reweighted alike")
    p.add_argument("--hmc", help="results.json of the HMC run of the same theory, for the comparison")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.n < 2 or a.batch < 1 or a.L < 2 or a.nd not in (2, 3, 4) or not 0 < a.kappa < 0.5:
        # kappa is not limited to 1/(2 nd): a (nearly) singular D only gives a (nearly) zero weight here
        p.error("--n >= 2, --batch >= 1, --L >= 2, --nd in 2, 3, 4 and 0 < --kappa < 1/2 are required")
    t0 = time.time()
    G, lat = lk.SU(3), lk.Lattice((a.L,) * a.nd)
    gauge = WilsonGaugeAction(G, lat, a.beta)
    rng = lk.backends.rng(a.seed, backend="numpy")
    if a.method == "heatbath":
        return _heatbath(a, G, lat, rng, t0)
    sg, ld, plaq = [], [], []
    for start in range(0, a.n, a.batch):
        b = min(a.batch, a.n - start)
        U = G.random(rng, (b, a.nd), lat.shape)
        sg.append(np.asarray(gauge.action(U)))
        ld.append(_logdet(U, G, lat, a.kappa))
        plaq.append(np.asarray(average_plaquette(U, G, lat)))
    S, LD, pl = np.concatenate(sg), np.concatenate(ld), np.concatenate(plaq)
    lw = -S + LD
    r = reweight(pl, lw)
    r0 = reweight(pl, -S)                           # the pure gauge theory at the same beta, for scale
    out = {"command": " ".join(["python"] + [os.path.relpath(os.path.abspath(__file__), os.getcwd())]
                               + (argv if argv is not None else sys.argv[1:])),
           "what": "Haar fields reweighted by exp(-S_g) det(D D^dag)", "lattice": list(lat.shape), "beta": a.beta,
           "kappa": a.kappa, "nf": 2,
           "n": a.n, "seed": a.seed, "kish_ess_per_sample": float(ess(lw)),
           "plaquette": {"value": float(r.value), "error": float(r.error)},
           "plaquette_pure_gauge": {"value": float(r0.value), "error": float(r0.error),
                                    "kish_ess_per_sample": float(ess(-S))},
           "machine": machine(), "wall_s": time.time() - t0}
    _finish(a, out, r.value, r.error)
    return 0


def _logdet(U: np.ndarray, G: object, lat: lk.Lattice, kappa: float) -> np.ndarray:
    """``log det(D D^dag) = 2 log|det D|`` (Nf = 2) from the dense Wilson-Dirac matrix, antiperiodic in time."""
    return np.asarray(logdet_normal(WilsonDirac(U, G, lat, kappa=kappa, antiperiodic=True)))


def _finish(a: argparse.Namespace, out: dict, value: float, error: float) -> None:
    if a.hmc:
        h = _hmc_observables(a.hmc)["plaquette"]
        out["hmc"] = {"path": a.hmc, "value": h["value"], "error": h["error"],
                      "deviation_sigma": (h["value"] - value) / float(np.hypot(h["error"], error))}
    write_json(a.out, out)
    print(f"plaquette {value:.5f} +- {error:.5f} ({a.method}); "
          + (f"HMC {out['hmc']['value']:.5f} +- {out['hmc']['error']:.5f}, {out['hmc']['deviation_sigma']:+.2f} sigma"
             if a.hmc else ""))


def _heatbath(a: argparse.Namespace, G: object, lat: lk.Lattice, rng: object, t0: float) -> int:
    from latticekit.mc import Heatbath

    if min(a.chains, a.meas, a.every) < 1 or a.therm < 0:
        raise SystemExit("--chains, --meas, --every >= 1 and --therm >= 0 are required")
    hb = Heatbath(G, lat, a.beta, rng=rng, n_heatbath=1, n_overrelax=2)
    U = lk.gauge.cold_gauge_field(G, lat, (a.chains,))
    if a.therm:
        U, _ = hb.run(U, a.therm)
    ld = np.empty((a.meas, a.chains))
    pl = np.empty((a.meas, a.chains))
    n_t = lat.shape[0] // 2 + 1
    pi = np.empty((a.meas, a.chains, n_t)) if a.pion else None
    for m in range(a.meas):
        U, _ = hb.run(U, a.every)
        ld[m] = _logdet(U, G, lat, a.kappa)
        pl[m] = np.asarray(average_plaquette(U, G, lat))
        if pi is not None:
            # the measurement of the wilson_nf2 theory (theories/wilson_nf2.py), on these independent fields
            D = WilsonDirac(U, G, lat, kappa=a.kappa, antiperiodic=True)
            pi[m] = np.asarray(pion_correlator(D, tol=1e-10, maxiter=4000))[:, :n_t]
    # <O>_{Nf=2} = <O det>_0 / <det>_0 over all measurements; jackknife over chains (blocks)
    w = np.exp(ld - ld.max())
    value, error = _reweighted_jackknife(pl, w)
    pj = pl.mean(0)                                  # the pure gauge plaquette, chain means
    flat = w.reshape(-1)
    out = {"command": " ".join(["python"] + [os.path.relpath(os.path.abspath(__file__), os.getcwd())] + sys.argv[1:]),
           "what": "pure-gauge heatbath chains reweighted by det(D D^dag)", "lattice": list(lat.shape),
           "beta": a.beta, "kappa": a.kappa, "nf": 2, "chains": a.chains, "meas": a.meas, "therm": a.therm,
           "every": a.every, "seed": a.seed,
           "kish_ess_per_sample": float(flat.sum() ** 2 / (flat.size * (flat ** 2).sum())),
           "plaquette": {"value": float(value), "error": error},
           "plaquette_pure_gauge": {"value": float(pj.mean()), "error": float(pj.std(ddof=1) / np.sqrt(a.chains))},
           "machine": machine(), "wall_s": time.time() - t0}
    if pi is not None:
        hmc = _hmc_observables(a.hmc)
        for t in range(n_t):
            v, e = _reweighted_jackknife(pi[:, :, t], w)
            entry: dict = {"value": v, "error": e}
            h = hmc.get(f"C_pi_t{t}")
            if h is not None:
                entry["hmc"] = {"value": h["value"], "error": h["error"],
                                "deviation_sigma": (h["value"] - v) / float(np.hypot(h["error"], e))}
            out[f"C_pi_t{t}"] = entry
            print(f"C_pi_t{t} {v:.5f} +- {e:.5f}" + (f"; HMC {h['value']:.5f} +- {h['error']:.5f}, "
                                                     f"{entry['hmc']['deviation_sigma']:+.2f} sigma" if h else ""))
    _finish(a, out, float(value), error)
    return 0


def _reweighted_jackknife(obs: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """``sum O w / sum w`` over ``(meas, chains)`` arrays and its jackknife error over the chains (one block each)."""
    num, den = (obs * w).sum(0), w.sum(0)
    value = num.sum() / den.sum()
    jk = (num.sum() - num) / (den.sum() - den)
    n = obs.shape[1]
    return float(value), float(np.sqrt((n - 1) / n * ((jk - jk.mean()) ** 2).sum()))


def _hmc_observables(path: str | None) -> dict:
    if not path:
        return {}
    import json
    with open(path) as fh:
        return json.load(fh)["observables"]


if __name__ == "__main__":
    raise SystemExit(main())
