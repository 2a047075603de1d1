"""Time-boxed GPU runs (preemptible instances, time-limited cluster jobs) that resume across calls:
prepare → one call → ingest → commit; the guide is docs/time-boxed-gpu.md.

    python benchmarks/gpu_session.py prepare            # here: .gpu/ (data, tool, commit, carried checkpoints)
                                                        # + .whl/; prints the 64 MiB budget and the call
    bash benchmarks/gpu_session.sh                      # there, as ONE call of ≤ 570 s (files back in $OUT)
    bash benchmarks/gpu_session.sh --dry-run            # anywhere: the plan and its budget arithmetic, no search
    python benchmarks/gpu_session.py ingest OUT.tar     # here: results/, .gpu-carry/ (its checkpoint files), table
    python benchmarks/gpu_session.py table              # regenerate the results table only
    python benchmarks/gpu_session.py rehearse           # CPU: two tiny calls, the first cut mid-search, vs one run

`session` (what gpu_session.sh runs) works in stages under a wall-clock budget it checks itself
(`--budget`, default 540 s of the call's 570): set-up (≤ 60 s: full CIFAR-10 from the carried JPEG copy,
versions), smoke (≤ 60 s: the GPU checks in SMOKE; a failing or skipping check is named and the rest runs
eager), calibrate (≤ 60 s: the step the queue runs, for each queued method: `--seeds` batched, CUDA
graphs, fp32 or bf16; from a GPU model's second call on, its committed figures instead), on a GPU model's
first call a 2-epoch timing search (per-epoch overhead, start-up) and the speed figures, then the queue:
carried runs resumed first, then the next unfinished NB201 cells in `ORDER`, 3 seeds each, a cell
started when its first epoch fits the time left; at the deadline every search stops at its last finished
epoch (SIGTERM = Ctrl-C for a search). ONE tar comes back under $OUT (every run's args.json, metrics.jsonl,
result.json; calibration.json, session.json, session.log, carry.json), even when a stage fails, and one
`<tar>.ckpt-<space>-<label>-<dataset>-seed<k>.tar` per unfinished seed (its args.json, checkpoint.pt and
sha256), at most 7, for `ingest` to keep in .gpu-carry/ and `prepare` to carry into the next call.

Estimate of one search process (every term printed with each plan):
    safety × (startup + epochs left × (steps/epoch × step × slowdown + per-epoch overhead)),
step from the calibration (a smaller batch's figure scaled up linearly), startup and overhead from the
2-epoch timing (assumed 45 s and 2 s until measured), slowdown = per-process step with `--parallel`
processes sharing the GPU / alone (measured; else assumed = the number of processes).

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
#: The queue order (run_all.sh labels): the papers' own methods first. `<label>-authors` ranks as `<label>`; then the paper-recipe
#: rows (`<label>-paper`), then every other NB201 label of the matrix, each group in run_all.sh's order.
ORDER = ("sa-darts", "sp-darts", "edd-darts", "darts-v1", "sac-darts", "gdas", "darts-v1-aer", "gdas-aer",
         "pcd", "ets-gdas", "beta-darts", "darts-v2", "darts-v2-aer")
RUN_FILES = ("args.json", "metrics.jsonl", "result.json")
SESSION_FILES = ("calibration.json", "session.json", "session.log", "carry.json")  # + speed.json on a first call
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
WHEELS = ("nas-bench-201==2.1",)  # the GPU image lacks it; pure Python, no deps
TRAIN_HALF = 25000  # images per half of the CIFAR search split
CARRY_LIMIT = 64 * 2**20  # what one call may carry in: tree + data + wheels + checkpoints
FILE_LIMIT = 16 * 2**20   # what one file that comes back may weigh
FILES_BACK = 8            # files that may come back: the tar + one per unfinished seed's checkpoint
MAX_CARRIED_SEEDS = 3     # checkpoints (~13.5 MB each at C=16) that fit the next call's 64 MiB with tree + data
CARRY_DIR = ROOT / ".gpu-carry"  # ignored: unfinished runs' checkpoints between calls (ingest → prepare)
CKPT_FILES = ("args.json", "checkpoint.pt", "checkpoint.pt.sha256")  # what resumes a run (metrics: from it)
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
    import importlib

    from common.config import SearchConfig
    if script not in _CONFIG_CACHE:
        if not (ROOT / script).is_file():
            raise SessionError(f"run_all.sh names {script}, which is not in {ROOT}")
        # under its own name: authors/<m>.py extends the config of `import <m>_darts`, this very module
        module = importlib.import_module(Path(script).with_suffix("").as_posix().replace("/", "."))
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
    """A job with its estimate (`first`: until its first epoch's checkpoint), and (once planned) its slot,
    start and end in seconds from queue start."""

    job: Job
    estimate: float
    note: str = ""
    slot: int = -1
    start: float = 0.0
    end: float = 0.0
    first: float = math.nan  # NaN: the whole estimate (the job is not worth starting unless it finishes)
    epochs_left: int = 0
    resumed_at: int = 0  # epochs its carried checkpoints hold

    @property
    def first_epoch(self) -> float:
        return self.estimate if math.isnan(self.first) else self.first


def plan_queue(cells: Sequence[tuple[Cell, list[Planned]]], window: float, slots: int,
               max_cut_seeds: int = 3) -> tuple[list[tuple[Cell, list[Planned]]], list[tuple[Cell, str]]]:
    """Greedy plan: each cell in order goes on the earliest-free slots if every one of its jobs finishes its
    FIRST epoch within `window` seconds (a job still going at the end stops at its last finished epoch and
    its checkpoints come back for the next slot), and if the seeds left in flight at the end stay within
    `max_cut_seeds` (the checkpoints that can come back); else it is skipped (a later, smaller cell may
    still fit). Returns (admitted, skipped+reason)."""
    free = [0.0] * max(1, slots)
    admitted, skipped, cut_seeds = [], [], 0
    for cell, planned in cells:
        if any(not math.isfinite(p.estimate) for p in planned):
            skipped.append((cell, "no calibration figure for its step: "
                                  + "; ".join(dict.fromkeys(p.note for p in planned))))
            continue
        trial = list(free)
        placed = []
        for p in planned:
            slot = min(range(len(trial)), key=trial.__getitem__)
            placed.append((slot, trial[slot], trial[slot] + p.estimate, trial[slot] + p.first_epoch))
            trial[slot] += p.estimate
        first_end = max(f for *_, f in placed)
        cut = sum(len(p.job.seeds) for p, (_, _, e, _) in zip(planned, placed) if e > window)
        if first_end > window:
            skipped.append((cell, f"its first epoch ends at {first_end:.0f} s of a {window:.0f} s window; per "
                                  f"process {planned[0].note} = {planned[0].estimate:.0f} s"))
        elif cut_seeds + cut > max_cut_seeds:
            skipped.append((cell, f"it would leave {cut_seeds + cut} seeds in flight at the end, over the "
                                  f"{max_cut_seeds} whose checkpoints can come back"))
        else:
            for p, (slot, st, e, _) in zip(planned, placed):
                p.slot, p.start, p.end = slot, st, e
            free = trial
            cut_seeds += cut
            admitted.append((cell, planned))
    return admitted, skipped


def estimate_cells(cells: Sequence[Cell], calib: dict[str, Any], amp: str, graphs: bool, batched: bool,
                   slowdown: float, cost: Cost, configs: Callable[[Job], dict[str, Any]] = resolve_config,
                   resumed: dict[tuple[str, str, str, int], int] | None = None) -> list[tuple[Cell, list[Planned]]]:
    """Each cell's jobs with their estimates from `calib` rows (NaN + a note where no figure applies);
    `resumed`: (space, label, dataset, seed) → epochs its carried checkpoint holds (only the rest is run)."""
    out = []
    for cell in cells:
        planned = []
        for job in cell.jobs:
            cfg = configs(job)
            method, batch, epochs = bench_method(cfg), int(cfg["batch_size"]), int(cfg["epochs"])
            done = min((resumed or {}).get((job.space, job.label, job.dataset, s), 0) for s in job.seeds)
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
            est = job_estimate(epochs - done, steps, step_s, slowdown, cost)
            note = (f"{epochs - done}{f' of {epochs}' if done else ''} ep × ({steps} steps × {1000 * step_s:.1f} ms "
                    f"[{method} b={batch}, {how}] × {slowdown:.2f} + {cost.epoch_overhead_s:g} s) + "
                    f"{cost.startup_s:g} s, × {cost.safety:g}")
            planned.append(Planned(job, est, note, first=job_estimate(1, steps, step_s, slowdown, cost),
                                   epochs_left=epochs - done, resumed_at=done))
        out.append((cell, planned))
    return out


def format_plan(admitted: Sequence[tuple[Cell, list[Planned]]], skipped: Sequence[tuple[Cell, str]],
                window: float, slots: int) -> str:
    lines = [f"queue window {window:.0f} s, {slots} process(es) at once"]
    for cell, planned in admitted:
        lines.append(f"  RUN  {cell.name} ({cell.done} seed(s) already finished)")
        for p in planned:
            cut = p.end > window
            lines.append(f"       seeds {','.join(map(str, p.job.seeds))}"
                         f"{f' (resumed at epoch {p.resumed_at})' if p.resumed_at else ''}: slot {p.slot}, "
                         f"{p.start:.0f} → {p.end:.0f} s = {p.note} = {p.estimate:.0f} s"
                         + (f"; stopped at the end after ~{_epochs_by(p, window)} more epoch(s), its checkpoints "
                            "come back" if cut else ""))
    for cell, why in skipped:
        lines.append(f"  SKIP {cell.name} ({cell.done} finished): {why}")
    if not admitted:
        lines.append("  nothing fits this window")
    return "\n".join(lines)


def _epochs_by(p: Planned, window: float) -> int:
    """Epochs a planned job finishes by `window` (its epochs spread evenly after the first's start-up)."""
    if not p.epochs_left or p.estimate <= p.first_epoch:
        return p.epochs_left
    per = (p.estimate - p.first_epoch) / max(1, p.epochs_left - 1)
    return max(0, min(p.epochs_left, 1 + int((window - p.start - p.first_epoch) // per)))


# ---------------------------------------------------------------------------------------- calibration
def h100_fallback(results: Path, gpu: str = "") -> dict[str, Any]:
    """A calibration for planning without measuring: the newest committed calibration.json of this GPU model
    (results/gpu-*-<gpu>/), else of any, else the eager H100 figures in results/h100-partial/bench_gpu.json."""
    mine = sorted(results.glob(f"gpu-*-{slug(gpu)}/calibration.json")) if gpu else []
    mine = mine or sorted(results.glob("gpu-*/calibration.json"))
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


def newest_calibration(results: Path, gpu: str) -> dict[str, Any] | None:
    """The newest committed calibration.json of this GPU model (results/gpu-*-<gpu>/), or None."""
    for path in sorted(results.glob(f"gpu-*-{slug(gpu)}/calibration.json"), reverse=True):
        try:
            return {**json.loads(path.read_text()), "source": str(path)}
        except (OSError, ValueError):
            continue
    return None


def committed_calibration(results: Path, gpu: str, graphs: bool, replicas: int,
                          needs: Sequence[tuple[str, int]]) -> dict[str, Any] | None:
    """The newest committed calibration of this GPU model measured on the path this call runs (graphs or
    not, `replicas` seeds batched) with a figure for every needed step and a measured epoch timing; None
    when there is none (then this call measures)."""
    for path in sorted(results.glob(f"gpu-*-{slug(gpu)}/calibration.json"), reverse=True):
        try:
            calib = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows = calib.get("rows", [])
        if calib.get("epoch_timing") and all(lookup_step(rows, m, b, amp, graphs and m != "gdas", replicas)
                                             for m, b in needs for amp in {r.get("amp") for r in rows} or {"none"}):
            return {**calib, "source": str(path)}
    return None


def calibrate(needs: Sequence[tuple[str, int]], amps: Sequence[str], graphs: bool, replicas: int,
              deadline: float, out: Path, device: str = "cuda", iters: int = 10, warmup: int = 3, C: int = 16,
              N: int = 5) -> list[dict[str, Any]]:
    """Time the step the queue will run for each (method, batch) × amp: `replicas` > 1 seeds batched as
    `--seeds` runs them (search_step.make_replica_step), else the single run's step (make_step); graph-
    replayed where `graphs` (GDAS stays eager). `out` is rewritten after every figure, so a stage cut short
    keeps what it measured."""
    import torch
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from search_step import make_replica_step, make_step, time_step
    dev = torch.device(device)
    rows: list[dict[str, Any]] = []
    for method, batch in needs:
        for amp in amps:
            if time.time() > deadline:
                break
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            torch.manual_seed(0)
            captured = graphs and method != "gdas"
            if replicas > 1:
                step = make_replica_step(method, "nb201", C, N, batch, dev, amp, replicas, captured)
            else:
                step, _ = make_step(method, "nb201", C, N, batch, dev, True, amp, False, captured)
            step_s = sorted(time_step(step, dev, warmup, iters))[iters // 2]
            rows.append({"method": method, "batch": batch, "amp": amp, "graphs": captured, "replicas": replicas,
                         "step_s": step_s,
                         "peak_mem_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None})
            out.write_text(json.dumps({"rows": rows}, indent=1))
            print(f"calibrate {method} b={batch} {amp} graphs={captured} S={replicas}: "
                  f"{1000 * step_s:.1f} ms/step", flush=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))
    return rows


def epoch_timing(records: Sequence[dict[str, Any]], process_s: float, steps_per_epoch: int,
                 step_s: float) -> dict[str, float]:
    """The estimate's two non-step terms from a short real search: per-epoch overhead = mean epoch time −
    steps × step (eager warm-up steps, graph capture, the discretized-net evaluation, the checkpoint), and
    start-up = the process's wall time − its epochs (interpreter, data to the device, NB201 table)."""
    times = [float(r["time"]) for r in records]
    if not times:
        raise SessionError("the timing search wrote no epoch record")
    return {"epoch_overhead_s": max(0.0, sum(times) / len(times) - steps_per_epoch * step_s),
            "startup_s": max(0.0, process_s - sum(times)), "epoch_times_s": times,
            "steps_per_epoch": steps_per_epoch, "step_s": step_s}


# ---------------------------------------------------------------------------------------- the queue
@dataclass
class Outcome:
    label: str
    dataset: str
    seeds: tuple[int, ...]
    status: str  # done | failed (rc N) | stopped at deadline | not started: ...
    elapsed_s: float
    estimate_s: float


def run_queue(planned: Sequence[Planned], deadline: float, slots: int, log: Callable[[str], None],
              cwd: Path = ROOT, grace_s: float = 10.0, env: dict[str, str] | None = None,
              cut: Callable[[], bool] | None = None) -> list[Outcome]:
    """Run the planned jobs in order, `slots` at a time; a job whose first epoch no longer fits the time
    left is not started; at `deadline` (or once `cut()` says so: the rehearsal's mid-search deadline) the
    running ones get SIGTERM, which a search takes as Ctrl-C (its last finished epoch's checkpoint kept),
    then SIGKILL after `grace_s`."""
    pending, running, outcomes = list(planned), [], []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    while pending or running:
        if cut is not None and running and cut():
            deadline = time.time()
        while pending and len(running) < slots:
            p = pending.pop(0)
            if time.time() + p.first_epoch > deadline:
                outcomes.append(Outcome(p.job.label, p.job.dataset, p.job.seeds,
                                        f"not started: needs {p.first_epoch:.0f} s for its first epoch, "
                                        f"{deadline - time.time():.0f} s left", 0.0, p.estimate))
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
                outcomes.append(Outcome(p.job.label, p.job.dataset, p.job.seeds, "stopped at deadline",
                                        time.time() - t0, p.estimate))
                done = [_epochs_done(cwd / p.job.run_dir(k)) for k in p.job.seeds]
                log(f"stopped at deadline {p.job.label}/{p.job.dataset} seeds {p.job.seeds} (rc {proc.returncode}): "
                    f"epochs kept in their checkpoints {done}")
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


def _epochs_done(run: Path) -> int:
    """Epochs a run directory's metrics.jsonl records (written after each epoch's checkpoint)."""
    try:
        return sum(1 for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip())
    except OSError:
        return 0


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


# ---------------------------------------------------------------------------------------- carry-over
def _with_seeds(job: Job, seeds: tuple[int, ...]) -> Job:
    """The same matrix line for a subset of its `--seeds`."""
    if seeds == job.seeds:
        return job
    tokens = shlex.split(job.line)
    at = tokens.index("--seeds")
    end = next((i for i in range(at + 1, len(tokens)) if tokens[i].startswith("--")), len(tokens))
    tokens[at + 1:end] = map(str, seeds)
    return Job(shlex.join(tokens), job.script, job.space, job.label, job.dataset, seeds, job.out, job.key)


def run_rel(space: str, label: str, dataset: str, seed: int) -> Path:
    """A run's place under a runs folder (run_all.sh's layout)."""
    return Path(space) / label / dataset / f"seed{seed}"


def carried_runs(carry: Path) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """(space, label, dataset, seed) → its carry.json (+ "dir") for every complete carried run under `carry`."""
    found = {}
    for manifest in sorted(carry.glob("*/*/*/seed*/carry.json")) if carry.is_dir() else []:
        run = manifest.parent
        try:
            info = json.loads(manifest.read_text())
            seed = int(_SEED_DIR.fullmatch(run.name).group(1))  # type: ignore[union-attr]
        except (OSError, ValueError, AttributeError):
            continue
        if all((run / n).is_file() for n in CKPT_FILES):
            found[(run.parts[-4], run.parts[-3], run.parts[-2], seed)] = {**info, "dir": run}
    return found


def resume_carried(cells: Sequence[Cell], carry: Path, runs_dir: Path, committed: dict, log: Callable[[str], None],
                   graphs_ok: bool = True) -> tuple[list[Cell], dict[tuple[str, str, str, int], int]]:
    """Put the carried checkpoints of the cells' seeds into `runs_dir` (their search lines `--resume` them),
    split each batched line into its seeds resumed at one epoch with one precision and graph setting (a
    checkpoint resumes only with the `--amp` and `--cuda-graphs` it was made with: the line says them) and
    its fresh ones, and order the cells with resumed seeds first. A checkpoint made with CUDA graphs waits,
    carried, while this call runs eager (`graphs_ok` False). A seed that reached an epoch in a committed
    session but whose checkpoint is not here (a new machine, nothing carried) starts over, and the log says
    so. Returns (cells, resumed: (space, label, dataset, seed) → epochs its checkpoint holds)."""
    have = carried_runs(carry)
    resumed: dict[tuple[str, str, str, int], int] = {}
    out: list[tuple[bool, int, Cell]] = []
    for i, cell in enumerate(cells):
        jobs = []
        for job in cell.jobs:
            groups: dict[tuple[int, str, bool], list[int]] = {}
            for seed in job.seeds:
                key = (job.space, job.label, job.dataset, seed)
                info = have.get(key)
                args: dict[str, Any] = {}
                if info is not None:
                    args = json.loads((info["dir"] / "args.json").read_text())
                    if method_key([str(a) for a in args.get("argv", [])]) != job.key:
                        log(f"carried {'/'.join(map(str, key))} was searched with other method flags than today's "
                            "matrix line: not resumed")
                        info = None
                    elif args.get("cuda_graphs") and not graphs_ok:
                        log(f"WAIT {cell.name} seed {seed}: its checkpoint (epoch {info['epoch']}) resumes only with "
                            "--cuda-graphs, which this call does not run; it stays carried for a call that does")
                        continue
                if info is None:
                    reached = [(_epochs_done(run), run) for k, fin, run in committed.get(key, []) if k == job.key
                               and not fin]
                    if reached and max(reached)[0] > 0:
                        epochs, run = max(reached)
                        log(f"RESTART {cell.name} seed {seed}: epoch {epochs} was reached in {run.parts[-6]}, but "
                            f"its checkpoint is not here (no {carry.name}/ entry: a new machine, or `prepare` did "
                            "not carry it): starting over from epoch 0")
                    groups.setdefault((0, "", False), []).append(seed)
                    continue
                dst = runs_dir / run_rel(*key)
                dst.mkdir(parents=True, exist_ok=True)
                for name in CKPT_FILES:
                    shutil.copyfile(info["dir"] / name, dst / name)
                resumed[key] = int(info["epoch"])
                groups.setdefault((int(info["epoch"]), str(args.get("amp") or "none"), bool(args.get("cuda_graphs"))),
                                  []).append(seed)
                log(f"RESUME {cell.name} seed {seed} at epoch {info['epoch']} (checkpoint of {info.get('session')}, "
                    f"commit {str(info.get('commit', '?'))[:10]})")
            for epoch, amp, graphs in sorted(groups, reverse=True):
                part = _with_seeds(job, tuple(groups[epoch, amp, graphs])) if len(job.seeds) > 1 else job
                if epoch:  # the checkpoint's own precision and graph setting (appended: the last flag wins)
                    flags = ["--amp", amp, "--cuda-graphs" if graphs else "--no-cuda-graphs"]
                    part = Job(f"{part.line} {shlex.join(flags)}", part.script, part.space, part.label, part.dataset,
                               part.seeds, part.out, part.key)
                jobs.append(part)
        out.append((any(k[1:3] == (cell.label, cell.dataset) for k in resumed), i,
                    Cell(cell.label, cell.dataset, jobs, cell.done)))
    return [c for _, _, c in sorted(out, key=lambda t: (not t[0], t[1])) if c.jobs], resumed


def pack_checkpoints(out: Path, folder: str, runs_dir: Path, log: Callable[[str], None],
                     max_files: int = FILES_BACK - 1, limit: int = FILE_LIMIT) -> list[dict[str, Any]]:
    """One tar per unfinished run (a checkpoint.pt and no result.json) under `runs_dir`:
    `<folder>.ckpt-<space>-<label>-<dataset>-seed<k>.tar` holding `runs/<rel>/` args.json, checkpoint.pt and
    its sha256, at most `max_files` of them, each under `limit` bytes. Returns their carry entries."""
    import torch
    entries = []
    for ckpt in sorted(runs_dir.glob("*/*/*/seed*/checkpoint.pt")) if runs_dir.is_dir() else []:
        run = ckpt.parent
        rel = run.relative_to(runs_dir)
        if (run / "result.json").exists() or not all((run / n).is_file() for n in CKPT_FILES):
            continue
        name = f"{folder}.ckpt-{'-'.join(rel.parts)}.tar"
        size = sum((run / n).stat().st_size for n in CKPT_FILES)
        if len(entries) >= max_files or size + 10240 > limit:
            log(f"checkpoint of {rel} NOT returned ({size / 2**20:.1f} MiB; {len(entries)} returned already): "
                "the next call starts it over")
            continue
        epoch = int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"])
        tmp = out / (name + ".tmp")
        with tarfile.open(tmp, "w") as tar:
            for n in CKPT_FILES:
                tar.add(run / n, arcname=f"runs/{rel.as_posix()}/{n}")
        tmp.replace(out / name)
        entries.append({"file": name, "run": rel.as_posix(), "epoch": epoch, "bytes": (out / name).stat().st_size})
        log(f"checkpoint of {rel} (epoch {epoch}) returned as {name} ({entries[-1]['bytes'] / 2**20:.1f} MiB)")
    return entries


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
    timing_s: float = 90.0
    timing_steps: int = 50  # batches an epoch of the timing search has at least
    cut_after_epochs: int | None = None  # the rehearsal: the deadline falls once a run has this many epochs


class Session:
    """One time-boxed call, stage by stage: set-up, smoke, calibrate (+ timing, speed), queue; one tar under
    `a.out`, with a checkpoint file per unfinished seed beside it."""

    def __init__(self, a: SessionArgs) -> None:
        self.a, self.t0 = a, time.time()
        self.end = self.t0 + a.budget - a.reserve_s  # the queue's deadline; the reserve stops runs and packs
        self.gpu, self.smi = gpu_name()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.t0))
        commit = _commit_info(a.gpu_dir)
        sha = str(commit.get("commit", ""))
        named = (sha[:10] if re.fullmatch(r"[0-9a-f]{7,40}", sha) else "nocommit") + ("-dirty" if commit.get("dirty")
                                                                                     else "")
        # the tar names the commit it ran; the GPU model stays last (results/gpu-*-<gpu>/ finds a model's calls)
        self.folder = f"{'dryrun' if a.dry_run else 'gpu'}-{stamp}-{named}-{slug(self.gpu)}"
        self.work = a.gpu_dir / "session"
        if self.work.exists():
            shutil.rmtree(self.work)
        self.runs_dir, self.full = self.work / "runs", a.gpu_dir / "cifar10_full"
        self.nb201 = a.gpu_dir / "data" / "nb201" / "nb201_200ep.csv"
        self.log = Log(self.work / "session.log")
        self.summary: dict[str, Any] = {"folder": self.folder, "gpu": self.gpu, "nvidia_smi": self.smi,
                                        "budget_s": a.budget, "dry_run": a.dry_run, "stages": {},
                                        "commit": commit}
        self.calib: dict[str, Any] = {"rows": []}
        self.tar_path = a.out / f"{self.folder}.tar"
        self.data_ok = self.graphs = self.batched = False
        self.amp, self.slots, self.slowdown = "none", 1, 1.0
        self.committed: dict = {}
        self.cost = a.cost
        self.carry = a.gpu_dir / "carry"  # prepare's copy of the unfinished runs' checkpoints
        self.resumed: dict[tuple[str, str, str, int], int] = {}
        self.returned: list[dict[str, Any]] = []
        self.log(f"commit {self.summary['commit'].get('commit', '?')}"
                 f"{' + uncommitted changes' if self.summary['commit'].get('dirty') else ''}")

    def __call__(self) -> int:
        """Every stage in order; the tar is written whatever happens (with the traceback in its log)."""
        try:
            self.setup()
            self.smoke()
            self.calibrate()
            if not self.a.dry_run:
                self.write_tar()  # the calibration survives even if the queue overruns the call
            self.speed()  # a GPU model's first call: its speed figures before the queue
            return self.queue()
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
            names = self.write_tar(final=not self.a.dry_run)
            self.log(f"tar: {self.tar_path} ({sum(n.endswith('/result.json') for n in names)} finished run(s), "
                     f"{sum(n.endswith('/args.json') for n in names)} run(s) in all, {time.time() - self.t0:.0f} s)")
            self.write_tar()  # again, with that last line in session.log

    def stage_done(self, name: str, started: float, **info: Any) -> None:
        self.summary["stages"][name] = {"seconds": round(time.time() - started, 1), **info}
        self.log(f"== {name}: {time.time() - started:.1f} s (total {time.time() - self.t0:.0f} of "
                 f"{self.a.budget:.0f} s)")

    def write_tar(self, final: bool = False) -> list[str]:
        """The tar; `final`: first every unfinished run's checkpoint as its own file beside it (carry.json
        lists them, with the commit)."""
        self.summary["wall_s"] = round(time.time() - self.t0, 1)
        self.a.out.mkdir(parents=True, exist_ok=True)
        if final and not self.returned:
            self.returned = pack_checkpoints(self.a.out, self.folder, self.runs_dir, self.log)
            (self.work / "carry.json").write_text(json.dumps(
                {"commit": self.summary["commit"], "session": self.folder, "checkpoints": self.returned}, indent=1))
        (self.work / "calibration.json").write_text(json.dumps(self.calib, indent=1))
        (self.work / "session.json").write_text(json.dumps(self.summary, indent=1, default=str))
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
            self.batched = bool(jobs) and all(takes_flag(j.script, "--seeds") for j in jobs)
            self.log(f"matrix: {len(jobs)} NB201 lines for {', '.join(a.datasets)}, seeds {a.seeds}")
        return unfinished_cells(jobs, self.committed, a.datasets)

    def calibrate(self) -> None:
        """3. The path (batched, graphs, fp32/bf16), each queued method's step as the queue runs it, the cost
        of sharing the GPU, and the per-epoch overhead and start-up from a 2-epoch real search; from a GPU
        model's second call on, its committed figures (results/gpu-*-<gpu>/calibration.json) instead."""
        a, s = self.a, time.time()
        self.committed = committed_runs(a.results)
        cells = self.matrix(probe=True)
        self.log(f"{len(cells)} unfinished cell(s): {', '.join(c.name for c in cells) or 'none'}")
        needs = list(dict.fromkeys([*((bench_method(cfg), int(cfg["batch_size"]))
                                      for cfg in (resolve_config(j) for c in cells for j in c.jobs)),
                                    ("darts-v1", 64)]))  # the README's reference step, even with nothing queued
        replicas = len(a.seeds) if self.batched else 1
        mine = None if a.calibration or a.dry_run else committed_calibration(a.results, self.gpu, self.graphs,
                                                                               replicas, needs)
        if a.calibration is not None or a.dry_run:
            self.calib = json.loads(a.calibration.read_text()) if a.calibration else h100_fallback(a.results, self.gpu)
            self.calib.setdefault("source", str(a.calibration))
            self.log(f"== calibrate: using {self.calib['source']} (not measured)")
        elif mine is not None:
            self.calib = mine
            self.log(f"== calibrate: using {self.gpu}'s committed figures, {mine['source']} (not measured again)")
        else:  # measure what no committed calibration of this GPU model has (a cut-off first call: the rest)
            prior = newest_calibration(a.results, self.gpu)
            amps = ["none", "bf16"] if a.amp == "auto" else [a.amp]
            have = prior.get("rows", []) if prior else []
            missing = [(m, b) for m, b in needs if not all(lookup_step(have, m, b, amp, self.graphs and m != "gdas",
                                                                       replicas) for amp in amps)]
            part = self.work / "calibration.part.json"
            rc, text = _sh([sys.executable, str(Path(__file__).resolve()), "calibrate", "--json", str(part),
                            "--deadline", str(min(time.time() + a.calib_s, self.end)), "--amp", *amps,
                            "--replicas", str(replicas),
                            *(["--graphs"] if self.graphs else []), "--need", *[f"{m}:{b}" for m, b in missing]],
                           min(a.calib_s + 30, self.end - time.time())) if missing else (0, "")
            self.log(text.strip())
            self.calib = json.loads(part.read_text()) if part.is_file() else {"rows": []}
            self.calib["source"] = f"measured on {self.gpu} (rc {rc})"
            if prior:
                self.calib["rows"] = [*self.calib["rows"], *have]
                self.calib["source"] += f" + {prior['source']}"
                if prior.get("epoch_timing") and "epoch_timing" not in self.calib:
                    self.calib["epoch_timing"] = prior["epoch_timing"]
                self.log(f"with {self.gpu}'s committed figures of {prior['source']}: measured only "
                         f"{', '.join(f'{m}:{b}' for m, b in missing) or 'nothing'}")
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
        if self.slots > 1 and alone and not a.dry_run and a.calibration is None and mine is None and left > 20:
            self.calib.setdefault("slowdown", {}).update(_measure_sharing(
                needs[0], self.amp, self.graphs, self.slots, self.calib, left, self.log, self.work / "sharing.json"))
        self.slowdown = float(self.calib.get("slowdown", {}).get(str(self.slots), self.slots))
        path = ("batched+" if self.batched else "") + ("graphs" if self.graphs else "eager")
        how = ("measured" if str(self.slots) in self.calib.get("slowdown", {})
               else "assumed = processes: no gain from sharing")
        self.log(f"path: {path}, {'bf16' if self.amp == 'bf16' else 'fp32'}; {self.slots} process(es) at once, "
                 f"each step × {self.slowdown:.2f} ({how})")
        self.stage_done("calibrate", s, rows=len(rows))
        if cells and "epoch_timing" not in self.calib and not a.dry_run and a.calibration is None and self.data_ok:
            self.epoch_timing(cells[0].jobs[0], rows)
        timing = self.calib.get("epoch_timing") or {}
        if timing.get("epoch_overhead_s") is not None:
            self.cost = Cost(float(timing["startup_s"]), float(timing["epoch_overhead_s"]), a.cost.safety)
        self.log(f"estimate terms: start-up {self.cost.startup_s:.1f} s, per-epoch overhead "
                 f"{self.cost.epoch_overhead_s:.1f} s ({'measured: ' + str(timing.get('source')) if timing else 'assumed'})"
                 f", safety × {self.cost.safety:g}")
        self.summary.update(path=path, amp=self.amp, graphs=self.graphs, slots=self.slots, slowdown=self.slowdown,
                            cost=asdict(self.cost))

    def epoch_timing(self, job: Job, rows: Sequence[dict[str, Any]]) -> None:
        """The estimate's start-up and per-epoch overhead, measured: the head job's search line as the queue
        runs it, for 2 epochs on the first max(50 batches, --eval-images) images of each half (so the
        evaluation is the full one), in a scratch folder."""
        a, s = self.a, time.time()
        cfg = resolve_config(job)
        batch = int(cfg["batch_size"])
        method = bench_method(cfg)
        found = lookup_step(rows, method, batch, self.amp, self.graphs and method != "gdas",
                            len(job.seeds) if self.batched else 1)
        left = min(a.timing_s, self.end - time.time() - 150)  # the queue keeps ≥ 120 s after the speed stage
        if found is None or left < 30:
            self.log(f"== epoch timing: skipped ({'no step figure' if found is None else f'{left:.0f} s left'}); "
                     "the assumed terms stand")
            return
        scratch = self.work / "timing"
        limit = max(a.timing_steps * batch, int(cfg.get("eval_images") or 0))  # the full evaluation kept
        steps = limit // batch
        flags = ["--epochs", "2", "--limit-train", str(limit), "--out", str(scratch / "seed{seed}"
                 if "{seed}" in str(job.out) else scratch / "run"), "--no-resume",
                 *(["--cuda-graphs"] if self.graphs else []), *(["--amp", "bf16"] if self.amp == "bf16" else [])]
        line = job.line + " " + shlex.join(flags)
        t0 = time.time()
        rc, text = _sh(line, left)
        process_s = time.time() - t0
        runs = sorted(scratch.rglob("metrics.jsonl"))
        if rc != 0 or not runs:
            self.log(f"== epoch timing failed (rc {rc}): the assumed terms stand\n" + "\n".join(text.splitlines()[-10:]))
            return
        records = [json.loads(ln) for ln in runs[0].read_text().splitlines() if ln.strip()]
        timing = epoch_timing(records, process_s, steps, found[0])
        timing["source"] = f"2-epoch {job.label} search on {self.gpu}, {time.strftime('%Y-%m-%d', time.gmtime())}"
        self.calib["epoch_timing"] = timing
        self.log(f"epoch timing: epochs {', '.join(f'{t:.1f}' for t in timing['epoch_times_s'])} s for {steps} steps of "
                 f"{1000 * found[0]:.1f} ms → overhead {timing['epoch_overhead_s']:.1f} s per epoch; start-up "
                 f"{timing['startup_s']:.1f} s")
        shutil.rmtree(scratch, ignore_errors=True)
        self.stage_done("epoch timing", s, rc=rc)

    def queue(self) -> int:
        """4. Resume the carried runs, plan the unfinished cells into the time left (a cell starts when its
        first epoch fits), run them, stop what is still going at the end (checkpoints kept)."""
        a, s = self.a, time.time()
        cells = self.matrix(["--cuda-graphs"] * self.graphs + ["--amp", "bf16"] * (self.amp == "bf16"))
        if not self.data_ok and not a.dry_run:
            cells = []
        cells, self.resumed = resume_carried(cells, self.carry, self.runs_dir, self.committed, self.log, self.graphs)
        first = [x for x, on in ((a.timing_s, "epoch_timing" not in self.calib and a.calibration is None),
                                 (a.speed_s, self.first_call())) if on and x > 0]
        window = a.budget - a.reserve_s - a.setup_s - a.smoke_s - a.calib_s if a.dry_run else self.end - time.time()
        if a.dry_run and first:  # a GPU model's first call: its timing and speed stages leave the queue ≥ 120 s
            window = max(min(120.0, window), window - sum(first))
        estimates = estimate_cells(cells, self.calib, self.amp, self.graphs, self.batched, self.slowdown, self.cost,
                                   resumed=self.resumed)
        admitted, skipped = plan_queue(estimates, window, self.slots, MAX_CARRIED_SEEDS)
        if a.max_cells is not None and len(admitted) > a.max_cells:
            skipped = [(c, f"over --max-cells {a.max_cells}") for c, _ in admitted[a.max_cells:]] + skipped
            admitted = admitted[:a.max_cells]
        spent = (f"{a.setup_s:.0f}+{a.smoke_s:.0f}+{a.calib_s:.0f} s of stages"
                 + (f" − {'+'.join(f'{x:.0f}' for x in first)} s of a first call's timing/speed (the queue keeps "
                    "≥ 120 s)" if first else "") if a.dry_run else f"{time.time() - self.t0:.0f} s spent")
        self.log(f"== queue (budget arithmetic: {a.budget:.0f} s budget − {a.reserve_s:.0f} s for the tar − "
                 f"{spent} = {window:.0f} s)")
        self.log(format_plan(admitted, skipped, window, self.slots))
        self.summary["plan"] = {
            "window_s": round(window, 1), "skipped": [{"cell": c.name, "why": why} for c, why in skipped],
            "admitted": [{"cell": c.name, "jobs": [{"seeds": p.job.seeds, "estimate_s": round(p.estimate),
                                                    "resumed_at": p.resumed_at, "line": p.job.line} for p in ps]}
                         for c, ps in admitted]}
        if a.dry_run:
            for _, ps in admitted:
                for p in ps:
                    self.log(f"would run: {p.job.line}")
            self.stage_done("queue", s, dry_run=True)
            return 0
        order = sorted((p for _, ps in admitted for p in ps), key=lambda p: p.start)
        threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // max(1, self.slots)))
        cut = None
        if a.cut_after_epochs is not None:
            n = a.cut_after_epochs
            cut = lambda: any(_epochs_done(m.parent) >= n for m in self.runs_dir.glob("*/*/*/seed*/metrics.jsonl"))  # noqa: E731
        outcomes = run_queue(order, self.end, self.slots, self.log, env={"OMP_NUM_THREADS": threads}, cut=cut)
        self.summary["outcomes"] = [asdict(o) for o in outcomes]
        self.stage_done("queue", s, done=sum(o.status == "done" for o in outcomes), jobs=len(outcomes))
        return 0 if all(o.status == "done" for o in outcomes) else 1

    def first_call(self) -> bool:
        """Whether this call measures the speed figures: a GPU model's first (or --speed on)."""
        a = self.a
        return a.speed == "on" or (a.speed == "auto" and self.gpu != "cpu"
                                   and not any(a.results.glob(f"gpu-*-{slug(self.gpu)}/speed.json")))

    def speed(self) -> None:
        """A GPU model's first call, before the queue: its speed figures (the graph-replayed batched step at
        S = 1, 3, 8, 16, fp32 and bf16) for the results page, in at most --speed-s."""
        a, s = self.a, time.time()
        if not self.first_call():
            return
        cmd = [sys.executable, str(ROOT / "benchmarks" / "search_step.py"), "--device", "cuda", "--methods",
               "darts-v1", "--amp", "none", "bf16", "--replicas", "1", "3", "8", "16", "--no-activations",
               "--json", str(self.work / "speed.json"), *(["--cuda-graphs"] if self.graphs else [])]
        left = min(a.speed_s, self.end - time.time() - 120)
        if a.dry_run:
            self.log(f"== speed: first call of this GPU model, before the queue (≤ {a.speed_s:.0f} s): "
                     f"{shlex.join(cmd)}")
        elif left < 30:
            self.log(f"== speed: skipped, {left:.0f} s left (a later call measures it)")
        else:
            rc, text = _sh(cmd, left)
            self.log(text.strip())
            left = min(60.0, self.end - time.time() - 120)  # the fusion route, where it compiles within a minute
            if left >= 30:
                fused = self.work / "speed-compile.json"
                rc2, text = _sh([*cmd[:cmd.index("--replicas")], "--replicas", "3", "--compile", "--no-activations",
                                 "--json", str(fused)], left)
                self.log(text.strip()[-2000:] + f"\n(fusion route: rc {rc2}{', over 60 s' if rc2 == 124 else ''})")
                try:
                    speed = json.loads((self.work / "speed.json").read_text())
                    speed["rows"] += json.loads(fused.read_text())["rows"]
                    (self.work / "speed.json").write_text(json.dumps(speed, indent=1))
                except (OSError, ValueError, KeyError):
                    pass
            self.stage_done("speed", s, rc=rc)


def session(a: SessionArgs) -> int:
    """One time-boxed call (see `Session`). Returns the exit status: 0 all queued runs done, 1 not, 2 bad set-up."""
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
    """What a call carries in (never .gpu/session or a rebuilt .gpu/cifar10_full)."""
    return [".gpu/data", ".gpu/tools", ".gpu/commit.json", ".gpu/carry", ".whl"]


def _tree_bytes(paths: Iterable[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def select_carry(carry: Path, dst: Path, results: Path, room: int, log: Callable[[str], None] = print
                 ) -> list[tuple[str, int, int]]:
    """Copy into `dst` (emptied first) the carried runs that are still unfinished in `results`, resumed
    first in queue order, while they fit `room` bytes; returns [(run, epoch, bytes)] of those copied."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    finished = {k for k, runs in committed_runs(results).items() if any(fin for _, fin, _ in runs)}
    taken, used = [], 0
    for key, info in sorted(carried_runs(carry).items(), key=lambda kv: (rank(kv[0][1]), kv[0])):
        rel = run_rel(*key)
        if key in finished:
            log(f"  {rel}: finished in results/ since; not carried")
            continue
        size = _tree_bytes(info["dir"] / n for n in (*CKPT_FILES, "carry.json"))
        if used + size > room:
            log(f"  {rel} (epoch {info['epoch']}, {size / 2**20:.1f} MiB): does NOT fit the call's 64 MiB; the next "
                "call starts it over unless you make room")
            continue
        (dst / rel).mkdir(parents=True)
        for n in (*CKPT_FILES, "carry.json"):
            try:
                os.link(info["dir"] / n, dst / rel / n)
            except OSError:
                shutil.copyfile(info["dir"] / n, dst / rel / n)
        used += size
        taken.append((rel.as_posix(), int(info["epoch"]), size))
    return taken


def prepare(shared: Path, gpu_dir: Path = ROOT / ".gpu", whl_dir: Path = ROOT / ".whl", exact_pixels: bool = False,
            wheels: bool = True, carry: Path = CARRY_DIR, results: Path = ROOT / "results",
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Copy the JPEG CIFAR-10, its rebuild tool and the NB201 table into `gpu_dir`, record the commit,
    download the wheels into `whl_dir`, and put the unfinished runs' checkpoints (`carry`, from `ingest`)
    that fit the 64 MiB into `gpu_dir`/carry; print the budget and return the call to make."""
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
    tree_files = [ROOT / n for n in listing.splitlines() if n and (ROOT / n).is_file()] if rc == 0 else []
    tree = _tree_bytes(tree_files)
    fixed = _tree_bytes(c for c in (gpu_dir / "data", gpu_dir / "tools", gpu_dir / "commit.json", whl_dir)
                        if c.exists())
    if tree + fixed > CARRY_LIMIT:
        raise SessionError(f"the working tree and carried data are {(tree + fixed) / 2**20:.1f} MiB, over the "
                           "call's 64 MiB")
    taken = select_carry(carry, gpu_dir / "carry", results, CARRY_LIMIT - tree - fixed, log)
    ckpts = sum(b for *_, b in taken)
    size = tree + fixed + ckpts
    budget = (f"{size / 2**20:.1f} of 64 MiB: tree {tree / 2**20:.1f} + data, tools and wheels {fixed / 2**20:.1f} "
              f"+ {len(taken)} checkpoint(s) {ckpts / 2**20:.1f}"
              + "".join(f"\n  resumes {run} at epoch {epoch}" for run, epoch, _ in taken))
    return {"command": "bash benchmarks/gpu_session.sh", "carry": carry_list(), "timeout_s": 570,
            "travels_mib": round(size / 2**20, 1), "commit": commit, "budget": budget}


TAR_MEMBER = re.compile(r"(gpu-[A-Za-z0-9._-]+)/(runs/([A-Za-z0-9._-]+/)+(args\.json|metrics\.jsonl|result\.json)"
                        r"|calibration\.json|session\.json|session\.log|speed\.json|carry\.json)")
CKPT_MEMBER = re.compile(r"runs/([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+)/([A-Za-z0-9._-]+)/seed(\d+)/"
                         r"(args\.json|checkpoint\.pt|checkpoint\.pt\.sha256)")


def commit_relation(sha: str, cwd: Path = ROOT) -> str:
    """How a session's commit relates to this checkout: in its history, elsewhere, or unknown here."""
    if not re.fullmatch(r"[0-9a-f]{7,40}", sha or ""):
        return "no commit recorded"
    rc, _ = _sh(["git", "merge-base", "--is-ancestor", sha, "HEAD"], 30, cwd=cwd)
    return {0: "in this checkout's history", 1: "NOT in this checkout's history (another branch)"}.get(
        rc, "unknown to this clone (a colleague's commit? fetch it to check)")


def _read_checkpoint_tar(path: Path) -> tuple[tuple[str, str, str, int], dict[str, bytes]]:
    """(space, label, dataset, seed) and {file name: bytes} of one returned checkpoint file."""
    with tarfile.open(path) as tar:
        files, keys = {}, set()
        for m in tar.getmembers():
            match = CKPT_MEMBER.fullmatch(m.name)
            if m.isdir():
                continue
            if not m.isfile() or match is None or {".", ".."} & set(m.name.split("/")):
                raise SessionError(f"{path}: unexpected member {m.name!r}: nothing unpacked")
            keys.add((match.group(1), match.group(2), match.group(3), int(match.group(4))))
            files[match.group(5)] = tar.extractfile(m).read()  # type: ignore[union-attr]
    if len(keys) != 1 or set(files) != set(CKPT_FILES):
        raise SessionError(f"{path}: expected {', '.join(CKPT_FILES)} of one run: nothing unpacked")
    return keys.pop(), files


def ingest(tar_path: Path, results: Path = ROOT / "results", readme: Path | None = None, carry: Path = CARRY_DIR,
           checkpoints: Sequence[Path] | None = None, log: Callable[[str], None] = print) -> str:
    """Unpack one session tar into results/<gpu-folder>/ (refusing anything unexpected, and an existing
    folder); keep its unfinished runs' checkpoint files (`checkpoints`, default: the `<folder>.ckpt-*.tar`
    beside it) in `carry` with the session's commit and config, for `prepare` to carry to the next call;
    then regenerate the results table and results/gpu-report/. The tar may come from any clone of any
    commit: the commit is recorded per carried run and its relation to this checkout is said. Returns the
    folder name."""
    page = results_page(readme)
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
            unpacked = {Path(m.name).relative_to(folder).as_posix(): tar.extractfile(m).read()  # type: ignore[union-attr]
                        for m in members if m.isfile()}
        if checkpoints is None:
            checkpoints = sorted(tar_path.parent.glob(f"{folder}.ckpt-*.tar"))
        returned = [_read_checkpoint_tar(c) for c in checkpoints]
    except (tarfile.TarError, OSError) as err:
        raise SessionError(f"cannot read {tar_path} or its checkpoint files: {err}") from None
    try:
        session_info = json.loads(unpacked.get("session.json", b"{}"))
        manifest = json.loads(unpacked.get("carry.json", b"{}"))
    except ValueError:
        raise SessionError(f"{tar_path}: session.json or carry.json is not JSON: nothing unpacked") from None
    commit = session_info.get("commit") or manifest.get("commit") or {}
    sha = str(commit.get("commit", ""))
    log(f"{folder}: commit {sha[:10] or '?'}{' + uncommitted changes' if commit.get('dirty') else ''}, "
        f"{commit_relation(sha)}")
    expected = {e["run"] for e in manifest.get("checkpoints", [])}
    got = {run_rel(*key).as_posix() for key, _ in returned}
    for run in sorted(expected - got):
        log(f"  checkpoint of {run} is not beside the tar: that run starts over in the next call")
    tmp = results / f".{folder}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, data in unpacked.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    tmp.replace(results / folder)
    for key, files in returned:
        import io

        import torch
        epoch = int(torch.load(io.BytesIO(files["checkpoint.pt"]), map_location="cpu", weights_only=False)["epoch"])
        dst = carry / run_rel(*key)
        old = carried_runs(carry).get(key)
        if old is not None and int(old["epoch"]) > epoch:
            log(f"  kept the carried {run_rel(*key)} at epoch {old['epoch']} (this one is at {epoch})")
            continue
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        for name, data in files.items():
            (dst / name).write_bytes(data)
        argv = json.loads(files["args.json"]).get("argv", [])
        (dst / "carry.json").write_text(json.dumps({"epoch": epoch, "session": folder, "commit": sha, "dirty":
                                                    commit.get("dirty"), "argv": argv}, indent=1))
        log(f"  kept {run_rel(*key)} at epoch {epoch} in {dst} for the next call")
    for key in list(carried_runs(carry)):  # runs this session finished need no checkpoint any more
        if (results / folder / "runs" / run_rel(*key) / "result.json").is_file():
            shutil.rmtree(carry / run_rel(*key))
            log(f"  {run_rel(*key)} finished: its carried checkpoint removed")
    update_readme(results, page)
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
    finished = {(label, data, r.args.get("seed")) for (label, data), group in groups.items() for r, _ in group
                if r.finished}
    for (label, data), group in groups.items():  # a call's cut-off run that a later call finished counts once
        group[:] = [(r, sha) for r, sha in group if r.finished or (label, data, r.args.get("seed")) not in finished]
        done = [r for r, _ in group if r.finished]
        cells = [mean_std([float((r.result.get("nb201") or {}).get(c) or "nan") for r in done],
                          len(done) if len(done) > 1 else None) for c in NB201_COLUMNS]  # one run: "(n=1)"
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


def _rel(path: Path, page: Path) -> str:
    """A link from `page` to `path`."""
    return Path(os.path.relpath(path, page.parent)).as_posix()


def speed_table(results: Path, page: Path | None = None) -> str:
    """Markdown: every row of results/gpu-*/speed.json (benchmarks/search_step.py's JSON; `--replicas` rows:
    the batched step of S seeds), linked from `page`."""
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
            path = r.get("path") or ("batched" if int(r.get("replicas", 1)) > 1 else "single") + (
                "+graphs" if r.get("graphs") else "")
            link = _rel(f, page) if page is not None else f.relative_to(results.parent).as_posix()
            if search is None and r.get("nb201_searches_per_hour"):
                search = 60 / float(r["nb201_searches_per_hour"])  # minutes per search, S at once
            rows.append([str(r.get("device", "?")), str(r.get("method")), str(path),
                         "bf16" if r.get("amp") == "bf16" else "fp32", str(r.get("replicas", 1)), str(r.get("batch")),
                         f"{1000 * r['step_s']:.1f}", f"{search:.1f}" if isinstance(search, (int, float)) else "—",
                         f"[{f.parent.name}]({link})"])
    if not rows:
        return "Not measured yet."
    head = ["GPU", "method", "path", "precision", "S (replicas)", "batch", "ms / step", "50-epoch search (min; batched: per search)",
            "record"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(row) + " |" for row in rows])


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin, 1)
    return head + begin + "\n" + body + "\n" + end + rest.split(end, 1)[1]


DOC = ROOT / "docs" / "time-boxed-gpu.md"


def results_page(page: Path | None = None) -> Path:
    """Where the results table goes: `page` if given, else README.md while it holds the markers, else
    docs/time-boxed-gpu.md; refused (nothing written) when that page lacks them."""
    if page is None:
        readme = ROOT / "README.md"
        page = readme if readme.is_file() and BEGIN in readme.read_text() else DOC
    if not page.is_file() or BEGIN not in page.read_text() or END not in page.read_text():
        raise SessionError(f"{page} lacks the {BEGIN} / {END} markers: nothing unpacked")
    return page


def update_readme(results: Path = ROOT / "results", readme: Path | None = None) -> None:
    """Rewrite the page's block between the gpu-results markers (and gpu-speed, where it has them);
    results/gpu-report/ gets results.md + plots."""
    from common.report import collect_runs, make_plots, render
    readme = results_page(readme)
    text = readme.read_text()
    runs = [r for folder in sorted(results.glob("gpu-*")) if folder.is_dir() for r in collect_runs(folder)]
    block = ["NB201 200-epoch accuracies (%) of the derived cells, mean ± sample std over finished seeds; every "
             "run under `results/gpu-*/`, written by `python benchmarks/gpu_session.py ingest`.", "", gpu_table(results)]
    if runs:
        report = results / "gpu-report"
        notes: list[str] = []
        plots = make_plots(runs, report, None, notes)
        (report / "results.md").write_text(render(runs, plots, notes))
        block += ["", "Curves (entropy, discretized accuracy) and the full report: "
                      f"[`results/gpu-report/results.md`]({_rel(report / 'results.md', readme)})."]
    text = _replace_block(text, BEGIN, END, "\n".join(block))
    if SPEED_BEGIN in text and SPEED_END in text:
        text = _replace_block(text, SPEED_BEGIN, SPEED_END, speed_table(results, readme))
    readme.write_text(text)


# ---------------------------------------------------------------------------------------- rehearsal
def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A metrics record or result.json without what depends on the clock."""
    out = {k: v for k, v in record.items() if k not in ("time", "wall_time_s")}
    if isinstance(out.get("final"), dict):
        out["final"] = _comparable(out["final"])
    return out


def _differences(name: str, a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (at most a few paths)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{name}{path}.{k}: only in {'the resumed' if k in a else 'the uninterrupted'} run"
               for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += _differences(name, a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(name, x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{name}{path}: {str(a)[:60]} (resumed) vs {str(b)[:60]} (uninterrupted)"]


def rehearse(data_dir: Path, work: Path | None = None, epochs: int = 3, cut_after: int = 1,
             log: Callable[[str], None] = print) -> str:
    """Two tiny time-boxed calls back to back on CPU, as a user's slots would run: the first cut at a
    deadline mid-search (once its search has `cut_after` epochs), `ingest` of what it returned (the tar and
    its checkpoint files), `prepare`'s carry selection, the second call resuming; then the same search run
    once without a break. Returns "identical" or what differs (metrics records and result.json per seed,
    the clock's fields aside)."""
    import tempfile
    if not (data_dir / "cifar-10-batches-py").is_dir() or not (data_dir / "nb201" / "nb201_200ep.csv").is_file():
        raise SessionError(f"rehearse needs the CIFAR-10 subset (cifar-10-batches-py/) and nb201/nb201_200ep.csv "
                           f"under {data_dir} (--data-dir)")
    if work is None:
        with tempfile.TemporaryDirectory(prefix="gpu-rehearsal-") as tmp:
            return rehearse(data_dir, Path(tmp), epochs, cut_after, log)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the searches and the uninterrupted one alike
    gpu_dir, results, carry, page = work / "gpu", work / "results", work / "carry", work / "page.md"
    (gpu_dir / "data" / "nb201").mkdir(parents=True)
    (gpu_dir / "data" / "nb201" / "nb201_200ep.csv").symlink_to(data_dir / "nb201" / "nb201_200ep.csv")
    (gpu_dir / "cifar10_full").symlink_to(data_dir)  # stands in for the rebuilt full CIFAR-10
    results.mkdir()
    page.write_text(f"{BEGIN}\n{END}\n")
    calib = work / "calibration.json"
    calib.write_text(json.dumps({"source": "rehearsal: a stub", "rows": [
        {"method": m, "batch": 16, "amp": "none", "graphs": False, "replicas": 2, "step_s": 0.5}
        for m in ("darts-v1", "darts-v2", "pc-k4", "gdas")]}))
    tiny = f"--limit-train 64 --C 4 --N 1 --epochs {epochs} --batch-size 16 --eval-images 32 --device cpu"
    args = SessionArgs(budget=570, out=work / "out1", results=results, gpu_dir=gpu_dir, seeds=(0, 1), amp="none",
                       parallel="1", skip_setup=True, skip_smoke=True, calibration=calib, extra=tuple(shlex.split(tiny)),
                       max_cells=1, speed="off", cut_after_epochs=cut_after)
    log(f"== call 1 (deadline after epoch {cut_after} of {epochs})")
    session(args)
    (tar1,) = [t for t in (work / "out1").glob("gpu-*.tar") if ".ckpt-" not in t.name]
    plan = json.loads((gpu_dir / "session" / "session.json").read_text()).get("plan", {}).get("admitted", [])
    if not plan:
        return "differs: the first call ran nothing"
    job = parse_job(plan[0]["jobs"][0]["line"])
    folder1 = ingest(tar1, results, page, carry, log=log)
    left = [k for k in job.seeds if not (results / folder1 / "runs" / run_rel(job.space, job.label, job.dataset, k)
                                         / "result.json").exists()]
    if not left:
        return "differs: the first call finished before its deadline, nothing was cut (raise --epochs)"
    log(f"== prepare: carry {[r for r, *_ in select_carry(carry, gpu_dir / 'carry', results, CARRY_LIMIT, log)]}")
    log("== call 2")
    session(SessionArgs(**{**asdict(args), "out": work / "out2", "cut_after_epochs": None,
                           "cost": args.cost, "calibration": calib}))
    (tar2,) = [t for t in (work / "out2").glob("gpu-*.tar") if ".ckpt-" not in t.name]
    folder2 = ingest(tar2, results, page, carry, log=log)
    resumed = "RESUME" in (results / folder2 / "session.log").read_text()
    log(f"== one uninterrupted run: {job.line}")
    ref = work / "uninterrupted"
    rc, text = _sh(job.line + " " + shlex.join(["--out", str(ref / "seed{seed}" if "{seed}" in str(job.out)
                                                                else ref / f"seed{job.seeds[0]}")]), 600)
    if rc != 0:
        return f"differs: the uninterrupted run failed (rc {rc}): {text.strip().splitlines()[-1:]}"
    diffs = [] if resumed else ["the second call resumed nothing"]
    for k in job.seeds:
        rel = run_rel(job.space, job.label, job.dataset, k)
        mine = next((results / f / "runs" / rel for f in (folder2, folder1)
                     if (results / f / "runs" / rel / "result.json").is_file()), None)
        if mine is None:
            diffs.append(f"seed {k}: no result.json after the second call")
            continue
        theirs = ref / f"seed{k}"
        for name in ("metrics.jsonl", "result.json"):
            a, b = ((mine / name).read_text(), (theirs / name).read_text())
            if name == "metrics.jsonl":
                a, b = ([_comparable(json.loads(x)) for x in t.splitlines() if x.strip()] for t in (a, b))
            else:
                a, b = _comparable(json.loads(a)), _comparable(json.loads(b))
            diffs += _differences(f"seed {k} {name}", a, b)[:5]
    log(f"cut: seeds {left} of {job.label} stopped in call 1, resumed in call 2: {resumed}")
    return "identical" if not diffs else "differs: " + "; ".join(diffs[:8])


# ---------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="this machine: .gpu/ and .whl/ for the next call; prints the call")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the folder holding data/ and tools/")
    p.add_argument("--exact-pixels", action="store_true", help="also carry the exact CIFAR-10 subset (27 MB) so the "
                   "rebuild swaps in its exact pixels (~10%% of the images)")
    p.add_argument("--no-wheels", action="store_true", help="skip the wheel download")
    p.add_argument("--carry", type=Path, default=CARRY_DIR, help="unfinished runs' checkpoints kept by ingest")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p = sub.add_parser("session", help="one time-boxed call (what gpu_session.sh runs)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds this command may take in all (≤ 570)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / ".gpu" / "out")),
                   help="where the tar goes ($OUT on the device)")
    p.add_argument("--dry-run", action="store_true", help="plan and budget arithmetic only: no rebuild, no test, "
                   "no search (calibration: --calibration, else this GPU model's newest committed one, else any, else the "
                   "eager H100 figures)")
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
    p.add_argument("--startup-s", type=float, default=Cost.startup_s, help="estimate: seconds before a search's first step "
                   "(until a 2-epoch timing search has measured it)")
    p.add_argument("--epoch-overhead-s", type=float, default=Cost.epoch_overhead_s,
                   help="estimate: seconds per epoch beside the steps (capture, evaluation, checkpoint; until a "
                   "2-epoch timing search has measured it)")
    p.add_argument("--safety", type=float, default=Cost.safety, help="estimate: multiplies the whole estimate")
    p.add_argument("--skip-setup", action="store_true", help="use the data already in --gpu-dir/cifar10_full")
    p.add_argument("--skip-smoke", action="store_true", help="no replay tests: run eager")
    p.add_argument("--calibration", type=Path, default=None, help="a calibration.json to use instead of measuring")
    p.add_argument("--extra", default="", help="flags appended to every search (tests: tiny configs)")
    p.add_argument("--max-cells", type=int, default=None, help="run at most this many cells")
    p.add_argument("--speed", default="auto", choices=("auto", "on", "off"), help="the speed figures, before the "
                   "queue (search_step.py: the graph-replayed batched step, fp32/bf16, S = 1, 3, 8, 16, then the "
                   "torch.compile route at S = 3 if it compiles within 60 s); auto: on a GPU model's first call "
                   "(no results/gpu-*-<gpu>/speed.json yet)")
    p.add_argument("--speed-s", type=float, default=90.0, help="at most this long for the speed figures")
    p.add_argument("--timing-s", type=float, default=90.0, help="at most this long for the 2-epoch timing search "
                   "(a GPU model's first call)")
    p = sub.add_parser("calibrate", help="(internal) time the steps; writes JSON after every figure")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--deadline", type=float, required=True, help="epoch seconds")
    p.add_argument("--need", nargs="*", default=["darts-v1:64"], help="METHOD:BATCH")
    p.add_argument("--amp", nargs="+", default=["none", "bf16"])
    p.add_argument("--graphs", action="store_true")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--device", default="cuda")
    page = ("the page with the results markers (default: README.md while it has them, else "
            "docs/time-boxed-gpu.md)")
    p = sub.add_parser("ingest", help="this machine: unpack a session tar into results/ (its checkpoint files into "
                       "--carry), regenerate the results table")
    p.add_argument("tar", type=Path)
    p.add_argument("checkpoints", type=Path, nargs="*", help="its checkpoint files (default: <tar>.ckpt-*.tar "
                   "beside it)")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--readme", type=Path, default=None, help=page)
    p.add_argument("--carry", type=Path, default=CARRY_DIR, help="where unfinished runs' checkpoints are kept")
    p = sub.add_parser("table", help="regenerate the results table from results/gpu-*/")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--readme", type=Path, default=None, help=page)
    p = sub.add_parser("rehearse", help="two tiny time-boxed calls on CPU, the first cut mid-search, the second "
                       "resuming it, against one uninterrupted run; last line: identical, or what differs")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data",
                   help="the CIFAR-10 subset and nb201/ (default ../shared/data)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cut-after", type=int, default=1, help="the first call's deadline falls after this epoch")
    ns = parser.parse_args(argv)
    for name, value in vars(ns).items():  # relative paths are the caller's, whatever the cwd of subprocesses
        if isinstance(value, Path):
            setattr(ns, name, value.resolve())
    try:
        if ns.cmd == "prepare":
            call = prepare(ns.shared, exact_pixels=ns.exact_pixels, wheels=not ns.no_wheels, carry=ns.carry,
                           results=ns.results)
            print(f"prepared .gpu/ and .whl/ (commit {call['commit']['commit'][:10]}"
                  f"{' + uncommitted changes' if call['commit']['dirty'] else ''}); carried in: {call['budget']}")
            print("Run ONE time-boxed call (in the job, from the checkout's root, with these paths beside the "
                  "tracked files; $OUT: where files come back):")
            print(json.dumps({k: call[k] for k in ("command", "carry", "timeout_s")}))
            print("then: python benchmarks/gpu_session.py ingest <OUT>/gpu-*.tar   (its .ckpt-*.tar files beside it)")
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
                max_cells=ns.max_cells, speed=ns.speed, speed_s=ns.speed_s, timing_s=ns.timing_s))
        if ns.cmd == "calibrate":
            if not all(re.fullmatch(r"[a-z0-9-]+:\d+", n) for n in ns.need):
                raise SessionError(f"--need takes METHOD:BATCH items (got {' '.join(ns.need)})")
            needs = [(n.split(":")[0], int(n.split(":")[1])) for n in ns.need]
            calibrate(needs, ns.amp, ns.graphs, ns.replicas, ns.deadline, ns.json, ns.device)
            return 0
        if ns.cmd == "rehearse":
            if not 1 <= ns.cut_after < ns.epochs:
                raise SessionError(f"--cut-after must be in [1, --epochs) (got {ns.cut_after} of {ns.epochs})")
            verdict = rehearse(ns.data_dir, ns.work, ns.epochs, ns.cut_after)
            print(verdict)
            return 0 if verdict == "identical" else 1
        if ns.cmd == "ingest":
            folder = ingest(ns.tar, ns.results, ns.readme, ns.carry, ns.checkpoints or None)
            table = gpu_table(ns.results)
            if "Rows that miss" in table:  # said on the terminal too
                print(table[table.index("Rows that miss"):] + "\n")
            page = results_page(ns.readme)
            print(f"unpacked into {ns.results / folder}; the table in {page} and results/gpu-report/ regenerated. "
                  "Commit:")
            rel = [os.path.relpath(p) for p in (ns.results / folder, ns.results / "gpu-report", page) if p.exists()]
            print(f"git add {' '.join(map(shlex.quote, rel))} && "
                  f"git commit -m 'GPU session {folder}: NB201 runs and calibration (benchmarks/gpu_session.py)'")
            return 0
        update_readme(ns.results, ns.readme)
        print(f"regenerated the GPU results table in {results_page(ns.readme)}")
        return 0
    except SessionError as err:
        print(f"gpu_session: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
