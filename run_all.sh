#!/usr/bin/env bash
# The commands behind the README's results table — nothing is hand-run.
#
#   bash run_all.sh                       # every entry, paper settings, 3 seeds, sequentially
#   bash run_all.sh --gpus 0,1 --per-gpu 4   # fan out: 4 searches at a time on each GPU, from one queue
#   bash run_all.sh --slurm               # write and submit an sbatch job array instead
#   bash run_all.sh --quick               # every entry on the CIFAR-10/100 subsets, tiny config (CPU, minutes)
#   bash run_all.sh --only 'sa-darts|sp-darts' --spaces nb201 --datasets cifar10 --dry-run
#   bash run_all.sh --eval [--gpus ..|--slurm|--quick]   # train every finished DARTS/S1-S4 search's genotype
#                                         # from scratch (python -m common.train, into <run>/eval/)
#
# Runs land in RUNS/<space>/<label>/<dataset>/seed<k>/. Re-running skips finished runs (result.json)
# and resumes interrupted ones from their checkpoints (every command carries --resume).
# Then: python -m common.report RUNS
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
RUNS=runs/all
DATA_DIR=./data
NB201=""
SEEDS="0 1 2"
DATASETS="cifar10 cifar100"
SPACES="nb201 darts s1 s2 s3 s4"
ONLY=""
GPUS=""
PER_GPU=1
SLURM=0
QUICK=0
DRY=0
EVAL=0
EXTRA=()

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; echo "options: --runs DIR --data-dir DIR --nb201 PATH --seeds 'S..' --datasets 'D..' --spaces 'S..' --only REGEX --gpus LIST --per-gpu N --slurm --quick --eval --dry-run -- EXTRA FLAGS (to the searches, or with --eval to common.train)"; }
die() { echo "run_all.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --nb201) NB201=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --datasets) DATASETS=$2; shift 2 ;;
    --spaces) SPACES=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --gpus) GPUS=$2; shift 2 ;;
    --per-gpu) PER_GPU=$2; shift 2 ;;
    --slurm) SLURM=1; shift ;;
    --quick) QUICK=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --eval) EVAL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  [ "$DATA_DIR" = ./data ] && DATA_DIR=../shared/data
  [ -z "$NB201" ] && [ -f ../shared/data/nb201/nb201_200ep.csv ] && NB201=../shared/data/nb201/nb201_200ep.csv
  [ "$SEEDS" = "0 1 2" ] && SEEDS=0
  [ "$RUNS" = runs/all ] && RUNS=runs/quick
fi
[[ "$PER_GPU" =~ ^[1-9][0-9]*$ ]] || die "--per-gpu must be a positive integer"

# ---------------------------------------------------------------- the matrix
# label | script and method flags (paper settings; each script's defaults follow its paper)
NB201_ENTRIES=(
  "edd-darts|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd"
  "edd-darts-clip|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd --clip-alpha 5"
  "pcd|edd_darts.py --softmax normal --schedule pcd --warmup 20"
  "ets-gdas|edd_darts.py --backbone gdas"
  "darts-v1-aer|aer_darts.py --backbone darts-v1"
  "darts-v2-aer|aer_darts.py --backbone darts-v2"
  "gdas-aer|aer_darts.py --backbone gdas"
  "sp-darts|sp_darts.py"
  "sa-darts|sa_darts.py --reg sa"
  "sac-darts|sa_darts.py --reg sa --partial-channels 4"
  "beta-darts|sa_darts.py --reg beta"
  "darts-v1|aer_darts.py --backbone darts-v1 --lam-neg 0 --lam-pos 0"
  "darts-v2|aer_darts.py --backbone darts-v2 --lam-neg 0 --lam-pos 0"
  "gdas|aer_darts.py --backbone gdas --lam-neg 0 --lam-pos 0"
)
DARTS_ENTRIES=(
  "edd-darts|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd"
  "darts-v1-aer|aer_darts.py --backbone darts-v1"
  "sp-darts|sp_darts.py"
  "sa-darts|sa_darts.py --reg sa"
  "sac-darts|sa_darts.py --reg sa --partial-channels 4"
)

quick_flags() {  # $1 = space, $2 = script
  local f="--limit-train 128 --C 4 --batch-size 32 --eval-images 64 --epochs 2"
  if [ "$1" = nb201 ]; then f="$f --N 1"; else f="$f --N 3"; fi
  echo "$f"
}

