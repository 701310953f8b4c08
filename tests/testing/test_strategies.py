"""Hypothesis strategies: shapes, group membership, bounds, reproducibility."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latticekit import SU, U1, Lattice, backends
from latticekit.testing import assert_close
from latticekit.testing import strategies as lks

FAST = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(lks.lattices(nd=(2, 3), min_size=2, max_size=5))
def test_lattices(lat):
    assert isinstance(lat, Lattice) and lat.nd in (2, 3)
    assert all(s in (2, 4) for s in lat.shape)


@FAST
@given(lks.lattices(nd=1, min_size=3, max_size=3, even=False))
def test_lattices_odd(lat):
    assert lat.shape == (3,)


def test_lattice_strategy_errors():
    with pytest.raises(ValueError, match="no even extent"):
        lks.lattices(min_size=3, max_size=3)
    with pytest.raises(ValueError, match="nd=0"):
        lks.lattices(nd=0)
    with pytest.raises(ValueError, match="min_size=4, max_size=2"):
        lks.lattices(min_size=4, max_size=2)
    with pytest.raises(TypeError, match="expected a latticekit.Lattice"):
        lks.gauge_fields(U1, (4, 4))
    with pytest.raises(ValueError, match="kind='hot'"):
        lks.gauge_fields(U1, Lattice((2, 2)), kind="hot")
    with pytest.raises(ValueError, match="max_scale=-1"):
        lks.group_elements(U1, max_scale=-1)
    with pytest.raises(ValueError, match="batch_shape"):
        lks.group_elements(U1, batch_shape=(-1,))


@pytest.mark.parametrize("G", [U1, SU(2), SU(3)], ids=["U1", "SU2", "SU3"])
def test_group_elements_bounded_and_in_group(bk, G):
    @settings(max_examples=8, deadline=None)
    @given(lks.group_elements(G, (2,), (3,), backend=bk.name, device=bk.device, max_scale=0.5))
    def check(U):
        assert backends.backend_name(U) == bk.name
        assert U.shape == (2,) + G.element_shape + (3,)
        assert_close(G.defect(U, nd=1), 0.0, rtol=0, atol=1e-12)  # the defect is a norm: max < 1e-12
        # bounded: every algebra coordinate of log U is at most max_scale
        w = backends.to_numpy(G.to_coords(G.log(U, nd=1), nd=1))
        assert np.abs(w).max() <= 0.5 + 1e-9

    check()


@FAST
@given(lks.haar_elements(SU(3), (4,), (2,), backend="numpy"))
def test_haar_elements(U):
    assert U.shape == (4, 3, 3, 2)
    assert_close(SU(3).defect(U, nd=1), 0.0, rtol=0, atol=1e-12)  # the defect is a norm: max < 1e-12
    # Haar elements are generically far from the identity
    assert np.abs(U - np.eye(3)[:, :, None]).max() > 0.1


def test_seed_reproducibility():
    # the same seed gives the same array: the strategy is a pure function of drawn seeds
    seen = []

    @settings(max_examples=5, deadline=None, database=None, derandomize=True)
    @given(lks.haar_elements(SU(2), (3,), backend="numpy"))
    def collect(U):
        seen.append(U)

    collect()
    first = list(seen)
    seen.clear()
    collect()
    assert len(first) == len(seen)
    for u, v in zip(first, seen):
        np.testing.assert_array_equal(u, v)


@FAST
@given(st.data())
def test_gauge_fields_and_transformations(data):
    lat = data.draw(lks.lattices(nd=2, max_size=4))
    G = data.draw(st.sampled_from([U1, SU(2)]))
    U = data.draw(lks.gauge_fields(G, lat, (2,)))
    assert U.shape == (2, lat.nd) + G.element_shape + lat.shape
    Om = data.draw(lks.gauge_transformations(G, lat, kind="haar"))
    assert Om.shape == G.element_shape + lat.shape
    if G is not U1:
        assert_close(G.defect(U, nd=lat.nd), 0.0, rtol=0, atol=1e-12)  # the defect is a norm: max < 1e-12
    U32 = data.draw(lks.gauge_fields(G, lat, kind="smooth", precision="single"))
    assert U32.dtype in (np.float32, np.complex64)


@FAST
@given(st.data())
def test_scalar_fields(data):
    lat = data.draw(lks.lattices(nd=2, max_size=4))
    phi = data.draw(lks.scalar_fields(lat, (3,), max_abs=2.0))
    assert phi.shape == (3,) + lat.shape and phi.dtype == np.float64
    assert np.abs(phi).max() <= 2.0


@FAST
@given(lks.seeds())
def test_seeds(seed):
    assert 0 <= seed < 2**32
    backends.rng(seed)


def test_u1_group_elements_scale():
    @settings(max_examples=10, deadline=None)
    @given(lks.group_elements(U1, (50,), max_scale=math.pi))
    def check(th):
        assert np.abs(th).max() <= math.pi

    check()


@pytest.mark.parametrize("precision", ["bogus", "float16", "half", 16, None])
def test_unknown_precision_refused(precision):
    """An unknown precision gave float64 silently (only the SU(N) haar_elements checked it)."""
    lat = Lattice((2, 2))
    for make in (lambda: lks.group_elements(U1, precision=precision),
                 lambda: lks.haar_elements(U1, precision=precision),
                 lambda: lks.haar_elements(SU(2), precision=precision),
                 lambda: lks.scalar_fields(lat, precision=precision),
                 lambda: lks.gauge_fields(U1, lat, precision=precision)):
        with pytest.raises(ValueError, match=f"precision={precision!r}: expected 'double'/64 or 'single'/32"):
            make()


def test_bad_arguments_refused_at_construction():
    """group=None and backend='jax' failed only at the first draw, batch_shape=(2.5,) was truncated to 2,
    max_scale=inf drew coordinates of 1e16, lattices(nd=2.5) raised "'float' object is not iterable"."""
    lat = Lattice((2, 2))
    for make in (lambda: lks.gauge_fields(None, lat, backend="numpy"),
                 lambda: lks.group_elements(None), lambda: lks.haar_elements(None),
                 lambda: lks.gauge_transformations(None, lat, kind="haar")):
        with pytest.raises(TypeError, match=r"^group=None: expected a latticekit Group"):
            make()
    with pytest.raises(TypeError, match=r"^group='SU\(2\)': .*group_from_name"):
        lks.haar_elements("SU(2)")
    for make in (lambda: lks.gauge_fields(SU(2), lat, backend="jax"), lambda: lks.scalar_fields(lat, backend="jax"),
                 lambda: lks.haar_elements(U1, backend="jax"), lambda: lks.group_elements(U1, backend="jax")):
        with pytest.raises(backends.BackendError, match=r"^backend='jax': expected one of"):
            make()
    with pytest.raises(TypeError, match=r"^batch_shape=\(2\.5,\): expected a sequence of non-negative integers"):
        lks.gauge_fields(SU(2), lat, (2.5,), backend="numpy")
    with pytest.raises(TypeError, match=r"^site_shape=\(True,\)"):
        lks.group_elements(U1, (), (True,))
    for bound in (math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^max_scale=(inf|nan): expected a finite non-negative number"):
            lks.group_elements(U1, (3,), max_scale=bound, backend="numpy")
        with pytest.raises(ValueError, match=r"^max_abs=(inf|nan): expected a finite non-negative number"):
            lks.scalar_fields(lat, max_abs=bound)
    with pytest.raises(ValueError, match=r"^nd=2\.5: expected a positive integer or a sequence of them"):
        lks.lattices(nd=2.5)
    with pytest.raises(ValueError, match=r"^nd=\(2, 2\.5\)"):
        lks.lattices(nd=(2, 2.5))
    with pytest.raises(TypeError, match=r"^max_size=4\.5: expected an integer"):
        lks.lattices(max_size=4.5)
