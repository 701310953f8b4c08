"""Heatbath-like priors of one link given its staples (arXiv:2404.10819 eq. 6), exactly normalised.

Abbott et al., *Multiscale normalizing flows for gauge theories*, arXiv:2404.10819 (Lattice 2023).
A staple-conditional model (eq. 11) starts from a prior ``r(U | S_1..S_n)`` of one link ``U`` given
``n`` staples (paths from the end of the link back to its start, :mod:`.staples`). This module holds
the priors; every density is with respect to the normalised Haar measure (DESIGN.md), and every prior
is *conditional*: ``sample(M, rng, context=S)`` / ``log_prob(U, context=S)`` with ``S`` of shape
``(M, n, *G)`` (one row of staples per link; ``M`` links sampled independently, as in the paper).

* :class:`HaarLinkPrior` — ``r = 1`` (any group); ignores the staples.
* :class:`U1HeatbathPrior` — eq. 6 for U(1) with one learnable weight per staple,
  ``r(theta | S) = exp(Re(e^{i theta} A)) / I_0(|A|)``, ``A = sum_i beta_i e^{i sigma_i}``
  (``sigma_i`` the staple angles; eq. 6 is ``beta_i = beta~`` for the two staples ``S_A``, ``S_B``).
  With ``kappa = |A|`` and ``m = -arg A`` this is the von Mises law ``exp(kappa cos(theta - m)) / I_0(kappa)``:
  ``int_{-pi}^{pi} exp(kappa cos t) dt / (2 pi) = I_0(kappa)`` is the normalisation (Bessel function).
* :class:`SU2HeatbathPrior` — eq. 6 for SU(2) (the one non-Abelian case where it is normalisable in
  closed form; footnote 2 of the paper): ``r(U | S) = exp((1/2) Re tr(U M)) / Z``, ``M = sum_i beta_i S_i``.
  A real combination of SU(2) matrices is ``M = k V`` with ``k = sqrt(det M) >= 0`` and ``V`` in SU(2), so
  ``(1/2) Re tr(U M) = k a_0`` with ``a_0 = Re tr(U V) / 2``; under Haar measure ``a_0`` has the density
  ``(2/pi) sqrt(1 - a^2)`` on ``[-1, 1]``, hence ``Z = int (2/pi) sqrt(1 - a^2) e^{k a} da = 2 I_1(k) / k``.
  For SU(N), N >= 3, the normaliser of eq. 6 has no closed form (footnote 2): those models use the Haar
  prior, and asking for the heatbath prior is an error.

Sampling and gradients
----------------------
Draws are exact: the von Mises law by Best-Fisher rejection and ``a_0`` by Kennedy-Pendleton/Creutz
(:func:`latticekit.mc.heatbath.von_mises`, :func:`~latticekit.mc.heatbath.su2_heatbath_x0`, the heatbath's
own samplers), always in float64 (then cast to the model's dtype). Reverse-KL training needs the draw to be differentiable in the parameters of its law
(the weights ``beta_i`` and, through the staples, every earlier layer of a multiscale model). The mean
direction enters by a shift / a group multiplication; the concentration ``c`` (``kappa`` or ``k``) by
*implicit reparametrisation* (Figurnov, Mohamed & Mnih 2018): for a draw ``t`` with CDF ``F(t; c)``,
``dt/dc = -(dF/dc) / p(t; c)``. It is applied with the surrogate

    t_rep = t - (F(t; c) - stop(F(t; c))) / stop(p(t; c)),

whose value is exactly ``t`` and whose gradient is the implicit one. ``F`` is a Fourier series with the
Bessel ratios ``rho_n = I_n(c) / I_0(c)`` (:func:`bessel_ratios`, continued fraction, differentiable):

* U(1): ``F(t) = (t + pi) / (2 pi) + (1/pi) sum_{n>=1} rho_n sin(n t) / n`` for ``t`` in ``(-pi, pi]``
  (:func:`von_mises_cdf`);
* SU(2): with ``a_0 = cos phi``, ``P(a <= a_0) = int_{phi}^{pi} sin^2 u e^{c cos u} du / int_0^pi (...)``;
  ``sin^2 u e^{c cos u} / I_0(c) = sum_j d_j cos(j u)`` with ``d_j = (c_j - e_j) / 2``, ``c_0 = 1``,
  ``c_n = 2 rho_n``, ``e_j = (1/2) sum_n c_n (delta_{j, n+2} + delta_{j, |n-2|})`` (:func:`su2_a0_cdf`).

Examples
--------
>>> import torch, latticekit as lk
>>> prior = U1HeatbathPrior(2, beta=1.5).to(torch.float64)
>>> S = torch.tensor([[0.3, -1.0], [2.0, 2.5]], dtype=torch.float64)       # two links, two staples each
>>> U, lp = prior.sample(2, lk.backends.rng(0, backend="torch"), context=S)
>>> bool(torch.allclose(lp, prior.log_prob(U, context=S)))
True
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from latticekit.backends import Generator
from latticekit.groups import Group, SUGroup, U1Group, wrap_angle
from latticekit.mc.heatbath import su2_heatbath_x0, su2_random_with_x0, von_mises

from ..priors import Prior, check_rng

__all__ = ["HaarLinkPrior", "SU2HeatbathPrior", "U1HeatbathPrior", "bessel_ratios", "check_staples",
           "heatbath_prior", "su2_a0_cdf", "von_mises_cdf"]

_PI = math.pi


def _n_terms(c: torch.Tensor) -> int:
    # rho_n ~ exp(-n^2 / (2 c)) for n << c: below 1e-16 from n ~ 8.6 sqrt(c)
    cmax = float(c.detach().max()) if c.numel() else 0.0
    return int(min(20 + 10 * math.sqrt(max(cmax, 0.0)), 4000))


def bessel_ratios(c: torch.Tensor, n_terms: int) -> torch.Tensor:
    """``rho_n = I_n(c) / I_0(c)`` for ``n = 0..n_terms``, shape ``c.shape + (n_terms + 1,)``; ``c >= 0``.

    Continued fraction from above, ``r_n = I_n / I_{n-1} = c / (2 n + c r_{n+1})`` (stable for every
    ``c >= 0``: errors shrink by ``r_n^2`` per step, ``r_n^2 < 0.18`` for ``n > c``), started at 0
    ``60`` orders above ``max(n_terms, c)``;
    ``rho_n = r_1 ... r_n``. Differentiable in ``c``.

    Examples
    --------
    >>> import torch
    >>> from scipy.special import iv
    >>> r = bessel_ratios(torch.tensor([2.0], dtype=torch.float64), 3)[0]
    >>> [round(float(v), 10) for v in r] == [round(iv(n, 2.0) / iv(0, 2.0), 10) for n in range(4)]
    True
    """
    if n_terms < 1:
        raise ValueError(f"n_terms={n_terms}: expected at least one term")
    r = torch.zeros_like(c)
    ratios = []
    cmax = float(c.detach().max()) if c.numel() else 0.0
    for n in range(max(n_terms, int(math.ceil(cmax))) + 60, 0, -1):
        r = c / (2.0 * n + c * r)
        if n <= n_terms:
            ratios.append(r)
    ratios.reverse()                                             # r_1 .. r_n_terms
    rho = torch.cumprod(torch.stack(ratios, dim=-1), dim=-1)
    return torch.cat([torch.ones_like(c)[..., None], rho], dim=-1)


def von_mises_cdf(t: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """CDF on ``(-pi, pi]`` of the von Mises law ``exp(kappa cos t) / (2 pi I_0(kappa))`` (module docstring).

    Examples
    --------
    >>> import math, torch
    >>> k = torch.tensor([0.0, 3.0], dtype=torch.float64)
    >>> [round(float(v), 12) for v in von_mises_cdf(torch.zeros(2, dtype=torch.float64), k)]
    [0.5, 0.5]
    >>> round(float(von_mises_cdf(torch.tensor(math.pi / 2, dtype=torch.float64), torch.tensor(0.0))), 12)
    0.75
    """
    n = _n_terms(kappa)
    rho = bessel_ratios(kappa, n)[..., 1:]
    k = torch.arange(1, n + 1, dtype=t.dtype, device=t.device)
    series = torch.sum(rho * torch.sin(k * t[..., None]) / k, dim=-1)
    return (t + _PI) / (2.0 * _PI) + series / _PI


def _su2_coefficients(c: torch.Tensor) -> torch.Tensor:
    """``d_j``, ``j = 0..n``: ``sin^2 u e^{c cos u} / I_0(c) = sum_j d_j cos(j u)`` (module docstring)."""
    n = _n_terms(c) + 2
    rho = bessel_ratios(c, n)
    cn = torch.cat([rho[..., :1], 2.0 * rho[..., 1:]], dim=-1)           # c_0 = 1, c_n = 2 rho_n
    zeros = torch.zeros_like(cn[..., :2])
    up = torch.cat([zeros, cn[..., :-2]], dim=-1)                        # c_{j-2} (n = j - 2)
    down = torch.cat([cn[..., 2:], zeros], dim=-1)                       # c_{j+2} (n = j + 2, |n - 2| = j)
    e = 0.5 * (up + down)
    # |n - 2| = j for n = 2 - j, j = 0, 1: c_2 -> j = 0 counted in `down`; c_1 -> j = 1 (n = 1) and c_0 -> j = 2
    e = e.clone()
    e[..., 1] = e[..., 1] + 0.5 * cn[..., 1]
    e[..., 2] = e[..., 2] + 0.5 * cn[..., 0]
    return 0.5 * (cn - e)


def su2_a0_cdf(a0: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """CDF of ``a_0`` in ``[-1, 1]`` with density ``propto sqrt(1 - a^2) e^{c a}`` (module docstring).

    Examples
    --------
    >>> import torch
    >>> c = torch.tensor([0.0, 4.0], dtype=torch.float64)
    >>> [round(float(v), 12) for v in su2_a0_cdf(torch.tensor([0.0, 1.0], dtype=torch.float64), c)]
    [0.5, 1.0]
    """
    d = _su2_coefficients(c)
    phi = torch.arccos(a0.clamp(-1.0, 1.0))
    j = torch.arange(1, d.shape[-1], dtype=a0.dtype, device=a0.device)
    tail = d[..., 0] * (_PI - phi) - torch.sum(d[..., 1:] * torch.sin(j * phi[..., None]) / j, dim=-1)
    return tail / (_PI * d[..., 0])


def _implicit(t: torch.Tensor, cdf: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """``t`` with the implicit-reparametrisation gradient ``-(dF/dc) / p`` (module docstring)."""
    if not cdf.requires_grad:
        return t
    tiny = torch.finfo(density.dtype).tiny ** 0.5
    return t - (cdf - cdf.detach()) / density.detach().clamp_min(tiny)


def check_staples(staples: Any, group: Group, n_staples: int, name: str = "staples") -> int:
    """Check a staple tensor ``(M, n_staples, *G)``; return ``M``.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> check_staples(torch.zeros(5, 2, dtype=torch.float64), lk.U1, 2)
    5
    >>> check_staples(torch.zeros(5, 3), lk.U1, 2)
    Traceback (most recent call last):
    ...
    ValueError: staples has shape (5, 3); expected (M, 2) (M links, 2 staples of U(1) each)
    """
    G = tuple(group.element_shape)
    want = f"(M, {', '.join(str(v) for v in (n_staples,) + G)})"
    if not isinstance(staples, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {want}, got {type(staples).__name__}")
    if staples.ndim != 2 + len(G) or tuple(staples.shape[1:]) != (n_staples,) + G:
        raise ValueError(f"{name} has shape {tuple(staples.shape)}; expected {want} (M links, {n_staples} staples "
                         f"of {group.name} each)")
    if isinstance(group, U1Group) and staples.is_complex():
        raise TypeError(f"{name}: U(1) staples are real angles; got a complex tensor")
    if isinstance(group, SUGroup) and not staples.is_complex():
        raise TypeError(f"{name}: SU(N) staples must be complex matrices; got dtype {staples.dtype}")
    return int(staples.shape[0])


def _check_links(U: Any, group: Group, m: int, name: str = "U") -> None:
    want = (m,) + tuple(group.element_shape)
    if not isinstance(U, torch.Tensor) or tuple(U.shape) != want:
        got = tuple(U.shape) if isinstance(U, torch.Tensor) else type(U).__name__
        raise ValueError(f"{name} has shape {got}; expected {want} (one {group.name} link per row of staples)")


class _LinkPrior(Prior):
    """A conditional one-link prior: ``context`` = staples ``(M, n, *G)``."""

    conditional = True

    def __init__(self, group: Group, n_staples: int) -> None:
        super().__init__()
        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or SU(N)")
        if isinstance(n_staples, bool) or not isinstance(n_staples, int) or n_staples < 0:
            raise ValueError(f"n_staples={n_staples!r}: expected a non-negative number of staples")
        self.group = group
        self.n_staples = int(n_staples)

    def _staples(self, context: Any, m: int | None = None) -> int:
        if self.n_staples == 0 and context is None:
            if m is None:
                raise ValueError("context: a prior without staples needs the number of links (sample(M, ...))")
            return m
        M = check_staples(context, self.group, self.n_staples, "context")
        if m is not None and M != m:
            raise ValueError(f"n={m} links but the staples hold {M} rows (context has shape {tuple(context.shape)})")
        return M


class HaarLinkPrior(_LinkPrior):
    """Haar-random links ``(M, *G)``, log-density 0; the staples (``context``) are checked and ignored.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> p = HaarLinkPrior(lk.SU(2), 1).to(torch.float64)
    >>> S = lk.SU(2).random(lk.backends.rng(0, backend="torch"), (3, 1))
    >>> U, lp = p.sample(3, lk.backends.rng(1, backend="torch"), context=S)
    >>> U.shape, lp.tolist()
    (torch.Size([3, 2, 2]), [0.0, 0.0, 0.0])
    """

    def extra_repr(self) -> str:
        return f"group={self.group.name}, n_staples={self.n_staples}"

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        M = self._staples(context, z.shape[0] if isinstance(z, torch.Tensor) and z.ndim else None)
        _check_links(z, self.group, M)
        return torch.zeros(M, dtype=self.dtype, device=z.device)

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_rng(rng)
        M = self._staples(context, n)
        if isinstance(self.group, U1Group):
            z = wrap_angle(rng.uniform((M,), low=-_PI, high=_PI, dtype=self.dtype))
        else:
            z = self.group.random(rng, (M,), precision="single" if self.dtype == torch.float32 else "double")
        z = z.to(self.device)
        return z, torch.zeros(M, dtype=self.dtype, device=self.device)


class _HeatbathPrior(_LinkPrior):
    def __init__(self, group: Group, n_staples: int, beta: float, learn_beta: bool) -> None:
        super().__init__(group, n_staples)
        if self.n_staples < 1:
            raise ValueError(f"n_staples={n_staples}: the heatbath-like prior (eq. 6) needs at least one staple")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta)):
            raise ValueError(f"beta={beta!r}: expected a finite initial staple weight")
        if learn_beta and beta == 0:
            # the staple sum A vanishes: the law is uniform and the pathwise gradient of a draw w.r.t. the weights
            # (through the direction of A, ~ 1/|A|) is undefined; training stopped at once on a NaN gradient norm
            raise ValueError("beta=0 with learn_beta=True: the gradient with respect to the staple weights is "
                             "singular at zero weights; start from beta != 0, or use the Haar prior (prior='haar')")
        b = torch.full((self.n_staples,), float(beta), dtype=torch.get_default_dtype())
        if learn_beta:
            self.beta = nn.Parameter(b)
        else:
            self.register_buffer("beta", b)

    def extra_repr(self) -> str:
        return f"n_staples={self.n_staples}, learn_beta={isinstance(self.beta, nn.Parameter)}"


class U1HeatbathPrior(_HeatbathPrior):
    """Eq. 6 for U(1): ``r(theta | S) = exp(kappa cos(theta - m)) / I_0(kappa)`` (module docstring).

    Parameters
    ----------
    n_staples : int
        Staples per link.
    beta : float
        Initial weight ``beta_i`` of every staple (eq. 6: ``beta~``).
    learn_beta : bool
        Make the weights trainable.

    Examples
    --------
    >>> import torch
    >>> p = U1HeatbathPrior(1, beta=0.0, learn_beta=False).to(torch.float64)   # beta = 0: the Haar prior
    >>> lp = p.log_prob(torch.tensor([0.5], dtype=torch.float64), context=torch.tensor([[1.0]], dtype=torch.float64))
    >>> float(lp.detach().abs().max())
    0.0
    """

    def __init__(self, n_staples: int, beta: float = 1.0, learn_beta: bool = True) -> None:
        from latticekit.groups import U1

        super().__init__(U1, n_staples, beta, learn_beta)

    def concentration(self, staples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kappa, m)`` of the law: ``A = sum_i beta_i e^{i sigma_i}``, ``kappa = |A|``, ``m = -arg A``."""
        b = self.beta.to(staples.dtype)
        re = torch.sum(b * torch.cos(staples), dim=-1)
        im = torch.sum(b * torch.sin(staples), dim=-1)
        return torch.sqrt(re * re + im * im), -torch.atan2(im, re)

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        M = self._staples(context)
        _check_links(z, self.group, M)
        kappa, m = self.concentration(context)
        # log[exp(kappa cos(theta - m)) / I_0(kappa)] = kappa (cos - 1) - log i0e(kappa)
        return kappa * (torch.cos(z - m) - 1.0) - torch.log(torch.special.i0e(kappa))

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_rng(rng)
        self._staples(context, n)
        kappa, m = self.concentration(context)
        # exact draw centred at 0, made in float64: the Best-Fisher envelope parameter loses all digits in float32
        # near kappa ~ 1e-4 (r - sqrt(2 r) ~ kappa^2 cancels) and the rejection loop then never accepts
        t = von_mises(rng, kappa.detach().to(torch.float64)).to(kappa.dtype)
        if kappa.requires_grad:
            dens = torch.exp(kappa * (torch.cos(t) - 1.0)) / (2.0 * _PI * torch.special.i0e(kappa))
            t = _implicit(t, von_mises_cdf(t, kappa), dens)
        z = wrap_angle(t + m)
        return z, self.log_prob(z, context)


