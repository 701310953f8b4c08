"""The one loop builder (latticekit.loops): every product against explicit link products, gauge covariance,
the staple sum against the Wilson action, operation counts, and argument errors; on every backend."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions import wilson_gauge_action
from latticekit.gauge import gauge_transform, random_gauge_field
from latticekit.loops import LoopBuilder, Path, path_product, staple_order, staple_plaquette, trace_adj_mul, \
    trace_mul_adj
from latticekit.testing import assert_close

CASES = [
    pytest.param(lk.U1, (3, 4), id="U1-2d"),
    pytest.param(lk.U1, (3, 2, 4), id="U1-3d"),
    pytest.param(lk.SU(2), (3, 4, 2), id="SU2-3d"),
    pytest.param(lk.SU(3), (3, 4), id="SU3-2d"),
    pytest.param(lk.SU(3), (2, 3, 2, 3), id="SU3-4d"),
]


# -- an independent reference: explicit products of link matrices at single sites (numpy) ----------------
def _mats(U: Any, group: Any, nd: int) -> np.ndarray:
    """Links as numpy matrices, shape ``(B, Nd, *L, n, n)`` (U(1): ``1 x 1`` phases)."""
    Un = lk.backends.to_numpy(U)
    if group is lk.U1:
        return np.exp(1j * Un)[..., None, None]
    return np.moveaxis(np.moveaxis(Un, -nd - 2, -1), -nd - 2, -1)       # (..., N, N, *L) -> (..., *L, N, N)


def _field_mats(W: Any, group: Any, nd: int) -> np.ndarray:
    """A group-valued field ``(B, *G, *L)`` as matrices ``(B, *L, n, n)``."""
    Wn = lk.backends.to_numpy(W)
    if group is lk.U1:
        return np.exp(1j * Wn)[..., None, None]
    return np.moveaxis(np.moveaxis(Wn, -nd - 2, -1), -nd - 2, -1)


def _ref_path(M: np.ndarray, shape: tuple[int, ...], steps: list[tuple[int, int]], start: tuple[int, ...]
              ) -> np.ndarray:
    """``prod`` of link matrices along ``steps`` from the site ``start`` (periodic), ``(B, n, n)``."""
    nd = len(shape)
    z = list(start)
    out = np.broadcast_to(np.eye(M.shape[-1]), M.shape[:1] + M.shape[-2:]).astype(complex)
    for mu, s in steps:
        if s > 0:
            f = M[(slice(None), mu) + tuple(c % L for c, L in zip(z, shape))]
            z[mu] += 1
        else:
            z[mu] -= 1
            f = np.conj(np.swapaxes(M[(slice(None), mu) + tuple(c % L for c, L in zip(z, shape))], -1, -2))
        out = out @ f
    assert nd == len(z)
    return out


def _sites(shape: tuple[int, ...], n: int = 5, seed: int = 0) -> list[tuple[int, ...]]:
    g = np.random.default_rng(seed)
    return [tuple(int(g.integers(L)) for L in shape) for _ in range(n)]


def _check_field(W: Any, group: Any, shape: tuple[int, ...], M: np.ndarray, steps: list[tuple[int, int]],
                 origin: tuple[int, ...]) -> None:
    Wm = _field_mats(W, group, len(shape))
    for x in _sites(shape):
        start = tuple(a + b for a, b in zip(x, origin))
        ref = _ref_path(M, shape, steps, start)
        assert_close(Wm[(slice(None),) + x], ref, rtol=0, atol=1e-12, msg=f"steps {steps} at {x}")


@pytest.mark.parametrize("group,shape", CASES)
def test_plaquettes_staples_and_loops_match_explicit_products(bk: Any, group: Any, shape: tuple[int, ...]) -> None:
    lat = lk.Lattice(shape)
    nd = lat.nd
    U = random_gauge_field(group, lat, bk.rng(1), batch_shape=(2,))
    M = _mats(U, group, nd)
    lb = LoopBuilder(U, group, lat)
    zero = (0,) * nd
    e = [tuple(int(d == mu) for d in range(nd)) for mu in range(nd)]
    for mu, nu in itertools.permutations(range(nd), 2):
        _check_field(lb.plaquette(mu, nu), group, shape, M, [(mu, 1), (nu, 1), (mu, -1), (nu, -1)], zero)
        a, b = lb.plaquette_halves(mu, nu)
        _check_field(a, group, shape, M, [(mu, 1), (nu, 1)], zero)
        _check_field(b, group, shape, M, [(nu, 1), (mu, 1)], zero)
        # the traces without the third product
        P = _field_mats(lb.plaquette(mu, nu), group, nd)
        tr = np.trace(P, axis1=-2, axis2=-1)
        assert_close(lk.backends.to_numpy(lb.trace_plaquette(mu, nu)), tr, rtol=0, atol=1e-12)
        assert_close(lk.backends.to_numpy(lb.re_trace_plaquette(mu, nu)), tr.real, rtol=0, atol=1e-12)
        # the staples run from x + mu back to x
        _check_field(lb.staple(mu, nu, 1), group, shape, M, [(nu, 1), (mu, -1), (nu, -1)], e[mu])
        _check_field(lb.staple(mu, nu, -1), group, shape, M, [(nu, -1), (mu, -1), (nu, 1)], e[mu])
        _check_field(lb.rectangle(mu, nu), group, shape, M, [(mu, 1), (mu, 1), (nu, 1), (mu, -1), (mu, -1), (nu, -1)],
                     zero)
        # the two-plaquette loop around U_mu(x): the 2 x 1 rectangle, closed at x
        _check_field(lb.two_plaquette_loop(mu, (nu, 1), (nu, -1)), group, shape, M,
                     [(nu, 1), (mu, 1), (nu, -1), (nu, -1), (mu, -1), (nu, 1)], zero)
    # the staple sum is the sum of the 2 (Nd - 1) staples (complex numbers for U(1))
    for mu in range(nd):
        A = lk.backends.to_numpy(lb.staple_sum(mu))
        S = [lk.backends.to_numpy(group.to_matrix(s, nd=nd)) for s in lb.staples(mu)]
        assert len(S) == 2 * (nd - 1)
        assert_close(A, sum(S), rtol=0, atol=1e-12)


@pytest.mark.parametrize("group,shape", CASES)
def test_general_paths(bk: Any, group: Any, shape: tuple[int, ...]) -> None:
    lat = lk.Lattice(shape)
    nd = lat.nd
    U = random_gauge_field(group, lat, bk.rng(2), batch_shape=(2,))
    M = _mats(U, group, nd)
    lb = LoopBuilder(U, group, lat, cache=True)
    g = np.random.default_rng(3)
    for n in (1, 2, 5, 7):
        steps = [(int(g.integers(nd)), int(g.choice([1, -1]))) for _ in range(n)]
        origin = tuple(int(g.integers(-2, 3)) for _ in range(nd))
        W = lb.path(Path(steps), origin=origin)
        _check_field(W, group, shape, M, steps, origin)
        _check_field(path_product(U, Path(steps), group, lat, origin), group, shape, M, steps, origin)
        # the reversed path is the adjoint, read from the other end
        d = Path(steps).displacement(nd)
        Wr = lb.path(Path(steps).reversed(), origin=tuple(a + b for a, b in zip(origin, d)))
        assert_close(lk.backends.to_numpy(group.to_matrix(Wr, nd=nd)),
                     np.conj(lk.backends.to_numpy(group.to_matrix(W, nd=nd)))
                           if group is lk.U1 else
                           np.conj(np.swapaxes(lk.backends.to_numpy(W), -nd - 2, -nd - 1)),
                     rtol=0, atol=1e-12)
    # a line around the periodic lattice: the Polyakov loop (trace independent of the position along mu)
    W = lb.path(Path().f(0, shape[0]))
    tr = lk.backends.to_numpy(group.trace(W, nd=nd))
    assert_close(tr, np.roll(tr, 1, axis=1), rtol=0, atol=1e-12)


def _omega_mats(Om: Any, group: Any, nd: int) -> np.ndarray:
    return _field_mats(Om, group, nd)


@pytest.mark.parametrize("group,shape", CASES)
def test_gauge_covariance(bk: Any, group: Any, shape: tuple[int, ...]) -> None:
    # U_mu(x) S(x) is a closed loop at x: it transforms as Omega(x) (.) Omega(x)^dag; open paths as
    # Omega(start) W Omega(end)^dag
    lat = lk.Lattice(shape)
    nd = lat.nd
    rng = bk.rng(4)
    U = random_gauge_field(group, lat, rng, batch_shape=(2,))
    Om = group.random(rng, (2,), lat.shape)
    V = gauge_transform(U, Om, group, lat)
    lu, lv = LoopBuilder(U, group, lat), LoopBuilder(V, group, lat)
    Omm = _omega_mats(Om, group, nd)

    def conj(X: np.ndarray, start: tuple[int, ...], end: tuple[int, ...]) -> np.ndarray:
        A = np.roll(Omm, tuple(-s for s in start), axis=tuple(range(1, nd + 1)))
        B = np.roll(Omm, tuple(-s for s in end), axis=tuple(range(1, nd + 1)))
        return A @ X @ np.conj(np.swapaxes(B, -1, -2))

    zero = (0,) * nd
    for mu in range(nd):
        for (rho, side), S_u, S_v in zip(staple_order(nd, mu), lu.staples(mu), lv.staples(mu)):
            loop_u = _field_mats(group.mul(lu.link(mu), S_u, nd=nd), group, nd)
            loop_v = _field_mats(group.mul(lv.link(mu), S_v, nd=nd), group, nd)
            assert_close(loop_v, conj(loop_u, zero, zero), rtol=0, atol=1e-12)
        W_u = _field_mats(lu.path(Path().f(mu).f((mu + 1) % nd)), group, nd)
        W_v = _field_mats(lv.path(Path().f(mu).f((mu + 1) % nd)), group, nd)
        end = tuple(int(d == mu) + int(d == (mu + 1) % nd) for d in range(nd))
        assert_close(W_v, conj(W_u, zero, end), rtol=0, atol=1e-12)
    # negative control: a product that is not a path from x + mu to x does not transform like one
    bad = _field_mats(group.mul(lv.link(0), lv.link(0), nd=nd), group, nd)
    good = conj(_field_mats(group.mul(lu.link(0), lu.link(0), nd=nd), group, nd), zero, zero)
    assert float(np.abs(bad - good).max()) > 1e-3


@pytest.mark.parametrize("group,shape", CASES)
def test_staple_sum_reproduces_the_action(bk: Any, group: Any, shape: tuple[int, ...]) -> None:
    # S = -(beta/N) Re tr(U_mu(x) A_mu(x)) + (terms without U_mu(x)): changing one link changes S by
    # exactly -(beta/N) Delta Re tr(U_mu(x) A_mu(x)), A_mu(x) being free of U_mu(x)
    lat = lk.Lattice(shape)
    nd, beta = lat.nd, 1.7
    rng = bk.rng(5)
    U = random_gauge_field(group, lat, rng, batch_shape=(2,))
    xp = bk.xp
    for mu, x in [(0, (1,) * nd), (nd - 1, tuple(L - 1 for L in shape))]:
        R = group.random(rng, (2,), ())
        Un = lk.backends.to_numpy(U).copy()
        idx = (slice(None), mu) + (slice(None),) * len(group.element_shape) + x
        Rn = lk.backends.to_numpy(R)
        if group is lk.U1:
            Un[idx] = Un[idx] + Rn
        else:
            Un[idx] = np.einsum("bij,bjk->bik", Rn, Un[idx])
        V = bk.asarray(Un)
        lb = LoopBuilder(U, group, lat)
        A = lb.staple_sum(mu)
        sel = (slice(None),) + (slice(None),) * len(group.element_shape) + x

        def re_tr(W: Any) -> np.ndarray:
            Wl = lk.gauge.link(W, mu, group, lat)
            if group is lk.U1:
                return lk.backends.to_numpy(xp.real(group.to_matrix(Wl, nd=nd) * A))[sel]
            return lk.backends.to_numpy(group.re_trace(group.mul(Wl, A, nd=nd), nd=nd))[(slice(None),) + x]

        dS = lk.backends.to_numpy(wilson_gauge_action(V, beta, group, lat) - wilson_gauge_action(U, beta, group, lat))
        want = -(beta / group.N) * (re_tr(V) - re_tr(U))
        assert_close(dS, want, rtol=1e-11, atol=1e-11)
        assert float(np.abs(dS).max()) > 1e-3                 # the change is not trivial


@dataclass
class _Counts:
    mul: int = 0
    shift: int = 0
    roll: int = 0


def test_staple_sum_operation_count(bk: Any) -> None:
    # the economy of the hand-written staple sum it replaced: per direction rho != mu, 4 group
    # multiplications and 3 translations (the lower staple is formed at x - rho and moved once)
    counts = _Counts()
    G = lk.SU(3)

    class CountingSU(type(G)):  # type: ignore[misc]
        def mul(self, a: Any, b: Any, *, nd: int) -> Any:
            counts.mul += 1
            return super().mul(a, b, nd=nd)

        def mul_adj(self, a: Any, b: Any, *, nd: int) -> Any:
            counts.mul += 1
            return super().mul_adj(a, b, nd=nd)

        def adj_mul(self, a: Any, b: Any, *, nd: int) -> Any:
            counts.mul += 1
            return super().adj_mul(a, b, nd=nd)

    class CountingLattice(lk.Lattice):
        def shift(self, f: Any, mu: int, step: int = 1, phase: Any = None) -> Any:
            counts.shift += 1
            return super().shift(f, mu, step, phase)

    CG, lat = CountingSU(3), CountingLattice((2, 3, 2, 2))
    U = random_gauge_field(CG, lat, bk.rng(6))
    for mu in range(4):
        counts.mul = counts.shift = 0
        LoopBuilder(U, CG, lat).staple_sum(mu)
        assert (counts.mul, counts.shift) == (4 * 3, 3 * 3), mu
    # sharing across directions when the builder keeps its cache: every link translation once
    counts.mul = counts.shift = 0
    lb = LoopBuilder(U, CG, lat, cache=True)
    for mu in range(4):
        lb.staple_sum(mu)
    assert counts.mul == 4 * 12 and counts.shift == 12 + 12          # 12 link translations + 12 final shifts
    # a plaquette: 3 products, 2 translations (the observables' count)
    counts.mul = counts.shift = 0
    LoopBuilder(U, CG, lat).plaquette(1, 3)
    assert (counts.mul, counts.shift) == (3, 2)


@pytest.mark.parametrize("group", [lk.U1, lk.SU(3)], ids=["U1", "SU3"])
def test_staple_plaquette_geometry(group: Any) -> None:
    # U_mu(x) S_rho^side(x) is the library plaquette P_{min, max} at x or x - rho, read from the link
    # (sign +1) or backwards (sign -1, its adjoint conjugated by a link: the trace is conjugated)
    lat = lk.Lattice((3, 4, 2))
    U = random_gauge_field(group, lat, lk.backends.rng(7), batch_shape=(1,))
    lb = LoopBuilder(U, group, lat)
    nd = lat.nd
    for mu, rho in itertools.permutations(range(3), 2):
        for side in (1, -1):
            (a, b), shift, sign = staple_plaquette(mu, rho, side)
            loop = group.mul(lb.link(mu), lb.staple(mu, rho, side), nd=nd)
            P = lb.plaquette(a, b)
            if group is lk.U1:
                if shift:
                    P = lat.shift(P, rho, shift)
                d = lk.backends.to_numpy(loop - sign * P)
                assert_close(np.remainder(d + np.pi, 2 * np.pi), np.pi, rtol=0, atol=1e-12)  # d = 0 mod 2 pi
                continue
            trP = group.trace(P, nd=nd)
            if shift:
                trP = lat.shift(trP, rho, shift)
            if sign < 0:
                trP = np.conj(trP)
            assert_close(group.trace(loop, nd=nd), trP, rtol=0, atol=1e-12)
            if side > 0:                                   # at x itself the loop is P or P^dag
                want = P if sign > 0 else group.adjoint(P, nd=nd)
                assert_close(loop, want, rtol=0, atol=1e-12)


def test_traces_and_paths_api(bk) -> None:
    G, lat = lk.SU(2), lk.Lattice((2, 2))
    a, b = G.random(bk.rng(0), (3,), lat.shape), G.random(bk.rng(1), (3,), lat.shape)
    assert_close(trace_mul_adj(a, b, G, nd=2), G.trace(G.mul_adj(a, b, nd=2), nd=2), rtol=1e-7, atol=1e-12)
    assert_close(trace_adj_mul(a, b, G, nd=2), G.trace(G.adj_mul(a, b, nd=2), nd=2), rtol=1e-7, atol=1e-12)
    p = Path().f(0).b(1, 2)
    assert p.steps == ((0, 1), (1, -1), (1, -1)) and p + Path().f(1) == Path([(0, 1), (1, -1), (1, -1), (1, 1)])
    assert p.displacement(2) == (1, -2) and not p.is_closed(2) and hash(p) == hash(Path(p.steps))


def test_bad_inputs() -> None:
    lat, G = lk.Lattice((2, 2)), lk.SU(2)
    U = random_gauge_field(G, lat, lk.backends.rng(0))
    lb = LoopBuilder(U, G, lat)
    with pytest.raises(ValueError, match="sign"):
        Path([(0, 2)])
    with pytest.raises(ValueError, match="direction"):
        Path([(-1, 1)])
    with pytest.raises(ValueError, match="n=0"):
        Path().f(0, 0)
    with pytest.raises(ValueError, match="empty path"):
        lb.path(Path())
    with pytest.raises(ValueError, match="path direction=2"):
        lb.path(Path().f(2))
    with pytest.raises(ValueError, match="origin"):
        lb.path(Path().f(0), origin=(1,))
    with pytest.raises(TypeError, match="Path"):
        lb.path([(0, 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="different directions"):
        lb.staple(1, 1, 1)
    with pytest.raises(ValueError, match="side"):
        lb.staple(0, 1, 0)
    with pytest.raises(ValueError, match="from x \\+ e_0 to x"):
        lb.abstract_staple(0, Path().f(1).b(1))
    with pytest.raises(TypeError, match=r"^path=\[\(1, 1\)\]: expected a latticekit.loops.Path"):
        lb.abstract_staple(0, [(1, 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sign (np\.)?True_? in .*must be \+1"):       # np.True_ == 1 passed as a sign
        Path([(0, np.True_)])
    assert Path([(np.int64(1), np.int8(-1))]).steps == ((1, -1),)
    lat1 = lk.Lattice((4,))                                                # 1D: the staple sum was None
    with pytest.raises(ValueError, match=r"staples need at least 2 dimensions"):
        LoopBuilder(random_gauge_field(G, lat1, lk.backends.rng(0)), G, lat1).staple_sum(0)
    with pytest.raises(lk.LatticeMismatchError):
        LoopBuilder(U, G, lk.Lattice((2, 4)))
    with pytest.raises(TypeError, match="group"):
        LoopBuilder(U, "SU2", lat)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="link fields"):
        LoopBuilder.from_links([U[0]], G, lat)


@pytest.mark.parametrize("group,shape", CASES)
def test_clover_leaves_match_explicit_products(bk: Any, group: Any, shape: tuple[int, ...]) -> None:
    """The four leaves of the clover, each a plaquette based at x, counter-clockwise in the (mu, nu) plane."""
    from latticekit.testing import assert_close

    lat = lk.Lattice(shape)
    nd = lat.nd
    U = random_gauge_field(group, lat, bk.rng(4), batch_shape=(2,))
    M = _mats(U, group, nd)
    lb = LoopBuilder(U, group, lat, cache=True)
    zero = (0,) * nd
    for mu, nu in itertools.permutations(range(nd), 2):
        leaves = lb.clover_leaves(mu, nu)
        expected = [[(mu, 1), (nu, 1), (mu, -1), (nu, -1)], [(nu, 1), (mu, -1), (nu, -1), (mu, 1)],
                    [(mu, -1), (nu, -1), (mu, 1), (nu, 1)], [(nu, -1), (mu, 1), (nu, 1), (mu, -1)]]
        for leaf, steps in zip(leaves, expected):
            _check_field(leaf, group, shape, M, steps, zero)
        assert_close(leaves[0], lb.plaquette(mu, nu), atol=1e-12, rtol=0)


def test_a_one_link_path_is_not_a_view_of_the_field(bk) -> None:
    """``path(Path().f(mu))`` returned ``U_mu`` itself (a view on NumPy): editing the result in place edited the gauge
    field (user probe). Every path product is a new array."""
    lat, G = lk.Lattice((4, 2)), lk.SU(2)
    U = random_gauge_field(G, lat, bk.rng(0))
    before = bk.to_numpy(U).copy()
    for p in (Path().f(1), Path().b(0)):
        W = LoopBuilder(U, G, lat).path(p)
        W[...] = 0.0
        assert_close(bk.to_numpy(U), before, rtol=0, atol=0)
