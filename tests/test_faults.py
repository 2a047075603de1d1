"""Issue 20's faults, checked where they are cheapest (in-process unless a process boundary is the point).

Each test fails on the code before the fix; the comment above it says how. The command-line cases
(a record without its checkpoint, a locked run directory, a flipped checkpoint bit, a checkpoint without
`rng`, --epochs changed on resume, out-of-range flags) are rows of the bad-input table in
tests/test_guarantees.py.
"""
from __future__ import annotations

import builtins
import dataclasses
import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

import common.data as data_module
from aer_darts import AERConfig
from authors.edd import EDDConfig
from authors.sp import SPConfig
from common.baseline import DartsConfig, search
from common.config import SearchConfig, _base_type, parse_config
from common.data import DataError, load_arrays
from common.nb201 import NB201Table
from common.nb201 import main as nb201_main
from common.report import main as report_main
from common.run import NonFiniteLoss, RunDir, RunError, SearchRun, write_json
from common.safeio import DigestFile, json_safe, sha256_of
from sa_darts import SAConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = {"space": "nb201", "limit_train": 64, "C": 4, "N": 1, "batch_size": 32, "eval_images": 32,
        "device": "cpu", "progress": False}


def tiny_config(data: Path, out: Path, **changes: Any) -> DartsConfig:
    cfg = DartsConfig(data_dir=str(data), out=str(out), **{**TINY, "epochs": 2, **changes})
    cfg.resolve()
    return cfg


def strict_json(text: str) -> Any:
    """json.loads that refuses the non-JSON tokens NaN, Infinity, -Infinity."""
    def refuse(token: str) -> None:
        raise ValueError(f"non-JSON token {token}")
    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- 4. ranges of every flag

#: An out-of-range value for every numeric flag of SearchConfig and the four method configs; the
#: `(config, flag)` keys override the flag's row for one config (AER's λ may be any finite number).
BAD_VALUES = {
    "epochs": "0", "batch_size": "0", "C": "0", "N": "0", "limit_train": "0", "seed": "-1",
    "w_lr": "0", "w_lr_min": "-1", "w_momentum": "-0.5", "w_wd": "-1", "grad_clip": "-1", "a_lr": "-1",
    "a_wd": "-1", "a_beta1": "1.0", "cutout": "-1", "partial_channels": "0", "eval_images": "-1",
    "log_every": "0", "debug_nan_step": "-1", "debug_nan_seed": "-1", "alpha_init": "-1", "alpha_init_mean": "nan",
    "derive_decimals": "-1", "checkpoint_every": "-1",
    # EDD
    "s": "1", "lam": "0", "rho": "1", "e_a": "0", "t0": "0", "t_end": "0", "warmup": "-1",
    "decay_every": "0", "late_from": "-1", "lam_late": "0", "pcd_d": "0", "pcd_period": "0",
    "clip_alpha": "0",
    # AER
    "lam_neg": "nan", "lam_pos": "inf", "tau_max": "0", "tau_min": "0",
    # SP
    "t_sp": "0", "t_sm_ratio": "-1", "t_sm": "0", "p_low": "-0.1", "p_up": "-0.5",
    "t_sp_late": "0", "t_warmup": "-1", "freeze_from": "0",
    # SA
    "nu": "nan", "mu": "-1", "lam_divisor": "0", "beta_slope": "-1", "init_skip_bias": "inf",
    (AERConfig, "lam"): "nan",
}
#: The issue's own list, and the edges of the ranges.
MORE_BAD = [("seed", str(2**32)), ("grad_clip", "-1"), ("w_momentum", "-0.5"), ("a_beta1", "1.0"),
            ("w_wd", "-1"), ("device", "mps"), ("device", "cuda:x"), ("w_lr", "nan"), ("grad_clip", "inf")]
CONFIG_CLASSES = [DartsConfig, EDDConfig, AERConfig, SPConfig, SAConfig]


def numeric_fields(cls: type[SearchConfig]) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if _base_type(hints[f.name])[0] in (int, float)]


