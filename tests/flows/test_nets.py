"""Periodic context CNNs (``latticekit.flows.nets.ConvNet``) in any number of lattice dimensions.

Native ``Conv{1,2,3}d`` layers and spatially separated blocks (one periodic 1D convolution per
lattice axis, Abbott et al. arXiv:2208.03832): shapes, translation equivariance under arbitrary
periodic shifts, an explicit roll-based reference (also for kernels longer than an extent), tiling
consistency, pointwise limit, zero initialisation, parameter counts, autograd, bad arguments.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.flows import AffineCoupling, ConvNet
from latticekit.flows.nets import _SeparableBlock, periodic_pad
from latticekit.testing import assert_close

F64 = torch.float64


def _net(*args: Any, seed: int = 0, **kw: Any) -> ConvNet:
    torch.manual_seed(seed)
    return ConvNet(*args, **kw).to(F64)


def _x(shape: tuple[int, ...], seed: int = 1, device: str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(device)


def _check_stripe(net: ConvNet, shape: tuple[int, ...], axis: int, period: int, offset: int, device: str,
                  seed: int) -> None:
    """``net.forward_stripe`` equals the full output restricted to the stripe, in values and in the gradients
    with respect to the input and every parameter."""
    x = _x((2, 3) + shape, device=device).requires_grad_()
    rows = torch.arange(offset, shape[axis], period, device=device)
    full = net(x).index_select(2 + axis, rows)
    stripe = net.forward_stripe(x, axis, period, offset)
    assert stripe.shape == full.shape
    assert_close(stripe, full, rtol=1e-5, atol=1e-12)
    w = torch.randn(full.shape, dtype=F64, generator=torch.Generator().manual_seed(seed)).to(device)
    g_full = torch.autograd.grad((full * w).sum(), [x, *net.parameters()])
    g_stripe = torch.autograd.grad((stripe * w).sum(), [x, *net.parameters()])
    for a, b in zip(g_full, g_stripe):
        assert_close(a, b, rtol=1e-5, atol=1e-12)


def _block_reference(block: _SeparableBlock, x: torch.Tensor) -> torch.Tensor:
    """A separable block written out: out(n) = sum_j w_j x(n + j - p) along each axis, via torch.roll."""
    for k, ac in enumerate(block.convs):
        w = ac.conv.weight                                   # (C_out, C_in, K)
        p = w.shape[-1] // 2
        # cross-correlation: out[i] = sum_j w[j] x[(i + j - p) mod L], and roll(x, s)[i] = x[i - s]
        x = sum(torch.einsum("oc,nc...->no...", w[:, :, j], torch.roll(x, p - j, dims=2 + k))
                for j in range(w.shape[-1]))
        if ac.conv.bias is not None:
            x = x + ac.conv.bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    return x


def _net_reference(net: ConvNet, x: torch.Tensor) -> torch.Tensor:
    for m in net.net:
        x = _block_reference(m, x) if isinstance(m, _SeparableBlock) else m(x)
    return x


# -- shapes and layer kinds -----------------------------------------------------------------------
@pytest.mark.parametrize("nd,separable,shape", [
    (1, None, (6,)), (2, None, (4, 6)), (3, None, (2, 4, 6)), (4, None, (2, 4, 2, 6)),
    (5, None, (2, 2, 4, 2, 2)), (2, True, (4, 6)), (1, True, (5,)), (3, True, (2, 3, 4)),
])
def test_output_shape_and_layer_kind(nd: int, separable: bool | None, shape: tuple[int, ...]) -> None:
    net = _net(nd, 3, 2, hidden=(4, 5), kernel_size=3, separable=separable)
    y = net(_x((2, 3) + shape))
    assert y.shape == (2, 2) + shape and y.dtype == F64
    expect_sep = nd >= 4 if separable is None else separable
    assert net.separable is expect_sep and net.nd == nd
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))]
    if expect_sep:
        assert len(convs) == 3 * nd and all(isinstance(c, torch.nn.Conv1d) for c in convs)
        # bias on the last 1D convolution of each block only
        assert [c.bias is not None for c in convs] == ([False] * (nd - 1) + [True]) * 3
    else:
        # native circular convolutions (padded by periodic_pad); the repr, which enters checkpoint
        # architecture hashes, is that of the torch module
        assert len(convs) == 3 and all(c.padding_mode == "circular" for c in convs)
        assert isinstance(convs[0], (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[nd - 1])
        assert repr(convs[0]) == repr((torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[nd - 1](
            3, 4, 3, padding=1, padding_mode="circular"))


def test_native_state_dict_keys_unchanged() -> None:
    # default (native) layout for nd <= 3: checkpoints of earlier versions keep loading
    net = ConvNet(2, 1, 2, hidden=(4,), final_tanh=True)
    assert list(net.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert net.state_dict()["net.0.weight"].shape == (4, 1, 3, 3)
    ConvNet(2, 1, 2, hidden=(4,), final_tanh=True).load_state_dict(net.state_dict())


def _check_shifts(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...], seed: int) -> None:
    """``net`` commutes with every nontrivial shift along each axis, then a random shift along all axes at once."""
    nd = len(shape)
    g = torch.Generator().manual_seed(seed)
    shifts = [{k: s} for k in range(nd) for s in range(1, shape[k])]
    shifts.append({k: int(torch.randint(0, shape[k], (), generator=g)) for k in range(nd)})
    for sh in shifts:
        dims = tuple(2 + k for k in sh)
        s = tuple(sh.values())
        assert_close(net(torch.roll(x, s, dims=dims)), torch.roll(y, s, dims=dims), rtol=0, atol=1e-12,
                     msg=f"shift {sh}")


# -- translation equivariance ---------------------------------------------------------------------
@pytest.mark.parametrize("nd,separable,shape", [
    (1, False, (7,)), (2, False, (4, 5)), (3, False, (3, 4, 2)),
    (1, True, (7,)), (2, True, (4, 5)), (3, True, (3, 4, 2)), (4, None, (2, 3, 4, 3)),
])
def test_translation_equivariance(nd: int, separable: bool | None, shape: tuple[int, ...], device: str) -> None:
    net = _net(nd, 2, 3, hidden=(4,), kernel_size=3, act="tanh", separable=separable).to(device)
    x = _x((2, 2) + shape, device=device)
    with torch.no_grad():
        y = net(x)
        _check_shifts(net, x, y, shape, seed=nd)
        # the check can fail: the output is not a constant field, so a wrong shift would be seen
        assert float((torch.roll(y, 1, dims=2) - y).abs().max()) > 1e-3


# -- explicit references ----------------------------------------------------------------------
@pytest.mark.parametrize("nd,shape,kernel", [
    (2, (4, 6), 3),
    (3, (2, 3, 5), 7),        # kernel longer than the extents 2 and 3 (padding 3 > 2): wraps around
    (4, (2, 1, 3, 2), 5),
])
def test_separable_matches_roll_reference(nd: int, shape: tuple[int, ...], kernel: int) -> None:
    net = _net(nd, 2, 3, hidden=(3,), kernel_size=kernel, act="gelu", separable=True, final_tanh=True)
    x = _x((3, 2) + shape)
    with torch.no_grad():
        assert_close(net(x), _net_reference(net, x), rtol=1e-12, atol=1e-12, check_dtype=True)


@pytest.mark.parametrize("nd,shape,kernel", [(1, (5,), 3), (2, (4, 6), 3), (2, (3, 5), 5), (3, (2, 3, 4), 3)])
def test_native_matches_torch_circular_padding(nd: int, shape: tuple[int, ...], kernel: int) -> None:
    # the index-based periodic padding gives the values (and gradients) of padding_mode="circular"
    net = _net(nd, 2, 3, hidden=(4,), kernel_size=kernel, act="tanh", separable=False)
    x = _x((3, 2) + shape).requires_grad_()
    p = kernel // 2

    def reference(h: torch.Tensor) -> torch.Tensor:
        for m in net.net:
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
                conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[nd - 1]
                h = conv(torch.nn.functional.pad(h, [p] * (2 * nd), mode="circular"), m.weight, m.bias)
            else:
                h = m(h)
        return h

    y, y_ref = net(x), reference(x)
    assert_close(y, y_ref, rtol=1e-12, atol=1e-12, check_dtype=True)
    g = torch.autograd.grad(y.square().sum(), (x, *net.parameters()))
    g_ref = torch.autograd.grad(y_ref.square().sum(), (x, *net.parameters()))
    for a, b in zip(g, g_ref):
        assert_close(a, b, rtol=1e-12, atol=1e-12, check_dtype=True)


def test_periodic_pad_wraps_several_times() -> None:
    x = torch.arange(3.0).reshape(1, 3)
    assert periodic_pad(x, 4, axes=(1,)).tolist() == [[2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]]
    # native 2D convolution with a kernel longer than an extent (padding 2 > 1): the tiled lattice agrees
    net = _net(2, 1, 2, hidden=(3,), kernel_size=5, act="tanh", separable=False)
    x2 = _x((2, 1, 1, 4))
    with torch.no_grad():
        assert_close(net(x2.repeat(1, 1, 6, 2)), net(x2).repeat(1, 1, 6, 2), rtol=1e-12, atol=1e-12, check_dtype=True)


@pytest.mark.parametrize("shape,p,axes", [
    ((3, 4, 5, 6), 1, (2, 3)), ((3, 4, 5, 6), 2, (3,)), ((2, 3, 4), 3, (2,)), ((2, 3, 4), 4, (1, 2)),
    ((2, 3, 1), 1, (2,)), ((2, 3, 4, 5), 2, (-1, -2)), ((2, 2, 3, 4, 5), 1, (2, 3, 4)),
])
def test_periodic_pad_equals_index_select_padding_values_and_gradients(shape: tuple[int, ...], p: int,
                                                                      axes: tuple[int, ...]) -> None:
    """The cat padding with its hand-written backward (p <= L) against the index_select padding: the same
    values, and the same gradients bit for bit (per axis each input element receives its two or three
    terms in the same order either way, up to swapping the first two). Also double backward and the vmap
    Jacobian (latticekit.testing.jacobian uses torch.autograd.functional.jacobian(vectorize=True))."""
    from latticekit.flows.nets import _periodic_pad_index

    x = _x(shape).requires_grad_(True)
    y, y_ref = periodic_pad(x, p, axes), _periodic_pad_index(x, p, [a % x.ndim for a in axes])
    assert torch.equal(y, y_ref)
    g = _x(tuple(y.shape), seed=2)
    assert torch.equal(torch.autograd.grad(y, x, g)[0], torch.autograd.grad(y_ref, x, g)[0])
    assert torch.autograd.gradgradcheck(lambda t: periodic_pad(t, p, axes), (x,))
    J = torch.autograd.functional.jacobian(lambda t: periodic_pad(t, p, axes), x.detach(), vectorize=True)
    J_ref = torch.autograd.functional.jacobian(lambda t: _periodic_pad_index(t, p, [a % t.ndim for a in axes]),
                                               x.detach())
    assert torch.equal(J, J_ref)


def test_u1_training_losses_unchanged_by_the_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same seed, same loss sequence and parameters with the new padding as with the index_select padding it
    replaced (2D U(1) stripes, native 2D nets, float64): bitwise, see the test above; compared with
    rtol 1e-12 so that a platform kernel that reorders a sum elsewhere does not fail it."""
    import latticekit.flows.nets as nets
    from latticekit.actions import WilsonGaugeAction
    from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow

    lat = lk.Lattice((8, 4))

    def run() -> tuple[list[float], list[torch.Tensor]]:
        torch.manual_seed(3)
        model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 4, bins=4, hidden=(6, 5)))
        tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, 2.0), TrainConfig(steps=5, batch_size=16, lr=1e-2, seed=4))
        return [h["loss"] for h in tr.train()], [q.detach().clone() for q in model.parameters()]

    loss_new, par_new = run()
    monkeypatch.setattr(nets, "periodic_pad", nets._periodic_pad_index)
    loss_old, par_old = run()
    assert_close(torch.tensor(loss_new, dtype=F64), torch.tensor(loss_old, dtype=F64), rtol=1e-12, atol=0.0)
    for a, b in zip(par_new, par_old):
        assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_kernel_longer_than_extent_equals_tiled_computation() -> None:
    # a field periodic on (2, 3) is periodic on (6, 6); the net must give the tiled output, and on the
    # tiled lattice padding 2 <= 6 never wraps more than once
    net = _net(2, 1, 2, hidden=(3,), kernel_size=5, act="tanh", separable=True)
    x = _x((2, 1, 2, 3))
    with torch.no_grad():
        y = net(x)
        yt = net(x.repeat(1, 1, 3, 2))
    assert_close(yt, y.repeat(1, 1, 3, 2), rtol=1e-12, atol=1e-12, check_dtype=True)
    # extent 1: the 1D convolution reduces to the sum of the kernel weights
    net1 = _net(1, 1, 1, hidden=(), kernel_size=3, separable=True)
    c = net1.net[0].convs[0].conv
    with torch.no_grad():
        assert_close(net1(torch.ones(1, 1, 1, dtype=F64)).flatten(), c.weight.sum().reshape(1) + c.bias,
                     rtol=1e-7, atol=1e-7, check_dtype=True)


