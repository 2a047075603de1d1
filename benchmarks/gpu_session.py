"""One lent-GPU session turned into committed NB201 evidence: prepare → one device call → ingest → commit.

    python benchmarks/gpu_session.py prepare            # here: .gpu/ (data, tool, commit) + .whl/, prints the run call
    bash benchmarks/gpu_session.sh                      # there, as ONE device `run` call (timeout_s 570)
    bash benchmarks/gpu_session.sh --dry-run            # anywhere: the plan and its budget arithmetic, no search
    python benchmarks/gpu_session.py ingest OUT.tar     # here: unpack into results/, regenerate the README table
    python benchmarks/gpu_session.py table              # regenerate the README table only

`session` (what gpu_session.sh runs) works in stages under a wall-clock budget it checks itself
(`--budget`, default 540 s of the call's 570): set-up (≤ 60 s: full CIFAR-10 from the carried JPEG copy,
versions), smoke (≤ 60 s: the CUDA-graph replay tests; on failure the queue runs eager and says so),
calibrate (≤ 60 s: the bilevel step of each queued method on the fastest path available: replica-batched
seeds when the scripts take `--seeds`, CUDA graphs, fp32 or bf16), then the queue: the next unfinished
NB201 cells in `ORDER`, 3 seeds each, only cells whose estimate fits the time left, `--parallel`
processes at once (as many as the GPU's memory holds), runs still going at the deadline stopped; on a
GPU model's first draw, the time the queue leaves goes to the README's speed figures. Every run's
args.json, metrics.jsonl and result.json (never checkpoints), the calibration figures, session.json and
the log go into ONE tar under $OUT (even when a stage fails: the log then holds why).

Estimate of one search process (every term printed with each plan; the constants are assumptions, to
be checked against session.json's elapsed times after a draw):
    safety × (startup + epochs × (steps/epoch × step × slowdown + per-epoch overhead)),
step from the calibration (a smaller batch's figure scaled up linearly), slowdown = per-process step
with `--parallel` processes sharing the GPU / alone (measured; else assumed = the number of processes).

The queue's commands are `run_all.sh --dry-run`'s lines (the matrix lives there only); a cell's seed
is finished when a folder `results/gpu-*/**/<space>/<label>/<dataset>/seed<k>/` holds a result.json
whose args.json `argv` has the same method flags as the matrix line today (paths, device, precision and
graph flags aside): a changed matrix row makes its old runs unfinished.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's common/, not an installed one
#: The issue-19 queue order (run_all.sh labels). `<label>-authors` ranks as `<label>`; then the paper-recipe
#: rows (`<label>-paper`), then every other NB201 label of the matrix, each group in run_all.sh's order.
ORDER = ("sa-darts", "sp-darts", "edd-darts", "darts-v1", "sac-darts", "gdas", "darts-v1-aer", "gdas-aer",
         "pcd", "ets-gdas", "beta-darts", "darts-v2", "darts-v2-aer")
RUN_FILES = ("args.json", "metrics.jsonl", "result.json")
SESSION_FILES = ("calibration.json", "session.json", "session.log")  # + speed.json on a GPU model's first draw
#: Flags that do not change what is searched: dropped before a committed run is matched to a matrix line.
NEUTRAL_VALUE_FLAGS = {"--data-dir", "--out", "--nb201", "--device", "--log-every", "--loader", "--amp",
                       "--seed", "--seeds"}
NEUTRAL_BARE_FLAGS = {"--resume", "--no-resume", "--progress", "--no-progress", "--cuda-graphs",
                      "--no-cuda-graphs", "--fast", "--no-fast", "--deterministic", "--no-deterministic"}
#: The GPU checks of the smoke stage, as pytest node ids: every one runs on CUDA (none skips there:
#: tests/test_gpu_smoke.py collects them on CPU with CUDA made to look present and fails if one would skip).
#: Graph replay against eager searches for every captured method, the `--seeds` batched step included, the
#: replay/reset/generator behaviour of StepGraphs, and the device-resident loader.
SMOKE = ("tests/test_graphs.py::test_replay_bakes_python_values_until_reset_and_draws_new_random_numbers",
         "tests/test_graphs.py::test_graph_replay_matches_eager_search_on_cuda",
         "tests/test_data.py::test_device_loader_cuda_matches_cpu")
WHEELS = ("nas-bench-201==2.1",)  # the device image lacks it (KINDS.md package list); pure Python, no deps
TRAIN_HALF = 25000  # images per half of the CIFAR search split
CARRY_LIMIT = 64 * 2**20
_SEED_DIR = re.compile(r"seed(\d+)")


class SessionError(Exception):
    """A user-facing failure: one line on stderr, exit code 2."""


# ---------------------------------------------------------------------------------------- the matrix
@dataclass
class Job:
    """One command line of run_all.sh's matrix (one seed, or a replica-batched group of seeds)."""

    line: str
    script: str
    space: str
    label: str
    dataset: str
    seeds: tuple[int, ...]
    out: Path
    key: tuple

    def run_dir(self, seed: int) -> Path:
        if "{seed}" in str(self.out):  # run_all.sh's grouped line: --out <cell>/seed{seed} (common/replicas.py)
            return Path(str(self.out).replace("{seed}", str(seed)))
        return self.out if _SEED_DIR.fullmatch(self.out.name) else self.out / f"seed{seed}"

    @property
    def log_dir(self) -> Path:
        """Where the process's own stdout/stderr go: the run directory, or a --seeds group's cell folder."""
        if len(self.seeds) == 1:
            return self.run_dir(self.seeds[0])
        return self.out.parent if "{seed}" in self.out.name else self.out


