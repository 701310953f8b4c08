"""Equivariance and gauge-invariance checkers (host-side reductions of backend arrays)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from latticekit.backends import BackendError, Generator, array_namespace, backend_name, check_rng, to_backend
from latticekit.backends import rng as backends_rng
from latticekit.backends import device as _device
from latticekit.gauge import check_gauge_field, gauge_transform
from latticekit.groups import Group, U1Group
from latticekit.lattice import Lattice, LatticeMismatchError

from ._close import _to_host, check_tolerance, loosest_tolerances
from ._validate import check_callable, check_group, check_in_group, check_lattice, check_nonempty

__all__ = [
    "assert_equivariant",
    "assert_gauge_equivariant",
    "assert_gauge_invariant",
    "equivariance_error",
    "gauge_equivariance_error",
    "gauge_invariance_error",
    "random_gauge_transformation",
]


def _parts(y: Any) -> list[Any]:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _copy(v: Any) -> Any:
    """A copy of an array of any backend (torch: ``clone``, which keeps autograd); anything else as it is."""
    if isinstance(v, np.generic) or not (hasattr(v, "shape") and hasattr(v, "dtype")):
        return v
    if type(v).__module__.startswith("torch"):
        return v.clone()
    try:
        return array_namespace(v).asarray(v, copy=True)
    except (BackendError, TypeError):
        return v


def _max_abs_diff(a: Any, b: Any) -> float:
    d = np.abs(np.asarray(_to_host(a)) - np.asarray(_to_host(b)))
    if d.size == 0:
        return 0.0
    return float(np.max(np.where(np.isnan(d), np.inf, d)))


def _angle_distance(a: Any, b: Any) -> float:
    """max |a - b| modulo 2 pi (U(1) angles are defined up to 2 pi)."""
    d = np.asarray(_to_host(a), dtype=np.float64) - np.asarray(_to_host(b), dtype=np.float64)
    if d.size == 0:
        return 0.0
    d = np.abs(np.angle(np.exp(1j * d)))
    return float(np.max(np.where(np.isnan(d), np.inf, d)))


# Default (rtol, atol) of the assert_* checkers by the least precise floating dtype of the input and of
# the compared output: a deviation passes when it is <= atol + rtol * max|reference output|. float64 keeps
# the absolute 1e-10 it always had for values of order one, plus a relative floor of 64 eps = 1.4e-14 (user probe: a
# correct SU(3) action of -7.4e5 on 12^4 failed on one ulp, 1.2e-10, and |S| >= 2^20 could pass only bit-identical).
# The floor covers the rounding of a sum of n terms, pairwise summation being accurate to ~log2(n) eps * sum|terms|
# (log2 n <= 32 for any lattice that fits in memory) on both sides of the comparison; it is 1e-14 of |S|, where
# the deliberate bugs of the probe deviate by 1e-8 or more of values of order one. float32 round-off of O(1)
# values is ~1e-7 per operation and grows with the magnitude of the output (an action summed over the lattice),
# so both parts are 1e-5, the relative tolerance of ``default_tolerances``; half precisions loosely.
_FLOAT64_RTOL = 64 * 2.0 ** -52
_CHECK_TOLERANCES = {
    "float64": (_FLOAT64_RTOL, 1e-10),
    "complex128": (_FLOAT64_RTOL, 1e-10),
    "float32": (1e-5, 1e-5),
    "complex64": (1e-5, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}


def _check_tolerances(*arrays: Any) -> tuple[float, float]:
    """Default ``(rtol, atol)`` of the equivariance and invariance assertions for ``arrays``.

    The least precise floating dtype among ``arrays`` decides, as in :func:`default_tolerances`:
    float64 / complex128 ``(64 eps, 1e-10)`` (64 eps = 1.4e-14); float32 / complex64 ``(1e-5, 1e-5)``;
    float16 ``(1e-2, 1e-2)``; bfloat16 ``(2e-2, 2e-2)``. Python scalars and non-floating arrays do not
    lower the precision; with no floating array at all the float64 pair is returned.

    Examples
    --------
    >>> import numpy as np
    >>> _check_tolerances(np.ones(2, dtype=np.complex64), 1.0)
    (1e-05, 1e-05)
    >>> _check_tolerances(np.ones(2))
    (1.4210854715202004e-14, 1e-10)
    """
    return loosest_tolerances(arrays, _CHECK_TOLERANCES) or _CHECK_TOLERANCES["float64"]


def _max_abs(a: Any) -> float:
    try:
        v = np.abs(np.asarray(_to_host(a)))
    except Exception:   # a custom output that is no array: no magnitude, the absolute tolerance alone
        return 0.0
    if v.size == 0 or v.dtype.kind not in "iufc":
        return 0.0
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else 0.0


def _call(f: Callable[..., Any], x: Any, context: Any) -> Any:
    return f(x) if context is None else f(x, context=context)


def _shape(v: Any) -> tuple[int, ...] | None:
    """The shape of an array output, () for a number, None for anything else (a list: left to NumPy)."""
    shape = getattr(v, "shape", None)
    if shape is not None:
        return tuple(shape)
    return () if isinstance(v, (int, float, complex)) else None


def _check_output(v: Any, label: str) -> None:
    """A TypeError for an output that is no array or number (None, a string, a dict), a ValueError for an empty
    one (it would pass vacuously); ``label`` names it, e.g. 'f(U)' or 'output 1 of f(x)'."""
    if v is None or isinstance(v, (str, bytes, dict, set)) or not (
            _shape(v) is not None or isinstance(v, (list, tuple))):
        raise TypeError(f"{label} is {v!r:.40} ({type(v).__name__}); expected an array or a number (or a tuple of "
                        "them, e.g. a flow layer's (y, logdet))")
    check_nonempty(v, label)


def _same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Outputs of different shapes are refused (the difference would broadcast and compare the wrong elements)."""
    sa, sb = _shape(a), _shape(b)
    if sa is not None and sb is not None and sa != sb:
        raise ValueError(f"{name_a} has shape {sa} but {name_b} has shape {sb}: expected the same shape")