def test_separable_1d_equals_native_conv1d() -> None:
    native = _net(1, 2, 3, hidden=(4,), separable=False)
    sep = _net(1, 2, 3, hidden=(4,), separable=True, seed=5)
    with torch.no_grad():
        for i in (0, 2):
            sep.net[i].convs[0].conv.weight.copy_(native.net[i].weight)
            sep.net[i].convs[0].conv.bias.copy_(native.net[i].bias)
        x = _x((2, 2, 6))
        assert_close(sep(x), native(x), rtol=1e-12, atol=1e-12, check_dtype=True)


def test_separable_kernel_one_is_pointwise_linear() -> None:
    net = _net(2, 3, 4, hidden=(), kernel_size=1, separable=True)
    a, b = net.net[0].convs
    W = b.conv.weight[:, :, 0] @ a.conv.weight[:, :, 0]              # (4, 3)
    x = _x((2, 3, 4, 5))
    with torch.no_grad():
        want = torch.einsum("oc,ncij->noij", W, x) + b.conv.bias.reshape(1, -1, 1, 1)
        assert_close(net(x), want, rtol=1e-12, atol=1e-12, check_dtype=True)
    assert a.conv.bias is None


# -- initialisation, parameters, gradients -----------------------------------------------------
@pytest.mark.parametrize("nd,separable", [(2, None), (2, True), (4, None)])
def test_zero_init(nd: int, separable: bool | None) -> None:
    net = _net(nd, 2, 3, hidden=(4,), zero_init=True, final_tanh=True, separable=separable)
    x = _x((2, 2) + (4,) * nd)
    y = net(x)
    assert y.shape == (2, 3) + (4,) * nd and bool((y == 0).all())
    y.square().add(y).sum().backward()
    # the zeroed last layer still receives a gradient (training can leave the identity)
    last = [m for m in net.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))][-1]
    assert float(last.bias.grad.abs().max()) > 0 and float(last.weight.grad.abs().max()) > 0


