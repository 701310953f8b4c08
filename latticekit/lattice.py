"""Lattice geometry: shape, directions, shifts with boundary phases, parity, masks and blocking.

Layout (DESIGN.md): lattice axes are the LAST ``nd`` axes of every field, in direction order;
direction ``mu`` lives on array axis ``-nd + mu`` and ``mu = 0`` is time.

Examples
--------
>>> import numpy as np
>>> from latticekit import Lattice
>>> lat = Lattice((4, 6))
>>> f = np.arange(24.0).reshape(4, 6)
>>> bool((lat.shift(f, 1, +1)[:, 0] == f[:, 1]).all())    # shift(f, mu, +1)[x] = f[x + mu]
True
>>> bool((lat.shift(lat.shift(f, 0, +1, phase=-1), 0, -1, phase=-1) == f).all())
True
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from latticekit.backends import array_namespace, backend_name, default_device, namespace, normalize_device
from latticekit.backends import device as _device

__all__ = ["Lattice", "LatticeMismatchError"]


class LatticeMismatchError(ValueError):
    """A field whose lattice axes do not match the lattice it is used with."""


def _dirs(nd: int, dirs: Iterable[int] | None, argname: str = "dirs") -> tuple[int, ...]:
    if dirs is None:
        return tuple(range(nd))
    out = tuple(_integer(d, argname, dirs) for d in dirs)
    for d in out:
        if not 0 <= d < nd:
            raise ValueError(f"{argname}={tuple(dirs)}: directions must lie in 0..{nd - 1}")
    if len(set(out)) != len(out):
        raise ValueError(f"{argname}={out}: repeated direction")
    return out


def _integer(v: Any, argname: str, whole: Any) -> int:
    """An integer (Python or NumPy) entry of argument ``argname``; a bool or a float such as 8.7 is
    refused (``int()`` would read True as 1 and truncate 8.7 to 8)."""
    if not isinstance(v, bool) and type(v).__name__ != "bool_":
        try:
            return operator.index(v)
        except TypeError:
            pass
    raise TypeError(f"{argname}={whole!r}: expected integers, got {v!r} ({type(v).__name__})")


def _factors(factor: Any, n: int) -> tuple[int, ...]:
    """Blocking factors: one integer for all ``n`` directions, or one per direction."""
    if isinstance(factor, (str, bytes)) or not isinstance(factor, Iterable):
        return (_integer(factor, "factor", factor),) * n
    return tuple(_integer(b, "factor", factor) for b in factor)


@dataclass(frozen=True)
class Lattice:
    """A periodic hypercubic lattice ``L0 x L1 x ... x L_{nd-1}`` (direction 0 is time).

    Parameters
    ----------
    shape : sequence of int
        Extents per direction, each >= 1.

    Examples
    --------
    >>> lat = Lattice((8, 8))
    >>> lat.nd, lat.volume
    (2, 64)
    >>> lat.coarsen(2)
    Lattice(shape=(4, 4))
    """

    shape: tuple[int, ...]

    def __init__(self, shape: Sequence[int] | int) -> None:
        # a string is a sequence ("16" would read as (1, 6)); int() would truncate 8.7 and read True as 1
        if isinstance(shape, (int, str, bytes)) or not isinstance(shape, Iterable):
            raise TypeError(f"shape={shape!r}: expected a sequence of integer extents such as (8, 8), "
                            f"got {type(shape).__name__}")
        shp = tuple(_integer(s, "shape", shape) for s in shape)
        if len(shp) == 0 or any(s < 1 for s in shp):
            raise ValueError(f"shape={shape!r}: expected at least one direction, all extents >= 1")
        object.__setattr__(self, "shape", shp)

    # -- basic properties ----------------------------------------------------------------------
    @property
    def nd(self) -> int:
        """Number of lattice dimensions."""
        return len(self.shape)

    @property
    def volume(self) -> int:
        """Number of sites."""
        v = 1
        for s in self.shape:
            v *= s
        return v

    def axis(self, mu: int) -> int:
        """The (negative) array axis of direction ``mu``."""
        if type(mu) is not int and (isinstance(mu, bool) or not isinstance(mu, numbers.Integral)):
            # 1.0 failed with "tuple indices must be integers", -1 or True passed (user probe)
            raise TypeError(f"mu={mu!r}: expected an integer direction in 0..{self.nd - 1}")
        if not 0 <= mu < self.nd:
            raise ValueError(f"mu={mu}: expected a direction in 0..{self.nd - 1}")
        return -self.nd + int(mu)

    def planes(self) -> list[tuple[int, int]]:
        """All planes ``(mu, nu)`` with ``mu < nu``."""
        return [(m, n) for m in range(self.nd) for n in range(m + 1, self.nd)]

    def check(self, f: Any, name: str = "field", inner: tuple[int, ...] | None = None) -> None:
        """Raise :class:`LatticeMismatchError` unless the last ``nd`` axes of ``f`` are this lattice.

        ``inner`` optionally fixes the axes right before the lattice axes (e.g. ``(nd, 3, 3)`` for an
        SU(3) gauge field).
        """
        if not hasattr(f, "shape"):   # a nested list failed with "'list' object has no attribute 'shape'" (user probe)
            raise TypeError(f"{name} is a {type(f).__name__}; expected an array (numpy, torch, cupy or "
                            f"array_api_strict) of shape (*batch, {', '.join(map(str, (inner or ()) + self.shape))})")
        shp = tuple(f.shape)
        want = (inner or ()) + self.shape
        if len(shp) < len(want) or shp[len(shp) - len(want):] != want:
            what = f"(*batch, {', '.join(map(str, want))})"
            raise LatticeMismatchError(f"{name} has shape {shp}; expected {what} for {self}")

    # -- shifts --------------------------------------------------------------------------------
    def shift(self, f: Any, mu: int, step: int = 1, phase: complex | float | None = None) -> Any:
        """``shift(f, mu, s)[x] = f[x + s*mu]``; crossing the boundary multiplies by ``phase``.

        A forward crossing (``s > 0``) multiplies by ``phase``, a backward one by its conjugate
        (``phase=-1`` is antiperiodic). Without a phase this is a periodic ``roll``.
        Requires ``|step| < L_mu`` when a phase is given.
        """
        ax = self.axis(mu)
        if type(step) is not int:
            if isinstance(step, bool) or not isinstance(step, numbers.Integral):
                # 1.5 shifted by 1 on NumPy and failed inside torch (user probe)
                raise TypeError(f"step={step!r}: expected an integer number of sites")
            step = int(step)
        if isinstance(phase, numbers.Number) and type(phase) not in (int, float, complex):
            # a NumPy scalar phase (np.exp(0.3j)) is not an array of array_api_strict (it failed there)
            phase = float(phase) if isinstance(phase, numbers.Real) else complex(phase)
        L = self.shape[mu]
        xp = array_namespace(f)
        if phase is None or phase == 1:
            return xp.roll(f, -step, axis=ax)
        if not -L < step < L:
            raise ValueError(f"step={step}: with a boundary phase expected |step| < L_{mu} = {L}")
        if step == 0:
            return f
        tail = (slice(None),) * (self.nd - 1 - mu)

        def sl(a: int | None, b: int | None) -> Any:
            return f[(..., slice(a, b)) + tail]

        if step > 0:
            return xp.concat([sl(step, None), phase * sl(None, step)], axis=ax)
        k = -step
        cph = phase.conjugate() if isinstance(phase, complex) else phase
        return xp.concat([cph * sl(L - k, None), sl(None, L - k)], axis=ax)

    # -- coordinates and masks -----------------------------------------------------------------
    def coords(self, like: Any = None, backend: str | None = None, device: Any = None) -> Any:
        """Integer coordinates, shape ``(nd, L0, ..., L_{nd-1})``, on the backend/device of ``like``."""
        xp, dev = self._xp_dev(like, backend, device)
        out = []
        for mu, L in enumerate(self.shape):
            r = xp.arange(L, dtype=xp.int64, device=dev)
            shp = [1] * self.nd
            shp[mu] = L
            out.append(xp.broadcast_to(xp.reshape(r, tuple(shp)), self.shape))
        return xp.stack(out, axis=0)

    def parity(self, like: Any = None, backend: str | None = None, device: Any = None) -> Any:
        """Site parity ``(sum_mu x_mu) mod 2`` as int64, shape ``lattice.shape``."""
        c = self.coords(like, backend, device)
        xp = array_namespace(c)
        return xp.sum(c, axis=0) % 2

    def even_mask(self, like: Any = None, backend: str | None = None, device: Any = None) -> Any:
        """Boolean mask of even sites (parity 0)."""
        return self.parity(like, backend, device) == 0

    def odd_mask(self, like: Any = None, backend: str | None = None, device: Any = None) -> Any:
        """Boolean mask of odd sites (parity 1)."""
        return self.parity(like, backend, device) == 1

    def checkerboard(self, parity: int = 0, like: Any = None, dtype: Any = None, **kw: Any) -> Any:
        """Mask equal to 1 on sites of the given parity and 0 elsewhere (dtype of ``like`` by default)."""
        if parity not in (0, 1):
            raise ValueError(f"parity={parity!r}: expected 0 or 1")
        m = self.parity(like, **kw) == parity
        return self._as_dtype(m, like, dtype)

    def stripe_mask(self, mu: int, period: int, offset: int = 0, like: Any = None, dtype: Any = None, **kw: Any) -> Any:
        """Mask of sites with ``x_mu mod period == offset`` (stripes used by gauge coupling layers)."""
        period, offset = _integer(period, "period", period), _integer(offset, "offset", offset)
        if period < 1 or not 0 <= offset < period:
            raise ValueError(f"period={period}, offset={offset}: expected period >= 1 and 0 <= offset < period")
        mu = self.axis(mu) + self.nd      # checked: an integer direction (0.0 raised a bare IndexError)
        m = self.coords(like, **kw)[mu, ...] % period == offset
        return self._as_dtype(m, like, dtype)

    def sublattice_mask(self, factor: int | Sequence[int], dirs: Iterable[int] | None = None, offset: int = 0,
                        like: Any = None, dtype: Any = None, **kw: Any) -> Any:
        """Mask of the sites ``x`` with ``x_mu mod b_mu == offset`` for every blocked direction mu."""
        dirs_, fac = self._blocking(factor, dirs)
        offset = _integer(offset, "offset", offset)
        if not all(0 <= offset < b for b in fac):   # as decimate: another offset selects no site at all
            raise ValueError(f"offset={offset}: expected 0 <= offset < {min(fac)} (the blocking factor)")
        c = self.coords(like, **kw)
        xp = array_namespace(c)
        m = xp.ones(self.shape, dtype=xp.bool, device=_device(c))
        for d, b in zip(dirs_, fac):
            m = xp.logical_and(m, c[d, ...] % b == offset)
        return self._as_dtype(m, like, dtype)

    # -- blocking ------------------------------------------------------------------------------
    def _blocking(self, factor: int | Sequence[int], dirs: Iterable[int] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        dirs_ = _dirs(self.nd, dirs)
        fac = _factors(factor, len(dirs_))
        if len(fac) != len(dirs_):
            raise ValueError(f"factor={factor!r}: expected one factor per direction in {dirs_}")
        for d, b in zip(dirs_, fac):
            if b < 1 or self.shape[d] % b:
                raise ValueError(f"factor={b} does not divide L_{d} = {self.shape[d]} of {self}")
        return dirs_, fac

    def coarsen(self, factor: int | Sequence[int], dirs: Iterable[int] | None = None) -> "Lattice":
        """The coarse lattice obtained by blocking ``dirs`` (default all) by ``factor``."""
        dirs_, fac = self._blocking(factor, dirs)
        shp = list(self.shape)
        for d, b in zip(dirs_, fac):
            shp[d] //= b
        return Lattice(shp)

    def refine(self, factor: int | Sequence[int], dirs: Iterable[int] | None = None) -> "Lattice":
        """The fine lattice whose :meth:`coarsen` by ``factor`` is this lattice."""
        dirs_ = _dirs(self.nd, dirs)
        fac = _factors(factor, len(dirs_))
        if len(fac) != len(dirs_) or any(b < 1 for b in fac):
            raise ValueError(f"factor={factor!r}: expected positive factors, one per direction in {dirs_}")
        shp = list(self.shape)
        for d, b in zip(dirs_, fac):
            shp[d] *= b
        return Lattice(shp)

    def block_average(self, f: Any, factor: int | Sequence[int], dirs: Iterable[int] | None = None) -> Any:
        """Average ``f`` over blocks of ``factor`` sites in ``dirs``: fine field -> coarse field."""
        self.check(f, "f")
        dirs_, fac = self._blocking(factor, dirs)
        xp = array_namespace(f)
        lead = tuple(f.shape[: f.ndim - self.nd])
        split: list[int] = []
        red: list[int] = []
        for mu, L in enumerate(self.shape):
            if mu in dirs_:
                b = fac[dirs_.index(mu)]
                split += [L // b, b]
                red.append(len(lead) + len(split) - 1)
            else:
                split.append(L)
        g = xp.reshape(f, lead + tuple(split))
        return xp.mean(g, axis=tuple(red)) if red else g

    def upsample(self, f: Any, factor: int | Sequence[int], dirs: Iterable[int] | None = None) -> Any:
        """Naive upsampling: copy each site of the coarse field ``f`` (on ``self.coarsen``) onto its block.

        ``self`` is the FINE lattice; ``block_average(upsample(f)) == f``.
        """
        coarse = self.coarsen(factor, dirs)
        coarse.check(f, "f")
        dirs_, fac = self._blocking(factor, dirs)
        xp = array_namespace(f)
        lead = tuple(f.shape[: f.ndim - self.nd])
        expanded: list[int] = []
        target: list[int] = []
        for mu, L in enumerate(coarse.shape):
            if mu in dirs_:
                b = fac[dirs_.index(mu)]
                expanded += [L, 1]
                target += [L, b]
            else:
                expanded.append(L)
                target.append(L)
        g = xp.broadcast_to(xp.reshape(f, lead + tuple(expanded)), lead + tuple(target))
        return xp.reshape(g, lead + self.shape)

    def decimate(self, f: Any, factor: int | Sequence[int], dirs: Iterable[int] | None = None, offset: int = 0) -> Any:
        """Restrict ``f`` to the sublattice ``x_mu = b_mu * y_mu + offset``: fine field -> coarse field."""
        self.check(f, "f")
        dirs_, fac = self._blocking(factor, dirs)
        idx: list[Any] = [Ellipsis]
        for mu in range(self.nd):
            if mu in dirs_:
                b = fac[dirs_.index(mu)]
                if not 0 <= offset < b:
                    raise ValueError(f"offset={offset}: expected 0 <= offset < {b}")
                idx.append(slice(offset, None, b))
            else:
                idx.append(slice(None))
        return f[tuple(idx)]

    def embed(self, coarse_field: Any, fine_field: Any, factor: int | Sequence[int], dirs: Iterable[int] | None = None,
              offset: int = 0) -> Any:
        """Put ``coarse_field`` onto the sublattice of :meth:`decimate`, keeping ``fine_field`` elsewhere.

        ``decimate(embed(c, f)) == c`` and ``embed(decimate(f), f) == f``.
        """
        self.check(fine_field, "fine_field")
        xp = array_namespace(coarse_field, fine_field)
        up = self.upsample(coarse_field, factor, dirs)
        if offset:
            dirs_, _ = self._blocking(factor, dirs)
            for d in dirs_:
                up = xp.roll(up, offset, axis=self.axis(d))
        mask = self.sublattice_mask(factor, dirs, offset, like=fine_field, dtype=xp.bool)
        return xp.where(mask, up, fine_field)

    # -- helpers -------------------------------------------------------------------------------
    def _xp_dev(self, like: Any, backend: str | None, device: Any) -> tuple[Any, Any]:
        if like is not None:
            xp = array_namespace(like)
            return xp, _device(like)
        xp = namespace(backend)
        return xp, normalize_device(backend_name(xp), device if device is not None else default_device())

    @staticmethod
    def _as_dtype(mask: Any, like: Any, dtype: Any) -> Any:
        xp = array_namespace(mask)
        if dtype is None and like is not None and not xp.isdtype(like.dtype, "bool"):
            dtype = like.dtype
        if dtype is None:
            return mask
        if isinstance(dtype, str):
            dtype = getattr(xp, dtype)
        return xp.astype(mask, dtype)

    def __repr__(self) -> str:
        return f"Lattice(shape={self.shape})"
