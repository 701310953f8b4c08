"""Reverse-KL training against latticekit actions, schedules, clipping, NaN stop, checkpoints."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.actions import Phi4Action, WilsonGaugeAction
from latticekit.flows import (
    CheckpointMismatchError,
    GaussianPrior,
    HaarPrior,
    Model,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    reverse_kl_loss,
    save_checkpoint,
    scalar_coupling_flow,
    stop_gradient_log_prob,
    u1_gauge_flow,
)
from latticekit.testing import assert_close

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(1234)


def phi4_model(shape: tuple[int, ...] = (4, 4), layers: int = 4, coupling: str = "affine") -> Model:
    lat = lk.Lattice(shape)
    return Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, layers, coupling, hidden=(8,)))


def test_loss_uses_latticekit_action() -> None:
    lat = lk.Lattice((4, 4))
    S = Phi4Action(lat, kappa=0.2, lam=0.1)
    m = phi4_model().to(F64)
    rng = lk.backends.rng(0, backend="torch")
    loss, lw = reverse_kl_loss(m, S, 16, rng)
    x, log_q = m.sample(16, lk.backends.rng(0, backend="torch"))
    expect = (log_q + lk.actions.phi4_action(x, lat, 0.2, 0.1)).mean()
    assert_close(loss, expect, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(lw, -(log_q + S(x)).detach(), rtol=1e-7, atol=1e-7, check_dtype=True)


def test_training_lowers_the_kl() -> None:
    lat = lk.Lattice((4, 4))
    S = Phi4Action(lat, kappa=0.3, lam=0.02)
    tr = Trainer(phi4_model(), S, TrainConfig(steps=80, batch_size=64, lr=5e-3, seed=1))
    before = tr.evaluate(1024)
    hist = tr.train()
    after = tr.evaluate(1024)
    assert len(hist) == 80 and tr.step == 80
    assert after["eval_loss"] < before["eval_loss"] - 0.5
    assert after["eval_ess"] > before["eval_ess"]
    assert all(k in hist[-1] for k in ("loss", "ess", "var_log_w", "lr", "grad_norm"))
    assert 0 < hist[-1]["ess"] <= 1


def test_training_u1_against_wilson_action(device: str) -> None:
    # the same latticekit action on the training device (CPU, and CUDA when present)
    lat = lk.Lattice((4, 4))
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 4, bins=4, hidden=(4,)))
    tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, beta=2.0),
                 TrainConfig(steps=30, batch_size=32, lr=1e-2, eval_every=30, eval_batch_size=256, device=device))
    before = tr.evaluate(512)
    tr.train()
    assert "eval_loss" in tr.history[-1]
    assert next(tr.model.parameters()).device.type == device
    assert tr.evaluate(512)["eval_loss"] < before["eval_loss"]


def test_schedules_and_clipping() -> None:
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-2, schedule="step", step_size=2, gamma=0.1, clip_norm=0.5,
                      clip_value=0.1, optimizer="adamw", eps=1e-6, weight_decay=0.01)
    tr = Trainer(phi4_model((2, 2), 2), Phi4Action(lk.Lattice((2, 2)), 0.1, 0.1), cfg)
    h = tr.train()
    assert [round(m["lr"], 12) for m in h] == [1e-2, 1e-2, 1e-3, 1e-3]
    assert tr.optimizer.param_groups[0]["eps"] == 1e-6
    cos = Trainer(phi4_model((2, 2), 2), Phi4Action(lk.Lattice((2, 2)), 0.1, 0.1),
                  TrainConfig(steps=4, batch_size=4, lr=1.0, schedule="cosine", min_lr=0.0))
    lrs = [m["lr"] for m in cos.train()]
    assert lrs[0] == 1.0 and lrs[3] < lrs[2]
    assert_close(lrs[2], 0.5, rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_warmup_multiplies_the_schedule_linearly(schedule: str) -> None:
    # the reference: torch's own scheduler of the schedule (what a run without warm-up uses) times (s + 1) / W
    steps, warm, lr = 9, 4, 1e-2
    opts = dict(schedule=schedule, step_size=2, gamma=0.5, min_lr=1e-3)
    lat = lk.Lattice((2, 2))
    plain = Trainer(phi4_model((2, 2), 2), Phi4Action(lat, 0.1, 0.1), TrainConfig(steps=steps, batch_size=4, lr=lr,
                                                                                     **opts))
    warmed = Trainer(phi4_model((2, 2), 2), Phi4Action(lat, 0.1, 0.1),
                     TrainConfig(steps=steps, batch_size=4, lr=lr, warmup_steps=warm, **opts))
    base, got = [m["lr"] for m in plain.train()], [m["lr"] for m in warmed.train()]
    want = [b * min(1.0, (s + 1) / warm) for s, b in enumerate(base)]
    assert_close(torch.tensor(got, dtype=F64), torch.tensor(want, dtype=F64), rtol=1e-13, atol=0)
    assert_close(got[0], lr / warm, rtol=1e-13, atol=0)                  # the warm-up starts at lr / W
    assert_close(got[warm - 1], base[warm - 1], rtol=1e-13, atol=0)      # and ends on the schedule


def test_resume_with_warmup_is_deterministic(tmp_path: os.PathLike[str]) -> None:
    # the warm-up's LambdaLR factor must come back from the checkpoint: the resumed rates and weights are bitwise
    # those of the uninterrupted run
    S = Phi4Action(lk.Lattice((4, 4)), 0.25, 0.05)
    path = os.path.join(tmp_path, "run.pt")
    cfg = dict(steps=6, batch_size=8, lr=1e-2, schedule="step", gamma=0.9, step_size=1, warmup_steps=4, seed=3)
    torch.manual_seed(0)
    straight = Trainer(phi4_model(), S, TrainConfig(**cfg))
    straight.train()
    torch.manual_seed(0)
    Trainer(phi4_model(), S, TrainConfig(**cfg, checkpoint_path=path)).train(steps=2)
    resumed = Trainer(phi4_model(), S, TrainConfig(**cfg, checkpoint_path=path))
    assert resumed.load() == 2
    resumed.train()
    assert [m["lr"] for m in resumed.history] == [m["lr"] for m in straight.history]
    for a, b in zip(_params(straight.model), _params(resumed.model)):
        assert torch.equal(a, b)


def test_clip_value_bounds_gradients() -> None:
    tr = Trainer(phi4_model((2, 2), 2), Phi4Action(lk.Lattice((2, 2)), 0.1, 0.1),
                 TrainConfig(steps=1, batch_size=8, clip_value=1e-3))
    tr.train_step()
    assert max(float(p.grad.abs().max()) for p in tr.model.parameters() if p.grad is not None) <= 1e-3 + 1e-15


def test_float32_training() -> None:
    tr = Trainer(phi4_model((2, 2), 2), Phi4Action(lk.Lattice((2, 2)), 0.1, 0.1),
                 TrainConfig(steps=2, batch_size=8, dtype="float32"))
    tr.train()
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_resume_is_deterministic(tmp_path: os.PathLike[str]) -> None:
    lat = lk.Lattice((4, 4))
    S = Phi4Action(lat, 0.25, 0.05)
    path = os.path.join(tmp_path, "run.pt")
    cfg = dict(steps=6, batch_size=16, lr=1e-2, schedule="cosine", clip_norm=10.0, seed=3)

    torch.manual_seed(0)
    straight = Trainer(phi4_model(), S, TrainConfig(**cfg))
    straight.train()

    torch.manual_seed(0)
    first = Trainer(phi4_model(), S, TrainConfig(**cfg, checkpoint_path=path))
    first.train(steps=3)
    assert first.step == 3 and os.path.exists(path)
    del first

    torch.manual_seed(99)                    # a fresh process would start from different weights
    resumed = Trainer(phi4_model(), S, TrainConfig(**cfg, checkpoint_path=path))
    assert resumed.load() == 3
    resumed.train()
    assert resumed.step == 6
    for a, b in zip(_params(straight.model), _params(resumed.model)):
        assert torch.equal(a, b)
    assert [m["loss"] for m in resumed.history] == [m["loss"] for m in straight.history]


def test_nan_stops_training_and_keeps_last_checkpoint(tmp_path: os.PathLike[str]) -> None:
    lat = lk.Lattice((2, 2))
    good = Phi4Action(lat, 0.1, 0.1)
    calls = {"n": 0}

    def S(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        s = good(x)
        return s * float("nan") if calls["n"] > 2 else s

    path = os.path.join(tmp_path, "ck.pt")
    tr = Trainer(phi4_model((2, 2), 2), S, TrainConfig(steps=5, batch_size=4, checkpoint_every=2,
                                                       checkpoint_path=path))
    with pytest.raises(NonFiniteLossError, match="step 3.*last good checkpoint"):
        tr.train()
    params_at_stop = _params(tr.model)
    payload = torch.load(path, weights_only=False)
    assert payload["step"] == 2
    # the optimizer did not take the NaN step: the parameters equal the checkpoint's
    for a, (k, b) in zip(params_at_stop, [(k, v) for k, v in payload["model"].items() if "mask" not in k]):
        assert torch.equal(a, b)
    assert all(bool(torch.isfinite(p).all()) for p in params_at_stop)


def test_linear_algebra_failure_stops_like_a_nan(tmp_path: os.PathLike[str]) -> None:
    """A LinAlgError in the forward pass (eigh on NaN links of a diverged SU(N) flow) stops training with the
    non-finite message: the optimizer untouched, the last checkpoint named."""
    lat = lk.Lattice((2, 2))
    good = Phi4Action(lat, 0.1, 0.1)
    calls = {"n": 0}

    def S(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 2:   # what torch raises for eigh on the NaN links of a diverged SU(3) flow (seen in training)
            raise torch.linalg.LinAlgError("linalg.eigh: (Batch element 1809): The algorithm failed to converge")
        return good(x)

    path = os.path.join(tmp_path, "ck.pt")
    tr = Trainer(phi4_model((2, 2), 2), S, TrainConfig(steps=5, batch_size=4, checkpoint_every=2,
                                                       checkpoint_path=path))
    with pytest.raises(NonFiniteLossError, match="step 3: the forward pass is a linear-algebra failure.*last good "
                                                 "checkpoint") as exc:
        tr.train()
    assert isinstance(exc.value.__cause__, torch.linalg.LinAlgError)
    assert torch.load(path, weights_only=False)["step"] == 2 and tr.step == 2


def test_cosine_is_held_at_min_lr_past_the_configured_steps() -> None:
    """``train(steps=k)`` may run past ``config.steps``: torch's periodic cosine climbed back to lr there without a
    warm-up, while the warm-up schedule held min_lr (user probe). Both hold min_lr; within the steps the rates are
    torch's, unchanged."""
    lat = lk.Lattice((2, 2))
    runs = []
    for warm in (0, 2):
        tr = Trainer(phi4_model((2, 2), 2), Phi4Action(lat, 0.1, 0.1),
                     TrainConfig(steps=4, batch_size=2, lr=1e-2, schedule="cosine", min_lr=1e-3, warmup_steps=warm))
        runs.append([m["lr"] for m in tr.train(steps=8)])
    for lrs in runs:
        assert_close(torch.tensor(lrs[4:], dtype=F64), torch.full((4,), 1e-3, dtype=F64), rtol=1e-12, atol=0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([torch.zeros(1)], lr=1e-2), T_max=4,
                                                     eta_min=1e-3)
    want = []
    for _ in range(4):
        want.append(ref.get_last_lr()[0])
        ref.optimizer.step()
        ref.step()
    assert runs[0][:4] == want                                          # bit for bit: torch's rates


