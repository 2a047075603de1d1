"""SA-DARTS and SAC-DARTS: smooth-activation regularisation of the architecture weights α.

Paper: Y. Zhou, M. El-Khamy, K.-B. Song, "Regularizing Differentiable Architecture Search with Smooth
Activation" (Samsung; ../shared/papers/003). No public code exists: this file is the reference.

    python sa_darts.py --space nb201                           # SA-DARTS, NB201 settings of appendix 6.2
    python sa_darts.py --space nb201 --partial-channels 4      # SAC-DARTS (SA + PC-DARTS partial channels)
    python sa_darts.py --space darts --partial-channels 4      # SAC-DARTS on the DARTS space (batch 256)
    python sa_darts.py --space nb201 --reg beta                # β-DARTS comparator;  --reg none: DARTS / PC-DARTS
    python sa_darts.py --space nb201 --backbone snas           # SNAS + SA (Table 6)
    python sa_darts.py --space nb201 --partial-channels 4 --init-skip-bias 0.1 --warmup 15   # Fig. 4
    python sa_darts.py --task sr --space imdn --reg sa --data-dir DIV2K_PARENT   # ×2 SR (§4.3; common/sr)

Equation map (paper → code)
    Eq. 1  β = softmax(α) per edge                       → `softmax_weights` (common.search); metrics
    Eq. 2  o(i,j) = argmax_o α_o (DERIVE)                → `run.genotype()` (common.genotypes.derive_from_alphas)
    Eq. 3–6  variance analysis (why α should be small)    → motivation only
    Eq. 7  L_SA = λ_e/(N_o N_e) Σ_i Σ_j ((1+ν)α + (1−ν)α·erf(μ(1−ν)α))/2   → `sa_loss`
    Eq. 8  ν = 1: L_SA = λ_e·mean(α) (the default)       → `sa_loss(nu=1)`
    λ_e = epoch/5, "linearly increasing"                 → `sa_coefficient`
    Alg. 1 line 6  α ← α − ∇α[L_val + L_SA]  (first order) → `alpha_step(..., reg=...)` in `search`
    Alg. 1 line 7  w ← w − ∇w L_train                    → `w_step`
    Alg. 1 DERIVE: per edge argmax op, top-2 edges per node ranked by softmax(α)·γ (App. 6.10; line 12
           writes α·γ, the PC-DARTS rule it cites is softmax(α)·γ)  → common.genotypes.derive_cell
    Alg. 1 MIXED OPERATION (Eq. 19–20): 1/K of the channels through Σ_o β_o·o(x1), the rest passed through,
           concatenated, channel-shuffled; edge output × γ → common.supernet (`--partial-channels K`)
    β-DARTS comparator L_β = λ·mean over all edges (both cells) of logsumexp(α), λ = 0.5·epoch → `beta_loss`
    Table 8 (App. 6.9) DARTS from negative α (below) → `--reg none --alpha-init-mean=-5e-4` (common.config);
           run_all.sh rows `darts-init-m*` (NB201, CIFAR-10)
    Sec. 2.2 / Fig. 5 three-op space (conv 3×3, skip, avg pool) → `--space nb201-3op` (common.spaces);
           run_all.sh rows `sa-darts`, `darts-v1` under nb201-3op/ (the landscape plot itself is not built)
Glossary: α (E, M) architecture weights per cell kind; β = softmax(α) op weights; γ PC-DARTS edge weights:
softmax of `model.betas` over a node's incoming edges (`model.edge_gammas()`, common.supernet.MixedOp and
edge_normalisation); N_o ops per edge, N_e edges (N_o·N_e = every α entry, both cells on the DARTS skeleton);
ν slope for negative α; μ smoothness of erf; λ_e regulariser strength in epoch e.

Choices where the paper is silent or inconsistent (documented, all options):
- Algorithm 1 counts epochs e = 1..E, so λ_e = e/5 is 0.2 in the first epoch (`--lam-divisor 5`). Alg. 1
  writes λ_e·L_SA with λ_e already inside Eq. 7; λ_e is applied once.
- The paper says "ν = 1 or μ = 0 reduces to Eq. 8"; for μ = 0 Eq. 7 gives (1+ν)/2·λ_e·mean(α), Eq. 8 up to
  that factor (identical minima direction, different strength). We implement Eq. 7 as written.
- Derivation ranks edges by softmax(α)(·γ), the weights trained with (SNAS: softmax(α) is the
  probability of each op being its samples' argmax); NB201: argmax of α.
- α weight decay: 0 with SA (appendix 6.2), 1e-3 for the baselines ("following public code"); one Adam
  updates α and the PC edge weights, so the same decay applies to both.
- Settings: appendix 6.2's NB201 ones (the flags' defaults, with the shared w cosine schedule, clip 5, 50
  epochs); on the DARTS skeleton with K > 1 its PC-DARTS ones, with K = 1 §4.2's "same as DARTS" (NB201's).
- SNAS backbone: soft Gumbel-softmax samples softmax((α + g)/τ), fresh for every forward, in the same bilevel
  loop (w on train, α on valid); τ linear from 1 to 0.03 over our run (SNAS code: `--temp 1 --temp_min 0.03`,
  its scheduler divides by a fixed 150 epochs); logged op weights: a 256-sample Monte-Carlo mean (fixed seed).
- Table 8 "initialize all α with 1e-3·c" (the table's c are −0.5, −1, −2, −5; the text's extraction lost
  the signs): read as the offset c·1e-3 added to the usual 1e-3·N(0, 1) draw (a constant α would tie every
  op); `--alpha-init 0` gives the constant reading. Table 8 reports 54.30 (c = −0.5, −1), 70.92 (−2, −5).
- Skip-bias experiment (Fig. 4): +0.1 is added to α[skip_connect] of every edge on top of the 1e-3·randn
  init (paper: α = [0, 0.1, 0, 0, 0], β_skip = 0.216). Warm-up epochs train w only; λ_e counts all epochs.

`--recipe paper` is all of the above; `--recipe authors` is refused with a one-line reason (no public code).

Metrics added to the shared ones (metrics.jsonl): `lam`, `reg_value`, `alpha_mean/median/std` (Fig. 3),
`top2_gap` per edge and its `top2_gap_min`/`_mean` (Table 1: β_top1 − β_top2 on the closest edge),
`beta_skip`/`beta_conv` per edge (skip vs best conv, Fig. 4), `alpha_frozen`, `gamma` (PC), `temperature` (SNAS).

Expected result (paper, Table 6): NB201 CIFAR-10 test 94.36 ± 0.00 (SA, SAC, SNAS+SA; 10 seeds, V100).
Not yet measured here.
"""
from __future__ import annotations

