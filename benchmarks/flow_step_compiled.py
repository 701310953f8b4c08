"""The flow training step with compiled layers against the eager step (issue 19, item 3), paired in one process.

Trainers of one configuration (an example TOML, optionally with another lattice, batch or dtype) are built with
the same seeds and differ only in how the layers run:

* ``eager``: the default;
* ``splines``: ``compile = "splines"`` (the splines compiled, the rest eager);
* ``layers``: ``compile = "layers"`` (each layer a compiled graph of its own; on CUDA replayed as CUDA graphs,
  Inductor's ``reduce-overhead`` mode);
* ``layers-cudagraphs``: the layers traced and replayed as CUDA graphs of torch's own kernels
  (``compile_layers(model, backend="cudagraphs")``: no code generation; CUDA only);
* ``bf16``, ``layers-bf16``: ``eager`` and ``layers`` with the context networks' convolutions in bfloat16
  (``context_dtype = "bfloat16"``, mixed precision; float32 only). Their losses differ from the float32 ones by
  bfloat16 rounding (order 1e-3 relative), not by float32 rounding.

Each trainer first takes ``--warmup`` steps (the compilation, reported as ``first_steps_s``), then blocks of
``--block-steps`` steps alternate between the trainers (the order rotated every block), so that a slow phase of a
shared machine hits all alike. Reported per variant: the median wall and CPU time per step over the blocks and the
median of the per-block ratio to ``eager``; and, as the check that the variants compute the same thing, the
losses of the warm-up steps, which start from the same parameters and prior samples (float64: equal to rounding;
float32: the compiler's reordering is amplified by the splines, so they agree to float32 rounding only at first).

Run by hand (one thread on the CPU; the GPU run is benchmarks/gpu_flow_step.sh):

    python benchmarks/flow_step_compiled.py --config examples/u1_2d_flow.toml --dtype float64 \
        --out benchmarks/results/flow_step_compiled_u1_L8_f64.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import finish, machine  # noqa: E402

from latticekit.app.config import FlowConfig, read_toml  # noqa: E402
from latticekit.app.flows.models import build_flow  # noqa: E402
from latticekit.flows import TrainConfig, Trainer, compile_layers  # noqa: E402

VARIANTS = ("eager", "splines", "layers", "layers-cudagraphs", "bf16", "layers-bf16")


def trainer(cfg: FlowConfig, variant: str, dtype: str, batch: int, device: str) -> Trainer:
    model, action, _ = build_flow(cfg)
    option: bool | str = {"eager": False, "splines": "splines", "layers": "layers",
                          "layers-bf16": "layers"}.get(variant, False)
    tr = Trainer(model, action, TrainConfig(steps=10 ** 9, batch_size=batch, lr=cfg.train.lr, dtype=dtype,
                                            seed=cfg.train.seed, device=device, compile=option,
                                            optimizer=cfg.train.optimizer,
                                            context_dtype="bfloat16" if variant.endswith("bf16") else None))
    if variant == "layers-cudagraphs":
        compile_layers(tr.model, backend="cudagraphs")
    return tr


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/u1_2d_flow.toml")
    ap.add_argument("--shape", default=None, help="lattice shape, e.g. 16,16 (default: the config's)")
    ap.add_argument("--batch", type=int, default=None, help="training batch (default: the config's)")
    ap.add_argument("--layers", type=int, default=None, help="model.n_layers (default: the config's)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default="eager,splines,layers")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--block-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    ap.add_argument("--python-profile", type=int, default=0, metavar="STEPS",
                    help="also run STEPS steps of each variant under cProfile: the time in latticekit's Python "
                    "frames, torch's Python frames and the operators (C++ builtins), and the Python calls per step")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or "eager" not in variants:
        ap.error(f"--variants: expected 'eager' and any of {VARIANTS}, got {args.variants!r}")
    if "layers-cudagraphs" in variants and not args.device.startswith("cuda"):
        ap.error("--variants: layers-cudagraphs needs --device cuda")
    torch.set_num_threads(args.threads)
    data_cfg = read_toml(args.config)
    if args.shape:
        data_cfg["lattice"]["shape"] = [int(v) for v in args.shape.split(",")]
    if args.layers:
        data_cfg["model"]["n_layers"] = args.layers
    cfg = FlowConfig.from_dict(data_cfg)
    batch = args.batch or cfg.train.batch_size
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    data: dict[str, Any] = {"command": command, "machine": machine(), "config": args.config,
                            "shape": list(cfg.lattice.shape), "batch": batch,
                            "n_layers": data_cfg["model"].get("n_layers"), "dtype": args.dtype,
                            "device": args.device, "block_steps": args.block_steps, "variants": {}}
    if args.device.startswith("cuda"):
        data["machine"]["gpu"] = torch.cuda.get_device_name(0)
    trainers = {}
    for v in variants:
        trainers[v] = tr = trainer(cfg, v, args.dtype, batch, args.device)
        t = time.perf_counter()
        losses = []
        for _ in range(args.warmup):
            losses.append(tr.train_step()["loss"])
        sync(args.device)
        data["variants"][v] = {"first_steps_s": round(time.perf_counter() - t, 3), "warmup_losses": losses}
        print(v, "warm-up", data["variants"][v], flush=True)
        finish(args.out, data)   # what is measured so far survives a timeout of the device session
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for b in range(args.blocks):
        order = variants[b % len(variants):] + variants[:b % len(variants)]
        for v in order:
            tr = trainers[v]
            sync(args.device)
            t, c = time.perf_counter(), time.process_time()
            for _ in range(args.block_steps):
                tr.train_step()
            sync(args.device)
            wall[v].append((time.perf_counter() - t) / args.block_steps)
            cpu[v].append((time.process_time() - c) / args.block_steps)
        print("block", b, {v: round(wall[v][-1], 5) for v in variants}, flush=True)
        data["blocks_so_far_wall_s_per_step"] = wall
        finish(args.out, data)
    ref = data["variants"]["eager"]["warmup_losses"]
    for v in variants:
        ratios = [w / e for w, e in zip(wall[v], wall["eager"])]
        d = data["variants"][v]
        d.update({"wall_s_per_step": statistics.median(wall[v]), "cpu_s_per_step": statistics.median(cpu[v]),
                  "ratio_to_eager": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                  "blocks_wall_s_per_step": wall[v],
                  "warmup_loss_max_rel_diff": max(abs(a - b) / max(abs(b), 1e-300)
                                                  for a, b in zip(d["warmup_losses"], ref))})
        print(v, {k: d[k] for k in ("wall_s_per_step", "cpu_s_per_step", "ratio_to_eager", "ratio_min", "ratio_max",
                                    "warmup_loss_max_rel_diff")}, flush=True)
    data.pop("blocks_so_far_wall_s_per_step", None)   # now per variant, with the ratios
    if args.python_profile:
        for v in variants:
            data["variants"][v]["python_profile"] = python_profile(trainers[v], args.python_profile)
            print(v, "cProfile", data["variants"][v]["python_profile"], flush=True)
    finish(args.out, data)
    return 0


def python_profile(tr: Trainer, steps: int) -> dict[str, float]:
    """Seconds per step under ``cProfile`` by where the time is spent (own time of the frames), and calls per
    step. The profiler adds a cost per Python call, so the Python shares are upper bounds."""
    import cProfile
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        tr.train_step()
    pr.disable()
    st = pstats.Stats(pr).stats  # type: ignore[attr-defined]

    def own(test: Any) -> float:
        return sum(v[2] for k, v in st.items() if test(k[0])) / steps

    return {"s_per_step": own(lambda f: True),
            "latticekit_python_s": own(lambda f: "/latticekit/" in f or "/backends/" in f),
            "torch_python_s": own(lambda f: "/torch/" in f),
            "builtins_s": own(lambda f: f == "~"),
            "python_calls_per_step": sum(v[1] for v in st.values()) / steps}


if __name__ == "__main__":
    raise SystemExit(main())
