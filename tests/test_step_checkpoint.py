"""--checkpoint-every: a run killed inside an epoch resumes from its last step, bit for bit the uninterrupted run.

Each run is cut by a KeyboardInterrupt (what Ctrl-C and SIGTERM raise) just before global step K, with a
checkpoint after every step (--checkpoint-every 0), then resumed with --resume; its run directory must then
hold what the uninterrupted run's holds: every metric (but times), result, model and optimiser states,
checkpoint. Covered: a generator drawn every step (SNAS's Gumbel noise), one drawn at the start of an
epoch (SP's Φ), --valid-batch random, the epoch's metric sums, and a --seeds run. An old checkpoint
(written only at epoch ends) still resumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_replicas import TINY, _same_finished_run, _search

from common.loop import RunLoop

pytestmark = pytest.mark.usefixtures("lean_search_setup")  # conftest.py: the NB201 table read once

EPOCHS = 2  # 48 images / batch 16: 3 steps per epoch, global steps 0..5
STEPS = 3


def _method(name: str) -> tuple[Any, dict[str, Any]]:
    if name == "snas":
        import sa_darts
        return (sa_darts.SAConfig, sa_darts.search), dict(backbone="snas", valid_batch="random")
    import sp_darts
    return (sp_darts.SPConfig, sp_darts.search), dict(warmup=0, p_low=0.5, p_up=0.5)


def _cut_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The next run stops (KeyboardInterrupt) when it is about to take global step `step`."""
    original = RunLoop.step

    def stepping(self, *args, **kwargs):
        if self.global_step == step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    monkeypatch.setattr(RunLoop, "step", stepping)


def _killed_then_resumed(data: Path, out: Path | str, method, monkeypatch, step: int, **kw) -> None:
    """Cut before global step `step`, resume: the resumed run takes only the steps after the cut."""
    with monkeypatch.context() as patch:
        _cut_at(patch, step)
        with pytest.raises(KeyboardInterrupt):
            _search(data, out, method, checkpoint_every=0, **kw)
    taken = []
    with monkeypatch.context() as patch:
        original = RunLoop.step
        patch.setattr(RunLoop, "step", lambda self, *a, **k: (taken.append(self.replaying), original(self, *a, **k))[1])
        _search(data, out, method, checkpoint_every=0, resume=True, **kw)
    assert taken.count(False) == EPOCHS * STEPS - step  # not redone from the epoch's start


@pytest.mark.parametrize("name", ["snas", "sp"])
def test_a_run_killed_at_any_step_resumes_as_the_uninterrupted_run(name, shared_data, tmp_path, monkeypatch) -> None:
    method, kw = _method(name)
    _search(shared_data, tmp_path / "ref", method, epochs=EPOCHS, **kw)
    for step in (1, 2, 4):  # inside epoch 1 (no epoch checkpoint yet), and inside epoch 2
        out = tmp_path / f"cut{step}"
        _killed_then_resumed(shared_data, out, method, monkeypatch, step, epochs=EPOCHS, **kw)
        _same_finished_run(tmp_path / "ref", out, epochs=EPOCHS)
        assert not (out / "checkpoint.step.pt").exists()  # removed once the epoch's checkpoint is written


def test_a_seeds_run_killed_inside_an_epoch_resumes_as_the_uninterrupted_one(shared_data, tmp_path,
                                                                            monkeypatch) -> None:
    method, kw = _method("snas")
    ref = _search(shared_data, tmp_path / "ref" / "seed{seed}", method, seeds=[0, 1], epochs=EPOCHS, **kw)
    assert sorted(ref["replicas"]) == [0, 1]
    for step in (2, 4):
        out = tmp_path / f"cut{step}" / "seed{seed}"
        _killed_then_resumed(shared_data, out, method, monkeypatch, step, seeds=[0, 1], epochs=EPOCHS, **kw)
        for seed in (0, 1):
            _same_finished_run(tmp_path / "ref" / f"seed{seed}", tmp_path / f"cut{step}" / f"seed{seed}", EPOCHS)


def test_the_step_checkpoint_is_written_only_when_due(shared_data, tmp_path, monkeypatch) -> None:
    """The default (600 s) writes none in a short epoch; 0 writes one after every step but an epoch's last."""
    method, kw = _method("snas")
    for every, expected in ((600.0, []), (0.0, [(0, 1), (0, 2)])):
        seen = []
        with monkeypatch.context() as patch:
            from common.rundir import RunDir
            save = RunDir.save_step_checkpoint
            patch.setattr(RunDir, "save_step_checkpoint",
                          lambda self, state: (seen.append((state["epoch"], state["step_in_epoch"])), save(self, state)))
            _search(shared_data, tmp_path / f"every{every}", method, epochs=1, checkpoint_every=every, **kw)
        assert seen == expected
    assert TINY["limit_train"] // TINY["batch_size"] == STEPS
