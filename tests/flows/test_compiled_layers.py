"""Flow layers as compiled graphs of their own (latticekit/flows/compiled_layers.py, ``TrainConfig.compile =
"layers"``; issue 19 item 3): the same map, log-Jacobian, inverse and gradients as the eager layers, one graph per
layer (no graph break, no eager fallback), and the same training trajectory.

Compiled on the CPU (Inductor's C++ kernels) and, with a GPU, on CUDA, where the default mode replays each
layer as a CUDA graph (the ``device`` fixture; ``-k cuda``). The compiler reorders and fuses floating-point
operations, so the comparisons are to float64 rounding (1e-12 relative: the layers here are a few hundred
operations deep; a wrong mask, sign or Jacobian term would differ at order 1). Each layer costs Inductor a few
seconds on a cold cache: the models are two small layers.
"""

from __future__ import annotations

import copy
import pickle

import pytest

import latticekit as lk
from latticekit.actions import Phi4Action, WilsonGaugeAction
from latticekit.flows import (
    Flow,
    GaussianPrior,
    HaarPrior,
    InverseFlow,
    LayerCompiler,
    Model,
    TrainConfig,
    Trainer,
    compile_layers,
    recompute_layers,
    scalar_coupling_flow,
    u1_gauge_flow,
)
from latticekit.testing import assert_close

torch = pytest.importorskip("torch")
counters = pytest.importorskip("torch._dynamo.utils").counters


def _u1_model(device: str) -> tuple[Model, lk.Lattice]:
    lat = lk.Lattice((4, 4))
    torch.manual_seed(3)
    flow = u1_gauge_flow(lat, n_layers=2, hidden=(4,), bins=4)
    # away from the identity initialisation, so that every term of the map is exercised
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return Model(HaarPrior(lk.U1, lat), flow).to(dtype=torch.float64, device=device), lat


def _mark(device: str) -> None:
    if device == "cuda":
        torch.compiler.cudagraph_mark_step_begin()


def _evaluate(m: Model, x, device: str) -> tuple:
    """Map, log-det, inverse and its log-det, and the parameter gradients of one loss, cloned at once (outputs of
    a CUDA graph live in memory that its next replay reuses)."""
    m.zero_grad()
    _mark(device)
    y, ld = m.flow(x)
    y_c, ld_c = y.detach().clone(), ld.detach().clone()
    x_back, ld_inv = m.flow.inverse(y.detach())
    x_back, ld_inv = x_back.detach().clone(), ld_inv.detach().clone()
    (y.sin().sum() + ld.sum()).backward()
    return y_c, ld_c, x_back, ld_inv, [p.grad.clone() for p in m.parameters()]


