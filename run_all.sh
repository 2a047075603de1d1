#!/usr/bin/env bash
# The commands behind the README's results table — nothing is hand-run.
#
#   bash run_all.sh                       # every entry (authors' and paper recipes), each paper's seed count
#   bash run_all.sh --gpus 0,1 --per-gpu 4   # fan out: 4 processes at a time on each GPU (a cell's seeds
#                                         #  are one process), from one queue
#   bash run_all.sh --slurm               # write and submit an sbatch job array instead (a task per process)
#   bash run_all.sh --no-group-seeds      # one process per seed (default: a cell's seeds as one batched
#                                         #  `--seeds` process, common/replicas.py, where the row allows it)
#   bash run_all.sh --quick               # every entry on the CIFAR-10/100 subsets, tiny config (CPU, minutes)
#                                         # (checks the pipeline and that each mechanism acts; says nothing
#                                         #  about accuracy: see quick_flags below)
#   bash run_all.sh --only 'sa-darts|sp-darts' --spaces nb201 --datasets cifar10 --dry-run
#   bash run_all.sh --eval [--gpus ..|--slurm|--quick]   # train every finished DARTS/S1-S4 search's genotype
#                                         # from scratch (python -m common.train, into <run>/eval/)
#
# Runs land in RUNS/<space>/<label>/<dataset>/seed<k>/. Re-running skips finished runs (result.json)
# and resumes interrupted ones from their checkpoints (every command carries --resume). A cell's seeds
# run as one `--seeds` process (--out .../seed{seed}; its own output in RUNS/<space>/<label>/<dataset>/log.txt)
# unless the row's configuration refuses --seeds (see groupable) or its interrupted seeds stopped at
# different epochs (then, as with --no-group-seeds, one process per seed, output in <run>/log.txt).
# Then: python -m common.report RUNS
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
RUNS=runs/all
DATA_DIR=./data
NB201=""
SEEDS=""   # empty: each row's published seed count (paper_seeds below)
DATASETS="cifar10 cifar100 svhn"   # a filter: each space runs on the datasets its papers searched
SPACES="nb201 nb201-3op darts s1 s2 s3 s4"
ONLY=""
GPUS=""
PER_GPU=1
SLURM=0
QUICK=0
DRY=0
EVAL=0
GROUP=1
EXTRA=()

usage() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
  cat <<EOF
