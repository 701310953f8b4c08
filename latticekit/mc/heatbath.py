"""Heatbath and overrelaxation for the Wilson gauge action, U(1) and SU(N), any dimension.

Locality: ``S = -(beta/N) Re tr(U_mu(x) A_mu(x)) + (terms without U_mu(x))`` with the staple sum
``A_mu(x)`` (:func:`latticekit.actions.staples`). Two links ``U_mu(x)``, ``U_mu(y)`` of the same
direction share a plaquette only if ``y = x +- nu``, i.e. if ``x`` and ``y`` have opposite parity.
A sweep therefore updates the ``2 Nd`` classes (direction ``mu``, site parity) one after the other;
inside a class all links are updated at once (array code with ``xp.where`` on the parity mask, no
loop over sites).

U(1): the conditional density of ``theta = theta_mu(x)`` is ``exp(kappa cos(theta + alpha))`` with
``kappa = beta |A|``, ``alpha = arg A``: a von Mises law, sampled exactly by the Best-Fisher wrapped
Cauchy rejection method (Best & Fisher, Appl. Stat. 28 (1979) 152), vectorised with masked retries
(:func:`von_mises`).

SU(N): Cabibbo-Marinari pseudo-heatbath (Phys. Lett. B 119 (1982) 387): for every SU(2) subgroup
``(i, j)`` the link is multiplied from the left by ``R = embed(r)``, with ``r`` drawn from the exact
conditional density ``exp((beta/N) Re tr(r w))``, ``w`` the quaternion part of the ``(i, j)`` block of
``W = U A``. Writing ``w = k v`` (``k = sqrt(det w)``, ``v`` in SU(2)), ``y = r v`` is distributed as
``sqrt(1 - y0^2) exp(a y0)`` in its real part ``y0`` with ``a = 2 beta k / N``; ``y0`` comes from the
Kennedy-Pendleton algorithm (Phys. Lett. B 156 (1985) 393) for a bounded number of rounds and from
Creutz's method (Phys. Rev. D 21 (1980) 2308) for the few sites still pending (exact either way:
the proposal only depends on the round, never on a rejected value). Then ``r = y v^dagger``.

Overrelaxation (microcanonical, Adler; Creutz, Phys. Rev. D 36 (1987) 515; Brown & Woch, Phys.
Rev. Lett. 58 (1987) 2394): U(1) ``theta -> -theta - 2 alpha``; SU(N) per subgroup ``r = (v^dagger)^2``.
Both keep ``Re tr(U A)`` and hence the action exactly, and are involutions that preserve the Haar
measure.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.mc import Heatbath
>>> lat = lk.Lattice((4, 4))
>>> hb = Heatbath(lk.U1, lat, beta=1.0, rng=lk.backends.rng(0), n_overrelax=1)
>>> U = lk.gauge.cold_gauge_field(lk.U1, lat, (8,))
>>> U, hist = hb.run(U, 5)
>>> U.shape
(8, 2, 4, 4)
"""

from __future__ import annotations

import math
from typing import Any

from latticekit.backends import Generator, array_namespace, check_rng, device
from latticekit.gauge import check_gauge_field, link, stack_links
from latticekit.groups import SU, Group, SUGroup, U1Group, wrap_angle
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder

from .base import Sampler, StepInfo, _is_int
from .fields import field_kind

__all__ = ["Heatbath", "HeatbathConvergenceError", "staple_sum", "su2_heatbath_x0", "su2_random_with_x0", "von_mises"]

_TWO_PI = 2.0 * math.pi


class HeatbathConvergenceError(RuntimeError):
    """A rejection sampler left sites unaccepted after its hard round limit (never expected)."""


