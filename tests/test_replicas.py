"""--seeds (common/replicas.py): S seeds as one batched search equal S single runs.

In float64 (the loaders' images cast to float64, every model built in float64) each replica of a 3-seed
batched run is compared with its seed's single run after several bilevel steps: parameters (w, α),
optimiser states, RNG state, every metric, genotype, result. A batched run resumes from its replicas'
checkpoints, and one replica's checkpoint resumes alone as a single run. A replica fed NaN stops alone.
A kill -9 during a batched run plus --resume equals the uninterrupted batched run bit for bit (CPU).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import common.run
from common.baseline import DartsConfig, search
from common.replica_run import replica_config
from common.replicas import FlatGroup, FreezeNonFinite, clip_grad_norm_per_replica
from common.run import NonFiniteLoss
from common.sampling import gdas_weights

pytestmark = pytest.mark.usefixtures("lean_search_setup")  # conftest.py: the NB201 table read once

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DARTS_SHARED_DATA", ROOT.parent / "shared" / "data"))  # as conftest.py
SEEDS = [0, 1, 2]
# 24 images / batch 8 = 3 bilevel steps per epoch; a small clip so per-replica clipping is active. Batches of 8
# (not 16) and a 16-image evaluation: each step costs about half, the batched GDAS run on the DARTS space a third
TINY = dict(space="nb201", limit_train=24, C=4, N=1, batch_size=8, eval_images=16, device="cpu",
            progress=False, grad_clip=0.5)


class _Float64:
    """A loader whose images come out as float64 (its passes and its `pick`)."""

    def __init__(self, loader) -> None:
        self.loader, self.n = loader, loader.n

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        return ((x.double(), y) for x, y in self.loader)

    def pick(self, indices, step):
        x, y = self.loader.pick(indices, step)
        return x.double(), y


@contextlib.contextmanager
def float64() -> Iterator[None]:
    make_loader, dtype = common.run.make_loader, torch.get_default_dtype()
    common.run.make_loader = lambda *a, **k: _Float64(make_loader(*a, **k))
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        common.run.make_loader = make_loader
        torch.set_default_dtype(dtype)


def _search(data: Path, out: Path | str, method: tuple = (DartsConfig, search), **kw) -> dict:
    config, run = method
    cfg = config(data_dir=str(data), out=str(out), **{**TINY, **kw})
    cfg.resolve()
    with float64():
        return run(cfg)


def _close(a, b, path: str = "") -> None:
    """Equal structure; tensors and floats equal to float64 rounding (the batched convs sum in another order)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif torch.is_tensor(a):
        assert a.shape == b.shape and a.dtype == b.dtype, path
        if a.dtype.is_floating_point:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), f"{path}: max diff {(a - b).abs().max()}"
        else:
            assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def _same_run(single: Path, replica: Path, epochs: int) -> None:
    ck_s = torch.load(single / "checkpoint.pt", weights_only=False)
    ck_r = torch.load(replica / "checkpoint.pt", weights_only=False)
    assert ck_s["epoch"] == ck_r["epoch"] == epochs
    for key in ("model", "w_optimizer", "a_optimizer", "rng", "global_step", "method_state"):
        _close(ck_s[key], ck_r[key], key)
    other = ("out", "resume")  # where it was written, and whether it was resumed
    _close({k: v for k, v in ck_s["config"].items() if k not in other},
           {k: v for k, v in ck_r["config"].items() if k not in other}, "config")
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "time"}
                       for line in (p / "metrics.jsonl").read_text().splitlines()]
    _close(strip(single), strip(replica), "metrics")
    args_s, args_r = (json.loads((p / "args.json").read_text()) for p in (single, replica))
    other = ("argv", "out", "debug_nan_step", "batched")  # args.json is written at the start (of a run stopped by NaN)
    assert {k: v for k, v in args_s.items() if k not in other} == {k: v for k, v in args_r.items() if k not in other}
    res_s, res_r = (json.loads((p / "result.json").read_text()) for p in (single, replica))
    for k in ("genotype", "nb201", "param_count", "epochs", "steps", "alphas"):
        _close(res_s[k], res_r[k], k)


