"""AER-DARTS: an architecture entropy regularizer on DARTS-V1, DARTS-V2 and GDAS (and PC-DARTS).

Kun Jing, Luoyu Chen, Jungang Xu, "An architecture entropy regularizer for differentiable neural
architecture search", Neural Networks 158 (2023) 111–120. Authors' code: github.com/kunjing96/DARTS-AER
(its layout, their recipe and quirks with file:line: authors/aer.py).

    python aer_darts.py --space nb201 --backbone darts-v1 --nb201 ../shared/data/nb201/nb201_200ep.csv
    python aer_darts.py --space nb201 --backbone darts-v2 --nb201 ...
    python aer_darts.py --space nb201 --backbone gdas --nb201 ...             # 250 epochs, τ 10 → 0.1
    python aer_darts.py --space darts --partial-channels 4 --batch-size 256 --w-lr 0.1 --a-lr 6e-4 --w-wd 3e-4
                                                      # PC-DARTS-AER with the authors' PC-DARTS settings
    python aer_darts.py --space darts --backbone pdarts --recipe authors     # PDARTS-AER (Tables 2-3, Fig. 5)
    python aer_darts.py --lam-neg 0 --lam-pos 0 --backbone {darts-v1,darts-v2,gdas,pdarts}   # plain baselines

Equation map (paper numbering)
    Eq. 1   p^(i,j) = softmax(α^(i,j))                         → softmax_weights (forward), architecture_entropy
    Eq. 2   min_α L_val(w*(α), α), w* = argmin_w L_train       → run.w_step + run.alpha_step (common.harness)
    Eq. 3   H(α^(i,j)) = −Σ_o p_o log₂ p_o;  H̄(α) = mean_(i,j) H → architecture_entropy
            min_α L_val + λ·H̄(α)                               → `reg` of the α step in search()
    Eq. 4   λ(t) from λ_neg to λ_pos on a cosine (Fig. 1)      → aer_coefficient
    Alg. 1  α ← α − ∇α[L_val(w − ξ∇w L_train(w, α), α) + λ(t)H̄(α)] (ξ = 0: first order), then the w step
            → search(): alpha_step (darts-v1, gdas) or unrolled_alpha_step (darts-v2, ξ = current w lr)
    Tables 2-3, Fig. 5  PDARTS-AER: `--backbone pdarts`, the stages in common/pdarts.py (PdartsRun), H̄ in
            every stage over each edge's remaining ops (remaining_entropy); run_all.sh rows pdarts-aer, pdarts
    Fig. 3, Fig. 6b  search-evaluation Kendall τ over runs   → `python -m common.fidelity RUN_DIR ...` (c);
            per-edge and K-sample τ (a), (b) as well; columns of common.report's NB201 table

Glossary: α (E, M) architecture parameters per cell kind (E edges × M ops); p op weights; H edge entropy
(bits); H̄ architecture entropy; λ(t) the regulariser coefficient; λ_neg / λ_pos its start / end;
e epoch (0-based), E epochs; ξ the unrolled step's lr; τ GDAS's Gumbel-softmax temperature; w weights.

Defaults and their sources
- λ_neg = −0.2, λ_pos = 0.2: §4.2.1 (Fig. 6 ablates the pair); the same constants in all authors' scripts.
- λ(e) = λ_neg + (λ_pos − λ_neg)(1 − cos(πe/E))/2 per epoch e = 0 … E−1 (their code's): 0 at E/2, λ_pos at E.
- H̄ in bits, mean over all edges (both cells pooled on the DARTS skeleton): §3.3 and the authors' code;
  softmax over all 5 ops on NB201, over all but `none` on the DARTS skeleton (as their code: authors/aer.py).
- DARTS-V2: the regulariser is added to the unrolled validation loss (their DARTS-V2-AER.py); the α step
  comes before the w step, as in DARTS's and NB201's second-order code, so w' is the coming w.
- GDAS: NB201's GDAS config — 250 epochs, τ linear 10 → 0.1, otherwise DARTS's settings (METHODS.md §1);
  H̄ is taken of softmax(α), not of the sample (their GDAS-AER.py).
- PC-DARTS (`--partial-channels 4`): w only in 15 warm-up epochs (λ = 0), then the cosine over the last E − 15
  (their PCDARTS-AER train_search_aer.py; other settings: the flags above); edge weights γ (β) unregularised.
- P-DARTS (`--backbone pdarts`, DARTS skeleton): 3 stages of `--epochs`/3 epochs, 5 / 11 / 17 cells from
  `--N 5`, ops 8 → 5 → 3, skip-connect dropout, at most 2 skip-connects in the final normal cell (numbers
  and sources: common/pdarts.py). Per stage the first `--warmup` (10) epochs train w only, λ's cosine runs
  over the rest (their PDARTS-AER/train_search_aer.py:124, 150); α step first-order; H̄ leaves `none` out
  where an edge still has it (paper §3.3; their code differs: authors/aer.py).
- Everything else: the shared protocol, METHODS.md §1 (NB201's DARTS code).

Choices where the paper is silent
- H uses log-softmax exactly, finite at one-hot (the authors' 1e-9 inside log₂: authors/aer.py).
- λ ≡ 0 (`--lam 0` or `--lam-neg 0 --lam-pos 0`) passes no regulariser at all: exactly plain DARTS/GDAS.
- Derivation ranks edges by softmax(α), the weights trained with (all backbones; GDAS: the hard
  samples' expectation); NB201: argmax of α.
- During warm-up the valid loss/accuracy is still measured (a forward pass, no α update).
- GDAS samples both cells on the DARTS skeleton (GDAS's own DARTS-space search fixes the reduction cell);
  its edge form is `--gdas-form`'s default (common/supernet.py), the official GDAS code's per skeleton (on
  NB201 the code their GDAS-AER.py runs; they ran no GDAS on the DARTS skeleton).
- Metrics: `lam`, `arch_entropy` (H̄ as regularised, bits), `tau` (GDAS), `warmup`; `op_entropy_*` is of
  softmax(α), which for GDAS is the expectation of the hard sample (Gumbel-max trick).

`--recipe paper` (default): the settings above, `--clip-scope w`. `--recipe authors`: their public scripts,
with file:line, in authors/aer.py (also the flag `--entropy-ops`).

Expected (paper Table 1, NB201, CIFAR-10 search, test acc., 3 runs): DARTS-V1-AER 76.68 ± 8.15,
DARTS-V2-AER 70.92 ± 0.00, GDAS-AER 93.46 ± 0.21 (DARTS-V1/V2 54.30, GDAS 93.57 ± 0.15). Not yet
measured with this code.
"""
from __future__ import annotations

