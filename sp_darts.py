"""SP-DARTS: batch-mixed sparse/smooth temperature training.

Jiuling Zhang & Zhiming Ding, "Robustifying DARTS by Eliminating Information Bypass Leakage via
Explicit Sparse Regularization" (paper 002). Authors' code: https://github.com/chaoji90/SP-DARTS
(NB201: `AutoDL-Projects_sp/exps/algos/DARTS-V1-10.py`; DARTS space: `SP-DARTS/train_search_mf.py`).

    python sp_darts.py --space nb201 --dataset cifar10 --nb201 ../shared/data/nb201/nb201_200ep.csv
    python sp_darts.py --space darts            # Table IV settings; also --space s1 … s4
    python sp_darts.py --space nb201 --recipe authors   # the authors' NB201 script for --dataset
    python sp_darts.py --space s2 --dataset svhn --recipe authors --t-sp 5e-4   # their S1-S4 script

Each batch uses one of two tempered softmaxes of the same α: the sparse a_sp (t_sp ≈ 1e-3, nearly one-hot: the
supernet sees almost the discrete net, no "information bypass") or the smooth a_sm, t_sm = 10·t_sp (keeps
gradients alive where a_sp saturates); the sparse one with probability p, rising linearly (Eq. 20).

Equation map (paper numbering)
    Eq. 1–4   DARTS relaxation / argmax derivation    → common.search, common.genotypes (at t_sp, below)
    Eq. 5–8   categorical target vs. DARTS relaxation  → (motivation; Eq. 8 = `tempered_softmax(α, 1.0)`)
    Eq. 9     a_sp = softmax(A/t_sp)                   → `tempered_softmax(α, cfg.t_sp)`
    Eq. 10    its Jacobian (1/t)(diag(y) − yyᵀ)        → autograd; checked in tests/test_sp.py
    Eq. 11–14 L(a_sm) + L(a_sp), a_sm = softmax(A/t_sm) → `--objective eq13`: `two_pass_step`
    Eq. 15    a(φ) = a_sp if φ = 1 else a_sm          → `branch_forwards` (φⁿ of the batch: the run's step flag)
    Eq. 16–19 φ ~ B(1, p) per batch                    → `draw_phi`
    Eq. 20    P_schedule(p_up, p_low, I, i, i_wp)      → `mixing_probability` (per epoch: `SPConfig.epoch_schedule`)
    Eq. 21    IES = Σ_edges H(softmax(A))              → `entropy_sum` (core); see "Entropies" below
    Alg. 1    per epoch: p_i, Φ; per batch: w step then α step, both with a(φⁿ) → `search`
    Table V   S1–S4 × CIFAR-10/100, SVHN: t_sp ∈ {4,5,6,7}e-4, the best by validation accuracy → run_all.sh
              rows `sp-darts-tsp*` (`--t-sp`, one run each; the authors' recipe, and `-paper`: Table IV)

Glossary: A/α architecture logits (E, M) per cell kind; t_sp/t_sm sparse/smooth temperature;
φ ∈ {0, 1} the per-batch indicator, Φ an epoch's indicators; p mixing probability; i epoch (1-based
in Eq. 20), I epochs, i_wp warm-up epochs; IES information entropy summation (natural log).

Choices where the paper is silent (written down here, tested in tests/test_sp.py)
- Eq. 20: Algorithm 1 runs "while i ≤ I", so i = epoch + 1 (epoch 0-based); p is p_low at i = i_wp, p_up on
  the last epoch (p_low = 0, Tables II/IV: the first i_wp epochs purely smooth), as their C += 1/(I − i_wp).
- Φ is drawn for the whole epoch at its start (Algorithm 1, their code) from the method's own CPU
  torch.Generator (seed + 0x5D5D), checkpointed in `method_state` (bit-identical resume); the global RNG
  is never touched, so p = 0, t_sm = 1 is plain DARTS exactly.
- t_sm is ratio·t_sp for the whole run, warm-up included (Eq. 15 has one smooth temperature).
- `--objective eq13` (Eq. 13) and `expected` (weights (1 − p, p): what the mixed scheme estimates one sample
  at a time) are un-mixed references: both terms, two passes, in the w step and in the α step of every
  batch; they log that weighted sum as train/valid loss and the smooth pass's accuracy (sparse if c_sm = 0).
- Entropies: `entropy_sum` (core) is Eq. 21 verbatim, IES of softmax(A); `op_entropy_*` (core) are of the
  expected weights fed to the supernet, q·a_sp + (1 − q)·a_sm (q = p; ½ for eq13); `ies_sparse` (IES of
  a_sp: Fig. 3a, and what the authors' scripts print) and `ies_smooth` are over all cell kinds.
- ImageNet16-120 (not searched in the paper) takes Table II's CIFAR-100 row; S1–S4 Table IV (t_sp = 1e-3).
- Derivation ranks the DARTS skeleton's edges by a_sp, the sparse weights the run converges to (as the
  authors' `model.genotype(temp)`); NB201: argmax of A.
- w weight decay ("unlisted settings as DARTS"): NB201's 5e-4 on NB201, DARTS's 3e-4 on DARTS/S1–S4; w step
  before α step on every space (METHODS.md §1).

`--recipe paper` (default): Tables II/IV and the choices above. `--recipe authors`, the authors'-code flags:
authors/sp.py (their values with file:line; their quirks override `SPConfig.epoch_schedule`, `.w_weights`).

Expected result: paper, NB201 CIFAR-10 search, test 94.01 ± 0.31 (3 seeds), IES far below DARTS (Fig. 3a);
DARTS space CIFAR-10 2.50 ± 0.07 % error. The 50-epoch reproduction is not run yet. Measured so far (one
H100, CIFAR-10 5,170-image subset, NB201 C=16 N=5, batch 256, 4 epochs, seed 0): per 10-step epoch (incl. the
discrete-net eval) mixed 2.1–2.4 s, plain DARTS 2.2–2.4 s, eq13 4.0–4.2 s (two passes); IES of the used
weights 9.61 → 8.96 → 7.49 → 4.46 (p = 0, ⅓, ⅔, 1), DARTS's 9.657 throughout; two CUDA runs: bit-identical α.
"""
from __future__ import annotations

