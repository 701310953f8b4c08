"""On-disk details of latticekit HDF5 ensembles: file-level checks, string attributes, slot checksums.

Format version 2 (written since checksums were added) is built so that damage to any byte the
reader interprets is caught by a checksum:

* the file is written with HDF5 library-version bounds ``('v108', 'v108')``: superblock version 2,
  version-2 object headers and dense attribute storage, all carrying Jenkins lookup3 checksums that
  the HDF5 library verifies on every read (version-3 superblocks of ``'v110'`` would refuse readers
  while a writer holds the file, and refuse a file whose writer was killed, until ``h5clear``);
* every string attribute is fixed-length, stored inside the checksummed object header (no
  variable-length strings, so nothing lives in an unchecksummed global heap: a damaged global heap
  sends HDF5 into an endless loop);
* the per-configuration info is JSON bytes in a ``uint8`` dataset (again no global heap);
* ``slots`` holds, per configuration, a CRC32 of the configuration's little-endian bytes, of its
  info and of its observables, each seeded with the slot index, so a configuration moved to another
  slot or a zeroed slot fails; ``slots``, ``info_json`` and the observables also carry HDF5's
  Fletcher-32 chunk checksum. The chunk index of these format bounds (a version-1 B-tree) has no
  checksum of its own: a damaged one hands a chunk to the wrong slot or loses it (fill values are
  read), which these data checksums catch.

Version-1 files (no checksums, variable-length strings in the global heap) are still read; their
metadata is read first in a subprocess with a time limit (:mod:`latticekit.io._hdf5_probe`).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from ._common import READ_UNITARITY_TOL
from .errors import IOFormatError

FORMAT_NAME = "ensemble"
FORMAT_VERSION = 2
#: versions this reader understands
READABLE_VERSIONS = (1, 2)
#: HDF5 library-version bounds of version-2 files (superblock v2: checksummed, no status-flag lockout)
LIBVER = ("v108", "v108")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: one row per configuration of a version-2 ensemble
SLOT_DTYPE = np.dtype([("config_crc32", "<u4"), ("info_crc32", "<u4"), ("observables_crc32", "<u4"),
                       ("info_offset", "<u8"), ("info_length", "<u8")])
#: longest per-configuration info accepted when reading (bytes): a damaged length is refused before allocating
MAX_INFO_BYTES = 1 << 24
#: largest |angle| of a U(1) configuration: beyond it one rounding step of the angle exceeds the read
#: tolerance of the precision (1e-8 * 2^52 for double, 5e-5 * 2^23 for single), so no group element is meant
U1_ANGLE_LIMIT = {"double": READ_UNITARITY_TOL["double"] * 2.0 ** 52,
                  "single": READ_UNITARITY_TOL["single"] * 2.0 ** 23}


# -- file-level checks (before the HDF5 library sees the file) -------------------------------------

@dataclass(frozen=True)
class Superblock:
    """What :func:`check_superblock` read: version, end-of-allocation address, writer flag, file size."""

    version: int
    eoa: int
    open_for_write: bool
    size: int


def check_superblock(path: str) -> Superblock:
    """Signature, truncation and trailing data of an HDF5 file, from its superblock.

    The superblock stores the end of the allocated space (EOA). A file shorter than that is truncated.
    A longer one carries trailing data, which is an error when the file was closed cleanly; while a
    writer holds the file (or after a writer was killed) HDF5 has already allocated space beyond the
    last flushed EOA, and the status flag says so.

    Raises
    ------
    IOFormatError
        No HDF5 signature, truncated file, or trailing data after a clean close.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith(HDF5_MAGIC):
        raise IOFormatError(f"no HDF5 signature at byte 0 (first bytes {head[:8]!r})", path, "HDF5 file")
    if len(head) < 16:
        raise IOFormatError(f"file has {size} bytes, too short for an HDF5 superblock", path, "HDF5 file")
    v = head[8]
    # HDF5 file format specification, section II.A: byte offsets of the status flags and the base address
    if v == 0:
        so, base_at, flags = head[13], 24, int.from_bytes(head[20:24], "little")
    elif v == 1:
        so, base_at, flags = head[13], 28, int.from_bytes(head[24:28], "little")
    elif v in (2, 3):
        so, base_at, flags = head[9], 12, head[11]
    else:
        raise IOFormatError(f"superblock version {v}; expected 0 to 3", path, "HDF5 superblock")
    if so not in (2, 4, 8):
        raise IOFormatError(f"superblock gives {so}-byte addresses; expected 2, 4 or 8", path, "HDF5 superblock")
    eoa_at = base_at + 2 * so  # v0/v1: base, free-space, EOA addresses; v2/v3: base, extension, EOA
    if len(head) < eoa_at + so:
        raise IOFormatError(f"file has {size} bytes, too short for its superblock", path, "HDF5 superblock")
    base = int.from_bytes(head[base_at:base_at + so], "little")
    eoa = base + int.from_bytes(head[eoa_at:eoa_at + so], "little")
    writing = bool(flags & 0x5)  # bit 0: open for writing, bit 2: SWMR writer
    if eoa > size:
        raise IOFormatError(f"the superblock says the file ends at byte {eoa}, but it has {size} bytes "
                            f"(truncated by {eoa - size})", path, "HDF5 file size")
    if eoa < size and not writing:
        raise IOFormatError(f"{size - eoa} bytes of trailing data after the end of the HDF5 file at byte {eoa} "
                            f"(the file was closed cleanly, so nothing may follow)", path, "HDF5 file size")
    return Superblock(v, eoa, writing, size)


