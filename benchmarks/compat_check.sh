#!/usr/bin/env bash
# The code under the GPU image's versions (Python 3.12, torch 2.11, torchvision 0.26), checked on CPU here,
# before a time-boxed GPU call is spent on a version mismatch (docs/time-boxed-gpu.md):
#
#   bash benchmarks/compat_check.sh PYTHON312 [--venv DIR] [--logs DIR] [--no-suite] [--suite "PYTEST ARGS"]
#                                             [--budget S] [--cells N]
#
# 1. env:       a venv at DIR (default: ../venv-py312-torch2.11 beside the checkout; never inside it) from
#               PYTHON312, with torch==$TORCH and torchvision==$TORCHVISION (PyPI's default CUDA-linked
#               wheels; they import on a CPU machine) and the packages of the device image that the code
#               and tests use (the image's package list: numpy==$NUMPY, pillow, matplotlib, tqdm, pytest, hypothesis,
#               scipy, pytest-xdist). Made once, reused after.
# 2. api:       benchmarks/compat_api.py under it: every torch/torchvision name and keyword the code names,
#               the CUDA-only lines that the CPU tests never run included.
# 3. rehearsal: the GPU session as the device runs it, on CPU: `gpu_session.py prepare` (what it says to
#               carry), a copy of the checkout as the device gets it (git's tracked and untracked-not-ignored
#               files + the carried paths, no .git; ≤ 64 MiB checked), the venv made like the device image
#               (no nas-bench-201, no xautodl, this project not installed: uninstalled, and put back by
#               the suite stage), then in the copy, with pip unable to reach any index or local wheel store
#               (only the carried .whl/): `bash benchmarks/gpu_session.sh` (real set-up: the full CIFAR-10 rebuilt from the JPEG copy; smoke;
#               a stub calibration; the first --cells queued cells, 2 replica-batched seeds, tiny searches on
#               the CPU) under a --budget, `ingest` of its tar, the speed and sharing stages' benchmark
#               commands at a tiny size, and a dry run on a stub nvidia-smi "H200".
# 4. suite:     the test suite under the venv (nas-bench-201, xautodl and this checkout installed for it),
#               `OMP_NUM_THREADS=1 HYPOTHESIS_PROFILE=ci python -m pytest -q` from the checkout (~10-20 min on a
#               shared 2-core machine; --no-suite skips it, --suite "ARGS" runs those pytest arguments).
# The rehearsal fails on: a carried wheel that does not install offline for cp312, a copy over 64 MiB or
# holding a symbolic link, a session log naming other versions, a failed set-up, a search that failed or
# was stopped, a session exit status other than 0, an `ingest` or a stub-GPU dry run that fails.
# A one-screen summary ends the output and is kept in the logs folder (default /tmp/compat-<time>) beside
# each stage's log. Exit 0 when every stage passed, 1 when one failed, 2 on bad input. Needs network for
# step 1 (PyPI) and prepare's wheel download; nothing else.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
TORCH=${TORCH:-2.11.0} TORCHVISION=${TORCHVISION:-0.26.0} NUMPY=${NUMPY:-2.5.2}
die() { echo "compat_check: error: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: bash benchmarks/compat_check.sh PYTHON312 [--venv DIR] [--logs DIR] [--no-suite] [--suite ARGS] [--budget S] [--cells N]"
py312=$1; shift
venv=$(dirname "$here")/venv-py312-torch${TORCH%.*}
logs=/tmp/compat-$(date -u +%Y%m%d-%H%M%S)
suite="" run_suite=1 budget=420 cells=3
value() { [ "$1" -ge 2 ] || die "$2 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
        --venv) value $# "$1"; venv=$2; shift 2 ;;
        --logs) value $# "$1"; logs=$2; shift 2 ;;
        --no-suite) run_suite=0; shift ;;
        --suite) value $# "$1"; suite=$2; shift 2 ;;
        --budget) value $# "$1"; budget=$2; shift 2 ;;
        --cells) value $# "$1"; cells=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
