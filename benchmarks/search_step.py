"""Time one bilevel search step (w step + α step) per method and space; compare with the reference.

    python benchmarks/search_step.py                       # CPU: NB201 C=16 N=5 batch 64, fp32
    python benchmarks/search_step.py --device cuda --amp none bf16 --batch 64 256 --json out.json
    python benchmarks/search_step.py --device cuda --concurrent 8   # 8 processes share one GPU
    python benchmarks/search_step.py --device cuda --paths fast --cuda-graphs --concurrent 4
    python benchmarks/search_step.py --replicas 1 4 16 32 --methods darts-v1   # --seeds: S searches batched

Prints one row per (space, method, path, amp, batch): median seconds per bilevel step, images/s
(2 batches per step), the implied 50-epoch NB201 search time (25k/25k split: 19,500 steps at batch
64), peak memory (CUDA: max allocated; CPU: process RSS high-water mark), and the
activation memory actually saved for backward (bytes of tensors autograd keeps, measured with
saved-tensor hooks: device-independent, what SAC's partial channels are meant to cut), and the aten
operators one eager step dispatches (`ops`: the host's work per step, which bounds a small supernet's
eager GPU step; device-independent).
If the official reference (`pip install --no-deps xautodl`; benchmark-only, never a dependency) is
importable, its DARTS-V1 step on `TinyNetworkDarts` is timed in the same process and the ratio printed.
`--cuda-graphs` replays each step from a CUDA graph (common/graphs.py; GDAS stays eager), as
`--cuda-graphs` does in the search scripts.
`--replicas 1 4 16 32` times the batched step of `--seeds` (common/replicas.py) for S replicas: per row the
time per batched step, aten operators per search-step (ops / S), the implied 50-epoch NB201 searches per
hour (S searches per batched run) and peak memory; `--compare-sequential` adds S single steps run one
after the other in the same process and the ratio.
`--bytes` counts the bytes each aten operator of one eager step reads (its tensor inputs) and writes (its
tensor outputs), operator by operator, for the single run's step and, with `--replicas`, the batched one
(per search-step = / S; per 50-epoch search = × 19,500): device-independent, what an unfused step moves
through memory, the floor a bandwidth-bound GPU step cannot beat. `--bytes --compile` also tries the
fusion route (torch.compile of the batched step's forward): its compile time, its step against the eager
one (tolerance stated in the row), and the bytes inductor's kernels and the operators it leaves to aten
move per step.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.fast import build_supernet  # noqa: E402
from common.graphs import StepGraphs  # noqa: E402
from common.run import CHANNELS_LAST_MIN_C  # noqa: E402
from common.sampling import gdas_weights, gumbel_softmax_hard  # noqa: E402
from common.search import alpha_step, softmax_weights, unrolled_alpha_step, w_step  # noqa: E402

METHODS = ("darts-v1", "darts-v2", "gdas", "pc-k4")
REPLICA_METHODS = ("darts-v1", "darts-v2", "gdas", "pc-k4")  # what --seeds batches (common/replicas.py)
NB201_STEPS_PER_SEARCH = 50 * (25000 // 64)  # 50 epochs, 25k/25k split, batch 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(method: str, space: str, C: int, N: int, batch: int, device: torch.device, fast: bool,
              amp: str, compile_: bool = False, graphs: bool = False) -> tuple[Callable[[], None], torch.nn.Module]:
    """A closure running one bilevel step of `method` on random CIFAR-shaped data (`graphs`: replayed)."""
    K = 4 if method == "pc-k4" else 1
    model = build_supernet(space, C, N, 10, partial_channels=K, fast=fast).to(device)
    channels_last = fast and K == 1 and C >= CHANNELS_LAST_MIN_C  # as SearchRun
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    w_opt = torch.optim.SGD(w_params, 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(a_params, 3e-4, betas=(0.5, 0.999), weight_decay=1e-3, capturable=graphs)
    xs = [torch.randn(batch, 3, 32, 32, device=device) for _ in range(2)]
    if channels_last:
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    ys = [torch.randint(10, (batch,), device=device) for _ in range(2)]
    net = torch.compile(model) if compile_ else model

    def fwd_with(weights_fn, index=None):
        def fwd(x):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16", cache_enabled=not graphs):
                return net(x, weights_fn(), index).float()
        return fwd

    def step() -> None:
        if method == "gdas":
            for x, y, phase in ((xs[0], ys[0], "w"), (xs[1], ys[1], "a")):
                sample = {k: gumbel_softmax_hard(a, 5.0) for k, a in model.alphas.items()}
                fwd = fwd_with(lambda s=sample: {k: w for k, (w, _) in s.items()},
                               {k: i for k, (_, i) in sample.items()})
                if phase == "w":
                    w_step(fwd, x, y, w_params, w_opt, 5.0)
                else:
                    alpha_step(fwd, x, y, a_params, a_opt)
            return
        fwd = fwd_with(lambda: softmax_weights(model.alphas))
        w_step(fwd, xs[0], ys[0], w_params, w_opt, 5.0)
        if method == "darts-v2":
            unrolled_alpha_step(fwd, xs[0], ys[0], xs[1], ys[1], w_params, a_params, w_opt, a_opt, 0.025)
        else:
            alpha_step(fwd, xs[1], ys[1], a_params, a_opt)
    if graphs:
        replay = StepGraphs(enabled=True)
        return (lambda: replay(None, step, capture=method != "gdas")), model
    return step, model


def make_replica_step(method: str, space: str, C: int, N: int, batch: int, device: torch.device, amp: str,
                      S: int, graphs: bool = False, compile_forward: bool = False, return_model: bool = False
                      ) -> Callable[[], None] | tuple[Callable[[], None], object]:
    """One batched bilevel step of S replicas (common/replicas.py, as `--seeds` runs it): the S supernets'
    parameters stacked, the vmapped forward, per-replica clip and NaN freeze; S different batches."""
    from common.replicas import batched_forward, stack_replicas
    K = 4 if method == "pc-k4" else 1
    models = []
    for seed in range(S):
        torch.manual_seed(seed)
        models.append(build_supernet(space, C, N, 10, partial_channels=K, fast=True).to(device))
    w_opt = torch.optim.SGD(models[0].weight_parameters(), 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(models[0].arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3,
                             capturable=graphs)
    alive = torch.ones(S, dtype=torch.bool, device=device)
    model, w_opt, a_opt = stack_replicas(models, w_opt, a_opt, alive)  # as SearchRun with --seeds builds them
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    xs = [torch.randn(S, batch, 3, 32, 32, device=device) for _ in range(2)]
    ys = [torch.randint(10, (S * batch,), device=device) for _ in range(2)]
    fwd = batched_forward(model, lambda: softmax_weights(model.alphas), amp=amp == "bf16", cache=not graphs)
    if compile_forward:  # the fusion route: inductor fuses the elementwise ops around the convolutions
        fwd = torch.compile(fwd)
    gens = [torch.Generator(device=device).manual_seed(s) for s in range(S)]  # GDAS: each replica's draws

    def gdas_fwd():  # a fresh sample per replica: its one-hots mask the all-ops forward
        weights, index = gdas_weights(model.alphas, 5.0, gens)
        return batched_forward(model, lambda: weights, index, amp=amp == "bf16", cache=not graphs)

    def step() -> None:
        if method == "gdas":
            w_step(gdas_fwd(), xs[0], ys[0], w_params, w_opt, 5.0)
            alpha_step(gdas_fwd(), xs[1], ys[1], a_params, a_opt)
            return
        w_step(fwd, xs[0], ys[0], w_params, w_opt, 5.0)
        if method == "darts-v2":  # dispatches to the per-replica unrolled step
            unrolled_alpha_step(fwd, xs[0], ys[0], xs[1], ys[1], w_params, a_params, w_opt, a_opt, 0.025)
        else:
            alpha_step(fwd, xs[1], ys[1], a_params, a_opt)
    if graphs:
        replay = StepGraphs(enabled=True)
        run = lambda: replay(None, step, capture=method != "gdas")  # noqa: E731
        return (run, model) if return_model else run
    return (step, model) if return_model else step


def replica_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """--replicas: per S, the batched step's time, operators per search-step, searches per hour, memory."""
    rows = []
    for method in [m for m in args.methods if m in REPLICA_METHODS]:
        for amp in args.amp:
            for S in args.replicas:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                if S == 1:  # the single run's own step (`--seeds` with one seed is the plain run)
                    step, _ = make_step(method, "nb201", args.C, args.N, args.batch[0], device, True, amp,
                                        graphs=args.cuda_graphs)
                else:
                    step = make_replica_step(method, "nb201", args.C, args.N, args.batch[0], device, amp, S,
                                             args.cuda_graphs and not args.compile, compile_forward=args.compile)
                compile_s = None
                if args.compile:  # the fusion route: its first step compiles
                    t0 = time.perf_counter()
                    step()
                    _sync(device)
                    compile_s = time.perf_counter() - t0
                med = statistics.median(time_step(step, device, args.warmup, args.iters))
                ops, views = (ops_per_step(step, views=True) if args.activations and not args.cuda_graphs
                              and not args.compile else (None, None))
                peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                row = {"space": "nb201", "method": method, "replicas": S, "amp": amp, "batch": args.batch[0],
                       "C": args.C, "N": args.N, "graphs": args.cuda_graphs and not args.compile, "step_s": med,
                       **({"path": "batched+compile" if S > 1 else "single", "compile_s": compile_s}
                          if args.compile else {}),
                       "step_s_per_search": med / S, "aten_ops": ops,
                       "aten_ops_per_search_step": ops / S if ops else None, "aten_views": views,
                       "kernel_ops_per_search_step": (ops - views) / S if ops else None,
                       "nb201_searches_per_hour": 3600 * S / (med * NB201_STEPS_PER_SEARCH),
                       "peak_mem_mb": peak / 2**20,
                       "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                       f"cpu x{torch.get_num_threads()} threads"}
                if args.compare_sequential and S > 1:  # S single steps, one after the other, same process
                    singles = [make_step(method, "nb201", args.C, args.N, args.batch[0], device, True, amp)[0]
                               for _ in range(S)]
                    seq = lambda: [f() for f in singles]
                    row["sequential_s"] = statistics.median(time_step(seq, device, 1, args.iters))
                    row["batched_over_sequential"] = med / row["sequential_s"]
                rows.append(row)
                print(_fmt_replicas(row), flush=True)
                if args.json:  # after every row: a stage cut short keeps what it measured
                    _write_json(args, rows)
    return rows


def _write_json(args: argparse.Namespace, rows: list[dict]) -> None:
    Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "torch": torch.__version__,
                                           "cpu_count": os.cpu_count(), "rows": rows}, indent=1))


