"""Distributed (DDP, gloo) flow training: per-rank streams, gradient averaging equal to the combined
batch (the library's DistributedTrainer), the train job's loop under DDP (rank-0 files, resumption with
the same number of processes), and the launch's checks before spawning."""

from __future__ import annotations

import dataclasses
import json
import gc
import os
import re

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


#: a run long enough to be interrupted mid-way (a checkpoint every 5 steps)
LONG = dict(JOB, train=dict(JOB["train"], steps=40, checkpoint_every=5))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """(1) one DDP step on fixed samples; (2) the job loop for 3 steps, then resumed to 4 steps."""
    from pathlib import Path

    import torch.distributed as dist

    from latticekit.app.config import FlowConfig
    from latticekit.app.flows.train import run_training
    from latticekit.flows.distributed import DistributedTrainer

    from datetime import timedelta

    torch.set_num_threads(1)
    # a collective that a bug leaves unmatched fails after 60 s instead of hanging the suite
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
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
        # the uninterrupted run that test_sigint_to_the_launcher_alone_stops_the_workers resumes to
        run_training(FlowConfig.from_dict(LONG), Path(out) / "long_full", device=None, fresh=False, progress=False,
                     distributed=True)
        # (3) eigh failing in rank 1's forward pass only, last: without the flag the ranks' collectives disagree
        base = make_action()

        def action(x: torch.Tensor) -> torch.Tensor:
            if rank == 1:
                raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
            return base.action(x)

        try:
            DistributedTrainer(make_model(), action, train_config()).train_step()
            outcome = ("no error", "")
        except Exception as exc:  # noqa: BLE001 - recorded for the test
            outcome = (type(exc).__name__, str(exc))
        torch.save(outcome, os.path.join(out, f"linalg{rank}.pt"))
    finally:
        # trainers (their DDP reducers) left in tracebacks go first: one destroyed after its process group
        # aborted the process ("terminate called without an active exception", SIGABRT, seen once)
        gc.collect()
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

    kids: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.jsonl").is_file():   # both ranks are training
            time.sleep(0.2)
        kids = [k for k in children() if _alive(k)]
        assert (out / "metrics.jsonl").is_file() and len(kids) >= 2, kids
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        assert not [k for k in kids if _alive(k)]
    finally:
        for k in [pid, *kids]:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass


def test_a_linalg_failure_on_one_rank_stops_every_rank(spawned) -> None:
    """eigh failing in one rank's forward pass stops every rank with NonFiniteLossError naming that rank, as
    Trainer.train_step stops one process (user probe, from reading the code: rank 1 raised LinAlgError alone and
    rank 0 died of a lost connection)."""
    expected = (r"^training stopped at step 1: the forward pass is a linear-algebra failure on rank 1 "
                r"\(linalg\.eigh: The algorithm failed to converge\); the optimizer was not updated and no checkpoint "
                r"was written yet\.")
    for rank in (0, 1):
        kind, message = torch.load(spawned / f"linalg{rank}.pt", weights_only=False)
        assert kind == "NonFiniteLossError", (rank, kind, message)
        assert re.match(expected, message), message


