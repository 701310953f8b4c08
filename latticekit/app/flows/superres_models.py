"""Flow-model family ``superres``: super-resolving RG flows for phi^4 (Bauer, Kapust, Pawlowski, Temmen).

``[model] coupling = "superres"`` builds a :class:`~latticekit.flows.superres.SuperResolvingModel`: the coarse
phi^4 theory on ``lattice.shape / 2^k`` (a :class:`~latticekit.flows.superres.CoarseTheoryPrior`) followed by
``k = n_layers`` doublings ``T = F o N o U`` (naive upsampling, zero-sum noise, local CNF), trained by reverse KL
against the theory's fine action (IR-matching, Sec. VI: the fine couplings fixed, the coarse ones learned).

``[model]`` keys:

* ``n_layers`` (default: down to a coarse lattice of 4 sites per direction, as in the paper): doublings;
* ``coarse_kappa``, ``coarse_lam`` (default ``action.kappa``, ``action.lam``: "at the beginning of training, the
  couplings of both lattices have the same value"), ``learn`` (default ``["kappa"]``, the paper's choice;
  ``[]`` keeps the coarse theory fixed);
* the coarse sampler during training: ``langevin_step`` (0.01), ``n_therm`` (50000), ``n_langevin`` (500 per
  step) (App. C); the log Z gradient: ``log_z_samples`` (1024 independent HMC chains of ``hmc_traj``
  trajectories, default 30), ``r_w`` (0.85);
* the noise: ``sigma`` (default: the standard deviation of the coarse configurations about their means, App. C;
  :func:`~latticekit.flows.superres.configuration_std`); ``noise_width = "pooled"`` takes the standard deviation
  of all coarse values instead, the default before 2026-12-06 (to reproduce results recorded with it);
* the CNF (App. C defaults): ``n_basis`` (F = 11), ``n_time`` (D = 10), ``bond_basis`` (F' = 20), ``bond_time``
  (D' = 20), ``kernel_size`` (5: App. C's "kernel size 2" read as a radius, the ``5 x 5`` window; the derivation
  is in :mod:`latticekit.flows.superres.local_cnf`), ``ode_rtol``/``ode_atol`` (default by dtype), ``ode_train_rtol``/``ode_train_atol``
  (the tolerances of the training steps; default ``ode_rtol``/``ode_atol``: evaluation and sampling always use those),
  ``ode_max_steps`` (the most steps of one adaptive solve before it stops with an ``ODESolverError``; default
  :data:`~latticekit.flows.superres.local_cnf.DEFAULT_MAX_STEPS`, 0 for no bound), ``adjoint`` (false), ``init``
  ("gerdes", the initialisation of Gerdes et al.'s code, with which App. C's lr 0.01 trains from the first step;
  "normal", LocalCNF's, needs a learning-rate warm-up at 16x16 and reaches less: benchmarks/README.md, "The same
  initialisation for the IR flow"; :data:`~latticekit.flows.superres.cnf_base.INITS`).

``kernel_size`` must satisfy ``kernel_size // 2 <`` every extent of the first doubling's fine lattice (the smallest
a CNF acts on), checked with the configuration (:func:`_check`, shared with ``superres_uv``).

``latticekit train`` is one reverse-KL run (:func:`superres_train`); its ``train.json`` reports ``log mean w`` as
``log_z_ratio_estimate`` = ``log Z_fine - log Z_coarse`` at the trained coarse couplings (the coarse prior's
density lacks ``1/Z_coarse``, eq. 33), with the exact ratio of free theories and the KL
(:func:`log_z_ratio_entries`), not as ``log_z_estimate``.

``latticekit sample`` runs independence Metropolis with the coarse fields drawn by independent HMC chains at the
learned couplings (exact stationary distribution), not by the training Langevin batch; ``sample.json`` gets
the learned ``coarse_kappa``/``coarse_lam`` and the proposal ESS.

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"kind": "phi4", "kappa": 0.25, "lam": 0.01},
...                             "model": {"coupling": "superres", "n_therm": 10, "n_langevin": 2, "n_basis": 3,
...                                       "n_time": 2, "bond_basis": 2, "bond_time": 2}})
>>> model, action, lat = build_flow(cfg)
>>> model.coarse_shape, model.fine_shape, model.prior.couplings.learn
((4, 4), (8, 8), ('kappa',))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from latticekit.utils.schema import ConfigError, setting

from .models import FlowFamily

__all__ = ["LOG_Z_RATIO_DEFINITION", "SUPERRES", "OdeSettings", "SuperresBaseSettings", "SuperresSettings",
           "check_init", "coarse_std", "coarse_theory", "exact_chain", "log_z_ratio_entries", "rectangular_stack",
           "superres_flow", "superres_train"]


def _check_learn(names: list[str]) -> str | None:
    bad = [n for n in names if n not in ("kappa", "lam")]
    return f"expected a subset of ['kappa', 'lam'], got {bad}" if bad else None


def check_init(name: str) -> str | None:
    """None for a name of ``latticekit.flows.superres.cnf_base.INITS``, else the error text (torch not imported)."""
    inits = ("normal", "gerdes")
    return None if name in inits else f"expected one of {list(inits)}, got {name!r}"


@dataclass
class OdeSettings:
    """``[model]`` keys of the continuous flows' ODE and initialisation, shared by ``superres``, ``superres_uv``
    and ``cnf``."""

    ode_rtol: float | None = setting(None, gt=0.0, le=1.0, doc="ODE relative tolerance (default by dtype)")
    ode_atol: float | None = setting(None, gt=0.0, le=1.0, doc="ODE absolute tolerance (default by dtype)")
    ode_train_rtol: float | None = setting(None, gt=0.0, le=1.0,
                                           doc="ODE relative tolerance of the training steps (default ode_rtol)")
    ode_train_atol: float | None = setting(None, gt=0.0, le=1.0,
                                           doc="ODE absolute tolerance of the training steps (default ode_atol)")
    ode_max_steps: int | None = setting(None, ge=0, doc="most steps of one adaptive ODE solve before it stops with "
                                        "an error (default: the layer's DEFAULT_MAX_STEPS; 0: no bound)")
    adjoint: bool = setting(False, doc="adjoint method for the ODE gradients")
    init: str = setting("gerdes", check=check_init, doc="initialisation of the CNF's frequencies and factors "
                        "(latticekit.flows.superres.cnf_base.INITS)")

    def solver_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~latticekit.flows.superres.SineBasisCNF` (LocalCNF, FullKernelCNF)."""
        kw: dict[str, Any] = {"rtol": self.ode_rtol, "atol": self.ode_atol, "adjoint": self.adjoint,
                              "train_rtol": self.ode_train_rtol, "train_atol": self.ode_train_atol, "init": self.init}
        if self.ode_max_steps is not None:   # None keeps the layer's default bound, 0 removes it
            kw["max_steps"] = self.ode_max_steps or None
        return kw


