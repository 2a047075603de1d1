"""What a single run and a batched (`--seeds`) run share in a method's loop: epochs, the tracked step.

`RunLoop` is the base of `common.run.SearchRun` (one seed) and `common.replica_run.ReplicaRun` (S seeds
batched); the harness (common/harness.py) drives either through it. A subclass provides `cfg`, `device`,
`start_epoch`, `global_step`, `step_in_epoch`, `w_optimizer`, `a_params`, `train_loader`, `valid_loader`,
`graphs` (common.graphs.StepGraphs), `track`, `check_finite`, `running_means` and `save_step_checkpoint`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from common.search import cosine_lr

Bilevel = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]
#: (x_train, y_train, x_valid, y_valid): one step's batches
Batches = tuple[Tensor, Tensor, Tensor, Tensor]
#: Off a terminal (no progress bar), a plain progress line at most this often inside an epoch (seconds).
PROGRESS_EVERY_S = 60.0


def next_batch(it: Iterator, loader: Any) -> tuple[Iterator, Any]:
    """(the iterator, its next batch), starting `loader` over when it is exhausted (the valid half)."""
    try:
        return it, next(it)
    except StopIteration:
        it = iter(loader)
        return it, next(it)


def _now() -> float:
    return time.monotonic()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


class RunLoop:
    """The loop-facing part of a run; see the module docstring for what a subclass provides."""

    #: called before a mid-epoch checkpoint is written (the harness: its named generators into method_state)
    before_step_checkpoint: Callable[[], None] | None = None
    #: the batches of a resumed epoch before its mid-epoch checkpoint are replayed: `step` does nothing
    replaying: bool = False

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

    @property
    def seeds(self) -> list[int]:
        """The seeds this run searches: [cfg.seed] (a ReplicaRun: one per replica)."""
        return [self.cfg.seed]

    @property
    def clip_extra(self) -> list[torch.nn.Parameter] | None:
        """`w_step`'s `norm_extra`: α with `--clip-scope official` (NB201's clip of network.parameters())."""
        return self.a_params if self.cfg.clip_scope == "official" else None

    @property
    def w_lr(self) -> float:
        """The current learning rate of w (ξ of the unrolled step)."""
        return self.w_optimizer.param_groups[0]["lr"]

    def start_progress(self, plain: bool) -> None:
        """The epoch's steps begin (after a replay): plain progress lines if `plain` (no bar is shown)."""
        self._progress = (_now(), self.step_in_epoch) if plain else None

    def progress(self, log: Callable[[str], None]) -> None:
        """After a step: `log` a plain line (step i/N, s/step, the epoch's ETA) when PROGRESS_EVERY_S have
        passed since the last one (or the epoch's start); never after the epoch's last step."""
        if getattr(self, "_progress", None) is None:
            return
        (then, done), now, n = self._progress, _now(), len(self.train_loader)
        if now - then < PROGRESS_EVERY_S or self.step_in_epoch >= n or self.step_in_epoch == done:
            return
        per = (now - then) / (self.step_in_epoch - done)
        log(f"epoch {self.epoch + 1}/{self.cfg.epochs}  step {self.step_in_epoch}/{n}  {per:.3g} s/step  "
            f"epoch ETA {_duration(per * (n - self.step_in_epoch))}")
        self._progress = (now, self.step_in_epoch)

    def _steps(self, batches: Iterable[Batches], replay: int, resume: Callable[[], None],
               log: Callable[[str], None], checkpoint_due: Callable[[], bool], desc: str = "",
               after_count: Callable[[], None] | None = None) -> Iterator[Batches]:
        """`steps` over this epoch's `batches` (one item a step), with a progress bar (terminal only) or plain
        progress lines, the step counts, the finite check and the mid-epoch checkpoint.

        Args:
            batches: the epoch's batches; drawn one at a time, as the loop asks for them.
            replay: how many of the epoch's first steps a mid-epoch checkpoint holds (0: none): their batches
                are yielded with `replaying` set (`step` does nothing), then `resume` is called.
            resume: applies the mid-epoch checkpoint; its RNG states undo the replay's draws.
            log: where the plain progress lines go.
            checkpoint_due: whether to write the mid-epoch checkpoint after this step (`--checkpoint-every`).
            desc: after the bar's "epoch i/N".
            after_count: called after every (not replayed) step is counted, before the finite check.
        """
        from tqdm import tqdm
        cfg = self.cfg
        bar = tqdm(batches, total=len(self.train_loader), desc=f"epoch {self.epoch + 1}/{cfg.epochs}{desc}",
                   leave=False, disable=not (cfg.progress and sys.stderr.isatty()),
                   dynamic_ncols=True)  # bars: terminal only
        for i, batch in enumerate(bar):
            self.replaying = i < replay
            yield batch
            if self.replaying:
                if i == replay - 1:  # the replay's draws are undone: the checkpoint's RNG states
                    self.replaying = False
                    resume()
                    self.start_progress(cfg.progress and bar.disable)
                continue
            if i == 0:
                self.start_progress(cfg.progress and bar.disable)  # off a terminal: plain lines
            self.global_step += 1
            self.step_in_epoch += 1
            if after_count is not None:
                after_count()
            if self.device.type == "cpu" or self.global_step % cfg.log_every == 0:
                self.check_finite()
                if not bar.disable:  # a shown bar only: running_means reads the sums on the host
                    bar.set_postfix(self.running_means(), refresh=False)
            self.progress(log)
            if checkpoint_due():
                self.save_step_checkpoint()

    def step(self, bilevel: Bilevel, x_t: Tensor, y_t: Tensor, x_v: Tensor, y_v: Tensor, key: Hashable = None,
             capture: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One bilevel step `bilevel(x_t, y_t, x_v, y_v)` → (train loss, train logits, valid loss, valid
        logits), tracked. With --cuda-graphs it is captured once per `key` and epoch and replayed: it
        must then read no Python value that changes within the epoch other than through `key`, and
        `capture=False` keeps a step with host-side control flow (GDAS sampling) eager.
        """
        if self.replaying:  # a step the mid-epoch checkpoint already holds (`steps`)
            zero = torch.zeros((), device=x_t.device)
            return zero, zero, zero, zero
        out = self.graphs(key, bilevel, x_t, y_t, x_v, y_v, capture=capture)
        self.track("train", out[0], out[1], y_t)
        self.track("valid", out[2], out[3], y_v)
        return out

    def register_generator(self, generator: torch.Generator) -> None:
        """A generator the step draws from besides the default one (needed for CUDA-graph capture)."""
        if generator.device.type == "cuda":
            self.graphs.register_generator(generator)
