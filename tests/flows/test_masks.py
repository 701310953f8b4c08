"""Masks of gauge coupling layers (latticekit.flows.masks).

The generic classification is checked on the signed plaquette/link incidence matrix of the library's
own plaquette function (autograd of U(1) plaquette angles): no plaquette holds two active links,
active + passive = plaquettes with one active link, frozen = none, each active plaquette holds its own
link with the sign of :func:`latticekit.loops.staple_plaquette`, and every active link lies in one
active and ``2 Nd - 3`` passive plaquettes; the staples of an active link hold no active link. Also:
the 2D stripes are Kanwar's (active / frozen / passive stripes), the checkerboard freezes exactly the
planes without ``mu``, translations are symmetries (and unit steps across the pattern are not), the
layer orders, argument errors.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest
import torch

import latticekit as lk
from latticekit.flows.masks import (
    MASK_PATTERNS,
    CheckerboardMask,
    GaugeMask,
    LinkMask,
    Stripe,
    StripeMask,
    checkerboard_masks,
    gauge_masks,
    stripe_masks,
)
from latticekit.flows.shifted_masks import ShiftedStripeMask, default_shift_parameters, shifted_stripe_masks
from latticekit.loops import LoopBuilder, staple_order, staple_plaquette
from latticekit.observables import plaquettes
from latticekit.testing import assert_close

F64 = torch.float64


def two_direction_mask(lat: lk.Lattice) -> LinkMask:
    """A valid mask with active links in two directions (2D): U_0 on x_1 = 0 (mod 4), x_0 even; U_1 on
    x_1 = 2 (mod 4), x_0 odd, with its active loop on the -0 side."""
    c = lat.coords(backend="torch")
    return LinkMask(lat, {0: (c[1] % 4 == 0) & (c[0] % 2 == 0), 1: (c[1] % 4 == 2) & (c[0] % 2 == 1)},
                    {0: (1, 1), 1: (0, -1)}, translations=[(2, 0), (0, 4)], name="two-directions")


# (lattice, mask factory) for the structural checks
MASKS: list[tuple[tuple[int, ...], Callable[[lk.Lattice], GaugeMask]]] = []
for _shape in [(2, 4), (4, 2), (4, 4), (2, 2, 4), (3, 2, 2), (2, 2, 2, 2), (1, 4, 2, 2)]:
    _nd = len(_shape)
    for _mu, _nu, _p in itertools.product(range(_nd), range(_nd), (0, 1)):
        if _nu != _mu and not any(_shape[r] % 2 for r in range(_nd) if r != _mu):
            MASKS.append((_shape, lambda lat, a=_mu, b=_nu, p=_p: CheckerboardMask(lat, a, b, p)))
for _shape, _mu, _off, _kw in [((4, 8), 0, 3, {}), ((8, 4), 1, 0, {}), ((4, 4), 1, 2, {}), ((2, 8, 2), 0, 1, {}),
                               ((2, 2, 8), 1, 2, {"parity": 1}), ((4, 2, 2, 4), 3, 0, {"nu": 0, "parity": 1}),
                               ((6, 4), 0, 1, {"period": 2}), ((3, 6), 0, 2, {"period": 3})]:
    MASKS.append((_shape, lambda lat, a=_mu, o=_off, k=_kw: StripeMask(lat, a, o, **k)))
MASKS.append(((4, 8), two_direction_mask))
for _shape, _args in [((4, 2, 4, 4), ((0,), 4, 1, (0, 1, 2, 3), (1, 2, 1, 1))),
                      ((4, 4, 4, 4), ((2,), 4, 3, (2, 3, 0, 1), (1, 2, 1, 1))),
                      ((2, 2, 2, 2), ((3,), 2, 1, (3, 0, 1, 2), (1, 1, 1, 1))),
                      ((4, 4, 2), ((1,), 4, 2, (1, 2, 0), (1, 2, 1))),
                      ((4, 4), ((0,), 4, 0, (1,), (1,))),
                      ((6, 6), ((1,), 3, 2, (0, 1), (1, 1)))]:
    MASKS.append((_shape, lambda lat, a=_args: ShiftedStripeMask(lat, *a)))
MASK_IDS = [f"{'x'.join(map(str, s))}-{i}" for i, (s, _) in enumerate(MASKS)]


def _incidence(lat: lk.Lattice, fn: Any) -> torch.Tensor:
    """Signed incidence matrix of the U(1)-angle map ``fn(theta)`` (rows: outputs, columns: links)."""
    nd = lat.nd
    return torch.autograd.functional.jacobian(lambda flat: fn(flat.reshape((nd,) + lat.shape)).reshape(-1),
                                              torch.zeros(nd * lat.volume, dtype=F64))


@pytest.mark.parametrize("case", MASKS, ids=MASK_IDS)
def test_classification_on_the_incidence_matrix(case: Any) -> None:
    shape, make = case
    lat = lk.Lattice(shape)
    m = make(lat)
    nd, V = lat.nd, lat.volume
    planes = lat.planes()
    J = _incidence(lat, lambda th: torch.stack([plaquettes(th, lk.U1, lat, a, b) for a, b in planes]))
    assert set(J.unique().tolist()) <= {-1.0, 0.0, 1.0}
    act = m.active_links().to(F64).reshape(-1)
    count = (J.abs() @ act).reshape((len(planes),) + lat.shape)
    assert float(count.max()) <= 1.0                                    # no plaquette holds two active links
    assert_close(count.to(torch.int64), m.plaquette_counts(), rtol=0, atol=0, check_dtype=True)
    c = {k: v.to(F64) for k, v in m.plaquette_classes().items()}
    assert torch.equal(c["active"] + c["passive"] + c["frozen"], torch.ones_like(count))
    assert_close(count, c["active"] + c["passive"], rtol=0, atol=0, check_dtype=True)
    assert m.frozen_planes() == [i for i in range(len(planes)) if bool(c["frozen"][i].any())]
    Jp = J.reshape(len(planes), V, nd * V)
    for mu in m.directions:
        sites = torch.nonzero(m.sites(mu).reshape(-1))[:, 0]
        nu, side = m.active_staple(mu)
        (a, b), shift, sign = staple_plaquette(mu, nu, side)
        pi = planes.index((a, b))
        # each active plaquette holds its own link U_mu(x), with the sign of staple_plaquette
        at = sites if shift == 0 else torch.nonzero(lat.shift(m.sites(mu), nu, 1).reshape(-1))[:, 0]
        own = Jp[pi, at, mu * V + sites]
        assert torch.equal(own, torch.full_like(own, float(sign)))
        assert bool((c["active"][pi].reshape(-1)[at] == 1).all())
        # every active link lies in 2 (Nd - 1) plaquettes: one active, the others passive
        per_link = J.abs()[:, mu * V + sites]
        assert torch.equal(per_link.sum(0), torch.full((len(sites),), 2.0 * (nd - 1), dtype=F64))
        assert torch.equal((per_link * c["active"].reshape(-1, 1)).sum(0), torch.ones(len(sites), dtype=F64))
        assert torch.equal((per_link * c["passive"].reshape(-1, 1)).sum(0),
                           torch.full((len(sites),), 2.0 * nd - 3, dtype=F64))
        assert m.loops(mu) == [q for q in staple_order(nd, mu) if q != (nu, side)]
        # the staples of an active link hold no active link; U_mu(x) S_q(x) = +- its plaquette
        Js = _incidence(lat, lambda th, d=mu: torch.stack(LoopBuilder(th, lk.U1, lat).staples(d)))
        Js = Js.reshape(2 * (nd - 1), V, nd * V)
        assert float((Js[:, sites].abs() @ act).max()) == 0.0
        eye = torch.zeros(V, nd * V, dtype=F64)
        eye[torch.arange(V), mu * V + torch.arange(V)] = 1.0
        for q, (rho, sd) in enumerate(staple_order(nd, mu)):
            (a, b), sh, sg = staple_plaquette(mu, rho, sd)
            Pq = Jp[planes.index((a, b))]
            if sh:
                Pq = lat.shift(Pq.reshape(lat.shape + (-1,)).movedim(-1, 0), rho, sh).movedim(0, -1).reshape(V, -1)
            assert_close(eye + Js[q], sg * Pq, rtol=0, atol=0, check_dtype=True)


@pytest.mark.parametrize("shape", [(2, 2, 4), (2, 2, 2, 2)], ids=["3d", "4d"])
def test_checkerboard_freezes_the_planes_without_mu(shape: tuple[int, ...]) -> None:
    lat = lk.Lattice(shape)
    planes = lat.planes()
    for mu, nu, p in itertools.product(range(lat.nd), range(lat.nd), (0, 1)):
        if mu == nu:
            continue
        m = CheckerboardMask(lat, mu, nu, p)
        fr = m.plaquette_classes()["frozen"]
        assert [planes[i] for i in m.frozen_planes()] == [q for q in planes if mu not in q]
        for i in m.frozen_planes():
            assert bool(fr[i].all())                                  # the whole plane is frozen
        assert int(m.active_links().sum()) == lat.volume // 2
        assert int(m.plaquette_classes()["active"].sum()) == lat.volume // 2
        # the translations: 1 along mu, 2 along each other direction, 1 + 1 along each pair of them
        orth = [r for r in range(lat.nd) if r != mu]
        unit = [tuple(int(d == r) for d in range(lat.nd)) for r in range(lat.nd)]
        want = [unit[mu]] + [tuple(2 * v for v in unit[r]) for r in orth]
        want += [tuple(a + b for a, b in zip(unit[r], unit[q])) for r, q in itertools.combinations(orth, 2)]
        assert m.translations() == want
        assert not m.is_symmetry(unit[orth[0]])              # one orthogonal step exchanges the parities
        # negative control: in the staples of a NON-active link there is an active link
        sites = m.sites(mu).reshape(-1)
        act = m.active_links().to(F64).reshape(-1)
        Js = _incidence(lat, lambda th: torch.stack(LoopBuilder(th, lk.U1, lat).staples(mu)))
        Js = Js.reshape(2 * (lat.nd - 1), lat.volume, -1)
        assert float((Js[:, ~sites].abs() @ act).min()) == 1.0


def test_stripes_2d_are_kanwars() -> None:
    lat = lk.Lattice((8, 8))
    c = lat.coords(backend="torch")
    for mu, off in itertools.product((0, 1), range(4)):
        nu = 1 - mu
        m = StripeMask(lat, mu, off)
        cl = m.plaquette_classes()
        x = c[nu] % 4
        assert torch.equal(m.sites(mu), x == off) and m.directions == (mu,)
        assert torch.equal(cl["active"][0], x == off)
        assert torch.equal(cl["frozen"][0], (x == (off + 1) % 4) | (x == (off + 2) % 4))
        assert torch.equal(cl["passive"][0], x == (off + 3) % 4)
        assert m.stripe(mu) == Stripe(nu, 4, off) and m.active_plane(mu) == (mu, nu)
    # in 2D the checkerboard is a stripe of period 2, without frozen plaquettes
    m = CheckerboardMask(lat, 1, 0, 1)
    assert m.stripe(1) == Stripe(0, 2, 1) and m.frozen_planes() == []
    assert torch.equal(m.sites(1), c[0] % 2 == 1)
    assert CheckerboardMask(lk.Lattice((2, 2, 2)), 0, 1, 0).stripe(0) is None


@pytest.mark.parametrize("case", MASKS, ids=MASK_IDS)
def test_translations_map_the_mask_to_itself(case: Any) -> None:
    shape, make = case
    lat = lk.Lattice(shape)
    m = make(lat)
    ts = m.translations()
    assert ts and all(len(t) == lat.nd for t in ts)
    for t in ts:
        assert m.is_symmetry(t), t
    # negative control: some unit step is not a symmetry (each pattern alternates along some axis)
    units = [tuple(int(d == e) for d in range(lat.nd)) for e in range(lat.nd)]
    assert not all(m.is_symmetry(u) for u in units if lat.shape[units.index(u)] > 1)


def test_layer_orders() -> None:
    lat = lk.Lattice((4, 8))
    ms = stripe_masks(lat)
    assert len(ms) == 16
    assert [(m.mu, m.offset) for m in ms] == [(i % 2, 3 - (i // 2) % 4) for i in range(16)]
    # every link is updated twice by the 16 layers of the 2D stripes
    cover = sum(m.active_links().to(torch.int64) for m in ms)
    assert torch.equal(cover, torch.full_like(cover, 2))
    # Nd > 2: offsets and parities cover every link once in 2 Nd 4 layers
    lat3 = lk.Lattice((4, 4, 4))
    ms3 = stripe_masks(lat3)
    assert len(ms3) == 24 and [(m.mu, m.nu) for m in ms3[:3]] == [(0, 1), (1, 2), (2, 0)]
    cover = sum(m.active_links().to(torch.int64) for m in ms3)
    assert torch.equal(cover, torch.ones_like(cover))
    # checkerboard: one cycle has 2 Nd (Nd - 1) layers, every block of 2 Nd covers every link once
    lat4 = lk.Lattice((2, 2, 2, 2))
    cb = checkerboard_masks(lat4)
    combos = [(m.mu, m.nu, m.parity) for m in cb]
    assert len(combos) == 24 and len(set(combos)) == 24
    for k in range(3):
        cover = sum(m.active_links().to(torch.int64) for m in cb[8 * k:8 * (k + 1)])
        assert torch.equal(cover, torch.ones_like(cover))
    # longer stacks repeat the cycle
    assert [(m.mu, m.nu, m.parity) for m in checkerboard_masks(lk.Lattice((2, 2, 4)), 15)][12:] == [
        (0, 1, 0), (1, 2, 0), (2, 0, 0)]
    assert sorted(MASK_PATTERNS) == ["checkerboard", "shifted", "stripes"]
    assert gauge_masks(lat, "stripes", 3) == ms[:3]
    assert gauge_masks(lat4, cb[:2]) == cb[:2]


def test_equality_and_repr() -> None:
    lat = lk.Lattice((4, 4, 4))
    assert StripeMask(lat, 0, 1) == StripeMask(lat, 0, 1, nu=1) and StripeMask(lat, 0, 1) != StripeMask(lat, 0, 2)
    assert len({CheckerboardMask(lat, 0, 1, 0), CheckerboardMask(lat, 0, 1, 0), CheckerboardMask(lat, 0, 1, 1)}) == 2
    assert repr(CheckerboardMask(lat, 2, 0, 1)) == "CheckerboardMask(lattice=(4, 4, 4), mu=2, nu=0, parity=1)"
    assert repr(StripeMask(lk.Lattice((4, 8)), 1, 3)) == "StripeMask(lattice=(4, 8), mu=1, nu=0, offset=3, period=4)"
    a, b = two_direction_mask(lk.Lattice((4, 8))), two_direction_mask(lk.Lattice((4, 8)))
    assert a == b and a.directions == (0, 1) and a.active_plane(1) == (1, 0)


def test_bad_inputs() -> None:
    lat = lk.Lattice((2, 2, 2))
    with pytest.raises(TypeError, match="lattice"):
        CheckerboardMask((4, 4), 0, 1, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        CheckerboardMask(lk.Lattice((4,)), 0, 0, 0)
    with pytest.raises(ValueError, match=r"Lattice.*L_2 = 3 \(axis 2\) must be even"):
        CheckerboardMask(lk.Lattice((4, 4, 3)), 0, 1, 0)
    CheckerboardMask(lk.Lattice((3, 4, 2)), 0, 1, 0)                 # L_mu may be odd
    for args, match in [((3, 1, 0), "mu=3"), ((0, -1, 0), "nu=-1"), ((1, 1, 0), "different directions"),
                        ((0, 1, 2), "parity=2")]:
        with pytest.raises(ValueError, match=match):
            CheckerboardMask(lat, *args)
    with pytest.raises(ValueError, match="multiple of 4"):
        StripeMask(lk.Lattice((4, 6)), 0, 0)
    with pytest.raises(ValueError, match="offset"):
        StripeMask(lk.Lattice((4, 4)), 0, 4)
    with pytest.raises(ValueError, match="mu=2"):
        StripeMask(lk.Lattice((4, 4)), 2, 0)
    with pytest.raises(ValueError, match="period"):
        StripeMask(lk.Lattice((4, 4)), 0, 0, period=1)
    with pytest.raises(ValueError, match="parity=1: in 2D"):
        StripeMask(lk.Lattice((4, 4)), 0, 0, parity=1)
    with pytest.raises(ValueError, match=r"L_0 = 3 \(axis 0\) must be even"):
        StripeMask(lk.Lattice((3, 4, 4)), 1, 0)
    # the generic check: two active links in one plaquette
    c = lk.Lattice((4, 4)).coords(backend="torch")
    with pytest.raises(ValueError, match="contains 2 active links"):
        LinkMask(lk.Lattice((4, 4)), {0: c[1] % 2 == 0, 1: c[0] % 2 == 0}, {0: (1, 1), 1: (0, 1)})
    with pytest.raises(ValueError, match="contains 2 active links"):
        LinkMask(lk.Lattice((4, 4)), {0: torch.ones(4, 4, dtype=torch.bool)}, {0: (1, 1)})
    with pytest.raises(ValueError, match="no active link"):
        LinkMask(lk.Lattice((4, 4)), {0: torch.zeros(4, 4, dtype=torch.bool)}, {0: (1, 1)})
    with pytest.raises(ValueError, match="plane \\(0, 0\\)"):
        LinkMask(lk.Lattice((4, 4)), {0: c[1] % 4 == 0}, {0: (0, 1)})
    with pytest.raises(ValueError, match="shape"):
        LinkMask(lk.Lattice((4, 4)), {0: torch.ones(4, dtype=torch.bool)}, {0: (1, 1)})
    with pytest.raises(ValueError, match="does not map"):
        LinkMask(lk.Lattice((4, 4)), {0: c[1] % 4 == 0}, {0: (1, 1)}, translations=[(0, 1)])
    with pytest.raises(ValueError, match="same directions"):
        LinkMask(lk.Lattice((4, 4)), {0: c[1] % 4 == 0}, {1: (0, 1)})
    with pytest.raises(ValueError, match="not an active direction"):
        StripeMask(lk.Lattice((4, 4)), 0, 0).sites(1)
    with pytest.raises(ValueError, match="n_layers"):
        checkerboard_masks(lk.Lattice((2, 2)), 0)
    with pytest.raises(ValueError, match="n_layers"):
        stripe_masks(lk.Lattice((4, 4)), -1)
    with pytest.raises(ValueError, match="must be even"):
        checkerboard_masks(lk.Lattice((3, 2, 2)))
    with pytest.raises(ValueError, match="masks='spiral'"):
        gauge_masks(lat, "spiral")
    with pytest.raises(TypeError, match="GaugeMask"):
        gauge_masks(lat, [1, 2])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="is on"):
        gauge_masks(lat, [CheckerboardMask(lk.Lattice((2, 2)), 0, 1, 0)])
    with pytest.raises(ValueError, match="n_layers=3"):
        gauge_masks(lat, [CheckerboardMask(lat, 0, 1, 0)], 3)
    with pytest.raises(ValueError, match="at least one mask"):
        gauge_masks(lat, [])


def test_shifted_stripes_with_the_qcd_parameters() -> None:
    """arXiv:2208.03832 Sec. 3.1: width 4, shifts [1, 2, 1, 1], orientations to shift [0, 1, 2, 3], the alternation
    mask_orientations[0] = orientations_to_shift[0]; 48 layers = 3 cycles of 16 that each update every link once."""
    lat = lk.Lattice((4, 4, 4, 4))
    ms = shifted_stripe_masks(lat, 48)
    c = lat.coords(backend="torch")
    m0 = ms[0]
    assert (m0.mu, m0.nu, m0.width, m0.active_phase) == (0, 1, 4, 0)
    assert torch.equal(m0.sites(0), (c[0] + 2 * c[1] + c[2] + c[3]) % 4 == 0)   # the phase of the docstring
    for i, m in enumerate(ms):
        assert m.mu == m.orientations_to_shift[0] == i % 4 and m.shifts == (1, 2, 1, 1)
        assert m.active_phase == (i // 4) % 4
        assert int(m.active_links().sum()) == lat.volume // 4                  # one mu-link in four
        # frozen: the planes without mu entirely, and half of each plane (mu, nu) (phases of x, x + nu both off)
        fr = m.plaquette_classes()["frozen"]
        for k, (a, b) in enumerate(lat.planes()):
            want = lat.volume if m.mu not in (a, b) else lat.volume // 2
            assert int(fr[k].sum()) == want, (i, a, b)
    for k in range(3):
        cover = sum(m.active_links().to(torch.int64) for m in ms[16 * k:16 * (k + 1)])
        assert torch.equal(cover, torch.ones_like(cover))
    # the mask is tilted: one step along mu changes the phase (unlike the stripes, which are invariant along mu)
    assert not m0.is_symmetry((1, 0, 0, 0)) and m0.is_symmetry((1, 0, 3, 0)) and m0.is_symmetry((0, 2, 0, 0))
    assert MASK_PATTERNS["shifted"](lat, 5) == ms[:5]
    # small lattices: width 2, the parity of all coordinates (2^4, the CPU scale of the QCD example)
    assert default_shift_parameters(lk.Lattice((2, 2, 2, 2))) == (2, (1, 1, 1, 1))
    cb = shifted_stripe_masks(lk.Lattice((2, 2, 2, 2)))
    assert len(cb) == 8
    cover = sum(m.active_links().to(torch.int64) for m in cb)
    assert torch.equal(cover, torch.ones_like(cover))


def test_shifted_stripes_bad_inputs() -> None:
    lat = lk.Lattice((4, 4, 4, 4))
    with pytest.raises(ValueError, match=r"do not tile.*axis 0.*width = 4"):
        ShiftedStripeMask(lk.Lattice((6, 4, 4, 4)), (0,), 4, 0, (0, 1, 2, 3), (1, 2, 1, 1))
    with pytest.raises(ValueError, match=r"shifts=\[1, 4, 1, 1\].*direction 1 has shift 0 mod width"):
        ShiftedStripeMask(lat, (0,), 4, 0, (0, 1, 2, 3), (1, 4, 1, 1))
    with pytest.raises(ValueError, match="direction 3 has shift 0"):
        ShiftedStripeMask(lat, (0,), 4, 0, (0, 1, 2), (1, 2, 1))
    with pytest.raises(ValueError, match="one shift per orientation"):
        ShiftedStripeMask(lat, (0,), 4, 0, (0, 1, 2, 3), (1, 2))
    with pytest.raises(ValueError, match="width=1"):
        ShiftedStripeMask(lat, (0,), 1)
    with pytest.raises(ValueError, match="active_phase=4"):
        ShiftedStripeMask(lat, (0,), 4, 4)
    with pytest.raises(ValueError, match="mask_orientations"):
        ShiftedStripeMask(lat, (4,))
    with pytest.raises(ValueError, match="orientations_to_shift.*distinct"):
        ShiftedStripeMask(lat, (0,), 4, 0, (0, 1, 1, 2))
    with pytest.raises(ValueError, match="nu=0"):
        ShiftedStripeMask(lat, (0,), 4, 0, None, (1, 1, 1, 1), nu=0)
    # two orientations on the same sites: the generic check finds the plaquette with two active links
    with pytest.raises(ValueError, match="contains 2 active links"):
        ShiftedStripeMask(lk.Lattice((4, 4, 4)), (0, 1), 4, 0, (0, 1, 2), (1, 1, 1))
    with pytest.raises(ValueError, match="every direction is a mask orientation"):
        ShiftedStripeMask(lk.Lattice((4, 4)), (0, 1), 4, 0, (0, 1), (1, 1))
    with pytest.raises(ValueError, match="even extents"):
        shifted_stripe_masks(lk.Lattice((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="n_layers"):
        shifted_stripe_masks(lat, 0)
