#!/usr/bin/env bash
# One device session for the 4D QCD flows (run by hand on a GPU machine from the repository root; writes under $OUT):
#   the CUDA cases of the new layer tests, the step-cost/memory scaling against L, and a budgeted 4^4 training + sampling.
# Wheels that a bare GPU image lacks travel in .whl/ (array-api-compat, array-api-strict).
set -uo pipefail
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
# the package from the tree without an install: latticekit.backends lives in backends/ (pyproject's package-dir)
ln -sfn ../backends latticekit/backends && export PYTHONPATH="$PWD:$PYTHONPATH"
nvidia-smi -L; python3 -c "import torch, latticekit; print(torch.__version__, torch.cuda.get_device_name(0))"
echo "setup $(( $(date +%s) - t0 )) s"
timeout 90 python3 -m pytest -q -x -p no:cacheprovider tests/flows/test_gauge_couplings.py tests/flows/pseudofermion/test_layers.py \
  -k "cuda and (shifted or gamma or 4d)" 2>&1 | tail -5 | tee "$OUT/pytest_cuda.txt"
echo "tests $(( $(date +%s) - t0 )) s"
cd benchmarks
# memory (measured on the CPU, float64): ~0.4 MB (marginal) and ~1.9 MB (conditional) per site and sample, so
# at batch 32 the 8^4 conditional stage (~250 GB) is recorded as out of memory; 2^4-6^4 fit. With
# --recompute (activation checkpointing) ~0.25 and ~0.7 MB: 8^4 at batch 32 fits (second run)
timeout 140 python3 bench_qcd4d.py scaling --device cuda --L 2 4 6 8 --batch 32 --steps 3 --out "$OUT/qcd4d_scaling_h200.json" 2>&1 | tail -12
timeout 90 python3 bench_qcd4d.py scaling --device cuda --L 8 --batch 32 --steps 2 --recompute --out "$OUT/qcd4d_scaling_h200_recompute.json" 2>&1 | tail -3
echo "scaling $(( $(date +%s) - t0 )) s"
timeout 250 python3 qcd4d_train_budget.py --L 4 --device cuda --batch 32 --budget 120 --n 256 --n-pf 8 \
  --scaling "$OUT/qcd4d_scaling_h200.json" --out "$OUT/qcd4d_train_L4_h200.json" 2>&1 | tail -4
echo "total $(( $(date +%s) - t0 )) s"
