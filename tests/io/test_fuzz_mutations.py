"""Seeded mutations of valid files of every format (bit flips, byte writes, bursts, truncation, appended
bytes): a read either raises IOFormatError, on one line naming the file, or returns the original data
with every check passed; every single-bit flip of the payload of a checksummed format is caught.

openQCD files carry no checksum: a flipped low mantissa bit changes a link by less than the unitarity
tolerance and cannot be noticed, so for that format an accepted read must stay within that tolerance
of the original (docs/io.md states the limitation). The mutations are drawn from a fixed seed, so the
test is the same on every run; a faulthandler watchdog turns a hang inside a reader into a failure.
"""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.io import Ensemble, IOFormatError, load, read_lime, save
from latticekit.testing import assert_close

h5py = pytest.importorskip("h5py")

LAT = (2, 2, 2, 2)
N_MUTATIONS = 250  # per format; about a second each on an idle core
N_PAYLOAD_FLIPS = 80


def _originals(folder: Path) -> dict[str, dict]:
    """Valid files, the data they hold and the byte spans of their payload."""
    U = lk.SU(3).random(backends.rng(5), (4,), LAT)
    out = {}
    for fmt in ("nersc", "ildg", "openqcd"):
        p = folder / f"orig.{fmt}"
        save(p, U, "SU3", format=fmt)
        data = p.read_bytes()
        if fmt == "nersc":
            start = data.index(b"END_HEADER\n") + 11
            span = [(start, len(data))]
        elif fmt == "ildg":
            rec = {r.type: r for r in read_lime(p)}["ildg-binary-data"]
            span = [(rec.offset, rec.offset + len(rec.data))]
        else:
            span = [(24, len(data))]
        out[fmt] = {"bytes": data, "U": U, "obs": None, "payload": span}
    p = folder / "orig.h5"
    fields = [lk.SU(3).random(backends.rng(k), (4,), LAT) for k in (6, 7)]
    with Ensemble.create(p, lattice=LAT, group="SU3", action="wilson", action_params={"beta": 5.7}) as ens:
        for k, V in enumerate(fields):
            ens.append(V, observables={"plaq": 0.25 + k}, info={"traj": k})
    with h5py.File(p, "r") as f:
        span = [(i.byte_offset, i.byte_offset + i.size) for i in
                (f["configs"].id.get_chunk_info(k) for k in range(f["configs"].id.get_num_chunks()))]
    out["hdf5"] = {"bytes": p.read_bytes(), "U": np.stack(fields), "obs": {"plaq": [0.25, 1.25]}, "payload": span}
    return out


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return _originals(tmp_path_factory.mktemp("fuzz-originals"))


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    d = bytearray(data)
    kind = rng.integers(6)
    if kind == 0:  # one bit
        i = int(rng.integers(len(d)))
        d[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # a few bits anywhere
        for _ in range(int(rng.integers(2, 5))):
            i = int(rng.integers(len(d)))
            d[i] ^= 1 << int(rng.integers(8))
    elif kind == 2:  # one byte overwritten
        d[int(rng.integers(len(d)))] = int(rng.integers(256))
    elif kind == 3:  # a burst of random bytes
        i, n = int(rng.integers(len(d))), int(rng.integers(2, 64))
        d[i:i + n] = rng.integers(0, 256, size=len(d[i:i + n]), dtype=np.uint8).tobytes()
    elif kind == 4:  # truncated
        del d[int(rng.integers(len(d))):]
    else:  # trailing bytes appended
        d += rng.integers(0, 256, size=int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return bytes(d)


def _read(path: Path, fmt: str) -> tuple[np.ndarray, object]:
    return load(path, index=slice(None)) if fmt == "hdf5" else load(path)


def _accepted_is_original(fmt: str, orig: dict, V: np.ndarray, meta) -> None:
    assert meta.checks_ok
    if fmt == "openqcd":  # no checksum: only changes below the unitarity tolerance go unnoticed
        assert V.shape == orig["U"].shape
        assert_close(V, orig["U"], rtol=0, atol=1e-7)
        return
    assert np.array_equal(V, orig["U"]), f"{fmt}: a mutated file returned different data"
    if orig["obs"] is not None:
        assert meta.header["observables"] == orig["obs"]


@pytest.mark.parametrize("fmt", ["nersc", "ildg", "openqcd", "hdf5"])
def test_mutations_give_ioformaterror_or_the_original(tmp_path: Path, originals: dict, fmt: str) -> None:
    orig = originals[fmt]
    rng = np.random.default_rng([20240, ["nersc", "ildg", "openqcd", "hdf5"].index(fmt)])
    faulthandler.dump_traceback_later(600, exit=True)  # a hang fails the run instead of stalling it
    outcomes = {"error": 0, "accepted": 0}
    try:
        for k in range(N_MUTATIONS):
            p = tmp_path / f"m{k}"
            p.write_bytes(_mutate(orig["bytes"], rng))
            try:
                V, meta = _read(p, fmt)
            except IOFormatError as exc:
                msg = str(exc)
                assert msg.startswith(str(p)) and "\n" not in msg, msg
                outcomes["error"] += 1
            else:
                _accepted_is_original(fmt, orig, V, meta)
                outcomes["accepted"] += 1
            os.unlink(p)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert outcomes["error"] > N_MUTATIONS // 2, outcomes  # most mutations hit something that is checked


@pytest.mark.parametrize("fmt", ["nersc", "ildg", "hdf5"])
def test_every_payload_flip_of_a_checksummed_format_is_caught(tmp_path: Path, originals: dict, fmt: str) -> None:
    orig = originals[fmt]
    rng = np.random.default_rng([777, ["nersc", "ildg", "hdf5"].index(fmt)])
    sizes = np.array([b - a for a, b in orig["payload"]])
    faulthandler.dump_traceback_later(600, exit=True)
    try:
        for k in range(N_PAYLOAD_FLIPS):
            c = int(rng.choice(len(sizes), p=sizes / sizes.sum()))
            a, b = orig["payload"][c]
            i, bit = int(rng.integers(a, b)), int(rng.integers(8))
            d = bytearray(orig["bytes"])
            d[i] ^= 1 << bit
            p = tmp_path / f"f{k}"
            p.write_bytes(bytes(d))
            with pytest.raises(IOFormatError, match="(?i)checksum|CRC32"):
                _read(p, fmt)
            os.unlink(p)
    finally:
        faulthandler.cancel_dump_traceback_later()
