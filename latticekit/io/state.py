"""Run state files: named host arrays plus JSON metadata in one ``.npz``, written atomically.

Used by long jobs (``latticekit run``) to checkpoint and resume: a killed job leaves either the
previous complete state or the new complete state, never a partial file.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> p = os.path.join(tempfile.mkdtemp(), "state.npz")
>>> save_state(p, {"x": np.arange(3.0)}, {"step": 7})
>>> arrays, meta = load_state(p)
>>> arrays["x"].tolist(), meta["step"]
([0.0, 1.0, 2.0], 7)
"""

from __future__ import annotations

import io as _io
import json
import os
import zipfile
from typing import Any, Mapping

import numpy as np

from latticekit.backends import to_numpy

from ._common import atomic_write
from .errors import IOFormatError

__all__ = ["load_state", "save_state"]

_META_KEY = "__meta_json__"


def save_state(path: Any, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` (any backend; copied to the host) and JSON-serialisable ``meta`` atomically."""
    host = {}
    for k, v in arrays.items():
        if k == _META_KEY:
            raise ValueError(f"arrays: the name {_META_KEY!r} is reserved")
        host[k] = to_numpy(v)
    host[_META_KEY] = np.asarray(json.dumps(dict(meta)))
    buf = _io.BytesIO()
    np.savez(buf, **host)
    atomic_write(path, buf.getvalue())


def load_state(path: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_state`; returns ``(arrays, meta)``."""
    p = os.fspath(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise IOFormatError(f"not a readable latticekit state file: {exc}", path=p, check="state file") from None
    if _META_KEY not in arrays:
        raise IOFormatError("no metadata record", path=p, check="state file")
    meta = json.loads(str(arrays.pop(_META_KEY)))
    return arrays, meta