@dataclass
class SuperresBaseSettings(OdeSettings):
    """``[model]`` keys shared by ``superres`` (IR-matching) and ``superres_uv`` (UV-matching)."""

    n_layers: int | None = setting(None, ge=1, doc="doublings (default: down to a coarse lattice of 4 sites)")
    coarse_kappa: float | None = setting(None, ge=0.0, le=10.0, doc="initial coarse kappa (default action.kappa)")
    coarse_lam: float | None = setting(None, ge=0.0, le=1e4, doc="initial coarse lambda (default action.lam)")
    log_z_samples: int = setting(1024, ge=2, doc="independent HMC chains for the log Z gradient (eq. 34)")
    hmc_traj: int = setting(30, ge=1, doc="HMC trajectories per chain (log Z set, sampling)")
    r_w: float = setting(0.85, gt=0.0, le=1.0, doc="ESS/N below which the log Z set is redrawn (eq. 36)")
    sigma: float | None = setting(None, gt=0.0, le=1e3, doc="initial noise width (default: from coarse samples, "
                                  "noise_width)")
    noise_width: str = setting("configurations", choices=("configurations", "pooled"),
                               doc="the default sigma: the spread within coarse configurations (App. C), or of all "
                                   "values pooled (the default before 2026-12-06)")
    n_basis: int = setting(11, ge=1, doc="CNF field basis size F (eq. 24)")
    n_time: int = setting(10, ge=1, doc="CNF time kernel size D")
    bond_basis: int = setting(20, ge=1, doc="CNF bond dimension F' (eq. 25)")
    bond_time: int = setting(20, ge=1, doc="CNF bond dimension D' (eq. 25)")
    kernel_size: int = setting(5, ge=1, doc="CNF spatial kernel width per axis (App. C's IR 'kernel size 2' is the "
                                            "radius: 5; 2 is the block alone, 3 the 3x3 window)")


@dataclass
class SuperresSettings(SuperresBaseSettings):
    """``[model]`` keys of ``coupling = "superres"`` (module docstring)."""

    learn: list[str] = setting(["kappa"], check=_check_learn, doc="coarse couplings trained (IR-matching)")
    langevin_step: float = setting(0.01, gt=0.0, le=1.0, doc="Langevin step tau of the coarse sampler (eq. 37)")
    n_therm: int = setting(50000, ge=0, doc="Langevin thermalisation steps of the first draw")
    n_langevin: int = setting(500, ge=1, doc="Langevin steps per draw (re-thermalisation)")


