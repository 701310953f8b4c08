"""Data-parallel flow training on :mod:`torch.distributed` (DistributedDataParallel).

Each of the ``W`` processes draws ``batch_size / W`` prior samples from its own latticekit
generator, seeded by :func:`rank_seed` from ``(seed, rank)``; DDP averages the gradients, so one step
equals a single-process step on the combined batch of all ranks' samples (the mean of the per-rank
means of ``log q + S`` is the mean over the whole batch). Rank 0 writes the checkpoints and
``metrics.jsonl``; the metrics (loss, ESS, var log w) are computed from the log-weights of the whole
global batch (``all_gather``). Checkpoints hold every rank's generator state, so a resumed run
with the same number of processes continues each stream exactly.

Backend: ``gloo`` on CPU, ``nccl`` on GPU.

:class:`DistributedTrainer` is the :class:`~latticekit.flows.Trainer` of an initialised process group,
for custom loops; the launch of the ``latticekit train --nprocs N`` job (spawned processes or
``torchrun``) is application code: :mod:`latticekit.app.flows.distributed`.

Examples
--------
>>> rank_seed(0, 0) != rank_seed(0, 1)
True
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import socket
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from latticekit import backends

from .checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from .model import Model
from .train import TrainConfig, Trainer, stop_gradient_log_prob

__all__ = ["DistributedTrainer", "barrier", "find_free_port", "rank_and_world", "rank_seed"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised torch.distributed group; ``(0, 1)`` without one.

    Examples
    --------
    >>> rank_and_world()  # no process group in this process
    (0, 1)
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank of the initialised torch.distributed group; nothing without one.

    Examples
    --------
    >>> barrier()  # no process group: returns at once
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s generator, derived from ``(seed, rank)`` with NumPy's SeedSequence.

    Distinct ranks get statistically independent streams; the same ``(seed, rank)`` always gives
    the same stream.

    Examples
    --------
    >>> rank_seed(7, 1) == rank_seed(7, 1), rank_seed(7, 0) == rank_seed(7, 1)
    (True, False)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: expected a non-negative integer")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank={rank!r}: expected a non-negative integer")
    state = np.random.SeedSequence([seed, rank, 0x6C6B]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for ``MASTER_PORT``).

    Examples
    --------
    >>> 0 < find_free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _no_buffer_sync() -> dict[str, bool]:
    """DDP's option for "no buffer broadcast in every forward": ``forward_sync_buffers=False`` where torch has it
    (its ``broadcast_buffers`` is deprecated there, with a FutureWarning printed once per rank), else
    ``broadcast_buffers=False``. The new option still syncs the buffers once at construction; every buffer of the
    flow models (masks, index maps, fixed couplings) is built identically on every rank, so that sync changes
    nothing."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


