"""Binary-only ILDG files whose size fits several readings (the data decide; errors name the assumed layout),
LIME messages left open by a truncation, caller arguments refused as such before any work (a lattice of the
wrong dimension, an empty target path), and the one-line rules of ``latticekit info``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.app.io_commands import convert_command, info_command
from latticekit.io import IOFormatError, library_to_file, load, read_ildg, read_lime, read_nersc, save, write_lime
from latticekit.io.lime import lime_bytes
from latticekit.testing import assert_close
from latticekit.utils.files import atomic_write
from latticekit.utils.schema import ConfigError

from .test_real_files import CONFIGS

needs_configs = pytest.mark.skipif(CONFIGS is None, reason="shared/data/configs (real files) not present")
LAT = (2, 2, 2, 2)


def _field(N: int = 3, lat: tuple[int, ...] = LAT, seed: int = 0) -> np.ndarray:
    return lk.SU(N).random(backends.rng(seed), (4,), lat)


def _binary_only(path: Path, payload: bytes) -> Path:
    write_lime(path, [[("ildg-binary-data", payload)]])
    return path


# -- finding 4: several readings fit the size -------------------------------------------------------

@needs_configs
def test_stripped_real_file_names_the_valid_reading_and_asks_for_the_lattice(tmp_path: Path) -> None:
    """The real 8^3 x 4 SU(3) 64-bit data also fit 8^4 SU(3) 32-bit; only the 64-bit reading is valid."""
    binrec = next(r for r in read_lime(CONFIGS / "ildg.l8t4b3360") if r.type == "ildg-binary-data")
    p = _binary_only(tmp_path / "b.ildg", bytes(binrec.data))
    for kw in ({}, {"group": "SU3"}, {"verify": False}):
        with pytest.raises(IOFormatError, match="ILDG layout failed: .*SU\\(3\\) 32-bit on 4096 sites = 8\\^4: NaN or "
                                                "infinite numbers.* only SU\\(3\\) 64-bit gives valid links, and its "
                                                "2048 sites form no hypercubic lattice .*pass lattice=\\(Lt, Lx, Ly, "
                                                "Lz\\) with 2048 sites \\(--lattice on the command line\\), e.g. "
                                                "\\(4, 8, 8, 8\\) for 8\\^3 x 4"):
            load(p, **kw)
    U, meta = load(p, lattice=(4, 8, 8, 8))
    assert meta.group == "SU(3)" and meta.precision == "double"
    assert_close(meta.plaquette, 0.5038664469, rtol=0, atol=1e-9)
    # a wrong stated lattice leaves one reading (32-bit): its NaN error says which layout was assumed
    with pytest.raises(IOFormatError, match="binary data contain NaN or infinite numbers \\[layout inferred, not "
                                            "stated: .*lattice \\(8, 8, 8, 8\\), SU\\(3\\), 32-bit"):
        load(p, lattice=(8, 8, 8, 8))


def test_the_data_pick_the_reading_among_those_that_fit(tmp_path: Path) -> None:
    """16 sites of SU(3) 64-bit links also split into whole SU(2) and 32-bit sites: the valid reading wins."""
    U = _field(3)
    p = _binary_only(tmp_path / "b.ildg", library_to_file(U).astype(">c16").tobytes())
    V, meta = load(p)
    assert np.array_equal(V, U) and meta.lattice == LAT and meta.precision == "double"
    assert "only consistent reading: of the 4 readings that fit the size, the only one with finite, unitary links" \
        in meta.inferred


def test_no_valid_reading_lists_the_readings(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = _binary_only(tmp_path / "r.ildg", rng.standard_normal(16 * 576 // 8).astype(">f8").tobytes())
    with pytest.raises(IOFormatError, match="no valid readings among the 4 consistent readings of the 9216-byte "
                                            "payload \\(caller stated nothing\\): SU\\(2\\) 64-bit on 36 sites: not "
                                            "unitary .*none gives finite, unitary links.*pass lattice= and group="):
        load(p, verify=False)


def test_data_errors_of_an_inferred_layout_name_it(tmp_path: Path) -> None:
    """With the lattice stated, the size alone fixes group and precision; a failed check then names them."""
    F = library_to_file(_field(3)) * 1.001
    p = _binary_only(tmp_path / "n.ildg", F.astype(">c16").tobytes())
    with pytest.raises(IOFormatError, match="unitarity.*failed: .* \\[layout inferred, not stated: no ildg-format "
                                            "record: lattice \\(2, 2, 2, 2\\), SU\\(3\\), 64-bit"):
        load(p, lattice=LAT)
    report = info_command(p, lattice=LAT)
    assert not report.ok and "[layout inferred, not stated:" in report.verdict
    _, meta = load(p, lattice=LAT, verify=False)  # verify=False still reads it
    assert meta.inferred and meta.checks == []


# -- finding 5: a message left open ----------------------------------------------------------------

def test_truncated_lime_message_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.lime"
    save(p, _field(3), "SU3", format="ildg")
    binrec = next(r for r in read_lime(p) if r.type == "ildg-binary-data")
    q = tmp_path / "cut.lime"
    q.write_bytes(p.read_bytes()[:binrec.offset + len(binrec.data)])  # scidac-checksum and the lfn are lost
    msg = ("LIME message failed: the message begun by record 1 \\('ildg-format'\\) at byte \\d+ never ends: the file "
           "ends after record 2 \\('ildg-binary-data'\\) without a record with the message-end flag \\(truncated\\?\\)")
    for verify in (True, False):
        with pytest.raises(IOFormatError, match=msg):
            load(q, verify=verify)
    with pytest.raises(IOFormatError, match=msg):
        info_command(q)
    with pytest.raises(IOFormatError, match=msg):
        read_lime(q)


def test_message_that_begins_before_the_last_ended_is_refused(tmp_path: Path) -> None:
    chunks = list(lime_bytes([[("a", b"1"), ("b", b"2")], [("c", b"3")]]))
    chunks[1] = chunks[1][:6] + b"\x00\x00" + chunks[1][8:]  # 'b' loses its ME flag: 'c' begins a message early
    p = tmp_path / "x.lime"
    p.write_bytes(b"".join(chunks))
    with pytest.raises(IOFormatError, match="record 2 \\('c'\\) at byte \\d+ begins a message while the message "
                                            "begun by record 0 \\('a'\\) has not ended"):
        read_lime(p)


@needs_configs
def test_real_lime_files_close_their_messages() -> None:
    for name in ("ildg.l8t4b3360", "unity.lime", "su3_8x8x8x8.ildg"):
        assert read_lime(CONFIGS / name)[-1].me


# -- finding 7: a lattice of the wrong dimension is the caller's error ------------------------------

def test_lattice_of_the_wrong_dimension_is_a_value_error_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "c.lime"
    save(p, _field(3), "SU3", format="ildg")
    msg = "lattice=\\(2, 2, 2\\) \\(--lattice on the command line\\): ILDG files hold 4D lattices"
    with pytest.raises(ValueError, match=msg) as ei:
        load(p, lattice=(2, 2, 2))
    assert not isinstance(ei.value, IOFormatError)
    with pytest.raises(ValueError, match=msg):
        read_ildg(tmp_path / "missing.lime", lattice=(2, 2, 2))  # refused before the file is opened
    with pytest.raises(ValueError, match="NERSC files hold 4D lattices"):
        read_nersc(tmp_path / "missing.nersc", lattice=(2, 2, 2, 2, 2))
    with pytest.raises(ConfigError, match=msg):
        info_command(p, lattice=(2, 2, 2))
    with pytest.raises(ConfigError, match=msg):
        convert_command(p, tmp_path / "out.nersc", "nersc", lattice=(2, 2, 2))
    assert not (tmp_path / "out.nersc").exists()


def test_a_group_the_format_never_holds_is_a_value_error_before_reading(tmp_path: Path) -> None:
    """group=U1 for an ILDG file (or SU(4) for NERSC, SU(2) for openQCD) was reported as a damaged file
    ('group failed'); no file of the format can hold it, so it is the caller's error, before the file is opened."""
    missing = tmp_path / "missing"
    for reader, group, msg in ((read_ildg, "U1", "ILDG files hold SU\\(N\\) links"),
                               (read_nersc, "SU4", "NERSC files hold SU\\(2\\) or SU\\(3\\) links"),
                               (None, "SU2", "openQCD files hold SU\\(3\\) links")):
        with pytest.raises(ValueError, match=f"^group=.* \\(--group on the command line\\): {msg}$") as ei:
            if reader is None:
                load(missing, format="openqcd", group=group)
            else:
                load(missing, format=reader.__name__.split("_")[1], group=group)
        assert not isinstance(ei.value, IOFormatError)
    p = tmp_path / "c.lime"
    save(p, _field(4), "SU4", format="ildg")            # any SU(N) is an ILDG field (su4gauge)
    assert load(p, group="SU4")[1].group == "SU(4)"


