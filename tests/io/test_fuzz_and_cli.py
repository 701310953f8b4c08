"""Garbage and mutated files only ever raise IOFormatError; the info/convert command functions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import latticekit as lk
from latticekit import backends
from latticekit.app.io_commands import convert_command, info_command
from latticekit.io import IOFormatError, load, save

LAT = (2, 2, 2, 2)
_U = lk.SU(3).random(backends.rng(11), (4,), LAT)
_FILES: dict[str, bytes] = {}
with tempfile.TemporaryDirectory(prefix="lk-io-fuzz-") as _dir:  # the bytes are kept; the folder is removed
    for _fmt in ("nersc", "ildg", "openqcd", "hdf5"):
        _p = os.path.join(_dir, "orig." + _fmt)
        save(_p, _U, "SU3", format=_fmt)
        _FILES[_fmt] = Path(_p).read_bytes()
_HEADER_LEN = {"nersc": _FILES["nersc"].index(b"END_HEADER") + 11, "ildg": 600, "openqcd": 24, "hdf5": 800}
FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _try_load(data: bytes, **kw) -> None:
    fd, path = tempfile.mkstemp(prefix="lk-io-fuzz-")  # removed below, whatever load does
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        U, meta = load(path, **kw)
    except IOFormatError as exc:
        assert path in str(exc)
    else:  # a mutation that still reads must give a valid field of the stated shape
        assert U.ndim >= 5 and meta.checks_ok
    finally:
        os.unlink(path)


@FUZZ
@given(st.binary(min_size=0, max_size=3000))
def test_garbage_bytes_raise_only_ioformaterror(data: bytes) -> None:
    _try_load(data)


@FUZZ
@given(st.sampled_from(["nersc", "ildg", "openqcd"]), st.binary(min_size=0, max_size=600))
def test_garbage_with_a_valid_prefix(fmt: str, tail: bytes) -> None:
    _try_load(_FILES[fmt][:_HEADER_LEN[fmt] // 2] + tail)


@FUZZ
@given(st.sampled_from(["nersc", "ildg", "openqcd", "hdf5"]), st.data())
def test_mutated_headers_raise_only_ioformaterror(fmt: str, data: st.DataObject) -> None:
    raw = bytearray(_FILES[fmt])
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        i = data.draw(st.integers(0, min(_HEADER_LEN[fmt], len(raw)) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    _try_load(bytes(raw), format=data.draw(st.sampled_from([None, fmt])))


def test_info_reports_mismatch_instead_of_raising(tmp_path: Path) -> None:
    p = tmp_path / "c.nersc"
    save(p, _U, "SU3", format="nersc")
    out = info_command(p)
    for line in ("format:     nersc", "lattice:    2x2x2x2", "group:      SU(3)", "precision:  double (big-endian)",
                 "NERSC CHECKSUM: ok", "verdict:    all checks ok", "plaquette:  "):
        assert line in out
    data = bytearray(p.read_bytes())
    data[-3] ^= 0x01
    p.write_bytes(bytes(data))
    out = info_command(p)
    assert "NERSC CHECKSUM: MISMATCH" in out and "verdict:    MISMATCH" in out
    assert "not verified" in info_command(p, verify=False)
    with pytest.raises(IOFormatError):
        load(p)


def test_info_on_openqcd_and_hdf5(tmp_path: Path) -> None:
    p = tmp_path / "c.oqcd"
    save(p, _U, "SU3", format="openqcd")
    out = info_command(p)
    assert "openqcd" in out and "plaq/3" in out
    h = tmp_path / "u1.h5"
    save(h, lk.U1.random(backends.rng(0), (2,), (4, 4)), "U1", format="hdf5", meta={"action": "wilson"})
    out = info_command(h)
    assert "U(1)" in out and "action:     wilson" in out and "plaquette:  " in out


@pytest.mark.parametrize("to", ["nersc", "ildg", "openqcd", "hdf5"])
@pytest.mark.parametrize("src_fmt", ["nersc", "ildg", "openqcd", "hdf5"])
def test_convert_reads_back_identically(tmp_path: Path, src_fmt: str, to: str) -> None:
    src = tmp_path / f"src.{src_fmt}"
    src.write_bytes(_FILES[src_fmt])
    dst = tmp_path / f"dst.{to}"
    out = convert_command(src, dst, to)
    assert "identical link by link (max |dU| = 0)" in out
    A, _ = load(src)
    B, meta = load(dst)
    assert meta.format == to and np.array_equal(A, B)


def test_convert_single_precision_and_refusal(tmp_path: Path) -> None:
    src = tmp_path / "s.nersc"
    save(src, _U, "SU3", format="nersc", precision="single", endian="little")
    out = convert_command(src, tmp_path / "s.lime", "ildg")
    assert "identical" in out
    _, meta = load(tmp_path / "s.lime")
    assert meta.precision == "single"
    convert_command(src, tmp_path / "s2.nersc", "nersc")
    assert load(tmp_path / "s2.nersc")[1].endianness == "little"
    u1 = tmp_path / "u1.h5"
    save(u1, lk.U1.random(backends.rng(0), (4,), LAT), "U1", format="hdf5")
    with pytest.raises(IOFormatError, match="conversion to nersc failed: .*--to hdf5"):
        convert_command(u1, tmp_path / "u1.nersc", "nersc")
    assert not (tmp_path / "u1.nersc").exists()
    with pytest.raises(ValueError, match="to="):
        convert_command(src, tmp_path / "x", "png")


def test_convert_single_precision_to_openqcd_projects(tmp_path: Path) -> None:
    """openQCD holds double precision: single-precision links are promoted and projected onto SU(3); a field the
    format cannot hold is a one-line error of the command, and nothing is written."""
    from latticekit.app.cli import main

    src = tmp_path / "s.nersc"
    save(src, _U, "SU3", format="nersc", precision="single")
    S, _ = load(src)
    # single precision: unitary only to ~1e-7, which the openQCD writer (tolerance 1e-9) refuses as it stands
    assert float(np.max(lk.SU(3).defect(S.astype(np.complex128), nd=4))) > 1e-8
    out = convert_command(src, tmp_path / "s.oqcd", "openqcd")
    assert "projected onto SU(3)" in out and "identical link by link" in out
    B, meta = load(tmp_path / "s.oqcd")
    assert meta.precision == "double" and meta.checks_ok
    assert float(np.max(lk.SU(3).defect(B, nd=4))) < 1e-13
    # the projection moves each entry by about the single-precision rounding, no more
    assert 0 < float(np.max(np.abs(B - S))) < 1e-6
    su2 = tmp_path / "su2.nersc"
    save(su2, lk.SU(2).random(backends.rng(1), (4,), LAT), "SU2", format="nersc")
    assert main(["convert", str(su2), str(tmp_path / "su2.oqcd"), "--to", "openqcd"]) == 1
    assert not (tmp_path / "su2.oqcd").exists()