def test_launcher_checks_the_folder_before_any_process_starts(spawned, no_workers, write_toml, capsys) -> None:
    """A changed train.lr or model.hidden, train.steps below the steps done and --out naming a file are refused by
    the launcher with the one-process job's error, one line and exit status 2 from the command, before any worker
    starts (user probe: a traceback per rank, exit status 1, once only rank 1's gloo "Connection closed by peer"),
    and nothing in the folder changes."""
    from latticekit.app.cli import main
    from latticekit.flows import CheckpointMismatchError
    from latticekit.utils import ConfigError

    job = spawned / "job"
    before = {p.name: p.stat().st_mtime_ns for p in job.iterdir()}
    same = dict(JOB, train=dict(JOB["train"], steps=4))
    with pytest.raises(ConfigError, match=r"^\S+job holds a run with a different configuration \(train\.lr 0\.01 -> "
                                          r"0\.02\); resuming would not continue the same run\."):
        train_distributed(dict(same, train=dict(same["train"], lr=2e-2)), out=job, nprocs=2)
    with pytest.raises(CheckpointMismatchError, match=r"^\S+job holds a run of a different model or lattice "
                                                      r"\(\[model\] model\.hidden \[4\] -> \[6\]\)"):
        train_distributed(dict(same, model=dict(JOB["model"], hidden=[6])), out=job, nprocs=2)
    with pytest.raises(ConfigError, match=r"^train\.steps = 2: the run in \S+job has trained 4 steps already; give at "
                                          r"least 4 \(more continues the run\), or --fresh to start over$"):
        train_distributed(dict(same, train=dict(same["train"], steps=2)), out=job, nprocs=2)
    a_file = spawned / "a_file.txt"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"^out: '\S+a_file\.txt' is a file; expected the job's output folder "
                                          r"\(--out\)$"):
        train_distributed(same, out=a_file, nprocs=2)
    conf = write_toml(dict(same, train=dict(same["train"], lr=2e-2)), "lr.toml")
    capsys.readouterr()
    assert main(["train", str(conf), "--out", str(job), "--nprocs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert re.match(r"^latticekit: invalid configuration: \S+job holds a run with a different configuration "
                    r"\(train\.lr 0\.01 -> 0\.02\)[^\n]*\n$", err), err
    assert {p.name: p.stat().st_mtime_ns for p in job.iterdir()} == before


def test_the_first_real_worker_error_is_raised_not_a_lost_connection(tmp_path) -> None:
    """Rank 1 fails with a ConfigError and rank 0, waiting in a collective, with gloo's lost connection (reported
    even later or earlier): the launcher raises rank 1's ConfigError with its traceback as the cause (user probe: the
    real error was once hidden behind rank 0's "Connection closed by peer"); rank 0's own real error comes first; a
    worker that ended without a report is a ChildProcessError naming it."""
    from types import SimpleNamespace

    from latticekit.app.flows import distributed as launch
    from latticekit.utils import ConfigError

    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by "
                        "peer [127.0.0.1]:62692")
    for rank, exc in ((1, ConfigError("train.lr: changed")), (0, gloo)):
        try:
            raise exc
        except Exception as caught:  # noqa: BLE001 - a traceback to record, as in a worker
            launch._record_error(str(tmp_path), rank, caught)
    procs = [SimpleNamespace(exitcode=1), SimpleNamespace(exitcode=1)]
    err = launch._first_failure(procs, str(tmp_path), {}, set())
    assert type(err) is ConfigError and str(err) == "train.lr: changed"
    assert isinstance(err.__cause__, launch.WorkerTraceback) and "raise exc" in str(err.__cause__)
    try:
        raise ValueError("rank 0's own")
    except ValueError as caught:
        launch._record_error(str(tmp_path), 0, caught)
    err = launch._first_failure(procs, str(tmp_path), {}, set())
    assert type(err) is ValueError and str(err) == "rank 0's own"
    from latticekit.linalg.cg import ConvergenceError

    try:   # an exception whose constructor takes more than its message (it does not pickle): rebuilt by class
        raise ConvergenceError("cg: maxiter reached", None)
    except ConvergenceError as caught:
        launch._record_error(str(tmp_path), 0, caught)
    err = launch._first_failure(procs, str(tmp_path), {}, set())
    assert type(err) is ConvergenceError and str(err) == "cg: maxiter reached"
    for f in tmp_path.iterdir():
        f.unlink()
    err = launch._first_failure([SimpleNamespace(exitcode=0), SimpleNamespace(exitcode=-9)], str(tmp_path), {}, set())
    assert type(err) is ChildProcessError
    assert re.match(r"^data-parallel worker 1 was ended by signal SIGKILL without reporting an error", str(err))


