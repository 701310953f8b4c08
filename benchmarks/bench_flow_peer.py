"""Flow training step of latticekit against the peer torch code neumc (same 2D U(1) architecture, one thread).

The architecture is that of neumc's ``scripts/u1.py`` (Jagiellonian group, github.com/nmcmc/neumc): 16
gauge-equivariant coupling layers on the stripe masks of Kanwar et al. (``u1_masks_gen``: layer ``i``
updates the links ``mu = i mod 2`` on the stripes ``offset = (i // 2) mod 4``), a circular rational-
quadratic spline on the active plaquettes with ``n_knots = 9`` (8 bins), context nets ``Conv2d``
``2 -> 32 -> 32 -> out`` with 3 x 3 periodic kernels and LeakyReLU, the network input ``(cos, sin)`` of
the frozen plaquettes, uniform (Haar) prior, float32, batch 1024, Adam with lr 1e-3 and the reparametrised
reverse-KL gradient (neumc's ``RTEstimator``). latticekit builds the same model with
``u1_gauge_flow(lattice, masks=[StripeMask(lattice, i % 2, (i // 2) % 4) ...], bins=8, hidden=(32, 32),
kernel_size=3, loop_context=False)``; the script checks that every layer's active links and its
frozen/active/passive plaquettes are those of neumc's masks.

Parameter counts differ by 289 per layer (4624 in 16 layers): neumc's spline has one extra output
channel, a rotation ``t`` of the circle added after the spline (``3 (n_knots - 1) + 1 = 25`` outputs; the
last convolution has ``32 * 9 + 1 = 289`` more weights). latticekit's circular spline has none (24
outputs); the rest of the nets is identical.

One timed *step* is each code's own full training step:

* latticekit: ``Trainer.train_step()`` (prior sample, flow, action, loss, backward, gradient norm,
  fused Adam step, scheduler, its per-step metrics: loss, ESS, var log w);
* neumc: ``optimizer.zero_grad(); loss, logq, logp = RTEstimator.step(batch); optimizer.step()`` and the
  per-step metrics of its ``scripts/u1.py`` (loss, ESS, KL, std of log w, each ``.cpu().numpy().item()``).

Both live in one process with ``torch.set_num_threads(1)``; blocks of ``--block-steps`` steps alternate
between them (the order swapped every block), so slow phases of a shared machine hit both alike. The
JSON records per-block CPU (``process_time``) and wall times per step, their medians, the median and
spread of the per-block ratio latticekit / neumc, the parameter counts, load averages at start and end,
and the command.

``--ess-minutes M`` adds a quality comparison: each code trains for ``M`` CPU minutes (same seeds,
same lattice, same batch), then ``--ess-samples`` fresh samples of each are drawn and the Kish ESS / N of
their importance weights (with the same formula for both) is reported, with the number of steps each
code took in the budget.

neumc is not on PyPI; to install it from a clone::

    git clone https://github.com/nmcmc/neumc && pip install --no-deps -e neumc/neumc   # needs numpy, scipy

Run by hand (not part of the test suite)::

    python benchmarks/bench_flow_peer.py --L 8,16 --out /tmp/flow_peer.json
    python benchmarks/bench_flow_peer.py --L 8 --blocks 4 --ess-minutes 3 --out /tmp/flow_peer_ess.json
    python benchmarks/bench_flow_peer.py --L 8,16 --blocks 0 --flops --out /tmp/flow_peer_flops.json

``--context-dtype bfloat16`` runs latticekit's context networks in bfloat16 (``TrainConfig.context_dtype``,
mixed precision; neumc has no such option and stays float32).

``--flops`` counts each code's floating-point work per step (``FlopCounterMode``) and profiles the share of
the convolutions, against the rate of a dense float32 matrix product on the same thread (the reference).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from typing import Any, Callable

import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.analysis import ess as lk_ess
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow
from latticekit.flows.masks import StripeMask
from latticekit.utils import atomic_write

try:
    import neumc
    import neumc.nf.cs_coupling
    import neumc.nf.gauge_masks
    import neumc.nf.nn
    import neumc.nf.prior
    import neumc.nf.u1_equiv
    import neumc.physics.u1
    import neumc.training.gradient_estimator
    import neumc.utils.utils
except ImportError as exc:  # pragma: no cover - depends on the machine
    neumc = None
    _NEUMC_ERROR = str(exc)

INSTALL = ("neumc is not installed. It is not on PyPI; install it from a clone of github.com/nmcmc/neumc:\n"
           "    git clone https://github.com/nmcmc/neumc && pip install --no-deps -e neumc/neumc\n"
           "(it needs numpy and scipy).")


def build_latticekit(L: int, a: argparse.Namespace) -> tuple[Trainer, Model]:
    lat = lk.Lattice((L, L))
    masks = [StripeMask(lat, i % 2, (i // 2) % 4) for i in range(a.layers)]
    torch.manual_seed(a.seed)
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, masks=masks, bins=a.knots - 1, hidden=a.hidden,
                                                       kernel_size=a.kernel, loop_context=False))
    tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, a.beta),
                 TrainConfig(steps=10**9, batch_size=a.batch, lr=a.lr, dtype=a.dtype, seed=a.seed,
                             compile="layers" if a.compile_layers else a.compile,
                             context_dtype=None if a.context_dtype == "float32" else a.context_dtype))
    return tr, model


def build_neumc(L: int, a: argparse.Namespace) -> dict[str, Any]:
    """neumc's scripts/u1.py model (masking "u1", coupling "cs") and its RT training step."""
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(a.seed)
    masks = neumc.nf.gauge_masks.u1_masks_gen(lattice_shape=(L, L), float_dtype=dtype, device="cpu")

    def make_plaq_coupling(mask):
        net = neumc.nf.nn.make_conv_net(in_channels=2, out_channels=3 * (a.knots - 1) + 1,
                                        hidden_channels=list(a.hidden), kernel_size=a.kernel,
                                        use_final_tanh=False, dilation=1, float_dtype=dtype)
        return neumc.nf.cs_coupling.CSCoupling(net, mask, a.knots)

    layers = neumc.nf.u1_equiv.make_u1_equiv_layers(loops_function=None, make_plaq_coupling=make_plaq_coupling,
                                                    masks=masks, n_layers=a.layers, device="cpu").to(dtype)
    prior = neumc.nf.prior.MultivariateUniform(torch.zeros((2, L, L), dtype=dtype),
                                               2 * torch.pi * torch.ones((2, L, L), dtype=dtype))
    action = neumc.physics.u1.U1GaugeAction(a.beta)
    est = neumc.training.gradient_estimator.RTEstimator(prior, layers, action)
    opt = torch.optim.Adam(layers.parameters(), lr=a.lr)
    u = neumc.utils.utils

    def step() -> dict[str, float]:
        opt.zero_grad()
        loss, logq, logp = est.step(a.batch)
        opt.step()
        return {"loss": loss.cpu().numpy().item(), "ess": u.ess(logp, logq).cpu().numpy().item(),
                "dkl": u.dkl(logp, logq).cpu().numpy().item(), "std_dkl": (logp - logq).std().cpu().numpy().item()}

    return {"layers": layers, "prior": prior, "action": action, "step": step}


