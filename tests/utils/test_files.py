"""The one atomic write: contents, permissions under the user's umask, failure leaves the old file."""

from __future__ import annotations

import os
import stat

import pytest

from latticekit.utils import atomic_path, atomic_write, remove_stale_temporaries


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_mode_follows_umask(tmp_path, umask):
    # tempfile.mkstemp alone gives 0600 whatever the umask; shared ensembles need group/other read
    old = os.umask(umask)
    try:
        p = tmp_path / "f.bin"
        atomic_write(p, b"x")
        ref = tmp_path / "ref.bin"
        with open(ref, "wb") as fh:
            fh.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(ref.stat().st_mode) == 0o666 & ~umask


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "data.json"
    atomic_write(p, b"old")

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["data.json"]


def test_atomic_path_replaces_and_chunks(tmp_path):
    p = tmp_path / "c.bin"
    atomic_write(p, [b"a", b"b", b"c"])
    assert p.read_bytes() == b"abc"
    with atomic_path(p) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as fh:
            fh.write(b"new")
        assert p.read_bytes() == b"abc"        # the target changes only at the rename
    assert p.read_bytes() == b"new"


def test_refuses_a_folder_and_a_missing_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        atomic_write(tmp_path, b"x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "nope" / "f", b"x")


def test_remove_stale_temporaries_only_touches_own_names(tmp_path):
    stale = tmp_path / ".state.npz.k2j3_x.tmp"
    stale.write_bytes(b"")
    other = tmp_path / ".other.npz.abc.tmp"
    other.write_bytes(b"")
    keep = tmp_path / "state.npz"
    keep.write_bytes(b"")
    removed = remove_stale_temporaries(tmp_path, ["state.npz", "results.json"])
    assert removed == [str(stale)]
    assert other.exists() and keep.exists() and not stale.exists()
