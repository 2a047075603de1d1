"""The report's figures read right: 1-based epoch axes, no line hidden under another, shared labels off the tick
numbers, points labelled by method; results.md says n once per row."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

matplotlib.use("Agg")
from test_report import _saved_figures, make_run, row_of  # noqa: E402

from common.fidelity import _plot_runs  # noqa: E402
from common.report import LABEL_DIRS, collect_runs, make_plots, render, results_table  # noqa: E402


def _with_temperatures(path: Path, temps: list[float]) -> None:
    """Give a fake run's epochs the temperatures `temps` (one per epoch)."""
    lines = (path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) | {"temperature": t} for line, t in zip(lines, temps)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_schedule_entropy_is_1_based_and_hides_no_line(tmp_path: Path, monkeypatch) -> None:
    saved = _saved_figures(monkeypatch)
    schedules = {"edd-darts": [1.0, 0.5, 0.25, 0.1], "pcd": [1.0, 0.5, 0.25, 0.1],  # equal: one line, both named
                 "lts": [1.0, 0.8, 0.6, 0.4], "lpcd": [1.0, 0.9, 0.8, 0.7]}
    for i, (d, temps) in enumerate(schedules.items()):
        _with_temperatures(make_run(tmp_path / d / "cifar10" / "seed0", seed=i), temps)
    make_plots(collect_runs(tmp_path), tmp_path / "out")
    (ax,) = saved["schedule_entropy.png"].axes
    lines = ax.get_lines()
    assert len(lines) == 3  # the two equal schedules share one line
    for line in lines:
        assert list(line.get_xdata()) == [1, 2, 3, 4]  # epochs as metrics.jsonl counts them, not 0..T-1
    assert ax.get_xlim()[0] > 0 and all(t == int(t) for t in ax.get_xticks() if 1 <= t <= 4)
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == len(lines)
    ys = [tuple(line.get_ydata()) for line in lines]
    assert len(set(ys)) == len(ys)  # no line drawn over an identical one
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"{LABEL_DIRS['edd-darts']} = {LABEL_DIRS['pcd']}" in texts
    assert LABEL_DIRS["lts"] in texts and LABEL_DIRS["lpcd"] in texts


def test_panel_grid_y_label_clears_the_tick_numbers(tmp_path: Path, monkeypatch) -> None:
    saved = _saved_figures(monkeypatch)
    for i, d in enumerate(list(LABEL_DIRS)[:13]):  # 13 methods: a 4 × 4 grid of panels
        make_run(tmp_path / d / "cifar10" / "seed0", seed=i)
    make_plots(collect_runs(tmp_path), tmp_path / "out")
    for name in ("entropy.png", "discrete_acc.png"):
        fig = saved[name]
        canvas = FigureCanvasAgg(fig)  # the saved figure was closed: draw it again, as saved
        canvas.draw()
        renderer = canvas.get_renderer()
        label = fig._supylabel.get_window_extent(renderer)
        ticks = [t.get_window_extent(renderer) for ax in fig.axes if ax.axison
                 for t in ax.get_yticklabels() if t.get_visible() and t.get_text()]
        assert ticks and label.x1 <= min(t.x0 for t in ticks), name  # left of every tick number
        xlabel = fig._supxlabel.get_window_extent(renderer)
        xticks = [t.get_window_extent(renderer) for ax in fig.axes if ax.axison
                  for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        assert xticks and xlabel.y1 <= min(t.y0 for t in xticks), name  # below every tick number


def test_fidelity_runs_labels_points_by_method(tmp_path: Path, monkeypatch) -> None:
    saved = _saved_figures(monkeypatch)
    runs = [make_run(tmp_path / d / "cifar10" / f"seed{s}", seed=s)
            for d, s in (("sa-darts", 0), ("sa-darts", 1), ("edd-darts", 0))]
    c = {"runs": [str(r) for r in runs], "nb201_acc": [90.0, 91.0, 92.0], "supernet_acc": [50.0, 52.0, 51.0],
         "tau": 0.33}
    _plot_runs(c, tmp_path / "fidelity_runs.png")
    (ax,) = saved["fidelity_runs.png"].axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [LABEL_DIRS["sa-darts"], LABEL_DIRS["edd-darts"]]
    assert len(ax.collections) == 2 and [len(col.get_offsets()) for col in ax.collections] == [2, 1]
    notes = sorted((a.get_text(), tuple(a.xy)) for a in ax.texts)
    assert notes == [("seed 0", (90.0, 50.0)), ("seed 0", (92.0, 51.0)), ("seed 1", (91.0, 52.0))]
    assert (tmp_path / "fidelity_runs.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("seeds", [1, 2])
def test_results_md_says_n_once_per_row(tmp_path: Path, seeds: int) -> None:
    for s in range(seeds):
        make_run(tmp_path / "sa-darts" / "cifar10" / f"seed{s}", seed=s, c10_test=93.0 + s)
    runs = collect_runs(tmp_path)
    text = render(runs, [], [])
    assert "the row's n finished seeds" in text
    assert "(n=" not in text.split("\n| Method", 1)[1]  # in no table cell
    row = row_of(results_table(runs), LABEL_DIRS["sa-darts"])
    assert row["n"] == str(seeds)
    assert row["C10 test"] == ("93.00" if seeds == 1 else "93.50±0.71")


def test_a_cell_over_fewer_runs_than_its_row_says_its_own_n(tmp_path: Path) -> None:
    for s in range(3):
        make_run(tmp_path / "sa-darts" / "cifar10" / f"seed{s}", seed=s)
    result_file = tmp_path / "sa-darts" / "cifar10" / "seed2" / "result.json"
    result = json.loads(result_file.read_text())
    del result["nb201"]["cifar100_test"]
    result_file.write_text(json.dumps(result))
    row = row_of(results_table(collect_runs(tmp_path)), LABEL_DIRS["sa-darts"])
    assert row["n"] == "3" and row["C100 test"].endswith("(n=2)") and "(n=" not in row["C10 test"]
