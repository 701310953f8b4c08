"""Round trips for every format, precision and byte order; corruption, truncation and refusals."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.io import (
    IOFormatError,
    load,
    nersc_checksum,
    read_lime,
    save,
    sniff_format,
    write_lime,
    write_nersc,
)
from latticekit.io._common import atomic_write
from latticekit.testing import assert_close

LAT = (4, 2, 2, 2)  # (Lt, Lx, Ly, Lz), all even for openQCD


def _field(N: int = 3, seed: int = 0, lat: tuple[int, ...] = LAT) -> np.ndarray:
    return lk.SU(N).random(backends.rng(seed), (4,), lat)


CASES = [
    ("nersc", "double", "big"), ("nersc", "double", "little"),
    ("nersc", "single", "big"), ("nersc", "single", "little"),
    ("ildg", "double", "big"), ("ildg", "single", "big"),
    ("openqcd", "double", "little"),
    ("hdf5", "double", None), ("hdf5", "single", None),
]


@pytest.mark.parametrize("fmt,precision,endian", CASES)
def test_round_trip_su3(tmp_path: Path, fmt: str, precision: str, endian: str | None) -> None:
    U = _field()
    p = tmp_path / f"cfg.{fmt}"
    save(p, U, lk.SU(3), format=fmt, precision=precision, endian=endian)
    assert sniff_format(p) == fmt
    V, meta = load(p)
    assert meta.format == fmt and meta.lattice == LAT and meta.group == "SU(3)" and meta.precision == precision
    assert meta.checks_ok
    want = U if precision == "double" else U.astype(np.complex64)
    assert V.dtype == want.dtype and np.array_equal(V, want)  # exact, bit for bit
    if endian is not None:
        assert meta.endianness == endian
    assert not os.listdir(tmp_path) or all(not f.endswith(".tmp") for f in os.listdir(tmp_path))


def test_round_trip_on_every_backend(tmp_path: Path, bk) -> None:
    U = _field(seed=3)
    Ub = bk.asarray(U)
    for fmt in ("nersc", "ildg", "openqcd", "hdf5"):
        p = tmp_path / f"c.{fmt}"
        save(p, Ub, "SU3", format=fmt)
        V, _ = load(p, backend=bk.name, device=bk.device)
        assert backends.backend_name(V) == bk.name
        assert np.array_equal(bk.to_numpy(V), U)
        G = lk.SU(3)
        assert_close(G.defect(V, nd=4), 0.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("datatype,N", [("4D_SU3_GAUGE", 3), ("4D_SU3_GAUGE_3x3", 3), ("4D_SU2_GAUGE", 2),
                                        ("4D_SU2_GAUGE_2x2", 2)])
@pytest.mark.parametrize("precision", ["double", "single"])
def test_nersc_datatypes(tmp_path: Path, datatype: str, N: int, precision: str) -> None:
    U = _field(N, seed=1)
    p = tmp_path / "c.nersc"
    write_nersc(p, U, lk.SU(N), datatype=datatype, precision=precision, endian="little",
                meta={"ENSEMBLE_ID": "test", "SEQUENCE_NUMBER": 7})
    V, meta = load(p)
    assert meta.header["DATATYPE"] == datatype and meta.header["SEQUENCE_NUMBER"] == "7"
    assert meta.checks_ok
    tol = 1e-14 if precision == "double" else 3e-7
    assert_close(V, U, rtol=0, atol=tol)
    size = p.stat().st_size
    rows = int(datatype[-1]) if datatype.endswith(f"{N}x{N}") else N - 1
    assert size - (p.read_bytes().index(b"END_HEADER\n") + 11) == np.prod(LAT) * 4 * rows * N * (
        16 if precision == "double" else 8)


def test_nersc_header_is_standard_and_checksum_definition(tmp_path: Path) -> None:
    U = _field(seed=2)
    p = tmp_path / "c.nersc"
    save(p, U, "SU3", format="nersc", precision="single")
    data = p.read_bytes()
    head = data[:data.index(b"END_HEADER")].decode()
    for key in ("DATATYPE = 4D_SU3_GAUGE_3x3", "DIMENSION_1 = 2", "DIMENSION_4 = 4", "FLOATING_POINT = IEEE32BIG",
                "PLAQUETTE = ", "LINK_TRACE = ", "CHECKSUM = "):
        assert key in head
    payload = data[data.index(b"END_HEADER\n") + 11:]
    # the checksum: sum mod 2^32 of big-endian 32-bit words (one word per float32)
    want = int(np.frombuffer(payload, ">u4").astype(np.uint64).sum() % 2 ** 32)
    assert f"CHECKSUM = {want:08x}" in head and nersc_checksum(payload) == want
    _, meta = load(p)
    plaq = float(head.split("PLAQUETTE = ")[1].split()[0])
    assert_close(plaq, meta.plaquette, rtol=0, atol=1e-12)


def test_openqcd_plaquette_normalisation_and_layout(tmp_path: Path) -> None:
    # unit field: openQCD stores sum Re tr P / (6V) = 3
    p = tmp_path / "unit.oqcd"
    save(p, lk.SU(3).identity((4,), LAT), "SU3", format="openqcd")
    raw = p.read_bytes()
    assert struct.unpack("<4id", raw[:24]) == (4, 2, 2, 2, 3.0)
    # random field: stored plaq = 3 x latticekit's (1/3) Re tr P average
    U = _field(seed=5)
    save(p, U, "SU3", format="openqcd")
    _, meta = load(p)
    assert_close(meta.header["plaq"], 3 * meta.plaquette, rtol=0, atol=1e-14)
    # first odd point in lexicographic order is x = (0, 0, 0, 1): the first matrix is U_0(x)
    first = np.frombuffer(p.read_bytes(), "<c16", count=9, offset=24).reshape(3, 3)
    assert np.array_equal(first, U[0, :, :, 0, 0, 0, 1])
    second = np.frombuffer(p.read_bytes(), "<c16", count=9, offset=24 + 144).reshape(3, 3)
    assert np.array_equal(second, U[0, :, :, 3, 0, 0, 1])  # U(x - 0, 0): from t = -1 = 3


def test_library_to_file_order_of_written_bytes(tmp_path: Path) -> None:
    U = _field(seed=4)
    p = tmp_path / "c.lime"
    save(p, U, "SU3", format="ildg")
    rec = {r.type: r for r in read_lime(p)}
    F = np.frombuffer(rec["ildg-binary-data"].data, ">c16").reshape(4, 2, 2, 2, 4, 3, 3)  # (t, z, y, x, dir)
    t, x, y, z = 3, 1, 0, 1
    assert np.array_equal(F[t, z, y, x, 3], U[0, :, :, t, x, y, z])  # file t-link = library direction 0
    assert np.array_equal(F[t, z, y, x, 0], U[1, :, :, t, x, y, z])  # file x-link = library direction 1
    assert np.array_equal(F[t, z, y, x, 2], U[3, :, :, t, x, y, z])  # file z-link = library direction 3
    assert "<lx>2</lx>" in rec["ildg-format"].text and "<lt>4</lt>" in rec["ildg-format"].text


@pytest.mark.parametrize("fmt", ["nersc", "ildg", "openqcd", "hdf5"])
def test_truncated_files_are_detected(tmp_path: Path, fmt: str) -> None:
    p = tmp_path / "c"
    save(p, _field(), "SU3", format=fmt)
    data = p.read_bytes()
    for cut in (len(data) - 1, len(data) - 577, len(data) // 2, 30):
        q = tmp_path / f"cut{cut}"
        q.write_bytes(data[:cut])
        with pytest.raises(IOFormatError) as ei:
            load(q, format=fmt)
        assert str(q) in str(ei.value)


@pytest.mark.parametrize("fmt,check", [("nersc", "CHECKSUM"), ("ildg", "SciDAC checksum"),
                                       ("openqcd", "unitarity|plaquette")])
def test_flipped_bytes_are_detected(tmp_path: Path, fmt: str, check: str) -> None:
    p = tmp_path / "c"
    save(p, _field(), "SU3", format=fmt)
    data = bytearray(p.read_bytes())
    # flip a high-order byte of one double inside the payload (little-endian: the 8th byte of a double)
    pos = len(data) - 16 * 40 + (7 if fmt == "openqcd" else 0)
    data[pos] ^= 0x10
    q = tmp_path / "flipped"
    q.write_bytes(bytes(data))
    with pytest.raises(IOFormatError, match=check):
        load(q)
    V, meta = load(q, verify=False)  # the explicit opt-out reads it anyway
    assert V.shape == (4, 3, 3) + LAT and meta.checks == []


def test_flipped_lowest_bit_caught_by_checksum(tmp_path: Path) -> None:
    p = tmp_path / "c.nersc"
    save(p, _field(), "SU3", format="nersc")
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01  # last mantissa bit: invisible to unitarity/plaquette, visible to the checksum
    p.write_bytes(bytes(data))
    with pytest.raises(IOFormatError, match="NERSC CHECKSUM failed: stored"):
        load(p)


def test_header_value_mismatch_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "c.nersc"
    save(p, _field(), "SU3", format="nersc")
    data = p.read_bytes()
    i = data.index(b"PLAQUETTE = ") + len(b"PLAQUETTE = ")
    j = data.index(b"\n", i)
    p.write_bytes(data[:i] + b"0.123" + data[j:])
    with pytest.raises(IOFormatError, match="NERSC PLAQUETTE"):
        load(p)


def test_non_unitary_data_is_rejected(tmp_path: Path) -> None:
    U = _field() * 1.001
    with pytest.raises(ValueError, match="not in SU\\(3\\)"):
        save(tmp_path / "x", U, "SU3", format="nersc")
    # a file with non-unitary data but a matching checksum: caught by the unitarity check
    p = tmp_path / "bad.lime"
    F = np.ones((4, 2, 2, 2, 4, 3, 3), dtype=">c16")
    write_lime(p, [[("ildg-binary-data", F.tobytes())]])
    with pytest.raises(IOFormatError, match="unitarity"):
        load(p, lattice=LAT, group="SU3")


def test_ildg_binary_only_file_inference(tmp_path: Path) -> None:
    U = _field(2, seed=7, lat=(2, 2, 2, 2))
    from latticekit.io import library_to_file

    payload = library_to_file(U).astype(">c16").tobytes()
    p = tmp_path / "b.ildg"
    write_lime(p, [[("ildg-binary-data", payload)]])
    V, meta = load(p)
    assert np.array_equal(V, U) and meta.group == "SU(2)" and meta.inferred
    # a non-hypercubic lattice needs the caller's lattice (the data tell the group and precision)
    U2 = _field(3, seed=7)
    write_lime(p, [[("ildg-binary-data", library_to_file(U2).astype(">c16").tobytes())]])
    with pytest.raises(IOFormatError, match="only SU\\(3\\) 64-bit gives valid links, and its 32 sites form no "
                                            "hypercubic lattice .* pass lattice=\\(Lt, Lx, Ly, Lz\\) with 32 sites"):
        load(p)
    V2, meta2 = load(p, lattice=LAT)
    assert np.array_equal(V2, U2) and meta2.group == "SU(3)"


def test_refusals_name_the_argument(tmp_path: Path) -> None:
    theta = lk.U1.random(backends.rng(0), (4,), LAT)
    for fmt in ("nersc", "ildg", "openqcd"):
        with pytest.raises(ValueError, match="hdf5"):
            save(tmp_path / "u1", theta, lk.U1, format=fmt)
    with pytest.raises(ValueError, match="endian"):
        save(tmp_path / "x", _field(), "SU3", format="ildg", endian="little")
    with pytest.raises(ValueError, match="endian"):
        save(tmp_path / "x", _field(), "SU3", format="openqcd", endian="big")
    with pytest.raises(ValueError, match="precision"):
        save(tmp_path / "x", _field(), "SU3", format="openqcd", precision="single")
    with pytest.raises(ValueError, match="format"):
        save(tmp_path / "x", _field(), "SU3", format="jpeg")
    with pytest.raises(ValueError, match="even"):
        save(tmp_path / "x", _field(lat=(3, 2, 2, 2)), "SU3", format="openqcd")
    with pytest.raises(ValueError, match="shape"):
        save(tmp_path / "x", _field()[0], "SU3", format="nersc")
    # a 2D field: the message names the 4 lattice axes the format needs (it read "<lattice axes>", which fits)
    with pytest.raises(ValueError, match=r"\(2, 3, 3, 4, 4\); expected \(\*batch, 4, 3, 3, <4 lattice axes>\)"):
        save(tmp_path / "x", np.zeros((2, 3, 3, 4, 4), complex), "SU3", format="nersc")
    assert not (tmp_path / "x").exists()


def test_unrecognised_file(tmp_path: Path) -> None:
    p = tmp_path / "junk"
    p.write_bytes(b"hello world, this is not a gauge field")
    with pytest.raises(IOFormatError, match="format detection"):
        load(p)


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    p = tmp_path / "c.nersc"
    save(p, _field(), "SU3", format="nersc")
    before = p.read_bytes()

    def boom(f) -> None:
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["c.nersc"]


def test_dlpack_zero_copy_numpy_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    p = tmp_path / "c.lime"
    save(p, _field(), "SU3", format="ildg")
    U, _ = load(p, backend="numpy")
    t = torch.from_dlpack(U)
    assert t.data_ptr() == U.ctypes.data
    t[0, 0, 0, 0, 0, 0, 0] = 42.0
    assert U[0, 0, 0, 0, 0, 0, 0] == 42.0
    T, _ = load(p, backend="torch")
    a = np.from_dlpack(T)
    a[1, 1, 1, 1, 1, 1, 1] = -7.0
    assert complex(T[1, 1, 1, 1, 1, 1, 1]) == -7.0
