#!/usr/bin/env python
"""Wilson-Dirac benchmark: operator throughput against measured memory bandwidth, batched CG against SciPy.

Run by hand (not part of the test suite)::

    python benchmarks/bench_dirac.py --out benchmarks/results/dirac_$(hostname).json      # full, < 10 min
    python benchmarks/bench_dirac.py --out /tmp/dirac_quick.json --quick                  # ~2 min

One run measures, in the same process:

1. **Memory bandwidth**: the STREAM-like probe of ``bench_core.measure_bandwidth`` (copy/scale/add/
   triad/sum on float64 arrays far larger than the last-level cache, NumPy and torch, best of N).
2. **Dirac operator** ``D psi`` and ``D D^dag psi`` (median time per call after warm-up) for 2D U(1),
   L = 64, batch 64 and 4D SU(3), L = 8 (batch 1 and 16), NumPy and torch (CPU, each thread count of
   ``--torch-threads``). ``numpy`` runs the numba fast path ``wilson_dirac_apply`` where numba is
   installed; ``numpy-generic`` is NumPy with ``LATTICEKIT_FAST_KERNELS=0`` (the Array API operator code).
   Byte model (minimal compulsory traffic, every array once)::

       D psi:        read psi + read links + write D psi
       D D^dag psi:  twice that (two operator applications; the intermediate is written and read)

   psi: ``B Ns Nc V`` complex128 (16 B); links: ``B Nd V`` link matrices as the operator applies them:
   U(1) one complex phase (16 B; the operator computes ``exp(i theta)`` once in its constructor, which
   is not timed), SU(3) 9 complex numbers (144 B). Per site: 2D U(1) 2*32 + 32 = 96 B for ``D psi``;
   4D SU(3) 2*192 + 576 = 960 B. Shifts, temporaries and the conjugate phase copy are not counted.
3. **Batched CG** on ``(D D^dag) x = b`` (relative residual 1e-10, zero start) for 2D U(1) at the
   ``--cg-sizes`` (default L = 8, 16, 32, 64) on ``--cg-batch`` thermalised quenched configurations
   (heatbath, beta = 2, kappa = 0.24):
   :func:`latticekit.linalg.cg` batched over all configurations (time / batch = cost per
   configuration) and on one configuration, each with its Python loop and (NumPy with numba) with the
   compiled whole loop ``fused=D.normal_solver()`` (backends/_numba_cg.py), against ``scipy.sparse.linalg.cg`` per configuration on the explicit sparse matrix
   ``A = D D^dag`` (CSR, assembled from ``D`` applied to chunks of unit vectors, equal to
   ``latticekit.linalg.dense_matrix`` of ``D`` (checked at L <= 16); assembly not timed) and on a
   ``LinearOperator`` applying the sparse ``D`` and ``D^dag`` (the same two-step operator as ours). Iteration counts and agreement of the solutions are recorded.

The JSON (``meta``: date, command line, host, CPU, thread counts, ``OPENBLAS_CORETYPE`` and other
threading variables, versions, load average at start and end) is written atomically (temporary file in
the same folder, then ``os.replace``). Benchmarks are host-side code: they name numpy, scipy and torch
directly; the operator and solver come from latticekit.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg as spla

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import _LLC, _env_info, measure_bandwidth, time_call, write_json_atomic  # noqa: E402  (shared harness)

import latticekit as lk  # noqa: E402
from latticekit import backends  # noqa: E402
from latticekit.actions import WilsonDirac  # noqa: E402
from latticekit.linalg import cg, dense_matrix  # noqa: E402
from latticekit.mc import Heatbath  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - depends on the installation
    torch = None

__all__ = ["dirac_bytes", "main"]



# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def dirac_bytes(batch: int, nd: int, N: int, volume: int) -> int:
    """Minimal compulsory traffic of one ``D psi``: read psi and the links, write the result (bytes).

    >>> dirac_bytes(1, 2, 1, 1)          # 2D U(1): psi 2 x 16 B, 2 phases x 16 B, result 2 x 16 B
    96
    """
    ns = 2 if nd == 2 else 4
    psi = batch * ns * N * volume * 16
    links = batch * nd * volume * (16 if N == 1 else 16 * N * N)
    return 2 * psi + links


def _backend_list(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    """(backend, torch threads) pairs to measure."""
    out: list[tuple[str, int | None]] = []
    for be in [b for b in args.backends.split(",") if b]:
        if be == "torch":
            if torch is None:
                continue
            for t in [int(v) for v in str(args.torch_threads).split(",") if v]:
                out.append(("torch", t))
        else:
            out.append((be, None))
    return out


def _label(be: str, threads: int | None) -> str:
    return be if threads is None else f"{be}-{threads}t"


def _set_threads(threads: int | None) -> None:
    if threads is not None and torch is not None:
        torch.set_num_threads(threads)


class _Backend:
    """``numpy-generic`` is NumPy with the fast paths off (``LATTICEKIT_FAST_KERNELS=0`` while it is
    measured): the Array API code of the operator, for comparison with the numba kernel (``numpy``)."""

    def __init__(self, be: str) -> None:
        self.be = be
        self.array_backend = "numpy" if be == "numpy-generic" else be
        self._old: str | None = None

    def __enter__(self) -> str:
        self._old = os.environ.get("LATTICEKIT_FAST_KERNELS")
        if self.be == "numpy-generic":
            os.environ["LATTICEKIT_FAST_KERNELS"] = "0"
        return self.array_backend

    def __exit__(self, *exc: Any) -> None:
        if self._old is None:
            os.environ.pop("LATTICEKIT_FAST_KERNELS", None)
        else:
            os.environ["LATTICEKIT_FAST_KERNELS"] = self._old


def _quenched_u1(L: int, batch: int, seed: int) -> np.ndarray:
    """Thermalised quenched 2D U(1) configurations at beta = 2 (heatbath + overrelaxation)."""
    lat = lk.Lattice((L, L))
    rng = backends.rng(seed)
    hb = Heatbath(lk.U1, lat, 2.0, rng=rng, n_overrelax=1)
    U = lk.gauge.random_gauge_field(lk.U1, lat, rng, (batch,))
    U, _ = hb.run(U, 40)
    return np.asarray(U)


# ------------------------------------------------------------------------------------------------
# Dirac operator throughput
# ------------------------------------------------------------------------------------------------
def dirac_rows(args: argparse.Namespace, bw: dict[str, Any], report: Callable[[dict[str, Any]], None]) -> None:
    cases = [("u1_2d", lk.U1, (64, 64), 64), ("su3_4d", lk.SU(3), (8, 8, 8, 8), 1)]
    if not args.quick:
        cases.append(("su3_4d", lk.SU(3), (8, 8, 8, 8), 16))
    timing = dict(warmup=2, min_repeats=5, max_repeats=10 if args.quick else 30, budget_s=0.5 if args.quick else 1.5)
    for suite, G, shape, B in cases:
        lat = lk.Lattice(shape)
        rng = backends.rng(11)
        U0 = np.asarray(G.random(rng, (B, lat.nd), lat.shape))
        D0 = WilsonDirac(U0, G, lat, kappa=0.12 if lat.nd == 4 else 0.24)
        psi0 = np.asarray(D0.random_field(rng))
        ref = {"apply": np.asarray(D0.apply(psi0)), "normal": np.asarray(D0.normal(psi0))}
        one = dirac_bytes(B, lat.nd, G.N, lat.volume)
        for be, threads in _backend_list(args):
            with _Backend(be) as abe:  # numpy-generic: the fast paths off
                _set_threads(threads)
                U = backends.from_numpy(U0, backend=abe, copy=True)
                psi = backends.from_numpy(psi0, backend=abe, copy=True)
                t0 = time.perf_counter()
                D = WilsonDirac(U, G, lat, kappa=D0.kappa)
                t_ctor = time.perf_counter() - t0
                for kernel, fn, nbytes, model in (
                        ("apply", D.apply, one, "read psi + read links + write D psi"),
                        ("normal", D.normal, 2 * one, "2 x (read psi + read links + write result)")):
                    got = backends.to_numpy(fn(psi))
                    err = float(np.max(np.abs(got - ref[kernel])) / np.max(np.abs(ref[kernel])))
                    t = time_call(lambda: fn(psi), **timing)
                    row = {"section": "dirac", "suite": suite, "kernel": kernel, "backend": _label(be, threads),
                           "shape": list(shape), "batch": B, "sites": B * lat.volume, "bytes": nbytes,
                           "bytes_model": model, "constructor_s": t_ctor, "max_rel_err_vs_numpy": err, **t}
                    row["fits_in_llc"] = None if _LLC is None else (nbytes <= _LLC)
                    row["ns_per_site"] = t["median_s"] / row["sites"] * 1e9
                    row["GBps"] = nbytes / t["median_s"] / 1e9
                    row["GBps_best"] = nbytes / t["min_s"] / 1e9
                    row["fraction_of_bandwidth"] = row["GBps"] / bw["reference_GBps"]
                    row["fraction_of_bandwidth_best"] = row["GBps_best"] / bw["reference_GBps"]
                    report(row)
                del U, psi, D
                gc.collect()


# ------------------------------------------------------------------------------------------------
# batched CG against scipy
# ------------------------------------------------------------------------------------------------
def _scipy_cg(A: Any, b: np.ndarray, tol: float, maxiter: int) -> tuple[np.ndarray, int, float]:
    n = [0]

    def cb(_xk: Any) -> None:
        n[0] += 1

    t0 = time.perf_counter()
    x, info = spla.cg(A, b, rtol=tol, atol=0.0, maxiter=maxiter, callback=cb)
    dt = time.perf_counter() - t0
    if info != 0:
        raise RuntimeError(f"scipy cg did not converge (info={info})")
    return x, n[0], dt


def _sparse_matrix(D: Any, shape: tuple[int, ...], chunk: int = 512) -> Any:
    """CSR matrix of the operator ``D`` on vectors of ``shape``: ``D`` applied to chunks of unit vectors,
    each chunk's columns kept sparse (no dense n x n matrix: 1 GB at L = 64)."""
    n = int(np.prod(shape))
    parts = []
    for j0 in range(0, n, chunk):
        k = min(chunk, n - j0)
        E = np.zeros((k, n), dtype=np.complex128)
        E[np.arange(k), j0 + np.arange(k)] = 1.0
        cols = np.asarray(D.apply(E.reshape((k,) + shape))).reshape(k, n)  # row j: D e_{j0 + j}
        part = sp.csr_matrix(cols)
        part.eliminate_zeros()
        parts.append(part)
    return sp.vstack(parts).T.tocsr()


