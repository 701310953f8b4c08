"""The `latticekit` command end to end (in-process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from latticekit.app.cli import COMMANDS, main, train_command

# the shared data folder lies beside the checkout (ROOT/../shared)
CONFIGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "configs"


def test_info_on_real_file(capsys) -> None:
    import pytest

    f = CONFIGS / "nersc.l8t4b3360"
    if not f.exists():
        pytest.skip(f"the shared data folder is not beside this checkout ({CONFIGS} missing)")
    assert main(["info", str(f)]) == 0
    out = capsys.readouterr().out
    assert "plaquette:  0.503866446950 (header 0.5038664469)" in out


def test_info_and_convert_arguments_are_bad_input(tmp_path, capsys) -> None:
    """A bad ``--lattice`` exited 1 (the status of a file problem; ``SystemExit`` with a message), a bad ``--group``
    printed a ValueError's traceback, and ``--backend``/``--device`` were ignored even when misspelt (user probe).
    Each is now one line naming the argument and exit status 2, before the file is read."""
    from latticekit.gauge import random_gauge_field
    from latticekit.io import save
    import latticekit as lk

    f = tmp_path / "a.nersc"
    save(f, random_gauge_field(lk.SU(2), lk.Lattice((2, 2, 2, 2)), lk.backends.rng(0)), "SU2", format="nersc")
    cases = [(["info", str(f), "--lattice", "0,4,4,4"], "--lattice '0,4,4,4': expected positive extents"),
             (["info", str(f), "--lattice", "4,x,4"], "--lattice '4,x,4': expected extents such as 4,4,4,8"),
             (["info", str(f), "--group", "foo"], "--group 'foo': expected SU2, SU3 or U1"),
             (["convert", str(f), str(tmp_path / "b"), "--to", "ildg", "--group", "SU1"], "--group 'SU1': expected"),
             (["--backend", "bogus", "info", str(f)], "backend='bogus': expected one of"),
             (["--backend", "numpy", "--device", "gpu", "convert", str(f), str(tmp_path / "b"), "--to", "ildg"],
              "device='gpu'")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "b").exists()
    assert main(["--backend", "numpy", "info", str(f), "--group", "SU2"]) == 0


def test_run_bad_config_exits_2(tmp_path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[sampler]\nstep_size = -1.0\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "sampler.step_size" in capsys.readouterr().err
    assert not (tmp_path / "o" / "state.npz").exists()


def test_run_and_measure(tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[lattice]\nshape = [4, 4]\n[sampler]\nchains = 2\nthermalization = 2\nmeasurements = 4\n"
                   "[output]\nplots = false\nstore_every = 1\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "plaquette" in out and "chi_t" in out
    assert main(["measure", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "remeasured.json").exists()


def test_unknown_backend_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["--backend", "jax", "run", "--out", str(tmp_path), "--quiet"]) == 2
    assert "backend" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path), "--quiet", "--backend", "jax"]) == 2   # after the sub-command too
    assert "backend" in capsys.readouterr().err
    # a misspelt device: one line, status 2, before the output folder is made (a torch traceback, status 1, and an
    # empty folder before)
    import pytest

    pytest.importorskip("torch")
    out = tmp_path / "dev"
    assert main(["run", "--out", str(out), "--quiet", "--backend", "torch", "--device", "gpu"]) == 2
    assert "device='gpu': not a torch device" in capsys.readouterr().err and not out.exists()


def test_global_options_before_or_after_the_sub_command() -> None:
    from latticekit.app.cli import _build_parser

    p = _build_parser()
    after = p.parse_args(["run", "x.toml", "--backend", "torch", "--device", "cpu", "--threads", "3"])
    before = p.parse_args(["--backend", "torch", "--device", "cpu", "--threads", "3", "run", "x.toml"])
    assert vars(after) == vars(before) and (after.backend, after.device, after.threads) == ("torch", "cpu", 3)
    assert p.parse_args(["--backend", "cupy", "sample", "d", "--backend", "torch"]).backend == "torch"  # last wins
    none = p.parse_args(["info", "f"])
    assert (none.backend, none.device, none.threads) == (None, None, None)


_TINY_FLOW = """
[lattice]
shape = [4, 4]
[action]
kind = "phi4"
kappa = 0.2
lam = 0.5
[model]
n_layers = 2
[train]
steps = 4
batch_size = 8
checkpoint_every = 2
eval_every = 2
[sample]
n = 32
"""


def test_train_sample_and_compare(tmp_path, capsys) -> None:
    import pytest

    pytest.importorskip("torch", reason="flows are torch by design")
    cfg = tmp_path / "flow.toml"
    cfg.write_text(_TINY_FLOW)
    assert main(["train", str(cfg), "--out", str(tmp_path / "f"), "--quiet"]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert (tmp_path / "f" / "train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["sample", str(tmp_path / "f"), "--n", "32", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "flow MCMC" in out and "abs_magnetization" in out
    # a checkpoint file away from its run folder (no train.json/config.json beside it): the configuration it
    # carries names the theory in sample.json and in the printed table
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tmp_path / "f" / "checkpoint.pt", lone / "copy.pt")
    assert main(["sample", str(lone / "copy.pt"), "--n", "16", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "flow MCMC" in out and "abs_magnetization" in out
    assert json.loads((lone / "sample.json").read_text())["flow_config"]["lattice"]["shape"] == [4, 4]
    # a `latticekit run` of another lattice is refused as a reference, naming what differs
    run = tmp_path / "r.toml"
    run.write_text('[lattice]\nshape = [6, 6]\n[action]\nkind = "phi4"\nkappa = 0.2\nlam = 0.5\n'
                   "[sampler]\nchains = 2\nthermalization = 2\nmeasurements = 4\n[output]\nplots = false\n")
    assert main(["run", str(run), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    capsys.readouterr()
    (tmp_path / "f" / "sample.json").unlink()
    assert main(["sample", str(tmp_path / "f"), "--n", "16", "--compare", str(tmp_path / "r" / "results.json")]) == 2
    assert "lattice [6, 6] vs [4, 4]" in capsys.readouterr().err
    assert not (tmp_path / "f" / "sample.json").exists()        # refused before any sampling
    # a seed the generators cannot take: one line naming it, not a traceback (user probe)
    assert main(["sample", str(tmp_path / "f"), "--n", "16", "--seed", str(2**64)]) == 2
    assert f"seed={2**64}: expected an integer <= 2^63 - 1" in capsys.readouterr().err
    # a run of the same theory is shown beside the flow, in the table and in the histograms
    run.write_text('[lattice]\nshape = [4, 4]\n[action]\nkind = "phi4"\nkappa = 0.2\nlam = 0.5\n'
                   "[sampler]\nchains = 2\nthermalization = 2\nmeasurements = 8\n[output]\nplots = false\n")
    assert main(["run", str(run), "--out", str(tmp_path / "r4"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "f"), "--n", "16", "--compare", str(tmp_path / "r4" / "results.json")]) == 0
    out = capsys.readouterr().out
    assert "susceptibility" in out and " hmc " in out and "sample.png" in out
    assert (tmp_path / "f" / "sample.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # flows are torch only
    assert main(["--backend", "numpy", "sample", str(tmp_path / "f")]) == 2
    assert "torch only" in capsys.readouterr().err


def test_every_sub_command_is_registered_in_one_place() -> None:
    assert set(COMMANDS) == {"run", "measure", "scale", "info", "convert", "train", "sample", "compare"}


# -- issue 14, item 10: one clear line and a non-zero exit for what the user can fix; bugs keep their traceback
def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("latticekit: ") and "Traceback" not in err, err
    return err


def _nersc(path) -> None:
    import latticekit as lk
    from latticekit.io import save

    save(path, lk.SU(3).identity((4,), (2, 2, 2, 2)), "SU3", format="nersc")


def test_folders_and_files_in_the_wrong_place(tmp_path, capsys) -> None:
    # each of these raised IsADirectoryError or FileExistsError with a traceback
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2      # a folder as config
    assert "is a folder; expected a TOML file" in _one_line(capsys.readouterr().err)
    assert main(["info", str(tmp_path)]) == 1                                                # a folder as info input
    assert "is a folder" in _one_line(capsys.readouterr().err)
    _nersc(tmp_path / "a.nersc")
    (tmp_path / "d").mkdir()
    assert main(["convert", str(tmp_path / "a.nersc"), str(tmp_path / "d"), "--to", "ildg"]) == 1   # folder as output
    assert "dst:" in _one_line(capsys.readouterr().err)
    (tmp_path / "file").write_text("x")
    assert main(["run", "--out", str(tmp_path / "file"), "--quiet"]) == 2                   # --out names a file
    assert "out: " in _one_line(capsys.readouterr().err)
    assert main(["run", "--out", str(tmp_path / "file" / "sub"), "--quiet"]) == 2           # ... or lies under one
    _one_line(capsys.readouterr().err)
    assert (tmp_path / "file").read_text() == "x"


def test_huge_lattice_and_solver_failure(tmp_path, capsys) -> None:
    cfg = tmp_path / "huge.toml"
    cfg.write_text("[lattice]\nshape = [100000, 100000]\n")        # numpy MemoryError before
    assert main(["run", str(cfg), "--out", str(tmp_path / "h"), "--quiet"]) == 2
    assert "2.56 TB of memory" in _one_line(capsys.readouterr().err)
    nf2 = tmp_path / "nf2.toml"                                        # ConvergenceError before
    nf2.write_text('[lattice]\nshape = [4, 4]\n[action]\nkind = "wilson_nf2"\ncg_maxiter = 3\n'
                   "[sampler]\nchains = 2\nthermalization = 2\nmeasurements = 4\n[output]\nplots = false\n")
    assert main(["run", str(nf2), "--out", str(tmp_path / "n"), "--quiet"]) == 1
    assert "action.cg_maxiter = 3" in _one_line(capsys.readouterr().err)


def test_nprocs_must_be_positive(tmp_path, capsys) -> None:
    import pytest

    from latticekit.utils import ConfigError

    cfg = tmp_path / "flow.toml"
    cfg.write_text(_TINY_FLOW)
    for n in ("0", "-3"):                                          # trained with one process before
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(cfg), "--out", str(tmp_path / "f"), "--nprocs", n])
        assert exit_info.value.code == 2
        assert f"--nprocs: expected a positive integer, got {n}" in capsys.readouterr().err
    for n in (0, -3):
        with pytest.raises(ConfigError, match="--nprocs"):
            train_command(cfg, out=tmp_path / "f", nprocs=n)
    assert not (tmp_path / "f").exists()


def test_internal_errors_keep_their_traceback(monkeypatch) -> None:
    import pytest

    def broken(args):
        raise ValueError("an internal inconsistency")               # not a user-facing error class

    monkeypatch.setitem(COMMANDS, "info", (COMMANDS["info"][0], COMMANDS["info"][1], broken))
    with pytest.raises(ValueError, match="an internal inconsistency"):
        main(["info", "whatever"])


def test_ctrl_c_is_one_line_not_a_traceback(monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    for name, resumes in (("scale", True), ("info", False)):
        monkeypatch.setitem(COMMANDS, name, (COMMANDS[name][0], COMMANDS[name][1], interrupted))
        argv = ["scale", "f.lime", "--out", "o"] if name == "scale" else ["info", "f.lime"]
        assert main(argv) == 130
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"latticekit {name}: interrupted") and "\n" not in err
        assert ("resumes" in err) == resumes


def test_sigint_during_a_run_then_resume(tmp_path) -> None:
    """A real Ctrl-C (SIGINT) of `latticekit run` after its first checkpoint: exit 130, one line on stderr, and the
    same command then finishes from the checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "run.toml"
    cfg.write_text('[lattice]\nshape = [8, 8]\n[action]\nbeta = 2.0\n[sampler]\nchains = 2\nthermalization = 20\n'
                   'measurements = 300\n[output]\ncheckpoint_every = 10\nplots = false\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "latticekit.app.cli", "--threads", "1", "run", str(cfg), "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # SIGINT back to its default in the child: a pytest-xdist worker ignores it, and an ignored signal is inherited
    # (Python then installs no KeyboardInterrupt handler); a shell gives the default
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not (out / "state.npz").exists() and time.time() - t0 < 120 and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be interrupted"
    # Python drops a KeyboardInterrupt raised inside a weakref callback or __del__ ("Exception ignored in ...": seen
    # once in a suite run), so, as a user would press Ctrl-C again, the signal is repeated until the job ends
    for _ in range(20):
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "latticekit run: interrupted; what was written is kept: the same command resumes", err
    assert "Traceback" not in err
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["config"]["sampler"]["measurements"] == 300
