"""Config dataclass → argparse, with help text taken from the fields.

    @dataclass
    class MyConfig(SearchConfig):
        lam: float = arg(0.06, "λ of Eq. 14")

    cfg = parse_config(MyConfig)          # --lam, plus every shared flag, with --help from the fields

A field whose default depends on other flags (the dataset, the space) defaults to None and is filled
by the config's `resolve()`; its help says so, and `args.json` records the value actually used.

The authors' code: a method script `<m>_darts.py` declares its config with the paper's fields and its hooks
(methods holding the paper's behaviour). `authors/<m>.py`, where it exists, subclasses that config under the
same name with the authors'-code recipe, their quirk flags and hook overrides. The method file never imports
`authors/`: `build_parser` and `parse_config` swap the subclass in (`with_authors`), so every flag of both
is on the command line and in args.json, and `--help` reads both sources without importing either.

Recipes (`--recipe paper|authors`): `paper` is the dataclass defaults. `authors` asks the config's
`authors_recipe()` for a mapping field → value (the authors' published search script for this space
and dataset) and applies it to every field the user did not set on the command line; explicit flags
always win. `args.json` records `recipe` beside the resolved values.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common.spaces import (  # torch-free: --help never imports torch
    DATASETS,
    GDAS_FORM_OF_SKELETON,
    GDAS_FORMS,
    SPACES,
)
from common.threads import THREADS_FORM


def arg(default: Any, help: str, choices: Sequence[Any] | None = None) -> Any:
    """A config field with its help text (and optional choices)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None}
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


class ConfigError(ValueError):
    """A bad option value: reported as one line, exit code 2."""


def _in(lo: float, hi: float, closed_hi: bool = False) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: lo <= v <= hi) if closed_hi else (lambda v: lo <= v < hi),
            f"in [{lo}, {hi}{']' if closed_hi else ')'}")


_POSITIVE: tuple[Callable[[Any], bool], str] = (lambda v: v > 0, "> 0")
_NONNEGATIVE: tuple[Callable[[Any], bool], str] = (lambda v: v >= 0, ">= 0")
_AT_LEAST_1: tuple[Callable[[Any], bool], str] = (lambda v: v >= 1, ">= 1")
#: The range of every numeric flag of SearchConfig (None, where allowed, is not checked). Every float
#: flag of any config must also be finite; method configs check their own flags in their resolve().
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": _AT_LEAST_1, "batch_size": _AT_LEAST_1, "C": _AT_LEAST_1, "N": _AT_LEAST_1,
    "limit_train": _AT_LEAST_1, "partial_channels": _AT_LEAST_1, "log_every": _AT_LEAST_1,
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32) (numpy's seed range)"),
    "w_lr": _POSITIVE, "a_lr": _POSITIVE, "w_lr_min": _NONNEGATIVE,
    "w_momentum": _in(0, 1), "a_beta1": _in(0, 1),  # Adam needs β1 < 1; SGD momentum ≥ 1 diverges
    "w_wd": _NONNEGATIVE, "a_wd": _NONNEGATIVE,
    "grad_clip": (lambda v: v >= 0, ">= 0 (0: no clipping; a negative norm would reverse the gradient)"),
    "cutout": _NONNEGATIVE, "eval_images": _NONNEGATIVE, "debug_nan_step": _NONNEGATIVE,
    "derive_decimals": _NONNEGATIVE, "checkpoint_every": _NONNEGATIVE,
}
RANGES["debug_nan_seed"] = RANGES["seed"]
DEVICE_FORM = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
THREADS_HELP = ("CPU threads, set once at the start: auto (the cores this process may use minus the other work "
                "on them, at least 1; OMP_NUM_THREADS, when set, instead) or a number (wins over "
                "OMP_NUM_THREADS); args.json records the count used (torch_threads)")


