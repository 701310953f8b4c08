"""Host-side utilities shared by the library and the application tier (no lattice fields here).

* :func:`atomic_write`, :func:`atomic_path`, :func:`remove_stale_temporaries` (:mod:`.files`): the one
  way latticekit writes a file: a temporary file in the target folder, flushed and fsynced, renamed over
  the target, with the permissions a plain ``open(path, "w")`` would give (the user's umask).
* :class:`Progress` (:mod:`.progress`): the one progress display (tqdm on stderr, or a line every
  ``log_every`` steps when tqdm is missing, or nothing).
* :func:`parse`, :func:`setting`, :class:`ConfigError` (:mod:`.schema`): the one validator of typed
  settings (dataclasses with rules in their field metadata), used by the theories' parameters and by
  every section of the jobs' configuration.

Examples
--------
>>> import os, tempfile
>>> from latticekit.utils import atomic_write
>>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
>>> atomic_write(p, b"hello")
>>> open(p, "rb").read()
b'hello'
"""

from __future__ import annotations

from .files import atomic_path, atomic_write, file_mode, file_sha256, remove_stale_temporaries
from .progress import Progress
from .schema import ConfigError, as_dict, parse, setting

__all__ = ["ConfigError", "Progress", "as_dict", "atomic_path", "atomic_write", "file_mode", "file_sha256", "parse",
           "remove_stale_temporaries", "setting"]