def parse_error(cls: type[SearchConfig], argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(cls, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


# Before: --grad-clip -1, --w-wd -1, --seed 2**32, --device mps, NaN/inf floats, --late-from -1 and
# --beta-slope -1 were accepted; --seed -1, --w-momentum -0.5, --a-beta1 1 crashed later in a traceback.
@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_flag_out_of_range_is_one_line_naming_it(cls: type[SearchConfig], capsys) -> None:
    fields = numeric_fields(cls)
    assert set(fields) <= {k for k in BAD_VALUES if isinstance(k, str)}, "a numeric flag has no bad value"
    for name in fields:
        flag = "--" + name.replace("_", "-")
        value = BAD_VALUES.get((cls, name), BAD_VALUES[name])
        err = parse_error(cls, [flag, value], capsys)
        assert flag in err, (name, value, err)
    for name, value in MORE_BAD:
        flag = "--" + name.replace("_", "-")
        assert flag in parse_error(cls, [flag, value], capsys)


def test_range_edges_are_accepted() -> None:
    cfg = parse_config(DartsConfig, ["--seed", str(2**32 - 1), "--grad-clip", "0", "--w-momentum", "0",
                                     "--a-beta1", "0", "--w-wd", "0", "--device", "cuda:1"])
    assert cfg.seed == 2**32 - 1 and cfg.grad_clip == 0 and cfg.device == "cuda:1"


# ----------------------------------------------------------------------------- 5. a partial NB201 table

# Before: the derived cell missing from the table raised ValueError (a traceback) after the first epoch.
def test_partial_nb201_table_is_noted_and_a_missing_cell_is_recorded(shared_data, nb201_csv, tmp_path,
                                                                     capsys) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(nb201_csv.read_text().splitlines()[:3]) + "\n")  # header + indexes 0, 1
    result = search(tiny_config(shared_data, tmp_path / "run", epochs=1, nb201=str(partial)))
    assert "holds 2 of the 15,625" in capsys.readouterr().err
    table = NB201Table.from_csv(partial)
    assert len(table) == 2 and not table.complete and NB201Table.from_csv(nb201_csv).complete
    assert result["genotype"] not in table  # the fixed seed derives a cell outside the two rows
    assert result["nb201"] is None and result["nb201_missing"] is True
    record = strict_json((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["nb201"] is None and record["nb201_missing"] is True


# Before: common.train (merged after the issue) also replaced such a record when started over it.
@pytest.mark.parametrize("resume", [True, False])
def test_train_over_a_record_without_checkpoint_is_refused(shared_data, tmp_path, capsys, resume) -> None:
    from common.train import main as train_main
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"epoch": 1, "test_acc": 97.0}\n')  # a copied GPU record
    with pytest.raises(SystemExit) as exit_info:
        train_main(["DARTS_V2", "--preset", "smoke", "--device", "cpu", "--no-progress", "--data-dir",
                    str(shared_data), "--limit-train", "64", "--limit-test", "64", "--out", str(out),
                    *(["--resume"] if resume else [])])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "metrics.jsonl" in err and "no checkpoint.pt" in err, err
    assert (out / "metrics.jsonl").read_text() == '{"epoch": 1, "test_acc": 97.0}\n'
    assert not (out / "args.json").exists()


# ----------------------------------------------------------------------------- 7, 8. unreadable data

def _deny(paths: tuple[str, ...]):
    def check(path: Any) -> None:
        if any(str(path).endswith(p) for p in paths):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return check


# Before: "... data_batch_1 is corrupt or truncated (PermissionError ...); delete it and download again".
def test_unreadable_batch_file_is_called_unreadable_not_corrupt(shared_data, monkeypatch) -> None:
    deny, real_open = _deny(("data_batch_1",)), builtins.open

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        deny(path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(data_module, "open", fake_open, raising=False)  # tests run as root: modes are ignored
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", shared_data, download=False)
    text = str(err.value)
    assert "cannot read" in text and "data_batch_1" in text and "Permission denied" in text
    assert "corrupt" not in text and "do not delete" in text and "\n" not in text


# Before: Path.is_file raised PermissionError (EACCES on a folder without search permission): a traceback.
def test_data_folder_without_permission_is_one_line(shared_data, monkeypatch) -> None:
    deny, real_is_file = _deny(("data_batch_1", "data_batch_2")), pathlib.Path.is_file

    def fake_is_file(self: Path) -> bool:
        deny(self)
        return real_is_file(self)
    monkeypatch.setattr(pathlib.Path, "is_file", fake_is_file)
    with pytest.raises(DataError) as err:
        load_arrays("cifar10", shared_data, download=False)
    assert "cannot read" in str(err.value) and "Permission denied" in str(err.value)


# ----------------------------------------------------------------------------- 8. more one-liners

# Before: csv.Error ("field larger than field limit (131072)") escaped as a traceback, also from the CLI.
def test_nb201_csv_field_over_the_csv_limit_is_one_line(nb201_csv, tmp_path, capsys) -> None:
    lines = nb201_csv.read_text().splitlines()[:4]
    fields = lines[2].split(",")
    fields[1] = "x" * 140_000
    lines[2] = ",".join(fields)
    big = tmp_path / "big.csv"
    big.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"big\.csv:3: .*131072"):
        NB201Table.from_csv(big)
    assert nb201_main(["query", str(big), "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "131072" in err and "Traceback" not in err


# Before: FileExistsError from mkdir (a traceback).
def test_report_out_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"script": "sa_darts", "space": "nb201", "dataset": "cifar10"}))
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path / "runs"), "--out", str(afile)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and "not a directory" in err
    assert afile.read_text() == "keep"


