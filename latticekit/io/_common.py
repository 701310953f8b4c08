"""Shared host-side helpers of latticekit.io: metadata, checks, atomic writes, numpy observables.

Everything here works on NumPy arrays on the host (io/ is allowed to name numpy, DESIGN.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from latticekit.groups import Group, SUGroup, U1Group, group_from_name
from latticekit.lattice import Lattice

from latticekit.utils.files import atomic_write as atomic_write  # re-exported for the format modules

from .errors import IOFormatError

__all__ = ["Check", "FieldMeta", "VERIFY_MODES"]

#: accepted values of ``verify``: skip checks, run the checks the file offers, or also refuse a file
#: whose payload no checksum covers
VERIFY_MODES = (False, True, "require")

#: largest per-link unitarity defect (||U^dag U - 1||_F + |det U - 1|) accepted when reading
READ_UNITARITY_TOL = {"double": 1e-8, "single": 5e-5}
#: largest defect accepted when writing (the data must already be group elements); at most half the read tolerance,
#: so that a file reads back after the rounding to its precision (single once allowed 1e-4: files the reader refused)
WRITE_UNITARITY_TOL = {"double": 1e-9, "single": 2.5e-5}
#: agreement required between a header plaquette / link trace and the value computed from the data
HEADER_VALUE_TOL = {"double": 1e-6, "single": 1e-5}


@dataclass
class Check:
    """Outcome of one verification (checksum, header value, unitarity, data sanity, header structure).

    ``kind`` is ``"checksum"`` for a checksum over the payload (NERSC CHECKSUM, SciDAC suma/sumb, the
    CRC32 of an HDF5 configuration): only those satisfy ``verify="require"``. Other kinds:
    ``"value"`` (a header value such as the plaquette), ``"unitarity"``, ``"data"`` (finite numbers,
    dtype) and ``"structure"`` (e.g. a header key one character away from ``CHECKSUM``).

    Examples
    --------
    >>> Check("NERSC CHECKSUM", "b379560a", "b379560a", True, kind="checksum").ok
    True
    """

    name: str
    stored: Any
    computed: Any
    ok: bool
    labels: tuple[str, str] = ("stored", "computed")
    kind: str = "value"

    def __str__(self) -> str:
        a, b = self.labels
        return f"{self.name}: {'ok' if self.ok else 'MISMATCH'} ({a} {self.stored}, {b} {self.computed})"


@dataclass
class FieldMeta:
    """What a reader learned about a file.

    Attributes
    ----------
    format : str
        ``"nersc"``, ``"ildg"``, ``"openqcd"`` or ``"hdf5"``.
    path : str
        The file read.
    lattice : tuple of int
        Library lattice shape ``(L0, L1, L2, L3)`` = ``(Lt, Lx, Ly, Lz)`` (direction 0 is time).
    group : str
        Group name, e.g. ``"SU(3)"``.
    precision : str
        ``"double"`` or ``"single"`` (of the data in the file).
    endianness : str
        ``"big"`` or ``"little"`` (``"native"`` for HDF5).
    header : dict
        Header values as stored (NERSC key/values, ILDG XML fields, LIME record list, ...).
    checks : list of Check
        Every verification performed (checksums, header plaquette/link trace), with outcome.
    absent : list of str
        Verifications the format offers but this file does not allow (no checksum in the header, no
        format record, an ensemble written before checksums existed), each with the reason.
    plaquette : float or None
        Average plaquette ``(1/N) Re tr P`` computed from the data, also with ``verify=False`` (None only
        for an empty HDF5 selection or a one-dimensional lattice).
    link_trace : float or None
        Average ``(1/N) Re tr U`` over all links computed from the data (SU(N); also with ``verify=False``).
    inferred : str or None
        How lattice/group/precision were inferred when the file does not state them.
    extra : dict
        Format-specific extras (e.g. HDF5 ensemble attributes).

    Examples
    --------
    >>> m = FieldMeta(format="nersc", path="x", lattice=(4, 8, 8, 8), group="SU(3)", precision="double",
    ...               endianness="big")
    >>> m["lattice"], m.checks_ok
    ((4, 8, 8, 8), True)
    """

    format: str
    path: str
    lattice: tuple[int, ...]
    group: str
    precision: str
    endianness: str
    header: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    plaquette: float | None = None
    link_trace: float | None = None
    inferred: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    @property
    def checks_ok(self) -> bool:
        """True when every performed check passed (checks that could not run are in ``absent``)."""
        return all(c.ok for c in self.checks)

    @property
    def checksummed(self) -> bool:
        """True when a checksum over the payload was verified (passed or not)."""
        return any(c.kind == "checksum" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (JSON-friendly apart from header values)."""
        return asdict(self)


