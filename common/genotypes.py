"""Genotype derivation (DERIVE) and the evaluation-size network of a DARTS-space genotype.

NB201: argmax per edge over all 5 ops, `none` included (NB201 protocol) → official arch string.
DARTS skeleton (DARTS, S1–S4): for every intermediate node keep the 2 incoming edges with the largest
non-`none` weight (times γ when PC-DARTS edge normalisation is on), each with its argmax non-`none` op.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from common.nb201 import derive_arch_str
from common.spaces import SearchSpace


class Genotype(NamedTuple):
    """A DARTS-skeleton cell pair: (op, input node) twice per intermediate node."""

    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]


DARTS_V2 = Genotype(  # Liu et al. 2019, as published; used to check `genotype_param_count`.
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)


def derive_cell(weights: Tensor, edge_ops: tuple[tuple[str, ...], ...], edges: tuple[tuple[int, int], ...],
                gamma: Tensor | None = None) -> list[tuple[str, int]]:
    """Top-2 incoming edges per node by their best non-`none` weight; the argmax non-`none` op of each.

    Args:
        weights: (E, M) op weights (α or softmax(α): the ranking within an edge is the same; across
            edges DARTS ranks softmax(α), so pass weights, not raw α).
        edge_ops: op names per edge.
        edges: (to, from) per edge.
        gamma: optional (E,) PC-DARTS edge weights; the ranking uses weights·γ.
    """
    w = weights.detach().float().cpu()
    if gamma is not None:
        w = w * gamma.detach().float().cpu()[:, None]
    cell: list[tuple[str, int]] = []
    for node in sorted({to for to, _ in edges}):
        cands = []
        for e, (to, src) in enumerate(edges):
            if to != node:
                continue
            allowed = [o for o, name in enumerate(edge_ops[e]) if name != "none"]
            best = max(allowed, key=lambda o: w[e, o].item())
            cands.append((w[e, best].item(), src, edge_ops[e][best]))
        cands.sort(key=lambda c: -c[0])
        cell += [(op, src) for _, src, op in sorted(cands[:2], key=lambda c: c[1])]
    return cell


def derive_genotype(weights: Mapping[str, Tensor], space: SearchSpace,
                    gammas: Mapping[str, Tensor] | None = None, exclude_none: bool = False) -> str | Genotype:
    """The discrete architecture: an NB201 arch string, or a `Genotype` on the DARTS skeleton."""
    gammas = gammas or {}
    if space.skeleton == "nb201":
        w = weights["normal"]
        if "normal" in gammas:  # PC on NB201: scaling an edge by γ > 0 leaves its argmax unchanged
            w = w * gammas["normal"][:, None]
        return derive_arch_str(w, exclude_none=exclude_none)
    cells = {k: derive_cell(weights[k], space.edge_ops[k], space.edges, gammas.get(k))
             for k in ("normal", "reduce")}
    return Genotype(cells["normal"], [2, 3, 4, 5], cells["reduce"], [2, 3, 4, 5])


def genotype_param_count(genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10) -> int:
    """Parameters of the derived network at evaluation size (DARTS: 20 cells, C=36, CIFAR-10), auxiliary
    head excluded; the network is `common.evalnet.EvalNetwork`."""
    from common.evalnet import EvalNetwork  # evalnet imports this module
    return EvalNetwork(genotype, C, layers, num_classes).param_count()


def genotype_weights(genotype: str | Genotype, space: SearchSpace,
                     device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """One-hot (E, M) op weights of a derived cell; edges the genotype drops get all-zero rows."""
    if isinstance(genotype, str):
        from common.nb201 import arch_str_to_onehot
        return {"normal": arch_str_to_onehot(genotype).to(device)}
    out = {}
    for kind, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        E, M = space.alpha_shape(kind)
        w = torch.zeros(E, M)
        for i, (op, src) in enumerate(cell):
            node = 2 + i // 2
            e = space.edges.index((node, src))
            w[e, space.edge_ops[kind][e].index(op)] = 1.0
        out[kind] = w.to(device)
    return out


def genotype_to_json(g: str | Genotype) -> str | dict:
    return g if isinstance(g, str) else g._asdict()
