"""`--step-order alpha-first` and `--valid-batch random`: the DARTS-fork loop of the EDD/PCD and SP authors'
DARTS-skeleton scripts, against a literal transcription of that loop, in float64.

The loop transcribed (chaoji90/PCDEDD PCDEDD-DARTS/train_search_pl.py:165-184, the same in train_search_cyc.py,
SmoothDARTS/sota/pcdedd/train_search_{pl,cyc}.py and chaoji90/SP-DARTS SP-DARTS/train_search_mf.py:150-171,
SmoothDARTS/sota/cnnmul/train_search.py:221-254): per train batch, `next(iter(valid_queue))` (a
SubsetRandomSampler over the valid half: a fresh torch.randperm, its first batch-size indices), then
`architect.step(...)` (α: zero_grad, backward of the valid loss, Adam step), then `optimizer.zero_grad()`,
the train loss's backward, `clip_grad_norm_(model.parameters(), 5)` (no α there) and the SGD step.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_replicas import float64
from torch import nn
from torch.nn import functional as F

import common.run
from aer_darts import AERConfig
from common.baseline import DartsConfig, search
from common.config import parse_config
from common.data import MEAN, NUM_CLASSES, STD, make_loader, search_split
from common.fast import build_supernet
from common.run import SearchRun, seed_everything
from common.search import ordered_step
from edd_darts import EDDConfig
from sp_darts import SPConfig

VALID_OFFSET = 104729  # the valid-batch generator's seed is --seed + this (common/run.py VALID_SEED_OFFSET)
# 48 images / batch 16 = 3 bilevel steps per epoch; NB201 C=4 N=1, the reference supernet
TINY = dict(space="nb201", limit_train=48, C=4, N=1, batch_size=16, eval_images=16, device="cpu",
            progress=False, fast=False, loader="torch", step_order="alpha-first", valid_batch="random")


def _cfg(data: Path, out: Path, **kw) -> DartsConfig:
    cfg = DartsConfig(data_dir=str(data), out=str(out), **{**TINY, **kw})
    cfg.resolve()
    return cfg


def _authors_loop(cfg: DartsConfig, data: Path, steps: int) -> tuple[nn.Module, list[torch.Tensor]]:
    """The authors' DARTS-fork loop, transcribed (module docstring), on the run's model init and batches;
    returns the model after `steps` steps and each step's valid indices."""
    (x_t, y_t), (x_v, y_v) = search_split(cfg.dataset, data, cfg.limit_train)
    common = dict(device="cpu", mean=MEAN[cfg.dataset], std=STD[cfg.dataset], augment=True, shuffle=True,
                  drop_last=True)
    train = make_loader("torch", x_t, y_t, cfg.batch_size, seed=cfg.seed, **common)
    valid = make_loader("torch", x_v, y_v, cfg.batch_size, seed=cfg.seed + 7919, **common)
    seed_everything(cfg.seed)
    model = build_supernet(cfg.space, cfg.C, cfg.N, NUM_CLASSES[cfg.dataset], 1, fast=False, alpha_init_std=1e-3)
    w, a = model.weight_parameters(), model.arch_parameters()
    optimizer = torch.optim.SGD(w, cfg.w_lr, momentum=0.9, weight_decay=cfg.w_wd, nesterov=True)
    arch_optimizer = torch.optim.Adam(a, cfg.a_lr, betas=(0.5, 0.999), weight_decay=cfg.a_wd)
    sampler = torch.Generator().manual_seed(cfg.seed + VALID_OFFSET)  # SubsetRandomSampler's generator
    weights = lambda: {k: F.softmax(v, dim=-1) for k, v in model.alphas.items()}
    drawn, train.epoch = [], 0
    for step, (inputd, target) in enumerate(train):
        if step == steps:
            break
        index = torch.randperm(len(x_v), generator=sampler)[:cfg.batch_size]  # next(iter(valid_queue))
        drawn.append(index)
        input_search, target_search = valid.pick(index, step)
        assert torch.equal(target_search, torch.as_tensor(y_v)[index])
        arch_optimizer.zero_grad()  # architect.step: first order
        F.cross_entropy(model(input_search.double(), weights()), target_search).backward()
        arch_optimizer.step()
        optimizer.zero_grad()  # then the w step
        loss = F.cross_entropy(model(inputd.double(), weights()), target)
        loss.backward()
        nn.utils.clip_grad_norm_(w, cfg.grad_clip)  # model.parameters(): no α in their forks
        optimizer.step()
    return model, drawn


