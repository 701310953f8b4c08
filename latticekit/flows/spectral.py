"""Conjugation-equivariant maps of SU(N) matrices from flows on the canonical cell (Boyda et al. 2021).

Boyda, Kanwar, Racaniere, Rezende, Albergo, Cranmer, Hackett & Shanahan, *Sampling using SU(N) gauge
equivariant flows*, PRD 103, 074504 (2021), arXiv:2008.05456.

A map ``h: SU(N) -> SU(N)`` with ``h(X W X^dag) = X h(W) X^dag`` for all ``X`` acts only on the
eigenvalues: ``W = V diag(exp(i theta)) V^dag -> h(W) = V diag(exp(i theta')) V^dag``, with
``theta -> theta'`` equivariant under permutations of the eigenvalues (the Weyl group S_N) and
keeping ``sum theta = 0 mod 2 pi``. As in the paper we build it on the **canonical cell**, the
fundamental domain of the Weyl group (and of the 2 pi shifts) on the maximal torus, so that the
permutation symmetry holds by construction (the map is defined on conjugacy classes):

1. Canonical angles. Sort the eigen-angles in descending order and choose the unique lift with
   ``theta_1 >= theta_2 >= ... >= theta_N >= theta_1 - 2 pi`` and ``sum theta = 0`` exactly
   (:func:`su_canonical_angles`). The gaps ``g_k = theta_k - theta_{k+1}`` (``k < N``) and
   ``g_N = 2 pi - sum_{k<N} g_k`` are ``>= 0`` and sum to ``2 pi``: the canonical cell is the simplex
   ``{g >= 0, sum g = 2 pi}`` of dimension N - 1. SU(2): ``theta = (t, -t)``, ``t in [0, pi]``,
   ``g_1 = 2 t`` (the interval of the paper's SU(2) spline). SU(3): a triangle.
2. Stick breaking to the unit cube: ``u_k = g_k / R_k`` with ``R_1 = 2 pi``, ``R_k = 2 pi -
   sum_{j<k} g_j``, ``k = 1..N-1``; ``u in [0, 1]^{N-1}``.
3. Autoregressive monotone rational-quadratic splines on ``[0, 1]`` with fixed end points,
   ``u'_k = s_k(u_k | u_{<k}, c)`` (Durkan et al. 2019), whose parameters come from the context
   ``c`` (gauge-invariant features) and the earlier coordinates. ``s_k(0) = 0`` and ``s_k(1) = 1``,
   so every face of the cell (coinciding eigenvalues, ``g_k = 0``) is mapped to itself: degenerate
   eigenvalues stay degenerate and ``h`` is well defined and continuous on all of SU(N).
4. Back: ``g'_k = u'_k R'_k``, ``theta'_1 = (1/N) sum_{j<N} (N - j) g'_j``, ``theta'_k = theta'_1 -
   sum_{j<k} g'_j``. The new angle ``theta'_k`` goes to the eigenvector of ``theta_k``.

Log-determinant with respect to Haar measure (derivation)
---------------------------------------------------------
Weyl's integration formula: in coordinates (eigen-angles, flag) ``W = V diag(e^{i theta}) V^dag``
with ``V U(1)^N in U(N)/T`` (the flag manifold), the normalised Haar measure is

    d mu(W) = (1/N!) J(theta) d theta_1 ... d theta_{N-1} / (2 pi)^{N-1}  x  d nu(V),
    J(theta) = prod_{j<k} |e^{i theta_j} - e^{i theta_k}|^2 = prod_{j<k} 4 sin^2((theta_j - theta_k)/2),

``nu`` the invariant probability measure of the flag manifold. The spectral map is
``F(theta, V) = (theta'(theta), V)``: the flag coordinate is untouched (the eigenvectors are kept and
the ordering of the canonical cell is preserved), so the Jacobian matrix of ``F`` in these charts
is block triangular with the identity on the flag block. The density ratio of the push-forward is
therefore

    log |det dF|_Haar = log |det d theta'/d theta| + log J(theta') - log J(theta).

The coordinates ``(theta_1..theta_{N-1}) <-> (g_1..g_{N-1})`` are related linearly (constant
Jacobian, cancelling between ``theta`` and ``theta'``), and stick breaking has the triangular
Jacobian ``d g_k / d u_k = R_k``, so

    log |det d theta'/d theta| = sum_k log s_k'(u_k) + sum_{k=2}^{N-1} (log R'_k - log R_k).

For SU(2) this is ``log s'(u) + log sin^2 t' - log sin^2 t`` with ``t = pi u``: the class angle
has the Haar density ``(2/pi) sin^2 t`` on ``[0, pi]``. At coinciding eigenvalues ``J = 0`` (a set of
Haar measure zero, e.g. the identity matrix); the log-det is not finite there.

Examples
--------
>>> import math, torch
>>> phi = torch.tensor([[2.5, -1.0, -1.5 + 2 * math.pi]], dtype=torch.float64)   # sum = 2 pi
>>> theta, idx = su_canonical_angles(phi)
>>> [round(v, 6) for v in theta[0].tolist()], idx[0].tolist(), round(float(theta.sum()), 12)
([2.5, -1.0, -1.5], [0, 1, 2], 0.0)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from latticekit.groups import SUGroup

from .base import FlowLayer, sum_sites
from .nets import mlp
from .splines import DEFAULT_MIN_BIN, DEFAULT_MIN_DERIVATIVE, rq_spline_knots, rq_spline_on_knots

__all__ = [
    "reunitarize",
    "SUSpectralKernel",
    "canonical_cell_flow",
    "su_canonical_angles",
    "weyl_log_density",
]

_TWO_PI = 2.0 * math.pi


def su_canonical_angles(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical-cell representative of SU(N) eigen-angles.

    Parameters
    ----------
    phi : Tensor, shape ``(..., N)``
        Eigen-angles with ``sum phi = 0 (mod 2 pi)``, each in ``(-pi, pi]`` (as from
        ``SU(N).eig``; any lift with spread below ``2 pi`` works).

    Returns
    -------
    theta : Tensor, shape ``(..., N)``
        Descending, ``theta_1 - theta_N <= 2 pi``, ``sum theta = 0`` (up to rounding of the input),
        ``theta_k = phi[index_k] (mod 2 pi)``.
    index : Tensor of int64, shape ``(..., N)``
        Which input angle (eigenvector) each canonical angle belongs to.

    Examples
    --------
    >>> import math, torch
    >>> th, idx = su_canonical_angles(torch.tensor([0.3, 3.0, -3.3 + 2 * math.pi], dtype=torch.float64))
    >>> idx.tolist(), [round(v, 6) for v in th.tolist()]
    ([2, 0, 1], [2.983185, 0.3, -3.283185])
    """
    N = phi.shape[-1]
    if N < 2:
        raise ValueError(f"phi has shape {tuple(phi.shape)}; expected N >= 2 eigen-angles on the last axis")
    srt, idx = torch.sort(phi, dim=-1, descending=True)
    m = torch.round(srt.sum(dim=-1) / _TWO_PI).to(torch.int64).clamp(-N, N)
    ext = torch.cat([srt + _TWO_PI, srt, srt - _TWO_PI], dim=-1)
    ext_idx = torch.cat([idx, idx, idx], dim=-1)
    pos = (N + m)[..., None] + torch.arange(N, device=phi.device)
    return torch.gather(ext, -1, pos), torch.gather(ext_idx, -1, pos)


