"""The evaluation network of a DARTS-skeleton genotype: DARTS's `NetworkCIFAR`, trained from scratch.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019); reference code
github.com/quark0/darts, `cnn/model.py` (read, not copied). The same network serves the DARTS space and
S1–S4 (Zela et al., ICLR 2020, github.com/automl/RobustDARTS `src/evaluation/model.py`, identical).

    stem: conv3x3(3 → 3C) + BN
    L cells; reductions (stride 2, channels ×2) at cells L//3 and 2L//3       (model.py:128-131)
    cell: s0, s1 preprocessed to C (FactorizedReduce after a reduction), then per node
          h = drop_path(op_a(h_a)) + drop_path(op_b(h_b)), output = concat of `concat` nodes
    auxiliary head on the output of cell 2L//3 (training only, 8×8 input)   (model.py:63-83, 138-153)
    global average pool → linear

Drop-path (`drop_path`, model.py:53-57 with utils.py:102-108): in training, each path's output is
zeroed for a whole sample with probability p and otherwise scaled by 1/(1−p); identity (skip at
stride 1) paths are never dropped; eval mode leaves every path as it is.

S4's `noise` op stays noise in the trained network, in training and in eval mode (RobustDARTS
`src/operations.py` `NoiseOp`, used by its evaluation model); it has no parameters and is drop-path'd.

Parameter counts exclude the auxiliary head (DARTS `utils.count_parameters_in_MB`, utils.py:82-83).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common.genotypes import DARTS_V2, Genotype
from common.ops import FactorizedReduce, ReLUConvBN, batch_norm, darts_ops

#: DARTS first order, as published (quark0/darts cnn/genotypes.py:74); 3.3M params (DARTS Table 1).
DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5],
)
#: PC-DARTS on CIFAR-10, as published (yuhuixu1993/PC-DARTS genotypes.py:78); 3.6M params (its README).
PC_DARTS = Genotype(
    normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
            ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
            ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
    reduce_concat=[2, 3, 4, 5],
)
#: Named genotypes accepted by `python -m common.train NAME` (DARTS_V2: quark0/darts genotypes.py:75).
NAMED_GENOTYPES: dict[str, Genotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2,
                                        "PC_DARTS": PC_DARTS}

EVAL_OPS = tuple(name for name in darts_ops(False) if name != "none")  # ops a derived cell may use


class GenotypeError(ValueError):
    """A genotype that cannot be built: the message is one line naming what is wrong."""


def parse_genotype(obj: Any) -> Genotype:
    """A `Genotype` from a `Genotype`, a dict (`genotype_to_json` form) or a 4-sequence; checked.

    Each cell must list two (op, input) pairs per intermediate node (an even, non-zero count), every
    op must be a DARTS-space op other than `none`, the i-th node (0-based, node index i+2) may take
    only inputs 0..i+1, and `concat` must name existing nodes.

    Raises:
        GenotypeError: one line saying which cell, which entry and why.
    """
    if isinstance(obj, Genotype):
        fields: Mapping[str, Any] = obj._asdict()
    elif isinstance(obj, Mapping):
        fields = obj
    elif isinstance(obj, Sequence) and not isinstance(obj, str) and len(obj) == 4:
        fields = dict(zip(Genotype._fields, obj))
    else:
        raise GenotypeError(f"a genotype must be a dict with keys {', '.join(Genotype._fields)} "
                            f"(got {type(obj).__name__})")
    missing = [k for k in Genotype._fields if k not in fields]
    if missing:
        raise GenotypeError(f"genotype lacks {', '.join(missing)}")
    out: dict[str, Any] = {}
    for kind in ("normal", "reduce"):
        cell = fields[kind]
        if not isinstance(cell, Sequence) or isinstance(cell, str) or not cell or len(cell) % 2:
            n = len(cell) if isinstance(cell, Sequence) else "?"
            raise GenotypeError(f"{kind} cell has {n} (op, input) entries; it needs two per intermediate "
                                "node (DARTS: 8 for 4 nodes)")
        pairs = []
        for i, entry in enumerate(cell):
            if not (isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 2):
                raise GenotypeError(f"{kind} cell entry {i} is {entry!r}, not an (op, input) pair")
            op, src = entry
            if op not in EVAL_OPS:
                raise GenotypeError(f"{kind} cell entry {i}: unknown op {op!r} (known: {', '.join(EVAL_OPS)})")
            node = 2 + i // 2
            if not isinstance(src, int) or isinstance(src, bool) or not 0 <= src < node:
                raise GenotypeError(f"{kind} cell entry {i}: input {src!r} of node {node} must be an "
                                    f"integer in 0..{node - 1}")
            pairs.append((str(op), int(src)))
        concat = fields[f"{kind}_concat"]
        n_nodes = 2 + len(pairs) // 2
        if (not isinstance(concat, Sequence) or isinstance(concat, str) or not concat
                or not all(isinstance(c, int) and 0 <= c < n_nodes for c in concat)):
            raise GenotypeError(f"{kind}_concat {concat!r} must list node indices in 0..{n_nodes - 1}")
        out[kind], out[f"{kind}_concat"] = pairs, [int(c) for c in concat]
    return Genotype(out["normal"], out["normal_concat"], out["reduce"], out["reduce_concat"])


def drop_path(x: Tensor, p: float) -> Tensor:
    """Zero whole samples of one path with probability p, scale the rest by 1/(1−p) (E[out] = x).

    One Bernoulli(1−p) draw per sample from torch's default generator of `x`'s device, shape (B, 1, 1, 1).
    """
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)  # (B, 1, 1, 1)
    return x / keep * mask


class EvalCell(nn.Module):
    """A discrete DARTS cell at evaluation size (affine BN; node = op_a(h_a) + op_b(h_b), with drop-path)."""

    def __init__(self, cell: list[tuple[str, int]], concat: list[int], C_pp: int, C_p: int, C: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = FactorizedReduce(C_pp, C, affine=True) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, True)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=True)
        factories = darts_ops(bn_after_pool=False)
        self.ops = nn.ModuleList(factories[name](C, 2 if reduction and src < 2 else 1, True, True)
                                 for name, src in cell)
        self.srcs = [src for _, src in cell]
        self.concat = concat
        self.droppable = [not isinstance(op, nn.Identity) for op in self.ops]  # model.py:54-57

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float = 0.0) -> Tensor:
        nodes = [self.pre0(s0), self.pre1(s1)]
        p = drop_prob if self.training else 0.0
        for i in range(0, len(self.ops), 2):
            h = [self.ops[j](nodes[self.srcs[j]]) for j in (i, i + 1)]
            h = [drop_path(hj, p) if self.droppable[j] else hj for hj, j in zip(h, (i, i + 1))]
            nodes.append(h[0] + h[1])
        return torch.cat([nodes[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's `AuxiliaryHeadCIFAR` (model.py:63-83): 8×8 input → ReLU, avgpool 5/3 → 2×2, 1×1 conv 128,
    BN, ReLU, 2×2 conv 768, BN, ReLU → linear."""

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8×8 → 2×2
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU())  # 2×2 → 1×1
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class EvalNetwork(nn.Module):
    """DARTS's `NetworkCIFAR` for a genotype (model.py:111-156).

    Args:
        genotype: the cell pair.
        C: initial channels (36 in DARTS's evaluation).
        layers: cells (20); reductions at layers//3 and 2·layers//3.
        num_classes: classifier outputs.
        auxiliary: build the auxiliary head (on cell 2·layers//3); its parameters are not counted by
            `param_count`.

    `forward(x)` returns (logits, aux_logits); aux_logits is None in eval mode or without the head.
    Set `drop_path_prob` before each epoch (DARTS: p·epoch/epochs).
    """

    def __init__(self, genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10,
                 auxiliary: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 3 * C, 3, padding=1, bias=False), batch_norm(3 * C, True, True))
        C_pp, C_p, C_cur = 3 * C, 3 * C, C
        cells, reduction_prev, C_aux = [], False, None
        self.aux_at = 2 * layers // 3
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            C_cur *= 2 if reduction else 1
            cell, concat = (genotype.reduce, genotype.reduce_concat) if reduction else (genotype.normal,
                                                                                       genotype.normal_concat)
            cells.append(EvalCell(cell, concat, C_pp, C_p, C_cur, reduction, reduction_prev))
            reduction_prev = reduction
            C_pp, C_p = C_p, len(concat) * C_cur
            if i == self.aux_at:
                C_aux = C_p
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(C_p, num_classes)
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes) if auxiliary and C_aux is not None else None
        self.drop_path_prob = 0.0

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_at and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1)), aux

    def param_count(self) -> int:
        """Parameters without the auxiliary head (what DARTS and the papers report)."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.startswith("auxiliary_head."))


def eval_loss(logits: Tensor, aux_logits: Tensor | None, y: Tensor, aux_weight: float) -> Tensor:
    """DARTS's training objective (train.py:123-126): CE(logits, y) + w_aux · CE(aux_logits, y)."""
    loss = F.cross_entropy(logits, y)
    if aux_logits is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(aux_logits, y)
    return loss


def genotype_param_count(genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10) -> int:
    """Parameters of the derived network at evaluation size (DARTS: 20 cells, C=36, CIFAR-10), auxiliary
    head excluded; the network is `EvalNetwork`."""
    return EvalNetwork(genotype, C, layers, num_classes).param_count()
