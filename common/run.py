"""One search run (one seed): data, supernet, optimisers, NB201 table, run directory, resume, metrics.

`SearchRun(cfg)` builds everything a search needs (data split and loaders, supernet, optimisers, NB201
table, run directory, common/rundir.py) and resumes from the run directory's checkpoint when asked. A
method's loop sees it through the harness (common/harness.py: `open_run`), which also batches `--seeds`
(common/replica_run.py, whose replicas are each a `SearchRun`). The pre-harness loop API (`run.forward`,
`run.ordered`, `run.steps`, `run.step`, `run.end_epoch`, `run.per_replica`, `run.replica_values`, …) works
on both kinds of run; `common.harness.build_run` is the one place that picks the single or the batched run.

`--step-order alpha-first` runs each step's α half before its w half (`run.ordered`); `--valid-batch
random` gives every step's α half a fresh random batch of the valid half (`random_valid_batch`) from a
generator of the run, seeded `--seed + VALID_SEED_OFFSET` and checkpointed (`valid_generator`), so a killed
and resumed run draws what the uninterrupted one draws; with `--seeds` each replica draws from its own.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

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
from common.evalnet import genotype_param_count
from common.fast import build_supernet
from common.genotypes import Genotype, derive_from_alphas, genotype_to_json
from common.graphs import StepGraphs
from common.loop import RunLoop, next_batch
from common.rundir import (  # noqa: F401 - re-exported: their home was this module
    CHECKPOINT_KEYS,
    CHECKPOINT_VERSION,
    CPU_STEPS_TIMED,
    EPOCH_LEGEND,
    RESUMABLE_CHANGES,
    RUN_FILES,
    NonFiniteLoss,
    RunDir,
    RunError,
    RunFinished,
    _jsonable,
    _load_table,
    _nonfinite,
    cpu_cost_note,
    epoch_line,
    finished_run,
    main_guard,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    write_json,
)
from common.search import entropy_stats, evaluate, ordered_step, softmax_weights
from common.summary import run_summary
from common.supernet import Supernet
from common.threads import apply_threads, free_cores_now, threads_text

#: `--valid-batch random`: the seed of a run's valid-batch generator is --seed plus this.
VALID_SEED_OFFSET = 104729


#: The smallest supernet width run in channels_last (see SearchRun: narrower ones run NCHW).
CHANNELS_LAST_MIN_C = 4


def default_out(script: str, cfg: SearchConfig) -> str:
    """The run directory without --out: runs/<script>/<space>-<dataset>-seed<seed>; a preset's runs (the
    smoke test) in runs/<script>/<preset>/…, so they never block the real search's folder."""
    name = f"{cfg.space}-{cfg.dataset}-seed{cfg.seed}"
    return f"runs/{script}/{cfg.preset}/{name}" if getattr(cfg, "preset", None) else f"runs/{script}/{name}"


