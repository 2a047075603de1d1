"""run_all.sh groups a cell's seeds into one replica-batched `--seeds` process: the dry-run
matrix, the rows that stay one process per seed (and that run_all.sh's static rule agrees with the scripts'
own refusals), `--no-group-seeds`, finished and interrupted seeds, and where local / --gpus / SLURM runs put
their output (a fake `python` and a fake `sbatch` record what would run)."""
from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"/([^/\s]+)/([^/\s]+)/([^/\s]+)/seed(\d+|\{seed\})$")  # space, label, dataset, seed
CONFIGS = {"edd_darts.py": "EDDConfig", "aer_darts.py": "AERConfig", "sp_darts.py": "SPConfig",
           "sa_darts.py": "SAConfig"}


def run_all(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(ROOT / "run_all.sh"), *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def parsed(line: str) -> tuple[str, list[str], tuple[str, str, str], list[int], str]:
    """(script, argv after it, (space, label, dataset), seeds, out) of one matrix line."""
    argv = shlex.split(line)[1:]
    out = argv[argv.index("--out") + 1]
    if "--seeds" in argv:
        at = argv.index("--seeds") + 1
        end = next(i for i in range(at, len(argv)) if argv[i].startswith("--"))
        seeds = [int(s) for s in argv[at:end]]
    else:
        seeds = [int(argv[argv.index("--seed") + 1])]
    space, label, dataset, _ = CELL.search(out).groups()
    return argv[0], argv[1:], (space, label, dataset), seeds, out


def refusal(script: str, argv: list[str]) -> str | None:
    """What the script itself says about --seeds for this row: common/replicas.check_supported, then the
    harness's seeds_refusal (the planning form, which also names run-time refusals)."""
    from common.config import parse_config
    from common.harness import seeds_refusal
    from common.replica_run import check_supported
    from common.run import RunError
    mod = importlib.import_module(script[:-3])
    cfg = parse_config(getattr(mod, CONFIGS[script]), argv)
    try:
        check_supported(script[:-3], cfg)
    except RunError as err:
        return str(err)
    run_class = getattr(mod, "backbone_run", lambda cfg: None)(cfg)  # aer_darts.py: P-DARTS's staged run
    return seeds_refusal(cfg, run_class, planning=True)


def test_matrix_groups_each_cell_and_refused_rows_stay_per_seed(tmp_path: Path) -> None:
    grouped = run_all("--dry-run", "--runs", str(tmp_path / "runs")).stdout.splitlines()
    per_seed = run_all("--dry-run", "--no-group-seeds", "--runs", str(tmp_path / "runs")).stdout.splitlines()
    assert not (tmp_path / "runs").exists()
    # --no-group-seeds: one `--seed k` process per run, as before grouping
    assert all("--seeds" not in x and "{seed}" not in x for x in per_seed)
    runs_per_seed = {}
    for line in per_seed:
        script, argv, cell, (seed,), out = parsed(line)
        runs_per_seed[cell, seed] = line
        assert out.endswith(f"/seed{seed}")
    # grouped: the same runs; a cell is one --seeds line with {seed} in --out, or per-seed lines equal to the above
    runs, lines_of, checked = {}, {}, {}
    for line in grouped:
        script, argv, cell, seeds, out = parsed(line)
        lines_of.setdefault(cell, []).append(line)
        for seed in seeds:
            assert (cell, seed) not in runs
            runs[cell, seed] = line
        if "--seeds" in argv:
            assert len(seeds) > 1 and out.endswith("/seed{seed}"), line
            for seed in seeds:  # the grouped line is the per-seed line with its seed flag and --out generalised
                single = runs_per_seed[cell, seed].replace(f"--seed {seed} ", f"--seeds {' '.join(map(str, seeds))} ")
                assert single.replace(f"/seed{seed} ", "/seed{seed} ") == line
        else:
            assert line == runs_per_seed[cell, seeds[0]]
        key = (script, tuple(a for a in argv if "/" not in a and not a.isdigit() and "seed" not in a))
        if key not in checked:  # each distinct row, as its script's parser reads it, --seeds included
            from common.config import parse_config
            mod = importlib.import_module(script[:-3])
            cfg = parse_config(getattr(mod, CONFIGS[script]), argv)
            assert cfg.seeds == (seeds if len(seeds) > 1 else None) and cfg.seed == (0 if len(seeds) > 1 else seeds[0])
            checked[key] = refusal(script, argv)
        why, n = checked[key], sum(1 for c, _ in runs_per_seed if c == cell)
        if n > 1:  # a one-seed cell is the plain single run either way
            assert ("--seeds" in argv) == (why is None), f"run_all.sh's groupable disagrees with {script}: {why}; {line}"
    assert set(runs) == set(runs_per_seed)
    assert len(grouped) < len(per_seed) and len(checked) > 30
    # the rows the scripts refuse (GDAS on S4, the authors' DARTS-space EDD recipe) stay one process per
    # seed; the rest (GDAS backbones elsewhere too) is one process per cell
    for cell, lines in lines_of.items():
        space, label, _ = cell
        refused = ((space == "s4" and "gdas" in label) or (space == "darts" and label == "edd-darts")
                   or label.startswith("pdarts"))  # AER's P-DARTS backbone: a new supernet per stage
        n = sum(1 for c, _ in runs if c == cell)
        assert len(lines) == (n if refused else 1), (cell, lines)
        assert (len(lines) == 1 and n > 1) == ("--seeds" in lines[0]), (cell, lines)
    assert ("nb201", "sa-darts", "cifar10") in lines_of and "--seeds 0 1 2 3 4 5 6 7 8 9 " in \
        lines_of["nb201", "sa-darts", "cifar10"][0]


def test_a_refusing_option_after_double_dash_keeps_seeds_apart(tmp_path: Path) -> None:
    lines = run_all("--dry-run", "--runs", str(tmp_path), "--only", "edd-darts-paper", "--spaces", "nb201",
                    "--datasets", "cifar10", "--", "--sn-unit-off").stdout.splitlines()
    assert len(lines) == 3 and all("--seeds" not in x and "--sn-unit-off" in x for x in lines)
    assert refusal("edd_darts.py", ["--softmax", "sn", "--schedule", "edd", "--sn-unit-off", "--seeds", "0", "1"])


def test_one_seed_of_a_group_is_the_single_run_in_its_own_folder() -> None:
    """A group trimmed to one seed (benchmarks/gpu_session.py does so) keeps --out <cell>/seed{seed}."""
    from common.config import parse_config
    from sa_darts import SAConfig
    cfg = parse_config(SAConfig, ["--seeds", "3", "--out", "r/nb201/sa-darts/cifar10/seed{seed}"])
    assert (cfg.seed, cfg.seeds, cfg.out) == (3, None, "r/nb201/sa-darts/cifar10/seed3")
    cfg = parse_config(SAConfig, ["--seeds", "3", "4", "--out", "r/seed{seed}"])
    assert (cfg.seeds, cfg.out) == ([3, 4], "r/seed{seed}")


def _save_epoch(run: Path, epoch: int) -> None:
    import torch
    run.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch}, run / "checkpoint.pt")


