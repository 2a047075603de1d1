"""SR search spaces (IMDN, DLSR): candidate ops, mixed ops, supernets, genotypes, discrete nets, complexity.

IMDN space (SA paper §4.4.1, §6.7.2, Fig. 11). The IMDN network of Hui et al. (github.com/Zheng222/IMDN,
model/architecture.py:43-78, model/block.py:103-146): a 3×3 feature conv (3 → 64), 6 IMD blocks, a 1×1
fusion of their concatenated outputs (384 → 64) with LeakyReLU(0.05), a 3×3 conv plus the feature residual,
and a 3×3 conv to 3·s² channels with PixelShuffle(s). An IMD block has four 3×3 convs c1..c4 (64 → 64, 48 → 64,
48 → 64, 48 → 16; LeakyReLU(0.05) after c1..c3; each output splits into 16 distilled and 48 remaining
channels), the four 16-channel pieces concatenated, contrast-aware channel attention (CCA: per-channel std
+ mean → 1×1 conv to C/16, ReLU, 1×1 conv, sigmoid), a 1×1 conv and the block residual. The search replaces
each of c1..c4 with a mixed op over 12 candidates `IMDN_OPS`: {conv, depthwise-separable conv, dilated
depthwise-separable conv} × kernel {3, 5} × {no BN, BN after}. The paper reports one 4-op genotype, so the
α of position p (4 × 12) is shared by the 6 blocks, as DLSR shares its cell α over its 6 cells
(DLSR rfdn_block_6_beta_search.py:293, 303-322).
Where the paper is silent: a depthwise-separable conv is one k×k depthwise conv (no bias) and one 1×1
pointwise conv (bias), MobileNet-style, with no activation inside (the block's LeakyReLU follows);
"dilated" is dilation 2; the plain conv keeps IMDN's bias; BN follows the op.

DLSR space (SA paper §6.7.1, Fig. 10; Huang et al., github.com/DawnHH/DLSR-PyTorch). The supernet is
models/rfdn_block_6_beta_search.py:268-329 (`RFDN_beta1`): 48 features, 6 cells; cell k ≥ 3 takes a 1×1
conv (+LeakyReLU 0.05) of the concatenation of all earlier cell outputs, each scaled by softmax(β_k) (the
dense network level, lines 307-322); cell 2 takes cell 1's output. A cell (lines 163-197, RFDB) has three
mixed residual blocks r_i = lrelu(mixed_i(r_{i-1}) + r_{i-1}), a 1×1 distillation conv (48 → 24) beside each,
a 3×3 conv (48 → 24) after the third, the four 24-channel pieces concatenated, a 1×1 conv (96 → 48) and an
ESA block (lines 134-160). Candidates `DLSR_OPS` are its 9 PRIMITIVES (line 8) built as in
models/operations_hh.py:8-85 (Conv 34, DilConv 56, SepConv 70: bias-free convs; DARTS's double separable conv and dilated conv with a ReLU in
front, no BN). The derived network level keeps the top-2 earlier cells of each cell k ≥ 3 by β: the
retrained network of DLSR's code has exactly two inputs per cell, `DLSR_NET_LEVEL` (models/beta1_para_loss.py:
167-170, 180-197). With it, the parameter counts of all four DLSR rows of Table 3 come out exactly: DLSR
322.62 K (DLSR's own genotype `rfdn_62`, models/genotypes_rfdn.py:4), DLSR + β-DARTS 2243.00 K (conv 7×7 in
all three blocks, as §4.3 says), SAC-DLSR 309.37 K (sep conv 3×3 ×3, the only genotype with that count),
SA-DLSR 264.73 K (two dil conv 3×3 and one dil conv 5×5; three orders give that count).

Complexity (`complexity`): parameters are every parameter (BN affine included); multiply-adds count each
convolution's weights once per output pixel (C_in/groups·k_h·k_w per output element, biases not counted,
BN/activations/pooling/attention arithmetic not counted), on an input of 1280×720 ("Parameters and FLOPs are
all calculated on images with 1280x720 resolution", appendix 6.2). The IMDN row of Table 3 (715.18 K,
654.53 G) is IMDN's default ×4 constructor (model/architecture.py:43, upscale=4) on a 1280×720 *input*:
our count gives 715.18 K and 654.17 G (0.06 % below), and IMDN + β-DARTS's genotype 1773.67 K exactly; SA-DLSR
gives the table's 215.90 G exactly, but the DLSR, SAC-DLSR and DLSR + β-DARTS rows are 92-94 G above our
counts with matching parameters (whatever else their tool counted there is unknown). tests/test_sr.py
checks these.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from common.ops import channel_shuffle

IMDN_OPS: tuple[str, ...] = tuple(f"{kind}_{k}x{k}{bn}" for kind in ("conv", "sep_conv", "dil_sep_conv")
                                  for k in (3, 5) for bn in ("", "_bn"))
DLSR_OPS: tuple[str, ...] = ("conv_1x1", "conv_3x3", "conv_5x5", "conv_7x7", "sep_conv_3x3", "sep_conv_5x5",
                             "sep_conv_7x7", "dil_conv_3x3", "dil_conv_5x5")  # rfdn_block_6_beta_search.py:8-18
SPACE_OPS = {"imdn": IMDN_OPS, "dlsr": DLSR_OPS}
IMDN_ORIGINAL = ("conv_3x3",) * 4  # the IMDN block as published
#: DLSR's published network level: cell 3 ← cells (1, 2), 4 ← (2, 3), 5 ← (3, 4), 6 ← (1, 3), 0-based here
#: (models/beta1_para_loss.py:185-194)
DLSR_NET_LEVEL = ((0, 1), (1, 2), (2, 3), (0, 2))
LRELU = 0.05  # LeakyReLU slope of IMDN (block.py:132) and DLSR (rfdn_block_6_beta_search.py:87)


# ----------------------------------------------------------------------------- candidate ops

def imdn_op(name: str, c_in: int, c_out: int) -> nn.Module:
    """One of the 12 IMDN candidates `IMDN_OPS` from c_in to c_out channels (same spatial size)."""
    if name not in IMDN_OPS:
        raise ValueError(f"unknown IMDN op {name!r}; candidates: {', '.join(IMDN_OPS)}")
    kind, size = name.removesuffix("_bn").rsplit("_", 1)
    k = int(size.split("x")[0])
    layers: list[nn.Module]
    if kind == "conv":
        layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2)]
    else:
        d = 2 if kind == "dil_sep_conv" else 1
        layers = [nn.Conv2d(c_in, c_in, k, padding=d * (k // 2), dilation=d, groups=c_in, bias=False),
                  nn.Conv2d(c_in, c_out, 1)]
    if name.endswith("_bn"):
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


def dlsr_op(name: str, c: int) -> nn.Module:
    """One of DLSR's 9 candidates `DLSR_OPS` on c channels (operations_hh.py:8-85)."""
    if name not in DLSR_OPS:
        raise ValueError(f"unknown DLSR op {name!r}; candidates: {', '.join(DLSR_OPS)}")
    kind, size = name.rsplit("_", 1)
    k = int(size.split("x")[0])
    if kind == "conv":  # Conv: one bias-free k×k conv (operations_hh.py:34-42)
        return nn.Conv2d(c, c, k, padding=k // 2, bias=False)
    if kind == "dil_conv":  # DilConv: ReLU, depthwise k×k dilation 2, 1×1 (lines 55-67)
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, padding=k - 1, dilation=2, groups=c, bias=False),
                             nn.Conv2d(c, c, 1, bias=False))
    half = [nn.ReLU(), nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False)]
    return nn.Sequential(*half, *copy.deepcopy(half))  # SepConv: the DARTS pair, twice (lines 69-85)


