"""The sections of a job configuration (TOML tables), as typed settings.

Every key is a field of a dataclass with its rules in the field metadata
(:func:`latticekit.utils.setting`); :func:`latticekit.utils.parse` reads a table into it and refuses
anything else. Keys that depend on a choice made in the same configuration are declared by the owner of
that choice, not here:

* ``[action]``: ``kind`` here, the theory's parameters in its ``Params``
  (:mod:`latticekit.theories`);
* ``[sampler]``: the run settings here, the algorithm's keys in the theory's ``samplers``
  (:mod:`latticekit.theories.samplers`);
* ``[measure]``: ``every`` and ``observables`` here, the theory's own keys in its ``Measure``
  (gauge theories: ``wilson_loops``);
* ``[model]``: ``coupling`` here, the family's keys in its settings (:mod:`latticekit.app.flows.models`).

:class:`Section` joins the two parts of such a section into one object with attribute access
(``cfg.sampler.step_size``) and one plain-dict form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from latticekit.utils.schema import as_dict, setting

#: largest seed of the jobs: the generators take seeds below 2^64 (torch), and the jobs derive further seeds by
#: adding step and segment offsets, which stay below 2^64 from here (a seed of 2^64 ended in a traceback)
MAX_SEED = 2**63 - 1

__all__ = ["MAX_SEED", "ActionKind", "LatticeSection", "MeasureCommon", "ModelCommon", "OutputSection", "SampleSection",
           "SamplerCommon", "Section", "TrainSection"]


@dataclass
class LatticeSection:
    """``[lattice]``."""

    shape: list[int] = dataclasses.field(metadata={"ge": 1, "min_items": 1,
                                                   "doc": "a list of positive integers such as [8, 8]"})


@dataclass
class ActionKind:
    """``[action] kind``; the other keys are the theory's parameters."""

    kind: str = setting("wilson", doc="the theory: a key of latticekit.theories.THEORIES")


@dataclass
class SamplerCommon:
    """``[sampler]`` keys of every algorithm (the run job's chains and their lengths)."""

    algorithm: str | None = setting(None, doc="a sampler of the theory (default: the first it lists)")
    chains: int = setting(8, ge=1, doc="independent chains (the batch)")
    thermalization: int = setting(100, ge=0, doc="steps before measuring")
    measurements: int = setting(400, ge=2, doc="measurements per chain (the Gamma method needs two)")


@dataclass
class MeasureCommon:
    """``[measure]`` keys of every theory."""

    every: int = setting(1, ge=1, doc="sampler steps between measurements")
    observables: list[str] = setting([], doc="what to measure and report (empty: everything the theory offers)")


@dataclass
class OutputSection:
    """``[output]`` of the run job."""

    checkpoint_every: int = setting(50, ge=1, doc="measurements (or thermalisation steps) between checkpoints")
    store_every: int | None = setting(None, ge=1, doc="gauge theories: store every this many measurements of each "
                                                      "chain in ensemble.h5 (default 10)")
    plots: bool = setting(True, doc="write PNG plots")


@dataclass
class ModelCommon:
    """``[model] coupling``; the other keys are those of the flow-model family."""

    coupling: str = setting("auto", doc="a flow-model family of the theory (auto: the first it lists)")


