"""Ranking fidelity of NB201 searches: does the supernet rank architectures as NB201 does? (Kendall τ)

    python -m common.fidelity RUN_DIR [RUN_DIR ...] [--nb201 CSV] [--k 50] [--eval-images 1000]

Three numbers, each a Kendall τ-b (ties counted as in τ-b) against NB201's 200-epoch test accuracy of
the search dataset (`--metric`, default by dataset: cifar10_test, cifar100_test, imagenet16_test):

(a) edge τ, per edge of the final cell: the order of β = softmax(α) over that edge's candidate ops
    against the NB201 accuracy of the cells obtained by swapping that edge's op for each candidate
    (the other edges as derived). Does α rank ops the way swapping them ranks cells?
(b) supernet τ: K cells drawn uniformly from the space (distinct, seed `--seed`), each evaluated as a
    discretized sub-network of the final supernet (one-hot op weights, the run's checkpointed weights,
    batch-statistics BN as in the search) on the first `--eval-images` of the valid half of the split;
    their accuracies against their NB201 accuracies.
(c) search-evaluation τ across runs (AER Fig. 3 / Fig. 6b): each run's final supernet scores its own
    derived cell (the (b) accuracy of that cell); τ between those scores and the cells' NB201 accuracies.

Writes RUN_DIR/fidelity.json and RUN_DIR/fidelity.png for every run; with two or more runs also
`fidelity_runs.json` and `fidelity_runs.png` in `--out` (default: the runs' common parent). The
report (`python -m common.report`) reads fidelity.json into the columns τ edge (a), τ supernet (b)
and τ search-eval (c) (the last over the seeds of a row).

Only NB201-skeleton runs (`nb201`, `nb201-3op`) have a table to compare with.
"""
from __future__ import annotations

from common.cli import answer_help_early, fidelity_parser

answer_help_early(__name__, "common.fidelity")  # --help before torch is imported

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.data import MEAN, NUM_CLASSES, STD, DataError, make_loader, search_split
from common.fast import build_supernet
from common.genotypes import derive_genotype, genotype_weights
from common.nb201 import NB201Table, format_arch_str, parse_arch_str
from common.search import evaluate
from common.spaces import SPACES, SearchSpace
from common.stats import kendall_tau  # noqa: F401 - re-exported (tests, users)
from common.supernet import Supernet
from common.threads import apply_threads, threads_text

#: NB201 column compared with, by search dataset (`--metric` overrides).
METRIC_OF = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16-120": "imagenet16_test"}


class FidelityError(Exception):
    """A user-facing failure: one line on stderr, exit code 2."""


# ----------------------------------------------------------------------------------------- (a) per edge
def edge_fidelity(alpha: torch.Tensor, space: SearchSpace, table: NB201Table, metric: str,
                  exclude_none: bool = False) -> dict[str, Any]:
    """(a): per edge of the derived cell, τ between β = softmax(α_e) and the NB201 accuracy of each swap.

    Args:
        alpha: (E, M) α of the NB201 cell.
        space: an NB201-skeleton space (its per-edge op lists).
        table: NB201 accuracies.
        metric: NB201 column, e.g. `cifar10_test`.
        exclude_none: the run's derivation rule (argmax without `none`).

    Returns:
        {"derived": arch, "edges": [{"edge", "ops", "beta", "acc", "tau"} per edge], "tau_mean"}.
    """
    beta = torch.softmax(alpha.detach().double().cpu(), -1)  # (E, M)
    derived = derive_genotype({"normal": beta}, space, exclude_none=exclude_none)
    ops = parse_arch_str(derived)
    edges = []
    for e, (to, src) in enumerate(space.edges):
        cands = space.edge_ops["normal"][e]
        acc = [table.query(format_arch_str(ops[:e] + [o] + ops[e + 1:]))[metric] for o in cands]  # swap edge e
        edges.append({"edge": f"{to}<-{src}", "ops": list(cands), "beta": beta[e].tolist(), "acc": acc,
                      "tau": _finite(kendall_tau(beta[e].tolist(), acc))})
    taus = [x["tau"] for x in edges if x["tau"] is not None]
    return {"derived": derived, "edges": edges, "tau_mean": float(np.mean(taus)) if taus else None}


# ----------------------------------------------------------------------------------------- (b) supernet
def sample_cells(space: SearchSpace, k: int, seed: int = 0) -> list[str]:
    """k distinct cells of an NB201-skeleton space, uniform per edge (numpy seed `seed`)."""
    edge_ops = space.edge_ops["normal"]
    total = math.prod(len(ops) for ops in edge_ops)
    if not 1 <= k <= total:
        raise FidelityError(f"--k must be in 1..{total} (cells in space {space.name}), got {k}")
    rng, seen = np.random.default_rng(seed), {}
    while len(seen) < k:
        arch = format_arch_str([ops[rng.integers(len(ops))] for ops in edge_ops])
        seen.setdefault(arch, None)
    return list(seen)


