"""Batched Krylov solvers: CG with per-chain convergence, CGNE/CGNR and BiCGStab.

Every solver works on a batch of independent systems. The leading ``batch_ndim`` axes of the
right-hand side ``b`` index the systems ("chains"); the remaining axes form one vector. The
operator is any callable mapping an array of the shape of ``b`` to one of the same shape (e.g.
``WilsonDirac.normal``); it is applied to the whole batch at once. A chain that has converged
stops being updated (its step sizes are masked to zero), so its solution and its iteration count
freeze while the other chains continue.

Convergence criterion per chain: ``|b - A x| <= tol * |b|``, the TRUE residual. The iterations update the
residual recursively, ``r -> r - alpha A p``, and in finite precision that drifts from ``b - A x``: in float32
the recursive residual of a solve to ``tol = 1e-12`` fell below it while the true one stayed at 2e-7, and the solve
was reported converged. So when the recursive residual says converged, :func:`cg` computes the true one, and
restarts the chains where it is still above ``tol`` from their current ``x`` (a "reliable update", as QUDA and
Grid do), within the same ``maxiter``; a chain whose true residual cannot reach ``tol`` (a tolerance below
what the precision resolves: its true residual stalls at the precision floor) then fails with a
:class:`ConvergenceError` that says so, whatever the precision, and :class:`SolverInfo` marks it ``stalled``: raising
``maxiter`` does not help it. :class:`SolverInfo` reports the true relative residual ``|b - A x| / |b|``.

Examples
--------
>>> import numpy as np
>>> from latticekit.linalg.cg import cg
>>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
>>> b = np.array([[1.0, 2.0], [0.0, 1.0]])            # two chains, batch_ndim=1
>>> x, info = cg(lambda v: v @ A.T, b, batch_ndim=1, tol=1e-12)
>>> bool(np.allclose(x @ A.T, b))
True
>>> info.converged.tolist(), info.iterations.tolist()
([True, True], [2, 2])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from latticekit.backends import array_namespace, fast_path, is_complex, to_numpy

__all__ = [
    "ConvergenceError",
    "SolverInfo",
    "bicgstab",
    "cg",
    "cgne",
    "cgnr",
    "inner",
    "norm2",
]

Operator = Callable[[Any], Any]
#: restarts of :func:`cg` from its current ``x`` where the true residual is above ``tol`` after the recursive one
#: said converged (each recomputes ``r = b - A x``; all within ``maxiter``)
MAX_RESTARTS = 5
#: ``fused(b, x0, tol, maxiter) -> (x, converged, iterations)`` or None (declined), see :func:`cg`
FusedSolver = Callable[[Any, Any, float, int], Any]


class ConvergenceError(RuntimeError):
    """Some chain did not converge (``maxiter`` reached, the true residual stalled at the precision floor, an
    operator that is not positive definite, NaN); the message names the reason, ``.info`` holds the details."""

    def __init__(self, message: str, info: "SolverInfo") -> None:
        super().__init__(message)
        self.info = info


@dataclass
class SolverInfo:
    """Per-chain outcome of a batched solve.

    Attributes
    ----------
    converged : array of bool, shape ``batch``
    iterations : array of int64, shape ``batch`` (operator applications that updated the chain)
    residual : real array, shape ``batch``: true relative residual ``|b - A x| / |b|``
    tol, maxiter : the requested tolerance and iteration limit
    solver : name of the solver
    indefinite : array of bool, shape ``batch``, or None: CG stopped on ``<p, A p> <= 0`` (A is not positive
        definite for that chain); None where the solver does not tell
    stalled : array of bool, shape ``batch``, or None: CG stopped because the chain's true residual stalled above
        ``tol`` at the precision floor (its recursive residual reached ``tol`` ``MAX_RESTARTS + 1`` times, the
        true one never did), not because of ``maxiter``; None where the solver does not tell

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.linalg.cg import cg
    >>> A = np.diag(np.geomspace(1.0, 30.0, 20))
    >>> _, info = cg(lambda v: v @ A.T, np.ones((1, 20)), tol=1e-20, maxiter=10**4, batch_ndim=1,
    ...              raise_on_failure=False)
    >>> info.converged.tolist(), info.stalled.tolist(), bool(info.iterations[0] < info.maxiter)
    ([False], [True], True)
    """

    converged: Any
    iterations: Any
    residual: Any
    tol: float
    maxiter: int
    solver: str = "cg"
    indefinite: Any = None
    stalled: Any = None

    @property
    def all_converged(self) -> bool:
        """Whether every chain converged."""
        xp = array_namespace(self.converged)
        return bool(xp.all(self.converged))

    def failed(self) -> list[tuple[tuple[int, ...], float]]:
        """``(chain index, true relative residual)`` of every chain that did not converge."""
        conv = to_numpy(self.converged)
        res = to_numpy(self.residual)
        if conv.ndim == 0:
            return [] if bool(conv) else [((), float(res))]
        out = []
        for idx in zip(*(~conv).nonzero()):
            out.append((tuple(int(i) for i in idx), float(res[idx])))
        return out


# -- reductions -----------------------------------------------------------------------------------
def _field_axes(a: Any, batch_ndim: int) -> tuple[int, ...]:
    if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, numbers.Integral) or not 0 <= batch_ndim <= a.ndim:
        raise ValueError(f"batch_ndim={batch_ndim}: expected 0 <= batch_ndim <= b.ndim = {a.ndim}")
    return tuple(range(batch_ndim, a.ndim))


def norm2(a: Any, batch_ndim: int = 0) -> Any:
    """``sum |a|^2`` over the non-batch axes (real, shape ``a.shape[:batch_ndim]``)."""
    xp = array_namespace(a)
    ax = _field_axes(a, batch_ndim)
    if is_complex(a, xp):
        re, im = xp.real(a), xp.imag(a)
        return xp.sum(re * re + im * im, axis=ax)
    return xp.sum(a * a, axis=ax)


def inner(a: Any, b: Any, batch_ndim: int = 0) -> Any:
    """``<a, b> = sum conj(a) b`` over the non-batch axes, shape ``batch``."""
    xp = array_namespace(a, b)
    ca = xp.conj(a) if is_complex(a, xp) else a
    return xp.sum(ca * b, axis=_field_axes(a, batch_ndim))


def _bcast(s: Any, like: Any, batch_ndim: int) -> Any:
    """Reshape a per-chain array ``s`` (shape batch) to broadcast against fields, cast to their dtype."""
    xp = array_namespace(like)
    s = xp.reshape(s, tuple(s.shape) + (1,) * (like.ndim - batch_ndim))
    if s.dtype != like.dtype:
        s = xp.astype(s, like.dtype)
    return s


def _real(z: Any) -> Any:
    xp = array_namespace(z)
    return xp.real(z) if is_complex(z, xp) else z


def _finish(A: Operator, b: Any, x: Any, converged: Any, iters: Any, bnorm: Any, tol: float, maxiter: int,
            batch_ndim: int, raise_on_failure: bool, solver: str, *, res: Any = None,
            indefinite: Any = None, stalled: Any = None) -> tuple[Any, SolverInfo]:
    xp = array_namespace(b)
    res = _true_residual(A, b, x, bnorm, batch_ndim) if res is None else res
    # converged only where the TRUE residual is below tol (the recursive one drifts: module docstring)
    converged = xp.logical_and(converged, res <= tol)
    info = SolverInfo(converged=converged, iterations=iters, residual=res, tol=tol, maxiter=maxiter, solver=solver,
                      indefinite=indefinite, stalled=stalled)
    if raise_on_failure:
        _raise_if_failed(info, b.dtype)
    return x, info


def _raise_if_failed(info: SolverInfo, dtype: Any, single: bool = False) -> None:
    """:class:`ConvergenceError` naming the chains that failed, why, and what to change."""
    if info.all_converged:
        return
    bad = info.failed()
    single = single or bad[0][0] == ()
    reasons = _reasons(info, bad)
    kinds = list(dict.fromkeys(reasons))            # the reasons present, in order of the chains
    tag = len(kinds) > 1                            # several reasons: each chain says its own
    shown = ", ".join(("" if single else f"chain {i}: ") + f"residual {r:.2e}" + (f" ({k})" if tag else "")
                      for (i, r), k in zip(bad[:10], reasons))
    more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
    what = "" if single else f" for {len(bad)} chain(s)"
    name = str(dtype).split(".")[-1]
    used = max(int(n) for n in to_numpy(info.iterations).reshape(-1))
    whys = {
        "maxiter": f"within maxiter={info.maxiter}",
        "not positive definite": "(<p, A p> <= 0: the operator is not positive definite there, which CG needs)",
        # it was blamed on the operator's definiteness or on maxiter (user probe)
        "NaN": "(the residual is NaN: the source b, the start x0 or the operator's field holds NaN or inf)",
        # it was reported as "within maxiter=20000" after 180 iterations (user probe)
        "stalled": (f"(the true residual |b - A x| stalled above tol at the precision floor: the recursive residual "
                    f"reached tol {MAX_RESTARTS + 1} times and the true one stayed above it, after {used} of "
                    f"maxiter={info.maxiter} iterations)"),
    }
    if tag:
        why = ""
        hint = "".join(f"; {k}: {whys[k].strip('()')}" for k in kinds)
    else:
        why, hint = " " + whys[kinds[0]], ""
    hint += _precision_hint(name, "stalled" in kinds, "maxiter" in kinds)
    raise ConvergenceError(f"{info.solver} did not converge to tol={info.tol:g}{why}{what}: {shown}{more}{hint}",
                           info)


def _reasons(info: SolverInfo, bad: list[tuple[tuple[int, ...], float]]) -> list[str]:
    """Why each failed chain of ``bad`` (from ``info.failed()``) stopped."""
    indef, stalled = (None if f is None else to_numpy(f) for f in (info.indefinite, info.stalled))
    out = []
    for idx, r in bad:
        if r != r:
            out.append("NaN")
        elif indef is not None and bool(indef[idx]):
            out.append("not positive definite")
        elif stalled is not None and bool(stalled[idx]):
            out.append("stalled")
        else:
            out.append("maxiter")
    return out


def _precision_hint(name: str, stalled: bool, maxiter: bool) -> str:
    """What to change where the precision limits the true residual (single precision: always worth saying)."""
    # the true residual of single precision stalls near 1e-7 times the condition number (the rounding of A x:
    # 1.1e-6 for D D^dag of a smooth 8x8 U(1) field at kappa = 0.265, 2e-4 for a spectrum from 1 to 1e4)
    if name in ("float32", "complex64") and (stalled or maxiter):
        return (f"; {name} arithmetic resolves a true residual of about 1e-7 times the operator's condition number: "
                "use a larger tol or double precision" + ("; raising maxiter does not help" if stalled else ""))
    if not stalled:
        return ""
    # double precision: 2.5e-12 for D D^dag of an 8x8 U(1) field at kappa = 0.5 (condition number 6e5)
    double = name in ("float64", "complex128")
    return (f"; the rounding of A x in {name} arithmetic puts a floor under the true residual that grows with the "
            "operator's condition number" + (" (up to about 1e-16 times it)" if double else "") + ": use a larger "
            "tol or a better-conditioned operator (for D D^dag: kappa further from critical, even/odd preconditioning)"
            + ("" if double else " or higher precision") + "; raising maxiter does not help")


def _true_residual(A: Operator, b: Any, x: Any, bnorm: Any, batch_ndim: int) -> Any:
    """``|b - A x| / |b|`` per chain."""
    xp = array_namespace(b)
    return xp.sqrt(norm2(b - A(x), batch_ndim)) / bnorm


def _check_args(b: Any, tol: float, maxiter: int) -> None:
    if not tol > 0:
        raise ValueError(f"tol={tol!r}: expected a positive tolerance")
    if isinstance(maxiter, bool) or not (isinstance(maxiter, numbers.Integral) and maxiter >= 1):   # NumPy ints too
        raise ValueError(f"maxiter={maxiter!r}: expected a positive integer")
    if not hasattr(b, "shape"):
        raise TypeError(f"b: expected an array, got {type(b).__name__}")


# -- CG -------------------------------------------------------------------------------------------
def cg(A: Operator, b: Any, x0: Any = None, *, tol: float = 1e-10, maxiter: int = 2000, batch_ndim: int = 0,
       raise_on_failure: bool = True, fused: FusedSolver | None = None) -> tuple[Any, SolverInfo]:
    """Conjugate gradient for Hermitian positive definite ``A x = b``, batched with per-chain masks.

    Parameters
    ----------
    A : callable
        Hermitian positive definite operator acting on arrays shaped like ``b``.
    b : array
        Right-hand sides; the first ``batch_ndim`` axes index independent systems.
    x0 : array, optional
        Initial guess (default zero).
    tol : float
        Relative residual target ``|r| <= tol |b|`` per chain.
    maxiter : int
        Maximum number of iterations.
    batch_ndim : int
        Number of leading axes of ``b`` that index chains.
    raise_on_failure : bool
        Raise :class:`ConvergenceError` (naming the chains, their residuals and why they stopped:
        ``maxiter``, a true residual stalled at the precision floor after ``MAX_RESTARTS`` restarts,
        an operator that is not positive definite, NaN) when some chain has not converged; with False,
        return and let the caller inspect ``info.converged`` (and ``info.stalled``).
    fused : callable, optional
        A compiled solver for the same operator that runs the whole loop itself,
        ``fused(b, x0, tol, maxiter) -> (x, converged, iterations)`` with the per-chain arrays of
        shape ``b.shape[:batch_ndim]``, or None where it does not handle the inputs (then the loop
        below runs). It must implement this iteration (same stopping rule, frozen chains, counts);
        operators hand theirs out, e.g. ``WilsonDirac.normal_solver``. The true residual and the
        failure report are computed here from ``A`` either way.

    Returns
    -------
    x : array shaped like ``b``
    info : SolverInfo

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([1.0, 2.0, 3.0])
    >>> x, info = cg(lambda v: A @ v, np.ones(3))
    >>> np.round(x, 6).tolist(), bool(info.converged)
    ([1.0, 0.5, 0.333333], True)
    """
    _check_args(b, tol, maxiter)
    maxiter = int(maxiter)
    if x0 is not None and tuple(x0.shape) != tuple(b.shape):
        raise ValueError(f"x0 has shape {tuple(x0.shape)}; expected the shape of b {tuple(b.shape)}")
    if batch_ndim == 0 and fused is None:
        return _unbatched(cg, A, b, x0, tol=tol, maxiter=maxiter, raise_on_failure=raise_on_failure)
    xp = array_namespace(b)
    bshape = tuple(b.shape[:batch_ndim])
    bn2 = norm2(b, batch_ndim)
    bnorm = xp.sqrt(xp.where(bn2 > 0, bn2, xp.ones_like(bn2)))
    iters = xp.zeros(bshape, dtype=xp.int64, device=_dev(b))
    x, budget = x0, maxiter
    for npass in range(1, MAX_RESTARTS + 2):
        out = None if fused is None else fused(b, x, tol, budget)
        if out is not None:
            x, conv, it = out
            if math.prod(bshape) != math.prod(tuple(conv.shape)):
                raise ValueError(f"batch_ndim={batch_ndim}: the fused solver solved {tuple(conv.shape)} chains, "
                                 f"but b.shape[:batch_ndim] = {bshape}; give the number of leading chain axes of b")
            conv, it, indefinite = xp.reshape(conv, bshape), xp.reshape(it, bshape), None
        elif batch_ndim == 0:   # the fused solver declined a single system (it declines on the inputs' kind)
            return _unbatched(cg, A, b, x, tol=tol, maxiter=budget, raise_on_failure=raise_on_failure)
        else:
            x, conv, it, indefinite = _cg_loop(A, b, x, tol, budget, batch_ndim, bnorm)
        iters = iters + it
        res = _true_residual(A, b, x, bnorm, batch_ndim)
        # a restart (r = b - A x, p = r) where the recursive residual said converged but the true one is above tol
        drifted = xp.logical_and(conv, res > tol)
        budget = maxiter - int(xp.max(iters))
        if not bool(xp.any(drifted)) or budget <= 0:
            break
    # chains still drifted after every restart: their true residual stalled at the precision floor (they drifted
    # on every pass, since a restart from a truly converged x stays converged); with restarts left, maxiter
    # stopped them. Recorded so that the failure names the reason: it blamed maxiter for both (user probe).
    stalled = drifted if npass == MAX_RESTARTS + 1 else xp.zeros_like(drifted)
    return _finish(A, b, x, conv, iters, bnorm, tol, maxiter, batch_ndim, raise_on_failure, "cg", res=res,
                   indefinite=indefinite, stalled=stalled)


def _cg_loop(A: Operator, b: Any, x0: Any, tol: float, maxiter: int, batch_ndim: int,
             bnorm: Any) -> tuple[Any, Any, Any, Any]:
    """The CG iteration from ``x0`` with the recursive residual: ``(x, converged, iterations, indefinite)``."""
    xp = array_namespace(b)
    if x0 is None:
        x = xp.zeros_like(b)
        r = b
    else:
        x = x0
        r = b - A(x0)
    # fused vector updates (fast-path registry; the generic expressions below are the fallback). They
    # write x, r and p in place, so the solver first takes copies it owns: b and x0 stay untouched.
    fused = _fused_updates(b)
    if fused is not None:
        x, r = xp.asarray(x, copy=True), xp.asarray(r, copy=True)
    p = r if fused is None else xp.asarray(r, copy=True)
    rr = norm2(r, batch_ndim)
    tol2 = (tol * bnorm) ** 2
    converged = rr <= tol2
    done = converged                       # converged, or frozen because A is not positive definite there
    iters = xp.zeros(converged.shape, dtype=xp.int64, device=_dev(b))
    zero = xp.zeros_like(rr)
    one = xp.ones_like(rr)
    for _ in range(maxiter):
        if bool(xp.all(done)):             # the one host synchronisation per iteration
            break
        active = xp.logical_not(done)
        Ap = A(p)
        pAp = _re_inner(fused, p, Ap, batch_ndim)
        ok = xp.logical_and(active, pAp > 0)
        alpha = xp.where(ok, rr / xp.where(ok, pAp, one), zero)
        x, r, rr_new = _update_xr(fused, x, r, p, Ap, alpha, batch_ndim)
        beta = xp.where(ok, rr_new / xp.where(rr > 0, rr, one), zero)
        p = _update_p(fused, p, r, beta, ok, batch_ndim)
        rr = xp.where(ok, rr_new, rr)
        iters = iters + xp.astype(ok, xp.int64)
        converged = xp.logical_or(converged, rr <= tol2)
        # a chain with pAp <= 0 keeps its p, so it would stay there: it is frozen and reported unconverged
        done = xp.logical_or(converged, xp.logical_or(done, xp.logical_and(active, xp.logical_not(ok))))
    return x, converged, iters, xp.logical_and(done, xp.logical_not(converged))



# -- the vector updates of CG: fused fast paths where registered, generic Array API code otherwise --
def _fused_updates(b: Any) -> tuple[Any, Any, Any] | None:
    """The registered fused CG updates for the backend of ``b`` (all three, or None)."""
    fns = tuple(fast_path(name, b) for name in ("batched_re_inner", "cg_update_xr", "cg_update_p"))
    return None if any(f is None for f in fns) else fns


def _re_inner(fused: Any, p: Any, Ap: Any, batch_ndim: int) -> Any:
    """``Re <p, A p>`` per chain."""
    out = None if fused is None else fused[0](p, Ap, batch_ndim)
    return _real(inner(p, Ap, batch_ndim)) if out is None else out


def _update_xr(fused: Any, x: Any, r: Any, p: Any, Ap: Any, alpha: Any, batch_ndim: int) -> tuple[Any, Any, Any]:
    """``x + alpha p``, ``r - alpha Ap`` and ``|r|^2`` per chain (in place when fused)."""
    rr = None if fused is None else fused[1](x, r, p, Ap, alpha, batch_ndim)
    if rr is not None:
        return x, r, rr
    ab = _bcast(alpha, x, batch_ndim)
    r = r - ab * Ap
    return x + ab * p, r, norm2(r, batch_ndim)


def _update_p(fused: Any, p: Any, r: Any, beta: Any, ok: Any, batch_ndim: int) -> Any:
    """``r + beta p`` on the chains where ``ok``, ``p`` elsewhere (in place when fused)."""
    out = None if fused is None else fused[2](p, r, beta, ok, batch_ndim)
    if out is not None:
        return out
    xp = array_namespace(p)
    return xp.where(_mask(ok, p, batch_ndim), r + _bcast(beta, p, batch_ndim) * p, p)


def _unbatched(solver: Callable[..., Any], A: Operator, b: Any, x0: Any, **kw: Any) -> tuple[Any, SolverInfo]:
    """Run a batched solver on a single system (adds and removes a chain axis of length 1)."""
    xp = array_namespace(b)
    raise_on_failure = kw.pop("raise_on_failure", True)
    x, info = solver(lambda v: xp.expand_dims(A(v[0, ...]), axis=0), xp.expand_dims(b, axis=0),
                     None if x0 is None else xp.expand_dims(x0, axis=0), batch_ndim=1, raise_on_failure=False, **kw)
    info.converged = info.converged[0]
    info.iterations = info.iterations[0]
    info.residual = info.residual[0]
    info.indefinite = None if info.indefinite is None else info.indefinite[0]
    info.stalled = None if info.stalled is None else info.stalled[0]
    if raise_on_failure:
        _raise_if_failed(info, b.dtype, single=True)
    return x[0, ...], info


def _mask(m: Any, like: Any, batch_ndim: int) -> Any:
    xp = array_namespace(like)
    return xp.reshape(m, tuple(m.shape) + (1,) * (like.ndim - batch_ndim))


def _dev(a: Any) -> Any:
    from latticekit.backends import device

    return device(a)


def cgne(D: Operator, D_dagger: Operator, b: Any, x0: Any = None, **kw: Any) -> tuple[Any, SolverInfo]:
    """Solve ``D x = b`` via CG on ``D D^dag y = b``, ``x = D^dag y`` (minimises the error norm).

    ``x0`` is a guess for ``y``; keywords as in :func:`cg`. ``info.residual`` refers to the normal
    system ``D D^dag y = b``, whose residual equals ``b - D x``.

    Examples
    --------
    >>> import numpy as np
    >>> D = np.array([[2.0, 1.0], [0.0, 1.0]])
    >>> x, _ = cgne(lambda v: D @ v, lambda v: D.T @ v, np.array([3.0, 1.0]), tol=1e-12)
    >>> np.round(x, 8).tolist()
    [1.0, 1.0]
    """
    y, info = cg(lambda v: D(D_dagger(v)), b, x0, **kw)
    info.solver = "cgne"
    return D_dagger(y), info


def cgnr(D: Operator, D_dagger: Operator, b: Any, x0: Any = None, **kw: Any) -> tuple[Any, SolverInfo]:
    """Solve ``D x = b`` via CG on ``D^dag D x = D^dag b`` (minimises the residual norm).

    ``info.residual`` refers to the normal system ``D^dag D x = D^dag b``.

    Examples
    --------
    >>> import numpy as np
    >>> D = np.array([[2.0, 1.0], [0.0, 1.0]])
    >>> x, _ = cgnr(lambda v: D @ v, lambda v: D.T @ v, np.array([3.0, 1.0]), tol=1e-12)
    >>> np.round(x, 8).tolist()
    [1.0, 1.0]
    """
    x, info = cg(lambda v: D_dagger(D(v)), D_dagger(b), x0, **kw)
    info.solver = "cgnr"
    return x, info


def bicgstab(A: Operator, b: Any, x0: Any = None, *, tol: float = 1e-10, maxiter: int = 2000, batch_ndim: int = 0,
             raise_on_failure: bool = True) -> tuple[Any, SolverInfo]:
    """BiCGStab for a general (non-Hermitian) ``A x = b``, batched with per-chain masks.

    Arguments as in :func:`cg`. Breakdown of a chain (``rho = 0`` or ``<r0, A p> = 0``) freezes
    it; it is then reported as unconverged unless its residual is already below tolerance.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[3.0, 1.0], [-1.0, 2.0]])
    >>> x, info = bicgstab(lambda v: A @ v, np.array([4.0, 1.0]), tol=1e-12)
    >>> np.round(x, 8).tolist()
    [1.0, 1.0]
    """
    _check_args(b, tol, maxiter)
    maxiter = int(maxiter)
    if batch_ndim == 0:
        return _unbatched(bicgstab, A, b, x0, tol=tol, maxiter=maxiter, raise_on_failure=raise_on_failure)
    xp = array_namespace(b)
    if x0 is None:
        x = xp.zeros_like(b)
        r = b
    else:
        x = x0
        r = b - A(x0)
    bn2 = norm2(b, batch_ndim)
    bnorm = xp.sqrt(xp.where(bn2 > 0, bn2, xp.ones_like(bn2)))
    tol2 = (tol * bnorm) ** 2
    r0 = r
    rr = norm2(r, batch_ndim)
    converged = rr <= tol2
    iters = xp.zeros(converged.shape, dtype=xp.int64, device=_dev(b))
    p = xp.zeros_like(b)
    v = xp.zeros_like(b)
    dt = b.dtype
    rho = xp.astype(xp.ones_like(rr), dt)
    alpha = xp.astype(xp.ones_like(rr), dt)
    omega = xp.astype(xp.ones_like(rr), dt)
    zero_c = xp.zeros_like(rho)
    one_c = xp.ones_like(rho)
    for _ in range(maxiter):
        if bool(xp.all(converged)):
            break
        active = xp.logical_not(converged)
        rho_new = inner(r0, r, batch_ndim)
        ok = xp.logical_and(active, xp.abs(rho_new) > 0)
        beta = xp.where(ok, (rho_new / xp.where(ok, rho, one_c)) * (alpha / xp.where(ok, omega, one_c)), zero_c)
        p = xp.where(_mask(ok, b, batch_ndim), r + _bcast(beta, b, batch_ndim) * (p - _bcast(omega, b, batch_ndim) * v), p)
        v_new = A(p)
        den = inner(r0, v_new, batch_ndim)
        ok = xp.logical_and(ok, xp.abs(den) > 0)
        v = xp.where(_mask(ok, b, batch_ndim), v_new, v)
        alpha = xp.where(ok, rho_new / xp.where(ok, den, one_c), alpha)
        s = r - _bcast(xp.where(ok, alpha, zero_c), b, batch_ndim) * v
        t = A(s)
        tt = _real(inner(t, t, batch_ndim))
        okt = xp.logical_and(ok, tt > 0)
        omega_new = xp.where(okt, inner(t, s, batch_ndim) / xp.astype(xp.where(okt, tt, xp.ones_like(tt)), dt), zero_c)
        ab = _bcast(xp.where(ok, alpha, zero_c), b, batch_ndim)
        wb = _bcast(omega_new, b, batch_ndim)
        x = x + ab * p + wb * s
        r = xp.where(_mask(ok, b, batch_ndim), s - wb * t, r)
        rho = xp.where(ok, rho_new, rho)
        omega = xp.where(okt, omega_new, omega)
        rr = xp.where(ok, norm2(r, batch_ndim), rr)
        iters = iters + xp.astype(ok, xp.int64)
        converged = xp.logical_or(converged, rr <= tol2)
        if not bool(xp.any(ok)):
            break
    return _finish(A, b, x, converged, iters, bnorm, tol, maxiter, batch_ndim, raise_on_failure, "bicgstab")