from common.config import answer_help_early

answer_help_early(__name__, __file__)  # --help before torch is imported (0.2 s, not 2 s)

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from common.config import ConfigError, GdasConfig, arg, check_ranges, fill_defaults, parse_config
from common.harness import open_run
from common.pdarts import PdartsRun, pdarts_run, resolve_pdarts, skip_dropout_rates
from common.rundir import main_guard
from common.sampling import gdas_weights, linear_tau
from common.search import softmax_weights
from common.spaces import SPACES, SearchSpace

BACKBONES = ("darts-v1", "darts-v2", "gdas", "pdarts")


@dataclass
class AERConfig(GdasConfig):
    """AER on a DARTS-V1 / DARTS-V2 / GDAS backbone (defaults: paper §4 and the authors' code)."""

    backbone: str = arg("darts-v1", "first-order DARTS, second-order (unrolled) DARTS, GDAS (Gumbel hard "
                                    "sampling) or P-DARTS (3 stages, common/pdarts.py)", choices=BACKBONES)
    epochs: int | None = arg(None, "search epochs (default 50; 250 with --backbone gdas, NB201's GDAS config; "
                                   "pdarts: all 3 stages, default 75)")
    lam_neg: float = arg(-0.2, "λ_neg: λ at the first epoch of the cosine schedule (Eq. 4; paper §4.2.1)")
    lam_pos: float = arg(0.2, "λ_pos: λ the cosine schedule ends at (Eq. 4; paper §4.2.1)")
    lam: float | None = arg(None, "constant λ instead of the schedule (ablations of Fig. 2–3: 0, -0.2, 0.2; "
                                   "default: none, the cosine schedule)")
    drop_none: bool | None = arg(None, "drop `none` and renormalise before the entropy (default: on for "
                                       "DARTS-skeleton spaces with `none`, off on NB201 — the authors' code)")
    warmup: int | None = arg(None, "first epochs train w only, λ = 0 (default 0; 15 with --partial-channels "
                                   "> 1, the authors' PC-DARTS-AER; pdarts: per stage, default 10)")
    skip_dropout: str | None = arg(None, "pdarts: initial skip-connect dropout of the 3 stages, comma-separated "
                                         "(default: P-DARTS paper 0,0.4,0.7; CIFAR-100 0.1,0.2,0.3)")
    tau_max: float = arg(10.0, "GDAS: Gumbel-softmax temperature τ at the first epoch")
    tau_min: float = arg(0.1, "GDAS: τ at the last epoch (linear decay)")

    def dropout_rates(self) -> tuple[float, ...]:
        """--skip-dropout as floats (common.pdarts.skip_dropout_rates)."""
        return skip_dropout_rates(self.skip_dropout)

    def resolve(self) -> None:
        pdarts = self.backbone == "pdarts"  # filled first: the shared checks compare epochs with 1
        fill_defaults(self, epochs={"gdas": 250, "pdarts": 75}.get(self.backbone, 50),
                      warmup=10 if pdarts else 15 if self.partial_channels > 1 else 0,
                      N=5 if pdarts else None)  # P-DARTS's first stage (chenxin061/pdarts train_search.py:31)
        super().resolve()
        if self.backbone == "darts-v2" and self.step_order != "w-first":
            raise ConfigError("--step-order alpha-first: --backbone darts-v2's unrolled α step always runs before "
                              "the w step (on the current w, as DARTS-V2); the flag applies to darts-v1, gdas, pdarts")
        if pdarts:
            resolve_pdarts(self)  # 3 stages, skip-connect dropout rates (common/pdarts.py)
        space = SPACES[self.space]
        if self.drop_none is None:
            self.drop_none = space.skeleton == "darts" and all(map(space.has_none, space.cell_kinds))
        if self.drop_none and not all(map(space.has_none, space.cell_kinds)):
            raise ConfigError(f"--drop-none: space {self.space} has no `none` op on every edge")
        check_ranges(self, {"warmup": (lambda v: 0 <= v <= self.epochs, "in [0, --epochs]")})
        if not 0 < self.tau_min <= self.tau_max:
            raise ConfigError(f"--tau-min/--tau-max must satisfy 0 < tau_min <= tau_max "
                              f"(got {self.tau_min}, {self.tau_max})")

    def arch_entropy(self, alphas: Mapping[str, Tensor], space: SearchSpace) -> Tensor:
        """H̄(α) that the α step regularises (Eq. 3): P-DARTS over each edge's remaining ops, otherwise over
        all ops, `none` dropped with --drop-none. A hook: authors/aer.py overrides it."""
        if self.backbone == "pdarts":
            return remaining_entropy(alphas, space)
        return architecture_entropy(alphas, 0 if self.drop_none else None)  # `none` is op 0 where it exists


