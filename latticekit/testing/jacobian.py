"""Log-determinants of flow layers from an autograd Jacobian (torch, imported lazily).

Coordinates and measures
------------------------
The layer contract (DESIGN.md) is ``forward(x, context=None) -> (y, logdet)`` with
``logdet = log|det dy/dx|`` per batch element, where densities of real fields are with respect to
Lebesgue measure and densities of gauge fields with respect to the (product) Haar measure. The
checker computes the Jacobian of the map in real coordinates of the tangent space at ``x``:

* real fields: the entries of ``x`` themselves;
* complex fields (``group=None``, complex ``x``): real and imaginary parts (so a holomorphic map
  with complex Jacobian ``A`` gets ``log|det| = 2 log|det A|``);
* U(1) angles (``group=U1``): the angles (Haar measure is ``d theta / 2 pi``, a constant density);
* SU(N) (``group=SU(N)``): algebra coordinates of a **left** perturbation,
  ``x(omega) = exp(sum_a omega^a T_a) x``, matching the Lie derivative
  ``d_a f(U) = d/dt f(exp(t T_a) U)`` of :mod:`latticekit.groups`. The output coordinates are
  ``eta^a = coords(log(y(omega) y^dagger))``. The vector fields ``T_a U`` are right-invariant, and
  the dual Maurer-Cartan forms ``dU U^{-1}`` wedge to the Haar measure, so in these charts the Haar
  density is constant to first order at ``omega = 0`` and ``log|det d eta / d omega|`` at 0 is
  exactly the log-density ratio w.r.t. Haar measure. (Right perturbations ``x exp(omega T)`` give
  the same determinant: the charts differ by ``Ad(x)``, and ``det Ad = 1`` on SU(N).) Only the
  first derivative at ``omega = 0`` is needed, so ``log(y y0^dagger)`` is replaced by its linear
  part ``project_algebra(y y0^dagger)``, which avoids the eigen-decomposition of a degenerate
  matrix. These coordinates assume that ``x`` and ``y0`` are group elements: links with a unitarity
  defect above 1e-10 (float64) / 1e-5 (float32) are refused with a ValueError naming ``x`` or the
  layer's output (a float32 field cast to float64, defect ~1e-6, gave a log det off by ~1e-5).

Every axis after the batch axes is part of one sample (for gauge fields: directions, colour, sites).
The Jacobian of the whole batch is computed and its off-diagonal blocks are checked to vanish (a
layer must not mix batch elements), so keep lattices tiny (e.g. 2x2 or 4x4, batch 2): memory and time
grow with the square of the number of real coordinates of the batch, and more than ``max_coordinates``
(default :data:`MAX_COORDINATES` = 1024) are refused before the layer is called.

The checkers never hand the caller's tensor (or a tensor they compare later) to the layer: every call of the
layer, forward and inverse, gets its own copy, so a layer that works in place can neither change the caller's
``x`` nor make a wrong inverse compare equal to itself.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from latticekit.backends import lu_linalg
from latticekit.groups import Group, SUGroup, U1Group

from ._validate import check_callable, check_group, check_in_group

__all__ = ["MAX_COORDINATES", "assert_logdet_matches", "autograd_logdet"]

# user probe: SU(3) on 4x4 at batch 8 (2048 real coordinates) took 13 s and 1.3 GB with no warning. The dense
# Jacobian has (batch x coordinates per sample)^2 entries and costs as many backward passes; 1024 (SU(3) 4x4 at
# batch 4, 3.5 s and 0.55 GB) is 4x the largest Jacobian of the library's own tests (256; docs/testing.md: 216).
MAX_COORDINATES = 1024

# Round trips in float32 / complex64 (user probe: a correct float32 U(1) layer missed by 8e-3 where its Jacobian had
# |dy/dx| ~ 1e-4): an inverse exact up to round-off returns f^-1(y + dy) with |dy_i| <= a few ulps of the largest
# value M = max(1, |x|, |y|) (the rounding of y and the inverse's own round-off), which moves x_j by
# sum_i |(dx/dy)_ji| |dy_i| to first order. So in single precision, with the default tolerances, each element of the
# round trip is also allowed _ROUNDTRIP_ULPS * eps * M * (1 + sum_i |(dx/dy)_ji|) (the 1: the rounding of x_j itself).
# Measured on 24 randomised float32 U(1) layers and pairs of layers: at most 0.51 * eps * M * (...), so 4 ulps leave
# ~8x headroom. The first-order argument holds only while that floor is small against the scale of the map, so an
# element whose floor exceeds _FIRST_ORDER_LIMIT * M gets none (the check fails and says the map is too
# ill-conditioned to check in this precision). Deliberately wrong inverses (one Newton step too few: 0.2; a broken
# site: 0.05) stay caught; float64 keeps its fixed tolerance.
_ROUNDTRIP_ULPS = 4.0
_FIRST_ORDER_LIMIT = 0.1


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _call(f: Callable[..., Any], x: Any, context: Any) -> Any:
    return f(x) if context is None else f(x, context=context)


def _check_input(torch: Any, x: Any, group: Any, nd: Any, batch_ndim: Any) -> None:
    """Refuse a bad ``x`` / ``group`` / ``nd`` / ``batch_ndim`` before any work (before the layer is called)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, int) or not 0 <= batch_ndim <= x.ndim:
        raise ValueError(f"batch_ndim={batch_ndim!r}: expected an integer 0 <= batch_ndim <= x.ndim = {x.ndim}")
    if x.numel() == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)}): nothing to check")
    if group is not None:
        check_group(group)
        if not isinstance(group, (SUGroup, U1Group)):
            raise TypeError(f"group={group!r}: expected None, U1 or SU(N)")
    if isinstance(group, SUGroup):
        if nd is None:
            raise ValueError("nd: the number of lattice axes is required for SU(N) fields (0 for plain elements)")
        if isinstance(nd, bool) or not isinstance(nd, int) or nd < 0:
            raise ValueError(f"nd={nd!r}: expected a non-negative integer (the number of lattice axes)")
        check_in_group(x.detach(), group, nd, "x", " (autograd_logdet's algebra coordinates assume group elements)")
    elif x.is_complex():
        if group is not None:
            raise TypeError("U(1) fields are real angles; got a complex tensor")
    elif not x.is_floating_point():
        raise TypeError(f"x: expected a floating or complex tensor, got dtype {x.dtype}")
    elif group is not None:
        check_in_group(x.detach(), group, 0, "x")   # U(1): finite angles


