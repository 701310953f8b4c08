"""randomize_parameters: reproducible, keeps complex parameters complex, names bad arguments."""

import math

import pytest

torch = pytest.importorskip("torch")

from latticekit.testing import assert_close, randomize_parameters  # noqa: E402


class Complex(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
        self.b = torch.nn.Parameter(torch.zeros(2))
        self.register_buffer("mask", torch.ones(2, dtype=torch.complex64))


@pytest.mark.parametrize(("dtype", "real", "cplx"), [("float64", torch.float64, torch.complex128),
                                                      ("double", torch.float64, torch.complex128),
                                                      ("single", torch.float32, torch.complex64),
                                                      (torch.float32, torch.float32, torch.complex64)])
def test_complex_parameters_stay_complex(dtype, real, cplx):
    """The default dtype='float64' made a complex parameter real (imaginary part dropped, with a warning)."""
    m = randomize_parameters(Complex(), 0, dtype=dtype)
    assert m.w.dtype == cplx and m.mask.dtype == cplx and m.b.dtype == real
    assert float(m.w.detach().imag.abs().max()) > 1e-3                # the step has an imaginary part, kept
    assert_close(m.mask, torch.ones(2, dtype=cplx))                   # buffers: cast, not perturbed
    ref = randomize_parameters(Complex(), 0, dtype=None)              # same step, before the cast
    assert ref.w.dtype == torch.complex64
    assert_close(m.w, ref.w.detach().to(cplx), rtol=0, atol=0)
    assert isinstance(m.w, torch.nn.Parameter) and m.w.requires_grad


def test_library_precision_words():
    """dtype='single' raised AttributeError: module 'torch' has no attribute 'single'."""
    assert randomize_parameters(torch.nn.Linear(2, 2), 0, dtype="single").weight.dtype == torch.float32
    assert randomize_parameters(torch.nn.Linear(2, 2), 0, dtype="double").weight.dtype == torch.float64
    assert randomize_parameters(torch.nn.Linear(2, 2), 0, dtype=None).weight.dtype == torch.float32
    for bad in ("banana", "complex128", torch.complex128, torch.int64, "int64", True):
        with pytest.raises(ValueError, match=r"expected a real floating precision: 'double'/'float64'/64, 'single'"):
            randomize_parameters(torch.nn.Linear(2, 2), 0, dtype=bad)


def test_bad_scale_and_seed_refused():
    """scale=nan was accepted (every parameter NaN)."""
    for scale in (math.nan, math.inf, 0.0, -1.0, "0.3"):
        with pytest.raises(ValueError, match=rf"^scale={scale!r}: expected a positive finite number"):
            randomize_parameters(torch.nn.Linear(2, 2), 0, scale=scale)
    with pytest.raises(TypeError, match=r"^seed=1\.7: expected a non-negative integer"):
        randomize_parameters(torch.nn.Linear(2, 2), 1.7)
    with pytest.raises(ValueError, match=r"^seed=-1: expected a non-negative integer"):
        randomize_parameters(torch.nn.Linear(2, 2), -1)
    with pytest.raises(TypeError, match=r"^module=function: expected a torch.nn.Module"):
        randomize_parameters(lambda x: x, 0)
