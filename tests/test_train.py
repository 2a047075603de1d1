"""The evaluation phase (common/evalnet.py, common/train.py): published parameter counts against an independent
closed-form count, drop-path statistics, the auxiliary loss in closed form, a smoke epoch on real CIFAR-10,
kill + resume bit-identity, the NaN guard, and one-line errors for bad genotypes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_and_kill_after_epoch_1
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from common.data import DeviceLoader
from common.evalnet import (
    DARTS_V1,
    EVAL_OPS,
    NAMED_GENOTYPES,
    PC_DARTS,
    EvalCell,
    EvalNetwork,
    GenotypeError,
    drop_path,
    eval_loss,
    genotype_param_count,
    parse_genotype,
)
from common.genotypes import DARTS_V2, Genotype
from common.report import collect_runs, darts_table
from common.train import TrainConfig, Trainer, main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- parameter counts
def _op_params(op: str, C: int, stride: int) -> int:
    """Parameters of one evaluation-size op (affine BN: 2C), written from DARTS's operations.py by hand."""
    bn = 2 * C
    dil = lambda k: C * k * k + C * C + bn  # depthwise k×k, pointwise 1×1, BN
    return {"skip_connect": 0 if stride == 1 else C * C + bn, "max_pool_3x3": 0, "avg_pool_3x3": 0, "noise": 0,
            "sep_conv_3x3": 2 * dil(3), "sep_conv_5x5": 2 * dil(5), "dil_conv_3x3": dil(3),
            "dil_conv_5x5": dil(5)}[op]


def _closed_form_count(g: Genotype, C: int = 36, layers: int = 20, classes: int = 10) -> int:
    """NetworkCIFAR's parameter count summed op by op (independent of the modules)."""
    total = 3 * 3 * C * 9 + 2 * 3 * C  # stem conv + BN
    C_pp, C_p, C_cur = 3 * C, 3 * C, C
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        C_cur *= 2 if red else 1
        cell, concat = (g.reduce, g.reduce_concat) if red else (g.normal, g.normal_concat)
        total += C_pp * C_cur + 2 * C_cur  # preprocess0: FactorizedReduce or 1×1 ReLUConvBN (same count)
        total += C_p * C_cur + 2 * C_cur  # preprocess1
        total += sum(_op_params(op, C_cur, 2 if red and src < 2 else 1) for op, src in cell)
        C_pp, C_p = C_p, len(concat) * C_cur
    return total + C_p * classes + classes


def test_darts_v2_params_are_the_published_3_349_342_without_aux_head() -> None:
    # DARTS train logs: "param size = 3.349342MB" (DARTS_V2, C=36, 20 cells, CIFAR-10; the aux head excluded
    # by utils.count_parameters_in_MB). The head: 1×1 conv 576→128, BN, 2×2 conv 128→768, BN, linear 768→10.
    net = EvalNetwork(DARTS_V2, 36, 20, 10, auxiliary=True)
    assert net.param_count() == genotype_param_count(DARTS_V2) == _closed_form_count(DARTS_V2) == 3_349_342
    aux = 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == 3_349_342 + aux


def test_second_published_genotype_pc_darts_is_3_6m() -> None:
    # PC-DARTS (Xu et al., ICLR 2020), Table 1 and its README: 3.6M params on CIFAR-10.
    n = genotype_param_count(PC_DARTS)
    assert n == _closed_form_count(PC_DARTS) and round(n / 1e6, 1) == 3.6
    # DARTS_V1 (DARTS Table 1 rounds both orders to 3.3M; its cell has one dil_conv fewer than V2's)
    assert genotype_param_count(DARTS_V1) == _closed_form_count(DARTS_V1) == 3_169_414
    assert genotype_param_count(DARTS_V2, num_classes=100) == 3_349_342 + 90 * (576 + 1)


@settings(max_examples=15)
@given(st.lists(st.tuples(st.sampled_from(EVAL_OPS), st.integers(0, 99)), min_size=16, max_size=16),
       st.sampled_from([(8, 5), (16, 8)]))
