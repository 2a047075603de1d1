"""CUDA-graph readiness of every method's step (common/graphs.py), checked on CPU; replay checked on CUDA.

A captured step must not copy any value to the host: capture fails on `.item()`, `.tolist()`,
`if tensor:`, `float(tensor)`, and on operators whose output shape depends on tensor values (`nonzero`,
boolean-mask indexing, `masked_select`, `unique`, `repeat_interleave` without `output_size`) or whose
result is a Python value (`equal`, `is_nonzero`), and on tensors built from Python data inside the step
(`torch.tensor(...)`, indexing with a list: a host→device copy on CUDA). On CPU all of these are cheap and silent, so
`no_host_sync()` makes them raise while a method's bilevel step runs, both at the Python conversions
and at the aten operator (a dispatch mode, which also sees calls made inside torch functions and in
backward). Torch's own optimiser `step()` is exempt: Adam's CPU path reads its step count with
`.item()`; on CUDA graphs use `capturable=True`, which does not. Every
method and backbone that captures is run for two epochs of a real search on CIFAR-10; GDAS, which
samples its ops on the host, must say `capture=False`, and the guard must catch that it syncs.

The CUDA tests (skipped without a GPU) compare replayed searches with eager ones.
"""
from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from common.config import parse_config
from common.graphs import StepGraphs
from common.loop import RunLoop as SearchRun  # register_generator of single and batched runs

ROOT = Path(__file__).resolve().parents[1]
CONFIG_CLASSES = {"edd_darts": "EDDConfig", "aer_darts": "AERConfig", "sp_darts": "SPConfig",
                  "sa_darts": "SAConfig", "common.baseline": "DartsConfig"}


class HostSync(AssertionError):
    """A tensor value was read on the host inside a step that is meant to be captured."""


_CONVERSIONS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__")
aten = torch.ops.aten
# operators that read tensor values on the host (a scalar out, an output shape that depends on data), and
# lift_fresh: a tensor built from Python data (torch.tensor(...), indexing with a list), which on CUDA is
# a host→device copy from pageable memory
_SYNC_OPS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten._unique, aten._unique2,
             aten.unique_dim, aten.unique_consecutive, aten.equal, aten.is_nonzero, aten.lift_fresh}


def _syncs(func, args: tuple, kwargs: dict) -> str | None:
    """Why `func(*args, **kwargs)` would read tensor values on the host, or None."""
    if func.overloadpacket in _SYNC_OPS:
        return f"aten.{func.overloadpacket.__name__}"
    if func.overloadpacket is aten.repeat_interleave and kwargs.get("output_size") is None and any(
            a.name == "repeats" and a.type.kind() == "TensorType" for a in func._schema.arguments):
        return "aten.repeat_interleave without output_size"
    if func.overloadpacket in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_) and any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in (args[1] or ())):
        return "boolean-mask indexing"
    return None


class UnregisteredGenerator(AssertionError):
    """The step drew from a generator not registered with the graphs: every replay would repeat the
    random numbers drawn at capture."""


class _SyncOpGuard(TorchDispatchMode):
    def __init__(self, active: list[bool], registered: list[torch.Generator]) -> None:
        super().__init__()
        self.active, self.registered = active, registered

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reason = self.active[0] and _syncs(func, args, kwargs)
        if reason:
            raise HostSync(f"{reason} inside the step: a host sync (CUDA-graph capture fails)")
        gen = kwargs.get("generator")  # absent or None: the default generator, which graphs handle
        # dispatch re-wraps the generator, so it is recognised by its state (the same object's is identical)
        if self.active[0] and gen is not None and not any(
                torch.equal(gen.get_state(), r.get_state()) for r in self.registered):
            raise UnregisteredGenerator(f"aten.{func.overloadpacket.__name__} draws from a generator that "
                                        "was not passed to run.register_generator")
        return func(*args, **kwargs)


@contextlib.contextmanager
def no_host_sync(registered: Iterable[torch.Generator] = ()) -> Iterator[None]:
    """Make every tensor → Python conversion and every host-syncing operator raise HostSync, and a draw
    from a generator other than the default and `registered` raise UnregisteredGenerator, except inside
    torch optimisers' step()."""
    active = [True]

    def make_raiser(name: str, original):
        def raiser(self, *args, **kwargs):
            if active[0]:
                raise HostSync(f"Tensor.{name}() inside the step: a host sync (CUDA-graph capture fails)")
            return original(self, *args, **kwargs)
        return raiser

    originals = {name: getattr(torch.Tensor, name) for name in _CONVERSIONS}
    pre = register_optimizer_step_pre_hook(lambda *_: active.__setitem__(0, False))
    post = register_optimizer_step_post_hook(lambda *_: active.__setitem__(0, True))
    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, make_raiser(name, original))
        with _SyncOpGuard(active, list(registered)):
            yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        pre.remove()
        post.remove()


