"""benchmarks/gpu_session.py: which cells are unfinished, the plan's budget arithmetic, the tar, the queue's
deadline, and the whole session (a real tiny search on CPU, ingest, then a dry run with a stub nvidia-smi)."""
from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_session as G  # noqa: E402


def _matrix(tmp_path: Path, seeds=(0, 1, 2)) -> list[G.Job]:
    return G.read_matrix(tmp_path / "runs", "/data/full", "/data/nb201.csv", seeds, ["cifar10"])


def _commit_run(results: Path, folder: str, job: G.Job, seed: int, finished: bool = True,
                argv_extra: tuple[str, ...] = (), result_text: str | None = None) -> Path:
    """A committed run of `job`'s seed, recorded as a device session would (other paths, graphs, bf16)."""
    run = results / folder / "runs" / job.space / job.label / job.dataset / f"seed{seed}"
    run.mkdir(parents=True)
    tokens = shlex.split(job.line)
    argv = tokens[next(i for i, t in enumerate(tokens) if t.endswith(".py")):]
    (run / "args.json").write_text(json.dumps({"seed": seed, "dataset": job.dataset, "space": job.space,
                                               "argv": argv + ["--cuda-graphs", "--amp", "bf16", *argv_extra]}))
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    if finished:
        (run / "result.json").write_text(result_text if result_text is not None else '{"nb201": {}}')
    return run


def test_method_key_ignores_paths_device_and_precision_only() -> None:
    a = "sa_darts.py --reg sa --space nb201 --seed 0 --data-dir ./data --out x/seed0 --resume --no-progress".split()
    b = ["python3", *a[:3], "--space=nb201", "--seed", "2", "--data-dir", "/elsewhere", "--out", "y", "--cuda-graphs",
         "--amp", "bf16", "--nb201", "t.csv", "--device", "cuda"]
    assert G.method_key(a) == G.method_key(b)
    assert G.method_key(a) != G.method_key([*a, "--lam-divisor", "4"])
    assert G.method_key(a) != G.method_key(["aer_darts.py", *a[1:]])
    assert G.method_key(["--reg", "sa"]) == ()


def _by_label(jobs: list[G.Job]) -> dict[tuple[str, int], G.Job]:
    """(issue-order name, seed) → job (a grouped --seeds line: for each of its seeds); a run_all.sh row
    `<name>-authors` stands for `<name>`."""
    return {(j.label.removesuffix("-authors"), s): j for j in jobs for s in j.seeds}


def test_unfinished_cells_read_committed_gpu_runs(tmp_path: Path) -> None:
    jobs = _matrix(tmp_path)
    by = _by_label(jobs)
    results = tmp_path / "results"
    for seed in (0, 1, 2):                                   # SA-DARTS: all three seeds finished
        _commit_run(results, "gpu-20260101-0000-h200", by["sa-darts", seed], seed)
    _commit_run(results, "gpu-20260101-0000-h200", by["sp-darts", 0], 0)
    _commit_run(results, "gpu-20260102-0000-h100", by["sp-darts", 1], 1)    # another call's folder counts too
    _commit_run(results, "gpu-20260102-0000-h100", by["sp-darts", 2], 2, finished=False)  # cut off: no result
    _commit_run(results, "gpu-20260102-0000-h100", by["edd-darts", 0], 0, argv_extra=("--lam", "0.1"))  # other row
    _commit_run(results, "gpu-20260102-0000-h100", by["edd-darts", 1], 1, result_text="{not json")
    _commit_run(results, "quick-cpu", by["edd-darts", 2], 2)  # not a GPU run set
    cells = G.unfinished_cells(jobs, G.committed_runs(results), ["cifar10"])
    names = [c.label.removesuffix("-authors") for c in cells]
    assert "sa-darts" not in names and {c.dataset for c in cells} == {"cifar10"}
    assert names[:3] == ["sp-darts", "edd-darts", "darts-v1"]
    assert [j.seeds for j in cells[0].jobs] == [(2,)] and cells[0].done == 2  # run_all.sh's group, trimmed
    assert "--seeds 2 " in cells[0].jobs[0].line and cells[0].jobs[0].run_dir(2).name == "seed2"
    assert cells[0].jobs[0].log_dir == cells[0].jobs[0].run_dir(2)
    assert [j.seeds for j in cells[1].jobs] == [(0, 1, 2)] and cells[1].done == 0  # one grouped process
    assert cells[1].jobs[0].log_dir == tmp_path / "runs" / "nb201" / "edd-darts" / "cifar10"
    assert [j.seeds for c in cells for j in c.jobs if c.label == "gdas"] == [(0, 1, 2)]  # GDAS batches too
    # the order for the labels in ORDER, then every other label of run_all.sh in its matrix order
    in_order = [n for n in names if n in G.ORDER]
    assert in_order == [n for n in G.ORDER if n != "sa-darts"] and names[:len(in_order)] == in_order
    matrix_labels = list(dict.fromkeys(j.label for j in jobs))
    others = [c.label for c in cells if c.label.removesuffix("-authors") not in G.ORDER]
    paper = [lab for lab in matrix_labels if lab.endswith("-paper")]
    assert others == paper + [lab for lab in matrix_labels if lab in others and lab not in paper]
    assert "edd-darts-clip" in others


def test_in_a_git_checkout_only_committed_runs_count(tmp_path: Path) -> None:
    jobs = _by_label(_matrix(tmp_path))
    repo = tmp_path / "repo"
    results = repo / "results"
    _commit_run(results, "gpu-1", jobs["sa-darts", 0], 0)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-qm", "run"], check=True)
    _commit_run(results, "gpu-2", jobs["sa-darts", 1], 1)  # ingested, not yet committed
    found = G.committed_runs(results)
    assert [fin for _, fin, _ in found["nb201", "sa-darts", "cifar10", 0]] == [True]
    assert ("nb201", "sa-darts", "cifar10", 1) not in found


