"""Tests for edd_darts.py: sn-softmax against finite differences, ETS / EDD / PCD against the paper's
equations and worked example, the config, and end-to-end runs (plain-DARTS equivalence, smoke, resume)."""
from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import decays_after
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.nn import functional as F

from authors.edd import EDDConfig
from common.run import NonFiniteLoss
from common.search import clip_grad_before_step
from edd_darts import (
    advance_schedule,
    edd_decay,
    edd_temperature,
    ets_forward,
    ets_inverse,
    ets_log_points,
    ets_temperatures,
    expected_positive_alpha,
    mean_entropy,
    pcd_temperature,
    search,
    sn_softmax,
)

ROOT = Path(__file__).resolve().parents[1]
E_A = expected_positive_alpha()


@st.composite
def logits_and_grad(draw, low: float = -3.0, high: float = 3.0):
    """(A, g) float64 of a drawn shape (M,), (E, M) or (B, E, M)."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))) + (draw(st.integers(2, 7)),)
    elems = st.floats(low, high, allow_nan=False, allow_infinity=False)
    a = draw(arrays(np.float64, shape, elements=elems))
    g = draw(arrays(np.float64, shape, elements=st.floats(-2, 2, allow_nan=False)))
    return torch.from_numpy(a), torch.from_numpy(g)


temperatures = st.floats(0.05, 5.0)
scales = st.floats(1.5, 300.0)


def sn_grad(a: torch.Tensor, g: torch.Tensor, t: float, s: float, dim: int = -1) -> torch.Tensor:
    a = a.clone().requires_grad_(True)
    sn_softmax(a, t, s, dim).backward(g)
    return a.grad


def fd_vjp(f, a: torch.Tensor, g: torch.Tensor, h: float) -> torch.Tensor:
    """gᵀ·∂f/∂A by central finite differences, all entries of A perturbed at once (f acts on the last dim)."""
    n = a.numel()
    e = h * torch.eye(n, dtype=a.dtype).view(n, *a.shape)  # (n, *A.shape): one perturbed entry each
    return (((f(a + e) - f(a - e)) * g).reshape(n, -1).sum(-1) / (2 * h)).view_as(a)


def autograd_vjp(a: torch.Tensor, g: torch.Tensor, temp: float) -> torch.Tensor:
    a = a.clone().requires_grad_(True)
    F.softmax(a / temp, -1).backward(g)
    return a.grad


# ---------------------------------------------------------------------------------------- sn-softmax

@pytest.mark.numerics
@given(logits_and_grad(), temperatures, scales)
def test_sn_forward_is_tempered_softmax_exactly(ag, t, s):
    a, _ = ag
    assert torch.equal(sn_softmax(a, t, s), F.softmax(a / t, dim=-1))


@pytest.mark.numerics
@given(logits_and_grad(), temperatures, scales)
def test_sn_backward_equals_finite_difference_jacobians(ag, t, s):
    """Eq. 8: (𝒜_t/t + 𝒜_st/(st))·g = FD Jacobian of softmax(A/t) plus that of softmax(A/(st)), with g."""
    a, g = ag
    expected = (fd_vjp(lambda x: F.softmax(x / t, -1), a, g, 1e-6 * t)
                + fd_vjp(lambda x: F.softmax(x / (s * t), -1), a, g, 1e-6 * s * t))
    got = sn_grad(a, g, t, s)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-7 / t)


@pytest.mark.numerics
@given(logits_and_grad(), temperatures, scales)
def test_sn_backward_is_plain_gradient_plus_noise_term(ag, t, s):
    a, g = ag
    plain, noise = autograd_vjp(a, g, t), autograd_vjp(a, g, s * t)
    assert torch.allclose(sn_grad(a, g, t, s), plain + noise, rtol=1e-12, atol=1e-12 / t)
    # st ≡ 1 (s = 1/t): the noise term is plain softmax's gradient at temperature 1
    assert torch.allclose(sn_grad(a, g, t, 1 / t), plain + autograd_vjp(a, g, 1.0), rtol=1e-12, atol=1e-12 / t)


@pytest.mark.numerics
@given(logits_and_grad(), temperatures)
def test_sn_tends_to_plain_softmax_gradient_as_s_grows(ag, t):
    a, g = ag
    plain = autograd_vjp(a, g, t)
    bound = 2 * g.abs().max()  # |𝒜_x g|_i = β_i |g_i − ⟨β, g⟩| ≤ 2 max|g|
    for s in (10.0, 1e3, 1e6):
        assert ((sn_grad(a, g, t, s) - plain).abs() <= bound / (s * t) + 1e-12).all()
    assert torch.allclose(sn_grad(a, g, t, 1e15), plain, rtol=1e-12, atol=1e-13)


@pytest.mark.numerics
def test_sn_dim_and_batched_rows():
    gen = torch.Generator().manual_seed(0)
    a, g = torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randn(6, 5, generator=gen, dtype=torch.float64)
    assert torch.allclose(sn_grad(a.T.contiguous(), g.T.contiguous(), 0.3, 50.0, dim=0), sn_grad(a, g, 0.3, 50.0).T)
    rows = torch.stack([sn_grad(a[i], g[i], 0.3, 50.0) for i in range(6)])  # each edge on its own
    assert torch.allclose(sn_grad(a, g, 0.3, 50.0), rows, rtol=1e-14, atol=1e-14)


@pytest.mark.numerics
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("st_const", [False, True])
def test_sn_stable_at_tiny_temperature_and_escapes_saturation(dtype, st_const):
    t = 1e-4
    s = 1 / t if st_const else 100.0
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(14, 8, generator=gen).to(dtype).requires_grad_(True)  # logits of order 1
    g = torch.randn(14, 8, generator=gen).to(dtype)
    beta = sn_softmax(a, t, s)
    beta.backward(g)
    assert torch.isfinite(beta).all() and torch.isfinite(a.grad).all()
    assert torch.allclose(beta.sum(-1), torch.ones(14, dtype=dtype))
    plain = autograd_vjp(a.detach().double(), g.double(), t)
    assert plain.abs().max() < 1e-6  # softmax saturated: the true gradient vanishes …
    assert a.grad.abs().max() > 1e-3  # … the noise term still moves α (Sec. 2.1)


# ---------------------------------------------------------------------------------------- ETS

@pytest.mark.numerics
def test_expected_positive_alpha_matches_paper_and_sampling():
    assert E_A == pytest.approx(3.98942e-4, rel=1e-5)  # paper ≈ 4e-4, authors' code 3.99e-4
    a = 1e-3 * torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert a.clamp_min(0).mean().item() == pytest.approx(E_A, rel=5e-3)


@pytest.mark.numerics
def test_ets_worked_example_of_section_2_2():
    ts = ets_temperatures(4e-4, 1.0, 1e-3, 4)
    l_exp = [math.exp(x) for x in ets_log_points(4e-4, 1.0, 1e-3, 4)]
    assert [round(x, 3) for x in l_exp] == [1.0, 1.123, 1.246, 1.369, 1.492]
    for got, paper in zip(ts, [1, 0.00345, 0.0018, 0.00127, 0.001]):
        assert got == pytest.approx(paper, rel=0.011)
    # the paper computed t from the rounded L^exp: Eq. 12 on those gives its printed digits
    for x, printed in zip((1.123, 1.246, 1.369, 1.492), ("0.00345", "0.0018", "0.00127", "0.001")):
        half_unit = 0.5 * 10.0 ** -len(printed.split(".")[1])
        assert abs(ets_inverse(x, 4e-4) - float(printed)) < half_unit


@pytest.mark.numerics
@given(st.floats(1e-5, 1e-2), st.floats(0.1, 10.0), st.floats(1e-3, 0.9), st.integers(1, 60))
def test_ets_round_trip_equidistant_monotone_endpoints(e_a, t0, frac, n):
    t_end = t0 * frac
    if e_a / t_end > 600:  # exp() below must stay finite; the log-space case has its own test
        t_end = e_a / 600
    ts = ets_temperatures(e_a, t0, t_end, n)
    assert len(ts) == n + 1
    assert ts[0] == pytest.approx(t0, rel=1e-12) and ts[-1] == pytest.approx(t_end, rel=1e-12)
    assert all(b < a for a, b in zip(ts, ts[1:]))  # decreasing
    t_exp = [ets_forward(t, e_a) for t in ts]  # Eq. 10 of Eq. 12's output: back to L^exp
    assert t_exp == pytest.approx([math.exp(x) for x in ets_log_points(e_a, t0, t_end, n)], rel=1e-9)
    d = (ets_forward(t_end, e_a) - ets_forward(t0, e_a)) / n  # Eq. 11: equidistant in t^exp
    assert np.diff(t_exp) == pytest.approx(np.full(n, d), rel=1e-6, abs=1e-9 * t_exp[-1])
    assert ets_inverse(ets_forward(t0, e_a), e_a) == pytest.approx(t0, rel=1e-9)


@pytest.mark.numerics
def test_ets_no_overflow_at_tiny_temperatures():
    ts = ets_temperatures(E_A, 1.0, 1e-7, 10)  # E(a)/t_end = 3989: exp() would overflow
    assert all(math.isfinite(t) and t > 0 for t in ts)
    assert ts[0] == pytest.approx(1.0, rel=1e-12) and ts[-1] == pytest.approx(1e-7, rel=1e-12)
    assert all(b < a for a, b in zip(ts, ts[1:]))
    assert ts[1] == pytest.approx(E_A / (E_A / 1e-7 + math.log(0.1)), rel=1e-9)  # ln(tN^exp/10) dominates


# ---------------------------------------------------------------------------------------- EDD, PCD

@pytest.mark.numerics
def test_edd_moving_average_by_hand():
    d, ds = 0.0, []
    for h in (1.6, 1.2, 0.8, 0.0):
        d = edd_decay(d, h, lam=0.06, rho=0.5)
        ds.append(d)
    # λ(1−ρ) = 0.03: 0.048; 0.036 + 0.024; 0.024 + 0.030; 0 + 0.027
    assert ds == pytest.approx([0.048, 0.060, 0.054, 0.027], abs=1e-15)
    t0_exp = math.exp(E_A)
    ts = [edd_temperature(E_A, t0_exp, k, dk) for k, dk in enumerate(ds, start=1)]
    assert ts[:3] == pytest.approx([E_A / math.log(t0_exp + kd) for kd in (0.048, 0.12, 0.162)], rel=1e-12)
    assert ts[0] > ts[1] > ts[2] and ts[3] > ts[2]  # collapsed entropy (H = 0) lets t rise again (Eq. 15)


@pytest.mark.numerics
@given(st.floats(0.01, 2.0), st.floats(0.01, 0.5), st.floats(0.0, 0.9), st.floats(0.1, 5.0))
def test_edd_temperature_decreases_as_entropy_is_fed_in(h, lam, rho, t0):
    t0_exp, d, prev = ets_forward(t0, E_A), 0.0, t0
    assert edd_temperature(E_A, t0_exp, 0, 0.0) == pytest.approx(t0, rel=1e-9)  # d(0) = 0: t = t0
    assert edd_temperature(E_A, t0_exp, 3, 0.0) == pytest.approx(t0, rel=1e-9)
    for k in range(1, 30):
        d = edd_decay(d, h, lam, rho)
        assert d == pytest.approx(lam * h * (1 - rho ** k), rel=1e-9)  # closed form for constant H
        t = edd_temperature(E_A, t0_exp, k, d)
        assert 0 < t < prev
        prev = t


@pytest.mark.numerics
def test_pcd_cycles_through_a_fixed_list():
    ts = [pcd_temperature(E_A, 1.0, 0.11, k, period=10) for k in range(25)]
    assert ts[0] == pytest.approx(1.0, rel=1e-9) and ts[10] == ts[0] and ts[20] == ts[0] and ts[13] == ts[3]
    assert all(b < a for a, b in zip(ts[:10], ts[1:10]))
    assert ts[9] == pytest.approx(E_A / math.log(math.exp(E_A) + 0.99), rel=1e-12)


@pytest.mark.numerics
def test_mean_entropy_eq13():
    u, onehot = torch.full((6, 5), 0.2), F.one_hot(torch.arange(6) % 5, 5).float()
    assert mean_entropy({"normal": u}) == pytest.approx(math.log(5), rel=1e-6)
    assert mean_entropy({"normal": onehot}) == 0.0
    w = {"normal": u[:4], "reduce": onehot[:4]}  # pooled over cell kinds
    assert mean_entropy(w) == pytest.approx(math.log(5) / 2, rel=1e-6)
    assert mean_entropy(w, "sum") == pytest.approx(4 * math.log(5), rel=1e-6)


@pytest.mark.numerics
def test_advance_schedule_follows_alg2():
    cfg = EDDConfig(lam=0.06)
    cfg.resolve()
    state = {"t": cfg.t0, "k": 0, "d_exp": 0.0, "lam": cfg.lam}
    for epoch, h in enumerate((1.5, 1.0)):
        advance_schedule(state, cfg, h, epoch, [])
    assert state["k"] == 2 and state["d_exp"] == pytest.approx(0.03 * 1.0 + 0.5 * 0.045)
    assert state["t"] == pytest.approx(E_A / math.log(math.exp(E_A / 1.0) + 2 * state["d_exp"]))


def test_decay_timing_paper_and_authors():
    paper = EDDConfig(epochs=6)
    paper.resolve()
    assert [decays_after(e, paper) for e in range(6)] == [True] * 6
    authors = EDDConfig(epochs=50, warmup=10, decay_every=5, late_from=40, lam=0.04, lam_late=0.08)
    authors.resolve()
    assert [e for e in range(50) if decays_after(e, authors)] == [9, 14, 19, 24, 29, 34, 39] + list(range(40, 50))
    state = {"t": 1.0, "k": 0, "d_exp": 0.0, "lam": 0.04}
    advance_schedule(state, authors, 1.0, 41, [])
    assert state["lam"] == 0.08


def test_clip_alpha_hook_bounds_the_step():
    p = torch.nn.Parameter(torch.zeros(6, 5))
    opt = torch.optim.SGD([p], lr=1.0)
    clip_grad_before_step(opt, [p], 0.5)
    p.grad = torch.full((6, 5), 100.0)
    opt.step()
    assert p.detach().norm().item() == pytest.approx(0.5, rel=1e-5)


def test_config_defaults_and_errors(capsys):
    from common.config import parse_config
    cfg = parse_config(EDDConfig, [])
    assert (cfg.schedule, cfg.softmax, cfg.s, cfg.lam, cfg.rho, cfg.t0, cfg.epochs) == ("edd", "sn", 100.0, 0.06,
                                                                                      0.5, 1.0, 50)
    gdas = parse_config(EDDConfig, ["--backbone", "gdas"])
    assert (gdas.schedule, gdas.softmax, gdas.t0, gdas.t_end, gdas.epochs) == ("ets", "normal", 10.0, 0.1, 250)
    for bad in (["--s", "1"], ["--t-end", "2"], ["--lam", "0"], ["--backbone", "gdas", "--softmax", "sn"],
                ["--st-const", "--softmax", "normal"], ["--rho", "1"]):
        with pytest.raises(SystemExit) as err:
            parse_config(EDDConfig, bad)
        assert err.value.code == 2
    assert "must" in capsys.readouterr().err


# ------------------------------------------------------------------- the authors' PCD step (NB201)

class _Run:
    """What the step_forwards hook uses of the run harness: .model, .alphas, .forward(weights_fn), .state."""

    def __init__(self, model, t: float):
        self.model, self.alphas, self.t = model, model.alphas, t

    def forward(self, weights_fn):
        return lambda x: self.model(x, weights_fn())

    def state(self, key):
        return [self.t]


def _their_pcd_nb201_steps(net, batches, t: float, clip: float, w_opt, a_opt) -> list[float]:
    """Their NB201 PCD search step, transcribed (chaoji90/PCDEDD AutoDL-Projects_pcd/exps/algos/
    DARTS-V1-10.py:45-50, 59-74): w step on softmax(α/t), backward, clip of network.parameters() (α's
    gradient counted), step; α step on softmax(α/t) whose output gradient g is fed once more through
    softmax(α) (st ≡ 1: 𝒜_1·g) when t ≠ 1, step. Returns the clip norms."""
    norms = []
    for x, y, xv, yv in batches:
        w_opt.zero_grad()
        F.cross_entropy(net(x, {k: F.softmax(a / t, dim=-1) for k, a in net.alphas.items()}), y).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(net.parameters(), clip)))
        w_opt.step()
        a_opt.zero_grad()
        weights = {k: F.softmax(a / t, dim=-1) for k, a in net.alphas.items()}
        for w in weights.values():
            w.retain_grad()
        F.cross_entropy(net(xv, weights), yv).backward()
        if not math.isclose(t, 1.0):
            for k, a in net.alphas.items():
                F.softmax(a, dim=-1).backward(weights[k].grad)
        a_opt.step()
    return norms


def test_authors_pcd_w_step_is_plain_softmax_and_matches_their_step():
    """--recipe authors (PCD, NB201): the sn noise is their α step's hook only, so the w step's α gradient,
    which their clip of network.parameters() counts, is plain softmax(α/t)'s."""
    from common.config import parse_config
    from common.fast import build_supernet
    from common.search import alpha_step, w_step
    cfg = parse_config(EDDConfig, ["--recipe", "authors", "--schedule", "pcd"])
    assert (cfg.softmax, cfg.st_const, cfg.sn_unit_off, cfg.clip_scope) == ("sn", True, True, "official")
    torch.manual_seed(0)
    model = build_supernet("nb201", 4, 1, 10).double()
    for a in model.alphas.values():
        a.data.normal_(0, 0.05)
    t = 0.05
    # the hook's w-step forward: ∂l/∂α of softmax(α/t) alone; its α-step forward adds 𝒜_1·g
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    f_a, f_w = cfg.step_forwards(_Run(model, t), t, 1 / t)
    grads = [torch.autograd.grad(F.cross_entropy(f(x), y), model.arch_parameters()) for f in (f_a, f_w)]
    weights = {k: F.softmax(a / t, dim=-1) for k, a in model.alphas.items()}
    plain = torch.autograd.grad(F.cross_entropy(model(x, weights), y), model.arch_parameters())
    torch.testing.assert_close(grads[1], plain, rtol=1e-12, atol=0)
    assert not all(torch.allclose(g, p) for g, p in zip(grads[0], plain))  # the α step has the noise term
    # three steps of ours against their transcribed step: every parameter, clip active on each step
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g),
                torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g))
               for _ in range(3)]
    optimisers = lambda m: (torch.optim.SGD(m.weight_parameters(), 0.025, momentum=0.9, weight_decay=5e-4),
                            torch.optim.Adam(m.arch_parameters(), 3e-4, betas=(0.5, 0.999)))
    theirs, ours, noisy_w = (copy.deepcopy(model) for _ in range(3))
    norms = _their_pcd_nb201_steps(theirs, batches, t, 1.0, *optimisers(theirs))
    assert min(norms) > 1.0
    for net, noise_in_w in ((ours, False), (noisy_w, True)):
        w_opt, a_opt = optimisers(net)
        f_a, f_w = cfg.step_forwards(_Run(net, t), t, 1 / t)
        f_w = f_a if noise_in_w else f_w  # noisy_w: the sn-softmax in both steps
        for x, y, xv, yv in batches:  # their order: w step, then α step
            w_step(f_w, x, y, net.weight_parameters(), w_opt, 1.0, net.arch_parameters())
            alpha_step(f_a, xv, yv, net.arch_parameters(), a_opt)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert not all(torch.allclose(p, q, rtol=1e-10, atol=1e-12)
                   for p, q in zip(noisy_w.weight_parameters(), theirs.weight_parameters()))


