"""Monomial targets ``p(phi | U)`` (eqs. 12, 19, 35-38 of arXiv:2207.08945): the differentiable action against
dense matrices (value, gradients in phi and in the gauge field), the normalisation checked with an exact flow
(the heatbath map), the Hasenbusch shifts, and the stochastic log-det gradient (arXiv:2106.05934 App. C).

Dense references: ``M = D D^dag`` (``D_sc D_sc^dag`` on the even sites for even/odd) is built column by column
from ``op.normal`` with :func:`latticekit.linalg.dense_matrix` (torch autograd flows through it), then
``K = (M + mu_lo)^{-1}`` or ``(M + mu_hi)(M + mu_lo)^{-1}`` by a dense inverse: no CG anywhere.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac
from latticekit.actions.even_odd import EvenOddDirac
from latticekit.flows.pseudofermion import (ESTIMATORS, PFTarget, PseudofermionSolveError, dense_normal_matrix,
                                           exact_log_det, monomial_targets, normal_eigenvalues)
from latticekit.linalg import dense_matrix, logdet_normal
from latticekit.testing import assert_close

LAT = lk.Lattice((2, 4))
gid = lambda g: g.name  # noqa: E731

#: (even_odd, mu_lo, mu_hi): plain monomials with and without a shift, ratio monomials
MONOMIALS = [(False, 0.0, None), (False, 0.05, None), (False, 0.02, 0.3),
             (True, 0.0, None), (True, 0.05, None), (True, 0.02, 0.3)]
MONO_IDS = [f"eo{int(e)}-{lo}-{hi}" for e, lo, hi in MONOMIALS]


def _rng(seed: int, device: str) -> Any:
    return lk.backends.rng(seed, backend="torch", device=device)


def _dense_M(t: PFTarget, U: torch.Tensor) -> torch.Tensor:
    """``M`` on the support as a dense ``(B, n, n)`` matrix (differentiable in ``U``)."""
    op = t.operator(U)
    return dense_matrix(lambda v: op.normal(v), op.field_shape, like=U, support=op.support, batch_shape=op.batch_shape)


def _dense_K(t: PFTarget, U: torch.Tensor) -> torch.Tensor:
    M = _dense_M(t, U)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    K = torch.linalg.inv(M + t.mu_lo * eye)
    return K if t.mu_hi is None else (M + t.mu_hi * eye) @ K


def _on_support(t: PFTarget, phi: torch.Tensor) -> torch.Tensor:
    """The support components of ``phi`` as ``(B, n)``, in the row-major order of ``dense_matrix``."""
    sup = t.support(phi).expand(phi.shape[1:])
    return phi[:, sup]


def _dense_action(t: PFTarget, U: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    v = _on_support(t, phi)
    return torch.einsum("bi,bij,bj->b", v.conj(), _dense_K(t, U), v).real


def _random_pf(t: PFTarget, rng: Any, b: int, device: str) -> torch.Tensor:
    return rng.complex_normal((b,) + t.field_shape) * t.support(torch.zeros((), device=device))


# -- the action: value and gradients ------------------------------------------------------------------------------
@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=gid)
@pytest.mark.parametrize("even_odd, mu_lo, mu_hi", MONOMIALS, ids=MONO_IDS)
def test_action_value_and_gradients_against_dense(G: Any, even_odd: bool, mu_lo: float, mu_hi: float | None,
                                                  device: str) -> None:
    rng = _rng(0, device)
    t = PFTarget(G, LAT, 0.2, even_odd=even_odd, mu_lo=mu_lo, mu_hi=mu_hi, tol=1e-13)
    # U(1): real angles; SU(2): complex matrices as free complex leaves (both the surrogate and the dense
    # expression are functions of the entries of U and U^dag, so their ambient gradients must agree)
    U = G.random(rng, (2, 2), LAT.shape).clone().requires_grad_(True)
    phi = _random_pf(t, rng, 2, device).requires_grad_(True)
    S = t.action(U, phi)
    S_ref = _dense_action(t, U, phi)
    assert S.shape == (2,)
    # CG to a relative residual 1e-13 enters the surrogate's value at second order; the dense inverse has
    # relative error ~ cond * 1e-16 with cond <~ 100 at kappa = 0.2: 1e-10 relative is generous
    assert_close(S, S_ref, rtol=1e-10, atol=0)
    g_phi, g_U = torch.autograd.grad(S.sum(), (phi, U))
    r_phi, r_U = torch.autograd.grad(S_ref.sum(), (phi, U))
    # first order in the CG error: |X - X*| <= cond * 1e-13 |X| ~ 1e-11 for gradients of size O(1-10)
    assert_close(g_phi, r_phi, atol=1e-9, rtol=0)
    assert_close(g_U, r_U, atol=1e-9, rtol=0)
    if even_odd:  # odd components are not variables: no gradient there
        assert float(g_phi[..., ~t.support(phi)].abs().max()) == 0.0
    assert float(r_U.abs().max()) > 1e-2  # the gauge force is not trivially zero


@pytest.mark.parametrize("even_odd, mu_lo, mu_hi", MONOMIALS, ids=MONO_IDS)
def test_u1_gauge_gradient_against_central_differences(even_odd: bool, mu_lo: float, mu_hi: float | None,
                                                       device: str) -> None:
    rng = _rng(1, device)
    t = PFTarget(lk.U1, LAT, 0.2, even_odd=even_odd, mu_lo=mu_lo, mu_hi=mu_hi, tol=1e-13)
    theta = lk.U1.random(rng, (1, 2), LAT.shape).requires_grad_(True)
    phi = _random_pf(t, rng, 1, device)
    g, = torch.autograd.grad(t.action(theta, phi).sum(), theta)
    h = 1e-4
    with torch.no_grad():
        for _ in range(3):  # three random directions
            v = rng.normal(theta.shape, dtype="float64")
            fd = (t.action(theta + h * v, phi) - t.action(theta - h * v, phi)) / (2 * h)
            # truncation h^2 |S'''| / 6 ~ 1e-8 |S| with |S| ~ 10-50 here; value round-off 1e-15 |S| / h ~ 1e-10
            assert_close(fd, (g * v).sum().reshape(1), rtol=1e-6, atol=1e-6)


# -- normalisation: the heatbath map is an exact flow -------------------------------------------------------------
@pytest.mark.parametrize("G", [lk.U1, lk.SU(2), lk.SU(3)], ids=gid)
@pytest.mark.parametrize("even_odd", [False, True], ids=["full", "eo"])
def test_exact_flow_has_constant_weight_and_monomials_multiply_to_the_determinant(G: Any, even_odd: bool,
                                                                                  device: str) -> None:
    """phi = B chi with chi ~ exp(-|chi|^2)/pi^n is a linear flow with q(phi|U) = exp(-|chi|^2)/pi^n / |det B|^2
    and |det B|^2 = 1/det K, so log w = -S - n log pi - log q = log(1/det K) = t.log_det(U) for every draw."""
    rng = _rng(2, device)
    b = 3
    U = G.random(rng, (b, 2), LAT.shape)
    targets = monomial_targets(G, LAT, 0.2, even_odd=even_odd, hasenbusch_mus=[0.05, 0.4], tol=1e-13)
    assert [(t.mu_lo, t.mu_hi) for t in targets] == [(0.0, 0.05), (0.05, 0.4), (0.4, None)]
    total = torch.zeros(b, dtype=torch.float64, device=device)
    for t in targets:
        op = t.operator(U)
        phi, chi = t.monomial.sample(op, rng, (b,), tol=1e-13, return_noise=True)
        if even_odd:
            assert float(chi[..., ~t.support(chi)].abs().max()) == 0.0  # noise on the even sites only
            assert float(phi[..., ~t.support(phi)].abs().max()) == 0.0
        chi2 = (chi.abs() ** 2).flatten(1).sum(1)
        S = t.action(U, phi)
        # S = |chi|^2 exactly for the heatbath map; CG residuals 1e-13 on |chi|^2 ~ 16-48
        assert_close(S, chi2, atol=1e-8, rtol=0)
        log_det = t.log_det(U)
        # log(1/det K) from a dense slogdet of K (not the eigenvalue route of log_det): two dense methods
        assert_close(log_det, -torch.linalg.slogdet(_dense_K(t, U))[1], atol=1e-10, rtol=0)
        log_q = -chi2 - t.log_normalizer() - log_det
        log_w = -S - t.log_normalizer() - log_q
        assert_close(log_w, log_det, atol=1e-8, rtol=0)  # = -S + |chi|^2 + log_det: the CG residual again
        total = total + log_det
    D = WilsonDirac(U, G, LAT, kappa=0.2)
    ref = logdet_normal(D)
    # eq. (38): the monomials multiply to det M; for even/odd det D_sc D_sc^dag = det D D^dag (D_ee = 1).
    # Sums of <= 48 logs of eigenvalues O(0.1-3) from two dense factorisations: 1e-9
    assert_close(total, ref, atol=1e-9, rtol=0)
    if even_odd:
        assert_close(logdet_normal(EvenOddDirac(D)), ref, atol=1e-9, rtol=0)


@pytest.mark.parametrize("even_odd", [False, True], ids=["full", "eo"])
def test_target_sample_is_the_exact_conditional(even_odd: bool, device: str) -> None:
    """E_p[S] = n (S = |chi|^2 is Gamma(n, 1) distributed): the target's own heatbath draws."""
    rng = _rng(3, device)
    t = monomial_targets(lk.SU(2), LAT, 0.2, even_odd=even_odd, hasenbusch_mus=[0.1])[0]
    U1 = lk.SU(2).random(rng, (1, 2), LAT.shape)
    N = 2000
    U = U1.expand((N,) + U1.shape[1:]).contiguous()
    S = t.action(U, t.sample(U, rng)).double()
    n = t.ndof
    assert n == 2 * 2 * LAT.volume // (2 if even_odd else 1)
    # Var S = n: 5 standard errors of the mean (false alarm 6e-7)
    assert abs(float(S.mean()) - n) < 5 * math.sqrt(n / N)
    assert abs(float(S.var()) / n - 1) < 5 * math.sqrt(2 / N) * 1.5  # var of a sample variance ~ 2 sigma^4 / N (x1.5: Gamma kurtosis)


