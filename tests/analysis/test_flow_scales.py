"""Gradient-flow scales t0 and w0 (latticekit.analysis.flow_scales).

* Curves with a closed-form scale (t^2 E = c t^2): the value to the interpolation bound, and the Gamma-method error
  and tau_int equal to those of the primary ``c`` propagated by hand (the derived-quantity error is a linear map of
  the primary fluctuations, so the two agree to rounding when the gradient is right).
* Real configurations written by other codes (shared/data/configs): the scale found on the RK3 grid, then the field
  flowed afresh exactly to that scale, where ``t^2 E`` (t0) and ``t d(t^2 E)/dt`` (w0, a central difference of two
  more flows) must equal the reference within the interpolation bound of the grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import latticekit as lk
from latticekit.analysis import FlowScaleResult, flow_scale, flow_scale_of_curve, gamma_method
from latticekit.observables import energy_density_clover, wilson_flow
from latticekit.testing import assert_close

_CANDIDATES = [os.environ.get("LATTICEKIT_CONFIGS", ""),
               str(Path(__file__).resolve().parents[3] / "shared" / "data" / "configs"),
               "/work/shared/data/configs"]
CONFIGS = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "su3_8x8x8x8.ildg").exists()), None)
needs_configs = pytest.mark.skipif(CONFIGS is None, reason="shared/data/configs (real files) not present")


def _quadratic(c: np.ndarray, t: np.ndarray) -> np.ndarray:
    return c[None, :] * t[:, None] ** 2                      # (n_t, N): flow time first, Monte Carlo time last


def test_t0_and_w0_of_quadratic_curves_with_propagated_errors() -> None:
    t = np.linspace(0.0, 2.0, 201)
    c = 0.2 * (1 + 0.05 * np.random.default_rng(2).normal(size=400))
    F = _quadratic(c, t)
    gc = gamma_method(c)
    cbar = float(c.mean())
    # t^2 E = cbar t^2 = 0.3 at t0 = sqrt(0.3 / cbar); W = 2 cbar t^2 = 0.3 at w0^2 = sqrt(0.3 / (2 cbar))
    exact = {"t0": np.sqrt(0.3 / cbar), "w0": (0.3 / (2 * cbar)) ** 0.25}
    dscale_dc = {"t0": -exact["t0"] / (2 * cbar), "w0": -exact["w0"] / (4 * cbar)}
    for kind in ("t0", "w0"):
        r = flow_scale(t, F, kind)
        assert isinstance(r, FlowScaleResult) and r.kind == kind and r.reference == 0.3
        # linear interpolation on h = 0.01: |error| <= h^2/8 |y''| / |y'| ~ 1e-5 here; an interval off by one
        # point would be off by ~h = 1e-2
        assert abs(r.value - exact[kind]) < 2e-5, (kind, r.value, exact[kind])
        # the interpolated scale's gradient differs from the continuum's by at most a fraction h / scale (the two
        # grid points bracket the crossing); a wrong gradient would be off by O(1)
        assert_close(r.error, abs(dscale_dc[kind]) * gc.error, rtol=0.01 / exact[kind], atol=0)
        assert_close(r.tau_int, gc.tau_int, rtol=1e-9, atol=0)
        assert_close(r.value, flow_scale_of_curve(t, F.mean(axis=1), kind), rtol=1e-12, atol=0)


def test_autocorrelated_replica() -> None:
    """Two AR(1) chains (rho = 0.8, tau_int = 4.5) as replica: the same tau_int and error as the primary."""
    g = np.random.default_rng(5)
    chains = []
    for n in (3000, 2000):
        x = np.empty(n)
        x[0] = g.normal()
        for i in range(1, n):
            x[i] = 0.8 * x[i - 1] + 0.6 * g.normal()
        chains.append(0.2 * (1 + 0.02 * x))
    t = np.linspace(0.0, 2.0, 101)
    r = flow_scale(t, [_quadratic(ch, t) for ch in chains], "t0")
    gc = gamma_method(chains)
    assert r.gamma.n_replica == 2 and r.gamma.n == 5000
    assert_close(r.tau_int, gc.tau_int, rtol=1e-9, atol=0)
    assert 3.0 < r.tau_int < 6.5
    cbar = float(np.concatenate(chains).mean())
    assert_close(r.error, np.sqrt(0.3 / cbar) / (2 * cbar) * gc.error, rtol=0.02 / np.sqrt(0.3 / cbar), atol=0)


def _flow_t2e(U, G, lat, t, eps=0.02):
    V, h = wilson_flow(U, G, lat, t, eps=eps, measure=lambda V, tt: tt * tt * energy_density_clover(V, G, lat))
    return lk.backends.to_numpy(h["t"]), lk.backends.to_numpy(h["values"]).reshape(-1)


def _check_scales_by_direct_flows(U, G, lat, t_max: float, reference: float, reference_w0: float | None
                                  ) -> tuple[float, float | None]:
    t, F = _flow_t2e(U, G, lat, t_max)
    h = t[1] - t[0]
    curv = np.abs(np.diff(F, 2)).max() / h**2                # max |F''| on the grid
    t0 = flow_scale_of_curve(t, F, "t0", reference=reference)
    # a fresh flow to exactly t0 (steps t0 / ceil(t0 / 0.02), not the grid's): the RK3 difference is O(eps^3) ~ 1e-6
    # of F; the linear interpolation may miss by h^2/8 max|F''|
    F_t0 = _flow_t2e(U, G, lat, t0)[1][-1]
    assert abs(F_t0 - reference) <= h**2 / 8 * curv * 1.5 + 1e-6, (F_t0, reference, h**2 / 8 * curv)
    if reference_w0 is None:
        return t0, None
    w0 = flow_scale_of_curve(t, F, "w0", reference=reference_w0)
    # W(w0^2) by a central difference of two more flows, delta = 0.01: its own error is delta^2/6 |F'''| w0^2, and
    # the grid's midpoint derivative and interpolation err by O(h^2 F''') w0^2 (bounded below by the observed
    # third differences)
    d = 0.01
    Fp, Fm = _flow_t2e(U, G, lat, w0**2 + d)[1][-1], _flow_t2e(U, G, lat, w0**2 - d)[1][-1]
    W = w0**2 * (Fp - Fm) / (2 * d)
    third = np.abs(np.diff(F, 3)).max() / h**3
    assert abs(W - reference_w0) <= w0**2 * third * (d**2 / 6 + h**2) * 1.5 + 1e-5, (W, reference_w0)
    return t0, w0


@needs_configs
def test_scales_of_a_real_su2_configuration(numpy_bk) -> None:
    """su2_4x4x4x4_b.ildg: t^2 E reaches 0.02 near t = 0.28 (sqrt(8 t) = 1.5 < L/2), W reaches 0.01 near t = 0.13
    (on 4^4 it peaks at 0.014: the box stops the growth); four flows of at most 25 steps. On NumPy (1 s); the other
    backends flow the same field below and must give the same t^2 E (array_api_strict took 20 s for this check)."""
    U, meta = lk.io.load(CONFIGS / "su2_4x4x4x4_b.ildg", backend=numpy_bk.name)
    lat, G = lk.Lattice(meta.lattice), lk.SU(2)
    t0, w0 = _check_scales_by_direct_flows(U, G, lat, 0.5, 0.02, 0.01)
    assert 0.2 < t0 < 0.4 and 0.25 < w0 < 0.45


@needs_configs
def test_the_flow_of_a_real_su2_configuration_is_the_same_on_every_backend(bk) -> None:
    """The t^2 E curve that the scales above come from, over its first 5 steps (t = 0.1), equals NumPy's on every
    backend to round-off (RK3 steps of one code path; NumPy runs the numba kernels, the others the generic code)."""
    U, meta = lk.io.load(CONFIGS / "su2_4x4x4x4_b.ildg", backend=bk.name, device=bk.device)
    Un, _ = lk.io.load(CONFIGS / "su2_4x4x4x4_b.ildg", backend="numpy")
    lat, G = lk.Lattice(meta.lattice), lk.SU(2)
    t, F = _flow_t2e(U, G, lat, 0.1)
    tn, Fn = _flow_t2e(Un, G, lat, 0.1)
    assert len(t) == 6 and F[-1] > 1e-3
    assert_close(t, tn, rtol=0, atol=0)
    assert_close(F, Fn, rtol=1e-12, atol=1e-15)


@needs_configs
@pytest.mark.slow
def test_t0_of_the_real_su3_configuration(numpy_bk) -> None:
    """su3_8x8x8x8.ildg at the SU(3) reference 0.3 (t0 ~ 1.26, sqrt(8 t0) = 3.2 < L/2): the t0 part of the check
    above at full size, on NumPy alone (about 10 s on one core: two flows of an 8^4 SU(3) field; w0 is checked on
    every backend above)."""
    U, meta = lk.io.load(CONFIGS / "su3_8x8x8x8.ildg", backend=numpy_bk.name)
    t0, _ = _check_scales_by_direct_flows(U, lk.SU(3), lk.Lattice(meta.lattice), 1.34, 0.3, None)
    assert 1.2 < t0 < 1.34


def test_bad_input() -> None:
    t = np.linspace(0.0, 1.0, 11)
    F = _quadratic(np.full(20, 0.2), t)
    with pytest.raises(ValueError, match="never reaches reference=0.3 .*flow to a larger t"):
        flow_scale(t, F, "t0")
    with pytest.raises(ValueError, match="already at the first flow time"):
        flow_scale(t, F + 1.0, "t0", reference=0.5)
    with pytest.raises(ValueError, match="kind='t1'"):
        flow_scale(t, F, "t1")
    with pytest.raises(ValueError, match="reference=-0.3"):
        flow_scale(t, F, reference=-0.3)
    with pytest.raises(ValueError, match="strictly increasing"):
        flow_scale(t[::-1], F, reference=0.1)
    with pytest.raises(ValueError, match="flow-time axis first, of length 11"):
        flow_scale(t, F.T, reference=0.1)
    with pytest.raises(ValueError, match=r"shape \(n_t, N\) per chain"):
        flow_scale(t, F[:, 0], reference=0.1)
    with pytest.raises(ValueError, match="t2E: an empty list"):
        flow_scale(t, [], reference=0.1)
    for two in (np.stack([0.3 * t, 0.15 * t], 1), np.stack([0.15 * t, 0.3 * t], 1)):   # crashed in numpy before
        with pytest.raises(ValueError, match=r"F: expected one curve of shape \(11,\), got shape \(11, 2\)"):
            flow_scale_of_curve(t, two)


def test_non_finite_curves_are_refused_naming_the_argument_and_flow_times() -> None:
    """A NaN or inf in t^2 E gave a silent NaN (at the crossing), a wrong scale (inf just below it: 1.65, true
    sqrt(3) = 1.732), or an error naming `data`, an internal name."""
    t = np.linspace(0.0, 3.0, 61)
    F = 0.1 * t ** 2
    for bad, k in ((np.nan, 35), (np.inf, 34), (-np.inf, 0)):
        Fb = F.copy()
        Fb[k] = bad
        with pytest.raises(ValueError, match=rf"^F: 1 NaN or infinite value\(s\) at flow time\(s\) t = {t[k]:.6g}$"):
            flow_scale_of_curve(t, Fb)
    ens = _quadratic(np.full(20, 0.1), t)
    ens[10, 17] = np.nan
    with pytest.raises(ValueError, match=r"^t2E: 1 NaN .* t = 0\.5 in configuration\(s\) 17$"):
        flow_scale(t, ens, "t0")
    with pytest.raises(ValueError, match=r"^t2E\[1\]: 1 NaN .* t = 0\.5 in configuration\(s\) 17$"):
        flow_scale(t, [_quadratic(np.full(20, 0.1), t), ens], "w0")


def test_numpy_scalar_references_are_accepted() -> None:
    """numbers.Real: np.float32 and np.int64 were refused as 'not a positive number'."""
    t = np.linspace(0.0, 3.0, 61)
    ens = _quadratic(np.full(20, 0.1), t)
    r = flow_scale(t, ens, "t0", reference=np.float32(0.4))
    assert_close(r.value, flow_scale(t, ens, "t0", reference=float(np.float32(0.4))).value, rtol=1e-15, atol=0)
    assert_close(flow_scale_of_curve(t, 0.5 * t, reference=np.int64(1)), 2.0, rtol=1e-12, atol=0)
    for bad in (np.bool_(True), "0.3", np.float64(np.nan)):
        with pytest.raises(ValueError, match="reference="):
            flow_scale_of_curve(t, 0.3 * t, reference=bad)