@torch.no_grad()
def discrete_accuracy(model: Supernet, cells: Sequence[str], loader: Any) -> list[float]:
    """Valid accuracy (%) of each cell as a discretized sub-network of `model` (one-hot weights).

    Only the chosen op of each edge runs (the supernet's hard-index path): with one-hot weights that is
    the same sum, 1·op(x) plus exact zeros, at a fraction of the cost of mixing every op.
    """
    model.eval()
    device = next(model.parameters()).device
    accs = []
    for cell in cells:
        onehot = genotype_weights(cell, model.space, device)  # {"normal": (E, M)} one-hot of the cell
        index = {k: w.argmax(-1).tolist() for k, w in onehot.items()}
        accs.append(evaluate(lambda x: model(x, onehot, index, use_gammas=False), loader)[1])
    return accs


# ----------------------------------------------------------------------------------------- a run
def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FidelityError(f"{path} not found: is {path.parent} a finished search run?") from None
    except (OSError, ValueError) as err:
        raise FidelityError(f"{path} is unreadable ({type(err).__name__})") from None


def load_supernet(run_dir: Path, args: Mapping[str, Any], device: torch.device) -> Supernet:
    """The run's final supernet (weights and α) from its checkpoint.pt."""
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise FidelityError(f"{path} not found: (b) and (c) need the run's checkpointed supernet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "corrupt"
        raise FidelityError(f"{path} is corrupt ({type(err).__name__})") from None
    model = build_supernet(args["space"], args["C"], args["N"], NUM_CLASSES[args["dataset"]],
                           args.get("partial_channels", 1), fast=bool(args.get("fast", True)))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise FidelityError(f"{path} does not fit the run's args.json ({str(err).splitlines()[0][:120]})") from None
    return model.to(device)


def run_fidelity(run_dir: str | Path, table: NB201Table | None = None, k: int = 50, eval_images: int = 1000,
                 seed: int = 0, metric: str | None = None, data_dir: str | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """(a) and (b) for one run directory, and its (c) score; writes RUN_DIR/fidelity.json (and .png)."""
    run_dir = Path(run_dir)
    args = _read_json(run_dir / "args.json")
    space = SPACES.get(str(args.get("space")))
    if space is None or space.skeleton != "nb201":
        raise FidelityError(f"{run_dir} searched space {args.get('space')!r}: only NB201-skeleton runs "
                            "(nb201, nb201-3op) have a table to compare with")
    if table is None:
        if not args.get("nb201"):
            raise FidelityError(f"{run_dir} was run without --nb201: pass --nb201 PATH")
        table = NB201Table.load(args["nb201"])
    metric = metric or METRIC_OF.get(args["dataset"], "cifar10_test")
    dev = torch.device(device)
    model = load_supernet(run_dir, args, dev)
    out: dict[str, Any] = {"run": str(run_dir), "metric": metric, "dataset": args["dataset"]}
    out["a"] = edge_fidelity(model.alphas["normal"], space, table, metric, bool(args.get("exclude_none")))
    try:
        _, (x_v, y_v) = search_split(args["dataset"], data_dir or args["data_dir"], args.get("limit_train"),
                                     download=False)
    except DataError as err:
        raise FidelityError(f"{err} (pass --data-dir)") from None
    n = len(x_v) if eval_images <= 0 else min(eval_images, len(x_v))
    loader = make_loader("device", x_v[:n], y_v[:n], 256, dev, MEAN[args["dataset"]], STD[args["dataset"]],
                         augment=False, shuffle=False, drop_last=False)
    cells = sample_cells(space, k, seed)
    derived = out["a"]["derived"]
    accs = discrete_accuracy(model, [*cells, derived], loader)
    nb = [table.query(c)[metric] for c in cells]
    out["b"] = {"k": k, "seed": seed, "eval_images": n, "cells": cells, "supernet_acc": accs[:-1],
                "nb201_acc": nb, "tau": _finite(kendall_tau(accs[:-1], nb))}
    out["c"] = {"derived": derived, "supernet_acc": accs[-1], "nb201_acc": table.query(derived)[metric]}
    _write_json(run_dir / "fidelity.json", out)
    _plot_run(out, run_dir / "fidelity.png")
    return out


def search_evaluation_tau(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """(c): τ across runs between each final supernet's score of its derived cell and its NB201 accuracy."""
    s = [r["c"]["supernet_acc"] for r in results]
    e = [r["c"]["nb201_acc"] for r in results]
    return {"runs": [r["run"] for r in results], "supernet_acc": s, "nb201_acc": e,
            "tau": _finite(kendall_tau(s, e)) if len(results) > 1 else None,
            "mean_error": float(100 - np.mean(e))}


# ----------------------------------------------------------------------------------------- output
def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _fmt(x: float | None) -> str:
    return "undefined (ties)" if x is None else f"{x:.2f}"


def _plot_run(out: Mapping[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4))
    edges = out["a"]["edges"]
    ax_a.bar(range(len(edges)), [np.nan if x["tau"] is None else x["tau"] for x in edges])
    ax_a.set_xticks(range(len(edges)), [x["edge"] for x in edges])
    ax_a.set(ylim=(-1.05, 1.05), xlabel="edge of the final cell", ylabel="Kendall τ(β, swapped-cell acc)",
             title=f"(a) per edge, mean τ {_fmt(out['a']['tau_mean'])}")
    ax_a.axhline(0, color="k", lw=0.5)
    b = out["b"]
    ax_b.scatter(b["nb201_acc"], b["supernet_acc"], s=10)
    ax_b.scatter([out["c"]["nb201_acc"]], [out["c"]["supernet_acc"]], marker="*", s=120, c="C3", label="derived")
    ax_b.set(xlabel=f"NB201 {out['metric']} (%)", ylabel="discretized supernet valid acc (%)",
             title=f"(b) {b['k']} sampled cells, τ = {_fmt(b['tau'])}")
    ax_b.legend(fontsize=8)
    fig.suptitle(out["run"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _run_label(run: str) -> str:
    """A run directory's method label as results.md writes it (common.report.label_of), else its folder name."""
    from common.report import label_of
    try:
        return label_of(run, _read_json(Path(run) / "args.json"))
    except (FidelityError, OSError, ValueError):
        return Path(run).name


def _plot_runs(c: Mapping[str, Any], path: Path) -> None:
    """(c) as a scatter: one colour and marker per method (the legend), each point annotated with its seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.4))
    labels = [_run_label(r) for r in c["runs"]]
    markers = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
    for i, method in enumerate(dict.fromkeys(labels)):
        at = [k for k, label in enumerate(labels) if label == method]
        ax.scatter([c["nb201_acc"][k] for k in at], [c["supernet_acc"][k] for k in at], s=40, label=method,
                   marker=markers[i % len(markers)], color=plt.get_cmap("tab10")(i % 10))
    for run, x, y in zip(c["runs"], c["nb201_acc"], c["supernet_acc"]):
        seed = _seed_of(run)
        ax.annotate(Path(run).name if seed is None else f"seed {seed}", (x, y), xytext=(4, 4),
                    textcoords="offset points", fontsize=7)
    ax.set(xlabel="NB201 accuracy of the derived cell (%)", ylabel="its final supernet's valid acc (%)",
           title=f"(c) search-evaluation τ = {_fmt(c['tau'])} over {len(c['runs'])} runs")
    ax.legend(fontsize=8, title="method", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _seed_of(run: str) -> Any:
    try:
        return _read_json(Path(run) / "args.json").get("seed")
    except (FidelityError, OSError, ValueError, AttributeError):
        return None


def main(argv: Sequence[str] | None = None) -> None:
    ns = fidelity_parser().parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if ns.device == "auto" else ns.device
    threads, threads_from = apply_threads(ns.threads)  # set once, before any work (common/threads.py)
    print(threads_text(threads, threads_from))
    try:
        table = NB201Table.load(ns.nb201) if ns.nb201 else None
        if ns.metric is not None and ns.metric not in METRIC_OF.values() and ns.metric not in (
                "cifar10_valid_valid", "cifar100_valid", "imagenet16_valid"):
            raise FidelityError(f"unknown --metric {ns.metric!r}")
        results = [run_fidelity(r, table, ns.k, ns.eval_images, ns.seed, ns.metric, ns.data_dir, device)
                   for r in ns.runs]
        for r in results:
            print(f"{r['run']}: (a) edge τ mean {_fmt(r['a']['tau_mean'])}, (b) supernet τ {_fmt(r['b']['tau'])} "
                  f"(K={r['b']['k']}), derived {r['c']['derived']} NB201 {r['c']['nb201_acc']:.2f}")
        if len(results) > 1:
            c = search_evaluation_tau(results)
            out = Path(ns.out) if ns.out else Path(os.path.commonpath([str(Path(r).resolve()) for r in ns.runs]))
            out.mkdir(parents=True, exist_ok=True)
            _write_json(out / "fidelity_runs.json", c)
            _plot_runs(c, out / "fidelity_runs.png")
            print(f"(c) search-evaluation τ over {len(results)} runs: {_fmt(c['tau'])} → {out / 'fidelity_runs.json'}")
    except (FidelityError, FileNotFoundError, ValueError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
