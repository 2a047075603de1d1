"""A faster supernet forward with the reference supernet's parameters and math.

`FastSupernet` is a `Supernet` (same modules, same `state_dict`, interchangeable checkpoints) whose
forward avoids work that the reference readable forward does:

- no work for `none`: w_none · 0 adds nothing to the output, and ∂L/∂w_none = ⟨∂L/∂out, 0⟩ = 0, so
  skipping it leaves outputs and gradients unchanged;
- NB201 cells: per source node, one ReLU, one avg-pool, and the 1×1 and 3×3 convs of all edges leaving
  that node in one conv call each (their weights concatenated along the output channels; BN without
  affine and with batch statistics is per channel, so one BN over the concatenation is the same);
- NB201 cells: the α rows gathered once per cell (ordered by source node) and each node's mixing
  weights unbound in one op, not indexed per edge and op; mixed ops likewise unbind α once. (Mixing
  all out-edges of a node in one broadcast over (B, n_out, C, H, W) saves 10% more operators but
  made the channels_last CPU step 1.5× slower.) Dispatched operators are what a small supernet's
  eager GPU step waits on; the benchmark's `ops` column counts them: 7,552 per NB201 DARTS-V1 step
  against 10,493 for the reference supernet;
- the 3×3 average pool (stride 1, pad 1, padding not counted) as a depthwise conv with a ones kernel
  times the precomputed 1/count map: the same average, ~6× faster than `avg_pool2d` on CPU.

`tests/test_supernet.py` checks outputs and gradients (w and α) against the reference in float64 for
every space, with and without partial channels. GDAS hard sampling uses the reference edge code
(already one op per edge), in the supernet's `gdas_form`; on the DARTS skeleton the `none` skipping and
the unbind apply. A GDAS sample given as one-hots m (a replica's, under --seeds' vmap) runs the NB201 fast
cell with weights m·w, plus Σ (1 − m)·w per edge in the nb201 form (`common.replicas.masked_mix`).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from common.ops import channel_shuffle
from common.spaces import NB201_OP_NAMES
from common.supernet import ALPHA_INIT_STD, MixedOp, NB201Cell, Supernet

_BN_EPS = 1e-5


def _bn(x: Tensor) -> Tensor:
    """BatchNorm2d(affine=False, track_running_stats=False) in training: batch statistics."""
    return F.batch_norm(x, None, None, None, None, True, 0.0, _BN_EPS)


_POOL_CACHE: dict[tuple, tuple[Tensor, Tensor]] = {}


def avg_pool3x3(x: Tensor) -> Tensor:
    """`F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)` as depthwise 3×3 box sum × 1/count."""
    B, C, H, W = x.shape
    key = (C, H, W, x.dtype, x.device)
    if key not in _POOL_CACHE:
        ones = torch.ones(1, 1, H, W, dtype=x.dtype, device=x.device)
        count = F.conv2d(ones, torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device), padding=1)
        _POOL_CACHE[key] = (torch.ones(C, 1, 3, 3, dtype=x.dtype, device=x.device), 1.0 / count)
    kernel, inv_count = _POOL_CACHE[key]
    return F.conv2d(x, kernel, padding=1, groups=C) * inv_count


class _SkipNoneMix:
    """Σ_o w_o·o(x) over the non-`none` ops (MixedOp.mix with no work for `none`)."""

    @staticmethod
    def mix(self: MixedOp, x: Tensor, w: Tensor, index: int | None) -> Tensor:
        if index is not None:
            return MixedOp.mix(self, x, w, index)
        w_o = w.unbind(0)  # one op (and one stack in backward) instead of a select per op
        return sum(w_o[o] * op(x) for o, (name, op) in enumerate(zip(self.op_names, self.ops)) if name != "none")


def _nb201_fast_forward(cell: NB201Cell, x: Tensor, w: Tensor, gamma: Tensor | None,
                        index: list[int] | Tensor | None) -> Tensor:
    if index is not None and not torch.is_tensor(index):
        return NB201Cell.forward(cell, x, w, gamma, index)
    shift: tuple[Tensor, ...] | None = None
    if index is not None:  # --seeds GDAS: one replica's one-hots m (E, M), every op runs (replicas.masked_mix)
        if cell.mixed[0].gdas_form == "nb201":  # edge = Σ m_o w_o o(h) + Σ (1 − m_o) w_o
            shift = ((1 - index) * w).sum(-1).unbind(0)
        w = index * w  # nasnet: edge = Σ m_o w_o o(h)
    K = cell.mixed[0].K
    nodes: list[Tensor | float] = [x, 0.0, 0.0, 0.0]
    w_by_src, first = w.index_select(0, cell.edges_by_src), 0  # one gather instead of 4 selects per edge
    for src in range(3):
        h = nodes[src]
        h_op = h[:, : h.shape[1] // K] if K > 1 else h  # PC-DARTS: the ops see 1/K of the channels
        out_edges = [e for e, (_, s) in enumerate(cell.edges) if s == src]
        r = F.relu(h_op)
        c1 = [cell.mixed[e].ops[2][1].weight for e in out_edges]  # nor_conv_1x1: ReLU→Conv→BN
        c3 = [cell.mixed[e].ops[3][1].weight for e in out_edges]  # nor_conv_3x3
        y1 = _bn(F.conv2d(r, torch.cat(c1)))  # (B, n_out·C, H, W)
        y3 = _bn(F.conv2d(r, torch.cat(c3), padding=1))
        pool = avg_pool3x3(h_op)
        # edge(src→to) = w_skip·h + w_1x1·conv1x1(h) + w_3x3·conv3x3(h) + w_pool·pool(h)  (w_none·0 dropped)
        n = len(out_edges)
        we = w_by_src[first: first + n]  # the rows of src's out-edges, in `out_edges` order
        first += n
        s = we[:, 1:].reshape(-1).unbind(0)  # (w_skip, w_1x1, w_3x3, w_pool) of each out-edge: one op
        y1, y3 = y1.chunk(n, dim=1), y3.chunk(n, dim=1)
        for i, e in enumerate(out_edges):
            out = s[4 * i] * h_op + s[4 * i + 1] * y1[i] + s[4 * i + 2] * y3[i] + s[4 * i + 3] * pool
            if shift is not None:
                out = out + shift[e]
            if K > 1:  # the untouched channels pass through; shuffle as in MixedOp
                out = channel_shuffle(torch.cat([out, h[:, h_op.shape[1]:]], dim=1), K)
            to = cell.edges[e][0]
            nodes[to] = nodes[to] + (out if gamma is None else gamma[e] * out)
    return nodes[3]


class FastSupernet(Supernet):
    """`Supernet` with the fast forward described in the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for module in self.modules():
            if isinstance(module, MixedOp):
                module.mix = _SkipNoneMix.mix.__get__(module)  # type: ignore[method-assign]
            if isinstance(module, NB201Cell) and all(ops == NB201_OP_NAMES for ops in self.space.edge_ops["normal"]):
                module.forward = _nb201_fast_forward.__get__(module)  # type: ignore[method-assign]
                by_src = sorted(range(len(module.edges)), key=lambda e: module.edges[e][1])  # stable: edge order
                module.register_buffer("edges_by_src", torch.tensor(by_src), persistent=False)


def build_supernet(space: str, C: int, N: int, num_classes: int, partial_channels: int = 1,
                   edge_norm: bool | None = None, fast: bool = False, alpha_init_std: float = ALPHA_INIT_STD,
                   alpha_init_mean: float = 0.0, gdas_form: str | None = None) -> Supernet:
    """The supernet of `space` (a name in `common.spaces.SPACES`); `fast` picks `FastSupernet`."""
    cls = FastSupernet if fast else Supernet
    return cls(space, C=C, N=N, num_classes=num_classes, partial_channels=partial_channels, edge_norm=edge_norm,
               alpha_init_std=alpha_init_std, alpha_init_mean=alpha_init_mean, gdas_form=gdas_form)
