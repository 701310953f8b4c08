"""Every real configuration in shared/data/configs (written by other lattice codes) is read and checked.

The stated header values must be reproduced, the NERSC and ILDG versions of the same ensemble must
agree link by link, and the Polyakov loop (direction 0 = time) computed from the library field must
equal an independent NumPy computation done directly in file order, which tells permuted directions
and lattice axes apart.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit.app.io_commands import info_command
from latticekit.io import IOFormatError, load, read_lime, scidac_checksum
from latticekit.testing import assert_close

_CANDIDATES = [os.environ.get("LATTICEKIT_CONFIGS", ""),
               str(Path(__file__).resolve().parents[3] / "shared" / "data" / "configs"),
               "/work/shared/data/configs"]
CONFIGS = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "nersc.l8t4b3360").exists()), None)
pytestmark = pytest.mark.skipif(CONFIGS is None, reason="shared/data/configs (real files) not present")

ALL_FILES = ["nersc.l8t4b3360", "ildg.l8t4b3360", "unity.lime", "su2_4x4x4x4_b.ildg", "su2_4x4x4x4_hot.ildg",
             "su3_8x8x8x8.ildg"]
EXPECTED = {  # file -> (library lattice (Lt, Lx, Ly, Lz), group)
    "nersc.l8t4b3360": ((4, 8, 8, 8), "SU(3)"),
    "ildg.l8t4b3360": ((4, 8, 8, 8), "SU(3)"),
    "unity.lime": ((4, 4, 4, 4), "SU(3)"),
    "su2_4x4x4x4_b.ildg": ((4, 4, 4, 4), "SU(2)"),
    "su2_4x4x4x4_hot.ildg": ((4, 4, 4, 4), "SU(2)"),
    "su3_8x8x8x8.ildg": ((8, 8, 8, 8), "SU(3)"),
}


def _path(name: str) -> Path:
    assert CONFIGS is not None
    return CONFIGS / name


def _raw_file_order(name: str) -> np.ndarray:
    """The links straight from the bytes: (Lt, Lz, Ly, Lx, dir(x,y,z,t), N, N), no library code."""
    data = _path(name).read_bytes()
    if data.startswith(b"BEGIN_HEADER"):
        payload = data[data.index(b"END_HEADER\n") + len(b"END_HEADER\n"):]
    else:
        off = 0
        while True:
            ln = struct.unpack(">Q", data[off + 8:off + 16])[0]
            typ = data[off + 16:off + 144].split(b"\0")[0]
            if typ == b"ildg-binary-data":
                payload = data[off + 144:off + 144 + ln]
                break
            off += 144 + (ln + 7) // 8 * 8
    lat, g = EXPECTED[name]
    N = int(g[3])
    lt, lx, ly, lz = lat
    return np.frombuffer(payload, ">c16").reshape(lt, lz, ly, lx, 4, N, N)


def _plaquette_plane_file(F: np.ndarray, d1: int, d2: int) -> float:
    """(1/N) Re tr P averaged over sites for file directions d1, d2 (x,y,z,t = 0..3), in file order."""
    axis = {0: 3, 1: 2, 2: 1, 3: 0}  # file direction -> array axis of (t, z, y, x)
    A, B = F[:, :, :, :, d1], F[:, :, :, :, d2]
    P = A @ np.roll(B, -1, axis=axis[d1]) @ np.conj(np.swapaxes(np.roll(A, -1, axis=axis[d2]), -1, -2)) \
        @ np.conj(np.swapaxes(B, -1, -2))
    return float(np.mean(np.trace(P, axis1=-2, axis2=-1).real)) / F.shape[-1]


def _plaquette_plane_lib(U: np.ndarray, mu: int, nu: int, G: lk.Group) -> float:
    """Same in the library layout, with the library's group operations (nd=4)."""
    lat = lk.Lattice(U.shape[-4:])
    Umu, Unu = U[mu], U[nu]
    left = G.mul(Umu, lat.shift(Unu, mu, +1), nd=4)
    right = G.mul(Unu, lat.shift(Umu, nu, +1), nd=4)
    return float(np.mean(G.re_trace_mul_adj(left, right, nd=4))) / G.N


