"""autograd_logdet / assert_logdet_matches on maps with known Jacobians."""

import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from latticekit import SU, U1  # noqa: E402
from latticekit.testing import assert_close, assert_logdet_matches, autograd_logdet  # noqa: E402

DT = torch.float64


def _mats_last(G, U, nd):
    k = U.ndim - nd - 2
    return torch.movedim(U, (k, k + 1), (-2, -1))


def test_linear_map_on_reals(torch_backends):
    for b in torch_backends:
        g = torch.Generator().manual_seed(0)
        A = torch.randn(6, 6, generator=g, dtype=DT).to(b.device)
        x = torch.randn(3, 2, 3, generator=g, dtype=DT).to(b.device)
        f = lambda v: (v.reshape(3, 6) @ A.T).reshape(3, 2, 3)  # noqa: E731
        ld = autograd_logdet(f, x)
        assert ld.shape == (3,)
        assert_close(ld, torch.full((3,), float(torch.linalg.slogdet(A)[1]), dtype=DT, device=b.device))


def test_complex_field_scaling():
    a = 0.7 - 1.1j
    x = torch.randn(2, 3, 2, dtype=torch.complex128)
    ld = autograd_logdet(lambda v: a * v, x)
    assert_close(ld, torch.full((2,), 6 * 2 * math.log(abs(a)), dtype=DT))  # 6 complex dof, |det| = |a|^2 each


def test_u1_shift_and_sine_map():
    x = torch.empty(2, 2, 3, 3, dtype=DT).uniform_(-math.pi, math.pi, generator=torch.Generator().manual_seed(1))
    assert_close(autograd_logdet(lambda t: t + 0.4, x, group=U1), torch.zeros(2, dtype=DT), atol=1e-14)
    a = 0.6
    ld = autograd_logdet(lambda t: t + a * torch.sin(t), x, group=U1)
    ref = torch.log(torch.abs(1 + a * torch.cos(x))).sum((1, 2, 3))
    assert_close(ld, ref)


class SineLayer:
    """theta -> theta + a sin(theta) (invertible for |a| < 1) with a logdet that can be made wrong."""

    def __init__(self, a, wrong=False):
        self.a, self.wrong = a, wrong

    def __call__(self, x, context=None):
        ld = torch.log1p(self.a * torch.cos(x)).sum((1, 2, 3))
        return x + self.a * torch.sin(x), ld + (0.01 if self.wrong else 0.0)

    def inverse(self, y, context=None):
        x = y.clone()
        for _ in range(60):  # Newton
            x = x - (x + self.a * torch.sin(x) - y) / (1 + self.a * torch.cos(x))
        return x, -torch.log1p(self.a * torch.cos(x)).sum((1, 2, 3))


def test_assert_logdet_matches_u1_layer():
    x = torch.empty(2, 2, 3, 3, dtype=DT).uniform_(-math.pi, math.pi, generator=torch.Generator().manual_seed(2))
    assert_logdet_matches(SineLayer(0.5), x, group=U1, check_inverse=True)
    with pytest.raises(AssertionError, match="logdet vs autograd"):
        assert_logdet_matches(SineLayer(0.5, wrong=True), x, group=U1)


@pytest.mark.parametrize("N", [2, 3, 4])
def test_su_left_and_right_multiplication(N):
    G = SU(N)
    from latticekit.backends import rng

    g = rng(3, backend="torch")
    U = G.random(g, (2, 2), (2, 2))  # (B, Nd, N, N, 2, 2)
    V = G.random(g, (), ())
    W = G.random(g, (2,), (2, 2))  # site-dependent, fixed
    Vb = V.reshape((N, N, 1, 1))
    for f in (lambda u: G.mul(Vb, u, nd=2), lambda u: G.mul(u, Vb, nd=2), lambda u: G.mul(W, u, nd=2),
              lambda u: G.mul_adj(Vb, u, nd=2)):  # inversion u -> V u^dagger also preserves Haar
        ld = autograd_logdet(f, U, group=G, nd=2)
        assert_close(ld, torch.zeros(2, dtype=DT), atol=1e-10)


