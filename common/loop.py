"""What a single run and a batched (`--seeds`) run share in a method's loop: epochs, the tracked step.

`RunLoop` is the base of `common.run.SearchRun` (one seed) and `common.replica_run.ReplicaRun` (S seeds
batched); the harness (common/harness.py) drives either through it. A subclass provides `cfg`, `start_epoch`,
`w_optimizer`, `a_params`, `train_loader`, `valid_loader`, `graphs` (common.graphs.StepGraphs) and `track`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator

import torch
from torch import Tensor

from common.search import cosine_lr

Bilevel = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]


class RunLoop:
    """The loop-facing part of a run; see the module docstring for what a subclass provides."""

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

    def step(self, bilevel: Bilevel, x_t: Tensor, y_t: Tensor, x_v: Tensor, y_v: Tensor, key: Hashable = None,
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