# ------------------------------------------------------------------------------- samplers
def von_mises(rng: Generator, kappa: Any, loc: Any = None, max_rounds: int = 1000) -> Any:
    """Exact samples of the von Mises law ``exp(kappa cos(theta - loc)) / (2 pi I_0(kappa))``.

    Best-Fisher rejection from a wrapped Cauchy envelope (acceptance >= 0.66 for every kappa),
    vectorised: every round draws candidates for all sites and keeps them where accepted and still
    pending; wrapped normal for ``kappa > 1e6``.

    Parameters
    ----------
    rng : Generator
    kappa : array
        Concentrations ``>= 0`` (any shape; the output has the same shape and dtype).
    loc : array, optional
        Mean directions (default 0).
    max_rounds : int
        Hard limit on rejection rounds (the chance to need more than 60 is below 1e-28 per site).

    Returns
    -------
    array
        Angles in ``(-pi, pi]``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> th = von_mises(lk.backends.rng(0), np.full(20000, 2.0))
    >>> from scipy.special import i0, i1
    >>> bool(abs(np.cos(th).mean() - i1(2.0) / i0(2.0)) < 0.02)
    True
    """
    xp = array_namespace(kappa)
    dt = kappa.dtype
    shape = tuple(kappa.shape)
    tiny = 1e-12
    k = xp.where(kappa > tiny, kappa, xp.full_like(kappa, tiny))
    small = k < 1e-5
    kl = xp.where(small, xp.ones_like(k), k)
    q = xp.sqrt(1.0 + 4.0 * kl * kl)
    r = 1.0 + q
    # rho = (r - sqrt(2r)) / (2k) without the cancellation of r - sqrt(2r) at small k (which left float32
    # with rho = 0 and a rejection loop that never accepts near k ~ 1e-4): r - sqrt(2r) = r (r - 2) /
    # (r + sqrt(2r)) and r - 2 = q - 1 = 4k^2 / (q + 1)
    rho = 2.0 * kl * r / ((r + xp.sqrt(2.0 * r)) * (q + 1.0))
    s = xp.where(small, 1.0 / k + k, (1.0 + rho * rho) / (2.0 * rho))
    out = xp.zeros_like(k)
    done = xp.zeros(shape, dtype=xp.bool, device=_dev(kappa))
    for _ in range(max_rounds):
        u1 = rng.uniform(shape, dtype=dt)
        u2 = rng.uniform(shape, dtype=dt)
        u3 = rng.uniform(shape, dtype=dt)
        z = xp.cos(math.pi * u1)
        w = (1.0 + s * z) / (s + z)
        y = k * (s - w)
        ok = (y * (2.0 - y) - u2 >= 0.0) | (xp.log(y / u2) + 1.0 - y >= 0.0)
        th = xp.acos(xp.clip(w, -1.0, 1.0))
        th = xp.where(u3 < 0.5, -th, th)
        new = ok & ~done
        out = xp.where(new, th, out)
        done = done | ok
        if bool(xp.all(done)):
            break
    else:
        raise HeatbathConvergenceError(f"von_mises: sites still pending after max_rounds={max_rounds}")
    big = kappa > 1e6
    if bool(xp.any(big)):
        g = rng.normal(shape, dtype=dt) / xp.sqrt(xp.where(big, kappa, xp.ones_like(kappa)))
        out = xp.where(big, g, out)
    if loc is not None:
        out = out + loc
    return wrap_angle(out)


def su2_heatbath_x0(rng: Generator, a: Any, kp_rounds: int = 6, max_rounds: int = 2000) -> Any:
    """Exact samples of ``y0`` in ``[-1, 1]`` with density ``sqrt(1 - y0^2) exp(a y0)``, ``a >= 0``.

    Kennedy-Pendleton for the first ``kp_rounds`` rounds (acceptance -> 1 for large ``a``), then
    Creutz (exact inversion of ``exp(a y0)``, accept with ``sqrt(1 - y0^2)``; good for small ``a``)
    for the sites still pending. Sites are never mixed between rounds, so the result is exact.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> from scipy.special import iv
    >>> y0 = su2_heatbath_x0(lk.backends.rng(0), np.full(40000, 3.0))
    >>> bool(abs(y0.mean() - iv(2, 3.0) / iv(1, 3.0)) < 0.01)
    True
    """
    xp = array_namespace(a)
    dt = a.dtype
    shape = tuple(a.shape)
    tiny = 1e-12
    asafe = xp.where(a > tiny, a, xp.full_like(a, tiny))
    out = xp.zeros_like(asafe)
    done = xp.zeros(shape, dtype=xp.bool, device=_dev(a))
    em = xp.expm1(-2.0 * asafe)  # e^{-2a} - 1 in (-1, 0)
    for rnd in range(max_rounds):
        if rnd < kp_rounds:
            r1 = 1.0 - rng.uniform(shape, dtype=dt)
            r2 = rng.uniform(shape, dtype=dt)
            r3 = 1.0 - rng.uniform(shape, dtype=dt)
            r4 = rng.uniform(shape, dtype=dt)
            c = xp.cos(_TWO_PI * r2)
            lam2 = -(xp.log(r1) + c * c * xp.log(r3)) / (2.0 * asafe)
            cand = 1.0 - 2.0 * lam2
            ok = (r4 * r4 <= 1.0 - lam2) & (cand >= -1.0)
        else:
            r1 = rng.uniform(shape, dtype=dt)
            r2 = rng.uniform(shape, dtype=dt)
            # inversion of exp(a y) on [-1, 1]: y = 1 + log(1 + (1 - r) (e^{-2a} - 1)) / a
            cand = xp.clip(1.0 + xp.log1p((1.0 - r1) * em) / asafe, -1.0, 1.0)
            ok = r2 * r2 <= 1.0 - cand * cand
        new = ok & ~done
        out = xp.where(new, cand, out)
        done = done | ok
        if bool(xp.all(done)):
            return out
    raise HeatbathConvergenceError(f"su2_heatbath_x0: sites still pending after max_rounds={max_rounds}")


