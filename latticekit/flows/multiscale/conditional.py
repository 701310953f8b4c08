"""Staple-conditional models ``q(U | S_1..S_n)`` (arXiv:2404.10819, Sec. 3.1, eq. 11).

"There are two components to a normalizing flow-based staple-conditional model: a prior (or base)
distribution ``r(z | S_1..S_n)``, ``z in G``, and a conditional normalizing flow ``f(z | S_1..S_n)``":

    q(U | S_1..S_n) = r(f^{-1}(U) | S_1..S_n) |det d f^{-1}(U) / dU|                     (eq. 11)

:class:`StapleConditional` is exactly that, as a :class:`~latticekit.flows.Model` whose ``context`` is the
staple tensor ``(M, n, *G)`` (one row per link; the ``M`` links are sampled independently given their
staples, "each gauge link within ``U_perp`` is sampled independently conditioned on the staples"):

* prior (:mod:`.heatbath_prior`): ``"heatbath"`` (eq. 6, exactly normalised: U(1) and SU(2)) or ``"haar"``;
* layers: ``"spline"`` (U(1): :class:`~.conditional_u1.U1StapleSpline`, circular splines on the active loop
  of eq. 15), ``"spectral"`` (SU(N): :class:`~.conditional_sun.SUStapleSpectral`, spectral flows on the active
  loop of eqs. 12-14, iterated with their own ``alpha_i``), ``"residual"`` (:class:`~.residual.StapleResidual`,
  either group), ``"auto"`` (spline for U(1), spectral for SU(N)).

All pieces are gauge covariant (each module docstring), so ``q(Omega(x) U Omega(x+mu)^dag | Omega(x+mu) S
Omega(x)^dag) = q(U | S)``.

Examples
--------
>>> import torch, latticekit as lk
>>> q = ConditionalSpec(n_layers=2, hidden=(4,)).build(lk.U1, 2).to(torch.float64)
>>> S = lk.U1.random(lk.backends.rng(0, backend="torch"), (5, 2))
>>> U, lq = q.sample(5, lk.backends.rng(1, backend="torch"), context=S)
>>> bool(torch.allclose(lq, q.log_prob(U, context=S)))
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from latticekit.groups import Group, SUGroup, U1Group

from ..base import Flow
from ..model import Model
from ..nets import ACTIVATIONS
from .conditional_sun import SUStapleSpectral
from .conditional_u1 import U1StapleSpline
from .heatbath_prior import heatbath_prior
from .residual import StapleResidual

__all__ = ["ConditionalSpec", "StapleConditional"]

_LAYERS = ("auto", "spline", "spectral", "residual")


@dataclass
class ConditionalSpec:
    """How to build the staple-conditional models of a multiscale model (one per role and scale).

    Attributes
    ----------
    prior : str
        ``"heatbath"`` (eq. 6; U(1), SU(2)), ``"haar"``, or ``"auto"`` (heatbath where normalisable, else Haar).
    beta : float
        Initial staple weight of the heatbath prior (``beta~`` of eq. 6).
    learn_beta : bool
    layer : str
        ``"auto"``, ``"spline"`` (U(1)), ``"spectral"`` (SU(N)) or ``"residual"``.
    n_layers : int
        Coupling layers per model (0: the prior alone).
    bins, hidden, act, zero_init : options of the layers
    residual_bound : float
        ``sum |eps_i|`` bound of residual layers.

    Examples
    --------
    >>> import latticekit as lk
    >>> ConditionalSpec(prior="auto").prior_kind(lk.SU(3)), ConditionalSpec().layer_kind(lk.SU(2))
    ('haar', 'spectral')
    """

    prior: str = "auto"
    beta: float = 1.0
    learn_beta: bool = True
    layer: str = "auto"
    n_layers: int = 2
    bins: int = 8
    hidden: tuple[int, ...] = field(default=(16,))
    act: str = "leaky_relu"
    zero_init: bool = True
    residual_bound: float = 0.5

    def prior_kind(self, group: Group) -> str:
        """The prior used for ``group`` (resolves ``"auto"``)."""
        if self.prior == "auto":
            return "heatbath" if isinstance(group, U1Group) or getattr(group, "N", 0) == 2 else "haar"
        return self.prior

    def layer_kind(self, group: Group) -> str:
        """The coupling type used for ``group`` (resolves ``"auto"``)."""
        if self.layer == "auto":
            return "spline" if isinstance(group, U1Group) else "spectral"
        return self.layer

    def check(self, group: Group) -> None:
        """Refuse options that do not fit ``group`` (before any model is built)."""
        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or SU(N)")
        if self.layer not in _LAYERS:
            raise ValueError(f"layer={self.layer!r}: expected one of {_LAYERS}")
        kind = self.layer_kind(group)
        if kind == "spline" and not isinstance(group, U1Group):
            raise ValueError(f"layer='spline': circular-spline couplings act on U(1) links; {group.name} uses "
                             "'spectral' or 'residual'")
        if kind == "spectral" and isinstance(group, U1Group):
            raise ValueError("layer='spectral': spectral couplings act on SU(N) links; U(1) uses 'spline' or 'residual'")
        if isinstance(self.n_layers, bool) or not isinstance(self.n_layers, int) or self.n_layers < 0:
            raise ValueError(f"n_layers={self.n_layers!r}: expected a number of coupling layers >= 0")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act={self.act!r}: expected one of {', '.join(ACTIVATIONS)}")
        h = self.hidden
        if not isinstance(h, (tuple, list)) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in h):
            raise ValueError(f"hidden={h!r}: expected a sequence of layer widths >= 1, e.g. (16,)")
        heatbath_prior(group, 1, self.prior_kind(group), self.beta)     # raises for SU(N>=3) + heatbath

    def build(self, group: Group, n_staples: int) -> "StapleConditional":
        """A :class:`StapleConditional` for links of ``group`` with ``n_staples`` staples."""
        return StapleConditional(group, n_staples, self)


class StapleConditional(Model):
    """``q(U | S_1..S_n)`` of eq. 11: a one-link prior and conditional couplings (module docstring).

    ``sample(M, rng, context=S)`` and ``log_prob(U, context=S)`` with ``S`` of shape ``(M, n_staples, *G)``,
    links ``(M, *G)``; log-densities ``(M,)`` w.r.t. normalised Haar measure. With ``n_staples = 0`` the model
    is the Haar prior (no couplings).

    Parameters
    ----------
    group : Group
    n_staples : int
    spec : ConditionalSpec, optional

    Examples
    --------
    >>> import latticekit as lk
    >>> q = StapleConditional(lk.SU(3), 4, ConditionalSpec(n_layers=1, hidden=(4,)))
    >>> type(q.prior).__name__, [type(l).__name__ for l in q.flow.layers]
    ('HaarLinkPrior', ['SUStapleSpectral'])
    """

    def __init__(self, group: Group, n_staples: int, spec: ConditionalSpec | None = None) -> None:
        spec = spec if spec is not None else ConditionalSpec()
        spec.check(group)
        prior = heatbath_prior(group, n_staples, spec.prior_kind(group), spec.beta, spec.learn_beta)
        layers: list[Any] = []
        kind = spec.layer_kind(group)
        for _ in range(spec.n_layers if n_staples > 0 else 0):
            if kind == "residual":
                layers.append(StapleResidual(group, n_staples, hidden=spec.hidden, act=spec.act,
                                             bound=spec.residual_bound, zero_init=spec.zero_init))
            elif kind == "spline":
                layers.append(U1StapleSpline(n_staples, bins=spec.bins, hidden=spec.hidden, act=spec.act,
                                             zero_init=spec.zero_init))
            else:
                layers.append(SUStapleSpectral(group, n_staples, bins=spec.bins, hidden=spec.hidden, act=spec.act,
                                               zero_init=spec.zero_init))
        super().__init__(prior, Flow(layers))
        self.group, self.n_staples = group, int(n_staples)

    def extra_repr(self) -> str:
        return f"group={self.group.name}, n_staples={self.n_staples}"