# ---------------------------------------------------------------------------------------- end to end

def tiny(shared_data: Path, out: Path, **kw) -> dict:
    return dict(space="nb201", dataset="cifar10", data_dir=str(shared_data), limit_train=128, C=8, N=1,
                epochs=2, batch_size=32, eval_images=64, out=str(out), progress=False, device="cpu", **kw)


_DARTS: dict[str, dict] = {}


@pytest.fixture
def darts_result(shared_data, tmp_path_factory) -> dict:
    """Plain DARTS (common.baseline) on the tiny config, run once per session."""
    from common.baseline import DartsConfig
    from common.baseline import search as darts_search
    if "result" not in _DARTS:
        cfg = DartsConfig(**tiny(shared_data, tmp_path_factory.mktemp("darts")))
        cfg.resolve()
        _DARTS["result"] = darts_search(cfg)
    return _DARTS["result"]


@pytest.mark.slow
def test_no_schedule_normal_softmax_is_exactly_plain_darts(shared_data, tmp_path, darts_result):
    cfg = EDDConfig(**tiny(shared_data, tmp_path / "edd"), schedule="none", softmax="normal")
    cfg.resolve()
    result = search(cfg)
    assert result["alphas"] == darts_result["alphas"]  # t = 1 fixed: softmax(α/1) is DARTS, bit for bit
    assert result["final"]["temperature"] == 1.0


