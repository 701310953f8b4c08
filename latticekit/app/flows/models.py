"""Flow-model families: ``model.coupling`` -> how to build a flow model for a theory.

A family (:class:`FlowFamily`) is a builder function registered by name in :data:`FAMILIES`, with the
settings dataclass of the ``[model]`` keys it reads, the lattice checks of its masks and its default
depth. A theory lists the families that can sample it (``Theory.flow_families``; the first is the
default of ``model.coupling``). :func:`build_flow` is a lookup, so a new seed system (multiscale,
super-resolving, pseudofermion flows) adds a module with its family and one line in :data:`FAMILIES`.

====================  ===============================================================  =====================
``coupling``          model                                                            theories
====================  ===============================================================  =====================
``affine``            real-NVP checkerboard couplings (Albergo et al. 2019)            phi4
``spline``            rational-quadratic spline checkerboard couplings                 phi4
``plaquette``         gauge-equivariant plaquette couplings: 2D stripe masks           wilson
                      (Kanwar et al. 2020), Nd >= 3 checkerboard masks
``checkerboard``      gauge-equivariant plaquette couplings, checkerboard masks, any   wilson
                      Nd >= 2
``multiscale``        multiscale prior + fine gauge flow (arXiv:2404.10819)            wilson
``plaquette_prior``   independent plaquettes in the complete axial gauge, optional     wilson (2D U(1))
                      couplings on top (:mod:`latticekit.flows.u1_plaquette_prior`)
``pseudofermion``     joint gauge x pseudofermion model (arXiv:2207.08945), joint or   wilson_nf2
                      staged training
``qcd4d``             4D QCD joint model, shifted-stripe masks, two-stage training     wilson_nf2 (4D)
                      (arXiv:2208.03832)
``superres``          super-resolving RG flow, IR-matching (Bauer et al.)              phi4
``superres_uv``       super-resolving RG flow, UV-matching, iterated to finer          phi4
                      lattices
``cnf``               continuous flow with a lattice-spanning kernel (Gerdes et al.)   phi4
====================  ===============================================================  =====================

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> model, action, lat = build_flow(FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "model": {"n_layers": 2}}))
>>> type(action).__name__, len(model.flow), type(model.flow.layers[0]).__name__
('WilsonGaugeAction', 2, 'U1PlaquetteCoupling')
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [2, 2, 2, 2]}, "action": {"group": "SU2"},
...                             "model": {"hidden": [2]}})
>>> model, action, lat = build_flow(cfg)
>>> len(model.flow), type(model.flow.layers[0]).__name__
(24, 'SUPlaquetteCoupling')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from latticekit.utils.schema import ConfigError

__all__ = ["FAMILIES", "FlowFamily", "build_flow", "family", "family_names"]


def _no_check(shape: Sequence[int], settings: Any) -> None:
    return None


@dataclass(frozen=True)
class FlowFamily:
    """One flow-model family.

    Attributes
    ----------
    name : str
        The ``model.coupling`` value.
    settings : type
        Dataclass of the ``[model]`` keys it reads (besides ``coupling``); ``n_layers`` None means
        :attr:`default_layers`.
    build : callable
        ``build(theory, settings) -> Model`` (prior and flow). Called by :func:`build_flow` inside
        :func:`torch.random.fork_rng` with torch's global generator seeded by ``train.seed``.
    default_layers : callable
        ``default_layers(shape) -> int``.
    check : callable
        ``check(shape, settings)``: lattice conditions of the masks; raises :class:`ConfigError`.
    make_action : callable or None
        ``make_action(theory, settings, seed) -> action``: the training target when it is not the theory's
        action (pseudofermion flows: the joint action); None: ``theory.make_action()``.
    sampler : callable or None
        ``sampler(model, theory, settings, n, rng, *, observables, batch_size, **options) -> (MetropolisResult,
        dict)``: the flow-MCMC chain of ``latticekit sample`` and extra entries of ``sample.json`` when it is
        not the independence Metropolis chain of :func:`~latticekit.flows.independence_metropolis`
        (pseudofermion flows: the pseudo-marginal chain); None: that chain.
    sampled_action : callable or None
        ``sampled_action(model) -> {key: value}``: ``[action]`` values of the theory a trained model samples
        when training changes them (UV-matching: the learned fine couplings); ``latticekit sample`` samples,
        reports and compares (``--compare``, exact values) that theory. None: the configuration's.
    train : callable or None
        ``train(cfg, outdir, *, device, fresh, progress) -> summary``: the family's own training job when it is
        not one reverse-KL run of the model built here (super-resolving UV-matching: the ladder of lattices of
        App. A, :mod:`.superres_uv_models`; the staged pseudofermion jobs, :mod:`.pf_staged`); it writes the job's
        files like :func:`~latticekit.app.flows.train.run_training`, ending with ``checkpoint.pt`` of the model
        that :func:`build_flow` builds, and may hand configurations it trains as one reverse-KL run back to
        ``run_training(..., family_job=False)``. None: :func:`~latticekit.app.flows.train.run_training`.
    distributed_train : bool
        The family's own ``train`` also runs data-parallel (``latticekit train --nprocs N``): it then takes the
        keyword ``distributed=True`` inside an initialised torch.distributed group (4D QCD: the staged job).
    appendable : tuple of str
        ``[model]`` list keys that may gain entries when a run is resumed, the entries already there unchanged
        (:func:`~latticekit.app.flows.resume.check_same_run`): the per-stage lists of a staged job, so that a
        finished or running job can be given further stages (pseudofermion and 4D QCD flows: the conditional
        stages).
    sampler_resumes : bool
        The family's ``sampler`` takes ``progress`` (``progress(phase) -> BatchProgress``) and draws through it, so
        that a killed ``latticekit sample`` resumes with the same numbers (:mod:`latticekit.flows.batch_progress`;
        pseudofermion, 4D QCD and super-resolving flows, the latter with their prior's HMC chains). The families
        without a sampler of their own resume through :func:`~latticekit.flows.sampling.independence_metropolis`.
    sample_keys : tuple of str
        ``[model]`` keys that only ``latticekit sample`` reads: they do not enter the model or its training, so
        they may change when a run is resumed (pseudofermion and 4D QCD flows: ``n_pf``, ``ess_npf_max``).
    fixed_train_keys : tuple of str
        ``[train]`` keys that may change on resumption for other families
        (:data:`~latticekit.app.flows.resume.RESUMABLE_CHANGES`) but set this family's results: refused
        (the UV-matching ladder: ``eval_batch_size`` draws its coupling scans and early-stopping checks, and
        ``steps`` is the length of its first level, which a resumed ladder does not extend).
    """

    name: str
    settings: type
    build: Callable[[Any, Any], Any]
    default_layers: Callable[[Sequence[int]], int]
    check: Callable[[Sequence[int], Any], None] = _no_check
    make_action: Callable[[Any, Any, int], Any] | None = None
    sampler: Callable[..., Any] | None = None
    sampled_action: Callable[[Any], dict[str, Any]] | None = None
    train: Callable[..., Any] | None = None
    distributed_train: bool = False
    appendable: tuple[str, ...] = ()
    sample_keys: tuple[str, ...] = ()
    sampler_resumes: bool = False
    fixed_train_keys: tuple[str, ...] = ()


#: ``model.coupling`` -> ``"module:attribute"`` (modules relative to this package)
FAMILIES: dict[str, str] = {
    "affine": "scalar_models:AFFINE",
    "spline": "scalar_models:SPLINE",
    "plaquette": "gauge_models:PLAQUETTE",
    "checkerboard": "gauge_models:CHECKERBOARD",
    "multiscale": "multiscale_models:MULTISCALE",
    "plaquette_prior": "plaquette_prior_models:PLAQUETTE_PRIOR",
    "pseudofermion": "pseudofermion_models:PSEUDOFERMION",
    "superres": "superres_models:SUPERRES",
    "superres_uv": "superres_uv_models:SUPERRES_UV",
    "cnf": "cnf_models:CNF",
    "qcd4d": "qcd4d_models:QCD4D",
}


def family_names() -> tuple[str, ...]:
    """The registered family names."""
    return tuple(FAMILIES)


def family(name: str) -> FlowFamily:
    """The family registered as ``name``."""
    if name not in FAMILIES:
        raise ConfigError(f"model.coupling: expected one of {family_names()}, got {name!r}")
    module, _, attr = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


def build_flow(cfg: Any) -> tuple[Any, Any, Any]:
    """The flow model, target action and lattice described by a :class:`~latticekit.app.config.FlowConfig`.

    Parameters are initialised from torch's global generator seeded with ``train.seed`` inside
    :func:`torch.random.fork_rng`, so the same configuration gives the same initial model without
    touching the caller's random state.
    """
    import torch

    theory = cfg.theory
    fam = family(cfg.model.coupling)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        model = fam.build(theory, cfg.model.variant)
        action = (theory.make_action() if fam.make_action is None
                  else fam.make_action(theory, cfg.model.variant, cfg.train.seed))
    return model, action, theory.lattice
