"""``latticekit convert`` / ``info`` / ``scale`` from the command line: existing targets, ``--no-verify``, what
``info`` says it checked, and the advice of the ILDG layout error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit.app.cli import main
from latticekit.app.io_commands import convert_command, info_command
from latticekit.io import Ensemble, load, save

_CANDIDATES = [os.environ.get("LATTICEKIT_CONFIGS", ""),
               str(Path(__file__).resolve().parents[3] / "shared" / "data" / "configs"),
               "/work/shared/data/configs"]
CONFIGS = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "nersc.l8t4b3360").exists()), None)
needs_configs = pytest.mark.skipif(CONFIGS is None, reason="shared/data/configs (real files) not present")


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _nersc(path: Path, seed: int = 0) -> np.ndarray:
    U = lk.gauge.random_gauge_field(lk.SU(3), lk.Lattice((2, 2, 2, 2)), lk.backends.rng(seed, backend="numpy"))
    save(path, U, "SU3", format="nersc")
    return U


def test_convert_refuses_an_existing_target_unless_overwrite(tmp_path, capsys) -> None:
    src, dst = tmp_path / "a.nersc", tmp_path / "b.h5"
    U = _nersc(src)
    B = lk.gauge.random_gauge_field(lk.SU(3), lk.Lattice((2, 2, 2, 2)), lk.backends.rng(1, backend="numpy"),
                                    batch_shape=(3,))
    save(dst, B, "SU3", format="hdf5")                    # an ensemble of three configurations
    before = dst.read_bytes()
    assert main(["convert", str(src), str(dst), "--to", "hdf5"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert f"dst: {str(dst)!r} exists" in err and "--overwrite" in err
    assert dst.read_bytes() == before and len(Ensemble.open(dst)) == 3
    assert sorted(os.listdir(tmp_path)) == ["a.nersc", "b.h5"]        # no temporary left either
    with pytest.raises(FileExistsError, match="exists"):
        convert_command(src, dst, "hdf5")
    assert main(["convert", str(src), str(dst), "--to", "hdf5", "--overwrite"]) == 0
    capsys.readouterr()
    V, meta = load(dst)
    assert len(Ensemble.open(dst)) == 1 and np.array_equal(V, U)


def test_convert_always_refuses_the_source_as_target(tmp_path, capsys) -> None:
    src = tmp_path / "src.nersc"
    _nersc(src)
    before = src.read_bytes()
    os.symlink(src, tmp_path / "link.nersc")
    os.link(src, tmp_path / "hard.nersc")
    for dst in (src, tmp_path / "." / "src.nersc", tmp_path / "link.nersc", tmp_path / "hard.nersc"):
        for extra in ([], ["--overwrite"]):
            assert main(["convert", str(src), str(dst), "--to", "ildg", *extra]) == 1
            err = _one_line(capsys.readouterr().err)
            assert f"dst: {str(dst)!r} is the source file" in err
    assert src.read_bytes() == before and load(src)[1].format == "nersc"


@needs_configs
def test_no_verify_reaches_convert_and_scale(tmp_path, capsys) -> None:
    """A real NERSC file whose header PLAQUETTE was altered: refused (the message names --no-verify), read with
    --no-verify by convert and scale."""
    raw = (CONFIGS / "nersc.l8t4b3360").read_bytes()
    assert b"PLAQUETTE = 0.5038664469\n" in raw
    bad = tmp_path / "bad.nersc"
    bad.write_bytes(raw.replace(b"PLAQUETTE = 0.5038664469\n", b"PLAQUETTE = 0.6038664469\n"))
    assert main(["convert", str(bad), str(tmp_path / "o.lime"), "--to", "ildg"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert "NERSC PLAQUETTE failed" in err and "pass verify=False (--no-verify on the command line)" in err
    assert not (tmp_path / "o.lime").exists()
    assert main(["convert", str(bad), str(tmp_path / "o.lime"), "--to", "ildg", "--no-verify"]) == 0
    assert "read back: identical" in capsys.readouterr().out
    assert np.array_equal(load(tmp_path / "o.lime")[0], load(bad, verify=False)[0])
    assert main(["--threads", "1", "scale", str(bad), "--out", str(tmp_path / "s1")]) == 1
    assert "--no-verify" in _one_line(capsys.readouterr().err)
    assert main(["--threads", "1", "scale", str(bad), "--out", str(tmp_path / "s2"), "--no-verify"]) == 0
    assert "results written to" in capsys.readouterr().out
    assert (tmp_path / "s2" / "scale.json").exists()


def test_info_on_an_ensemble_says_which_configuration_it_checked(tmp_path) -> None:
    lat = lk.Lattice((4, 4))
    fields = [lk.U1.random(lk.backends.rng(k), (2,), (4, 4)) for k in range(3)]
    save(tmp_path / "e.h5", np.stack(fields), "U1", format="hdf5", meta={"lattice": lat})
    report = info_command(tmp_path / "e.h5")
    assert report.ok
    assert report.verdict == ("all checks ok for configuration 3 of 3 (index 2) and the observables; the other 2 "
                              "configurations were not read")
    assert "3 committed configurations; showing configuration 3 of 3 (index 2)" in report
    save(tmp_path / "one.h5", fields[0], "U1", format="hdf5")
    assert info_command(tmp_path / "one.h5").verdict == "all checks ok"


@needs_configs
def test_info_shows_what_convert_recorded_of_the_source(tmp_path) -> None:
    """An HDF5 file written by ``convert`` records the source file, its format and header; ``info`` shows them
    (the NERSC header's plaquette and checksum, one line per entry) and any other user metadata."""
    src = CONFIGS / "nersc.l8t4b3360"
    convert_command(src, tmp_path / "c.h5", "hdf5")
    lines = info_command(tmp_path / "c.h5").splitlines()
    assert f"source:     {src} (nersc)" in lines
    assert "  header    PLAQUETTE = 0.5038664469" in lines and "  header    DATATYPE = 4D_SU3_GAUGE_3x3" in lines
    assert "1 committed configuration; showing configuration 1 of 1 (index 0)" in lines[1]
    save(tmp_path / "m.h5", load(src)[0], "SU3", format="hdf5", meta={"run": {"beta": 6.0}})
    lines = info_command(tmp_path / "m.h5").splitlines()
    assert 'metadata:   run = {"beta": 6.0}' in lines and not any(ln.startswith("source:") for ln in lines)


@needs_configs
def test_ildg_layout_error_advice_fits_what_was_stated(capsys) -> None:
    f = str(CONFIGS / "su3_8x8x8x8.ildg")
    assert main(["info", f, "--lattice", "4,8,8,8", "--group", "SU3"]) == 1
    err = _one_line(capsys.readouterr().err)
    assert "pass lattice=" not in err and "pass group=" not in err
    assert "lattice (4, 8, 8, 8) needs SU(3) 64-bit 1179648, SU(3) 32-bit 589824 bytes" in err
    assert main(["info", f, "--group", "SU3", "--lattice", "2,8,8,8"]) == 1
    assert "needs SU(3) 64-bit 589824" in _one_line(capsys.readouterr().err)
    assert main(["info", f, "--group", "SU2"]) == 1
    assert "pass lattice= (--lattice on the command line)" in _one_line(capsys.readouterr().err)