def test_finished_seeds_are_dropped_and_mixed_epochs_fall_back(tmp_path: Path) -> None:
    import torch
    runs = tmp_path / "r"
    cell = runs / "nb201" / "sa-darts" / "cifar10"
    args = ("--dry-run", "--runs", str(runs), "--only", "sa-darts", "--spaces", "nb201", "--datasets", "cifar10",
            "--seeds", "0 1 2 3")

    def lines() -> list[str]:
        return run_all(*args).stdout.splitlines()
    got = lines()
    assert len(got) == 1 and "--seeds 0 1 2 3 " in got[0]
    (cell / "seed1").mkdir(parents=True)
    (cell / "seed1" / "result.json").write_text("{}")
    got = lines()
    assert len(got) == 1 and "--seeds 0 2 3 " in got[0] and "/seed{seed} " in got[0]
    _save_epoch(cell / "seed0", 4)  # interrupted batched run: replicas at one epoch resume as one process
    _save_epoch(cell / "seed2", 4)
    _save_epoch(cell / "seed3", 4)
    got = lines()
    assert len(got) == 1 and "--seeds 0 2 3 " in got[0]
    _save_epoch(cell / "seed3", 3)  # killed between an epoch's renames: a batched --resume completes it
    torch.save({"epoch": 4}, cell / "seed3" / "checkpoint.next.pt")
    got = lines()
    assert len(got) == 1 and "--seeds 0 2 3 " in got[0]
    (cell / "seed3" / "checkpoint.next.pt").unlink()  # different epochs: replicas.py refuses them, so one per seed
    got = lines()
    assert [parsed(x)[3] for x in got] == [[0], [2], [3]] and all("--seeds" not in x for x in got)
    for seed in (0, 2):
        (cell / f"seed{seed}" / "result.json").write_text("{}")
    got = lines()  # one seed left: the plain single run
    assert len(got) == 1 and "--seed 3 " in got[0] and got[0].endswith("--resume --no-progress")


