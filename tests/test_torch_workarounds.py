"""Workarounds for torch bugs met by the project's own shapes, each checked in a subprocess (a crash there
fails the test instead of killing the run)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FACTORIZED_REDUCE = """
import torch
from common.ops import FactorizedReduce
torch.manual_seed(0)
for C in (2, 4, 6):
    op = FactorizedReduce(C, C)  # float32: the search's dtype (the float64 kernel is not affected)
    x = torch.randn(8, C, 16, 16)
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xi = x.contiguous(memory_format=layout).requires_grad_()
        op.zero_grad()
        for _ in range(20):  # the corruption shows on a later free
            y = op(xi)
            gx, *gw = torch.autograd.grad(y.square().sum(), [xi, *op.parameters()])
        grads.append((y, gx, gw))
    (y0, gx0, gw0), (y1, gx1, gw1) = grads
    assert torch.allclose(y0, y1, atol=1e-5) and torch.allclose(gx0, gx1, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(gw0, gw1))
print("ok")
"""


def test_factorized_reduce_of_few_channels_in_channels_last_on_cpu() -> None:
    """A DARTS-skeleton supernet of C = 2 (the tests' size) trains its stride-2 skip without torch 2.14's
    oneDNN heap corruption (before the workaround: glibc aborted the process), and NCHW = channels_last."""
    proc = subprocess.run([sys.executable, "-c", FACTORIZED_REDUCE], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                            "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