# ----------------------------------------------------------------------------- 9. full disk, NaN, JSON

# Before: the OSError was a traceback and checkpoint.pt.tmp stayed behind.
def test_full_disk_removes_the_partial_checkpoint_and_keeps_the_last_good_one(shared_data, tmp_path,
                                                                             monkeypatch) -> None:
    out, real_save, calls = tmp_path / "run", torch.save, []

    def save_then_fill_the_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(f)
        if len(calls) == 2:  # epoch 2's checkpoint: half written, then ENOSPC
            Path(f).write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", save_then_fill_the_disk)
    with pytest.raises(RunError) as err:
        search(tiny_config(shared_data, out))
    text = str(err.value)
    assert "No space left on device" in text and "partial file was removed" in text
    assert "last good checkpoint (after epoch 1)" in text
    assert not (out / "checkpoint.pt.tmp").exists() and not list(out.glob("*.tmp"))
    assert DigestFile(out / "checkpoint.pt").matches() is True
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


# Before: OSError traceback from appending to log.txt on a full disk.
def test_full_disk_while_logging_is_one_line(tmp_path, monkeypatch) -> None:
    run_dir, real_open = RunDir(tmp_path / "run"), pathlib.Path.open

    def full(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name == "log.txt":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_open(self, mode, *args, **kwargs)
    monkeypatch.setattr(pathlib.Path, "open", full)
    with pytest.raises(RunError, match=r"cannot write .*log\.txt \(No space left on device\); no checkpoint"):
        run_dir.log("epoch 1/2")
    run_dir.release()


# Before: NaN α with finite losses reached derive_arch_str (ValueError traceback), or a NaN checkpoint.
def test_nonfinite_alpha_stops_before_the_checkpoint_and_a_nan_checkpoint_is_not_resumed(
        shared_data, tmp_path, monkeypatch) -> None:
    out, end_epoch = tmp_path / "run", SearchRun.end_epoch

    def poison_epoch_2(self: SearchRun, *args: Any, **kwargs: Any) -> dict:
        if self.epoch == 1:
            with torch.no_grad():
                self.model.alphas["normal"][0, 0] = float("nan")
        return end_epoch(self, *args, **kwargs)
    monkeypatch.setattr(SearchRun, "end_epoch", poison_epoch_2)
    with pytest.raises(NonFiniteLoss, match=r"non-finite in epoch 2 \(alphas\.normal\).*after epoch 1"):
        search(tiny_config(shared_data, out, epochs=3))
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and torch.isfinite(state["model"]["alphas.normal"]).all()
    state["model"]["alphas.normal"][0, 0] = float("nan")  # a checkpoint of older code holding NaN
    torch.save(state, out / "checkpoint.pt")
    DigestFile(out / "checkpoint.pt").write([sha256_of(out / "checkpoint.pt")])
    monkeypatch.setattr(SearchRun, "end_epoch", end_epoch)
    with pytest.raises(RunError, match="non-finite values .*alphas.normal.*not a good checkpoint"):
        search(tiny_config(shared_data, out, epochs=3, resume=True))


# Before: json.dumps wrote the bare token NaN (not JSON) into result.json and metrics.jsonl.
def test_nonfinite_numbers_are_written_as_null(tmp_path) -> None:
    value = {"acc": float("nan"), "nb201": {"cifar10_test": float("inf")}, "t": torch.tensor(float("-inf")),
             "list": [1.5, float("nan")], "ok": 2}
    expected = {"acc": None, "nb201": {"cifar10_test": None}, "t": None, "list": [1.5, None], "ok": 2}
    assert json_safe(value) == expected
    write_json(tmp_path / "result.json", value)
    assert strict_json((tmp_path / "result.json").read_text()) == expected
    run_dir = RunDir(tmp_path / "run")
    run_dir.write_metrics([value, {"epoch": 2, "train_acc": float("nan")}])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [strict_json(line) for line in lines] == [expected, {"epoch": 2, "train_acc": None}]
    run_dir.release()


# ----------------------------------------------------------------------------- 2, 9. processes

def _tiny_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "common.baseline", "--space", "nb201", "--data-dir", str(data), "--limit-train",
            "64", "--C", "4", "--N", "1", "--batch-size", "32", "--eval-images", "32", "--device", "cpu",
            "--no-progress", "--out", str(out), *extra]