def _group_exp_left(torch: Any, group: SUGroup, omega: Any, x0: Any, nd: int) -> Any:
    X = group.from_coords(omega, nd=nd)
    k = X.ndim - nd - 2
    E = torch.linalg.matrix_exp(torch.movedim(X, (k, k + 1), (-2, -1)).contiguous())
    E = torch.movedim(E, (-2, -1), (k, k + 1))
    return group.mul(E, x0, nd=nd)


def _check_max_coordinates(max_coordinates: Any) -> int:
    if isinstance(max_coordinates, bool) or not isinstance(max_coordinates, int) or max_coordinates < 1:
        raise ValueError(f"max_coordinates={max_coordinates!r}: expected a positive integer")
    return max_coordinates


def _coord_shape(x: Any, group: Any, nd: Any) -> tuple[int, ...]:
    """The shape of the real coordinates of ``x`` (batch axes first): SU(N) algebra coordinates in place of the
    (N, N) axes, a trailing (re, im) axis for complex fields, the shape of ``x`` otherwise."""
    if isinstance(group, SUGroup):
        k = x.ndim - nd - 2
        return tuple(x.shape[:k]) + (group.algebra_dim,) + tuple(x.shape[k + 2:])
    return tuple(x.shape) + (2,) if x.is_complex() else tuple(x.shape)


def _check_size(x: Any, group: Any, nd: Any, batch_ndim: int, max_coordinates: int) -> None:
    """ValueError, before any work, when the dense Jacobian of the batch would exceed ``max_coordinates`` real
    coordinates (user probe: 2048 took 13 s and 1.3 GB)."""
    cshape = _coord_shape(x, group, nd)
    nb, n = math.prod(cshape[:batch_ndim]), math.prod(cshape[batch_ndim:])
    if nb * n > max_coordinates:
        raise ValueError(f"the dense Jacobian would be {nb * n} x {nb * n} ({nb * n} real coordinates: batch {nb} x "
                         f"{n} per sample), above max_coordinates={max_coordinates}: check a smaller lattice or batch "
                         "(or raise max_coordinates; memory and time grow with its square)")


