"""Pseudo-marginal estimates against N_pf on the same gauge-field proposals (small lattices, exact determinants).

``latticekit sample --n-pf K`` runs one pseudo-marginal chain; to see how its estimate approaches the exact one
as ``N_pf`` grows, this script draws gauge fields from a trained pseudofermion-family model with ``--n-pf``
pseudofermions each (``pf_weights``, eqs. 42-46 of arXiv:2207.08945) and keeps, per field, the plaquette, the
exact marginal log weight (dense ``log det M``, eq. 19) and ``log w_Npf`` for ``N_pf = 1, 2, 4, ..., --n-pf``
(the averages of the first ``N_pf`` of the same draws). Then, on blocks of ``--block`` consecutive proposals (one
block = one chain of that length), for every ``N_pf``:

* the self-normalised (reweighted) plaquette with the ``w_Npf`` and with the exact weights, and their paired
  difference, on the same proposals;
* the independence Metropolis chain over the block with the ``w_Npf`` and with the exact weights (the same
  uniforms: ``metropolis_chain_on_values`` from one seed), as ``latticekit sample`` runs them;

and over blocks the mean with the error from their spread (blocks are independent draws). ``E[w_Npf | U] =
w_marg(U)`` for every ``N_pf`` (eq. 41), so a difference that shrinks with ``N_pf`` is the finite-sample effect of
the pseudofermion noise and not a wrong weight.

The fields are drawn in chunks of ``--chunk`` with the seed ``seed * 1000 + chunk``; every finished chunk is
written at once (``--data``, an ``.npz`` replaced atomically) and a rerun continues after the last one, so a killed
job loses at most the chunk in progress. ``--analyse`` combines data files (several processes, other seeds)::

    python benchmarks/pf_npf_bias.py --model RUN --fields 2048 --seed 11 --data a.npz --out a.json
    python benchmarks/pf_npf_bias.py --analyse a.npz b.npz --block 1024 --out bias.json
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latticekit as lk
from latticekit.flows.pseudofermion import pf_weights
from latticekit.flows.sampling import metropolis_chain_on_values
from latticekit.utils import atomic_write
from latticekit.observables import average_plaquette

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import gamma, machine, write_json  # noqa: E402
from bench_pseudofermion import load_run  # noqa: E402


def load_data(path: str) -> dict[str, np.ndarray]:
    """The arrays of a data file (empty if it does not exist yet)."""
    if not os.path.exists(path):
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def save_data(path: str, data: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **data)
    atomic_write(path, buf.getvalue())


def draw(a: argparse.Namespace) -> dict[str, Any]:
    """Draw ``--fields`` gauge fields in chunks, appending each finished chunk to ``--data``."""
    if a.fields % a.chunk:
        raise SystemExit(f"--fields {a.fields}: expected a multiple of --chunk {a.chunk}")
    torch.set_num_threads(a.threads)
    model, gauge, targets, spec = load_run(a.model)
    data = load_data(a.data)
    if data and (int(data["n_pf"]) != a.n_pf or int(data["seed"]) != a.seed or int(data["chunk"]) != a.chunk):
        raise SystemExit(f"--data {a.data}: written with n_pf={int(data['n_pf'])}, seed={int(data['seed'])}, "
                         f"chunk={int(data['chunk'])}; this call asks for {a.n_pf}, {a.seed}, {a.chunk}")
    done = int(data["plaquette"].shape[0]) // a.chunk if data else 0
    t0 = time.time()
    for c in range(done, a.fields // a.chunk):
        rng = lk.backends.rng(a.seed * 1000 + c, backend="torch")
        tc = time.time()
        w = pf_weights(model, gauge, targets, a.chunk, rng, n_pf=a.n_pf, batch_size=a.chunk, dense=True)
        new = {"plaquette": average_plaquette(w.U, gauge.group, gauge.lattice).double().numpy(),
               "log_w_marginal": w.log_w_marginal.double().numpy(),
               **{f"log_w_{k}": v.double().numpy() for k, v in w.log_w.items()}}
        data = {k: np.concatenate([data[k], v]) if k in data else v for k, v in new.items()}
        data.update(n_pf=np.array(a.n_pf), seed=np.array(a.seed), chunk=np.array(a.chunk))
        save_data(a.data, data)
        print(f"chunk {c}: {a.chunk} fields in {time.time() - tc:.0f} s", flush=True)
    return {"spec": spec, "draw_wall_s": time.time() - t0}


def analyse(paths: list[str], block: int, seed: int) -> dict[str, Any]:
    """Per-N_pf reweighted and chain estimates of the plaquette on blocks of ``block`` proposals."""
    parts = [load_data(p) for p in paths]
    if any(not d for d in parts):
        raise SystemExit(f"--analyse: missing data file among {paths}")
    n_pfs = sorted({int(k[len("log_w_"):]) for d in parts for k in d if k[len("log_w_"):].isdigit()})
    n_pfs = [k for k in n_pfs if all(f"log_w_{k}" in d for d in parts)]
    P = np.concatenate([d["plaquette"] for d in parts])
    lw = {k: np.concatenate([d[f"log_w_{k}"] for d in parts]) for k in n_pfs}
    lw["exact"] = np.concatenate([d["log_w_marginal"] for d in parts])
    n_blocks = P.shape[0] // block
    if n_blocks < 2:
        raise SystemExit(f"--block {block}: {P.shape[0]} fields make fewer than two blocks")
    per: dict[str, dict[str, list[float]]] = {str(k): {"rw": [], "chain": [], "acc": [], "chain_err": []}
                                              for k in list(n_pfs) + ["exact"]}
    for b in range(n_blocks):
        s = slice(b * block, (b + 1) * block)
        for k, v in lw.items():
            x = np.exp(v[s] - v[s].max())
            per[str(k)]["rw"].append(float((x * P[s]).sum() / x.sum()))
            r = metropolis_chain_on_values({"plaquette": P[s]}, torch.as_tensor(v[s]),
                                           lk.backends.rng(seed + b, backend="torch"))
            g = gamma(r.observables["plaquette"])
            per[str(k)]["chain"].append(g["value"])
            per[str(k)]["chain_err"].append(g["error"])
            per[str(k)]["acc"].append(float(np.mean(r.accepted)))

    def spread(x: np.ndarray) -> list[float]:
        return [float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))]

    ex_rw, ex_ch = np.array(per["exact"]["rw"]), np.array(per["exact"]["chain"])
    table = {}
    for k, d in per.items():
        rw, ch = np.array(d["rw"]), np.array(d["chain"])
        table[k] = {"reweighted": spread(rw), "chain": spread(ch), "acceptance": float(np.mean(d["acc"])),
                    "reweighted_minus_exact": spread(rw - ex_rw), "chain_minus_exact": spread(ch - ex_ch),
                    "per_block_reweighted": d["rw"], "per_block_chain": d["chain"],
                    "per_block_chain_gamma_error": d["chain_err"]}
    # all fields as one reweighting sample: delete-one-group jackknife over groups of `block` fields
    groups = np.arange(n_blocks * block) // block
    P_all = P[:n_blocks * block]

    def rw_all(v: np.ndarray, keep: np.ndarray) -> float:
        x = np.exp(v[keep] - v[keep].max())
        return float((x * P_all[keep]).sum() / x.sum())

    full = {}
    for k, v in lw.items():
        v = v[:n_blocks * block]
        ex = lw["exact"][:n_blocks * block]
        every = np.ones(v.shape[0], dtype=bool)
        jk = np.array([rw_all(v, groups != g) - rw_all(ex, groups != g) for g in range(n_blocks)])
        jv = np.array([rw_all(v, groups != g) for g in range(n_blocks)])
        d0, v0 = rw_all(v, every) - rw_all(ex, every), rw_all(v, every)
        err = lambda j: float(math.sqrt((n_blocks - 1) / n_blocks * ((j - j.mean()) ** 2).sum()))  # noqa: E731
        x = np.exp(v - v.max())
        full[str(k)] = {"reweighted": [v0, err(jv)], "reweighted_minus_exact": [d0, err(jk)],
                        "kish_ess": float(x.sum() ** 2 / (x.size * (x ** 2).sum()))}
    return {"files": paths, "fields": int(P.shape[0]), "block": block, "blocks": n_blocks, "chain_seed": seed,
            "n_pf": n_pfs, "estimates": table, "all_fields": full,
            "definition": "per block of `block` consecutive proposals: reweighted = sum(w O)/sum(w); chain = "
                          "independence Metropolis over the block (metropolis_chain_on_values, uniforms from "
                          "chain_seed + block, the same for every weight), its mean; x_minus_exact paired on the "
                          "same proposals; [mean, error] over blocks, error = spread / sqrt(blocks); all_fields: "
                          "the reweighted estimate over all blocks' fields at once, error by the delete-one-block "
                          "jackknife; kish_ess = Kish ESS/N of the weights of all those fields"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a pseudofermion-family `latticekit train` run (folder or checkpoint)")
    p.add_argument("--fields", type=int, default=2048)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--n-pf", type=int, default=256)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", help="the .npz of the drawn fields (resumed if present)")
    p.add_argument("--analyse", nargs="+", metavar="NPZ", help="analyse these data files instead of drawing")
    p.add_argument("--block", type=int, default=1024, help="proposals per block (chain length)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    cmd = " ".join(["python", "benchmarks/pf_npf_bias.py"] + (argv if argv is not None else sys.argv[1:]))
    if a.analyse:
        out = {"command": cmd, **analyse(a.analyse, a.block, a.seed), "machine": machine()}
    else:
        if not a.model or not a.data:
            p.error("--model and --data are required to draw (or give --analyse)")
        if a.fields < a.chunk or a.chunk < 1 or a.n_pf < 1:
            p.error("--fields >= --chunk >= 1 and --n-pf >= 1 are required")
        out = {"command": cmd, **draw(a), "data": a.data, "machine": machine()}
        out.update(analyse([a.data], a.block, a.seed) if a.fields >= 2 * a.block else {})
    write_json(a.out, out)
    for k, d in out.get("estimates", {}).items():
        rw, ch = d["reweighted_minus_exact"], d["chain_minus_exact"]
        af = out["all_fields"][k]
        print(f"N_pf {k:>5}: reweighted - exact {rw[0]:+.5f}({rw[1]:.5f})  chain - exact {ch[0]:+.5f}({ch[1]:.5f})"
              f"  acceptance {d['acceptance']:.3f}; all fields: reweighted - exact "
              f"{af['reweighted_minus_exact'][0]:+.5f}({af['reweighted_minus_exact'][1]:.5f}), Kish ESS/N "
              f"{af['kish_ess']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