def _fmt_replicas(r: dict) -> str:
    ops = (f"{r['aten_ops']} ops ({r['aten_ops_per_search_step']:.0f}/search; not views "
           f"{r['kernel_ops_per_search_step']:.0f}/search)" if r.get("aten_ops") else "ops -")
    seq = (f"  vs {r['sequential_s']:.2f} s sequential: x{r['batched_over_sequential']:.2f}"
           if "sequential_s" in r else "")
    return (f"nb201 {r['method']:9} S={r['replicas']:<3} {r['amp']:5} b={r['batch']:<4} {r['step_s']:8.3f} s/step "
            f"({1000 * r['step_s_per_search']:7.1f} ms/search)  {ops}  "
            f"{r['nb201_searches_per_hour']:7.2f} searches/h  peak {r['peak_mem_mb']:8.0f} MB{seq}")


def reference_step(C: int, N: int, batch: int, device: torch.device) -> Callable[[], None] | None:
    """The official NB201 reference's DARTS-V1 step (xautodl TinyNetworkDarts), if installed."""
    try:
        from xautodl.config_utils import dict2config
        from xautodl.models import get_cell_based_tiny_net
    except ImportError:
        return None
    cfg = dict2config({"name": "DARTS-V1", "C": C, "N": N, "max_nodes": 4, "num_classes": 10,
                       "space": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"],
                       "affine": False, "track_running_stats": False}, None)
    net = get_cell_based_tiny_net(cfg).to(device)
    w_opt = torch.optim.SGD(net.get_weights(), 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(net.get_alphas(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    xs = [torch.randn(batch, 3, 32, 32, device=device) for _ in range(2)]
    ys = [torch.randint(10, (batch,), device=device) for _ in range(2)]

    def step() -> None:  # NB201's search loop body for DARTS-V1 (w step, then α step)
        w_opt.zero_grad()
        _, logits = net(xs[0])
        F.cross_entropy(logits, ys[0]).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
        w_opt.step()
        a_opt.zero_grad()
        _, logits = net(xs[1])
        F.cross_entropy(logits, ys[1]).backward()
        a_opt.step()
    return step


def time_step(step: Callable[[], None], device: torch.device, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def saved_activation_bytes(step: Callable[[], None]) -> int:
    """Peak bytes of tensors saved for backward during one step (deduplicated by storage)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


class _OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched (each at least one kernel launch on a GPU, forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        self.views += func.is_view  # a view: metadata only, no kernel
        return func(*args, **(kwargs or {}))


def _tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches for tensor `t`: its elements (an expanded view's repeats counted once)."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        n *= size if stride else 1
    return n * t.element_size()


class _ByteCounter(TorchDispatchMode):
    """Per aten operator: calls, bytes read (tensor inputs), bytes written (tensor outputs). Views and the
    operators that only re-label a tensor move nothing and are left out."""

    FREE = {"detach", "alias", "view", "_unsafe_view", "lift_fresh", "set_", "empty", "empty_like",
            "empty_strided", "new_empty", "new_empty_strided", "_to_copy_noop"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: dict[str, list[int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils._pytree import tree_leaves
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if func.is_view or name in self.FREE:
            return out
        read = sum(_tensor_bytes(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
        written = sum(_tensor_bytes(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        row = self.ops.setdefault(name, [0, 0, 0])
        row[0] += 1
        row[1] += read
        row[2] += written
        return out


def bytes_per_step(step: Callable[[], None]) -> dict[str, list[int]]:
    """{aten operator: [calls, bytes read, bytes written]} of one eager step."""
    with _ByteCounter() as counter:
        step()
    return counter.ops


def bytes_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """--bytes: one row per (method, amp, S): the bytes one step moves, operator by operator."""
    rows = []
    for method in [m for m in args.methods if m in REPLICA_METHODS]:
        for amp in args.amp:
            for S in args.replicas or [1]:
                torch.manual_seed(0)
                if S == 1:
                    step, _ = make_step(method, "nb201", args.C, args.N, args.batch[0], device, True, amp)
                else:
                    step = make_replica_step(method, "nb201", args.C, args.N, args.batch[0], device, amp, S)
                step()  # the optimisers' state exists from the second step on, as in a search
                ops = bytes_per_step(step)
                read, written = sum(r[1] for r in ops.values()), sum(r[2] for r in ops.values())
                row = {"space": "nb201", "method": method, "replicas": S, "amp": amp, "batch": args.batch[0],
                       "C": args.C, "N": args.N, "bytes_read": read, "bytes_written": written,
                       "bytes_per_search_step": (read + written) / S,
                       "gb_per_search": (read + written) / S * NB201_STEPS_PER_SEARCH / 1e9,
                       "ops": {k: v for k, v in sorted(ops.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))}}
                rows.append(row)
                print(_fmt_bytes(row, args.top), flush=True)
                if args.compile and S > 1:
                    rows.append(compiled_bytes(method, args, device, amp, S, row))
    return rows


def _fmt_bytes(r: dict, top: int) -> str:
    total = r["bytes_read"] + r["bytes_written"]
    lines = [f"nb201 {r['method']} S={r['replicas']} {r['amp']} b={r['batch']} C={r['C']} N={r['N']}: one step "
             f"reads {r['bytes_read'] / 1e9:.3f} GB, writes {r['bytes_written'] / 1e9:.3f} GB = "
             f"{r['bytes_per_search_step'] / 1e6:.0f} MB per search-step, {r['gb_per_search']:.0f} GB per "
             f"50-epoch search ({NB201_STEPS_PER_SEARCH} steps)"]
    for name, (calls, rd, wr) in list(r["ops"].items())[:top]:
        lines.append(f"    {name:32} {calls:6} calls  read {rd / 1e6:9.1f} MB  written {wr / 1e6:9.1f} MB  "
                     f"{100 * (rd + wr) / total:5.1f}%")
    return "\n".join(lines)


def compiled_bytes(method: str, args: argparse.Namespace, device: torch.device, amp: str, S: int,
                   eager: dict) -> dict:
    """The fusion route: the batched step with its vmapped forward under torch.compile (inductor). Its
    compile time (the first step's time less the eager first step's); the replicas' w and α after two steps
    against the eager step's from the same state (rtol 1e-3, atol 1e-4: fp32 reassociation, grown through two
    SGD/Adam updates and batch-statistics BN; the largest difference is in the row); and the
    bytes inductor's generated kernels read and write per call of each compiled graph
    (`torch._inductor.metrics.num_bytes_accessed`, which inductor counts for its GPU kernels only: None on
    a CPU). The dispatch-mode count cannot see inside compiled code, so it is not taken here."""
    import torch._dynamo
    from torch._inductor import metrics
    results = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        torch._dynamo.reset()
        metrics.reset()
        step, model = make_replica_step(method, "nb201", args.C, args.N, args.batch[0], device, amp, S,
                                        compile_forward=compiled, return_model=True)
        t0 = time.perf_counter()
        step()
        _sync(device)
        first = time.perf_counter() - t0
        step()
        _sync(device)
        results[compiled] = {"first_step_s": first, "model": model, "inductor_bytes": metrics.num_bytes_accessed}
    worst, ok = 0.0, True
    pairs = [(results[False]["model"].params[n], results[True]["model"].params[n]) for n in results[False]["model"].params]
    pairs += list(zip(results[False]["model"].arch_parameters(), results[True]["model"].arch_parameters()))
    for a, b in pairs:
        a, b = a.detach(), b.detach()
        ok &= torch.allclose(a, b, rtol=1e-3, atol=1e-4)
        worst = max(worst, float((a - b).abs().max()))
    inductor = results[True]["inductor_bytes"] if device.type == "cuda" else None
    row = {"space": "nb201", "method": method, "replicas": S, "amp": amp, "batch": args.batch[0], "C": args.C,
           "N": args.N, "route": "torch.compile(vmapped forward)", "compile_s": results[True]["first_step_s"]
           - results[False]["first_step_s"], "equivalent": ok, "tolerance": "rtol 1e-3, atol 1e-4 after 2 steps",
           "max_abs_diff": worst, "inductor_bytes_per_graph_call": inductor,
           "eager_bytes_per_step": eager["bytes_read"] + eager["bytes_written"]}
    print(f"  fusion route {row['route']}: compile {row['compile_s']:.0f} s; "
          f"{'equivalent' if ok else 'NOT equivalent'} ({row['tolerance']}; max |Δ| {worst:.2e}); bytes per step "
          f"eager {row['eager_bytes_per_step'] / 1e9:.3f} GB, inductor's kernels "
          + (f"{inductor / 1e9:.3f} GB per call of each graph" if inductor is not None else "not counted on a CPU"),
          flush=True)
    return row


def ops_per_step(step: Callable[[], None], views: bool = False) -> int | tuple[int, int]:
    """aten operators one eager step dispatches: the host's work per step, the same on every device
    (`views`: also how many of them are views, which launch no kernel)."""
    with _OpCounter() as counter:
        step()
    return (counter.n, counter.views) if views else counter.n


def bench(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    rows = []
    configs = []
    for space in args.spaces:
        N = args.N if space == "nb201" else args.darts_cells
        batches = args.batch if space == "nb201" else [64]
        for batch in batches:
            configs.append((space, N, batch))
    for space, N, batch in configs:
        for method in args.methods:
            for fast in args.paths:
                for amp in args.amp:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    torch.manual_seed(0)
                    step, _ = make_step(method, space, args.C, N, batch, device, fast == "fast", amp, args.compile,
                                        args.cuda_graphs)
                    times = time_step(step, device, args.warmup, args.iters)
                    med = statistics.median(times)
                    act = saved_activation_bytes(step) if args.activations and not args.cuda_graphs else None
                    ops, views = ops_per_step(step, views=True) if args.activations and not args.cuda_graphs else (None, None)
                    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                    path = fast + ("+graph" if args.cuda_graphs and method != "gdas" else "")
                    rows.append({"space": space, "method": method, "path": path, "amp": amp, "batch": batch,
                                 "C": args.C, "N": N, "step_s": med, "images_per_s": 2 * batch / med,
                                 "nb201_search_min": med * 50 * (25000 // batch) / 60 if space == "nb201" else None,
                                 "peak_mem_mb": peak / 2**20, "activation_mb": act / 2**20 if act else None,
                                 "aten_ops": ops,
                                 "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
                                 f"cpu x{torch.get_num_threads()} threads"})
                    print(_fmt(rows[-1]), flush=True)
        if space == "nb201" and args.reference:
            ref = reference_step(args.C, N, batch, device)
            if ref is not None:
                med = statistics.median(time_step(ref, device, args.warmup, args.iters))
                ops = ops_per_step(ref) if args.activations else None
                ours = [r for r in rows if r["space"] == "nb201" and r["batch"] == batch and r["method"] == "darts-v1"
                        and r["amp"] == "none"]
                rows.append({"space": space, "method": "reference xautodl DARTS-V1", "path": "reference",
                             "amp": "none", "batch": batch, "C": args.C, "N": N, "step_s": med,
                             "images_per_s": 2 * batch / med, "aten_ops": ops,
                             "speedup_vs_reference": {r["path"]: med / r["step_s"] for r in ours}})
                print(_fmt(rows[-1]), "speed-up of ours:",
                      {k: f"{v:.2f}x" for k, v in rows[-1]["speedup_vs_reference"].items()}, flush=True)
            else:
                print("(reference xautodl not installed: pip install --no-deps xautodl to compare)")
    return rows


def _fmt(r: dict) -> str:
    act = f"{r['activation_mb']:8.1f}" if r.get("activation_mb") else "       -"
    peak = f"{r['peak_mem_mb']:8.0f}" if r.get("peak_mem_mb") else "       -"
    search = f"{r['nb201_search_min']:7.1f}" if r.get("nb201_search_min") else "      -"
    return (f"{r['space']:6} {r['method']:26} {r['path']:10} {r['amp']:5} b={r['batch']:<4} "
            f"{1000 * r['step_s']:9.1f} ms/step {r['images_per_s']:9.0f} img/s  search {search} min  "
            f"peak {peak} MB  act {act} MB  ops {r.get('aten_ops') or '-'}")


def concurrent(args: argparse.Namespace) -> list[dict]:
    """Run N copies of this benchmark (one config) at once; report aggregate searches per GPU-hour."""
    procs = []
    t0 = time.perf_counter()
    for i in range(args.concurrent):
        out = Path(args.json or "bench").with_suffix(f".child{i}.json")
        cmd = [sys.executable, __file__, "--device", args.device, "--spaces", args.spaces[0], "--methods",
               args.methods[0], "--paths", args.paths[0], "--amp", args.amp[0], "--batch", str(args.batch[0]),
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--no-reference", "--no-activations",
               "--json", str(out)] + (["--cuda-graphs"] if args.cuda_graphs else [])
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL), out))
    rows = []
    for p, out in procs:
        p.wait()
        rows += json.loads(out.read_text())["rows"]
        out.unlink()
    wall = time.perf_counter() - t0
    steps = [r["step_s"] for r in rows]
    per_hour = 3600 * len(steps) / (statistics.mean(steps) * NB201_STEPS_PER_SEARCH)
    summary = {"concurrent": args.concurrent, "median_step_s_each": statistics.median(steps),
               "nb201_searches_per_hour": per_hour, "wall_s": wall}
    print(f"{args.concurrent} concurrent: median {1000 * summary['median_step_s_each']:.1f} ms/step each "
          f"-> {per_hour:.1f} NB201 50-epoch searches (batch 64, {NB201_STEPS_PER_SEARCH} steps) per GPU-hour")
    return [summary]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--spaces", nargs="+", default=["nb201"], choices=["nb201", "darts"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--paths", nargs="+", default=["reference", "fast"], choices=["reference", "fast"])
    p.add_argument("--amp", nargs="+", default=["none"], choices=["none", "bf16"])
    p.add_argument("--batch", nargs="+", type=int, default=[64])
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=5)
    p.add_argument("--darts-cells", type=int, default=8)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the supernet (with --replicas or --bytes: "
                   "the batched step's vmapped forward, the fusion route)")
    p.add_argument("--cuda-graphs", action="store_true", help="replay each step from a CUDA graph (CUDA only)")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--activations", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--concurrent", type=int, default=0, help="run N copies at once (first config only)")
    p.add_argument("--replicas", nargs="+", type=int, default=None,
                   help="batched replicas S (--seeds): rows per S for darts-v1/v2, gdas, pc-k4 on NB201 (first --batch)")
    p.add_argument("--compare-sequential", action="store_true",
                   help="with --replicas: also time S single steps one after the other (ratio in the row)")
    p.add_argument("--bytes", action="store_true", help="bytes read and written per step, operator by operator "
                   "(single run; with --replicas the batched step too; with --compile the fusion route)")
    p.add_argument("--top", type=int, default=12, help="with --bytes: operators listed per row")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.exit(2, "error: --device cuda but torch sees no GPU\n")
    if args.cuda_graphs and not args.device.startswith("cuda"):
        p.exit(2, "error: --cuda-graphs needs --device cuda\n")
    if args.bytes:
        rows = bytes_rows(args, torch.device(args.device))
    elif args.replicas:
        rows = replica_rows(args, torch.device(args.device))
    else:
        rows = concurrent(args) if args.concurrent else bench(args)
    if args.json:
        _write_json(args, rows)


if __name__ == "__main__":
    main()
