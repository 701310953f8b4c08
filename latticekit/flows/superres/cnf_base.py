"""What the continuous normalising flows of the super-resolving paper share (eqs. 22-28): the neural ODE
``dPsi_x/dt = G(Psi, t)_x = sum_{y,d,f} W_{xydf} K(t)_d H(Psi_y)_f`` with the sine field basis of eq. (24), the
Fourier time kernel, the low-rank weights of eq. (25), its solution with torchdiffeq and the log-determinant
``int div G dt`` (eqs. 26-28).

:class:`SineBasisCNF` holds all of it except the spatial weights ``W~_{xy}``: a subclass builds them
(:meth:`SineBasisCNF.spatial_weights`, once per solve) and sums them against the features
(``_field_and_divergence``). :class:`~latticekit.flows.superres.LocalCNF` ties them by the symmetries of the
upsampled field on a small window (the paper's flow); :class:`~latticekit.flows.superres.FullKernelCNF` spans
the lattice with full translation symmetry (the paper's comparison, Sec. VI B, after Gerdes et al. 2023). The
solver, tolerances and the state of the ODE are described in :mod:`latticekit.flows.superres.local_cnf`.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import math
import numbers
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from latticekit.flows.base import FlowLayer

__all__ = ["DEFAULT_MAX_STEPS", "INITS", "ODESolverError", "SineBasisCNF", "lattice_extents"]

#: initialisations of the frequencies and the factors ``W^H``, ``W^K`` (``W~`` is always zero: the identity map).
#: ``"normal"``: ``omega_f = 1, ..., F - 1``, ``W^H ~ N(0, 1/F)``, ``W^K ~ N(0, 1/D)`` (entries of the size of
#: ``nn.Linear``'s). ``"gerdes"``: as the code of Gerdes et al. (SciPost Phys. 15, 238; the super-resolving paper's
#: ref. [27], whose parametrisation eq. 25 follows): ``omega_f ~ U(0, 5)``, ``W^H = Q/F``, ``W^K = Q'/D`` with
#: ``Q, Q'`` random orthogonal: rows of ``W^H`` about ``F`` times and of ``W^K`` about ``D`` times shorter than with
#: ``"normal"``, so a step of ``W~`` moves the field some ``F D`` times less (for Adam, whose steps are about the
#: learning rate whatever the scale, a smaller effective rate), and the frequencies stay low
INITS: tuple[str, ...] = ("normal", "gerdes")

#: default bound on the steps (accepted and rejected) of one adaptive solve (``max_steps``). Measured (dopri5,
#: batch 64): the IR example at step 40 of 200 takes 246 and 97 steps per solve in its 8x8 and 16x16 CNFs at the
#: sampling tolerance 1e-8, 113 and 43 at the training tolerance 1e-6; the trained model's training solves about
#: 1.4x those (benchmarks/README.md, "Super-resolving"). A stiffening flow grows past any such count (the 5x5 UV
#: kernel at lr 0.01 went from 1.5 to 50 CPU s per step): the bound turns that into an error
DEFAULT_MAX_STEPS: int = 1000


class ODESolverError(RuntimeError):
    """The ODE solver did not reach its tolerance (step-size underflow, or more than ``max_steps`` steps)."""


_INSTALL_HINT = 'the continuous flows need torchdiffeq: pip install "latticekit[superres]" (torchdiffeq)'


def _torchdiffeq() -> Any:
    """The torchdiffeq module, imported on first use, or an ImportError with the install hint."""
    try:
        return importlib.import_module("torchdiffeq")
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(_INSTALL_HINT) from exc


def _solver_names() -> tuple[str, ...] | None:
    """Names accepted by ``torchdiffeq.odeint(method=...)`` (None when the installed version hides them)."""
    _torchdiffeq()
    try:
        mod = importlib.import_module("torchdiffeq._impl.odeint")
    except ImportError:  # pragma: no cover - layout of another torchdiffeq version
        return None
    solvers = getattr(mod, "SOLVERS", None)
    return tuple(solvers) if isinstance(solvers, dict) else None


def _adaptive(method: str) -> bool:
    """Whether torchdiffeq's ``method`` is an adaptive-step solver (one that takes ``max_num_steps``)."""
    _torchdiffeq()
    try:
        mod = importlib.import_module("torchdiffeq._impl.odeint")
        base = importlib.import_module("torchdiffeq._impl.solvers").AdaptiveStepsizeODESolver
    except (ImportError, AttributeError):  # pragma: no cover - layout of another torchdiffeq version
        return method in ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
    cls = getattr(mod, "SOLVERS", {}).get(method)
    return isinstance(cls, type) and issubclass(cls, base)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def _count(value: Any, name: str, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (NumPy integers included; floats such as 2.7 are refused, not
    truncated), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _positive_real(value: Any, name: str, *, at_most: float = math.inf) -> float:
    """``value`` as a Python float in ``(0, at_most]`` (finite), else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) <= at_most \
            or not math.isfinite(float(value)):
        bound = "a finite number > 0" if at_most == math.inf else f"a number in (0, {at_most:g}]"
        raise ValueError(f"{name}={value!r}: expected {bound}")
    return float(value)


def _tolerance(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < float(value) < math.inf):
        raise ValueError(f"{name}={value!r}: expected a positive finite number or None (dtype default)")
    return float(value)



def lattice_extents(lattice_shape: Sequence[int] | Any) -> tuple[int, ...]:
    """The extents of ``lattice_shape`` (a sequence of 1 to 6 positive ints, or a ``Lattice``), or a ValueError
    naming the argument."""
    shape_in = getattr(lattice_shape, "shape", lattice_shape)
    try:
        shape = tuple(shape_in)
    except TypeError:
        raise ValueError(f"lattice_shape={lattice_shape!r}: expected a sequence of lattice extents") from None
    try:
        if isinstance(shape_in, (str, bytes)) or any(isinstance(n, bool) for n in shape):
            raise TypeError
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise ValueError(f"lattice_shape={lattice_shape!r}: expected integer extents") from None
    if not 1 <= len(shape) <= 6 or any(n < 1 for n in shape):
        raise ValueError(f"lattice_shape={lattice_shape!r}: expected 1 to 6 positive extents")
    return shape


class SineBasisCNF(FlowLayer, abc.ABC):
    """Base of the continuous flows of eqs. (22-28): features, time kernel, ODE solve, log-det.

    Subclasses create the parameter ``w_spatial`` (after calling ``__init__``) and implement
    :meth:`spatial_weights` and ``_field_and_divergence(psi, t, weights=None) -> (G, div G)`` for ``psi`` of
    shape ``(N, *L)``. The parameters and keyword arguments are those of
    :class:`~latticekit.flows.superres.LocalCNF` (see there), the lattice extents already checked.
    """

    #: checkpoint each field evaluation inside the solver (LocalCNF's docstring, Attributes; set by
    #: :func:`~latticekit.flows.recompute.recompute_layers`)
    recompute: bool = False

    def __init__(self, shape: tuple[int, ...], n_basis: int, n_time: int, bond_basis: int, bond_time: int,
                 t0: float, t1: float, method: str, rtol: float | None, atol: float | None, adjoint: bool,
                 options: dict[str, Any] | None, train_rtol: float | None, train_atol: float | None,
                 max_steps: int | None, init: str = "gerdes") -> None:
        super().__init__()
        self.n_basis = _positive_int(n_basis, "n_basis")
        self.n_time = _positive_int(n_time, "n_time")
        self.bond_basis = _positive_int(bond_basis, "bond_basis")
        self.bond_time = _positive_int(bond_time, "bond_time")
        for name, v in (("t0", t0), ("t1", t1)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ValueError(f"{name}={v!r}: expected a finite number")
        if not float(t0) < float(t1):
            raise ValueError(f"t1={t1!r}: expected t1 > t0 = {t0!r}")
        if not isinstance(method, str):  # house rule: a ValueError naming the argument
            raise ValueError(f"method={method!r}: expected a torchdiffeq solver name such as 'dopri5'")  # noqa: TRY004
        solvers = _solver_names()
        if solvers is not None and method not in solvers:
            raise ValueError(f"method={method!r}: expected one of the torchdiffeq solvers {sorted(solvers)}")
        if not isinstance(adjoint, bool):
            raise ValueError(f"adjoint={adjoint!r}: expected True or False")  # noqa: TRY004
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"options={options!r}: expected a dict of solver options or None")
        if not _adaptive(method) and not {"step_size", "grid_points"} & set(options or {}):
            raise ValueError(f"method={method!r} is a fixed-grid solver: pass options={{'step_size': h}} (without it "
                             f"torchdiffeq takes one step over [t0, t1], and the inverse and log-det are far from "
                             f"exact), or use an adaptive solver such as 'dopri5'")
        if max_steps is not None:
            _positive_int(max_steps, "max_steps")
        if init not in INITS:
            raise ValueError(f"init={init!r}: expected one of {INITS}")

        self.lattice_shape = shape
        self.nd = len(shape)
        self.t0, self.t1 = float(t0), float(t1)
        self.method = method
        self.rtol = _tolerance(rtol, "rtol")
        self.atol = _tolerance(atol, "atol")
        self.train_rtol = _tolerance(train_rtol, "train_rtol")
        self.train_atol = _tolerance(train_atol, "train_atol")
        self.adjoint = adjoint
        self.options = None if options is None else dict(options)
        self.max_steps = max_steps
        self.init = init
        if init == "normal":
            omega = torch.arange(1, self.n_basis, dtype=torch.get_default_dtype())
            w_basis = torch.randn(self.bond_basis, self.n_basis) / math.sqrt(self.n_basis)
            w_time = torch.randn(self.bond_time, self.n_time) / math.sqrt(self.n_time)
        else:   # "gerdes": the initialisation of Gerdes et al.'s code (the paper's ref. [27]; module docstring)
            omega = torch.rand(self.n_basis - 1) * 5.0
            w_basis = nn.init.orthogonal_(torch.empty(self.bond_basis, self.n_basis)) / self.n_basis
            w_time = nn.init.orthogonal_(torch.empty(self.bond_time, self.n_time)) / self.n_time
        self.omega = nn.Parameter(omega)
        self.w_basis = nn.Parameter(w_basis)
        self.w_time = nn.Parameter(w_time)

    @abc.abstractmethod
    def spatial_weights(self) -> torch.Tensor:
        """The spatial weights ``W~`` in the form ``_field_and_divergence`` takes (built once per solve)."""

    @abc.abstractmethod
    def _field_and_divergence(self, psi: torch.Tensor, t: torch.Tensor | float,
                              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``G(Psi, t)`` (eq. 23) and its exact divergence for ``psi`` of shape ``(N, *L)``."""

    def time_kernel(self, t: torch.Tensor | float) -> torch.Tensor:
        """``K(t)_d``, the first ``D`` Fourier terms on ``[t0, t1]``: ``(1, cos 2 pi tau, sin 2 pi tau, ...)``."""
        ref = self.w_time
        t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
        tau = (t - self.t0) / (self.t1 - self.t0)
        terms = [torch.ones_like(tau)]
        for d in range(1, self.n_time):
            arg = 2.0 * math.pi * ((d + 1) // 2) * tau
            terms.append(torch.cos(arg) if d % 2 else torch.sin(arg))
        return torch.stack(terms)

    def _features(self, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``H(Psi)`` and ``H'(Psi)`` of eq. (24), channels on axis 1: shape ``(N, F, *L)`` each."""
        w = self.omega.reshape((1, -1) + (1,) * self.nd)
        arg = w * psi.unsqueeze(1)
        h = torch.cat([psi.unsqueeze(1), torch.sin(arg)], dim=1)
        dh = torch.cat([torch.ones_like(psi).unsqueeze(1), w * torch.cos(arg)], dim=1)
        return h, dh


    # --- integration ------------------------------------------------------------------------------------

    def vector_field(self, psi: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``G(Psi, t)`` of eq. (23) for ``psi`` of shape ``(*B, *L)``."""
        flat = self._check(psi, "psi")
        return self._field_and_divergence(flat, t)[0].reshape(psi.shape)

    def divergence(self, psi: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``sum_x dG_x/dPsi_x`` in closed form, shape ``psi.shape[:-nd]``."""
        flat = self._check(psi, "psi")
        return self._field_and_divergence(flat, t)[1].reshape(psi.shape[: psi.ndim - self.nd])

    # --- integration ------------------------------------------------------------------------------------

    def _check(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim < self.nd or tuple(x.shape[x.ndim - self.nd:]) != self.lattice_shape:
            lattice = ", ".join(map(str, self.lattice_shape))
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (*batch, {lattice}) "
                             "(batch axes first, then the fine lattice)")
        if not x.is_floating_point():
            raise ValueError(f"{name} has dtype {x.dtype}; expected a real floating field")
        if x.dtype != self.w_spatial.dtype:
            raise ValueError(f"{name} has dtype {x.dtype} but the layer's parameters are {self.w_spatial.dtype}; "
                             f"convert the layer with .to({x.dtype})")
        return x.reshape((-1,) + self.lattice_shape)

    def _tolerances(self, dtype: torch.dtype) -> tuple[float, float]:
        default = (1e-8, 1e-8) if dtype == torch.float64 else (1e-5, 1e-6)
        rtol = default[0] if self.rtol is None else self.rtol
        atol = default[1] if self.atol is None else self.atol
        if self.training:   # training mode: the training tolerances where set
            rtol = rtol if self.train_rtol is None else self.train_rtol
            atol = atol if self.train_atol is None else self.train_atol
        return rtol, atol

    def _integrate(self, x: torch.Tensor, context: Any, reverse: bool, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if context is not None:
            raise ValueError(f"context: {type(self).__name__} takes no context (expected None)")
        flat = self._check(x, name)
        tdq = _torchdiffeq()
        rtol, atol = self._tolerances(flat.dtype)
        ends = (self.t1, self.t0) if reverse else (self.t0, self.t1)
        times = torch.tensor(ends, dtype=flat.dtype, device=flat.device)

        # The state is the displacement D(t) = Psi(t) - Psi(start) (plus the log-det l), so that G = 0 gives
        # exactly D = 0 and the identity (integrating Psi itself, the dopri5 interpolant reproduces Psi only to
        # an ulp). In adjoint mode the start field rides along as a constant state component: odeint_adjoint
        # differentiates only with respect to the initial state and adjoint_params, not closure tensors.
        kwargs: dict[str, Any] = {"rtol": rtol, "atol": atol, "method": self.method, "options": self._solver_options()}
        zero_ld = flat.new_zeros(flat.shape[0])
        if self.adjoint:
            # the spatial weights are rebuilt inside the dynamics: the adjoint pass differentiates the
            # dynamics alone with respect to the parameters
            def dynamics_adj(t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
                g, div = self._field_and_divergence(state[0] + state[1], t)         # eqs. 22, 27
                return torch.zeros_like(state[0]), g, div

            params = tuple(p for p in self.parameters() if p.requires_grad)
            with self._solver_errors(rtol, atol, flat, name):
                out = tdq.odeint_adjoint(dynamics_adj, (flat, torch.zeros_like(flat), zero_ld), times,
                                         adjoint_params=params, **kwargs)[1:]
        else:
            kernels = self.spatial_weights()                                        # once per solve
            field = self._field_and_divergence
            if self.recompute and torch.is_grad_enabled():
                # keep each evaluation's input field only; its activations are rebuilt in the backward pass
                def field(psi: torch.Tensor, t: torch.Tensor, kern: torch.Tensor) -> tuple[torch.Tensor, ...]:
                    return checkpoint(self._field_and_divergence, psi, t, kern, use_reentrant=False)

            def dynamics(t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
                return field(flat + state[0], t, kernels)                          # eqs. 22, 27

            with self._solver_errors(rtol, atol, flat, name):
                out = tdq.odeint(dynamics, (torch.zeros_like(flat), zero_ld), times, **kwargs)
        y, ld = flat + out[0][-1], out[1][-1]                                     # eq. 26
        batch = x.shape[: x.ndim - self.nd]
        return y.reshape(x.shape), ld.reshape(batch)

    def _solver_options(self) -> dict[str, Any] | None:
        """:attr:`options`, with ``max_num_steps = max_steps`` for an adaptive solver that does not set it."""
        if self.max_steps is None or not _adaptive(self.method):
            return self.options
        options = dict(self.options or {})
        options.setdefault("max_num_steps", self.max_steps)
        return options

    @contextlib.contextmanager
    def _solver_errors(self, rtol: float, atol: float, start: torch.Tensor, name: str) -> Iterator[None]:
        """torchdiffeq reports a solve that cannot meet its tolerance with a bare AssertionError ("underflow in
        dt", "max_num_steps exceeded"); raise :class:`ODESolverError` naming the options instead -- or, for any of
        its assertions, when the start field ``name`` was not finite (NaN/inf make every step fail), a ValueError
        saying so. The finiteness check runs on this failure path only: no device synchronisation in a solve
        that succeeds."""
        try:
            yield
        except AssertionError as exc:
            bad = int((~torch.isfinite(start)).sum())
            if bad:
                raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); {type(self).__name__} "
                                 "integrates finite fields only") from exc
            msg = str(exc)
            if "underflow in dt" not in msg and "max_num_steps" not in msg:
                raise
            raise ODESolverError(
                f"{type(self).__name__}: the {self.method} solve did not reach rtol={rtol:g}, atol={atol:g} ({msg}); "
                "the flow "
                f"is too stiff for these tolerances (options={self._solver_options()}). Loosen rtol/atol, raise "
                "max_steps (options['max_num_steps']; [model] ode_max_steps), lower the learning rate, or use "
                "float64.") from exc

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F(x), log|det dF/dx|)``: integrate ``t0 -> t1`` (eqs. 26, 28)."""
        return self._integrate(x, context, reverse=False, name="x")

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(F^-1(y), log|det dF^-1/dy|)``: integrate ``t1 -> t0``; the log-det is ``-int div G dt``."""
        return self._integrate(y, context, reverse=True, name="y")

