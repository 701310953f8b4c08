"""Staples of doubling layers: S_A and S_B of arXiv:2404.10819 eqs. 7-8 written out by hand with group products
and shifts on the coarse grid (independent of latticekit.loops) against the sandwich staples built on the
library's loop builder; blocked staples against fine path products; restriction to sub-slices; eq. 5 and
eq. 9 round trips."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.flows.multiscale import Sandwich, deinterleave, interleave, join_links, split_links
from latticekit.flows.multiscale.staples import fold_positions
from latticekit.loops import LoopBuilder, Path
from latticekit.testing import assert_close


def _trng(seed: int) -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch")


def _sh(t: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    """f(X + step e_axis) on the last two axes."""
    return torch.roll(t, -step, dims=t.ndim - 2 + axis)


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2), lk.SU(3)], ids=["U1", "SU2", "SU3"])
@pytest.mark.parametrize("mu", [0, 1])
def test_eqs_7_8_by_hand(G: Any, mu: int) -> None:
    nu = 1 - mu
    B, shape = 2, (3, 2)                                         # the coarse grid (odd extents allowed here)
    C = G.random(_trng(0), (B, 2), shape)
    links = list(C.unbind(1))
    UB = G.random(_trng(1), (B,), shape)
    UA = split_links(G, links[mu], UB, nd=2)                     # eq. 5
    mul, adj = (lambda a, b: G.mul(a, b, nd=2)), (lambda a: G.adjoint(a, nd=2))
    # eq. 7: S_A(x + mu/2) = U_A^dag(x + nu) U_nu^dag(x) U_A(x);  eq. 8: U_B(x + mu/2 + nu) U_nu^dag(x + mu) U_B^dag(x + mu/2)
    SA = mul(mul(adj(_sh(UA, nu, 1)), adj(links[nu])), UA)
    SB = mul(mul(_sh(UB, nu, 1), adj(_sh(links[nu], mu, 1))), adj(UB))
    # the fine field of eq. 9 with U_perp = placeholder (never read)
    fine = [interleave(UA, UB, nd=2, axis=mu) if c == mu else interleave(links[c], links[c], nd=2, axis=mu)
            for c in range(2)]
    lo, hi = Sandwich.from_doubling(G, fine, mu).staples(0, (1,))
    want_lo, want_hi = fold_positions(SA, 2, mu), fold_positions(SB, 2, mu)
    if G is lk.U1:
        assert_close(torch.cos(lo - want_lo), torch.ones_like(lo), rtol=1e-5, atol=1e-12)
        assert_close(torch.cos(hi - want_hi), torch.ones_like(hi), rtol=1e-5, atol=1e-12)
    else:
        assert_close(lo, want_lo, rtol=1e-5, atol=1e-12)
        assert_close(hi, want_hi, rtol=1e-5, atol=1e-12)
    # and they are the library staples S_mu^-, S_mu^+ of the nu-links at the odd mu sites
    lb = LoopBuilder(torch.stack(fine, 1), G, lk.Lattice(tuple(2 * s if c == mu else s for c, s in enumerate(shape))))
    for side, got in ((-1, lo), (1, hi)):
        odd = (Ellipsis,) + tuple(slice(1, None, 2) if c == mu else slice(None) for c in range(2))
        ref = fold_positions(lb.staple(nu, mu, side)[odd], 2, mu)
        assert_close(got, ref, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("G", [lk.U1, lk.SU(3)], ids=["U1", "SU3"])
def test_blocked_and_restricted_staples_are_fine_paths(G: Any) -> None:
    """A 3D field doubled along 0: the sandwich of the 2D slice at odd x0, blocked by 2 along slice axis 0
    (global direction 1), and restricted to the sub-slice at odd positions of slice axis 1 (global 2): every
    staple equals the fine path product -mu x delta, -a x b, +mu x delta (and the upper one)."""
    lat = lk.Lattice((4, 4, 4))
    U = G.random(_trng(2), (2, 3), lat.shape)
    links = list(U.unbind(1))
    sw = Sandwich.from_doubling(G, links, 0, tau=0, delta=1)
    lb = LoopBuilder(U, G, lat)

    def fine_staple(a: int, b: int, side: int) -> torch.Tensor:
        tau = 0
        e = [0, 0, 0]
        e[a] = b
        p = Path().b(tau).b(a, b).f(tau) if side < 0 else Path().f(tau).b(a, b).b(tau)
        return lb.path(p, tuple(e))

    def assert_same(x: torch.Tensor, y: torch.Tensor, msg: str) -> None:
        """x = y as group elements (U(1) angles modulo 2 pi, through cos(x - y) = 1)."""
        if G is lk.U1:
            assert_close(torch.cos(x - y), torch.ones_like(x), rtol=1e-5, atol=1e-12, msg=msg)
        else:
            assert_close(x, y, rtol=1e-5, atol=1e-12, msg=msg)

    # slice axes (1, 2) of the fine lattice; block (2, 1): links along global 1 of length 2 at even x1
    lo, hi = sw.staples(0, (2, 1))
    for got, side in ((lo, -1), (hi, 1)):
        ref = fine_staple(1, 2, side)[..., 1::2, ::2, :]                   # odd x0, even x1
        assert_same(got, fold_positions(ref, 3, 0), f"blocked staple, side {side}")
    # sub-slice: odd positions along slice axis 1 (global 2) on the grid of block (2, 1): links along global 1
    sub = sw.restrict(1, (2, 1))
    assert sub.k == 1 and sub.shape == (2,)
    lo, hi = sub.staples(0, (1,))
    for got, side in ((lo, -1), (hi, 1)):
        ref = fine_staple(1, 2, side)[..., 1::2, ::2, 1::2]                 # odd x0, even x1, odd x2
        ref = fold_positions(fold_positions(ref, 3, 0), 2, 1)
        assert_same(got, ref, f"restricted staple, side {side}")


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=["U1", "SU2"])
def test_split_join_interleave_round_trip(G: Any) -> None:
    U, UB = G.random(_trng(3), (2,), (4, 2)), G.random(_trng(4), (2,), (4, 2))
    back = join_links(G, split_links(G, U, UB, nd=2), UB, nd=2)
    if G is lk.U1:
        assert_close(torch.cos(back - U), torch.ones_like(U), rtol=1e-5, atol=1e-12)
    else:
        assert_close(back, U, rtol=1e-5, atol=1e-12)
    e, o = deinterleave(interleave(U, UB, nd=2, axis=1), nd=2, axis=1)
    assert torch.equal(e, U) and torch.equal(o, UB)


def test_bad_input() -> None:
    G = lk.SU(2)
    links = list(G.random(_trng(5), (1, 2), (3, 2)).unbind(1))
    with pytest.raises(ValueError, match="doubled extent along axis 0 must be even"):
        Sandwich.from_doubling(G, links, 0)
    sw = Sandwich.from_doubling(G, list(G.random(_trng(5), (1, 2), (4, 2)).unbind(1)), 0)
    with pytest.raises(ValueError, match="block=\\(3,\\)"):
        sw.staples(0, (3,))
    with pytest.raises(ValueError, match="axis=1"):
        sw.staples(1, (1,))
    with pytest.raises(ValueError, match="one-dimensional slice has no sub-slice"):
        sw.restrict(0, (1,))
