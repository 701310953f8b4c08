"""Equivariance checkers: they vanish for covariant maps and detect non-covariant ones."""

import math
import re

import numpy as np
import pytest

from latticekit import SU, U1, Lattice, backends
from latticekit.gauge import gauge_transform, link, random_gauge_field, stack_links
from latticekit.groups import NonUnitaryError
from latticekit.testing import (
    assert_close,
    assert_equivariant,
    assert_gauge_equivariant,
    assert_gauge_invariant,
    equivariance_error,
    gauge_equivariance_error,
    gauge_invariance_error,
    random_gauge_transformation,
)

LAT = Lattice((4, 4))
GROUPS = [U1, SU(2), SU(3)]
IDS = ["U1", "SU2", "SU3"]


def plaquette(G, U, lat, mu, nu):
    Um, Un = link(U, mu, G, lat), link(U, nu, G, lat)
    return G.mul_adj(G.mul(Um, lat.shift(Un, mu), nd=lat.nd), G.mul(Un, lat.shift(Um, nu), nd=lat.nd), nd=lat.nd)


def wilson_action(G, U, lat):
    return sum(G.re_trace(plaquette(G, U, lat, mu, nu), nd=lat.nd) for mu, nu in lat.planes())


def plaquette_update(G, lat):
    """U_0(x) -> P_01(x) U_0(x): gauge covariant (P transforms with Omega(x) on both sides)."""
    def f(U):
        P = plaquette(G, U, lat, 0, 1)
        return stack_links([G.mul(P, link(U, 0, G, lat), nd=lat.nd), link(U, 1, G, lat)], G, lat)
    return f


def test_translation_equivariance(bk):
    phi = bk.rng(0).normal((2,) + LAT.shape)
    stencil = lambda f: f - 0.25 * (LAT.shift(f, 0, 1) + LAT.shift(f, 1, -1))  # noqa: E731
    T = lambda f: LAT.shift(f, 1, 1)  # noqa: E731
    assert equivariance_error(stencil, phi, T) < 1e-14
    assert_equivariant(stencil, phi, T)
    # position-dependent weight: not translation equivariant
    w = bk.asarray(np.arange(16.0).reshape(4, 4))
    assert equivariance_error(lambda f: w * f, phi, T) > 0.1
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda f: w * f, phi, T)
    # Z2 symmetry phi -> -phi: an odd map is equivariant, an even one needs transform_out = identity
    assert equivariance_error(lambda f: f**3, phi, lambda f: -f) < 1e-14
    assert equivariance_error(lambda f: f**2, phi, lambda f: -f, lambda f: f) < 1e-14


def test_tuple_outputs_invariant_parts(bk):
    phi = bk.rng(1).normal((2,) + LAT.shape)
    T = lambda f: LAT.shift(f, 0, 1)  # noqa: E731
    xp = bk.xp
    good = lambda f: (2 * f, xp.sum(f, axis=(-2, -1)))  # noqa: E731
    assert equivariance_error(good, phi, T) < 1e-13
    bad = lambda f: (2 * f, f[:, 0, 0])  # noqa: E731  (second output not invariant)
    assert equivariance_error(bad, phi, T) > 1e-3


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_gauge_covariant_and_invariant(bk, G):
    U = random_gauge_field(G, LAT, bk.rng(2), batch_shape=(2,))
    rng = bk.rng(3)
    assert gauge_equivariance_error(lambda V: V, U, G, LAT, rng) < 1e-12
    assert gauge_equivariance_error(plaquette_update(G, LAT), U, G, LAT, rng) < 1e-12
    assert_gauge_equivariant(plaquette_update(G, LAT), U, G, LAT, rng)
    square = lambda V: G.mul(V, V, nd=LAT.nd)  # noqa: E731
    assert gauge_equivariance_error(square, U, G, LAT, rng) > 1e-2
    with pytest.raises(AssertionError, match="not gauge equivariant"):
        assert_gauge_equivariant(square, U, G, LAT, rng)
    S = lambda V: wilson_action(G, V, LAT)  # noqa: E731
    assert gauge_invariance_error(S, U, G, LAT, rng) < 1e-12
    assert_gauge_invariant(S, U, G, LAT, rng)
    trace_links = lambda V: G.re_trace(V, nd=LAT.nd)  # noqa: E731
    assert gauge_invariance_error(trace_links, U, G, LAT, rng) > 1e-2
    with pytest.raises(AssertionError, match="not gauge invariant"):
        assert_gauge_invariant(trace_links, U, G, LAT, rng)
    # a layer returning (field, logdet) with an invariant logdet
    layer = lambda V, context=None: (plaquette_update(G, LAT)(V), S(V))  # noqa: E731
    assert gauge_equivariance_error(layer, U, G, LAT, rng, context={"unused": 1}) < 1e-12


