"""Gauge fields: construction, gauge transformations of links and matter."""

import numpy as np
import pytest

from latticekit import SU, U1, Lattice, LatticeMismatchError
from latticekit.gauge import (
    check_gauge_field,
    cold_gauge_field,
    gauge_transform,
    gauge_transform_matter,
    link,
    random_gauge_field,
    stack_links,
)
from latticekit.groups import NonUnitaryError
from latticekit.testing import assert_close

GROUPS = [U1, SU(2), SU(3)]
IDS = ["U1", "SU2", "SU3"]
LAT = Lattice((4, 2, 3))


def mat(G, U):
    return G.to_matrix(U, nd=LAT.nd)


def plaquette_traces(G, U, lat):
    out = []
    for mu, nu in lat.planes():
        Um, Un = link(U, mu, G, lat), link(U, nu, G, lat)
        P = G.mul_adj(G.mul(Um, lat.shift(Un, mu), nd=lat.nd), G.mul(Un, lat.shift(Um, nu), nd=lat.nd), nd=lat.nd)
        out.append(G.re_trace(P, nd=lat.nd))
    return out


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_construction(bk, G):
    U = random_gauge_field(G, LAT, bk.rng(0), batch_shape=(2,))
    assert U.shape == (2, LAT.nd) + G.element_shape + LAT.shape
    check_gauge_field(U, G, LAT, unitarity=True)
    C = cold_gauge_field(G, LAT, (2,), backend=bk.name, device=bk.device)
    assert C.shape == U.shape and C.dtype == U.dtype
    for p in plaquette_traces(G, C, LAT):
        assert_close(p, np.full((2,) + LAT.shape, float(G.N)))
    links = [link(U, mu, G, LAT) for mu in range(LAT.nd)]
    assert links[1].shape == (2,) + G.element_shape + LAT.shape
    assert_close(stack_links(links, G, LAT), U)
    np.testing.assert_array_equal(bk.to_numpy(links[2]), bk.to_numpy(U)[:, 2])


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_gauge_transform_composition_and_identity(bk, G):
    U = random_gauge_field(G, LAT, bk.rng(1), batch_shape=(2,))
    O1 = G.random(bk.rng(2), (2,), LAT.shape)
    O2 = G.random(bk.rng(3), (2,), LAT.shape)
    I = G.identity((2,), LAT.shape, backend=bk.name, device=bk.device)
    assert_close(mat(G, gauge_transform(U, I, G, LAT)), mat(G, U))
    two = gauge_transform(gauge_transform(U, O1, G, LAT), O2, G, LAT)
    once = gauge_transform(U, G.mul(O2, O1, nd=LAT.nd), G, LAT)
    assert_close(mat(G, two), mat(G, once))
    # inverse transformation undoes it
    back = gauge_transform(gauge_transform(U, O1, G, LAT), G.adjoint(O1, nd=LAT.nd), G, LAT)
    assert_close(mat(G, back), mat(G, U))
    # a nontrivial transformation changes the links but not the plaquettes
    V = gauge_transform(U, O1, G, LAT)
    assert float(np.abs(bk.to_numpy(mat(G, V)) - bk.to_numpy(mat(G, U))).max()) > 1e-2
    for p, q in zip(plaquette_traces(G, V, LAT), plaquette_traces(G, U, LAT)):
        assert_close(p, q)
    check_gauge_field(V, G, LAT, unitarity=True)


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_gauge_transform_explicit_site(bk, G):
    """U_mu(x) -> Omega(x) U_mu(x) Omega(x + mu)^dagger at one site, on host matrices."""
    U = random_gauge_field(G, LAT, bk.rng(4))
    Om = G.random(bk.rng(5), (), LAT.shape)
    V = gauge_transform(U, Om, G, LAT)
    h = lambda a: np.asarray(bk.to_numpy(G.to_matrix(a, nd=LAT.nd)))  # noqa: E731
    hU, hO, hV = h(U), h(Om), h(V)
    x = (3, 1, 2)
    for mu in range(LAT.nd):
        y = list(x)
        y[mu] = (y[mu] + 1) % LAT.shape[mu]
        if G.N == 1:
            ref = hO[x] * hU[(mu,) + x] * np.conj(hO[tuple(y)])
            assert_close(hV[(mu,) + x], ref, rtol=1e-7, atol=1e-13)
        else:
            sl = (slice(None), slice(None))
            ref = hO[sl + x] @ hU[(mu,) + sl + x] @ np.conj(hO[sl + tuple(y)]).T
            assert_close(hV[(mu,) + sl + x], ref, rtol=1e-7, atol=1e-13)


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_gauge_transform_matter(bk, G):
    Om = G.random(bk.rng(6), (2,), LAT.shape)
    U = random_gauge_field(G, LAT, bk.rng(7), batch_shape=(2,))
    for spin in ((), (4,)):
        psi = bk.rng(8).complex_normal((2,) + spin + (G.N,) + LAT.shape)
        out = gauge_transform_matter(psi, Om, G, LAT)
        assert out.shape == psi.shape
        # the covariant hop psi^dag(x) U_mu(x) psi(x + mu) is invariant
        for mu in range(LAT.nd):
            def hop(Uf, p):
                Up = G.act(_spread(bk, G, link(Uf, mu, G, LAT), len(spin)), LAT.shift(p, mu), nd=LAT.nd)
                return bk.xp.sum(bk.xp.conj(p) * Up, axis=tuple(range(1, p.ndim)))
            assert_close(hop(gauge_transform(U, Om, G, LAT), out), hop(U, psi))
        # colour norm per site is invariant
        n2 = lambda p: bk.xp.sum(bk.xp.abs(p) ** 2, axis=-LAT.nd - 1)  # noqa: E731
        assert_close(n2(out), n2(psi))
    # identity acts trivially; composition
    I = G.identity((2,), LAT.shape, backend=bk.name, device=bk.device)
    psi = bk.rng(9).complex_normal((2, G.N) + LAT.shape)
    assert_close(gauge_transform_matter(psi, I, G, LAT), psi)
    O2 = G.random(bk.rng(10), (2,), LAT.shape)
    assert_close(gauge_transform_matter(gauge_transform_matter(psi, Om, G, LAT), O2, G, LAT),
                 gauge_transform_matter(psi, G.mul(O2, Om, nd=LAT.nd), G, LAT))


