"""openQCD gauge configurations (``export_cnfg`` / ``import_cnfg`` of openQCD 1.x, archive.c).

Layout (little-endian throughout):

1. ``int32 N0, N1, N2, N3`` -- lattice sizes, ``x0`` is time;
2. ``float64 plaq`` -- ``sum_p Re tr U(p) / (6 N0 N1 N2 N3)``: the average plaquette as openQCD stores
   it, **not** divided by N (3 for the unit field; latticekit's ``(1/N) Re tr P`` is ``plaq / 3``);
3. for every odd point ``x`` (``x0 + x1 + x2 + x3`` odd) in lexicographic order (``x0`` slowest,
   ``x3`` fastest) the 8 SU(3) matrices ``U(x,0), U(x-0,0), U(x,1), U(x-1,1), ..., U(x,3), U(x-3,3)``,
   where ``U(x-mu,mu)`` is the link from ``x - mu`` to ``x``; each matrix 9 complex doubles row-major.

Every link touches exactly one odd point, so all extents must be even. openQCD's directions and
lattice axes coincide with latticekit's (direction 0 = time = axis 0, x3 fastest): no permutation.

Verified when reading: size, unitarity, and the stored plaquette against ``sum Re tr P / (6V)``
computed with periodic weights (files from runs with open or Schroedinger-functional boundaries
store a weighted sum with zero time links on the boundary; read those with ``verify=False``).
Only SU(3) in double precision exists in this format; round trips are bit-exact.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io.openqcd import read_openqcd, write_openqcd
>>> U = lk.SU(3).random(lk.backends.rng(0), (4,), (2, 2, 2, 4))
>>> path = os.path.join(tempfile.mkdtemp(), "cfg.oqcd")
>>> write_openqcd(path, U, lk.SU(3))
>>> V, meta = read_openqcd(path)
>>> bool((V == U).all()), meta.checks_ok
(True, True)
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from latticekit.groups import SUGroup

from ._common import (
    WRITE_UNITARITY_TOL,
    FieldMeta,
    as_group,
    as_lattice,
    atomic_write,
    average_link_trace_np,
    check_field,
    check_value,
    endian_name,
    finish_checks,
    plaquette_sum_np,
    precision_name,
    read_bytes,
    unitarity_check,
    unitarity_defect_np,
    verify_mode,
)
from .errors import IOFormatError

__all__ = ["openqcd_plaquette", "read_openqcd", "write_openqcd"]

_HDR = struct.Struct("<4id")


def _geometry(lat: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Flat indices of odd points (lexicographic) and, per mu, the flat index of ``x - mu``."""
    c = np.indices(lat).reshape(4, -1)
    odd = np.nonzero(c.sum(axis=0) % 2 == 1)[0]
    strides = [math.prod(lat[k + 1:]) for k in range(4)]
    back = []
    for mu in range(4):
        co = c[:, odd].copy()
        co[mu] = (co[mu] - 1) % lat[mu]
        back.append(sum(co[k] * strides[k] for k in range(4)))
    return odd, back


def openqcd_plaquette(U: np.ndarray) -> float:
    """openQCD's stored plaquette ``sum_p Re tr U(p) / (6 V)`` of a field ``(4, 3, 3, *L)`` (unit field: 3).

    Examples
    --------
    >>> import numpy as np
    >>> U = np.zeros((4, 3, 3, 2, 2, 2, 2), complex); U[:, [0, 1, 2], [0, 1, 2]] = 1
    >>> openqcd_plaquette(U)
    3.0
    """
    return plaquette_sum_np(U) / (6 * math.prod(U.shape[3:]))