def test_u1_angles_compared_modulo_2pi(bk):
    U = random_gauge_field(U1, LAT, bk.rng(4))
    wrap = lambda V: U1.normalize(V, nd=LAT.nd)  # noqa: E731
    # wrapping is gauge covariant as a map of group elements, though angles differ by 2 pi
    Om = U1.random(bk.rng(5), (), LAT.shape)
    raw = np.abs(bk.to_numpy(wrap(gauge_transform(U, Om, U1, LAT)) - gauge_transform(wrap(U), Om, U1, LAT)))
    assert raw.max() > 1.0  # the plain difference sees the branch jumps
    assert gauge_equivariance_error(wrap, U, U1, LAT, bk.rng(5), Omega=Om) < 1e-12


def test_random_gauge_transformation_matches_field(bk):
    G = SU(2)
    U = G.random(bk.rng(6), (3, LAT.nd), LAT.shape, precision="single")
    Om = random_gauge_transformation(U, G, LAT, bk.rng(7))
    assert Om.shape == (3, 2, 2) + LAT.shape
    assert Om.dtype == U.dtype
    assert backends.backend_name(Om) == bk.name
    # an rng of another backend still gives Omega on the field's backend
    Om2 = random_gauge_transformation(U, G, LAT, backends.rng(7, backend="numpy"))
    assert backends.backend_name(Om2) == bk.name


def test_float32_tolerance(bk):
    G = SU(3)
    U = random_gauge_field(G, LAT, bk.rng(8), precision="single")
    err = gauge_equivariance_error(plaquette_update(G, LAT), U, G, LAT, bk.rng(9))
    assert err < 1e-5
    assert math.isfinite(err)


def test_default_tolerance_follows_the_dtype(bk):
    """float32 round-off passes by default (probe: 3e-6 > the fixed atol 1e-10); explicit atol still binds."""
    from latticekit.actions import WilsonGaugeAction

    lat, G = Lattice((4, 4, 4, 4)), SU(3)
    U = random_gauge_field(G, lat, bk.rng(10), batch_shape=(2,), precision="single")
    S = WilsonGaugeAction(G, lat, 5.0).action
    err = gauge_invariance_error(S, U, G, lat, bk.rng(11))
    assert 1e-12 < err < 1e-3
    assert_gauge_invariant(S, U, G, lat, bk.rng(11))
    with pytest.raises(AssertionError, match=r"not gauge invariant: value: max deviation .* > 1\.000e-12"):
        assert_gauge_invariant(S, U, G, lat, bk.rng(11), atol=1e-12)
    assert_gauge_invariant(S, U, G, lat, bk.rng(11), atol=1e-2)
    U4 = random_gauge_field(G, LAT, bk.rng(12), batch_shape=(2,), precision="single")
    assert_gauge_equivariant(plaquette_update(G, LAT), U4, G, LAT, bk.rng(13))
    with pytest.raises(AssertionError, match="not gauge equivariant: field: .* FAILED"):
        assert_gauge_equivariant(lambda V: G.mul(V, V, nd=LAT.nd), U4, G, LAT, bk.rng(13))
    phi = bk.rng(14).normal((2,) + LAT.shape, dtype=bk.xp.float32)
    T = lambda f: LAT.shift(f, 1, 1)  # noqa: E731
    assert_equivariant(lambda f: 1e4 * (f - 0.25 * LAT.shift(f, 0, 1)), phi, T)   # outputs ~1e4: relative part
    with pytest.raises(AssertionError, match="not equivariant: output: max deviation"):
        assert_equivariant(lambda f: f * (1 + 1e-3 * f[:, :1, :1]), phi, T)