def test_zero_init_4d_coupling_is_identity() -> None:
    lat = lk.Lattice((2, 2, 4, 2))
    layer = AffineCoupling(lat, 1, hidden=(2,), zero_init=True).to(F64)
    x = _x((3,) + lat.shape)
    y, ld = layer(x)
    assert torch.equal(y, x) and bool((ld == 0).all())


@pytest.mark.parametrize("nd,cin,cout,k", [(1, 2, 3, 3), (2, 3, 2, 1), (3, 1, 4, 5), (4, 2, 3, 3)])
def test_separable_parameter_count(nd: int, cin: int, cout: int, k: int) -> None:
    def block(a: int, b: int) -> int:
        return k * (a * b + (nd - 1) * b * b) + b

    net = ConvNet(nd, cin, cout, hidden=(), kernel_size=k, separable=True)
    assert sum(p.numel() for p in net.parameters()) == block(cin, cout)
    deep = ConvNet(nd, cin, cout, hidden=(5, 2), kernel_size=k, separable=True)
    assert sum(p.numel() for p in deep.parameters()) == block(cin, 5) + block(5, 2) + block(2, cout)
    if nd <= 3:
        native = ConvNet(nd, cin, cout, hidden=(), kernel_size=k)
        assert sum(p.numel() for p in native.parameters()) == k ** nd * cin * cout + cout


