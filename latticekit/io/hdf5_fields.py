"""One configuration or a batch as an HDF5 ensemble: the ``hdf5`` entry of :func:`latticekit.io.load` / ``save``.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io.hdf5_fields import read_hdf5, write_hdf5
>>> U = lk.SU(2).random(lk.backends.rng(0), (4,), (2, 2, 2, 2))
>>> path = os.path.join(tempfile.mkdtemp(), "one.h5")
>>> write_hdf5(path, U, lk.SU(2))
>>> V, meta = read_hdf5(path)
>>> bool((V == U).all()), meta.checks_ok, [c.kind for c in meta.checks][:2]
(True, True, ['checksum', 'checksum'])
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from latticekit.groups import Group, SUGroup, U1Group
from latticekit.utils.files import atomic_path

from ._common import (
    FieldMeta,
    as_group,
    as_lattice,
    average_link_trace_np,
    average_plaquette_np,
    check_field,
    finish_checks,
    precision_name,
    unitarity_check,
    verify_mode,
)
from .errors import IOFormatError
from ._hdf5_values import check_u1_angles
from .hdf5 import Ensemble

__all__ = ["field_plaquette", "read_hdf5", "write_hdf5"]


def _u1_plaquette(theta: np.ndarray) -> float:
    """Average ``cos`` of U(1) plaquette angles of one field ``(Nd, *L)``."""
    nd = theta.shape[0]
    vals = []
    for mu in range(nd):
        for nu in range(mu + 1, nd):
            p = theta[mu] + np.roll(theta[nu], -1, axis=mu) - np.roll(theta[mu], -1, axis=nu) - theta[nu]
            vals.append(np.mean(np.cos(p)))
    return float(np.mean(vals)) if vals else 1.0


def field_plaquette(U: np.ndarray, group: Group) -> float:
    """Average plaquette ``(1/N) Re tr P`` of one host field ``(Nd, *G, *L)`` (any Nd >= 2)."""
    if isinstance(group, U1Group):
        return _u1_plaquette(np.asarray(U, dtype=np.float64))
    return average_plaquette_np(U)


def read_hdf5(path: Any, *, lattice: Any = None, group: Any = None, verify: bool | str = True, strict: bool = True,
              index: int | slice = -1) -> tuple[np.ndarray, FieldMeta]:
    """Read configuration(s) ``index`` (default: the last committed) of an ensemble as host arrays.

    A slice gives a batch ``(B, Nd, *G, *L)``. ``lattice``/``group`` are checked against the file;
    ``verify`` checks the CRC32 of every configuration read and of the observables (format version 2),
    unitarity (SU(N)) or the range of the angles (U(1)); ``verify='require'`` refuses files without
    checksums (format version 1). The plaquette (and for SU(N) the link trace) of the first configuration
    read is computed also with ``verify=False``. ``index=None`` is the last configuration; an integer
    outside the committed configurations, or a slice that selects none, raises IOFormatError naming
    their number.

    Examples
    --------
    See :class:`Ensemble`.
    """
    verify = verify_mode(verify)
    if index is not None and (not isinstance(index, (int, np.integer, slice)) or isinstance(index, bool)):
        raise TypeError(f"index={index!r}: expected an integer or a slice")
    with Ensemble.open(path, "r") as ens:
        want_lat = as_lattice(lattice)
        if want_lat is not None and tuple(want_lat) != ens.lattice:
            raise IOFormatError(f"file lattice {ens.lattice}, expected lattice={tuple(want_lat)}", path, "lattice")
        g = as_group(group)
        if g is not None and g != ens.group:
            raise IOFormatError(f"file group {ens.group.name}, expected group={g.name}", path, "group")
        n = len(ens)
        if n == 0:
            raise IOFormatError("ensemble holds no committed configuration", path, "HDF5 ensemble")
        if index is None:
            index = -1
        if not isinstance(index, slice) and not -n <= int(index) < n:
            raise IOFormatError(f"index {index} out of range: the ensemble holds {n} committed configurations", path,
                                "HDF5 index")
        if isinstance(index, slice) and not range(*index.indices(n)):
            raise IOFormatError(f"index {index} selects no configuration: the ensemble holds {n} committed "
                                f"configurations (indices 0..{n - 1})", path, "HDF5 index")
        U, checks = ens._read_checked(index, bool(verify))
        extra = ens.metadata
        obs, obs_checks = ens._observables_checked()
        extra["observables"] = {k: v.tolist() for k, v in obs.items()}
        meta = FieldMeta(format="hdf5", path=str(path), lattice=ens.lattice, group=ens.group.name,
                         precision=ens.precision, endianness="native", header=dict(extra), extra={
                             "n_committed": n, "index": int(index) if not isinstance(index, slice) else str(index),
                             "format_version": ens.format_version})
        grp = ens.group
        if verify:
            meta.checks += checks + obs_checks
            if not ens.checksummed:
                meta.absent.append("HDF5 checksums: format_version 1 ensemble, written before checksums existed, so "
                                   "no checksum covers the configurations, observables or metadata")
    first = U if U.ndim == len(meta.lattice) + 1 + len(grp.element_shape) else U[0]
    if U.size:  # the plaquette and link trace also with verify=False (cheap; `latticekit info` shows them)
        if isinstance(grp, SUGroup):
            if verify:
                M = np.moveaxis(np.moveaxis(U, U.ndim - len(meta.lattice) - 2, -1), U.ndim - len(meta.lattice) - 2,
                                -1)
                meta.checks.append(unitarity_check(M, meta.precision))
            meta.link_trace = average_link_trace_np(first)
        if len(meta.lattice) >= 2:
            meta.plaquette = field_plaquette(first, grp)
    finish_checks(meta, verify, strict)
    return U, meta


def _infer_lattice(shape: tuple[int, ...], G: tuple[int, ...]) -> tuple[int, ...]:
    """Lattice of a field ``(Nd, *G, *L)`` or ``(B, Nd, *G, *L)``; both readings fitting is an error."""
    ng = len(G)
    found = []
    for b in (0, 1):
        nd = len(shape) - 1 - b - ng
        if nd >= 1 and shape[b] == nd and tuple(shape[b + 1:b + 1 + ng]) == G:
            found.append(tuple(shape[len(shape) - nd:]))
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"U has shape {shape}: both an unbatched field on {found[0]} and a batch on {found[1]} fit; "
                         f"pass the lattice (meta={{'lattice': ...}})")
    raise ValueError(f"U has shape {shape}; expected ([B,] Nd, *G, L0..L_(Nd-1))")


def write_hdf5(path: Any, U: Any, group: Any, *, precision: Any = "double", meta: Mapping[str, Any] | None = None,
               lattice: Any = None) -> None:
    """Write one configuration ``(Nd, *G, *L)`` or a batch ``(B, Nd, *G, *L)`` as a new ensemble (atomically).

    ``meta`` may hold ``lattice`` (needed only when the shape fits both readings, e.g. a batch of 3
    two-dimensional U(1) fields), ``action``, ``action_params``, ``sampler``, ``sampler_params``, ``seeds``,
    ``observables`` (mapping name -> sequence, one value per configuration) and anything else (stored
    under ``metadata``). An existing file at ``path`` is replaced (like ``numpy.save``).

    Raises
    ------
    ValueError
        Before anything is written: an observable without exactly one value per configuration (naming it
        and both counts), links not in the group, or U(1) angles beyond what the reader accepts
        (:data:`~latticekit.io._hdf5_format.U1_ANGLE_LIMIT`; wrap them with ``latticekit.U1.normalize``).
    """
    g = as_group(group)
    if g is None:
        raise ValueError("group is required")
    from latticekit.backends import to_numpy

    a = to_numpy(U)
    ng = len(g.element_shape)
    m = dict(meta or {})
    if lattice is None and m.get("lattice") is not None:
        lattice = m["lattice"]
    m.pop("lattice", None)
    if lattice is not None:
        lat = as_lattice(lattice)
    else:
        lat = _infer_lattice(tuple(a.shape), tuple(g.element_shape))
    nd = len(lat)
    a = check_field(a, g, "U", nd=nd)
    if tuple(a.shape[a.ndim - nd:]) != tuple(lat) or a.shape[a.ndim - nd - ng - 1] != nd:
        raise ValueError(f"U has shape {a.shape}; expected ([B,] {nd}, *G, {lat})")
    batch = a.reshape((-1,) + a.shape[a.ndim - nd - ng - 1:])
    n = batch.shape[0]
    obs_in = m.pop("observables", {}) or {}
    if not isinstance(obs_in, Mapping):
        raise TypeError(f"meta['observables']: expected a mapping name -> values, got {type(obs_in).__name__}")
    obs = {}
    for k, v in obs_in.items():
        try:
            vals = np.asarray(v, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError(f"meta['observables'][{k!r}]: expected numbers, one per configuration") from None
        if vals.size != n:
            raise ValueError(f"meta['observables'][{k!r}]: {vals.size} value{'s' if vals.size != 1 else ''} for "
                             f"{n} configuration{'s' if n != 1 else ''}; expected one value per configuration")
        obs[k] = vals
    if isinstance(g, U1Group):  # refused before anything is written (append would refuse it half-way)
        check_u1_angles(batch, precision_name(precision), nd)
    kw = {k: m.pop(k) for k in ("action", "action_params", "sampler", "sampler_params", "seeds") if k in m}
    with atomic_path(os.fspath(path)) as tmp:
        with Ensemble.create(tmp, lattice=lat, group=g, precision=precision, metadata=m, overwrite=True, **kw) as ens:
            for j in range(n):
                ens.append(batch[j], observables={k: v[j] for k, v in obs.items()})


