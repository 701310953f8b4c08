"""Acceptance-rate summary."""

import numpy as np
import pytest

from latticekit.analysis import AcceptanceSummary, acceptance_summary
from latticekit.testing import assert_close


def test_small_history():
    s = acceptance_summary(np.array([True, True, False, False, False, True, True, True]))
    assert isinstance(s, AcceptanceSummary)
    assert (s.rate, s.n, s.n_accepted, s.longest_rejection_run) == (0.625, 8, 5.0, 3)


def test_iid_bernoulli_error_and_tau():
    """iid accept with p = 0.3: error = sqrt(p(1-p)/N) within 4 sigma (rel. 1/sqrt(2N))."""
    p, n = 0.3, 100_000
    acc = np.random.default_rng(0).random(n) < p
    s = acceptance_summary(acc)
    assert abs(s.rate - p) < 4 * np.sqrt(p * (1 - p) / n)
    assert_close(s.error, np.sqrt(p * (1 - p) / n), rtol=0.03, atol=0)
    assert abs(s.tau_int - 0.5) < 0.03


def test_sticky_history_is_autocorrelated():
    """Markov accept/reject with P(a|a) = 0.9, P(a|r) = 0.1: tau_int = (1/2)(1.8)/(0.2) = 4.5."""
    rng = np.random.default_rng(1)
    n = 100_000
    u = rng.random(n)
    acc = np.empty(n, dtype=bool)
    acc[0] = True
    for t in range(1, n):
        acc[t] = u[t] < (0.9 if acc[t - 1] else 0.1)
    s = acceptance_summary(acc)
    assert abs(s.rate - 0.5) < 0.05
    assert abs(s.tau_int - 4.5) < 0.6  # ~4 sigma of the Gamma-method error (~0.15)
    assert s.longest_rejection_run > 20


def test_probabilities_and_batch():
    rng = np.random.default_rng(2)
    probs = rng.random((3, 1000))
    s = acceptance_summary(probs)
    assert_close(s.rate, probs.mean(-1), rtol=1e-7, atol=0)
    assert s.longest_rejection_run is None and s.n == 1000 and s.rate.shape == (3,)
    b = acceptance_summary(probs < 0.5)
    assert b.longest_rejection_run.shape == (3,)
    with pytest.raises(ValueError, match="accepted"):
        acceptance_summary(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="accepted"):
        acceptance_summary(np.array([True]))
