"""ESS, KL and the ``log Z`` estimate of a flow model (arXiv:2404.10819, eqs. 2-4 and Sec. 4.1).

With ``log w = -S(U) - log q(U)`` for ``N`` independent draws ``U ~ q``:

* ``KL(q || p) = E_q[log q + S] + log Z`` (eq. 3); the training loss is ``E_q[log q + S] = -E_q[log w]``;
* ``log Z = log E_q[w]``, estimated by ``log((1/N) sum_i w_i)`` (log-sum-exp); "the constant ``log Z`` in Eq. (3)
  is estimated from the best model available at the given ``beta``" (Sec. 4.1): pass that estimate (or an exact
  value, e.g. :func:`latticekit.exact.u1_2d_log_z`) as ``log_z`` to compare several models with one constant;
* the KL estimate is ``log Z - mean(log w)`` (``>= 0`` up to noise when ``log Z`` is estimated from the same draws,
  by Jensen's inequality);
* ESS (eq. 4) is the Kish ESS per sample ``(sum w)^2 / (N sum w^2)`` with ``N`` stated (docs/flows.md "ESS").

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import Flow, GaussianPrior, Model
>>> m = Model(GaussianPrior((2,)), Flow([])).to(torch.float64)
>>> r = flow_diagnostics(m, lambda x: 0.5 * (x ** 2).sum(-1), 1000, lk.backends.rng(0, backend="torch"))
>>> round(r["ess"], 12), round(r["kl"], 12), round(r["log_z_estimate"], 6) == round(math.log(2 * math.pi), 6)
(1.0, 0.0, True)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from latticekit.analysis import ess as _ess, log_z_estimate
from latticekit.backends import Generator

from ..model import Model
from ..sampling import draw_weighted

__all__ = ["flow_diagnostics"]


def flow_diagnostics(model: Model, action: Any, n: int, rng: Generator, *, batch_size: int = 1024,
                     log_z: float | None = None) -> dict[str, float]:
    """ESS, loss, KL and ``log Z`` estimate of ``model`` for the target ``exp(-S)`` from ``n`` fresh draws.

    Returns ``n``, ``ess`` (Kish ESS/N), ``loss`` (``mean(log q + S)``), ``log_z_estimate``
    (``log mean w``, with ``log_z_error``: :func:`latticekit.analysis.log_z_estimate`),
    ``log_z`` (the constant used: ``log_z`` if given, else the estimate) and ``kl`` (``log_z - mean log w``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n={n!r}: expected at least 2 draws")
    if log_z is not None and (isinstance(log_z, bool) or not isinstance(log_z, numbers.Real)
                              or not math.isfinite(log_z)):   # NaN gave kl = nan silently, after the draws
        raise ValueError(f"log_z={log_z!r}: expected a finite number (the exact log Z) or None (the estimate)")
    _, lw = draw_weighted(model, action, n, rng, batch_size)
    lw_np = lw.detach().cpu().numpy().astype(np.float64)
    if not np.all(np.isfinite(lw_np)):
        raise ValueError("model or action produced non-finite log-weights")
    est, err = log_z_estimate(lw_np)
    ref = est if log_z is None else float(log_z)
    mean_lw = float(lw_np.mean())
    return {"n": n, "ess": float(_ess(lw_np)), "loss": -mean_lw, "log_z_estimate": est, "log_z_error": err,
            "log_z": ref, "kl": ref - mean_lw}