def _default_layers(shape: Sequence[int]) -> int:
    """Doublings down to 4 sites per direction (the paper's coarsest lattice), at least one."""
    k = 0
    while all(L % 2 ** (k + 1) == 0 and L // 2 ** (k + 1) >= 4 for L in shape):
        k += 1
    return max(k, 1)


def _check(shape: Sequence[int], s: Any) -> None:
    k = s.n_layers if s.n_layers is not None else _default_layers(shape)
    if any(L % 2 ** k or L // 2 ** k < 2 for L in shape):
        raise ConfigError(f"model.n_layers: {k} doublings need every extent of lattice.shape = {list(shape)} to be "
                          f"coarse x 2^{k} with a coarse extent of at least 2 (even coarse extents for the CNF)")
    if len(shape) < 1:
        raise ConfigError("lattice.shape: expected at least one dimension")
    # LocalCNF's closed-form divergence needs every extent of its lattice to exceed kernel_size // 2 (no kernel
    # offset other than 0 may wrap onto the site itself); the smallest lattice is the first doubling's fine one
    first, r = [L // 2 ** (k - 1) for L in shape], s.kernel_size // 2
    if any(n <= r for n in first):
        raise ConfigError(f"model.kernel_size: {s.kernel_size} is too large for the smallest lattice the CNFs act "
                          f"on, {first} (the first doubling's fine lattice of lattice.shape = {list(shape)} with "
                          f"{k} doubling(s)): every extent must exceed kernel_size // 2 = {r}; expected "
                          f"kernel_size <= {2 * min(first) - 1}")


def superres_flow(theory: Any, s: SuperresSettings) -> Any:
    """The super-resolving model of ``theory`` (module docstring)."""
    from latticekit.flows.superres import (
        CoarseTheoryPrior,
        LogZGradient,
        Phi4Couplings,
        SuperResolvingModel,
        hmc_sampler,
    )

    coarse, k, kappa, lam = coarse_theory(theory, s, "superres")
    c = Phi4Couplings(kappa, lam, learn=tuple(s.learn))
    log_z = LogZGradient(c, coarse, hmc_sampler(n_traj=s.hmc_traj), s.log_z_samples, threshold=s.r_w) if s.learn else None
    prior = CoarseTheoryPrior(coarse, c, log_z=log_z, step_size=s.langevin_step, n_therm=s.n_therm,
                              n_steps=s.n_langevin)
    return SuperResolvingModel(prior, rectangular_stack(coarse, k, s, coarse_std(coarse, kappa, lam, s)))


def coarse_theory(theory: Any, s: SuperresBaseSettings, family: str) -> tuple[Any, int, float, float]:
    """The coarse lattice, the number of doublings and the coarse couplings ``(kappa, lam)`` of the ``[model]``
    keys (default: the action's couplings); refuses theories other than phi^4."""
    from latticekit.lattice import Lattice

    if theory.kind != "phi4":
        raise ConfigError(f"model.coupling: {family!r} samples phi^4 (action.kind = 'phi4'), got {theory.kind!r}")
    p, fine = theory.params, tuple(theory.lattice.shape)
    k = s.n_layers if s.n_layers is not None else _default_layers(fine)
    kappa = p.kappa if s.coarse_kappa is None else s.coarse_kappa
    lam = p.lam if s.coarse_lam is None else s.coarse_lam
    return Lattice(tuple(L // 2 ** k for L in fine)), k, kappa, lam


def coarse_std(coarse: Any, kappa: float, lam: float, s: SuperresBaseSettings) -> float:
    """``model.sigma``, or by default the standard deviation of the coarse configurations (App. C) from 256 short
    HMC chains (seeded from torch's global generator, which :func:`~.models.build_flow` seeds with ``train.seed``).

    App. C initialises ``sigma^2`` to "the variance of the configurations phi on the coarse lattice ... to ensure
    that the noise does not dominate the flow at the beginning of the training": the variance of each
    configuration about its own mean, averaged over the configurations. The variance of all values together adds
    ``<M^2>``, the spread of the configuration means: on the 4x4 coarse lattice at lambda = 0.01 it is 1.13^2
    against 0.70^2 at kappa = 0.25 and 3.15^2 against 0.57^2 at kappa = 0.30 (broken phase, ``|M| ~ 3``), where that
    noise dominates: the first loss of the 16x16 IR flow was +6077 against -314 (benchmarks/README.md,
    "the noise width"). :func:`~latticekit.flows.superres.configuration_std` has the definition.
    """
    import torch

    from latticekit import backends
    from latticekit.actions.phi4 import Phi4Action
    from latticekit.flows.superres import configuration_std, hmc_sampler

    if s.sigma is not None:
        return float(s.sigma)
    rng = backends.rng(int(torch.randint(0, 2 ** 31 - 1, ())), backend="torch")
    with torch.no_grad():
        phi0 = hmc_sampler(n_traj=s.hmc_traj)(Phi4Action(coarse, kappa, lam), 256, None, rng)
    return configuration_std(phi0, nd=coarse.nd) if s.noise_width == "configurations" else float(phi0.std())


def rectangular_stack(coarse: Any, k: int, s: SuperresBaseSettings, sigma: float) -> list[Any]:
    """``k`` doublings ``T = F o N o U`` from the ``coarse`` lattice: zero-sum noise of width ``sigma`` and the
    local CNF of the ``[model]`` keys."""
    import torch

    from latticekit.flows.superres import LocalCNF, RectangularFlow, ZeroSumNoise

    flows, shape = [], tuple(coarse.shape)
    for _ in range(k):
        fine_shape = tuple(2 * L for L in shape)
        cnf = LocalCNF(fine_shape, n_basis=s.n_basis, n_time=s.n_time, bond_basis=s.bond_basis,
                       bond_time=s.bond_time, kernel_size=s.kernel_size, **s.solver_kwargs())
        flows.append(RectangularFlow(shape, ZeroSumNoise(2, nd=len(shape), sigma=sigma, dtype=torch.float64), cnf))
        shape = fine_shape
    return flows


#: what the super-resolving families report in ``train.json`` instead of ``log_z_estimate`` (docs/flows.md)
LOG_Z_RATIO_DEFINITION = ("log Z_fine - log Z_coarse at the evaluated couplings: log mean w of the evaluation draws, "
                          "whose log q uses the coarse prior's unnormalised density exp(-S_coarse) (no -log Z_coarse, "
                          "eq. 33), so log mean w does not estimate the fine theory's log Z alone")


def log_z_ratio_entries(ev: dict[str, Any], fine: tuple[Sequence[int], float, float],
                        coarse: tuple[Sequence[int], float, float]) -> dict[str, Any]:
    """The ``train.json`` entries of a super-resolving model's final evaluation ``ev`` (``Trainer.evaluate``).

    The model's ``log q`` carries the coarse prior's ``-S_coarse`` without ``-log Z_coarse`` (eq. 33), so
    ``log mean w`` (the trainer's ``eval_log_z_estimate``) estimates ``log Z_fine - log Z_coarse``, not
    ``log Z_fine``. The entries name it so: ``eval`` with ``eval_log_z_ratio_estimate``/``eval_log_z_ratio_error``
    in place of ``eval_log_z_estimate``/``eval_log_z_error``; ``log_z_ratio_estimate``, ``log_z_ratio_error``,
    ``log_z_ratio_definition``; ``log_z_ratio_exact`` where both theories are free (``lam = 0``:
    :func:`latticekit.exact.free_scalar_log_z`), else None; ``kl`` = ``log Z_fine - log Z_coarse + eval_loss``
    (eqs. 31-33; the trainer's ``eval_kl_estimate`` is this with the estimate, which the offset ``log Z_coarse``
    cancels from) with the exact ratio where known, ``kl_log_z`` saying which. ``fine`` and ``coarse`` are
    ``(lattice shape, kappa, lam)``.
    """
    import math

    from latticekit.exact import free_scalar_log_z

    names = {"eval_log_z_estimate": "eval_log_z_ratio_estimate", "eval_log_z_error": "eval_log_z_ratio_error"}
    ev = {names.get(k, k): v for k, v in ev.items()}
    exact = None
    if fine[2] == 0.0 and coarse[2] == 0.0:
        try:
            exact = (free_scalar_log_z(tuple(fine[0]), kappa=float(fine[1]))
                     - free_scalar_log_z(tuple(coarse[0]), kappa=float(coarse[1])))
        except (ValueError, ZeroDivisionError):   # kappa outside the free theory's range: no exact value
            exact = None
        exact = exact if exact is not None and math.isfinite(exact) else None
    return {"eval": ev, "log_z_ratio_estimate": ev["eval_log_z_ratio_estimate"],
            "log_z_ratio_error": ev["eval_log_z_ratio_error"], "log_z_ratio_exact": exact,
            "log_z_ratio_definition": LOG_Z_RATIO_DEFINITION,
            "kl": ev["eval_kl_estimate"] if exact is None else exact + ev["eval_loss"],
            "kl_log_z": "estimate" if exact is None else "exact"}


def superres_train(cfg: Any, outdir: Any, *, device: Any, fresh: bool, progress: bool,
                   distributed: bool = False) -> dict[str, Any]:
    """The train job of ``superres``: one reverse-KL run (:func:`~.train.run_training`), whose ``train.json`` is
    then rewritten with :func:`log_z_ratio_entries` in place of ``log_z_estimate``/``log_z_exact`` (the trainer's
    ``log mean w`` is ``log Z_fine - log Z_coarse`` here). Returns the content of ``train.json``."""
    from pathlib import Path

    import torch

    from ..folders import CHECKPOINT, TRAIN_SUMMARY, write_json
    from .train import run_training

    kw: dict[str, Any] = {"distributed": True} if distributed else {}
    summary = run_training(cfg, outdir, device=device, fresh=fresh, progress=progress, family_job=False, **kw)
    if distributed and torch.distributed.get_rank() != 0:   # rank 0 writes train.json (and prints the summary)
        return summary
    # the coarse couplings the final evaluation used: the trained ones, from the checkpoint written at the end
    state = torch.load(Path(outdir) / CHECKPOINT, map_location="cpu", weights_only=False)["model"]
    coarse, _k, _kappa, _lam = coarse_theory(cfg.theory, cfg.model.variant, "superres")
    p = cfg.theory.params
    entries = log_z_ratio_entries(summary["eval"], (cfg.lattice.shape, p.kappa, p.lam),
                                  (coarse.shape, float(state["prior.couplings.kappa"]),
                                   float(state["prior.couplings.lam"])))
    out: dict[str, Any] = {}
    for key, value in summary.items():   # the entries where log_z_estimate stood; no log_z_exact (of log Z_fine)
        if key == "log_z_estimate":
            out.update({k: v for k, v in entries.items() if k != "eval"})
        elif key not in ("log_z_exact", "kl", "kl_log_z"):
            out[key] = entries["eval"] if key == "eval" else value
    write_json(Path(outdir) / TRAIN_SUMMARY, out)
    return out


def superres_sampler(model: Any, theory: Any, s: SuperresSettings, n: int, rng: Any, *,
                     observables: dict[str, Callable[[Any], Any]], batch_size: int,
                     progress: Callable[[str], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Independence Metropolis with coarse fields from independent HMC chains at the learned couplings
    (``progress``: :func:`exact_chain`)."""
    from latticekit.flows.superres import (
        CoarseTheoryPrior,
        SuperResolvingModel,
        hmc_sampler,
    )

    prior = model.prior
    exact = CoarseTheoryPrior(prior.lattice, prior.couplings, log_z=prior.log_z, sampler=hmc_sampler(n_traj=s.hmc_traj))
    return exact_chain(SuperResolvingModel(exact, list(model.flows)), theory.make_action(), s, n, rng,
                       observables=observables, batch_size=batch_size, progress=progress)


def exact_chain(model: Any, action: Any, s: SuperresBaseSettings, n: int, rng: Any, *,
                observables: dict[str, Callable[[Any], Any]], batch_size: int,
                progress: Callable[[str], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The independence Metropolis chain of a super-resolving ``model`` whose prior draws exactly (HMC) against
    ``action``, and the coarse couplings and proposal ESS for ``sample.json``. ``progress(phase)``, where given,
    stores the proposals batch by batch with the prior's HMC chains (its extra state), so that a killed sample job
    resumes with the same numbers (:mod:`latticekit.flows.batch_progress`)."""
    from latticekit.analysis import ess as kish
    from latticekit.flows.sampling import draw_weighted, metropolis_chain

    prior = model.prior
    x, lw = draw_weighted(model, action, n, rng, batch_size,
                          progress=None if progress is None else progress("proposals"),
                          state=(prior.get_extra_state, prior.set_extra_state))
    res = metropolis_chain(x, lw, rng, observables=observables, keep_configs=True)
    c = model.prior.couplings
    extra = {"coarse_kappa": float(c.kappa.detach()), "coarse_lam": float(c.lam.detach()),
             "proposal_ess": float(kish(lw.cpu())),
             "coarse_sampler": f"{s.hmc_traj} HMC trajectories per independent chain, restarted from the previous batch"}
    return res, extra


SUPERRES = FlowFamily("superres", SuperresSettings, superres_flow, _default_layers, _check, sampler=superres_sampler,
                      sampler_resumes=True, train=superres_train, distributed_train=True)