def test_guard_catches_each_conversion_and_exempts_optimisers() -> None:
    t = torch.tensor([1.5], requires_grad=True)
    x, ones, rows = torch.arange(6.0).requires_grad_(), torch.ones(6, dtype=torch.long), torch.tensor([1, 2])
    with no_host_sync():
        for convert in (lambda: t.item(), lambda: t.tolist(), lambda: bool(t > 0), lambda: float(t),
                        lambda: int(t), lambda: t.detach().numpy()):
            with pytest.raises(HostSync):
                convert()
        for op in (lambda: x.nonzero(), lambda: x[x > 2], lambda: x.masked_select(x > 2), lambda: x.unique(),
                   lambda: torch.equal(x, x), lambda: x.repeat_interleave(ones), lambda: x[[1, 2]],
                   lambda: x.clone().index_put_((x > 2,), torch.zeros(())), lambda: x.argmax().tolist(),
                   lambda: torch.autograd.grad(x.index_select(0, rows).sum(), x)[0].nonzero(),
                   lambda: x * torch.tensor(2.0)):
            with pytest.raises(HostSync):
                op()
        # capturable look-alikes pass: fixed-shape gathers by a device index, where(), max over a dim,
        # repeat_interleave with output_size, slices
        x.index_select(0, rows)
        torch.where(x > 2, x, 0.0).sum().backward()
        x.max(dim=0)
        x.repeat_interleave(ones, output_size=6)
        x[1:3] * 2.0
        mine, theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
        torch.rand(2)  # the default generator is graph-safe
        with pytest.raises(UnregisteredGenerator):
            torch.rand(2, generator=mine)
        t.grad = torch.ones(1)
        torch.optim.Adam([t], 0.1).step()  # Adam's CPU path calls .item() on its step count: exempt
        with pytest.raises(HostSync):
            t.item()  # the guard is back on after the optimiser's step
    assert t.item() == pytest.approx(1.4)  # and gone after the block
    with no_host_sync(registered=[theirs, mine]):
        torch.rand(2, generator=mine)
        with pytest.raises(UnregisteredGenerator):
            torch.empty(2).normal_(generator=torch.Generator().manual_seed(3))


def tiny(data_dir: Path, *extra: str) -> list[str]:
    return ["--space", "nb201", "--data-dir", str(data_dir), "--limit-train", "64", "--C", "4", "--N", "1",
            "--batch-size", "32", "--eval-images", "32", "--epochs", "2", "--device", "cpu", "--no-progress",
            *extra]


# (script, extra flags): every backbone/branch that captures, warm-up epochs included
CAPTURED = [
    ("common.baseline", ()),
    ("edd_darts", ()),
    ("edd_darts", ("--softmax", "normal", "--clip-alpha", "5")),
    ("aer_darts", ("--backbone", "darts-v1")),
    ("aer_darts", ("--backbone", "darts-v2", "--warmup", "1")),
    ("sp_darts", ("--p-low", "0.5", "--p-up", "0.5", "--warmup", "0")),
    ("sp_darts", ("--objective", "eq13")),
    ("sp_darts", ("--warmup", "0", "--p-low", "0.5", "--p-up", "0.5", "--clip-scope", "official")),  # α.grad in place
    ("aer_darts", ("--backbone", "darts-v2", "--warmup", "1", "--clip-scope", "official")),
    ("sa_darts", ()),
    ("sa_darts", ("--reg", "beta", "--warmup", "1")),
    ("sa_darts", ("--partial-channels", "2")),
    ("sa_darts", ("--backbone", "snas")),
    ("common.baseline", ("--seeds", "0", "1", "--partial-channels", "2")),  # the batched step (common/replicas.py)
    ("sa_darts", ("--seeds", "0", "1", "--backbone", "snas")),  # a registered Gumbel generator per replica
    ("aer_darts", ("--seeds", "0", "1", "--backbone", "gdas")),  # GDAS batched: one-hots, no op index on the host
    ("edd_darts", ("--seeds", "0", "1", "--backbone", "gdas")),
]
GDAS = [("edd_darts", ("--backbone", "gdas")), ("aer_darts", ("--backbone", "gdas"))]


def run_guarded(script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch, every_step: bool = False
                ) -> list[tuple]:
    """Run the script's search in-process with every captured step (`every_step`: every step) under
    `no_host_sync`, the generators given to run.register_generator allowed; returns the (key, capture)
    of each step."""
    module = importlib.import_module(script)
    cfg = parse_config(getattr(module, CONFIG_CLASSES[script]), argv)
    calls: list[tuple] = []
    registered: list[torch.Generator] = []  # every device's: run.register_generator keeps only CUDA ones
    plain_call, plain_register = StepGraphs.__call__, SearchRun.register_generator

    def guarded(self, key, fn, *inputs, capture=True):
        calls.append((key, capture))
        if not (capture or every_step):
            return plain_call(self, key, fn, *inputs, capture=capture)
        with no_host_sync(registered):
            return plain_call(self, key, fn, *inputs, capture=capture)

    def register(self, generator):
        registered.append(generator)
        return plain_register(self, generator)
    monkeypatch.setattr(StepGraphs, "__call__", guarded)
    monkeypatch.setattr(SearchRun, "register_generator", register)
    module.search(cfg)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("script,extra", CAPTURED, ids=[f"{s}{'-' + '-'.join(e) if e else ''}" for s, e in CAPTURED])
