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

from typing import Any, Callable, Sequence

from latticekit.backends import Generator, array_namespace, is_complex, rng as make_rng
from latticekit.backends import backend_name, device as _device

from .cg import inner, norm2
from .dense import _prod, dense_matrix

__all__ = ["condition_number", "eigvalsh_dense", "extremal_eigenvalues", "lanczos", "power_iteration"]

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


def lanczos(A: Callable[[Any], Any], v0: Any, k: int, *, batch_ndim: int = 0, support: Any = None,
            rng: Generator | None = None) -> Any:
    """Ritz values (ascending) after ``k`` Lanczos steps with full reorthogonalisation, shape ``(*B, k)``.

    ``v0``: start vectors (the first ``batch_ndim`` axes are chains). On an invariant subspace
    (``beta ~ 0``) the chain restarts with a fresh random vector orthogonal to the Krylov basis,
    so ``k`` may be as large as the dimension (then the Ritz values are all eigenvalues).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([1.0, 2.0, 5.0]).astype(complex)
    >>> ritz = lanczos(lambda v: v @ A.T, np.ones(3, dtype=complex), 3)
    >>> np.round(ritz.real, 8).tolist()
    [1.0, 2.0, 5.0]
    """
    xp = array_namespace(v0)
    field_nd = v0.ndim - batch_ndim
    shape = tuple(v0.shape[batch_ndim:])
    bshape = tuple(v0.shape[:batch_ndim])

    def bc(s: Any) -> Any:
        s = xp.reshape(s, tuple(s.shape) + (1,) * field_nd)
        return xp.astype(s, v0.dtype) if s.dtype != v0.dtype else s

    def normalize(w: Any) -> tuple[Any, Any]:
        nrm = xp.sqrt(norm2(w, batch_ndim))
        safe = xp.where(nrm > 0, nrm, xp.ones_like(nrm))
        return w / bc(safe), nrm

    def orthogonalize(w: Any, basis: list[Any]) -> Any:
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            for q in basis:
                w = w - bc(inner(q, w, batch_ndim)) * q
        return w

    q, _ = normalize(v0)
    basis = [q]
    alphas: list[Any] = []
    betas: list[Any] = []
    gen = rng if rng is not None else make_rng(2024, backend=backend_name(xp), device=_device(v0))
    for j in range(k):
        w = A(basis[-1])
        a = xp.real(inner(basis[-1], w, batch_ndim)) if is_complex(w, xp) else inner(basis[-1], w, batch_ndim)
        alphas.append(a)
        if j == k - 1:
            break
        w = orthogonalize(w, basis)
        w, beta = normalize(w)
        ref = xp.maximum(xp.abs(a), xp.ones_like(a))
        small = beta <= 1e-10 * ref
        if bool(xp.any(small)):
            fresh = _start_vector(v0, bshape, shape, gen, support)
            fresh, _ = normalize(orthogonalize(fresh, basis))
            w = xp.where(xp.reshape(small, tuple(small.shape) + (1,) * field_nd), fresh, w)
            beta = xp.where(small, xp.zeros_like(beta), beta)
        betas.append(beta)
        basis.append(w)
    m = len(alphas)
    rows = []
    zero = xp.zeros_like(alphas[0])
    for i in range(m):
        row = []
        for jj in range(m):
            if jj == i:
                row.append(alphas[i])
            elif jj == i + 1:
                row.append(betas[i])
            elif jj == i - 1:
                row.append(betas[jj])
            else:
                row.append(zero)
        rows.append(xp.stack(row, axis=-1))
    T = xp.stack(rows, axis=-2)
    return xp.linalg.eigvalsh(T)


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


def extremal_eigenvalues(A: Any, shape: Sequence[int] | None = None, *, like: Any = None, support: Any = None,
                         batch_shape: Sequence[int] | None = None, method: str = "auto", k: int = 60,
                         rng: Generator | None = None) -> tuple[Any, Any]:
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
        ``auto`` = dense below ``DENSE_LIMIT`` degrees of freedom, Lanczos above.
    k : int
        Lanczos steps (extremal Ritz values converge first; the smallest one approaches from above).

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
    shape = tuple(int(s) for s in shape)
    n = _prod(shape)
    if method == "dense" or (method == "auto" and n <= DENSE_LIMIT):
        ev = eigvalsh_dense(A, shape, like=like, support=support, batch_shape=batch_shape)
        return ev[..., 0], ev[..., -1]
    bshape = tuple(batch_shape or ())
    v0 = _start_vector(like, bshape, shape, rng, support)
    ritz = lanczos(A, v0, min(int(k), n), batch_ndim=len(bshape), support=support, rng=rng)
    return ritz[..., 0], ritz[..., -1]


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
