"""Launch of data-parallel flow training: ``latticekit train --nprocs N`` and ``torchrun``.

The data-parallel trainer itself is library (:class:`latticekit.flows.distributed.DistributedTrainer`:
per-rank generators from :func:`~latticekit.flows.distributed.rank_seed`, DDP gradient averaging,
metrics of the global batch, checkpoints with every rank's generator state). This module starts the
processes and runs the train job's loop (:func:`latticekit.app.flows.train.run_training`) in each; rank
0 writes the files.

* :func:`train_distributed` — spawn ``nprocs`` local processes (``torch.multiprocessing``, start method spawn);
* :func:`distributed_main` — the same loop in a process started by ``torchrun`` (reads ``RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``):
  ``torchrun --nproc-per-node 2 -m latticekit.app.flows.distributed CONFIG.toml OUT`` (:func:`main`: rank 0
  prints the train command's summary line).

Backend: ``gloo`` on CPU, ``nccl`` on GPU (``device = "cuda"``: rank ``r`` uses ``cuda:r``).

Both check what can be checked before any process (or the process group) starts: the batch sizes against the
number of processes, the number of processes of the run being resumed (also for the staged jobs), ``--out`` a
folder holding the same run, ``train.steps`` not below the steps done (:func:`.resume.check_before_start`).
The launcher reports the first real error of its workers (rank 0's, else the first to fail; a worker's "connection
closed" at a collective is only the echo of another's failure) as that exception, so that the command prints one
line with the single-process job's exit status. On Ctrl-C (``KeyboardInterrupt`` in the launcher, also a SIGINT
sent to the launcher alone) the workers are stopped: SIGINT, then SIGTERM after :data:`GRACE_S`, then SIGKILL.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.distributed as dist

from latticekit.flows.distributed import find_free_port
from latticekit.utils.schema import ConfigError

from ..config import FlowConfig
from ..errors import user_error
from .devices import torch_device
from .resume import check_before_start
from .train import run_training

__all__ = ["GRACE_S", "KILL_AFTER_S", "distributed_main", "main", "process_group_backend", "train_distributed"]

#: seconds the other workers get to end by themselves once one has failed (they fail at their next collective or
#: wait for rank 0's summary at a barrier), or after a forwarded SIGINT, before they get SIGTERM
GRACE_S = 10.0
#: seconds from SIGTERM to SIGKILL
KILL_AFTER_S = 5.0
#: seconds a rank other than 0 waits under torchrun before it reports a user error (:func:`main`)
TORCHRUN_ECHO_DELAY_S = 3.0


def process_group_backend(device: Any) -> str:
    """``"nccl"`` for CUDA devices, else ``"gloo"``."""
    return "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"


def _exit_with_parent(parent: int) -> None:
    """End this worker when the launching process dies, even by SIGKILL (which runs no cleanup in the parent): on
    Linux the kernel sends SIGKILL (``prctl(PR_SET_PDEATHSIG)``), elsewhere a daemon thread polls the parent id.
    Orphaned workers kept training into the run folder, and a rerun then shared the folder with them."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:        # PR_SET_PDEATHSIG = 1
                if os.getppid() != parent:                             # died before the request took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="latticekit-parent-watch", daemon=True).start()


def _interrupt_once(signum: int, frame: Any) -> None:
    """A worker's SIGINT handler: one ``KeyboardInterrupt`` (the terminal's Ctrl-C reaches the worker and the
    launcher forwards its own), none in a finaliser, where Python would drop it (:mod:`latticekit.app.interrupt`)."""
    from latticekit.app.interrupt import in_finaliser

    if in_finaliser(frame):
        import threading

        timer = threading.Timer(0.05, os.kill, args=(os.getpid(), signum))
        timer.daemon = True
        timer.start()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _secondary(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because another rank ended (gloo "Connection closed by peer"):
    the echo of another worker's error, which once hid the real one (user probe)."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(k in text for k in ("Connection closed by peer", "Connection reset",
                                                                     "Broken pipe", "/gloo/", "NCCL"))


def _error_file(tmp: str, rank: int) -> str:
    return os.path.join(tmp, f"error{rank}.pkl")


