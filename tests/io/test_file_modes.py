"""Every io writer gives its file the mode ``0o666 & ~umask`` (what ``open(path, "w")`` gives), not the
0600 of a temporary file: ensembles shared in a group need group read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.io import Ensemble, save, save_state, write_lime

h5py = pytest.importorskip("h5py")


def _writers(folder: Path) -> dict[str, Path]:
    """Write one file with every io writer; returns name -> path."""
    U = lk.SU(3).random(backends.rng(0), (4,), (2, 2, 2, 2))
    out = {}
    for fmt in ("nersc", "ildg", "openqcd", "hdf5"):
        out[fmt] = folder / f"c.{fmt}"
        save(out[fmt], U, "SU3", format=fmt)
    out["lime"] = folder / "x.lime"
    write_lime(out["lime"], [[("a", b"x")]])
    out["state"] = folder / "s.npz"
    save_state(out["state"], {"x": np.zeros(2)}, {"step": 1})
    out["ensemble"] = folder / "e.h5"
    with Ensemble.create(out["ensemble"], lattice=(4, 4), group="U1") as ens:
        ens.append(lk.U1.random(backends.rng(1), (2,), (4, 4)))
    with Ensemble.open(out["ensemble"], "a") as ens:
        ens.append(lk.U1.random(backends.rng(2), (2,), (4, 4)))
    return out


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002, 0o077])
def test_written_files_respect_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        files = _writers(tmp_path)
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    got = {name: stat.S_IMODE(p.stat().st_mode) for name, p in files.items()}
    assert got == {name: want for name in files}, {k: oct(v) for k, v in got.items()}
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in files.values())  # no temporaries left