def _plaquette_np(U: np.ndarray, G: lk.Group) -> float:
    planes = lk.Lattice(U.shape[-4:]).planes()
    return float(np.mean([_plaquette_plane_lib(U, m, n, G) for m, n in planes]))


def _average_plaquette(U: np.ndarray, G: lk.Group) -> float:
    """latticekit.observables.average_plaquette when available, else the local implementation."""
    try:
        from latticekit.observables import average_plaquette
    except ImportError:
        return _plaquette_np(U, G)
    return float(average_plaquette(U, G, lk.Lattice(U.shape[-4:])))


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_file_reads_with_all_checks(name: str) -> None:
    U, meta = load(_path(name), backend="numpy")
    lat, g = EXPECTED[name]
    N = int(g[3])
    assert U.shape == (4, N, N) + lat
    assert meta.lattice == lat and meta.group == g and meta.precision == "double"
    assert meta.checks_ok and len(meta.checks) >= 1
    G = lk.SU(N)
    assert_close(G.defect(U, nd=4), 0.0, rtol=0, atol=1e-12)
    # meta plaquette (io's private numpy code) agrees with the library's group operations
    assert_close(meta.plaquette, _average_plaquette(U, G), rtol=0, atol=1e-13)


def test_nersc_header_values_reproduced() -> None:
    U, meta = load(_path("nersc.l8t4b3360"))
    assert meta.header["CHECKSUM"] == "b379560a"
    names = {c.name: c for c in meta.checks}
    assert names["NERSC CHECKSUM"].computed == "b379560a"
    assert_close(_average_plaquette(U, lk.SU(3)), 0.5038664469, rtol=0, atol=1e-10)
    tr = float(np.mean(lk.SU(3).re_trace(U, nd=4))) / 3
    assert_close(tr, 0.005406083858, rtol=0, atol=1e-12)
    assert names["NERSC PLAQUETTE"].ok and names["NERSC LINK_TRACE"].ok


def test_ildg_scidac_checksums_reproduced() -> None:
    for name, (a, b) in {"ildg.l8t4b3360": ("10d0ea1a", "a6a1b3b8"), "unity.lime": ("35b49a1b", "b49a1b35")}.items():
        rec = {r.type: r for r in read_lime(_path(name))}
        vol = int(np.prod(EXPECTED[name][0]))
        sa, sb = scidac_checksum(rec["ildg-binary-data"].data, vol)
        assert (f"{sa:08x}", f"{sb:08x}") == (a, b)
        _, meta = load(_path(name))
        assert {c.name: c.stored for c in meta.checks}["SciDAC checksum suma"] == a


def test_unity_lime_is_the_unit_field_with_xlf_plaquette_one() -> None:
    U, meta = load(_path("unity.lime"))
    assert "plaquette = 1.0" in meta.header["xlf-info"]
    assert [c.ok for c in meta.checks if c.name == "xlf-info plaquette"] == [True]
    assert np.array_equal(U, lk.SU(3).identity((4,), (4, 4, 4, 4)))
    assert _average_plaquette(U, lk.SU(3)) == 1.0


def test_nersc_and_ildg_versions_agree_link_by_link() -> None:
    Un, _ = load(_path("nersc.l8t4b3360"))
    Ui, _ = load(_path("ildg.l8t4b3360"))
    assert Un.shape == Ui.shape
    assert_close(Un, Ui, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["nersc.l8t4b3360", "su3_8x8x8x8.ildg", "su2_4x4x4x4_b.ildg"])
def test_polyakov_loop_matches_file_order_computation(name: str) -> None:
    F = _raw_file_order(name)
    N = F.shape[-1]
    # file order: t-links are file direction 3; product along t (array axis 0)
    P = F[0, :, :, :, 3]
    for t in range(1, F.shape[0]):
        P = P @ F[t, :, :, :, 3]
    poly_file = np.trace(P, axis1=-2, axis2=-1) / N  # (z, y, x)
    # library: direction 0 on lattice axis 0, with the library's group product
    U, _ = load(_path(name))
    G = lk.SU(N)
    Q = U[0][..., 0, :, :, :]
    for t in range(1, U.shape[-4]):
        Q = G.mul(Q, U[0][..., t, :, :, :], nd=3)
    poly_lib = G.trace(Q, nd=3) / N  # (x, y, z)
    assert_close(np.mean(poly_lib), np.mean(poly_file), rtol=0, atol=1e-13)
    assert_close(poly_lib, np.transpose(poly_file, (2, 1, 0)), rtol=1e-7, atol=1e-13)
    # and the wrong direction would not match (the test can fail)
    assert abs(np.mean(poly_lib) - np.mean(np.trace(F[0, :, :, :, 0], axis1=-2, axis2=-1) / N)) > 1e-6


