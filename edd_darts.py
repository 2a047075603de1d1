"""EDD-DARTS: sparse-noisy softmax, exponential temperature schedule, entropy-based dynamic decay.

Jiuling Zhang, Zhiming Ding, "Small Temperature is All You Need for Differentiable Architecture
Search" (no code repository named; its DARTS-space runs build on DrNAS's code). This file is the paper
(`--recipe paper`, the default); the authors' fork, github.com/chaoji90/PCDEDD, their flags with file:line
and `--recipe authors`: authors/edd.py.

    python edd_darts.py --space nb201 --nb201 ../shared/data/nb201/nb201_200ep.csv   # EDD, sn-softmax s=100
    python edd_darts.py --space nb201 --clip-alpha 5                   # Table 1 "EDD-DARTS (clip)"
    python edd_darts.py --space nb201 --st-const --lam 0.12            # Table 5, sn-softmax st ≡ 1
    python edd_darts.py --space nb201 --softmax normal                 # Table 5, normal softmax
    python edd_darts.py --space nb201 --schedule pcd --warmup 20       # Sec. 4 PCD baseline
    python edd_darts.py --space nb201 --schedule lts                   # Fig. 2B LTS (linear t); lpcd: Fig. 4A
    python edd_darts.py --space nb201 --backbone gdas                  # ETS-GDAS, 250 epochs, τ 10 → 0.1
    python edd_darts.py --space darts --partial-channels 4             # EDD-PC-DARTS (also s1 … s4)

Equation map (paper numbering)
    Eq. 1      bilevel min_a L_val(w*(a), a)                  → search(): run.w_step, run.alpha_step
    Eq. 2      argmax pruning of β (here β_t, see choices)    → run.end_epoch / run.finish (common.genotypes)
    Eq. 3      β_t = softmax(A/t)                             → SnSoftmax.forward; op_weights (normal softmax)
    Eq. 4–6    ∂β_t/∂A = 𝒜_t/t, 𝒜_t = diag(β_t) − β_tβ_tᵀ   → softmax_vjp (the true softmax gradient)
    Eq. 7–9    ∂β_t/∂A := 𝒜_t/t + 𝒜_{st}/(st) (Eq. 9: the terms' signs may differ) → SnSoftmax.backward
    Eq. 10     t^exp = exp(E(a)/t)                            → ets_forward
    Eq. 11     L^exp = [t0^exp + n·d^exp], d^exp = (tN^exp − t0^exp)/N → ets_log_points, ets_decay_strength
    Eq. 12     t_n = E(a)/ln(t_n^exp)                         → ets_inverse, ets_temperatures
    Eq. 13     E[H(β)] = −Σ_c Σ_i β_c^i ln β_c^i / |C|        → mean_entropy
    Eq. 14     d^exp(k) = λ(1−ρ)E[H(β)] + ρ d^exp(k−1)        → edd_decay
    Eq. 15     t(k) = E(a)/ln(t0^exp + k·d^exp(k))            → edd_temperature
    Alg. 1     sn-softmax                                     → sn_softmax (SnSoftmax)
    Alg. 2     EDD: train at t(k), update d^exp, update t     → search() + end_epoch_schedule
    E(a)       E[a·1(a>0)] of a ~ 1e-3·N(0,1): 1e-3·√(2/π)/2  → expected_positive_alpha (Sec. 2.2)
    Sec. 4     PCD: fixed L^exp cycled every `period` steps   → pcd_temperature
    Fig. 2B    LTS: t_n = t0 + n(t_N − t0)/N (linear in t)    → lts_temperatures; curves: common.report
    Fig. 4A    LPCD: PCD's cycle over a list linear in t      → lpcd_temperature; run_all.sh row `lpcd`
    Table 1    "clip": gradient-norm clipping on α            → common.search.clip_grad_before_step
    Tables 2, 7  S1–S4 (C10/C100/SVHN), EDD, PCD: NB201's recipe (run_all.sh `-paper` rows) or `--recipe authors`

Glossary: A = α (E, M) logits per cell kind, E edges × M ops; β_t op weights; t forward temperature; s scale
of the noise term's temperature st; g = ∂l/∂β_t; t^exp "exponential space"; L^exp decay points; d^exp decay
strength; N number of decay points; k decay step (1, 2, …); λ EDD's one hyperparameter; ρ momentum of Eq. 14;
H(β) natural-log entropy of one edge; τ GDAS's Gumbel temperature (= t here).

Defaults and their sources (the rest, e.g. optimisers, lr, batch 64, 50 epochs, --clip-scope w: METHODS.md §1)
- sn-softmax, s = 100, λ = 0.06: the headline NB201 row (Table 1 = Table 5's best) and best on DS (Table 6).
- ρ = 0.5, d^exp(0) = 0: text under Eq. 14. t0 = 1, a decay after every epoch from the first, no warm-up:
  Alg. 2 ("t0 = 1 (mostly)"). PCD d^exp = 0.11, period 10: Sec. 4 and the authors' code (METHODS.md §2).
- `--schedule ets`: t_end = 1e-3, the worked example of Sec. 2.2. E(a) = 1e-3·√(2/π)/2 ≈ 3.99e-4 from the α
  init 1e-3·N(0,1) (Sec. 2.2; METHODS.md §1) unless `--e-a`. ETS-GDAS: NB201's GDAS, τ 10 → 0.1, 250 epochs.

Choices where the paper is silent
- E[H(β)] (Eq. 13) is of the tempered β = softmax(A/t) actually used (Eq. 13 writes softmax(A), which hardly
  moves at t ≪ 1; METHODS.md §2), all edges of all cell kinds pooled, after the epoch's last step at its t.
- Decay step k = 1 follows the first epoch (t(0) = t0 trains epoch 0); `k` counts decay events. Eq. 15 is
  not monotone by itself: if E[H] collapses, k·d^exp(k) can shrink and t rises again.
- sn-softmax acts on every cell kind's α, on every space; st ≡ 1 means s = 1/t each epoch (at t = 1 that
  doubles the gradient, the formula's value). PC-DARTS's edge weights use a plain softmax and are not
  clipped by `--clip-alpha` (α only; the paper gives no threshold).
- `--schedule ets` (and LTS, Fig. 2B) spreads N = (decay events in the run) points so the last epoch trains
  at t_end; ETS-GDAS uses it for τ (no settings given), with the official GDAS code's edge form per skeleton
  (`--gdas-form`); its op_entropy is of softmax(α), the hard sample's expectation, EDD's (if asked) of
  softmax(α/τ). LPCD (Fig. 4A): PCD's calendar and endpoints (t0, PCD's last point), linear in t between.
- Derivation (Eq. 2) ranks the DARTS skeleton's edges by β_t = softmax(A/t) at the epoch's t, the weights
  trained with (ETS-GDAS: softmax(A)); NB201: argmax of A either way.

Expected (paper Table 1, NB201, CIFAR-10 search, test acc.): EDD-DARTS 93.80 ± 0.33, with clip 94.05 ±
0.11; ETS-GDAS 93.75 ± 0.22. Not yet reproduced with this code (docs/reproducing.md says what ran).
"""
from __future__ import annotations

