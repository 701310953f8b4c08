"""Super-resolving RG flows for phi^4 (Bauer, Kapust, Pawlowski, Temmen; ``../shared/papers/super-resolving-flows-phi4.md``).

A rectangular flow ``T = F o N o U`` maps a coarse configuration on ``L^d`` sites to a fine one on ``(bL)^d``:
naive upsampling ``U`` (eqs. 17-18, :mod:`.upsampling`), invertible zero-sum noise ``N`` (eqs. 19-21,
:mod:`.zero_sum_noise`) and a square flow ``F`` on the fine lattice, the local continuous normalising flow of
eqs. 22-28 (:mod:`.local_cnf`; the paper's comparison, a CNF whose kernel spans the lattice, is
:mod:`.full_kernel_cnf`, both on :mod:`.cnf_base`), with the exact log-likelihood of eq. (29) and the left
inverse of eq. (30) (:mod:`.rectangular`). :class:`SuperResolvingModel` stacks them on a coarse prior: a fixed one, or the coarse
phi^4 theory with learnable couplings (:mod:`.coarse_theory`, IR-matching of Sec. VI, batched differentiable
Langevin, eq. 37), whose ``log Z`` gradient (eqs. 34, 36) comes from :mod:`.log_z`; couplings in
:mod:`.couplings` (eq. 35). UV-matching (App. A) trains the fine couplings instead (:mod:`.learnable_target`)
and iterates the transformation to finer lattices (:mod:`.uv_matching`).
"""

from __future__ import annotations

from .cnf_base import SineBasisCNF
from .coarse_theory import CoarseTheoryPrior
from .couplings import COUPLING_NAMES, Phi4Couplings
from .full_kernel_cnf import FullKernelCNF
from .learnable_target import LearnableTargetAction
from .local_cnf import LocalCNF, ODESolverError
from .log_z import LogZGradient, Phi4Sampler, hmc_sampler
from .rectangular import RectangularFlow, SuperResolvingModel
from .upsampling import NaiveUpsampling, check_block_factor
from .uv_matching import UVLadderConfig, UVMatchingModel, best_coupling, uv_ladder
from .zero_sum_noise import ZeroSumNoise, configuration_std

__all__ = [
    "COUPLING_NAMES",
    "CoarseTheoryPrior",
    "FullKernelCNF",
    "LearnableTargetAction",
    "LocalCNF",
    "LogZGradient",
    "NaiveUpsampling",
    "ODESolverError",
    "Phi4Couplings",
    "Phi4Sampler",
    "RectangularFlow",
    "SineBasisCNF",
    "SuperResolvingModel",
    "UVLadderConfig",
    "UVMatchingModel",
    "ZeroSumNoise",
    "configuration_std",
    "best_coupling",
    "check_block_factor",
    "hmc_sampler",
    "uv_ladder",
]
