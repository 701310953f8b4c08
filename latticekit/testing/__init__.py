"""Public test toolkit for latticekit and for users writing their own layers (host side).

* :func:`assert_close` / :func:`default_tolerances` — backend-, dtype- and device-aware comparison
  with dtype-scaled default tolerances and an informative message;
* :mod:`latticekit.testing.strategies` — hypothesis strategies (lattices, group elements, gauge
  fields, gauge transformations, scalar fields); imported on first use (needs ``hypothesis``);
* :func:`equivariance_error`, :func:`gauge_equivariance_error`, :func:`gauge_invariance_error` and
  their ``assert_*`` forms;
* :func:`autograd_logdet`, :func:`assert_logdet_matches` — log-det checks of torch flow layers
  (torch is imported inside these functions only);
* :func:`randomize_parameters` — seeded perturbation of a torch module's parameters, so that a
  layer under test is not the identity.

Examples
--------
>>> import numpy as np
>>> from latticekit.testing import assert_close
>>> assert_close(np.float32(1.0) + np.float32(1e-7), 1.0)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._close import assert_close, default_tolerances
from .equivariance import (
    assert_equivariant,
    assert_gauge_equivariant,
    assert_gauge_invariant,
    equivariance_error,
    gauge_equivariance_error,
    gauge_invariance_error,
    random_gauge_transformation,
)
from .jacobian import assert_logdet_matches, autograd_logdet
from .parameters import randomize_parameters

__all__ = [
    "assert_close",
    "assert_equivariant",
    "assert_gauge_equivariant",
    "assert_gauge_invariant",
    "assert_logdet_matches",
    "autograd_logdet",
    "default_tolerances",
    "equivariance_error",
    "gauge_equivariance_error",
    "gauge_invariance_error",
    "random_gauge_transformation",
    "randomize_parameters",
    "strategies",
]


def __getattr__(name: str) -> Any:
    # hypothesis is a test dependency: load the strategies module on first use only
    if name == "strategies":
        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
