"""benchmarks/compat_api.py: the static check that the installed torch has every torch name and keyword the
code names (the CUDA-only lines included), which benchmarks/compat_check.sh runs under the lent GPU's torch."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import compat_api as A  # noqa: E402

SOURCE = """
import torch
import torch.nn as nn
from torch import optim as o
from torch.nn import functional as F
from torch.func import vmap, no_such_function
x = torch.cuda.graph(None, capture_error_mode="thread_local", bogus_mode=1)
y = o.Adam([], capturable=True, no_such_keyword=2)
z = F.cross_entropy
w = torch.cuda.no_such_attribute
n = nn.Conv2d(1, 1, 3, padding_mode="zeros")
s = torch.load("f", map_location="cpu", weights_only=False)
t = some_tensor.no_such_method(k=1)  # reached through an object: out of reach, by design
g = torch.cuda.CUDAGraph()
g.register_generator_state(None)
g.no_such_method()
opt = o.SGD([], 0.1)
opt.zero_grad(set_to_none=True, no_such_keyword=1)
h = torch.cuda.CUDAGraph()
h = None  # made two ways: not followed
h.no_such_method()
"""


def test_flags_missing_names_keywords_and_methods_only() -> None:
    got = [(p.line, p.what) for p in A.check_source(SOURCE, "x.py")]
    assert got == [(0, "import of torch.func.no_such_function fails"),
                   (7, "torch.cuda.graph() takes no keyword bogus_mode"),
                   (8, "torch.optim.Adam() takes no keyword no_such_keyword"),
                   (10, "torch.cuda.no_such_attribute does not exist"),
                   (16, "torch.cuda.CUDAGraph has no method no_such_method"),
                   (18, "torch.optim.SGD.zero_grad() takes no keyword no_such_keyword")]


def test_resolve_reaches_submodules_the_parent_does_not_import() -> None:
    assert A.resolve("torch.utils.checkpoint.checkpoint") is not A._MISSING
    assert A.resolve("torch.not_a_module.x") is A._MISSING and A.resolve("no_such_package") is A._MISSING
