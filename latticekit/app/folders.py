"""The files of a job folder, and how the jobs write JSON (atomically, :func:`latticekit.utils.atomic_write`).

``latticekit run`` / ``measure``: ``state.npz`` (resumable state), ``ensemble.h5`` (gauge
configurations), ``results.json``, ``remeasured.json``, plots. ``latticekit train`` / ``sample``:
``config.json``, ``checkpoint.pt``, ``metrics.jsonl``, ``train.json``, ``train.png``, the chain
(``flow_ensemble.h5`` or ``flow_samples.npz``), ``sample.json``, ``sample.png``.

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

from latticekit.utils import atomic_write

__all__ = ["CHECKPOINT", "CONFIG", "ENSEMBLE", "METRICS", "REMEASURED", "RESULTS", "SAMPLE_PLOT", "SAMPLE_SUMMARY",
           "STATE", "TRAIN_PLOT", "TRAIN_SUMMARY", "read_json", "write_json"]

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


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON content of ``path``; a missing or malformed file raises naming it and ``what`` it should be."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist ({what})")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p} is not valid JSON ({what}): {exc}") from None
