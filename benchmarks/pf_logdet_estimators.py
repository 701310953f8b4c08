"""Variance of the two stochastic log-det gradients of the marginal objective, exactly, on quenched gauge fields.

``PFTarget.logdet_gradient_surrogate`` estimates ``d log det(M + mu)`` (``M = D D^dag``, even/odd: the Schur
complement) with complex Gaussian noise ``eta`` (``E[eta eta^dag] = 1``) in two unbiased forms:

* ``normal`` (arXiv:2106.05934 App. C): ``Re eta^dag A eta`` with ``A = (M + mu)^{-1} dM``;
* ``dirac``: ``Re eta^dag A eta`` with ``A = 2 D^dag (M + mu)^{-1} dD`` (same trace, since
  ``dM = dD D^dag + D dD^dag`` and ``(M + mu)^{-1}`` is Hermitian).

For a directional derivative along a direction ``dU`` the variance of either estimate is ``||(A + A^dag)/2||_F^2``
(``tests/flows/pseudofermion/test_targets.py`` checks this against sampled estimates). This script builds the
dense ``D``, ``dD`` (``D`` is linear in the links: ``dD = D[U + dU] - D[U]``) and ``M`` on quenched heatbath fields
and reports both variances per field and their ratio, for

* the Schwinger model of ``examples/schwinger_pf_eo_hb.toml`` (U(1), 8x8, beta = 2, kappa = 0.265, even/odd,
  ``mu = 1e-5``, the training regulator), and
* 2D QCD-like SU(3) on 8x8 at beta = 6, kappa = 0.265 (the paper's Sec. IV.B point, even/odd), and
* 4D SU(3) on 2^4 at beta = 1, kappa = 0.1 (the 4D QCD example, no even/odd).

    python benchmarks/pf_logdet_estimators.py --fields 8 --out benchmarks/results/pf_logdet_estimators.json

Quenched fields are not the dynamical ensemble, but the statement is about the matrices: the ``normal`` form's
matrix contains ``D^{-dag} (D^{-1} dD) D^dag``, a similarity transformation by the ill-conditioned ``D``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import torch

import latticekit as lk
from latticekit.flows.pseudofermion import PFTarget, dense_normal_matrix
from latticekit.linalg import dense_matrix
from latticekit.mc.heatbath import Heatbath

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine, write_json  # noqa: E402

CASES = {
    "schwinger_L8": dict(group="U1", shape=(8, 8), beta=2.0, kappa=0.265, even_odd=True),
    "su3_2d_L8": dict(group="SU3", shape=(8, 8), beta=6.0, kappa=0.265, even_odd=True),
    "su3_4d_L2": dict(group="SU3", shape=(2, 2, 2, 2), beta=1.0, kappa=0.1, even_odd=False),
}


def _dense(t: PFTarget, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    op = t.operator(U)
    D = dense_matrix(lambda v: op.apply(v), op.field_shape, like=U, support=op.support, batch_shape=(U.shape[0],))
    return D, dense_normal_matrix(op)


def case(name: str, n_fields: int, seed: int, mu: float = 1e-5) -> dict[str, Any]:
    c = CASES[name]
    G = lk.U1 if c["group"] == "U1" else lk.SU(3)
    lat = lk.Lattice(c["shape"])
    rng = lk.backends.rng(seed, backend="torch")
    hb = Heatbath(G, lat, beta=c["beta"], rng=rng, n_overrelax=2)
    nd = lat.nd
    U0 = lk.gauge.cold_gauge_field(G, lat, (n_fields,), backend="torch")
    U, _ = hb.run(U0, 100)  # 100 heatbath + 2 x 100 overrelaxation sweeps from a cold start, independent chains
    t = PFTarget(G, lat, c["kappa"], even_odd=c["even_odd"], mu_lo=mu)
    # a direction in link space: U(1) angles; SU(3) a random matrix per link (D is linear in the links, so
    # dD = D[U + dU] - D[U] for any dU, unitary or not)
    dU = rng.normal(tuple(U.shape)) if G is lk.U1 else G.random(rng, (n_fields, nd), lat.shape)
    if G is lk.U1:  # D depends on exp(i theta): a central difference of the angles (O(h^2) = 1e-10 relative)
        h = 1e-5
        D, M = _dense(t, U)
        dD = (_dense(t, U + h * dU)[0] - _dense(t, U - h * dU)[0]) / (2 * h)
    else:
        D, M = _dense(t, U)
        dD = _dense(t, U + dU)[0] - D
    Dh = D.conj().transpose(-1, -2)
    dM = dD @ Dh + D @ dD.conj().transpose(-1, -2)
    R = torch.linalg.inv(M + mu * torch.eye(M.shape[-1], dtype=M.dtype))
    out = {}
    for form, A in (("normal", R @ dM), ("dirac", 2.0 * Dh @ R @ dD)):
        H = 0.5 * (A + A.conj().transpose(-1, -2))
        out[form] = (H.abs() ** 2).sum((-2, -1))
    cond = torch.linalg.cond(M)
    ratio = out["dirac"] / out["normal"]
    return {"case": name, **c, "mu": mu, "fields": n_fields, "ndof": t.ndof,
            "condition_number": [float(x) for x in cond], "var_normal": [float(x) for x in out["normal"]],
            "var_dirac": [float(x) for x in out["dirac"]], "ratio": [float(x) for x in ratio],
            "ratio_mean": float(ratio.mean()), "ratio_max": float(ratio.max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fields", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.fields < 1:
        p.error("--fields: expected >= 1")
    torch.set_num_threads(1)
    t0 = time.time()
    res = [case(n, a.fields, a.seed) for n in a.cases]
    for r in res:
        print(f"{r['case']}: condition number of M {min(r['condition_number']):.0f}-{max(r['condition_number']):.0f}, "
              f"variance ratio dirac/normal mean {r['ratio_mean']:.3f}, max {r['ratio_max']:.3f}")
    write_json(a.out, {"benchmark": "pf_logdet_estimators", "command": "python " + " ".join(sys.argv),
                       "machine": machine(), "wall_s": round(time.time() - t0, 2), "cases": res,
                       "variance": "||(A + A^dag)/2||_F^2 of the matrix A whose trace each form estimates (exact, "
                                   "dense), for one random direction per field"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