def _flag_values(tokens: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """`--flag v1 v2` pairs in order (`--flag=v` split); values run until the next `--` token."""
    pairs: list[tuple[str, list[str]]] = []
    for tok in tokens:
        if tok.startswith("--"):
            name, eq, value = tok.partition("=")
            pairs.append((name, [value] if eq else []))
        elif pairs:
            pairs[-1][1].append(tok)
    return [(n, tuple(v)) for n, v in pairs]


def method_key(argv: Sequence[str]) -> tuple:
    """What a search is, from its argv: the script and its method flags (paths, device, precision dropped)."""
    script_at = next((i for i, t in enumerate(argv) if t.endswith(".py")), None)
    if script_at is None:
        return ()
    pairs = [(n, v) for n, v in _flag_values(argv[script_at + 1:])
             if n not in NEUTRAL_VALUE_FLAGS and n not in NEUTRAL_BARE_FLAGS]
    return (Path(argv[script_at]).name, tuple(sorted(pairs)))


def parse_job(line: str) -> Job:
    """A Job from one matrix line (`python3 X.py ... --dataset D --seed K --out RUNS/space/label/D/seedK`)."""
    tokens = shlex.split(line)
    flags = dict(_flag_values(tokens))
    try:
        out = Path(flags["--out"][0])
        dataset = flags["--dataset"][0]
        space = flags.get("--space", ("nb201",))[0]
        seeds = tuple(int(s) for s in flags.get("--seeds", flags.get("--seed", ())))
        script = next(Path(t).name for t in tokens if t.endswith(".py"))
    except (KeyError, IndexError, StopIteration, ValueError):
        raise SessionError("cannot read a run_all.sh line (needs X.py, --dataset, --seed/--seeds, --out): "
                           + line) from None
    parts = out.parts
    at = len(parts) - 1 - parts[::-1].index(dataset) if dataset in parts else -1
    if at < 1 or not seeds:
        raise SessionError(f"run_all.sh line without <label>/<dataset>/ in --out or without a seed: {line}")
    return Job(line, script, space, parts[at - 1], dataset, seeds, out, method_key(tokens))


def read_matrix(runs_dir: Path, data_dir: str, nb201: str | None, seeds: Sequence[int], datasets: Sequence[str],
                extra: Sequence[str] = (), run_all: Path = ROOT / "run_all.sh") -> list[Job]:
    """The NB201 lines of run_all.sh's matrix (its `--dry-run`), as Jobs, in run_all.sh's order."""
    cmd = ["bash", str(run_all), "--dry-run", "--spaces", "nb201", "--datasets", " ".join(datasets),
           "--seeds", " ".join(map(str, seeds)), "--runs", str(runs_dir), "--data-dir", data_dir]
    cmd += ["--nb201", nb201] if nb201 else []
    cmd += ["--", *extra] if extra else []
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=run_all.parent, env=env)
    if proc.returncode != 0:
        raise SessionError(f"run_all.sh --dry-run failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    return [parse_job(ln) for ln in proc.stdout.splitlines() if ".py " in ln]


def rank(label: str) -> int:
    """Position of a label in ORDER (`-authors` rows rank as their base label); then the `-paper` rows
    (len(ORDER)), then every other label (len(ORDER) + 1)."""
    for name in (label, label.removesuffix("-authors")):
        if name in ORDER:
            return ORDER.index(name)
    return len(ORDER) + (not label.endswith("-paper"))


# ---------------------------------------------------------------------------------------- unfinished
def committed_runs(results: Path) -> dict[tuple[str, str, str, int], list[tuple[tuple, bool, Path]]]:
    """(space, label, dataset, seed) → [(method key, finished, run dir)] of every run under results/gpu-*/:
    the files git tracks where `results` is in a git checkout (committed or staged), else all of them (the
    device's copy of the tree has no .git)."""
    found: dict[tuple[str, str, str, int], list[tuple[tuple, bool, Path]]] = {}
    rc, listing = _sh(["git", "ls-files", "-z", "--", "."], 30, cwd=results) if results.is_dir() else (1, "")
    tracked = {(results / n).resolve() for n in listing.split("\0") if n} if rc == 0 else None
    for args_file in sorted(results.glob("gpu-*/**/args.json")):
        run = args_file.parent
        if tracked is not None and args_file.resolve() not in tracked:
            continue
        try:
            args = json.loads(args_file.read_text())
            seed = int(_SEED_DIR.fullmatch(run.name).group(1))  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(args, dict) or len(run.parts) < 4:
            continue
        finished = False
        if (run / "result.json").is_file() and (tracked is None or (run / "result.json").resolve() in tracked):
            try:
                finished = isinstance(json.loads((run / "result.json").read_text()), dict)
            except (OSError, ValueError):
                finished = False
        key = method_key([str(a) for a in args.get("argv", [])])
        found.setdefault((run.parts[-4], run.parts[-3], run.parts[-2], seed), []).append((key, finished, run))
    return found


@dataclass
class Cell:
    """The unfinished seeds of one (label, dataset) of the matrix, as the jobs that would run them."""

    label: str
    dataset: str
    jobs: list[Job]
    done: int  # seeds of the cell already finished in results/

    @property
    def name(self) -> str:
        return f"{self.label}/{self.dataset}"


def unfinished_cells(jobs: Sequence[Job], committed: dict, datasets: Sequence[str]) -> list[Cell]:
    """Cells with a missing seed, in queue order: datasets in `datasets` order, then ORDER, then matrix order."""
    cells: dict[tuple[str, str], Cell] = {}
    for job in jobs:
        cell = cells.setdefault((job.label, job.dataset), Cell(job.label, job.dataset, [], 0))
        missing = tuple(s for s in job.seeds if not any(
            key == job.key and fin for key, fin, _ in committed.get((job.space, job.label, job.dataset, s), [])))
        cell.done += len(job.seeds) - len(missing)
        if missing == job.seeds:
            cell.jobs.append(job)
        elif missing:  # a batched line with some seeds done: run only the missing ones
            tokens = shlex.split(job.line)
            at = tokens.index("--seeds")
            end = next((i for i in range(at + 1, len(tokens)) if tokens[i].startswith("--")), len(tokens))
            tokens[at + 1:end] = map(str, missing)
            cell.jobs.append(Job(shlex.join(tokens), job.script, job.space, job.label, job.dataset, missing,
                                 job.out, job.key))
    matrix_at = {k: i for i, k in enumerate(cells)}
    order = sorted(cells, key=lambda k: (datasets.index(k[1]) if k[1] in datasets else len(datasets),
                                         rank(k[0]), matrix_at[k]))
    return [cells[k] for k in order if cells[k].jobs]


# ---------------------------------------------------------------------------------------- cost model
@dataclass
class Cost:
    """The assumptions an estimate adds to a calibrated step time (printed with every plan)."""

    startup_s: float = 45.0        # interpreter, CUDA context, 50k images to the GPU, NB201 table
    epoch_overhead_s: float = 2.0  # graph re-capture, discretized-net evaluation, checkpoint, per epoch
    safety: float = 1.15           # multiplies the whole estimate


def bench_method(cfg: dict[str, Any]) -> str:
    """The benchmarks/search_step.py method whose step costs what this resolved config's step costs."""
    backbone = str(cfg.get("backbone") or "")
    if "gdas" in backbone:
        return "gdas"
    if backbone == "darts-v2":
        return "darts-v2"
    if int(cfg.get("partial_channels") or 1) > 1:
        return "pc-k4"
    return "darts-v1"


_CONFIG_CACHE: dict[str, Any] = {}


def config_class(script: str) -> Any:
    """The SearchConfig subclass a method script parses its flags into (the script imported, not run)."""
    import importlib.util

    from common.config import SearchConfig
    if script not in _CONFIG_CACHE:
        spec = importlib.util.spec_from_file_location(f"_gpu_session_{script[:-3]}", ROOT / script)
        if spec is None or not (ROOT / script).is_file():
            raise SessionError(f"run_all.sh names {script}, which is not in {ROOT}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module.__name__] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, SearchConfig)
                   and c.__module__ == module.__name__]
        if len(classes) != 1:
            raise SessionError(f"{script}: expected one SearchConfig subclass, found {len(classes)}")
        _CONFIG_CACHE[script] = classes[0]
    return _CONFIG_CACHE[script]


def takes_flag(script: str, flag: str) -> bool:
    """Whether a method script's parser has `flag` (the run-time probe for replica-batched `--seeds`)."""
    from common.config import build_parser
    return flag in build_parser(config_class(script))._option_string_actions


def resolve_config(job: Job) -> dict[str, Any]:
    """The resolved config of a matrix line (epochs, batch size, backbone, ...), as its script would use it."""
    import dataclasses

    from common.config import parse_config
    tokens = shlex.split(job.line)
    argv = tokens[next(i for i, t in enumerate(tokens) if t.endswith(".py")) + 1:]
    try:
        return dataclasses.asdict(parse_config(config_class(job.script), argv))
    except SystemExit:
        raise SessionError(f"{job.script} refuses its matrix line: {job.line}") from None


def lookup_step(rows: Sequence[dict[str, Any]], method: str, batch: int, amp: str, graphs: bool,
                replicas: int = 1) -> tuple[float, str] | None:
    """(seconds per bilevel step, how it was obtained) from calibration rows; a figure at a smaller batch
    is scaled up linearly (an over-estimate for a host-bound step), one for more replicas stands for fewer;
    None when nothing applies."""
    same = [r for r in rows if r["method"] == method and r["amp"] == amp and bool(r["graphs"]) == graphs
            and r.get("step_s") and int(r.get("replicas", 1)) >= replicas]
    fewest = min((int(r.get("replicas", 1)) for r in same), default=replicas)  # S replicas cost at most S' ≥ S
    same = [r for r in same if int(r.get("replicas", 1)) == fewest]
    exact = [r for r in same if int(r["batch"]) == batch]
    if exact:
        return float(exact[0]["step_s"]), "measured"
    smaller = sorted((r for r in same if int(r["batch"]) < batch), key=lambda r: -int(r["batch"]))
    if smaller:
        r = smaller[0]
        return float(r["step_s"]) * batch / int(r["batch"]), f"scaled from batch {r['batch']}"
    larger = sorted((r for r in same if int(r["batch"]) > batch), key=lambda r: int(r["batch"]))
    if larger:
        return float(larger[0]["step_s"]), f"batch {larger[0]['batch']}'s figure"
    return None


def job_estimate(epochs: int, steps_per_epoch: int, step_s: float, slowdown: float, cost: Cost) -> float:
    """Seconds one search process takes: safety × (startup + epochs × (steps × step × slowdown + overhead))."""
    return cost.safety * (cost.startup_s + epochs * (steps_per_epoch * step_s * slowdown + cost.epoch_overhead_s))


def fit_slots(slots: int, smi: str, rows: Sequence[dict[str, Any]], margin: float = 0.8) -> int:
    """Processes at once that the GPU's memory (nvidia-smi's `N MiB`) holds at the largest calibrated peak."""
    mem = re.search(r"(\d+)\s*MiB", smi)
    peaks = [float(r["peak_mem_mb"]) for r in rows if r.get("peak_mem_mb")]
    if not mem or not peaks:
        return slots
    return max(1, min(slots, int(margin * int(mem.group(1)) // max(peaks))))


@dataclass
class Planned:
    """A job with its estimate, and (once planned) its slot, start and end in seconds from queue start."""

    job: Job
    estimate: float
    note: str = ""
    slot: int = -1
    start: float = 0.0
    end: float = 0.0


def plan_queue(cells: Sequence[tuple[Cell, list[Planned]]], window: float, slots: int
               ) -> tuple[list[tuple[Cell, list[Planned]]], list[tuple[Cell, str]]]:
    """Greedy plan: each cell in order goes on the earliest-free slots if ALL its jobs end within `window`
    seconds, else it is skipped (a later, smaller cell may still fit). Returns (admitted, skipped+reason)."""
    free = [0.0] * max(1, slots)
    admitted, skipped = [], []
    for cell, planned in cells:
        if any(not math.isfinite(p.estimate) for p in planned):
            skipped.append((cell, "no calibration figure for its step: "
                                  + "; ".join(dict.fromkeys(p.note for p in planned))))
            continue
        trial = list(free)
        placed = []
        for p in planned:
            slot = min(range(len(trial)), key=trial.__getitem__)
            placed.append((slot, trial[slot], trial[slot] + p.estimate))
            trial[slot] += p.estimate
        end = max(e for _, _, e in placed)
        if end <= window:
            for p, (slot, s, e) in zip(planned, placed):
                p.slot, p.start, p.end = slot, s, e
            free = trial
            admitted.append((cell, planned))
        else:
            skipped.append((cell, f"needs until {end:.0f} s of a {window:.0f} s window; per process "
                                  f"{planned[0].note} = {planned[0].estimate:.0f} s"))
    return admitted, skipped


def estimate_cells(cells: Sequence[Cell], calib: dict[str, Any], amp: str, graphs: bool, batched: bool,
                   slowdown: float, cost: Cost, configs: Callable[[Job], dict[str, Any]] = resolve_config
                   ) -> list[tuple[Cell, list[Planned]]]:
    """Each cell's jobs with their estimates from `calib` rows (NaN + a note where no figure applies)."""
    out = []
    for cell in cells:
        planned = []
        for job in cell.jobs:
            cfg = configs(job)
            method, batch, epochs = bench_method(cfg), int(cfg["batch_size"]), int(cfg["epochs"])
            steps = (cfg.get("limit_train") or TRAIN_HALF) // batch
            replicas = len(job.seeds) if batched else 1
            found = lookup_step(calib.get("rows", []), method, batch, amp, graphs and method != "gdas", replicas)
            alone = lookup_step(calib.get("rows", []), method, batch, amp, graphs and method != "gdas")
            if found is None and replicas > 1 and alone is not None:  # no batched figure: S lone steps, + 10%
                found = (1.1 * replicas * alone[0], f"{replicas} × 1.1 × the lone step, {alone[1]}")
            if found is None:
                planned.append(Planned(job, math.nan, f"{method} b={batch} {amp} graphs={graphs} S={replicas}"))
                continue
            step_s, how = found
            est = job_estimate(epochs, steps, step_s, slowdown, cost)
            note = (f"{epochs} ep × ({steps} steps × {1000 * step_s:.1f} ms [{method} b={batch}, {how}] × "
                    f"{slowdown:.2f} + {cost.epoch_overhead_s:g} s) + {cost.startup_s:g} s, × {cost.safety:g}")
            planned.append(Planned(job, est, note))
        out.append((cell, planned))
    return out


def format_plan(admitted: Sequence[tuple[Cell, list[Planned]]], skipped: Sequence[tuple[Cell, str]],
                window: float, slots: int) -> str:
    lines = [f"queue window {window:.0f} s, {slots} process(es) at once"]
    for cell, planned in admitted:
        lines.append(f"  RUN  {cell.name} ({cell.done} seed(s) already finished)")
        for p in planned:
            lines.append(f"       seeds {','.join(map(str, p.job.seeds))}: slot {p.slot}, {p.start:.0f} → {p.end:.0f} s"
                         f" = {p.note} = {p.estimate:.0f} s")
    for cell, why in skipped:
        lines.append(f"  SKIP {cell.name} ({cell.done} finished): {why}")
    if not admitted:
        lines.append("  nothing fits this window")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- calibration
def h100_fallback(results: Path) -> dict[str, Any]:
    """A calibration for planning without a device: the newest committed results/gpu-*/calibration.json,
    else the eager H100 figures in results/h100-partial/bench_gpu.json (fast path)."""
    mine = sorted(results.glob("gpu-*/calibration.json"))
    if mine:
        calib = json.loads(mine[-1].read_text())
        calib["source"] = str(mine[-1])
        return calib
    bench = results / "h100-partial" / "bench_gpu.json"
    if not bench.is_file():
        return {"source": "none", "rows": []}
    rows = [{"method": r["method"], "batch": r["batch"], "amp": r["amp"], "graphs": False, "replicas": 1,
             "step_s": r["step_s"], "peak_mem_mb": r.get("peak_mem_mb"), "gpu": r.get("device")}
            for r in json.loads(bench.read_text())["rows"] if r.get("path") == "fast"]
    return {"source": str(bench), "rows": rows}


def calibrate(needs: Sequence[tuple[str, int]], amps: Sequence[str], graphs: bool, replicas: int,
              deadline: float, out: Path, device: str = "cuda", iters: int = 10, warmup: int = 3, C: int = 16,
              N: int = 5) -> list[dict[str, Any]]:
    """Time the bilevel step of each (method, batch) × amp with benchmarks/search_step.py's make_step;
    `out` is rewritten after every figure, so a stage cut short keeps what it measured."""
    import inspect

    import torch
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from search_step import make_step, time_step
    dev = torch.device(device)
    batched = "replicas" in inspect.signature(make_step).parameters  # issue 18's benchmark, when built
    rows: list[dict[str, Any]] = []
    for method, batch in needs:
        for amp in amps:
            if time.time() > deadline:
                break
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            torch.manual_seed(0)
            kw = {"replicas": replicas} if batched and replicas > 1 else {}
            step, _ = make_step(method, "nb201", C, N, batch, dev, True, amp, False, graphs and method != "gdas", **kw)
            step_s = sorted(time_step(step, dev, warmup, iters))[iters // 2]
            rows.append({"method": method, "batch": batch, "amp": amp, "graphs": graphs and method != "gdas",
                         "replicas": replicas if kw else 1, "step_s": step_s,
                         "peak_mem_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None})
            out.write_text(json.dumps({"rows": rows}, indent=1))
            print(f"calibrate {method} b={batch} {amp} graphs={rows[-1]['graphs']} S={rows[-1]['replicas']}: "
                  f"{1000 * step_s:.1f} ms/step", flush=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))
    return rows


# ---------------------------------------------------------------------------------------- the queue
@dataclass
class Outcome:
    label: str
    dataset: str
    seeds: tuple[int, ...]
    status: str  # done | failed (rc N) | killed at deadline | not started: ...
    elapsed_s: float
    estimate_s: float


def run_queue(planned: Sequence[Planned], deadline: float, slots: int, log: Callable[[str], None],
              cwd: Path = ROOT, grace_s: float = 10.0, env: dict[str, str] | None = None) -> list[Outcome]:
    """Run the planned jobs in order, `slots` at a time; a job whose estimate no longer fits the time left
    is not started; at `deadline` the running ones get SIGTERM, then SIGKILL after `grace_s`."""
    pending, running, outcomes = list(planned), [], []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    while pending or running:
        while pending and len(running) < slots:
            p = pending.pop(0)
            if time.time() + p.estimate > deadline:
                outcomes.append(Outcome(p.job.label, p.job.dataset, p.job.seeds,
                                        f"not started: needs {p.estimate:.0f} s, {deadline - time.time():.0f} s left",
                                        0.0, p.estimate))
                continue
            logdir = p.job.log_dir
            (cwd / logdir).mkdir(parents=True, exist_ok=True)
            with open(cwd / logdir / "log.txt", "ab") as fh:
                proc = subprocess.Popen(["bash", "-c", p.job.line], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=env)
            log(f"start {p.job.label}/{p.job.dataset} seeds {p.job.seeds} (estimate {p.estimate:.0f} s): {p.job.line}")
            running.append((p, proc, time.time(), cwd / logdir / "log.txt"))
        if time.time() >= deadline:
            for _, proc, _, _ in running:
                _signal_group(proc, signal.SIGTERM)
            stop = time.time() + grace_s
            while time.time() < stop and any(proc.poll() is None for _, proc, _, _ in running):
                time.sleep(0.1)
            for p, proc, t0, _ in running:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
                outcomes.append(Outcome(p.job.label, p.job.dataset, p.job.seeds, "killed at deadline",
                                        time.time() - t0, p.estimate))
                log(f"killed at deadline {p.job.label}/{p.job.dataset} seeds {p.job.seeds}")
            for p in pending:
                outcomes.append(Outcome(p.job.label, p.job.dataset, p.job.seeds, "not started: deadline", 0.0,
                                        p.estimate))
            return outcomes
        for item in list(running):
            p, proc, t0, logfile = item
            if proc.poll() is None:
                continue
            running.remove(item)
            status = "done" if proc.returncode == 0 else f"failed (rc {proc.returncode})"
            outcomes.append(Outcome(p.job.label, p.job.dataset, p.job.seeds, status, time.time() - t0, p.estimate))
            log(f"{status} {p.job.label}/{p.job.dataset} seeds {p.job.seeds}: {time.time() - t0:.0f} s "
                f"(estimate {p.estimate:.0f} s)")
            if proc.returncode != 0:
                tail = logfile.read_text(errors="replace").splitlines()[-15:]
                log("  | " + "\n  | ".join(tail))
        time.sleep(0.2)
    return outcomes


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pack(tar_path: Path, folder: str, runs_dir: Path, extra: Iterable[Path]) -> list[str]:
    """Write ONE tar: `folder/runs/<rel>/{args.json,metrics.jsonl,result.json}` for every run directory
    under `runs_dir` (nothing else of a run: no checkpoints, no log.txt) and `folder/<name>` per extra file.
    Returns the member names."""
    names = []
    tmp = tar_path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for args_file in sorted(runs_dir.rglob("args.json")) if runs_dir.is_dir() else []:
            run = args_file.parent
            for name in RUN_FILES:
                if (run / name).is_file():
                    arc = f"{folder}/runs/{run.relative_to(runs_dir).as_posix()}/{name}"
                    tar.add(run / name, arcname=arc)
                    names.append(arc)
        for path in extra:
            if path.is_file():
                tar.add(path, arcname=f"{folder}/{path.name}")
                names.append(f"{folder}/{path.name}")
    tmp.replace(tar_path)
    return names


# ---------------------------------------------------------------------------------------- session
def smoke_failure(rc: int, text: str) -> str:
    """Why the smoke stage failed, naming the checks ("" when every check passed): pytest's `-rA` summary
    lines (`FAILED <node id>`, `ERROR <node id>`, `SKIPPED [n] <file:line>: <reason>`); a skipped check is a
    failure (an unverified path is not trusted with the searches)."""
    bad = [ln.split(" - ")[0].strip() for ln in text.splitlines() if re.match(r"(FAILED|ERROR) ", ln)]
    bad += [ln.strip() for ln in text.splitlines() if ln.startswith("SKIPPED ")]
    passed = re.search(r"(\d+) passed", text)
    if rc == 124:
        bad.insert(0, "timed out")
    elif not bad and rc != 0:
        bad.append(f"pytest rc {rc}")
    elif not bad and passed is None:
        bad.append("no check passed")
    return "; ".join(bad)


class Log:
    """Prints and appends to session.log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        with open(self.path, "a") as fh:
            fh.write(text + "\n")


def _sh(cmd: Sequence[str] | str, timeout: float, cwd: Path = ROOT, env: dict[str, str] | None = None
        ) -> tuple[int, str]:
    """Run a command (list, or a string for bash) with a timeout; (rc, stdout+stderr). rc 124 on timeout."""
    try:
        proc = subprocess.Popen(cmd if isinstance(cmd, list) else ["bash", "-c", cmd], cwd=cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    except OSError as err:
        return 127, str(err)
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)  # the whole group: pytest's and search_step's children too
        out, _ = proc.communicate()
        return 124, (out or "") + f"\n(stopped after {timeout:.0f} s)"


def gpu_name() -> tuple[str, str]:
    """(GPU model, nvidia-smi line) or ("cpu", reason) where there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return "cpu", "no nvidia-smi on PATH"
    rc, out = _sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 20)
    line = out.strip().splitlines()[0] if rc == 0 and out.strip() else ""
    return (line.split(",")[0].strip() or "unknown-gpu"), (line or f"nvidia-smi failed (rc {rc})")


def slug(gpu: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", gpu.lower().removeprefix("nvidia").strip()).strip("-")
    return s or "gpu"


@dataclass
class SessionArgs:
    budget: float = 540.0
    out: Path = Path(".")
    dry_run: bool = False
    results: Path = ROOT / "results"
    gpu_dir: Path = ROOT / ".gpu"
    seeds: tuple[int, ...] = (0, 1, 2)
    datasets: tuple[str, ...] = ("cifar10",)
    amp: str = "auto"
    parallel: str = "auto"
    setup_s: float = 60.0
    smoke_s: float = 60.0
    calib_s: float = 60.0
    reserve_s: float = 25.0
    cost: Cost = field(default_factory=Cost)
    skip_setup: bool = False
    skip_smoke: bool = False
    calibration: Path | None = None
    extra: tuple[str, ...] = ()
    max_cells: int | None = None
    speed: str = "auto"
    speed_s: float = 90.0


class Session:
    """The device call, stage by stage: set-up, smoke, calibrate, queue (+ speed), one tar under `a.out`."""

    def __init__(self, a: SessionArgs) -> None:
        self.a, self.t0 = a, time.time()
        self.end = self.t0 + a.budget - a.reserve_s  # the queue's deadline; the reserve stops runs and packs
        self.gpu, self.smi = gpu_name()
        stamp = time.strftime("%Y%m%d-%H%M", time.gmtime(self.t0))
        self.folder = f"{'dryrun' if a.dry_run else 'gpu'}-{stamp}-{slug(self.gpu)}"
        self.work = a.gpu_dir / "session"
        if self.work.exists():
            shutil.rmtree(self.work)
        self.runs_dir, self.full = self.work / "runs", a.gpu_dir / "cifar10_full"
        self.nb201 = a.gpu_dir / "data" / "nb201" / "nb201_200ep.csv"
        self.log = Log(self.work / "session.log")
        self.summary: dict[str, Any] = {"folder": self.folder, "gpu": self.gpu, "nvidia_smi": self.smi,
                                        "budget_s": a.budget, "dry_run": a.dry_run, "stages": {},
                                        "commit": _commit_info(a.gpu_dir)}
        self.calib: dict[str, Any] = {"rows": []}
        self.tar_path = a.out / f"{self.folder}.tar"
        self.data_ok = self.graphs = self.batched = False
        self.amp, self.slots, self.slowdown = "none", 1, 1.0
        self.committed: dict = {}

    def __call__(self) -> int:
        """Every stage in order; the tar is written whatever happens (with the traceback in its log)."""
        try:
            self.setup()
            self.smoke()
            self.calibrate()
            if not self.a.dry_run:
                self.write_tar()  # the calibration survives even if the queue overruns the call
            status = self.queue()
            self.speed()
            return status
        except SessionError as err:
            self.log(f"error: {err}")
            self.summary["error"] = str(err)
            return 2
        except Exception as err:  # noqa: BLE001 -- whatever breaks, the tar still comes back with the traceback
            import traceback
            self.log(traceback.format_exc())
            self.summary["error"] = f"{type(err).__name__}: {err}"
            return 1
        finally:
            names = self.write_tar()
            self.log(f"tar: {self.tar_path} ({sum(n.endswith('/result.json') for n in names)} finished run(s), "
                     f"{sum(n.endswith('/args.json') for n in names)} run(s) in all, {time.time() - self.t0:.0f} s)")
            self.write_tar()  # again, with that last line in session.log

    def stage_done(self, name: str, started: float, **info: Any) -> None:
        self.summary["stages"][name] = {"seconds": round(time.time() - started, 1), **info}
        self.log(f"== {name}: {time.time() - started:.1f} s (total {time.time() - self.t0:.0f} of "
                 f"{self.a.budget:.0f} s)")

    def write_tar(self) -> list[str]:
        self.summary["wall_s"] = round(time.time() - self.t0, 1)
        (self.work / "calibration.json").write_text(json.dumps(self.calib, indent=1))
        (self.work / "session.json").write_text(json.dumps(self.summary, indent=1, default=str))
        self.a.out.mkdir(parents=True, exist_ok=True)
        return pack(self.tar_path, self.folder, self.runs_dir,
                    [self.work / n for n in (*SESSION_FILES, "speed.json")])

    def setup(self) -> None:
        """1. Full CIFAR-10 from the carried JPEG copy (cifar10_full.py), versions."""
        a, s = self.a, time.time()
        self.log(f"== set-up ({'dry run' if a.dry_run else f'budget {a.budget:.0f} s'}); GPU: {self.smi}")
        import platform

        import torch  # the searches' torch; this process never touches the GPU
        versions = (f"python {platform.python_version()} | torch {torch.__version__} | cuda {torch.version.cuda} | "
                    f"driver and GPU: {self.smi}")
        self.log(versions)
        self.summary["versions"] = versions
        tool, npz = a.gpu_dir / "tools" / "cifar10_full.py", a.gpu_dir / "data" / "cifar10_jpeg.npz"
        self.data_ok = (self.full / "cifar-10-batches-py" / "test_batch").is_file()
        if a.dry_run or a.skip_setup:
            missing = [str(p) for p in (tool, npz, self.nb201) if not p.is_file()]
            self.log(f"would rebuild: {sys.executable} {tool} {self.full}" + (
                f"  (MISSING: {', '.join(missing)}: run `python benchmarks/gpu_session.py prepare` first)"
                if missing else ""))
        elif not self.data_ok:
            rc, text = _sh([sys.executable, str(tool), str(self.full)], self.end - time.time())
            self.log(text.strip())
            self.data_ok = rc == 0
            if not self.data_ok:
                self.log(f"DATA REBUILD FAILED (rc {rc}): calibration only, no searches")
        if (self.full / "cifar-10-batches-py").is_dir() and self.nb201.is_file() and not (self.full / "nb201").exists():
            (self.full / "nb201").mkdir()
            shutil.copy(self.nb201, self.full / "nb201" / self.nb201.name)  # tests read DARTS_SHARED_DATA/nb201/
        self.stage_done("set-up", s, data=self.data_ok)

    def smoke(self) -> None:
        """2. The GPU checks in SMOKE; a failed, erroring or skipped check → eager, named in the log."""
        import importlib.util
        a, s = self.a, time.time()
        cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *SMOKE]
        if importlib.util.find_spec("xdist") is not None:  # 17 replay-vs-eager search pairs: 6 at a time
            cmd += ["-n", "6"]
        if a.dry_run or a.skip_smoke:
            self.log(f"== smoke: would run DARTS_SHARED_DATA={self.full} {shlex.join(cmd)}")
            self.graphs = self.gpu != "cpu" and not a.skip_smoke
        else:
            rc, text = _sh(cmd, min(a.smoke_s, self.end - time.time()), env={"DARTS_SHARED_DATA": str(self.full)})
            self.log("\n".join(text.strip().splitlines()[-40:]))  # the summary: every check's outcome
            why = smoke_failure(rc, text) or ("no GPU" if self.gpu == "cpu" else "")
            self.graphs = not why
            if why:
                self.log(f"SMOKE FAILED ({why}): the rest runs EAGER (no --cuda-graphs)")
        self.stage_done("smoke", s, graphs=self.graphs)

    def matrix(self, extra: Sequence[str] = (), probe: bool = False) -> list[Cell]:
        """The unfinished cells of run_all.sh's NB201 matrix; `probe`: also whether the scripts take --seeds."""
        a = self.a
        jobs = read_matrix(self.runs_dir, str(self.full), str(self.nb201), a.seeds, a.datasets, [*a.extra, *extra])
        if probe:
            self.batched = bool(jobs) and all(takes_flag(j.script, "--seeds") for j in jobs)  # issue 18, once built
            self.log(f"matrix: {len(jobs)} NB201 lines for {', '.join(a.datasets)}, seeds {a.seeds}")
        return unfinished_cells(jobs, self.committed, a.datasets)

    def calibrate(self) -> None:
        """3. The path (batched, graphs, fp32/bf16), each queued method's step, the cost of sharing the GPU."""
        a, s = self.a, time.time()
        self.committed = committed_runs(a.results)
        cells = self.matrix(probe=True)
        self.log(f"{len(cells)} unfinished cell(s): {', '.join(c.name for c in cells) or 'none'}")
        needs = list(dict.fromkeys([*((bench_method(cfg), int(cfg["batch_size"]))
                                      for cfg in (resolve_config(j) for c in cells for j in c.jobs)),
                                    ("darts-v1", 64)]))  # the README's reference step, even with nothing queued
        if a.calibration is not None or a.dry_run:
            self.calib = json.loads(a.calibration.read_text()) if a.calibration else h100_fallback(a.results)
            self.calib.setdefault("source", str(a.calibration))
            self.log(f"== calibrate: using {self.calib['source']} (not measured)")
        else:
            part = self.work / "calibration.part.json"
            rc, text = _sh([sys.executable, str(Path(__file__).resolve()), "calibrate", "--json", str(part),
                            "--deadline", str(min(time.time() + a.calib_s, self.end)),
                            "--amp", *(["none", "bf16"] if a.amp == "auto" else [a.amp]),
                            "--replicas", str(len(a.seeds) if self.batched else 1),
                            *(["--graphs"] if self.graphs else []), "--need", *[f"{m}:{b}" for m, b in needs]],
                           min(a.calib_s + 30, self.end - time.time()))
            self.log(text.strip())
            self.calib = json.loads(part.read_text()) if part.is_file() else {"rows": []}
            self.calib["source"] = f"measured on {self.gpu} this session (rc {rc})"
        rows = self.calib["rows"]
        if self.graphs and not any(r.get("graphs") for r in rows):
            self.graphs = False
            self.log("no graph-replayed step in the calibration: planning and running EAGER")
        self.calib.update(gpu=self.gpu, graphs=self.graphs, batched=self.batched)
        head_method, head_batch = needs[0]
        head_graphs = self.graphs and head_method != "gdas"
        self.amp = a.amp
        if self.amp == "auto":  # the faster of fp32 and bf16 on the first queued method
            head = [r for r in rows if (r["method"], r["batch"]) == needs[0] and bool(r["graphs"]) == head_graphs]
            self.amp = min(head, key=lambda r: r["step_s"])["amp"] if head else "none"
        self.slots = (len(a.seeds) if not self.batched else 1) if a.parallel == "auto" else int(a.parallel)
        if fit_slots(self.slots, self.smi, rows) < self.slots:
            self.slots = fit_slots(self.slots, self.smi, rows)
            self.log(f"GPU memory ({self.smi}) holds only {self.slots} search process(es) at once")
        left = min(s + a.calib_s, self.end) - time.time()
        alone = lookup_step(rows, head_method, head_batch, self.amp, head_graphs)
        if self.slots > 1 and alone and not a.dry_run and a.calibration is None and left > 20:
            self.calib.setdefault("slowdown", {}).update(_measure_sharing(
                needs[0], self.amp, self.graphs, self.slots, self.calib, left, self.log, self.work / "sharing.json"))
        self.slowdown = float(self.calib.get("slowdown", {}).get(str(self.slots), self.slots))
        path = ("batched+" if self.batched else "") + ("graphs" if self.graphs else "eager")
        how = ("measured" if str(self.slots) in self.calib.get("slowdown", {})
               else "assumed = processes: no gain from sharing")
        self.log(f"path: {path}, {'bf16' if self.amp == 'bf16' else 'fp32'}; {self.slots} process(es) at once, "
                 f"each step × {self.slowdown:.2f} ({how})")
        self.summary.update(path=path, amp=self.amp, graphs=self.graphs, slots=self.slots, slowdown=self.slowdown,
                            cost=asdict(a.cost))
        self.stage_done("calibrate", s, rows=len(rows))

    def queue(self) -> int:
        """4. Plan the unfinished cells into the time left, run them, stop what is still going at the end."""
        a, s = self.a, time.time()
        cells = self.matrix(["--cuda-graphs"] * self.graphs + ["--amp", "bf16"] * (self.amp == "bf16"))
        if not self.data_ok and not a.dry_run:
            cells = []
        window = a.budget - a.reserve_s - a.setup_s - a.smoke_s - a.calib_s if a.dry_run else self.end - time.time()
        estimates = estimate_cells(cells, self.calib, self.amp, self.graphs, self.batched, self.slowdown, a.cost)
        admitted, skipped = plan_queue(estimates, window, self.slots)
        if a.max_cells is not None and len(admitted) > a.max_cells:
            skipped = [(c, f"over --max-cells {a.max_cells}") for c, _ in admitted[a.max_cells:]] + skipped
            admitted = admitted[:a.max_cells]
        spent = (f"{a.setup_s:.0f}+{a.smoke_s:.0f}+{a.calib_s:.0f} s of stages" if a.dry_run
                 else f"{time.time() - self.t0:.0f} s spent")
        self.log(f"== queue (budget arithmetic: {a.budget:.0f} s budget − {a.reserve_s:.0f} s for the tar − "
                 f"{spent} = {window:.0f} s)")
        self.log(format_plan(admitted, skipped, window, self.slots))
        self.summary["plan"] = {
            "window_s": round(window, 1), "skipped": [{"cell": c.name, "why": why} for c, why in skipped],
            "admitted": [{"cell": c.name, "jobs": [{"seeds": p.job.seeds, "estimate_s": round(p.estimate),
                                                    "line": p.job.line} for p in ps]} for c, ps in admitted]}
        if a.dry_run:
            for _, ps in admitted:
                for p in ps:
                    self.log(f"would run: {p.job.line}")
            self.stage_done("queue", s, dry_run=True)
            return 0
        order = sorted((p for _, ps in admitted for p in ps), key=lambda p: p.start)
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, self.slots)))
        outcomes = run_queue(order, self.end, self.slots, self.log, env={"OMP_NUM_THREADS": threads})
        self.summary["outcomes"] = [asdict(o) for o in outcomes]
        self.stage_done("queue", s, done=sum(o.status == "done" for o in outcomes), jobs=len(outcomes))
        return 0 if all(o.status == "done" for o in outcomes) else 1

    def speed(self) -> None:
        """The README's speed figures (graph-replayed / batched step, fp32 and bf16), in the time the queue left,
        on a GPU model's first draw (or with --speed on)."""
        a, s = self.a, time.time()
        if not (a.speed == "on" or (a.speed == "auto" and self.gpu != "cpu"
                                    and not any(a.results.glob(f"gpu-*-{slug(self.gpu)}/speed.json")))):
            return
        cmd = [sys.executable, str(ROOT / "benchmarks" / "search_step.py"), "--device", "cuda", "--paths", "fast",
               "--methods", "darts-v1", "--amp", "none", "bf16", "--no-reference", "--no-activations",
               "--json", str(self.work / "speed.json"), *(["--cuda-graphs"] if self.graphs else [])]
        if '"--replicas"' in (ROOT / "benchmarks" / "search_step.py").read_text():  # issue 18's benchmark, once built
            cmd += ["--replicas", "1", "4", "16"]
        left = min(a.speed_s, self.end - time.time())
        if a.dry_run:
            self.log(f"== speed: after the queue, in the time it leaves (≤ {a.speed_s:.0f} s): {shlex.join(cmd)}")
        elif left < 30:
            self.log(f"== speed: skipped, {left:.0f} s left (a later draw measures it)")
        else:
            rc, text = _sh(cmd, left)
            self.log(text.strip())
            self.stage_done("speed", s, rc=rc)


def session(a: SessionArgs) -> int:
    """The device call (see `Session`). Returns the exit status: 0 all queued runs done, 1 not, 2 bad set-up."""
    return Session(a)()


def _measure_sharing(need: tuple[str, int], amp: str, graphs: bool, k: int, calib: dict[str, Any], timeout: float,
                     log: Callable[[str], None], tmp: Path) -> dict[str, float]:
    """{str(k): per-process step time with k processes sharing the GPU / the lone step time}, or {}."""
    method, batch = need
    alone = lookup_step(calib["rows"], method, batch, amp, graphs and method != "gdas")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "search_step.py"), "--device", "cuda", "--methods", method,
           "--paths", "fast", "--amp", amp, "--batch", str(batch), "--concurrent", str(k), "--iters", "10",
           "--warmup", "3", "--no-reference", "--no-activations", "--json", str(tmp)]
    rc, text = _sh(cmd + (["--cuda-graphs"] if graphs else []), timeout)
    log(text.strip())
    try:
        each = json.loads(tmp.read_text())["rows"][0]["median_step_s_each"]
    except (OSError, ValueError, KeyError, IndexError):
        log(f"sharing measurement gave nothing (rc {rc}); assuming no gain from {k} processes at once")
        return {}
    if alone is None:
        return {}
    return {str(k): each / alone[0]}


