"""The configuration of every job: one schema, one validator, one rule for every key.

A job configuration is a TOML file of sections. Each job declares the sections it reads and refuses
the others (``latticekit run`` and ``measure``: ``[lattice] [action] [sampler] [measure] [output]``;
``latticekit train`` and ``sample``: ``[lattice] [action] [model] [train] [sample]``). Every key is
read, or refused with a :class:`~latticekit.utils.ConfigError` that names it
(``unknown key sampler.overrelaxation; ...``); every value is typed, finite and in range before any
work starts.

The schema is made of typed settings (dataclasses, :mod:`latticekit.utils.schema`): the sections of
:mod:`latticekit.app.sections`, and the keys that depend on a choice made in the same file, declared by
the owner of that choice:

=============  ================================  ====================================================
section        choice                            keys declared by
=============  ================================  ====================================================
``[action]``   ``kind``                          the theory (:mod:`latticekit.theories`): a phi^4
                                                 config with ``group`` is refused, a Wilson config
                                                 with ``lam`` too
``[sampler]``  ``algorithm``                     the theory's samplers: ``overrelaxation`` only for
                                                 the heatbath, ``n_inner`` only for the Nf = 2 HMC
``[measure]``  (the theory)                      the theory: ``wilson_loops`` for gauge theories, loops
                                                 no larger than the lattice; ``observables`` selects
                                                 what is measured and reported
``[output]``   (the theory)                      ``store_every`` only for gauge theories (the only ones
                                                 that store ``ensemble.h5``)
``[model]``    ``coupling``                      the flow-model family (:mod:`latticekit.app.flows.models`)
=============  ================================  ====================================================

Why dataclasses and not pydantic: see :mod:`latticekit.utils.schema` (no dependency; theories declare
their keys without importing the application tier; error messages name TOML keys).

Configurations stored by a job (``config.json``, ``results.json``, checkpoints) are read back with
:meth:`JobConfig.from_stored`, which ignores keys the current version no longer reads (earlier versions
wrote every key of a section, read or not) and maps old names (``model.rectangle_context`` ->
``model.loop_context``), so old run folders still resume.

Examples
--------
>>> cfg = RunConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 1.5}})
>>> cfg.action.group, cfg.sampler.algorithm, cfg.theory.describe()
('U1', 'hmc', 'U(1) Wilson (beta=1.5)')
>>> RunConfig.from_dict({"sampler": {"algorithm": "hmc", "overrelaxation": 2}})
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: unknown key sampler.overrelaxation; [sampler] with algorithm = 'hmc' for action.kind = 'wilson' reads algorithm, chains, thermalization, measurements, step_size, n_steps, integrator; it is a key of algorithm = 'heatbath'
>>> FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "train": {"lr": -1}})
Traceback (most recent call last):
...
latticekit.utils.schema.ConfigError: train.lr=-1.0: expected a positive learning rate
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from latticekit.theories import theory_class, theory_kinds
from latticekit.utils.schema import ConfigError, field_names, parse

from .sections import (
    ActionKind,
    LatticeSection,
    MeasureCommon,
    ModelCommon,
    OutputSection,
    SampleSection,
    SamplerCommon,
    Section,
    TrainSection,
)

__all__ = ["ConfigError", "FlowConfig", "JobConfig", "RunConfig", "load_config", "read_toml"]


class _Context:
    """What the sections parsed so far fixed (lattice, theory) for the ones after them."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.shape: tuple[int, ...] = ()
        self.cls: Any = None
        self.params: Any = None
        self.theory: Any = None


