"""Effective sample size, log-weights and reweighting."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latticekit.analysis import ReweightResult, ess, ess_absolute, log_weights, log_z_estimate, reweight
from latticekit.testing import assert_close


def test_uniform_weights():
    for c in (0.0, -3.0, 1e4, -1e4):
        assert_close(ess(np.full(1000, c)), 1.0, rtol=1e-12, atol=0)
        assert_close(ess_absolute(np.full(1000, c)), 1000.0, rtol=1e-12, atol=0)


def test_one_dominant_weight():
    lw = np.full(500, -1e4)
    lw[17] = 0.0
    assert_close(ess(lw), 1 / 500, rtol=0, atol=1e-12)
    assert_close(ess_absolute(lw), 1.0, rtol=1e-12, atol=0)
    # two equal dominant weights -> ESS = 2
    lw[3] = 0.0
    assert_close(ess_absolute(lw), 2.0, rtol=1e-12, atol=0)


def test_gaussian_log_weights_large_n():
    """log w ~ N(0, s^2): ESS/N -> E[w]^2 / E[w^2] = exp(-s^2).

    With N = 1e6 the ratio of sample means has relative standard deviation
    ~sqrt(exp(4 s^2) - 1)/sqrt(N) <= 2.5e-3 for s <= 0.7; tolerance 1.5e-2 (> 6 sigma).
    """
    rng = np.random.default_rng(0)
    for s in (0.1, 0.4, 0.7):
        lw = rng.normal(3.0, s, 1_000_000)
        assert_close(ess(lw), np.exp(-(s**2)), rtol=1.5e-2, atol=0)


def test_numerical_stability_large_log_weights():
    rng = np.random.default_rng(1)
    lw = rng.normal(0.0, 1.0, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow/underflow warnings
        for shift in (1e4, -1e4, 7.1e5):
            assert_close(ess(lw + shift), ess(lw), rtol=1e-9, atol=0)
        # spread of 1e4 in log-weights: one sample dominates completely
        wide = rng.uniform(-1e4, 1e4, 1000)
        w = np.exp(wide - wide.max())  # float64 handles the normalised weights exactly
        assert_close(ess_absolute(wide), w.sum() ** 2 / (w**2).sum(), rtol=1e-12, atol=0)
        assert ess_absolute(wide) < 1.01
        r = reweight(np.arange(1000.0), wide)
        assert_close(r.value, np.sum(w * np.arange(1000.0)) / w.sum(), rtol=1e-12, atol=0)


def test_batches_and_axis():
    rng = np.random.default_rng(2)
    lw = rng.normal(size=(3, 4, 200))
    e = ess(lw)
    assert e.shape == (3, 4)
    assert_close(ess(lw[1, 2]), e[1, 2], rtol=0, atol=1e-12)
    assert_close(ess(np.moveaxis(lw, -1, 0), axis=0), e, rtol=1e-14, atol=0)
    assert_close(ess_absolute(lw), 200 * e, rtol=1e-14, atol=0)
    assert_close(ess_absolute(np.moveaxis(lw, -1, 0), axis=0), 200 * e, rtol=1e-14, atol=0)
    # the checks run along the sample axis: all-zero weights along axis 0 (but not along the last axis) are refused
    zero = np.zeros((2, 3))
    zero[:, 1] = -np.inf
    with pytest.raises(ValueError, match="all weights are zero"):
        ess(zero, axis=0)
    assert_close(ess(zero), np.full(2, 2 / 3), rtol=1e-15, atol=0)
    # axis=True was taken as 1, a float axis raised a bare TypeError, an axis out of range numpy's AxisError
    for bad in (True, 1.0, 3, -4):
        with pytest.raises(ValueError, match=r"^axis=.*: expected an integer in \[-3, 3\)"):
            ess(lw, axis=bad)
        with pytest.raises(ValueError, match=r"^axis="):
            ess_absolute(lw, axis=bad)


def test_zero_weights_allowed():
    lw = np.array([0.0, 0.0, -np.inf, -np.inf])
    assert_close(ess_absolute(lw), 2.0, rtol=1e-6, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e5, 1e5)),
    st.floats(-1e5, 1e5),
)
def test_ess_bounds_and_shift_invariance(lw, shift):
    n = lw.size
    e = ess(lw)
    assert 1 / n * (1 - 1e-9) <= e <= 1.0
    assert_close(ess(lw + shift), e, rtol=1e-6, atol=0)


def test_bad_log_weights():
    with pytest.raises(ValueError, match="log_w"):
        ess(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="log_w"):
        ess(np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="log_w"):
        ess(np.array([-np.inf, -np.inf]))
    with pytest.raises(ValueError, match="log_w"):
        ess(np.float64(1.0))
    with pytest.raises(TypeError, match="log_w"):
        ess(np.array([1j]))


def test_log_weights():
    action = np.array([1.0, 2.0, 3.0])
    log_q = np.array([-0.5, -1.0, -4.0])
    np.testing.assert_array_equal(log_weights(-action, log_q), [-0.5, -1.0, 1.0])
    with pytest.raises(ValueError, match="log_p, log_q"):
        log_weights(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="log_p"):
        log_weights(np.array([np.nan]), np.zeros(1))


def test_reweight_gaussian_tilt():
    """N(0,1) samples reweighted to N(a,1) with log w = a x - a^2/2: <x>_p = a."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(200_000)
    for a in (0.3, 1.0):
        r = reweight(x, log_weights(-0.5 * (x - a) ** 2, -0.5 * x**2))
        assert isinstance(r, ReweightResult)
        assert abs(r.value - a) < 4 * r.error
        assert_close(r.ess, np.exp(-(a**2)), rtol=0.05, atol=0)
        g = reweight(x, a * x, method="gamma")
        assert_close(g.value, r.value, rtol=1e-12, atol=0)
        assert_close(g.error, r.error, rtol=0.02, atol=0)  # both O(1/sqrt(2N))-precise
    # offsets of the log-weights change nothing
    r1, r2 = reweight(x, x), reweight(x, x + 1e4)
    assert_close([r1.value, r1.error], [r2.value, r2.error], rtol=1e-12, atol=0)


