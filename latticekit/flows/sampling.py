"""Using a trained flow: independence Metropolis (flow MCMC) and reweighting.

Independence Metropolis (Albergo et al. 2019): proposals ``x' ~ q`` independent of the current
state are accepted with probability ``min(1, w(x') / w(x))``, ``w = exp(-S - log q)``. The chain is
asymptotically exact for ``p ~ exp(-S)``; its acceptance rate and the integrated autocorrelation
times of observables (Gamma method, :func:`latticekit.analysis.gamma_method`) measure the quality
of ``q``. Reweighting estimates ``<O>_p = <w O>_q / <w>_q`` directly from model samples with the
effective sample size :func:`latticekit.analysis.ess`.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import Flow, GaussianPrior, Model
>>> model = Model(GaussianPrior((2,)), Flow([])).to(torch.float64)
>>> S = lambda x: 0.5 * (x ** 2).sum(-1)                    # q = p: every proposal is accepted
>>> res = independence_metropolis(model, S, 50, lk.backends.rng(0, backend="torch"))
>>> res.acceptance.rate
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from latticekit.analysis import AcceptanceSummary, GammaResult, ReweightResult, acceptance_summary, gamma_method
from latticekit.analysis import ess as _ess
from latticekit.analysis import reweight as _reweight
from latticekit.backends import Generator

from .batch_progress import BatchProgress, draw_batches
from .model import Model
from .priors import check_rng
from .train import _action_fn

__all__ = ["MetropolisResult", "draw_weighted", "independence_metropolis", "metropolis_chain",
           "metropolis_chain_on_values", "reweight_observable"]


@dataclass
class MetropolisResult:
    """Result of :func:`independence_metropolis`.

    Attributes
    ----------
    accepted : ndarray of bool, shape ``(n_steps,)``
        Acceptance history (step 0, the initial state, counts as accepted).
    log_w : ndarray, shape ``(n_steps,)``
        Log-weight ``-S - log q`` of the chain state after each step.
    acceptance : AcceptanceSummary
    observables : dict of name -> ndarray ``(n_steps, ...)``
        Observables measured on the chain state after each step.
    analysis : dict of name -> GammaResult
        Gamma-method value, error and ``tau_int`` of each scalar observable.
    proposal_ess : float
        ESS/N of the proposals' importance weights.
    configs : torch.Tensor or None
        The chain, ``(n_steps, *event)`` (``keep_configs=True``).
    proposal_log_w : ndarray, shape ``(n_steps,)``
        Log-weight of every proposal, in proposal order (the chain's ``log_w`` repeats the current
        state's instead). With ``proposal_observables`` it gives the reweighting estimate from the
        same draws, ``analysis.reweight(proposal_observables[name], proposal_log_w)``.
    proposal_observables : dict of name -> ndarray ``(n_steps, ...)``
        The observables on every proposal, in proposal order; their unweighted means are the
        model's own expectation values ``<O>_q`` (a diagnostic of where ``q`` differs from ``p``).
    """

    accepted: np.ndarray
    log_w: np.ndarray
    acceptance: AcceptanceSummary
    observables: dict[str, np.ndarray]
    analysis: dict[str, GammaResult]
    proposal_ess: float
    configs: torch.Tensor | None = None
    proposal_log_w: np.ndarray | None = None
    proposal_observables: dict[str, np.ndarray] | None = None


@torch.no_grad()
def draw_weighted(model: Model, action: Any, n: int, rng: Generator, batch_size: int = 1024,
                  context: Any = None, progress: BatchProgress | None = None,
                  state: tuple[Callable[[], Any], Callable[[Any], None]] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` model samples and their log-weights ``log w = -S(x) - log q(x)``, drawn in batches.

    With ``progress`` (:class:`~.batch_progress.BatchProgress`) every batch is stored as it is drawn, and the
    batches a killed earlier call stored are loaded instead of drawn again (the same numbers); ``state`` is the
    ``(get, set)`` pair of a state the model carries between batches (:func:`~.batch_progress.draw_batches`).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.flows import Flow, GaussianPrior, Model
    >>> m = Model(GaussianPrior((3,)), Flow([])).to(torch.float64)
    >>> x, lw = draw_weighted(m, lambda x: (x ** 2).sum(-1), 10, lk.backends.rng(0, backend="torch"), 4)
    >>> x.shape, lw.shape
    (torch.Size([10, 3]), torch.Size([10]))
    """
    check_rng(rng)
    if n < 1 or batch_size < 1:
        raise ValueError(f"n={n}, batch_size={batch_size}: expected positive numbers")
    S = _action_fn(action)

    def draw(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, log_q = model.sample(b, rng, context=context)
        return x, -S(x) - log_q

    xs, lws = zip(*draw_batches(n, batch_size, rng, draw, progress, state))
    return torch.cat(xs), torch.cat(lws)


def independence_metropolis(model: Model, action: Any, n_steps: int, rng: Generator, *,
                            observables: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                            batch_size: int = 1024, keep_configs: bool = False,
                            progress: BatchProgress | None = None) -> MetropolisResult:
    """Flow MCMC: an independence Metropolis chain of length ``n_steps`` with proposals from ``model``.

    Parameters
    ----------
    model : Model
    action : action object or callable ``S(x) -> (B,)``
    n_steps : int
    rng : Generator
        latticekit torch generator (proposals and accept/reject uniforms).
    observables : dict, optional
        ``name -> f(x)`` with ``f`` mapping a batch ``(B, *event)`` to ``(B, ...)``; measured on the
        chain. Scalar observables are analysed with the Gamma method.
    batch_size : int
        Proposals are drawn in batches of this size.
    keep_configs : bool
        Return the chain's configurations.
    progress : BatchProgress, optional
        Store the proposals batch by batch and resume a killed earlier call (:func:`draw_weighted`).

    Returns
    -------
    MetropolisResult
    """
    check_rng(rng)
    if n_steps < 2:
        raise ValueError(f"n_steps={n_steps}: expected at least 2 steps")
    x, lw = draw_weighted(model, action, n_steps, rng, batch_size, progress=progress)
    return metropolis_chain(x, lw, rng, observables=observables, keep_configs=keep_configs)


def metropolis_chain(x: torch.Tensor, log_w: torch.Tensor, rng: Generator, *,
                     observables: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                     keep_configs: bool = False) -> MetropolisResult:
    """The independence Metropolis chain of proposals ``x`` (in order) with log-weights ``log_w`` (eq. 16 of
    arXiv:2207.08945): accept ``x'`` with probability ``min(1, w'/w)``, the current state keeping its weight.

    Shared by :func:`independence_metropolis` and the pseudo-marginal chain of
    :mod:`latticekit.flows.pseudofermion.pseudo_marginal` (whose weights are averaged over pseudofermion draws).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> lw = torch.zeros(256); lw[1] = -50.0              # proposal 1 is (almost) never accepted
    >>> r = metropolis_chain(torch.zeros(256, 1), lw, lk.backends.rng(0, backend="torch"))
    >>> r.accepted[:3].tolist()
    [True, False, True]
    """
    observables = dict(observables or {})
    lw_np, idx, acc = _chain(log_w, rng)
    n_steps = lw_np.shape[0]
    prop_obs: dict[str, np.ndarray] = {}
    for name, f in observables.items():
        with torch.no_grad():
            vals = f(x)
        v = torch.as_tensor(vals).detach()
        if v.shape[:1] != (n_steps,):
            raise ValueError(f"observables[{name!r}] returned shape {tuple(v.shape)}; expected ({n_steps}, ...)")
        prop_obs[name] = v.cpu().numpy()
    sel = torch.as_tensor(idx, device=x.device)
    return _result(lw_np, idx, acc, prop_obs, x[sel] if keep_configs else None)


def metropolis_chain_on_values(values: Mapping[str, Any], log_w: torch.Tensor, rng: Generator) -> MetropolisResult:
    """The independence Metropolis chain of :func:`metropolis_chain` for proposals whose observables are
    already measured: ``values[name]`` has one entry per proposal (shape ``(n, ...)``, in proposal order), and
    the chain picks among them with the log-weights ``log_w`` (no configurations are kept).

    For a second chain over the same proposals with other weights, e.g. the pseudofermion flows' exact-determinant
    weights next to the pseudo-marginal chain (``latticekit sample``), without measuring the observables twice.
    With the same ``rng`` state it accepts exactly as :func:`metropolis_chain` does.

    Examples
    --------
    >>> import numpy as np, torch, latticekit as lk
    >>> lw = torch.zeros(64); lw[1] = -50.0              # proposal 1 is (almost) never accepted
    >>> r = metropolis_chain_on_values({"o": np.arange(64.0)}, lw, lk.backends.rng(0, backend="torch"))
    >>> r.observables["o"][:4].tolist()
    [0.0, 0.0, 2.0, 3.0]
    """
    n = int(log_w.shape[0])
    prop_obs: dict[str, np.ndarray] = {}
    for name, v in values.items():   # checked before the chain draws its uniforms
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.shape[:1] != (n,):
            raise ValueError(f"values[{name!r}] has shape {a.shape}; expected ({n}, ...), one entry per proposal")
        prop_obs[name] = a
    lw_np, idx, acc = _chain(log_w, rng)
    return _result(lw_np, idx, acc, prop_obs, None)


def _chain(log_w: torch.Tensor, rng: Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log-weights, chain indices, accepted)`` of the independence Metropolis chain over the proposals."""
    check_rng(rng)
    n_steps = int(log_w.shape[0])
    if n_steps < 2:
        raise ValueError(f"log_w has {n_steps} entries; expected at least 2 proposals")
    lw_np = log_w.detach().cpu().numpy().astype(np.float64)
    if np.any(np.isnan(lw_np)):
        raise ValueError("model or action produced NaN log-weights; cannot run Metropolis")
    u = rng.uniform((n_steps,), dtype=torch.float64).cpu().numpy()
    idx = np.empty(n_steps, dtype=np.int64)
    acc = np.zeros(n_steps, dtype=bool)
    cur = 0
    acc[0] = True
    idx[0] = 0
    for i in range(1, n_steps):
        d = lw_np[i] - lw_np[cur]          # NaN (both weights zero) rejects
        if d >= 0 or u[i] < math.exp(min(d, 0.0)):
            cur = i
            acc[i] = True
        idx[i] = cur
    return lw_np, idx, acc


def _result(lw_np: np.ndarray, idx: np.ndarray, acc: np.ndarray, prop_obs: dict[str, np.ndarray],
            configs: torch.Tensor | None) -> MetropolisResult:
    obs: dict[str, np.ndarray] = {}
    ana: dict[str, GammaResult] = {}
    for name, v in prop_obs.items():
        o = v[idx]
        obs[name] = o
        if o.ndim == 1:
            ana[name] = gamma_method(o)
    return MetropolisResult(accepted=acc, log_w=lw_np[idx], acceptance=acceptance_summary(acc), observables=obs,
                            analysis=ana, proposal_ess=float(_ess(lw_np)), configs=configs, proposal_log_w=lw_np,
                            proposal_observables=prop_obs)


@torch.no_grad()
def reweight_observable(model: Model, action: Any, observable: Callable[[torch.Tensor], torch.Tensor], n: int,
                        rng: Generator, *, batch_size: int = 1024) -> ReweightResult:
    """Reweighted estimate ``<O>_p = <w O>_q / <w>_q`` with jackknife error and ESS.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.flows import Flow, GaussianPrior, Model
    >>> m = Model(GaussianPrior((1,)), Flow([])).to(torch.float64)
    >>> S = lambda x: 0.5 * ((x - 1.0) ** 2).sum(-1)            # target N(1, 1)
    >>> r = reweight_observable(m, S, lambda x: x[:, 0], 20000, lk.backends.rng(0, backend="torch"))
    >>> bool(abs(r.value - 1.0) < 5 * r.error), 0.2 < r.ess < 0.5
    (True, True)
    """
    x, lw = draw_weighted(model, action, n, rng, batch_size)
    o = torch.as_tensor(observable(x)).detach()
    if o.shape != (n,):
        raise ValueError(f"observable returned shape {tuple(o.shape)}; expected ({n},)")
    return _reweight(o.cpu().numpy(), lw.cpu().numpy())