FAKE_PY = """#!/usr/bin/env bash
echo "ran $* gpu=${CUDA_VISIBLE_DEVICES:-none}"
"""


@pytest.mark.parametrize("mode", ["local", "gpus", "slurm"])
def test_processes_and_logs_follow_the_grouping(tmp_path: Path, mode: str) -> None:
    """SA-DARTS's seeds run as one process (its output in the cell's log.txt, the replicas write their own
    run directories), AER's P-DARTS's one per seed (output in each run's log.txt); the SLURM array has one
    task a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"fakepy": FAKE_PY, "sbatch": '#!/usr/bin/env bash\necho "Submitted batch job 7"\n'}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    runs = tmp_path / "runs"
    env = {"PYTHON": str(bin_dir / "fakepy"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    extra = {"local": [], "gpus": ["--gpus", "0,1"], "slurm": ["--slurm"]}[mode]
    run_all("--runs", str(runs), "--only", "sa-darts|pdarts", "--spaces", "darts", "--datasets", "cifar10",
            "--seeds", "0 1", *extra, env=env)
    jobs = (runs / "jobs.txt").read_text().splitlines()
    assert len(jobs) == 3 and sum("--seeds 0 1 " in x for x in jobs) == 1 and sum("--seed " in x for x in jobs) == 2
    sa, pdarts = runs / "darts" / "sa-darts" / "cifar10", runs / "darts" / "pdarts" / "cifar10"
    if mode == "slurm":
        script = runs / "run_all.sbatch"
        assert "#SBATCH --array=1-3\n" in script.read_text()
        for task in (1, 2, 3):
            subprocess.run(["bash", str(script)], env={**os.environ, **env, "SLURM_ARRAY_TASK_ID": str(task)},
                           check=True, timeout=60)
    log = (sa / "log.txt").read_text()
    assert log.count("ran ") == 1 and "--seeds 0 1 " in log and "/seed{seed} " in log
    for seed in (0, 1):
        assert not (sa / f"seed{seed}" / "log.txt").exists()
        text = (pdarts / f"seed{seed}" / "log.txt").read_text()
        assert text.count("ran ") == 1 and f"--seed {seed} " in text
        if mode == "gpus":
            assert re.search(r"gpu=[01]$", text.strip())


@pytest.mark.slow
def test_quick_group_runs_for_real_then_is_skipped(tmp_path: Path, shared_data: Path) -> None:
    """One real batched process (--quick's tiny config, 2 seeds): each replica's own run directory and
    log.txt, the process's output in the cell's log.txt; run again, nothing is left to do."""
    import json
    import sys
    runs = tmp_path / "runs"
    args = ("--quick", "--runs", str(runs), "--only", "sa-darts", "--spaces", "nb201", "--datasets", "cifar10",
            "--seeds", "0 1", "--", "--limit-train", "64", "--batch-size", "16", "--eval-images", "32")
    env = {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = run_all(*args, env=env)
    assert "2 runs in the matrix, 1 processes to do" in proc.stderr
    cell = runs / "nb201" / "sa-darts" / "cifar10"
    for seed in (0, 1):
        run = cell / f"seed{seed}"
        assert json.loads((run / "args.json").read_text())["seed"] == seed
        assert json.loads((run / "result.json").read_text())["epochs"] == 2
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2 and (run / "log.txt").is_file()
    assert (cell / "log.txt").read_text().strip() and not (cell / "seed{seed}").exists()
    again = run_all(*args, env=env)
    assert "2 runs in the matrix, 0 processes to do" in again.stderr
