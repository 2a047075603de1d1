"""Workarounds for torch bugs met by the project's own shapes, each checked in a subprocess (a crash there
fails the test instead of killing the test run)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_DARTS_SEARCH = """
import sys, tempfile
import aer_darts
from common.run import CHANNELS_LAST_MIN_C, SearchRun
cfg = aer_darts.AERConfig(space="darts", backbone="gdas", gdas_form="nb201", dataset="synthetic", C=2, N=2,
                          limit_train=16, batch_size=8, epochs=2, eval_images=8, device="cpu", nb201="none",
                          progress=False, out=tempfile.mkdtemp() + "/run", lam=0.0)
cfg.resolve()
assert CHANNELS_LAST_MIN_C > cfg.C
result = aer_darts.search(cfg)
print("ok", result["epochs"])
"""


def test_a_c2_darts_skeleton_search_runs_nchw_on_cpu() -> None:
    """A C = 2 DARTS-skeleton search (the tests' size) runs its supernet NCHW: in channels_last, torch 2.14's
    oneDNN convolution backward corrupts the heap there (glibc aborted the process, "double free or
    corruption", in the first w step's backward). C >= 4 (the quick matrix) keeps channels_last."""
    proc = subprocess.run([sys.executable, "-c", TINY_DARTS_SEARCH], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.split()[-2:] == ["ok", "2"], proc.stderr[-2000:]
