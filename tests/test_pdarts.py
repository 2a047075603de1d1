"""P-DARTS stage logic (common/pdarts.py): pruning by α, stage depth and op sets, the skip-connect rule,
skip-connect dropout and its schedule. Expected values are written out by hand from the authors' rules
(github.com/chenxin061/pdarts train_search.py, model_search.py; see common/pdarts.py)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from common.pdarts import (
    PdartsSchedule,
    SkipDropout,
    install_skip_dropout,
    pdarts_genotype,
    prune_space,
    restrict_skips,
    set_skip_dropout,
)
from common.spaces import DARTS_EDGES, DARTS_OP_NAMES, SearchSpace, get_space
from common.supernet import Supernet

pytestmark = pytest.mark.usefixtures("lean_search_setup")  # conftest.py: the NB201 table read once

NONE, MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = DARTS_OP_NAMES


def _alphas(rows: list[list[float]]) -> dict[str, torch.Tensor]:
    a = torch.tensor(rows, dtype=torch.float64)
    return {"normal": a, "reduce": a.flip(-1).clone()}


def test_prune_keeps_top_k_by_alpha() -> None:
    space = get_space("darts")
    rows = [[float(o) for o in range(8)] for _ in range(14)]  # increasing: the last 5 ops win
    rows[1] = [float(7 - o) for o in range(8)]  # decreasing: the first 5 win
    rows[2] = [0.0] * 8  # all tied: the first 3 (np.argmin's first minimum) go
    rows[3] = [5.0, -1.0, 2.0, 0.5, 3.0, -2.0, 4.0, 1.0]  # drop sep5 (-2), max (-1), skip (0.5)
    new = prune_space(space, _alphas(rows), 3)
    normal = new.edge_ops["normal"]
    assert normal[0] == (SKIP, SEP3, SEP5, DIL3, DIL5)
    assert normal[1] == (NONE, MAX, AVG, SKIP, SEP3)
    assert normal[2] == (SKIP, SEP3, SEP5, DIL3, DIL5)
    assert normal[3] == (NONE, AVG, SEP3, DIL3, DIL5)
    assert new.edge_ops["reduce"][0] == (NONE, MAX, AVG, SKIP, SEP3)  # reduce α is the flipped one
    assert new.alpha_shape("normal") == (14, 5) and new.skeleton == "darts"
    # the same α, a different offset per edge: softmax is shift-invariant, so pruning is unchanged
    shifted = prune_space(space, {k: v + 100.0 for k, v in _alphas(rows).items()}, 3)
    assert shifted.edge_ops == new.edge_ops


def test_prune_last_stage_drops_none_first() -> None:
    ops3 = ((NONE, SKIP, SEP3),) * 7 + ((SKIP, SEP3, DIL3),) * 7
    space = SearchSpace("t", "darts", {"normal": ops3, "reduce": ops3})
    rows = [[3.0, 1.0, 2.0]] * 7 + [[3.0, 1.0, 2.0]] * 7  # `none` largest on the first 7 edges
    new = prune_space(space, _alphas(rows), 2, last=True)
    assert new.edge_ops["normal"][:7] == ((SEP3,),) * 7  # none goes although largest, then skip (1.0)
    assert new.edge_ops["normal"][7:] == ((SKIP,),) * 7  # no none: the two smallest (sep3, dil3) go
    mid = prune_space(space, _alphas(rows), 2, last=False)
    assert mid.edge_ops["normal"][:7] == ((NONE,),) * 7  # between stages `none` competes like any op


def test_prune_refuses_bad_alpha() -> None:
    with pytest.raises(ValueError, match="shape"):
        prune_space(get_space("darts"), {"normal": torch.zeros(14, 5), "reduce": torch.zeros(14, 8)}, 3)
    with pytest.raises(ValueError, match="cannot drop"):
        prune_space(get_space("darts"), _alphas([[0.0] * 8] * 14), 8)


def test_stages_depth_and_op_sets() -> None:
    sched = PdartsSchedule()
    assert [sched.layers(s, 5) for s in range(3)] == [5, 11, 17]
    assert [sched.width(s, 16) for s in range(3)] == [16, 16, 16]
    space = get_space("darts")
    torch.manual_seed(0)
    counts = []
    for stage in range(3):
        N = sched.layers(stage, 5)
        net = Supernet(space, C=2, N=N)
        assert len(net.cells) == N
        assert [i for i, c in enumerate(net.cells) if c.reduction] == [N // 3, 2 * N // 3]
        counts.append({len(m.ops) for m in net.modules() if hasattr(m, "op_names")})
        assert net.alphas["normal"].shape == (14, len(space.edge_ops["normal"][0]))
        assert net.alphas["normal"].abs().max() < 1e-2  # fresh α ~ 1e-3·N(0, 1) each stage
        space = prune_space(space, net.alphas, sched.num_to_drop[stage], last=stage == 2)
    assert counts == [{8}, {5}, {3}]
    assert space.alpha_shape("normal") == (14, 1) and space.alpha_shape("reduce") == (14, 1)
    assert all(ops != (NONE,) for ops in space.edge_ops["normal"])  # the last pruning removes `none`
    assert sched.stage_of(0) == (0, 0) and sched.stage_of(25) == (1, 0) and sched.stage_of(74) == (2, 24)
    with pytest.raises(ValueError, match="outside"):
        sched.stage_of(75)


def test_schedule_dropout_rates() -> None:
    s = PdartsSchedule()
    assert s.dropout == (0.0, 0.4, 0.7) and s.epochs == 25 and s.warmup == 10
    assert s.dropout_rate(2, 0) == pytest.approx(0.7 * 24 / 25)  # warm-up: linear (ts line 153)
    assert s.dropout_rate(2, 9) == pytest.approx(0.7 * 15 / 25)
    assert s.dropout_rate(2, 10) == pytest.approx(0.7)  # α starts: exp decay from p0 (ts line 157)
    assert s.dropout_rate(2, 15) == pytest.approx(0.7 * math.exp(-1.0))
    assert not s.trains_alpha(9) and s.trains_alpha(10)
    with pytest.raises(ValueError, match="warmup"):
        PdartsSchedule(epochs=5, warmup=6)
    with pytest.raises(ValueError, match="dropout"):
        PdartsSchedule(dropout=(0.1, 1.0, 0.2))


def test_skip_dropout() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 50, 10) + 3.0  # no exact zeros
    d = SkipDropout(0.0).train()
    assert torch.equal(d(x), x)
    d.p = 0.3
    g = torch.get_rng_state()
    y = d(x)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - 0.3) < 0.01  # 1e5 draws: std 0.0014
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.7)
    torch.set_rng_state(g)
    assert torch.equal(d(x), y)  # a fixed seed gives the same mask
    assert torch.equal(d.eval()(x), x)  # identity in eval


def test_install_skip_dropout_on_stride_one_skips_only() -> None:
    torch.manual_seed(0)
    net = Supernet(get_space("darts"), C=2, N=5)
    mods = install_skip_dropout(net)
    # 3 normal cells × 14 edges + 2 reduction cells × 6 stride-1 edges (from nodes 2-4; 8 are stride 2)
    assert len(mods) == 3 * 14 + 2 * 6
    mixed_ops = [op for m in net.modules() if hasattr(m, "op_names") for op in m.ops]
    assert not any(isinstance(op, nn.Identity) for op in mixed_ops)  # every identity skip is wrapped
    set_skip_dropout(mods, 0.4)
    assert {m.p for m in mods} == {0.4}
    x = torch.randn(2, 3, 8, 8)
    w = {k: torch.softmax(a, -1) for k, a in net.alphas.items()}
    net.eval()
    out_eval = net(x, w)
    set_skip_dropout(mods, 0.0)
    assert torch.equal(net(x, w), out_eval)  # eval: dropout off whatever p


def _probs_alpha(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).log()  # softmax(log p) = p (rows sum to 1)


# normal cell after stage 3 (ops none, skip, sep3 on every edge); probs per edge:
SKIP_CASE = [
    [0.1, 0.6, 0.3], [0.1, 0.5, 0.4],  # node 2: skip .6, skip .5
    [0.3, 0.48, 0.22], [0.1, 0.25, 0.65], [0.5, 0.2, 0.3],  # node 3: skip .48, sep .65, sep .3 (none → 0)
    [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3], [0.6, 0.15, 0.25],  # node 4: skip .8, sep .5
    [0.1, 0.4, 0.5], [0.1, 0.35, 0.55], [0.4, 0.1, 0.5], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4],  # node 5
]


def test_restrict_skips_four_to_two() -> None:
    ops = ((NONE, SKIP, SEP3),) * 14
    alpha = _probs_alpha(SKIP_CASE)
    free = restrict_skips(alpha, ops, DARTS_EDGES, None)
    assert free == [(SKIP, 0), (SKIP, 1), (SKIP, 0), (SEP3, 1), (SKIP, 0), (SEP3, 1), (SEP3, 1), (SEP3, 3)]
    # 4 skips: the least (edge 2→3 from 0, .48) goes; sep .22 on that edge now loses to edge 3←2 (sep .3);
    # 3 skips: the least (2←1, .5) goes, that edge keeps sep .4; 2 left (2←0 .6, 4←0 .8)
    assert restrict_skips(alpha, ops, DARTS_EDGES, 2) == [
        (SKIP, 0), (SEP3, 1), (SEP3, 1), (SEP3, 2), (SKIP, 0), (SEP3, 1), (SEP3, 1), (SEP3, 3)]
    assert restrict_skips(alpha, ops, DARTS_EDGES, 4) == free
    assert sum(op == SKIP for op, _ in restrict_skips(alpha, ops, DARTS_EDGES, 0)) == 0
    space = SearchSpace("t", "darts", {"normal": ops, "reduce": ops})
    g = pdarts_genotype({"normal": alpha, "reduce": alpha}, space, max_skip=2)
    assert g.reduce == free and g.normal[1] == (SEP3, 1)  # the limit binds the normal cell only


def test_restrict_skips_ties_prefer_later_edge() -> None:
    ops = ((SKIP, SEP3),) * 14
    alpha = torch.zeros(14, 2, dtype=torch.float64)  # everything tied
    # keep_1_on drops the first minimum (skip) → sep; keep_2_branches keeps the last two edges per node
    assert restrict_skips(alpha, ops, DARTS_EDGES, 2) == [
        (SEP3, 0), (SEP3, 1), (SEP3, 1), (SEP3, 2), (SEP3, 2), (SEP3, 3), (SEP3, 3), (SEP3, 4)]


# ----------------------------------------------------------------------------- end to end (aer_darts.py)

class _Killed(Exception):
    """Stands in for a kill right after an epoch's checkpoint (in-process, cheaper than a subprocess)."""