def _commit_info(gpu_dir: Path) -> dict[str, Any]:
    """The commit `prepare` recorded (the device's copy of the tree has no .git)."""
    try:
        return json.loads((gpu_dir / "commit.json").read_text())
    except (OSError, ValueError):
        rc, out = _sh(["git", "rev-parse", "--short", "HEAD"], 10)
        return {"commit": out.strip() if rc == 0 else "unknown", "dirty": None}


# ---------------------------------------------------------------------------------------- this machine
def carry_list() -> list[str]:
    """What the device call carries (never .gpu/session or a rebuilt .gpu/cifar10_full)."""
    return [".gpu/data", ".gpu/tools", ".gpu/commit.json", ".whl"]


def _tree_bytes(paths: Iterable[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def prepare(shared: Path, gpu_dir: Path = ROOT / ".gpu", whl_dir: Path = ROOT / ".whl", exact_pixels: bool = False,
            wheels: bool = True) -> dict[str, Any]:
    """Copy the JPEG CIFAR-10, its rebuild tool and the NB201 table into `gpu_dir`, record the commit,
    download the wheels into `whl_dir`; return the device call to make."""
    data, tools = shared / "data", shared / "tools"
    need = [data / "cifar10_jpeg.npz", data / "cifar-10-batches-py" / "batches.meta", data / "nb201" / "nb201_200ep.csv",
            tools / "cifar10_full.py"]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        raise SessionError(f"prepare needs {', '.join(missing)} (the shared data beside the repository)")
    (gpu_dir / "data" / "cifar-10-batches-py").mkdir(parents=True, exist_ok=True)
    (gpu_dir / "data" / "nb201").mkdir(parents=True, exist_ok=True)
    (gpu_dir / "tools").mkdir(parents=True, exist_ok=True)
    for src in need:
        dst = gpu_dir / src.relative_to(shared)
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dst)
    for batch in sorted((data / "cifar-10-batches-py").glob("*_batch*")):  # the exact pixels of ~10% of the images
        dst = gpu_dir / "data" / "cifar-10-batches-py" / batch.name
        if exact_pixels:
            shutil.copyfile(batch, dst)
        elif dst.exists():
            dst.unlink()
    rc, head = _sh(["git", "rev-parse", "HEAD"], 10)
    _, status = _sh(["git", "status", "--porcelain", "--untracked-files=normal"], 30)
    commit = {"commit": head.strip() if rc == 0 else "unknown", "dirty": bool(status.strip()),
              "prepared_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    (gpu_dir / "commit.json").write_text(json.dumps(commit, indent=1))
    if wheels:
        whl_dir.mkdir(exist_ok=True)
        for spec in WHEELS:
            stem = spec.split("==")[0].replace("-", "_")
            if any(whl_dir.glob(f"{stem}-*.whl")):
                continue
            rc, text = _sh([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                            "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                            "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(whl_dir), spec], 300)
            if rc != 0:
                raise SessionError(f"pip download {spec} failed: {text.strip().splitlines()[-1:]}")
    rc, listing = _sh(["git", "ls-files", "-co", "--exclude-standard"], 30)
    tree = [ROOT / n for n in listing.splitlines() if n and (ROOT / n).is_file()] if rc == 0 else []
    carry = carry_list()
    carried = [gpu_dir / "data", gpu_dir / "tools", gpu_dir / "commit.json", whl_dir]
    size = _tree_bytes(tree) + _tree_bytes(c for c in carried if c.exists())
    if size > CARRY_LIMIT:
        raise SessionError(f"the working tree and carried paths are {size / 2**20:.1f} MiB, over the call's 64 MiB")
    return {"command": "bash benchmarks/gpu_session.sh", "carry": carry, "timeout_s": 570,
            "travels_mib": round(size / 2**20, 1), "commit": commit}


TAR_MEMBER = re.compile(r"(gpu-[A-Za-z0-9._-]+)/(runs/([A-Za-z0-9._-]+/)+(args\.json|metrics\.jsonl|result\.json)"
                        r"|calibration\.json|session\.json|session\.log|speed\.json)")


def ingest(tar_path: Path, results: Path = ROOT / "results", readme: Path = ROOT / "README.md") -> str:
    """Unpack one session tar into results/<gpu-folder>/ (refusing anything unexpected, and an existing
    folder), then regenerate the README table and results/gpu-report/. Returns the folder name."""
    if not readme.is_file() or BEGIN not in readme.read_text():
        raise SessionError(f"{readme} lacks the {BEGIN} / {END} markers: nothing unpacked")
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            tops = set()
            for m in members:
                match = TAR_MEMBER.fullmatch(m.name)
                if m.isdir() and m.name.startswith("gpu-") and ".." not in m.name.split("/"):
                    continue
                if not m.isfile() or match is None or {".", ".."} & set(m.name.split("/")):
                    raise SessionError(f"{tar_path}: unexpected member {m.name!r}: nothing unpacked")
                tops.add(match.group(1))
            if len(tops) != 1:
                raise SessionError(f"{tar_path}: expected one gpu-* folder, found {sorted(tops) or 'none'}: nothing unpacked")
            folder = tops.pop()
            if (results / folder).exists():
                raise SessionError(f"{results / folder} exists already: nothing unpacked (remove it to re-ingest)")
            tmp = results / f".{folder}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for m in members:
                if m.isfile():
                    dst = tmp / Path(m.name).relative_to(folder)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
    except (tarfile.TarError, OSError) as err:
        raise SessionError(f"cannot read {tar_path}: {err}") from None
    tmp.replace(results / folder)
    update_readme(results, readme)
    return folder


def _paper(label: str) -> tuple[float, float] | None:
    from common.report import PAPER
    m = re.match(r"\s*([\d.]+)(?:±([\d.]+))?", PAPER.get(label, ""))
    return (float(m.group(1)), float(m.group(2) or 0)) if m else None


def gpu_table(results: Path) -> str:
    """Markdown: one row per (method, search data) of every NB201 run under results/gpu-*/."""
    from common.report import NB201_COLUMNS, NB201_HEADERS, PAPER, collect_runs, data_description, mean_std
    rows, groups, misses = [], {}, []
    for folder in sorted(results.glob("gpu-*")):
        if not folder.is_dir():
            continue
        try:
            commit = json.loads((folder / "session.json").read_text()).get("commit", {})
        except (OSError, ValueError):
            commit = {}
        sha = str(commit.get("commit", "?"))[:10] + ("+dirty" if commit.get("dirty") else "")
        for run in collect_runs(folder):
            if run.space == "nb201":
                groups.setdefault((run.label, data_description(run.args)), []).append((run, sha))
    if not groups:
        return "No GPU runs committed yet."
    for (label, data), group in groups.items():
        done = [r for r, _ in group if r.finished]
        cells = [mean_std([float((r.result.get("nb201") or {}).get(c) or "nan") for r in done]) for c in NB201_COLUMNS]
        n = f"{len(done)}" + (f" (+{len(group) - len(done)} unfinished)" if len(group) > len(done) else "")
        c10 = data.startswith("CIFAR-10")
        paper, ours = _paper(label) if c10 else None, [float((r.result.get("nb201") or {}).get("cifar10_test") or "nan")
                                                      for r in done]
        verdict = "— (not a reproduction)" if "NOT a paper reproduction" in data else "—"
        if paper and ours and not any(map(math.isnan, ours)) and verdict == "—":
            gap = sum(ours) / len(ours) - paper[0]
            verdict = (f"**misses by {gap:+.2f}** (> paper std {paper[1]:.2f})" if abs(gap) > paper[1]
                       else f"within paper std ({gap:+.2f})")
            if abs(gap) > paper[1]:
                misses.append(f"- **{label}** misses the paper's {PAPER[label]} (CIFAR-10 test) by {gap:+.2f} over "
                              f"{len(done)} seed(s). Recorded differences from the paper's setting: data {data}; "
                              f"{', '.join(sorted({_path(r) for r in done}))}; epochs run "
                              f"{', '.join(sorted({str(r.epochs_done) for r in done}))}. Curves: "
                              "`results/gpu-report/entropy.png`, `results/gpu-report/discrete_acc.png`.")
        minutes = [float(r.result.get("wall_time_s") or "nan") / 60 for r in done]
        def uniq(f: Callable[[Any], str], items: Sequence[Any] = done) -> str:
            return ", ".join(dict.fromkeys(f(x) for x in items)) or "—"
        rows.append([label, uniq(lambda r: str(r.args.get("recipe", "paper"))), data, n, *cells[:2],
                     PAPER.get(label, "—") if c10 else "—", verdict, *cells[2:],
                     f"{sum(minutes) / len(minutes):.{1 if sum(minutes) >= 10 * len(minutes) else 2}f}"
                     if minutes and not any(map(math.isnan, minutes)) else "—",
                     uniq(lambda r: str((r.result or {}).get("device", "?"))),
                     uniq(_path),
                     uniq(lambda x: x[1], [x for x in group if x[0].finished])])
    head = ["Method", "recipe", "search data", "n seeds", *NB201_HEADERS[:2], "paper C10 test", "vs paper",
            *NB201_HEADERS[2:], "min / search", "GPU", "path", "commit"]
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                      + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows])
    return table + ("\n\nRows that miss their paper by more than its std:\n\n" + "\n".join(misses) if misses else "")


