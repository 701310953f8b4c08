"""Numba fast path: the whole CG loop on the Wilson normal operator, one compiled call per solve.

The batched CG of :mod:`latticekit.linalg.cg` runs its loop in Python: per iteration two operator
calls (input checks, dispatch, views) and a dozen small array operations on per-chain scalars. With
the fused kernels of ``_numba_linalg`` that costs about 80 us per iteration whatever the lattice size,
which is negligible against a batch of large fields and decisive for one small one (2D U(1), L = 8:
4-6x SciPy's CG on the explicit sparse matrix, ``benchmarks/results/dirac_cg_fused.json``). Here the
operator, the vector updates and the convergence test of every chain run inside one compiled function:

``wilson_normal_cg(b, links, gammas, kappa, mu, *, antiperiodic, even_odd, x0, tol, maxiter)``
    Solves ``(M + mu) x = b`` per chain with ``M = D D^dag`` for the Wilson-Dirac operator
    ``D = 1 - kappa H`` (``even_odd``: ``M = D_sc D_sc^dag`` of the Schur complement
    ``D_sc = 1 - kappa^2 P_e H P_o H P_e`` on even half-fields, :mod:`latticekit.actions.even_odd`).
    ``b``: ``(*S, *B, Ns, Nc, *L)`` complex128, ``links``: ``(*B, nd, Nc, Nc, *L)`` complex128 (U(1): the
    phases as 1 x 1 matrices), ``gammas`` the operator's monomial gamma tables (as for
    ``wilson_dirac_apply``). Returns ``(x, converged, iterations)`` with the per-chain arrays of shape
    ``(*S, *B)``, or None (declined: the caller runs the generic loop). Also registered for torch CPU
    tensors (``wilson_normal_cg_torch``: zero-copy NumPy views; declined where autograd must see the
    solve), since the solves of the torch code (pseudofermion flows) have the same loop overhead.

Every chain is an independent CG (the batch is ``S x B`` chains, chain ``(s, b)`` on configuration ``b``)
with the iteration of :func:`latticekit.linalg.cg` step for step: ``r = b - A x0``, stop when
``|r|^2 <= tol^2 |b|^2`` (|b| = 1 for b = 0), a chain with ``Re p^dag A p <= 0`` is frozen and reported
unconverged, at most ``maxiter`` updates. The chains are spread over the threads (``prange``) when the
solve is large enough (``_CG_PARALLEL_WORK``; smaller ones run on one thread, ``_numba_common._launch``); one
chain runs on one thread, so the wrapper declines when there are fewer chains than threads and the
field is above the hopping kernel's threading threshold (the generic loop then keeps the threaded
hopping kernel; a design choice, the crossover is not measured). The hopping term
is the kernel of ``_numba_dirac`` (the 2D U(1) whole-configuration kernel or the row kernel, applied
serially to one field), so ``A p`` is the same arithmetic as ``WilsonDirac.normal``; the reductions are
sequential sums over the chain, so a chain's iterates do not depend on the batch or the thread count.
Results agree with the generic loop to round-off (tests/linalg/test_cg_compiled.py).

numba caches this module's compiled code keyed on this file: after editing a kernel of
``_numba_dirac`` delete ``backends/__pycache__/_numba_cg*.nb[ic]`` as well.

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_cg as kc
>>> gammas = (((1, 0), (1, 1)), ((1, 0), (-1j, 1j)))   # 2D: sigma_x, sigma_y as (perm, coef)
>>> U = np.ones((2, 1, 1, 4, 4), dtype=complex)        # cold U(1) links as 1 x 1 matrices
>>> b = np.zeros((2, 1, 4, 4), dtype=complex); b[0, 0, 0, 0] = 1.0
>>> from latticekit.backends import _numba_dirac as kd
>>> if kc.available():                                 # D D^dag x = b with D = wilson_dirac_apply(., 1, -kappa)
...     x, converged, iterations = kc.wilson_normal_cg(b, U, gammas, 0.1, 0.0, tol=1e-12)
...     Ddag_x = kd.wilson_dirac_apply(x, U, gammas, 1.0, -0.1, dagger=True)
...     ok = bool(converged) and float(np.abs(kd.wilson_dirac_apply(Ddag_x, U, gammas, 1.0, -0.1) - b).max()) < 1e-10
... else:                                              # without numba nothing is registered (generic CG)
...     ok = True
>>> ok
True
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._numba_common import _jit, _launch, _numba, _prange, _prod, _real, available
from ._numba_dirac import (_U1_2D_MAX_SITES, _WD_SERIAL_WORK, _fermion_geometry, _gamma_arrays, _row_neighbours,
                           _u1_2d_config, _wd_chunk)

__all__ = ["NAMES", "kernels"]

NAMES = ("wilson_normal_cg",)


# --------------------------------------------------------------------------------------------------
# the operator on one chain
# --------------------------------------------------------------------------------------------------
@_jit()
def _hop(out, v, bu, alpha, beta, dag, geo, tf, td, scr):  # pragma: no cover - compiled
    """``out = alpha v + beta H v`` (``H^dag`` for ``dag``) for one field ``v`` (flat complex, Ns Nc V) on
    the links of configuration ``bu``. ``geo = (u1, Uf, U5, dims, K, n, gidx, anti, rpc, L0, L1)``:
    ``u1`` selects the 2D U(1) kernel (flat links ``Uf``), else the row kernel (links ``U5`` of shape
    (B, nd, Nc, Nc, V), chunks of ``rpc`` rows of ``n`` sites); ``tf``/``td`` the hop tables
    ``(spins, cproj, crec, cq, cr)`` of H and H^dag; ``scr = (h, t, ub, hn, hs, he, hw)`` scratch."""
    u1, Uf, U5, dims, K, n, gidx, anti, rpc, L0, L1 = geo
    tb = td if dag else tf
    if u1:
        V = L0 * L1
        _u1_2d_config(out, v, Uf, np.uint64(0), np.uint64(bu * 2 * V), L0, L1, alpha, beta, anti, tb[3], tb[4],
                      scr[3], scr[4], scr[5], scr[6])
        return
    Ns = tb[0].shape[2] * 2
    Nc = U5.shape[2]
    V = U5.shape[4]
    R = V // n
    v5 = v.reshape((1, 1, Ns, Nc, V))
    o5 = out.reshape((1, 1, Ns, Nc, V))
    for o0 in range(0, R, rpc):
        _wd_chunk(v5, U5, dims, K, n, gidx, tb[0], tb[1], tb[2], alpha, beta, anti, o5, 0, 0, bu, o0,
                  min(R, o0 + rpc), scr[0], scr[1], scr[2])


@_jit()
def _mask(v, par, V):  # pragma: no cover - compiled
    """``v *= par`` site by site on every spin-colour component (``par`` 1.0/0.0 per site)."""
    for q in range(v.shape[0] // V):
        z = q * V
        for x in range(V):
            v[z + x] *= par[x]


@_jit()
def _normal(Ap, v, bu, kappa, mu, eo, ev, od, t1, t2, geo, tf, td, scr):  # pragma: no cover - compiled
    """``Ap = (D D^dag + mu) v``; ``eo``: ``Ap = (D_sc D_sc^dag + mu) v`` for an even half-field ``v``, with
    ``D_sc^dag v = v - kappa^2 P_e H^dag P_o H^dag v`` and ``D_sc w = w - kappa^2 P_e H P_o H w``
    (even_odd.py: the same products as ``EvenOddDirac.normal``); ``ev``/``od`` the parity masks."""
    V = ev.shape[0]
    if eo:
        k2 = kappa * kappa
        for i in range(v.shape[0]):
            t1[i] = v[i]
        _mask(t1, ev, V)                                         # P_e v (the operator reads even sites only)
        _hop(t2, t1, bu, 0.0, 1.0, True, geo, tf, td, scr)     # H^dag P_e v
        _mask(t2, od, V)
        _hop(t1, t2, bu, 0.0, 1.0, True, geo, tf, td, scr)     # H^dag P_o H^dag v
        for i in range(v.shape[0]):
            t1[i] = v[i] - k2 * t1[i]
        _mask(t1, ev, V)                                         # t1 = D_sc^dag P_e v
        _hop(t2, t1, bu, 0.0, 1.0, False, geo, tf, td, scr)
        _mask(t2, od, V)
        _hop(Ap, t2, bu, 0.0, 1.0, False, geo, tf, td, scr)
        for i in range(v.shape[0]):
            Ap[i] = t1[i] - k2 * Ap[i]
        _mask(Ap, ev, V)                                         # Ap = D_sc D_sc^dag v
    else:
        _hop(t1, v, bu, 1.0, -kappa, True, geo, tf, td, scr)   # D^dag v
        _hop(Ap, t1, bu, 1.0, -kappa, False, geo, tf, td, scr)  # D D^dag v
    if mu != 0.0:
        if eo:
            for q in range(v.shape[0] // V):
                z = q * V
                for x in range(V):
                    Ap[z + x] += mu * ev[x] * v[z + x]
        else:
            for i in range(v.shape[0]):
                Ap[i] += mu * v[i]


@_jit()
def _dot(a, b):  # pragma: no cover - compiled
    """``Re sum conj(a) b`` on the float64 views (interleaved real and imaginary parts)."""
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


# --------------------------------------------------------------------------------------------------
# CG, one chain per prange iteration
# --------------------------------------------------------------------------------------------------
@_jit(parallel=True)
def _cg_kernel(B_, X, Xf, nb, kappa, mu, eo, ev, od, has_x0, tol, maxiter, geo, tf, td, nscr, conv,
               iters):  # pragma: no cover - compiled
    """CG on ``(M + mu) x = b`` for every chain ``c`` (rows of ``B_``/``X``, complex (C, F); ``Xf`` the float64
    view of X), configuration ``c % nb``; ``X`` holds x0 on entry when ``has_x0``. The iteration is
    latticekit.linalg.cg's: alpha = rr / Re(p^dag A p), x += alpha p, r -= alpha A p, beta = rr'/rr,
    p = r + beta p, converged when rr <= (tol |b|)^2."""
    C, F = B_.shape
    Ns, Nc, m, V, L1 = nscr
    for c in _prange(C):
        bu = c % nb
        r = np.empty(F, dtype=np.complex128)
        p = np.empty(F, dtype=np.complex128)
        Ap = np.empty(F, dtype=np.complex128)
        t1 = np.empty(F, dtype=np.complex128)
        t2 = np.empty(F, dtype=np.complex128)
        scr = (np.empty((Ns // 2, Nc, m), dtype=np.complex128), np.empty((Nc, m), dtype=np.complex128),
               np.empty((Nc, Nc, m), dtype=np.complex128), np.empty(V + L1, dtype=np.complex128),
               np.empty(V + L1, dtype=np.complex128), np.empty(V + 1, dtype=np.complex128),
               np.empty(V + 1, dtype=np.complex128))
        b = B_[c]
        x = X[c]
        xf = Xf[c]
        rf = r.view(np.float64)
        pf = p.view(np.float64)
        Apf = Ap.view(np.float64)
        if has_x0:
            _normal(Ap, x, bu, kappa, mu, eo, ev, od, t1, t2, geo, tf, td, scr)
            for i in range(F):
                r[i] = b[i] - Ap[i]
        else:
            for i in range(F):
                x[i] = 0.0
                r[i] = b[i]
        bn2 = 0.0
        for i in range(F):
            bn2 += b[i].real * b[i].real + b[i].imag * b[i].imag
        bnorm = math.sqrt(bn2) if bn2 > 0.0 else 1.0
        tol2 = (tol * bnorm) ** 2
        for i in range(F):
            p[i] = r[i]
        rr = _dot(rf, rf)
        done = rr <= tol2
        conv[c] = done
        it = 0
        for _ in range(maxiter):
            if done:
                break
            _normal(Ap, p, bu, kappa, mu, eo, ev, od, t1, t2, geo, tf, td, scr)
            pAp = _dot(pf, Apf)
            if not pAp > 0.0:      # A not positive definite on this chain: frozen, unconverged
                break
            alpha = rr / pAp
            rn = 0.0
            for i in range(2 * F):
                xf[i] += alpha * pf[i]
                v = rf[i] - alpha * Apf[i]
                rf[i] = v
                rn += v * v
            beta = rn / rr if rr > 0.0 else 0.0
            for i in range(2 * F):
                pf[i] = rf[i] + beta * pf[i]
            rr = rn
            it += 1
            if rr <= tol2:
                done = True
                conv[c] = True
        iters[c] = it


# --------------------------------------------------------------------------------------------------
# Python wrapper: qualify the inputs (else decline with None), build the tables, call the kernel
# --------------------------------------------------------------------------------------------------
#: chains x sites x Nc^2 from which a solve spreads its chains over the threads (2D U(1): e.g. 32 chains at L = 32,
#: a solve of ~80 ms on one core; below, a parallel region's start and, on a busy machine, its waits cost more)
_CG_PARALLEL_WORK = 1 << 15


def _tables(gammas: Any, dagger: bool) -> tuple[Any, ...] | None:
    tabs = _gamma_arrays(gammas, dagger)
    if tabs is None:
        return None
    spins, cproj, crec = tabs
    return (spins, cproj, crec, np.ascontiguousarray(cproj[:, :, 0]), np.ascontiguousarray(crec[:, :, 0]))


def _parity(L: tuple[int, ...]) -> tuple[Any, Any]:
    """Even and odd site masks (float64, row-major sites): parity ``sum_mu x_mu mod 2``."""
    par = np.zeros(L, dtype=np.int64)
    for mu, n in enumerate(L):
        shape = [1] * len(L)
        shape[mu] = n
        par = par + np.arange(n, dtype=np.int64).reshape(shape)
    par = (par % 2).reshape(-1)
    return (par == 0).astype(np.float64), (par == 1).astype(np.float64)


def wilson_normal_cg(b: Any, links: Any, gammas: Any, kappa: Any, mu: Any, *, antiperiodic: bool = True,
                     even_odd: bool = False, x0: Any = None, tol: float = 1e-10,
                     maxiter: int = 2000) -> tuple[Any, Any, Any] | None:
    """CG on ``(D D^dag + mu) x = b`` (``D_sc D_sc^dag`` for ``even_odd``) per chain, or None (declined).

    Arguments as in the module docstring; ``b`` (and ``x0``) are not modified. Returns ``x`` (shape of
    ``b``), ``converged`` (bool) and ``iterations`` (int64), both of shape ``(*S, *B)``.
    """
    if not (_real(kappa) and _real(mu) and _real(tol) and isinstance(maxiter, int) and maxiter >= 1):
        return None
    if x0 is not None and not (type(x0) is np.ndarray and x0.dtype == np.complex128 and x0.shape == b.shape):
        return None
    geo = _fermion_geometry(b, links, gammas, antiperiodic)
    if geo is None:
        return None
    nd, Nc, ns, L, bg = geo
    if even_odd and any(n % 2 for n in L):
        return None
    tf, td = _tables(gammas, False), _tables(gammas, True)
    if tf is None or td is None:
        return None
    B = _prod(bg)
    S = _prod(tuple(int(n) for n in b.shape[: b.ndim - nd - 2 - len(bg)]))
    C = S * B
    V = _prod(L)
    nt = _numba.get_num_threads()
    if C < nt and C * V * Nc * Nc >= _WD_SERIAL_WORK:
        return None            # a few large fields: leave them to the threaded hopping kernel of the generic loop
    u1 = nd == 2 and Nc == 1 and ns == 2 and V <= _U1_2D_MAX_SITES
    K = 2 if (nd >= 3 and L[-1] < 64) else 1
    n = _prod(L[nd - K:])
    rpc = max(1, min(V // n, -(-(1024 if Nc == 1 else 512) // n)))
    m = rpc * n
    U5 = links.reshape(B, nd, Nc, Nc, V)
    geo = (u1, links.reshape(-1), U5, np.asarray(L, dtype=np.int64), K, n, _row_neighbours(L[nd - 2], L[nd - 1], K),
           bool(antiperiodic), rpc, L[0], L[-1])
    ev, od = _parity(L)
    X = np.zeros((C, ns * Nc * V), dtype=np.complex128) if x0 is None else np.array(x0.reshape(C, -1), copy=True)
    conv = np.zeros(C, dtype=np.bool_)
    iters = np.zeros(C, dtype=np.int64)
    args = (b.reshape(C, -1), X, X.view(np.float64), B, float(kappa), float(mu), bool(even_odd), ev, od,
            x0 is not None, float(tol), int(maxiter), geo, tf, td, (ns, Nc, m if not u1 else 1, V, L[-1]), conv, iters)
    # one chain, or a small solve: one thread (_launch: no parallel region). Spread over two threads beside a busy
    # core, the 8 chains of 8x8 of the Schwinger HMC cost 472 ms per trajectory against 45 ms (docs/kernels.md)
    small = C == 1 or C * V * Nc * Nc < _CG_PARALLEL_WORK
    _launch(_cg_kernel, 0.0 if small else math.inf, *args)
    bshape = tuple(b.shape[: b.ndim - nd - 2])
    return X.reshape(b.shape), conv.reshape(bshape), iters.reshape(bshape)


def wilson_normal_cg_torch(b: Any, links: Any, gammas: Any, kappa: Any, mu: Any, *, x0: Any = None,
                           **kw: Any) -> tuple[Any, Any, Any] | None:
    """:func:`wilson_normal_cg` for torch CPU tensors, through zero-copy NumPy views, or None (declined).

    The CG solves of the torch code (pseudofermion actions of the flows, HMC on torch) run under
    ``no_grad`` on detached fields; where autograd would have to see the solve (grad enabled and an input
    that requires grad) this declines and the differentiable Python loop runs. CUDA tensors and lazily
    conjugated views are declined too; other inputs as for the NumPy kernel (complex128, C-contiguous).
    """
    import torch

    ts = [t for t in (b, links, x0) if t is not None]
    if not all(isinstance(t, torch.Tensor) and t.device.type == "cpu" and not t.is_conj() and not t.is_neg()
               for t in ts):
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in ts):
        return None
    out = wilson_normal_cg(b.detach().numpy(), links.detach().numpy(), gammas, kappa, mu,
                           x0=None if x0 is None else x0.detach().numpy(), **kw)
    if out is None:
        return None
    return tuple(torch.from_numpy(a) for a in out)  # type: ignore[return-value]


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}


def torch_kernels() -> dict[str, Callable[..., Any]]:
    """The same kernels for torch CPU tensors (backend ``"torch"``, zero-copy views); empty without numba."""
    if not available():
        return {}
    return {"wilson_normal_cg": wilson_normal_cg_torch}
