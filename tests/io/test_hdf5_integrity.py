"""HDF5 ensembles detect damage: checksummed metadata, per-configuration CRC32, U(1) data checks,
bounded reads of unchecksummed (format version 1) files, and only IOFormatError for any damaged file.

Files of format version 1 are the committed ones in tests/data/io (made by make_v1_ensembles.py with
the writer of that version); what the reader returns is compared with plain h5py reads of them.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.app.io_commands import info_command
from latticekit.io import Ensemble, IOFormatError, load, save

h5py = pytest.importorskip("h5py")

DATA = Path(__file__).resolve().parents[1] / "data" / "io"
V1_U1, V1_SU2 = DATA / "v1_u1.h5", DATA / "v1_su2.h5"
LAT2 = (4, 4)


def _u1(seed: int) -> np.ndarray:
    return lk.U1.random(backends.rng(seed), (2,), LAT2)


def _make(path: Path, n: int = 3) -> list[np.ndarray]:
    fields = [_u1(k) for k in range(n)]
    with Ensemble.create(path, lattice=LAT2, group=lk.U1, action="wilson", action_params={"beta": 2.5},
                         sampler="hmc") as ens:
        for k, U in enumerate(fields):
            ens.append(U, observables={"plaq": 0.5 + k}, info={"traj": k})
    return fields


def _chunk(path: Path, name: str, coord: tuple[int, ...]) -> tuple[int, int]:
    """(byte offset, size) of one chunk of dataset ``name`` in the file."""
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info_by_coord(coord)
    return info.byte_offset, info.size


def _flip(path: Path, byte: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[byte] ^= 1 << bit
    path.write_bytes(bytes(data))


def _copy(src: Path, tmp_path: Path, name: str = "copy.h5") -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


# -- item 1: what version 2 writes ---------------------------------------------------------------

def test_version_2_layout_is_checksummed(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    fields = _make(p)
    raw = p.read_bytes()
    assert raw[8] == 2  # superblock version 2: checksummed, no status-flag lockout of readers
    assert b"GCOL" not in raw  # nothing in the unchecksummed global heap
    with h5py.File(p, "r") as f:
        assert int(f.attrs["format_version"]) == 2
        for k in ("latticekit_format", "group", "precision", "action", "action_params", "metadata"):
            assert h5py.check_string_dtype(f.attrs.get_id(k).dtype).length is not None  # fixed length
        for name in ("slots", "info_json", "observables/plaq"):
            assert f[name].fletcher32
        slots = f["slots"][:]
        info = f["info_json"][:].tobytes()
    # the documented definition: CRC32 of the little-endian bytes, seeded with tag + slot index
    for j, U in enumerate(fields):
        seed = zlib.crc32(b"config" + struct.pack("<Q", j))
        assert slots[j]["config_crc32"] == zlib.crc32(U.astype("<f8").tobytes(), seed)
        text = info[slots[j]["info_offset"]:slots[j]["info_offset"] + slots[j]["info_length"]]
        assert text == f'{{"traj": {j}}}'.encode()
        assert slots[j]["info_crc32"] == zlib.crc32(text, zlib.crc32(b"info" + struct.pack("<Q", j)))
    with Ensemble.open(p) as ens:
        assert ens.format_version == 2 and ens.checksummed


def test_swapped_configurations_are_detected(tmp_path: Path) -> None:
    # a damaged chunk index hands configuration 1's chunk to slot 0: same effect as swapping the bytes
    p = tmp_path / "e.h5"
    fields = _make(p)
    (a, n), (b, _) = _chunk(p, "configs", (0, 0, 0, 0)), _chunk(p, "configs", (1, 0, 0, 0))
    data = bytearray(p.read_bytes())
    data[a:a + n], data[b:b + n] = data[b:b + n], data[a:a + n]
    p.write_bytes(bytes(data))
    for i in (0, 1):
        with pytest.raises(IOFormatError, match=f"configuration {i} CRC32 failed"):
            load(p, index=i)
    V, meta = load(p, index=2)  # the undamaged configuration still reads, verified
    assert np.array_equal(V, fields[2]) and meta.checks_ok
    with Ensemble.open(p) as ens:
        with pytest.raises(IOFormatError, match="CRC32"):
            ens[0]
        assert np.array_equal(ens.read(0, verify=False), fields[1])  # the explicit opt-out reads it


@pytest.mark.parametrize("bit", [0, 17, 51, 52, 62, 63])  # mantissa, lowest/highest exponent, sign
def test_u1_payload_flips_are_detected(tmp_path: Path, bit: int) -> None:
    p = tmp_path / "e.h5"
    _make(p)
    off, _ = _chunk(p, "configs", (2, 0, 0, 0))
    _flip(p, off + 8 * 5 + bit // 8, bit % 8)  # angle 5 of configuration 2 (little-endian float64)
    with pytest.raises(IOFormatError, match="configuration 2 CRC32 failed"):
        load(p)
    try:  # the report names the checksum (numbers that are not finite cannot be reported on)
        report = info_command(p)
    except IOFormatError as exc:
        assert "configuration 2 CRC32 failed" in str(exc) and bit == 62
    else:
        assert not report.ok and report.verdict.startswith("MISMATCH: HDF5 configuration 2 CRC32")


def test_version_2_metadata_flip_is_detected(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    _make(p)
    data = p.read_bytes()
    i = data.index(b'{"beta": 2.5}')  # the action_params attribute, inside a checksummed header
    _flip(p, i + 11, 0)  # 2.5 -> 2.4
    with pytest.raises(IOFormatError, match="checksum"):
        load(p)
    with pytest.raises(IOFormatError, match="checksum"):
        Ensemble.open(p, "a")


def test_observables_and_info_tampering_is_detected(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    _make(p)
    with h5py.File(p, "r+") as f:  # HDF5 recomputes Fletcher-32, so only latticekit's CRC32 can notice
        f["observables/plaq"][1] = 0.25
    with Ensemble.open(p) as ens:
        with pytest.raises(IOFormatError, match="observables CRC32 failed: 1 differ, first configuration 1"):
            ens.observables()
        with pytest.raises(IOFormatError, match="observables CRC32"):
            ens.observable("plaq")
    with pytest.raises(IOFormatError, match="observables CRC32"):
        load(p)
    q = tmp_path / "i.h5"
    _make(q)
    with h5py.File(q, "r+") as f:
        f["info_json"][9] = ord("7")  # {"traj": 0} -> {"traj": 7}
        row = f["slots"][2]
        row["info_length"] = 1 << 40
        f["slots"][2] = row
    with Ensemble.open(q) as ens:
        with pytest.raises(IOFormatError, match="info of configuration 0"):
            ens.info(0)
        assert ens.info(1) == {"traj": 1}
        with pytest.raises(IOFormatError, match="slot 2 places its info at bytes"):
            ens.info(2)  # refused before anything is allocated


def test_zeroed_slot_fails_every_checksum(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    _make(p)
    with h5py.File(p, "r+") as f:
        f["slots"][0] = np.zeros((), f["slots"].dtype)  # what a lost chunk of the slot table reads as
    with Ensemble.open(p) as ens:
        with pytest.raises(IOFormatError, match="CRC32"):
            ens[0]
        with pytest.raises(IOFormatError, match="CRC32"):
            ens.info(0)  # crc32 of no bytes is 0, but the seed binds it to slot 0


# -- item 1: U(1) data of files without checksums -------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_version_1_nonfinite_angles_are_refused(tmp_path: Path, bad: float) -> None:
    p = _copy(V1_U1, tmp_path)
    with h5py.File(p, "r+") as f:
        f["configs"][2, 1, 0, 3] = bad
    with pytest.raises(IOFormatError, match="configuration 2 contains NaN or infinite"):
        load(p)
    with pytest.raises(IOFormatError) as ei:
        info_command(p)
    assert "\n" not in str(ei.value)
    V, meta = load(p, index=1)  # the other configurations still read
    assert meta.checks_ok


def test_version_1_huge_angles_fail_a_check(tmp_path: Path) -> None:
    p = _copy(V1_U1, tmp_path)
    with h5py.File(p, "r+") as f:
        f["configs"][2, 0, 0, 0] = 2.0 ** 60  # what a flipped high exponent bit makes of an angle
    with pytest.raises(IOFormatError, match="U\\(1\\) angles"):
        load(p)
    report = info_command(p)
    assert not report.ok and "angles" in report.verdict


@pytest.mark.parametrize("dtype,precision", [("<i4", "double"), ("<f4", "double"), ("<f8", "single")])
def test_dtype_must_match_the_precision_attribute(tmp_path: Path, dtype: str, precision: str) -> None:
    p = _copy(V1_U1, tmp_path)
    with h5py.File(p, "r+") as f:
        data = f["configs"][:]
        del f["configs"]
        f.create_dataset("configs", data=data.astype(dtype), maxshape=(None,) + data.shape[1:],
                         chunks=(1,) + data.shape[1:])
        f.attrs["precision"] = precision
    with pytest.raises(IOFormatError, match="dtype"):
        load(p)


def test_big_endian_angles_are_returned_in_native_order(tmp_path: Path) -> None:
    p = _copy(V1_U1, tmp_path)
    with h5py.File(p, "r+") as f:
        data = f["configs"][:]
        del f["configs"]
        f.create_dataset("configs", data=data.astype(">f8"), maxshape=(None,) + data.shape[1:],
                         chunks=(1,) + data.shape[1:])
    V, meta = load(p, index=1)
    assert V.dtype == np.float64 and V.dtype.isnative and np.array_equal(V, data[1]) and meta.checks_ok


# -- older files keep loading --------------------------------------------------------------------

@pytest.mark.parametrize("path", [V1_U1, V1_SU2])
def test_version_1_files_still_load(path: Path) -> None:
    with h5py.File(path, "r") as f:  # the reference: plain h5py
        want = f["configs"][:int(f.attrs["n_committed"])]
        want_info = [s.decode() for s in f["info"][:len(want)]]
        want_obs = {k: f["observables"][k][:len(want)] for k in f["observables"]}
        assert int(f.attrs["format_version"]) == 1
    with Ensemble.open(path) as ens:
        assert ens.format_version == 1 and not ens.checksummed and len(ens) == len(want)
        for j in range(len(want)):
            assert np.array_equal(ens[j], want[j])
            assert ens.info(j) == eval(want_info[j])  # {"traj": j}
        for k, v in ens.observables().items():
            np.testing.assert_array_equal(v, want_obs[k])
        assert ens.action == "wilson" and isinstance(ens.action_params["beta"], float)
    U, meta = load(path)
    assert np.array_equal(U, want[-1]) and meta.checks_ok
    assert any("format_version 1" in a for a in meta.absent) and not meta.checksummed
    with pytest.raises(IOFormatError, match="no checksum covers the payload"):
        load(path, verify="require")
    out = info_command(path)
    assert "absent:     HDF5 checksums" in out and out.ok


def test_version_1_file_accepts_appends(tmp_path: Path) -> None:
    p = _copy(V1_U1, tmp_path)
    with h5py.File(p, "r") as f:
        old = f["configs"][:3]
    extra = _u1(99)
    with Ensemble.open(p, "a") as ens:  # how `latticekit run` resumes
        assert ens.append(extra, observables={"plaq": 9.0, "new": 1.0}, info={"traj": 3}) == 3
    with Ensemble.open(p) as ens:
        assert ens.format_version == 1 and len(ens) == 4
        assert all(np.array_equal(ens[j], old[j]) for j in range(3)) and np.array_equal(ens[3], extra)
        assert ens.info(3) == {"traj": 3} and ens.observable("plaq")[3] == 9.0
        assert np.isnan(ens.observable("new")[:3]).all()
    with Ensemble.open(p, "a") as ens:
        assert ens.extend(np.stack([_u1(7), _u1(8)]), observables={"plaq": [1.0, 2.0]},
                          infos=[{"traj": 4}, {"traj": 5}]) == range(4, 6)
    with Ensemble.open(p) as ens:
        assert ens.format_version == 1 and len(ens) == 6 and np.array_equal(ens[5], _u1(8))
        assert [ens.info(j) for j in (3, 4, 5)] == [{"traj": 3}, {"traj": 4}, {"traj": 5}]
        assert ens.observable("plaq")[3:].tolist() == [9.0, 1.0, 2.0] and np.isnan(ens.observable("new")[4:]).all()


# -- item 2: reads of unchecksummed metadata are bounded ------------------------------------------

def _heap_hang_file(tmp_path: Path) -> Path:
    """Version-1 file with one flipped bit in the size of its global heap collection (4096 -> 12288)."""
    p = _copy(V1_U1, tmp_path, "hang.h5")
    data = bytearray(p.read_bytes())
    i = data.index(b"GCOL")
    assert int.from_bytes(data[i + 8:i + 16], "little") == 4096
    data[i + 9] ^= 0x20
    p.write_bytes(bytes(data))
    return p


def test_heap_flip_that_hangs_hdf5_is_bounded(tmp_path: Path) -> None:
    # Reading this file's first string attribute in-process loops forever inside the HDF5 library
    # (100% CPU, Ctrl-C ignored). Run the reads in a child so a regression fails instead of hanging.
    p = _heap_hang_file(tmp_path)
    script = textwrap.dedent(f"""
        from latticekit.app.io_commands import info_command
        from latticekit.io import Ensemble, IOFormatError, load
        for call in (lambda: load({str(p)!r}), lambda: Ensemble.open({str(p)!r}, "a"),
                     lambda: info_command({str(p)!r})):
            try:
                call()
            except IOFormatError as exc:
                print("IOFormatError:", exc)
    """)
    env = dict(os.environ, LATTICEKIT_HDF5_PROBE_TIMEOUT="2")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=150, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and all("did not finish reading the metadata within 2 s" in ln for ln in lines), r.stdout
    assert time.monotonic() - t0 < 150


def test_version_2_files_are_read_without_a_subprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from latticekit.io import _hdf5_probe

    calls = []

    def no_run(*a, **k):
        calls.append(a)
        raise AssertionError("version-2 files must not need the metadata probe")

    p = tmp_path / "e.h5"
    _make(p)
    monkeypatch.setattr(_hdf5_probe.subprocess, "run", no_run)
    load(p)
    with Ensemble.open(p, "a") as ens:
        ens.append(_u1(5))
    assert calls == []
    q = _copy(V1_U1, tmp_path)
    with pytest.raises(AssertionError):  # a version-1 file does go through it
        load(q)


# -- item 3: damaged structures raise IOFormatError, in one line ----------------------------------

def _replace_with_group(f, name):
    del f[name]
    f.create_group(name)


def _replace_with_dataset(f, name):
    del f[name]
    f[name] = np.arange(3.0)


TAMPER = {
    "configs is a group": lambda f: _replace_with_group(f, "configs"),
    "observables is a dataset": lambda f: _replace_with_dataset(f, "observables"),
    "observable is a group": lambda f: f["observables"].create_group("x"),
    "no configs": lambda f: f.__delitem__("configs"),
    "lattice is text": lambda f: f.attrs.__setitem__("lattice", "4x4"),
    "lattice too long": lambda f: f.attrs.__setitem__("lattice", np.arange(1, 12)),
    "group unknown": lambda f: f.attrs.__setitem__("group", "SU(1)"),
    "n_committed beyond the data": lambda f: f.attrs.__setitem__("n_committed", 7),
    "n_committed negative": lambda f: f.attrs.__setitem__("n_committed", -1),
    "n_committed text": lambda f: f.attrs.__setitem__("n_committed", "3"),
    "format_version unknown": lambda f: f.attrs.__setitem__("format_version", 99),
    "not an ensemble": lambda f: f.attrs.__delitem__("latticekit_format"),
    "params not JSON": lambda f: f.attrs.__setitem__("action_params", "{beta"),
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("what", sorted(TAMPER))
def test_damaged_structures_raise_only_ioformaterror(tmp_path: Path, version: int, what: str) -> None:
    if version == 1:
        p = _copy(V1_U1, tmp_path)
    else:
        p = tmp_path / "e.h5"
        _make(p)
    with h5py.File(p, "r+") as f:
        TAMPER[what](f)
    with pytest.raises(IOFormatError) as ei:
        load(p)
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(IOFormatError):
        info_command(p)
    with pytest.raises(IOFormatError):
        Ensemble.open(p, "a")


def test_damaged_chunk_index_of_version_1_file(tmp_path: Path) -> None:
    p = _copy(V1_U1, tmp_path)
    data = bytearray(p.read_bytes())
    hits = [i for i in range(len(data)) if data.startswith(b"TREE", i)]
    assert hits
    for i in hits:  # every v1 B-tree node: signature damaged
        q = tmp_path / f"t{i}.h5"
        d = bytearray(data)
        d[i + 1] ^= 0x01
        q.write_bytes(bytes(d))
        with pytest.raises(IOFormatError):
            load(q)


def test_flipped_string_length_costs_no_allocation_here(tmp_path: Path) -> None:
    # a flipped bit in the length of a variable-length string makes HDF5 allocate ~1 GiB before it
    # fails; with the address space limited that surfaced as an OSError of h5py
    p = _copy(V1_U1, tmp_path)
    off, _ = _chunk(p, "info", (0,))
    _flip(p, off + 3, 6)
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (800 << 20, 800 << 20))
        from latticekit.io import Ensemble, IOFormatError
        try:
            with Ensemble.open({str(p)!r}) as ens:
                ens.info(0)
        except IOFormatError as exc:
            print("IOFormatError:", exc)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=150)
    assert r.returncode == 0 and r.stdout.startswith("IOFormatError:"), (r.stdout, r.stderr[-2000:])


def test_index_out_of_range_is_ioformaterror(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    _make(p)
    with pytest.raises(IOFormatError, match="index 3 out of range: the ensemble holds 3"):
        load(p, index=3)
    with pytest.raises(IOFormatError, match="index -4 out of range"):
        load(p, index=-4)
    with Ensemble.open(p) as ens:  # Python indexing of the object itself keeps IndexError
        with pytest.raises(IndexError):
            ens[3]


# -- item 5: truncated files and trailing data -----------------------------------------------------

def test_trailing_data_and_truncation(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    fields = _make(p)
    data = p.read_bytes()
    q = tmp_path / "t.h5"
    q.write_bytes(data + b"\0" * 8)
    with pytest.raises(IOFormatError, match="8 bytes of trailing data"):
        load(q)
    q.write_bytes(data[:-1])
    with pytest.raises(IOFormatError, match="truncated by 1"):
        load(q)
    save(tmp_path / "s.h5", _u1(0), "U1", format="hdf5")
    # a writer killed after allocating space leaves bytes past the flushed end: still readable
    script = textwrap.dedent(f"""
        import os, numpy as np
        from latticekit.io import Ensemble
        from latticekit.io._hdf5_write import write_slots
        ens = Ensemble.open({str(p)!r}, "a")
        write_slots(ens, 3, np.full((1, 2, 4, 4), 0.25), {{"plaq": np.array([-1.0])}}, [b"{{}}"])
        os._exit(1)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    with Ensemble.open(p) as ens:
        assert len(ens) == 3 and all(np.array_equal(ens[j], fields[j]) for j in range(3))
