"""Datasets, the DARTS search split, and two interchangeable augmenting loaders.

Arrays come from the official on-disk layouts (CIFAR python pickles, NB201's ImageNet16 pickles,
SVHN's .mat files, read with scipy) and are returned as ``uint8 (N, H, W, 3)`` images with ``int64 (N,)`` labels.
Exact subsets (any number of images per batch file) are accepted; no checksums are checked.

Two loaders yield the same thing, ``(x float32 (B, 3, H, W) normalised, y int64 (B,))`` on a device,
with the same augmentation distribution (DARTS's CIFAR recipe):

    RandomCrop(H, padding=H // 8) with zero padding → RandomHorizontalFlip(0.5) → ToTensor →
    Normalize(mean, std) → Cutout(cutout)   (cutout zeroes a square after normalisation)

* :class:`DeviceLoader` keeps the whole split as a uint8 tensor on the device and augments a batch at
  a time with index arithmetic (crop and flip are one gather, cutout one mask): fast on a GPU.
* :class:`TorchLoader` is the CPU reference: per-image ``torchvision.transforms`` in a
  ``torch.utils.data.DataLoader``.

Both are reproducible: the order and every augmentation draw of a pass are a pure function of
``(seed, epoch)`` (``set_epoch``), independent of the device and of the number of workers, so a
resumed run sees identical batches. For the same ``(seed, epoch)`` both loaders visit the samples in
the same order (their augmentation draws differ; only their distribution is shared).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from common.spaces import DATASETS  # defined there, torch-free, for the argument parser

NUM_CLASSES: dict[str, int] = {
    "cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet16-120": 120, "synthetic": 10,
}
MEAN: dict[str, tuple[float, float, float]] = {
    "cifar10": (0.4914, 0.4822, 0.4465),
    "cifar100": (0.5071, 0.4865, 0.4409),
    "svhn": (0.4377, 0.4438, 0.4728),
    "imagenet16-120": (122.68 / 255, 116.66 / 255, 104.01 / 255),  # NB201's values
    "synthetic": (0.5, 0.5, 0.5),
}
STD: dict[str, tuple[float, float, float]] = {
    "cifar10": (0.2470, 0.2435, 0.2616),
    "cifar100": (0.2673, 0.2564, 0.2762),
    "svhn": (0.1980, 0.2010, 0.1970),
    "imagenet16-120": (63.22 / 255, 61.26 / 255, 65.09 / 255),  # NB201's values
    "synthetic": (0.25, 0.25, 0.25),
}

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
NB201_URL = "https://github.com/D-X-Y/NAS-Bench-201"

SYNTHETIC_SIZES = {True: 512, False: 256}  # train, test
_ORDER_STREAM, _AUG_STREAM, _WORKER_STREAM, _PICK_STREAM = 0, 1, 2, 3  # independent random streams from (seed, epoch)


class DataError(Exception):
    """One-line user-facing message (missing/corrupt data)."""


# ----------------------------------------------------------------------------------------------
# Reading arrays
# ----------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _read_pickle(path: Path, encoding: str) -> dict[Any, Any]:
    """Unpickles one batch file; any failure becomes a DataError naming the file."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding=encoding)
    except OSError as e:  # permission denied, an I/O error: the bytes may well be intact
        raise DataError(_unreadable(path, e, path.parent)) from None
    except Exception as e:  # noqa: BLE001 — corrupt pickles raise many different types
        raise DataError(
            f"{path} is corrupt or truncated ({type(e).__name__}: {_one_line(e)}); "
            "delete it and download the dataset again"
        ) from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is corrupt: expected a pickled dict, got {type(entry).__name__}")
    return entry


def _unreadable(path: Path | str, err: OSError, folder: Path) -> str:
    return (f"cannot read {path} ({err.strerror or type(err).__name__}); the file may be intact: give this "
            f"user read access to {folder} (do not delete it)")


def _field(entry: dict[Any, Any], key: str, path: Path) -> Any:
    """``entry[key]`` for str keys (latin1/py3 pickles) or bytes keys (encoding='bytes')."""
    for k in (key, key.encode()):
        if k in entry:
            return entry[k]
    raise DataError(f"{path} is corrupt: no '{key}' entry (keys: {sorted(map(str, entry))})")