class _Jacobian:
    """The per-sample blocks ``(nb, n, n)`` of the dense Jacobian ``d coords(y) / d coords(x)`` and the batch shape."""

    def __init__(self, blocks: Any, bshape: tuple[int, ...]) -> None:
        self.blocks, self.bshape = blocks, bshape

    def logabsdet(self) -> Any:
        _, logabs = lu_linalg("slogdet", self.blocks)   # torch's batched CPU LU is unsafe after set_num_threads
        return logabs.reshape(self.bshape)


def _jacobian(fn: Callable[..., Any], x: Any, group: Any, nd: Any, context: Any, batch_ndim: int,
              check_batch_independence: bool, vectorize: bool | None) -> _Jacobian:
    """The dense Jacobian of ``fn`` at ``x`` (arguments checked by the caller); ``fn`` never sees ``x`` itself."""
    import torch

    bshape = tuple(x.shape[:batch_ndim])
    nb = math.prod(bshape)
    # user probe: a layer working in place changed the caller's x through x.detach(), which shares its storage
    x0 = x.detach().clone()
    cshape = _coord_shape(x0, group, nd)
    rdt = x0.real.dtype

    if isinstance(group, SUGroup):
        assert nd is not None

        def chart(w: Any) -> Any:
            return _group_exp_left(torch, group, w, x0, nd)

        def coords(y: Any, y0: Any) -> Any:
            return group.to_coords(group.project_algebra(group.mul_adj(y, y0, nd=nd), nd=nd), nd=nd)
    elif x0.is_complex():
        def chart(w: Any) -> Any:
            return x0 + torch.complex(w[..., 0], w[..., 1])

        def coords(y: Any, y0: Any) -> Any:
            return torch.view_as_real(y - y0) if y.is_complex() else y - y0
    else:
        def chart(w: Any) -> Any:
            return x0 + w

        def coords(y: Any, y0: Any) -> Any:
            return y - y0

    with torch.no_grad():
        y0 = _first(_call(fn, x0.clone(), context)).detach().clone()
    if tuple(y0.shape) != tuple(x0.shape):
        raise ValueError(f"fn changes the shape {tuple(x0.shape)} -> {tuple(y0.shape)}; no Jacobian determinant")
    if group is not None:   # the output coordinates project_algebra(y y0^dag) need y0 in the group
        check_in_group(y0, group, 0 if nd is None else nd, "the layer's output y = fn(x)")
    n = math.prod(cshape[batch_ndim:])

    def g(w_flat: Any) -> Any:
        w = w_flat.reshape(cshape)
        y = _first(_call(fn, chart(w), context))
        return coords(y, y0).reshape(-1)

    w0 = torch.zeros(nb * n, dtype=rdt, device=x0.device)
    if vectorize is None:
        try:
            J = torch.autograd.functional.jacobian(g, w0, vectorize=True)
        except (RuntimeError, NotImplementedError):
            J = torch.autograd.functional.jacobian(g, w0, vectorize=False)
    else:
        J = torch.autograd.functional.jacobian(g, w0, vectorize=vectorize)
    if J.shape != (nb * n, nb * n):
        raise ValueError(f"Jacobian has shape {tuple(J.shape)}; expected a square ({nb * n}, {nb * n}) matrix")
    J4 = J.reshape(nb, n, nb, n)
    idx = torch.arange(nb, device=J.device)
    blocks = J4[idx, :, idx, :]  # (nb, n, n)
    if check_batch_independence and nb > 1:
        off = J4.clone()
        off[idx, :, idx, :] = 0
        worst = float(off.abs().max())
        scale = max(1.0, float(blocks.abs().max()))
        if worst > 1e3 * torch.finfo(rdt).eps * scale:
            raise ValueError(f"fn mixes batch elements: off-diagonal Jacobian blocks up to {worst:.3e}")
    return _Jacobian(blocks, bshape)


