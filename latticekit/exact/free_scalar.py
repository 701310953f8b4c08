r"""Exact results for the free (Gaussian) lattice scalar field on a periodic lattice of any ``Nd``.

The free field is phi^4 at zero quartic coupling.  Three parametrisations are accepted (see
:mod:`latticekit.exact.phi4_conventions`):

* hopping form (``kappa=``): ``S = sum_x [phi_x^2 - 2 kappa sum_mu phi_x phi_{x+mu}] = 1/2 phi^T M phi``
  with ``M = 2 [delta_{xy} - kappa sum_mu (delta_{y,x+mu} + delta_{y,x-mu})]``;
* (m^2) form, ``normalization="half"`` (``m2=``): ``S = sum_x [1/2 sum_mu (d_mu phi)^2 + m^2/2 phi^2]``;
* (m^2) form, ``normalization="unit"``: ``S = sum_x [sum_mu (d_mu phi)^2 + m^2 phi^2]``.

In momentum space (``p_mu = 2 pi n_mu / L_mu``, ``phat^2 = sum_mu 4 sin^2(p_mu/2)``) all three are
``G~(p) = c / (phat^2 + m^2)`` with ``c = 1/(2 kappa)`` and ``m^2 = 1/kappa - 2 Nd`` (hopping),
``c = 1`` ("half") or ``c = 1/2`` ("unit").  The propagator is
``G(x) = <phi_0 phi_x> = (1/V) sum_p e^{i p x} G~(p)`` (an inverse FFT), and the Gaussian integral
(Lebesgue measure ``prod_x dphi_x``) gives ``ln Z = (V/2) ln(2 pi) + (1/2) sum_p ln G~(p)``.
The zero mode requires ``m^2 > 0`` (``kappa < 1/(2 Nd)``).

Results are computed on the host with NumPy and returned through ``latticekit.backends``
(``backend=``/``device=``, default: the current default backend).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._numerics import check_int, check_shape

__all__ = [
    "free_scalar_log_z",
    "free_scalar_momentum_propagator",
    "free_scalar_pole_mass",
    "free_scalar_propagator",
    "free_scalar_second_moment_correlation_length",
    "free_scalar_susceptibility",
    "free_scalar_timeslice_correlator",
]


def _mass_and_scale(nd: int, kappa: float | None, m2: float | None, normalization: str) -> tuple[float, float]:
    """Return ``(m^2, c)`` with ``G~(p) = c / (phat^2 + m^2)``."""
    if (kappa is None) == (m2 is None):
        raise ValueError("give exactly one of kappa= (hopping form) or m2= ((m^2, lambda) form)")
    for name, v in (("kappa", kappa), ("m2", m2)):
        # True was read as 1, and a string such as "0.2" was converted by float() (user probe)
        if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)):
            raise TypeError(f"{name} must be a real number, got {v!r}")
    if kappa is not None:
        k = float(kappa)
        if not math.isfinite(k) or k <= 0:
            raise ValueError(f"kappa must be finite and > 0, got {kappa!r}")
        mass2, c = 1.0 / k - 2.0 * nd, 1.0 / (2.0 * k)
    else:
        if normalization not in ("half", "unit"):
            raise ValueError(f"normalization must be 'half' or 'unit', got {normalization!r}")
        mass2 = float(m2)
        c = 1.0 if normalization == "half" else 0.5
    if not (mass2 > 0 and math.isfinite(mass2)):
        raise ValueError(
            f"the free field needs m^2 > 0 (kappa < 1/(2 Nd) = {1 / (2 * nd)}); got m^2 = {mass2!r}"
        )
    return mass2, c


def _phat2(shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape)
    for mu, L in enumerate(shape):
        p = 2.0 * np.pi * np.arange(L) / L
        s = (4.0 * np.sin(0.5 * p) ** 2).reshape([L if i == mu else 1 for i in range(len(shape))])
        out = out + s
    return out


def _to_backend(a: np.ndarray, backend: str | None, device: Any) -> Any:
    try:
        from latticekit.backends import from_numpy
    except ImportError:  # core not available: plain NumPy
        return a
    return from_numpy(a, backend=backend, device=device)


def _gtilde(shape: Sequence[int], kappa: float | None, m2: float | None, normalization: str) -> np.ndarray:
    shp = check_shape(shape)
    mass2, c = _mass_and_scale(len(shp), kappa, m2, normalization)
    return c / (_phat2(shp) + mass2)


def free_scalar_momentum_propagator(
    shape: Sequence[int],
    *,
    kappa: float | None = None,
    m2: float | None = None,
    normalization: str = "half",
    backend: str | None = None,
    device: Any = None,
) -> Any:
    r"""Momentum-space propagator ``G~(p) = c / (phat^2 + m^2)`` on the FFT grid.

    Entry ``[n_0, ..., n_{Nd-1}]`` is at ``p_mu = 2 pi n_mu / L_mu`` (NumPy FFT ordering), and
    ``G~(p) = sum_x e^{-i p x} G(x)``.

    Parameters
    ----------
    shape : tuple of int
        Lattice extents ``(L0, ..., L_{Nd-1})``.
    kappa : float, optional
        Hopping parameter (hopping form).  Exactly one of ``kappa``, ``m2``.
    m2 : float, optional
        Bare mass squared ((m^2, lambda) form).
    normalization : {"half", "unit"}
        Normalisation of the (m^2, lambda) form (ignored with ``kappa``).
    backend, device : optional
        Where to return the array (``latticekit.backends`` conventions).

    Returns
    -------
    array of shape ``shape``

    Examples
    --------
    >>> from latticekit.exact import free_scalar_momentum_propagator
    >>> g = free_scalar_momentum_propagator((4, 4), m2=0.5, backend="numpy")
    >>> float(g[0, 0])
    2.0
    """
    return _to_backend(_gtilde(shape, kappa, m2, normalization), backend, device)


def free_scalar_propagator(
    shape: Sequence[int],
    *,
    kappa: float | None = None,
    m2: float | None = None,
    normalization: str = "half",
    backend: str | None = None,
    device: Any = None,
) -> Any:
    r"""Exact two-point function ``G(x) = <phi_0 phi_x>`` of the free field on a periodic lattice.

    ``G = M^{-1}`` of the quadratic form ``S = 1/2 phi^T M phi``, computed as the inverse FFT of
    ``G~(p)``; translation invariance gives ``<phi_y phi_{y+x}> = G(x)``.

    Parameters
    ----------
    shape : tuple of int
        Lattice extents ``(L0, ..., L_{Nd-1})``.
    kappa, m2, normalization
        Parametrisation (see :func:`free_scalar_momentum_propagator`).
    backend, device : optional
        Where to return the array.

    Returns
    -------
    array of shape ``shape`` (real)

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.exact import free_scalar_propagator
    >>> G = free_scalar_propagator((6, 6), kappa=0.2, backend="numpy")
    >>> bool(np.isclose(G.sum(), 1 / (2 * (1 - 4 * 0.2))))      # chi = 1 / (2 (1 - 2 Nd kappa))
    True
    """
    G = np.real(np.fft.ifftn(_gtilde(shape, kappa, m2, normalization)))
    return _to_backend(G, backend, device)


def free_scalar_susceptibility(
    shape: Sequence[int], *, kappa: float | None = None, m2: float | None = None, normalization: str = "half"
) -> float:
    r"""Susceptibility ``chi = sum_x G(x) = G~(0) = c / m^2`` (volume independent for the free field).

    Hopping form: ``chi = 1 / (2 (1 - 2 Nd kappa))``; "half": ``1/m^2``; "unit": ``1/(2 m^2)``.

    Parameters
    ----------
    shape : tuple of int
        Lattice extents (only ``Nd = len(shape)`` matters).
    kappa, m2, normalization
        Parametrisation (see :func:`free_scalar_momentum_propagator`).

    Returns
    -------
    float

    Examples
    --------
    >>> from latticekit.exact import free_scalar_susceptibility
    >>> free_scalar_susceptibility((8, 8), m2=0.25)
    4.0
    """
    shp = check_shape(shape)
    mass2, c = _mass_and_scale(len(shp), kappa, m2, normalization)
    return c / mass2


def free_scalar_timeslice_correlator(
    shape: Sequence[int],
    *,
    kappa: float | None = None,
    m2: float | None = None,
    normalization: str = "half",
    backend: str | None = None,
    device: Any = None,
) -> Any:
    r"""Zero-momentum time-slice correlator ``C(t) = sum_{x_vec} G(t, x_vec)``, ``t = 0..L0-1``.

    Equivalently ``C(t) = (1/V_s) sum_{y, x_vec} <phi(y_0, y_vec) phi(y_0 + t, x_vec)>`` with
    ``V_s = L1 ... L_{Nd-1}``; direction 0 is time.  Closed form:
    ``C(t) = c cosh(m_p (L0/2 - t)) / (2 sinh(m_p) sinh(m_p L0/2))`` with the pole mass
    ``m_p = 2 arcsinh(m/2)``.

    Parameters
    ----------
    shape : tuple of int
        Lattice extents ``(L0, ..., L_{Nd-1})``.
    kappa, m2, normalization
        Parametrisation (see :func:`free_scalar_momentum_propagator`).
    backend, device : optional
        Where to return the array.

    Returns
    -------
    array of shape ``(L0,)``

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.exact import free_scalar_timeslice_correlator, free_scalar_pole_mass
    >>> C = free_scalar_timeslice_correlator((16, 4), m2=0.3, backend="numpy")
    >>> mp = free_scalar_pole_mass(m2=0.3)
    >>> bool(np.isclose(np.arccosh((C[3] + C[5]) / (2 * C[4])), mp))
    True
    """
    G = np.real(np.fft.ifftn(_gtilde(shape, kappa, m2, normalization)))
    C = G.reshape(G.shape[0], -1).sum(axis=1)
    return _to_backend(C, backend, device)


def free_scalar_second_moment_correlation_length(
    shape: Sequence[int],
    *,
    kappa: float | None = None,
    m2: float | None = None,
    normalization: str = "half",
    mu: int = 0,
) -> float:
    r"""Second-moment correlation length ``xi_2`` of the free field.

    ``xi_2^2 = (G~(0) / G~(p_min) - 1) / (4 sin^2(pi / L_mu))`` with ``p_min = 2 pi / L_mu`` along
    direction ``mu`` (default 0, time).  For the free field this equals ``1/m^2`` exactly on any
    lattice, a useful check of estimators.

    Parameters
    ----------
    shape : tuple of int
        Lattice extents; ``L_mu >= 2``.
    kappa, m2, normalization
        Parametrisation (see :func:`free_scalar_momentum_propagator`).
    mu : int
        Direction of the smallest non-zero momentum.

    Returns
    -------
    float

    Examples
    --------
    >>> from latticekit.exact import free_scalar_second_moment_correlation_length
    >>> round(free_scalar_second_moment_correlation_length((10, 10), m2=0.04), 12)
    5.0
    """
    shp = check_shape(shape)
    mu = check_int(mu, "mu", 0)
    if mu >= len(shp) or shp[mu] < 2:
        raise ValueError(f"mu={mu} must be a lattice direction with extent >= 2 for shape {shp}")
    gt = _gtilde(shp, kappa, m2, normalization)
    idx = [0] * len(shp)
    g0 = gt[tuple(idx)]
    idx[mu] = 1
    g1 = gt[tuple(idx)]
    return math.sqrt((g0 / g1 - 1.0) / (4.0 * math.sin(math.pi / shp[mu]) ** 2))


def free_scalar_pole_mass(*, m2: float | None = None, kappa: float | None = None, nd: int | None = None) -> float:
    r"""Lattice pole mass ``m_p = 2 arcsinh(m/2)`` (``C(t) ~ cosh(m_p (t - L0/2))``).

    Parameters
    ----------
    m2 : float, optional
        Bare mass squared.
    kappa : float, optional
        Hopping parameter (then ``nd`` is required: ``m^2 = 1/kappa - 2 nd``).
    nd : int, optional
        Number of dimensions (with ``kappa``).

    Returns
    -------
    float

    Examples
    --------
    >>> from latticekit.exact import free_scalar_pole_mass
    >>> import math
    >>> abs(free_scalar_pole_mass(m2=(2 * math.sinh(0.25)) ** 2) - 0.5) < 1e-15
    True
    """
    if kappa is not None:
        if nd is None:
            raise ValueError("nd is required with kappa (m^2 = 1/kappa - 2 nd)")
        mass2, _ = _mass_and_scale(check_int(nd, "nd", 1), kappa, None, "half")
    else:
        mass2, _ = _mass_and_scale(1, None, m2, "half")
    return 2.0 * math.asinh(0.5 * math.sqrt(mass2))


def free_scalar_log_z(
    shape: Sequence[int], *, kappa: float | None = None, m2: float | None = None, normalization: str = "half"
) -> float:
    r"""``ln Z = ln int prod_x dphi_x e^{-S}`` of the free field: ``(V/2) ln 2pi - (1/2) ln det M``.

    ``ln det M = sum_p ln(1/G~(p))``.  Hopping and (m^2) forms differ by the Jacobian of the
    rescaling ``phi = s phi_hop``: ``ln Z_hop = ln Z_(m^2) - V ln s``.

    Parameters
    ----------
    shape : tuple of int
        Lattice extents.
    kappa, m2, normalization
        Parametrisation (see :func:`free_scalar_momentum_propagator`).

    Returns
    -------
    float

    Examples
    --------
    >>> import math
    >>> from latticekit.exact import free_scalar_log_z
    >>> abs(free_scalar_log_z((1,), m2=1.0) - 0.5 * math.log(2 * math.pi)) < 1e-15   # L=1: S = phi^2/2
    True
    """
    gt = _gtilde(shape, kappa, m2, normalization)
    return 0.5 * gt.size * math.log(2.0 * math.pi) + 0.5 * float(np.sum(np.log(gt)))
