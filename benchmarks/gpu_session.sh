#!/usr/bin/env bash
# One lent-GPU session as ONE device `run` call (issue 19; README "GPU sessions"):
#
#   python benchmarks/gpu_session.py prepare            # here, first: prints the exact call, i.e.
#   run(command="bash benchmarks/gpu_session.sh", carry=[".gpu/data", ".gpu/tools", ".gpu/commit.json", ".whl"],
#       timeout_s=570)
#   python benchmarks/gpu_session.py ingest <files_at>/gpu-*.tar    # here, after: results/ + README table
#   bash benchmarks/gpu_session.sh --dry-run            # anywhere: the plan and its budget arithmetic, no search
#
# Installs the carried wheels (.whl/, as the device README says), then runs `gpu_session.py session`
# with any options given here (`python benchmarks/gpu_session.py session --help`): set-up, smoke,
# calibrate, queue under a --budget (default 540 s) it checks itself; ONE tar lands in $OUT (default .gpu/out).
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
