"""CPU threads of a run: `--threads auto|N`, chosen once at the start of every entry point.

On a shared machine (a cluster node, a laptop running other work) a thread count above the free cores is
far slower than one thread: torch's intra-op threads wait at every operator for a thread the scheduler
has parked (2 threads on 2 busy cores: 44.6 s per NB201 search step against 3.32 s with 1 thread). `auto`
therefore takes the cores this process may use minus the other runnable work, at least 1 (docs/speed.md
has the measurements). Torch-free apart from `apply_threads`: the parsers import it.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping

#: What `--threads` accepts (common.config checks it with the other flags).
THREADS_FORM = re.compile(r"auto|[1-9][0-9]*")
LOADAVG = "/proc/loadavg"  # Linux: load averages, then runnable/total tasks


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of them where the OS has no affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _runnable_now(samples: int = 5, gap_s: float = 0.01) -> int | None:
    """Runnable tasks other than this one, the fewest of a few samples of /proc/loadavg (Linux; else None).

    The load average lags by about a minute; this sees work that started just now."""
    counts = []
    for _ in range(samples):
        try:
            with open(LOADAVG) as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(running - 1)  # this process is running while it reads
        time.sleep(gap_s)
    return max(0, min(counts))


def other_load() -> int:
    """The runnable work besides this process, in cores: the 1-minute load average, rounded, or the
    runnable tasks seen now, whichever is larger (0 where the OS reports neither)."""
    try:
        average = round(os.getloadavg()[0])
    except (AttributeError, OSError):
        average = 0
    return max(average, _runnable_now() or 0)


def resolve_threads(flag: str, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(threads, where the number came from) for `--threads flag`.

    A number is used as given; `auto` takes OMP_NUM_THREADS when it is set to a number >= 1, else
    `auto_threads()`.
    """
    if not THREADS_FORM.fullmatch(flag):
        raise ValueError(f"--threads must be auto or a whole number >= 1 (got {flag!r})")
    if flag != "auto":
        return int(flag), "--threads"
    env = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env), "OMP_NUM_THREADS"
    cores, load = usable_cores(), other_load()
    return max(1, cores - load), f"auto: {cores} cores, other load {load}"


def apply_threads(flag: str) -> tuple[int, str]:
    """Resolve `--threads` and set torch's intra-op thread count; returns what `resolve_threads` does."""
    import torch

    threads, why = resolve_threads(flag)
    torch.set_num_threads(threads)
    return threads, why