options: --runs DIR --data-dir DIR --nb201 PATH --seeds 'S..' --datasets 'D..' --spaces 'S..' --only REGEX --gpus LIST --per-gpu N --slurm --quick --eval --no-group-seeds --dry-run -- EXTRA FLAGS
  --runs DIR         where runs land (default: $RUNS; with --quick: runs/quick)
  --data-dir DIR     dataset folder (default: $DATA_DIR; with --quick: ../shared/data)
  --nb201 PATH       NB201 table for the searches (default: each script's own, the packaged table on nb201;
                     with --quick: ../shared/data/nb201/nb201_200ep.csv when present)
  --seeds 'S..'      seeds of every row (default: each row's published seed count, from 0)
  --datasets 'D..'   a filter on the datasets each space's papers searched (default: $DATASETS)
  --spaces 'S..'     a filter on the spaces (default: $SPACES; sr: the ×2 super-resolution rows, GPU days)
  --only REGEX       only rows whose label matches (default: every row)
  --gpus LIST        fan out over these GPUs, e.g. 0,1 (default: none, one process at a time)
  --per-gpu N        processes at a time on each GPU (default: $PER_GPU)
  --slurm            write and submit an sbatch job array instead (default: off)
  --quick            tiny config on the CIFAR subsets, CPU (default: off)
  --eval             train every finished DARTS/S1-S4 search's genotype (default: off)
  --no-group-seeds   one process per seed (default: a cell's seeds as one --seeds process where allowed)
  --dry-run          print the commands, run nothing (default: off)
  -- EXTRA FLAGS     passed to the searches, or with --eval to common.train
EOF
}
die() { echo "run_all.sh: $*" >&2; exit 2; }
q() { printf '%q ' "$@" | sed 's/ $//'; }  # shell-quote (paths with spaces survive `bash -c`)
out_of() { local -a a; eval "a=($1)"; local i; for ((i = 0; i < ${#a[@]}; i++)); do [ "${a[i]}" = --out ] && echo "${a[i + 1]}"; done; }
log_dir() { local out; out=$(out_of "$1"); case "$out" in *"{seed}"*) dirname "$out" ;; *) echo "$out" ;; esac; }  # a --seeds group: its cell

for a in "$@"; do  # --help first: its defaults are the defaults, whatever else the line sets
  case "$a" in -h|--help) usage; exit 0 ;; --) break ;; esac
done
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
    --no-group-seeds) GROUP=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ "$QUICK" = 1 ]; then
  [[ " $SPACES " == *" sr "* ]] && die "--quick covers the CIFAR rows; the SR rows (--spaces sr) need DIV2K and GPU days (tests/test_sr.py runs a tiny SR search and retrain)"
  [ "$DATA_DIR" = ./data ] && DATA_DIR=../shared/data
  [ -z "$NB201" ] && [ -f ../shared/data/nb201/nb201_200ep.csv ] && NB201=../shared/data/nb201/nb201_200ep.csv
  [ -z "$SEEDS" ] && SEEDS=0
  [ -f "$DATA_DIR/train_32x32.mat" ] || DATASETS=${DATASETS//svhn/}  # no SVHN in the CIFAR subsets
  [ "$RUNS" = runs/all ] && RUNS=runs/quick
fi
[[ "$PER_GPU" =~ ^[1-9][0-9]*$ ]] || die "--per-gpu must be a positive integer"

# ---------------------------------------------------------------- the matrix
# label | script and method flags. EDD, PCD, SP and AER run the authors' recipe (`--recipe authors`: the
# settings of their published search scripts, which produced the papers' numbers); where the paper's
# settings differ, a second row `<label>-paper` runs those (on S1-S4, where the authors sweep a value,
# `<label><value>` and `<label><value>-paper`). A row naming its own --space runs in that space (the
# SP and EDD authors' DARTS-space op lists have no `none`: darts-nonone) under the matrix's space folder.
NB201_ENTRIES=(
  "edd-darts|edd_darts.py --recipe authors"
  "edd-darts-paper|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd"
  "edd-darts-clip|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd --clip-alpha 5"
  "pcd|edd_darts.py --recipe authors --schedule pcd"
  "pcd-paper|edd_darts.py --softmax normal --schedule pcd --warmup 20"
  "ets-gdas|edd_darts.py --backbone gdas"
  "darts-v1-aer|aer_darts.py --recipe authors --backbone darts-v1"
  "darts-v1-aer-paper|aer_darts.py --backbone darts-v1"
  "darts-v2-aer|aer_darts.py --recipe authors --backbone darts-v2"
  "darts-v2-aer-paper|aer_darts.py --backbone darts-v2"
  "gdas-aer|aer_darts.py --recipe authors --backbone gdas"
  "gdas-aer-paper|aer_darts.py --backbone gdas"
  "sp-darts|sp_darts.py --recipe authors"
  "sp-darts-paper|sp_darts.py"
  "sa-darts|sa_darts.py --reg sa"
  "sac-darts|sa_darts.py --reg sa --partial-channels 4"
  "beta-darts|sa_darts.py --reg beta"
  "darts-v1|aer_darts.py --backbone darts-v1 --lam-neg 0 --lam-pos 0"
  "darts-v2|aer_darts.py --backbone darts-v2 --lam-neg 0 --lam-pos 0"
  "gdas|aer_darts.py --backbone gdas --lam-neg 0 --lam-pos 0"
  # label|command|datasets: rows one paper ran on CIFAR-10 only
  "lts|edd_darts.py --softmax normal --schedule lts|cifar10"                  # EDD Fig. 2B (LTS)
  "lpcd|edd_darts.py --softmax normal --schedule lpcd --warmup 20|cifar10"    # EDD Fig. 4A (LPCD)
  "darts-init-m0.5|sa_darts.py --reg none --alpha-init-mean=-5e-4|cifar10"    # SA Table 8: α + 1e-3·c
  "darts-init-m1|sa_darts.py --reg none --alpha-init-mean=-1e-3|cifar10"
  "darts-init-m2|sa_darts.py --reg none --alpha-init-mean=-2e-3|cifar10"
  "darts-init-m5|sa_darts.py --reg none --alpha-init-mean=-5e-3|cifar10"
)
THREE_OP_ENTRIES=(  # SA-DARTS Sec. 2.2 / Fig. 5: NB201 with conv 3x3, skip, avg pool
  "sa-darts|sa_darts.py --reg sa|cifar10"
  "darts-v1|sa_darts.py --reg none|cifar10"
)
S_ENTRIES=(  # S1-S4 on CIFAR-10/100 and SVHN: EDD Tables 2/7, SP Table V. The authors' S1-S4 scripts take
  # a swept value (EDD λ, PCD d: the PCDEDD README; SP t_sp: Table V, README) with none given per space or
  # dataset: one authors' row per value, one seed each (SP Table V: keep the finalnet with the best
  # validation accuracy); -paper rows: the papers' settings (EDD/PCD: the NB201 recipe transferred, Table IV)
  "edd-darts-lam0.12|edd_darts.py --recipe authors --lam 0.12"
  "edd-darts-lam0.24|edd_darts.py --recipe authors --lam 0.24"
  "edd-darts-lam0.48|edd_darts.py --recipe authors --lam 0.48"
  "edd-darts-lam0.96|edd_darts.py --recipe authors --lam 0.96"
  "edd-darts-paper|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd"
  "pcd-d0.1|edd_darts.py --recipe authors --schedule pcd --pcd-d 0.1"
  "pcd-d0.11|edd_darts.py --recipe authors --schedule pcd --pcd-d 0.11"
  "pcd-d0.12|edd_darts.py --recipe authors --schedule pcd --pcd-d 0.12"
  "pcd-d0.13|edd_darts.py --recipe authors --schedule pcd --pcd-d 0.13"
  "pcd-paper|edd_darts.py --softmax normal --schedule pcd --warmup 20"
  "sp-darts-tsp4e-4|sp_darts.py --recipe authors --t-sp 4e-4"
  "sp-darts-tsp5e-4|sp_darts.py --recipe authors --t-sp 5e-4"
  "sp-darts-tsp6e-4|sp_darts.py --recipe authors --t-sp 6e-4"
  "sp-darts-tsp7e-4|sp_darts.py --recipe authors --t-sp 7e-4"
  "sp-darts-tsp4e-4-paper|sp_darts.py --t-sp 4e-4"
  "sp-darts-tsp5e-4-paper|sp_darts.py --t-sp 5e-4"
  "sp-darts-tsp6e-4-paper|sp_darts.py --t-sp 6e-4"
  "sp-darts-tsp7e-4-paper|sp_darts.py --t-sp 7e-4"
)
DARTS_ENTRIES=(
  "edd-darts|edd_darts.py --recipe authors --space darts-nonone"
  "edd-darts-paper|edd_darts.py --softmax sn --s 100 --lam 0.06 --schedule edd"
  "darts-v1-aer|aer_darts.py --recipe authors --backbone darts-v1"
  "darts-v1-aer-paper|aer_darts.py --backbone darts-v1"
  "pdarts-aer|aer_darts.py --recipe authors --backbone pdarts"   # AER Tables 2-3, Fig. 5: PDARTS-AER
  "pdarts|aer_darts.py --recipe authors --backbone pdarts --lam-neg 0 --lam-pos 0"   # plain P-DARTS
  "sp-darts|sp_darts.py --recipe authors --space darts-nonone"
  "sp-darts-paper|sp_darts.py"
  "sa-darts|sa_darts.py --reg sa"
  "sac-darts|sa_darts.py --reg sa --partial-channels 4"
)

quick_flags() {  # $1 = space, $2 = label, $3 = command. Tiny and 2 epochs, so each mechanism must act at once:
  local f="--limit-train 128 --C 4 --batch-size 32 --eval-images 64 --epochs 2"
  case "$1" in nb201*) f="$f --N 1" ;; *) f="$f --N 3" ;; esac
  case "$3" in  # EDD/PCD/LPCD warm-ups (5-20 epochs, paper or authors' recipe) and decays every 5 epochs
    edd_darts.py*) f="$f --warmup 0 --decay-every 1" ;;  # would leave them plain DARTS for both epochs
    *"--backbone pdarts"*) f="$f --epochs 3 --warmup 0 --N 1" ;;  # P-DARTS: one epoch per stage, 1/7/13 cells
  esac
  case "$2" in
    edd-darts-clip) f="$f --clip-alpha 1" ;;  # |grad α| is 0.02-0.04 at t = 1 and 2-5 at epoch 2's t = 0.008
  esac                                     # (measured on this config): clip 5 would act on 1 step of 8
  echo "$f"
}

