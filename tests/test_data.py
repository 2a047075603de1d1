"""Tests for common/data.py: real-subset reading, error messages, the search split, and the two loaders
(exactness without augmentation, augmentation statistics against closed forms, determinism)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from common import data as D

C10_MEAN, C10_STD = D.MEAN["cifar10"], D.STD["cifar10"]
LOADERS = (D.DeviceLoader, D.TorchLoader)


# ---------------------------------------------------------------------------------------------
# helpers: independent reads/writes of the pickle layouts and an independent normalisation
# ---------------------------------------------------------------------------------------------


def _raw_rows(path: Path) -> tuple[np.ndarray, list[int]]:
    """Independent read of one official CIFAR pickle: the (n, 3072) rows and the labels."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    return entry["data"], entry.get("labels", entry.get("fine_labels"))


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, label_key: str, str_keys: bool) -> None:
    """Writes images (n, s, s, 3) in the CIFAR/ImageNet16 pickle layout ('data' rows are CHW-flattened)."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    key = (lambda k: k) if str_keys else (lambda k: k.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({key("data"): data, key(label_key): [int(v) for v in labels]}, f)


def _fake_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 folder with `per_batch` images per train batch; returns the train arrays written."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        _write_batch(root / "cifar-10-batches-py" / name, x, y, "labels", str_keys=False)
        if name != "test_batch":
            xs.append(x)
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _normalised(images: np.ndarray, mean=C10_MEAN, std=C10_STD) -> np.ndarray:
    """float64 reference of ToTensor + Normalize: (N, 3, H, W)."""
    x = images.astype(np.float64).transpose(0, 3, 1, 2) / 255.0
    return (x - np.asarray(mean)[:, None, None]) / np.asarray(std)[:, None, None]


def _collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------------------------------------
# the real subsets
# ---------------------------------------------------------------------------------------------


def test_cifar10_real_subset(shared_data: Path) -> None:
    x, y = D.load_arrays("cifar10", shared_data, train=True, download=False)
    assert x.shape == (5170, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (5170,) and y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    xt, yt = D.load_arrays("cifar10", shared_data, train=False, download=False)
    assert xt.shape == (1017, 32, 32, 3) and yt.shape == (1017,) and yt.max() <= 9

    folder = shared_data / "cifar-10-batches-py"
    rows1, labels1 = _raw_rows(folder / "data_batch_1")
    rows2, labels2 = _raw_rows(folder / "data_batch_2")
    np.testing.assert_array_equal(x[0], rows1[0].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(x[len(rows1)], rows2[0].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(y[: len(labels1)], labels1)
    rows_t, labels_t = _raw_rows(folder / "test_batch")
    np.testing.assert_array_equal(xt[-1], rows_t[-1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert yt[-1] == labels_t[-1]


def test_cifar100_real_subset(shared_data: Path) -> None:
    x, y = D.load_arrays("cifar100", shared_data, train=True, download=False)
    xt, yt = D.load_arrays("cifar100", shared_data, train=False, download=False)
    assert x.shape == (486, 32, 32, 3) and xt.shape == (916, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and 0 <= y.min() and y.max() < 100 and yt.max() < 100
    rows, fine = _raw_rows(shared_data / "cifar-100-python" / "train")
    np.testing.assert_array_equal(x[5], rows[5].reshape(3, 32, 32).transpose(1, 2, 0))
    np.testing.assert_array_equal(y, fine)


def test_search_split_real(shared_data: Path) -> None:
    x, y = D.load_arrays("cifar10", shared_data, download=False)
    (xw, yw), (xa, ya) = D.search_split("cifar10", shared_data, download=False)
    assert len(xw) == len(xa) == 2585
    np.testing.assert_array_equal(xw, x[:2585])
    np.testing.assert_array_equal(xa, x[2585:])
    np.testing.assert_array_equal(np.concatenate([yw, ya]), y)
    (xw, yw), (xa, ya) = D.search_split("cifar10", shared_data, limit_train=100, download=False)
    np.testing.assert_array_equal(xw, x[:100])
    np.testing.assert_array_equal(xa, x[2585:2685])
    np.testing.assert_array_equal(ya, y[2585:2685])


def test_search_split_odd_count(tmp_path: Path) -> None:
    x, y = _fake_cifar10(tmp_path, per_batch=3)  # 15 images: DARTS gives 7 / 8
    (xw, yw), (xa, ya) = D.search_split("cifar10", tmp_path, download=False)
    np.testing.assert_array_equal(xw, x[:7])
    np.testing.assert_array_equal(xa, x[7:])
    np.testing.assert_array_equal(yw, y[:7])
    (xw, _), (xa, _) = D.search_split("cifar10", tmp_path, limit_train=5, download=False)
    np.testing.assert_array_equal(xw, x[:5])
    np.testing.assert_array_equal(xa, x[7:12])


def test_fake_subset_any_batch_size(tmp_path: Path) -> None:
    x, y = _fake_cifar10(tmp_path, per_batch=4)
    xr, yr = D.load_arrays("cifar10", tmp_path, download=False)
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(yr, y)
    assert xr.flags.c_contiguous


# ---------------------------------------------------------------------------------------------
# missing and corrupt data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "hint"),
    [
        ("cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        ("cifar100", "cifar-100-python", "cifar-100-python.tar.gz"),
        ("imagenet16-120", "ImageNet16", "NAS-Bench-201"),
    ],
)
def test_missing_data_message(tmp_path: Path, name: str, folder: str, hint: str) -> None:
    with pytest.raises(D.DataError) as info:
        D.load_arrays(name, tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / folder) in msg and hint in msg


def test_failed_download_then_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    calls = []

    def offline(**kwargs):
        calls.append(kwargs)
        raise OSError("no network here")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    monkeypatch.setattr(D, "_resolve", lambda host, timeout: None)  # the host resolves; the download fails
    with pytest.raises(D.DataError, match="no network here") as info:
        D.load_arrays("cifar10", tmp_path, download=True)
    assert calls == [{"root": str(tmp_path), "train": True, "download": True}]
    assert "cifar-10-python.tar.gz" in str(info.value) and "\n" not in str(info.value)


def test_successful_download_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    written = {}

    def fake_download(root: str, train: bool, download: bool) -> None:
        written["arrays"] = _fake_cifar10(Path(root), per_batch=2)

    monkeypatch.setattr(tvd, "CIFAR10", fake_download)
    monkeypatch.setattr(D, "_resolve", lambda host, timeout: None)  # the host resolves
    x, _ = D.load_arrays("cifar10", tmp_path, download=True)
    np.testing.assert_array_equal(x, written["arrays"][0])


def test_truncated_real_batch(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "cifar-10-batches-py" / "test_batch").read_bytes()
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(D.DataError, match="test_batch") as info:
        D.load_arrays("cifar10", tmp_path, train=False, download=False)
    assert "\n" not in str(info.value)


def test_corrupt_and_misshapen_batches(tmp_path: Path) -> None:
    _fake_cifar10(tmp_path)
    batch3 = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch3.write_bytes(batch3.read_bytes()[:100])
    with pytest.raises(D.DataError, match="data_batch_3"):
        D.load_arrays("cifar10", tmp_path, download=False)
    with open(batch3, "wb") as f:  # right pickle, wrong row length
        pickle.dump({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(D.DataError, match="data_batch_3.*3072"):
        D.load_arrays("cifar10", tmp_path, download=False)


def test_imagenet16_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "ImageNet16"
    kept_x, kept_y = [], []
    for name in [f"train_data_batch_{i}" for i in range(1, 11)]:
        x = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
        y = rng.integers(1, 201, 6)  # 1-based labels over 200 classes
        y[0], y[1] = 1, 120  # both ends of the kept range
        _write_batch(folder / name, x, y, "labels", str_keys=True)
        kept_x.append(x[y <= 120])
        kept_y.append(y[y <= 120] - 1)
    _write_batch(folder / "val_data", x, y, "labels", str_keys=True)
    xr, yr = D.load_arrays("imagenet16-120", tmp_path)
    np.testing.assert_array_equal(xr, np.concatenate(kept_x))
    np.testing.assert_array_equal(yr, np.concatenate(kept_y))
    assert xr.shape[1:] == (16, 16, 3) and yr.min() == 0 and yr.max() == 119
    xv, yv = D.load_arrays("imagenet16-120", tmp_path, train=False)
    np.testing.assert_array_equal(yv, y[y <= 120] - 1)


def test_synthetic() -> None:
    x, y = D.load_arrays("synthetic", "unused")
    xt, yt = D.load_arrays("synthetic", "unused", train=False)
    assert x.shape == (512, 32, 32, 3) and xt.shape == (256, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10)) and len(yt) == 256
    np.testing.assert_array_equal(x, D.load_arrays("synthetic", "unused")[0])  # deterministic
    assert not np.array_equal(x[:256], xt)
    # learnable: nearest class-mean colour on the test split
    centroids = np.stack([x[y == k].mean(axis=(0, 1, 2)) for k in range(10)])
    pred = np.argmin(((xt.mean(axis=(1, 2))[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yt).mean() > 0.9
    assert set(D.NUM_CLASSES) == set(D.MEAN) == set(D.STD) == set(D.DATASETS)


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="cifar10"):
        D.load_arrays("mnist", ".")


# ---------------------------------------------------------------------------------------------
# the augmentation pieces against a per-image numpy reference
# ---------------------------------------------------------------------------------------------


@given(
    side=st.sampled_from([8, 16, 32]),
    padding=st.integers(0, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_crop_flip_matches_numpy(side: int, padding: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, (7, 3, side, side), dtype=np.uint8)
    idx = rng.integers(0, 7, 5)
    oy, ox = rng.integers(0, 2 * padding + 1, 5), rng.integers(0, 2 * padding + 1, 5)
    flip = rng.integers(0, 2, 5).astype(bool)
    out = D.crop_flip(*map(torch.as_tensor, (images, idx, oy, ox, flip)), padding=padding).numpy()
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for b in range(5):
        ref = padded[idx[b], :, oy[b] : oy[b] + side, ox[b] : ox[b] + side]
        np.testing.assert_array_equal(out[b], ref[:, :, ::-1] if flip[b] else ref)


@given(
    height=st.integers(4, 40),
    width=st.integers(4, 40),
    length=st.integers(1, 24),
    seed=st.integers(0, 2**31 - 1),
)
def test_cutout_mask_matches_darts_slicing(height: int, width: int, length: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cy, cx = rng.integers(0, height, 6), rng.integers(0, width, 6)
    rows, cols = D.cutout_mask(torch.as_tensor(cy), torch.as_tensor(cx), length, height, width)
    mask = (rows[:, :, None] & cols[:, None, :]).numpy()
    for b in range(6):  # DARTS's Cutout: mask[y1:y2, x1:x2] = 0 with np.clip'd bounds
        ref = np.zeros((height, width), bool)
        y1, y2 = np.clip(cy[b] - length // 2, 0, height), np.clip(cy[b] + length // 2, 0, height)
        x1, x2 = np.clip(cx[b] - length // 2, 0, width), np.clip(cx[b] + length // 2, 0, width)
        ref[y1:y2, x1:x2] = True
        np.testing.assert_array_equal(mask[b], ref)


# ---------------------------------------------------------------------------------------------
# loaders: exactness without augmentation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [32, 16])
def test_eval_loaders_exact(side: int) -> None:
    rng = np.random.default_rng(side)
    images = rng.integers(0, 256, (150, side, side, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 150)
    outs = []
    for cls in LOADERS:
        loader = cls(images, labels, 64, "cpu", C10_MEAN, C10_STD, augment=False, cutout=16, shuffle=False)
        assert len(loader) == 3
        batches = list(loader)
        assert [len(b[0]) for b in batches] == [64, 64, 22]
        x, y = _collect(batches)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (150, 3, side, side)
        np.testing.assert_allclose(x.numpy(), _normalised(images), rtol=0, atol=2e-6)
        np.testing.assert_array_equal(y.numpy(), labels)
        outs.append(x)
    assert torch.equal(outs[0], outs[1])  # bit-identical float32 arithmetic


def test_shuffled_pairs_and_shared_order() -> None:
    images = np.random.default_rng(1).integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(100)  # the label names the image
    ref = torch.as_tensor(_normalised(images), dtype=torch.float32)
    orders = []
    for cls in LOADERS:
        loader = cls(images, labels, 32, "cpu", C10_MEAN, C10_STD, augment=False, seed=5)
        loader.set_epoch(2)
        x, y = _collect(loader)
        assert sorted(y.tolist()) == list(range(100)) and y.tolist() != list(range(100))
        torch.testing.assert_close(x, ref[y], rtol=0, atol=2e-6)
        orders.append(y)
    assert torch.equal(orders[0], orders[1])


@pytest.mark.parametrize("cls", LOADERS)
def test_drop_last(cls) -> None:
    images = np.zeros((70, 8, 8, 3), np.uint8)
    loader = cls(images, np.zeros(70, np.int64), 32, "cpu", C10_MEAN, C10_STD, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [32, 32]


# ---------------------------------------------------------------------------------------------
# loaders: augmentation statistics (same distribution, checked against closed forms)
# ---------------------------------------------------------------------------------------------

MARK_ROW, MARK_COL = 16, 10  # marker pixel (channel 0); its column tells flipped from unflipped


def _marker_outputs(cls, cutout: int, epochs: int, n: int = 64) -> torch.Tensor:
    """Augmented outputs of a constant-128 image with one 255 marker pixel, n copies × epochs."""
    images = np.full((n, 32, 32, 3), 128, np.uint8)
    images[:, MARK_ROW, MARK_COL, 0] = 255
    loader = cls(images, np.zeros(n, np.int64), 64, "cpu", C10_MEAN, C10_STD, cutout=cutout, seed=11)
    return torch.cat([_collect(loader)[0] for _ in range(epochs)])  # passes use epochs 0, 1, 2, …


@pytest.mark.parametrize("cls", LOADERS)
def test_crop_offsets_uniform_and_flip_rate(cls) -> None:
    x = _marker_outputs(cls, cutout=0, epochs=64)  # 4096 samples
    pos = x[:, 0].flatten(1).argmax(1)
    row, col = pos // 32, pos % 32
    flipped = col > 15
    col = torch.where(flipped, 31 - col, col)  # undo the flip
    dy, dx = MARK_ROW - row, MARK_COL - col  # the shift = offset - padding, in [-4, 4]
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4
    counts = torch.bincount(((dy + 4) * 9 + dx + 4), minlength=81).double()
    expected = len(x) / 81
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert counts.min() > 0 and chi2 < 135.8  # χ²(80) 0.9999 quantile
    rate = flipped.double().mean().item()
    assert abs(rate - 0.5) < 4 * (0.25 / len(x)) ** 0.5
    # the unshifted, unflipped output is the normalised image itself, at rate 1/162
    plain = torch.as_tensor(_normalised(np.full((1, 32, 32, 3), 128, np.uint8)), dtype=torch.float32)[0]
    plain[0, MARK_ROW, MARK_COL] = (1.0 - C10_MEAN[0]) / C10_STD[0]
    same = (x - plain).abs().flatten(1).amax(1) < 1e-5
    assert torch.equal(same, (dy == 0) & (dx == 0) & ~flipped)


def test_cutout_area_matches_closed_form() -> None:
    lengths = [min(c + 8, 32) - max(c - 8, 0) for c in range(32)]  # DARTS clip, L = 16, side 32
    expected = (sum(lengths) / 32) ** 2 / 1024  # independent rows/cols: E[area] / (H·W)
    fractions = []
    for cls in LOADERS:
        x = _marker_outputs(cls, cutout=16, epochs=32)
        zero = (x == 0).all(1)  # (S, H, W); nothing else is exactly 0 after normalisation
        rows, cols = zero.any(2), zero.any(1)
        assert torch.equal(zero, rows[:, :, None] & cols[:, None, :])  # an axis-aligned rectangle
        assert rows.sum(1).max() <= 16 and cols.sum(1).max() <= 16 and rows.sum(1).min() >= 8
        fractions.append(zero.double().mean().item())
    assert abs(fractions[0] - expected) < 0.01 and abs(fractions[1] - expected) < 0.01
    assert abs(fractions[0] - fractions[1]) < 0.01


def test_augmented_channel_stats_agree() -> None:
    images, labels = D.load_arrays("synthetic", "unused")
    mean, std = D.MEAN["synthetic"], D.STD["synthetic"]
    stats = []
    for cls in LOADERS:
        loader = cls(images, labels, 128, "cpu", mean, std, cutout=16, seed=3)
        x = torch.cat([_collect(loader)[0] for _ in range(3)]).double()
        stats.append(torch.stack([x.mean((0, 2, 3)), x.std((0, 2, 3))]))
    plain = torch.as_tensor(_normalised(images, mean, std))
    plain_stats = torch.stack([plain.mean((0, 2, 3)), plain.std((0, 2, 3))])
    torch.testing.assert_close(stats[0], stats[1], rtol=0, atol=0.02)
    assert (stats[0] - plain_stats).abs().max() > 0.1  # padding + cutout do move the statistics


# ---------------------------------------------------------------------------------------------
# loaders: determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LOADERS)
def test_determinism(cls) -> None:
    images = np.random.default_rng(2).integers(0, 256, (80, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(80)

    def make(seed: int = 7):
        return cls(images, labels, 32, "cpu", C10_MEAN, C10_STD, cutout=16, seed=seed)

    a, b = make(), make()
    a.set_epoch(3)
    b.set_epoch(3)
    xa, ya = _collect(a)
    xb, yb = _collect(b)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x4, y4 = _collect(a)  # the next pass is epoch 4
    assert not torch.equal(y4, ya)
    c = make()
    c.set_epoch(4)
    assert torch.equal(_collect(c)[0], x4)
    fresh, reset = make(), make()
    x0 = _collect(fresh)[0]  # a fresh loader starts at epoch 0
    _collect(reset)
    reset.set_epoch(0)
    assert torch.equal(_collect(reset)[0], x0)
    assert not torch.equal(_collect(make(seed=8))[0], x0)


def test_torch_loader_workers_and_global_rng() -> None:
    images = np.random.default_rng(4).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(40)
    state = torch.get_rng_state()
    x0 = _collect(D.TorchLoader(images, labels, 16, "cpu", C10_MEAN, C10_STD, cutout=16, seed=1))[0]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    loader = D.TorchLoader(images, labels, 16, "cpu", C10_MEAN, C10_STD, cutout=16, seed=1, num_workers=2)
    assert torch.equal(_collect(loader)[0], x0)


def test_make_loader() -> None:
    images, labels = np.zeros((10, 8, 8, 3), np.uint8), np.zeros(10, np.int64)
    args = (images, labels, 4, "cpu", C10_MEAN, C10_STD)
    assert isinstance(D.make_loader("auto", *args), D.TorchLoader)
    assert isinstance(D.make_loader("device", *args, num_workers=2), D.DeviceLoader)
    assert D.make_loader("torch", *args, num_workers=2).num_workers == 2
    with pytest.raises(ValueError, match="kind"):
        D.make_loader("gpu", *args)


@pytest.mark.gpu
def test_device_loader_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    images = np.random.default_rng(5).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(300)
    assert isinstance(D.make_loader("auto", images, labels, 64, "cuda", C10_MEAN, C10_STD), D.DeviceLoader)
    out = {}
    for device in ("cpu", "cuda"):
        loader = D.DeviceLoader(images, labels, 64, device, C10_MEAN, C10_STD, cutout=16, seed=9)
        loader.set_epoch(2)
        x, y = _collect(loader)
        assert x.device.type == device and y.device.type == device
        out[device] = (x.cpu(), y.cpu())
    assert torch.equal(out["cpu"][1], out["cuda"][1])
    torch.testing.assert_close(out["cpu"][0], out["cuda"][0], rtol=0, atol=1e-6)