class Choice(nn.Module):
    """A searched position: the mixed op Σ_o β_o·o(x) over its candidates, or one chosen op.

    forward(x, weights): weights (M,) op weights β for a mixed op; None for a discrete (single-op) one.
    Partial channels (SAC, `k` > 1; PC-DARTS, SA paper Alg. 1 "MIXED OPERATION"): the first C_in/k input
    channels go through the mixed op; where C_in = C_out the other channels pass through and the
    concatenation is channel-shuffled (k groups), exactly PC-DARTS; where C_in ≠ C_out (IMDN's c2..c4,
    48 → 64 and 48 → 16) nothing can pass through unchanged, so the candidates map the C_in/k channels to
    all C_out (our choice: the paper is silent; the saving is on the input side only).
    """

    def __init__(self, names: Sequence[str], ops: Sequence[nn.Module], k: int = 1, same_width: bool = True
                 ) -> None:
        super().__init__()
        self.names = tuple(names)
        self.ops = nn.ModuleList(ops)
        self.k, self.same_width = k, same_width

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        if weights is None:
            if len(self.ops) != 1:
                raise ValueError(f"a mixed op over {len(self.ops)} candidates needs its op weights")
            return self.ops[0](x)
        if self.k == 1:
            return sum(w * op(x) for w, op in zip(weights, self.ops))  # Eq. 1: Σ_o β_o·o(x)
        c = x.shape[1] // self.k
        y = sum(w * op(x[:, :c]) for w, op in zip(weights, self.ops))  # Alg. 1 line 18: x1 = 1/k of the channels
        return channel_shuffle(torch.cat([y, x[:, c:]], dim=1), self.k) if self.same_width else y


