#!/usr/bin/env bash
# GPU checks and embedding benchmarks, on a CUDA machine with JAX, PyTorch and torchvision
# (Keras 3 on the JAX backend; no TensorFlow needed). Writes tables to $OUT (default
# benchmarks/results) and prints how long each step took.
# Usage: bash benchmarks/gpu.sh [IMAGES_DIR]   (default ../shared/data/imagenette-val)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
IMAGES=${1:-../shared/data/imagenette-val}  # or tests/data/photos (100 photos) where ../shared is absent
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
BENCH_GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
export BENCH_GPU_NAME
TAG=${GPU_TAG:-gpu-$(echo "$BENCH_GPU_NAME" | grep -oiE 'h100|h200|a100|l4|t4' | head -1 | tr 'A-Z' 'a-z')}
status=0
step() {  # step NAME COMMAND...: run, time, remember failure, go on
    local name=$1 started; shift; started=$(date +%s)
    echo "::: $name"
    "$@" || { echo "::: $name FAILED"; status=1; }
    echo "::: $name took $(( $(date +%s) - started )) s"
}
bench() {  # bench NAME ARGS...: one embedding benchmark, its table copied to $OUT
    local name=$1; shift
    python3 benchmarks/embedding.py --images "$IMAGES" --count 2000 --repeat 16 --rounds 3 --naive-count 16 \
        --batch-size 256 --name "$name" "$@" && copy "$name"
}
copy() { [ "$OUT" = benchmarks/results ] || cp "benchmarks/results/$1.md" "$OUT/"; }
sweep() {  # where the time goes, per decoder and worker count, on 64,000 images
    python3 benchmarks/decoders.py --images "$IMAGES" --batch-size 256 --repeat 32 \
        --configs process:12,process:8,process:16,gpu:4 --name "$TAG-jax-fp32-decoders-long" \
        && copy "$TAG-jax-fp32-decoders-long"
}
step "GPU decoder tests" python3 -m pytest -q -s -p no:cacheprovider tests_gpu
step "fp32, default decoder" bench "$TAG-jax-fp32"
step "bf16, default decoder" bench "$TAG-jax-bf16" --dtype mixed_bfloat16
step "decoders and workers" sweep
step "fp32, gpu decoder" bench "$TAG-jax-fp32-gpu" --decoder gpu
exit $status
