"""--help of the entry points that are not search scripts: every option listed, each with its default."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from helpers import HELP_DRIVER

ROOT = Path(__file__).resolve().parents[1]


def test_run_all_help_lists_every_option_with_its_default() -> None:
    source = (ROOT / "run_all.sh").read_text()
    parsed = set(re.findall(r"^\s+(--[a-z0-9-]+)\)", source, re.M))  # the option loop's case arms
    assert {"--runs", "--quick", "--per-gpu"} <= parsed
    out = subprocess.run(["bash", "run_all.sh", "--runs", "elsewhere", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60).stdout
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^  (--[a-z0-9-]+)\b(.*)$", out, re.M)}
    assert set(lines) == parsed, set(lines) ^ parsed
    for option, text in lines.items():
        assert "(default: " in text, option
    assert "(default: runs/all;" in lines["--runs"]  # the default, not the value given before --help



def test_train_and_fidelity_help_answer_without_torch_and_name_every_default() -> None:
    import json
    import os
    import sys

    from common.cli import PARSERS
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-c", HELP_DRIVER, *PARSERS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["torch"] is False
    for name, make in PARSERS.items():
        assert "usage: python -m " + name in got["help"][name]
        for action in make()._actions[1:]:
            if action.option_strings:  # an option (positionals have no default)
                assert "default" in action.help, (name, action.dest, action.help)
                assert "(default: off)" not in action.help or action.default in (None, False), (name, action.dest)


def test_train_named_genotypes_are_evalnets() -> None:
    from common.cli import NAMED_GENOTYPE_NAMES
    from common.evalnet import NAMED_GENOTYPES
    assert NAMED_GENOTYPE_NAMES == tuple(NAMED_GENOTYPES)


def test_train_output_redirected_is_plain_lines(shared_data, tmp_path) -> None:
    """Off a terminal: no progress bars, no timestamps, and "1 epoch", not "1 epochs"."""
    import sys
    proc = subprocess.run([sys.executable, "-m", "common.train", "DARTS_V2", "--preset", "smoke", "--data-dir",
                           str(shared_data), "--out", str(tmp_path / "run"), "--limit-train", "64", "--limit-test", "64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "it/s" not in proc.stderr and "\r" not in proc.stderr + proc.stdout  # tqdm draws with \r
    lines = proc.stdout.splitlines()
    assert lines and not any(re.match(r"\d{4}-\d\d-\d\d", line) for line in lines), lines
    assert "after 1 epoch on cifar10" in lines[-1], lines[-1]
    assert (tmp_path / "run" / "log.txt").read_text().splitlines() == lines
