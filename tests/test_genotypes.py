"""Genotype derivation: NB201 round trip over all 15,625 cells; DARTS top-2 rule; evaluation-size params."""
from __future__ import annotations

import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st

from common.evalnet import genotype_param_count
from common.genotypes import DARTS_V2, Genotype, derive_genotype, genotype_weights
from common.nb201 import NB201_OPS, arch_str_to_onehot, derive_arch_str, format_arch_str
from common.spaces import SPACES


def test_nb201_arch_string_round_trip_all_15625_cells() -> None:
    archs = [format_arch_str(ops) for ops in itertools.product(NB201_OPS, repeat=6)]
    onehot = torch.stack([arch_str_to_onehot(a) for a in archs])  # (15625, 6, 5)
    noisy = torch.softmax(onehot * 3.0 + 0.01 * torch.randn(onehot.shape, generator=torch.Generator().manual_seed(0)), -1)
    for arch, w, wn in zip(archs, onehot, noisy):
        assert derive_arch_str(w) == arch
        assert derive_arch_str(wn) == arch
    assert len(set(archs)) == 15625


@given(st.lists(st.sampled_from(NB201_OPS), min_size=6, max_size=6))
def test_nb201_genotype_weights_round_trip(ops: list[str]) -> None:
    arch = format_arch_str(ops)
    w = genotype_weights(arch, SPACES["nb201"])
    assert derive_genotype(w, SPACES["nb201"]) == arch


def _slow_darts_derive(w: torch.Tensor, ops: tuple[tuple[str, ...], ...]) -> list[tuple[str, int]]:
    """DARTS's `_parse` written independently: per node sort edges by their max non-none weight."""
    out, start, n = [], 0, 2
    for _ in range(4):
        block = w[start:start + n]
        scores = []
        for j in range(n):
            best = max((block[j, k].item(), k) for k in range(block.shape[1]) if ops[start + j][k] != "none")
            scores.append((best[0], j, ops[start + j][best[1]]))
        top = sorted(scores, key=lambda s: -s[0])[:2]
        out += [(op, j) for _, j, op in sorted(top, key=lambda s: s[1])]
        start, n = start + n, n + 1
    return out


@given(st.integers(0, 10_000), st.sampled_from(["darts", "s1", "s2", "s3", "s4"]))
def test_darts_derivation_matches_independent_parse(seed: int, space_name: str) -> None:
    space = SPACES[space_name]
    g = torch.Generator().manual_seed(seed)
    w = {k: torch.softmax(torch.randn(space.alpha_shape(k), generator=g), -1) for k in space.cell_kinds}
    geno = derive_genotype(w, space)
    assert isinstance(geno, Genotype)
    assert geno.normal == _slow_darts_derive(w["normal"], space.edge_ops["normal"])
    assert geno.reduce == _slow_darts_derive(w["reduce"], space.edge_ops["reduce"])
    assert all(op != "none" for op, _ in geno.normal + geno.reduce)
    # one-hot weights of the genotype derive back to it
    assert derive_genotype(genotype_weights(geno, space), space) == geno


def test_gamma_changes_edge_ranking_not_op_choice() -> None:
    space = SPACES["darts"]
    w = {k: torch.softmax(torch.randn(14, 8, generator=torch.Generator().manual_seed(0)), -1)
         for k in space.cell_kinds}
    gamma = torch.ones(14)
    gamma[0] = 0.0  # node 2's edge from input 0 can never be picked... but node 2 has only 2 edges
    gamma[2] = 1e-6  # node 3: edge 0→3 demoted
    g = derive_genotype(w, space, {"normal": gamma, "reduce": torch.ones(14)})
    node3 = [src for _, src in g.normal[2:4]]
    assert node3 == [1, 2]


def test_darts_v2_parameter_count_matches_published() -> None:
    # DARTS (Liu et al., 2019) train logs: "param size = 3.349342MB" for DARTS_V2 at C=36, 20 cells.
    assert genotype_param_count(DARTS_V2) == 3_349_342


# ----------------------------------------------------------------------------- the none-free DARTS space

def test_darts_nonone_op_lists() -> None:
    space = SPACES["darts-nonone"]
    # SP paper §IV ("DARTS search space excludes the none operation"); the SP authors' PRIMITIVES
    # (chaoji90/SP-DARTS, SP-DARTS/genotypes.py lines 5-13), in this order:
    ops = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
           "dil_conv_5x5")
    assert space.skeleton == "darts" and space.cell_kinds == ("normal", "reduce")
    assert space.edge_ops == {"normal": (ops,) * 14, "reduce": (ops,) * 14}
    assert space.alpha_shape("normal") == space.alpha_shape("reduce") == (14, 7)
    assert not space.has_none("normal") and SPACES["darts"].has_none("normal")
    assert space.edges == SPACES["darts"].edges


def test_darts_nonone_derived_genotype_and_darts_v2_size() -> None:
    space = SPACES["darts-nonone"]
    # DARTS-V2 as one-hot weights of the none-free space derives back to itself (each node's two edges
    # in input order, as derivation lists them); its evaluation-size count is the published one
    def by_input(cell: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return [pair for i in range(0, 8, 2) for pair in sorted(cell[i:i + 2], key=lambda p: p[1])]
    v2 = DARTS_V2._replace(normal=by_input(DARTS_V2.normal), reduce=by_input(DARTS_V2.reduce))
    derived = derive_genotype(genotype_weights(DARTS_V2, space), space)
    assert derived == v2
    assert genotype_param_count(derived) == genotype_param_count(DARTS_V2) == 3_349_342
    # a hand-made α: on edge e op e % 7 wins, by 2 on the edges listed (each node's two strongest), else by 1
    alpha = torch.zeros(14, 7)
    for e in range(14):
        alpha[e, e % 7] = 2.0 if e in (0, 1, 2, 4, 5, 7, 9, 13) else 1.0
    g = derive_genotype({"normal": torch.softmax(alpha, -1), "reduce": torch.softmax(alpha, -1)}, space)
    # node 2: edges 0, 1 (inputs 0, 1); node 3: edges 2, 3, 4 → 2, 4; node 4: edges 5-8 → 5, 7;
    # node 5: edges 9-13 → 9, 13. Op of edge e: ops[e % 7].
    expected = [("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
                ("dil_conv_3x3", 0), ("max_pool_3x3", 2), ("skip_connect", 0), ("dil_conv_5x5", 4)]
    assert g == Genotype(expected, [2, 3, 4, 5], expected, [2, 3, 4, 5])
    assert derive_genotype(genotype_weights(g, space), space) == g