def test_queue_order_reads_labels_from_run_all_and_trims_batched_lines(tmp_path: Path) -> None:
    fake = tmp_path / "run_all.sh"
    lines = [f"python3 x_darts.py --space nb201 --dataset cifar10 --seeds 0 1 2 --out R/nb201/{lab}/cifar10 --resume"
             for lab in ("new-method", "sp-darts-paper", "darts-v2", "sp-darts-authors", "sa-darts")]
    fake.write_text("#!/usr/bin/env bash\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    jobs = G.read_matrix(tmp_path / "r", "d", None, (0, 1, 2), ["cifar10"], run_all=fake)
    assert [j.seeds for j in jobs] == [(0, 1, 2)] * 5 and jobs[1].run_dir(1) == Path("R/nb201/sp-darts-paper/cifar10/seed1")
    results = tmp_path / "results"
    _commit_run(results, "gpu-1", jobs[4], 1)  # SA-DARTS seed 1 done: its batched line runs seeds 0 and 2 only
    cells = G.unfinished_cells(jobs, G.committed_runs(results), ["cifar10"])
    assert [c.label for c in cells] == ["sa-darts", "sp-darts-authors", "darts-v2", "sp-darts-paper", "new-method"]
    assert cells[0].jobs[0].seeds == (0, 2) and "--seeds 0 2 --out" in cells[0].jobs[0].line


def test_budget_arithmetic_lookup_and_greedy_plan() -> None:
    cost = G.Cost(startup_s=45, epoch_overhead_s=2, safety=1.15)
    assert G.job_estimate(50, 390, 0.01, 1.0, cost) == pytest.approx(1.15 * (45 + 50 * (390 * 0.01 + 2)))
    rows = [{"method": "darts-v1", "batch": 64, "amp": "bf16", "graphs": True, "step_s": 0.02},
            {"method": "darts-v1", "batch": 64, "amp": "none", "graphs": True, "step_s": 0.03},
            {"method": "gdas", "batch": 64, "amp": "bf16", "graphs": False, "step_s": 0.05}]
    assert G.lookup_step(rows, "darts-v1", 64, "bf16", True) == (0.02, "measured")
    assert G.lookup_step(rows, "darts-v1", 256, "bf16", True) == (pytest.approx(0.08), "scaled from batch 64")
    assert G.lookup_step(rows, "darts-v1", 32, "none", True) == (0.03, "batch 64's figure")
    assert G.lookup_step(rows, "darts-v2", 64, "bf16", True) is None
    assert G.lookup_step(rows, "darts-v1", 64, "bf16", True, replicas=3) is None
    batched_rows = [{"method": "darts-v1", "batch": 64, "amp": "none", "graphs": True, "replicas": s, "step_s": t}
                    for s, t in ((1, 0.03), (3, 0.05), (16, 0.2))]
    assert G.lookup_step(batched_rows, "darts-v1", 64, "none", True, replicas=2) == (0.05, "measured")  # S=3 for S=2
    assert G.lookup_step(batched_rows, "darts-v1", 64, "none", True, replicas=3) == (0.05, "measured")

    def job(label: str, seed: int) -> G.Job:
        return G.Job(f"python3 x.py --seed {seed}", "x.py", "nb201", label, "cifar10", (seed,), Path("o"), ())
    configs = {"sa": {"epochs": 50, "batch_size": 64}, "sp": {"epochs": 50, "batch_size": 256},
               "gd": {"epochs": 250, "batch_size": 64, "backbone": "gdas"},
               "v2": {"epochs": 50, "batch_size": 64, "backbone": "darts-v2"}}
    cells = [G.Cell(lab, "cifar10", [job(lab, s) for s in range(3)], 0) for lab in configs]
    est = G.estimate_cells(cells, {"rows": rows}, "bf16", True, False, 1.5, cost, configs=lambda j: configs[j.label])
    assert est[0][1][0].estimate == pytest.approx(G.job_estimate(50, 390, 0.02, 1.5, cost))
    assert est[1][1][0].estimate == pytest.approx(G.job_estimate(50, 97, 0.08, 1.5, cost))  # SP: 25000 // 256 steps
    assert est[2][1][0].estimate == pytest.approx(G.job_estimate(250, 390, 0.05, 1.5, cost))  # GDAS stays eager
    assert math.isnan(est[3][1][0].estimate)
    batched = [G.Cell("sa", "cifar10", [G.Job("x", "x.py", "nb201", "sa", "cifar10", (0, 1, 2), Path("o"), ())], 0)]
    est = G.estimate_cells(batched, {"rows": rows}, "bf16", True, True, 1.0, cost, configs=lambda j: configs["sa"])
    assert est[0][1][0].estimate == pytest.approx(G.job_estimate(50, 390, 3 * 1.1 * 0.02, 1.0, cost))  # no S=3 figure

    def cell(name: str, estimates: list[float]) -> tuple[G.Cell, list[G.Planned]]:
        c = G.Cell(name, "cifar10", [job(name, i) for i in range(len(estimates))], 0)
        return c, [G.Planned(j, e) for j, e in zip(c.jobs, estimates)]
    plan = [cell("a", [100, 100, 100]), cell("b", [100, 100, 100]), cell("c", [40]), cell("d", [math.nan]),
            cell("e", [10, 10])]
    admitted, skipped = G.plan_queue(plan, 150, 3)
    assert [c.name for c, _ in admitted] == ["a/cifar10", "c/cifar10", "e/cifar10"]
    assert [(p.slot, p.start, p.end) for p in admitted[0][1]] == [(0, 0, 100), (1, 0, 100), (2, 0, 100)]
    assert [(p.slot, p.start, p.end) for p in admitted[1][1]] == [(0, 100, 140)]
    assert [(p.start, p.end) for p in admitted[2][1]] == [(100, 110), (100, 110)]
    assert [c.name for c, _ in skipped] == ["b/cifar10", "d/cifar10"]
    assert "first epoch ends at 200 s of a 150 s window" in skipped[0][1] and "no calibration figure" in skipped[1][1]
    admitted, _ = G.plan_queue([cell("a", [100, 100, 100])], 299, 1)  # one at a time: 300 s do not fit 299
    assert admitted == []

    # a cell starts when its first epoch fits; what runs past the window is cut (≤ max_cut_seeds seeds in flight)
    def long(name: str, seeds: tuple[int, ...], estimate: float, first: float) -> tuple[G.Cell, list[G.Planned]]:
        j = G.Job("x", "x.py", "nb201", name, "cifar10", seeds, Path("o"), ())
        return G.Cell(name, "cifar10", [j], 0), [G.Planned(j, estimate, first=first, epochs_left=50)]
    admitted, skipped = G.plan_queue([long("a", (0, 1, 2), 1000, 90), long("b", (0, 1, 2), 1000, 90),
                                      long("c", (0,), 1000, 90)], 400, 2, max_cut_seeds=3)
    assert [c.name for c, _ in admitted] == ["a/cifar10"] and admitted[0][1][0].end == 1000
    assert "would leave 6 seeds in flight" in skipped[0][1] and "would leave 4 seeds" in skipped[1][1]
    admitted, skipped = G.plan_queue([long("a", (0, 1, 2), 1000, 500)], 400, 1)
    assert admitted == [] and "first epoch ends at 500 s of a 400 s window" in skipped[0][1]
    resumed = {("nb201", "sa", "cifar10", s): 20 for s in (0, 1, 2)}  # only the 30 epochs left are estimated
    (_, (p,)), = G.estimate_cells(batched, {"rows": batched_rows}, "none", True, True, 1.0, cost,
                                  configs=lambda j: configs["sa"], resumed=resumed)
    assert p.estimate == pytest.approx(G.job_estimate(30, 390, 0.05, 1.0, cost)) and p.resumed_at == 20
    assert p.first == pytest.approx(G.job_estimate(1, 390, 0.05, 1.0, cost)) and p.epochs_left == 30
    smi = "NVIDIA H200, 580.159.04, 143771 MiB"
    assert G.fit_slots(3, smi, [{"peak_mem_mb": 1322.0}]) == 3
    assert G.fit_slots(9, smi, [{"peak_mem_mb": 30000.0}, {"peak_mem_mb": 100.0}]) == 3  # 0.8 × 143771 // 30000
    assert G.fit_slots(3, "no nvidia-smi on PATH", [{"peak_mem_mb": 1e9}]) == 3


def test_calibrate_times_each_step_and_keeps_what_it_measured_by_the_deadline(tmp_path: Path) -> None:
    out = tmp_path / "calib.json"
    rows = G.calibrate([("darts-v1", 8), ("gdas", 8)], ["none"], False, 1, time.time() + 120, out, "cpu",
                       iters=1, warmup=0, C=4, N=1)
    assert [(r["method"], r["batch"], r["graphs"]) for r in rows] == [("darts-v1", 8, False), ("gdas", 8, False)]
    assert all(0 < r["step_s"] < 60 for r in rows) and json.loads(out.read_text())["rows"] == rows
    assert G.calibrate([("darts-v1", 8)], ["none"], False, 1, time.time() - 1, out, "cpu", C=4, N=1) == []


def _fake_run(root: Path, rel: str, finished: bool) -> None:
    run = root / rel
    run.mkdir(parents=True)
    for name in ("args.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.pt.tmp", "log.txt"):
        (run / name).write_text("{}")
    if finished:
        (run / "result.json").write_text("{}")


def test_pack_holds_exactly_run_records_and_session_files(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _fake_run(runs, "nb201/sa-darts/cifar10/seed0", True)
    _fake_run(runs, "nb201/sa-darts/cifar10/seed1", False)
    (runs / "jobs.txt").write_text("x")
    extra = [tmp_path / n for n in G.SESSION_FILES]
    for f in extra:
        f.write_text("{}")
    names = G.pack(tmp_path / "s.tar", "gpu-x", runs, [*extra, tmp_path / "absent.json"])
    with tarfile.open(tmp_path / "s.tar") as tar:
        assert sorted(tar.getnames()) == sorted(names)
    run0, run1 = "gpu-x/runs/nb201/sa-darts/cifar10/seed0", "gpu-x/runs/nb201/sa-darts/cifar10/seed1"
    assert sorted(names) == sorted([f"{run0}/args.json", f"{run0}/metrics.jsonl", f"{run0}/result.json",
                                    f"{run1}/args.json", f"{run1}/metrics.jsonl", "gpu-x/carry.json",
                                    "gpu-x/calibration.json", "gpu-x/session.json", "gpu-x/session.log"])


def test_each_unfinished_seed_comes_back_as_its_own_checkpoint_file(tmp_path: Path) -> None:
    import torch
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    for seed, finished in ((0, True), (1, False), (2, False)):
        _fake_run(runs, f"nb201/sa-darts/cifar10/seed{seed}", finished)
        torch.save({"epoch": 7 + seed}, runs / f"nb201/sa-darts/cifar10/seed{seed}/checkpoint.pt")
        (runs / f"nb201/sa-darts/cifar10/seed{seed}/checkpoint.pt.sha256").write_text("abc")
    lines: list[str] = []
    entries = G.pack_checkpoints(out, "gpu-x", runs, lines.append)
    assert [(e["file"], e["run"], e["epoch"]) for e in entries] == [
        (f"gpu-x.ckpt-nb201-sa-darts-cifar10-seed{k}.tar", f"nb201/sa-darts/cifar10/seed{k}", 7 + k) for k in (1, 2)]
    with tarfile.open(out / entries[0]["file"]) as tar:
        assert sorted(tar.getnames()) == [f"runs/nb201/sa-darts/cifar10/seed1/{n}" for n in sorted(G.CKPT_FILES)]
        assert torch.load(tar.extractfile("runs/nb201/sa-darts/cifar10/seed1/checkpoint.pt"))["epoch"] == 8
    lines.clear()
    assert [e["run"] for e in G.pack_checkpoints(tmp_path / "out", "gpu-y", runs, lines.append, max_files=1)] == [
        "nb201/sa-darts/cifar10/seed1"]
    assert "seed2 NOT returned" in lines[-1] and "starts it over" in lines[-1]
    assert G.pack_checkpoints(out, "gpu-z", runs, lines.append, limit=100) == []  # over the size a file may have


def test_ingest_refuses_unexpected_members_and_existing_folders(tmp_path: Path, capsys) -> None:
    results, readme = tmp_path / "results", tmp_path / "README.md"
    results.mkdir()
    readme.write_text(f"x\n{G.BEGIN}\nold\n{G.END}\ny\n")
    bad = tmp_path / "bad.tar"
    (tmp_path / "checkpoint.pt").write_text("w")
    with tarfile.open(bad, "w") as tar:
        tar.add(tmp_path / "checkpoint.pt", arcname="gpu-x/runs/nb201/a/cifar10/seed0/checkpoint.pt")
    assert G.main(["ingest", str(bad), "--results", str(results), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "unexpected member" in err and err.count("\n") == 1 and list(results.iterdir()) == []
    with tarfile.open(bad, "w") as tar:
        tar.add(readme, arcname="gpu-x/runs/../../../escape/args.json")
    assert G.main(["ingest", str(bad), "--results", str(results), "--readme", str(readme)]) == 2
    assert "unexpected member" in capsys.readouterr().err and not (tmp_path / "escape").exists()
    (results / "gpu-x").mkdir()
    ok = tmp_path / "ok.tar"
    with tarfile.open(ok, "w") as tar:
        tar.add(readme, arcname="gpu-x/session.log")
    assert G.main(["ingest", str(ok), "--results", str(results), "--readme", str(readme)]) == 2
    assert "exists already" in capsys.readouterr().err and "old" in readme.read_text()


@pytest.mark.parametrize("argv,message", [
    (["session", "--budget", "600"], "--budget must be in [60, 570]"),
    (["session", "--parallel", "two"], "--parallel must be auto or a positive integer"),
    (["session", "--calibration", "{tmp}/none.json"], "no such file"),
    (["session", "--out", "{tmp}/file"], "is a file, not a folder"),
    (["session", "--seeds", "-1"], "--seeds must be non-negative"),
    (["calibrate", "--json", "{tmp}/c.json", "--deadline", "0", "--need", "darts-v1"], "METHOD:BATCH"),
    (["ingest", "{tmp}/none.tar", "--results", "{tmp}", "--readme", "{tmp}/file"], "markers: nothing unpacked"),
    (["ingest", "{tmp}/none.tar", "--results", "{tmp}", "--readme", "{tmp}/README.md"], "cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "README.md").write_text(f"{G.BEGIN}\n{G.END}\n")
    assert G.main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("gpu_session: error:")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["README.md", "file"]  # nothing written


def test_run_queue_stops_at_the_deadline_and_skips_what_no_longer_fits(tmp_path: Path) -> None:
    def planned(label: str, line: str, estimate: float) -> G.Planned:
        return G.Planned(G.Job(line, "x.py", "nb201", label, "cifar10", (0,), Path(f"r/{label}/cifar10/seed0"), ()),
                         estimate)
    writes = "mkdir -p r/a/cifar10/seed0 && echo '{}' > r/a/cifar10/seed0/result.json"
    jobs = [planned("a", writes, 1), planned("b", "exit 3", 1), planned("c", "sleep 60", 1),
            planned("d", "true", 1000)]
    lines: list[str] = []
    t0 = time.time()
    out = G.run_queue(jobs, time.time() + 2, 2, lines.append, cwd=tmp_path, grace_s=0.5)
    assert time.time() - t0 < 10
    status = {o.label: o.status for o in out}
    assert status["a"] == "done" and (tmp_path / "r/a/cifar10/seed0/result.json").is_file()
    assert status["b"] == "failed (rc 3)" and status["c"] == "stopped at deadline"
    assert status["d"].startswith("not started: needs 1000 s for its first epoch")


def test_prepare_copies_what_the_call_carries_and_readme_gets_speed_rows(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    files = ["data/cifar10_jpeg.npz", "data/cifar-10-batches-py/batches.meta", "data/cifar-10-batches-py/data_batch_1",
             "data/nb201/nb201_200ep.csv", "tools/cifar10_full.py"]
    for rel in files[:-1]:
        with pytest.raises(G.SessionError, match="prepare needs"):
            G.prepare(shared, tmp_path / "gpu", tmp_path / "whl", wheels=False, carry=tmp_path / "carry",
                      results=tmp_path / "results")
        (shared / rel).parent.mkdir(parents=True, exist_ok=True)
        (shared / rel).write_text(rel)
    (shared / files[-1]).parent.mkdir(parents=True)
    (shared / files[-1]).write_text("tool")
    # two carried runs (from ingest): one still unfinished, one finished in results/ since
    carry, results = tmp_path / "carry", tmp_path / "results"
    for seed in (0, 1):
        run = carry / "nb201" / "sa-darts" / "cifar10" / f"seed{seed}"
        run.mkdir(parents=True)
        for name in G.CKPT_FILES:
            (run / name).write_bytes(b"x" * 1000)
        (run / "carry.json").write_text(json.dumps({"epoch": 12, "commit": "abc", "session": "gpu-1"}))
    done = results / "gpu-1" / "runs" / "nb201" / "sa-darts" / "cifar10" / "seed1"
    done.mkdir(parents=True)
    (done / "args.json").write_text("{}")
    (done / "result.json").write_text("{}")
    lines: list[str] = []
    call = G.prepare(shared, tmp_path / "gpu", tmp_path / "whl", wheels=False, carry=carry, results=results,
                     log=lines.append)
    copied = sorted(str(f.relative_to(tmp_path / "gpu")) for f in (tmp_path / "gpu").rglob("*") if f.is_file())
    ckpt = [f"carry/nb201/sa-darts/cifar10/seed0/{n}" for n in (*G.CKPT_FILES, "carry.json")]
    assert copied == sorted(["commit.json", *files[:2], *files[3:], *ckpt])  # the exact-pixel batch only when asked
    assert call["carry"] == [".gpu/data", ".gpu/tools", ".gpu/commit.json", ".gpu/carry", ".whl"]
    assert call["timeout_s"] <= 570 and "seed1: finished in results/ since" in lines[0]
    assert "of 64 MiB: tree " in call["budget"] and "+ 1 checkpoint(s) 0.0" in call["budget"]
    assert "resumes nb201/sa-darts/cifar10/seed0 at epoch 12" in call["budget"]
    assert G.select_carry(carry, tmp_path / "sel", tmp_path / "none", 3500, lines.append) == [
        ("nb201/sa-darts/cifar10/seed0", 12, 3000 + len((carry / "nb201/sa-darts/cifar10/seed0/carry.json").read_text()))]
    assert "does NOT fit" in lines[-1] and "seed1" in lines[-1]  # the second no longer fits the room left
    G.prepare(shared, tmp_path / "gpu", tmp_path / "whl", exact_pixels=True, wheels=False, carry=carry,
              results=results)
    assert (tmp_path / "gpu" / files[2]).read_text() == files[2]
    results = tmp_path / "results"
    (results / "gpu-20260101-0000-h200").mkdir(parents=True)
    (results / "gpu-20260101-0000-h200" / "speed.json").write_text(json.dumps({"rows": [
        {"device": "NVIDIA H200", "method": "darts-v1", "path": "fast+graph", "amp": "bf16", "batch": 64,
         "step_s": 0.0123, "nb201_search_min": 4.0}]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{G.BEGIN}\n{G.END}\nb\n{G.SPEED_BEGIN}\nold\n{G.SPEED_END}\nc\n")
    G.update_readme(results, readme)
    text = readme.read_text()
    assert "| NVIDIA H200 | darts-v1 | fast+graph | bf16 | 1 | 64 | 12.3 | 4.0 |" in text and "old" not in text
    assert "No GPU runs committed yet." in text and text.endswith("c\n")


def test_gpu_table_rows_against_the_papers(tmp_path: Path) -> None:
    folder = tmp_path / "results" / "gpu-20260101-0000-h200"
    for label, accs in (("sa-darts", (93.0, 93.2)), ("sp-darts", (93.9, 94.0)), ("gdas", (93.0,))):
        for seed, acc in enumerate(accs):
            run = folder / "runs" / "nb201" / label / "cifar10" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "args.json").write_text(json.dumps({
                "space": "nb201", "dataset": "cifar10", "seed": seed, "epochs": 50, "data_dir": "/x/.gpu/cifar10_full",
                "amp": "bf16" if label == "sa-darts" else "none", "cuda_graphs": label != "gdas"}))
            (run / "metrics.jsonl").write_text('{"epoch": 50}\n')
            (run / "result.json").write_text(json.dumps({"nb201": {"cifar10_test": acc, "cifar10_valid_valid": 90.0},
                                                         "wall_time_s": 600 + 60 * seed, "device": "NVIDIA H200"}))
    (folder / "session.json").write_text(json.dumps({"commit": {"commit": "0123456789abcdef", "dirty": False}}))
    table = G.gpu_table(tmp_path / "results")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("| ")}
    sa, sp, gdas = rows["SA-DARTS"], rows["SP-DARTS"], rows["GDAS"]
    assert sa[2:8] == ["CIFAR-10 (JPEG-q75 copy)", "2", "90.00±0.00", "93.10±0.14", "94.36±0.00",
                       "**misses by -1.26** (> paper std 0.00)"]
    assert sa[-4:] == ["10.5", "NVIDIA H200", "graphs bf16", "0123456789 |"]
    assert sp[5:8] == ["93.95±0.07", "94.01±0.31", "within paper std (-0.06)"] and sp[-2] == "graphs fp32"
    assert gdas[5] == "93.00 (n=1)" and gdas[7].startswith("**misses by -0.51**") and gdas[-2] == "eager fp32"
    assert "- **SA-DARTS** misses the paper's 94.36±0.00 (CIFAR-10 test) by -1.26 over 2 seed(s)" in table
    assert "graphs bf16; epochs run 50" in table and "**SP-DARTS** misses" not in table


def _stub_nvidia_smi(folder: Path) -> None:
    folder.mkdir()
    (folder / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H200, 580.159.04, 143771 MiB'\n")
    (folder / "nvidia-smi").chmod(0o755)


@pytest.mark.slow
def test_session_runs_a_tiny_search_then_ingest_then_dry_run_continues(tmp_path: Path, shared_data: Path,
                                                                       nb201_csv: Path, monkeypatch, capsys) -> None:
    gpu_dir, results, readme = tmp_path / "gpu", tmp_path / "results", tmp_path / "README.md"
    (gpu_dir / "data" / "nb201").mkdir(parents=True)
    (gpu_dir / "data" / "nb201" / "nb201_200ep.csv").symlink_to(nb201_csv)
    (gpu_dir / "cifar10_full").symlink_to(shared_data)  # stands in for the rebuilt full CIFAR-10
    results.mkdir()
    readme.write_text(f"# x\n{G.BEGIN}\n{G.END}\n")
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps({"source": "test", "rows": [
        {"method": m, "batch": 16, "amp": "none", "graphs": g, "step_s": 0.5} for m in ("darts-v1", "pc-k4", "gdas")
        for g in (False, True)]}))
    tiny = "--limit-train 64 --C 4 --N 1 --epochs 1 --batch-size 16 --eval-images 32 --device cpu"
    common = ["--gpu-dir", str(gpu_dir), "--results", str(results), "--calibration", str(calib), "--seeds", "0",
              "--parallel", "1", "--extra", tiny, "--amp", "none", "--max-cells", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--skip-setup", "--skip-smoke",
                           *common], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 1 epoch × (4 steps × 0.5 s + 2 s) + 45 s, × 1.15 = 56 s, planned and run
    assert "RUN  sa-darts/cifar10" in proc.stdout and "= 56 s" in proc.stdout
    assert "done sa-darts/cifar10 seeds (0,)" in proc.stdout
    (tar,) = (tmp_path / "out").glob("gpu-*-cpu.tar")
    with tarfile.open(tar) as t:
        names = sorted(n.split("/", 1)[1] for n in t.getnames())
    run = "runs/nb201/sa-darts/cifar10/seed0"
    assert names == sorted(["calibration.json", "session.json", "session.log", "carry.json",
                            f"{run}/args.json", f"{run}/metrics.jsonl", f"{run}/result.json"])
    assert G.main(["ingest", str(tar), "--results", str(results), "--readme", str(readme), "--carry",
                   str(tmp_path / "carry")]) == 0
    table = readme.read_text()
    assert "| SA-DARTS | paper | CIFAR-10 (JPEG-q75 copy) subset (64 images per half)" in table
    assert "| eager fp32 |" in table and "— (not a reproduction)" in table and (results / "gpu-report" / "results.md").is_file()
    # the next call, dry, on a "GPU" (a stub nvidia-smi): SA-DARTS is committed now, so the plan starts at SP-DARTS
    stub = tmp_path / "bin"
    _stub_nvidia_smi(stub)
    monkeypatch.setenv("PATH", f"{stub}:{os.environ['PATH']}")
    assert G.main(["session", "--dry-run", "--out", str(tmp_path / "out"), *common]) == 0
    out = capsys.readouterr().out
    assert "GPU: NVIDIA H200, 580.159.04" in out
    assert ("540 s budget − 25 s for the tar − 60+60+60 s of stages − 90 s of a first call's timing/speed "
            "(the queue keeps ≥ 120 s) = 245 s") in out  # a given calibration: no timing search
    assert "RUN  sa-darts" not in out and "RUN  sp-darts" in out
    assert "would run:" in out and "--cuda-graphs" in out.split("would run:")[1]
    assert "== speed: first call of this GPU model, before the queue" in out  # a GPU model's first call measures
    (dry,) = (tmp_path / "out").glob("dryrun-*-h200.tar")
    with tarfile.open(dry) as t:
        assert sorted(n.split("/", 1)[1] for n in t.getnames()) == sorted(set(G.SESSION_FILES) - {"carry.json"})


def _carried(carry: Path, label: str, seed: int, epoch: int, argv: list[str], session: str = "gpu-1",
             **config) -> Path:
    run = carry / "nb201" / label / "cifar10" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"argv": argv, **config}))
    (run / "checkpoint.pt").write_bytes(f"{label}{seed}".encode())
    (run / "checkpoint.pt.sha256").write_text("x")
    (run / "carry.json").write_text(json.dumps({"epoch": epoch, "session": session, "commit": "0123456789ab"}))
    return run


def test_carried_checkpoints_resume_first_split_by_epoch_and_a_lost_one_restarts(tmp_path: Path) -> None:
    jobs = _by_label(_matrix(tmp_path))
    sa, sp, edd = jobs["sa-darts", 0], jobs["sp-darts", 0], jobs["edd-darts", 0]
    argv = lambda job: shlex.split(job.line)[1:]  # noqa: E731 -- as a search records sys.argv
    carry, runs, results = tmp_path / "carry", tmp_path / "runs", tmp_path / "results"
    _carried(carry, sp.label, 0, 20, argv(sp), amp="bf16")  # SP-DARTS: seeds 0 and 1 at epoch 20, seed 2 at 7
    _carried(carry, sp.label, 1, 20, argv(sp), amp="bf16")
    _carried(carry, sp.label, 2, 7, argv(sp))
    _carried(carry, jobs["darts-v1", 0].label, 0, 3, argv(jobs["darts-v1", 0]), cuda_graphs=True)  # waits: eager
    _carried(carry, edd.label, 0, 5, [*argv(edd), "--lam", "9"])  # another row's flags: not resumed
    (carry / "nb201" / "darts-v1" / "cifar10" / "seed1").mkdir(parents=True)  # incomplete: ignored
    _commit_run(results, "gpu-20260101-0000-h100", sa, 1, finished=False)   # reached epoch 1, no checkpoint here
    committed = G.committed_runs(results)
    lines: list[str] = []
    cells = G.unfinished_cells(list(_matrix(tmp_path)), committed, ["cifar10"])
    cells, resumed = G.resume_carried(cells, carry, tmp_path / "runs", committed, lines.append, graphs_ok=False)
    assert [c.label for c in cells[:3]] == [sp.label, sa.label, edd.label]  # resumed cells first, then ORDER
    assert [j.seeds for j in cells[0].jobs] == [(0, 1), (2,)]  # one batched process per checkpoint epoch
    assert "--seeds 0 1 --data-dir" in cells[0].jobs[0].line and "--seeds 2 --data-dir" in cells[0].jobs[1].line
    assert cells[0].jobs[0].line.endswith(" --amp bf16 --no-cuda-graphs")  # as its checkpoint was made
    assert cells[0].jobs[1].line.endswith(" --amp none --no-cuda-graphs")
    (v1,) = [c for c in cells if c.label == "darts-v1"]
    assert [j.seeds for j in v1.jobs] == [(1, 2)] and "--amp" not in v1.jobs[0].line  # seed 0 waits, carried
    assert "WAIT darts-v1/cifar10 seed 0: its checkpoint (epoch 3) resumes only with --cuda-graphs" in "\n".join(lines)
    assert resumed == {("nb201", sp.label, "cifar10", s): e for s, e in ((0, 20), (1, 20), (2, 7))}
    for s in (0, 1, 2):
        assert (runs / "nb201" / sp.label / "cifar10" / f"seed{s}" / "checkpoint.pt").read_bytes() == f"{sp.label}{s}".encode()
    assert [j.seeds for j in cells[1].jobs] == [(0, 1, 2)] and [j.seeds for j in cells[2].jobs] == [(0, 1, 2)]
    assert not (runs / "nb201" / edd.label).exists()
    text = "\n".join(lines)
    assert f"RESUME {sp.label}/cifar10 seed 2 at epoch 7 (checkpoint of gpu-1, commit 0123456789)" in text
    assert f"RESTART {sa.label}/cifar10 seed 1: epoch 1 was reached in gpu-20260101-0000-h100" in text
    assert "starting over from epoch 0" in text and "other method flags" in text
    est = G.estimate_cells(cells[:1], {"rows": [{"method": "darts-v1", "batch": 64, "amp": "none", "graphs": False,
                                                 "replicas": 3, "step_s": 0.03}]}, "none", False, True, 1.0, G.Cost(),
                           configs=lambda j: {"epochs": 50, "batch_size": 64}, resumed=resumed)
    assert [(p.resumed_at, p.epochs_left) for p in est[0][1]] == [(20, 30), (7, 43)]


def _session_tar(tmp_path: Path, folder: str, runs: dict[str, bool], commit: str, ckpts: dict[str, int]) -> Path:
    """A session's tar (+ its checkpoint files beside it): runs rel → finished; ckpts rel → epoch."""
    import torch
    src = tmp_path / "src" / folder
    for rel, finished in runs.items():
        (src / "runs" / rel).mkdir(parents=True)
        (src / "runs" / rel / "args.json").write_text(json.dumps({"argv": ["sa_darts.py", "--reg", "sa"]}))
        (src / "runs" / rel / "metrics.jsonl").write_text('{"epoch": 1}\n')
        if finished:
            (src / "runs" / rel / "result.json").write_text("{}")
    (src / "session.json").write_text(json.dumps({"commit": {"commit": commit, "dirty": False}}))
    (src / "carry.json").write_text(json.dumps({"checkpoints": [{"run": r} for r in ckpts]}))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    with tarfile.open(out / f"{folder}.tar", "w") as tar:
        tar.add(src, arcname=folder)
    for rel, epoch in ckpts.items():
        run = src / "runs" / rel
        torch.save({"epoch": epoch}, run / "checkpoint.pt")
        (run / "checkpoint.pt.sha256").write_text("x")
        with tarfile.open(out / f"{folder}.ckpt-{rel.replace('/', '-')}.tar", "w") as tar:
            for name in G.CKPT_FILES:
                tar.add(run / name, arcname=f"runs/{rel}/{name}")
    return out / f"{folder}.tar"


def test_ingest_keeps_checkpoints_with_commit_and_drops_them_once_finished(tmp_path: Path, capsys) -> None:
    results, carry, page = tmp_path / "results", tmp_path / "carry", tmp_path / "page.md"
    results.mkdir()
    page.write_text(f"{G.BEGIN}\n{G.END}\n")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    s0, s1 = "nb201/sa-darts/cifar10/seed0", "nb201/sa-darts/cifar10/seed1"
    tar = _session_tar(tmp_path, "gpu-20260101-000000-h100", {s0: False, s1: False}, head, {s0: 4, s1: 4})
    lines: list[str] = []
    assert G.ingest(tar, results, page, carry, log=lines.append) == "gpu-20260101-000000-h100"
    assert f"commit {head[:10]}, in this checkout's history" in lines[0]
    info = G.carried_runs(carry)
    assert {k[3]: (v["epoch"], v["commit"], v["session"]) for k, v in info.items()} == {
        s: (4, head, "gpu-20260101-000000-h100") for s in (0, 1)}
    assert json.loads((carry / s0 / "carry.json").read_text())["argv"] == ["sa_darts.py", "--reg", "sa"]
    # a colleague's call from a commit unknown here: seed 0 finished, seed 1 went on to epoch 9 (its file lost)
    tar = _session_tar(tmp_path, "gpu-20260102-000000-h200", {s0: True, s1: False}, "f" * 40, {s1: 9})
    (tar.parent / f"{tar.stem}.ckpt-{s1.replace('/', '-')}.tar").unlink()
    lines.clear()
    G.ingest(tar, results, page, carry, log=lines.append)
    assert "unknown to this clone" in lines[0] and f"checkpoint of {s1} is not beside the tar" in lines[1]
    assert f"{s0} finished: its carried checkpoint removed" in lines[-1]
    assert list(G.carried_runs(carry)) == [("nb201", "sa-darts", "cifar10", 1)]  # seed 1 still at epoch 4
    bad = tmp_path / "bad.ckpt.tar"
    with tarfile.open(bad, "w") as t:
        t.add(page, arcname="runs/nb201/sa-darts/cifar10/seed0/../../evil.pt")
    tar = _session_tar(tmp_path, "gpu-20260103-000000-h200", {s1: False}, head, {})
    assert G.main(["ingest", str(tar), str(bad), "--results", str(results), "--readme", str(page),
                   "--carry", str(carry)]) == 2
    assert "unexpected member" in capsys.readouterr().err and not (results / "gpu-20260103-000000-h200").exists()


def test_results_table_goes_to_the_doc_once_the_readme_lost_its_markers(tmp_path: Path, monkeypatch) -> None:
    readme, doc = tmp_path / "README.md", tmp_path / "docs" / "time-boxed-gpu.md"
    doc.parent.mkdir()
    readme.write_text("# front page\n")
    doc.write_text(f"# doc\n{G.BEGIN}\nold\n{G.END}\n{G.SPEED_BEGIN}\nold\n{G.SPEED_END}\n")
    monkeypatch.setattr(G, "ROOT", tmp_path)
    monkeypatch.setattr(G, "DOC", doc)
    assert G.results_page() == doc
    results = tmp_path / "results"
    (results / "gpu-20260101-000000-h200").mkdir(parents=True)
    (results / "gpu-20260101-000000-h200" / "speed.json").write_text(json.dumps({"rows": [
        {"device": "NVIDIA H200", "method": "darts-v1", "replicas": 3, "amp": "bf16", "batch": 64, "graphs": True,
         "step_s": 0.024, "nb201_searches_per_hour": 7.7}]}))
    G.update_readme(results)
    text = doc.read_text()
    assert "| NVIDIA H200 | darts-v1 | batched+graphs | bf16 | 3 | 64 | 24.0 | 7.8 |" in text
    assert "(../results/gpu-20260101-000000-h200/speed.json)" in text and "old" not in text
    assert readme.read_text() == "# front page\n"
    readme.write_text(f"{G.BEGIN}\n{G.END}\n")  # while the README has them, it gets the table
    assert G.results_page() == readme
    doc.write_text("no markers")
    with pytest.raises(G.SessionError, match="lacks the"):
        G.results_page(doc)


def test_epoch_timing_and_committed_figures_per_gpu_model(tmp_path: Path) -> None:
    records = [{"epoch": 1, "time": 14.0}, {"epoch": 2, "time": 10.0}]
    t = G.epoch_timing(records, 60.0, 50, 0.1)  # epochs 12 s on average, 5 s of it steps; 60 − 24 s start-up
    assert t["epoch_overhead_s"] == pytest.approx(7.0) and t["startup_s"] == pytest.approx(36.0)
    with pytest.raises(G.SessionError, match="no epoch record"):
        G.epoch_timing([], 1.0, 50, 0.1)
    results = tmp_path / "results"
    rows = [{"method": "darts-v1", "batch": 64, "amp": a, "graphs": True, "replicas": 3, "step_s": 0.03}
            for a in ("none", "bf16")]
    for folder, calib in (("gpu-20260101-000000-h100", {"rows": rows, "epoch_timing": t}),
                          ("gpu-20260102-000000-h100", {"rows": rows}),  # no epoch timing: not enough
                          ("gpu-20260103-000000-h200", {"rows": rows, "epoch_timing": t})):
        (results / folder).mkdir(parents=True)
        (results / folder / "calibration.json").write_text(json.dumps(calib))
    found = G.committed_calibration(results, "NVIDIA H100 80GB HBM3", True, 3, [("darts-v1", 64)])
    assert found is None  # another model's name: "h100-80gb-hbm3" has no folder
    found = G.committed_calibration(results, "NVIDIA H100", True, 3, [("darts-v1", 64)])
    assert found["source"].endswith("gpu-20260101-000000-h100/calibration.json")
    assert G.committed_calibration(results, "NVIDIA H100", False, 3, [("darts-v1", 64)]) is None  # eager: unmeasured
    assert G.committed_calibration(results, "NVIDIA H100", True, 3, [("gdas", 64)]) is None
    assert G.h100_fallback(results, "NVIDIA H200")["source"].endswith("h200/calibration.json")
    newest = G.newest_calibration(results, "NVIDIA H100")  # a cut-off call's figures: measured on top of them
    assert newest["source"].endswith("gpu-20260102-000000-h100/calibration.json") and "epoch_timing" not in newest
    assert G.newest_calibration(results, "NVIDIA A100") is None


@pytest.mark.slow
def test_rehearsal_cut_then_resumed_equals_one_uninterrupted_run(tmp_path: Path, shared_data: Path, nb201_csv: Path
                                                                  ) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "rehearse", "--data-dir",
                           str(shared_data), "--work", str(tmp_path / "w"), "--epochs", "3", "--cut-after", "1"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    out = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and out[-1] == "identical", proc.stdout[-3000:] + proc.stderr[-2000:]
    text = proc.stdout
    assert "stopped at deadline sa-darts/cifar10 seeds (0, 1) (rc 130): epochs kept in their checkpoints" in text
    assert "RESUME sa-darts/cifar10 seed 0 at epoch" in text and "returned as gpu-" in text


@pytest.mark.slow
def test_epoch_timing_runs_the_head_cells_own_command_for_two_epochs(tmp_path: Path, shared_data: Path,
                                                                      nb201_csv: Path) -> None:
    gpu_dir = tmp_path / "gpu"
    (gpu_dir / "data" / "nb201").mkdir(parents=True)
    (gpu_dir / "data" / "nb201" / "nb201_200ep.csv").symlink_to(nb201_csv)
    (gpu_dir / "cifar10_full").symlink_to(shared_data)
    tiny = "--C 4 --N 1 --batch-size 16 --eval-images 32 --device cpu"
    session = G.Session(G.SessionArgs(out=tmp_path / "out", results=tmp_path / "results", gpu_dir=gpu_dir,
                                      seeds=(0, 1), extra=tuple(shlex.split(tiny)), timing_s=300, budget=570,
                                      timing_steps=4))
    session.batched, session.amp = True, "none"
    (cell, *_) = session.matrix()
    rows = [{"method": "darts-v1", "batch": 16, "amp": "none", "graphs": False, "replicas": 2, "step_s": 0.01}]
    session.epoch_timing(cell.jobs[0], rows)
    t = session.calib["epoch_timing"]
    assert t["steps_per_epoch"] == 4 and len(t["epoch_times_s"]) == 2  # max(4 batches, 32 eval images) a half
    assert t["epoch_overhead_s"] == pytest.approx(max(0.0, sum(t["epoch_times_s"]) / 2 - 4 * 0.01))
    assert t["startup_s"] > 0 and "2-epoch sa-darts search on cpu" in t["source"]
    assert not (session.work / "timing").exists()  # the scratch runs are not packed


def test_a_cut_off_run_finished_by_a_later_call_counts_once_in_the_table(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for folder, seed, finished in (("gpu-20260101-000000-0123456789-h100", 0, False),
                                   ("gpu-20260101-000000-0123456789-h100", 1, False),
                                   ("gpu-20260102-000000-0123456789-h100", 0, True)):
        run = results / folder / "runs" / "nb201" / "sa-darts" / "cifar10" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "args.json").write_text(json.dumps({"space": "nb201", "dataset": "cifar10", "seed": seed, "epochs": 50,
                                                   "data_dir": "/x/.gpu/cifar10_full"}))
        (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
        if finished:
            (run / "result.json").write_text(json.dumps({"nb201": {"cifar10_test": 93.0}, "wall_time_s": 600,
                                                         "device": "NVIDIA H100"}))
    (row,) = [ln for ln in G.gpu_table(results).splitlines() if ln.startswith("| SA-DARTS")]
    assert row.split(" | ")[3] == "1 (+1 unfinished)"  # seed 0 once (finished), seed 1 still going