# ×2 super-resolution (SA paper §4.3, Tables 3 and 7; common/sr): `--spaces sr` only, never in the default
# list: a search is 1.2-2.2 GPU-days (the paper's budget), a retrain (--eval) about 1-2, the six rows about
# 20 GPU-days on one V100-class GPU (estimates, common/sr/__init__.py). DATA_DIR holds DIV2K/ and benchmark/.
# The label is the paper row the retrain prints its PSNR beside (common/sr/train.py PAPER_ROWS).
SR_ENTRIES=(
  "dlsr|sa_darts.py --task sr --space dlsr --reg none"
  "sa-dlsr|sa_darts.py --task sr --space dlsr --reg sa"
  "sac-dlsr|sa_darts.py --task sr --space dlsr --reg sa --partial-channels 4"
  "dlsr-beta|sa_darts.py --task sr --space dlsr --reg beta"
  "imdn-beta|sa_darts.py --task sr --space imdn --reg beta"
  "sac-imdn|sa_darts.py --task sr --space imdn --reg sa --partial-channels 4"
  "sac-imdn-flops|sa_darts.py --task sr --space imdn --reg sa --partial-channels 4 --flops-weight 1"
)

space_datasets() {  # $1 = space: the datasets the papers searched it on
  case "$1" in
    nb201) echo "cifar10 cifar100" ;;
    sr) echo "div2k" ;;
    s1|s2|s3|s4) echo "cifar10 cifar100 svhn" ;;  # SP Table V, EDD Tables 2/7
    *) echo "cifar10" ;;
  esac
}

