"""Gauge fields as a whole: construction, validation and gauge transformations.

A gauge field has shape ``(*B, Nd, *G, L0, ..., L_{Nd-1})`` (DESIGN.md); ``U[..., mu, ...]`` is the
link ``U_mu(x)`` from ``x`` to ``x + mu``. Gauge transformations act as
``U_mu(x) -> Omega(x) U_mu(x) Omega(x + mu)^dagger`` and ``psi(x) -> Omega(x) psi(x)``.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.gauge import random_gauge_field, gauge_transform
>>> lat = lk.Lattice((4, 4)); G = lk.SU(2); rng = lk.backends.rng(0)
>>> U = random_gauge_field(G, lat, rng, batch_shape=(3,))
>>> U.shape
(3, 2, 2, 2, 4, 4)
>>> Om = G.random(rng, (3,), lat.shape)
>>> gauge_transform(U, Om, G, lat).shape
(3, 2, 2, 2, 4, 4)
"""

from __future__ import annotations

from typing import Any, Sequence

from latticekit.backends import Generator, array_namespace
from latticekit.groups import Group
from latticekit.lattice import Lattice

__all__ = [
    "check_gauge_field",
    "cold_gauge_field",
    "gauge_transform",
    "gauge_transform_matter",
    "link",
    "random_gauge_field",
    "stack_links",
]


def check_gauge_field(U: Any, group: Group, lattice: Lattice, name: str = "U", unitarity: bool = False,
                      tol: float | None = None) -> None:
    """Validate the shape ``(*B, Nd, *G, *L)``, the dtype kind (U(1): real angles; SU(N): complex matrices) and
    optionally the unitarity of a gauge field.

    The dtype matters as much as the shape: complex U(1) phases, or a real or integer array given as SU(N) links,
    have valid shapes and gave numbers without meaning (a complex "plaquette", ``|P| > 1``).
    """
    lattice.check(U, name, inner=(lattice.nd,) + tuple(group.element_shape))
    group.check_dtype(U, name=name)
    if unitarity:
        group.check(U, nd=lattice.nd, name=name, tol=tol)


def link(U: Any, mu: int, group: Group, lattice: Lattice) -> Any:
    """The links ``U_mu(x)``, shape ``(*B, *G, *L)`` (a view where the array library makes one)."""
    mu = lattice.axis(mu) + lattice.nd    # -1 gave the last direction, Nd a bare IndexError (user probe)
    k = U.ndim - lattice.nd - len(group.element_shape) - 1
    return U[(slice(None),) * k + (mu, ...)]


def stack_links(links: Sequence[Any], group: Group, lattice: Lattice) -> Any:
    """Inverse of :func:`link`: stack ``[U_0, ..., U_{Nd-1}]`` into a gauge field."""
    xp = array_namespace(*links)
    return xp.stack(list(links), axis=-lattice.nd - len(group.element_shape) - 1)


def cold_gauge_field(group: Group, lattice: Lattice, batch_shape: Sequence[int] = (), *, backend: str | None = None,
                     device: Any = None, precision: Any = "double") -> Any:
    """The unit gauge field (all links 1)."""
    return group.identity(_batch_shape(batch_shape) + (lattice.nd,), lattice.shape, backend=backend, device=device,
                          precision=precision)


def _check_transformation(Omega: Any, group: Group, lattice: Lattice, batch: tuple[int, ...] | None = None) -> None:
    """Shape ``(*B, *G, *L)`` and dtype of a gauge transformation; its batch must broadcast against ``batch``."""
    lattice.check(Omega, "Omega", inner=tuple(group.element_shape))
    group.check_dtype(Omega, name="Omega")
    if batch is not None:
        ob = tuple(Omega.shape[:Omega.ndim - lattice.nd - len(group.element_shape)])
        if len(ob) > len(batch) or any(o not in (1, u) for o, u in zip(ob[::-1], batch[::-1])):
            raise ValueError(f"Omega has batch shape {ob}; expected one that broadcasts against the field's batch "
                             f"shape {batch} (the same, or fewer/unit axes)")


