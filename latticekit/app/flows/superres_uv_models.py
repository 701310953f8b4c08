"""Flow-model family ``superres_uv``: super-resolving flows by UV-matching (App. A of Bauer, Kapust, Pawlowski, Temmen).

``[model] coupling = "superres_uv"`` builds a :class:`~latticekit.flows.superres.UVMatchingModel`: the coarse phi^4
theory on ``lattice.shape / 2^k`` at *fixed* couplings (exact HMC draws), ``k = n_layers`` doublings
``T = F o N o U`` and the fine theory on ``lattice.shape`` with learnable couplings (the target). ``latticekit train``
runs the ladder of App. A (:func:`~latticekit.flows.superres.uv_ladder`): ``T_1`` and the couplings of the
``2 L`` lattice are trained for ``train.steps`` steps; every further doubling copies the last transformation,
starts from the ESS-optimal coupling of its lattice, retrains for at most ``retrain_steps`` steps at
``lr * lr_factor`` with early stopping on the evaluation ESS, and ends at the ESS-optimal coupling (Figs. 7-9).

``[model]`` keys (besides those shared with ``superres``: ``n_layers``, ``coarse_kappa``/``coarse_lam`` (the
fixed coarse couplings, default ``action.kappa``/``action.lam``), ``log_z_samples``, ``hmc_traj``, ``r_w``,
``sigma`` and the CNF keys; ``kernel_size`` 5 and ``init`` "gerdes" by default: with Gerdes et al.'s
initialisation the 5x5 window trains best on the UV example's first level, ESS/N 0.72 against 0.59 for 7x7 (App.
C's "kernel size 3" read as a radius) and 0.31 for 3x3, and the 16x16 ladder reaches 0.51-0.64 against 0.07-0.09
with the 3x3 window and LocalCNF's "normal" initialisation; benchmarks/README.md, "kernel size"):

* ``learn`` (default ``["kappa"]``): the fine couplings trained; they start at ``action.kappa``/``action.lam``
  (the coarse values by default: "at the beginning of training, the couplings of both lattices have the same
  value");
* ``retrain_steps`` (N_RT, 200), ``lr_factor`` (0.2), ``check_every`` (10), ``patience`` (3), ``min_delta``
  (0.005): retraining and its early stopping; the ESS evaluations draw ``train.eval_batch_size`` samples;
* ``scan_width`` (0.05), ``scan_points`` (21): the ``kappa`` scan that picks the ESS-optimal coupling.

The job folder holds ``uv_levels/`` (a checkpoint per level and ``uv_levels.json``: per level the lattice,
steps, learned and ESS-optimal ``kappa`` with the ESS at both, the scan), ``metrics.jsonl`` (``step`` counts
over all levels; ``level`` and ``level_step`` say where), ``checkpoint.pt`` (the full model, written when the
ladder is done) and ``train.json`` (its ``log mean w`` as ``log_z_ratio_estimate`` = ``log Z_fine - log Z_coarse``
at the learned fine couplings, :func:`~.superres_models.log_z_ratio_entries`). A killed job resumes level by level.
``latticekit sample`` runs independence Metropolis against the fine theory at the *learned* couplings
(``fine_kappa``/``fine_lam`` in ``sample.json``).

The fine couplings are an output of UV-matching: ``latticekit sample`` samples, reports and compares the fine
theory at the learned couplings (:attr:`FlowFamily.sampled_action`; exact values of the free theory, ``lam = 0``,
at the learned ``kappa``), and the train job writes ``reference.toml``, a ``latticekit run`` (HMC) configuration
of that theory for ``--compare``.

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"kind": "phi4", "kappa": 0.25, "lam": 0.01},
...                             "model": {"coupling": "superres_uv", "n_layers": 2, "n_basis": 3, "n_time": 2,
...                                       "bond_basis": 2, "bond_time": 2, "log_z_samples": 8, "hmc_traj": 2}})
>>> model, action, lat = build_flow(cfg)
>>> model.coarse_shape, model.fine_shape, model.target.couplings.learn, model.prior.couplings.learn
((2, 2), (8, 8), ('kappa',), ())
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from latticekit.utils.schema import setting

from .models import FlowFamily
from .superres_models import (
    SuperresBaseSettings,
    _check,
    _check_learn,
    _default_layers,
    coarse_std,
    coarse_theory,
    exact_chain,
    log_z_ratio_entries,
    rectangular_stack,
)

__all__ = ["SUPERRES_UV", "SuperresUVSettings", "superres_uv_flow"]

#: the ladder's folder inside the job folder (level checkpoints and uv_levels.json)
LEVELS = "uv_levels"
#: the HMC configuration of the fine theory at the learned couplings, written at the end
REFERENCE = "reference.toml"


@dataclass
class SuperresUVSettings(SuperresBaseSettings):
    """``[model]`` keys of ``coupling = "superres_uv"`` (module docstring)."""

    kernel_size: int = setting(5, ge=1, doc="CNF spatial kernel width per axis (5: measured best for UV-matching "
                                            "with init = gerdes)")
    learn: list[str] = setting(["kappa"], check=_check_learn, doc="fine couplings trained (UV-matching)")
    retrain_steps: int = setting(200, ge=0, doc="N_RT: most retraining steps per further doubling")
    lr_factor: float = setting(0.2, gt=0.0, le=1.0, doc="learning-rate factor of the retraining (App. A: 1/5)")
    check_every: int = setting(10, ge=1, doc="retraining steps between ESS evaluations (early stopping)")
    patience: int = setting(3, ge=1, doc="evaluations without an ESS rise of min_delta before stopping")
    min_delta: float = setting(0.005, ge=0.0, le=1.0, doc="ESS/N rise that counts as an improvement")
    scan_width: float = setting(0.05, gt=0.0, le=1.0, doc="half-width of the kappa scan for the best ESS")
    scan_points: int = setting(21, ge=3, doc="grid points of the kappa scan (refined by bounded Brent)")


def superres_uv_flow(theory: Any, s: SuperresUVSettings) -> Any:
    """The UV-matching model of ``theory`` (module docstring)."""
    import torch

    from latticekit.flows.superres import (
        CoarseTheoryPrior,
        LearnableTargetAction,
        LogZGradient,
        Phi4Couplings,
        UVMatchingModel,
        hmc_sampler,
    )

    coarse, k, kappa, lam = coarse_theory(theory, s, "superres_uv")
    p = theory.params
    prior = CoarseTheoryPrior(coarse, Phi4Couplings(kappa, lam, learn=()), sampler=hmc_sampler(n_traj=s.hmc_traj))
    flows = rectangular_stack(coarse, k, s, coarse_std(coarse, kappa, lam, s))
    c = Phi4Couplings(p.kappa, p.lam, learn=tuple(s.learn))
    lat = theory.lattice
    log_z = LogZGradient(c, lat, hmc_sampler(n_traj=s.hmc_traj), s.log_z_samples, threshold=s.r_w) if s.learn else None
    target = LearnableTargetAction(lat, c, log_z, seed=int(torch.randint(0, 2 ** 31 - 1, ())))
    return UVMatchingModel(prior, flows, target)


def _done_steps(levels_dir: Path) -> tuple[dict[int, int], int]:
    """Steps of the finished levels and the global step the ladder resumes from (finished levels plus the
    checkpoint of the level in progress)."""
    import torch

    done: dict[int, int] = {}
    if (levels_dir / "uv_levels.json").exists():
        done = {e["level"]: e["steps"] for e in json.loads((levels_dir / "uv_levels.json").read_text())["levels"]}
    g = sum(done.values())
    nxt = levels_dir / f"level_{len(done) + 1}.pt"
    if nxt.exists():
        g += int(torch.load(nxt, map_location="cpu", weights_only=False)["step"])
    return done, g


def superres_uv_train(cfg: Any, outdir: Path, *, device: Any, fresh: bool, progress: bool) -> dict[str, Any]:
    """The UV-matching ladder as the train job (module docstring); returns the content of ``train.json``."""
    from latticekit.flows.checkpoint import save_checkpoint
    from latticekit.flows.superres import UVLadderConfig, uv_ladder
    from latticekit.flows.train import NonFiniteLossError, Trainer

    from ..folders import (
        CHECKPOINT,
        CONFIG,
        METRICS,
        TRAIN_PLOT,
        TRAIN_SUMMARY,
        write_json,
    )
    from ..killpoints import kill_point
    from ..plots import training_plot
    from .models import build_flow
    from .resume import (
        MetricsWriter,
        prepare_run_folder,
        read_metrics,
        truncate_metrics,
    )
    from .train import ESS_DEFINITION

    conf, t, s = cfg.to_dict(), cfg.train, cfg.model.variant
    prepare_run_folder(outdir, conf, fresh, state=(LEVELS, REFERENCE))
    write_json(outdir / CONFIG, conf)
    model, _action, _lat = build_flow(cfg)
    ladder = UVLadderConfig(retrain_steps=s.retrain_steps, lr_factor=s.lr_factor, check_every=s.check_every,
                            patience=s.patience, min_delta=s.min_delta, eval_batch_size=t.eval_batch_size,
                            scan_width=s.scan_width, scan_points=s.scan_points)
    levels_dir, metrics_path = outdir / LEVELS, outdir / METRICS
    _done, resume_step = _done_steps(levels_dir)
    truncate_metrics(metrics_path, resume_step)
    done_lines = read_metrics(metrics_path) if metrics_path.exists() else []
    cpu_before = float(done_lines[-1].get("cpu_s", 0.0)) if done_lines else 0.0
    writer = MetricsWriter(metrics_path)
    t0, c0 = time.time(), time.process_time()
    offsets: dict[int, int] = {}

    def on_step(level: int, m: dict[str, float]) -> None:
        if level not in offsets:  # the steps of the finished levels (uv_levels.json is written level by level)
            offsets[level] = sum(v for lv, v in _done_steps(levels_dir)[0].items() if lv < level)
        line = {**m, "step": offsets[level] + int(m["step"]), "level": level, "level_step": int(m["step"]),
                "ess_n": t.batch_size, "time_s": round(time.time() - t0, 4),
                "cpu_s": round(cpu_before + time.process_time() - c0, 4)}
        if "eval_ess" in m:
            line["eval_ess_n"] = t.eval_batch_size
        writer.write(line)
        kill_point("train:step")

    try:
        res = uv_ladder(model, t.train_config(device, levels_dir / "level_1.pt"), levels_dir, ladder,
                        on_step=on_step, seed=t.seed)
    except NonFiniteLossError as exc:  # the level checkpoints hold the last good state
        writer.close()
        write_json(outdir / TRAIN_SUMMARY, {"status": "stopped: non-finite loss or gradient", "message": str(exc),
                                            "levels_file": str(levels_dir / "uv_levels.json")})
        raise
    finally:
        writer.close()
    save_checkpoint(outdir / CHECKPOINT, model=model, step=res["steps"],
                    config={"flow_config": conf, "uv_levels": res["levels"], "history": []})
    last = res["levels"][-1]
    from latticekit.utils import atomic_write

    learned = learned_couplings(model)
    atomic_write(outdir / REFERENCE, reference_toml(cfg, learned).encode())
    # the final evaluation, as for every family: eval_batch_size fresh draws against the fine theory at the learned
    # couplings (Trainer.evaluate: Kish ESS/N, var log w, log mean w); log mean w is log Z_fine - log Z_coarse here
    # (the coarse prior's density lacks 1/Z_coarse), reported under that name with the KL (log_z_ratio_entries)
    sampled = cfg.to_dict()
    sampled["action"].update(learned)
    sampled_theory = type(cfg).from_dict(sampled).theory
    ev = {**Trainer(model, sampled_theory.make_action(), t.train_config(device, levels_dir / "eval.pt"))
          .evaluate(t.eval_batch_size), "eval_ess_n": t.eval_batch_size, "step": res["steps"]}
    pc = model.prior.couplings
    ratio = log_z_ratio_entries(ev, (cfg.lattice.shape, learned["kappa"], learned["lam"]),
                                (model.coarse_shape, float(pc.kappa), float(pc.lam)))
    ev = ratio.pop("eval")
    lines = read_metrics(metrics_path)
    title = (f"{cfg.theory.describe()} on {'x'.join(map(str, cfg.lattice.shape))}, model.coupling = superres_uv "
             "(levels in sequence)")
    summary = {
        "status": "finished", "steps": res["steps"], "resumed_from_step": resume_step or None,
        "final_loss": lines[-1]["loss"] if lines else None,
        # the Kish ESS/N of the final evaluation's eval_batch_size fresh draws at the learned couplings
        "eval": ev, "ess": ev["eval_ess"], "ess_n": t.eval_batch_size, "ess_definition": ESS_DEFINITION,
        "var_log_w": ev["eval_var_log_w"], **ratio,
        "fine_kappa": learned["kappa"], "fine_lam": learned["lam"],
        "coarse_kappa": float(model.prior.couplings.kappa), "coarse_lam": float(model.prior.couplings.lam),
        "levels": [{k: v for k, v in e.items() if k not in ("kappa_grid", "ess_grid", "history")}
                   for e in res["levels"]],
        "n_parameters": int(sum(p.numel() for p in model.parameters())), "world_size": 1,
        "device": str(device) if device is not None else "cpu",
        "wall_s": round(time.time() - t0, 3), "checkpoint": str(outdir / CHECKPOINT), "metrics": str(metrics_path),
        "levels_file": str(levels_dir / "uv_levels.json"), "reference": str(outdir / REFERENCE),
        "config": conf, "plot": training_plot(outdir / TRAIN_PLOT, lines, title),
    }
    write_json(outdir / TRAIN_SUMMARY, summary)
    if progress:
        print(f"UV-matching: {len(res['levels'])} levels, {res['steps']} steps; {cfg.lattice.shape}: ESS/N "
              f"{last['ess']:.3f} at the ESS-optimal kappa = {last['kappa']:.5f} (scan, N = {t.eval_batch_size})",
              flush=True)
    return summary


def learned_couplings(model: Any) -> dict[str, float]:
    """The fine couplings a trained UV-matching model samples (``[action]`` keys)."""
    c = model.target.couplings
    return {"kappa": float(c.kappa.detach()), "lam": float(c.lam.detach())}


def superres_uv_sampler(model: Any, theory: Any, s: SuperresUVSettings, n: int, rng: Any, *,
                        observables: dict[str, Callable[[Any], Any]], batch_size: int,
                        progress: Callable[[str], Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Independence Metropolis against ``theory``, the fine theory at the learned couplings (``sample_job`` applies
    :func:`learned_couplings`); the prior draws by HMC."""
    res, extra = exact_chain(model, theory.make_action(), s, n, rng, observables=observables, batch_size=batch_size,
                             progress=progress)
    fine = learned_couplings(model)
    return res, {**extra, "fine_kappa": fine["kappa"], "fine_lam": fine["lam"],
                 "target": "the fine phi^4 theory at the learned couplings fine_kappa, fine_lam"}