@pytest.mark.parametrize("G", [U1, SU(2)], ids=["U1", "SU2"])
def test_float64_default_is_not_loosened(bk, G):
    U = random_gauge_field(G, LAT, bk.rng(15), batch_shape=(2,))
    off = lambda V: V + 1e-8 * G.mul(V, V, nd=LAT.nd)  # noqa: E731  (non-covariant by ~1e-8)
    assert 1e-10 < gauge_equivariance_error(off, U, G, LAT, bk.rng(16)) < 1e-6
    text = (r"^not gauge equivariant: field: max deviation .* > 1\.00\de-10 \(atol=1\.0e-10 \+ rtol=1\.4e-14 \* "
            r"max\|ref\| .*\) FAILED\n  for scale, moving U by ~4 ulp without a gauge transformation moves field by "
            r".*: the deviations are far above that: not round-off, the map breaks the symmetry$")
    with pytest.raises(AssertionError, match=text):
        assert_gauge_equivariant(off, U, G, LAT, bk.rng(16))
    assert_gauge_equivariant(off, U, G, LAT, bk.rng(16), atol=1e-6)


@pytest.mark.parametrize("precision", ["single", "double"])
def test_message_names_the_failing_output(bk, precision):
    G = SU(2)
    U = random_gauge_field(G, LAT, bk.rng(17), batch_shape=(2,), precision=precision)
    S = lambda V: wilson_action(G, V, LAT)  # noqa: E731
    good = lambda V: (plaquette_update(G, LAT)(V), S(V))  # noqa: E731
    assert_gauge_equivariant(good, U, G, LAT, bk.rng(18))
    bad_logdet = lambda V: (plaquette_update(G, LAT)(V), S(V) + G.re_trace(V, nd=LAT.nd)[:, 0, ...])  # noqa: E731
    with pytest.raises(AssertionError) as exc:
        assert_gauge_equivariant(bad_logdet, U, G, LAT, bk.rng(18))
    assert "log det: max deviation" in str(exc.value) and str(exc.value).splitlines()[0].endswith("FAILED")
    assert "field: max deviation" in str(exc.value) and "FAILED;" not in str(exc.value)
    bad_field = lambda V: (G.mul(V, V, nd=LAT.nd), S(V))  # noqa: E731
    with pytest.raises(AssertionError, match=r"field: max deviation .* FAILED; log det: max deviation [^;\n]*\)\n"
                                             r"  for scale, [^\n]*$"):
        assert_gauge_equivariant(bad_field, U, G, LAT, bk.rng(18))


# -- bad input is refused before any work, naming the argument (probe of the toolkit) -------------------------------
def _plaq(G, lat):
    return lambda V: wilson_action(G, V, lat)


def test_wrong_output_of_f_is_named_not_the_input_U():
    """gauge_transform of f(U) blamed the input: 'U has shape (2, 1, 2, 2, 4, 4); expected ...'."""
    G, rng = SU(2), backends.rng(20)
    U = random_gauge_field(G, LAT, rng, batch_shape=(2,))
    for f, shape in ((lambda V: V[:, :1], (2, 1, 2, 2, 4, 4)), (_plaq(G, LAT), (2, 4, 4))):
        with pytest.raises(ValueError, match=rf"^f\(U\) has shape {re.escape(str(shape))}; expected a gauge field "
                                             r"like U, shape \(2, 2, 2, 2, 4, 4\)"):
            gauge_equivariance_error(f, U, G, LAT, rng)
    with pytest.raises(TypeError, match=r"^f\(U\) has dtype float64"):   # real values for SU(2) links
        assert_gauge_equivariant(lambda V: V.real, U, G, LAT, rng)


