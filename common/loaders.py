"""The two interchangeable augmenting loaders of the search and evaluation data, on a device or the CPU.

Both yield ``(x float32 (B, 3, H, W) normalised, y int64 (B,))`` on a device, with the same augmentation
distribution (DARTS's CIFAR recipe):

    RandomCrop(H, padding=H // 8) with zero padding → RandomHorizontalFlip(0.5) → ToTensor →
    Normalize(mean, std) → Cutout(cutout)   (cutout zeroes a square after normalisation)

* :class:`DeviceLoader` keeps the whole split as a uint8 tensor on the device and augments a batch at
  a time with index arithmetic (crop and flip are one gather, cutout one mask): fast on a GPU.
* :class:`TorchLoader` is the CPU reference: per-image ``torchvision.transforms`` in a
  ``torch.utils.data.DataLoader``.

Both are reproducible: the order and every augmentation draw of a pass are a pure function of
``(seed, epoch)`` (``set_epoch``), independent of the device and of the number of workers, so a
resumed run sees identical batches. For the same ``(seed, epoch)`` both loaders visit the samples in
the same order (their augmentation draws differ; only their distribution is shared). The arrays they
load come from common/data.py.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

_ORDER_STREAM, _AUG_STREAM, _WORKER_STREAM, _PICK_STREAM = 0, 1, 2, 3  # independent random streams from (seed, epoch)


# ----------------------------------------------------------------------------------------------
# Seeds: every random draw of a pass is a pure function of (seed, epoch, stream[, index])
# ----------------------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _mix(*values: int) -> int:
    """Hashes integers into a 63-bit seed (splitmix64 finaliser applied per value)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        z = ((h ^ (int(v) & _M64)) + 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        h = z ^ (z >> 31)
    return h >> 1


def pick_key(step: int) -> int:
    """The stand-in for an epoch number in the augmentation seed of `pick(indices, step)`: a stream
    apart from every pass's (an epoch number is small; this is a 63-bit hash)."""
    return _mix(_PICK_STREAM, step)


def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> Tensor:
    """The visiting order of one pass (CPU int64 (n,)); shared by both loaders."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch, _ORDER_STREAM)))


def _check_arrays(images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


# ----------------------------------------------------------------------------------------------
# DeviceLoader: whole split on the device, augmentation by index arithmetic
# ----------------------------------------------------------------------------------------------


def crop_flip_index(
    idx: Tensor, oy: Tensor, ox: Tensor, flip: Tensor, height: int, width: int, padding: int
) -> tuple[Tensor, Tensor]:
    """Flat-index parts of crops (then horizontal flips) of zero-padded images.

    For ``padded`` of shape (N, 3, H+2p, W+2p), output pixel ``(b, c, i, j)`` of the crop at offset
    ``(oy[b], ox[b])``, flipped where ``flip[b]``, is ``padded.view(-1)[row[b, i] + c·(H+2p)(W+2p) +
    col[b, j]]``, i.e. ``padded[idx[b], c, oy[b] + i, ox[b] + j']`` with ``j' = W-1-j`` if flipped.

    Args:
        idx: int64 (B,) which images.
        oy, ox: int64 (B,) crop offsets in ``[0, 2p]`` (``p`` = no shift).
        flip: bool (B,), flip the crop left-right (RandomCrop then RandomHorizontalFlip).
        height, width: output (= unpadded image) size H, W.
        padding: p.

    Returns:
        ``row`` int64 (B, H) and ``col`` int64 (B, W).
    """
    hp, wp = height + 2 * padding, width + 2 * padding
    i = torch.arange(height, device=idx.device)
    j = torch.arange(width, device=idx.device)
    row = idx[:, None] * (3 * hp * wp) + (oy[:, None] + i) * wp  # (B, H)
    col = ox[:, None] + torch.where(flip[:, None], width - 1 - j, j)  # (B, W)
    return row, col


def gather_crops(padded: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """The crops described by :func:`crop_flip_index`: one ``take``, (B, 3, H, W) of ``padded``'s dtype."""
    channel = torch.arange(3, device=padded.device)[None, :, None, None] * (padded.shape[2] * padded.shape[3])
    return torch.take(padded, row[:, None, :, None] + channel + col[:, None, None, :])


def pad_images(images: Tensor, padding: int) -> Tensor:
    """Zero-pads (N, 3, H, W) images by ``padding`` pixels on each side (RandomCrop's ``fill=0``)."""
    return torch.nn.functional.pad(images, (padding,) * 4).contiguous()


def crop_flip(images: Tensor, idx: Tensor, oy: Tensor, ox: Tensor, flip: Tensor, padding: int) -> Tensor:
    """Zero-padded crop then horizontal flip of ``images[idx]`` (uint8 (N, 3, H, W) → (B, 3, H, W)).

    A convenience composing :func:`pad_images`, :func:`crop_flip_index` and :func:`gather_crops`
    (the DeviceLoader pads once and reuses the padded tensor).
    """
    row, col = crop_flip_index(idx, oy, ox, flip, images.shape[2], images.shape[3], padding)
    return gather_crops(pad_images(images, padding), row, col)


def cutout_mask(cy: Tensor, cx: Tensor, length: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """DARTS Cutout's square: rows ``[cy - L//2, cy + L//2)`` × cols likewise, clipped to the image.

    Args:
        cy, cx: int64 (B,) centres, uniform over the pixels.
        length: side L of the square.
        height, width: image size.

    Returns:
        bool ``rows`` (B, H) and ``cols`` (B, W); pixel (i, j) of image b is cut iff
        ``rows[b, i] & cols[b, j]``.
    """
    i = torch.arange(height, device=cy.device)
    j = torch.arange(width, device=cx.device)
    y1, y2 = (cy - length // 2).clamp(0, height), (cy + length // 2).clamp(0, height)
    x1, x2 = (cx - length // 2).clamp(0, width), (cx + length // 2).clamp(0, width)
    rows = (i >= y1[:, None]) & (i < y2[:, None])  # (B, H)
    cols = (j >= x1[:, None]) & (j < x2[:, None])  # (B, W)
    return rows, cols


class DeviceLoader:
    """Whole split kept as a uint8 tensor on `device`; augmentation in batches on the device.

    No per-step host→device copies. The split is stored once, zero-padded, as uint8 (N, 3, H+2p,
    W+2p). Per pass, the order and all augmentation draws (crop offsets, flips, cutout centres) are
    drawn on the CPU from generators seeded by ``(seed, epoch)``, moved to the device in one copy
    and turned into per-sample gather indices and cutout masks for the whole pass; a batch is then
    one ``take`` (crop + flip), ToTensor/Normalize arithmetic and one masked fill (cutout), with no
    ``.item()`` and about ten kernel launches.

    Args:
        images: uint8 (N, H, W, 3).
        labels: int (N,).
        batch_size: images per batch.
        device: where the data lives and batches are produced.
        mean, std: per-channel normalisation (of pixels scaled to [0, 1]).
        augment: random crop (zero padding ``padding``) + horizontal flip (+ cutout); False to evaluate.
        cutout: side of the cutout square (0 = none); applied only when ``augment``.
        shuffle: visit the samples in a random order each pass.
        drop_last: drop the last incomplete batch.
        seed: base seed of every random draw.
        padding: crop padding; default ``H // 8`` (4 for 32×32, NB201's 2 for 16×16).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = True,
        cutout: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        padding: int | None = None,
    ) -> None:
        _check_arrays(images, labels)
        self.device = torch.device(device)
        self.batch_size, self.augment, self.cutout = batch_size, augment, cutout
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.n, self.height, self.width = images.shape[0], images.shape[1], images.shape[2]
        self.padding = self.height // 8 if padding is None else padding
        self.epoch = 0
        stored_pad = self.padding if augment else 0
        nchw = torch.as_tensor(images).to(self.device).permute(0, 3, 1, 2)
        self.images = pad_images(nchw, stored_pad)  # (N, 3, H+2p, W+2p) uint8, zero border
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64)).to(self.device)  # (N,)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1).to(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass use ``epoch`` (later passes continue with epoch + 1, + 2, …)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return _num_batches(self.n, self.batch_size, self.drop_last)

    def _plan(self, epoch: int) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """One pass on the device: gather indices row (N, H), col (N, W), labels (N,), cutout rows/cols."""
        n, H, W = self.n, self.height, self.width
        order = _epoch_order(n, self.seed, epoch, self.shuffle)
        draws = torch.zeros(5, n, dtype=torch.int64)  # oy, ox, flip, cy, cx; no augmentation: all 0
        if self.augment:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, _AUG_STREAM))
            span = 2 * self.padding + 1
            for k, high in enumerate((span, span, 2, H, W)):
                draws[k] = torch.randint(high, (n,), generator=g)
        order, oy, ox, flip, cy, cx = torch.cat([order[None], draws]).to(self.device)  # one copy
        pad = self.padding if self.augment else 0
        row, col = crop_flip_index(order, oy, ox, flip.bool(), H, W, pad)
        cut_rows = cut_cols = None
        if self.augment and self.cutout > 0:
            cut_rows, cut_cols = cutout_mask(cy, cx, self.cutout, H, W)
        return row, col, self.labels[order], cut_rows, cut_cols

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self._batches(*self._plan(epoch))

    def pick(self, indices: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The batch of images `indices` (int64 (B,), CPU), augmented with draws seeded by (seed, `step`)
        (a stream of its own, apart from the passes'): `--valid-batch random`'s batch of a step."""
        n, H, W = indices.numel(), self.height, self.width
        draws = torch.zeros(5, n, dtype=torch.int64)  # oy, ox, flip, cy, cx, as _plan draws them for a pass
        if self.augment:
            g = torch.Generator().manual_seed(_mix(self.seed, pick_key(step), _AUG_STREAM))
            span = 2 * self.padding + 1
            for k, high in enumerate((span, span, 2, H, W)):
                draws[k] = torch.randint(high, (n,), generator=g)
        idx, oy, ox, flip, cy, cx = torch.cat([indices.to(torch.int64)[None], draws]).to(self.device)
        row, col = crop_flip_index(idx, oy, ox, flip.bool(), H, W, self.padding if self.augment else 0)
        x = gather_crops(self.images, row, col).float().div(255).sub(self.mean).div(self.std)
        if self.augment and self.cutout > 0:
            rows, cols = cutout_mask(cy, cx, self.cutout, H, W)
            x.masked_fill_((rows[:, :, None] & cols[:, None, :])[:, None], 0.0)
        return x, self.labels[idx]

    def _batches(
        self, row: Tensor, col: Tensor, labels: Tensor, cut_rows: Tensor | None, cut_cols: Tensor | None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(len(self)):
            s = slice(k * self.batch_size, (k + 1) * self.batch_size)
            x = gather_crops(self.images, row[s], col[s])  # (B, 3, H, W) uint8: crop + flip
            x = x.float().div(255).sub(self.mean).div(self.std)  # = ToTensor + Normalize, bit for bit
            if cut_rows is not None and cut_cols is not None:
                x.masked_fill_((cut_rows[s, :, None] & cut_cols[s, None, :])[:, None], 0.0)  # Cutout
            yield x, labels[s]


# ----------------------------------------------------------------------------------------------
# TorchLoader: the per-image torchvision reference
# ----------------------------------------------------------------------------------------------


class Cutout:
    """DARTS's Cutout on a normalised (C, H, W) tensor: zero a square of side ``length`` centred at a
    uniform random pixel, clipped at the borders. Draws from torch's global RNG."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: Tensor) -> Tensor:
        h, w = img.shape[1], img.shape[2]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y1, y2 = min(max(y - self.length // 2, 0), h), min(max(y + self.length // 2, 0), h)
        x1, x2 = min(max(x - self.length // 2, 0), w), min(max(x + self.length // 2, 0), w)
        img = img.clone()
        img[:, y1:y2, x1:x2] = 0.0
        return img


class _SeededImages(torch.utils.data.Dataset):
    """Applies ``transform`` to image i with torch's RNG seeded by (seed, epoch, i): worker-independent."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: Any, random: bool, seed: int
    ) -> None:
        self.images, self.labels, self.transform = images, labels, transform
        self.random, self.seed, self.epoch = random, seed, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image

        img = Image.fromarray(self.images[i])
        if not self.random:
            return self.transform(img), int(self.labels[i])
        rng = torch.default_generator  # torchvision's transforms draw from it
        state = rng.get_state()  # leave the caller's RNG state untouched
        try:
            rng.manual_seed(_mix(self.seed, self.epoch, _AUG_STREAM, i))
            x = self.transform(img)
        finally:
            rng.set_state(state)
        return x, int(self.labels[i])


class TorchLoader:
    """The CPU reference path: per-image ``torchvision.transforms`` in a ``torch.utils.data.DataLoader``.

    ``RandomCrop(H, padding) → RandomHorizontalFlip() → ToTensor() → Normalize(mean, std) → Cutout``;
    each image's draws are seeded from ``(seed, epoch, index)`` and the order from ``(seed, epoch)``,
    so batches do not depend on ``num_workers``. Batches are moved to ``device``.

    Args:
        images, labels, batch_size, device, mean, std, augment, cutout, shuffle, drop_last, seed,
        padding: as for :class:`DeviceLoader`.
        num_workers: DataLoader worker processes (0 = in the main process).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = True,
        cutout: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        padding: int | None = None,
        num_workers: int = 0,
    ) -> None:
        import torchvision.transforms as T

        _check_arrays(images, labels)
        self.device = torch.device(device)
        self.batch_size, self.augment, self.cutout = batch_size, augment, cutout
        self.shuffle, self.drop_last, self.seed, self.num_workers = shuffle, drop_last, seed, num_workers
        self.n, self.height, self.width = images.shape[0], images.shape[1], images.shape[2]
        self.padding = self.height // 8 if padding is None else padding
        self.epoch = 0
        steps: list[Any] = []
        if augment:
            steps += [T.RandomCrop((self.height, self.width), padding=self.padding), T.RandomHorizontalFlip()]
        steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
        if augment and cutout > 0:
            steps.append(Cutout(cutout))
        labels = np.asarray(labels, dtype=np.int64)
        self.dataset = _SeededImages(images, labels, T.Compose(steps), augment, seed)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next pass use ``epoch`` (later passes continue with epoch + 1, + 2, …)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return _num_batches(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        self.dataset.epoch = epoch  # read by __getitem__ (copied into workers when they start)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=_epoch_order(self.n, self.seed, epoch, self.shuffle).tolist(),
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            # worker base seeds come from here, not from the global RNG
            generator=torch.Generator().manual_seed(_mix(self.seed, epoch, _WORKER_STREAM)),
        )
        return self._to_device(loader)

    def pick(self, indices: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The batch of images `indices` (int64 (B,)), each augmented with draws seeded by (seed, `step`,
        its index) (a stream of its own, apart from the passes'): `--valid-batch random`'s batch of a step."""
        epoch = self.dataset.epoch
        self.dataset.epoch = pick_key(step)
        try:
            items = [self.dataset[int(i)] for i in indices]
        finally:
            self.dataset.epoch = epoch
        x = torch.stack([x for x, _ in items])
        y = torch.tensor([y for _, y in items], dtype=torch.int64)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _to_device(self, loader: torch.utils.data.DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_loader(
    kind: str,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    device: torch.device | str,
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool = True,
    cutout: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    padding: int | None = None,
    num_workers: int = 0,
) -> DeviceLoader | TorchLoader:
    """Builds a loader; ``kind`` ∈ {"auto", "device", "torch"} ("auto": device on CUDA, torch on CPU).

    Other arguments as for :class:`TorchLoader` (``num_workers`` is ignored by the DeviceLoader).
    """
    if kind not in ("auto", "device", "torch"):
        raise ValueError(f"kind must be 'auto', 'device' or 'torch', got {kind!r}")
    if kind == "auto":
        kind = "device" if torch.device(device).type == "cuda" else "torch"
    common: dict[str, Any] = {
        "augment": augment, "cutout": cutout, "shuffle": shuffle, "drop_last": drop_last,
        "seed": seed, "padding": padding,
    }
    if kind == "device":
        return DeviceLoader(images, labels, batch_size, device, mean, std, **common)
    return TorchLoader(images, labels, batch_size, device, mean, std, num_workers=num_workers, **common)
