"""HDF5 ensembles: metadata, appending, lazy reads, observables, and crash safety of the commit protocol."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.io import Ensemble, IOFormatError, load, save
from latticekit.io._hdf5_write import write_slots

h5py = pytest.importorskip("h5py")

LAT2 = (4, 4)


def _u1(seed: int) -> np.ndarray:
    return lk.U1.random(backends.rng(seed), (2,), LAT2)


def _make(path: Path, n: int) -> list[np.ndarray]:
    fields = [_u1(k) for k in range(n)]
    with Ensemble.create(path, lattice=lk.Lattice(LAT2), group=lk.U1, action="wilson", action_params={"beta": 2.5},
                         sampler="hmc", sampler_params={"n_steps": 10, "dt": 0.1}, seeds=[1, 2, 3],
                         metadata={"note": "test"}) as ens:
        for k, U in enumerate(fields):
            obs = {"plaq": 0.5 + k}
            if k >= 1:
                obs["topo"] = float(k)  # a new observable appearing later
            assert ens.append(U, observables=obs, info={"traj": k, "seed": 100 + k}) == k
    return fields


def test_metadata_append_and_lazy_read(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    fields = _make(p, 3)
    with Ensemble.open(p) as ens:
        assert len(ens) == 3 and ens.lattice == LAT2 and ens.group is lk.U1 and ens.precision == "double"
        assert ens.action == "wilson" and ens.action_params == {"beta": 2.5}
        assert ens.sampler == "hmc" and ens.sampler_params == {"dt": 0.1, "n_steps": 10}
        assert ens.seeds == [1, 2, 3]
        md = ens.metadata
        assert md["software"].startswith("latticekit ") and md["metadata"] == {"note": "test"}
        assert np.array_equal(ens[1], fields[1]) and np.array_equal(ens[-1], fields[2])
        assert [np.array_equal(a, b) for a, b in zip(ens, fields)] == [True] * 3
        assert ens.read(slice(0, 2)).shape == (2, 2) + LAT2
        np.testing.assert_array_equal(ens.observable("plaq"), [0.5, 1.5, 2.5])
        topo = ens.observable("topo")
        assert np.isnan(topo[0]) and topo[1:].tolist() == [1.0, 2.0]
        assert ens.info(2) == {"traj": 2, "seed": 102}
        with pytest.raises(IndexError):
            ens[3]
        for bad in (True, np.bool_(False)):   # ens[True] read configuration 1; load(index=True) refused already
            with pytest.raises(TypeError, match=r"expected an integer or a slice"):
                ens[bad]
            with pytest.raises(TypeError, match=r"expected an integer or a slice"):
                ens.info(bad)
        with pytest.raises(PermissionError):
            ens.append(fields[0])
    with Ensemble.open(p, "a") as ens:  # appendable after reopening
        ens.append(fields[0], observables={"plaq": 9.0})
        assert len(ens) == 4 and np.isnan(ens.observable("topo")[3])


def test_su3_ensemble_and_backend_read(tmp_path: Path, bk) -> None:
    p = tmp_path / "s.h5"
    G = lk.SU(3)
    U = G.random(backends.rng(0), (4,), (2, 2, 2, 2))
    with Ensemble.create(p, lattice=(2, 2, 2, 2), group="SU3", precision="single") as ens:
        ens.append(bk.asarray(U))
        with pytest.raises(ValueError, match="shape"):
            ens.append(U[:, :, :, :1])
        with pytest.raises(ValueError, match="not in SU"):
            ens.append(2 * U)
    with Ensemble.open(p) as ens:
        V = ens.read(0, backend=bk.name, device=bk.device)
        assert backends.backend_name(V) == bk.name
        assert np.array_equal(bk.to_numpy(V), U.astype(np.complex64))


def _contents(path: Path) -> dict:
    """Everything a reader sees of an ensemble, through plain h5py (slots and their CRCs included)."""
    with h5py.File(path, "r") as f:
        return {"configs": f["configs"][:], "slots": f["slots"][:], "info_json": f["info_json"][:],
                "n": int(f.attrs["n_committed"]), "obs": {k: f["observables"][k][:] for k in f["observables"]}}


@pytest.mark.parametrize("group", ["U1", "SU2"])
def test_extend_writes_what_appends_write(tmp_path: Path, group: str) -> None:
    """A batch in one commit gives the file that one append per configuration gives, byte for byte in every
    dataset a reader uses, slots and CRCs included; an observable that appears in a later batch is NaN before."""
    G = lk.U1 if group == "U1" else lk.SU(2)
    U = G.random(backends.rng(3), (5, 2), LAT2)
    obs = {"plaq": np.arange(5) * 0.25}
    infos = [{"step": i, "accepted": i % 2 == 0} for i in range(5)]
    paths = {m: tmp_path / f"{m}.h5" for m in ("append", "extend")}
    for m, p in paths.items():
        with Ensemble.create(p, lattice=LAT2, group=G) as ens:
            if m == "append":
                for i in range(5):
                    kw = {"topo": float(i)} if i >= 3 else {}
                    assert ens.append(U[i], observables={"plaq": obs["plaq"][i], **kw}, info=infos[i]) == i
            else:
                assert ens.extend(U[:3], observables=obs | {"plaq": obs["plaq"][:3]}, infos=infos[:3]) == range(3)
                assert ens.extend(U[3:], observables={"plaq": obs["plaq"][3:], "topo": [3.0, 4.0]},
                                  infos=infos[3:]) == range(3, 5)
    a, b = _contents(paths["append"]), _contents(paths["extend"])
    assert a["n"] == b["n"] == 5 and sorted(a["obs"]) == sorted(b["obs"]) == ["plaq", "topo"]
    for k in ("configs", "slots", "info_json"):
        assert a[k].tobytes() == b[k].tobytes(), k
    for k in a["obs"]:
        np.testing.assert_array_equal(a["obs"][k], b["obs"][k])
    with Ensemble.open(paths["extend"]) as ens:   # the reader verifies every CRC
        assert all(np.array_equal(ens[i], U[i]) for i in range(5)) and ens.info(4) == infos[4]
        assert ens.read(slice(0, 5)).shape == U.shape


def test_extend_refuses_a_bad_batch_before_writing(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    _make(p, 2)
    before = _contents(p)
    U = lk.U1.random(backends.rng(4), (3, 2), LAT2)
    bad = [
        ((U[0],), {}, ValueError, r"U has shape \(2, 4, 4\); .* a batch of k of them is \(k, \*that\)"),
        ((U,), {"observables": {"plaq": [1.0, 2.0]}}, ValueError,
         r"observables\['plaq'\] has shape \(2,\); expected \(3,\)"),
        ((U,), {"observables": {"plaq": ["a", "b", "c"]}}, ValueError, r"observables\['plaq'\]: expected 3 numbers"),
        ((U,), {"infos": [{}] * 2}, ValueError, "infos has 2 entries; expected 3"),
        ((U,), {"infos": {"step": 1}}, TypeError, "infos: expected a sequence of 3 mappings"),
        ((U,), {"infos": [{}, {}, {"x": float("nan")}]}, ValueError, r"info\['x'\]: NaN"),
        ((np.concatenate([U[:2], np.full((1, 2, 4, 4), np.nan)]),), {}, ValueError, "NaN or infinite angles"),
    ]
    with Ensemble.open(p, "a") as ens:
        for args, kw, exc, match in bad:
            with pytest.raises(exc, match=match):
                ens.extend(*args, **kw)
    after = _contents(p)
    assert after["n"] == 2 and after["configs"].tobytes() == before["configs"].tobytes()
    su2 = lk.SU(2).random(backends.rng(5), (2, 2), LAT2)
    su2[1, 0, 0, 0, 1, 1] *= 1.01
    with Ensemble.create(tmp_path / "s.h5", lattice=LAT2, group=lk.SU(2)) as ens:
        with pytest.raises(ValueError, match=r"U is not in SU\(2\): largest defect"):
            ens.extend(su2)
        assert len(ens) == 0


def test_what_would_not_read_back_as_given_is_refused(tmp_path: Path) -> None:
    """Names HDF5 stores otherwise ('.' is the group itself, NUL truncates: the observables' CRCs then failed on
    reading), an info larger than the reader accepts, complex or None values, nested non-string keys: refused
    with the argument named, nothing written; an empty batch writes nothing (no dataset of a name)."""
    p = tmp_path / "e.h5"
    _make(p, 1)
    before = _contents(p)
    U = lk.U1.random(backends.rng(4), (2, 2), LAT2)
    with Ensemble.open(p, "a") as ens:
        for name in (".", "..", "a\x00b", "\udcff"):
            with pytest.raises(ValueError, match="observables: name"):
                ens.extend(U, observables={name: [1.0, 2.0], "plaq": [0.1, 0.2]})
            with pytest.raises(ValueError, match="observables: name"):
                ens.append(U[0], observables={name: 1.0})
        for vals, match in (([None, 1.0], "dtype object"), (np.array([1 + 2j, 2.0]), "imaginary part"),
                            ([10**400, 1], "dtype object")):
            with pytest.raises(ValueError, match=match):
                ens.extend(U, observables={"plaq": vals})
        with pytest.raises(ValueError, match="expected one number"):
            ens.append(U[0], observables={"plaq": np.complex128(1 + 2j)})
        with pytest.raises(TypeError, match="observables: expected a mapping"):
            ens.extend(U, observables=[1.0, 2.0])
        with pytest.raises(ValueError, match=r"info\['x'\]: key 1 must be a string"):
            ens.append(U[0], info={"x": {1: "a"}})
        with pytest.raises(ValueError, match=r"info\['x'\]\[0\]\['y'\]: key 2 must be a string"):
            ens.extend(U, infos=[{}, {"x": [{"y": {2: 0}}]}])
        with pytest.raises(ValueError, match="info: 16777225 bytes of JSON; an ensemble stores at most 16777216"):
            ens.extend(U, infos=[{}, {"n": "y" * (1 << 24)}])
        assert ens.extend(U[:0], observables={"ghost": []}, infos=[]) == range(1, 1)
    after = _contents(p)
    assert after["n"] == 1 and sorted(after["obs"]) == sorted(before["obs"]) and "ghost" not in after["obs"]
    assert after["configs"].tobytes() == before["configs"].tobytes()
    torch = pytest.importorskip("torch")
    with Ensemble.open(p, "a") as ens:   # a tensor that requires grad, as a flow's observables are
        assert ens.extend(torch.as_tensor(U), observables={"plaq": torch.ones(2, requires_grad=True)}) == range(1, 3)
        assert ens.observable("plaq")[1:].tolist() == [1.0, 1.0]


def test_single_precision_files_read_back_what_was_written(tmp_path: Path) -> None:
    """The write tolerance of a single-precision file is below its read tolerance (5e-5): a defect of 7.3e-5 was
    written (1e-4 allowed) and then refused by load and latticekit info."""
    G = lk.SU(2)
    U = G.random(backends.rng(6), (2,), LAT2)
    for scale, ok in ((1 + 4e-6, True), (1 + 1.5e-5, False)):   # defects 1.9e-5 and 7.2e-5
        p = tmp_path / f"s{ok}.h5"
        with Ensemble.create(p, lattice=LAT2, group=G, precision="single") as ens:
            if ok:
                ens.append(U * scale)
            else:
                with pytest.raises(ValueError, match=r"U is not in SU\(2\): largest defect"):
                    ens.append(U * scale)
        if ok:
            V, meta = load(p)
            assert meta.checks_ok and V.shape == U.shape


def test_uncommitted_slot_is_ignored_and_overwritten(tmp_path: Path) -> None:
    p = tmp_path / "e.h5"
    fields = _make(p, 2)
    with Ensemble.open(p, "a") as ens:
        # written, never committed
        write_slots(ens, 2, _u1(99)[None], {"plaq": np.array([123.0]), "new": np.array([1.0])}, [b'{"traj": 99}'])
    with Ensemble.open(p) as ens:
        assert len(ens) == 2
        assert ens.observable("plaq").tolist() == [0.5, 1.5]
        assert "new" in ens.observable_names and np.isnan(ens.observable("new")).all()
        with pytest.raises(IndexError):
            ens[2]
    with Ensemble.open(p, "a") as ens:
        ens.append(fields[0], observables={"plaq": 7.0})
    with Ensemble.open(p) as ens:
        assert len(ens) == 3 and np.array_equal(ens[2], fields[0]) and ens.observable("plaq")[2] == 7.0
        assert np.isnan(ens.observable("new")[2])


def test_killed_writer_leaves_committed_data_readable(tmp_path: Path) -> None:
    p = tmp_path / "k.h5"
    _make(p, 1)
    script = textwrap.dedent(f"""
        import os, numpy as np
        import latticekit as lk
        from latticekit.io import Ensemble
        from latticekit.io._hdf5_write import write_slots
        ens = Ensemble.open({str(p)!r}, "a")
        for k in (1, 2):
            ens.append(lk.U1.random(lk.backends.rng(k), (2,), (4, 4)), observables={{"plaq": 0.5 + k}})
        write_slots(ens, 3, np.full((1, 2, 4, 4), 0.25), {{"plaq": np.array([-1.0])}}, [b"{{}}"])
        os._exit(1)  # killed: no commit, no close
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    with Ensemble.open(p) as ens:
        assert len(ens) == 3
        for k in range(3):
            assert np.array_equal(ens[k], _u1(k))
        assert ens.observable("plaq").tolist() == [0.5, 1.5, 2.5]