@pytest.mark.parametrize("G", [SU(2), SU(3)], ids=["SU2", "SU3"])
def test_non_unitary_U_and_Omega_refused(G):
    """A non-unitary Omega made the invariant plaquette 'not gauge invariant'; a non-unitary U was accepted."""
    rng = backends.rng(21)
    U = random_gauge_field(G, LAT, rng, batch_shape=(2,))
    Om = random_gauge_transformation(U, G, LAT, rng)
    S = _plaq(G, LAT)
    assert_gauge_invariant(S, U, G, LAT, rng, Omega=Om)
    with pytest.raises(NonUnitaryError, match=rf"^Omega is not in {re.escape(G.name)}: largest defect"):
        assert_gauge_invariant(S, U, G, LAT, rng, Omega=2 * Om)
    with pytest.raises(NonUnitaryError, match=r"^U is not in SU"):
        gauge_invariance_error(S, 1.1 * U, G, LAT, rng)
    # links drawn in float32 and cast to complex128 are not group elements to float64 precision (defect ~1e-6)
    U32 = random_gauge_field(G, LAT, rng, batch_shape=(2,), precision="single")
    with pytest.raises(NonUnitaryError, match=r"^U is not in SU.*tolerance 1\.0e-10"):
        gauge_equivariance_error(lambda V: V, U32.astype(np.complex128), G, LAT, rng)
    assert gauge_equivariance_error(lambda V: V, U32, G, LAT, rng) < 1e-5   # in their own precision they are
    with pytest.raises(ValueError, match="^Omega has shape"):
        gauge_invariance_error(S, U, G, LAT, rng, Omega=Om[..., :2])
    with pytest.raises(TypeError, match="^Omega: expected an array"):
        gauge_invariance_error(S, U, G, LAT, rng, Omega=[1.0])


def test_omega_of_another_backend_refused():
    torch = pytest.importorskip("torch")
    G, rng = SU(2), backends.rng(22)
    U = random_gauge_field(G, LAT, rng)
    Om = torch.as_tensor(random_gauge_transformation(U, G, LAT, rng))
    with pytest.raises(backends.BackendError, match="^Omega is a torch array on cpu, U a numpy array"):
        gauge_invariance_error(_plaq(G, LAT), U, G, LAT, rng, Omega=Om)


def test_empty_inputs_refused():
    """An empty batch passed every check vacuously (U^2 'gauge equivariant', cosh 'odd')."""
    G, rng = SU(2), backends.rng(23)
    U0 = random_gauge_field(G, LAT, rng, batch_shape=(0,))
    square = lambda V: G.mul(V, V, nd=LAT.nd)  # noqa: E731
    for check in (assert_gauge_equivariant, gauge_equivariance_error, assert_gauge_invariant, gauge_invariance_error):
        with pytest.raises(ValueError, match=r"^U is empty \(shape \(0, 2, 2, 2, 4, 4\)\): nothing to check"):
            check(square, U0, G, LAT, rng)
    for check in (assert_equivariant, equivariance_error):
        with pytest.raises(ValueError, match=r"^x is empty \(shape \(0,\)\): nothing to check"):
            check(np.cosh, np.zeros((0,)), lambda x: -x)
    with pytest.raises(ValueError, match=r"^f\(T x\) is empty"):   # an empty output passes vacuously too
        equivariance_error(lambda x: x[:0] if x[0] < 0 else x, np.ones(3), lambda x: -x)


