"""Config dataclass → argparse, with help text taken from the fields.

    @dataclass
    class MyConfig(SearchConfig):
        lam: float = arg(0.06, "λ of Eq. 14")

    cfg = parse_config(MyConfig)          # --lam, plus every shared flag, with --help from the fields

A field whose default depends on other flags (the dataset, the space) defaults to None and is filled
by the config's `resolve()`; its help says so, and `args.json` records the value actually used.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common.data import DATASETS
from common.spaces import SPACES


def arg(default: Any, help: str, choices: Sequence[Any] | None = None) -> Any:
    """A config field with its help text (and optional choices)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """A bad option value: reported as one line, exit code 2."""


@dataclass
class SearchConfig:
    """Flags every search script shares (METHODS.md §1 defaults: NB201's DARTS code)."""

    space: str = arg("nb201", "search space", choices=tuple(SPACES))
    dataset: str = arg("cifar10", "search dataset", choices=DATASETS)
    data_dir: str = arg("./data", "folder holding cifar-10-batches-py/, cifar-100-python/, ImageNet16/")
    nb201: str | None = arg("auto", "NAS-Bench-201 table for the per-epoch lookup of the derived cell: auto "
                                    "(on --space nb201 the table shipped in the package, without the "
                                    "imagenet16_valid column), a compact CSV (.csv, .csv.gz), the official "
                                    ".pth, or none (off)")
    epochs: int = arg(50, "search epochs")
    batch_size: int = arg(64, "batch size (w and α steps)")
    C: int = arg(16, "initial channels of the supernet")
    N: int | None = arg(None, "NB201: cells per stage (default 5); DARTS/S1-S4: total cells (default 8)")
    limit_train: int | None = arg(None, "use only the first N images of each half of the split (CPU runs, tests)")
    seed: int = arg(0, "random seed")
    device: str = arg("auto", "auto (cuda if available), cpu, cuda, cuda:1, ...")
    out: str | None = arg(None, "run directory (default runs/<script>/<space>-<dataset>-seed<seed>)")
    resume: bool = arg(False, "continue from the run directory's checkpoint if it has one")
    w_lr: float = arg(0.025, "SGD learning rate of the network weights w")
    w_lr_min: float | None = arg(0.001, "cosine schedule's final w learning rate (None: constant lr)")
    w_momentum: float = arg(0.9, "SGD momentum")
    w_wd: float = arg(5e-4, "weight decay of w")
    grad_clip: float = arg(5.0, "clip the gradient norm of w (network weights only) at this value")
    a_lr: float = arg(3e-4, "Adam learning rate of α")
    a_wd: float = arg(1e-3, "Adam weight decay of α")
    a_beta1: float = arg(0.5, "Adam β1 of α")
    cutout: int = arg(0, "cutout side length on the training images (0: off)")
    partial_channels: int = arg(1, "K of PC-DARTS: mixed ops see 1/K of the channels, with edge "
                                   "normalisation (1: off)")
    exclude_none: bool = arg(False, "NB201 derivation: skip `none` in the per-edge argmax")
    loader: str = arg("auto", "data path: device-resident (default on CUDA) or torch DataLoader",
                      choices=("auto", "device", "torch"))
    eval_images: int = arg(10000, "images of the valid half used for the per-epoch discretized-net "
                                  "accuracy (0: all)")
    log_every: int = arg(50, "steps between progress updates and NaN checks on CUDA (every step on CPU)")
    fast: bool = arg(True, "fast supernet path (same math as the reference supernet)")
    amp: str = arg("none", "autocast dtype for forward/backward", choices=("none", "bf16"))
    cuda_graphs: bool = arg(False, "capture each epoch's bilevel step in a CUDA graph and replay it (CUDA "
                                   "only; GDAS backbones stay eager; see common/graphs.py)")
    deterministic: bool = arg(True, "deterministic algorithms (cudnn.benchmark off)")
    progress: bool = arg(True, "tqdm progress bars")
    debug_nan_step: int | None = arg(None, "testing only: feed NaN inputs at this global step (NaN guard)")

    def resolve(self) -> None:
        """Fill defaults that depend on other flags; raise ConfigError on out-of-range values."""
        if self.N is None:
            self.N = 5 if SPACES[self.space].skeleton == "nb201" else 8
        if self.nb201 == "auto":  # the packaged table (common/nb201.PACKAGED_TABLE, tools/pack_nb201.py)
            self.nb201 = str(Path(__file__).with_name("nb201_200ep.csv.gz")) if self.space == "nb201" else None
        for name in ("epochs", "batch_size", "C", "N", "partial_channels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(self, name)})")
        if self.limit_train is not None and self.limit_train < 1:
            raise ConfigError(f"--limit-train must be >= 1 (got {self.limit_train})")
        for name in ("w_lr", "a_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {getattr(self, name)})")
        if self.C % self.partial_channels:
            raise ConfigError(f"--C {self.C} is not divisible by --partial-channels {self.partial_channels}")


C = TypeVar("C", bound=SearchConfig)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help; the script's docstring keeps its layout."""


class _Parser(argparse.ArgumentParser):
    """Errors as one line on stderr (`prog: error: ...`), without argparse's usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _base_type(tp: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of a field annotation like `int | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _parse_optional(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def build_parser(cls: type[C], description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one `--flag` per dataclass field."""
    parser = _Parser(description=description, formatter_class=_HelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f.metadata.get("help", "")
        if default is None and "default" not in help_:
            help_ += " (default depends on other flags; args.json records the value used)"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        else:
            parser.add_argument(flag, type=_parse_optional(kind) if optional else kind, default=default,
                                choices=f.metadata.get("choices"), help=help_, dest=f.name)
    return parser


def parse_config(cls: type[C], argv: Sequence[str] | None = None, description: str | None = None) -> C:
    """Parse `argv` (default sys.argv[1:]) into `cls`, then `resolve()` it. Exits 2 on a bad value."""
    parser = build_parser(cls, description)
    ns = parser.parse_args(argv)
    cfg = cls(**vars(ns))
    try:
        cfg.resolve()
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    return cfg


def config_dict(cfg: SearchConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def script_name() -> str:
    return sys.argv[0].rsplit("/", 1)[-1].removesuffix(".py")