def _batch_shape(batch_shape: Any) -> tuple[int, ...]:
    try:
        out = tuple(batch_shape)
    except TypeError:
        raise TypeError(f"batch_shape={batch_shape!r}: expected a tuple of sizes, e.g. (4,) or ()") from None
    if any(isinstance(n, bool) or not hasattr(n, "__index__") or int(n) < 0 for n in out):
        raise ValueError(f"batch_shape={batch_shape!r}: expected non-negative integer sizes")
    return tuple(int(n) for n in out)


def random_gauge_field(group: Group, lattice: Lattice, rng: Generator, batch_shape: Sequence[int] = (), *,
                       precision: Any = "double") -> Any:
    """Independent Haar-random links (a 'hot start')."""
    return group.random(rng, _batch_shape(batch_shape) + (lattice.nd,), lattice.shape, precision=precision)


def gauge_transform(U: Any, Omega: Any, group: Group, lattice: Lattice) -> Any:
    """``U_mu(x) -> Omega(x) U_mu(x) Omega(x + mu)^dagger`` for ``Omega`` of shape ``(*B, *G, *L)``.

    U(1): the angles are added without wrapping (as the group's products; :meth:`latticekit.groups.U1Group.normalize`
    wraps them into (-pi, pi]): the result lies in (-3 pi, 3 pi] and represents the same elements.
    """
    check_gauge_field(U, group, lattice)
    _check_transformation(Omega, group, lattice, batch=tuple(U.shape[:U.ndim - lattice.nd - len(group.element_shape)
                                                                     - 1]))
    nd = lattice.nd
    out = []
    for mu in range(nd):
        Um = link(U, mu, group, lattice)
        out.append(group.mul(Omega, group.mul_adj(Um, lattice.shift(Omega, mu, +1), nd=nd), nd=nd))
    return stack_links(out, group, lattice)


def gauge_transform_matter(psi: Any, Omega: Any, group: Group, lattice: Lattice) -> Any:
    """``psi(x) -> Omega(x) psi(x)`` for colour vectors ``psi`` of shape ``(*B, [Ns,] N, *L)``.

    The batch axes of ``Omega`` (shape ``(*B, *G, *L)``) are the *leading* axes of ``psi``; any axes between them
    and the colour axis (e.g. spin) are broadcast over. A batch of transformations acting on one spinor needs the
    spinor's batch axis: ``gauge_transform_matter(psi[None], Omega, ...)`` (without it, the spin axis would be read
    as the batch). U(1) fields are the phases' complex vectors of shape ``(*B, [Ns,] 1, *L)``.
    """
    _check_transformation(Omega, group, lattice)
    nd, N = lattice.nd, group.N
    lattice.check(psi, "psi", inner=(N,))        # a wrong colour size gave "list index out of range" (user probe)
    if not _is_complex(psi):
        raise TypeError(f"psi has dtype {psi.dtype}; expected a complex colour vector field")
    ob = tuple(Omega.shape[:Omega.ndim - nd - len(group.element_shape)])
    lead = tuple(psi.shape[:psi.ndim - nd - 1])
    if len(ob) > len(lead) or any(o not in (1, p) and p != 1 for o, p in zip(ob, lead)):
        raise ValueError(f"Omega has batch shape {ob} and psi has shape {tuple(psi.shape)}: Omega's batch axes are "
                         f"psi's leading axes and must broadcast against {lead[:len(ob)]} (for one spinor under a "
                         f"batch of transformations, give psi a leading batch axis: psi[None])")
    xp = array_namespace(psi, Omega)
    extra = psi.ndim - nd - 1 - (Omega.ndim - nd - len(group.element_shape))
    Om = Omega
    for _ in range(max(extra, 0)):
        Om = xp.expand_dims(Om, axis=Om.ndim - nd - len(group.element_shape))
    return group.act(Om, psi, nd=nd)


def _is_complex(x: Any) -> bool:
    return array_namespace(x).isdtype(x.dtype, "complex floating")
