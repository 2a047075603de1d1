"""SP-DARTS as the authors' code runs it (github.com/chaoji90/SP-DARTS): their recipes, quirk flags and hooks.

`--recipe authors` sets the values below for every flag not given explicitly (args.json records the recipe
and the values); the quirk flags of this class are also usable on their own. The paper's method is
sp_darts.py; this class (swapped in by common.config.with_authors) adds:
- `epoch_schedule` hook: the CIFAR-100 late phase (`--freeze-from`, `--t-sp-late`) and the DARTS-space
  warm-up temperature (`--t-warmup`) around Eq. 20;
- `w_weights` hook: the S1-S4 w step on softmax(softmax(α)/t) (`--w-double-softmax`).

- NB201 (AutoDL-Projects_sp: scripts-search/algos/DARTS-V1_10.sh / _100.sh:40-43, configs/nas-benchmark/
  algos/DARTS-10.config / -100.config, exps/algos/DARTS-V1-10.py / -100.py): batch 256, w lr 0.05
  constant (config LR = eta_min), w wd 5e-4, α Adam 3e-4 wd 0 (.sh:43), 50 epochs, warm-up 1, p = C with
  C += 1/49 (C10, -10.py:196) or 0.9/49 (C100, -100.py:197) per epoch; t_sm = 11·t_sp (.py:36:
  `--t-sm-ratio 11`); clip 5 of `network.parameters()` (.py:53): `--clip-scope official`; t_sp 1.1e-3
  (C10) / 1.3e-3 (C100); CIFAR-100 only (not in the paper): from epoch 45 t_sp = 6e-4 and p frozen at
  0.9·44/49 = 0.808 (-100.py:196): `--freeze-from 45 --t-sp-late 6e-4` (t_sm stays 11·t_sp).
  ImageNet16-120 gets the CIFAR-100 script. Not reproduced: their warm-up epoch reads an unassigned
  temperature (fails; ours trains it at t_sm), their "valid" accuracy is the supernet at t = 1e-4, and on
  CIFAR-100 their split: w on all 50k training images, α on the test set's 5k `xvalid` half
  (lib/datasets/get_dataset_with_transform.py, the NB201 loader); ours halves the training set.
- DARTS space (SP-DARTS/train_search_mf.py): batch 80, w lr 0.05 constant, w wd 3e-4, α wd 0, 50
  epochs (:26-48), SGD without Nesterov (:86-90: `--no-w-nesterov`), warm-up 1 at t = 10 (temp·10 with temp = 1, :107-115, :147): `--t-warmup 10`, then
  t_sp 1e-3, t_sm 1e-2; clip of `model.parameters()`, which holds no α there (model_search.py:129-130
  makes α plain Variables): `--clip-scope w`. Their op list has no `none` (genotypes.py:5-13): run_all
  uses `--space darts-nonone`. Their genotype ranks edges by softmax(α/t_sp) rounded to 4 decimals, ties →
  later input (model_search.py:139-165): `--derive-decimals 4` (we rank at t_sp unrounded by default).
  The α step before the w step (:162, then 164-171), on a fresh random valid batch each step (:157
  `next(iter(valid_queue))`, a SubsetRandomSampler, :101): `--step-order alpha-first --valid-batch random`.
  Not reproduced: the supernet evaluated at t_sp/10. The IES they print is of a_sp over the normal cell only
  (ours, `ies_sparse`, is over all cell kinds).
- S1–S4 (SmoothDARTS/sota/cnnmul/train_search.py, run as the README's S1-S4 section; lines of that file
  unless named): batch 128, w lr 0.025 constant (:39-41, cosine with eta_min = lr, :160-161), SGD momentum
  0.9 without Nesterov (:127-131), w wd 3e-4 (:43), 50 epochs, C 16, 8 cells (:46-48), α Adam 3e-4 (0.5,
  0.999) wd 0 (:58-59; SmoothDARTS/optimizers/darts/architect.py:17-19), clip 5 of `model.parameters()`, which
  holds no α (:253; model_search.py:148-149): `--clip-scope w`; 50/50 split of the training set of
  cifar10, cifar100 or svhn (:133-158), as ours; no warm-up (:167): `--warmup 0`; p = C = 0.8 + 0.3/50
  per epoch from epoch 0, the sparse branch when rand < C, so p = 1 from epoch 33 (:166, :172, :219):
  `--p-low 0.8 --p-up 1.1` (Eq. 20's line, capped at 1); t_sm = 10·t_sp (:218). t_sp: the script
  hard-codes 3e-4 (:171) and has no `--temp_start` option, which the README passes with 7, 6, 5, 4e-4;
  the paper (Sec. IV-C) runs t_sp ∈ {4, 5, 6, 7}e-4 on each space and dataset and keeps the best
  validation accuracy: `--recipe authors` on S1–S4 requires `--t-sp` (one-line refusal otherwise);
  run_all.sh runs one row per value. Their w step runs on softmax(softmax(α)/t): `model.
  softmax_arch_parameters()` (:238; model_search.py:161-164) overwrites α with softmax(α) before
  `model(input, t)` (:249; model_search.py:129-134): `--w-double-softmax`; the α step takes softmax(α/t)
  (:233). Near α's init softmax(α) ≈ (1 + α − ᾱ)/M, so their w step trains at about M·t (S2, t = 4e-4:
  mean edge entropy 0.49 nats against 0.32 at t). Their genotype at t_sp (:202) rounds softmax(α/t) to 3 decimals, keeps the earlier of equal
  edges and the last of equal ops (model_search.py:180-214): `--derive-decimals 3 --derive-ties
  earlier-input-last-op`. Their α step precedes the w step, on a fresh random valid batch each step
  (:229-233, w step :234-254): `--step-order alpha-first --valid-batch random`. Not reproduced: their last, partial batch of an epoch (no drop_last, :150-158; ours drops
  it); their "valid" accuracy is the supernet at t/10 (:197); their seed is random (:104).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

import sp_darts
from common.config import ConfigError, arg
from common.data import NUM_CLASSES
from common.harness import Forward, Harness, StepFlag
from common.search import softmax_weights
from common.spaces import SPACES

#: The authors' DARTS-skeleton loop (darts, darts-nonone, S1-S4): α step first, each on a fresh random batch of
#: the valid half (SP-DARTS/train_search_mf.py:157, 162-168; module docstring).
AUTHORS_DARTS_LOOP = {"step_order": "alpha-first", "valid_batch": "random"}


@dataclass
class SPConfig(sp_darts.SPConfig):
    """SP-DARTS flags plus the authors'-code ones (module docstring)."""

    freeze_from: int | None = arg(None, "from this epoch (0-based) on, p stays at the previous epoch's value and "
                                        "t_sp is --t-sp-late (authors' CIFAR-100 script: 45; off)")
    t_sp_late: float | None = arg(None, "t_sp from --freeze-from on (authors' CIFAR-100 script: 6e-4); t_sm keeps "
                                        "its ratio to t_sp (default: t_sp)")
    t_warmup: float | None = arg(None, "temperature of both branches in the warm-up epochs (epoch < --warmup; "
                                       "authors' DARTS-space script: 10; default t_sm)")
    w_double_softmax: bool = arg(False, "the w step's forward weighs the ops by softmax(softmax(α)/t), the α step "
                                        "by softmax(α/t) (authors' S1-S4 script: model.softmax_arch_parameters() "
                                        "before model(input, temp), SmoothDARTS/sota/cnnmul/train_search.py:238-249, "
                                        "model_search.py:129-134, 161-164; off)")

    def authors_recipe(self) -> dict[str, Any]:
        """The authors' NB201, DARTS-space and S1-S4 scripts (module docstring)."""
        skeleton = SPACES[self.space].skeleton
        if skeleton == "nb201":  # AutoDL-Projects_sp: DARTS-V1_10.sh / DARTS-V1_100.sh and their .py, .config
            out = dict(batch_size=256, w_lr=0.05, w_lr_min=None, w_wd=5e-4, a_lr=3e-4, a_wd=0.0, epochs=50,
                       warmup=1, p_low=0.0, t_sm_ratio=11.0, clip_scope="official")
            if NUM_CLASSES[self.dataset] <= 10:
                return {**out, "t_sp": 1.1e-3, "p_up": 1.0}
            return {**out, "t_sp": 1.3e-3, "p_up": 0.9, "freeze_from": 45, "t_sp_late": 6e-4}
        if self.space in ("s1", "s2", "s3", "s4"):  # SmoothDARTS/sota/cnnmul/train_search.py (module docstring)
            if "t_sp" not in getattr(self, "_explicit", ()):
                raise ConfigError(f"--recipe authors on {self.space}: give --t-sp (the paper and README sweep 4e-4, "
                                  f"5e-4, 6e-4, 7e-4 per space and dataset; their train_search.py:171 hard-codes 3e-4)")
            if self.dataset not in ("cifar10", "cifar100", "svhn"):
                raise ConfigError(f"--recipe authors on {self.space}: their train_search.py searches cifar10, "
                                  f"cifar100 or svhn (not {self.dataset})")
            return dict(batch_size=128, w_lr=0.025, w_lr_min=None, w_momentum=0.9, w_wd=3e-4, w_nesterov=False,
                        a_lr=3e-4, a_wd=0.0, a_beta1=0.5, epochs=50, C=16, N=8, grad_clip=5.0, warmup=0, p_low=0.8,
                        p_up=1.1, t_sm_ratio=10.0, clip_scope="w", w_double_softmax=True, derive_decimals=3,
                        derive_ties="earlier-input-last-op", **AUTHORS_DARTS_LOOP)
        return dict(batch_size=80, w_lr=0.05, w_lr_min=None, w_wd=3e-4, a_lr=3e-4, a_wd=0.0, epochs=50,  # SP-DARTS/
                    warmup=1, p_low=0.0, p_up=1.0, t_sp=1e-3, t_sm_ratio=10.0, t_warmup=10.0, clip_scope="w",
                    w_nesterov=False, derive_decimals=4, **AUTHORS_DARTS_LOOP)

    def resolve(self) -> None:
        super().resolve()
        self.t_sp_late = self.t_sp if self.t_sp_late is None else self.t_sp_late
        for name in ("t_sp_late", "t_warmup"):
            if getattr(self, name) is not None and not 0 < getattr(self, name) < math.inf:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {getattr(self, name)})")
        if self.freeze_from is not None and self.freeze_from < 1:
            raise ConfigError(f"--freeze-from must be >= 1 (got {self.freeze_from})")
        if self.w_double_softmax and (self.objective != "mixed" or self.clip_scope == "official"):
            raise ConfigError("--w-double-softmax applies to --objective mixed with --clip-scope w (the authors' "
                              "S1-S4 script clips model.parameters(), which holds no α)")

    def epoch_schedule(self, epoch: int) -> tuple[float, float, float]:
        """Eq. 20 with their CIFAR-100 late phase and DARTS-space warm-up temperature (`epoch_schedule`)."""
        return epoch_schedule(epoch, self)

    def w_weights(self, alphas: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
        """--w-double-softmax: their S1-S4 w step on softmax(softmax(α)/t); else the paper's."""
        return double_softmax_weights(alphas, t) if self.w_double_softmax else super().w_weights(alphas, t)


def epoch_schedule(epoch: int, cfg: SPConfig) -> tuple[float, float, float]:
    """(p, t_sp, t_sm) of `epoch` (0-based): Eq. 20, frozen from --freeze-from on with t_sp = --t-sp-late
    (t_sm keeps its ratio); both temperatures --t-warmup in the warm-up epochs if that is set."""
    late = cfg.freeze_from is not None and epoch >= cfg.freeze_from
    p, t_sp, t_sm = sp_darts.SPConfig.epoch_schedule(cfg, cfg.freeze_from - 1 if late else epoch)
    t_sp, t_sm = (cfg.t_sp_late, cfg.t_sp_late * cfg.t_sm / cfg.t_sp) if late else (t_sp, t_sm)
    if cfg.t_warmup is not None and epoch < cfg.warmup:
        t_sp = t_sm = cfg.t_warmup
    return p, t_sp, t_sm


def double_softmax_weights(alphas: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
    """softmax(softmax(α)/t): the op weights of the authors' S1-S4 w step (--w-double-softmax)."""
    return sp_darts.tempered_weights(softmax_weights(alphas), t)


def branch_forwards(run: Harness, t_sp: float, t_sm: float, phi: StepFlag,
                    double: bool = False) -> tuple[Forward, Forward, Forward]:
    """`sp_darts.branch_forwards`; `double`: of softmax(α) in place of α (the authors' S1-S4 w step)."""
    return sp_darts.branch_forwards(run, t_sp, t_sm, phi, double_softmax_weights if double else None)


search = sp_darts.search  # the method's loop, which runs this config as it runs the paper's
