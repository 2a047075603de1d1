"""The issue's two end-to-end guarantees, checked for each of the four search scripts on real CIFAR-10.

1. "Kill any method's run at any epoch and resume: α, genotype and metrics identical bit for bit on
   CPU to the uninterrupted run. Same seed twice: identical." — every script and its main backbones
   (EDD sn-softmax/EDD schedule and GDAS/ETS, AER on DARTS-V1/V2/GDAS, SP, SA/SAC/SNAS+SA) is run
   uninterrupted and killed with SIGKILL after epoch 1 or 2, then resumed with --resume; result.json,
   metrics.jsonl (less the wall-clock "time") and the final checkpoint (w, α, optimisers, RNG and the
   method's schedule state) must match exactly. Each config is chosen so its schedule moves every epoch.
2. "At least ten bad inputs, each a one-line error on stderr and a non-zero exit, no traceback, and no
   earlier file in the run directory lost" — 29 bad inputs spread over the four scripts, most of them
   pointed at a run directory pre-populated with a previous good run (killed after epoch 1 of 3) plus a
   marker file, whose bytes must come through unchanged. Issue 20's faults are among them: a record
   without its checkpoint, a run directory locked by another run, a flipped checkpoint bit, a checkpoint
   without its `rng`, a different --epochs on resume, out-of-range flags (all
   numeric flags: tests/test_faults.py).
"""
from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from common.config import parse_config
from common.run import SearchRun
from common.safeio import DigestFile, RunLock, sha256_of

pytestmark = pytest.mark.usefixtures("lean_search_setup")  # conftest.py: the NB201 table read once

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DARTS_SHARED_DATA", ROOT.parent / "shared" / "data"))
CONFIGS = {"edd_darts": "EDDConfig", "aer_darts": "AERConfig", "sp_darts": "SPConfig", "sa_darts": "SAConfig"}
EPOCHS = 3  # 32 images / batch 16 = 2 steps per epoch (as 64 / 32 did, at half the images)


def tiny(data_dir: Path | str, epochs: int = EPOCHS) -> list[str]:
    return ["--space", "nb201", "--data-dir", str(data_dir), "--limit-train", "32", "--C", "4", "--N", "1",
            "--batch-size", "16", "--eval-images", "16", "--epochs", str(epochs), "--device", "cpu",
            "--no-progress"]


def command(script: str, *args: str) -> list[str]:
    return [sys.executable, f"{script}.py", *args]


def run_script(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command(script, *args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def records(out: Path, keep_time: bool = False) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if keep_time or k != "time"} for line in lines]


def result(out: Path) -> dict[str, Any]:
    res = json.loads((out / "result.json").read_text())
    res.pop("wall_time_s")
    res["final"].pop("time")
    return res


def checkpoint(out: Path) -> dict[str, Any]:
    """The final checkpoint less what may differ: wall-clock times and the --resume flag."""
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    ckpt.pop("wall_time")
    ckpt["metrics"] = [{k: v for k, v in r.items() if k != "time"} for r in ckpt["metrics"]]
    ckpt["config"].pop("resume")
    ckpt["config"].pop("out")
    return ckpt


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two nested checkpoints differ (tensors bit for bit, dtype and shape included), or None."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        return None if same else path
    if hasattr(a, "tolist") and hasattr(b, "tolist") and not isinstance(a, (int, float)):  # numpy arrays
        a, b = a.tolist(), b.tolist()
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return f"{path} (keys)"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}/{k}"))), None)
    if isinstance(a, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return f"{path} (length)"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}[{i}]"))),
                    None)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b and type(a) is type(b) else f"{path} ({a!r} != {b!r})"


def assert_identical_runs(a: Path, b: Path) -> None:
    ra, rb = result(a), result(b)
    assert ra["alphas"] == rb["alphas"]
    assert ra["genotype"] == rb["genotype"]
    assert ra == rb
    assert records(a) == records(b)
    assert first_difference(checkpoint(a), checkpoint(b)) is None