def test_normal_eigenvalues_and_condition_numbers(device: str) -> None:
    rng = _rng(4, device)
    U = lk.U1.random(rng, (2, 2), LAT.shape)
    for eo in (False, True):
        t = PFTarget(lk.U1, LAT, 0.2, even_odd=eo, mu_lo=0.02, mu_hi=0.3)
        lam = normal_eigenvalues(t.operator(U))
        ref = torch.linalg.eigvalsh(_dense_M(t, U))
        # squared singular values of the dense D against eigvalsh of the dense M = D D^dag built from op.normal:
        # two factorisations of matrices with entries O(1) and eigenvalues O(0.1-3)
        assert_close(lam, ref, atol=1e-12, rtol=0)
        k = (ref + 0.3) / (ref + 0.02)
        assert_close(t.condition_number_from_eigenvalues(lam), k.max(-1).values / k.min(-1).values, rtol=1e-12, atol=0)


@pytest.mark.parametrize("G", [lk.U1, lk.SU(3)], ids=gid)
@pytest.mark.parametrize("even_odd", [False, True], ids=["full", "eo"])
def test_exact_log_det_against_the_dense_normal_matrix(G: Any, even_odd: bool, device: str, monkeypatch: Any) -> None:
    """``exact_log_det`` (LU of the dense ``D`` at ``mu = 0``, Cholesky of ``M + mu`` otherwise) against ``slogdet``
    of ``M + mu`` built column by column from ``op.normal``: one plain monomial (LU), a Hasenbusch chain (a ratio,
    LU and Cholesky, and a shifted plain monomial, Cholesky), a plain with a shifted ratio monomial, and the
    eigenvalue fallback when a Cholesky factorisation fails (simulated)."""
    rng = _rng(9, device)
    U = G.random(rng, (3, 2), LAT.shape)
    mixed = [PFTarget(G, LAT, 0.2, even_odd=even_odd), PFTarget(G, LAT, 0.2, even_odd=even_odd, mu_lo=0.02, mu_hi=0.3)]
    for targets in (monomial_targets(G, LAT, 0.2, even_odd=even_odd),
                    monomial_targets(G, LAT, 0.2, even_odd=even_odd, hasenbusch_mus=[0.1]), mixed):
        M = _dense_M(targets[0], U)
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        ref = sum(torch.linalg.slogdet(M + t.mu_lo * eye)[1]
                  - (torch.linalg.slogdet(M + t.mu_hi * eye)[1] if t.mu_hi is not None else 0.0) for t in targets)
        got = exact_log_det(targets, targets[0].operator(U))
        assert got.shape == (3,)
        # |log det| ~ n = 8-32 here; two dense factorisations of O(1) matrices
        assert_close(got, ref, atol=1e-11, rtol=0)
        assert_close(sum(t.log_det(U) for t in targets), ref, atol=1e-11, rtol=0)
    # the fallback when a shifted matrix does not factorise: the eigenvalue route, for every term
    t0 = mixed[1]

    def no_cholesky(*a: Any, **k: Any) -> Any:
        raise torch.linalg.LinAlgError("not positive definite (simulated)")

    monkeypatch.setattr(torch.linalg, "cholesky", no_cholesky)
    lam = normal_eigenvalues(t0.operator(U))
    assert_close(exact_log_det(mixed, t0.operator(U)), sum(t.log_det_from_eigenvalues(lam) for t in mixed),
                 atol=0, rtol=0)


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2), lk.SU(3)], ids=gid)
@pytest.mark.parametrize("even_odd", [False, True], ids=["full", "eo"])
def test_dense_normal_matrix_and_its_log_det_gradient(G: Any, even_odd: bool, device: str) -> None:
    """``dense_normal_matrix`` (``A A^dag`` from the dense ``D``) is the matrix of ``op.normal`` (built column by
    column, ``_dense_M``), and the exact log-det of the dense marginal gradient (Cholesky, with its own backward
    ``(M + mu)^{-1}``) has the value and gauge gradient of torch's ``slogdet`` of ``_dense_M``."""
    rng = _rng(8, device)
    U = G.random(rng, (2, 2), LAT.shape)
    t = PFTarget(G, LAT, 0.2, even_odd=even_odd, mu_lo=0.02, mu_hi=0.3)
    Ua, Ub = U.clone().requires_grad_(True), U.clone().requires_grad_(True)
    M, ref = dense_normal_matrix(t.operator(Ua)), _dense_M(t, Ub)
    assert M.shape == ref.shape == (2, t.ndof, t.ndof)
    assert_close(M, ref, atol=1e-13, rtol=0)  # one product of O(1) entries against two operator applications
    eye = torch.eye(t.ndof, dtype=ref.dtype, device=ref.device)
    ld = t.log_det_from_matrix(M)
    ld_ref = torch.linalg.slogdet(ref + t.mu_lo * eye)[1] - torch.linalg.slogdet(ref + t.mu_hi * eye)[1]
    assert_close(ld, ld_ref, atol=1e-11, rtol=0)
    assert_close(ld, t.log_det(U), atol=1e-10, rtol=0)  # Cholesky against the eigenvalue route
    g, = torch.autograd.grad(ld.sum(), Ua)
    g_ref, = torch.autograd.grad(ld_ref.sum(), Ub)
    assert float(g_ref.abs().max()) > 1e-2  # the gradient is not trivially zero
    assert_close(g, g_ref, atol=1e-11, rtol=0)


