"""Run infrastructure end to end on the real CIFAR-10 subset: files, NB201 lookup, kill/resume, NaN guard."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_and_kill_after_epoch_1

from common.baseline import DartsConfig, search
from common.config import build_parser
from common.nb201 import NB201Table, parse_arch_str

pytestmark = pytest.mark.usefixtures("lean_search_setup")  # conftest.py: the NB201 table read once

ROOT = Path(__file__).resolve().parents[1]
# 48 images / batch 16 = 3 steps per epoch (as 96 / 32 did, at half the images and a 32-image evaluation)
TINY = ["--space", "nb201", "--limit-train", "48", "--C", "4", "--N", "1", "--batch-size", "16",
        "--eval-images", "32", "--device", "cpu", "--no-progress"]
METRICS = {"epoch", "step", "lr", "train_loss", "train_acc", "valid_loss", "valid_acc", "discrete_valid_acc",
           "entropy_mean", "entropy_sum", "op_entropy_mean", "op_entropy_sum", "genotype", "nb201", "time"}


def _baseline(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.baseline", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_two_epoch_search_writes_run_directory_and_looks_up_nb201(shared_data, nb201_csv, tmp_path) -> None:
    out = tmp_path / "run"
    proc = _baseline(*TINY, "--data-dir", str(shared_data), "--nb201", str(nb201_csv), "--epochs", "2",
                     "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    args = json.loads((out / "args.json").read_text())
    assert args["space"] == "nb201" and args["N"] == 1 and args["epochs"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(METRICS <= set(r) for r in records)
    assert records[-1]["step"] == 2 * (48 // 16)
    result = json.loads((out / "result.json").read_text())
    parse_arch_str(result["genotype"])  # a valid NB201 arch string
    table = NB201Table.from_csv(nb201_csv)
    assert result["nb201"] == table.query(result["genotype"])  # looked up in the real table
    assert result["genotype"] == records[-1]["genotype"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and torch.equal(ckpt["model"]["alphas.normal"],
                                               torch.tensor(result["alphas"]["normal"]))


@pytest.mark.slow
def test_killed_after_epoch_one_resumes_to_identical_alphas(shared_data, tmp_path) -> None:
    common = [*TINY, "--data-dir", str(shared_data), "--epochs", "3"]
    ref = tmp_path / "ref"
    uninterrupted = subprocess.Popen([sys.executable, "-m", "common.baseline", *common, "--out", str(ref)],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cut = tmp_path / "cut"
    try:  # alongside the uninterrupted run (a core each)
        run_and_kill_after_epoch_1([sys.executable, "-m", "common.baseline", *common, "--out", str(cut)], cut, ROOT)
        _, err = uninterrupted.communicate(timeout=300)
    finally:
        if uninterrupted.poll() is None:  # no orphan when the kill fails
            uninterrupted.kill()
            uninterrupted.wait()
    assert uninterrupted.returncode == 0, err
    assert not (cut / "result.json").exists(), "the run finished before it could be killed"
    rerun = _baseline(*common, "--out", str(cut))  # without --resume: refuses, loses nothing
    assert rerun.returncode == 2 and "--resume" in rerun.stderr
    resumed = _baseline(*common, "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((ref / "result.json").read_text())
    b = json.loads((cut / "result.json").read_text())
    assert a["alphas"] == b["alphas"] and a["genotype"] == b["genotype"]
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "time"}
                       for line in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(ref) == strip(cut)


@pytest.mark.slow
def test_same_seed_twice_is_identical_in_process(shared_data, tmp_path) -> None:
    results = []
    for name in ("a", "b"):
        cfg = DartsConfig(space="nb201", data_dir=str(shared_data), limit_train=64, C=4, N=1, epochs=1,
                          batch_size=16, eval_images=32, out=str(tmp_path / name), progress=False, device="cpu")
        cfg.resolve()
        results.append(search(cfg))
    assert results[0]["alphas"] == results[1]["alphas"]


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(shared_data, tmp_path) -> None:
    out = tmp_path / "nan"
    # 48 images / batch 16 = 3 steps per epoch: step 4 is in epoch 2
    proc = _baseline(*TINY, "--data-dir", str(shared_data), "--epochs", "3", "--out", str(out),
                     "--debug-nan-step", "4")
    assert proc.returncode == 3
    assert "step 4" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and torch.isfinite(ckpt["model"]["alphas.normal"]).all()
    assert (out / "metrics.jsonl").read_text().count("\n") == 1 and not (out / "result.json").exists()


@pytest.mark.parametrize("extra,needle", [
    (["--space", "nb301"], "invalid choice"),
    (["--dataset", "mnist"], "invalid choice"),
    (["--epochs", "0"], "--epochs"),
    (["--partial-channels", "3"], "divisible"),
])
def test_bad_flags_give_one_line_and_exit_2(extra, needle, tmp_path) -> None:
    proc = _baseline(*TINY, "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), *extra)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_says_where_to_put_it(tmp_path) -> None:
    proc = _baseline(*TINY, "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cifar-10-batches-py" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_missing_nb201_table_fails_before_training(shared_data, tmp_path) -> None:
    proc = _baseline(*TINY, "--data-dir", str(shared_data), "--nb201", str(tmp_path / "missing.csv"),
                     "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "missing.csv" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_and_corrupt_checkpoint(shared_data, tmp_path) -> None:
    f = tmp_path / "file"
    f.write_text("keep me")
    proc = _baseline(*TINY, "--data-dir", str(shared_data), "--out", str(f))
    assert proc.returncode == 2 and "not a directory" in proc.stderr and f.read_text() == "keep me"
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"garbage")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    proc = _baseline(*TINY, "--data-dir", str(shared_data), "--out", str(run), "--resume")
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr
    assert (run / "checkpoint.pt").read_bytes() == b"garbage"
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'


def test_parser_takes_help_and_types_from_the_dataclass() -> None:
    parser = build_parser(DartsConfig)
    text = parser.format_help()
    assert "--limit-train" in text and "use only the first N images" in text
    ns = parser.parse_args(["--w-lr-min", "none", "--no-fast", "--limit-train", "10"])
    assert ns.w_lr_min is None and ns.fast is False and ns.limit_train == 10
