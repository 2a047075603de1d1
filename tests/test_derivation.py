"""Derivation at the training temperature: NB201 takes the argmax of α itself (near ties
within 1e-8), the DARTS skeleton ranks edges by the weights softmax(α/T) the method trained with, and each
search records and uses its T (EDD: t, SP: t_sp)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from common.genotypes import Genotype, derive_from_alphas, derive_genotype, ranking_weights
from common.nb201 import NB201_OPS, format_arch_str
from common.spaces import SPACES


def _near_tie_alphas(gen: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """float32 (6, 5) α ~ 1e-3·N(0, 1) in which, on every edge, a later op beats an earlier one by 1e-8.

    Returns α and the official derivation (argmax of α per edge), found by plain Python comparison.
    """
    alpha = 1e-3 * torch.randn(6, 5, generator=gen)
    for e in range(6):
        i, j = sorted(torch.randperm(5, generator=gen)[:2].tolist())
        alpha[e, j] = alpha[e].max() + 1e-3
        alpha[e, i] = alpha[e, j] - 1e-8  # representable: the float32 spacing near 2e-3 is 2.3e-10
    rows = alpha.tolist()
    best = [max(range(5), key=lambda o, r=r: r[o]) for r in rows]  # unique maximum by construction
    assert all(sorted(r)[-1] - sorted(r)[-2] < 2e-8 for r in rows)
    return alpha, [NB201_OPS[o] for o in best]


def test_nb201_derivation_is_argmax_of_alpha_at_near_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    space, collapsed = SPACES["nb201"], 0
    for _ in range(100):
        alpha, ops = _near_tie_alphas(gen)
        assert derive_from_alphas({"normal": alpha}, space) == format_arch_str(ops)
        # temperature and γ > 0 scale rows: the NB201 argmax ignores them
        gamma = {"normal": torch.rand(6, generator=gen) + 0.1}
        assert derive_from_alphas({"normal": alpha}, space, 1e-3, gamma) == format_arch_str(ops)
        # the float32 softmax rounds the two leaders to one weight and the first op wins
        collapsed += derive_genotype({"normal": F.softmax(alpha, -1)}, space) != format_arch_str(ops)
    assert collapsed == 100  # so this test separates the two derivations (found before: 100/100 differ)


def test_nb201_exclude_none_at_near_ties() -> None:
    alpha = torch.full((6, 5), -1.0)
    alpha[:, 0] = 1.0  # `none` wins everywhere
    alpha[:, 1] = 2e-3
    alpha[:, 4] = 2e-3 + 1e-8  # avg_pool_3x3 beats skip_connect by 1e-8 (float32 spacing there: 2.3e-10)
    space = SPACES["nb201"]
    assert derive_from_alphas({"normal": alpha}, space) == format_arch_str(["none"] * 6)
    assert derive_from_alphas({"normal": alpha}, space, exclude_none=True) == format_arch_str(["avg_pool_3x3"] * 6)


def _alpha(space_name: str, entries: dict[int, dict[str, float]]) -> torch.Tensor:
    """(14, M) α of one cell kind: zeros, with the given {edge: {op name: value}} entries."""
    ops = SPACES[space_name].edge_ops["normal"][0]
    alpha = torch.zeros(14, len(ops))
    for e, values in entries.items():
        for name, value in values.items():
            alpha[e, ops.index(name)] = value
    return alpha


# Edges (DARTS_EDGES): node 2 ← 0, 1 (edges 0, 1); node 3 ← 0, 1, 2 (2, 3, 4); node 4 ← 0…3 (5…8);
# node 5 ← 0…4 (9…13). Node 3 is the constructed case; every other node has two clear winners.
RANKING_CASE = {
    0: {"skip_connect": 1.0}, 1: {"dil_conv_3x3": 1.0},
    # node 3. A (edge 2): one op, small margin. softmax(α)_max = e^.5/(e^.5 + M-1) = 0.19 (M=8), 0.22 (M=7);
    # at T = 0.01: ≈ 1.
    2: {"sep_conv_5x5": 0.5},
    # B (edge 3): three near-equal ops at 3: T = 1: e^3/(e^3 + e^2.999 + e^2.998 + M-3) = 0.308 / 0.313;
    # T = 0.01: 1/(1 + e^-.1 + e^-.2) = 0.367.
    3: {"max_pool_3x3": 3.0, "avg_pool_3x3": 2.999, "skip_connect": 2.998},
    # C (edge 4): four near-equal ops at 5: T = 1: 0.2487 / 0.2491; T = 0.01: 1/(1 + e^-.1 + e^-.2 + e^-.3) = 0.289.
    4: {"sep_conv_3x3": 5.0, "dil_conv_3x3": 4.999, "dil_conv_5x5": 4.998, "sep_conv_5x5": 4.997},
    6: {"sep_conv_3x3": 3.0}, 8: {"avg_pool_3x3": 3.0},
    9: {"dil_conv_5x5": 3.0}, 13: {"max_pool_3x3": 3.0},
}
NODE_2_4_5 = ([("skip_connect", 0), ("dil_conv_3x3", 1)],
              [("sep_conv_3x3", 1), ("avg_pool_3x3", 3)], [("dil_conv_5x5", 0), ("max_pool_3x3", 4)])
# T = 1 ranks node 3's edges B > C > A; T = 0.01 ranks A > B > C.
NODE_3 = {1.0: [("max_pool_3x3", 1), ("sep_conv_3x3", 2)], 0.01: [("sep_conv_5x5", 0), ("max_pool_3x3", 1)]}


@pytest.mark.parametrize("space_name", ["darts", "darts-nonone"])
@pytest.mark.parametrize("T", [1.0, 0.01])
def test_darts_ranking_uses_the_training_temperature(space_name: str, T: float) -> None:
    space = SPACES[space_name]
    alphas = {"normal": _alpha(space_name, RANKING_CASE), "reduce": _alpha(space_name, RANKING_CASE)}
    cell = NODE_2_4_5[0] + NODE_3[T] + NODE_2_4_5[1] + NODE_2_4_5[2]
    expected = Genotype(cell, [2, 3, 4, 5], cell, [2, 3, 4, 5])
    assert derive_from_alphas(alphas, space, T) == expected
    # the same as ranking the weights softmax(α/T) themselves (float64)
    assert derive_genotype({k: F.softmax(a.double() / T, -1) for k, a in alphas.items()}, space) == expected


def test_darts_ranking_survives_float32_underflow() -> None:
    """At T = 1e-3 a dominant `none` sends every other weight of float32 softmax(α/T) to 0 (e^-200 <
    1.4e-45), which would make node 3's edges tie; the float64 log ranking keeps their order."""
    space = SPACES["darts"]
    case = {**RANKING_CASE, 2: {"none": 0.0, "sep_conv_5x5": -0.2}, 3: {"none": 0.0, "max_pool_3x3": -0.3},
            4: {"none": 0.0, "sep_conv_3x3": -0.25}}
    for e in (2, 3, 4):  # every other op of these edges far below
        case[e] = {name: case[e].get(name, -1.0) for name in space.edge_ops["normal"][0]}
    alphas = {k: _alpha("darts", case) for k in ("normal", "reduce")}
    f32 = {k: F.softmax(a / 1e-3, -1) for k, a in alphas.items()}
    assert (f32["normal"][2:5, 1:] == 0).all()  # the underflow is real
    node3 = derive_from_alphas(alphas, space, 1e-3).normal[2:4]
    assert node3 == [("sep_conv_5x5", 0), ("sep_conv_3x3", 2)]  # edges A (−0.2) and C (−0.25), not B (−0.3)