def read_openqcd(path: Any, *, lattice: Any = None, group: Any = None, verify: bool | str = True,
                 strict: bool = True) -> tuple[np.ndarray, FieldMeta]:
    """Read an openQCD configuration into a host array ``(4, 3, 3, N0, N1, N2, N3)`` (complex128).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    lattice : Lattice or sequence of int, optional
        Expected ``(N0, N1, N2, N3)``; a different file lattice raises IOFormatError.
    group : Group or str, optional
        Must be SU(3) when given.
    verify : bool or 'require'
        Verify unitarity and the stored plaquette; ``'require'`` refuses every openQCD file (the
        format has no checksum).
    strict : bool
        With ``verify``, raise IOFormatError on the first failed check (``False``: only record it).

    Returns
    -------
    U : numpy.ndarray
    meta : FieldMeta
        ``meta.header`` holds ``N0..N3`` and ``plaq`` (openQCD normalisation).

    Examples
    --------
    See the module docstring.
    """
    verify = verify_mode(verify)
    data = read_bytes(path)
    if len(data) < _HDR.size:
        raise IOFormatError(f"file has {len(data)} bytes, shorter than the {_HDR.size}-byte header", path,
                            "openQCD header")
    *lat_, plaq = _HDR.unpack_from(data, 0)
    lat = tuple(int(v) for v in lat_)
    if not all(2 <= n <= 1 << 16 and n % 2 == 0 for n in lat):
        raise IOFormatError(f"lattice sizes {lat}: expected even extents in 2..65536", path, "openQCD header")
    want = as_lattice(lattice)
    if want is not None and tuple(want) != lat:
        raise IOFormatError(f"file lattice (N0, N1, N2, N3) = {lat}, expected lattice={tuple(want)}", path, "lattice")
    g = as_group(group)
    if g is not None and not (isinstance(g, SUGroup) and g.N == 3):
        raise IOFormatError(f"openQCD files hold SU(3) links, expected group={g.name}", path, "group")
    vol = math.prod(lat)  # Python integers: 65536^4 sites must not wrap around to 0
    need = _HDR.size + vol * 4 * 9 * 16
    if len(data) != need:
        raise IOFormatError(f"file has {len(data)} bytes; lattice {lat} needs {need} "
                            f"({'truncated' if len(data) < need else 'trailing data'})", path, "openQCD size")
    m = np.frombuffer(data, dtype="<c16", offset=_HDR.size).reshape(vol // 2, 8, 3, 3)
    if not np.all(np.isfinite(m)):
        raise IOFormatError("links contain NaN or infinite numbers", path, "openQCD payload")
    odd, back = _geometry(lat)
    flat = np.empty((4, vol, 3, 3), dtype=np.complex128)
    filled = np.zeros((4, vol), dtype=bool)
    for mu in range(4):
        flat[mu, odd] = m[:, 2 * mu]
        flat[mu, back[mu]] = m[:, 2 * mu + 1]
        filled[mu, odd] = True
        filled[mu, back[mu]] = True
    if not filled.all():  # cannot happen for even extents; kept as a guard against a wrong geometry
        raise IOFormatError("not every link is stored", path, "openQCD layout")
    U = np.ascontiguousarray(np.moveaxis(flat, 1, 3).reshape((4, 3, 3) + lat))
    meta = FieldMeta(format="openqcd", path=str(path), lattice=lat, group="SU(3)", precision="double",
                     endianness="little", header={"N0": lat[0], "N1": lat[1], "N2": lat[2], "N3": lat[3], "plaq": plaq})
    p = openqcd_plaquette(U)  # the plaquette and link trace also with verify=False: cheap, and what `info` shows
    meta.plaquette = p / 3.0
    meta.link_trace = average_link_trace_np(U)
    if verify:
        meta.absent.append("checksum: the openQCD format has none; only unitarity and the stored plaquette "
                           "are verified")
        meta.checks.append(unitarity_check(m, "double"))
        meta.checks.append(check_value("openQCD plaquette (sum Re tr P / 6V)", plaq, p, "double"))
    finish_checks(meta, verify, strict)
    return U, meta


def write_openqcd(path: Any, U: Any, group: Any = "SU3", *, precision: Any = "double", endian: Any = "little",
                  meta: Any = None) -> None:
    """Write one SU(3) field ``(4, 3, 3, N0, N1, N2, N3)`` (even extents) in openQCD format (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    U : array
        Gauge field of any backend.
    group : Group or str
        Must be SU(3).
    precision : {'double'}
        openQCD stores doubles only; anything else is refused.
    endian : {'little'}
        openQCD files are little-endian; anything else is refused.
    meta : None
        The format has no room for metadata; must be None or empty.

    Examples
    --------
    See the module docstring.
    """
    g = as_group(group)
    if not (isinstance(g, SUGroup) and g.N == 3):
        raise ValueError(f"group={g!r}: openQCD files hold SU(3) links; save other groups with format='hdf5'")
    if precision_name(precision) != "double":
        raise ValueError(f"precision={precision!r}: openQCD files hold double precision only")
    if endian_name(endian) != "little":
        raise ValueError(f"endian={endian!r}: openQCD files are little-endian by definition")
    if meta:
        raise ValueError("meta: the openQCD format has no room for metadata; use format='hdf5' or 'nersc'")
    a = check_field(U, g, "U")
    if a.ndim != 7:
        raise ValueError(f"U has shape {a.shape}; openQCD files hold one 4D configuration (4, 3, 3, N0, N1, N2, N3)")
    lat = tuple(int(n) for n in a.shape[-4:])
    if any(n % 2 for n in lat):
        raise ValueError(f"U has lattice {lat}; openQCD stores links by odd points and needs even extents")
    a = a.astype(np.complex128)
    vol = math.prod(lat)
    flat = np.moveaxis(a.reshape((4, 3, 3, vol)), 3, 1)  # (4, V, 3, 3)
    d = unitarity_defect_np(flat)
    if not d <= WRITE_UNITARITY_TOL["double"]:
        raise ValueError(f"U is not in SU(3): largest defect {d:.3e}; project the links before saving")
    odd, back = _geometry(lat)
    m = np.empty((vol // 2, 8, 3, 3), dtype="<c16")
    for mu in range(4):
        m[:, 2 * mu] = flat[mu, odd]
        m[:, 2 * mu + 1] = flat[mu, back[mu]]
    hdr = _HDR.pack(*lat, openqcd_plaquette(a))
    atomic_write(path, [hdr, m.tobytes()])
