"""The theory contract: everything a job needs to know about one lattice field theory.

A theory is a subclass of :class:`Theory` in its own module of :mod:`latticekit.theories`, listed in
the registry (:mod:`latticekit.theories.registry`) under its ``action.kind``. It declares

* ``Params``: a dataclass of its ``[action]`` keys, with their rules in the field metadata
  (:func:`latticekit.utils.setting`), and :meth:`Theory.check` for rules that involve several keys or
  the lattice;
* ``Measure``: a dataclass of its own ``[measure]`` keys (gauge theories: ``wilson_loops``);
* ``samplers``: the reference samplers it supports, ``algorithm -> settings dataclass``
  (:mod:`latticekit.theories.samplers`), and ``reference_sampler``, the one it prefers;
* ``flow_families``: the names of the flow-model families (``model.coupling``) that can sample it;

and implements the action, the initial field, the observables, the derived observables and the exact
values. Jobs never branch on the kind of theory; they ask the theory.

Observables are functions of a *batch* of fields (leading batch axis, one value per field) written
against the Array API standard, so the same functions measure NumPy/CuPy/torch HMC chains and torch
flow-MCMC chains. Several observables that share work (the time slices of a correlator) are computed by
one *measurement*; :meth:`Theory.measure` evaluates each needed measurement once.

Derived observables (:class:`Derived`) are functions of ensemble means, analysed with the Gamma method
(Wolff, hep-lat/0306017): the topological susceptibility ``chi_t = <Q^2>/V``, the phi^4
susceptibility ``V <M^2>``.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from latticekit.lattice import Lattice
from latticekit.utils.schema import ConfigError, as_dict

__all__ = ["Derived", "Measurement", "NoOptions", "Theory"]


@dataclass(frozen=True)
class Derived:
    """An observable that is a function of ensemble means, ``F(<a_1>, ..., <a_k>)``.

    Attributes
    ----------
    inputs : tuple of str
        The primary observables it needs.
    series : callable
        ``series(values) -> [a_1, ..., a_k]``: the per-configuration quantities whose means enter
        ``func``, computed elementwise from ``values`` (primary name -> array, any shape).
    func : callable
        ``func(a)`` of the means ``a`` (first axis: ``a_1 .. a_k``), elementwise over trailing axes.
    doc : str
        What it is.
    per_config : callable, optional
        ``per_config(values) -> array``: a per-configuration quantity whose mean *is* the observable
        (when ``func`` is linear in one mean, e.g. ``Q^2/V``); histograms show it. None otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> chi = Derived(("m2",), lambda v: [v["m2"]], lambda a: 16 * a[0], "V <M^2>")
    >>> float(chi.func(np.mean(np.stack(chi.series({"m2": np.array([0.1, 0.3])})), axis=-1)))
    3.2
    """

    inputs: tuple[str, ...]
    series: Callable[[Mapping[str, Any]], list[Any]]
    func: Callable[[Any], Any]
    doc: str = ""
    per_config: Callable[[Mapping[str, Any]], Any] | None = None


@dataclass(frozen=True)
class Measurement:
    """One computation that yields one or more primary observables: ``fn(batch) -> {name: (B,)}``."""

    names: tuple[str, ...]
    fn: Callable[[Any], Mapping[str, Any]]


@dataclass
class NoOptions:
    """A theory without ``[measure]`` keys of its own."""


class _OnePerBatch:
    """``fn(batch)``, remembered for the last batch: called again with the same array object, unmodified since
    (torch's in-place version counter where there is one), it returns the remembered values.

    The batch is held by a weak reference (no field batch is kept alive by the cache); an array type without weak
    references is evaluated every time.
    """

    def __init__(self, fn: Callable[[Any], Mapping[str, Any]]) -> None:
        self.fn = fn
        self._ref: Any = None
        self._version: Any = None
        self._vals: Mapping[str, Any] | None = None

    def __call__(self, x: Any) -> Mapping[str, Any]:
        version = getattr(x, "_version", None)
        if self._vals is not None and self._ref is not None and self._ref() is x and version == self._version:
            return self._vals
        vals = self.fn(x)
        try:
            self._ref = weakref.ref(x)
        except TypeError:           # no weak references: nothing remembered
            self._ref, self._vals = None, None
            return vals
        self._version, self._vals = version, vals
        return vals


class Theory:
    """Base class of a theory (see the module docstring).

    Parameters
    ----------
    lattice : Lattice or sequence of int
    params : Params instance, optional
        The ``[action]`` parameters (default: the defaults of ``Params``); checked by :meth:`check`.
    measure : Measure instance, optional
        The theory's ``[measure]`` options (default: none).
    """

    #: the ``action.kind`` of the theory
    kind: ClassVar[str] = ""
    #: dataclass of the ``[action]`` keys (besides ``kind``)
    Params: ClassVar[type] = NoOptions
    #: dataclass of the theory's own ``[measure]`` keys
    Measure: ClassVar[type] = NoOptions
    #: reference samplers: ``sampler.algorithm`` -> settings dataclass (first: the default algorithm)
    samplers: ClassVar[Mapping[str, type]] = {}
    #: the sampler a reference run of this theory uses
    reference_sampler: ClassVar[str] = "hmc"
    #: names of the flow-model families (``model.coupling``) that can sample it (first: the default)
    flow_families: ClassVar[tuple[str, ...]] = ()
    #: the field is a gauge field
    is_gauge: ClassVar[bool] = False
    #: dynamical fermions (no pure-gauge exact results)
    has_fermions: ClassVar[bool] = False
    #: ``[action]`` keys that choose how the theory is simulated, not which theory (solver settings,
    #: preconditioning): two runs that differ only in these sample the same distribution and may be compared
    algorithm_keys: ClassVar[tuple[str, ...]] = ()
    #: ``[action]`` keys that never change the numbers of a run, only whether it completes (a solver's iteration
    #: limit): a run stopped by one resumes after it is changed
    resume_neutral_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lattice: Lattice | Sequence[int], params: Any = None, measure: Any = None) -> None:
        self.lattice = lattice if isinstance(lattice, Lattice) else Lattice(tuple(lattice))
        self.params = params if params is not None else self.Params()
        self.measure_options = measure if measure is not None else self.Measure()
        if not isinstance(self.params, self.Params):
            raise TypeError(f"params={self.params!r}: expected {self.Params.__name__} of {type(self).__name__}")
        if not isinstance(self.measure_options, self.Measure):
            raise TypeError(f"measure={self.measure_options!r}: expected {self.Measure.__name__}")
        self.check(self.params, self.lattice.shape)
        self.check_measure(self.measure_options, self.lattice.shape, self.params)
        self._action: Any = None

    # -- validation (raise ConfigError naming the key) ---------------------------------------------
    @classmethod
    def check(cls, params: Any, shape: Sequence[int]) -> None:
        """Rules that involve several ``[action]`` keys or the lattice (single keys: field metadata)."""

    @classmethod
    def check_measure(cls, options: Any, shape: Sequence[int], params: Any = None) -> None:
        """Rules of the theory's ``[measure]`` keys that involve the lattice or the ``[action]`` parameters
        ``params`` (None: rules that need them are not checked)."""

    @classmethod
    def check_sampler(cls, algorithm: str, settings: Any, shape: Sequence[int]) -> None:
        """Rules of a sampler's settings that involve the lattice."""
        if algorithm not in cls.samplers:
            raise ConfigError(f"sampler.algorithm: expected one of {tuple(cls.samplers)} for action.kind = "
                              f"{cls.kind!r}, got {algorithm!r}")

    # -- physics -----------------------------------------------------------------------------------
    @property
    def action(self) -> Any:
        """The action object (:mod:`latticekit.actions`); built once."""
        if self._action is None:
            self._action = self.make_action()
        return self._action

    def make_action(self) -> Any:  # pragma: no cover - every theory implements it
        """Build the action object."""
        raise NotImplementedError

    def initial_field(self, n: int, rng: Any, *, backend: str | None = None, device: Any = None) -> Any:
        """Start configurations of ``n`` chains, shape ``(n, *field)``."""
        raise NotImplementedError  # pragma: no cover

    def sampler(self, algorithm: str, settings: Any = None, *, rng: Any) -> Any:
        """A reference sampler (:mod:`latticekit.mc`) of this theory."""
        raise NotImplementedError  # pragma: no cover

    def field_bytes(self) -> int:
        """Bytes of one field configuration in double precision, computed without allocating it (jobs
        compare it with the free memory before they start)."""
        raise NotImplementedError  # pragma: no cover

    def describe(self) -> str:
        """One line naming the theory and its couplings."""
        return f"{self.kind} ({', '.join(f'{k}={v}' for k, v in as_dict(self.params).items())})"

    def ensemble_params(self) -> dict[str, Any]:
        """The action parameters recorded in an HDF5 ensemble."""
        return as_dict(self.params)

    # -- observables ---------------------------------------------------------------------------------
    def measurements(self) -> list[Measurement]:
        """The measurements of the theory on this lattice, in the order of their names."""
        raise NotImplementedError  # pragma: no cover

    def observable_names(self) -> list[str]:
        """Every primary observable available (the default set of a run); a name given by two measurements is an
        error of the theory (a run would record its values twice)."""
        names = [n for m in self.measurements() for n in m.names]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{type(self).__name__}: the observables {twice} are measured twice; expected unique "
                             "names")
        return names

    def observables(self, names: Sequence[str] | None = None) -> dict[str, Callable[[Any], Any]]:
        """``name -> f(batch) -> (B,)`` for the primary observables ``names`` (default: all).

        The functions of one measurement share its evaluation: asked for its names one after another on the
        same batch (the same array object, unmodified), the measurement runs once (:class:`_OnePerBatch`), so
        the ``L0/2 + 1`` time slices of a pion correlator cost one set of solves, not ``L0/2 + 1``.
        """
        wanted = self.observable_names() if names is None else list(names)
        shared = [(m.names, _OnePerBatch(m.fn)) for m in self.measurements()]
        by_name = {n: f for names, f in shared for n in names}
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise KeyError(f"{type(self).__name__} has no observables {unknown}; available {list(by_name)}")

        def single(f: _OnePerBatch, n: str) -> Callable[[Any], Any]:
            return lambda x: f(x)[n]

        return {n: single(by_name[n], n) for n in wanted}

    def measure(self, x: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The primary observables ``names`` (default: all) of a batch ``x``: name -> array ``(B,)``.

        Each measurement runs once, however many of its observables are asked for.
        """
        wanted = self.observable_names() if names is None else list(names)
        out: dict[str, Any] = {}
        for m in self.measurements():
            if any(n in wanted for n in m.names):
                vals = m.fn(x)
                for n in m.names:
                    if n in wanted:
                        out[n] = vals[n]
        return {n: out[n] for n in wanted}

    def derived(self) -> dict[str, Derived]:
        """Derived observables available on this lattice: name -> :class:`Derived`."""
        return {}

    def integer_observables(self) -> list[str]:
        """Primary observables whose values are integers up to rounding (the 2D U(1) topological charge).

        A run in which such an observable keeps one integer value in every measurement (frozen topology)
        reports it as constant, without an error or tau_int, instead of analysing its rounding noise."""
        return []

    def summary_observables(self) -> list[str]:
        """The observables a flow-MCMC chain measures by default and summary tables list, in order."""
        return self.observable_names() + list(self.derived())

    def select(self, names: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """The primary observables to measure and the derived ones to report for a selection ``names``
        (empty: every primary observable and every derived one).

        A derived observable brings its inputs along. Raises :class:`ConfigError` (key
        ``measure.observables``) for an unknown name or a name given twice.
        """
        prim, der = self.observable_names(), self.derived()
        if not names:
            return prim, list(der)
        twice = sorted({n for n in names if list(names).count(n) > 1})
        if twice:   # accepted silently before (and measured once), where `latticekit compare` refuses them
            raise ConfigError(f"measure.observables: {', '.join(map(repr, twice))} listed more than once")
        unknown = [n for n in names if n not in prim and n not in der]
        if unknown:
            raise ConfigError(f"measure.observables: {', '.join(map(repr, unknown))} not available for action.kind = "
                              f"{self.kind!r} on {list(self.lattice.shape)}; available: {', '.join(prim + list(der))}"
                              f"{self.unavailable_hint(unknown)}")
        needed = set(names) | {i for n in names if n in der for i in der[n].inputs}
        return [n for n in prim if n in needed], [n for n in der if n in names]

    def unavailable_hint(self, unknown: Sequence[str]) -> str:
        """Text appended to the error for observable names this configuration does not measure: how another
        ``[measure]`` setting would make them available (empty: no such setting)."""
        return ""

    # -- exact results -------------------------------------------------------------------------------
    def exact(self) -> dict[str, float]:
        """Exact values (:mod:`latticekit.exact`, symmetries) of the observables that have one."""
        return {}

    def exact_log_z(self) -> float | None:
        """``log Z`` of ``exp(-S)`` against the measure the flows' densities refer to (the normalised Haar
        measure for gauge fields, Lebesgue for scalars), or None where no exact value is known."""
        return None

    def exact_distribution(self, name: str, bound: int) -> tuple[Any, Any] | None:
        """The exact distribution ``(values, probabilities)`` of an integer-valued observable on
        ``-bound..bound``, or None where none is known."""
        return None

    def __repr__(self) -> str:
        fields = "".join(f", {f.name}={getattr(self.params, f.name)!r}" for f in dataclasses.fields(self.params))
        return f"{type(self).__name__}(lattice={self.lattice.shape}{fields})"