def autograd_logdet(fn: Callable[..., Any], x: Any, *, group: Group | None = None, nd: int | None = None,
                    context: Any = None, batch_ndim: int = 1, check_batch_independence: bool = True,
                    vectorize: bool | None = None, max_coordinates: int = MAX_COORDINATES) -> Any:
    """``log|det dy/dx|`` per batch element of ``y = fn(x)`` from a full autograd Jacobian.

    Parameters
    ----------
    fn : callable
        ``fn(x)`` (or ``fn(x, context=context)``) returning ``y`` or a tuple whose first element is
        ``y`` (a flow layer's ``forward``). ``y`` must have the shape of ``x``. ``fn`` is called on copies
        of ``x``: it may work in place.
    x : torch.Tensor
        Input, shape ``(*B, ...)`` with ``batch_ndim`` leading batch axes. Use float64/complex128.
    group : Group, optional
        ``None`` for real or complex fields, ``U1`` for angles, ``SU(N)`` for matrix fields (then
        ``nd``, the number of trailing lattice axes, is required). See the module docstring for the
        coordinates used.
    nd : int, optional
        Number of trailing lattice axes (SU(N) only).
    context : optional
        Passed on as ``fn(x, context=context)`` when not None.
    batch_ndim : int
        Number of leading batch axes.
    check_batch_independence : bool
        Raise ValueError when the output of one batch element depends on another.
    vectorize : bool, optional
        Passed to ``torch.autograd.functional.jacobian``. Default: try the vectorised (vmap) Jacobian,
        typically ~100x faster, and fall back to one backward pass per coordinate if the layer uses
        an operation without a batching rule.
    max_coordinates : int
        The largest number of real coordinates of the whole batch (the Jacobian is that number squared):
        more raise a ValueError before ``fn`` is called. Default :data:`MAX_COORDINATES` = 1024.

    Returns
    -------
    torch.Tensor
        Shape ``x.shape[:batch_ndim]``, real.

    Examples
    --------
    >>> import torch
    >>> A = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    >>> x = torch.zeros(4, 2, dtype=torch.float64)
    >>> ld = autograd_logdet(lambda v: v @ A.T, x)
    >>> bool(torch.allclose(ld, torch.full((4,), float(torch.log(torch.tensor(6.0))), dtype=torch.float64)))
    True
    """
    import torch

    check_callable(fn, "fn")
    _check_input(torch, x, group, nd, batch_ndim)
    _check_size(x, group, nd, batch_ndim, _check_max_coordinates(max_coordinates))
    return _jacobian(fn, x, group, nd, context, batch_ndim, check_batch_independence, vectorize).logabsdet()


def _split(out: Any, who: str, expected: str) -> tuple[Any, Any]:
    if not isinstance(out, (tuple, list)) or len(out) < 2:
        raise TypeError(f"{who} must return {expected}")
    return out[0], out[1]


def _as_logdet(torch: Any, ld: Any, who: str) -> Any:
    """The log det a layer returned, as a real floating tensor (a Python float as float64); a TypeError naming
    ``who``, what it is and what is expected otherwise (user probe: a complex log det silently lost its imaginary
    part, an integer one passed, None crashed inside torch)."""
    expected = "expected a real floating log|det dy/dx| per batch element (a float64 or float32 tensor)"
    if ld is None:
        raise TypeError(f"{who} is None; {expected}")
    if isinstance(ld, float):
        return torch.tensor(ld, dtype=torch.float64)
    try:
        t = ld.detach() if isinstance(ld, torch.Tensor) else torch.as_tensor(ld)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{who} is {ld!r:.40} ({type(ld).__name__}); {expected}") from None
    if t.is_complex():
        raise TypeError(f"{who} has dtype {t.dtype}, a complex log det (log det rather than log|det|?); {expected}: "
                        "take log|det|, e.g. torch.linalg.slogdet(...).logabsdet or the real part of a complex log")
    if not t.is_floating_point():
        raise TypeError(f"{who} has dtype {t.dtype}; {expected}")
    return t


