"""Wilson-Dirac operator: gamma algebra, reference implementation, gamma_5-hermiticity, gauge
covariance, free-field spectrum and log det against the analytic momentum-space formulas."""

import itertools

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions.dirac import (
    WilsonDirac,
    apply_gamma5,
    gamma5_matrix,
    gamma_matrices,
    kappa_from_mass,
    mass_from_kappa,
    wilson_dirac,
    wilson_dirac_dagger,
)
from latticekit.gauge import gauge_transform, gauge_transform_matter, random_gauge_field
from latticekit.linalg import dense_matrix, logdet_normal
from latticekit.testing import assert_close

CASES = [("U1", (4, 4)), ("SU2", (4, 2)), ("SU3", (2, 2, 2, 2)), ("U1", (4, 2, 2, 2))]


def _setup(bk, name, shape, seed=0, batch=(), kappa=0.13):
    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    rng = bk.rng(seed)
    U = random_gauge_field(G, lat, rng, batch)
    D = WilsonDirac(U, G, lat, kappa=kappa)
    return G, lat, rng, U, D


def _vdot(bk, a, b):
    return complex(np.vdot(bk.to_numpy(a), bk.to_numpy(b)))


# -- gamma matrices (host-side tables) --------------------------------------------------------------
@pytest.mark.parametrize("nd", [2, 4])
def test_clifford_algebra(nd):
    g = [np.array(m) for m in gamma_matrices(nd)]
    g5 = np.array(gamma5_matrix(nd))
    ns = g5.shape[0]
    for a in range(nd):
        assert_close(g[a], g[a].conj().T, rtol=1e-5, atol=1e-8)
        assert_close(g5 @ g[a] + g[a] @ g5, 0, rtol=0, atol=1e-8)
        for b in range(nd):
            assert_close(g[a] @ g[b] + g[b] @ g[a], 2 * (a == b) * np.eye(ns), rtol=1e-5, atol=1e-8)
    assert_close(g5 @ g5, np.eye(ns), rtol=1e-5, atol=1e-8)
    if nd == 2:
        assert_close(g[0], [[0, 1], [1, 0]], rtol=1e-5, atol=1e-8)
        assert_close(g[1], [[0, -1j], [1j, 0]], rtol=1e-5, atol=1e-8)
        assert_close(g5, np.diag([1, -1]), rtol=1e-5, atol=1e-8)
    else:
        # DeGrand-Rossi (Chroma): chroma gamma_1..4 = x, y, z, t = ours[1], ours[2], ours[3], ours[0]
        chroma = {
            1: [[0, 0, 0, 1j], [0, 0, 1j, 0], [0, -1j, 0, 0], [-1j, 0, 0, 0]],
            2: [[0, 0, 0, -1], [0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0]],
            3: [[0, 0, 1j, 0], [0, 0, 0, -1j], [-1j, 0, 0, 0], [0, 1j, 0, 0]],
            4: [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0]],
        }
        for ours, ch in [(0, 4), (1, 1), (2, 2), (3, 3)]:
            assert_close(g[ours], chroma[ch], rtol=1e-5, atol=1e-8)
        # Chroma's gamma_5 = g1 g2 g3 g4 (x y z t) = -g_0 g_1 g_2 g_3 in our numbering
        assert_close(g5, np.array(chroma[1]) @ chroma[2] @ chroma[3] @ chroma[4], rtol=1e-5, atol=1e-8)
        assert_close(g5, -g[0] @ g[1] @ g[2] @ g[3], rtol=1e-5, atol=1e-8)


def test_kappa_mass_conversion():
    assert_close(kappa_from_mass(0.1, 2), 1 / 4.2, rtol=1e-6, atol=0)
    assert_close(mass_from_kappa(kappa_from_mass(-0.3, 4), 4), -0.3, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="m0"):
        kappa_from_mass(-2.0, 2)
    with pytest.raises(ValueError, match="kappa"):
        mass_from_kappa(0.0, 2)