from common.config import answer_help_early

answer_help_early(__name__, __file__)  # --help before torch is imported (0.2 s, not 2 s)

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common.config import ConfigError, SearchConfig, arg, check_ranges, fill_defaults, parse_config
from common.data import NUM_CLASSES
from common.harness import Forward, Half, Harness, SeedRun, StepFlag, open_run
from common.run import main_guard
from common.search import clip_grad_norm, entropy_stats
from common.spaces import SPACES

TABLE_II = {"cifar10": (1.0, 1.1e-3), "cifar100": (0.9, 1.3e-3)}  # NB201: dataset → (p_up, t_sp)
TABLE_IV = (1.0, 1.0e-3)  # DARTS space, also S1–S4: (p_up, t_sp); batch 80
PHI_SEED_OFFSET = 0x5D5D  # the φ generator's stream is its own, apart from the global RNG


@dataclass
class SPConfig(SearchConfig):
    """SP-DARTS flags, defaults from Table II (NB201) and Table IV (DARTS space, S1–S4). The hooks below the
    fields hold the paper's behaviour; authors/sp.py overrides them with the authors' code's."""

    batch_size: int | None = arg(None, "batch size (w and α steps); default 256 on NB201 (Table II), "
                                       "80 on DARTS/S1-S4 (Table IV)")
    w_lr: float = arg(0.05, "SGD learning rate of w (Tables II/IV: 0.05)")
    w_lr_min: float | None = arg(None, "cosine schedule's final w lr (default None: constant, Tables II/IV "
                                       "set eta_min = lr)")
    w_wd: float | None = arg(None, "weight decay of w; default 5e-4 on NB201 (NB201 code), 3e-4 on "
                                   "DARTS/S1-S4 (DARTS code)")
    a_wd: float = arg(0.0, "Adam weight decay of α (Tables II/IV: 0)")
    t_sp: float | None = arg(None, "sparse temperature t_sp (Eq. 9); default NB201: 1.1e-3 on cifar10 "
                                   "(and other 10-class sets), 1.3e-3 on cifar100/imagenet16-120 (Table II); "
                                   "DARTS/S1-S4: 1e-3 (Table IV)")
    t_sm_ratio: float = arg(10.0, "t_sm = ratio * t_sp (Tables II/IV: 10; the authors' NB201 script: 11)")
    t_sm: float | None = arg(None, "smooth temperature t_sm; overrides --t-sm-ratio (1 gives DARTS's "
                                   "softmax(α)); default ratio * t_sp")
    p_low: float = arg(0.0, "p_low of Eq. 20 (Tables II/IV: 0)")
    p_up: float | None = arg(None, "p_up of Eq. 20; default NB201: 1 on cifar10, 0.9 on "
                                   "cifar100/imagenet16-120 (Table II); DARTS/S1-S4: 1 (Table IV); above 1, p "
                                   "reaches 1 before the last epoch and stays (authors' S1-S4 script: 1.1, "
                                   "SmoothDARTS/sota/cnnmul/train_search.py:166-172)")
    warmup: int = arg(1, "i_wp of Eq. 20 (Tables II/IV: 1): p = 0 while epoch + 1 < i_wp, p_low at "
                         "epoch + 1 = i_wp (epoch 0-based)")
    objective: str = arg("mixed", "mixed: Algorithm 1, one temperature per batch; eq13: L(a_sm) + L(a_sp) "
                                  "every batch, two passes (Eq. 13, reference); expected: (1-p) L(a_sm) + "
                                  "p L(a_sp), two passes", choices=("mixed", "eq13", "expected"))

    def resolve(self) -> None:
        nb201 = SPACES[self.space].skeleton == "nb201"  # fill the shared fields first: super() checks them
        fill_defaults(self, batch_size=256 if nb201 else 80, w_wd=5e-4 if nb201 else 3e-4)
        super().resolve()
        # Table II row by class count: CIFAR-10 (10-class sets) or CIFAR-100 (also ImageNet16-120)
        p_up, t_sp = TABLE_II["cifar10" if NUM_CLASSES[self.dataset] <= 10 else "cifar100"] if nb201 else TABLE_IV
        fill_defaults(self, p_up=p_up, t_sp=t_sp)
        fill_defaults(self, t_sm=self.t_sm_ratio * self.t_sp)
        gt0, ge0 = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, ">= 0")
        check_ranges(self, {"t_sp": gt0, "t_sm_ratio": gt0, "t_sm": gt0, "p_low": (lambda v: 0 <= v <= 1,
                            "in [0, 1]"), "p_up": (ge0[0], ">= 0, p capped at 1"), "warmup": ge0})
        if self.clip_scope == "official" and self.objective != "mixed":
            raise ConfigError("--clip-scope official applies to --objective mixed (the authors' scheme) only")

    def epoch_schedule(self, epoch: int) -> tuple[float, float, float]:
        """(p, t_sp, t_sm) of `epoch` (0-based): Eq. 20's p; t_sp and t_sm fixed for the run (Eq. 15)."""
        return mixing_probability(epoch, self.epochs, self.p_low, self.p_up, self.warmup), self.t_sp, self.t_sm

    def w_weights(self, alphas: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
        """The op weights of the w step's forward at temperature t: the α step's, softmax(A/t) (Eq. 15)."""
        return tempered_weights(alphas, t)


# ----------------------------------------------------------------------------- the method's pieces

def tempered_softmax(alpha: Tensor, t: float) -> Tensor:
    """softmax(A/t) over ops (Eq. 9 for t = t_sp, Eq. 14's a_sm for t = t_sm). (E, M) → (E, M).

    Stable for t → 0 (softmax subtracts the row max); A/1.0 is exact, so t = 1 is DARTS's softmax(A).
    The argmax per edge does not depend on t (t > 0), so the derived genotype is temperature-free.
    """
    return F.softmax(alpha / t, dim=-1)


def tempered_weights(alphas: Mapping[str, Tensor], t: float) -> dict[str, Tensor]:
    """`tempered_softmax` for every cell kind."""
    return {k: tempered_softmax(a, t) for k, a in alphas.items()}


def mixing_probability(epoch: int, epochs: int, p_low: float, p_up: float, warmup: int) -> float:
    """Eq. 20 with the paper's 1-based epoch i = epoch + 1 (epoch 0-based), I = epochs, i_wp = warmup.

    p = 0 for i < i_wp; else p_low + (p_up − p_low)·(i − i_wp)/(I − i_wp): p_low at i = i_wp, p_up on
    the last epoch. Clamped to the schedule's range, so p stays in [min, max](p_low, p_up), and at most 1
    (p_up > 1: the authors' S1-S4 C, which passes 1 and then draws the sparse branch every batch).
    """
    i, I = epoch + 1, epochs
    if i < warmup:
        return 0.0
    frac = 0.0 if I <= warmup else min(max((i - warmup) / (I - warmup), 0.0), 1.0)  # I = i_wp: p_low
    return min(p_low + (p_up - p_low) * frac, 1.0)  # Eq. 20


def draw_phi(n: int, p: float, generator: torch.Generator) -> list[bool]:
    """Φ = {φ¹ … φⁿ}, φ ~ B(1, p) (Eq. 15–19, Algorithm 1), from `generator` (a CPU generator) only."""
    return (torch.rand(n, generator=generator, dtype=torch.float64) < p).tolist()


def two_pass_step(terms: Sequence[tuple[float, Forward]], x: Tensor, y: Tensor, params: list[nn.Parameter],
                  optimizer: torch.optim.Optimizer, grad_clip: float | None = None,
                  report: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> tuple[Tensor, Tensor]:
    """One optimiser step on Σ_k c_k·CE(f_k(x), y) (Eq. 13: c = (1, 1)); one forward/backward per term.

    Gradients are accumulated term by term (peak memory of one pass); zero-weight terms are skipped;
    `grad_clip` clips the total gradient norm of `params` (common.search.clip_grad_norm). Returns
    (Σ c_k·report(logits_k, y), logits of the first term with c_k ≠ 0); `report` is the mean
    cross-entropy, or the run's (`Harness.cross_entropy`: each seed's with --seeds).
    """
    grads: list[Tensor] = [torch.zeros_like(p) for p in params]
    total, first = torch.zeros((), device=x.device), None
    for c, forward in terms:
        if c == 0:
            continue
        logits = forward(x)
        loss = c * F.cross_entropy(logits, y)  # Eq. 13's term c_k·L(a_k)
        for g, d in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if d is not None:
                g += d
        total = total + c * report(logits.detach(), y)
        first = logits.detach() if first is None else first
    if first is None:
        raise ValueError("two_pass_step needs a term with a non-zero weight")
    for p, g in zip(params, grads):
        p.grad = g
    if grad_clip:
        clip_grad_norm(params, grad_clip)
    optimizer.step()
    return total, first


# ----------------------------------------------------------------------------- search loop

def branch_forwards(run: Harness, t_sp: float, t_sm: float, phi: StepFlag,
                    weigh: Callable[[Mapping[str, Tensor], float], dict[str, Tensor]] | None = None,
                    ) -> tuple[Forward, Forward, Forward]:
    """The run's forwards at a_sp (Eq. 9), a_sm (Eq. 14) and a(φ) (Eq. 15: a_sp where φ, else a_sm);
    `weigh(α, t)`: the op weights at temperature t (default `tempered_weights`)."""
    weigh = weigh or tempered_weights

    def at(t: float) -> Callable[[], dict[str, Tensor]]:
        return lambda: weigh(run.model.alphas, t)
    return run.forward(at(t_sp)), run.forward(at(t_sm)), run.forward(lambda: phi.where(at(t_sp), at(t_sm)))


def two_pass_halves(run: Harness, terms: Sequence[tuple[float, Forward]], grad_clip: float | None
                    ) -> tuple[Half, Half]:
    """The w and α halves of a two-pass objective: `two_pass_step` on the train batch (w) and the valid one (α)."""
    return (lambda x_t, y_t, x_v, y_v: two_pass_step(terms, x_t, y_t, run.w_params, run.w_optimizer, grad_clip,
                                                     run.cross_entropy),
            lambda x_t, y_t, x_v, y_v: two_pass_step(terms, x_v, y_v, run.a_params, run.a_optimizer, None,
                                                     run.cross_entropy))


def search(cfg: SPConfig) -> dict:
    run = open_run(cfg, "sp_darts", state={})
    phi_rngs = run.seed_generators("phi_generator", PHI_SEED_OFFSET, device="cpu")  # φ's own streams
    phi = run.step_flag()  # φⁿ of the batch
    for epoch in run.epochs():
        p, t_sp, t_sm = cfg.epoch_schedule(epoch)  # Eq. 20
        phis = [draw_phi(run.steps_per_epoch, p, g) for g in phi_rngs]  # Algorithm 1: Φ for this epoch
        f_sp, f_sm, f_phi = branch_forwards(run, t_sp, t_sm, phi)  # Eq. 9, Eq. 14, Eq. 15
        *_, f_phi_w = branch_forwards(run, t_sp, t_sm, phi, cfg.w_weights)  # the w step's (Eq. 15: the same)
        mixed = cfg.objective == "mixed"
        c_sm, c_sp = (1.0, 1.0) if cfg.objective == "eq13" else (1.0 - p, p)  # two-pass objectives' weights
        if mixed:  # Algorithm 1: the w step, then the α step, both with a(φⁿ)
            w, alpha = run.w_step(f_phi_w), run.alpha_step(f_phi)
        else:  # Eq. 13 (or its p-weighted expectation): both terms every batch
            w, alpha = two_pass_halves(run, [(c_sm, f_sm), (c_sp, f_sp)], cfg.grad_clip)
        for n, batch in enumerate(run.batches()):
            run.bilevel(batch, w, alpha, key=phi.set([phi_s[n] for phi_s in phis]) if mixed else None)
        fraction = {seed: sum(phi_s) / max(len(phi_s), 1) for seed, phi_s in zip(run.seeds, phis)}
        q = c_sp / (c_sm + c_sp)  # share of the sparse branch: p (mixed, expected), ½ (eq13)

        def report(r: SeedRun) -> tuple:  # per seed
            with torch.no_grad():
                a_sp, a_sm = tempered_weights(r.model.alphas, t_sp), tempered_weights(r.model.alphas, t_sm)
                used = {k: q * a_sp[k] + (1 - q) * a_sm[k] for k in a_sp}  # E[a(φ)]
                return used, {"p": p, "t_sp": t_sp, "t_sm": t_sm,
                              "sparse_fraction": fraction[r.cfg.seed] if mixed else None,
                              "ies_sparse": entropy_stats(a_sp)[1], "ies_smooth": entropy_stats(a_sm)[1]}, t_sp  # Eq. 21
        run.end_epoch(report)
    return run.finish()


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(SPConfig, argv, description=__doc__)
    main_guard(lambda: search(cfg))


if __name__ == "__main__":
    main()
