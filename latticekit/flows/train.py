"""Reverse-KL self-training of flow models against any latticekit action.

The loss is ``KL(q || p) - log Z = E_q[log q(x) + S(x)]``, estimated on a batch of model samples
(Albergo et al. 2019): no training data are needed. The target action is any callable ``S(x) ->
(B,)`` evaluated on torch tensors, normally a :mod:`latticekit.actions` object such as
``Phi4Action(lattice, kappa, lam)`` or ``WilsonGaugeAction(U1, lattice, beta)`` (one definition of
the physics for HMC, measurements and training).

Per step the trainer records ``loss``, the relative effective sample size ``ess``
(:func:`latticekit.analysis.ess` of the log-weights ``log w = -S - log q``), ``var_log_w``, the
learning rate and the gradient norm. A non-finite loss or gradient stops training with
:class:`NonFiniteLossError` before the optimizer is touched; the last checkpoint on disk is the last
good state. Checkpoints (:mod:`latticekit.flows.checkpoint`) hold everything needed for a
bit-identical continuation on CPU.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.actions import Phi4Action
>>> from latticekit.flows import GaussianPrior, Model, scalar_coupling_flow
>>> lat = lk.Lattice((4, 4))
>>> model = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2, hidden=(4,)))
>>> tr = Trainer(model, Phi4Action(lat, kappa=0.2, lam=0.02), TrainConfig(steps=3, batch_size=8))
>>> hist = tr.train()
>>> [h["step"] for h in hist], sorted(hist[-1])[:3]
([1, 2, 3], ['ess', 'grad_norm', 'loss'])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from latticekit import backends
from latticekit.analysis import ess as _ess, log_z_estimate
from latticekit.utils import Progress

from .checkpoint import load_checkpoint, save_checkpoint
from .compiled_layers import compile_layers
from .context_precision import CONTEXT_DTYPES, set_context_dtype
from .model import Model
from .recompute import recompute_layers
from .splines import compile_splines

__all__ = ["NonFiniteLossError", "TrainConfig", "Trainer", "reverse_kl_loss", "stop_gradient_log_prob"]

_GRADIENTS = ("reparam", "path")
_COMPILE = ("splines", "layers")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss or gradient and was stopped."""


#: the largest seed a torch generator takes (evaluation seeds derived from it wrap around modulo 2^64)
MAX_SEED = 2**64 - 1
#: options of :class:`TrainConfig` that are integers, and those that are finite real numbers (checked first)
_INT_OPTIONS = ("steps", "batch_size", "step_size", "warmup_steps", "seed", "eval_every", "eval_batch_size",
                "checkpoint_every", "log_every")
_REAL_OPTIONS = ("lr", "eps", "weight_decay", "min_lr", "gamma", "clip_norm", "clip_value")


