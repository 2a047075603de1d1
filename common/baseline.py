"""Plain first-order DARTS (DARTS-V1) from the shared blocks — the reference the methods reduce to.

    python -m common.baseline --space nb201 --nb201 ../shared/data/nb201/nb201_200ep.csv

Each step: a w step on a train batch (α fixed), then an α step on a valid batch (w fixed), both with
op weights softmax(α) (Liu et al., 2019, Eq. 2 and first-order Eq. 7). The method scripts' tests check
that with their regulariser/temperature switched off they follow exactly this α trajectory.
"""
from __future__ import annotations

from common.config import answer_help_early

answer_help_early(__name__, __file__)  # --help before torch is imported (0.2 s, not 2 s)

from dataclasses import dataclass

from common.config import SearchConfig, parse_config
from common.harness import open_run
from common.rundir import main_guard
from common.search import softmax_weights


@dataclass
class DartsConfig(SearchConfig):
    """First-order DARTS with the shared defaults (METHODS.md §1)."""


def search(cfg: DartsConfig) -> dict:
    run = open_run(cfg, "darts")
    fwd = run.forward(lambda: softmax_weights(run.alphas))  # Eq. 2: op weights softmax(α)
    for _ in run.epochs():
        for batch in run.batches():  # w step on a train batch, α step on a valid batch (--step-order)
            run.bilevel(batch, w=run.w_step(fwd), alpha=run.alpha_step(fwd))
        run.end_epoch(lambda r: (softmax_weights(r.model.alphas), {}))
    return run.finish()


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(DartsConfig, argv, description=__doc__)
    main_guard(lambda: search(cfg))


if __name__ == "__main__":
    main()