import sys

from common.config import answer_help_early

if sys.argv[1:3] != ["--task", "sr"]:  # `--task sr --help` is common.sr.search's
    answer_help_early(__name__, __file__)  # --help before torch is imported (0.2 s, not 2 s)

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from common.config import ConfigError, SearchConfig, arg, check_ranges, fill_defaults, parse_config
from common.harness import SeedRun, open_run
from common.rundir import main_guard
from common.sampling import Generators, gumbel_softmax_soft, linear_tau
from common.search import softmax_weights
from common.spaces import SPACES

Alphas = Tensor | Mapping[str, Tensor] | Iterable[Tensor]


@dataclass
class SAConfig(SearchConfig):
    """SA-/SAC-DARTS search (appendix 6.2 defaults)."""

    batch_size: int | None = arg(None, "batch size; default 64 (NB201, appendix 6.2); DARTS skeleton: 256 "
                                       "with --partial-channels > 1 (appendix 6.2), else 64 (DARTS)")
    w_lr: float | None = arg(None, "SGD lr of w; default 0.025, 0.1 on the DARTS skeleton with K > 1")
    w_wd: float = arg(3e-4, "weight decay of w (appendix 6.2)")
    a_lr: float | None = arg(None, "Adam lr of α; default 3e-4, 6e-4 on the DARTS skeleton with K > 1")
    a_wd: float | None = arg(None, "Adam weight decay of α; default 0 with --reg sa (appendix 6.2), else 1e-3")
    cutout: int = arg(16, "cutout side length (appendix 6.2: cutout on; DARTS's length 16; 0: off)")
    reg: str = arg("sa", "α regulariser: sa (Eq. 7), beta (β-DARTS logsumexp), none (DARTS / PC-DARTS)",
                   choices=("sa", "beta", "none"))
    nu: float = arg(1.0, "ν of Eq. 7: slope for negative α (1: Eq. 8, the mean of α)")
    mu: float = arg(0.0, "μ of Eq. 7: smoothness of the erf (1e6 ≈ ∞: leaky ReLU; ν=0, μ=1/√2: GELU)")
    lam_divisor: float = arg(5.0, "SA strength λ_e = e/divisor, e = 1..E (paper: 5; §6.5 also tries 2)")
    beta_slope: float = arg(0.5, "β-DARTS strength λ = slope·epoch, epoch 0-based (their code: 50·epoch/100)")
    backbone: str = arg("darts", "relaxation: darts (softmax) or snas (soft Gumbel-softmax samples)",
                        choices=("darts", "snas"))
    tau_max: float = arg(1.0, "SNAS: initial Gumbel-softmax temperature (SNAS code: 1)")
    tau_min: float = arg(0.03, "SNAS: final temperature, reached linearly at the last epoch (SNAS code: 0.03)")
    warmup: int = arg(0, "epochs of w-only training with α frozen (paper: none; Fig. 4 experiment: 15)")
    init_skip_bias: float = arg(0.0, "add this to α of skip_connect on every edge at the start (Fig. 4: 0.1)")

    def authors_recipe(self) -> dict[str, Any]:
        raise ConfigError("--recipe authors: SA-DARTS has no public code (the paper links none); use --recipe paper")

    def resolve(self) -> None:
        pc_darts = SPACES[self.space].skeleton == "darts" and self.partial_channels > 1
        fill_defaults(self, batch_size=256 if pc_darts else 64, w_lr=0.1 if pc_darts else 0.025,
                      a_lr=6e-4 if pc_darts else 3e-4, a_wd=0.0 if self.reg == "sa" else 1e-3)
        super().resolve()
        ge0 = (lambda v: v >= 0, ">= 0")
        check_ranges(self, {"lam_divisor": (lambda v: v > 0, "> 0"), "mu": ge0, "beta_slope": ge0,
                            "tau_min": (lambda v: 0 < v <= self.tau_max, f"in (0, --tau-max {self.tau_max}]"),
                            "warmup": (lambda v: 0 <= v < self.epochs, f"in [0, --epochs {self.epochs})")})