class SU2HeatbathPrior(_HeatbathPrior):
    """Eq. 6 for SU(2): ``r(U | S) = exp((1/2) Re tr(U M)) / (2 I_1(k) / k)`` (module docstring).

    Parameters
    ----------
    n_staples : int
    beta : float
        Initial weight ``beta_i`` of every staple (``M = sum_i beta_i S_i``).
    learn_beta : bool

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> G = lk.SU(2)
    >>> p = SU2HeatbathPrior(2, beta=2.0).to(torch.float64)
    >>> S = G.random(lk.backends.rng(0, backend="torch"), (4, 2))
    >>> with torch.no_grad():
    ...     U, lp = p.sample(4, lk.backends.rng(1, backend="torch"), context=S)
    >>> bool(torch.allclose(lp, p.log_prob(U, context=S))), float(G.defect(U, nd=0).max()) < 1e-12
    (True, True)
    """

    def __init__(self, n_staples: int, beta: float = 1.0, learn_beta: bool = True) -> None:
        from latticekit.groups import SU

        super().__init__(SU(2), n_staples, beta, learn_beta)

    def concentration(self, staples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, V)`` with ``sum_i beta_i S_i = k V``, ``k = sqrt(det M) >= 0``, ``V`` in SU(2)."""
        b = self.beta.to(staples.real.dtype).to(staples.dtype)
        M = torch.sum(b[:, None, None] * staples, dim=-3)
        k = torch.sqrt(0.5 * torch.sum(M.real ** 2 + M.imag ** 2, dim=(-2, -1)))
        tiny = torch.finfo(k.dtype).tiny ** 0.5
        return k, M / k.clamp_min(tiny).to(M.dtype)[..., None, None]

    @staticmethod
    def _log_z(k: torch.Tensor) -> torch.Tensor:
        # log(2 I_1(k) / k) = k + log(2 i1e(k) / k); 2 i1e(k) / k -> 1 as k -> 0
        ks = k.clamp_min(1e-8)
        return ks + torch.log(2.0 * torch.special.i1e(ks) / ks)

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        M = self._staples(context)
        _check_links(z, self.group, M)
        k, V = self.concentration(context)
        a0 = 0.5 * self.group.re_trace(self.group.mul(z, V, nd=0), nd=0)
        return k * a0 - self._log_z(k)

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_rng(rng)
        self._staples(context, n)
        k, V = self.concentration(context)
        a0 = su2_heatbath_x0(rng, k.detach().to(torch.float64)).to(k.dtype)   # density sqrt(1 - a^2) e^{k a}
        if k.requires_grad:
            d0 = _su2_coefficients(k.detach())[..., 0]
            # p(a) = sqrt(1 - a^2) e^{k a} / (pi I_1(k) / k),  pi I_1 / k = pi d_0 I_0 (module docstring)
            dens = torch.sqrt((1.0 - a0 * a0).clamp_min(0.0)) * torch.exp(k.detach() * (a0 - 1.0)) / (
                _PI * d0 * torch.special.i0e(k.detach()))
            a0 = _implicit(a0, su2_a0_cdf(a0, k), dens)
        W = su2_random_with_x0(rng, a0, nd=0).to(V.dtype)               # a_0 + i sqrt(1 - a_0^2) n.sigma
        z = self.group.mul_adj(W, V, nd=0)                               # W = U V
        return z, self.log_prob(z, context)


_PRIORS = ("heatbath", "haar")


def heatbath_prior(group: Group, n_staples: int, kind: str = "heatbath", beta: float = 1.0,
                   learn_beta: bool = True) -> Prior:
    """The one-link prior of a staple-conditional model: ``kind = "heatbath"`` (eq. 6) or ``"haar"``.

    ``"heatbath"`` exists for U(1) and SU(2) (exactly normalised); SU(N) with N >= 3 raises (footnote 2
    of the paper: no closed-form normaliser); a link without staples gets the Haar prior.

    Examples
    --------
    >>> import latticekit as lk
    >>> type(heatbath_prior(lk.U1, 2)).__name__, type(heatbath_prior(lk.SU(3), 2, "haar")).__name__
    ('U1HeatbathPrior', 'HaarLinkPrior')
    >>> heatbath_prior(lk.SU(3), 2)
    Traceback (most recent call last):
    ...
    ValueError: prior='heatbath': the heatbath-like prior (eq. 6) of SU(3) has no closed-form normalisation (arXiv:2404.10819, footnote 2); use prior='haar' for SU(N) with N >= 3
    """
    if kind not in _PRIORS:
        raise ValueError(f"prior={kind!r}: expected one of {_PRIORS}")
    if not isinstance(group, (U1Group, SUGroup)):
        raise TypeError(f"group={group!r}: expected latticekit.U1 or SU(N)")
    if kind == "haar" or n_staples == 0:
        return HaarLinkPrior(group, n_staples)
    if isinstance(group, U1Group):
        return U1HeatbathPrior(n_staples, beta, learn_beta)
    if group.N == 2:
        return SU2HeatbathPrior(n_staples, beta, learn_beta)
    raise ValueError(f"prior='heatbath': the heatbath-like prior (eq. 6) of {group.name} has no closed-form "
                     f"normalisation (arXiv:2404.10819, footnote 2); use prior='haar' for SU(N) with N >= 3")
