"""The run directory and the run's life: checkpoints, resume rules, the lock, logs, faults, seeding.

A run directory holds `args.json` (the resolved config), `metrics.jsonl` (one record per epoch, names in
docs/run-directory.md), `checkpoint.pt` (written atomically after every epoch: model with α, optimisers,
RNG states, the method's `method_state`, the metrics so far) with its sha256 in `checkpoint.pt.sha256`,
inside an epoch `checkpoint.step.pt` (`--checkpoint-every`; removed once the epoch's checkpoint is
written), `result.json` at the end, `log.txt`, and the empty `.lock` that one run at a time holds
(common/safeio.py), deleted when the run ends. A refused start leaves the folder as it was (`abandon`). JSON files hold no NaN/inf (written as null). A user-facing failure is a `RunError`:
`main_guard` prints it as one line and exits non-zero.
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from common.config import config_dict
from common.data import DataError
from common.safeio import DigestFile, RunLock, RunLocked, atomic_write, json_safe

CHECKPOINT_VERSION = 1
#: Entries every checkpoint of this version holds (a checkpoint lacking one cannot be resumed).
CHECKPOINT_KEYS = ("version", "config", "epoch", "global_step", "wall_time", "model", "w_optimizer",
                   "a_optimizer", "method_state", "metrics", "rng")
#: The mid-epoch checkpoint (`--checkpoint-every`): written inside an epoch, removed once the epoch's is written.
STEP_CHECKPOINT = "checkpoint.step.pt"
#: Files that show a folder holds (part of) an earlier run.
RUN_FILES = ("metrics.jsonl", "result.json")
#: Fields that may change between a run and its resumption (everything else must match). Not --epochs:
#: the cosine lr and the methods' schedules of finished epochs depend on it (see SearchRun._restore).
RESUMABLE_CHANGES = {"resume", "out", "device", "progress", "log_every", "loader", "data_dir", "checkpoint_every",
                     "nb201", "eval_images", "debug_nan_step", "debug_nan_seed", "fast", "deterministic",
                     "threads"}


class RunError(Exception):
    """A user-facing failure: printed as one line on stderr, exit code `code`, no traceback."""

    code = 2


class NonFiniteLoss(RunError):
    code = 3


class RunFinished(RunError):
    """`--resume` on a finished run: said on stdout, exit 0, nothing written."""

    code = 0


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed random, numpy, torch (CPU and CUDA); deterministic cuDNN unless asked otherwise."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RunError(f"unknown --device {name!r} (use auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"--device {name} asked for, but torch sees no CUDA device (use --device cpu)")
    return device


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _jsonable(x: Any) -> Any:
    """A schedule value as plain JSON (`json_safe`), a one-element tensor as its number."""
    return json_safe(x.item() if isinstance(x, Tensor) and x.numel() == 1 else x)


def _write_fault(path: Path, err: Exception, kept: str) -> RunError:
    why = getattr(err, "strerror", None) or str(err).splitlines()[0][:120]
    return RunError(f"cannot write {path} ({why}); the partial file was removed and {kept}")


def write_json(path: Path, obj: Any) -> None:
    """Write strict JSON atomically (temp file + rename; NaN/inf as null), so a kill never leaves half a
    file and a full disk leaves no temp file."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text))
    except OSError as err:
        raise _write_fault(path, err, f"{path.name} is as before") from None