command -v "$py312" >/dev/null 2>&1 || die "$py312: no such python"
pyver=$("$py312" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || die "$py312 does not run"
[ "$pyver" = 3.12 ] || die "$py312 is Python $pyver; the GPU image runs 3.12"
[[ $budget =~ ^[0-9]+$ ]] && [ "$budget" -ge 60 ] && [ "$budget" -le 570 ] || die "--budget must be 60..570 s (got $budget)"
[[ $cells =~ ^[0-9]+$ ]] && [ "$cells" -ge 1 ] || die "--cells must be a positive integer (got $cells)"
eval "suite_args=($suite)" 2>/dev/null || die "--suite: cannot split '$suite' into arguments (shell quoting)"
git -C "$here" rev-parse --git-dir >/dev/null 2>&1 || die "$here is not a git checkout"
venv=$(realpath -m "$venv") logs=$(realpath -m "$logs")
case "$venv/" in "$here"/*) die "--venv $venv is inside the checkout (it would travel to the device)" ;; esac
case "$logs/" in "$here"/*) die "--logs $logs is inside the checkout" ;; esac
mkdir -p "$logs" || die "cannot write --logs $logs"
vpy=$venv/bin/python
declare -A verdict
summary() { printf '%-10s %s\n' "$1" "$2" | tee -a "$logs/summary.txt" >/dev/null; verdict[$1]=$2; }
: > "$logs/summary.txt"
echo "compat_check: logs in $logs"

# ---- 1. env
{
    [ -x "$vpy" ] || "$py312" -m venv "$venv"
    "$vpy" -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION" "numpy==$NUMPY" pillow matplotlib tqdm \
        pytest hypothesis scipy pytest-xdist
} > "$logs/env.log" 2>&1
versions=$("$vpy" -c 'import sys, torch, torchvision, numpy
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}")' 2>>"$logs/env.log")
if [[ $versions == "python 3.12."* && $versions == *"torch $TORCH"* && $versions == *"torchvision $TORCHVISION"* ]]; then
    summary env "ok: $versions ($venv)"
else
    summary env "FAILED: wanted python 3.12, torch $TORCH, torchvision $TORCHVISION; got '${versions:-nothing}' (see env.log)"
    cat "$logs/summary.txt"; exit 1
fi

# ---- 2. api
if (cd "$here" && OMP_NUM_THREADS=1 "$vpy" benchmarks/compat_api.py) > "$logs/api.log" 2>&1; then
    summary api "ok: $(tail -1 "$logs/api.log")"
else
    summary api "FAILED: $(tail -1 "$logs/api.log") (see api.log)"
    grep -v "^compat_api:" "$logs/api.log" | head -5 | sed 's/^/           /' >> "$logs/summary.txt"
fi

# ---- 3. rehearsal
rehearse() {
    set -e
    cd "$here"
    "$vpy" benchmarks/gpu_session.py prepare | tee "$logs/prepare.txt"
    local carry
    carry=$(grep '^{"command"' "$logs/prepare.txt" | "$vpy" -c 'import json, sys; print(" ".join(json.load(sys.stdin)["carry"]))')
    "$vpy" -m pip uninstall -q -y nas-bench-201 xautodl darts-fixes 2>/dev/null || true  # as the image: none of them
    ! "$vpy" -c 'import nas_201_api' 2>/dev/null || { echo "nas_201_api is still importable"; return 1; }
    local tmp dest
    tmp=$(mktemp -d /tmp/compat-device.XXXXXX)
    dest=$tmp/repo
    echo "copy in $tmp (removed if the rehearsal passes)"
    mkdir -p "$dest" "$tmp/home" "$tmp/out"
    git ls-files -co --exclude-standard -z | xargs -0 -r sh -c 'for f; do [ -f "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh \
        | xargs -0 -r cp -P --parents -t "$dest"
    local c
    for c in $carry; do [ ! -e "$c" ] || cp -rP --parents "$c" "$dest"; done  # one not here is not there either
    local bytes links
    bytes=$(du -sb "$dest" | cut -f1)
    links=$(find "$dest" -type l | wc -l)
    echo "travels: $((bytes / 1048576)) MiB ($bytes bytes) in $(find "$dest" -type f | wc -l) files; symbolic links: $links"
    [ "$bytes" -le $((64 * 1048576)) ] || { echo "over the call's 64 MiB"; return 1; }
    [ "$links" -eq 0 ] || { echo "symbolic links travel as links only: $(find "$dest" -type l | head -3)"; return 1; }
    # a stub calibration (CPU figures mean nothing for the plan): every path at batch 16, 0.5 s a step
    "$vpy" -c 'import json, sys; json.dump({"source": "compat_check stub", "rows": [{"method": m, "batch": 16,
        "amp": "none", "graphs": g, "step_s": 0.5} for m in ("darts-v1", "darts-v2", "pc-k4", "gdas")
        for g in (False, True)]}, open(sys.argv[1], "w"))' "$tmp/calib.json"
    local tiny="--limit-train 64 --C 4 --N 1 --epochs 1 --batch-size 16 --eval-images 32 --device cpu"
    local clean=(env -u PYTHONPATH -u PYTHON -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL
                 -u PIP_CONSTRAINT -u DARTS_SHARED_DATA PATH="$venv/bin:$PATH" HOME="$tmp/home"
                 PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null OMP_NUM_THREADS=1)
    cd "$dest"
    echo "== session (budget $budget s, the first $cells cell(s), seeds 0 1, tiny CPU searches)"
    local rc=0
    "${clean[@]}" OUT="$tmp/out" bash benchmarks/gpu_session.sh --budget "$budget" --calibration "$tmp/calib.json" \
        --seeds 0 1 --amp none --max-cells "$cells" --extra "$tiny" || rc=$?
    echo "session exit status $rc"
    find .gpu/session/runs -name log.txt -exec cat {} + > "$logs/runs.log" 2>/dev/null || true
    echo "warnings in the searches' own logs (runs.log): $(grep -ci "warn" "$logs/runs.log" || true)"
    { grep -i "warn" "$logs/runs.log" || true; } | sort | uniq -c | sort -rn | head -5
    ! grep -q "installing the carried wheels failed" "$logs/rehearsal.log" || { echo "carried wheels did not install"; return 1; }
    "${clean[@]}" python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$tmp/site" .whl/*.whl
    (cd / && "${clean[@]}" PYTHONPATH="$tmp/site" python3 -c 'import nas_201_api; print("carried wheels import offline:", nas_201_api.__file__)')
    local tar
    tar=$(ls "$tmp"/out/gpu-*.tar | grep -v '\.ckpt-')  # the session's tar, not an unfinished run's checkpoint
    local log=$dest/.gpu/session/session.log
    grep -q "^python 3.12.* | torch $TORCH" "$log" || { echo "session.log names other versions"; return 1; }
    grep -q "DATA REBUILD FAILED\|MISSING" "$log" && { echo "the set-up failed"; return 1; }
    local ndone nfailed
    ndone=$(grep -c "^done " "$log" || true)
    nfailed=$(grep -c "^failed \|^stopped at deadline " "$log" || true)
    echo "runs: $ndone done, $nfailed failed or killed; tar $(tar -tf "$tar" | wc -l) members"
    "${clean[@]}" python3 benchmarks/gpu_session.py ingest "$tar" --carry "$tmp/carry"
    # the speed and sharing stages' benchmark commands (GPU only in a session), on the CPU at a tiny size
    "${clean[@]}" python3 benchmarks/search_step.py --device cpu --paths fast --methods darts-v1 --amp none bf16 \
        --no-reference --no-activations --replicas 1 3 --C 4 --N 1 --batch 8 --iters 1 --warmup 0 --json "$tmp/speed.json"
    "${clean[@]}" python3 benchmarks/search_step.py --device cpu --paths fast --methods darts-v1 --amp none --batch 8 \
        --C 4 --N 1 --concurrent 2 --iters 1 --warmup 0 --no-reference --no-activations --json "$tmp/sharing.json"
    echo "speed-stage benchmark: $(grep -c '"step_s"' "$tmp/speed.json") rows; sharing: $(grep -c median_step_s_each "$tmp/sharing.json") row"
    mkdir -p "$tmp/bin"
    printf '#!/bin/sh\necho "NVIDIA H200, 580.159.04, 143771 MiB"\n' > "$tmp/bin/nvidia-smi"
    chmod +x "$tmp/bin/nvidia-smi"
    "${clean[@]}" PATH="$tmp/bin:$venv/bin:$PATH" OUT="$tmp/out" bash benchmarks/gpu_session.sh --dry-run --seeds 0 1 \
        > "$tmp/dry.txt" 2>&1 || { cat "$tmp/dry.txt"; echo "stub-GPU dry run failed"; return 1; }
    { grep "^== queue\|RUN  \|GPU:" "$tmp/dry.txt" || true; } | head -4
    [ "$rc" -eq 0 ] && [ "$ndone" -ge 1 ] && [ "$nfailed" -eq 0 ] \
        || { echo "session exit status $rc, $ndone search(es) done, $nfailed failed or stopped"; return 1; }
}
t0=$SECONDS
(rehearse) > "$logs/rehearsal.log" 2>&1  # not in an `if`: there set -e would be off inside
if [ $? = 0 ]; then
    summary rehearsal "ok ($((SECONDS - t0)) s): $(grep '^travels:' "$logs/rehearsal.log"); $(grep '^runs:' "$logs/rehearsal.log")"
    rm -rf "$(sed -n 's/^copy in \(.*\) (removed.*/\1/p' "$logs/rehearsal.log")"
    grep "^carried wheels\|^warnings in\|^== set-up:\|^== smoke:\|^speed-stage" "$logs/rehearsal.log" | sed 's/^/           /' >> "$logs/summary.txt"
else
    summary rehearsal "FAILED ($((SECONDS - t0)) s): $(grep -v '^ *$' "$logs/rehearsal.log" | tail -1) (see rehearsal.log)"
fi

# ---- 4. suite
if [ "$run_suite" = 1 ]; then
    t0=$SECONDS
    "$vpy" -m pip install -q --no-deps nas-bench-201 xautodl==1.0.0 > "$logs/suite.log" 2>&1
    "$vpy" -m pip install -q --no-deps -e "$here" >> "$logs/suite.log" 2>&1
    (cd "$here" && PATH="$venv/bin:$PATH" OMP_NUM_THREADS=1 HYPOTHESIS_PROFILE=ci \
        "$vpy" -m pytest -q -p no:cacheprovider -rs "${suite_args[@]}") >> "$logs/suite.log" 2>&1
    rc=$?
    last=$(grep -E "(passed|failed|error)" "$logs/suite.log" | tail -1)
    what="pytest ${suite:-(everything)}"
    if [ "$rc" = 0 ]; then summary suite "ok ($((SECONDS - t0)) s, $what): $last"
    else summary suite "FAILED ($((SECONDS - t0)) s, rc $rc, $what): $last; $(grep -c '^FAILED\|^ERROR' "$logs/suite.log") failing (see suite.log)"
    fi
    grep '^FAILED\|^ERROR' "$logs/suite.log" | head -8 | sed 's/^/           /' >> "$logs/summary.txt"
    sed -n '/warnings summary/,$p' "$logs/suite.log" | grep -o "[A-Za-z]*Warning: .*" | cut -c1-100 | sort | uniq -c | head -3 | sed 's/^ */           /' \
        >> "$logs/summary.txt"
else
    summary suite "not run (--no-suite)"
fi

echo "==== compat_check $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$here" rev-parse --short HEAD)$(git -C "$here" diff --quiet HEAD || echo ' + changes'), $(uname -m), $(nproc) CPU(s)"
cat "$logs/summary.txt"
for v in "${verdict[@]}"; do [[ $v == FAILED* ]] && exit 1; done
exit 0