from common.config import answer_help_early

answer_help_early(__name__, __file__)  # --help before torch is imported (0.2 s, not 2 s)

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from common.config import ConfigError, GdasConfig, arg, check_ranges, fill_defaults, parse_config
from common.harness import Forward, Harness, SeedRun, open_run
from common.run import main_guard
from common.sampling import gdas_weights  # GDAS's hard Gumbel sample (ETS-GDAS)
from common.search import clip_grad_before_step, softmax_weights
from common.supernet import ALPHA_INIT_STD  # α ~ 1e-3·N(0, 1) (DARTS, NB201)


@dataclass
class EDDConfig(GdasConfig):
    """EDD-DARTS, ETS-GDAS, PCD with the paper's defaults; its methods are hooks authors/edd.py overrides."""

    backbone: str = arg("darts", "darts: α → (sn-)softmax(α/t) mixing all ops; gdas: ETS-GDAS, Gumbel hard "
                                 "sampling at τ = t", choices=("darts", "gdas"))
    epochs: int | None = arg(None, "search epochs (default 50; 250 with --backbone gdas)")
    schedule: str | None = arg(None, "temperature schedule: edd (Eq. 14-15), pcd (Sec. 4), ets (Eq. 11-12, "
                                     "t0 → t_end), lts (Fig. 2B: linear in t, t0 → t_end), lpcd (Fig. 4A: "
                                     "PCD with a list linear in t), none (t = t0); default edd, ets with gdas",
                               choices=("edd", "pcd", "ets", "lts", "lpcd", "none"))
    softmax: str | None = arg(None, "sn: sparse-noisy softmax (Alg. 1); normal: softmax(α/t); "
                                    "default sn (normal with gdas)", choices=("normal", "sn"))
    s: float = arg(100.0, "sn-softmax scale s > 1: noise term at temperature s·t (Eq. 7; Tables 5-6)")
    st_const: bool = arg(False, "sn-softmax with s·t ≡ 1 (s = 1/t), Table 5's second variant")
    lam: float = arg(0.06, "λ of Eq. 14 (Tables 1, 5, 6)")
    rho: float = arg(0.5, "ρ of Eq. 14, momentum of the moving average")
    e_a: float | None = arg(None, "E(a) of Eq. 10-15 (default --alpha-init·sqrt(2/pi)/2, Sec. 2.2: 3.99e-4; "
                                  "--alpha-init-mean is not counted)")
    t0: float | None = arg(None, "initial temperature t0 (default 1, Alg. 2; 10 with gdas, GDAS's τ_max)")
    t_end: float | None = arg(None, "--schedule ets target t_N (default 1e-3, Sec. 2.2; 0.1 with gdas)")
    warmup: int = arg(0, "epochs at t0 before the first decay (paper 0; authors' code 10 NB201, 5 DARTS)")
    pcd_d: float = arg(0.11, "PCD: fixed d^exp per step (authors' code 0.11)")
    pcd_period: int = arg(10, "PCD: decay steps per cycle (Sec. 4: periods of 10 epochs)")
    clip_alpha: float | None = arg(None, "clip the gradient norm of α at this value (Table 1 'clip'; off)")

    def decays_after(self, epoch: int) -> bool:
        """Whether a decay step ends `epoch` (0-based): Alg. 2, after every epoch once the warm-up is over."""
        return epoch + 1 >= max(self.warmup, 1)

    def decay_lam(self, epoch: int) -> float:
        """λ of Eq. 14 in the decay step that ends `epoch`."""
        return self.lam

    def t0_exp(self) -> float:
        """t0^exp of Eq. 11, 15 and PCD's list: Eq. 10 at t0, exp(E(a)/t0)."""
        return ets_forward(self.t0, self.e_a)

    def pcd_point(self, k: int, epoch: int) -> float:
        """PCD's t after decay step k, ending `epoch` (Sec. 4; k = 0, epoch = −1: the first epoch's t)."""
        return pcd_temperature(self.e_a, self.t0, self.pcd_d, k, self.pcd_period, self.t0_exp())

    def schedule_entropy(self, beta_t: Mapping[str, Tensor]) -> float:
        """E[H(β)] of Eq. 13 as Eq. 14 reads it: the mean over all edges of all cell kinds of β_t."""
        return mean_entropy(beta_t)

    def step_forwards(self, run: Harness, t: float | Tensor, s: float | Tensor) -> tuple[Forward, Forward]:
        """(α step's, w step's) forward at temperature t: both weigh the ops by op_weights (Alg. 1 / Eq. 3)."""
        forward = run.forward(lambda: op_weights(run.alphas, t, s, self.softmax))
        return forward, forward

    def resolve(self) -> None:
        gdas = self.backbone == "gdas"
        fill_defaults(self, epochs=250 if gdas else 50)  # first: the shared checks compare it with 1
        super().resolve()
        fill_defaults(self, schedule="ets" if gdas else "edd", softmax="normal" if gdas else "sn",
                      e_a=expected_positive_alpha(self.alpha_init), t0=10.0 if gdas else 1.0,
                      t_end=0.1 if gdas else 1e-3)
        if gdas and (self.softmax == "sn" or self.st_const):
            raise ConfigError("--softmax sn / --st-const apply to --backbone darts (GDAS samples hard one-hots)")
        if self.st_const and self.softmax != "sn":
            raise ConfigError("--st-const needs --softmax sn")
        gt0, ge0, ge1 = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, ">= 0"), (lambda v: v >= 1, ">= 1")
        check_ranges(self, {"s": (lambda v: v > 1, "> 1 (Eq. 7)"), "lam": gt0, "rho": (lambda v: 0 <= v < 1,
                            "in [0, 1)"), "e_a": gt0, "t0": gt0, "t_end": (lambda v: 0 < v < self.t0, "in (0, t0)"),
                            "warmup": ge0, "pcd_d": gt0, "pcd_period": ge1, "clip_alpha": gt0})


