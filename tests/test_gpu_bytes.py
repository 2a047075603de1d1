"""benchmarks/search_step.py --bytes: the bytes each aten operator of a step reads and writes, against
closed forms (an add, an in-place update, a broadcast, a convolution, a view) and the batched step's count
against S single steps' where the two compute the same things."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import search_step as B  # noqa: E402


def test_bytes_of_simple_operators_are_their_inputs_and_outputs() -> None:
    a, b = torch.randn(100), torch.randn(100)
    ops = B.bytes_per_step(lambda: a + b)
    assert ops == {"add": [1, 800, 400]}
    ops = B.bytes_per_step(lambda: a.mul_(2.0))  # in place: reads a, writes a
    assert ops == {"mul_": [1, 400, 400]}
    row = torch.randn(1, 100).expand(50, 100)  # a broadcast view: its 100 elements, not 5000
    assert B.bytes_per_step(lambda: row * 2) == {"mul": [1, 400, 20000]}
    assert B.bytes_per_step(lambda: a.view(10, 10)) == {}  # a view moves nothing
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    ops = B.bytes_per_step(lambda: F.conv2d(x, w, padding=1))
    assert ops == {"convolution": [1, 4 * (2 * 3 * 64 + 4 * 27), 4 * 2 * 4 * 64]}
    h = torch.randn(64, 32, dtype=torch.bfloat16)
    assert B.bytes_per_step(lambda: h.float()) == {"_to_copy": [1, 64 * 32 * 2, 64 * 32 * 4]}


def test_bytes_cli_rows_add_up_and_the_batched_step_moves_about_s_single_steps(tmp_path: Path) -> None:
    out = tmp_path / "bytes.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_step.py"), "--device", "cpu", "--bytes",
                           "--methods", "darts-v1", "--replicas", "1", "2", "--C", "4", "--N", "1", "--batch", "8",
                           "--top", "3", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    single, batched = json.loads(out.read_text())["rows"]
    for row in (single, batched):
        assert row["bytes_read"] == sum(r[1] for r in row["ops"].values())
        assert row["bytes_written"] == sum(r[2] for r in row["ops"].values())
        assert row["gb_per_search"] * 1e9 == pytest.approx((row["bytes_read"] + row["bytes_written"]) / row["replicas"] * 19500)
    assert "convolution" in single["ops"] and "convolution" in batched["ops"]
    conv1, conv2 = single["ops"]["convolution"], batched["ops"]["convolution"]
    assert conv2[0] == conv1[0] and conv2[2] == 2 * conv1[2]  # vmapped: as many convolutions, S× the outputs
    assert conv2[1] == pytest.approx(2 * conv1[1], rel=1e-3)  # and S× the inputs (a shared input read once)
    assert 0.8 < batched["bytes_per_search_step"] / single["bytes_per_search_step"] < 2.0
    assert "reads" in proc.stdout and "per search-step" in proc.stdout
