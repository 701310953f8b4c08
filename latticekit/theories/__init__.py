"""Lattice field theories, one module each, looked up by ``action.kind``.

A theory (:class:`Theory`, :mod:`.base`) bundles what every job needs: its ``[action]`` parameters and
their validation, the action object, the initial field, observables (functions of a batch of fields,
written against the Array API so they serve NumPy HMC runs and torch flow-MCMC chains alike), derived
observables, exact values, the reference samplers it supports and the flow-model families that can
sample it. The registry (:mod:`.registry`) maps ``action.kind`` to the class.

================  =====================================  ==================  =====================
``action.kind``   theory                                 samplers            flow families
================  =====================================  ==================  =====================
``wilson``        pure-gauge Wilson, U(1)/SU(N), Nd >= 2  hmc, heatbath       plaquette, checkerboard
``wilson_nf2``    Wilson gauge + Nf = 2 Wilson fermions  hmc (pseudofermion)  -
``phi4``          phi^4, hopping form, any Nd            hmc                 affine, spline
================  =====================================  ==================  =====================

Examples
--------
>>> from latticekit.theories import make_theory
>>> th = make_theory("phi4", (8, 8), {"kappa": 0.2, "lam": 0.0})
>>> th.samplers.keys(), th.flow_families
(dict_keys(['hmc']), ('affine', 'spline', 'superres', 'superres_uv', 'cnf'))
>>> round(th.exact()["susceptibility"], 4)
2.5
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Derived, Measurement, NoOptions, Theory
from .registry import THEORIES, make_theory, parse_params, theory_class, theory_kinds
from .samplers import HeatbathSettings, HMCSettings, Nf2HMCSettings

# theory classes and their parameter classes load on first use (the registry imports one module each)
_LAZY = {
    "WilsonTheory": "wilson", "WilsonParams": "wilson", "WilsonMeasure": "wilson",
    "WilsonNf2Theory": "wilson_nf2", "WilsonNf2Params": "wilson_nf2",
    "Phi4Theory": "phi4", "Phi4Params": "phi4",
}

__all__ = [
    "Derived",
    "HMCSettings",
    "HeatbathSettings",
    "Measurement",
    "Nf2HMCSettings",
    "NoOptions",
    "THEORIES",
    "Theory",
    "make_theory",
    "parse_params",
    "theory_class",
    "theory_kinds",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
