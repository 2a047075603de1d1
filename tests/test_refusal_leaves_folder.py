"""A refused start or resume leaves its folder byte for byte as it was; an ended run removes its `.lock`.

Each case copies a run stopped after epoch 1 (or starts in a fresh folder), spoils it one way, runs the
search in-process and expects a one-line refusal (RunError); the folder's names (hidden ones, folders
included) and bytes must be those before. A finished run, a run stopped by Ctrl-C/SIGTERM and a --seeds
run leave no `.lock`; the interrupt line goes to log.txt too.
"""
from __future__ import annotations

import errno
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch

import common.rundir
from common.baseline import DartsConfig, main, search
from common.loop import RunLoop
from common.run import RunError, SearchRun
from common.safeio import DigestFile, sha256_of

TINY = dict(space="nb201", limit_train=32, C=4, N=1, batch_size=16, eval_images=32, device="cpu", progress=False,
            epochs=2)


def _cfg(data: Path, out: Path, **kw) -> DartsConfig:
    cfg = DartsConfig(data_dir=str(data), out=str(out), **{**TINY, **kw})
    cfg.resolve()
    return cfg


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every name under `folder` (hidden ones too) → its bytes (None: a folder); {} when it does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A 2-epoch run stopped after epoch 1 (its checkpoint.pt, metrics.jsonl, args.json, log.txt)."""
    from conftest import CIFAR10_DIR, SHARED_DATA
    if not CIFAR10_DIR.is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR10_DIR}")
    shared_data = SHARED_DATA
    out = tmp_path_factory.mktemp("stopped") / "run"
    end_epoch = SearchRun.end_epoch

    def end_epoch_then_stop(self, *args, **kwargs):
        end_epoch(self, *args, **kwargs)
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SearchRun, "end_epoch", end_epoch_then_stop)
        with pytest.raises(KeyboardInterrupt):
            search(_cfg(shared_data, out))
    common.rundir.end_runs()  # what main_guard does on the interrupt
    assert not (out / ".lock").exists()
    return out


def _rewrite_checkpoint(run: Path, change) -> None:
    ckpt = run / "checkpoint.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    change(state)
    torch.save(state, ckpt)
    DigestFile(ckpt).write([sha256_of(ckpt)])  # only the change is wrong, not the sha256


def _nan_alpha(state: dict) -> None:
    key = next(k for k in state["model"] if k.startswith("alphas."))
    state["model"][key][0, 0] = float("nan")


def _checkpoint_is_a_folder(run: Path) -> None:
    (run / "checkpoint.pt").unlink()
    (run / "checkpoint.pt").mkdir()


def _records_only(run: Path) -> None:
    (run / "checkpoint.pt").unlink()
    (run / "checkpoint.pt.sha256").unlink()


CASES = {  # id → (spoil the copied run, the search's changed flags, words of the refusal)
    "other-seed": (None, dict(seed=1), "--seed"),
    "other-lr": (None, dict(w_lr=0.05), "--w-lr"),
    "nan-checkpoint": (lambda run: _rewrite_checkpoint(run, _nan_alpha), {}, "non-finite"),
    "rng-less-checkpoint": (lambda run: _rewrite_checkpoint(run, lambda s: s.pop("rng")), {}, "rng"),
    "checkpoint-is-a-folder": (_checkpoint_is_a_folder, {}, "checkpoint.pt"),
    "records-without-checkpoint": (_records_only, {}, "no checkpoint.pt"),
    "records-without-checkpoint-fresh": (_records_only, dict(resume=False), "no checkpoint.pt"),
    "fresh-start-on-a-run": (None, dict(resume=False), "--resume"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_resume_leaves_the_folder_byte_for_byte(case, stopped_run, shared_data, tmp_path) -> None:
    spoil, flags, words = CASES[case]
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    if spoil is not None:
        spoil(run)
    before = snapshot(run)
    with pytest.raises(RunError, match=words):
        search(_cfg(shared_data, run, **{"resume": True, **flags}))
    assert snapshot(run) == before


def test_another_scripts_checkpoint_is_refused_leaving_the_folder(stopped_run, shared_data, tmp_path) -> None:
    import sa_darts
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    before = snapshot(run)
    cfg = sa_darts.SAConfig(data_dir=str(shared_data), out=str(run), resume=True, **TINY)
    cfg.resolve()
    with pytest.raises(RunError):
        sa_darts.search(cfg)
    assert snapshot(run) == before


def test_a_full_disk_at_the_start_leaves_no_folder(shared_data, tmp_path, monkeypatch) -> None:
    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(common.rundir, "atomic_write", full)
    run = tmp_path / "new" / "run"
    with pytest.raises(RunError, match="No space left"):
        search(_cfg(shared_data, run))
    assert not (tmp_path / "new").exists()


def test_a_refused_seeds_run_leaves_every_replica_folder(stopped_run, shared_data, tmp_path) -> None:
    """Replica 0 resumes, replica 1's checkpoint is spoilt: the refusal leaves both as they were."""
    root = tmp_path / "runs"
    for seed in (0, 1):
        shutil.copytree(stopped_run, root / f"seed{seed}")
    args = json.loads((root / "seed1" / "args.json").read_text())
    args["seed"] = 1
    (root / "seed1" / "args.json").write_text(json.dumps(args))
    _checkpoint_is_a_folder(root / "seed1")
    before = snapshot(root)
    with pytest.raises(RunError):
        search(_cfg(shared_data, root / "seed{seed}", seeds=[0, 1], resume=True))
    assert snapshot(root) == before


def test_a_finished_or_interrupted_run_removes_its_lock_and_logs_the_interrupt(shared_data, tmp_path,
                                                                               monkeypatch) -> None:
    search(_cfg(shared_data, tmp_path / "done", epochs=1))
    common.rundir.end_runs()
    assert (tmp_path / "done" / "result.json").exists() and not (tmp_path / "done" / ".lock").exists()
    original = RunLoop.step

    def cut(self, *args, **kwargs):
        if self.global_step == 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    monkeypatch.setattr(RunLoop, "step", cut)
    handler = signal.getsignal(signal.SIGTERM)  # main_guard installs its own
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items() if k != "progress"]
    for out, extra in ((tmp_path / "cut", []), (tmp_path / "cut-seeds", ["--seeds", "0", "1"])):
        try:
            with pytest.raises(SystemExit) as stop:
                main([*argv, "--no-progress", "--data-dir", str(shared_data), "--out", str(out), *extra])
        finally:
            signal.signal(signal.SIGTERM, handler)
        assert stop.value.code == 130
        for folder in [out] if not extra else [out / "seed0", out / "seed1"]:
            assert not (folder / ".lock").exists(), folder
            last = (folder / "log.txt").read_text().splitlines()[-1]
            assert last.startswith("interrupted; ") and "--resume" in last, last
