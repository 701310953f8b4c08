"""The SU(N) exponential of an algebra element ``X`` (traceless anti-Hermitian, ``(*B, N, N, *S)``).

``exp2``: N = 2, ``exp X = cos(theta) 1 + sin(theta)/theta X``. ``exp3``: N = 3, the closed form of Morningstar &
Peardon (hep-lat/0311018, eqs. 14-30) with a Cayley-Hamilton power series for small ``c1``. ``exp_spectral``:
N > 3, ``V diag(exp(i lam)) V^dagger`` from ``eigh(-i X)``, or ``linalg.matrix_exp`` under autograd.

exp is smooth, and so are the gradients of these functions under torch autograd: a branch that is singular
somewhere (``sin(theta)/theta`` at 0, ``acos`` at a degenerate spectrum) is fed a safe value where it is not
selected (the double-``where`` rule: ``where`` routes the gradient of the unselected branch to zero, but
``0 * inf`` in that branch is still NaN), and for N > 3 the backward of ``eigh`` (NaN at degenerate
eigenvalues) is not used. ``tests/groups/test_sun_numerics.py`` checks the gradients against central finite
differences.

The formulas assume ``tr X = 0`` (an element of su(N)) and do not check it (a check needs a reduction and a
host synchronisation per call; exp is the update of HMC, the gradient flow and the flows): for N = 2, 3 a trace
part is *not* exponentiated correctly (Cayley-Hamilton is used in the traceless form). ``SUGroup.log`` returns
traceless logarithms, so ``exp(log U) = U`` for every ``U``.
"""

from __future__ import annotations

from typing import Any

from latticekit.backends import array_namespace

__all__ = ["exp2", "exp3", "exp_spectral"]

#: ``1 - cos(theta)`` below which SU(3)'s ``theta = acos(ratio)`` is replaced by its series in ``s = 1 - ratio``:
#: there d acos / d ratio = -1/sqrt(2 s) grows without bound (degenerate spectrum at s = 0). The backward of acos
#: loses about eps/s relative precision, 2e-12 at the switch; the series below are exact to 5e-17 up to it.
NEAR_DEGENERATE = 1e-4


def exp2(G: Any, X: Any, nd: int) -> Any:
    """SU(2): ``X^2 = -theta^2 1`` with ``theta^2 = (1/2) sum_ij |X_ij|^2``."""
    xp = array_namespace(X)
    t2 = 0.5 * xp.sum(xp.real(X) ** 2 + xp.imag(X) ** 2, axis=(-nd - 2, -nd - 1))
    small = t2 < 1e-8
    t2s = xp.where(small, xp.ones_like(t2), t2)  # double-where keeps gradients finite at X = 0
    th = xp.sqrt(t2s)
    sinc = xp.where(small, 1.0 - t2 / 6.0 * (1.0 - t2 / 20.0), xp.sin(th) / th)
    c = xp.where(small, 1.0 - t2 / 2.0 * (1.0 - t2 / 12.0), xp.cos(th))
    exp_ = xp.expand_dims(xp.expand_dims(xp.astype(c, X.dtype), axis=-nd - 1), axis=-nd - 1)
    s_ = xp.expand_dims(xp.expand_dims(xp.astype(sinc, X.dtype), axis=-nd - 1), axis=-nd - 1)
    return exp_ * G._eye_like(X, nd) + s_ * X