@dataclass
class TrainConfig:
    """Options of :class:`Trainer`.

    Attributes
    ----------
    steps : int
        Total number of optimisation steps (a resumed run continues up to this number).
    batch_size : int
        Samples per step.
    lr : float
        Learning rate.
    optimizer : {"adam", "adamw"}
    eps : float
        Adam epsilon.
    betas : tuple of float
    weight_decay : float
    schedule : {"constant", "cosine", "step"}
        Learning-rate schedule (cosine annealing to ``min_lr`` over ``steps``; step decay by ``gamma``
        every ``step_size`` steps).
    min_lr, step_size, gamma
        Schedule parameters.
    warmup_steps : int
        Linear learning-rate warm-up: the rate of step ``s`` (from 0) is multiplied by
        ``min(1, (s + 1) / warmup_steps)`` on top of the schedule (0 or 1: none). Adam moves every
        parameter by about ``lr`` in its first steps, whatever the gradient's size, because its second-moment
        estimate is still one gradient old; a flow initialised at the identity with many tied weights (the
        super-resolving CNF) can be thrown far from it by that first step. The linear warm-up of optax's
        ``warmup_*`` schedules and of the transformer literature, as a torch ``LambdaLR``.
    clip_norm, clip_value : float or None
        Gradient clipping by total norm / by value.
    gradient : {"reparam", "path"}
        Gradient estimator of the reverse KL (see :func:`reverse_kl_loss`).
    dtype : {"float32", "float64"}
    device : str or None
    seed : int
        Seed of the latticekit torch generator that draws all prior samples.
    eval_every, eval_batch_size : int
        Periodic no-grad evaluation (0: never).
    checkpoint_every : int
        Write ``checkpoint_path`` every this many steps (0: only at the end of :meth:`Trainer.train`).
    checkpoint_path : str or None
    progress : bool
        Show a progress bar (tqdm if installed, else a line every ``log_every`` steps).
    log_every : int
    fused : bool
        Use torch's fused Adam/AdamW kernel (one update over all parameters instead of a loop over
        the parameter tensors) when the model is on CPU or CUDA: fewer small operations per step
        (the 2D U(1) stacks have 64-96 parameter tensors), the same update up to rounding.
        ``False``: torch's default implementation.
    compile : {False, True, "splines", "layers"}
        ``True`` or ``"splines"``: evaluate the splines of the coupling layers with ``torch.compile``
        (:func:`~latticekit.flows.splines.compile_splines`): faster steps on small lattices (1.3x on
        2D U(1), L = 8, one CPU core), a few seconds of compilation at the first step. ``"layers"``: every
        layer of the flow as a compiled graph of its own (:func:`~latticekit.flows.compiled_layers.compile_layers`),
        replayed as CUDA graphs on a GPU (the step is then not bound by kernel launches). On the CPU the 2D
        U(1) step at batch 64 takes 0.65-0.68x the eager time, but at batch 1024 and for the phi^4 affine and
        the SU(N) spectral flows it runs slower (benchmarks/README.md, "Compiled layers"); the first step
        compiles, about 2 s per U(1) layer and a minute per 4D SU(N) layer on the CPU. Results equal the
        eager ones up to rounding. Both need a working compiler backend (a C++ compiler on CPU, Triton on GPU).
    context_dtype : {None, "bfloat16"}
        Run the convolutions of the context networks in bfloat16 (``torch.autocast``; parameters, gradients, the
        transforms and their log-Jacobians stay float32): :func:`~latticekit.flows.context_precision.set_context_dtype`.
        Needs ``dtype="float32"``. Sampling stays exact (the log-Jacobians are those of the maps used); what
        changes is the step time (0.7x for 2D U(1), L = 8, batch 1024 on a CPU with AVX512-BF16) and possibly the
        ESS reached (benchmarks/README.md, "bfloat16 context networks").
    recompute_layers : bool
        Recompute each flow layer's activations (each field evaluation of a
        :class:`~latticekit.flows.superres.LocalCNF`) in the backward pass instead of keeping them
        (:mod:`latticekit.flows.recompute`): the memory of one layer instead of all of them, for about
        one more forward pass per step; the same gradients. A model with nothing to recompute is refused.

    Examples
    --------
    >>> TrainConfig(steps=10).schedule
    'constant'
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    min_lr: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5
    warmup_steps: int = 0
    clip_norm: float | None = None
    clip_value: float | None = None
    gradient: str = "reparam"
    dtype: str = "float64"
    device: str | None = None
    seed: int = 0
    eval_every: int = 0
    eval_batch_size: int = 256
    checkpoint_every: int = 0
    checkpoint_path: str | None = None
    progress: bool = False
    log_every: int = 100
    compile: bool | str = False
    context_dtype: str | None = None
    fused: bool = True
    recompute_layers: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        # types first (the config schema checks them for the jobs; library callers got steps=2.5 run as 3 steps,
        # steps=True as 1, and eps=inf or lr=inf accepted: no update, or NaN parameters after one step)
        for name in _INT_OPTIONS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{name}={v!r}: expected an integer")
        for name in _REAL_OPTIONS:
            v = getattr(self, name)
            if v is None and name in ("clip_norm", "clip_value"):
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"{name}={v!r}: expected a finite real number")
        if any(isinstance(b, bool) or not isinstance(b, numbers.Real) for b in self.betas):
            raise ValueError(f"betas={tuple(self.betas)}: expected two numbers in [0, 1)")
        if not 0 <= self.seed <= MAX_SEED:
            # torch's generators take seeds below 2^64 (a larger one failed at the first evaluation, after the
            # training steps had run, with "Overflow when unpacking long long"; user probe)
            raise ValueError(f"seed={self.seed}: expected an integer in [0, 2^64 - 1]")
        if self.device is not None:
            from latticekit.backends import normalize_device

            normalize_device("torch", self.device)     # BackendError (a ValueError) naming a bad or absent device
        if self.steps < 0:
            raise ValueError(f"steps={self.steps}: expected >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}: expected a positive learning rate")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer={self.optimizer!r}: expected 'adam' or 'adamw'")
        if not self.eps > 0:
            raise ValueError(f"eps={self.eps}: expected > 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas={tuple(self.betas)}: expected two numbers in [0, 1)")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay}: expected >= 0")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"schedule={self.schedule!r}: expected 'constant', 'cosine' or 'step'")
        if not self.min_lr >= 0:
            raise ValueError(f"min_lr={self.min_lr}: expected >= 0")
        if self.schedule == "cosine" and self.min_lr > self.lr:
            # the cosine runs from lr down to min_lr; above lr it would raise the rate over the run
            raise ValueError(f"min_lr={self.min_lr}: expected at most lr={self.lr} (the final learning rate of the "
                             "cosine schedule)")
        if self.step_size < 1:
            raise ValueError(f"step_size={self.step_size}: expected >= 1")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma={self.gamma}: expected 0 < gamma <= 1")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps}: expected >= 0 (0: no warm-up)")
        if self.gradient not in _GRADIENTS:
            raise ValueError(f"gradient={self.gradient!r}: expected one of {_GRADIENTS}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype={self.dtype!r}: expected 'float32' or 'float64'")
        for name in ("clip_norm", "clip_value"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name}={v}: expected a positive number or None")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 0 (0: never)")
        for name in ("eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        if not isinstance(self.fused, bool):
            raise ValueError(f"fused={self.fused!r}: expected True or False")
        if not isinstance(self.compile, bool) and self.compile not in _COMPILE:
            raise ValueError(f"compile={self.compile!r}: expected True, False or one of {_COMPILE}")
        if self.context_dtype is not None:
            if self.context_dtype not in CONTEXT_DTYPES:
                raise ValueError(f"context_dtype={self.context_dtype!r}: expected None (float32) or one of "
                                 f"{CONTEXT_DTYPES}")
            if self.dtype != "float32":
                raise ValueError(f"context_dtype={self.context_dtype!r} needs dtype='float32' (got {self.dtype!r}): "
                                 "the context networks of a float64 model run in float64")
        if self.checkpoint_every and not self.checkpoint_path:
            raise ValueError("checkpoint_every > 0 needs checkpoint_path")


def _action_fn(action: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(getattr(action, "action", None)):
        return action.action
    if callable(action):
        return action
    raise TypeError(f"action={action!r}: expected a latticekit action (with .action(x)) or a callable S(x) -> (B,)")


class _LogProb(torch.nn.Module):
    """``model.log_prob`` as a module's forward, so ``torch.func.functional_call`` can swap parameters."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.m.log_prob(x, context=context)