def test_reweight_error_calibration():
    """400 independent ensembles: spread of reweighted means vs jackknife errors.

    std over 400 has relative precision 3.5%; the jackknife error of a ratio with
    N = 4000 has O(1/N) bias; tolerance 12% (~3.4 sigma).
    """
    rng = np.random.default_rng(4)
    x = rng.standard_normal((400, 4000))
    r = reweight(x, 0.8 * x)  # target N(0.8, 1)
    assert r.value.shape == (400,)
    spread = np.std(r.value, ddof=1)
    assert abs(np.sqrt(np.mean(r.error**2)) / spread - 1) < 0.12
    assert abs(np.mean(r.value) - 0.8) < 4 * spread / np.sqrt(400) + 0.01


def test_reweight_uniform_weights_is_plain_mean():
    x = np.random.default_rng(5).standard_normal(999)
    r = reweight(x, np.zeros(999))
    assert_close(r.value, x.mean(), rtol=1e-13, atol=0)
    assert_close(r.error, x.std(ddof=1) / np.sqrt(999), rtol=1e-10, atol=0)
    assert_close(r.ess, 1.0, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="method"):
        reweight(x, np.zeros(999), method="nope")
    with pytest.raises(ValueError, match="obs, log_w"):
        reweight(x, np.zeros(5))


def test_torch_input():
    torch = pytest.importorskip("torch", reason="torch not installed: backend input check skipped")
    lw = np.random.default_rng(6).standard_normal(100)
    assert ess(torch.from_numpy(lw)) == ess(lw)


def test_log_z_estimate_gaussian_normalisation():
    """Draws from N(0, 1) weighted to exp(-x^2 / (2 s^2)): Z = sqrt(2 pi) s. The delta-method error
    (checked against the spread over 200 repetitions) bounds the deviation at 4 sigma."""
    rng = np.random.default_rng(7)
    s = 0.8
    reps = []
    for _ in range(200):
        x = rng.standard_normal(2000)
        lw = -x ** 2 / (2 * s ** 2) + x ** 2 / 2 + 0.5 * np.log(2 * np.pi)
        reps.append(log_z_estimate(lw))
    est, err = np.array(reps).T
    exact = np.log(np.sqrt(2 * np.pi) * s)
    assert np.all(np.abs(est - exact) < 4 * err + 1e-12)
    # the reported error is the spread of the estimate: ratio within 15% (200 repetitions: ~5% scatter)
    assert_close(np.std(est), np.mean(err), rtol=0.15, atol=0)
    # shift invariance (log-sum-exp) and weights that are all equal: exact, zero error
    assert_close(log_z_estimate(lw + 7e5)[0], log_z_estimate(lw)[0] + 7e5, rtol=1e-12, atol=0)
    assert log_z_estimate(np.full(10, 2.5)) == (2.5, 0.0)
    with pytest.raises(ValueError, match="one axis"):
        log_z_estimate(np.zeros((2, 3)))


def test_log_z_estimate_of_one_draw_has_no_error():
    """One draw: log Z is its log-weight, its error undefined: NaN with a warning (as gamma_method where it has
    no estimate), not 0.0 (which claimed an exact result)."""
    with pytest.warns(RuntimeWarning, match="log_z_estimate: a single draw"):
        est, err = log_z_estimate(np.array([3.0]))
    assert_close(est, 3.0, rtol=0, atol=0)
    assert np.isnan(err)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert log_z_estimate(np.array([3.0, 3.0])) == (3.0, 0.0)   # two equal draws: a measured 0