def su2_random_with_x0(rng: Generator, y0: Any, nd: int) -> Any:
    """SU(2) matrices ``y0 + i y.sigma`` with given real part ``y0`` (shape ``(*B, *S)``) and a uniformly
    random direction of ``y`` (``|y| = sqrt(1 - y0^2)``); returns ``(*B, 2, 2, *S)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> Y = su2_random_with_x0(lk.backends.rng(0), np.array([0.3, -0.5]), nd=1)
    >>> Y.shape, bool(np.allclose(Y[0, 0] + Y[1, 1], [0.6, -1.0]))
    ((2, 2, 2), True)
    """
    xp = array_namespace(y0)
    dt = y0.dtype
    shape = tuple(y0.shape)
    ct = xp.complex64 if dt == xp.float32 else xp.complex128
    rad = xp.sqrt(xp.clip(1.0 - y0 * y0, 0.0, 1.0))
    cth = rng.uniform(shape, low=-1.0, high=1.0, dtype=dt)
    phi = rng.uniform(shape, low=0.0, high=_TWO_PI, dtype=dt)
    sth = xp.sqrt(xp.clip(1.0 - cth * cth, 0.0, 1.0))
    y1, y2, y3 = rad * sth * xp.cos(phi), rad * sth * xp.sin(phi), rad * cth

    def cplx(re: Any, im: Any) -> Any:
        return xp.astype(re, ct) + 1j * xp.astype(im, ct)

    p = cplx(y0, y3)
    q = cplx(y2, y1)
    # [[p, q], [-conj q, conj p]] = y0 + i (y1 sx + y2 sy + y3 sz)
    rows = [[p, q], [-xp.conj(q), xp.conj(p)]]
    return xp.stack([xp.stack(r, axis=-nd - 1) for r in rows], axis=-nd - 2)


def _dev(x: Any) -> Any:
    return device(x)


# ------------------------------------------------------------------------------- staples
def staple_sum(U: Any, mu: int, group: Group, lattice: Lattice) -> Any:
    """Staple sum ``A_mu(x)`` of the links of one direction ``mu`` (the ``mu`` component of
    :func:`latticekit.actions.staples`, computed without the other directions, by
    :meth:`latticekit.loops.LoopBuilder.staple_sum`).

    Returns ``(*B, N, N, *L)`` complex matrices for SU(N), ``(*B, *L)`` complex numbers
    ``sum exp(i alpha_staple)`` for U(1).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4, 4))
    >>> A = staple_sum(lk.gauge.cold_gauge_field(lk.U1, lat), 0, lk.U1, lat)
    >>> complex(A[0, 0, 0])
    (4+0j)
    """
    return LoopBuilder(U, group, lattice).staple_sum(mu)


# ------------------------------------------------------------------------------- link updates
def _u1_heatbath(rng: Generator, theta: Any, A: Any, beta: Any) -> Any:
    xp = array_namespace(A)
    kappa = beta * xp.abs(A)
    alpha = xp.atan2(xp.imag(A), xp.real(A))
    # weight exp(kappa cos(theta + alpha)): von Mises centred at -alpha
    return von_mises(rng, kappa, -alpha)


