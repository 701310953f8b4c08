"""NERSC gauge configurations ("Gauge Connection" archive format).

An ASCII header ``BEGIN_HEADER`` ... ``END_HEADER`` of ``KEY = VALUE`` lines, then the links in file
order (:mod:`latticekit.io.layout`): t slowest, then z, y, x; per site directions x, y, z, t; matrices
row-major; complex numbers as (re, im) in the precision and byte order of ``FLOATING_POINT``.

Data types read and written:

``4D_SU3_GAUGE_3x3``  full SU(3) matrices (default for SU(3)).
``4D_SU3_GAUGE``      two rows per matrix; the third row is ``conj(row1 x row2)``.
``4D_SU2_GAUGE_2x2``  full SU(2) matrices (latticekit convention; no common standard exists).
``4D_SU2_GAUGE``      first row ``(a, b)`` only; the matrix is ``[[a, b], [-conj(b), conj(a)]]``
                      (latticekit convention).

U(1) fields are refused: store them with ``format="hdf5"`` (angles, exact).

Verified when reading (``verify=True``): payload size, ``CHECKSUM`` (sum modulo 2^32 of the stored
payload read as 32-bit unsigned words in the file's byte order), ``PLAQUETTE`` (``(1/N) Re tr P``
averaged over sites and the six planes), ``LINK_TRACE`` (``(1/N) Re tr U`` averaged over all links)
and unitarity of every link. A header without ``CHECKSUM`` is read with the check listed in
``meta.absent`` (``verify="require"`` refuses it); what one flipped bit makes of a ``CHECKSUM``,
``PLAQUETTE`` or ``LINK_TRACE`` line that the header then lacks (a changed character, a blank next to
the key flipped into a kept character, a first or last character flipped into a line break, a line
joined to the one before) is a damaged header and fails a check.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io.nersc import read_nersc, write_nersc
>>> U = lk.SU(3).random(lk.backends.rng(0), (4,), (2, 2, 2, 2))
>>> path = os.path.join(tempfile.mkdtemp(), "cfg.nersc")
>>> write_nersc(path, U, lk.SU(3))
>>> V, meta = read_nersc(path)
>>> bool(abs(V - U).max() == 0), meta.header["DATATYPE"], meta.checks_ok
(True, '4D_SU3_GAUGE_3x3', True)
"""

from __future__ import annotations

import datetime
import platform
import re
from typing import Any, Mapping

import numpy as np

from latticekit.groups import SUGroup

from ._common import (
    WRITE_UNITARITY_TOL,
    Check,
    FieldMeta,
    as_group,
    as_lattice,
    average_link_trace_np,
    average_plaquette_np,
    check_field,
    check_value,
    complex_file_dtype,
    damaged_key_check,
    endian_name,
    finish_checks,
    lattice_arg,
    near_miss,
    precision_name,
    read_bytes,
    refuse_nonfinite,
    atomic_write,
    unitarity_check,
    unitarity_defect_np,
    verify_mode,
)
from .errors import IOFormatError
from .layout import file_dims_from_lattice, file_to_library, lattice_from_file_dims, library_to_file

__all__ = ["NERSC_DATATYPES", "nersc_checksum", "read_nersc", "write_nersc", "parse_nersc_header"]

#: DATATYPE -> (N, stored rows)
NERSC_DATATYPES = {
    "4D_SU3_GAUGE_3x3": (3, 3),
    "4D_SU3_GAUGE": (3, 2),
    "4D_SU2_GAUGE_2x2": (2, 2),
    "4D_SU2_GAUGE": (2, 1),
}
_FLOATING = {
    "IEEE64BIG": ("double", "big"), "IEEE64LITTLE": ("double", "little"),
    "IEEE32BIG": ("single", "big"), "IEEE32LITTLE": ("single", "little"),
    "IEEE64": ("double", "big"), "IEEE32": ("single", "big"),
}
_COMPUTED_KEYS = {"DATATYPE", "DIMENSION_1", "DIMENSION_2", "DIMENSION_3", "DIMENSION_4", "CHECKSUM",
                  "PLAQUETTE", "LINK_TRACE", "FLOATING_POINT"}