def stop_gradient_log_prob(model: Model, x: torch.Tensor, context: Any = None) -> torch.Tensor:
    """``log q(x)`` evaluated with the model's parameters detached (gradients flow through ``x`` only).

    This is the density term of the path-gradient ("sticking the landing") estimator of the reverse
    KL: with ``x = f_theta(z)``, ``d/dtheta [log q_{stop(theta)}(x) + S(x)]`` drops the score term
    ``d/dtheta log q_theta(x)|_x``, whose expectation is zero, so the estimator stays unbiased and its
    variance vanishes where ``q = p`` (Roeder et al. 2017, arXiv:1703.09194; for lattice flows Vaitl
    et al. 2022, arXiv:2207.08219).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.flows import GaussianPrior, Model, AffineCoupling, Flow
    >>> lat = lk.Lattice((2, 2))
    >>> m = Model(GaussianPrior(lat.shape), Flow([AffineCoupling(lat, 0, hidden=(2,))])).to(torch.float64)
    >>> x, log_q = m.sample(3, lk.backends.rng(0, backend="torch"))
    >>> lq = stop_gradient_log_prob(m, x)
    >>> bool(torch.allclose(lq, log_q)), lq.requires_grad
    (True, True)
    """
    params = {f"m.{k}": v.detach() for k, v in model.named_parameters()}
    return torch.func.functional_call(_LogProb(model), params, (x,), {"context": context}, strict=False)