def _component_errors(f: Callable[[Any], Any], x: Any, transform_in: Callable[[Any], Any],
                      transform_out: Callable[[Any], Any] | None,
                      distance: Callable[[Any, Any], float] | None,
                      names: tuple[str, str, str] = ("f(x)", "f(T x)", "T' f(x)")) -> list[tuple[float, Any]]:
    """``[(deviation, reference), ...]`` for each output of ``f``: the first covariant, the others invariant.

    ``names``: how the messages call ``f(x)``, ``f(T x)`` and ``T' f(x)``. The outputs are checked (arrays or
    numbers, not empty, the compared ones of equal shapes) before they are compared; the first output is left
    alone when a custom ``distance`` compares it.
    """
    fx, ftx, tfx = names
    T_out = transform_in if transform_out is None else transform_out
    # user probe: a map that works in place changed the caller's x and could alias its two results; f gets copies of
    # x (transformed or not) and its outputs are copied before f is called again
    a = [_copy(v) for v in _parts(f(transform_in(_copy(x))))]
    b = [_copy(v) for v in _parts(f(_copy(x)))]
    if len(a) != len(b):
        raise ValueError(f"f returned outputs of different structure for x and T x: {len(a)} outputs for {ftx}, "
                         f"{len(b)} for {fx}")
    builtin = distance is None or distance in (_max_abs_diff, _angle_distance)
    first = 0 if builtin else 1
    for k in range(first, len(a)):
        sub = "" if len(a) == 1 else f"output {k} of "
        _check_output(b[k], f"{sub}{fx}")
        _check_output(a[k], f"{sub}{ftx}")
    dist = distance or _max_abs_diff
    ref0 = T_out(b[0])
    if builtin:
        _same_shape(a[0], ref0, ftx if len(a) == 1 else f"output 0 of {ftx}", tfx)
    for k in range(1, len(a)):
        _same_shape(a[k], b[k], f"output {k} of {ftx}", f"output {k} of {fx}")
    out = [(float(dist(a[0], ref0)), ref0)]
    out += [(_max_abs_diff(ai, bi), bi) for ai, bi in zip(a[1:], b[1:])]
    return out


