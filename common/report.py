"""Results table and plots from search run directories.

    python -m common.report runs/ [--out runs/report] [--alpha-run runs/sa-darts/cifar10/seed0]

Every folder under RUNS_DIR that holds an `args.json` is a run (written by `common.run.SearchRun`);
it is finished when it also holds `result.json`. The method label of a run is, in this order, an
explicit `label` in args.json, the `<label>` of a `RUNS_DIR/.../<label>/<dataset>/seed<k>/` layout
(directory names of run_all.sh, mapped by `LABEL_DIRS`), or the method's name from args.json
(`method_label`; direct runs of one method that differ in a key field get that field appended).

Outputs in OUT (default RUNS_DIR/report), also printed: `results.md` with
  * a header naming the data (JPEG copy / subset wording), the hardware and the epochs actually run;
  * the NB201 table: one row per (label, search dataset), finished seeds n, mean ± sample std (ddof=1)
    of the six NB201 accuracies, the paper's CIFAR-10 test number beside ours, search time, device;
  * the DARTS-skeleton table (spaces darts, s1-s4): one row per run with its genotype and size, and,
    once `python -m common.train RUN` has trained it from scratch into `RUN/eval/` (run_all.sh --eval),
    the evaluated network's params and final test error beside the paper's (`PAPER_EVAL`);
  * unfinished runs as "unfinished (k/E epochs)" (their metrics feed the curves only);
  * in the NB201 table, ranking-fidelity columns τ (a)/(b)/(c) from the runs' fidelity.json
    (`python -m common.fidelity`, `fidelity_cells`);
and PNGs: `entropy.png` (op_entropy_mean per epoch, mean over seeds, min-max band; up to four labels
share one axes with the legend outside, more get a panel each with the others in grey behind),
`discrete_acc.png` (discrete_valid_acc, the same way), `alpha_evolution.png` (softmax(α) per edge of
one run over epochs, or its final softmax(α) as bars when no per-epoch α was logged), `sa_alpha_stats.png`
(SA-DARTS's α mean/median/std per epoch). The headline plots are of NB201 / CIFAR-10 runs (or the first
space/dataset present); other (space, dataset) pairs get `entropy_<space>_<dataset>.png`,
`alpha_evolution_<space>_<dataset>.png` etc. A plot without data is skipped with a note in results.md.
Also `schedule_entropy.png` (EDD Fig. 2B: entropy of softmax(a/t) at the α init along each
temperature-scheduled run's t, `init_entropy_at`); with the `lpcd`/`lts` rows `entropy.png` is EDD's Fig. 4A.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.plots import (  # noqa: F401 - re-exported: their home was this module
    _groups,
    curves,
    init_entropy_at,
    make_plots,
    schedule_entropy_plot,
)
from common.stats import kendall_tau
from common.summary import (  # noqa: F401 - re-exported: the report's names since before summary.py
    DATASET_NAMES,
    NB201_COLUMNS,
    NB201_HEADERS,
    PAPER,
    SHORT_OPS,
    SPACE_NAMES,
    Run,
    _duration,
    _num,
    method_label,
    run_summary,
    short_genotype,
)

#: The papers' test errors (%) of the searched genotype trained from scratch, keyed by (label, space, dataset
#: searched and evaluated on); params (M) where the paper gives them. EDD: paper 000 Table 3 (DARTS space)
#: and Table 2 (S1-S4 on C100/SVHN); SP: paper 002 Tables III and V; SA/SAC: paper 003 Table 2 (error =
#: 100 − accuracy) and Table 4; AER: paper 001 Table 2 ("DARTS-AER", mean of 3).
PAPER_EVAL: dict[tuple[str, str, str], str] = {
    ("EDD-DARTS", "darts", "cifar10"): "2.52±0.10 (3.6M)", ("DARTS-V1-AER", "darts", "cifar10"): "2.66±0.05 (3.39M)",
    ("SP-DARTS", "darts", "cifar10"): "2.50±0.07 (3.5M)", ("SA-DARTS", "darts", "cifar10"): "2.60±0.06 (4.1M)",
    ("SAC-DARTS", "darts", "cifar10"): "2.51±0.04 (3.8M)",
    **{("SP-DARTS", f"s{i + 1}", d): e for d, errs in (("cifar10", "2.70 2.66 2.51 2.60"),
                                                       ("cifar100", "22.30 20.55 21.04 21.49"),
                                                       ("svhn", "2.33 2.30 2.32 2.42"))
       for i, e in enumerate(errs.split())},
    **{("EDD-DARTS", f"s{i + 1}", d): e for d, errs in (("cifar100", "22.27 21.73 21.08 20.66"),
                                                        ("svhn", "2.23 2.30 2.32 2.45"))
       for i, e in enumerate(errs.split())},
    **{("SA-DARTS", f"s{i + 1}", "cifar10"): e for i, e in enumerate("2.78 3.02 2.49 2.87".split())},
}
#: run_all.sh's directory names → method labels (the keys of PAPER).
LABEL_DIRS = {"sa-darts": "SA-DARTS", "sac-darts": "SAC-DARTS", "sp-darts": "SP-DARTS",
              "edd-darts": "EDD-DARTS", "edd-darts-clip": "EDD-DARTS (clip)", "pcd": "PCD",
              "ets-gdas": "ETS-GDAS", "darts-v1-aer": "DARTS-V1-AER", "darts-v2-aer": "DARTS-V2-AER",
              "gdas-aer": "GDAS-AER", "darts-v1": "DARTS-V1", "darts-v2": "DARTS-V2", "gdas": "GDAS",
              "beta-darts": "beta-DARTS", "lts": "LTS-DARTS", "lpcd": "LPCD-DARTS",
              "darts-init-m0.5": "DARTS (α init -0.5e-3)", "darts-init-m1": "DARTS (α init -1e-3)",
              "darts-init-m2": "DARTS (α init -2e-3)", "darts-init-m5": "DARTS (α init -5e-3)"}
#: Label suffixes naming the recipe a run used (`--recipe`; run_all.sh's `<label>-paper` rows).
RECIPE_SUFFIX = {"paper": " [paper recipe]", "authors": " [authors' recipe]"}
#: run_all.sh's S1-S4 rows per swept value (`sp-darts-tsp5e-4`, `edd-darts-lam0.24`, `pcd-d0.11`): the method's
#: folder name is what this leaves.
SWEEP_SUFFIX = re.compile(r"-(tsp|lam|d)[0-9.e+-]+$")


def base_label(label: str) -> str:
    """The method label without its recipe suffix (the key of PAPER)."""
    for suffix in RECIPE_SUFFIX.values():
        label = label.removesuffix(suffix)
    return label


#: args.json fields that tell configurations of one script apart (fallback labels).
KEY_FIELDS = ("backbone", "reg", "schedule", "softmax", "objective", "lam", "lam_neg", "lam_pos",
              "clip_alpha", "partial_channels")
QUICK_NOTE = (
    "**Tiny runs (`--limit-train`, e.g. `run_all.sh --quick`).** They show that search, derivation, NB201 "
    "lookup and report run end to end, and that each method's mechanism acted (its schedule values in "
    "metrics.jsonl: temperature, λ, p, α statistics; quick EDD/PCD/LPCD runs skip their warm-ups and "
    "decay every epoch, quick EDD-clip has a clip the gradients reach). They cannot rank methods: a few steps move α by about 1e-3, so the "
    "derived cells and their NB201 numbers are close to random draws.")
_SEED_DIR = re.compile(r"seed\d+")


class ReportError(Exception):
    """A user-facing failure: one line on stderr, exit code 2."""






def _given_label(run_path: str | Path, args: dict[str, Any]) -> str | None:
    """args["label"], else the `<label>` of a `<label>/<dataset>/seed<k>` layout, else None.

    Recipes (issue 17): a `<label>-paper` folder is `<LABEL> [paper recipe]`; a run with `recipe: authors`
    in args.json gets ` [authors' recipe]`; other runs (the paper recipe, the default) get no suffix.
    """
    if args.get("label"):
        return str(args["label"])
    parts = Path(run_path).parts
    if len(parts) >= 3 and _SEED_DIR.fullmatch(parts[-1]) and parts[-2] == args.get("dataset", parts[-2]):
        name, suffix = parts[-3], RECIPE_SUFFIX["authors"] if args.get("recipe") == "authors" else ""
        if name.endswith("-paper") and SWEEP_SUFFIX.sub("", name.removesuffix("-paper")) in LABEL_DIRS:
            name, suffix = name.removesuffix("-paper"), RECIPE_SUFFIX["paper"]
        return LABEL_DIRS.get(name, name) + suffix
    return None


def label_of(run_path: str | Path, args: dict[str, Any]) -> str:
    """The method label: args["label"], else `<label>/<dataset>/seed<k>` layout, else `method_label`
    (with ` [authors' recipe]` for a run with `recipe: authors`)."""
    given = _given_label(run_path, args)
    if given is not None:
        return given
    return method_label(args) + (RECIPE_SUFFIX["authors"] if args.get("recipe") == "authors" else "")
def _split_same_labels(runs: list[Run]) -> None:
    """Direct runs (no given label) sharing a method label but differing in a key field get the differing
    fields appended, e.g. `EDD-DARTS (lam=0.12)`, so that they are not averaged as seeds of one setting."""
    direct = [r for r in runs if _given_label(r.path, r.args) is None]
    for (label,), group in _groups(direct, lambda r: (r.label,)).items():
        differ = [k for k in KEY_FIELDS if len({str(r.args.get(k)) for r in group}) > 1]
        for r in group if differ else []:
            r.label = f"{label} ({', '.join(f'{k}={r.args.get(k)}' for k in differ)})"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"warning: skipping {path}: {type(err).__name__}", file=sys.stderr)
        return None


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a torn last line of a killed run: keep what parses
            continue
    return [r for r in records if isinstance(r, dict)]


def collect_runs(root: str | Path) -> list[Run]:
    """Every run directory (a folder with args.json) under `root`, sorted by label, dataset, seed."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"runs directory {root} does not exist")
    runs = []
    for args_file in sorted(root.rglob("args.json")):
        args = _read_json(args_file)
        if not isinstance(args, dict):
            continue
        path = args_file.parent
        if args.get("script") == "train":  # an evaluation run (common.train): shown with its search run
            continue
        result = _read_json(path / "result.json") if (path / "result.json").is_file() else None
        evaluation = _read_json(path / "eval" / "result.json") if (path / "eval" / "result.json").is_file() else None
        runs.append(Run(path, label_of(path, args), args, _read_metrics(path / "metrics.jsonl"), result,
                        isinstance(result, dict), evaluation if isinstance(evaluation, dict) else None))
    _split_same_labels(runs)
    order = {label: i for i, label in enumerate(PAPER)}
    runs.sort(key=lambda r: (order.get(base_label(r.label), len(order)), r.label, r.dataset, r.args.get("seed", 0), str(r.path)))
    return runs


