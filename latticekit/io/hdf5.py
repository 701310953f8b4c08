"""HDF5 ensembles: many configurations plus metadata in one appendable, lazily readable file (h5py).

File layout (``latticekit_format = "ensemble"``, ``format_version = 1``):

* root attributes: ``lattice`` (library order, direction 0 = time), ``group`` (``"SU(3)"``, ``"U(1)"``),
  ``precision``, ``action``/``action_params``, ``sampler``/``sampler_params``, ``seeds``, ``software``,
  ``created``, ``metadata`` (JSON strings for the structured ones) and ``n_committed``;
* dataset ``configs``: ``(n, Nd, *G, *L)`` in the library layout (complex SU(N) matrices or real U(1)
  angles, stored natively so round trips are exact), chunked one configuration per chunk;
* group ``observables``: one float64 dataset ``(n,)`` per name (NaN where a configuration has none);
* dataset ``info``: one JSON string per configuration (per-configuration seeds, trajectory, ...).

Commit protocol: :meth:`Ensemble.append` writes the configuration, its observables and info in full,
flushes, and only then increments ``n_committed`` and flushes again. Readers trust ``n_committed``
only, so a writer killed mid-append leaves the previously committed configurations readable (the
partial slot is ignored and overwritten by the next append). Readers open the file with HDF5 file
locking off, so they can read while a writer holds it.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io.hdf5 import Ensemble
>>> path = os.path.join(tempfile.mkdtemp(), "ens.h5")
>>> G, lat, rng = lk.U1, lk.Lattice((4, 4)), lk.backends.rng(0)
>>> with Ensemble.create(path, lattice=lat, group=G, action="wilson", action_params={"beta": 2.0}) as ens:
...     for k in range(3):
...         _ = ens.append(G.random(rng, (2,), lat.shape), observables={"plaq": 0.1 * k}, info={"traj": k})
>>> with Ensemble.open(path) as ens:
...     len(ens), ens[1].shape, ens.observable("plaq").tolist(), ens.info(2)["traj"], ens.action_params
(3, (2, 4, 4), [0.0, 0.1, 0.2], 2, {'beta': 2.0})
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Iterator, Mapping

import numpy as np

from latticekit.backends import from_numpy
from latticekit.groups import Group, SUGroup, U1Group
from latticekit.utils.files import atomic_path

from ._common import (
    WRITE_UNITARITY_TOL,
    FieldMeta,
    as_group,
    as_lattice,
    average_link_trace_np,
    average_plaquette_np,
    check_field,
    precision_name,
    raise_failed,
    unitarity_check,
    unitarity_defect_np,
)
from .errors import IOFormatError

__all__ = ["Ensemble", "read_hdf5", "write_hdf5"]

FORMAT_NAME = "ensemble"
FORMAT_VERSION = 1


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a test dependency
        raise ImportError("HDF5 ensembles need h5py: pip install 'latticekit[io]'") from exc
    return h5py


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def _dumps(x: Any) -> str:
    return json.dumps(x, default=_json_default, sort_keys=True)


def _software() -> str:
    from latticekit import __version__

    return f"latticekit {__version__}"


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


class Ensemble:
    """An appendable, lazily readable HDF5 file of gauge configurations with metadata.

    Use :meth:`create` for a new file and :meth:`open` for an existing one; see the module docstring
    for the layout and the commit protocol.

    Attributes
    ----------
    path : str
        The file.
    lattice : tuple of int
        Library lattice shape.
    group : Group
        Gauge group.
    precision : str
        ``"double"`` or ``"single"``.

    Examples
    --------
    See the module docstring.
    """

    def __init__(self, h5file: Any, path: str, writable: bool) -> None:
        self._f = h5file
        self.path = path
        self.writable = writable
        a = h5file.attrs
        try:
            if str(a["latticekit_format"]) != FORMAT_NAME:
                raise KeyError("latticekit_format")
            self.lattice = tuple(int(v) for v in np.asarray(a["lattice"]).ravel())
            self.group = as_group(str(a["group"]))
            self.precision = precision_name(str(a["precision"]))
            self._configs = h5file["configs"]
            int(a["n_committed"])
        except (KeyError, ValueError, TypeError) as exc:
            h5file.close()
            raise IOFormatError(f"not a latticekit ensemble (missing or bad {exc})", path, "HDF5 ensemble") from None
        want = (len(self.lattice),) + tuple(self.group.element_shape) + self.lattice
        if tuple(self._configs.shape[1:]) != want:
            h5file.close()
            raise IOFormatError(f"configs dataset has shape {self._configs.shape}; expected (n, {want})", path,
                                "HDF5 ensemble")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Any, *, lattice: Any, group: Any, precision: Any = "double", action: str | None = None,
               action_params: Mapping[str, Any] | None = None, sampler: str | None = None,
               sampler_params: Mapping[str, Any] | None = None, seeds: Any = None,
               metadata: Mapping[str, Any] | None = None, overwrite: bool = False) -> "Ensemble":
        """Create a new ensemble file (atomically) and open it for appending.

        Parameters
        ----------
        path : str or os.PathLike
            Destination; an existing file is an error unless ``overwrite``.
        lattice : Lattice or sequence of int
            Library lattice shape (any number of dimensions).
        group : Group or str
            Gauge group.
        precision : {'double', 'single'}
            Storage precision of the configurations.
        action, sampler : str, optional
            Names of the action and of the sampler (e.g. ``"wilson"``, ``"hmc"``).
        action_params, sampler_params : mapping, optional
            Their parameters (stored as JSON).
        seeds : any JSON-serialisable, optional
            Seeds of the run.
        metadata : mapping, optional
            Anything else (JSON).
        overwrite : bool
            Replace an existing file.

        Returns
        -------
        Ensemble
            Open for appending; close it (or use ``with``).
        """
        h5py = _h5py()
        path = os.fspath(path)
        lat = as_lattice(lattice)
        g = as_group(group)
        if lat is None or g is None:
            raise ValueError("lattice and group are required to create an ensemble")
        prec = precision_name(precision)
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"path={path!r} exists; open it with Ensemble.open(path, 'a') or pass overwrite=True")
        if isinstance(g, U1Group):
            dt = np.float64 if prec == "double" else np.float32
        else:
            dt = np.complex128 if prec == "double" else np.complex64
        shape = (len(lat),) + tuple(g.element_shape) + tuple(lat)
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w", locking=False) as f:
                a = f.attrs
                a["latticekit_format"] = FORMAT_NAME
                a["format_version"] = FORMAT_VERSION
                a["lattice"] = np.asarray(lat, dtype=np.int64)
                a["group"] = g.name
                a["precision"] = prec
                a["layout"] = "(n, Nd, *G, L0..L_{Nd-1}); direction mu on lattice axis mu; mu = 0 is time"
                a["action"] = action or ""
                a["action_params"] = _dumps(dict(action_params or {}))
                a["sampler"] = sampler or ""
                a["sampler_params"] = _dumps(dict(sampler_params or {}))
                a["seeds"] = _dumps(seeds)
                a["software"] = _software()
                a["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
                a["metadata"] = _dumps(dict(metadata or {}))
                a["n_committed"] = 0
                f.create_dataset("configs", shape=(0,) + shape, maxshape=(None,) + shape, dtype=dt,
                                 chunks=(1,) + shape)
                f.create_group("observables")
                f.create_dataset("info", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(64,))
        return cls.open(path, "a")

    @classmethod
    def open(cls, path: Any, mode: str = "r") -> "Ensemble":
        """Open an existing ensemble: ``mode='r'`` (read, no file locking) or ``'a'`` (append).

        Raises
        ------
        IOFormatError
            Not an HDF5 file or not a latticekit ensemble.
        """
        h5py = _h5py()
        path = os.fspath(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode={mode!r}: expected 'r' or 'a'")
        if not os.path.exists(path):
            raise FileNotFoundError(f"path={path!r}: no such file")
        try:
            if mode == "r":
                f = h5py.File(path, "r", locking=False)
            else:
                f = h5py.File(path, "r+", locking=False)
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError)):
                raise
            raise IOFormatError(f"HDF5 library cannot open it ({exc})", path, "HDF5 file") from None
        return cls(f, path, mode == "a")

    # -- metadata -----------------------------------------------------------------------------
    def _attr_json(self, key: str) -> Any:
        try:
            return json.loads(str(self._f.attrs.get(key, "null")))
        except json.JSONDecodeError:
            raise IOFormatError(f"attribute {key} is not JSON", self.path, "HDF5 ensemble") from None

    @property
    def action(self) -> str:
        """Name of the action."""
        return str(self._f.attrs.get("action", ""))

    @property
    def action_params(self) -> dict[str, Any]:
        """Parameters of the action."""
        return self._attr_json("action_params") or {}

    @property
    def sampler(self) -> str:
        """Name of the sampler."""
        return str(self._f.attrs.get("sampler", ""))

    @property
    def sampler_params(self) -> dict[str, Any]:
        """Parameters of the sampler."""
        return self._attr_json("sampler_params") or {}

    @property
    def seeds(self) -> Any:
        """Seeds of the run."""
        return self._attr_json("seeds")

    @property
    def metadata(self) -> dict[str, Any]:
        """All root attributes, JSON decoded where stored as JSON."""
        out: dict[str, Any] = {}
        for k, v in self._f.attrs.items():
            if k in ("action_params", "sampler_params", "seeds", "metadata"):
                out[k] = self._attr_json(k)
            elif isinstance(v, np.ndarray):
                out[k] = v.tolist()
            elif isinstance(v, np.generic):
                out[k] = v.item()
            else:
                out[k] = v
        return out

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of committed configurations (re-read from the file)."""
        n = int(self._f.attrs["n_committed"])
        return min(n, int(self._configs.shape[0]))

    def _index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index {i!r}: expected an integer or a slice")
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"index {i} out of range for an ensemble of {n} committed configurations")
        return j

    def read(self, i: int | slice, *, backend: str | None = None, device: Any = None) -> Any:
        """Configuration ``i`` (or a slice, stacked along a batch axis) on ``backend``/``device``.

        Only the requested configurations are read from disk.
        """
        if isinstance(i, slice):
            idx = range(*i.indices(len(self)))
            a = np.stack([self._configs[j] for j in idx]) if len(idx) else \
                np.empty((0,) + self._configs.shape[1:], self._configs.dtype)
        else:
            a = self._configs[self._index(i)]
        return from_numpy(np.ascontiguousarray(a), backend=backend or "numpy", device=device)

    def __getitem__(self, i: int | slice) -> Any:
        return self.read(i)

    def __iter__(self) -> Iterator[Any]:
        for j in range(len(self)):
            yield self.read(j)

    def observable(self, name: str) -> np.ndarray:
        """Values of one observable for the committed configurations (NaN where missing)."""
        obs = self._f["observables"]
        if name not in obs:
            raise KeyError(f"name={name!r}: no such observable; have {sorted(obs)}")
        d = obs[name]
        n = len(self)
        out = np.full(n, np.nan)
        m = min(n, d.shape[0])
        out[:m] = d[:m]
        return out

    @property
    def observable_names(self) -> list[str]:
        """Names of the stored observables."""
        return sorted(self._f["observables"])

    def observables(self) -> dict[str, np.ndarray]:
        """All observables for the committed configurations."""
        return {k: self.observable(k) for k in self.observable_names}

    def info(self, i: int) -> dict[str, Any]:
        """Per-configuration info (the mapping given to :meth:`append`)."""
        j = self._index(i)
        ds = self._f["info"]
        if j >= ds.shape[0]:
            return {}
        raw = ds[j]
        try:
            return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw)) or {}
        except json.JSONDecodeError:
            raise IOFormatError(f"info of configuration {j} is not JSON", self.path, "HDF5 ensemble") from None

    # -- writing ------------------------------------------------------------------------------
    def append(self, U: Any, observables: Mapping[str, float] | None = None,
               info: Mapping[str, Any] | None = None) -> int:
        """Append one configuration (any backend), commit it, and return its index.

        Parameters
        ----------
        U : array
            ``(Nd, *G, *L)`` matching the ensemble's lattice and group.
        observables : mapping of str to float, optional
            Per-configuration measurements (new names may appear at any time).
        info : mapping, optional
            Per-configuration JSON-serialisable info (trajectory number, seed, acceptance, ...).
        """
        if not self.writable:
            raise PermissionError(f"{self.path}: opened read-only; use Ensemble.open(path, 'a')")
        a = check_field(U, self.group, "U", nd=len(self.lattice))
        want = self._configs.shape[1:]
        if tuple(a.shape) != tuple(want):
            raise ValueError(f"U has shape {a.shape}; this ensemble stores configurations of shape {tuple(want)}")
        if isinstance(self.group, SUGroup):
            d = unitarity_defect_np(np.moveaxis(np.moveaxis(a, 1, -1), 1, -1))
            if not d <= WRITE_UNITARITY_TOL[self.precision]:
                raise ValueError(f"U is not in {self.group.name}: largest defect {d:.3e}")
        elif not np.all(np.isfinite(a)):
            raise ValueError("U contains NaN or infinite angles")
        n = len(self)
        self._write_slot(n, a, observables, info)
        self._f.flush()
        self._f.attrs["n_committed"] = n + 1
        self._f.flush()
        return n

    def _write_slot(self, n: int, a: np.ndarray, observables: Mapping[str, float] | None,
                    info: Mapping[str, Any] | None) -> None:
        """Write slot ``n`` in full without committing it (the first half of :meth:`append`)."""
        if self._configs.shape[0] < n + 1:
            self._configs.resize(n + 1, axis=0)
        self._configs[n] = a.astype(self._configs.dtype)
        obs = self._f["observables"]
        for k, v in (observables or {}).items():
            if not isinstance(k, str) or not k or "/" in k:
                raise ValueError(f"observables: name {k!r} must be a non-empty string without '/'")
            if k not in obs:
                obs.create_dataset(k, shape=(n + 1,), maxshape=(None,), dtype=np.float64, chunks=(256,),
                                   fillvalue=np.nan)
        for k in obs:
            d = obs[k]
            if d.shape[0] < n + 1:
                d.resize(n + 1, axis=0)
            d[n] = float((observables or {}).get(k, np.nan))
        inf = self._f["info"]
        if inf.shape[0] < n + 1:
            inf.resize(n + 1, axis=0)
        inf[n] = _dumps(dict(info or {}))

    def close(self) -> None:
        """Flush and close the file."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "Ensemble":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ensemble({self.path!r}, lattice={self.lattice}, group={self.group.name}, n={len(self)})"


def read_hdf5(path: Any, *, lattice: Any = None, group: Any = None, verify: bool = True, strict: bool = True,
              index: int | slice = -1) -> tuple[np.ndarray, FieldMeta]:
    """Read configuration(s) ``index`` (default: the last committed) of an ensemble as host arrays.

    A slice gives a batch ``(B, Nd, *G, *L)``. ``lattice``/``group`` are checked against the file;
    ``verify`` checks unitarity (SU(N)) and computes the plaquette of the first configuration read.

    Examples
    --------
    See :class:`Ensemble`.
    """
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
        U = ens.read(index)
        extra = ens.metadata
        extra["observables"] = {k: v.tolist() for k, v in ens.observables().items()}
        meta = FieldMeta(format="hdf5", path=str(path), lattice=ens.lattice, group=ens.group.name,
                         precision=ens.precision, endianness="native", header=dict(extra), extra={
                             "n_committed": n, "index": index if isinstance(index, int) else str(index)})
        grp = ens.group
    first = U if U.ndim == len(meta.lattice) + 1 + len(grp.element_shape) else U[0]
    if verify and U.size:
        if isinstance(grp, SUGroup):
            M = np.moveaxis(np.moveaxis(U, U.ndim - len(meta.lattice) - 2, -1), U.ndim - len(meta.lattice) - 2, -1)
            meta.checks.append(unitarity_check(M, meta.precision))
            meta.link_trace = average_link_trace_np(first)
        if len(meta.lattice) >= 2:
            meta.plaquette = field_plaquette(first, grp)
        if strict:
            raise_failed(meta)
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
    under ``metadata``).
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
    obs = m.pop("observables", {}) or {}
    kw = {k: m.pop(k) for k in ("action", "action_params", "sampler", "sampler_params", "seeds") if k in m}
    with atomic_path(os.fspath(path)) as tmp:
        with Ensemble.create(tmp, lattice=lat, group=g, precision=precision, metadata=m, overwrite=True, **kw) as ens:
            for j in range(batch.shape[0]):
                ens.append(batch[j], observables={k: np.asarray(v).ravel()[j] for k, v in obs.items()})