@pytest.fixture(scope="module")
def singles(tmp_path_factory) -> Path:
    if not (SHARED_DATA / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 subset not found in {SHARED_DATA} (place ../shared/data beside the repo)")
    root = tmp_path_factory.mktemp("singles")
    torch.set_num_threads(1)
    for seed in SEEDS:
        _search(SHARED_DATA, root / f"seed{seed}", seed=seed, epochs=2)
    return root


def test_replica_config_is_the_single_runs_config() -> None:
    cfg = DartsConfig(seeds=[3, 5], out="runs/x/seed{seed}", debug_nan_step=4, debug_nan_seed=5)
    cfg.resolve()
    three, five = replica_config(cfg, 3), replica_config(cfg, 5)
    assert (three.seed, three.seeds, three.out, three.debug_nan_step) == (3, None, "runs/x/seed3", None)
    assert (five.seed, five.out, five.debug_nan_step, five.debug_nan_seed) == (5, "runs/x/seed5", 4, None)
    assert replica_config(DartsConfig(seeds=[1, 2], out="o"), 2).out == "o/seed2"
    one = DartsConfig(seeds=[7])
    one.resolve()  # one seed is the plain single run
    assert (one.seed, one.seeds) == (7, None)


def test_per_replica_clip_equals_torch_clip_of_each_replica() -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (10, 4), (10,)]
    grads = [[torch.randn(*s, generator=gen, dtype=torch.float64) * scale for s in shapes] for scale in (0.1, 3, 50)]
    stacked = [nn.Parameter(torch.zeros(3, *s, dtype=torch.float64)) for s in shapes]
    for i, p in enumerate(stacked):
        p.grad = torch.stack([g[i] for g in grads])
    group = FlatGroup([p.detach() for p in stacked])  # the same gradients on the flat (S, P) path
    for leaf, p in zip(group.leaves, stacked):
        leaf.grad = p.grad / 3  # the gradient of the mean over the 3 replicas
    norms = clip_grad_norm_per_replica(stacked, 5.0)
    assert torch.allclose(clip_grad_norm_per_replica(group.leaves, 5.0), norms, rtol=1e-12, atol=0)
    assert torch.allclose(group.flat.grad, torch.cat([p.grad.flatten(1) for p in stacked], 1), rtol=1e-12, atol=0)
    for s, gs in enumerate(grads):
        ps = [nn.Parameter(torch.zeros_like(g)) for g in gs]
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        assert norms[s].item() == pytest.approx(nn.utils.clip_grad_norm_(ps, 5.0).item(), rel=1e-12)
        for p, q in zip(ps, stacked):
            assert torch.allclose(p.grad, q.grad[s], rtol=1e-12, atol=0)
    assert norms[0] < 5 < norms[1]  # one replica unclipped, the others clipped


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.SGD(ps, 0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    lambda ps: torch.optim.Adam(ps, 0.01, betas=(0.5, 0.999), weight_decay=1e-3),
])
def test_a_nonfinite_replica_does_not_move_and_the_others_step_as_alone(make) -> None:
    gen = torch.Generator().manual_seed(1)
    w0 = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    grads = [torch.randn(3, 4, 5, generator=gen, dtype=torch.float64) for _ in range(3)]
    grads[1][1, 2, 3] = float("nan")  # replica 1 diverges at the second step
    stacked = nn.Parameter(w0.clone())
    opt, alive = make([stacked]), torch.ones(3, dtype=torch.bool)
    FreezeNonFinite(opt, alive)
    alone = [nn.Parameter(w0[s].clone()) for s in range(3)]
    opts = [make([p]) for p in alone]
    for step, g in enumerate(grads):
        stacked.grad = g.clone()
        opt.step()
        for s in (0, 2):
            alone[s].grad = g[s].clone()
            opts[s].step()
        if step == 0:
            after_first = stacked.detach()[1].clone()
            state_first = {k: v[1].clone() for k, v in opt.state[stacked].items() if v.dim()}
    assert alive.tolist() == [True, False, True]
    assert torch.equal(stacked.detach()[1], after_first)  # frozen at its last finite step
    assert all(torch.equal(v[1], state_first[k]) for k, v in opt.state[stacked].items() if v.dim())
    for s in (0, 2):
        assert torch.equal(stacked.detach()[s], alone[s].detach())  # elementwise: bit for bit


