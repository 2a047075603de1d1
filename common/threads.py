"""CPU threads of a run: `--threads auto|N`, chosen once at the start of every entry point.

On a shared machine (a cluster node, a laptop running other work) a thread count above the free cores is
far slower than one thread: torch's intra-op threads wait at every operator for a thread the scheduler
has parked (2 threads on 2 busy cores: 44.6 s per NB201 search step against 3.32 s with 1 thread). `auto`
therefore takes the cores this process may use minus the other work on them, at least 1 (docs/speed.md
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
PROC_STAT = "/proc/stat"  # Linux: per-CPU time counters (cpuN user nice system idle iowait irq softirq steal)


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of them where the OS has no affinity)."""
    cpus = _affinity()
    return len(cpus) if cpus else (os.cpu_count() or 1)


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) clock ticks of the CPUs `cpus` since boot, from /proc/stat (Linux; else None)."""
    busy = total = 0.0
    try:
        with open(PROC_STAT) as f:
            for line in f:
                name, *ticks = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    t = [float(x) for x in ticks[:8]]  # steal counts as busy: the core is not ours then
                    total += sum(t)
                    busy += sum(t) - t[3] - t[4]  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total) if total else None


def busy_cores(cpus: set[int], window_s: float = 0.25) -> float | None:
    """How many of the CPUs `cpus` were busy over the next `window_s` seconds (this process sleeps then)."""
    before = _cpu_times(cpus)
    time.sleep(window_s)
    after = _cpu_times(cpus)
    if before is None or after is None or after[1] <= before[1]:
        return None
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


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
    """The work besides this process on its cores, in cores (0 where the OS reports nothing).

    The busy cores among those this process may use, measured over a quarter second, rounded; when it may
    use the whole machine, also the runnable tasks seen now, the larger of the two. Where the busy cores
    cannot be measured (no /proc/stat), the 1-minute load average (rounded) and the runnable tasks instead:
    the average lags by about a minute, so for a minute after other work ends it would still count that work.
    With fewer cores than the machine (a cluster job's CPU set) the machine-wide load says nothing about this
    process's cores, so only the measurement on them counts.
    """
    cpus = _affinity()
    busy = busy_cores(cpus) if cpus else None
    whole_machine = len(cpus or ()) >= (os.cpu_count() or 1)
    counts = [round(busy)] if busy is not None else []
    if busy is None:
        try:
            counts.append(round(os.getloadavg()[0]))
        except (AttributeError, OSError):
            pass
    if busy is None or whole_machine:
        counts.append(_runnable_now() or 0)
    return max(counts, default=0)


def free_cores_now(settle_s: float = 0.3) -> int:
    """The cores of this process that no other work uses now, at least 1, for a process already at work.

    It sleeps `settle_s` first so that its own threads go idle, then counts the busy cores and the runnable
    tasks as `other_load` does; the load average is left out, since it still holds this process's own steps.
    """
    time.sleep(settle_s)
    cpus = _affinity()
    busy = busy_cores(cpus) if cpus else None
    counts = [round(busy)] if busy is not None else []
    if busy is None or len(cpus or ()) >= (os.cpu_count() or 1):
        counts.append(_runnable_now() or 0)
    return max(1, usable_cores() - max(counts, default=0))


def resolve_threads(flag: str, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """(threads, where the number came from) for `--threads flag`.

    A number is used as given; `auto` takes OMP_NUM_THREADS when it is set to a number >= 1, else
    the usable cores minus `other_load()`, at least 1.
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


def threads_text(threads: int, source: str) -> str:
    """How a log line names the thread count: `2 CPU threads (--threads)`."""
    return f"{threads} CPU thread{'s' if threads > 1 else ''} ({source})"


#: `auto`'s last measurement (monotonic time, threads, source), reused for AUTO_REUSE_S: the replica runs of one
#: `--seeds` batch, built one after the other in one process, get one count and measure once.
_last_auto: tuple[float, int, str] | None = None
AUTO_REUSE_S = 60.0


def apply_threads(flag: str) -> tuple[int, str]:
    """Resolve `--threads` and set torch's intra-op thread count; returns what `resolve_threads` does."""
    import torch

    global _last_auto
    now = time.monotonic()
    if flag == "auto" and _last_auto is not None and now - _last_auto[0] < AUTO_REUSE_S \
            and "OMP_NUM_THREADS" not in os.environ:
        threads, why = _last_auto[1:]
    else:
        threads, why = resolve_threads(flag)
        if why.startswith("auto"):
            _last_auto = (now, threads, why)
    torch.set_num_threads(threads)
    return threads, why