def _theta_functions(xp: Any, ratio: Any, c1: Any, one: Any, smooth: bool) -> tuple[Any, Any, Any]:
    """``(u, w, w^2)`` of Morningstar-Peardon: ``u = sqrt(c1/3) cos(theta/3)``, ``w = sqrt(c1) sin(theta/3)``,
    ``cos theta = ratio`` in [0, 1].

    ``smooth`` (under autograd): with finite, exact gradients at ``ratio = 1`` (a degenerate spectrum, ``w = 0``),
    where d acos / d ratio is infinite. ``u`` and ``w^2`` are even in ``theta`` and so analytic in ``s = 1 - ratio``
    (``theta^2 = acos(1 - s)^2``); for ``s < NEAR_DEGENERATE`` they come from series in ``s``, and ``w`` is
    ``sqrt(w^2)`` (where ``w^2 < 1e-10`` ``w`` is not used: the caller takes series in ``w^2`` for ``cos w`` and
    ``sin w / w``). Elsewhere the values are those of the acos form, bit for bit, as they are everywhere without
    ``smooth`` (the series cost some 25 array operations, 5-10% of a torch exp).
    """
    if not smooth:
        theta = xp.acos(ratio)
        w = xp.sqrt(c1) * xp.sin(theta / 3.0)
        return xp.sqrt(c1 / 3.0) * xp.cos(theta / 3.0), w, w * w
    near = ratio > 1.0 - NEAR_DEGENERATE
    theta = xp.acos(xp.where(near, 0.5 * one, ratio))           # a safe argument where the series are used
    # x = theta^2 / 9 with theta^2 = acos(1 - s)^2 = 4 asin(sqrt(s/2))^2 = sum_n 2^(n+1) s^n / (n^2 binom(2n, n))
    # = 2 s + s^2/3 + 4 s^3/45 + s^4/35 + ... Evaluated everywhere (finite for s in [0, 1]), used only near s = 0
    s = 1.0 - ratio
    x = s * (2.0 / 9.0 + s * (1.0 / 27.0 + s * (4.0 / 405.0 + s * (1.0 / 315.0))))
    # y = theta/3, x = y^2 <= 2.3e-5: cos y = 1 - x/2 + x^2/24 - ..., sin^2 y = x - x^2/3 + 2 x^3/45 - ...
    u = xp.sqrt(c1 / 3.0) * xp.where(near, 1.0 + x * (-0.5 + x * (1.0 / 24.0)), xp.cos(theta / 3.0))
    w = xp.sqrt(c1) * xp.sin(theta / 3.0)
    w2 = xp.where(near, c1 * (x * (1.0 + x * (-1.0 / 3.0 + x * (2.0 / 45.0)))), w * w)
    w = xp.where(near, xp.sqrt(xp.clip(w2, min=1e-10)), w)
    return u, w, w2