def test_bad_arguments_named():
    """lattice=(4, 4) gave AttributeError 'tuple' has no attribute 'check', group='SU(2)' AttributeError
    element_shape, an fn returning None BackendError 'unsupported array libraries: []'."""
    G, rng = SU(2), backends.rng(24)
    U = random_gauge_field(G, LAT, rng, batch_shape=(2,))
    S = _plaq(G, LAT)
    with pytest.raises(TypeError, match=r"^lattice=\(4, 4\): expected a latticekit.Lattice; .*Lattice\(\(4, 4\)\)"):
        gauge_invariance_error(S, U, G, (4, 4), rng)
    with pytest.raises(TypeError, match=r"^group='SU\(2\)': expected a latticekit Group.*group_from_name"):
        gauge_invariance_error(S, U, "SU(2)", LAT, rng)
    with pytest.raises(TypeError, match=r"^fn\(U\) is None \(NoneType\); expected an array or a number"):
        gauge_invariance_error(lambda V: None, U, G, LAT, rng)
    with pytest.raises(TypeError, match=r"^output 1 of f\(U\) is 'abc' \(str\)"):
        gauge_equivariance_error(lambda V: (V, "abc"), U, G, LAT, rng)
    with pytest.raises(TypeError, match="^f=3: expected a callable"):
        assert_gauge_invariant(3, U, G, LAT, rng)
    with pytest.raises(TypeError, match="^U: expected an array, got list"):
        random_gauge_transformation([1.0], G, LAT, rng)
    with pytest.raises(ValueError, match=r"^atol=-1: expected a non-negative number"):
        assert_gauge_invariant(S, U, G, LAT, rng, atol=-1)
    with pytest.raises(ValueError, match=r"^rtol=nan: expected a non-negative number"):
        assert_equivariant(np.tanh, np.ones(3), lambda x: -x, rtol=float("nan"))


def test_outputs_of_different_shapes_are_not_broadcast():
    """equivariance_error broadcast f(T x) of shape (2, 4, 4) against T' f(x) of shape (2, 4, 1): 2.1, no error."""
    x = np.random.default_rng(25).normal(size=(2, 4, 4))
    with pytest.raises(ValueError, match=r"^f\(T x\) has shape \(2, 4, 4\) but T' f\(x\) has shape \(2, 4, 1\)"):
        equivariance_error(lambda p: p, x, lambda p: p, lambda y: y[..., :1])
    y = np.abs(x) + 0.1          # f(x) has a second output of shape (2,), f(-x) one of shape (2, 4)
    with pytest.raises(ValueError, match=r"^output 1 of f\(T x\) has shape \(2, 4\) but output 1 of f\(x\) has "
                                         r"shape \(2,\): expected the same shape"):
        assert_equivariant(lambda p: (p, p[:, 0, 0] if p[0, 0, 0] > 0 else p[:, 0]), y, lambda p: -p)
    # a custom distance compares the first output as it likes
    assert equivariance_error(lambda p: p, x, lambda p: p, lambda y: y[..., :1], distance=lambda a, b: 0.0) == 0.0