@pytest.mark.slow
def test_three_replicas_equal_their_single_runs_and_resume_batched_or_alone(singles, shared_data, tmp_path) -> None:
    batched = tmp_path / "batched"
    with pytest.raises(NonFiniteLoss, match="every replica"):  # all stop at the first step of epoch 2
        _search(shared_data, batched / "seed{seed}", seeds=SEEDS, epochs=2, debug_nan_step=3)
    alone = tmp_path / "alone"
    shutil.copytree(batched, alone)
    out = _search(shared_data, batched / "seed{seed}", seeds=SEEDS, epochs=2, resume=True)  # resumed batched
    assert sorted(out["replicas"]) == SEEDS
    for seed in SEEDS:
        _same_run(singles / f"seed{seed}", batched / f"seed{seed}", epochs=2)
    _search(shared_data, alone / "seed1", seed=1, epochs=2, resume=True)  # one replica resumed as a single run
    _same_run(singles / "seed1", alone / "seed1", epochs=2)


@pytest.mark.slow
def test_a_replica_fed_nan_stops_alone_and_the_others_match_their_single_runs(singles, shared_data, tmp_path,
                                                                              capfd) -> None:
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match=r"1 of 3 replicas .*seeds \[1\]"):
        _search(shared_data, out / "seed{seed}", seeds=SEEDS, epochs=2, debug_nan_step=4, debug_nan_seed=1)
    assert "seed 1: loss became non-finite at global step 4 (epoch 2)" in capfd.readouterr().err
    for seed in (0, 2):
        _same_run(singles / f"seed{seed}", out / f"seed{seed}", epochs=2)
    ckpt = torch.load(out / "seed1" / "checkpoint.pt", weights_only=False)  # its last good epoch, as alone
    assert ckpt["epoch"] == 1 and not (out / "seed1" / "result.json").exists()
    first = json.loads((singles / "seed1" / "metrics.jsonl").read_text().splitlines()[0])
    kept = [json.loads(line) for line in (out / "seed1" / "metrics.jsonl").read_text().splitlines()]
    assert len(kept) == 1
    _close({k: v for k, v in first.items() if k != "time"}, {k: v for k, v in kept[0].items() if k != "time"})


def _equivalent(data: Path, root: Path, method: tuple, epochs: int = 1, **kw) -> None:
    """Each seed alone and the 3 seeds batched (1 epoch: 3 bilevel steps): the same runs."""
    for seed in SEEDS:
        _search(data, root / "single" / f"seed{seed}", method, seed=seed, epochs=epochs, **kw)
    out = _search(data, root / "batched" / "seed{seed}", method, seeds=SEEDS, epochs=epochs, **kw)
    assert sorted(out["replicas"]) == SEEDS
    for seed in SEEDS:
        _same_run(root / "single" / f"seed{seed}", root / "batched" / f"seed{seed}", epochs=epochs)


@pytest.mark.slow
def test_pc_darts_k4_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """Partial channels (1/4 of the channels, shuffle) and edge normalisation γ per replica under vmap."""
    _equivalent(shared_data, tmp_path, (DartsConfig, search), partial_channels=4)


@pytest.mark.slow
def test_sa_darts_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """SA regulariser (a mean over α entries: over replicas too), Fig. 4's skip bias, per-replica report,
    and --clip-scope official (w's clip norm counts α.grad) per replica."""
    import sa_darts
    _equivalent(shared_data, tmp_path, (sa_darts.SAConfig, sa_darts.search), init_skip_bias=0.1, cutout=8,
                clip_scope="official")  # the w clip's norm also counts α.grad, per replica
    record = json.loads((tmp_path / "batched" / "seed2" / "metrics.jsonl").read_text())
    assert record["lam"] == 0.2 and record["reg_value"] != 0  # λ_1 = 1/5, L_SA of replica 2's own α


@pytest.mark.slow
def test_snas_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """SNAS+SA: each replica's soft Gumbel samples from its own generator, checkpointed per replica."""
    import sa_darts
    _equivalent(shared_data, tmp_path, (sa_darts.SAConfig, sa_darts.search), backbone="snas")


