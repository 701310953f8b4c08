"""Atomic file writes: the only implementation in latticekit.

A file is written to a temporary name in the folder of the target (``.<name>.<random>.tmp``), flushed,
fsynced, given the mode ``0o666 & ~umask`` that ``open(path, "w")`` would have given it, and renamed over
the target with :func:`os.replace`; the folder is then fsynced so that the rename survives a crash. A
writer killed at any moment leaves either the old file or the new one, never a torn one; at worst a
stray temporary file remains, which :func:`remove_stale_temporaries` removes when a job restarts.

:func:`tempfile.mkstemp` creates files with mode 0600 whatever the umask; ensembles shared in a group
need group read, so the mode is set explicitly (the umask is read from ``/proc/self/status`` where
available, without the race of ``os.umask`` round trips).

:func:`file_sha256` is the content identity the resumable jobs keep beside their progress (a checkpoint, a
configuration file), read in blocks of 1 MiB.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = ["atomic_path", "atomic_write", "file_mode", "file_sha256", "remove_stale_temporaries"]

_TMP_SUFFIX = ".tmp"


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)  # no /proc: read it by setting and restoring (not thread-safe, rare)
    os.umask(old)
    return old


def file_mode() -> int:
    """The permission bits of a new file: ``0o666 & ~umask`` (what ``open(path, "w")`` gives).

    Examples
    --------
    >>> 0 <= file_mode() <= 0o666
    True
    """
    return 0o666 & ~_umask()


def _temporary(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=_TMP_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    return tmp


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _commit(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def _check_target(path: str) -> None:
    """Refuse, before anything is written, a path that names no file: empty or blank (``dirname(abspath(""))`` is
    the parent of the current folder, and the final rename to ``""`` fails), ending in a separator, or a folder."""
    if isinstance(path, str) and not path.strip():
        raise ValueError(f"path={path!r}: expected a file path to write (an empty or blank path names no file)")
    if isinstance(path, str) and path.endswith(("/", os.sep) + ((os.altsep,) if os.altsep else ())):
        raise IsADirectoryError(f"{path!r} ends with a path separator, which names a folder; expected a file path "
                                f"to write")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a folder; expected a file path to write")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path!r}: the folder {folder!r} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Context manager yielding a temporary path in the target's folder; on success it is made durable
    and renamed over ``path``, on an exception it is removed and ``path`` is untouched.

    For writers that need a file name (h5py, ``torch.save`` by name, ``savefig``).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "x.bin")
    >>> with atomic_path(p) as tmp:
    ...     _ = open(tmp, "wb").write(b"abc")
    >>> open(p, "rb").read(), os.listdir(os.path.dirname(p))
    (b'abc', ['x.bin'])
    """
    path = os.fspath(path)
    _check_target(path)
    tmp = _temporary(path)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None] | bytes | Sequence[bytes]) -> None:
    """Write a file atomically (module docstring).

    Parameters
    ----------
    path : path-like
        The target; its folder must exist. An empty or blank path is a ValueError, a folder (or a path
        ending in a separator) an IsADirectoryError, both before anything is written.
    write : bytes, sequence of bytes, or callable
        The content, as bytes, as byte chunks, or as a callable receiving the open binary file.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "chunks.bin")
    >>> atomic_write(p, [b"ab", b"cd"]); open(p, "rb").read()
    b'abcd'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            if callable(write):
                write(fh)
            elif isinstance(write, (bytes, bytearray, memoryview)):
                fh.write(write)
            else:
                for chunk in write:
                    fh.write(chunk)


def remove_stale_temporaries(folder: str | os.PathLike[str], names: Sequence[str]) -> list[str]:
    """Remove temporary files left by killed atomic writes of ``names`` in ``folder``.

    Only files named like the temporaries of :func:`atomic_path` for one of ``names``
    (``.<name>.<random>.tmp``) are touched. Call it when a job (re)starts in its own folder, when no other
    writer of those files runs. Returns the removed paths.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, ".state.npz.abc123.tmp"), "w").close()
    >>> [os.path.basename(p) for p in remove_stale_temporaries(d, ["state.npz"])]
    ['.state.npz.abc123.tmp']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    patterns = [re.compile(r"^\." + re.escape(n) + r"\.[A-Za-z0-9_]+" + re.escape(_TMP_SUFFIX) + "$") for n in names]
    for entry in folder.iterdir():
        if entry.is_file() and any(p.match(entry.name) for p in patterns):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(str(entry))
    return sorted(removed)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as a hex string.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a"); open(p, "wb").write(b"abc")
    3
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