paper_seeds() {  # $1 = label, $2 = space: how many seeds the paper reports for the row
  case "$2:$1" in
    nb201:sa-darts|nb201:sac-darts|nb201:beta-darts) echo 10 ;;  # SA-DARTS Table 6: 10 seeds
    darts:sp-darts|darts:sp-darts-paper) echo 5 ;;                 # SP-DARTS Sec. IV-B: five seeds
    s[1-4]:sp-darts-tsp*) echo 1 ;;                                # SP-DARTS Table V: one run per t_sp
    s[1-4]:edd-darts-lam*|s[1-4]:pcd-d*) echo 1 ;;                 # the authors' swept λ / d: one run each
    sr:*) echo 1 ;;                                                # SA paper Tables 3/7: one network per row
    *) echo 3 ;;                                                   # EDD Sec. 3, AER, SP NB201, the rest
  esac
}
groupable() {  # $1 = space, $2 = the row's flags: whether --seeds batches the row. The mirror of the
  # refusals (common/replicas.py check_supported, common/harness.py seeds_refusal(cfg, planning=True));
  # tests/test_run_all_groups.py checks every row of the matrix against them.
  [[ "$1" = s4 && " $2 " == *" --backbone gdas "* ]] && return 1  # GDAS on S4: noise drawn where sampled only
  [[ " $2 " == *" --backbone pdarts "* ]] && return 1             # AER's P-DARTS: a new supernet per stage
  if [[ "$2" == edd_darts.py* ]] && [[ " $2 " == *" --schedule edd "* || " $2 " != *" --schedule "* ]]; then
    [[ " $2 " == *" --sn-unit-off "* ]] && return 1               # --sn-unit-off under Eq. 15's schedule
    [[ " $2 " == *" --recipe authors "* && "$1" != nb201* ]] && return 1  # authors' DARTS/S1-S4 EDD recipes
  fi
  return 0
}
same_epoch() {  # run directories: whether their checkpoints (none: epoch 0) are at one epoch, so that a
  # batched --resume takes them (common/replicas.py: replicas at different epochs are refused)
  local d any=0
  for d in "$@"; do [ -f "$d/checkpoint.pt" ] && any=1; done
  [ "$any" = 0 ] && return 0
  $PY - "$@" 2>/dev/null <<'PYEOF'  # unreadable checkpoint: per seed, each run says why
import sys
from pathlib import Path
import torch
def epoch(p: Path) -> int | None:
    return torch.load(p, map_location="cpu", weights_only=False)["epoch"] if p.is_file() else None
dirs = [Path(d) for d in sys.argv[1:]]
at = [epoch(d / "checkpoint.pt") or 0 for d in dirs]
top = max(at)  # a commit cut off between renames: --resume lifts a run with a staged `top` to it
def staged(d: Path) -> int | None:
    try:
        return epoch(d / "checkpoint.next.pt")
    except Exception:  # a partial file: not part of a finished commit (replicas.py skips it too)
        return None
at = [top if e < top and staged(d) == top else e for d, e in zip(dirs, at)]
sys.exit(0 if len(set(at)) == 1 else 1)
PYEOF
}
seeds_for() { if [ -n "$SEEDS" ]; then echo "$SEEDS"; else seq 0 $(($(paper_seeds "$1" "$2") - 1)); fi; }

