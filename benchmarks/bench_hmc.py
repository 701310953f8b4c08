#!/usr/bin/env python
"""HMC benchmarks: cost per trajectory, and critical slowing down of the topological charge.

Run by hand (not part of the test suite). Two sub-commands::

    # 1. cost: trajectories/s, ns per site per trajectory, force evaluations/s, force time over the
    #    bandwidth-limited time (in-run bandwidth probe of bench_core), 2D U(1) and 4D SU(3)
    python benchmarks/bench_hmc.py perf --out benchmarks/results/hmc_perf.json --torch-threads 1

    # 2. tau_int(Q) (Gamma method, chains as replicas) of HMC on 2D U(1) L = 16 as beta grows
    python benchmarks/bench_hmc.py tau --sampler hmc --betas 2,3,4,5,6,8 \
        --out benchmarks/results/hmc_tau_hmc.json --torch-threads 1
    # ... and the same for heatbath + overrelaxation
    python benchmarks/bench_hmc.py tau --sampler heatbath --betas 2,3,4,5,6,8 \
        --out benchmarks/results/hmc_tau_heatbath.json --torch-threads 1

Every run writes its JSON atomically (``bench_core.write_json_atomic``) with the command line, the
date, the load average at start and end, torch threads, the OPENBLAS_* variables and the versions
(``bench_core._env_info``). The ``tau`` run rewrites its JSON after every beta, so a run that is cut
short keeps what it finished. Benchmarks are host-side code: they name numpy and torch directly; the
samplers, actions and observables come from latticekit.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import _env_info, measure_bandwidth, nbytes, time_call, write_json_atomic  # noqa: E402

import latticekit as lk  # noqa: E402
from latticekit import backends  # noqa: E402
from latticekit.actions import WilsonGaugeAction  # noqa: E402
from latticekit.analysis import gamma_method  # noqa: E402
from latticekit.exact.u1_2d import u1_2d_charge_distribution, u1_2d_plaquette, u1_2d_q2  # noqa: E402
from latticekit.mc import HMC, Heatbath  # noqa: E402
from latticekit.observables import average_plaquette, topological_charge_u1_2d, u1_flux_field  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["main", "run_perf", "run_tau"]


def _finish(res: dict[str, Any], out: str, t0: float) -> None:
    res["meta"]["wall_s"] = time.perf_counter() - t0
    res["meta"]["loadavg_at_end"] = os.getloadavg()
    write_json_atomic(res, out)


# ------------------------------------------------------------------------------------------------
# 1. cost per trajectory
# ------------------------------------------------------------------------------------------------
class _TimedTarget:
    """Wraps a target and accumulates the wall time spent in ``force`` (measured inside the HMC run)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.lattice = target.lattice
        self.group = target.group
        self.force_s = 0.0
        self.force_calls = 0
        self.times: list[float] = []

    def action(self, x: Any) -> Any:
        return self.target.action(x)

    def force(self, x: Any) -> Any:
        t0 = time.perf_counter()
        f = self.target.force(x)
        dt = time.perf_counter() - t0
        self.force_s += dt
        self.times.append(dt)
        self.force_calls += 1
        return f


