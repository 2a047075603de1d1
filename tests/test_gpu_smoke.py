"""The time-boxed session's smoke list (benchmarks/gpu_session.py SMOKE) holds only checks that run on CUDA.

A check that skips itself on a GPU would count as a smoke failure there and send every search eager; on
CPU the mirror image passes, so this test collects the list in a fresh pytest process in which
`torch.cuda.is_available()` answers True and the shared data has the layout the session's set-up makes,
and decides for every collected item, without running it, whether it would skip: its `skip`/`skipif`
marks, and every `pytest.skip(...)` in its body and in its fixtures' bodies, whose enclosing `if`
condition is evaluated in the function's module (unconditional or undecidable counts as a skip).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_session as G  # noqa: E402

PROBE = r'''
import ast, inspect, json, os, textwrap
import torch
torch.cuda.is_available = lambda: True  # before any test module is imported: the GPU as the device has it


def _skips(fn, env):
    """Reasons `fn`'s body would call pytest.skip/importorskip with `env` as its module globals."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError) as err:
        return [f"cannot read the source of {fn!r}: {err}"]
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("skip", "importorskip") and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "pytest"):
            continue
        guard, child = parents.get(node), node
        while guard is not None and not (isinstance(guard, ast.If) and child in guard.body):
            guard, child = parents.get(guard), guard
        if guard is None:
            out.append(f"unconditional pytest.{node.func.attr} at line {node.lineno}")
            continue
        try:
            taken = eval(compile(ast.Expression(guard.test), "<guard>", "eval"), dict(env))
        except Exception as err:  # a condition on a local or an argument: cannot tell, so not trusted
            out.append(f"cannot evaluate `{ast.unparse(guard.test)}` ({type(err).__name__})")
            continue
        if taken:
            out.append(f"`if {ast.unparse(guard.test)}: pytest.{node.func.attr}(...)` is taken")
    return out


def pytest_collection_modifyitems(session, config, items):
    found = []
    for item in items:
        why = []
        for mark in item.iter_markers("skip"):
            why.append(f"skip mark: {mark.kwargs.get('reason', mark.args)}")
        for mark in item.iter_markers("skipif"):
            for cond in mark.args:
                if eval(cond, dict(item.function.__globals__)) if isinstance(cond, str) else cond:
                    why.append(f"skipif: {mark.kwargs.get('reason')}")
        why += _skips(item.function, item.function.__globals__)
        for name in item.fixturenames:
            for fixture in item._fixtureinfo.name2fixturedefs.get(name, ()):
                if fixture.baseid != "":  # the project's own fixtures (pytest's builtins never skip)
                    why += [f"fixture {name}: {w}" for w in _skips(fixture.func, fixture.func.__globals__)]
        found.append({"nodeid": item.nodeid, "skips": why})
    with open(os.environ["SMOKE_PROBE_OUT"], "w") as fh:
        json.dump(found, fh)
'''


def collect_as_on_cuda(tmp_path: Path, checks: list[str]) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Collect `checks` with CUDA looking present and DARTS_SHARED_DATA laid out as the set-up makes it."""
    (tmp_path / "smoke_probe.py").write_text(PROBE)
    data = tmp_path / "cifar10_full"  # the session's set-up: the rebuilt CIFAR-10 + the NB201 table copied in
    (data / "cifar-10-batches-py").mkdir(parents=True)
    (data / "nb201").mkdir()
    (data / "nb201" / "nb201_200ep.csv").write_text("")
    out = tmp_path / "found.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "DARTS_SHARED_DATA": str(data), "SMOKE_PROBE_OUT": str(out)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "smoke_probe",
                           "-p", "no:cacheprovider", *checks], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc, json.loads(out.read_text()) if out.is_file() else []


def test_every_smoke_check_runs_on_cuda(tmp_path: Path) -> None:
    proc, found = collect_as_on_cuda(tmp_path, list(G.SMOKE))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for check in G.SMOKE:  # every entry names at least one test
        assert any(f["nodeid"].startswith(check) for f in found), f"{check} collects nothing"
    would_skip = {f["nodeid"]: f["skips"] for f in found if f["skips"]}
    assert would_skip == {}, f"smoke checks that would skip on a GPU: {would_skip}"
    assert len(found) >= 19  # 17 replay-vs-eager pairs, the StepGraphs check, the device loader


def test_the_probe_sees_a_test_that_skips_itself_on_cuda(tmp_path: Path) -> None:
    """The check that sent every GPU eager (it skips where CUDA is present) and a data-fixture test are
    caught: the probe can fail."""
    proc, found = collect_as_on_cuda(tmp_path, [
        "tests/test_graphs.py::test_cuda_graphs_flag_without_cuda_is_a_clear_error",
        "tests/test_graphs.py::test_disabled_graphs_are_plain_calls"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    skips = {f["nodeid"].split("::")[1]: f["skips"] for f in found}
    assert skips["test_disabled_graphs_are_plain_calls"] == []
    assert skips["test_cuda_graphs_flag_without_cuda_is_a_clear_error"] == [
        "`if torch.cuda.is_available(): pytest.skip(...)` is taken"]


@pytest.mark.parametrize("rc,text,why", [
    (0, "PASSED tests/a.py::t1\nPASSED tests/a.py::t2\n2 passed in 3.1s", ""),
    (0, "PASSED tests/a.py::t1\nSKIPPED [1] tests/test_graphs.py:247: this machine has CUDA\n1 passed, 1 skipped",
     "SKIPPED [1] tests/test_graphs.py:247: this machine has CUDA"),
    (1, "FAILED tests/test_graphs.py::test_graph_replay_matches_eager_search_on_cuda[sa_darts] - AssertionError\n"
        "ERROR tests/test_data.py::test_device_loader_cuda_matches_cpu - RuntimeError: x\n1 failed, 1 error",
     "FAILED tests/test_graphs.py::test_graph_replay_matches_eager_search_on_cuda[sa_darts]; "
     "ERROR tests/test_data.py::test_device_loader_cuda_matches_cpu"),
    (124, "\n(stopped after 60 s)", "timed out"),
    (4, "ERROR: file or directory not found: tests/x.py", "pytest rc 4"),
    (5, "no tests ran in 0.1s", "pytest rc 5"),
])
def test_a_smoke_failure_names_the_failing_check(rc: int, text: str, why: str) -> None:
    assert G.smoke_failure(rc, text) == why
