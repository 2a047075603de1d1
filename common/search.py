"""Building blocks of a bilevel DARTS step, and the per-epoch measurements.

A *forward* is a closure `x -> logits` that builds the op weights from the current α the way the
method wants (softmax, tempered softmax, sn-softmax, Gumbel sample …) and runs the supernet. Passing
the forward rather than weights lets the second-order step re-evaluate it at perturbed w.

    w_step(...)              one SGD step on w (α fixed), gradient norm clipped on w (or, `official`
                             scope, on w and α.grad as NB201's `clip_grad_norm_(network.parameters())`)
    alpha_step(...)          first-order α step: ∇α [L_val(w, α) + reg(α)]           (DARTS-V1)
    unrolled_alpha_step(...) second-order α step on L_val(w − ξ∇w L_train(w, α), α)    (DARTS-V2)
    ordered_step(order, w, a) the two halves of a bilevel step in `--step-order` (w-first or alpha-first)
    clip_grad_before_step(...) clip a parameter group's gradient norm before each optimiser step (EDD's clip)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

Forward = Callable[[Tensor], Tensor]
Regulariser = Callable[[], Tensor]


def w_step(forward: Forward, x: Tensor, y: Tensor, w_params: list[nn.Parameter],
           w_optimizer: torch.optim.Optimizer, grad_clip: float | None = 5.0,
           norm_extra: list[nn.Parameter] | None = None) -> tuple[Tensor, Tensor]:
    """One step on the network weights w with α fixed. Returns (loss, logits), detached.

    Clip scope `w` (`norm_extra=None`, the default): only w's gradient norm is clipped; α gets nothing.
    Clip scope `official` (`norm_extra` = α): the NB201 scripts' `loss.backward();
    clip_grad_norm_(network.parameters(), 5)`, which every EDD/PCD/SP/AER fork runs. ∇α of the training
    loss is *added* to α.grad, which still holds the last α step's gradient (the w optimiser's zero_grad
    never touches α; the α optimiser zeroes only before its own backward), and the clip norm counts
    that sum; α.grad is rescaled in place with w's and then overwritten by the next α step, so α's own
    update is unaffected — only the factor on w's gradient changes. All in place on the persistent
    α.grad, so it replays under CUDA graphs. At t = 1e-3 that norm is dominated by α's ∝ 1/t gradient.
    Measured (`OMP_NUM_THREADS=1 python benchmarks/clip_norm.py`: NB201 C=16 N=5, softmax(α/t) at
    t = 1e-3, batch 64, CIFAR-10 subset, seed 0, shared 2-core x86-64 CPU): over steps 0–5 the official
    norm was 101, 212, 330, 319, 320, 396 against a w-only norm of 4.0, 3.7, 4.0, 4.3, 4.3, 5.9, so with
    clip 5 the w gradient was scaled by 0.050 → 0.013 (w scope: 1 except 0.85 at step 5).
    """
    logits = forward(x)
    loss = F.cross_entropy(logits, y)
    extra = list(norm_extra or [])
    grads = torch.autograd.grad(loss, w_params + extra, allow_unused=True)
    for p, g in zip(w_params, grads):
        p.grad = g  # ∇w
    for p, g in zip(extra, grads[len(w_params):]):  # official scope: α.grad += ∇α L_train (backward())
        if g is not None:
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)
    if grad_clip:
        clip_grad_norm(w_params + extra, grad_clip)  # official: the norm counts α.grad too
    w_optimizer.step()
    return loss.detach(), logits.detach()


def clip_norms(w_params: list[nn.Parameter], a_params: list[nn.Parameter]) -> tuple[float, float]:
    """(w-only gradient norm, `official` norm over w and α) of the gradients the parameters hold now."""
    w = [p.grad for p in w_params if p.grad is not None]
    a = [p.grad for p in a_params if p.grad is not None]
    return (nn.utils.get_total_norm(w).item(), nn.utils.get_total_norm(w + a).item())


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> None:
    """`nn.utils.clip_grad_norm_`; per replica when `params` are stacked replicas (their `flat_group`'s twin,
    common/replicas.py, which this building block does not import)."""
    if getattr(params[0], "replicas", 0):
        params[0].flat_group.clip_grad_norm(params, max_norm)
    else:
        nn.utils.clip_grad_norm_(params, max_norm)


def clip_grad_before_step(optimizer: torch.optim.Optimizer, params: Iterable[Tensor],
                          max_norm: float) -> RemovableHandle:
    """Clip the gradient norm of `params` right before every `optimizer.step()` (EDD's Table 1 "clip", on α)."""
    params = list(params)
    return optimizer.register_step_pre_hook(lambda *_: clip_grad_norm(params, max_norm))  # per replica with --seeds


def alpha_step(forward: Forward, x: Tensor, y: Tensor, a_params: list[nn.Parameter],
               a_optimizer: torch.optim.Optimizer, reg: Regulariser | None = None) -> tuple[Tensor, Tensor]:
    """First-order α step: minimise L_val(w, α) + reg(α) with w fixed. Returns (L_val, logits), detached."""
    logits = forward(x)
    loss = F.cross_entropy(logits, y)
    total = loss + reg() if reg is not None else loss
    grads = torch.autograd.grad(total, a_params, allow_unused=True)
    for p, g in zip(a_params, grads):  # α.grad = this gradient, written in place once it exists (it stays
        g = torch.zeros_like(p) if g is None else g  # the one tensor a captured CUDA graph and the
        if p.grad is None:                            # `official` clip scope of w_step read)
            p.grad = g
        else:
            p.grad.copy_(g)
    a_optimizer.step()
    return loss.detach(), logits.detach()


STEP_ORDERS = ("w-first", "alpha-first")


def ordered_step(order: str, w: Callable[[], tuple[Tensor, Tensor]],
                 alpha: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One bilevel step from its two halves, in `order` (`--step-order`).

    Args:
        order: "w-first" (w step, then α step: NB201's code) or "alpha-first" (α step, then w step: the
            DARTS code and the authors' DARTS-skeleton forks, `architect.step(...)` before the w step).
        w: runs the w step, returns (train loss, train logits).
        alpha: runs the α step, returns (valid loss, valid logits).

    Returns:
        (train loss, train logits, valid loss, valid logits), whatever the order.
    """
    if order == "alpha-first":
        valid = alpha()
        return (*w(), *valid)
    if order != "w-first":
        raise ValueError(f"step order must be one of {STEP_ORDERS} (got {order!r})")
    train = w()
    return (*train, *alpha())


def virtual_w(w_params: list[nn.Parameter], grads: list[Tensor], w_optimizer: torch.optim.SGD,
              xi: float) -> list[Tensor]:
    """DARTS's one-step unrolled weights w' = w − ξ(μ·buf + ∇w L_train + wd·w) (momentum, no Nesterov)."""
    group = w_optimizer.param_groups[0]
    mu, wd = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
    out = []
    for p, g in zip(w_params, grads):
        buf = w_optimizer.state.get(p, {}).get("momentum_buffer")
        moment = mu * buf if buf is not None else torch.zeros_like(p)
        out.append(p.detach() - xi * (moment + g + wd * p.detach()))
    return out


@torch.no_grad()
def load_values(params: list[nn.Parameter], values: list[Tensor]) -> None:
    for p, v in zip(params, values):
        p.copy_(v)


def unrolled_alpha_step(forward: Forward, x_train: Tensor, y_train: Tensor, x_valid: Tensor, y_valid: Tensor,
                        w_params: list[nn.Parameter], a_params: list[nn.Parameter],
                        w_optimizer: torch.optim.SGD, a_optimizer: torch.optim.Optimizer, xi: float,
                        reg: Regulariser | None = None, eps_scale: float = 0.01) -> tuple[Tensor, Tensor]:
    """Second-order α step (DARTS Eq. 6–8).

    ∇α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) ∇w' L_val(w', α), with the Hessian-vector product by
    central differences:  (∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / (2ε),  w± = w ± ε ∇w' L_val,
    ε = 0.01 / ‖∇w' L_val‖ (DARTS Eq. 8). `reg(α)` (e.g. AER's λ·H̄) is added to the unrolled valid loss.
    Returns (L_val(w', α), logits), detached.
    """
    if getattr(w_params[0], "replicas", 0):  # --seeds: each replica its own ε (common/replicas.py)
        return w_params[0].flat_group.unrolled_alpha_step(forward, x_train, y_train, x_valid, y_valid, w_params,
                                                          a_params, w_optimizer, a_optimizer, xi, reg, eps_scale)
    w0 = [p.detach().clone() for p in w_params]
    # w' = w − ξ ∇w L_train(w, α)  (plus DARTS's momentum and weight-decay terms)
    loss_train = F.cross_entropy(forward(x_train), y_train)
    g_train = torch.autograd.grad(loss_train, w_params)
    load_values(w_params, virtual_w(w_params, list(g_train), w_optimizer, xi))
    # ∇α and ∇w' of L_val(w', α) + reg(α)
    logits = forward(x_valid)
    loss = F.cross_entropy(logits, y_valid)
    total = loss + reg() if reg is not None else loss
    grads = torch.autograd.grad(total, a_params + w_params, allow_unused=True)
    d_alpha = [torch.zeros_like(p) if g is None else g for p, g in zip(a_params, grads[: len(a_params)])]
    d_w = [torch.zeros_like(p) if g is None else g for p, g in zip(w_params, grads[len(a_params):])]
    # Eq. 8: finite-difference Hessian-vector product around the *original* w
    eps = eps_scale / torch.sqrt(sum((g * g).sum() for g in d_w))
    hvp = []
    for sign in (1.0, -1.0):
        load_values(w_params, [w + sign * eps * g for w, g in zip(w0, d_w)])
        l_t = F.cross_entropy(forward(x_train), y_train)
        hvp.append(torch.autograd.grad(l_t, a_params, allow_unused=True))
    load_values(w_params, w0)
    for p, da, gp, gm in zip(a_params, d_alpha, *hvp):
        gp = torch.zeros_like(p) if gp is None else gp
        gm = torch.zeros_like(p) if gm is None else gm
        p.grad = da - xi * (gp - gm) / (2 * eps)  # denominator 2ε (not /2*ε)
    a_optimizer.step()
    return loss.detach(), logits.detach()


# ----------------------------------------------------------------------------- measurements

def edge_entropy(weights: Tensor, eps: float = 0.0) -> Tensor:
    """Natural-log entropy −Σ_o p_o ln p_o of each row of (E, M) op weights (rows summing to 1)."""
    p = weights.clamp_min(eps) if eps else weights
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)


def entropy_stats(weights: Mapping[str, Tensor]) -> tuple[float, float]:
    """(mean over all edges, sum over all edges = IES, SP Eq. 21), natural log, over all cell kinds."""
    h = torch.cat([edge_entropy(w.detach().float()) for w in weights.values()])
    return h.mean().item(), h.sum().item()


def softmax_weights(alphas: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: F.softmax(a, dim=-1) for k, a in alphas.items()}


@torch.no_grad()
def evaluate(forward: Forward, batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """(mean cross-entropy, accuracy %) of `forward` over `batches`."""
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in batches:
        logits = forward(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        n += y.numel()
    return loss_sum / max(n, 1), 100.0 * correct / max(n, 1)


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """PyTorch's CosineAnnealingLR value at `epoch` (T_max = epochs)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2
