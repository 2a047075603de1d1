"""EDD-DARTS / PCD as the authors' published scripts run them: `--recipe authors` and their quirk flags.

The paper's method is edd_darts.py; this file subclasses its `EDDConfig` (common.config.with_authors swaps it
in on the command line) with the flags that reproduce the authors' code and overrides of the paper's hooks:
`decays_after`, `decay_lam` (their calendar: --warmup, --decay-every, --late-from, --lam-late; PCD's updown
list), `t0_exp` (--t0-exp-one), `pcd_point` (--pcd-shape updown), `schedule_entropy`
(--entropy sum, --entropy-cells normal), `step_forwards` (--sn-cells, --sn-unit-off, --w-double-softmax, and
their w step without the sn noise), `seeds_refusal` (--sn-unit-off under EDD's schedule).

    python edd_darts.py --space nb201 --recipe authors                  # their NB201 EDD script
    python edd_darts.py --space nb201 --recipe authors --schedule pcd   # their NB201 PCD script
    python edd_darts.py --space s3 --dataset svhn --recipe authors --lam 0.24   # their S1-S4 EDD script
    python edd_darts.py --space s3 --recipe authors --schedule pcd --pcd-d 0.11  # their S1-S4 PCD script

`--recipe authors`: every setting of the authors' published search script for the space and dataset
(github.com/chaoji90/PCDEDD; paths below are in that repository; explicit flags still win; args.json
records the recipe and the values used). NB201, EDD
(AutoDL-Projects_edd: scripts-search/algos/DARTS-V1-10.sh:40-43, configs/nas-benchmark/algos/DARTS.config,
exps/algos/DARTS-V1-10.py; their -100 files are the same schedule):
- batch 256, w lr 0.025 constant (DARTS.config: LR = eta_min = 0.025), w wd 5e-4, 50 epochs, α Adam 3e-4
  with weight decay 0 (.sh:43); clip 5 of `network.parameters()` (.py:48): `--clip-scope official`.
- `--softmax normal`: their sn-softmax hook is a no-op in the EDD scripts (.py:68-72 `pass`).
- warm-up 10 at t = 1 (.py:197), a decay every 5 epochs (.py:191, 204), every epoch from 40 (.py:211);
  λ 0.04, 0.08 for the decays that set epochs ≥ 40 (.py:208-212: `if epoch <= 39` runs at the *start* of
  an epoch): `--late-from 40` now means exactly that (it used to apply λ-late one decay later: epochs
  40–49 then trained up to 22 % hotter); ρ = 0.5 (.py:196).
- E[H] summed over the 6 edges of softmax(α/t) (.py:206-207): `--entropy sum`; E(a) = 3.99e-4 and
  t0^exp = 1 (.py:213: 0.000399/ln(1 + d·count)): `--e-a 3.99e-4 --t0-exp-one` (ours: exp(E(a)/t0), 1.9e-3
  relative on NB201). Their `--track_running_stats 1` only changes their eval at t = 1e-4, not the search.
NB201, PCD (AutoDL-Projects_pcd/exps/algos/DARTS-V1-10.py): the same optimiser settings; d = 0.11, period
10 (.py:190-196), `--pcd-shape updown`: by epoch % 10 the list 1, t1…t5, t4…t1, from epoch 40 t1…t10
(.py:203-205), t_n = 3.99e-4/ln(1 + 0.11n); warm-up 5 on CIFAR-10 (-10.py:198), 10 on CIFAR-100 and
ImageNet16-120 (-100.py:194: we read -10/-100 as the dataset, as SP's same-named scripts are); sn-softmax
with st ≡ 1 whenever t ≠ 1 (.py:70-72): `--softmax sn --st-const --sn-unit-off`. Their noise is a hook of
the α step alone (.py:59-74: the gradient g of softmax(α/t) fed once more through softmax(α)); their w step
(.py:45-50) runs plain softmax(α/t), and its ∇α enters their clip of network.parameters(): under `--recipe
authors` our w step's forward is softmax(α/t) too (with `--clip-scope w` it computes no ∇α). (So: their EDD NB201
scripts run without sn-softmax, their PCD ones with it.) Not reproduced (no flag): on CIFAR-100 their
search trains w on all 50k training images and α on the 5k `xvalid` half of the test set
(lib/datasets/get_dataset_with_transform.py:205-209); ours splits the training set 50/50.
DARTS space (PCDEDD-DARTS/train_search_pl.py = EDD, train_search_cyc.py = PCD): batch 80, w lr 0.025
constant, w wd 3e-4, α wd 0, 50 epochs (:27-49), SGD without Nesterov (:87-91: `--no-w-nesterov`); clip 5
of `model.parameters()`, which holds no α there (model_search_cyc.py:153-154 makes α plain Variables):
`--clip-scope w`; sn-softmax st ≡ 1 on the *normal* cell only, in the α step alone (their w step,
cyc.py:173-179, runs model(input, new_temp): softmax(α/t)), off at t = 1 (architect_cyc.py:56-59):
`--softmax sn --st-const --sn-cells normal --sn-unit-off`; EDD: warm-up 5, every 5 epochs, every epoch
from 40, λ 0.06 → 0.12 (pl.py:109-131), E[H] of the normal cell only, mean over its edges (pl.py:123): `--entropy-cells normal --entropy mean`; t0^exp = 1, E(a) 3.99e-4 (pl.py:130; 6.6e-3 relative);
PCD: warm-up 0, the NB201 lists (cyc.py:109-126). Their op list has no `none` (genotypes.py:5-13): run_all
uses `--space darts-nonone`. Their genotype(t) at the epoch's t (pl.py and cyc.py: `model.genotype(new_temp)`)
ranks edges by softmax(α/t) rounded to 3 decimals, the earlier of equal edges and the first of equal ops
(model_search_cyc.py:163-194): `--derive-decimals 3 --derive-ties earlier-input-first-op` (saturated edges
round to 1.000 and tie). Their α step precedes the w step (pl.py:176, then 178-184; cyc.py:171, 173) and
takes a fresh random batch of the valid half each step (pl.py:172 `next(iter(valid_queue))`, a
SubsetRandomSampler, :102): `--step-order alpha-first --valid-batch random`.
S1–S4 (SmoothDARTS/sota/pcdedd/train_search_pl.py = EDD, train_search_cyc.py = PCD, run as the README's
S1-S4 section; both import `sota.cnnspp.model_search_cyc` / `sota.cnnspp.spaces` (:23-25), a folder the
repository lacks: we read sota/pcdedd/model_search_cyc.py and spaces.py, whose op lists are RobustDARTS's,
as ours): batch 192, w lr 0.025 constant (:42-43, cosine with eta_min = lr, :162-163), SGD momentum 0.9
without Nesterov (:129-133), w wd 3e-4 (:45), 50 epochs, C 16, 8 cells (:48-50), α Adam 3e-4 (0.5, 0.999)
wd 0 (:60-61; SmoothDARTS/optimizers/darts/architect_cyc.py:18-20), clip 5 of `model.parameters()`,
which holds no α (model_search_cyc.py:150-151): `--clip-scope w`; 50/50 split of the training set of
cifar10, cifar100 or svhn (:135-160), as ours; sn-softmax st ≡ 1 on the normal cell while t ≠ 1
(architect_cyc.py:48-60): `--softmax sn --st-const --sn-unit-off --sn-cells normal`; E(a) 3.99e-4,
t0^exp = 1. EDD (pl.py:167-190): warm-up 5, a decay at the start of every 5th epoch, of every epoch from
40, λ = --decay_strength before epoch 40 and 2λ from it (:183-188: `--lam-late` = 2·--lam), ρ 0.5, E[H]
the mean over the normal cell's edges (:181-182). PCD (cyc.py:167-183): warm-up 0, the NB201 lists with
d = --decay_strength. λ and d are swept by the README (pl: 0.12, 0.24, 0.48, 0.96; cyc: 0.1, 0.11, 0.12,
0.13; we read the brackets as alternatives: no value per space or dataset is published), so `--recipe
authors` on S1–S4 requires `--lam` (EDD) or `--pcd-d` (PCD) and refuses otherwise (one line); run_all.sh
runs one row per value. Their w step runs on softmax(softmax(α)/t): `model.softmax_arch_parameters()`
(pl.py:255, cyc.py:248; model_search_cyc.py:163-166) overwrites α with softmax(α) before `model(input,
temp)` (pl.py:266; model_search_cyc.py:124-125): `--w-double-softmax` (their α step: softmax(α/t)).
Near α's init softmax(α) ≈ (1 + α − ᾱ)/M, so their w step trains at about M·t (S2, α = 1e-3·N(0, 1),
t = 4e-4: mean edge entropy 0.49 nats against 0.32 at t; 10,000 draws, this CPU).
Their genotype(t) at the epoch's t (pl.py:221) rounds softmax(α/t) to 3 decimals, keeps the earlier of
equal edges and the last of equal ops (model_search_cyc.py:194-211): `--derive-decimals 3 --derive-ties
earlier-input-last-op`. Their α step precedes the w step, on a fresh random valid batch each step
(pl.py:246-251, cyc.py:239-244): `--step-order alpha-first --valid-batch random`. Not reproduced: their
last, partial batch of an epoch (no drop_last, :152-160; ours drops it); their "valid" accuracy is the
supernet at t = 1e-4 (pl.py:216); their seed is random (:106). ETS-GDAS has no authors' recipe (refused
with a one-line reason).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import Tensor

import edd_darts
from common.config import ConfigError, arg, check_ranges
from common.data import NUM_CLASSES
from common.harness import Forward, Harness
from common.run import RunError
from common.search import softmax_weights
from common.spaces import SPACES
from edd_darts import edd_temperature, ets_forward, mean_entropy, op_weights

search = edd_darts.search  # the one search: with this config class, it runs the hooks below

#: The spaces of the authors' SmoothDARTS/sota/pcdedd scripts.
S_SWEPT = {"s1", "s2", "s3", "s4"}
#: The authors' DARTS-skeleton loop (darts, darts-nonone, S1-S4): α step first, each on a fresh random batch of
#: the valid half (PCDEDD-DARTS/train_search_pl.py:172-176, 179-184; module docstring).
AUTHORS_DARTS_LOOP = {"step_order": "alpha-first", "valid_batch": "random"}
#: Their `--decay_strength` per script (EDD: False, PCD: True), swept in chaoji90/PCDEDD README.md (S1-S4
#: section) with no value per space or dataset: (our flag, the values, their script).
S_DECAY_SWEEP = {False: ("lam", "0.12, 0.24, 0.48, 0.96", "train_search_pl.py"),
                 True: ("pcd_d", "0.1, 0.11, 0.12, 0.13", "train_search_cyc.py")}


@dataclass
class EDDConfig(edd_darts.EDDConfig):
    """EDDConfig with the authors' recipe, their quirk flags and hook overrides (module docstring)."""

    entropy: str = arg("mean", "E[H(β)] of Eq. 13 as mean over edges (paper) or sum (authors' NB201 code)",
                       choices=("mean", "sum"))
    decay_every: int = arg(1, "epochs between decay steps (paper 1, Alg. 2; authors' code 5)")
    late_from: int | None = arg(None, "epochs >= this get their temperature from a decay with --lam-late, one "
                                      "per epoch (authors: 40); PCD updown: t1…tP from this epoch")
    lam_late: float | None = arg(None, "λ from --late-from on (default --lam; authors' NB201 code 0.08)")
    t0_exp_one: bool = arg(False, "t0^exp = 1 in Eq. 15 and PCD's list, as the authors' code (paper: exp(E(a)/t0))")
    entropy_cells: str = arg("all", "cell kinds E[H] of Eq. 13 pools: all (paper) or normal (authors' DARTS code)",
                             choices=("all", "normal"))
    sn_cells: str = arg("all", "cell kinds whose sn-softmax gets the noise term: all, or normal (authors' "
                               "DARTS code; the others use softmax(α/t))", choices=("all", "normal"))
    sn_unit_off: bool = arg(False, "no sn noise term while t = 1 (authors' PCD scripts: `if not isclose(t, 1)`)")
    pcd_shape: str = arg("saw", "PCD calendar: saw (t0…t_{P-1} by decay step, restarting) or updown (authors: "
                                "by epoch %% P, t0, t1…t_{P/2}, …, t1; t1…tP from --late-from)",
                         choices=("saw", "updown"))
    w_double_softmax: bool = arg(False, "the w step's forward weighs the ops by softmax(softmax(α)/t), the α step "
                                        "by softmax(α/t) (authors' S1-S4 scripts: model.softmax_arch_parameters() "
                                        "before model(input, temp), SmoothDARTS/sota/pcdedd/train_search_pl.py:255-266, "
                                        "model_search_cyc.py:124-125, 163-166; off)")

    def authors_recipe(self) -> dict[str, Any]:
        """The authors' NB201 / DARTS-space / S1-S4 search scripts (module docstring, "--recipe authors")."""
        pcd = self.schedule == "pcd"
        if self.backbone == "gdas" or self.schedule in ("ets", "none"):
            raise ConfigError("--recipe authors: the authors published EDD and PCD scripts only (no ETS-GDAS/ETS)")
        skeleton = SPACES[self.space].skeleton
        common = dict(w_lr=0.025, w_lr_min=None, a_wd=0.0, clip_scope="official", e_a=3.99e-4, t0_exp_one=True)
        if self.space in S_SWEPT:  # chaoji90/PCDEDD SmoothDARTS/sota/pcdedd/train_search_{pl,cyc}.py
            return {**common, **s_space_recipe(self, pcd)}
        if skeleton == "nb201":  # AutoDL-Projects_{edd,pcd}: DARTS.config, DARTS-V1-10/-100.sh, -.py
            common.update(batch_size=256, w_wd=5e-4, epochs=50)
            if pcd:  # warm-up 5 in DARTS-V1-10.py (CIFAR-10), 10 in DARTS-V1-100.py (CIFAR-100)
                return {**common, "schedule": "pcd", "pcd_shape": "updown", "pcd_d": 0.11, "pcd_period": 10,
                        "late_from": 40, "warmup": 5 if NUM_CLASSES[self.dataset] <= 10 else 10,
                        "softmax": "sn", "st_const": True, "sn_unit_off": True}
            return {**common, "schedule": "edd", "softmax": "normal", "warmup": 10, "decay_every": 5,
                    "late_from": 40, "lam": 0.04, "lam_late": 0.08, "entropy": "sum"}
        common.update(batch_size=80, w_wd=3e-4, w_nesterov=False, epochs=50, clip_scope="w",  # PCDEDD-DARTS/
                      softmax="sn", st_const=True, sn_unit_off=True, sn_cells="normal", derive_decimals=3,
                      derive_ties="earlier-input-first-op", **AUTHORS_DARTS_LOOP)
        if pcd:
            return {**common, "schedule": "pcd", "pcd_shape": "updown", "pcd_d": 0.11, "pcd_period": 10,
                    "late_from": 40, "warmup": 0}
        return {**common, "schedule": "edd", "warmup": 5, "decay_every": 5, "late_from": 40, "lam": 0.06,
                "lam_late": 0.12, "entropy": "mean", "entropy_cells": "normal"}

    def resolve(self) -> None:
        if self.w_double_softmax and (self.backbone == "gdas" or self.clip_scope == "official"):
            raise ConfigError("--w-double-softmax applies to --backbone darts with --clip-scope w (the authors' "
                              "S1-S4 scripts clip model.parameters(), which holds no α)")
        super().resolve()
        self.lam_late = self.lam if self.lam_late is None else self.lam_late
        if self.schedule == "lpcd" and self.pcd_shape != "saw":
            raise ConfigError("--schedule lpcd cycles the paper's saw calendar; --pcd-shape updown is for pcd")
        if "normal" in (self.entropy_cells, self.sn_cells) and "normal" not in SPACES[self.space].cell_kinds:
            raise ConfigError(f"--entropy-cells/--sn-cells normal: space {self.space} has no normal cell")
        check_ranges(self, {"lam_late": (lambda v: v > 0, "> 0"), "decay_every": (lambda v: v >= 1, ">= 1"),
                            "late_from": (lambda v: v >= 0, ">= 0")})

    # ------------------------------------------------------------------------- hooks: the authors' code

    def updown(self) -> bool:
        """Their PCD calendar (`--pcd-shape updown`): a function of the epoch, a new t every epoch."""
        return self.schedule == "pcd" and self.pcd_shape == "updown"

    def decays_after(self, epoch: int) -> bool:
        """After the warm-up, every --decay-every epochs; every epoch from --late-from (and for updown PCD)."""
        done = epoch + 1
        if self.updown():
            return True
        if done < max(self.warmup, 1):
            return False
        if self.late_from is not None and done >= self.late_from:  # sets the t of epoch `done` >= --late-from
            return True
        return (done - self.warmup) % self.decay_every == 0

    def decay_lam(self, epoch: int) -> float:
        """--lam-late in the decays that set the t of epochs >= --late-from."""
        return self.lam_late if self.late_from is not None and epoch + 1 >= self.late_from else self.lam

    def t0_exp(self) -> float:
        return 1.0 if self.t0_exp_one else super().t0_exp()

    def pcd_point(self, k: int, epoch: int) -> float:
        if self.pcd_shape == "updown":  # the t of epoch + 1 on their calendar (epoch -1: the first epoch's)
            return pcd_updown_temperature(epoch + 1, self.e_a, self.t0, self.pcd_d, self.pcd_period, self.warmup,
                                          self.late_from, self.t0_exp())
        return super().pcd_point(k, epoch)

    def schedule_entropy(self, beta_t: dict[str, Tensor]) -> float:
        pooled = {"normal": beta_t["normal"]} if self.entropy_cells == "normal" else beta_t
        return mean_entropy(pooled, self.entropy)

    def step_forwards(self, run: Harness, t: float | Tensor, s: float | Tensor) -> tuple[Forward, Forward]:
        unit = {math.isclose(v, 1.0) for v in run.state("t")}  # authors' PCD: no noise at t = 1
        if self.sn_unit_off and len(unit) > 1:
            raise RunError("--sn-unit-off with --seeds: the replicas' temperatures are 1 for some and not for "
                           "others this epoch (one softmax kind per batched step); run one --seed per process")
        softmax = "normal" if self.sn_unit_off and unit == {True} else self.softmax
        sn_kinds = ["normal"] if self.sn_cells == "normal" else None
        # --recipe authors: their w step runs plain softmax(α/t), the noise is their α step's (module docstring)
        return step_forwards(run, t, s, softmax, sn_kinds, self.w_double_softmax, w_noise=self.recipe != "authors")

    def seeds_refusal(self, planning: bool = False) -> str | None:
        if why := super().seeds_refusal(planning):
            return why
        if planning and self.sn_unit_off and self.schedule == "edd":  # may refuse mid-run (step_forwards)
            return "--sn-unit-off with --schedule edd: the replicas' temperatures may disagree about t = 1"
        return None


