"""The command lines of `python -m common.train` and `common.fidelity`, torch-free: --help answers at once.

Each entry point calls `answer_help_early(name)` before importing torch; its parser is built here either way,
so the early answer and the real parser are one parser.
"""
from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import DEVICE_FORM, RANGES, THREADS_HELP, ConfigError, _in, arg, build_parser, check_ranges
from common.threads import THREADS_FORM

#: The named genotypes `python -m common.train` takes (common.evalnet.NAMED_GENOTYPES; a test keeps them equal).
NAMED_GENOTYPE_NAMES = ("DARTS_V1", "DARTS_V2", "DARTS", "PC_DARTS")

EVAL_DATASETS = ("cifar10", "cifar100", "svhn")
_PROTOCOL = dict(epochs=600, batch_size=96, C=36, layers=20, lr=0.025, lr_min=0.0, momentum=0.9, wd=3e-4,
                 cutout=16, drop_path=0.3, aux_weight=0.4, grad_clip=5.0)
#: Preset values (a flag given on the command line wins); "robustdarts" sizes depend on the dataset.
PRESETS: dict[str, dict[str, Any]] = {
    "darts": _PROTOCOL,
    "robustdarts": {**_PROTOCOL, "drop_path": 0.2},
    "smoke": {**_PROTOCOL, "epochs": 1, "batch_size": 32, "C": 8, "layers": 5, "limit_train": 192,
              "limit_test": 128},
}
ROBUSTDARTS_SIZE = {"cifar10": (20, 36), "cifar100": (8, 16), "svhn": (8, 16)}  # (layers, C)
_AT_LEAST_1 = RANGES["epochs"]
#: The range of every numeric flag (floats must also be finite; None is not checked).
TRAIN_RANGES = {**{k: _AT_LEAST_1 for k in ("epochs", "batch_size", "C", "layers", "limit_train", "limit_test",
                                             "log_every")},
                "seed": RANGES["seed"], "lr": RANGES["w_lr"], "lr_min": RANGES["w_lr_min"],
                "momentum": RANGES["w_momentum"], "wd": RANGES["w_wd"], "cutout": RANGES["cutout"],
                "drop_path": _in(0, 1), "aux_weight": RANGES["w_wd"], "grad_clip": RANGES["grad_clip"],
                "debug_nan_step": RANGES["debug_nan_step"]}

@dataclass
class TrainConfig:
    """Flags of `python -m common.train`; None = the preset's value (args.json records the value used)."""

    preset: str = arg("darts", "protocol: darts (DARTS space), robustdarts (S1-S4), smoke (tiny CPU check)",
                      choices=tuple(PRESETS))
    dataset: str | None = arg(None, "cifar10, cifar100 or svhn (default: the search's dataset, else cifar10)")
    data_dir: str = arg("./data", "folder holding cifar-10-batches-py/, cifar-100-python/ or the SVHN files")
    epochs: int | None = arg(None, "training epochs (default: the preset's; darts/robustdarts: 600)")
    batch_size: int | None = arg(None, "batch size (default: the preset's, 96)")
    C: int | None = arg(None, "initial channels (default: the preset's; darts: 36; robustdarts: 36 on CIFAR-10, else 16)")
    layers: int | None = arg(None, "cells (default: the preset's; darts: 20; robustdarts: 20 on CIFAR-10, else 8)")
    lr: float | None = arg(None, "SGD learning rate (default: the preset's, 0.025)")
    lr_min: float | None = arg(None, "final learning rate of the cosine schedule (default: the preset's, 0)")
    lr_step_first: bool = arg(False, "DARTS code's off-by-one: epoch e trains at the cosine value of e+1")
    momentum: float | None = arg(None, "SGD momentum (default: the preset's, 0.9)")
    wd: float | None = arg(None, "weight decay (default: the preset's, 3e-4)")
    cutout: int | None = arg(None, "cutout side (default: the preset's, 16; 0: off)")
    drop_path: float | None = arg(None, "final drop-path probability, reached linearly (default: the preset's; darts 0.3, robustdarts 0.2)")
    aux_weight: float | None = arg(None, "weight of the auxiliary head's loss (default: the preset's, 0.4; 0: no head)")
    grad_clip: float | None = arg(None, "clip the gradient norm of all weights at this value (default: the preset's, 5; 0: off)")
    limit_train: int | None = arg(None, "train on the first N training images only (default: all; smoke: 192)")
    limit_test: int | None = arg(None, "test on the first N test images only (default: all; smoke: 128)")
    seed: int = arg(0, "random seed")
    device: str = arg("auto", "auto (cuda if available), cpu, cuda, cuda:1, ...")
    threads: str = arg("auto", THREADS_HELP)
    out: str | None = arg(None, "run directory (default: RUN_DIR/eval, or runs/train/<name>-<dataset>-seed<k>)")
    resume: bool = arg(False, "continue from the run directory's checkpoint")
    loader: str = arg("auto", "auto (device-resident on CUDA, else torch), device (the data kept on the device) or torch (a DataLoader)",
                      choices=("auto", "device", "torch"))
    amp: str = arg("auto", "autocast: auto (bf16 on CUDA, none on CPU), none, bf16", choices=("auto", "none", "bf16"))
    deterministic: bool = arg(True, "deterministic algorithms (cudnn.benchmark off)")
    progress: bool = arg(True, "tqdm progress bars (shown only when stderr is a terminal; the per-epoch lines go to stdout and log.txt either way)")
    log_every: int = arg(50, "steps between NaN checks on CUDA (every step on CPU)")
    debug_nan_step: int | None = arg(None, "testing only: feed NaN inputs at this global step (NaN guard)")

    def resolve(self, search_dataset: str | None = None) -> None:
        """Fill None fields from the preset; raise ConfigError on out-of-range values."""
        self.dataset = self.dataset or (search_dataset if search_dataset in EVAL_DATASETS else "cifar10")
        if self.dataset not in EVAL_DATASETS:
            raise ConfigError(f"--dataset {self.dataset} is not one of {', '.join(EVAL_DATASETS)}")
        values = dict(PRESETS[self.preset])
        if self.preset == "robustdarts":
            values["layers"], values["C"] = ROBUSTDARTS_SIZE[self.dataset]
        for key, value in values.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        check_ranges(self, TRAIN_RANGES)
        if self.lr_min > self.lr:
            raise ConfigError(f"--lr-min must be <= --lr {self.lr} (got {self.lr_min})")
        if self.layers < 2 and self.aux_weight > 0:
            raise ConfigError("--layers must be >= 2 with the auxiliary head (it needs two reductions before it; "
                              "--aux-weight 0 drops the head)")
        if not DEVICE_FORM.fullmatch(self.device):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N (got {self.device})")
        if not THREADS_FORM.fullmatch(self.threads):
            raise ConfigError(f"--threads must be auto or a whole number >= 1 (got {self.threads!r})")



