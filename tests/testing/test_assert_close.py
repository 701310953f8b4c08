"""assert_close: tolerances by dtype, backend/device checks, informative messages."""

import numpy as np
import pytest

from latticekit import backends
from latticekit.testing import assert_close, default_tolerances


def test_passes_and_fails_by_dtype(bk):
    x = bk.asarray(np.array([1.0, 2.0, 3.0]))
    assert_close(x, np.array([1.0, 2.0, 3.0 + 1e-11]))
    with pytest.raises(AssertionError, match="1 of 3 elements differ"):
        assert_close(x, np.array([1.0, 2.0, 3.0 + 1e-8]))
    x32 = bk.asarray(np.array([1.0, 2.0, 3.0]), dtype="float32")
    assert_close(x32, np.array([1.0, 2.0, 3.0 + 1e-6]))  # float32 default rtol 1e-5
    with pytest.raises(AssertionError):
        assert_close(x32, np.array([1.0, 2.0, 3.1]))
    assert_close(x, np.array([1.0, 2.0, 3.1]), atol=0.2)
    assert_close(x, np.array([1.0, 2.0, 3.3]), rtol=0.1)


def test_default_tolerances():
    assert default_tolerances(np.ones(1)) == (1e-10, 1e-12)
    assert default_tolerances(np.ones(1, np.complex64), np.ones(1)) == (1e-5, 1e-6)
    assert default_tolerances(np.ones(1, np.float16)) == (1e-2, 1e-3)
    assert default_tolerances(np.arange(3)) == (0.0, 0.0)
    assert default_tolerances(np.arange(3), 1.5) == (1e-10, 1e-12)
    torch = pytest.importorskip("torch")
    assert default_tolerances(torch.ones(1, dtype=torch.bfloat16)) == (2e-2, 1e-2)


def test_message_reports_worst_index():
    a = np.zeros((3, 4))
    d = np.zeros((3, 4))
    d[2, 1] = 0.5
    d[0, 3] = 1e-3
    with pytest.raises(AssertionError) as e:
        assert_close(a, d, msg="field")
    text = str(e.value)
    assert text.startswith("field: Arrays not close")
    assert "2 of 12 elements differ" in text
    assert "max abs error 0.5 at index (2, 1)" in text
    assert "max rel error 1 at index" in text


def test_complex_integers_nan_and_shapes(bk):
    z = bk.asarray(np.array([1 + 1j, 2 - 1j]))
    assert_close(z, np.array([1 + 1j, 2 - 1j]))
    with pytest.raises(AssertionError):
        assert_close(z, np.array([1 + 1j, 2 + 1j]))
    i = bk.asarray(np.array([1, 2, 3]))
    assert_close(i, [1, 2, 3])
    with pytest.raises(AssertionError):
        assert_close(i, [1, 2, 4])
    n = bk.asarray(np.array([1.0, np.nan]))
    assert_close(n, np.array([1.0, np.nan]), equal_nan=True)
    with pytest.raises(AssertionError, match="1 of 2 elements differ"):
        assert_close(n, np.array([1.0, np.nan]))  # a NaN fails by default
    with pytest.raises(AssertionError):
        assert_close(n, np.array([1.0, 2.0]))
    inf = bk.asarray(np.array([np.inf, -np.inf]))
    assert_close(inf, np.array([np.inf, -np.inf]))
    with pytest.raises(AssertionError):
        assert_close(inf, np.array([np.inf, np.inf]))
    assert_close(bk.asarray(np.full((2, 2), 3.0)), 3.0)  # 0-d desired broadcasts
    assert_close(bk.asarray(np.asarray(3.0)), np.full((2, 2), 3.0))  # and so does a 0-d actual
    with pytest.raises(AssertionError, match="1 of 4 elements differ"):
        assert_close(bk.asarray(np.asarray(3.0)), np.array([[3.0, 3.0], [3.0, 3.5]]))
    with pytest.raises(AssertionError, match="shape mismatch"):
        assert_close(bk.asarray(np.zeros((2, 2))), np.zeros((2, 3)))
    b = bk.asarray(np.array([True, False]))
    assert_close(b, [True, False])
    with pytest.raises(AssertionError):
        assert_close(b, [True, True])