def _svd_summary(torch: Any, blocks: Any) -> tuple[int, float, float]:
    """``(batch element, smallest, largest singular value)`` of the worst-conditioned block (one SVD per block)."""
    worst = (0, 0.0, 0.0, -1.0)
    for b in range(blocks.shape[0]):
        s = torch.linalg.svdvals(blocks[b].detach().to(torch.float64))
        smin, smax = float(s.min()), float(s.max())
        cond = smax / smin if smin > 0 else math.inf
        if cond > worst[3]:
            worst = (b, smin, smax, cond)
    return worst[0], worst[1], worst[2]


def _conditioning_note(torch: Any, jac: _Jacobian, tol: float, quantity: str, scale: float) -> str:
    """The conditioning of dy/dx (user probe: correct but ill-conditioned flows failed with messages that blamed the
    layer): the round-off the map amplifies, ``eps * scale / smin`` (round trip; ``scale``: max|y|) or ``eps * cond``
    (log det, ``scale=0``), against the tolerance, and what to do."""
    b, smin, smax, eps = *_svd_summary(torch, jac.blocks), torch.finfo(jac.blocks.dtype).eps
    cond = smax / smin if smin > 0 else math.inf
    amp = (eps * scale / smin if smin > 0 else math.inf) if scale else eps * cond
    head = (f"\n  conditioning of dy/dx (dense Jacobian, batch element {b}): singular values {smin:.2e} .. {smax:.2e}, "
            f"condition number {cond:.2e}; round-off (eps {eps:.1e}) can move {quantity} by ~{amp:.1e}")
    if amp <= tol:
        return head + f", below the tolerance {tol:.1e}: the difference is not round-off"
    return (head + f", more than the tolerance {tol:.1e}: the failure may come from the conditioning of the map rather "
            "than from the layer. Check in float64, and a composition one layer at a time (its log det is the sum "
            "of its layers')")


def _group_hint(torch: Any, x: Any, batch_ndim: int) -> str:
    """A hint when ``x`` (checked with ``group=None``) looks like a field of unitary matrices (user probe: a
    correct SU(2) layer gave -795 against -9.7 with only 'not close')."""
    if not x.is_complex():
        return ""
    for k in range(batch_ndim, x.ndim - 1):
        N = x.shape[k]
        if N < 2 or x.shape[k + 1] != N:
            continue
        M = torch.movedim(x.detach(), (k, k + 1), (-2, -1)).to(torch.complex128)
        eye = torch.eye(N, dtype=M.dtype, device=M.device)
        if float((M.conj().transpose(-1, -2) @ M - eye).abs().max()) > 1e-4:   # float32 links: ~1e-6
            continue
        special = float((torch.linalg.det(M) - 1).abs().max()) < 1e-4
        what = f"SU({N}) matrices" if special else f"unitary {N}x{N} matrices"
        return (f"\n  hint: x looks like a field of {what} (axes {k} and {k + 1}), but group= was not given, so the "
                "Jacobian was taken in the coordinates of the complex entries, not in the algebra coordinates of the "
                f"Haar measure: for links pass group=latticekit.SU({N}), nd={x.ndim - k - 2}")
    return ""


def _roundtrip_floor(torch: Any, jac: _Jacobian, x0: Any, y: Any, group: Any) -> tuple[Any, float] | None:
    """Per element of ``x``, the first-order round-off floor of a round trip (see ``_ROUNDTRIP_ULPS``), or None
    where the chart coordinates are not the compared entries (SU(N)) or dx/dy does not exist."""
    if isinstance(group, SUGroup):
        return None
    try:
        Jinv = lu_linalg("inv", jac.blocks.detach().to(torch.float64))
    except RuntimeError:        # torch.linalg.LinAlgError: singular
        return None
    big = max(1.0, float(x0.abs().max()), float(y.abs().max()))
    floor = _ROUNDTRIP_ULPS * torch.finfo(jac.blocks.dtype).eps * big * (1 + Jinv.abs().sum(-1))   # (nb, n)
    if x0.is_complex():
        floor = floor.reshape(floor.shape[0], -1, 2).sum(-1)      # |dz| <= |d re| + |d im|
    return floor.reshape(x0.shape).to(x0.real.dtype), big