def fill_defaults(cfg: Any, **defaults: Any) -> None:
    """In a config's `resolve()`: set each field named in `defaults` that is still None (its flag not given) to
    its value there; an explicit value, 0 included, is kept."""
    for name, value in defaults.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)


def check_ranges(cfg: Any, ranges: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Raise ConfigError (one line naming the flag) for the first value outside its range.

    Checks every float field of `cfg` is finite (NaN/inf rejected), then each `ranges` entry; fields
    that are None are skipped.

    Args:
        cfg: a config dataclass instance.
        ranges: field name → (predicate, the rule in words).

    Raises:
        ConfigError: `--flag must be RULE (got VALUE)`.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _base_type(hints[f.name])[0] is float and value is not None and not math.isfinite(value):
            raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number (got {value})")
    for name, (ok, rule) in ranges.items():
        value = getattr(cfg, name, None)
        if value is not None and not ok(value):
            raise ConfigError(f"--{name.replace('_', '-')} must be {rule} (got {value})")


#: --preset NAME → flag values (used for every flag not given on the command line).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"C": 4, "limit_train": 256, "batch_size": 32, "epochs": 2, "eval_images": 128},
}
#: Cells of the smoke preset per skeleton (NB201: cells per stage; DARTS: total cells).
SMOKE_CELLS = {"nb201": 1, "darts": 3}


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
    seeds: list[int] | None = arg(None, "several seeds searched at once as one batched computation (common/replicas.py); "
                                        "each writes the run directory its --seed run would (--out may hold "
                                        "{seed}, else <out>/seed<k>); default: none, the one --seed run")
    device: str = arg("auto", "auto (cuda if available), cpu, cuda, cuda:1, ...")
    threads: str = arg("auto", THREADS_HELP)
    out: str | None = arg(None, "run directory (default runs/<script>/<space>-<dataset>-seed<seed>)")
    resume: bool = arg(False, "continue from the run directory's checkpoint if it has one")
    checkpoint_every: float = arg(600.0, "also checkpoint inside an epoch, at most every this many seconds, so a "
                                         "kill loses at most that much (0: after every step); --resume then "
                                         "continues from that step")
    w_lr: float = arg(0.025, "SGD learning rate of the network weights w")
    w_lr_min: float | None = arg(0.001, "cosine schedule's final w learning rate (None: constant lr)")
    w_momentum: float = arg(0.9, "SGD momentum")
    w_nesterov: bool = arg(True, "Nesterov momentum for w (NB201's code: on; the DARTS-space codes: off)")
    w_wd: float = arg(5e-4, "weight decay of w")
    grad_clip: float = arg(5.0, "clip the gradient norm of w at this value (what the norm counts: --clip-scope)")
    a_lr: float = arg(3e-4, "Adam learning rate of α")
    a_wd: float = arg(1e-3, "Adam weight decay of α")
    a_beta1: float = arg(0.5, "Adam β1 of α")
    cutout: int = arg(0, "cutout side length on the training images (0: off)")
    alpha_init: float = arg(1e-3, "α init scale: α = --alpha-init-mean + alpha_init·N(0, 1) (DARTS/NB201: 1e-3; "
                                  "0: constant α)")
    alpha_init_mean: float = arg(0.0, "α init offset (SA-DARTS Table 8: 1e-3·{-0.5, -1, -2, -5})")
    partial_channels: int = arg(1, "K of PC-DARTS: mixed ops see 1/K of the channels, with edge "
                                   "normalisation (1: off)")
    exclude_none: bool = arg(False, "NB201 derivation: skip `none` in the per-edge argmax")
    derive_decimals: int | None = arg(None, "DARTS-skeleton derivation: rank the weights softmax(α/T) rounded "
                                            "to this many decimals, ties broken by --derive-ties (the SP authors' "
                                            "DARTS-space genotype(): 4; their and the EDD/PCD authors' S1-S4 and "
                                            "DARTS-space ones: 3); default None: exact")
    derive_ties: str = arg("later-input-first-op", "with --derive-decimals, which of equal rounded weights wins: "
                                                   "later-input-first-op (of equal edges the later input, of equal "
                                                   "ops the first: the SP authors' DARTS-space genotype()), "
                                                   "earlier-input-first-op (the EDD/PCD authors' DARTS-space one, "
                                                   "PCDEDD-DARTS/model_search_cyc.py:171-187) or earlier-input-last-op "
                                                   "(the S1-S4 genotype() of the SmoothDARTS forks, chaoji90/SP-DARTS "
                                                   "SmoothDARTS/sota/cnnmul/model_search.py:192-211)",
                           choices=("later-input-first-op", "earlier-input-first-op", "earlier-input-last-op"))
    loader: str = arg("auto", "data path: auto (device-resident on CUDA, else torch), device (the split "
                              "kept on the device), torch (a DataLoader)",
                      choices=("auto", "device", "torch"))
    eval_images: int = arg(10000, "images of the valid half used for the per-epoch discretized-net "
                                  "accuracy (0: all)")
    log_every: int = arg(50, "steps between progress updates and NaN checks on CUDA (every step on CPU)")
    fast: bool = arg(True, "fast supernet path (same math as the reference supernet)")
    amp: str = arg("none", "autocast dtype for forward/backward", choices=("none", "bf16"))
    cuda_graphs: bool = arg(False, "capture each epoch's bilevel step in a CUDA graph and replay it (CUDA "
                                   "only; GDAS backbones stay eager but with --seeds; see common/graphs.py)")
    deterministic: bool = arg(True, "deterministic algorithms (cudnn.benchmark off)")
    progress: bool = arg(True, "tqdm progress bars (shown only when stderr is a terminal; the per-epoch line "
                               "is printed and written to log.txt either way)")
    debug_nan_step: int | None = arg(None, "testing only: feed NaN inputs at this global step (NaN guard)")
    recipe: str = arg("paper", "paper: the paper's settings (these defaults); authors: every setting of the "
                               "authors' published search script for this space and dataset (the script's "
                               "docstring lists them with file and line); explicit flags override either",
                      choices=("paper", "authors"))
    clip_scope: str = arg("w", "what --grad-clip's norm counts: w (the weights only) or official (NB201's "
                               "clip_grad_norm_(network.parameters()): also α.grad, holding the last α step's "
                               "gradient plus this step's training gradient; α's update is unaffected)",
                          choices=("w", "official"))
    step_order: str = arg("w-first", "order of each bilevel step: w-first (w step on the train batch, then the α step: "
                                     "NB201's code) or alpha-first (the α step first, then w: the DARTS code and its "
                                     "forks, architect.step before the w step)", choices=("w-first", "alpha-first"))
    valid_batch: str = arg("paired", "the α step's batch: paired (the valid loader's next batch, one shuffled pass of "
                                     "the valid half per epoch) or random (every step a fresh random batch of the "
                                     "valid half, as the DARTS code's next(iter(valid_queue)): batch-size images "
                                     "drawn without replacement by a generator of the run, seeded from --seed, "
                                     "checkpointed)", choices=("paired", "random"))
    preset: str | None = arg(None, "smoke: a one-minute CPU search (C 4, N 1 on NB201 / 3 cells, 256 images per "
                                   "half, batch 32, 2 epochs); flags given explicitly win", choices=tuple(PRESETS))
    debug_nan_seed: int | None = arg(None, "testing only: with --seeds, --debug-nan-step hits this seed's replica only "
                                         "(default: every replica)")

    def seeds_refusal(self, planning: bool = False) -> str | None:
        """This config's own reason why `--seeds` cannot batch it, or None (`planning`: also a reason that may
        only show mid-run; run_all.sh's grouping asks ahead). `common.harness.seeds_refusal` adds the run's."""
        return None

    def resolve(self) -> None:
        """Fill defaults that depend on other flags; raise ConfigError on out-of-range values."""
        if self.recipe != "paper" and not getattr(self, "_recipe_applied", False):
            raise ConfigError(f"--recipe {self.recipe}: apply it with common.config.apply_recipe(cfg, explicit) "
                              f"before resolve() (parse_config does)")
        if self.N is None:
            self.N = 5 if SPACES[self.space].skeleton == "nb201" else 8
        if self.nb201 is not None and self.nb201.lower() == "none":  # as the parser reads it
            self.nb201 = None
        if self.nb201 == "auto":  # the packaged table (common/nb201.PACKAGED_TABLE, tools/pack_nb201.py)
            self.nb201 = str(Path(__file__).with_name("nb201_200ep.csv.gz")) if self.space == "nb201" else None
        check_ranges(self, RANGES)
        if not DEVICE_FORM.fullmatch(self.device):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N (got {self.device!r})")
        if not THREADS_FORM.fullmatch(self.threads):
            raise ConfigError(f"--threads must be auto or a whole number >= 1 (got {self.threads!r})")
        if not (0 <= self.alpha_init < math.inf and math.isfinite(self.alpha_init_mean)):
            raise ConfigError(f"--alpha-init must be >= 0 and finite, --alpha-init-mean finite (got {self.alpha_init}, "
                              f"{self.alpha_init_mean}; a negative init is --alpha-init-mean)")
        if self.seeds is not None:
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"--seeds needs distinct seeds (got {self.seeds})")
            if not all(0 <= seed < 2**32 for seed in self.seeds):
                raise ConfigError(f"--seeds must be in [0, 2**32) (numpy's seed range; got {self.seeds})")
            if len(self.seeds) == 1:  # one seed is the plain single run, bit for bit
                self.seed, self.seeds = self.seeds[0], None
                if self.out is not None and "{seed}" in self.out:  # its run directory, as with several
                    self.out = self.out.replace("{seed}", str(self.seed))
        if self.C % self.partial_channels:
            raise ConfigError(f"--C {self.C} is not divisible by --partial-channels {self.partial_channels}")


    def authors_recipe(self) -> dict[str, Any]:
        """The authors' published search settings for this space/dataset: field → value.

        Called before `resolve()` (fields still hold the parsed values; `self._explicit`, the names of the
        flags given explicitly, lets a recipe require one, e.g. a value the authors swept). A script
        without public code raises ConfigError with its one-line reason.
        """
        raise ConfigError(f"--recipe authors: {type(self).__name__} defines no authors' recipe")

    def former_value(self, name: str) -> Any:
        """The value of field `name` that a checkpoint without it (made before the flag existed) ran with,
        for this config: the field's default unless a subclass knows better (`--resume` compares it)."""
        return {f.name: f.default for f in dataclasses.fields(self)}.get(name)