# ---------------------------------------------------------------------------------------- tables


def mean_std(values: Sequence[float], n: int | None = None) -> str:
    """`mean±std` with the sample std (ddof=1); `mean (n=1)` for one value; `—` for none.

    With `n` (the row's count, said once in its own column) a cell of exactly `n` values leaves its count
    out; a cell of fewer (some runs lack the value) says `(n=k)`.
    """
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return "—"
    count = "" if v.size == n else f" (n={v.size})"
    if v.size == 1:
        return f"{v[0]:.2f}{count}"
    return f"{v.mean():.2f}±{v.std(ddof=1):.2f}{count}"


def data_description(args: dict[str, Any]) -> str:
    """What the search data was: JPEG copy, `--limit-train` subset, the small shared/data copy."""
    name = DATASET_NAMES.get(str(args.get("dataset")), str(args.get("dataset")))
    data_dir = str(args.get("data_dir", ""))
    if "cifar10_full" in data_dir or "jpeg" in data_dir.lower():
        name += " (JPEG-q75 copy)"
    if args.get("limit_train"):
        return f"{name} subset ({args['limit_train']} images per half) — NOT a paper reproduction"
    if Path(data_dir).parts[-2:] == ("shared", "data"):
        return f"{name} subset (the small real-data copy in shared/data) — NOT a paper reproduction"
    return name


