"""The application tier: the jobs of the ``latticekit`` command, their configuration and their files.

Physics lives in the packages beside this one (``theories``, ``actions``, ``mc``, ``flows``, ...), which
never import it. Here:

* :mod:`.config` (with :mod:`.sections`): the one configuration schema of every job
  (:class:`RunConfig`, :class:`FlowConfig`);
* :mod:`.run`, :mod:`.measure`: ``latticekit run`` / ``measure`` (:mod:`.run_state`: state and
  ensemble bookkeeping; :mod:`.analysis`: Gamma-method tables; :mod:`.plots`: figures);
* :mod:`.compare`: ``latticekit compare``, a flow ensemble against an HMC ensemble, histogram by histogram
  (:mod:`.ensemble_series`: the stored per-configuration measurements of an ensemble, as chains);
* :mod:`.flows`: ``latticekit train`` / ``sample`` (model families, training, job-level resume,
  sampling, summaries, reference runs, the data-parallel launch);
* :mod:`.io_commands`: ``latticekit info`` / ``convert``;
* :mod:`.cli`: the command, every sub-command registered in one place (one line and an exit status for
  user-facing errors, :func:`~latticekit.app.errors.user_error`);
* :mod:`.memory`: the memory a job needs, checked before it allocates; :mod:`.killpoints`: the named
  points where the resumption tests kill a job.

Names load on first use, so ``import latticekit.app`` imports neither torch nor h5py.

Examples
--------
>>> import latticekit.app as app
>>> app.RunConfig.from_dict({"lattice": {"shape": [4, 4]}}).theory.describe()
'U(1) Wilson (beta=2.0)'
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module (relative to this package)
_LAZY = {
    "ConfigError": "config", "FlowConfig": "config", "RunConfig": "config", "load_config": "config",
    "read_toml": "config",
    "run_job": "run", "measure_job": "measure", "analyse": "analysis", "format_table": "analysis",
    "compare_job": "compare",
    "main": "cli", "train_command": "cli", "sample_command": "cli",
    "info_command": "io_commands", "convert_command": "io_commands",
    "build_flow": "flows.models", "train_job": "flows.train", "sample_job": "flows.sample",
    "load_trained": "flows.sample", "flow_summary": "flows.summary", "format_flow_summary": "flows.summary",
    "reference_run": "flows.reference", "train_distributed": "flows.distributed",
    "distributed_main": "flows.distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
