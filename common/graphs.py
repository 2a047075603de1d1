"""CUDA-graph replay of whole search steps: the fast path for a small, host-bound supernet.

A 50-epoch NB201 search is ~19,500 bilevel steps of a supernet made of thousands of tiny kernels. On
an H100 the eager step is bound by the CPU issuing them (issue #8's profile: 23 ms of GPU work against
111 ms of host time per forward + backward). A CUDA graph records the kernels of one whole step (both
forwards and backwards, the gradient clipping, both optimiser updates) once, and replays them with
one launch.

    graphs = StepGraphs(enabled=True)
    for epoch in ...:
        graphs.reset()                                    # new epoch: new lr, temperature, λ
        for x_t, y_t, x_v, y_v in batches:
            outs = graphs(key, bilevel, x_t, y_t, x_v, y_v)   # eager, or replay of the captured step

What capture freezes, and how the searches keep it right:
- Python numbers the step reads (the w learning rate, temperatures, λ) are baked in at capture. The
  scripts change them only between epochs, and `SearchRun.epochs()` calls `reset()` at every epoch
  start. A Python value that changes within an epoch must be part of the key (SP's φ: one graph for
  the sparse and one for the smooth branch).
- Inputs are copied into the graph's static buffers before each replay; outputs come back as copies.
- Random numbers: the default CUDA generator is graph-safe by itself; any other generator the step
  draws from (SNAS's Gumbel stream) is registered with every graph (`register_generator`), so every
  replay draws new numbers and the generator's position (checkpointed) advances as in eager mode.
- Nothing inside the step may copy a value to the host (`.item()`, `if tensor:`, `nonzero`, boolean
  masks …) or build a tensor from Python data (`torch.tensor(...)`, indexing with a list: a host→device
  copy): capture fails on it. tests/test_graphs.py runs every method's step on CPU with all of these made
  to raise, and with draws from unregistered generators made to raise too.
- Adam must be `capturable=True` (its step count lives on the device); `SearchRun` sets it.
- Host-side, data-dependent control flow cannot be captured: GDAS runs only the op sampled on each
  edge, chosen on the host, so GDAS backbones run eagerly (`capture=False`); under --seeds the replicas'
  samples are one-hots on the device (every op runs, masked: common/replicas.py), which is captured.

The first `warmup` calls of each key in an epoch run eagerly on a side stream (lazy optimiser state
and library handles are created there, as capture requires); then the step is captured and replayed.
Each graph keeps a private memory pool of about one step's activations until `reset()`.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor


class StepGraphs:
    """Runs `fn(*inputs)` eagerly, or once captured per key as a CUDA graph and replayed.

    Args:
        enabled: capture and replay (needs CUDA); False: every call is a plain `fn(*inputs)`.
        warmup: eager calls of each key after a `reset()` before it is captured (≥ 1).
    """

    def __init__(self, enabled: bool = False, warmup: int = 2) -> None:
        if enabled and not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device; torch sees none")
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (got {warmup})")
        self.enabled, self.warmup = enabled, warmup
        self.generators: list[torch.Generator] = []
        self.captures = 0  # graphs captured so far (all epochs): a figure for logs and tests
        self._graphs: dict[Hashable, tuple[Any, tuple[Tensor, ...], Any]] = {}
        self._calls: dict[Hashable, int] = {}
        self._stream: torch.cuda.Stream | None = None

    def register_generator(self, generator: torch.Generator) -> None:
        """A non-default CUDA generator the step draws from (registered with every graph captured later)."""
        self.generators.append(generator)

    def reset(self) -> None:
        """Drop every graph (and its memory pool): the Python values baked into them are about to change."""
        self._graphs.clear()
        self._calls.clear()

    def __call__(self, key: Hashable, fn: Callable[..., Any], *inputs: Tensor, capture: bool = True) -> Any:
        """`fn(*inputs)`: eagerly, or by replaying the graph captured for `key` with these inputs.

        `fn` must return a tensor, a tuple of tensors, or None; with graphs on, its outputs are copies.
        """
        if not (self.enabled and capture):
            return fn(*inputs)
        entry = self._graphs.get(key)
        if entry is None:
            calls = self._calls[key] = self._calls.get(key, 0) + 1
            if calls <= self.warmup:
                return self._eager_on_side_stream(fn, inputs)
            entry = self._graphs[key] = self._capture(fn, inputs)
        graph, static_inputs, static_outputs = entry
        for buffer, x in zip(static_inputs, inputs):
            buffer.copy_(x)
        graph.replay()
        return _clone(static_outputs)

    def _eager_on_side_stream(self, fn: Callable[..., Any], inputs: tuple[Tensor, ...]) -> Any:
        self._stream = self._stream or torch.cuda.Stream()
        self._stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self._stream):
            out = fn(*inputs)
        torch.cuda.current_stream().wait_stream(self._stream)
        return out

    def _capture(self, fn: Callable[..., Any], inputs: tuple[Tensor, ...]) -> tuple[Any, tuple[Tensor, ...], Any]:
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        static_inputs = tuple(x.clone() for x in inputs)
        torch.cuda.synchronize()
        # thread_local: the DataLoader's pin-memory thread (TorchLoader on CUDA) may allocate pinned host
        # memory while this thread captures; in the default "global" mode that would break the capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # records, runs nothing: the
            static_outputs = fn(*static_inputs)                          # caller's replay does the work
        self.captures += 1
        return graph, static_inputs, static_outputs


def _clone(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out.clone()
    if isinstance(out, tuple):
        return tuple(_clone(o) for o in out)
    return out
