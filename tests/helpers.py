"""Plain helpers shared by several test modules (tests/ is on sys.path under pytest's default import mode).

- `discrete_nb201`: an independent discrete NB201 network, the oracle the one-hot supernet is checked against.
- `run_and_kill_after_epoch_1`: start a search/training command and SIGKILL it once epoch 1 is checkpointed.
- `HELP_DRIVER`: a `python -c` script printing the `--help` of each script path / module given, as JSON.
- `decays_after`: EDD's decay calendar (`EDDConfig.decays_after`) as a function of (epoch, cfg).
"""
from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F

from common.supernet import NB201Cell, Supernet


def discrete_nb201(model: Supernet, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
    """The NB201 network with one op per edge: only `ops[e]` (a name from the edge's op list) runs on edge e,
    `none` edges are left out; written independently of the supernet's mixing code."""
    h = model.stem(x)
    for cell in model.cells:
        if not isinstance(cell, NB201Cell):
            h = cell(h)
            continue
        nodes = [h]
        for node in range(1, 4):
            terms = [cell.mixed[e].ops[cell.mixed[e].op_names.index(ops[e])](nodes[src])
                     for e, (to, src) in enumerate(cell.edges) if to == node and ops[e] != "none"]
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(h))
        h = nodes[-1]
    return model.classifier(F.adaptive_avg_pool2d(model.lastact(h), 1).flatten(1))


def run_and_kill_after_epoch_1(cmd: Sequence[str], out: Path, cwd: Path, poll_s: float = 0.05,
                               timeout_s: float = 240) -> None:
    """Run `cmd` (writing to the run directory `out`) and SIGKILL it as soon as `out/metrics.jsonl` holds
    epoch 1's record, i.e. somewhere after epoch 1's checkpoint; returns once the process is gone."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = out / "metrics.jsonl", time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)  # a hard kill after epoch 1's checkpoint
            break
        time.sleep(poll_s)
    proc.wait()


def decays_after(epoch: int, cfg) -> bool:
    """Whether a decay step ends `epoch` (0-based) under `cfg`, an `EDDConfig` (Alg. 2's calendar, or the authors')."""
    return cfg.decays_after(epoch)


#: `python -c HELP_DRIVER TARGET ...`: runs each target with `--help` in one process, a script path (`x.py`, as
#: `python x.py`) or a module name (as `python -m`), and prints {"help": {target: text}, "torch": whether any
#: of them imported torch} as JSON.
HELP_DRIVER = """
import contextlib, io, json, runpy, sys
out = {}
for target in sys.argv[1:]:
    sys.argv = [target.rsplit("/", 1)[-1] if target.endswith(".py") else target, "--help"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            if target.endswith(".py"):
                runpy.run_path(target, run_name="__main__")
            else:
                runpy.run_module(target, run_name="__main__")
        except SystemExit:
            pass
    out[target] = buf.getvalue()
print(json.dumps({"help": out, "torch": "torch" in sys.modules}))
"""
