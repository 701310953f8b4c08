"""Conditional targets ``p(phi | U)`` of pseudofermion monomials (eqs. 12, 19, 35-38 of arXiv:2207.08945).

A :class:`PFTarget` is one monomial of the Nf = 2 pseudofermion action with ``M = D D^dag`` (or the
even/odd Schur complement ``D_sc D_sc^dag``, eq. 35) and Hasenbusch shifts ``mu_lo < mu_hi``
(:class:`latticekit.actions.hasenbusch.HasenbuschMonomial`, the code HMC uses)::

    S(U, phi) = phi^dag K phi,   K = (M + mu_lo)^{-1}                   (plain, eqs. 12, 35)
                                 K = (M + mu_hi)(M + mu_lo)^{-1}        (ratio, eq. 37)
    p(phi | U) = exp(-S) det K / pi^n                                   (n complex components)

so ``E_{q(phi|U)}[exp(-S)/(pi^n q(phi|U))] = 1/det K``: ``det(M + mu_lo)`` or
``det(M + mu_lo)/det(M + mu_hi)``; the product over the monomials of eq. (38) is ``det(M + mu_0)``.

Differentiable action. Training needs ``S`` and its gradients with respect to ``phi`` and (through
``M``) the gauge field. With ``X = (M + mu_lo)^{-1} phi`` from CG, *detached*::

    S_sur = 2 Re <X, phi> - <X, (M + mu_lo) X>      (value: phi^dag (M + mu_lo)^{-1} phi)
    d S_sur = 2 Re <X, d phi> - X^dag dM X          (= d [phi^dag (M+mu_lo)^{-1} phi], since (M+mu_lo) X = phi)

i.e. the value and both gradients are exact (up to the CG residual, which enters the value only at
second order), with no backpropagation through the CG iterations; ``X^dag M X = |D^dag X|^2``. The
ratio monomial is ``|phi|^2 + (mu_hi - mu_lo) phi^dag (M + mu_lo)^{-1} phi``.

The log-determinant gradient of the *marginal* target (``-log det(M + mu)`` in its action) is
estimated stochastically (:meth:`PFTarget.logdet_gradient_surrogate`) with complex Gaussian noise ``eta``
(``E[eta eta^dag] = 1``), in one of two unbiased forms (``ESTIMATORS``):

* ``"normal"``, Albergo et al. 2021 (arXiv:2106.05934, App. C):
  ``d log det(M + mu) = tr((M + mu)^{-1} dM) = E_eta[Re eta^dag (M + mu)^{-1} dM eta]``;
* ``"dirac"`` (the default): with ``dM = dD D^dag + D dD^dag`` and ``(M + mu)^{-1}`` Hermitian,
  ``tr((M + mu)^{-1} dM) = 2 Re tr(D^dag (M + mu)^{-1} dD)``, so
  ``d log det(M + mu) = E_eta[2 Re eta^dag D^dag (M + mu)^{-1} dD eta]``: one CG solve as before (on
  ``D eta``), but the matrix whose trace is estimated is ``~ D^{-1} dD`` instead of ``(M + mu)^{-1} dM``, which
  contains ``D^{-dag} (D^{-1} dD) D^dag``, a similarity transformation by the ill-conditioned ``D``. The
  variance of a directional derivative is the squared Frobenius norm of that matrix's Hermitian part: on
  quenched 8x8 Schwinger fields at kappa = 0.265 with even/odd it is 0.14 times that of ``"normal"`` on
  average, 0.81 times on the 2^4 SU(3) example at kappa = 0.1 (``benchmarks/pf_logdet_estimators.py``).

On small lattices :meth:`PFTarget.log_det_from_matrix` gives the exact, differentiable ``log(1/det K)`` from
the dense ``M`` (Cholesky factors).

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0, backend="torch")
>>> U = lk.U1.random(rng, (2, 2), lat.shape)
>>> t = PFTarget(lk.U1, lat, kappa=0.2, even_odd=True, mu_lo=0.0, mu_hi=0.1)
>>> phi = t.sample(U, rng)
>>> t.action(U, phi).shape, t.ndof
(torch.Size([2]), 16)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from latticekit.actions.dirac import WilsonDirac, spin_dim
from latticekit.actions.dirac_dense import dirac_dense_matrix
from latticekit.actions.even_odd import EvenOddDirac
from latticekit.actions.hasenbusch import HasenbuschMonomial, hasenbusch_monomials
from latticekit.actions.pseudofermion import solve_normal
from latticekit.backends import lu_linalg
from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.linalg.cg import ConvergenceError

from ._checks import check_int, check_real

__all__ = ["ESTIMATORS", "PFTarget", "PseudofermionSolveError", "dense_normal_matrix", "exact_log_det",
           "monomial_targets", "normal_eigenvalues"]

#: forms of the stochastic log-det gradient (module docstring)
ESTIMATORS = ("dirac", "normal")


#: single precision: a CG solve that stalls above its tolerance is accepted up to this true relative residual
#: (PFTarget._solve); float32 cannot resolve ~1e-7 times the condition number of D D^dag
SINGLE_ACCEPT = 1e-3

class PseudofermionSolveError(ConvergenceError):
    """A CG solve of a pseudofermion monomial did not converge (kappa too close to critical, or a
    near-singular gauge field)."""


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Re <a, b>`` per batch element."""
    return (a.real * b.real + a.imag * b.imag).flatten(1).sum(1)


