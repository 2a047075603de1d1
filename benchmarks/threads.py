"""Time an NB201 search step per CPU thread count, idle and beside busy processes; rate `--threads auto`.

    python benchmarks/threads.py                        # NB201 C=16 N=5 batch 64, threads 1..cores, 2 busy
    python benchmarks/threads.py --C 8 --N 2 --batch 32 --iters 3 --threads 1 2 4 8 --busy 4

For each condition (idle: nothing started; busy: `--busy` processes spinning on the CPU, started here and
stopped here, each also ending by itself after `--busy-limit` seconds; after: idle again right after `--busy`
processes spun for `--after-busy` seconds, when the 1-minute load average still counts them) it prints the median seconds per
DARTS-V1 bilevel step (w step + α step, fp32) at each thread count, the thread count `--threads auto`
chooses at that moment (common/threads.py: the usable cores minus the other runnable load, at least 1),
and that choice's step time over the best one. Targets: within 1.5x of the best beside the busy processes,
within 1.1x idle. "idle" means this script started nothing: other work already on the machine stays, so
read the figures with the `uptime` printed at the top of each condition. docs/speed.md has measured rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from search_step import make_step, time_step  # noqa: E402

from common.threads import resolve_threads, usable_cores  # noqa: E402

TARGET = {"idle": 1.1, "busy": 1.5, "after": 1.1}
_SPIN = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def start_busy(count: int, limit_s: float) -> list[subprocess.Popen]:
    """`count` processes spinning on the CPU, each ending by itself after `limit_s` seconds."""
    return [subprocess.Popen([sys.executable, "-c", _SPIN.format(limit=limit_s)]) for _ in range(count)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def condition(name: str, args: argparse.Namespace) -> dict:
    """Step times per thread count under `name` (idle / busy / after) and the auto choice's ratio to the best."""
    if name == "after":  # --busy processes that end by themselves after --after-busy seconds, just before
        for p in start_busy(args.busy, args.after_busy):  # `auto` measures: the load average still counts them
            p.wait()
        procs = []
    else:
        procs = start_busy(args.busy, args.busy_limit) if name == "busy" else []
    try:
        time.sleep(args.settle if procs else 0)
        auto, why = resolve_threads("auto", environ={})
        print(f"\n{name}: {len(procs)} busy processes started; {_load()}; auto chooses {auto} ({why})", flush=True)
        times = {}
        for n in sorted(set(args.threads) | {auto}):
            torch.set_num_threads(n)
            step, _ = make_step("darts-v1", "nb201", args.C, args.N, args.batch, torch.device("cpu"), True, "none")
            times[n] = statistics.median(time_step(step, torch.device("cpu"), args.warmup, args.iters))
            print(f"  {n:3d} threads  {times[n]:8.3f} s/step", flush=True)
    finally:
        stop_busy(procs)
    best = min(times, key=times.get)
    ratio = times[auto] / times[best]
    verdict = "within" if ratio <= TARGET[name] else "NOT within"
    print(f"  best {best} threads ({times[best]:.3f} s); auto ({auto}) is {ratio:.2f}x the best: "
          f"{verdict} the {TARGET[name]}x target", flush=True)
    return {"condition": name, "busy": len(procs), "auto": auto, "auto_from": why, "seconds": times,
            "best": best, "ratio": ratio, "target": TARGET[name]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=list(range(1, usable_cores() + 1)),
                        help="thread counts to time (default: 1 to the usable cores)")
    parser.add_argument("--C", type=int, default=16, help="initial channels (default: 16)")
    parser.add_argument("--N", type=int, default=5, help="cells per stage (default: 5)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per thread count (default: 1)")
    parser.add_argument("--iters", type=int, default=3, help="timed steps per thread count (default: 3)")
    parser.add_argument("--busy", type=int, default=2, help="busy processes of the busy condition (default: 2)")
    parser.add_argument("--busy-limit", type=float, default=900.0,
                        help="seconds after which a busy process ends by itself (default: 900)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between starting the busy processes and timing (default: 2)")
    parser.add_argument("--after-busy", type=float, default=60.0,
                        help="the after condition: seconds the busy processes run before they end (default: 60)")
    parser.add_argument("--conditions", nargs="+", default=["idle", "busy"], choices=("idle", "busy", "after"),
                        help="idle, busy (--busy processes spinning), after (idle right after --busy processes "
                             "ran --after-busy seconds: the load average still counts them); default idle busy")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if min(args.threads) < 1 or min(args.C, args.N, args.batch, args.iters) < 1:
        parser.error("--threads, --C, --N, --batch and --iters must be >= 1")
    print(f"NB201 C={args.C} N={args.N} batch {args.batch}, DARTS-V1 step, fp32, torch {torch.__version__}, "
          f"{usable_cores()} usable cores, median of {args.iters} steps after {args.warmup} warm-up")
    rows = [condition(name, args) for name in args.conditions]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
