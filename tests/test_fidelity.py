"""common.fidelity: Kendall τ-b against closed cases, a recorded value and a slow pair
count; (a) on synthetic α and a synthetic NB201 table whose order is known; (b)/(c) end to end."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from common.fidelity import FidelityError, edge_fidelity, kendall_tau, sample_cells
from common.fidelity import main as fidelity_main
from common.nb201 import COLUMNS, NB201_OPS, NB201Table, format_arch_str, parse_arch_str
from common.spaces import SPACES


def slow_tau_b(x, y) -> float:
    """τ-b by counting all n(n−1)/2 pairs (the definition)."""
    nc = nd = tx = ty = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif dx == dy:
                nc += 1
            else:
                nd += 1
    denom = math.sqrt((nc + nd + tx) * (nc + nd + ty))  # pairs untied in y, untied in x
    return (nc - nd) / denom if denom else math.nan


def test_kendall_closed_cases():
    x = [0.3, 1.0, 2.5, 7.0, 9.0]
    assert kendall_tau(x, [1, 2, 3, 4, 5]) == 1.0
    assert kendall_tau(x, [5, 4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 1, 2]) == pytest.approx(2 / math.sqrt(6), rel=1e-15)  # one tie in y
    assert kendall_tau([1, 1, 2, 2], [1, 1, 2, 2]) == 1.0  # ties in both, same order
    assert kendall_tau([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(1 / 3, rel=1e-15)  # 4 conc., 2 disc.
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and math.isnan(kendall_tau([1], [2]))
    # scipy.stats.kendalltau's documented example (τ-b): −0.47140452079103173
    assert kendall_tau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173, rel=1e-12)
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=2, max_size=40))
def test_kendall_equals_slow_pair_count(pairs):
    x, y = [float(a) for a, _ in pairs], [float(b) for _, b in pairs]
    want = slow_tau_b(x, y)
    got = kendall_tau(x, y)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12, abs=1e-15)
    if not math.isnan(got):
        assert kendall_tau(y, x) == pytest.approx(got, rel=1e-12, abs=1e-15)  # symmetric
        assert kendall_tau(x, [-v for v in y]) == pytest.approx(-got, rel=1e-12, abs=1e-15)


def test_kendall_large_sample_fast_and_right():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, 3000).astype(float)
    y = x + rng.normal(0, 10, 3000).round()
    got = kendall_tau(x, y)
    sub = slice(0, 300)
    assert kendall_tau(x[sub], y[sub]) == pytest.approx(slow_tau_b(x[sub], y[sub]), rel=1e-12)
    assert 0.5 < got < 0.95


PERMS = [(0, 4, 1, 3, 2), (3, 0, 4, 1, 2), (1, 2, 3, 4, 0), (4, 3, 2, 1, 0), (2, 0, 1, 4, 3), (0, 1, 2, 3, 4)]


def additive_table() -> NB201Table:
    """acc(cell) = 50 + Σ_e PERMS[e][op_e]: swapping edge e's op orders cells by PERMS[e]."""
    archs, values = [], []
    for ops in itertools.product(range(5), repeat=6):
        archs.append(format_arch_str([NB201_OPS[o] for o in ops]))
        values.append([50.0 + sum(PERMS[e][o] for e, o in enumerate(ops))] * len(COLUMNS))
    return NB201Table(archs, np.asarray(values))


def test_edge_fidelity_on_synthetic_alpha_with_known_order():
    table, space = additive_table(), SPACES["nb201"]
    alpha = 1e-2 * torch.tensor(PERMS, dtype=torch.float64)  # β's order on edge e = PERMS[e]
    out = edge_fidelity(alpha, space, table, "cifar10_test")
    assert [e["tau"] for e in out["edges"]] == [1.0] * 6 and out["tau_mean"] == 1.0
    assert parse_arch_str(out["derived"]) == [NB201_OPS[p.index(4)] for p in PERMS]  # argmax per edge
    e1 = out["edges"][1]
    assert e1["edge"] == "2<-0" and e1["ops"] == list(NB201_OPS)
    assert e1["acc"] == [table.query(format_arch_str([NB201_OPS[p.index(4)] if e != 1 else o
                                                      for e, p in enumerate(PERMS)]))["cifar10_test"]
                         for o in NB201_OPS]
    out = edge_fidelity(-alpha, space, table, "cifar10_test")  # reversed order on every edge
    assert [e["tau"] for e in out["edges"]] == [-1.0] * 6
    shifted = alpha.roll(1, 0)  # edge e ranked by PERMS[e − 1]: τ = τ(PERMS[e−1], PERMS[e])
    out = edge_fidelity(shifted, space, table, "cifar10_test")
    want = [slow_tau_b(PERMS[e - 1], PERMS[e]) for e in range(6)]
    assert [e["tau"] for e in out["edges"]] == pytest.approx(want, rel=1e-12)


def test_edge_fidelity_three_op_space():
    table, space = additive_table(), SPACES["nb201-3op"]
    cols = [NB201_OPS.index(o) for o in space.edge_ops["normal"][0]]
    alpha = torch.tensor([[p[c] for c in cols] for p in PERMS], dtype=torch.float64)
    out = edge_fidelity(alpha, space, table, "cifar10_test")
    assert all(len(e["acc"]) == 3 for e in out["edges"]) and out["tau_mean"] == 1.0
    assert set(parse_arch_str(out["derived"])) <= set(space.edge_ops["normal"][0])


def test_sample_cells():
    cells = sample_cells(SPACES["nb201-3op"], 50, seed=1)
    assert len(set(cells)) == 50 and cells == sample_cells(SPACES["nb201-3op"], 50, seed=1)
    assert all(set(parse_arch_str(c)) <= {"skip_connect", "nor_conv_3x3", "avg_pool_3x3"} for c in cells)
    assert len(sample_cells(SPACES["nb201-3op"], 729)) == 729  # the whole space
    with pytest.raises(FidelityError, match="1..729"):
        sample_cells(SPACES["nb201-3op"], 730)