@dataclass
class GdasConfig(SearchConfig):
    """`SearchConfig` plus GDAS's edge form: the config base of the scripts with a GDAS backbone, whose
    `backbone` field is "gdas" when GDAS samples (aer_darts.py, edd_darts.py)."""

    gdas_form: str | None = arg(None, "GDAS's edge forward with the hard sample o*: nb201 (w_o*·o*(x) plus every "
                                      "other op's weight, 0 in value, so all of α's row gets a gradient; xautodl "
                                      "models/cell_searchs/search_cells.py:72-84) or nasnet (w_o*·o*(x) alone: α's "
                                      "gradient flows through w_o* only; search_cells.py:163-164, 220-232); "
                                      "default: the official GDAS code's for the skeleton, nb201 on NB201, nasnet "
                                      "on the DARTS skeleton (darts, darts-nonone, s1-s4)", choices=GDAS_FORMS)

    def uses_gdas(self) -> bool:
        """Whether the search samples with GDAS (`--backbone gdas`)."""
        return getattr(self, "backbone", None) == "gdas"

    def resolve(self) -> None:
        super().resolve()
        if not self.uses_gdas():
            if self.gdas_form is not None:
                raise ConfigError(f"--gdas-form applies to --backbone gdas only (got --gdas-form {self.gdas_form} "
                                  f"with --backbone {getattr(self, 'backbone', None)})")
            return
        self.gdas_form = self.gdas_form or GDAS_FORM_OF_SKELETON[SPACES[self.space].skeleton]

    def former_value(self, name: str) -> Any:
        """Before --gdas-form, GDAS ran the nb201 form on every skeleton (see `SearchConfig.former_value`)."""
        if name == "gdas_form":
            return "nb201" if self.uses_gdas() else None
        return super().former_value(name)