def test_ranking_weights_fold_gamma_in_log_space() -> None:
    gen = torch.Generator().manual_seed(3)
    space = SPACES["darts"]
    for T in (1.0, 0.1, 0.003):
        alphas = {k: torch.randn(14, 8, generator=gen) for k in space.cell_kinds}
        gammas = {k: torch.rand(14, generator=gen) for k in space.cell_kinds}
        scores = ranking_weights(alphas, T, gammas)
        for k in space.cell_kinds:
            direct = F.softmax(alphas[k].double() / T, -1) * gammas[k].double()[:, None]
            assert torch.allclose(scores[k].exp(), direct, rtol=1e-12, atol=1e-290)  # float64 denormals
        assert derive_from_alphas(alphas, space, T, gammas) == derive_genotype(
            {k: F.softmax(a.double() / T, -1) for k, a in alphas.items()}, space, gammas)


def test_sp_authors_rounding_sends_ties_to_the_later_input() -> None:
    """`decimals=4` (the SP authors' genotype(temp)): at t_sp = 1e-3 saturated edges round to the same
    1.0 and the later inputs win; the exact ranking keeps the margins' order."""
    space = SPACES["darts-nonone"]
    # node 3: each edge's one op leads by 0.05 (edge 2, input 0), 0.03 (edge 3, input 1), 0.02 (edge 4, input 2)
    case = {**RANKING_CASE, 2: {"sep_conv_5x5": 0.05}, 3: {"max_pool_3x3": 0.03}, 4: {"sep_conv_3x3": 0.02}}
    alphas = {k: _alpha("darts-nonone", case) for k in ("normal", "reduce")}
    rounded = torch.round(F.softmax(alphas["normal"] / 1e-3, -1), decimals=4)
    assert (rounded[2:5].max(-1).values == 1.0).all()  # three-way tie after rounding
    exact = derive_from_alphas(alphas, space, 1e-3)
    authors = derive_from_alphas(alphas, space, 1e-3, decimals=4)
    assert exact.normal[2:4] == [("sep_conv_5x5", 0), ("max_pool_3x3", 1)]
    assert authors.normal[2:4] == [("max_pool_3x3", 1), ("sep_conv_3x3", 2)]
    assert exact.normal[:2] + exact.normal[4:] == authors.normal[:2] + authors.normal[4:]  # clear winners agree
    # within an edge the first of equal (rounded) ops wins, as in their strict `>` argmax
    tie = {k: _alpha("darts-nonone", {**case, 0: {"skip_connect": 0.05, "sep_conv_3x3": 0.05 + 1e-8}})
           for k in ("normal", "reduce")}
    assert derive_from_alphas(tie, space, 1e-3).normal[0] == ("sep_conv_3x3", 0)
    assert derive_from_alphas(tie, space, 1e-3, decimals=4).normal[0] == ("skip_connect", 0)


