"""The files of a job folder, and how the jobs write JSON (atomically, :func:`latticekit.utils.atomic_write`).

``latticekit run`` / ``measure``: ``state.npz`` (resumable state), ``ensemble.h5`` (gauge
configurations), ``results.json``, ``remeasured.json``, plots. ``latticekit train`` / ``sample``:
``config.json``, ``checkpoint.pt``, ``metrics.jsonl``, ``train.json``, ``train.png``, the chain
(``flow_ensemble.h5`` or ``flow_samples.npz``), ``sample.json``, ``sample.png``. ``latticekit scale``:
``files/<k>.json`` (one record per configuration file), ``scale.json``.

Examples
--------
>>> import json, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), RESULTS)
>>> write_json(p, {"a": 1})
>>> read_json(p, "a run folder")
{'a': 1}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from latticekit.io.errors import IOFormatError
from latticekit.utils import atomic_write
from latticekit.utils.schema import ConfigError

__all__ = ["CHECKPOINT", "CONFIG", "ENSEMBLE", "METRICS", "REMEASURED", "RESULTS", "RUN_PLOTS", "SAMPLE_PLOT",
           "SAMPLE_SUMMARY", "SCALE_FILES", "SCALE_SUMMARY", "STATE", "TRAIN_PLOT", "TRAIN_SUMMARY", "out_folder",
           "read_json", "refuse_other_job", "write_json"]

STATE = "state.npz"
RESULTS = "results.json"
ENSEMBLE = "ensemble.h5"
REMEASURED = "remeasured.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
TRAIN_SUMMARY = "train.json"
TRAIN_PLOT = "train.png"
SAMPLE_SUMMARY = "sample.json"
SAMPLE_PLOT = "sample.png"
SCALE_SUMMARY = "scale.json"
#: the plots of ``latticekit run`` (:func:`latticekit.app.plots.run_plots`), as glob patterns
RUN_PLOTS = ("history_*.png", "autocorrelation_*.png", "histogram_Q.png")
SCALE_FILES = "files"


def out_folder(out: str | os.PathLike[str]) -> Path:
    """The output folder ``out`` of a job, created; :class:`ConfigError` (naming ``out``) if it, or a
    folder above it, is a file.

    >>> import tempfile
    >>> f = os.path.join(tempfile.mkdtemp(), "results.json"); open(f, "w").close()
    >>> try:
    ...     out_folder(f)
    ... except ConfigError as exc:
    ...     print(str(exc).endswith("results.json' is a file; expected the job's output folder (--out)"))
    True
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"out: {str(p)!r} is a file; expected the job's output folder (--out)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"out: {str(p)!r} cannot be created: a folder above it is a file") from None
    return p


#: the files that mark a folder as the output of ``latticekit run`` (resp. ``latticekit train``)
_MARKERS = {"run": (STATE, RESULTS, ENSEMBLE), "train": (CHECKPOINT, METRICS), "scale": (SCALE_SUMMARY, SCALE_FILES)}


def refuse_other_job(outdir: Path, job: str) -> None:
    """:class:`ConfigError` (naming ``outdir`` and the files found) if the output folder of a ``job`` ("run",
    "train" or "scale") holds the files of another job, with or without ``--fresh``: the jobs keep their
    progress in different files, so writing one into another's folder would mix two runs.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / RESULTS).write_text("{}")
    >>> try:
    ...     refuse_other_job(d, "train")
    ... except ConfigError as exc:
    ...     print("holds the output of `latticekit run` (results.json)" in str(exc))
    True
    """
    for other, markers in _MARKERS.items():
        found = [f for f in markers if other != job and (outdir / f).exists()]
        if found:
            fresh = ", also with --fresh" if job in ("run", "train") else ""   # scale has no --fresh
            raise ConfigError(f"out: {str(outdir)!r} holds the output of `latticekit {other}` ({', '.join(found)}); "
                              f"the {job} job writes its own files there{fresh}; give `latticekit {job}` "
                              "another output folder (--out)")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON content of ``path``; a missing file raises :class:`FileNotFoundError`, a folder
    :class:`IsADirectoryError`, a malformed one :class:`latticekit.io.IOFormatError`, each naming it and
    ``what`` it should be."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist ({what})")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder; expected a file ({what})")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IOFormatError(f"not valid JSON ({what}): {exc}", p) from None
