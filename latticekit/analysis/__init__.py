"""Statistical analysis of Monte Carlo measurements (host side, NumPy/SciPy).

Inputs may be arrays of any supported backend; they are converted to host
NumPy arrays at entry (through :func:`latticekit.backends.to_numpy`). Monte
Carlo time (the sample index) is always the **last** axis; leading axes are
batch axes analysed independently.
"""

from .acceptance import AcceptanceSummary, acceptance_summary
from .autocorrelation import GammaResult, autocovariance, gamma_method
from .blocking import BlockingResult, bin_series, blocking_analysis
from .ess import ReweightResult, ess, ess_absolute, log_weights, log_z_estimate, reweight
from .flow_scales import FlowScaleResult, flow_scale, flow_scale_of_curve
from .histogram_compare import (
    Chi2Summary,
    DensityHistogram,
    HistogramComparison,
    block_length,
    combine_chi2,
    compare_histograms,
    density_histogram,
    histogram_edges,
    joint_chi2,
)
from .resampling import ResamplingResult, bootstrap, jackknife

__all__ = [
    "AcceptanceSummary",
    "BlockingResult",
    "Chi2Summary",
    "DensityHistogram",
    "FlowScaleResult",
    "GammaResult",
    "HistogramComparison",
    "ResamplingResult",
    "ReweightResult",
    "acceptance_summary",
    "autocovariance",
    "bin_series",
    "block_length",
    "blocking_analysis",
    "bootstrap",
    "combine_chi2",
    "compare_histograms",
    "density_histogram",
    "ess",
    "ess_absolute",
    "flow_scale",
    "flow_scale_of_curve",
    "gamma_method",
    "histogram_edges",
    "jackknife",
    "joint_chi2",
    "log_weights",
    "log_z_estimate",
    "reweight",
]
