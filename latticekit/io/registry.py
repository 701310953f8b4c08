"""One entry point for every format: :func:`load` (with format sniffing) and :func:`save`.

Readers decode bytes on the host with NumPy and hand the field to the requested backend and device
through :func:`latticekit.backends.from_numpy` (zero copy for numpy and torch on the CPU).

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io import load, save
>>> U = lk.SU(3).random(lk.backends.rng(0), (4,), (2, 4, 4, 4))
>>> d = tempfile.mkdtemp()
>>> for fmt in ("nersc", "ildg", "openqcd", "hdf5"):
...     save(os.path.join(d, "cfg." + fmt), U, lk.SU(3), format=fmt)
>>> V, meta = load(os.path.join(d, "cfg.ildg"))
>>> meta.format, meta.lattice, meta.group, bool((V == U).all())
('ildg', (2, 4, 4, 4), 'SU(3)', True)
>>> sniff_format(os.path.join(d, "cfg.openqcd"))
'openqcd'
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any, Mapping

import numpy as np

from latticekit.backends import from_numpy
from latticekit.groups import SUGroup

from ._common import FieldMeta, as_group, as_lattice, endian_name, lattice_arg, verify_mode
from .errors import IOFormatError

__all__ = ["FORMATS", "load", "save", "sniff_format"]

#: formats known to :func:`load` and :func:`save`
FORMATS = ("nersc", "ildg", "openqcd", "hdf5")
_ALIASES = {"nersc": "nersc", "ildg": "ildg", "lime": "ildg", "scidac": "ildg", "openqcd": "openqcd",
            "oqcd": "openqcd", "hdf5": "hdf5", "h5": "hdf5", "ensemble": "hdf5"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NERSC_MAGIC = b"BEGIN_HEADER"
_LIME_MAGIC = 0x456789AB
#: formats whose files hold lattices of one dimension (HDF5 ensembles hold any), with their names in messages
_LATTICE_ND = {"nersc": (4, "NERSC"), "ildg": (4, "ILDG"), "openqcd": (4, "openQCD")}
#: the groups whose links files of these formats can hold (the library's readers)
_GROUPS = {"nersc": ((2, 3), "SU(2) or SU(3)"), "ildg": (None, "SU(N)"), "openqcd": ((3,), "SU(3)")}


def format_name(fmt: Any, argname: str = "format") -> str:
    """Canonical format name from a name or alias ('lime' -> 'ildg', 'h5' -> 'hdf5').

    Examples
    --------
    >>> format_name("LIME")
    'ildg'
    """
    key = str(fmt).strip().lower().replace("-", "").replace("_", "")
    if key not in _ALIASES:
        raise ValueError(f"{argname}={fmt!r}: expected one of {FORMATS}")
    return _ALIASES[key]


def sniff_format(path: Any) -> str:
    """Recognise a file's format from its first bytes.

    NERSC, LIME and HDF5 files start with a signature. openQCD files have none: a file whose first
    16 bytes are four even little-endian int32 lattice sizes in 2..65536 is taken for openQCD (its
    reader then checks the size). When nothing matches, the error names the closest format and what
    is wrong with it (a damaged signature, an odd openQCD lattice size).

    Raises
    ------
    IOFormatError
        No known format matches.

    Examples
    --------
    See the module docstring.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(24)
    if head.startswith(_NERSC_MAGIC):
        return "nersc"
    if len(head) >= 4 and struct.unpack(">I", head[:4])[0] == _LIME_MAGIC:
        return "ildg"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    if len(head) >= 24 and all(_openqcd_extent(n) for n in struct.unpack("<4i", head[:16])):
        return "openqcd"
    raise IOFormatError(f"not a NERSC, ILDG/LIME, openQCD or latticekit HDF5 file (first bytes {head[:16]!r}, "
                        f"{size} bytes){_closest_match(head, size)}", path, "format detection")


def _openqcd_extent(n: int) -> bool:
    return 2 <= n <= 1 << 16 and n % 2 == 0