def _u1_overrelax(theta: Any, A: Any) -> Any:
    xp = array_namespace(A)
    alpha = xp.atan2(xp.imag(A), xp.real(A))
    return wrap_angle(-theta - 2.0 * alpha)


def _su2_parts(w: Any, nd: int) -> tuple[Any, Any, Any]:
    """``w = k v`` for a quaternion-form 2x2 field: returns ``(k, v, v^dagger)``."""
    xp = array_namespace(w)
    p = w[(..., 0, 0) + (slice(None),) * nd]
    q = w[(..., 0, 1) + (slice(None),) * nd]
    k = xp.sqrt(xp.real(p) ** 2 + xp.imag(p) ** 2 + xp.real(q) ** 2 + xp.imag(q) ** 2)
    tiny = 1e-300 if k.dtype == xp.float64 else 1e-30
    ok = k > tiny
    ksafe = xp.where(ok, k, xp.ones_like(k))
    ct = w.dtype
    pk = xp.where(ok, p / xp.astype(ksafe, ct), xp.ones_like(p))
    qk = xp.where(ok, q / xp.astype(ksafe, ct), xp.zeros_like(q))

    def mat(a: Any, b: Any) -> Any:
        rows = [[a, b], [-xp.conj(b), xp.conj(a)]]
        return xp.stack([xp.stack(r, axis=-nd - 1) for r in rows], axis=-nd - 2)

    return k, mat(pk, qk), mat(xp.conj(pk), -qk)


def _su2_mul(a: Any, b: Any, nd: int) -> Any:
    return SU(2).mul(a, b, nd=nd)


def _sun_update(rng: Generator | None, U: Any, A: Any, beta: Any, group: SUGroup, nd: int,
                kp_rounds: int) -> Any:
    """Cabibbo-Marinari heatbath (``rng`` given) or overrelaxation (``rng=None``) of all links ``U``."""
    W = group.mul(U, A, nd=nd)
    for i, j in group.su2_subgroups():
        w = group.su2_extract(W, i, j, nd=nd)
        k, v, vd = _su2_parts(w, nd)
        if rng is None:
            r = _su2_mul(vd, vd, nd)
        else:
            a = (2.0 / group.N) * beta * k
            y0 = su2_heatbath_x0(rng, a, kp_rounds=kp_rounds)
            r = _su2_mul(su2_random_with_x0(rng, y0, nd), vd, nd)
        R = group.su2_embed(r, i, j, nd=nd)
        U = group.mul(R, U, nd=nd)
        W = group.mul(R, W, nd=nd)
    return U


