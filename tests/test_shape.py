"""The shape of the shared code: no import circles, no module in common/ over 600 lines, each common
module opening with one line that says what it owns, and method files that stay short and mostly paper.

The circle check walks every import of every module of the repository, function-level ones included
(an import inside a function still ties the two modules together), and is checked against a synthetic
package that has a circle through a function-level import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def module_imports(root: Path) -> dict[str, set[str]]:
    """Each module of `root` (dotted name; tests/, hidden and venv folders left out) → the modules of
    `root` it imports anywhere in its source, a submodule's import counting as its package's only when
    the submodule is not itself a module of `root`."""
    mods = {p.relative_to(root).with_suffix("").as_posix().replace("/", "."): p for p in root.rglob("*.py")
            if not p.relative_to(root).parts[0].startswith((".", "tests", "venv"))}
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    out.add(target)
        edges[name] = out
    return edges


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, once each (as the list of its modules from its smallest name), by Tarjan's
    strongly connected components: a component of two or more modules holds a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_repository_has_no_import_circles() -> None:
    assert import_cycles(module_imports(ROOT)) == []


def test_the_circle_check_finds_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "low.py").write_text("def f():\n    from pkg.high import g  # late, still a circle\n")
    (tmp_path / "pkg" / "high.py").write_text("from pkg import low\n\ndef g():\n    return low\n")
    (tmp_path / "pkg" / "leaf.py").write_text("import pkg.low\n")  # imports into the circle, not part of it
    (tmp_path / "top.py").write_text("from pkg.leaf import x\n")
    edges = module_imports(tmp_path)
    assert edges["pkg.high"] == {"pkg.low"} and edges["pkg.low"] == {"pkg.high"}  # `from pkg import low` too
    assert import_cycles(edges) == [["pkg.high", "pkg.low"]]
    (tmp_path / "pkg" / "low.py").write_text("def f():\n    return 1\n")
    assert import_cycles(module_imports(tmp_path)) == []


COMMON = sorted((ROOT / "common").rglob("*.py"))


@pytest.mark.parametrize("path", COMMON, ids=[str(p.relative_to(ROOT / "common")) for p in COMMON])
def test_common_module_is_at_most_600_lines(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.name} has {n} lines: split it along what it owns (docs: DESIGN.md layers)"


@pytest.mark.parametrize("path", COMMON, ids=[str(p.relative_to(ROOT / "common")) for p in COMMON])
def test_common_module_opens_with_one_line_saying_what_it_owns(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.name} has no module docstring"
    lines = doc.splitlines()
    assert lines[0].strip() and len(lines[0]) <= 110, f"{path.name}: the first line is empty or too long"
    assert len(lines) == 1 or not lines[1].strip(), f"{path.name}: the summary runs over more than one line"


#: A method file's line budget (the README's promise: one readable file per method; EDD has the most variants).
METHOD_LINES = {"edd_darts.py": 350, "aer_darts.py": 300, "sp_darts.py": 300, "sa_darts.py": 300}


def paper_share(source: str) -> tuple[int, int]:
    """(paper lines, code lines) of a method file, non-blank, its module docstring (the paper companion) left
    out. Not paper: imports, the `answer_help_early` call, `main` and the `__main__` guard, and a `*Config`
    class's fields, docstring and `resolve`/`former_value`/`authors_recipe`; its other methods are the paper's
    hooks (a variant's behaviour), and everything else at the top level (the equations, tables, the loop) is
    the paper."""
    tree, lines = ast.parse(source), source.splitlines()
    kind: dict[int, str] = {}

    def mark(node: ast.AST, what: str) -> None:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        kind.update({i: what for i in range(first, node.end_lineno + 1)})
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            mark(node, "doc")
        elif isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr, ast.If)) or (
                isinstance(node, ast.FunctionDef) and node.name == "main"):
            mark(node, "plumbing")
        elif isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
            mark(node, "plumbing")
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and sub.name not in ("resolve", "former_value", "authors_recipe"):
                    mark(sub, "paper")
        else:
            mark(node, "paper")
    code = [kind.get(i, "plumbing") for i in range(1, len(lines) + 1) if lines[i - 1].strip()]
    code = [k for k in code if k != "doc"]
    return code.count("paper"), len(code)


def test_paper_share_counts_what_it_says() -> None:
    src = ('"""Doc."""\nimport math\n\n\n@dataclass\nclass XConfig:\n    a: int = 1\n\n    def hook(self):\n'
           '        return 1\n\n    def resolve(self):\n        pass\n\n\ndef eq1(x):\n    return x\n\n\n'
           'def main():\n    pass\n')
    assert paper_share(src) == (4, 12)  # hook (2) + eq1 (2) of 12 non-blank lines below the docstring


@pytest.mark.parametrize("name", sorted(METHOD_LINES))
def test_method_file_is_short_and_mostly_the_paper(name: str) -> None:
    source = (ROOT / name).read_text()
    n = len(source.splitlines())
    assert n <= METHOD_LINES[name], f"{name} has {n} lines (budget {METHOD_LINES[name]}): move plumbing to common/"
    paper, code = paper_share(source)
    assert paper >= code / 2, f"{name}: {paper} of {code} code lines are the paper's method (at least half)"
