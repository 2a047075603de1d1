"""The README is a true front page: at most 200 lines; its test command is the one `.ci/run` runs, with the
same installs and environment; its copy-this snippets run; every relative link of README.md and docs/*.md
reaches a file (and a heading, for `#anchor` links); no wording a user cannot act on."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Written alongside this file by the GPU-run work; a link to it is checked once it exists.
PENDING = {ROOT / "docs" / "time-boxed-gpu.md"}


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def ci_commands(script: str) -> list[str]:
    """.ci/run's pip installs and its pytest call, as a user types them: `$PY -m pip install -q X` →
    `pip install X`; the exported variables prefix the pytest command."""
    env, out = [], []
    for line in script.splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("export "):
            env += shlex.split(line)[1:]
        elif line.startswith("$PY -m "):
            words = [w for w in shlex.split(line)[2:] if w != "-q" or line.startswith("$PY -m pytest")]
            if words[0] == "pytest":
                words = env + ["python", "-m"] + words
            out.append(shlex.join(words))
    assert out and out[-1].endswith("python -m pytest -q"), f"no pytest call found in .ci/run: {out}"
    return out


def _shell_lines(text: str) -> list[str]:
    lines = []
    for block in _blocks(text, "bash"):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(shlex.join(shlex.split(line)))
    return lines


def test_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines (at most 200: move detail into docs/)"
    first_screen = "\n".join(lines[:40])
    assert "No paper reproduction has been run yet" in first_screen  # the results status comes first


@pytest.mark.parametrize("doc", [README, ROOT / "docs" / "testing.md"], ids=lambda p: p.name)
def test_the_documented_test_command_is_the_one_ci_runs(doc: Path) -> None:
    expected = ci_commands((ROOT / ".ci" / "run").read_text())
    lines = _shell_lines(doc.read_text())
    # the same commands, consecutive and in the same order
    starts = [i for i, line in enumerate(lines) if line == expected[0]]
    assert any(lines[i:i + len(expected)] == expected for i in starts), (
        f"{doc.name} must list .ci/run's commands in order:\n" + "\n".join(expected))


def test_ci_commands_parser_sees_each_part() -> None:
    script = ("set -e\n$PY -m pip install -q torch==1\n$PY -m pip install -q -e '.[test]'\n"
              "export A=1 B=2\n# a comment\n$PY -m pytest -q\n")
    assert ci_commands(script) == ["pip install torch==1", "pip install -e '.[test]'", "A=1 B=2 python -m pytest -q"]


def test_readme_snippets_run() -> None:
    """The copy-this snippets, run in the namespace the README describes (α tensors, a loss, the epoch)."""
    snippets = _blocks(README.read_text(), "python")
    assert len(snippets) >= 4
    for code in snippets:
        gen = torch.Generator().manual_seed(0)
        alphas = {k: (1e-3 * torch.randn(14, 8, generator=gen)).requires_grad_() for k in ("normal", "reduce")}
        alpha = alphas["normal"]
        loss = (alpha ** 2).sum()
        ns = {"alpha": alpha, "alphas": alphas, "loss": loss, "epoch": 20, "epochs": 50}
        exec(compile(code, "<README snippet>", "exec"), ns)
        for name in ("weights", "loss", "t", "lam", "p"):
            if name in ns and isinstance(ns[name], torch.Tensor):
                assert torch.isfinite(ns[name]).all(), (name, code)
        if isinstance(ns.get("weights"), torch.Tensor):
            torch.testing.assert_close(ns["weights"].sum(-1), torch.ones(14))
        if ns["loss"] is not loss:  # a regulariser was added: it reaches α
            (g,) = torch.autograd.grad(ns["loss"] - loss.detach(), [alpha])
            assert g.abs().sum() > 0


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    heads = {_slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}
    return heads | set(re.findall(r'<a id="([^"]+)">', text))


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_their_target(doc: Path) -> None:
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if path in PENDING and not path.exists():
            continue
        if not path.exists():
            bad.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            bad.append(f"{target}: no heading or anchor '{anchor}' in {path.name}")
    assert not bad, f"{doc.name}: " + "; ".join(bad)


def test_link_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\n## Two words\n")
    assert _anchors(tmp_path / "a.md") == {"top", "two-words"}
    assert _slug("H100: a partial start, not `x`") == "h100-a-partial-start-not-x"


@pytest.mark.parametrize("doc", [README, *[d for d in DOCS if d not in PENDING]], ids=lambda p: p.name)
def test_no_wording_a_user_cannot_act_on(doc: Path) -> None:
    text = doc.read_text()
    found = re.findall(r"\bissues? \d+|\blent\b|device tool|\bsessions?\b", text, flags=re.I)
    assert not found, f"{doc.name}: {found}"
