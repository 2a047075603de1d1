"""A replica of a --seeds run says so in args.json and result.json: the seeds of the batched run and its
index, which is how to rerun it exactly (in float32 a single --seed run rounds differently)."""
from __future__ import annotations

import json

from common.baseline import DartsConfig, search

TINY = dict(space="nb201", limit_train=32, C=4, N=1, batch_size=16, eval_images=32, device="cpu", progress=False,
            epochs=1)


def test_replicas_record_their_batched_run_and_single_runs_do_not(shared_data, tmp_path) -> None:
    cfg = DartsConfig(data_dir=str(shared_data), out=str(tmp_path / "b" / "seed{seed}"), seeds=[3, 1], **TINY)
    cfg.resolve()
    search(cfg)
    for k, seed in enumerate((3, 1)):
        for name in ("args.json", "result.json"):
            record = json.loads((tmp_path / "b" / f"seed{seed}" / name).read_text())
            assert record["batched"] == {"seeds": [3, 1], "replica": k}, (seed, name)
    assert json.loads((tmp_path / "b" / "seed1" / "args.json").read_text())["seed"] == 1
    cfg = DartsConfig(data_dir=str(shared_data), out=str(tmp_path / "single"), seed=1, **TINY)
    cfg.resolve()
    search(cfg)
    for name in ("args.json", "result.json"):
        assert "batched" not in json.loads((tmp_path / "single" / name).read_text())
