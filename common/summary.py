"""What one run is to the report: its record (`Run`), names, labels, and the summary it ends with.

Shared by the search runs (common/run.py prints `run_summary` at the end) and the report CLI
(common/report.py builds its tables from the same labels and paper numbers).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NB201_COLUMNS = ("cifar10_valid_valid", "cifar10_test", "cifar100_valid", "cifar100_test",
                 "imagenet16_valid", "imagenet16_test")
NB201_HEADERS = ("C10 valid", "C10 test", "C100 valid", "C100 test", "IN16 valid", "IN16 test")
#: The papers' NB201 numbers: CIFAR-10 search, CIFAR-10 test accuracy (%), keyed by method label.
PAPER = {"SA-DARTS": "94.36±0.00", "SAC-DARTS": "94.36±0.00", "SP-DARTS": "94.01±0.31",
         "EDD-DARTS": "93.80±0.33", "EDD-DARTS (clip)": "94.05±0.11", "PCD": "93.78±0.43",
         "ETS-GDAS": "93.75±0.22", "DARTS-V1-AER": "76.68±8.15", "DARTS-V2-AER": "70.92±0.00",
         "GDAS-AER": "93.46±0.21", "DARTS-V1": "54.30", "DARTS-V2": "54.30",
         "GDAS": "93.51±0.13 / 93.61±0.09", "beta-DARTS": "94.36±0.00",
         "LTS-DARTS": "— (EDD Fig. 2B only)", "LPCD-DARTS": "— (EDD Fig. 4A only)",
         # SA-DARTS Table 8: plain DARTS from α = 1e-3·c (+ 1e-3·N(0, 1)), NB201 C10 test at epoch 50
         "DARTS (α init -0.5e-3)": "54.30", "DARTS (α init -1e-3)": "54.30", "DARTS (α init -2e-3)": "70.92",
         "DARTS (α init -5e-3)": "70.92"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN",
                 "imagenet16-120": "ImageNet16-120", "synthetic": "synthetic data"}
SPACE_NAMES = {"nb201": "NB201", "darts": "DARTS space", "darts-nonone": "DARTS space without none",
               "s1": "S1", "s2": "S2", "s3": "S3", "s4": "S4", "nb201-3op": "NB201, 3 ops (SA Fig. 5)"}
SHORT_OPS = {"none": "none", "skip_connect": "skip", "max_pool_3x3": "max", "avg_pool_3x3": "avg",
             "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5",
             "nor_conv_1x1": "conv1", "nor_conv_3x3": "conv3"}


def method_label(args: dict[str, Any]) -> str:
    """The method's short name (a key of PAPER where one fits) from a run's args.json."""
    script = str(args.get("script", "run"))
    pc = (args.get("partial_channels") or 1) > 1
    if script == "edd_darts":
        if args.get("backbone") == "gdas":
            return "ETS-GDAS"
        if args.get("schedule") in ("pcd", "lts", "lpcd"):
            return {"pcd": "PCD", "lts": "LTS-DARTS", "lpcd": "LPCD-DARTS"}[args["schedule"]]
        name = "EDD-PC-DARTS" if pc else "EDD-DARTS"
        return name + (" (clip)" if args.get("clip_alpha") else "")
    if script == "aer_darts":
        base = {"darts-v1": "DARTS-V1", "darts-v2": "DARTS-V2", "gdas": "GDAS"}.get(
            str(args.get("backbone")), str(args.get("backbone")))
        base = "PC-" + base if pc else base
        plain = args.get("lam") == 0 or (args.get("lam") is None and args.get("lam_neg") == 0 == args.get("lam_pos"))
        return base if plain else f"{base}-AER"
    if script == "sp_darts":
        return "SP-DARTS"
    if script == "sa_darts":
        reg = args.get("reg")
        if reg == "beta":
            return "beta-DARTS"
        if reg == "none":
            return "PC-DARTS" if pc else "DARTS"
        return "SAC-DARTS" if pc else "SA-DARTS"
    if script == "darts":
        return "DARTS-V1"
    return script


def _num(x: Any) -> float:
    """A metric value as float (NaN for None/missing/"nan" strings)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def short_genotype(genotype: Any) -> str:
    """`N: sep3~0 sep3~1, ... / R: max~0 ...` for a DARTS genotype dict; NB201 strings unchanged."""
    if not isinstance(genotype, dict):
        return str(genotype)
    def cell(pairs: Sequence[Sequence[Any]]) -> str:
        ops = [f"{SHORT_OPS.get(op, op)}~{src}" for op, src in pairs]
        return ", ".join(" ".join(ops[i:i + 2]) for i in range(0, len(ops), 2))
    return f"N: {cell(genotype.get('normal', []))} / R: {cell(genotype.get('reduce', []))}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def run_summary(result: dict[str, Any], args: dict[str, Any], run_dir: str | Path, session_s: float) -> str:
    """The lines a finished search ends with: cell, NB201 numbers beside the paper's, time, where its files are."""
    label, dataset = method_label(args), str(args.get("dataset"))
    final = result.get("final") or {}
    lines = [f"search finished: {label} ({args.get('script')}), {SPACE_NAMES.get(str(args.get('space')), args.get('space'))} "
             f"on {DATASET_NAMES.get(dataset, dataset)}, seed {args.get('seed')}, {result.get('epochs')} epochs",
             f"  derived {'cell' if isinstance(result.get('genotype'), str) else 'genotype'}: "
             f"{short_genotype(result.get('genotype'))}"]
    if result.get("param_count"):
        lines.append(f"  parameters at evaluation size: {result['param_count'] / 1e6:.2f} M")
    nb201 = result.get("nb201")
    if nb201:
        paper = PAPER.get(label) if dataset == "cifar10" else None
        cells = []
        for column, head in zip(NB201_COLUMNS, NB201_HEADERS):
            v = _num(nb201.get(column))
            cells.append(f"{head} {v:.2f}" if math.isfinite(v) else f"{head} — (not in this table)")
            if column == "cifar10_test" and paper:
                cells[-1] += f" (paper, {label}: {paper})"
        lines += ["  NB201 200-epoch accuracy of this cell (%): " + "; ".join(cells[:2]),
                  "      " + "; ".join(cells[2:])]
    elif args.get("space") == "nb201":
        lines.append("  NB201 lookup off (--nb201 none): no accuracies")
    if final:
        lines.append(f"  last epoch: supernet train {_num(final.get('train_acc')):.1f}%, valid "
                     f"{_num(final.get('valid_acc')):.1f}%; discretized net {_num(final.get('discrete_valid_acc')):.1f}%; "
                     f"H {_num(final.get('op_entropy_mean')):.3f}")
    lines += [f"  time: {_duration(_num(result.get('wall_time_s')))} of search epochs (all sessions), "
              f"{_duration(session_s)} this session; device {result.get('device')}",
              f"  run directory: {run_dir} (result.json, metrics.jsonl, log.txt, checkpoint.pt, args.json)",
              "  C10/C100 = CIFAR-10/100, IN16 = ImageNet16-120 (NB201's valid/test splits); discretized net =",
              "  the derived cell, one-hot, with the supernet's weights, on the valid half; H = mean edge entropy",
              "  of the op weights the method used (nats; uniform over M ops = ln M)"]
    return "\n".join(lines)


@dataclass
class Run:
    """One run directory. `metrics`: the metrics.jsonl records; `result`: result.json or None."""

    path: Path
    label: str
    args: dict[str, Any]
    metrics: list[dict[str, Any]]
    result: dict[str, Any] | None
    finished: bool
    evaluation: dict[str, Any] | None = None  # RUN/eval/result.json of `python -m common.train`

    @property
    def dataset(self) -> str:
        return str(self.args.get("dataset", "?"))

    @property
    def space(self) -> str:
        return str(self.args.get("space", "?"))

    @property
    def epochs_done(self) -> int:
        return int(self.metrics[-1].get("epoch", len(self.metrics))) if self.metrics else 0

    @property
    def status(self) -> str:
        return "finished" if self.finished else f"unfinished ({self.epochs_done}/{self.args.get('epochs', '?')} epochs)"