# -- an independent reference: dense D from the definition, site by site ----------------------------
def _reference_dense(U, G, lat, kappa):
    U = np.asarray(U)
    nd, shape = lat.nd, lat.shape
    g = [np.array(m) for m in gamma_matrices(nd)]
    ns, nc = g[0].shape[0], G.N
    sites = list(itertools.product(*[range(L) for L in shape]))
    index = {x: i for i, x in enumerate(sites)}
    n = ns * nc * len(sites)

    def comp(s, c, x):  # row-major (Ns, Nc, *L)
        return (s * nc + c) * len(sites) + index[x]

    def linkmat(mu, x):
        if G.N == 1:
            return np.array([[np.exp(1j * U[(mu,) + x])]])
        return U[(mu, slice(None), slice(None)) + x]

    M = np.eye(n, dtype=complex)
    one = np.eye(ns)
    for x in sites:
        for mu in range(nd):
            xp = list(x)
            xp[mu] = (x[mu] + 1) % shape[mu]
            xp = tuple(xp)
            bc = -1.0 if (mu == 0 and x[mu] == shape[mu] - 1) else 1.0  # hop x -> x+mu crosses t boundary
            fwd = bc * np.kron(one - g[mu], linkmat(mu, x))  # row x, column x+mu
            bwd = bc * np.kron(one + g[mu], linkmat(mu, x).conj().T)  # row x+mu, column x
            for (s, c), (t, d) in itertools.product(itertools.product(range(ns), range(nc)), repeat=2):
                M[comp(s, c, x), comp(t, d, xp)] -= kappa * fwd[s * nc + c, t * nc + d]
                M[comp(s, c, xp), comp(t, d, x)] -= kappa * bwd[s * nc + c, t * nc + d]
    return M


@pytest.mark.parametrize("name,shape", [("U1", (4, 2)), ("SU2", (2, 4)), ("SU3", (2, 2, 2, 2)), ("U1", (4, 2, 2, 2))])
def test_matches_reference_implementation(bk, name, shape):
    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    U = random_gauge_field(G, lat, bk.rng(3))
    D = WilsonDirac(U, G, lat, kappa=0.17)
    assert_close(dense_matrix(D), _reference_dense(bk.to_numpy(U), G, lat, 0.17), rtol=1e-5, atol=1e-13)


