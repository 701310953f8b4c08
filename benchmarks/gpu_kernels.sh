#!/usr/bin/env bash
# One device session for issue 19 (run by hand on a GPU machine from the repository root; writes under $OUT):
#   the CUDA cases of the fast-path and fused-CG tests (tests/test_fast_paths_torch.py: the compiled SU(N) and
#   Wilson-Dirac kernels against the generic code on CUDA), then one bench_gpu.py run with the generic rows and the
#   torch.compile rows side by side (U(1), phi^4, SU(3), Dirac, CG; the compiled CG rows use the compiled
#   Wilson-Dirac hopping term and CG updates). It compiles ~10 graphs (Triton): allowed 5 minutes; ~10 min in all.
# Wheels that a bare GPU image lacks travel in .whl/ (array-api-compat, array-api-strict).
# DEVICE=cpu runs the same steps on torch CPU with small sizes (a check of the script, not a measurement).
source benchmarks/gpu_setup.sh
timeout 150 $PYTEST tests/linalg/test_cg_fused.py tests/linalg/test_solvers.py \
  tests/test_fast_paths.py 2>&1 | tail -5 | tee "$OUT/pytest_kernels.txt"
# the compiled SU(N)/Dirac kernels on this device only (-k selects the device parameter)
timeout 120 $PYTEST tests/test_fast_paths_torch.py -k "$DEVICE" 2>&1 | tail -5 | tee -a "$OUT/pytest_kernels.txt"
echo "tests $(( $(date +%s) - t0 )) s"
Q=""; [ "$DEVICE" = cpu ] && Q="--quick"
# one run: every row of the generic code and, beside it, the torch+compile row (the JSON is rewritten after each
# section, so a run cut off by the timeout keeps the sections it finished)
timeout 300 python3 benchmarks/bench_gpu.py --device "$DEVICE" $Q --backends torch --sections u1,phi4,su3,dirac,cg \
  --compiled --out "$OUT/gpu_kernels_compiled.json" 2>&1 | tail -40
echo "total $(( $(date +%s) - t0 )) s"
