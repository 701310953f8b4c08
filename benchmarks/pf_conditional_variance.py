"""Exact variance of the pseudofermion weights of a trained conditional flow, per gauge field (small lattices).

The pseudofermion layers are linear in the pseudofermion (``phi_a' = A(x) phi_a + PTCN[U, phi_f]``, eqs. 27-28 of
arXiv:2207.08945; ``A`` and the PTC weights depend on ``U`` only), so at fixed ``U`` the conditional flow is a
complex-linear map ``phi = T(U) chi`` of the prior draw ``chi`` (standard complex normal): ``q(phi | U)`` is the
Gaussian with covariance ``T T^dag``. With the monomial's kernel ``K`` (``p(phi | U) = det K exp(-phi^dag K phi) /
pi^n``, ``targets.py``) the weight ``r = p / q`` of one draw is, as a function of ``chi``,
``r = det(T^dag K T) exp(-chi^dag (T^dag K T - 1) chi)``, so with ``lambda_j`` the eigenvalues of ``T^dag K T``::

    E[r | U] = 1,     E[r^2 | U] = prod_j lambda_j^2 / (2 lambda_j - 1)   if every lambda_j > 1/2, else infinite.

``v(U) = E[r^2 | U] - 1`` is the relative variance of one draw's weight, ``v / N_pf`` that of the average over
``N_pf`` draws (eq. 44). Where ``v`` is infinite the pseudo-marginal chain is still exact in the limit, but its
averages converge slowly. This script builds ``T`` column by column (the flow applied to the ``n`` unit vectors;
linearity and ``log|det T|^2 = log det J`` are checked, and on ``--check-fields`` fields the sampler's own
weights ``log w - log det M`` of ``pf_weights`` against ``log r`` from ``T``), ``K`` from the dense ``M = D D^dag``
and reports per field: plaquette, marginal log weight (exact determinant), ``lambda_min``, ``lambda_max`` and
``log E[r^2 | U]``;
and the first-order bias of the self-normalised estimate of an observable O from N proposals,
``-(1/N) E_q[w^2 (1 + v/N_pf) (O - <O>)] / E_q[w]^2``, whose ``v`` part is what the pseudofermion noise adds
(valid when the noise is small), and the same without the expansion: the self-normalised estimate simulated with
exact draws of ``r`` from each field's spectrum, against the exact-weight one on the same proposals.

    python benchmarks/pf_conditional_variance.py --model qcd4d --n 128 --out benchmarks/results/qcd4d_pf_variance.json

One monomial without even/odd (the 2^4 QCD example) or any other pseudofermion-family run on a small lattice.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import latticekit as lk
from latticekit.flows.pseudofermion.targets import dense_normal_matrix
from latticekit.observables import average_plaquette

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, write_json  # noqa: E402
from bench_pseudofermion import load_run  # noqa: E402


def transfer_matrix(cond: Any, trunk: Any, U1: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``T`` (n, n) of the conditional flow at the gauge field ``U1`` (batch 1), the flow's log-det and the
    largest deviation from linearity on a random combination (relative)."""
    shape = tuple(cond.target.field_shape)
    n = math.prod(shape)
    # the support mask is broadcast over spin and colour
    sup = torch.broadcast_to(cond.support.to(U1.device), shape).reshape(-1)
    cols = torch.nonzero(sup).reshape(-1)
    dt = torch.complex128 if U1.dtype in (torch.complex128, torch.float64) else torch.complex64
    chi = torch.zeros((len(cols), n), dtype=dt)
    chi[torch.arange(len(cols)), cols] = 1.0
    chi = chi.reshape((len(cols),) + shape)
    Ub = U1.expand((len(cols),) + tuple(U1.shape[1:]))
    with torch.no_grad():
        ctx = cond.context(Ub, trunk.context(Ub))
        phi, ld = cond.flow(chi, context=ctx)
        T = phi.reshape(len(cols), n)[:, cols].T.contiguous()          # column j = flow(e_j), on the support
        g = torch.Generator().manual_seed(0)
        c = torch.randn(len(cols), 2, generator=g, dtype=torch.float64)
        coef = torch.complex(c[:, 0], c[:, 1]).to(dt)
        x = (coef.reshape((-1,) + (1,) * len(shape)) * chi).sum(0, keepdim=True)
        y, _ = cond.flow(x, context=cond.context(U1, trunk.context(U1)))
        lin = float((y.reshape(-1)[cols] - T @ coef).abs().max() / y.abs().max())
    return T, float(ld[0]), lin