def kill_after(args: list[str], script: str, out: Path, epochs_done: int) -> list[dict[str, Any]]:
    """Start a search, SIGKILL it once `epochs_done` epochs are logged; the records (with times) it left.

    Should the run finish before the kill lands, it is started again and killed one epoch earlier.
    """
    for target in range(epochs_done, 0, -1):
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(command(script, *args, "--out", str(out)), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics, deadline = out / "metrics.jsonl", time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if metrics.exists() and metrics.read_text().count("\n") >= target:
                proc.send_signal(signal.SIGKILL)  # a hard kill somewhere in epoch target + 1
                break
            time.sleep(0.01)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and not (out / "result.json").exists():
            left = records(out, keep_time=True)
            assert 1 <= len(left) < EPOCHS
            return left
        assert proc.returncode in (0, -signal.SIGKILL), f"the run to be killed failed ({proc.returncode})"
    pytest.fail(f"{script} finished every time before it could be killed")


# (script, flags, kill after this many epochs, also run it twice with the same seed, metric that must move)
RESUME_CASES = [
    pytest.param("edd_darts", ["--warmup", "0"], 1, True, "temperature", id="edd-sn-edd"),
    pytest.param("edd_darts", ["--backbone", "gdas"], 2, False, "temperature", id="edd-gdas-ets"),
    pytest.param("aer_darts", ["--backbone", "darts-v1"], 1, True, "lam", id="aer-darts-v1"),
    pytest.param("aer_darts", ["--backbone", "darts-v2"], 2, False, "lam", id="aer-darts-v2"),
    pytest.param("aer_darts", ["--backbone", "gdas"], 1, False, "tau", id="aer-gdas"),
    pytest.param("sp_darts", ["--warmup", "0"], 1, True, "p", id="sp"),
    pytest.param("sa_darts", ["--reg", "sa"], 2, True, "lam", id="sa"),  # cutout on
    pytest.param("sa_darts", ["--partial-channels", "2"], 1, False, "lam", id="sac"),
    pytest.param("sa_darts", ["--backbone", "snas"], 2, False, "temperature", id="sa-snas"),
]


@pytest.mark.slow
@pytest.mark.parametrize("script,flags,epochs_done,twice,moving", RESUME_CASES)
def test_killed_run_resumes_bit_identical_and_same_seed_twice_is_identical(
        script: str, flags: list[str], epochs_done: int, twice: bool, moving: str, shared_data: Path,
        tmp_path: Path) -> None:
    args = [*tiny(shared_data), *flags]
    refs = [tmp_path / name for name in (("ref", "ref2") if twice else ("ref",))]
    uninterrupted = [subprocess.Popen(command(script, *args, "--out", str(r)), cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for r in refs]  # alongside the kill
    cut = tmp_path / "cut"
    try:
        left = kill_after(args, script, cut, epochs_done)
        for proc in uninterrupted:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
    finally:
        for proc in uninterrupted:  # no orphans when the kill or a run fails
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    resumed = run_script(script, *args, "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr

    ref_records = records(refs[0])
    assert [r["epoch"] for r in ref_records] == [1, 2, 3]
    assert len({json.dumps(r[moving]) for r in ref_records}) == EPOCHS, f"{moving} must move every epoch"
    assert records(cut, keep_time=True)[:len(left)] == left, "the resumed run redid finished epochs"
    assert_identical_runs(refs[0], cut)
    if twice:
        assert_identical_runs(refs[0], refs[1])


# ----------------------------------------------------------------------------- bad inputs

ARGPARSE_BUG = None  # was: argparse printed its usage block before the error line (fixed in common/config.py)


def data_dir() -> Path:
    if not (SHARED_DATA / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {SHARED_DATA}")
    return SHARED_DATA


class _Killed(Exception):
    """Stands in for a kill after the first epoch's checkpoint (in-process, cheaper than a subprocess)."""


@pytest.fixture(scope="module")
def previous_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run directory per script (in-process) stopped after epoch 1 of EPOCHS: args.json, metrics.jsonl,
    checkpoint.pt and its .sha256, the .lock file; to pre-populate run directories."""
    end_epoch = SearchRun.end_epoch

    def end_epoch_then_stop(self: SearchRun, *args: Any, **kwargs: Any) -> dict:
        end_epoch(self, *args, **kwargs)
        self.dir.release()
        raise _Killed

    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SearchRun, "end_epoch", end_epoch_then_stop)
        for script, config in CONFIGS.items():
            module = importlib.import_module(script)
            out = tmp_path_factory.mktemp(script)
            argv = [*tiny(data_dir()), "--out", str(out)]
            with pytest.raises(_Killed):
                module.search(parse_config(getattr(module, config), argv))
            runs[script] = out
    return runs


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def corrupt_data(tmp: Path) -> Path:
    """A copy of the CIFAR-10 subset whose data_batch_1 is cut in half (an interrupted download)."""
    root = tmp / "corrupt-data"
    shutil.copytree(data_dir() / "cifar-10-batches-py", root / "cifar-10-batches-py")
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.chmod(0o644)
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    return root


def nb201_csv(tmp: Path, kind: str) -> Path:
    """A malformed copy of the NB201 table's first rows: a misspelt column, or a non-numeric accuracy."""
    lines = (data_dir() / "nb201" / "nb201_200ep.csv").read_text().splitlines()[:3]
    if kind == "column":
        lines[0] = lines[0].replace("cifar10_test", "cifar10_tset")
    else:
        fields = lines[2].split(",")
        fields[3] = "n/a"  # cifar10_test of index 1
        lines[2] = ",".join(fields)
    path = tmp / f"nb201-bad-{kind}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def truncate_checkpoint(run: Path) -> None:
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])


def flip_checkpoint_bit(run: Path) -> None:
    """One bit of the stored tensors flipped: torch.load still reads it (a silent resume without the sha256)."""
    ckpt = run / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x40
    ckpt.write_bytes(bytes(data))
    torch.load(ckpt, map_location="cpu", weights_only=False)  # the flip is invisible to the unpickler


def drop_checkpoint_rng(run: Path) -> None:
    """A checkpoint without its `rng` entry, with a matching sha256 (so only the missing entry is wrong)."""
    ckpt = run / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    del state["rng"]
    torch.save(state, ckpt)
    DigestFile(ckpt).write([sha256_of(ckpt)])


def drop_checkpoint(run: Path) -> None:
    """args.json and metrics.jsonl of a run (a copied GPU record, say) without checkpoint.pt."""
    (run / "checkpoint.pt").unlink()
    (run / "checkpoint.pt.sha256").unlink(missing_ok=True)


PREPARE = {"truncate": truncate_checkpoint, "flip": flip_checkpoint_bit, "norng": drop_checkpoint_rng,
           "nockpt": drop_checkpoint}


# id, script, extra flags ("@X" filled in by `materialise`), exit code, words the one line must contain,
# what to do to the pre-populated run directory first (None: --out is fresh), xfail reason
BAD_INPUTS = [
    ("edd-unknown-space", "edd_darts", ["--space", "nb301"], 2, ["nb301"], "resume", ARGPARSE_BUG),
    ("edd-unknown-backbone", "edd_darts", ["--backbone", "snas"], 2, ["snas"], "resume", ARGPARSE_BUG),
    ("edd-negative-t0", "edd_darts", ["--t0", "-1"], 2, ["--t0", "-1"], "resume", None),
    ("edd-s-1", "edd_darts", ["--s", "1"], 2, ["--s", "> 1"], "resume", None),
    ("edd-nan-fresh", "edd_darts", ["--debug-nan-step", "3"], 3, ["step 3", "epoch 1"], None, None),
    ("aer-unknown-dataset", "aer_darts", ["--dataset", "mnist"], 2, ["mnist"], "resume", ARGPARSE_BUG),
    ("aer-unknown-backbone", "aer_darts", ["--backbone", "darts-v3"], 2, ["darts-v3"], "resume", ARGPARSE_BUG),
    ("aer-missing-data", "aer_darts", ["--data-dir", "@MISSING_DIR"], 2,
     ["cifar-10-batches-py", "download", "cifar-10-python.tar.gz"], "resume", None),
    ("aer-corrupt-batch", "aer_darts", ["--data-dir", "@CORRUPT_DATA"], 2, ["data_batch_1", "corrupt"],
     "resume", None),
    ("aer-corrupt-checkpoint", "aer_darts", [], 2, ["checkpoint.pt", "corrupt"], "truncate", None),
    ("sp-negative-t-sp", "sp_darts", ["--t-sp", "-1"], 2, ["--t-sp", "-1"], "resume", None),
    ("sp-p-up-negative", "sp_darts", ["--p-up=-0.5"], 2, ["--p-up", ">= 0", "-0.5"], "resume", None),
    ("sp-missing-nb201", "sp_darts", ["--nb201", "@MISSING_CSV"], 2, ["missing.csv"], "resume", None),
    ("sp-nb201-bad-column", "sp_darts", ["--nb201", "@CSV_COLUMN"], 2, ["cifar10_test", "column"], "resume",
     None),
    ("sp-nb201-not-a-number", "sp_darts", ["--nb201", "@CSV_NUMBER"], 2, ["n/a", "not a number", ":3"],
     "resume", None),
    ("sp-nan-resumed", "sp_darts", ["--debug-nan-step", "3"], 3, ["step 3", "epoch 1"], "resume", None),
    ("sa-unknown-backbone", "sa_darts", ["--backbone", "gdas"], 2, ["gdas"], "resume", ARGPARSE_BUG),
    ("sa-incompatible-checkpoint", "sa_darts", ["--C", "8"], 2, ["--C", "incompatible"], "resume", None),
    ("sa-corrupt-checkpoint", "sa_darts", [], 2, ["checkpoint.pt", "corrupt"], "truncate", None),
    ("sa-out-is-a-file", "sa_darts", ["--out", "@FILE"], 2, ["not a directory"], None, None),
    # faults 1-4, 6 and 8
    ("edd-record-without-checkpoint", "edd_darts", [], 2, ["metrics.jsonl", "no checkpoint.pt"], "nockpt", None),
    ("aer-record-without-checkpoint-fresh", "aer_darts", ["--no-resume"], 2,
     ["metrics.jsonl", "no checkpoint.pt"], "nockpt", None),
    ("sp-locked-by-another-run", "sp_darts", [], 2, ["another run", ".lock"], "locked", None),
    ("sa-flipped-checkpoint-bit", "sa_darts", [], 2, ["checkpoint.pt", "corrupt", "sha256"], "flip", None),
    ("edd-checkpoint-without-rng", "edd_darts", [], 2, ["checkpoint.pt", "rng"], "norng", None),
    ("aer-resume-fewer-epochs", "aer_darts", ["--epochs", "2"], 2, ["3-epoch", "1 done", "--epochs 2"],
     "resume", None),
    ("sa-resume-more-epochs", "sa_darts", ["--epochs", "5"], 2, ["3-epoch", "--epochs 5", "--epochs 3"],
     "resume", None),
    ("sa-negative-grad-clip", "sa_darts", ["--grad-clip", "-1"], 2, ["--grad-clip", ">= 0", "-1"], None, None),
    ("edd-device-mps", "edd_darts", ["--device", "mps"], 2, ["--device", "mps"], "resume", None),
]


def materialise(token: str, tmp: Path) -> str:
    if token == "@MISSING_DIR":
        return str(tmp / "no-data-here")
    if token == "@CORRUPT_DATA":
        return str(corrupt_data(tmp))
    if token == "@MISSING_CSV":
        return str(tmp / "missing.csv")
    if token in ("@CSV_COLUMN", "@CSV_NUMBER"):
        return str(nb201_csv(tmp, "column" if token == "@CSV_COLUMN" else "number"))
    if token == "@FILE":
        (tmp / "a-file").write_text("an earlier file, not a directory\n")
        return str(tmp / "a-file")
    return token


@pytest.mark.parametrize("script,flags,code,words,previous", [
    pytest.param(*case[1:6], id=case[0],
                 marks=([pytest.mark.xfail(strict=True, reason=case[6])] if case[6] else [])
                 + ([pytest.mark.slow] if case[3] == 3 else []))  # the NaN cases train an epoch
    for case in BAD_INPUTS])
def test_bad_input_gives_one_line_and_loses_no_earlier_file(
        script: str, flags: list[str], code: int, words: list[str], previous: str | None,
        previous_runs: dict[str, Path], tmp_path: Path) -> None:
    flags = [materialise(f, tmp_path) for f in flags]
    run = tmp_path / "run"
    extra = ["--out", str(run)]
    if previous is not None:  # a run of this script killed after epoch 1 of 3, resumed
        shutil.copytree(previous_runs[script], run)
        (run / "notes.txt").write_text("a file of the user's\n")
        if previous in PREPARE:
            PREPARE[previous](run)
        extra.append("--resume")
    before = snapshot(run) if run.exists() else None
    lock = RunLock(run) if previous == "locked" else None  # another run holds the directory
    try:
        proc = run_script(script, *tiny(data_dir()), *extra, *flags)
    finally:
        if lock is not None:
            lock.release()

    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, f"stderr has {len(lines)} lines:\n{proc.stderr}"
    assert all(w in lines[0] for w in words), lines[0]
    if before is not None:
        after = snapshot(run)
        log_before, log_after = before.pop("log.txt", b""), after.pop("log.txt", b"")
        assert after == before, "a file of the earlier run changed or vanished"
        assert log_after.startswith(log_before), "log.txt lost earlier lines (it may only grow)"
    elif code == 2 and "--out" not in flags:  # refused before anything was created
        assert not run.exists(), "a refused run created its run directory"
    if "--out" in flags:  # the file given as --out is untouched
        assert (tmp_path / "a-file").read_text() == "an earlier file, not a directory\n"
    if code == 3 and previous is None:  # the NaN guard: epoch 1's checkpoint is kept, nothing after it
        ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
        assert ckpt["epoch"] == 1 and all(torch.isfinite(a).all() for k, a in ckpt["model"].items()
                                          if k.startswith("alphas."))
        assert len(records(run)) == 1 and not (run / "result.json").exists()

