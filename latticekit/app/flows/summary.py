"""What the flow jobs show: flow ESS and flow-MCMC observables next to exact values or a reference run.

:func:`flow_summary` puts the training ESS, the flow-MCMC acceptance and every observable the theory
lists (:meth:`~latticekit.theories.Theory.summary_observables`) beside its reference: a run of the same
theory (a ``latticekit run`` ``results.json``, the result of
:func:`~latticekit.app.flows.reference.reference_run`, or a plain mapping ``name -> {value, error}``),
else the theory's exact value. A run of another lattice or other couplings is refused
(:func:`load_reference`).

Examples
--------
Every ESS is the Kish ESS/N of N independent flow draws (docs/flows.md, "ESS"), quoted with its N:
the training ESS over the final evaluation's ``train.eval_batch_size`` samples, the proposal ESS over
the chain's N proposals. A reference given as a bare number has no error: the deviation is then in
units of the flow error alone, and the row says so (``deviation_uses``).

>>> s = {"theory": "t", "lattice": [4, 4], "flow": {"ess": 0.5, "ess_n": 1024, "acceptance": 0.6,
...      "proposal_ess": 0.48, "proposal_ess_n": 16384, "mcmc_steps": 16384, "train_steps": 5, "var_log_w": 0.1},
...      "rows": []}
>>> print(format_flow_summary(s))
flow: t on 4x4, 5 training steps, ESS 0.5 (Kish, N=1024), var log w 0.1
flow MCMC: 16384 steps, acceptance 0.6, proposal ESS 0.48 (Kish, N=16384)
observable  flow MCMC  tau_int  reweighted  reference  kind  dev/sigma
----------  ---------  -------  ----------  ---------  ----  ---------
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

from latticekit.utils.schema import ConfigError

from ..config import FlowConfig, RunConfig
from ..folders import CONFIG, SAMPLE_SUMMARY, TRAIN_SUMMARY, read_json

__all__ = ["flow_summary", "format_flow_summary", "load_reference"]


def load_reference(cfg: FlowConfig, ref: Any) -> tuple[dict[str, dict[str, Any]], str]:
    """Reference values ``name -> {value, error}`` and their kind (the run's sampler, e.g. ``"heatbath"``,
    ``"flow"`` for the sample.json of another flow, or ``"hmc"`` when not recorded) from a results.json path, a
    run job's result, a flow's sample.json or a plain mapping.

    A value given without an error (a bare number, or a mapping without ``error``, or with a null one)
    gets ``error = None``: it is not made into an exact value.

    A run or flow whose configuration names another lattice or other ``[action]`` values than ``cfg`` is refused
    (:class:`ConfigError`, listing what differs).
    """
    if ref is None:
        return {}, "hmc"
    where = "the reference run"
    if isinstance(ref, (str, os.PathLike)):
        where = os.fspath(ref)
        ref = read_json(ref, "the results.json of a `latticekit run`")
    if not isinstance(ref, Mapping):
        raise ConfigError(f"reference {where}: expected a results.json path or a mapping name -> {{value, error}}, "
                          f"got {type(ref).__name__}")
    kind = "hmc"
    run, flow = ref.get("config"), ref.get("flow_config")
    if isinstance(run, Mapping):
        _check_same_theory(cfg, run, where)
        algo = run.get("sampler", {}).get("algorithm") if isinstance(run.get("sampler"), Mapping) else None
        kind = algo if isinstance(algo, str) and algo else "hmc"
    elif isinstance(flow, Mapping):
        # the sample.json of another flow: its flow_config names its theory (it passed as a plain mapping,
        # labelled "hmc", whatever its lattice and couplings; user probe)
        _check_same_theory(cfg, flow, where)
        kind = "flow"
    values = ref["observables"] if "observables" in ref else ref
    if not isinstance(values, Mapping):
        raise ConfigError(f"reference {where}: expected a mapping name -> {{value, error}}, got {values!r}")
    out: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        if isinstance(v, Mapping) and _number(v.get("value")):
            err = v.get("error")
            out[k] = {"value": float(v["value"]), "error": float(err) if _number(err) else None}
        elif _number(v):
            out[k] = {"value": float(v), "error": None}
    return out, kind


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_same_theory(cfg: FlowConfig, run: Mapping[str, Any], where: str) -> None:
    mine = cfg.to_dict()
    problems = []
    shape = run.get("lattice", {}).get("shape") if isinstance(run.get("lattice"), Mapping) else None
    if list(shape or []) != list(mine["lattice"]["shape"]):
        problems.append(f"lattice {shape} vs {mine['lattice']['shape']}")
    else:
        try:
            theirs = RunConfig.from_stored({"lattice": run["lattice"], "action": run.get("action", {})}).to_dict()["action"]
        except ConfigError as exc:
            problems.append(f"its [action] is not valid here ({exc})")
        else:
            algorithmic = set(type(cfg.theory).algorithm_keys)  # e.g. Hasenbusch shifts: the same theory
            for k in sorted((set(theirs) | set(mine["action"])) - algorithmic):
                if theirs.get(k) != mine["action"].get(k):
                    problems.append(f"action.{k} {theirs.get(k)!r} vs {mine['action'].get(k)!r}")
    if problems:
        raise ConfigError(f"{where} is a run of another theory than the flow ({'; '.join(problems)}); "
                          "compare with a run of the same lattice and couplings")


def flow_summary(out: str | os.PathLike[str], *, sample: Mapping[str, Any] | None = None,
                 hmc: "Mapping[str, Any] | str | os.PathLike[str] | None" = None) -> dict[str, Any]:
    """Flow ESS and flow-MCMC observables next to exact or reference-run values.

    Parameters
    ----------
    out : path
        A ``train_job`` output folder (``train.json``; ``sample.json`` unless ``sample`` is given).
    sample : mapping, optional
        The result of :func:`~latticekit.app.flows.sample.sample_job` (default: read ``out/sample.json``).
    hmc : mapping or path, optional
        Reference values: the ``results.json`` of a ``latticekit run`` of the same theory (path or
        content, e.g. :func:`~latticekit.app.flows.reference.reference_run`'s result), or a mapping
        ``name -> {value, error}``. Exact values of the theory are used where no reference value is
        given; gauge theories in ``Nd >= 3`` have none, and ``note`` says so.

    Returns
    -------
    dict
        ``theory``, ``lattice``, ``flow`` (training ESS with its N ``ess_n``, var log w, steps, flow-MCMC
        acceptance, proposal ESS with its N ``proposal_ess_n``), ``rows`` (one per observable: flow
        value/error/tau_int (None where the Gamma method has no estimate), ``reliable`` and ``problem`` as in
        ``sample.json``, the reweighting estimate from the same proposals and its jackknife error when the
        sample summary has it, reference value, its error (None for exact values and for references given
        without one) and kind ``"exact"``, the run's sampler (``"hmc"``, ``"heatbath"``) or None, deviation in
        sigma and ``deviation_uses``: ``"flow error"`` or ``"flow and reference errors"``),
        ``note`` (for gauge theories without exact values or reference: how to get one; else None) and
        ``text`` (a printable table, :func:`format_flow_summary`).
    """
    folder = Path(out)
    if sample is None:
        sp = folder / SAMPLE_SUMMARY
        if not sp.exists():
            raise FileNotFoundError(f"{sp} does not exist: run sample_job (`latticekit sample {folder}`) first")
        sample = read_json(sp, "the summary of `latticekit sample`")
    train = read_json(folder / TRAIN_SUMMARY, "a train summary") if (folder / TRAIN_SUMMARY).exists() else {}
    conf = train.get("config") or (read_json(folder / CONFIG, "a flow configuration")
                                   if (folder / CONFIG).exists() else sample.get("flow_config"))
    if conf is None:
        raise FileNotFoundError(f"{folder}: neither {TRAIN_SUMMARY} nor {CONFIG} found, and the sample summary "
                                "names no flow_config (not a train_job folder)")
    cfg = FlowConfig.from_stored(conf)
    if sample.get("sampled_action"):  # training learned [action] values (UV-matching): the theory sampled
        d = cfg.to_dict()
        d["action"].update(sample["sampled_action"])
        cfg = FlowConfig.from_dict(d)
    theory = cfg.theory
    exact = theory.exact()
    ref, ref_kind = load_reference(cfg, hmc)
    rows = []
    for name in theory.summary_observables():
        f = sample["observables"].get(name)
        if f is None:
            continue
        row: dict[str, Any] = {"observable": name, "flow": f["value"], "flow_error": f.get("error"),
                               "tau_int": f.get("tau_int"), "reliable": f.get("reliable", True),
                               "reference": None, "reference_error": None, "reference_kind": None,
                               "deviation_sigma": None, "deviation_uses": None}
        if "problem" in f:
            row["problem"] = f["problem"]
        if "reweighted" in f:
            row.update(reweighted=f["reweighted"]["value"], reweighted_error=f["reweighted"]["error"])
        if name in ref:
            row.update(reference=ref[name]["value"], reference_error=ref[name]["error"], reference_kind=ref_kind)
        elif name in exact:
            row.update(reference=exact[name], reference_kind="exact")
        flow_err = row["flow_error"]
        if row["reference"] is not None and flow_err is not None:
            # an exact value, or a reference given without an error, has no error to combine with the flow's:
            # the deviation is then in units of the flow error alone, and the row says so
            ref_err = row["reference_error"]
            err = flow_err if ref_err is None else math.hypot(flow_err, ref_err)
            if err > 0:
                row["deviation_sigma"] = (row["flow"] - row["reference"]) / err
                row["deviation_uses"] = "flow error" if ref_err is None else "flow and reference errors"
        rows.append(row)
    note = None
    if theory.is_gauge and not exact and any(r["reference"] is None for r in rows):
        note = (f"no exact value: latticekit.exact has the {theory.group.name} Wilson theory in 2D only, this is "
                f"{cfg.nd}D.\nFor a reference, run `latticekit run` on the same [lattice] and [action] (heatbath or "
                "HMC) and pass `--compare RUN/results.json` to `latticekit sample`.")
    summary = {
        "theory": theory.describe(), "lattice": list(cfg.lattice.shape), "note": note,
        # no train.json: the training was killed (or is running); the flow sampled is its last checkpoint
        "unfinished_at_step": sample.get("checkpoint_step") if not train else None,
        "flow": {"train_steps": train.get("steps", sample.get("checkpoint_step")), "train_wall_s": train.get("wall_s"),
                 "ess": train.get("ess"),
                 # the final evaluation drew train.eval_batch_size samples (train.json before ess_n: the same)
                 "ess_n": train.get("ess_n", cfg.train.eval_batch_size) if train.get("ess") is not None else None,
                 "var_log_w": train.get("var_log_w"), "kl": train.get("kl"), "kl_log_z": train.get("kl_log_z"),
                 "mcmc_steps": sample.get("n"),
                 "acceptance": sample.get("acceptance"), "proposal_ess": sample.get("proposal_ess"),
                 # every proposal of the chain is one independent flow draw
                 "proposal_ess_n": sample.get("proposal_ess_n", sample.get("n")),
                 # pseudofermion flows (sample.json of the pseudo-marginal chain)
                 **{k: sample[k] for k in ("n_pf", "joint_ess", "marginal_ess", "pseudo_marginal_ess",
                                           "exact_marginal_chain") if k in sample}},
        "rows": rows,
    }
    summary["text"] = format_flow_summary(summary)
    return summary


def _ess(value: Any, n: Any) -> str:
    """An ESS with its definition and N (docs/flows.md, "ESS")."""
    if value is None:
        return "-"
    return f"{value:.4g} (Kish, N={n})" if n is not None else f"{value:.4g} (Kish, N not recorded)"


def _pm(value: float, error: float) -> str:
    return f"{value:.5g} +- {error:.2g}"


def format_flow_summary(summary: Mapping[str, Any]) -> str:
    """A printable table of :func:`flow_summary`'s result."""
    f = summary["flow"]

    def fmt(v: Any, spec: str = ".4g") -> str:
        return "-" if v is None else format(v, spec)

    head = (f"flow: {summary['theory']} on {'x'.join(map(str, summary['lattice']))}, {fmt(f.get('train_steps'), 'd')} "
            f"training steps, ESS {_ess(f.get('ess'), f.get('ess_n'))}, var log w {fmt(f.get('var_log_w'))}"
            + (f", KL {fmt(f['kl'])} ({f.get('kl_log_z')} log Z)" if f.get("kl") is not None else ""))
    if summary.get("unfinished_at_step") is not None:
        head += (f"\nnote: the training did not finish (no train.json): the flow sampled is its checkpoint of step "
                 f"{summary['unfinished_at_step']}")
    head2 = (f"flow MCMC: {fmt(f.get('mcmc_steps'), 'd')} steps, acceptance {fmt(f.get('acceptance'))}, "
             f"proposal ESS {_ess(f.get('proposal_ess'), f.get('proposal_ess_n'))}")
    if "n_pf" in f:  # pseudofermion flows: the ESS of eqs. (15), (44) of arXiv:2207.08945 on the same proposals
        head2 += (f"\npseudofermions: N_pf = {f['n_pf']} per gauge field and monomial; joint ESS "
                  f"{_ess(f.get('joint_ess'), f.get('proposal_ess_n'))}, marginal ESS (exact det) "
                  f"{_ess(f.get('marginal_ess'), f.get('proposal_ess_n'))}")
    em = f.get("exact_marginal_chain")
    if em:  # the same proposals with exact-determinant weights (small lattices)
        parts = [f"{k} {_pm(v['value'], v['error'])} "
                 f"(reweighted {_pm(v['reweighted']['value'], v['reweighted']['error'])})"
                 for k, v in em["observables"].items()]
        head2 += (f"\nexact-determinant chain on the same proposals: acceptance {fmt(em['acceptance'])}; "
                  + "; ".join(parts))
    rows = [("observable", "flow MCMC", "tau_int", "reweighted", "reference", "kind", "dev/sigma")]
    note = summary.get("note")
    notes = []
    for r in summary["rows"]:
        flag = "" if r.get("reliable", True) else " !"
        ref = ("none (no exact value)" if note else "-") if r["reference"] is None else (
            f"{r['reference']:.6g}" + (f" +- {r['reference_error']:.2g}" if r.get("reference_error") is not None
                                       else "" if r["reference_kind"] == "exact" else " (no error given)"))
        rw = "-" if r.get("reweighted") is None else f"{r['reweighted']:.6g} +- {r['reweighted_error']:.2g}"
        flow = f"{r['flow']:.6g}" + ("" if r.get("flow_error") is None else f" +- {r['flow_error']:.2g}") + flag
        dev = "-" if r["deviation_sigma"] is None else f"{r['deviation_sigma']:+.2f}" + (
            " *" if r["reference_kind"] != "exact" and r.get("deviation_uses") == "flow error" else "") + flag
        rows.append((r["observable"], flow, fmt(r.get("tau_int"), ".2f") + flag, rw, ref, r["reference_kind"] or "-",
                     dev))
        if r.get("problem"):
            notes.append(f"! {r['observable']}: {r['problem']}")
    if any(r["reference_kind"] != "exact" and r.get("deviation_uses") == "flow error" for r in summary["rows"]):
        notes.append("* the reference was given without an error: deviation in units of the flow error alone")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([head, head2, *lines, *notes, *([note] if note else [])])
