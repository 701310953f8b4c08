"""The flow jobs: ``latticekit train`` and ``latticekit sample`` (torch).

* :mod:`.models`: flow-model families (``model.coupling``) and :func:`build_flow`, a lookup;
  :mod:`.scalar_models` (``affine``, ``spline``), :mod:`.gauge_models` (``plaquette``, ``checkerboard``);
* :mod:`.train`: the train job and its loop; :mod:`.resume`: the job-level checkpoint/resume
  bookkeeping (run-folder check, metrics truncation, the trainer that stores the job configuration);
* :mod:`.sample`: the sample job; :mod:`.summary`: flow vs reference vs exact;
  :mod:`.reference`: a reference run of the same theory (the run job);
* :mod:`.distributed`: the data-parallel launch (spawned processes or ``torchrun``).

Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FlowFamily": "models", "build_flow": "models", "family": "models", "family_names": "models",
    "train_job": "train", "run_training": "train", "sample_job": "sample", "load_trained": "sample",
    "flow_summary": "summary", "format_flow_summary": "summary", "load_reference": "summary",
    "reference_run": "reference", "train_distributed": "distributed", "distributed_main": "distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