def apply_recipe(cfg: SearchConfig, explicit: Iterable[str] = ()) -> dict[str, Any]:
    """Set the recipe's values on `cfg` for the fields not in `explicit`; returns what was set."""
    if getattr(cfg, "recipe", "paper") == "paper":  # a config without --recipe has the paper's
        return {}
    cfg._recipe_applied = True  # type: ignore[attr-defined]  # not a field: args.json and equality ignore it
    explicit = set(explicit)
    cfg._explicit = frozenset(explicit)  # type: ignore[attr-defined]  # a recipe may require a flag be given
    known = {f.name for f in dataclasses.fields(cfg)}
    applied = {}
    for name, value in cfg.authors_recipe().items():
        if name not in known:
            raise ConfigError(f"recipe sets unknown field {name!r}")  # a bug in a recipe, not user input
        if name not in explicit:
            setattr(cfg, name, value)
            applied[name] = value
    return applied


C = TypeVar("C", bound=SearchConfig)


class _Parser(argparse.ArgumentParser):
    """Errors as one line on stderr (`prog: error: ...`), without argparse's usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@dataclass(frozen=True)
class _Flag:
    """One `--flag`: what build_parser needs of a config field."""

    name: str
    kind: type
    optional: bool
    default: Any
    help: str
    choices: tuple[Any, ...] | None


#: Flags whose meaning differs between the four scripts (their help says so).
PER_SCRIPT_FLAGS = ("warmup", "lam", "backbone")


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


def _flags(cls: type) -> list[_Flag]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(_Flag(f.name, *_base_type(hints[f.name]), default, f.metadata.get("help", ""),
                         f.metadata.get("choices")))
    return out


def _help(flag: _Flag) -> str:
    """The field's help with one default: its own words if it names one, else on/off/the value."""
    text = flag.help
    if flag.name in PER_SCRIPT_FLAGS:
        text += f" [--{flag.name.replace('_', '-')} means something different in each script: this is its meaning here]"
    if "default" in flag.help.lower() or (flag.default is None or flag.default is False) and re.search(r"\boff\b(?!-)", flag.help):
        return text.replace("%", "%%")  # the help already names the default
    shown = {None: "off", False: "off", True: "on"}.get(flag.default, flag.default) \
        if isinstance(flag.default, (bool, type(None))) else flag.default
    return f"{text} (default: {shown})".replace("%", "%%")


