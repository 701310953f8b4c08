"""Training in stages: one ``latticekit train`` job that runs several reverse-KL trainings in sequence.

The 4D QCD flows of arXiv:2208.03832 (Sec. 3.1) are trained in stages: first the marginal gauge model
(against the gauge action plus the stochastic fermion determinant), then the conditional pseudofermion
model with the marginal fixed, in three phases of different batch sizes and learning rates. A
:class:`Stage` is one such training: its own :class:`~latticekit.flows.TrainConfig` (steps, batch, learning
rate and schedule), its own target action, and a ``prepare(model)`` that sets what is trained (objective,
frozen parts) before its optimizer is built. :func:`run_stages` runs them with the job's bookkeeping:

* ``stages/<k>_<name>.pt``: the stage's checkpoint (model, optimizer, scheduler, generator), written every
  ``train.checkpoint_every`` steps and at its end; ``stages/<k>_<name>.json``: written (atomically) when the
  stage has finished, with its step count;
* ``metrics.jsonl``: one line per step with the global ``step`` (over all stages), ``stage``, ``stage_step``
  and the usual keys (``ess_n`` = the stage's batch size);
* a rerun after a kill skips the finished stages, resumes the stage in progress from its checkpoint
  (bit-identically on CPU), or starts the next stage from the model of the previous one (fresh optimizer,
  as a new stage always does). Metric lines after the resumption point are dropped. The stage in progress may be
  given more steps on resumption; a finished stage may not (its step count is checked against the configuration
  and a difference raises :class:`~latticekit.utils.ConfigError` before any work: the later stages start from its
  model).

Each stage's generator is seeded with ``train.seed + 1000 k`` so that stages do not replay each other's
prior draws.

Data-parallel (``distributed=True``, inside an initialised torch.distributed group: ``latticekit train
--nprocs N``): every rank runs the same stages with a :class:`~latticekit.flows.distributed.DistributedTrainer`
(``batch_size`` global, split over the ranks; rank ``r`` draws from ``rank_seed(seed + 1000 k, r)``); rank 0
alone writes ``metrics.jsonl`` and the stage records, the checkpoints are written collectively (rank 0 writes,
every rank's generator state inside), and a resumption needs the same number of processes (the stage checkpoint a
run continues from is checked before any file changes; the job checks its whole folder before it starts).

Examples
--------
>>> import tempfile, latticekit as lk
>>> from pathlib import Path
>>> from latticekit.flows import Model, GaussianPrior, TrainConfig, scalar_coupling_flow
>>> from latticekit.actions import Phi4Action
>>> lat = lk.Lattice((4, 4))
>>> model = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2, hidden=(4,))).double()
>>> act = Phi4Action(lat, kappa=0.1, lam=0.1)
>>> st = [Stage("a", TrainConfig(steps=2, batch_size=4), act), Stage("b", TrainConfig(steps=3, batch_size=8), act)]
>>> out = Path(tempfile.mkdtemp())
>>> res = run_stages(model, st, out, job_config={}, progress=False)
>>> res["steps"], [s["steps"] for s in res["stages"]]
(5, [2, 3])
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from latticekit.utils.schema import ConfigError

__all__ = ["STAGES", "Stage", "run_stages", "stage_files"]

#: the stages' folder inside the job folder
STAGES = "stages"


@dataclass
class Stage:
    """One reverse-KL training of a staged job (module docstring).

    Attributes
    ----------
    name : str
        Letters, digits and ``_`` (it names the stage's files).
    config : TrainConfig
        Steps, batch size, optimizer and schedule of this stage (its ``checkpoint_path`` and ``seed`` are set by
        :func:`run_stages`).
    action : Any
        The target of this stage.
    prepare : callable, optional
        ``prepare(model)``: sets what this stage trains (objective, frozen parts); called before the optimizer
        is built, also when the stage is resumed.
    info : dict
        Extra entries for the stage's record.
    """

    name: str
    config: Any
    action: Any
    prepare: Callable[[Any], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def stage_files(folder: Path, k: int, stage: Stage) -> tuple[Path, Path]:
    """``(checkpoint, finished-record)`` of stage ``k``."""
    base = Path(folder) / STAGES / f"{k}_{stage.name}"
    return base.with_suffix(".pt"), base.with_suffix(".json")


def _check(stages: list[Stage]) -> None:
    if not stages:
        raise ValueError("stages: expected at least one stage")
    names = [s.name for s in stages]
    for s in stages:
        if not isinstance(s, Stage):
            raise TypeError(f"stages: expected Stage objects, got {type(s).__name__}")
        if not s.name or not all(ch.isalnum() or ch == "_" for ch in s.name):
            raise ValueError(f"stage name {s.name!r}: expected letters, digits and '_'")
    if len(set(names)) != len(names):
        raise ValueError(f"stages: names {names} are not distinct")


def _to_dtype(model: Any, config: Any) -> None:
    """Cast ``model`` to the training dtype of ``config`` (as the Trainer does) before a state is loaded into it."""
    import torch

    model.to(dtype={"float64": torch.float64, "float32": torch.float32}[config.dtype])


def _barrier(distributed: bool) -> None:
    if distributed:
        from latticekit.flows.distributed import barrier

        barrier()


def run_stages(model: Any, stages: list[Stage], folder: Path, *, job_config: dict[str, Any],
               on_step: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
               distributed: bool = False) -> dict[str, Any]:
    """Run (or resume) ``stages`` in sequence on ``model`` (module docstring).

    Parameters
    ----------
    model : Model
    stages : list of Stage
    folder : path
        The job folder: ``stages/`` and ``metrics.jsonl`` are written there.
    job_config : dict
        Stored in every stage checkpoint (``flow_config``), as :class:`~.resume.JobTrainer` does.
    on_step : callable, optional
        Called after every step with the metrics line (already written), e.g. for kill points.
    progress : bool
        Progress bar per stage (rank 0 only).
    distributed : bool
        Data-parallel over the ranks of the initialised torch.distributed group (module docstring).

    Returns
    -------
    dict
        ``steps`` (all stages), ``resumed_from_step`` (None for a fresh start), ``stages`` (one record per
        stage: ``name``, ``steps``, ``batch_size``, ``lr``, ``final_loss``, ``wall_s``, ``info``) and the
        ``trainer`` of the last stage.
    """
    import torch

    from latticekit.flows.checkpoint import load_checkpoint
    from latticekit.utils import Progress, atomic_write

    from ..folders import METRICS
    from .resume import JobTrainer, MetricsWriter, check_world_size, read_metrics, truncate_metrics

    _check(stages)
    folder = Path(folder)
    rank, world, lead = 0, 1, True
    if distributed:
        from latticekit.flows.distributed import DistributedTrainer, rank_and_world

        rank, world = rank_and_world()
        lead = rank == 0
    if lead:
        (folder / STAGES).mkdir(parents=True, exist_ok=True)
    _barrier(distributed)
    records: list[dict[str, Any]] = []
    first_open = len(stages)
    for k, st in enumerate(stages):
        ck, done = stage_files(folder, k, st)
        if not done.exists():
            first_open = k
            break
        rec = json.loads(done.read_text())
        if int(rec["steps"]) != int(st.config.steps):
            # the steps of a finished stage are fixed: the later stages start from its model (a larger train.steps
            # would otherwise be ignored without a word)
            raise ConfigError(f"stage {k} ({st.name}) in {folder} finished after {rec['steps']} steps; this "
                              f"configuration asks for {st.config.steps}. A finished stage cannot be extended or "
                              "shortened (the later stages start from its model); use fresh=True (--fresh) or "
                              "another output folder")
        records.append(rec)
    offset = sum(int(r["steps"]) for r in records)
    resume_step = offset
    # the stage checkpoint this run continues from was written by as many processes: the job checks its folder
    # before it starts (.resume.check_run_world_size), this guards every caller before any file changes (the
    # one-process trainer loaded a two-process stage checkpoint silently; user probe)
    written = [c for c in (stage_files(folder, k, stages[k])[0] for k in range(min(first_open + 1, len(stages))))
               if c.exists()]
    if written:
        check_world_size(written[-1], world, folder)
    if first_open < len(stages):
        ck, _ = stage_files(folder, first_open, stages[first_open])
        if ck.exists():
            resume_step += int(torch.load(ck, map_location="cpu", weights_only=False)["step"])
    metrics_path = folder / METRICS
    cpu_before = 0.0
    if lead:
        truncate_metrics(metrics_path, resume_step)
        done_lines = read_metrics(metrics_path)
        cpu_before = float(done_lines[-1].get("cpu_s", 0.0)) if done_lines else 0.0
    t0, c0 = time.time(), time.process_time()
    trainer = None
    if first_open == len(stages):  # every stage finished: the model of the last one
        ck, _ = stage_files(folder, len(stages) - 1, stages[-1])
        if stages[-1].prepare is not None:
            stages[-1].prepare(model)
        _to_dtype(model, stages[-1].config)
        load_checkpoint(ck, model=model)
    for k in range(first_open, len(stages)):
        st = stages[k]
        ck, done = stage_files(folder, k, st)
        if st.prepare is not None:
            st.prepare(model)
        cfg = dataclasses.replace(st.config, checkpoint_path=str(ck), seed=int(st.config.seed) + 1000 * k)
        if not ck.exists() and k > 0:  # a new stage starts from the model of the previous one
            prev, _ = stage_files(folder, k - 1, stages[k - 1])
            _to_dtype(model, cfg)  # load in the training precision (a float32 model would round the state)
            load_checkpoint(prev, model=model)
        trainer = DistributedTrainer(model, st.action, cfg) if distributed else JobTrainer(model, st.action, cfg)
        trainer.job_config = job_config  # type: ignore[attr-defined]
        if ck.exists():
            trainer.load(str(ck))
        writer = MetricsWriter(metrics_path) if lead else None
        bar = Progress(cfg.steps, trainer.step, f"stage {k + 1}/{len(stages)} ({st.name})", progress and lead,
                       log_every=cfg.log_every)
        s0 = time.time()
        try:
            while trainer.step < cfg.steps:
                m = dict(trainer.train_step())
                m.update(stage=st.name, stage_step=trainer.step, ess_n=cfg.batch_size)
                if cfg.eval_every and trainer.step % cfg.eval_every == 0:
                    m.update(trainer.evaluate(), eval_ess_n=cfg.eval_batch_size)
                    trainer.history[-1].update(m)
                m["step"] = offset + trainer.step
                m["time_s"] = round(time.time() - t0, 4)
                m["cpu_s"] = round(cpu_before + time.process_time() - c0, 4)
                if writer is not None:
                    writer.write(m)
                if on_step is not None:
                    on_step(m)
                bar.update(1, loss=m["loss"], ess=m["ess"], lr=m["lr"])
                if cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0:
                    trainer.save()
            if trainer.last_checkpoint_step != trainer.step:
                trainer.save()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        rec = {"stage": k, "name": st.name, "steps": trainer.step, "batch_size": cfg.batch_size, "lr": cfg.lr,
               "schedule": cfg.schedule, "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
               "wall_s": round(time.time() - s0, 3), "checkpoint": str(ck), "info": st.info}
        if distributed:
            rec["world_size"] = trainer.world_size
        if lead:
            atomic_write(done, (json.dumps(rec, indent=1) + "\n").encode())
        _barrier(distributed)
        records.append(rec)
        offset += trainer.step
    return {"steps": offset, "resumed_from_step": resume_step or None, "stages": records, "trainer": trainer}