def test_reader_while_writer_holds_the_file(tmp_path: Path) -> None:
    p = tmp_path / "w.h5"
    fields = _make(p, 1)
    with Ensemble.open(p, "a") as writer:
        writer.append(fields[0])
        with Ensemble.open(p) as reader:
            assert len(reader) == 2 and np.array_equal(reader[1], fields[0])


def test_save_load_registry_hdf5(tmp_path: Path) -> None:
    p = tmp_path / "b.h5"
    batch = np.stack([_u1(k) for k in range(3)])
    with pytest.raises(ValueError, match="both an unbatched field"):  # (3, 2, 4, 4): 3D field or 3 2D fields?
        save(p, batch, lk.U1, format="hdf5")
    save(p, batch, lk.U1, format="hdf5", meta={"action": "wilson", "observables": {"plaq": [1.0, 2.0, 3.0]},
                                                "beta": 2.0, "lattice": LAT2})
    U, meta = load(p)
    assert np.array_equal(U, batch[-1]) and meta.lattice == LAT2 and meta.group == "U(1)"
    assert meta.header["metadata"] == {"beta": 2.0} and meta.extra["n_committed"] == 3
    B, _ = load(p, index=slice(None))
    assert np.array_equal(B, batch)
    V, _ = load(p, index=0)
    assert np.array_equal(V, batch[0])
    with pytest.raises(IOFormatError, match="lattice"):
        load(p, lattice=(4, 8))
    four = np.stack([_u1(k) for k in range(4)])  # (4, 2, 4, 4): unambiguous batch of 2D fields
    save(p, four, "U1", format="hdf5")
    assert np.array_equal(load(p, index=slice(None))[0], four)
    with pytest.raises(FileExistsError):
        Ensemble.create(p, lattice=LAT2, group="U1")


def test_not_an_ensemble(tmp_path: Path) -> None:
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(IOFormatError, match="not a latticekit ensemble"):
        load(p)
    q = tmp_path / "garbage.h5"
    q.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(IOFormatError):
        load(q)
