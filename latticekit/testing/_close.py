"""``assert_close``: namespace-, dtype- and device-aware comparison of arrays (host side)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from latticekit.backends import BackendError, backend_name, to_numpy
from latticekit.backends import device as _device

__all__ = ["assert_close", "default_tolerances"]

# (rtol, atol) by the number of mantissa bits that matter. float64: eps = 2.2e-16, so rtol 1e-10
# leaves ~6 orders of magnitude for round-off accumulated over lattice sums; float32: eps = 1.2e-7,
# rtol 1e-5 leaves ~2 orders. Half precisions are checked loosely.
_TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "complex128": (1e-10, 1e-12),
    "float32": (1e-5, 1e-6),
    "complex64": (1e-5, 1e-6),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
}


def _is_host(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic, int, float, complex, bool, list, tuple))


def loosest_tolerances(arrays: Any, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The entry of ``table`` (dtype name -> tolerances) for the least precise floating dtype among ``arrays``;
    Python scalars and lists do not count; None when no array has a dtype of ``table``."""
    best: tuple[float, float] | None = None
    for x in arrays:
        if isinstance(x, (int, float, complex, bool, list, tuple)):
            continue
        tol = table.get(str(getattr(x, "dtype", "")).rsplit(".", 1)[-1])  # 'torch.float32', 'array_api_strict....'
        if tol is not None and (best is None or tol > best):
            best = tol
    return best


def default_tolerances(*arrays: Any) -> tuple[float, float]:
    """``(rtol, atol)`` for the least precise floating dtype among ``arrays``.

    float64 / complex128: ``(1e-10, 1e-12)``; float32 / complex64: ``(1e-5, 1e-6)``;
    float16: ``(1e-2, 1e-3)``; bfloat16: ``(2e-2, 1e-2)``; integer and boolean arrays (and Python
    scalars alone): exact, ``(0, 0)``. Python scalars and lists do not lower the precision.

    Examples
    --------
    >>> import numpy as np
    >>> default_tolerances(np.ones(2, dtype=np.float32), 1.0)
    (1e-05, 1e-06)
    >>> default_tolerances(np.ones(2))
    (1e-10, 1e-12)
    """
    best = loosest_tolerances(arrays, _TOLERANCES)
    if best is None:
        # no floating arrays: float64 tolerances if anything is floating (Python floats), else exact
        kinds = {_to_host(x).dtype.kind for x in arrays}
        return _TOLERANCES["float64"] if kinds & {"f", "c"} else (0.0, 0.0)
    return best


# torch half precisions NumPy cannot hold (bfloat16, complex32) or holds with little arithmetic (float16):
# upcast on the device before the copy to the host; the tolerances still follow the original dtype
_TORCH_UPCAST = {"torch.bfloat16": "float32", "torch.float16": "float32", "torch.complex32": "complex64"}


def check_tolerance(tol: Any, name: str) -> float | None:
    """``float(tol)``, or None for None; a ValueError naming ``name`` for a negative or NaN tolerance."""
    if tol is None:
        return None
    try:
        out = float(tol)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={tol!r}: expected a non-negative number") from None
    if not out >= 0:
        raise ValueError(f"{name}={tol!r}: expected a non-negative number")
    return out


def _check_operand(x: Any, name: str) -> None:
    """TypeError naming ``name`` unless ``x`` is an array of a supported backend or a host array-like."""
    if x is None or isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"{name}={x!r}: expected an array or an array-like of numbers")
    if _is_host(x):
        return
    try:
        backend_name(x)
    except BackendError:
        raise TypeError(f"{name}: expected an array of a supported backend (numpy, torch, cupy, array_api_strict) "
                        f"or an array-like of numbers; got {type(x).__module__}.{type(x).__qualname__}") from None


def _to_host(x: Any) -> np.ndarray:
    """``to_numpy(x)``, with torch bfloat16 / float16 / complex32 tensors upcast to float32 / complex64 first."""
    up = _TORCH_UPCAST.get(str(getattr(x, "dtype", ""))) if type(x).__module__.startswith("torch") else None
    if up is not None:
        import torch

        x = x.detach().to(getattr(torch, up))
    return np.asarray(to_numpy(x))