def test_hasenbusch_shifts_with_regulator() -> None:
    mus, mu0 = [0.001, 0.01, 0.1], 1e-5
    ts = monomial_targets(lk.U1, LAT, 0.2, hasenbusch_mus=mus, mu0=mu0)
    lo = [t.mu_lo for t in ts]
    hi = [t.mu_hi for t in ts]
    # (mu0, mu0 + mu1), (mu0 + mu1, mu0 + mu2), ..., (mu0 + muN, None); sums of two floats: 1 ulp
    assert_close(torch.tensor(lo, dtype=torch.float64), [mu0, mu0 + mus[0], mu0 + mus[1], mu0 + mus[2]], rtol=1e-15, atol=0)
    assert hi[-1] is None
    assert_close(torch.tensor(hi[:-1], dtype=torch.float64), [mu0 + m for m in mus], rtol=1e-15, atol=0)
    assert [(t.mu_lo, t.mu_hi) for t in monomial_targets(lk.U1, LAT, 0.2)] == [(0.0, None)]
    assert [(t.mu_lo, t.mu_hi) for t in monomial_targets(lk.U1, LAT, 0.2, mu0=0.5)] == [(0.5, None)]
    t = PFTarget(lk.U1, LAT, 0.2, mu_lo=0.1, mu_hi=0.2).with_shift(0.01)
    assert (t.mu_lo, t.mu_hi) == (0.1 + 0.01, 0.2 + 0.01)
    for bad in ([0.1, 0.01], [-0.1], [0.0], [0.1, 0.1]):
        with pytest.raises(ValueError, match="hasenbusch_mus"):
            monomial_targets(lk.U1, LAT, 0.2, hasenbusch_mus=bad)
    with pytest.raises(ValueError, match="mu0"):
        monomial_targets(lk.U1, LAT, 0.2, mu0=-1e-3)