def reference_toml(cfg: Any, couplings: dict[str, float]) -> str:
    """A ``latticekit run`` configuration (HMC) of the fine theory at the learned couplings: the reference for
    ``latticekit sample --compare``. Trajectories of length 2 (0.25 x 8 Omelyan steps; acceptance ~0.99 near the
    critical region of the paper's couplings) and 8 x 10000 measurements after 2000 thermalisation steps:
    UV-matching moves the fine couplings towards criticality, where the magnetisation decorrelates slowly."""
    shape = ", ".join(map(str, cfg.lattice.shape))
    return (f"# HMC of the fine theory at the couplings learned by UV-matching (written by latticekit train):\n"
            f"#   latticekit run THIS_FILE --out hmc; latticekit sample RUN_DIR --compare hmc/results.json\n"
            f"[lattice]\nshape = [{shape}]\n\n[action]\nkind = \"phi4\"\nkappa = {couplings['kappa']!r}\n"
            f"lam = {couplings['lam']!r}\n\n[sampler]\nalgorithm = \"hmc\"\nchains = 8\nthermalization = 2000\n"
            f"measurements = 10000\nstep_size = 0.25\nn_steps = 8\nintegrator = \"omelyan\"\n")


SUPERRES_UV = FlowFamily("superres_uv", SuperresUVSettings, superres_uv_flow, _default_layers, _check,
                         sampler=superres_uv_sampler, sampled_action=learned_couplings, train=superres_uv_train,
                         sampler_resumes=True, fixed_train_keys=("eval_batch_size", "steps"))
"""The UV-matching ladder (module docstring)."""
