#!/usr/bin/env bash
# The GPU checks of the CUDA-graph path in one command, for a session that has a GPU:
#
#   DARTS_SHARED_DATA=../shared/data bash benchmarks/gpu_check.sh [OUTDIR]   (default results/gpu-check)
#
# 1. the CUDA tests: the time-boxed session's smoke checks (SMOKE in benchmarks/gpu_session.py: replayed
#    searches against eager ones for every captured method/backbone, --seeds included, the replay/reset/
#    generator behaviour of StepGraphs, the device-resident loader) and the evaluation network's CUDA epoch
#    (needs the CIFAR-10 subset under $DARTS_SHARED_DATA/cifar-10-batches-py; they skip without it);
# 2. the bilevel step on NB201 C=16 N=5 batch 64, eager and replayed, fp32 and bf16, with the implied
#    50-epoch search time;
# 3. the evaluation network's training step (common.train, DARTS_V2, C=36, 20 cells, batch 96, bf16) and
#    the implied 600-epoch time: docs/speed.md's evaluation cost, measured;
# 4. CONCURRENT (default "4 8") replayed searches at once on the GPU: searches per GPU-hour.
# Everything printed is also written under OUTDIR (tests.txt, bench.txt and the benchmark JSON).
# A failing stage does not stop the later ones (GPU time is scarce); the exit status is 1 if any failed,
# and failed.txt names them.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}  # a GPU image may have python3 only
out=${1:-results/gpu-check}
mkdir -p "$out"
: > "$out/failed.txt"; : > "$out/bench.txt"  # the stages append: start both empty
stage() { local name=$1; shift; "$@" || echo "$name (exit $?)" | tee -a "$out/failed.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
# the session's smoke checks (SMOKE in benchmarks/gpu_session.py) and the evaluation network's CUDA epoch
mapfile -t checks < <("$PY" -c 'import sys; sys.path.insert(0, "benchmarks"); import gpu_session; print("\n".join(gpu_session.SMOKE))')
tests() { "$PY" -m pytest -q -rA -p no:cacheprovider "${checks[@]}" \
    tests/test_train.py::test_cuda_smoke_epoch_in_bf16_channels_last_from_the_device_loader 2>&1 | tee "$out/tests.txt"; }
bench() { "$PY" benchmarks/search_step.py --device cuda --paths fast --no-activations --no-reference "$@" \
    2>&1 | tee -a "$out/bench.txt"; }
stage "CUDA tests" tests
stage "eager benchmark" bench --methods darts-v1 pc-k4 gdas --amp none bf16 --json "$out/bench_eager.json"
stage "graph benchmark" bench --methods darts-v1 darts-v2 pc-k4 --amp none bf16 --cuda-graphs \
    --json "$out/bench_graphs.json"
stage "evaluation step" bash -c "\"$PY\" benchmarks/train_step.py --device cuda 2>&1 | tee -a $out/bench.txt"
for n in ${CONCURRENT:-4 8}; do
    stage "concurrent $n" bench --methods darts-v1 --cuda-graphs --concurrent "$n" --json "$out/concurrent$n.json"
done
[ ! -s "$out/failed.txt" ]
