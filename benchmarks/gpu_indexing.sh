#!/usr/bin/env bash
# Indexing on a GPU, end to end (issue 26): on the GPU machine, with Keras on JAX and Milvus Lite.
# Generates the photos there, then runs benchmarks/indexing.py (index_paths against embedding alone
# and inserting alone, per number of writes in flight) and benchmarks/cli_indexing.py (the CLI's
# `index`, first run and unchanged re-run, against embedding alone). Tables go to $OUT (default
# benchmarks/results). Needs keras, namex, optree, pymilvus, milvus-lite, cachetools, orjson and
# python-dotenv importable (carried as wheels: see benchmarks/README.md).
# Usage: bash benchmarks/gpu_indexing.sh [PHOTOS] [INDEXING_COUNT]   (defaults 64000, 16384)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
PHOTOS=${1:-64000}
COUNT=${2:-16384}
BATCH=${BATCH:-256}  # WRITES="1 2 4 8": the writes in flight to compare
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
BENCH_GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
export BENCH_GPU_NAME
TAG=${GPU_TAG:-gpu-$(echo "${BENCH_GPU_NAME:-cpu}" | grep -oiE 'h100|h200|a100|l4|t4|cpu' | head -1 | tr 'A-Z' 'a-z')}
SCRATCH=${SCRATCH:-$(mktemp -d)}
status=0
step() {  # step NAME COMMAND...: run, time, remember failure, go on
    local name=$1 started; shift; started=$(date +%s)
    echo "::: $name"
    "$@" || { echo "::: $name FAILED"; status=1; }
    echo "::: $name took $(( $(date +%s) - started )) s"
}
copy() { [ "$OUT" = benchmarks/results ] || cp "benchmarks/results/$1.md" "$OUT/"; }
echo "::: $(nproc) CPUs; $(lscpu | grep -m1 'Model name' | sed 's/ \+/ /g'); GPU: ${BENCH_GPU_NAME:-none}"
step "generate $PHOTOS photos" python3 benchmarks/make_photos.py "$SCRATCH/photos" --count "$PHOTOS"
step "index_paths vs embedding alone vs inserting alone ($COUNT photos)" python3 benchmarks/indexing.py \
    --images "$SCRATCH/photos" --count "$COUNT" --batch-size "$BATCH" --writes-in-flight ${WRITES:-1 2 4 8} --insert-dims 256 \
    --memory-counts --name "$TAG-indexing"
copy "$TAG-indexing"
step "the CLI's index on $PHOTOS photos" python3 benchmarks/cli_indexing.py --images "$SCRATCH/photos" \
    --batch-size "$BATCH" --name "$TAG-cli-indexing"
copy "$TAG-cli-indexing"
rm -rf "$SCRATCH"
exit $status
