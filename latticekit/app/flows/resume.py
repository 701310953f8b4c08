"""Job-level checkpoint and resume bookkeeping of ``latticekit train``.

The library keeps the checkpoint *files* (:mod:`latticekit.flows.checkpoint`: atomic, architecture
hash, generator states) and the training loop (:class:`latticekit.flows.Trainer`). The job adds:

* :func:`prepare_run_folder`: a rerun in the same folder resumes only the same run. The folder's
  ``config.json`` (read with :meth:`~latticekit.app.config.JobConfig.from_stored`, so folders of
  earlier versions, e.g. with ``model.rectangle_context``, still resume) must agree with the new
  configuration in ``[lattice]``, ``[action]``, ``[model]`` and every ``[train]`` key except those in
  :data:`RESUMABLE_CHANGES`; a different lattice or model raises
  :class:`~latticekit.flows.CheckpointMismatchError`, other differences
  :class:`~latticekit.utils.ConfigError`;
* ``metrics.jsonl``: one complete, flushed JSON line per step (:class:`MetricsWriter`); on resumption
  the lines after the checkpoint and a torn last line are dropped (:func:`truncate_metrics`); a run
  killed before its first checkpoint starts over, and its lines are dropped with it
  (:func:`prepare_run_folder`), as are temporaries of killed atomic writes;
* :class:`JobTrainer`: a :class:`~latticekit.flows.Trainer` whose checkpoints also hold the job
  configuration (``flow_config``), so a checkpoint file alone is enough for ``latticekit sample``.

Examples
--------
>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
>>> w = MetricsWriter(p); w.write({"step": 1}); w.write({"step": 2}); w.close()
>>> truncate_metrics(p, 1); read_metrics(p)
[{'step': 1}]
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from latticekit.flows.checkpoint import CheckpointMismatchError, save_checkpoint
from latticekit.flows.train import Trainer
from latticekit.utils import atomic_write, remove_stale_temporaries
from latticekit.utils.schema import ConfigError

from ..config import FlowConfig
from ..folders import CHECKPOINT, CONFIG, METRICS, TRAIN_PLOT, TRAIN_SUMMARY, out_folder, read_json, refuse_other_job

__all__ = ["JOB_FILES", "RESUMABLE_CHANGES", "JobTrainer", "MetricsWriter", "check_before_start",
           "check_run_world_size", "check_same_run", "check_steps_done", "check_world_size", "prepare_run_folder",
           "read_metrics", "run_world_sizes", "truncate_metrics"]

#: [train] keys that may change between a run and its resumption (they do not alter the trajectory)
RESUMABLE_CHANGES = ("steps", "eval_every", "eval_batch_size", "checkpoint_every", "log_every")


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Complete lines of ``metrics.jsonl`` (a torn last line is ignored)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    with p.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                break
    return out


def truncate_metrics(path: str | os.PathLike[str], step: int) -> None:
    """Keep the lines of steps <= ``step`` (atomic rewrite): they match the checkpoint."""
    if not Path(path).exists():
        return
    keep = [m for m in read_metrics(path) if int(m.get("step", 0)) <= step]
    atomic_write(path, b"".join((json.dumps(m) + "\n").encode() for m in keep))


class MetricsWriter:
    """Appends one complete, flushed JSON line per step."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fh = Path(path).open("ab")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write((json.dumps(record) + "\n").encode())
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


class JobTrainer(Trainer):
    """A :class:`~latticekit.flows.Trainer` whose checkpoints also hold the job configuration."""

    job_config: dict[str, Any] = {}

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        path = path if path is not None else self.config.checkpoint_path
        if not path:
            raise ValueError("path: no checkpoint path given and config.checkpoint_path is not set")
        save_checkpoint(path, model=self.model, step=self.step, optimizer=self.optimizer, scheduler=self.scheduler,
                        rng=self.rng, config={"train_config": dataclasses.asdict(self.config),
                                              "history": self.history, "action": repr(self.action),
                                              "flow_config": self.job_config})
        if os.fspath(path) == self.config.checkpoint_path:
            self.last_checkpoint_step = self.step


def _comparable(conf: dict[str, Any], sec: str, old: dict[str, Any]) -> Any:
    """Section ``sec`` of ``conf`` as compared on resumption with the stored configuration ``old``: for
    ``[model]``, without the family's sampling-only keys (:attr:`.models.FlowFamily.sample_keys`), and with its
    appendable lists (:attr:`.models.FlowFamily.appendable`) cut to their length in ``old``, so that entries
    appended for new stages do not count as a change and a changed entry does."""
    part = conf.get(sec)
    if sec != "model" or not isinstance(part, dict):
        return part
    if part.get("coupling") != old["model"].get("coupling"):
        return part
    from .models import family

    fam = family(str(part.get("coupling")))
    part = {k: v for k, v in part.items() if k not in fam.sample_keys}
    for key in fam.appendable:
        was, now = old["model"].get(key), part.get(key)
        if isinstance(was, list) and isinstance(now, list) and len(now) >= len(was):
            part[key] = now[:len(was)]
    return part


