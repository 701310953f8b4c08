"""UV-matching (App. A): fixed coarse theory, learnable fine couplings, the transformation iterated to finer lattices.

The model (:class:`UVMatchingModel`) is a :class:`~.rectangular.SuperResolvingModel` whose prior is the coarse
phi^4 theory at *fixed* couplings (exact HMC draws, :class:`~.coarse_theory.CoarseTheoryPrior` with
``sampler=hmc_sampler(...)``) and which also holds its target, the fine theory with learnable couplings
(:class:`~.learnable_target.LearnableTargetAction`: ``S[c] + log Z[c]`` gradient, eqs. 31-36). Training it
with :class:`~latticekit.flows.Trainer` against ``model.target`` moves the flow and the fine couplings together.

The iteration of App. A 1 and Figs. 7-9 (:func:`uv_ladder`):

1. level 1: train ``T_1`` (coarse ``L`` -> ``bL``) and ``c_{bL}`` for ``steps`` steps;
2. level ``i >= 2``: the lattice doubles again; the new transformation ``T_i`` starts as a copy of ``T_{i-1}``
   (the transformation does not depend on the lattice size: per-block noise, a kernel of fixed size), the
   fine coupling starts at the ESS-optimal value for the new lattice (:func:`best_coupling`), and ``T_i`` with
   ``c_{b^i L}`` is retrained for at most ``N_RT`` steps with the learning rate reduced by ``lr_factor``
   (App. A: "reduced by a factor of five") and early stopping on the evaluation ESS ("checking whether the ESS
   has saturated"): every ``check_every`` steps the Kish ESS/N of ``eval_batch_size`` fresh draws is measured,
   and retraining stops when it has not risen by ``min_delta`` over the best so far for ``patience`` checks;
3. after every level the fine coupling is set to the one that maximises the ESS/N on that lattice ("we
   straightforwardly choose the couplings that maximise the ESS/N on the respective lattice", Fig. 8).

Decisions where the paper is silent (written down here and in docs/flows.md): each level has its own
parameters ``theta_i`` (Fig. 7) and retraining updates only the newest ``T_i`` (and its coupling); the earlier
levels keep the parameters learned on their own lattices. Early stopping stops and keeps the last state (no
rollback to the best check), so a resumed level continues bit-identically from its checkpoint. The ESS scan
moves ``kappa`` only (the paper's optimisable coupling; ``lam`` fixed): ``S`` is linear in ``kappa``, so
``log w(kappa) = log w(kappa_0) - (kappa - kappa_0) dS/dkappa`` on one set of draws, maximised on a grid of
``scan_points`` values in ``kappa_0 +- scan_width`` and refined by bounded Brent (:func:`scipy.optimize.minimize_scalar`)
between the grid neighbours of the best point.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.superres import (CoarseTheoryPrior, LearnableTargetAction, LocalCNF, LogZGradient,
...     Phi4Couplings, RectangularFlow, ZeroSumNoise, hmc_sampler)
>>> coarse, fine = lk.Lattice((4, 4)), lk.Lattice((8, 8))
>>> prior = CoarseTheoryPrior(coarse, Phi4Couplings(0.2, 0.01, learn=()), sampler=hmc_sampler(n_traj=5))
>>> c = Phi4Couplings(0.2, 0.01, learn=("kappa",))
>>> target = LearnableTargetAction(fine, c, LogZGradient(c, fine, hmc_sampler(n_traj=5), 16))
>>> T = RectangularFlow((4, 4), ZeroSumNoise(2, nd=2, sigma=0.5, dtype=torch.float64))
>>> model = UVMatchingModel(prior, [T], target)
>>> res = best_coupling(model, 64, lk.backends.rng(0, backend="torch"), scan_width=0.05, scan_points=11)
>>> sorted(res), 0.15 <= res["kappa"] <= 0.25
(['ess', 'ess_center', 'ess_grid', 'kappa', 'kappa_grid'], True)
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from latticekit import backends
from latticekit.analysis import ess as kish_ess
from latticekit.backends import Generator
from latticekit.lattice import Lattice
from latticekit.utils.files import atomic_path

from .couplings import Phi4Couplings
from .learnable_target import LearnableTargetAction
from .log_z import LogZGradient
from .rectangular import RectangularFlow, SuperResolvingModel

__all__ = ["UVLadderConfig", "UVMatchingModel", "best_coupling", "uv_ladder"]


class UVMatchingModel(SuperResolvingModel):
    """A super-resolving model with its learnable fine-lattice target (module docstring).

    Parameters
    ----------
    prior : module
        The coarse prior (normally the coarse theory at fixed couplings, exact HMC draws).
    flows : sequence of RectangularFlow
        Coarse -> fine.
    target : LearnableTargetAction
        The fine theory with learnable couplings; its lattice is the model's fine lattice. It is trained with
        the flow (its couplings are parameters of this model) and checkpointed with it; pass ``model.target``
        as the trainer's action.
    """

    def __init__(self, prior: Any, flows: Sequence[RectangularFlow], target: LearnableTargetAction,
                 coarse_shape: Sequence[int] | None = None) -> None:
        super().__init__(prior, flows, coarse_shape)
        if not isinstance(target, LearnableTargetAction):
            raise TypeError(f"target={type(target).__name__}: expected a LearnableTargetAction")
        if tuple(target.lattice.shape) != self.fine_shape:
            raise ValueError(f"target: acts on {tuple(target.lattice.shape)}; expected the model's fine lattice "
                             f"{self.fine_shape}")
        self.target = target


def _kappa_linear_terms(x: torch.Tensor, log_q: torch.Tensor, c: Phi4Couplings, lat: Lattice
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``log w(kappa) = a - kappa * g`` per draw: ``g = dS/dkappa`` (eq. 35), ``a = -S|_{kappa=0} - log q``."""
    with torch.no_grad():
        S = c.action(x, lat)
        g = c.action_gradients(x, lat)[:, 0]
        a = -(S - c.kappa * g) - log_q
    return a.double().cpu().numpy(), g.double().cpu().numpy()


