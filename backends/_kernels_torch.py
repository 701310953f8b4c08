"""Opt-in ``torch.compile`` fast paths for the bandwidth-bound 2D kernels (U(1) gauge, phi^4).

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
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable

from ._fast import register_fast_path

__all__ = ["NAMES", "register", "register_from_env"]

NAMES = ("u1_plaquette_cos_sum", "u1_wilson_force", "phi4_action", "phi4_force")


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
    return _compiled("_u1_force_from_sin")(_compiled("_u1_plaquette_sin")(theta, nd), beta, nd)


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


@lru_cache(maxsize=None)
def _compiled(name: str) -> Callable[..., Any]:
    import torch

    fn = {"u1_plaquette_cos_sum": _u1_plaquette_cos_sum, "_u1_plaquette_sin": _u1_plaquette_sin,
          "_u1_force_from_sin": _u1_force_from_sin, "phi4_action": _phi4_action, "phi4_force": _phi4_force}[name]
    # torch's default shape policy: the first shape is compiled static, a second shape triggers one
    # recompilation with dynamic sizes; nd is a Python constant baked into each graph.
    return torch.compile(fn)


def _lazy(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        if name == "u1_wilson_force":
            return _u1_wilson_force(*args, **kwargs)
        return _compiled(name)(*args, **kwargs)

    call.__name__ = f"compiled_{name}"
    call.__doc__ = f"torch.compile'd {name} (compiled on first call)."
    return call


def register() -> tuple[str, ...]:
    """Register the compiled kernels for backend ``"torch"``; returns the registered names.

    Raises ImportError when torch is not installed.
    """
    import torch  # noqa: F401  (fail early and clearly without torch)

    for name in NAMES:
        register_fast_path(name, "torch", _lazy(name))
    return NAMES


def register_from_env() -> tuple[str, ...]:
    """:func:`register` when ``LATTICEKIT_FAST_KERNELS`` is ``1``/``true``/``yes``; otherwise nothing."""
    if os.environ.get("LATTICEKIT_FAST_KERNELS", "").strip().lower() in ("1", "true", "yes", "on"):
        return register()
    return ()