def check_same_run(stored: dict[str, Any], new: dict[str, Any], outdir: Path) -> None:
    """Refuse to resume the run stored in ``outdir`` (configuration ``stored``) with ``new``."""
    try:
        old = FlowConfig.from_stored(stored).to_dict()
    except ConfigError as exc:
        raise ConfigError(f"{outdir / CONFIG} is not a configuration this version can resume ({exc}); "
                          "use fresh=True (--fresh) or another output folder") from None
    diffs = []
    for sec in ("lattice", "action", "model"):
        a, b = _comparable(old, sec, old), _comparable(new, sec, old)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):   # name the keys (the whole section was printed before)
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            diffs.append(f"[{sec}] " + ", ".join(f"{sec}.{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys))
        else:
            diffs.append(f"[{sec}] {old.get(sec)} -> {new.get(sec)}")
    from .models import family

    coupling = new.get("model", {}).get("coupling")
    fixed = family(str(coupling)).fixed_train_keys if coupling == old["model"].get("coupling") else ()
    for k in list(new["train"]) + [k for k in old["train"] if k not in new["train"]]:
        was, now = old["train"].get(k), new["train"].get(k)
        if (k not in RESUMABLE_CHANGES or k in fixed) and was != now:
            # (a UV ladder resumed with another eval_batch_size changed its learned coupling silently; user probe)
            diffs.append(f"train.{k} {was!r} -> {now!r}" + (f" (model.coupling = {coupling!r} depends on it)"
                                                             if k in fixed else ""))
        elif k == "steps" and was != now and old["train"].get("schedule") == "cosine":
            # the cosine schedule runs over train.steps: a new length would change the rate of the resumed part
            diffs.append(f"train.steps {was!r} -> {now!r} with schedule = 'cosine' (its length is train.steps)")
    if any(d.startswith(("[lattice]", "[model]")) for d in diffs):
        raise CheckpointMismatchError(
            f"{outdir} holds a run of a different model or lattice ({'; '.join(diffs)}); its checkpoint "
            "cannot be resumed with this configuration. Use fresh=True (--fresh) or another output folder.")
    if diffs:
        free = ", train.".join(k for k in RESUMABLE_CHANGES if k not in fixed)
        raise ConfigError(f"{outdir} holds a run with a different configuration ({'; '.join(diffs)}); resuming would "
                          f"not continue the same run. Only train.{free} may change on resumption. Use fresh=True "
                          "(--fresh) or another output folder.")


#: the files the train job writes in its folder
JOB_FILES = (CHECKPOINT, METRICS, CONFIG, TRAIN_SUMMARY, TRAIN_PLOT)


def prepare_run_folder(outdir: Path, conf: dict[str, Any], fresh: bool, state: tuple[str, ...] = ()) -> None:
    """Create ``outdir``; with ``fresh`` remove a previous run, else check that it is the same run.

    Temporaries left by killed atomic writes of the job's files are removed. Without a checkpoint nothing
    of an earlier start is kept (it was killed before its first checkpoint, or stopped on a NaN before
    it): its ``metrics.jsonl``, ``train.json`` and ``train.png`` are removed, so the new start does not
    append its steps to lines of steps it will recompute. ``state`` names further files or folders that hold
    resumable progress besides ``checkpoint.pt`` (the level checkpoints of a UV-matching ladder): they count
    as a checkpoint, and ``fresh`` removes them. A folder that holds the output of ``latticekit run`` is refused
    (:func:`~latticekit.app.folders.refuse_other_job`).
    """
    import shutil

    outdir = out_folder(outdir)
    refuse_other_job(outdir, "train")
    remove_stale_temporaries(outdir, JOB_FILES)
    ckpt, conf_path = outdir / CHECKPOINT, outdir / CONFIG
    progress = [ckpt] + [outdir / s for s in state]
    if fresh:
        for f in JOB_FILES:
            (outdir / f).unlink(missing_ok=True)
        for p in progress[1:]:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    elif any(p.exists() for p in progress) and conf_path.exists():
        check_same_run(read_json(conf_path, "the configuration of a `latticekit train` run"), conf, outdir)
    elif any(p.exists() for p in progress):
        raise ConfigError(f"{next(p for p in progress if p.exists())} exists without {conf_path}: not a folder "
                          "written by train_job; use fresh=True (--fresh) or another output folder")
    if not any(p.exists() for p in progress):
        for f in (METRICS, TRAIN_SUMMARY, TRAIN_PLOT):
            (outdir / f).unlink(missing_ok=True)


def _stored_world_size(payload: Any) -> int | None:
    """``world_size`` of a loaded checkpoint (1: written by one process); None for an unreadable payload."""
    if not isinstance(payload, dict):
        return None
    return int((payload.get("config") or {}).get("world_size", 1))


def _refuse_world(world: int, stored: int, folder: Path) -> ConfigError:
    how = "without --nprocs" if stored == 1 else f"with --nprocs {stored}"
    return ConfigError(f"--nprocs {world}: the run in {folder} was trained by {stored} process(es); resume it {how} "
                       "(every rank continues its own random stream), or pass --fresh to start over")


def check_world_size(ckpt: Path, world: int, folder: Path | None = None) -> None:
    """Refuse to resume ``ckpt`` (if it exists) with another number of data-parallel processes than wrote it.

    Every rank continues its own random stream (``rank_rng_states``), so a run resumes only with its own
    ``--nprocs``; checked before any process starts (the workers' own check printed a traceback per rank,
    and one process silently continued a two-process run). ``folder``: the job folder the message names
    (default: the checkpoint's).
    """
    if not Path(ckpt).is_file():
        return
    import torch

    stored = _stored_world_size(torch.load(ckpt, map_location="cpu", weights_only=False)) or 1
    if stored != world:
        raise _refuse_world(world, stored, Path(ckpt).parent if folder is None else Path(folder))


def run_world_sizes(outdir: Path, stages: str | None = None) -> set[int]:
    """The numbers of processes that wrote the resumable progress in ``outdir``: ``checkpoint.pt``, and every
    checkpoint and record in the folder ``stages`` of a staged job (:data:`.stages.STAGES`); empty for a folder
    without progress.

    The final ``checkpoint.pt`` of a staged job written before it recorded its ``world_size`` is skipped (its
    stage files say it)."""
    import torch

    outdir = Path(outdir)
    staged = stages is not None and (outdir / stages).is_dir()
    folder = outdir / (stages or "")
    sizes: set[int] = set()
    for ck in [outdir / CHECKPOINT, *(sorted(folder.glob("*.pt")) if staged else [])]:
        if not ck.is_file():
            continue
        payload = torch.load(ck, map_location="cpu", weights_only=False)
        n = _stored_world_size(payload)
        if n is None or (staged and ck.parent == outdir and "world_size" not in (payload.get("config") or {})):
            continue
        sizes.add(n)
    for rec in sorted(folder.glob("*.json")) if staged else []:
        try:
            sizes.add(int(json.loads(rec.read_text()).get("world_size", 1)))
        except (ValueError, AttributeError):   # not a stage record: run_stages reports it
            continue
    return sizes


def check_run_world_size(outdir: Path, world: int, stages: str | None = None) -> None:
    """Refuse to resume the run in ``outdir`` with ``world`` processes when another number wrote it
    (:func:`run_world_sizes`; :func:`check_world_size` for one file). Staged jobs are checked through their stage
    files (``stages``: their folder): a two-process staged run resumed on one process continued silently on rank
    0's stream (user probe)."""
    other = sorted(run_world_sizes(outdir, stages) - {world})
    if other:
        raise _refuse_world(world, other[0], Path(outdir))


def check_steps_done(steps: int, done: int, outdir: Path) -> None:
    """``train.steps`` may not be below the ``done`` steps of the run being resumed in ``outdir``."""
    if steps < done:
        # config.json keeps the run's own steps: it was not rewritten yet
        raise ConfigError(f"train.steps = {steps}: the run in {outdir} has trained {done} steps already; give at "
                          f"least {done} (more continues the run), or --fresh to start over")


def check_before_start(cfg: FlowConfig, outdir: Path, *, fresh: bool, world: int, stages: str | None = None) -> None:
    """The checks of a (re)start of the train job in ``outdir`` with ``world`` data-parallel processes that the
    launcher makes before any process starts (:mod:`.distributed`): the number of processes of the run
    (:func:`check_run_world_size`), ``outdir`` a folder (created) holding no other job's files, the same run
    (:func:`check_same_run`) and ``train.steps`` not below the steps done (one-stage runs; ``stages``: the folder
    of a staged job's stages). The workers raised these as a traceback per rank, exit status 1 (user probe).
    Read-only apart from creating ``outdir``."""
    import torch

    outdir = Path(outdir)
    if not fresh:
        check_run_world_size(outdir, world, stages)
    outdir = out_folder(outdir)
    refuse_other_job(outdir, "train")
    if fresh:
        return
    ckpt, conf_path = outdir / CHECKPOINT, outdir / CONFIG
    staged = stages is not None and (outdir / stages).exists()
    progress = [p for p in (ckpt, outdir / stages if stages else None) if p is not None and p.exists()]
    if not progress:
        return
    if not conf_path.exists():
        raise ConfigError(f"{progress[0]} exists without {conf_path}: not a folder written by train_job; use "
                          "fresh=True (--fresh) or another output folder")
    check_same_run(read_json(conf_path, "the configuration of a `latticekit train` run"), cfg.to_dict(), outdir)
    if ckpt.is_file() and not staged:  # a staged job's checkpoint.pt counts the steps of all its stages
        check_steps_done(cfg.train.steps, int(torch.load(ckpt, map_location="cpu", weights_only=False)["step"]),
                         outdir)