@pytest.mark.slow
def test_aer_darts_v1_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """AER's λ·H̄ (a mean over edges: over replicas too) on DARTS-V1; each replica logs its own H̄."""
    import aer_darts
    _equivalent(shared_data, tmp_path, (aer_darts.AERConfig, aer_darts.search), lam=0.2)


@pytest.mark.slow
def test_aer_darts_v2_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """DARTS-V2's unrolled step: per-replica virtual step (momentum from the flat state) and ε_s (Eq. 8)."""
    import aer_darts
    _equivalent(shared_data, tmp_path, (aer_darts.AERConfig, aer_darts.search), backbone="darts-v2", lam=0.2)


@pytest.mark.slow
def test_edd_darts_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """EDD: each replica's entropy-driven temperature (Eq. 14-15) after epoch 1 drives its epoch 2 as a
    (S, 1, 1) tensor through the sn-softmax; α-gradient clipping per replica. 2 epochs × 2 steps."""
    import edd_darts
    _equivalent(shared_data, tmp_path, (edd_darts.EDDConfig, edd_darts.search), epochs=2, limit_train=16,
                clip_alpha=0.5)
    temps = {json.loads((tmp_path / "batched" / f"seed{s}" / "metrics.jsonl").read_text().splitlines()[1])
             ["temperature"] for s in SEEDS}
    assert len(temps) == 3 and 1.0 not in temps  # epoch 2 ran at three different, decayed temperatures


@pytest.mark.slow
def test_float32_two_epoch_search_gives_each_replica_its_single_runs_genotype(shared_data, tmp_path) -> None:
    kw = dict(TINY, limit_train=16, epochs=2, data_dir=str(shared_data))
    singles = {}
    for seed in SEEDS:
        cfg = DartsConfig(seed=seed, out=str(tmp_path / f"single{seed}"), **kw)
        cfg.resolve()
        singles[seed] = search(cfg)
    cfg = DartsConfig(seeds=SEEDS, out=str(tmp_path / "batched" / "seed{seed}"), **kw)
    cfg.resolve()
    batched = search(cfg)["replicas"]
    for seed in SEEDS:  # only the genotype: in float32 the grouped convs round differently, and Adam turns
        # rounding-level differences of near-zero α gradients into α differences of order lr
        assert batched[seed]["genotype"] == singles[seed]["genotype"]


def _baseline(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "common.baseline", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_during_batched_run_then_resume_equals_uninterrupted(shared_data, tmp_path) -> None:
    common_args = ["--space", "nb201", "--limit-train", "16", "--C", "4", "--N", "1", "--batch-size", "8",
                   "--eval-images", "16", "--device", "cpu", "--no-progress", "--data-dir", str(shared_data),
                   "--epochs", "3", "--seeds", "0", "1"]
    ref = _baseline(*common_args, "--out", str(tmp_path / "ref" / "seed{seed}"))
    cut_dir = tmp_path / "cut"
    cut = _baseline(*common_args, "--out", str(cut_dir / "seed{seed}"))
    deadline = time.time() + 240
    while time.time() < deadline and cut.poll() is None:
        if (cut_dir / "seed1" / "metrics.jsonl").exists():
            cut.send_signal(signal.SIGKILL)  # somewhere after epoch 1 was committed
            break
        time.sleep(0.05)
    cut.wait()
    assert ref.wait() == 0, ref.stderr.read()
    assert not (cut_dir / "seed0" / "result.json").exists(), "the run finished before it could be killed"
    resumed = _baseline(*common_args, "--out", str(cut_dir / "seed{seed}"), "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    for seed in (0, 1):
        _same_finished_run(tmp_path / "ref" / f"seed{seed}", cut_dir / f"seed{seed}", epochs=3)


def _same_finished_run(a: Path, b: Path, epochs: int) -> None:
    """Two finished run directories hold the same run: metrics (but their times), result, checkpoint."""
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "time"}
                       for line in (p / "metrics.jsonl").read_text().splitlines()]
    assert strip(a) == strip(b) and len(strip(a)) == epochs
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (a, b))
    assert ra["alphas"] == rb["alphas"] and ra["genotype"] == rb["genotype"]
    ca, cb = (torch.load(p / "checkpoint.pt", weights_only=False) for p in (a, b))
    for key in ("model", "w_optimizer", "a_optimizer"):
        _close(ca[key], cb[key], key)  # and bit for bit:
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