# -- user probe: aliasing, large float64 values, ill-conditioned maps -------------------------------------------------
@pytest.mark.parametrize("G", [U1, SU(2)], ids=["U1", "SU2"])
def test_float64_floor_for_large_values(bk, G):
    """A correct float64 action of 4e6 deviated by one ulp (1e-9) under a gauge transformation and failed the absolute
    atol=1e-10 (user probe: SU(3) 12^4, S = -7.4e5); the floor 64 eps max|ref| = 6e-8 passes it, and a
    non-invariant part of 1e-6 (2.5e-13 of the value) is still caught."""
    from latticekit.testing.equivariance import _check_tolerances

    assert _check_tolerances(np.ones(2)) == (64 * 2.0**-52, 1e-10)
    U = random_gauge_field(G, LAT, bk.rng(30), batch_shape=(2,))
    xp = bk.xp
    big = lambda V: 1e6 * xp.sum(G.re_trace(plaquette(G, V, LAT, 0, 1), nd=2), axis=(-2, -1))  # noqa: E731
    assert 1e-10 < gauge_invariance_error(big, U, G, LAT, bk.rng(0)) < 1e-8      # about one ulp of 4e6
    assert_gauge_invariant(big, U, G, LAT, bk.rng(0))
    off = lambda V: big(V) + 1e-6 * G.re_trace(link(V, 0, G, LAT), nd=2)[:, 0, 0]  # noqa: E731
    with pytest.raises(AssertionError, match=r"^not gauge invariant: value: max deviation \S+ > \S+ \(atol=1\.0e-10 "
                                             r"\+ rtol=1\.4e-14 \* max\|ref\| \S+\) FAILED\n  for scale"):
        assert_gauge_invariant(off, U, G, LAT, bk.rng(0))


def test_maps_working_in_place_see_copies(bk):
    """An f that squared its input in place changed the caller's U; an fn that returned one reused buffer compared
    that buffer with itself, so link traces were 'gauge invariant' (user probe)."""
    G = SU(2)
    U = random_gauge_field(G, LAT, bk.rng(31), batch_shape=(2,))
    U_before = bk.to_numpy(U).copy()

    def square_in_place(V):
        V[...] = G.mul(V, V, nd=LAT.nd)
        return V

    with pytest.raises(AssertionError, match=r"^not gauge equivariant: field: max deviation"):
        assert_gauge_equivariant(square_in_place, U, G, LAT, bk.rng(32))
    assert_close(U, U_before, rtol=0, atol=0)                    # the caller's U is untouched
    buffer = []

    def traces_into_buffer(V):
        t = G.re_trace(V, nd=LAT.nd)
        if buffer:
            buffer[0][...] = t
        else:
            buffer.append(t)
        return buffer[0]

    assert gauge_invariance_error(traces_into_buffer, U, G, LAT, bk.rng(33)) > 1e-2
    with pytest.raises(AssertionError, match=r"^not gauge invariant: value: max deviation"):
        assert_gauge_invariant(traces_into_buffer, U, G, LAT, bk.rng(33))
    x = bk.asarray(np.arange(6.0))
    with pytest.raises(AssertionError, match=r"^not equivariant: output: max deviation"):   # cosh is even, not odd
        assert_equivariant(lambda v: _cosh_in_place(bk.xp, v), x, lambda v: -v)
    assert_close(x, np.arange(6.0), rtol=0, atol=0)


def _cosh_in_place(xp, v):
    v[...] = xp.cosh(v)
    return v


def test_roundoff_amplification_named_in_the_message(bk):
    """A covariant U(1) map that amplifies round-off 1e6-fold (a deep flow: 5e-8 in the field) failed with a
    message that blamed the map (user probe); the message now compares with the map's own round-off."""
    def amplify(V):          # theta_0 + sin(1e6 P_01): covariant, as the plaquette angle is invariant
        t0, t1 = V[:, 0, ...], V[:, 1, ...]
        P = t0 + LAT.shift(t1, 0) - LAT.shift(t0, 1) - t1
        return bk.xp.stack([t0 + bk.xp.sin(1e6 * P), t1], axis=1)

    U = random_gauge_field(U1, LAT, bk.rng(34), batch_shape=(2,))
    with pytest.raises(AssertionError, match=r"^not gauge equivariant: field: max deviation .* FAILED\n  for scale, "
                                             r"moving U by ~4 ulp without a gauge transformation moves field by \S+: "
                                             r"the deviations are of that size, so the map amplifies round-off "
                                             r"\(ill-conditioned, e\.g\. a deep flow\) rather than breaking the "
                                             r"symmetry; check each layer alone, and in float64$"):
        assert_gauge_equivariant(amplify, U, U1, LAT, bk.rng(35))