def _closest_match(head: bytes, size: int) -> str:
    """'; closest match: ...' naming the format whose signature or header the bytes nearly fit, or ''."""
    found = []
    for name, magic in (("NERSC", _NERSC_MAGIC), ("ILDG/LIME", _LIME_MAGIC.to_bytes(4, "big")),
                        ("HDF5", _HDF5_MAGIC)):
        if len(head) >= len(magic):
            diff = sum(a != b for a, b in zip(head, magic))
            if diff <= max(1, len(magic) // 4):
                found.append(f"{name}, whose signature {magic!r} differs from the file's first bytes "
                             f"{head[:len(magic)]!r} in {diff} byte{'s' if diff > 1 else ''} (damaged signature?)")
    if len(head) >= 24:
        dims = struct.unpack("<4i", head[:16])
        good = [_openqcd_extent(n) for n in dims]
        if sum(good) == 3:
            k = good.index(False)
            found.append(f"openQCD, whose header gives lattice sizes {dims}: N{k} = {dims[k]} is not an even extent "
                         f"in 2..65536 (damaged header?)")
    elif 16 <= len(head) < 24 and all(_openqcd_extent(n) for n in struct.unpack("<4i", head[:16])):
        found.append(f"openQCD, whose lattice sizes {struct.unpack('<4i', head[:16])} the file starts with, but it "
                     f"ends after {size} bytes, inside the 24-byte header (truncated)")
    return f"; closest match: {found[0]}" if found else ""


#: errors that malformed content can raise inside a reader (besides IOFormatError): all become IOFormatError
_CONTENT_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RuntimeError, struct.error,
                   OverflowError, UnicodeError, MemoryError, zlib.error, json.JSONDecodeError)


def check_read_arguments(fmt: str, lattice: Any, group: Any) -> None:
    """Refuse, with a ValueError naming the argument, a ``lattice`` or ``group`` that no file of format ``fmt``
    can match (a lattice of another dimension than the format's, a group whose links it never holds), before the
    file is read.

    Examples
    --------
    >>> check_read_arguments("hdf5", (8, 8, 8), None)
    >>> check_read_arguments("ildg", (8, 8, 8), None)
    Traceback (most recent call last):
    ...
    ValueError: lattice=(8, 8, 8) (--lattice on the command line): ILDG files hold 4D lattices (Lt, Lx, Ly, Lz); \
got 3 extents
    """
    g = as_group(group)
    if fmt in _LATTICE_ND:
        lattice_arg(lattice, *_LATTICE_ND[fmt])
        Ns, holds = _GROUPS[fmt]
        if g is not None and not (isinstance(g, SUGroup) and (Ns is None or g.N in Ns)):
            # no file of the format holds it: it was reported as a damaged file (user probe)
            raise ValueError(f"group={g.name} (--group on the command line): {_LATTICE_ND[fmt][1]} files hold "
                             f"{holds} links")
    else:
        as_lattice(lattice)


