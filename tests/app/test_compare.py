"""``latticekit compare FLOW HMC`` end to end: two short heatbath runs of 2^4 SU(2) (3 s each) and a flow-style
copy of one of them; the files, the table and its numbers; --measure; errors before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from latticekit.app.cli import main
from latticekit.app.compare import compare_job
from latticekit.io import Ensemble
from latticekit.testing import assert_close
from latticekit.utils import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"
GAUGE = ["plaquette", "polyakov_loop_abs", "polyakov_loop_re"]


def _cfg(beta: float = 2.0) -> dict:
    return {"lattice": {"shape": [2, 2, 2, 2]}, "action": {"group": "SU2", "beta": beta},
            "sampler": {"algorithm": "heatbath", "chains": 2, "thermalization": 5, "measurements": 40},
            "output": {"plots": False, "store_every": 1}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two runs of one theory (seeds 1, 2), and a flow-style ensemble: run a's configurations as one chain
    (info "step", as `latticekit sample` writes it) that stores the plaquette only."""
    from latticekit.app.run import run_job

    root = tmp_path_factory.mktemp("compare")
    out = {}
    for name, seed in (("a", 1), ("b", 2)):
        run_job(_cfg(), out=root / name, seed=seed, progress=False, echo=False)
        out[name] = root / name
    flow = root / "flow"
    flow.mkdir()
    with Ensemble.open(root / "a" / "ensemble.h5") as src, \
            Ensemble.create(flow / "flow_ensemble.h5", lattice=src.lattice, group=src.group, action="wilson",
                            action_params={"beta": 2.0}, sampler="flow_independence_metropolis") as dst:
        plaq = src.observable("plaquette")
        for i in range(len(src)):
            dst.append(src.read(i), observables={"plaquette": plaq[i]}, info={"step": i, "accepted": True})
    out["flow"] = flow
    return out