def _doc(module: str) -> str | None:
    """The docstring of common/<module>.py, read without importing it (it imports torch)."""
    return ast.get_docstring(ast.parse(Path(__file__).with_name(f"{module}.py").read_text()), clean=False)


def train_parser() -> argparse.ArgumentParser:
    """`python -m common.train`'s parser: TrainConfig's flags and the source."""
    parser = build_parser(TrainConfig, _doc("train"))
    parser.prog = "python -m common.train"
    parser.add_argument("source", metavar="RUN_DIR|GENOTYPE_JSON|NAME",
                        help=f"a finished search's run directory, a genotype JSON file, or one of "
                             f"{', '.join(NAMED_GENOTYPE_NAMES)}")
    return parser


def fidelity_parser() -> argparse.ArgumentParser:
    """`python -m common.fidelity`'s parser."""
    parser = argparse.ArgumentParser(prog="python -m common.fidelity", description=_doc("fidelity"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="finished NB201 search run directories")
    parser.add_argument("--nb201", default=None, help="NB201 table (default: each run's --nb201)")
    parser.add_argument("--k", type=int, default=50, help="(b): cells sampled from the space (default: 50)")
    parser.add_argument("--eval-images", type=int, default=1000,
                        help="(b), (c): valid images (default: 1000; 0: all)")
    parser.add_argument("--seed", type=int, default=0, help="(b): seed of the cell sample (default: 0)")
    parser.add_argument("--metric", default=None, help="NB201 column (default by the run's dataset)")
    parser.add_argument("--data-dir", default=None, help="data folder (default: each run's --data-dir)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda if available), cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--threads", default="auto", type=_threads, help=f"{THREADS_HELP} (default: auto)")
    parser.add_argument("--out", default=None, help="folder for fidelity_runs.* (default: the runs' parent)")
    return parser


def _threads(text: str) -> str:
    if not THREADS_FORM.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto or a whole number >= 1 (got {text!r})")
    return text


PARSERS = {"common.train": train_parser, "common.fidelity": fidelity_parser}


def answer_help_early(module: str, name: str) -> None:
    """`--help` of the entry point `name` (common.train, common.fidelity) before its torch import.

    Call it first thing in the module: `answer_help_early(__name__, "common.train")`; it does nothing when the
    module is imported or -h/--help is not asked for.
    """
    if module == "__main__" and {"-h", "--help"} & set(sys.argv[1:]):
        PARSERS[name]().parse_args()