def check_masks(model: Model, L: int, a: argparse.Namespace) -> None:
    """Every latticekit layer updates neumc's active links and has its frozen/active/passive plaquettes."""
    gen = neumc.nf.gauge_masks.u1_masks_gen(lattice_shape=(L, L), float_dtype=torch.float32, device="cpu")
    for i, layer in enumerate(model.flow.layers):
        link_mask, (plaq,) = next(gen)
        if not torch.equal(layer.mask.active_links().to(link_mask.dtype), link_mask):
            raise AssertionError(f"layer {i}: active links differ from neumc's")
        classes = layer.mask.plaquette_classes()
        for kind in ("frozen", "active", "passive"):
            if not torch.equal(classes[kind][0].to(torch.uint8), plaq[kind].to(torch.uint8)):
                raise AssertionError(f"layer {i}: {kind} plaquettes differ from neumc's")


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def paired(fns: dict[str, Callable[[], Any]], blocks: int, block_steps: int, warmup: int) -> dict[str, Any]:
    for f in fns.values():
        for _ in range(warmup):
            f()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for rep in range(blocks):
        for name in (names if rep % 2 == 0 else names[::-1]):
            t0, w0 = time.process_time(), time.perf_counter()
            for _ in range(block_steps):
                fns[name]()
            cpu[name].append((time.process_time() - t0) / block_steps)
            wall[name].append((time.perf_counter() - w0) / block_steps)
    r_cpu = [x / y for x, y in zip(cpu["latticekit"], cpu["neumc"])]
    r_wall = [x / y for x, y in zip(wall["latticekit"], wall["neumc"])]
    return {"cpu_s_per_step": cpu, "wall_s_per_step": wall,
            "median_cpu_s_per_step": {k: statistics.median(v) for k, v in cpu.items()},
            "median_wall_s_per_step": {k: statistics.median(v) for k, v in wall.items()},
            "ratio_cpu_latticekit_over_neumc": {"median": statistics.median(r_cpu), "min": min(r_cpu),
                                                "max": max(r_cpu)},
            "ratio_wall_latticekit_over_neumc": {"median": statistics.median(r_wall), "min": min(r_wall),
                                                 "max": max(r_wall)}}