class RunDir:
    """The run directory: args.json, metrics.jsonl, checkpoint.pt, result.json."""

    #: The run directory opened last in this process (what an interrupt message speaks of).
    current: RunDir | None = None
    #: Every run directory this process opened and has not abandoned (a --seeds run: one per replica).
    opened: list[RunDir] = []

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"--out {self.path} exists and is not a directory")
        #: the folders this run creates, and the files it may change while it starts (`abandon` restores them)
        self._made_dirs = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._before = {name: _read_or_none(self.path / name) for name in ("args.json", "metrics.jsonl", "log.txt")}
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create run directory {self.path}: {err.strerror}") from None
        self.checkpoint = self.path / "checkpoint.pt"
        self.digests = DigestFile(self.checkpoint)  # checkpoint.pt.sha256
        self.metrics = self.path / "metrics.jsonl"
        self.saved_epoch: int | None = None  # epoch of the checkpoint on disk, once known
        self.step_checkpoint = self.path / STEP_CHECKPOINT  # the mid-epoch one (--checkpoint-every)
        self.step_digests = DigestFile(self.step_checkpoint)
        self.saved_step: tuple[int, int] | None = None  # (epoch, step in it) of the step checkpoint on disk
        RunDir.current = self
        self.log_file = self.path / "log.txt"
        self.lock: RunLock | None = None
        try:  # one writer per run directory, for the run's life (released by release())
            self.lock = RunLock(self.path)
        except RunLocked:
            raise RunError(f"another run is writing to {self.path} (it holds {self.path / RunLock.NAME}); "
                           f"wait for it to end or choose another --out") from None
        except OSError as err:
            self.abandon()
            raise RunError(f"cannot write in run directory {self.path}: {err.strerror}") from None
        RunDir.opened.append(self)

    def release(self) -> None:
        """Release the run directory's lock and delete `.lock` (the run is over)."""
        if self.lock is not None:
            self.lock.release()

    def abandon(self) -> None:
        """A refused start or resume: leave the folder as it was before this run opened it (args.json,
        metrics.jsonl, log.txt as they were, no `.lock` it made, no folder it made), and release the lock."""
        for name, before in self._before.items():
            path = self.path / name
            try:
                if before is None:
                    path.unlink(missing_ok=True)
                elif _read_or_none(path) != before:
                    atomic_write(path, lambda tmp, data=before: tmp.write_bytes(data))
            except OSError:  # a full disk: as much as can be restored
                pass
        if self.lock is not None:
            self.lock.release(remove=self.lock.created)
        for folder in self._made_dirs:  # the deepest first
            try:
                folder.rmdir()
            except OSError:  # not empty (another run's files), or gone
                break
        if RunDir.current is self:
            RunDir.current = None
        if self in RunDir.opened:
            RunDir.opened.remove(self)

    def log_only(self, text: str) -> None:
        """Append `text` to log.txt only (a line said on stderr), never failing (a full disk: skipped)."""
        if self.lock is None or not self.lock.held or _is_stdout(self.log_file):
            return
        try:
            with self.log_file.open("a") as f:
                f.write(text + "\n")
        except OSError:
            pass

    def earlier_run_files(self, cfg: Any) -> list[str]:
        """Files of an earlier run that a fresh start would replace: metrics/result, or an args.json
        of another config (an args.json of this very config is what a kill in epoch 1 leaves)."""
        found = [name for name in RUN_FILES if (self.path / name).exists()]
        args_file = self.path / "args.json"
        if args_file.exists():
            try:
                old = json.loads(args_file.read_text())
            except (OSError, ValueError):
                old = None
            new = json.loads(json.dumps(json_safe(config_dict(cfg))))
            if not isinstance(old, dict) or any(old.get(k) != v for k, v in new.items()
                                                 if k not in RESUMABLE_CHANGES):
                found.insert(0, "args.json")
        return found

    def config_difference(self, cfg: Any) -> str | None:
        """The first flag whose value in args.json differs from `cfg`'s ("--epochs 2, not 50"), of those a
        resume may not change; None when they agree or args.json is missing or unreadable."""
        try:
            old = json.loads((self.path / "args.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(old, dict):
            return None
        new = json.loads(json.dumps(json_safe(config_dict(cfg))))
        for key, value in new.items():
            if key not in RESUMABLE_CHANGES and key in old and old[key] != value:
                return f"--{key.replace('_', '-')} {old[key]}, not {value}"
        return None

    def log(self, text: str) -> None:
        """Print `text` on stdout and append it to log.txt (kept across resumes), unless stdout is log.txt."""
        if not _is_stdout(self.log_file):  # the file first: a run killed right after the print keeps the line
            try:
                with self.log_file.open("a") as f:
                    f.write(text + "\n")
            except OSError as err:  # a full disk: one line, as for the checkpoint
                raise RunError(f"cannot write {self.log_file} ({err.strerror or err}); "
                               f"{self.kept_checkpoint()}") from None
        try:
            print(text, flush=True)
        except BrokenPipeError:  # stdout closed by a reader (`| head`): the run goes on, log.txt has the lines
            _silence_stdout()

    def refuse_earlier_run(self, cfg: Any) -> None:
        """Raise RunError when a fresh start would replace files of an earlier run (`earlier_run_files`),
        e.g. a copied record without its checkpoint; call it when there is no checkpoint to resume."""
        earlier = self.earlier_run_files(cfg)
        if earlier:
            raise RunError(f"{self.path} holds {', '.join(earlier)} of an earlier run but no checkpoint.pt "
                           f"to resume from; nothing was changed: choose another --out or move them away")

    def load_checkpoint(self, keys: Sequence[str] = CHECKPOINT_KEYS) -> dict[str, Any] | None:
        """The checkpoint (None if there is none), checked: sha256, version, the entries `keys`, finite."""
        if not self.checkpoint.exists():
            return None
        move = "the file is kept; move it away to start over"
        state = _read_verified(self.digests, move, " (a changed byte or a partial copy)")
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise RunError(f"checkpoint {self.checkpoint} is not a checkpoint of this version of the code")
        missing = [k for k in keys if k not in state]
        if missing:
            raise RunError(f"checkpoint {self.checkpoint} has no {', '.join(missing)} entry: it is incomplete "
                           f"and cannot be resumed; {move}")
        _refuse_nonfinite(self.checkpoint, state, f": it is not a good checkpoint and cannot be resumed; {move}")
        self.saved_epoch = state["epoch"]
        return state

    def kept_checkpoint(self) -> str:
        """What is on disk, in words, for a message after a failure."""
        if self.saved_step is not None:
            epoch, step = self.saved_step
            return (f"the last good checkpoint (epoch {epoch + 1}, step {step}) is kept in {self.step_checkpoint}"
                    + (f" beside {self.checkpoint.name} (after epoch {self.saved_epoch})" if self.saved_epoch else ""))
        if self.saved_epoch is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (after epoch {self.saved_epoch}) is kept in {self.checkpoint}"

    def load_step_checkpoint(self, epoch: int) -> dict[str, Any] | None:
        """The mid-epoch checkpoint of (0-based) `epoch`, checked like `load_checkpoint`; None if there is
        none, or if it is one of an earlier epoch (a kill after the epoch's checkpoint, before its removal)."""
        if not self.step_checkpoint.exists():
            return None
        move = "the file is kept; move it away to resume from the last epoch's checkpoint"
        state = _read_verified(self.step_digests, move)
        keys = (*CHECKPOINT_KEYS, "step_in_epoch", "trackers")
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION or \
                any(k not in state for k in keys):
            raise RunError(f"checkpoint {self.step_checkpoint} is not a complete mid-epoch checkpoint of this "
                           f"version of the code; {move}")
        if state["epoch"] < epoch:
            return None
        if state["epoch"] > epoch:
            raise RunError(f"checkpoint {self.step_checkpoint} is of epoch {state['epoch'] + 1}, but "
                           f"{self.checkpoint.name} ends before epoch {epoch + 1}; {move}")
        _refuse_nonfinite(self.step_checkpoint, state, f"; {move}")
        self.saved_step = (state["epoch"], state["step_in_epoch"])
        return state

    def save_step_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the mid-epoch checkpoint atomically, as `save_checkpoint` writes checkpoint.pt."""
        tmp = self.step_checkpoint.with_name(self.step_checkpoint.name + ".tmp")
        try:
            torch.save(state, tmp)
            self.step_digests.replace_target(tmp)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, (OSError, RuntimeError)):
                raise _write_fault(self.step_checkpoint, err, self.kept_checkpoint()) from None
            raise
        self.saved_step = (state["epoch"], state["step_in_epoch"])

    def drop_step_checkpoint(self) -> None:
        """Remove the mid-epoch checkpoint (the epoch's own checkpoint now holds more)."""
        self.step_checkpoint.unlink(missing_ok=True)
        self.step_digests.path.unlink(missing_ok=True)
        self.saved_step = None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write checkpoint.pt atomically with its sha256 in checkpoint.pt.sha256; on a write failure
        (full disk) remove the partial file and stop with one line, the previous checkpoint intact."""
        tmp = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        try:
            torch.save(state, tmp)
            self.digests.replace_target(tmp)  # the rename, with the sidecar true before and after
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, (OSError, RuntimeError)):  # torch's writer reports a full disk as RuntimeError
                raise _write_fault(self.checkpoint, err, self.kept_checkpoint()) from None
            raise
        self.saved_epoch = state["epoch"]

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records)
        try:
            atomic_write(self.metrics, lambda tmp: tmp.write_text(text))
        except OSError as err:
            raise _write_fault(self.metrics, err, f"{self.metrics.name} is as before") from None


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError:
        return None


def _read_verified(digests: DigestFile, move: str, mismatch: str = "") -> Any:
    """What the checkpoint `digests.target` holds, read after its sha256 is checked against the sidecar
    `digests` (none: a checkpoint of older code, not checked).

    Raises:
        RunError: the file cannot be read, its sha256 is not an accepted one (the message says so, then
            `mismatch`), or it does not unpickle; the corrupt file's messages end with `move` (what to do).
    """
    path = digests.target
    try:
        if digests.matches() is False:
            raise RunError(f"checkpoint {path} is corrupt: its sha256 is not the one in "
                           f"{digests.path.name}{mismatch}; {move}")
        return torch.load(path, map_location="cpu", weights_only=False)
    except OSError as err:
        raise RunError(f"cannot read checkpoint {path} ({err.strerror or err})") from None
    except RunError:
        raise
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "corrupt"
        raise RunError(f"checkpoint {path} is corrupt and cannot be resumed "
                       f"({type(err).__name__}); {move}") from None


def _refuse_nonfinite(path: Path, state: Mapping[str, Any], then: str) -> None:
    """RunError "checkpoint `path` holds non-finite values (the first names)`then`" when the checkpoint
    `state`'s model holds NaN/inf."""
    bad = _nonfinite(state["model"]) if isinstance(state["model"], Mapping) else []
    if bad:
        raise RunError(f"checkpoint {path} holds non-finite values ({', '.join(bad[:3])}){then}")


def _nonfinite(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors holding NaN/inf (one host sync for all of them)."""
    named = [(k, t) for k, t in tensors.items() if isinstance(t, Tensor) and t.is_floating_point()]
    if not named:
        return []
    ok = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()
    return [] if bool(ok.all()) else [k for (k, _), good in zip(named, ok.tolist()) if not good]


def _silence_stdout() -> None:
    """Send stdout to /dev/null (after a broken pipe), so later prints and the exit flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    finally:
        os.close(devnull)


def _is_stdout(path: Path) -> bool:
    """Whether stdout already writes to `path` (run_all.sh sends a run's output to its log.txt)."""
    try:
        return path.exists() and os.path.samestat(os.fstat(sys.stdout.fileno()), path.stat())
    except (OSError, ValueError, AttributeError):  # no real file behind stdout (pytest capture, closed)
        return False


def finished_run(out: str | Path, epochs: int) -> str | None:
    """The one-line answer for `--resume` on a run whose result.json covers `epochs` epochs, else None."""
    try:
        result = json.loads((Path(out) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("epochs") != epochs:
        return None
    return (f"{out} holds a finished run ({epochs} of {epochs} epochs, result.json); nothing to resume, "
            "nothing changed")


def _load_table(path: str | None):
    if not path:
        return None
    from common.nb201 import NB201Table  # the official API is imported only when a table is asked for
    try:
        table = NB201Table.load(path)
    except (OSError, ValueError) as err:  # missing, unreadable or malformed table
        raise RunError(str(err).splitlines()[0]) from None
    if not table.complete:
        print(f"note: {table.coverage()}", file=sys.stderr)
    return table


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a scheduler's time limit) ends a run as Ctrl-C does


CPU_STEPS_TIMED = 3  # the first is warm-up; the median of the others is the step time
CPU_NOTE_FROM_S = 600.0  # say the cost when the search would take longer than this


def cpu_cost_note(step_s: float, steps_left: int, threads: int = 1,
                  free_cores: int | Callable[[], int] | None = None) -> str | None:
    """"about N h on this CPU" from a measured step time, when the search is long; else None.

    The note names the thread count; when other work leaves fewer free cores than threads (`free_cores`, or a
    function measuring them, common.threads.free_cores_now, called only when the note is due: it sleeps
    0.55 s) it says to lower --threads, since threads waiting for a core can make a step ten times slower;
    else what to try if the step is far slower than this machine should manage."""
    total = step_s * steps_left
    if total < CPU_NOTE_FROM_S:
        return None
    free_cores = free_cores() if callable(free_cores) else free_cores
    size = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    if free_cores is not None and threads > free_cores:
        advice = (f"other work now leaves {free_cores} core{'s' if free_cores > 1 else ''} free for {threads} "
                  f"threads: try --threads {free_cores}")
    else:
        advice = "if that is far slower than this machine should be, other work may share its cores: try --threads 1"
    return (f"note: a step takes {step_s:.3g} s on this CPU with {threads} thread{'s' if threads > 1 else ''} "
            f"(measured); the {steps_left:,} steps left take about {size} here, without the per-epoch evaluation; "
            f"use a GPU or --preset smoke; {advice}")


EPOCH_LEGEND = ("  (per epoch: train/valid = supernet accuracy on the w/α batches; discrete = the derived cell, "
                "one-hot, on the valid half; H = mean edge entropy of the op weights used, nats, ln M = uniform; "
                "NB201 C10 test = the derived cell's 200-epoch CIFAR-10 test accuracy)")


def epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    """The plain per-epoch log line (H: mean edge entropy of the op weights used, nats)."""
    nb201 = record.get("nb201") or {}
    acc = nb201.get("cifar10_test")
    return (f"epoch {record['epoch']}/{epochs}  train {record['train_acc']:.1f}%  valid {record['valid_acc']:.1f}%  "
            f"discrete {record['discrete_valid_acc']:.1f}%  H {record['op_entropy_mean']:.3f}"
            + (f"  NB201 C10 test {acc:.2f}" if acc is not None else "") + f"  ({record['time']:.1f} s)")


def main_guard(main: Callable[[], Any]) -> None:
    """Run `main()`; turn user-facing errors into one line on stderr and a non-zero exit.

    SIGTERM is handled as Ctrl-C: the same message and exit code 130.
    """
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        signal.signal(signal.SIGTERM, _terminated)
    try:
        main()
    except RunFinished as done:  # --resume on a finished run: not an error
        print(done)
        sys.exit(0)
    except (RunError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        end_runs()
        sys.exit(getattr(err, "code", 2))
    except KeyboardInterrupt:
        kept = RunDir.current.kept_checkpoint() if RunDir.current is not None else "nothing was written yet"
        print(f"interrupted; {kept}: rerun with --resume", file=sys.stderr)
        end_runs(lambda d: f"interrupted; {d.kept_checkpoint()}: rerun with --resume")
        sys.exit(130)


def end_runs(line: Callable[[RunDir], str] | None = None) -> None:
    """The process ends its runs: `line(dir)` appended to each one's log.txt (the line said on stderr), and
    each one's lock released and deleted."""
    for run_dir in list(RunDir.opened):
        if line is not None:
            run_dir.log_only(line(run_dir))
        run_dir.release()
    RunDir.opened.clear()
