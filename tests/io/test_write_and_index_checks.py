"""What the writers refuse before writing (U(1) angles the reader would refuse, observables of the wrong length,
a bogus byte order, info JSON cannot hold, a closed or misplaced ensemble), ``index`` errors of ``load``, the
plaquette with ``verify=False``, and an ILDG file with two binary-data records."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.io import Ensemble, IOFormatError, load, read_lime, save, write_lime
from latticekit.io._hdf5_format import U1_ANGLE_LIMIT
from latticekit.testing import assert_close

h5py = pytest.importorskip("h5py")

LAT2 = lk.Lattice((4, 4))


def _u1(seed: int, batch: tuple[int, ...] = ()) -> np.ndarray:
    return lk.gauge.random_gauge_field(lk.U1, LAT2, backends.rng(seed, backend="numpy"), batch_shape=batch)


def _su3(seed: int, batch: tuple[int, ...] = ()) -> np.ndarray:
    return lk.gauge.random_gauge_field(lk.SU(3), lk.Lattice((2, 2, 2, 2)), backends.rng(seed, backend="numpy"),
                                       batch_shape=batch)


@pytest.mark.parametrize("precision", ["double", "single"])
def test_u1_angles_beyond_the_read_limit_are_refused_when_writing(tmp_path: Path, precision: str) -> None:
    lim = U1_ANGLE_LIMIT[precision]
    U = _u1(1)
    with Ensemble.create(tmp_path / "e.h5", lattice=LAT2, group="U1", precision=precision) as ens:
        ens.append(U)
        big = U.copy()
        big[0, 0, 0] = 1.5 * lim
        want = re.escape(f"|theta| <= {lim:.3g}") + r".*latticekit.U1.normalize\(U, nd=2\)"
        with pytest.raises(ValueError, match=want):
            ens.append(big)
        ens.append(lk.U1.normalize(big, nd=2))       # wrapped to (-pi, pi]: accepted
        edge = U.copy()
        edge[0, 0, 0] = lim                          # the limit itself is readable
        ens.append(edge)
        assert len(ens) == 3
    back = Ensemble.open(tmp_path / "e.h5").read(slice(0, 3))      # every committed configuration reads
    assert back.shape == (3, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\|theta\| <= "):
        save(tmp_path / "s.h5", np.stack([U, U + 2 * np.pi * lim]), "U1", format="hdf5", precision=precision)
    assert not (tmp_path / "s.h5").exists() and sorted(os.listdir(tmp_path)) == ["e.h5"]


def test_hdf5_observables_must_have_one_value_per_configuration(tmp_path: Path) -> None:
    B = _u1(1, (4,))
    with pytest.raises(ValueError, match=r"meta\['observables'\]\['plaq'\]: 2 values for 4 configurations"):
        save(tmp_path / "o1.h5", B, "U1", format="hdf5", meta={"observables": {"plaq": [1.0, 2.0]}})
    with pytest.raises(ValueError, match=r"meta\['observables'\]\['plaq'\]: 5 values for 2 configurations"):
        save(tmp_path / "o2.h5", B[:2], "U1", format="hdf5", meta={"observables": {"plaq": [1.0, 2, 3, 4, 5]}})
    assert os.listdir(tmp_path) == []
    save(tmp_path / "ok.h5", B, "U1", format="hdf5", meta={"observables": {"plaq": [1.0, 2, 3, 4]}})
    assert_close(Ensemble.open(tmp_path / "ok.h5").observable("plaq"), [1.0, 2.0, 3.0, 4.0], rtol=0, atol=0)


@pytest.mark.parametrize("fmt", ["nersc", "ildg", "openqcd", "hdf5"])
def test_a_bogus_endian_is_refused_for_every_format(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ValueError, match="endian='bogus': expected 'big' or 'little'"):
        save(tmp_path / "x", _su3(0), "SU3", format=fmt, endian="bogus")
    assert os.listdir(tmp_path) == []
    save(tmp_path / "y", _su3(0), "SU3", format=fmt, endian="little" if fmt in ("nersc", "openqcd", "hdf5") else "big")


def test_load_index_errors_name_the_index(tmp_path: Path) -> None:
    fields = _su3(2, (3,))
    save(tmp_path / "b.h5", fields, "SU3", format="hdf5")
    for index in (slice(2, 2), slice(5, 9), slice(3, None)):
        with pytest.raises(IOFormatError, match=r"HDF5 index failed: .* selects no configuration: the ensemble "
                                                r"holds 3 committed configurations"):
            load(tmp_path / "b.h5", index=index)
    with pytest.raises(IOFormatError, match="index 3 out of range: the ensemble holds 3"):
        load(tmp_path / "b.h5", index=3)
    V, _ = load(tmp_path / "b.h5", index=slice(1, 9))
    assert np.array_equal(V, fields[1:])
    save(tmp_path / "c.lime", fields[0], "SU3", format="ildg")
    for index in (3, 1, -2, slice(0, 1)):
        with pytest.raises(ValueError, match=r"index=.*: a ildg file holds one configuration; index selects "
                                             r"configurations of HDF5 ensembles only"):
            load(tmp_path / "c.lime", index=index)
    for index in (None, 0, -1):
        assert np.array_equal(load(tmp_path / "c.lime", index=index)[0], fields[0])
    assert np.array_equal(load(tmp_path / "b.h5", index=None)[0], fields[2])


def test_ensemble_misuse_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a folder; expected the name of a new ensemble file"):
        Ensemble.create(tmp_path, lattice=LAT2, group="U1")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        Ensemble.create(tmp_path, lattice=LAT2, group="U1", overwrite=True)
    ens = Ensemble.create(tmp_path / "e.h5", lattice=LAT2, group="U1")
    U = _u1(0)
    with pytest.raises(ValueError, match=r"info\['x'\]: object .* is not JSON serialisable"):
        ens.append(U, info={"x": object()})
    with pytest.raises(ValueError, match=r"info\['x'\]: NaN or infinity"):
        ens.append(U, info={"x": float("nan")})
    with pytest.raises(ValueError, match=r"info\['y'\]: NaN or infinity"):
        ens.append(U, info={"ok": 1, "y": [1.0, {"z": np.inf}]})
    with pytest.raises(ValueError, match=r"observables\['plaq'\]: expected one number"):
        ens.append(U, observables={"plaq": np.array([1.0, 2.0])})
    assert len(ens) == 0
    ens.append(U, info={"traj": np.int64(3), "acc": np.float64(0.5), "tags": ("a", "b")})
    assert ens.info(0) == {"traj": 3, "acc": 0.5, "tags": ["a", "b"]}
    ens.close()
    with pytest.raises(ValueError, match="e.h5: the ensemble is closed"):
        ens.append(U)
    with pytest.raises(ValueError, match="the ensemble is closed"):
        ens.read(0)
    assert "closed" in repr(ens)
    assert len(Ensemble.open(tmp_path / "e.h5")) == 1


@pytest.mark.parametrize("fmt", ["nersc", "ildg", "openqcd", "hdf5"])
def test_verify_false_still_computes_the_plaquette(tmp_path: Path, fmt: str) -> None:
    U = lk.gauge.random_gauge_field(lk.SU(3), lk.Lattice((2, 2, 2, 2)), backends.rng(3, backend="numpy"))
    save(tmp_path / "c", U, "SU3", format=fmt)
    _, m1 = load(tmp_path / "c")
    _, m0 = load(tmp_path / "c", verify=False)
    assert m0.checks == [] and m0.plaquette is not None and m0.link_trace is not None
    assert_close(m0.plaquette, m1.plaquette, rtol=0, atol=0)
    assert_close(m0.link_trace, m1.link_trace, rtol=0, atol=0)


def test_ildg_with_two_binary_data_records_is_refused(tmp_path: Path) -> None:
    """ILDG holds one configuration per file, in one ildg-binary-data record: a second one is refused, not the first
    silently read."""
    save(tmp_path / "a.lime", _su3(0), "SU3", format="ildg")
    save(tmp_path / "b.lime", _su3(1), "SU3", format="ildg")
    recs = [(r.type, bytes(r.data)) for r in read_lime(tmp_path / "a.lime")]
    extra = [(r.type, bytes(r.data)) for r in read_lime(tmp_path / "b.lime") if r.type == "ildg-binary-data"]
    write_lime(tmp_path / "two.lime", [recs, extra])
    for verify in (True, False):
        with pytest.raises(IOFormatError, match=r"two.lime: ILDG records failed: 2 ildg-binary-data records .*an "
                                                r"ILDG file holds one configuration"):
            load(tmp_path / "two.lime", verify=verify)
