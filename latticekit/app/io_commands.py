"""Pure functions behind ``latticekit info`` and ``latticekit convert`` (no argparse here).

:func:`info_command` returns an :class:`InfoReport`: the text, plus ``ok`` (False when a check failed,
or under ``verify='require'`` when no checksum covers the payload) and ``verdict`` (one line), so the
command can exit non-zero on a damaged file. A file that cannot be read at all raises
:class:`~latticekit.io.IOFormatError`, whose message is one line.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io import save
>>> from latticekit.app.io_commands import convert_command, info_command
>>> d = tempfile.mkdtemp(); src = os.path.join(d, "a.nersc"); dst = os.path.join(d, "a.lime")
>>> save(src, lk.SU(3).identity((4,), (2, 2, 2, 2)), "SU3", format="nersc")
>>> print(convert_command(src, dst, "ildg").splitlines()[-1])
read back: identical link by link (max |dU| = 0)
>>> [l for l in info_command(dst).splitlines() if l.startswith("plaquette")]
['plaquette:  1.000000000000 (header 1)']
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np

from latticekit.io._common import FieldMeta, average_link_trace_np, inferred_note, no_checksum_reason, verify_mode
from latticekit.io.errors import IOFormatError
from latticekit.io.registry import _read_host, check_read_arguments, format_name, save, sniff_format
from latticekit.utils.schema import ConfigError

__all__ = ["InfoReport", "convert_command", "info_command"]


class InfoReport(str):
    """The text of :func:`info_command` (a ``str``), with the outcome as attributes.

    Attributes
    ----------
    ok : bool
        False when a check failed, or under ``verify='require'`` when no checksum covers the payload.
    verdict : str
        One line: ``"all checks ok"``, ``"MISMATCH: ..."`` or ``"REFUSED: ..."``.

    Examples
    --------
    >>> r = InfoReport("file: x\\nverdict: all checks ok", True, "all checks ok")
    >>> r.ok, r.splitlines()[-1]
    (True, 'verdict: all checks ok')
    """

    ok: bool
    verdict: str

    def __new__(cls, text: str, ok: bool, verdict: str) -> "InfoReport":
        obj = super().__new__(cls, text)
        obj.ok = bool(ok)
        obj.verdict = verdict
        return obj


def _verdict(meta: FieldMeta, verify: bool | str) -> tuple[bool, str]:
    """(ok, one-line verdict) of a verified read."""
    failed = [c for c in meta.checks if not c.ok]
    if failed:
        c = failed[0]
        more = f" (and {len(failed) - 1} more failed check{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
        return False, (f"MISMATCH: {c.name} failed: {c.labels[0]} {c.stored}, {c.labels[1]} {c.computed}{more}"
                       f"{inferred_note(meta)}")
    if not meta.checksummed:
        if verify == "require":
            return False, f"REFUSED: {no_checksum_reason(meta)}"
        return True, "all checks ok; no checksum covers the payload (see absent)"
    return True, "all checks ok"


def _header_plaquette(meta: FieldMeta) -> str | None:
    h = meta.header
    if meta.format == "nersc" and "PLAQUETTE" in h:
        return str(h["PLAQUETTE"])
    if meta.format == "ildg" and "xlf-info" in h:
        for line in str(h["xlf-info"]).splitlines():
            k, _, v = line.partition("=")
            if k.strip().lower() == "plaquette":
                return v.strip()
    if meta.format == "openqcd":
        return f"{float(h['plaq']) / 3:.12f} = plaq/3, openQCD stores sum Re tr P/(6V) = {float(h['plaq']):.12f}"
    return None


def _compact(value: Any) -> str:
    """One line: JSON for non-strings; a multi-line string (an xlf-info record) with its lines joined by ``; ``.

    Examples
    --------
    >>> _compact("plaquette = 1.0\\n trajectory nr = 0\\n"), _compact({"b": 1, "a": [2]})
    ('plaquette = 1.0; trajectory nr = 0', '{"a": [2], "b": 1}')
    """
    if isinstance(value, str):
        return "; ".join(part.strip() for part in value.splitlines() if part.strip())
    return json.dumps(value, sort_keys=True, default=str)


def _metadata_lines(md: Any) -> list[str]:
    """The user metadata of an HDF5 ensemble: what ``latticekit convert`` records of its source (the file, its
    format and its header, one line per header entry), then any other entry."""
    if not isinstance(md, dict) or not md:
        return []
    lines = []
    if "source" in md:
        lines.append(f"source:     {md['source']} ({md.get('source_format', 'format not recorded')})")
    header = md.get("source_header")
    if isinstance(header, dict):
        lines += [f"  header    {k} = {_compact(v)}" for k, v in header.items()]
    lines += [f"metadata:   {k} = {_compact(v)}" for k, v in md.items()
              if k not in ("source", "source_format", "source_header")]
    return lines


def _check_paths(**paths: Any) -> None:
    """An empty (or blank) path is a :class:`ConfigError` and a folder where a file is expected an
    :class:`IsADirectoryError`, each naming the argument, before any work."""
    for name, p in paths.items():
        if isinstance(p, (str, os.PathLike)) and not str(os.fspath(p)).strip():
            raise ConfigError(f"{name}: {os.fspath(p)!r} is not a file path; expected the name of a gauge "
                              f"configuration file")
        if isinstance(p, (str, os.PathLike)) and os.path.isdir(p):
            raise IsADirectoryError(f"{name}: {os.fspath(p)!r} is a folder; expected a gauge configuration file")


def _check_arguments(path: Any, lattice: Any, group: Any) -> None:
    """The caller's ``lattice`` and ``group`` checked against the format of ``path`` before it is read: one that
    no such file can match is a :class:`ConfigError` naming the argument (bad input, exit status 2 of the
    command), not a fault of the file."""
    fmt = sniff_format(path)
    try:
        check_read_arguments(fmt, lattice, group)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def info_command(path: Any, lattice: Any = None, group: Any = None, verify: bool | str = True) -> InfoReport:
    """Human-readable summary of a configuration file.

    Lines: file, format, lattice (library order and file order), group, precision/endianness, how the
    layout was inferred (files without a format record), every check (``ok``/``MISMATCH``; a mismatch is
    reported, not raised), every check the file does not allow (``absent``, e.g. no checksum), the
    verdict, the average plaquette (with the header's value when the file states one) and the average
    link trace.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    lattice, group : optional
        As for :func:`latticekit.io.load` (needed for ILDG files without a format record when the
        payload size alone is ambiguous).
    verify : bool or 'require'
        Compute checksums and unitarity (``False``: skip them, report "not verified"); ``'require'``
        also makes a file without a checksum fail (``ok`` False, verdict ``REFUSED``).

    Returns
    -------
    InfoReport
        The text; ``.ok`` is False when the file failed a check, ``.verdict`` says why in one line.

    Raises
    ------
    IOFormatError
        Unreadable file (unknown format, truncated, malformed header).
    ConfigError
        ``path`` is empty, or ``lattice`` / ``group`` cannot fit a file of this format (a 3D lattice for
        an ILDG file), before the file is read.

    Examples
    --------
    See the module docstring.
    """
    _check_paths(file=path)
    verify = verify_mode(verify)
    _check_arguments(path, lattice, group)
    U, meta = _read_host(path, None, lattice, group, verify, False)
    lines = [f"file:       {os.fspath(path)} ({os.path.getsize(path)} bytes)"]
    fmt = meta.format
    if fmt == "nersc":
        fmt += f" (DATATYPE {meta.header.get('DATATYPE')}, FLOATING_POINT {meta.header.get('FLOATING_POINT')})"
    elif fmt == "ildg":
        fmt += f" (LIME records: {', '.join(meta.header.get('records', []))})"
    elif fmt == "hdf5":
        n, idx = meta.extra.get("n_committed"), meta.extra.get("index")
        shown = (f"showing configuration {idx % n + 1} of {n} (index {idx % n})" if isinstance(n, int) and n > 0
                 and isinstance(idx, int) else f"showing index {idx}")
        fmt += (f" (ensemble format_version {meta.extra.get('format_version')}, {n} committed configuration"
                f"{'' if n == 1 else 's'}; {shown})")
    lines.append(f"format:     {fmt}")
    lat = meta.lattice
    lat_line = f"lattice:    {'x'.join(map(str, lat))} (L0..L{len(lat) - 1}, direction 0 = time)"
    if len(lat) == 4 and meta.format in ("nersc", "ildg"):
        lat_line += f"; file lx={lat[1]} ly={lat[2]} lz={lat[3]} lt={lat[0]}"
    lines.append(lat_line)
    lines.append(f"group:      {meta.group}")
    lines.append(f"precision:  {meta.precision} ({meta.endianness}-endian)")
    if meta.inferred:
        lines.append(f"inferred:   {meta.inferred}")
    if meta.format == "hdf5":
        for k in ("action", "action_params", "sampler", "sampler_params", "seeds", "software", "created"):
            v = meta.header.get(k)
            if v not in (None, "", {}, []):
                lines.append(f"{k + ':':<11} {v}")
        lines += _metadata_lines(meta.header.get("metadata"))
    ok, verdict = True, "not verified (verify=False)"
    if not verify:
        lines.append("checks:     not verified (verify=False)")
    for c in meta.checks:
        lines.append(f"check:      {c}")
    for a in meta.absent:
        lines.append(f"absent:     {a}")
    if verify:
        ok, verdict = _verdict(meta, verify)
        n = meta.extra.get("n_committed") if meta.format == "hdf5" else None
        # say what was checked: one configuration of an ensemble, not the ensemble
        if ok and isinstance(n, int) and n > 1 and isinstance(meta.extra.get("index"), int):
            j = int(meta.extra["index"]) % n
            verdict += (f" for configuration {j + 1} of {n} (index {j}) and the observables; the other {n - 1} "
                        f"configurations were not read")
        lines.append(f"verdict:    {verdict}")
    first = U if U.ndim == len(lat) + 1 + (2 if np.iscomplexobj(U) else 0) else U[0]
    if meta.plaquette is None and len(lat) >= 2:
        from latticekit.groups import group_from_name

        from latticekit.io.hdf5_fields import field_plaquette

        meta.plaquette = field_plaquette(first, group_from_name(meta.group))
    if meta.plaquette is not None:
        hp = _header_plaquette(meta)
        lines.append(f"plaquette:  {meta.plaquette:.12f}" + (f" (header {hp})" if hp is not None else ""))
    if np.iscomplexobj(first):
        lt = meta.link_trace if meta.link_trace is not None else average_link_trace_np(first)
        hl = meta.header.get("LINK_TRACE") if meta.format == "nersc" else None
        lines.append(f"link trace: {lt:.12f}" + (f" (header {hl})" if hl is not None else ""))
    return InfoReport("\n".join(lines), ok, verdict)


def _refuse_target(src: Any, dst: Any, overwrite: bool) -> None:
    """FileExistsError naming ``dst`` when it is ``src`` itself (always) or exists (unless ``overwrite``)."""
    s, d = os.fspath(src), os.fspath(dst)
    if not os.path.exists(s):
        return  # reading the source says so
    same = os.path.realpath(s) == os.path.realpath(d)
    if not same and os.path.exists(d):
        try:
            same = os.path.samefile(s, d)
        except OSError:
            pass
    if same:
        raise FileExistsError(f"dst: {d!r} is the source file {s!r}; write the conversion to another file")
    if os.path.lexists(d) and not overwrite:
        raise FileExistsError(f"dst: {d!r} exists; nothing written (pass overwrite=True, --overwrite on the command "
                              f"line, to replace it)")


def convert_command(src: Any, dst: Any, to: str, lattice: Any = None, group: Any = None,
                    verify: bool | str = True, overwrite: bool = False) -> str:
    """Convert ``src`` to format ``to`` at ``dst``, then read ``dst`` back and compare link by link.

    The source is verified first (checksums, header values, unitarity). The precision of the source
    is kept, except for openQCD, which holds double precision only: single-precision links are then
    promoted and projected onto the group (the polar decomposition of ``group.normalize``), since they
    are unitary only to ~1e-7 and openQCD's programs take the links as SU(3) to rounding; the summary
    reports the largest change. NERSC keeps the source byte order, ILDG is big- and openQCD
    little-endian; an HDF5 source contributes its last committed configuration. HDF5 targets record
    the source file, format and header in the ensemble metadata.

    Parameters
    ----------
    src, dst : str or os.PathLike
        Source and destination files.
    to : {'nersc', 'ildg', 'openqcd', 'hdf5'}
        Target format.
    lattice, group : optional
        As for :func:`latticekit.io.load`.
    verify : bool or 'require'
        Verify the source, as for :func:`latticekit.io.load` (``False``: read it without checksum, header
        and unitarity checks, e.g. an openQCD file whose header plaquette has another normalisation;
        ``latticekit convert --no-verify``). The written file is always read back and compared link by link.
    overwrite : bool
        Replace an existing ``dst`` (``--overwrite``); without it an existing ``dst`` is refused before
        anything is read or written. ``dst`` being ``src`` itself (the same path, or a link to it) is
        always refused.

    Returns
    -------
    str
        A summary; its last line reports the read-back comparison.

    Raises
    ------
    IOFormatError
        The source fails a check, the target format cannot hold the field (e.g. SU(2) or 2D links
        for openQCD; nothing is written then), or the written file does not read back identically.
    FileExistsError
        ``dst`` exists (without ``overwrite``) or is ``src``.
    ConfigError
        ``src`` or ``dst`` is empty (or blank), or ``lattice`` / ``group`` cannot fit a source of its
        format, before anything is read or written.

    Examples
    --------
    See the module docstring.
    """
    _check_paths(src=src, dst=dst)
    fmt = format_name(to, "to")
    verify = verify_mode(verify)
    _refuse_target(src, dst, overwrite)
    _check_arguments(src, lattice, group)
    U, meta = _read_host(src, None, lattice, group, verify, True)
    prec = "double" if fmt == "openqcd" else meta.precision
    endian = meta.endianness if fmt == "nersc" and meta.endianness in ("big", "little") else None
    extra: Any = None
    if fmt == "hdf5":
        extra = {"source": os.fspath(src), "source_format": meta.format, "source_header": meta.header}
    projected = None
    W = U
    if prec == "double" and meta.precision == "single" and np.iscomplexobj(U) and U.size:
        from latticekit.groups import group_from_name

        W = group_from_name(meta.group).normalize(U.astype(np.complex128), nd=len(meta.lattice))
        projected = (f"projected:  single-precision links promoted to double and projected onto {meta.group} "
                     f"({fmt} holds double precision only); largest change of an entry "
                     f"{float(np.max(np.abs(W - U))):.3g}")
    try:
        save(dst, W, meta.group, format=fmt, precision=prec, endian=endian, meta=extra)
    except ValueError as exc:  # the target format cannot hold this field; save refuses before writing
        raise IOFormatError(re.sub(r"format='(\w+)'", r"--to \1", str(exc)), dst, f"conversion to {fmt}") from exc
    V, meta2 = _read_host(dst, fmt, None, None, True, True)
    if V.shape != W.shape:
        raise IOFormatError(f"read back shape {V.shape}, expected {W.shape}", dst, "conversion read-back")
    diff = float(np.max(np.abs(V.astype(np.complex128) - W.astype(np.complex128)))) if W.size else 0.0
    exact = diff == 0.0
    tol = 1e-6 if "single" in (prec, meta.precision) else 0.0
    if diff > tol:
        raise IOFormatError(f"read back differs by {diff:.3e} (> {tol})", dst, "conversion read-back")
    return "\n".join([
        f"source:     {os.fspath(src)} ({meta.format}, {meta.group}, lattice {meta.lattice}, {meta.precision})",
        *([projected] if projected else []),
        f"written:    {os.fspath(dst)} ({meta2.format}, {meta2.group}, lattice {meta2.lattice}, {meta2.precision}"
        f", {meta2.endianness}-endian)",
        f"read back: {'identical' if exact else 'equal within float tolerance'} link by link (max |dU| = {diff:.3g})",
    ])