def _record_error(tmp: str, rank: int, exc: BaseException) -> None:
    """Write ``exc`` of worker ``rank`` for the launcher (the exception itself where it pickles, else its class and
    message; its traceback)."""
    rec: dict[str, Any] = {"rank": rank, "time": time.time(), "secondary": _secondary(exc),
                           "module": type(exc).__module__, "type": type(exc).__qualname__, "message": str(exc),
                           "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                           "exception": None}
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        rec["exception"] = data
    except Exception:  # noqa: BLE001 - e.g. a constructor with more arguments (ConvergenceError): rebuilt by class
        pass
    path = _error_file(tmp, rank)
    with open(path + ".tmp", "wb") as fh:
        pickle.dump(rec, fh)
    os.replace(path + ".tmp", path)


def _bootstrap(rank: int, fn: Callable[..., None], args: tuple[Any, ...], tmp: str, parent: int) -> None:
    """Body of a spawned process: ``fn(rank, *args)``; an exception is written for the launcher (nothing printed:
    the launcher reports the first real one), the exit status is 130 for an interrupt, else 1."""
    _exit_with_parent(parent)
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        fn(rank, *args)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported to the launcher
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _record_error(tmp, rank, exc)
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 1)


class WorkerTraceback(Exception):
    """The traceback of a data-parallel worker's exception (the ``__cause__`` of the exception the launcher
    raises, so that an internal error still shows where it happened)."""

    def __str__(self) -> str:
        rank, text = self.args
        return f"in data-parallel worker {rank}:\n{text}"


def _exception_of(rec: dict[str, Any]) -> BaseException:
    """The exception of a worker's record: unpickled, else an instance of its class with its message (made without
    the class's constructor), else a RuntimeError naming it; its traceback is the ``__cause__``."""
    exc: Any = None
    if rec["exception"] is not None:
        try:
            exc = pickle.loads(rec["exception"])
        except Exception:  # noqa: BLE001 - rebuilt from its class and message below
            exc = None
    if not isinstance(exc, BaseException):
        import importlib

        try:
            cls: Any = importlib.import_module(rec["module"])
            for part in rec["type"].split("."):
                cls = getattr(cls, part)
            exc = cls.__new__(cls, rec["message"])
            exc.args = (rec["message"],)
        except Exception:  # noqa: BLE001 - named in a RuntimeError instead
            exc = None
    if not isinstance(exc, BaseException):
        exc = RuntimeError(f"{rec['module']}.{rec['type']}: {rec['message']}")
    exc.__cause__ = WorkerTraceback(rec["rank"], rec["traceback"])
    return exc


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was ended by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was ended by signal {-code}"
    return f"exited with status {code}"


def _first_failure(procs: list[Any], tmp: str, ended: dict[int, float], stopped: set[int]) -> BaseException | None:
    """The exception the launcher raises for its workers: the first real error (rank 0's, else the earliest), else
    a worker that ended without one (e.g. killed), else a collective's error, else None when all succeeded."""
    recs = []
    for rank in range(len(procs)):
        try:
            with open(_error_file(tmp, rank), "rb") as fh:
                recs.append(pickle.load(fh))
        except FileNotFoundError:
            continue
    real = [r for r in recs if not r["secondary"]]
    if real:
        return _exception_of(next((r for r in real if r["rank"] == 0), min(real, key=lambda r: r["time"])))
    failed = {r["rank"] for r in recs}
    died = sorted((ended.get(rank, 0.0), rank) for rank, p in enumerate(procs)
                  if p.exitcode not in (0, None) and rank not in failed and rank not in stopped)
    if died:
        rank = died[0][1]
        # an OSError: one line and exit status 1 from the command, like other problems of the machine
        return ChildProcessError(f"data-parallel worker {rank} {_ended(procs[rank].exitcode)} without reporting an "
                                 "error (its output, if any, is above); the files written so far are kept")
    if recs:
        return _exception_of(next((r for r in recs if r["rank"] == 0), min(recs, key=lambda r: r["time"])))
    bad = [rank for rank, p in enumerate(procs) if p.exitcode != 0]
    if bad:
        return ChildProcessError(f"data-parallel worker {bad[0]} {_ended(procs[bad[0]].exitcode)}")
    return None


def _wait(procs: list[Any], timeout: float | None) -> None:
    """Wait until every started process of ``procs`` has ended, or ``timeout`` seconds (None: no limit)."""
    from multiprocessing.connection import wait

    end = None if timeout is None else time.monotonic() + timeout
    while True:
        alive = [p for p in procs if p.pid is not None and p.exitcode is None]
        left = None if end is None else end - time.monotonic()
        if not alive or (left is not None and left <= 0):
            return
        wait([p.sentinel for p in alive], timeout=left)