def normal_eigenvalues(op: Any) -> torch.Tensor:
    """Eigenvalues of ``M = D D^dag`` (``D_sc D_sc^dag`` for even/odd) by a dense matrix, ``(B, n)``.

    For small lattices only (the dense matrix has ``n^2`` entries, ``n = op.ndof``).
    """
    with torch.no_grad():  # the squared singular values of D (ascending): accurate also for the small eigenvalues
        s = torch.linalg.svdvals(dirac_dense_matrix(op))
        return (s * s).flip(-1)


def exact_log_det(targets: Sequence["PFTarget"], op: Any) -> torch.Tensor:
    """``sum_i log(1/det K_i)`` of monomials that share the operator ``op``, by dense linear algebra, ``(B,)``,
    without gradient (small lattices).

    Each monomial needs ``log det(M + mu)`` at its ``mu_lo`` (and minus that at ``mu_hi``), ``M = A A^dag`` with
    ``A`` the dense ``D`` (``D_sc`` for even/odd). At ``mu = 0`` it is ``2 log|det A|`` from the LU factorisation
    of ``A`` (backward stable, no squared condition number); at ``mu > 0`` ``2 sum log L_ii`` with ``L`` the
    Cholesky factor of ``M + mu`` (well conditioned by the shift; the value of the dense training gradient,
    :meth:`PFTarget.log_det_from_matrix`). Both are several times cheaper than the singular values of ``A``
    (64 matrices of n = 192 on one core: LU 0.07 s, product and Cholesky 0.17 s, singular values 0.37 s, which
    were a third of the 2^4 QCD marginal training step). Should a shifted matrix not factorise (``mu`` below the
    rounding of a near-singular ``M``), every term comes from the eigenvalues of ``M`` (:func:`normal_eigenvalues`).
    """
    with torch.no_grad():
        A = dirac_dense_matrix(op)
        memo: dict[float, torch.Tensor] = {}
        M = None

        def log_det_shifted(mu: float) -> torch.Tensor:
            nonlocal M
            if mu not in memo:
                if mu == 0:
                    memo[mu] = 2.0 * lu_linalg("slogdet", A)[1]
                else:
                    if M is None:
                        M = A @ A.conj().transpose(-1, -2)
                    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
                    L = torch.linalg.cholesky(M + mu * eye)
                    memo[mu] = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)
            return memo[mu]

        try:
            return sum(log_det_shifted(t.mu_lo) - (log_det_shifted(t.mu_hi) if t.mu_hi is not None else 0.0)
                       for t in targets)
        except torch.linalg.LinAlgError:
            lam = normal_eigenvalues(op)
            return sum(t.log_det_from_eigenvalues(lam) for t in targets)