def test_backend_and_device_mismatch():
    torch = pytest.importorskip("torch")
    t = torch.ones(3, dtype=torch.float64)
    assert_close(t, np.ones(3))  # NumPy reference: any backend
    assert_close(t, torch.ones(3, dtype=torch.float64))
    strict = backends.asarray(np.ones(3), backend="array_api_strict")
    with pytest.raises(AssertionError, match="backend mismatch: actual is torch, desired is array_api_strict"):
        assert_close(t, strict)
    with pytest.raises(AssertionError, match="backend mismatch: actual is numpy, desired is torch"):
        assert_close(np.ones(3), t)
    if torch.cuda.is_available():
        with pytest.raises(AssertionError, match="device mismatch"):
            assert_close(t, t.cuda())


def test_torch_requires_grad():
    torch = pytest.importorskip("torch")
    t = torch.ones(2, dtype=torch.float64, requires_grad=True)
    assert_close(2 * t, torch.full((2,), 2.0, dtype=torch.float64))


def test_torch_half_precisions(torch_backends):
    """bfloat16 has no NumPy dtype: it is upcast on the device before the copy (it raised TypeError)."""
    import torch

    for b in torch_backends:
        for dt in (torch.bfloat16, torch.float16):
            x = torch.tensor([1.0, 2.0, 3.0], dtype=dt, device=b.device)
            assert_close(x, x)
            assert_close(x, x.clone(), check_dtype=True)
            assert_close(x + 0.005, np.array([1.0, 2.0, 3.0]))         # within the dtype's default tolerance
            with pytest.raises(AssertionError, match="1 of 3 elements differ"):
                assert_close(x, torch.tensor([1.0, 2.0, 3.5], dtype=dt, device=b.device))


def test_check_dtype(bk):
    x = bk.asarray(np.array([1.0, 2.0]))
    assert_close(x, np.array([1.0, 2.0]), check_dtype=True)  # dtypes compared by name across backends
    assert_close(x, bk.asarray(np.array([1.0, 2.0])), check_dtype=True)
    assert_close(bk.asarray(np.asarray(2.0)), 2.0, check_dtype=True)  # a Python float is float64
    x32 = bk.asarray(np.array([1.0, 2.0]), dtype="float32")
    assert_close(x32, np.array([1.0, 2.0]))  # values only by default
    with pytest.raises(AssertionError, match="dtype mismatch: actual is float32, desired is float64"):
        assert_close(x32, np.array([1.0, 2.0]), check_dtype=True)
    with pytest.raises(AssertionError, match="dtype mismatch: actual is int64, desired is float64"):
        assert_close(bk.asarray(np.array([1, 2])), np.array([1.0, 2.0]), check_dtype=True)


def test_tolerance_formula_is_atol_plus_rtol_times_desired():
    # |actual - desired| <= atol + rtol * |desired|: scaled by the reference, not the result
    assert_close(np.array([1.5]), np.array([1.0]), rtol=0.5, atol=0)
    with pytest.raises(AssertionError):
        assert_close(np.array([1.0]), np.array([1.5]), rtol=0.3, atol=0)  # 0.5 > 0.3 * 1.5
    assert_close(np.array([1.0]), np.array([1.5]), rtol=0.2, atol=0.2)  # 0.5 <= 0.2 + 0.3
    with pytest.raises(AssertionError):
        assert_close(np.array([1.0]), np.array([1.5]), rtol=0.2, atol=0.19)
    with pytest.raises(AssertionError):
        assert_close(np.array([1.0]), np.array([1.0 + 1e-15]), rtol=0, atol=0)  # exact comparison


