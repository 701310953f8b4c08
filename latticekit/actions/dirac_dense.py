"""The dense matrix of the Wilson-Dirac operator (and its even/odd Schur complement), built from its blocks.

:func:`latticekit.linalg.dense_matrix` builds the matrix of any operator by applying it to every unit vector:
``n`` applications of the whole-lattice stencil for an ``n x n`` matrix, and as many again in the backward pass
when autograd differentiates through it. For the Wilson operator (module docstring of
:mod:`latticekit.actions.dirac`)::

    D = 1 - kappa H,   H = sum_mu [ (1 - gamma_mu) (x) F_mu + (1 + gamma_mu) (x) G_mu ],
    F_mu[(a, x), (b, y)] = U_mu(x)_ab S+_mu[x, y],        S+_mu[x, y] = delta(y, x + mu) * phase,
    G_mu[(a, x), (b, y)] = conj(U_mu(y)_ba) S-_mu[x, y],  S-_mu[x, y] = delta(y, x - mu) * conj(phase),

with rows and columns ordered as the flattened field ``(Ns, Nc, *L)`` (row-major, as ``dense_matrix``), the
boundary phase ``-1`` on hops across the time boundary (antiperiodic) and ``1`` elsewhere. The shift matrices
``S+-`` are the library's own :meth:`Lattice.shift <latticekit.lattice.Lattice.shift>` applied to the unit
vectors of the sites, so the boundary convention is the one the operator uses. The even/odd Schur complement
(:mod:`latticekit.actions.even_odd`, eq. 34 of arXiv:2207.08945) is built from the blocks between the two
parities::

    D_sc = 1_e - kappa^2 H_eo H_oe      (rows and columns on the even sites, in the order of its ``support``)

The site blocks of each hop are placed by one matrix product with one-hot shift matrices, so the result is written
once (forward and backward) instead of being assembled from ``n`` whole-lattice stencils. Both builders are
checked against ``dense_matrix`` in the suite (tests/actions/test_dirac_dense.py); timings in
``benchmarks/dense_dirac.py``.

Examples
--------
>>> import latticekit as lk, numpy as np
>>> from latticekit.actions import WilsonDirac
>>> from latticekit.linalg import dense_matrix
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
>>> D = WilsonDirac(lk.SU(2).random(rng, (lat.nd,), lat.shape), lk.SU(2), lat, kappa=0.2)
>>> A = dirac_dense_matrix(D)
>>> A.shape, bool(np.abs(A - dense_matrix(D)).max() < 1e-14)
((64, 64), True)
"""

from __future__ import annotations

from typing import Any, Sequence

from latticekit.backends import array_namespace, complex_dtype_for, is_complex, to_numpy
from latticekit.backends import device as _device
from latticekit.gauge import link

from .dirac import WilsonDirac, gamma_matrices
from .even_odd import EvenOddDirac

__all__ = ["dirac_dense_matrix", "wilson_hopping_matrix"]


def _shift_matrix(D: WilsonDirac, mu: int, step: int, dtype: Any) -> Any:
    """``S[x, y]`` with ``(S f)[x] = shift(f, mu, step)[x]`` (phases included), ``(V, V)``."""
    xp = array_namespace(D.U)
    lat = D.lattice
    V = lat.volume
    E = xp.reshape(xp.eye(V, dtype=dtype, device=_device(D.U)), (V,) + tuple(lat.shape))  # E[y] = e_y
    phase = -1 if (mu == 0 and D.antiperiodic) else None
    Sy = xp.reshape(lat.shift(E, mu, step, phase=phase), (V, V))  # Sy[y, x] = (S e_y)[x] = S[x, y]
    return xp.permute_dims(Sy, (1, 0))