def _read_host(path: Any, fmt: str | None, lattice: Any, group: Any, verify: bool | str, strict: bool,
               index: Any = -1) -> tuple[np.ndarray, FieldMeta]:
    """Decode a file on the host; every malformed-content error surfaces as IOFormatError."""
    as_lattice(lattice)
    as_group(group)
    verify = verify_mode(verify)
    if index is not None and (not isinstance(index, (int, np.integer, slice)) or isinstance(index, bool)):
        raise TypeError(f"index={index!r}: expected an integer or a slice")
    fmt = sniff_format(path) if fmt is None else format_name(fmt)
    check_read_arguments(fmt, lattice, group)  # the caller's fault, not the file's: outside the try below
    if fmt != "hdf5" and not (index is None or (not isinstance(index, slice) and int(index) in (0, -1))):
        raise ValueError(f"index={index!r}: a {fmt} file holds one configuration; index selects configurations of "
                         f"HDF5 ensembles only (leave it out, or 0 / -1, for this file)")
    from .hdf5_fields import read_hdf5
    from .ildg import read_ildg
    from .nersc import read_nersc
    from .openqcd import read_openqcd

    reader = {"nersc": read_nersc, "ildg": read_ildg, "openqcd": read_openqcd, "hdf5": read_hdf5}[fmt]
    kw: dict[str, Any] = {"index": index} if fmt == "hdf5" else {}
    try:
        return reader(path, lattice=lattice, group=group, verify=verify, strict=strict, **kw)
    except (IOFormatError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except _CONTENT_ERRORS as exc:
        raise IOFormatError(f"malformed {fmt} file ({type(exc).__name__}: {exc})", path, f"{fmt} structure") from exc


def load(path: Any, *, format: str | None = None, lattice: Any = None, group: Any = None,
         backend: str | None = None, device: Any = None, verify: bool | str = True,
         index: int | slice | None = -1) -> tuple[Any, FieldMeta]:
    """Read a gauge configuration from any supported file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    format : {'nersc', 'ildg', 'openqcd', 'hdf5'}, optional
        Default: recognised from the file's first bytes (:func:`sniff_format`).
    lattice : Lattice or sequence of int, optional
        Library lattice ``(L0, L1, L2, L3) = (Lt, Lx, Ly, Lz)``: checked against the file, or used
        for ILDG files without an ``ildg-format`` record.
    group : Group or str, optional
        Checked against the file, or used for ILDG files without a format record.
    backend, device : optional
        Where the field goes (default: the current default backend, see ``latticekit.backends.use``).
    verify : bool or 'require'
        Verify checksums, header plaquette/link trace and unitarity; a failure raises IOFormatError.
        Checks the file does not allow (no checksum in it) are listed in ``meta.absent``;
        ``'require'`` refuses such a file unless a checksum covers its payload. ``False`` skips the checks
        (structure, size and finite numbers are always checked); ``meta.plaquette`` and ``meta.link_trace``
        are computed from the data either way.
    index : int, slice or None
        HDF5 ensembles only: which committed configuration(s) (default the last; a slice gives a batch;
        a slice that selects none, or an integer out of range, raises IOFormatError naming the number of
        configurations). The other formats hold one configuration: any index but None, 0 or -1 is a
        ValueError.

    Returns
    -------
    U : array
        ``(Nd, *G, L0, ..., L3)`` in the library layout (direction 0 = time) on ``backend``/``device``.
    meta : FieldMeta
        Format, lattice, group, precision, endianness, header values and the outcome of every check.

    Raises
    ------
    IOFormatError
        Unrecognised, corrupt, truncated, wrong-lattice, wrong-group or non-unitary data, or a failed check:
        the only error a file's content can cause (a missing file raises FileNotFoundError).

    Examples
    --------
    See the module docstring.
    """
    U, meta = _read_host(path, format, lattice, group, verify, True, index)
    return from_numpy(U, backend=backend, device=device), meta


def save(path: Any, U: Any, group: Any, *, format: str, precision: Any = "double", endian: str | None = None,
         meta: Mapping[str, Any] | None = None) -> None:
    """Write a gauge configuration (atomically: temporary file in the same folder, then rename).

    An existing file at ``path`` is replaced without asking (like ``numpy.save``; for HDF5 the whole
    ensemble it held is lost); ``latticekit convert`` refuses an existing target unless ``--overwrite``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    U : array
        ``(4, *G, Lt, Lx, Ly, Lz)`` of any backend (HDF5: any Nd and optional batch axis).
    group : Group or str
        The gauge group (NERSC: SU(2)/SU(3); ILDG: SU(N); openQCD: SU(3); HDF5: any).
    format : {'nersc', 'ildg', 'openqcd', 'hdf5'}
        File format.
    precision : {'double', 'single'}
        Floating-point precision in the file (openQCD: double only).
    endian : {'big', 'little'}, optional
        Byte order; default the format's own (big for NERSC/ILDG, little for openQCD). ILDG is
        big-endian and openQCD little-endian only; HDF5 ignores a valid value (it stores little-endian).
        Any other value is a ValueError for every format.
    meta : mapping, optional
        NERSC: extra header fields; ILDG: extra xlf-info lines; HDF5: ensemble metadata (action,
        action_params, sampler, sampler_params, seeds, observables, anything else).

    Examples
    --------
    See the module docstring.
    """
    fmt = format_name(format)
    g = as_group(group)
    if g is None:
        raise ValueError("group: required (a Group or a name such as 'SU3')")
    if endian is not None:
        endian_name(endian)  # a bogus value is refused for every format, also for HDF5, which ignores a valid one
    if fmt == "hdf5":
        from .hdf5_fields import write_hdf5

        write_hdf5(path, U, g, precision=precision, meta=meta)
        return
    end = endian_name(endian) if endian is not None else ("little" if fmt == "openqcd" else "big")
    if fmt == "nersc":
        from .nersc import write_nersc

        write_nersc(path, U, g, precision=precision, endian=end, meta=meta)
    elif fmt == "ildg":
        from .ildg import write_ildg

        write_ildg(path, U, g, precision=precision, endian=end, meta=meta)
    else:
        from .openqcd import write_openqcd

        write_openqcd(path, U, g, precision=precision, endian=end, meta=meta)