def test_param_count_matches_closed_form_for_random_genotypes(entries, size) -> None:
    pairs = [(op, src % (2 + i // 2)) for i, (op, src) in enumerate(entries)]
    g = Genotype(pairs[:8], [2, 3, 4, 5], pairs[8:], [2, 3, 4, 5])
    C, layers = size
    assert genotype_param_count(g, C, layers) == _closed_form_count(g, C, layers)


# ------------------------------------------------------------------------------------- drop-path
def test_drop_path_zero_probability_is_identity() -> None:
    x = torch.randn(64, 3, 4, 4)
    assert drop_path(x, 0.0) is x


@pytest.mark.parametrize("p", [0.1, 0.3, 0.7])
def test_drop_path_drops_whole_samples_at_rate_p(p: float) -> None:
    torch.manual_seed(0)
    n = 20_000
    x = torch.rand(n, 2, 3, 3) + 0.5
    y = drop_path(x, p)
    dropped = (y == 0).flatten(1).all(1)
    kept = (y != 0).flatten(1).all(1)
    assert bool((dropped | kept).all()), "a sample must be dropped or kept as a whole"
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(dropped.sum().item() - n * p) < 4 * sigma  # Binomial(n, p) within 4σ
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))  # survivors rescaled: E[y] = x


def test_drop_path_spares_identity_paths_and_is_off_in_eval_mode() -> None:
    g = Genotype([("skip_connect", 0), ("sep_conv_3x3", 1)] * 4, [2, 3, 4, 5],
                 [("skip_connect", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5])
    cell = EvalCell(g.normal, g.normal_concat, 8, 8, 8, reduction=False, reduction_prev=False)
    assert cell.droppable == [False, True] * 4
    red = EvalCell(g.reduce, g.reduce_concat, 8, 8, 8, reduction=True, reduction_prev=False)
    assert red.droppable == [True] * 8  # a strided skip (FactorizedReduce) is not an identity
    torch.manual_seed(0)
    net = EvalNetwork(g, C=4, layers=3, auxiliary=True).eval()
    x = torch.randn(4, 3, 32, 32)
    net.drop_path_prob = 0.0
    ref, aux = net(x)
    net.drop_path_prob = 0.9
    assert aux is None and torch.equal(net(x)[0], ref)


def test_drop_path_changes_training_forward_only_when_p_positive() -> None:
    net = EvalNetwork(DARTS_V2, C=4, layers=3).train()
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(1)
    a = net(x)[0]
    torch.manual_seed(2)
    assert torch.equal(a, net(x)[0])  # p = 0: no randomness
    net.drop_path_prob = 0.5
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x)[0])


# ------------------------------------------------------------------------------------- auxiliary loss
def test_auxiliary_loss_enters_with_its_weight() -> None:
    torch.manual_seed(0)
    net = EvalNetwork(DARTS_V2, C=4, layers=3, auxiliary=True).train().double()
    x, y = torch.randn(6, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 5])
    logits, aux = net(x)
    assert aux is not None and aux.shape == (6, 10)
    nll = lambda z: (torch.logsumexp(z, 1) - z[torch.arange(6), y]).mean()  # cross-entropy by hand
    for w in (0.0, 0.4, 1.7):
        torch.testing.assert_close(eval_loss(logits, aux, y, w), nll(logits) + w * nll(aux))
    g_aux, = torch.autograd.grad(eval_loss(logits, aux, y, 0.4), aux)
    torch.testing.assert_close(g_aux, 0.4 * (F.softmax(aux, 1) - F.one_hot(y, 10)) / 6)
    assert EvalNetwork(DARTS_V2, C=4, layers=3, auxiliary=False)(x.float())[1] is None


