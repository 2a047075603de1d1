"""SA-/SAC-DARTS (sa_darts.py): Eq. 7 against its closed forms and finite differences, the partial-channel
edge normalisation, the reduction to plain DARTS, and smoke runs on the real CIFAR-10 subset."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from common.config import parse_config
from common.run import NonFiniteLoss
from sa_darts import (
    SAConfig,
    add_skip_bias,
    alpha_stats,
    beta_loss,
    sa_coefficient,
    sa_loss,
    search,
    skip_vs_conv,
    top2_gap,
)

ROOT = Path(__file__).resolve().parents[1]
f64 = torch.float64

finite = st.floats(-5.0, 5.0, allow_nan=False, width=64)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 8))


@st.composite
def alpha_tensors(draw, elements=finite) -> torch.Tensor:
    E, M = draw(shapes)
    return torch.tensor(draw(st.lists(elements, min_size=E * M, max_size=E * M)), dtype=f64).reshape(E, M)


def eq7_reference(values: list[float], lam: float, nu: float, mu: float) -> float:
    """Eq. 7 with Python floats and math.erf, one entry at a time (an independent implementation)."""
    terms = [((1 + nu) * a + (1 - nu) * a * math.erf(mu * (1 - nu) * a)) / 2 for a in values]
    return lam * math.fsum(terms) / len(terms)


# ----------------------------------------------------------------------------- Eq. 7 / Eq. 8

@pytest.mark.numerics
@given(alpha_tensors(), st.floats(0.0, 10.0), st.floats(0.0, 1e3))
def test_nu_one_is_exactly_lambda_mean(alpha, lam, mu):
    """Eq. 8: ν = 1 removes the erf term, L_SA = λ·mean(α) for every μ (bit for bit)."""
    assert sa_loss(alpha, lam, nu=1.0, mu=mu).item() == (lam * alpha.mean()).item()


@pytest.mark.numerics
@given(alpha_tensors(), st.floats(0.0, 10.0), st.floats(-2.0, 3.0))
def test_mu_zero_is_scaled_mean(alpha, lam, nu):
    """μ = 0: erf(0) = 0 so L_SA = λ·(1+ν)/2·mean(α) (Eq. 8 only when ν = 1)."""
    expected = lam * (1 + nu) / 2 * alpha.mean()
    torch.testing.assert_close(sa_loss(alpha, lam, nu=nu, mu=0.0), expected, rtol=1e-12, atol=1e-14)


away_from_zero = st.one_of(st.floats(-5.0, -1e-3), st.floats(1e-3, 5.0))


@pytest.mark.numerics
@given(alpha_tensors(away_from_zero), st.floats(0.0, 0.99))
def test_mu_infinite_is_leaky_relu(alpha, nu):
    """μ → ∞ (1e6): the term becomes max(α, να), leaky ReLU with slope ν."""
    expected = F.leaky_relu(alpha, negative_slope=nu).mean()
    torch.testing.assert_close(sa_loss(alpha, 1.0, nu=nu, mu=1e6), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.numerics
def test_mu_infinite_nu_zero_is_relu():
    alpha = torch.tensor([[-2.0, -0.5, 0.25, 3.0]], dtype=f64)
    assert sa_loss(alpha, 2.0, nu=0.0, mu=1e6).item() == pytest.approx(2.0 * (0.25 + 3.0) / 4, abs=1e-15)


@pytest.mark.numerics
@given(alpha_tensors(), st.floats(0.0, 10.0))
def test_gelu_special_case(alpha, lam):
    """ν = 0, μ = 1/√2: (α + α·erf(α/√2))/2 = α·Φ(α), the exact GELU (Φ from torch.special.ndtr)."""
    expected = lam * (alpha * torch.special.ndtr(alpha)).mean()
    torch.testing.assert_close(sa_loss(alpha, lam, nu=0.0, mu=1 / math.sqrt(2)), expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(sa_loss(alpha, 1.0, nu=0.0, mu=1 / math.sqrt(2)), F.gelu(alpha).mean(),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.numerics
@given(alpha_tensors(), st.floats(0.0, 10.0), st.floats(-2.0, 3.0), st.floats(0.0, 20.0))
def test_value_against_scalar_reference(alpha, lam, nu, mu):
    expected = eq7_reference(alpha.reshape(-1).tolist(), lam, nu, mu)
    assert sa_loss(alpha, lam, nu, mu).item() == pytest.approx(expected, rel=1e-12, abs=1e-13)


@pytest.mark.numerics
@given(alpha_tensors(st.floats(-3.0, 3.0)), st.floats(0.1, 5.0), st.floats(-1.0, 2.0), st.floats(0.0, 5.0))
def test_gradient_against_finite_differences(alpha, lam, nu, mu):
    alpha = alpha.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: sa_loss(a, lam, nu, mu), (alpha,), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.numerics
def test_gradient_of_eq8_is_constant():
    """ν = 1: ∂L_SA/∂α = λ/(N_o·N_e) for every entry, whatever α is."""
    alphas = {"normal": torch.randn(14, 8, dtype=f64, requires_grad=True),
              "reduce": torch.randn(14, 8, dtype=f64, requires_grad=True)}
    grads = torch.autograd.grad(sa_loss(alphas, 3.0), list(alphas.values()))
    for g in grads:
        torch.testing.assert_close(g, torch.full_like(g, 3.0 / 224), rtol=0, atol=1e-17)


@pytest.mark.numerics
@given(st.floats(-2.0, 3.0), st.floats(0.0, 20.0))
def test_both_cells_count_every_entry(nu, mu):
    """On the DARTS skeleton N_o·N_e is every α entry of both cells: dict == concatenation == list."""
    gen = torch.Generator().manual_seed(0)
    alphas = {"normal": torch.randn(14, 8, generator=gen, dtype=f64), "reduce": torch.randn(14, 8, generator=gen, dtype=f64)}
    cat = torch.cat([alphas["normal"], alphas["reduce"]])
    assert sa_loss(alphas, 1.5, nu, mu).item() == sa_loss(cat, 1.5, nu, mu).item()
    assert sa_loss(list(alphas.values()), 1.5, nu, mu).item() == sa_loss(cat, 1.5, nu, mu).item()
    expected = eq7_reference(cat.reshape(-1).tolist(), 1.5, nu, mu)
    assert sa_loss(alphas, 1.5, nu, mu).item() == pytest.approx(expected, rel=1e-12, abs=1e-13)


@pytest.mark.numerics
def test_sa_coefficient():
    assert [sa_coefficient(e) for e in (1, 5, 10, 50)] == [0.2, 1.0, 2.0, 10.0]
    assert sa_coefficient(10, divisor=2.0) == 5.0


# ----------------------------------------------------------------------------- β-DARTS comparator, metrics

@pytest.mark.numerics
@given(alpha_tensors(), st.floats(0.0, 10.0))
def test_beta_loss_value_and_gradient(alpha, lam):
    rows = alpha.tolist()
    lse = [max(r) + math.log(math.fsum(math.exp(x - max(r)) for x in r)) for r in rows]
    assert beta_loss(alpha, lam).item() == pytest.approx(lam * math.fsum(lse) / len(lse), rel=1e-12, abs=1e-13)
    a = alpha.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(beta_loss(a, lam), a)
    torch.testing.assert_close(g, lam * F.softmax(alpha, -1) / alpha.shape[0], rtol=1e-12, atol=1e-14)


@pytest.mark.numerics
def test_measurements():
    w = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0], [0.5, 0.05, 0.05, 0.35, 0.05]], dtype=f64)
    torch.testing.assert_close(top2_gap(w), torch.tensor([0.1, 0.15], dtype=f64))
    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert skip_vs_conv(w, (ops, ops)) == ([0.2, 0.05], [0.4, 0.35])
    assert skip_vs_conv(w[:, :2], (("none", "max_pool_3x3"),) * 2) == ([None, None], [None, None])
    stats = alpha_stats({"normal": torch.tensor([[1.0, 2.0], [3.0, 10.0]])})
    assert stats["alpha_mean"] == 4.0 and stats["alpha_median"] == 2.5
    assert stats["alpha_std"] == pytest.approx(torch.tensor([1.0, 2.0, 3.0, 10.0]).std().item())


@pytest.mark.numerics
def test_skip_bias_gives_the_papers_initial_beta():
    """Fig. 4: α = [0, 0.1, 0, 0, 0] → β = [0.196, 0.216, 0.196, 0.196, 0.196]."""
    from common.spaces import SPACES
    alphas = {"normal": torch.zeros(6, 5, dtype=f64)}
    add_skip_bias(alphas, SPACES["nb201"].edge_ops, 0.1)
    beta = F.softmax(alphas["normal"], -1)
    assert beta[:, 1].round(decimals=3).tolist() == [0.216] * 6  # the paper's three digits
    assert beta[:, [0, 2, 3, 4]].round(decimals=3).unique().tolist() == [0.196]
    assert beta[0, 1].item() == pytest.approx(math.exp(0.1) / (math.exp(0.1) + 4), rel=1e-6)
    s1 = {k: torch.zeros(14, 2, dtype=f64) for k in ("normal", "reduce")}
    add_skip_bias(s1, SPACES["s1"].edge_ops, 0.1)  # S1 edge 12 is [dil3, dil5]: no skip there
    assert s1["normal"][12].tolist() == [0.0, 0.0] and s1["normal"][5].tolist() == [0.0, 0.1]


# ----------------------------------------------------------------------------- SAC: partial channels, γ

@pytest.mark.parametrize("space", ["nb201", "s3"])
def test_sac_k1_with_edge_norm_is_sa_with_gamma_scaled_weights(space):
    """K = 1 with edge normalisation = the plain supernet fed w·γ per edge (the mixed op is linear in w);
    γ is a softmax over each node's incoming edges; SA's gradient reaches α but not the edge weights."""
    from common.supernet import Supernet
    torch.manual_seed(0)
    N = 1 if space == "nb201" else 3  # DARTS skeleton: normal, reduce, reduce
    sac = Supernet(space, C=4, N=N, partial_channels=1, edge_norm=True).double()
    sa = Supernet(space, C=4, N=N, partial_channels=1, edge_norm=False).double()
    sa.load_state_dict({k: v for k, v in sac.state_dict().items() if not k.startswith("betas.")})
    with torch.no_grad():
        for b in sac.betas.values():
            b.copy_(torch.randn_like(b))
    gammas = sac.edge_gammas()
    for g in gammas.values():
        for node in sorted({to for to, _ in sac.space.edges}):
            idx = [e for e, (to, _) in enumerate(sac.space.edges) if to == node]
            assert g[idx].sum().item() == pytest.approx(1.0, abs=1e-12)
    for k, b in sac.betas.items():
        for node in sorted({to for to, _ in sac.space.edges}):
            idx = [e for e, (to, _) in enumerate(sac.space.edges) if to == node]
            torch.testing.assert_close(gammas[k][idx], F.softmax(b[idx], 0))
    x = torch.randn(2, 3, 8, 8, dtype=f64)
    weights = {k: F.softmax(a, -1) for k, a in sac.alphas.items()}
    scaled = {k: w * gammas[k][:, None] for k, w in weights.items()}
    torch.testing.assert_close(sac(x, weights), sa(x, scaled), rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(sa_loss(sac.alphas, 1.0), sac.arch_parameters(), allow_unused=True)
    assert all(g is not None for g in grads[: len(sac.alphas)])
    assert all(g is None for g in grads[len(sac.alphas):])  # SA regularises α, not γ


# ----------------------------------------------------------------------------- configuration

def test_defaults_follow_appendix_6_2():
    cfg = SAConfig(space="nb201")
    cfg.resolve()
    assert (cfg.batch_size, cfg.w_lr, cfg.w_wd, cfg.a_lr, cfg.a_wd, cfg.cutout, cfg.epochs, cfg.warmup) == \
        (64, 0.025, 3e-4, 3e-4, 0.0, 16, 50, 0)
    cfg = SAConfig(space="darts", partial_channels=4)
    cfg.resolve()
    assert (cfg.batch_size, cfg.w_lr, cfg.a_lr, cfg.a_wd) == (256, 0.1, 6e-4, 0.0)
    cfg = SAConfig(space="nb201", reg="beta")
    cfg.resolve()
    assert cfg.a_wd == 1e-3


@pytest.mark.parametrize("flags", [["--tau-min", "-1"], ["--warmup", "50"], ["--lam-divisor", "0"], ["--mu", "-1"]])
def test_bad_flags_exit_2(flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(SAConfig, flags)
    assert exit_.value.code == 2 and "error: --" in capsys.readouterr().err


# ----------------------------------------------------------------------------- searches
# Tiny runs on the real CIFAR-10 subset: 32 images per half, batch 16 → 2 steps per epoch.

def tiny(shared_data: Path, out: Path, **kw) -> SAConfig:
    cfg = SAConfig(**{"space": "nb201", "data_dir": str(shared_data), "limit_train": 32, "C": 4, "N": 1,
                      "epochs": 2, "batch_size": 16, "out": str(out), "progress": False, "eval_images": 32,
                      "device": "cpu", **kw})
    cfg.resolve()
    return cfg


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_reg_none_is_plain_darts(shared_data, tmp_path):
    """--reg none, no PC, DARTS backbone: the α trajectory equals common.baseline's DARTS exactly."""
    from common.baseline import DartsConfig
    from common.baseline import search as darts_search
    shared = dict(w_wd=3e-4, cutout=16, a_wd=1e-3)
    ours = search(tiny(shared_data, tmp_path / "sa", reg="none", **shared))
    cfg = DartsConfig(space="nb201", data_dir=str(shared_data), limit_train=32, C=4, N=1, epochs=2,
                      batch_size=16, out=str(tmp_path / "darts"), progress=False, eval_images=32, device="cpu",
                      **shared)
    cfg.resolve()
    assert ours["alphas"] == darts_search(cfg)["alphas"]


