"""Search spaces: NB201, the DARTS space (with and without `none`) and the robustness spaces S1–S4.

METHODS.md §1. `darts-nonone` is the DARTS space without `none`: the other 7 ops, in DARTS's order. The SP
paper excludes `none` (§IV); so do the SP authors' DARTS-space op list (github.com/chaoji90/SP-DARTS,
SP-DARTS/genotypes.py lines 5-13, the same 7 ops in the same order) and the DrNAS code that the EDD
paper's DARTS-space runs build on (same repository, DrNas/DARTS-space/genotypes.py lines 5-14, `none`
commented out).

`nb201-3op` is SA-DARTS's reduced NB201 space (Sec. 2.2 and Fig. 5 of paper 003): the NB201 cell with
three ops per edge, nor_conv_3x3, skip_connect, avg_pool_3x3 (in NB201's order); each of its 729 cells
is an NB201 cell, so the NB201 table answers for it.

A space is a macro skeleton (`"nb201"` or `"darts"`) plus, for each cell kind, the op list of every
edge. α for a cell kind is one (E, M) tensor, E edges × M ops per edge.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Search datasets (readers in common/data.py; named here, torch-free, for the argument parser and --help).
DATASETS = ("cifar10", "cifar100", "svhn", "imagenet16-120", "synthetic")

NB201_OP_NAMES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DARTS_OP_NAMES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                  "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), official order
DARTS_NONONE_OP_NAMES = DARTS_OP_NAMES[1:]  # the 7 DARTS ops, `none` left out
DARTS_EDGES = tuple((node, inp) for node in range(2, 6) for inp in range(node))  # 14 edges

#: GDAS's edge forward with a hard sample o* (common/supernet.py `MixedOp.mix`), as the official GDAS code
#: writes it per skeleton (xautodl 1.0.0 = D-X-Y/AutoDL-Projects, models/cell_searchs/search_cells.py):
#: "nb201": w_o*·o*(x) + Σ_{o≠o*} w_o (value 0), so every w_o gets ∂L/∂w_o = Σ ∂L/∂out (lines 72-84,
#: NAS201SearchCell.forward_gdas); "nasnet": w_o*·o*(x) alone, the other w_o get no gradient (lines 163-164,
#: MixedOp.forward_gdas, used by NASNetSearchCell.forward_gdas, 220-232, and search_model_gdas_nasnet.py).
GDAS_FORMS = ("nb201", "nasnet")
#: The official code's form per skeleton: the default of `--gdas-form`.
GDAS_FORM_OF_SKELETON = {"nb201": "nb201", "darts": "nasnet"}

_SHORT = {"skip": "skip_connect", "dil3": "dil_conv_3x3", "dil5": "dil_conv_5x5", "sep3": "sep_conv_3x3",
          "max": "max_pool_3x3", "avg": "avg_pool_3x3"}
_S1_NORMAL = ("skip dil3|skip dil5|skip dil5|skip sep3|skip dil3|max skip|skip sep3|skip sep3|skip dil3|"
              "skip sep3|max skip|skip dil3|dil3 dil5|dil3 dil5")
_S1_REDUCE = ("max avg|max dil3|max avg|max avg|skip dil5|max avg|max sep3|skip dil3|skip dil5|max avg|"
              "max avg|skip dil5|skip dil5|skip dil5")


def _parse(spec: str) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(_SHORT[s] for s in edge.split()) for edge in spec.split("|"))


@dataclass(frozen=True)
class SearchSpace:
    """A search space.

    Attributes:
        name: `nb201`, `darts`, `darts-nonone`, `s1` … `s4`, `nb201-3op`.
        skeleton: `nb201` (NB201 macro net, one cell kind) or `darts` (normal + reduction cells).
        edge_ops: per cell kind (`normal`, and `reduce` on the DARTS skeleton), the op names of each edge.
    """

    name: str
    skeleton: str
    edge_ops: dict[str, tuple[tuple[str, ...], ...]]

    @property
    def cell_kinds(self) -> tuple[str, ...]:
        return tuple(self.edge_ops)

    def alpha_shape(self, kind: str) -> tuple[int, int]:
        ops = self.edge_ops[kind]
        return len(ops), len(ops[0])

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return NB201_EDGES if self.skeleton == "nb201" else DARTS_EDGES

    def has_none(self, kind: str) -> bool:
        return all(ops[0] == "none" for ops in self.edge_ops[kind])


def _uniform(ops: tuple[str, ...], n_edges: int) -> tuple[tuple[str, ...], ...]:
    return tuple(ops for _ in range(n_edges))


SPACES: dict[str, SearchSpace] = {
    "nb201": SearchSpace("nb201", "nb201", {"normal": _uniform(NB201_OP_NAMES, 6)}),
    "darts": SearchSpace("darts", "darts", {k: _uniform(DARTS_OP_NAMES, 14) for k in ("normal", "reduce")}),
    "darts-nonone": SearchSpace("darts-nonone", "darts", {k: _uniform(DARTS_NONONE_OP_NAMES, 14)
                                                         for k in ("normal", "reduce")}),
    "s1": SearchSpace("s1", "darts", {"normal": _parse(_S1_NORMAL), "reduce": _parse(_S1_REDUCE)}),
    "s2": SearchSpace("s2", "darts", {k: _uniform(("skip_connect", "sep_conv_3x3"), 14)
                                      for k in ("normal", "reduce")}),
    "s3": SearchSpace("s3", "darts", {k: _uniform(("none", "skip_connect", "sep_conv_3x3"), 14)
                                      for k in ("normal", "reduce")}),
    "s4": SearchSpace("s4", "darts", {k: _uniform(("noise", "sep_conv_3x3"), 14) for k in ("normal", "reduce")}),
    "nb201-3op": SearchSpace("nb201-3op", "nb201",
                             {"normal": _uniform(("skip_connect", "nor_conv_3x3", "avg_pool_3x3"), 6)}),
}


def get_space(name: str) -> SearchSpace:
    """The search space called `name`; ValueError naming the known spaces otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None
