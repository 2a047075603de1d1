"""Bilevel building blocks: w step clips only w; the second-order α step equals exact double backward."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from common.search import alpha_step, cosine_lr, edge_entropy, entropy_stats, unrolled_alpha_step, w_step
from common.supernet import Supernet


def _tiny(seed: int = 0) -> tuple[Supernet, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = Supernet("nb201", C=4, N=1).double()
    with torch.no_grad():
        model.alphas["normal"].normal_(0, 0.5)
    x_t, x_v = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randn(6, 3, 8, 8, dtype=torch.float64)
    y_t, y_v = torch.randint(10, (6,)), torch.randint(10, (6,))
    return model, x_t, y_t, x_v, y_v


def _fwd(model: Supernet):
    return lambda x: model(x, {"normal": F.softmax(model.alphas["normal"], -1)})


def test_w_step_clips_only_network_weights() -> None:
    model, x, y, _, _ = _tiny()
    w_params, alpha = model.weight_parameters(), model.alphas["normal"]
    before = [p.detach().clone() for p in w_params]
    opt = torch.optim.SGD(w_params, lr=1.0)
    w_step(_fwd(model), x, y, w_params, opt, grad_clip=1e-3)
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(w_params, before)))
    assert step == pytest.approx(1e-3, rel=1e-6)  # lr 1 · gradient clipped to norm 1e-3
    assert alpha.grad is None  # the w step computes no α gradient


def _exact_unrolled_grad(model, x_t, y_t, x_v, y_v, xi, mu, wd, bufs, reg):
    """∇α of L_val(w − ξ(μ·buf + ∇w L_train(w, α) + wd·w), α) + reg(α) by exact double backward."""
    w = model.weight_parameters()
    alpha = model.alphas["normal"]
    l_train = F.cross_entropy(_fwd(model)(x_t), y_t)
    g = torch.autograd.grad(l_train, w, create_graph=True)
    w_prime = [p - xi * (mu * b + gp + wd * p) for p, gp, b in zip(w, g, bufs)]
    names = [n for n, p in model.named_parameters() if not n.startswith(("alphas", "betas"))]
    params = dict(zip(names, w_prime)) | {"alphas.normal": alpha}
    logits = torch.func.functional_call(model, params, (x_v, {"normal": F.softmax(alpha, -1)}))
    loss = F.cross_entropy(logits, y_v) + (reg() if reg else 0.0)
    return torch.autograd.grad(loss, alpha)[0]


@pytest.mark.numerics
@pytest.mark.parametrize("with_reg", [False, True])
def test_unrolled_step_equals_exact_double_backward(with_reg: bool) -> None:
    model, x_t, y_t, x_v, y_v = _tiny()
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    xi, mu, wd = 0.05, 0.9, 3e-4
    w_opt = torch.optim.SGD(w_params, lr=xi, momentum=mu, weight_decay=wd)
    w_step(_fwd(model), x_t, y_t, w_params, w_opt, 5.0)  # fills SGD's momentum buffers
    bufs = [w_opt.state[p]["momentum_buffer"] for p in w_params]
    reg = (lambda: 0.7 * (F.softmax(model.alphas["normal"], -1) ** 2).sum()) if with_reg else None
    exact = _exact_unrolled_grad(model, x_t, y_t, x_v, y_v, xi, mu, wd, bufs, reg)
    w_before = [p.detach().clone() for p in w_params]
    a_opt = torch.optim.SGD(a_params, lr=0.0)  # lr 0: read the gradient the step produced
    # DARTS's ε = 0.01/‖∇w'‖ is a large step for this tiny net (FD error ~90% here); a small ε checks
    # the formula itself — the 2ε denominator included (ε·‖∇w'‖ = 1e-5, so `/2*ε` would be off by 1e10).
    unrolled_alpha_step(_fwd(model), x_t, y_t, x_v, y_v, w_params, a_params, w_opt, a_opt, xi, reg,
                        eps_scale=1e-5)
    approx = model.alphas["normal"].grad
    assert all(torch.equal(p, b) for p, b in zip(w_params, w_before))  # w restored exactly
    err = (approx - exact).norm() / exact.norm()
    assert err < 1e-6, f"relative error {err:.2e}"
    # the second-order term matters here (so a wrong HVP denominator would fail the check above)
    first_order = torch.autograd.grad(F.cross_entropy(_fwd(model)(x_v), y_v) + (reg() if reg else 0.0),
                                      model.alphas["normal"])[0]
    assert (first_order - exact).norm() / exact.norm() > 1e-3


@pytest.mark.numerics
def test_alpha_step_first_order_gradient() -> None:
    model, _, _, x_v, y_v = _tiny()
    a_params = model.arch_parameters()
    reg = lambda: 0.3 * model.alphas["normal"].sum()
    expected = torch.autograd.grad(F.cross_entropy(_fwd(model)(x_v), y_v) + reg(), model.alphas["normal"])[0]
    alpha_step(_fwd(model), x_v, y_v, a_params, torch.optim.SGD(a_params, lr=0.0), reg)
    assert torch.allclose(model.alphas["normal"].grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.numerics
@given(st.integers(2, 9), st.integers(1, 6), st.integers(0, 1000))
def test_edge_entropy_closed_forms(M: int, E: int, seed: int) -> None:
    p = torch.softmax(torch.randn(E, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), -1)
    expected = -(p * p.log()).sum(-1)
    assert torch.allclose(edge_entropy(p), expected)
    assert torch.allclose(edge_entropy(torch.full((E, M), 1.0 / M, dtype=torch.float64)),
                          torch.full((E,), math.log(M), dtype=torch.float64))
    assert torch.equal(edge_entropy(torch.eye(M, dtype=torch.float64)), torch.zeros(M, dtype=torch.float64))
    mean, total = entropy_stats({"normal": p, "reduce": p})
    assert mean == pytest.approx(expected.mean().item()) and total == pytest.approx(2 * expected.sum().item())


def test_cosine_lr_matches_torch_scheduler() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.025)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50, eta_min=0.001)
    for epoch in range(50):
        assert cosine_lr(epoch, 50, 0.025, 0.001) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()