@pytest.mark.parametrize("N", [2, 3])
def test_su_square_map(N):
    """U -> U^2: J = 1 + Ad(U) in right-invariant coordinates, det = 2^(N-1) prod_{j<k} 4 cos^2((phi_j - phi_k)/2)."""
    G = SU(N)
    from latticekit.backends import rng

    U = G.random(rng(4, backend="torch"), (2,), (2,))  # (B, N, N, L=2), nd = 1
    ld = autograd_logdet(lambda u: G.mul(u, u, nd=1), U, group=G, nd=1)
    phi = G.eigen_angles(U, nd=1)  # (B, N, L)
    ref = (N - 1) * math.log(2.0) * torch.ones_like(phi[:, 0, :])
    for j in range(N):
        for k in range(j + 1, N):
            ref = ref + torch.log(4 * torch.cos((phi[:, j] - phi[:, k]) / 2) ** 2)
    assert_close(ld, ref.sum(-1), rtol=1e-8, atol=1e-8)


def test_su2_conjugation_equivariant_map():
    """U -> exp(a X) U with X = project_algebra(U) (commutes with U): class function map on SU(2).

    With U = exp(phi n.T-ish), only the angle changes: phi -> phi + a sin(phi) (X = i sin(phi) n.sigma),
    so in Weyl coordinates the Haar density ratio is (1 + a cos phi) sin^2(phi') / sin^2(phi).
    """
    G = SU(2)
    from latticekit.backends import rng

    U = G.random(rng(5, backend="torch"), (3,), ())
    a = 0.3

    def f(u):
        return G.mul(G.exp(a * G.project_algebra(u, nd=0), nd=0), u, nd=0)

    ld = autograd_logdet(f, U, group=G, nd=0)
    phi = G.eigen_angles(U, nd=0)[:, 0]
    phi2 = phi + a * torch.sin(phi)
    ref = torch.log(torch.abs(1 + a * torch.cos(phi))) + 2 * torch.log(torch.sin(phi2) / torch.sin(phi))
    assert_close(ld, ref, rtol=1e-8, atol=1e-8)
    # the layer form
    layer = lambda u: (f(u), ref)  # noqa: E731
    assert_logdet_matches(layer, U, group=G, nd=0)


