"""SR data: DIV2K HR / bicubic-LR pairs with random training patches, and the Set5/Set14/B100/Urban100 readers.

Layouts (the official DIV2K archive names, and EDSR-PyTorch's `benchmark` folder, which DLSR's code reads:
github.com/DawnHH/DLSR-PyTorch data/div2k.py, data/benchmark.py):

    DATA/DIV2K/DIV2K_train_HR/0001.png ... 0800.png
    DATA/DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png ...
    DATA/benchmark/Set5/HR/baby.png            DATA/benchmark/Set5/LR_bicubic/X2/babyx2.png
    (Set14, B100, Urban100 alike)

Get DIV2K from https://data.vision.ee.ethz.ch/cvl/DIV2K/ (DIV2K_train_HR.zip, DIV2K_train_LR_bicubic_X2.zip)
and the four test sets from EDSR-PyTorch's benchmark.tar (github.com/sanghyun-son/EDSR-PyTorch, README).
A test set that has HR images only can get its LR folder from `write_lr_folder` (MATLAB-style bicubic).

HR images are cropped to a multiple of the scale ("modcrop") before pairing. Images are held in memory as
uint8 (all 800 DIV2K ×2 pairs: about 8.6 GB).
Training patches (EDSR's `get_patch`, which DLSR uses): a random image, a random LR patch of side p/s with the
HR patch of side p at the same place, a random horizontal flip, vertical flip and transpose (8 dihedral
variants). An "epoch" is `steps` batches, EDSR's `--test_every` (1000; DLSR data/srdata.py:61-66).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from common.data import DataError
from common.sr.metrics import imresize

TEST_SETS = ("Set5", "Set14", "B100", "Urban100")
IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
DIV2K_HINT = ("download DIV2K_train_HR.zip and DIV2K_train_LR_bicubic_X{s}.zip from "
              "https://data.vision.ee.ethz.ch/cvl/DIV2K/ and unzip them into {root}")
BENCH_HINT = ("put the test set's HR images in {hr} (EDSR-PyTorch's benchmark.tar has Set5, Set14, B100, "
              "Urban100) and its LR images in {lr} (or make them with common.sr.data.write_lr_folder)")


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image; a grey image is repeated to 3 channels."""
    from PIL import Image  # torchvision's dependency; imported here so the module imports without it
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OSError as err:
        raise DataError(f"cannot read image {path} ({err})") from None


def write_image(path: Path, img: np.ndarray) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of `scale` (top-left kept)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def _lr_name(hr: Path, scale: int) -> str:
    return f"{hr.stem}x{scale}{hr.suffix}"


def write_lr_folder(hr_dir: str | Path, lr_dir: str | Path, scale: int) -> int:
    """Write the MATLAB-bicubic ×1/scale image of every HR image (modcropped) as `<name>x<scale>.png`."""
    hr_dir, lr_dir = Path(hr_dir), Path(lr_dir)
    paths = _images(hr_dir)
    for p in paths:
        write_image(lr_dir / f"{p.stem}x{scale}.png", imresize(modcrop(read_image(p), scale), 1 / scale))
    return len(paths)