def weyl_log_density(theta: torch.Tensor) -> torch.Tensor:
    """``log J(theta) = sum_{j<k} log |e^{i theta_j} - e^{i theta_k}|^2`` over the last axis.

    The Haar density of the eigen-angles (Weyl integration formula, module docstring).

    Examples
    --------
    >>> import math, torch
    >>> t = torch.tensor([math.pi / 2, -math.pi / 2], dtype=torch.float64)   # |i - (-i)|^2 = 4
    >>> round(float(weyl_log_density(t).exp()), 12)
    4.0
    """
    N = theta.shape[-1]
    j, k = torch.triu_indices(N, N, offset=1, device=theta.device)
    d = theta[..., j] - theta[..., k]
    return torch.sum(2.0 * torch.log(2.0 * torch.abs(torch.sin(0.5 * d))), dim=-1)


def canonical_cell_flow(theta: torch.Tensor, param_fn: Callable[[int, torch.Tensor], torch.Tensor], *,
                        inverse: bool = False, min_bin: float = DEFAULT_MIN_BIN,
                        min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive spline flow on the canonical cell of SU(N) (module docstring, steps 2-4).

    Parameters
    ----------
    theta : Tensor, shape ``(..., N)``
        Canonical angles (:func:`su_canonical_angles`).
    param_fn : callable
        ``param_fn(k, u_prev) -> raw`` for ``k = 0..N-2``; ``u_prev`` has shape ``(..., k)`` and holds
        the stick-breaking coordinates of the *forward input* (so the inverse is sequential and
        exact); ``raw`` has shape ``(..., 3 K + 1)``: ``K`` widths, ``K`` heights, ``K + 1`` knot
        derivatives of a monotone RQ spline on ``[0, 1]``. All-zero ``raw`` is the identity.
    inverse : bool
        Apply the inverse map.

    Returns
    -------
    theta_new : Tensor, shape ``(..., N)``
        Canonical angles of the image.
    logdet : Tensor, shape ``(...)``
        ``log |det|`` of the induced map of SU(N) w.r.t. Haar measure (including the Weyl factor).

    Examples
    --------
    >>> import torch
    >>> th = torch.tensor([[1.0, 0.2, -1.2]], dtype=torch.float64)
    >>> zero = lambda k, u: torch.zeros(u.shape[:-1] + (7,), dtype=u.dtype)
    >>> out, ld = canonical_cell_flow(th, zero)
    >>> bool(torch.allclose(out, th)), bool(torch.allclose(ld, torch.zeros(1, dtype=torch.float64)))
    (True, True)
    """
    N = theta.shape[-1]
    g_in = theta[..., :-1] - theta[..., 1:]
    tiny = torch.finfo(theta.dtype).tiny
    r_in = torch.full_like(theta[..., 0], _TWO_PI)
    r_out = torch.full_like(theta[..., 0], _TWO_PI)
    x_side: list[torch.Tensor] = []
    g_out: list[torch.Tensor] = []
    ld = torch.zeros_like(theta[..., 0])
    for k in range(N - 1):
        u_in = (g_in[..., k] / r_in.clamp_min(tiny)).clamp(0.0, 1.0)
        u_prev = torch.stack(x_side, dim=-1) if x_side else theta[..., :0]
        raw = param_fn(k, u_prev)
        K3 = raw.shape[-1]
        if (K3 - 1) % 3 or K3 < 4:
            raise ValueError(f"param_fn returned {K3} parameters; expected 3 K + 1 with K >= 1 bins")
        K = (K3 - 1) // 3
        xk, yk, dk = rq_spline_knots(raw[..., :K], raw[..., K:2 * K], raw[..., 2 * K:], left=0.0, right=1.0,
                                     min_bin=min_bin, min_derivative=min_derivative)
        u_out, ldk = rq_spline_on_knots(u_in, xk, yk, dk, inverse=inverse)
        x_side.append(u_out if inverse else u_in)
        gk = u_out * r_out
        g_out.append(gk)
        ld = ld + ldk
        if k > 0:
            ld = ld + torch.log(r_out.clamp_min(tiny)) - torch.log(r_in.clamp_min(tiny))
        r_in = r_in - g_in[..., k]
        r_out = r_out - gk
    g = torch.stack(g_out, dim=-1)
    w = torch.arange(N - 1, 0, -1, dtype=theta.dtype, device=theta.device)     # N - j, j = 1..N-1
    first = torch.sum(w * g, dim=-1) / N
    cum = torch.cumsum(g, dim=-1)
    theta_new = torch.cat([first[..., None], first[..., None] - cum], dim=-1)
    ld = ld + weyl_log_density(theta_new) - weyl_log_density(theta)
    return theta_new, ld


def reunitarize(M: torch.Tensor, N: int, nd: int = 1) -> torch.Tensor:
    """Projection of almost-SU(N) matrices ``(..., N, N, *L)`` (``nd`` trailing site axes) onto SU(N).

    The identity on SU(N) (up to rounding) and smooth near it, so it changes neither the map on the
    group nor its Jacobian in algebra directions; it only stops rounding errors of ``U' = delta U``
    from compounding through deep stacks (each update multiplies the defects of the ``2 + 2`` links of
    ``P`` and of ``U``). SU(2): ``[[a, b], [-b*, a*]]`` with ``a = (M_00 + M_11*)/2``,
    ``b = (M_01 - M_10*)/2``, normalised. N >= 3: Gram-Schmidt on the rows, then division by the
    principal N-th root of the determinant. No eigen-decomposition (whose gradient is singular at the
    degenerate ``M^dag M = 1``).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> G = lk.SU(3)
    >>> U = G.random(lk.backends.rng(0, backend="torch"), (), (2, 2))
    >>> bool(torch.allclose(reunitarize(U, 3, nd=2), U))
    True
    >>> M = U * (1 + 1e-6 * torch.randn(U.shape, dtype=torch.float64))
    >>> float(G.defect(reunitarize(M, 3, nd=2), nd=2).max()) < 1e-13
    True
    """
    if nd != 1:
        lead = tuple(M.shape[:M.ndim - nd])
        return reunitarize(M.reshape(lead + (-1,)), N, 1).reshape(M.shape)
    if N == 2:
        a = 0.5 * (M[..., 0, 0, :] + M[..., 1, 1, :].conj())
        b = 0.5 * (M[..., 0, 1, :] - M[..., 1, 0, :].conj())
        n = torch.sqrt(a.real ** 2 + a.imag ** 2 + b.real ** 2 + b.imag ** 2).to(M.dtype)
        a, b = a / n, b / n
        return torch.stack([torch.stack([a, b], dim=-2), torch.stack([-b.conj(), a.conj()], dim=-2)], dim=-3)
    rows: list[torch.Tensor] = []
    for i in range(N):
        r = M[..., i, :, :]                                               # (..., N, n)
        for q in rows:
            r = r - torch.sum(q.conj() * r, dim=-2, keepdim=True) * q
        rows.append(r / torch.sqrt(torch.sum(r.real ** 2 + r.imag ** 2, dim=-2, keepdim=True)).to(r.dtype))
    Q = torch.stack(rows, dim=-3)
    phase = torch.angle(torch.linalg.det(torch.movedim(Q, -1, -3))) / N     # (..., n)
    return Q * torch.polar(torch.ones_like(phase), -phase).to(Q.dtype)[..., None, None, :]


class SUSpectralKernel(FlowLayer):
    """Conjugation-equivariant, context-conditioned map ``h(W | c)`` of SU(N) matrices.

    ``h(X W X^dag | c) = X h(W | c) X^dag``; implemented by :func:`canonical_cell_flow` on the
    eigen-angles with the eigenvectors kept (module docstring). Spline parameters of coordinate ``k``
    come from a per-site MLP (``heads[k]``) of the features ``c`` and of ``2 u_{<k} - 1``; with no
    features and ``k = 0`` they are a learnable vector.

    As a flow layer it acts on fields of matrices ``x`` of shape ``(*A, N, N, *S)`` with ``nd``
    trailing site axes; ``context`` (optional) holds the features ``(*A, features, *S)``;
    ``logdet`` is summed over every axis after the first (one value per batch element).

    Parameters
    ----------
    group : SUGroup
        ``SU(N)``, N >= 2.
    bins : int
        RQ spline bins ``K`` per coordinate.
    features : int
        Number of conditioning features per matrix.
    hidden : sequence of int
        Hidden widths of the per-site MLPs.
    act : str
        Activation.
    zero_init : bool
        Start as the identity map.
    nd : int
        Site axes of the fields handled by :meth:`forward` / :meth:`inverse`.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> G = lk.SU(3)
    >>> h = SUSpectralKernel(G, bins=4).to(torch.float64)
    >>> W = G.random(lk.backends.rng(0, backend="torch"), (2,))
    >>> X = G.random(lk.backends.rng(1, backend="torch"), (2,))
    >>> a, _ = h(G.mul(X, G.mul_adj(W, X, nd=0), nd=0))
    >>> b = G.mul(X, G.mul_adj(h(W)[0], X, nd=0), nd=0)
    >>> bool(torch.allclose(a, b))
    True
    """

    def __init__(self, group: SUGroup, bins: int = 8, features: int = 0, hidden: Sequence[int] = (16,),
                 act: str = "leaky_relu", zero_init: bool = False, nd: int = 0) -> None:
        super().__init__()
        if not isinstance(group, SUGroup):
            raise TypeError(f"group={group!r}: expected SU(N)")
        if bins < 1:
            raise ValueError(f"bins={bins}: expected at least one bin")
        if features < 0:
            raise ValueError(f"features={features}: expected >= 0")
        if nd < 0:
            raise ValueError(f"nd={nd}: expected the number of site axes >= 0")
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden={tuple(hidden)}: expected positive widths")
        self.group = group
        self.N = group.N
        self.bins = int(bins)
        self.features = int(features)
        self.nd = int(nd)
        n_out = 3 * self.bins + 1
        heads: list[nn.Module] = []
        self.bias_only = features == 0
        for k in range(self.N - 1):
            n_in = self.features + k
            if n_in == 0:
                heads.append(nn.Identity())
                continue
            heads.append(mlp(n_in, n_out, hidden, act, zero_init))
        self.heads = nn.ModuleList(heads)
        # raw parameters of the first coordinate when there are no features
        self.raw0 = nn.Parameter(torch.zeros(n_out) if (zero_init or self.features) else 0.1 * torch.randn(n_out))

    def extra_repr(self) -> str:
        return f"group={self.group.name}, bins={self.bins}, features={self.features}, nd={self.nd}"

    def _param_fn(self, feats: torch.Tensor | None, like: torch.Tensor) -> Callable[[int, torch.Tensor], torch.Tensor]:
        def fn(k: int, u_prev: torch.Tensor) -> torch.Tensor:
            parts = [] if feats is None else [feats.to(like.dtype)]
            if k:
                parts.append(2.0 * u_prev - 1.0)
            if not parts:
                return self.raw0.to(like.dtype).expand(like.shape + self.raw0.shape)
            return self.heads[k](torch.cat(parts, dim=-1))
        return fn

    def transform(self, W: torch.Tensor, features: torch.Tensor | None = None, *, nd: int, inverse: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(h(W), h(W) W^dag, log|det dh|_Haar)`` per matrix (``inverse``: ``h^{-1}``).

        Parameters
        ----------
        W : Tensor, shape ``(*A, N, N, *S)``
            SU(N) matrices, ``nd = len(S)`` site axes.
        features : Tensor, shape ``(*A, features, *S)``, optional
            Required when the kernel was built with ``features > 0``.
        nd : int
        inverse : bool

        Returns
        -------
        W_new, delta : Tensor, shape ``(*A, N, N, *S)``
            ``delta = W_new W^dag`` (push it onto a link: ``U' = delta U``).
        logdet : Tensor, shape ``(*A, *S)``

        Examples
        --------
        >>> import torch, latticekit as lk
        >>> h = SUSpectralKernel(lk.SU(2), bins=3, zero_init=True).to(torch.float64)
        >>> W = lk.SU(2).random(lk.backends.rng(0, backend="torch"), (4,))
        >>> Wn, d, ld = h.transform(W, nd=0)
        >>> bool(torch.allclose(Wn, W)), bool(torch.allclose(ld, torch.zeros(4, dtype=torch.float64)))
        (True, True)
        """
        G, N = self.group, self.N
        G.check_shape(W, nd=nd, name="W")
        if not W.is_complex():
            raise TypeError(f"W: SU({N}) matrices must be complex; got dtype {W.dtype}")
        site_shape = tuple(W.shape[W.ndim - nd:]) if nd else ()
        lead = tuple(W.shape[: W.ndim - nd - 2])
        feats = None
        if self.features:
            want = lead + (self.features,) + site_shape
            if features is None or tuple(features.shape) != want:
                got = None if features is None else tuple(features.shape)
                raise ValueError(f"features has shape {got}; expected {want}")
            feats = torch.movedim(features, -nd - 1, -1)
        elif features is not None:
            raise ValueError("features: this kernel was built with features=0 and takes no features")
        if N == 2:
            # closed form: W = cos t + i sin t (n.sigma), eigen-angles +-t with t in [0, pi]; canonical
            # already. t = atan2(sin t, cos t) with sin t = ||W - cos t||_F / sqrt(2) is well conditioned
            # everywhere (arccos(Re tr W / 2) loses half the digits near t = 0 and pi, which showed up as
            # 1e-2 round-trip errors in float32).
            c = 0.5 * G.re_trace(W, nd=nd)
            eye = torch.eye(N, dtype=W.dtype, device=W.device).reshape((N, N) + (1,) * nd)

            def bc(a: torch.Tensor) -> torch.Tensor:
                a = a.to(W.dtype)
                for _ in range(2):
                    a = a.unsqueeze(-nd - 1)
                return a

            A = W - bc(c) * eye
            s = torch.sqrt(0.5 * torch.sum(A.real ** 2 + A.imag ** 2, dim=(-nd - 2, -nd - 1)))
            t = torch.atan2(s, c)
            theta = torch.stack([t, -t], dim=-1)
            fn = self._param_fn(feats, t)
            theta_new, ld = canonical_cell_flow(theta, fn, inverse=inverse)
            tn = theta_new[..., 0]
            # sin(tn)/s is 0/0 at W = +-1 (s = 0, A = 0: the end points stay fixed, tn = t in {0, pi}); the product
            # with A is 0 there, so any finite ratio gives W_new = W (NaN links on a cold field before; user probe).
            # Double where: the unused branch divides by 1, so no NaN reaches the gradient either.
            pos = s > 0
            ratio = torch.where(pos, torch.sin(tn) / torch.where(pos, s, torch.ones_like(s)), torch.zeros_like(s))
            W_new = bc(torch.cos(tn)) * eye + bc(ratio) * A
            delta = G.mul_adj(W_new, W, nd=nd)
            return W_new, delta, ld
        phi, V = G.eig(W, nd=nd)
        phi = torch.movedim(phi, -nd - 1, -1)                                  # (*A, *S, N)
        theta, idx = su_canonical_angles(phi)
        fn = self._param_fn(feats, theta[..., 0])
        theta_new, ld = canonical_cell_flow(theta, fn, inverse=inverse)
        dphi = torch.zeros_like(phi).scatter(-1, idx, theta_new - theta)       # change per eigenvector
        Vg = torch.movedim(V, (-nd - 2, -nd - 1), (-2, -1))
        ph = torch.polar(torch.ones_like(dphi), dphi).to(W.dtype)
        delta = (Vg * ph.unsqueeze(-2)) @ Vg.conj().transpose(-2, -1)
        delta = torch.movedim(delta, (-2, -1), (-nd - 2, -nd - 1))
        return G.mul(delta, W, nd=nd), delta, ld

    def _flow(self, x: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim < self.nd + 3:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (batch, ..., {self.N}, {self.N}, "
                             f"<{self.nd} site axes>) with a batch axis")
        y, _, ld = self.transform(x, context, nd=self.nd, inverse=inverse)
        return y, sum_sites(ld, ld.ndim - 1)

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._flow(x, context, inverse=False)

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._flow(y, context, inverse=True)