def test_captured_steps_make_no_host_sync(script: str, extra: tuple[str, ...], shared_data: Path,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = run_guarded(script, tiny(shared_data, "--out", str(tmp_path / "run"), *extra), monkeypatch)
    assert len(calls) == 2 * 2  # 2 epochs × 2 steps, every one through run.step and captured
    assert all(capture for _, capture in calls)
    if script == "sp_darts":  # mixed: keyed by φ, one graph per branch; eq13: one graph
        assert {key for key, _ in calls} == ({None} if "eq13" in extra else {True, False})


@pytest.mark.slow
@pytest.mark.parametrize("script,extra", GDAS, ids=[s for s, _ in GDAS])
def test_gdas_steps_are_eager_and_would_sync(script: str, extra: tuple[str, ...], shared_data: Path,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = run_guarded(script, tiny(shared_data, "--out", str(tmp_path / "run"), *extra), monkeypatch)
    assert calls and not any(capture for _, capture in calls)
    monkeypatch.undo()  # and rightly so: its sampled op index is read on the host, which the guard catches
    with pytest.raises(HostSync, match="tolist"):
        run_guarded(script, tiny(shared_data, "--out", str(tmp_path / "run2"), *extra), monkeypatch, every_step=True)


def test_disabled_graphs_are_plain_calls() -> None:
    graphs = StepGraphs(enabled=False)
    x = torch.randn(3)
    seen = []
    out = graphs("k", lambda a: (seen.append(a) or a * 2, a + 1), x)
    assert seen[0] is x and torch.equal(out[0], x * 2) and torch.equal(out[1], x + 1)
    assert graphs.captures == 0
    with pytest.raises(ValueError, match="warmup"):
        StepGraphs(enabled=False, warmup=0)


def test_cuda_graphs_flag_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "sa_darts.py", "--cuda-graphs", "--device", "cpu", "--out",
                           str(tmp_path / "run"), "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --cuda-graphs needs a CUDA device (this run is on cpu)"
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- CUDA only

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-graph replay needs a CUDA device")


@needs_cuda
def test_replay_bakes_python_values_until_reset_and_draws_new_random_numbers() -> None:
    graphs = StepGraphs(enabled=True, warmup=1)
    gen = torch.Generator(device="cuda").manual_seed(0)
    graphs.register_generator(gen)
    scale = [2.0]

    def fn(x):
        return x * scale[0], torch.rand(4, device="cuda", generator=gen)
    x = torch.ones(4, device="cuda")
    outs = [graphs("k", fn, x + i) for i in range(3)]  # eager, capture + replay, replay
    assert graphs.captures == 1
    for i, (y, _) in enumerate(outs):
        torch.testing.assert_close(y, (x + i) * 2.0)  # inputs copied into the static buffers
    assert not torch.equal(outs[1][1], outs[2][1])  # registered generator: fresh numbers every replay
    scale[0] = 3.0
    torch.testing.assert_close(graphs("k", fn, x)[0], x * 2.0)  # baked at capture …
    graphs.reset()
    graphs("k", fn, x)  # eager (warm-up)
    torch.testing.assert_close(graphs("k", fn, x)[0], x * 3.0)  # … until reset() and a new capture
    assert graphs.captures == 2


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("script,extra", CAPTURED, ids=[f"{s}{'-' + '-'.join(e) if e else ''}" for s, e in CAPTURED])
def test_graph_replay_matches_eager_search_on_cuda(script: str, extra: tuple[str, ...], shared_data: Path,
                                                   tmp_path: Path) -> None:
    module = importlib.import_module(script)
    config = getattr(module, CONFIG_CLASSES[script])
    results = {}
    for graphs in (False, True):
        argv = tiny(shared_data, "--out", str(tmp_path / f"g{graphs}"), "--epochs", "3", "--limit-train", "256",
                    *extra)
        argv[argv.index("--device") + 1] = "cuda"
        results[graphs] = module.search(parse_config(config, argv + (["--cuda-graphs"] if graphs else [])))
    runs = {g: r["replicas"] if "replicas" in r else {None: r} for g, r in results.items()}  # --seeds: each
    for seed, eager in runs[False].items():
        for kind, alpha in eager["alphas"].items():  # 3 epochs × 8 steps, 6 of them replayed per epoch
            torch.testing.assert_close(torch.tensor(runs[True][seed]["alphas"][kind]), torch.tensor(alpha),
                                       rtol=1e-4, atol=1e-5)
