"""SU(N) for any N >= 2: complex N x N matrices in the channels-first layout ``(*B, N, N, *S)``.

Products are unrolled over the colour index on whole lattice arrays (DESIGN.md, "Performance
facts": 4-6x faster than ``@`` in NumPy for N = 3, equal to torch ``@``). Routines that need the
group axes last (eigh, solve, qr, det) move axes here, never in physics code.

Algebra: traceless anti-Hermitian matrices, generators ``T_a = i lambda_a / 2`` with the
generalised Gell-Mann matrices ``lambda_a`` (``tr T_a T_b = -delta_ab / 2``). Ordering of the
coordinates: for each pair ``j < k`` (row-major) the symmetric then the antisymmetric generator,
then the N - 1 diagonal generators.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any, Sequence

from latticekit.backends import Generator, array_namespace, check_rng, complex_dtype, fast_path
from latticekit.backends import device as _device

from ._sun_exp import exp2, exp3, exp_spectral
from .base import Group

__all__ = ["SU", "SUGroup"]

#: the branch cut of the N-th root of the determinant in :meth:`SUGroup.project`: just below the negative real
#: axis (where the determinant of a sum of two SU(3) matrices lies exactly; see project)
PROJECT_ROOT_CUT = -math.pi + 1e-6

# Cayley-transform shift used for eigen-decompositions of unitary matrices: the Cayley map
# i (1 - W)(1 + W)^{-1}, W = exp(-i alpha) U, is singular only where U has the eigenvalue
# -exp(i alpha); an irrational-looking alpha keeps that off the common special elements (+-1, Z_N).
# SUGroup.eig takes, per matrix, the best of the N + 1 shifts alpha + 2 pi j / (N + 1).
_CAYLEY_ALPHA = 0.7390851332151607

#: :meth:`SUGroup.project` returns NaN for an ``M`` whose ``M^dag M`` has ``lam_min <= _RANK_TOL * lam_max``: there
#: ``eigh`` (absolute error ~N eps lam_max) no longer determines the polar factor (cond(M) >= 1e7)
_RANK_TOL = 1e-14


class SUGroup(Group):
    """The special unitary group SU(N).

    Examples
    --------
    >>> from latticekit import SU, backends
    >>> G = SU(3)
    >>> U = G.random(backends.rng(0), (2,), (4, 4))
    >>> U.shape
    (2, 3, 3, 4, 4)
    >>> bool(G.defect(U, nd=2).max() < 1e-12)
    True
    >>> X = G.random_algebra(backends.rng(1), (), (4, 4), scale=0.5)
    >>> bool(abs(G.log(G.exp(X, nd=2), nd=2) - X).max() < 1e-10)
    True
    """

    def __init__(self, N: int) -> None:
        N = _check_n(N)
        self.N = N
        self.element_shape = (N, N)
        self.name = f"SU({N})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SUGroup) and other.N == self.N

    def __hash__(self) -> int:
        return hash(("SU", self.N))

    # -- indexing helpers ----------------------------------------------------------------------
    @staticmethod
    def _e(a: Any, i: int, j: int, nd: int) -> Any:
        return a[(..., i, j) + (slice(None),) * nd]

    @staticmethod
    def _v(a: Any, i: int, nd: int) -> Any:
        return a[(..., i) + (slice(None),) * nd]

    @staticmethod
    def _elements(a: Any, nd: int) -> list[list[Any]]:
        """All matrix elements ``[i][j]`` of ``a`` (``(*B, N, N, *S)``) as site arrays.

        Under torch autograd by ``unbind`` (its backward is one ``stack``); selecting each element instead
        (:meth:`_e`) gives a backward that writes a full-size zero tensor per selection, which cost a quarter of
        a 2D SU(3) flow training step. Views either way; the values and the arithmetic are the same.
        """
        if getattr(a, "requires_grad", False):
            return [list(r.unbind(r.ndim - nd - 1)) for r in a.unbind(a.ndim - nd - 2)]
        sl = (slice(None),) * nd
        return [[a[(..., i, j) + sl] for j in range(a.shape[a.ndim - nd - 1])] for i in range(a.shape[a.ndim - nd - 2])]

    @staticmethod
    def _components(v: Any, nd: int) -> list[Any]:
        """The components ``[i]`` of vectors ``v`` (``(*B, N, *S)``) as site arrays (``unbind`` under autograd)."""
        if getattr(v, "requires_grad", False):
            return list(v.unbind(v.ndim - nd - 1))
        sl = (slice(None),) * nd
        return [v[(..., i) + sl] for i in range(v.shape[v.ndim - nd - 1])]

    def _assemble(self, rows: list[list[Any]], nd: int) -> Any:
        """Stack a nested list of site arrays ``rows[i][k]`` into ``(*B, n, m, *S)``."""
        xp = array_namespace(rows[0][0])
        return xp.stack([xp.stack(r, axis=-nd - 1) for r in rows], axis=-nd - 2)

    def _group_last(self, a: Any, nd: int) -> Any:
        """``(*B, N, N, *S) -> (*B, *S, N, N)``."""
        if nd == 0:
            return a
        xp = array_namespace(a)
        k = a.ndim - nd - 2
        perm = tuple(range(k)) + tuple(range(k + 2, a.ndim)) + (k, k + 1)
        return xp.permute_dims(a, perm)

    def _group_back(self, a: Any, nd: int, extra: int = 2) -> Any:
        """Inverse of :meth:`_group_last` (``extra`` trailing group axes: 2 matrices, 1 vectors)."""
        if nd == 0:
            return a
        xp = array_namespace(a)
        k = a.ndim - nd - extra
        perm = tuple(range(k)) + tuple(range(a.ndim - extra, a.ndim)) + tuple(range(k, k + nd))
        return xp.permute_dims(a, perm)

    def _eye_like(self, a: Any, nd: int) -> Any:
        xp = array_namespace(a)
        eye = xp.eye(self.N, dtype=a.dtype, device=_device(a))
        return xp.reshape(eye, (self.N, self.N) + (1,) * nd)

    # -- construction --------------------------------------------------------------------------
    def identity(self, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
                 backend: str | None = None, device: Any = None, precision: Any = "double") -> Any:
        xp, dev = self._alloc_args(backend, device)
        ct = complex_dtype(xp, precision)
        nd = len(tuple(site_shape))
        shape = tuple(batch_shape) + (self.N, self.N) + tuple(site_shape)
        eye = xp.reshape(xp.eye(self.N, dtype=ct, device=dev), (self.N, self.N) + (1,) * nd)
        return eye * xp.ones(shape, dtype=ct, device=dev)

    def random(self, rng: Generator, batch_shape: Sequence[int] = (), site_shape: Sequence[int] = (), *,
               precision: Any = "double") -> Any:
        """Haar-random SU(N) (QR of a complex Ginibre matrix with the phase fix of Mezzadri, then det fix)."""
        xp = check_rng(rng).xp
        ct = complex_dtype(xp, precision)
        nd = len(tuple(site_shape))
        z = rng.complex_normal(tuple(batch_shape) + tuple(site_shape) + (self.N, self.N), dtype=ct)
        q, r = xp.linalg.qr(z)
        d = xp.linalg.diagonal(r)
        ph = d / xp.astype(xp.abs(d), ct)
        q = q * xp.expand_dims(ph, axis=-2)  # q @ diag(ph): Haar on U(N)
        q = self._fix_det(q, xp)
        out = self._group_back(q, nd)
        # _group_back is a transposed view; flattening copies it in C order, so fresh fields are
        # contiguous (the numba fast paths accept C-contiguous arrays only)
        return xp.reshape(xp.reshape(out, (-1,)), tuple(out.shape))

    def _fix_det(self, q: Any, xp: Any, cut: float = -math.pi, det: Any = None, ok: Any = None,
                 scale: float = 1.0) -> Any:
        """Divide group-last U(N) matrices by an N-th root of the phase of their determinant, ``exp(i arg(d) / N)``
        with ``arg(d)`` in ``(cut, cut + 2 pi]`` (the principal root for the default ``cut = -pi``). With ``ok``
        (for :meth:`project`): ``det`` if already known, the result is ``scale q exp(-i arg(d) / N)``, and NaN where
        ``ok`` is False."""
        if det is None:
            det = xp.linalg.det(q)
        phase = xp.atan2(xp.imag(det), xp.real(det))
        if cut != -math.pi:
            phase = xp.where(phase <= cut, phase + 2 * math.pi, phase)
        phase = phase / self.N
        ct = q.dtype
        c, s = xp.astype(xp.cos(phase), ct), xp.astype(xp.sin(phase), ct)
        if ok is None:
            return q / (c + 1j * s)[..., None, None]
        # |root| = 1: times its conjugate (NumPy's complex division warns on NaN, a product does not)
        nan = xp.full((), complex(math.nan, math.nan), dtype=ct, device=_device(q))
        return q * xp.where(ok, scale * (c - 1j * s), nan)[..., None, None]

    def _det_last(self, W: Any) -> Any:
        """Determinants of group-last matrices: cofactors for N = 2, 3 (a tenth of the cost of the batched LU of
        ``linalg.det`` on 4096 SU(3) matrices; as accurate for the near-unitary matrices of :meth:`project`)."""
        if self.N > 3:
            return array_namespace(W).linalg.det(W)
        e = [[W[..., i, j] for j in range(self.N)] for i in range(self.N)]
        if self.N == 2:
            return e[0][0] * e[1][1] - e[0][1] * e[1][0]
        return (e[0][0] * (e[1][1] * e[2][2] - e[1][2] * e[2][1]) - e[0][1] * (e[1][0] * e[2][2] - e[1][2] * e[2][0])
                + e[0][2] * (e[1][0] * e[2][1] - e[1][1] * e[2][0]))

    # -- group operations ----------------------------------------------------------------------
    def _check_pair(self, a: Any, b: Any, nd: int) -> None:
        # shapes only (no data pass): a wrong group axis gave a bare IndexError from the unrolled products
        self.check_shape(a, nd=nd, name="a")
        self.check_shape(b, nd=nd, name="b")

    def mul(self, a: Any, b: Any, *, nd: int) -> Any:
        self._check_pair(a, b, nd)
        N = self.N
        if N > 4:
            xp = array_namespace(a, b)
            return self._group_back(xp.matmul(self._group_last(a, nd), self._group_last(b, nd)), nd)
        A, Bm = self._elements(a, nd), self._elements(b, nd)
        rows = []
        for i in range(N):
            ai = A[i]
            row = []
            for k in range(N):
                acc = ai[0] * Bm[0][k]
                for j in range(1, N):
                    acc = acc + ai[j] * Bm[j][k]
                row.append(acc)
            rows.append(row)
        return self._assemble(rows, nd)

    def adjoint(self, a: Any, *, nd: int) -> Any:
        xp = array_namespace(a)
        k = a.ndim - nd - 2
        perm = list(range(a.ndim))
        perm[k], perm[k + 1] = k + 1, k
        return xp.conj(xp.permute_dims(a, tuple(perm)))

    def mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
        self._check_pair(a, b, nd)
        N = self.N
        if N > 4:
            return self.mul(a, self.adjoint(b, nd=nd), nd=nd)
        xp = array_namespace(a, b)
        A, Bm = self._elements(a, nd), self._elements(b, nd)
        rows = []
        for i in range(N):
            row = []
            for k in range(N):
                acc = A[i][0] * xp.conj(Bm[k][0])
                for j in range(1, N):
                    acc = acc + A[i][j] * xp.conj(Bm[k][j])
                row.append(acc)
            rows.append(row)
        return self._assemble(rows, nd)

    def adj_mul(self, a: Any, b: Any, *, nd: int) -> Any:
        self._check_pair(a, b, nd)
        N = self.N
        if N > 4:
            return self.mul(self.adjoint(a, nd=nd), b, nd=nd)
        xp = array_namespace(a, b)
        A, Bm = self._elements(a, nd), self._elements(b, nd)
        rows = []
        for i in range(N):
            row = []
            for k in range(N):
                acc = xp.conj(A[0][i]) * Bm[0][k]
                for j in range(1, N):
                    acc = acc + xp.conj(A[j][i]) * Bm[j][k]
                row.append(acc)
            rows.append(row)
        return self._assemble(rows, nd)

    def trace(self, a: Any, *, nd: int) -> Any:
        acc = self._e(a, 0, 0, nd)
        for i in range(1, self.N):
            acc = acc + self._e(a, i, i, nd)
        return acc

    def re_trace(self, a: Any, *, nd: int) -> Any:
        return array_namespace(a).real(self.trace(a, nd=nd))

    def re_trace_mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
        xp = array_namespace(a, b)
        # Re tr(a b^dag) = sum_ij Re(a_ij conj(b_ij)) = sum_ij (Re a Re b + Im a Im b)
        p = xp.real(a) * xp.real(b) + xp.imag(a) * xp.imag(b)
        return xp.sum(p, axis=(-nd - 2, -nd - 1))

    def act(self, U: Any, v: Any, *, nd: int) -> Any:
        xp = array_namespace(U, v)
        E, c = self._elements(U, nd), self._components(v, nd)
        out = []
        for i in range(self.N):
            acc = E[i][0] * c[0]
            for j in range(1, self.N):
                acc = acc + E[i][j] * c[j]
            out.append(acc)
        return xp.stack(out, axis=-nd - 1)

    def act_adj(self, U: Any, v: Any, *, nd: int) -> Any:
        xp = array_namespace(U, v)
        E, c = self._elements(U, nd), self._components(v, nd)
        out = []
        for i in range(self.N):
            acc = xp.conj(E[0][i]) * c[0]
            for j in range(1, self.N):
                acc = acc + xp.conj(E[j][i]) * c[j]
            out.append(acc)
        return xp.stack(out, axis=-nd - 1)

    def to_matrix(self, U: Any, *, nd: int) -> Any:
        return U

    def det(self, U: Any, *, nd: int) -> Any:
        """Determinant per element, shape ``(*B, *S)``."""
        xp = array_namespace(U)
        return xp.linalg.det(self._group_last(U, nd))

    # -- exp / log / eigen ---------------------------------------------------------------------
    def exp(self, X: Any, *, nd: int) -> Any:
        """``exp(X)`` of an algebra element: closed forms for N = 2, 3 (Cayley-Hamilton, Morningstar & Peardon,
        hep-lat/0311018), spectral decomposition for N > 3 (``linalg.matrix_exp`` under torch autograd); in
        latticekit/groups/_sun_exp.py.

        ``X`` must be in su(N): anti-Hermitian and *traceless*, as every algebra element the library makes is
        (``from_coords``, ``random_algebra``, ``project_algebra``, ``log``, forces). The trace is not checked (a
        data check costs a reduction and a host synchronisation on every call of the HMC / gradient-flow / flow
        update); for N = 2, 3 a trace part gives a wrong result. Shape and dtype are checked (no data pass).
        Gradients under torch autograd are finite and exact everywhere, also at ``X = 0`` and at degenerate
        spectra.
        """
        self.check_shape(X, nd=nd, name="X")
        self.check_dtype(X, name="X")
        if self.N == 2:
            return self._exp_su2(X, nd)
        if self.N == 3:
            fp = fast_path("sun_exp", X)         # numba on NumPy: one pass per matrix (backends/_numba_sun_exp.py)
            out = fp(X, 3, nd) if fp is not None else None
            return out if out is not None else self._exp_su3(X, nd)
        return exp_spectral(self, X, nd)

    def exp_mul(self, X: Any, W: Any, *, nd: int) -> Any:
        """``exp(X) W``; for SU(3) on NumPy one fused pass (``sun_exp_mul``, backends/_numba_sun_exp.py)."""
        if self.N == 3:
            fp = fast_path("sun_exp_mul", X)
            out = fp(X, W, 3, nd) if fp is not None else None
            if out is not None:
                return out
        return self.mul(self.exp(X, nd=nd), W, nd=nd)

    def _exp_su2(self, X: Any, nd: int) -> Any:
        return exp2(self, X, nd)

    def _exp_su3(self, X: Any, nd: int) -> Any:
        return exp3(self, X, nd)

    def eig(self, U: Any, *, nd: int) -> tuple[Any, Any]:
        """Spectral decomposition ``U = V diag(exp(i phi)) V^dagger`` of unitary ``U``.

        Computed with ``eigh`` of the Hermitian Cayley transform ``i (1 - W)(1 + W)^{-1}``,
        ``W = exp(-i alpha) U`` (the Array API has no general ``eig``); the angles are read off
        ``diag(V^dagger U V)``. Returns ``phi`` of shape ``(*B, N, *S)`` in (-pi, pi] and ``V`` of
        shape ``(*B, N, N, *S)`` (columns are eigenvectors).

        The transform is singular where ``U`` has the eigenvalue ``-exp(i alpha)``; near it ``1 + W`` is
        ill-conditioned (in float32 the solve fails within about 1e-5 of it, which a training run of
        10^6-10^7 matrices meets). So ``alpha`` is chosen per matrix among ``alpha_0 + 2 pi j / (N + 1)``,
        ``j = 0..N``, as the one with the largest ``|det(1 + W)| = prod_k 2 |cos((theta_k - alpha) / 2)|``:
        each eigenvalue is within ``pi / (N + 1)`` of at most one of the ``N + 1`` singular points, so the
        chosen one keeps every eigenvalue at least that far away (``|det(1 + W)| >= (2 sin(pi / (2N + 2)))^N``).
        The eigenvectors do not depend on ``alpha``; the choice is not differentiated.
        """
        self.check_shape(U, nd=nd, name="U")
        self.check_dtype(U, name="U")
        xp = array_namespace(U)
        ct = U.dtype
        Ug = self._group_last(U, nd)
        eye = xp.eye(self.N, dtype=ct, device=_device(U))
        shifts = [_CAYLEY_ALPHA + 2.0 * math.pi * j / (self.N + 1) for j in range(self.N + 1)]
        phases = [complex(math.cos(a), -math.sin(a)) for a in shifts]
        dets = xp.stack([xp.abs(xp.linalg.det(eye + Ug * p)) for p in phases], axis=0)
        best = xp.argmax(dets, axis=0)                                     # (*B, *S)
        ph = xp.zeros(best.shape, dtype=ct, device=_device(U))
        for j, p in enumerate(phases):
            ph = xp.where(best == j, xp.asarray(p, dtype=ct, device=_device(U)), ph)
        W = Ug * xp.expand_dims(xp.expand_dims(ph, axis=-1), axis=-1)
        H = 1j * xp.linalg.solve(eye + W, eye - W)
        H = 0.5 * (H + xp.conj(xp.matrix_transpose(H)))
        _, V = xp.linalg.eigh(H)
        D = xp.sum(xp.conj(V) * xp.matmul(Ug, V), axis=-2)  # diag(V^dag U V)
        phi = xp.atan2(xp.imag(D), xp.real(D))
        return self._group_back(phi, nd, extra=1), self._group_back(V, nd)

    def eigen_angles(self, U: Any, *, nd: int) -> Any:
        """Eigen-angles in (-pi, pi], shape ``(*B, N, *S)`` (those of :meth:`eig`).

        SU(2), in closed form: ``(phi, -phi)`` for ``U = a_0 + i a.sigma``, ``phi = atan2(|a|, a_0)`` in [0, pi]
        with ``a_0 = Re tr U / 2`` and ``|a|`` from the anti-Hermitian part, to full precision near the identity
        (``acos(a_0)`` lost about 1e-8 there); ``U = -1`` gives ``(pi, pi)``.
        """
        self.check_shape(U, nd=nd, name="U")
        self.check_dtype(U, name="U")
        if self.N == 2:
            xp = array_namespace(U)
            A = U - self.adjoint(U, nd=nd)                     # 2 i a.sigma: sum_ij |A_ij|^2 = 8 |a|^2
            a = xp.sqrt(0.125 * xp.sum(xp.real(A) ** 2 + xp.imag(A) ** 2, axis=(-nd - 2, -nd - 1)))
            phi = xp.atan2(a, 0.5 * self.re_trace(U, nd=nd))
            # -phi is -pi only at U = -1 (a = +0, a_0 < 0), where the angle is pi in (-pi, pi]
            return xp.stack([phi, xp.where(phi >= math.pi, phi, -phi)], axis=-nd - 1)
        return self.eig(U, nd=nd)[0]

    def log(self, U: Any, *, nd: int) -> Any:
        """A logarithm of ``U`` in su(N) (traceless anti-Hermitian), with ``exp(log U) = U`` for every ``U``.

        ``V diag(i phi) V^dagger`` with ``U = V diag(exp(i phi)) V^dagger`` (:meth:`eig`). The principal angles
        (in (-pi, pi]) sum to ``2 pi k``, and ``k != 0`` on a set of positive Haar measure (2.4% of SU(3), 5% of
        SU(4)), where the principal logarithm has trace ``2 pi i k`` and is not in su(N). There the ``k`` largest
        angles are lowered by ``2 pi`` (``k > 0``), or the ``|k|`` smallest raised (``k < 0``), one at a time: the
        traceless logarithm of smallest norm with these eigenvectors, some of its angles outside (-pi, pi].
        Elsewhere it is the principal logarithm (``log(exp X) = X`` for ``X`` with eigen-angles in (-pi, pi)),
        bit for bit as before. At a degenerate eigenvalue -1 the result depends on the basis ``eig`` picks in its
        eigenspace; no logarithm is continuous there.
        """
        self.check_shape(U, nd=nd, name="U")
        self.check_dtype(U, name="U")
        xp = array_namespace(U)
        phi, V = self.eig(U, nd=nd)
        Vg = self._group_last(V, nd)
        ph = self._traceless_angles(self._group_last(xp.expand_dims(phi, axis=-nd - 1), nd)[..., :, 0])
        L = xp.matmul(Vg * xp.expand_dims(1j * xp.astype(ph, U.dtype), axis=-2), xp.conj(xp.matrix_transpose(Vg)))
        return self._group_back(L, nd)

    def _traceless_angles(self, ph: Any) -> Any:
        """Angles ``(..., N)`` in (-pi, pi] summing to ``2 pi k`` (det = 1), shifted by multiples of ``2 pi`` to sum
        to 0 (see :meth:`log`); exactly unchanged where ``k = 0``."""
        xp = array_namespace(ph)
        two_pi = 2.0 * math.pi
        k = xp.round(xp.sum(ph, axis=-1) / two_pi)        # sum in (-N pi, N pi]: |k| <= N // 2 steps below
        idx = xp.arange(self.N, device=_device(ph))
        for _ in range(self.N // 2):
            down = (idx == xp.argmax(ph, axis=-1, keepdims=True)) & (k > 0)[..., None]
            up = (idx == xp.argmin(ph, axis=-1, keepdims=True)) & (k < 0)[..., None]
            ph = ph - two_pi * (xp.astype(down, ph.dtype) - xp.astype(up, ph.dtype))   # ph - 0.0 = ph exactly
            k = k - xp.sign(k)
        return ph

    # -- projections ---------------------------------------------------------------------------
    def project(self, M: Any, *, nd: int) -> Any:
        """Polar decomposition ``M (M^dag M)^{-1/2}`` (the unitary matrix closest to M in Frobenius norm),
        then divided by an N-th root of its determinant, ``exp(i phi / N)`` with ``phi = arg det`` in
        ``(-pi + 1e-6, pi + 1e-6]`` (:data:`PROJECT_ROOT_CUT`).

        ``M`` must be complex (TypeError otherwise, as for U1.project: a real input came back in its real dtype
        with the imaginary part of the determinant root dropped); promote real matrices yourself.

        The root jumps by a centre element where ``phi`` crosses the cut. The principal root's cut, the negative
        real axis, is where the determinant of a sum of two SU(3) matrices lies *exactly* (``det(S_1 + S_2) =
        2 + 2 Re tr(S_1^dag S_2)``, negative for 2.5% of Haar pairs): there rounding chose the root, so
        ``project(Omega M)`` and ``Omega project(M)`` differed by a centre element (9 of 4000 such sums), and a
        multiscale SU(3) conditional with equal staple weights gave one field two log q values. Just below the
        axis no sum lands by construction; the projection is left covariant away from a set of measure zero.

        The eigenvalues of ``M^dag M`` are the squared singular values of ``M``; for complex64 input they are
        computed in complex128 and the result cast back. In single precision a smallest singular value below
        ~3e-4 of the largest (a sum of two staples near a singular matrix, which a float32 training run of
        10^6-10^7 links meets) came out as a non-positive eigenvalue, and ``1/sqrt`` returned inf/NaN.

        Squaring ``M`` squares its condition number: ``M R`` is unitary only to about ``eps cond(M)^2`` (2.5e-10 for
        1% of SU(3) Ginibre matrices, which failed :meth:`check`). One Newton-Schulz step ``W (3 - W^dag W) / 2`` (two
        batched products) squares that defect: unitary to ~1e-15 for ``cond(M) <= 1e4``, 1e-11 at 1e5, 1e-7 at 1e6
        (complex128 arithmetic). A second step would reach 1e-14 at 1e6 for another two products (~8% of a call).

        Not checked, by design (a check needs a host synchronisation per call, and the flows call this inside their
        layers): an element of ``M`` with a non-finite entry, or of numerical rank < N (``lam_min(M^dag M) <=
        1e-14 lam_max``, cond(M) >= 1e7, where ``eigh`` no longer determines the polar factor), comes out as a matrix
        of NaN, without an exception (NumPy's ``eigh`` raised on NaN) and, but for infinite entries, without a
        warning; the other elements are unaffected. Check the output where it matters (:meth:`check`; HMC's
        reunitarisation measures the defect anyway).
        """
        self.check_shape(M, nd=nd, name="M")
        self.check_dtype(M, name="M")
        xp = array_namespace(M)
        Mg = self._group_last(M, nd)
        if M.dtype == xp.complex64:
            Mg = xp.astype(Mg, xp.complex128)
        H = xp.matmul(xp.conj(xp.matrix_transpose(Mg)), Mg)
        try:
            lam, V = xp.linalg.eigh(H)                                          # ascending
        except Exception:
            # NumPy and torch (CPU) raise on a non-finite entry (elsewhere NaN comes out, masked below): project such
            # elements as 1, to come out NaN. Only then, so that finite input pays nothing for the check.
            finite = xp.isfinite(xp.sum(Mg, axis=(-2, -1)))
            Mg = xp.where(finite[..., None, None], Mg, xp.eye(self.N, dtype=Mg.dtype, device=_device(M)))
            H = xp.matmul(xp.conj(xp.matrix_transpose(Mg)), Mg)
            lam, V = xp.linalg.eigh(H)
            lam = xp.where(finite[..., None], lam, xp.zeros_like(lam))          # rank 0 below: NaN
        ok = lam[..., 0] > _RANK_TOL * lam[..., -1]                             # False for NaN too
        lam = xp.where(ok[..., None], lam, xp.ones_like(lam))                     # finite garbage, NaN below
        inv_sqrt = xp.astype(1.0 / xp.sqrt(lam), Mg.dtype)
        R = xp.matmul(V * xp.expand_dims(inv_sqrt, axis=-2), xp.conj(xp.matrix_transpose(V)))
        W = xp.matmul(Mg, R)
        # Newton-Schulz: W <- W (3 - W^dag W) / 2, singular values s -> s (3 - s^2) / 2, i.e. 1 + d -> 1 - (3/2) d^2
        # + O(d^3); the unitary factor (so arg det and the root) is unchanged; on unitary input a rounding-level
        # change. The factor 1/2 goes with the root (scale=0.5): det W (3 - W^dag W) has the same phase
        W = xp.matmul(W, 3.0 * xp.eye(self.N, dtype=W.dtype, device=_device(M)) - xp.matmul(
            xp.conj(xp.matrix_transpose(W)), W))
        W = self._fix_det(W, xp, cut=PROJECT_ROOT_CUT, det=self._det_last(W), ok=ok, scale=0.5)
        # back in the field layout as a C-ordered array, not a permuted view: the compiled kernels decline
        # non-contiguous fields and the generic code then rounds differently, so a run reprojected every few
        # trajectories differed (~1e-15, amplified by HMC) from the same run resumed from its saved (C-ordered)
        # state; a reshape through one axis makes a C-ordered copy in every Array API namespace
        W = self._group_back(W if W.dtype == M.dtype else xp.astype(W, M.dtype), nd)
        return xp.reshape(xp.reshape(W, (-1,)), W.shape)

    def project_algebra(self, M: Any, *, nd: int) -> Any:
        """``(M - M^dag)/2 - tr(M - M^dag)/(2N)``: the traceless anti-Hermitian part."""
        A = 0.5 * (M - self.adjoint(M, nd=nd))
        tr = self.trace(A, nd=nd) / self.N
        xp = array_namespace(M)
        return A - xp.expand_dims(xp.expand_dims(tr, axis=-nd - 1), axis=-nd - 1) * self._eye_like(M, nd)

    def normalize(self, U: Any, *, nd: int) -> Any:
        return self.project(U, nd=nd)

    def defect(self, U: Any, *, nd: int) -> Any:
        """``||U^dag U - 1||_F + |det U - 1|``."""
        xp = array_namespace(U)
        if not xp.isdtype(U.dtype, "complex floating"):
            raise TypeError(f"{self.name} links must be complex; got dtype {U.dtype}")
        D = self.adj_mul(U, U, nd=nd) - self._eye_like(U, nd)
        f = xp.sqrt(xp.sum(xp.real(D) ** 2 + xp.imag(D) ** 2, axis=(-nd - 2, -nd - 1)))
        return f + xp.abs(self.det(U, nd=nd) - 1.0)

    # -- algebra -------------------------------------------------------------------------------
    @property
    def algebra_dim(self) -> int:
        return self.N * self.N - 1

    def _pairs(self) -> list[tuple[int, int]]:
        return [(j, k) for j in range(self.N) for k in range(j + 1, self.N)]

    def to_coords(self, X: Any, *, nd: int) -> Any:
        """``omega^a = -2 tr(T_a X)``: off-diagonal pairs give ``2 Im X_jk`` (symmetric generator) and
        ``2 Re X_jk`` (antisymmetric one); diagonal ``omega_l = c_l (sum_{m<l} Im X_mm - l Im X_ll)``."""
        self.check_shape(X, nd=nd, name="X")
        self.check_dtype(X, name="X")
        xp = array_namespace(X)
        out = []
        for j, k in self._pairs():
            x = self._e(X, j, k, nd)
            out += [2.0 * xp.imag(x), 2.0 * xp.real(x)]
        diag = [xp.imag(self._e(X, m, m, nd)) for m in range(self.N)]
        for l in range(1, self.N):
            c = math.sqrt(2.0 / (l * (l + 1)))
            acc = diag[0]
            for m in range(1, l):
                acc = acc + diag[m]
            out.append(c * (acc - l * diag[l]))
        return xp.stack(out, axis=-nd - 1)

    def from_coords(self, omega: Any, *, nd: int) -> Any:
        """``sum_a omega^a T_a`` from real coordinates ``omega`` of shape ``(*B, N^2 - 1, *S)`` (float32 gives
        complex64, float64 complex128); a wrong coordinate count or a non-real dtype is refused (shape and dtype
        only, no data pass)."""
        self._check_coords(omega, nd)
        xp = array_namespace(omega)
        ct = complex_dtype(xp, 32 if omega.dtype == xp.float32 else 64)
        w = [xp.astype(self._v(omega, a, nd), ct) for a in range(self.algebra_dim)]
        zero = xp.zeros_like(w[0])
        ent = [[zero for _ in range(self.N)] for _ in range(self.N)]
        for p, (j, k) in enumerate(self._pairs()):
            ws, wa = w[2 * p], w[2 * p + 1]
            ent[j][k] = 0.5 * wa + 0.5j * ws
            ent[k][j] = -0.5 * wa + 0.5j * ws
        off = 2 * len(self._pairs())
        for m in range(self.N):
            acc = zero
            for l in range(1, self.N):
                c = math.sqrt(2.0 / (l * (l + 1)))
                lam = 1.0 if m < l else (-float(l) if m == l else 0.0)
                if lam != 0.0:
                    acc = acc + (0.5j * c * lam) * w[off + l - 1]
            ent[m][m] = acc
        return self._assemble(ent, nd)

    def _check_coords(self, omega: Any, nd: int, name: str = "omega") -> None:
        shp = tuple(omega.shape)
        if len(shp) < nd + 1 or shp[len(shp) - nd - 1] != self.algebra_dim:
            raise ValueError(f"{name} has shape {shp}; expected (*batch, {self.algebra_dim}, <{nd} lattice axes>): "
                             f"the {self.algebra_dim} algebra coordinates of {self.name}")
        xp = array_namespace(omega)
        if omega.dtype not in (xp.float32, xp.float64):
            raise TypeError(f"{name} has dtype {omega.dtype}; {self.name} algebra coordinates are real float32/float64 "
                            f"arrays")

    def algebra_norm2(self, X: Any, *, nd: int) -> Any:
        # sum_a omega_a^2 = -2 tr X^2 = 2 sum_ij |X_ij|^2
        xp = array_namespace(X)
        return 2.0 * xp.sum(xp.real(X) ** 2 + xp.imag(X) ** 2, axis=(-nd - 2, -nd - 1))

    # -- SU(2) subgroups (Cabibbo-Marinari) ----------------------------------------------------
    def su2_subgroups(self) -> list[tuple[int, int]]:
        """Index pairs ``(i, j)``, ``i < j``, of the N(N-1)/2 SU(2) subgroups (they cover SU(N))."""
        return self._pairs()

    def su2_extract(self, M: Any, i: int, j: int, *, nd: int) -> Any:
        """The 2x2 block of rows/columns ``(i, j)`` of ``M``, shape ``(*B, 2, 2, *S)``, projected onto
        ``R_+ x SU(2)`` (quaternion part ``(w + sigma_2 conj(w) sigma_2) / 2``)."""
        xp = array_namespace(M)
        a, b = self._e(M, i, i, nd), self._e(M, i, j, nd)
        c, d = self._e(M, j, i, nd), self._e(M, j, j, nd)
        # sigma_2 conj(w) sigma_2 = [[conj d, -conj c], [-conj b, conj a]]
        p = 0.5 * (a + xp.conj(d))
        q = 0.5 * (b - xp.conj(c))
        return self._assemble([[p, q], [-xp.conj(q), xp.conj(p)]], nd)

    def su2_embed(self, V: Any, i: int, j: int, *, nd: int) -> Any:
        """The SU(N) element equal to the SU(2) element ``V`` (``(*B, 2, 2, *S)``) in rows/columns
        ``(i, j)`` and to the identity elsewhere."""
        xp = array_namespace(V)
        v00 = self._e(V, 0, 0, nd)
        one, zero = xp.ones_like(v00), xp.zeros_like(v00)
        ent = [[one if r == s else zero for s in range(self.N)] for r in range(self.N)]
        ent[i][i], ent[i][j] = v00, self._e(V, 0, 1, nd)
        ent[j][i], ent[j][j] = self._e(V, 1, 0, nd), self._e(V, 1, 1, nd)
        return self._assemble(ent, nd)


def _check_n(N: Any) -> int:
    if isinstance(N, bool) or not isinstance(N, numbers.Integral):   # 3.0, "3", True are refused
        raise TypeError(f"N={N!r}: SU(N) needs an integer N >= 2, got {type(N).__name__}")
    if N < 2:
        raise ValueError(f"N={N!r}: SU(N) needs an integer N >= 2")
    return int(N)


def SU(N: int) -> SUGroup:
    """The group SU(N) (one shared object per N).

    Examples
    --------
    >>> SU(3).algebra_dim
    8
    >>> SU(3) is SU(3)
    True
    """
    return _su(_check_n(N))


@lru_cache(maxsize=None)
def _su(N: int) -> SUGroup:
    return SUGroup(N)