def s_space_recipe(cfg: EDDConfig, pcd: bool) -> dict[str, Any]:
    """The authors' S1-S4 EDD (`pcd` False) or PCD script, SmoothDARTS/sota/pcdedd/train_search_{pl,cyc}.py
    (lines in the module docstring); their swept `--decay_strength` must be given (ConfigError)."""
    flag, values, script = S_DECAY_SWEEP[pcd]
    if flag not in getattr(cfg, "_explicit", ()):
        raise ConfigError(f"--recipe authors on {cfg.space}: give --{flag.replace('_', '-')} (their {script} "
                          f"--decay_strength; the README sweeps {values}, with no value per space or dataset)")
    if cfg.dataset not in ("cifar10", "cifar100", "svhn"):
        raise ConfigError(f"--recipe authors on {cfg.space}: their {script} searches cifar10, cifar100 or svhn "
                          f"(not {cfg.dataset})")
    out = dict(batch_size=192, w_lr_min=None, w_momentum=0.9, w_wd=3e-4, w_nesterov=False, a_lr=3e-4, a_beta1=0.5,
               epochs=50, C=16, N=8, grad_clip=5.0, clip_scope="w", softmax="sn", st_const=True, sn_unit_off=True,
               sn_cells="normal", w_double_softmax=True, derive_decimals=3, derive_ties="earlier-input-last-op",
               **AUTHORS_DARTS_LOOP)
    if pcd:
        return {**out, "schedule": "pcd", "pcd_shape": "updown", "pcd_period": 10, "late_from": 40, "warmup": 0}
    return {**out, "schedule": "edd", "warmup": 5, "decay_every": 5, "late_from": 40, "lam_late": 2 * cfg.lam,
            "rho": 0.5, "entropy": "mean", "entropy_cells": "normal"}


