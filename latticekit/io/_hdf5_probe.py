"""Read the metadata of an HDF5 file without checksummed metadata in a subprocess, with a time limit.

Ensembles of format version 1 keep their string attributes and per-configuration info as
variable-length strings in HDF5's global heap, which carries no checksum. One flipped bit in the size
of a heap collection sends the HDF5 library into an endless loop inside C (100% CPU, Ctrl-C ignored),
and other flips make it allocate gigabytes before it fails. Before such a file is opened in this
process, a child process opens it, reads every attribute, every dataset except the configurations
(whose chunk index it walks, checking that every chunk lies inside the file) and exits. A child that
does not finish within :data:`PROBE_TIMEOUT_S` seconds is killed and the file refused; the reads of
this process then touch only structures the child has read.

Files of format version 2 need no probe: all their metadata is checksummed and verified by HDF5
before it is interpreted (see :mod:`latticekit.io._hdf5_format`).

Cost: one start of Python with h5py imported per open of a version-1 file (0.7-1.1 s measured on a
busy 2-core machine, most of it the import); a file that passed is not probed again in the same
process while its size, modification time and inode are unchanged (an append changes them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .errors import IOFormatError

#: seconds the metadata probe of a version-1 file may take before the file is refused (the environment
#: variable ``LATTICEKIT_HDF5_PROBE_TIMEOUT`` overrides it, e.g. on a slow network file system)
PROBE_TIMEOUT_S = 60.0

#: files that passed, keyed by (real path, inode, size, mtime in ns); a few dozen at most
_PASSED: dict[tuple[str, int, int, int], None] = {}
_MAX_REMEMBERED = 64

_CHILD = r"""
import json, os, sys
path = sys.argv[1]
try:
    import h5py
    size = os.path.getsize(path)
    with h5py.File(path, "r", locking=False) as f:
        objects = []
        f.visititems(lambda name, obj: objects.append((name, obj)) and None)
        for obj in [f] + [o for _, o in objects]:
            for key in obj.attrs:
                obj.attrs[key]
        for name, obj in objects:
            if not isinstance(obj, h5py.Dataset):
                continue
            if name == "configs":
                if obj.chunks is not None and obj.id.get_num_chunks() > 0 and hasattr(obj.id, "chunk_iter"):
                    def _chunk(info, size=size):
                        if info.byte_offset is None or info.byte_offset + info.size > size:
                            raise ValueError(f"a chunk of configs at byte {info.byte_offset} ({info.size} bytes) "
                                             f"lies outside the file of {size} bytes")
                    try:
                        obj.id.chunk_iter(_chunk)  # walks the whole chunk index (h5py >= 3.8, HDF5 >= 1.12.3)
                    except NotImplementedError:
                        pass
            elif obj.size * obj.dtype.itemsize <= 1 << 28:
                obj[()]
            else:
                raise ValueError(f"dataset {name} of shape {obj.shape} is larger than a latticekit ensemble holds")
    print(json.dumps({"ok": True}))
except BaseException as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    sys.exit(3)
"""


def probe_metadata(path: str, timeout: float | None = None) -> None:
    """Read all metadata of ``path`` in a child process; raise IOFormatError if it fails, crashes or hangs.

    Parameters
    ----------
    path : str
        An HDF5 file.
    timeout : float, optional
        Seconds before the child is killed (default: ``LATTICEKIT_HDF5_PROBE_TIMEOUT`` if set, else
        :data:`PROBE_TIMEOUT_S`).

    Raises
    ------
    IOFormatError
        The HDF5 library reports an error, crashes, or does not finish in time.
    """
    if timeout is None:
        env_limit = os.environ.get("LATTICEKIT_HDF5_PROBE_TIMEOUT", "").strip()
        try:
            timeout = float(env_limit) if env_limit else PROBE_TIMEOUT_S
        except ValueError:
            raise ValueError(f"LATTICEKIT_HDF5_PROBE_TIMEOUT={env_limit!r}: expected a number of seconds") from None
    limit = float(timeout)
    if not sys.executable:  # pragma: no cover - embedded interpreters without a Python executable
        raise IOFormatError("this file predates metadata checksums and is read through a Python subprocess, but "
                            "sys.executable is empty", path, "HDF5 metadata")
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _PASSED:
        return
    env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        r = subprocess.run([sys.executable, "-c", _CHILD, path], capture_output=True, text=True, timeout=limit,
                           env=env)
    except subprocess.TimeoutExpired:
        raise IOFormatError(f"the HDF5 library did not finish reading the metadata within {limit:g} s (a damaged "
                            f"structure sends it into an endless loop; this file predates metadata checksums)",
                            path, "HDF5 metadata") from None
    lines = r.stdout.strip().splitlines()
    try:
        out = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        out = {}
    if r.returncode == 0 and out.get("ok"):
        if len(_PASSED) >= _MAX_REMEMBERED:
            _PASSED.pop(next(iter(_PASSED)))
        _PASSED[key] = None
        return
    if "error" in out:
        raise IOFormatError(f"the HDF5 library cannot read the metadata ({out['error']})", path, "HDF5 metadata")
    how = f"signal {-r.returncode}" if r.returncode < 0 else f"exit status {r.returncode}"
    tail = r.stderr.strip().splitlines()[-1:] or [""]
    raise IOFormatError(f"the HDF5 library crashed reading the metadata ({how}) {tail[0][:200]}", path,
                        "HDF5 metadata")