@pytest.mark.parametrize("script,extra,needle", [
    ("aer_darts.py", ["--backbone", "pdarts", "--space", "darts"], "--backbone pdarts"),
    ("edd_darts.py", ["--backbone", "gdas", "--space", "s4"], "GDAS sampling on s4"),
])
def test_unsupported_configurations_refuse_seeds_in_one_line(script, extra, needle, tmp_path, capsys) -> None:
    module = importlib.import_module(script.removesuffix(".py"))
    handler = signal.getsignal(signal.SIGTERM)  # main_guard installs its own
    try:
        with pytest.raises(SystemExit) as stop:
            module.main(["--seeds", "0", "1", "--data-dir", str(tmp_path), "--device", "cpu", "--dataset",
                         "synthetic", "--out", str(tmp_path / "o"), *extra])
    finally:
        signal.signal(signal.SIGTERM, handler)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err, err
    assert "--seeds" in err and needle in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_sp_darts_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """SP: φ per replica per batch from each replica's own generator (p = 0.5), one batched step."""
    import sp_darts
    _equivalent(shared_data, tmp_path, (sp_darts.SPConfig, sp_darts.search), warmup=0, p_low=0.5, p_up=0.5)
    fractions = [json.loads((tmp_path / "batched" / f"seed{s}" / "metrics.jsonl").read_text())["sparse_fraction"]
                 for s in SEEDS]
    assert len(set(fractions)) > 1  # the replicas drew different Φ: both branches ran in one batched step


# ----------------------------------------------------------------------------- GDAS backbones and plain DARTS-V2

def _gdas_equivalent(data: Path, root: Path, module, config, monkeypatch, stop_at: int | None = None,
                     **kw) -> None:
    """`_equivalent` for a GDAS backbone, recording every sample: at least one replica must have an op with
    parameters that its first w step did not sample and a later w step did (the lazy momentum buffer:
    created then, `SampledOpsStep`), and one sampled, then not (skipped: no weight decay, no momentum).
    `stop_at`: the batched run first stops at that global step (NaN in every replica), then resumes from the
    replicas' checkpoints, which lack the momentum buffers of ops not sampled yet, as their single runs do."""
    samples: list[dict] = []

    def recording(alphas, tau, generator=None):
        weights, index = gdas_weights(alphas, tau, generator)
        samples.append({k: torch.as_tensor(v).clone() for k, v in index.items()})
        return weights, index
    monkeypatch.setattr(module, "gdas_weights", recording)
    method, batched = (config, module.search), root / "batched" / "seed{seed}"
    kw.setdefault("epochs", 1)  # 3 bilevel steps (GDAS's default: 250 epochs)
    for seed in SEEDS:
        _search(data, root / "single" / f"seed{seed}", method, seed=seed, **kw)
    singles = list(samples)
    if stop_at is not None:
        with pytest.raises(NonFiniteLoss, match="every replica"):
            _search(data, batched, method, seeds=SEEDS, debug_nan_step=stop_at, **kw)
        ckpt = torch.load(root / "batched" / "seed0" / "checkpoint.pt", weights_only=False)["w_optimizer"]
        assert 0 < len(ckpt["state"]) < len(ckpt["param_groups"][0]["params"])  # some op has no buffer yet
    del samples[:]
    out = _search(data, batched, method, seeds=SEEDS, resume=stop_at is not None, **kw)
    assert sorted(out["replicas"]) == SEEDS
    for seed in SEEDS:
        _same_run(root / "single" / f"seed{seed}", root / "batched" / f"seed{seed}", epochs=kw["epochs"])
    steps = len(singles) // 6  # each bilevel step samples for its w step, then for its α step
    assert steps >= 3 and len(samples) == 2 * steps - (0 if stop_at is None else 2 * stop_at)
    late = skipped = False
    for s in range(3):
        ran = torch.stack([singles[2 * (steps * s + t)]["normal"] for t in range(steps)])  # (steps, E)
        first = steps - len(samples) // 2  # the batched draws recorded (after the resume: from stop_at on)
        assert torch.equal(ran[first:], torch.stack([b["normal"][s].argmax(-1) for b in samples[0::2]]))
        for op in (2, 3):  # nor_conv_1x1, nor_conv_3x3: the NB201 ops with parameters
            picked = ran == op  # (steps, E): the op ran in replica s's w step t
            late |= bool((~picked[0] & picked[1:].any(0)).any())
            skipped |= bool((picked[:-1] & ~picked[1:]).any())
    assert late and skipped