def _minutes(m: float) -> str:
    return f"{m:.1f}" if m >= 10 else f"{m:.2f}"


def _device(run: Run) -> str:
    return str((run.result or {}).get("device") or run.args.get("device", "?"))


def _counts(values: Sequence[Any]) -> str:
    seen: dict[str, int] = {}
    for v in values:
        seen[str(v)] = seen.get(str(v), 0) + 1
    return ", ".join(f"{k} ({n} run{'s' * (n > 1)})" for k, n in seen.items())


def header(runs: Sequence[Run]) -> str:
    """The lines stating data, hardware and epochs actually run."""
    done = sum(r.finished for r in runs)
    hardware = _counts([_device(r) for r in runs if r.finished]) or "no finished run"
    epochs = _counts([f"{r.epochs_done} of {r.args.get('epochs', '?')}" for r in runs])
    lines = [f"Run directories: {len(runs)} ({done} finished, {len(runs) - done} unfinished).", "",
             f"- Data: {_counts([data_description(r.args) for r in runs])}",
             f"- Hardware (result.json `device`): {hardware}",
             f"- Epochs actually run (of those asked for): {epochs}"]
    if any(r.args.get("limit_train") for r in runs):
        lines += ["", QUICK_NOTE]
    return "\n".join(lines)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows])




