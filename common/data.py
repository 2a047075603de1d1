"""The datasets on disk: CIFAR-10/100, SVHN, ImageNet16-120 and synthetic arrays, and the DARTS search split.

Arrays come from the official on-disk layouts (CIFAR python pickles, NB201's ImageNet16 pickles,
SVHN's .mat files, read with scipy) and are returned as ``uint8 (N, H, W, 3)`` images with ``int64 (N,)`` labels.
Exact subsets (any number of images per batch file) are accepted; no checksums are checked. The two
augmenting loaders that serve them (`make_loader`, `DeviceLoader`, `TorchLoader`) live in common/loaders.py
and are re-exported here.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.loaders import (  # noqa: F401 - re-exported: their home was this module
    Cutout,
    DeviceLoader,
    TorchLoader,
    crop_flip,
    crop_flip_index,
    cutout_mask,
    gather_crops,
    make_loader,
    pad_images,
    pick_key,
)
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