def test_target_refusals() -> None:
    with pytest.raises(ValueError, match="even_odd"):
        PFTarget(lk.U1, lk.Lattice((2, 3)), 0.2, even_odd=True)
    with pytest.raises(ValueError, match="kappa"):
        PFTarget(lk.U1, LAT, 0.0)
    with pytest.raises(ValueError, match="lattice"):
        PFTarget(lk.U1, lk.Lattice((4, 4, 4)), 0.2)
    with pytest.raises(ValueError, match="mu_hi"):
        PFTarget(lk.U1, LAT, 0.2, mu_lo=0.3, mu_hi=0.1)
    t = PFTarget(lk.U1, LAT, 0.2)
    U = lk.U1.random(_rng(0, "cpu"), (1, 2), LAT.shape)
    with pytest.raises(ValueError, match=r"phi has shape \(1, 2, 2, 2, 4\)"):  # SU(2) colour on a U(1) target
        t.action(U, torch.zeros(1, 2, 2, 2, 4, dtype=torch.complex128))
    with pytest.raises(ValueError, match="phi"):
        t.action(U, torch.zeros(1, 2, 1, 2, 4, dtype=torch.float64))
    with pytest.raises(PseudofermionSolveError, match="kappa"):  # one CG iteration cannot reach 1e-12
        PFTarget(lk.U1, LAT, 0.2, tol=1e-12, maxiter=1).action(U, torch.ones(1, 2, 1, 2, 4, dtype=torch.complex128))
    # tol >= 1 accepted the zero start (tol=inf gave S = 0); bools and fractions were truncated (kappa=True -> 1)
    for kw, match in (({"tol": 1.0}, r"^tol=1.0: expected a CG residual 0 < tol < 1"), ({"tol": math.inf}, "^tol=inf"),
                      ({"maxiter": 2.5}, r"^maxiter=2.5: expected an integer >= 1"), ({"maxiter": True}, "^maxiter"),
                      ({"kappa": True}, r"^kappa=True: expected a finite real number")):
        with pytest.raises(ValueError, match=match):
            PFTarget(lk.U1, LAT, **{"kappa": 0.2, **kw})
    # a NaN field made every residual NaN and read "kappa may be at or beyond the critical value"
    phi = torch.ones(1, 2, 1, 2, 4, dtype=torch.complex128)
    phi_bad, U_bad = phi.clone(), U.clone()
    phi_bad[0, 1, 0, 1, 2] = float("nan")
    U_bad[0, 1, 1, 2] = float("inf")
    for U_bad, phi_bad, name in ((U, phi_bad, "phi"), (U_bad, phi, "U")):
        with pytest.raises(ValueError, match=rf"^{name} has 1 non-finite entries"):
            t.action(U_bad, phi_bad)