def _checkpoint_model(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


def _assert_close(model: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> None:
    assert set(model) == set(ours)
    for k in model:
        assert torch.allclose(model[k], ours[k], rtol=1e-10, atol=1e-13), f"{k}: {(model[k] - ours[k]).abs().max()}"


def test_alpha_first_random_valid_equals_the_transcribed_authors_loop(shared_data, tmp_path, monkeypatch):
    """Three steps of our run (α first, random valid batches) against the transcription: α and w equal
    in float64; the valid indices of each step are the generator's, computed independently."""
    cfg = _cfg(shared_data, tmp_path / "run", epochs=1)
    picked = []
    real_pick = common.run.SearchRun.random_valid_batch

    def spy(self, step):
        state = self.valid_generator.get_state()
        x, y = real_pick(self, step)
        after = self.valid_generator.get_state()
        self.valid_generator.set_state(state)
        picked.append(torch.randperm(self.valid_loader.n, generator=self.valid_generator)[:self.cfg.batch_size])
        assert torch.equal(self.valid_generator.get_state(), after)
        return x, y
    monkeypatch.setattr(common.run.SearchRun, "random_valid_batch", spy)
    with float64():
        search(cfg)
        model, drawn = _authors_loop(cfg, shared_data, 3)
    assert len(picked) == len(drawn) == 3
    for ours, theirs in zip(picked, drawn):
        assert torch.equal(ours, theirs)
    assert len({tuple(i.tolist()) for i in drawn}) == 3  # fresh draws, not one batch again
    _assert_close({k: v for k, v in model.state_dict().items()}, _checkpoint_model(tmp_path / "run"))


def test_the_default_loop_differs_from_the_authors(shared_data, tmp_path):
    """The comparison above can fail: our default (w first, paired batches) does not match it, nor does
    alpha-first on paired batches."""
    with float64():
        model, _ = _authors_loop(_cfg(shared_data, tmp_path / "x", epochs=1), shared_data, 3)
        for name, kw in (("w-first", dict(step_order="w-first")), ("paired", dict(valid_batch="paired"))):
            search(_cfg(shared_data, tmp_path / name, epochs=1, **kw))
            ours = _checkpoint_model(tmp_path / name)
            assert max((model.state_dict()[k] - ours[k]).abs().max().item() for k in ours) > 1e-6, name


def test_random_valid_batches_resume_bit_identically(shared_data, tmp_path, monkeypatch):
    """A run stopped after epoch 1's checkpoint and resumed ends where the uninterrupted one does: the
    valid-batch generator is checkpointed (a resumed run that reseeded it would draw epoch 1's batches)."""
    with float64():
        search(_cfg(shared_data, tmp_path / "whole", epochs=2))

        class Stop(Exception):
            pass
        real_end = SearchRun.end_epoch

        def end_then_stop(self, *a, **k):
            record = real_end(self, *a, **k)
            if self.epoch == 0:
                raise Stop
            return record
        monkeypatch.setattr(SearchRun, "end_epoch", end_then_stop)
        with pytest.raises(Stop):
            search(_cfg(shared_data, tmp_path / "cut", epochs=2))
        common.run.RunDir.current.release()
        monkeypatch.setattr(SearchRun, "end_epoch", real_end)
        search(_cfg(shared_data, tmp_path / "cut", epochs=2, resume=True))
    whole, cut = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("whole", "cut"))
    assert torch.equal(whole["valid_generator"], cut["valid_generator"])
    for k in whole["model"]:
        assert torch.equal(whole["model"][k], cut["model"][k]), k
    alphas = [[json.loads(line)["alphas"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("whole", "cut")]
    assert alphas[0] == alphas[1]


def test_resume_without_the_generator_entry_is_refused(shared_data, tmp_path, capsys):
    """A --valid-batch random checkpoint lacking its generator cannot resume: one line, exit 2."""
    out = tmp_path / "run"
    search(_cfg(shared_data, out, epochs=2, limit_train=16))
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    del ck["valid_generator"]
    ck["epoch"] = 1
    common.run.RunDir(out).save_checkpoint(ck)
    common.run.RunDir.current.release()
    (out / "result.json").unlink()
    with pytest.raises(common.run.RunError, match="no valid_generator entry"):
        search(_cfg(shared_data, out, epochs=2, limit_train=16, resume=True))


def test_ordered_step_runs_the_halves_in_order():
    calls = []
    w = lambda: calls.append("w") or (torch.tensor(1.0), torch.tensor([1.0]))
    a = lambda: calls.append("a") or (torch.tensor(2.0), torch.tensor([2.0]))
    for order, seen in (("w-first", ["w", "a"]), ("alpha-first", ["a", "w"])):
        calls.clear()
        out = ordered_step(order, w, a)
        assert calls == seen and [float(t.sum()) for t in out] == [1.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="step order"):
        ordered_step("both", w, a)


LOOP = ("step_order", "valid_batch")


@pytest.mark.parametrize("argv", [
    ["--space", "darts"], ["--space", "darts-nonone"], ["--space", "darts-nonone", "--schedule", "pcd"],
    ["--space", "s2", "--lam", "0.24"], ["--space", "s3", "--schedule", "pcd", "--pcd-d", "0.11"]])
def test_edd_authors_darts_skeleton_recipes_run_their_loop(argv):
    cfg = parse_config(EDDConfig, ["--recipe", "authors", *argv])
    assert tuple(getattr(cfg, k) for k in LOOP) == ("alpha-first", "random")


@pytest.mark.parametrize("argv", [["--space", "darts-nonone"], ["--space", "s1", "--t-sp", "5e-4"]])
def test_sp_authors_darts_skeleton_recipes_run_their_loop(argv):
    cfg = parse_config(SPConfig, ["--recipe", "authors", *argv])
    assert tuple(getattr(cfg, k) for k in LOOP) == ("alpha-first", "random")


@pytest.mark.parametrize("cls, argv", [(EDDConfig, ["--recipe", "authors"]), (EDDConfig, ["--recipe", "authors",
                                        "--schedule", "pcd"]), (SPConfig, ["--recipe", "authors"]),
                                       (EDDConfig, ["--space", "darts"]), (SPConfig, ["--space", "darts"]),
                                       (AERConfig, ["--recipe", "authors"])])
def test_nb201_recipes_and_the_paper_keep_the_nb201_loop(cls, argv):
    """The official NB201 scripts (and the authors' NB201 forks) run w first on paired batches; so does
    every paper recipe."""
    cfg = parse_config(cls, argv)
    assert tuple(getattr(cfg, k) for k in LOOP) == ("w-first", "paired")


def test_explicit_flags_override_the_loop_and_darts_v2_refuses(capsys):
    cfg = parse_config(EDDConfig, ["--recipe", "authors", "--space", "darts", "--step-order", "w-first",
                                   "--valid-batch", "paired"])
    assert tuple(getattr(cfg, k) for k in LOOP) == ("w-first", "paired")
    with pytest.raises(SystemExit) as exit_:
        parse_config(AERConfig, ["--backbone", "darts-v2", "--step-order", "alpha-first"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "darts-v2" in err


@pytest.mark.parametrize("method", ["edd", "pcd", "sp"])
def test_authors_darts_space_runs_call_the_alpha_half_first(method, shared_data, tmp_path, monkeypatch):
    """The EDD, PCD and SP loops compose their step through run.ordered: with the authors' darts-nonone
    recipe every step runs its α half before its w half, on a random valid batch."""
    import edd_darts
    import sp_darts
    seen, halves = [], []
    real = common.run.ordered_step

    def spy(order, w, alpha):
        seen.append(order)
        return real(order, lambda: halves.append("w") or w(), lambda: halves.append("a") or alpha())
    monkeypatch.setattr(common.run, "ordered_step", spy)
    tiny = ["--recipe", "authors", "--space", "darts-nonone", "--data-dir", str(shared_data), "--limit-train", "32",
            "--C", "4", "--N", "3", "--epochs", "1", "--batch-size", "16", "--eval-images", "16", "--out",
            str(tmp_path / method), "--no-progress", "--device", "cpu"]
    if method == "sp":
        sp_darts.search(parse_config(SPConfig, tiny))
    else:
        edd_darts.search(parse_config(EDDConfig, [*tiny, "--schedule", method]))
    assert seen == ["alpha-first"] * 2 and halves == ["a", "w"] * 2
    args = json.loads((tmp_path / method / "args.json").read_text())
    assert (args["step_order"], args["valid_batch"]) == ("alpha-first", "random")
    assert "valid_generator" in torch.load(tmp_path / method / "checkpoint.pt", weights_only=False)


def test_replicas_draw_their_single_runs_valid_batches(shared_data, tmp_path):
    """--seeds 0 1 with random valid batches, α first: each replica ends as its single --seed run (its own
    generator, checkpointed in its run directory)."""
    with float64():
        search(_cfg(shared_data, tmp_path / "single", epochs=1, seed=1))
        search(_cfg(shared_data, tmp_path / "seed{seed}", epochs=1, seeds=[0, 1]))
    single, replica = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("single", "seed1"))
    assert torch.equal(single["valid_generator"], replica["valid_generator"])
    for k in single["model"]:
        assert torch.allclose(single["model"][k], replica["model"][k], rtol=1e-9, atol=1e-12), k
    other = torch.load(tmp_path / "seed0" / "checkpoint.pt", weights_only=False)["valid_generator"]
    assert not torch.equal(other, replica["valid_generator"])


@pytest.mark.parametrize("kind", ["torch", "device"])
def test_pick_is_the_indexed_images(kind):
    """`pick(indices, step)`: unaugmented, exactly ToTensor + Normalize of images[indices] with their labels;
    augmented, a function of (seed, step) only (a resumed run redraws it), another step another draw."""
    rng = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (20, 8, 8, 3), generator=rng, dtype=torch.uint8).numpy()
    labels = torch.randint(0, 10, (20,), generator=rng).numpy()
    idx = torch.tensor([7, 0, 19, 7, 3])
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain = make_loader(kind, images, labels, 5, "cpu", mean, std, augment=False, seed=1)
    x, y = plain.pick(idx, 4)
    expected = (torch.as_tensor(images)[idx].permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6) and torch.equal(y, torch.as_tensor(labels)[idx])
    aug = make_loader(kind, images, labels, 5, "cpu", mean, std, augment=True, cutout=3, seed=1)
    a, b, c = aug.pick(idx, 4), aug.pick(idx, 4), aug.pick(idx, 5)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
