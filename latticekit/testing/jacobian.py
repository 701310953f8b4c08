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
layer must not mix batch elements), so keep lattices tiny (e.g. 2x2 or 4x4, batch 2).
"""

from __future__ import annotations

import math
from typing import Any, Callable

from latticekit.backends import lu_linalg
from latticekit.groups import Group, SUGroup, U1Group

from ._validate import check_callable, check_group, check_in_group

__all__ = ["assert_logdet_matches", "autograd_logdet"]


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


def autograd_logdet(fn: Callable[..., Any], x: Any, *, group: Group | None = None, nd: int | None = None,
                    context: Any = None, batch_ndim: int = 1, check_batch_independence: bool = True,
                    vectorize: bool | None = None) -> Any:
    """``log|det dy/dx|`` per batch element of ``y = fn(x)`` from a full autograd Jacobian.

    Parameters
    ----------
    fn : callable
        ``fn(x)`` (or ``fn(x, context=context)``) returning ``y`` or a tuple whose first element is
        ``y`` (a flow layer's ``forward``). ``y`` must have the shape of ``x``.
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
    bshape = tuple(x.shape[:batch_ndim])
    nb = math.prod(bshape)
    x0 = x.detach()

    if isinstance(group, SUGroup):
        assert nd is not None
        cshape = tuple(x0.shape[: x0.ndim - nd - 2]) + (group.algebra_dim,) + tuple(x0.shape[x0.ndim - nd:])
        rdt = x0.real.dtype

        def chart(w: Any) -> Any:
            return _group_exp_left(torch, group, w, x0, nd)

        def coords(y: Any, y0: Any) -> Any:
            return group.to_coords(group.project_algebra(group.mul_adj(y, y0, nd=nd), nd=nd), nd=nd)
    else:
        if x0.is_complex():
            cshape = tuple(x0.shape) + (2,)
            rdt = x0.real.dtype

            def chart(w: Any) -> Any:
                return x0 + torch.complex(w[..., 0], w[..., 1])

            def coords(y: Any, y0: Any) -> Any:
                return torch.view_as_real(y - y0) if y.is_complex() else y - y0
        else:
            cshape, rdt = tuple(x0.shape), x0.dtype

            def chart(w: Any) -> Any:
                return x0 + w

            def coords(y: Any, y0: Any) -> Any:
                return y - y0

    with torch.no_grad():
        y0 = _first(_call(fn, x0, context)).detach()
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
    _, logabs = lu_linalg("slogdet", blocks)   # torch's batched CPU LU is unsafe after set_num_threads
    return logabs.reshape(bshape)


def assert_logdet_matches(layer: Any, x: Any, *, group: Group | None = None, nd: int | None = None,
                          context: Any = None, batch_ndim: int = 1, rtol: float | None = None,
                          atol: float | None = None, check_inverse: bool = False, msg: str = "") -> None:
    """Assert that a flow layer's ``logdet`` equals ``log|det dy/dx|`` from autograd.

    Calls ``layer(x)`` (or ``layer(x, context=context)``), which must return ``(y, logdet)``, and
    compares ``logdet`` with :func:`autograd_logdet` (same ``group``/``nd`` conventions). With
    ``check_inverse``, also checks ``layer.inverse(y) -> (x', logdet_inv)`` with ``x' = x`` and
    ``logdet_inv = -logdet`` (U(1) angles compared modulo ``2 pi``).

    Tolerances: a log det is a sum over the lattice, so by default it is compared with a relative part:
    float64 / complex128 ``rtol=atol=1e-8``, float32 / complex64 ``rtol=atol=1e-4`` (the dtype of ``x``);
    the round trip ``x' = x`` uses the same pair. As in the other ``assert_*`` checkers, an explicit
    ``atol`` without ``rtol`` is an absolute bound (``rtol=0``).

    ``x`` (and ``group``, ``nd``, ``batch_ndim``) are checked before the layer is called: a torch tensor,
    not empty, and for ``group=SU(N)`` / ``U1`` group elements (see :func:`autograd_logdet`).

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
    check_callable(layer, "layer")
    _check_input(torch, x, group, nd, batch_ndim)
    if check_inverse and getattr(layer, "inverse", None) is None:
        raise TypeError("check_inverse=True but the layer has no inverse()")
    if atol is not None and rtol is None:
        rtol = 0.0                       # an explicit atol alone is an absolute bound (docs/testing.md)
    single = x.dtype in (torch.float32, torch.complex64)
    rtol = (1e-4 if single else 1e-8) if rtol is None else rtol
    atol = (1e-4 if single else 1e-8) if atol is None else atol
    out = _call(layer, x, context)
    if not isinstance(out, (tuple, list)) or len(out) < 2:
        raise TypeError("layer must return (y, logdet)")
    y, logdet = out[0], out[1]
    ref = autograd_logdet(layer, x, group=group, nd=nd, context=context, batch_ndim=batch_ndim)
    logdet = torch.as_tensor(logdet).detach()
    if logdet.ndim == 0:
        logdet = logdet.expand(ref.shape)
    assert_close(logdet.to(ref.dtype), ref, rtol=rtol, atol=atol, msg=f"{prefix}logdet vs autograd Jacobian")
    if check_inverse:
        inv = layer.inverse
        xi, ld_inv = _call(inv, y.detach(), context)
        if isinstance(group, U1Group):
            d = torch.remainder(xi.detach() - x.detach() + math.pi, 2 * math.pi) - math.pi
            assert_close(d, torch.zeros_like(d), rtol=0.0, atol=max(atol, 1e3 * torch.finfo(d.dtype).eps),
                         msg=f"{prefix}inverse round trip (angles mod 2 pi)")
        else:
            assert_close(xi.detach(), x.detach(), rtol=rtol, atol=atol, msg=f"{prefix}inverse round trip")
        ld_inv = torch.as_tensor(ld_inv).detach()
        assert_close(ld_inv.to(ref.dtype).expand(ref.shape), -ref, rtol=rtol, atol=atol,
                     msg=f"{prefix}inverse logdet vs -forward logdet")