# ----------------------------------------------------------------------------- the method's pieces

def _tensors(alphas: Alphas) -> list[Tensor]:
    """The α tensors of a tensor, a dict (or nn.ParameterDict) of tensors, or an iterable of tensors."""
    if isinstance(alphas, Tensor):
        return [alphas]
    return list(alphas.values() if hasattr(alphas, "values") else alphas)


def _entries(alphas: Alphas) -> Tensor:
    """Every α entry of a tensor, or of a dict / iterable of tensors (both cells), flattened."""
    if isinstance(alphas, Tensor):
        return alphas.reshape(-1)
    return torch.cat([a.reshape(-1) for a in _tensors(alphas)])


def sa_loss(alphas: Alphas, lam: float, nu: float = 1.0, mu: float = 0.0) -> Tensor:
    """Smooth-activation regulariser L_SA (Eq. 7), a scalar; differentiable in α.

    Args:
        alphas: α as one (E, M) tensor or a dict/iterable of them; N_o·N_e = the total number of entries.
        lam: λ_e (see `sa_coefficient`).
        nu: ν, the slope for negative α (ν = 1: Eq. 8, λ·mean(α)).
        mu: μ, the erf's smoothness (μ → ∞: leaky ReLU max(α, να); ν = 0, μ = 1/√2: GELU α·Φ(α)).
    """
    a = _entries(alphas)  # (N_o·N_e,)
    # Eq. 7: λ_e/(N_o N_e) Σ ((1+ν)α + (1−ν)·α·erf(μ(1−ν)α)) / 2
    f = ((1 + nu) * a + (1 - nu) * a * torch.erf(mu * (1 - nu) * a)) / 2
    return lam * f.mean()


