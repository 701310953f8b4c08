"""Scalar-field observables: magnetisation, susceptibilities, two-point functions, correlation length.

Normalisations (``V`` = number of sites, ``M = (1/V) sum_x phi(x)``):

* ``two_point(phi)[x] = G(x) = (1/V) sum_y phi(y) phi(y + x)`` per configuration (computed with FFTs,
  ``O(V log V)``), so ``sum_x G(x) = V M^2``.
* ``two_point_momentum(phi)[p] = |phi~(p)|^2 / V = sum_x G(x) exp(-i p x)`` with
  ``phi~(p) = sum_x phi(x) exp(-i p x)``, ``p_mu = 2 pi k_mu / L_mu`` in FFT order.
* ``connected_two_point(phi) = <G(x)> - <M>^2`` (ensemble average over axis 0).
* ``zero_momentum_correlator(phi, mu)[t] = sum_{x_perp} G(t, x_perp)``
  ``= (1/V) sum_{t0} Phi(t0) Phi(t0 + t)`` with the slice sums ``Phi(t) = sum_{x_perp} phi(t, x_perp)``.
* Susceptibilities over the ensemble axis 0: ``"full"`` ``chi = V <M^2>``, ``"connected"``
  ``chi = V (<M^2> - <M>^2)``, ``"abs"`` ``chi = V (<M^2> - <|M|>^2)`` (the finite-volume estimator
  used in the broken phase, where ``<M> = 0`` by symmetry but ``<|M|> != 0``).
* Second-moment correlation length from ``G~(p)`` at ``p = 0`` and ``p_min = 2 pi / L_mu``:
  ``xi^2 = (G~(0) / G~(p_min) - 1) / (4 sin^2(p_min / 2))``.
"""

from __future__ import annotations

import math
from typing import Any

from latticekit.backends import array_namespace
from latticekit.lattice import Lattice

__all__ = [
    "abs_magnetization",
    "connected_two_point",
    "correlation_length_second_moment",
    "magnetization",
    "susceptibility",
    "two_point",
    "two_point_momentum",
    "zero_momentum_correlator",
]


def _check(phi: Any, lattice: Lattice, name: str = "phi", ensemble: bool = False) -> None:
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    lattice.check(phi, name)
    xp = array_namespace(phi)
    if not xp.isdtype(phi.dtype, "real floating"):
        raise TypeError(f"{name} has dtype {phi.dtype}; expected a real floating field (*B, *L)")
    if ensemble and phi.ndim < lattice.nd + 1:
        raise ValueError(f"{name} has shape {tuple(phi.shape)}; expected an ensemble axis first: "
                         f"(n_configs, *B, {', '.join(map(str, lattice.shape))})")


def _sites(lattice: Lattice) -> tuple[int, ...]:
    return tuple(range(-lattice.nd, 0))


def magnetization(phi: Any, lattice: Lattice) -> Any:
    """``M = (1/V) sum_x phi(x)``, shape ``(*B,)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> float(magnetization(np.full((4, 4), 0.5), lk.Lattice((4, 4))))
    0.5
    """
    _check(phi, lattice)
    return array_namespace(phi).mean(phi, axis=_sites(lattice))


def abs_magnetization(phi: Any, lattice: Lattice) -> Any:
    """``|M|``, shape ``(*B,)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> float(abs_magnetization(np.full((4, 4), -0.5), lk.Lattice((4, 4))))
    0.5
    """
    return array_namespace(phi).abs(magnetization(phi, lattice))


def susceptibility(phi: Any, lattice: Lattice, kind: str = "connected") -> Any:
    """Susceptibility over the ensemble axis 0 of ``phi`` (``(n, *B, *L)`` -> ``(*B,)``).

    Parameters
    ----------
    phi : array
        Ensemble of fields, configurations on axis 0.
    lattice : Lattice
    kind : {"connected", "full", "abs"}
        ``V (<M^2> - <M>^2)``, ``V <M^2>`` or ``V (<M^2> - <|M|>^2)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((2, 2)); phi = np.stack([np.ones((2, 2)), -np.ones((2, 2))])
    >>> [float(susceptibility(phi, lat, k)) for k in ("connected", "full", "abs")]
    [4.0, 4.0, 0.0]
    """
    _check(phi, lattice, ensemble=True)
    if kind not in ("connected", "full", "abs"):
        raise ValueError(f"kind={kind!r}: expected 'connected', 'full' or 'abs'")
    xp = array_namespace(phi)
    M = magnetization(phi, lattice)
    m2 = xp.mean(M * M, axis=0)
    if kind == "full":
        sub = xp.zeros_like(m2)
    elif kind == "connected":
        m = xp.mean(M, axis=0)
        sub = m * m
    else:
        m = xp.mean(xp.abs(M), axis=0)
        sub = m * m
    return lattice.volume * (m2 - sub)


def _fft_axes(lattice: Lattice) -> tuple[int, ...]:
    return tuple(range(-lattice.nd, 0))


def two_point(phi: Any, lattice: Lattice) -> Any:
    """``G(x) = (1/V) sum_y phi(y) phi(y + x)`` per configuration, shape ``(*B, *L)`` (via FFT).

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4,)); phi = np.array([1.0, 0.0, 0.0, 0.0])
    >>> np.round(two_point(phi, lat), 12).tolist()
    [0.25, 0.0, 0.0, 0.0]
    """
    _check(phi, lattice)
    xp = array_namespace(phi)
    ax = _fft_axes(lattice)
    ft = xp.fft.rfftn(phi, axes=ax)
    power = xp.real(ft) ** 2 + xp.imag(ft) ** 2
    g = xp.fft.irfftn(xp.astype(power, ft.dtype), s=lattice.shape, axes=ax)
    return g / lattice.volume


