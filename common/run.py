"""Run infrastructure shared by the four search scripts.

`SearchRun(cfg)` builds everything a search needs (data split and loaders, supernet, optimisers,
NB201 table, run directory) and resumes from the run directory's checkpoint when asked. A method's
loop then reads:

    run = SearchRun(cfg, method_state={"t": 1.0})
    for epoch in run.epochs():
        fwd = run.forward(lambda: my_weights(run.model.alphas, t))  # t: this epoch's value

        def bilevel(x_t, y_t, x_v, y_v):  # → (train loss, train logits, valid loss, valid logits)
            return run.ordered(lambda: w_step(fwd, x_t, y_t, run.w_params, run.w_optimizer, cfg.grad_clip),
                               lambda: alpha_step(fwd, x_v, y_v, run.a_params, run.a_optimizer))
        for batch in run.steps():
            run.step(bilevel, *batch)  # eager, or a replayed CUDA graph with --cuda-graphs
        run.end_epoch(used_weights, {"temperature": t}, derive_temperature=t)  # genotype ranks softmax(α/t)
    run.finish()

Files in the run directory: `args.json` (the resolved config), `metrics.jsonl` (one record per epoch,
names in README "Metrics"), `checkpoint.pt` (written atomically after every epoch: model with α,
optimisers, RNG states, the method's `method_state`, the metrics so far) with its sha256 in
`checkpoint.pt.sha256`, `result.json` at the end, and the empty `.lock` that one run at a time holds
(common/safeio.py). JSON files hold no NaN/inf (written as null).

`--step-order alpha-first` runs each step's α half before its w half (`run.ordered`); `--valid-batch
random` gives every step's α half a fresh random batch of the valid half (`random_valid_batch`) from a
generator of the run, seeded `--seed + VALID_SEED_OFFSET` and checkpointed (`valid_generator`), so a killed
and resumed run draws what the uninterrupted one draws; with `--seeds` each replica draws from its own.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from common.config import SearchConfig, config_dict
from common.data import (
    CIFAR10_URL,
    CIFAR100_URL,
    MEAN,
    NUM_CLASSES,
    STD,
    DataError,
    make_loader,
    search_split,
)
from common.genotypes import Genotype, derive_from_alphas, genotype_param_count, genotype_to_json
from common.graphs import StepGraphs
from common.safeio import DigestFile, RunLock, RunLocked, atomic_write, json_safe
from common.search import cosine_lr, entropy_stats, evaluate, ordered_step, softmax_weights
from common.supernet import Supernet, build_supernet

CHECKPOINT_VERSION = 1
#: Entries every checkpoint of this version holds (a checkpoint lacking one cannot be resumed).
CHECKPOINT_KEYS = ("version", "config", "epoch", "global_step", "wall_time", "model", "w_optimizer",
                   "a_optimizer", "method_state", "metrics", "rng")
#: Files that show a folder holds (part of) an earlier run.
RUN_FILES = ("metrics.jsonl", "result.json")
#: Fields that may change between a run and its resumption (everything else must match). Not --epochs:
#: the cosine lr and the methods' schedules of finished epochs depend on it (see SearchRun._restore).
RESUMABLE_CHANGES = {"resume", "out", "device", "progress", "log_every", "loader", "data_dir",
                     "nb201", "eval_images", "debug_nan_step", "debug_nan_seed", "fast", "deterministic"}
#: `--valid-batch random`: the seed of a run's valid-batch generator is --seed plus this.
VALID_SEED_OFFSET = 104729


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

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"--out {self.path} exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunError(f"cannot create run directory {self.path}: {err.strerror}") from None
        self.checkpoint = self.path / "checkpoint.pt"
        self.digests = DigestFile(self.checkpoint)  # checkpoint.pt.sha256
        self.metrics = self.path / "metrics.jsonl"
        self.saved_epoch: int | None = None  # epoch of the checkpoint on disk, once known
        RunDir.current = self
        self.log_file = self.path / "log.txt"
        try:  # one writer per run directory, for the run's life (released by release())
            self.lock: RunLock | None = RunLock(self.path)
        except RunLocked:
            raise RunError(f"another run is writing to {self.path} (it holds {self.path / RunLock.NAME}); "
                           f"wait for it to end or choose another --out") from None
        except OSError as err:
            raise RunError(f"cannot write in run directory {self.path}: {err.strerror}") from None

    def release(self) -> None:
        """Release the run directory's lock (the run is over)."""
        if self.lock is not None:
            self.lock.release()

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
        try:
            if self.digests.matches() is False:  # None: no sidecar (a checkpoint of older code)
                raise RunError(f"checkpoint {self.checkpoint} is corrupt: its sha256 is not the one in "
                               f"{self.digests.path.name} (a changed byte or a partial copy); {move}")
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except OSError as err:
            raise RunError(f"cannot read checkpoint {self.checkpoint} ({err.strerror or err})") from None
        except RunError:
            raise
        except Exception as err:  # noqa: BLE001 - any unpickling failure means "corrupt"
            raise RunError(f"checkpoint {self.checkpoint} is corrupt and cannot be resumed "
                           f"({type(err).__name__}); {move}") from None
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise RunError(f"checkpoint {self.checkpoint} is not a checkpoint of this version of the code")
        missing = [k for k in keys if k not in state]
        if missing:
            raise RunError(f"checkpoint {self.checkpoint} has no {', '.join(missing)} entry: it is incomplete "
                           f"and cannot be resumed; {move}")
        bad = _nonfinite(state["model"]) if isinstance(state["model"], Mapping) else []
        if bad:
            raise RunError(f"checkpoint {self.checkpoint} holds non-finite values ({', '.join(bad[:3])}): it "
                           f"is not a good checkpoint and cannot be resumed; {move}")
        self.saved_epoch = state["epoch"]
        return state

    def kept_checkpoint(self) -> str:
        """What is on disk, in words, for a message after a failure."""
        if self.saved_epoch is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (after epoch {self.saved_epoch}) is kept in {self.checkpoint}"

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