def test_a_nonfinite_loss_under_two_processes_keeps_the_summary(tmp_path, write_toml, capsys) -> None:
    """lr = 1000 in float32 diverges: as with one process, the command prints one line and exits with status 1, and
    rank 0 writes train.json with the stop status (user probe: a 43-line traceback and no train.json, rank 0 ended by
    SIGTERM while writing it)."""
    from latticekit.app.cli import main

    bad = dict(JOB, train=dict(JOB["train"], steps=10, lr=1000.0, dtype="float32", eval_every=3))
    conf, out = write_toml(bad, "nan.toml"), tmp_path / "nan"
    capsys.readouterr()
    assert main(["train", str(conf), "--out", str(out), "--nprocs", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    m = re.match(r"^latticekit: training stopped: (training stopped at step \d+: the loss is -?(inf|nan);[^\n]*)\n$",
                 err)
    assert m, err
    summary = json.loads((out / "train.json").read_text())
    assert summary["status"] == "stopped: non-finite loss or gradient" and summary["message"] == m.group(1)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "train.json", "train.png"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes (not multiprocessing's resource tracker) of process ``pid``."""
    kids = []
    for d in (d for d in os.listdir("/proc") if d.isdigit()):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                spawned_worker = b"spawn_main" in f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and spawned_worker:
            kids.append(int(d))
    return kids


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the worker processes through /proc (Linux)")
def test_sigint_to_the_launcher_alone_stops_the_workers(spawned, tmp_path, write_toml) -> None:
    """kill -INT of the launcher only (timeout -s INT, a scheduler, a notebook's interrupt): it stops its workers,
    exits with 130 and its one line, and the rerun ends bit-identical to an uninterrupted run (the fixture's; user
    probe: the workers trained to the end in the background while the launcher waited for them)."""
    import signal
    import subprocess
    import sys
    import time

    conf, out = write_toml(LONG, "long.toml"), tmp_path / "run"
    # SIGINT back to its default in the launcher: a pytest-xdist worker ignores it, and an ignored signal is inherited
    proc = subprocess.Popen([sys.executable, "-m", "latticekit.app.cli", "--threads", "1", "train", str(conf),
                             "--out", str(out), "--quiet", "--nprocs", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    kids: list[int] = []
    try:
        deadline = time.time() + 120
        metrics = out / "metrics.jsonl"
        while time.time() < deadline and (not metrics.is_file() or len(metrics.read_bytes().splitlines()) < 7):
            time.sleep(0.02)
        kids = [k for k in _workers_of(proc.pid) if _alive(k)]
        assert len(kids) == 2, kids
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.endswith("\nlatticekit train: interrupted; what was written is kept: the same command resumes\n")
        assert not [k for k in kids if _alive(k)]
        assert not (out / "train.json").exists()          # stopped mid-run, not trained to the end
    finally:
        for k in [proc.pid, *kids]:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(timeout=30)
    resumed = train_distributed(LONG, out=out, nprocs=2, progress=False)
    assert resumed["resumed_from_step"] is not None and resumed["resumed_from_step"] % 5 == 0
    full = spawned / "long_full"
    a = torch.load(out / "checkpoint.pt", weights_only=False)
    b = torch.load(full / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 40
    for k, v in b["model"].items():
        assert_close(a["model"][k], v, rtol=0, atol=0, check_dtype=True)
    for sa, sb in zip(a["config"]["rank_rng_states"], b["config"]["rank_rng_states"], strict=True):
        assert_close(sa["latticekit"], sb["latticekit"], rtol=0, atol=0, check_dtype=True)

    def lines(folder):
        return [{k: v for k, v in json.loads(s).items() if k not in ("time_s", "cpu_s")}
                for s in (folder / "metrics.jsonl").read_text().splitlines()]

    assert lines(out) == lines(full)
    assert_close(resumed["final_loss"], json.loads((full / "train.json").read_text())["final_loss"], rtol=0, atol=0)


def test_torchrun_entry_checks_first_and_prints_the_summary_line(spawned, tmp_path, monkeypatch, write_toml,
                                                                capsys) -> None:
    """The torchrun entry point (latticekit.app.flows.distributed.main) makes the launcher's checks before the
    process group starts (one line, exit status 2, no folder created) and prints the train command's summary line
    (user probe: a traceback per rank, an empty output folder, and no summary line)."""
    from latticekit.app.flows.distributed import main

    for var, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(find_free_port())}.items():
        monkeypatch.setenv(var, value)
    def no_group(*args, **kwargs):
        raise AssertionError("the process group was started")

    # the refusals come before it (and a group of 2 ranks in this process would wait for the second)
    monkeypatch.setattr(torch.distributed, "init_process_group", no_group)
    odd = write_toml(dict(JOB, train=dict(JOB["train"], batch_size=5)), "odd.toml")
    capsys.readouterr()
    assert main([str(odd), str(tmp_path / "odd"), "--quiet"]) == 2
    assert capsys.readouterr().err == ("latticekit: invalid configuration: train.batch_size=5: must be divisible by "
                                       "nprocs=2\n")
    assert not (tmp_path / "odd").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    conf = write_toml(dict(JOB, train=dict(JOB["train"], steps=4)), "job.toml")
    assert main([str(conf), str(spawned / "job"), "--quiet"]) == 2
    assert re.match(r"^latticekit: invalid configuration: --nprocs 1: the run in \S+job was trained by 2 "
                    r"process\(es\); resume it with --nprocs 2 [^\n]*\n$", capsys.readouterr().err)
    monkeypatch.undo()
    for var, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(find_free_port())}.items():
        monkeypatch.setenv(var, value)
    out = tmp_path / "one"
    assert main([str(conf), str(out), "--quiet"]) == 0     # a process group of one rank, in this process
    printed = capsys.readouterr().out
    expected = (rf"^trained 4 steps in \d+\.\d s: loss \S+, ESS \S+ \(Kish, N=16\), var log w \S+ \(4 steps, \d+ "
                rf"parameters\); checkpoint {re.escape(str(out / 'checkpoint.pt'))}, metrics "
                rf"{re.escape(str(out / 'metrics.jsonl'))}, plot {re.escape(str(out / 'train.png'))}\n$")
    assert re.match(expected, printed), printed


def test_the_torchrun_entry_reports_errors_as_the_command_does() -> None:
    """The torchrun entry maps exceptions to one line and an exit status with the command's own mapping
    (latticekit.app.errors.user_error; it had a copy, which the command's import structure had forced)."""
    from latticekit.app import cli, errors
    from latticekit.app.flows import distributed
    from latticekit.backends import BackendError
    from latticekit.flows import CheckpointMismatchError, NonFiniteLossError
    from latticekit.io.errors import IOFormatError
    from latticekit.linalg.cg import ConvergenceError
    from latticekit.utils import ConfigError

    assert distributed.user_error is cli.user_error is errors.user_error
    statuses = [(ConfigError("train.lr: x"), 2), (CheckpointMismatchError("m"), 2), (BackendError("b"), 2),
                (IOFormatError("f"), 1), (FileNotFoundError(2, "No such file", "x"), 1), (NonFiniteLossError("n"), 1),
                (ConvergenceError("c", None), 1), (MemoryError(), 1), (ValueError("a bug"), 0), (RuntimeError("b"), 0)]
    for exc, status in statuses:
        line, got = errors.user_error(exc)
        assert got == status and (line is None) == (status == 0), (exc, line, got)
