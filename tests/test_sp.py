"""Tests of sp_darts.py (SP-DARTS, paper 002).

Eq. 20 against its closed form and against the authors' running sum; the Bernoulli mixing against a
binomial bound; temperature invariance of the argmax and derived genotype; the Jacobian of Eq. 10 and
stability at t = 1e-4; the two-pass Eq. 13 step against a closed-form gradient; exact reduction to plain
DARTS (p = 0, t_sm = 1); bit-identical resume; a smoke run whose IES is below plain DARTS's.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch.nn import functional as F

import sp_darts
from common.baseline import DartsConfig
from common.baseline import search as darts_search
from common.config import ConfigError, build_parser, parse_config
from common.fast import build_supernet
from common.genotypes import derive_genotype
from common.run import NonFiniteLoss
from common.spaces import SPACES
from sp_darts import (
    SPConfig,
    draw_phi,
    mixing_probability,
    search,
    tempered_softmax,
    tempered_weights,
    two_pass_step,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets on a shared CPU: more threads only add contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def eq20(i: int, I: int, p_low: float, p_up: float, i_wp: int) -> float:  # noqa: E741
    """Eq. 20 as printed (i counted from 1)."""
    return 0.0 if i < i_wp else p_low + (p_up - p_low) / (I - i_wp) * (i - i_wp)


# ----------------------------------------------------------------------------- Eq. 20

@pytest.mark.numerics
def test_mixing_probability_warmup_mid_end():
    E = 50
    # warm-up: i < i_wp → 0; at i = i_wp (epoch i_wp − 1) → p_low
    assert [mixing_probability(e, E, 0.2, 0.9, 3) for e in range(3)] == [0.0, 0.0, pytest.approx(0.2)]
    # mid: epoch 25 → i = 26
    assert mixing_probability(25, E, 0.2, 0.9, 3) == pytest.approx(0.2 + 0.7 * (26 - 3) / (50 - 3))
    # end: the last epoch reaches p_up
    assert mixing_probability(E - 1, E, 0.2, 0.9, 3) == pytest.approx(0.9)
    # Table II, CIFAR-10: p_low 0, p_up 1, warm-up 1
    assert mixing_probability(0, E, 0.0, 1.0, 1) == 0.0
    assert mixing_probability(1, E, 0.0, 1.0, 1) == pytest.approx(1 / 49)
    assert mixing_probability(E - 1, E, 0.0, 1.0, 1) == pytest.approx(1.0)
    for e in range(E):
        assert mixing_probability(e, E, 0.1, 0.9, 4) == pytest.approx(eq20(e + 1, E, 0.1, 0.9, 4))


@pytest.mark.numerics
def test_mixing_probability_is_the_authors_running_sum():
    """NB201 script: `if epoch >= warmup: C += 1/(50 - warmup)` at the start of each epoch."""
    for warmup in (0, 1, 5):
        C = 0.0
        for epoch in range(50):
            if epoch >= warmup:
                C += 1 / (50 - warmup)
            assert mixing_probability(epoch, 50, 0.0, 1.0, warmup) == pytest.approx(C, abs=1e-12)


@pytest.mark.numerics
@given(epochs=st.integers(1, 300), warmup=st.integers(0, 320), p_low=st.floats(0, 1), p_up=st.floats(0, 1),
       data=st.data())
def test_mixing_probability_in_unit_interval_and_monotone(epochs, warmup, p_low, p_up, data):
    epoch = data.draw(st.integers(0, epochs + 5))
    p = mixing_probability(epoch, epochs, p_low, p_up, warmup)
    assert 0.0 <= p <= 1.0
    assert p == 0.0 or min(p_low, p_up) - 1e-12 <= p <= max(p_low, p_up) + 1e-12
    if p_low <= p_up and epoch > 0:
        assert p >= mixing_probability(epoch - 1, epochs, p_low, p_up, warmup) - 1e-12


# ----------------------------------------------------------------------------- Bernoulli mixing (Eq. 15–19)

@pytest.mark.numerics
@pytest.mark.parametrize("p", [0.0, 0.02, 0.3, 0.5, 0.9, 1.0])
def test_sparse_fraction_matches_p(p):
    g = torch.Generator().manual_seed(0)
    global_state = torch.get_rng_state()
    n_epochs, n_batches = 200, 98  # 98 batches: NB201 at batch 256
    phi = [f for _ in range(n_epochs) for f in draw_phi(n_batches, p, g)]
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is never used
    n = len(phi)
    frac = sum(phi) / n
    # binomial: |frac − p| ≤ 5σ, σ = sqrt(p(1−p)/n) (exact for p ∈ {0, 1})
    assert abs(frac - p) <= 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.numerics
def test_draws_reproducible_from_generator_state():
    g = torch.Generator().manual_seed(7)
    first = draw_phi(50, 0.5, g)
    state = g.get_state()
    second = draw_phi(50, 0.5, g)
    g2 = torch.Generator()
    g2.set_state(state)
    assert draw_phi(50, 0.5, g2) == second
    assert draw_phi(50, 0.5, torch.Generator().manual_seed(7)) == first


# ----------------------------------------------------------------------------- temperatures

@pytest.mark.numerics
@given(rows=st.lists(st.lists(st.floats(-2, 2), min_size=5, max_size=5), min_size=1, max_size=6),
       t_sp=st.floats(1e-4, 1e-2), ratio=st.floats(1.0, 100.0))
def test_argmax_is_temperature_free(rows, t_sp, ratio):
    alpha = torch.tensor(rows, dtype=torch.float64)
    gaps = (alpha[:, :, None] - alpha[:, None, :]).abs() + torch.eye(5, dtype=torch.float64)
    assume(bool((gaps > 1e-6).all()))
    ref = alpha.argmax(-1)
    assert torch.equal(tempered_softmax(alpha, t_sp).argmax(-1), ref)
    assert torch.equal(tempered_softmax(alpha, ratio * t_sp).argmax(-1), ref)


@pytest.mark.numerics
@pytest.mark.parametrize("seed", range(5))
def test_derived_nb201_genotype_is_temperature_free(seed):
    torch.manual_seed(seed)
    alphas = {"normal": 1e-3 * torch.randn(6, 5)}  # the supernet's init scale
    space = SPACES["nb201"]
    plain = derive_genotype({"normal": F.softmax(alphas["normal"], -1)}, space)
    for t in (1e-4, 1.1e-3, 1.1e-2, 1.0):
        assert derive_genotype(tempered_weights(alphas, t), space) == plain


@pytest.mark.numerics
def test_unit_temperature_is_exactly_softmax():
    torch.manual_seed(0)
    alpha = torch.randn(14, 8)
    assert torch.equal(tempered_softmax(alpha, 1.0), F.softmax(alpha, dim=-1))


@pytest.mark.numerics
@given(row=st.lists(st.floats(-1, 1), min_size=2, max_size=8), t=st.sampled_from([1e-4, 1e-3, 1.1e-2, 1.0]),
       seed=st.integers(0, 2**16))
def test_jacobian_is_eq10(row, t, seed):
    """Eq. 10: ∂y/∂x = (1/t)(diag(y) − yyᵀ); check the vector-Jacobian product (float64)."""
    x = torch.tensor(row, dtype=torch.float64, requires_grad=True)
    y = tempered_softmax(x, t)
    g = torch.randn(len(row), dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    (vjp,) = torch.autograd.grad(y, x, g)
    yd = y.detach()
    expected = (torch.diag(yd) - torch.outer(yd, yd)) @ g / t
    torch.testing.assert_close(vjp, expected, rtol=1e-9, atol=1e-9 / t)


@pytest.mark.numerics
def test_tiny_temperature_is_finite_forward_and_backward():
    torch.manual_seed(0)
    alpha = torch.randn(6, 5, requires_grad=True)  # float32 logits of order 1
    alpha_tie = alpha.detach().clone()
    alpha_tie[:, 1] = alpha_tie[:, 0] + 3e-5  # near-ties: unsaturated rows, gradients of order 1/t
    for a in (alpha, alpha_tie.requires_grad_()):
        y = tempered_softmax(a, 1e-4)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.sum(-1), torch.ones(6))
        (y * torch.randn_like(y)).sum().backward()
        assert torch.isfinite(a.grad).all()
    assert alpha_tie.grad.abs().max() > 10  # the near-tie rows do carry a gradient
    # through a (tiny) supernet
    model = build_supernet("nb201", 4, 1, 10)
    with torch.no_grad():
        model.alphas["normal"].copy_(torch.randn(6, 5))
    loss = F.cross_entropy(model(torch.randn(4, 3, 32, 32), tempered_weights(model.alphas, 1e-4)),
                           torch.arange(4))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- Eq. 13 two-pass step

@pytest.mark.numerics
def test_two_pass_step_is_the_weighted_gradient():
    """Linear softmax regression: ∇W CE(xWᵀ/s) = (softmax(xWᵀ/s) − Y)ᵀ x / (s·B), closed form."""
    gen = torch.Generator().manual_seed(0)
    B, D, K = 8, 5, 4
    x = torch.randn(B, D, dtype=torch.float64, generator=gen)
    y = torch.randint(0, K, (B,), generator=gen)
    W0 = torch.randn(K, D, dtype=torch.float64, generator=gen)
    W = torch.nn.Parameter(W0.clone())
    scales, coeffs = (1.0, 0.1), (0.7, 0.3)
    forwards = [lambda inp, s=s: inp @ W.T / s for s in scales]
    expected = sum(c * (F.softmax(x @ W0.T / s, -1) - F.one_hot(y, K)).T @ x / (s * B)
                   for c, s in zip(coeffs, scales))
    loss, _ = two_pass_step(list(zip(coeffs, forwards)), x, y, [W], torch.optim.SGD([W], lr=1.0))
    torch.testing.assert_close(W0 - W.detach(), expected)
    ref = sum(c * F.cross_entropy(x @ W0.T / s, y) for c, s in zip(coeffs, scales))
    torch.testing.assert_close(loss, ref)
    # clipping acts on the total gradient; a zero-weight term is never evaluated
    W.data.copy_(W0)

    def never(_):
        raise AssertionError("a zero-weight term was evaluated")
    two_pass_step(list(zip(coeffs, forwards)) + [(0.0, never)], x, y, [W], torch.optim.SGD([W], lr=1.0),
                  grad_clip=1e-3)
    torch.testing.assert_close((W0 - W.detach()).norm(), torch.tensor(1e-3, dtype=torch.float64))
    torch.testing.assert_close((W0 - W.detach()) / (W0 - W.detach()).norm(), expected / expected.norm())


# ----------------------------------------------------------------------------- config

def test_table_defaults_resolve_and_show_in_help():
    cfg = SPConfig(space="nb201", dataset="cifar10")
    cfg.resolve()
    assert (cfg.batch_size, cfg.w_lr, cfg.w_lr_min, cfg.a_wd, cfg.p_low, cfg.p_up, cfg.t_sp, cfg.warmup) == \
           (256, 0.05, None, 0.0, 0.0, 1.0, 1.1e-3, 1)
    assert cfg.t_sm == pytest.approx(1.1e-2)
    cfg = SPConfig(space="nb201", dataset="cifar100")
    cfg.resolve()
    assert (cfg.p_up, cfg.t_sp) == (0.9, 1.3e-3)
    for space in ("darts", "s1", "s2", "s3", "s4"):
        cfg = SPConfig(space=space, dataset="cifar100")
        cfg.resolve()
        assert (cfg.batch_size, cfg.p_up, cfg.t_sp, cfg.w_wd) == (80, 1.0, 1e-3, 3e-4)
    cfg = SPConfig(t_sm_ratio=11.0)
    cfg.resolve()
    assert cfg.t_sm == pytest.approx(11 * 1.1e-3)
    cfg = SPConfig(t_sm=1.0, batch_size=16)
    cfg.resolve()
    assert (cfg.t_sm, cfg.batch_size) == (1.0, 16)
    text = " ".join(build_parser(SPConfig).format_help().split())
    for needle in ("1.1e-3 on cifar10", "1.3e-3 on cifar100", "0.9 on cifar100", "256 on NB201", "80 on DARTS"):
        assert needle in text


@pytest.mark.parametrize("flag", ["--t-sp=-1e-3", "--t-sp=0", "--t-sp=inf", "--t-sm=0", "--t-sm-ratio=-2",
                                  "--p-up=-0.5", "--p-low=-0.1", "--warmup=-1"])
def test_bad_values_exit_2(flag, capsys):
    with pytest.raises(SystemExit) as err:
        parse_config(SPConfig, [flag])
    assert err.value.code == 2
    assert "must be" in capsys.readouterr().err
    name, value = flag[2:].split("=")
    cfg = SPConfig(**{name.replace("-", "_"): int(value) if name == "warmup" else float(value)})
    with pytest.raises(ConfigError):
        cfg.resolve()


# ----------------------------------------------------------------------------- end to end

_CACHE: dict = {}
TINY = dict(space="nb201", dataset="cifar10", limit_train=64, C=4, N=1, epochs=2, batch_size=16,
            progress=False, eval_images=64, device="cpu", seed=1,
            w_lr=0.025, w_lr_min=0.001, w_wd=5e-4, a_wd=1e-3)  # plain DARTS's optimiser settings


@pytest.fixture
def darts_result(shared_data, tmp_path_factory) -> dict:
    """Plain DARTS (common.baseline) on the tiny config, run once per session."""
    if "darts" not in _CACHE:
        _CACHE["darts_out"] = str(tmp_path_factory.mktemp("darts"))
        cfg = DartsConfig(data_dir=str(shared_data), out=_CACHE["darts_out"], **TINY)
        cfg.resolve()
        _CACHE["darts"] = darts_search(cfg)
    return _CACHE["darts"]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mixed", "expected"])
def test_p0_unit_smooth_temperature_is_plain_darts(objective, darts_result, shared_data, tmp_path):
    cfg = SPConfig(data_dir=str(shared_data), out=str(tmp_path / "sp"), p_low=0.0, p_up=0.0, t_sm=1.0,
                   objective=objective, **TINY)
    cfg.resolve()
    result = search(cfg)
    assert result["alphas"] == darts_result["alphas"]  # exact, every entry
    ours, ref = _records(tmp_path / "sp"), _records(Path(_CACHE["darts_out"]))
    for key in ("train_loss", "valid_loss", "discrete_valid_acc", "entropy_sum", "op_entropy_sum"):
        assert [r[key] for r in ours] == [r[key] for r in ref], key
    assert [r["p"] for r in ours] == [0.0, 0.0]
    assert result["genotype"] == darts_result["genotype"]


@pytest.mark.slow
def test_smoke_cli_ies_below_plain_darts(darts_result, shared_data, tmp_path):
    """The script end to end (subprocess) on the CIFAR-10 subset: warm-up epoch at p = 0, then p = 1.

    Same data, seed, steps and optimiser settings as the plain-DARTS run; only the temperatures differ.
    """
    out = tmp_path / "sp"
    flags = {"--data-dir": shared_data, "--limit-train": 64, "--C": 4, "--N": 1, "--epochs": 2,
             "--batch-size": 16, "--eval-images": 64, "--seed": 1, "--w-lr": 0.025, "--w-lr-min": 0.001,
             "--w-wd": 5e-4, "--a-wd": 1e-3, "--out": out, "--device": "cpu"}
    argv = [sys.executable, str(ROOT / "sp_darts.py"), "--space", "nb201", "--no-progress"]
    argv += [str(v) for kv in flags.items() for v in kv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = json.loads((out / "args.json").read_text())
    assert (args["t_sp"], args["p_up"], args["warmup"]) == (1.1e-3, 1.0, 1)
    assert args["t_sm"] == pytest.approx(1.1e-2)
    recs = _records(out)
    assert [r["p"] for r in recs] == [0.0, 1.0]
    assert [r["sparse_fraction"] for r in recs] == [0.0, 1.0]
    final, darts = recs[-1], darts_result["final"]
    # IES of the weights used (here a_sp), and of a_sp itself, against plain DARTS's softmax(α)
    assert final["op_entropy_sum"] == pytest.approx(final["ies_sparse"])
    assert final["op_entropy_sum"] < 0.9 * darts["op_entropy_sum"]
    assert recs[0]["op_entropy_sum"] == pytest.approx(recs[0]["ies_smooth"])
    assert final["ies_sparse"] < final["ies_smooth"] <= final["entropy_sum"] + 1e-6
    assert math.isfinite(final["entropy_sum"])
    assert (out / "result.json").is_file()


@pytest.mark.slow
def test_resume_is_bit_identical(shared_data, tmp_path, monkeypatch):
    """Same φ for both steps of a batch; stop after epoch 1 (NaN injected at the first step of epoch 2),
    resume: same α and draws as the uninterrupted run."""
    kw = dict(TINY, p_up=0.5, warmup=0)  # p = 0.25, 0.5: the draws matter in both epochs
    full = SPConfig(data_dir=str(shared_data), out=str(tmp_path / "full"), **kw)
    full.resolve()
    temps: list[float] = []  # the temperature of every forward that takes a gradient (w, α steps)

    def spy(alphas, t):
        if torch.is_grad_enabled():
            temps.append(t)
        return tempered_weights(alphas, t)
    monkeypatch.setattr(sp_darts, "tempered_weights", spy)
    ref = search(full)
    monkeypatch.undo()
    # Eq. 15 / Alg. 1: per batch one φ, the same for the w step and the α step, drawn from the seeded
    # generator with p from Eq. 20
    g = torch.Generator().manual_seed(kw["seed"] + 0x5D5D)
    phi = draw_phi(4, 0.25, g) + draw_phi(4, 0.5, g)
    assert temps[0::2] == temps[1::2] == [full.t_sp if f else full.t_sm for f in phi]
    cut = SPConfig(data_dir=str(shared_data), out=str(tmp_path / "cut"), debug_nan_step=4, **kw)
    cut.resolve()
    with pytest.raises(NonFiniteLoss):
        search(cut)
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["method_state"]
    g = torch.Generator().manual_seed(kw["seed"] + 0x5D5D)
    draw_phi(4, 0.0, g)  # one epoch of 4 batches was drawn
    assert torch.equal(state["phi_generator"], g.get_state())
    resumed = SPConfig(data_dir=str(shared_data), out=str(tmp_path / "cut"), resume=True, **kw)
    resumed.resolve()
    again = search(resumed)
    assert again["alphas"] == ref["alphas"]
    assert [r["sparse_fraction"] for r in _records(tmp_path / "cut")] == \
           [r["sparse_fraction"] for r in _records(tmp_path / "full")]


@pytest.mark.slow
@pytest.mark.parametrize("space", ["darts", "s1", "s2", "s3", "s4"])
def test_darts_skeleton_spaces_run(space, shared_data, tmp_path):
    cfg = SPConfig(space=space, dataset="cifar10", data_dir=str(shared_data), limit_train=16, C=4, N=3,
                   epochs=1, batch_size=8, warmup=0, out=str(tmp_path / space), progress=False,
                   eval_images=16, device="cpu")
    cfg.resolve()
    result = search(cfg)
    final = result["final"]
    assert (final["p"], final["sparse_fraction"]) == (1.0, 1.0)  # warm-up 0, one epoch: p = p_up
    assert set(result["alphas"]) == {"normal", "reduce"}
    assert all(math.isfinite(v) for a in result["alphas"].values() for row in a for v in row)
    assert final["ies_sparse"] < final["ies_smooth"]
    assert len(result["genotype"]["normal"]) == 8


def test_fill_defaults_fills_only_fields_left_none() -> None:
    """`common.config.fill_defaults`, which SP's and SA's resolve() use: an explicit 0 is a value, None is not."""
    from dataclasses import dataclass

    from common.config import fill_defaults

    @dataclass
    class Cfg:
        a: float | None = None
        b: float | None = 0.0
        c: int | None = 7

    cfg = Cfg()
    fill_defaults(cfg, a=1.5, b=2.0, c=3)
    assert (cfg.a, cfg.b, cfg.c) == (1.5, 0.0, 7)
    cfg = parse_config(SPConfig, ["--space", "darts", "--w-wd", "0"])
    assert cfg.w_wd == 0.0 and cfg.batch_size == 80  # explicit 0 kept; the DARTS-space batch (Table IV) filled
