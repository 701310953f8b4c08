"""Fixtures of the flow-job tests: one torch thread for every test, and a training run killed after a checkpoint
and resumed."""

from __future__ import annotations

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
