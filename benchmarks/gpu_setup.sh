# Sourced by the device-session scripts (gpu_kernels.sh, gpu_flow_step.sh) from the repository root: the
# environment, $OUT and $DEVICE (cuda, or cpu for a dry run), the wheels a bare GPU image lacks (.whl/:
# array-api-compat, array-api-strict: `pip download --no-deps array-api-compat array-api-strict -d .whl` where there is
# network), the package from the tree without an install, and the versions; sets t0 and PYTEST.
set -uo pipefail
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda}
t0=$(date +%s)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
# the package from the tree without an install: latticekit.backends lives in backends/ (pyproject's package-dir)
if [ ! -e latticekit/backends ]; then ln -sfn ../backends latticekit/backends; trap 'rm -f latticekit/backends' EXIT; fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
if [ "$DEVICE" = cuda ]; then nvidia-smi -L; fi
python3 -c "import torch, latticekit; print(torch.__version__, torch.cuda.is_available())"
# pytest in this process (-o addopts: none of pyproject's pytest-xdist options, which a bare image may lack)
PYTEST="python3 -m pytest -q -p no:cacheprovider -o addopts=--import-mode=importlib"
echo "setup $(( $(date +%s) - t0 )) s"
