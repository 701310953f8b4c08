"""The scale job: ``latticekit scale FILE [FILE ...] --out DIR`` sets the scale of configuration files written by
other codes (NERSC, ILDG/LIME, openQCD, latticekit HDF5) by the gradient flow.

The files, in the order given, are one Monte Carlo chain of one ensemble (same lattice and group; checked for
every file before any flow). An HDF5 ensemble file (``latticekit run`` writes one) contributes every configuration,
and its chains (``info["chain"]`` of each configuration) are further chains, taken as replica by the Gamma
method.
Each configuration is read and verified (checksums, header values, unitarity), and measured:

* ``plaquette`` (``Re tr P / N``, averaged), and in 4D the Polyakov loop in direction 0 (``polyakov_re``,
  ``polyakov_abs`` of its spatial average);
* with ``flow_t > 0``: the Wilson flow (RK3, steps of at most ``eps``) to ``flow_t``, ``t^2 E`` (clover) at every
  step, ``t2E_at_t`` and the topological charge ``Q_at_t`` at ``flow_t`` (4D: clover; 2D U(1): geometric).
  A flow whose smoothing radius ``sqrt(8 flow_t)`` exceeds half the smallest extent feels the box: the summary
  carries a warning then.

Per configuration, ``DIR/files/<k>.json`` is written atomically as soon as it is measured, with the file's
sha256, the configuration's index in it and the flow settings; a rerun (after a kill, or with more files) measures
only the configurations without a matching record. ``DIR/scale.json`` holds the ensemble: the Gamma-method mean
and error of every per-configuration value (the configurations as a
chain; below :data:`MIN_WINDOWED` files the autocorrelation cannot be resolved and the errors are naive) and
``t0/a^2``, ``w0/a`` from :func:`latticekit.analysis.flow_scale` at ``reference`` (0.3: SU(3)). A scale the flow
does not reach is reported with the reason instead of a value.

Examples
--------
>>> import os, tempfile
>>> import latticekit as lk
>>> from latticekit.io import save
>>> d = tempfile.mkdtemp(); rng = lk.backends.rng(1)
>>> files = [os.path.join(d, f"c{k}.lime") for k in range(3)]
>>> for f in files:
...     save(f, lk.gauge.random_gauge_field(lk.SU(2), lk.Lattice((4, 4, 4, 4)), rng), "SU2", format="ildg")
>>> res = scale_job(files, os.path.join(d, "out"), flow_t=0.1, echo=False)
>>> res["n_configurations"], sorted(res["observables"])
(3, ['Q_at_t', 'plaquette', 'polyakov_abs', 'polyakov_re', 't2E_at_t'])
>>> "never reaches" in res["scales"]["t0"]["error_message"]      # a random field flowed to t = 0.1 only
True
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from latticekit.utils import file_sha256, remove_stale_temporaries
from latticekit.utils.schema import ConfigError

from .devices import resolve_backend
from .folders import SCALE_FILES, SCALE_SUMMARY, out_folder, read_json, refuse_other_job, write_json
from .killpoints import kill_point

__all__ = ["MIN_WINDOWED", "scale_job"]

#: fewest configurations per chain for the Gamma method's automatic window; with fewer, the errors assume
#: independent configurations
MIN_WINDOWED = 20


def _check_options(paths: Sequence[Any], flow_t: Any, eps: Any, reference: Any) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)) or not paths:
        raise ConfigError(f"files: expected one or more configuration files, got {paths!r}")
    files = [Path(p) for p in paths]
    for f in files:
        if f.is_dir():
            raise ConfigError(f"files: {str(f)!r} is a folder; `latticekit scale` takes configuration files (for the "
                              "ensemble of a `latticekit run`, give its ensemble.h5)")
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file (`latticekit scale` takes configuration files)")
    if len({f.resolve() for f in files}) != len(files):
        raise ConfigError("files: a file is given twice; each configuration counts once in the chain")
    for name, v, lo in (("flow_t", flow_t, 0.0), ("eps", eps, None), ("reference", reference, None)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (
                v < 0 if lo is not None else v <= 0):
            raise ConfigError(f"{name}={v!r}: expected a finite number {'>= 0' if lo is not None else '> 0'}")
    if eps > 0.1:
        raise ConfigError(f"eps={eps!r}: the RK3 flow step should be at most 0.1 (0.01-0.02 is usual)")
    return files


def _entries(files: list[Path], verify: bool = True) -> list[dict[str, Any]]:
    """One entry per configuration: a file, or each configuration of an HDF5 ensemble (index, chain); all read
    and verified here. Plain files form the chain "files" in the order given."""
    import latticekit as lk
    from latticekit.io import Ensemble

    out = []
    for f in files:
        _, meta = lk.io.load(f, verify=verify)
        n = int((meta.extra or {}).get("n_committed", 1)) if meta.format == "hdf5" else 1
        base = {"file": str(f), "lattice": meta.lattice, "group": meta.group, "format": meta.format}
        if n <= 1:
            out.append({**base, "index": None, "replica": "files"})
            continue
        with Ensemble.open(f) as ens:
            for i in range(n):
                lk.io.load(f, index=i, verify=verify)    # verified like the others (checksums of each)
                out.append({**base, "index": i, "replica": f"{f}#chain{ens.info(i).get('chain', 0)}"})
    return out


def _measure(U: Any, group: Any, lattice: Any, flow_t: float, eps: float) -> dict[str, Any]:
    from latticekit import backends
    from latticekit.observables import (average_plaquette, average_polyakov_loop, energy_density_clover,
                                        topological_charge_clover, topological_charge_u1_2d, wilson_flow)

    out: dict[str, Any] = {"plaquette": float(average_plaquette(U, group, lattice))}
    if lattice.nd == 4:
        P = complex(average_polyakov_loop(U, group, lattice))
        out.update(polyakov_re=P.real, polyakov_abs=abs(P))
    if flow_t > 0:
        V, h = wilson_flow(U, group, lattice, flow_t, eps=eps,
                           measure=lambda W, t: t * t * energy_density_clover(W, group, lattice))
        out["flow_t"] = backends.to_numpy(h["t"]).tolist()
        out["t2E"] = backends.to_numpy(h["values"]).reshape(-1).tolist()
        out["t2E_at_t"] = out["t2E"][-1]
        if lattice.nd == 4:
            out["Q_at_t"] = float(topological_charge_clover(V, group, lattice))
        elif lattice.nd == 2 and group.N == 1:
            out["Q_at_t"] = float(topological_charge_u1_2d(V, lattice))
    return out


def scale_job(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, flow_t: float = 0.0,
              eps: float = 0.02, reference: float = 0.3, backend: str | None = None, device: Any = None,
              echo: bool = True, verify: bool = True) -> dict[str, Any]:
    """Measure configuration files and set the scale by the gradient flow; returns ``DIR/scale.json``.

    Parameters
    ----------
    paths : sequence of path
        The configuration files, in Monte Carlo order.
    out : path
        Output folder (created; a folder of `latticekit run` or `train` is refused).
    flow_t : float
        Flow time ``t/a^2`` to flow each configuration to (0: no flow). ``t0`` and ``w0`` need the ensemble's
        ``t^2 E`` to pass ``reference`` before ``flow_t``.
    eps : float
        Largest RK3 step (every step is measured; the interpolation error of the scales is ``O(eps^2)``).
    reference : float
        The defining value of ``t0`` and ``w0`` (0.3 for SU(3)).
    backend, device
        Where the flows run.
    echo : bool
        Print the table.
    verify : bool
        Verify every file (checksums, header values, unitarity); ``False`` (``--no-verify``) reads them without
        these checks, e.g. openQCD files whose header plaquette has another normalisation.

    Records in ``DIR/files`` are matched by position, file, index, sha256 and flow settings: a record of another
    file or setting is measured again and replaced, one beyond the current inputs is ignored, and ``scale.json``
    holds the current inputs only. Input refused before any measurement leaves no new ``out`` folder behind.
    """
    import latticekit as lk
    from latticekit.analysis import flow_scale, flow_scale_of_curve, gamma_method

    if verify not in (True, False):
        raise ConfigError(f"verify={verify!r}: expected True or False")
    files = _check_options(paths, flow_t, eps, reference)
    created = not os.path.lexists(out)
    outdir = out_folder(out)
    try:
        refuse_other_job(outdir, "scale")
        backend, device = resolve_backend(backend, device)
        # every file is read and verified, and must hold the lattice and group of the first, before any flow; an
        # HDF5 ensemble contributes all its configurations, its chains (`info["chain"]`) as replica
        entries = _entries(files, verify)
        first = entries[0]
        for e in entries:
            if (e["lattice"], e["group"]) != (first["lattice"], first["group"]):
                raise ConfigError(f"{e['file']}: lattice {e['lattice']}, {e['group']}; the first file "
                                  f"{first['file']} holds {first['lattice']}, {first['group']}: the files must be one "
                                  f"ensemble")
    except BaseException:
        if created:   # refused input: leave no new, empty output folder behind
            try:
                outdir.rmdir()
            except OSError:
                pass
        raise
    lattice, group = lk.Lattice(first["lattice"]), lk.groups.group_from_name(first["group"])
    folder = outdir / SCALE_FILES
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(outdir, [SCALE_SUMMARY])
    settings = {"flow_t": float(flow_t), "eps": float(eps)}
    shas: dict[str, str] = {}
    records = []
    for k, e in enumerate(entries):
        rec_path = folder / f"{k:05d}.json"
        remove_stale_temporaries(folder, [rec_path.name])
        if e["file"] not in shas:          # once per file (an HDF5 ensemble holds many configurations)
            shas[e["file"]] = file_sha256(e["file"])
        sha = shas[e["file"]]
        ident = {"file": e["file"], "index": e["index"], "sha256": sha, "settings": settings}
        if rec_path.exists():
            rec = read_json(rec_path, "a per-file record of `latticekit scale`")
            if all(rec.get(key) == v for key, v in ident.items()):
                records.append(rec)
                continue
        kw = {} if e["index"] is None else {"index": e["index"]}
        U, _ = lk.io.load(e["file"], backend=backend, device=device, verify=verify, **kw)
        rec = {**ident, "replica": e["replica"], "format": e["format"],
               "values": _measure(U, group, lattice, float(flow_t), float(eps))}
        write_json(rec_path, rec)
        kill_point("scale:file")
        records.append(rec)
        if echo:
            where = e["file"] if e["index"] is None else f"{e['file']}[{e['index']}]"
            print(f"{k + 1}/{len(entries)} {where}: plaquette {rec['values']['plaquette']:.6f}", flush=True)
    names = [n for n in records[0]["values"] if n not in ("flow_t", "t2E")]
    replicas: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        replicas.setdefault(r["replica"], []).append(r)
    chains = list(replicas.values())
    # the Gamma method's window needs chains of some length; with a chain shorter than MIN_WINDOWED the
    # configurations are taken as independent (S = 0: the naive error), and the summary says which
    S = 1.5 if min(len(c) for c in chains) >= MIN_WINDOWED else 0.0
    if min(len(c) for c in chains) < 2:     # a chain of one configuration: all taken as one chain of independent
        chains, S = [records], 0.0

    def per_chain(values: Any) -> Any:      # one array per chain, Monte Carlo time last; a list is read as replica
        arrs = [lk.backends.asarray([values(r) for r in c], backend="numpy") for c in chains]
        return arrs if len(arrs) > 1 else arrs[0]

    obs: dict[str, Any] = {}
    for n in names:
        if len(records) > 1:
            g = gamma_method(per_chain(lambda r: r["values"][n]), S=S)
            obs[n] = {"value": float(g.value), "error": float(g.error), "tau_int": float(g.tau_int),
                      "n": len(records)}
        else:
            obs[n] = {"value": float(records[0]["values"][n]), "error": None, "tau_int": None, "n": 1}
    scales: dict[str, Any] = {}
    if flow_t > 0:
        t = records[0]["values"]["flow_t"]
        for kind in ("t0", "w0"):
            try:
                if len(records) > 1:
                    # (n_t, N_r) per chain: t^2 E of each configuration at every flow time
                    curves = per_chain(lambda r: r["values"]["t2E"])
                    curves = [c.T for c in curves] if isinstance(curves, list) else curves.T
                    s = flow_scale(t, curves, kind, reference=reference, S=S)
                    scales[kind] = {"value": s.value, "error": s.error, "tau_int": s.tau_int}
                else:
                    scales[kind] = {"value": flow_scale_of_curve(t, records[0]["values"]["t2E"], kind,
                                                                 reference=reference), "error": None}
            except ValueError as exc:      # the flow does not reach the reference: say so, keep the rest
                scales[kind] = {"value": None, "error": None, "error_message": str(exc)}
    warnings = []
    radius, half = math.sqrt(8.0 * flow_t), min(lattice.shape) / 2
    if radius > half:
        warnings.append(f"the smoothing radius sqrt(8 t) = {radius:.3g} at t = {flow_t:g} exceeds half the smallest "
                        f"extent ({half:g}): the flowed quantities at large t feel the box")
    how = (f"Gamma method, the configurations in the order given as {len(chains)} chain(s)" if S else
           f"naive (a chain shorter than {MIN_WINDOWED} configurations: taken as independent)")
    result = {"files": list(dict.fromkeys(r["file"] for r in records)),    # in the order given (the chain's)
              "n_configurations": len(records), "n_chains": len(chains),
              "lattice": list(lattice.shape), "group": first["group"], "settings": settings,
              "reference": float(reference),
              "observables": obs, "scales": scales, "warnings": warnings,
              "definitions": {"plaquette": "Re tr P / N averaged over sites and planes",
                              "t2E": "t^2 E, clover E = -sum_{mu<nu} tr F^2 (site average), after Wilson flow",
                              "t0": "t^2 <E(t)> = reference at t = t0 (t0/a^2; Luscher 2010)",
                              "w0": "t d/dt [t^2 <E(t)>] = reference at t = w0^2 (w0/a; BMW 2012)",
                              "errors": how}}
    write_json(outdir / SCALE_SUMMARY, result)
    if echo:
        print(_table(result))
        for w in warnings:
            print(f"warning: {w}")
        print(f"results written to {outdir / SCALE_SUMMARY}")
    return result


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.6g}"


def _table(res: dict[str, Any]) -> str:
    n, c, s = res["n_configurations"], res["n_chains"], res["settings"]
    head = (f"{n} configuration{'s' if n != 1 else ''} ({c} chain{'s' if c != 1 else ''}), {res['group']} on "
            f"{'x'.join(map(str, res['lattice']))}, flow to t = {s['flow_t']:g} (eps {s['eps']:g}), "
            f"reference {res['reference']:g}")
    lines = [head, f"{'quantity':<14}{'value':>14}{'error':>12}{'tau_int':>9}"]
    for name, o in [*res["observables"].items(), *res["scales"].items()]:
        if o.get("value") is None:
            lines.append(f"{name:<14}{'-':>14}  {o.get('error_message', '')}")
        else:
            lines.append(f"{name:<14}{_fmt(o['value']):>14}{_fmt(o['error']):>12}{_fmt(o.get('tau_int')):>9}")
    return "\n".join(lines)