def _nb201_skeleton(run: Run) -> bool:
    """NB201-skeleton runs (nb201, nb201-3op): their cells are NB201 arch strings."""
    from common.spaces import SPACES
    return run.space in SPACES and SPACES[run.space].skeleton == "nb201"


FIDELITY_HEADERS = ("τ edge (a)", "τ supernet (b)", "τ search-eval (c)")


def fidelity_cells(runs: Sequence[Run]) -> list[str]:
    """The ranking-fidelity columns from each run's fidelity.json (`python -m common.fidelity`).

    (a), (b): mean ± std over the runs that have one; (c): Kendall τ over those runs between each final
    supernet's accuracy of its derived cell and that cell's NB201 accuracy (needs two runs or more).
    """
    data = [d for d in (_read_json(r.path / "fidelity.json") if (r.path / "fidelity.json").is_file() else None
                        for r in runs) if isinstance(d, dict)]
    if not data:
        return ["—"] * len(FIDELITY_HEADERS)
    a = [_num(d.get("a", {}).get("tau_mean")) for d in data]
    b = [_num(d.get("b", {}).get("tau")) for d in data]
    pairs = [(_num(d.get("c", {}).get("supernet_acc")), _num(d.get("c", {}).get("nb201_acc"))) for d in data]
    pairs = [p for p in pairs if all(map(math.isfinite, p))]
    c = kendall_tau(*zip(*pairs)) if len(pairs) > 1 else math.nan
    n = len(runs)
    return [mean_std(a, n), mean_std(b, n), (f"{c:.2f}" + ("" if len(pairs) == n else f" (n={len(pairs)})"))
            if math.isfinite(c) else "—"]


def results_table(runs: Sequence[Run]) -> str:
    """Markdown NB201 table: one row per (label, search dataset) of NB201-space runs."""
    nb = [r for r in runs if _nb201_skeleton(r)]
    if not nb:
        return "No NAS-Bench-201 runs."
    head = ["Method", "search data", "n", *NB201_HEADERS[:2], "paper C10 test", *NB201_HEADERS[2:],
            "search time (min)", "epochs", "device", *FIDELITY_HEADERS]
    rows = []
    for (label, dataset), group in _groups(nb, lambda r: (r.label + ("" if r.space == "nb201" else f" [{r.space}]"),
                                                         r.dataset)).items():
        done = [r for r in group if r.finished]
        cells = [mean_std([_num((r.result.get("nb201") or {}).get(c)) for r in done], len(done)) for c in NB201_COLUMNS]
        n = str(len(done)) + (f" (+{len(group) - len(done)} unfinished)" if len(group) > len(done) else "")
        paper = PAPER.get(base_label(label), "—") if dataset == "cifar10" else "—"
        minutes = [_num(r.result.get("wall_time_s")) / 60 for r in done]
        time_cell = _minutes(np.nanmean(minutes)) if done and not all(map(math.isnan, minutes)) else "—"
        rows.append([label, dataset, n, *cells[:2], paper, *cells[2:], time_cell,
                     ", ".join(sorted({str(r.epochs_done) for r in done})) or "—",
                     ", ".join(sorted({_device(r) for r in done})) or "—", *fidelity_cells(done)])
    return _md_table(head, rows)




def paper_eval(run: Run) -> str:
    """The paper's trained-from-scratch test error for the run's method, space and dataset (`PAPER_EVAL`);
    recipe suffixes are dropped, and the S1-S4 rows per swept value (`sp-darts-tsp5e-4`, `edd-darts-lam0.24`,
    `pcd-d0.11`) map to their method (SP's Table V reports the best of the four)."""
    label = base_label(run.label)
    label = LABEL_DIRS.get(SWEEP_SUFFIX.sub("", label), label)
    return PAPER_EVAL.get((label, run.space, run.dataset), "—")


