"""Checkpoints written by the gauge coupling classes before the masks became objects (format 1).

tests/data/legacy_gauge/ holds five models saved by the old code (``U1PlaquetteCoupling`` 2D stripes,
``U1NdPlaquetteCoupling`` 3D and 4D, ``SUPlaquetteCoupling`` SU(3) 2D with learnable staple weights,
``SUNdPlaquetteCoupling`` SU(2) 3D), with the recipe of the equivalent new model and the old layers'
outputs along the old model's trajectory; tests/data/legacy_gauge/make_legacy_checkpoints.py wrote them
(command in its docstring) and also compares old and new layers in one process. Checked here: the
checkpoints load into the new models and every layer reproduces the old layer (to rounding), the
architecture guard refuses other models, tampered masks are detected, and optimizer states are
refused exactly when the weights had to be converted.
"""

from __future__ import annotations

import math
import os
import shutil
from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.flows import CheckpointMismatchError, HaarPrior, Model, load_checkpoint, sun_gauge_flow, u1_gauge_flow
from latticekit.flows.legacy import legacy_modules_repr
from latticekit.testing import assert_close

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "legacy_gauge")
NAMES = ["u1_stripes_4x8", "u1_checkerboard_2x2x4", "u1_checkerboard_4d", "su3_stripes_4x4", "su2_checkerboard_2x2x2"]


def _ref(name: str) -> dict[str, Any]:
    return torch.load(os.path.join(DATA, f"{name}.ref.pt"), weights_only=False)


def _model(recipe: dict[str, Any], **changes: Any) -> tuple[Model, Any]:
    r = {**recipe, **changes}
    lat = lk.Lattice(r["lattice"])
    G = lk.U1 if r["group"] == "U1" else lk.SU(int(r["group"][2:]))
    if G is lk.U1:
        flow = u1_gauge_flow(lat, r["n_layers"], masks=r["masks"], **r["kwargs"])
    else:
        flow = sun_gauge_flow(G, lat, r["n_layers"], masks=r["masks"], **r["kwargs"])
    return Model(HaarPrior(G, lat), flow).to(torch.float64), G


def _link_diff(a: torch.Tensor, b: torch.Tensor, u1: bool) -> torch.Tensor:
    """a - b (U(1) angles modulo 2 pi, in [-pi, pi))."""
    d = a - b
    if u1:
        d = torch.remainder(d + math.pi, 2 * math.pi) - math.pi
    return d


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_and_every_layer_matches(name: str) -> None:
    ref = _ref(name)
    model, G = _model(ref["recipe"])
    payload = load_checkpoint(os.path.join(DATA, f"{name}.pt"), model=model, extra=ref["extra"])
    assert payload["format_version"] == 1 and payload["step"] == 7
    assert payload["description"]["modules"] == legacy_modules_repr(model)
    layers = list(model.flow.layers)
    u1 = G is lk.U1
    with torch.no_grad():
        for (x, y, ld), layer in zip(ref["forward"], layers):
            v, lv = layer(x)
            assert_close(_link_diff(v, y, u1), 0.0, rtol=0, atol=1e-12, msg=f"{name} forward")
            assert_close(lv, ld, rtol=0, atol=1e-10, msg=f"{name} forward logdet")
        for (x, y, ld), layer in zip(ref["inverse"], reversed(layers)):
            v, lv = layer.inverse(x)
            assert_close(_link_diff(v, y, u1), 0.0, rtol=0, atol=1e-12, msg=f"{name} inverse")
            assert_close(lv, ld, rtol=0, atol=1e-10, msg=f"{name} inverse logdet")
    assert len(ref["forward"]) == len(layers) == ref["recipe"]["n_layers"]
    # negative control: the same layers with fresh weights do not reproduce the old outputs
    fresh, _ = _model(ref["recipe"])
    with torch.no_grad():
        x, y, _ = ref["forward"][0]
        assert float(_link_diff(fresh.flow.layers[0](x)[0], y, u1).abs().max()) > 1e-6


@pytest.mark.parametrize("name,change", [
    ("u1_stripes_4x8", {"n_layers": 6}),                                      # another stack
    ("u1_stripes_4x8", {"kwargs": {"bins": 4, "hidden": (4,), "act": "tanh"}}),   # same shapes, other net
    ("u1_checkerboard_2x2x4", {"masks": "stripes", "lattice": (4, 4, 4)}),
    ("su2_checkerboard_2x2x2", {"kwargs": {"bins": 3, "hidden": (3,), "embed": 3, "head_hidden": (4,),
                                           "loop_context": False}}),
])
def test_old_checkpoint_refuses_other_models(name: str, change: dict[str, Any]) -> None:
    ref = _ref(name)
    model, _ = _model(ref["recipe"], **change)
    with pytest.raises(CheckpointMismatchError, match="different architecture"):
        load_checkpoint(os.path.join(DATA, f"{name}.pt"), model=model, extra=ref["extra"])
    # and another action (the extra facts of the description)
    model, _ = _model(ref["recipe"])
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(os.path.join(DATA, f"{name}.pt"), model=model, extra={"action": "something else"})


def test_tampered_masks_are_detected(tmp_path: Any) -> None:
    ref = _ref("u1_checkerboard_2x2x4")
    path = os.path.join(str(tmp_path), "ck.pt")
    shutil.copy(os.path.join(DATA, "u1_checkerboard_2x2x4.pt"), path)
    payload = torch.load(path, weights_only=False)
    key = "flow.layers.3.mask_sites"
    payload["model"][key] = 1.0 - payload["model"][key]
    torch.save(payload, path)
    model, _ = _model(ref["recipe"])
    with pytest.raises(CheckpointMismatchError, match="mask_sites"):
        load_checkpoint(path, model=model, extra=ref["extra"])


def test_optimizer_state_only_without_conversion(tmp_path: Any) -> None:
    # U1NdPlaquetteCoupling checkpoints need reordered input channels: an optimizer state is refused
    ref = _ref("u1_checkerboard_2x2x4")
    model, _ = _model(ref["recipe"])
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(CheckpointMismatchError, match="optimizer=None"):
        load_checkpoint(os.path.join(DATA, "u1_checkerboard_2x2x4.pt"), model=model, optimizer=opt,
                        extra=ref["extra"])
    # the 2D U(1) stripes are converted without any change of the weights: the optimizer request
    # reaches the state check (these checkpoints were written without optimizer state)
    ref = _ref("u1_stripes_4x8")
    model, _ = _model(ref["recipe"])
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(os.path.join(DATA, "u1_stripes_4x8.pt"), model=model,
                        optimizer=torch.optim.Adam(model.parameters()), extra=ref["extra"])


def test_new_checkpoints_round_trip(tmp_path: Any) -> None:
    from latticekit.flows import save_checkpoint
    from latticekit.flows.checkpoint import FORMAT_VERSION

    ref = _ref("su3_stripes_4x4")
    model, _ = _model(ref["recipe"])
    path = os.path.join(str(tmp_path), "new.pt")
    save_checkpoint(path, model=model, step=2)
    other, _ = _model(ref["recipe"])
    payload = load_checkpoint(path, model=other)
    assert payload["format_version"] == FORMAT_VERSION == 2
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    # a model that has no pre-mask class has no legacy repr
    from latticekit.flows.masks import StripeMask

    lat = lk.Lattice((4, 4, 4))
    assert legacy_modules_repr(u1_gauge_flow(lat, masks=[StripeMask(lat, 0, 1)], hidden=(2,))) is None
