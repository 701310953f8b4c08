"""Opt-in ``torch.compile`` fast paths for the SU(N) Wilson gauge kernels, for GPU and CPU.

The generic Array-API code builds every plaquette and staple from stacked complex ``(N, N)`` matrix
products, one array operation (one pass over memory, one kernel launch on a GPU) at a time: the
4D SU(3) plaquette is ~50 launches of small kernels on an H100 (benchmarks/README.md, ``gpu_h100.json``).
Here the same formulas are written on the real and imaginary parts of the matrices, each a real tensor
``(*B, N, N, *L)`` (Inductor does not fuse complex arithmetic), a product being a broadcast multiply summed
over the middle index, so that ``torch.compile`` traces one real-valued graph per kernel and fuses the
products, the shifts (``torch.roll`` becomes index arithmetic) and the reductions into a few loops: Triton
kernels on a GPU, vectorised C++ on a CPU.

Fields: ``U`` ``(*B, nd, N, N, *L)`` complex64/complex128 (the house layout, DESIGN.md); the kernels
see ``torch.view_as_real(U)`` (no copy). Registered names (backend ``"torch"``, with the signatures of
the numba kernels of ``backends/_numba_gauge.py``):

``sun_re_tr_plaquette_sum(U, nd) -> (*B,)``
    ``sum_x sum_{mu<nu} Re tr P_{mu nu}(x)``, ``P_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``,
    evaluated as ``Re tr(A B^dag)`` with ``A = U_mu(x) U_nu(x+mu)``, ``B = U_nu(x) U_mu(x+nu)``.
``sun_plaquette_field(U, nd) -> (*B, n_planes, *L)``
    ``(1/N) Re tr P_{mu nu}(x)``, planes in the order of ``Lattice.planes()``.
``sun_wilson_force(U, beta, nd) -> U.shape``
    ``F_mu(x) = (beta / 2N) P(U_mu(x) A_mu(x))`` with the staple sum
    ``A_mu(x) = sum_{rho != mu} [U_rho(x+mu) U_mu(x+rho)^dag U_rho(x)^dag
    + U_rho(x+mu-rho)^dag U_mu(x-rho)^dag U_rho(x-rho)]``
    and ``P(M) = (M - M^dag)/2 - tr(M - M^dag)/(2N)`` (``latticekit.actions.wilson_gauge``; the lower staple
    is ``[(U_mu U_rho(.+mu))^dag U_rho](x - rho)``, one product shared with the plaquette ``A``).

They decline (return None; the generic code runs) unless ``U`` is a complex64/complex128 torch tensor of
that layout with ``N >= 2``. ``beta`` enters as a tensor, so a new ``beta`` does not recompile. One code object
per ``(kernel, nd)`` (``_torch_compile.compile_variant``); autograd works through them (AOTAutograd).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from ._torch_compile import compile_variant, device_scalar, real_scalar

__all__ = ["NAMES", "sun_plaquette_field", "sun_re_tr_plaquette_sum", "sun_wilson_force"]

NAMES = ("sun_re_tr_plaquette_sum", "sun_plaquette_field", "sun_wilson_force")

# ------------------------------------------------------------------------------------------------
# complex matrix arithmetic on (re, im) pairs of stacked matrices (*B, N, N, *L): a product is a
# broadcast multiply and a sum over k (a handful of graph nodes whatever N; Inductor unrolls the short
# reduction). Written element by element instead (108 real products per SU(3) product), the 4D SU(3)
# plaquette graph was still being scheduled by Inductor after 11 minutes.
# ------------------------------------------------------------------------------------------------
def _prod(x: Any, y: Any, nd: int, conj_x: bool, conj_y: bool) -> Any:
    """``sum_k x_ik y_kj`` with each factor optionally conjugated (its imaginary part negated)."""
    (a, b), (c, d) = x, y
    i_ax, k_ax = -nd - 2, -nd - 1
    a, b = a.unsqueeze(k_ax), b.unsqueeze(k_ax)          # x_ik -> (.., i, k, 1, *L)
    c, d = c.unsqueeze(i_ax - 1), d.unsqueeze(i_ax - 1)  # y_kj -> (.., 1, k, j, *L)
    sx, sy = (-1.0 if conj_x else 1.0), (-1.0 if conj_y else 1.0)
    re = (a * c - (sx * sy) * (b * d)).sum(dim=-nd - 2)
    im = (sy * (a * d) + sx * (b * c)).sum(dim=-nd - 2)
    return re, im


def _t(x: Any, nd: int) -> Any:
    """The transpose of both parts (a view)."""
    return x[0].transpose(-nd - 2, -nd - 1), x[1].transpose(-nd - 2, -nd - 1)


def _mul(x: Any, y: Any, nd: int) -> Any:
    """``x y``."""
    return _prod(x, y, nd, False, False)


def _mul_adj(x: Any, y: Any, nd: int) -> Any:
    """``x y^dag``: ``sum_k x_ik conj(y_jk)``."""
    return _prod(x, _t(y, nd), nd, False, True)


def _adj_mul(x: Any, y: Any, nd: int) -> Any:
    """``x^dag y``: ``sum_k conj(x_ki) y_kj``."""
    return _prod(_t(x, nd), y, nd, True, False)


def _add(x: Any, y: Any) -> Any:
    return x[0] + y[0], x[1] + y[1]


def _shift(x: Any, mu: int, step: int, nd: int) -> Any:
    """``x(y + step mu)`` (periodic); Inductor turns the roll into index arithmetic."""
    import torch

    ax = -nd + mu
    return torch.roll(x[0], -step, ax), torch.roll(x[1], -step, ax)


def _re_tr_mul_adj(x: Any, y: Any, nd: int) -> Any:
    """``Re tr(x y^dag) = sum_ij Re x_ij Re y_ij + Im x_ij Im y_ij``, ``(*B, *L)``."""
    return (x[0] * y[0] + x[1] * y[1]).sum(dim=(-nd - 2, -nd - 1))


def _links(Ur: Any, nd: int) -> list[Any]:
    """``[mu] -> (re, im)`` of ``U_mu``, each ``(*B, N, N, *L)``, from the real view ``(*B, nd, N, N, *L, 2)``."""
    k = Ur.ndim - nd - 4
    return [(Ur.select(k, mu).select(-1, 0), Ur.select(k, mu).select(-1, 1)) for mu in range(nd)]


# ------------------------------------------------------------------------------------------------
# the compiled graphs
# ------------------------------------------------------------------------------------------------
def _plaquettes(Ur: Any, nd: int) -> list[Any]:
    """``Re tr P_{mu nu}(x)`` per plane (``Lattice.planes()`` order), each ``(*B, *L)``."""
    U = _links(Ur, nd)
    out = []
    for mu in range(nd):
        for nu in range(mu + 1, nd):
            A = _mul(U[mu], _shift(U[nu], mu, 1, nd), nd)
            B = _mul(U[nu], _shift(U[mu], nu, 1, nd), nd)
            out.append(_re_tr_mul_adj(A, B, nd))
    return out


def _re_tr_plaquette_sum(Ur: Any, nd: int) -> Any:
    tot = None
    for p in _plaquettes(Ur, nd):
        tot = p if tot is None else tot + p
    return tot.sum(dim=tuple(range(-nd, 0)))


def _plaquette_field(Ur: Any, nd: int) -> Any:
    import torch

    N = Ur.shape[Ur.ndim - nd - 3]
    return torch.stack(_plaquettes(Ur, nd), dim=-nd - 1) * (1.0 / N)


def _force(Ur: Any, coef: Any, nd: int) -> Any:
    """The real view ``(*B, nd, N, N, *L, 2)`` of ``coef P(U_mu A_mu)`` (see the module docstring)."""
    import torch

    U = _links(Ur, nd)
    N = Ur.shape[Ur.ndim - nd - 3]
    eye = torch.eye(N, dtype=Ur.dtype, device=Ur.device).reshape((N, N) + (1,) * nd)
    out = []
    for mu in range(nd):
        S = None
        for rho in range(nd):
            if rho == mu:
                continue
            Ur_mu = _shift(U[rho], mu, 1, nd)                                           # U_rho(x+mu)
            # upper: U_rho(x+mu) U_mu(x+rho)^dag U_rho(x)^dag; lower: [(U_mu U_rho(.+mu))^dag U_rho](x-rho)
            up = _mul_adj(_mul_adj(Ur_mu, _shift(U[mu], rho, 1, nd), nd), U[rho], nd)
            lo = _shift(_adj_mul(_mul(U[mu], Ur_mu, nd), U[rho], nd), rho, -1, nd)
            s = _add(up, lo)
            S = s if S is None else _add(S, s)
        Mr, Mi = _mul(U[mu], S, nd)
        # P(M) = (M - M^dag)/2 - i Im tr M / N: re (M - M^T)/2, im (M + M^T)/2 - Im tr M / N on the diagonal
        MrT, MiT = Mr.transpose(-nd - 2, -nd - 1), Mi.transpose(-nd - 2, -nd - 1)
        im_tr = (Mi * eye).sum(dim=(-nd - 2, -nd - 1), keepdim=True)
        re = 0.5 * (Mr - MrT)
        im = 0.5 * (Mi + MiT) - eye * (im_tr * (1.0 / N))
        out.append(torch.stack((coef * re, coef * im), dim=-1))
    return torch.stack(out, dim=-nd - 4)


_GRAPHS: dict[str, Callable[..., Any]] = {"plaquette_sum": _re_tr_plaquette_sum, "plaquette_field": _plaquette_field,
                                          "force": _force}


@lru_cache(maxsize=None)
def _compiled(name: str, nd: int) -> Callable[..., Any]:
    # nd is a Python constant baked into the graph, one code object per (kernel, nd) (compile_variant); torch's
    # default shape policy (static first, one dynamic recompilation on a second shape) as in _kernels_torch.py
    return compile_variant(_GRAPHS[name], f"{nd}d")


# ------------------------------------------------------------------------------------------------
# the registered entry points: qualify, take the real view, call the graph
# ------------------------------------------------------------------------------------------------
def _real_view(U: Any, nd: Any) -> Any:
    """``torch.view_as_real(U)`` when ``U`` qualifies (see the module docstring), else None."""
    import torch

    if not (isinstance(U, torch.Tensor) and isinstance(nd, int) and not isinstance(nd, bool) and nd >= 2):
        return None
    if U.dtype not in (torch.complex64, torch.complex128) or U.ndim < nd + 3 or U.shape[U.ndim - nd - 3] != nd:
        return None
    N = int(U.shape[-nd - 1])
    if int(U.shape[-nd - 2]) != N or N < 2:
        return None
    return torch.view_as_real(U)


def sun_re_tr_plaquette_sum(U: Any, nd: int) -> Any:
    """``sum_x sum_{mu<nu} Re tr P_{mu nu}(x)`` per configuration ``(*B,)``, or None (declined)."""
    Ur = _real_view(U, nd)
    return None if Ur is None else _compiled("plaquette_sum", nd)(Ur, nd)


def sun_plaquette_field(U: Any, nd: int) -> Any:
    """``(1/N) Re tr P_{mu nu}(x)``, shape ``(*B, n_planes, *L)``, or None (declined)."""
    Ur = _real_view(U, nd)
    return None if Ur is None else _compiled("plaquette_field", nd)(Ur, nd)


def sun_wilson_force(U: Any, beta: Any, nd: int) -> Any:
    """``(beta/(2N)) project_algebra(U_mu A_mu)``, shape of ``U``, or None (declined)."""
    import torch

    Ur = _real_view(U, nd)
    if Ur is None or not real_scalar(beta):
        return None
    coef = device_scalar(float(beta) / (2.0 * int(U.shape[-nd - 1])), Ur.dtype, U.device)
    return torch.view_as_complex(_compiled("force", nd)(Ur, coef, nd))


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"torch"``; compiled on first call)."""
    return {name: globals()[name] for name in NAMES}