def darts_table(runs: Sequence[Run]) -> str:
    """Markdown table of DARTS-skeleton runs (spaces darts, s1-s4): one row per run."""
    darts = [r for r in runs if not _nb201_skeleton(r)]
    if not darts:
        return "No DARTS-skeleton runs."
    rows = []
    for r in darts:
        res = r.result or {}
        params = _num(res.get("param_count"))
        minutes = _num(res.get("wall_time_s")) / 60
        genotype = res.get("genotype") if r.finished else (r.metrics[-1].get("genotype") if r.metrics else None)
        ev = r.evaluation or {}
        error = _num(ev.get("test_error"))
        trained = (f"{error:.2f} ({ev.get('epochs', '?')} ep, {ev.get('dataset', '?')})"
                   if math.isfinite(error) else "—")
        rows.append([r.label, r.space, r.dataset, str(r.args.get("seed", "?")), r.status,
                     short_genotype(genotype) if genotype else "—",
                     f"{params / 1e6:.2f}" if math.isfinite(params) else "—",
                     _minutes(minutes) if math.isfinite(minutes) else "—", _device(r) if r.finished else "—",
                     f"{_num(ev.get('param_count')) / 1e6:.2f}" if ev.get("param_count") else "—", trained,
                     paper_eval(r)])
    return _md_table(["Method", "space", "dataset", "seed", "status", "genotype", "params (M)",
                      "search time (min)", "device", "eval params (M)", "test error (%)",
                      "paper test error (%)"], rows)


def unfinished_list(runs: Sequence[Run]) -> str:
    lines = [f"- {r.label} / {r.dataset} / seed {r.args.get('seed', '?')}: {r.status} — `{r.path}`"
             for r in runs if not r.finished]
    return "\n".join(lines) if lines else "None."






def render(runs: Sequence[Run], plots: Sequence[Path], notes: Sequence[str]) -> str:
    """The whole results.md text."""
    return "\n\n".join([
        "# Search results", header(runs),
        "## NAS-Bench-201\n\nNB201 200-epoch accuracies (%) of the derived architecture; mean ± sample "
        "std over the row's n finished seeds (ddof=1; one seed: its value); a cell over fewer runs says its own "
        "(n=k). \"paper C10 test\": the paper's number for a CIFAR-10 search.",
        results_table(runs), "## DARTS skeleton (darts, s1-s4)\n\n\"params (M)\": the derived network at 20 cells, C=36 (CIFAR-10 "
        "classes). \"eval params\" / \"test error\": the genotype trained from scratch by `python -m common.train` "
        "(`RUN/eval/`; epochs and dataset in brackets; anything short of 600 epochs is not the papers' protocol).",
        darts_table(runs),
        "## Unfinished runs\n\nTheir metrics so far are used in the curves only.", unfinished_list(runs),
        "## Plots", "\n".join(f"![{p.stem}]({p.name})" for p in plots) or "No plots.",
        "\n".join(f"- {n}" for n in notes)]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_dir", help="folder holding run directories (searched recursively)")
    parser.add_argument("--out", default=None, help="output folder (default RUNS_DIR/report)")
    parser.add_argument("--alpha-run", default=None, help="run directory for alpha_evolution.png "
                        "(default: the first SA-DARTS or AER run, else the first run with α)")
    ns = parser.parse_args(argv)
    try:
        runs = collect_runs(ns.runs_dir)
        if not runs:
            raise ReportError(f"no run directories (folders with args.json) under {ns.runs_dir}")
        if ns.alpha_run is not None and not any(r.path.resolve() == Path(ns.alpha_run).resolve() for r in runs):
            raise ReportError(f"--alpha-run {ns.alpha_run} is not one of the run directories under {ns.runs_dir}")
        out = Path(ns.out) if ns.out else Path(ns.runs_dir) / "report"
        if out.exists() and not out.is_dir():
            raise ReportError(f"--out {out} exists and is not a directory (it is kept; choose a folder)")
        notes: list[str] = []
        try:
            plots = make_plots(runs, out, ns.alpha_run, notes)
            text = render(runs, plots, notes)
            (out / "results.md").write_text(text)
        except OSError as err:  # a folder that cannot be created or written, a full disk
            raise ReportError(f"cannot write the report into {out}: {err.strerror or err}") from None
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(text)


if __name__ == "__main__":
    main()