# -- stochastic log-det gradient ------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=gid)
@pytest.mark.parametrize("even_odd, mu_lo, mu_hi", [(False, 0.05, None), (True, 0.0, None), (True, 0.05, 0.5)],
                         ids=["full-plain", "eo-plain", "eo-ratio"])
def test_logdet_gradient_surrogate_is_unbiased(G: Any, even_odd: bool, mu_lo: float, mu_hi: float | None,
                                               estimator: str, device: str) -> None:
    t = PFTarget(G, LAT, 0.2, even_odd=even_odd, mu_lo=mu_lo, mu_hi=mu_hi, tol=1e-12)
    rng = _rng(5, device)
    U1 = G.random(rng, (1, 2), LAT.shape)
    N = 2000
    # N copies of one gauge field as one batch: each element's surrogate depends on its own copy only, so the
    # gradient of the sum holds N independent one-noise estimates (one batched CG instead of N)
    U = U1.expand((N,) + U1.shape[1:]).clone().requires_grad_(True)
    s = t.logdet_gradient_surrogate(U, rng, n_noise=1, estimator=estimator)
    assert s.shape == (N,) and float(s.detach().abs().max()) == 0.0  # zero value, gradient only
    g, = torch.autograd.grad(s.sum(), U)
    U_ref = U1.clone().requires_grad_(True)
    M = _dense_M(t, U_ref)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    exact = torch.logdet(M + mu_lo * eye).real
    if mu_hi is not None:
        exact = exact - torch.logdet(M + mu_hi * eye).real
    ref, = torch.autograd.grad(exact.sum(), U_ref)
    ref = ref[0]
    mean, err = g.mean(0), g.std(0) / math.sqrt(N)
    # every component within 5 standard errors (16 U(1) / 128 SU(2) real components: false alarm < 1e-4);
    # the 1e-12 covers components whose estimator has zero variance
    assert bool(((mean - ref).abs() <= 5 * err + 1e-12).all()), float(((mean - ref).abs() / (err + 1e-300)).max())
    assert float(ref.abs().max()) > 5 * float(err.max())  # the largest component is resolved: the test has teeth
    # n_noise averages: the value stays zero and the gradient keeps its expectation (one more cheap draw)
    s4 = t.logdet_gradient_surrogate(U, rng, n_noise=4, estimator=estimator)
    g4, = torch.autograd.grad(s4.sum(), U)
    assert bool(((g4.mean(0) - ref).abs() <= 5 * err + 1e-12).all())  # variance 4x smaller than that of g


