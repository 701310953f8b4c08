"""Convolutions in batch pieces (latticekit.flows.conv_pieces): the single call's result, used where it should be.

Every sample's output is its own sum in either case, but torch's matrix product may block a batch of another
size differently (a 2-channel 5 x 5 float64 input split into single samples differs by 1e-15), so forward
values are compared to 1e-13, not bitwise."""

from __future__ import annotations

import math

import pytest
import torch

from latticekit.flows import ConvNet
from latticekit.flows import conv_pieces as cp
from latticekit.testing import assert_close

F64 = torch.float64


def _randn(shape: tuple[int, ...], seed: int, device: str, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(device=device, dtype=dtype)


class _Counting:
    """Wraps the conv functions of conv_pieces and counts their calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.matmul_calls = 0
        orig = dict(cp._CONV_FN)
        matmul = cp._conv1d_matmul

        def wrap(f):  # type: ignore[no-untyped-def]
            def counted(*a, **k):  # type: ignore[no-untyped-def]
                self.calls += 1
                return f(*a, **k)
            return counted

        def counted_matmul(*a, **k):  # type: ignore[no-untyped-def]
            self.matmul_calls += 1
            return wrap(matmul)(*a, **k)

        monkeypatch.setattr(cp, "_CONV_FN", {nd: wrap(f) for nd, f in orig.items()})
        monkeypatch.setattr(cp, "_conv1d_matmul", counted_matmul)


@pytest.mark.parametrize("nd,kwargs", [(1, {}), (2, dict(stride=(3, 1))), (2, dict(padding=1, groups=2)),
                                       (3, dict(dilation=1, padding=(1, 0, 1)))])
def test_pieces_equal_the_single_call(nd: int, kwargs: dict, device: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # every sample's output is its own sum in either case: the forward values agree to rounding (module docstring);
    # the weight and bias gradients sum over the pieces in another order
    x = _randn((7, 4) + (6,) * nd, 1, device).requires_grad_(True)
    w = _randn((6, 4 // kwargs.get("groups", 1)) + (3,) * nd, 2, device).requires_grad_(True)
    b = _randn((6,), 3, device).requires_grad_(True)
    fn = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[nd]
    ref = fn(x, w, b, **kwargs)
    g_ref = torch.autograd.grad((ref ** 2).sum(), [x, w, b])
    count = _Counting(monkeypatch)
    pad = kwargs.get("padding", 0)
    pads = (pad,) * nd if isinstance(pad, int) else pad
    per = 4 * 3 ** nd * math.prod(6 + 2 * p for p in pads) * 8
    out = cp.conv_in_pieces(x, w, b, **kwargs, max_column_bytes=2 * per)   # pieces of 2, 2, 2, 1
    assert count.calls == (4 if device == "cpu" else 1)
    assert_close(out, ref, rtol=1e-13, atol=1e-13)
    for a, r in zip(torch.autograd.grad((out ** 2).sum(), [x, w, b]), g_ref):
        assert_close(a, r, rtol=1e-13, atol=1e-12)
    assert float(g_ref[1].abs().max()) > 1e-1


@pytest.mark.parametrize("length,bias", [(3, True), (4, False), (6, True), (10, True), (11, False)])
def test_short_1d_convolutions_are_one_matrix_product(length: int, bias: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # CPU float64, kernel 3 without padding: outputs of length 1, 2, 4, 8 (<= MATMUL_MAX_LENGTH) run as one matrix
    # product, 9 as torch's conv1d; values and all three gradients are torch's to rounding (another summation order)
    x = _randn((13, 5, length), 1, "cpu").requires_grad_(True)
    w = _randn((7, 5, 3), 2, "cpu").requires_grad_(True)
    b = _randn((7,), 3, "cpu").requires_grad_(True) if bias else None
    ref = torch.nn.functional.conv1d(x, w, b)
    leaves = [x, w] + ([b] if bias else [])
    g_ref = torch.autograd.grad((ref ** 2).sum(), leaves)
    count = _Counting(monkeypatch)
    out = cp.conv_in_pieces(x, w, b)
    assert count.calls == 1 and count.matmul_calls == int(length - 2 <= cp.MATMUL_MAX_LENGTH)
    assert out.shape == ref.shape == (13, 7, length - 2)
    assert_close(out, ref, rtol=1e-13, atol=1e-13)
    for a, r in zip(torch.autograd.grad((out ** 2).sum(), leaves), g_ref):
        assert_close(a, r, rtol=1e-13, atol=1e-12)
    # in pieces of 4 samples: one product per piece
    count = _Counting(monkeypatch)
    per = 5 * 3 * length * 8
    assert_close(cp.conv_in_pieces(x, w, b, max_column_bytes=4 * per), ref, rtol=1e-13, atol=1e-13)
    assert count.calls == 4


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2), dict(dilation=2), dict(groups=5)])
def test_other_1d_convolutions_keep_torchs(kwargs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _randn((4, 5, 6), 1, "cpu")
    w = _randn((5, 5 // kwargs.get("groups", 1), 3), 2, "cpu")
    count = _Counting(monkeypatch)
    out = cp.conv_in_pieces(x, w, **kwargs)
    assert count.calls == 1 and count.matmul_calls == 0
    assert_close(out, torch.nn.functional.conv1d(x, w, **kwargs), rtol=0, atol=0)


def test_float32_and_small_batches_take_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # float32 runs on oneDNN without a column buffer; a batch within the bound is one call
    count = _Counting(monkeypatch)
    w = _randn((3, 2, 3, 3), 2, "cpu")
    cp.conv_in_pieces(_randn((8, 2, 5, 5), 1, "cpu", torch.float32), w.float(), max_column_bytes=1)
    cp.conv_in_pieces(_randn((8, 2, 5, 5), 1, "cpu"), w)
    assert count.calls == 2
    cp.conv_in_pieces(_randn((8, 2, 5, 5), 1, "cpu"), w, max_column_bytes=1)   # one sample per piece
    assert count.calls == 2 + 8


def test_bad_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="weight"):
        cp.conv_in_pieces(torch.zeros(2, 1, 3, 3, 3, 3, dtype=F64), torch.zeros(1, 1, 3, 3, 3, 3, dtype=F64))


@pytest.mark.parametrize("nd,separable", [(2, False), (4, True)])
def test_convnet_in_pieces_is_the_same(nd: int, separable: bool, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the context nets route every convolution through conv_in_pieces (forward, stripe, slabs, separable blocks)
    torch.manual_seed(5)
    net = ConvNet(nd, 2, 5, hidden=(4, 4), kernel_size=3, separable=separable).to(device=device, dtype=F64)
    x = _randn((5, 2) + (4,) * nd, 1, device)
    full, stripe = net(x), net.forward_stripe(x, axis=0, period=4, offset=1)
    count = _Counting(monkeypatch)
    monkeypatch.setattr(cp, "COLUMN_BYTES", 1)                               # every sample its own piece
    assert_close(net(x), full, rtol=1e-13, atol=1e-13)
    assert_close(net.forward_stripe(x, axis=0, period=4, offset=1), stripe, rtol=1e-13, atol=1e-13)
    n_convs = 3 * (nd if separable else 1)
    if device == "cpu":
        assert count.calls > 2 * n_convs                                  # more calls than convolutions: pieces
    assert_close(stripe, full[:, :, 1::4], rtol=1e-12, atol=1e-13)