# -- errors of the HDF5 library become IOFormatError ---------------------------------------------

def _describe(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return msg if isinstance(exc, (OSError, RuntimeError)) else f"{type(exc).__name__}: {msg}"


@contextlib.contextmanager
def h5_errors(path: str, what: str, check: str = "HDF5 ensemble") -> Iterator[None]:
    """Turn any error raised while reading file content into IOFormatError naming ``what`` was read."""
    try:
        yield
    except (IOFormatError, FileNotFoundError, PermissionError, KeyboardInterrupt):
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError, UnicodeError,
            OverflowError, MemoryError, struct.error) as exc:
        raise IOFormatError(f"{what}: {_describe(exc)}", path, check) from None


# -- string attributes ---------------------------------------------------------------------------

def put_str(attrs: Any, key: str, value: str) -> None:
    """Store ``value`` as a fixed-length UTF-8 string attribute (inside the checksummed object header)."""
    import h5py

    b = str(value).encode("utf-8")
    n = max(len(b), 1)
    attrs.create(key, np.array(b, dtype=f"S{n}"), dtype=h5py.string_dtype("utf-8", n))


def attr_is_variable_string(attrs: Any, key: str) -> bool:
    """Whether attribute ``key`` is a variable-length string (its value lives in the global heap)."""
    import h5py

    return h5py.check_string_dtype(attrs.get_id(key).dtype) is not None and \
        h5py.check_string_dtype(attrs.get_id(key).dtype).length is None


def get_str(attrs: Any, key: str, path: str, default: str | None = None) -> str:
    """A string attribute (fixed or variable length); a missing one gives ``default`` or IOFormatError."""
    if key not in attrs:
        if default is not None:
            return default
        raise IOFormatError(f"no {key!r} attribute", path, "HDF5 ensemble")
    v = attrs[key]
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, (bytes, np.bytes_)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise IOFormatError(f"attribute {key!r} is not UTF-8 text", path, "HDF5 ensemble") from None
    if isinstance(v, str):
        return v
    raise IOFormatError(f"attribute {key!r} is {type(v).__name__} {v!r}; expected a string", path, "HDF5 ensemble")


def get_int(attrs: Any, key: str, path: str) -> int:
    """A scalar integer attribute (type checked before the value is read)."""
    if key not in attrs:
        raise IOFormatError(f"no {key!r} attribute", path, "HDF5 ensemble")
    dt = attrs.get_id(key).dtype
    if dt.kind not in "iu" or attrs.get_id(key).shape not in ((), (1,)):
        raise IOFormatError(f"attribute {key!r} has type {dt} and shape {attrs.get_id(key).shape}; expected an "
                            f"integer", path, "HDF5 ensemble")
    return int(np.asarray(attrs[key]).ravel()[0])


# -- slot checksums ------------------------------------------------------------------------------

def _seed(j: int, tag: bytes) -> int:
    """CRC32 seed binding a checksum to slot ``j`` and to what it covers."""
    return zlib.crc32(tag + struct.pack("<Q", j))


def le_view(a: np.ndarray) -> memoryview:
    """The bytes of ``a`` in little-endian order (no copy when ``a`` is already contiguous little-endian)."""
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return memoryview(le.reshape(-1).view(np.uint8))


def config_crc(a: np.ndarray, j: int) -> int:
    """CRC32 of configuration ``a`` (its little-endian bytes) stored in slot ``j``."""
    return zlib.crc32(le_view(a), _seed(j, b"config"))


def info_crc(b: bytes, j: int) -> int:
    """CRC32 of the info bytes of slot ``j``."""
    return zlib.crc32(b, _seed(j, b"info"))


def observables_crc(pairs: Iterable[tuple[str, float]], j: int) -> int:
    """CRC32 of the observables of slot ``j``: (name, float64 value) pairs, NaN (missing) left out, by name."""
    crc = _seed(j, b"observables")
    for name, v in sorted(pairs):
        v = float(v)
        if not math.isnan(v):
            crc = zlib.crc32(name.encode("utf-8") + b"\0" + struct.pack("<d", v), crc)
    return crc


def file_dtype(is_u1: bool, precision: str) -> np.dtype:
    """Little-endian element dtype of ``configs`` for a group kind and precision."""
    if is_u1:
        return np.dtype("<f8" if precision == "double" else "<f4")
    return np.dtype("<c16" if precision == "double" else "<c8")