# ----------------------------------------------------------------------------- the method

def architecture_entropy(alphas: Mapping[str, Tensor] | Tensor, drop: int | None = None) -> Tensor:
    """H̄(α) of Eq. 3: mean over all edges (all cell kinds pooled) of H = −Σ_o p_o log₂ p_o, p = softmax(α).

    Args:
        alphas: (E, M) α, or a mapping cell kind → (E, M) (same M); edges of all kinds are averaged together.
        drop: an op column left out before the softmax (`none` on the DARTS space): softmax over the rest,
            i.e. softmax(α) with that op removed and renormalised.
    Returns: a scalar tensor (bits), differentiable in α.
    """
    a = alphas if isinstance(alphas, Tensor) else torch.cat(list(alphas.values()), dim=-2)  # (E, M)
    if drop is not None:
        a = torch.cat([a[..., :drop], a[..., drop + 1:]], dim=-1)  # (E, M − 1)
    log_p = F.log_softmax(a, dim=-1)  # Eq. 1, in logs
    h = -(log_p.exp() * log_p).sum(-1) / math.log(2)  # Eq. 3: H(α^(i,j)) in bits, (E,)
    return h.mean()  # Eq. 3: H̄(α)


def aer_coefficient(epoch: float, epochs: int, lam_neg: float = -0.2, lam_pos: float = 0.2,
                    warmup: int = 0) -> float:
    """λ(e) of Eq. 4 / Fig. 1: cosine from λ_neg (e = 0) to λ_pos (e = E), 0 during `warmup` epochs.

    After a warm-up the cosine runs over the remaining epochs: e → e − warmup, E → E − warmup (PC-DARTS-AER).
    """
    if epoch < warmup:
        return 0.0
    e, E = epoch - warmup, epochs - warmup
    return lam_neg + (lam_pos - lam_neg) * (1 - math.cos(math.pi * e / E)) / 2  # Eq. 4 / Fig. 1


