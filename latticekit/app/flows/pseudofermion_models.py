"""Flow-model family ``pseudofermion``: joint gauge x pseudofermion models (arXiv:2207.08945).

``[model] coupling = "pseudofermion"`` (the default for ``action.kind = "wilson_nf2"``) builds a
:class:`~latticekit.flows.pseudofermion.JointModel`: the marginal gauge flow (the plaquette couplings of
:mod:`.gauge_models` on a Haar prior, eq. 21) and one conditional pseudofermion flow per Hasenbusch
monomial of the theory (``action.even_odd``, ``action.hasenbusch_mus``; eqs. 35-39), sharing one context
trunk (App. B.2). The training target is :class:`~latticekit.flows.pseudofermion.JointAction` with the
regulator ``D D^dag + mu0`` (Sec. IV.A; sampling uses the unregulated operator), and the sample job runs
pseudo-marginal independence Metropolis with ``n_pf`` pseudofermions per gauge field and monomial
(eqs. 42-46), reporting the joint ESS, the marginal ESS (dense determinants on small lattices) and
``ESS(N_pf)`` with the fit of eq. (45).

``[model]`` keys of the marginal flow: those of the gauge families (``n_layers``, ``masks`` = ``"auto"``:
stripes in 2D when the extents are multiples of 4, else checkerboard, ``hidden``, ``kernel_size``,
``act``, ``bins``, ``zero_init``, ``loop_context``). Keys of the conditional flows: ``pf_layers`` (24, the
paper's L = 8 models), ``partitioning`` (``"spatial"``: checkerboards, rows of even sites for even/odd
targets; ``"spin"``; ``"alternating"``), ``n_pt`` (PTCs per PTCN; default 6 with even/odd, 3 without,
App. B.3), ``pt_hidden`` (``H`` of the intermediate PTCs, 2), ``context_hidden`` (``N_hidden``, 16),
``context_coords`` (the ``x_i mod 4`` inputs), ``init_gain`` (Xavier gain, 0.5). Training and sampling:
``mu0`` (regulator, 1e-5), ``objective`` (``"joint"``: the joint reverse KL of Sec. IV.A;
``"marginal"``: the gauge flow alone against ``S_g - log det``, stochastic determinant gradients
(arXiv:2106.05934 App. C) with ``n_noise`` vectors; ``"conditional"``: the joint KL with the marginal
flow frozen, the second stage of arXiv:2208.03832; ``"staged"``: both stages in one job, :mod:`.pf_staged`, the
marginal with the ``[train]`` options, the conditional stages from ``conditional_steps``,
``conditional_batch_size``, ``conditional_lr``, ``conditional_step_size``, ``conditional_gamma``),
``logdet_gradient`` (the marginal objective's log-det gradient: ``"dirac"``, ``"normal"`` (arXiv:2106.05934
App. C), both stochastic with ``n_noise`` vectors, or ``"dense"``, exact, for lattices with at most 1024
complex pseudofermion components per monomial), ``n_pf`` (pseudofermion draws per gauge field in
``latticekit sample``, default 1; ``--n-pf`` overrides it), ``ess_npf_max`` (largest ``N_pf`` of the
``ESS(N_pf)`` curve in ``sample.json``, 0: none).

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson_nf2", "kappa": 0.2,
...                             "even_odd": True, "hasenbusch_mus": [0.1]},
...                             "model": {"n_layers": 2, "hidden": [4], "pf_layers": 2, "context_hidden": 4}})
>>> model, action, lat = build_flow(cfg)
>>> type(model).__name__, len(model.conditionals), type(action).__name__
('JointModel', 2, 'JointAction')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from latticekit.utils.schema import ConfigError, setting

from .models import FlowFamily
from .pf_staged import CONDITIONAL_LISTS, check_conditional_schedule
from .pf_targets import theory_targets
from .scalar_models import check_activation

#: ``latticekit.flows.pseudofermion.GRADIENTS``, spelled out: the configuration is validated without importing torch
GRADIENTS = ("dirac", "normal", "dense")

__all__ = ["PSEUDOFERMION", "PseudofermionSettings", "pseudofermion_flow", "pseudofermion_sampler",
           "pseudofermion_train", "theory_targets"]


@dataclass
class PseudofermionSettings:
    """``[model]`` keys of ``coupling = "pseudofermion"`` (module docstring)."""

    n_layers: int | None = setting(None, ge=1, doc="gauge coupling layers of the marginal flow")
    masks: str = setting("auto", choices=("auto", "stripes", "checkerboard"), doc="masks of the marginal flow")
    hidden: list[int] = setting([8, 8], ge=1, doc="hidden channels of the marginal flow's CNN")
    kernel_size: int = setting(3, ge=1, odd=True, doc="CNN kernel size (odd)")
    act: str = setting("leaky_relu", check=check_activation, doc="activation of the marginal flow")
    bins: int = setting(8, ge=2, doc="spline bins of the marginal flow")
    zero_init: bool = setting(False, doc="start the marginal flow at the identity map")
    loop_context: bool = setting(True, doc="marginal flow: feed the two-plaquette loops to the nets")
    pf_layers: int = setting(24, ge=1, doc="pseudofermion layers per monomial")
    partitioning: str = setting("spatial", choices=("spatial", "spin", "alternating"),
                                doc="variable partitioning of the pseudofermion layers")
    n_pt: int | None = setting(None, ge=1, doc="PTCs per PTCN (default 6 with even/odd, 3 without)")
    pt_hidden: int = setting(2, ge=1, doc="features H of the intermediate PTCs")
    context_hidden: int = setting(16, ge=1, doc="channels N_hidden of the shared context trunk")
    context_coords: bool = setting(True, doc="feed x_i mod 4 to the context function (eq. B3)")
    init_gain: float = setting(0.5, gt=0.0, le=10.0, doc="Xavier-normal gain of the context convolutions")
    mu0: float = setting(1e-5, ge=0.0, le=1.0, doc="training regulator D D^dag + mu0")
    objective: str = setting("joint", choices=("joint", "marginal", "conditional", "staged"),
                             doc="training objective")
    n_noise: int = setting(1, ge=1, doc="noise vectors of the stochastic log-det gradient (marginal objective)")
    logdet_gradient: str = setting("dirac", choices=GRADIENTS,
                                   doc="log-det gradient of the marginal objective (dense: exact, small lattices)")
    conditional_steps: list[int] = setting([1000], ge=0, min_items=1,
                                           doc="objective = staged: steps of each conditional stage")
    conditional_batch_size: list[int] = setting([64], ge=2, min_items=1,
                                                doc="objective = staged: batch size of each conditional stage")
    conditional_lr: list[float] = setting([5e-4], gt=0.0, min_items=1,
                                          doc="objective = staged: initial learning rate of each conditional stage")
    conditional_step_size: list[int] = setting([0], ge=0, min_items=1,
                                               doc="objective = staged: steps between learning-rate decays (0: none)")
    conditional_gamma: float = setting(0.5, gt=0.0, le=1.0, doc="learning-rate decay of the conditional stages")
    n_pf: int = setting(1, ge=1, doc="pseudofermion draws per gauge field and monomial in latticekit sample")
    ess_npf_max: int = setting(0, ge=0, doc="largest N_pf of the ESS(N_pf) curve of latticekit sample (0: none)")


def _masks(shape: Sequence[int], s: Any) -> str:
    if s.masks != "auto":
        return s.masks
    return "stripes" if len(shape) == 2 and all(L % 4 == 0 for L in shape) else "checkerboard"


#: keys read by some objectives only: a value other than the default under another objective is refused (it was
#: ignored: objective = "joint" with conditional stages trained no conditional stage, without a word)
OBJECTIVE_KEYS = {"n_noise": ("marginal", "staged"), "logdet_gradient": ("marginal", "staged"),
                  **{k: ("staged",) for k in ("conditional_steps", "conditional_batch_size", "conditional_lr",
                                              "conditional_step_size", "conditional_gamma")}}


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _check(shape: Sequence[int], s: Any) -> None:
    for key, objectives in OBJECTIVE_KEYS.items():
        if s.objective not in objectives and getattr(s, key) != _default(type(s), key):
            raise ConfigError(f"model.{key} is read with objective = {' or '.join(map(repr, objectives))} only; "
                              f"objective = {s.objective!r} would ignore it: remove it or change model.objective")
    masks = _masks(shape, s)
    if masks == "stripes" and (len(shape) != 2 or any(L % 4 for L in shape)):
        raise ConfigError(f"model.masks: the stripe couplings need a 2D lattice with extents divisible by 4, got "
                          f"{list(shape)}; use masks = 'checkerboard'")
    if any(L % 2 for L in shape):
        raise ConfigError(f"lattice.shape: the pseudofermion flows' masks need even extents, got {list(shape)}")
    check_conditional_schedule(s)


def _default_layers(shape: Sequence[int]) -> int:
    return 16 if len(shape) == 2 and all(L % 4 == 0 for L in shape) else max(2 * len(shape) * (len(shape) - 1),
                                                                              4 * len(shape))


def pseudofermion_flow(theory: Any, s: PseudofermionSettings) -> Any:
    """The joint model of ``theory`` (module docstring)."""
    from latticekit.flows.pseudofermion import JointModel

    from .gauge_models import gauge_flow

    if theory.params.even_odd and s.n_pt is not None and s.n_pt < 2:
        raise ConfigError(f"model.n_pt: even/odd targets (action.even_odd = true) need n_pt >= 2, got {s.n_pt} "
                          "(one PTC only connects even to odd sites, Sec. III.D.1 of arXiv:2207.08945)")
    marginal = gauge_flow(theory, s, _masks(theory.lattice.shape, s))
    model = JointModel.build(marginal, theory_targets(theory), n_layers=s.pf_layers, partitioning=s.partitioning,
                             n_pt=s.n_pt, hidden_features=s.pt_hidden, n_hidden=s.context_hidden,
                             kernel_size=s.kernel_size, coords=s.context_coords, init_gain=s.init_gain)
    if s.objective == "marginal":
        model.set_objective("marginal")
    if s.objective == "conditional":
        model.freeze_marginal()
    return model


def pseudofermion_action(theory: Any, s: PseudofermionSettings, seed: int) -> Any:
    """The training target: the joint action with the regulator ``mu0``, or the marginal action."""
    from latticekit import backends
    from latticekit.flows.pseudofermion import JointAction, MarginalAction

    targets = theory_targets(theory, s.mu0)
    if s.objective == "marginal":
        # the noise of the stochastic log-det gradient has its own generator (seeded by train.seed + 1):
        # a resumed marginal-objective run is statistically, not bitwise, equal to an uninterrupted one
        try:
            return MarginalAction(theory.make_action(), targets, backends.rng(seed + 1, backend="torch"),
                                  n_noise=s.n_noise, gradient=s.logdet_gradient)
        except ValueError as exc:
            raise ConfigError(f"model.logdet_gradient: {exc}") from None
    return JointAction(theory.make_action(), targets)  # also the final target of objective = "staged"


def pseudofermion_train(cfg: Any, outdir: Any, *, device: Any, fresh: bool, progress: bool,
                        distributed: bool = False) -> dict[str, Any]:
    """The train job: ``objective = "staged"`` runs the staged job of :mod:`.pf_staged` (the marginal flow against
    ``S_g - log det``, then the conditional stages with the marginal frozen); every other objective is one
    reverse-KL run (:func:`~.train.run_training`)."""
    from .pf_staged import pf_staged_train
    from .train import run_training

    kw: dict[str, Any] = {"distributed": True} if distributed else {}
    if cfg.model.variant.objective == "staged":
        return pf_staged_train(cfg, outdir, device=device, fresh=fresh, progress=progress, **kw)
    return run_training(cfg, outdir, device=device, fresh=fresh, progress=progress, family_job=False, **kw)


def pseudofermion_sampler(model: Any, theory: Any, s: PseudofermionSettings, n: int, rng: Any, *,
                          observables: dict[str, Callable[[Any], Any]], batch_size: int,
                          n_pf: int | None = None, progress: Callable[[str], Any] | None = None
                          ) -> tuple[Any, dict[str, Any]]:
    """Pseudo-marginal flow MCMC and the ESS diagnostics of ``latticekit sample`` (module docstring).

    ``progress(phase)``, where given, is the :class:`~latticekit.flows.batch_progress.BatchProgress` of the draws of
    ``phase`` (``"proposals"``, ``"ess_vs_npf"``): a killed sample job resumes them with the same numbers.

    Returns the :class:`~latticekit.flows.sampling.MetropolisResult` (with the gauge fields) and a dict
    for ``sample.json``: ``n_pf``, ``joint_ess`` (Kish ESS/N of the ``n`` proposals' joint weights, one
    pseudofermion draw), ``pseudo_marginal_ess`` (of the chain's ``w_Npf``), ``marginal_ess`` (exact
    determinants, lattices with at most 4096 pseudofermion components; else None) and, there,
    ``exact_marginal_chain`` (a second chain over the same proposals with the exact weights, and the
    reweighting estimate with them: observables free of the pseudofermion noise), ``ess_vs_npf`` and its
    eq. (45) fit on a separate set of ``min(n, 1024)`` gauge fields when ``ess_npf_max > 0`` (with exact
    determinants also those fields' marginal ESS, ``ratio_to_marginal`` = ``ESS(N_pf) / ESS_marg`` and its
    one-parameter fit, :func:`~latticekit.flows.pseudofermion.fit_npf_ratio`), and the mean and largest
    condition number of every monomial's kernel (dense).
    """
    from latticekit.analysis import ess as kish
    from latticekit.analysis import reweight
    from latticekit.flows.pseudofermion import ess_vs_npf, fit_ess_npf, fit_npf_ratio, pf_weights
    from latticekit.flows.sampling import metropolis_chain, metropolis_chain_on_values

    n_pf = s.n_pf if n_pf is None else int(n_pf)
    if n_pf < 1:
        raise ConfigError(f"n_pf={n_pf!r}: expected at least one pseudofermion per gauge field (N_pf >= 1)")
    targets = theory_targets(theory)  # sampling: no regulator (Sec. IV.A)
    gauge = theory.make_action()
    dense = all(t.ndof <= 4096 for t in targets)
    model.set_objective("joint")
    w = pf_weights(model, gauge, targets, n, rng, n_pf=n_pf, batch_size=batch_size, dense=dense,
                   progress=None if progress is None else progress("proposals"))
    res = metropolis_chain(w.U, w.log_w[n_pf], rng, observables=observables, keep_configs=True)
    extra: dict[str, Any] = {
        "n_pf": n_pf, "joint_ess": float(kish(w.log_w_joint.cpu())), "pseudo_marginal_ess": float(kish(w.log_w[n_pf].cpu())),
        "marginal_ess": float(kish(w.log_w_marginal.cpu())) if w.log_w_marginal is not None else None,
        "ess_definition": "Kish ESS/N of the n proposals (eq. 15 of arXiv:2207.08945); joint: one pseudofermion "
                          "draw per monomial; pseudo_marginal: weights averaged over n_pf draws (eq. 44); "
                          "marginal: exact determinants (eq. 19)",
    }
    if w.condition_numbers:
        extra["condition_numbers"] = [{"monomial": repr(t), "mean": float(c.mean()), "max": float(c.max())}
                                      for t, c in zip(targets, w.condition_numbers)]
    if s.ess_npf_max > 0:
        m = min(n, 1024)
        w2 = pf_weights(model, gauge, targets, m, rng, n_pf=s.ess_npf_max, batch_size=batch_size, dense=dense,
                        progress=None if progress is None else progress("ess_vs_npf"))
        curve = ess_vs_npf(w2)
        extra["ess_vs_npf"] = {"n": m, "ess": {str(k): v for k, v in curve.items()}}
        if len(curve) >= 2:
            e_inf, C = fit_ess_npf(list(curve), list(curve.values()))
            extra["ess_vs_npf"]["fit"] = {"ess_inf": e_inf, "C": C, "formula": "ESS(N_pf) = ESS(inf) / (1 + C/N_pf)"}
        if w2.log_w_marginal is not None:
            # the same fields' exact weights: the ratio cancels the gauge-field part of the Kish ESS's scatter
            e_m = float(kish(w2.log_w_marginal.cpu()))
            ratio = {k: v / e_m for k, v in curve.items()}
            extra["ess_vs_npf"].update(
                marginal_ess=e_m, ratio_to_marginal={str(k): v for k, v in ratio.items()},
                ratio_fit={"C": fit_npf_ratio(list(ratio), list(ratio.values())),
                           "formula": "ESS(N_pf) / ESS_marg = 1 / (1 + C/N_pf) on the same gauge fields"})
    if w.log_w_marginal is not None:
        # the same proposals with the exact weights w = e^{-S_g} prod_i det K_i / q(U) (eq. 19, the N_pf -> inf
        # limit of eq. 44): a second chain and the reweighting estimate, free of the pseudofermion noise
        # (last: its uniforms leave the draws above as they were before it existed)
        rm = metropolis_chain_on_values(res.proposal_observables, w.log_w_marginal, rng)
        obs_m: dict[str, Any] = {}
        for k, a in rm.analysis.items():
            r = reweight(rm.proposal_observables[k], rm.proposal_log_w)
            obs_m[k] = {"value": float(a.value), "error": float(a.error), "tau_int": float(a.tau_int),
                        "reweighted": {"value": float(r.value), "error": float(r.error)}}
        extra["exact_marginal_chain"] = {
            "acceptance": float(rm.acceptance.rate), "observables": obs_m,
            "definition": "independence Metropolis over the same proposals with exact-determinant weights (eq. 19 of "
                          "arXiv:2207.08945), and those proposals reweighted by them; Gamma-method errors "
                          "(chain), jackknife (reweighting)"}
    return res, extra


PSEUDOFERMION = FlowFamily("pseudofermion", PseudofermionSettings, pseudofermion_flow, _default_layers, _check,
                           make_action=pseudofermion_action, sampler=pseudofermion_sampler,
                           train=pseudofermion_train, distributed_train=True, appendable=CONDITIONAL_LISTS,
                           sample_keys=("n_pf", "ess_npf_max"), sampler_resumes=True)
