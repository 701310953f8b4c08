"""Extremal eigenvalues and condition numbers of Hermitian positive (semi-)definite operators.

Lanczos with full reorthogonalisation (batched over chains) for large operators; a dense
``eigvalsh`` fallback for small ones. Typical use: ``A = D D^dag`` of the Wilson-Dirac operator,
whose condition number ``lambda_max / lambda_min`` controls solver cost and pseudofermion noise.

Examples
--------
>>> import numpy as np
>>> from latticekit.linalg import extremal_eigenvalues
>>> A = np.diag(np.arange(1.0, 11.0))
>>> lo, hi = extremal_eigenvalues(lambda v: v @ A.T, (10,), like=A, method="dense")
>>> float(lo), float(hi)
(1.0, 10.0)
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Sequence

from latticekit.backends import Generator, array_namespace, is_complex, rng as make_rng
from latticekit.backends import backend_name, device as _device, to_numpy

from .cg import inner, norm2
from .dense import _prod, dense_matrix

__all__ = ["EigenvalueConvergenceWarning", "condition_number", "eigvalsh_dense", "extremal_eigenvalues", "lanczos",
           "power_iteration"]

#: below this many degrees of freedom, method="auto" uses the dense fallback
DENSE_LIMIT = 1536


def eigvalsh_dense(A: Any, shape: Sequence[int] | None = None, *, like: Any = None, support: Any = None,
                   batch_shape: Sequence[int] | None = None) -> Any:
    """All eigenvalues (ascending) of a Hermitian operator via its dense matrix, shape ``(*B, n)``.

    Examples
    --------
    >>> import numpy as np
    >>> eigvalsh_dense(lambda v: 2.0 * v, (3,), like=np.zeros(1)).tolist()
    [2.0, 2.0, 2.0]
    """
    M = dense_matrix(A, shape, like=like, support=support, batch_shape=batch_shape)
    xp = array_namespace(M)
    Mh = 0.5 * (M + xp.conj(xp.matrix_transpose(M)))  # remove round-off anti-Hermitian parts
    return xp.linalg.eigvalsh(Mh)


def _start_vector(like: Any, batch_shape: tuple[int, ...], shape: tuple[int, ...], rng: Generator | None,
                  support: Any) -> Any:
    xp = array_namespace(like)
    if rng is None:
        rng = make_rng(12345, backend=backend_name(xp), device=_device(like))
    dt = "complex64" if like.dtype in (xp.complex64, xp.float32) else "complex128"
    v = rng.complex_normal(batch_shape + shape, dtype=dt)
    if support is not None:
        v = xp.where(support, v, xp.zeros_like(v))
    return v


class EigenvalueConvergenceWarning(RuntimeWarning):
    """Lanczos stopped at ``maxiter`` steps before its extremal Ritz values met ``tol`` (the estimate is
    not trustworthy: the smallest Ritz value approaches ``lambda_min`` from above)."""


def _lanczos(A: Callable[[Any], Any], v0: Any, k: int, *, batch_ndim: int, support: Any, rng: Generator | None,
             maxiter: int | None = None, tol: float | None = None, dim: int | None = None) -> tuple[Any, Any, int]:
    """Lanczos with full reorthogonalisation: ``(ritz, rel_err, steps)``.

    ``k`` steps, then (with ``tol``) a check every ``max(10, k // 4)`` steps up to ``maxiter``: the residual
    of a Ritz pair ``(theta, y)`` is ``|A y - theta y| = |beta_m s_m|`` (``s_m`` the last component of the
    eigenvector of the tridiagonal matrix), an interval ``[theta - r, theta + r]`` holds an eigenvalue, and
    the chain stops when both extremal pairs have ``r <= tol |theta| + 10 eps lambda_max`` (the second term:
    what the precision resolves). ``rel_err``: host array ``(*B, 2)`` of ``r / |theta|`` for the smallest and
    largest Ritz values.
    """
    xp = array_namespace(v0)
    field_nd = v0.ndim - batch_ndim
    shape = tuple(v0.shape[batch_ndim:])
    bshape = tuple(v0.shape[:batch_ndim])
    nb, nf = _prod(bshape), _prod(shape)
    dim = nf if dim is None else dim                      # the dimension of the space (the support's size)
    kmax = min(k if maxiter is None else max(int(maxiter), k), max(dim, 1))
    k = min(k, kmax)
    eps = 1.2e-7 if v0.dtype in (getattr(xp, "complex64", None), getattr(xp, "float32", None)) else 2.3e-16

    def bc(s: Any) -> Any:
        s = xp.reshape(s, tuple(s.shape) + (1,) * field_nd)
        return xp.astype(s, v0.dtype) if s.dtype != v0.dtype else s

    def normalize(w: Any) -> tuple[Any, Any]:
        nrm = xp.sqrt(norm2(w, batch_ndim))
        safe = xp.where(nrm > 0, nrm, xp.ones_like(nrm))
        return w / bc(safe), nrm

    # the Krylov basis as one array (nb, capacity, nf), grown in chunks: orthogonalisation is two matmuls
    chunk = 64
    Q = xp.zeros((nb, min(kmax, chunk), nf), dtype=v0.dtype, device=_device(v0))
    m_q = 0

    def push(q: Any) -> None:
        nonlocal Q, m_q
        if m_q == Q.shape[1]:
            extra = xp.zeros((nb, min(chunk, kmax - m_q + 1), nf), dtype=v0.dtype, device=_device(v0))
            Q = xp.concat([Q, extra], axis=1)
        Q[:, m_q, :] = xp.reshape(q, (nb, nf))
        m_q += 1

    def orthogonalize(w: Any) -> Any:
        wf = xp.reshape(w, (nb, nf, 1))
        Qm = Q[:, :m_q, :]
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            c = xp.conj(xp.matmul(Qm, xp.conj(wf)))          # <q_i, w>, shape (nb, m, 1)
            wf = wf - xp.matmul(xp.matrix_transpose(Qm), c)
        return xp.reshape(wf, bshape + shape)

    q, _ = normalize(v0)
    push(q)
    alphas: list[Any] = []
    betas: list[Any] = []
    gen = rng if rng is not None else make_rng(2024, backend=backend_name(xp), device=_device(v0))
    every = max(10, k // 4)
    rel, checked = None, 0
    for j in range(kmax):
        w = A(q)
        a = xp.real(inner(q, w, batch_ndim)) if is_complex(w, xp) else inner(q, w, batch_ndim)
        alphas.append(a)
        w, beta = normalize(orthogonalize(w))
        m = j + 1
        if tol is not None and (m == k or (m > k and (m - k) % every == 0)):
            rel, done = _ritz_check(alphas, betas, beta, tol, eps)
            checked = m
            if done:
                break
        if m == kmax or (tol is None and m == k):
            break
        ref = xp.maximum(xp.abs(a), xp.ones_like(a))
        small = beta <= 1e-10 * ref
        if bool(xp.any(small)):
            fresh = _start_vector(v0, bshape, shape, gen, support)
            fresh, _ = normalize(orthogonalize(fresh))
            w = xp.where(xp.reshape(small, tuple(small.shape) + (1,) * field_nd), fresh, w)
            beta = xp.where(small, xp.zeros_like(beta), beta)
        betas.append(beta)
        q = w
        push(q)
    if tol is not None and checked != len(alphas):
        rel, _ = _ritz_check(alphas, betas, beta, tol, eps)
    return xp.linalg.eigvalsh(_tridiagonal(xp, alphas, betas)), rel, len(alphas)


def _tridiagonal(xp: Any, alphas: list[Any], betas: list[Any]) -> Any:
    m = len(alphas)
    a = xp.stack(alphas, axis=-1)
    T = xp.eye(m, dtype=a.dtype, device=_device(a)) * a[..., None, :]
    if m > 1:
        b = xp.stack(betas[: m - 1] + [xp.zeros_like(alphas[0])], axis=-1)
        b = xp.astype(b, a.dtype) if b.dtype != a.dtype else b
        T = T + xp.eye(m, k=1, dtype=a.dtype, device=_device(a)) * b[..., :, None]
        T = T + xp.eye(m, k=-1, dtype=a.dtype, device=_device(a)) * b[..., None, :]
    return T


def _ritz_check(alphas: list[Any], betas: list[Any], beta_next: Any, tol: float, eps: float) -> tuple[Any, bool]:
    """Residual bounds of the extremal Ritz pairs: ``(r / |theta|`` for (min, max), shape ``(*B, 2)``; whether all are
    within tol)``, from the tridiagonal matrix (small: ``m x m``) in double precision on the fields' device."""
    xp = array_namespace(alphas[0])
    T = _tridiagonal(xp, alphas, betas)
    T = xp.astype(T, xp.float64) if T.dtype != xp.float64 else T
    theta, S = xp.linalg.eigh(T)
    bn = xp.abs(xp.astype(beta_next, xp.float64))
    r = bn[..., None] * xp.abs(S[..., -1, :])                   # |A y_i - theta_i y_i| of every Ritz pair
    ext = xp.stack([theta[..., 0], theta[..., -1]], axis=-1)
    r_ext = xp.stack([r[..., 0], r[..., -1]], axis=-1)
    scale = xp.maximum(xp.abs(ext), xp.full_like(ext, xp.finfo(xp.float64).smallest_normal))
    floor = 10 * eps * xp.abs(theta[..., -1:])
    return r_ext / scale, bool(xp.all(r_ext <= tol * scale + floor))


def lanczos(A: Callable[[Any], Any], v0: Any, k: int, *, batch_ndim: int = 0, support: Any = None,
            rng: Generator | None = None) -> Any:
    """Ritz values (ascending) after ``k`` Lanczos steps with full reorthogonalisation, shape ``(*B, k)``.

    ``v0``: start vectors (the first ``batch_ndim`` axes are chains). On an invariant subspace
    (``beta ~ 0``) the chain restarts with a fresh random vector orthogonal to the Krylov basis,
    so ``k`` may be as large as the dimension (then the Ritz values are all eigenvalues). No convergence
    check: :func:`extremal_eigenvalues` checks the Ritz residuals and extends the chain.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([1.0, 2.0, 5.0]).astype(complex)
    >>> ritz = lanczos(lambda v: v @ A.T, np.ones(3, dtype=complex), 3)
    >>> np.round(ritz.real, 8).tolist()
    [1.0, 2.0, 5.0]
    """
    ritz, _, _ = _lanczos(A, v0, int(k), batch_ndim=batch_ndim, support=support, rng=rng)
    return ritz


def power_iteration(A: Callable[[Any], Any], v0: Any, iters: int = 100, *, batch_ndim: int = 0) -> Any:
    """Largest eigenvalue (modulus) estimate of a Hermitian PSD operator by power iteration, shape batch.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([1.0, 2.0, 4.0])
    >>> round(float(power_iteration(lambda v: A @ v, np.ones(3), 200)), 6)
    4.0
    """
    xp = array_namespace(v0)
    field_nd = v0.ndim - batch_ndim
    v = v0
    lam = None
    for _ in range(iters):
        nrm = xp.sqrt(norm2(v, batch_ndim))
        v = v / xp.astype(xp.reshape(nrm, tuple(nrm.shape) + (1,) * field_nd), v.dtype)
        w = A(v)
        lam = inner(v, w, batch_ndim)
        lam = xp.real(lam) if is_complex(lam, xp) else lam
        v = w
    return lam


def _support_size(support: Any, shape: tuple[int, ...]) -> int:
    """Degrees of freedom an operator acts on: ``prod(shape)``, or the number of components in ``support``."""
    if support is None:
        return _prod(shape)
    xp = array_namespace(support)
    return int(xp.sum(xp.astype(xp.broadcast_to(support, shape), xp.int64)))


def extremal_eigenvalues(A: Any, shape: Sequence[int] | None = None, *, like: Any = None, support: Any = None,
                         batch_shape: Sequence[int] | None = None, method: str = "auto", k: int = 60,
                         maxiter: int | None = None, tol: float = 1e-6, rng: Generator | None = None
                         ) -> tuple[Any, Any]:
    """``(lambda_min, lambda_max)`` of a Hermitian positive semi-definite operator, per batch element.

    Parameters
    ----------
    A : callable or operator object
        The Hermitian operator (e.g. ``D.normal``), acting on ``(*B, *shape)`` (and broadcasting a
        leading axis for the dense method).
    shape : tuple
        One vector's shape; ``like``: an array of the target backend; ``support``: see
        :func:`dense_matrix`.
    batch_shape : tuple, optional
        Batch of the operator (needed by Lanczos to draw start vectors; default ``()``).
    method : {"auto", "dense", "lanczos"}
        ``auto`` = dense up to ``DENSE_LIMIT`` degrees of freedom (the components in ``support``: half the
        sites with even/odd), Lanczos above.
    k : int
        Lanczos steps before the first convergence check (extremal Ritz values converge first; the smallest
        one approaches from above).
    maxiter : int, optional
        Most Lanczos steps (default ``max(10 k, 500)``, at most the dimension). Memory: one vector per step.
    tol : float
        Lanczos stops when the residual ``r = |A y - theta y|`` of both extremal Ritz pairs is at most
        ``tol |theta|`` (plus ``10 eps lambda_max``, what the precision resolves): an eigenvalue then lies
        within ``tol`` relative of each. Checked after ``k`` steps and every ``max(10, k // 4)`` after.

    Warns
    -----
    EigenvalueConvergenceWarning
        When ``maxiter`` steps did not reach ``tol``: the message gives the relative residual reached.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag(np.linspace(0.5, 3.0, 20)).astype(complex)
    >>> lo, hi = extremal_eigenvalues(lambda v: v @ A.T, (20,), like=A, method="lanczos", k=20)
    >>> round(float(lo), 8), round(float(hi), 8)
    (0.5, 3.0)
    """
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method={method!r}: expected 'auto', 'dense' or 'lanczos'")
    if hasattr(A, "normal") and hasattr(A, "field_shape") and not callable(A):
        raise TypeError("A: pass the Hermitian operator itself, e.g. D.normal")
    if shape is None or like is None:
        raise ValueError("extremal_eigenvalues: shape= and like= are required")
    k = _positive_int(k, "k")
    maxiter = None if maxiter is None else _positive_int(maxiter, "maxiter")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or not tol > 0:
        raise ValueError(f"tol: expected a finite positive real number, got {tol!r}")
    shape = tuple(int(s) for s in shape)
    n = _support_size(support, shape)
    if method == "dense" or (method == "auto" and n <= DENSE_LIMIT):
        ev = eigvalsh_dense(A, shape, like=like, support=support, batch_shape=batch_shape)
        return ev[..., 0], ev[..., -1]
    bshape = tuple(batch_shape or ())
    v0 = _start_vector(like, bshape, shape, rng, support)
    kmax = max(10 * k, 500) if maxiter is None else maxiter
    ritz, rel, steps = _lanczos(A, v0, k, batch_ndim=len(bshape), support=support, rng=rng, maxiter=kmax,
                                tol=float(tol), dim=n)
    if steps < n:
        xp = array_namespace(rel)
        eps = 1.2e-7 if str(v0.dtype).endswith("complex64") else 2.3e-16
        lo_hi = xp.astype(xp.stack([ritz[..., 0], ritz[..., -1]], axis=-1), xp.float64)
        tiny = xp.full_like(lo_hi, xp.finfo(xp.float64).smallest_normal)
        bad = rel > tol + 10 * eps * xp.abs(lo_hi[..., 1:]) / xp.maximum(xp.abs(lo_hi), tiny)
        if bool(xp.any(bad)):
            host = to_numpy(xp.where(bad, rel, xp.zeros_like(rel)))      # the worst entry, located on the host
            flat, worst_idx = int(host.reshape(-1).argmax()), []
            for d in reversed(host.shape):
                worst_idx.append(flat % d)
                flat //= d
            worst = tuple(reversed(worst_idx))
            which = "lambda_min" if worst[-1] == 0 else "lambda_max"
            chain = f" (chain {tuple(int(i) for i in worst[:-1])})" if bshape else ""
            warnings.warn(f"extremal_eigenvalues: Lanczos did not converge in maxiter={steps} steps: {which}{chain} "
                          f"has relative residual {float(host[worst]):.1e} > tol={tol:.0e}, so it may be off by as "
                          f"much (lambda_min is overestimated); raise maxiter= or use method='dense'",
                          EigenvalueConvergenceWarning, stacklevel=2)
    return ritz[..., 0], ritz[..., -1]


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    return int(v)


def condition_number(A: Any, shape: Sequence[int] | None = None, **kw: Any) -> Any:
    """``lambda_max / lambda_min`` of a Hermitian positive definite operator (see :func:`extremal_eigenvalues`).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([0.5, 1.0, 2.0])
    >>> float(condition_number(lambda v: v @ A.T, (3,), like=A, method="dense"))
    4.0
    """
    lo, hi = extremal_eigenvalues(A, shape, **kw)
    return hi / lo