@pytest.mark.parametrize("nd,cin,cout,k", [(1, 2, 3, 3), (2, 3, 7, 1), (3, 1, 4, 5), (4, 2, 9, 3), (4, 5, 2, 3)])
def test_separable_width_in_parameter_count(nd: int, cin: int, cout: int, k: int) -> None:
    """``separable_width="in"``: the first ``nd - 1`` 1D convolutions of a block keep ``C_in`` channels (no bias),
    the last one maps ``C_in -> C_out`` (with bias): ``k (C_in C_in (nd - 1) + C_in C_out) + C_out`` parameters."""
    def block(a: int, b: int) -> int:
        return k * (a * a * (nd - 1) + a * b) + b

    net = ConvNet(nd, cin, cout, hidden=(), kernel_size=k, separable=True, separable_width="in")
    assert sum(p.numel() for p in net.parameters()) == block(cin, cout)
    convs = [ac.conv for ac in net.net[0].convs]
    assert [tuple(c.weight.shape) for c in convs] == [(cin, cin, k)] * (nd - 1) + [(cout, cin, k)]
    assert [c.bias is not None for c in convs] == [False] * (nd - 1) + [True]
    deep = ConvNet(nd, cin, cout, hidden=(5, 2), kernel_size=k, separable=True, separable_width="in")
    assert sum(p.numel() for p in deep.parameters()) == block(cin, 5) + block(5, 2) + block(2, cout)
    # the wide-output case it is made for (the 4D pseudofermion heads): fewer weights than "out" (nd = 1: the same net)
    if cout > cin and nd > 1:
        out = ConvNet(nd, cin, cout, hidden=(), kernel_size=k, separable=True)
        assert sum(p.numel() for p in out.parameters()) > sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("nd,separable,shape", [(2, True, (4, 5)), (3, True, (3, 4, 2)), (4, None, (2, 3, 4, 3))])
