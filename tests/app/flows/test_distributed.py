"""Distributed (DDP, gloo) flow training: per-rank streams, gradient averaging equal to the combined
batch (the library's DistributedTrainer), the train job's loop under DDP (rank-0 files, resumption with
the same number of processes), and the launch's checks before spawning."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch
import torch.multiprocessing as mp

import latticekit as lk
from latticekit.actions import Phi4Action
from latticekit.flows import GaussianPrior, Model, TrainConfig, scalar_coupling_flow, stop_gradient_log_prob
from latticekit.app.flows.distributed import train_distributed
from latticekit.app.flows.sample import sample_job
from latticekit.flows.distributed import find_free_port, rank_seed
from latticekit.testing import assert_close

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

SHAPE = (4, 4)
B = 6            # per-rank batch; global batch 2B over 2 ranks
SEED = 11


def make_model() -> Model:
    torch.manual_seed(0)
    lat = lk.Lattice(SHAPE)
    return Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2, "affine", hidden=(4,))).to(torch.float64)


def make_action() -> Phi4Action:
    return Phi4Action(lk.Lattice(SHAPE), kappa=0.3, lam=0.05)


def train_config() -> TrainConfig:
    return TrainConfig(steps=1, batch_size=2 * B, lr=0.05, seed=SEED, dtype="float64")


JOB = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.1},
       "model": {"n_layers": 2, "hidden": [4]},
       "train": {"steps": 3, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 2, "eval_batch_size": 16}}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """(1) one DDP step on fixed samples; (2) the job loop for 3 steps, then resumed to 4 steps."""
    from pathlib import Path

    import torch.distributed as dist

    from latticekit.app.config import FlowConfig
    from latticekit.app.flows.train import run_training
    from latticekit.flows.distributed import DistributedTrainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = make_model()
        if rank == 1:  # a different local initialisation: DDP must broadcast rank 0's parameters
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
        tr = DistributedTrainer(model, make_action(), train_config())
        m = tr.train_step()
        grads = {k: p.grad.detach().clone() for k, p in tr.model.named_parameters()}
        params = {k: p.detach().clone() for k, p in tr.model.named_parameters()}
        # the same step with the path-gradient estimator
        tr_p = DistributedTrainer(make_model(), make_action(), dataclasses.replace(train_config(), gradient="path"))
        tr_p.train_step()
        grads_path = {k: p.grad.detach().clone() for k, p in tr_p.model.named_parameters()}
        torch.save({"metrics": m, "grads": grads, "params": params, "local_batch": tr.local_batch,
                    "grads_path": grads_path}, os.path.join(out, f"rank{rank}.pt"))
        job = Path(out) / "job"
        first = run_training(FlowConfig.from_dict(JOB), job, device=None, fresh=False, progress=False,
                              distributed=True)
        cfg = json.loads(json.dumps(JOB))
        cfg["train"]["steps"] = 4
        second = run_training(FlowConfig.from_dict(cfg), job, device=None, fresh=False, progress=False,
                               distributed=True)
        torch.save({"first": first, "second": second}, os.path.join(out, f"job{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_rank_seeds_are_distinct_and_reproducible() -> None:
    seeds = [rank_seed(5, r) for r in range(8)]
    assert len(set(seeds)) == 8 and seeds == [rank_seed(5, r) for r in range(8)]
    assert rank_seed(5, 0) != rank_seed(6, 0)
    with pytest.raises(ValueError, match="rank"):
        rank_seed(5, -1)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, find_free_port(), str(out)), nprocs=2, join=True)
    return out


def _flat_grads(model: torch.nn.Module) -> torch.Tensor:
    """Every parameter's gradient, concatenated in ``named_parameters`` order."""
    return torch.cat([p.grad.reshape(-1) for _, p in model.named_parameters()])


def test_two_ranks_equal_one_process_with_combined_batch(spawned) -> None:
    tmp_path = spawned
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["local_batch"] == B
    # one process, the combined batch built from the very same prior samples of both ranks
    model = make_model()
    action = make_action()
    z0, lr0 = model.prior.sample(B, lk.backends.rng(rank_seed(SEED, 0), backend="torch"))
    z1, lr1 = model.prior.sample(B, lk.backends.rng(rank_seed(SEED, 1), backend="torch"))
    z, log_r = torch.cat([z0, z1]), torch.cat([lr0, lr1])
    x, logdet = model.flow(z)
    log_q = log_r - logdet
    S = action.action(x)
    loss = torch.mean(log_q + S)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    opt.zero_grad()
    loss.backward()
    for k, p in model.named_parameters():
        assert_close(r0["grads"][k], p.grad, rtol=1e-12, atol=1e-14, check_dtype=True)
        assert_close(r1["grads"][k], p.grad, rtol=1e-12, atol=1e-14, check_dtype=True)
    opt.step()
    for k, p in model.named_parameters():
        assert_close(r0["params"][k], p.detach(), rtol=1e-12, atol=1e-14, check_dtype=True)
        assert_close(r1["params"][k], r0["params"][k], rtol=0, atol=0, check_dtype=True)
    # metrics are those of the whole global batch
    lw = (-S - log_q).detach()
    assert_close(r0["metrics"]["loss"], float(loss.detach()), rtol=1e-12, atol=0)
    assert_close(r0["metrics"]["ess"], float(lk.analysis.ess(lw.numpy())), rtol=1e-10, atol=0)
    assert r1["metrics"] == r0["metrics"]
    # path gradient: the same combined batch, log q recomputed with detached parameters
    model_p = make_model()
    xp, _ = model_p.flow(z)
    torch.mean(stop_gradient_log_prob(model_p, xp) + action.action(xp)).backward()
    for k, p in model_p.named_parameters():
        assert_close(r0["grads_path"][k], p.grad, rtol=1e-12, atol=1e-14, check_dtype=True)
        assert_close(r1["grads_path"][k], p.grad, rtol=1e-12, atol=1e-14, check_dtype=True)
    # some parameter's gradient differs from the plain one (an element of the concatenation is not close;
    # make_model builds the same parameter names in the same order every time)
    plain = torch.cat([r0["grads"][k].reshape(-1) for k, _ in model_p.named_parameters()])
    with pytest.raises(AssertionError, match="elements differ"):
        assert_close(_flat_grads(model_p), plain, rtol=1e-5, atol=1e-8)
    # the gradient of one rank's half alone is different: the test can tell
    model2 = make_model()
    x0, ld0 = model2.flow(z0)
    torch.mean(lr0 - ld0 + action.action(x0)).backward()
    with pytest.raises(AssertionError, match="elements differ"):
        assert_close(_flat_grads(model2), plain, rtol=1e-5, atol=1e-8)