# -- gamma_5-hermiticity, on every backend ----------------------------------------------------------
@pytest.mark.parametrize("name,shape", CASES)
def test_gamma5_hermiticity(bk, name, shape):
    G, lat, rng, U, D = _setup(bk, name, shape, batch=(2,))
    psi = D.random_field(rng)
    chi = D.random_field(rng)
    lhs = _vdot(bk, chi, D.apply(psi))
    rhs = _vdot(bk, D.apply_dagger(chi), psi)
    assert_close(rhs, lhs, rtol=0, atol=1e-11 * max(1.0, abs(lhs)))
    g5Dg5 = D.apply_gamma5(D.apply(D.apply_gamma5(psi)))
    assert_close(bk.to_numpy(g5Dg5), bk.to_numpy(D.apply_dagger(psi)), rtol=1e-5, atol=1e-12)
    assert_close(bk.to_numpy(apply_gamma5(psi, lat)), bk.to_numpy(D.apply_gamma5(psi)), rtol=1e-5, atol=1e-8)
    # the operator is not Hermitian itself (the test above must be able to fail)
    with pytest.raises(AssertionError, match="elements differ"):
        assert_close(bk.to_numpy(D.apply(psi)), bk.to_numpy(D.apply_dagger(psi)), rtol=1e-5, atol=1e-8)
    # normal operator: <psi, D D^dag psi> = |D^dag psi|^2 > 0
    n1 = _vdot(bk, psi, D.normal(psi, 0.3))
    n2 = np.linalg.norm(bk.to_numpy(D.apply_dagger(psi))) ** 2 + 0.3 * np.linalg.norm(bk.to_numpy(psi)) ** 2
    assert_close(n1.real, n2, rtol=1e-12, atol=0)
    assert_close(n1.imag, 0.0, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,shape", CASES)
def test_gauge_covariance(bk, name, shape):
    G, lat, rng, U, D = _setup(bk, name, shape)
    Om = G.random(rng, (), lat.shape)
    psi = D.random_field(rng)
    Dg = WilsonDirac(gauge_transform(U, Om, G, lat), G, lat, kappa=D.kappa)
    lhs = Dg.apply(gauge_transform_matter(psi, Om, G, lat))
    rhs = gauge_transform_matter(D.apply(psi), Om, G, lat)
    assert_close(bk.to_numpy(lhs), bk.to_numpy(rhs), rtol=1e-5, atol=1e-12)
    # and the untransformed operator does NOT commute with Omega
    bad = D.apply(gauge_transform_matter(psi, Om, G, lat))
    with pytest.raises(AssertionError, match="elements differ"):
        assert_close(bk.to_numpy(bad), bk.to_numpy(rhs), rtol=1e-5, atol=1e-6)


def test_batching_and_broadcasting(bk):
    G, lat, rng, U, D = _setup(bk, "SU2", (4, 2), batch=(3,))
    psi = D.random_field(rng, (5, 3))  # 5 sources on each of 3 configurations
    out = bk.to_numpy(D.apply(psi))
    assert out.shape == (5, 3) + D.field_shape
    for b in range(3):
        Db = WilsonDirac(U[b, ...], G, lat, kappa=D.kappa)
        assert_close(out[:, b], bk.to_numpy(Db.apply(psi[:, b, ...])), rtol=1e-5, atol=1e-13)
    assert_close(bk.to_numpy(wilson_dirac(psi, U, G, lat, kappa=D.kappa)), out, rtol=1e-5, atol=1e-8)
    assert_close(bk.to_numpy(wilson_dirac_dagger(psi, U, G, lat, kappa=D.kappa)), bk.to_numpy(D.apply_dagger(psi)),
                 rtol=1e-5, atol=1e-8)


def test_input_validation():
    lat = lk.Lattice((4, 4))
    U = lk.gauge.cold_gauge_field(lk.U1, lat)
    with pytest.raises(ValueError, match="exactly one"):
        WilsonDirac(U, lk.U1, lat)
    with pytest.raises(ValueError, match="exactly one"):
        WilsonDirac(U, lk.U1, lat, kappa=0.1, m0=0.1)
    with pytest.raises(ValueError, match="kappa"):
        WilsonDirac(U, lk.U1, lat, kappa=-0.1)
    with pytest.raises(ValueError, match="U"):
        WilsonDirac(U[..., :3], lk.U1, lat, kappa=0.1)
    with pytest.raises(ValueError, match="nd=3"):
        WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lk.Lattice((2, 2, 2))), lk.U1, lk.Lattice((2, 2, 2)), kappa=0.1)
    with pytest.raises(TypeError, match="complex"):
        WilsonDirac(np.zeros((2, 2, 2, 4, 4)), lk.SU(2), lat, kappa=0.1)
    with pytest.raises(TypeError, match="angles"):
        WilsonDirac(np.zeros((2, 4, 4), dtype=complex), lk.U1, lat, kappa=0.1)
    D = WilsonDirac(U, lk.U1, lat, kappa=0.1)
    with pytest.raises(lk.LatticeMismatchError, match="psi"):
        D.apply(np.zeros((2, 1, 4, 2), dtype=complex))
    with pytest.raises(TypeError, match="complex"):
        D.apply(np.zeros((2, 1, 4, 4)))
    assert_close(WilsonDirac(U, lk.U1, lat, m0=0.5).kappa, 0.2, rtol=1e-6, atol=0)


# -- free field: spectrum and log det from momentum space -------------------------------------------
def _free_normal_eigs(shape, kappa, ncomp):
    """Eigenvalues of D D^dag for U = 1: |1 - 2k sum cos p|^2 + 4k^2 sum sin^2 p (Ns*Nc-fold)."""
    ps = np.meshgrid(*[(2 * np.arange(L) + (1 if mu == 0 else 0)) * np.pi / L for mu, L in enumerate(shape)],
                     indexing="ij")
    lam = (1 - 2 * kappa * sum(np.cos(p) for p in ps)) ** 2 + 4 * kappa ** 2 * sum(np.sin(p) ** 2 for p in ps)
    return np.sort(np.repeat(lam.ravel(), ncomp)), ps


@pytest.mark.parametrize("name,shape", [("U1", (4, 4)), ("U1", (6, 2)), ("SU2", (4, 2)), ("U1", (4, 2, 2, 2)),
                                        ("SU3", (2, 2, 2, 2))])