@pytest.mark.slow
def test_gdas_replicas_equal_their_single_runs(shared_data, tmp_path, monkeypatch) -> None:
    """Plain GDAS (aer_darts.py --backbone gdas, λ ≡ 0, run_all's `gdas` row): each replica samples its own
    op per edge from its own global RNG; all ops run masked; unsampled ops do not step (SampledOpsStep)."""
    import aer_darts
    _gdas_equivalent(shared_data, tmp_path, aer_darts, aer_darts.AERConfig, monkeypatch, backbone="gdas",
                     lam_neg=0.0, lam_pos=0.0)


@pytest.mark.slow
def test_aer_gdas_replicas_equal_their_single_runs(shared_data, tmp_path, monkeypatch) -> None:
    """AER-GDAS with --clip-scope official (the w clip norm counts α.grad), PC-DARTS K=2 partial channels, on
    the reference supernet (`masked_mix` on every MixedOp; the others run the fast NB201 cell)."""
    import aer_darts
    _gdas_equivalent(shared_data, tmp_path, aer_darts, aer_darts.AERConfig, monkeypatch, backbone="gdas",
                     lam=0.2, clip_scope="official", partial_channels=2, warmup=0, fast=False)


@pytest.mark.slow
def test_ets_gdas_replicas_equal_their_single_runs(shared_data, tmp_path, monkeypatch) -> None:
    """ETS-GDAS (edd_darts.py --backbone gdas): τ the ETS temperature of each epoch; 2 epochs × 2 steps, the
    batched run stopped in epoch 2 and resumed from its replicas' epoch-1 checkpoints (their RNG states, and
    no momentum buffer for an op not sampled yet)."""
    import edd_darts
    _gdas_equivalent(shared_data, tmp_path, edd_darts, edd_darts.EDDConfig, monkeypatch, backbone="gdas",
                     epochs=2, limit_train=16, stop_at=2)


@pytest.mark.slow
def test_plain_darts_v2_replicas_equal_their_single_runs(shared_data, tmp_path) -> None:
    """Plain DARTS-V2 (run_all's `darts-v2` row: no regulariser passed): the unrolled step per replica."""
    import aer_darts
    _equivalent(shared_data, tmp_path, (aer_darts.AERConfig, aer_darts.search), backbone="darts-v2",
                lam_neg=0.0, lam_pos=0.0)