def test_batch_mixing_detected_and_errors():
    x = torch.randn(3, 4, dtype=DT)
    with pytest.raises(ValueError, match="mixes batch elements"):
        autograd_logdet(lambda v: v + 0.1 * torch.roll(v, 1, 0), x)
    with pytest.raises(ValueError, match="changes the shape"):
        autograd_logdet(lambda v: v[:, :2], x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        autograd_logdet(lambda v: v, np.ones((2, 2)))
    with pytest.raises(ValueError, match="nd"):
        autograd_logdet(lambda v: v, SU(2).identity((2,), backend="torch"), group=SU(2))
    with pytest.raises(TypeError, match="complex tensor"):
        autograd_logdet(lambda v: v, torch.ones(2, 2, dtype=torch.complex128), group=U1)
    with pytest.raises(TypeError, match="return \\(y, logdet\\)"):
        assert_logdet_matches(lambda v: v, x)


def test_batch_ndim_and_context():
    x = torch.randn(2, 3, 4, dtype=DT)
    ld = autograd_logdet(lambda v, context: context * v, x, context=3.0, batch_ndim=2)
    assert ld.shape == (2, 3)
    assert_close(ld, torch.full((2, 3), 4 * math.log(3.0), dtype=DT))


def test_vectorize_options_agree():
    G = SU(2)
    from latticekit.backends import rng

    U = G.random(rng(6, backend="torch"), (2,), (2,))
    f = lambda u: G.mul(u, u, nd=1)  # noqa: E731
    a = autograd_logdet(f, U, group=G, nd=1, vectorize=False)
    b = autograd_logdet(f, U, group=G, nd=1, vectorize=True)
    assert_close(a, b)


# -- bad input is refused before any work (probe of the toolkit) ------------------------------------------------------
class _Identity:
    """The identity layer: log det exactly 0; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, context=None):
        self.calls += 1
        return x, torch.zeros(x.shape[0], dtype=torch.float64)

    def inverse(self, y, context=None):
        return y, torch.zeros(y.shape[0], dtype=torch.float64)


@pytest.mark.parametrize("N", [2, 3])
def test_non_unitary_links_refused(N):
    """float32-drawn SU(3) links cast to complex128 (defect ~1e-6) gave the identity a log det of ~6e-6, and
    assert_logdet_matches blamed the layer; 1.5 U gave an arbitrary number."""
    from latticekit.backends import rng
    from latticekit.groups import NonUnitaryError

    G = SU(N)
    U32 = G.random(rng(0, backend="torch"), (2, 2), (2, 2), precision="single")
    U = U32.to(torch.complex128)
    layer = _Identity()
    for bad in (U, 1.5 * U):
        with pytest.raises(NonUnitaryError, match=rf"^x is not in SU\({N}\): largest defect .* > tolerance 1\.0e-10"):
            autograd_logdet(layer, bad, group=G, nd=2)
        with pytest.raises(ValueError, match=r"^x is not in SU"):
            assert_logdet_matches(layer, bad, group=G, nd=2)
    assert layer.calls == 0                                   # refused before the layer was called
    assert_logdet_matches(layer, G.normalize(U, nd=2), group=G, nd=2, check_inverse=True)   # re-unitarised: fine
    assert_logdet_matches(layer, U32, group=G, nd=2)          # in float32, 1e-6 is round-off: accepted
    # a layer whose output is not in the group: named as the layer's output, not x
    with pytest.raises(NonUnitaryError, match=r"^the layer's output y = fn\(x\) is not in SU"):
        assert_logdet_matches(lambda v: (1.01 * v, torch.zeros(2, dtype=DT)), G.normalize(U, nd=2), group=G, nd=2)


def test_empty_inputs_refused_before_the_layer():
    """A (0, 4, 4) input crashed with an IndexError inside torch.autograd; (2, 0) passed a wrong layer."""
    class Wrong(_Identity):
        def __call__(self, x, context=None):
            self.calls += 1
            return 2 * x, torch.full(x.shape[:1], 123.0, dtype=x.dtype)

    layer = Wrong()
    for shape in ((0, 4, 4), (2, 0)):
        with pytest.raises(ValueError, match=rf"^x is empty \(shape {re.escape(str(shape))}\): nothing to check"):
            assert_logdet_matches(layer, torch.zeros(shape, dtype=DT), check_inverse=True)
        with pytest.raises(ValueError, match=r"^x is empty"):
            autograd_logdet(layer, torch.zeros(shape, dtype=DT))
    assert layer.calls == 0


def test_explicit_atol_alone_is_absolute():
    """docs/testing.md: an explicit atol alone is an absolute bound; assert_logdet_matches kept rtol=1e-8, so a
    log det off by 1e-7 (|log det| = 11) passed atol=1e-9."""
    class Off:
        def __call__(self, x, context=None):
            return 2 * x, torch.full(x.shape[:1], x[0].numel() * math.log(2) + 1e-7, dtype=x.dtype)

    x = torch.randn(3, 4, 4, dtype=DT, generator=torch.Generator().manual_seed(7))
    assert_logdet_matches(Off(), x)                   # the documented default rtol=atol=1e-8: 1e-7 < 1e-8 + 1.1e-7
    with pytest.raises(AssertionError, match=r"logdet vs autograd Jacobian: Arrays not close \(rtol=0, atol=1e-09\)"):
        assert_logdet_matches(Off(), x, atol=1e-9)
    assert_logdet_matches(Off(), x, atol=1e-9, rtol=1e-8)
    with pytest.raises(ValueError, match=r"^atol=-1: expected a non-negative number"):
        assert_logdet_matches(Off(), x, atol=-1)


def test_bad_arguments_named_before_the_layer_is_called():
    """A NumPy x called the layer first (AttributeError 'numpy.ndarray' has no attribute 'numel'); a group name
    gave an unhelpful error."""
    layer = _Identity()
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor, got ndarray"):
        assert_logdet_matches(layer, np.zeros((2, 3)))
    U = SU(2).identity((2, 2), (2, 2), backend="torch")
    with pytest.raises(TypeError, match=r"^group='SU2': expected a latticekit Group.*group_from_name\('SU2'\)"):
        assert_logdet_matches(layer, U, group="SU2", nd=2)
    with pytest.raises(ValueError, match=r"^batch_ndim=1\.5: expected an integer"):
        autograd_logdet(layer, torch.zeros(2, 3, dtype=DT), batch_ndim=1.5)
    with pytest.raises(TypeError, match=r"^check_inverse=True but the layer has no inverse"):
        assert_logdet_matches(lambda v: (v, torch.zeros(2, dtype=DT)), torch.zeros(2, 3, dtype=DT),
                              check_inverse=True)
    with pytest.raises(ValueError, match=r"^x is not in U\(1\)"):       # U(1) angles must be finite
        autograd_logdet(layer, torch.tensor([[0.5, math.nan]], dtype=DT), group=U1)
    assert layer.calls == 0


def test_docs_state_the_logdet_defaults():
    """docs/testing.md gave every assert_* checker atol=1e-10, rtol=0 in float64 and showed
    assert_logdet_matches(layer, x, check_inverse=True) as if the inverse were checked by default."""
    import inspect
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text().split())
    assert "`assert_logdet_matches` has its own defaults" in text
    assert "`rtol=atol=1e-8` in float64 / complex128 and `rtol=atol=1e-4` in float32 / complex64" in text
    assert "only with `check_inverse=True` (default False)" in text
    assert inspect.signature(assert_logdet_matches).parameters["check_inverse"].default is False
    x = torch.randn(2, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(8))
    ld = x[0].numel() * math.log(2.0)
    for factor, ok in ((0.9, True), (1.1, False)):     # documented float64 bound: 1e-8 + 1e-8 |log det|
        err = factor * (1e-8 + 1e-8 * ld)
        layer = lambda v, err=err: (2 * v, torch.full(v.shape[:1], ld + err, dtype=DT))  # noqa: E731
        if ok:
            assert_logdet_matches(layer, x)
        else:
            with pytest.raises(AssertionError, match="logdet vs autograd Jacobian"):
                assert_logdet_matches(layer, x)


# -- user probe: in-place layers, log det types, conditioning, missing group=, size -----------------------------------
class _InPlaceScale:
    """x -> 2 x in place; the inverse multiplies in place by ``back`` (0.5 is right)."""

    def __init__(self, back=0.5):
        self.back = back

    def __call__(self, x, context=None):
        x.mul_(2.0)
        return x, torch.full(x.shape[:1], x[0].numel() * math.log(2.0), dtype=x.dtype)

    def inverse(self, y, context=None):
        y.mul_(self.back)
        return y, torch.full(y.shape[:1], -y[0].numel() * math.log(2.0), dtype=y.dtype)


def test_in_place_layers_get_copies():
    """x, y and the inverse's output were one tensor: y.mul_(0.25) and a no-op inverse passed check_inverse=True,
    and the caller's x came back multiplied by 4."""
    x = torch.randn(2, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(9))
    x_before = x.clone()
    assert_logdet_matches(_InPlaceScale(), x, check_inverse=True)
    assert_close(autograd_logdet(_InPlaceScale(), x), torch.full((2,), 9 * math.log(2.0), dtype=DT))
    for back in (0.25, 1.0):
        with pytest.raises(AssertionError, match=r"^inverse round trip: Arrays not close \(rtol=1e-08, atol=1e-08\): "
                                                 r"18 of 18 elements differ"):
            assert_logdet_matches(_InPlaceScale(back), x, check_inverse=True)
    assert_close(x, x_before, rtol=0, atol=0)            # the caller's x is untouched


def test_log_det_must_be_real_floating():
    """A complex log det (log det instead of log|det|) passed, its imaginary part dropped by a cast; an integer one
    passed; (y, None) crashed inside torch."""
    x = torch.randn(2, 3, dtype=DT, generator=torch.Generator().manual_seed(10))
    ld = 3 * math.log(2.0)
    cases = [(torch.full((2,), ld + 5j, dtype=torch.complex128), r"has dtype torch\.complex128, a complex log det "
              r"\(log det rather than log\|det\|\?\); expected a real floating log\|det dy/dx\| per batch element"),
             (torch.zeros(2, dtype=torch.int64), r"has dtype torch\.int64; expected a real floating log\|det dy/dx\|"),
             (None, r"is None; expected a real floating log\|det dy/dx\| per batch element")]
    for bad, text in cases:
        with pytest.raises(TypeError, match=r"^the layer's log det " + text):
            assert_logdet_matches(lambda v, bad=bad: (2 * v, bad), x)

    class BadInverse:
        def __call__(self, v, context=None):
            return 2 * v, torch.full((2,), ld, dtype=DT)

        def inverse(self, v, context=None):
            return 0.5 * v, torch.full((2,), -ld + 0j, dtype=torch.complex128)

    with pytest.raises(TypeError, match=r"^the inverse's log det has dtype torch\.complex128, a complex log det"):
        assert_logdet_matches(BadInverse(), x, check_inverse=True)
    assert_logdet_matches(lambda v: (2 * v, torch.full((2,), ld, dtype=DT)), x)      # real float64: fine


def test_missing_group_hint():
    """SU(2) links checked without group= compared the layer with a Jacobian in complex-entry coordinates and said
    only 'not close'."""
    from latticekit.backends import rng

    G = SU(2)
    U = G.random(rng(11, backend="torch"), (2,), (2,))                 # (B, N, N, L), nd = 1
    phi = G.eigen_angles(U, nd=1)
    ld = torch.log(4 * torch.cos((phi[:, 0] - phi[:, 1]) / 2) ** 2).sum(-1) + 2 * math.log(2.0)
    square = lambda u: (G.mul(u, u, nd=1), ld)  # noqa: E731
    assert_logdet_matches(square, U, group=G, nd=1)
    text = (r"^logdet vs autograd Jacobian: Arrays not close .*\n.*\n.*\n  hint: x looks like a field of SU\(2\) "
            r"matrices \(axes 1 and 2\), but group= was not given, so the Jacobian was taken in the coordinates of the "
            r"complex entries, not in the algebra coordinates of the Haar measure: for links pass "
            r"group=latticekit\.SU\(2\), nd=1$")
    with pytest.raises(AssertionError, match=text):
        assert_logdet_matches(square, U)


def test_conditioning_reported_on_failure():
    """A correct but ill-conditioned map failed with a message that blamed the layer (the dense reference was wrong
    by 26); a wrong log det of a well-conditioned map is said not to be round-off."""
    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=DT))
    s = 10.0 ** torch.linspace(0, -24, 8, dtype=DT)                    # singular values 1 .. 1e-24
    A = Q @ torch.diag(s) @ Q.T
    x = torch.randn(2, 8, generator=g, dtype=DT)
    exact = lambda v: (v @ A.T, torch.full((2,), float(torch.log(s).sum()), dtype=DT))  # noqa: E731
    text = (r"\n  conditioning of dy/dx \(dense Jacobian, batch element \d\): singular values \S+ \.\. 1\.00e\+00, "
            r"condition number \S+e\+1\d; round-off \(eps 2\.2e-16\) can move the reference log det by ~\S+, more "
            r"than the tolerance \S+: the failure may come from the conditioning of the map rather than from the "
            r"layer\. Check in float64, and a composition one layer at a time \(its log det is the sum of its "
            r"layers'\)$")
    with pytest.raises(AssertionError, match=text):
        assert_logdet_matches(exact, x)
    B = torch.eye(8, dtype=DT) + 0.1 * Q
    off = lambda v: (v @ B.T, torch.linalg.slogdet(B)[1].expand(2) + 1e-6)  # noqa: E731
    with pytest.raises(AssertionError, match=r"^logdet vs autograd Jacobian: .*\n.*\n.*\n  conditioning of dy/dx .*"
                                             r"can move the reference log det by ~\S+, below the tolerance \S+: the "
                                             r"difference is not round-off$"):
        assert_logdet_matches(off, x)
    text = (r"^inverse round trip: .*\n.*\n.*\n  conditioning of dy/dx .* can move the round trip by ~\S+, below "
            r"the tolerance \S+: the difference is not round-off$")
    with pytest.raises(AssertionError, match=text):
        assert_logdet_matches(_InPlaceScale(0.25), x, check_inverse=True)


