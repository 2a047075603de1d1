"""AER-DARTS: entropy vs numpy and finite differences, the λ schedule, the second-order step with the
regulariser vs exact autograd, GDAS hard sampling, λ ≡ 0 = plain DARTS, smoke runs of every backbone."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.nn import functional as F

import aer_darts
import authors.aer as authors_aer
from aer_darts import (
    AERConfig,
    aer_coefficient,
    architecture_entropy,
    lam_at,
    parse_config,
    remaining_entropy,
    search,
)
from common.baseline import DartsConfig
from common.baseline import search as darts_search
from common.run import SearchRun
from common.sampling import gdas_weights, gumbel_noise, gumbel_softmax_hard, linear_tau
from common.search import softmax_weights, unrolled_alpha_step
from common.spaces import SearchSpace
from common.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]
finite = st.floats(-20, 20, allow_nan=False, width=64)


def _np_entropy(a: np.ndarray, drop: int | None = None) -> float:
    """Direct numpy H̄: mean over rows of −Σ p log₂ p, p = exp(a)/Σ exp(a)."""
    if drop is not None:
        a = np.delete(a, drop, axis=1)
    e = np.exp(a - a.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    return float(np.mean(-np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=1)))


# ----------------------------------------------------------------------------- architecture_entropy

@pytest.mark.numerics
@given(st.integers(1, 14), st.integers(2, 8), st.data())
def test_entropy_matches_numpy(E: int, M: int, data: st.DataObject) -> None:
    a = data.draw(arrays(np.float64, (E, M), elements=finite))
    drop = data.draw(st.none() | st.integers(0, M - 1)) if M > 2 else None
    got = architecture_entropy(torch.from_numpy(a), drop).item()
    assert got == pytest.approx(_np_entropy(a, drop), abs=1e-12)
    assert -1e-12 <= got <= math.log2(M - (drop is not None)) + 1e-12


@pytest.mark.numerics
@given(arrays(np.float64, (5, 5), elements=finite), arrays(np.float64, (3, 5), elements=finite))
def test_entropy_pools_the_edges_of_all_cell_kinds(a: np.ndarray, b: np.ndarray) -> None:
    """Both cells: the mean over all 8 edges (not the mean of the two cells' means)."""
    got = architecture_entropy({"normal": torch.from_numpy(a), "reduce": torch.from_numpy(b)}).item()
    assert got == pytest.approx(_np_entropy(np.concatenate([a, b])), abs=1e-12)


@pytest.mark.numerics
@given(st.integers(1, 6), st.integers(3, 8), st.data())
def test_entropy_drop_is_renormalised_softmax(E: int, M: int, data: st.DataObject) -> None:
    """Dropping `none` = softmax(α) with that column removed and the rest renormalised (authors' code)."""
    a = torch.from_numpy(data.draw(arrays(np.float64, (E, M), elements=st.floats(-5, 5, width=64))))
    p = F.softmax(a, -1)[:, 1:]
    p = p / p.sum(-1, keepdim=True)
    direct = (-(p * torch.log2(p)).sum(-1)).mean()
    assert architecture_entropy(a, drop=0).item() == pytest.approx(direct.item(), abs=1e-12)


@pytest.mark.numerics
def test_entropy_gradient_matches_finite_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    for drop in (None, 0, 3):
        a = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, d=drop: architecture_entropy(x, d), (a,), eps=1e-6, atol=1e-8)
    two = (torch.randn(4, 8, dtype=torch.float64, generator=gen, requires_grad=True),
           torch.randn(4, 8, dtype=torch.float64, generator=gen, requires_grad=True))
    assert torch.autograd.gradcheck(lambda n, r: architecture_entropy({"normal": n, "reduce": r}, 0), two)