# -- argument normalisation ------------------------------------------------------------------------

def as_group(group: Any, argname: str = "group") -> Group | None:
    """Group object from a Group, a name ('SU3', 'SU(2)', 'U1') or None."""
    if group is None or isinstance(group, Group):
        return group
    if isinstance(group, str):
        return group_from_name(group)
    raise TypeError(f"{argname}={group!r}: expected a latticekit Group or a name such as 'SU3'")


def as_lattice(lattice: Any, argname: str = "lattice") -> tuple[int, ...] | None:
    """Library lattice shape (tuple) from a Lattice, a sequence of extents, or None."""
    if lattice is None:
        return None
    if isinstance(lattice, Lattice):
        return tuple(lattice.shape)
    try:
        return tuple(Lattice(lattice).shape)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{argname}={lattice!r}: expected a Lattice or extents (Lt, Lx, Ly, Lz); {exc}") from None


def lattice_arg(lattice: Any, nd: int, what: str, argname: str = "lattice") -> tuple[int, ...] | None:
    """:func:`as_lattice` of an argument that must have ``nd`` extents (``what`` files hold ``nd``D lattices).

    A caller's lattice of another dimension is a ValueError naming the argument, raised before the file
    is read (it is no fault of the file).

    Examples
    --------
    >>> lattice_arg([4, 8, 8, 8], 4, "ILDG")
    (4, 8, 8, 8)
    >>> lattice_arg((8, 8, 8), 4, "ILDG")
    Traceback (most recent call last):
    ...
    ValueError: lattice=(8, 8, 8) (--lattice on the command line): ILDG files hold 4D lattices (Lt, Lx, Ly, Lz); \
got 3 extents
    """
    lat = as_lattice(lattice, argname)
    if lat is not None and len(lat) != nd:
        raise ValueError(f"{argname}={lattice!r} (--lattice on the command line): {what} files hold {nd}D lattices "
                         f"(Lt, Lx, Ly, Lz); got {len(lat)} extents")
    return lat


def verify_mode(verify: Any, argname: str = "verify") -> bool | str:
    """``False``, ``True`` or ``"require"`` from a ``verify`` argument.

    Examples
    --------
    >>> verify_mode(1), verify_mode("require")
    (True, 'require')
    """
    if verify is True or verify is False:
        return verify
    if isinstance(verify, (int, np.integer)) and not isinstance(verify, bool) and int(verify) in (0, 1):
        return bool(verify)
    if isinstance(verify, str) and verify.strip().lower() == "require":
        return "require"
    raise ValueError(f"{argname}={verify!r}: expected True, False or 'require'")


def precision_name(precision: Any, argname: str = "precision") -> str:
    """'double' or 'single' from 'double'/64/'float64'/'single'/32/'float32'."""
    key = str(precision).lower()
    if key in ("double", "64", "float64", "f64", "complex128"):
        return "double"
    if key in ("single", "32", "float32", "f32", "complex64"):
        return "single"
    raise ValueError(f"{argname}={precision!r}: expected 'double' (64) or 'single' (32)")


def endian_name(endian: Any, argname: str = "endian") -> str:
    """'big' or 'little'."""
    key = str(endian).lower()
    if key in ("big", ">", "be", "ieee64big", "ieee32big"):
        return "big"
    if key in ("little", "<", "le"):
        return "little"
    raise ValueError(f"{argname}={endian!r}: expected 'big' or 'little'")