def test_free_spectrum_and_logdet(bk, name, shape):
    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    kappa = 0.21
    U0 = lk.gauge.cold_gauge_field(G, lat, backend=bk.name, device=bk.device)
    D = WilsonDirac(U0, G, lat, kappa=kappa)
    ana, ps = _free_normal_eigs(shape, kappa, D.Ns * D.Nc)
    M = bk.to_numpy(dense_matrix(D.normal, D.field_shape, like=U0))
    assert_close(np.linalg.eigvalsh(M), ana, rtol=1e-5, atol=1e-12)
    assert_close(float(bk.to_numpy(logdet_normal(D))), np.sum(np.log(ana)), rtol=1e-12, atol=0)
    if lat.nd == 4:  # (a general eig of the 4D matrices is slow with threaded OpenBLAS; 2D checks it)
        return
    # eigenvalues of D itself: 1 - 2k sum cos p +- 2ik sqrt(sum sin^2 p)
    ev = np.linalg.eigvals(bk.to_numpy(dense_matrix(D)))
    re = 1 - 2 * kappa * sum(np.cos(p) for p in ps)
    im = 2 * kappa * np.sqrt(sum(np.sin(p) ** 2 for p in ps))
    half = D.Ns * D.Nc // 2
    want = np.concatenate([np.repeat((re + 1j * im).ravel(), half), np.repeat((re - 1j * im).ravel(), half)])
    key = lambda z: np.lexsort((np.round(z.imag, 8), np.round(z.real, 8)))  # noqa: E731
    assert_close(ev[key(ev)], want[key(want)], rtol=1e-5, atol=1e-10)


def test_periodic_boundary_option(bk):
    lat = lk.Lattice((4, 4))
    U0 = lk.gauge.cold_gauge_field(lk.U1, lat, backend=bk.name, device=bk.device)
    D = WilsonDirac(U0, lk.U1, lat, kappa=0.2, antiperiodic=False)
    # periodic free spectrum contains p = 0: lambda = (1 - 4 kappa * 2 / 2 ... ) = (1 - 2k*nd)^2
    ev = np.linalg.eigvalsh(bk.to_numpy(dense_matrix(D.normal, D.field_shape, like=U0)))
    assert_close(ev.min(), (1 - 2 * 0.2 * 2) ** 2, rtol=0, atol=1e-12)
    Da = WilsonDirac(U0, lk.U1, lat, kappa=0.2)
    assert np.linalg.eigvalsh(bk.to_numpy(dense_matrix(Da.normal, Da.field_shape, like=U0))).min() > 0.05


def test_fermion_batch_and_backend_are_checked(bk):
    """A psi whose batch does not broadcast with the gauge batch, or of another backend, is refused before any
    work, naming psi (numpy's "operands could not be broadcast" / torch's "unsupported operand type" before)."""
    lat = lk.Lattice((4, 4))
    D = WilsonDirac(random_gauge_field(lk.U1, lat, bk.rng(0), batch_shape=(3,)), lk.U1, lat, kappa=0.2)
    with pytest.raises(lk.lattice.LatticeMismatchError, match=r"psi has batch shape \(2,\); expected one that "
                                                               r"broadcasts with the gauge field's batch shape \(3,\)"):
        D.apply(D.random_field(bk.rng(1), (2,)))
    with pytest.raises(lk.lattice.LatticeMismatchError, match="psi has batch shape"):
        D.apply_dagger(D.random_field(bk.rng(1), (2, 2)))
    assert D.apply(D.random_field(bk.rng(1), (5, 3))).shape == (5, 3) + D.field_shape   # a leading axis broadcasts
    other = "array_api_strict" if bk.name == "numpy" else "numpy"
    psi = lk.backends.asarray(np.ones((3,) + D.field_shape, dtype=complex), backend=other)
    with pytest.raises(TypeError, match=f"psi: expected a {bk.name} array on .* like the gauge field, got a {other}"):
        D.apply(psi)


def test_fermion_precision_must_match_the_links(bk):
    """complex128 fermions on complex64 links (or float32 angles) were promoted silently, and the solves reported
    a convergence the single-precision operator cannot give (user probe); refused, naming both dtypes."""
    lat = lk.Lattice((4, 4))
    for G in (lk.U1, lk.SU(2)):
        U = random_gauge_field(G, lat, bk.rng(0), batch_shape=(2,))
        U32 = bk.xp.astype(U, bk.xp.float32 if G is lk.U1 else bk.xp.complex64)
        D32, D64 = (WilsonDirac(u, G, lat, kappa=0.2) for u in (U32, U))
        assert D32.zeros().dtype == bk.xp.complex64 and D64.zeros().dtype == bk.xp.complex128
        with pytest.raises(TypeError, match=r"psi has dtype .*complex128; the gauge field's precision gives .*complex64"):
            D32.apply(D64.random_field(bk.rng(1)))
        with pytest.raises(TypeError, match=r"psi has dtype .*complex64; the gauge field's precision gives .*complex128"):
            D64.apply(D32.random_field(bk.rng(1)))
        assert D32.apply(D32.random_field(bk.rng(1))).dtype == bk.xp.complex64
