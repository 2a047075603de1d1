"""SVHN and ImageNet16-120: no such data here, so the test writes small files in the
official formats (SVHN's MATLAB `.mat`, NB201's ImageNet16 pickles), reads them back independently of the
reader's layout conversions, and runs one tiny search on each."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import common.data as D

scipy_io = pytest.importorskip("scipy.io", reason="SVHN's .mat files need scipy")


def write_svhn(root: Path, n: int, split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`{split}_32x32.mat` as the SVHN site ships it: X uint8 (32, 32, 3, N), y uint8 (N, 1), 10 for digit 0.

    Returns the images as (N, 32, 32, 3) (pixel [n, h, w, c] = X[h, w, c, n]) and the digits 0..9.
    """
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    digits = rng.integers(0, 10, n)
    digits[:2] = (0, 9)
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
    root.mkdir(parents=True, exist_ok=True)
    scipy_io.savemat(str(root / f"{split}_32x32.mat"), {"X": X, "y": y})
    images = np.stack([X[:, :, :, i] for i in range(n)])  # per image, by plain indexing
    return images, digits.astype(np.int64)


def write_imagenet16(root: Path, per_file: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NB201's ImageNet16 pickles: {'data': uint8 (n, 768) rows R|G|B planes, 'labels': 1-based over 1000}.

    Returns the kept (label ≤ 120) train images (N, 16, 16, 3) and 0-based labels.
    """
    rng = np.random.default_rng(seed)
    folder = root / "ImageNet16"
    folder.mkdir(parents=True, exist_ok=True)
    kept_x, kept_y = [], []
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        x = rng.integers(0, 256, (per_file, 16, 16, 3), dtype=np.uint8)
        y = rng.integers(1, 121, per_file)
        y[-1] = 500  # a class outside ImageNet16-120
        rows = np.concatenate([x[..., c].reshape(per_file, 256) for c in range(3)], axis=1)  # planes, row-major
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": y.tolist()}, f)
        if name != "val_data":
            kept_x.append(x[y <= 120])
            kept_y.append(y[y <= 120] - 1)
    return np.concatenate(kept_x), np.concatenate(kept_y)


def test_svhn_reader_official_mat(tmp_path):
    x, y = write_svhn(tmp_path, 7)
    xt, yt = write_svhn(tmp_path, 3, "test", seed=1)
    rx, ry = D.load_arrays("svhn", tmp_path, download=False)
    np.testing.assert_array_equal(rx, x)
    np.testing.assert_array_equal(ry, y)
    assert rx.dtype == np.uint8 and ry.dtype == np.int64 and ry[0] == 0 and ry[1] == 9  # 10 → digit 0
    np.testing.assert_array_equal(D.load_arrays("svhn", tmp_path, train=False, download=False)[0], xt)
    (w, wy), (a, ay) = D.search_split("svhn", tmp_path, download=False)
    np.testing.assert_array_equal(np.concatenate([w, a]), x)  # first half w, second half α
    assert len(w) == 3 and len(a) == 4


def test_svhn_bad_files_one_line(tmp_path):
    with pytest.raises(D.DataError, match="train_32x32.mat not found.*housenumbers"):
        D.load_arrays("svhn", tmp_path, download=False)
    (tmp_path / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(D.DataError, match="not a readable SVHN .mat") as info:
        D.load_arrays("svhn", tmp_path, download=False)
    assert "\n" not in str(info.value)
    scipy_io.savemat(str(tmp_path / "train_32x32.mat"), {"X": np.zeros((16, 16, 3, 2), np.uint8),
                                                         "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(D.DataError, match=r"expected X \(32, 32, 3, N\)"):
        D.load_arrays("svhn", tmp_path, download=False)


def test_imagenet16_reader_official_pickles(tmp_path):
    x, y = write_imagenet16(tmp_path, 5)
    rx, ry = D.load_arrays("imagenet16-120", tmp_path)
    np.testing.assert_array_equal(rx, x)
    np.testing.assert_array_equal(ry, y)
    assert rx.shape[1:] == (16, 16, 3) and ry.max() <= 119 and len(ry) == 10 * 4


def _tiny(data_dir: Path, out: Path, **kw) -> dict:
    return dict(data_dir=str(data_dir), limit_train=16, C=4, epochs=1, batch_size=8, eval_images=16,
                out=str(out), progress=False, device="cpu", **kw)


@pytest.mark.slow
def test_tiny_searches_on_svhn_and_imagenet16(tmp_path):
    from edd_darts import EDDConfig
    from edd_darts import search as edd_search
    from sp_darts import SPConfig
    from sp_darts import search as sp_search
    write_svhn(tmp_path / "data", 32)
    write_imagenet16(tmp_path / "data", 4)
    # SP-DARTS on S2 / SVHN, one of Table V's t_sp (DARTS skeleton: 10 classes)
    cfg = SPConfig(**_tiny(tmp_path / "data", tmp_path / "svhn", space="s2", dataset="svhn", N=3, t_sp=5e-4))
    cfg.resolve()
    result = sp_search(cfg)
    assert cfg.t_sp == 5e-4 and len(result["genotype"]["normal"]) == 8 and result["param_count"] > 0
    state = torch.load(tmp_path / "svhn" / "checkpoint.pt", weights_only=False)["model"]
    assert state["classifier.weight"].shape[0] == 10
    # EDD-DARTS on NB201 / ImageNet16-120 (16×16 images, 120 classes)
    cfg = EDDConfig(**_tiny(tmp_path / "data", tmp_path / "in16", space="nb201", dataset="imagenet16-120", N=1))
    cfg.resolve()
    result = edd_search(cfg)
    state = torch.load(tmp_path / "in16" / "checkpoint.pt", weights_only=False)["model"]
    assert state["classifier.weight"].shape[0] == 120
    assert json.loads((tmp_path / "in16" / "args.json").read_text())["dataset"] == "imagenet16-120"
    assert np.isfinite(result["final"]["train_loss"]) and result["final"]["train_loss"] > 0