_MAX_HEADER = 1 << 16
#: header keys whose loss would silently skip a verification
_VERIFIED_KEYS = ("CHECKSUM", "PLAQUETTE", "LINK_TRACE")
#: characters next to a key in a header line (line breaks, the blanks around ``=``, ``=`` itself)
_KEY_ADJACENT = " \t\r\n="
#: characters at which the reader ends a key: whitespace (stripped), line breaks (``str.splitlines``), ``=``
_KEY_CUTS = "".join(chr(i) for i in range(128) if chr(i).isspace()) + "="
#: a verified key inside a value: its line joined to the one before (the line break was flipped)
_JOINED = re.compile(r"(.)(" + "|".join(_VERIFIED_KEYS) + r")\s*=", re.IGNORECASE)


def nersc_checksum(payload: bytes | np.ndarray, endian: str = "big") -> int:
    """NERSC CHECKSUM: sum modulo 2^32 of the payload read as 32-bit unsigned words.

    Parameters
    ----------
    payload : bytes or numpy array
        The binary data exactly as stored after ``END_HEADER``.
    endian : {'big', 'little'}
        Byte order of the file (the words are read in that order).

    Examples
    --------
    >>> nersc_checksum(bytes([0, 0, 0, 1, 0, 0, 0, 2]))
    3
    >>> nersc_checksum(bytes([1, 0, 0, 0]), "little")
    1
    """
    buf = payload.tobytes() if isinstance(payload, np.ndarray) else bytes(payload)
    if len(buf) % 4:
        raise ValueError(f"payload has {len(buf)} bytes; expected a multiple of 4")
    w = np.frombuffer(buf, dtype=(">u4" if endian_name(endian) == "big" else "<u4"))
    return int(np.sum(w, dtype=np.uint64) & np.uint64(0xFFFFFFFF))