def _spread(bk, G, Umu, n_spin):
    """Insert spin axes before the group axes of a link field so it broadcasts against psi."""
    for _ in range(n_spin):
        Umu = bk.xp.expand_dims(Umu, axis=Umu.ndim - LAT.nd - len(G.element_shape))
    return Umu


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_mismatched_lattices(bk, G):
    U = random_gauge_field(G, LAT, bk.rng(11))
    other = Lattice((4, 2, 4))
    Om_bad = G.random(bk.rng(12), (), other.shape)
    with pytest.raises(LatticeMismatchError, match="Omega has shape"):
        gauge_transform(U, Om_bad, G, LAT)
    with pytest.raises(LatticeMismatchError, match="U has shape"):
        gauge_transform(U, G.random(bk.rng(12), (), other.shape), G, other)
    with pytest.raises(LatticeMismatchError):
        check_gauge_field(U, G, Lattice((4, 2)))
    with pytest.raises(LatticeMismatchError, match="Omega has shape"):
        gauge_transform_matter(bk.rng(1).complex_normal((G.N,) + LAT.shape), Om_bad, G, LAT)


def test_wrong_group_shapes(bk):
    U = random_gauge_field(SU(3), LAT, bk.rng(13))
    with pytest.raises(LatticeMismatchError):
        check_gauge_field(U, SU(2), LAT)
    with pytest.raises(NonUnitaryError):
        check_gauge_field(1.1 * U, SU(3), LAT, unitarity=True)


@pytest.mark.parametrize("G", GROUPS, ids=IDS)
def test_matter_transformation_checks_psi_and_aligns_batches_on_the_leading_axes(bk, G):
    """psi was not checked (a wrong colour size raised "list index out of range", a wrong lattice a bare broadcasting
    error, real input passed) and a batch of Omega could meet an unbatched spinor's spin axis silently (user probe).
    Omega's batch axes are psi's leading axes (documented); psi[None] transforms one spinor by each Omega."""
    from latticekit.gauge import link

    Om = G.random(bk.rng(1), (2,), LAT.shape)
    psi = bk.rng(2).complex_normal((4, G.N) + LAT.shape)                 # one spinor, Ns = 4
    with pytest.raises(ValueError, match=r"^Omega has batch shape \(2,\) and psi has shape .*psi\[None\]"):
        gauge_transform_matter(psi, Om, G, LAT)
    out = bk.to_numpy(gauge_transform_matter(psi[None, ...], Om, G, LAT))
    assert out.shape == (2, 4, G.N) + LAT.shape
    for b in range(2):
        assert_close(out[b], bk.to_numpy(gauge_transform_matter(psi, Om[b, ...], G, LAT)), rtol=1e-14, atol=1e-15)
    with pytest.raises(LatticeMismatchError, match=r"^psi has shape"):
        gauge_transform_matter(bk.rng(3).complex_normal((G.N + 1,) + LAT.shape), Om[0, ...], G, LAT)
    with pytest.raises(LatticeMismatchError, match=r"^psi has shape"):
        gauge_transform_matter(bk.rng(3).complex_normal((G.N, 4, 2, 4)), Om[0, ...], G, LAT)
    with pytest.raises(TypeError, match=r"^psi has dtype .*expected a complex"):
        gauge_transform_matter(bk.rng(3).normal((G.N,) + LAT.shape), Om[0, ...], G, LAT)
    U = random_gauge_field(G, LAT, bk.rng(4))
    for bad in (-1, LAT.nd, 1.0):
        with pytest.raises((ValueError, TypeError), match=rf"^mu={bad!r}: expected"):
            link(U, bad, G, LAT)