@pytest.mark.numerics
@pytest.mark.parametrize("M", [2, 5, 8])
def test_entropy_extremes(M: int) -> None:
    uniform = torch.full((6, M), 0.37, dtype=torch.float64, requires_grad=True)
    assert architecture_entropy(uniform).item() == pytest.approx(math.log2(M), abs=1e-12)
    assert architecture_entropy(uniform, drop=0).item() == pytest.approx(math.log2(M - 1), abs=1e-12)
    (g,) = torch.autograd.grad(architecture_entropy(uniform), uniform)
    assert g.abs().max() < 1e-12  # the maximum is a stationary point
    one_hot = (1e3 * F.one_hot(torch.arange(6) % M, M).double()).requires_grad_()
    assert architecture_entropy(one_hot).item() == 0.0
    (g,) = torch.autograd.grad(architecture_entropy(one_hot), one_hot)
    assert torch.isfinite(g).all()  # no NaN from 0·log 0


@pytest.mark.parametrize("M", [5, 7])
def test_authors_log_epsilon_moves_entropy_by_less_than_the_documented_bound(M: int) -> None:
    """Their H = −Σ p log₂(p + 1e-9) is below the exact H by less than M·1e-9/ln 2 bits, and by nearly that
    at uniform α: authors/aer.py states that bound (7 ops: 1.0099e-8, more than 1e-8; 5 ops: 7.2135e-9)."""
    bound = M * 1e-9 / math.log(2)
    gen = torch.Generator().manual_seed(0)
    a = torch.cat([torch.randn(500, M, generator=gen, dtype=torch.float64) * s for s in (0.1, 1.0, 10.0)])
    a = torch.cat([a, torch.zeros(1, M, dtype=torch.float64)])  # the last edge uniform
    p = F.softmax(a, -1)
    theirs = -(p * torch.log2(p + 1e-9)).sum(-1)  # (E,), their entropy(c) per edge
    gap = torch.stack([architecture_entropy(row) for row in a]) - theirs  # (E,) exact H minus theirs
    assert (gap >= -1e-14).all() and gap.max() < bound + 1e-14  # 1e-14: float64 rounding of H ≈ 2.8 bits
    assert gap[-1] > bound * (1 - 1e-6)  # the bound is attained in the limit: uniform α is within 1e-6 of it
    if M == 7:
        assert gap[-1] > 1e-8  # so "< 1e-8 bits" would be wrong for the DARTS space's 7 ops
    stated = f"{bound:.4e}".replace("e-0", "e-")  # 1.0099e-8, 7.2135e-9
    assert f"{stated} for " in authors_aer.__doc__.replace("\n", " ")