@dataclass
class TrainSection:
    """``[train]``: the options of :class:`latticekit.flows.TrainConfig` the job exposes.

    Their ranges are checked by ``TrainConfig.validate`` (one set of rules for the library and the
    job); the job adds ``steps >= 1``, ``batch_size >= 2`` and ``eval_batch_size >= 2`` (the ESS needs two
    samples: with one, an evaluation reported ESS 1 and var log w 0) and ``seed >= 0``.
    """

    steps: int = setting(1000, ge=1, doc="optimisation steps (may grow when a run is resumed)")
    batch_size: int = setting(64, ge=2, doc="samples per step")
    lr: float = setting(1e-3, doc="learning rate")
    optimizer: str = setting("adam", doc="adam or adamw")
    eps: float = setting(1e-8, doc="Adam epsilon")
    betas: list[float] = setting([0.9, 0.999], doc="Adam betas")
    weight_decay: float = setting(0.0)
    schedule: str = setting("constant", doc="constant, cosine or step")
    min_lr: float = setting(0.0, doc="cosine schedule: final learning rate")
    step_size: int = setting(1000, doc="step schedule: steps between decays")
    gamma: float = setting(0.5, doc="step schedule: decay factor")
    warmup_steps: int = setting(0, ge=0, doc="linear learning-rate warm-up over this many first steps, on top of "
                                "the schedule (0: none)")
    clip_norm: float | None = setting(None, doc="clip gradients by total norm (absent: no clipping)")
    clip_value: float | None = setting(None, doc="clip gradients by value (absent: no clipping)")
    dtype: str = setting("float64", doc="float64 or float32")
    seed: int = setting(0, ge=0, le=MAX_SEED, doc="seed of the prior samples and of the initial parameters")
    eval_every: int = setting(0, doc="evaluate every this many steps (0: never)")
    gradient: str = setting("reparam", doc="reparam or path")
    eval_batch_size: int = setting(1024, ge=2, doc="samples of an evaluation (the ESS needs two)")
    checkpoint_every: int = setting(100, doc="steps between checkpoints")
    log_every: int = setting(50, doc="steps between progress lines without tqdm")
    compile: Literal[False, True, "splines", "layers"] = setting(
        False, doc="torch.compile the coupling splines (true or \"splines\") or each flow layer as a graph of its "
        "own (\"layers\": CUDA graphs on a GPU)",
        check=lambda v: None if isinstance(v, bool) or v in ("splines", "layers")
        else f"expected true, false, \"splines\" or \"layers\", got {v!r}")
    context_dtype: str | None = setting(None, doc="\"bfloat16\": run the context networks' convolutions in "
                                        "bfloat16 (mixed precision; needs dtype = \"float32\"; absent: float32)")
    recompute_layers: bool = setting(False, doc="recompute each flow layer's activations (each CNF field "
                                     "evaluation of the super-resolving families) in the backward pass "
                                     "(activation checkpointing: less memory, about one more forward pass)")

    def train_config(self, device: Any, checkpoint_path: Any) -> Any:
        """The :class:`latticekit.flows.TrainConfig` of these options (torch is imported here)."""
        from latticekit.flows.train import TrainConfig

        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                           eps=self.eps, betas=tuple(self.betas), weight_decay=self.weight_decay,
                           schedule=self.schedule, min_lr=self.min_lr, step_size=self.step_size, gamma=self.gamma,
                           warmup_steps=self.warmup_steps,
                           clip_norm=self.clip_norm, clip_value=self.clip_value, gradient=self.gradient,
                           dtype=self.dtype, device=None if device is None else str(device), seed=self.seed,
                           eval_every=self.eval_every, eval_batch_size=self.eval_batch_size,
                           checkpoint_every=self.checkpoint_every, checkpoint_path=str(checkpoint_path),
                           progress=False, log_every=self.log_every, compile=self.compile,
                           context_dtype=self.context_dtype, recompute_layers=self.recompute_layers)


@dataclass
class SampleSection:
    """``[sample]``: defaults of ``latticekit sample``."""

    n: int = setting(4096, ge=2, doc="Metropolis steps")
    batch: int = setting(1024, ge=1, doc="proposals drawn per batch")
    seed: int = setting(1, ge=0, le=MAX_SEED, doc="seed of the proposals and accept/reject draws")


class Section:
    """A validated section: one or two settings objects read as one (``cfg.sampler.step_size``).

    ``parts[0]`` holds the section's own keys, ``parts[1]`` (if any) the keys of the chosen variant
    (theory parameters, sampler settings, measure options, model-family settings), also available as
    :attr:`variant`.
    """

    def __init__(self, *parts: Any) -> None:
        object.__setattr__(self, "parts", parts)

    @property
    def variant(self) -> Any:
        """The settings object of the variant part (None for a plain section)."""
        return self.parts[1] if len(self.parts) > 1 else None

    def _owner(self, key: str) -> Any:
        for p in self.parts:
            if key in {f.name for f in dataclasses.fields(p)}:
                return p
        return None

    def __getattr__(self, key: str) -> Any:
        owner = self._owner(key)
        if owner is None:  # methods of the parts (TrainSection.train_config)
            for p in self.parts:
                if not key.startswith("_") and hasattr(p, key):
                    return getattr(p, key)
            raise AttributeError(f"no key {key!r} in this section")
        return getattr(owner, key)

    def __setattr__(self, key: str, value: Any) -> None:
        owner = self._owner(key)
        if owner is None:
            raise AttributeError(f"no key {key!r} in this section")
        setattr(owner, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The keys and values of every part, in order (None values left out)."""
        out: dict[str, Any] = {}
        for p in self.parts:
            out.update(as_dict(p))
        return out

    def as_dict(self) -> dict[str, Any]:
        """Alias of :meth:`to_dict`."""
        return self.to_dict()

    def __repr__(self) -> str:
        return f"Section({self.to_dict()!r})"
