"""`--threads auto|N` on every entry point: how auto counts, who wins over OMP_NUM_THREADS, that the count is
set and recorded, and what the CPU cost note says (the timings are benchmarks/threads.py, not a test)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import threads as th
from common.baseline import DartsConfig
from common.cli import TrainConfig, fidelity_parser, train_parser
from common.config import ConfigError, _static_parser, parse_config
from common.rundir import cpu_cost_note

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("edd_darts.py", "aer_darts.py", "sp_darts.py", "sa_darts.py")


def _machine(monkeypatch, cores: int, load_average: float, runnable_now: int | None, busy: float | None = None,
             machine_cores: int | None = None) -> None:
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(th.os, "cpu_count", lambda: machine_cores or cores)
    monkeypatch.setattr(th.os, "getloadavg", lambda: (load_average, 0.0, 0.0))
    monkeypatch.setattr(th, "_runnable_now", lambda: runnable_now)
    monkeypatch.setattr(th, "busy_cores", lambda cpus: busy)


@pytest.mark.parametrize("cores, load_average, runnable_now, expected", [
    (2, 0.1, 0, 2),     # idle: every core
    (2, 2.2, 0, 1),     # two busy processes for a minute: at least 1
    (2, 0.2, 2, 1),     # two busy processes that started just now (the average has not risen yet)
    (16, 5.6, 3, 10),   # a shared node: 16 - round(5.6)
    (16, 1.0, 7, 9),    # the larger of the two counts
    (8, 0.0, None, 8),  # no /proc: the load average alone
])
def test_auto_is_free_cores_at_least_one(monkeypatch, cores, load_average, runnable_now, expected) -> None:
    _machine(monkeypatch, cores, load_average, runnable_now)
    assert th.resolve_threads("auto", environ={})[0] == expected


@pytest.mark.parametrize("busy, expected", [(0.2, 8), (3.4, 5), (9.0, 1), (None, 1)])
def test_a_cpu_set_counts_only_the_busy_cores_it_holds(monkeypatch, busy, expected) -> None:
    """8 of a 64-core node's cores (a cluster job): the node's load average of 60 is the other jobs', on other
    cores; only the measured busy cores of the 8 count (None: no /proc/stat, so the load average does)."""
    _machine(monkeypatch, 8, 60.0, 58, busy=busy, machine_cores=64)
    assert th.resolve_threads("auto", environ={})[0] == expected


def test_the_whole_machine_takes_the_largest_of_the_three_counts(monkeypatch) -> None:
    _machine(monkeypatch, 4, 0.4, 0, busy=2.6)
    assert th.resolve_threads("auto", environ={})[0] == 1  # busy now: 3 of 4 cores
    _machine(monkeypatch, 4, 0.4, 0, busy=0.4)
    assert th.resolve_threads("auto", environ={})[0] == 4


def test_a_measured_machine_leaves_out_the_lagging_load_average(monkeypatch) -> None:
    """Right after other work ends the 1-minute average still counts it (0.87 on an idle 2-core box a few
    seconds after a test run: 1 thread, 1.78x slower than 2); the cores measured busy now and the runnable
    tasks decide. Without /proc/stat the average still counts (the parametrized cases above)."""
    _machine(monkeypatch, 2, 0.87, 0, busy=0.1)
    assert th.resolve_threads("auto", environ={})[0] == 2
    _machine(monkeypatch, 2, 0.2, 1, busy=0.1)  # a process that started just now: runnable, not yet busy
    assert th.resolve_threads("auto", environ={})[0] == 1
    _machine(monkeypatch, 2, 1.9, 0, busy=None)  # nothing measured: the average is all there is
    assert th.resolve_threads("auto", environ={})[0] == 1


def test_busy_cores_reads_the_cpus_it_may_use(monkeypatch, tmp_path) -> None:
    stat = tmp_path / "stat"
    monkeypatch.setattr(th, "PROC_STAT", str(stat))
    samples = iter([
        "cpu 0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0\ncpu2 0 0 0 100 0 0 0 0\n",
        "cpu 0 0 0 0 0 0 0 0\ncpu0 200 0 0 100 0 0 0 0 0 0\ncpu1 100 0 50 140 10 0 0 0\ncpu2 0 0 0 200 0 0 0 0\n",
    ])
    monkeypatch.setattr(th.time, "sleep", lambda s: stat.write_text(next(samples, "")))
    stat.write_text(next(samples))
    # cpu0: 100 busy of 100; cpu1: 50 busy of 100 (iowait is idle); cpu2 is not ours
    assert th.busy_cores({0, 1}) == pytest.approx(2 * 150 / 200)
    monkeypatch.setattr(th, "PROC_STAT", str(tmp_path / "absent"))
    assert th.busy_cores({0, 1}) is None


def test_free_cores_now_leaves_out_the_load_average(monkeypatch) -> None:
    """A running search's own steps are in the load average; the busy cores and runnable tasks seen while it
    sleeps are not its own."""
    _machine(monkeypatch, 4, 9.0, 1, busy=0.6)
    monkeypatch.setattr(th.time, "sleep", lambda s: None)
    assert th.free_cores_now() == 3
    _machine(monkeypatch, 4, 0.0, 0, busy=3.7)
    assert th.free_cores_now() == 1


def test_auto_measures_once_for_the_runs_of_one_batch(monkeypatch) -> None:
    """The replicas of a --seeds batch open one after the other: they get one count, measured once."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(th, "_last_auto", None)
    calls = []
    monkeypatch.setattr(th, "resolve_threads", lambda flag: calls.append(flag) or (len(calls), "auto: test"))
    before = torch.get_num_threads()
    try:
        assert th.apply_threads("auto")[0] == th.apply_threads("auto")[0] == 1 and calls == ["auto"]
        monkeypatch.setattr(th, "_last_auto", (th.time.monotonic() - th.AUTO_REUSE_S - 1, 1, "auto: old"))
        assert th.apply_threads("auto")[0] == 2  # a minute later: measured again
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_number_wins_over_omp_num_threads_which_wins_over_auto(monkeypatch) -> None:
    _machine(monkeypatch, 16, 0.0, 0)
    assert th.resolve_threads("3", environ={"OMP_NUM_THREADS": "1"}) == (3, "--threads")
    assert th.resolve_threads("auto", environ={"OMP_NUM_THREADS": "5"}) == (5, "OMP_NUM_THREADS")
    assert th.resolve_threads("auto", environ={"OMP_NUM_THREADS": "junk"})[0] == 16
    with pytest.raises(ValueError, match="--threads must be auto or a whole number >= 1"):
        th.resolve_threads("0", environ={})