class _Kink:
    """y = x + a sin x elementwise, a = 0.9999: dy/dx = 1 + a cos x is 1e-4 at x = pi, so the rounding of y in
    float32 (~1e-7) moves the exact inverse by ~1e-3. The inverse solves in float64 (``steps`` Newton steps)."""

    A = 0.9999

    def __init__(self, steps=60):
        self.steps = steps

    def __call__(self, x, context=None):
        return x + self.A * torch.sin(x), torch.log(torch.abs(1 + self.A * torch.cos(x))).sum(-1)

    def inverse(self, y, context=None):
        yd = y.double()
        x = yd.clone()
        for _ in range(self.steps):
            x = x - (x + self.A * torch.sin(x) - yd) / (1 + self.A * torch.cos(x))
        x = x.to(y.dtype)
        return x, -torch.log(torch.abs(1 + self.A * torch.cos(x))).sum(-1)


def test_float32_round_trip_allows_the_conditioning_floor():
    """A correct float32 layer missed the round trip by 9e-4 where |dy/dx| = 1e-4 (tolerance 1.2e-4); with the default
    tolerances each element is now also allowed 4 eps M (1 + sum_i |dx_j/dy_i|), and a wrong inverse still fails."""
    x = torch.tensor([[math.pi, 0.5, -1.0, 2.0], [math.pi - 2e-3, 1.5, 0.1, -2.5]], dtype=torch.float32)
    with torch.no_grad():
        err = float((_Kink().inverse(_Kink()(x)[0])[0] - x).abs().max())
    assert 2e-4 < err < 1e-2                                           # beyond the plain tolerance 1e-4
    assert_logdet_matches(_Kink(), x, check_inverse=True)
    with pytest.raises(AssertionError, match=r"^inverse round trip: Arrays not close \(rtol=0, atol=0\.0001\)"):
        assert_logdet_matches(_Kink(), x, check_inverse=True, atol=1e-4)       # explicit tolerances: not relaxed
    text = (r"^inverse round trip: .*\n.*\n.*\n  in single precision each element x_j is also allowed the round-off "
            r"floor 4 eps M \(1 \+ sum_i \|dx_j/dy_i\|\), M = 3\.14, up to \S+ here\n  conditioning of dy/dx")
    with pytest.raises(AssertionError, match=text):
        assert_logdet_matches(_Kink(steps=1), x, check_inverse=True)           # one Newton step: wrong by O(1)