@pytest.mark.slow
def test_smoke_subprocess_entropy_below_darts_and_resume(shared_data, nb201_csv, tmp_path, darts_result):
    out = tmp_path / "run"
    args = tiny(shared_data, out)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in args.items() if k != "progress"]
    proc = subprocess.run([sys.executable, "edd_darts.py", *argv, "--no-progress", f"--nb201={nb201_csv}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert set(result["nb201"]) >= {"cifar10_test", "cifar100_test", "imagenet16_test"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    # Alg. 2 replayed from the logged entropies: Eq. 14 then Eq. 15
    d, t0_exp = 0.0, ets_forward(1.0, E_A)
    assert records[0]["temperature"] == 1.0
    for k, r in enumerate(records, start=1):
        assert r["mean_entropy"] == pytest.approx(r["op_entropy_mean"], rel=1e-5)  # Eq. 13 on the used β_t
        d = edd_decay(d, r["mean_entropy"], 0.06, 0.5)
        assert r["d_exp"] == pytest.approx(d, rel=1e-12) and r["k"] == k
        assert r["next_temperature"] == pytest.approx(edd_temperature(E_A, t0_exp, k, d), rel=1e-12)
    assert records[1]["temperature"] == records[0]["next_temperature"] < 0.05
    # the paper's central claim in miniature: tempered weights far sparser than DARTS's softmax(α)
    darts_h = darts_result["final"]["op_entropy_mean"]
    assert records[-1]["op_entropy_mean"] < darts_h - 1e-3, (records[-1]["op_entropy_mean"], darts_h)
    # resume: stopped after epoch one (NaN fed at epoch two's first step), then continued — same α and
    # temperatures as the straight run
    cfg1 = EDDConfig(**{**args, "out": str(tmp_path / "resumed"), "debug_nan_step": records[0]["step"]})
    cfg1.resolve()
    with pytest.raises(NonFiniteLoss):
        search(cfg1)
    cfg2 = EDDConfig(**{**args, "out": str(tmp_path / "resumed"), "resume": True})
    cfg2.resolve()
    resumed = search(cfg2)
    assert resumed["alphas"] == result["alphas"]
    assert resumed["final"]["temperature"] == records[-1]["temperature"]
    assert resumed["temperature"] == result["temperature"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    dict(backbone="gdas", epochs=3),  # ETS-GDAS: τ follows the ETS list 10 → 0.1
    dict(space="darts", N=3, C=4, partial_channels=4, epochs=1, clip_alpha=1.0, st_const=True),  # EDD-PC-DARTS
])
def test_backbones_and_spaces_run(shared_data, tmp_path, extra):
    args = {**tiny(shared_data, tmp_path / "r"), "limit_train": 32, "batch_size": 16, "C": 4, **extra}
    cfg = EDDConfig(**args)
    cfg.resolve()
    result = search(cfg)
    assert math.isfinite(result["final"]["temperature"]) and math.isfinite(result["final"]["train_loss"])
    if cfg.backbone == "gdas":
        records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
        assert [r["temperature"] for r in records] == pytest.approx(ets_temperatures(E_A, 10.0, 0.1, 2), rel=1e-12)
        assert records[0]["op_entropy_mean"] == pytest.approx(records[0]["entropy_mean"])  # softmax(α)
    else:
        assert len(result["genotype"]["normal"]) == 8 and result["param_count"] > 0
        assert result["final"]["s"] == pytest.approx(1 / result["final"]["temperature"])


def test_authors_docstring_names_the_flags_of_their_darts_space_recipe():
    """authors/edd.py's DARTS-space paragraph: its flags are the recipe's values, and each "off at t = 1" /
    "t ≠ 1" of the sn noise names --sn-unit-off (not --sn-cells, which picks the cell kinds)."""
    import re

    import authors.edd
    from common.config import parse_config
    doc = authors.edd.__doc__
    clauses = re.findall(r"(?:off at t = 1|t ≠ 1)[^`;]*`([^`]+)`", doc)
    assert len(clauses) >= 3 and all("--sn-unit-off" in c.split() for c in clauses), clauses
    darts = doc[doc.index("DARTS space (PCDEDD-DARTS"):doc.index("S1–S4 (")]
    argv = [a for span in re.findall(r"`(--[^`]+)`", darts) if not span.startswith("--space")
            for a in span.split()]
    assert "--sn-unit-off" in argv and "--sn-cells" in argv
    base = ["--recipe", "authors", "--space", "darts"]
    assert parse_config(EDDConfig, base + argv) == parse_config(EDDConfig, base)

