"""The train job: ``latticekit train CONFIG.toml --out DIR``.

:func:`train_job` validates the configuration (:class:`~latticekit.app.config.FlowConfig`) before any
work, builds the flow model of the theory's flow-model family and the theory's action
(:func:`~latticekit.app.flows.models.build_flow`), and trains it by reverse KL
(:class:`~latticekit.flows.Trainer`). Into ``DIR`` it writes

* ``config.json`` — the validated configuration;
* ``checkpoint.pt`` — written atomically every ``train.checkpoint_every`` steps and at the end
  (model, optimizer, scheduler, generator states, history, the configuration);
* ``metrics.jsonl`` — one complete JSON line per step (``step``, ``loss``, ``ess`` with its N ``ess_n``
  (the batch size), ``var_log_w``, ``lr``, ``grad_norm``, ``time_s`` (wall seconds since this process
  started training), ``cpu_s`` (CPU seconds of training so far, summed over resumptions; rank 0's process
  under data-parallel training) and ``eval_*`` at evaluation steps, ``eval_ess_n`` the evaluation's N),
  appended and flushed line by line;
* ``train.json`` — the summary of the finished run (final evaluation, wall time; ``ess`` is the Kish
  ESS/N of the final evaluation's ``ess_n`` = ``train.eval_batch_size`` draws, :data:`ESS_DEFINITION`;
  ``log_z_estimate`` = log mean w of those draws; ``kl`` = log Z - mean log w with the theory's exact
  ``log_z_exact`` where known (2D Wilson), else with the estimate, ``kl_log_z`` saying which);
* ``train.png`` — the training curve: loss, ESS and var log w against the step and the CPU time, drawn
  from every line of ``metrics.jsonl`` (so a resumed run's plot covers all steps).

Rerunning the same command after a kill resumes from the last checkpoint (:mod:`.resume`): metric lines
written after that checkpoint (and a torn last line) are dropped and recomputed (a run killed before its
first checkpoint starts over without its lines; temporaries of killed writes are removed), and on CPU the
continuation is bit-identical to an uninterrupted run. A NaN/inf loss or gradient stops the job with
:class:`~latticekit.flows.NonFiniteLossError`; the last good checkpoint stays in place. A checkpoint
written for a different architecture or lattice is refused (:class:`~latticekit.flows.CheckpointMismatchError`).

Examples
--------
>>> import tempfile
>>> cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.1},
...        "model": {"n_layers": 2, "hidden": [4]}, "train": {"steps": 3, "batch_size": 8}}
>>> res = train_job(cfg, out=tempfile.mkdtemp(), progress=False)
>>> res["steps"], res["status"], res["plot"]
(3, 'finished', 'train.png')
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from latticekit.flows.train import NonFiniteLossError, Trainer
from latticekit.utils import Progress
from latticekit.utils.schema import ConfigError

from ..config import FlowConfig
from .devices import torch_device
from ..folders import CHECKPOINT, CONFIG, METRICS, TRAIN_PLOT, TRAIN_SUMMARY, write_json
from ..killpoints import kill_point
from ..memory import check_memory
from .models import build_flow
from .resume import (JobTrainer, MetricsWriter, check_run_world_size, check_steps_done, prepare_run_folder,
                     read_metrics, truncate_metrics)

__all__ = ["ESS_DEFINITION", "run_training", "summary_line", "train_job"]

#: what every ESS of the flow jobs is (docs/flows.md, "ESS"); quoted with its N
ESS_DEFINITION = "Kish ESS/N = (sum w)^2 / (N sum w^2) of N independent flow draws, log w = -S - log q"


def _plot(outdir: Path, cfg: FlowConfig) -> str | None:
    from ..plots import training_plot

    title = f"{cfg.theory.describe()} on {'x'.join(map(str, cfg.lattice.shape))}, model.coupling = {cfg.model.coupling}"
    return training_plot(outdir / TRAIN_PLOT, read_metrics(outdir / METRICS), title)


def run_training(cfg: FlowConfig, outdir: Path, *, device: Any, fresh: bool, progress: bool,
                 distributed: bool = False, family_job: bool = True) -> dict[str, Any]:
    """The training loop shared by :func:`train_job` and the data-parallel workers
    (:mod:`latticekit.app.flows.distributed`); returns the content of ``train.json``.

    A family with its own job (``FlowFamily.train``) runs that, unless ``family_job`` is False: the family's job
    calls this for the configurations it trains as one reverse-KL run."""
    from .models import family

    fam = family(cfg.model.coupling)
    if not distributed and not fresh and family_job:
        # before the family's own job too: a staged run of 2 processes resumed on one silently (user probe); the
        # data-parallel launch checks before its processes start
        from .stages import STAGES

        check_run_world_size(outdir, 1, STAGES)
    if fam.train is not None and family_job:  # a family with its own job (UV-matching ladder, the staged 4D QCD job)
        if distributed and not fam.distributed_train:
            raise ConfigError(f"model.coupling = {cfg.model.coupling!r} trains on one process; run it without "
                              "data-parallel workers")
        if distributed:
            return fam.train(cfg, outdir, device=device, fresh=fresh, progress=progress, distributed=True)
        return fam.train(cfg, outdir, device=device, fresh=fresh, progress=progress)
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    lead = rank == 0
    ckpt, metrics_path = outdir / CHECKPOINT, outdir / METRICS
    conf = cfg.to_dict()
    t = cfg.train
    # every rank holds its share of the batch; the evaluation draws eval_batch_size at once
    check_memory(cfg.theory.field_bytes(), max(t.batch_size // world, t.eval_batch_size),
                 f"lattice.shape {list(cfg.lattice.shape)} with train.batch_size = {t.batch_size} and "
                 f"train.eval_batch_size = {t.eval_batch_size}")
    if lead:
        prepare_run_folder(outdir, conf, fresh)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    model, action, _lat = build_flow(cfg)
    tcfg = cfg.train.train_config(device, ckpt)
    if distributed:
        from latticekit.flows.distributed import DistributedTrainer

        trainer: Trainer = DistributedTrainer(model, action, tcfg)
    else:
        trainer = JobTrainer(model, action, tcfg)
    trainer.job_config = conf  # type: ignore[attr-defined]
    resumed_from = None
    cpu_before = 0.0
    if ckpt.exists():
        resumed_from = trainer.load(str(ckpt))
        check_steps_done(t.steps, resumed_from, outdir)
        if lead:
            truncate_metrics(metrics_path, resumed_from)
            done = read_metrics(metrics_path)
            cpu_before = float(done[-1].get("cpu_s", 0.0)) if done else 0.0
            if progress:
                print(f"resuming {outdir} from step {resumed_from}", file=sys.stderr, flush=True)
    if lead:
        write_json(outdir / CONFIG, conf)   # after the checks of a resumption: a refused rerun leaves the run's own
    writer = MetricsWriter(metrics_path) if lead else None
    bar = Progress(t.steps, trainer.step, "flow training", progress and lead, log_every=t.log_every)
    t0, c0 = time.time(), time.process_time()
    status = "finished"
    try:
        while trainer.step < t.steps:
            m = dict(trainer.train_step())
            m["ess_n"] = t.batch_size  # the Kish ESS/N of the (global) training batch
            if t.eval_every and trainer.step % t.eval_every == 0:
                m.update(trainer.evaluate(), eval_ess_n=t.eval_batch_size)
                trainer.history[-1].update(m)
            m["time_s"] = round(time.time() - t0, 4)
            m["cpu_s"] = round(cpu_before + time.process_time() - c0, 4)
            if writer is not None:
                writer.write(m)
            kill_point("train:step")
            bar.update(1, loss=m["loss"], ess=m["ess"], lr=m["lr"])
            if t.checkpoint_every and trainer.step % t.checkpoint_every == 0:
                trainer.save()
        if trainer.last_checkpoint_step != trainer.step:
            trainer.save()
    except NonFiniteLossError as exc:
        status = "stopped: non-finite loss or gradient"
        if lead:
            if writer is not None:
                writer.close()
                writer = None
            write_json(outdir / TRAIN_SUMMARY, {"status": status, "message": str(exc), "steps": trainer.step,
                                                "last_checkpoint_step": trainer.last_checkpoint_step,
                                                "checkpoint": str(ckpt), "plot": _plot(outdir, cfg)})
        if distributed:
            # every rank stops at the same step (the loss and gradient norm are global): the others wait until
            # rank 0 has written the summary, or the launcher ended it mid-write when they exited (user probe)
            from latticekit.flows.distributed import barrier

            barrier()
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    wall = time.time() - t0
    ev = {**trainer.evaluate(t.eval_batch_size), "eval_ess_n": t.eval_batch_size}
    # reverse KL = log Z - mean log w (arXiv:2404.10819 eq. 3) with the exact log Z where the theory has one,
    # else with the sec. 4.1 estimate log mean w of the same draws
    log_z_exact = cfg.theory.exact_log_z()
    summary = {
        "status": status, "steps": trainer.step, "resumed_from_step": resumed_from,
        "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
        # the Kish ESS/N of the final evaluation's N = eval_batch_size independent draws (docs/flows.md, "ESS")
        "eval": ev, "ess": ev["eval_ess"], "ess_n": t.eval_batch_size, "ess_definition": ESS_DEFINITION,
        "var_log_w": ev["eval_var_log_w"],
        "log_z_estimate": ev["eval_log_z_estimate"], "log_z_exact": log_z_exact,
        "kl": ev["eval_kl_estimate"] if log_z_exact is None else log_z_exact + ev["eval_loss"],
        "kl_log_z": "estimate" if log_z_exact is None else "exact",
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "wall_s": round(wall, 3), "world_size": world, "device": str(trainer.device),
        "checkpoint": str(ckpt), "metrics": str(metrics_path), "config": conf,
    }
    if lead:
        summary["plot"] = _plot(outdir, cfg)
        write_json(outdir / TRAIN_SUMMARY, summary)
    return summary


def train_job(config: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig", *, out: str | os.PathLike[str],
              backend: str = "torch", device: Any = None, fresh: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or resume training) a flow as described by a TOML configuration; returns ``train.json``.

    Parameters
    ----------
    config : path, mapping or FlowConfig
        Validated completely (:class:`~latticekit.app.config.FlowConfig`) before any work.
    out : path
        Output folder: ``config.json``, ``checkpoint.pt``, ``metrics.jsonl``, ``train.json``, ``train.png``.
    backend : str
        Must be ``"torch"`` (flows are torch by design).
    device : str or torch.device, optional
        ``"cpu"`` (default) or ``"cuda"``/``"cuda:k"``.
    fresh : bool
        Delete a previous run in ``out`` and start over (otherwise it is resumed).
    progress : bool
        Progress bar (tqdm, else a line every ``train.log_every`` steps) on stderr.

    Returns
    -------
    dict
        ``status``, ``steps``, ``resumed_from_step``, ``final_loss``, ``ess`` (with its N ``ess_n`` and
        ``ess_definition``) and ``var_log_w`` of a final evaluation on ``train.eval_batch_size`` samples,
        ``eval``, ``n_parameters``, ``wall_s``,
        paths, ``plot`` (the training-curve file name, None without matplotlib).

    Raises
    ------
    latticekit.utils.ConfigError
        Invalid configuration, ``out`` is a file or holds a run with a different configuration, or the
        batch would not fit in memory (:func:`latticekit.app.memory.check_memory`).
    CheckpointMismatchError
        The checkpoint in ``out`` belongs to a different architecture or lattice.
    NonFiniteLossError
        NaN/inf loss or gradient; the last good checkpoint is kept.
    """
    cfg = FlowConfig.load(config)
    dev = torch_device(backend, device)
    return run_training(cfg, Path(out), device=dev, fresh=fresh, progress=progress)


def summary_line(res: Mapping[str, Any], out: str | os.PathLike[str]) -> str:
    """The line ``latticekit train`` prints for the summary ``res`` (``train.json``) of the run in ``out``; rank 0
    prints it under ``torchrun`` too (:func:`latticekit.app.flows.distributed.main`)."""
    resumed = "" if res["resumed_from_step"] is None else f" (resumed from step {res['resumed_from_step']})"
    plot = f", plot {os.path.join(os.fspath(out), res['plot'])}" if res.get("plot") else ""
    return (f"trained {res['steps']} steps{resumed} in {res['wall_s']:.1f} s: loss {res['final_loss']:.6g}, "
            f"ESS {res['ess']:.4f} (Kish, N={res['ess_n']}), var log w {res['var_log_w']:.4g} ({res['eval']['step']} "
            f"steps, {res['n_parameters']} parameters); checkpoint {res['checkpoint']}, metrics {res['metrics']}{plot}")