def exp3(G: Any, X: Any, nd: int) -> Any:
    """SU(3): ``exp(iQ) = f0 + f1 Q + f2 Q^2`` with ``Q = -iX`` Hermitian traceless, ``c0 = det Q = tr Q^3 / 3``,
    ``c1 = tr Q^2 / 2`` (Morningstar-Peardon eqs. 14-30). For small ``c1`` the ``f_j`` come from the power series
    reduced with Cayley-Hamilton, ``Q^3 = c1 Q + c0`` (exact to round-off for ``||Q|| < 0.5``).

    The numba kernel of the NumPy backend (``backends/_numba_sun_exp.py``) computes the same closed form and the
    same series in one pass per matrix; this function is its definition and oracle.
    """
    xp = array_namespace(X)
    Q = -1j * X
    Q2 = G.mul(Q, Q, nd=nd)
    c1 = 0.5 * xp.real(G.trace(Q2, nd=nd))
    # tr Q^3 = sum_ij (Q^2)_ij Q_ji
    c0 = xp.real(xp.sum(Q2 * xp.conj(Q), axis=(-nd - 2, -nd - 1))) / 3.0  # Q_ji = conj(Q_ij)
    ct = X.dtype
    one = xp.ones_like(c1)
    # under torch autograd: gradients finite and exact at degenerate spectra and at c0 = 0 (a few more operations)
    smooth = bool(getattr(X, "requires_grad", False))

    # -- closed form, evaluated at |c0| and safe (non-small) c1
    small = c1 < 0.02
    c1s = xp.where(small, one, c1)
    c0s = xp.where(small, xp.zeros_like(c0), c0)
    neg = c0s < 0
    # |c0|; under autograd with derivative 1 at c0 = 0 (that of abs is 0 there, but f_j is smooth in c0)
    c0a = xp.where(neg, -c0s, c0s) if smooth else xp.abs(c0s)
    c0max = 2.0 * (c1s / 3.0) ** 1.5
    ratio = xp.clip(c0a / c0max, -1.0, 1.0)
    u, w, w2 = _theta_functions(xp, ratio, c1s, one, smooth)
    wsmall = w2 < 1e-10
    ws = xp.where(wsmall, one, w)
    xi0 = xp.where(wsmall, 1.0 - w2 / 6.0 * (1.0 - w2 / 20.0), xp.sin(ws) / ws)
    # smooth: w^2 < 1e-10 only near a degenerate spectrum (elsewhere w^2 >= 0.02 sin^2(acos(1 - 1e-4)/3) = 4e-7),
    # where w = 1 is a placeholder
    cw = xp.where(wsmall, 1.0 - w2 / 2.0 * (1.0 - w2 / 12.0), xp.cos(ws)) if smooth else xp.cos(w)
    cu, su = xp.cos(u), xp.sin(u)
    c2u, s2u = xp.cos(2.0 * u), xp.sin(2.0 * u)

    def cplx(re: Any, im: Any) -> Any:
        return xp.astype(re, ct) + 1j * xp.astype(im, ct)

    e2iu = cplx(c2u, s2u)
    emiu = cplx(cu, -su)
    uu = u * u
    h0 = cplx(uu - w2, 0.0 * u) * e2iu + emiu * cplx(8.0 * uu * cw, 2.0 * u * (3.0 * uu + w2) * xi0)
    h1 = cplx(2.0 * u, 0.0 * u) * e2iu - emiu * cplx(2.0 * u * cw, -(3.0 * uu - w2) * xi0)
    h2 = e2iu - emiu * cplx(cw, 3.0 * u * xi0)
    d = xp.astype(9.0 * uu - w2, ct)   # 9u^2 - w^2 = c1 (3 cos^2 - sin^2)(theta/3) >= 2 c1 for theta <= pi/2
    f0, f1, f2 = h0 / d, h1 / d, h2 / d
    # c0 < 0: f_j(-c0) = (-1)^j conj f_j(c0)
    f0 = xp.where(neg, xp.conj(f0), f0)
    f1 = xp.where(neg, -xp.conj(f1), f1)
    f2 = xp.where(neg, xp.conj(f2), f2)

    # -- power series sum_n (iQ)^n / n!, Q^n = a_n + b_n Q + c_n Q^2
    zero = xp.zeros_like(c1)
    a_n, b_n, c_n = xp.astype(one, ct), xp.astype(zero, ct), xp.astype(zero, ct)
    s0, s1, s2 = a_n, b_n, c_n
    coef = 1.0 + 0.0j
    c0c, c1c = xp.astype(c0, ct), xp.astype(c1, ct)
    for n in range(1, 18):
        a_n, b_n, c_n = c_n * c0c, a_n + c_n * c1c, b_n
        coef = coef * 1j / n
        s0, s1, s2 = s0 + coef * a_n, s1 + coef * b_n, s2 + coef * c_n
    f0 = xp.where(small, s0, f0)
    f1 = xp.where(small, s1, f1)
    f2 = xp.where(small, s2, f2)

    def bc(f: Any) -> Any:
        return xp.expand_dims(xp.expand_dims(f, axis=-nd - 1), axis=-nd - 1)

    return bc(f0) * G._eye_like(X, nd) + bc(f1) * Q + bc(f2) * Q2


def exp_spectral(G: Any, X: Any, nd: int) -> Any:
    """N > 3: ``V diag(exp(i lam)) V^dagger`` with ``(lam, V) = eigh(-i X)``.

    Under torch autograd (``X.requires_grad``) the namespace's ``linalg.matrix_exp`` instead (torch has one; the
    Array API standard has none): the backward of ``eigh`` divides by eigenvalue differences and is NaN at
    ``X = 0`` and at every degenerate spectrum, while exp is smooth there. ``matrix_exp``'s backward is the exact
    Frechet adjoint (itself differentiable, so higher derivatives work too). The forward values agree with the
    spectral form to rounding (``tests/groups/test_sun_numerics.py``); without autograd nothing changes.
    """
    xp = array_namespace(X)
    Xg = G._group_last(X, nd)
    matrix_exp = getattr(xp.linalg, "matrix_exp", None)
    if matrix_exp is not None and getattr(X, "requires_grad", False):
        # torch's matrix_exp needs contiguous batches; a reshape through one axis copies in C order
        return G._group_back(matrix_exp(xp.reshape(xp.reshape(Xg, (-1,)), Xg.shape)), nd)
    Q = -1j * Xg
    Q = 0.5 * (Q + xp.conj(xp.matrix_transpose(Q)))
    lam, V = xp.linalg.eigh(Q)
    ct = X.dtype
    ph = xp.astype(xp.cos(lam), ct) + 1j * xp.astype(xp.sin(lam), ct)
    out = xp.matmul(V * xp.expand_dims(ph, axis=-2), xp.conj(xp.matrix_transpose(V)))
    return G._group_back(out, nd)