def test_separable_width_in_shape_reference_and_translations(nd: int, separable: bool | None,
                                                             shape: tuple[int, ...], device: str) -> None:
    net = _net(nd, 2, 6, hidden=(3,), kernel_size=3, act="tanh", separable=separable, separable_width="in").to(device)
    assert net.separable
    x = _x((2, 2) + shape, device=device)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (2, 6) + shape and y.dtype == F64
        # the blocks are the same sequence of periodic 1D convolutions as with "out" (the roll reference)
        assert_close(y, _net_reference(net, x), rtol=1e-12, atol=1e-12, check_dtype=True)
        _check_shifts(net, x, y, shape, seed=nd)
        assert float((torch.roll(y, 1, dims=2) - y).abs().max()) > 1e-3   # not a constant field: the check can fail


def test_separable_width_leaves_native_nets_unchanged() -> None:
    # native convolutions (nd <= 3 by default) have no intermediate channels: "in" builds the same net
    a, b = _net(2, 2, 5, hidden=(3,)), _net(2, 2, 5, hidden=(3,), separable_width="in")
    assert not b.separable
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    x = _x((1, 2, 4, 4))
    with torch.no_grad():
        assert_close(a(x), b(x), rtol=0, atol=0, check_dtype=True)   # same seed, same parameters


@pytest.mark.parametrize("value", ["mid", "", None, "IN"])
def test_separable_width_bad_value(value: Any) -> None:
    with pytest.raises(ValueError, match=r"separable_width=.*expected 'out' or 'in'"):
        ConvNet(4, 1, 2, hidden=(), separable_width=value)


