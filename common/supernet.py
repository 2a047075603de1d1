"""The weight-sharing supernet. It takes its op weights from outside: `model(x, weights)`.

The method decides how α becomes op weights (softmax, tempered softmax, a custom autograd Function,
Gumbel samples, one-hot) — the supernet only mixes:

    mixed_op(x) = Σ_o w_o · o(x)                       (DARTS Eq. 2)

GDAS hard sampling (an `index` of sampled ops o*, straight-through one-hot weights w) runs only o*, in one
of the official GDAS code's two forms (`gdas_form`, `common.spaces.GDAS_FORMS`; xautodl 1.0.0
models/cell_searchs/search_cells.py):

    nb201:   w_o*·o*(x) + Σ_{o≠o*} w_o     (lines 72-84: every w_o gets a gradient, Σ ∂L/∂out)
    nasnet:  w_o*·o*(x)                    (lines 163-164: α's gradient flows through w_o* alone)

equal in value (the other w_o are 0). The default is the official code's form for the skeleton: nb201 on
the NB201 skeleton (NAS201SearchCell), nasnet on the DARTS skeleton (NASNetSearchCell, lines 220-232,
search_model_gdas_nasnet.py).

α are registered parameters (`model.alphas`, an `nn.ParameterDict` keyed by cell kind, each (E, M)),
kept apart from the network weights (`model.weight_parameters()`), so `state_dict()` holds both.

Partial channels with edge normalisation (PC-DARTS, Xu et al. 2020) is an option: each mixed op
sees 1/K of the channels (the rest pass through, max-pooled on reduction edges), the result is
channel-shuffled, and every edge output is scaled by γ, softmaxed over the edges entering a node.
γ (`model.betas`, (E,) per cell kind) is part of the architecture parameters.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common.ops import NB201_OPS, FactorizedReduce, ReLUConvBN, batch_norm, channel_shuffle, darts_ops
from common.spaces import GDAS_FORM_OF_SKELETON, GDAS_FORMS, SearchSpace, get_space

ALPHA_INIT_STD = 1e-3  # α ~ 1e-3·N(0, 1) (DARTS, NB201)
Weights = Mapping[str, Tensor]  # cell kind -> (E, M) op weights
Index = Mapping[str, list[int] | Tensor]  # cell kind -> sampled op per edge (GDAS hard sampling); --seeds:
# one replica's one-hots (E, M) under vmap, run by the masked mix of common.replicas.masked_mix


class MixedOp(nn.Module):
    """Σ_o w_o·o(x) over one edge's candidate ops, optionally on 1/K of the channels (PC-DARTS)."""

    def __init__(self, op_names: tuple[str, ...], C: int, stride: int, factories: dict,
                 partial_channels: int = 1) -> None:
        super().__init__()
        if C % partial_channels:
            raise ValueError(f"channels {C} not divisible by --partial-channels {partial_channels}")
        self.K = partial_channels
        self.stride = stride
        self.op_names = op_names
        self.ops = nn.ModuleList(factories[name](C // partial_channels, stride, False, False)
                                 for name in op_names)
        self.pass_pool = nn.MaxPool2d(2, 2) if (partial_channels > 1 and stride == 2) else None
        self.gdas_form = "nb201"  # set by Supernet (module docstring)

    def mix(self, x: Tensor, w: Tensor, index: int | None) -> Tensor:
        if index is None:
            return sum(w_o * op(x) for w_o, op in zip(w, self.ops))  # DARTS Eq. 2
        # GDAS: only the sampled op runs, times its straight-through weight (value 1)
        if self.gdas_form == "nasnet":  # xautodl search_cells.py:164: the other w_o get no gradient
            return w[index] * self.ops[index](x)
        # nb201 (search_cells.py:81): the others add their (zero-valued) weight, so the straight-through
        # gradient reaches every entry of w
        return sum(w_o * op(x) if o == index else w_o for o, (w_o, op) in enumerate(zip(w, self.ops)))

    def forward(self, x: Tensor, w: Tensor, index: int | None = None) -> Tensor:  # w: (M,)
        if self.K == 1:
            return self.mix(x, w, index)
        c = x.shape[1] // self.K
        x_op, x_pass = x[:, :c], x[:, c:]
        if self.pass_pool is not None:
            x_pass = self.pass_pool(x_pass)
        return channel_shuffle(torch.cat([self.mix(x_op, w, index), x_pass], dim=1), self.K)


def incoming_edges(edges: tuple[tuple[int, int], ...]) -> Tensor:
    """(nodes, E) bool: row n marks the edges entering the n-th intermediate node."""
    nodes = sorted({to for to, _ in edges})
    return torch.tensor([[to == node for to, _ in edges] for node in nodes])


def edge_normalisation(beta: Tensor, edges: tuple[tuple[int, int], ...], incoming: Tensor | None = None) -> Tensor:
    """γ: softmax of β over the edges entering each node (PC-DARTS). (E,) → (E,).

    `incoming` is `incoming_edges(edges)` on β's device; the supernet keeps it as a buffer, so a step
    builds no tensor from Python data (a host→device copy, which CUDA-graph capture forbids).
    """
    incoming = incoming_edges(edges).to(beta.device) if incoming is None else incoming
    per_node = F.softmax(torch.where(incoming, beta, float("-inf")), dim=1)  # other nodes' edges → 0
    return per_node.sum(0)


def node_sum(mixed: nn.ModuleList, edges: tuple[tuple[int, int], ...], nodes: list[Tensor], node: int,
             w: Tensor, gamma: Tensor | None, index: list[int] | None) -> Tensor:
    """node = Σ_{edges i→node} [γ_e ·] mixed_e(node_i)   (the cell's DAG sum, DARTS Eq. 1)."""
    total: Tensor | float = 0.0
    for e, (to, src) in enumerate(edges):
        if to == node:
            out = mixed[e](nodes[src], w[e], None if index is None else index[e])
            total = total + (out if gamma is None else gamma[e] * out)
    return total  # type: ignore[return-value]


class NB201Cell(nn.Module):
    """NB201 search cell: node j = Σ_{i<j} edge(i→j)(node i), 4 nodes, 6 edges; output = node 3."""

    def __init__(self, space: SearchSpace, C: int, partial_channels: int = 1) -> None:
        super().__init__()
        self.edges = space.edges
        self.mixed = nn.ModuleList(MixedOp(ops, C, 1, NB201_OPS, partial_channels)
                                   for ops in space.edge_ops["normal"])

    def forward(self, x: Tensor, w: Tensor, gamma: Tensor | None, index: list[int] | None) -> Tensor:
        nodes = [x]
        for node in range(1, 4):
            nodes.append(node_sum(self.mixed, self.edges, nodes, node, w, gamma, index))
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """NB201's stride-2 residual block between stages."""

    def __init__(self, C_in: int, C_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class DartsCell(nn.Module):
    """DARTS search cell: 2 inputs, 4 intermediate nodes (each Σ over all earlier nodes), 14 edges."""

    def __init__(self, space: SearchSpace, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, partial_channels: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.kind = "reduce" if reduction else "normal"
        self.edges = space.edges
        self.pre0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0)
        factories = darts_ops(bn_after_pool=True)
        self.mixed = nn.ModuleList(
            MixedOp(ops, C, 2 if (reduction and src < 2) else 1, factories, partial_channels)
            for ops, (_, src) in zip(space.edge_ops[self.kind], self.edges))

    def forward(self, s0: Tensor, s1: Tensor, w: Tensor, gamma: Tensor | None,
                index: list[int] | None) -> Tensor:
        nodes = [self.pre0(s0), self.pre1(s1)]
        for node in range(2, 6):
            nodes.append(node_sum(self.mixed, self.edges, nodes, node, w, gamma, index))
        return torch.cat(nodes[2:], dim=1)


class Supernet(nn.Module):
    """Weight-sharing supernet over a search space.

    Args:
        space: a `SearchSpace` or its name.
        C: initial channels (NB201 default 16; DARTS 16).
        N: NB201: cells per stage (default 5); DARTS skeleton: total cells (default 8).
        num_classes: classifier outputs.
        partial_channels: K of PC-DARTS (1 = off).
        edge_norm: PC-DARTS edge normalisation γ; default on iff K > 1.
        alpha_init_std: α ~ alpha_init_mean + alpha_init_std · N(0, 1) (1e-3, DARTS/NB201).
        alpha_init_mean: α's init offset (0; SA-DARTS Table 8 uses negative ones).
        gdas_form: GDAS's edge forward with a hard sample, "nb201" or "nasnet" (module docstring); default
            None: the official code's form for the skeleton (`common.spaces.GDAS_FORM_OF_SKELETON`).
    """

    def __init__(self, space: SearchSpace | str, C: int = 16, N: int = 5, num_classes: int = 10,
                 partial_channels: int = 1, edge_norm: bool | None = None,
                 alpha_init_std: float = ALPHA_INIT_STD, in_channels: int = 3,
                 alpha_init_mean: float = 0.0, gdas_form: str | None = None) -> None:
        super().__init__()
        self.space = get_space(space) if isinstance(space, str) else space
        self.gdas_form = gdas_form or GDAS_FORM_OF_SKELETON[self.space.skeleton]
        if self.gdas_form not in GDAS_FORMS:
            raise ValueError(f"gdas_form {self.gdas_form!r}: not one of {', '.join(GDAS_FORMS)}")
        self.partial_channels = partial_channels
        self.edge_norm = partial_channels > 1 if edge_norm is None else edge_norm
        if self.space.skeleton == "nb201":
            self._build_nb201(C, N, num_classes, partial_channels, in_channels)
        else:
            self._build_darts(C, N, num_classes, partial_channels, in_channels)
        self.alphas = nn.ParameterDict({
            kind: nn.Parameter(alpha_init_mean + alpha_init_std * torch.randn(*self.space.alpha_shape(kind)))
            for kind in self.space.cell_kinds})
        self.betas = nn.ParameterDict({
            kind: nn.Parameter(torch.zeros(len(self.space.edges)))
            for kind in self.space.cell_kinds} if self.edge_norm else {})
        self.register_buffer("incoming", incoming_edges(self.space.edges), persistent=False)
        for module in self.modules():
            if isinstance(module, MixedOp):
                module.gdas_form = self.gdas_form

    def _build_nb201(self, C: int, N: int, num_classes: int, K: int, in_channels: int) -> None:
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False),
                                  batch_norm(C, True, False))
        layers: list[nn.Module] = []
        C_prev = C
        for stage, C_stage in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResNetBasicBlock(C_prev, C_stage))
            layers += [NB201Cell(self.space, C_stage, K) for _ in range(N)]
            C_prev = C_stage
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(batch_norm(C_prev, True, False), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(C_prev, num_classes)

    def _build_darts(self, C: int, N: int, num_classes: int, K: int, in_channels: int) -> None:
        stem_mult = 3
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_mult * C, 3, padding=1, bias=False),
                                  batch_norm(stem_mult * C, True, False))
        C_pp, C_p, C_cur = stem_mult * C, stem_mult * C, C
        cells: list[nn.Module] = []
        reduction_prev = False
        for i in range(N):
            reduction = i in (N // 3, 2 * N // 3)
            if reduction:
                C_cur *= 2
            cells.append(DartsCell(self.space, C_pp, C_p, C_cur, reduction, reduction_prev, K))
            reduction_prev = reduction
            C_pp, C_p = C_p, 4 * C_cur
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Identity()
        self.classifier = nn.Linear(C_p, num_classes)

    def arch_parameters(self) -> list[nn.Parameter]:
        """α (and PC-DARTS's edge-normalisation β) — what the α optimiser updates."""
        return list(self.alphas.values()) + list(self.betas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network weights w (everything but the architecture parameters)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def edge_gammas(self) -> dict[str, Tensor]:
        """γ per cell kind, (E,), softmaxed over each node's incoming edges; empty without edge norm."""
        return {k: edge_normalisation(b, self.space.edges, self.incoming) for k, b in self.betas.items()}

    def forward(self, x: Tensor, weights: Weights, index: Index | None = None,
                use_gammas: bool = True) -> Tensor:
        """Logits for images `x` (B, 3, H, W) under op weights `weights[kind]` (E, M).

        `index[kind][e]`, if given, is the one op that runs on edge e (GDAS hard sampling, in the form
        `self.gdas_form`).
        `use_gammas=False` drops the edge normalisation (the discretized net has no edge weights).
        """
        gammas = self.edge_gammas() if use_gammas else {}
        idx = index or {}
        if self.space.skeleton == "nb201":
            h = self.stem(x)
            for cell in self.cells:
                if isinstance(cell, NB201Cell):
                    h = cell(h, weights["normal"], gammas.get("normal"), idx.get("normal"))
                else:
                    h = cell(h)
            h = self.lastact(h)
        else:
            s0 = s1 = self.stem(x)
            for cell in self.cells:
                s0, s1 = s1, cell(s0, s1, weights[cell.kind], gammas.get(cell.kind), idx.get(cell.kind))
            h = s1
        return self.classifier(F.adaptive_avg_pool2d(h, 1).flatten(1))