def test_command_writes_the_files_and_the_table(runs, tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", str(runs["a"] / "ensemble.h5"), str(runs["b"]), "--bins", "8", "--n-boot", "200",
                 "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:5] == ["observable", "chi^2", "dof", "h", "p-value"]
    assert "all observables" in printed and str(out / "compare.json") in printed
    for f in ("compare.png", "compare_residuals.png"):
        assert (out / f).read_bytes()[:8] == PNG
    res = json.loads((out / "compare.json").read_text())
    assert res["command"] == (f"latticekit compare {runs['a'] / 'ensemble.h5'} {runs['b']} --observables "
                              f"{','.join(GAUGE)} --bins 8 --n-boot 200 --seed 3 --out {out}")
    assert res["flow"]["path"] == str(runs["a"] / "ensemble.h5")
    assert res["hmc"]["path"] == str(runs["b"] / "ensemble.h5")
    assert res["hmc"]["chains"] == 2 and res["hmc"]["chain_lengths"] == [40, 40] and res["hmc"]["n"] == 80
    assert res["theory"] == {"lattice": [2, 2, 2, 2], "group": "SU(2)", "action": "wilson",
                             "action_params": {"beta": 2.0}}
    assert [r["observable"] for r in res["table"]["rows"]] == GAUGE == sorted(res["observables"])
    with Ensemble.open(runs["a"] / "ensemble.h5") as ens:
        stored_a = ens.observables()
    for name, e in res["observables"].items():
        edges = np.asarray(e["edges"])
        assert edges.shape == (9,)
        width = np.diff(edges)
        h_f, s_f = np.asarray(e["flow"]["density"]), np.asarray(e["flow"]["error"])
        h_h, s_h = np.asarray(e["hmc"]["density"]), np.asarray(e["hmc"]["error"])
        # the density histogram of the stored values, normalised
        assert_close(h_f, np.histogram(stored_a[name], edges, density=True)[0], rtol=1e-12, atol=1e-12)
        assert_close(np.sum(h_h * width), 1.0, rtol=1e-12, atol=0)
        # residuals, ratio and chi^2 as defined, from the numbers in the file
        den = np.sqrt(s_f ** 2 + s_h ** 2)
        used = den > 0
        r = np.asarray([np.nan if v is None else v for v in e["residuals"]])
        np.testing.assert_array_equal(np.isfinite(r), used)
        assert_close(r[used], (h_f - h_h)[used] / den[used], rtol=1e-12, atol=1e-14)
        ratio = np.asarray([np.nan if v is None else v for v in e["ratio"]])
        assert_close(ratio[h_h > 0], h_f[h_h > 0] / h_h[h_h > 0], rtol=1e-12, atol=0)
        assert e["dof"] == int(used.sum())
        assert_close(e["chi2"], float(np.sum(r[used] ** 2)), rtol=1e-12, atol=0)
        h = e["dof_effective"]
        assert 0 < h <= e["dof"]
        assert_close(e["p_value"], stats.chi2.sf(e["chi2"] * h / e["dof"], h), rtol=1e-12, atol=0)
        assert 1 <= e["hmc"]["block"] <= 20 and e["hmc"]["n_blocks"] == 2 * (40 // e["hmc"]["block"])
    t = res["table"]["total"]
    assert t["dof"] == sum(e["dof"] for e in res["observables"].values())
    assert_close(t["chi2"], sum(e["chi2"] for e in res["observables"].values()), rtol=1e-12, atol=0)
    # the joint bootstrap adds the squared correlations between observables to those within each: h at most the
    # independent sum's (analysis.joint_chi2, tested there against calibration)
    h_ind = t["dof"] ** 2 / sum(e["dof"] ** 2 / e["dof_effective"] for e in res["observables"].values() if e["dof"])
    h = t["dof_effective"]
    assert 0 < h <= h_ind * (1 + 1e-12)
    assert_close(t["p_value"], stats.chi2.sf(t["chi2"] * h / t["dof"], h), rtol=1e-12, atol=0)
    assert 0.0 < t["p_value"] <= 1.0


def test_an_ensemble_against_itself_has_zero_residuals(runs, tmp_path) -> None:
    res = compare_job(runs["a"], runs["a"], bins=6, n_boot=50, out=tmp_path, echo=False)
    for e in res["observables"].values():
        assert all(r in (0.0, None) for r in e["residuals"]) and e["chi2"] == 0.0 and e["p_value"] == 1.0
    assert res["table"]["total"]["p_value"] == 1.0


def test_flow_folder_and_measure(runs, tmp_path) -> None:
    """The flow folder holds flow_ensemble.h5 (one chain, plaquette only): by default the common observable is
    compared; a missing one is an error that says how to get it; --measure measures it on the stored
    configurations, which are run a's, so the histogram equals that of run a's stored values."""
    res = compare_job(runs["flow"], runs["b"], bins=6, n_boot=50, out=tmp_path / "one", echo=False)
    assert list(res["observables"]) == ["plaquette"] and res["flow"]["chains"] == 1 and res["flow"]["n"] == 80
    with pytest.raises(ConfigError, match=r"^--observables: 'polyakov_loop_re' is not stored in flow \(.*flow_ensemble"
                                          r"\.h5\); flow stores plaquette; pass --measure to measure it"):
        compare_job(runs["flow"], runs["b"], observables="plaquette,polyakov_loop_re", out=tmp_path / "x", echo=False)
    assert not (tmp_path / "x").exists()
    res = compare_job(runs["flow"], runs["b"], observables=["polyakov_loop_re"], bins=6, n_boot=50, measure=True,
                      out=tmp_path / "two", echo=False)
    assert res["flow"]["measured_here"] == ["polyakov_loop_re"] and res["hmc"]["measured_here"] == []
    assert res["command"].endswith("--measure") and "--backend numpy compare" in res["command"]
    ref = compare_job(runs["a"], runs["b"], observables=["polyakov_loop_re"], bins=6, n_boot=50,
                      out=tmp_path / "three", echo=False)
    assert res["observables"]["polyakov_loop_re"]["edges"] == ref["observables"]["polyakov_loop_re"]["edges"]
    assert_close(np.asarray(res["observables"]["polyakov_loop_re"]["flow"]["density"]),
                 np.asarray(ref["observables"]["polyakov_loop_re"]["flow"]["density"]), rtol=1e-13, atol=1e-13)
    # without --observables, --measure compares everything the HMC run measures
    res = compare_job(runs["flow"], runs["b"], bins=6, n_boot=20, measure=True, out=tmp_path / "four", echo=False)
    assert list(res["observables"]) == GAUGE


def test_bad_input_is_refused_before_any_work(runs, tmp_path, capsys) -> None:
    a, b = runs["a"], runs["b"]
    out = tmp_path / "never"

    def refused(match: str, *args, exc: type = ConfigError, **kw) -> None:
        with pytest.raises(exc, match=match):
            compare_job(*args, out=out, echo=False, **kw)
        assert not out.exists()

    refused(r"^--bins 1: expected an integer >= 2", a, b, bins=1)
    refused(r"^--n-boot 9: expected an integer >= 10", a, b, n_boot=9)
    refused(r"^--seed -1: expected an integer >= 0", a, b, seed=-1)
    refused(r"^--observables: 'plaquete' is stored in neither ensemble \(stored: plaquette, polyakov_loop_abs",
            a, b, observables="plaquete")
    refused(r"^--observables 'plaquette,': expected comma-separated observable names", a, b, observables="plaquette,")
    refused(r"^--observables: plaquette given twice", a, b, observables="plaquette,plaquette")
    refused(r"^flow: '.*nowhere': no such folder or ensemble file", tmp_path / "nowhere", b, exc=FileNotFoundError)
    (tmp_path / "empty").mkdir()
    refused(r"^hmc: .*empty holds neither ensemble\.h5 nor flow_ensemble\.h5: expected the folder of `latticekit "
            r"sample` or `latticekit run`, or an ensemble file", a, tmp_path / "empty", exc=FileNotFoundError)
    # an ensemble without measurements, and one of another theory
    with Ensemble.open(a / "ensemble.h5") as src:
        U = src.read(0)
    bare, other = tmp_path / "bare.h5", tmp_path / "other.h5"
    for path, beta, obs in ((bare, 2.0, None), (other, 2.5, {"plaquette": 0.5})):
        with Ensemble.create(path, lattice=(2, 2, 2, 2), group="SU2", action="wilson",
                             action_params={"beta": beta}) as e:
            e.append(U, observables=obs)
            e.append(U, observables=obs)
    refused(r"^flow: .*bare\.h5 stores no per-configuration measurements; pass --measure", bare, b)
    refused(r"^flow and hmc are ensembles of different theories \(action_params: \{'beta': 2\.5\} vs "
            r"\{'beta': 2\.0\}\)", other, b)
    refused(r"^--measure: .*results\.json does not exist", a, bare, measure=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^out: .* is a file"):
        compare_job(a, b, out=tmp_path / "file", echo=False)
    # through the command: one line, exit status 2 (bad input) or 1 (a missing file)
    assert main(["compare", str(a), str(b), "--bins", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "latticekit: invalid configuration: --bins 1: expected an integer >= 2\n"
    assert main(["compare", str(tmp_path / "nowhere"), str(b), "--out", str(out)]) == 1
    assert capsys.readouterr().err.startswith("latticekit: flow: ")
    assert not out.exists()


def test_a_derived_observable_is_refused_with_the_reason(tmp_path) -> None:
    """chi_t = <Q^2>/V has no value per configuration: the error says so (it suggested [measure] options)."""
    from latticekit.app.run import run_job

    cfg = {"lattice": {"shape": [4, 4]}, "action": {"beta": 1.0},
           "sampler": {"algorithm": "heatbath", "chains": 1, "thermalization": 2, "measurements": 10},
           "output": {"plots": False, "store_every": 1}}
    for name, seed in (("a", 1), ("b", 2)):
        run_job(cfg, out=tmp_path / name, seed=seed, progress=False, echo=False)
    for measure in (False, True):
        with pytest.raises(ConfigError, match=r"'chi_t' is a function of ensemble means .* compare its inputs"):
            compare_job(tmp_path / "a", tmp_path / "b", observables=["chi_t"], measure=measure,
                        out=tmp_path / "c", echo=False)
    assert not (tmp_path / "c").exists()
