"""Checkpoints of the gauge coupling classes that existed before masks were objects (checkpoint format 1).

Until checkpoint format 2 the gauge layers were four classes, ``U1PlaquetteCoupling(lattice, mu,
offset)`` (2D stripes), ``U1NdPlaquetteCoupling(lattice, mu, nu, parity)`` (checkerboard),
``SUPlaquetteCoupling(group, lattice, mu, offset)`` and ``SUNdPlaquetteCoupling(group, lattice, mu, nu,
parity)``. Each is the same map as today's :class:`~latticekit.flows.U1PlaquetteCoupling` /
:class:`~latticekit.flows.SUPlaquetteCoupling` on a :class:`~latticekit.flows.masks.StripeMask` (2D,
period 4) or :class:`~latticekit.flows.masks.CheckerboardMask`, with the same parameter names
(``net.*``, ``kernel.*``, ``alpha``) and shapes; only the order or sign of some network input channels
differs (the channels follow one rule for every mask now):

* ``U1NdPlaquetteCoupling``: the two-plaquette loops came in the order ``(nu, -1)``, then the other
  directions ascending; now in the order of :func:`~latticekit.loops.staple_order`;
* ``SUPlaquetteCoupling`` (2D): the frozen plaquette was read from the active link (``P_10`` for
  ``mu = 1``) and the rectangle was ``tr(S_down^dag S_up)``; now ``P_01`` and ``tr(S_up^dag S_down)``
  (the ``Im`` channels change sign);
* ``U1PlaquetteCoupling`` (2D) and ``SUNdPlaquetteCoupling``: identical.

:func:`legacy_modules_repr` gives the ``repr`` the old classes would have printed for a model (the
architecture check of :func:`~latticekit.flows.load_checkpoint`), :func:`convert_legacy_state_dict`
checks the stored masks against the new masks and permutes / negates the input channels of the
first convolution. Both are exact: the converted model is the old model (tests/flows/test_legacy.py
compares outputs stored by the old code).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from .masks import CheckerboardMask, StripeMask
from .plaquette_coupling import PlaquetteCoupling

__all__ = ["convert_legacy_state_dict", "legacy_modules_repr"]


@dataclass
class _Legacy:
    name: str                                   # old class name
    extra_repr: str                             # old extra_repr
    buffers: dict[str, torch.Tensor]            # old persistent mask buffers (bool values)
    channels: list[tuple[int, int, float]] = field(default_factory=list)   # (old, new, sign) non-trivial moves
    kernel_extra_repr: str | None = None


def _old_u1_nd_loops(mu: int, nu: int, nd: int) -> list[tuple[int, int]]:
    return [(nu, -1)] + [(rho, s) for rho in range(nd) if rho not in (mu, nu) for s in (1, -1)]


def _spec(layer: PlaquetteCoupling) -> _Legacy | None:
    """What the pre-mask class of ``layer`` was, or None if the layer has no such class."""
    from .sun_couplings import SUPlaquetteCoupling
    from .u1_couplings import U1PlaquetteCoupling

    m, lat = layer.mask, layer.lattice
    shape, nd = lat.shape, lat.nd
    stripes = type(m) is StripeMask and nd == 2 and m.period == 4
    checker = type(m) is CheckerboardMask
    if not (stripes or checker) or type(layer) not in (U1PlaquetteCoupling, SUPlaquetteCoupling):
        return None
    C, B = layer.context_channels, layer.loop_context
    classes = m.plaquette_classes()
    sites = m.sites(m.mu)
    links = m.active_links()
    if isinstance(layer, U1PlaquetteCoupling):
        if stripes:
            return _Legacy("U1PlaquetteCoupling",
                           f"lattice={shape}, mu={m.mu}, offset={m.offset}, bins={layer.bins}, context_channels={C}, "
                           f"rectangle_context={B}",
                           {"mask_links": links, "mask_active": classes["active"][0],
                            "mask_passive": classes["passive"][0], "mask_frozen": classes["frozen"][0]})
        spec = _Legacy("U1NdPlaquetteCoupling",
                       f"lattice={shape}, mu={m.mu}, nu={m.nu}, parity={m.parity}, bins={layer.bins}, "
                       f"context_channels={C}, rectangle_context={B}",
                       {"mask_sites": sites, "mask_links": links})
        if B:
            f = 2 * len(layer.frozen_planes)
            new = layer.loops[0]
            for j, q in enumerate(_old_u1_nd_loops(m.mu, m.nu, nd)):
                i = new.index(q)
                if i != j:
                    spec.channels += [(f + 2 * j, f + 2 * i, 1.0), (f + 2 * j + 1, f + 2 * i + 1, 1.0)]
        return spec
    G = layer.group.name
    if stripes:
        spec = _Legacy("SUPlaquetteCoupling",
                       f"group={G}, lattice={shape}, mu={m.mu}, offset={m.offset}, bins={layer.bins}, loop={layer.loop}, "
                       f"context_channels={C}, rectangle_context={B}",
                       {"mask_frozen": classes["frozen"][0], "mask_active": classes["active"][0]},
                       kernel_extra_repr=layer.kernel.extra_repr().replace("nd=1", "nd=2"))
        if m.mu == 1:
            spec.channels.append((1, 1, -1.0))          # Im tr P_10 = -Im tr P_01
        if B:
            spec.channels.append((3, 3, -1.0))          # tr(S_down^dag S_up) = conj tr(S_up^dag S_down)
        return spec
    return _Legacy("SUNdPlaquetteCoupling",
                   f"group={G}, lattice={shape}, mu={m.mu}, nu={m.nu}, parity={m.parity}, bins={layer.bins}, "
                   f"loop={layer.loop}, context_channels={C}, loop_context={B}",
                   {"mask_sites": sites, "mask_links": links})


@contextmanager
def _legacy_names(model: nn.Module) -> Iterator[bool]:
    """Make the gauge layers of ``model`` print as their pre-mask classes; yields False if one cannot."""
    patched: list[nn.Module] = []
    ok = True
    try:
        for mod in model.modules():
            if not isinstance(mod, PlaquetteCoupling):
                continue
            spec = _spec(mod)
            if spec is None:
                ok = False
                break
            # instance attributes win over the class methods that torch's repr calls
            mod.__dict__["_get_name"] = lambda name=spec.name: name
            mod.__dict__["extra_repr"] = lambda text=spec.extra_repr: text
            patched.append(mod)
            if spec.kernel_extra_repr is not None:
                mod.kernel.__dict__["extra_repr"] = lambda text=spec.kernel_extra_repr: text
                patched.append(mod.kernel)
        yield ok
    finally:
        for mod in patched:
            mod.__dict__.pop("_get_name", None)
            mod.__dict__.pop("extra_repr", None)


def legacy_modules_repr(model: nn.Module) -> str | None:
    """``repr(model)`` as printed with the pre-mask gauge classes, or None if a layer has no such class.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.flows import u1_gauge_flow
    >>> print(legacy_modules_repr(u1_gauge_flow(lk.Lattice((4, 4)), 1, hidden=(), bins=2)))
    Flow(
      (layers): ModuleList(
        (0): U1PlaquetteCoupling(
          lattice=(4, 4), mu=0, offset=3, bins=2, context_channels=0, rectangle_context=True
          (net): ConvNet(
            (net): Sequential(
              (0): Conv2d(4, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), padding_mode=circular)
            )
          )
        )
      )
    )
    """
    with _legacy_names(model) as ok:
        return repr(model) if ok else None


def convert_legacy_state_dict(model: nn.Module, state: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A state dict of the pre-mask classes converted for ``model`` (module docstring).

    The stored mask buffers of every gauge layer must equal the masks of the corresponding new layer
    (ValueError otherwise) and are dropped; the input channels of the first convolution are permuted /
    negated where the channel rule changed. Returns ``(state, changed)``: ``changed`` says whether
    any weight was transformed (then optimizer states, which follow the weights, cannot be reused).
    """
    out = dict(state)
    changed = False
    for name, mod in model.named_modules():
        if not isinstance(mod, PlaquetteCoupling):
            continue
        spec = _spec(mod)
        if spec is None:
            raise ValueError(f"layer {name!r} ({type(mod).__name__} with {mod.mask!r}) has no pre-mask class")
        prefix = f"{name}." if name else ""
        for bname, want in spec.buffers.items():
            key = prefix + bname
            if key not in out:
                raise ValueError(f"the checkpoint has no {key!r}: it does not hold a {spec.name} at {name!r}")
            got = out.pop(key)
            if tuple(got.shape) != tuple(want.shape) or not torch.equal(got.cpu() != 0, want):
                raise ValueError(f"{key}: the stored mask of the {spec.name} differs from the mask of the model's "
                                 f"layer {name!r} ({mod.mask!r})")
        if spec.channels:
            pname = next(iter(mod.net.named_parameters()))[0]          # the first convolution's weight
            key = f"{prefix}net.{pname}"
            w = out[key]
            new = w.clone()
            for old_c, new_c, sign in spec.channels:
                new[:, new_c] = sign * w[:, old_c]
            out[key] = new
            changed = True
    return out, changed
