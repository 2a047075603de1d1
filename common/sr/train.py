"""Retrain a derived SR genotype on DIV2K and report PSNR (Y, crop = scale) per test set beside the paper's row.

    python -m common.sr.train --genotype runs/sr/sa-imdn/result.json --paper-row sac-imdn --data-dir DATA
    python -m common.sr.train --genotype imdn --paper-row imdn --data-dir DATA      # IMDN as published

`--genotype` is a search's result.json, a genotype JSON ({"space": ..., "ops": [...], "inputs": [...]}), or
one of the genotypes the SA paper prints (`PAPER_GENOTYPES`). The SA paper retrains "following the same
searching and training procedure in [DLSR]" on DIV2K only; DLSR's retrain script
(github.com/DawnHH/DLSR-PyTorch scripts/train_beta_rfdn.sh, train/train_beta_para.py:24-31, 98-104): Adam
lr 3e-4 (betas 0.9, 0.999, wd 1e-8) halved at epochs 200/400/600/800, 1000 epochs of 1000 batches of 32
HR patches of 128, L1, pixels in [0, 255]. Those are the defaults; w trains on DIV2K 1-800.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common.config import ConfigError, arg, parse_config
from common.data import DataError
from common.run import main_guard, resolve_device, seed_everything, write_json
from common.sr.data import TEST_SETS, PatchSampler, benchmark_pairs, div2k_pairs, parse_range, to_tensor
from common.sr.metrics import psnr_y
from common.sr.search import checkpoint_state, open_run, restore, table_complexity
from common.sr.spaces import DLSR_NET_LEVEL, IMDN_ORIGINAL, SRGenotype, build

TRAIN_KEYS = ("version", "config", "epoch", "model", "optimizer", "scheduler", "rng", "records")

#: Genotypes the SA paper prints (§4.4.1, §6.7.2). The β-DARTS IMDN genotype ("conv5x5 for all blocks,
#: all 4 blocks have batch norm except for the second") gives Table 3's 1773.67 K exactly; the FLOPs-constrained
#: SAC genotype gives 198.02 K against the table's 200.04 K (how the paper builds a separable conv is not said).
PAPER_GENOTYPES = {
    "imdn": SRGenotype("imdn", IMDN_ORIGINAL),
    "imdn-beta": SRGenotype("imdn", ("conv_5x5_bn", "conv_5x5", "conv_5x5_bn", "conv_5x5_bn")),
    "imdn-beta-flops": SRGenotype("imdn", ("sep_conv_3x3", "conv_3x3", "sep_conv_3x3_bn", "sep_conv_5x5")),
    "sac-imdn-flops": SRGenotype("imdn", ("dil_sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3", "dil_sep_conv_3x3")),
    # DLSR's own genotype (DLSR models/genotypes_rfdn.py:4) and the two the parameter counts identify
    # (common.sr.spaces docstring), on DLSR's published network level
    "dlsr": SRGenotype("dlsr", ("sep_conv_5x5", "conv_1x1", "sep_conv_7x7"), DLSR_NET_LEVEL),
    "dlsr-beta": SRGenotype("dlsr", ("conv_7x7",) * 3, DLSR_NET_LEVEL),
    "sac-dlsr": SRGenotype("dlsr", ("sep_conv_3x3",) * 3, DLSR_NET_LEVEL),
}

#: Tables 3 and 7 (×2): PSNR on Set5, Set14, B100, Urban100 and parameters (K).
PAPER_ROWS: dict[str, dict[str, float]] = {
    "dlsr": {"Set5": 37.91, "Set14": 33.56, "B100": 32.17, "Urban100": 32.10, "params_k": 322.62},
    "imdn": {"Set5": 38.00, "Set14": 33.63, "B100": 32.19, "Urban100": 32.17, "params_k": 715.18},
    "dlsr-beta": {"Set5": 37.88, "Set14": 33.46, "B100": 32.09, "Urban100": 31.71, "params_k": 2243.00},
    "sa-dlsr": {"Set5": 37.97, "Set14": 33.53, "B100": 32.16, "Urban100": 32.02, "params_k": 264.73},
    "sac-dlsr": {"Set5": 37.98, "Set14": 33.58, "B100": 32.17, "Urban100": 32.16, "params_k": 309.37},
    "imdn-beta": {"Set5": 38.01, "Set14": 33.47, "B100": 32.11, "Urban100": 32.12, "params_k": 1773.67},
    "sac-imdn": {"Set5": 37.98, "Set14": 33.65, "B100": 32.20, "Urban100": 32.21, "params_k": 349.22},
    "imdn-beta-flops": {"Set5": 37.91, "Set14": 33.27, "B100": 32.05, "Urban100": 31.87, "params_k": 349.22},
    "sac-imdn-flops": {"Set5": 37.92, "Set14": 33.32, "B100": 32.08, "Urban100": 31.93, "params_k": 200.04},
}


@dataclass
class RetrainConfig:
    """Retrain an SR genotype (DLSR's retrain settings)."""

    genotype: str = arg("imdn", f"result.json / genotype JSON file, or one of {', '.join(PAPER_GENOTYPES)}")
    paper_row: str | None = arg(None, f"the Table 3/7 row to print beside the results: {', '.join(PAPER_ROWS)}")
    data_dir: str = arg("data", "folder holding DIV2K/ and benchmark/ (see common.sr.data)")
    train_images: str = arg("1-800", "DIV2K images to train on")
    test_sets: list[str] = arg(list(TEST_SETS), "test sets to report (from DATA/benchmark)")
    scale: int = arg(2, "upscaling factor")
    patch: int = arg(128, "HR patch side (DLSR's retrain script: 128)")
    batch_size: int = arg(32, "patches per batch (DLSR: 32)")
    epochs: int = arg(1000, "epochs (DLSR: 1000)")
    steps: int = arg(1000, "batches per epoch (EDSR's --test_every)")
    lr: float = arg(3e-4, "Adam lr (DLSR: 3e-4)")
    wd: float = arg(1e-8, "Adam weight decay (DLSR: 1e-8)")
    milestones: list[int] = arg([200, 400, 600, 800], "epochs at which the lr halves (DLSR)")
    rgb_range: float = arg(255.0, "pixel range the network sees (DLSR: 255)")
    seed: int = arg(0, "random seed")
    device: str = arg("auto", "auto (cuda if available), cpu, cuda, cuda:N")
    out: str = arg("runs/sr-train", "run directory")
    resume: bool = arg(False, "continue the run in --out from its checkpoint")
    recipe: str = arg("paper", "hyperparameters: paper (DLSR's retrain script)", choices=("paper",))

    def resolve(self) -> None:
        for name in ("scale", "patch", "batch_size", "epochs", "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.patch % self.scale:
            raise ConfigError(f"--patch {self.patch} must be a multiple of --scale {self.scale}")
        if self.paper_row is not None and self.paper_row not in PAPER_ROWS:
            raise ConfigError(f"--paper-row {self.paper_row!r}: choose from {', '.join(PAPER_ROWS)}")
        bad = [s for s in self.test_sets if s not in TEST_SETS]
        if bad:
            raise ConfigError(f"--test-sets {bad}: choose from {', '.join(TEST_SETS)}")

    def authors_recipe(self) -> dict[str, Any]:
        raise ConfigError("--recipe authors: use --recipe paper (DLSR's retrain settings)")


def load_genotype(text: str) -> SRGenotype:
    """A named paper genotype, or the genotype in a result.json / genotype JSON file."""
    if text in PAPER_GENOTYPES:
        return PAPER_GENOTYPES[text]
    path = Path(text)
    if not path.is_file():
        raise DataError(f"--genotype {text!r} is neither a file nor one of {', '.join(PAPER_GENOTYPES)}")
    try:
        d = json.loads(path.read_text())
        return SRGenotype.from_dict(d.get("genotype", d))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DataError(f"--genotype {path}: not a genotype or result.json ({err})") from None


@torch.no_grad()
def evaluate(model: nn.Module, pairs: list, scale: int, rgb_range: float, device: torch.device) -> float:
    """Mean PSNR (Y, crop = scale) over a test set's full images."""
    model.eval()
    values = []
    for _, hr, lr in pairs:
        sr = model(to_tensor(lr)[None].to(device) * rgb_range) / rgb_range
        values.append(psnr_y(sr.cpu(), to_tensor(hr)[None], crop=scale).item())
    model.train()
    return float(np.mean(values))


def report_lines(psnr: dict[str, float], params_k: float, row: str | None) -> list[str]:
    """A small table: ours, and the paper's row beside it."""
    sets = list(psnr)
    lines = ["          " + " ".join(f"{s:>9}" for s in sets) + "  params(K)",
             "ours      " + " ".join(f"{psnr[s]:9.2f}" for s in sets) + f"  {params_k:9.2f}"]
    if row is not None:
        paper = PAPER_ROWS[row]
        lines.append(f"{row[:9]:<10}" + " ".join(f"{paper[s]:9.2f}" for s in sets) + f"  {paper['params_k']:9.2f}")
    return lines


def train(cfg: RetrainConfig) -> dict[str, Any]:
    genotype = load_genotype(cfg.genotype)
    try:
        model_cpu = build(genotype, cfg.scale)
    except ValueError as err:
        raise DataError(f"--genotype: {err}") from None
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    data = PatchSampler(div2k_pairs(cfg.data_dir, cfg.scale, parse_range(cfg.train_images)), cfg.scale,
                        cfg.patch, cfg.batch_size, rng)
    tests = {name: benchmark_pairs(cfg.data_dir, name, cfg.scale) for name in cfg.test_sets}
    rundir, state = open_run(cfg, TRAIN_KEYS)
    model = model_cpu.to(device)
    opt = torch.optim.Adam(model.parameters(), cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.wd)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestones, 0.5)
    parts = {"model": model, "optimizer": opt, "scheduler": sched}
    records, start, t0 = restore(state, rng, parts)
    for epoch in range(start, cfg.epochs):
        total = 0.0
        for _ in range(cfg.steps):
            x, y = (t.to(device) * cfg.rgb_range for t in data.batch())
            opt.zero_grad(set_to_none=True)
            loss = F.l1_loss(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
        sched.step()
        records.append({"epoch": epoch + 1, "train_l1": total / cfg.steps, "lr": opt.param_groups[0]["lr"],
                        "wall_time": time.time() - t0})
        rundir.write_metrics(records)
        rundir.save_checkpoint(checkpoint_state(cfg, epoch + 1, rng, parts, records))
        rundir.log(f"epoch {epoch + 1}/{cfg.epochs} train_l1 {records[-1]['train_l1']:.4f}")
    psnr = {name: evaluate(model, pairs, cfg.scale, cfg.rgb_range, device) for name, pairs in tests.items()}
    counts = table_complexity(genotype)
    for line in report_lines(psnr, counts["params_k"], cfg.paper_row):
        rundir.log(line)
    result = {"genotype": json.loads(genotype.to_json()), "psnr": psnr, **counts,
              "paper_row": cfg.paper_row, "paper": PAPER_ROWS.get(cfg.paper_row or ""), "epochs": cfg.epochs}
    write_json(rundir.path / "result.json", result)
    rundir.release()
    return result


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(RetrainConfig, argv, description=__doc__)
    main_guard(lambda: train(cfg))


if __name__ == "__main__":
    main()
