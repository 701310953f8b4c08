"""Joint models ``q(U, phi_0, ..., phi_N) = q(U) prod_i q(phi_i | U)`` (eqs. 18-22, 39-40 of arXiv:2207.08945).

The *marginal* model ``q(U)`` is any gauge-field :class:`~latticekit.flows.Model` (gauge-equivariant
couplings on a Haar prior, eq. 21); each Hasenbusch monomial ``i`` has its own conditional model
``q(phi_i | U)`` (:class:`~.conditional.ConditionalPFModel`, eq. 22), all sharing one context trunk.
Target, with ``S_i = phi_i^dag K_i phi_i`` (:class:`~.targets.PFTarget`)::

    p(U, phi) = exp(-S_g(U)) prod_i [exp(-S_i(U, phi_i)) / pi^{n_i}] / Z,   Z = int dU exp(-S_g) det(M)

so ``p(U) = exp(-S_g) det M / Z`` (eq. 19, ``prod_i 1/det K_i = det M``, eq. 38) and the joint weight
of eq. (40) is ``log w = -S_g - sum_i (S_i + n_i log pi) - log q(U) - sum_i log q(phi_i | U)`` (up to
``log Z``). :class:`JointAction` is this ``S`` for the :class:`~latticekit.flows.Trainer`: reverse-KL
self-training of the whole joint model (Sec. IV.A, "we train the joint model as a whole"), the
gradients of ``S_i`` with respect to the gauge field and the pseudofermions exact (:mod:`.targets`).

Objectives (``JointModel.objective``):

* ``"joint"`` (default): samples ``(U, phi_0..phi_N)``, the loss is the joint reverse KL;
* ``"marginal"``: samples ``U`` only and :class:`MarginalAction` is ``S_g - log det(M + mu_0)`` with the
  log-determinant gradient estimated stochastically (arXiv:2106.05934 App. C, or the lower-variance form of
  :mod:`.targets`) or, on small lattices, exactly (the marginal stage of the
  two-stage training of arXiv:2208.03832); its value is the exact dense log det where the lattice is
  small enough, else the value omits it (the gradient does not): the loss, ESS and log Z that the
  Trainer then reports refer to ``S_g`` alone, and the model is judged by :func:`~.pseudo_marginal.pf_weights`.
  Freeze the marginal (:meth:`JointModel.freeze_marginal`) and train with ``"joint"`` for the
  conditional stage.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.actions import WilsonGaugeAction
>>> from latticekit.flows import HaarPrior, Model, u1_gauge_flow
>>> from latticekit.flows.pseudofermion import monomial_targets
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0, backend="torch")
>>> targets = monomial_targets(lk.U1, lat, 0.2, even_odd=True, hasenbusch_mus=[0.1])
>>> jm = JointModel.build(Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 2)), targets, n_layers=2,
...                       n_hidden=4).double()
>>> x, log_q = jm.sample(3, rng)
>>> len(x.phis), x.U.shape, bool(torch.allclose(log_q, jm.log_prob(x)))
(2, torch.Size([3, 2, 4, 4]), True)
>>> S = JointAction(WilsonGaugeAction(lk.U1, lat, beta=2.0), targets)
>>> S(x).shape
torch.Size([3])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from latticekit.backends import Generator

from ..model import Model
from .conditional import ConditionalPFModel
from .context import PFContext, PFContextTrunk
from .targets import ESTIMATORS, PFTarget, dense_normal_matrix, exact_log_det

__all__ = ["GRADIENTS", "JointAction", "JointModel", "JointSample", "MarginalAction", "OBJECTIVES"]

#: log-determinant gradients of the marginal objective (:class:`MarginalAction`)
GRADIENTS = (*ESTIMATORS, "dense")

#: training objectives of :class:`JointModel`
OBJECTIVES = ("joint", "marginal")


@dataclass
class JointSample:
    """A batch of joint samples: gauge fields and one pseudofermion per monomial.

    Attributes
    ----------
    U : torch.Tensor
        ``(B, Nd, *G, *L)``.
    phis : list of torch.Tensor
        ``(B, Ns, Nc, *L)`` per monomial (empty for the marginal objective).
    log_q_U : torch.Tensor or None
        ``log q(U)`` (B,) as drawn.
    log_q_phis : list of torch.Tensor
        ``log q(phi_i | U)`` (B,) as drawn.
    """

    U: torch.Tensor
    phis: list[torch.Tensor] = field(default_factory=list)
    log_q_U: torch.Tensor | None = None
    log_q_phis: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.U.shape[0])


class JointModel(Model):
    """``q(U) prod_i q(phi_i | U)`` (module docstring). ``self.prior``/``self.flow`` are the marginal's.

    Parameters
    ----------
    marginal : Model
        Gauge-field model ``q(U)``.
    conditionals : sequence of ConditionalPFModel
        One per monomial, in the order of the targets.
    trunk : PFContextTrunk
        The context trunk shared by all conditionals.
    """

    def __init__(self, marginal: Model, conditionals: Sequence[ConditionalPFModel], trunk: PFContextTrunk) -> None:
        if not isinstance(marginal, Model):
            raise TypeError(f"marginal={type(marginal).__name__}: expected a latticekit.flows.Model")
        super().__init__(marginal.prior, marginal.flow)
        if not conditionals:
            raise ValueError("conditionals: expected at least one conditional model (one per monomial)")
        for i, c in enumerate(conditionals):
            if not isinstance(c, ConditionalPFModel):
                raise TypeError(f"conditionals[{i}]={type(c).__name__}: expected a ConditionalPFModel")
            if c.trunk is not trunk:
                raise ValueError(f"conditionals[{i}]: does not use the shared context trunk")
        self.conditionals = nn.ModuleList(conditionals)
        self.trunk = trunk
        self.objective = "joint"

    @classmethod
    def build(cls, marginal: Model, targets: Sequence[PFTarget], *, n_layers: int = 8, partitioning: str = "spatial",
              n_pt: int | None = None, hidden_features: int = 2, n_hidden: int = 16, head_hidden: Sequence[int] = (),
              kernel_size: int = 3, coords: bool = True, init_gain: float = 0.5,
              init_bias_std: float = 0.0) -> "JointModel":
        """One :meth:`ConditionalPFModel.build` per target on a new shared trunk (App. B.2)."""
        if not targets:
            raise ValueError("targets: expected at least one monomial")
        t0 = targets[0]
        trunk = PFContextTrunk(t0.group, t0.lattice, n_hidden=n_hidden, kernel_size=kernel_size, coords=coords)
        from .context import xavier_init

        xavier_init(trunk, init_gain, init_bias_std)
        conds = [ConditionalPFModel.build(t, trunk, n_layers=n_layers, partitioning=partitioning, n_pt=n_pt,
                                          hidden_features=hidden_features, head_hidden=head_hidden,
                                          kernel_size=kernel_size, init_gain=init_gain, init_bias_std=init_bias_std)
                 for t in targets]
        return cls(marginal, conds, trunk)

    @property
    def targets(self) -> list[PFTarget]:
        return [c.target for c in self.conditionals]

    def set_objective(self, objective: str) -> None:
        """``"joint"`` or ``"marginal"`` (module docstring)."""
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r}: expected one of {OBJECTIVES}")
        self.objective = objective

    def freeze_marginal(self, frozen: bool = True) -> None:
        """Stop (or resume) training the marginal model (the conditional stage of two-stage training)."""
        for p in list(self.prior.parameters()) + list(self.flow.parameters()):
            p.requires_grad_(not frozen)

    def marginal_frozen(self) -> bool:
        """True when no parameter of the marginal model is trained (:meth:`freeze_marginal`)."""
        return not any(p.requires_grad for p in list(self.prior.parameters()) + list(self.flow.parameters()))

    def sample_marginal(self, n: int, rng: Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` gauge fields and ``log q(U)``. With the marginal frozen they are drawn without autograd: neither
        ``U`` nor ``log q(U)`` depends on a trained parameter then, and the conditional stage of two-stage
        training does not keep the graph of the (deep) gauge flow."""
        if self.marginal_frozen():
            with torch.no_grad():
                return Model.sample(self, n, rng)
        return Model.sample(self, n, rng)

    def sample_conditionals(self, U: torch.Tensor, rng: Generator, n_pf: int = 1
                            ) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """``n_pf`` pseudofermions per monomial for the gauge fields ``U``: ``phis[i][k]``, ``log_q[i][k]``.

        The layers' parameters depend on ``U`` alone, so without autograd (sampling) they are computed once and
        reused for the ``n_pf`` draws (a :class:`~.context.PFContext` with a cache): the same numbers as ``n_pf``
        separate draws. With autograd on (training) every draw computes them: activation checkpointing
        (``recompute_layers``) must find the same saved tensors when it reruns a layer.
        """
        trunk = self.trunk.context(U)
        ctx = PFContext(trunk.U, trunk.features, cache={} if int(n_pf) > 1 and not torch.is_grad_enabled() else None,
                        links=trunk.links)
        phis, lqs = [], []
        for c in self.conditionals:
            pi, li = [], []
            for _ in range(int(n_pf)):
                p, lq = c.sample(U, rng, ctx)
                pi.append(p)
                li.append(lq)
            phis.append(pi)
            lqs.append(li)
        return phis, lqs

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[JointSample, torch.Tensor]:  # type: ignore[override]
        """``n`` joint samples and ``log q(U, phi) = log q(U) + sum_i log q(phi_i | U)`` (eq. 39)."""
        if context is not None:
            raise ValueError("context: a joint model takes no external context")
        U, log_q_U = self.sample_marginal(n, rng)
        if self.objective == "marginal":
            return JointSample(U, [], log_q_U, []), log_q_U
        phis, lqs = self.sample_conditionals(U, rng)
        lq = [l[0] for l in lqs]
        return JointSample(U, [p[0] for p in phis], log_q_U, lq), log_q_U + sum(lq)

    sample_with_prior = None  # type: ignore[assignment]  # the joint prior draw is not a single tensor

    def log_prob(self, x: JointSample, context: Any = None) -> torch.Tensor:  # type: ignore[override]
        """``log q(U) + sum_i log q(phi_i | U)`` recomputed through the inverse flows."""
        if not isinstance(x, JointSample):
            raise TypeError(f"x={type(x).__name__}: expected a JointSample")
        out = Model.log_prob(self, x.U)
        if self.objective == "marginal" and not x.phis:
            return out
        if len(x.phis) != len(self.conditionals):
            raise ValueError(f"x has {len(x.phis)} pseudofermions; the model has {len(self.conditionals)} monomials")
        ctx = self.trunk.context(x.U)
        for c, phi in zip(self.conditionals, x.phis):
            out = out + c.log_prob(x.U, phi, ctx)
        return out


