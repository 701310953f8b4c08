"""Cost of the exact log-det gradient of the marginal pseudofermion objective: three ways to build the dense M.

The marginal stage of the pseudofermion examples (``logdet_gradient = "dense"``) differentiates
``log det(M + mu)``, ``M = D D^dag`` (even/odd: ``D_sc D_sc^dag``), through a dense ``M`` in every training step.
Three builds of the same matrix, each followed by the Cholesky log-det of ``M + mu`` and its backward pass to the
gauge field:

* ``normal_columns``: ``M`` applied to every unit vector (``linalg.dense_matrix(op.normal)``; until 2026-12-06);
* ``dirac_columns``: ``D`` applied to every unit vector, then ``M = A A^dag`` (half the stencil applications);
* ``blocks``: ``A`` assembled from the blocks of the hopping term (``actions.dirac_dense_matrix``), then ``A A^dag``
  (what ``flows.pseudofermion.dense_normal_matrix`` does now).

and two log-dets: torch's ``cholesky`` differentiated by autograd (``cholesky_autograd``, until 2026-12-06) and the
library's (``PFTarget.log_det_from_matrix``: Cholesky with the gradient ``(M + mu)^{-1}`` from ``cholesky_inverse``).

Cases: the marginal-stage batches of the examples (the 2D SU(3) Sec. IV.B example, the Schwinger EO + HB
example, and 2^4 SU(3) at the batch of the 4D QCD example, whose dense-gradient variant is
``qcd4d_marginal_dense1500_L2.json``; no even/odd). One thread, best of ``--repeat``.

    python benchmarks/dense_dirac.py --out benchmarks/results/dense_dirac.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

import torch

import latticekit as lk
from latticekit.actions import EvenOddDirac, WilsonDirac, dirac_dense_matrix
from latticekit.flows.pseudofermion import PFTarget
from latticekit.linalg import dense_matrix

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine, write_json  # noqa: E402

#: name: (group, shape, kappa, even_odd, batch) -- the examples' marginal stages
CASES = {
    "su3_2d_eo_8x8": ("SU3", (8, 8), 0.265, True, 32),        # examples/su3_2d_pf_eo_hb.toml
    "schwinger_eo_8x8": ("U1", (8, 8), 0.265, True, 64),      # examples/schwinger_pf_eo_hb.toml
    "qcd4d_2^4": ("SU3", (2, 2, 2, 2), 0.1, False, 64),       # examples/qcd4d_nf2.toml with logdet_gradient = "dense"
}


def _builders() -> dict[str, Callable[[Any], torch.Tensor]]:
    def normal_columns(op: Any) -> torch.Tensor:
        return dense_matrix(lambda v: op.normal(v), op.field_shape, like=op.like, support=op.support,
                            batch_shape=op.batch_shape)

    def dirac_columns(op: Any) -> torch.Tensor:
        A = dense_matrix(op.apply, op.field_shape, like=op.like, support=op.support, batch_shape=op.batch_shape)
        return A @ A.conj().transpose(-1, -2)

    def blocks(op: Any) -> torch.Tensor:
        A = dirac_dense_matrix(op)
        return A @ A.conj().transpose(-1, -2)

    return {"normal_columns": normal_columns, "dirac_columns": dirac_columns, "blocks": blocks}


def case(name: str, repeat: int, seed: int) -> dict[str, Any]:
    gname, shape, kappa, eo, batch = CASES[name]
    G, lat = lk.group_from_name(gname), lk.Lattice(shape)
    U0 = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(seed, backend="torch"), (batch,))
    mu = 1e-5
    out: dict[str, Any] = {"case": name, "group": gname, "shape": list(shape), "kappa": kappa, "even_odd": eo,
                           "batch": batch, "mu": mu}
    target = PFTarget(G, lat, kappa, even_odd=eo, mu_lo=mu)

    def cholesky_autograd(M: torch.Tensor) -> torch.Tensor:
        L = torch.linalg.cholesky(M + mu * torch.eye(M.shape[-1], dtype=M.dtype))
        return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)

    ref = None
    for meth, build in _builders().items():
        for ld_name, logdet in (("cholesky_autograd", cholesky_autograd), ("library", target.log_det_from_matrix)):
            fwd, bwd = [], []
            for _ in range(repeat):
                U = U0.clone().requires_grad_(True)
                t0 = time.perf_counter()
                D = WilsonDirac(U, G, lat, kappa=kappa)
                M = build(EvenOddDirac(D) if eo else D)
                t1 = time.perf_counter()
                logdet(M).sum().backward()
                t2 = time.perf_counter()
                fwd.append(t1 - t0)
                bwd.append(t2 - t1)
            M = M.detach()
            if ref is None:
                ref = M
            out[f"{meth}+{ld_name}"] = {"build_s": min(fwd), "logdet_and_backward_s": min(bwd),
                                        "total_s": min(fwd) + min(bwd),
                                        "max_abs_diff_to_normal_columns": float((M - ref).abs().max())}
        out["n"] = int(M.shape[-1])
    out["speedup_vs_before"] = (out["normal_columns+cholesky_autograd"]["total_s"] /
                                out["blocks+library"]["total_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.repeat < 1:
        p.error("--repeat: expected >= 1")
    torch.set_num_threads(1)
    t0 = time.time()
    res = [case(n, a.repeat, a.seed) for n in a.cases]
    for r in res:
        print(f"{r['case']} (n = {r['n']}, batch {r['batch']}): " + ", ".join(
            f"{m} {v['total_s']:.3f} s" for m, v in r.items() if isinstance(v, dict)) +
            f"; now {r['speedup_vs_before']:.1f}x faster than before")
    write_json(a.out, {"benchmark": "dense_dirac", "command": "python " + " ".join(sys.argv), "machine": machine(),
                       "wall_s": round(time.time() - t0, 2), "cases": res,
                       "timing": "seconds, best of --repeat, one torch thread: build = the dense M from the gauge "
                                 "field (leaf requiring grad); logdet_and_backward = log det(M + mu) summed over the "
                                 "batch and its backward pass to the gauge field; keys build+logdet"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