def test_sampled_ops_step_is_torch_sgd_skipping_each_replicas_unsampled_ops() -> None:
    """`SampledOpsStep` on the flat (S, P) SGD (Nesterov, weight decay) against S torch SGDs whose unsampled
    ops' parameters have grad None (skipped: no decay, no momentum; the buffer created at the first sampled
    step); the replicas' state dicts (`_slice_state`) and the stacked state rebuilt from them (`_stack_states`,
    --resume) equal. No data needed; fails without the hooks or with eager buffers."""
    from common.fast import build_supernet
    from common.replicas import MOMENTUM_EXISTS, _slice_state, _stack_states, stack_replicas
    S, gen = 3, torch.Generator().manual_seed(0)
    models = []
    for seed in range(S):
        torch.manual_seed(seed)
        models.append(build_supernet("nb201", 2, 1, 10).double())
    sgd = lambda ps: torch.optim.SGD(ps, 0.1, momentum=0.9, weight_decay=0.05, nesterov=True)
    singles = [sgd(m.weight_parameters()) for m in models]
    model, w_opt, _ = stack_replicas(models, singles[0], torch.optim.Adam(models[0].arch_parameters()),
                                     torch.ones(S, dtype=torch.bool))
    names = [n for n, p in models[0].named_parameters() if n in model.params and "alphas" not in n]
    # running every op changes nothing else observable: no BN keeps running statistics (batch statistics only)
    assert not any(getattr(m, "track_running_stats", False) for m in models[0].modules())
    E, M = model.alphas["normal"].shape[1:]
    ran = torch.zeros(4, S, E, dtype=torch.long)
    ran[0] = 0  # step 0: every edge `none`, no conv has a gradient; then the convs come and go
    ran[1:] = torch.randint(M, (3, S, E), generator=gen)
    ran[1, :, 0], ran[2, :, 0], ran[3, :, 0] = 3, 1, 3  # edge 0's 3×3 conv: sampled, skipped, sampled
    for t in range(4):
        one_hot = torch.nn.functional.one_hot(ran[t], M).double()  # (S, E, M)
        model.ran = {"normal": one_hot}
        for name in names:
            g = torch.randn(S, *model.params[name].shape[1:], generator=gen, dtype=torch.float64)
            op = model.op_of.get(name)
            on = torch.ones(S) if op is None else one_hot[:, op[1], op[2]]
            g = g * on.view(-1, *[1] * (g.dim() - 1))  # an unsampled op: exactly 0 under vmap
            model.params[name].grad = g / S  # the mean over replicas (gather_grad multiplies by S)
            for s in range(S):
                dict(models[s].named_parameters())[name].grad = g[s].clone() if on[s] else None
        w_opt.step()
        for single in singles:
            single.step()
    for s in range(S):
        for name in names:
            assert torch.allclose(model.params[name][s], dict(models[s].named_parameters())[name], rtol=1e-12,
                                  atol=1e-15), name
        mine, theirs = _slice_state(w_opt, s, singles[s].state_dict()), singles[s].state_dict()
        assert set(mine["state"]) == set(theirs["state"]) != set(range(len(names)))  # some op never sampled
        _close(mine["state"], theirs["state"], "state")
    assert not w_opt.state[w_opt.param_groups[0]["params"][0]][MOMENTUM_EXISTS].all()
    _, resumed, _ = stack_replicas(models, singles[0], torch.optim.Adam(models[0].arch_parameters()),
                                   torch.ones(S, dtype=torch.bool))
    resumed.load_state_dict(_stack_states(resumed, [o.state_dict() for o in singles]))
    a, b = (next(iter(o.state.values())) for o in (w_opt, resumed))
    assert torch.equal(a[MOMENTUM_EXISTS].bool(), b[MOMENTUM_EXISTS].bool())
    assert torch.allclose(a["momentum_buffer"], b["momentum_buffer"], rtol=1e-12, atol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["nasnet", "nb201"])
def test_gdas_on_the_darts_skeleton_replicas_equal_their_single_runs(shared_data, tmp_path, form: str) -> None:
    """GDAS on the DARTS space (8 ops with `none`, normal and reduction cells: N=3, C=2): `masked_mix` in
    every DARTS cell's MixedOp, both cell kinds' samples; some op is still unsampled after 3 steps. In the
    nasnet form (the DARTS skeleton's default, xautodl's NASNet GDAS: no (1 − m)·w term) and the nb201 one."""
    import aer_darts
    kw = {} if form == "nasnet" else {"gdas_form": "nb201"}  # nasnet: the default, as run_all.sh runs it
    _equivalent(shared_data, tmp_path, (aer_darts.AERConfig, aer_darts.search), space="darts", N=3, C=2,
                backbone="gdas", lam_neg=0.0, lam_pos=0.0, **kw)
    for seed in SEEDS:
        assert json.loads((tmp_path / "batched" / f"seed{seed}" / "args.json").read_text())["gdas_form"] == form
    ckpt = torch.load(tmp_path / "batched" / "seed1" / "checkpoint.pt", weights_only=False)["w_optimizer"]
    assert 0 < len(ckpt["state"]) < len(ckpt["param_groups"][0]["params"])


