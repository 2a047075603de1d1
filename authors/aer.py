"""AER-DARTS, the authors' code (github.com/kunjing96/DARTS-AER): `--recipe authors` and their quirks.

`aer_darts.py` is the paper; this file adds what their public scripts do besides: the recipe values with
their file:line, the quirk flag `--entropy-ops`, and its behaviour as an override of the `arch_entropy` hook.
`python aer_darts.py ...` swaps this subclass in (common.config.with_authors); explicit flags still win over
the recipe, and args.json records the recipe and the values used.

Their repository: NB201 in AutoDL-Projects/exps/algos/{DARTS-V1,DARTS-V2,GDAS}-AER.py; the DARTS space in
DARTS-AER/, PCDARTS-AER/, PDARTS-AER/. What aer_darts.py follows of it (its docstring cites these): λ per
epoch, `entropy_reg = 0.2 + (−0.2 − 0.2)(1 + cos(π·epoch/total_epoch))/2` (Eq. 4 with λ_neg = −0.2,
λ_pos = 0.2); H̄ over all 5 ops on NB201, over α without `none`'s column on the DARTS space (DARTS-AER
`α[:, :-1]` with `none` last, PCDARTS-AER `α[:, 1:]` with `none` first).

`--recipe authors`, per space and backbone:
- NB201 (AutoDL-Projects/scripts-search/algos/{DARTS-V1,DARTS-V2,GDAS}-AER.sh, configs/nas-benchmark/
  algos/DARTS.config, GDAS.config): batch 64, w lr 0.025 cosine → 0.001, w wd 5e-4, 50 epochs (GDAS 250,
  τ 10 → 0.1), α Adam 3e-4 wd 1e-3 — the paper recipe's values — and clip 5 of `network.parameters()`
  (exps/algos/DARTS-V1-AER.py:72, DARTS-V2-AER.py:190, GDAS-AER.py:70): `--clip-scope official`.
- DARTS space, DARTS-V1/V2 (DARTS-AER/config.py:46-63, search_aer.py:148): batch 64, w lr 0.025 → 0.001,
  w wd 3e-4 (DARTS's; ours 5e-4), SGD without Nesterov (search_aer.py:52-53: `--no-w-nesterov`), α 3e-4
  wd 1e-3, clip of `model.weights()` only (`--clip-scope w`).
- DARTS space, PC-DARTS (`--partial-channels 4`; PCDARTS-AER/V100_python1.0/train_search_aer.py:25-45,
  82-86, 116, 167): batch 256, w lr 0.1 → 0.001, w wd 3e-4, no Nesterov, α 6e-4 wd 1e-3, 15 warm-up
  epochs; its clip of `model.parameters()` holds no α (α are plain Variables there), so `--clip-scope w`.
  Not reproduced: their PC edge weights start at 1e-3·randn (ours 0). GDAS on the DARTS skeleton and
  S1–S4: no authors' script (refused).
- `--backbone pdarts` (PDARTS-AER/train_search_aer.py:24-41, 124, 140; = chenxin061/pdarts): batch 96,
  w lr 0.025 → 0, w wd 3e-4, SGD without Nesterov (134-138), α lr 6e-4 wd 1e-3 β1 0.5, 3 × 25 epochs,
  10 warm-up epochs per stage, 5 cells, skip-connect dropout 0.1, 0.4, 0.7 (pdarts README.md:61-63).
  H̄ drops column 0 of α on every edge in every stage (train_search_aer.py:298-299): `none` only while
  it is op 0 of the edge, otherwise whichever op pruning left there (`--entropy-ops column0`). Not
  reproduced: their clip of the α gradient at 5 (line 307).
  The paper recipe keeps the shared hyperparameters (the paper says PDARTS's, §4.2.1: use `--recipe
  authors`, as run_all.sh does).

Not reproduced anywhere: their entropy adds 1e-9 inside log₂, H = −Σ_o p_o log₂(p_o + 1e-9)
(AutoDL-Projects/exps/algos/DARTS-V1-AER.py:35, DARTS-V2-AER.py:37, GDAS-AER.py:35, DARTS-AER/models/
search_cnn.py:159, PCDARTS-AER/model_search.py:171, PDARTS-AER/train_search_aer.py:271). Per edge of M
ops that lowers H by Σ_o p_o log₂(1 + 1e-9/p_o) < M·1e-9/ln 2 bits (1.0099e-8 for the DARTS space's 7
ops without `none`, 7.2135e-9 for NB201's 5), approached as every p_o ≫ 1e-9; aer_darts uses the exact
log-softmax, finite at a one-hot α.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

import aer_darts
from common.config import ConfigError, arg
from common.spaces import SPACES, SearchSpace


@dataclass
class AERConfig(aer_darts.AERConfig):
    """aer_darts.AERConfig with the authors' recipe and the quirk flag of their PDARTS-AER."""

    entropy_ops: str = arg("remaining", "pdarts: H̄ over each edge's remaining ops without `none` (paper §3.3), "
                                        "or column0: α without its first column on every edge, whatever op it "
                                        "is now (their PDARTS-AER train_search_aer.py:298-299)",
                           choices=("remaining", "column0"))

    def authors_recipe(self) -> dict[str, Any]:
        """The authors' NB201 and DARTS-space scripts (module docstring)."""
        out = dict(lam_neg=-0.2, lam_pos=0.2, a_lr=3e-4, a_wd=1e-3, w_lr_min=0.001)
        if self.backbone == "pdarts":  # PDARTS-AER/train_search_aer.py:24-41, 124, 140
            return {**out, "batch_size": 96, "w_lr": 0.025, "w_lr_min": 0.0, "w_wd": 3e-4, "a_lr": 6e-4,
                    "a_beta1": 0.5, "epochs": 75, "warmup": 10, "N": 5, "clip_scope": "w",
                    "skip_dropout": "0.1,0.4,0.7", "entropy_ops": "column0",  # pdarts README.md:61-63
                    "w_nesterov": False}  # their SGD (train_search_aer.py:134-138) has no Nesterov
        if SPACES[self.space].skeleton == "nb201" and self.partial_channels == 1:  # AutoDL-Projects/scripts-search/
            # algos/*-AER.sh with configs/nas-benchmark/algos/DARTS.config, GDAS.config
            return {**out, "batch_size": 64, "w_lr": 0.025, "w_wd": 5e-4, "clip_scope": "official",
                    "epochs": 250 if self.backbone == "gdas" else 50}
        if self.backbone == "gdas" or self.space not in ("darts", "darts-nonone"):  # (and PC on NB201)
            raise ConfigError(f"--recipe authors: no authors' script for --backbone {self.backbone} on "
                              f"{self.space} (theirs: DARTS-AER, PCDARTS-AER on the DARTS space)")
        if self.partial_channels > 1:  # PCDARTS-AER/V100_python1.0/train_search_aer.py
            return {**out, "batch_size": 256, "w_lr": 0.1, "w_wd": 3e-4, "a_lr": 6e-4, "epochs": 50,
                    "w_nesterov": False, "warmup": 15, "clip_scope": "w"}
        return {**out, "batch_size": 64, "w_lr": 0.025, "w_wd": 3e-4, "epochs": 50, "clip_scope": "w",
                "w_nesterov": False}

    def arch_entropy(self, alphas: Mapping[str, Tensor], space: SearchSpace) -> Tensor:
        """The paper's H̄, or with `--backbone pdarts --entropy-ops column0` their PDARTS-AER's."""
        if self.backbone == "pdarts" and self.entropy_ops == "column0":
            return remaining_entropy(alphas, space, column0=True)
        return super().arch_entropy(alphas, space)


def remaining_entropy(alphas: Mapping[str, Tensor], space: SearchSpace, column0: bool = False) -> Tensor:
    """aer_darts.remaining_entropy; `column0`: their PDARTS-AER's H̄ instead, α without its first column on
    every edge, whichever op it holds after pruning (train_search_aer.py:298-299)."""
    if column0:
        return aer_darts.architecture_entropy(alphas, drop=0)
    return aer_darts.remaining_entropy(alphas, space)