def sa_coefficient(epoch: int, divisor: float = 5.0) -> float:
    """λ_e = e/5 (Sec. 3), e the epoch counted from 1 as in Algorithm 1."""
    return epoch / divisor


def beta_loss(alphas: Alphas, lam: float) -> Tensor:
    """β-DARTS regulariser λ·mean over edges of logsumexp_o(α_o) (all edges of all cells)."""
    return lam * torch.cat([torch.logsumexp(a, dim=-1).reshape(-1) for a in _tensors(alphas)]).mean()


def add_skip_bias(alphas: Mapping[str, Tensor], edge_ops: Mapping[str, tuple[tuple[str, ...], ...]],
                  bias: float) -> None:
    """Fig. 4's unfair start: α[skip_connect] += bias on every edge that has skip_connect (in place)."""
    with torch.no_grad():
        for kind, a in alphas.items():
            for e, ops in enumerate(edge_ops[kind]):
                if "skip_connect" in ops:
                    a[..., e, ops.index("skip_connect")] += bias  # (E, M), or (S, E, M) with --seeds


def snas_weights(alphas: Mapping[str, Tensor], tau: float, generator: Generators = None) -> dict[str, Tensor]:
    """SNAS relaxation: one soft Gumbel-softmax sample softmax((α + g)/τ) per edge, (E, M) per cell kind
    (with --seeds α (S, E, M) and one generator per seed: each seed's sample, as its single run draws it)."""
    return {k: gumbel_softmax_soft(a, tau, generator) for k, a in alphas.items()}


# ----------------------------------------------------------------------------- measurements

def alpha_stats(alphas: Alphas) -> dict[str, float]:
    """Mean, median and standard deviation of all α entries (Fig. 3)."""
    a = _entries(alphas).detach().double()
    return {"alpha_mean": a.mean().item(), "alpha_median": torch.quantile(a, 0.5).item(),
            "alpha_std": a.std().item() if a.numel() > 1 else 0.0}


def top2_gap(weights: Tensor) -> Tensor:
    """β_top1 − β_top2 per edge of (E, M) op weights (Table 1's dispersion measure). → (E,)"""
    top = weights.detach().topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


def skip_vs_conv(weights: Tensor, edge_ops: tuple[tuple[str, ...], ...]) -> tuple[list, list]:
    """Per edge: β of skip_connect and the largest β among conv ops (None where an edge lacks one)."""
    skip, conv = [], []
    for w, ops in zip(weights.detach().tolist(), edge_ops):
        skip.append(w[ops.index("skip_connect")] if "skip_connect" in ops else None)
        convs = [w[o] for o, name in enumerate(ops) if "conv" in name]
        conv.append(max(convs) if convs else None)
    return skip, conv


# ----------------------------------------------------------------------------- the search loop