def best_coupling(model: UVMatchingModel, n: int, rng: Generator, *, scan_width: float = 0.05,
                  scan_points: int = 21, center: float | None = None) -> dict[str, Any]:
    """The fine ``kappa`` that maximises the Kish ESS/N of ``n`` fresh draws of ``model`` (Fig. 8).

    ``log q`` does not depend on the target, and ``S`` is linear in ``kappa``, so one set of draws gives the
    ESS as a function of ``kappa`` exactly; it is scanned on ``scan_points`` values in ``center +- scan_width``
    (default centre: the target's current ``kappa``) and refined by bounded Brent between the grid neighbours
    of the best one. Returns ``kappa``, ``ess`` (at it), ``ess_center`` (at the centre), ``kappa_grid`` and
    ``ess_grid``. The draws are made in evaluation mode (``model.eval()``: the CNFs integrate at their evaluation
    tolerances ``rtol``/``atol``, not ``train_rtol``/``train_atol``), also when the model is training, as inside
    :func:`uv_ladder`. The model is left as it was: its training mode is restored, the target is not changed and
    the prior's persistent batch (HMC restarts) is restored after the draws, so a scan does not change a later
    training stream.
    """
    from scipy.optimize import minimize_scalar

    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n={n!r}: expected at least 2 draws")
    if not float(scan_width) > 0 or int(scan_points) < 3:
        raise ValueError(f"scan_width={scan_width!r}, scan_points={scan_points!r}: expected a positive width "
                         "and at least 3 points")
    t = model.target
    k0 = float(t.couplings.kappa.detach()) if center is None else float(center)
    snapshot = copy.deepcopy(model.prior.state_dict())
    was_training = model.training
    model.eval()   # the evaluation ODE tolerances (rtol/atol), not the training ones, whatever the caller's mode
    try:
        with torch.no_grad():
            x, log_q = model.sample(n, rng)
    finally:
        model.train(was_training)
    model.prior.load_state_dict(snapshot)
    a, g = _kappa_linear_terms(x, log_q, t.couplings, t.lattice)

    def ess(kappa: float) -> float:
        return float(kish_ess(torch.as_tensor(a - kappa * g)))

    grid = np.linspace(max(k0 - scan_width, 0.0), k0 + scan_width, int(scan_points))
    vals = np.array([ess(k) for k in grid])
    j = int(np.argmax(vals))
    lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
    opt = minimize_scalar(lambda k: -ess(k), bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    kappa, best = (float(opt.x), -float(opt.fun)) if -opt.fun >= vals[j] else (float(grid[j]), float(vals[j]))
    return {"kappa": kappa, "ess": best, "ess_center": ess(k0), "kappa_grid": grid.tolist(), "ess_grid": vals.tolist()}


@dataclass
class UVLadderConfig:
    """Options of :func:`uv_ladder` (module docstring); App. A / App. C defaults.

    Attributes
    ----------
    retrain_steps : int
        ``N_RT``: the most retraining steps of a level ``i >= 2``.
    lr_factor : float
        Learning-rate factor of the retraining (App. A: 1/5).
    check_every, patience, min_delta : int, int, float
        Early stopping: evaluate the ESS every ``check_every`` steps, stop after ``patience`` checks without a
        rise of ``min_delta`` over the best.
    eval_batch_size : int
        Draws of every ESS evaluation and of the coupling scan.
    scan_width, scan_points : float, int
        The ``kappa`` scan of :func:`best_coupling`.
    """

    retrain_steps: int = 200
    lr_factor: float = 0.2
    check_every: int = 10
    patience: int = 3
    min_delta: float = 0.005
    eval_batch_size: int = 512
    scan_width: float = 0.05
    scan_points: int = 21

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        for name in ("retrain_steps", "check_every", "patience", "eval_batch_size", "scan_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "retrain_steps" else 1):
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        if not 0 < self.lr_factor <= 1:
            raise ValueError(f"lr_factor={self.lr_factor!r}: expected 0 < factor <= 1")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta={self.min_delta!r}: expected >= 0")
        if not self.scan_width > 0:
            raise ValueError(f"scan_width={self.scan_width!r}: expected > 0")
        if self.scan_points < 3:
            raise ValueError(f"scan_points={self.scan_points!r}: expected at least 3")


def _level_target(full: LearnableTargetAction, shape: tuple[int, ...], level: int) -> LearnableTargetAction:
    """The learnable target of an intermediate lattice, with the full target's settings."""
    c0 = full.couplings
    c = Phi4Couplings(float(c0.kappa.detach()), float(c0.lam.detach()), learn=c0.learn, dtype=c0.kappa.dtype)
    lat = Lattice(shape)
    lz = full.log_z
    log_z = None if lz is None else LogZGradient(c, lat, lz.sampler, lz.n_samples, threshold=lz.threshold)
    return LearnableTargetAction(lat, c, log_z, seed=full.seed + 7919 * level)


def _early_stop(history: list[dict[str, float]], start: int, patience: int, min_delta: float) -> bool:
    """Whether the evaluations recorded since step ``start`` have stopped improving (module docstring)."""
    ess = [h["eval_ess"] for h in history if h.get("step", 0) > start and "eval_ess" in h]
    best, since = -math.inf, 0
    for e in ess:
        if e > best + min_delta:
            best, since = e, 0
        else:
            since += 1
    return since >= patience


def _write_json(path: str, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1)


def uv_ladder(model: UVMatchingModel, train_config: Any, folder: str | os.PathLike[str],
              ladder: UVLadderConfig | None = None, *,
              on_step: Callable[[int, dict[str, float]], None] | None = None, seed: int = 0) -> dict[str, Any]:
    """Train ``model`` level by level (module docstring); resumable from ``folder``.

    Parameters
    ----------
    model : UVMatchingModel
        The full ladder: ``k`` rectangular flows; its target is the finest lattice's. The intermediate levels
        get targets of their own with the same settings.
    train_config : TrainConfig
        Level 1 (``steps``, ``lr``, ...); levels ``i >= 2`` use it with ``lr * lr_factor``, ``retrain_steps``
        and evaluations every ``check_every`` steps. Its ``checkpoint_path`` is replaced by
        ``folder/level_<i>.pt``.
    folder : path
        Level checkpoints and ``uv_levels.json`` (one entry per finished level: steps, learned and ESS-optimal
        ``kappa``, the ESS at both, the scan; for ``i >= 2`` also ``kappa_start``/``ess_start``, the copied
        transformation before retraining), written atomically; rerunning resumes.
    ladder : UVLadderConfig
    on_step : callable
        ``on_step(level, metrics)`` after every training step (metrics files of the jobs).
    seed : int
        Seed of the coupling scans' draws (one generator per level: deterministic on resumption).

    Returns
    -------
    dict
        ``levels`` (the entries of ``uv_levels.json``) and ``steps`` (all levels).
    """
    from latticekit.flows.train import Trainer

    ladder = UVLadderConfig() if ladder is None else ladder
    ladder.validate()
    if not isinstance(model, UVMatchingModel):
        raise TypeError(f"model={type(model).__name__}: expected a UVMatchingModel")
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    summary_path = os.path.join(folder, "uv_levels.json")
    done: list[dict[str, Any]] = []
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            done = json.load(f)["levels"]
    flows, k = list(model.flows), len(model.flows)
    levels = []
    for i in range(1, k + 1):
        target = model.target if i == k else _level_target(model.target, flows[i - 1].fine_shape, i)
        levels.append(UVMatchingModel(model.prior, flows[:i], target))
    total = 0
    for i, m in enumerate(levels, start=1):
        ckpt = os.path.join(folder, f"level_{i}.pt")
        retrain = i >= 2
        cfg = replace(train_config, checkpoint_path=ckpt,
                      **({"lr": train_config.lr * ladder.lr_factor, "steps": ladder.retrain_steps,
                          "eval_every": ladder.check_every, "eval_batch_size": ladder.eval_batch_size}
                         if retrain else {}))
        for j, T in enumerate(flows[:i]):  # level i trains T_i (and its coupling) only
            T.requires_grad_(j == i - 1)
            T.zero_grad(set_to_none=True)
        fresh = not os.path.exists(ckpt)
        if fresh and retrain:
            # T_i starts as a copy of T_{i-1} (size-independent transformation) and the coupling at the
            # ESS-optimal value for the new lattice
            flows[i - 1].load_state_dict(copy.deepcopy(flows[i - 2].state_dict()))
            m.to(dtype=getattr(torch, train_config.dtype))
            start = best_coupling(m, ladder.eval_batch_size,
                                  backends.rng(seed + 104729 * i, backend="torch"),
                                  scan_width=ladder.scan_width, scan_points=ladder.scan_points,
                                  center=done[-1]["kappa"])
            with torch.no_grad():
                m.target.couplings.kappa.fill_(start["kappa"])
            # the iterated transformation before retraining (N_RT = 0, Figs. 8-9), kept for the level's entry
            _write_json(os.path.join(folder, f"level_{i}_start.json"),
                        {"kappa_start": start["kappa"], "ess_start": start["ess"]})
        tr = Trainer(m, m.target, cfg)
        if not fresh:
            tr.load(ckpt)
        entry = next((e for e in done if e["level"] == i), None)
        if entry is None:
            while tr.step < cfg.steps and not (retrain and _early_stop(tr.history, 0, ladder.patience,
                                                                         ladder.min_delta)):
                n = min(ladder.check_every - tr.step % ladder.check_every, cfg.steps - tr.step) if retrain else 1
                for _ in range(n):
                    tr.train_step()
                    if cfg.eval_every and tr.step % cfg.eval_every == 0:
                        tr.history[-1].update(tr.evaluate())
                    if on_step is not None:
                        on_step(i, dict(tr.history[-1]))
                    if cfg.checkpoint_every and tr.step % cfg.checkpoint_every == 0:
                        tr.save()
            tr.save()
            learned = float(m.target.couplings.kappa.detach())
            scan = best_coupling(m, ladder.eval_batch_size, backends.rng(seed + 104729 * i + 1, backend="torch"),
                                 scan_width=ladder.scan_width, scan_points=ladder.scan_points, center=learned)
            start_path = os.path.join(folder, f"level_{i}_start.json")
            entry = {"level": i, "lattice": list(m.fine_shape), "steps": tr.step,
                     "early_stopped": bool(retrain and tr.step < cfg.steps),
                     "kappa_learned": learned, "ess_at_learned": scan["ess_center"],
                     "kappa": scan["kappa"], "ess": scan["ess"], "lam": float(m.target.couplings.lam.detach()),
                     "kappa_grid": scan["kappa_grid"], "ess_grid": scan["ess_grid"],
                     "history": [h for h in tr.history if "eval_ess" in h] if retrain else [],
                     "ess_definition": f"Kish ESS/N of N = {ladder.eval_batch_size} fresh draws"}
            if os.path.exists(start_path):  # levels >= 2: the copied transformation at its ESS-optimal kappa
                with open(start_path) as f:
                    entry.update(json.load(f))
            done = [e for e in done if e["level"] != i] + [entry]
            _write_json(summary_path, {"levels": done, "ladder": asdict(ladder)})
        with torch.no_grad():  # the level's coupling: the ESS-optimal one (Fig. 8)
            m.target.couplings.kappa.fill_(entry["kappa"])
        total += tr.step
    for T in flows:
        T.requires_grad_(True)
    return {"levels": done, "steps": total}
