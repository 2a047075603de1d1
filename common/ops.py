"""Candidate operations of the NB201 and DARTS search spaces (plus the `noise` op of S4).

Every op maps (B, C_in, H, W) to (B, C_out, H/stride, W/stride). In the supernet the BN layers use
`affine=False, track_running_stats=False` (batch statistics, METHODS.md §1); the evaluation-size
network of a derived genotype builds the same ops with `affine=True`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def batch_norm(C: int, affine: bool, track: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(C, affine=affine, track_running_stats=track)


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv(k×k) → BN (NB201 `nor_conv_kxk`, DARTS preprocessing)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = False, track: bool = False, dilation: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
            batch_norm(C_out, affine, track),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise dilated conv → 1×1 conv → BN (DARTS `dil_conv_kxk`)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = False, track: bool = False) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            batch_norm(C_out, affine, track),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv(dilation=1), the first strided (DARTS `sep_conv_kxk`)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = False, track: bool = False) -> None:
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine, track),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine, track),
        )


class Zero(nn.Module):
    """The `none` op: zeros of the (strided) output shape."""

    def __init__(self, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if x.shape[1] == self.C_out:
            return x.mul(0.0)
        return x.new_zeros(x.shape[0], self.C_out, x.shape[2], x.shape[3])


class Noise(nn.Module):
    """S4's `noise` op: N(0, 1) noise of the (strided) input's shape (Zela et al., 2020)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return torch.randn_like(x)


class FactorizedReduce(nn.Module):
    """ReLU → two offset strided 1×1 convs concatenated → BN: halves H, W (DARTS skip at stride 2)."""

    def __init__(self, C_in: int, C_out: int, affine: bool = False, track: bool = False) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - C_out // 2, 1, stride=2, bias=False)
        self.bn = batch_norm(C_out, affine, track)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def _pool(kind: str, C: int, stride: int, affine: bool, track: bool, bn_after: bool) -> nn.Module:
    pool: nn.Module = (nn.MaxPool2d(3, stride, padding=1) if kind == "max"
                       else nn.AvgPool2d(3, stride, padding=1, count_include_pad=False))
    return nn.Sequential(pool, batch_norm(C, affine, track)) if bn_after else pool


OpFactory = Callable[[int, int, bool, bool], nn.Module]  # (C, stride, affine, track) -> module

#: NB201 ops (cells keep C_in == C_out and stride 1).
NB201_OPS: dict[str, OpFactory] = {
    "none": lambda C, s, a, t: Zero(C, C, s),
    "skip_connect": lambda C, s, a, t: nn.Identity() if s == 1 else FactorizedReduce(C, C, a, t),
    "nor_conv_1x1": lambda C, s, a, t: ReLUConvBN(C, C, 1, s, 0, a, t),
    "nor_conv_3x3": lambda C, s, a, t: ReLUConvBN(C, C, 3, s, 1, a, t),
    "avg_pool_3x3": lambda C, s, a, t: _pool("avg", C, s, a, t, bn_after=False),
}


def darts_ops(bn_after_pool: bool) -> dict[str, OpFactory]:
    """DARTS-space ops (+ `noise`). In the search supernet DARTS appends BN(affine=False) to pools."""
    return {
        "none": lambda C, s, a, t: Zero(C, C, s),
        "noise": lambda C, s, a, t: Noise(s),
        "max_pool_3x3": lambda C, s, a, t: _pool("max", C, s, a, t, bn_after_pool),
        "avg_pool_3x3": lambda C, s, a, t: _pool("avg", C, s, a, t, bn_after_pool),
        "skip_connect": lambda C, s, a, t: nn.Identity() if s == 1 else FactorizedReduce(C, C, a, t),
        "sep_conv_3x3": lambda C, s, a, t: SepConv(C, C, 3, s, 1, a, t),
        "sep_conv_5x5": lambda C, s, a, t: SepConv(C, C, 5, s, 2, a, t),
        "dil_conv_3x3": lambda C, s, a, t: DilConv(C, C, 3, s, 2, 2, a, t),
        "dil_conv_5x5": lambda C, s, a, t: DilConv(C, C, 5, s, 4, 2, a, t),
    }


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """PC-DARTS channel shuffle: (B, g·c, H, W) → interleave the g groups."""
    B, C, H, W = x.shape
    return x.view(B, groups, C // groups, H, W).transpose(1, 2).reshape(B, C, H, W)
