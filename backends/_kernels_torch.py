"""Opt-in ``torch.compile`` fast paths: the 2D U(1) gauge and phi^4 kernels and the CG updates here, the SU(N)
gauge and Wilson-Dirac kernels in their own modules (registered by :func:`register` as well).

Measured on the 2-core development machine (benchmarks/README.md): the generic array code for the
U(1) plaquette/action/force and the phi^4 action/force makes one pass over memory per array
operation (plus ``roll`` copies), and NumPy's float64 ``cos``/``sin`` is scalar. Inductor fuses the
whole kernel into one vectorised loop over real float arrays (the fields here are real, so the
"no complex dtypes" limitation of torch.compile does not apply).

Compilation costs tens of seconds per kernel on first use (cached on disk by torch afterwards), so
nothing is registered at import: call :func:`register` (or set ``LATTICEKIT_FAST_KERNELS=1`` and call
:func:`register_from_env`) to put the kernels into the :mod:`latticekit.backends` fast-path registry
under the names below. Each takes torch tensors on any device and returns what the generic code
returns, to round-off (checked in benchmarks/bench_core.py against the library kernels).

Registered names (backend ``"torch"``)
--------------------------------------
``u1_plaquette_cos_sum(theta, nd) -> (*B,)``
    ``sum_x sum_{mu<nu} cos theta_{mu nu}(x)`` of a U(1) gauge field ``(*B, nd, *L)``.
``u1_wilson_force(theta, beta, nd) -> (*B, nd, *L)``
    ``dS/dtheta_mu(x)`` of ``S = -beta sum cos theta_P``.
``phi4_action(phi, kappa, lam, nd) -> (*B,)`` and ``phi4_force(phi, kappa, lam, nd) -> (*B, *L)``
    The hopping-form phi^4 action and ``dS/dphi``.
``batched_re_inner``, ``cg_update_xr``, ``cg_update_p``
    The fused CG vector updates of :mod:`latticekit.linalg.cg`, with the signatures and the in-place
    semantics of the numba kernels of ``backends/_numba_linalg.py``: ``Re <a, b>`` per chain;
    ``x += alpha p``, ``r -= alpha Ap`` returning ``|r|^2``; ``p = r + beta p`` on the active chains.
    Complex fields are handled through their real views (``torch.view_as_real``, no copy), so the
    compiled graphs are real. They decline (return None) unless the fields are contiguous tensors of
    one shape and dtype (float32/64, complex64/128) and the per-chain arrays are tensors of the batch
    shape. On a GPU they replace about fifteen kernel launches per iteration by three or four.
``sun_re_tr_plaquette_sum``, ``sun_plaquette_field``, ``sun_wilson_force``, ``wilson_dirac_apply``
    The SU(N) gauge kernels (any N) and the Wilson-Dirac hopping term, from
    ``backends/_kernels_torch_sun.py`` and ``backends/_kernels_torch_dirac.py`` (:func:`register` registers
    them too; their docstrings give the layouts). Shared machinery: ``backends/_torch_compile.py``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable

from . import _kernels_torch_dirac, _kernels_torch_sun
from ._fast import register_fast_path
from ._torch_compile import compile_variant

__all__ = ["NAMES", "register", "register_from_env"]

_OWN = ("u1_plaquette_cos_sum", "u1_wilson_force", "phi4_action", "phi4_force", "batched_re_inner", "cg_update_xr",
        "cg_update_p")
#: every name :func:`register` registers: this module's and those of the SU(N) and Wilson-Dirac modules
NAMES = _OWN + _kernels_torch_sun.NAMES + _kernels_torch_dirac.NAMES

_CG = ("batched_re_inner", "cg_update_xr", "cg_update_p")


def _u1_plaquette_cos_sum(theta: Any, nd: int) -> Any:
    import torch

    k = theta.ndim - nd - 1
    links = [theta.select(k, mu) for mu in range(nd)]
    tot = None
    for mu in range(nd):
        for nu in range(mu + 1, nd):
            ax_mu, ax_nu = -nd + mu, -nd + nu
            th = links[mu] + torch.roll(links[nu], -1, ax_mu) - torch.roll(links[mu], -1, ax_nu) - links[nu]
            c = torch.cos(th)
            tot = c if tot is None else tot + c
    return tot.sum(dim=tuple(range(-nd, 0)))


def _u1_plaquette_sin(theta: Any, nd: int) -> Any:
    import torch

    k = theta.ndim - nd - 1
    links = [theta.select(k, mu) for mu in range(nd)]
    out = []
    for mu in range(nd):
        for nu in range(mu + 1, nd):
            ax_mu, ax_nu = -nd + mu, -nd + nu
            th = links[mu] + torch.roll(links[nu], -1, ax_mu) - torch.roll(links[mu], -1, ax_nu) - links[nu]
            out.append(torch.sin(th))
    return torch.stack(out, dim=k)


def _u1_force_from_sin(s: Any, beta: float, nd: int) -> Any:
    import torch

    k = s.ndim - nd - 1
    acc: list[Any] = [None] * nd
    p = 0
    for mu in range(nd):
        for nu in range(mu + 1, nd):
            sp = s.select(k, p)
            p += 1
            t_mu = sp - torch.roll(sp, 1, -nd + nu)
            t_nu = torch.roll(sp, 1, -nd + mu) - sp
            acc[mu] = t_mu if acc[mu] is None else acc[mu] + t_mu
            acc[nu] = t_nu if acc[nu] is None else acc[nu] + t_nu
    return beta * torch.stack(acc, dim=k)


def _u1_wilson_force(theta: Any, beta: float, nd: int) -> Any:
    # two compiled kernels: inductor would otherwise inline sin(theta_P) into each shifted use of it
    # and evaluate it three times per site
    return _compiled("_u1_force_from_sin", nd)(_compiled("_u1_plaquette_sin", nd)(theta, nd), beta, nd)


def _phi4_action(phi: Any, kappa: float, lam: float, nd: int) -> Any:
    import torch

    nb = None
    for mu in range(nd):
        r = torch.roll(phi, -1, -nd + mu)
        nb = r if nb is None else nb + r
    p2 = phi * phi
    dens = (1.0 - 2.0 * lam) * p2 + lam * p2 * p2 - (2.0 * kappa) * phi * nb
    return dens.sum(dim=tuple(range(-nd, 0)))


def _phi4_force(phi: Any, kappa: float, lam: float, nd: int) -> Any:
    import torch

    nb = None
    for mu in range(nd):
        r = torch.roll(phi, -1, -nd + mu) + torch.roll(phi, 1, -nd + mu)
        nb = r if nb is None else nb + r
    return (2.0 * (1.0 - 2.0 * lam)) * phi + (4.0 * lam) * phi * phi * phi - (2.0 * kappa) * nb


def _dot_rows(a: Any, b: Any) -> Any:
    return (a * b).sum(dim=1)


def _xr_rows(x: Any, r: Any, p: Any, ap: Any, alpha: Any) -> Any:
    x.add_(alpha * p)
    r.sub_(alpha * ap)
    return (r * r).sum(dim=1)


def _p_rows(p: Any, r: Any, beta: Any, active: Any) -> None:
    import torch

    p.copy_(torch.where(active, r + beta * p, p))


def _cg_fields_ok(batch_ndim: Any, *fields: Any) -> bool:
    import torch

    if not isinstance(batch_ndim, int) or isinstance(batch_ndim, bool):
        return False
    f0 = fields[0]
    if not isinstance(f0, torch.Tensor) or not 0 <= batch_ndim < f0.ndim:
        return False
    if f0.dtype not in (torch.float32, torch.float64, torch.complex64, torch.complex128):
        return False
    return all(isinstance(f, torch.Tensor) and f.shape == f0.shape and f.dtype == f0.dtype and f.device == f0.device
               and f.is_contiguous() for f in fields)


def _cg_rows(a: Any, batch_ndim: int) -> Any:
    """A field as a (chains, real entries) view, no copy."""
    import torch

    nb = 1
    for n in a.shape[:batch_ndim]:
        nb *= int(n)
    return (torch.view_as_real(a) if a.is_complex() else a).reshape(nb, -1)


def _cg_per_chain(v: Any, like: Any, batch_ndim: int, boolean: bool = False) -> Any:
    """A per-chain tensor as a (chains, 1) column, or None when it does not qualify."""
    import torch

    if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(like.shape[:batch_ndim]) or v.device != like.device:
        return None
    if boolean != (v.dtype == torch.bool):
        return None
    if not boolean:
        v = v.to(like.real.dtype if like.is_complex() else like.dtype)
    return v.reshape(-1, 1)


def _batched_re_inner(a: Any, b: Any, batch_ndim: int) -> Any:
    if not _cg_fields_ok(batch_ndim, a, b):
        return None
    return _compiled("_dot_rows")(_cg_rows(a, batch_ndim), _cg_rows(b, batch_ndim)).reshape(a.shape[:batch_ndim])


def _needs_grad(*values: Any) -> bool:
    """Whether autograd has to see an update of these: the compiled updates write in place, which autograd refuses
    ("modified by an inplace operation"); they decline then, as the numba CG does, and the generic code runs."""
    import torch

    return torch.is_grad_enabled() and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)


def _cg_update_xr(x: Any, r: Any, p: Any, Ap: Any, alpha: Any, batch_ndim: int) -> Any:
    if not _cg_fields_ok(batch_ndim, x, r, p, Ap) or _needs_grad(x, r, p, Ap, alpha):
        return None
    al = _cg_per_chain(alpha, x, batch_ndim)
    if al is None:
        return None
    rr = _compiled("_xr_rows")(*(_cg_rows(f, batch_ndim) for f in (x, r, p, Ap)), al)
    return rr.reshape(x.shape[:batch_ndim])


def _cg_update_p(p: Any, r: Any, beta: Any, active: Any, batch_ndim: int) -> Any:
    if not _cg_fields_ok(batch_ndim, p, r) or _needs_grad(p, r, beta):
        return None
    bt = _cg_per_chain(beta, p, batch_ndim)
    act = _cg_per_chain(active, p, batch_ndim, boolean=True)
    if bt is None or act is None:
        return None
    _compiled("_p_rows")(_cg_rows(p, batch_ndim), _cg_rows(r, batch_ndim), bt, act)
    return p


@lru_cache(maxsize=None)
def _compiled(name: str, nd: int | None = None) -> Callable[..., Any]:
    fn = {"u1_plaquette_cos_sum": _u1_plaquette_cos_sum, "_u1_plaquette_sin": _u1_plaquette_sin,
          "_u1_force_from_sin": _u1_force_from_sin, "phi4_action": _phi4_action, "phi4_force": _phi4_force,
          "_dot_rows": _dot_rows, "_xr_rows": _xr_rows, "_p_rows": _p_rows}[name]
    # torch's default shape policy: the first shape is compiled static, a second shape triggers one
    # recompilation with dynamic sizes; nd is a Python constant baked into each graph, one code object per nd
    # (compile_variant: dynamo's limit of 8 variants per code object)
    return compile_variant(fn, "any" if nd is None else f"{nd}d")


def _lazy(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if name == "u1_wilson_force":
            return _u1_wilson_force(*args, **kwargs)
        if name in _CG:                    # wrappers: qualify, take real views, call the compiled rows
            return {"batched_re_inner": _batched_re_inner, "cg_update_xr": _cg_update_xr,
                    "cg_update_p": _cg_update_p}[name](*args, **kwargs)
        return _compiled(name, args[-1] if args and isinstance(args[-1], int) else None)(*args, **kwargs)

    call.__name__ = f"compiled_{name}"
    call.__doc__ = f"torch.compile'd {name} (compiled on first call)."
    return call


def register() -> tuple[str, ...]:
    """Register the compiled kernels for backend ``"torch"``; returns the registered names.

    Raises ImportError when torch is not installed.
    """
    import torch  # noqa: F401  (fail early and clearly without torch)

    for name in _OWN:
        register_fast_path(name, "torch", _lazy(name))
    for mod in (_kernels_torch_sun, _kernels_torch_dirac):
        for name, fn in mod.kernels().items():
            register_fast_path(name, "torch", fn)
    return NAMES


def register_from_env() -> tuple[str, ...]:
    """:func:`register` when ``LATTICEKIT_FAST_KERNELS`` is ``1``/``true``/``yes``; otherwise nothing."""
    if os.environ.get("LATTICEKIT_FAST_KERNELS", "").strip().lower() in ("1", "true", "yes", "on"):
        return register()
    return ()
