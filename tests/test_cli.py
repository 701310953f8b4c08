"""The `latticekit` command end to end (in-process)."""

from __future__ import annotations

from pathlib import Path

from latticekit.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "configs"


def test_info_on_real_file(capsys) -> None:
    import pytest

    f = CONFIGS / "nersc.l8t4b3360"
    if not f.exists():
        pytest.skip(f"the shared data folder is not beside this checkout ({CONFIGS} missing)")
    assert main(["info", str(f)]) == 0
    out = capsys.readouterr().out
    assert "plaquette:  0.503866446950 (header 0.5038664469)" in out


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