def sampler_weight_check(model: Any, tgt: Any, T: torch.Tensor, A: torch.Tensor, cols: torch.Tensor, U1: torch.Tensor,
                         log_det_M: float, n_draws: int, rng: Any) -> float:
    """Largest ``|log r|`` difference, over ``n_draws`` draws at the gauge field ``U1``, between the sampler's
    weight (``pf_weights``: ``log w = -S_pf - n log pi - log q(phi | U)``, and ``E_q[w] = det M`` by eq. 41, so
    ``log r = log w - log det M``) and this script's ``log r = log det A - chi^dag (A - 1) chi`` with ``chi =
    T^{-1} phi``: the weights analysed here are those ``latticekit sample`` averages."""
    Ub = U1.expand((n_draws,) + tuple(U1.shape[1:])).contiguous()
    phis, lqs = model.sample_conditionals(Ub, rng, 1)
    phi, lq = phis[0][0], lqs[0][0]
    log_r_sampler = -tgt.action(Ub, phi) - tgt.log_normalizer() - lq - log_det_M
    chi = torch.linalg.solve(T, phi.reshape(n_draws, -1)[:, cols].T).T
    Ah = 0.5 * (A + A.conj().T)
    log_r = torch.linalg.slogdet(Ah)[1] - (torch.einsum("ni,ij,nj->n", chi.conj(), Ah, chi).real
                                           - (chi.abs() ** 2).sum(1))
    return float((log_r_sampler - log_r).abs().max())