def _choice(space: str, name: str | None, c_in: int, c_out: int, k: int = 1) -> Choice:
    """A position's mixed op (name None, over the space's candidates, k: partial channels) or one op."""
    if name is not None:
        k = 1
    if c_in % k or (c_in == c_out and c_out % k):
        raise ValueError(f"{c_in} → {c_out} channels are not divisible by --partial-channels {k}")
    names = SPACE_OPS[space] if name is None else (name,)
    ci, co = c_in // k, (c_out // k if c_in == c_out else c_out)
    make = (lambda n: imdn_op(n, ci, co)) if space == "imdn" else (lambda n: dlsr_op(n, ci))
    return Choice(names, [make(n) for n in names], k, c_in == c_out)


def conv_lrelu(c_in: int, c_out: int) -> nn.Sequential:
    """1×1 conv + LeakyReLU(0.05): IMDN's and DLSR's `conv_block(..., act_type='lrelu')`."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1), nn.LeakyReLU(LRELU))


def upsampler(nf: int, scale: int, colors: int = 3) -> nn.Sequential:
    """3×3 conv to colors·s² channels and PixelShuffle(s) (IMDN block.py:204-207)."""
    return nn.Sequential(nn.Conv2d(nf, colors * scale ** 2, 3, padding=1), nn.PixelShuffle(scale))


# ----------------------------------------------------------------------------- IMDN

class CCA(nn.Module):
    """Contrast-aware channel attention (IMDN block.py:77-120): x · σ(W2 relu(W1 (std(x) + mean(x))))."""

    def __init__(self, c: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c // reduction, 1), nn.ReLU(),
                                  nn.Conv2d(c // reduction, c, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()  # population std, as stdv_channels
        return x * self.body(std + mean)


class IMDBlock(nn.Module):
    """An information multi-distillation block whose four 3×3 convs are searched positions."""

    def __init__(self, nf: int, ops: Sequence[str] | None, k: int = 1) -> None:
        super().__init__()
        self.dc = nf // 4  # distilled channels (distillation rate 0.25)
        self.rc = nf - self.dc
        shapes = [(nf, nf), (self.rc, nf), (self.rc, nf), (self.rc, self.dc)]  # c1..c4 (block.py:128-131)
        self.c = nn.ModuleList(_choice("imdn", None if ops is None else ops[p], ci, co, k)
                               for p, (ci, co) in enumerate(shapes))
        self.act = nn.LeakyReLU(LRELU)
        self.cca = CCA(4 * self.dc)
        self.fuse = nn.Conv2d(4 * self.dc, nf, 1)

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        w = (lambda p: None) if weights is None else (lambda p: weights[p])  # weights: (4, M)
        distilled, r = [], x
        for p in range(3):
            d, r = torch.split(self.act(self.c[p](r, w(p))), (self.dc, self.rc), dim=1)
            distilled.append(d)
        distilled.append(self.c[3](r, w(3)))
        return self.fuse(self.cca(torch.cat(distilled, dim=1))) + x


class IMDN(nn.Module):
    """IMDN over searched blocks: `ops` = 4 op names (discrete) or None (the supernet)."""

    positions = 4

    def __init__(self, ops: Sequence[str] | None = None, scale: int = 2, nf: int = 64, blocks: int = 6,
                 partial_channels: int = 1) -> None:
        super().__init__()
        self.space, self.scale = "imdn", scale
        self.fea = nn.Conv2d(3, nf, 3, padding=1)
        self.blocks = nn.ModuleList(IMDBlock(nf, ops, partial_channels) for _ in range(blocks))
        self.fuse = conv_lrelu(nf * blocks, nf)
        self.lr_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.up = upsampler(nf, scale)

    def forward(self, x: Tensor, weights: dict[str, Tensor] | None = None) -> Tensor:
        w = None if weights is None else weights["cell"]  # (4, M), shared by the blocks
        fea = self.fea(x)
        outs, h = [], fea
        for block in self.blocks:
            h = block(h, w)
            outs.append(h)
        return self.up(self.lr_conv(self.fuse(torch.cat(outs, dim=1))) + fea)


# ----------------------------------------------------------------------------- DLSR

class ESA(nn.Module):
    """Enhanced spatial attention (DLSR rfdn_block_6_beta_search.py:134-160, from RFDN)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        f = n // 4
        self.conv1, self.conv_f = nn.Conv2d(n, f, 1), nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3, self.conv3_ = nn.Conv2d(f, f, 3, padding=1), nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n, 1)

    def forward(self, x: Tensor) -> Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v = F.relu(self.conv_max(F.max_pool2d(c1, kernel_size=7, stride=3)))
        c3 = self.conv3_(F.relu(self.conv3(v)))
        c3 = F.interpolate(c3, x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class DLSRCell(nn.Module):
    """DLSR's cell: three mixed residual blocks with distillation, a 3×3 conv, 1×1 fusion, ESA."""

    def __init__(self, nf: int, ops: Sequence[str] | None, k: int = 1) -> None:
        super().__init__()
        dc = nf // 2
        self.distil = nn.ModuleList(nn.Conv2d(nf, dc, 1) for _ in range(3))
        self.mixed = nn.ModuleList(_choice("dlsr", None if ops is None else ops[p], nf, nf, k) for p in range(3))
        self.c4 = nn.Conv2d(nf, dc, 3, padding=1)
        self.act = nn.LeakyReLU(LRELU)
        self.c5 = nn.Conv2d(4 * dc, nf, 1)
        self.esa = ESA(nf)

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        pieces, r = [], x
        for p in range(3):
            pieces.append(self.act(self.distil[p](r)))
            r = self.act(self.mixed[p](r, None if weights is None else weights[p]) + r)  # mixed residual block
        pieces.append(self.act(self.c4(r)))
        return self.esa(self.c5(torch.cat(pieces, dim=1)))


class DLSR(nn.Module):
    """DLSR's network: `ops` 3 names and `inputs` the two earlier cells of each cell k ≥ 3 (discrete), or
    both None (the supernet, dense network level weighted by softmax(β_k))."""

    positions = 3

    def __init__(self, ops: Sequence[str] | None = None, inputs: Sequence[Sequence[int]] | None = None,
                 scale: int = 2, nf: int = 48, cells: int = 6, partial_channels: int = 1) -> None:
        super().__init__()
        if (ops is None) != (inputs is None):
            raise ValueError("a DLSR network takes both ops and inputs (discrete) or neither (supernet)")
        if inputs is not None:
            if len(inputs) != cells - 2:
                raise ValueError(f"DLSR inputs: one pair per cell 3..{cells}, got {len(inputs)}")
            for k, pair in enumerate(inputs, start=2):  # cell k (0-based) reads two distinct earlier cells
                if len(pair) != 2 or len(set(pair)) != 2 or not all(0 <= int(i) < k for i in pair):
                    raise ValueError(f"DLSR inputs of cell {k + 1}: two distinct earlier cells (0..{k - 1}, "
                                     f"0-based), got {tuple(pair)}")
        self.space, self.scale = "dlsr", scale
        self.inputs = None if inputs is None else tuple(tuple(int(i) for i in pair) for pair in inputs)
        self.fea = nn.Conv2d(3, nf, 3, padding=1)
        self.cells = nn.ModuleList(DLSRCell(nf, ops, partial_channels) for _ in range(cells))
        fan = [2] * (cells - 2) if inputs is not None else list(range(2, cells))  # cells 3..6 take 2 or k-1 inputs
        self.mix = nn.ModuleList(conv_lrelu(nf * n, nf) for n in fan)
        self.fuse = conv_lrelu(nf * cells, nf)
        self.lr_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.up = upsampler(nf, scale)

    def forward(self, x: Tensor, weights: dict[str, Tensor | list[Tensor]] | None = None) -> Tensor:
        fea = self.fea(x)
        w = None if weights is None else weights["cell"]  # (3, M), shared by the cells
        outs = [self.cells[0](fea, w)]
        outs.append(self.cells[1](outs[0], w))
        for k in range(2, len(self.cells)):
            if self.inputs is None:  # dense: Σ over all earlier cells, scaled by softmax(β_k)
                beta = weights["net"][k - 2]  # (k,)
                h = torch.cat([b * o for b, o in zip(beta, outs)], dim=1)
            else:
                h = torch.cat([outs[i] for i in self.inputs[k - 2]], dim=1)
            outs.append(self.cells[k](self.mix[k - 2](h), w))
        return self.up(self.lr_conv(self.fuse(torch.cat(outs, dim=1))) + fea)


# ----------------------------------------------------------------------------- supernet, genotype

@dataclass(frozen=True)
class SRGenotype:
    """A derived SR architecture: the op of each searched position, and (DLSR) each cell's two inputs."""

    space: str
    ops: tuple[str, ...]
    inputs: tuple[tuple[int, int], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_dict(d: dict) -> SRGenotype:
        return SRGenotype(d["space"], tuple(d["ops"]), tuple(tuple(p) for p in d.get("inputs", ())))


class SRSupernet(nn.Module):
    """A supernet and its architecture weights: α (P, M) of the op positions, β_k of DLSR's cells k ≥ 3."""

    def __init__(self, space: str, scale: int = 2, init_std: float = 1e-3, partial_channels: int = 1) -> None:
        super().__init__()
        if space not in SPACE_OPS:
            raise ValueError(f"unknown SR space {space!r}; choose from {', '.join(SPACE_OPS)}")
        self.space = space
        self.net = (IMDN(None, scale, partial_channels=partial_channels) if space == "imdn"
                    else DLSR(None, None, scale, partial_channels=partial_channels))
        n_ops = len(SPACE_OPS[space])
        self.alpha = nn.Parameter(init_std * torch.randn(self.net.positions, n_ops))  # α: 1e-3·N(0, 1)
        n_cells = len(self.net.cells) if space == "dlsr" else 0
        self.betas = nn.ParameterList(nn.Parameter(init_std * torch.randn(k)) for k in range(2, n_cells))

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, *self.betas]

    def arch_weights(self) -> dict[str, Tensor | list[Tensor]]:
        """β = softmax(α) per position (Eq. 1) and softmax(β_k) per DLSR cell."""
        return {"cell": F.softmax(self.alpha, dim=-1), "net": [F.softmax(b, dim=-1) for b in self.betas]}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x, self.arch_weights())

    @torch.no_grad()
    def genotype(self) -> SRGenotype:
        """Eq. 2: argmax α per position; DLSR: the top-2 earlier cells of each cell by β_k."""
        names = SPACE_OPS[self.space]
        ops = tuple(names[i] for i in self.alpha.argmax(dim=-1).tolist())
        inputs = tuple(tuple(sorted(b.topk(2).indices.tolist())) for b in self.betas)
        return SRGenotype(self.space, ops, inputs)  # type: ignore[arg-type]


