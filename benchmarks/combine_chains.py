"""Combine independent flow-MCMC chains (several ``latticekit sample`` runs of one model, different seeds).

One chain of an independence Metropolis sampler with a low acceptance rate has a long, heavy-tailed
autocorrelation: its Gamma-method error is itself uncertain, and a single 2-3 sigma deviation cannot tell an
underestimated error from a biased sampler. K chains with different seeds are independent, so

* the mean over chains ``m = (1/K) sum_k x_k`` has the standard error ``s / sqrt(K)`` from their spread
  (``s^2`` the sample variance; no autocorrelation estimate enters), and
* ``chi^2 = sum_k (x_k - m)^2 / e_k^2`` with the chains' own Gamma errors ``e_k`` has ``K - 1`` degrees of
  freedom if those errors are right: ``chi^2 / (K - 1)`` well above 1 says they are underestimated.

Each ``sample.json`` contributes, per observable, the chain estimate (``observables``), the reweighted
estimate of the same proposals (``reweighted``) and, for the pseudofermion flows, the exact-determinant chain
and reweighting (``exact_marginal_chain``). Against a reference (an HMC ``results.json``, a benchmark record
holding one under ``hmc``, or ``--ref [label:]name=value,error``, e.g. an exact value) the deviation of the mean
in sigma combines the spread error with the reference's error.

Usage::

    python benchmarks/combine_chains.py RUN/sample_seed*.json --hmc HMC/results.json --out combined.json
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import write_json  # noqa: E402

#: the estimators read from one sample.json: label -> path of the observables dict
SOURCES = {
    "chain": ("observables",),
    "reweighted": ("observables", "*", "reweighted"),
    "exact_chain": ("exact_marginal_chain", "observables"),
    "exact_reweighted": ("exact_marginal_chain", "observables", "*", "reweighted"),
}


def estimates(sample: dict[str, Any]) -> dict[str, dict[str, tuple[float, float]]]:
    """``{source: {observable: (value, error)}}`` of one sample.json (sources absent from it are left out)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for label, path in SOURCES.items():
        node: Any = sample
        for key in path[:path.index("*")] if "*" in path else path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        rest = path[path.index("*") + 1:] if "*" in path else ()
        vals = {}
        for name, entry in node.items():
            for key in rest:
                entry = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(entry, dict) and entry.get("value") is not None and entry.get("error") is not None:
                vals[name] = (float(entry["value"]), float(entry["error"]))
        if vals:
            out[label] = vals
    return out


def combine(values: list[tuple[float, float]]) -> dict[str, float]:
    """Mean over K independent chains, its error from their spread, and the chi^2 of their own errors."""
    k = len(values)
    xs = [v for v, _ in values]
    m = sum(xs) / k
    s2 = sum((x - m) ** 2 for x in xs) / (k - 1)
    chi2 = sum((x - m) ** 2 / e ** 2 for x, e in values)
    # inverse-variance weighted mean with the chains' own errors, for comparison
    w = [1.0 / e ** 2 for _, e in values]
    wm = sum(wi * x for wi, x in zip(w, xs)) / sum(w)
    return {"k": k, "mean": m, "error": math.sqrt(s2 / k), "chi2_own_errors": chi2, "dof": k - 1,
            "weighted_mean": wm, "weighted_error": 1.0 / math.sqrt(sum(w))}


def reference(args: argparse.Namespace) -> dict[str, dict[str, tuple[float, float]]]:
    """``{label: {observable: (value, error)}}``: ``--hmc`` (label ``hmc``: a results.json, or a record with an
    ``hmc`` entry) and each ``--ref [label:]name=value,error`` (label ``ref`` when none is given)."""
    refs: dict[str, dict[str, tuple[float, float]]] = {}
    if args.hmc:
        d = json.loads(Path(args.hmc).read_text())
        obs = d.get("observables") or (d.get("hmc") or {}).get("observables")
        if not isinstance(obs, dict):
            raise SystemExit(f"--hmc {args.hmc}: no 'observables' (or 'hmc.observables') in the file")
        refs["hmc"] = {n: (float(e["value"]), float(e["error"])) for n, e in obs.items()
                       if isinstance(e, dict) and e.get("value") is not None and e.get("error") is not None}
    for item in args.ref:
        try:
            head, rest = item.split("=", 1)
            label, name = head.split(":", 1) if ":" in head else ("ref", head)
            v, e = (float(x) for x in rest.split(","))
        except ValueError:
            raise SystemExit(f"--ref {item!r}: expected [label:]name=value,error "
                             "(e.g. exact:plaquette=0.06116,0.00046)") from None
        refs.setdefault(label, {})[name] = (v, e)
    return refs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("samples", nargs="+", help="sample.json files of independent chains (globs allowed)")
    p.add_argument("--hmc", help="results.json of `latticekit run` (or a record with an 'hmc' entry)")
    p.add_argument("--ref", action="append", default=[],
                   help="[label:]name=value,error, a further reference (repeatable; label 'ref' if none)")
    p.add_argument("--out", help="write the combination as JSON here")
    args = p.parse_args(argv)
    ref = reference(args)
    files = sorted({f for pat in args.samples for f in (glob.glob(pat) or [pat])})
    if len(files) < 2:
        raise SystemExit(f"samples: need at least two sample.json files of independent chains, got {files}")
    samples = []
    for f in files:
        try:
            samples.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"samples: cannot read {f} as JSON ({exc})") from None
    seeds = [s.get("seed") for s in samples]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"samples: the chains must have different seeds, got {seeds}")
    per = [estimates(s) for s in samples]
    result: dict[str, Any] = {
        "command": "python benchmarks/combine_chains.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "files": files, "seeds": seeds,
        "per_chain": [{"seed": s.get("seed"), "n": s.get("n"), "acceptance": s.get("acceptance"),
                       **{k: s.get(k) for k in ("joint_ess", "pseudo_marginal_ess", "marginal_ess", "proposal_ess")
                          if k in s},
                       "estimates": {src: {n: list(v) for n, v in e.items()} for src, e in est.items()}}
                      for s, est in zip(samples, per)],
        "reference": {lab: {n: list(v) for n, v in r.items()} for lab, r in ref.items()},
        "combined": {},
        "definition": "mean over independent chains, error = sample standard deviation / sqrt(K); chi2_own_errors ="
                      " sum (x_k - mean)^2 / e_k^2 with each chain's own (Gamma or jackknife) error, K - 1 dof;"
                      " deviation_sigma[label] = (mean - ref) / sqrt(error^2 + ref_error^2)",
    }
    for src in SOURCES:
        names = sorted(set.intersection(*(set(e.get(src, {})) for e in per)))
        for name in names:
            c = combine([e[src][name] for e in per])
            for lab, r in ref.items():
                if name in r:
                    rv, re_ = r[name]
                    c.setdefault("deviation_sigma", {})[lab] = (c["mean"] - rv) / math.hypot(c["error"], re_)
            result["combined"].setdefault(src, {})[name] = c
    for src, obs in result["combined"].items():
        for name, c in obs.items():
            dev = "".join(f"  {d:+.2f} sigma vs {lab}" for lab, d in c.get("deviation_sigma", {}).items())
            print(f"{src:17s} {name:12s} {c['mean']:.6g} +- {c['error']:.2g} (K = {c['k']}, chi2/dof of own errors "
                  f"{c['chi2_own_errors']:.1f}/{c['dof']}){dev}")
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