# ------------------------------------------------------------------------------------- genotypes and config
@pytest.mark.parametrize("mutate,message", [
    (lambda g: g.update(normal=g["normal"][:7]), "normal cell has 7 (op, input) entries"),
    (lambda g: g.update(reduce=g["reduce"][:6] + [["conv_9x9", 0], ["skip_connect", 1]]), "unknown op 'conv_9x9'"),
    (lambda g: g.update(normal=[["sep_conv_3x3", 2]] + g["normal"][1:]), "input 2 of node 2"),
    (lambda g: g.update(normal_concat=[2, 3, 4, 9]), "normal_concat"),
    (lambda g: g.pop("reduce"), "lacks reduce"),
])
def test_bad_genotype_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture, mutate, message) -> None:
    g = json.loads(json.dumps(DARTS_V2._asdict()))
    mutate(g)
    with pytest.raises(GenotypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_genotype(g)
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"genotype": g}))
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--out", str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err and err.startswith("error: bad genotype")
    assert not (tmp_path / "run").exists()


def test_named_genotypes_and_sources(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert parse_genotype(NAMED_GENOTYPES["DARTS_V2"]) == DARTS_V2
    assert parse_genotype(json.loads(json.dumps(DARTS_V1._asdict()))) == DARTS_V1
    nb201 = tmp_path / "nb"
    nb201.mkdir()
    (nb201 / "result.json").write_text(json.dumps({"genotype": "|nor_conv_3x3~0|+|none~0|none~1|+|a~0|b~1|c~2|"}))
    for source, text in ((str(nb201), "NB201 cells need no training"), ("DARTS_V9", "not a run directory"),
                         (str(tmp_path), "holds no result.json")):
        with pytest.raises(SystemExit):
            main([source, "--device", "cpu"])
        err = capsys.readouterr().err
        assert text in err and err.count("\n") == 1


def test_presets_fill_only_unset_flags() -> None:
    cfg = TrainConfig()
    cfg.resolve()
    assert (cfg.epochs, cfg.batch_size, cfg.C, cfg.layers, cfg.lr, cfg.lr_min, cfg.momentum, cfg.wd, cfg.cutout,
            cfg.drop_path, cfg.aux_weight, cfg.grad_clip) == (600, 96, 36, 20, 0.025, 0.0, 0.9, 3e-4, 16, 0.3, 0.4, 5.0)
    cfg = TrainConfig(preset="robustdarts", drop_path=0.25)
    cfg.resolve("cifar100")
    assert (cfg.dataset, cfg.layers, cfg.C, cfg.drop_path, cfg.epochs) == ("cifar100", 8, 16, 0.25, 600)
    cfg = TrainConfig(preset="robustdarts")
    cfg.resolve("cifar10")
    assert (cfg.layers, cfg.C, cfg.drop_path) == (20, 36, 0.2)


@pytest.mark.parametrize("flag,value", [
    ("--epochs", "0"), ("--batch-size", "0"), ("--C", "0"), ("--layers", "0"), ("--limit-train", "0"),
    ("--limit-test", "0"), ("--log-every", "0"), ("--seed", "-1"), ("--lr", "0"), ("--lr", "nan"),
    ("--lr-min", "-1"), ("--lr-min", "1"), ("--momentum", "1"), ("--wd", "-1"), ("--cutout", "-1"),
    ("--drop-path", "1"), ("--aux-weight", "inf"), ("--grad-clip", "-1"), ("--debug-nan-step", "-1"),
    ("--device", "mps"),
])
def test_out_of_range_flag_is_one_line_naming_it(flag: str, value: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["DARTS_V2", flag, value, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and flag in err, err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------- end to end
SMALL = ["--preset", "smoke", "--device", "cpu", "--no-progress"]


def _fake_search(run: Path, space: str = "s3", dataset: str = "cifar10", genotype: Genotype = DARTS_V2,
                 **args: object) -> Path:
    """A finished search run directory as SearchRun writes it (args.json, metrics.jsonl, result.json)."""
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"script": "sa_darts", "space": space, "dataset": dataset, "seed": 0,
                                               "epochs": 50, "data_dir": "./data", **args}))
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 50, "genotype": genotype._asdict()}) + "\n")
    (run / "result.json").write_text(json.dumps({"genotype": genotype._asdict(), "param_count": 3_349_342,
                                                 "wall_time_s": 60.0, "device": "cpu"}))
    return run