@needs_configs
def test_cli_lattice_of_the_wrong_dimension_exits_2(capsys: pytest.CaptureFixture) -> None:
    from latticekit.app.cli import main

    assert main(["info", str(CONFIGS / "su3_8x8x8x8.ildg"), "--lattice", "8,8,8"]) == 2
    err = capsys.readouterr().err
    assert "lattice=(8, 8, 8) (--lattice on the command line): ILDG files hold 4D lattices" in err
    assert "malformed" not in err and "Traceback" not in err


# -- finding 9: an empty target path ----------------------------------------------------------------

@pytest.mark.parametrize("dst", ["", "  "])
def test_convert_refuses_an_empty_target_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        dst: str) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    src = tmp_path / "damaged.nersc"
    save(src, _field(3), "SU3", format="nersc")
    src.write_bytes(src.read_bytes()[:-8])  # reading it would fail: the refusal must come first
    with pytest.raises(ConfigError, match=f"dst: {dst!r} is not a file path"):
        convert_command(src, dst, "nersc")
    assert sorted(os.listdir(tmp_path)) == ["damaged.nersc", "sub"] and os.listdir(sub) == []


def test_atomic_write_refuses_paths_that_name_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    for path in ("", " "):
        with pytest.raises(ValueError, match=f"path={path!r}: expected a file path to write"):
            atomic_write(path, b"x")
    with pytest.raises(IsADirectoryError, match="ends with a path separator"):
        atomic_write("new/", b"x")
    with pytest.raises(ValueError, match="path=''"):
        save("", _field(3), "SU3", format="nersc")
    assert os.listdir(tmp_path) == ["sub"] and os.listdir(sub) == []


# -- finding 10: info's one-line rules ---------------------------------------------------------------

def test_info_names_one_index_for_an_ensemble(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    save(p, lk.SU(3).random(backends.rng(0), (3, 4), LAT), "SU3", format="hdf5")
    report = info_command(p)
    fmt = next(ln for ln in report.splitlines() if ln.startswith("format:"))
    assert fmt.endswith("showing configuration 3 of 3 (index 2))") and "(index 2)" in report.verdict


def test_info_prints_a_multi_line_source_header_entry_on_one_line(tmp_path: Path) -> None:
    src = tmp_path / "c.lime"
    save(src, _field(3), "SU3", format="ildg", meta={"trajectory nr": 7})
    convert_command(src, tmp_path / "c.h5", "hdf5")
    lines = info_command(tmp_path / "c.h5").splitlines()
    entry = [ln for ln in lines if ln.startswith("  header    xlf-info = ")]
    assert len(entry) == 1 and entry[0].endswith("; creator = latticekit; trajectory nr = 7")
    assert entry[0].startswith("  header    xlf-info = plaquette = ") and "; link_trace = " in entry[0]
    assert all(ln.startswith(("  header", "source:", "metadata:")) or ":" in ln[:12] for ln in lines)