def pcd_updown_temperature(epoch: int, e_a: float, t0: float, d_exp: float, period: int = 10, warmup: int = 0,
                           late_from: int | None = None, t0_exp: float | None = None) -> float:
    """The authors' PCD calendar: t of `epoch` (0-based), t_n = E(a)/ln(t0^exp + n·d^exp) (Eq. 12 on L^exp).

    t0 during the warm-up; then by epoch % P the list t0, t1 … t_{P/2}, t_{P/2−1} … t1 (down and back up);
    from `late_from` on, t_{epoch % P + 1}: t1 … tP. `t0_exp` (default exp(E(a)/t0)); the authors' is 1.
    """
    if epoch < warmup:
        return t0
    i = epoch % period
    n = i + 1 if late_from is not None and epoch >= late_from else min(i, period - i)
    t0_exp = ets_forward(t0, e_a) if t0_exp is None else t0_exp
    return t0 if n == 0 else edd_temperature(e_a, t0_exp, n, d_exp)


def step_forwards(run: Harness, t: float | Tensor, s: float | Tensor, softmax: str, sn_kinds: list[str] | None,
                  double: bool = False, w_noise: bool = True) -> tuple[Forward, Forward]:
    """(α step's, w step's) forward at temperature t: op_weights of α (Alg. 1 / Eq. 3) on `sn_kinds`; with
    `double` (--w-double-softmax, the authors' S1-S4 scripts) the w step's weights are softmax(softmax(α)/t);
    `w_noise` False: the w step's are softmax(α/t) (their sn noise is a hook of the α step alone)."""
    forward = run.forward(lambda: op_weights(run.model.alphas, t, s, softmax, sn_kinds))
    if double:
        return forward, run.forward(lambda: op_weights(softmax_weights(run.model.alphas), t, s, "normal"))
    if softmax == "sn" and not w_noise:
        return forward, run.forward(lambda: op_weights(run.model.alphas, t, s, "normal"))
    return forward, forward