def _pairs(hr_dir: Path, lr_dir: Path, scale: int, hint: str, select: Sequence[int] | None = None
           ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR, LR) of each HR image whose LR exists; a one-line DataError naming what is missing."""
    for folder in (hr_dir, lr_dir):
        if not folder.is_dir():
            raise DataError(f"no folder {folder}: {hint}")
    paths = _images(hr_dir)
    if select is not None:
        paths = [p for p in paths if p.stem.isdigit() and int(p.stem) in select]
    if not paths:
        raise DataError(f"no images in {hr_dir}{' in the range asked for' if select is not None else ''}: {hint}")
    lr_files = {p.stem: p for p in _images(lr_dir)}
    out = []
    for p in paths:
        lr_path = lr_files.get(f"{p.stem}x{scale}")
        if lr_path is None:
            raise DataError(f"no LR image for {p.name} in {lr_dir} (expected {_lr_name(p, scale)}): {hint}")
        hr, lr = modcrop(read_image(p), scale), read_image(lr_path)
        if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
            raise DataError(f"{lr_path} is {lr.shape[1]}×{lr.shape[0]}, not 1/{scale} of {p} "
                            f"({hr.shape[1]}×{hr.shape[0]} after modcrop)")
        out.append((p.stem, hr, lr))
    return out


def parse_range(text: str) -> range:
    """'1-600' → range(1, 601) (DIV2K image numbers, inclusive, as DLSR's --data_range)."""
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise DataError(f"image range {text!r} is not of the form FIRST-LAST (e.g. 1-600)") from None
    if not 1 <= lo <= hi:
        raise DataError(f"image range {text!r} must have 1 <= FIRST <= LAST")
    return range(lo, hi + 1)


def div2k_pairs(root: str | Path, scale: int, images: range) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The DIV2K training pairs numbered in `images` from root/DIV2K (official folder names)."""
    base = Path(root) / "DIV2K"
    hint = DIV2K_HINT.format(s=scale, root=base)
    return _pairs(base / "DIV2K_train_HR", base / "DIV2K_train_LR_bicubic" / f"X{scale}", scale, hint, images)


def benchmark_pairs(root: str | Path, name: str, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A test set's pairs from root/benchmark/<name>/{HR, LR_bicubic/X<s>}."""
    if name not in TEST_SETS:
        raise DataError(f"unknown test set {name!r}; choose from {', '.join(TEST_SETS)}")
    base = Path(root) / "benchmark" / name
    hr, lr = base / "HR", base / "LR_bicubic" / f"X{scale}"
    return _pairs(hr, lr, scale, BENCH_HINT.format(hr=hr, lr=lr))


def to_tensor(img: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 → (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div(255)


class PatchSampler:
    """Random (LR, HR) training patches from in-memory pairs, reproducible from a numpy Generator.

    `batch()` → LR (B, 3, p/s, p/s) and HR (B, 3, p, p) in [0, 1]; p = `patch` is the HR side (EDSR's and
    DLSR's --patch_size is the output patch).
    """

    def __init__(self, pairs: Sequence[tuple[str, np.ndarray, np.ndarray]], scale: int, patch: int,
                 batch_size: int, rng: np.random.Generator, augment: bool = True) -> None:
        if patch % scale:
            raise DataError(f"--patch {patch} is not a multiple of the scale {scale}")
        small = [n for n, hr, _ in pairs if min(hr.shape[:2]) < patch]
        if small:
            raise DataError(f"images smaller than the {patch}-pixel patch: {', '.join(small[:3])}")
        self.pairs, self.scale, self.patch, self.batch_size = list(pairs), scale, patch, batch_size
        self.rng, self.augment = rng, augment

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        _, hr, lr = self.pairs[int(self.rng.integers(len(self.pairs)))]
        lp = self.patch // self.scale
        y, x = int(self.rng.integers(lr.shape[0] - lp + 1)), int(self.rng.integers(lr.shape[1] - lp + 1))
        lo = lr[y:y + lp, x:x + lp]
        hi = hr[y * self.scale:(y + lp) * self.scale, x * self.scale:(x + lp) * self.scale]
        if self.augment:
            hflip, vflip, rot = (bool(b) for b in self.rng.integers(2, size=3))
            if hflip:
                lo, hi = lo[:, ::-1], hi[:, ::-1]
            if vflip:
                lo, hi = lo[::-1], hi[::-1]
            if rot:
                lo, hi = lo.transpose(1, 0, 2), hi.transpose(1, 0, 2)
        return lo, hi

    def batch(self) -> tuple[Tensor, Tensor]:
        pieces = [self._one() for _ in range(self.batch_size)]
        return (torch.stack([to_tensor(lo) for lo, _ in pieces]), torch.stack([to_tensor(hi) for _, hi in pieces]))

    def batches(self, steps: int) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(steps):
            yield self.batch()