def lam_at(epoch: int, cfg: AERConfig, epochs: int | None = None) -> float:
    """λ of this epoch: the constant --lam or the cosine schedule; 0 during the warm-up. `epochs`: the
    schedule's length (default --epochs; P-DARTS: one stage, `epoch` counted within it)."""
    if epoch < cfg.warmup:
        return 0.0
    return cfg.lam if cfg.lam is not None else aer_coefficient(epoch, epochs or cfg.epochs, cfg.lam_neg,
                                                               cfg.lam_pos, cfg.warmup)


def remaining_entropy(alphas: Mapping[str, Tensor], space: SearchSpace) -> Tensor:
    """H̄ of Eq. 3 over each edge's remaining ops (P-DARTS stages: op sets differ per edge), `none` left
    out where an edge still has it; the mean over all edges of both cells."""
    total, n = 0.0, 0
    for kind, a in alphas.items():
        has_none = torch.tensor([ops[0] == "none" for ops in space.edge_ops[kind]], device=a.device)
        for rows, drop in ((a[has_none], 0), (a[~has_none], None)):
            if len(rows):
                total = total + architecture_entropy(rows, drop) * len(rows)  # Eq. 3, summed over edges
                n += len(rows)
    return total / n  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the search

def backbone_run(cfg: AERConfig) -> Callable[..., PdartsRun] | None:
    """The harness's run class of the backbone: P-DARTS's staged run, or None (one supernet; GDAS samples)."""
    return pdarts_run(cfg) if cfg.backbone == "pdarts" else None


def search(cfg: AERConfig) -> dict:
    run = open_run(cfg, "aer_darts", state={}, run_class=backbone_run(cfg))
    gdas = cfg.backbone == "gdas"
    E = cfg.epochs // 3 if cfg.backbone == "pdarts" else cfg.epochs  # P-DARTS: λ(e) and the warm-up per stage
    entropy = lambda r=run: cfg.arch_entropy(r.model.alphas, r.model.space)  # Eq. 3: H̄(α) (P-DARTS: this stage's)
    for epoch in run.epochs():
        e = epoch % E  # the epoch within its P-DARTS stage (a new supernet each stage)
        warm, lam = e < cfg.warmup, lam_at(e, cfg, E)  # Eq. 4
        tau = linear_tau(epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)
        # Eq. 1; GDAS: a fresh hard sample for every w step and every α step
        fwd = run.gdas_forward(tau, gdas_weights) if gdas else run.forward(lambda: softmax_weights(run.alphas))
        # Eq. 3–4: α minimises L_val + λ·H̄(α); λ = 0 adds nothing (exactly plain DARTS / GDAS / P-DARTS)
        reg = None if lam == 0 else (lambda: lam * entropy())
        if warm:
            alpha = run.valid_loss(fwd)  # w only; the valid split is still measured
        elif cfg.backbone == "darts-v2":
            alpha = run.unrolled_alpha_step(fwd, reg)  # Alg. 1, ξ = w lr: ∇α[L_val(w − ξ∇w L_train, α) + λH̄]
        else:
            alpha = run.alpha_step(fwd, reg)  # Alg. 1, ξ = 0: ∇α[L_val(w, α) + λH̄]
        for batch in run.batches():
            run.bilevel(batch, w=run.w_step(fwd), alpha=alpha)  # Alg. 1: the α step and the w step
        run.end_epoch(lambda r: (softmax_weights(r.model.alphas), {"lam": lam, "arch_entropy": entropy(r).item(),
                                                                   "warmup": warm, **({"tau": tau} if gdas else {})}))
    return run.finish()


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(AERConfig, argv, description=__doc__)
    main_guard(lambda: search(cfg))


if __name__ == "__main__":
    main()
