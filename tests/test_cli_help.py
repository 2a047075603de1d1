"""--help of the entry points that are not search scripts: every option listed, each with its default."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
