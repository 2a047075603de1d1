"""run_all.sh's matrix: each paper's seed count per row, S1-S4 on CIFAR-10/100 and SVHN
with SP Table V's t_sp sweep and EDD/PCD, SA's Table 8 and three-op rows, EDD's LTS/LPCD rows — read from
`--dry-run`, and every distinct command line parsed by its script's own config parser."""
from __future__ import annotations

import re
import shlex
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the matrix's space folder, label, dataset and seed, from --out (a row may name its own --space:
# darts-nonone rows sit in the darts folder)
LINE = re.compile(r"--out \S+/([^/\s]+)/([^/\s]+)/([^/\s]+)/seed(\d+) ")


def dry_run(tmp_path: Path, *argv: str) -> list[str]:
    """The matrix run by run (--no-group-seeds; the grouping into --seeds processes: test_run_all_groups.py)."""
    proc = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--dry-run", "--no-group-seeds", "--runs",
                           str(tmp_path / "runs"), *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def matrix(lines: list[str]) -> Counter:
    """(space, label, dataset) → number of seeds, checking the seeds are 0 … n−1."""
    seeds: dict[tuple[str, str, str], list[int]] = {}
    for line in lines:
        space, label, dataset, seed = LINE.search(line).groups()
        seeds.setdefault((space, label, dataset), []).append(int(seed))
    for key, s in seeds.items():
        assert sorted(s) == list(range(len(s))), key
    return Counter({k: len(s) for k, s in seeds.items()})


def test_paper_seed_counts_and_datasets(tmp_path):
    lines = dry_run(tmp_path)
    m = matrix(lines)
    for label in ("sa-darts", "sac-darts", "beta-darts"):  # SA-DARTS Table 6: 10 seeds on NB201
        assert m["nb201", label, "cifar10"] == 10 and m["nb201", label, "cifar100"] == 10
    assert m["darts", "sp-darts", "cifar10"] == 5  # SP-DARTS: five seeds on the DARTS space
    for label in ("edd-darts", "pcd", "darts-v1-aer", "gdas-aer", "sp-darts", "darts-v1"):
        assert m["nb201", label, "cifar10"] == 3
    assert m["darts", "edd-darts", "cifar10"] == 3 and m["darts", "sa-darts", "cifar10"] == 3
    assert not any(space == "darts" and d != "cifar10" for space, _, d in m)  # DARTS space: CIFAR-10 only
    swept = {"edd-darts-lam": ("--lam", ("0.12", "0.24", "0.48", "0.96")),  # the authors' S1-S4 sweeps, one run
             "pcd-d": ("--pcd-d", ("0.1", "0.11", "0.12", "0.13")),      # each (their READMEs; SP Table V)
             "sp-darts-tsp": ("--t-sp", ("4e-4", "5e-4", "6e-4", "7e-4"))}
    authors = {prefix + v for prefix, (_, values) in swept.items() for v in values}
    for space in ("s1", "s2", "s3", "s4"):
        for dataset in ("cifar10", "cifar100", "svhn"):  # SP Table V, EDD Tables 2/7
            assert m[space, "edd-darts-paper", dataset] == 3 and m[space, "pcd-paper", dataset] == 3
            for label in authors:
                assert m[space, label, dataset] == 1
            for t in (4, 5, 6, 7):
                assert m[space, f"sp-darts-tsp{t}e-4-paper", dataset] == 1
        assert {label for s, label, _ in m if s == space} == {"edd-darts-paper", "pcd-paper"} | authors | {
            f"sp-darts-tsp{t}e-4-paper" for t in (4, 5, 6, 7)}
    for prefix, (flag, values) in swept.items():
        for v in values:
            rows = [x for x in lines if f"/{prefix}{v}/" in x]
            assert rows and all("--recipe authors " in x and f" {flag} {v} " in x for x in rows)
            paper = [x for x in lines if f"/{prefix}{v}-paper/" in x]
            assert all(f" {flag} {v} " in x and "--recipe" not in x for x in paper)
    init = {"m0.5": "-5e-4", "m1": "-1e-3", "m2": "-2e-3", "m5": "-5e-3"}  # SA Table 8
    for suffix, mean in init.items():
        rows = [x for x in lines if f"/darts-init-{suffix}/" in x]
        assert len(rows) == 3 and all(f"--alpha-init-mean={mean} " in x and "--dataset cifar10" in x for x in rows)
    assert {(label, d) for s, label, d in m if s == "nb201-3op"} == {("sa-darts", "cifar10"), ("darts-v1", "cifar10")}
    assert m["nb201", "lts", "cifar10"] == 3 and m["nb201", "lpcd", "cifar10"] == 3
    assert ("nb201", "lts", "cifar100") not in m


def test_seeds_flag_overrides_and_quick_drops_svhn_without_data(tmp_path):
    lines = dry_run(tmp_path, "--seeds", "0 1", "--spaces", "nb201 s2", "--only", "sa-darts|pcd")
    assert set(matrix(lines).values()) == {2}
    quick = dry_run(tmp_path, "--quick", "--data-dir", str(tmp_path / "nodata"), "--spaces", "s1")
    assert quick and not any("--dataset svhn" in x for x in quick) and set(matrix(quick).values()) == {1}
    (tmp_path / "withsvhn").mkdir()
    (tmp_path / "withsvhn" / "train_32x32.mat").write_bytes(b"")
    quick = dry_run(tmp_path, "--quick", "--data-dir", str(tmp_path / "withsvhn"), "--spaces", "s1")
    assert any("--dataset svhn" in x for x in quick)


def test_every_command_parses_with_its_script(tmp_path):
    """Each distinct row's flags (the --out and data flags aside) are valid for its script's parser."""
    import aer_darts
    import edd_darts
    import sa_darts
    import sp_darts
    from common.config import parse_config
    configs = {"edd_darts.py": edd_darts.EDDConfig, "aer_darts.py": aer_darts.AERConfig,
               "sp_darts.py": sp_darts.SPConfig, "sa_darts.py": sa_darts.SAConfig}
    seen = set()
    for line in dry_run(tmp_path, "--seeds", "0"):
        argv = shlex.split(line)[1:]
        script, flags = argv[0], tuple(argv[1:])
        key = (script, tuple(x for x in flags if "seed" not in x and "/" not in x))
        if key in seen:
            continue
        seen.add(key)
        cfg = parse_config(configs[script], list(flags))
        if "--t-sp" in flags:
            assert cfg.t_sp == float(flags[flags.index("--t-sp") + 1])
    assert len(seen) > 30


@pytest.mark.parametrize("space", ["nb201-3op"])
def test_quick_flags_for_the_three_op_space(tmp_path, space):
    lines = dry_run(tmp_path, "--quick", "--spaces", space)
    assert lines and all("--N 1" in x for x in lines)
