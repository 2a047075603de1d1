#!/usr/bin/env bash
# One time-boxed GPU call (a preemptible instance, a time-limited cluster job; docs/time-boxed-gpu.md):
#
#   python benchmarks/gpu_session.py prepare            # here, first: prints the 64 MiB budget and the call:
#   bash benchmarks/gpu_session.sh                      # there, ≤ 570 s, with .gpu/data .gpu/tools
#                                                       # .gpu/commit.json .gpu/carry .whl beside the tree
#   python benchmarks/gpu_session.py ingest $OUT/gpu-*.tar    # here, after: results/, .gpu-carry/, the table
#   bash benchmarks/gpu_session.sh --dry-run            # anywhere: the plan and its budget arithmetic, no search
#
# Installs the carried wheels (.whl/: a GPU machine without a package index), then runs `gpu_session.py session`
# with any options given here (`python benchmarks/gpu_session.py session --help`): set-up, smoke,
# calibrate, queue under a --budget (default 540 s) it checks itself; ONE tar lands in $OUT (default .gpu/out),
# with one checkpoint file per unfinished seed beside it.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
if [[ " $* " != *" --dry-run "* ]] && compgen -G "$here/.whl/*.whl" >/dev/null; then
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$here"/.whl/*.whl; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_session.sh: installing the carried wheels failed; going on without them" >&2
  fi
fi
export PYTHONUNBUFFERED=1 PYTHON="$PY"
exec "$PY" "$here/benchmarks/gpu_session.py" session --out "${OUT:-$here/.gpu/out}" "$@"
