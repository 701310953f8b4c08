"""Numba fast paths for the hopping-form phi^4 action and force on the NumPy backend.

Row layout, chunking, declining rules and caching: :mod:`latticekit.backends._numba_common`.

Registered names (backend ``"numpy"``)
--------------------------------------
``phi4_action(phi, kappa, lam, nd) -> (*B,)`` and ``phi4_force(phi, kappa, lam, nd) -> (*B, *L)``
    ``S = sum_x [(1 - 2 lam) phi^2 + lam phi^4 - 2 kappa sum_mu phi_x phi_{x+mu}]`` and ``dS/dphi``.

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_phi4 as kp
>>> phi = np.ones((2, 4, 4))                        # constant field, batch 2: 16 (1 - 2 lam + lam - 4 kappa)
>>> if kp.available():
...     out = kp.kernels()["phi4_action"](phi, 0.25, 0.5, 2)
... else:                                           # without numba the generic code runs instead
...     out = np.full(2, -8.0)
>>> out.tolist()
[-8.0, -8.0]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._numba_common import _chunking, _geometry, _jit, _load, _ok, _prange, _prod, _real, _shift, available

__all__ = ["NAMES", "kernels"]

NAMES = ("phi4_action", "phi4_force")


# --------------------------------------------------------------------------------------------------
# phi^4 (hopping form; coefficients c2 phi^2 + c4 phi^4 - ch phi sum_mu phi(x+mu))
# --------------------------------------------------------------------------------------------------
@_jit(parallel=True)
def _phi4_action_kernel(phi, dims, K, rpc, c2, c4, ch, partial):  # pragma: no cover - compiled
    B, R, Lx = phi.shape
    nd = dims.shape[0]
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        acc = np.zeros(Lx)
        nb = np.empty(Lx)
        t = np.empty(Lx)
        for o in range(o0, o1):
            for mu in range(nd):
                r, a, cc = _shift(o, 0, 0, mu, 1, dims, K)
                _load(t, phi[b, r], a, cc, L2)
                if mu == 0:
                    for x in range(Lx):
                        nb[x] = t[x]
                else:
                    for x in range(Lx):
                        nb[x] += t[x]
            row = phi[b, o]
            for x in range(Lx):
                p = row[x]
                p2 = p * p
                acc[x] += c2 * p2 + c4 * p2 * p2 - ch * p * nb[x]
        tot = 0.0
        for x in range(Lx):
            tot += acc[x]
        partial[c] = tot


@_jit(parallel=True)
def _phi4_force_kernel(phi, dims, K, rpc, c2, c4, ch, F):  # pragma: no cover - compiled
    B, R, Lx = phi.shape
    nd = dims.shape[0]
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    a2 = 2.0 * c2
    a4 = 4.0 * c4
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        nb = np.empty(Lx)
        t = np.empty(Lx)
        for o in range(o0, o1):
            for mu in range(nd):
                for step in (1, -1):
                    r, a, cc = _shift(o, 0, 0, mu, step, dims, K)
                    _load(t, phi[b, r], a, cc, L2)
                    if mu == 0 and step == 1:
                        for x in range(Lx):
                            nb[x] = t[x]
                    else:
                        for x in range(Lx):
                            nb[x] += t[x]
            row = phi[b, o]
            dst = F[b, o]
            for x in range(Lx):
                p = row[x]
                dst[x] = a2 * p + a4 * p * p * p - ch * nb[x]


# --------------------------------------------------------------------------------------------------
# Python wrappers: qualify the inputs (else decline with None), reshape views, call the kernels
# --------------------------------------------------------------------------------------------------
def _phi_ok(phi: Any, nd: Any, *couplings: Any) -> bool:
    return (isinstance(nd, int) and nd >= 1 and _ok(phi, np.float64) and phi.ndim >= nd
            and 0 not in phi.shape[phi.ndim - nd:] and all(_real(v) for v in couplings))


def phi4_action(phi: Any, kappa: Any, lam: Any, nd: int) -> Any:
    """Hopping-form phi^4 action per configuration, or None (declined)."""
    if not _phi_ok(phi, nd, kappa, lam):
        return None
    bshape, L, dims, K, R, Lx = _geometry(phi, nd, 0)
    B = _prod(bshape)
    rpc, nc = _chunking(B, R, Lx, 16384)
    partial = np.empty(B * nc)
    _phi4_action_kernel(phi.reshape(B, R, Lx), dims, K, rpc, 1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa),
                        partial)
    return partial.reshape(B, nc).sum(axis=1).reshape(bshape)


def phi4_force(phi: Any, kappa: Any, lam: Any, nd: int) -> Any:
    """``dS/dphi`` of the hopping-form phi^4 action, or None (declined)."""
    if not _phi_ok(phi, nd, kappa, lam):
        return None
    bshape, L, dims, K, R, Lx = _geometry(phi, nd, 0)
    B = _prod(bshape)
    F = np.empty(phi.shape)
    rpc, _ = _chunking(B, R, Lx, 16384)
    _phi4_force_kernel(phi.reshape(B, R, Lx), dims, K, rpc, 1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa),
                       F.reshape(B, R, Lx))
    return F



def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}
