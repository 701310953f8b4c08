r"""phi^4 parametrisations and the exact conversion between them.

Hopping form (the house convention, docs/DESIGN.md), ``Nd`` dimensions, periodic lattice:

``S_hop[phi] = sum_x [ (1 - 2 lam) phi_x^2 + lam phi_x^4 - 2 kappa sum_mu phi_x phi_{x+mu} ]``.

(m^2, lambda) form, two normalisations of the Gaussian part are in use:

* ``normalization="half"`` (Albergo, Kanwar & Shanahan, PRD 100 (2019) 034515, and the usual
  continuum-like form)::

      S[phi] = sum_x [ 1/2 sum_mu (phi_{x+mu} - phi_x)^2 + m^2/2 phi_x^2 + lambda phi_x^4 ]
             = sum_x [ -sum_mu phi_x phi_{x+mu} + (2 Nd + m^2)/2 phi_x^2 + lambda phi_x^4 ]

* ``normalization="unit"`` (the code of the tutorial Albergo et al., arXiv:2101.08176,
  ``ScalarPhi4Action(M2, lam)``)::

      S[phi] = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4 ]
             = sum_x [ -2 sum_mu phi_x phi_{x+mu} + (2 Nd + m^2) phi_x^2 + lambda phi_x^4 ]

Conversion: ``phi = s * phi_hop`` with ``s = sqrt(2 kappa)`` ("half") or ``s = sqrt(kappa)``
("unit") makes the actions equal *term by term* (no additive constant), with

``m^2 = (1 - 2 lam) / kappa - 2 Nd`` (both normalisations),
``lambda = lam / (4 kappa^2)`` ("half") or ``lambda = lam / kappa^2`` ("unit").

Derivation ("half"): ``-2 kappa phi_hop phi_hop' = -phi phi'`` fixes ``s^2 = 2 kappa``; then
``(1-2 lam) phi_hop^2 = (1-2 lam)/(2 kappa) phi^2 = (2 Nd + m^2)/2 phi^2`` and
``lam phi_hop^4 = lam/(4 kappa^2) phi^4``.  Because the map is linear, expectation values map as
``<O(phi)> = <O(s phi_hop)>`` and ``ln Z = ln Z_hop + V ln s`` (Lebesgue measure per site).

The inverse map solves ``a kappa^2 + (m^2 + 2 Nd) kappa - 1 = 0`` with ``a = 8 lambda`` ("half") or
``a = 2 lambda`` ("unit"): ``kappa = 2 / (b + sqrt(b^2 + 4 a))``, ``b = m^2 + 2 Nd``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "phi4_action_hopping",
    "phi4_action_m2",
    "phi4_field_scale",
    "phi4_hopping_to_m2",
    "phi4_m2_to_hopping",
]

_NORMALIZATIONS = ("half", "unit")


def _check_norm(normalization: str) -> str:
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    return normalization


def _check_nd(nd: int) -> int:
    if isinstance(nd, bool) or int(nd) != nd or int(nd) < 1:
        raise ValueError(f"nd must be a positive integer, got {nd!r}")
    return int(nd)


def _check_kappa(kappa: float) -> float:
    k = float(kappa)
    if not math.isfinite(k) or k <= 0:
        raise ValueError(f"kappa must be finite and > 0 for the conversion, got {kappa!r}")
    return k


def _check_finite(value: float, name: str, minimum: float = -math.inf) -> float:
    v = float(value)
    if not math.isfinite(v) or v < minimum:
        bound = "" if minimum == -math.inf else f" and >= {minimum:g}"
        raise ValueError(f"{name} must be finite{bound}, got {value!r}")
    return v


def phi4_field_scale(kappa: float, normalization: str = "half") -> float:
    r"""Field rescaling ``s`` with ``phi_(m^2 form) = s * phi_hop``.

    ``s = sqrt(2 kappa)`` for ``normalization="half"``, ``sqrt(kappa)`` for ``"unit"``.

    Parameters
    ----------
    kappa : float
        Hopping parameter, ``> 0``.
    normalization : {"half", "unit"}
        Normalisation of the (m^2, lambda) action (see module docstring).

    Returns
    -------
    float

    Examples
    --------
    >>> from latticekit.exact import phi4_field_scale
    >>> phi4_field_scale(0.125)
    0.5
    """
    k = _check_kappa(kappa)
    return math.sqrt(2.0 * k) if _check_norm(normalization) == "half" else math.sqrt(k)


def phi4_hopping_to_m2(kappa: float, lam: float, nd: int, normalization: str = "half") -> tuple[float, float]:
    r"""Convert hopping parameters ``(kappa, lam)`` to ``(m^2, lambda)``.

    ``m^2 = (1 - 2 lam)/kappa - 2 nd``; ``lambda = lam/(4 kappa^2)`` ("half") or ``lam/kappa^2``
    ("unit").  With ``phi = phi4_field_scale(kappa) * phi_hop`` the two actions are equal.

    Parameters
    ----------
    kappa : float
        Hopping parameter, ``> 0``.
    lam : float
        Quartic coupling of the hopping form.
    nd : int
        Number of lattice dimensions.
    normalization : {"half", "unit"}

    Returns
    -------
    (m2, lambda) : tuple of float

    Examples
    --------
    >>> from latticekit.exact import phi4_hopping_to_m2
    >>> phi4_hopping_to_m2(0.25, 0.0, 2)        # free field at the 2D critical point: m^2 = 0
    (0.0, 0.0)
    >>> m2, lam_c = phi4_hopping_to_m2(0.2, 0.02, 2, normalization="unit")
    >>> round(m2, 12), round(lam_c, 12)
    (0.8, 0.5)
    """
    k = _check_kappa(kappa)
    lam = _check_finite(lam, "lam", 0.0)     # as the inverse conversion (a negative lam was accepted here)
    nd = _check_nd(nd)
    norm = _check_norm(normalization)
    m2 = (1.0 - 2.0 * lam) / k - 2.0 * nd
    lam_c = lam / (4.0 * k * k) if norm == "half" else lam / (k * k)
    return m2, lam_c


def phi4_m2_to_hopping(m2: float, lam: float, nd: int, normalization: str = "half") -> tuple[float, float]:
    r"""Convert ``(m^2, lambda)`` to hopping parameters ``(kappa, lam_hop)`` (inverse of
    :func:`phi4_hopping_to_m2`).

    ``kappa = 2 / (b + sqrt(b^2 + 4 a))`` with ``b = m^2 + 2 nd`` and ``a = 8 lambda`` ("half") or
    ``2 lambda`` ("unit"); ``lam_hop = 4 kappa^2 lambda`` ("half") or ``kappa^2 lambda`` ("unit").

    Parameters
    ----------
    m2 : float
        Bare mass squared (may be negative).
    lam : float
        Quartic coupling ``lambda >= 0`` of the (m^2, lambda) form.
    nd : int
        Number of lattice dimensions.
    normalization : {"half", "unit"}

    Returns
    -------
    (kappa, lam_hop) : tuple of float

    Examples
    --------
    >>> from latticekit.exact import phi4_m2_to_hopping
    >>> k, l = phi4_m2_to_hopping(-4.0, 8.0, 2, normalization="unit")   # Albergo et al. tutorial point
    >>> round(k, 12), round(l, 12)
    (0.25, 0.5)
    """
    nd = _check_nd(nd)
    norm = _check_norm(normalization)
    lam = _check_finite(lam, "lam", 0.0)
    a = 8.0 * lam if norm == "half" else 2.0 * lam
    b = _check_finite(m2, "m2") + 2.0 * nd     # NaN gave (nan, nan), inf (0, 0)
    disc = b * b + 4.0 * a
    denom = b + math.sqrt(disc)
    if denom <= 0:
        raise ValueError(
            f"no positive kappa for m2={m2!r}, lam={lam!r} in {nd}D: need m2 + 2 nd > 0 when lam = 0"
        )
    k = 2.0 / denom
    lam_hop = 4.0 * k * k * lam if norm == "half" else k * k * lam
    return k, lam_hop


def _nearest_neighbour_sum(phi: np.ndarray, nd: int) -> np.ndarray:
    out = np.zeros_like(phi)
    for mu in range(nd):
        out = out + phi * np.roll(phi, -1, axis=phi.ndim - nd + mu)
    return out


def phi4_action_hopping(phi: np.ndarray, kappa: float, lam: float, nd: int | None = None) -> np.ndarray:
    r"""Reference (NumPy) hopping-form action, summed over the lattice, vectorised over batch dims.

    ``S = sum_x [(1-2 lam) phi^2 + lam phi^4 - 2 kappa sum_mu phi_x phi_{x+mu}]``, periodic.

    Parameters
    ----------
    phi : ndarray, shape (*B, L0, ..., L_{nd-1})
    kappa, lam : float
    nd : int, optional
        Number of lattice axes (the last ``nd`` axes); default ``phi.ndim``.

    Returns
    -------
    ndarray of shape ``B`` (a 0-d array without batch dims)

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.exact import phi4_action_hopping
    >>> float(phi4_action_hopping(np.ones((4, 4)), 0.1, 0.0))     # 16 * (1 - 2*2*0.1)
    9.6
    """
    phi = np.asarray(phi, dtype=float)
    nd = phi.ndim if nd is None else _check_nd(nd)
    if nd > phi.ndim:
        raise ValueError(f"nd={nd}: phi has only {phi.ndim} axes (expected its last nd axes to be the lattice)")
    dens = (1.0 - 2.0 * lam) * phi**2 + lam * phi**4 - 2.0 * kappa * _nearest_neighbour_sum(phi, nd)
    return np.sum(dens, axis=tuple(range(phi.ndim - nd, phi.ndim)))


def phi4_action_m2(
    phi: np.ndarray, m2: float, lam: float, nd: int | None = None, normalization: str = "half"
) -> np.ndarray:
    r"""Reference (NumPy) (m^2, lambda)-form action, summed over the lattice.

    ``"half"``: ``S = sum_x [1/2 sum_mu (phi_{x+mu}-phi_x)^2 + m^2/2 phi^2 + lambda phi^4]``;
    ``"unit"``: ``S = sum_x [sum_mu (phi_{x+mu}-phi_x)^2 + m^2 phi^2 + lambda phi^4]``.

    Parameters
    ----------
    phi : ndarray, shape (*B, L0, ..., L_{nd-1})
    m2, lam : float
    nd : int, optional
        Number of lattice axes (the last ``nd`` axes); default ``phi.ndim``.
    normalization : {"half", "unit"}

    Returns
    -------
    ndarray of shape ``B``

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.exact import phi4_action_m2
    >>> float(phi4_action_m2(np.ones((4, 4)), 1.0, 0.5))      # 16 * (1/2 + 1/2)
    16.0
    """
    phi = np.asarray(phi, dtype=float)
    nd = phi.ndim if nd is None else _check_nd(nd)
    c = 0.5 if _check_norm(normalization) == "half" else 1.0
    kin = np.zeros_like(phi)
    for mu in range(nd):
        kin = kin + (np.roll(phi, -1, axis=phi.ndim - nd + mu) - phi) ** 2
    dens = c * kin + c * m2 * phi**2 + lam * phi**4
    return np.sum(dens, axis=tuple(range(phi.ndim - nd, phi.ndim)))
