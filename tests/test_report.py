"""common/report.py: table numbers against numpy, labels, data wording, PNGs, skipped plots, CLI errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.report import (
    LABEL_DIRS,
    NB201_COLUMNS,
    PAPER,
    collect_runs,
    curves,
    darts_table,
    data_description,
    header,
    label_of,
    main,
    make_plots,
    results_table,
)

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARGS = {"space": "nb201", "dataset": "cifar10", "data_dir": "/data", "epochs": 4, "limit_train": None,
        "seed": 0, "device": "auto", "partial_channels": 1, "script": "sa_darts", "reg": "sa"}


def nb201(c10_test: float, offset: float = 0.0) -> dict[str, float]:
    return {c: (c10_test if c == "cifar10_test" else 50.0 + i + offset) for i, c in enumerate(NB201_COLUMNS)}


def make_run(path: Path, epochs_done: int = 4, finished: bool = True, c10_test: float = 93.0,
             alpha_stats: bool = True, per_epoch_alpha: bool = False, **args: Any) -> Path:
    """A fake run directory as SearchRun writes it, with known numbers."""
    path.mkdir(parents=True)
    a = {**ARGS, **args}
    (path / "args.json").write_text(json.dumps(a))
    rng = np.random.default_rng(a["seed"])
    shape = (6, 5) if a["space"] == "nb201" else (14, 8)
    records = []
    for e in range(1, epochs_done + 1):
        rec: dict[str, Any] = {"epoch": e, "step": 10 * e, "op_entropy_mean": 1.6 - 0.3 * e + 0.01 * a["seed"],
                               "discrete_valid_acc": 40.0 + 5 * e, "genotype": "g", "nb201": nb201(10.0)}
        if alpha_stats:
            rec.update(alpha_mean=-0.1 * e, alpha_median=-0.05 * e, alpha_std=0.2 * e)
        if per_epoch_alpha:
            rec["alphas"] = {"normal": (rng.normal(size=shape) * e).tolist()}
        records.append(rec)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if finished:
        result = {"genotype": "g", "nb201": nb201(c10_test), "param_count": None, "epochs": a["epochs"],
                  "steps": 10 * epochs_done, "wall_time_s": 600.0, "device": "NVIDIA H100 80GB HBM3",
                  "alphas": {"normal": rng.normal(size=shape).tolist()}, "final": records[-1] if records else None}
        (path / "result.json").write_text(json.dumps(result))
    return path


def row_of(table: str, label: str, dataset: str = "cifar10") -> dict[str, str]:
    """The table row of (label, dataset) as {column header: cell}."""
    lines = table.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split(" | ")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] == label and cells[1] == dataset:
            return dict(zip(head, cells))
    raise AssertionError(f"no row {label}/{dataset} in\n{table}")


def test_mean_and_sample_std_match_numpy(tmp_path: Path) -> None:
    c10 = [93.12, 94.37, 91.05]
    for seed, acc in enumerate(c10):
        make_run(tmp_path / "sa-darts" / "cifar10" / f"seed{seed}", c10_test=acc, seed=seed)
    make_run(tmp_path / "sa-darts" / "cifar10" / "seed9", finished=False, epochs_done=2, seed=9)
    runs = collect_runs(tmp_path)
    assert [r.finished for r in runs].count(True) == 3 and len(runs) == 4
    row = row_of(results_table(runs), "SA-DARTS")
    v = np.array(c10)
    assert row["C10 test"] == f"{v.mean():.2f}±{v.std(ddof=1):.2f}"  # ddof=1, not numpy's default 0
    assert f"{v.std(ddof=0):.2f}" != f"{v.std(ddof=1):.2f}"  # the check above can tell them apart
    assert row["paper C10 test"] == PAPER["SA-DARTS"]
    assert row["n"] == "3 (+1 unfinished)"  # the unfinished run's metrics (C10 test 10.0) are not averaged
    assert row["C100 valid"] == "52.00±0.00"
    assert row["search time (min)"] == "10.0" and row["device"] == "NVIDIA H100 80GB HBM3"


def test_single_seed_marked_and_paper_only_for_cifar10_search(tmp_path: Path) -> None:
    make_run(tmp_path / "edd-darts-clip" / "cifar10" / "seed0", c10_test=94.123)
    make_run(tmp_path / "edd-darts-clip" / "cifar100" / "seed0", c10_test=93.0, dataset="cifar100")
    table = results_table(collect_runs(tmp_path))
    row = row_of(table, "EDD-DARTS (clip)")
    assert row["C10 test"] == "94.12" and row["n"] == "1" and row["paper C10 test"] == "94.05±0.11"
    assert row_of(table, "EDD-DARTS (clip)", "cifar100")["paper C10 test"] == "—"


def test_unfinished_run_listed(tmp_path: Path) -> None:
    make_run(tmp_path / "pcd" / "cifar10" / "seed1", finished=False, epochs_done=3, epochs=10, seed=1)
    out = tmp_path / "report"
    main([str(tmp_path), "--out", str(out)])
    text = (out / "results.md").read_text()
    assert "PCD / cifar10 / seed 1: unfinished (3/10 epochs)" in text
    assert row_of(results_table(collect_runs(tmp_path)), "PCD")["C10 test"] == "—"
    assert (out / "entropy.png").is_file()  # the unfinished run's curves are still drawn


def test_label_precedence() -> None:
    args = {"dataset": "cifar10", "script": "sa_darts", "reg": "sa", "partial_channels": 4}
    layout = Path("/r/edd-darts-clip/cifar10/seed3")
    assert label_of(layout, {**args, "label": "mine"}) == "mine"
    assert label_of(layout, args) == "EDD-DARTS (clip)"
    assert label_of(Path("runs/new-idea/cifar10/seed0"), args) == "new-idea"  # unknown dir: kept as is
    assert label_of(Path("runs/sa-darts/cifar100/seed0"), args) == "SAC-DARTS"  # dataset differs: method name
    assert label_of(Path("runs/x/cifar10/last"), args) == "SAC-DARTS"
    assert label_of(Path("x"), {"script": "sa_darts", "reg": "sa", "partial_channels": 1}) == "SA-DARTS"
    assert label_of(Path("x"), {"script": "darts"}) == "DARTS-V1"
    assert set(LABEL_DIRS.values()) == set(PAPER)
    assert all(" " not in d and "(" not in d for d in LABEL_DIRS)


def test_data_wording_hardware_and_epochs(tmp_path: Path) -> None:
    assert data_description({"dataset": "cifar10", "data_dir": "/x/cifar10_full"}) == "CIFAR-10 (JPEG-q75 copy)"
    assert data_description({"dataset": "cifar10", "data_dir": "/x/cifar10_jpeg"}) == "CIFAR-10 (JPEG-q75 copy)"
    assert data_description({"dataset": "cifar10", "data_dir": "/x/data", "limit_train": 128}) == \
        "CIFAR-10 subset (128 images per half) — NOT a paper reproduction"
    assert data_description({"dataset": "cifar10", "data_dir": "/data/cifar"}) == "CIFAR-10"
    make_run(tmp_path / "gdas" / "cifar10" / "seed0", epochs=4, data_dir="/d/cifar10_full")
    make_run(tmp_path / "gdas" / "cifar10" / "seed1", epochs=9, seed=1, limit_train=64)
    text = header(collect_runs(tmp_path))
    assert "CIFAR-10 (JPEG-q75 copy) (1 run)" in text
    assert "CIFAR-10 subset (64 images per half) — NOT a paper reproduction (1 run)" in text
    assert "NVIDIA H100 80GB HBM3 (2 runs)" in text
    assert "4 of 4 (1 run)" in text and "4 of 9 (1 run)" in text


def test_darts_table(tmp_path: Path) -> None:
    path = make_run(tmp_path / "sa-darts" / "cifar10" / "seed0", space="darts")
    result = json.loads((path / "result.json").read_text())
    pairs = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4
    result.update(genotype={"normal": pairs, "normal_concat": [2, 3, 4, 5],
                            "reduce": [["max_pool_3x3", 0], ["skip_connect", 2]] * 4, "reduce_concat": [2, 3, 4, 5]},
                  param_count=3_349_342)
    (path / "result.json").write_text(json.dumps(result))
    runs = collect_runs(tmp_path)
    table = darts_table(runs)
    assert "| SA-DARTS | darts | cifar10 | 0 | finished |" in table
    assert "N: sep3~0 sep3~1, sep3~0 sep3~1" in table and "R: max~0 skip~2" in table
    assert "| 3.35 |" in table
    assert results_table(runs) == "No NAS-Bench-201 runs."


def test_curves_mean_over_seeds_include_unfinished(tmp_path: Path) -> None:
    for seed in range(3):
        make_run(tmp_path / "sp-darts" / "cifar10" / f"seed{seed}", seed=seed, finished=seed < 2, epochs_done=2 + seed)
    data = curves(collect_runs(tmp_path), "op_entropy_mean")
    assert list(data) == ["SP-DARTS"]
    per_epoch = data["SP-DARTS"]
    assert sorted(per_epoch) == [1, 2, 3, 4]
    np.testing.assert_allclose(per_epoch[2], [1.0, 1.01, 1.02])  # 1.6 - 0.3·2 + 0.01·seed
    np.testing.assert_allclose(per_epoch[4], [0.42])  # only the unfinished seed got that far


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000, path


def test_all_plots_written(tmp_path: Path) -> None:
    for seed in range(2):
        make_run(tmp_path / "runs" / "sa-darts" / "cifar10" / f"seed{seed}", seed=seed, per_epoch_alpha=True)
    make_run(tmp_path / "runs" / "darts-v1" / "cifar10" / "seed0", alpha_stats=False, script="darts")
    notes: list[str] = []
    written = make_plots(collect_runs(tmp_path / "runs"), tmp_path / "out", notes=notes)
    names = ["entropy.png", "discrete_acc.png", "alpha_evolution.png", "sa_alpha_stats.png"]
    assert [p.name for p in written] == names
    for name in names:
        assert_png(tmp_path / "out" / name)
    assert not any("skipped" in n for n in notes)
    assert any("over epochs — SA-DARTS, seed 0" in n for n in notes)  # per-epoch α of the first SA run


def test_missing_data_skips_plots_with_note(tmp_path: Path) -> None:
    make_run(tmp_path / "runs" / "darts-v1" / "cifar10" / "seed0", alpha_stats=False, script="darts")
    make_run(tmp_path / "runs" / "darts-v1" / "cifar10" / "seed1", finished=False, epochs_done=0, seed=1)
    out = tmp_path / "out"
    main([str(tmp_path / "runs"), "--out", str(out)])
    text = (out / "results.md").read_text()
    assert not (out / "sa_alpha_stats.png").exists()
    assert "`sa_alpha_stats.png` skipped" in text
    assert "final softmax(α) per edge — DARTS-V1, seed 0 (no per-epoch α recorded)" in text
    assert "unfinished (0/4 epochs)" in text
    assert_png(out / "alpha_evolution.png")
    # an empty metrics file and no result: every plot skipped, each with its note
    empty = tmp_path / "empty"
    make_run(empty / "gdas" / "cifar10" / "seed0", finished=False, epochs_done=0)
    notes: list[str] = []
    assert make_plots(collect_runs(empty), tmp_path / "out2", notes=notes) == []
    assert sum("skipped" in n for n in notes) == 4


def test_alpha_run_option(tmp_path: Path) -> None:
    make_run(tmp_path / "sa-darts" / "cifar10" / "seed0", per_epoch_alpha=True)
    chosen = make_run(tmp_path / "gdas" / "cifar10" / "seed5", seed=5, script="edd_darts")
    out = tmp_path / "out"
    main([str(tmp_path), "--out", str(out), "--alpha-run", str(chosen)])
    assert "final softmax(α) per edge — GDAS, seed 5" in (out / "results.md").read_text()


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "common.report", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["missing", "empty", "bad-alpha-run"])
def test_cli_errors(tmp_path: Path, case: str) -> None:
    (tmp_path / "empty").mkdir()
    make_run(tmp_path / "runs" / "pcd" / "cifar10" / "seed0")
    argv = {"missing": [str(tmp_path / "nope")], "empty": [str(tmp_path / "empty")],
            "bad-alpha-run": [str(tmp_path / "runs"), "--alpha-run", str(tmp_path / "empty")]}[case]
    proc = run_cli(*argv)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert not (tmp_path / "runs" / "report").exists()


@pytest.mark.slow
def test_real_tiny_run(tmp_path: Path, shared_data: Path, nb201_csv: Path, capsys: pytest.CaptureFixture) -> None:
    from common.baseline import DartsConfig, search
    run_dir = tmp_path / "darts-v1" / "cifar10" / "seed0"
    cfg = DartsConfig(space="nb201", dataset="cifar10", data_dir=str(shared_data), nb201=str(nb201_csv),
                      limit_train=64, C=4, N=1, epochs=2, batch_size=32, eval_images=32, out=str(run_dir),
                      progress=False, device="cpu")
    cfg.resolve()
    result = search(cfg)
    capsys.readouterr()  # the search's own log lines and summary
    main([str(tmp_path)])
    printed = capsys.readouterr().out
    text = (tmp_path / "report" / "results.md").read_text()
    assert printed.strip() == text.strip()
    row = row_of(results_table(collect_runs(tmp_path)), "DARTS-V1")
    assert row["C10 test"] == f"{result['nb201']['cifar10_test']:.2f}" and row["paper C10 test"] == "54.30"
    assert row["n"] == "1" and row["epochs"] == "2" and row["device"] == "cpu"
    assert "CIFAR-10 subset (64 images per half) — NOT a paper reproduction" in text and "2 of 2" in text
    for name in ("entropy.png", "discrete_acc.png", "alpha_evolution.png"):
        assert_png(tmp_path / "report" / name)


def test_direct_runs_get_the_method_name_and_only_differing_fields(tmp_path: Path) -> None:
    for name, lam in (("a", 0.06), ("b", 0.06), ("c", 0.12)):
        make_run(tmp_path / name, script="edd_darts", backbone="darts", schedule="edd", lam=lam)
    make_run(tmp_path / "d", script="sp_darts")
    labels = sorted({r.label for r in collect_runs(tmp_path)})
    assert labels == ["EDD-DARTS (lam=0.06)", "EDD-DARTS (lam=0.12)", "SP-DARTS"]


def test_tiny_runs_say_what_they_can_and_cannot_show(tmp_path: Path) -> None:
    make_run(tmp_path / "a", limit_train=128)
    assert "cannot rank methods" in header(collect_runs(tmp_path))
    make_run(tmp_path / "b" / "c")
    assert "cannot rank methods" not in header(collect_runs(tmp_path / "b"))


def _saved_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Figures make_plots saves, by file name (the PNG is still written)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    saved: dict[str, Any] = {}
    original = Figure.savefig

    def record(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saved[Path(path).name] = self
        original(self, path, *args, **kwargs)
    monkeypatch.setattr(Figure, "savefig", record)
    return saved


def test_many_methods_get_a_panel_each_few_share_one_axes_legend_outside(tmp_path: Path, monkeypatch) -> None:
    saved = _saved_figures(monkeypatch)
    labels = list(LABEL_DIRS)[:5]  # more than MAX_CURVES_PER_AXES
    for i, d in enumerate(labels):
        make_run(tmp_path / "many" / d / "cifar10" / "seed0", seed=i)
    make_plots(collect_runs(tmp_path / "many"), tmp_path / "out")
    for name in ("entropy.png", "discrete_acc.png"):
        panels = [ax for ax in saved[name].axes if ax.axison]
        assert sorted(ax.get_title() for ax in panels) == sorted(LABEL_DIRS[d] for d in labels)
        for ax in panels:  # its own method in colour, the others grey behind
            assert sum(line.get_color() == "0.8" for line in ax.get_lines()) == len(labels) - 1
    for d in labels[:3]:
        make_run(tmp_path / "few" / d / "cifar10" / "seed0")
    make_plots(collect_runs(tmp_path / "few"), tmp_path / "out2")
    (ax,) = saved["entropy.png"].axes
    legend = ax.get_legend()
    assert len(legend.get_texts()) == 3 and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1  # outside


def test_headline_alpha_plot_is_the_nb201_run_and_darts_gets_its_own(tmp_path: Path, monkeypatch) -> None:
    saved = _saved_figures(monkeypatch)
    make_run(tmp_path / "darts" / "sa-darts" / "cifar10" / "seed0", space="darts", per_epoch_alpha=True)
    make_run(tmp_path / "nb201" / "sa-darts" / "cifar10" / "seed0", per_epoch_alpha=True)
    notes: list[str] = []
    make_plots(collect_runs(tmp_path), tmp_path / "out", notes=notes)
    assert any(n.startswith("`alpha_evolution.png`") and "nb201/sa-darts" in n for n in notes)
    darts = saved["alpha_evolution_darts_cifar10.png"]
    panels = [ax for ax in darts.axes if ax.axison]
    assert len(panels) == 14 and len({round(ax.get_position().width, 3) for ax in panels}) == 1
    assert darts.get_size_inches()[0] / 4 >= 3.5  # 4 columns of readable width (was 7 squeezed ones)