def test_cli_bad_input_one_line(tmp_path, capsys):
    (tmp_path / "notarun").mkdir()
    (tmp_path / "darts").mkdir()
    (tmp_path / "darts" / "args.json").write_text(json.dumps({"space": "darts", "dataset": "cifar10"}))
    for run, why in (("notarun", "args.json not found"), ("darts", "only NB201-skeleton runs")):
        with pytest.raises(SystemExit) as err:
            fidelity_main([str(tmp_path / run), "--device", "cpu"])
        line = capsys.readouterr().err
        assert err.value.code == 2 and line.count("\n") == 1 and why in line
    assert not (tmp_path / "darts" / "fidelity.json").exists()


@pytest.mark.slow
def test_end_to_end_two_runs_and_report(shared_data, nb201_csv, tmp_path, capsys):
    from common.baseline import DartsConfig, search
    from common.report import collect_runs, results_table
    runs = []
    for seed in (0, 1):
        out = tmp_path / "runs" / "nb201" / "darts-v1" / "cifar10" / f"seed{seed}"
        cfg = DartsConfig(space="nb201", dataset="cifar10", data_dir=str(shared_data), limit_train=32, C=4, N=1,
                          epochs=1, batch_size=16, eval_images=32, out=str(out), progress=False, device="cpu",
                          seed=seed, nb201=None)  # no per-epoch lookups (not even the packaged table)
        cfg.resolve()
        runs.append((out, search(cfg)))
    fidelity_main([*(str(o) for o, _ in runs), "--k", "6", "--eval-images", "32", "--device", "cpu",
                   "--nb201", str(nb201_csv)])
    table = NB201Table.load(nb201_csv)
    for out, result in runs:
        fid = json.loads((out / "fidelity.json").read_text())
        assert (out / "fidelity.png").is_file()
        assert fid["a"]["derived"] == result["genotype"] and fid["metric"] == "cifar10_test"
        ops = parse_arch_str(result["genotype"])
        for e, edge in enumerate(fid["a"]["edges"]):  # each swap looked up, β from the final α
            assert edge["acc"] == [table.query(format_arch_str(ops[:e] + [o] + ops[e + 1:]))["cifar10_test"]
                                   for o in NB201_OPS]
            assert edge["beta"] == pytest.approx(torch.softmax(torch.tensor(result["alphas"]["normal"][e],
                                                                            dtype=torch.float64), 0).tolist())
        b = fid["b"]
        assert len(set(b["cells"])) == 6 and b["nb201_acc"] == [table.query(c)["cifar10_test"] for c in b["cells"]]
        assert b["tau"] == pytest.approx(kendall_tau(b["supernet_acc"], b["nb201_acc"]))
        # (c)'s score is the discretized-net accuracy the search itself measured after its last epoch
        assert fid["c"]["supernet_acc"] == pytest.approx(result["final"]["discrete_valid_acc"])
        assert fid["c"]["nb201_acc"] == table.query(result["genotype"])["cifar10_test"]
    c = json.loads((tmp_path / "runs" / "nb201" / "darts-v1" / "cifar10" / "fidelity_runs.json").read_text())
    assert len(c["runs"]) == 2 and c["nb201_acc"] == [table.query(r["genotype"])["cifar10_test"] for _, r in runs]
    header, _, row = results_table(collect_runs(tmp_path / "runs")).splitlines()[:3]
    cells = dict(zip([h.strip() for h in header.strip("|").split(" | ")],
                     [x.strip() for x in row.strip("|").split(" | ")]))
    assert cells["τ edge (a)"] != "—" and cells["τ supernet (b)"] != "—"
    assert cells["n"] == "2"  # said once in its column; (c) over both runs names no n of its own
    assert "(n=" not in cells["τ search-eval (c)"] and "(n=" not in cells["τ edge (a)"]  # — if tied
    capsys.readouterr()
    for argv, why in ((["--k", "6"], "was run without --nb201: pass --nb201 PATH"),
                      (["--k", "0", "--nb201", str(nb201_csv)], "--k must be in 1..15625")):
        with pytest.raises(SystemExit) as err:  # bad input: one line, exit 2
            fidelity_main([str(runs[0][0]), *argv, "--device", "cpu"])
        line = capsys.readouterr().err
        assert err.value.code == 2 and line.count("\n") == 1 and why in line


@pytest.mark.parametrize("space", ["nb201", "nb201-3op"])
def test_hard_index_path_equals_one_hot_mixing(space):
    """discrete_accuracy runs only the chosen op per edge: exactly the reference supernet's one-hot mixing
    (and, to rounding, the fast path's, whose grouped convolutions sum in another order)."""
    from common.fast import FastSupernet
    from common.genotypes import genotype_weights
    from common.supernet import Supernet
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    ref = Supernet(space, C=4, N=1).double()
    torch.manual_seed(0)
    fast = FastSupernet(space, C=4, N=1).double()
    for cell in sample_cells(SPACES[space], 5, seed=3):
        w = {k: v.double() for k, v in genotype_weights(cell, ref.space).items()}
        index = {k: v.argmax(-1).tolist() for k, v in w.items()}
        mixed = ref(x, w, use_gammas=False)
        assert torch.equal(ref(x, w, index, use_gammas=False), mixed)
        assert torch.equal(fast(x, w, index, use_gammas=False), mixed)
        assert torch.allclose(fast(x, w, use_gammas=False), mixed, rtol=1e-10, atol=1e-12)
