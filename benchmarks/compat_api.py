"""Does the installed torch have every torch API this checkout names? A static check, CUDA paths included.

    python benchmarks/compat_api.py                 # exit 1 and one line per problem, else a one-line OK

The CPU test suite never runs the CUDA-only lines (graph capture, `torch.cuda.*`, capturable Adam), so
a torch version that lacks one of them would only fail on the GPU, after its start-up minutes. This
reads every `.py` file of the checkout (tests included) with `ast`, follows the imports of torch and
torchvision (`from torch.nn import functional as F`, `import torch.nn as nn`, ...), and for every dotted
name rooted there (`torch.cuda.graph`, `F.cross_entropy`, `torch.func.vmap`) checks that it resolves in
the installed packages; for a call of such a name it also checks that every keyword given
(`capture_error_mode=`, `capturable=`, `weights_only=`) is a parameter of the callee's signature.
A method of an object is checked where the file makes that object in one place from one torch class
(`graph = torch.cuda.CUDAGraph()` or `self.x = ...`, then `graph.register_generator_state(g)`); other
objects (`tensor.foo()`, `opt.param_groups`) are out of its reach: the test suite covers those on CPU.
`benchmarks/compat_check.sh` runs it under the GPU image's torch (2.11, 2026-12-01: no problem in 65 files).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ("torch", "torchvision")
_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One name or keyword the installed packages lack, where it is used."""

    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → dotted path, for every import of torch/torchvision (or a part of them) in the file."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in ROOTS:  # `import torch.nn` binds `torch`; `as x` binds the whole path
                    names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in ROOTS:
            for a in node.names:
                if a.name != "*":
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.expr) -> list[str] | None:
    """`a.b.c` → ["a", "b", "c"]; None for anything that is not a plain dotted name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def resolve(path: str) -> object:
    """The object a dotted path names in the installed packages, or `_MISSING`."""
    parts = path.split(".")
    try:
        obj: object = importlib.import_module(parts[0])
    except ImportError:
        return _MISSING
    for i, name in enumerate(parts[1:], 1):
        nxt = getattr(obj, name, _MISSING)
        if nxt is _MISSING:  # a submodule not imported by its parent's __init__
            try:
                nxt = importlib.import_module(".".join(parts[:i + 1]))
            except ImportError:
                return _MISSING
        obj = nxt
    return obj


def _keywords_missing(obj: object, keywords: Iterable[str]) -> list[str]:
    """The keywords a callable's signature does not take ([] where it has **kwargs or no readable signature)."""
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return [k for k in keywords if k not in params]


def _instances(tree: ast.Module, aliases: dict[str, str]) -> dict[str, str]:
    """`name` or `self.name` → the torch class it holds, where every assignment to it in the file is a call
    of that one class (`graph = torch.cuda.CUDAGraph()`), so that `graph.replay()` can be checked too."""
    made: dict[str, set[str | None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        parts = _dotted(value.func) if isinstance(value, ast.Call) else None
        path = ".".join([aliases[parts[0]], *parts[1:]]) if parts and parts[0] in aliases else None
        for target in targets:
            name = _dotted(target)
            if name and len(name) <= 2 and (len(name) == 1 or name[0] == "self"):
                made.setdefault(".".join(name), set()).add(path)
    return {k: v for k, (v,) in ((k, tuple(paths)) for k, paths in made.items() if len(paths) == 1)
            if v is not None and inspect.isclass(resolve(v))}


def check_source(text: str, file: str) -> list[Problem]:
    """Every torch/torchvision name and call keyword in one file's source that the installed packages lack."""
    tree = ast.parse(text, file)
    aliases = _aliases(tree)
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()

    def check(node: ast.expr, keywords: list[str]) -> None:
        parts = _dotted(node)
        if not parts or parts[0] not in aliases:
            return
        path = ".".join([aliases[parts[0]], *parts[1:]])
        obj = resolve(path)
        what = f"{path} does not exist" if obj is _MISSING else ""
        if obj is not _MISSING and keywords:
            bad = _keywords_missing(obj, keywords)
            what = f"{path}() takes no keyword {', '.join(bad)}" if bad else ""
        if what and (node.lineno, what) not in seen:
            seen.add((node.lineno, what))
            problems.append(Problem(file, node.lineno, what))

    def check_method(node: ast.Attribute, keywords: list[str]) -> None:
        owner = _dotted(node.value)
        cls_path = instances.get(".".join(owner)) if owner else None
        if cls_path is None:
            return
        method = getattr(resolve(cls_path), node.attr, _MISSING)
        what = f"{cls_path} has no method {node.attr}" if method is _MISSING else ""
        if method is not _MISSING and keywords:
            bad = _keywords_missing(method, keywords)
            what = f"{cls_path}.{node.attr}() takes no keyword {', '.join(bad)}" if bad else ""
        if what:
            problems.append(Problem(file, node.lineno, what))

    instances = _instances(tree, aliases)
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            called.add(id(node.func))
            check(node.func, [k.arg for k in node.keywords if k.arg])
            if isinstance(node.func, ast.Attribute):
                check_method(node.func, [k.arg for k in node.keywords if k.arg])
    for node in ast.walk(tree):  # names used without a call (decorators, isinstance, defaults)
        if isinstance(node, ast.Attribute) and id(node) not in called and not isinstance(node.ctx, ast.Store):
            check(node, [])
    for path in set(aliases.values()):  # `from torch.func import vmap` itself
        if resolve(path) is _MISSING:
            problems.append(Problem(file, 0, f"import of {path} fails"))
    return sorted(set(problems), key=lambda p: (p.line, p.what))


def python_files(root: Path) -> list[Path]:
    """The checkout's .py files (git's tracked and untracked-not-ignored ones; every .py outside git)."""
    proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.py"], cwd=root, capture_output=True,
                          text=True)
    if proc.returncode == 0:
        return [root / n for n in proc.stdout.splitlines() if (root / n).is_file()]
    return sorted(p for p in root.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(root).parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to read")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"compat_api: error: --root {args.root} is not a folder", file=sys.stderr)
        return 2
    import torch
    files = python_files(args.root)
    problems = [p for f in files for p in check_source(f.read_text(), str(f.relative_to(args.root)))]
    for p in problems:
        print(p)
    print(f"compat_api: {len(files)} files, torch {torch.__version__}: "
          + (f"{len(problems)} problem(s)" if problems else "every torch/torchvision name and keyword resolves"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