JOBS=()
for space in $SPACES; do
  if [ "$space" = nb201 ]; then entries=("${NB201_ENTRIES[@]}"); else entries=("${DARTS_ENTRIES[@]}"); fi
  for entry in "${entries[@]}"; do
    label=${entry%%|*}; cmd=${entry#*|}
    if [ -n "$ONLY" ] && ! [[ "$label" =~ ^($ONLY)$ ]]; then continue; fi
    for dataset in $DATASETS; do
      [ "$space" != nb201 ] && [ "$dataset" != cifar10 ] && continue  # DARTS-space searches: CIFAR-10
      for seed in $SEEDS; do
        out="$RUNS/$space/$label/$dataset/seed$seed"
        line="$PY $cmd --space $space --dataset $dataset --seed $seed --data-dir $DATA_DIR --out $out --resume --no-progress"
        [ -n "$NB201" ] && [ "$space" = nb201 ] && line="$line --nb201 $NB201"
        [ "$QUICK" = 1 ] && line="$line $(quick_flags "$space")"
        [ "${#EXTRA[@]}" -gt 0 ] && line="$line ${EXTRA[*]}"
        JOBS+=("$out|$line")
      done
    done
  done
done
[ "${#JOBS[@]}" -gt 0 ] || die "no entry matches --only '$ONLY' / --spaces '$SPACES' / --datasets '$DATASETS'"

# --eval: the evaluation phase of every finished DARTS-skeleton search (DARTS protocol for the DARTS space,
# RobustDARTS's per-dataset protocol for S1-S4; --quick: one smoke epoch), into <run>/eval/.
eval_line() {  # $1 = a search's run directory
  local out=$1 rel space seed preset=darts
  rel=${out#"$RUNS"/}; space=${rel%%/*}; seed=${out##*/seed}
  [[ "$space" =~ ^s[1-4]$ ]] && preset=robustdarts
  [ "$QUICK" = 1 ] && preset=smoke
  echo "$PY -m common.train $out --out $out/eval --preset $preset --seed $seed --data-dir $DATA_DIR --resume --no-progress${EXTRA[*]:+ ${EXTRA[*]}}"
}

mkdir -p "$RUNS"
JOBFILE="$RUNS/jobs.txt"
: > "$JOBFILE"
todo=0; waiting=0
for job in "${JOBS[@]}"; do
  out=${job%%|*}; line=${job#*|}
  if [ "$EVAL" = 1 ]; then
    rel=${out#"$RUNS"/}
    [ "${rel%%/*}" = nb201 ] && continue             # NB201 cells are looked up, not trained
    [ -f "$out/result.json" ] || { waiting=$((waiting + 1)); continue; }   # search not finished yet
    line=$(eval_line "$out"); out="$out/eval"
  fi
  if [ -f "$out/result.json" ]; then continue; fi   # finished: skip
  echo "$line" >> "$JOBFILE"; todo=$((todo + 1))
done
if [ "$EVAL" = 1 ]; then
  echo "run_all.sh --eval: $todo evaluations to do ($waiting DARTS/S1-S4 searches not finished yet, finished evaluations skipped); list in $JOBFILE" >&2
else
  echo "run_all.sh: ${#JOBS[@]} runs in the matrix, $todo to do (finished ones skipped); list in $JOBFILE" >&2
fi
[ "$DRY" = 1 ] && { cat "$JOBFILE"; exit 0; }
[ "$todo" = 0 ] && exit 0

run_one() {  # $1 = command line; the run's stdout/stderr go to <out>/log.txt
  local line=$1 out
  out=$(sed -E 's/.* --out ([^ ]+).*/\1/' <<<"$line")
  mkdir -p "$out"
  if bash -c "$line" >>"$out/log.txt" 2>&1; then echo "done   $out" >&2; else echo "FAILED $out (see $out/log.txt)" >&2; return 1; fi
}

if [ "$SLURM" = 1 ]; then
  command -v sbatch >/dev/null || die "--slurm: sbatch not found (is SLURM installed?)"
  script="$RUNS/run_all.sbatch"
  TASKFILE="$(cd "$RUNS" && pwd)/jobs.$(date +%Y%m%d-%H%M%S).txt"  # this array's own list: a later call rewrites jobs.txt
  cp "$JOBFILE" "$TASKFILE"
  cat > "$script" <<SBATCH
#!/usr/bin/env bash
#SBATCH --job-name=darts-fixes
#SBATCH --array=1-$todo
#SBATCH --output=$(cd "$RUNS" && pwd)/slurm-%A_%a.out
${SLURM_GRES:+#SBATCH --gres=$SLURM_GRES}
cd "$PWD"
line=\$(sed -n "\${SLURM_ARRAY_TASK_ID}p" "$TASKFILE")
export OMP_NUM_THREADS=\${OMP_NUM_THREADS:-\${SLURM_CPUS_PER_TASK:-1}}
out=\$(sed -E 's/.* --out ([^ ]+).*/\1/' <<<"\$line")
mkdir -p "\$out"
exec bash -c "\$line" >>"\$out/log.txt" 2>&1
SBATCH
  sbatch ${SBATCH_FLAGS:-} "$script"
  exit 0
fi

if [ -z "$GPUS" ]; then
  fail=0
  while IFS= read -r line; do run_one "$line" || fail=1; done < "$JOBFILE"
  exit $fail
fi

# GPU fan-out: (#GPUs × per-gpu) workers pull the next job from one queue (a counter under flock).
QUEUE="$RUNS/.queue"; echo 0 > "$QUEUE"; : > "$RUNS/.failed"
next_job() {
  local i
  {
    flock 9
    i=$(<"$QUEUE"); echo $((i + 1)) > "$QUEUE"
  } 9>"$QUEUE.lock"
  [ "$i" -lt "$todo" ] && sed -n "$((i + 1))p" "$JOBFILE"
}
worker() {
  local line
  while line=$(next_job) && [ -n "$line" ]; do
    CUDA_VISIBLE_DEVICES=$1 run_one "$line" || echo "$line" >> "$RUNS/.failed"
  done
}
IFS=, read -ra gpu_list <<<"$GPUS"
for g in "${gpu_list[@]}"; do
  for _ in $(seq "$PER_GPU"); do worker "$g" & done
done
wait
if [ -s "$RUNS/.failed" ]; then echo "run_all.sh: $(wc -l < "$RUNS/.failed") runs failed" >&2; exit 1; fi