# ----------------------------------------------------------------------------- sn-softmax (Alg. 1)

def softmax_vjp(beta: Tensor, g: Tensor, dim: int = -1) -> Tensor:
    """𝒜·g with 𝒜 = diag(β) − ββᵀ (Eq. 5 without 1/t; symmetric): β ⊙ (g − ⟨β, g⟩)."""
    return beta * (g - (beta * g).sum(dim, keepdim=True))


class SnSoftmax(torch.autograd.Function):
    """Sparse-noisy softmax (Alg. 1): forward softmax(A/t), backward (𝒜_t/t + 𝒜_{st}/(st))·g (Eq. 7–8)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, t: float, s: float, dim: int) -> Tensor:
        beta_t = F.softmax(logits / t, dim=dim)  # Eq. 3: β_t = softmax(A/t)
        ctx.save_for_backward(logits, beta_t)
        ctx.t, ctx.s, ctx.dim = t, s, dim
        return beta_t

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None, None]:
        logits, beta_t = ctx.saved_tensors
        t, s, dim = ctx.t, ctx.s, ctx.dim
        beta_st = F.softmax(logits / (s * t), dim=dim)  # β_{st}, the smoother distribution
        # Eq. 8: ∂l/∂A = (𝒜_t/t + 𝒜_{st}/(st)) ∂l/∂β_t
        grad = softmax_vjp(beta_t, g, dim) / t + softmax_vjp(beta_st, g, dim) / (s * t)
        return grad, None, None, None


def sn_softmax(logits: Tensor, t: float, s: float, dim: int = -1) -> Tensor:
    """β_t = softmax(logits/t), backward adding the noise term 𝒜_{st}/(st)·g (Eq. 7–8); s = 1/t: st ≡ 1."""
    return SnSoftmax.apply(logits, t, s, dim)


# ----------------------------------------------------------------------------- ETS (Eq. 10–12)

def expected_positive_alpha(std: float = ALPHA_INIT_STD) -> float:
    """E(a) of Sec. 2.2: E[a·1(a > 0)] for a ~ std·N(0, 1), = std·√(2/π)/2 ≈ 4e-4 for std 1e-3."""
    return std * math.sqrt(2 / math.pi) / 2


def ets_forward(t: float, e_a: float) -> float:
    """Eq. 10: t^exp = exp(E(a)/t) (overflows for E(a)/t > 709: use E(a)/t, its log, there)."""
    return math.exp(e_a / t)


def ets_inverse(t_exp: float, e_a: float) -> float:
    """Eq. 12: t = E(a)/ln(t^exp), > 0 for t^exp > 1."""
    return e_a / math.log(t_exp)


def ets_log_points(e_a: float, t0: float, t_end: float, n: int) -> list[float]:
    """ln of L^exp (Eq. 11): t_n^exp = t0^exp + n·(tN^exp − t0^exp)/N, n = 0 … N, in log space:
    ln t_n^exp = ln((1 − n/N)·exp(E/t0) + (n/N)·exp(E/tN)) by logaddexp, exact at both ends; the schedule
    works with ln t^exp = E(a)/t, so t_end = 1e-7 (E(a)/t = 4000) does not overflow."""
    if n == 0:
        return [e_a / t0]
    out = []
    for i in range(n + 1):
        terms = [math.log(w) + e_a / t for w, t in ((1 - i / n, t0), (i / n, t_end)) if w > 0]
        m = max(terms)
        out.append(m + math.log(sum(math.exp(x - m) for x in terms)))
    return out


def ets_decay_strength(e_a: float, t0: float, t_end: float, n: int) -> float:
    """Eq. 11: d^exp = (tN^exp − t0^exp)/N (inf where tN^exp overflows)."""
    try:
        return (ets_forward(t_end, e_a) - ets_forward(t0, e_a)) / n
    except OverflowError:
        return math.inf


def ets_temperatures(e_a: float, t0: float, t_end: float, n: int) -> list[float]:
    """t_0 … t_N of Eq. 11–12: equidistant points in the exponential space, mapped back by Eq. 12."""
    return [e_a / ln_t_exp for ln_t_exp in ets_log_points(e_a, t0, t_end, n)]  # Eq. 12


# ----------------------------------------------------------------------------- EDD (Eq. 13–15), PCD

def mean_entropy(weights: Mapping[str, Tensor] | Tensor, reduction: str = "mean") -> float:
    """Eq. 13: E[H(β_c)] = −Σ_c Σ_i β_c^i ln β_c^i / |C| over all edges of all cell kinds (or the sum)."""
    beta = weights if isinstance(weights, Tensor) else torch.cat([w.flatten(0, -2) for w in weights.values()])
    h = -torch.special.xlogy(beta.detach(), beta.detach()).sum(-1)  # (|C|,), 0·ln 0 = 0
    return (h.mean() if reduction == "mean" else h.sum()).item()


def edd_decay(d_prev: float, mean_entropy: float, lam: float, rho: float = 0.5) -> float:
    """Eq. 14: d^exp(k) = λ(1 − ρ)E[H(β)] + ρ·d^exp(k−1)."""
    return lam * (1 - rho) * mean_entropy + rho * d_prev


def edd_temperature(e_a: float, t0_exp: float, k: int, d_exp: float) -> float:
    """Eq. 15: t(k) = E(a)/ln(t0^exp + k·d^exp(k)); d^exp = 0 or k = 0 gives t0."""
    return e_a / math.log(t0_exp + k * d_exp)


def pcd_temperature(e_a: float, t0: float, d_exp: float, k: int, period: int = 10,
                    t0_exp: float | None = None) -> float:
    """PCD (Sec. 4): the fixed L^exp = [t0^exp + n·d^exp, n < period] cycled: t = E(a)/ln(L^exp[k mod period]);
    n = 0 is t0 itself; `t0_exp` defaults to exp(E(a)/t0) (the authors' code: 1)."""
    n = k % period
    return t0 if n == 0 else edd_temperature(e_a, ets_forward(t0, e_a) if t0_exp is None else t0_exp, n, d_exp)


def lts_temperatures(t0: float, t_end: float, n: int) -> list[float]:
    """LTS, the linear comparator of ETS (Sec. 2.2, Fig. 2B): t_n = t0 + n·(t_N − t0)/N, n = 0 … N. The paper's
    example t0 = 1, t_N = 1e-3, N = 4 prints (1, .75, .5, .25, .001); exact: (1, 0.75025, 0.5005, 0.25075, 0.001)."""
    return [t0 + i * (t_end - t0) / n for i in range(n + 1)] if n else [t0]


def lpcd_temperature(t0: float, t_last: float, k: int, period: int = 10) -> float:
    """LPCD (Fig. 4A): PCD's calendar over a list linear in t, t0 … t_last in `period` points, cycled."""
    return lts_temperatures(t0, t_last, period - 1)[k % period] if period > 1 else t0


# ----------------------------------------------------------------------------- the search (Alg. 2)

def advance_schedule(state: dict[str, Any], cfg: EDDConfig, entropy: float, epoch: int, ets: list[float]
                     ) -> None:
    """One decay step k → k + 1 of the chosen schedule; updates `state` (t, k, d_exp, lam) in place."""
    k = state["k"] = state["k"] + 1
    state["lam"] = lam = cfg.decay_lam(epoch)
    t0_exp = cfg.t0_exp()
    if cfg.schedule == "edd":
        state["d_exp"] = edd_decay(state["d_exp"], entropy, lam, cfg.rho)  # Eq. 14
        x = t0_exp + k * state["d_exp"]  # t^exp(k) of Eq. 15; t0^exp = 1 with no decay yet would be t = ∞
        state["t"] = edd_temperature(cfg.e_a, t0_exp, k, state["d_exp"]) if x > 1 else cfg.t0  # Eq. 15
    elif cfg.schedule in ("ets", "lts"):
        state["t"] = ets[min(k, len(ets) - 1)]  # Eq. 11–12 (ets), or linear in t (LTS, Fig. 2B)
    elif cfg.schedule == "pcd":
        state["t"] = cfg.pcd_point(k, epoch)  # Sec. 4
    elif cfg.schedule == "lpcd":  # the same endpoints as PCD's list, spaced linearly in t (Fig. 4A)
        t_last = pcd_temperature(cfg.e_a, cfg.t0, cfg.pcd_d, cfg.pcd_period - 1, cfg.pcd_period, t0_exp)
        state["t"] = lpcd_temperature(cfg.t0, t_last, k, cfg.pcd_period)


def end_epoch_schedule(state: dict[str, Any], cfg: EDDConfig, entropy: float, epoch: int, ets: list[float]
                       ) -> None:
    """After `epoch`: a decay step if one ends it; sets the next epoch's t."""
    if cfg.decays_after(epoch):  # Alg. 2: every epoch once the warm-up is over
        advance_schedule(state, cfg, entropy, epoch, ets)


def op_weights(alphas: Mapping[str, Tensor], t: float | Tensor, s: float | Tensor, softmax: str,
               sn_kinds: Iterable[str] | None = None) -> dict[str, Tensor]:
    """β_t per cell kind, (E, M): sn_softmax(α, t, s) (Alg. 1) or softmax(α/t) (Eq. 3); `sn_kinds`: the
    cell kinds that get sn-softmax (default all)."""
    sn = set(alphas) if sn_kinds is None else set(sn_kinds)
    return {k: sn_softmax(a, t, s) if softmax == "sn" and k in sn else F.softmax(a / t, dim=-1)
            for k, a in alphas.items()}


def search(cfg: EDDConfig) -> dict:
    gdas = cfg.backbone == "gdas"
    n_decays = sum(map(cfg.decays_after, range(cfg.epochs - 1)))  # decay steps that reach training
    ets = (lts_temperatures(cfg.t0, cfg.t_end, n_decays) if cfg.schedule == "lts"
           else ets_temperatures(cfg.e_a, cfg.t0, cfg.t_end, n_decays))
    d_exp = (cfg.pcd_d if cfg.schedule in ("pcd", "lpcd") else  # fixed d^exp (PCD), Eq. 11's (ETS); EDD's d^exp(0)
             ets_decay_strength(cfg.e_a, cfg.t0, cfg.t_end, max(n_decays, 1)) if cfg.schedule == "ets" else 0.0)
    t = cfg.pcd_point(0, -1) if cfg.schedule == "pcd" else cfg.t0  # t(0) = t0 (Alg. 2), or PCD's point of epoch 0
    run = open_run(cfg, "edd_darts", state={"t": t, "k": 0, "d_exp": d_exp, "lam": cfg.lam})
    if cfg.clip_alpha:
        clip_grad_before_step(run.a_optimizer, run.alphas.values(), cfg.clip_alpha)  # Table 1 "clip"
    for epoch in run.epochs():
        t = run.per_seed(run.state("t"))  # t(k) of Eq. 15 (or the ETS/PCD point), fixed for the epoch
        s = 1 / t if cfg.st_const else cfg.s
        forward, forward_w = ((run.gdas_forward(t, gdas_weights),) * 2 if gdas  # ETS-GDAS: τ = t
                              else cfg.step_forwards(run, t, s))
        for batch in run.batches():  # Alg. 2's inner loop at this epoch's t
            run.bilevel(batch, w=run.w_step(forward_w), alpha=run.alpha_step(forward))

        def end_of_epoch(r: SeedRun) -> tuple[dict[str, Tensor], dict[str, Any], float]:  # Alg. 2, per seed
            state, t = r.method_state, r.method_state["t"]
            beta_t = {k: F.softmax(a.detach() / t, dim=-1) for k, a in r.model.alphas.items()}  # = sn forward
            entropy = cfg.schedule_entropy(beta_t)  # Eq. 13 at this epoch's t
            end_epoch_schedule(state, cfg, entropy, epoch, ets)  # Alg. 2: Eq. 14, then Eq. 15 (or PCD / ETS)
            used = softmax_weights(r.model.alphas) if gdas else beta_t  # op_entropy_*: of the weights used
            return used, {"temperature": t, "s": 1 / t if cfg.st_const else cfg.s, "mean_entropy": entropy,
                          "d_exp": state["d_exp"], "k": state["k"], "lam": state["lam"],
                          "next_temperature": state["t"]}, 1.0 if gdas else t
        run.end_epoch(end_of_epoch)
    return run.finish(lambda r: {"temperature": r.method_state["t"], "e_a": cfg.e_a})


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(EDDConfig, argv, description=__doc__)
    main_guard(lambda: search(cfg))


if __name__ == "__main__":
    main()