def _perf_case(suite: str, group: Any, L: int, nd: int, batch: int, beta: float, backend: str,
               bw: dict[str, Any], budget_s: float, n_steps: int, step_size: float) -> dict[str, Any]:
    lat = lk.Lattice((L,) * nd)
    rng = backends.rng(1000 + L, backend=backend)
    U = lk.gauge.random_gauge_field(group, lat, rng, batch_shape=(batch,))
    act = WilsonGaugeAction(group, lat, beta)
    timed = _TimedTarget(act)
    hmc = HMC(timed, rng=rng, step_size=step_size, n_steps=n_steps, integrator="omelyan")
    sites = batch * lat.volume
    row: dict[str, Any] = {"suite": suite, "backend": backend, "L": L, "nd": nd, "batch": batch, "beta": beta,
                           "sites": sites, "links": sites * nd, "integrator": "omelyan", "n_steps": n_steps,
                           "step_size": step_size, "trajectory_length": step_size * n_steps}
    state = {"U": U, "acc": [], "fe": 0}

    times: list[float] = []

    def one() -> None:
        t_start = time.perf_counter()
        state["U"], info = hmc.step(state["U"])
        state["acc"].append(float(backends.to_numpy(info.accepted).mean()))
        state["fe"] = info.extras["force_evaluations"]
        times.append(time.perf_counter() - t_start)

    one()  # warm-up outside time_call, so that the force accounting covers exactly the timed trajectories
    timed.force_s, timed.force_calls, timed.times = 0.0, 0, []
    t = time_call(one, warmup=0, min_repeats=3, max_repeats=50, budget_s=budget_s)
    U = state["U"]
    n_traj = t["repeats"]
    total_s = float(sum(times[1:]))  # the timed trajectories (times[0] is the warm-up)
    t["mean_s"] = total_s / n_traj
    fe = state["fe"]
    row["trajectory"] = t
    row["force_evaluations_per_trajectory"] = fe
    row["acceptance_timed"] = float(np.mean(state["acc"][1:]))
    row["trajectories_timed"] = n_traj
    row["trajectories_per_s"] = 1.0 / t["median_s"]
    row["chain_trajectories_per_s"] = batch / t["median_s"]
    row["ns_per_site_per_trajectory"] = t["median_s"] / sites * 1e9
    row["force_evaluations_per_s_in_hmc"] = fe / t["median_s"]
    # the force alone
    F = act.force(U)
    fbytes = nbytes(U) + nbytes(F)
    del F
    tf = time_call(lambda: act.force(U), warmup=1, min_repeats=3, max_repeats=30, budget_s=min(budget_s, 2.0))
    ta = time_call(lambda: act.action(U), warmup=1, min_repeats=3, max_repeats=30, budget_s=min(budget_s, 1.0))
    row["force"] = tf
    row["action"] = ta
    row["force_evaluations_per_s"] = 1.0 / tf["median_s"]
    row["force_ns_per_site"] = tf["median_s"] / sites * 1e9
    row["force_bytes"] = fbytes
    row["force_bytes_model"] = "read U once + write the force field once (bench_core model)"
    ref = bw["reference_GBps"]
    row["force_bandwidth_time_s"] = fbytes / (ref * 1e9)
    row["force_time_over_bandwidth_time"] = tf["median_s"] / row["force_bandwidth_time_s"]
    row["force_fraction_of_trajectory_from_standalone"] = fe * tf["median_s"] / t["median_s"]
    # the same from inside the timed trajectories (robust against load changes between the two timings)
    row["force_in_hmc_calls"] = timed.force_calls
    # medians (robust against preemption spikes on the loaded machine), and the mean-based fraction
    row["force_in_hmc_s_per_call"] = float(np.median(timed.times))
    row["force_in_hmc_mean_s_per_call"] = timed.force_s / max(timed.force_calls, 1)
    row["force_in_hmc_fraction_of_trajectory"] = fe * row["force_in_hmc_s_per_call"] / t["median_s"]
    row["force_in_hmc_fraction_of_trajectory_mean_based"] = timed.force_s / total_s
    row["force_in_hmc_over_bandwidth_time"] = row["force_in_hmc_s_per_call"] / row["force_bandwidth_time_s"]
    return row