class JointAction:
    """``S(U, phi) = S_g(U) + sum_i [S_i(U, phi_i) + n_i log pi]``: the joint target of eq. (40) (module docstring).

    Parameters
    ----------
    gauge_action : action object
        ``S_g`` (``latticekit.actions.WilsonGaugeAction``), called on torch tensors.
    targets : sequence of PFTarget
        The monomials (with the training regulator where wanted: :meth:`PFTarget.with_shift`).
    """

    def __init__(self, gauge_action: Any, targets: Sequence[PFTarget]) -> None:
        self.gauge_action = gauge_action
        self.targets = list(targets)
        if not self.targets:
            raise ValueError("targets: expected at least one monomial")

    def __repr__(self) -> str:
        return f"JointAction({self.gauge_action!r}, {self.targets!r})"

    def check_model(self, model: Any) -> None:
        """Raise unless ``model`` is a JointModel whose conditionals sample these monomials' variables (one per
        monomial; group, lattice and even/odd support agree). :class:`~latticekit.flows.Trainer` calls it: an
        even/odd model trained against full-lattice targets has pseudofermions of the same shape and trained
        silently against the wrong density (another kappa or shift is allowed: that is the training regulator)."""
        conditionals = getattr(model, "conditionals", None)
        if conditionals is None:
            raise TypeError(f"model={type(model).__name__}: a JointAction needs a JointModel")
        if len(conditionals) != len(self.targets):
            raise ValueError(f"targets: {len(self.targets)} monomials for a model with {len(conditionals)} "
                             "conditional models")
        for i, (t, c) in enumerate(zip(self.targets, conditionals)):
            c.target.check_same_variables(t, f"targets[{i}]")

    def gauge(self, U: torch.Tensor) -> torch.Tensor:
        fn = getattr(self.gauge_action, "action", self.gauge_action)
        return fn(U)

    def action(self, x: JointSample) -> torch.Tensor:
        if len(x.phis) != len(self.targets):
            raise ValueError(f"x has {len(x.phis)} pseudofermions; expected one per monomial ({len(self.targets)})")
        S = self.gauge(x.U)
        for t, phi in zip(self.targets, x.phis):
            S = S + t.action(x.U, phi) + t.log_normalizer()
        return S

    __call__ = action


