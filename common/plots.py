"""The report's plots: entropy and accuracy curves, α evolution, SA's α statistics, EDD's schedule entropy.

`make_plots(runs, out_dir)` draws them from the runs `common.report.collect_runs` reads (matplotlib, Agg);
the report CLI (common/report.py) embeds them in results.md.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.summary import DATASET_NAMES, SHORT_OPS, SPACE_NAMES, Run, _num


def _groups(runs: Sequence[Run], key: Callable[[Run], tuple]) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(key(r), []).append(r)
    return groups


def _curve_key(runs: Sequence[Run]) -> Callable[[Run], str]:
    """Legend text: the label, plus space/dataset where the runs differ in them."""
    many_data = len({r.dataset for r in runs}) > 1
    many_space = len({r.space for r in runs}) > 1
    return lambda r: r.label + (f" [{r.space}]" if many_space else "") + (f" / {r.dataset}" if many_data else "")


def curves(runs: Sequence[Run], key: str) -> dict[str, dict[int, list[float]]]:
    """legend → epoch → values over seeds of metrics key `key` (finite values only)."""
    name = _curve_key(runs)
    out: dict[str, dict[int, list[float]]] = {}
    for r in runs:
        for rec in r.metrics:
            v = _num(rec.get(key))
            if math.isfinite(v):
                out.setdefault(name(r), {}).setdefault(int(rec.get("epoch", 0)), []).append(v)
    return out


def _palette(runs: Sequence[Run]) -> dict[str, tuple[Any, str]]:
    """(colour, line style) per legend text, the same for a method in every plot."""
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r.label for r in runs))
    cmap = plt.get_cmap("tab10")  # strong colours; past ten, the line style tells methods apart
    styles = ("-", "--", "-.", ":")
    return {n: (cmap(i % cmap.N), styles[(i // cmap.N) % len(styles)]) for i, n in enumerate(names)}


def _plot_band(ax: Any, per_epoch: dict[int, list[float]], label: str, style: tuple[Any, str]) -> None:
    epochs = sorted(per_epoch)
    vals = [np.asarray(per_epoch[e]) for e in epochs]
    color, linestyle = style
    ax.plot(epochs, [v.mean() for v in vals], label=label, color=color, linestyle=linestyle,
            marker="o" if len(epochs) < 15 else None, markersize=4)
    if any(v.size > 1 for v in vals):
        ax.fill_between(epochs, [v.min() for v in vals], [v.max() for v in vals], color=color, alpha=0.15)


def _by_space_and_data(runs: Sequence[Run]) -> list[tuple[str, str, list[Run]]]:
    """(file suffix, title suffix, runs) per (space, dataset); NB201 / CIFAR-10 first, without suffix."""
    groups = _groups(runs, lambda r: (r.space, r.dataset))
    keys = sorted(groups, key=lambda k: (k != ("nb201", "cifar10"), k))
    return [("" if i == 0 else f"_{space}_{dataset}",
             f"{SPACE_NAMES.get(space, space)}, {DATASET_NAMES.get(dataset, dataset)} search", groups[(space, dataset)])
            for i, (space, dataset) in enumerate(keys)]


def _style_epoch_axis(ax: Any, xlabel: str = "search epoch") -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


#: Up to this many curves share one axes (legend outside); more get a panel each (small multiples).
MAX_CURVES_PER_AXES = 4


def _curve_plot(runs: Sequence[Run], key: str, ylabel: str, title: str, path: Path, ymin: float | None,
                palette: dict[str, tuple[Any, str]]) -> bool:
    """One curve per label: on one axes with the legend outside when few, else a panel per label (the
    others drawn thin and grey behind it, same axes everywhere) so that no curve hides another."""
    import matplotlib.pyplot as plt
    series = curves(runs, key)
    if not series:
        return False
    names = list(series)
    if len(names) <= MAX_CURVES_PER_AXES:
        fig, ax = plt.subplots(figsize=(9, 4.8))
        for name in names:
            _plot_band(ax, series[name], name, palette.get(name, ("C0", "-")))
        ax.set(ylabel=ylabel, title=title)
        _style_epoch_axis(ax)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        axes = [ax]
    else:
        cols = 4 if len(names) <= 16 else 5
        rows = math.ceil(len(names) / cols)
        fig, grid = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows + 1.0), sharex=True, sharey=True,
                                 squeeze=False, layout="constrained")  # keeps the shared labels off the ticks
        axes = list(grid.flat)
        for ax, name in zip(axes, names):
            for other in names:
                if other != name:
                    epochs = sorted(series[other])
                    ax.plot(epochs, [np.mean(series[other][e]) for e in epochs], color="0.8", lw=0.8, zorder=1)
            _plot_band(ax, series[name], name, palette.get(name, ("C0", "-")))
            ax.set_title(name, fontsize=9)
            _style_epoch_axis(ax, "")
        for i, ax in enumerate(axes[len(names):], start=len(names)):
            ax.axis("off")
            axes[i - cols].xaxis.set_tick_params(labelbottom=True)  # the panel above ends its column
        fig.suptitle(title + "\n(each panel one method in colour, the others in grey)", fontsize=11)
        fig.supxlabel("search epoch", fontsize=9)
        fig.supylabel(ylabel, fontsize=9)
    if ymin is not None:
        top = max(axes[0].get_ylim()[1], ymin + 1e-3)
        axes[0].set_ylim(ymin, top + 0.05 * (top - ymin))  # shared: sets every panel
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _alpha_run(runs: Sequence[Run], alpha_run: str | Path | None) -> Run | None:
    if alpha_run is not None:
        target = Path(alpha_run).resolve()
        return next((r for r in runs if r.path.resolve() == target), None)
    has_alpha = [r for r in runs if (r.result or {}).get("alphas") or any("alphas" in m for m in r.metrics)]
    preferred = [r for r in has_alpha if r.label.startswith("SA-DARTS") or "AER" in r.label
                 or r.args.get("script") in ("sa_darts", "aer_darts")]
    return (preferred or has_alpha or [None])[0]


def _alpha_plot(run: Run, path: Path) -> str:
    """softmax(α) of the normal cell per edge; over epochs if recorded, else final bars. → title."""
    import matplotlib.pyplot as plt

    from common.spaces import SPACES
    space = SPACES.get(run.space)
    per_epoch = [(int(m.get("epoch", i + 1)), m["alphas"]) for i, m in enumerate(run.metrics)
                 if isinstance(m.get("alphas"), dict)]
    kind = "normal"
    staged = per_epoch and any(np.shape(a[kind]) != np.shape(per_epoch[0][1][kind]) for _, a in per_epoch)
    if staged:  # P-DARTS: later stages prune the op sets (the names below are the first stage's)
        per_epoch = [(e, a) for e, a in per_epoch if np.shape(a[kind]) == np.shape(per_epoch[0][1][kind])]
    if per_epoch:
        epochs = [e for e, _ in per_epoch]
        w = _softmax(np.asarray([a[kind] for _, a in per_epoch], dtype=np.float64))  # (T, E, M)
        title = (f"softmax(α) per edge over epochs — {run.label}, seed {run.args.get('seed', '?')}"
                 + (" (first P-DARTS stage)" if staged else ""))
    else:
        w = _softmax(np.asarray(run.result["alphas"][kind], dtype=np.float64))[None]  # (1, E, M)
        title = (f"final softmax(α) per edge — {run.label}, seed {run.args.get('seed', '?')} "
                 "(no per-epoch α recorded)")
    n_edges, n_ops = w.shape[1], w.shape[2]
    cols = min(n_edges, 4 if n_edges > 8 else 3)  # DARTS: 14 edges in 4 × 4 panels of readable size
    rows = math.ceil(n_edges / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows + 1.0), sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for e, ax in enumerate(axes.flat):
        if e >= n_edges:
            ax.axis("off")
            continue
        ops = space.edge_ops[kind][e] if space else tuple(f"op{o}" for o in range(n_ops))
        to, src = space.edges[e] if space else (e, "?")
        for o in range(n_ops):
            name, color = SHORT_OPS.get(ops[o], ops[o]), colors[o % len(colors)]
            if per_epoch:
                ax.plot(epochs, w[:, e, o], color=color, label=name)
            else:
                ax.bar(o, w[0, e, o], color=color, label=name)
        ax.set_title(f"edge {src}→{to}", fontsize=9)
        if per_epoch:
            _style_epoch_axis(ax, "epoch")
        else:
            ax.set_xticks(range(n_ops), [SHORT_OPS.get(n, n) for n in ops], rotation=45, fontsize=7)
        if e % cols == 0:
            ax.set_ylabel("softmax(α)", fontsize=8)
        if per_epoch and (space is None or len(set(space.edge_ops[kind])) > 1):
            ax.legend(fontsize=6)
    if per_epoch and space is not None and len(set(space.edge_ops[kind])) == 1:
        handles, names = axes.flat[0].get_legend_handles_labels()
        if n_edges < axes.size:  # in the first empty panel, beside the curves
            axes.flat[n_edges].legend(handles, names, loc="center", fontsize=9, title="op")
        else:
            fig.legend(handles, names, loc="lower center", ncol=n_ops, fontsize=8)
    fig.suptitle(title + f" [{kind} cell, {run.space}]", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if n_edges == axes.size else 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return title


def _alpha_stats_plot(runs: Sequence[Run], path: Path, where: str, palette: dict[str, tuple[Any, str]]) -> bool:
    import matplotlib.pyplot as plt
    stats = [("alpha_mean", "mean of α"), ("alpha_median", "median of α"), ("alpha_std", "std of α")]
    series = {k: curves(runs, k) for k, _ in stats}
    if not any(series.values()):
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, name) in zip(axes, stats):
        for legend, per_epoch in series[key].items():
            _plot_band(ax, per_epoch, legend, palette.get(legend, ("C0", "-")))
        ax.set(ylabel=name, title=name)
        _style_epoch_axis(ax)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Statistics of all α entries per epoch — {where} (SA-DARTS Fig. 3; mean over seeds, "
                 "min–max band)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def init_entropy_at(temperatures: Sequence[float], n_ops: int = 5, std: float = 1e-3, samples: int = 20000,
                    seed: int = 0) -> list[float]:
    """EDD paper Fig. 2B: mean entropy (nats) of softmax(a/t) at each t, a ~ std·N(0, 1) per op (DARTS init).

    Args:
        temperatures: the schedule's temperatures (e.g. ETS or LTS points, or a run's per-epoch t).
        n_ops: ops per edge (5 on NB201).
        std: scale of the α initialisation (1e-3 in DARTS/NB201).
        samples: edges drawn (the same draw for every t, so the curve is smooth in t).
        seed: numpy seed of the draw.

    Returns:
        One mean entropy per temperature.
    """
    a = std * np.random.default_rng(seed).standard_normal((samples, n_ops))
    out = []
    for t in temperatures:
        z = a / t
        z = z - z.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        out.append(float(-(np.exp(logp) * logp).sum(-1).mean()))
    return out


#: Marker and line style per schedule line, so that lines and their legend entries tell apart in grey too.
SCHEDULE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
SCHEDULE_STYLES = ("-", "--", "-.", ":")


def schedule_entropy_plot(schedules: dict[str, Sequence[float]], path: Path, n_ops: int = 5,
                          title: str = "Entropy of softmax(α/t) at the α init along each schedule (EDD Fig. 2B)",
                          xlabel: str = "decay point n", start: int = 1) -> None:
    """One line per distinct schedule: `init_entropy_at` of its temperatures against the point/epoch number
    (`start`, `start` + 1, …). Schedules with equal temperatures share one line whose legend entry names them
    all (`A = B`), so no line hides another; each line has its own marker and line style."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    lines: dict[tuple[float, ...], list[str]] = {}
    for name, temps in schedules.items():
        lines.setdefault(tuple(float(t) for t in temps), []).append(name)
    fig, ax = plt.subplots(figsize=(9, 4.4))
    colors = plt.get_cmap("tab10")
    for i, (temps, names) in enumerate(lines.items()):  # later lines smaller and on top: close points nest
        ax.plot(range(start, start + len(temps)), init_entropy_at(temps, n_ops), color=colors(i % 10),
                marker=SCHEDULE_MARKERS[i % len(SCHEDULE_MARKERS)], linestyle=SCHEDULE_STYLES[i % len(SCHEDULE_STYLES)],
                markersize=max(10 - 1.2 * i, 4), zorder=2 + i, label=" = ".join(names))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set(xlabel=xlabel, ylabel=f"mean edge entropy (nats; max ln {n_ops} = {math.log(n_ops):.3f})", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              title="equal schedules share a line", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _schedule_entropy_runs(runs: Sequence[Run], path: Path) -> bool:
    """Fig. 2B from runs: each temperature-scheduled run's per-epoch t through `init_entropy_at` (seed 0 each),
    against the search epoch (1-based, as metrics.jsonl and the other plots count)."""
    from common.spaces import SPACES
    schedules: dict[str, list[float]] = {}
    n_ops = 5
    for r in runs:
        temps = [_num(m.get("temperature")) for m in r.metrics]
        if r.args.get("backbone", "darts") == "darts" and temps and all(map(math.isfinite, temps)):
            schedules.setdefault(r.label, temps)
            if r.space in SPACES:
                n_ops = SPACES[r.space].alpha_shape("normal")[1]
    if not schedules:
        return False
    schedule_entropy_plot(schedules, path, n_ops, xlabel="search epoch (the epoch's t)", start=1)
    return True


def make_plots(runs: Sequence[Run], out_dir: str | Path, alpha_run: str | Path | None = None,
               notes: list[str] | None = None) -> list[Path]:
    """Write the PNGs that have data into `out_dir`; append a line per skipped plot to `notes`.

    Args:
        runs: from `collect_runs`.
        out_dir: created if missing.
        alpha_run: run directory for alpha_evolution.png (default: the first SA-DARTS/AER run, else the
            first run with α).
        notes: if given, gets one line per skipped plot and the source of alpha_evolution.png.

    Returns:
        The PNG paths written.
    """
    import matplotlib
    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = notes if notes is not None else []
    written: list[Path] = []
    palette, groups = _palette(runs), _by_space_and_data(runs)
    plots = [("entropy", "op_entropy_mean", "mean edge entropy of the op weights (nats)",
              "Mean edge entropy per epoch", 0.0),
             ("discrete_acc", "discrete_valid_acc", "valid accuracy of the discretized net (%)",
              "Discretized-network validation accuracy per epoch", None)]
    for stem, key, ylabel, title, ymin in plots:
        paths = [out / f"{stem}{suffix}.png" for suffix, _, _ in groups]
        written += [path for path, (_, where, group) in zip(paths, groups) if _curve_plot(
            group, key, ylabel, f"{title} — {where}\n(mean over seeds, min–max band)", path, ymin, palette)]
        if not any(p in written for p in paths):
            notes.append(f"`{stem}.png` skipped: no run has `{key}` in metrics.jsonl.")
    # α of one run: the headline from the NB201 / CIFAR-10 group (or --alpha-run), one per other group
    for suffix, _, group in (groups if alpha_run is None else [("", "", runs)]):
        name = f"alpha_evolution{suffix}.png"
        chosen = _alpha_run(group, alpha_run)
        if chosen is None:
            if not suffix:
                notes.append(f"`{name}` skipped: " + (f"--alpha-run {alpha_run} is not a run found here."
                             if alpha_run is not None else "no run has α (per-epoch `alphas` or result.json)."))
        elif not any("alphas" in m for m in chosen.metrics) and not (chosen.result or {}).get("alphas"):
            notes.append(f"`{name}` skipped: run {chosen.path} has no α recorded.")
        else:
            title = _alpha_plot(chosen, out / name)
            written.append(out / name)
            notes.append(f"`{name}`: {title}; run `{chosen.path}`.")
    if _schedule_entropy_runs(groups[0][2] if groups else [], out / "schedule_entropy.png"):  # EDD runs only
        written.append(out / "schedule_entropy.png")
    paths = [out / f"sa_alpha_stats{suffix}.png" for suffix, _, _ in groups]
    written += [path for path, (_, where, group) in zip(paths, groups)
                if _alpha_stats_plot(group, path, where, palette)]
    if not any(p in written for p in paths):
        notes.append("`sa_alpha_stats.png` skipped: no run has `alpha_mean`/`alpha_median`/`alpha_std`.")
    return written


# ---------------------------------------------------------------------------------------- main