def simulate(lam: np.ndarray, w: np.ndarray, obs: np.ndarray, n_prop: int, n_pfs: tuple[int, ...], reps: int,
             seed: int) -> dict[str, Any]:
    """The pseudofermion noise alone, simulated exactly: ``N`` proposals resampled from the measured fields
    (weights ``w``, observable ``obs``), each with ``N_pf`` fresh weights ``r``; with ``z_j = chi`` in the eigenbasis
    of ``T^dag K T``, ``log r = sum_j [log lambda_j - (lambda_j - 1) |z_j|^2]``, ``|z_j|^2 ~ Exp(1)``. Returns, per
    ``N_pf``, the mean and standard error over ``reps`` of (pseudo-marginal minus exact-weight) self-normalised
    estimates of ``obs`` on the same proposals."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"N": n_prop, "reps": reps, "definition": "mean over reps of sum(w rbar O)/sum(w rbar) - "
                           "sum(w O)/sum(w), proposals resampled from the measured fields, rbar the average of N_pf "
                           "exact draws of r given the field's spectrum"}
    loglam = np.log(lam).sum(1)
    diffs: dict[int, list[float]] = {k: [] for k in n_pfs}
    for _ in range(reps):
        idx = rng.integers(0, len(w), n_prop)
        ww, oo = w[idx], obs[idx]
        exact = float((ww * oo).sum() / ww.sum())
        for k in n_pfs:
            logr = np.empty((n_prop, k))
            for j in range(k):   # one draw per proposal at a time: (n_prop, n_dof) exponentials
                e = rng.exponential(size=(n_prop, lam.shape[1]))
                logr[:, j] = loglam[idx] - ((lam[idx] - 1.0) * e).sum(1)
            m = logr.max()
            rbar = np.exp(logr - m).mean(1)
            diffs[k].append(float((ww * rbar * oo).sum() / (ww * rbar).sum()) - exact)
    for k, d in diffs.items():
        out[str(k)] = {"mean": float(np.mean(d)), "error": float(np.std(d, ddof=1) / np.sqrt(len(d))),
                       "spread": float(np.std(d, ddof=1))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True,
                   help="a pseudofermion-family `latticekit train` run (folder or checkpoint)")
    p.add_argument("--n", type=int, default=128, help="gauge fields drawn from the marginal model")
    p.add_argument("--seed", type=int, default=40_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-pf", type=int, default=8, help="N_pf of the bias estimate")
    p.add_argument("--n-proposals", type=int, default=4096, help="N of the bias estimate")
    p.add_argument("--sim-reps", type=int, default=200, help="repetitions of the simulated reweighting")
    p.add_argument("--check-fields", type=int, default=4,
                   help="fields on which the sampler's own weights are compared with the T-matrix formula")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.n < 8 or a.n_pf < 1 or a.n_proposals < 1:
        p.error("--n >= 8, --n-pf >= 1 and --n-proposals >= 1 are required")
    torch.set_num_threads(a.threads)
    t0 = time.time()
    model, gauge, targets, spec = load_run(a.model)
    if len(targets) != 1:
        raise SystemExit(f"--model: {len(targets)} monomials; this script handles one (no Hasenbusch steps)")
    cond, tgt = model.conditionals[0], targets[0]
    rng = lk.backends.rng(a.seed, backend="torch")
    rows, spectra, sampler_dev = [], [], []
    check_rng = lk.backends.rng(a.seed + 1, backend="torch")
    with torch.no_grad():
        U, lqU = model.sample_marginal(a.n, rng)
        Sg = getattr(gauge, "action", gauge)(U)
        plaq = average_plaquette(U, gauge.group, gauge.lattice)
        M = dense_normal_matrix(tgt.operator(U))
        for b in range(a.n):
            T, ld, lin = transfer_matrix(cond, model.trunk, U[b:b + 1])
            cols = torch.nonzero(torch.broadcast_to(cond.support, tuple(tgt.field_shape)).reshape(-1)).reshape(-1)
            Mb = M[b][cols][:, cols] + tgt.mu_lo * torch.eye(len(cols), dtype=M.dtype)
            # K = (M + mu_lo)^{-1} (plain monomial); T^dag K T = T^dag (M + mu_lo)^{-1} T
            A = T.conj().T @ torch.linalg.solve(Mb, T)
            lam = torch.linalg.eigvalsh(0.5 * (A + A.conj().T)).double()
            logdetM = float(torch.linalg.slogdet(Mb)[1])
            if b < a.check_fields:
                sampler_dev.append(sampler_weight_check(model, tgt, T, A, cols, U[b:b + 1], logdetM, 256, check_rng))
            spectra.append(lam.numpy())
            log_er2 = float((2 * torch.log(lam) - torch.log(2 * lam - 1)).sum()) if bool(lam.min() > 0.5) else math.inf
            rows.append({"plaquette": float(plaq[b]), "log_w_marginal": float(-Sg[b] - lqU[b]) + logdetM,
                         "lambda_min": float(lam.min()), "lambda_max": float(lam.max()), "log_E_r2": log_er2,
                         "flow_logdet": ld, "logdet_T_check": float(2 * torch.linalg.slogdet(T)[1]) - ld,
                         "linearity": lin})
            if b % 16 == 0:
                print(f"field {b}: plaquette {rows[-1]['plaquette']:.4f} lambda [{rows[-1]['lambda_min']:.3f}, "
                      f"{rows[-1]['lambda_max']:.3f}] log E[r^2] {log_er2:.3f}", flush=True)
    pl = np.array([r["plaquette"] for r in rows])
    lw = np.array([r["log_w_marginal"] for r in rows])
    ler2 = np.array([r["log_E_r2"] for r in rows])
    finite = np.isfinite(ler2)
    w = np.exp(lw - lw.max())
    pbar = float((w * pl).sum() / w.sum())
    v = np.where(finite, np.expm1(np.where(finite, ler2, 0.0)), np.inf)
    ew2 = float((w ** 2).mean()) / float(w.mean()) ** 2
    term_exact = float((w ** 2 * (pl - pbar)).mean()) / float(w.mean()) ** 2
    term_noise = float((w ** 2 * v * (pl - pbar)).mean()) / float(w.mean()) ** 2 if finite.all() else math.inf
    sim = simulate(np.array(spectra), w, pl, a.n_proposals, (1, a.n_pf, 4 * a.n_pf, 16 * a.n_pf), a.sim_reps, a.seed)
    q = np.quantile(pl, np.linspace(0, 1, 5))
    idx = np.clip(np.searchsorted(q, pl, side="right") - 1, 0, 3)
    out = {
        "command": " ".join(["python", "benchmarks/pf_conditional_variance.py"]
                            + (argv if argv is not None else sys.argv[1:])),
        "spec": spec, "n_fields": a.n, "seed": a.seed, "machine": machine(),
        "checks": {"max_linearity_deviation": max(r["linearity"] for r in rows),
                   "max_abs_logdet_T_minus_flow_logdet": max(abs(r["logdet_T_check"]) for r in rows),
                   "sampler_weights": {"fields": len(sampler_dev), "draws_per_field": 256,
                                       "max_abs_log_r_difference": max(sampler_dev) if sampler_dev else None}},
        "fraction_infinite_variance": float(1 - finite.mean()),
        "lambda_min": {"min": float(min(r["lambda_min"] for r in rows)),
                       "median": float(np.median([r["lambda_min"] for r in rows]))},
        "lambda_max": {"max": float(max(r["lambda_max"] for r in rows)),
                       "median": float(np.median([r["lambda_max"] for r in rows]))},
        "log_E_r2": {"median": float(np.median(ler2)),
                     "max_finite": float(ler2[finite].max()) if finite.any() else None},
        "corr_plaquette_log_E_r2": float(np.corrcoef(pl[finite], ler2[finite])[0, 1]) if finite.sum() > 2 else None,
        "log_E_r2_by_plaquette_quartile": [{"plaquette_range": [float(q[k]), float(q[k + 1])],
                                            "median_log_E_r2": float(np.median(ler2[idx == k])),
                                            "fraction_infinite": float(1 - finite[idx == k].mean())} for k in range(4)],
        "marginal_kish_ess_of_these_fields": float(w.sum() ** 2 / (len(w) * (w ** 2).sum())),
        "reweighted_plaquette_exact": pbar,
        "first_order_bias": {"N": a.n_proposals, "N_pf": a.n_pf, "E_w2_over_Ew_sq": ew2,
                             "exact_weights": -term_exact / a.n_proposals,
                             "pseudofermion_noise": -term_noise / (a.n_proposals * a.n_pf),
                             "definition": "self-normalised estimate of the plaquette from N proposals: bias ~ "
                                           "-(1/N) E[w^2 (1 + v/N_pf)(O - <O>)]/E[w]^2 (w: exact marginal weights of "
                                           "these fields; a noisy estimate of itself)"},
        "simulated_reweighting": sim,
        "per_field": rows, "wall_s": time.time() - t0,
    }
    write_json(a.out, out)
    print({k: out[k] for k in ("checks", "fraction_infinite_variance", "lambda_min", "log_E_r2",
                               "corr_plaquette_log_E_r2", "first_order_bias", "simulated_reweighting")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