def cg_rows(args: argparse.Namespace, report: Callable[[dict[str, Any]], None]) -> None:
    tol, maxiter, kappa = 1e-10, 20000, 0.24
    sizes = [16] if args.quick else [int(v) for v in args.cg_sizes.split(",")]
    batches = [int(v) for v in str(args.cg_batch).split(",")]
    B = max(batches)
    for L in sizes:
        lat = lk.Lattice((L, L))
        U0 = _quenched_u1(L, B, seed=100 + L)
        b0 = np.asarray(WilsonDirac(U0, lk.U1, lat, kappa=kappa).random_field(backends.rng(7)))
        # -- ours: one batched solve over the first Bk configurations, for each batch size Bk ---------
        x_ours = None
        for be, threads in _backend_list(args):
            with _Backend(be) as abe:  # numpy-generic: the fast paths off
                _set_threads(threads)
                U = backends.from_numpy(U0, backend=abe, copy=True)
                b = backends.from_numpy(b0, backend=abe, copy=True)
                # the Python loop of latticekit.linalg.cg, and the compiled whole loop where the backend has
                # one (fused=D.normal_solver(): what solve_normal, EvenOddDirac.solve and the HMC use)
                for variant in ("loop", "compiled loop"):
                    for Bk in batches + [1]:
                        D = WilsonDirac(U[:Bk], lk.U1, lat, kappa=kappa)
                        fused = D.normal_solver() if variant == "compiled loop" else None
                        if variant == "compiled loop" and fused is None:
                            break
                        bk = b[:Bk]
                        state: dict[str, Any] = {}

                        def solve(D: Any = D, bk: Any = bk, fused: Any = fused) -> None:
                            state["x"], state["info"] = cg(D.normal, bk, tol=tol, maxiter=maxiter, batch_ndim=1,
                                                           fused=fused)

                        t = time_call(solve, warmup=1, min_repeats=2 if Bk > 1 else 3,
                                      max_repeats=5 if Bk > 1 else 10,
                                      budget_s=(3.0 if Bk > 1 else 1.0) if not args.quick else 1.0)
                        it = backends.to_numpy(state["info"].iterations)
                        x = backends.to_numpy(state["x"])
                        if be == "numpy" and Bk == B and variant == "loop":
                            x_ours = x
                        kind = "batched" if Bk > 1 else "batch 1"
                        report({"section": "cg", "solver": f"latticekit.cg, {variant} ({kind})",
                                "backend": _label(be, threads), "L": L, "batch": Bk, "tol": tol, "kappa": kappa, **t,
                                "per_config_s": t["median_s"] / Bk, "iterations_mean": float(it.mean()),
                                "iterations_max": int(it.max()),
                                "true_residual_max": float(np.max(backends.to_numpy(state["info"].residual))),
                                "per_config_per_iteration_s": t["median_s"] / Bk / float(it.max())})
                del U, b, D
                gc.collect()
        # -- scipy: per configuration on the explicit sparse matrix -------------------------------
        n_sc = min(B, args.scipy_configs)
        rows = {"csr": [], "linop": []}
        asm = []
        err = []
        for c in range(n_sc):
            t0 = time.perf_counter()
            Dc = WilsonDirac(U0[c], lk.U1, lat, kappa=kappa)
            Ds = _sparse_matrix(Dc, tuple(b0.shape[1:]))
            if c == 0 and L <= 16:  # the chunked assembly against the library's dense matrix
                assert np.array_equal(Ds.toarray(), np.asarray(dense_matrix(Dc)))
            Dh = Ds.conj().T.tocsr()
            A = (Ds @ Dh).tocsr()
            asm.append(time.perf_counter() - t0)
            n = Ds.shape[0]
            lin = spla.LinearOperator((n, n), matvec=lambda v, Ds=Ds, Dh=Dh: Ds @ (Dh @ v), dtype=np.complex128)
            bc = b0[c].reshape(-1)
            for key, op in (("csr", A), ("linop", lin)):
                best = None
                for _ in range(args.scipy_repeats):
                    x, its, dt = _scipy_cg(op, bc, tol, maxiter)
                    best = (x, its, dt) if best is None or dt < best[2] else best
                rows[key].append((best[1], best[2]))
                if key == "csr" and x_ours is not None:
                    err.append(float(np.linalg.norm(best[0] - x_ours[c].reshape(-1)) / np.linalg.norm(best[0])))
        for key, label in (("csr", "scipy.sparse.linalg.cg, CSR A = D D^dag"),
                           ("linop", "scipy.sparse.linalg.cg, LinearOperator D (D^dag v), CSR D")):
            its = [r[0] for r in rows[key]]
            ts = [r[1] for r in rows[key]]
            report({"section": "cg", "solver": label, "backend": "scipy", "L": L, "batch": n_sc, "tol": tol,
                    "kappa": kappa, "per_config_s": statistics.median(ts), "per_config_mean_s": statistics.mean(ts),
                    "iterations_mean": float(np.mean(its)), "iterations_max": int(max(its)),
                    "per_config_per_iteration_s": statistics.median(t / i for t, i in zip(ts, its)),
                    "nnz_A": int(A.nnz), "nnz_D": int(Ds.nnz), "assembly_s_mean": statistics.mean(asm),
                    "max_rel_diff_vs_latticekit": max(err) if err else None})


