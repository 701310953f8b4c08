"""The flow-model family ``model.coupling = "qcd4d"`` (4D Nf = 2 QCD, arXiv:2208.03832 Sec. 3): configuration refusals
(each error names the option; the lattice and mask checks when the configuration is read, the theory checks when the
model is built), the joint model it builds (shifted-stripe marginal masks, "gamma" pseudofermion masks, the "in"
separable width of the 4D context heads, Xavier initialisation), the stages of the two-stage training, a tiny staged
train + sample job (files, global step, frozen marginal in the conditional stages), kills inside the marginal and the
conditional stages with their resumption, and ``--fresh``.

The jobs run on 2^4 SU(2) with a tiny model (~1.5 s per job here); the 4^4 lattice is only built, never trained.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

import latticekit as lk
from latticekit.app.cli import main
from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow, family
from latticekit.app.flows.qcd4d_models import qcd4d_stages
from latticekit.app.flows.sample import sample_job
from latticekit.app.flows.train import train_job
from latticekit.flows.checkpoint import CheckpointMismatchError
from latticekit.flows.pseudofermion import JointAction, JointModel, MarginalAction, PseudofermionCoupling
from latticekit.flows.pseudofermion.masks import pf_masks
from latticekit.flows.shifted_masks import ShiftedStripeMask
from latticekit.testing import assert_close
from latticekit.utils import ConfigError

TRAIN_STEPS, COND_STEPS = 3, [3, 2]     # the job: marginal steps 1-3, conditional_1 4-6, conditional_2 7-8
TOTAL = TRAIN_STEPS + sum(COND_STEPS)


def cfg(shape=(2, 2, 2, 2), *, action: dict | None = None, train: dict | None = None, **model: Any) -> dict:
    a = {"kind": "wilson_nf2", "group": "SU2", "beta": 1.0, "kappa": 0.1}
    a.update(action or {})
    m = {"coupling": "qcd4d", "n_layers": 2, "hidden": [2], "bins": 4, "pf_layers": 2, "n_pt": 2, "pt_hidden": 2,
         "context_hidden": 2, "conditional_steps": COND_STEPS, "conditional_batch_size": [4, 6],
         "conditional_lr": [1e-3, 5e-4], "conditional_step_size": [0, 1]}
    m.update(model)
    t = {"steps": TRAIN_STEPS, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 2, "eval_batch_size": 8}
    t.update(train or {})
    return {"lattice": {"shape": list(shape)}, "action": a, "model": m, "train": t, "sample": {"n": 16, "batch": 8}}


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(s) for s in (folder / "metrics.jsonl").read_text().splitlines()]


def _strip_time(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in ("time_s", "cpu_s")} for m in lines]


def _model_state(folder: Path, name: str = "checkpoint.pt") -> dict[str, torch.Tensor]:
    return torch.load(folder / name, map_location="cpu", weights_only=False)["model"]


def _is_marginal(key: str) -> bool:
    return key.startswith(("flow.", "prior."))


# -- configuration refusals ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, model, match", [
    ((4, 4), {}, r"lattice\.shape: model\.coupling = 'qcd4d' is the 4D QCD model; got a 2D lattice"),
    ((2, 2, 3, 2), {}, r"lattice\.shape: .*need even extents, got \[2, 2, 3, 2\]"),
    ((3, 3, 3, 3), {}, r"lattice\.shape: .*need even extents"),
    # width 4 on extents 2: shift 1 times L = 2 is not a multiple of 4
    ((2, 2, 2, 2), {"mask_width": 4}, r"model\.mask_width / model\.mask_shifts: .*do not tile the lattice"),
    ((2, 2, 2, 2), {"mask_width": 2, "mask_shifts": [1, 2, 1, 1]},
     r"model\.mask_width / model\.mask_shifts: .*direction 1 has shift 0 mod width"),
    ((4, 4, 4, 4), {"mask_width": 4, "mask_shifts": [1, 2, 1, 0]},
     r"model\.mask_width / model\.mask_shifts: .*direction 3 has shift 0 mod width"),
    ((2, 2, 2, 2), {"mask_shifts": [1, 1, 1]}, r"model\.mask_width / model\.mask_shifts: .*one shift per orientation"),
    ((2, 2, 2, 2), {"mask_width": 1}, r"model\.mask_width: expected 0 \(automatic\) or a width >= 2"),
    ((2, 2, 2, 2), {"conditional_steps": [1, 2, 3]},
     r"model\.conditional_steps, conditional_batch_size, conditional_lr, conditional_step_size: expected one entry "
     r"per conditional stage each, got lengths 3, 2, 2, 2"),
    ((2, 2, 2, 2), {"conditional_lr": [1e-3]}, r"model\.conditional_steps, .* got lengths 2, 2, 1, 2"),
    ((2, 2, 2, 2), {"conditional_step_size": [0, 1, 0, 0]}, r"model\.conditional_steps, .* got lengths 2, 2, 2, 4"),
    ((2, 2, 2, 2), {"n_pt": 1}, r"model\.n_pt: the qcd4d conditional model needs n_pt >= 2"),
])
def test_config_refusals_when_read(shape: tuple, model: dict, match: str) -> None:
    """Lattice, mask and schedule checks: ``FlowConfig.from_dict`` refuses them, before any model exists."""
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(shape, **model))


@pytest.mark.parametrize("action, match", [
    ({"group": "U1"}, r"action\.group: model\.coupling = 'qcd4d' needs an SU\(N\) gauge group"),
    ({"kappa": 0.125}, r"action\.kappa = 0\.125: model\.coupling = 'qcd4d' needs kappa < 1/8"),
    ({"kappa": 0.2}, r"action\.kappa = 0\.2: .*kappa < 1/8"),
])
def test_theory_refusals_when_built(action: dict, match: str) -> None:
    """Group and hopping parameter: the configuration is read (the wilson_nf2 theory accepts them), ``build_flow``
    refuses them (the theory checks run when the family builds its model)."""
    c = FlowConfig.from_dict(cfg(action=action))
    with pytest.raises(ConfigError, match=match):
        build_flow(c)


def test_kappa_just_below_the_bound_builds() -> None:
    model, _action, _lat = build_flow(FlowConfig.from_dict(cfg(action={"kappa": 0.1249})))
    assert isinstance(model, JointModel)


def test_defaults_are_the_papers() -> None:
    c = FlowConfig.from_dict({**cfg(), "model": {"coupling": "qcd4d"}})
    s = c.model.variant
    assert family("qcd4d").default_layers((4, 4, 4, 4)) == 48 and s.n_layers == 48
    assert (s.mask_width, s.mask_shifts, s.hidden, s.bins, s.init_gain) == (0, [], [32, 32, 32], 16, 0.5)
    assert (s.pf_layers, s.partitioning, s.n_pt, s.pt_hidden, s.context_hidden) == (36, "gamma", 6, 4, 8)
    assert (s.pf_init_gain, s.pf_bias_std, s.mu0) == (0.3, 0.05, 1e-5)
    assert (s.conditional_steps, s.conditional_batch_size, s.conditional_lr, s.conditional_step_size) == \
        ([16000, 28000, 17000], [640, 640, 800], [1e-4, 5e-5, 2.5e-5], [0, 20000, 0])


# -- the model it builds ------------------------------------------------------------------------------------------
def _conv_weights_z(module: torch.nn.Module, gain: float) -> tuple[torch.Tensor, list[torch.nn.Conv1d]]:
    """Every conv weight divided by its Xavier-normal standard deviation ``gain sqrt(2 / (fan_in + fan_out))``
    (Conv1d: ``fan_in = C_in k``, ``fan_out = C_out k``), concatenated; and the convolutions."""
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv1d)]
    z = []
    for c in convs:
        c_out, c_in, k = c.weight.shape
        z.append(c.weight.detach().flatten() / (gain * math.sqrt(2.0 / (c_in * k + c_out * k))))
    return torch.cat(z), convs


def test_built_model_2x2x2x2() -> None:
    c = FlowConfig.from_dict(cfg(n_layers=8, pf_layers=12, context_hidden=3, init_gain=0.7, pf_init_gain=0.2,
                                 pf_bias_std=0.1))
    model, action, lat = build_flow(c)
    assert isinstance(model, JointModel) and isinstance(action, JointAction)
    assert model.objective == "joint" and not model.marginal_frozen() and len(model.conditionals) == 1
    # the training target carries the regulator mu0 = 1e-5; the model's own target (and sampling) none
    assert [t.mu_lo for t in action.targets] == [1e-5] and [t.mu_lo for t in model.targets] == [0.0]
    assert not model.targets[0].even_odd and model.targets[0].kappa == 0.1

    # marginal: shifted stripes of width 2, shifts 1 (extents 2), alternation mu = i mod 4, phase i // 4 (mod 2):
    # 8 layers update every link once
    masks = [layer.mask for layer in model.flow.layers]
    assert all(isinstance(m, ShiftedStripeMask) for m in masks) and len(masks) == 8
    rot = [(0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2)]
    assert [(m.mu, m.active_phase, m.width, m.shifts, m.orientations_to_shift, m.nu) for m in masks] == \
        [(i % 4, i // 4, 2, (1, 1, 1, 1), rot[i % 4], rot[i % 4][1]) for i in range(8)]

    # conditional: the "gamma" cycle, spatial pair then (1 +- gamma_mu)/2 for mu = 0, 1, 2, 3, 5
    cm = [layer.mask for layer in model.conditionals[0].flow.layers]
    expected = ["SiteMask(parity=0)", "SiteMask(parity=1)"] + [f"GammaMask(mu={mu}, sign={s})"
                                                               for mu in (0, 1, 2, 3, 5) for s in (1, -1)]
    assert [repr(m) for m in cm] == expected == [repr(m) for m in pf_masks("gamma", lat, 12)]

    # the per-layer context heads: separable blocks with the "in" width (Nd - 1 convolutions 3 -> 3, then 3 -> N_o)
    k, nd, c_in = 3, 4, 3
    for layer in model.conditionals[0].flow.layers:
        assert isinstance(layer, PseudofermionCoupling)
        # N_o: PTC 1 complex H x (2 Nd + 1) Ns, PTC 2 complex Ns x (2 Nd + 1) H (H = 2, Ns = 4), A complex n_a x n_a
        n_a = 4 if "SiteMask" in repr(layer.mask) else 2
        n_out = 2 * 2 * 9 * 4 + 2 * 4 * 9 * 2 + 2 * n_a * n_a
        assert layer.n_out == n_out
        assert sum(p.numel() for p in layer.head.parameters()) == k * (c_in * c_in * (nd - 1) + c_in * n_out) + n_out
        convs = [m for m in layer.head.modules() if isinstance(m, torch.nn.Conv1d)]
        assert [tuple(cv.weight.shape) for cv in convs] == [(c_in, c_in, k)] * 3 + [(n_out, c_in, k)]

    # Xavier-normal initialisation (arXiv:2208.03832 Sec. 3.1) with the configured gains (not the defaults 0.5/0.3)
    z, convs = _conv_weights_z(model.flow, 0.7)
    # marginal: zero biases; the ~5000 weights divided by their Xavier std have unit std (standard error of the
    # sample std 1/sqrt(2n) ~ 1%: 10% is ~10 sigma, while the default gain 0.5 would read 0.71)
    assert all(bool((cv.bias == 0).all()) for cv in convs if cv.bias is not None) and z.numel() > 4000
    assert abs(float(z.std()) - 1) < 0.1
    for module in (model.conditionals[0].flow, model.trunk):
        z, convs = _conv_weights_z(module, 0.2)
        assert abs(float(z.std()) - 1) < 0.1
    # one wide conv alone (the head's last one, 3 x 320 x 3 weights): std gain sqrt(2/(fan_in + fan_out)) within 10%
    last = [m for m in model.conditionals[0].flow.layers[0].head.modules() if isinstance(m, torch.nn.Conv1d)][-1]
    assert_close(last.weight.std(), 0.2 * math.sqrt(2.0 / (3 * 3 + 320 * 3)), rtol=0.1, atol=0)
    # conditional biases: normal with std pf_bias_std = 0.1; ~3500 of them (12 heads x ~300 + the trunk's 3), so
    # their sample std is within 1.2% (one standard error) of 0.1 and their mean within 0.0017: 10% and 5 standard
    # errors of the mean are loose bounds that a zero or a wrong std would fail
    b = torch.cat([cv.bias.detach() for m in (model.conditionals[0].flow, model.trunk)
                   for cv in m.modules() if isinstance(cv, torch.nn.Conv1d) and cv.bias is not None])
    assert b.numel() > 3000
    assert_close(b.std(), 0.1, rtol=0.1, atol=0)
    assert abs(float(b.mean())) < 5 * 0.1 / math.sqrt(b.numel())
    assert bool((model.trunk.net.net[0].convs[-1].conv.bias != 0).all())


def test_built_model_4x4x4x4_uses_the_papers_masks() -> None:
    """On 4^4: width 4, shifts (1, 2, 1, 1); 16 layers update every link exactly once (built only, never trained)."""
    model, _action, lat = build_flow(FlowConfig.from_dict(cfg((4, 4, 4, 4), n_layers=16, hidden=[1], bins=2,
                                                              pf_layers=1, context_hidden=1)))
    masks = [layer.mask for layer in model.flow.layers]
    rot = [(0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2)]
    assert [(m.mu, m.active_phase, m.width, m.shifts, m.orientations_to_shift) for m in masks] == \
        [(i % 4, i // 4, 4, (1, 2, 1, 1), rot[i % 4]) for i in range(16)]
    for mu in range(4):
        cover = sum(m.sites(mu).to(torch.int64) for m in masks if m.mu == mu)
        assert bool((cover == 1).all()), mu            # each mu-link active in exactly one of its 4 layers
    # phi = x0 + 2 x1 + x2 + x3 (mod 4) for mu = 0, phase 0: one mu-link in four
    x = lat.coords(backend="torch")
    assert torch.equal(masks[0].sites(0), (x[0] + 2 * x[1] + x[2] + x[3]) % 4 == 0)
    assert repr(model.conditionals[0].flow.layers[0].mask) == "SiteMask(parity=0)"


def test_frozen_marginal_draws_carry_no_graph() -> None:
    model, _action, _lat = build_flow(FlowConfig.from_dict(cfg()))
    model = model.double()
    rng = lk.backends.rng(0, backend="torch")
    x, lq = model.sample(3, rng)
    assert x.U.requires_grad and x.log_q_U.requires_grad          # the marginal trained: its draws carry the graph
    model.freeze_marginal(True)
    assert model.marginal_frozen()
    x, lq = model.sample(3, rng)
    assert not x.U.requires_grad and not x.log_q_U.requires_grad
    assert all(lqp.requires_grad for lqp in x.log_q_phis) and lq.requires_grad
    assert_close(lq, x.log_q_U + sum(x.log_q_phis), rtol=0, atol=0)
    lq.sum().backward()
    assert all(p.grad is None for p in model.flow.parameters())
    assert any(p.grad is not None and bool(p.grad.abs().max() > 0) for p in model.conditionals.parameters())
    # one trained parameter is enough for "not frozen"
    next(model.flow.parameters()).requires_grad_(True)
    assert not model.marginal_frozen()
    model.freeze_marginal(False)
    assert not model.marginal_frozen() and all(p.requires_grad for p in model.flow.parameters())


# -- the stages ---------------------------------------------------------------------------------------------------
def test_stages() -> None:
    c = FlowConfig.from_dict(cfg(conditional_steps=[5, 7, 9], conditional_batch_size=[4, 6, 8],
                                 conditional_lr=[1e-3, 5e-4, 2.5e-4], conditional_step_size=[0, 3, 0],
                                 conditional_gamma=0.25, n_noise=2, mu0=1e-4, train={"eps": 1e-2, "seed": 7}))
    st = qcd4d_stages(c, None)
    assert [s.name for s in st] == ["marginal", "conditional_1", "conditional_2", "conditional_3"]
    assert [s.config.steps for s in st] == [TRAIN_STEPS, 5, 7, 9]
    assert [s.config.batch_size for s in st] == [4, 4, 6, 8]
    assert [s.config.lr for s in st] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert [s.config.schedule for s in st] == ["constant", "constant", "step", "constant"]
    assert st[2].config.step_size == 3 and all(s.config.gamma == 0.25 for s in st[1:])
    # the other [train] options are shared by all stages
    assert all(s.config.eps == 1e-2 and s.config.seed == 7 for s in st)
    assert isinstance(st[0].action, MarginalAction) and st[0].action.n_noise == 2
    assert all(isinstance(s.action, JointAction) for s in st[1:])
    assert all(t.mu_lo == 1e-4 for s in st for t in s.action.targets)      # the regulator in every stage
    model, _action, _lat = build_flow(c)
    st[1].prepare(model)
    assert model.objective == "joint" and model.marginal_frozen()
    assert all(p.requires_grad for p in model.conditionals.parameters())
    st[0].prepare(model)
    assert model.objective == "marginal" and not model.marginal_frozen()
    st[3].prepare(model)
    assert model.objective == "joint" and model.marginal_frozen()


# -- the job ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """One uninterrupted job of ``cfg()`` (one torch thread, as the autouse fixture of conftest.py sets per test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("qcd4d") / "full"
        res = train_job(cfg(), out=out, progress=False)
    finally:
        torch.set_num_threads(n)
    yield out, res


def test_train_and_sample_job(trained: tuple[Path, dict]) -> None:
    out, res = trained
    assert res["status"] == "finished" and res["steps"] == TOTAL and res["resumed_from_step"] is None
    assert [(s["name"], s["steps"], s["batch_size"], s["lr"], s["schedule"]) for s in res["stages"]] == [
        ("marginal", 3, 4, 1e-3, "constant"), ("conditional_1", 3, 4, 1e-3, "constant"),
        ("conditional_2", 2, 6, 5e-4, "step")]
    for name in ("config.json", "checkpoint.pt", "train.json", "metrics.jsonl", "stages/0_marginal.pt",
                 "stages/0_marginal.json", "stages/1_conditional_1.pt", "stages/1_conditional_1.json",
                 "stages/2_conditional_2.pt", "stages/2_conditional_2.json"):
        assert (out / name).exists(), name
    records = [json.loads((out / "stages" / f"{k}_{n}.json").read_text())
               for k, n in enumerate(("marginal", "conditional_1", "conditional_2"))]
    assert [(r["stage"], r["name"], r["steps"]) for r in records] == [(0, "marginal", 3), (1, "conditional_1", 3),
                                                                        (2, "conditional_2", 2)]
    summary = json.loads((out / "train.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == TOTAL
    assert [s["name"] for s in summary["stages"]] == ["marginal", "conditional_1", "conditional_2"]
    assert summary["ess"] == summary["eval"]["eval_ess"] and 0 < summary["ess"] <= 1 and summary["ess_n"] == 8
    assert "one pseudofermion per gauge field" in summary["ess_definition"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == TOTAL
    # metrics: one line per global step, with the stage, its own step, the stage's batch size and learning rate
    # (conditional_2 decays by conditional_gamma = 0.5 after every step)
    lines = _metrics(out)
    assert [m["step"] for m in lines] == list(range(1, TOTAL + 1))
    assert [m["stage"] for m in lines] == ["marginal"] * 3 + ["conditional_1"] * 3 + ["conditional_2"] * 2
    assert [m["stage_step"] for m in lines] == [1, 2, 3, 1, 2, 3, 1, 2]
    assert [m["ess_n"] for m in lines] == [4] * 6 + [6] * 2
    assert_close(torch.tensor([m["lr"] for m in lines], dtype=torch.float64), [1e-3] * 6 + [5e-4, 2.5e-4], rtol=1e-12,
                 atol=0)

    # the conditional stages leave the marginal model bit for bit as the marginal stage left it, and train the rest
    initial = build_flow(FlowConfig.from_dict(cfg()))[0].state_dict()
    s0, s1, final = _model_state(out, "stages/0_marginal.pt"), _model_state(out, "stages/1_conditional_1.pt"), \
        _model_state(out)
    assert set(s0) == set(final) == set(initial)
    marginal = [k for k in final if _is_marginal(k)]
    conditional = [k for k in final if not _is_marginal(k)]
    assert marginal and conditional
    for k in marginal:
        assert torch.equal(s0[k], final[k]) and torch.equal(s0[k], s1[k]), k
    assert any(not torch.equal(initial[k].to(s0[k].dtype), s0[k]) for k in marginal)        # the marginal stage trained
    changed = [k for k in conditional if not torch.equal(s0[k], final[k])]
    weights = [k for k in conditional if k.endswith("weight")]
    assert set(weights) <= set(changed), sorted(set(weights) - set(changed))

    # the sample job: pseudo-marginal flow MCMC with n_pf draws, and its ESS keys
    s = sample_job(out, n=16, seed=2, n_pf=2)
    assert s["n_pf"] == 2 and s["n"] == 16
    for key in ("joint_ess", "pseudo_marginal_ess", "marginal_ess"):
        assert 0 < s[key] <= 1, key
    assert s["proposal_ess"] == s["pseudo_marginal_ess"]
    cn = s["condition_numbers"]
    assert len(cn) == 1 and cn[0]["max"] >= cn[0]["mean"] >= 1
    assert "plaquette" in s["observables"]
    assert json.loads((out / "sample.json").read_text())["pseudo_marginal_ess"] == s["pseudo_marginal_ess"]
    assert main(["sample", str(out), "--n", "8", "--n-pf", "1"]) == 0



def test_rerun_of_a_finished_job_changes_nothing(trained: tuple[Path, dict], tmp_path: Path) -> None:
    """The same command on a finished job is a resumption that trains nothing and leaves checkpoint.pt as it was."""
    full, _ = trained
    out = tmp_path / "again"
    shutil.copytree(full, out)
    again = train_job(cfg(), out=out, progress=False)
    assert again["resumed_from_step"] == TOTAL and again["steps"] == TOTAL
    assert _strip_time(_metrics(out)) == _strip_time(_metrics(full))
    a, b = _model_state(full), _model_state(out)
    for k, v in a.items():
        assert v.dtype == b[k].dtype and torch.equal(v, b[k]), k


class Killed(BaseException):
    """Stands for SIGKILL at the kill point: raised where ``kill_point("train:step")`` is called, not caught."""


def _train_killed_at(c: dict, out: Path, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the job until the kill point ``train:step`` (:mod:`latticekit.app.killpoints`) is reached for the
    ``step``-th time (after that global step's metrics line, before its checkpoint) and die there.

    In-process: the kill point raises instead of sending SIGKILL (a subprocess start costs ~7 s here; the real kill
    of a train job is tested in tests/app/flows/test_jobs.py). What is on disk is the same: the metrics lines are
    flushed one by one, and no checkpoint is written after the kill point."""
    import latticekit.app.killpoints as kp

    original, seen = kp.kill_point, []

    def kill_point(name: str) -> None:
        if name == "train:step":
            seen.append(name)
            if len(seen) == step:
                raise Killed(f"killed at global step {step}")
        original(name)

    monkeypatch.setattr(kp, "kill_point", kill_point)
    with pytest.raises(Killed):
        train_job(c, out=out, progress=False)
    monkeypatch.setattr(kp, "kill_point", original)


@pytest.mark.parametrize("kill_at, resumed_from", [
    # the first step of conditional_1, before its first checkpoint: the stage restarts from the marginal's
    (4, 3),
    (6, 5),   # the last step of conditional_1, after its step-2 checkpoint (checkpoint_every = 2)
])
def test_killed_in_a_conditional_stage_resumes_bit_identically(trained: tuple[Path, dict], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, kill_at: int,
                                                               resumed_from: int) -> None:
    """The conditional stages use the joint action: all their randomness (gauge fields, pseudofermions) comes from
    the trainer's generator, which the stage checkpoints hold, so the resumed job ends bit for bit where the
    uninterrupted one did."""
    full, _ = trained
    out = tmp_path / "killed"
    _train_killed_at(cfg(), out, kill_at, monkeypatch)
    assert [m["step"] for m in _metrics(out)] == list(range(1, kill_at + 1))
    assert (out / "stages" / "0_marginal.json").exists() and not (out / "stages" / "1_conditional_1.json").exists()
    assert not (out / "checkpoint.pt").exists()
    res = train_job(cfg(), out=out, progress=False)        # the same command again
    assert res["resumed_from_step"] == resumed_from and res["steps"] == TOTAL
    a, b = _model_state(full), _model_state(out)
    assert set(a) == set(b)
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
    # exactly one line per global step, each the uninterrupted run's (losses included: the same computation)
    assert _strip_time(_metrics(out)) == _strip_time(_metrics(full))
    assert [s["steps"] for s in res["stages"]] == [3, 3, 2]


@pytest.mark.parametrize("kill_at, resumed_from", [
    (1, None),  # before the first checkpoint: the stage (and the job) starts over, step 1's line is dropped
    (3, 2),     # the last marginal step, after the step-2 checkpoint: step 3's line is dropped and recomputed
])
def test_killed_in_the_marginal_stage_resumes(trained: tuple[Path, dict], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, kill_at: int,
                                             resumed_from: int | None) -> None:
    """Resumed inside the marginal stage, the job finishes with the uninterrupted run's steps, stages and metric
    lines (one per global step), but not bit for bit: the noise vectors of the stochastic log-det gradient come from
    the MarginalAction's own generator (seeded with train.seed + 1 when the job starts), which the stage checkpoint
    does not hold, so the resumed stage draws other noise than the uninterrupted one after the checkpoint."""
    full, _ = trained
    out = tmp_path / "killed"
    _train_killed_at(cfg(), out, kill_at, monkeypatch)
    assert [m["step"] for m in _metrics(out)] == list(range(1, kill_at + 1))
    assert not (out / "stages" / "0_marginal.json").exists()
    res = train_job(cfg(), out=out, progress=False)
    assert res["resumed_from_step"] == resumed_from and res["steps"] == TOTAL
    assert [(s["name"], s["steps"]) for s in res["stages"]] == [("marginal", 3), ("conditional_1", 3),
                                                                ("conditional_2", 2)]
    lines, ref = _metrics(out), _metrics(full)
    assert [m["step"] for m in lines] == list(range(1, TOTAL + 1))
    assert [(m["stage"], m["stage_step"]) for m in lines] == [(m["stage"], m["stage_step"]) for m in ref]
    # the lines up to the checkpoint are the uninterrupted run's (same initial model and generators)
    keep = resumed_from or 0
    assert _strip_time(lines[:keep]) == _strip_time(ref[:keep])
    assert set(_model_state(out)) == set(_model_state(full))
    assert json.loads((out / "train.json").read_text())["steps"] == TOTAL


def test_fresh_removes_the_stages(tmp_path: Path, write_toml: Callable[[dict, str], Path]) -> None:
    one = cfg(train={"steps": 1}, conditional_steps=[1], conditional_batch_size=[4], conditional_lr=[1e-3],
              conditional_step_size=[0])
    out = tmp_path / "run"
    train_job(one, out=out, progress=False)
    assert sorted(p.name for p in (out / "stages").iterdir()) == ["0_marginal.json", "0_marginal.pt",
                                                                   "1_conditional_1.json", "1_conditional_1.pt"]
    (out / "stages" / "stale.txt").write_text("left by an earlier run")
    two = cfg(train={"steps": 1}, conditional_steps=[1, 1], conditional_batch_size=[4, 4], conditional_lr=[1e-3, 1e-3],
              conditional_step_size=[0, 0])
    other = cfg(train={"steps": 1}, conditional_steps=[1], conditional_batch_size=[8], conditional_lr=[1e-3],
                conditional_step_size=[0])   # a changed stage (appending one, as in `two`, resumes: test_staged_job)
    with pytest.raises(CheckpointMismatchError, match="--fresh"):   # another model in the same folder needs --fresh
        train_job(other, out=out, progress=False)
    conf = write_toml(two, "two.toml")
    assert main(["train", str(conf), "--out", str(out), "--fresh", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "stages").iterdir()) == [
        "0_marginal.json", "0_marginal.pt", "1_conditional_1.json", "1_conditional_1.pt", "2_conditional_2.json",
        "2_conditional_2.pt"]
    summary = json.loads((out / "train.json").read_text())
    assert summary["resumed_from_step"] is None and summary["steps"] == 3
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3]


def test_data_parallel_staged_job(tmp_path: Path, write_toml: Callable[[dict, str], Path]) -> None:
    """``latticekit train --nprocs 2`` on the staged job: every stage runs data-parallel (gloo, 2 processes), rank 0
    writes the files once, the marginal stays frozen in the conditional stages, a rerun resumes (nothing left to do),
    and the single-process sampler reads the result. Batches not divisible by the process count are refused first."""
    from latticekit.app.flows.distributed import train_distributed

    with pytest.raises(ConfigError, match="conditional_batch_size contains 3"):
        train_distributed(cfg(conditional_batch_size=[4, 3]), out=tmp_path / "bad", nprocs=2)
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "ddp"
    conf = write_toml(cfg(), "job.toml")
    assert main(["train", str(conf), "--out", str(out), "--nprocs", "2", "--quiet"]) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == TOTAL
    lines = _metrics(out)
    assert [m["step"] for m in lines] == list(range(1, TOTAL + 1))          # written once, by rank 0
    assert [m["stage"] for m in lines] == ["marginal"] * TRAIN_STEPS + ["conditional_1"] * 3 + ["conditional_2"] * 2
    for k, name in enumerate(["marginal", "conditional_1", "conditional_2"]):
        rec = json.loads((out / "stages" / f"{k}_{name}.json").read_text())
        assert rec["world_size"] == 2
        ck = torch.load(out / "stages" / f"{k}_{name}.pt", weights_only=False)
        assert ck["config"]["world_size"] == 2 and len(ck["config"]["rank_rng_states"]) == 2
    marg = _model_state(out / "stages", "0_marginal.pt")
    final = _model_state(out)
    gauge = [k for k in marg if not k.startswith(("conditionals.", "trunk."))]
    assert gauge and all(torch.equal(marg[k], final[k]) for k in gauge)      # frozen in the conditional stages
    assert any(not torch.equal(marg[k], final[k]) for k in marg if k.startswith("conditionals."))
    assert main(["train", str(conf), "--out", str(out), "--nprocs", "2", "--quiet"]) == 0
    again = json.loads((out / "train.json").read_text())
    assert again["resumed_from_step"] == TOTAL and _metrics(out) == lines
    assert torch.load(out / "checkpoint.pt", weights_only=False)["config"]["world_size"] == 2
    s = sample_job(out, n=16, seed=0)
    assert 0 <= s["acceptance"] <= 1
    _one_process_refuses_a_two_process_staged_run(out, conf, tmp_path)


def _one_process_refuses_a_two_process_staged_run(out: Path, conf: Path, tmp_path: Path) -> None:
    """The finished two-process run of test_data_parallel_staged_job, and a copy cut back to the first conditional
    stage in progress, are refused on one process: one line naming --nprocs 2, exit status 2, before any work; and
    run_stages itself refuses the stage checkpoint (user probe: a two-process staged run resumed on one process
    silently, on rank 0's stream only)."""
    import contextlib
    import io

    from latticekit.app.flows.stages import run_stages

    mid = tmp_path / "mid"
    shutil.copytree(out, mid)
    for name in ("checkpoint.pt", "train.json", "stages/1_conditional_1.json", "stages/2_conditional_2.json",
                 "stages/2_conditional_2.pt"):
        (mid / name).unlink()
    for folder in (out, mid):
        before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
        with pytest.raises(ConfigError, match=rf"^--nprocs 1: the run in {re.escape(str(folder))} was trained by 2 "
                                              r"process\(es\); resume it with --nprocs 2 \(every rank continues its "
                                              r"own random stream\), or pass --fresh to start over$"):
            train_job(cfg(), out=folder, progress=False)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["train", str(conf), "--out", str(folder), "--quiet"]) == 2
        assert err.getvalue().startswith("latticekit: invalid configuration: --nprocs 1: the run in ")
        assert err.getvalue().count("\n") == 1
        assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    fc = FlowConfig.from_dict(cfg())
    with pytest.raises(ConfigError, match=rf"^--nprocs 1: the run in {re.escape(str(mid))} was trained by 2 "
                                          r"process\(es\)"):
        run_stages(build_flow(fc)[0], qcd4d_stages(fc, None), mid, job_config=fc.to_dict(), progress=False)


def test_a_one_process_staged_run_is_refused_with_nprocs(tmp_path: Path, write_toml: Callable[[dict, str], Path],
                                                        no_workers: None, capsys: pytest.CaptureFixture) -> None:
    """A one-process staged run resumed with --nprocs 2: one line, exit status 2, before any worker starts (user
    probe: a 48-line traceback from the workers, exit status 1)."""
    one = cfg(train={"steps": 1}, conditional_steps=[1], conditional_batch_size=[4], conditional_lr=[1e-3],
              conditional_step_size=[0])
    out = tmp_path / "run"
    train_job(one, out=out, progress=False)
    capsys.readouterr()
    assert main(["train", str(write_toml(one, "one.toml")), "--out", str(out), "--nprocs", "2", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"latticekit: invalid configuration: --nprocs 2: the run in {out} was trained "
                                       "by 1 process(es); resume it without --nprocs (every rank continues its own "
                                       "random stream), or pass --fresh to start over\n")