def _dtype_name(x: Any) -> str:
    """'float64' for a NumPy/torch/CuPy/array_api_strict float64 array and for a Python float."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return np.asarray(x).dtype.name
    return str(dt).rsplit(".", 1)[-1]  # 'torch.float32', 'array_api_strict.float32'


def _index(i: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(int(k) for k in i)


def _assert_integers_close(a: np.ndarray, d: np.ndarray, rtol: float, atol: float, prefix: str) -> None:
    """Integer arrays of equal shapes: exact comparison (``|a - d| <= atol + rtol |d|`` in Python integers)."""
    idx = np.flatnonzero(a != d)
    if idx.size == 0:
        return
    af, df = a.reshape(-1)[idx].tolist(), d.reshape(-1)[idx].tolist()    # Python ints: no overflow, no rounding
    err = [abs(x - y) for x, y in zip(af, df)]
    bad = [k for k, e in enumerate(err) if not e <= atol + rtol * abs(df[k])]
    if not bad:
        return
    k_abs = max(range(len(err)), key=lambda k: err[k])
    rel = [e / abs(y) if y else math.inf for e, y in zip(err, df)]
    k_rel = max(range(len(rel)), key=lambda k: rel[k])
    at = [_index(np.unravel_index(int(idx[k]), a.shape)) for k in (k_abs, k_rel)]
    raise AssertionError("\n".join([
        f"{prefix}Arrays not close (rtol={rtol:g}, atol={atol:g}): {len(bad)} of {a.size} elements differ",
        f"  max abs error {err[k_abs]} at index {at[0]}: actual {af[k_abs]!r}, desired {df[k_abs]!r}",
        f"  max rel error {rel[k_rel]:.6g} at index {at[1]}: actual {af[k_rel]!r}, desired {df[k_rel]!r}"]))


def assert_close(actual: Any, desired: Any, *, rtol: float | None = None, atol: float | None = None,
                 msg: str = "", equal_nan: bool = False, check_device: bool = True,
                 check_dtype: bool = False) -> None:
    """Assert ``|actual - desired| <= atol + rtol * |desired|`` elementwise, across backends.

    Parameters
    ----------
    actual : array of any backend, or array-like
        The computed value.
    desired : array of any backend, NumPy array, Python scalar or list
        The reference. If it is an array of a backend other than NumPy, ``actual`` must be of the
        same backend (and, with ``check_device``, on the same device); NumPy arrays and Python
        values are references computed on the host and may be compared with any backend.
    rtol, atol : float, optional
        Tolerances; the default comes from :func:`default_tolerances` of both arguments (the
        least precise floating dtype wins: float64 ``(1e-10, 1e-12)``, float32 ``(1e-5, 1e-6)``).
        Integer and boolean arrays compared with each other are compared in integer arithmetic, with no cast to
        floating point: exactly by default, and ``2**53 + 1`` differs from ``2**53``.
    msg : str
        Prefix for the error message (say what is compared).
    equal_nan : bool
        Treat NaNs in the same positions as equal. Default False: a NaN fails, as in
        ``numpy.allclose``, ``torch.testing.assert_close`` and ``pytest.approx``.
    check_device : bool
        Check that both arrays live on the same device when both are non-NumPy arrays.
    check_dtype : bool
        Also require the same dtype (compared by name across backends, so a torch float64
        array matches a NumPy float64 reference; a Python float counts as float64 and a
        Python int as int64), as ``torch.testing.assert_close`` does by default.

    Raises
    ------
    TypeError
        ``actual`` or ``desired`` is not an array of a supported backend or an array-like of numbers
        (e.g. None, a string, a dict).
    ValueError
        A negative or NaN ``rtol`` / ``atol``.
    AssertionError
        On a backend/device/dtype mismatch, a shape mismatch (a 0-d argument broadcasts) or values
        out of tolerance; the message gives the number of mismatches, the largest absolute and
        relative errors and the index of the worst element with both values (taken over the elements with
        numbers on both sides: ``inf`` against ``-inf`` is an absolute and relative error ``inf``), and the
        number of differing elements with a NaN and the first of them.

    Notes
    -----
    The other closeness helpers, written with this one (the test suite uses only this one):
    ``numpy.testing.assert_allclose(a, d)`` is ``rtol=1e-7, atol=0`` (NaNs there compare equal);
    ``numpy.allclose`` / ``torch.allclose`` are ``rtol=1e-5, atol=1e-8``;
    ``torch.testing.assert_close`` is ``rtol=1e-7, atol=1e-7`` for float64/complex128 and
    ``rtol=1.3e-6, atol=1e-5`` for float32/complex64, with ``check_dtype=True``;
    ``pytest.approx(d, rel, abs)`` accepts ``max(rel |d|, abs)`` rather than the sum, i.e.
    ``rtol=0, atol=max(rel * abs(d), abs)`` (defaults: rel 1e-6, abs 1e-12); ``math.isclose(a, d)``
    accepts ``max(rel_tol * max(|a|, |d|), abs_tol)`` (defaults: 1e-9, 0).

    Examples
    --------
    >>> import numpy as np
    >>> assert_close(np.array([1.0, 2.0]), [1.0, 2.0 + 1e-13])
    >>> try:
    ...     assert_close(np.array([1.0, 2.0]), [1.0, 2.1])
    ... except AssertionError as e:
    ...     print(str(e).splitlines()[0])
    Arrays not close (rtol=1e-10, atol=1e-12): 1 of 2 elements differ
    """
    prefix = f"{msg}: " if msg else ""
    for name, x in (("actual", actual), ("desired", desired)):   # bad input: a TypeError naming it, before any work
        _check_operand(x, name)
    rtol, atol = check_tolerance(rtol, "rtol"), check_tolerance(atol, "atol")
    if not _is_host(desired):
        bd = backend_name(desired)
        ba = backend_name(actual) if not _is_host(actual) else "numpy"
        if ba != bd:
            raise AssertionError(f"{prefix}backend mismatch: actual is {ba}, desired is {bd}")
        if check_device:
            da, dd = str(_device(actual)), str(_device(desired))
            if da != dd:
                raise AssertionError(f"{prefix}device mismatch: actual on {da}, desired on {dd}")
    if check_dtype:
        na, nd = _dtype_name(actual), _dtype_name(desired)
        if na != nd:
            raise AssertionError(f"{prefix}dtype mismatch: actual is {na}, desired is {nd}")
    d_rtol, d_atol = default_tolerances(actual, desired)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    a = _to_host(actual)
    d = _to_host(desired)
    for name, h in (("actual", a), ("desired", d)):
        if h.dtype.kind not in "biufc":
            raise TypeError(f"{name}: expected numbers (an array or array-like of numbers); got {h.dtype} values")
    if a.dtype == bool:
        a = a.astype(np.int64)
    if d.dtype == bool:
        d = d.astype(np.int64)
    if d.shape != a.shape:
        if d.ndim == 0:
            d = np.broadcast_to(d, a.shape)
        elif a.ndim == 0:  # a scalar result against an array reference, as numpy.testing allows
            a = np.broadcast_to(a, d.shape)
        else:
            raise AssertionError(f"{prefix}shape mismatch: actual {a.shape}, desired {d.shape}")
    if a.size == 0:
        return
    if a.dtype.kind in "iu" and d.dtype.kind in "iu":
        # user probe: a cast to float64 made 2**53 + 1 equal to 2**53 (uint64 and torch int64 alike) although
        # integers are documented exact; NumPy compares mixed integer kinds exactly, differences are Python ints
        _assert_integers_close(a, d, rtol, atol, prefix)
        return
    a_c = a.astype(np.complex128) if (a.dtype.kind == "c" or d.dtype.kind == "c") else a.astype(np.float64)
    d_c = d.astype(a_c.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a_c - d_c)
        scale = np.abs(d_c)
    nan_a, nan_d = np.isnan(a_c), np.isnan(d_c)
    same = a_c == d_c  # also infinities of the same sign
    finite = np.isfinite(a_c) & np.isfinite(d_c)
    bad = np.where(finite, ~(err <= atol + rtol * scale), ~same)
    if equal_nan:
        bad &= ~(nan_a & nan_d)
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return
    # user probe: a NaN was reported as "max abs error inf" and inf vs -inf as "max rel error nan": the errors are
    # taken over the elements with numbers on both sides (inf vs -inf: abs and rel error inf), NaNs listed apart
    nan = nan_a | nan_d
    err_f = np.where(nan | same, 0.0, err)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(np.isinf(err_f), np.inf, np.where(scale > 0, err_f / scale, np.where(err_f > 0, np.inf, 0.0)))
    lines = [f"{prefix}Arrays not close (rtol={rtol:g}, atol={atol:g}): {n_bad} of {a.size} elements differ"]
    if np.any(bad & ~nan):
        i_abs = np.unravel_index(int(np.argmax(err_f)), a.shape) if a.ndim else ()
        i_rel = np.unravel_index(int(np.argmax(rel)), a.shape) if a.ndim else ()
        lines += [f"  max abs error {float(err_f[i_abs]):.6g} at index {_index(i_abs)}: "
                  f"actual {a[i_abs]!r}, desired {d[i_abs]!r}",
                  f"  max rel error {float(rel[i_rel]):.6g} at index {_index(i_rel)}: "
                  f"actual {a[i_rel]!r}, desired {d[i_rel]!r}"]
    nan_bad = bad & nan
    if np.any(nan_bad):
        i_nan = np.unravel_index(int(np.argmax(nan_bad)), a.shape) if a.ndim else ()
        lines.append(f"  NaN in {int(np.count_nonzero(nan_bad))} of the differing elements, first at index "
                     f"{_index(i_nan)}: actual {a[i_nan]!r}, desired {d[i_nan]!r}")
    raise AssertionError("\n".join(lines))