@pytest.mark.parametrize("space,form,fast", [("nb201", "nb201", False), ("nb201", "nasnet", False),
                                             ("nb201", "nb201", True), ("nb201", "nasnet", True),
                                             ("darts", "nb201", True), ("darts", "nasnet", True)])
def test_batched_gdas_forward_equals_each_replicas_single_forward(space: str, form: str, fast: bool) -> None:
    """`ReplicaSupernet` (vmap; every op runs, masked by each replica's one-hots: `masked_mix`, or the fast
    NB201 cell) against each replica's own supernet running its sampled ops only (`MixedOp.mix`), in both
    GDAS forms, float64: logits, ∇α through the straight-through weights, ∇w (an unsampled op's: exactly 0
    batched, None alone). No data needed; fails if the batched form adds (or drops) the Σ (1 − m)·w term."""
    from common.fast import build_supernet
    from common.replicas import ReplicaSupernet
    from common.sampling import gumbel_softmax_hard
    S, tau, N = 2, 2.0, 1 if space == "nb201" else 3
    models = []
    for s in range(S):
        torch.manual_seed(s)
        models.append(build_supernet(space, 2, N, 10, fast=fast, gdas_form=form).double())
        with torch.no_grad():
            for a in models[-1].alphas.values():
                a.normal_()  # far from uniform: the straight-through gradients differ by op
    model = ReplicaSupernet(models)
    gens = lambda: [torch.Generator().manual_seed(10 + s) for s in range(S)]
    weights, onehots = gdas_weights(model.alphas, tau, gens())  # (S, E, M) each
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(10, (2,), generator=gen)
    logits = model(x, weights, onehots)  # (S, B, classes)
    loss = sum(torch.nn.functional.cross_entropy(logits[s], y) for s in range(S))
    names = list(model.params)
    grads = dict(zip(names, torch.autograd.grad(loss, [model.params[n] for n in names], allow_unused=True)))
    for s, single in enumerate(models):
        draw = [torch.Generator().manual_seed(10 + s)]
        sample = {k: gumbel_softmax_hard(a.unsqueeze(0), tau, draw)[0][0] for k, a in single.alphas.items()}
        index = {k: w.detach().argmax(-1).tolist() for k, w in sample.items()}
        assert all(torch.equal(onehots[k][s].argmax(-1), torch.tensor(i)) for k, i in index.items())
        out = single(x, sample, index)
        assert torch.allclose(logits[s], out, rtol=1e-12, atol=1e-13), s
        own = dict(single.named_parameters())
        mine = dict(zip(names, torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), [own[n] for n in names],
                                                   allow_unused=True)))
        for name in names:
            batched = grads[name][s] if grads[name] is not None else torch.zeros_like(model.params[name][s])
            alone = mine[name] if mine[name] is not None else torch.zeros_like(batched)
            if mine[name] is None:  # not run alone: exactly 0 batched
                assert not batched.any(), (s, name)
            assert torch.allclose(batched, alone, rtol=1e-10, atol=1e-14), (s, name)


@pytest.mark.slow
def test_a_gdas_replica_fed_nan_stops_alone(shared_data, tmp_path, capfd) -> None:
    """GDAS: replica 1 fed NaN at global step 3 (epoch 2) stops alone (its all-ops forward is NaN, and so are
    the gradients of its unsampled ops: frozen with it); replicas 0 and 2 equal their single runs."""
    import aer_darts
    method = (aer_darts.AERConfig, aer_darts.search)
    kw = dict(backbone="gdas", lam_neg=0.0, lam_pos=0.0, epochs=2, limit_train=16)
    for seed in (0, 2):
        _search(shared_data, tmp_path / "single" / f"seed{seed}", method, seed=seed, **kw)
    with pytest.raises(NonFiniteLoss, match=r"1 of 3 replicas .*seeds \[1\]"):
        _search(shared_data, tmp_path / "batched" / "seed{seed}", method, seeds=SEEDS, debug_nan_step=3,
                debug_nan_seed=1, **kw)
    assert "seed 1: loss became non-finite at global step 3 (epoch 2)" in capfd.readouterr().err
    for seed in (0, 2):
        _same_run(tmp_path / "single" / f"seed{seed}", tmp_path / "batched" / f"seed{seed}", epochs=2)
