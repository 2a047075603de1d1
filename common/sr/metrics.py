"""Super-resolution measurement: MATLAB-style bicubic resize, BT.601 luma, and PSNR on Y with a border crop.

Conventions of the SR field (IMDN, EDSR, DLSR all evaluate this way; IMDN's README points at RCAN's
`Evaluate_PSNR_SSIM.m`):

- LR images are made from HR by MATLAB's `imresize(HR, 1/s, 'bicubic')`: Keys' cubic kernel with a = −0.5,
  *antialiased* when shrinking (the kernel is stretched by 1/s, so 4/s taps), symmetric (mirror) padding,
  and rounding to uint8 after each of the two 1-D passes. `torch.nn.functional.interpolate(mode="bicubic")` uses a = −0.75, no antialias
  (and `antialias=True` still differs at the borders and in a): LR made with it is another degradation, and
  PSNRs against models trained on DIV2K's official LR images are not comparable. `imresize` below is the
  MATLAB kernel.
- PSNR is computed on the Y channel of MATLAB's `rgb2ycbcr` (ITU-R BT.601, studio swing):
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) with R, G, B in [0, 1], Y in [16, 235]; the SR output is first
  quantised to 8 bits, and `scale` pixels are cropped from every border.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

#: ITU-R BT.601 luma weights of MATLAB's rgb2ycbcr for R, G, B in [0, 1] (Y in [16, 235]).
BT601_Y = (65.481, 128.553, 24.966)


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB imresize's `cubic`, a = −0.5)."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    inner = (a + 2) * ax3 - (a + 3) * ax2 + 1  # |x| ≤ 1
    outer = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a  # 1 < |x| ≤ 2
    return np.where(ax <= 1, inner, np.where(ax <= 2, outer, 0.0))


def resize_weights(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """The (out_len, in_len) matrix W of MATLAB's 1-D bicubic resize: out = W @ in.

    Output pixel i (1-based) sits at u = i/scale + (1 − 1/scale)/2 in input coordinates; when shrinking
    (scale < 1) the kernel is h(x) = scale·cubic(scale·x), 4/scale wide (antialiasing); rows are normalised
    to sum 1; taps that fall outside are mirrored back (`[1..n, n..1]`, MATLAB's symmetric padding).
    """
    antialias = scale < 1
    width = 4.0 / scale if antialias else 4.0
    i = np.arange(1, out_len + 1, dtype=np.float64)
    u = i / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (out, taps), 1-based input positions
    d = u[:, None] - idx
    w = scale * cubic(scale * d) if antialias else cubic(d)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])  # 0-based [1..n, n..1]
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    W = np.zeros((out_len, in_len))
    np.add.at(W, (np.repeat(np.arange(out_len), taps), src.reshape(-1)), w.reshape(-1))
    return W


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's cast to uint8: round half away from zero (numpy rounds half to even), clip to [0, 255]."""
    return np.clip(np.floor(x + 0.5), 0, 255)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` of an (H, W) or (H, W, C) image.

    The output size is ceil(H·scale) × ceil(W·scale); rows are resized first, then columns (MATLAB's order
    for equal scales). uint8 in → uint8 out, and, as in MATLAB, the intermediate image after the first pass
    is uint8 too (rounded half away from zero); float in → float64 out, never rounded. Checked once against
    the ×2 LR images of Set5 that the IMDN authors ship (github.com/Zheng222/IMDN, Test_Datasets/Set5_LR/x2):
    all five identical to the last bit.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an (H, W) or (H, W, C) image, got shape {img.shape}")
    h, w = img.shape[:2]
    out_h, out_w = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    as_uint8 = img.dtype == np.uint8
    step = _round_uint8 if as_uint8 else (lambda x: x)
    x = img.astype(np.float64)
    Wh, Ww = resize_weights(h, out_h, scale), resize_weights(w, out_w, scale)
    x = step(np.tensordot(Wh, x, axes=(1, 0)))  # (out_h, W, C)
    x = step(np.moveaxis(np.tensordot(Ww, x, axes=(1, 1)), 0, 1))  # (out_h, out_w, C)
    return x.astype(np.uint8) if as_uint8 else x


def rgb_to_y(rgb: Tensor) -> Tensor:
    """BT.601 luma Y ∈ [16, 235] (MATLAB rgb2ycbcr) of RGB in [0, 1], channels at dim −3. → (..., H, W)"""
    r, g, b = rgb.unbind(-3)
    return 16.0 + BT601_Y[0] * r + BT601_Y[1] * g + BT601_Y[2] * b


def quantise(img: Tensor) -> Tensor:
    """Clip to [0, 1] and round to 8 bits (what a saved PNG holds), in [0, 1]."""
    return img.clamp(0, 1).mul(255).round().div(255)


def psnr_y(sr: Tensor, hr: Tensor, crop: int) -> Tensor:
    """PSNR in dB on Y (peak 255) of an SR image against its HR, `crop` pixels cut from each border.

    Args:
        sr: (..., 3, H, W) network output in [0, 1] (quantised to 8 bits here).
        hr: (..., 3, H, W) ground truth in [0, 1] (8-bit values).
        crop: border width; the SR field uses crop = scale.
    Returns: (...) PSNR per image (inf where identical).
    """
    if sr.shape != hr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")
    diff = rgb_to_y(quantise(sr.double())) - rgb_to_y(hr.double())
    if crop > 0:
        diff = diff[..., crop:-crop, crop:-crop]
    mse = diff.pow(2).mean(dim=(-2, -1))
    return 10 * torch.log10(255.0 ** 2 / mse)