# ------------------------------------------------------------------------------- the sampler
class Heatbath(Sampler):
    """Heatbath + overrelaxation sweeps for the Wilson gauge action (batched chains).

    One :meth:`step` is ``n_heatbath`` heatbath sweeps followed by ``n_overrelax`` overrelaxation
    sweeps; each sweep visits the ``2 Nd`` independent classes (direction, parity).

    Parameters
    ----------
    group : Group
        ``latticekit.U1`` or ``latticekit.SU(N)``.
    lattice : Lattice
        At least two dimensions, even extents (so that the parity classes are independent).
    beta : float
        Wilson coupling, ``S = -(beta/N) sum Re tr P``.
    rng : Generator
        Explicit random stream of the fields' backend.
    n_heatbath, n_overrelax : int
        Sweeps per step.
    normalize_every : int or None
        Reunitarise SU(N) links every this many steps (U(1) angles are always wrapped).
    kp_rounds : int
        Kennedy-Pendleton rounds before the Creutz fallback (SU(N)).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(2)
    >>> hb = Heatbath(G, lat, beta=2.0, rng=lk.backends.rng(0), n_overrelax=2)
    >>> U, _ = hb.run(lk.gauge.cold_gauge_field(G, lat, (2,)), 3)
    >>> float(G.defect(U, nd=2).max()) < 1e-12
    True
    """

    def __init__(self, group: Group, lattice: Lattice, beta: float, *, rng: Generator, n_heatbath: int = 1,
                 n_overrelax: int = 0, normalize_every: int | None = 10, kp_rounds: int = 6) -> None:
        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or an SU(N) group")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if lattice.nd < 2:
            raise ValueError(f"lattice={lattice}: the Wilson gauge action needs at least 2 dimensions")
        odd = [L for L in lattice.shape if L % 2]
        if odd:
            raise ValueError(f"lattice={lattice}: heatbath needs even extents (the parity classes of links "
                             f"must not interact); got odd extents {odd}")
        check_rng(rng)
        if isinstance(beta, (int, float)) and not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta={beta!r}: expected a finite number >= 0")
        for name, v in (("n_heatbath", n_heatbath), ("n_overrelax", n_overrelax)):
            if not _is_int(v) or v < 0:
                raise ValueError(f"{name}={v!r}: expected a non-negative integer")
        if n_heatbath + n_overrelax == 0:
            raise ValueError("n_heatbath + n_overrelax must be >= 1")
        if normalize_every is not None and (not _is_int(normalize_every) or normalize_every < 1):
            raise ValueError(f"normalize_every={normalize_every!r}: expected a positive integer or None")
        self.group, self.lattice, self.beta = group, lattice, beta
        self.rng = rng
        self.n_heatbath, self.n_overrelax = int(n_heatbath), int(n_overrelax)
        self.normalize_every = None if normalize_every is None else int(normalize_every)
        self.kp_rounds = kp_rounds
        self.steps = 0

    @classmethod
    def from_action(cls, action: Any, *, rng: Generator, **kwargs: Any) -> "Heatbath":
        """Build from a ``latticekit.actions.WilsonGaugeAction`` (uses its group, lattice and beta)."""
        for attr in ("group", "lattice", "beta"):
            if not hasattr(action, attr):
                raise TypeError(f"action={action!r}: expected a WilsonGaugeAction (missing '{attr}')")
        return cls(action.group, action.lattice, action.beta, rng=rng, **kwargs)

    # -- sweeps --------------------------------------------------------------------------------
    def _sweep(self, U: Any, heatbath: bool) -> Any:
        group, lattice = self.group, self.lattice
        check_gauge_field(U, group, lattice)
        nd = lattice.nd
        xp = array_namespace(U)
        par = lattice.parity(like=U)
        links = [link(U, mu, group, lattice) for mu in range(nd)]
        for mu in range(nd):
            for parity in (0, 1):
                mask = par == parity
                A = LoopBuilder.from_links(links, group, lattice).staple_sum(mu)
                old = links[mu]
                if isinstance(group, U1Group):
                    new = _u1_heatbath(self.rng, old, A, self.beta) if heatbath else _u1_overrelax(old, A)
                else:
                    new = _sun_update(self.rng if heatbath else None, old, A, self.beta, group, nd,
                                      self.kp_rounds)
                links[mu] = xp.where(mask, new, old)
        return stack_links(links, group, lattice)

    def heatbath_sweep(self, U: Any) -> Any:
        """One heatbath sweep over all links (exact conditional sampling per link / SU(2) subgroup)."""
        return self._sweep(U, heatbath=True)

    def overrelax_sweep(self, U: Any) -> Any:
        """One overrelaxation sweep (keeps the action exactly; deterministic)."""
        return self._sweep(U, heatbath=False)

    def step(self, U: Any) -> tuple[Any, StepInfo]:
        """``n_heatbath`` heatbath sweeps then ``n_overrelax`` overrelaxation sweeps."""
        kind = field_kind(self.lattice, self.group)
        kind.check(U, "U")
        kind.check_values(U, "U")      # a NaN or non-unitary field came back as such (user probe)
        if self.n_heatbath:
            check_rng(self.rng, like=U)
        for _ in range(self.n_heatbath):
            U = self.heatbath_sweep(U)
        for _ in range(self.n_overrelax):
            U = self.overrelax_sweep(U)
        self.steps += 1
        extras: dict[str, Any] = {"normalized": False}
        if isinstance(self.group, SUGroup) and self.normalize_every is not None \
                and self.steps % self.normalize_every == 0:
            U = self.group.normalize(U, nd=self.lattice.nd)
            extras["normalized"] = True
        return U, StepInfo(extras=extras)

    def __repr__(self) -> str:
        return (f"Heatbath({self.group!r}, {self.lattice!r}, beta={self.beta!r}, n_heatbath={self.n_heatbath}, "
                f"n_overrelax={self.n_overrelax})")
