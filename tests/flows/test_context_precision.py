"""bfloat16 context networks (latticekit/flows/context_precision.py, ``TrainConfig.context_dtype``).

What must hold:
- A ``ConvNet`` set to bfloat16 computes exactly the network with its weights and input rounded to bfloat16
  (bitwise against a bfloat16 copy of the net: output, stripe output and parameter gradients), returns
  float32, and leaves float64 inputs alone (bitwise).
- The option reaches every context network of a model through the Trainer, and is refused where it would do
  nothing (float64 training, a model without a ConvNet) or is not offered.
- Sampling stays exact: a flow trained and sampled with bfloat16 contexts gives the exact 2D U(1) plaquette
  through flow MCMC, and its log q agrees with an independent evaluation (the inverse direction).

On the CPU and, with a GPU, on CUDA (the ``device`` fixture).
"""

from __future__ import annotations

import copy
import math

import pytest

import latticekit as lk
from latticekit.actions import Phi4Action, WilsonGaugeAction
from latticekit.exact import u1_2d_plaquette
from latticekit.flows import (
    CONTEXT_DTYPES,
    ConvNet,
    HaarPrior,
    Model,
    TrainConfig,
    Trainer,
    independence_metropolis,
    scalar_coupling_flow,
    set_context_dtype,
    u1_gauge_flow,
)
from latticekit.observables import average_plaquette
from latticekit.testing import assert_close, assert_logdet_matches

torch = pytest.importorskip("torch")


def _net(device: str) -> ConvNet:
    torch.manual_seed(0)
    net = ConvNet(2, 2, 7, hidden=(8, 8))
    with torch.no_grad():   # away from the initialisation: every weight matters
        for p in net.parameters():
            p.normal_(std=0.3)
    return net.to(device)


def test_convnet_is_the_bfloat16_network(device):
    net = _net(device)
    ref = copy.deepcopy(net).to(torch.bfloat16)
    assert set_context_dtype(net, "bfloat16") == 1 and net.compute_dtype is torch.bfloat16
    x = torch.randn(6, 2, 8, 4, device=device, requires_grad=True)
    xr = x.detach().to(torch.bfloat16).requires_grad_()
    y = net(x)
    yr = ref(xr)
    assert y.dtype == torch.float32
    assert torch.equal(y, yr.float())
    g = torch.randn_like(y)
    y.backward(g)
    yr.backward(g.to(torch.bfloat16))
    for (name, p), pr in zip(net.named_parameters(), ref.parameters()):
        assert p.grad.dtype == torch.float32, name
        assert torch.equal(p.grad, pr.grad.float()), name
    # the input gradient: the periodic padding runs before autocast's cast, so its backward sums the wrapped
    # contributions in float32 where the bfloat16 copy sums them in bfloat16 (one bfloat16 rounding, 2^-8)
    assert_close(x.grad, xr.grad.float(), rtol=2 ** -7, atol=2 ** -7 * float(x.grad.abs().max()))
    # the stripe evaluation (row slabs, strided last convolution) in bfloat16 too, along both axes
    for axis, period in ((0, 4), (1, 2)):
        assert torch.equal(net.forward_stripe(x, axis, period, 1), ref.forward_stripe(xr, axis, period, 1).float())
    # the float32 network differs by bfloat16 rounding (8 significant bits, three layers), not more
    f32 = copy.deepcopy(net)
    assert set_context_dtype(f32, None) == 1 and f32.compute_dtype is None
    out32 = f32(x).detach()
    y = y.detach()
    assert not torch.equal(out32, y)
    assert float((out32 - y).abs().max()) < 3 * 2 ** -8 * float(out32.abs().max())


def test_float64_inputs_are_not_affected(device):
    net = _net(device).double()
    plain = copy.deepcopy(net)
    set_context_dtype(net, torch.bfloat16)
    x = torch.randn(3, 2, 4, 8, dtype=torch.float64, device=device)
    assert torch.equal(net(x), plain(x))
    assert torch.equal(net.forward_stripe(x, 0, 4, 2), plain.forward_stripe(x, 0, 4, 2))


def test_set_context_dtype_refusals():
    net = ConvNet(1, 1, 1)
    assert CONTEXT_DTYPES == ("bfloat16",)
    with pytest.raises(ValueError, match="dtype='float16'"):
        set_context_dtype(net, "float16")
    with pytest.raises(ValueError, match="dtype=torch.float16"):
        set_context_dtype(net, torch.float16)
    with pytest.raises(TypeError, match="model=list"):
        set_context_dtype([net], "bfloat16")
    assert set_context_dtype(torch.nn.Linear(2, 2), "bfloat16") == 0


class _Width(torch.nn.Module):
    """A Gaussian of learnable width on a 2 x 2 lattice: a trainable model without a ConvNet."""

    def __init__(self) -> None:
        super().__init__()
        self.log_s = torch.nn.Parameter(torch.zeros(()))

    def sample(self, n, rng, context=None):
        z = torch.randn(n, 2, 2, generator=rng, dtype=self.log_s.dtype)
        return self.log_s.exp() * z, self.log_prob(self.log_s.exp() * z)

    def log_prob(self, x, context=None):   # 4 independent N(0, s^2)
        return -0.5 * (x / self.log_s.exp()).square().sum((1, 2)) - 4 * self.log_s - 2 * math.log(2 * math.pi)


