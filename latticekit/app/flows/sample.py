"""The sample job: ``latticekit sample DIR [--n N] [--compare RUN/results.json]``.

:func:`sample_job` loads a checkpoint written by the train job (its configuration travels with it,
:func:`load_trained`) and runs flow MCMC (independence Metropolis,
:func:`~latticekit.flows.independence_metropolis`) measuring the theory's observables
(:meth:`~latticekit.theories.Theory.summary_observables`, with the inputs of the derived ones). Gauge
fields go to an HDF5 ensemble (:class:`latticekit.io.Ensemble`), scalar fields to an ``.npz``
(:func:`latticekit.io.save_state`); ``sample.json`` holds acceptance, the proposal ESS (the Kish ESS/N
of the N proposals, with ``proposal_ess_n`` = N) and every observable with its Gamma-method value,
error and ``tau_int`` (:func:`~latticekit.app.analysis.gamma_entry`: None where not estimable,
``reliable``/``problem`` where the window failed, or where the chain's longest run of rejections exceeds
1/:data:`MIN_RUN_MULTIPLE` of it), the exact value where the theory has one, and the
reweighting estimate from the same proposals; ``sample.png`` shows the histogram of every observable on
the chain with the flow-MCMC estimate and the reference (exact value, or the ``--compare`` run's value
and error).

A killed job resumes: the proposals and their weights, drawn in batches (the expensive part), are stored batch by
batch with the random state in ``.<chain file>.progress/`` beside the chain file
(:mod:`latticekit.flows.batch_progress`); the same command loads them and continues with the same numbers, and the
folder is removed once the outputs are written. A different checkpoint (by content), seed, ``n``, batch size,
``n_pf``, device or model/action configuration starts over. The super-resolving samplers store their prior's HMC
chains with every batch (:attr:`~latticekit.app.flows.models.FlowFamily.sampler_resumes`).

Examples
--------
>>> import tempfile
>>> from latticekit.app.flows.train import train_job
>>> cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.1},
...        "model": {"n_layers": 2, "hidden": [4]}, "train": {"steps": 3, "batch_size": 8}}
>>> out = tempfile.mkdtemp()
>>> _ = train_job(cfg, out=out, progress=False)
>>> s = sample_job(out, n=64, seed=1)
>>> sorted(s["observables"])[:2], 0 <= s["acceptance"] <= 1, s["plot"]
(['abs_magnetization', 'action_density'], True, 'sample.png')
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from latticekit import backends
from latticekit.analysis import reweight
from latticekit.flows.batch_progress import BatchProgress
from latticekit.flows.checkpoint import load_checkpoint
from latticekit.io.errors import IOFormatError
from latticekit.utils import atomic_path, file_sha256, remove_stale_temporaries
from latticekit.utils.schema import ConfigError

from ..analysis import gamma_entry, quiet_gamma, reweighted_derived
from ..config import FlowConfig
from ..folders import CHECKPOINT, SAMPLE_PLOT, SAMPLE_SUMMARY, write_json
from ..killpoints import kill_point
from ..sections import MAX_SEED
from .devices import torch_device
from .models import build_flow
from .summary import load_reference

__all__ = ["MIN_RUN_MULTIPLE", "STORE_CHUNK_BYTES", "load_trained", "resolve_checkpoint", "sample_job"]

#: the chain must be at least this many times longer than its longest run of rejections for the Gamma-method errors
#: of its observables to count as reliable (otherwise they are marked ``reliable: false`` with the reason)
MIN_RUN_MULTIPLE = 20

#: configurations of the chain's HDF5 file are written (and committed) in chunks of about this many bytes
STORE_CHUNK_BYTES = 1 << 26


class _JobProgress(BatchProgress):
    """:class:`BatchProgress` with the kill point ``sample:batch`` after each stored batch (resumption tests)."""

    def save(self, k: int, outputs: Any, rng: Any, extra: Any = None) -> None:
        super().save(k, outputs, rng, extra)
        kill_point("sample:batch")


def resolve_checkpoint(source: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(checkpoint file, run folder)`` of a train-job folder or checkpoint file."""
    p = Path(source)
    if p.is_dir():
        ck = p / CHECKPOINT
        if not ck.exists():
            raise FileNotFoundError(f"{ck} does not exist: `latticekit sample` needs the folder of a "
                                    "`latticekit train` run (or a checkpoint file)")
        return ck, p
    if p.is_file():
        return p, p.parent
    raise FileNotFoundError(f"out_or_checkpoint={str(p)!r}: no such folder or checkpoint file")


