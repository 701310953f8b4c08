"""Flow-model family ``qcd4d``: the Nf = 2 joint model of 4D QCD (Abbott et al., arXiv:2208.03832, Sec. 3).

``[model] coupling = "qcd4d"`` (for ``action.kind = "wilson_nf2"`` on a 4D lattice with an SU(N) group)
builds a :class:`~latticekit.flows.pseudofermion.JointModel` as in the proceedings (Sec. 3.1):

* **marginal model** ``q(U)``: Haar prior and ``n_layers`` (48) gauge-equivariant spectral spline couplings
  (:class:`~latticekit.flows.SUPlaquetteCoupling`, ``bins`` = 16 knots) on the shifted-stripe masks
  (:mod:`latticekit.flows.shifted_masks`: ``mask_width`` = 4, ``mask_shifts`` = [1, 2, 1, 1], the
  alternation scheme; width 2 and shifts [1, 1, 1, 1] on lattices whose extents are not multiples of 4, e.g.
  the 2^4 CPU scale), spatially separated 4D convolutions (``hidden`` = [32, 32, 32]: four convolutions of
  kernel 3), the real and imaginary traces of the frozen plaquettes as input (``loop_context = false``),
  Xavier-normal weights with gain ``init_gain`` = 0.5 and zero biases;
* **conditional model** ``q(phi | U)``: Gaussian prior and ``pf_layers`` (36) pseudofermion layers, PTCNs
  with ``n_pt`` = 6, ``pt_hidden`` = 4 (``H``), the shared context CNN with ``context_hidden`` = 8 channels
  and the ``x_i mod 4`` inputs; the masks rotate through the spatial pair and the projectors
  ``(1 +- gamma_mu)/2``, ``mu`` in {0, 1, 2, 3, 5} (``partitioning = "gamma"``: 12 per cycle, 36 = 3
  cycles); Xavier-normal gain ``pf_init_gain`` = 0.3, biases normal with ``pf_bias_std`` = 0.05.

Training (``latticekit train``) runs the paper's two stages as one job (:mod:`.pf_staged`, on :mod:`.stages`):

1. ``marginal``: the marginal model against ``S_g - log det(D D^dag + mu0)`` with the stochastic
   determinant gradient (``n_noise`` vectors; ``logdet_gradient = "dirac"``, the lower-variance form of
   :mod:`latticekit.flows.pseudofermion.targets`; ``"normal"``: arXiv:2106.05934 App. C; ``"dense"``: the
   exact gradient on small lattices), with the ``[train]`` options (the
   paper: 21k steps, batch 512, lr 1e-3 decaying by 0.8 every 10k steps, Adam eps 1e-2, clipping by norm
   10 and value 0.1: ``examples/qcd4d_nf2.toml`` lists them);
2. ``conditional_1 .. conditional_n``: the joint reverse KL with the marginal frozen (its draws then carry
   no autograd graph), one stage per entry of ``conditional_steps``, ``conditional_batch_size``,
   ``conditional_lr`` and ``conditional_step_size`` (learning rate times ``conditional_gamma`` every that many
   steps; 0: constant). The paper: 16k steps at batch 640 and lr 1e-4; 28k at 640 and 5e-5, stepped to
   2.5e-5 after 20k; 17k at 800 and 2.5e-5.

The Dirac operator is regulated as ``D D^dag + mu0`` (``mu0`` = 1e-5) in training only. ``latticekit sample``
runs pseudo-marginal flow MCMC with ``n_pf`` pseudofermion draws per gauge field (the paper's ESS ~ 0.1 is
quoted with 512 draws), as the ``pseudofermion`` family does.

Bad input, refused before training: a lattice that is not 4D or has odd extents, a U(1) group, mask
widths and shifts that do not tile the lattice or put two active links into one plaquette, conditional
schedules of different lengths, and ``kappa >= 1/8``: the flow proposes gauge fields far from the typical
ones (at the start of training, Haar-random fields), and only for ``kappa < 1/8`` is ``D = 1 - kappa H``
(``||H|| <= 2 Nd = 8``) invertible on every gauge field, so that the determinant and the CG solves of
training and sampling are finite on every proposal. (The paper's point is ``kappa = 0.1``.)

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [2, 2, 2, 2]},
...                             "action": {"kind": "wilson_nf2", "group": "SU2", "beta": 1.0, "kappa": 0.1},
...                             "model": {"coupling": "qcd4d", "n_layers": 2, "hidden": [2], "bins": 4,
...                                       "pf_layers": 2, "n_pt": 2, "pt_hidden": 2, "context_hidden": 2}})
>>> model, action, lat = build_flow(cfg)
>>> type(model).__name__, [type(l.mask).__name__ for l in model.flow.layers], len(model.conditionals[0].flow)
('JointModel', ['ShiftedStripeMask', 'ShiftedStripeMask'], 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .models import FlowFamily
from .pf_staged import CONDITIONAL_LISTS, check_conditional_schedule, pf_staged_train, pf_stages
from .pseudofermion_models import GRADIENTS, pseudofermion_sampler, theory_targets
from .scalar_models import check_activation

__all__ = ["QCD4D", "QCD4DSettings", "qcd4d_flow", "qcd4d_stages", "qcd4d_train"]

#: the largest hopping parameter accepted: D = 1 - kappa H is invertible on every gauge field for kappa < 1/8
KAPPA_MAX = 0.125


@dataclass
class QCD4DSettings:
    """``[model]`` keys of ``coupling = "qcd4d"`` (module docstring)."""

    n_layers: int | None = setting(None, ge=1, doc="spectral coupling layers of the marginal model (default 48)")
    mask_width: int = setting(0, ge=0, doc="shifted-stripe width (0: 4 if every extent is a multiple of 4, else 2)")
    mask_shifts: list[int] = setting([], doc="shift per orientation (empty: [1, 2, 1, 1] at width 4, else all 1)")
    hidden: list[int] = setting([32, 32, 32], ge=1, doc="hidden channels of the marginal model's 4D CNNs")
    kernel_size: int = setting(3, ge=1, odd=True, doc="CNN kernel size (odd)")
    act: str = setting("leaky_relu", check=check_activation, doc="activation of the marginal model's CNNs")
    bins: int = setting(16, ge=2, doc="spline knots of the spectral flows")
    loop_context: bool = setting(False, doc="also feed the two-plaquette loops (the paper: frozen plaquettes only)")
    init_gain: float = setting(0.5, gt=0.0, le=10.0, doc="Xavier-normal gain of the marginal model's convolutions")
    pf_layers: int = setting(36, ge=1, doc="pseudofermion layers per monomial")
    partitioning: str = setting("gamma", choices=("spatial", "spin", "alternating", "gamma"),
                                doc="masks of the pseudofermion layers")
    n_pt: int = setting(6, ge=1, doc="PTCs per PTCN")
    pt_hidden: int = setting(4, ge=1, doc="features H of the intermediate PTCs")
    context_hidden: int = setting(8, ge=1, doc="channels of the shared context CNN")
    context_coords: bool = setting(True, doc="feed x_i mod 4 to the context CNN")
    pf_init_gain: float = setting(0.3, gt=0.0, le=10.0, doc="Xavier-normal gain of the conditional model")
    pf_bias_std: float = setting(0.05, ge=0.0, le=1.0, doc="standard deviation of the conditional model's biases")
    mu0: float = setting(1e-5, ge=0.0, le=1.0, doc="training regulator D D^dag + mu0")
    n_noise: int = setting(1, ge=1, doc="noise vectors of the stochastic log-det gradient (marginal stage)")
    logdet_gradient: str = setting("dirac", choices=GRADIENTS,
                                   doc="log-det gradient of the marginal stage (dense: exact, small lattices)")
    conditional_steps: list[int] = setting([16000, 28000, 17000], ge=0, min_items=1,
                                           doc="steps of each conditional stage")
    conditional_batch_size: list[int] = setting([640, 640, 800], ge=2, min_items=1,
                                                doc="batch size of each conditional stage")
    conditional_lr: list[float] = setting([1e-4, 5e-5, 2.5e-5], gt=0.0, min_items=1,
                                          doc="initial learning rate of each conditional stage")
    conditional_step_size: list[int] = setting([0, 20000, 0], ge=0, min_items=1,
                                               doc="steps between learning-rate decays per stage (0: constant)")
    conditional_gamma: float = setting(0.5, gt=0.0, le=1.0, doc="learning-rate decay factor of the conditional stages")
    n_pf: int = setting(1, ge=1, doc="pseudofermion draws per gauge field in latticekit sample")
    ess_npf_max: int = setting(0, ge=0, doc="largest N_pf of the ESS(N_pf) curve of latticekit sample (0: none)")


def _mask_parameters(shape: Sequence[int], s: Any) -> tuple[int, tuple[int, ...]]:
    from latticekit.flows.shifted_masks import default_shift_parameters
    from latticekit.lattice import Lattice

    w0, sh0 = default_shift_parameters(Lattice(tuple(shape)))
    width = s.mask_width or w0
    shifts = tuple(s.mask_shifts) if s.mask_shifts else ((1, 2, 1, 1) if width == 4 else (1,) * len(shape))
    return width, shifts


def _check(shape: Sequence[int], s: Any) -> None:
    from latticekit.flows.shifted_masks import shifted_stripe_masks
    from latticekit.lattice import Lattice

    if len(shape) != 4:
        raise ConfigError(f"lattice.shape: model.coupling = 'qcd4d' is the 4D QCD model; got a {len(shape)}D lattice "
                          f"{list(shape)} (2D pseudofermion flows: model.coupling = 'pseudofermion')")
    if any(L % 2 for L in shape):
        raise ConfigError(f"lattice.shape: the qcd4d masks (spatial pseudofermion masks, shifted stripes) need even "
                          f"extents, got {list(shape)}")
    if s.mask_width == 1:
        raise ConfigError("model.mask_width: expected 0 (automatic) or a width >= 2, got 1")
    try:
        width, shifts = _mask_parameters(shape, s)
        shifted_stripe_masks(Lattice(tuple(shape)), s.n_layers or 1, width=width, shifts=shifts)
    except ValueError as exc:
        raise ConfigError(f"model.mask_width / model.mask_shifts: {exc}") from None
    check_conditional_schedule(s)
    if s.n_pt < 2:
        raise ConfigError(f"model.n_pt: the qcd4d conditional model needs n_pt >= 2 (the paper: 6), got {s.n_pt}")


def _check_theory(theory: Any) -> None:
    from latticekit.groups import U1

    if theory.group is U1:
        raise ConfigError("action.group: model.coupling = 'qcd4d' needs an SU(N) gauge group (the paper: SU3), got U1")
    k = theory.params.kappa
    if not k < KAPPA_MAX:
        raise ConfigError(f"action.kappa = {k}: model.coupling = 'qcd4d' needs kappa < 1/8, where D = 1 - kappa H is "
                          "invertible on every gauge field the flow may propose (the paper: kappa = 0.1)")


def qcd4d_flow(theory: Any, s: QCD4DSettings) -> Any:
    """The joint model of ``theory`` (module docstring)."""
    from latticekit.flows import HaarPrior, Model, sun_gauge_flow
    from latticekit.flows.pseudofermion import JointModel
    from latticekit.flows.pseudofermion.context import xavier_init
    from latticekit.flows.shifted_masks import shifted_stripe_masks

    _check_theory(theory)
    G, lat = theory.group, theory.lattice
    width, shifts = _mask_parameters(lat.shape, s)
    masks = shifted_stripe_masks(lat, s.n_layers, width=width, shifts=shifts)
    flow = sun_gauge_flow(G, lat, masks=masks, bins=s.bins, hidden=tuple(s.hidden), kernel_size=s.kernel_size,
                          act=s.act, loop_context=s.loop_context)
    xavier_init(flow, s.init_gain)  # Sec. 3.1: Xavier normal, gain 0.5, zero biases (the convolutions)
    marginal = Model(HaarPrior(G, lat), flow)
    return JointModel.build(marginal, theory_targets(theory), n_layers=s.pf_layers, partitioning=s.partitioning,
                            n_pt=s.n_pt, hidden_features=s.pt_hidden, n_hidden=s.context_hidden,
                            kernel_size=s.kernel_size, coords=s.context_coords, init_gain=s.pf_init_gain,
                            init_bias_std=s.pf_bias_std)


def qcd4d_action(theory: Any, s: QCD4DSettings, seed: int) -> Any:
    """The joint action with the regulator ``mu0`` (the target of the conditional stages)."""
    from latticekit.flows.pseudofermion import JointAction

    return JointAction(theory.make_action(), theory_targets(theory, s.mu0))


#: the stages of the qcd4d job (:func:`.pf_staged.pf_stages`: marginal, then the conditional stages)
qcd4d_stages = pf_stages
#: the staged training job (:func:`.pf_staged.pf_staged_train`)
qcd4d_train = pf_staged_train

QCD4D = FlowFamily("qcd4d", QCD4DSettings, qcd4d_flow, lambda shape: 48, _check, make_action=qcd4d_action,
                   sampler=pseudofermion_sampler, train=qcd4d_train, distributed_train=True,
                   appendable=CONDITIONAL_LISTS, sample_keys=("n_pf", "ess_npf_max"),
                   sampler_resumes=True)
"""The 4D QCD joint model and its two-stage training (module docstring)."""