def _parser(flags: Sequence[_Flag], description: str | None,
            suppress_defaults: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                     argument_default=argparse.SUPPRESS if suppress_defaults else None)
    for f in flags:
        flag = "--" + f.name.replace("_", "-")
        default = argparse.SUPPRESS if suppress_defaults else f.default
        if f.kind is bool:
            action = parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
            action.help = _help(f)  # set after: BooleanOptionalAction appends its own "(default: …)"
        elif typing.get_origin(f.kind) is list:  # list[int]: one or more values (--seeds 0 1 2)
            parser.add_argument(flag, type=typing.get_args(f.kind)[0], nargs="+", default=default,
                                help=_help(f), dest=f.name)
        else:
            parser.add_argument(flag, type=_parse_optional(f.kind) if f.optional else f.kind, default=default,
                                choices=f.choices, help=_help(f), dest=f.name)
    return parser


def _authors_module(script_stem: str) -> str | None:
    """`authors.<m>` for the method script `<m>_darts` (None for any other module)."""
    return f"authors.{script_stem.removesuffix('_darts')}" if script_stem.endswith("_darts") else None


def with_authors(cls: type[C]) -> type[C]:
    """`cls`, or its subclass of the same name in `authors/<m>.py` (the authors'-code flags and hooks).

    `cls` is a method script's config class; the script may run as `__main__`: it is then also registered
    under its file name, so that `import edd_darts` in `authors/edd.py` is this very module, not a second copy.
    """
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    name = _authors_module(Path(path).stem) if path else None
    if name is None:
        return cls
    if cls.__module__ == "__main__":
        sys.modules.setdefault(Path(path).stem, module)  # type: ignore[arg-type]
    try:
        authors = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name in (name, "authors"):  # no authors' code for this method
            return cls
        raise
    extended = getattr(authors, cls.__name__, None)
    if not (isinstance(extended, type) and issubclass(extended, cls)):
        raise TypeError(f"{name}.{cls.__name__} must subclass {cls.__module__}.{cls.__name__}")
    return extended