class SearchRun(RunLoop):
    """Everything one search needs, and the bookkeeping around the method's own loop.

    Args:
        cfg: the resolved config.
        method_state: the method's schedule state (temperatures, moving averages, generator states…);
            saved in every checkpoint and restored on resume — mutate it in place.
        script: name of the run directory's parent (default: the running script's name).
    """

    def __init__(self, cfg: SearchConfig, method_state: dict[str, Any] | None = None,
                 script: str | None = None) -> None:
        from common.config import script_name
        self.cfg = cfg
        self.script = script or script_name()
        self.method_state: dict[str, Any] = dict(method_state or {})
        self.device = resolve_device(cfg.device)
        self.threads, self._threads_from = apply_threads(cfg.threads)  # set once, before any work (common/threads.py)
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise RunError(f"--cuda-graphs needs a CUDA device (this run is on {self.device})")
        out = cfg.out or default_out(self.script, cfg)
        if cfg.resume and (done := finished_run(out, cfg.epochs)):
            raise RunFinished(done)
        self._start_time = time.perf_counter()
        self.table = _load_table(cfg.nb201)  # a missing table fails now, not after hours
        if Path(out).exists() and not Path(out).is_dir():
            raise RunError(f"--out {out} exists and is not a directory")
        self._build_data()  # missing/corrupt data fails before the run directory is created
        self.dir = RunDir(out)  # locked: a second run on this --out stops here
        try:
            self._start()
        except BaseException:  # refused (or stopped) while starting: the folder as it was
            self.dir.abandon()
            raise

    def _start(self) -> None:
        """Resume from the run directory's checkpoint, or start afresh; build model and optimisers."""
        cfg = self.cfg
        checkpoint = self.dir.load_checkpoint() if cfg.resume else None
        if not cfg.resume and (self.dir.checkpoint.exists() or self.dir.step_checkpoint.exists()):
            if differs := self.dir.config_difference(cfg):  # --resume would be refused in turn
                raise RunError(f"{self.dir.path} already holds a run of another config ({differs}); "
                               f"choose another --out")
            raise RunError(f"{self.dir.path} already holds a run; pass --resume to continue it "
                           f"or choose another --out")
        if checkpoint is None:
            self.dir.refuse_earlier_run(cfg)
        seed_everything(cfg.seed, cfg.deterministic)
        self.model: Supernet = build_supernet(cfg.space, cfg.C, cfg.N, NUM_CLASSES[cfg.dataset],
                                              cfg.partial_channels, fast=cfg.fast, alpha_init_std=cfg.alpha_init,
                                              alpha_init_mean=cfg.alpha_init_mean,
                                              gdas_form=getattr(cfg, "gdas_form", None)).to(self.device)  # GdasConfig
        # PC's slicing/shuffle is slower in channels_last; below C = 4 torch 2.14's oneDNN conv backward corrupts
        # the heap in it on CPU (a C = 2 DARTS-skeleton search aborts; tests/test_torch_workarounds.py)
        self.channels_last = cfg.fast and cfg.partial_channels == 1 and cfg.C >= CHANNELS_LAST_MIN_C
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
        #: the mid-epoch checkpoint to continue from: applied when its epoch's steps begin (`steps`), so the
        #: method's epoch-start code sees the epoch-start state, as in the uninterrupted run
        self._step_state = self.dir.load_step_checkpoint(self.start_epoch) if cfg.resume else None
        if self._step_state is not None:
            self._check_config(self._step_state["config"], self.dir.step_checkpoint)
        self.resumed_step = False  # set when `steps` has just applied a mid-epoch checkpoint
        self.started_fresh = checkpoint is None and self._step_state is None  # args.json written now
        if self._step_state is not None:
            self.dir.log(f"resuming from epoch {self.start_epoch + 1} of {cfg.epochs}, step "
                         f"{self._step_state['step_in_epoch']} of {len(self.train_loader)} (checkpoint "
                         f"{self.dir.step_checkpoint})")
        elif checkpoint is not None:
            self.dir.log(f"resuming from epoch {self.start_epoch + 1} of {cfg.epochs} ({self.start_epoch} done; "
                         f"checkpoint {self.dir.checkpoint})")
        else:
            self.dir.log(f"search: {self.script}, {cfg.space} on {cfg.dataset}, {cfg.epochs} epochs, "
                         f"seed {cfg.seed}, {self.device}, {threads_text(self.threads, self._threads_from)}; "
                         f"run directory {self.dir.path}")
            write_json(self.dir.path / "args.json", {**config_dict(cfg), "script": self.script,
                                                     "argv": sys.argv, "torch": torch.__version__,
                                                     "torch_threads": self.threads})
        self.dir.log(EPOCH_LEGEND)
        self.epoch = self.start_epoch
        self._step_clock: float | None = 0.0  # None once the CPU cost has been measured
        self._step_times: list[float] = []
        self._saved_at = time.monotonic()  # when a checkpoint was last written (--checkpoint-every)
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

    def _check_config(self, old: Mapping[str, Any], path: Path, done: Any = "?") -> None:
        """RunError unless a checkpoint's config `old` may be resumed with this run's."""
        if old.get("epochs") != self.cfg.epochs:  # refused, not extended: see docs/run-directory.md
            raise RunError(f"checkpoint {path} belongs to a {old.get('epochs')}-epoch search "
                           f"({done} done), not --epochs {self.cfg.epochs}: the lr and schedules of "
                           f"its finished epochs depend on the total; resume with --epochs {old.get('epochs')} "
                           f"or start the longer search in another --out")
        for key, value in config_dict(self.cfg).items():
            was = old[key] if key in old else self.cfg.former_value(key)  # a flag added since the checkpoint
            if key not in RESUMABLE_CHANGES and was != value:
                raise RunError(f"checkpoint {path} was made with --{key.replace('_', '-')} "
                               f"{was}, not {value}: it is incompatible; use another --out")

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self._check_config(ckpt["config"], self.dir.checkpoint, ckpt["epoch"])
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
    # ------------------------------------------------------------------ per replica (--seeds, common/replicas.py)
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

    def steps(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """(x_train, y_train, x_valid, y_valid) batches of this epoch, with a progress bar (the valid batch:
        the valid loader's next, or with --valid-batch random `random_valid_batch`).

        Resumed from a mid-epoch checkpoint after k steps, the epoch's first k batches are replayed: yielded
        with `replaying` set, so that `step` does nothing (the loop's count of batches, the loaders'
        positions, stay the uninterrupted run's), then the checkpoint is applied and the steps go on."""
        state, self._step_state = self._step_state, None
        replay = state["step_in_epoch"] if state is not None and state["epoch"] == self.epoch else 0
        self._step_clock = time.perf_counter() if self._step_clock is not None else None
        yield from self._steps(self._batches(), replay, lambda: self._apply_step_state(state), self.dir.log,
                               self.step_checkpoint_due, after_count=self._time_cpu_step)

    def _batches(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """This epoch's (x_train, y_train, x_valid, y_valid), one a step (`steps`)."""
        cfg = self.cfg
        valid_iter = iter(self.valid_loader) if self.valid_generator is None else iter(())
        for x_t, y_t in self.train_loader:
            if self.valid_generator is not None:  # --valid-batch random
                x_v, y_v = self.random_valid_batch(self.global_step)
            else:
                valid_iter, (x_v, y_v) = next_batch(valid_iter, self.valid_loader)
            if cfg.debug_nan_step is not None and self.global_step == cfg.debug_nan_step:
                x_t = x_t * float("nan")
            yield x_t, y_t, x_v, y_v

    def step_checkpoint_due(self, step_in_epoch: int | None = None, saved_at: float | None = None) -> bool:
        """--checkpoint-every: whether to checkpoint after this step (never after an epoch's last step)."""
        every = self.cfg.checkpoint_every
        step = self.step_in_epoch if step_in_epoch is None else step_in_epoch
        return (every is not None and step < len(self.train_loader)
                and time.monotonic() - (self._saved_at if saved_at is None else saved_at) >= every)

    def save_step_checkpoint(self) -> None:
        """The mid-epoch checkpoint (`--checkpoint-every`): what `step_state` holds, after the method's
        `before_step_checkpoint` (the harness's named generators into method_state)."""
        if self.before_step_checkpoint is not None:
            self.before_step_checkpoint()
        self.check_finite()
        self.check_parameters_finite()
        self.dir.save_step_checkpoint(self.step_state())
        self._saved_at = time.monotonic()

    def step_state(self) -> dict[str, Any]:
        """Everything a kill after this step needs to go on as if uninterrupted: the epoch checkpoint's
        entries at this step, the step within the epoch, the epoch's metric sums so far."""
        return {
            "version": CHECKPOINT_VERSION, "config": config_dict(self.cfg), "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch, "global_step": self.global_step, "wall_time": self.wall_time,
            "epoch_time": time.perf_counter() - self._epoch_start, "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(), "a_optimizer": self.a_optimizer.state_dict(),
            "method_state": self.method_state, "metrics": self.records, "rng": rng_state(),
            "trackers": {"sums": {k: v.cpu() for k, v in self._sums.items()}, "counts": dict(self._counts),
                         "first_bad": self._first_bad.cpu()},
            **({"valid_generator": self.valid_generator.get_state()} if self.valid_generator is not None else {})}

    def _apply_step_state(self, state: dict[str, Any]) -> None:
        """Continue from a mid-epoch checkpoint (`step_state`), its epoch's steps about to begin."""
        path = self.dir.step_checkpoint
        try:
            self.model.load_state_dict(state["model"])
            self.w_optimizer.load_state_dict(state["w_optimizer"])
            self.a_optimizer.load_state_dict(state["a_optimizer"])
            set_rng_state(state["rng"])
            if self.valid_generator is not None:
                self.valid_generator.set_state(state["valid_generator"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise RunError(f"checkpoint {path} does not fit this run ({str(err).splitlines()[0][:120]}); "
                           f"move it away to resume from the last epoch's checkpoint") from None
        self.method_state.update(state["method_state"])
        self.global_step, self.step_in_epoch = state["global_step"], state["step_in_epoch"]
        trackers = state["trackers"]
        self._sums = {k: v.to(self.device) for k, v in trackers["sums"].items()}
        self._counts = dict(trackers["counts"])
        self._first_bad = trackers["first_bad"].to(self.device)
        self._epoch_start = time.perf_counter() - state["epoch_time"]
        self.resumed_step = True

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
            if (note := cpu_cost_note(step_s, left, self.threads, free_cores_now)) is not None:
                self.dir.log(note)
            self._step_clock = None

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
        self._saved_at = time.monotonic()
        self.dir.save_checkpoint({
            "version": CHECKPOINT_VERSION, "config": config_dict(cfg), "epoch": self.epoch + 1,
            "global_step": self.global_step, "wall_time": self.wall_time, "model": model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(), "a_optimizer": self.a_optimizer.state_dict(),
            "method_state": self.method_state, "metrics": self.records, "rng": rng_state(),
            **({"valid_generator": self.valid_generator.get_state()} if self.valid_generator is not None else {})})
        self.dir.drop_step_checkpoint()  # the epoch's checkpoint holds more
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
        self.dir.log(run_summary(result, {**config_dict(self.cfg), "script": self.script}, self.dir.path,
                                 time.perf_counter() - self._start_time))
        self.dir.release()
        return result