def dense_normal_matrix(op: Any) -> torch.Tensor:
    """The dense ``M = D D^dag`` (``D_sc D_sc^dag`` for even/odd) of ``op``, ``(B, n, n)``, differentiable in the
    gauge field (small lattices only).

    Built as ``A A^dag`` from the dense ``A`` of ``D`` (``D_sc``), assembled from the blocks of the hopping term
    (:func:`latticekit.actions.dirac_dense_matrix`), and one batched matrix product; the same matrix to rounding
    as applying ``M`` to every unit vector (:func:`latticekit.linalg.dense_matrix`), at a fraction of the cost
    forward and backward (``benchmarks/dense_dirac.py``).
    """
    A = dirac_dense_matrix(op)
    return A @ A.conj().transpose(-1, -2)


class _HPDLogDet(torch.autograd.Function):
    """``log det A`` of Hermitian positive definite ``A`` (``(B, n, n)``) from its Cholesky factor ``L``, with the
    gradient ``A^{-1}`` (``d log det A = tr(A^{-1} dA)``; torch's convention for a real function of a complex
    matrix gives ``A^{-dag} = A^{-1}``) from ``cholesky_inverse(L)``: one LAPACK call instead of the generic
    Cholesky backward (two triangular solves and their products), 5x cheaper for ``n = 192``. The same gradient
    to rounding (tests/flows/pseudofermion/test_targets.py). First order only."""

    @staticmethod
    def forward(ctx: Any, A: torch.Tensor) -> torch.Tensor:
        L = torch.linalg.cholesky(A)
        ctx.save_for_backward(L)
        return 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).real).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        (L,) = ctx.saved_tensors
        return g[..., None, None] * torch.cholesky_inverse(L)


