"""Which checks ran and which could not (meta.checks / meta.absent / info), verify='require', damaged
check keys failing closed, sizes in Python integers, and what format detection says about near misses."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit import backends
from latticekit.app.io_commands import info_command
from latticekit.io import (
    IOFormatError,
    library_to_file,
    load,
    read_ildg,
    read_openqcd,
    save,
    write_lime,
)

LAT = (4, 2, 2, 2)


def _field(N: int = 3, seed: int = 0) -> np.ndarray:
    return lk.SU(N).random(backends.rng(seed), (4,), LAT)


def _nersc(tmp_path: Path) -> tuple[Path, bytes]:
    p = tmp_path / "c.nersc"
    save(p, _field(), "SU3", format="nersc")
    return p, p.read_bytes()


# -- item 4: checksums must not fail open ---------------------------------------------------------

def test_flipped_checksum_key_and_payload_bit_are_caught(tmp_path: Path) -> None:
    p, data = _nersc(tmp_path)
    d = bytearray(data.replace(b"CHECKSUM = ", b"CHECKSUL = "))  # 'M' -> 'L' is one bit
    d[-1] ^= 0x01  # and a payload bit that unitarity and the plaquette cannot see
    p.write_bytes(bytes(d))
    with pytest.raises(IOFormatError, match="NERSC header key 'CHECKSUM' failed: expected CHECKSUM, found a damaged "
                                            "CHECKSUL"):
        load(p)
    report = info_command(p)
    assert not report.ok and "MISMATCH: NERSC header key 'CHECKSUM'" in report.verdict
    assert "absent:     NERSC CHECKSUM: the header has no CHECKSUM line" in report


def test_nersc_without_checksum_is_reported_and_refused_on_request(tmp_path: Path) -> None:
    p, data = _nersc(tmp_path)
    i = data.index(b"CHECKSUM = ")
    p.write_bytes(data[:i] + data[data.index(b"\n", i) + 1:])  # a writer that stores no checksum
    U, meta = load(p)
    assert meta.checks_ok and not meta.checksummed
    assert meta.absent == ["NERSC CHECKSUM: the header has no CHECKSUM line, so no checksum covers the payload"]
    with pytest.raises(IOFormatError, match="checksum required failed: no checksum covers the payload \\(NERSC "
                                            "CHECKSUM: the header has no CHECKSUM line"):
        load(p, verify="require")
    report = info_command(p)
    assert report.ok and "verdict:    all checks ok; no checksum covers the payload (see absent)" in report
    strict = info_command(p, verify="require")
    assert not strict.ok and strict.verdict.startswith("REFUSED: no checksum covers the payload")
    with pytest.raises(ValueError, match="verify='always'"):
        load(p, verify="always")


def test_checksummed_files_satisfy_require(tmp_path: Path) -> None:
    for fmt in ("nersc", "ildg", "hdf5"):
        p = tmp_path / f"c.{fmt}"
        save(p, _field(), "SU3", format=fmt)
        U, meta = load(p, verify="require")
        assert meta.checksummed and meta.absent == [] and meta.checks_ok
        assert any(c.kind == "checksum" for c in meta.checks) and info_command(p, verify="require").ok
    p = tmp_path / "c.openqcd"
    save(p, _field(), "SU3", format="openqcd")
    _, meta = load(p)
    assert meta.absent and "openQCD format has none" in meta.absent[0]
    with pytest.raises(IOFormatError, match="no checksum covers the payload"):
        load(p, verify="require")


def test_flipped_scidac_record_name_and_payload_bit_are_caught(tmp_path: Path) -> None:
    p = tmp_path / "c.lime"
    save(p, _field(), "SU3", format="ildg")
    data = p.read_bytes()
    i = data.index(b"scidac-checksum\0")
    d = bytearray(data)
    d[i + 14] ^= 0x01  # 'scidac-checksum' -> 'scidac-checksul'
    j = data.index(b"ildg-binary-data\0") + 128 + 200  # inside the binary data
    d[j] ^= 0x01
    p.write_bytes(bytes(d))
    with pytest.raises(IOFormatError, match="LIME record type 'scidac-checksum' failed"):
        load(p)
    report = info_command(p)
    assert not report.ok and "absent:     SciDAC checksum: no scidac-checksum record" in report


def test_ildg_without_checksum_record(tmp_path: Path) -> None:
    U = _field(2, seed=3)
    p = tmp_path / "b.ildg"
    write_lime(p, [[("ildg-binary-data", library_to_file(U).astype(">c16").tobytes())]])
    V, meta = load(p, lattice=LAT, group="SU2")
    assert np.array_equal(V, U) and meta.checks_ok and not meta.checksummed
    assert [a.split(":")[0] for a in meta.absent] == ["ildg-format", "SciDAC checksum", "xlf-info plaquette"]
    with pytest.raises(IOFormatError, match="no scidac-checksum record"):
        load(p, lattice=LAT, group="SU2", verify="require")


def test_damaged_binary_record_name_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.lime"
    save(p, _field(), "SU3", format="ildg")
    p.write_bytes(p.read_bytes().replace(b"ildg-binary-data\0", b"ildg-binary-dat`\0"))
    with pytest.raises(IOFormatError, match="record 'ildg-binary-dat`' looks like a damaged 'ildg-binary-data'"):
        load(p)


# -- item 5: sizes in Python integers, closest match, trailing data ----------------------------------

def test_openqcd_sizes_do_not_wrap(tmp_path: Path) -> None:
    p = tmp_path / "huge.oqcd"
    p.write_bytes(struct.pack("<4id", 65536, 65536, 65536, 65536, 3.0))  # 65536^4 sites wrap to 0 in int64
    need = 24 + 65536 ** 4 * 4 * 9 * 16  # Python integers: 10625324586456701730840
    with pytest.raises(IOFormatError, match=f"openQCD size failed: file has 24 bytes; lattice \\(65536, 65536, 65536, "
                                            f"65536\\) needs {need} \\(truncated\\)"):
        read_openqcd(p)
    with pytest.raises(IOFormatError, match="openQCD size"):
        load(p)


def test_ildg_sizes_do_not_wrap(tmp_path: Path) -> None:
    n = 1 << 16  # (2^16)^4 sites times 576 bytes wrap to 0 in int64
    fmt = (f"<ildgFormat><field>su3gauge</field><precision>64</precision><lx>{n}</lx><ly>{n}</ly><lz>{n}</lz>"
           f"<lt>{n}</lt></ildgFormat>")
    p = tmp_path / "huge.lime"
    write_lime(p, [[("ildg-format", fmt.encode()), ("ildg-binary-data", b"")]])
    need = n ** 4 * 4 * 9 * 16
    with pytest.raises(IOFormatError, match=f"ILDG payload size failed: ildg-binary-data has 0 bytes; SU\\(3\\) 64-bit "
                                            f"on \\(65536, 65536, 65536, 65536\\) needs {need} \\(truncated\\)"):
        read_ildg(p)


def test_damaged_openqcd_file_is_recognised_and_explained(tmp_path: Path) -> None:
    p = tmp_path / "c.oqcd"
    save(p, _field(), "SU3", format="openqcd")
    data = p.read_bytes()
    q = tmp_path / "short"
    q.write_bytes(data[:-1])
    with pytest.raises(IOFormatError, match="openQCD size failed: file has 18455 bytes; lattice \\(4, 2, 2, 2\\) "
                                            "needs 18456 \\(truncated\\)"):
        load(q)
    q.write_bytes(data + b"\0")
    with pytest.raises(IOFormatError, match="needs 18456 \\(trailing data\\)"):
        load(q)
    q.write_bytes(struct.pack("<i", 4) + struct.pack("<i", 2) + struct.pack("<i", 3) + data[12:])
    with pytest.raises(IOFormatError, match="closest match: openQCD, whose header gives lattice sizes "
                                            "\\(4, 2, 3, 2\\): N2 = 3 is not an even extent"):
        load(q)


@pytest.mark.parametrize("fmt,pos,name", [("nersc", 5, "NERSC"), ("ildg", 2, "ILDG/LIME"), ("hdf5", 1, "HDF5")])
def test_damaged_signature_names_the_closest_format(tmp_path: Path, fmt: str, pos: int, name: str) -> None:
    p = tmp_path / "c"
    save(p, _field(), "SU3", format=fmt)
    d = bytearray(p.read_bytes())
    d[pos] ^= 0x04
    p.write_bytes(bytes(d))
    with pytest.raises(IOFormatError, match=f"closest match: {name}, whose signature .* differs from the file's first "
                                            f"bytes .* in 1 byte"):
        load(p)
    with pytest.raises(IOFormatError) as ei:
        info_command(p)
    assert "\n" not in str(ei.value)


def test_trailing_data_is_refused_in_every_format(tmp_path: Path) -> None:
    for fmt in ("nersc", "ildg", "openqcd", "hdf5"):
        p = tmp_path / f"c.{fmt}"
        save(p, _field(), "SU3", format=fmt)
        p.write_bytes(p.read_bytes() + b"\0" * 8)
        with pytest.raises(IOFormatError):
            load(p)


# -- item 3 (all formats): one-line errors from the command function ----------------------------------

def test_unreadable_file_gives_one_line_error(tmp_path: Path) -> None:
    p, data = _nersc(tmp_path)
    p.write_bytes(data[:len(data) // 2])
    with pytest.raises(IOFormatError) as ei:
        info_command(p)
    msg = str(ei.value)
    assert msg.startswith(str(p)) and "\n" not in msg and "truncated" in msg


def test_latticekit_info_on_an_unreadable_file_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from latticekit.app.cli import main

    p = tmp_path / "c.h5"
    save(p, _field(), "SU3", format="hdf5")
    p.write_bytes(p.read_bytes()[:-100])
    assert main(["info", str(p)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "truncated by 100" in err and "Traceback" not in err


def test_latticekit_info_exit_status_follows_the_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A file that reads but fails a check exits 1 (not 0); --require-checksum fails a file without one."""
    from latticekit.app.cli import main

    p, data = _nersc(tmp_path)
    assert main(["info", str(p)]) == 0
    bad = bytearray(data)
    bad[-5] ^= 0x10                      # one payload bit: the NERSC CHECKSUM no longer matches
    p.write_bytes(bytes(bad))
    assert main(["info", str(p)]) == 1
    q = tmp_path / "c.oqcd"
    save(q, _field(), "SU3", format="openqcd")   # openQCD files carry no checksum
    assert main(["info", str(q)]) == 0
    assert main(["info", "--require-checksum", str(q)]) == 1
    capsys.readouterr()
