"""SR bilevel architecture search (SA paper §4.3, §6.7): L1, Adam for w and α, a pluggable α regulariser, Eq. 18.

    python sa_darts.py --task sr --space imdn --reg sa                 # SA-IMDN (SA paper §4.4.1)
    python sa_darts.py --task sr --space dlsr --reg none               # DLSR as reproduced by the SA authors
    python sa_darts.py --task sr --space imdn --reg sa --flops-weight 1   # with L_FLOPs (Eq. 18)

The regulariser comes from the method file (common never imports a method file): `main(argv,
sa_darts.regulariser)`. Without it only `--reg none` runs.

One step (Algorithm 1, first order; the paper's order: α, then w):
    α ← Adam_α(∇α [L1(f(x_a; w, α), y_a) + L_reg(α) + ρ·L_FLOPs(β)])     # line 6, on the α images
    w ← Adam_w(∇w L1(f(x_t; w, α), y_t))                                 # line 7, on the w images
with β = softmax(α) per position (Eq. 1), L_reg the SA term λ_e·Eq. 7 (λ_e = e/5, e = 1..E) or β-DARTS's
λ·mean logsumexp(α) (λ = 0.5·epoch, 0-based) over the op α only (the SA paper regularises operation weights,
not edge / network-level weights), and Eq. 18 L_FLOPs = Σ_i β_i c_i / Σ c over every (position, candidate),
c the candidate's multiply-adds (`spaces.op_costs`; ρ = --flops-weight, 0 = off).

Settings: appendix 6.2 gives Adam for w (lr 5e-4, wd 1e-8) and α (lr 3e-4, wd 1e-8) "following DLSR". Where the
paper is silent we follow DLSR's published search (github.com/DawnHH/DLSR-PyTorch search/RFDN6_para_loss.py,
scripts/RFDN_beta_NAS.sh): batch 64, HR patch 64, 1000 epochs of 1000 batches (EDSR's --test_every), w lr
halved at epochs 200/400/600 (line 98), Adam betas (0.9, 0.999) for w and (0.5, 0.999) for α (lines 95-103),
pixels in [0, 255] (--rgb_range 255), α = 1e-3·N(0, 1), w trained on DIV2K 1-600 and α on 601-800 (line 46's
default range; the SA paper searches on DIV2K only), α frozen for the first 21 epochs (line 162: `epoch > 20`)
for --reg none / beta; SA uses no warm-up (appendix 6.2: SA "can converge to better solutions without
warmup"). DLSR's α loss also adds the train-batch loss and a parameter term computed from detached α
(lines 168-179: no gradient reaches α from it); neither is used here.
SAC (SA + partial channels, `--partial-channels 4`, PC-DARTS's K): see `spaces.Choice` for the rule at
IMDN's positions whose input and output widths differ. There are no edges to normalise (the positions form
a chain; SA paper App. 6.11 makes the same point for NB201), so PC-DARTS's edge weights are not used.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from common.config import ConfigError, arg, config_dict, parse_config
from common.run import (
    CHECKPOINT_VERSION,
    RESUMABLE_CHANGES,
    RunDir,
    RunError,
    RunFinished,
    main_guard,
    resolve_device,
    seed_everything,
    write_json,
)
from common.safeio import json_safe
from common.sr.data import PatchSampler, div2k_pairs, parse_range
from common.sr.spaces import SRGenotype, SRSupernet, build, complexity, op_costs

SEARCH_KEYS = ("version", "config", "epoch", "model", "w_optimizer", "a_optimizer", "scheduler", "rng", "records")


#: The method file's α regulariser: (config, α, 0-based epoch) → (λ, closure of the loss or None);
#: sa_darts.regulariser (SA, β-DARTS), read from the config's `reg`, `lam_divisor`, `nu`, `mu`, `beta_slope`.
Regulariser = Callable[[Any, Tensor, int], tuple[float, Callable[[], Tensor] | None]]


@dataclass
class SRSearchConfig:
    """SR search (appendix 6.2 and DLSR's search script where the paper is silent)."""

    space: str = arg("imdn", "search space: imdn (IMD blocks, 12 candidates) or dlsr (DLSR cell, 9 candidates, "
                             "dense network level)", choices=("imdn", "dlsr"))
    reg: str = arg("sa", "α regulariser: sa (Eq. 7), beta (β-DARTS), none (DARTS, as DLSR)",
                   choices=("sa", "beta", "none"))
    nu: float = arg(1.0, "ν of Eq. 7 (1: Eq. 8, the mean of α)")
    mu: float = arg(0.0, "μ of Eq. 7")
    lam_divisor: float = arg(5.0, "SA strength λ_e = e/divisor, e = 1..E")
    beta_slope: float = arg(0.5, "β-DARTS strength λ = slope·epoch (0-based)")
    partial_channels: int = arg(1, "K of PC-DARTS: 1/K of a mixed op's channels searched (SAC: 4; 1: off)")
    flops_weight: float = arg(0.0, "ρ, weight of L_FLOPs (Eq. 18) in the α loss; 0: off, 1: Eq. 18 as written")
    data_dir: str = arg("data", "folder holding DIV2K/ (see common.sr.data)")
    train_images: str = arg("1-600", "DIV2K images that train w (DLSR's --data_range default)")
    arch_images: str = arg("601-800", "DIV2K images that train α")
    scale: int = arg(2, "upscaling factor")
    patch: int = arg(64, "HR patch side (DLSR's search script: 64)")
    batch_size: int = arg(64, "patches per batch (DLSR: 64)")
    epochs: int = arg(1000, "epochs (DLSR: 1000)")
    steps: int = arg(1000, "batches per epoch (EDSR's --test_every: 1000)")
    w_lr: float = arg(5e-4, "Adam lr of w (appendix 6.2)")
    w_wd: float = arg(1e-8, "Adam weight decay of w (appendix 6.2)")
    a_lr: float = arg(3e-4, "Adam lr of α (appendix 6.2)")
    a_wd: float = arg(1e-8, "Adam weight decay of α (appendix 6.2)")
    milestones: list[int] = arg([200, 400, 600], "epochs at which the w lr halves (DLSR)")
    warmup: int | None = arg(None, "epochs with α frozen; default 0 with --reg sa, else 21 (DLSR's code)")
    rgb_range: float = arg(255.0, "pixel range the network sees (DLSR: 255)")
    seed: int = arg(0, "random seed")
    device: str = arg("auto", "auto (cuda if available), cpu, cuda, cuda:N")
    out: str = arg("runs/sr-search", "run directory")
    resume: bool = arg(False, "continue the run in --out from its checkpoint")
    recipe: str = arg("paper", "hyperparameters: paper (appendix 6.2, DLSR's code where it is silent)",
                      choices=("paper",))

    def resolve(self) -> None:
        if self.warmup is None:
            self.warmup = 0 if self.reg == "sa" else 21
        for name in ("scale", "patch", "batch_size", "epochs", "steps", "partial_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if min(self.w_lr, self.a_lr, self.rgb_range) <= 0 or min(self.w_wd, self.a_wd, self.flops_weight) < 0:
            raise ConfigError("learning rates and --rgb-range must be > 0; weight decays and --flops-weight >= 0")
        if self.patch % self.scale:
            raise ConfigError(f"--patch {self.patch} must be a multiple of --scale {self.scale}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0 (got {self.warmup})")

    def authors_recipe(self) -> dict[str, Any]:
        raise ConfigError("--recipe authors: use --recipe paper (it already follows DLSR's code where the "
                          "paper is silent)")


# ----------------------------------------------------------------------------- pure pieces

def flops_loss(op_weights: Tensor, costs: Tensor) -> Tensor:
    """Eq. 18: L_FLOPs = Σ_i β_i c_i / Σ c over every (position, candidate); op_weights, costs (P, M)."""
    return (op_weights * costs).sum() / costs.sum()


def regulariser(cfg: SRSearchConfig, method: Regulariser | None, alpha: Tensor, epoch: int
                ) -> tuple[float, Callable[[], Tensor] | None]:
    """(λ of this 0-based epoch, the α regulariser closure, None for --reg none) from the method's regulariser."""
    if cfg.reg == "none":
        return 0.0, None
    if method is None:
        raise RunError(f"--reg {cfg.reg} needs the method's regulariser: run it as "
                       f"`python sa_darts.py --task sr ...`")
    return method(cfg, alpha, epoch)  # SA: λ_e·Eq. 7, λ_e = e/5 (e = 1..E); β-DARTS: λ = slope·epoch


def alpha_report(model: SRSupernet) -> dict[str, Any]:
    """Op weights β per position, their top-1 − top-2 gap, α statistics, the network-level β (DLSR)."""
    w = model.arch_weights()
    beta = w["cell"].detach()
    top = beta.topk(2, dim=-1).values
    a = model.alpha.detach().double()
    return {"beta": beta.tolist(), "top2_gap": (top[:, 0] - top[:, 1]).tolist(),
            "alpha_mean": a.mean().item(), "alpha_std": a.std().item(),
            "net_beta": [b.detach().tolist() for b in w["net"]]}


def table_complexity(genotype: SRGenotype) -> dict[str, float]:
    """Parameters (K) and multiply-adds (G) as Tables 3 and 7 count them: a 1280×720 input, IMDN built with
    its code's default ×4 upsampler (IMDN architecture.py:43; this gives the table's IMDN row), DLSR with its
    code's ×2 upsampler, which it builds for every scale (rfdn_block_6_beta_search.py:229)."""
    params, macs = complexity(build(genotype, scale=4 if genotype.space == "imdn" else 2))
    return {"params_k": params / 1e3, "macs_g": macs / 1e9}


# ----------------------------------------------------------------------------- the run

def open_run(cfg: Any, keys: tuple[str, ...]) -> tuple[RunDir, dict[str, Any] | None]:
    """The run directory and its checkpoint (None: a fresh start, args.json written)."""
    rundir = RunDir(cfg.out)
    state = rundir.load_checkpoint(keys) if cfg.resume else None
    if state is None:
        rundir.refuse_earlier_run(cfg)
        write_json(rundir.path / "args.json", config_dict(cfg))
        return rundir, state
    changed = sorted(k for k, v in json.loads(json.dumps(json_safe(config_dict(cfg)))).items()
                     if k not in RESUMABLE_CHANGES | {"epochs"} and state["config"].get(k) != v)
    if changed:
        rundir.release()
        raise RunError(f"--resume: {', '.join('--' + k.replace('_', '-') for k in changed)} differ from the run in "
                       f"{rundir.path}; resume with its settings or choose another --out")
    if state["epoch"] >= cfg.epochs:
        rundir.release()
        raise RunFinished(f"{rundir.path} already finished its {cfg.epochs} epochs; nothing to do")
    return rundir, state


def restore(state: dict[str, Any] | None, rng: np.random.Generator,
            parts: Mapping[str, Any]) -> tuple[list[dict[str, Any]], int, float]:
    """(records, the first epoch to run, the wall clock's t0): ([], 0, now) for a fresh start (`state` None);
    else the checkpoint `state`'s records and epoch, and now less its wall time, after its entries are loaded
    into `parts` (checkpoint key → model, optimiser or scheduler) and the numpy (`rng`) and torch RNGs are
    restored."""
    records: list[dict[str, Any]] = []
    start, t0 = 0, time.time()
    if state is not None:
        for key, part in parts.items():
            part.load_state_dict(state[key])
        rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        records, start = state["records"], state["epoch"]
        t0 -= records[-1]["wall_time"] if records else 0.0
    return records, start, t0


def checkpoint_state(cfg: Any, epoch: int, rng: np.random.Generator, parts: Mapping[str, Any],
                     records: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint after `epoch` epochs, as `restore` reads it: `parts`' state dicts under their keys, the
    numpy (`rng`) and torch RNG states, the records."""
    return {"version": CHECKPOINT_VERSION, "config": config_dict(cfg), "epoch": epoch,
            **{key: part.state_dict() for key, part in parts.items()},
            "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}, "records": records}


def search(cfg: SRSearchConfig, regs: Regulariser | None = None) -> dict[str, Any]:
    """The SR search; returns result.json's content."""
    if cfg.reg != "none" and regs is None:
        regulariser(cfg, regs, torch.zeros(1), 0)  # the one-line error
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    w_data = PatchSampler(div2k_pairs(cfg.data_dir, cfg.scale, parse_range(cfg.train_images)), cfg.scale,
                          cfg.patch, cfg.batch_size, rng)
    a_data = PatchSampler(div2k_pairs(cfg.data_dir, cfg.scale, parse_range(cfg.arch_images)), cfg.scale,
                          cfg.patch, cfg.batch_size, rng)
    rundir, state = open_run(cfg, SEARCH_KEYS)  # after the data: a missing folder leaves no run directory
    try:
        model = SRSupernet(cfg.space, cfg.scale, partial_channels=cfg.partial_channels).to(device)
    except ValueError as err:
        raise RunError(str(err)) from None
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    w_opt = torch.optim.Adam(w_params, cfg.w_lr, betas=(0.9, 0.999), weight_decay=cfg.w_wd)
    a_opt = torch.optim.Adam(a_params, cfg.a_lr, betas=(0.5, 0.999), weight_decay=cfg.a_wd)
    sched = torch.optim.lr_scheduler.MultiStepLR(w_opt, cfg.milestones, 0.5)
    costs = op_costs(cfg.space).to(device=device, dtype=torch.float32)  # c of Eq. 18, (P, M)
    parts = {"model": model, "w_optimizer": w_opt, "a_optimizer": a_opt, "scheduler": sched}
    records, start, t0 = restore(state, rng, parts)
    scale = cfg.rgb_range  # the network sees pixels in [0, rgb_range]

    def step_grads(loss: Tensor, params: list) -> None:
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            p.grad = g

    for epoch in range(start, cfg.epochs):
        lam, reg = regulariser(cfg, regs, model.alpha, epoch)
        frozen = epoch < cfg.warmup
        sums = {"train_l1": 0.0, "arch_l1": 0.0, "reg_value": 0.0, "flops_loss": 0.0}
        model.train()
        for _ in range(cfg.steps):
            x_t, y_t = (t.to(device) * scale for t in w_data.batch())
            x_a, y_a = (t.to(device) * scale for t in a_data.batch())
            if not frozen:  # Alg. 1 line 6: α on the α images
                a_opt.zero_grad(set_to_none=True)
                l1_a = F.l1_loss(model(x_a), y_a)
                r = reg() if reg is not None else torch.zeros((), device=device)
                lf = flops_loss(model.arch_weights()["cell"], costs)  # Eq. 18
                step_grads(l1_a + r + cfg.flops_weight * lf, a_params)
                a_opt.step()
                sums["arch_l1"] += l1_a.item()
                sums["reg_value"] += r.item()
                sums["flops_loss"] += lf.item()
            w_opt.zero_grad(set_to_none=True)  # Alg. 1 line 7: w on the w images
            l1_t = F.l1_loss(model(x_t), y_t)
            step_grads(l1_t, w_params)
            w_opt.step()
            sums["train_l1"] += l1_t.item()
        sched.step()
        geno = model.genotype()
        record = {"epoch": epoch + 1, **{k: v / cfg.steps for k, v in sums.items()}, "lam": lam,
                  "alpha_frozen": frozen, "w_lr": w_opt.param_groups[0]["lr"], "genotype": json.loads(geno.to_json()),
                  **table_complexity(geno), **alpha_report(model), "wall_time": time.time() - t0}
        records.append(record)
        rundir.write_metrics(records)
        rundir.save_checkpoint(checkpoint_state(cfg, epoch + 1, rng, parts, records))
        rundir.log(f"epoch {epoch + 1}/{cfg.epochs} train_l1 {record['train_l1']:.4f} arch_l1 "
                   f"{record['arch_l1']:.4f} genotype {list(geno.ops)} {record['params_k']:.2f} K")
    geno = model.genotype()
    result = {"genotype": json.loads(geno.to_json()), **table_complexity(geno), "epochs": cfg.epochs,
              "final": records[-1] if records else None}
    write_json(rundir.path / "result.json", result)
    rundir.release()
    return result


def main(argv: list[str] | None = None, regularisers: Regulariser | None = None) -> None:
    cfg = parse_config(SRSearchConfig, argv, description=__doc__)
    main_guard(lambda: search(cfg, regularisers))


if __name__ == "__main__":
    main()