class MarginalAction:
    """``S_g(U) - log det(M + mu_0)`` for the marginal objective (module docstring).

    ``gradient`` chooses the log-determinant gradient: ``"dirac"`` (default) or ``"normal"``, the stochastic
    estimators of :meth:`PFTarget.logdet_gradient_surrogate` with ``n_noise`` noise vectors per monomial
    (``"normal"`` is the form of arXiv:2106.05934 App. C, ``"dirac"`` the same mean with a smaller variance); or
    ``"dense"``, the exact gradient of the dense ``log det`` (Cholesky factors of ``M + mu``; lattices with at
    most ``dense_max`` complex pseudofermion components per monomial). The value is the exact dense log det
    when every monomial has at most ``dense_max`` components, else it is left out of the value (which then
    equals ``S_g`` for the metrics; the gradient is unchanged).

    The monomials' product is ``det(M + mu_0)`` (eq. 38), so the target does not depend on the Hasenbusch
    split; the stochastic gradients do (each monomial is estimated with its own noise).
    """

    def __init__(self, gauge_action: Any, targets: Sequence[PFTarget], rng: Generator, *, n_noise: int = 1,
                 dense_max: int = 1024, gradient: str = "dirac") -> None:
        if int(n_noise) < 1:
            raise ValueError(f"n_noise={n_noise!r}: expected >= 1")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient={gradient!r}: expected one of {GRADIENTS}")
        self.gauge_action = gauge_action
        self.targets = list(targets)
        self.rng = rng
        self.n_noise = int(n_noise)
        self.gradient = gradient
        self.dense = all(t.ndof <= int(dense_max) for t in self.targets)
        if gradient == "dense" and not self.dense:
            raise ValueError(f"gradient='dense': the dense log det needs at most dense_max = {dense_max} complex "
                             f"pseudofermion components per monomial, got {max(t.ndof for t in self.targets)}; use "
                             "a stochastic gradient ('dirac')")

    def __repr__(self) -> str:
        return (f"MarginalAction({self.gauge_action!r}, {self.targets!r}, n_noise={self.n_noise}, "
                f"gradient={self.gradient!r})")

    def action(self, x: Any) -> torch.Tensor:
        U = x.U if isinstance(x, JointSample) else x
        fn = getattr(self.gauge_action, "action", self.gauge_action)
        S = fn(U)
        if self.gradient == "dense":  # every monomial shares M = D D^dag (the same kappa, even/odd or not)
            M = dense_normal_matrix(self.targets[0].operator(U))
            return S - sum(t.log_det_from_matrix(M) for t in self.targets)
        if self.dense:
            S = S - exact_log_det(self.targets, self.targets[0].operator(U.detach()))
        for t in self.targets:
            S = S - t.logdet_gradient_surrogate(U, self.rng, self.n_noise, self.gradient)
        return S

    __call__ = action