def test_dense_jacobian_size_limit():
    """SU(3) on 4x4 at batch 8 (2048 coordinates) ran 13 s and took 1.3 GB unasked; refused before the layer runs."""
    from latticekit.backends import rng
    from latticekit.testing.jacobian import MAX_COORDINATES

    assert MAX_COORDINATES == 1024
    U = SU(3).identity((8, 2), (4, 4), backend="torch")
    layer = _Identity()
    text = (r"^the dense Jacobian would be 2048 x 2048 \(2048 real coordinates: batch 8 x 256 per sample\), above "
            r"max_coordinates=1024: check a smaller lattice or batch \(or raise max_coordinates; memory and time grow "
            r"with its square\)$")
    with pytest.raises(ValueError, match=text):
        autograd_logdet(layer, U, group=SU(3), nd=2)
    with pytest.raises(ValueError, match=text):
        assert_logdet_matches(layer, U, group=SU(3), nd=2, check_inverse=True)
    with pytest.raises(ValueError, match=r"^the dense Jacobian would be 12 x 12 \(12 real coordinates: batch 2 x 6 per "
                                         r"sample\), above max_coordinates=10"):
        autograd_logdet(layer, torch.zeros(2, 3, dtype=torch.complex128), max_coordinates=10)
    with pytest.raises(ValueError, match=r"^max_coordinates=0: expected a positive integer"):
        autograd_logdet(layer, torch.zeros(2, 3, dtype=DT), max_coordinates=0)
    assert layer.calls == 0
    V = SU(3).random(rng(12, backend="torch"), (1, 2), (4, 4))          # 256 coordinates: fine
    assert_close(autograd_logdet(lambda u: u, V, group=SU(3), nd=2, max_coordinates=256), torch.zeros(1, dtype=DT),
                 atol=1e-12)
