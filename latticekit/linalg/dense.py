"""Dense fallbacks for small lattices: the matrix of a linear operator, exact log-determinants.

The matrix is built by applying the operator to unit vectors (in chunks, batched through the
operator's own broadcasting), so the dense matrix is exactly the operator used everywhere else.
torch autograd flows through it, which makes it the reference for forces on tiny lattices.

Examples
--------
>>> import numpy as np
>>> from latticekit.linalg import dense_matrix
>>> A = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=complex)
>>> M = dense_matrix(lambda v: v @ A.T, (2,), like=A)
>>> bool(np.allclose(M, A))
True
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from latticekit.backends import array_namespace, complex_dtype_for, is_complex, lu_linalg, to_numpy
from latticekit.backends import device as _device

__all__ = ["dense_matrix", "logdet_normal", "slogdet_dense", "support_indices"]


def _prod(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def support_indices(support: Any, shape: Sequence[int]) -> list[int]:
    """Flat indices (row-major over ``shape``) where the boolean ``support`` (broadcastable) is true."""
    xp = array_namespace(support)
    m = xp.broadcast_to(support, tuple(shape))
    flat = to_numpy(xp.reshape(m, (-1,)))
    return [i for i, v in enumerate(flat.tolist()) if v]


def _resolve(op: Any, shape: Sequence[int] | None, like: Any, support: Any,
             batch_shape: Sequence[int] | None) -> tuple[Callable[[Any], Any], tuple[int, ...], Any, Any, tuple[int, ...]]:
    """Accept an operator object (``.apply``, ``.field_shape``, ``.like``, ``.support``) or a callable."""
    if hasattr(op, "apply") and hasattr(op, "field_shape"):
        fn = op.apply
        shape = tuple(op.field_shape) if shape is None else tuple(shape)
        like = op.like if like is None else like
        support = getattr(op, "support", None) if support is None else support
        batch_shape = tuple(getattr(op, "batch_shape", ())) if batch_shape is None else batch_shape
    elif callable(op):
        fn = op
        if shape is None or like is None:
            raise ValueError("dense_matrix: a plain callable needs shape= (one vector's shape) and like= (an array "
                             "of the target backend/device)")
    else:
        raise TypeError(f"op: expected an operator object with .apply/.field_shape or a callable, got {type(op).__name__}")
    return fn, tuple(int(s) for s in shape), like, support, tuple(batch_shape or ())


def dense_matrix(op: Any, shape: Sequence[int] | None = None, *, like: Any = None, support: Any = None,
                 batch_shape: Sequence[int] | None = None, dtype: Any = None, chunk: int = 256) -> Any:
    """The dense matrix ``M[..., i, j] = (op e_j)_i`` of a linear operator on vectors of shape ``shape``.

    Parameters
    ----------
    op : callable or operator object
        Maps arrays ``(k, *1s, *shape)`` to ``(k, *B, *shape)`` (``B``: the operator's own batch,
        ``batch_shape``, may be empty; the unit vectors get ``len(B)`` singleton axes to broadcast
        against it). Operator objects (e.g. ``WilsonDirac``) supply ``shape``, ``like``,
        ``support`` and ``batch_shape``.
    shape : tuple of int
        Shape of one vector (e.g. ``(Ns, Nc, *L)``).
    like : array
        Any array of the target backend/device (e.g. the gauge field).
    support : bool array, optional
        Broadcastable to ``shape``; restricts rows and columns to these components (e.g. the even
        sites of an even/odd operator whose half-fields are stored full-size).
    dtype : dtype, optional
        Of the unit vectors (default: complex partner of ``like``'s dtype).
    chunk : int
        Unit vectors per operator application.

    Returns
    -------
    array, shape ``(*B, n, n)`` with ``n = prod(shape)`` or the size of the support.

    Examples
    --------
    >>> import numpy as np
    >>> M = dense_matrix(lambda v: 2.0 * v, (3,), like=np.zeros(1))
    >>> np.diag(M).real.tolist()
    [2.0, 2.0, 2.0]
    """
    fn, shape, like, support, bshape = _resolve(op, shape, like, support, batch_shape)
    xp = array_namespace(like)
    dev = _device(like)
    if dtype is None:
        dtype = like.dtype if is_complex(like, xp) else complex_dtype_for(like.dtype, xp)
    N = _prod(shape)
    idx = support_indices(support, shape) if support is not None else list(range(N))
    n = len(idx)
    if n == 0:
        raise ValueError("support: selects no components")
    idx_arr = xp.asarray(idx, dtype=xp.int64, device=dev)
    ar = xp.arange(N, dtype=xp.int64, device=dev)
    cols = []
    step = max(1, int(chunk))
    for start in range(0, n, step):
        sel = idx_arr[start:min(start + step, n)]
        E = xp.astype(xp.reshape(sel, (-1, 1)) == xp.reshape(ar, (1, -1)), dtype)
        out = fn(xp.reshape(E, (int(sel.shape[0]),) + (1,) * len(bshape) + shape))
        lead = tuple(out.shape[: out.ndim - len(shape)])
        out = xp.reshape(out, lead + (N,))
        if support is not None:
            out = xp.take(out, idx_arr, axis=out.ndim - 1)
        cols.append(out)
    Mt = xp.concat(cols, axis=0) if len(cols) > 1 else cols[0]  # (n_cols, *B, n_rows)
    perm = tuple(range(1, Mt.ndim - 1)) + (Mt.ndim - 1, 0)
    return xp.permute_dims(Mt, perm)


def slogdet_dense(op: Any, shape: Sequence[int] | None = None, *, like: Any = None, support: Any = None,
                  batch_shape: Sequence[int] | None = None) -> tuple[Any, Any]:
    """``(sign, log|det|)`` of an operator via its dense matrix (small lattices only).

    Examples
    --------
    >>> import numpy as np
    >>> s, l = slogdet_dense(lambda v: 3.0 * v, (2,), like=np.zeros(1))
    >>> bool(abs(float(l) - 2 * np.log(3.0)) < 1e-12)
    True
    """
    M = dense_matrix(op, shape, like=like, support=support, batch_shape=batch_shape)
    res = lu_linalg("slogdet", M)          # torch's batched CPU LU is unsafe after set_num_threads
    return res[0], res[1]


def logdet_normal(op: Any, shape: Sequence[int] | None = None, *, like: Any = None, support: Any = None,
                  batch_shape: Sequence[int] | None = None) -> Any:
    """Exact ``log det (D D^dag) = 2 log|det D|`` via a dense slogdet, shape ``batch``.

    Examples
    --------
    >>> import numpy as np
    >>> D = np.array([[2.0, 1.0], [0.0, 3.0]], dtype=complex)
    >>> bool(abs(float(logdet_normal(lambda v: v @ D.T, (2,), like=D)) - 2 * np.log(6.0)) < 1e-12)
    True
    """
    _, logabs = slogdet_dense(op, shape, like=like, support=support, batch_shape=batch_shape)
    return 2.0 * logabs