@pytest.mark.slow
def test_snas_resume_continues_the_gumbel_stream(shared_data, tmp_path):
    """SNAS+SA: 2 epochs straight == 1 epoch then --resume (the Gumbel generator state is checkpointed)."""
    straight = search(tiny(shared_data, tmp_path / "a", backbone="snas"))
    with pytest.raises(NonFiniteLoss):  # stopped after epoch 1: NaN fed at epoch 2's first step
        search(tiny(shared_data, tmp_path / "b", backbone="snas", debug_nan_step=metrics(tmp_path / "a")[0]["step"]))
    resumed = search(tiny(shared_data, tmp_path / "b", backbone="snas", resume=True))
    assert straight["alphas"] == resumed["alphas"]
    temps = [r["temperature"] for r in metrics(tmp_path / "a")]
    assert temps == pytest.approx([1.0, 0.03], abs=1e-12)  # linear τ_max → τ_min over the run


@pytest.mark.slow
def test_smoke_sa_nb201_command_line(shared_data, nb201_csv, tmp_path):
    """SA-DARTS from the command line with the NB201 lookup; λ_e = e/5, α wd 0, Eq. 8 logged."""
    cmd = [sys.executable, "sa_darts.py", "--space", "nb201", "--data-dir", str(shared_data), "--limit-train", "32",
           "--C", "4", "--N", "1", "--epochs", "2", "--batch-size", "16", "--eval-images", "32", "--nb201",
           str(nb201_csv), "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    args = json.loads((tmp_path / "args.json").read_text())
    assert args["a_wd"] == 0.0 and args["reg"] == "sa" and args["cutout"] == 16
    records = metrics(tmp_path)
    assert [r["lam"] for r in records] == [0.2, 0.4]
    for r in records:
        assert 0 < r["nb201"]["cifar10_test"] < 100 and r["alpha_std"] > 0
        assert r["top2_gap_min"] <= r["top2_gap_mean"] and "gamma" not in r
        assert r["reg_value"] == pytest.approx(r["lam"] * r["alpha_mean"], rel=1e-4, abs=1e-7)  # ν = 1: Eq. 8
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["nb201"]["cifar10_test"] == records[-1]["nb201"]["cifar10_test"]


@pytest.mark.slow
def test_sac_skip_bias_recovery_moves_alpha_negative(shared_data, nb201_csv, tmp_path):
    """Fig. 4 set-up with SAC (K = 4): +0.1 on skip, one w-only warm-up epoch (α untouched: β_skip = 0.216
    as in the paper), then SA pushes the mean of α down, below zero (Fig. 3b / Claim 1); γ normalised."""
    search(tiny(shared_data, tmp_path, epochs=4, warmup=1, init_skip_bias=0.1, a_lr=0.01, partial_channels=4,
                nb201=str(nb201_csv)))
    records = metrics(tmp_path)
    first = records[0]
    assert first["alpha_frozen"] and not records[1]["alpha_frozen"]
    assert all(abs(b - math.exp(0.1) / (math.exp(0.1) + 4)) < 2e-3 for b in first["beta_skip"]["normal"])
    assert first["alpha_mean"] == pytest.approx(0.1 / 5, abs=1e-3)
    assert first["gamma"]["normal"] == pytest.approx([1.0, 0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])  # β = 0: uniform
    means = [r["alpha_mean"] for r in records]
    assert means[1] < means[0] and means[2] < means[1] and means[3] < means[2] and means[-1] < 0
    gamma = records[-1]["gamma"]["normal"]  # NB201 edges into nodes 1, 2, 3
    assert [sum(gamma[i] for i in idx) for idx in ([0], [1, 2], [3, 4, 5])] == pytest.approx([1.0] * 3)
    assert records[-1]["nb201"] is not None


@pytest.mark.slow
@pytest.mark.parametrize("space,pc", [("darts", 4), ("s1", 1), ("s2", 1), ("s3", 4), ("s4", 1)])
def test_darts_skeleton_spaces_run(shared_data, tmp_path, space, pc):
    result = search(tiny(shared_data, tmp_path, space=space, N=3, epochs=1, limit_train=16, partial_channels=pc,
                         batch_size=16, eval_images=16))
    r = metrics(tmp_path)[-1]
    assert set(r["top2_gap"]) == {"normal", "reduce"} and len(r["top2_gap"]["reduce"]) == 14
    assert r["lam"] == 0.2 and r["reg_value"] == pytest.approx(0.2 * r["alpha_mean"], rel=1e-4, abs=1e-9)
    assert ("gamma" in r) == (pc > 1)
    assert len(result["genotype"]["normal"]) == 8 and result["param_count"] > 0
