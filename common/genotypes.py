"""Genotype derivation (DERIVE): the cell a search ends with, from its op weights; genotype one-hots.

NB201: argmax per edge over all 5 ops, `none` included (NB201 protocol) → official arch string.
DARTS skeleton (DARTS, S1–S4): for every intermediate node keep the 2 incoming edges with the largest
non-`none` weight (times γ when PC-DARTS edge normalisation is on), each with its argmax non-`none` op.

Derivation at the training temperature (`derive_from_alphas`): a search derives with the op weights it
trained with, softmax(α/T) (T = 1 for DARTS, the current t for EDD, t_sp for SP). Within an edge the
argmax does not depend on T; the ranking *across* edges does, so on the DARTS skeleton T matters. The
ranking is computed as log softmax(α/T) (+ log γ) in float64: the same order as softmax(α/T)·γ, without
float32 softmax's underflow to 0 at T ≈ 1e-3. On NB201 the argmax is taken of α itself, as the official
code does (`TinyNetworkDarts.genotype`): a float32 softmax rounds α entries within ~1e-8 of each other
to the same weight, and the first op wins. `--derive-decimals` with `--derive-ties` reproduces the
authors' rounded rankings (SP DARTS space: 4 decimals; EDD/PCD DARTS space and both forks' S1–S4: 3), in
which saturated edges round to 1.000 and the tie rule picks the inputs.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from common.nb201 import NB201_OPS, derive_arch_str
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
                gamma: Tensor | None = None, later_wins_ties: bool = False,
                later_op_wins_ties: bool = False) -> list[tuple[str, int]]:
    """Top-2 incoming edges per node by their best non-`none` weight; the argmax non-`none` op of each.

    Args:
        weights: (E, M) op weights or any increasing function of them applied entrywise, e.g. their log
            (`ranking_weights`); compared in float64. α itself ranks edges differently from softmax(α).
        edge_ops: op names per edge.
        edges: (to, from) per edge.
        gamma: optional (E,) PC-DARTS edge weights; the ranking uses weights·γ (not for log weights).
        later_wins_ties: edges of equal weight rank the later input first (default: the earlier one).
        later_op_wins_ties: within an edge the last of equal ops wins (default: the first).
    """
    w = weights.detach().double().cpu()
    if gamma is not None:
        w = w * gamma.detach().double().cpu()[:, None]
    cell: list[tuple[str, int]] = []
    for node in sorted({to for to, _ in edges}):
        cands = []
        for e, (to, src) in enumerate(edges):
            if to != node:
                continue
            allowed = [o for o, name in enumerate(edge_ops[e]) if name != "none"]
            best = max(allowed[::-1] if later_op_wins_ties else allowed, key=lambda o: w[e, o].item())
            cands.append((w[e, best].item(), src, edge_ops[e][best]))
        cands.sort(key=lambda c: (-c[0], -c[1] if later_wins_ties else c[1]))
        cell += [(op, src) for _, src, op in sorted(cands[:2], key=lambda c: c[1])]
    return cell


def nb201_columns(space: SearchSpace) -> list[int]:
    """Columns of NB201's 5-op list that an NB201-skeleton space's ops occupy (all 5 for `nb201`)."""
    return [NB201_OPS.index(op) for op in space.edge_ops["normal"][0]]


def derive_genotype(weights: Mapping[str, Tensor], space: SearchSpace,
                    gammas: Mapping[str, Tensor] | None = None, exclude_none: bool = False,
                    later_wins_ties: bool = False, later_op_wins_ties: bool = False) -> str | Genotype:
    """The discrete architecture of given weights: an NB201 arch string, or a `Genotype` on the DARTS skeleton.

    The weights are compared as given (float64). A search derives through `derive_from_alphas`.
    """
    gammas = gammas or {}
    if space.skeleton == "nb201":
        w = weights["normal"]
        if "normal" in gammas:  # PC on NB201: scaling an edge by γ > 0 leaves its argmax unchanged
            w = w * gammas["normal"][:, None]
        cols = nb201_columns(space)
        if len(cols) < len(NB201_OPS):  # a reduced NB201 space: its ops at their NB201 columns, others -inf
            w = w.new_full((w.shape[0], len(NB201_OPS)), float("-inf")).index_copy(
                1, torch.tensor(cols, device=w.device), w)
        return derive_arch_str(w, exclude_none=exclude_none)
    cells = {k: derive_cell(weights[k], space.edge_ops[k], space.edges, gammas.get(k), later_wins_ties,
                            later_op_wins_ties) for k in ("normal", "reduce")}
    return Genotype(cells["normal"], [2, 3, 4, 5], cells["reduce"], [2, 3, 4, 5])


def ranking_weights(alphas: Mapping[str, Tensor], temperature: float = 1.0,
                    gammas: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """log(softmax(α/T)·γ) per cell kind, (E, M), float64: ranks edges and ops as softmax(α/T)·γ does.

    Args:
        alphas: (E, M) α per cell kind.
        temperature: T, the temperature the method trained with (1: DARTS's softmax(α)).
        gammas: optional (E,) PC-DARTS edge weights per cell kind.
    """
    gammas = gammas or {}
    out = {}
    for kind, a in alphas.items():
        scores = F.log_softmax(a.detach().double().cpu() / temperature, dim=-1)  # log softmax(α/T)
        if kind in gammas:
            scores = scores + gammas[kind].detach().double().cpu().log()[:, None]  # + log γ
        out[kind] = scores
    return out


def derive_from_alphas(alphas: Mapping[str, Tensor], space: SearchSpace, temperature: float = 1.0,
                       gammas: Mapping[str, Tensor] | None = None, exclude_none: bool = False,
                       decimals: int | None = None, ties: str = "later-input-first-op") -> str | Genotype:
    """The derived architecture of α, ranked by the weights softmax(α/T)·γ a method trained with.

    Args:
        alphas: (E, M) α per cell kind.
        space: the search space.
        temperature: T of the ranking weights softmax(α/T); only the DARTS skeleton depends on it.
        gammas: optional PC-DARTS edge weights γ per cell kind (DARTS skeleton: ranking × γ).
        exclude_none: NB201: skip `none` in the argmax.
        decimals: DARTS skeleton: rank float32 softmax(α/T)·γ rounded to this many decimals, equal edges
            → the later input (the SP authors' `genotype(temp)`, chaoji90/SP-DARTS SP-DARTS/model_search.py
            lines 139-165: 4 decimals). Default None: exact ranking.
        ties: with `decimals`, which of equal rounded weights wins: `later-input-first-op` (the SP authors'
            DARTS-space genotype), `earlier-input-first-op` (the EDD/PCD authors' DARTS-space genotype,
            chaoji90/PCDEDD PCDEDD-DARTS/model_search_cyc.py lines 171-187: `sorted` on −max, then `>`) or
            `earlier-input-last-op` (the S1-S4 genotype() of the SmoothDARTS forks: `sorted`, then `>=`,
            chaoji90/SP-DARTS SmoothDARTS/sota/cnnmul/model_search.py lines 192-211 and chaoji90/PCDEDD
            SmoothDARTS/sota/pcdedd/model_search_cyc.py lines 194-213). All three round to 3 or 4 decimals.

    Returns:
        NB201: the arch string of argmax α per edge (exact: α itself, not a rounded softmax; γ > 0 and
        T > 0 scale a row and leave its argmax unchanged). DARTS skeleton: the `Genotype`.
    """
    if space.skeleton == "nb201":
        return derive_genotype({"normal": alphas["normal"].detach()}, space, exclude_none=exclude_none)
    if decimals is None:
        return derive_genotype(ranking_weights(alphas, temperature, gammas), space)
    gammas = gammas or {}
    rounded = {}
    for kind, a in alphas.items():
        w = F.softmax(a.detach().float().cpu() / temperature, dim=-1)  # float32, as the authors' code
        if kind in gammas:
            w = w * gammas[kind].detach().float().cpu()[:, None]
        rounded[kind] = torch.round(w, decimals=decimals)
    rules = {"later-input-first-op": (True, False), "earlier-input-first-op": (False, False),
             "earlier-input-last-op": (False, True)}
    if ties not in rules:
        raise ValueError(f"ties must be one of {', '.join(rules)} (got {ties!r})")
    later_input, last_op = rules[ties]
    return derive_genotype(rounded, space, later_wins_ties=later_input, later_op_wins_ties=last_op)


def genotype_weights(genotype: str | Genotype, space: SearchSpace,
                     device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """One-hot (E, M) op weights of a derived cell; edges the genotype drops get all-zero rows."""
    if isinstance(genotype, str):
        from common.nb201 import arch_str_to_onehot
        return {"normal": arch_str_to_onehot(genotype)[:, nb201_columns(space)].to(device)}
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
