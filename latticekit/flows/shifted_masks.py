"""Shifted-stripe masks: the higher-dimensional gauge masks used for 4D QCD (arXiv:2208.03832, Sec. 3.1).

The QCD proceedings generate the masks of their 48 spectral coupling layers "with the algorithm for
higher-dimensional masks presented in Ref. [86]" (Abbott et al., arXiv:2305.02402), with the parameters
``spatial-dims = [4, 4, 4, 4]``, ``mask-orientations = [0]``, ``width = 4``, ``active-phase = 0``,
``orientations-to-shift = [0, 1, 2, 3]``, ``shifts = [1, 2, 1, 1]``, varied across layers "using the
alternation scheme that always sets mask-orientations[0] to orientations-to-shift[0]". Ref. [86] is not
among our sources; this module is our reading of those parameter names, stated here so that it can be
checked against the reference when it is available:

* the active links are ``U_mu(x)`` for each ``mu`` in ``mask_orientations``, on the sites whose
  **phase** ``phi(x) = sum_i shifts[i] * x[orientations_to_shift[i]]  (mod width)`` equals
  ``active_phase``. With one orientation to shift this is a stripe of period ``width`` (Kanwar et al.'s
  2D mask for ``width = 4``, ``shifts = [1]`` along ``nu``); each further orientation shifts the stripe
  pattern by ``shifts[i]`` sites per step along that axis (a stripe "tilted" through the lattice);
* every direction ``nu != mu`` must have a shift that is non-zero mod ``width``: then ``x`` and
  ``x +- nu`` never share the phase, so no plaquette holds two active links (the validity of
  :class:`~latticekit.flows.masks.GaugeMask`; checked with a message naming ``shifts``);
* the pattern tiles the periodic lattice if ``shifts[i] * L[orientations_to_shift[i]] = 0 (mod width)``
  for every ``i`` (checked, naming ``lattice`` and ``width``);
* the active loop of ``U_mu(x)`` is the plaquette ``P_{mu nu}(x)`` with ``nu`` the first orientation to
  shift other than ``mu`` (parameter ``nu`` overrides it).

The paper's parameters give, for ``mu = 0``, ``phi = x0 + 2 x1 + x2 + x3 (mod 4)``: one mu-link in four
is active, each phase 0..3 once, so 4 phases x 4 orientations = 16 layers update every link once and the
paper's 48 layers are three such cycles (a count consistent with this reading). The frozen plaquettes
(no active link) are those of the planes without ``mu`` and, in each plane ``(mu, nu)``, the plaquettes
whose two ``mu``-links both have phases other than ``active_phase``.

:func:`shifted_stripe_masks` is the alternation scheme: layer ``i`` rotates ``orientations_to_shift`` by
``i mod len`` places (so ``mask_orientations[0] = orientations_to_shift[0]``, the rotated first entry),
keeps ``shifts`` in place, and advances the active phase by one after every full rotation. The default
depth ``len(orientations_to_shift) * width`` updates every link of those directions once.
:data:`~latticekit.flows.masks.MASK_PATTERNS` names it ``"shifted"`` (defaults: the paper's ``width = 4``
and ``shifts = [1, 2, 1, ...]`` when every extent is a multiple of 4, else ``width = 2``, all shifts 1).

Examples
--------
>>> import latticekit as lk
>>> m = ShiftedStripeMask(lk.Lattice((4, 4, 4, 4)), width=4, shifts=(1, 2, 1, 1))
>>> m.mu, m.nu, float(m.sites(0).double().mean())
(0, 1, 0.25)
>>> [(s.mu, s.active_phase) for s in shifted_stripe_masks(lk.Lattice((4, 4, 4, 4)))][:6]
[(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1)]
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from latticekit.lattice import Lattice

from .masks import GaugeMask, _check_dir, _check_lattice, _is_int, _n_layers

__all__ = ["ShiftedStripeMask", "default_shift_parameters", "shifted_stripe_masks"]


def _int_list(name: str, v: Any) -> tuple[int, ...]:
    try:
        out = tuple(v)
    except TypeError:
        raise ValueError(f"{name}={v!r}: expected a sequence of integers") from None
    if not out or not all(_is_int(i) for i in out):
        raise ValueError(f"{name}={v!r}: expected a non-empty sequence of integers")
    return tuple(int(i) for i in out)


class ShiftedStripeMask(GaugeMask):
    """Active ``U_mu(x)`` where ``sum_i shifts[i] x[orientations_to_shift[i]] = active_phase (mod width)``.

    See the module docstring for the construction and why it is valid.

    Parameters
    ----------
    lattice : Lattice
        Each ``shifts[i] * L[orientations_to_shift[i]]`` a multiple of ``width``.
    mask_orientations : sequence of int
        The directions ``mu`` of the active links (the paper: one, ``[0]``).
    width : int
        Period of the phase (``>= 2``; the paper: 4).
    active_phase : int
        ``0 <= active_phase < width``.
    orientations_to_shift : sequence of int
        Distinct axes (default: all, ascending); every direction other than a mask orientation must be
        among them.
    shifts : sequence of int
        One per orientation to shift (default: all 1); non-zero mod ``width`` on every direction other
        than a mask orientation.
    nu : int, optional
        Second direction of the active plaquettes (default: the first orientation to shift that is not
        the mask orientation).

    Examples
    --------
    >>> import latticekit as lk
    >>> m = ShiftedStripeMask(lk.Lattice((4, 4)), width=4, orientations_to_shift=(1,), shifts=(1,))
    >>> m.sites(0)[0].tolist(), m.translations()
    ([True, False, False, False], [(1, 0)])
    """

    def __init__(self, lattice: Lattice, mask_orientations: Sequence[int] = (0,), width: int = 4,
                 active_phase: int = 0, orientations_to_shift: Sequence[int] | None = None,
                 shifts: Sequence[int] | None = None, *, nu: int | None = None) -> None:
        _check_lattice(lattice)
        super().__init__(lattice)
        nd = lattice.nd
        mus = _int_list("mask_orientations", mask_orientations)
        for mu in mus:
            _check_dir("mask_orientations", mu, nd)
        if len(set(mus)) != len(mus):
            raise ValueError(f"mask_orientations={list(mus)}: expected distinct directions")
        if not _is_int(width) or width < 2:
            raise ValueError(f"width={width!r}: expected an integer period >= 2")
        if not _is_int(active_phase) or not 0 <= active_phase < width:
            raise ValueError(f"active_phase={active_phase!r}: expected 0 <= active_phase < width = {width}")
        ots = tuple(range(nd)) if orientations_to_shift is None else _int_list("orientations_to_shift",
                                                                               orientations_to_shift)
        for a in ots:
            _check_dir("orientations_to_shift", a, nd)
        if len(set(ots)) != len(ots):
            raise ValueError(f"orientations_to_shift={list(ots)}: expected distinct axes")
        sh = (1,) * len(ots) if shifts is None else _int_list("shifts", shifts)
        if len(sh) != len(ots):
            raise ValueError(f"shifts={list(sh)}: expected one shift per orientation to shift "
                             f"({len(ots)}: {list(ots)})")
        coef = [0] * nd
        for a, s in zip(ots, sh):
            coef[a] = s % width
        for a, s in zip(ots, sh):
            if (s * lattice.shape[a]) % width:
                raise ValueError(f"lattice={lattice}: the shifted stripes do not tile the lattice: shift {s} along axis "
                                 f"{a} times L_{a} = {lattice.shape[a]} is not a multiple of width = {width}; choose "
                                 "width and shifts with shifts[i] * L[orientations_to_shift[i]] = 0 (mod width)")
        for mu in mus:
            for d in range(nd):
                if d != mu and coef[d] == 0 and d not in mus:
                    raise ValueError(
                        f"shifts={list(sh)} (orientations_to_shift={list(ots)}, width={width}): direction {d} has shift "
                        f"0 mod width, so U_{mu}(x) and U_{mu}(x + {d}) are both active and share the plaquette "
                        f"P_{min(mu, d)}{max(mu, d)}; every direction other than the mask orientation needs a shift "
                        "that is non-zero mod width")
        if nu is None:
            cand = [a for a in ots if a not in mus] or [d for d in range(nd) if d not in mus]
            if not cand:
                raise ValueError(f"mask_orientations={list(mus)}: every direction is a mask orientation; no plane is "
                                 "left for the active plaquettes")
            nu = cand[0]
        _check_dir("nu", nu, nd)
        if nu in mus:
            raise ValueError(f"nu={nu}: expected a direction that is not a mask orientation {list(mus)}")
        self.mask_orientations, self.width, self.active_phase = tuple(sorted(mus)), int(width), int(active_phase)
        self.orientations_to_shift, self.shifts, self.nu = ots, sh, int(nu)
        self._coef = tuple(coef)
        self.validate()

    @property
    def mu(self) -> int:
        """The first mask orientation (the only one in the paper's masks)."""
        return self.mask_orientations[0]

    @property
    def directions(self) -> tuple[int, ...]:
        return self.mask_orientations

    def phase(self) -> torch.Tensor:
        """``phi(x) = sum_i shifts[i] x[orientations_to_shift[i]] (mod width)``, int64 ``lattice.shape``."""
        c = self.lattice.coords(backend="torch")
        return sum(k * c[a] for a, k in enumerate(self._coef)) % self.width

    def _active_sites(self, mu: int) -> torch.Tensor:
        return self.phase() == self.active_phase

    def active_staple(self, mu: int) -> tuple[int, int]:
        return (self.nu, 1)

    def translations(self) -> list[tuple[int, ...]]:
        """Translations ``t`` with ``sum_a coef_a t_a = 0 (mod width)``: along single axes (the smallest
        multiple of the unit step) and along pairs of axes ``e_a + j e_b`` (smallest ``j``)."""
        nd, w, c, L = self.lattice.nd, self.width, self._coef, self.lattice.shape
        out: list[tuple[int, ...]] = []
        for a in range(nd):
            k = w // math.gcd(c[a], w)
            if k < L[a]:
                out.append(tuple(k * int(d == a) for d in range(nd)))
        for a in range(nd):
            for b in range(a + 1, nd):
                j = next((j for j in range(1, w) if (c[a] + j * c[b]) % w == 0), None)
                if j is not None and j < L[b] and (w // math.gcd(c[a], w)) > 1:
                    out.append(tuple(int(d == a) + j * int(d == b) for d in range(nd)))
        return out

    def _params(self) -> dict[str, Any]:
        return {"mask_orientations": list(self.mask_orientations), "width": self.width,
                "active_phase": self.active_phase, "orientations_to_shift": list(self.orientations_to_shift),
                "shifts": list(self.shifts), "nu": self.nu}


def default_shift_parameters(lattice: Lattice) -> tuple[int, tuple[int, ...]]:
    """``(width, shifts)`` of the ``"shifted"`` pattern: the paper's ``4, (1, 2, 1, ...)`` when every extent is a
    multiple of 4, else ``2, (1, 1, ...)`` (even extents; the checkerboard-like case, e.g. 2^4).

    Examples
    --------
    >>> import latticekit as lk
    >>> default_shift_parameters(lk.Lattice((4, 4, 4, 8))), default_shift_parameters(lk.Lattice((2, 2, 2, 2)))
    ((4, (1, 2, 1, 1)), (2, (1, 1, 1, 1)))
    """
    _check_lattice(lattice)
    nd = lattice.nd
    if all(L % 4 == 0 for L in lattice.shape):
        return 4, (1, 2) + (1,) * (nd - 2)
    if any(L % 2 for L in lattice.shape):
        raise ValueError(f"lattice={lattice}: the shifted-stripe masks need even extents (width 2), or extents "
                         "divisible by 4 for the paper's width 4")
    return 2, (1,) * nd


def shifted_stripe_masks(lattice: Lattice, n_layers: int | None = None, *, width: int | None = None,
                         shifts: Sequence[int] | None = None, orientations_to_shift: Sequence[int] | None = None,
                         active_phase: int = 0) -> list[ShiftedStripeMask]:
    """The alternation scheme (module docstring): layer ``i`` uses ``orientations_to_shift`` rotated by
    ``r = i mod n`` places, mask orientation its first entry, the same ``shifts``, and active phase
    ``(active_phase + i // n) mod width`` (``n = len(orientations_to_shift)``).

    Defaults: ``orientations_to_shift = (0, ..., Nd - 1)``; ``width``, ``shifts`` from
    :func:`default_shift_parameters`; ``n_layers = n * width`` (every link once).

    Examples
    --------
    >>> import latticekit as lk
    >>> ms = shifted_stripe_masks(lk.Lattice((4, 4, 4, 4)), 48)
    >>> len(ms), ms[1].orientations_to_shift, ms[1].shifts, ms[1].nu
    (48, (1, 2, 3, 0), (1, 2, 1, 1), 2)
    """
    _check_lattice(lattice)
    nd = lattice.nd
    if width is None or shifts is None:
        w0, s0 = default_shift_parameters(lattice)
        width = w0 if width is None else width
        shifts = s0 if shifts is None else shifts
    ots = tuple(range(nd)) if orientations_to_shift is None else _int_list("orientations_to_shift",
                                                                           orientations_to_shift)
    if not _is_int(width) or width < 2:
        raise ValueError(f"width={width!r}: expected an integer period >= 2")
    n = len(ots)
    count = _n_layers(n_layers, n * int(width))
    out = []
    for i in range(count):
        r = i % n
        rot = ots[r:] + ots[:r]
        out.append(ShiftedStripeMask(lattice, (rot[0],), int(width), (active_phase + i // n) % int(width), rot,
                                     tuple(shifts)))
    return out