def test_gradcheck_through_periodic_padding() -> None:
    net = _net(3, 1, 2, hidden=(2,), kernel_size=5, act="tanh", separable=True)
    x = _x((1, 1, 2, 3, 1)).requires_grad_(True)
    assert torch.autograd.gradcheck(net, (x,))


# -- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,name", [
    ({"nd": 0}, "nd"), ({"nd": 2.0}, "nd"), ({"nd": 4, "separable": False}, "separable"),
    ({"separable": "yes"}, "separable"), ({"kernel_size": 2}, "kernel_size"), ({"kernel_size": 0}, "kernel_size"),
    ({"in_channels": 0}, "in_channels"), ({"out_channels": -1}, "out_channels"), ({"hidden": (4, 0)}, "hidden"),
    ({"act": "sigmoidal"}, "act"),
])
def test_bad_arguments(kw: dict[str, Any], name: str) -> None:
    args = {"nd": 2, "in_channels": 1, "out_channels": 2, **kw}
    with pytest.raises(ValueError, match=name):
        ConvNet(**args)


def test_separable_rejects_wrong_rank() -> None:
    net = ConvNet(4, 1, 1, hidden=())
    with pytest.raises(ValueError, match="x has shape"):
        net(torch.zeros(1, 2, 2, 2, 2))


@pytest.mark.parametrize("nd, shape, axis, period, offset, kernel, separable", [
    (2, (8, 8), 0, 4, 1, 3, None),
    (2, (8, 4), 1, 4, 3, 3, None),
    (2, (4, 6), 0, 2, 0, 5, None),       # gathered row windows overlap (2p + 1 > period)
    (2, (8, 8), 1, 4, 2, 1, None),       # pointwise last layer: no padding
    (1, (12,), 0, 3, 2, 3, None),
    (3, (4, 2, 4), 2, 2, 1, 3, None),
    (4, (2, 4, 2, 2), 1, 4, 3, 3, None),  # separable: full output, then the stripe
    (2, (8, 8), 0, 4, 0, 3, True),
])
def test_forward_stripe_equals_full_output(nd: int, shape: tuple[int, ...], axis: int, period: int, offset: int,
                                           kernel: int, separable: bool | None, device: str) -> None:
    """The stripe evaluation is the full output restricted to the stripe, values and gradients."""
    net = _net(nd, 3, 5, hidden=(4,), kernel_size=kernel, separable=separable).to(device)
    _check_stripe(net, shape, axis, period, offset, device, seed=3)


@pytest.mark.parametrize("nd, shape, axis, period, offset, kernel", [
    (2, (8, 8), 0, 4, 1, 3),
    (2, (8, 12), 1, 4, 3, 3),
    (2, (6, 16), 1, 8, 5, 5),         # p = 2: slabs of 9 rows, 5 rows out of the middle convolution
    (1, (10,), 0, 5, 4, 3),
    (3, (4, 8, 2), 1, 4, 0, 3),       # an axis of extent 2 among the others: the padding wraps
])
def test_forward_stripe_slabs_deep_net(nd: int, shape: tuple[int, ...], axis: int, period: int, offset: int,
                                       kernel: int, device: str) -> None:
    """With ``2 p + 1 < period`` the last two convolutions run on row slabs folded into the batch (three
    convolutions here, so the slabs start after a full convolution and an activation): the same values and
    gradients as the full output restricted to the stripe."""
    net = _net(nd, 3, 5, hidden=(4, 6), kernel_size=kernel).to(device)
    _check_stripe(net, shape, axis, period, offset, device, seed=5)


@pytest.mark.parametrize("kw, name", [({"axis": 2}, "axis"), ({"period": 3}, "period"), ({"offset": 4}, "offset")])
def test_forward_stripe_bad_arguments(kw: dict[str, Any], name: str) -> None:
    net = _net(2, 1, 1, hidden=())
    args = {"axis": 0, "period": 4, "offset": 1, **kw}
    with pytest.raises(ValueError, match=name):
        net.forward_stripe(_x((1, 1, 8, 8)), **args)
