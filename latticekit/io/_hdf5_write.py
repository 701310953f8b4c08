"""Writing slots of an HDF5 ensemble: many configurations per call, one commit (used by
:meth:`latticekit.io.hdf5.Ensemble.append` and :meth:`~latticekit.io.hdf5.Ensemble.extend`).

Appending one configuration at a time costs two flushes and about a dozen dataset writes each (6 ms per 8x8 U(1)
configuration, 25 s for the 4096 of a flow-MCMC chain); a batch is written with one resize and one write per
dataset and committed once. The layout and the checksums are those of :mod:`latticekit.io._hdf5_format`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from latticekit.backends import to_numpy

from ._hdf5_format import MAX_INFO_BYTES, SLOT_DTYPE, config_crc, info_crc, observables_crc
from ._hdf5_values import info_json
from .errors import IOFormatError

__all__ = ["batch_infos", "batch_observables", "info_bytes", "write_slots"]


def _name(k: Any) -> str:
    """An observable's name as HDF5 stores it: a link name of the ``observables`` group."""
    if not isinstance(k, str) or not k or "/" in k or "\0" in k or k in (".", ".."):
        raise ValueError(f"observables: name {k!r} must be a non-empty string without '/' or NUL, other than "
                         f"'.' and '..' (HDF5 stores such names otherwise than given)")
    try:
        k.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"observables: name {k!r} is not valid UTF-8 text") from None
    return k


def _real(a: np.ndarray, name: str, what: str) -> np.ndarray:
    """``a`` as float64, refusing what would not be stored as given: complex values (their imaginary part would be
    dropped), None (it would become NaN), other objects, integers beyond float64 (an object array here)."""
    if a.dtype.kind not in "biuf":
        raise ValueError(f"observables[{name!r}]: expected {what}, got values of dtype {a.dtype}"
                         + (" (complex: the imaginary part would be lost)" if a.dtype.kind == "c" else ""))
    return a.astype(np.float64)


def batch_observables(observables: Mapping[str, Any] | None, k: int, *, one: bool) -> dict[str, np.ndarray]:
    """``{name: float64 array (k,)}`` of per-configuration measurements; ``one``: each value is one number (a
    single configuration, ``k = 1``), else a sequence of ``k`` numbers."""
    if observables is None:
        return {}
    if not isinstance(observables, Mapping):
        raise TypeError(f"observables: expected a mapping of names to {'numbers' if one else 'sequences of numbers'}, "
                        f"got {type(observables).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, v in observables.items():
        name = _name(name)
        what = "one number for this configuration" if one else f"{k} numbers, one per configuration"
        try:
            a = to_numpy(v)   # any backend (a torch tensor that requires grad too), Python numbers and lists
        except Exception:
            raise ValueError(f"observables[{name!r}]: expected {what}") from None
        if one and a.shape not in ((), (1,)):
            raise ValueError(f"observables[{name!r}]: expected one number for this configuration, got "
                             f"{type(v).__name__} of shape {a.shape}")
        if not one and a.shape != (k,):
            raise ValueError(f"observables[{name!r}] has shape {a.shape}; expected ({k},), one number per "
                             f"configuration")
        out[name] = _real(a.reshape(-1), name, what)
    return out


def info_bytes(info: Mapping[str, Any] | None) -> bytes:
    """The UTF-8 JSON of one per-configuration info, refused when larger than the reader accepts."""
    raw = info_json(info).encode("utf-8")
    if len(raw) > MAX_INFO_BYTES:
        raise ValueError(f"info: {len(raw)} bytes of JSON; an ensemble stores at most {MAX_INFO_BYTES} per "
                         f"configuration (store large data in a file of its own)")
    return raw


def batch_infos(infos: Sequence[Mapping[str, Any] | None] | None, k: int) -> list[bytes]:
    """The UTF-8 JSON of ``k`` per-configuration infos (``None``: empty ones)."""
    if infos is None:
        return [b"{}"] * k
    if isinstance(infos, Mapping) or not isinstance(infos, Sequence):
        raise TypeError(f"infos: expected a sequence of {k} mappings (one per configuration), got "
                        f"{type(infos).__name__}")
    if len(infos) != k:
        raise ValueError(f"infos has {len(infos)} entries; expected {k}, one per configuration")
    return [info_bytes(i) for i in infos]


def write_slots(ens: Any, n: int, stored: np.ndarray, values: Mapping[str, np.ndarray], raws: list[bytes]) -> None:
    """Write slots ``n .. n + k - 1`` in full without committing them: the configurations ``stored`` (``(k, ...)``
    in the file's dtype), the observables ``values`` (name -> ``(k,)``; names the file has and ``values`` lacks get
    NaN) and the infos ``raws``. A writer killed in here leaves the committed slots as they were."""
    f = ens._f
    k = int(stored.shape[0])
    v2 = ens.format_version >= 2
    off = 0
    if v2 and n:
        prev = ens._slot(n - 1)
        off = int(prev["info_offset"]) + int(prev["info_length"])
        if off > f["info_json"].shape[0]:
            raise IOFormatError(f"slot {n - 1} places its info beyond info_json; not appending to a damaged file",
                                ens.path, "HDF5 info")
    configs = ens._configs
    if configs.shape[0] < n + k:
        configs.resize(n + k, axis=0)
    configs[n:n + k] = stored
    obs = f["observables"]
    for name in values:
        if name not in obs:
            obs.create_dataset(name, shape=(n + k,), maxshape=(None,), dtype="<f8", chunks=(256,), fillvalue=np.nan,
                               fletcher32=v2)
    for name in obs:
        d = obs[name]
        if d.shape[0] < n + k:
            d.resize(n + k, axis=0)
        d[n:n + k] = values.get(name, np.full(k, np.nan))
    if not v2:
        inf = f["info"]
        if inf.shape[0] < n + k:
            inf.resize(n + k, axis=0)
        inf[n:n + k] = [r.decode("utf-8") for r in raws]
        return
    blob = b"".join(raws)
    ij = f["info_json"]
    ij.resize(off + len(blob), axis=0)
    if blob:
        ij[off:off + len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    slots = f["slots"]
    if slots.shape[0] < n + k:
        slots.resize(n + k, axis=0)
    rows = np.zeros(k, dtype=SLOT_DTYPE)
    names = list(values)
    for i in range(k):
        j = n + i
        rows[i]["config_crc32"] = config_crc(stored[i], j)
        rows[i]["info_crc32"] = info_crc(raws[i], j)
        rows[i]["observables_crc32"] = observables_crc(((m, values[m][i]) for m in names), j)
        rows[i]["info_offset"], rows[i]["info_length"] = off, len(raws[i])
        off += len(raws[i])
    slots[n:n + k] = rows
