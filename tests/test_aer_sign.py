"""AER's regulariser enters the search loop with the sign of λ(e).

`aer_darts.search` runs three epochs of two steps (λ(e) = −0.2, −0.1, +0.1: both signs) and is compared
with a replay of the same steps from the same initial state and batches, in which the α objective
L_val + λ(e)·H̄(α) is written out here: λ(e) from its closed form, H̄ in bits from its definition (Eq. 3–4).
The replay with the sign flipped must land far from the search, so the comparison can tell the two apart.
Checked by flipping locally: `reg = -lam * …` in aer_darts.search fails both cases, `loss - reg()` in
common.search.alpha_step fails darts-v1. The darts-v2 replay uses `unrolled_alpha_step` itself (a flip
inside it is caught by tests/test_aer.py::test_unrolled_step_with_regulariser_matches_exact_gradient).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from aer_darts import AERConfig, search
from common.run import SearchRun
from common.search import unrolled_alpha_step, w_step

LAM_NEG, LAM_POS, EPOCHS = -0.2, 0.2, 3


def lam_closed_form(e: int) -> float:
    """λ(e) = λ_neg + (λ_pos − λ_neg)(1 − cos(πe/E))/2 (Eq. 4; the authors' cosine)."""
    return LAM_NEG + (LAM_POS - LAM_NEG) * (1 - math.cos(math.pi * e / EPOCHS)) / 2


def entropy_bits(alpha: torch.Tensor) -> torch.Tensor:
    """H̄(α) = mean over edges of −Σ_o p_o log₂ p_o, p = softmax(α) (Eq. 3), written from the definition."""
    p = torch.exp(alpha - alpha.max(-1, keepdim=True).values)
    p = p / p.sum(-1, keepdim=True)
    return -(p * torch.log(p) / math.log(2.0)).sum(-1).mean()


def replay(cfg: AERConfig, out: Path, sign: float) -> dict[str, torch.Tensor]:
    """The search's steps from its initial state and batches, with the regulariser sign·λ(e)·H̄(α)."""
    run = SearchRun(dataclasses.replace(cfg, out=str(out)))  # same seed: the search's initial w, α, batches
    model = run.model
    forward = run.forward(lambda: {k: F.softmax(a, -1) for k, a in model.alphas.items()})
    for epoch in run.epochs():
        lam = sign * lam_closed_form(epoch)

        def reg() -> torch.Tensor:
            return lam * entropy_bits(model.alphas["normal"])  # lam is read when called, in this epoch
        for x_t, y_t, x_v, y_v in run.steps():
            if cfg.backbone == "darts-v2":  # α step first, on L_val(w − ξ∇w L_train) + λH̄ (Alg. 1)
                unrolled_alpha_step(forward, x_t, y_t, x_v, y_v, run.w_params, run.a_params, run.w_optimizer,
                                    run.a_optimizer, xi=run.w_lr, reg=reg)
            w_step(forward, x_t, y_t, run.w_params, run.w_optimizer, cfg.grad_clip)
            if cfg.backbone == "darts-v1":  # ∇α [L_val(w, α) + λ(e)·H̄(α)], then Adam
                objective = F.cross_entropy(forward(x_v), y_v) + reg()
                grads = torch.autograd.grad(objective, run.a_params)
                for p, g in zip(run.a_params, grads):
                    p.grad = g
                run.a_optimizer.step()
    return {k: a.detach().clone() for k, a in model.alphas.items()}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["darts-v1", "darts-v2"])
def test_search_loop_applies_lambda_with_its_sign(backbone: str, shared_data: Path, tmp_path: Path) -> None:
    cfg = AERConfig(space="nb201", dataset="cifar10", data_dir=str(shared_data), limit_train=16, C=4, N=1,
                    epochs=EPOCHS, batch_size=16, progress=False, eval_images=16, device="cpu",
                    backbone=backbone, lam_neg=LAM_NEG, lam_pos=LAM_POS, out=str(tmp_path / "search"))
    cfg.resolve()
    assert [lam_closed_form(e) for e in range(EPOCHS)] == pytest.approx([-0.2, -0.1, 0.1])
    got = torch.tensor(search(cfg)["alphas"]["normal"])
    same = replay(cfg, tmp_path / "same", +1.0)["normal"]
    flipped = replay(cfg, tmp_path / "flipped", -1.0)["normal"]
    err, gap = (got - same).abs().max().item(), (got - flipped).abs().max().item()
    assert err < 2e-9, err  # float32 rounding: measured 2.3e-10 (~2 ulp of α)
    assert gap > 100 * 2e-9, gap  # the flipped sign lands far outside that tolerance: measured 2.6e-6
