"""The theory registry: every kind resolves to its class, parameters are validated by the one schema,
theories load lazily, and the contract holds for every registered theory."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import latticekit as lk
from latticekit.theories import THEORIES, Theory, make_theory, theory_class, theory_kinds
from latticekit.utils import ConfigError

# a lattice every registered theory accepts with its default parameters
SHAPE = (4, 4)


@pytest.mark.parametrize("kind", theory_kinds())
def test_every_entry_resolves_and_keeps_the_contract(kind: str) -> None:
    cls = theory_class(kind)
    assert issubclass(cls, Theory) and cls.kind == kind
    assert dataclasses.is_dataclass(cls.Params) and dataclasses.is_dataclass(cls.Measure)
    assert cls.samplers and cls.reference_sampler in cls.samplers
    th = cls(SHAPE)                                       # the defaults are valid
    assert th.params == cls.Params() and th.lattice.shape == SHAPE
    names = th.observable_names()
    assert len(names) == len(set(names)) and names
    for name, d in th.derived().items():
        assert name not in names and set(d.inputs) <= set(names)
    assert set(th.summary_observables()) <= set(names) | set(th.derived())
    assert set(th.exact()) <= set(names) | set(th.derived())
    x = th.initial_field(2, lk.backends.rng(0))
    m = th.measure(x)
    assert list(m) == names and all(np.asarray(v).shape == (2,) for v in m.values())
    # the per-name functions agree with the grouped measurement
    for name, f in th.observables().items():
        np.testing.assert_array_equal(np.asarray(f(x)), np.asarray(m[name]))
    # every sampler it offers builds and steps
    for algo, settings in cls.samplers.items():
        smp = th.sampler(algo, settings(), rng=lk.backends.rng(1))
        y, _info = smp.step(x)
        assert y.shape == x.shape
    assert repr(th).startswith(cls.__name__)


def test_unknown_kind_and_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="action.kind: expected one of"):
        theory_class("ising")
    with pytest.raises(ConfigError, match=r"unknown key action\.lam; action.kind = 'wilson' takes group, beta"):
        make_theory("wilson", SHAPE, {"lam": 0.5})
    with pytest.raises(ConfigError, match=r"unknown key action\.group"):
        make_theory("phi4", SHAPE, {"group": "U1"})
    with pytest.raises(ConfigError, match=r"action\.beta: expected <= 10000"):
        make_theory("wilson", SHAPE, {"beta": 1e300})
    with pytest.raises(ConfigError, match=r"measure\.wilson_loops"):
        make_theory("wilson", SHAPE, {}, {"wilson_loops": [[5, 1]]})
    with pytest.raises(TypeError, match="Params"):
        theory_class("wilson")(SHAPE, theory_class("phi4").Params())


def test_theories_load_on_first_use() -> None:
    # adding a theory is a module and a registry line; looking one up imports only that module
    code = ("import sys, latticekit.theories as t; "
            "assert not [m for m in sys.modules if m.startswith('latticekit.theories.') and m.split('.')[-1] in "
            f"{sorted({v.split(':')[0] for v in THEORIES.values()})!r}], sorted(sys.modules); "
            "t.theory_class('phi4'); assert 'latticekit.theories.phi4' in sys.modules; "
            "assert 'latticekit.theories.wilson_nf2' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