JOBS=()
runs=0
US=$'\x1f'  # field separator of a JOBS entry
for space in $SPACES; do
  case "$space" in
    nb201) entries=("${NB201_ENTRIES[@]}") ;;
    nb201-3op) entries=("${THREE_OP_ENTRIES[@]}") ;;
    s1|s2|s3|s4) entries=("${S_ENTRIES[@]}") ;;
    sr) entries=("${SR_ENTRIES[@]}") ;;
    *) entries=("${DARTS_ENTRIES[@]}") ;;
  esac
  for entry in "${entries[@]}"; do
    label=${entry%%|*}; cmd=${entry#*|}; row_datasets=""
    [[ "$cmd" == *"|"* ]] && { row_datasets=${cmd#*|}; cmd=${cmd%%|*}; }
    if [ -n "$ONLY" ] && ! [[ "$label" =~ ^($ONLY)$ ]]; then continue; fi
    [[ " $cmd " == *" --recipe authors "* ]] && ! [[ "$space" =~ ^(nb201|darts|s[1-4])$ ]] && continue
    for dataset in ${row_datasets:-$(space_datasets "$space")}; do
      [[ " $DATASETS " == *" $dataset "* ]] || [ "$space" = sr ] || continue  # SR: DIV2K, whatever --datasets
      cell="$RUNS/$space/$label/$dataset"
      space_flag="--space $space"; [[ " $cmd " == *" --space "* ]] && space_flag=""  # the row's own space
      head="$PY $cmd${space_flag:+ $space_flag} --dataset $dataset"  # then --seed k / --seeds …, --out
      mid="--data-dir $(q "$DATA_DIR")"
      rest="--resume --no-progress"
      [ "$space" = sr ] && { head="$PY $cmd"; rest="--resume"; }  # its own space flag, no dataset or bars
      [ -n "$NB201" ] && [[ "$space" == nb201* ]] && rest="$rest --nb201 $(q "$NB201")"
      [ "$QUICK" = 1 ] && rest="$rest $(quick_flags "$space" "$label" "$cmd")"
      [ "${#EXTRA[@]}" -gt 0 ] && rest="$rest $(q "${EXTRA[@]}")"
      group=$GROUP; groupable "$space" "$cmd${EXTRA[*]:+ ${EXTRA[*]}}" || group=0
      [ "$space" = sr ] && group=0  # the SR search takes one --seed
      # cell, grouped?, seeds, the line before the seed flag, between it and --out, after --out (US-separated)
      JOBS+=("$cell$US$group$US$(seeds_for "$label" "$space" | tr '\n' ' ')$US$head$US$mid$US$rest")
      runs=$((runs + $(seeds_for "$label" "$space" | wc -w)))
    done
  done
done
[ "${#JOBS[@]}" -gt 0 ] || die "no entry matches --only '$ONLY' / --spaces '$SPACES' / --datasets '$DATASETS'"

TODO=()
# --eval: the evaluation phase of every finished DARTS-skeleton search (DARTS protocol for the DARTS space,
# RobustDARTS's per-dataset protocol for S1-S4; --quick: one smoke epoch), into <run>/eval/.
eval_line() {  # $1 = a search's run directory
  local out=$1 rel space seed preset=darts
  rel=${out#"$RUNS"/}; space=${rel%%/*}; seed=${out##*/seed}
  [[ "$space" =~ ^s[1-4]$ ]] && preset=robustdarts
  if [ "$space" = sr ]; then  # retrain the derived SR network and test it beside its paper row
    local label=${rel#sr/}; label=${label%%/*}
    echo "$PY -m common.sr.train --genotype $(q "$out/result.json") --paper-row $label --seed $seed --data-dir $(q "$DATA_DIR") --out $(q "$out/eval") --resume${EXTRA[*]:+ $(q "${EXTRA[@]}")}"
    return
  fi
  [ "$QUICK" = 1 ] && preset=smoke
  echo "$PY -m common.train $(q "$out") --out $(q "$out/eval") --preset $preset --seed $seed --data-dir $(q "$DATA_DIR") --resume --no-progress${EXTRA[*]:+ $(q "${EXTRA[@]}")}"
}

waiting=0
for job in "${JOBS[@]}"; do
  IFS=$US read -r cell group seeds head mid rest <<<"$job"
  left=()  # the cell's unfinished seeds
  for seed in $seeds; do
    out="$cell/seed$seed"
    if [ "$EVAL" = 1 ]; then
      rel=${out#"$RUNS"/}
      [[ "${rel%%/*}" == nb201* ]] && continue           # NB201 cells (also nb201-3op) are looked up, not trained
      [ -f "$out/result.json" ] || { waiting=$((waiting + 1)); continue; }   # search not finished yet
      [ -f "$out/eval/result.json" ] || TODO+=("$(eval_line "$out")")
      continue
    fi
    [ -f "$out/result.json" ] || left+=("$seed")     # finished: skip
  done
  [ "${#left[@]}" = 0 ] && continue
  dirs=(); for seed in "${left[@]}"; do dirs+=("$cell/seed$seed"); done
  if [ "$group" = 1 ] && [ "${#left[@]}" -gt 1 ] && same_epoch "${dirs[@]}"; then  # one batched process
    TODO+=("$head --seeds ${left[*]} $mid --out $(q "$cell")/seed{seed} $rest")
  else
    for seed in "${left[@]}"; do TODO+=("$head --seed $seed $mid --out $(q "$cell/seed$seed") $rest"); done
  fi
done
todo=${#TODO[@]}
if [ "$DRY" = 1 ]; then  # print only: nothing is created or written
  if [ "$EVAL" = 1 ]; then
    echo "run_all.sh --eval: $todo evaluations to do ($waiting DARTS/S1-S4 searches not finished yet); dry run, nothing written" >&2
  else
    echo "run_all.sh: $runs runs in the matrix, $todo processes to do (finished ones skipped); dry run, nothing written" >&2
  fi
  [ "$todo" = 0 ] || printf '%s\n' "${TODO[@]}"
  exit 0
fi
mkdir -p "$RUNS"
JOBFILE="$RUNS/jobs.txt"
if [ "$todo" = 0 ]; then : > "$JOBFILE"; else printf '%s\n' "${TODO[@]}" > "$JOBFILE"; fi
if [ "$EVAL" = 1 ]; then
  echo "run_all.sh --eval: $todo evaluations to do ($waiting DARTS/S1-S4 searches not finished yet, finished evaluations skipped); list in $JOBFILE" >&2
else
  echo "run_all.sh: $runs runs in the matrix, $todo processes to do (finished ones skipped); list in $JOBFILE" >&2
fi
[ "$todo" = 0 ] && exit 0

run_one() {  # $1 = command line; its stdout/stderr go to <out>/log.txt (a --seeds group: <cell>/log.txt)
  local line=$1 out
  out=$(log_dir "$line")
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
$(declare -f out_of log_dir)
out=\$(log_dir "\$line")
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
