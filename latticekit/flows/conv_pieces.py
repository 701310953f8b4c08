"""Convolutions of large float64 batches in pieces on the CPU.

torch has no oneDNN convolution for float64 on the CPU: its fallback (``slow_conv2d`` / ``slow_conv3d``,
also behind ``conv1d``) unfolds the whole batch into a column buffer of
``N * C_in * prod(kernel) * prod(L_out)`` numbers before one matrix product per sample. At the
batch sizes of flow sampling that buffer is hundreds of MB to GB (2.4 GB for a ``32 -> 32`` channel 3x3
convolution at batch 1024 on 32x32; 1 GB for the super-resolving CNF's 5x5 kernel at batch 1024 on
16x16). Above glibc's mmap threshold (1 GiB even after
:func:`latticekit.backends.configure_malloc`) it is mapped, zero-filled page by page by the kernel and
unmapped on every call: 54% of the CPU time of a float64 ``ConvNet`` forward at 32x32, batch 1024, and 58%
of forward + backward, was system time (benchmarks/README.md, "Convolutions in pieces").

:func:`conv_in_pieces` splits the batch so that each piece's column buffer is at most :data:`COLUMN_BYTES`
(4 MB: below the threshold, reused from the heap, and small enough to stay in cache while its matrix
products read it, as far as the timings tell). Measured on the 2-core EPYC (32 MB L3) against 32 MB pieces: a
super-resolving CNF field evaluation (16x16, batch 64 and 1024) in 0.49-0.62x the wall time, the float64
gauge-flow context net in 0.71-0.82x (forward, forward + backward, 16x16 and 32x32, batch 1024); 1, 2 and 8 MB
were within 10% of 4 MB (benchmarks/README.md, "Convolutions in pieces"). Smaller temporaries also fragment the
heap less when activations are recomputed (:mod:`latticekit.flows.recompute`). Every sample's output is its
own sum either way, so the result equals that of one call to rounding: bitwise in most shapes, but torch's
matrix product may block a batch of another size differently (a 2-channel 5 x 5 input split into single
samples differs by 1e-15; the measured 16x16 and 32x32 context nets and the CNF field are bitwise equal).
The weight and bias gradients are sums over the pieces, equal to rounding. float32 and bfloat16 (oneDNN, no
column buffer; bfloat16 under :func:`~latticekit.flows.context_precision.set_context_dtype`) and other devices
(a GPU's caching allocator keeps its buffers; pieces would only add launches) take the one call.

Short 1D convolutions (output length up to :data:`MATMUL_MAX_LENGTH`: the periodic 1D convolutions of the 4D
separable blocks, :class:`~latticekit.flows.ConvNet`, on lattice extents up to 8) run as one matrix product per
piece instead of torch's product per sample, which has only ``L_out`` columns (:func:`_conv1d_matmul`). Measured
(benchmarks/results/conv1d_matmul.json, one thread, quiet machine): forward + backward 1.75-5.4x faster for the
8 -> 1764 channel head convolution of the 2^4 QCD example at lengths 2-8, 1.7-3.6x for 6 -> 8, 16 -> 16 and
32 -> 32 at lengths 2-4 and 0.98-1.35x at 8 (forward alone 1.2-1.5x); from length 16 on neither form wins
consistently (0.8-1.5x), so torch's is kept there. The example's conditional training steps became 1.45-1.65x
faster (benchmarks/results/qcd4d_stage_steps_paired.json).

Examples
--------
>>> import torch
>>> x, w = torch.randn(6, 2, 5, 5, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
>>> bool(torch.allclose(conv_in_pieces(x, w, max_column_bytes=1), torch.nn.functional.conv2d(x, w),
...                     rtol=1e-13, atol=1e-13))
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["COLUMN_BYTES", "MATMUL_MAX_LENGTH", "conv_in_pieces"]

#: the largest column buffer (bytes) of one piece
COLUMN_BYTES: int = 4 * 2 ** 20

#: the longest output of a 1D convolution that runs as one matrix product (:func:`_conv1d_matmul`)
MATMUL_MAX_LENGTH: int = 8

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _takes_matmul(x: torch.Tensor, weight: torch.Tensor, stride: object, padding: object, dilation: object,
                  groups: int) -> bool:
    """Whether a CPU convolution that is not float32 (oneDNN's) runs as :func:`_conv1d_matmul`: 1D, unit stride
    and dilation, no padding or groups, and an output of at most :data:`MATMUL_MAX_LENGTH` sites."""
    if weight.ndim != 3 or groups != 1 or padding not in (0, (0,)) or stride not in (1, (1,)) \
            or dilation not in (1, (1,)):
        return False
    return 1 <= x.shape[-1] - weight.shape[-1] + 1 <= MATMUL_MAX_LENGTH


def _conv1d_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *_: object) -> torch.Tensor:
    """``F.conv1d(x, weight, bias)`` (unit stride, no padding) as one matrix product over the whole batch.

    torch's float64 fallback multiplies one sample at a time, ``(C_out, C_in k) x (C_in k, L_out)``: with the
    short axes of the 4D separable convolutions (``L_out`` = 2 to 8 after the periodic padding) these are
    thousands of matrix products of a few columns each. Here the windows of every sample and output site are the
    rows of one ``(N L_out, C_in k)`` matrix (a view, copied once by ``reshape``) multiplied by the
    ``(C_in k, C_out)`` weight matrix in one call (where that wins, :data:`MATMUL_MAX_LENGTH`, is measured in
    benchmarks/results/conv1d_matmul.json). The sums are the same, in another order (rounding). The trailing
    positional arguments (stride, padding, dilation, groups) are accepted for the call signature of
    :func:`conv_in_pieces` and are trivial here (:func:`_takes_matmul`)."""
    k = weight.shape[-1]
    n, c_in, length = x.shape
    l_out = length - k + 1
    cols = x.unfold(2, k, 1).transpose(1, 2).reshape(n * l_out, c_in * k)   # row (b, t): x[b, :, t:t + k]
    w = weight.reshape(weight.shape[0], c_in * k).t()
    out = cols @ w if bias is None else torch.addmm(bias, cols, w)           # (N L_out, C_out)
    return out.reshape(n, l_out, -1).transpose(1, 2)


def conv_in_pieces(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   stride: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] = 0,
                   dilation: int | tuple[int, ...] = 1, groups: int = 1, *,
                   max_column_bytes: int | None = None) -> torch.Tensor:
    """``torch.nn.functional.conv{nd}d(x, weight, bias, stride, padding, dilation, groups)`` (``nd`` from
    ``weight``), in batch pieces whose column buffer is at most ``max_column_bytes`` where torch would unfold
    (module docstring).

    Parameters
    ----------
    x : Tensor, shape ``(N, C_in, *L)``
    weight : Tensor, shape ``(C_out, C_in / groups, *kernel)`` with 1 to 3 kernel axes
    bias, stride, padding, dilation, groups
        As for ``torch.nn.functional.conv{nd}d``.
    max_column_bytes : int, optional
        Bound of one piece's column buffer (default :data:`COLUMN_BYTES`); a single sample larger than
        it is one piece.

    Returns
    -------
    Tensor
        The convolution, equal to the single call's to rounding (module docstring).
    """
    nd = weight.ndim - 2
    if nd not in _CONV_FN:
        raise ValueError(f"weight has shape {tuple(weight.shape)}: expected 1 to 3 kernel axes")
    conv = _CONV_FN[nd]
    n = x.shape[0]
    if x.device.type != "cpu" or x.dtype in (torch.float32, torch.bfloat16):
        return conv(x, weight, bias, stride, padding, dilation, groups)
    if _takes_matmul(x, weight, stride, padding, dilation, groups):
        conv = _conv1d_matmul
    if n <= 1:
        return conv(x, weight, bias, stride, padding, dilation, groups)
    cap = COLUMN_BYTES if max_column_bytes is None else int(max_column_bytes)
    # columns of one sample: at most C_in prod(kernel) numbers per output site, and the (padded) input sites
    # bound the output sites for stride >= 1
    # (plain loops, not math.prod of a generator: torch.compile traces them without a graph break)
    pad = (0,) * nd if isinstance(padding, str) else (padding,) * nd if isinstance(padding, int) else tuple(padding)
    per = x.shape[1] * x.element_size()
    for s, p in zip(x.shape[2:], pad):
        per *= s + 2 * p
    for k in weight.shape[2:]:
        per *= k
    per = max(1, per)
    chunk = max(1, cap // per)
    if n <= chunk:
        return conv(x, weight, bias, stride, padding, dilation, groups)
    return torch.cat([conv(c, weight, bias, stride, padding, dilation, groups) for c in x.split(chunk)])