def _check(errors: list[tuple[float, Any]], x: Any, names: list[str], atol: float | None, rtol: float | None,
           what: str, msg: str, note: Callable[[list[int]], str] | None = None) -> None:
    """Raise AssertionError naming each output whose deviation exceeds ``atol + rtol * max|reference|``;
    ``note(failed output indices)`` is appended to the message."""
    if atol is not None and rtol is None:
        rtol = 0.0                           # an explicit atol alone is an absolute bound, as it always was
    parts, failed = [], []
    for k, (err, ref) in enumerate(errors):
        d_rtol, d_atol = _check_tolerances(x, ref)
        r = d_rtol if rtol is None else float(rtol)
        t = d_atol if atol is None else float(atol)
        scale = _max_abs(ref)
        tol = t + r * scale
        ok = err <= tol                      # NaN deviations are inf: they fail
        failed += [] if ok else [k]
        name = names[k] if k < len(names) else f"output {k}"
        rel = f" + rtol={r:.1e} * max|ref| {scale:.3e}" if r else ""
        parts.append(f"{name}: max deviation {err:.3e} {'<=' if ok else '>'} {tol:.3e} (atol={t:.1e}{rel})"
                     + ("" if ok else " FAILED"))
    if failed:
        extra = note(failed) if note is not None else ""
        raise AssertionError(f"{msg + ': ' if msg else ''}{what}: " + "; ".join(parts) + extra)


def equivariance_error(f: Callable[[Any], Any], x: Any, transform_in: Callable[[Any], Any],
                       transform_out: Callable[[Any], Any] | None = None, *,
                       distance: Callable[[Any, Any], float] | None = None) -> float:
    """``max |f(T x) - T' f(x)|``: how far ``f`` is from commuting with a transformation.

    Parameters
    ----------
    f : callable
        The map. If it returns a tuple (e.g. a flow layer's ``(y, logdet)``), ``transform_out`` acts
        on the first component and the other components must be invariant.
    x : array
        Input.
    transform_in : callable
        ``T``.
    transform_out : callable, optional
        ``T'`` (default: ``T``; pass ``lambda y: y`` for an invariance check).
    distance : callable, optional
        ``distance(a, b) -> float`` for the first component (default: max absolute difference; use
        an angle-aware distance for U(1) fields).

    Returns
    -------
    float
        The largest deviation over all components.

    Raises
    ------
    TypeError
        ``f`` or a transformation is not callable, or an output of ``f`` is no array or number (e.g. None).
    ValueError
        ``x`` or an output is empty (nothing to check), or the compared outputs ``f(T x)`` and ``T' f(x)``
        (``f(T x)`` and ``f(x)`` for the further outputs) differ in shape: they are never broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit import Lattice
    >>> lat = Lattice((4, 4))
    >>> f = lambda phi: phi + 0.5 * (lat.shift(phi, 0, 1) + lat.shift(phi, 0, -1))
    >>> T = lambda phi: lat.shift(phi, 1, 1)                       # a translation
    >>> equivariance_error(f, np.random.default_rng(0).normal(size=(4, 4)), T) < 1e-15
    True
    """
    _check_equivariance_args(f, x, transform_in, transform_out, distance)
    return max(err for err, _ in _component_errors(f, x, transform_in, transform_out, distance))


def _check_equivariance_args(f: Any, x: Any, transform_in: Any, transform_out: Any, distance: Any) -> None:
    check_callable(f, "f")
    check_callable(transform_in, "transform_in")
    for name, g in (("transform_out", transform_out), ("distance", distance)):
        if g is not None:
            check_callable(g, name)
    if x is None:
        raise TypeError("x=None: expected an array")
    check_nonempty(x, "x")


def _tolerances(atol: Any, rtol: Any) -> tuple[float | None, float | None]:
    """Validated ``(atol, rtol)`` of an assert_* checker (None: the dtype's default)."""
    return check_tolerance(atol, "atol"), check_tolerance(rtol, "rtol")


_TOL_DOC = """The default tolerance follows the dtype of ``x`` and of each output (the least precise wins, see
    ``_check_tolerances``): a deviation passes when it is at most ``atol + rtol * max|reference|``, the
    reference being ``T' f(x)`` for the first output and ``f(x)`` for the others. float64: ``atol=1e-10``,
    ``rtol=64 eps = 1.4e-14`` (the rounding of a large sum such as an action); float32 / complex64:
    ``atol=rtol=1e-5``. An explicit ``atol`` without ``rtol`` is an
    absolute bound (``rtol=0``). The message gives each output's deviation and tolerance and names the
    outputs that failed."""