def build(genotype: SRGenotype, scale: int = 2) -> nn.Module:
    """The discrete network of a genotype."""
    ops = SPACE_OPS.get(genotype.space)
    if ops is None:
        raise ValueError(f"unknown SR space {genotype.space!r}; choose from {', '.join(SPACE_OPS)}")
    bad = [o for o in genotype.ops if o not in ops]
    if bad:
        raise ValueError(f"{genotype.space} genotype has unknown ops {bad}; candidates: {', '.join(ops)}")
    if genotype.space == "imdn":
        if len(genotype.ops) != IMDN.positions:
            raise ValueError(f"an IMDN genotype has {IMDN.positions} ops, got {len(genotype.ops)}")
        return IMDN(genotype.ops, scale)
    if len(genotype.ops) != DLSR.positions:
        raise ValueError(f"a DLSR genotype has {DLSR.positions} ops, got {len(genotype.ops)}")
    return DLSR(genotype.ops, genotype.inputs, scale)


# ----------------------------------------------------------------------------- complexity

def conv_macs(module: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Σ over the Conv2d calls of `module` on one input of `in_shape` (C, H, W) of out.numel()·C_in/groups·k_h·k_w.

    Runs on a meta-device copy: no arithmetic, any input size.
    """
    meta, macs = copy.deepcopy(module).to("meta"), [0]

    def hook(m: nn.Conv2d, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        macs[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        meta.eval()(torch.empty(1, *in_shape, device="meta"))
    for h in handles:
        h.remove()
    return macs[0]


def complexity(model: nn.Module, in_hw: tuple[int, int] = (720, 1280)) -> tuple[int, int]:
    """(parameters, convolution multiply-adds) of `model` on one 3-channel input of size in_hw (the
    convention of the module docstring)."""
    return sum(p.numel() for p in model.parameters()), conv_macs(model, (3, *in_hw))


def op_costs(space: str, in_hw: tuple[int, int] = (720, 1280)) -> Tensor:
    """c of Eq. 18: multiply-adds (P, M) of each candidate at each position on an in_hw feature map
    ("64 (for 1st block) or 48 (for rest blocks) channels on 1280x720", §6.7.3)."""
    if space not in SPACE_OPS:
        raise ValueError(f"unknown SR space {space!r}; choose from {', '.join(SPACE_OPS)}")
    shapes = [(64, 64), (48, 64), (48, 64), (48, 16)] if space == "imdn" else [(48, 48)] * 3
    costs = torch.zeros(len(shapes), len(SPACE_OPS[space]), dtype=torch.float64)
    for p, (ci, co) in enumerate(shapes):
        for o, name in enumerate(SPACE_OPS[space]):
            op = imdn_op(name, ci, co) if space == "imdn" else dlsr_op(name, ci)
            costs[p, o] = conv_macs(op, (ci, *in_hw))
    return costs