def test_non_arrays_are_a_type_error_naming_the_argument():
    """assert_close(None, 1.0) raised BackendError 'unsupported array libraries: []'."""
    with pytest.raises(TypeError, match=r"^actual=None: expected an array or an array-like of numbers"):
        assert_close(None, 1.0)
    with pytest.raises(TypeError, match=r"^desired=None: expected an array"):
        assert_close(np.ones(2), None)
    with pytest.raises(TypeError, match=r"^actual='abc': expected an array"):
        assert_close("abc", "abd")
    with pytest.raises(TypeError, match=r"^desired: expected an array of a supported backend .*; got builtins.object"):
        assert_close(np.ones(2), object())
    with pytest.raises(TypeError, match=r"^actual: expected numbers .*; got object values"):
        assert_close([None, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"^atol=-1: expected a non-negative number"):
        assert_close(np.ones(1), [1.0], atol=-1)
    with pytest.raises(ValueError, match=r"^rtol=nan: expected a non-negative number"):
        assert_close(np.ones(1), [1.0], rtol=float("nan"))


def test_integers_are_compared_exactly(bk):
    """2**53 + 1 passed against 2**53 (and uint64 / torch int64 near 2**63) through a cast to float64 although
    integer arrays are documented exact (user probe)."""
    big = bk.asarray(np.array([2**53 + 1, 5]))
    assert_close(big, bk.asarray(np.array([2**53 + 1, 5])))
    with pytest.raises(AssertionError, match=r"^Arrays not close \(rtol=0, atol=0\): 1 of 2 elements differ\n"
                                             r"  max abs error 1 at index \(0,\): actual 9007199254740993, desired "
                                             r"9007199254740992\n  max rel error 1\.11022e-16 at index \(0,\)"):
        assert_close(big, np.array([2**53, 5]))
    with pytest.raises(AssertionError, match=r"^Arrays not close \(rtol=0, atol=0\): 1 of 1 elements differ\n"
                                             r"  max abs error 1 at index \(0,\): actual 4611686018427387905"):
        assert_close(bk.asarray(np.array([2**62 + 1])), bk.asarray(np.array([2**62])))
    with pytest.raises(AssertionError, match=r"^Arrays not close .*\n  max abs error 1 at index \(0,\): actual "
                                             r"18446744073709551615, desired 18446744073709551614"):
        assert_close(np.array([2**64 - 1], dtype=np.uint64), np.array([2**64 - 2], dtype=np.uint64))
    assert_close(np.array([2**63 - 1]), np.array([2**63 - 3], dtype=np.uint64), atol=2)   # mixed kinds, exact
    with pytest.raises(AssertionError, match=r"max abs error 2 at index"):
        assert_close(np.array([2**63 - 1]), np.array([2**63 + 1], dtype=np.uint64), atol=1)


def test_messages_for_nan_and_infinities():
    """inf against -inf reported 'max rel error nan', a NaN 'max abs error inf' (user probe)."""
    with pytest.raises(AssertionError, match=r"^Arrays not close \(rtol=1e-10, atol=1e-12\): 2 of 3 elements differ\n"
                                             r"  max abs error inf at index \(2,\): actual np\.float64\(inf\), desired "
                                             r"np\.float64\(-inf\)\n  max rel error inf at index \(2,\): .*\n"
                                             r"  NaN in 1 of the differing elements, first at index \(0,\): actual "
                                             r"np\.float64\(nan\), desired np\.float64\(2\.0\)$"):
        assert_close(np.array([np.nan, 1.0, np.inf]), np.array([2.0, 1.0, -np.inf]))
    with pytest.raises(AssertionError, match=r"^Arrays not close \(rtol=1e-10, atol=1e-12\): 1 of 2 elements differ\n"
                                             r"  NaN in 1 of the differing elements, first at index \(1,\): actual "
                                             r"np\.float64\(1\.0\), desired np\.float64\(nan\)$"):
        assert_close(np.array([1.0, 1.0]), np.array([1.0, np.nan]))
