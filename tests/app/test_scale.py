"""``latticekit scale``: configuration files of other codes measured, flowed and scale-set as one chain.

The job's numbers are checked against a second path (the IO layer's own plaquette of each file, the library's
flow and ``flow_scale`` called directly on the same fields); a real kill -9 after some files resumes with the
rest only and gives the same results as an uninterrupted run; bad input is refused before any flow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit.analysis import flow_scale
from latticekit.app.scale import scale_job
from latticekit.io import load, save
from latticekit.mc import Heatbath
from latticekit.observables import energy_density_clover, wilson_flow
from latticekit.testing import assert_close
from latticekit.utils import ConfigError

LAT, G = lk.Lattice((4, 4, 4, 4)), lk.SU(2)
FLOW_T, EPS, REF = 0.3, 0.05, 0.02


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """A heatbath chain of 24 SU(2) 4^4 configurations at beta = 2.3, written in three formats in turn."""
    d = tmp_path_factory.mktemp("scale-ensemble")
    rng = lk.backends.rng(11, backend="numpy")
    hb = Heatbath(G, LAT, beta=2.3, rng=rng, n_overrelax=1)
    U, _ = hb.run(lk.gauge.random_gauge_field(G, LAT, rng), 20)
    out = []
    for k in range(24):
        U, _ = hb.run(U, 2)
        fmt = ("ildg", "nersc", "hdf5")[k % 3]
        p = d / f"cfg{k:02d}.{fmt}"
        save(p, U, "SU2", format=fmt)
        out.append(p)
    return out


def _cli(*args, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "latticekit.app.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_values_against_the_library_called_directly(files, tmp_path) -> None:
    res = scale_job(files, tmp_path / "out", flow_t=FLOW_T, eps=EPS, reference=REF, echo=False)
    assert res["n_configurations"] == 24 and res["group"] == "SU(2)" and res["lattice"] == [4, 4, 4, 4]
    assert res["definitions"]["errors"].startswith("Gamma method")
    plaq, curves = [], []
    for f in files:
        U, meta = load(f)
        plaq.append(meta.plaquette)                  # the IO layer's plaquette of the file, computed on the host
        _, h = wilson_flow(U, G, LAT, FLOW_T, eps=EPS, measure=lambda V, t: t * t * energy_density_clover(V, G, LAT))
        curves.append(h["values"])
    t = h["t"]
    recs = [json.loads((tmp_path / "out" / "files" / f"{k:05d}.json").read_text()) for k in range(24)]
    assert_close([r["values"]["plaquette"] for r in recs], plaq, rtol=1e-13, atol=0)
    assert_close(np.stack([r["values"]["t2E"] for r in recs]), np.stack(curves), rtol=1e-13, atol=0)
    assert_close(res["observables"]["plaquette"]["value"], np.mean(plaq), rtol=1e-13, atol=0)
    F = np.stack(curves, axis=-1)                     # (n_t, 24)
    for kind in ("t0", "w0"):
        direct = flow_scale(t, F, kind, reference=REF)
        assert_close(res["scales"][kind]["value"], direct.value, rtol=1e-12, atol=0)
        assert_close(res["scales"][kind]["error"], direct.error, rtol=1e-9, atol=0)
        assert 0 < direct.error < 0.1 * direct.value
    assert res["observables"]["Q_at_t"]["n"] == 24
    assert res["warnings"] == []                      # sqrt(8 * 0.3) = 1.55 < L/2 = 2
    assert json.loads((tmp_path / "out" / "scale.json").read_text()) == json.loads(json.dumps(res))


def test_killed_after_some_files_resumes_with_the_rest(files, tmp_path) -> None:
    args = ["scale", *files[:8], "--flow-t", FLOW_T, "--eps", EPS, "--reference", REF]
    r = _cli(*args, "--out", tmp_path / "cut", env_extra={"LATTICEKIT_KILL_AT": "scale:file:3"})
    assert r.returncode == -9, r.stderr
    assert sorted(p.name for p in (tmp_path / "cut" / "files").glob("*.json")) == [f"{k:05d}.json" for k in range(3)]
    assert not (tmp_path / "cut" / "scale.json").exists()
    r = _cli(*args, "--out", tmp_path / "cut")
    assert r.returncode == 0, r.stderr
    measured = [line for line in r.stdout.splitlines() if "/8 " in line and ": plaquette" in line]
    assert [m.split("/")[0] for m in measured] == ["4", "5", "6", "7", "8"]     # the first three were kept
    r = _cli(*args, "--out", tmp_path / "whole")
    assert r.returncode == 0, r.stderr
    a, b = (json.loads((tmp_path / d / "scale.json").read_text()) for d in ("cut", "whole"))
    assert a == b
    assert "naive (a chain shorter than 20 configurations" in a["definitions"]["errors"]


def test_an_hdf5_ensemble_contributes_every_configuration_and_its_chains_as_replica(tmp_path) -> None:
    """An ensemble file as `latticekit run` writes it (two chains interleaved, `info["chain"]`): every configuration
    is measured, and the chains enter the Gamma method as replica, as when flow_scale is called on them."""
    from latticekit.io import Ensemble

    rng = lk.backends.rng(12, backend="numpy")
    hb = Heatbath(G, LAT, beta=2.3, rng=rng, n_overrelax=1)
    U, _ = hb.run(lk.gauge.random_gauge_field(G, LAT, rng, batch_shape=(2,)), 20)
    path = tmp_path / "ensemble.h5"
    per_chain: list[list] = [[], []]
    with Ensemble.create(path, lattice=LAT, group="SU2") as ens:
        for m in range(10):
            U, _ = hb.run(U, 2)
            for c in range(2):
                ens.append(U[c], info={"chain": c, "measurement": m})
                per_chain[c].append(U[c])
    res = scale_job([path], tmp_path / "out", flow_t=FLOW_T, eps=EPS, reference=REF, echo=False)
    assert res["n_configurations"] == 20 and res["n_chains"] == 2
    curves = []
    for c in range(2):
        _, h = wilson_flow(np.stack(per_chain[c]), G, LAT, FLOW_T, eps=EPS,
                           measure=lambda V, t: t * t * energy_density_clover(V, G, LAT))
        curves.append(h["values"])                    # (n_t, 10)
    direct = flow_scale(h["t"], curves, "t0", reference=REF, S=0.0)   # chains of 10 < 20: naive errors
    assert direct.gamma.n_replica == 2
    assert_close(res["scales"]["t0"]["value"], direct.value, rtol=1e-12, atol=0)
    assert_close(res["scales"]["t0"]["error"], direct.error, rtol=1e-9, atol=0)


def test_2d_u1_files_get_the_geometric_charge_and_a_flow_beyond_the_box_a_warning(tmp_path) -> None:
    from latticekit.observables import topological_charge_u1_2d

    lat = lk.Lattice((8, 8))
    rng = lk.backends.rng(4, backend="numpy")
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"u1_{k}.h5")
        save(paths[-1], lk.gauge.random_gauge_field(lk.U1, lat, rng), "U1", format="hdf5")
    res = scale_job(paths, tmp_path / "out", flow_t=2.5, eps=0.05, reference=REF, echo=False)
    Q = [float(topological_charge_u1_2d(wilson_flow(load(p)[0], lk.U1, lat, 2.5, eps=0.05, measure=None)[0], lat))
         for p in paths]
    assert_close(res["observables"]["Q_at_t"]["value"], np.mean(Q), rtol=1e-12, atol=1e-12)
    assert len(res["warnings"]) == 1 and "sqrt(8 t) = 4.47 at t = 2.5 exceeds half the smallest extent (4)" in \
        res["warnings"][0]


def test_a_changed_file_or_setting_is_measured_again(files, tmp_path) -> None:
    sub = files[:3]
    first = scale_job(sub, tmp_path, flow_t=0.1, eps=EPS, reference=REF, echo=False)
    rec1 = (tmp_path / "files" / "00001.json").read_text()
    again = scale_job(sub, tmp_path, flow_t=0.2, eps=EPS, reference=REF, echo=False)   # another flow time
    assert json.loads((tmp_path / "files" / "00001.json").read_text())["settings"]["flow_t"] == 0.2
    assert again["observables"]["t2E_at_t"]["value"] > first["observables"]["t2E_at_t"]["value"]
    assert rec1 != (tmp_path / "files" / "00001.json").read_text()


def test_bad_input_is_refused_before_any_flow(files, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.lime: no such file"):
        scale_job([files[0], tmp_path / "nope.lime"], tmp_path / "o1", flow_t=0.1, echo=False)
    with pytest.raises(ConfigError, match="is a folder; .*give its ensemble.h5"):
        scale_job([files[0], tmp_path], tmp_path / "o0", echo=False)
    with pytest.raises(ConfigError, match="given twice"):
        scale_job([files[0], files[0]], tmp_path / "o2", echo=False)
    with pytest.raises(ConfigError, match="flow_t=-1"):
        scale_job(files[:2], tmp_path / "o3", flow_t=-1.0, echo=False)
    with pytest.raises(ConfigError, match="eps=0.5: the RK3 flow step should be at most 0.1"):
        scale_job(files[:2], tmp_path / "o4", flow_t=0.1, eps=0.5, echo=False)
    other = tmp_path / "su3.lime"
    save(other, lk.gauge.random_gauge_field(lk.SU(3), LAT, lk.backends.rng(0)), "SU3", format="ildg")
    with pytest.raises(ConfigError, match=r"su3.lime: lattice \(4, 4, 4, 4\), SU\(3\); the first file .* SU\(2\)"):
        scale_job([files[0], other], tmp_path / "o5", flow_t=0.1, echo=False)
    assert not (tmp_path / "o5" / "files").exists() or not any((tmp_path / "o5" / "files").iterdir())
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    r = _cli("scale", files[0], "--out", run)
    assert r.returncode == 2 and "holds the output of `latticekit run`" in r.stderr
    r = _cli("scale", files[0], "--out", tmp_path / "o6", "--flow-t", "nan")
    assert r.returncode == 2 and "flow_t=nan" in r.stderr


def test_naive_error_of_a_two_file_scale_is_std_over_sqrt_n(files, tmp_path, capsys) -> None:
    """Below MIN_WINDOWED configurations the error is the naive one, std(ddof=1)/sqrt(N) (it needs
    gamma_method(S=0) to be exactly that: bias factor N/(N-1))."""
    sub = files[:2]
    res = scale_job(sub, tmp_path / "out", echo=True)
    plaq = np.array([load(f)[1].plaquette for f in sub])
    naive = float(np.std(plaq, ddof=1) / np.sqrt(len(plaq)))
    assert res["definitions"]["errors"].startswith("naive")
    assert_close(res["observables"]["plaquette"]["error"], naive, rtol=1e-12, atol=0)
    stored = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert_close(stored["observables"]["plaquette"]["error"], naive, rtol=1e-12, atol=0)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("plaquette "))
    assert line.split()[2] == f"{naive:.6g}"


def test_a_refused_input_leaves_no_new_out_folder_and_stale_records_are_not_mixed_in(files, tmp_path) -> None:
    other = tmp_path / "su3.lime"
    save(other, lk.gauge.random_gauge_field(lk.SU(3), LAT, lk.backends.rng(0)), "SU3", format="ildg")
    with pytest.raises(ConfigError, match="the files must be one ensemble"):
        scale_job([files[0], other], tmp_path / "a" / "o5", flow_t=0.1, echo=False)
    assert not (tmp_path / "a" / "o5").exists()
    (tmp_path / "kept").mkdir()                       # an existing folder is kept
    with pytest.raises(ConfigError, match="the files must be one ensemble"):
        scale_job([files[0], other], tmp_path / "kept", echo=False)
    assert (tmp_path / "kept").is_dir()
    # a folder holding the records of another chain (4 files): a rerun with 2 others reflects those 2 only
    out = tmp_path / "out"
    scale_job(files[:4], out, echo=False)
    res = scale_job(files[10:12], out, echo=False)
    fresh = scale_job(files[10:12], tmp_path / "fresh", echo=False)
    assert res["n_configurations"] == 2 and res["files"] == sorted(str(f) for f in files[10:12])
    assert json.loads((out / "scale.json").read_text()) == json.loads(json.dumps(fresh))
    # the files are listed in the order given, the chain's order of the Gamma method (they were sorted)
    assert scale_job(files[12:9:-1], tmp_path / "reversed", echo=False)["files"] == [str(f) for f in files[12:9:-1]]
