"""LocalCNF: the local continuous normalising flow of the super-resolving architecture (eqs. 22-28).

Every test gives the layer random non-zero weights (seeded, float64) so that it is not the identity, except the
identity-at-initialisation test. Checked: the closed-form divergence against the autograd trace of dG/dPsi; the
round trip; the log-det against log|det| of the autograd Jacobian through the ODE solve; Z2 equivariance; the
block symmetry group (b-step translations and the block's signed permutations) at the level of the weights,
the vector field and the flow, with negative controls (maps that break the block partition); identity at
initialisation; adjoint gradients; refusals.
"""

from __future__ import annotations

import itertools
import math
import sys
from typing import Any

import pytest
import torch

from latticekit.flows.superres.local_cnf import DEFAULT_MAX_STEPS, LocalCNF, ODESolverError
from latticekit.testing import assert_close, autograd_logdet, randomize_parameters

F64 = torch.float64
SMALL = {"n_basis": 3, "n_time": 3, "bond_basis": 4, "bond_time": 3}  # all factors of eq. (25) non-trivial, cheap


def _layer(shape: tuple[int, ...], kernel_size: int, device: str, seed: int = 0, tol: float = 1e-10,
           scale: float = 0.2, **kw: Any) -> LocalCNF:
    """A LocalCNF with seeded random weights (W~ no longer zero), float64, on ``device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = LocalCNF(shape, kernel_size=kernel_size, rtol=tol, atol=tol, **{**SMALL, **kw})
    return randomize_parameters(layer, seed=seed + 100, scale=scale).to(device)


def _count_evaluations(layer: LocalCNF) -> dict[str, int]:
    """Count the layer's field evaluations from now on in the returned dict's ``"n"`` (reset it by hand)."""
    calls = {"n": 0}
    original = layer._field_and_divergence

    def counted(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        return original(*a, **k)

    layer._field_and_divergence = counted  # type: ignore[method-assign]
    return calls


def _field(shape: tuple[int, ...], device: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(device)


# --- the block symmetry group --------------------------------------------------------------------------------

def _block_group(nd: int) -> list[torch.Tensor]:
    """The signed permutation matrices R of the block {0,1}^nd about its centre c (x -> R (x - c) + c)."""
    out = []
    for perm in itertools.permutations(range(nd)):
        for signs in itertools.product((1, -1), repeat=nd):
            R = torch.zeros(nd, nd, dtype=torch.long)
            for i in range(nd):
                R[i, perm[i]] = signs[i]
            out.append(R)
    return out


def _act(psi: torch.Tensor, R: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``(g psi)_{g x} = psi_x`` for the lattice map ``g x = R x + a`` (mod L) on the trailing ``nd`` axes."""
    nd = R.shape[0]
    shape = tuple(psi.shape[-nd:])
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij"))  # (nd, *L)
    gx = torch.einsum("ij,j...->i...", R, grid) + a.reshape((nd,) + (1,) * nd)
    gx = gx % torch.tensor(shape).reshape((nd,) + (1,) * nd)
    out = torch.empty_like(psi)
    idx = tuple(c.to(psi.device) for c in gx)
    src = tuple(c.to(psi.device) for c in grid)
    out[(Ellipsis,) + idx] = psi[(Ellipsis,) + src]
    return out


def _about_block_centre(R: torch.Tensor) -> torch.Tensor:
    """Translation part ``a = c - R c`` of the block map about ``c = (1/2, ..., 1/2)`` (an integer vector)."""
    return (1 - R.sum(dim=1)) // 2