_GAUGE_INPUT_DOC = """Bad input is refused before ``f`` is called: ``group`` must be a Group and ``lattice`` a Lattice
    (TypeError); ``U`` must be a non-empty gauge field of ``group`` on ``lattice`` whose links are group elements
    to working precision, and a given ``Omega`` a gauge transformation of U's backend and device with group
    elements (ValueError; :class:`~latticekit.groups.NonUnitaryError` for a unitarity defect above 1e-10 in
    float64, 1e-5 in float32). An output of ``f`` that is not a gauge field like ``U`` (where one is transformed)
    is reported as ``f(U)``."""


def assert_equivariant(f: Callable[[Any], Any], x: Any, transform_in: Callable[[Any], Any],
                       transform_out: Callable[[Any], Any] | None = None, *, atol: float | None = None,
                       rtol: float | None = None, distance: Callable[[Any, Any], float] | None = None,
                       msg: str = "") -> None:
    """Raise AssertionError when an output of ``f`` deviates from equivariance (see
    :func:`equivariance_error`) by more than the tolerance.

    {tol}

    Examples
    --------
    >>> import numpy as np
    >>> assert_equivariant(np.tanh, np.linspace(-1, 1, 5), lambda x: -x)      # tanh is odd
    """
    atol, rtol = _tolerances(atol, rtol)
    _check_equivariance_args(f, x, transform_in, transform_out, distance)
    errors = _component_errors(f, x, transform_in, transform_out, distance)
    names = ["output"] if len(errors) == 1 else ["output 0"] + [f"output {k} (invariant)" for k in range(1, 99)]
    _check(errors, x, names, atol, rtol, "not equivariant", msg)


assert_equivariant.__doc__ = (assert_equivariant.__doc__ or "").replace("{tol}", _TOL_DOC)


def _batch_shape(U: Any, group: Group, lattice: Lattice) -> tuple[int, ...]:
    return tuple(U.shape[: U.ndim - lattice.nd - len(group.element_shape) - 1])


def random_gauge_transformation(U: Any, group: Group, lattice: Lattice, rng: Generator) -> Any:
    """A Haar-random ``Omega(x)`` for the gauge field ``U``: same batch shape, backend, device and
    precision as ``U``.

    Examples
    --------
    >>> from latticekit import Lattice, SU, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); U = random_gauge_field(SU(2), lat, backends.rng(0), (3,))
    >>> random_gauge_transformation(U, SU(2), lat, backends.rng(1)).shape
    (3, 2, 2, 4, 4)
    """
    check_group(group)
    check_lattice(lattice)
    _check_array(U, "U")
    check_gauge_field(U, group, lattice)
    check_rng(rng)   # of any backend: Omega is moved to U's backend and device below
    xp = array_namespace(U)
    single = U.dtype in (getattr(xp, "float32", None), getattr(xp, "complex64", None))
    Om = group.random(rng, _batch_shape(U, group, lattice), lattice.shape, precision="single" if single else "double")
    if backend_name(Om) != backend_name(U) or str(_device(Om)) != str(_device(U)):
        Om = to_backend(Om, backend_name(U), _device(U))
    return Om


def _gauge_distance(group: Group) -> Callable[[Any, Any], float]:
    return _angle_distance if isinstance(group, U1Group) else _max_abs_diff


def _check_array(x: Any, name: str) -> None:
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")


def _check_gauge_args(f: Any, U: Any, group: Any, lattice: Any, Omega: Any) -> None:
    """Refuse bad input before any work: f, group, lattice, the links U (shape, dtype, group elements, not empty)
    and a given Omega (shape, dtype, backend and device of U, group elements)."""
    check_callable(f, "f")
    check_group(group)
    check_lattice(lattice)
    _check_array(U, "U")
    check_gauge_field(U, group, lattice, name="U")
    check_nonempty(U, "U")
    check_in_group(U, group, lattice.nd, "U")
    if Omega is None:
        return
    _check_array(Omega, "Omega")
    try:
        bo, bu = backend_name(Omega), backend_name(U)
    except BackendError as exc:
        raise TypeError(f"Omega: expected an array of U's backend; {exc}") from None
    if bo != bu or str(_device(Omega)) != str(_device(U)):
        raise BackendError(f"Omega is a {bo} array on {_device(Omega)}, U a {bu} array on {_device(U)}: expected "
                           "Omega on U's backend and device (random_gauge_transformation makes one)")
    lattice.check(Omega, "Omega", inner=tuple(group.element_shape))
    check_nonempty(Omega, "Omega")
    check_in_group(Omega, group, lattice.nd, "Omega", " (a gauge transformation must be a group element)")