def regulariser(cfg: SAConfig, alphas: Alphas, epoch: int
                ) -> tuple[float, Callable[[], Tensor] | None]:
    """(λ of this 0-based epoch, the α regulariser closure or None for plain DARTS)."""
    if cfg.reg == "sa":
        lam = sa_coefficient(epoch + 1, cfg.lam_divisor)  # Alg. 1: e = 1..E
        return lam, lambda: sa_loss(alphas, lam, cfg.nu, cfg.mu)
    if cfg.reg == "beta":
        lam = cfg.beta_slope * epoch
        return lam, lambda: beta_loss(alphas, lam)
    return 0.0, None


@torch.no_grad()
def epoch_report(cfg: SAConfig, run: SeedRun, lam: float, reg: Callable[[], Tensor] | None,
                 tau: float, frozen: bool) -> tuple[dict[str, Tensor], dict]:
    """(op weights used this epoch, the schedule values and α statistics for metrics.jsonl)."""
    model, space = run.model, run.model.space
    betas = softmax_weights(model.alphas)  # Eq. 1
    used = betas
    report: dict = {"lam": lam, "reg_value": reg().item() if reg is not None else 0.0, "alpha_frozen": frozen}
    if cfg.backbone == "snas":
        mc = torch.Generator(device=run.device)
        mc.manual_seed(run.cfg.seed + run.epoch)  # fixed noise: the estimate does not touch the training streams
        used = {k: gumbel_softmax_soft(a.expand(256, *a.shape), tau, mc).mean(0) for k, a in model.alphas.items()}
        report["temperature"] = tau
    report.update(alpha_stats(model.alphas))
    gaps = {k: top2_gap(b) for k, b in betas.items()}
    every_gap = torch.cat(list(gaps.values()))
    report.update(top2_gap_min=every_gap.min().item(), top2_gap_mean=every_gap.mean().item(),
                  top2_gap={k: g.tolist() for k, g in gaps.items()})
    pairs = {k: skip_vs_conv(b, space.edge_ops[k]) for k, b in betas.items()}
    report["beta_skip"] = {k: s for k, (s, _) in pairs.items()}
    report["beta_conv"] = {k: c for k, (_, c) in pairs.items()}
    if model.edge_norm:
        report["gamma"] = {k: g.tolist() for k, g in model.edge_gammas().items()}
    return used, report


def search(cfg: SAConfig) -> dict:
    run = open_run(cfg, "sa_darts", state={})
    if run.start_epoch == 0 and cfg.init_skip_bias:
        add_skip_bias(run.alphas, run.model.space.edge_ops, cfg.init_skip_bias)  # Fig. 4's unfair start
    gumbel = run.generator("gumbel_rng")  # SNAS's noise: one stream per seed, checkpointed
    for epoch in run.epochs():
        lam, reg = regulariser(cfg, run.alphas, epoch)  # λ_e = e/5 and Eq. 7 (or β-DARTS, or none)
        tau = linear_tau(epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)
        fwd = run.forward(lambda: snas_weights(run.alphas, tau, gumbel) if cfg.backbone == "snas"
                          else softmax_weights(run.alphas))  # Eq. 1 (SNAS: soft Gumbel samples)
        frozen = epoch < cfg.warmup  # warm-up: w only, α (and γ) frozen
        alpha = run.valid_loss(fwd) if frozen else run.alpha_step(fwd, reg)  # Alg. 1 line 6
        for batch in run.batches():
            run.bilevel(batch, w=run.w_step(fwd), alpha=alpha)  # Alg. 1 lines 6-7 (w: line 7)
        run.end_epoch(lambda r: epoch_report(cfg, r, lam, regulariser(cfg, r.model.alphas, epoch)[1], tau, frozen))
    return run.finish()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["--task", "sr"]:  # ×2 super-resolution (§4.3, §6.7): the SR search with this file's L_SA
        from common.sr import search as sr_search
        return sr_search.main(argv[2:], regulariser)
    cfg = parse_config(SAConfig, argv, description=__doc__)
    main_guard(lambda: search(cfg))


if __name__ == "__main__":
    main()
