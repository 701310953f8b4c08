"""ILDG gauge configurations in LIME containers, with SciDAC checksums.

Records read (all optional except the binary data):

``ildg-format``       XML ``<ildgFormat>`` with ``field`` (``su3gauge``), ``precision`` (32/64), ``lx ly lz lt``.
``ildg-binary-data``  the links, big-endian, in file order (:mod:`latticekit.io.layout`).
``ildg-data-lfn``     the logical file name (kept in ``meta.header``).
``scidac-checksum``   XML with ``suma``/``sumb`` (verified, see :func:`scidac_checksum`).
``xlf-info``          tmLQCD text; its ``plaquette = ...`` line (normalised to 1) is verified.

Files holding only ``ildg-binary-data`` are read when the caller states the lattice (the size then
fixes group and precision). Otherwise the readings (SU(2)/SU(3) or the stated group, 32/64 bits) that
split the payload into whole sites are considered: one alone decides; of several, the one whose links
are finite and unitary (within the read tolerance of its precision) does, also with ``verify=False``.
The chosen reading is read when its sites form a hypercubic ``L^4`` lattice; otherwise, or when no
reading or several are valid, an ``ILDG layout`` error lists the readings and says what to pass.
``meta.inferred`` explains the choice, and every data error of such a file names the assumed layout.
A record type that one flipped bit made of a known one (a changed character, or the terminating NUL
flipped into a character) fails a check.

Written files: message 1 ``xlf-info`` (plaquette), message 2 ``ildg-format``, ``ildg-binary-data``,
``scidac-checksum``, message 3 ``ildg-data-lfn``. SU(2) is written with ``field = su2gauge``
(ILDG only standardises ``su3gauge``); U(1) is refused (use HDF5). ILDG data are always big-endian.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io.ildg import read_ildg, write_ildg
>>> U = lk.SU(3).random(lk.backends.rng(0), (4,), (2, 2, 2, 2))
>>> path = os.path.join(tempfile.mkdtemp(), "cfg.lime")
>>> write_ildg(path, U, lk.SU(3))
>>> V, meta = read_ildg(path)
>>> bool(abs(V - U).max() == 0), [c.name for c in meta.checks if c.ok][:2]
(True, ['SciDAC checksum suma', 'SciDAC checksum sumb'])
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
import zlib
from typing import Any, Mapping

import numpy as np

from latticekit.groups import SUGroup

from ._common import (
    READ_UNITARITY_TOL,
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
    unitarity_check,
    unitarity_defect_np,
    verify_mode,
)
from .errors import IOFormatError
from .layout import file_dims_from_lattice, file_to_library, lattice_from_file_dims, library_to_file
from .lime import parse_lime, write_lime

__all__ = ["infer_ildg_layout", "read_ildg", "scidac_checksum", "write_ildg"]

#: record types the reader interprets; what one flipped bit makes of one of them is a damaged header
_KNOWN_RECORDS = ("ildg-binary-data", "ildg-format", "scidac-checksum", "xlf-info", "ildg-data-lfn")
#: the NUL that ends a LIME record type (flipped, it lengthens the type by one character)
_TYPE_END = "\x00"


def _rotl(c: int, r: int) -> int:
    return ((c << r) | (c >> (32 - r))) & 0xFFFFFFFF if r else c


def scidac_checksum(payload: bytes | memoryview, volume: int) -> tuple[int, int]:
    """SciDAC ``(suma, sumb)`` of binary data holding ``volume`` equally sized sites in file order.

    For the site of rank ``r`` (lexicographic index, x fastest) with CRC32 ``c`` of its bytes:
    ``suma ^= rotl32(c, r % 29)`` and ``sumb ^= rotl32(c, r % 31)``.

    Examples
    --------
    >>> [f"{s:08x}" for s in scidac_checksum(b"\\x00" * 8, 2)]
    ['63cd6124', '63cd6124']
    >>> scidac_checksum(b"abc", 2)
    Traceback (most recent call last):
    ...
    ValueError: payload of 3 bytes does not split into 2 equal sites
    """
    mv = memoryview(payload)
    n = len(mv)
    if volume < 1 or n % volume:
        raise ValueError(f"payload of {n} bytes does not split into {volume} equal sites")
    s = n // volume
    a = b = 0
    crc = zlib.crc32
    for r in range(volume):
        c = crc(mv[r * s:(r + 1) * s])
        a ^= _rotl(c, r % 29)
        b ^= _rotl(c, r % 31)
    return a, b


def _xml_fields(text: str, path: Any, check: str) -> dict[str, str]:
    try:
        root = ET.fromstring(text.strip().strip("\x00").strip())
    except ET.ParseError as exc:
        raise IOFormatError(f"XML does not parse ({exc})", path, check) from None
    out = {}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if el is not root and el.text is not None:
            out[tag] = el.text.strip()
    return out


def _site_bytes(N: int, bits: int) -> int:
    return 4 * N * N * 2 * bits // 8


def _hypercubic(volume: int) -> tuple[int, int, int, int] | None:
    """``(L, L, L, L)`` holding ``volume`` sites, or None."""
    L = int(round(volume ** 0.25))
    for c in (L - 1, L, L + 1):
        if c >= 1 and c ** 4 == volume:
            return (c, c, c, c)
    return None


def infer_ildg_layout(nbytes: int, lattice: Any = None, group: Any = None) -> list[tuple[tuple[int, ...], int, int]]:
    """All readings ``(library lattice, N, bits)`` of a binary payload of ``nbytes`` bytes.

    Candidates: the stated lattice or hypercubic ``L^4``; the stated group or SU(2), SU(3); 32 or 64 bits.

    Examples
    --------
    >>> infer_ildg_layout(65536)
    [((4, 4, 4, 4), 2, 64)]
    >>> infer_ildg_layout(2359296, group="SU3")
    [((8, 8, 8, 8), 3, 64)]
    """
    g = as_group(group)
    lat = as_lattice(lattice)
    Ns = [g.N] if isinstance(g, SUGroup) else [2, 3]
    out = []
    for N in Ns:
        for bits in (64, 32):
            s = _site_bytes(N, bits)
            if lat is not None:
                if math.prod(lat) * s == nbytes:
                    out.append((tuple(lat), N, bits))
            elif nbytes % s == 0 and nbytes > 0:
                cube = _hypercubic(nbytes // s)
                if cube is not None:
                    out.append((cube, N, bits))
    return out


def _reading_defect(payload: Any, N: int, bits: int) -> float:
    """Largest unitarity defect of the payload read as big-endian ``N x N`` complex matrices of ``bits`` bits
    (``inf`` for NaN or infinite numbers)."""
    M = np.frombuffer(payload, dtype=complex_file_dtype("double" if bits == 64 else "single", "big"))
    M = M.reshape(-1, N, N)
    if not np.all(np.isfinite(M)):
        return math.inf
    return unitarity_defect_np(M)


def _cubic_space_lattices(volume: int) -> list[tuple[int, int, int, int]]:
    """Up to two lattices ``(Lt, L, L, L)`` (L >= 2, Lt >= 2, Lt != L) of ``volume`` sites, largest L first."""
    out = []
    for c in range(int(round(volume ** (1 / 3))) + 1, 1, -1):
        if volume % c ** 3 == 0 and volume // c ** 3 not in (1, c):
            out.append((volume // c ** 3, c, c, c))
    return out[:2]


def _layout_advice(missing: list[str]) -> str:
    return (f"pass {' and '.join(a + '=' for a in missing)} ({', '.join('--' + a for a in missing)} on the command "
            f"line); the precision then follows from the size")


def _infer_layout(payload: Any, want_lat: tuple[int, ...] | None, g: Any,
                  path: Any) -> tuple[tuple[int, ...], int, int, str]:
    """Lattice, N, bits and the ``meta.inferred`` note of a payload without ``ildg-format`` (module docstring).

    The size decides when one reading (N, precision) splits the payload into whole sites or the caller
    stated the lattice; when several do, the one whose links are finite and unitary within the read
    tolerance of its precision. Errors list the readings and say what to pass.
    """
    n = len(payload)
    stated = ", ".join(s for s, v in (("lattice", want_lat), ("group", g)) if v is not None) or "nothing"
    missing = [a for a, v in (("lattice", want_lat), ("group", g)) if v is None]
    fits = [(N, b, n // _site_bytes(N, b)) for N in ([g.N] if g is not None else [2, 3]) for b in (64, 32)
            if n > 0 and n % _site_bytes(N, b) == 0]
    if want_lat is not None or len(fits) <= 1:  # the size decides
        cands = infer_ildg_layout(n, want_lat, g)
        if len(cands) == 1:
            lat, N, bits = cands[0]
            return lat, N, bits, (f"no ildg-format record: lattice {lat}, SU({N}), {bits}-bit from the {n}-byte "
                                  f"payload (caller stated {stated}; the only consistent reading)")
        what = "no" if not cands else f"{len(cands)} ({cands})"
        if not cands and want_lat is not None:  # say what the stated lattice (and group) would need
            need_b = ", ".join(f"SU({N}) {b}-bit {math.prod(want_lat) * _site_bytes(N, b)}"
                               for N in ([g.N] if g is not None else [2, 3]) for b in (64, 32))
            advice = (f"lattice {tuple(want_lat)} needs {need_b} bytes: check the stated lattice"
                      f"{' and group' if g is not None else ' (and pass group=)'}")
        else:
            advice = _layout_advice(missing)
        raise IOFormatError(f"no ildg-format record and {what} consistent readings of the {n}-byte payload (caller "
                            f"stated {stated}); {advice}", path, "ILDG layout")
    # several readings fit the size: the data decide
    defects = {(N, b): _reading_defect(payload, N, b) for N, b, _ in fits}
    valid = [(N, b, V) for N, b, V in fits if defects[N, b] <= READ_UNITARITY_TOL["double" if b == 64 else "single"]]

    def reading(N: int, b: int, V: int) -> str:
        d = defects[N, b]
        cube = _hypercubic(V)
        shape = f" = {cube[0]}^4" if cube else ""
        verdict = ("valid" if (N, b, V) in valid else "NaN or infinite numbers" if math.isinf(d)
                   else f"not unitary (defect {d:.2g})")
        return f"SU({N}) {b}-bit on {V} sites{shape}: {verdict}"

    listing = "; ".join(reading(*f) for f in fits)
    if len(valid) == 1:
        N, bits, V = valid[0]
        lat = _hypercubic(V)
        if lat is not None:
            return lat, N, bits, (f"no ildg-format record: lattice {lat}, SU({N}), {bits}-bit from the {n}-byte "
                                  f"payload (caller stated {stated}; the only consistent reading: of the {len(fits)} "
                                  f"readings that fit the size, the only one with finite, unitary links)")
        eg = ", ".join(f"{c} for {c[1]}^3 x {c[0]}" for c in _cubic_space_lattices(V))
        raise IOFormatError(f"no ildg-format record; of the {len(fits)} consistent readings of the {n}-byte payload "
                            f"({listing}) only SU({N}) {bits}-bit gives valid links, and its {V} sites form no "
                            f"hypercubic lattice L^4 (caller stated {stated}): pass lattice=(Lt, Lx, Ly, Lz) with "
                            f"{V} sites (--lattice on the command line){', e.g. ' + eg if eg else ''}", path,
                            "ILDG layout")
    why = ("none gives finite, unitary links (a damaged file" + (", or not the stated group)" if g else ")")
           if not valid else f"{len(valid)} give finite, unitary links")
    raise IOFormatError(f"no ildg-format record and {len(valid) or 'no'} valid readings among the {len(fits)} "
                        f"consistent readings of the {n}-byte payload (caller stated {stated}): {listing}; {why}; "
                        f"{_layout_advice(missing)}", path, "ILDG layout")


def _decode(data: bytes, path: Any, lattice: Any, group: Any, verify: bool) -> tuple[np.ndarray, FieldMeta]:
    records = parse_lime(data, path)
    byname: dict[str, Any] = {}
    for r in records:
        byname.setdefault(r.type, r)
    header: dict[str, Any] = {"records": [r.type for r in records]}
    damaged = {}  # near-miss record type -> the known type it was meant to be
    for r in records:
        meant = near_miss(r.type, _KNOWN_RECORDS, _TYPE_END)
        if meant is not None and meant not in byname:
            damaged.setdefault(r.type, meant)
    if "ildg-binary-data" not in byname:
        hint = "".join(f"; record {k!r} looks like a damaged {v!r}" for k, v in damaged.items())
        raise IOFormatError(f"no ildg-binary-data record (records: {header['records']}){hint}", path, "ILDG records")
    nbin = header["records"].count("ildg-binary-data")
    if nbin > 1:  # ILDG: one configuration per file, so one ildg-binary-data record; which one is meant is unknowable
        raise IOFormatError(f"{nbin} ildg-binary-data records (records: {header['records']}); an ILDG file holds one "
                            f"configuration in one ildg-binary-data record (split the file, e.g. with "
                            f"lime_extract_record)", path, "ILDG records")
    g = as_group(group)
    if g is not None and not isinstance(g, SUGroup):
        raise IOFormatError(f"ILDG files hold SU(N) matrices, expected group={g.name}", path, "group")
    want_lat = lattice_arg(lattice, 4, "ILDG")
    binrec = byname["ildg-binary-data"]
    payload = binrec.data
    inferred = None
    if "ildg-format" in byname:
        fx = _xml_fields(byname["ildg-format"].text, path, "ildg-format XML")
        header["ildg-format"] = fx
        m = re.fullmatch(r"su(\d+)gauge", fx.get("field", "").strip().lower())
        if m is None or int(m.group(1)) < 2:
            raise IOFormatError(f"field = {fx.get('field')!r}; expected su3gauge (or su2gauge)", path, "ildg-format")
        N = int(m.group(1))
        try:
            bits = int(fx["precision"])
            dims = tuple(int(fx[k]) for k in ("lx", "ly", "lz", "lt"))
        except (KeyError, ValueError):
            raise IOFormatError(f"needs integer precision, lx, ly, lz, lt; got {fx}", path, "ildg-format") from None
        if bits not in (32, 64):
            raise IOFormatError(f"precision = {bits}; expected 32 or 64", path, "ildg-format")
        if not all(1 <= d <= 1 << 20 for d in dims):
            raise IOFormatError(f"lattice extents {dims} out of range", path, "ildg-format")
        lat = lattice_from_file_dims(*dims)
        if want_lat is not None and tuple(want_lat) != lat:
            raise IOFormatError(f"file lattice (Lt, Lx, Ly, Lz) = {lat}, expected lattice={tuple(want_lat)}", path,
                                "lattice")
        if g is not None and g.N != N:
            raise IOFormatError(f"file holds SU({N}) links ({fx.get('field')}), expected group={g.name}", path, "group")
    else:
        lat, N, bits, inferred = _infer_layout(payload, want_lat, g, path)
    precision = "double" if bits == 64 else "single"
    vol = math.prod(lat)
    cdt = complex_file_dtype(precision, "big")
    need = vol * _site_bytes(N, bits)
    if len(payload) != need:
        raise IOFormatError(f"ildg-binary-data has {len(payload)} bytes; SU({N}) {bits}-bit on {lat} needs {need} "
                            f"({'truncated' if len(payload) < need else 'trailing data'})", path, "ILDG payload size")
    dims = file_dims_from_lattice(lat)
    F = np.frombuffer(payload, dtype=cdt).reshape((dims[3], dims[2], dims[1], dims[0], 4, N, N))
    finite = bool(np.all(np.isfinite(F)))
    meta = FieldMeta(format="ildg", path=str(path), lattice=lat, group=f"SU({N})", precision=precision,
                     endianness="big", header=header, inferred=inferred)
    if "ildg-data-lfn" in byname:
        header["ildg-data-lfn"] = byname["ildg-data-lfn"].text
    if "xlf-info" in byname:
        header["xlf-info"] = byname["xlf-info"].text
    for r in records:
        if r.type not in ("ildg-binary-data", "ildg-format", "ildg-data-lfn", "xlf-info", "scidac-checksum") \
                and len(r.data) <= 1 << 16:
            header.setdefault(r.type, r.text)
    if verify:
        for found, meant in damaged.items():
            meta.checks.append(damaged_key_check("LIME record type", found, meant))
        if "ildg-format" not in byname:
            meta.absent.append("ildg-format: no format record; lattice, group and precision were inferred "
                               "(see meta.inferred)")
        if "scidac-checksum" in byname:
            cx = _xml_fields(byname["scidac-checksum"].text, path, "scidac-checksum XML")
            header["scidac-checksum"] = cx
            try:
                sa, sb = int(cx["suma"], 16), int(cx["sumb"], 16)
            except (KeyError, ValueError):
                raise IOFormatError(f"needs hexadecimal suma and sumb; got {cx}", path, "scidac-checksum") from None
            ca, cb = scidac_checksum(payload, vol)
            meta.checks.append(Check("SciDAC checksum suma", f"{sa:08x}", f"{ca:08x}", sa == ca, kind="checksum"))
            meta.checks.append(Check("SciDAC checksum sumb", f"{sb:08x}", f"{cb:08x}", sb == cb, kind="checksum"))
        else:
            meta.absent.append("SciDAC checksum: no scidac-checksum record, so no checksum covers the payload")
    if not finite:
        refuse_nonfinite(meta, "binary data", "ILDG payload")
    if verify:
        meta.checks.append(unitarity_check(F, precision))
    U = file_to_library(F)
    meta.plaquette = average_plaquette_np(U)  # also with verify=False: cheap, and what `info` shows
    meta.link_trace = average_link_trace_np(U)
    if verify:
        m = re.search(r"plaquette\s*=\s*([-+0-9.eEinfa]+)", header["xlf-info"]) if "xlf-info" in header else None
        if m is not None:
            try:
                stored = float(m.group(1))
            except ValueError:
                raise IOFormatError(f"plaquette = {m.group(1)!r} is not a number", path, "xlf-info") from None
            meta.checks.append(check_value("xlf-info plaquette", stored, meta.plaquette, precision))
        else:
            meta.absent.append("xlf-info plaquette: no xlf-info record with a plaquette line")
    return U, meta


def read_ildg(path: Any, *, lattice: Any = None, group: Any = None, verify: bool | str = True,
              strict: bool = True) -> tuple[np.ndarray, FieldMeta]:
    """Read an ILDG/LIME file into a host array in the library layout ``(4, N, N, Lt, Lx, Ly, Lz)``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    lattice : Lattice or sequence of int, optional
        Library lattice ``(Lt, Lx, Ly, Lz)``: checked against ``ildg-format``, or used to read files
        without one.
    group : Group or str, optional
        Group: checked against ``ildg-format``, or used to read files without one.
    verify : bool or 'require'
        Verify the SciDAC checksum, the xlf-info plaquette and unitarity; ``'require'`` also refuses
        a file without a scidac-checksum record.
    strict : bool
        With ``verify``, raise IOFormatError on the first failed check (``False``: only record it).

    Returns
    -------
    U : numpy.ndarray
        complex128 or complex64, native byte order, C-contiguous.
    meta : FieldMeta

    Examples
    --------
    See the module docstring.
    """
    verify = verify_mode(verify)
    lattice_arg(lattice, 4, "ILDG")  # the caller's argument, before the file is read
    as_group(group)
    data = read_bytes(path)
    U, meta = _decode(data, path, lattice, group, verify)
    finish_checks(meta, verify, strict)
    return U, meta


def write_ildg(path: Any, U: Any, group: Any, *, precision: Any = "double", endian: Any = "big",
               lfn: str | None = None, meta: Mapping[str, Any] | None = None) -> None:
    """Write one SU(N) gauge field as an ILDG file in LIME (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    U : array
        Gauge field ``(4, N, N, Lt, Lx, Ly, Lz)`` of any backend.
    group : Group or str
        SU(N) (``su3gauge``; other N as ``su<N>gauge``).
    precision : {'double', 'single'}
        64 or 32 bits.
    endian : {'big'}
        ILDG binary data are big-endian; anything else is refused.
    lfn : str, optional
        Logical file name for ``ildg-data-lfn`` (default: the file name).
    meta : mapping, optional
        Extra ``key = value`` lines for the ``xlf-info`` record.

    Examples
    --------
    See the module docstring.
    """
    g = as_group(group)
    if not isinstance(g, SUGroup):
        raise ValueError(f"group={g!r}: ILDG files hold SU(N) matrices; save U(1) fields with format='hdf5'")
    prec = precision_name(precision)
    if endian_name(endian) != "big":
        raise ValueError(f"endian={endian!r}: ILDG binary data are big-endian by definition")
    a = check_field(U, g, "U")
    if a.ndim != 5 + 2:
        raise ValueError(f"U has shape {a.shape}; ILDG files hold one 4D configuration (4, N, N, Lt, Lx, Ly, Lz)")
    F = library_to_file(a)
    d = unitarity_defect_np(F)
    if not d <= WRITE_UNITARITY_TOL[prec]:
        raise ValueError(f"U is not in {g.name}: largest defect {d:.3e} > {WRITE_UNITARITY_TOL[prec]:.0e}; "
                         f"project the links (group.normalize) before saving")
    cdt = complex_file_dtype(prec, "big")
    payload = F.astype(cdt).tobytes()
    back = file_to_library(np.frombuffer(payload, dtype=cdt).reshape(F.shape))
    lat = tuple(a.shape[-4:])
    lx, ly, lz, lt = file_dims_from_lattice(lat)
    bits = 64 if prec == "double" else 32
    fmt = ('<?xml version="1.0" encoding="UTF-8"?>\n<ildgFormat xmlns="http://www.lqcd.org/ildg"\n'
           '            xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
           '            xsi:schemaLocation="http://www.lqcd.org/ildg/filefmt.xsd">\n'
           f"  <version>1.0</version>\n  <field>su{g.N}gauge</field>\n  <precision>{bits}</precision>\n"
           f"  <lx>{lx}</lx>\n  <ly>{ly}</ly>\n  <lz>{lz}</lz>\n  <lt>{lt}</lt>\n</ildgFormat>")
    sa, sb = scidac_checksum(payload, math.prod(lat))
    cks = ('<?xml version="1.0" encoding="UTF-8"?>\n<scidacChecksum>\n  <version>1.0</version>\n'
           f"  <suma>{sa:08x}</suma>\n  <sumb>{sb:08x}</sumb>\n</scidacChecksum>")
    info = f"plaquette = {average_plaquette_np(back):.15g}\n link_trace = {average_link_trace_np(back):.15g}\n"
    info += " creator = latticekit\n"
    for k, v in (meta or {}).items():
        line = f" {k} = {v}\n"
        if "\n" in str(k) + str(v) or str(k).strip().lower() == "plaquette":
            raise ValueError(f"meta[{k!r}]: expected a single-line value other than the computed plaquette")
        info += line
    name = lfn if lfn is not None else os.path.basename(os.fspath(path))
    write_lime(path, [[("xlf-info", info.encode("utf-8"))],
                      [("ildg-format", fmt.encode("ascii")), ("ildg-binary-data", payload),
                       ("scidac-checksum", cks.encode("ascii"))],
                      [("ildg-data-lfn", name.encode("utf-8"))]])