def _read_batch(path: Path, label_key: str, side: int, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch in the CIFAR/ImageNet16 layout: 'data' (n, 3·side²) uint8 → (n, side, side, 3)."""
    entry = _read_pickle(path, encoding)
    data = np.asarray(_field(entry, "data", path))
    labels = np.asarray(_field(entry, label_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * side * side:
        raise DataError(
            f"{path} is corrupt: 'data' has shape {data.shape} and dtype {data.dtype}, "
            f"expected (n, {3 * side * side}) uint8"
        )
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path} is corrupt: {labels.size} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1), labels  # (n, 3, s, s) → (n, s, s, 3)


def _missing(folder: Path, names: Sequence[str]) -> list[str]:
    return [n for n in names if not (folder / n).is_file()]


def _load_cifar(name: str, data_dir: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    if name == "cifar10":
        folder, url, label_key, classes = data_dir / "cifar-10-batches-py", CIFAR10_URL, "labels", 10
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    else:
        folder, url, label_key, classes = data_dir / "cifar-100-python", CIFAR100_URL, "fine_labels", 100
        files = ["train" if train else "test"]
    missing, why = _missing(folder, files), ""  # the files first: no network when they are there
    if missing and download:
        def fetch() -> None:  # puts the official layout in place
            import torchvision.datasets as tvd
            (tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100)(root=str(data_dir), train=train, download=True)
        why = try_download(fetch, url, data_dir)
        missing = _missing(folder, files)
    if missing:
        raise DataError(
            f"{name}: {', '.join(missing)} not found in {folder}/{why} — download {url} and extract it "
            f"into {data_dir} (giving {folder.name}/), or run once with network access (torchvision fetches it)"
        )
    parts = [_read_batch(folder / f, label_key, 32, "bytes") for f in files]
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{folder}: labels outside 0..{classes - 1} (min {labels.min()}, max {labels.max()})")
    return images, labels


DNS_TIMEOUT_S = 3.0  # a host that does not resolve by then: offline (the resolver alone can take ~17 s)
DOWNLOAD_TIMEOUT_S = 30.0  # socket timeout while downloading (a stalled connection fails, a slow one goes on)


def _resolve(host: str, timeout: float) -> None:
    """socket.getaddrinfo(host) within `timeout` s (it takes no timeout itself: run it in a thread)."""
    import socket
    import threading
    outcome: list[BaseException | None] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, 443)
            outcome.append(None)
        except OSError as err:
            outcome.append(err)
    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise TimeoutError(f"{host} did not resolve within {timeout:g} s (offline?)")
    if outcome[0] is not None:
        raise outcome[0]


def try_download(fetch: Any, url: str, data_dir: Path) -> str:
    """Call `fetch()` once, briefly (host resolved first, `DNS_TIMEOUT_S`; socket timeout while it runs).

    Returns:
        "" on success, else " (download failed: …)" for the caller's message. A folder the attempt
        created is removed again on failure, so a wrong path is never left behind.
    """
    import shutil
    import socket
    from urllib.parse import urlparse
    created = data_dir.absolute()
    while not created.parent.exists():  # the topmost folder the download would create
        created = created.parent
    created = None if created.exists() else created
    old = socket.getdefaulttimeout()
    try:
        _resolve(urlparse(url).hostname or "", DNS_TIMEOUT_S)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        fetch()
        return ""
    except Exception as e:  # noqa: BLE001 — any failure (no network, …) ends in the caller's DataError
        if created is not None and created.exists():
            shutil.rmtree(created, ignore_errors=True)
        return f" (download failed: {type(e).__name__}: {_one_line(e)[:200]})"
    finally:
        socket.setdefaulttimeout(old)


def _load_svhn(data_dir: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """The official `{train,test}_32x32.mat`: 'X' uint8 (32, 32, 3, N), 'y' (N, 1) with 10 for digit 0.

    Read with scipy (as torchvision does, without its md5 check: exact subsets are accepted); torchvision
    only downloads a missing file.
    """
    split = "train" if train else "test"
    path, why = data_dir / f"{split}_32x32.mat", ""
    if not path.is_file() and download:
        try:
            import torchvision.datasets as tvd

            tvd.SVHN(root=str(data_dir), split=split, download=True)
        except Exception as e:  # noqa: BLE001 — no network, …: ends in the DataError below
            why = f" (torchvision download failed: {type(e).__name__}: {_one_line(e)[:200]})"
    if not path.is_file():
        raise DataError(f"svhn: {path} not found{why} — download {SVHN_URL}{split}_32x32.mat into {data_dir} "
                        "(reading needs scipy), or run once with network access (torchvision downloads it)")
    try:
        import scipy.io
    except ImportError:
        raise DataError(f"svhn: reading {path} needs scipy (pip install scipy)") from None
    try:
        mat = scipy.io.loadmat(str(path))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except Exception as e:  # noqa: BLE001 — truncated/garbled file, missing key
        raise DataError(f"svhn: {path} is not a readable SVHN .mat file ({type(e).__name__}: "
                        f"{_one_line(e)[:120]}); download it again from {SVHN_URL}") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise DataError(f"svhn: {path} holds X {x.shape} and y {y.shape}; expected X (32, 32, 3, N), y (N, 1)")
    if y.size and (y.min() < 0 or y.max() > 10):
        raise DataError(f"svhn: {path}: labels outside 1..10 (min {y.min()}, max {y.max()})")
    images = np.ascontiguousarray(x.transpose(3, 0, 1, 2).astype(np.uint8))  # (H, W, C, N) → (N, H, W, C)
    return images, y.astype(np.int64) % 10  # SVHN's label 10 is the digit 0 (torchvision's mapping)


def _load_imagenet16(data_dir: Path, train: bool, classes: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """NB201's downsampled ImageNet: pickles of 'data' (n, 768) uint8 and 1-based 'labels' (1..1000)."""
    folder = data_dir / "ImageNet16"
    files = [f"train_data_batch_{i}" for i in range(1, 11)] if train else ["val_data"]
    missing = _missing(folder, files)
    if missing:
        shown = ", ".join(missing)
        if len(missing) > 3:
            shown = f"{missing[0]} … {missing[-1]} ({len(missing)} files)"
        raise DataError(
            f"imagenet16-120: {shown} not found in {folder}/ — get NB201's ImageNet16 pickles "
            f"(train_data_batch_1..10, val_data) from the NAS-Bench-201 authors ({NB201_URL}) and extract "
            f"them into {folder}/"
        )
    images, labels = [], []
    for f in files:
        x, y = _read_batch(folder / f, "labels", 16, "latin1")
        keep = (y >= 1) & (y <= classes)  # ImageNet16-120 = the first 120 classes
        images.append(x[keep])
        labels.append(y[keep] - 1)  # 1-based → 0-based
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _make_synthetic(train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic images whose class is learnable from the mean colour (tests only)."""
    n, classes = SYNTHETIC_SIZES[train], NUM_CLASSES["synthetic"]
    palette = np.random.default_rng(1234).uniform(40, 215, size=(classes, 3))  # per-class mean colour
    rng = np.random.default_rng(0 if train else 1)
    labels = rng.permutation(np.arange(n) % classes).astype(np.int64)
    noise = rng.normal(0.0, 24.0, size=(n, 32, 32, 3))
    images = np.clip(np.rint(palette[labels][:, None, None, :] + noise), 0, 255).astype(np.uint8)
    return images, labels


def load_arrays(
    name: str, data_dir: str | Path, train: bool = True, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a whole split as arrays.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: folder holding ``cifar-10-batches-py/``, ``cifar-100-python/``, ``ImageNet16/`` or
            the SVHN ``.mat`` files (ignored for ``synthetic``).
        train: the training split if True, else the test (ImageNet16: ``val_data``) split.
        download: let torchvision download CIFAR/SVHN when files are missing (needs network).

    Returns:
        uint8 images (N, H, W, 3) and int64 labels (N,), in file order.

    Raises:
        DataError: files missing or corrupt (a one-line message saying what to do).
        ValueError: unknown dataset name.
    """
    data_dir = Path(data_dir).expanduser()
    try:
        if name in ("cifar10", "cifar100"):
            return _load_cifar(name, data_dir, train, download)
        if name == "svhn":
            return _load_svhn(data_dir, train, download)
        if name == "imagenet16-120":
            return _load_imagenet16(data_dir, train)
    except PermissionError as e:  # a folder without read/search permission (looking for the files)
        raise DataError(_unreadable(e.filename or data_dir, e, data_dir)) from None
    if name == "synthetic":
        return _make_synthetic(train)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def search_split(
    name: str, data_dir: str | Path, limit_train: int | None = None, download: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """DARTS split: first half of the train set trains w, second half trains α.

    ``split = N // 2``; w gets images ``[0, split)``, α gets ``[split, N)`` (DARTS's ``train_search``).

    Args:
        name: one of :data:`DATASETS`.
        data_dir: see :func:`load_arrays`.
        limit_train: keep only the first ``limit_train`` images of each half (tiny CPU runs).
        download: see :func:`load_arrays`.

    Returns:
        ``((x_w, y_w), (x_α, y_α))`` as uint8 (n, H, W, 3) / int64 (n,) arrays.
    """
    images, labels = load_arrays(name, data_dir, train=True, download=download)
    split = len(images) // 2
    w_idx, a_idx = slice(0, split), slice(split, len(images))
    if limit_train is not None:
        if limit_train < 1:
            raise ValueError(f"limit_train must be ≥ 1, got {limit_train}")
        w_idx = slice(0, min(split, limit_train))
        a_idx = slice(split, min(len(images), split + limit_train))
    return (images[w_idx], labels[w_idx]), (images[a_idx], labels[a_idx])


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