# Before: both runs wrote into one folder (both exit 0, the files a mix of two seeds, or a crash).
@pytest.mark.slow
def test_two_runs_on_one_out_one_wins_the_other_stops_with_one_line(shared_data, tmp_path) -> None:
    out = tmp_path / "run"
    procs = {seed: subprocess.Popen(_tiny_argv(shared_data, out, "--epochs", "2", "--seed", str(seed)), cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (0, 1)}
    done = {seed: (proc.wait(timeout=300), proc.communicate()[1]) for seed, proc in procs.items()}
    winners = [seed for seed, (code, _) in done.items() if code == 0]
    assert len(winners) == 1, done
    (loser_code, loser_err), = (v for seed, v in done.items() if seed != winners[0])
    assert loser_code == 2 and len(loser_err.strip().splitlines()) == 1 and "Traceback" not in loser_err
    assert "another run" in loser_err or "already holds a run" in loser_err, loser_err
    args = json.loads((out / "args.json").read_text())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert args["seed"] == ckpt["config"]["seed"] == winners[0]
    assert [r["epoch"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2]


# Before: SIGTERM killed the run silently (exit -15).
@pytest.mark.slow
def test_sigterm_is_handled_as_ctrl_c(shared_data, tmp_path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(_tiny_argv(shared_data, out, "--epochs", "100"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "metrics.jsonl").exists():
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("interrupted") and "--resume" in err
    assert "last good checkpoint (after epoch" in err  # says what is kept, not a blanket claim
    assert not list(out.glob("*.tmp")) and DigestFile(out / "checkpoint.pt").matches() is True
    assert not (out / "result.json").exists()


# The same two faults with real file modes, where they apply (root reads any file, whatever its mode).
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes; the monkeypatched tests cover root")
@pytest.mark.parametrize("target", ["data_batch_1", "."])
def test_real_permission_denied_is_one_line(shared_data, tmp_path, target) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(shared_data / "cifar-10-batches-py", folder)
    (folder / target).chmod(0)
    try:
        with pytest.raises(DataError, match="cannot read .*do not delete"):
            load_arrays("cifar10", tmp_path, download=False)
    finally:
        (folder / target).chmod(0o755)
