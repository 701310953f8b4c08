#!/usr/bin/env bash
# One device session for issue 19 item 3 (run by hand on a GPU machine from the repository root; writes under $OUT):
#   the CUDA cases of tests/flows/test_compiled_layers.py (compiled layers, replayed as CUDA graphs, against the
#   eager layers) and of tests/flows/test_context_precision.py (bfloat16 context networks), then the 2D U(1) flow
#   training step of the table (L = 16, batch 1024, float32) eager, with bfloat16 context networks, with
#   compiled layers (Inductor, CUDA graphs; float32 and bfloat16 contexts) and with the layers replayed as CUDA
#   graphs of torch's own kernels (backend "cudagraphs"), paired in one process (benchmarks/flow_step_compiled.py).
# Budget: ~2 min of tests, up to 6.5 min of benchmark (16 layers compile three times, forward and backward).
# Wheels that a bare GPU image lacks travel in .whl/ (array-api-compat, array-api-strict).
# DEVICE=cpu runs the same steps on the CPU with a small batch (a check of the script, not a measurement).
source benchmarks/gpu_setup.sh
timeout 150 $PYTEST tests/flows/test_compiled_layers.py tests/flows/test_context_precision.py \
  -k "$DEVICE or refusals" 2>&1 | tail -5 \
  | tee "$OUT/pytest_compiled_layers.txt"
echo "tests $(( $(date +%s) - t0 )) s"
if [ "$DEVICE" = cuda ]; then
  ARGS="--device cuda --shape 16,16 --batch 1024 --blocks 4 --block-steps 5"
  ARGS="$ARGS --variants eager,bf16,layers,layers-bf16,layers-cudagraphs"
  NAME=flow_step_compiled_u1_L16_b1024_gpu.json
else
  ARGS="--device cpu --batch 16 --variants eager,bf16,layers-bf16 --blocks 2 --block-steps 2"
  NAME=flow_step_compiled_dry_run_cpu.json
fi
timeout 390 python3 benchmarks/flow_step_compiled.py --config examples/u1_2d_flow.toml --dtype float32 $ARGS \
  --out "$OUT/$NAME" 2>&1 | grep -v "^ " | tail -12
echo "total $(( $(date +%s) - t0 )) s"