def cg4d_rows(args: argparse.Namespace, report: Callable[[dict[str, Any]], None]) -> None:
    """4D SU(3) CG on ``D D^dag`` (kappa 0.12, Haar-random links, one configuration and the batch of
    ``--cg4d-batch``), compiled loop against the Python loop, NumPy; CPU time, best of 3."""
    for L in [int(v) for v in args.cg4d_sizes.split(",")]:
        lat = lk.Lattice((L,) * 4)
        for B in (1, args.cg4d_batch):
            rng = backends.rng(300 + L)
            D = WilsonDirac(lk.SU(3).random(rng, (B, 4), lat.shape), lk.SU(3), lat, kappa=0.12)
            b = D.random_field(rng)
            for variant, fused in (("compiled loop", D.normal_solver()), ("loop", None)):
                if variant == "compiled loop" and fused is None:
                    continue
                cg(D.normal, b, tol=1e-10, batch_ndim=1, fused=fused)       # warm-up
                best, info = None, None
                for _ in range(3):
                    t0 = time.process_time()
                    _, info = cg(D.normal, b, tol=1e-10, batch_ndim=1, fused=fused)
                    dt = time.process_time() - t0
                    best = dt if best is None else min(best, dt)
                it = backends.to_numpy(info.iterations)
                report({"section": "cg4d", "solver": f"latticekit.cg, {variant}", "backend": "numpy", "L": L,
                        "batch": B, "tol": 1e-10, "kappa": 0.12, "cpu_s": best, "per_config_s": best / B,
                        "iterations_mean": float(it.mean()), "iterations_max": int(it.max())})