def test_compiled_layers_give_the_eager_map_log_det_inverse_and_gradients(device: str) -> None:
    """Three calls of the compiled model (on CUDA the first one of each graph is a warm-up, the second records the
    CUDA graph and the third replays it) against the eager model."""
    model, lat = _u1_model(device)
    eager = copy.deepcopy(model)
    assert compile_layers(model) == 2
    x = 6.0 * torch.rand((3, 2, 4, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    e = _evaluate(eager, x, device)
    counters.clear()
    for _ in range(3):
        c = _evaluate(model, x, device)
        for a, b in zip(c[:4], e[:4]):
            assert_close(a, b, rtol=1e-12, atol=1e-12)
        for a, b in zip(c[4], e[4]):
            assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))
        assert_close(c[3], -c[1], rtol=1e-10, atol=1e-10)       # the inverse's log-det undoes the forward's
    # each layer ran as its own graph: forward and inverse callers of both layers, no graph break
    assert set(model.flow.compiled._callers) == {(i, inv, x.device.type) for i in (0, 1) for inv in (False, True)}
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_a_deep_copy_and_a_float32_copy_use_their_own_parameters(device: str) -> None:
    """The callers take the layer as an argument: a copy (another dtype, other parameters) is evaluated with
    its own parameters, not with those of the model that was compiled first."""
    model, lat = _u1_model(device)
    compile_layers(model)
    x = torch.rand((2, 2, 4, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(2)).to(device)
    _mark(device)
    model.flow(x)
    other = copy.deepcopy(model)
    assert other.flow.compiled is model.flow.compiled
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    reference = copy.deepcopy(other)
    compile_layers(reference, enabled=False)
    _mark(device)
    y, ld = other.flow(x)
    y_ref, ld_ref = reference.flow(x)
    assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    assert_close(ld, ld_ref, rtol=1e-12, atol=1e-12)
    f32 = copy.deepcopy(model).to(torch.float32)
    _mark(device)
    y32, _ = f32.flow(x.float())
    assert y32.dtype == torch.float32
    assert_close(y32.double(), model.flow(x)[0].detach(), rtol=1e-4, atol=1e-4)   # float32 rounding


def test_trainer_compile_layers_follows_the_eager_trajectory(device: str) -> None:
    """Four float64 steps of a phi^4 affine flow with the same seeds (on CUDA: CUDA-graph warm-up, recording and
    replays): the losses and the trained parameters of the compiled layers equal the eager ones to rounding; the
    option also works with recomputed activations."""
    lat = lk.Lattice((4, 4))
    action = Phi4Action(lat, 0.5, 0.5)
    runs = {}
    for option, recompute in ((False, False), ("layers", False), ("layers", True)):
        torch.manual_seed(0)
        model = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2, hidden=(4,)))
        tr = Trainer(model, action, TrainConfig(steps=4, batch_size=8, lr=1e-2, seed=5, device=device,
                                                compile=option, recompute_layers=recompute))
        hist = tr.train()
        runs[(option, recompute)] = ([m["loss"] for m in hist], torch.cat([p.detach().flatten()
                                                                            for p in tr.model.parameters()]))
        assert (tr.model.flow.compiled is not None) == (option == "layers")
    ref_loss, ref_params = runs[(False, False)]
    for key in (("layers", False), ("layers", True)):
        loss, params = runs[key]
        assert_close(torch.tensor(loss), torch.tensor(ref_loss), rtol=1e-12, atol=1e-12)
        assert_close(params, ref_params, rtol=1e-12, atol=1e-12)


def test_compile_layers_nested_flows_options_and_refusals() -> None:
    lat = lk.Lattice((4, 4))
    inner = scalar_coupling_flow(lat, 2, hidden=(2,))
    flow = Flow([scalar_coupling_flow(lat, 2, hidden=(2,)), InverseFlow(inner), inner.layers[0]])
    # the leaves: two layers of each nested flow and the last one; the nested flows and the InverseFlow holding
    # one run eagerly (their flows compile their own layers). The GPU's mode, on the CPU Inductor without CUDA graphs
    assert compile_layers(flow, mode="reduce-overhead") == 5
    assert flow.compiled.eager == {0, 1} and inner.compiled.eager == frozenset()
    assert all(f.compiled is not None for f in flow.modules() if isinstance(f, Flow))
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    flow.double()
    y, ld = flow(x)
    compile_layers(flow, enabled=False)
    assert flow.layers[0].compiled is None
    y_eager, ld_eager = flow(x)
    assert_close(y, y_eager, rtol=1e-12, atol=1e-12)
    assert_close(ld, ld_eager, rtol=1e-12, atol=1e-12)
    back = pickle.loads(pickle.dumps(LayerCompiler("reduce-overhead")))
    assert back.mode == "reduce-overhead" and not back._callers
    compile_layers(flow, mode="reduce-overhead")
    back = pickle.loads(pickle.dumps(flow.compiled))
    assert back.mode == "reduce-overhead" and back.eager == {0, 1} and not back._callers
    assert LayerCompiler().mode_for(torch.device("cuda")) == "reduce-overhead"
    assert LayerCompiler().mode_for(torch.device("cpu")) == "default"
    with pytest.raises(ValueError, match="mode='fast'"):
        compile_layers(flow, mode="fast")
    with pytest.raises(TypeError, match="model=function"):
        compile_layers(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compile='sometimes'"):
        TrainConfig(compile="sometimes").validate()
    with pytest.raises(ValueError, match="no Flow with layers"):
        Trainer(Model(GaussianPrior(lat.shape), Flow([])), Phi4Action(lat, 0.5, 0.5),
                TrainConfig(steps=1, compile="layers"))
    assert recompute_layers(flow) == 3                                    # unaffected by the compilation