class DistributedTrainer(Trainer):
    """Reverse-KL training with the batch split across the processes of a torch.distributed group.

    The process group must be initialised (``torch.distributed.init_process_group``). The model is
    wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (parameters broadcast from rank 0,
    gradients averaged); ``config.batch_size`` is the global batch and must be divisible by the world
    size.

    Parameters
    ----------
    model : Model
    action : action object or callable
    config : TrainConfig
        ``seed`` is the global seed; rank ``r`` draws from ``rank_seed(seed, r)``.

    Attributes
    ----------
    rank, world_size, local_batch : int
    ddp : DistributedDataParallel
    """

    job_config: dict[str, Any] = {}

    def __init__(self, model: Model, action: Any, config: TrainConfig | None = None) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("DistributedTrainer needs an initialised torch.distributed process group "
                               "(torch.distributed.init_process_group)")
        super().__init__(model, action, config)
        cfg = self.config
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size={cfg.batch_size}: the global batch must be divisible by the world size "
                             f"{self.world_size}")
        self.local_batch = cfg.batch_size // self.world_size
        self.rng = backends.rng(rank_seed(cfg.seed, self.rank), backend="torch", device=cfg.device)
        ids = [self.device] if self.device.type == "cuda" else None
        # static_graph: the same parameters take part in every step, so DDP can skip the ones that never get a
        # gradient (the raw first-coordinate parameters of SU(N) spectral kernels that have context features,
        # kept for checkpoint compatibility) without the per-step graph search of find_unused_parameters
        self.ddp = DistributedDataParallel(self.model, device_ids=ids, static_graph=True, **_no_buffer_sync())

    def train_step(self) -> dict[str, float]:
        """One data-parallel step; metrics are those of the global batch (identical on all ranks).

        A ``torch.linalg.LinAlgError`` in one rank's forward pass (eigh on the NaN links of a diverged SU(N) flow)
        stops every rank with :class:`~latticekit.flows.NonFiniteLossError`, as :meth:`Trainer.train_step
        <latticekit.flows.Trainer.train_step>` does (an all-reduced flag tells every rank)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._mark_step()
        failure: torch.linalg.LinAlgError | None = None
        try:
            x, log_q = self.ddp(self.local_batch, self.rng)
            S = self.action_fn(x)
            if tuple(S.shape) != tuple(log_q.shape):
                raise ValueError(f"action returned shape {tuple(S.shape)}; expected one value per sample "
                                 f"{tuple(log_q.shape)}")
            lq = stop_gradient_log_prob(self.model, x) if self.config.gradient == "path" else log_q
            loss = torch.mean(lq + S)
            log_w = (-S - log_q).detach()
        except torch.linalg.LinAlgError as exc:
            failure = exc
        # every rank learns whether one failed (that rank raised alone, and the others, waiting in the all_gather,
        # died of a lost connection instead of stopping cleanly: user probe, from reading the code)
        flags = torch.zeros(self.world_size, dtype=torch.int32, device=self.device)
        flags[self.rank] = failure is not None
        dist.all_reduce(flags)
        if bool(flags.any()):
            failed = int(torch.nonzero(flags)[0])
            lines: list[Any] = [None] * self.world_size
            dist.all_gather_object(lines, None if failure is None else
                                   (str(failure).splitlines() or [type(failure).__name__])[0])
            self._stop("the forward pass", f"a linear-algebra failure on rank {failed} ({lines[failed]})", failure)
        parts = [torch.empty_like(log_w) for _ in range(self.world_size)]
        dist.all_gather(parts, log_w)
        lw = torch.cat(parts)
        lv = float(-lw.mean())                   # global loss = mean over the whole batch
        if not math.isfinite(lv):
            self._stop("the loss", lv)          # every rank sees the same value and stops together
        return self._apply_gradients(loss, lv, lw)  # DDP all-reduces (averages) the gradients in backward

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Collective: gathers every rank's generator state; rank 0 writes the checkpoint atomically."""
        path = path if path is not None else self.config.checkpoint_path
        if not path:
            raise ValueError("path: no checkpoint path given and config.checkpoint_path is not set")
        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, get_rng_state(self.rng))
        if self.rank == 0:
            save_checkpoint(path, model=self.model, step=self.step, optimizer=self.optimizer,
                            scheduler=self.scheduler, rng=self.rng,
                            config={"train_config": dataclasses.asdict(self.config), "history": self.history,
                                    "action": repr(self.action), "flow_config": self.job_config,
                                    "world_size": self.world_size, "rank_rng_states": states})
        dist.barrier()
        if os.fspath(path) == self.config.checkpoint_path:
            self.last_checkpoint_step = self.step

    def load(self, path: str | os.PathLike[str] | None = None) -> int:
        """Every rank loads the model/optimizer state and its own generator state."""
        path = path if path is not None else self.config.checkpoint_path
        if not path:
            raise ValueError("path: no checkpoint path given and config.checkpoint_path is not set")
        payload = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                  rng=None, map_location=self.device)
        conf = payload["config"]
        states = conf.get("rank_rng_states")
        if states is None or conf.get("world_size") != self.world_size:
            raise ValueError(f"path={os.fspath(path)!r}: checkpoint written by {conf.get('world_size', 1)} process(es); "
                             f"resuming needs the same number of processes (got {self.world_size}) so that every "
                             "rank continues its own random stream")
        set_rng_state(self.rng, states[self.rank])
        self.step = int(payload["step"])
        self.history = list(conf.get("history", []))
        if os.fspath(path) == self.config.checkpoint_path:
            self.last_checkpoint_step = self.step
        return self.step
