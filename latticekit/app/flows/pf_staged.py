"""The staged training job of the joint pseudofermion models (``qcd4d``; ``pseudofermion`` with
``objective = "staged"``).

Abbott et al. train the 4D QCD joint model in stages (arXiv:2208.03832, Sec. 3.1), as one
:func:`~.stages.run_stages` job:

1. ``marginal``: the marginal gauge flow ``q(U)`` alone against ``S_g - log det(D D^dag + mu0)`` (eq. 19 of
   arXiv:2207.08945 with the training regulator ``mu0``), the determinant's gradient estimated with
   ``n_noise`` noise vectors (``logdet_gradient``: ``"dirac"`` or ``"normal"``, the form of arXiv:2106.05934
   App. C) or, on small lattices, exactly (``"dense"``; :class:`~latticekit.flows.pseudofermion.MarginalAction`),
   with the job's ``[train]`` options;
2. ``conditional_1 .. conditional_n``: the joint reverse KL (eq. 40) with the marginal frozen (its draws then
   carry no autograd graph), one stage per entry of the ``[model]`` lists ``conditional_steps``,
   ``conditional_batch_size``, ``conditional_lr`` and ``conditional_step_size`` (learning rate times
   ``conditional_gamma`` every that many steps; 0: constant); the other ``[train]`` options are shared.

The settings object of the family (``cfg.model.variant``) supplies ``mu0``, ``n_noise``, ``logdet_gradient`` and the
``conditional_*`` keys. ``train.json`` holds each stage's record and the final evaluation: the Kish ESS/N of
``eval_batch_size`` fresh joint draws (one pseudofermion per gauge field) against the unregulated joint action.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from latticekit.utils.schema import ConfigError

from .pf_targets import theory_targets

__all__ = ["CONDITIONAL_LISTS", "check_conditional_schedule", "pf_staged_train", "pf_stages"]

#: the per-stage ``[model]`` lists of the conditional stages (one entry per stage; a resumed job may append stages)
CONDITIONAL_LISTS = ("conditional_steps", "conditional_batch_size", "conditional_lr", "conditional_step_size")


def check_conditional_schedule(s: Any) -> None:
    """One entry per conditional stage in each ``conditional_*`` list of the settings ``s``."""
    n = {len(s.conditional_steps), len(s.conditional_batch_size), len(s.conditional_lr), len(s.conditional_step_size)}
    if len(n) != 1:
        raise ConfigError("model.conditional_steps, conditional_batch_size, conditional_lr, conditional_step_size: "
                          f"expected one entry per conditional stage each, got lengths {len(s.conditional_steps)}, "
                          f"{len(s.conditional_batch_size)}, {len(s.conditional_lr)}, {len(s.conditional_step_size)}")


def _objective(objective: str, frozen: bool) -> Any:
    def prepare(model: Any) -> None:
        model.freeze_marginal(frozen)
        # the marginal objective does not use the conditional models: they are frozen too, so that every trained
        # parameter gets a gradient (data-parallel training requires it; Adam skips them either way)
        model.conditionals.requires_grad_(objective == "joint")
        model.set_objective(objective)
    return prepare


def pf_stages(cfg: Any, device: Any, rank: int | None = None) -> list[Any]:
    """The stages of the job (module docstring): ``marginal`` with the ``[train]`` options, then one conditional
    stage per entry of the ``conditional_*`` lists (the other ``[train]`` options are shared). ``rank``: the
    process's rank in data-parallel training (its own stream of estimator noise), None for one process."""
    from latticekit import backends
    from latticekit.flows.pseudofermion import JointAction, MarginalAction

    from .stages import Stage

    t, s, theory = cfg.train, cfg.model.variant, cfg.theory
    base = t.train_config(device, None)
    targets = theory_targets(theory, s.mu0)
    # the noise of the stochastic log-det gradient has its own generator (train.seed + 1): a resumed marginal stage
    # is statistically, not bitwise, equal to an uninterrupted one (as for the pseudofermion family; with the
    # dense gradient there is no noise)
    noise_seed = t.seed + 1
    if rank is not None:
        from latticekit.flows.distributed import rank_seed

        noise_seed = rank_seed(noise_seed, rank)
    try:
        marginal = MarginalAction(theory.make_action(), targets, backends.rng(noise_seed, backend="torch"),
                                  n_noise=s.n_noise, gradient=s.logdet_gradient)
    except ValueError as exc:
        raise ConfigError(f"model.logdet_gradient: {exc}") from None
    how = "exact (dense) gradient" if s.logdet_gradient == "dense" else f"stochastic gradient ({s.logdet_gradient})"
    out = [Stage("marginal", base, marginal, _objective("marginal", False),
                 {"target": f"S_g - log det(D D^dag + mu0), {how}"})]
    joint = JointAction(theory.make_action(), targets)
    for i, (n, b, lr, ss) in enumerate(zip(s.conditional_steps, s.conditional_batch_size, s.conditional_lr,
                                          s.conditional_step_size)):
        c = dataclasses.replace(base, steps=int(n), batch_size=int(b), lr=float(lr),
                                schedule="step" if ss else "constant", step_size=int(ss) or 1,
                                gamma=float(s.conditional_gamma))
        out.append(Stage(f"conditional_{i + 1}", c, joint, _objective("joint", True),
                         {"target": "joint action, marginal frozen"}))
    return out