def test_plaquette_planes_map_file_directions_to_library_directions() -> None:
    F = _raw_file_order("su3_8x8x8x8.ildg")
    U, _ = load(_path("su3_8x8x8x8.ildg"))
    to_file = (3, 0, 1, 2)  # library direction -> file direction
    vals = []
    for mu, nu in lk.Lattice(U.shape[-4:]).planes():
        lib = _plaquette_plane_lib(U, mu, nu, lk.SU(3))
        assert_close(lib, _plaquette_plane_file(F, to_file[mu], to_file[nu]), rtol=0, atol=1e-13)
        vals.append(lib)
    assert max(vals) - min(vals) > 1e-4  # planes differ, so a permutation would be detected


@pytest.mark.parametrize("name", ["su2_4x4x4x4_b.ildg", "su3_8x8x8x8.ildg"])
def test_binary_only_files_inferred_or_stated(name: str) -> None:
    lat, g = EXPECTED[name]
    U0, meta0 = load(_path(name))
    assert meta0.inferred is not None and "only consistent reading" in meta0.inferred
    U1, meta1 = load(_path(name), lattice=lat, group=g)
    U2, _ = load(_path(name), group=g)
    U3, _ = load(_path(name), lattice=lk.Lattice(lat))
    for V in (U1, U2, U3):
        assert np.array_equal(V, U0)
    assert "caller stated lattice, group" in meta1.inferred
    wrong = "SU3" if g == "SU(2)" else "SU2"
    with pytest.raises(IOFormatError, match="consistent readings"):
        load(_path(name), group=wrong)
    with pytest.raises(IOFormatError, match="consistent readings"):
        load(_path(name), lattice=(2, 4, 4, 4))


def test_wrong_lattice_or_group_stated_for_a_formatted_file() -> None:
    with pytest.raises(IOFormatError, match="lattice"):
        load(_path("nersc.l8t4b3360"), lattice=(8, 8, 8, 4))  # (Lt, Lx, Ly, Lz) is (4, 8, 8, 8)
    with pytest.raises(IOFormatError, match="group"):
        load(_path("ildg.l8t4b3360"), group="SU2")


def test_info_command_on_real_files() -> None:
    out = info_command(_path("nersc.l8t4b3360"))
    assert "format:     nersc" in out and "SU(3)" in out and "NERSC CHECKSUM: ok" in out
    assert "plaquette:  0.503866446950 (header 0.5038664469)" in out
    out = info_command(_path("unity.lime"))
    assert "SciDAC checksum suma: ok" in out and "plaquette:  1.000000000000 (header 1.000000000000)" in out
    out = info_command(_path("su2_4x4x4x4_hot.ildg"))
    assert "inferred:" in out and "SU(2)" in out


CHECKSUMMED = ["nersc.l8t4b3360", "ildg.l8t4b3360", "unity.lime"]


@pytest.mark.parametrize("name", ALL_FILES)
def test_checks_ran_and_absent_are_reported(name: str) -> None:
    _, meta = load(_path(name))
    if name in CHECKSUMMED:
        assert meta.checksummed and not any("checksum" in a.lower() for a in meta.absent)
        _, strict = load(_path(name), verify="require")  # every real file with a checksum passes the strict mode
        assert strict.checks_ok and info_command(_path(name), verify="require").ok
    else:  # binary-only files: read (layout inferred), with the missing checksum named
        assert not meta.checksummed
        assert [a.split(":")[0] for a in meta.absent] == ["ildg-format", "SciDAC checksum", "xlf-info plaquette"]
        with pytest.raises(IOFormatError, match="no scidac-checksum record"):
            load(_path(name), verify="require")
        out = info_command(_path(name))
        assert out.ok and "absent:     SciDAC checksum" in out and "no checksum covers the payload" in out.verdict