def test_runnable_now_excludes_this_process(monkeypatch, tmp_path) -> None:
    """/proc/loadavg's 4th field counts this process too; the fewest of the samples is taken."""
    f = tmp_path / "loadavg"
    monkeypatch.setattr(th, "LOADAVG", str(f))
    f.write_text("0.5 0.4 0.3 3/400 1234\n")
    assert th._runnable_now(samples=2, gap_s=0) == 2
    f.write_text("0.5 0.4 0.3 1/400 1234\n")
    assert th._runnable_now(samples=2, gap_s=0) == 0
    monkeypatch.setattr(th, "LOADAVG", str(tmp_path / "absent"))
    assert th._runnable_now(samples=2, gap_s=0) is None


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_search_script_takes_threads(script) -> None:
    parser = _static_parser(ROOT / script)
    assert parser.parse_args(["--threads", "3"]).threads == "3"
    assert "OMP_NUM_THREADS" in parser.format_help()
    cfg = parse_config(DartsConfig, ["--threads", "2"])
    assert cfg.threads == "2"


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_threads_is_one_line_error(bad) -> None:
    cfg = DartsConfig(threads=bad)
    with pytest.raises(ConfigError, match="--threads must be auto or a whole number >= 1"):
        cfg.resolve()
    train = TrainConfig(threads=bad)
    with pytest.raises(ConfigError, match="--threads must be auto or a whole number >= 1"):
        train.resolve()
    r = subprocess.run([sys.executable, "-m", "common.fidelity", "a", "b", "--threads", bad], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--threads" in r.stderr and "whole number" in r.stderr


def test_train_and_fidelity_parsers_take_threads() -> None:
    assert train_parser().parse_args(["DARTS_V2", "--threads", "4"]).threads == "4"
    assert train_parser().parse_args(["DARTS_V2"]).threads == "auto"
    assert fidelity_parser().parse_args(["a", "--threads", "4"]).threads == "4"
    assert "OMP_NUM_THREADS" in fidelity_parser().format_help()


@pytest.mark.parametrize("flag, expected", [("2", 2), ("1", 1)])
def test_search_run_sets_and_records_threads(shared_data, tmp_path, flag, expected) -> None:
    from common.run import SearchRun
    torch.set_num_threads(3 - expected)  # the other value: the run must change it
    cfg = DartsConfig(space="nb201", data_dir=str(shared_data), limit_train=64, C=4, N=1, batch_size=16, epochs=1,
                      eval_images=32, nb201="none", device="cpu", out=str(tmp_path / "o"), threads=flag)
    cfg.resolve()
    run = SearchRun(cfg)
    run.dir.release()
    assert torch.get_num_threads() == expected
    args = json.loads((tmp_path / "o" / "args.json").read_text())
    assert args["torch_threads"] == expected and args["threads"] == flag
    first = (tmp_path / "o" / "log.txt").read_text().splitlines()[0]
    assert first.startswith("search: ") and f", {expected} CPU thread{'s' * (expected > 1)} (--threads); " in first


def test_trainer_sets_and_records_threads(shared_data, tmp_path) -> None:
    from common.evalnet import NAMED_GENOTYPES, parse_genotype
    from common.train import Trainer
    torch.set_num_threads(1)
    cfg = TrainConfig(preset="smoke", data_dir=str(shared_data), device="cpu", out=str(tmp_path / "t"), threads="2")
    cfg.resolve()
    trainer = Trainer(cfg, parse_genotype(NAMED_GENOTYPES["DARTS_V2"]), "DARTS_V2", {"kind": "named", "name": "DARTS_V2"})
    trainer.dir.release()
    assert torch.get_num_threads() == 2
    assert json.loads((tmp_path / "t" / "args.json").read_text())["torch_threads"] == 2


def test_cost_note_names_threads_and_what_to_try() -> None:
    busy = cpu_cost_note(3.0, 19_500, threads=2, free_cores=1)
    assert "with 2 threads (measured)" in busy and busy.endswith("try --threads 1")
    assert "1 core free for 2 threads" in busy
    idle = cpu_cost_note(3.0, 19_500, threads=2, free_cores=2)
    assert "with 2 threads" in idle and "far slower" in idle and "--threads 1" in idle
    assert "with 1 thread (measured)" in cpu_cost_note(3.0, 19_500, threads=1, free_cores=1)
    assert cpu_cost_note(0.001, 10, threads=4) is None  # short searches: no note


def test_the_free_core_probe_runs_only_when_the_note_is_due() -> None:
    """`free_cores_now` sleeps 0.55 s to measure: a run passes it uncalled, and a short search never calls it."""
    calls = []

    def probe() -> int:
        calls.append(1)
        return 1
    assert cpu_cost_note(0.001, 10, threads=2, free_cores=probe) is None and calls == []
    note = cpu_cost_note(3.0, 19_500, threads=2, free_cores=probe)
    assert calls == [1] and "leaves 1 core free for 2 threads: try --threads 1" in note