def complex_file_dtype(precision: str, endian: str) -> np.dtype:
    """The complex element dtype stored in a file."""
    return np.dtype(("<" if endian == "little" else ">") + ("c16" if precision == "double" else "c8"))


def real_file_dtype(precision: str, endian: str) -> np.dtype:
    """The real element dtype stored in a file."""
    return np.dtype(("<" if endian == "little" else ">") + ("f8" if precision == "double" else "f4"))


def to_native(a: np.ndarray) -> np.ndarray:
    """Contiguous, writeable, native-byte-order copy of ``a``."""
    out = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
    if not out.flags.writeable or out is a:
        out = out.copy()
    return out


def check_field(U: Any, group: Group, argname: str = "U", nd: int | None = 4) -> np.ndarray:
    """Host copy of a gauge field with a checked shape ``(*B, Nd, *G, *L)`` (``nd`` lattice axes)."""
    from latticekit.backends import to_numpy

    a = to_numpy(U)
    g = tuple(group.element_shape)
    need = 1 + len(g) + (nd or 1)
    if a.ndim < need:
        axes = "<lattice axes>" if nd is None else f"<{nd} lattice axes>"      # the format's number, when it has one
        raise ValueError(f"{argname} has shape {a.shape}; expected (*batch, {'Nd' if nd is None else nd}, "
                         f"{', '.join(map(str, g))}{', ' if g else ''}{axes}) for {group.name}")
    if nd is not None:
        lat_nd = nd
    else:
        lat_nd = a.ndim - 1 - len(g)
    if a.shape[a.ndim - lat_nd - len(g) - 1] != lat_nd or tuple(a.shape[a.ndim - lat_nd - len(g):a.ndim - lat_nd]) != g:
        raise ValueError(f"{argname} has shape {a.shape}; expected (*batch, {lat_nd}, "
                         f"{', '.join(map(str, g))}{', ' if g else ''}<{lat_nd} lattice axes>) for {group.name}")
    if isinstance(group, SUGroup) and not np.iscomplexobj(a):
        raise TypeError(f"{argname} has dtype {a.dtype}; {group.name} links must be complex")
    if isinstance(group, U1Group) and (np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{argname} has dtype {a.dtype}; U(1) links are real angles")
    return a


# -- numpy observables in the library layout (N, N, *L) ----------------------------------------

def _mul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Product of channels-first matrices ``(N, N, *L)`` (unrolled over the colour index)."""
    N = A.shape[0]
    out = A[:, 0:1] * B[0:1, :]
    for j in range(1, N):
        out = out + A[:, j:j + 1] * B[j:j + 1, :]
    return out


def plaquette_sum_np(U: np.ndarray) -> float:
    """``sum_x sum_{mu<nu} Re tr P_{mu nu}(x)`` for one SU(N) field ``(Nd, N, N, *L)`` (periodic)."""
    nd = U.shape[0]
    tot = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # damaged data: inf/nan, then a failed check
        for mu in range(nd):
            for nu in range(mu + 1, nd):
                ax_mu, ax_nu = 2 + mu, 2 + nu
                A = _mul(U[mu], np.roll(U[nu], -1, axis=ax_mu))
                B = _mul(U[nu], np.roll(U[mu], -1, axis=ax_nu))
                tot += float(np.sum((A.real * B.real + A.imag * B.imag), dtype=np.float64))
    return tot


def average_plaquette_np(U: np.ndarray) -> float:
    """``(1/N) Re tr P`` averaged over sites and planes for one SU(N) field ``(Nd, N, N, *L)``.

    Examples
    --------
    >>> import numpy as np
    >>> U = np.broadcast_to(np.eye(3, dtype=complex)[None, :, :, None, None], (2, 3, 3, 2, 2))
    >>> average_plaquette_np(np.array(U))
    1.0
    """
    nd, N = U.shape[0], U.shape[1]
    vol = math.prod(U.shape[3:])
    nplanes = nd * (nd - 1) // 2
    return plaquette_sum_np(U) / (N * nplanes * vol)


def average_link_trace_np(U: np.ndarray) -> float:
    """``(1/N) Re tr U`` averaged over all links of ``(Nd, N, N, *L)``."""
    N = U.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        tr = sum(U[:, i, i].real.astype(np.float64) for i in range(N))
        return float(np.mean(tr)) / N


def unitarity_defect_np(M: np.ndarray) -> float:
    """Largest ``||M^dag M - 1||_F + |det M - 1|`` over matrices with the group axes LAST (..., N, N)."""
    if M.size == 0:
        return 0.0
    N = M.shape[-1]
    Md = M.astype(np.complex128, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):  # damaged data: the defect is inf or nan
        D = np.conj(np.swapaxes(Md, -1, -2)) @ Md - np.eye(N)
        f = np.sqrt(np.sum(D.real ** 2 + D.imag ** 2, axis=(-2, -1)))
        det = np.linalg.det(Md)
        d = f + np.abs(det - 1.0)
    if not np.all(np.isfinite(d)):
        return float("inf")
    return float(np.max(d))


def unitarity_check(M: np.ndarray, precision: str) -> Check:
    """Check that the group-last matrices ``M`` are SU(N) within the read tolerance of ``precision``."""
    d = unitarity_defect_np(M)
    tol = READ_UNITARITY_TOL[precision]
    return Check("unitarity: max ||U^dag U - 1||_F + |det U - 1| over all links", f"{tol:.0e}", f"{d:.2e}",
                 bool(d <= tol), ("tolerance", "found"), kind="unitarity")


def _flips_into(c: str, chars: str) -> bool:
    """True when one flipped bit turns ``c`` (in either letter case, for readers that fold the case) into a
    character of ``chars``, or a character of ``chars`` into ``c``."""
    for x in {c, c.lower(), c.upper()}:
        for s in chars:
            d = ord(x) ^ ord(s)
            if d and not d & (d - 1):
                return True
    return False


def near_miss(name: str, known: Any, adjacent: str = "", cuts: str | None = None) -> str | None:
    """The entry of ``known`` that one flipped bit can have turned into ``name``, if any.

    A flipped bit in a header key or record type leaves one of these; readers report it as a damaged
    header instead of silently skipping the check the key announced:

    * one changed character (same length);
    * one character more at either end that is one bit away from a character of ``adjacent``, the
      separators that stand next to a key in the format (the space before ``=`` of a NERSC line, the NUL
      after a LIME record type): the separator was flipped into a character that the reader keeps;
    * one character less at either end, when that character is one bit away from a character of
      ``cuts`` (default ``adjacent``), at which the reader ends a key: it was flipped into one and fell off.

    Names of other lengths, and longer or shorter names whose extra or missing character no bit flip of
    a separator explains (``CHECKSUMS``), are other keys.

    Parameters
    ----------
    name : str
        The key or record type found in the file (as the reader parsed it).
    known : iterable of str
        The keys whose loss would switch a check off.
    adjacent : str
        Characters that stand next to a key in the format's syntax.
    cuts : str, optional
        Characters at which the reader ends a key (default ``adjacent``).

    Examples
    --------
    >>> near_miss("CHECKSUL", ["CHECKSUM", "PLAQUETTE"]), near_miss("CHECKSUMS", ["CHECKSUM"], " =")
    ('CHECKSUM', None)
    >>> near_miss("CHECKSUM!", ["CHECKSUM"], " ="), near_miss("scidac-checksum\\x01", ["scidac-checksum"], "\\x00")
    ('CHECKSUM', 'scidac-checksum')
    >>> near_miss("INK_TRACE", ["LINK_TRACE"], " =", "\\x0c")  # 'L' flipped into a form feed, a line break
    'LINK_TRACE'
    """
    cuts = adjacent if cuts is None else cuts
    for k in known:
        if k == name or not k:
            continue
        if len(k) == len(name):
            if sum(a != b for a, b in zip(k, name)) == 1:
                return k
        elif len(name) == len(k) + 1:
            if (name.startswith(k) and _flips_into(name[-1], adjacent)) or \
                    (name.endswith(k) and _flips_into(name[0], adjacent)):
                return k
        elif len(name) == len(k) - 1:
            if (name == k[1:] and _flips_into(k[0], cuts)) or (name == k[:-1] and _flips_into(k[-1], cuts)):
                return k
    return None


def damaged_key_check(where: str, found: str, meant: str) -> Check:
    """A failed ``structure`` check: ``found`` is what one flipped bit made of the known ``meant``
    (shown with escapes when it holds unprintable characters)."""
    shown = found if found.isprintable() else ascii(found)
    return Check(f"{where} {meant!r}", meant, shown, False, ("expected", "found a damaged"), kind="structure")


def check_value(name: str, stored: float, computed: float, precision: str) -> Check:
    """Compare a stored header value with the computed one (absolute tolerance by precision)."""
    ok = bool(np.isfinite(stored) and abs(stored - computed) <= HEADER_VALUE_TOL[precision])
    return Check(name, stored, computed, ok)


def inferred_note(meta: FieldMeta) -> str:
    """``''``, or for a layout that was inferred rather than stated, the text that every data error of
    the file ends with: which layout was assumed (a wrong guess reads as damaged data).

    Examples
    --------
    >>> m = FieldMeta(format="ildg", path="x", lattice=(8, 8, 8, 8), group="SU(3)", precision="single",
    ...               endianness="big", inferred="lattice (8, 8, 8, 8), SU(3), 32-bit from the payload size")
    >>> inferred_note(m)
    ' [layout inferred, not stated: lattice (8, 8, 8, 8), SU(3), 32-bit from the payload size]'
    """
    return f" [layout inferred, not stated: {meta.inferred}]" if meta.inferred else ""


def raise_failed(meta: FieldMeta) -> None:
    """Raise IOFormatError for the first failed check of ``meta`` (naming an inferred layout)."""
    for c in meta.checks:
        if not c.ok:
            a, b = c.labels
            raise IOFormatError(f"{a} {c.stored}, {b} {c.computed}; to read anyway, pass verify=False "
                                f"(--no-verify on the command line){inferred_note(meta)}", meta.path, c.name)


def refuse_nonfinite(meta: FieldMeta, what: str, check: str) -> None:
    """Raise IOFormatError for data with NaN or infinite numbers, naming a failed checksum if there is one
    (the more precise diagnosis: the bytes were damaged, not written that way) and an inferred layout."""
    note = inferred_note(meta)
    for c in meta.checks:
        if c.kind == "checksum" and not c.ok:
            raise IOFormatError(f"stored {c.stored}, computed {c.computed} (and the {what} contain NaN or infinite "
                                f"numbers){note}", meta.path, c.name)
    raise IOFormatError(f"{what} contain NaN or infinite numbers{note}", meta.path, check)


def no_checksum_reason(meta: FieldMeta) -> str:
    """One line saying why no checksum covers the payload of ``meta`` (for ``verify='require'``)."""
    why = "; ".join(a for a in meta.absent if "checksum" in a.lower()) or "the file holds no checksum"
    return f"no checksum covers the payload ({why})"


def finish_checks(meta: FieldMeta, verify: bool | str, strict: bool) -> None:
    """End of every reader: with ``strict``, raise for a failed check, and for ``verify='require'``
    also when no checksum over the payload was verified."""
    if verify and strict:
        raise_failed(meta)
        if verify == "require" and not meta.checksummed:
            raise IOFormatError(f"{no_checksum_reason(meta)}; verify='require' refuses it (verify=True reads it)",
                                meta.path, "checksum required")


# -- atomic writes: the one implementation lives in latticekit.utils.files --------------------------

def read_bytes(path: Any) -> bytes:
    """Whole file as bytes (OSError propagates unchanged)."""
    with open(os.fspath(path), "rb") as f:
        return f.read()
