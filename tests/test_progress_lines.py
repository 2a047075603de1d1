"""Off a terminal a search prints a plain progress line inside an epoch (step i/N, s/step, the epoch's ETA)
on stdout and in log.txt, at most every `common.loop.PROGRESS_EVERY_S` seconds (here 0, on a fake clock
that advances 2 s per reading), never after an epoch's last step; --no-progress prints none."""
from __future__ import annotations

import itertools
import re

import pytest

import common.loop
from common.baseline import DartsConfig, search

TINY = dict(space="nb201", limit_train=48, C=4, N=1, batch_size=16, eval_images=32, device="cpu", epochs=1)


@pytest.mark.parametrize("seeds", [None, [0, 1]])
def test_plain_progress_lines_off_a_terminal(seeds, shared_data, tmp_path, monkeypatch, capsys) -> None:
    ticks = itertools.count()
    monkeypatch.setattr(common.loop, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(common.loop, "_now", lambda: 2.0 * next(ticks))
    out = tmp_path / ("seed{seed}" if seeds else "run")
    cfg = DartsConfig(data_dir=str(shared_data), out=str(out), progress=True, seeds=seeds, **TINY)
    cfg.resolve()
    search(cfg)
    stdout = capsys.readouterr().out
    want = [rf"epoch 1/1  step {i}/3  2 s/step  epoch ETA {2 * (3 - i)} s" for i in (1, 2)]
    for log in [out / "log.txt"] if not seeds else [tmp_path / "seed0" / "log.txt", tmp_path / "seed1" / "log.txt"]:
        lines = [line for line in log.read_text().splitlines() if " step " in line]
        assert lines == want, lines
    assert [line for line in stdout.splitlines() if re.search(r" step \d", line)] == want


def test_no_progress_prints_no_progress_line(shared_data, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(common.loop, "PROGRESS_EVERY_S", 0.0)
    cfg = DartsConfig(data_dir=str(shared_data), out=str(tmp_path / "run"), progress=False, **TINY)
    cfg.resolve()
    search(cfg)
    assert " step " not in (tmp_path / "run" / "log.txt").read_text()