def test_seed_and_device_are_checked_up_front() -> None:
    """A seed of 2^64 - 1 passed, and training died at its first evaluation with "Overflow when unpacking long long"
    (the evaluation seed seed + 1000003 (step + 1)); a device 'gpu' or an absent CUDA device passed validate() and
    failed in torch (user probe)."""
    lat = lk.Lattice((2, 2))
    S = Phi4Action(lat, 0.1, 0.1)
    tr = Trainer(phi4_model((2, 2), 2), S, TrainConfig(steps=2, batch_size=2, seed=2**64 - 1, eval_every=1))
    tr.train()                                          # the evaluation seeds wrap around modulo 2^64
    with pytest.raises(ValueError, match=r"^seed=18446744073709551616: expected an integer in \[0, 2\^64 - 1\]"):
        TrainConfig(seed=2**64).validate()
    with pytest.raises(ValueError, match=r"^seed=18446744073709551616: expected an integer in \[0, 2\^64 - 1\]"):
        lk.backends.rng(2**64, backend="torch")
    with pytest.raises(ValueError, match=r"^device='gpu': not a torch device"):
        TrainConfig(device="gpu").validate()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device='cuda': torch reports no CUDA device"):
            TrainConfig(device="cuda").validate()


def test_checkpoint_of_other_architecture_or_lattice_is_refused(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "a.pt")
    m = phi4_model((4, 4), 2)
    opt = torch.optim.Adam(m.parameters())
    save_checkpoint(path, model=m, step=1, optimizer=opt, rng=lk.backends.rng(0, backend="torch"))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]     # atomic write leaves no temp file
    load_checkpoint(path, model=phi4_model((4, 4), 2))
    with pytest.raises(CheckpointMismatchError, match="lattice"):
        load_checkpoint(path, model=phi4_model((8, 8), 2))
    with pytest.raises(CheckpointMismatchError, match="architecture"):
        load_checkpoint(path, model=phi4_model((4, 4), 4))
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(path, model=phi4_model((4, 4), 2, coupling="spline"))
    # tanh_scale changes the map: a checkpoint of one loaded into the other silently (user probe)
    lat = lk.Lattice((4, 4))
    plain = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2, "affine", hidden=(8,), tanh_scale=False))
    with pytest.raises(CheckpointMismatchError, match="architecture"):
        load_checkpoint(path, model=plain)
    save_checkpoint(path, model=plain, step=1)
    load_checkpoint(path, model=plain)
    with open(os.path.join(tmp_path, "bad.pt"), "wb") as fh:
        fh.write(b"truncated")
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(os.path.join(tmp_path, "bad.pt"), model=m)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(os.path.join(tmp_path, "missing.pt"), model=m)