def load_trained(out_or_checkpoint: str | os.PathLike[str], *, device: Any = None,
                 dtype: torch.dtype = torch.float64) -> tuple[Any, Any, FlowConfig, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (its configuration travels with it) and load it.

    Returns ``(model, action, config, payload)``; the model is in eval mode with ``dtype``.
    """
    ck, _folder = resolve_checkpoint(out_or_checkpoint)
    try:
        head = torch.load(ck, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise IOFormatError(f"not a readable latticekit checkpoint ({type(exc).__name__}: {exc})", ck) from None
    conf = head.get("config", {}).get("flow_config") if isinstance(head, dict) else None
    if not conf:
        raise IOFormatError("the checkpoint holds no flow-job configuration (it was not written by train_job)", ck)
    cfg = FlowConfig.from_stored(conf)
    model, action, _lat = build_flow(cfg)
    model = model.to(dtype=getattr(torch, cfg.train.dtype))
    payload = load_checkpoint(ck, model=model)
    model = model.to(dtype=dtype, device=device)
    model.eval()
    return model, action, cfg, payload


def _plain(v: Any) -> Any:
    import numbers

    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _write_ensemble(path: Path, cfg: FlowConfig, configs: torch.Tensor, idx: list[int], res: Any,
                    meta: dict[str, Any]) -> None:
    from latticekit.io import Ensemble

    theory = cfg.theory
    with atomic_path(path) as tmp:
        ens = Ensemble.create(tmp, lattice=tuple(cfg.lattice.shape), group=theory.group, action=theory.kind,
                              action_params=theory.ensemble_params(), sampler="flow_independence_metropolis",
                              sampler_params={k: meta[k] for k in ("checkpoint", "checkpoint_step", "n", "store_every")},
                              seeds=[meta["seed"]], metadata={"flow_config": meta["config"]}, overwrite=True)
        try:
            host = configs.detach().cpu().numpy()
            obs = {k: np.asarray(backends.to_numpy(v), dtype=np.float64) for k, v in res.observables.items()}
            acc, log_w = backends.to_numpy(res.accepted), backends.to_numpy(res.log_w)
            # one commit per chunk of about STORE_CHUNK_BYTES (one append per configuration took 6 ms each)
            per = max(1, STORE_CHUNK_BYTES // max(1, host[0].nbytes))
            for c in range(0, len(idx), per):
                part = np.asarray(idx[c:c + per])
                ens.extend(host[part], observables={k: v[part] for k, v in obs.items()},
                           infos=[{"step": int(i), "accepted": bool(acc[i]), "log_w": float(log_w[i])} for i in part])
                kill_point("sample:store")
        finally:
            ens.close()


def sample_job(out_or_checkpoint: str | os.PathLike[str], *, n: int | None = None,
               out_file: str | os.PathLike[str] | None = None, seed: int | None = None, batch: int | None = None,
               backend: str = "torch", device: Any = None, store_every: int = 1, progress: bool = False,
               reference: "Mapping[str, Any] | str | os.PathLike[str] | None" = None,
               n_pf: int | None = None) -> dict[str, Any]:
    """Flow MCMC (independence Metropolis) from a trained flow; writes the chain, a JSON summary and histograms.

    Parameters
    ----------
    out_or_checkpoint : path
        A ``train_job`` output folder or a checkpoint file written by it.
    n : int, optional
        Chain length (default ``sample.n`` of the configuration).
    out_file : path, optional
        Where to write the chain: gauge fields go to an HDF5 ensemble (default ``DIR/flow_ensemble.h5``),
        phi^4 fields to an ``.npz`` (default ``DIR/flow_samples.npz``, :func:`latticekit.io.save_state`).
        The JSON summary and the histograms go next to it (``DIR/sample.json`` and ``DIR/sample.png`` for
        the defaults, else ``<out_file>.json`` and ``<out_file>.png``). All are written atomically
        (temporary file, then rename); an existing file is replaced.
    seed : int, optional
        Seed of the proposals and accept/reject uniforms (default ``sample.seed``).
    batch : int, optional
        Proposals drawn per batch (default ``sample.batch``).
    backend, device
        ``backend`` must be ``"torch"``; ``device`` default CPU.
    store_every : int
        Store every this many chain elements.
    progress : bool
        Print a line when done.
    reference : path or mapping, optional
        A run of the same theory (``results.json`` path or content) drawn in the histograms instead of the
        exact values; checked before any work (:func:`~latticekit.app.flows.summary.load_reference`).
    n_pf : int, optional
        Pseudofermion draws per gauge field and monomial (``model.coupling = "pseudofermion"`` only; default
        ``model.n_pf``): the pseudo-marginal chain of eqs. (42-46) of arXiv:2207.08945.

    Returns
    -------
    dict
        ``acceptance`` (rate), ``acceptance_summary`` (rate and longest rejection run), ``proposal_ess``
        and its N ``proposal_ess_n`` (= ``n``), ``observables`` (Gamma-method value, error, tau_int,
        ``reliable``; exact values where the theory has them; ``reweighted``), ``n``, ``seed``, ``checkpoint_step``, paths, ``plot`` and wall time.
    """
    dev = torch_device(backend, device)
    model, action, cfg, payload = load_trained(out_or_checkpoint, device=dev)
    ck, folder = resolve_checkpoint(out_or_checkpoint)
    from .models import family

    fam = family(cfg.model.coupling)
    sampled: dict[str, Any] = {}
    if fam.sampled_action is not None:  # couplings learned in training (UV-matching): the theory sampled
        sampled = fam.sampled_action(model)
        conf = cfg.to_dict()
        conf["action"].update(sampled)
        cfg = FlowConfig.from_dict(conf)
    ref, ref_kind = load_reference(cfg, reference)
    n = cfg.sample.n if n is None else n
    seed = cfg.sample.seed if seed is None else seed
    batch = cfg.sample.batch if batch is None else batch
    for name, v, lo in (("n", n, 2), ("seed", seed, 0), ("batch", batch, 1), ("store_every", store_every, 1),
                        ("n_pf", 1 if n_pf is None else n_pf, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name}={v!r}: expected an integer >= {lo}")
    if seed > MAX_SEED:   # 2^64 ended in a traceback from the generator (user probe)
        raise ConfigError(f"seed={seed!r}: expected an integer <= 2^63 - 1 = {MAX_SEED}")
    if n_pf is not None and fam.sampler is None:
        raise ConfigError(f"n_pf={n_pf}: only pseudofermion flows (model.coupling = 'pseudofermion') draw "
                          f"pseudofermions; this run has model.coupling = {cfg.model.coupling!r}")
    theory = cfg.theory
    default_name = "flow_ensemble.h5" if theory.is_gauge else "flow_samples.npz"
    data_path = Path(out_file) if out_file is not None else folder / default_name
    summary_path = folder / SAMPLE_SUMMARY if out_file is None else Path(str(data_path) + ".json")
    plot_path = folder / SAMPLE_PLOT if out_file is None else Path(str(data_path) + ".png")
    if data_path.is_dir():
        raise IsADirectoryError(f"out_file: {str(data_path)!r} is a folder; expected the file to write the chain to")
    # the chain is an HDF5 ensemble (gauge fields) or an .npz archive (scalar fields): a name with the other
    # extension would hide what the file holds
    wrong = {".npz"} if theory.is_gauge else {".h5", ".hdf5"}
    if out_file is not None and data_path.suffix.lower() in wrong:
        kind = "an HDF5 ensemble (.h5)" if theory.is_gauge else "a NumPy .npz archive"
        raise ConfigError(f"out_file: {str(data_path)!r}: this theory's chain is written as {kind}; give a name "
                          f"with that extension")
    for p in (data_path, summary_path, plot_path):  # temporaries left by a killed earlier sample job
        remove_stale_temporaries(p.parent, [p.name])
    wanted = theory.summary_observables()
    der = {k: d for k, d in theory.derived().items() if k in wanted}
    needed = set(wanted) | {i for d in der.values() for i in d.inputs}
    primaries = [k for k in theory.observable_names() if k in needed]
    from latticekit.flows.sampling import independence_metropolis

    # the drawn batches are stored as they come (the expensive part), so a killed job resumes with the same numbers
    progress_root = data_path.parent / f".{data_path.name}.progress"
    conf = cfg.to_dict()
    ident = {"checkpoint_sha256": file_sha256(ck), "seed": seed, "n": n, "batch": batch, "n_pf": n_pf,
             "device": str(dev), "action": conf["action"], "model": conf["model"]}

    def batches_of(phase: str) -> BatchProgress:
        return _JobProgress(progress_root / phase, {**ident, "phase": phase})

    t0 = time.time()
    rng = backends.rng(seed, backend="torch", device=dev)
    with warnings.catch_warnings():
        # a failed Gamma window is reported in the entries (reliable, problem), not as a RuntimeWarning
        warnings.filterwarnings("ignore", message="gamma_method:", category=RuntimeWarning)
        extra: dict[str, Any] = {}
        if fam.sampler is not None:  # the family's own chain (pseudofermion flows: pseudo-marginal)
            opts: dict[str, Any] = {} if n_pf is None else {"n_pf": n_pf}
            if fam.sampler_resumes:
                opts["progress"] = batches_of
            res, extra = fam.sampler(model, theory, cfg.model.variant, n, rng,
                                     observables=theory.observables(primaries), batch_size=batch, **opts)
        else:
            res = independence_metropolis(model, action, n, rng, observables=theory.observables(primaries),
                                          batch_size=batch, keep_configs=True, progress=batches_of("proposals"))
    exact = theory.exact()
    observables = {k: gamma_entry(r, exact.get(k), always_exact=False) for k, r in res.analysis.items()}
    for k, entry in observables.items():
        # the same proposals, reweighted (<w O>_q / <w>_q; independent draws, so a plain jackknife)
        rw = reweight(res.proposal_observables[k], res.proposal_log_w)
        entry["reweighted"] = {"value": float(rw.value), "error": float(rw.error)}
    for k, d in der.items():
        stacked = np.stack([np.asarray(a, dtype=np.float64) for a in d.series(res.observables)])
        observables[k] = gamma_entry(quiet_gamma(stacked, d.func), exact.get(k), always_exact=False)
        value, error = reweighted_derived(d, res.proposal_observables, res.proposal_log_w)
        observables[k]["reweighted"] = {"value": value, "error": error}
    idx = list(range(0, n, store_every))
    configs = res.configs
    assert configs is not None
    data_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(ck), "checkpoint_step": int(payload["step"]), "seed": seed, "n": n,
            "store_every": store_every, "sampler": "flow independence Metropolis", "config": cfg.to_dict()}
    if theory.is_gauge:
        _write_ensemble(data_path, cfg, configs, idx, res, meta)
    else:
        from latticekit.io import save_state

        sel = torch.as_tensor(idx)
        save_state(data_path, {"phi": configs[sel].detach().cpu().numpy(),
                               "accepted": res.accepted[idx], "log_w": res.log_w[idx],
                               **{f"obs_{k}": v[idx] for k, v in res.observables.items()}}, meta)
    acc = res.acceptance
    run = int(np.max(acc.longest_rejection_run)) if acc.longest_rejection_run is not None else 0
    if run * MIN_RUN_MULTIPLE > n:
        # a chain stuck on one configuration for much of its length has too few independent stretches for the
        # Gamma method's window: its error was reported as reliable (7 acceptances in 1536 steps; user probe)
        why = (f"the chain stayed on one configuration for {run} of its {n} steps (more than 1/{MIN_RUN_MULTIPLE} of "
               "the chain): too few independent stretches for the error; train longer or draw more")
        for entry in observables.values():
            if entry.get("reliable", True):
                entry.update(reliable=False, problem=why)
    summary = {
        "acceptance": float(acc.rate),
        "acceptance_summary": {k: _plain(v) for k, v in vars(acc).items() if not k.startswith("_")},
        # the Kish ESS/N of the n proposals, independent flow draws (docs/flows.md, "ESS")
        "proposal_ess": float(res.proposal_ess), "proposal_ess_n": n, "observables": observables, "n": n, "seed": seed,
        "stored": len(idx), "checkpoint": str(ck), "checkpoint_step": int(payload["step"]),
        "theory": theory.describe(), "lattice": list(cfg.lattice.shape), "output": str(data_path),
        "wall_s": round(time.time() - t0, 3), **extra,
        # the configuration the checkpoint carries: sample.json describes itself, also for a checkpoint file away
        # from its run folder (a stage checkpoint, a copy), where no train.json or config.json lies beside it
        "flow_config": cfg.to_dict(),
    }
    if sampled:  # the [action] values of the theory sampled, where training learned them (flow_summary reads them)
        summary["sampled_action"] = sampled
    summary["plot"] = _histograms(plot_path, theory, res.observables, der, observables, ref, ref_kind, exact)
    write_json(summary_path, summary)
    shutil.rmtree(progress_root, ignore_errors=True)   # everything is written: the drawn batches are not needed
    if progress:
        print(f"flow MCMC: {n} steps, acceptance {acc.rate:.3f}, proposal ESS {res.proposal_ess:.3f} (Kish, N={n}); "
              f"wrote {data_path}", file=sys.stderr)
    return summary


def _histograms(path: Path, theory: Any, chain: Mapping[str, Any], der: Mapping[str, Any],
                estimates: Mapping[str, Any], ref: Mapping[str, Any], ref_kind: str,
                exact: Mapping[str, float]) -> str | None:
    from ..plots import sample_plot

    values: dict[str, Any] = {}
    for name in theory.summary_observables():
        if name in chain:
            values[name] = chain[name]
        elif name in der and der[name].per_config is not None:
            values[name] = der[name].per_config(chain)
    reference = {}
    for name in values:
        if name in ref:
            reference[name] = {**ref[name], "kind": ref_kind}
        elif name in exact:
            reference[name] = {"value": exact[name], "error": None, "kind": "exact"}
    title = f"{theory.describe()} on {'x'.join(map(str, theory.lattice.shape))}: flow MCMC chain"
    return sample_plot(path, values, estimates, reference, theory, title)