def _check_roundtrip(torch: Any, xi: Any, x0: Any, y: Any, jac: _Jacobian, group: Any, rtol: float, atol: float,
                     relax: bool, prefix: str) -> bool:
    """Assert ``xi = x0`` (U(1): modulo 2 pi); True when it passed only with the round-off floor of single precision."""
    from latticekit.testing._close import assert_close

    if isinstance(group, U1Group):
        actual = torch.remainder(xi - x0 + math.pi, 2 * math.pi) - math.pi
        desired, what = torch.zeros_like(actual), "inverse round trip (angles mod 2 pi)"
        rtol, atol = 0.0, max(atol, 1e3 * torch.finfo(actual.dtype).eps)
    else:
        actual, desired, what = xi, x0, "inverse round trip"
    try:
        assert_close(actual, desired, rtol=rtol, atol=atol, msg=prefix + what)
        return False
    except AssertionError as exc:
        failure = str(exc)
    note = ""
    floor = _roundtrip_floor(torch, jac, x0, y, group) if tuple(xi.shape) == tuple(x0.shape) else None
    if floor is not None:
        fl, big = floor
        usable = fl <= _FIRST_ORDER_LIMIT * big
        if relax:
            allowed = atol + rtol * desired.abs() + torch.where(usable, fl, torch.zeros_like(fl))
            if bool(((actual - desired).abs() <= allowed).all()):
                return True             # round-off that the conditioning of the map explains (float32 only)
            note = (f"\n  in single precision each element x_j is also allowed the round-off floor {_ROUNDTRIP_ULPS:g} "
                    f"eps M (1 + sum_i |dx_j/dy_i|), M = {big:.3g}, up to {float(fl.max()):.2e} here"
                    + ("" if bool(usable.all()) else f"; only where it is at most {_FIRST_ORDER_LIMIT:g} M: "
                       f"{int((~usable).sum())} elements are too ill-conditioned to check in this precision"))
    tol = atol + rtol * float(desired.abs().max())
    raise AssertionError(failure + note + _conditioning_note(torch, jac, tol, "the round trip",
                                                             max(1.0, float(y.abs().max())))) from None