def test_config_errors() -> None:
    m = phi4_model((2, 2), 2)
    S = Phi4Action(lk.Lattice((2, 2)), 0.1, 0.1)
    for bad in (dict(lr=0.0), dict(optimizer="sgd"), dict(schedule="linear"), dict(dtype="float16"),
                dict(clip_norm=-1.0), dict(checkpoint_every=2), dict(warmup_steps=-1)):
        with pytest.raises(ValueError):
            Trainer(m, S, TrainConfig(**bad))
    with pytest.raises(TypeError, match="action"):
        Trainer(m, 3.0, TrainConfig())
    with pytest.raises(TypeError, match="model"):
        Trainer(torch.nn.Linear(1, 1), S, TrainConfig())
    assert math.isfinite(TrainConfig().lr)


def test_path_gradient_vanishes_at_the_target_and_reparam_does_not() -> None:
    # Target = the model's own density (a frozen copy): q = p exactly. The path-gradient estimator is
    # then zero for every sample (d/dx [log q(x) + S(x)] = 0), the reparametrised one is not (its
    # score term has zero mean but not zero value).
    import copy

    model = phi4_model((2, 2), 2).to(torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.requires_grad_(False)

    def S(x: torch.Tensor) -> torch.Tensor:
        return -frozen.log_prob(x)

    grads = {}
    for est in ("path", "reparam"):
        model.zero_grad()
        loss, lw = reverse_kl_loss(model, S, 16, lk.backends.rng(5, backend="torch"), gradient=est)
        loss.backward()
        grads[est] = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert_close(lw, 0.0, rtol=0, atol=1e-10)  # log w = 0: q = p
    assert_close(grads["path"], 0.0, rtol=0, atol=1e-10)
    assert float(grads["reparam"].abs().max()) > 1e-3


def test_stop_gradient_log_prob_matches_and_training_with_path_gradient(device: str) -> None:
    lat = lk.Lattice((4, 4))
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 4, bins=4, hidden=(4,))).to(torch.float64).to(device)
    x, log_q = model.sample(8, lk.backends.rng(3, backend="torch", device=device))
    assert_close(stop_gradient_log_prob(model, x), log_q, rtol=1e-7, atol=1e-7, check_dtype=True)
    tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, beta=2.0),
                 TrainConfig(steps=30, batch_size=32, lr=1e-2, gradient="path", device=device))
    before = tr.evaluate(512)
    tr.train()
    assert tr.evaluate(512)["eval_loss"] < before["eval_loss"]
    with pytest.raises(ValueError, match="gradient"):
        TrainConfig(gradient="score").validate()


