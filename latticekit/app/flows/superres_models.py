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

__all__ = ["SUPERRES", "OdeSettings", "SuperresBaseSettings", "SuperresSettings", "coarse_std", "coarse_theory",
           "check_init", "exact_chain", "rectangular_stack", "superres_flow"]


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
                      sampler_resumes=True)
