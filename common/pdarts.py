"""Progressive DARTS (P-DARTS, Chen et al., 2019): the stage logic, method-agnostic.

P-DARTS searches on the DARTS skeleton in three stages of growing depth. Between stages every edge's
op set is pruned by α (the lowest softmax(α) ops go), each stage builds a fresh supernet over the
remaining ops with α re-initialised, skip-connect is followed by a scheduled dropout, and the final
normal cell keeps at most M skip-connects. AER-DARTS (paper 001, Tables 2-3, Fig. 5) adds its
regulariser to every stage (`aer_darts.py --backbone pdarts`); with λ = 0 it is plain P-DARTS. The flags
of such a search (--epochs over 3 stages, --warmup per stage, --skip-dropout) are checked by `resolve_pdarts`
and turned into the run by `pdarts_run`.

The numbers and their sources: the authors' public code, github.com/chenxin061/pdarts at b880e87
(`train_search.py` = ts, `model_search.py` = ms), and the P-DARTS paper where it says otherwise:

- depth 5 / 11 / 17 cells: `--layers 5` (ts line 31) plus `add_layers = [0, 6, 12]` (ts line 118);
- width C 16 (ts line 30) plus `add_width = [0, 0, 0]` (ts line 114);
- ops per edge 8 → 5 → 3 → 1: `num_to_drop = [3, 2, 2]` (ts line 110, `num_to_keep = [5, 3, 1]` line 109);
  the op dropped is the smallest softmax(α) of the current stage's ops, first one on ties (`get_min_k`,
  np.argmin, ts line 367); after the last stage `none` goes first (`get_min_k_no_zero`, ts lines 183, 372);
- 25 epochs per stage (ts line 29), the first 10 train w only (`eps_no_archs = [10, 10, 10]`, ts line 123);
- initial skip-connect dropout rates per stage: 0.0 / 0.4 / 0.7 on CIFAR-10 and 0.1 / 0.2 / 0.3 on
  CIFAR-100 in the P-DARTS paper (its search settings, arXiv 1904.12760; not among ../shared/papers:
  read from public summaries of it, e.g. alexhex7.github.io's notes, "3.1 Details"); the default here; 0.1 / 0.4 / 0.7 in the search command of the authors' README (lines 61-63; the code's own
  default is 0.0, ts line 122); paper 001 line 281 gives 0.0 / 0.3 / 0.6 with 5 / 8 / 11 cells and
  C 16 / 28 / 40 for its ImageNet-transfer search. The rate decays within a stage:
  p = p0 · (E − e − 1)/E during the warm-up (ts line 153), p0 · exp(−0.2 (e − warm-up)) after it
  (ts lines 145, 157). Only stride-1 skip-connects (identity) get it (ms line 23);
- α ~ 1e-3·N(0, 1) per stage (ms lines 157-158), shape (14, ops left);
- the final rule: at most M = 2 skip-connects in the normal cell. While there are more, the selected
  skip-connect of least softmax(α) gets weight 0 and the cell is derived again (ts lines 250-258,
  `delete_min_sk_prob` line 407, `keep_1_on` line 429, `keep_2_branches` line 441). The code logs the
  genotypes for M = 8 … 0 (ts lines 250-251); the P-DARTS paper uses M = 2.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common.config import ConfigError, SearchConfig
from common.genotypes import Genotype
from common.run import RunError, SearchRun
from common.search import cosine_lr
from common.spaces import SPACES, SearchSpace, get_space
from common.supernet import Supernet

SKIP = "skip_connect"


@dataclass(frozen=True)
class PdartsSchedule:
    """The three stages of a P-DARTS search (defaults: the authors' code, module docstring).

    Attributes:
        add_layers: cells added to the base depth per stage (0, 6, 12).
        add_width: channels added to the base C per stage (0, 0, 0).
        num_to_drop: ops dropped per edge after each stage (3, 2, 2).
        dropout: initial skip-connect dropout rate per stage (0.0, 0.4, 0.7: the paper, CIFAR-10).
        epochs: epochs per stage (25).
        warmup: epochs per stage that train w only (10).
        decay: the exponential decay factor of the dropout rate after the warm-up (0.2).
        max_skip: the most skip-connects the final normal cell keeps (2).
    """

    add_layers: tuple[int, ...] = (0, 6, 12)
    add_width: tuple[int, ...] = (0, 0, 0)
    num_to_drop: tuple[int, ...] = (3, 2, 2)
    dropout: tuple[float, ...] = (0.0, 0.4, 0.7)
    epochs: int = 25
    warmup: int = 10
    decay: float = 0.2
    max_skip: int = 2

    def __post_init__(self) -> None:
        n = len(self.add_layers)
        if not (len(self.add_width) == len(self.num_to_drop) == len(self.dropout) == n):
            raise ValueError("P-DARTS schedule: add_layers, add_width, num_to_drop, dropout need one value per stage")
        if self.epochs < 1 or not 0 <= self.warmup <= self.epochs:
            raise ValueError(f"P-DARTS schedule: need 0 <= warmup ({self.warmup}) <= epochs ({self.epochs}), epochs >= 1")
        if any(not 0.0 <= p < 1.0 for p in self.dropout):
            raise ValueError(f"P-DARTS schedule: dropout rates must lie in [0, 1), got {self.dropout}")

    @property
    def stages(self) -> int:
        return len(self.add_layers)

    def layers(self, stage: int, base: int) -> int:
        """Cells of the stage's supernet: base + add_layers[stage] (5, 11, 17 for base 5)."""
        return base + self.add_layers[stage]

    def width(self, stage: int, base: int) -> int:
        """Initial channels of the stage's supernet: base + add_width[stage]."""
        return base + self.add_width[stage]

    def stage_of(self, epoch: int) -> tuple[int, int]:
        """(stage, epoch within the stage) of a global epoch index 0 … stages·epochs − 1."""
        if not 0 <= epoch < self.stages * self.epochs:
            raise ValueError(f"epoch {epoch} outside the {self.stages}×{self.epochs}-epoch P-DARTS schedule")
        return divmod(epoch, self.epochs)

    def trains_alpha(self, epoch_in_stage: int) -> bool:
        """Whether α is updated in this epoch of a stage (not during the warm-up)."""
        return epoch_in_stage >= self.warmup

    def dropout_rate(self, stage: int, epoch_in_stage: int) -> float:
        """The skip-connect dropout rate of an epoch (ts lines 153, 157)."""
        p0, e, E = self.dropout[stage], epoch_in_stage, self.epochs
        if e < self.warmup:
            return p0 * (E - e - 1) / E
        return p0 * math.exp(-(e - self.warmup) * self.decay)


def _drop_min(probs: list[float], k: int, none_first: bool) -> list[int]:
    """Indices of the k ops dropped: repeatedly the first smallest (`get_min_k`, ts line 367); with
    `none_first`, op 0 (`none`) is dropped first and counts as one of the k (`get_min_k_no_zero`)."""
    w = list(probs)
    dropped: list[int] = []
    if none_first:
        dropped.append(0)
        w[0] = math.inf
        k -= 1
    for _ in range(k):
        i = min(range(len(w)), key=lambda j: (w[j], j))
        dropped.append(i)
        w[i] = math.inf
    return dropped


def prune_space(space: SearchSpace, alphas: Mapping[str, Tensor], num_drop: int, last: bool = False,
                name: str | None = None) -> SearchSpace:
    """The next stage's space: on every edge the `num_drop` ops of least softmax(α) are removed.

    Args:
        space: the current stage's space (DARTS skeleton, equal op count on every edge).
        alphas: (E, M) α per cell kind over the current ops.
        num_drop: ops removed per edge (3, 2, 2 in P-DARTS).
        last: after the last stage `none` is removed first wherever present (ts line 183).
        name: the new space's name (default `<name>-k<ops left>`).
    """
    edge_ops: dict[str, tuple[tuple[str, ...], ...]] = {}
    for kind in space.cell_kinds:
        ops = space.edge_ops[kind]
        a = alphas[kind].detach()
        if tuple(a.shape) != (len(ops), len(ops[0])):
            raise ValueError(f"α[{kind}] has shape {tuple(a.shape)}, the space needs {(len(ops), len(ops[0]))}")
        if not 0 < num_drop < len(ops[0]):
            raise ValueError(f"cannot drop {num_drop} of {len(ops[0])} ops per edge")
        probs = F.softmax(a.double().cpu(), dim=-1).tolist()
        kept = []
        for edge_ops_e, p in zip(ops, probs):
            drop = set(_drop_min(p, num_drop, last and edge_ops_e[0] == "none"))
            kept.append(tuple(op for o, op in enumerate(edge_ops_e) if o not in drop))
        edge_ops[kind] = tuple(kept)
    left = len(space.edge_ops[space.cell_kinds[0]][0]) - num_drop
    return SearchSpace(name or f"{space.name}-k{left}", space.skeleton, edge_ops)


class SkipDropout(nn.Module):
    """Identity followed by dropout of rate `p` (P-DARTS's skip-connect dropout, ms line 23).

    `p` is a plain attribute the schedule sets each epoch; p = 0 and eval mode return x unchanged
    (and draw no random numbers).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        return F.dropout(x, self.p, training=True)


def install_skip_dropout(model: nn.Module) -> list[SkipDropout]:
    """Replace every stride-1 `skip_connect` op (an `nn.Identity`) of the supernet's mixed ops by a
    `SkipDropout`; returns them, for `set_skip_dropout`. Stride-2 skip-connects (FactorizedReduce) keep
    no dropout, as in the authors' code (ms line 23 wraps only `Identity`)."""
    installed: list[SkipDropout] = []
    for module in model.modules():
        names = getattr(module, "op_names", None)
        if names is None or not isinstance(getattr(module, "ops", None), nn.ModuleList):
            continue
        for o, name in enumerate(names):
            if name == SKIP and isinstance(module.ops[o], nn.Identity):
                module.ops[o] = SkipDropout()
                installed.append(module.ops[o])
    return installed


def set_skip_dropout(modules: list[SkipDropout], p: float) -> None:
    """Set the dropout rate of every installed skip-connect dropout."""
    for m in modules:
        m.p = p


def _select(probs: list[list[float]], edge_ops: tuple[tuple[str, ...], ...],
            edges: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """(edge, op) kept: per edge the op that survives dropping all but one (`keep_1_on`, `none` first),
    per node the two edges of largest max prob, later edge first on ties (`keep_2_branches`)."""
    ops_of = []
    for ops, p in zip(edge_ops, probs):
        drop = set(_drop_min(p, len(ops) - 1, ops[0] == "none"))
        ops_of.append(next(o for o in range(len(ops)) if o not in drop))
    chosen: list[tuple[int, int]] = []
    for node in sorted({to for to, _ in edges}):
        ids = [e for e, (to, _) in enumerate(edges) if to == node]
        ranked = sorted(ids, key=lambda e: (max(probs[e]), e))
        chosen += sorted((e, ops_of[e]) for e in ranked[-2:])
    return chosen


def restrict_skips(alpha: Tensor, edge_ops: tuple[tuple[str, ...], ...], edges: tuple[tuple[int, int], ...],
                   max_skip: int | None) -> list[tuple[str, int]]:
    """A cell derived P-DARTS's way, with at most `max_skip` skip-connects (None: no limit).

    softmax(α) per edge, `none` set to 0 (ts line 214); each edge's best op, each node's two best edges.
    While more than `max_skip` skip-connects are selected, the selected one of least prob is set to 0
    and the cell is derived again (ts lines 255-258).
    """
    probs = F.softmax(alpha.detach().double().cpu(), dim=-1).tolist()
    for p, ops in zip(probs, edge_ops):
        if ops[0] == "none":
            p[0] = 0.0
    chosen = _select(probs, edge_ops, edges)
    while max_skip is not None:
        skips = [(probs[e][o], e, o) for e, o in chosen if edge_ops[e][o] == SKIP]
        if len(skips) <= max_skip:
            break
        _, e, o = min(skips, key=lambda t: (t[0], t[1]))
        probs[e][o] = 0.0
        chosen = _select(probs, edge_ops, edges)
    return [(edge_ops[e][o], edges[e][1]) for e, o in chosen]


def pdarts_genotype(alphas: Mapping[str, Tensor], space: SearchSpace, max_skip: int | None = 2) -> Genotype:
    """The final P-DARTS genotype: both cells derived by `restrict_skips`, the skip limit on the normal
    cell only (the authors restrict the normal cell, ts line 247)."""
    normal = restrict_skips(alphas["normal"], space.edge_ops["normal"], space.edges, max_skip)
    reduce = restrict_skips(alphas["reduce"], space.edge_ops["reduce"], space.edges, None)
    return Genotype(normal=normal, normal_concat=[2, 3, 4, 5], reduce=reduce, reduce_concat=[2, 3, 4, 5])


class PdartsRun(SearchRun):
    """A `SearchRun` whose supernet changes between stages (one run directory, one checkpoint per epoch).

    `cfg.epochs` = stages × `schedule.epochs`; `cfg.N` and `cfg.C` are the first stage's depth and width.
    At the first epoch of each later stage the current α prune the op sets (`prune_space`), a fresh
    supernet with fresh α and fresh optimizers is built for the next depth, and the cosine lr of w
    restarts (each stage has its own scheduler in the authors' code, ts line 141; they step it before each
    epoch, ts line 147, so their epoch e trains at the cosine's value for e + 1 — ours at e, the usual
    order, as in the other searches). The stage and its op
    sets are method state: a checkpoint restores the stage's supernet before its weights, so a resume at
    any epoch, a stage boundary included, continues bit-identically.

    Args:
        cfg: the resolved config (DARTS skeleton, no partial channels, a single seed).
        schedule: the stages (`PdartsSchedule`); its `epochs` must divide `cfg.epochs` into its stages.
        method_state, script: as for `SearchRun`.
    """

    #: why `--seeds` cannot batch it (common.harness.seeds_refusal)
    seeds_refusal = ("--seeds with --backbone pdarts is not supported yet: each stage builds a new supernet; "
                     "run one --seed per process")

    def __init__(self, cfg: SearchConfig, schedule: PdartsSchedule, method_state: dict[str, Any] | None = None,
                 script: str | None = None) -> None:
        if cfg.epochs != schedule.stages * schedule.epochs:
            raise RunError(f"P-DARTS: --epochs {cfg.epochs} is not {schedule.stages} stages × {schedule.epochs}")
        if get_space(cfg.space).skeleton != "darts" or cfg.partial_channels != 1:
            raise RunError("P-DARTS runs on the DARTS skeleton without partial channels")
        self.schedule, self.stage = schedule, 0
        self.skip_dropouts: list[SkipDropout] = []
        method_state = {k: v for k, v in (method_state or {}).items() if k != "pdarts"}
        super().__init__(cfg, method_state, script)
        if "pdarts" not in self.method_state:  # a fresh run: SearchRun built stage 0's supernet
            self.skip_dropouts = install_skip_dropout(self.model)
            self._remember_stage()

    def _remember_stage(self) -> None:
        self.method_state["pdarts"] = {"stage": self.stage, "edge_ops": {
            k: [list(ops) for ops in v] for k, v in self.model.space.edge_ops.items()}}

    def _build_stage(self, stage: int, space: SearchSpace) -> None:
        """Stage `stage`'s supernet over `space` (fresh weights and α from the current RNG), its optimizers."""
        cfg, sch = self.cfg, self.schedule
        cls = Supernet
        if cfg.fast:
            from common.fast import FastSupernet
            cls = FastSupernet
        model = cls(space, C=sch.width(stage, cfg.C), N=sch.layers(stage, cfg.N), num_classes=self.model.classifier.out_features,
                    alpha_init_std=cfg.alpha_init, alpha_init_mean=cfg.alpha_init_mean).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.stage = model, stage
        self.skip_dropouts = install_skip_dropout(model)
        self.w_params, self.a_params = model.weight_parameters(), model.arch_parameters()
        self.w_optimizer = torch.optim.SGD(self.w_params, cfg.w_lr, momentum=cfg.w_momentum,
                                           weight_decay=cfg.w_wd, nesterov=cfg.w_nesterov and cfg.w_momentum > 0)
        self.a_optimizer = torch.optim.Adam(self.a_params, cfg.a_lr, betas=(cfg.a_beta1, 0.999),
                                            weight_decay=cfg.a_wd, capturable=cfg.cuda_graphs)
        self._remember_stage()

    def _restore(self, ckpt: dict[str, Any]) -> None:
        saved = (ckpt.get("method_state") or {}).get("pdarts")
        if not isinstance(saved, dict) or "stage" not in saved or "edge_ops" not in saved:
            raise RunError(f"checkpoint {self.dir.checkpoint} holds no P-DARTS stage: it is not a --backbone pdarts run")
        space = get_space(self.cfg.space)
        space = SearchSpace(f"{space.name}-stage{saved['stage'] + 1}", "darts",
                            {k: tuple(tuple(ops) for ops in v) for k, v in saved["edge_ops"].items()})
        self._build_stage(int(saved["stage"]), space)  # the RNG it draws from is restored below
        super()._restore(ckpt)

    def epochs(self) -> Iterator[int]:
        """As `SearchRun.epochs`, with the stage change at a stage's first epoch, the cosine lr per stage
        and the skip-connect dropout rate of the epoch."""
        cfg, sch = self.cfg, self.schedule
        for epoch in super().epochs():
            stage, e = sch.stage_of(epoch)
            if stage != self.stage:
                pruned = prune_space(self.model.space, self.model.alphas, sch.num_to_drop[self.stage],
                                     name=f"{cfg.space}-stage{stage + 1}")
                self._build_stage(stage, pruned)
                self.dir.log(f"P-DARTS stage {stage + 1}: {sch.layers(stage, cfg.N)} cells, "
                             f"{pruned.alpha_shape('normal')[1]} ops per edge")
            lr = cfg.w_lr if cfg.w_lr_min is None else cosine_lr(e, sch.epochs, cfg.w_lr, cfg.w_lr_min)
            for group in self.w_optimizer.param_groups:
                group["lr"] = lr
            set_skip_dropout(self.skip_dropouts, sch.dropout_rate(stage, e))
            yield epoch

    def stage_epoch(self) -> tuple[int, int]:
        """(stage, epoch within it) of the current epoch."""
        return self.schedule.stage_of(self.epoch)

    def genotype(self, temperature: float = 1.0) -> str | Genotype:
        """P-DARTS's derivation (`pdarts_genotype`); the skip-connect limit in the last stage only."""
        last = self.stage == self.schedule.stages - 1
        return pdarts_genotype(self.model.alphas, self.model.space, self.schedule.max_skip if last else None)

    def end_epoch(self, used_weights: Mapping[str, Tensor], schedule: Mapping[str, Any] | None = None,
                  derive_temperature: float = 1.0) -> dict:
        stage, e = self.stage_epoch()
        extra = {"stage": stage + 1, "stage_epoch": e + 1, "cells": len(self.model.cells),
                 "ops_per_edge": self.model.space.alpha_shape("normal")[1],
                 "skip_dropout": self.schedule.dropout_rate(stage, e)}
        return super().end_epoch(used_weights, {**extra, **(schedule or {})}, derive_temperature)


# ----------------------------------------------------------------------------- the flags of a P-DARTS search

def skip_dropout_rates(text: str | None) -> tuple[float, ...]:
    """`--skip-dropout` (initial rates, one per stage, comma-separated) as floats; ConfigError otherwise."""
    try:
        return tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise ConfigError(f"--skip-dropout {text}: need 3 comma-separated rates") from None


def resolve_pdarts(cfg: Any) -> None:
    """Check the P-DARTS flags of a config the shared checks passed (`aer_darts.py --backbone pdarts`):
    `--epochs` = 3 equal stages, `--warmup` per stage, `--skip-dropout` (default: the P-DARTS paper's rates
    for --dataset, module docstring). Fills `skip_dropout`; raises ConfigError (one line) otherwise.

    Args:
        cfg: a config with the fields space, partial_channels, seeds, dataset, epochs, warmup, skip_dropout.
    """
    if SPACES[cfg.space].skeleton != "darts" or cfg.partial_channels != 1 or cfg.seeds:
        raise ConfigError("--backbone pdarts runs on a DARTS-skeleton space, without --partial-channels "
                          "or --seeds")
    if cfg.skip_dropout is None:
        cfg.skip_dropout = "0.1,0.2,0.3" if cfg.dataset == "cifar100" else "0.0,0.4,0.7"
    rates = skip_dropout_rates(cfg.skip_dropout)
    try:
        PdartsSchedule(dropout=rates)
    except ValueError as err:
        raise ConfigError(f"--skip-dropout {cfg.skip_dropout}: {err}") from None
    if cfg.epochs % 3 or not 0 <= cfg.warmup <= cfg.epochs // 3:
        raise ConfigError(f"--backbone pdarts: --epochs ({cfg.epochs}) must be 3 stages of equal length "
                          f"and --warmup ({cfg.warmup}) at most one stage")


def pdarts_run(cfg: Any) -> Callable[..., PdartsRun]:
    """The harness's run class for a config `resolve_pdarts` passed: `PdartsRun` with its schedule, 3 stages
    of --epochs/3 epochs, --warmup and --skip-dropout per stage."""
    return partial(PdartsRun, schedule=PdartsSchedule(epochs=cfg.epochs // 3, warmup=cfg.warmup,
                                                      dropout=skip_dropout_rates(cfg.skip_dropout)))