def pf_staged_train(cfg: Any, outdir: Path, *, device: Any, fresh: bool, progress: bool,
                distributed: bool = False) -> dict[str, Any]:
    """The two-stage training as the train job (module docstring); returns the content of ``train.json``.

    ``distributed``: data-parallel over the ranks of the initialised torch.distributed group (``latticekit train
    --nprocs N``; :func:`~.stages.run_stages`): every batch size (``train.batch_size`` and
    ``model.conditional_batch_size``) is global and must be divisible by the number of processes; rank 0 writes
    the files and runs the final evaluation, the other ranks return ``{"status", "steps", "world_size"}``."""
    from latticekit.flows.checkpoint import save_checkpoint
    from latticekit.flows.distributed import barrier, rank_and_world
    from latticekit.flows.pseudofermion import JointAction
    from latticekit.flows.train import NonFiniteLossError, Trainer

    from ..folders import CHECKPOINT, CONFIG, METRICS, TRAIN_PLOT, TRAIN_SUMMARY, write_json
    from ..killpoints import kill_point
    from ..memory import check_memory
    from ..plots import training_plot
    from .models import build_flow
    from .resume import prepare_run_folder, read_metrics
    from .stages import STAGES, run_stages
    from .train import ESS_DEFINITION

    conf, t, s = cfg.to_dict(), cfg.train, cfg.model.variant
    rank, world = 0, 1
    if distributed:
        rank, world = rank_and_world()
        bad = [b for b in (t.batch_size, *s.conditional_batch_size) if b % world]
        if bad:
            raise ConfigError(f"train.batch_size and model.conditional_batch_size {[t.batch_size, *s.conditional_batch_size]}"
                              f": every batch must be divisible by the number of processes {world}")
    lead = rank == 0
    check_memory(cfg.theory.field_bytes(),
                 max([t.batch_size // world, t.eval_batch_size, *(b // world for b in s.conditional_batch_size)]),
                 f"lattice.shape {list(cfg.lattice.shape)} with the batch sizes of train and model.conditional_batch_size")
    stages = pf_stages(cfg, device, rank if distributed else None)  # refuses a bad logdet_gradient before any work
    if lead:
        prepare_run_folder(outdir, conf, fresh, state=(STAGES,))
        write_json(outdir / CONFIG, conf)
    if distributed:
        barrier()
    model, _action, _lat = build_flow(cfg)
    t0 = time.time()
    try:
        res = run_stages(model, stages, outdir, job_config=conf, on_step=lambda m: kill_point("train:step"),
                         progress=progress, distributed=distributed)
    except NonFiniteLossError as exc:  # the stage checkpoints hold the last good state
        if lead:
            write_json(outdir / TRAIN_SUMMARY, {"status": "stopped: non-finite loss or gradient", "message": str(exc),
                                                "stages": str(outdir / STAGES)})
        if distributed:   # every rank stops at the same step; rank 0 writes the summary before any rank ends
            barrier()
        raise
    if not lead:
        barrier()                     # rank 0 writes the final checkpoint and summary
        return {"status": "finished", "steps": res["steps"], "world_size": world}
    save_checkpoint(outdir / CHECKPOINT, model=model, step=res["steps"],
                    config={"flow_config": conf, "stages": res["stages"], "history": [], "world_size": world})
    # final evaluation: eval_batch_size joint draws (one pseudofermion per gauge field) against the unregulated
    # joint action (sampling uses no regulator)
    model.set_objective("joint")
    ev = {**Trainer(model, JointAction(cfg.theory.make_action(), theory_targets(cfg.theory)),
                    t.train_config(device, outdir / STAGES / "eval.pt")).evaluate(t.eval_batch_size),
          "eval_ess_n": t.eval_batch_size, "step": res["steps"]}
    lines = read_metrics(outdir / METRICS)
    title = (f"{cfg.theory.describe()} on {'x'.join(map(str, cfg.lattice.shape))}, model.coupling = "
             f"{cfg.model.coupling} (stages in sequence)")
    summary = {
        "status": "finished", "steps": res["steps"], "resumed_from_step": res["resumed_from_step"],
        "final_loss": lines[-1]["loss"] if lines else None,
        # the Kish ESS/N of eval_batch_size fresh joint draws, one pseudofermion draw per gauge field
        "eval": ev, "ess": ev["eval_ess"], "ess_n": t.eval_batch_size,
        "ess_definition": ESS_DEFINITION + "; joint draws (U, phi), one pseudofermion per gauge field",
        "var_log_w": ev["eval_var_log_w"], "log_z_estimate": ev["eval_log_z_estimate"], "log_z_exact": None,
        "kl": ev["eval_kl_estimate"], "kl_log_z": "estimate",
        "stages": res["stages"], "n_parameters": int(sum(p.numel() for p in model.parameters())), "world_size": world,
        "device": str(device) if device is not None else "cpu", "wall_s": round(time.time() - t0, 3),
        "checkpoint": str(outdir / CHECKPOINT), "metrics": str(outdir / METRICS), "config": conf,
        "plot": training_plot(outdir / TRAIN_PLOT, lines, title),
    }
    write_json(outdir / TRAIN_SUMMARY, summary)
    if distributed:
        barrier()
    if progress:
        print(f"{cfg.model.coupling}: {len(res['stages'])} stages, {res['steps']} steps; "
              f"joint ESS/N {ev['eval_ess']:.3f} "
              f"(N = {t.eval_batch_size}, one pseudofermion per gauge field)", flush=True)
    return summary