def _u1_model(lat: lk.Lattice) -> Model:
    torch.manual_seed(5)
    return Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, n_layers=4, hidden=(8,), bins=4))


def test_trainer_option_and_refusals():
    lat = lk.Lattice((4, 4))
    action = WilsonGaugeAction(lk.U1, lat, 1.0)
    with pytest.raises(ValueError, match="context_dtype='bfloat16' needs dtype='float32'"):
        Trainer(_u1_model(lat), action, TrainConfig(steps=1, context_dtype="bfloat16"))
    with pytest.raises(ValueError, match="context_dtype='float16'"):
        Trainer(_u1_model(lat), action, TrainConfig(steps=1, dtype="float32", context_dtype="float16"))
    with pytest.raises(ValueError, match=r"the model \(_Width\) has no ConvNet context network"):
        Trainer(_Width(), Phi4Action(lk.Lattice((2, 2)), 0.1, 0.0),
                TrainConfig(steps=1, dtype="float32", context_dtype="bfloat16"))
    tr = Trainer(_u1_model(lat), action, TrainConfig(steps=2, batch_size=8, dtype="float32",
                                                     context_dtype="bfloat16"))
    nets = [m for m in tr.model.modules() if isinstance(m, ConvNet)]
    assert len(nets) == 4 and all(n.compute_dtype is torch.bfloat16 for n in nets)
    hist = tr.train()
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())


def test_flow_mcmc_with_bfloat16_contexts_is_exact():
    """A 2D U(1) flow trained and sampled with bfloat16 contexts (float32 otherwise), 4x4, beta = 1.5.

    - Each layer's log-Jacobian equals its autograd Jacobian's (float32 tolerances). The inverse is checked through
      ``log_prob`` below, not per layer: it recomputes the contexts, and a bfloat16 rounding that falls the other
      way moves a round-tripped angle by ~5e-4 on an occasional site (one in 256 with these weights).
      Per layer, not for the whole flow: autocast rounds the cotangents that flow back through a context network
      to bfloat16, so the whole flow's autograd Jacobian carries bfloat16 errors in the entries that pass through a
      context, and the product of non-triangular layers lets them into its determinant (0.01-0.3 here); a layer's
      own Jacobian has unit cotangents, exact in bfloat16.
    - log q of the samples against the inverse direction (``log_prob``): equal to float32 rounding except where a
      bfloat16 rounding of a recomputed context output falls the other way (about 1% of the samples here,
      module docstring of context_precision.py); a context evaluated in float32 in either direction would differ
      on nearly every sample.
    - Flow MCMC (40000 steps, acceptance within 0.4-0.8) gives the exact plaquette within 4 Gamma-method errors; a
      log q off by the bfloat16 rounding of the contexts (order 1e-2 per sample) would not be detected at this
      statistics, a wrong log-Jacobian (order 1) would.

    Training: 100 steps of batch 128 with float32 contexts; the contexts are switched to bfloat16 for the checks.
    Exactness does not depend on how the weights were found, and training with bfloat16 contexts is tested above;
    on a CPU without bfloat16 arithmetic (an AMD EPYC here) the same training with bfloat16 contexts took 25 s
    instead of 9. Acceptance 0.49 and a plaquette 0.2 errors from the exact value.
    """
    lat = lk.Lattice((4, 4))
    beta = 1.5
    torch.manual_seed(5)
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, n_layers=8, hidden=(16,), bins=6))
    action = WilsonGaugeAction(lk.U1, lat, beta)
    tr = Trainer(model, action, TrainConfig(steps=100, batch_size=128, lr=3e-3, dtype="float32", seed=2))
    tr.train()
    model = tr.model
    assert set_context_dtype(model, "bfloat16") == 8   # one context network per layer
    g = lk.backends.rng(3, backend="torch")
    z = model.prior.sample(8, g)[0]
    for i, layer in enumerate(model.flow.layers):
        assert_logdet_matches(layer, z, group=lk.U1, msg=f"layer {i}")
        with torch.no_grad():
            z = layer(z)[0]
    with torch.no_grad():
        x, log_q = model.sample(4096, g)
        d = (model.log_prob(x) - log_q).abs()
    assert float(d.median()) < 1e-5
    assert 0 < float((d > 1e-4).double().mean()) < 0.05
    res = independence_metropolis(model, action, 40000, lk.backends.rng(5, backend="torch"), batch_size=8192,
                                  observables={"plaquette": lambda U: average_plaquette(U, lk.U1, lat)})
    assert 0.4 < res.acceptance.rate < 0.8
    gm = res.analysis["plaquette"]
    exact = u1_2d_plaquette(beta, (4, 4))
    assert abs(gm.value - exact) < 4 * gm.error, (gm.value, gm.error, exact)