def _path(run: Any) -> str:
    """eager / graphs / batched+graphs, fp32 / bf16, from a run's args.json."""
    return (("batched+" if len(run.args.get("seeds") or [0]) > 1 else "")
            + ("graphs" if run.args.get("cuda_graphs") else "eager") + (" bf16" if run.args.get("amp") == "bf16" else " fp32"))


BEGIN, END = "<!-- gpu-results:begin -->", "<!-- gpu-results:end -->"
SPEED_BEGIN, SPEED_END = "<!-- gpu-speed:begin -->", "<!-- gpu-speed:end -->"


def speed_table(results: Path) -> str:
    """Markdown: every row of results/gpu-*/speed.json (benchmarks/search_step.py's JSON)."""
    rows = []
    for f in sorted(results.glob("gpu-*/speed.json")):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for r in data.get("rows", []):
            if "step_s" not in r:
                continue
            search = r.get("nb201_search_min")
            rows.append([str(r.get("device", "?")), str(r.get("method")), str(r.get("path")),
                         "bf16" if r.get("amp") == "bf16" else "fp32", str(r.get("replicas", 1)), str(r.get("batch")),
                         f"{1000 * r['step_s']:.1f}", f"{search:.1f}" if isinstance(search, (int, float)) else "—",
                         f"[{f.parent.name}]({f.relative_to(results.parent).as_posix()})"])
    if not rows:
        return "Not measured yet."
    head = ["GPU", "method", "path", "precision", "S (replicas)", "batch", "ms / step", "50-epoch search (min)",
            "record"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def update_readme(results: Path = ROOT / "results", readme: Path = ROOT / "README.md") -> None:
    """Rewrite the README block between the gpu-results markers; results/gpu-report/ gets results.md + plots."""
    from common.report import collect_runs, make_plots, render
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SessionError(f"{readme} lacks the {BEGIN} / {END} markers")
    runs = [r for folder in sorted(results.glob("gpu-*")) if folder.is_dir() for r in collect_runs(folder)]
    block = ["NB201 200-epoch accuracies (%) of the derived cells, mean ± sample std over finished seeds; every "
             "run under `results/gpu-*/`, written by `python benchmarks/gpu_session.py ingest`.", "", gpu_table(results)]
    if runs:
        report = results / "gpu-report"
        notes: list[str] = []
        plots = make_plots(runs, report, None, notes)
        (report / "results.md").write_text(render(runs, plots, notes))
        block += ["", "Curves (entropy, discretized accuracy) and the full report: "
                      "[`results/gpu-report/results.md`](results/gpu-report/results.md)."]
    text = _replace_block(text, BEGIN, END, "\n".join(block))
    if SPEED_BEGIN in text and SPEED_END in text:
        text = _replace_block(text, SPEED_BEGIN, SPEED_END, speed_table(results))
    readme.write_text(text)


# ---------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="this machine: .gpu/ and .whl/ for the device call; prints the call")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the folder holding data/ and tools/")
    p.add_argument("--exact-pixels", action="store_true", help="also carry the exact CIFAR-10 subset (27 MB) so the "
                   "rebuild swaps in its exact pixels (~10%% of the images)")
    p.add_argument("--no-wheels", action="store_true", help="skip the wheel download")
    p = sub.add_parser("session", help="the device call (what gpu_session.sh runs)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds this command may take in all (≤ 570)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / ".gpu" / "out")),
                   help="where the tar goes ($OUT on the device)")
    p.add_argument("--dry-run", action="store_true", help="plan and budget arithmetic only: no rebuild, no test, "
                   "no search (calibration: --calibration, else the newest committed one, else the H100 figures)")
    p.add_argument("--results", type=Path, default=ROOT / "results", help="committed runs (results/gpu-*/)")
    p.add_argument("--gpu-dir", type=Path, default=ROOT / ".gpu", help="what prepare wrote (carried)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds per cell")
    p.add_argument("--datasets", nargs="+", default=["cifar10"], help="search datasets, in queue order (full "
                   "data is carried for cifar10 only)")
    p.add_argument("--amp", default="auto", choices=("auto", "none", "bf16"), help="auto: the faster one measured")
    p.add_argument("--parallel", default="auto", help="processes at once (auto: the seeds of a cell; 1 if batched)")
    p.add_argument("--setup-s", type=float, default=60.0)
    p.add_argument("--smoke-s", type=float, default=60.0)
    p.add_argument("--calib-s", type=float, default=60.0)
    p.add_argument("--reserve-s", type=float, default=25.0, help="kept at the end for stopping runs and the tar")
    p.add_argument("--startup-s", type=float, default=Cost.startup_s, help="estimate: seconds before a search's first step")
    p.add_argument("--epoch-overhead-s", type=float, default=Cost.epoch_overhead_s,
                   help="estimate: seconds per epoch beside the steps (capture, evaluation, checkpoint)")
    p.add_argument("--safety", type=float, default=Cost.safety, help="estimate: multiplies the whole estimate")
    p.add_argument("--skip-setup", action="store_true", help="use the data already in --gpu-dir/cifar10_full")
    p.add_argument("--skip-smoke", action="store_true", help="no replay tests: run eager")
    p.add_argument("--calibration", type=Path, default=None, help="a calibration.json to use instead of measuring")
    p.add_argument("--extra", default="", help="flags appended to every search (tests: tiny configs)")
    p.add_argument("--max-cells", type=int, default=None, help="run at most this many cells")
    p.add_argument("--speed", default="auto", choices=("auto", "on", "off"), help="the README's speed figures "
                   "(search_step.py: graph-replayed step, fp32/bf16, S = 1, 4, 16 once --replicas exists); auto: on "
                   "a GPU model's first draw (no results/gpu-*-<gpu>/speed.json yet)")
    p.add_argument("--speed-s", type=float, default=90.0, help="at most this long for the speed figures")
    p = sub.add_parser("calibrate", help="(internal) time the steps; writes JSON after every figure")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--deadline", type=float, required=True, help="epoch seconds")
    p.add_argument("--need", nargs="*", default=["darts-v1:64"], help="METHOD:BATCH")
    p.add_argument("--amp", nargs="+", default=["none", "bf16"])
    p.add_argument("--graphs", action="store_true")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("ingest", help="this machine: unpack a session tar into results/, regenerate the README table")
    p.add_argument("tar", type=Path)
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p = sub.add_parser("table", help="regenerate the README table from results/gpu-*/")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ns = parser.parse_args(argv)
    for name, value in vars(ns).items():  # relative paths are the caller's, whatever the cwd of subprocesses
        if isinstance(value, Path):
            setattr(ns, name, value.resolve())
    try:
        if ns.cmd == "prepare":
            call = prepare(ns.shared, exact_pixels=ns.exact_pixels, wheels=not ns.no_wheels)
            print(f"prepared .gpu/ and .whl/ ({call['travels_mib']} MiB travel; commit {call['commit']['commit'][:10]}"
                  f"{' + uncommitted changes' if call['commit']['dirty'] else ''}). Make ONE device call:")
            print(json.dumps({k: call[k] for k in ("command", "carry", "timeout_s")}))
            print("then: python benchmarks/gpu_session.py ingest <files_at>/gpu-*.tar")
            return 0
        if ns.cmd == "session":
            if not 60 <= ns.budget <= 570:
                raise SessionError(f"--budget must be in [60, 570] s (got {ns.budget:g})")
            if ns.parallel != "auto" and not (ns.parallel.isdigit() and int(ns.parallel) >= 1):
                raise SessionError(f"--parallel must be auto or a positive integer (got {ns.parallel})")
            if ns.calibration is not None and not ns.calibration.is_file():
                raise SessionError(f"--calibration {ns.calibration}: no such file")
            if ns.out.exists() and not ns.out.is_dir():
                raise SessionError(f"--out {ns.out} is a file, not a folder")
            if not ns.seeds or min(ns.seeds) < 0:
                raise SessionError(f"--seeds must be non-negative integers (got {ns.seeds})")
            return session(SessionArgs(
                budget=ns.budget, out=ns.out, dry_run=ns.dry_run, results=ns.results, gpu_dir=ns.gpu_dir,
                seeds=tuple(ns.seeds), datasets=tuple(ns.datasets), amp=ns.amp, parallel=ns.parallel,
                setup_s=ns.setup_s, smoke_s=ns.smoke_s, calib_s=ns.calib_s, reserve_s=ns.reserve_s,
                cost=Cost(ns.startup_s, ns.epoch_overhead_s, ns.safety), skip_setup=ns.skip_setup,
                skip_smoke=ns.skip_smoke, calibration=ns.calibration, extra=tuple(shlex.split(ns.extra)),
                max_cells=ns.max_cells, speed=ns.speed, speed_s=ns.speed_s))
        if ns.cmd == "calibrate":
            if not all(re.fullmatch(r"[a-z0-9-]+:\d+", n) for n in ns.need):
                raise SessionError(f"--need takes METHOD:BATCH items (got {' '.join(ns.need)})")
            needs = [(n.split(":")[0], int(n.split(":")[1])) for n in ns.need]
            calibrate(needs, ns.amp, ns.graphs, ns.replicas, ns.deadline, ns.json, ns.device)
            return 0
        if ns.cmd == "ingest":
            folder = ingest(ns.tar, ns.results, ns.readme)
            table = gpu_table(ns.results)
            if "Rows that miss" in table:  # for the closing note of the issue
                print(table[table.index("Rows that miss"):] + "\n")
            print(f"unpacked into {ns.results / folder}; README table and results/gpu-report/ regenerated. Commit:")
            rel = [os.path.relpath(p) for p in (ns.results / folder, ns.results / "gpu-report", ns.readme) if p.exists()]
            print(f"git add {' '.join(map(shlex.quote, rel))} && "
                  f"git commit -m 'GPU session {folder}: NB201 runs and calibration (benchmarks/gpu_session.py)'")
            return 0
        update_readme(ns.results, ns.readme)
        print(f"regenerated the GPU results table in {ns.readme}")
        return 0
    except SessionError as err:
        print(f"gpu_session: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