def kish(log_w: torch.Tensor) -> float:
    return float(lk_ess(log_w.double().cpu()))


def ess_budget(L: int, a: argparse.Namespace) -> dict[str, Any]:
    """Train each code for a.ess_minutes CPU minutes (interleaved in chunks), then Kish ESS/N of fresh samples."""
    tr, model = build_latticekit(L, a)
    nm = build_neumc(L, a)
    budget = 60.0 * a.ess_minutes
    used = {"latticekit": 0.0, "neumc": 0.0}
    steps = {"latticekit": 0, "neumc": 0}
    fns = {"latticekit": tr.train_step, "neumc": nm["step"]}
    while min(used.values()) < budget:
        for name in fns:
            if used[name] >= budget:
                continue
            t0 = time.process_time()
            fns[name]()
            used[name] += time.process_time() - t0
            steps[name] += 1
    n, chunk = a.ess_samples, 1024
    with torch.no_grad():
        g = lk.backends.rng(a.seed + 7, backend="torch")
        lw = []
        for i in range(0, n, chunk):
            x, log_q = model.sample(min(chunk, n - i), g)
            lw.append(-tr.action_fn(x) - log_q)
        lw_lk = torch.cat(lw)
        torch.manual_seed(a.seed + 7)
        lw = []
        for i in range(0, n, chunk):
            z = nm["prior"].sample_n(min(chunk, n - i))
            x, log_j = nm["layers"](z)
            lw.append(-nm["action"](x) - (nm["prior"].log_prob(z) - log_j))
        lw_nm = torch.cat(lw)
    return {"cpu_budget_s": budget, "steps": steps, "cpu_s_used": used, "ess_samples": n,
            "ess_per_n": {"latticekit": kish(lw_lk), "neumc": kish(lw_nm)},
            "var_log_w": {"latticekit": float(lw_lk.double().var()), "neumc": float(lw_nm.double().var())}}


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a dense ``n x n`` matrix product on this thread (best of ``repeats``): the reference rate."""
    x, y = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(x, y)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(x, y)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def flop_profile(L: int, a: argparse.Namespace) -> dict[str, Any]:
    """Floating-point work and where the CPU time goes in one training step of each code.

    FLOPs by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add; convolutions forward and
    backward, matrix products; elementwise work is not counted). Time: the median CPU time of
    ``a.flops_steps`` plain steps, and the share of the convolutions (forward ``aten::convolution`` and
    ``aten::convolution_backward``, total time including their oneDNN calls) in ``a.flops_steps`` steps
    under ``torch.profiler``; the convolution rate is their FLOPs over that share of the plain step."""
    from torch.utils.flop_counter import FlopCounterMode

    tr, _ = build_latticekit(L, a)
    nm = build_neumc(L, a)
    res: dict[str, Any] = {}
    for name, fn in (("latticekit", tr.train_step), ("neumc", nm["step"])):
        for _ in range(a.warmup):
            fn()
        with FlopCounterMode(display=False) as fc:
            fn()
        ops = {str(k): int(v) for k, v in fc.get_flop_counts()["Global"].items()}
        plain = []
        for _ in range(a.flops_steps):
            t0 = time.process_time()
            fn()
            plain.append(time.process_time() - t0)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            t0 = time.process_time()
            for _ in range(a.flops_steps):
                fn()
            prof_cpu = time.process_time() - t0
        ka = prof.key_averages()
        conv_us = sum(e.cpu_time_total for e in ka if e.key in ("aten::convolution", "aten::convolution_backward"))
        share = conv_us / 1e6 / prof_cpu
        step = statistics.median(plain)
        conv_flops = sum(v for k, v in ops.items() if "convolution" in k)
        res[name] = {"flops_per_step": sum(ops.values()), "flops_by_op": ops,
                     "cpu_s_per_step": step, "cpu_s_per_step_all": plain,
                     "convolution_share_of_step": share, "convolution_s_per_step": share * step,
                     "convolution_gflops_per_s": conv_flops / (share * step) / 1e9,
                     "rest_s_per_step": (1.0 - share) * step}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", default="8,16", help="comma-separated lattice sizes (multiples of 4)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", default="32,32")
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--knots", type=int, default=9, help="neumc n_knots; latticekit bins = knots - 1")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--compile", action="store_true", help="latticekit: torch.compile'd splines")
    p.add_argument("--compile-layers", action="store_true", help="latticekit: every layer torch.compile'd "
                   "(TrainConfig.compile = 'layers'; instead of --compile)")
    p.add_argument("--context-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="latticekit: dtype of the context networks' convolutions (TrainConfig.context_dtype)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--blocks", type=int, default=8, help="timed blocks per code and lattice size (0: no timing)")
    p.add_argument("--block-steps", default="", help="steps per block per L, e.g. '3,1' (default 3 at L<=8, else 1)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--ess-minutes", type=float, default=0.0, help="also compare ESS after this many CPU minutes "
                   "of training of each code (first lattice size only); 0: skip")
    p.add_argument("--ess-samples", type=int, default=8192)
    p.add_argument("--flops", action="store_true", help="also count each step's FLOPs and profile the share of "
                   "the convolutions, against the dense matrix-product rate of this thread")
    p.add_argument("--flops-steps", type=int, default=3, help="steps timed and profiled per code with --flops")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc's mmap threshold alone (by default "
                   "both codes run with latticekit.backends.configure_malloc(), as `latticekit train` does)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if neumc is None:
        sys.exit(f"{INSTALL}\n(import error: {_NEUMC_ERROR})")
    a.hidden = tuple(int(h) for h in a.hidden.split(",") if h.strip())
    Ls = [int(v) for v in a.L.split(",") if v.strip()]
    bsteps = [int(v) for v in a.block_steps.split(",") if v.strip()] or [3 if L <= 8 else 1 for L in Ls]
    torch.set_num_threads(1)
    # both codes in this process: large activations from the heap, as in `latticekit train` (backends/_malloc.py)
    malloc = lk.backends.configure_malloc() if not a.default_malloc else False
    out: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                           "configure_malloc": malloc,
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "neumc_path": os.path.dirname(neumc.__file__),
                           "loadavg_start": os.getloadavg(),
                           "architecture": {"layers": a.layers, "hidden": list(a.hidden), "kernel": a.kernel,
                                            "knots": a.knots, "bins": a.knots - 1, "batch": a.batch,
                                            "dtype": a.dtype, "beta": a.beta, "lr": a.lr,
                                            "latticekit_compile": "layers" if a.compile_layers else a.compile,
                                            "latticekit_context_dtype": a.context_dtype},
                           "param_difference_note": "neumc's circular spline has one extra output channel (a "
                           "rotation t of the circle): 3 K + 1 outputs instead of 3 K, i.e. hidden[-1] * kernel^2 "
                           "+ 1 more parameters per layer",
                           "results": []}

    def save() -> None:
        out["loadavg_end"] = os.getloadavg()
        atomic_write(a.out, (json.dumps(out, indent=1) + "\n").encode())

    for L, bs in zip(Ls, bsteps):
        if a.blocks < 1:
            break
        tr, model = build_latticekit(L, a)
        nm = build_neumc(L, a)
        check_masks(model, L, a)
        pl, pn = n_params(model), n_params(nm["layers"])
        extra = a.layers * (a.hidden[-1] * a.kernel ** 2 + 1)
        if pn - pl != extra:
            raise AssertionError(f"parameter counts {pl} (latticekit) and {pn} (neumc): expected a difference {extra}")
        la0 = os.getloadavg()
        r = paired({"latticekit": tr.train_step, "neumc": nm["step"]}, a.blocks, bs, a.warmup)
        r.update({"L": L, "block_steps": bs, "blocks": a.blocks, "params": {"latticekit": pl, "neumc": pn},
                  "loadavg_before": la0, "loadavg_after": os.getloadavg()})
        out["results"].append(r)
        m = r["median_cpu_s_per_step"]
        rr = r["ratio_cpu_latticekit_over_neumc"]
        print(f"L={L}: CPU s/step latticekit {m['latticekit']:.3f}, neumc {m['neumc']:.3f}; latticekit/neumc per "
              f"block median {rr['median']:.3f} (min {rr['min']:.3f}, max {rr['max']:.3f}); params {pl} vs {pn}; "
              f"load {la0[0]:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
        save()
    if a.flops:
        dt = getattr(torch, a.dtype)
        out["matmul_gflops_per_s"] = matmul_peak(dt)
        out["flops"] = []
        for L in Ls:
            f = flop_profile(L, a)
            f["L"] = L
            f["loadavg"] = os.getloadavg()
            out["flops"].append(f)
            lk_, nm_ = f["latticekit"], f["neumc"]
            print(f"L={L}: GFLOP/step latticekit {lk_['flops_per_step'] / 1e9:.1f}, neumc {nm_['flops_per_step'] / 1e9:.1f}; "
                  f"convolutions {100 * lk_['convolution_share_of_step']:.0f}% / {100 * nm_['convolution_share_of_step']:.0f}% "
                  f"of the step at {lk_['convolution_gflops_per_s']:.1f} / {nm_['convolution_gflops_per_s']:.1f} GFLOP/s "
                  f"(matmul {out['matmul_gflops_per_s']:.1f}); rest {lk_['rest_s_per_step']:.3f} / "
                  f"{nm_['rest_s_per_step']:.3f} s", flush=True)
            save()
    if a.ess_minutes > 0:
        e = ess_budget(Ls[0], a)
        e["L"] = Ls[0]
        out["ess_comparison"] = e
        print(f"ESS after {a.ess_minutes} CPU min at L={Ls[0]}: latticekit {e['ess_per_n']['latticekit']:.3f} "
              f"({e['steps']['latticekit']} steps), neumc {e['ess_per_n']['neumc']:.3f} ({e['steps']['neumc']} steps)",
              flush=True)
        save()


if __name__ == "__main__":
    main()
