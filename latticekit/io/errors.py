"""The one error type of :mod:`latticekit.io`.

Every corrupt, truncated, inconsistent or unrecognised file raises :class:`IOFormatError`, a
subclass of :class:`ValueError` whose message names the file and the check that failed, on one line
(``latticekit info`` prints it as the whole error report).

Examples
--------
>>> from latticekit.io.errors import IOFormatError
>>> err = IOFormatError("stored 1a2b, computed 3c4d", path="cfg.nersc", check="NERSC CHECKSUM")
>>> str(err)
'cfg.nersc: NERSC CHECKSUM failed: stored 1a2b, computed 3c4d'
>>> isinstance(err, ValueError)
True
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["IOFormatError"]


class IOFormatError(ValueError):
    """A gauge-configuration file failed a check (format, size, checksum, header value, unitarity).

    Parameters
    ----------
    message : str
        What was found (e.g. stored and computed values).
    path : str or os.PathLike, optional
        The file concerned; it leads the message.
    check : str, optional
        The check that failed (e.g. ``"NERSC CHECKSUM"``, ``"LIME record header"``).

    Line breaks in ``message`` (e.g. from the HDF5 library) are folded into spaces.

    Attributes
    ----------
    path : str or None
        The file concerned.
    check : str or None
        The check that failed.

    Examples
    --------
    >>> raise IOFormatError("file ends after 12 of 64 bytes", path="a.lime", check="LIME record header")
    Traceback (most recent call last):
    ...
    latticekit.io.errors.IOFormatError: a.lime: LIME record header failed: file ends after 12 of 64 bytes
    """

    def __init__(self, message: str, path: Any = None, check: str | None = None) -> None:
        self.path = None if path is None else os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
        self.check = check
        message = re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip()
        self.detail = message
        prefix = f"{self.path}: " if self.path is not None else ""
        what = f"{check} failed: " if check else ""
        super().__init__(f"{prefix}{what}{message}")