def assert_logdet_matches(layer: Any, x: Any, *, group: Group | None = None, nd: int | None = None,
                          context: Any = None, batch_ndim: int = 1, rtol: float | None = None,
                          atol: float | None = None, check_inverse: bool = False, msg: str = "",
                          max_coordinates: int = MAX_COORDINATES) -> None:
    """Assert that a flow layer's ``logdet`` equals ``log|det dy/dx|`` from autograd.

    Calls ``layer(x)`` (or ``layer(x, context=context)``), which must return ``(y, logdet)`` with a real floating
    ``logdet`` (a complex, integer or missing log det is a TypeError), and compares ``logdet`` with
    :func:`autograd_logdet` (same ``group``/``nd`` conventions). With ``check_inverse``, also checks
    ``layer.inverse(y) -> (x', logdet_inv)`` with ``x' = x`` and ``logdet_inv = -logdet`` (U(1) angles compared
    modulo ``2 pi``). Every call of the layer gets its own copy of its input: a layer may work in place, and the
    caller's ``x`` is never changed.

    Tolerances: a log det is a sum over the lattice, so by default it is compared with a relative part:
    float64 / complex128 ``rtol=atol=1e-8``, float32 / complex64 ``rtol=atol=1e-4`` (the dtype of ``x``);
    the round trip ``x' = x`` uses the same pair. As in the other ``assert_*`` checkers, an explicit
    ``atol`` without ``rtol`` is an absolute bound (``rtol=0``). In float32 / complex64 with the default
    tolerances, a round trip of real or complex fields or U(1) angles is also allowed, element by element, the
    round-off that the map's conditioning amplifies: ``4 eps M (1 + sum_i |dx_j/dy_i|)``, ``M = max(1, |x|, |y|)``,
    from the dense Jacobian (while it is at most ``0.1 M``). A failure reports the conditioning of ``dy/dx``
    (singular values of the dense Jacobian) and whether round-off can explain the difference, and for complex
    ``x`` that looks like SU(N) links, that ``group=`` was not given.

    ``x`` (and ``group``, ``nd``, ``batch_ndim``, ``max_coordinates``) are checked before the layer is called: a
    torch tensor, not empty, for ``group=SU(N)`` / ``U1`` group elements (see :func:`autograd_logdet`), and at most
    ``max_coordinates`` real coordinates in the batch.

    Examples
    --------
    >>> import math, torch
    >>> class Scale:
    ...     def __call__(self, x, context=None):
    ...         return 2.0 * x, torch.full(x.shape[:1], x[0].numel() * math.log(2.0), dtype=x.dtype)
    ...     def inverse(self, y, context=None):
    ...         return 0.5 * y, torch.full(y.shape[:1], -y[0].numel() * math.log(2.0), dtype=y.dtype)
    >>> assert_logdet_matches(Scale(), torch.randn(2, 3, 3, dtype=torch.float64), check_inverse=True)
    """
    import torch

    from latticekit.testing._close import assert_close, check_tolerance

    prefix = f"{msg}: " if msg else ""
    rtol, atol = check_tolerance(rtol, "rtol"), check_tolerance(atol, "atol")
    relax = rtol is None and atol is None          # the conditioning floor of round trips: default tolerances only
    check_callable(layer, "layer")
    _check_input(torch, x, group, nd, batch_ndim)
    _check_size(x, group, nd, batch_ndim, _check_max_coordinates(max_coordinates))
    if check_inverse and getattr(layer, "inverse", None) is None:
        raise TypeError("check_inverse=True but the layer has no inverse()")
    if atol is not None and rtol is None:
        rtol = 0.0                       # an explicit atol alone is an absolute bound (docs/testing.md)
    single = x.dtype in (torch.float32, torch.complex64)
    relax = relax and single
    rtol = (1e-4 if single else 1e-8) if rtol is None else rtol
    atol = (1e-4 if single else 1e-8) if atol is None else atol
    # user probe: with an in-place layer, x, y and the inverse's output were one tensor (a wrong inverse compared
    # equal to itself) and the caller's x changed: each call of the layer gets its own copy, the results are copied
    x0 = x.detach().clone()
    y, logdet = _split(_call(layer, x0.clone(), context), "layer", "(y, logdet)")
    logdet = _as_logdet(torch, logdet, "the layer's log det").clone()
    y = y.detach().clone()
    jac = _jacobian(layer, x0, group, nd, context, batch_ndim, True, None)
    ref = jac.logabsdet()
    if logdet.ndim == 0:
        logdet = logdet.expand(ref.shape)
    try:
        assert_close(logdet.to(ref.dtype), ref, rtol=rtol, atol=atol, msg=f"{prefix}logdet vs autograd Jacobian")
    except AssertionError as exc:
        hint = _group_hint(torch, x0, batch_ndim) if group is None else ""
        if not hint:    # links in entry coordinates: a map of the group has no meaningful conditioning there
            tol = atol + rtol * float(ref.abs().max())
            hint = _conditioning_note(torch, jac, tol, "the reference log det", 0.0)
        raise AssertionError(f"{exc}{hint}") from None
    if check_inverse:
        xi, ld_inv = _split(_call(layer.inverse, y.clone(), context), "layer.inverse", "(x, logdet)")
        ld_inv = _as_logdet(torch, ld_inv, "the inverse's log det")
        xi = torch.as_tensor(xi).detach().clone()
        target, what = -ref, "inverse logdet vs -forward logdet"
        if _check_roundtrip(torch, xi, x0, y, jac, group, rtol, atol, relax, prefix):
            # x' = inverse(y) was allowed the round-off floor: its log det belongs to x', not to x, and the forward
            # log det was checked against autograd at x, so the inverse's is compared with the forward's at x'
            _, ld_xi = _split(_call(layer, xi.clone(), context), "layer", "(y, logdet)")
            target = -_as_logdet(torch, ld_xi, "the layer's log det").to(ref.dtype).expand(ref.shape)
            what += " at the round-tripped x'"
        assert_close(ld_inv.to(ref.dtype).expand(ref.shape), target, rtol=rtol, atol=atol, msg=prefix + what)
