"""No single flipped bit switches a check off: whatever one bit makes of a NERSC header key or a LIME record
type (a changed character, a flipped separator glued to the key, a character cut off, a joined line) fails a
check, while the genuine keys of real files and of other writers are not flagged. Also: the NERSC writer
refuses meta keys its reader would misparse."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.app.io_commands import info_command
from latticekit.io import IOFormatError, load, read_lime, save
from latticekit.io._common import near_miss
from latticekit.io.ildg import _KNOWN_RECORDS, _TYPE_END
from latticekit.io.nersc import _KEY_ADJACENT, _KEY_CUTS, _VERIFIED_KEYS, _damaged_keys, parse_nersc_header

from .test_real_files import ALL_FILES, CONFIGS

LAT = (2, 2, 2, 2)
_NERSC_CHECKS = {"NERSC CHECKSUM", "NERSC PLAQUETTE", "NERSC LINK_TRACE"}
_ILDG_CHECKS = {"SciDAC checksum suma", "SciDAC checksum sumb", "xlf-info plaquette"}


def _written(tmp_path: Path, fmt: str) -> Path:
    p = tmp_path / f"c.{fmt}"
    save(p, lk.SU(3).random(backends.rng(5), (4,), LAT), "SU3", format=fmt)
    return p


def _reads_with_all_checks(p: Path, names: set[str]) -> bool:
    """False when the file is refused; True when it reads and every check in ``names`` ran (and passed)."""
    try:
        _, meta = load(p)
    except IOFormatError:
        return False
    assert names <= {c.name for c in meta.checks}, (meta.checks, meta.absent)
    return True


# -- the reproducers of the probe ------------------------------------------------------------------

@pytest.mark.skipif(CONFIGS is None, reason="shared/data/configs (real files) not present")
def test_flipped_blank_after_checksum_key_of_the_real_nersc_file_fails(tmp_path: Path) -> None:
    raw = bytearray((CONFIGS / "nersc.l8t4b3360").read_bytes())
    raw[raw.index(b"CHECKSUM = ") + len(b"CHECKSUM")] ^= 0x01  # 'CHECKSUM = ' -> 'CHECKSUM!= '
    raw[raw.index(b"END_HEADER\n") + 11 + 7] ^= 0x01  # and the lowest mantissa bit of one payload double
    p = tmp_path / "onebit.nersc"
    p.write_bytes(bytes(raw))
    with pytest.raises(IOFormatError, match="NERSC header key 'CHECKSUM' failed: expected CHECKSUM, found a damaged "
                                            "CHECKSUM!"):
        load(p)
    report = info_command(p)
    assert not report.ok and "NERSC header key 'CHECKSUM'" in report.verdict


def test_flipped_blank_after_checksum_key_fails(tmp_path: Path) -> None:
    p = _written(tmp_path, "nersc")
    raw = bytearray(p.read_bytes())
    raw[raw.index(b"CHECKSUM = ") + len(b"CHECKSUM")] ^= 0x01  # 'CHECKSUM!= ...'
    raw[-1] ^= 0x01  # a payload bit that unitarity and the plaquette cannot see
    p.write_bytes(bytes(raw))
    with pytest.raises(IOFormatError, match="NERSC header key 'CHECKSUM' failed: expected CHECKSUM, found a damaged "
                                            "CHECKSUM!"):
        load(p)
    report = info_command(p)
    assert not report.ok and report.verdict.startswith("MISMATCH: NERSC header key 'CHECKSUM'")


def test_flipped_nul_after_scidac_checksum_type_fails(tmp_path: Path) -> None:
    p = _written(tmp_path, "ildg")
    raw = bytearray(p.read_bytes())
    rec = next(r for r in read_lime(p) if r.type == "scidac-checksum")
    raw[rec.offset - 144 + 16 + len("scidac-checksum")] ^= 0x01  # the terminating NUL -> '\x01'
    binrec = next(r for r in read_lime(p) if r.type == "ildg-binary-data")
    raw[binrec.offset + 7] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(IOFormatError, match=r"LIME record type 'scidac-checksum' failed: expected scidac-checksum, "
                                            r"found a damaged 'scidac-checksum\\x01'"):
        load(p)
    assert not info_command(p).ok


def test_joined_line_hides_no_checksum(tmp_path: Path) -> None:
    """The line break before ``CHECKSUM`` flipped into a letter joins its line to the one before."""
    p = _written(tmp_path, "nersc")
    data = p.read_bytes()
    assert b"BOUNDARY_4 = PERIODIC\nCHECKSUM" in data  # the line before is not a number: no parse error
    raw = bytearray(data)
    raw[data.index(b"\nCHECKSUM")] ^= 0x40  # '\n' -> 'J'
    raw[-1] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(IOFormatError, match="NERSC header key 'CHECKSUM' failed: .* line 'BOUNDARY_4 = PERIODICJ"
                                            "CHECKSUM = [0-9a-f]+' \\(CHECKSUM joined to the line before"):
        load(p)


def test_first_character_cut_off_by_a_line_break_fails(tmp_path: Path) -> None:
    p = _written(tmp_path, "nersc")
    data = p.read_bytes()
    raw = bytearray(data)
    raw[data.index(b"\nLINK_TRACE") + 1] ^= 0x40  # 'L' -> '\x0c', a line break for the reader
    p.write_bytes(bytes(raw))
    with pytest.raises(IOFormatError, match="NERSC header key 'LINK_TRACE' failed: .* found a damaged INK_TRACE"):
        load(p)


# -- every single bit of the key lines ---------------------------------------------------------------

def test_no_bit_flip_in_a_verified_nersc_key_line_switches_its_check_off(tmp_path: Path) -> None:
    """Each bit from the line break before a verified key to the one ending its line: the file is refused, or
    it reads with all three header checks run (e.g. a letter flipped to lower case, a low digit changed)."""
    data = _written(tmp_path, "nersc").read_bytes()
    q = tmp_path / "m.nersc"
    flipped = read = 0
    for key in _VERIFIED_KEYS:
        start = data.index(b"\n" + key.encode())
        end = data.index(b"\n", start + 1)
        for i in range(start, end + 1):
            for bit in range(8):
                raw = bytearray(data)
                raw[i] ^= 1 << bit
                q.write_bytes(bytes(raw))
                flipped += 1
                read += _reads_with_all_checks(q, _NERSC_CHECKS)
    assert flipped > 500 and 0 < read < flipped


def test_no_bit_flip_in_a_lime_record_type_switches_its_check_off(tmp_path: Path) -> None:
    """Each bit of each record type and of the NUL after it: refused, or read with the SciDAC checksum and the
    xlf-info plaquette checked from a format record (no inferred layout)."""
    p = _written(tmp_path, "ildg")
    data = p.read_bytes()
    q = tmp_path / "m.lime"
    flipped = read = 0
    for rec in read_lime(p):
        start = rec.offset - 144 + 16
        for i in range(start, start + len(rec.type) + 1):
            for bit in range(8):
                raw = bytearray(data)
                raw[i] ^= 1 << bit
                q.write_bytes(bytes(raw))
                flipped += 1
                try:
                    _, meta = load(q)
                except IOFormatError:
                    continue
                read += 1
                assert _ILDG_CHECKS <= {c.name for c in meta.checks} and meta.inferred is None, meta.header
    assert flipped > 400 and read == 0  # a type is case-sensitive: every flip changes it


# -- genuine keys are not flagged ------------------------------------------------------------------

#: header keys written by NERSC-format writers (the archive, Grid, latticekit) and LIME types of SciDAC,
#: ILDG and tmLQCD files
GENUINE_NERSC_KEYS = ["HDR_VERSION", "DATATYPE", "STORAGE_FORMAT", "DIMENSION_1", "DIMENSION_2", "DIMENSION_3",
                      "DIMENSION_4", "BOUNDARY_1", "BOUNDARY_2", "BOUNDARY_3", "BOUNDARY_4", "SCIDAC_CHECKSUMA",
                      "SCIDAC_CHECKSUMB", "ENSEMBLE_ID", "ENSEMBLE_LABEL", "SEQUENCE_NUMBER", "CREATOR",
                      "CREATOR_HARDWARE", "CREATION_DATE", "ARCHIVE_DATE", "FLOATING_POINT", "CHECKSUMS",
                      "PLAQUETTES", "LINK_TRACE_T", "MY_CHECKSUM", "PLAQUETTE_S"]
GENUINE_LIME_TYPES = ["scidac-private-file-xml", "scidac-file-xml", "scidac-private-record-xml", "scidac-record-xml",
                      "scidac-binary-data", "ildg-format", "ildg-binary-data", "ildg-data-lfn", "scidac-checksum",
                      "xlf-info", "etmc-propagator-format", "inverter-info", "scidac-checksums"]


def test_genuine_keys_and_types_are_no_near_misses() -> None:
    for key in GENUINE_NERSC_KEYS:
        assert near_miss(key, [k for k in _VERIFIED_KEYS if k != key], _KEY_ADJACENT, _KEY_CUTS) is None, key
    for typ in GENUINE_LIME_TYPES:
        assert near_miss(typ, [k for k in _KNOWN_RECORDS if k != typ], _TYPE_END) is None, typ
    # a header of all of them, without the verified keys: nothing is taken for a damaged one
    header = {k: "1" for k in GENUINE_NERSC_KEYS if k not in _VERIFIED_KEYS}
    assert _damaged_keys(header) == []


@pytest.mark.skipif(CONFIGS is None, reason="shared/data/configs (real files) not present")
@pytest.mark.parametrize("name", ALL_FILES)
def test_real_files_have_no_damaged_keys(name: str) -> None:
    p = CONFIGS / name
    if name.startswith("nersc"):
        header, _ = parse_nersc_header(p.read_bytes(), p)
        assert _damaged_keys(header) == [] and {k: None for k in _VERIFIED_KEYS}.keys() <= header.keys()
    else:
        types = [r.type for r in read_lime(p)]
        assert all(near_miss(t, [k for k in _KNOWN_RECORDS if k != t], _TYPE_END) is None for t in types)
    _, meta = load(p)
    assert not [c for c in meta.checks if c.kind == "structure"]


def test_written_files_have_no_damaged_keys(tmp_path: Path) -> None:
    p = _written(tmp_path, "nersc")
    header, _ = parse_nersc_header(p.read_bytes(), p)
    assert _damaged_keys(header) == []
    for typ in (r.type for r in read_lime(_written(tmp_path, "ildg"))):
        assert near_miss(typ, [k for k in _KNOWN_RECORDS if k != typ], _TYPE_END) is None


# -- the NERSC writer refuses keys its reader would misparse ------------------------------------------

@pytest.mark.parametrize("key,why", [
    ("MY_END_HEADER", "contains END_HEADER"), ("note_end_header", "contains END_HEADER"),
    ("A=B", "contains '='"), (" NOTE", "has leading or trailing blanks"),
    ("NOTE ", "has leading or trailing blanks"), ("", "is empty"), ("  ", "is empty"),
    ("A\nB", "is not one word of printable ASCII"), ("A\x0bB", "is not one word of printable ASCII"),
    ("MY KEY", "is not one word of printable ASCII"), ("NOT\u00e9", "is not one word of printable ASCII"),
])
def test_nersc_writer_refuses_misparsed_meta_keys(tmp_path: Path, key: str, why: str) -> None:
    p = tmp_path / "k.nersc"
    U = lk.SU(3).random(backends.rng(0), (4,), LAT) * 2.0  # not unitary: the meta key is refused first
    with pytest.raises(ValueError, match=re.escape(f"meta[{key!r}]: the key {why}")) as ei:
        save(p, U, "SU3", format="nersc", meta={key: "1"})
    assert "not in SU(3)" not in str(ei.value) and not p.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["a\x0cb", "x END_HEADER y", "tab\there", "line\nbreak"])
def test_nersc_writer_refuses_misparsed_meta_values(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="meta\\['NOTE'\\] = .*: header values must be one line of printable ASCII"):
        save(tmp_path / "v.nersc", lk.SU(3).random(backends.rng(0), (4,), LAT), "SU3", format="nersc",
             meta={"NOTE": value})
    assert list(tmp_path.iterdir()) == []


def test_nersc_writer_keeps_keys_the_reader_parses(tmp_path: Path) -> None:
    p = tmp_path / "ok.nersc"
    U = lk.SU(3).random(backends.rng(0), (4,), LAT)
    save(p, U, "SU3", format="nersc", meta={"NOTE_BEGIN_HEADER": "1", "note": "lower case", "RUN-ID": "a b = c"})
    V, meta = load(p)
    assert np.array_equal(V, U) and meta.checks_ok
    assert meta.header["NOTE_BEGIN_HEADER"] == "1" and meta.header["NOTE"] == "lower case"
    assert meta.header["RUN-ID"] == "a b = c"
