"""Launch of data-parallel flow training: ``latticekit train --nprocs N`` and ``torchrun``.

The data-parallel trainer itself is library (:class:`latticekit.flows.distributed.DistributedTrainer`:
per-rank generators from :func:`~latticekit.flows.distributed.rank_seed`, DDP gradient averaging,
metrics of the global batch, checkpoints with every rank's generator state). This module starts the
processes and runs the train job's loop (:func:`latticekit.app.flows.train.run_training`) in each; rank
0 writes the files.

* :func:`train_distributed` — spawn ``nprocs`` local processes (``torch.multiprocessing.spawn``);
* :func:`distributed_main` — the same loop in a process started by ``torchrun`` (reads ``RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``):
  ``torchrun --nproc-per-node 2 -m latticekit.app.flows.distributed CONFIG.toml OUT``.

Backend: ``gloo`` on CPU, ``nccl`` on GPU (``device = "cuda"``: rank ``r`` uses ``cuda:r``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist

from latticekit.flows.distributed import find_free_port
from latticekit.utils.schema import ConfigError

from ..config import FlowConfig
from ..folders import CHECKPOINT
from .devices import torch_device
from .resume import check_world_size
from .train import run_training

__all__ = ["distributed_main", "process_group_backend", "train_distributed"]


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


def _worker(rank: int, world_size: int, port: int, config: dict[str, Any], out: str, device: Any, fresh: bool,
            progress: bool, result_path: str, parent: int | None = None) -> None:
    if parent is not None:
        _exit_with_parent(parent)
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
            torch.save(res, result_path)
    finally:
        dist.destroy_process_group()


def train_distributed(config: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig", *,
                      out: str | os.PathLike[str], nprocs: int = 2, device: Any = None, fresh: bool = False,
                      progress: bool = True, port: int | None = None) -> dict[str, Any]:
    """Train a flow job with ``nprocs`` local processes (DDP; gloo on CPU, nccl with ``device="cuda"``).

    Same configuration, files and resumption as :func:`latticekit.app.flows.train.train_job`;
    ``train.batch_size`` is the global batch (divisible by ``nprocs``). With CUDA, rank ``r`` uses
    ``cuda:r``. Each rank runs with ``1/nprocs`` of the parent's thread count
    (:func:`latticekit.backends.configure_threads`), so that the processes do not oversubscribe the cores. Returns rank 0's ``train.json`` content. Everything is checked before any
    process starts.
    """
    import tempfile

    import torch.multiprocessing as mp

    cfg = FlowConfig.load(config)            # validated before any process starts
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
    if dev is not None and dev.type == "cuda" and nprocs > torch.cuda.device_count():
        raise ConfigError(f"nprocs={nprocs}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if not fresh and fam.train is None:   # staged jobs resume from their stage files, which workers check
        check_world_size(Path(out) / CHECKPOINT, nprocs)
    port = find_free_port() if port is None else port
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.pt")
        mp.spawn(_worker, args=(nprocs, port, cfg.to_dict(), os.fspath(out), None if dev is None else str(dev), fresh,
                                progress, result_path, os.getpid()), nprocs=nprocs, join=True)
        return torch.load(result_path, weights_only=False)


def distributed_main(config: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig", *,
                     out: str | os.PathLike[str], device: Any = None, fresh: bool = False,
                     progress: bool = True) -> dict[str, Any]:
    """Run the training loop in a process started by ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``; ``LOCAL_RANK`` picks the GPU). Returns this rank's summary."""
    cfg = FlowConfig.load(config)
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"environment variable {var} is not set; start the processes with torchrun")
    dev = torch_device("torch", device)
    if dev is not None and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group(process_group_backend(dev), init_method="env://")
    try:
        return run_training(cfg, Path(out), device=dev, fresh=fresh, progress=progress, distributed=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover - torchrun entry point
    import argparse

    ap = argparse.ArgumentParser(description="distributed flow training (run under torchrun)")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--device", default=None)
    ap.add_argument("--fresh", action="store_true")
    a = ap.parse_args()
    distributed_main(a.config, out=a.out, device=a.device, fresh=a.fresh)