def two_point_momentum(phi: Any, lattice: Lattice) -> Any:
    """``G~(p) = |phi~(p)|^2 / V``, shape ``(*B, *L)`` with ``p_mu = 2 pi k_mu / L_mu`` in FFT order.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> float(two_point_momentum(np.ones((4, 4)), lk.Lattice((4, 4)))[0, 0])   # V M^2
    16.0
    """
    _check(phi, lattice)
    xp = array_namespace(phi)
    ct = xp.complex64 if phi.dtype == xp.float32 else xp.complex128
    ft = xp.fft.fftn(xp.astype(phi, ct), axes=_fft_axes(lattice))
    return (xp.real(ft) ** 2 + xp.imag(ft) ** 2) / lattice.volume


def connected_two_point(phi: Any, lattice: Lattice) -> Any:
    """Connected ``<G(x)> - <M>^2`` over the ensemble axis 0: ``(n, *B, *L) -> (*B, *L)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4,)); phi = np.ones((3, 4))
    >>> connected_two_point(phi, lat).tolist()     # a constant field has no fluctuations
    [0.0, 0.0, 0.0, 0.0]
    """
    _check(phi, lattice, ensemble=True)
    xp = array_namespace(phi)
    G = xp.mean(two_point(phi, lattice), axis=0)
    m = xp.mean(magnetization(phi, lattice), axis=0)
    m = xp.reshape(m, tuple(m.shape) + (1,) * lattice.nd)
    return G - m * m


def zero_momentum_correlator(phi: Any, lattice: Lattice, mu: int = 0) -> Any:
    """``C(t) = sum_{x_perp} G(t e_mu + x_perp)``, shape ``(*B, L_mu)`` (time-slice correlator).

    ``C(t) = (1/V) sum_{t0} Phi(t0) Phi(t0 + t)`` with slice sums ``Phi``; ``sum_t C(t) = V M^2``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4, 2)); phi = np.ones((4, 2))
    >>> zero_momentum_correlator(phi, lat).tolist()
    [2.0, 2.0, 2.0, 2.0]
    """
    _check(phi, lattice)
    if isinstance(mu, bool) or not isinstance(mu, int) or not 0 <= mu < lattice.nd:
        raise ValueError(f"mu={mu!r}: expected a direction in 0..{lattice.nd - 1}")
    xp = array_namespace(phi)
    other = tuple(lattice.axis(d) for d in range(lattice.nd) if d != mu)
    Phi = xp.sum(phi, axis=other) if other else phi
    L = lattice.shape[mu]
    ft = xp.fft.rfft(Phi, axis=-1)
    power = xp.real(ft) ** 2 + xp.imag(ft) ** 2
    return xp.fft.irfft(xp.astype(power, ft.dtype), n=L, axis=-1) / lattice.volume


def correlation_length_second_moment(G: Any, lattice: Lattice, mu: int | None = None) -> Any:
    """Second-moment correlation length from a position-space two-point function ``G`` (``(*B, *L)``).

    ``xi^2 = (G~(0) / G~(p_min) - 1) / (4 sin^2(p_min / 2))`` with ``G~(p) = sum_x G(x) cos(p x_mu)`` and
    ``p_min = 2 pi / L_mu``. With ``mu=None`` ``G~(p_min)`` is averaged over all directions (which then
    must have equal extents). Returns ``xi`` (NaN where the estimate of ``xi^2`` is negative), shape ``(*B,)``.
    Pass an ensemble average (e.g. :func:`connected_two_point`), not a single configuration.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((16,)); m = 0.5
    >>> x = np.arange(16); G = np.cosh(m * (x - 8))   # lattice propagator with M = 2 sinh(m/2)
    >>> xi = float(correlation_length_second_moment(G, lat))
    >>> bool(abs(xi - 1 / (2 * np.sinh(m / 2))) < 1e-12)
    True
    """
    _check(G, lattice, "G")     # a tuple as lattice was an AttributeError, a complex G gave nan+0j (user probe)
    xp = array_namespace(G)
    dirs = list(range(lattice.nd)) if mu is None else [mu]
    for d in dirs:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < lattice.nd:
            raise ValueError(f"mu={mu!r}: expected None or a direction in 0..{lattice.nd - 1}")
    Ls = {lattice.shape[d] for d in dirs}
    if len(Ls) != 1:
        raise ValueError(f"mu=None needs equal extents in all directions, got {lattice.shape}; pass mu")
    L = Ls.pop()
    if L < 2:
        raise ValueError(f"lattice={lattice}: a nonzero momentum needs L_mu >= 2")
    sites = _sites(lattice)
    g0 = xp.sum(G, axis=sites)
    c = lattice.coords(like=G)
    rdt = xp.float32 if G.dtype == xp.float32 else xp.float64
    gp = None
    for d in dirs:
        w = xp.cos(xp.astype(c[d, ...], rdt) * (2.0 * math.pi / L))
        t = xp.sum(G * w, axis=sites)
        gp = t if gp is None else gp + t
    gp = gp / len(dirs)
    xi2 = (g0 / gp - 1.0) / (4.0 * math.sin(math.pi / L) ** 2)
    nan = xp.full_like(xi2, math.nan)
    return xp.where(xi2 >= 0, xp.sqrt(xp.where(xi2 >= 0, xi2, xp.zeros_like(xi2))), nan)
