"""Each layer of a flow as a compiled graph of its own (``torch.compile``; CUDA graphs on a GPU).

An eager training step of a lattice flow is thousands of small tensor operations: the 16-layer 2D U(1) flow of
``examples/u1_2d_flow.toml`` (L = 8, batch 64) dispatches about 10,000 per step, forward and backward. On a CPU
each costs a few microseconds of dispatch besides its arithmetic; on a GPU each is a kernel launch of several
microseconds, so the step is bound by the launches, not by the device (0.24 s per step on an H100 for U(1) at
L = 16, batch 1024, with CPU time equal to wall time: ``benchmarks/results/flows_h100_u1_L16.json``).

:func:`compile_layers` makes every :class:`~latticekit.flows.base.Flow` in a model call each of its layers
through ``torch.compile``: one graph per layer (its features, network, spline or affine map and log-Jacobian),
forward and backward fused by Inductor, and with ``mode="reduce-overhead"`` (the default on CUDA) each graph
replayed as a CUDA graph (PyTorch's "CUDA graph trees"), so that a step launches a few graphs per layer
instead of hundreds of kernels (the design; not yet measured on a GPU: benchmarks/gpu_flow_step.sh). The prior, the action and the optimizer step stay eager (the fused Adam is one
kernel on CUDA). The layers' parameters, the model's ``state_dict`` and its checkpoints are unchanged.

Design (the same machinery as the compiled lattice kernels, docs/kernels.md):

* **One code object per layer and direction.** Dynamo keeps its graphs per Python code object and stops
  compiling one after ``recompile_limit`` (8) variants, silently running the rest eagerly. The layers of a flow
  share their class's ``forward``, and differ in Python constants (mask, direction, offsets), so each would be a
  variant of one code object; here every (flow, layer position, direction, device type) gets a copy of a
  two-line caller with a code object of its own (``backends._torch_compile.compile_variant``).
* **The layer is an argument**, not a bound method: a deep copy of the model (e.g. a float64 copy for
  sampling) calls the same compiled callers with its own layers, and dynamo guards on what the graph read.
* **Static shapes** (``dynamic=False``): a training run meets few batch sizes (the training and the evaluation
  batch), each compiled once with fixed-size kernels. More than 8 variants of one layer (batch sizes, dtypes,
  train/eval, grad/no-grad) run eagerly with dynamo's warning.
* **Results** equal the eager layers' up to rounding: the compiler reorders and fuses floating-point
  operations. Measured in float64 against the eager step with the same seeds (tests/flows/test_compiled_layers.py,
  benchmarks/README.md).

Without a GPU nothing of the CUDA-graph path can be run; on the CPU the same graphs run as Inductor's C++
kernels. A layer dynamo cannot trace as a whole (a graph break in a loop) runs eagerly, with the same result.

Examples
--------
>>> import torch
>>> from latticekit.flows import Flow
>>> f = Flow([Flow([])])
>>> compile_layers(f)          # no leaf layers: nothing is compiled
0
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["LayerCompiler", "compile_layers"]

#: the ``torch.compile`` modes accepted (None: ``"reduce-overhead"`` on CUDA, ``"default"`` elsewhere)
MODES: tuple[str | None, ...] = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

_TAGS = itertools.count()


def _forward(layer: nn.Module, x: torch.Tensor, context: Any) -> Any:
    return layer(x, context=context)


def _inverse(layer: nn.Module, y: torch.Tensor, context: Any) -> Any:
    return layer.inverse(y, context=context)


class LayerCompiler:
    """The compiled callers of the layers of one :class:`~latticekit.flows.base.Flow`, made on first use.

    Called as ``compiler(index, layer, inverse, x, context)``; the caller of ``(index, inverse, device type)`` is
    compiled the first time it is needed. A deep copy is the same object (the callers take the layer as an
    argument); a pickled one comes back empty with the same mode.

    Parameters
    ----------
    mode : str or None
        A ``torch.compile`` mode (:data:`MODES`); None: ``"reduce-overhead"`` (CUDA graphs) on CUDA tensors,
        ``"default"`` elsewhere. Inductor's modes; ignored by the other backends.
    backend : str
        The ``torch.compile`` backend: ``"inductor"`` (generated kernels), or e.g. ``"cudagraphs"`` (torch's
        kernels as traced, replayed as CUDA graphs: no code generation, so it compiles in a fraction of the
        time) or ``"aot_eager"`` (tracing only, for debugging).
    """

    #: positions of layers called eagerly: those that hold a Flow (it compiles its own layers)
    eager: frozenset[int] = frozenset()

    def __init__(self, mode: str | None = None, backend: str = "inductor") -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {MODES}")
        if not isinstance(backend, str) or not backend:
            raise ValueError(f"backend={backend!r}: expected the name of a torch.compile backend")
        self.mode = mode
        self.backend = backend
        self._tag = next(_TAGS)
        self._callers: dict[tuple[int, bool, str], Callable[..., Any]] = {}

    def mode_for(self, device: torch.device) -> str:
        """The compile mode used for tensors on ``device``."""
        if self.mode is not None:
            return self.mode
        return "reduce-overhead" if device.type == "cuda" else "default"

    def __call__(self, index: int, layer: nn.Module, inverse: bool, x: torch.Tensor, context: Any = None) -> Any:
        key = (int(index), bool(inverse), x.device.type)
        fn = self._callers.get(key)
        if fn is None:
            from latticekit.backends._torch_compile import compile_variant

            options: dict[str, Any] = {"backend": self.backend, "dynamic": False}
            if self.backend == "inductor":
                options["mode"] = self.mode_for(x.device)
            fn = compile_variant(_inverse if inverse else _forward, f"{self._tag}_{index}_{key[2]}", **options)
            self._callers[key] = fn
        with warnings.catch_warnings():
            # dynamo traces through functools.lru_cache wrappers and says so once per function; latticekit's
            # (loops._plan and the like) and array-api-compat's memoise pure functions of their arguments
            warnings.filterwarnings("ignore", message=r".*lru_cache.-wrapped function", category=UserWarning)
            return fn(layer, x, context)

    def __deepcopy__(self, memo: dict[int, Any]) -> "LayerCompiler":
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.mode, self.backend, self.eager))

    def __repr__(self) -> str:
        return f"LayerCompiler(mode={self.mode!r}, backend={self.backend!r}, compiled={len(self._callers)})"


def compile_layers(model: nn.Module, enabled: bool = True, *, mode: str | None = None,
                   backend: str = "inductor") -> int:
    """Call every layer of every :class:`~latticekit.flows.base.Flow` in ``model`` through a compiled graph of
    its own (module docstring); ``enabled=False`` restores the eager calls.

    Parameters
    ----------
    model : torch.nn.Module
        A flow, a :class:`~latticekit.flows.Model` or any module holding flows.
    enabled : bool
    mode : str or None
        ``torch.compile`` mode (:data:`MODES`). None: CUDA graphs (``"reduce-overhead"``) on CUDA, the default
        mode elsewhere. With CUDA graphs the outputs of a layer live in memory that the next replay reuses:
        a training loop calls ``torch.compiler.cudagraph_mark_step_begin()`` before each step
        (:class:`~latticekit.flows.Trainer` does), and a loop that keeps outputs from one call to the next (a
        flow-MCMC chain) clones them or runs the layers eagerly (``compile_layers(model, enabled=False)``;
        ``latticekit sample`` loads its model without compiled layers).
    backend : str
        The ``torch.compile`` backend (:class:`LayerCompiler`).

    Returns
    -------
    int
        The number of layers that run compiled (a layer that holds a Flow runs eagerly and is not counted; the
        layers of its flows are).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.flows import u1_gauge_flow
    >>> f = u1_gauge_flow(lk.Lattice((4, 4)), n_layers=3)
    >>> compile_layers(f), compile_layers(f, enabled=False)
    (3, 3)
    """
    from .base import Flow

    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected a torch.nn.Module (a flow, layer or Model)")
    LayerCompiler(mode, backend)   # the checks of the options
    n = 0
    for f in model.modules():
        if not isinstance(f, Flow):
            continue
        # a layer holding a Flow (a nested Flow, an InverseFlow of one) is called eagerly: its flows compile
        # their own layers, and a compiled graph would trace into their compiled callers
        eager = frozenset(i for i, layer in enumerate(f.layers) if any(isinstance(m, Flow) for m in layer.modules()))
        f.compiled = _rebuild(mode, backend, eager) if enabled else None
        n += len(f.layers) - len(eager)
    return n


def _rebuild(mode: str | None, backend: str, eager: frozenset[int]) -> LayerCompiler:
    c = LayerCompiler(mode, backend)
    c.eager = frozenset(eager)
    return c