class PFTarget:
    """One pseudofermion monomial (module docstring).

    Parameters
    ----------
    group, lattice
        Gauge group and 2D/4D lattice (``L_0 >= 2``; even extents for even/odd).
    kappa : float
        Wilson hopping parameter.
    even_odd : bool
        Even/odd preconditioned (eq. 35): ``M = D_sc D_sc^dag`` on the even sites.
    mu_lo, mu_hi : float
        Hasenbusch shifts (``mu_hi`` None: the plain monomial ``(M + mu_lo)^{-1}``). A training regulator
        ``mu_0`` (Sec. IV.A) is added to both by :func:`monomial_targets`.
    tol, maxiter : float, int
        CG residual and iteration limit.
    """

    def __init__(self, group: Group, lattice: Lattice, kappa: float, *, even_odd: bool = False, mu_lo: float = 0.0,
                 mu_hi: float | None = None, tol: float = 1e-10, maxiter: int = 2000, antiperiodic: bool = True) -> None:
        self.monomial = HasenbuschMonomial(mu_lo, mu_hi)
        if not isinstance(lattice, Lattice) or lattice.nd not in (2, 4):
            raise ValueError(f"lattice={lattice!r}: expected a 2D or 4D latticekit.Lattice (Wilson fermions)")
        if even_odd and any(L % 2 for L in lattice.shape):
            raise ValueError(f"even_odd: even/odd targets need even extents, got {list(lattice.shape)}")
        if not 0 < check_real(kappa, "kappa") <= 1:
            raise ValueError(f"kappa={kappa!r}: expected 0 < kappa <= 1")
        # tol >= 1 accepts the zero start vector (tol=inf gave S = 0, tol=1 a wrong action; user probe), as the
        # config's action.cg_tol < 1 says
        if not 0 < check_real(tol, "tol") < 1:
            raise ValueError(f"tol={tol!r}: expected a CG residual 0 < tol < 1")
        self.group, self.lattice, self.kappa = group, lattice, float(kappa)
        self.even_odd, self.antiperiodic = bool(even_odd), bool(antiperiodic)
        self.tol, self.maxiter = float(tol), check_int(maxiter, "maxiter", 1)
        self.ns, self.nc = spin_dim(lattice.nd), group.N
        self.field_shape = (self.ns, self.nc) + tuple(lattice.shape)
        self.ndof = self.ns * self.nc * lattice.volume // (2 if even_odd else 1)

    @property
    def mu_lo(self) -> float:
        return self.monomial.mu_lo

    @property
    def mu_hi(self) -> float | None:
        return self.monomial.mu_hi

    def __repr__(self) -> str:
        return (f"PFTarget({self.group.name}, {self.lattice}, kappa={self.kappa:g}, even_odd={self.even_odd}, "
                f"mu_lo={self.mu_lo:g}, mu_hi={self.mu_hi})")

    def check_same_variables(self, other: "PFTarget", name: str) -> None:
        """Raise unless ``other`` has this target's pseudofermion variables (group, lattice, even/odd support):
        the weights of a conditional model built for one target are meaningless for a target of other variables
        (another kappa or Hasenbusch shift is reweighting, and allowed)."""
        mine = (self.group.name, tuple(self.lattice.shape), self.even_odd)
        theirs = (other.group.name, tuple(other.lattice.shape), other.even_odd)
        if mine != theirs:
            raise ValueError(f"{name}: {other!r} has other pseudofermion variables than the model's {self!r} "
                             "(group, lattice and even_odd must agree)")

    def with_shift(self, mu0: float) -> "PFTarget":
        """The same monomial with ``mu0`` added to both shifts (the training regulator ``D D^dag + mu_0``)."""
        return PFTarget(self.group, self.lattice, self.kappa, even_odd=self.even_odd, mu_lo=self.mu_lo + mu0,
                        mu_hi=None if self.mu_hi is None else self.mu_hi + mu0, tol=self.tol, maxiter=self.maxiter,
                        antiperiodic=self.antiperiodic)

    # -- operators -----------------------------------------------------------------------------
    def operator(self, U: torch.Tensor) -> Any:
        """``D[U]`` (``WilsonDirac``) or its even/odd Schur complement (``EvenOddDirac``)."""
        D = WilsonDirac(U, self.group, self.lattice, kappa=self.kappa, antiperiodic=self.antiperiodic)
        return EvenOddDirac(D) if self.even_odd else D

    def support(self, like: torch.Tensor) -> torch.Tensor:
        """Sites carrying variables (even sites for even/odd), ``(*L)`` bool on ``like``'s device."""
        if self.even_odd:
            return self.lattice.parity(like=like) == 0
        return torch.ones(tuple(self.lattice.shape), dtype=torch.bool, device=like.device)

    def check_field(self, phi: Any, name: str = "phi") -> None:
        """Raise unless ``phi`` is a complex ``(B, Ns, Nc, *L)`` pseudofermion of this target."""
        if not isinstance(phi, torch.Tensor) or phi.ndim != len(self.field_shape) + 1 \
                or tuple(phi.shape[1:]) != self.field_shape or not phi.is_complex():
            shape = tuple(phi.shape) if hasattr(phi, "shape") else type(phi).__name__
            raise ValueError(f"{name} has shape {shape}; expected a complex pseudofermion (B, Ns, Nc, *L) = "
                             f"(B, {', '.join(map(str, self.field_shape))}) for {self.group.name} on {self.lattice}")

    def _solve(self, op: Any, b: torch.Tensor, mu: float) -> torch.Tensor:
        # single precision cannot reach a true residual |b - A x| / |b| below about 1e-7 times the condition number of
        # D D^dag (the rounding of A x itself; 1.1e-6 for a smooth 8x8 U(1) field at kappa = 0.265, more near kappa_c):
        # the tolerance is raised to 1e-5 there, and a solve that stalls above it is accepted up to SINGLE_ACCEPT
        # (the training's gradient estimate is stochastic and float32 throughout; a CG failure beyond it is raised)
        single = b.dtype == torch.complex64
        tol = max(self.tol, 1e-5) if single else self.tol
        try:
            X, info = solve_normal(op, b, mu, tol=tol, maxiter=self.maxiter, raise_on_failure=not single)
            worst = float(info.residual.max())
            if single and not info.all_converged and not worst <= SINGLE_ACCEPT:
                raise ConvergenceError(f"the true residual stalled at {worst:.2e} in single precision, above "
                                       f"{SINGLE_ACCEPT:g}", info)
        except ConvergenceError as exc:
            raise PseudofermionSolveError(
                f"{self!r}: CG did not converge ({exc}); action.kappa = {self.kappa} may be at or beyond the critical "
                "value for these gauge fields (or raise action.cg_maxiter)", exc.info) from None
        return X

    # -- the action ----------------------------------------------------------------------------
    def action(self, U: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``S(U, phi) = phi^dag K phi`` per batch element, differentiable in ``U`` and ``phi`` (module docstring)."""
        self.check_field(phi)
        op = self.operator(U)
        phi = op.mask(phi)
        with torch.no_grad():
            try:
                X = self._solve(self.operator(U.detach()), phi.detach(), self.mu_lo)
            except PseudofermionSolveError:
                # a NaN/inf field makes every CG residual NaN: name it instead of blaming kappa (user probe); the
                # check runs on this failure path only
                for name, a in (("phi", phi), ("U", U)):
                    bad = int((~torch.isfinite(a.detach())).sum())
                    if bad:
                        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); the pseudofermion "
                                         "action needs finite fields") from None
                raise
        DX = op.apply_dagger(X)
        quad = _inner(DX, DX) + self.mu_lo * _inner(X, X)  # X^dag (M + mu_lo) X
        S = 2.0 * _inner(X, phi) - quad                    # = phi^dag (M + mu_lo)^{-1} phi, exact gradients
        if self.mu_hi is not None:
            S = _inner(phi, phi) + (self.mu_hi - self.mu_lo) * S
        return S

    def log_normalizer(self) -> float:
        """``n log pi``: ``p(phi | U) = exp(-S) det K / pi^n``."""
        return self.ndof * math.log(math.pi)

    def log_prob_unnormalized(self, U: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``-S - n log pi = log p(phi | U) - log det K``: the conditional log weight is this minus ``log q(phi|U)``."""
        return -self.action(U, phi) - self.log_normalizer()

    # -- exact pieces on small lattices -----------------------------------------------------------
    def log_det_from_eigenvalues(self, lam: torch.Tensor) -> torch.Tensor:
        """``log(1/det K)`` from the eigenvalues ``lam`` ``(B, n)`` of ``M``: this monomial's factor of ``log det M``."""
        out = torch.log(lam + self.mu_lo).sum(-1)
        if self.mu_hi is not None:
            out = out - torch.log(lam + self.mu_hi).sum(-1)
        return out

    def condition_number_from_eigenvalues(self, lam: torch.Tensor) -> torch.Tensor:
        """Condition number of the kernel ``K`` from the eigenvalues of ``M`` (``(lam + mu_hi)/(lam + mu_lo)``
        for a ratio, ``lam + mu_lo`` for the plain monomial), ``(B,)``."""
        k = lam + self.mu_lo if self.mu_hi is None else (lam + self.mu_hi) / (lam + self.mu_lo)
        return k.max(-1).values / k.min(-1).values

    def log_det_from_matrix(self, M: torch.Tensor) -> torch.Tensor:
        """``log(1/det K)`` from the dense ``M`` (:func:`dense_normal_matrix`), ``(B,)``, differentiable:
        ``log det(M + mu) = 2 sum_i log L_ii`` with ``L`` the Cholesky factor (``M + mu`` is Hermitian positive
        definite)."""
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        out = torch.zeros(M.shape[:-2], dtype=M.real.dtype, device=M.device)
        for mu, sign in ((self.mu_lo, 1.0), (self.mu_hi, -1.0)):
            if mu is not None:
                out = out + sign * _HPDLogDet.apply(M + mu * eye)
        return out

    def log_det(self, U: torch.Tensor) -> torch.Tensor:
        """Exact ``log(1/det K)`` by dense linear algebra (small lattices; :func:`exact_log_det`), ``(B,)``."""
        return exact_log_det([self], self.operator(U.detach()))

    def sample(self, U: torch.Tensor, rng: Any) -> torch.Tensor:
        """Exact heatbath draw of ``p(phi | U)`` (one per gauge field)."""
        with torch.no_grad():
            op = self.operator(U)
            return self.monomial.sample(op, rng, (U.shape[0],), tol=min(self.tol, 1e-12), maxiter=max(self.maxiter, 4000))

    def logdet_gradient_surrogate(self, U: torch.Tensor, rng: Any, n_noise: int = 1,
                                  estimator: str = "dirac") -> torch.Tensor:
        """Zero-valued ``(B,)`` tensor whose gradient is an unbiased estimate of ``d log(1/det K)``.

        ``estimator = "dirac"``: ``d log det(M + mu) = E_eta[2 Re eta^dag D^dag (M + mu)^{-1} dD eta]``;
        ``"normal"``: ``E_eta[Re eta^dag (M + mu)^{-1} dM eta]`` (arXiv:2106.05934, App. C); both with
        ``n_noise`` complex Gaussian vectors (module docstring: the first has the smaller variance). A ratio
        monomial contributes the difference of two such terms.
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator={estimator!r}: expected one of {ESTIMATORS}")
        op = self.operator(U)
        b = U.shape[0]
        out = torch.zeros(b, dtype=U.real.dtype, device=U.device)
        for mu, sign in ((self.mu_lo, 1.0), (self.mu_hi, -1.0)):
            if mu is None:
                continue
            for _ in range(int(n_noise)):
                eta = op.mask(op.random_field(rng, (b,)).to(U.device))  # the noise generator may live elsewhere
                if estimator == "dirac":
                    Deta = op.apply(eta)
                    with torch.no_grad():
                        Y = self._solve(self.operator(U.detach()), Deta.detach(), mu)  # (M + mu)^{-1} D eta
                    t = 2.0 * _inner(Y, Deta)                                          # 2 Re Y^dag dD eta
                else:
                    with torch.no_grad():
                        X = self._solve(self.operator(U.detach()), eta, mu)            # (M + mu)^{-1} eta
                    t = _inner(X, op.normal(eta, mu))                                  # Re X^dag dM eta
                out = out + sign * (t - t.detach()) / n_noise
        return out


def monomial_targets(group: Group, lattice: Lattice, kappa: float, *, even_odd: bool = False,
                     hasenbusch_mus: Sequence[float] = (), mu0: float = 0.0, tol: float = 1e-10,
                     maxiter: int = 2000) -> list[PFTarget]:
    """The monomials of eq. (38): ``det(M + mu0) = det(M + mu_N) prod_i det(M + mu_i)/det(M + mu_{i+1})``.

    ``hasenbusch_mus`` = ``(mu_1, ..., mu_N)`` strictly increasing and positive (no Hasenbusch step: empty);
    ``mu0`` is the regulator (0 for sampling, 1e-5 in training, Sec. IV.A) added to every shift.

    Examples
    --------
    >>> import latticekit as lk
    >>> [t.mu_hi for t in monomial_targets(lk.U1, lk.Lattice((4, 4)), 0.26, hasenbusch_mus=[0.001, 0.01])]
    [0.001, 0.01, None]
    """
    mus = [float(m) for m in hasenbusch_mus]
    if any(m <= 0 for m in mus) or any(b <= a for a, b in zip(mus[:-1], mus[1:])):
        raise ValueError(f"hasenbusch_mus={mus!r}: expected strictly increasing positive shifts (eq. 38)")
    if not float(mu0) >= 0:
        raise ValueError(f"mu0={mu0!r}: expected a regulator >= 0")
    # the regulated operator M + mu0 (Sec. IV.A) shifts every monomial: (mu0, mu0 + mu_1), ..., (mu0 + mu_N,)
    return [PFTarget(group, lattice, kappa, even_odd=even_odd, mu_lo=m.mu_lo, mu_hi=m.mu_hi, tol=tol, maxiter=maxiter)
            for m in hasenbusch_monomials([m + float(mu0) for m in mus], float(mu0))]
