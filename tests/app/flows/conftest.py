"""Fixtures of the flow-job tests: one torch thread for every test, a configuration written as a TOML file for
the ``latticekit`` command, a training run killed after a checkpoint and resumed, and the dense free-field
log Z of the superres checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids OpenMP contention on a shared 2-core machine (5x faster here)."""
    import torch  # here, not at import: the suite collects without torch (tests/test_fresh_install.py)

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def write_toml(tmp_path) -> Callable[[dict, str], Path]:
    """``write(cfg, name) -> path``: the configuration dict (sections of scalar and list keys) as the TOML file
    ``tmp_path / name``, for the ``latticekit`` command."""

    def value(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else json.dumps(v)

    def write(cfg: dict, name: str) -> Path:
        path = tmp_path / name
        path.write_text("".join(f"[{sec}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in keys.items())
                                for sec, keys in cfg.items()))
        return path

    return write


class Killed(BaseException):
    """Stands for SIGKILL: raised inside a training step, not caught by the job."""


@pytest.fixture
def killed_and_resumed(tmp_path, monkeypatch) -> Callable[..., tuple[dict, dict, dict]]:
    """``run(cfg, kill_at) -> (full, resumed, result)``: the checkpoints of an uninterrupted ``train_job`` and of
    one that dies in the step after its step-``kill_at`` checkpoint and is then resumed, and the resumed job's
    result."""
    import torch  # here, not at import: the suite collects without torch (tests/test_fresh_install.py)

    from latticekit.app.flows.train import train_job
    from latticekit.flows import Trainer

    def run(cfg: Any, kill_at: int) -> tuple[dict, dict, dict]:
        full, killed = tmp_path / "full", tmp_path / "killed"
        train_job(cfg, out=full, progress=False)
        original = Trainer.train_step

        def dying(self: Trainer) -> Any:
            if self.step == kill_at:
                raise Killed("SIGKILL")
            return original(self)

        monkeypatch.setattr(Trainer, "train_step", dying)
        with pytest.raises(Killed):
            train_job(cfg, out=killed, progress=False)
        monkeypatch.setattr(Trainer, "train_step", original)
        res = train_job(cfg, out=killed, progress=False)
        return (torch.load(full / "checkpoint.pt", weights_only=False),
                torch.load(killed / "checkpoint.pt", weights_only=False), res)

    return run


@pytest.fixture
def no_workers(monkeypatch) -> None:
    """Fail the test if a data-parallel worker process is started (the launch must refuse before it)."""
    import torch.multiprocessing

    import latticekit.app.flows.distributed as launch

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a data-parallel worker process was started")

    monkeypatch.setattr(torch.multiprocessing, "spawn", refuse)
    monkeypatch.setattr(launch, "_launch", refuse, raising=False)


@pytest.fixture
def dense_free_log_z() -> Callable[[tuple[int, ...], float], float]:
    """``log_z(shape, kappa)``: ``log int dphi exp(-phi^T A phi)`` of the hopping-form free phi^4 action from the
    dense matrix ``A`` (shares nothing with latticekit.exact): the superres families' log Z ratios."""
    import numpy as np

    def log_z(shape: tuple[int, ...], kappa: float) -> float:
        n = int(np.prod(shape))
        idx = np.arange(n).reshape(shape)
        A = np.eye(n)
        for mu in range(len(shape)):
            for i, j in zip(idx.ravel(), np.roll(idx, -1, axis=mu).ravel()):
                A[i, j] -= kappa
                A[j, i] -= kappa
        return n / 2 * np.log(np.pi) - 0.5 * np.linalg.slogdet(A)[1]

    return log_z