def _symmetries(nd: int, shape: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Block maps about the block centre, each also composed with a 2-step translation."""
    shift = torch.tensor([2 * (mu + 1) % n for mu, n in enumerate(shape)])
    out = []
    for R in _block_group(nd):
        a = _about_block_centre(R)
        out += [(R, a), (R, a + shift)]
    return out


# --- 1. divergence --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,kernel_size", [((4, 4), 2), ((4, 4), 3), ((4, 6), 4), ((2, 2), 3),
                                               ((6,), 3), ((4, 4, 2), 2), ((6, 6), 5), ((8, 8), 7)])
def test_divergence_equals_autograd_trace(shape: tuple[int, ...], kernel_size: int, device: str) -> None:
    layer = _layer(shape, kernel_size, device, scale=0.5)
    psi = _field((3,) + shape, device)
    n = math.prod(shape)
    for t in (0.0, 0.37, 0.81):  # times where cos and sin terms of K(t) are generic
        closed = layer.divergence(psi, t)
        for b in range(psi.shape[0]):
            J = torch.autograd.functional.jacobian(
                lambda v, t=t: layer.vector_field(v.reshape((1,) + shape), t).reshape(-1), psi[b].reshape(-1))
            assert J.shape == (n, n)
            # both sides are O(10) sums of O(n) float64 terms: round-off ~1e-14; default rtol 1e-10
            assert_close(closed[b], torch.trace(J), msg=f"t={t}, batch element {b}")
        # the vector field really couples neighbours (the kernel is not diagonal)
        assert float(J.fill_diagonal_(0).abs().max()) > 1e-2


@pytest.mark.parametrize("shape,kernel_size", [((4, 6), 2), ((6, 6), 3), ((4, 4, 4), 2), ((4, 2, 2, 4), 3),
                                               ((6, 6), 5), ((8, 8), 7)])
def test_vector_field_matches_block_kernels(shape: tuple[int, ...], kernel_size: int, device: str) -> None:
    """Eq. (23) assembled independently, site by site: at Psi = 0, dG_x/dPsi_y = sum_{d,f} W_{xydf} K(t)_d H'_f(0)
    with W~_{xy} = w_{x mod 2}(y - x) read off :meth:`block_kernels` (pins the offset convention y = x + o and the
    kernel chosen on each block sub-lattice)."""
    nd = len(shape)
    layer = _layer(shape, kernel_size, device, scale=0.5)
    t, r = 0.29, kernel_size // 2
    n = math.prod(shape)
    with torch.no_grad():
        W = layer.block_kernels()                                       # (D', F', P, window...)
        kt = layer.w_time @ layer.time_kernel(t)                        # (D',)
        dh0 = torch.cat([torch.ones(1, dtype=F64, device=device), layer.omega])  # H'_f(0) = 1, omega_f
        c = torch.einsum("d,dfp...,fg,g->p...", kt, W, layer.w_basis, dh0)       # (P, window...)
        positions = list(itertools.product((0, 1), repeat=nd))
        J_ref = torch.zeros(n, n, dtype=F64, device=device)
        sites = list(itertools.product(*[range(L) for L in shape]))
        for i, x in enumerate(sites):
            p = positions.index(tuple(v % 2 for v in x))
            for o in itertools.product(range(-r, r + 1), repeat=nd):
                y = tuple((xv + ov) % L for xv, ov, L in zip(x, o, shape))
                J_ref[i, sites.index(y)] += c[(p,) + tuple(v + r for v in o)]
    J = torch.autograd.functional.jacobian(
        lambda v: layer.vector_field(v.reshape((1,) + shape), t).reshape(-1), torch.zeros(n, dtype=F64, device=device))
    # the same few products summed in another order: float64 round-off, default tolerances
    assert_close(J, J_ref)
    assert float(J_ref.abs().max()) > 1e-2


def test_time_kernel_is_the_fourier_basis(device: str) -> None:
    layer = _layer((4, 4), 2, device, n_time=5, t0=0.5, t1=2.5)
    t = 1.1
    tau = (t - 0.5) / 2.0
    want = torch.tensor([1.0, math.cos(2 * math.pi * tau), math.sin(2 * math.pi * tau),
                         math.cos(4 * math.pi * tau), math.sin(4 * math.pi * tau)], dtype=F64)
    # five cos/sin evaluations in float64: default tolerances
    assert_close(layer.time_kernel(t), want.to(device))
    # periodic on [t0, t1]; sin(2 pi k) evaluates to ~1e-16, not 0: atol 1e-12
    assert_close(layer.time_kernel(2.5), layer.time_kernel(0.5), rtol=0, atol=1e-12)


# --- 2. round trip ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size", [2, 3])
def test_forward_inverse_round_trip(kernel_size: int, device: str) -> None:
    layer = _layer((4, 4), kernel_size, device, tol=1e-10)
    psi = _field((3, 4, 4), device)
    y, ld = layer(psi)
    assert float((y - psi).detach().abs().max()) > 0.1, "the layer must really move the field"
    x, ld_inv = layer.inverse(y)
    # each dopri5 solve has a global error ~ C * tol with tol = 1e-10 and C = O(10-100) here (steps x Lipschitz
    # growth); 1e-7 leaves a margin of ~100 over the observed ~1e-9
    assert_close(x, psi, rtol=0, atol=1e-7)
    assert_close(ld_inv, -ld, rtol=0, atol=1e-7)


def test_training_tolerance_applies_in_training_mode_only(device: str) -> None:
    """``train_rtol``/``train_atol`` loosen the solves of ``module.train()`` only: in eval mode the layer is the
    one without them, bit for bit (the map that flow MCMC and reweighting use), and in training mode it
    takes fewer solver steps and agrees with the tight map to about the loose tolerance."""
    tight = _layer((4, 4), 2, device, tol=1e-10, scale=0.3)
    loose = _layer((4, 4), 2, device, tol=1e-10, scale=0.3, train_rtol=1e-5, train_atol=1e-5)
    psi = _field((3, 4, 4), device)
    calls = _count_evaluations(loose)
    tight.eval()
    loose.eval()
    y_tight, ld_tight = tight(psi)
    calls["n"] = 0
    y_eval, ld_eval = loose(psi)
    n_eval = calls["n"]
    assert torch.equal(y_eval, y_tight) and torch.equal(ld_eval, ld_tight)
    loose.train()
    calls["n"] = 0
    y_train, ld_train = loose(psi)
    assert calls["n"] < n_eval, (calls["n"], n_eval)
    # dopri5's global error is C * tol with C = O(10-100) here: 1e-3 leaves a margin over the loose 1e-5
    assert_close(y_train, y_tight, rtol=0, atol=1e-3)
    assert_close(ld_train, ld_tight, rtol=0, atol=1e-3)
    assert float((y_train - y_tight).detach().abs().max()) > 0, "the training solve must be the loose one"


# --- 3. log-det against the autograd Jacobian through the solve ---------------------------------------------

@pytest.mark.parametrize("kernel_size", [2, 3])
def test_logdet_equals_autograd_jacobian(kernel_size: int, device: str) -> None:
    layer = _layer((4, 4), kernel_size, device, tol=1e-10)
    psi = _field((2, 4, 4), device)
    _, ld = layer(psi)
    assert float(ld.detach().abs().min()) > 0.1, "non-trivial log-det"
    # Jacobian of the discrete solver map (16 x 16 per element). The batch-independence check is off: the
    # adaptive solver picks one (differentiable) initial step for the whole batch, which couples elements at
    # the ~1e-11 level, far below the tolerance used here.
    ref = autograd_logdet(layer, psi, vectorize=True, check_batch_independence=False)
    # both the Jacobian of the discretised flow and the integrated divergence approximate the exact log-det
    # with a global error ~ C * tol (tol = 1e-10, a sum over 16 sites); observed <= 1e-8, bound 1e-6
    assert_close(ld, ref, rtol=0, atol=1e-6)


# --- 4. Z2 ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size", [2, 3])
def test_z2_equivariance(kernel_size: int, device: str) -> None:
    layer = _layer((4, 4), kernel_size, device, tol=1e-8)
    psi = _field((2, 4, 4), device)
    y, ld = layer(psi)
    ym, ldm = layer(-psi)
    # G is odd in Psi and div G even; the solver's error norms are even too, so the two solves take the same
    # steps and differ only by round-off: default float64 tolerances (rtol 1e-10, atol 1e-12)
    assert_close(ym, -y)
    assert_close(ldm, ld)
    assert float((y - psi).detach().abs().max()) > 0.1, "the layer must really move the field"


# --- 5. lattice symmetries -------------------------------------------------------------------------------------

@pytest.mark.parametrize("nd,kernel_size", [(2, 2), (2, 3), (3, 2), (1, 3), (2, 5), (2, 7)])
def test_block_kernels_are_tied(nd: int, kernel_size: int, device: str) -> None:
    """(*) of the module docstring: w_{g(p)}(R o) = w_p(o) for every block map g x = R x + a."""
    layer = _layer((max(4, kernel_size + 1),) * nd, kernel_size, device)
    W = layer.block_kernels()  # (D', F', 2^nd, window...)
    r = kernel_size // 2
    positions = list(itertools.product((0, 1), repeat=nd))
    offsets = list(itertools.product(range(-r, r + 1), repeat=nd))
    for R in _block_group(nd):
        a = _about_block_centre(R)
        for pi, p in enumerate(positions):
            gp = tuple(int(v) for v in R @ torch.tensor(p) + a)
            assert gp in positions, "the block map must send the block to itself"
            for o in offsets:
                Ro = tuple(int(v) for v in R @ torch.tensor(o))
                lhs = W[(slice(None), slice(None), positions.index(gp)) + tuple(v + r for v in Ro)]
                rhs = W[(slice(None), slice(None), pi) + tuple(v + r for v in o)]
                assert_close(lhs, rhs, rtol=0, atol=0, msg=f"R={R.tolist()}, p={p}, o={o}")  # exact copies
    assert float(W.detach().abs().max()) > 0.01


@pytest.mark.parametrize("shape,kernel_size", [((6, 6), 2), ((6, 6), 3), ((4, 4, 4), 2), ((6, 6), 5), ((8, 8), 7)])
def test_vector_field_equivariance(shape: tuple[int, ...], kernel_size: int, device: str) -> None:
    nd = len(shape)
    layer = _layer(shape, kernel_size, device, scale=0.5)
    psi = _field((2,) + shape, device)
    t = 0.43
    G = layer.vector_field(psi, t)
    div = layer.divergence(psi, t)
    for R, a in _symmetries(nd, shape):
        # the same sums in another order: float64 round-off only (default rtol 1e-10, atol 1e-12)
        assert_close(layer.vector_field(_act(psi, R, a), t), _act(G, R, a), msg=f"R={R.tolist()}, a={a.tolist()}")
        assert_close(layer.divergence(_act(psi, R, a), t), div)
    # negative controls: a 1-step translation and a rotation about a site do not preserve the block partition
    one = torch.zeros(nd, dtype=torch.long)
    one[0] = 1
    identity = torch.eye(nd, dtype=torch.long)
    flip0 = identity.clone()
    flip0[0, 0] = -1  # x_0 -> -x_0: reflection about a site, maps block {0,1} to {0,-1}
    zero = torch.zeros(nd, dtype=torch.long)
    for R, a, name in ((identity, one, "1-step translation"), (flip0, zero, "site reflection")):
        err = (layer.vector_field(_act(psi, R, a), t) - _act(G, R, a)).abs().max()
        assert float(err.detach()) > 1e-2, f"{name} should break equivariance (got {float(err.detach()):.2e})"


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_flow_equivariance(kernel_size: int, device: str) -> None:
    shape = (6, 6)
    layer = _layer(shape, kernel_size, device, tol=1e-10)
    psi = _field((1,) + shape, device)
    syms = _symmetries(2, shape)
    one = (torch.eye(2, dtype=torch.long), torch.tensor([1, 0]))
    rot_site = (torch.tensor([[0, -1], [1, 0]]), torch.tensor([0, 0]))  # 90 deg about a site
    maps = syms + [one, rot_site]
    # one solve for Psi and all its images (a batch); the shared step sequence differs from a solve of Psi alone
    # only at the level of the tolerance
    batch = torch.cat([psi] + [_act(psi, R, a) for R, a in maps])
    y, ld = layer(batch)
    assert float((y[0] - psi[0]).detach().abs().max()) > 0.1
    for i, (R, a) in enumerate(syms, start=1):
        # tol = 1e-10 per solve, global errors ~1e-9 on O(1) fields: bound 1e-7
        assert_close(y[i], _act(y[:1], R, a)[0], rtol=0, atol=1e-7, msg=f"R={R.tolist()}, a={a.tolist()}")
        assert_close(ld[i], ld[0], rtol=0, atol=1e-7)
    for j, name in ((len(syms) + 1, "1-step translation"), (len(syms) + 2, "rotation about a site")):
        R, a = maps[j - 1]
        err = (y[j] - _act(y[:1], R, a)[0]).abs().max()
        assert float(err.detach()) > 1e-3, f"{name} should break equivariance (got {float(err.detach()):.2e})"


# --- 6. identity at initialisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identity_at_initialisation(dtype: torch.dtype, device: str) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = LocalCNF((4, 4)).to(device=device, dtype=dtype)  # paper defaults F=11, D=10, F'=D'=20, k=5
    psi = _field((3, 4, 4), device).to(dtype)
    for y, ld in (layer(psi), layer.inverse(psi)):
        # W~ = 0 makes G = 0 and div G = 0, so the displacement state stays exactly zero: exact equality
        assert_close(y, psi, rtol=0, atol=0)
        assert_close(ld, torch.zeros(3, dtype=dtype, device=device), rtol=0, atol=0)
    assert tuple(ld.shape) == (3,)


def test_batch_axes(device: str) -> None:
    layer = _layer((4, 4), 2, device, tol=1e-9)
    psi = _field((2, 3, 4, 4), device)
    y, ld = layer(psi)
    assert tuple(y.shape) == (2, 3, 4, 4) and tuple(ld.shape) == (2, 3)
    y1, ld1 = layer(psi.reshape(6, 4, 4))
    # same batch, same solve: identical up to round-off
    assert_close(y.reshape(6, 4, 4), y1)
    assert_close(ld.reshape(6), ld1)


# --- adjoint -------------------------------------------------------------------------------------------------------

def test_adjoint_gradients_match_backprop(device: str) -> None:
    layer = _layer((4, 4), 2, device, tol=1e-10)
    psi = _field((2, 4, 4), device).requires_grad_(True)

    def grads() -> list[torch.Tensor]:
        y, ld = layer(psi)
        loss = (y ** 3).sum() + ld.sum()  # depends on the field and the log-det
        return list(torch.autograd.grad(loss, [psi] + list(layer.parameters())))

    direct = grads()
    layer.adjoint = True
    adjoint = grads()
    for name, a, b in zip(["psi"] + [n for n, _ in layer.named_parameters()], adjoint, direct):
        assert float(b.abs().max()) > 1e-3, name
        # the adjoint ODE is solved with the same tol = 1e-10; observed relative differences ~1e-9; bound 1e-6
        # relative to the gradient's scale
        assert_close(a, b, rtol=0, atol=1e-6 * float(b.abs().max()), msg=name)


def test_recompute_gives_the_same_gradients_and_keeps_far_less(device: str) -> None:
    """``recompute`` (per-evaluation checkpointing inside the solver): the same solve, so the same output and
    gradients to rounding (the evaluations are recomputed by the same operations; observed: bitwise), while
    autograd keeps only each evaluation's input field (and the solver's stage sums) for the backward pass
    instead of its features and convolution buffers. Bytes of the distinct storages kept: 8% here, 3% with the
    App. C sizes on 8x8 (the fraction falls as the field basis grows); bound 15%."""
    layer = _layer((6, 6), 5, device, tol=1e-8, n_basis=5, bond_basis=6)
    psi = _field((4, 6, 6), device).requires_grad_(True)

    def grads() -> tuple[torch.Tensor, list[torch.Tensor], int]:
        kept: dict[int, int] = {}   # distinct storages (the block kernels are saved by every evaluation)

        def pack(t: torch.Tensor) -> torch.Tensor:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, ld = layer(psi)
            loss = (y ** 3).sum() + ld.sum()
        return loss.detach(), list(torch.autograd.grad(loss, [psi] + list(layer.parameters()))), sum(kept.values())

    loss0, direct, kept0 = grads()
    layer.recompute = True
    loss1, recomputed, kept1 = grads()
    assert_close(loss1, loss0, rtol=1e-14, atol=0)
    for name, a, b in zip(["psi"] + [n for n, _ in layer.named_parameters()], recomputed, direct):
        assert float(b.abs().max()) > 1e-3, name
        assert_close(a, b, rtol=1e-12, atol=1e-13 * float(b.abs().max()), msg=name)
    assert kept1 < 0.15 * kept0, (kept1, kept0)
    with torch.no_grad():   # no graph to keep: the option changes nothing
        y_recompute = layer(psi)[0]
        layer.recompute = False
        assert torch.equal(y_recompute, layer(psi)[0])


# --- 7. refusals --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,name", [
    ({"lattice_shape": (4, 5)}, "lattice_shape"),
    ({"lattice_shape": ()}, "lattice_shape"),
    ({"lattice_shape": (4, 4.0)}, "lattice_shape"),
    ({"lattice_shape": 4}, "lattice_shape"),
    ({"lattice_shape": (2,) * 7}, "lattice_shape"),
    ({"lattice_shape": (2, 2), "kernel_size": 4}, "lattice_shape"),
    ({"n_basis": 0}, "n_basis"),
    ({"n_time": 1.5}, "n_time"),
    ({"bond_basis": -2}, "bond_basis"),
    ({"bond_time": 0}, "bond_time"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"t0": 1.0, "t1": 1.0}, "t1"),
    ({"t0": float("nan")}, "t0"),
    ({"method": "leapfrog"}, "method"),
    ({"rtol": -1e-8}, "rtol"),
    ({"atol": 0.0}, "atol"),
    ({"adjoint": "yes"}, "adjoint"),
    ({"train_rtol": 0.0}, "train_rtol"),
    ({"train_atol": float("inf")}, "train_atol"),
    ({"options": [("step_size", 0.1)]}, "options"),
    ({"method": "rk4"}, r"method='rk4' is a fixed-grid solver: pass options=\{'step_size': h\}"),  # one step: O(1)
    ({"method": "euler", "options": {"perturb": False}}, "method='euler' is a fixed-grid solver"),
    ({"max_steps": 0}, "max_steps"),
    ({"max_steps": 2.5}, "max_steps"),
])
def test_refuses_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    args = {"lattice_shape": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=name):
        LocalCNF(**args)


def test_refuses_bad_inputs(device: str) -> None:
    layer = _layer((4, 4), 2, device)
    with pytest.raises(ValueError, match=r"x has shape \(2, 4, 5\)"):
        layer(_field((2, 4, 5), device))
    with pytest.raises(ValueError, match="x has shape"):
        layer(_field((4,), device))
    with pytest.raises(ValueError, match="y has shape"):
        layer.inverse(_field((2, 5, 4), device))
    with pytest.raises(ValueError, match="dtype"):
        layer(torch.zeros(2, 4, 4, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="dtype"):
        layer(_field((2, 4, 4), device).float())
    with pytest.raises(ValueError, match="context"):
        layer(_field((2, 4, 4), device), context=_field((2, 4, 4), device))


def test_missing_torchdiffeq_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)  # makes `import torchdiffeq` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "latticekit\[superres\]"'):
        LocalCNF((4, 4))


@pytest.mark.parametrize("adjoint", [False, True])
def test_a_solve_that_misses_its_tolerance_names_the_options(adjoint: bool) -> None:
    """torchdiffeq's bare AssertionError becomes ODESolverError naming rtol/atol and the options: a stiff field
    (random weights of scale 10) cannot be solved to 1e-10 in 3 steps."""
    layer = _layer((4, 4), 2, "cpu", scale=10.0, options={"max_num_steps": 3}, adjoint=adjoint)
    with pytest.raises(ODESolverError, match=r"rtol=1e-10, atol=1e-10 .*max_num_steps"):
        layer(_field((2, 4, 4), "cpu"))


@pytest.mark.parametrize("adjoint", [False, True])
def test_max_steps_bounds_an_adaptive_solve(adjoint: bool) -> None:
    """``max_steps`` is torchdiffeq's ``max_num_steps`` of every adaptive solve: this field needs more than 3 steps
    to 1e-6 (about 10), so the bound stops it with the error that names the option; an explicit
    ``options['max_num_steps']`` takes precedence, and None removes the bound."""
    field = _field((2, 4, 4), "cpu")
    layer = _layer((4, 4), 2, "cpu", tol=1e-6, adjoint=adjoint)
    assert layer.max_steps == DEFAULT_MAX_STEPS
    layer.max_steps = 3
    with pytest.raises(ODESolverError, match=r"max_num_steps exceeded \(3>=3\).*raise max_steps"):
        layer(field)
    calls = _count_evaluations(layer)
    layer.max_steps = None
    y, ld = layer(field)
    unbounded = calls["n"]
    assert unbounded > 6 * 3 + 2   # dopri5: 2 evaluations for the first step size, 6 per step (FSAL)
    layer.max_steps = 3
    layer.options = {"max_num_steps": 10**6}   # the explicit option wins over max_steps
    calls["n"] = 0
    y2, ld2 = layer(field)
    assert calls["n"] == unbounded
    assert_close(y2, y, rtol=0.0, atol=0.0, msg="y with the explicit option")
    assert_close(ld2, ld, rtol=0.0, atol=0.0, msg="log det with the explicit option")


def test_max_steps_leaves_fixed_grid_solvers_alone() -> None:
    """Fixed-grid solvers take no ``max_num_steps`` (torchdiffeq would warn about an unexpected option)."""
    import warnings

    layer = _layer((4, 4), 3, "cpu", method="rk4", options={"step_size": 0.25})
    assert layer.max_steps == DEFAULT_MAX_STEPS and layer._solver_options() == {"step_size": 0.25}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, ld = layer(_field((2, 4, 4), "cpu"))
    assert y.shape == (2, 4, 4) and ld.shape == (2,)
    assert _layer((4, 4), 3, "cpu")._solver_options() == {"max_num_steps": DEFAULT_MAX_STEPS}


@pytest.mark.parametrize("shape,kernel_size", [((6,), 3), ((4, 6), 2), ((6, 6), 3), ((4, 4, 4), 3)])
def test_convolution_equals_the_offset_loop(shape: tuple[int, ...], kernel_size: int, device: str) -> None:
    """The conv{nd}d form of the block-kernel sum against the loop over offsets (rolls and per-block einsums): the
    same sums in another order, float64."""
    layer = _layer(shape, kernel_size, device, scale=0.5)
    psi = _field((3,) + shape, device)
    g_conv, d_conv = layer._field_and_divergence(psi, 0.3)
    layer.conv_max_nd = 0
    g_loop, d_loop = layer._field_and_divergence(psi, 0.3)
    assert_close(g_conv, g_loop, rtol=1e-12, atol=1e-12)
    assert_close(d_conv, d_loop, rtol=1e-12, atol=1e-12)
    assert float(g_conv.detach().abs().max()) > 1e-2  # a non-trivial field


@pytest.mark.parametrize("shape,kernel_size", [((6,), 3), ((6, 6), 5), ((4, 4, 4), 3)])
def test_convolution_in_batch_pieces_is_the_same(shape: tuple[int, ...], kernel_size: int, device: str) -> None:
    """Batches whose column buffer exceeds ``_COLUMN_BYTES`` are convolved in pieces (page faults of a large buffer,
    local_cnf._convolve): every element's sum is computed alone either way, so field and divergence are identical
    to the single call; the gradients agree to round-off (the weight gradient sums over the pieces in another
    order)."""
    layer = _layer(shape, kernel_size, device, scale=0.5)
    psi = _field((7,) + shape, device).requires_grad_(True)
    g1, d1 = layer._field_and_divergence(psi, 0.3)
    grad1 = torch.autograd.grad((g1 ** 2).sum() + d1.sum(), [psi, layer.w_spatial])
    per = math.prod(L + 2 * (kernel_size // 2) for L in shape) * layer.bond_basis * kernel_size ** len(shape) * 8
    layer._COLUMN_BYTES = 2 * per  # float64 columns of two elements: pieces of 2, 2, 2, 1
    g2, d2 = layer._field_and_divergence(psi, 0.3)
    grad2 = torch.autograd.grad((g2 ** 2).sum() + d2.sum(), [psi, layer.w_spatial])
    assert_close(g2, g1, rtol=0, atol=0)
    assert_close(d2, d1, rtol=0, atol=0)
    for a, b in zip(grad2, grad1):
        assert_close(a, b, rtol=1e-12, atol=1e-13)  # sums of 7 float64 terms in another order
    assert float(grad1[1].abs().max()) > 1e-2


@pytest.mark.parametrize("adjoint", [False, True])
def test_a_non_finite_field_is_named_instead_of_called_stiff(adjoint: bool) -> None:
    """A NaN or inf in the start field makes every step fail; the error says the field is not finite (user probe:
    it read "too stiff for these tolerances"), while a finite field whose solve fails still gets ODESolverError."""
    layer = _layer((4, 4), 2, "cpu", tol=1e-6, adjoint=adjoint)
    for bad in (float("nan"), float("inf")):
        field = _field((2, 4, 4), "cpu")
        field[1, 2, 3] = bad
        with pytest.raises(ValueError, match=r"^x has 1 non-finite entries \(NaN or inf\); LocalCNF"):
            layer(field)
        with pytest.raises(ValueError, match=r"^y has 1 non-finite entries"):
            layer.inverse(field)
