"""Real scalar phi^4 theory: hopping form, (m^2, lambda) form, and the exact map between them.

Hopping form (DESIGN.md), field ``phi`` (``phi_hop``)::

    S_hop[phi] = sum_x [ (1 - 2 lam) phi_x^2 + lam phi_x^4 - 2 kappa sum_mu phi_x phi_{x+mu} ]

This is ``sum_x [phi_x^2 + lam (phi_x^2 - 1)^2 - 2 kappa sum_mu phi_x phi_{x+mu}]`` minus the
constant ``lam V``, which is dropped. ``lam = 0`` is the free field, ``lam -> inf`` the Ising model.

(m^2, lambda) form of Albergo, Kanwar & Shanahan (PRD 100, 034515 (2019)), field ``phi_c``::

    S_mass[phi_c] = sum_x [ sum_mu (1/2) (phi_c(x+mu) - phi_c(x))^2 + (m^2/2) phi_c^2 + lambda phi_c^4 ]
                  = sum_x [ -sum_mu phi_c(x) phi_c(x+mu) + ((2 Nd + m^2) / 2) phi_c^2 + lambda phi_c^4 ]

Conversion (exact).  Substitute ``phi_c = a phi_hop`` into ``S_mass`` and compare coefficients::

    hopping term:  a^2              = 2 kappa
    phi^2 term:    a^2 (2 Nd + m^2)/2 = 1 - 2 lam      =>  kappa (2 Nd + m^2) = 1 - 2 lam
    phi^4 term:    a^4 lambda         = lam             =>  lam = 4 kappa^2 lambda

so ``S_mass[sqrt(2 kappa) phi_hop] = S_hop[phi_hop]`` identically (no additive constant), with

    from (kappa, lam):   m^2 = (1 - 2 lam) / kappa - 2 Nd,     lambda = lam / (4 kappa^2)
    from (m^2, lambda):  8 lambda kappa^2 + (2 Nd + m^2) kappa - 1 = 0, the positive root
                         kappa = 2 / ((2 Nd + m^2) + sqrt((2 Nd + m^2)^2 + 32 lambda))
                         (kappa = 1 / (2 Nd + m^2) at lambda = 0),   lam = 4 kappa^2 lambda.

(The tutorial code of Albergo et al., arXiv:2101.08176, uses the un-halved Gaussian part
``S_unit[phi_u] = sum_x [sum_mu (d phi_u)^2 + m^2 phi_u^2 + lambda phi_u^4]``, the "unit" normalisation;
the functions here implement the halved form above. The same numbers (m^2, lambda) are a different
theory in the two normalisations, so :meth:`Phi4Action.from_mass` takes the normalisation as a required
argument. ``S_unit[phi; m^2, lambda] = 2 S_mass[phi; m^2, lambda/2]`` term by term, and with
``phi_u = sqrt(kappa) phi_hop`` it equals ``S_hop[phi_hop]`` for ``(kappa, lam) =
hopping_from_mass(m^2, lambda/4)`` (quadratic ``2 lambda kappa^2 + (2 Nd + m^2) kappa - 1 = 0``);
:mod:`latticekit.exact.phi4_conventions` has both conversions.)

Jacobian: ``d phi_c = (2 kappa)^{V/2} d phi_hop``, a field-independent constant, so expectation values
agree; normalised densities differ by ``log Z_mass = log Z_hop + (V/2) log(2 kappa)``, i.e.
``log p_mass(phi_c) = log p_hop(phi_hop) - (V/2) log(2 kappa)``.

Examples
--------
>>> import numpy as np, latticekit as lk
>>> lat = lk.Lattice((4, 4))
>>> kappa, lam = hopping_from_mass(-4.0, 8.0, nd=2)
>>> phi = lk.backends.rng(0).normal((4, 4))
>>> a = np.sqrt(2 * kappa)
>>> bool(np.isclose(phi4_action_mass(a * phi, lat, -4.0, 8.0), phi4_action(phi, lat, kappa, lam)))
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from latticekit.backends import array_namespace, fast_path
from latticekit.lattice import Lattice

from ._checks import positive_int, real_number_or_array

__all__ = [
    "Phi4Action",
    "hopping_from_mass",
    "mass_from_hopping",
    "phi4_action",
    "phi4_action_mass",
    "phi4_force",
    "phi4_force_mass",
]


def _check(phi: Any, lattice: Lattice) -> None:
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    lattice.check(phi, "phi")
    xp = array_namespace(phi)
    if phi.dtype not in (xp.float32, xp.float64):   # float16/bfloat16 too: the physics is float32 or float64
        raise TypeError(f"phi has dtype {phi.dtype}; expected a float32 or float64 field (*B, *L)")


def _finite(name: str, v: Any, phi: Any = None, lattice: Lattice | None = None) -> None:
    # a finite real number (not a string, bool or complex), or a real floating array (couplings that
    # require grad) that broadcasts against the field (a per-chain (B,) array failed with a bare broadcasting error)
    real_number_or_array(name, v)
    if phi is not None and hasattr(v, "shape") and not isinstance(v, numbers.Number):
        array_namespace(v, phi)   # BackendError: a torch coupling with a NumPy field failed inside the arithmetic
    shape = tuple(getattr(v, "shape", ()))
    if phi is not None and lattice is not None and shape:
        field = tuple(phi.shape)
        n = max(len(shape), len(field))
        a, b = (1,) * (n - len(shape)) + shape, (1,) * (n - len(field)) + field
        if len(shape) > len(field) or any(x != y and x != 1 for x, y in zip(a, b)):
            nb = len(field) - lattice.nd
            per_chain = tuple(field[:nb]) + (1,) * lattice.nd
            raise ValueError(f"{name} has shape {shape}; an array coupling must broadcast against the field "
                             f"{field} (one per chain: shape {per_chain})")


_NORMALIZATIONS = ("half", "unit")


def _sites(lattice: Lattice) -> tuple[int, ...]:
    return tuple(range(-lattice.nd, 0))


def _neighbour_sum(phi: Any, lattice: Lattice) -> Any:
    """``sum_mu phi(x + mu)`` (forward neighbours only)."""
    acc = lattice.shift(phi, 0, +1)
    for mu in range(1, lattice.nd):
        acc = acc + lattice.shift(phi, mu, +1)
    return acc


def _both_neighbours(phi: Any, lattice: Lattice) -> Any:
    """``sum_mu [phi(x + mu) + phi(x - mu)]``."""
    acc = lattice.shift(phi, 0, +1) + lattice.shift(phi, 0, -1)
    for mu in range(1, lattice.nd):
        acc = acc + lattice.shift(phi, mu, +1) + lattice.shift(phi, mu, -1)
    return acc


def _check_bounded(kappa: Any, lam: Any, nd: int) -> None:
    """Refuse, for :class:`Phi4Action` (a theory to sample or train a flow on), numbers for which the hopping-form
    action is unbounded below: ``lam < 0``, or ``lam = 0`` with ``kappa > 1/(2 Nd)`` (``m^2 < 0``; at ``m^2 = 0``
    the constant mode is flat: not normalisable either). They were accepted here and refused by the theories and
    ``latticekit.exact`` (user probe). Arrays are not inspected (that would synchronise a GPU). The functions
    :func:`phi4_action`/:func:`phi4_force` evaluate the polynomial at any finite couplings (learned couplings
    pass through such values)."""
    if hasattr(lam, "shape") or hasattr(kappa, "shape"):
        return
    if lam < 0:
        raise ValueError(f"lam={lam!r}: expected lambda >= 0 (the action is unbounded below otherwise)")
    if lam == 0 and kappa >= 1.0 / (2 * nd):
        raise ValueError(f"kappa={kappa!r}: with lam = 0 (the free field) kappa must be below 1/(2 Nd) = "
                         f"{1.0 / (2 * nd):g} (m^2 > 0); the action is unbounded below otherwise")


def hopping_from_mass(m2: float, lam_cont: float, nd: int) -> tuple[float, float]:
    """``(kappa, lam)`` of the hopping form equivalent to the (m^2, lambda) form (module docstring).

    Examples
    --------
    >>> hopping_from_mass(0.5, 0.0, nd=2)
    (0.2222222222222222, 0.0)
    """
    _finite("m2", m2)
    _finite("lam_cont", lam_cont)
    nd = positive_int("nd", nd)        # a NumPy integer is one; True is not (it was read as 1)
    if lam_cont < 0:
        raise ValueError(f"lam_cont={lam_cont!r}: expected lambda >= 0 (the action is unbounded below otherwise)")
    c = 2.0 * nd + float(m2)
    if lam_cont == 0:
        if c <= 0:
            # the conversion needs kappa = 1/(2 Nd + m^2) > 0; the free theory itself is normalisable only for
            # m^2 > 0 (the lattice Laplacian has the constant field as a zero mode), which Phi4Action checks (the
            # message said the free action needs m^2 > -2 Nd; user probe)
            raise ValueError(f"m2={m2!r}: with lambda = 0 the hopping parameter kappa = 1/(2 Nd + m^2) needs "
                             f"m^2 > -2 Nd = {-2 * nd} (and the free theory m^2 > 0)")
        kappa = 1.0 / c
    else:
        # positive root of 8 lam kappa^2 + c kappa - 1 = 0, in the form without cancellation
        root = math.sqrt(c * c + 32.0 * float(lam_cont))
        kappa = 2.0 / (c + root) if c >= 0 else (root - c) / (16.0 * float(lam_cont))
    if not math.isfinite(kappa) or not math.isfinite(4.0 * kappa * kappa):
        raise ValueError(f"m2={m2!r}, lam_cont={lam_cont!r}: the equivalent hopping parameter kappa overflows")
    return kappa, 4.0 * kappa * kappa * float(lam_cont)


def mass_from_hopping(kappa: float, lam: float, nd: int) -> tuple[float, float]:
    """``(m^2, lambda)`` of the (m^2, lambda) form equivalent to the hopping form (module docstring).

    Examples
    --------
    >>> m2, lc = mass_from_hopping(*hopping_from_mass(-4.0, 8.0, nd=2), nd=2)
    >>> round(m2, 12), round(lc, 12)
    (-4.0, 8.0)
    """
    _finite("kappa", kappa)
    _finite("lam", lam)
    nd = positive_int("nd", nd)
    if lam < 0:     # refused by hopping_from_mass and latticekit.exact; accepted here before (user probe)
        raise ValueError(f"lam={lam!r}: expected lambda >= 0 (the action is unbounded below otherwise)")
    if not kappa > 0:
        raise ValueError(f"kappa={kappa!r}: the conversion phi_c = sqrt(2 kappa) phi needs kappa > 0")
    return (1.0 - 2.0 * lam) / kappa - 2.0 * nd, lam / (4.0 * kappa * kappa)


def phi4_action(phi: Any, lattice: Lattice, kappa: float, lam: float) -> Any:
    """Hopping-form action ``sum_x [(1-2 lam) phi^2 + lam phi^4 - 2 kappa sum_mu phi_x phi_{x+mu}]``.

    Parameters
    ----------
    phi : array
        Real field ``(*B, *L)``.
    lattice : Lattice
    kappa, lam : float
        Hopping parameter and quartic coupling.

    Returns
    -------
    array
        ``(*B,)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> float(phi4_action(np.ones((4, 4)), lat, 0.25, 0.0))    # V (1 - 2 kappa Nd) = 16 * 0
    0.0
    """
    _check(phi, lattice)
    _finite("kappa", kappa, phi, lattice)
    _finite("lam", lam, phi, lattice)
    # compiled kernel where one is registered (backends/_fast.py); None = declined, generic code runs
    fp = fast_path("phi4_action", phi)
    S = fp(phi, kappa, lam, lattice.nd) if fp is not None else None
    if S is not None:
        return S
    xp = array_namespace(phi)
    p2 = phi * phi
    dens = (1.0 - 2.0 * lam) * p2 + lam * p2 * p2 - (2.0 * kappa) * phi * _neighbour_sum(phi, lattice)
    return xp.sum(dens, axis=_sites(lattice))


def phi4_force(phi: Any, lattice: Lattice, kappa: float, lam: float) -> Any:
    """``dS_hop/dphi_x = 2 (1-2 lam) phi + 4 lam phi^3 - 2 kappa sum_mu (phi_{x+mu} + phi_{x-mu})``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> float(phi4_force(np.ones((4, 4)), lat, 0.1, 0.5)[0, 0])    # 0 + 2 - 0.8
    1.2
    """
    _check(phi, lattice)
    _finite("kappa", kappa, phi, lattice)
    _finite("lam", lam, phi, lattice)
    fp = fast_path("phi4_force", phi)
    F = fp(phi, kappa, lam, lattice.nd) if fp is not None else None
    if F is not None:
        return F
    return (2.0 * (1.0 - 2.0 * lam)) * phi + (4.0 * lam) * phi * phi * phi \
        - (2.0 * kappa) * _both_neighbours(phi, lattice)


def phi4_action_mass(phi: Any, lattice: Lattice, m2: float, lam: float) -> Any:
    """(m^2, lambda) form ``sum_x [-sum_mu phi phi_{x+mu} + (2 Nd + m^2)/2 phi^2 + lam phi^4]``, ``(*B,)``.

    Equal to ``sum_x [sum_mu (1/2)(phi(x+mu) - phi(x))^2 + (m^2/2) phi^2 + lam phi^4]``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> float(phi4_action_mass(np.ones((4, 4)), lat, 1.0, 0.5))   # gradient term vanishes: 16 (0.5 + 0.5)
    16.0
    """
    _check(phi, lattice)
    _finite("m2", m2, phi, lattice)
    _finite("lam", lam, phi, lattice)
    xp = array_namespace(phi)
    p2 = phi * phi
    dens = (0.5 * (2.0 * lattice.nd + m2)) * p2 + lam * p2 * p2 - phi * _neighbour_sum(phi, lattice)
    return xp.sum(dens, axis=_sites(lattice))


def phi4_force_mass(phi: Any, lattice: Lattice, m2: float, lam: float) -> Any:
    """``dS_mass/dphi_x = (2 Nd + m^2) phi + 4 lam phi^3 - sum_mu (phi_{x+mu} + phi_{x-mu})``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> float(phi4_force_mass(np.ones((4, 4)), lk.Lattice((4, 4)), 1.0, 0.5)[0, 0])
    3.0
    """
    _check(phi, lattice)
    _finite("m2", m2, phi, lattice)
    _finite("lam", lam, phi, lattice)
    return (2.0 * lattice.nd + m2) * phi + (4.0 * lam) * phi * phi * phi - _both_neighbours(phi, lattice)


class Phi4Action:
    """phi^4 action on one lattice, as a callable; hopping form by default.

    ``Phi4Action(lattice, kappa, lam)`` evaluates :func:`phi4_action` on hopping-normalised fields.
    ``Phi4Action.from_mass(lattice, m2, lam_cont, normalization=...)`` evaluates the (m^2, lambda) form
    on fields in that normalisation -- ``"half"`` (Albergo, Kanwar & Shanahan 2019, :func:`phi4_action_mass`)
    or ``"unit"`` (the tutorial code, arXiv:2101.08176) -- its ``kappa``/``lam`` are the equivalent hopping
    parameters and ``field_scale`` (``sqrt(2 kappa)`` resp. ``sqrt(kappa)``) is the factor with
    ``phi_mass = field_scale * phi_hop`` (see the module docstring; :meth:`hopping` returns the
    equivalent hopping-form action).

    Attributes
    ----------
    form : str
        ``"hopping"`` or ``"mass"``: which normalisation of the field ``__call__`` expects.
    normalization : str or None
        ``"half"`` or ``"unit"`` for the mass form, None for the hopping form.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4, 4)); phi = lk.backends.rng(1).normal((2, 4, 4))
    >>> S = Phi4Action.from_mass(lat, m2=-4.0, lam_cont=8.0, normalization="half")
    >>> H = S.hopping()
    >>> bool(np.allclose(S(S.field_scale * phi), H(phi)))
    True
    >>> T = Phi4Action.from_mass(lat, m2=-4.0, lam_cont=8.0, normalization="unit")   # the tutorial's point
    >>> round(T.kappa, 12), round(T.lam, 12)
    (0.25, 0.5)
    """

    def __init__(self, lattice: Lattice, kappa: float, lam: float) -> None:
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        _finite("kappa", kappa)
        _finite("lam", lam)
        _check_bounded(kappa, lam, lattice.nd)
        self.lattice = lattice
        # couplings given as arrays (e.g. torch tensors requiring grad) are kept as they are, so
        # gradients w.r.t. them flow through the action (IR matching differentiates through Langevin)
        self.kappa = kappa if hasattr(kappa, "shape") else float(kappa)
        self.lam = lam if hasattr(lam, "shape") else float(lam)
        self.form = "hopping"
        self.normalization: str | None = None
        self.m2: float | None = None
        self.lam_cont: float | None = None

    @classmethod
    def from_mass(cls, lattice: Lattice, m2: float, lam_cont: float, *,
                  normalization: str | None = None) -> "Phi4Action":
        """The (m^2, lambda) form, on fields in that normalisation.

        Parameters
        ----------
        lattice : Lattice
        m2, lam_cont : float
            Bare mass squared and quartic coupling ``lambda >= 0``.
        normalization : {"half", "unit"}
            Required: ``"half"`` is ``sum_x [sum_mu (1/2)(d phi)^2 + (m^2/2) phi^2 + lambda phi^4]``
            (Albergo, Kanwar & Shanahan, PRD 100, 034515 (2019)); ``"unit"`` is
            ``sum_x [sum_mu (d phi)^2 + m^2 phi^2 + lambda phi^4]`` (the tutorial code, arXiv:2101.08176,
            ``ScalarPhi4Action(M2, lam)``). The same numbers are different theories in the two.
        """
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if normalization not in _NORMALIZATIONS:
            raise TypeError(f"normalization={normalization!r}: required, one of 'half' (Albergo et al. 2019: "
                            "1/2 (d phi)^2 + m^2/2 phi^2 + lambda phi^4) or 'unit' (tutorial arXiv:2101.08176: "
                            "(d phi)^2 + m^2 phi^2 + lambda phi^4); the same (m2, lam_cont) differ between them")
        _finite("lam_cont", lam_cont)
        if lam_cont == 0 and not float(m2) > 0:   # say it in the user's terms (Phi4Action checks kappa too)
            raise ValueError(f"m2={m2!r}: with lam_cont = 0 (the free field) m^2 must be > 0; the action is unbounded "
                             "below otherwise")
        # "unit": S_unit[phi; m2, lambda] = S_half[sqrt(2) phi; m2, lambda/4] (module docstring)
        lam_half = lam_cont if normalization == "half" else lam_cont / 4.0
        kappa, lam = hopping_from_mass(m2, lam_half, lattice.nd)
        obj = cls(lattice, kappa, lam)
        obj.form = "mass"
        obj.normalization = normalization
        obj.m2 = float(m2)
        obj.lam_cont = float(lam_cont)
        return obj

    @property
    def field_scale(self) -> float:
        """``phi_mass = field_scale * phi_hop``: ``sqrt(2 kappa)`` (hopping and "half"), ``sqrt(kappa)``
        ("unit"); requires kappa > 0."""
        if not self.kappa > 0:
            raise ValueError(f"kappa={self.kappa}: the field rescaling sqrt(2 kappa) needs kappa > 0")
        return (self.kappa if self.normalization == "unit" else 2.0 * self.kappa) ** 0.5

    def hopping(self) -> "Phi4Action":
        """The equivalent hopping-form action (acting on ``phi_hop = phi_mass / field_scale``)."""
        return Phi4Action(self.lattice, self.kappa, self.lam)

    def action(self, phi: Any) -> Any:
        """``S(phi)``, shape ``(*B,)``, in the normalisation given by :attr:`form`."""
        if self.form == "mass":
            if self.normalization == "unit":   # S_unit[phi; m2, lambda] = 2 S_half[phi; m2, lambda/2]
                return 2.0 * phi4_action_mass(phi, self.lattice, self.m2, 0.5 * self.lam_cont)
            return phi4_action_mass(phi, self.lattice, self.m2, self.lam_cont)
        return phi4_action(phi, self.lattice, self.kappa, self.lam)

    __call__ = action

    def force(self, phi: Any) -> Any:
        """``dS/dphi``, shaped like ``phi``."""
        if self.form == "mass":
            if self.normalization == "unit":
                return 2.0 * phi4_force_mass(phi, self.lattice, self.m2, 0.5 * self.lam_cont)
            return phi4_force_mass(phi, self.lattice, self.m2, self.lam_cont)
        return phi4_force(phi, self.lattice, self.kappa, self.lam)

    def __repr__(self) -> str:
        if self.form == "mass":
            return (f"Phi4Action.from_mass(lattice={self.lattice!r}, m2={self.m2!r}, lam_cont={self.lam_cont!r}, "
                    f"normalization={self.normalization!r})")
        return f"Phi4Action(lattice={self.lattice!r}, kappa={self.kappa!r}, lam={self.lam!r})"