def _stop(procs: list[Any], stopped: set[int], *, interrupt: bool) -> None:
    """End the workers still running: SIGINT first on an interrupt (they stop at once, files whole) and
    :data:`GRACE_S` to end, SIGTERM and :data:`KILL_AFTER_S`, then SIGKILL. A second Ctrl-C skips to SIGKILL."""
    plan: list[tuple[int, float | None]] = [(signal.SIGINT, GRACE_S)] if interrupt else []
    plan += [(signal.SIGTERM, KILL_AFTER_S), (getattr(signal, "SIGKILL", signal.SIGTERM), None)]
    hurry = False
    for sig, grace in plan:
        alive = [(rank, p) for rank, p in enumerate(procs) if p.pid is not None and p.exitcode is None]
        if not alive:
            break
        if hurry and grace is not None:
            continue
        for rank, p in alive:
            if sig != signal.SIGINT:
                stopped.add(rank)
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            _wait([p for _, p in alive], grace)
        except KeyboardInterrupt:
            hurry = True
    for p in procs:
        if p.pid is not None:
            p.join()
    if hurry:
        raise KeyboardInterrupt


def _launch(fn: Callable[..., None], nprocs: int, args: tuple[Any, ...], tmp: str) -> None:
    """Run ``fn(rank, *args)`` in ``nprocs`` spawned processes and wait for them; raise the first real error of
    theirs (:func:`_first_failure`). When one fails, the others get :data:`GRACE_S` seconds to end by themselves
    (``mp.spawn`` sent SIGTERM at once, and rank 0 died while writing the summary of a NaN stop; user probe). A
    ``KeyboardInterrupt`` stops them (:func:`_stop`) and is raised again: the workers of a launcher interrupted
    alone trained on to the end in the background (user probe)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    ended: dict[int, float] = {}
    stopped: set[int] = set()
    try:
        for rank in range(nprocs):
            procs.append(ctx.Process(target=_bootstrap, args=(rank, fn, args, tmp, os.getpid()),
                                     name=f"latticekit-rank{rank}", daemon=False))
            procs[-1].start()
        deadline = None
        while any(p.exitcode is None for p in procs):
            _wait(procs, None if deadline is None else max(deadline - time.monotonic(), 0.0))
            for rank, p in enumerate(procs):
                if p.exitcode is not None and rank not in ended:
                    ended[rank] = time.time()
                    if p.exitcode != 0 and deadline is None:
                        deadline = time.monotonic() + GRACE_S
            if deadline is not None and time.monotonic() >= deadline:
                _stop(procs, stopped, interrupt=False)
    except KeyboardInterrupt:
        _stop(procs, stopped, interrupt=True)
        raise
    finally:
        _stop(procs, stopped, interrupt=False)   # nothing is left running, whatever happened
    failure = _first_failure(procs, tmp, ended, stopped)
    if failure is not None:
        raise failure


def _worker(rank: int, world_size: int, port: int, config: dict[str, Any], out: str, device: Any, fresh: bool,
            progress: bool, tmp: str) -> None:
    # the parent's thread count shared among the ranks, so that the processes do not oversubscribe the cores
    from latticekit.backends import configure_threads, default_thread_count

    configure_threads(max(default_thread_count()[0] // world_size, 1))
    dev = device
    if device is not None and torch.device(device).type == "cuda":
        dev = torch.device("cuda", rank)
        torch.cuda.set_device(dev)
    dist.init_process_group(process_group_backend(device), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        res = run_training(FlowConfig.from_dict(config), Path(out), device=dev, fresh=fresh, progress=progress,
                           distributed=True)
        if rank == 0:
            torch.save(res, os.path.join(tmp, "result.pt"))
    finally:
        # trainers (their DDP reducers) left in tracebacks go first: one destroyed after its process group
        # aborted the process ("terminate called without an active exception", SIGABRT, seen once)
        gc.collect()
        dist.destroy_process_group()


def _check_launch(cfg: FlowConfig, out: str | os.PathLike[str], nprocs: Any, device: Any, fresh: bool, *,
                  local: bool) -> Any:
    """The checks of a data-parallel start with ``nprocs`` processes, before any starts (module docstring);
    returns the torch device. ``local``: all processes on this machine (CUDA: one device each)."""
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ConfigError(f"nprocs={nprocs!r}: expected a positive number of processes")
    if cfg.train.batch_size % nprocs:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size}: must be divisible by nprocs={nprocs}")
    for b in getattr(cfg.model.variant, "conditional_batch_size", ()) or ():   # staged jobs (4D QCD)
        if b % nprocs:
            raise ConfigError(f"model.conditional_batch_size contains {b}: every batch must be divisible by "
                              f"nprocs={nprocs}")
    from .models import family

    fam = family(cfg.model.coupling)
    if fam.train is not None and not fam.distributed_train:
        raise ConfigError(f"model.coupling = {cfg.model.coupling!r} trains on one process (its own job); run it "
                          "without --nprocs")
    dev = torch_device("torch", device)
    if local and dev is not None and dev.type == "cuda" and nprocs > torch.cuda.device_count():
        raise ConfigError(f"nprocs={nprocs}: only {torch.cuda.device_count()} CUDA device(s) visible")
    # the folder, for every family: staged jobs were left to the workers (user probe)
    from .stages import STAGES

    check_before_start(cfg, Path(out), fresh=fresh, world=nprocs, stages=STAGES)
    return dev


def train_distributed(config: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig", *,
                      out: str | os.PathLike[str], nprocs: int = 2, device: Any = None, fresh: bool = False,
                      progress: bool = True, port: int | None = None) -> dict[str, Any]:
    """Train a flow job with ``nprocs`` local processes (DDP; gloo on CPU, nccl with ``device="cuda"``).

    Same configuration, files and resumption as :func:`latticekit.app.flows.train.train_job`;
    ``train.batch_size`` is the global batch (divisible by ``nprocs``). With CUDA, rank ``r`` uses
    ``cuda:r``. Each rank runs with ``1/nprocs`` of the parent's thread count
    (:func:`latticekit.backends.configure_threads`), so that the processes do not oversubscribe the cores. Returns
    rank 0's ``train.json`` content.

    Everything that can be is checked before any process starts (module docstring). An error of the workers is
    raised here as the exception the first failing worker raised (rank 0's first), with its traceback as the
    ``__cause__`` (:class:`WorkerTraceback`); a worker that ended without one (killed) is a
    :class:`ChildProcessError`. A ``KeyboardInterrupt`` stops the workers before it propagates.
    """
    import tempfile

    cfg = FlowConfig.load(config)            # validated before any process starts
    dev = _check_launch(cfg, out, nprocs, device, fresh, local=True)
    port = find_free_port() if port is None else port
    with tempfile.TemporaryDirectory() as tmp:
        _launch(_worker, nprocs, (nprocs, port, cfg.to_dict(), os.fspath(out), None if dev is None else str(dev),
                                  fresh, progress, tmp), tmp)
        return torch.load(os.path.join(tmp, "result.pt"), weights_only=False)


def distributed_main(config: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig", *,
                     out: str | os.PathLike[str], device: Any = None, fresh: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Run the training loop in a process started by ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``; ``LOCAL_RANK`` picks the GPU). Returns this rank's summary.

    Every rank makes the launcher's checks (:func:`train_distributed`) before the process group starts, so a bad
    batch size or another number of processes than the run's is one :class:`ConfigError` (it was a traceback per
    rank, after the output folder was created; user probe)."""
    cfg = FlowConfig.load(config)
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"environment variable {var} is not set; start the processes with torchrun")
    dev = _check_launch(cfg, out, int(os.environ["WORLD_SIZE"]), device, fresh, local=False)
    if dev is not None and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group(process_group_backend(dev), init_method="env://")
    try:
        return run_training(cfg, Path(out), device=dev, fresh=fresh, progress=progress, distributed=True)
    finally:
        # trainers (their DDP reducers) left in tracebacks go first: one destroyed after its process group
        # aborted the process ("terminate called without an active exception", SIGABRT, seen once)
        gc.collect()
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``torchrun`` entry point (``torchrun --nproc-per-node 2 -m latticekit.app.flows.distributed CONFIG.toml
    OUT``): :func:`distributed_main`, then rank 0 prints the train command's summary line; a user error is one line
    from rank 0 (every rank checks the same configuration and folder; another rank prints its own only when it is
    still running :data:`TORCHRUN_ECHO_DELAY_S` later) with the command's exit status
    (:func:`latticekit.app.errors.user_error`), Ctrl-C exit status 130. Returns the exit status."""
    import argparse

    from .train import summary_line

    ap = argparse.ArgumentParser(description="distributed flow training (run under torchrun)")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--device", default=None)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    lead = os.environ.get("RANK", "0") == "0"
    try:
        res = distributed_main(a.config, out=a.out, device=a.device, fresh=a.fresh, progress=not a.quiet)
    except KeyboardInterrupt:
        if lead:
            print("\nlatticekit train: interrupted; what was written is kept: the same command resumes",
                  file=sys.stderr)
        return 130
    except Exception as exc:
        line, status = user_error(exc)
        if line is None:
            raise  # an internal error: keep the traceback
        if not lead:
            # rank 0 made the same checks and prints the line; torchrun ends this rank when rank 0 exits with an
            # error, and rank 0 was ended before it printed when this rank exited first. Only an error of this rank
            # alone gets here and is printed
            time.sleep(TORCHRUN_ECHO_DELAY_S)
        print(f"latticekit{'' if lead else ' (rank ' + os.environ.get('RANK', '?') + ')'}: {line}", file=sys.stderr)
        return status
    if lead:
        print(summary_line(res, a.out), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - torchrun entry point
    sys.exit(main())