def _tiny(data: str, out: str) -> list[str]:
    return ["--backbone", "pdarts", "--space", "darts", "--data-dir", data, "--limit-train", "16", "--C", "4",
            "--N", "1", "--epochs", "3", "--warmup", "0", "--batch-size", "8", "--eval-images", "16",
            "--out", out, "--no-progress"]


def _records(run_dir) -> list[dict]:
    import json
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


@pytest.mark.slow
def test_pdarts_aer_three_stages_resume_across_stage_boundary(shared_data, tmp_path, monkeypatch) -> None:
    import json

    import aer_darts
    from common.config import parse_config
    from common.pdarts import PdartsRun

    full = tmp_path / "full"
    aer_darts.search(parse_config(aer_darts.AERConfig, _tiny(str(shared_data), str(full))))
    recs = _records(full)
    assert [(r["stage"], r["cells"], r["ops_per_edge"]) for r in recs] == [(1, 1, 8), (2, 7, 5), (3, 13, 3)]
    assert [r["skip_dropout"] for r in recs] == pytest.approx([0.0, 0.4, 0.7])  # the paper's, CIFAR-10
    assert all(r["lam"] == pytest.approx(-0.2) for r in recs)  # cosine start of each 1-epoch stage
    # stage 2's op sets are stage 1's final α pruned (the recorded α, an independent path)
    stage1 = {k: torch.tensor(v) for k, v in recs[0]["alphas"].items()}
    pruned = prune_space(get_space("darts"), stage1, 3)
    last_ckpt = torch.load(full / "checkpoint.pt", weights_only=False)  # the last checkpoint: stage 3
    assert last_ckpt["method_state"]["pdarts"]["stage"] == 2
    stage3_ops = prune_space(pruned, {k: torch.tensor(v) for k, v in recs[1]["alphas"].items()}, 2)
    assert last_ckpt["method_state"]["pdarts"]["edge_ops"] == {
        k: [list(ops) for ops in v] for k, v in stage3_ops.edge_ops.items()}
    result = json.loads((full / "result.json").read_text())
    skips = [op for op, _ in result["genotype"]["normal"]].count("skip_connect")
    assert skips <= 2

    end_epoch = PdartsRun.end_epoch

    def end_epoch_then_stop(self, *args, **kwargs):
        out = end_epoch(self, *args, **kwargs)
        if self.epoch == 0:  # the last epoch of stage 1: the next starts stage 2
            self.dir.release()
            raise _Killed
        return out

    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        patch.setattr(PdartsRun, "end_epoch", end_epoch_then_stop)
        with pytest.raises(_Killed):
            aer_darts.search(parse_config(aer_darts.AERConfig, _tiny(str(shared_data), str(cut))))
    assert len(_records(cut)) == 1
    aer_darts.search(parse_config(aer_darts.AERConfig, [*_tiny(str(shared_data), str(cut)), "--resume"]))
    assert _records(cut) == recs  # every metric, α of all stages included, bit for bit
    resumed = json.loads((cut / "result.json").read_text())
    assert resumed["alphas"] == result["alphas"] and resumed["genotype"] == result["genotype"]
    from common.report import collect_runs, make_plots
    notes: list[str] = []
    written = make_plots(collect_runs(full), tmp_path / "report", alpha_run=full, notes=notes)
    assert any("alpha_evolution" in str(p) for p in written)  # α of changing shape: the first stage's
    assert any("first P-DARTS stage" in n for n in notes), notes