def test_distributed_job_files_and_resume(spawned) -> None:
    out = spawned / "job"
    j0 = torch.load(spawned / "job0.pt", weights_only=False)
    j1 = torch.load(spawned / "job1.pt", weights_only=False)
    assert j0["first"]["world_size"] == 2 and j0["first"]["steps"] == 3
    assert j0["second"]["resumed_from_step"] == 3 and j0["second"]["steps"] == 4
    assert j1["second"]["ess"] == j0["second"]["ess"]                  # same model on both ranks
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]                    # written once, by rank 0
    assert (out / "train.png").read_bytes()[:4] == b"\x89PNG" and j0["second"]["plot"] == "train.png"
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and ck["config"]["world_size"] == 2 and len(ck["config"]["rank_rng_states"]) == 2
    s = sample_job(out, n=32, seed=0)                                    # the single-process sampler reads it
    assert 0 <= s["acceptance"] <= 1


def test_train_distributed_checks_before_spawning(tmp_path) -> None:
    from latticekit.utils import ConfigError

    bad = dict(JOB, train=dict(JOB["train"], batch_size=7))
    with pytest.raises(ValueError, match="divisible"):
        train_distributed(bad, out=tmp_path / "x", nprocs=2)
    with pytest.raises(ConfigError, match="train.lr"):
        train_distributed(dict(JOB, train=dict(JOB["train"], lr=-1.0)), out=tmp_path / "x", nprocs=2)
    with pytest.raises(ValueError, match="nprocs"):
        train_distributed(JOB, out=tmp_path / "x", nprocs=0)
    assert not (tmp_path / "x").exists()


def test_resume_with_another_number_of_processes_is_refused_before_any_work(spawned) -> None:
    """The job folder of the fixture was trained by 2 ranks: resuming it with 4 processes or with one is one
    ConfigError naming --nprocs before any process starts (4 failed inside every worker with a traceback; one
    process silently continued the run with rank 0's stream), and nothing in the folder changes."""
    from latticekit.app.flows.train import train_job
    from latticekit.utils import ConfigError

    job = spawned / "job"
    before = {p.name: p.stat().st_mtime_ns for p in job.iterdir()}
    more = dict(JOB, train=dict(JOB["train"], steps=6))
    with pytest.raises(ConfigError, match=r"^--nprocs 4: the run in .* was trained by 2 process\(es\); resume it with "
                                          r"--nprocs 2"):
        train_distributed(more, out=job, nprocs=4)
    with pytest.raises(ConfigError, match=r"^--nprocs 1: the run in .* was trained by 2 process\(es\)"):
        train_job(more, out=job, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in job.iterdir()} == before


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the worker processes through /proc (Linux)")
def test_workers_end_when_the_launching_process_is_killed(tmp_path, write_toml) -> None:
    """kill -9 of `latticekit train --nprocs 2` started in the background from a shell (no cleanup runs in the
    parent): the workers end too. They lived on under PID 1 and kept training into the folder, and a rerun then
    shared it with them (checked: without the fix all three children of the killed process are still running 5 s
    later)."""
    import shlex
    import signal
    import subprocess
    import sys
    import time

    conf = write_toml(dict(JOB, train=dict(JOB["train"], steps=100000, checkpoint_every=1000)), "long.toml")
    out = tmp_path / "run"
    cmd = shlex.join([sys.executable, "-m", "latticekit.app.cli", "--threads", "1", "train", str(conf), "--out",
                      str(out), "--quiet", "--nprocs", "2"])
    # the shell exits at once, as an interactive `latticekit train ... &` leaves the job to itself
    pid = int(subprocess.run(["sh", "-c", f"{cmd} > /dev/null 2>&1 < /dev/null & echo $!"], capture_output=True,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True).stdout)

    def children() -> list[int]:
        kids = []
        for d in (d for d in os.listdir("/proc") if d.isdigit()):
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
        return kids

    def alive(p: int) -> bool:
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    kids: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.jsonl").is_file():   # both ranks are training
            time.sleep(0.2)
        kids = [k for k in children() if alive(k)]
        assert (out / "metrics.jsonl").is_file() and len(kids) >= 2, kids
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline and any(alive(k) for k in kids):
            time.sleep(0.2)
        assert not [k for k in kids if alive(k)]
    finally:
        for k in [pid, *kids]:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
