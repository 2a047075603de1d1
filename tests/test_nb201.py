"""Tests for common/nb201.py: arch strings, derivation, the accuracy table (official dict and CSV), CLI."""
from __future__ import annotations

import csv
import functools
import itertools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from common.nb201 import (
    COLUMNS,
    NB201_OPS,
    NB201Table,
    arch_str_to_onehot,
    derive_arch_str,
    export_csv,
    format_arch_str,
    main,
    parse_arch_str,
)

ROOT = Path(__file__).resolve().parents[1]
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ARCH_A = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
ARCH_B = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ops_lists = st.lists(st.sampled_from(NB201_OPS), min_size=6, max_size=6)
logits = arrays(np.float64, (6, 5), elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "common.nb201", *map(str, args)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# A tiny benchmark in the official on-disk format (plain dicts, as torch.save'd by the NB201 authors)
# ---------------------------------------------------------------------------------------------

# (dataset, eval sets) as trained in NB201: cifar10-valid = train split; cifar10 = train+valid.
OFFICIAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
SEEDS = {0: (777, 888, 999), 1: (777, 888), 2: (777,)}
COLUMN_SOURCE = {  # the documented mapping, written out independently of the module's table
    "cifar10_valid_valid": ("cifar10-valid", "x-valid"),
    "cifar10_test": ("cifar10", "ori-test"),
    "cifar100_valid": ("cifar100", "x-valid"),
    "cifar100_test": ("cifar100", "x-test"),
    "imagenet16_valid": ("ImageNet16-120", "x-valid"),
    "imagenet16_test": ("ImageNet16-120", "x-test"),
}


def final_acc(index: int, dataset: str, setname: str, seed: int, epochs: int) -> float:
    """A distinct, made-up final-epoch accuracy per (arch, dataset, set, seed, schedule)."""
    d = list(OFFICIAL_SETS).index(dataset)
    s = OFFICIAL_SETS[dataset].index(setname)
    return 40.0 + 10 * index + 3 * d + 1.1 * s + 0.37 * (seed % 7) + (5.0 if epochs == 12 else 0.0)


def results_count(index: int, arch: str, dataset: str, seed: int, epochs: int) -> dict:
    """State dict of one official ResultsCount (one trial); earlier epochs hold decoys (10%)."""
    acc1, loss, times = {}, {}, {}
    for setname in OFFICIAL_SETS[dataset]:
        for e in range(epochs):
            key = f"{setname}@{e}"
            acc1[key] = final_acc(index, dataset, setname, seed, epochs) if e == epochs - 1 else 10.0
            loss[key], times[key] = 1.0, 0.5
    return {
        "name": dataset, "net_state_dict": None,
        "train_acc1es": {e: 99.0 for e in range(epochs)}, "train_acc5es": {e: 100.0 for e in range(epochs)},
        "train_losses": {e: 0.1 for e in range(epochs)}, "train_times": {e: 2.0 for e in range(epochs)},
        "arch_config": {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": 10},
        "params": 0.5, "flop": 80.0, "seed": seed, "epochs": epochs, "latency": [0.01],
        "eval_names": list(OFFICIAL_SETS[dataset]), "eval_acc1es": acc1, "eval_times": times,
        "eval_losses": loss,
    }


def arch_results(index: int, arch: str, epochs: int) -> dict:
    """State dict of one official ArchResults (all trials of one arch under one schedule)."""
    seeds = SEEDS[index]
    return {
        "arch_index": index, "arch_str": arch, "clear_net_done": True,
        "dataset_seed": {ds: list(seeds) for ds in OFFICIAL_SETS},
        "all_results": {(ds, s): results_count(index, arch, ds, s, epochs) for ds in OFFICIAL_SETS for s in seeds},
    }


@pytest.fixture(scope="module")
def official_dict() -> dict:
    """Three archs in the layout of NAS-Bench-201-v1_*.pth: 'full' = 200 epochs, 'less' = 12."""
    archs = [ARCH_A, ARCH_B, ALL_SKIP]
    return {
        "meta_archs": archs,
        "arch2infos": {i: {"full": arch_results(i, a, 200), "less": arch_results(i, a, 12)}
                       for i, a in enumerate(archs)},
        "evaluated_indexes": set(range(len(archs))),
        "total_archs": len(archs),
    }


def expected_row(index: int) -> dict[str, float]:
    """Mean over seeds of the 200-epoch final accuracies, computed directly from the recipe."""
    return {c: float(np.mean([final_acc(index, ds, sn, s, 200) for s in SEEDS[index]]))
            for c, (ds, sn) in COLUMN_SOURCE.items()}


def test_from_official_dict_gives_200_epoch_seed_means(official_dict: dict) -> None:
    pytest.importorskip("nas_201_api", reason="nas-bench-201 (nas_201_api) not installed")
    table = NB201Table.from_official(official_dict)
    assert len(table) == 3
    for i, arch in enumerate(official_dict["meta_archs"]):
        assert table.index_of(arch) == i
        got = table.query(arch)
        assert list(got) == list(COLUMNS)
        assert got == pytest.approx(expected_row(i), abs=1e-9)


def test_from_official_agrees_with_get_more_info(official_dict: dict) -> None:
    api_mod = pytest.importorskip("nas_201_api", reason="nas-bench-201 (nas_201_api) not installed")
    api = api_mod.NASBench201API(official_dict, verbose=False)
    table = NB201Table.from_official(official_dict)
    for i, arch in enumerate(official_dict["meta_archs"]):
        info = {ds: api.get_more_info(i, ds, hp="200", is_random=False) for ds in OFFICIAL_SETS}
        want = [info["cifar10-valid"]["valid-accuracy"], info["cifar10"]["test-accuracy"],
                info["cifar100"]["valid-accuracy"], info["cifar100"]["test-accuracy"],
                info["ImageNet16-120"]["valid-accuracy"], info["ImageNet16-120"]["test-accuracy"]]
        assert list(table.query(arch).values()) == pytest.approx(want, abs=1e-9)


def test_official_file_torch_and_pickle_then_csv_round_trip(official_dict: dict, tmp_path: Path) -> None:
    pytest.importorskip("nas_201_api", reason="nas-bench-201 (nas_201_api) not installed")
    torch.save(official_dict, tmp_path / "tiny.pth")
    with (tmp_path / "tiny.pkl").open("wb") as f:
        pickle.dump(official_dict, f)
    for name in ("tiny.pth", "tiny.pkl"):
        table = NB201Table.load(tmp_path / name)
        out = export_csv(table, tmp_path / "out" / f"{name}.csv")
        with out.open(newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["index", "arch_str", *COLUMNS]
        assert [r[:2] for r in rows[1:]] == [[str(i), a] for i, a in enumerate(official_dict["meta_archs"])]
        back = NB201Table.from_csv(out)
        for i, arch in enumerate(official_dict["meta_archs"]):
            assert back.query(arch) == pytest.approx(expected_row(i), abs=5e-5)  # 4 decimals in the CSV


def test_official_unevaluated_arch_is_nan_and_arch_mismatch_is_rejected(official_dict: dict) -> None:
    pytest.importorskip("nas_201_api", reason="nas-bench-201 (nas_201_api) not installed")
    partial = dict(official_dict, arch2infos={0: official_dict["arch2infos"][0]}, evaluated_indexes={0})
    table = NB201Table.from_official(partial)
    assert np.isnan(list(table.query(ALL_SKIP).values())).all()
    assert table.best("cifar10_test")[0] == 0
    swapped = dict(official_dict, meta_archs=[ARCH_B, ARCH_A, ALL_SKIP])
    with pytest.raises(ValueError, match="index 0"):
        NB201Table.from_official(swapped)
    with pytest.raises(ValueError, match="evaluated_indexes"):
        NB201Table.from_official({"meta_archs": [], "arch2infos": {}})


def test_cli_export_official_file(official_dict: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("nas_201_api", reason="nas-bench-201 (nas_201_api) not installed")
    torch.save(official_dict, tmp_path / "tiny.pth")
    assert main(["export", str(tmp_path / "tiny.pth"), str(tmp_path / "tiny.csv")]) == 0
    assert NB201Table.from_csv(tmp_path / "tiny.csv").query(ARCH_B) == pytest.approx(expected_row(1), abs=5e-5)
    assert main(["query", str(tmp_path / "tiny.pth"), ALL_SKIP]) == 0
    got = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert got == pytest.approx({"index": 2, **expected_row(2)}, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# The real table (../shared/data/nb201/nb201_200ep.csv)
# ---------------------------------------------------------------------------------------------


@functools.cache
def _load_csv(path: Path) -> NB201Table:
    return NB201Table.from_csv(path)


@pytest.fixture
def real_table(nb201_csv: Path) -> NB201Table:
    """The real table, parsed once per session (skips with a reason where the CSV is absent)."""
    return _load_csv(nb201_csv)


def test_real_table_known_facts(nb201_csv: Path, real_table: NB201Table) -> None:
    assert len(real_table) == 15625
    index, arch, acc = real_table.best("cifar10_test")
    assert (index, arch) == (6111, BEST_C10)  # 13714 ties at 4 decimals; the lower index wins
    assert acc == pytest.approx(94.3733, abs=1e-9)
    assert real_table.query(BEST_C10)["cifar10_valid_valid"] == pytest.approx(91.6067, abs=1e-9)
    assert real_table.best("cifar100_test")[0::2] == (9930, pytest.approx(73.5133, abs=1e-9))
    assert real_table.best("imagenet16_test")[0::2] == (857, pytest.approx(47.3111, abs=1e-9))
    skip = real_table.query(ALL_SKIP)
    assert real_table.index_of(ALL_SKIP) == 1835
    assert skip["cifar10_valid_valid"] == pytest.approx(39.77, abs=0.01)
    assert skip["cifar10_test"] == pytest.approx(54.30, abs=0.01)


def test_real_table_export_reproduces_the_shared_csv(nb201_csv: Path, real_table: NB201Table,
                                                     tmp_path: Path) -> None:
    out = export_csv(real_table, tmp_path / "copy.csv")
    assert out.read_bytes() == nb201_csv.read_bytes()


def test_real_table_covers_the_whole_space(real_table: NB201Table) -> None:
    space = {format_arch_str(ops) for ops in itertools.product(NB201_OPS, repeat=6)}
    assert set(real_table.arch_strs) == space


# ---------------------------------------------------------------------------------------------
# Arch strings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, why", [
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_3x3'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "input index 1, expected 0"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "input index 0, expected 1"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~02|", "input index 02, expected 2"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|", "node 3 must have 3"),
    ("|none~0|+|none~0|none~1|", "expected 3 nodes"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", "expected 3 nodes"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2| ", "must start and end with '|'"),
    ("arch=|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
    ("|none~0|+|none~0|none1|+|none~0|none~1|none~2|", "not of the form 'op~input'"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|x|", "node 3 must have 3"),
    ("", "expected 3 nodes"),
])
def test_malformed_arch_strings_raise(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("|", r"\|")):
        parse_arch_str(bad)
    with pytest.raises(ValueError, match="invalid NB201 arch string"):
        NB201Table([ALL_SKIP], np.zeros((1, 6))).query(bad)
    with pytest.raises(ValueError, match="invalid NB201 arch string"):
        arch_str_to_onehot(bad)


def test_valid_arch_missing_from_table_raises(official_dict: dict) -> None:
    pytest.importorskip("nas_201_api", reason="nas-bench-201 (nas_201_api) not installed")
    with pytest.raises(ValueError, match="not in NB201Table"):
        NB201Table.from_official(official_dict).query(BEST_C10)


def test_format_rejects_bad_op_lists() -> None:
    with pytest.raises(ValueError, match="needs 6 ops"):
        format_arch_str(["none"] * 5)
    with pytest.raises(ValueError, match="unknown NB201 op 'max_pool_3x3'"):
        format_arch_str(["none"] * 5 + ["max_pool_3x3"])
    assert format_arch_str(["skip_connect"] * 6) == ALL_SKIP


@given(ops_lists)
def test_format_parse_round_trip(ops: list[str]) -> None:
    arch = format_arch_str(ops)
    assert parse_arch_str(arch) == ops
    # independent rendering: node j lists its inputs 0..j-1
    nodes, k = [], 0
    for j in (1, 2, 3):
        nodes.append("|" + "|".join(f"{ops[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    assert arch == "+".join(nodes)


@given(ops_lists)
def test_onehot_derive_round_trip(ops: list[str]) -> None:
    arch = format_arch_str(ops)
    onehot = arch_str_to_onehot(arch, dtype=torch.float64)
    assert onehot.shape == (6, 5) and onehot.dtype == torch.float64
    assert torch.equal(onehot.sum(1), torch.ones(6, dtype=torch.float64))
    assert [NB201_OPS[k] for k in onehot.argmax(1).tolist()] == ops
    assert derive_arch_str(onehot) == arch
    assert derive_arch_str(torch.softmax(5 * onehot, dim=-1)) == arch


@given(logits)
def test_derive_matches_numpy_argmax(a: np.ndarray) -> None:
    ops = [NB201_OPS[k] for k in np.argmax(a, axis=1)]
    assert parse_arch_str(derive_arch_str(torch.from_numpy(a))) == ops
    ops_no_none = [NB201_OPS[k] for k in np.argmax(a[:, 1:], axis=1) + 1]
    assert parse_arch_str(derive_arch_str(torch.from_numpy(a), exclude_none=True)) == ops_no_none


@given(logits, st.floats(1.0, 1e9))
def test_exclude_none_never_returns_none(a: np.ndarray, boost: float) -> None:
    a = a.copy()
    a[:, 0] = np.abs(a).max() + boost  # `none` dominates every edge
    assert derive_arch_str(torch.from_numpy(a)) == format_arch_str(["none"] * 6)
    assert "none" not in parse_arch_str(derive_arch_str(torch.from_numpy(a), exclude_none=True))


def test_derive_validates_shape_and_nan() -> None:
    for shape in [(5, 6), (6, 4), (1, 6, 5), (30,)]:
        with pytest.raises(ValueError, match=r"shape \(6, 5\)"):
            derive_arch_str(torch.zeros(shape))
    w = torch.zeros(6, 5)
    w[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        derive_arch_str(w)


# ---------------------------------------------------------------------------------------------
# Files and CLI errors
# ---------------------------------------------------------------------------------------------


def write_csv(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


HEADER = ",".join(["index", "arch_str", *COLUMNS])


def test_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    good = f"0,{ALL_SKIP},1,2,3,4,5,6"
    with pytest.raises(FileNotFoundError, match="NAS-Bench-201-v1_1-096897.pth"):
        NB201Table.load(tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError, match="v1_0-e61699.pth"):
        NB201Table.load(tmp_path / "absent.pth")
    missing = write_csv(tmp_path / "m.csv", HEADER.replace(",cifar100_test", ""), good[:-2])
    with pytest.raises(ValueError, match=r"m\.csv:1: missing column\(s\) cifar100_test"):
        NB201Table.from_csv(missing)
    nonnum = write_csv(tmp_path / "n.csv", HEADER, good, f"1,{BEST_C10},1,2,abc,4,5,6")
    with pytest.raises(ValueError, match=r"n\.csv:3: column cifar100_valid value 'abc' is not a number"):
        NB201Table.from_csv(nonnum)
    order = write_csv(tmp_path / "o.csv", HEADER, good.replace("0,", "1,", 1))
    with pytest.raises(ValueError, match=r"o\.csv:2: index '1', expected 0"):
        NB201Table.from_csv(order)
    badarch = write_csv(tmp_path / "b.csv", HEADER, good.replace("skip_connect~2", "skip~2"))
    with pytest.raises(ValueError, match=r"b\.csv:2: invalid NB201 arch string"):
        NB201Table.from_csv(badarch)
    with pytest.raises(ValueError, match="unknown NB201 column"):
        NB201Table.from_csv(write_csv(tmp_path / "g.csv", HEADER, good)).best("cifar10_valid")


def test_cli_query_real_csv(nb201_csv: Path) -> None:
    proc = run_cli("query", nb201_csv, BEST_C10)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["index"] == 6111
    assert got["cifar10_test"] == pytest.approx(94.3733, abs=1e-9)
    assert got["cifar10_valid_valid"] == pytest.approx(91.6067, abs=1e-9)
    assert set(got) == {"index", *COLUMNS}


def test_cli_unknown_arch_fails_with_one_line(nb201_csv: Path) -> None:
    proc = run_cli("query", nb201_csv, "|none~0|+|none~0|none~1|+|none~0|none~1|conv~2|")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("nb201: error: invalid NB201 arch string")
    assert "unknown op 'conv'" in proc.stderr


def test_cli_missing_file_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["query", str(tmp_path / "nb201.csv"), ALL_SKIP]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("nb201: error: NB201 table not found at") and "NAS-Bench-201-v1_1-096897.pth" in err