def test_run_all_rows_pdarts(tmp_path) -> None:
    """run_all.sh: `pdarts-aer` and plain `pdarts` (λ = 0) on the DARTS space, CIFAR-10, 3 seeds; the quick
    lines are valid P-DARTS configs (3 stages of 1 epoch)."""
    import shlex
    import subprocess
    from pathlib import Path

    import aer_darts
    from common.config import parse_config
    root = Path(__file__).resolve().parents[1]

    def dry(*argv: str) -> list[str]:
        proc = subprocess.run(["bash", str(root / "run_all.sh"), "--dry-run", "--runs", str(tmp_path / "runs"),
                               "--spaces", "darts", "--only", "pdarts-aer|pdarts", *argv],
                              cwd=root, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()
    lines = dry()
    for label in ("pdarts-aer", "pdarts"):
        rows = [x for x in lines if f"/darts/{label}/cifar10/seed" in x]
        assert len(rows) == 3 and all("--backbone pdarts" in x for x in rows)
        assert all(("--lam-neg 0 --lam-pos 0" in x) == (label == "pdarts") for x in rows)
    for line in dry("--quick", "--seeds", "0"):
        cfg = parse_config(aer_darts.AERConfig, shlex.split(line)[2:])
        assert (cfg.backbone, cfg.epochs, cfg.warmup, cfg.N) == ("pdarts", 3, 0, 1)
        assert (cfg.lam_neg, cfg.lam_pos) in ((-0.2, 0.2), (0.0, 0.0))


def test_remaining_entropy_closed_form() -> None:
    """H̄ over each edge's remaining ops: uniform α on an edge of k non-`none` ops gives log₂ k bits."""
    from authors.aer import remaining_entropy
    ops = ((NONE, SKIP, SEP3),) * 7 + ((SKIP, SEP3, DIL3),) * 7  # `none` left out on the first 7 edges
    space = SearchSpace("t", "darts", {"normal": ops, "reduce": ops})
    a = torch.zeros(14, 3, dtype=torch.float64, requires_grad=True)
    h = remaining_entropy({"normal": a, "reduce": a}, space)
    assert h.item() == pytest.approx((7 * 1.0 + 7 * math.log2(3)) / 14, abs=1e-12)
    b = torch.zeros(14, 3, dtype=torch.float64)
    b[:7, 0] = 50.0  # `none` huge: no effect where it is left out
    b[7:, 0] = 50.0  # a real op huge: that edge is one-hot, H = 0
    assert remaining_entropy({"normal": b, "reduce": b}, space).item() == pytest.approx(0.5, abs=1e-12)
    h.backward()
    assert torch.isfinite(a.grad).all()
    # the authors' column 0 on every edge: the first 7 leave out `none` (1 bit), the last 7 leave out the
    # huge skip: the remaining sep3, dil3 are uniform (1 bit)
    assert remaining_entropy({"normal": b, "reduce": b}, space, column0=True).item() == pytest.approx(1.0)


@pytest.mark.parametrize("argv, message", [
    (["--space", "nb201"], "DARTS-skeleton"),
    (["--space", "darts", "--partial-channels", "4"], "partial-channels"),
    (["--space", "darts", "--epochs", "10"], "3 stages"),
    (["--space", "darts", "--epochs", "6", "--warmup", "3"], "at most one stage"),
    (["--space", "darts", "--skip-dropout", "0.1,0.2"], "one value per stage"),
    (["--space", "darts", "--skip-dropout", "0.1,x,0.2"], "comma-separated"),
])
def test_pdarts_config_refusals(argv, message, capsys) -> None:
    import aer_darts
    from common.config import parse_config
    with pytest.raises(SystemExit) as err:
        parse_config(aer_darts.AERConfig, ["--backbone", "pdarts", *argv])
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_pdarts_config_defaults() -> None:
    import aer_darts
    from common.config import parse_config
    paper = parse_config(aer_darts.AERConfig, ["--backbone", "pdarts", "--space", "darts"])
    assert (paper.epochs, paper.warmup, paper.N, paper.dropout_rates()) == (75, 10, 5, (0.0, 0.4, 0.7))
    c100 = parse_config(aer_darts.AERConfig, ["--backbone", "pdarts", "--space", "darts", "--dataset", "cifar100"])
    assert c100.dropout_rates() == (0.1, 0.2, 0.3)
    authors = parse_config(aer_darts.AERConfig, ["--backbone", "pdarts", "--space", "darts", "--recipe", "authors"])
    assert (authors.batch_size, authors.a_lr, authors.w_lr_min, authors.w_wd) == (96, 6e-4, 0.0, 3e-4)
    assert authors.dropout_rates() == (0.1, 0.4, 0.7) and authors.entropy_ops == "column0"
    assert not authors.w_nesterov and paper.w_nesterov
    assert paper.entropy_ops == "remaining"


def _slow_rule(probs: list[list[float]], ops, max_skip: int) -> list[tuple[str, int]]:
    """An independent formulation of the authors' rule: each edge's op is its last-maximal non-`none` op
    (what dropping the first minimum repeatedly leaves), each node keeps its last-maximal two edges."""
    p = [[0.0 if ops[e][o] == NONE else v for o, v in enumerate(row)] for e, row in enumerate(probs)]
    while True:
        best = [max((o for o in range(len(ops[e])) if ops[e][o] != NONE), key=lambda o, e=e: (p[e][o], o))
                for e in range(14)]
        keep = []
        for node in range(2, 6):
            ids = [e for e, (to, _) in enumerate(DARTS_EDGES) if to == node]
            keep += sorted(sorted(ids, key=lambda e: (max(p[e]), e))[-2:])
        skips = [e for e in keep if ops[e][best[e]] == SKIP]
        if len(skips) <= max_skip:
            return [(ops[e][best[e]], DARTS_EDGES[e][1]) for e in keep]
        worst = min(skips, key=lambda e: (p[e][best[e]], e))
        p[worst][best[worst]] = 0.0


def test_restrict_skips_matches_slow_rule() -> None:
    gen = torch.Generator().manual_seed(1)
    opsets = [(NONE, SKIP, SEP3), (SKIP, SEP3, DIL3), (NONE, MAX, SKIP), (AVG, SKIP, SEP5)]
    for trial in range(200):
        ops = tuple(opsets[int(i)] for i in torch.randint(0, 4, (14,), generator=gen))
        logits = torch.randint(-3, 4, (14, 3), generator=gen).double() * (2.0 if trial % 2 else 0.7)  # ties
        probs = torch.softmax(logits, -1).tolist()  # what restrict_skips computes of α = logits, bit for bit
        for m in (0, 1, 2, 8):
            assert restrict_skips(logits, ops, DARTS_EDGES, m) == _slow_rule(probs, ops, m)