# ----------------------------------------------------------------------------- the searches use their T

def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _genotype(d: dict) -> Genotype:
    return Genotype(*(([tuple(p) for p in d[k]] if k in ("normal", "reduce") else d[k]) for k in Genotype._fields))


def _check(out: Path, result: dict, T: list[float], space: str, decimals: int | None = None) -> None:
    records = _records(out)
    assert [r["derive_temperature"] for r in records] == pytest.approx(T, rel=1e-15)
    alphas = {k: torch.tensor(v) for k, v in result["alphas"].items()}
    assert _genotype(result["genotype"]) == derive_from_alphas(alphas, SPACES[space], T[-1], decimals=decimals)
    assert _genotype(records[-1]["genotype"]) == _genotype(result["genotype"])


# N = 1: one (reduction) cell, the cheapest DARTS-skeleton run; the normal α still derives a genotype
TINY = dict(dataset="cifar10", limit_train=8, C=4, N=1, batch_size=8, progress=False, eval_images=8, device="cpu")


@pytest.mark.slow
def test_sp_derives_at_t_sp(shared_data: Path, tmp_path: Path) -> None:
    from sp_darts import SPConfig
    from sp_darts import search as sp_search
    cfg = SPConfig(space="darts-nonone", data_dir=str(shared_data), epochs=1, warmup=0, out=str(tmp_path / "sp"),
                   derive_decimals=4, **TINY)  # with the authors' rounding (--derive-decimals 4)
    cfg.resolve()
    _check(tmp_path / "sp", sp_search(cfg), [cfg.t_sp], "darts-nonone", decimals=4)


@pytest.mark.slow
def test_edd_derives_at_each_epochs_t(shared_data: Path, tmp_path: Path) -> None:
    from edd_darts import EDDConfig
    from edd_darts import search as edd_search
    cfg = EDDConfig(space="darts-nonone", data_dir=str(shared_data), epochs=2, out=str(tmp_path / "edd"), **TINY)
    cfg.resolve()
    result = edd_search(cfg)
    t = [r["temperature"] for r in _records(tmp_path / "edd")]
    assert t[0] == 1.0 and t[1] < 0.1 and math.isfinite(t[1])  # one decay after epoch 1
    _check(tmp_path / "edd", result, t, "darts-nonone")