def _gauge_errors(f: Callable[..., Any], U: Any, group: Group, lattice: Lattice, rng: Generator, context: Any,
                  Omega: Any, invariant: bool) -> list[tuple[float, Any]]:
    _check_gauge_args(f, U, group, lattice, Omega)
    Om = random_gauge_transformation(U, group, lattice, rng) if Omega is None else Omega

    def T(V: Any) -> Any:
        return gauge_transform(V, Om, group, lattice)

    def T_out(y: Any) -> Any:
        # f(U) is transformed as a gauge field: refuse a wrong output here, naming it (not the input U)
        if tuple(y.shape) != tuple(U.shape):
            raise LatticeMismatchError(
                f"f(U) has shape {tuple(y.shape)}; expected a gauge field like U, shape {tuple(U.shape)} (an "
                "invariant output such as an action is checked with gauge_invariance_error)")
        group.check_dtype(y, name="f(U)")
        return T(y)

    fU = lambda V: _call(f, V, context)   # noqa: E731
    if invariant:
        return _component_errors(fU, U, T, lambda y: y, None, ("fn(U)", "fn(U^Omega)", "fn(U)"))
    return _component_errors(fU, U, T, T_out, _gauge_distance(group), ("f(U)", "f(U^Omega)", "f(U)^Omega"))


# The round-off baseline of a failed gauge check (user probe: a correct 16-layer float64 U(1) flow failed by 5e-8 in
# the field and 1e-6 in the log det, yet moving its input by 1e-15 without any gauge transformation moved them by
# 1e-6; each layer alone passed at 5e-12). A gauge transformation rounds every link by a few ulps, so the outputs
# are also compared at U moved by _BASELINE_ULPS ulps in a random direction; deviations within _BASELINE_FACTOR of
# that are amplified round-off rather than evidence against covariance. Only the message changes.
_BASELINE_ULPS = 4.0
_BASELINE_FACTOR = 10.0


def _roundoff_note(f: Callable[..., Any], U: Any, group: Group, lattice: Lattice, context: Any,
                   errors: list[tuple[float, Any]], names: list[str], failed: list[int], invariant: bool) -> str:
    """The message part that compares the failed deviations with the round-off amplification of ``f`` at ``U``."""
    try:
        xp = array_namespace(U)
        single = U.dtype in (getattr(xp, "float32", None), getattr(xp, "complex64", None))
        eps = 2.0 ** (-23 if single else -52)
        g = backends_rng(0, backend=backend_name(U), device=_device(U))   # its own generator: the caller's rng
        V = group.near_identity(g, _batch_shape(U, group, lattice) + (lattice.nd,), lattice.shape,  # is untouched
                                eps=_BASELINE_ULPS * eps, precision="single" if single else "double")
        moved = [_copy(v) for v in _parts(_call(f, group.mul(V, U, nd=lattice.nd), context))]
        fixed = [_copy(v) for v in _parts(_call(f, _copy(U), context))]
        first = _max_abs_diff if invariant else _gauge_distance(group)
        base = [first(moved[0], fixed[0])] + [_max_abs_diff(a, b) for a, b in zip(moved[1:], fixed[1:])]
    except Exception:       # a diagnostic only: never hide the failure itself
        return ""
    name = lambda k: names[k] if k < len(names) else f"output {k}"   # noqa: E731
    moves = ", ".join(f"{name(k)} by {b:.1e}" for k, b in enumerate(base))
    head = (f"\n  for scale, moving U by ~{_BASELINE_ULPS:g} ulp without a gauge transformation moves {moves}: the "
            "deviations are ")
    if all(errors[k][0] <= _BASELINE_FACTOR * base[k] for k in failed):
        return head + ("of that size, so the map amplifies round-off (ill-conditioned, e.g. a deep flow) rather than "
                       "breaking the symmetry; check each layer alone, and in float64")
    return head + "far above that: not round-off, the map breaks the symmetry"


