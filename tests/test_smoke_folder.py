"""`--preset smoke` writes to its own default folder (runs/<script>/smoke/…), so it never blocks the real
search's; a fresh start on a folder holding a run of another config suggests another --out, not --resume."""
from __future__ import annotations

import pytest

from common.baseline import DartsConfig, search
from common.config import parse_config
from common.run import RunError, default_out

TINY = ["--epochs", "1", "--limit-train", "32", "--batch-size", "16", "--eval-images", "32", "--device", "cpu",
        "--no-progress"]


def test_the_smoke_preset_has_its_own_default_folder(shared_data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_out("darts", parse_config(DartsConfig, [])) == "runs/darts/nb201-cifar10-seed0"
    cfg = parse_config(DartsConfig, ["--preset", "smoke", "--data-dir", str(shared_data), *TINY])
    assert default_out("darts", cfg) == "runs/darts/smoke/nb201-cifar10-seed0"
    search(cfg)
    assert (tmp_path / "runs/darts/smoke/nb201-cifar10-seed0/result.json").exists()
    assert not (tmp_path / "runs/darts/nb201-cifar10-seed0").exists()  # the real search's folder is free


def test_a_fresh_start_on_another_configs_run_suggests_out(shared_data, tmp_path) -> None:
    out = str(tmp_path / "run")
    search(parse_config(DartsConfig, ["--data-dir", str(shared_data), "--out", out, *TINY]))
    longer = parse_config(DartsConfig, ["--data-dir", str(shared_data), "--out", out, *TINY, "--epochs", "2"])
    with pytest.raises(RunError, match="another config") as refused:
        search(longer)
    assert "--epochs 1, not 2" in str(refused.value) and "--out" in str(refused.value)
    assert "--resume" not in str(refused.value)  # which would be refused in turn
    same = parse_config(DartsConfig, ["--data-dir", str(shared_data), "--out", out, *TINY])
    with pytest.raises(RunError, match="pass --resume"):  # the same config: resuming is the way
        search(same)