def parse_nersc_header(data: bytes, path: Any = None) -> tuple[dict[str, str], int]:
    """Header key/values and the payload offset of a NERSC file's bytes.

    Examples
    --------
    >>> h, off = parse_nersc_header(b"BEGIN_HEADER\\nDATATYPE = 4D_SU3_GAUGE\\nEND_HEADER\\nxx")
    >>> h, off
    ({'DATATYPE': '4D_SU3_GAUGE'}, 48)
    """
    if not data.startswith(b"BEGIN_HEADER"):
        raise IOFormatError("file does not start with BEGIN_HEADER", path, "NERSC header")
    end = data.find(b"END_HEADER", 0, _MAX_HEADER)
    if end < 0:
        raise IOFormatError("no END_HEADER line within the first 64 KiB", path, "NERSC header")
    nl = data.find(b"\n", end)
    if nl < 0:
        raise IOFormatError("END_HEADER is not followed by a newline (file truncated?)", path, "NERSC header")
    try:
        text = data[len(b"BEGIN_HEADER"):end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise IOFormatError(f"header is not ASCII text ({exc.reason} at byte {exc.start})", path,
                            "NERSC header") from None
    header: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise IOFormatError(f"header line {line[:60]!r} is not 'KEY = VALUE'", path, "NERSC header")
        k, v = line.split("=", 1)
        header[k.strip().upper()] = v.strip()
    return header, nl + 1


def _damaged_keys(header: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(found, meant)`` for what one flipped bit made of a verified key that the header lacks.

    One bit can change a character of the key, glue a flipped blank to it (``CHECKSUM!= ...``), cut its
    first or last character off (flipped into a line break or a blank), or turn the line break before
    it into a character, which joins its line to the one before (``BOUNDARY_4 = PERIODICJCHECKSUM = ...``).
    """
    out = []
    for key, val in header.items():
        meant = near_miss(key, _VERIFIED_KEYS, _KEY_ADJACENT, _KEY_CUTS)
        if meant is not None and meant not in header:
            out.append((key, meant))
            continue
        for m in _JOINED.finditer(val):
            meant = m.group(2).upper()
            if meant not in header and _flips_into_line_break(m.group(1)):
                out.append((f"line '{key} = {val}' ({meant} joined to the line before: a damaged line break)", meant))
    return out


def _flips_into_line_break(c: str) -> bool:
    return any(ord(c) ^ ord(b) in (1, 2, 4, 8, 16, 32, 64, 128) for b in "\n\r")


def _int(header: Mapping[str, str], key: str, path: Any) -> int:
    try:
        v = int(header[key])
    except KeyError:
        raise IOFormatError(f"header has no {key}", path, "NERSC header") from None
    except ValueError:
        raise IOFormatError(f"{key} = {header[key]!r} is not an integer", path, "NERSC header") from None
    if not 1 <= v <= 1 << 20:
        raise IOFormatError(f"{key} = {v} is not a lattice extent in 1..2^20", path, "NERSC header")
    return v


def _float(header: Mapping[str, str], key: str, path: Any) -> float:
    try:
        return float(header[key])
    except ValueError:
        raise IOFormatError(f"{key} = {header[key]!r} is not a number", path, "NERSC header") from None


def _reconstruct(F: np.ndarray, N: int, rows: int) -> np.ndarray:
    """Full matrices (..., N, N) from the stored rows (..., rows, N)."""
    if rows == N:
        return F
    out = np.empty(F.shape[:-2] + (N, N), dtype=F.dtype.newbyteorder("="))
    out[..., :rows, :] = F
    if N == 3:
        a, b = F[..., 0, :], F[..., 1, :]
        out[..., 2, 0] = np.conj(a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1])
        out[..., 2, 1] = np.conj(a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2])
        out[..., 2, 2] = np.conj(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])
    else:  # SU(2): [[a, b], [-conj(b), conj(a)]]
        out[..., 1, 0] = -np.conj(F[..., 0, 1])
        out[..., 1, 1] = np.conj(F[..., 0, 0])
    return out


def _decode(data: bytes, path: Any, lattice: Any, group: Any, verify: bool) -> tuple[np.ndarray, FieldMeta]:
    header, off = parse_nersc_header(data, path)
    dtype_name = header.get("DATATYPE")
    if dtype_name not in NERSC_DATATYPES:
        raise IOFormatError(f"DATATYPE = {dtype_name!r}; expected one of {sorted(NERSC_DATATYPES)}", path,
                            "NERSC header")
    N, rows = NERSC_DATATYPES[dtype_name]
    fp = header.get("FLOATING_POINT", "IEEE32BIG").upper()
    if fp not in _FLOATING:
        raise IOFormatError(f"FLOATING_POINT = {fp!r}; expected one of {sorted(_FLOATING)}", path, "NERSC header")
    precision, endian = _FLOATING[fp]
    dims = tuple(_int(header, f"DIMENSION_{k}", path) for k in (1, 2, 3, 4))
    lat = lattice_from_file_dims(*dims)
    want_lat = as_lattice(lattice)
    if want_lat is not None and tuple(want_lat) != lat:
        raise IOFormatError(f"file lattice (Lt, Lx, Ly, Lz) = {lat}, expected lattice={tuple(want_lat)}", path,
                            "lattice")
    g = as_group(group)
    if g is not None and not (isinstance(g, SUGroup) and g.N == N):
        raise IOFormatError(f"file holds SU({N}) links (DATATYPE {dtype_name}), expected group={g.name}", path,
                            "group")
    vol = dims[0] * dims[1] * dims[2] * dims[3]
    cdt = complex_file_dtype(precision, endian)
    nbytes = vol * 4 * rows * N * cdt.itemsize
    have = len(data) - off
    if have != nbytes:
        raise IOFormatError(f"payload has {have} bytes; {dtype_name} {fp} on {dims[0]}x{dims[1]}x{dims[2]}x{dims[3]} "
                            f"needs {nbytes} ({'truncated' if have < nbytes else 'trailing data'})", path,
                            "NERSC payload size")
    payload = data[off:]
    F = np.frombuffer(payload, dtype=cdt).reshape((dims[3], dims[2], dims[1], dims[0], 4, rows, N))
    meta = FieldMeta(format="nersc", path=str(path), lattice=lat, group=f"SU({N})", precision=precision,
                     endianness=endian, header=dict(header))
    full = _reconstruct(F, N, rows)
    finite = bool(np.all(np.isfinite(full)))
    if verify:
        for found, meant in _damaged_keys(header):
            meta.checks.append(damaged_key_check("NERSC header key", found, meant))
        if "CHECKSUM" in header:
            try:
                stored = int(header["CHECKSUM"].lower().removeprefix("0x"), 16)
            except ValueError:
                raise IOFormatError(f"CHECKSUM = {header['CHECKSUM']!r} is not hexadecimal", path,
                                    "NERSC header") from None
            comp = nersc_checksum(payload, endian)
            meta.checks.append(Check("NERSC CHECKSUM", f"{stored:08x}", f"{comp:08x}", stored == comp,
                                     kind="checksum"))
        else:
            meta.absent.append("NERSC CHECKSUM: the header has no CHECKSUM line, so no checksum covers the payload")
    if not finite:
        refuse_nonfinite(meta, "payload data", "NERSC payload")
    if verify:
        meta.checks.append(unitarity_check(full, precision))
    U = file_to_library(full)
    meta.plaquette = average_plaquette_np(U)  # also with verify=False: cheap, and what `info` shows
    meta.link_trace = average_link_trace_np(U)
    if verify:
        for key, value in (("PLAQUETTE", meta.plaquette), ("LINK_TRACE", meta.link_trace)):
            if key in header:
                meta.checks.append(check_value(f"NERSC {key}", _float(header, key, path), value, precision))
            else:
                meta.absent.append(f"NERSC {key}: the header has no {key} line")
    return U, meta


def read_nersc(path: Any, *, lattice: Any = None, group: Any = None, verify: bool | str = True,
               strict: bool = True) -> tuple[np.ndarray, FieldMeta]:
    """Read a NERSC file into a host array in the library layout ``(4, N, N, Lt, Lx, Ly, Lz)``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    lattice : Lattice or sequence of int, optional
        Expected library lattice ``(Lt, Lx, Ly, Lz)``; a different file lattice raises IOFormatError.
    group : Group or str, optional
        Expected group; a different file group raises IOFormatError.
    verify : bool or 'require'
        Verify CHECKSUM, PLAQUETTE, LINK_TRACE and unitarity (``False``: only the structure and size);
        ``'require'`` also refuses a file without CHECKSUM.
    strict : bool
        With ``verify``, raise IOFormatError on the first failed check (``False``: record the outcome
        in ``meta.checks`` only).

    Returns
    -------
    U : numpy.ndarray
        complex128 (IEEE64) or complex64 (IEEE32), native byte order, C-contiguous.
    meta : FieldMeta

    Examples
    --------
    See the module docstring.
    """
    verify = verify_mode(verify)
    lattice_arg(lattice, 4, "NERSC")  # the caller's argument, before the file is read
    as_group(group)
    data = read_bytes(path)
    U, meta = _decode(data, path, lattice, group, verify)
    finish_checks(meta, verify, strict)
    return U, meta


def _fmt(x: float) -> str:
    return f"{x:.15g}"


def _extra_fields(meta: Mapping[str, Any] | None) -> dict[str, str]:
    """The header fields of ``meta=``, refused with a ValueError naming the key unless the reader parses them
    back as given: a key is one word of printable ASCII, not empty, without blanks, ``=`` or
    ``END_HEADER`` (where the reader ends the header) and not a computed field; a value is one line of
    printable ASCII without ``END_HEADER``. Keys are upper-cased, as the reader does."""
    fields: dict[str, str] = {}
    for k, v in (meta or {}).items():
        text, val = str(k), str(v)
        key = text.upper()
        why = None
        if not text.strip():
            why = "is empty"
        elif text != text.strip():
            why = "has leading or trailing blanks (the reader strips them)"
        elif not text.isascii() or not text.isprintable() or " " in text:
            why = "is not one word of printable ASCII"
        elif "=" in text:
            why = "contains '=' (the reader splits the line at the first '=')"
        elif "END_HEADER" in key:
            why = "contains END_HEADER (the reader ends the header at the first END_HEADER)"
        if why is not None:
            raise ValueError(f"meta[{k!r}]: the key {why}; NERSC header keys are single words such as ENSEMBLE_ID")
        if key in _COMPUTED_KEYS:
            raise ValueError(f"meta[{k!r}]: {key} is computed from the data and cannot be set")
        if not val.isascii() or not val.isprintable() or "END_HEADER" in val:
            raise ValueError(f"meta[{k!r}] = {v!r}: header values must be one line of printable ASCII without "
                             f"END_HEADER")
        fields[key] = val
    return fields


def write_nersc(path: Any, U: Any, group: Any, *, precision: Any = "double", endian: Any = "big",
                datatype: str | None = None, meta: Mapping[str, Any] | None = None) -> None:
    """Write one SU(2)/SU(3) gauge field as a NERSC file (atomically: temporary file + rename).

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    U : array
        Gauge field ``(4, N, N, Lt, Lx, Ly, Lz)`` of any backend.
    group : Group or str
        ``SU(3)`` or ``SU(2)``.
    precision : {'double', 'single'}
        IEEE64 or IEEE32.
    endian : {'big', 'little'}
        Byte order (``FLOATING_POINT = IEEE64BIG`` etc.).
    datatype : str, optional
        One of :data:`NERSC_DATATYPES` for the group; default full matrices (``4D_SU3_GAUGE_3x3``,
        ``4D_SU2_GAUGE_2x2``).
    meta : mapping, optional
        Extra header fields (e.g. ``ENSEMBLE_ID``, ``SEQUENCE_NUMBER``); the computed fields
        (DATATYPE, DIMENSION_*, CHECKSUM, PLAQUETTE, LINK_TRACE, FLOATING_POINT) cannot be set.

    Examples
    --------
    See the module docstring.
    """
    g = as_group(group)
    if not isinstance(g, SUGroup) or g.N not in (2, 3):
        raise ValueError(f"group={g!r}: NERSC files hold SU(2) or SU(3) links; save U(1) or SU(N>3) fields with "
                         f"format='hdf5'")
    prec = precision_name(precision)
    end = endian_name(endian)
    extra = _extra_fields(meta)  # refused before any work
    a = check_field(U, g, "U")
    if a.ndim != 7:
        raise ValueError(f"U has shape {a.shape}; NERSC files hold one 4D configuration (4, N, N, Lt, Lx, Ly, Lz)")
    N = g.N
    if datatype is None:
        datatype = f"4D_SU{N}_GAUGE_{N}x{N}"
    if datatype not in NERSC_DATATYPES or NERSC_DATATYPES[datatype][0] != N:
        raise ValueError(f"datatype={datatype!r}: expected one of "
                         f"{[k for k, v in NERSC_DATATYPES.items() if v[0] == N]} for {g.name}")
    rows = NERSC_DATATYPES[datatype][1]
    F = library_to_file(a)
    d = unitarity_defect_np(F)
    if not d <= WRITE_UNITARITY_TOL[prec]:
        raise ValueError(f"U is not in {g.name}: largest defect {d:.3e} > {WRITE_UNITARITY_TOL[prec]:.0e}; "
                         f"project the links (group.normalize) before saving")
    cdt = complex_file_dtype(prec, end)
    payload = np.ascontiguousarray(F[..., :rows, :]).astype(cdt).tobytes()
    # header values from the data exactly as a reader will see it (after rounding / reconstruction)
    back = file_to_library(_reconstruct(np.frombuffer(payload, dtype=cdt).reshape(F.shape[:-2] + (rows, N)), N, rows))
    dims = file_dims_from_lattice(a.shape[-4:])
    fp = f"IEEE{64 if prec == 'double' else 32}{end.upper()}"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S %Y")
    fields: dict[str, str] = {
        "HDR_VERSION": "1.0",
        "DATATYPE": datatype,
        "STORAGE_FORMAT": "1.0",
        "DIMENSION_1": str(dims[0]), "DIMENSION_2": str(dims[1]),
        "DIMENSION_3": str(dims[2]), "DIMENSION_4": str(dims[3]),
        "LINK_TRACE": _fmt(average_link_trace_np(back)),
        "PLAQUETTE": _fmt(average_plaquette_np(back)),
        "BOUNDARY_1": "PERIODIC", "BOUNDARY_2": "PERIODIC", "BOUNDARY_3": "PERIODIC", "BOUNDARY_4": "PERIODIC",
        "CHECKSUM": f"{nersc_checksum(payload, end):08x}",
        "ENSEMBLE_ID": "latticekit",
        "ENSEMBLE_LABEL": "latticekit",
        "SEQUENCE_NUMBER": "0",
        "CREATOR": "latticekit",
        "CREATOR_HARDWARE": platform.machine() or "unknown",
        "CREATION_DATE": now,
        "ARCHIVE_DATE": now,
    }
    fields.update(extra)
    fields["FLOATING_POINT"] = fp
    text = "BEGIN_HEADER\n" + "".join(f"{k} = {v}\n" for k, v in fields.items()) + "END_HEADER\n"
    atomic_write(path, [text.encode("ascii"), payload])