def gauge_equivariance_error(layer_or_fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice,
                             rng: Generator, *, context: Any = None, Omega: Any = None) -> float:
    """``max |f(U^Omega) - f(U)^Omega|`` for a random gauge transformation ``Omega``.

    ``f`` maps a gauge field to a gauge field (or returns ``(field, logdet, ...)``: the further
    outputs must be gauge invariant). U(1) angles are compared modulo ``2 pi``. ``Omega`` defaults
    to a Haar-random transformation drawn from ``rng`` (see :func:`random_gauge_transformation`).

    {inputs}

    Examples
    --------
    >>> from latticekit import Lattice, SU, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); G = SU(2); rng = backends.rng(0)
    >>> U = random_gauge_field(G, lat, rng)
    >>> f = lambda V: G.mul(V, V, nd=2)            # U_mu(x)^2 is NOT gauge covariant
    >>> gauge_equivariance_error(f, U, G, lat, rng) > 0.1
    True
    >>> gauge_equivariance_error(lambda V: V, U, G, lat, rng) < 1e-12
    True
    """
    return max(e for e, _ in _gauge_errors(layer_or_fn, U, group, lattice, rng, context, Omega, invariant=False))


def gauge_invariance_error(fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice, rng: Generator, *,
                           context: Any = None, Omega: Any = None) -> float:
    """``max |fn(U^Omega) - fn(U)|`` for scalars such as actions or Wilson loops (all outputs invariant).

    {inputs}

    Examples
    --------
    >>> from latticekit import Lattice, U1, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); rng = backends.rng(0)
    >>> U = random_gauge_field(U1, lat, rng)
    >>> plaq = lambda V: U1.re_trace(V[0] + lat.shift(V[1], 0) - lat.shift(V[0], 1) - V[1], nd=2).sum()
    >>> gauge_invariance_error(plaq, U, U1, lat, rng) < 1e-12
    True
    """
    return max(e for e, _ in _gauge_errors(fn, U, group, lattice, rng, context, Omega, invariant=True))


def assert_gauge_equivariant(layer_or_fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice,
                             rng: Generator, *, atol: float | None = None, rtol: float | None = None,
                             context: Any = None, Omega: Any = None, msg: str = "") -> None:
    """Raise AssertionError when ``f(U^Omega)`` deviates from ``f(U)^Omega`` (the field), or a further
    output such as the log det from gauge invariance, by more than the tolerance (see
    :func:`gauge_equivariance_error`).

    {tol}

    Examples
    --------
    >>> from latticekit import Lattice, U1, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); rng = backends.rng(0)
    >>> assert_gauge_equivariant(lambda V: V, random_gauge_field(U1, lat, rng), U1, lat, rng)
    """
    atol, rtol = _tolerances(atol, rtol)
    errors = _gauge_errors(layer_or_fn, U, group, lattice, rng, context, Omega, invariant=False)
    names = ["field", "log det"]
    _check(errors, U, names, atol, rtol, "not gauge equivariant", msg,
           lambda failed: _roundoff_note(layer_or_fn, U, group, lattice, context, errors, names, failed, False))


def assert_gauge_invariant(fn: Callable[..., Any], U: Any, group: Group, lattice: Lattice, rng: Generator, *,
                           atol: float | None = None, rtol: float | None = None, context: Any = None,
                           Omega: Any = None, msg: str = "") -> None:
    """Raise AssertionError when an output of ``fn`` changes under a gauge transformation by more than the
    tolerance (see :func:`gauge_invariance_error`).

    {tol}

    Examples
    --------
    >>> from latticekit import Lattice, U1, backends
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = Lattice((4, 4)); rng = backends.rng(0)
    >>> U = random_gauge_field(U1, lat, rng)
    >>> try:
    ...     assert_gauge_invariant(lambda V: V[0, 0, 0], U, U1, lat, rng)   # one link angle is not
    ... except AssertionError as e:
    ...     print(str(e)[:19])
    not gauge invariant
    """
    atol, rtol = _tolerances(atol, rtol)
    errors = _gauge_errors(fn, U, group, lattice, rng, context, Omega, invariant=True)
    names = ["value"] if len(errors) == 1 else [f"output {k}" for k in range(len(errors))]
    _check(errors, U, names, atol, rtol, "not gauge invariant", msg,
           lambda failed: _roundoff_note(fn, U, group, lattice, context, errors, names, failed, True))


for _f in (assert_gauge_equivariant, assert_gauge_invariant):
    _f.__doc__ = (_f.__doc__ or "").replace("{tol}", _TOL_DOC + "\n\n    " + _GAUGE_INPUT_DOC)
for _f in (gauge_equivariance_error, gauge_invariance_error):
    _f.__doc__ = (_f.__doc__ or "").replace("{inputs}", _GAUGE_INPUT_DOC)
del _f