# ------------------------------------------------------------------------------------------------
# Nf = 2 HMC with and without the compiled CG loop
# ------------------------------------------------------------------------------------------------
def hmc_rows(args: argparse.Namespace, report: Callable[[dict[str, Any]], None]) -> None:
    """Trajectories of examples/schwinger_nf2.toml's sampler (2D U(1), beta 2, kappa 0.265, even/odd, one
    Hasenbusch shift 0.2, Omelyan 5 x 2 steps of 0.2) on NumPy, with the compiled CG loop (the default)
    and with it unregistered (the Python loop of latticekit.linalg.cg with the fused updates); same seeds,
    so both runs integrate the same trajectories (dH compared)."""
    from latticekit.backends import _fast
    from latticekit.mc import Nf2HMC

    key = ("wilson_normal_cg", "numpy")
    backends.fast_path(*key[:1], np.zeros(1))          # load the built-in registrations
    compiled = _fast._REGISTRY.get(key)
    for L in ([8] if args.quick else [int(v) for v in args.hmc_sizes.split(",")]):
        lat = lk.Lattice((L, L))
        for chains in [int(v) for v in args.hmc_chains.split(",")]:
            U0 = _quenched_u1(L, chains, seed=200 + L)
            out: dict[str, Any] = {}
            for variant in ("compiled loop", "loop"):
                if variant == "loop":
                    _fast._REGISTRY.pop(key, None)
                try:
                    hmc = Nf2HMC.from_couplings(lk.U1, lat, 2.0, kappa=0.265, rng=backends.rng(11), even_odd=True,
                                                mus=[0.2], tol=1e-10, md_tol=1e-8, maxiter=2000, step_size=0.2,
                                                n_steps=5, integrator="omelyan", n_inner=2)
                    U = U0.copy()
                    U, info = hmc.step(U)                   # warm-up (compilation)
                    n, t0, dH, its = 0, time.perf_counter(), [], 0
                    while n < args.hmc_trajectories:
                        U, info = hmc.step(U)
                        dH.append(np.asarray(info.dH))
                        its += int(np.sum(info.extras["cg_iterations"]))
                        n += 1
                    dt = (time.perf_counter() - t0) / n
                finally:
                    if compiled is not None:
                        _fast._REGISTRY[key] = compiled
                out[variant] = (dt, np.concatenate(dH), its)
                report({"section": "hmc", "solver": f"latticekit.cg, {variant}", "backend": "numpy", "L": L,
                        "batch": chains, "trajectories": n, "s_per_trajectory": dt,
                        "cg_iterations_per_trajectory_per_chain": its / n / chains})
            if "loop" in out and "compiled loop" in out:
                report({"section": "hmc", "solver": "ratio", "backend": "numpy", "L": L, "batch": chains,
                        "speedup_compiled_over_loop": out["loop"][0] / out["compiled loop"][0],
                        "max_abs_dH_difference": float(np.max(np.abs(out["loop"][1] - out["compiled loop"][1])))})


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def _print(row: dict[str, Any]) -> None:
    if row["section"] == "dirac":
        print(f"  dirac {row['suite']:7s} {row['kernel']:7s} {row['backend']:9s} B={row['batch']:3d} "
              f"{row['median_s'] * 1e3:9.3f} ms {row['ns_per_site']:8.1f} ns/site {row['GBps']:6.2f} GB/s "
              f"{100 * row['fraction_of_bandwidth']:5.1f}% of BW (best {100 * row['fraction_of_bandwidth_best']:.1f}%)"
              + ("  [fits in LLC]" if row.get("fits_in_llc") else ""), flush=True)
    elif row["section"] == "cg4d":
        print(f"  cg 4D SU(3) L={row['L']:2d} B={row['batch']:2d} {row['solver']:28s} {row['per_config_s'] * 1e3:9.2f} "
              f"ms/config (CPU), {row['iterations_mean']:.1f} it", flush=True)
    elif row["section"] == "hmc":
        if row["solver"] == "ratio":
            print(f"  hmc L={row['L']:3d} chains={row['batch']:2d}: compiled loop {row['speedup_compiled_over_loop']:.2f}x "
                  f"faster, max |dH difference| {row['max_abs_dH_difference']:.1e}", flush=True)
        else:
            print(f"  hmc L={row['L']:3d} chains={row['batch']:2d} {row['solver']:28s} {row['s_per_trajectory']:8.3f} "
                  f"s/trajectory, {row['cg_iterations_per_trajectory_per_chain']:.0f} CG it/traj/chain", flush=True)
    else:
        print(f"  cg L={row['L']:3d} B={row['batch']:3d} {row['backend']:9s} {row['solver']:58s} "
              f"{row['per_config_s'] * 1e3:9.2f} ms/config, {row['iterations_mean']:.1f} it", flush=True)


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    t_start = time.time()
    result: dict[str, Any] = {"meta": {**_env_info(argv), "scipy": scipy.__version__}, "quick": args.quick}
    n_bw = 1 << (24 if args.quick else 25)
    print(f"bandwidth probe: 3 x {n_bw * 8 / 1e6:.0f} MB arrays ...", flush=True)
    _set_threads(max(int(v) for v in str(args.torch_threads).split(",")) if torch is not None else None)
    bw = measure_bandwidth(n_bw, 3 if args.quick else 5)
    result["bandwidth"] = bw
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in bw["GBps"].items()) + " GB/s", flush=True)
    rows: list[dict[str, Any]] = []
    result["rows"] = rows

    def report(row: dict[str, Any]) -> None:
        rows.append(row)
        _print(row)

    if "dirac" in args.sections:
        dirac_rows(args, bw, report)
    if "cg" in args.sections:
        cg_rows(args, report)
    if "cg4d" in args.sections:
        cg4d_rows(args, report)
    if "hmc" in args.sections:
        hmc_rows(args, report)
    # CG ratios: latticekit per-configuration cost over scipy (CSR) per-configuration cost
    ratios = []
    for L in sorted({r["L"] for r in rows if r["section"] == "cg"}):
        sc = [r for r in rows if r["section"] == "cg" and r["L"] == L and r["backend"] == "scipy"]
        csr = next((r for r in sc if "CSR A" in r["solver"]), None)
        lin = next((r for r in sc if "LinearOperator" in r["solver"]), None)
        for r in rows:
            if r["section"] == "cg" and r["L"] == L and r["backend"] != "scipy":
                ratios.append({"L": L, "backend": r["backend"], "solver": r["solver"], "batch": r["batch"],
                               "ratio_vs_scipy_csr": r["per_config_s"] / csr["per_config_s"] if csr else None,
                               "ratio_vs_scipy_linop": r["per_config_s"] / lin["per_config_s"] if lin else None})
    result["cg_ratios"] = ratios
    for r in ratios:
        print(f"  CG cost per configuration / scipy: L={r['L']} B={r['batch']} {r['backend']} {r['solver']}: "
              f"{r['ratio_vs_scipy_csr']:.2f} (CSR A), "
              f"{r['ratio_vs_scipy_linop']:.2f} (LinearOperator)", flush=True)
    result["meta"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["meta"]["wall_s"] = round(time.time() - t_start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON results file (written atomically)")
    ap.add_argument("--quick", action="store_true", help="smaller run (~2 min)")
    ap.add_argument("--backends", default="numpy,numpy-generic,torch",
                    help="comma list of numpy, numpy-generic (NumPy with LATTICEKIT_FAST_KERNELS=0), torch")
    ap.add_argument("--torch-threads", default="1",
                    help="comma list of torch thread counts to measure (default 1: on a shared 2-core machine "
                         "OpenMP barriers collapse under load)")
    ap.add_argument("--sections", default="dirac,cg,cg4d,hmc", help="comma list of dirac, cg, cg4d, hmc")
    ap.add_argument("--cg4d-sizes", default="4,8", help="comma list of L of the 4D SU(3) CG rows")
    ap.add_argument("--cg4d-batch", type=int, default=4, help="batch of the 4D SU(3) CG rows (also 1)")
    ap.add_argument("--hmc-sizes", default="8,16,32", help="comma list of L of the Nf = 2 HMC rows")
    ap.add_argument("--hmc-chains", default="1,8", help="comma list of chain counts of the Nf = 2 HMC rows")
    ap.add_argument("--hmc-trajectories", type=int, default=5, help="timed trajectories per HMC row")
    ap.add_argument("--cg-batch", default="8,64", help="comma list of batch sizes (configurations per batched "
                    "CG solve); the CG rows run each")
    ap.add_argument("--cg-sizes", default="8,16,32,64", help="comma list of 2D lattice sizes L of the CG rows "
                    "(--quick: 16)")
    ap.add_argument("--scipy-configs", type=int, default=8, help="configurations solved with scipy")
    ap.add_argument("--scipy-repeats", type=int, default=3, help="scipy solves per configuration (best kept)")
    args = ap.parse_args(argv)
    args.sections = args.sections.split(",")
    res = run(args, ["benchmarks/bench_dirac.py"] + argv)
    write_json_atomic(res, args.out)
    print(f"written {args.out} ({res['meta']['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