def _split(data: Mapping[str, Any], cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    own = set(field_names(cls))
    return {k: v for k, v in data.items() if k in own}, {k: v for k, v in data.items() if k not in own}


def _parse_variant(cls: type, data: Mapping[str, Any], section: str, ctx: _Context, reads: str,
                   others: Mapping[str, type], label: str) -> Any:
    """Parse the keys of a variant; an unknown key names the variants that do read it."""
    if ctx.strict:
        known = set(field_names(cls, aliases=True))
        for k in data:
            if k not in known:
                owners = [name for name, c in others.items() if k in field_names(c, aliases=True)]
                extra = f"; it is a key of {' or '.join(f'{label} = {o!r}' for o in owners)}" if owners else ""
                raise ConfigError(f"unknown key {section}.{k}; {reads}{extra}")
    return parse(cls, data, section, strict=ctx.strict, reads=reads)


def _lattice(data: dict[str, Any], ctx: _Context) -> Section:
    s = parse(LatticeSection, data, "lattice", strict=ctx.strict)
    ctx.shape = tuple(s.shape)
    return Section(s)


def _action(data: dict[str, Any], ctx: _Context) -> Section:
    own, rest = _split(data, ActionKind)
    kind = parse(ActionKind, own, "action")
    ctx.cls = cls = theory_class(kind.kind)
    reads = f"action.kind = {kind.kind!r} takes {', '.join(field_names(cls.Params))}"
    others = {k: theory_class(k).Params for k in theory_kinds() if k != kind.kind}
    ctx.params = _parse_variant(cls.Params, rest, "action", ctx, reads, others, "action.kind")
    cls.check(ctx.params, ctx.shape)
    return Section(kind, ctx.params)


def _sampler(data: dict[str, Any], ctx: _Context) -> Section:
    own, rest = _split(data, SamplerCommon)
    common = parse(SamplerCommon, own, "sampler")
    cls = ctx.cls
    if common.algorithm is None:
        common.algorithm = next(iter(cls.samplers))
    if common.algorithm not in cls.samplers:
        raise ConfigError(f"sampler.algorithm: expected one of {tuple(cls.samplers)} for action.kind = {cls.kind!r}, "
                          f"got {common.algorithm!r}")
    settings_cls = cls.samplers[common.algorithm]
    reads = (f"[sampler] with algorithm = {common.algorithm!r} for action.kind = {cls.kind!r} reads "
             f"{', '.join(field_names(SamplerCommon) + field_names(settings_cls))}")
    others = {a: c for a, c in cls.samplers.items() if a != common.algorithm}
    settings = _parse_variant(settings_cls, rest, "sampler", ctx, reads, others, "algorithm")
    cls.check_sampler(common.algorithm, settings, ctx.shape)
    return Section(common, settings)


def _measure(data: dict[str, Any], ctx: _Context) -> Section:
    own, rest = _split(data, MeasureCommon)
    common = parse(MeasureCommon, own, "measure")
    cls = ctx.cls
    reads = (f"[measure] for action.kind = {cls.kind!r} reads "
             f"{', '.join(field_names(MeasureCommon) + field_names(cls.Measure))}")
    others = {k: theory_class(k).Measure for k in theory_kinds() if k != cls.kind}
    options = _parse_variant(cls.Measure, rest, "measure", ctx, reads, others, "action.kind")
    ctx.theory = cls(ctx.shape, ctx.params, options)
    if ctx.strict:
        ctx.theory.select(common.observables)  # an unknown name is an error naming measure.observables
    return Section(common, options)


#: ``output.store_every`` of gauge theories when not given
STORE_EVERY = 10


def _output(data: dict[str, Any], ctx: _Context) -> Section:
    out = parse(OutputSection, data, "output", strict=ctx.strict)
    if not ctx.cls.is_gauge:
        # only gauge theories store an ensemble (ensemble.h5); earlier versions stored the key for every run
        if ctx.strict and out.store_every is not None:
            raise ConfigError(f"output.store_every: action.kind = {ctx.cls.kind!r} stores no ensemble (ensemble.h5 holds "
                              "the configurations of gauge theories); remove the key")
        out.store_every = None
    elif out.store_every is None:
        out.store_every = STORE_EVERY
    return Section(out)


def _model(data: dict[str, Any], ctx: _Context) -> Section:
    from .flows.models import family, family_names

    own, rest = _split(data, ModelCommon)
    common = parse(ModelCommon, own, "model")
    cls = ctx.cls
    if not cls.flow_families:
        raise ConfigError(f"model.coupling: no flow-model family samples action.kind = {cls.kind!r} yet")
    if common.coupling == "auto":
        common.coupling = cls.flow_families[0]
    if common.coupling not in cls.flow_families:
        raise ConfigError(f"model.coupling: expected one of {cls.flow_families} for action.kind = {cls.kind!r}, "
                          f"got {common.coupling!r}")
    fam = family(common.coupling)
    reads = (f"[model] with coupling = {common.coupling!r} reads "
             f"{', '.join(field_names(ModelCommon) + field_names(fam.settings))}")
    others = {n: family(n).settings for n in family_names() if n != common.coupling}
    settings = _parse_variant(fam.settings, rest, "model", ctx, reads, others, "model.coupling")
    fam.check(ctx.shape, settings)
    if settings.n_layers is None:
        settings.n_layers = fam.default_layers(ctx.shape)
    return Section(common, settings)


def _train(data: dict[str, Any], ctx: _Context) -> Section:
    t = parse(TrainSection, data, "train", strict=ctx.strict)
    try:
        # the training options are checked by TrainConfig itself (one set of rules); a job always has a
        # checkpoint file (DIR/checkpoint.pt), whose folder is not known yet
        t.train_config(None, Path("checkpoint.pt")).validate()
    except ValueError as exc:
        raise ConfigError(f"train.{exc}") from None
    return Section(t)


def _sample(data: dict[str, Any], ctx: _Context) -> Section:
    return Section(parse(SampleSection, data, "sample", strict=ctx.strict))


#: section name -> parser, in the order they are read (later sections depend on earlier ones)
_PARSERS: dict[str, Callable[[dict[str, Any], _Context], Section]] = {
    "lattice": _lattice, "action": _action, "sampler": _sampler, "measure": _measure, "output": _output,
    "model": _model, "train": _train, "sample": _sample,
}


class JobConfig:
    """A validated job configuration; subclasses name the job and the sections it reads.

    Parameters
    ----------
    data : mapping, optional
        TOML-shaped ``{section: {key: value}}``; missing sections and keys take their defaults.
    strict : bool
        False for configurations stored by a job (see :meth:`from_stored`).

    Attributes
    ----------
    theory : latticekit.theories.Theory
        The theory of ``[lattice]`` and ``[action]`` (with the ``[measure]`` options where read).
    """

    job: ClassVar[str] = ""
    sections: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, data: Mapping[str, Any] | None = None, *, strict: bool = True) -> None:
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise ConfigError(f"configuration: expected a table, got {type(data).__name__}")
        for sec, val in data.items():
            if sec not in self.sections:
                if strict:
                    raise ConfigError(f"unknown section [{sec}]; {self.job} reads "
                                      f"{', '.join(f'[{s}]' for s in self.sections)}")
            elif not isinstance(val, Mapping):
                raise ConfigError(f"[{sec}]: expected a table, got {val!r}")
        ctx = _Context(strict)
        for sec in _PARSERS:
            if sec in self.sections:
                given = dict(self.defaults.get(sec, {}))
                given.update(data.get(sec) or {})
                setattr(self, sec, _PARSERS[sec](given, ctx))
        self.theory = ctx.theory if ctx.theory is not None else ctx.cls(ctx.shape, ctx.params)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build and validate from a (TOML-shaped) mapping; unknown sections and keys are errors."""
        return cls(data)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Any:
        """Read a configuration a job stored (config.json, results.json, a checkpoint): keys this version
        does not read are ignored, old key names are mapped to the new ones, values are validated."""
        return cls(data, strict=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Any:
        """Read and validate a TOML file."""
        return cls.from_dict(read_toml(path))

    @classmethod
    def load(cls, source: Any) -> Any:
        """A configuration from a TOML path, a mapping, or a configuration of this class (returned as is)."""
        if isinstance(source, cls):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        if isinstance(source, (str, os.PathLike)):
            return cls.from_file(source)
        raise ConfigError(f"config: expected a TOML path or a table, got {type(source).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of every key read, with its value (the form stored in results.json,
        config.json and checkpoints); unset optional keys (``train.clip_norm``) are left out, as in TOML."""
        return {sec: getattr(self, sec).to_dict() for sec in self.sections}

    @property
    def nd(self) -> int:
        """Number of lattice dimensions."""
        return len(self.lattice.shape)

    @property
    def is_gauge(self) -> bool:
        """True for gauge theories."""
        return bool(self.theory.is_gauge)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class RunConfig(JobConfig):
    """The configuration of ``latticekit run`` (and of ``latticekit measure``, read from results.json).

    Without a file: 2D U(1), L = 16, beta = 2, HMC (the defaults of every section).
    """

    job = "latticekit run"
    sections = ("lattice", "action", "sampler", "measure", "output")
    defaults = {"lattice": {"shape": [16, 16]}}


class FlowConfig(JobConfig):
    """The configuration of ``latticekit train`` (stored with the run and read back by ``latticekit
    sample``); ``lattice.shape`` is required.

    Examples
    --------
    >>> cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 2.0}})
    >>> cfg.action.kind, cfg.model.coupling, cfg.model.n_layers
    ('wilson', 'plaquette', 16)
    """

    job = "latticekit train"
    sections = ("lattice", "action", "model", "train", "sample")

    @property
    def uses_stripes(self) -> bool:
        """True if the gauge flow is built from the 2D stripe layers (``model.coupling = "plaquette"`` on a
        2D lattice); False for the checkerboard layers and for phi^4."""
        return self.is_gauge and self.model.coupling == "plaquette" and self.nd == 2


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The table in a TOML file; a missing, malformed or unreadable file (or a folder) raises
    :class:`ConfigError` naming it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder; expected a TOML file")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    except PermissionError:
        raise ConfigError(f"config file {str(p)!r} cannot be read (permission denied)") from None


def load_config(path: str | os.PathLike[str] | None) -> RunConfig:
    """The run configuration in ``path``, or the built-in default (2D U(1), L=16, beta=2) for None."""
    return RunConfig() if path is None else RunConfig.from_file(path)