@pytest.mark.slow
def test_smoke_epoch_on_cifar10_subset_from_a_search_run(shared_data: Path, tmp_path: Path) -> None:
    search = _fake_search(tmp_path / "runs" / "s3" / "sa-darts" / "cifar10" / "seed0")
    proc = subprocess.run([sys.executable, "-m", "common.train", str(search), *SMALL, "--data-dir", str(shared_data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = search / "eval"  # the default run directory of a search's evaluation
    args = json.loads((out / "args.json").read_text())
    assert (args["epochs"], args["layers"], args["C"], args["limit_train"], args["dataset"]) == (1, 5, 8, 192, "cifar10")
    assert args["source_info"]["search_space"] == "s3" and args["genotype"] == json.loads(json.dumps(DARTS_V2._asdict()))
    [rec] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"epoch", "step", "lr", "drop_path", "train_loss", "train_acc", "test_loss", "test_acc", "time"} <= set(rec)
    assert rec["step"] == 6 and rec["lr"] == 0.025 and rec["drop_path"] == 0.0  # ceil(192 / 32) steps
    result = json.loads((out / "result.json").read_text())
    assert result["param_count"] == _closed_form_count(DARTS_V2, 8, 5) == args["param_count"]
    assert result["test_error"] == pytest.approx(100 - rec["test_acc"]) and 0 <= rec["test_acc"] <= 100
    assert rec["test_acc"] * 128 / 100 == pytest.approx(round(rec["test_acc"] * 128 / 100))  # whole images of 128
    assert "summary: params 0.04M" in (out / "log.txt").read_text()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    # the report shows the evaluation beside the search, not as a run of its own
    runs = collect_runs(tmp_path / "runs")
    assert [r.path for r in runs] == [search]
    assert f"| {result['test_error']:.2f} (1 ep, cifar10) | 2.49 |" in darts_table(runs)  # SA paper Table 4, S3


def test_report_puts_trained_error_beside_the_papers(tmp_path: Path) -> None:
    search = _fake_search(tmp_path / "darts" / "sp-darts" / "cifar10" / "seed0", space="darts", recipe="authors")
    (search / "eval").mkdir()
    (search / "eval" / "args.json").write_text(json.dumps({"script": "train", "dataset": "cifar10"}))
    (search / "eval" / "result.json").write_text(json.dumps({"test_error": 2.614, "param_count": 3_349_342,
                                                            "epochs": 600, "dataset": "cifar10"}))
    unevaluated = _fake_search(tmp_path / "darts" / "sa-darts" / "cifar10" / "seed0", space="darts")
    s_run = _fake_search(tmp_path / "s1" / "sp-darts-tsp5e-4" / "svhn" / "seed0", space="s1", dataset="svhn")
    runs = collect_runs(tmp_path)
    assert sorted(r.path for r in runs) == sorted([search, unevaluated, s_run])
    table = darts_table(runs)
    assert "SP-DARTS [authors' recipe] | darts" in table
    assert "| — | — | 2.33 |" in table  # SP Table V, S1 on SVHN (best of its four t_sp runs)
    assert "| 3.35 | 2.61 (600 ep, cifar10) | 2.50±0.07 (3.5M) |" in table  # SP paper Table III
    assert "| — | — | 2.60±0.06 (4.1M) |" in table  # SA-DARTS: not evaluated yet; SA paper Table 2


def test_run_all_eval_queues_finished_darts_and_s1_s4_searches(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for rel in ("darts/sp-darts/cifar10/seed0", "s2/edd-darts-lam0.24/cifar10/seed0", "nb201/sp-darts/cifar10/seed0",
                "nb201-3op/sa-darts/cifar10/seed0", "s3/pcd-paper/cifar100/seed0"):
        (runs / rel).mkdir(parents=True)
        (runs / rel / "result.json").write_text("{}")
    (runs / "s3/pcd-paper/cifar100/seed0/eval").mkdir()
    (runs / "s3/pcd-paper/cifar100/seed0/eval/result.json").write_text("{}")  # already evaluated
    run_all = ["bash", str(ROOT / "run_all.sh"), "--dry-run", "--seeds", "0", "--data-dir", "D"]
    proc = subprocess.run([*run_all, "--eval", "--runs", str(runs), "--", "--epochs", "7"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [f"python3 -m common.train {runs}/{rel} --out {runs}/{rel}/eval --preset {preset} --seed 0 "
                     "--data-dir D --resume --no-progress --epochs 7"
                     for rel, preset in (("darts/sp-darts/cifar10/seed0", "darts"),
                                         ("s2/edd-darts-lam0.24/cifar10/seed0", "robustdarts"))]
    searches = subprocess.run([*run_all, "--spaces", "darts s1 s2 s3 s4", "--runs", str(tmp_path / "empty")],
                              capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert f"2 evaluations to do ({len(searches) - 3} DARTS/S1-S4 searches not finished yet" in proc.stderr
    assert not (runs / "jobs.txt").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_killed_run_resumes_bit_identically(shared_data: Path, tmp_path: Path) -> None:
    common = ["DARTS_V2", *SMALL, "--data-dir", str(shared_data), "--epochs", "2", "--limit-train", "64",
              "--limit-test", "64", "--drop-path", "0.5"]
    ref = tmp_path / "ref"
    main([*common, "--out", str(ref)])  # uninterrupted, in this process
    cut = tmp_path / "cut"
    run_and_kill_after_epoch_1([sys.executable, "-m", "common.train", *common, "--out", str(cut)], cut, ROOT,
                               poll_s=0.02)
    assert not (cut / "result.json").exists(), "the run finished before it could be killed"
    with pytest.raises(SystemExit) as refused:  # without --resume: refuses, loses nothing
        main([*common, "--out", str(cut)])
    assert refused.value.code == 2
    main([*common, "--out", str(cut), "--resume"])
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "time"}
                       for line in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(ref) == strip(cut) and [r["epoch"] for r in strip(ref)] == [1, 2]
    assert strip(ref)[1]["drop_path"] == 0.25  # 0.5 · epoch 1 / 2: the resumed epoch draws drop-path masks
    a = torch.load(ref / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(cut / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "resumed from" in (cut / "log.txt").read_text()
    with pytest.raises(SystemExit) as again:  # --resume on a finished run: says so, exit 0, changes nothing
        main([*common, "--out", str(cut), "--resume"])
    assert again.value.code == 0 and torch.load(cut / "checkpoint.pt", weights_only=False)["model"].keys() == a.keys()


@pytest.mark.slow
def test_nan_loss_stops_with_exit_3_and_keeps_checkpoint(shared_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["DARTS_V2", *SMALL, "--data-dir", str(shared_data), "--epochs", "2", "--limit-train", "64",
              "--limit-test", "32", "--debug-nan-step", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 3 and "global step 3 (epoch 2)" in err and err.count("\n") == 1
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not (out / "result.json").exists()


@pytest.mark.gpu
def test_cuda_smoke_epoch_in_bf16_channels_last_from_the_device_loader(shared_data: Path, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = TrainConfig(preset="smoke", device="cuda", data_dir=str(shared_data), out=str(tmp_path / "run"),
                      progress=False)
    cfg.resolve()
    trainer = Trainer(cfg, DARTS_V2, "DARTS_V2", {"kind": "named", "name": "DARTS_V2"})
    assert trainer.amp and isinstance(trainer.train_loader, DeviceLoader)
    assert trainer.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    result = trainer.run()
    assert result["param_count"] == _closed_form_count(DARTS_V2, 8, 5)
    assert 0 < result["test_loss"] < 10 and 0 <= result["test_acc"] <= 100 and result["device"] != "cpu"