def build_parser(cls: type[C], description: str | None = None,
                 suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """An argparse parser with one `--flag` per dataclass field of `with_authors(cls)` (`suppress_defaults`:
    the namespace then holds only the flags given on the command line)."""
    return _parser(_flags(with_authors(cls)), description, suppress_defaults)


# --------------------------------------------------------------------------- --help without torch
class _NotStatic(Exception):
    """The script's config cannot be read without running the script (any non-literal `arg(...)`)."""


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _literal(node: ast.expr, consts: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in consts:  # a module-level literal constant (BACKBONES)
        return consts[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise _NotStatic from None


def _static_flag(stmt: ast.AnnAssign, consts: dict[str, Any]) -> _Flag:
    parts = [p.strip() for p in ast.unparse(stmt.annotation).split("|")]
    kinds = [p for p in parts if p != "None"]
    call = stmt.value
    if len(kinds) != 1 or kinds[0] not in _TYPES or not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                                                          and call.func.id == "arg"):
        raise _NotStatic
    values = [_literal(a, consts) for a in call.args]
    keywords = {k.arg: _literal(k.value, consts) for k in call.keywords}
    values += [keywords.pop(k) for k in ("default", "help", "choices")[len(values):] if k in keywords]
    if keywords or len(values) < 2:
        raise _NotStatic
    choices = values[2] if len(values) > 2 else None
    return _Flag(stmt.target.id, _TYPES[kinds[0]], "None" in parts, values[0], values[1],  # type: ignore[union-attr]
                 tuple(choices) if choices else None)


def _module_literals(tree: ast.Module) -> tuple[dict[str, ast.ClassDef], dict[str, Any]]:
    """(classes, module-level literal constants) of a parsed source file."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    consts = {}
    for n in tree.body:
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            try:
                consts[n.targets[0].id] = ast.literal_eval(n.value)
            except ValueError:
                pass
    return classes, consts


def _static_parser(path: str | Path) -> argparse.ArgumentParser:
    """The parser `main()` of the script at `path` builds, read from its source without importing it.

    With `authors/<m>.py` beside a script `<m>_darts.py`, its class of the config's name (written
    `class XConfig(<m>_darts.XConfig)`) adds its fields after the script's, as `with_authors` does.

    Raises:
        _NotStatic: where the source does anything else than `parse_config(Cls, argv, description=__doc__)`
            with fields `name: type = arg(<literals>)` over `SearchConfig` or `GdasConfig`.
    """
    path = Path(path)
    tree = ast.parse(path.read_text())
    classes, consts = _module_literals(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "parse_config"]
    if len(calls) != 1 or not calls[0].args or not isinstance(calls[0].args[0], ast.Name):
        raise _NotStatic
    keywords = {k.arg: k.value for k in calls[0].keywords}
    doc = keywords.pop("description", None)
    if keywords or len(calls[0].args) > 2 or not (doc is None or isinstance(doc, ast.Name) and doc.id == "__doc__"):
        raise _NotStatic

    def fields(out: dict[str, _Flag], node: ast.ClassDef, consts: dict[str, Any]) -> dict[str, _Flag]:
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                out[stmt.target.id] = _static_flag(stmt, consts)  # a redefined field keeps its place (dataclasses)
        return out

    def flags(name: str) -> dict[str, _Flag]:
        shared = {"SearchConfig": SearchConfig, "GdasConfig": GdasConfig}  # the bases in this module
        if name in shared:
            return {f.name: f for f in _flags(shared[name])}
        node = classes.get(name)
        if node is None or len(node.bases) != 1 or not isinstance(node.bases[0], ast.Name):
            raise _NotStatic
        return fields(flags(node.bases[0].id), node, consts)

    name = calls[0].args[0].id
    out = flags(name)
    module = _authors_module(path.stem)
    authors = path.parent.joinpath(*module.split(".")).with_suffix(".py") if module else None
    if authors is not None and authors.exists():
        a_classes, a_consts = _module_literals(ast.parse(authors.read_text()))
        node = a_classes.get(name)
        base = ast.unparse(node.bases[0]) if node is not None and len(node.bases) == 1 else None
        if base != f"{path.stem}.{name}":
            raise _NotStatic
        out = fields(out, node, a_consts)
    description = ast.get_docstring(tree, clean=False) if doc is not None else None
    return _parser(list(out.values()), description)


def answer_help_early(module: str, path: str) -> None:
    """`--help` for the script at `path`, before its own imports (torch: 1-2 s here, ~10 s cold).

    Call it first thing in a script: `answer_help_early(__name__, __file__)`. It does nothing when the
    module is imported, when -h/--help is not asked for, or when the config cannot be read statically
    (then the normal parser answers, after the imports; tests/test_first_hour.py checks every script).
    """
    if module != "__main__" or not {"-h", "--help"} & set(sys.argv[1:]):
        return
    try:
        parser = _static_parser(path)
    except (_NotStatic, OSError, SyntaxError):
        return
    parser.parse_args()  # prints the help (or a usage error met first, as the full parser would) and exits


def parse_config(cls: type[C], argv: Sequence[str] | None = None, description: str | None = None) -> C:
    """Parse `argv` (default sys.argv[1:]) into `with_authors(cls)`, then `resolve()` it. Exits 2 on a bad value."""
    cls = with_authors(cls)
    parser = build_parser(cls, description)
    ns = parser.parse_args(argv)
    preset = _apply_preset(ns, sys.argv[1:] if argv is None else argv) if getattr(ns, "preset", None) else set()
    cfg = cls(**vars(ns))
    explicit = vars(build_parser(cls, description, suppress_defaults=True).parse_args(argv))  # flags given
    try:
        # --recipe authors: its values for the fields neither given explicitly nor set by --preset
        apply_recipe(cfg, set(explicit) | preset)
        cfg.resolve()
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    return cfg


def _apply_preset(ns: argparse.Namespace, argv: Sequence[str]) -> set[str]:
    """Set the preset's values on `ns`, except for flags given in `argv` (`--flag`, `--flag=…`, `--no-flag`);
    returns the names the preset set (a recipe leaves them alone)."""
    given = {a.split("=", 1)[0].removeprefix("--no-").removeprefix("--").replace("-", "_")
             for a in argv if a.startswith("--")}
    values = dict(PRESETS[ns.preset])
    if ns.preset == "smoke":
        values["N"] = SMOKE_CELLS[SPACES[ns.space].skeleton]
    for name, value in values.items():
        if name not in given:
            setattr(ns, name, value)
    return set(values) - given


def config_dict(cfg: SearchConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def script_name() -> str:
    return sys.argv[0].rsplit("/", 1)[-1].removesuffix(".py")