def test_logdet_gradient_estimators_have_the_predicted_variance(device: str) -> None:
    # One U(1) field near the critical kappa, 8x8 even/odd (condition number of M: 42); the directional
    # derivative along d theta of each surrogate is Re eta^dag A eta with A = (M + mu)^{-1} M' ("normal") or
    # 2 D^dag (M + mu)^{-1} D' ("dirac"),
    # whose variance for circular complex Gaussian eta (E[eta eta^dag] = 1) is ||(A + A^dag)/2||_F^2. Both
    # measured variances must match the dense prediction, and on this ill-conditioned field the "dirac" form's
    # must be the smaller one (the reason it is the default).
    lat = lk.Lattice((8, 8))
    t = PFTarget(lk.U1, lat, 0.265, even_odd=True, mu_lo=1e-5, tol=1e-12)
    rng = _rng(11, device)
    th0 = 0.5 * rng.normal((1, 2, 8, 8))
    dth = rng.normal((1, 2, 8, 8))

    def dense(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        op = t.operator(th)
        D = dense_matrix(lambda v: op.apply(v), op.field_shape, like=th, support=op.support, batch_shape=(1,))
        return D[0], dense_normal_matrix(op)[0]

    h = 1e-5
    D, M = dense(th0)
    dD = (dense(th0 + h * dth)[0] - dense(th0 - h * dth)[0]) / (2 * h)  # O(h^2) = 1e-10 relative
    dM = dD @ D.conj().T + D @ dD.conj().T
    R = torch.linalg.inv(M + t.mu_lo * torch.eye(M.shape[0], dtype=M.dtype, device=M.device))
    cond = float(torch.linalg.cond(M))
    assert cond > 20, cond  # the field is as ill-conditioned as intended
    predicted = {}
    for name, A in (("normal", R @ dM), ("dirac", 2.0 * D.conj().T @ R @ dD)):
        H = 0.5 * (A + A.conj().T)
        predicted[name] = float((H.abs() ** 2).sum())
        assert_close(float(torch.trace(A).real), float(torch.trace(R @ dM).real), rtol=1e-9,
                     msg=f"{name}: both forms have the trace of (M + mu)^-1 dM")
    N = 4000
    for name in ESTIMATORS:
        s = torch.zeros(N, dtype=th0.dtype, device=th0.device, requires_grad=True)
        th = th0 + s[:, None, None, None] * dth  # N copies, each with its own noise vector
        g, = torch.autograd.grad(t.logdet_gradient_surrogate(th, rng, estimator=name).sum(), s)
        var = float(g.var())
        dev = (g - g.mean()) ** 2
        err = float(dev.std()) / math.sqrt(N)
        # the sample variance within 5 of its standard errors of the prediction (the error estimated from the same
        # draws; heavy tails of the quadratic form make it uncertain by ~20%: 5 covers that)
        assert abs(var - predicted[name]) <= 5 * err, (name, var, predicted[name], err)
    assert predicted["dirac"] < 0.5 * predicted["normal"], (predicted, cond)  # 131 against 401 on CPU