def run_perf(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    res: dict[str, Any] = {"meta": _env_info(argv), "kind": "hmc_perf", "rows": []}
    n_bw = 1 << 25
    print(f"bandwidth probe: 3 x {n_bw * 8 / 1e6:.0f} MB arrays ...", flush=True)
    bw = measure_bandwidth(n_bw, args.bw_repeats)
    res["bandwidth"] = bw
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in bw["GBps"].items())
          + f" GB/s; reference {bw['reference_GBps']:.1f}", flush=True)
    be_list = [b for b in args.backends.split(",") if b]
    cases = [("u1_2d", lk.U1, L, 2, args.u1_batch, args.u1_beta) for L in _ints(args.u1_L)]
    cases += [("su3_4d", lk.SU(3), L, 4, 1, args.su3_beta) for L in _ints(args.su3_L)]
    for suite, group, L, nd, batch, beta in cases:
        for be in be_list:
            budget = args.budget_s if suite == "u1_2d" else args.su3_budget_s
            try:
                row = _perf_case(suite, group, L, nd, batch, beta, be, bw, budget, args.n_steps, args.step_size)
                row["status"] = "ok"
                print(f"  {suite} {be:6s} L={L:4d} B={batch:3d} {row['trajectory']['median_s'] * 1e3:9.1f} ms/traj "
                      f"{row['trajectories_per_s']:8.2f} traj/s {row['ns_per_site_per_trajectory']:9.0f} ns/site/traj "
                      f"force {row['force']['median_s'] * 1e3:8.2f} ms = {row['force_time_over_bandwidth_time']:7.0f}"
                      f" x BW-limited (in HMC {row['force_in_hmc_s_per_call'] * 1e3:.2f} ms, "
                      f"{100 * row['force_in_hmc_fraction_of_trajectory']:.0f}% of traj); acc {row['acceptance_timed']:.2f}", flush=True)
            except Exception as exc:  # report, keep going
                row = {"suite": suite, "backend": be, "L": L, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
                print(f"  {suite} {be} L={L} error: {exc}", flush=True)
            res["rows"].append(row)
            gc.collect()
            _finish(res, args.out, t0)  # results as they complete
    return res


# ------------------------------------------------------------------------------------------------
# 2. critical slowing down: tau_int(Q)
# ------------------------------------------------------------------------------------------------
def _measure(lat: lk.Lattice):
    def f(U: Any) -> dict[str, Any]:
        return {"Q": topological_charge_u1_2d(U, lat), "plaq": average_plaquette(U, lk.U1, lat)}
    return f


def _np(x: Any) -> np.ndarray:
    return np.asarray(backends.to_numpy(x), dtype=float)


def _gamma(series: np.ndarray) -> dict[str, Any]:
    """Gamma method with the chains (axis 1) as replicas; series is (N, C)."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g = gamma_method([series[:, c] for c in range(series.shape[1])])
    return {"value": float(g.value), "error": float(g.error), "tau_int": float(g.tau_int),
            "tau_int_error": float(g.tau_int_error), "window": int(g.window), "W_max": series.shape[0] // 2,
            "windowing_failed": bool(g.windowing_failed), "warnings": [str(x.message) for x in w],
            "rho_1_to_5": [float(r) for r in g.rho[1:6]]}


def _tune_hmc(act: WilsonGaugeAction, rng: Any, U: Any, candidates: list[int], n_try: int,
              target: float) -> tuple[Any, int, list[dict[str, Any]]]:
    """Smallest n_steps (trajectory length 1) with acceptance >= target, scanning upwards."""
    log = []
    for n in candidates:
        hmc = HMC(act, rng=rng, step_size=1.0 / n, n_steps=n, integrator="omelyan")
        U, hist = hmc.run(U, n_try)
        acc = hist.acceptance_rate
        log.append({"n_steps": n, "acceptance": acc, "trajectories": n_try})
        if acc >= target:
            return U, n, log
    return U, candidates[-1], log


_T_START = time.perf_counter()


def _tau_one_beta(args: argparse.Namespace, beta: float) -> dict[str, Any]:
    L, C = args.L, args.chains
    lat = lk.Lattice((L, L))
    rng = backends.rng(args.seed + int(round(100 * beta)), backend=args.backend)
    act = WilsonGaugeAction(lk.U1, lat, beta)
    meas = _measure(lat)
    out: dict[str, Any] = {"beta": beta, "L": L, "chains": C, "sampler": args.sampler, "start": args.start}
    if args.start == "hot":
        U = lk.gauge.random_gauge_field(lk.U1, lat, rng, batch_shape=(C,))
    else:
        # "sector" start: Q_c of every chain drawn from the exact P(Q) of the torus, field = the smooth
        # flux configuration with that charge (minimal action in the sector); the thermalisation then
        # only has to equilibrate the non-topological modes, so frozen chains still sample the right
        # distribution of sectors.
        qv, pq = u1_2d_charge_distribution(beta, (L, L))
        pq = np.clip(pq, 0.0, None)
        q0 = np.random.default_rng(args.seed + int(round(100 * beta))).choice(qv, size=C, p=pq / pq.sum())
        U = backends.from_numpy(np.stack([backends.to_numpy(u1_flux_field(lat, int(q), backend="numpy"))
                                          for q in q0]), backend=args.backend)
        out["start_Q"] = [int(q) for q in q0]
    t0 = time.perf_counter()
    therm: dict[str, Any] = {}
    if args.sampler == "hmc":
        # phase A: a safe small step from the hot start
        hmc0 = HMC(act, rng=rng, step_size=1.0 / args.n_safe, n_steps=args.n_safe, integrator="omelyan")
        U, h0 = hmc0.run(U, args.therm_safe)
        therm["safe"] = {"n_steps": args.n_safe, "trajectories": args.therm_safe, "acceptance": h0.acceptance_rate}
        U, n_steps, tune_log = _tune_hmc(act, rng, U, _ints(args.candidates), args.tune_traj, args.target_acc)
        therm["tuning"] = tune_log
        sampler = HMC(act, rng=rng, step_size=1.0 / n_steps, n_steps=n_steps, integrator="omelyan")
        out.update({"integrator": "omelyan", "n_steps": n_steps, "step_size": 1.0 / n_steps,
                    "trajectory_length": 1.0, "force_evaluations_per_trajectory": 2 * n_steps + 1})
        unit = "trajectories"
    else:
        sampler = Heatbath(lk.U1, lat, beta, rng=rng, n_heatbath=1, n_overrelax=args.n_overrelax)
        out.update({"n_heatbath": 1, "n_overrelax": args.n_overrelax})
        unit = "steps (1 heatbath + n_overrelax overrelaxation sweeps)"
    U, ht = sampler.run(U, args.therm)
    therm["main"] = {"updates": args.therm, "acceptance": ht.acceptance_rate}
    therm["total_updates"] = args.therm + (args.therm_safe + args.tune_traj * len(therm.get("tuning", []))
                                           if args.sampler == "hmc" else 0)
    out["thermalisation"] = therm
    out["thermalisation_s"] = time.perf_counter() - t0
    q_start = np.rint(_np(topological_charge_u1_2d(U, lat)))
    t1 = time.perf_counter()
    # measure in chunks; stop early (and record the number actually made) when the wall budget is spent
    Qs, Ps, accs, dHs = [], [], [], []
    n_done = 0
    while n_done < args.n_meas:
        n = min(args.chunk, args.n_meas - n_done)
        U, hist = sampler.run(U, n, measure=meas)
        Qs.append(_np(hist.measurements["Q"]))
        Ps.append(_np(hist.measurements["plaq"]))
        if hist.accepted is not None:
            accs.append(_np(hist.accepted))
            dHs.append(_np(hist.dH))
        n_done += n
        if args.max_wall_s and time.perf_counter() - _T_START > args.max_wall_s:
            break
    dt = time.perf_counter() - t1
    out["n_meas_requested"] = args.n_meas
    out["stopped_early_by_max_wall_s"] = n_done < args.n_meas
    args_n_meas = n_done
    Q = np.concatenate(Qs, axis=0)            # (N, C)
    P = np.concatenate(Ps, axis=0)
    Qi = np.rint(Q)
    out["non_integer_Q_max"] = float(np.max(np.abs(Q - Qi)))
    out["unit"] = unit
    out["n_meas"] = args_n_meas
    out["measure_s"] = dt
    out["s_per_update"] = dt / args_n_meas
    out["s_per_chain_update"] = dt / args_n_meas / C
    out["acceptance"] = float(np.mean(np.concatenate(accs))) if accs else 1.0
    if dHs:
        e = np.exp(-np.concatenate(dHs)).ravel()
        out["exp_minus_dH"] = [float(e.mean()), float(e.std(ddof=1) / np.sqrt(e.size))]
    seq = np.concatenate([q_start[None, :], Qi], axis=0)
    changes = np.sum(seq[1:] != seq[:-1], axis=0)
    out["Q_changes_total"] = int(changes.sum())
    out["chains_with_Q_change"] = int(np.sum(changes > 0))
    out["Q_change_rate_per_chain_update"] = float(changes.sum() / (C * args_n_meas))
    out["Q_distinct_values"] = sorted(set(int(v) for v in np.unique(Qi)))
    out["exact_Q2"] = u1_2d_q2(beta, (L, L))
    out["exact_plaquette"] = u1_2d_plaquette(beta, (L, L))
    out["plaquette"] = _gamma(P)
    out["Q2"] = _gamma(Qi**2)
    if changes.sum() == 0:
        out["Q"] = {"status": "frozen", "tau_int_lower_bound": args_n_meas,
                    "statement": f"> {args_n_meas} {unit.split()[0]}: Q never changed in any of {C} chains",
                    "rate_upper_bound_95": 3.0 / (C * args_n_meas)}
    else:
        g = _gamma(Qi)
        g["status"] = "window_failed" if g["windowing_failed"] else "ok"
        if g["windowing_failed"]:
            g["statement"] = (f"window method failed up to W_max = {g['W_max']}: tau_int(Q) >~ "
                              f"{g['tau_int']:.0f} (estimate at W_max, a lower bound at best)")
        out["Q"] = g
    return out


def run_tau(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    res: dict[str, Any] = {"meta": _env_info(argv), "kind": "hmc_tau", "config": vars(args).copy(), "betas": []}
    res["config"].pop("func", None)
    for beta in _floats(args.betas):
        r = _tau_one_beta(args, beta)
        r["loadavg_after"] = os.getloadavg()
        res["betas"].append(r)
        q = r["Q"]
        tau = (q["statement"] if q["status"] != "ok" else f"tau_int(Q) = {q['tau_int']:.2f} +- {q['tau_int_error']:.2f}")
        print(f"beta={beta:4.1f} {args.sampler}: {tau}; acc {r['acceptance']:.3f} "
              f"n_steps {r.get('n_steps', '-')}; Q changes {r['Q_changes_total']} in "
              f"{r['chains_with_Q_change']}/{args.chains} chains; <Q^2> {r['Q2']['value']:.3f} +- {r['Q2']['error']:.3f}"
              f" (exact {r['exact_Q2']:.3f}); plaq {r['plaquette']['value']:.5f} +- {r['plaquette']['error']:.5f}"
              f" (exact {r['exact_plaquette']:.5f}); {r['s_per_update'] * 1e3:.1f} ms/update; "
              f"load {r['loadavg_after'][0]:.1f}", flush=True)
        _finish(res, args.out, t0)  # results as they complete
    return res


# ------------------------------------------------------------------------------------------------
# Markdown tables from result files
# ------------------------------------------------------------------------------------------------
def _fmt(v: float, nd: int = 3) -> str:
    return f"{v:.{nd}g}" if abs(v) < 1e4 else f"{v:.3g}"


def tables(paths: list[str]) -> str:
    """Markdown tables of ``hmc_perf`` and ``hmc_tau`` result files."""
    import json

    lines: list[str] = []
    for path in paths:
        with open(path) as f:
            d = json.load(f)
        m = d["meta"]
        lines.append(f"`{path}`: `{m['command']}`  ")
        lines.append(f"date {m['date']}, torch threads {m['torch_num_threads']}, load average start "
                     f"{[round(x, 2) for x in m['loadavg_at_start']]} / end "
                     f"{[round(x, 2) for x in m.get('loadavg_at_end') or []]}, wall {m.get('wall_s', 0):.0f} s")
        lines.append("")
        if d["kind"] == "hmc_perf":
            bw = d["bandwidth"]
            lines.append(f"Bandwidth probe: reference {bw['reference_GBps']:.1f} GB/s ({bw['reference_kernel']}).")
            lines.append("")
            lines.append("| suite | backend | L | batch | ms/traj | traj/s | ns/site/traj | forces/traj | forces/s in HMC "
                         "| force ms (alone) | forces/s (alone) | force / BW-limited (alone) | force ms in HMC (median) "
                         "| force / BW-limited (in HMC) | force share of traj (median / mean) | acc |")
            lines.append("|" + "---|" * 16)
            for r in d["rows"]:
                if r.get("status") != "ok":
                    lines.append(f"| {r['suite']} | {r['backend']} | {r['L']} | error: {r.get('reason', '')} |")
                    continue
                lines.append(
                    f"| {r['suite']} | {r['backend']} | {r['L']} | {r['batch']} | {_fmt(r['trajectory']['median_s'] * 1e3)} "
                    f"| {_fmt(r['trajectories_per_s'])} | {_fmt(r['ns_per_site_per_trajectory'])} "
                    f"| {r['force_evaluations_per_trajectory']} | {_fmt(r['force_evaluations_per_s_in_hmc'])} "
                    f"| {_fmt(r['force']['median_s'] * 1e3)} | {_fmt(r['force_evaluations_per_s'])} "
                    f"| {_fmt(r['force_time_over_bandwidth_time'])} | {_fmt(r['force_in_hmc_s_per_call'] * 1e3)} "
                    f"| {_fmt(r['force_in_hmc_over_bandwidth_time'])} "
                    f"| {100 * r['force_in_hmc_fraction_of_trajectory']:.0f}% / "
                    f"{100 * r['force_in_hmc_fraction_of_trajectory_mean_based']:.0f}% | {r['acceptance_timed']:.2f} |")
        else:
            lines.append("| sampler | beta | chains | updates (therm / meas) | n_steps | acc | ms/update (all chains) "
                         "| tau_int(Q) | W / W_max | Q changes (chains) | <Q^2> | exact <Q^2> | plaquette | exact "
                         "| tau_int(plaq) |")
            lines.append("|" + "---|" * 15)
            for r in d["betas"]:
                q = r["Q"]
                if q["status"] == "ok":
                    tq = f"{q['tau_int']:.3g} +- {q['tau_int_error']:.2g}"
                    win = f"{q['window']} / {q['W_max']}"
                elif q["status"] == "frozen":
                    tq = f"> {r['n_meas']} (Q never changed)"
                    win = "-"
                else:
                    tq = f">~ {q['tau_int']:.3g} (window failed)"
                    win = f"{q['window']} / {q['W_max']}"
                pl = r["plaquette"]
                lines.append(
                    f"| {r['sampler']} | {r['beta']:g} | {r['chains']} | {r['thermalisation']['total_updates']} / "
                    f"{r['n_meas']} | {r.get('n_steps', '-')} | {r['acceptance']:.3f} | {r['s_per_update'] * 1e3:.3g} "
                    f"| {tq} | {win} | {r['Q_changes_total']} ({r['chains_with_Q_change']}/{r['chains']}) "
                    f"| {r['Q2']['value']:.3f} +- {r['Q2']['error']:.3f} | {r['exact_Q2']:.3f} "
                    f"| {pl['value']:.5f} +- {pl['error']:.5f} | {r['exact_plaquette']:.5f} "
                    f"| {pl['tau_int']:.3g} +- {pl['tau_int_error']:.2g} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("perf", help="trajectories/s and force cost vs L")
    p.add_argument("--out", required=True)
    p.add_argument("--backends", default="numpy,torch")
    p.add_argument("--u1-L", default="8,16,32,64,128")
    p.add_argument("--u1-batch", type=int, default=16)
    p.add_argument("--u1-beta", type=float, default=4.0)
    p.add_argument("--su3-L", default="4,6,8")
    p.add_argument("--su3-beta", type=float, default=6.0)
    p.add_argument("--n-steps", type=int, default=10)
    p.add_argument("--step-size", type=float, default=0.1)
    p.add_argument("--budget-s", type=float, default=3.0, help="timed seconds per U(1) case (>= 3 trajectories)")
    p.add_argument("--su3-budget-s", type=float, default=6.0)
    p.add_argument("--bw-repeats", type=int, default=3)
    p.add_argument("--torch-threads", type=int, default=1)
    t = sub.add_parser("tau", help="tau_int(Q) vs beta, 2D U(1)")
    t.add_argument("--out", required=True)
    t.add_argument("--sampler", choices=["hmc", "heatbath"], default="hmc")
    t.add_argument("--betas", default="2,3,4,5,6,8")
    t.add_argument("--L", type=int, default=16)
    t.add_argument("--chains", type=int, default=64)
    t.add_argument("--backend", default="torch")
    t.add_argument("--n-meas", type=int, default=4000, help="measured updates per chain")
    t.add_argument("--therm", type=int, default=300, help="thermalisation updates with the production sampler")
    t.add_argument("--n-safe", type=int, default=25, help="HMC: n_steps of the first, safe thermalisation phase")
    t.add_argument("--therm-safe", type=int, default=50)
    t.add_argument("--candidates", default="3,4,5,6,7,8,10,12,14,17,20,25")
    t.add_argument("--tune-traj", type=int, default=20)
    t.add_argument("--target-acc", type=float, default=0.8)
    t.add_argument("--n-overrelax", type=int, default=2)
    t.add_argument("--chunk", type=int, default=1000, help="measured updates per chunk (wall-budget checks)")
    t.add_argument("--max-wall-s", type=float, default=540.0,
                   help="stop measuring after this many seconds since start (0: never); the JSON records it")
    t.add_argument("--seed", type=int, default=20261123)
    t.add_argument("--start", choices=["sector", "hot"], default="sector",
                   help="sector: Q per chain from the exact P(Q), smooth flux field; hot: Haar-random links")
    t.add_argument("--torch-threads", type=int, default=1)
    m = sub.add_parser("table", help="print Markdown tables of result files")
    m.add_argument("files", nargs="+")
    args = ap.parse_args(argv[1:])
    if args.cmd == "table":
        print(tables(args.files))
        return 0
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    if args.cmd == "perf":
        res = run_perf(args, argv)
    else:
        res = run_tau(args, argv)
    _finish(res, args.out, t0)
    print(f"wrote {args.out} in {res['meta']['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
