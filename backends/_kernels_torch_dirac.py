"""Opt-in ``torch.compile`` fast path for the Wilson-Dirac hopping term (2D and 4D, any colour), for GPU and CPU.

``alpha psi + beta H psi`` with the hopping term of ``latticekit.actions.dirac`` (DESIGN.md)::

    H psi(x) = sum_mu [(1 - s gamma_mu) U_mu(x) psi(x+mu) + (1 + s gamma_mu) U_mu(x-mu)^dag psi(x-mu)],

``s = -1`` for ``H^dag`` (``dagger``), a hop across the time boundary (``mu = 0``) multiplied by -1 when
``antiperiodic``; ``D psi`` is ``alpha = 1, beta = -kappa`` and the even/odd operators call it through
``WilsonDirac.hop`` (``alpha = 0``). The spin-projection trick of the generic code is kept: per direction and
hop only the ``Ns/2`` combinations ``h_s = psi_s + c_proj psi_{p(s)}`` are parallel-transported, and row
``p(s)`` receives ``c_rec`` times row ``s``. The colour products are broadcast multiplies summed over the
colour index, on the real and imaginary parts (Inductor does not fuse complex arithmetic). The gamma
coefficients (``+-1``, ``+-i``), the boundary signs, ``alpha`` and ``beta`` are tensors (data), so one
``torch.compile`` graph per gamma-basis structure (one in 2D, one in 4D) serves D and D^dag, both boundaries
and every kappa: Triton kernels on a GPU, C++ on a CPU. Products with 0 and +-1 and sums with 0 are exact, so
the values are those of the generic code to the last bit (up to the sign of zeros).

Registered name (backend ``"torch"``), with the signature of the numba kernel of ``backends/_numba_dirac.py``:
``wilson_dirac_apply(psi, links, gammas, alpha, beta, *, dagger=False, antiperiodic=True)``. ``psi``:
``(*S, *B, Ns, Nc, *L)``; ``links``: ``(*B, nd, Nc, Nc, *L)`` of the same complex dtype (complex64 or
complex128) and device; ``gammas``: the monomial tables ``[(perm, coef)] * nd``. It declines (returns None;
the generic code runs) for anything else.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from ._torch_compile import compile_variant, device_constant, device_scalar, real_scalar

__all__ = ["NAMES", "wilson_dirac_apply"]

NAMES = ("wilson_dirac_apply",)


def _cmul(x: Any, c: Any) -> Any:
    """``c x`` with ``c = (re, im)`` 0-d tensors: exact for the gamma coefficients ``+-1``, ``+-i`` (products
    with 0 and +-1 and sums with 0 are exact in floating point)."""
    (re, im), (cr, ci) = x, c
    return cr * re - ci * im, cr * im + ci * re


def _add(x: Any, y: Any) -> Any:
    return x[0] + y[0], x[1] + y[1]


def _transport(U: Any, h: Any, nd: int, adj: bool) -> Any:
    """``U h`` (``U^dag h`` for ``adj``): colour matrices ``(*B, Nc, Nc, *L)`` on vectors ``(..., Nc, *L)``."""
    (a, b), (c, d) = U, h
    if adj:                                   # (U^dag h)_i = sum_k conj(U_ki) h_k
        a, b = a.transpose(-nd - 2, -nd - 1), -b.transpose(-nd - 2, -nd - 1)
    c, d = c.unsqueeze(-nd - 2), d.unsqueeze(-nd - 2)  # h_k -> (..., 1, k, *L)
    return (a * c - b * d).sum(dim=-nd - 1), (a * d + b * c).sum(dim=-nd - 1)


def _graph(pr: Any, lr: Any, coef: Any, signs: Any, alpha: Any, beta: Any, pairs: Any) -> Any:
    """The real view of ``alpha psi + beta H psi``.

    ``pr``, ``lr``: real views of psi ``(*S, *B, Ns, Nc, *L)`` and the links ``(*B, nd, Nc, Nc, *L)``;
    ``coef[mu, hop, j] = ((c_proj re, im), (c_rec re, im))`` for the spin pair ``pairs[j] = (s, p(s))`` of
    direction ``mu``, hop 0 forward ``(1 - s gamma_mu)``, 1 backward ``(1 + s gamma_mu)``; ``signs[hop]``
    ``(L0, 1, ..., 1)``: the factor of a time hop arriving at each time slice (-1 across the boundary when
    antiperiodic). Only ``pairs`` (the permutation structure of the gamma basis) is a constant of the graph;
    D and D^dag, the boundary, kappa and alpha are data, so one graph serves them all.
    """
    import torch

    nd = len(pairs)
    k = lr.ndim - nd - 4
    U = [(lr.select(k, mu).select(-1, 0), lr.select(k, mu).select(-1, 1)) for mu in range(nd)]
    ns = pr.shape[pr.ndim - nd - 3]
    sp = [(pr.select(-nd - 3, s).select(-1, 0), pr.select(-nd - 3, s).select(-1, 1)) for s in range(ns)]
    acc: list[Any] = [None] * ns
    for mu in range(nd):
        ax = -nd + mu
        for hop in (0, 1):
            for j, (s, ps) in enumerate(pairs[mu]):
                c = coef[mu, hop, j]
                h = _add(sp[s], _cmul(sp[ps], (c[0, 0], c[0, 1])))
                if hop == 0:                  # U_mu(x) h(x + mu)
                    h = (torch.roll(h[0], -1, ax), torch.roll(h[1], -1, ax))
                    if mu == 0:
                        h = (h[0] * signs[0], h[1] * signs[0])
                    v = _transport(U[mu], h, nd, adj=False)
                else:                         # [U_mu^dag h](x - mu)
                    v = _transport(U[mu], h, nd, adj=True)
                    v = (torch.roll(v[0], 1, ax), torch.roll(v[1], 1, ax))
                    if mu == 0:
                        v = (v[0] * signs[1], v[1] * signs[1])
                w = _cmul(v, (c[1, 0], c[1, 1]))
                acc[s] = v if acc[s] is None else _add(acc[s], v)
                acc[ps] = w if acc[ps] is None else _add(acc[ps], w)
    out = [torch.stack((beta * acc[s][0] + alpha * sp[s][0], beta * acc[s][1] + alpha * sp[s][1]), dim=-1)
           for s in range(ns)]
    return torch.stack(out, dim=-nd - 3)


@lru_cache(maxsize=16)
def _compiled(pairs: tuple[tuple[tuple[int, int], ...], ...]) -> Callable[..., Any]:
    """One graph per gamma-basis structure (in practice: one for 2D, one for 4D)."""

    def graph(pr: Any, lr: Any, coef: Any, signs: Any, alpha: Any, beta: Any) -> Any:
        return _graph(pr, lr, coef, signs, alpha, beta, pairs)

    return compile_variant(graph, f"{len(pairs)}d_{abs(hash(pairs)):x}")


def _tables(gammas: Any, dagger: bool) -> tuple[Any, list[list[complex]]] | None:
    """``(pairs, coefficients)`` of the spin projection as in ``WilsonDirac``: ``pairs[mu] = ((s, p(s)), ...)``
    for ``s < p(s)``, coefficients ``[mu][hop][j] = (c_proj, c_rec)``; None unless ``gammas`` is a tuple of
    ``nd >= 2`` monomial ``(perm, coef)`` tables of one even spin dimension pairing every spin with another."""
    if not isinstance(gammas, tuple) or len(gammas) < 2:
        return None
    try:
        ns = len(gammas[0][0])
        pairs, coefs = [], []
        sg = -1 if dagger else 1
        for perm, coef in gammas:
            perm = tuple(int(p) for p in perm)
            coef = tuple(complex(c) for c in coef)
            if len(perm) != ns or len(coef) != ns or ns % 2 or sorted(perm) != list(range(ns)):
                return None
            if any(perm[s] == s or perm[perm[s]] != s for s in range(ns)):
                return None
            reps = [s for s in range(ns) if s < perm[s]]
            pairs.append(tuple((s, perm[s]) for s in reps))
            hops = []
            for fwd in (True, False):
                sign = -sg if fwd else sg           # forward (1 - s gamma), backward (1 + s gamma)
                hops.append([(sign * coef[s], sign * coef[perm[s]]) for s in reps])
            coefs.append(hops)
        return tuple(pairs), coefs
    except (TypeError, ValueError, IndexError):
        return None


def wilson_dirac_apply(psi: Any, links: Any, gammas: Any, alpha: Any, beta: Any, *, dagger: bool = False,
                       antiperiodic: bool = True) -> Any:
    """``alpha psi + beta H psi`` (``H^dag`` for ``dagger``), or None (declined); see the module docstring."""
    import torch

    if not (isinstance(psi, torch.Tensor) and isinstance(links, torch.Tensor) and real_scalar(alpha)
            and real_scalar(beta)):
        return None
    if psi.dtype not in (torch.complex64, torch.complex128) or links.dtype != psi.dtype or links.device != psi.device:
        return None
    tables = _tables(gammas, bool(dagger))
    if tables is None:
        return None
    pairs, coefs = tables
    nd, ns = len(pairs), len(gammas[0][0])
    if links.ndim < nd + 3 or links.shape[links.ndim - nd - 3] != nd:
        return None
    Nc = int(links.shape[-nd - 1])
    L = tuple(int(n) for n in links.shape[links.ndim - nd:])
    bg = tuple(links.shape[: links.ndim - nd - 3])
    if (links.shape[-nd - 2] != Nc or 0 in L or psi.ndim < nd + 2 + len(bg)
            or tuple(psi.shape[psi.ndim - nd - 2:]) != (ns, Nc) + L
            or tuple(psi.shape[psi.ndim - nd - 2 - len(bg): psi.ndim - nd - 2]) != bg
            or (antiperiodic and L[0] < 2)):
        return None
    real = torch.float64 if psi.dtype == torch.complex128 else torch.float32
    dev = psi.device
    flat = tuple(c for mu in coefs for hop in mu for pc in hop for c in pc)
    coef = device_constant(("coef", pairs, flat, real, dev), lambda: torch.tensor(
        [[[[[c.real, c.imag] for c in pc] for pc in hop] for hop in mu] for mu in coefs], dtype=real).to(dev))

    def make_signs() -> Any:
        sg = torch.ones((2, L[0]) + (1,) * (nd - 1), dtype=real)
        if antiperiodic:
            sg[0, L[0] - 1] = -1.0          # forward time hop arriving at x0 = L0-1 came from x0 = 0
            sg[1, 0] = -1.0                 # backward time hop arriving at x0 = 0 came from x0 = L0-1
        return sg.to(dev)

    signs = device_constant(("signs", L[0], nd, bool(antiperiodic), real, dev), make_signs)
    out = _compiled(pairs)(torch.view_as_real(psi), torch.view_as_real(links), coef, signs,
                           device_scalar(float(alpha), real, dev), device_scalar(float(beta), real, dev))
    return torch.view_as_complex(out)


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"torch"``; compiled on first call)."""
    return {name: globals()[name] for name in NAMES}