def _hopping_blocks(D: WilsonDirac, blocks: Sequence[tuple[Sequence[int] | None, Sequence[int] | None]]) -> list[Any]:
    """``H`` restricted to the sites ``rows`` x ``cols`` for each ``(rows, cols)`` of ``blocks`` (None: all sites),
    each ``(*B, Ns Nc |rows|, Ns Nc |cols|)``.

    Per hop ``h = (mu, +-)`` the site blocks are ``P_h (x) W_h(x)`` at ``(x, x +- mu)``: ``P = 1 -+ gamma_mu``,
    ``W_+(x) = U_mu(x)``, ``W_-(x) = U_mu(x - mu)^dag``. They are gathered into ``K[x, s, a, t, b, h]`` and placed by
    one matrix product with the one-hot ``O[x, h, y] = S_h[x, y]`` (the shift matrices with their phases): a single
    pass over the ``n^2`` entries of the result, forward and backward.
    """
    xp = array_namespace(D.U)
    dev = _device(D.U)
    dtype = D.U.dtype if is_complex(D.U, xp) else complex_dtype_for(D.U.dtype, xp)
    nd, Ns, Nc, lat = D.nd, D.Ns, D.Nc, D.lattice
    V = lat.volume
    B = tuple(D.batch_shape)
    nb = len(B)
    gam = gamma_matrices(nd)
    K, O = [], []
    for mu in range(nd):
        Um = link(D.U, mu, D.group, lat)  # (*B, Nc, Nc, *L); U(1): angles (*B, *L)
        if Nc == 1:
            Um = xp.expand_dims(xp.expand_dims(D.group.to_matrix(Um, nd=nd), axis=nb), axis=nb)
        Ub = lat.shift(Um, mu, -1)  # U_mu(x - mu), periodic: the boundary phase is in S-
        Wf = xp.reshape(Um, B + (Nc, Nc, V))
        Wb = xp.conj(xp.permute_dims(xp.reshape(Ub, B + (Nc, Nc, V)), tuple(range(nb)) + (nb + 1, nb, nb + 2)))
        for sign, W, step in ((-1.0, Wf, +1), (1.0, Wb, -1)):  # forward hop: (1 - gamma_mu); backward: (1 + gamma_mu)
            P = xp.asarray([[(1.0 if s == t else 0.0) + sign * gam[mu][s][t] for t in range(Ns)] for s in range(Ns)],
                           dtype=dtype, device=dev)
            # K_h[..., x, s, a, t, b] = P[s, t] W[..., a, b, x]
            Wx = xp.permute_dims(W, tuple(range(nb)) + (nb + 2, nb, nb + 1))  # (*B, V, a, b)
            K.append(xp.reshape(P, (1, Ns, 1, Ns, 1)) * xp.expand_dims(xp.expand_dims(Wx, axis=nb + 1), axis=nb + 3))
            O.append(_shift_matrix(D, mu, step, dtype))
    K_all = xp.stack(K, axis=K[0].ndim)  # (*B, V, Ns, Nc, Ns, Nc, nh)
    O_all = xp.stack(O, axis=1)  # (V, nh, V)
    nh, m = 2 * nd, Ns * Nc * Ns * Nc
    out = []
    for rows, cols in blocks:
        Kt, Ot = K_all, O_all
        if rows is not None:
            r = xp.asarray(list(rows), dtype=xp.int64, device=dev)
            Kt = xp.take(Kt, r, axis=nb)
            Ot = xp.take(Ot, r, axis=0)
        if cols is not None:
            Ot = xp.take(Ot, xp.asarray(list(cols), dtype=xp.int64, device=dev), axis=2)
        nr, nc_ = int(Ot.shape[0]), int(Ot.shape[2])
        H = xp.reshape(Kt, B + (nr, m, nh)) @ Ot  # (*B, nr, m, nc): one pass over the entries
        H = xp.reshape(H, B + (nr, Ns, Nc, Ns, Nc, nc_))
        H = xp.permute_dims(H, tuple(range(nb)) + tuple(nb + k for k in (1, 2, 0, 3, 4, 5)))  # (s, a, x, t, b, y)
        out.append(xp.reshape(H, B + (Ns * Nc * nr, Ns * Nc * nc_)))
    return out


def wilson_hopping_matrix(D: WilsonDirac) -> Any:
    """The dense hopping matrix ``H`` of ``D = 1 - kappa H`` (module docstring), ``(*B, n, n)``, ``n = D.ndof``.

    Rows and columns are ordered as the flattened fermion field ``(Ns, Nc, *L)``. Differentiable in the gauge
    field under torch autograd. Small lattices only (``n^2`` entries per configuration).

    Examples
    --------
    >>> import latticekit as lk, numpy as np
    >>> from latticekit.actions import WilsonDirac
    >>> from latticekit.linalg import dense_matrix
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(2)
    >>> D = WilsonDirac(lk.U1.random(rng, (lat.nd,), lat.shape), lk.U1, lat, kappa=0.2)
    >>> H = wilson_hopping_matrix(D)
    >>> H.shape, bool(np.abs(np.eye(32) - 0.2 * H - dense_matrix(D)).max() < 1e-15)
    ((32, 32), True)
    """
    if not isinstance(D, WilsonDirac):
        raise TypeError(f"D: expected a WilsonDirac operator, got {type(D).__name__}")
    return _hopping_blocks(D, [(None, None)])[0]


def dirac_dense_matrix(op: WilsonDirac | EvenOddDirac) -> Any:
    """The dense ``D`` (:class:`WilsonDirac`) or ``D_sc`` (:class:`EvenOddDirac`, on its even-site support) of
    ``op``, ``(*B, n, n)``: the matrix :func:`latticekit.linalg.dense_matrix` gives, built from the blocks of
    the hopping term (module docstring).

    Examples
    --------
    >>> import latticekit as lk, numpy as np
    >>> from latticekit.actions import WilsonDirac, EvenOddDirac
    >>> from latticekit.linalg import dense_matrix
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(1)
    >>> E = EvenOddDirac(WilsonDirac(lk.U1.random(rng, (lat.nd,), lat.shape), lk.U1, lat, kappa=0.2))
    >>> A = dirac_dense_matrix(E)
    >>> A.shape, bool(np.abs(A - dense_matrix(E)).max() < 1e-14)
    ((16, 16), True)
    """
    if isinstance(op, EvenOddDirac):
        D = op.D
    elif isinstance(op, WilsonDirac):
        D = op
    else:
        raise TypeError(f"op: expected a WilsonDirac or EvenOddDirac operator, got {type(op).__name__}")
    xp = array_namespace(D.U)
    dev = _device(D.U)
    if isinstance(op, WilsonDirac):
        H = _hopping_blocks(D, [(None, None)])[0]
        return xp.eye(int(H.shape[-1]), dtype=H.dtype, device=dev) - D.kappa * H
    par = to_numpy(xp.reshape(xp.astype(D.lattice.parity(like=D.U), xp.int64), (-1,))).tolist()
    even = [x for x, p in enumerate(par) if p == 0]
    odd = [x for x, p in enumerate(par) if p == 1]
    # rows (s, a, x_even) in the order of op.support (row-major, ascending)
    Heo, Hoe = _hopping_blocks(D, [(even, odd), (odd, even)])
    return xp.eye(int(Heo.shape[-2]), dtype=Heo.dtype, device=dev) - (D.kappa * D.kappa) * (Heo @ Hoe)
