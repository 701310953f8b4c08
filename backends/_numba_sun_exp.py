"""Numba fast paths for the SU(3) exponential on the NumPy backend: one pass per matrix.

``sun_exp(X, N, nd) -> exp(X)`` (and ``sun_exp_mul(X, W, N, nd) -> exp(X) W``, the update of the Wilson flow and of
HMC moves, without a separate product pass) for traceless anti-Hermitian complex128 ``X`` of shape ``(*B, 3, 3, *S)``
(``nd`` trailing site axes), the closed form of Morningstar & Peardon (hep-lat/0311018, eqs. 14-30) with the
generic code's small-``c1`` power series, exactly as :meth:`latticekit.groups.SUGroup._exp_su3` computes it
(that code is the definition and the oracle): ``Q = -i X``, ``c1 = tr Q^2 / 2``, ``c0 = tr Q^3 / 3``;
``exp(X) = f0 + f1 Q + f2 Q^2``. The generic code makes some thirty array passes (``Q^2`` by a batched matrix
product, every intermediate of the closed form and of the 17-term series for *all* matrices, then the
selection); here each matrix is read once, takes one branch and is written once. The Wilson flow of an 8^4 SU(3)
field spent 42% of its time in the generic exponential.

The kernel *declines* (returns ``None``) unless ``X`` is a C-contiguous, aligned complex128 ``numpy.ndarray`` with
``3 x 3`` matrices before the ``nd`` site axes; the caller then runs the generic code. The results agree with the
generic code to rounding (the products are summed in another order): ``tests/test_fast_paths.py``.

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_sun_exp as ke
>>> X = np.zeros((3, 3, 2), dtype=complex)                 # two zero matrices on a 2-site lattice
>>> out = ke.sun_exp(X, 3, 1) if ke.available() else np.eye(3)[..., None] * np.ones(2)
>>> np.allclose(out, np.eye(3)[..., None])
True
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._numba_common import _jit, _launch, _prange, available

__all__ = ["NAMES", "kernels"]

NAMES = ("sun_exp", "sun_exp_mul")

#: matrices per work unit of the parallel loop
CHUNK = 512


@_jit()
def _exp3_one(q, q2):  # pragma: no cover - compiled
    """``(f0, f1, f2)`` of one Hermitian traceless ``q`` (3 x 3 complex), as the generic ``_exp_su3``; ``Q^2``
    into ``q2``."""
    for i in range(3):
        for j in range(3):
            q2[i, j] = q[i, 0] * q[0, j] + q[i, 1] * q[1, j] + q[i, 2] * q[2, j]
    c1 = 0.5 * (q2[0, 0].real + q2[1, 1].real + q2[2, 2].real)
    s = 0.0
    for i in range(3):
        for j in range(3):
            z = q2[i, j] * q[i, j].conjugate()
            s += z.real
    c0 = s / 3.0
    if c1 < 0.02:
        # power series sum_n (iQ)^n / n!, Q^n = a_n + b_n Q + c_n Q^2 (Cayley-Hamilton: Q^3 = c1 Q + c0)
        a_n, b_n, c_n = 1.0 + 0.0j, 0.0j, 0.0j
        s0, s1, s2 = a_n, b_n, c_n
        coef = 1.0 + 0.0j
        for n in range(1, 18):
            a_n, b_n, c_n = c_n * c0, a_n + c_n * c1, b_n
            coef = coef * 1j / n
            s0, s1, s2 = s0 + coef * a_n, s1 + coef * b_n, s2 + coef * c_n
        return s0, s1, s2
    neg = c0 < 0
    c0a = abs(c0)
    c0max = 2.0 * (c1 / 3.0) ** 1.5
    ratio = min(max(c0a / c0max, -1.0), 1.0)
    theta = math.acos(ratio)
    u = math.sqrt(c1 / 3.0) * math.cos(theta / 3.0)
    w = math.sqrt(c1) * math.sin(theta / 3.0)
    w2 = w * w
    if w2 < 1e-10:
        xi0 = 1.0 - w2 / 6.0 * (1.0 - w2 / 20.0)
    else:
        xi0 = math.sin(w) / w
    cu, su, cw = math.cos(u), math.sin(u), math.cos(w)
    e2iu = complex(math.cos(2.0 * u), math.sin(2.0 * u))
    emiu = complex(cu, -su)
    uu = u * u
    h0 = complex(uu - w2, 0.0) * e2iu + emiu * complex(8.0 * uu * cw, 2.0 * u * (3.0 * uu + w2) * xi0)
    h1 = complex(2.0 * u, 0.0) * e2iu - emiu * complex(2.0 * u * cw, -(3.0 * uu - w2) * xi0)
    h2 = e2iu - emiu * complex(cw, 3.0 * u * xi0)
    d = complex(9.0 * uu - w2, 0.0)
    f0, f1, f2 = h0 / d, h1 / d, h2 / d
    if neg:  # f_j(-c0) = (-1)^j conj f_j(c0)
        f0, f1, f2 = f0.conjugate(), -f1.conjugate(), f2.conjugate()
    return f0, f1, f2


@_jit(inline=True)
def _exp3_at(X, p, v, q, q2, e):  # pragma: no cover - compiled
    """``e = exp(X[p, :, :, v])`` (3 x 3), with ``q``, ``q2`` as scratch."""
    for i in range(3):
        for j in range(3):
            x = X[p, i, j, v]
            q[i, j] = complex(x.imag, -x.real)            # Q = -i X
    f0, f1, f2 = _exp3_one(q, q2)
    for i in range(3):
        for j in range(3):
            r = f1 * q[i, j] + f2 * q2[i, j]
            e[i, j] = r + f0 if i == j else r


@_jit(parallel=True)
def _exp3_kernel(X, W, out, nck, with_w):  # pragma: no cover - compiled
    """``out[p, :, :, v] = exp(X[p, :, :, v])`` (times ``W[p, :, :, v]`` on the right when ``with_w``) for
    ``X`` of shape ``(P, 3, 3, V)``, in ``P * nck`` work units."""
    P, V = X.shape[0], X.shape[3]
    for unit in _prange(P * nck):
        p = unit // nck
        lo = (unit % nck) * CHUNK
        hi = min(lo + CHUNK, V)
        q = np.empty((3, 3), dtype=np.complex128)
        q2 = np.empty((3, 3), dtype=np.complex128)
        e = np.empty((3, 3), dtype=np.complex128)
        for v in range(lo, hi):
            _exp3_at(X, p, v, q, q2, e)
            if with_w:   # the generic product's order: e_i0 W_0k + e_i1 W_1k + e_i2 W_2k
                for i in range(3):
                    for k in range(3):
                        out[p, i, k, v] = e[i, 0] * W[p, 0, k, v] + e[i, 1] * W[p, 1, k, v] + e[i, 2] * W[p, 2, k, v]
            else:
                for i in range(3):
                    for j in range(3):
                        out[p, i, j, v] = e[i, j]


def _qualified(X: Any, nd: int) -> bool:
    return isinstance(X, np.ndarray) and X.dtype == np.complex128 and X.flags.c_contiguous and X.flags.aligned \
        and X.ndim >= nd + 2 and X.shape[X.ndim - nd - 2:X.ndim - nd] == (3, 3) and X.size > 0


def _run(X: Any, W: Any, nd: int) -> Any:
    P = int(np.prod(X.shape[:X.ndim - nd - 2], dtype=np.int64))
    V = int(np.prod(X.shape[X.ndim - nd:], dtype=np.int64))
    Xv = X.reshape(P, 3, 3, V)
    Wv = Xv if W is None else W.reshape(P, 3, 3, V)
    out = np.empty_like(Xv)
    nck = (V + CHUNK - 1) // CHUNK
    _launch(_exp3_kernel, 250.0 * P * V, Xv, Wv, out, nck, W is not None)   # ~250 ns per matrix, one thread
    return out.reshape(X.shape)


def sun_exp(X: Any, N: int, nd: int) -> Any:
    """``exp(X)`` of traceless anti-Hermitian SU(3) algebra elements ``(*B, 3, 3, *S)`` (or None: declined)."""
    if N != 3 or not _qualified(X, nd):
        return None
    return _run(X, None, nd)


def sun_exp_mul(X: Any, W: Any, N: int, nd: int) -> Any:
    """``exp(X) W`` for ``X`` and ``W`` of the same shape ``(*B, 3, 3, *S)`` (or None: declined): the update of the
    Wilson flow and of HMC moves, without the separate product pass."""
    if N != 3 or not _qualified(X, nd) or not _qualified(W, nd) or W.shape != X.shape:
        return None
    return _run(X, W, nd)


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module (empty without numba)."""
    return {"sun_exp": sun_exp, "sun_exp_mul": sun_exp_mul} if available() else {}
