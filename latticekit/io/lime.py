"""LIME containers (Lattice QCD Interchange Message Encapsulation), as used by ILDG and SciDAC.

A LIME file is a sequence of records, each a 144-byte big-endian header followed by the data,
padded with zeros to a multiple of 8 bytes:

========  =======  =====================================================
bytes     type     field
========  =======  =====================================================
0-3       uint32   magic number ``0x456789ab``
4-5       uint16   version (1)
6-7       uint16   flags: bit 15 MB (message begin), bit 14 ME (message end)
8-15      uint64   data length in bytes (without padding)
16-143    char     record type, NUL-padded ASCII (e.g. ``ildg-binary-data``)
========  =======  =====================================================

Records are grouped into messages: the first record of a message has MB set, the last ME (a
record may have both). A message that begins must end before the next one begins and before the
end of the file: a file cut after a record whose message has not ended is refused as truncated.

Examples
--------
>>> import os, tempfile
>>> from latticekit.io.lime import read_lime, write_lime
>>> path = os.path.join(tempfile.mkdtemp(), "x.lime")
>>> write_lime(path, [[("a-type", b"hello"), ("b-type", b"12345678")], [("c", b"")]])
>>> [(r.type, bytes(r.data), r.mb, r.me) for r in read_lime(path)]
[('a-type', b'hello', True, False), ('b-type', b'12345678', False, True), ('c', b'', True, True)]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ._common import atomic_write, read_bytes
from .errors import IOFormatError

__all__ = ["LIME_MAGIC", "LimeRecord", "lime_bytes", "parse_lime", "read_lime", "write_lime"]

LIME_MAGIC = 0x456789AB
_HDR = struct.Struct(">IHHQ128s")
_MB, _ME = 0x8000, 0x4000


@dataclass
class LimeRecord:
    """One LIME record: type, data (a memoryview into the file's bytes), flags and position.

    Examples
    --------
    >>> r = LimeRecord("ildg-data-lfn", memoryview(b"lfn://x"), True, True, 144)
    >>> r.text
    'lfn://x'
    """

    type: str
    data: memoryview
    mb: bool
    me: bool
    offset: int

    @property
    def text(self) -> str:
        """The data as text (UTF-8, NULs and surrounding whitespace stripped)."""
        return bytes(self.data).decode("utf-8", errors="replace").strip("\x00").strip()


def parse_lime(data: bytes, path: Any = None) -> list[LimeRecord]:
    """Split the bytes of a LIME file into records, checking every header and length.

    Raises
    ------
    IOFormatError
        Bad magic number or version, a record (or its padding to 8 bytes) running past the end of the
        file, non-ASCII type, a message that begins (MB flag) and does not end (ME flag) before the next
        message or the end of the file (truncated).

    Examples
    --------
    >>> parse_lime(b"not lime")
    Traceback (most recent call last):
    ...
    latticekit.io.errors.IOFormatError: LIME record header failed: record 0 at byte 0: file ends after 8 of 144 header bytes
    """
    mv = memoryview(data)
    out: list[LimeRecord] = []
    off = 0
    n = len(data)
    while off < n:
        k = len(out)
        if n - off < _HDR.size:
            raise IOFormatError(f"record {k} at byte {off}: file ends after {n - off} of {_HDR.size} header bytes",
                                path, "LIME record header")
        magic, version, flags, length, typ = _HDR.unpack_from(data, off)
        if magic != LIME_MAGIC:
            raise IOFormatError(f"record {k} at byte {off}: magic number {magic:#010x}, expected {LIME_MAGIC:#010x}",
                                path, "LIME record header")
        if version != 1:
            raise IOFormatError(f"record {k} at byte {off}: version {version}, expected 1", path,
                                "LIME record header")
        raw = typ.split(b"\x00", 1)[0]
        try:
            name = raw.decode("ascii")
        except UnicodeDecodeError:
            raise IOFormatError(f"record {k} at byte {off}: record type is not ASCII", path,
                                "LIME record header") from None
        start = off + _HDR.size
        if length > n - start:
            raise IOFormatError(f"record {k} ({name!r}) at byte {off}: data length {length} runs past the end of the "
                                f"file ({n - start} bytes left; truncated?)", path, "LIME record length")
        padded = ((length + 7) // 8) * 8
        if padded > n - start:
            raise IOFormatError(f"record {k} ({name!r}) at byte {off}: file ends inside the zero padding after the "
                                f"data (truncated?)", path, "LIME record length")
        out.append(LimeRecord(name, mv[start:start + length], bool(flags & _MB), bool(flags & _ME), start))
        off = start + padded
    if not out:
        raise IOFormatError("file is empty", path, "LIME record header")
    _check_messages(out, path)
    return out


def _check_messages(records: Sequence[LimeRecord], path: Any) -> None:
    """Every message that begins (MB flag) ends (ME flag) before the next one begins and before the end of
    the file; a message left open at the end is what a truncated file looks like."""
    begun: int | None = None  # index of the record that began the open message
    for k, r in enumerate(records):
        if r.mb and begun is not None:
            b = records[begun]
            raise IOFormatError(f"record {k} ({r.type!r}) at byte {r.offset - _HDR.size} begins a message while the "
                                f"message begun by record {begun} ({b.type!r}) has not ended (no record with the "
                                f"message-end flag)", path, "LIME message")
        if r.mb:
            begun = k
        if r.me:
            begun = None
    if begun is not None:
        b, last = records[begun], records[-1]
        raise IOFormatError(f"the message begun by record {begun} ({b.type!r}) at byte {b.offset - _HDR.size} never "
                            f"ends: the file ends after record {len(records) - 1} ({last.type!r}) without a record "
                            f"with the message-end flag (truncated?)", path, "LIME message")


def read_lime(path: Any) -> list[LimeRecord]:
    """Records of a LIME file (see :func:`parse_lime`)."""
    return parse_lime(read_bytes(path), path)


def _record(typ: str, data: bytes, mb: bool, me: bool) -> bytes:
    name = typ.encode("ascii")
    if len(name) > 127 or b"\x00" in name:
        raise ValueError(f"record type {typ!r}: expected at most 127 ASCII characters")
    flags = (_MB if mb else 0) | (_ME if me else 0)
    hdr = _HDR.pack(LIME_MAGIC, 1, flags, len(data), name)
    return hdr + bytes(data) + b"\x00" * ((-len(data)) % 8)


def lime_bytes(messages: Sequence[Sequence[tuple[str, bytes]]]) -> Iterable[bytes]:
    """Byte chunks of a LIME file: ``messages`` is a list of messages, each a list of (type, data).

    Examples
    --------
    >>> b"".join(lime_bytes([[("t", b"x")]]))[:8].hex()
    '456789ab0001c000'
    """
    for msg in messages:
        msg = list(msg)
        if not msg:
            raise ValueError("messages: every message needs at least one record")
        for i, (typ, data) in enumerate(msg):
            yield _record(typ, data, i == 0, i == len(msg) - 1)


def write_lime(path: Any, messages: Sequence[Sequence[tuple[str, bytes]]]) -> None:
    """Write a LIME file atomically (temporary file + rename); see :func:`lime_bytes`."""
    chunks = list(lime_bytes(messages))
    atomic_write(path, chunks)