def reverse_kl_loss(model: Model, action: Any, n: int, rng: backends.Generator, context: Any = None,
                    gradient: str = "reparam") -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse-KL loss ``mean(log q(x) + S(x))`` on ``n`` model samples, and the detached
    log-weights ``log w = -S(x) - log q(x)``.

    ``gradient="reparam"`` differentiates ``log q`` as returned by the sampler (the standard
    reparametrised estimator); ``gradient="path"`` uses :func:`stop_gradient_log_prob` for the
    density term (path gradient: lower variance near convergence, about twice the cost per step,
    since ``log q`` is recomputed by the inverse flow). The loss value is the same.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.flows import GaussianPrior, Model, Flow
    >>> m = Model(GaussianPrior((2,)), Flow([])).to(torch.float64)
    >>> S = lambda x: 0.5 * (x ** 2).sum(-1)                # the prior itself: log w = const
    >>> loss, lw = reverse_kl_loss(m, S, 100, lk.backends.rng(0, backend="torch"))
    >>> round(float(loss), 6) == round(-math.log(2 * math.pi), 6), float(lw.std()) < 1e-12
    (True, True)
    """
    if gradient not in _GRADIENTS:
        raise ValueError(f"gradient={gradient!r}: expected one of {_GRADIENTS}")
    x, log_q = model.sample(n, rng, context=context)
    S = _action_fn(action)(x)
    if tuple(S.shape) != tuple(log_q.shape):
        raise ValueError(f"action returned shape {tuple(S.shape)}; expected one value per sample {tuple(log_q.shape)}")
    lq = stop_gradient_log_prob(model, x, context) if gradient == "path" else log_q
    loss = torch.mean(lq + S)
    return loss, (-S - log_q).detach()


class _WarmupFactor:
    """Learning-rate factor of step ``s`` (from 0): the linear warm-up times the closed form of the schedule.

    ``min(1, (s + 1) / W)`` times 1 (constant), ``gamma ** (s // step_size)`` (step) or
    ``(min_lr + (lr - min_lr) (1 + cos(pi s / steps)) / 2) / lr`` (cosine: torch's ``CosineAnnealingLR``, held
    at ``min_lr`` after ``steps``).
    Plain numbers only: ``LambdaLR`` stores a callable object's ``__dict__`` in its checkpoints.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.warmup = int(cfg.warmup_steps)
        self.schedule = str(cfg.schedule)
        self.lr, self.min_lr = float(cfg.lr), float(cfg.min_lr)
        self.steps, self.step_size, self.gamma = max(int(cfg.steps), 1), int(cfg.step_size), float(cfg.gamma)

    def __call__(self, s: int) -> float:
        warm = min(1.0, (s + 1) / self.warmup)
        if self.schedule == "step":
            return warm * self.gamma ** (s // self.step_size)
        if self.schedule == "cosine":
            t = min(s, self.steps)
            cos = (1 + math.cos(math.pi * t / self.steps)) / 2
            return warm * (self.min_lr + (self.lr - self.min_lr) * cos) / self.lr
        return warm


class _HeldCosine(torch.optim.lr_scheduler.CosineAnnealingLR):
    """torch's CosineAnnealingLR (the same rates within ``T_max`` steps, the same checkpoint state), held at
    ``eta_min`` after ``T_max``: torch's is periodic, so ``Trainer.train(steps=k)`` past ``config.steps`` climbed
    back to ``lr`` without a warm-up and stayed at ``min_lr`` with one (:class:`_WarmupFactor`; user probe)."""

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.T_max:
            return [float(self.eta_min) for _ in self.optimizer.param_groups]
        return super().get_lr()


class Trainer:
    """Reverse-KL training loop with schedules, clipping, metrics, evaluation and checkpoints.

    Parameters
    ----------
    model : Model
    action : action object or callable
        ``S(x) -> (B,)``; e.g. ``latticekit.actions.Phi4Action``.
    config : TrainConfig

    Attributes
    ----------
    step : int
        Completed optimisation steps.
    history : list of dict
        Metrics per step (and ``eval_*`` entries at evaluation steps).
    rng : latticekit.backends.Generator
        The generator of all prior samples.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.actions import Phi4Action
    >>> from latticekit.flows import GaussianPrior, Model, scalar_coupling_flow
    >>> lat = lk.Lattice((2, 2))
    >>> tr = Trainer(Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2, hidden=(2,))),
    ...              Phi4Action(lat, 0.1, 0.0), TrainConfig(steps=2, batch_size=4, schedule="cosine"))
    >>> len(tr.train()), tr.step
    (2, 2)
    """

    def __init__(self, model: Model, action: Any, config: TrainConfig | None = None) -> None:
        # a Model, or any module with the same sampling protocol (e.g. flows.superres.SuperResolvingModel,
        # whose rectangular flows are not a prior plus a square bijection)
        if not isinstance(model, nn.Module) or not callable(getattr(model, "sample", None)) \
                or not callable(getattr(model, "log_prob", None)):
            raise TypeError(f"model={type(model).__name__}: expected a latticekit.flows.Model (or a module with "
                            "sample(n, rng, context=None) -> (x, log_q) and log_prob(x, context=None))")
        self.config = config if config is not None else TrainConfig()
        self.config.validate()
        cfg = self.config
        self.action_fn = _action_fn(action)
        self.action = action
        check_model = getattr(action, "check_model", None)
        if callable(check_model):       # an action that knows which models fit it (JointAction), before any work
            check_model(model)
        self.dtype = getattr(torch, cfg.dtype)
        self.device = torch.device(cfg.device) if cfg.device is not None else torch.device("cpu")
        self.model = model.to(dtype=self.dtype, device=self.device)
        if cfg.compile is True or cfg.compile == "splines":
            compile_splines(self.model)
        elif cfg.compile == "layers" and not compile_layers(self.model):
            raise ValueError(f"compile='layers': the model ({type(self.model).__name__}) has no Flow with layers "
                             "to compile; use compile='splines' or False")
        if cfg.context_dtype is not None and not set_context_dtype(self.model, cfg.context_dtype):
            raise ValueError(f"context_dtype={cfg.context_dtype!r}: the model ({type(self.model).__name__}) has no "
                             "ConvNet context network; leave the option off")
        if cfg.recompute_layers and not recompute_layers(self.model):
            raise ValueError(f"recompute_layers=True: the model ({type(self.model).__name__}) has no layer that "
                             "recomputes its activations (a Flow or a LocalCNF); leave the option off")
        self.rng = backends.rng(cfg.seed, backend="torch", device=cfg.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters")
        opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        fused = {"fused": True} if cfg.fused and self.device.type in ("cpu", "cuda") else {}
        self.optimizer = opt(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
                             **fused)
        if cfg.warmup_steps > 1:
            # one LambdaLR with the closed forms of the schedules times the warm-up (torch's chained recursive
            # forms would multiply the warm-up into the cosine's eta_min); without a warm-up the classes below,
            # whose checkpoints earlier runs hold
            self.scheduler: Any = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _WarmupFactor(cfg))
        elif cfg.schedule == "cosine":
            self.scheduler = _HeldCosine(self.optimizer, T_max=max(cfg.steps, 1), eta_min=cfg.min_lr)
        elif cfg.schedule == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _s: 1.0)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.last_checkpoint_step: int | None = None

    # -- one step ------------------------------------------------------------------------------
    def _mark_step(self) -> None:
        # CUDA graphs (layers compiled on CUDA, compile="layers" or compile_layers) reuse their output memory at
        # the next replay: each step and evaluation begins a new generation of them
        if self.device.type == "cuda" and any(getattr(m, "compiled", None) is not None for m in self.model.modules()):
            torch.compiler.cudagraph_mark_step_begin()

    def _stop(self, what: str, value: Any, cause: BaseException | None = None) -> None:
        where = (f"the last good checkpoint is {self.config.checkpoint_path!r} (step {self.last_checkpoint_step})"
                 if self.last_checkpoint_step is not None else "no checkpoint was written yet")
        raise NonFiniteLossError(f"training stopped at step {self.step + 1}: {what} is {value}; the optimizer was not "
                                 f"updated and {where}. Lower the learning rate, clip gradients (clip_norm) or "
                                 f"use float64.") from cause

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns (and records) its metrics."""
        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self._mark_step()
        try:
            loss, log_w = reverse_kl_loss(self.model, self.action_fn, cfg.batch_size, self.rng, gradient=cfg.gradient)
        except torch.linalg.LinAlgError as exc:
            # e.g. eigh not converging on NaN links of a diverged SU(N) flow: the same stop as a non-finite loss
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._stop("the forward pass", f"a linear-algebra failure ({first})", exc)
        lv = float(loss.detach())
        if not math.isfinite(lv):
            self._stop("the loss", lv)
        return self._apply_gradients(loss, lv, log_w)

    def _apply_gradients(self, loss: torch.Tensor, lv: float, log_w: torch.Tensor) -> dict[str, float]:
        """Backward pass, clipping, optimiser and scheduler step, metrics (shared with data-parallel training).

        ``lv`` is the loss value to record and ``log_w`` the log-weights of the whole (global) batch.
        """
        cfg = self.config
        loss.backward()
        # the optimizer's parameters only: a frozen parameter may hold a stale gradient of an earlier training
        # (e.g. a lower level of a UV-matching ladder), which must not enter the norm or the clipping
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if cfg.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, cfg.clip_value)
        max_norm = cfg.clip_norm if cfg.clip_norm is not None else math.inf
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(gnorm):
            self._stop("the gradient norm", gnorm)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        m = {"step": self.step, "loss": lv, "ess": float(_ess(log_w.cpu())),
             "var_log_w": float(log_w.var()) if log_w.numel() > 1 else 0.0, "lr": lr, "grad_norm": gnorm}
        self.history.append(m)
        return m

    @torch.no_grad()
    def evaluate(self, n: int | None = None) -> dict[str, float]:
        """No-grad metrics on ``n`` fresh samples (default ``eval_batch_size``).

        Draws from a generator derived from ``(seed, step)``, so evaluating does not change the
        training stream. Returns ``eval_loss`` (``mean(log q + S) = -mean log w``), ``eval_ess`` (Kish
        ESS/N of the ``n`` draws), ``eval_var_log_w``, ``eval_log_z_estimate`` with ``eval_log_z_error``
        (:func:`latticekit.analysis.log_z_estimate`: ``log mean w``, arXiv:2404.10819 sec. 4.1) and
        ``eval_kl_estimate`` (reverse KL ``log Z - mean log w`` with that estimate in
        place of ``log Z``; the exact KL is ``log Z + eval_loss`` where ``log Z`` is known).
        """
        n = self.config.eval_batch_size if n is None else n
        self.model.eval()
        self._mark_step()
        g = backends.rng((self.config.seed + 1_000_003 * (self.step + 1)) % (MAX_SEED + 1), backend="torch",
                         device=self.config.device)
        loss, log_w = reverse_kl_loss(self.model, self.action_fn, n, g)
        try:
            log_z, log_z_err = log_z_estimate(log_w.cpu())
        except ValueError:  # NaN/+inf weights: reported as NaN like the other metrics; train_step stops on them
            log_z, log_z_err = math.nan, math.nan
        return {"step": self.step, "eval_loss": float(loss), "eval_ess": float(_ess(log_w.cpu())),
                "eval_var_log_w": float(log_w.var()) if log_w.numel() > 1 else 0.0,
                "eval_log_z_estimate": log_z, "eval_log_z_error": log_z_err,
                "eval_kl_estimate": log_z + float(loss)}

    # -- loop ----------------------------------------------------------------------------------
    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Run until ``config.steps`` steps are done (or ``steps`` more); returns the new metrics."""
        cfg = self.config
        target = cfg.steps if steps is None else self.step + int(steps)
        start = len(self.history)
        bar = Progress(target, self.step, "flow training", cfg.progress, log_every=cfg.log_every)
        try:
            while self.step < target:
                m = self.train_step()
                bar.update(1, loss=m["loss"], ess=m["ess"], lr=m["lr"])
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self.history[-1].update(self.evaluate())
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
        finally:
            bar.close()
        if cfg.checkpoint_path and self.last_checkpoint_step != self.step:
            self.save()
        return self.history[start:]

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write a checkpoint (default ``config.checkpoint_path``) atomically."""
        path = path if path is not None else self.config.checkpoint_path
        if not path:
            raise ValueError("path: no checkpoint path given and config.checkpoint_path is not set")
        cfg = dataclasses.asdict(self.config)
        save_checkpoint(path, model=self.model, step=self.step, optimizer=self.optimizer, scheduler=self.scheduler,
                        rng=self.rng, config={"train_config": cfg, "history": self.history,
                                              "action": repr(self.action)})
        if path == self.config.checkpoint_path:
            self.last_checkpoint_step = self.step

    def load(self, path: str | os.PathLike[str] | None = None) -> int:
        """Restore model, optimizer, scheduler, generator, step and history; returns the step.

        Raises :class:`~latticekit.flows.checkpoint.CheckpointMismatchError` for a checkpoint of a
        different architecture or lattice.
        """
        path = path if path is not None else self.config.checkpoint_path
        if not path:
            raise ValueError("path: no checkpoint path given and config.checkpoint_path is not set")
        payload = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                  rng=self.rng)
        self.step = int(payload["step"])
        self.history = list(payload["config"].get("history", []))
        self.last_checkpoint_step = self.step if path == self.config.checkpoint_path else self.last_checkpoint_step
        return self.step