class SearchRun:
    """Everything one search needs, and the bookkeeping around the method's own loop.

    Args:
        cfg: the resolved config.
        method_state: the method's schedule state (temperatures, moving averages, generator states…);
            saved in every checkpoint and restored on resume — mutate it in place.
        script: name of the run directory's parent (default: the running script's name).
    """

    def __new__(cls, cfg: SearchConfig, *args: Any, **kwargs: Any) -> SearchRun:
        if cls is SearchRun and getattr(cfg, "seeds", None):  # --seeds: S searches as one batched computation
            from common.replicas import ReplicaRun
            cls = ReplicaRun
        return super().__new__(cls)

    def __init__(self, cfg: SearchConfig, method_state: dict[str, Any] | None = None,
                 script: str | None = None) -> None:
        from common.config import script_name
        self.cfg = cfg
        self.script = script or script_name()
        self.method_state: dict[str, Any] = dict(method_state or {})
        self.device = resolve_device(cfg.device)
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise RunError(f"--cuda-graphs needs a CUDA device (this run is on {self.device})")
        out = cfg.out or f"runs/{self.script}/{cfg.space}-{cfg.dataset}-seed{cfg.seed}"
        if cfg.resume and (done := finished_run(out, cfg.epochs)):
            raise RunFinished(done)
        self._start_time = time.perf_counter()
        self.table = _load_table(cfg.nb201)  # a missing table fails now, not after hours
        if Path(out).exists() and not Path(out).is_dir():
            raise RunError(f"--out {out} exists and is not a directory")
        self._build_data()  # missing/corrupt data fails before the run directory is created
        self.dir = RunDir(out)  # locked: a second run on this --out stops here
        checkpoint = self.dir.load_checkpoint() if cfg.resume else None
        if checkpoint is None and self.dir.checkpoint.exists():
            raise RunError(f"{self.dir.path} already holds a run; pass --resume to continue it "
                           f"or choose another --out")
        if checkpoint is None:
            self.dir.refuse_earlier_run(cfg)
        seed_everything(cfg.seed, cfg.deterministic)
        self.model: Supernet = build_supernet(cfg.space, cfg.C, cfg.N, NUM_CLASSES[cfg.dataset],
                                              cfg.partial_channels, fast=cfg.fast, alpha_init_std=cfg.alpha_init,
                                              alpha_init_mean=cfg.alpha_init_mean,
                                              gdas_form=getattr(cfg, "gdas_form", None)).to(self.device)  # GdasConfig
        self.channels_last = cfg.fast and cfg.partial_channels == 1  # PC's slicing/shuffle is slower in it
        if self.channels_last:  # ~30% faster convs on CPU (mkldnn) and on tensor-core GPUs
            self.model = self.model.to(memory_format=torch.channels_last)
        self.w_params = self.model.weight_parameters()
        self.a_params = self.model.arch_parameters()
        self.w_optimizer = torch.optim.SGD(self.w_params, cfg.w_lr, momentum=cfg.w_momentum,
                                           weight_decay=cfg.w_wd, nesterov=cfg.w_nesterov and cfg.w_momentum > 0)
        self.a_optimizer = torch.optim.Adam(self.a_params, cfg.a_lr, betas=(cfg.a_beta1, 0.999),
                                            weight_decay=cfg.a_wd, capturable=cfg.cuda_graphs)
        self.graphs = StepGraphs(cfg.cuda_graphs)
        self.valid_generator: torch.Generator | None = None  # --valid-batch random: this run's draws
        if cfg.valid_batch == "random":
            self.valid_generator = torch.Generator().manual_seed(cfg.seed + VALID_SEED_OFFSET)
        self.start_epoch, self.global_step, self.wall_time = 0, 0, 0.0
        self.records: list[dict[str, Any]] = []
        if checkpoint is not None:
            self._restore(checkpoint)
            self.dir.log(f"resuming from epoch {self.start_epoch + 1} of {cfg.epochs} ({self.start_epoch} done; "
                         f"checkpoint {self.dir.checkpoint})")
        else:
            self.dir.log(f"search: {self.script}, {cfg.space} on {cfg.dataset}, {cfg.epochs} epochs, "
                         f"seed {cfg.seed}, {self.device}; run directory {self.dir.path}")
            write_json(self.dir.path / "args.json", {**config_dict(cfg), "script": self.script,
                                                     "argv": sys.argv, "torch": torch.__version__})
        self.dir.log(EPOCH_LEGEND)
        self.epoch = self.start_epoch
        self._step_clock: float | None = 0.0  # None once the CPU cost has been measured
        self._step_times: list[float] = []
        self._reset_trackers()

    # ------------------------------------------------------------------ set-up
    def _build_data(self) -> None:
        cfg = self.cfg
        if cfg.dataset != "synthetic" and not Path(cfg.data_dir).is_dir() and cfg.data_dir != SearchConfig.data_dir:
            raise RunError(f"--data-dir {cfg.data_dir} does not exist (nothing created): it is the folder holding "
                           "cifar-10-batches-py/, cifar-100-python/ or ImageNet16/ (beside this clone: --data-dir "
                           f"../shared/data); to download CIFAR there, create it first (mkdir -p {cfg.data_dir}) "
                           f"or extract {CIFAR10_URL.rsplit('/', 1)[1]} / {CIFAR100_URL.rsplit('/', 1)[1]} into it")
        try:
            (x_t, y_t), (x_v, y_v) = search_split(cfg.dataset, cfg.data_dir, cfg.limit_train)
        except DataError as err:
            raise RunError(str(err)) from None
        common = dict(device=self.device, mean=MEAN[cfg.dataset], std=STD[cfg.dataset])
        self.train_loader = make_loader(cfg.loader, x_t, y_t, cfg.batch_size, augment=True, cutout=cfg.cutout,
                                        shuffle=True, drop_last=True, seed=cfg.seed, **common)
        self.valid_loader = make_loader(cfg.loader, x_v, y_v, cfg.batch_size, augment=True, cutout=cfg.cutout,
                                        shuffle=True, drop_last=True, seed=cfg.seed + 7919, **common)
        n_eval = len(x_v) if cfg.eval_images <= 0 else min(cfg.eval_images, len(x_v))
        self.eval_loader = make_loader(cfg.loader, x_v[:n_eval], y_v[:n_eval], max(cfg.batch_size, 256),
                                       augment=False, shuffle=False, drop_last=False, seed=0, **common)
        if len(self.train_loader) == 0:
            raise RunError(f"the train half has {len(x_t)} images, fewer than one batch of "
                           f"{cfg.batch_size}; raise --limit-train or lower --batch-size")

    def _restore(self, ckpt: dict[str, Any]) -> None:
        old = ckpt["config"]
        if old.get("epochs") != self.cfg.epochs:  # refused, not extended: see README "Run directory"
            raise RunError(f"checkpoint {self.dir.checkpoint} belongs to a {old.get('epochs')}-epoch search "
                           f"({ckpt['epoch']} done), not --epochs {self.cfg.epochs}: the lr and schedules of "
                           f"its finished epochs depend on the total; resume with --epochs {old.get('epochs')} "
                           f"or start the longer search in another --out")
        for key, value in config_dict(self.cfg).items():
            was = old[key] if key in old else self.cfg.former_value(key)  # a flag added since the checkpoint
            if key not in RESUMABLE_CHANGES and was != value:
                raise RunError(f"checkpoint {self.dir.checkpoint} was made with --{key.replace('_', '-')} "
                               f"{was}, not {value}: it is incompatible; use another --out")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.w_optimizer.load_state_dict(ckpt["w_optimizer"])
            self.a_optimizer.load_state_dict(ckpt["a_optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise RunError(f"checkpoint {self.dir.checkpoint} does not fit this model "
                           f"({str(err).splitlines()[0][:120]})") from None
        self.start_epoch, self.global_step = ckpt["epoch"], ckpt["global_step"]
        self.wall_time = ckpt["wall_time"]
        self.method_state.update(ckpt["method_state"])
        if self.valid_generator is not None:
            if not isinstance(ckpt.get("valid_generator"), Tensor):
                raise RunError(f"checkpoint {self.dir.checkpoint} has no valid_generator entry (--valid-batch "
                               f"random): it cannot be resumed; the file is kept: move it away to start over")
            self.valid_generator.set_state(ckpt["valid_generator"])
        self.records = list(ckpt["metrics"])
        try:
            set_rng_state(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise RunError(f"checkpoint {self.dir.checkpoint} has an unusable rng entry ({type(err).__name__}); "
                           f"it cannot be resumed; the file is kept: move it away to start over") from None
        self.dir.write_metrics(self.records)  # drop any record written after the checkpoint

    # ------------------------------------------------------------------ the loop
    def epochs(self) -> Iterator[int]:
        """Epoch numbers still to run (0-based); sets the cosine lr of w and the loaders' epoch."""
        cfg = self.cfg
        for epoch in range(self.start_epoch, cfg.epochs):
            self.epoch = epoch
            lr = cfg.w_lr if cfg.w_lr_min is None else cosine_lr(epoch, cfg.epochs, cfg.w_lr, cfg.w_lr_min)
            for group in self.w_optimizer.param_groups:
                group["lr"] = lr
            self.train_loader.set_epoch(epoch)
            self.valid_loader.set_epoch(epoch)
            self.graphs.reset()  # the lr (and the method's per-epoch values) baked into graphs change
            self._epoch_start = time.perf_counter()
            yield epoch

    # ------------------------------------------------------------------ per replica (--seeds, common/replicas.py)
    @property
    def seeds(self) -> list[int]:
        """The seeds this run searches: [cfg.seed] (a ReplicaRun: one per replica)."""
        return [self.cfg.seed]

    def per_replica(self, fn: Callable[[SearchRun], Any]) -> Any:
        """`fn(run)` for every replica's own single run (here: `fn(self)`); a ReplicaRun combines them."""
        return fn(self)

    def replica_values(self, key: str) -> list[Any]:
        """`method_state[key]` of every replica (None where unset): here [method_state.get(key)]."""
        return [self.method_state.get(key)]

    def set_replica_values(self, key: str, values: list[Any]) -> None:
        """Sets `method_state[key]` of every replica (values in `seeds` order)."""
        self.method_state[key] = values[0]

    def replica_number(self, values: list[float], like: Tensor) -> float | Tensor:
        """One number per replica as a step uses it: here the float itself (a ReplicaRun: an (S, 1, 1)
        tensor of `like`'s dtype and device, broadcasting against stacked (S, E, M) α)."""
        return values[0]

    def global_generators(self) -> list[torch.Generator] | None:
        """What a step's draws from the global RNG (GDAS's Gumbel noise) pass as `generator`: here None, the
        global RNG itself (a ReplicaRun: one generator per replica holding its single run's global RNG)."""
        return None

    @property
    def clip_extra(self) -> list[torch.nn.Parameter] | None:
        """`w_step`'s `norm_extra`: α with `--clip-scope official` (NB201's clip of network.parameters())."""
        return self.a_params if self.cfg.clip_scope == "official" else None

    @property
    def w_lr(self) -> float:
        """The current learning rate of w (ξ of the unrolled step)."""
        return self.w_optimizer.param_groups[0]["lr"]

    def steps(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(x_train, y_train, x_valid, y_valid) batches of this epoch, with a progress bar (the valid batch:
        the valid loader's next, or with --valid-batch random `random_valid_batch`)."""
        from tqdm import tqdm
        cfg = self.cfg
        valid_iter = iter(self.valid_loader) if self.valid_generator is None else iter(())
        self._step_clock = time.perf_counter() if self._step_clock is not None else None
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and sys.stderr.isatty()), dynamic_ncols=True)  # bars: terminal only
        for x_t, y_t in bar:
            if self.valid_generator is not None:  # --valid-batch random
                x_v, y_v = self.random_valid_batch(self.global_step)
            else:
                try:
                    x_v, y_v = next(valid_iter)
                except StopIteration:
                    valid_iter = iter(self.valid_loader)
                    x_v, y_v = next(valid_iter)
            if cfg.debug_nan_step is not None and self.global_step == cfg.debug_nan_step:
                x_t = x_t * float("nan")
            yield x_t, y_t, x_v, y_v
            self.global_step += 1
            self.step_in_epoch += 1
            self._time_cpu_step()
            if self.device.type == "cpu" or self.global_step % cfg.log_every == 0:
                self.check_finite()
                if not bar.disable:  # a shown bar only: running_means reads the sums on the host
                    bar.set_postfix(self.running_means(), refresh=False)

    def random_valid_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """`--valid-batch random`: the first batch of a fresh shuffle of the valid half, as the DARTS code's
        `next(iter(valid_queue))` (a SubsetRandomSampler: torch.randperm, first batch-size indices), drawn
        from this run's `valid_generator`; augmented with draws seeded by (seed, `step`)."""
        assert self.valid_generator is not None
        indices = torch.randperm(self.valid_loader.n, generator=self.valid_generator)[:self.cfg.batch_size]
        return self.valid_loader.pick(indices, step)

    def ordered(self, w: Callable[[], tuple[Tensor, Tensor]],
                alpha: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A bilevel step from its w half and α half in `--step-order` (`common.search.ordered_step`)."""
        return ordered_step(self.cfg.step_order, w, alpha)

    def _time_cpu_step(self) -> None:
        """On CPU, time the first steps and say once, up front, what the whole search will cost here."""
        if self.device.type != "cpu" or self.cfg.preset or self._step_clock is None:
            return
        now = time.perf_counter()
        self._step_times.append(now - self._step_clock)
        self._step_clock = now
        if len(self._step_times) == CPU_STEPS_TIMED:
            step_s = sorted(self._step_times[1:])[len(self._step_times[1:]) // 2]  # median, first one is warm-up
            left = len(self.train_loader) * (self.cfg.epochs - self.epoch) - self.step_in_epoch
            if (note := cpu_cost_note(step_s, left)) is not None:
                self.dir.log(note)
            self._step_clock = None

    def step(self, bilevel: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]],
             x_t: Tensor, y_t: Tensor, x_v: Tensor, y_v: Tensor, key: Hashable = None,
             capture: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One bilevel step `bilevel(x_t, y_t, x_v, y_v)` → (train loss, train logits, valid loss, valid
        logits), tracked. With --cuda-graphs it is captured once per `key` and epoch and replayed: it
        must then read no Python value that changes within the epoch other than through `key`, and
        `capture=False` keeps a step with host-side control flow (GDAS sampling) eager.
        """
        out = self.graphs(key, bilevel, x_t, y_t, x_v, y_v, capture=capture)
        self.track("train", out[0], out[1], y_t)
        self.track("valid", out[2], out[3], y_v)
        return out

    def register_generator(self, generator: torch.Generator) -> None:
        """A generator the step draws from besides the default one (needed for CUDA-graph capture)."""
        if generator.device.type == "cuda":
            self.graphs.register_generator(generator)

    def forward(self, weights_fn: Callable[[], Mapping[str, Tensor]],
                index: Mapping[str, list[int]] | None = None) -> Callable[[Tensor], Tensor]:
        """The closure x → logits that builds op weights from the current α on every call."""
        model, amp = self.model, self.cfg.amp == "bf16"
        cache = not self.cfg.cuda_graphs  # autocast's weight-cast cache must be off under graph capture
        layout = torch.channels_last if self.channels_last else torch.contiguous_format

        def fwd(x: Tensor) -> Tensor:
            x = x.contiguous(memory_format=layout)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=cache):
                out = model(x, weights_fn(), index)
            return out.float() if amp else out  # bf16 logits → fp32; fp32/fp64 as they are
        return fwd

    def _reset_trackers(self) -> None:
        self._sums = {s: torch.zeros(2, device=self.device, dtype=torch.float64) for s in ("train", "valid")}
        self._counts = {"train": 0, "valid": 0}
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self.step_in_epoch = 0

    def track(self, split: str, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        """Accumulate loss/accuracy of a step on the device (no host sync) and watch for NaN/inf."""
        n = y.numel()
        correct = (logits.argmax(-1) == y).sum()
        self._sums[split] += torch.stack([loss.double() * n, correct.double()])
        self._counts[split] += n
        bad = ~torch.isfinite(loss)
        self._first_bad = torch.where(bad & (self._first_bad < 0), self.global_step, self._first_bad)

    def check_finite(self) -> None:
        """Stop with the step number if a tracked loss was NaN/inf; the last checkpoint stays as it was."""
        first = int(self._first_bad.item())
        if first >= 0:
            raise NonFiniteLoss(f"loss became non-finite at global step {first} (epoch {self.epoch + 1}); "
                                f"stopped; {self.dir.kept_checkpoint()}")

    def check_parameters_finite(self) -> None:
        """Stop if w or α hold NaN/inf (a finite loss can still leave them so): never checkpoint them."""
        named = {**{f"w[{i}]": p for i, p in enumerate(self.w_params)},
                 **{f"alphas.{k}": a for k, a in self.model.alphas.items()}}
        bad = _nonfinite({k: p.detach() for k, p in named.items()})
        if bad:
            raise NonFiniteLoss(f"parameters became non-finite in epoch {self.epoch + 1} ({', '.join(bad[:3])}); "
                                f"stopped; {self.dir.kept_checkpoint()}")

    def running_means(self) -> dict[str, str]:
        out = {}
        for split, s in self._sums.items():
            (loss, correct), n = s.tolist(), self._counts[split]
            if n:
                out[f"{split}_loss"] = f"{loss / n:.3f}"
                out[f"{split}_acc"] = f"{100 * correct / n:.1f}"
        return out

    # ------------------------------------------------------------------ end of epoch
    def genotype(self, temperature: float = 1.0) -> str | Genotype:
        """The derived architecture, edges ranked by softmax(α/T) (× γ with edge normalisation), T =
        `temperature`, the method's training temperature; on NB201 the argmax of α itself."""
        return derive_from_alphas(self.model.alphas, self.model.space, temperature, self.model.edge_gammas(),
                                  self.cfg.exclude_none, self.cfg.derive_decimals, self.cfg.derive_ties)

    def discrete_weights(self, genotype: str | Genotype) -> dict[str, Tensor]:
        """One-hot op weights of the derived cell (dropped DARTS edges get all-zero rows)."""
        from common.genotypes import genotype_weights
        return genotype_weights(genotype, self.model.space, self.device)

    def discrete_accuracy(self, onehot: Mapping[str, Tensor]) -> float:
        """Accuracy (%) of the discretized net (the supernet with one-hot op weights, no γ) on the eval split
        (a ReplicaRun evaluates its replicas in one batched pass and hands each its value)."""
        model = self.model
        model.eval()  # BN uses batch statistics either way; eval() only matters for user-added layers
        _, acc = evaluate(lambda x: model(x, onehot, use_gammas=False), self.eval_loader)
        model.train()
        return acc

    def nb201_lookup(self, genotype: str | Genotype) -> dict[str, float] | None:
        """The six NB201 accuracies of a derived cell; None without a table, for a DARTS genotype, or for a
        cell a partial table lacks (then `nb201_missing` says so; see `nb201_missing`)."""
        if self.table is None or not isinstance(genotype, str) or self.nb201_missing(genotype):
            return None
        # a column the table lacks (the packaged one: imagenet16_valid) → null, not NaN
        return {k: v if math.isfinite(v) else None for k, v in self.table.query(genotype).items()}

    def nb201_missing(self, genotype: str | Genotype) -> bool:
        """True when a table is given but lacks this NB201 cell (a partial table)."""
        return self.table is not None and isinstance(genotype, str) and genotype not in self.table

    def end_epoch(self, used_weights: Mapping[str, Tensor], schedule: Mapping[str, Any] | None = None,
                  derive_temperature: float = 1.0) -> dict:
        """Measure, log one metrics record, checkpoint. `used_weights`: the op weights the method used;
        `derive_temperature`: T of the weights softmax(α/T) the genotype ranks edges by (the method's
        training temperature; recorded, and used again by `finish`)."""
        self.check_finite()
        self.check_parameters_finite()
        model, cfg = self.model, self.cfg
        record: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step, "lr": self.w_lr}
        for split, s in self._sums.items():
            (loss, correct), n = s.tolist(), self._counts[split]
            record[f"{split}_loss"] = loss / n if n else float("nan")
            record[f"{split}_acc"] = 100 * correct / n if n else float("nan")
        genotype = self.genotype(derive_temperature)
        record["derive_temperature"] = derive_temperature
        onehot = self.discrete_weights(genotype)
        record["discrete_valid_acc"] = self.discrete_accuracy(onehot)
        record["entropy_mean"], record["entropy_sum"] = entropy_stats(softmax_weights(model.alphas))
        record["op_entropy_mean"], record["op_entropy_sum"] = entropy_stats(used_weights)
        record.update({k: _jsonable(v) for k, v in (schedule or {}).items()})
        record["alphas"] = {k: a.detach().cpu().tolist() for k, a in model.alphas.items()}
        record["genotype"] = genotype_to_json(genotype)
        record["nb201"] = self.nb201_lookup(genotype)
        if self.nb201_missing(genotype):
            record["nb201_missing"] = True
        epoch_time = time.perf_counter() - self._epoch_start
        self.wall_time += epoch_time
        record["time"] = epoch_time
        self.records.append(record)
        self.dir.save_checkpoint({
            "version": CHECKPOINT_VERSION, "config": config_dict(cfg), "epoch": self.epoch + 1,
            "global_step": self.global_step, "wall_time": self.wall_time, "model": model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(), "a_optimizer": self.a_optimizer.state_dict(),
            "method_state": self.method_state, "metrics": self.records, "rng": rng_state(),
            **({"valid_generator": self.valid_generator.get_state()} if self.valid_generator is not None else {})})
        self.dir.write_metrics(self.records)
        self.dir.log(epoch_line(record, cfg.epochs))  # whatever --progress says
        self._reset_trackers()
        return record

    def finish(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write result.json (final genotype, NB201 accuracies, parameter count, wall time); the genotype
        is derived at the last epoch's `derive_temperature`."""
        genotype = self.genotype(self.records[-1].get("derive_temperature", 1.0) if self.records else 1.0)
        result: dict[str, Any] = {
            "genotype": genotype_to_json(genotype), "nb201": self.nb201_lookup(genotype),
            **({"nb201_missing": True} if self.nb201_missing(genotype) else {}),
            "param_count": genotype_param_count(genotype, num_classes=NUM_CLASSES.get(self.cfg.dataset, 10))
            if isinstance(genotype, Genotype) else None,
            "epochs": self.cfg.epochs, "steps": self.global_step, "wall_time_s": self.wall_time,
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "alphas": {k: a.detach().cpu().tolist() for k, a in self.model.alphas.items()},
            "final": self.records[-1] if self.records else None, **(extra or {})}
        write_json(self.dir.path / "result.json", result)
        from common.report import run_summary
        self.dir.log(run_summary(result, {**config_dict(self.cfg), "script": self.script}, self.dir.path,
                                 time.perf_counter() - self._start_time))
        self.dir.release()
        return result


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a scheduler's time limit) ends a run as Ctrl-C does


CPU_STEPS_TIMED = 3  # the first is warm-up; the median of the others is the step time
CPU_NOTE_FROM_S = 600.0  # say the cost when the search would take longer than this


def cpu_cost_note(step_s: float, steps_left: int) -> str | None:
    """"about N h on this CPU" from a measured step time, when the search is long; else None."""
    total = step_s * steps_left
    if total < CPU_NOTE_FROM_S:
        return None
    size = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    return (f"note: a step takes {step_s:.3g} s on this CPU (measured); the {steps_left:,} steps left take about "
            f"{size} here, without the per-epoch evaluation; use a GPU or --preset smoke")


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
        sys.exit(getattr(err, "code", 2))
    except KeyboardInterrupt:
        kept = RunDir.current.kept_checkpoint() if RunDir.current is not None else "nothing was written yet"
        print(f"interrupted; {kept}: rerun with --resume", file=sys.stderr)
        sys.exit(130)

