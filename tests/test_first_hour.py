"""Issue 20, "first hour": plain log and summary, resume messages, labels, help, presets, run_all.sh."""
from __future__ import annotations

import collections.abc
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import HELP_DRIVER

from common.baseline import DartsConfig
from common.config import parse_config
from common.nb201 import COLUMNS, PACKAGED_TABLE, NB201Table
from common.report import PAPER, method_label

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--space", "nb201", "--limit-train", "64", "--C", "4", "--N", "1", "--batch-size", "16",
        "--eval-images", "32", "--device", "cpu", "--epochs", "2"]


def _run(*args: str, stdout=subprocess.PIPE, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_log_lines_summary_and_resume_messages(shared_data, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = ["-m", "common.baseline", *TINY, "--data-dir", str(shared_data), "--out", str(out)]  # packaged NB201
    # 1. progress on (the default) but stderr is not a terminal: no bars, one plain line per epoch on stdout
    first = _run(*common, "--debug-nan-step", "4")  # 32 images / 16 = 2 steps per epoch: NaN in epoch 2 (+1)
    assert first.returncode == 3, first.stderr
    assert "it/s" not in first.stderr and "\r" not in first.stderr  # no tqdm bar in a file
    lines = first.stdout.splitlines()
    assert lines[0].startswith("search: darts, nb201 on cifar10, 2 epochs") and str(out) in lines[0]
    assert "H = mean edge entropy" in lines[1]  # the abbreviations, once at the start
    assert lines[2].startswith("epoch 1/2  train ") and " H 1.60" in lines[2] and "NB201 C10 test" in lines[2]
    assert (out / "log.txt").read_text().splitlines() == lines  # the same lines in the run directory
    # 2. resume speaks; stdout sent to log.txt itself (run_all.sh) does not double the lines
    with (out / "log.txt").open("a") as log:
        second = _run(*common, "--resume", stdout=log)
    assert second.returncode == 0, second.stderr
    log = (out / "log.txt").read_text().splitlines()
    assert log[:3] == lines  # history kept (appended)
    assert log[3] == f"resuming from epoch 2 of 2 (1 done; checkpoint {out / 'checkpoint.pt'})"
    assert log[5].startswith("epoch 2/2  ") and sum(line.startswith("epoch 2/2") for line in log) == 1
    summary = "\n".join(log[6:])
    result = json.loads((out / "result.json").read_text())
    assert log[6].startswith("search finished: DARTS-V1 (darts), NB201 on CIFAR-10, seed 0, 2 epochs")
    assert f"derived cell: {result['genotype']}" in summary
    assert f"C10 test {result['nb201']['cifar10_test']:.2f} (paper, DARTS-V1: {PAPER['DARTS-V1']})" in summary
    assert f"IN16 test {result['nb201']['imagenet16_test']:.2f}" in summary
    assert result["nb201"]["imagenet16_valid"] is None and "IN16 valid — (not in this table)" in summary
    assert f"run directory: {out}" in summary and "H = mean edge entropy" in summary
    # 3. --resume on a finished run: says so, exit 0, changes nothing
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from common.baseline import main
    with pytest.raises(SystemExit) as exit_:  # in-process: main_guard's exit
        main([*common[2:], "--resume"])
    said = capsys.readouterr().out
    assert exit_.value.code == 0 and "finished run (2 of 2 epochs" in said and "nothing changed" in said
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("script,args,label", [
    ("edd_darts", {"backbone": "darts", "schedule": "edd"}, "EDD-DARTS"),
    ("edd_darts", {"backbone": "darts", "schedule": "edd", "clip_alpha": 5.0}, "EDD-DARTS (clip)"),
    ("edd_darts", {"backbone": "darts", "schedule": "pcd"}, "PCD"),
    ("edd_darts", {"backbone": "gdas", "schedule": "ets"}, "ETS-GDAS"),
    ("aer_darts", {"backbone": "darts-v2", "lam_neg": -0.2, "lam_pos": 0.2, "lam": None}, "DARTS-V2-AER"),
    ("aer_darts", {"backbone": "gdas", "lam_neg": 0.0, "lam_pos": 0.0, "lam": None}, "GDAS"),
    ("sp_darts", {}, "SP-DARTS"),
    ("sa_darts", {"reg": "sa", "partial_channels": 4}, "SAC-DARTS"),
    ("sa_darts", {"reg": "beta"}, "beta-DARTS"),
    ("darts", {}, "DARTS-V1"),
])
def test_method_label_is_the_papers_name(script, args, label) -> None:
    assert method_label({"script": script, "partial_channels": 1, **args}) == label
    assert label in PAPER  # so the summary and the report can put the paper's number beside it


def test_parametrize_argvalues_are_collections() -> None:
    """pytest 9.1 warns (PytestRemovedIn10Warning), pytest 10 fails, on a non-Collection argvalues."""
    bad = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        module = importlib.import_module(path.stem)
        for name, obj in vars(module).items():
            for mark in getattr(obj, "pytestmark", []):
                if mark.name == "parametrize" and not isinstance(mark.args[1], collections.abc.Collection):
                    bad.append(f"{path.name}::{name}")
    assert not bad, f"parametrize argvalues must be a list/tuple: {bad}"


def _run_all(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "run_all.sh"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_run_all_help_is_usage_only() -> None:
    proc = _run_all("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("The commands behind the README's results table")
    assert "set -e" not in proc.stdout and 'cd "$(dirname' not in proc.stdout and "options: --runs DIR" in proc.stdout


def test_run_all_dry_run_writes_nothing_and_quotes_a_space(tmp_path) -> None:
    runs = tmp_path / "my runs" / "quick"
    proc = _run_all("--quick", "--dry-run", "--runs", str(runs), "--datasets", "cifar10", "--spaces", "nb201")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "my runs").exists()  # no folder, no jobs.txt
    lines = proc.stdout.splitlines()
    block = (ROOT / "run_all.sh").read_text().split("NB201_ENTRIES=(\n", 1)[1].split("\n)\n", 1)[0]
    entries = [ln for ln in block.splitlines() if ln.strip().startswith('"')]
    assert len(lines) == len(entries) > 14  # the NB201 entries on CIFAR-10, one seed each
    import shlex
    for line in lines:
        argv = shlex.split(line)
        out = Path(argv[argv.index("--out") + 1])
        assert out.parents[3] == runs and out.name == "seed0"


def test_quick_runs_exercise_each_mechanism() -> None:
    """Every quick EDD-family run decays within its 2 epochs (paper and authors' recipes: warm-ups of 5-20
    epochs, decays every 5); no quick run warms up through all of it; EDD's α clip sits below the measured
    quick |grad α| (2-5 at epoch 2)."""
    import shlex
    scripts = {"edd_darts.py": "edd_darts", "aer_darts.py": "aer_darts", "sp_darts.py": "sp_darts",
               "sa_darts.py": "sa_darts"}
    lines = _run_all("--quick", "--dry-run", "--runs", "/nonexistent/q", "--datasets", "cifar10",
                     "--spaces", "nb201 darts s1").stdout.splitlines()
    assert len(lines) > 20
    for line in lines:
        script, *argv = shlex.split(line)[1:]  # drop "python3"
        mod = importlib.import_module(scripts[script])
        config = next(v for k, v in vars(mod).items() if k.endswith("Config") and v.__module__ == mod.__name__)
        cfg = parse_config(config, argv)  # with the recipe, as the run would resolve it
        if getattr(cfg, "backbone", None) == "pdarts":  # P-DARTS: the least that reaches all 3 stages
            assert cfg.epochs == 3 and cfg.warmup == 0, line
            continue
        assert cfg.epochs == 2 and (getattr(cfg, "warmup", 0) or 0) < cfg.epochs, line
        if script == "edd_darts.py":
            assert any(cfg.decays_after(e) for e in range(cfg.epochs - 1)), line  # a decay reaches training
        if "edd-darts-clip" in line:
            assert cfg.clip_alpha <= 2.0


def test_packaged_nb201_table_is_the_shared_csv_without_imagenet16_valid(nb201_csv) -> None:
    packaged, full = NB201Table.load(PACKAGED_TABLE), NB201Table.load(nb201_csv)
    assert len(packaged) == len(full) == 15625 and packaged.arch_strs == full.arch_strs
    for column in COLUMNS:
        if column == "imagenet16_valid":  # reconstructed (±0.03) in the shared copy: left out
            assert np.isnan(packaged.column(column)).all()
        else:
            assert np.array_equal(packaged.column(column), full.column(column)), column


def test_pack_script_rebuilds_the_shipped_file_byte_for_byte(nb201_csv, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("pack_nb201", ROOT / "tools" / "pack_nb201.py")
    pack_nb201 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_nb201)
    assert pack_nb201.pack(nb201_csv, tmp_path / "t.csv.gz") == 15625
    assert (tmp_path / "t.csv.gz").read_bytes() == PACKAGED_TABLE.read_bytes()
    assert 250_000 < PACKAGED_TABLE.stat().st_size < 450_000


@pytest.mark.parametrize("argv,table", [
    ([], str(PACKAGED_TABLE)),  # default on --space nb201
    (["--space", "darts"], None),  # no NB201 cell to look up
    (["--nb201", "none"], None),
    (["--nb201", "my.pth"], "my.pth"),
])
def test_nb201_table_defaults_to_the_packaged_one(argv, table) -> None:
    assert parse_config(DartsConfig, argv).nb201 == table


SCRIPTS = {"edd_darts.py": ("edd_darts", "EDDConfig"), "aer_darts.py": ("aer_darts", "AERConfig"),
           "sp_darts.py": ("sp_darts", "SPConfig"), "sa_darts.py": ("sa_darts", "SAConfig"),
           "common/baseline.py": ("common.baseline", "DartsConfig")}



def test_help_is_answered_without_torch_and_equals_the_full_parser(monkeypatch) -> None:
    from common.config import build_parser
    env = {**__import__("os").environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", HELP_DRIVER, *SCRIPTS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["torch"] is False  # --help of every script imported no torch
    monkeypatch.setenv("COLUMNS", "100")
    for path, (module, cls) in SCRIPTS.items():
        mod = importlib.import_module(module)
        parser = build_parser(getattr(mod, cls), mod.__doc__)
        parser.prog = path.rsplit("/", 1)[-1]
        assert got["help"][path] == parser.format_help(), path  # the static reading is the real parser


@pytest.mark.parametrize("path", list(SCRIPTS))
def test_help_gives_one_default_per_flag(path) -> None:
    module, cls = SCRIPTS[path]
    from common.config import build_parser
    mod = importlib.import_module(module)
    for action in build_parser(getattr(mod, cls))._actions[1:]:
        text = action.help
        assert "(default: None)" not in text and "depends on other flags" not in text, text
        assert text.count("(default:") <= 1 and not ("(default:" in text and "default" in text.split("(default:")[0])
        assert action.dest not in ("warmup", "lam", "backbone") or "different in each script" in text


@pytest.mark.parametrize("path", list(SCRIPTS))
def test_preset_smoke_on_every_script_and_explicit_flags_win(path) -> None:
    module, cls = SCRIPTS[path]
    config = getattr(importlib.import_module(module), cls)
    cfg = parse_config(config, ["--preset", "smoke"])
    assert (cfg.C, cfg.N, cfg.epochs, cfg.limit_train, cfg.batch_size) == (4, 1, 2, 256, 32)
    cfg = parse_config(config, ["--preset", "smoke", "--space", "darts", "--epochs=3", "--C", "8"])
    assert (cfg.C, cfg.N, cfg.epochs, cfg.limit_train) == (8, 3, 3, 256)


def test_cpu_cost_note_is_measured_and_said_up_front(shared_data, tmp_path, capsys) -> None:
    """A long CPU search says what it will cost after its first steps (4 steps/epoch × 10^8 epochs: long enough
    that the note is due even though these steps only load batches, at microseconds each)."""
    import re
    EPOCHS = 10**8

    from common.run import SearchRun
    cfg = DartsConfig(space="nb201", data_dir=str(shared_data), limit_train=64, C=4, N=1, batch_size=16,
                      epochs=EPOCHS, eval_images=32, nb201="none", device="cpu", out=str(tmp_path / "o"))
    cfg.resolve()
    run = SearchRun(cfg)
    for _ in run.epochs():
        for i, _batch in enumerate(run.steps()):
            if i == 3:  # the generator has resumed after the third step: timed, the note is out
                break
        break
    note = capsys.readouterr().out.splitlines()[-1]
    step_s, steps, size, unit = re.fullmatch(
        r"note: a step takes ([\d.e-]+) s on this CPU with 1 thread \(measured\); the ([\d,]+) steps left take about "
        r"([\d.]+) (h|min) here, without the per-epoch evaluation; use a GPU or --preset smoke; .*--threads \d+",
        note).groups()
    assert int(steps.replace(",", "")) == 4 * EPOCHS - 3  # 64 images / batch 16, three steps timed
    seconds = float(size) * (3600 if unit == "h" else 60)
    assert seconds == pytest.approx(float(step_s) * (4 * EPOCHS - 3), rel=0.05, abs=0.06 * 3600)
    assert note in (tmp_path / "o" / "log.txt").read_text()


def test_wrong_data_dir_is_not_created(tmp_path) -> None:
    from common.baseline import DartsConfig
    from common.run import RunError, SearchRun
    cfg = DartsConfig(data_dir=str(tmp_path / "typo" / "data"), out=str(tmp_path / "o"), device="cpu")
    cfg.resolve()
    with pytest.raises(RunError, match="does not exist.*cifar-10-batches-py.*../shared/data.*cifar-10-python.tar.gz"):
        SearchRun(cfg)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "o").exists()


def test_missing_dataset_tries_one_brief_download_and_leaves_no_folder(tmp_path, monkeypatch) -> None:
    import socket
    import time

    import torchvision.datasets as tvd

    from common import data
    from common.data import DataError, load_arrays
    monkeypatch.setattr(data, "DNS_TIMEOUT_S", 0.5)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(30))  # an offline resolver's wait
    start = time.time()
    with pytest.raises(DataError, match="did not resolve within 0.5 s"):
        load_arrays("cifar10", tmp_path / "new" / "data")
    assert time.time() - start < 5 and not (tmp_path / "new").exists()
    calls = []

    def fail(root, **kwargs):  # resolves, then the download itself fails part-way
        calls.append(root)
        Path(root).mkdir(parents=True)  # as torchvision does
        (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise OSError("connection reset")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])
    monkeypatch.setattr(tvd, "CIFAR10", fail)
    (tmp_path / "new").mkdir()
    with pytest.raises(DataError, match="connection reset"):
        load_arrays("cifar10", tmp_path / "new" / "data")
    assert len(calls) == 1 and (tmp_path / "new").is_dir() and not (tmp_path / "new" / "data").exists()


def test_log_survives_a_reader_closing_stdout(tmp_path, monkeypatch) -> None:
    """`python sa_darts.py … | head -1` must not end the run with a BrokenPipeError traceback."""
    import io

    from common.run import RunDir

    class ClosedPipe(io.TextIOBase):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            raise io.UnsupportedOperation("no file")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    run_dir = RunDir(tmp_path / "r")
    run_dir.log("first")
    run_dir.log("second")  # stdout is /dev/null now
    run_dir.release()
    assert (tmp_path / "r" / "log.txt").read_text() == "first\nsecond\n"