def test_the_arch_entropy_hook_is_the_paper_and_the_authors_override_is_their_column_0() -> None:
    """The H̄ the α step regularises (AERConfig.arch_entropy): the method file's is the paper's on every
    backbone; authors/aer.py's differs only for `--backbone pdarts --entropy-ops column0`."""
    ops = (("none", "skip_connect", "sep_conv_3x3"),) * 7 + (("skip_connect", "sep_conv_3x3", "dil_conv_3x3"),) * 7
    space = SearchSpace("t", "darts", {"normal": ops, "reduce": ops})  # P-DARTS after a pruning
    a = torch.randn(14, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    alphas = {"normal": a, "reduce": a.flip(0)}
    paper, column0 = remaining_entropy(alphas, space), architecture_entropy(alphas, drop=0)
    assert abs(paper - column0) > 0.05  # the two differ on these α
    for backbone, drop_none, want in [("pdarts", True, paper), ("darts-v1", True, column0),
                                      ("darts-v1", False, architecture_entropy(alphas))]:
        cfg = aer_darts.AERConfig(backbone=backbone, drop_none=drop_none)
        assert torch.equal(cfg.arch_entropy(alphas, space), want) and not hasattr(cfg, "entropy_ops")
        for entropy_ops in ("remaining", "column0"):
            authors = authors_aer.AERConfig(backbone=backbone, drop_none=drop_none, entropy_ops=entropy_ops)
            quirk = backbone == "pdarts" and entropy_ops == "column0"
            assert torch.equal(authors.arch_entropy(alphas, space), column0 if quirk else want)
    cfg = parse_config(AERConfig, ["--backbone", "pdarts", "--space", "darts", "--recipe", "authors"])
    assert type(cfg) is authors_aer.AERConfig and torch.equal(cfg.arch_entropy(alphas, space), column0)


# ----------------------------------------------------------------------------- aer_coefficient

@pytest.mark.numerics
@pytest.mark.parametrize("E", [1, 2, 7, 50, 250])
@pytest.mark.parametrize("lam", [0.2, 0.5, 1.0])
def test_coefficient_schedule(E: int, lam: float) -> None:
    assert aer_coefficient(0, E, -lam, lam) == -lam
    assert aer_coefficient(E, E, -lam, lam) == pytest.approx(lam, abs=1e-15)
    assert aer_coefficient(E / 2, E, -lam, lam) == pytest.approx(0.0, abs=1e-15)  # zero crossing at E/2
    values = [aer_coefficient(e, E, -lam, lam) for e in range(E + 1)]
    assert all(b > a for a, b in zip(values, values[1:]))  # strictly increasing
    for e in range(E + 1):  # symmetric: λ(E − e) = −λ(e)
        assert aer_coefficient(E - e, E, -lam, lam) == pytest.approx(-values[e], abs=1e-15)


@pytest.mark.numerics
def test_coefficient_closed_form_and_authors_formula() -> None:
    """λ(e) = λ_neg + (λ_pos − λ_neg)(1 − cos(πe/E))/2 = the authors' `0.2 + (−0.4)(1 + cos(πe/E))/2`."""
    for e in range(50):
        authors = 0.2 + (-0.2 - 0.2) * (1 + math.cos(math.pi * e / 50)) / 2
        assert aer_coefficient(e, 50) == pytest.approx(authors, abs=1e-15)
    assert aer_coefficient(25, 50) == pytest.approx(0.0, abs=1e-15)
    assert aer_coefficient(10, 40, -1.0, 1.0) == pytest.approx(-1 + 2 * (1 - math.cos(math.pi / 4)) / 2)
    assert aer_coefficient(3, 9, 0.0, 0.0) == 0.0 and aer_coefficient(3, 9, 0.2, 0.2) == 0.2  # constants


@pytest.mark.numerics
def test_coefficient_warmup_restarts_the_cosine() -> None:
    """PC-DARTS-AER: λ = 0 for the 15 warm-up epochs, then the cosine over the remaining 35."""
    assert [aer_coefficient(e, 50, warmup=15) for e in range(15)] == [0.0] * 15
    for e in range(15, 50):
        authors = 0.2 + (-0.2 - 0.2) * (1 + math.cos(math.pi * (e - 15) / (50 - 15))) / 2
        assert aer_coefficient(e, 50, warmup=15) == pytest.approx(authors, abs=1e-15)


@pytest.mark.numerics
def test_lam_at_constant_and_warmup() -> None:
    cfg = parse_config(AERConfig, ["--lam", "0.2", "--warmup", "2", "--epochs", "6"])
    assert [lam_at(e, cfg) for e in range(6)] == [0.0, 0.0, 0.2, 0.2, 0.2, 0.2]
    cfg = parse_config(AERConfig, ["--epochs", "4"])
    assert [lam_at(e, cfg) for e in range(4)] == [aer_coefficient(e, 4) for e in range(4)]


# ----------------------------------------------------------------------------- config

def test_config_defaults_depend_on_backbone_space_and_partial_channels() -> None:
    cfg = parse_config(AERConfig, [])
    assert (cfg.backbone, cfg.epochs, cfg.warmup, cfg.drop_none) == ("darts-v1", 50, 0, False)
    assert parse_config(AERConfig, ["--backbone", "gdas"]).epochs == 250
    assert parse_config(AERConfig, ["--backbone", "gdas", "--epochs", "3"]).epochs == 3
    cfg = parse_config(AERConfig, ["--space", "darts", "--partial-channels", "4"])
    assert (cfg.warmup, cfg.drop_none) == (15, True)
    assert parse_config(AERConfig, ["--space", "s2"]).drop_none is False  # no `none` op in S2
    assert parse_config(AERConfig, ["--space", "s3"]).drop_none is True


@pytest.mark.parametrize("argv", [["--tau-min", "0"], ["--tau-min", "2", "--tau-max", "1"],
                                  ["--warmup", "-1"], ["--epochs", "3", "--warmup", "4"],
                                  ["--space", "s2", "--drop-none"]])
def test_config_rejects_bad_values(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(AERConfig, argv)
    assert exc.value.code == 2


# ----------------------------------------------------------------------------- second-order step

def _smooth(model: Supernet) -> Supernet:
    """ReLU → SiLU: finite differences are O(ε²) only on a smooth function (a ReLU net has kinks that a
    perturbation of norm 0.01 crosses, and its finite-difference Hessian is then far from autograd's)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.SiLU())
    return model


@pytest.mark.numerics
def test_unrolled_step_with_regulariser_matches_exact_gradient() -> None:
    """DARTS-V2 + AER: ∇α of L_val(w − ξ(μ·buf + ∇w L_train(w, α) + wd·w), α) + λH̄(α), by double backward,
    equals the finite-difference Hessian-vector step of common.search up to O(ε²)."""
    torch.manual_seed(0)
    model = _smooth(Supernet("nb201", C=4, N=1).double())
    alpha = model.alphas["normal"]
    with torch.no_grad():
        alpha.copy_(torch.randn(6, 5, dtype=torch.float64))  # away from uniform, where ∇H̄ = 0
    names, w_params = zip(*[(n, p) for n, p in model.named_parameters() if not n.startswith("alphas")])
    w_params = list(w_params)
    x_t, x_v = torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randn(8, 3, 8, 8, dtype=torch.float64)
    y_t, y_v = torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))
    xi, lam, mu, wd = 0.5, 0.3, 0.9, 5e-4
    w_opt = torch.optim.SGD(w_params, lr=xi, momentum=mu, weight_decay=wd)
    for p in w_params:
        w_opt.state[p]["momentum_buffer"] = 0.1 * torch.randn_like(p)
    a_opt = torch.optim.SGD([alpha], lr=0.0)  # lr 0: the step leaves α alone and p.grad can be read
    forward = lambda x: model(x, softmax_weights(model.alphas))
    reg = lambda: lam * architecture_entropy(model.alphas)
    w0, a0 = [p.detach().clone() for p in w_params], alpha.detach().clone()

    def unrolled(reg, eps_scale=0.01):
        unrolled_alpha_step(forward, x_t, y_t, x_v, y_v, w_params, [alpha], w_opt, a_opt, xi=xi, reg=reg,
                            eps_scale=eps_scale)
        return alpha.grad.clone()

    got = unrolled(reg)
    assert torch.equal(alpha, a0) and all(torch.equal(p, q) for p, q in zip(w_params, w0))  # w restored

    def unrolled_objective(w_prime):
        logits = torch.func.functional_call(model, dict(zip(names, w_prime)), (x_v, softmax_weights(model.alphas)))
        return F.cross_entropy(logits, y_v) + lam * architecture_entropy(alpha)  # Eq. 4, unrolled

    # exact: w' as a differentiable function of α (double backward through ∇w L_train)
    g = torch.autograd.grad(F.cross_entropy(forward(x_t), y_t), w_params, create_graph=True)
    w_prime = [p.detach() - xi * (mu * w_opt.state[p]["momentum_buffer"] + gp + wd * p.detach())
               for p, gp in zip(w_params, g)]
    (exact,) = torch.autograd.grad(unrolled_objective(w_prime), alpha)
    rel = lambda a: ((a - exact).norm() / exact.norm()).item()
    assert rel(got) < 1e-2, rel(got)  # measured 1.8e-3 at DARTS's ε = 0.01/‖∇w' L_val‖
    fine = unrolled(reg, eps_scale=1e-3)
    assert rel(fine) < 1e-4 and rel(fine) < rel(got) / 30  # the error is O(ε²): 1.8e-5 at ε/10
    # the test can fail: dropping the regulariser or the second-order term is far off
    no_reg = unrolled(None)
    assert rel(no_reg) > 0.1
    (reg_grad,) = torch.autograd.grad(reg(), alpha)
    assert torch.allclose(got - no_reg, reg_grad, atol=1e-12)  # the regulariser enters additively
    (first_order,) = torch.autograd.grad(unrolled_objective([w.detach() for w in w_prime]), alpha)
    assert rel(first_order) > 0.1


# ----------------------------------------------------------------------------- GDAS sampling

@pytest.mark.numerics
@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_gumbel_hard_forward_is_one_hot_with_straight_through_gradient(tau: float) -> None:
    gen = torch.Generator().manual_seed(1)
    alpha = torch.randn(6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weights, index = gdas_weights({"normal": alpha}, tau, torch.Generator().manual_seed(7))
    w = weights["normal"]
    assert torch.allclose(w, F.one_hot(torch.tensor(index["normal"]), 5).double(), atol=1e-15, rtol=0)
    assert index["normal"] == w.argmax(-1).tolist()
    # gradient = that of the soft sample softmax((α + g)/τ) with the same noise (straight-through)
    g = gumbel_noise(alpha.shape, alpha, torch.Generator().manual_seed(7))
    c = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    (g_hard,) = torch.autograd.grad((c * w).sum(), alpha)
    (g_soft,) = torch.autograd.grad((c * F.softmax((alpha + g) / tau, -1)).sum(), alpha)
    assert torch.allclose(g_hard, g_soft, atol=1e-14)


@pytest.mark.numerics
@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_gumbel_hard_sample_frequency_is_softmax_alpha_for_every_tau(tau: float) -> None:
    """Gumbel-max trick: P(o* = o) = softmax(α)_o, whatever τ (not softmax(α/τ): τ only shapes the
    straight-through gradient)."""
    n = 40_000
    alpha = torch.tensor([1.5, 0.0, -1.0, 0.7, 0.2], dtype=torch.float64)
    _, index = gumbel_softmax_hard(alpha.expand(n, 5), tau, torch.Generator().manual_seed(3))
    freq = torch.bincount(torch.tensor(index), minlength=5).double() / n
    p = F.softmax(alpha, -1)
    sigma = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 5 * sigma).all(), (freq, p)
    if tau != 1.0:
        assert ((freq - F.softmax(alpha / tau, -1)).abs() > 10 * sigma).any()


@pytest.mark.numerics
def test_linear_tau_endpoints() -> None:
    assert linear_tau(0, 250) == 10.0 and linear_tau(249, 250) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- end-to-end runs

def _cfg(shared_data: Path, out: Path, cls=AERConfig, **kw):
    base = dict(space="nb201", dataset="cifar10", data_dir=str(shared_data), limit_train=64, C=4, N=1, epochs=2,
                batch_size=32, out=str(out), progress=False, eval_images=32, device="cpu")
    cfg = cls(**{**base, **kw})
    cfg.resolve()
    return cfg


def _copy(cfg: AERConfig, out: Path, **changes) -> AERConfig:
    new = dataclasses.replace(cfg, out=str(out), **changes)
    new.resolve()
    return new


@pytest.mark.slow
def test_zero_lambda_is_exactly_plain_darts(shared_data: Path, tmp_path: Path) -> None:
    plain = darts_search(_cfg(shared_data, tmp_path / "darts", DartsConfig))["alphas"]
    zero = search(_cfg(shared_data, tmp_path / "zero", lam_neg=0.0, lam_pos=0.0))["alphas"]
    assert zero == plain  # same seed → the identical α trajectory, bit for bit
    aer = search(_cfg(shared_data, tmp_path / "aer", lam=-1.0))["alphas"]
    assert aer != plain  # and the regulariser does change it


def _check_metrics(out: Path, cfg: AERConfig) -> dict:
    result = json.loads((out / "result.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, cfg.epochs + 1))
    assert [r["lam"] for r in records] == pytest.approx([lam_at(e, cfg) for e in range(cfg.epochs)], abs=1e-15)
    alphas = {k: torch.tensor(v) for k, v in result["alphas"].items()}
    drop = 0 if cfg.drop_none else None
    assert records[-1]["arch_entropy"] == pytest.approx(architecture_entropy(alphas, drop).item(), abs=1e-6)
    return {"result": result, "records": records}


@pytest.mark.slow
def test_cli_smoke_darts_v1_with_nb201_lookup(shared_data: Path, nb201_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    argv = ["--data-dir", str(shared_data), "--limit-train", "64", "--C", "4", "--N", "1", "--epochs", "2",
            "--batch-size", "32", "--eval-images", "32", "--nb201", str(nb201_csv), "--out", str(out),
            "--no-progress", "--device", "cpu"]
    proc = subprocess.run([sys.executable, str(ROOT / "aer_darts.py"), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _check_metrics(out, parse_config(AERConfig, argv))
    assert 0 < got["result"]["nb201"]["cifar10_test"] <= 100
    assert json.loads((out / "args.json").read_text())["backbone"] == "darts-v1"


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["darts-v2", "gdas"])
def test_smoke_other_backbones_nb201(backbone: str, shared_data: Path, nb201_csv: Path, tmp_path: Path) -> None:
    cfg = _cfg(shared_data, tmp_path / backbone, backbone=backbone, nb201=str(nb201_csv))
    search(cfg)
    got = _check_metrics(tmp_path / backbone, cfg)
    assert 0 < got["result"]["nb201"]["cifar10_test"] <= 100
    if backbone == "gdas":
        assert [r["tau"] for r in got["records"]] == pytest.approx([linear_tau(e, 2) for e in range(2)])


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["darts-v1", "darts-v2", "gdas"])
def test_smoke_darts_space(backbone: str, shared_data: Path, tmp_path: Path) -> None:
    cfg = _cfg(shared_data, tmp_path / backbone, backbone=backbone, epochs=1, limit_train=8, batch_size=8,
               space="darts", N=3)
    assert cfg.drop_none
    search(cfg)
    got = _check_metrics(tmp_path / backbone, cfg)
    assert set(got["result"]["genotype"]) == {"normal", "normal_concat", "reduce", "reduce_concat"}


@pytest.mark.slow
def test_pc_darts_warmup_trains_w_only(shared_data: Path, tmp_path: Path) -> None:
    """PC-DARTS-AER: during the warm-up α (and the edge-normalisation β) keep their initial values, λ = 0."""
    cfg = _cfg(shared_data, tmp_path / "warm", epochs=1, limit_train=8, batch_size=8, partial_channels=4,
               warmup=1, space="darts", N=3)
    init = SearchRun(_copy(cfg, tmp_path / "init")).model  # same seed → the initial α, β of the run
    init_alphas = {k: a.detach().tolist() for k, a in init.alphas.items()}
    init_betas = [b.detach().clone() for b in init.betas.values()]
    result = search(cfg)
    got = _check_metrics(tmp_path / "warm", cfg)
    assert result["alphas"] == init_alphas
    state = torch.load(tmp_path / "warm" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(state[f"betas.{k}"], b) for k, b in zip(init.betas, init_betas))
    assert got["records"][0]["lam"] == 0.0 and got["records"][0]["warmup"] is True
    moved = search(_copy(cfg, tmp_path / "nowarm", warmup=0))["alphas"]
    assert moved != init_alphas  # without the warm-up the same run does move α