def test_compile_option_switches_the_spline_layers() -> None:
    """``TrainConfig.compile`` points the spline layers at the compiled function (the compilation
    itself happens at the first call and is tested in test_splines.py; ``"layers"``: test_compiled_layers.py);
    values other than a bool, "splines" and "layers" are refused."""
    from latticekit.flows import circular_rq_spline, u1_gauge_flow

    lat = lk.Lattice((4, 4))
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, n_layers=2, hidden=(2,)))
    tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, 1.0), TrainConfig(steps=1, compile=True))
    assert all(layer._spline is not circular_rq_spline for layer in tr.model.flow.layers)
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes").validate()  # type: ignore[arg-type]


def test_fused_optimizer_gives_the_default_update(device: str) -> None:
    """``TrainConfig.fused`` (the default) selects torch's fused Adam/AdamW; after several steps the
    parameters equal those of the default implementation up to float64 rounding."""
    from latticekit.flows import u1_gauge_flow

    lat = lk.Lattice((4, 4))
    trained = []
    for fused in (True, False):
        for opt in ("adam", "adamw"):
            torch.manual_seed(5)
            model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, n_layers=2, hidden=(3,)))
            tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, 1.0),
                         TrainConfig(steps=5, batch_size=8, lr=1e-2, optimizer=opt, weight_decay=0.1, fused=fused,
                                     device=device, seed=2))
            assert tr.optimizer.defaults["fused"] is (True if fused else None)
            tr.train()
            trained.append(torch.cat([p.detach().flatten() for p in tr.model.parameters()]))
    for a, b in zip(trained[:2], trained[2:]):
        assert_close(a, b, rtol=1e-10, atol=1e-10, check_dtype=True)
    # Adam and AdamW (weight decay 0.1) differ, so the comparison would see a wrong update
    assert float((trained[0] - trained[1]).abs().max()) > 1e-6
    with pytest.raises(ValueError, match="fused"):
        TrainConfig(fused=1).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 2.5}, r"^steps=2.5: expected an integer"),          # ran 3 steps
    ({"steps": True}, r"^steps=True: expected an integer"),        # ran 1 step
    ({"eval_every": 1.5}, r"^eval_every=1.5"), ({"warmup_steps": 1.5}, r"^warmup_steps=1.5"),
    ({"step_size": 1.5}, r"^step_size=1.5"), ({"seed": 0.5}, r"^seed=0.5"),
    ({"eps": math.inf}, r"^eps=inf: expected a finite real number"),   # no update at all
    ({"lr": math.inf}, r"^lr=inf: expected a finite real number"),     # NaN parameters after one step
    ({"clip_norm": math.inf}, r"^clip_norm=inf"), ({"gamma": True}, r"^gamma=True"),
    ({"betas": (True, 0.9)}, r"^betas="),
])
def test_train_config_types_are_checked(kwargs, match) -> None:
    """The config schema checks the jobs' types; library callers of TrainConfig get the same refusals (user
    probe: they were truncated or accepted)."""
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs).validate()
    TrainConfig(steps=np.int64(3), lr=np.float32(1e-3), clip_norm=None).validate()   # NumPy scalars are fine
