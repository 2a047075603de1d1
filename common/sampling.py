"""Stochastic relaxations shared by several methods: GDAS hard Gumbel sampling and SNAS soft samples.

GDAS (Dong & Yang, 2019; NB201 code settings, METHODS.md §1): per edge, g ~ Gumbel(0, 1),
soft = softmax((α + g)/τ), the forward runs only o* = argmax soft, weighted by the straight-through
hard one-hot  w = hard − sg(soft) + soft  (value one-hot, gradient of soft). τ falls linearly from
τ_max = 10 to τ_min = 0.1 over the run. SNAS (Xie et al., 2019) uses the soft sample over all ops.

How the edge uses w is the supernet's `gdas_form` (`--gdas-form`; common/supernet.py `MixedOp.mix`), the
official GDAS code's per skeleton (xautodl 1.0.0 models/cell_searchs/search_cells.py): on NB201 (default
"nb201") w_o*·o*(x) + Σ_{o≠o*} w_o, so every entry of w, and through soft all of α's row, gets a gradient
(lines 72-84); on the DARTS skeleton (default "nasnet") w_o*·o*(x) alone, so α's gradient comes through
w_o* only (lines 163-164, 220-232). The values are equal.

By the Gumbel-max trick P(o* = o) = softmax(α)_o for every τ, so softmax(α) is the expectation of the
hard sample (the weights "actually used" on average).

Replicas (--seeds, common/replicas.py): α stacked (S, E, M) and one generator per replica (each holding its
seed's single-run global RNG) draw each replica's noise as its single run does; the sampled ops come back
as the one-hot (S, E, M) the batched forward masks with, not as host lists.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torch.nn import functional as F

Generators = torch.Generator | list[torch.Generator] | None


def gumbel_noise(shape: torch.Size | tuple[int, ...], like: Tensor, generator: Generators = None) -> Tensor:
    """g = −log(E), E ~ Exp(1), resampled where it would be infinite. A list of S generators: shape is
    (S, …) and replica s's slice is drawn from generator s alone (as its single run draws shape[1:])."""
    if isinstance(generator, list):
        return torch.stack([gumbel_noise(shape[1:], like, g) for g in generator])
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    u = u.clamp(torch.finfo(like.dtype).tiny, 1.0 - torch.finfo(like.dtype).eps)
    return -torch.log(-torch.log(u))


def gumbel_softmax_hard(alpha: Tensor, tau: float | Tensor, generator: Generators = None
                        ) -> tuple[Tensor, list[int] | Tensor]:
    """GDAS sample of (E, M) α: straight-through one-hot weights (E, M) and the sampled op per edge.

    With a list of generators (replicas): α (S, E, M), τ a float or (S, 1, 1), and the sample as the
    one-hot (S, E, M) (no host read) in place of the list."""
    soft = F.softmax((alpha + gumbel_noise(alpha.shape, alpha, generator)) / tau, dim=-1)
    index = soft.argmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)  # F.one_hot checks index on host
    return hard - soft.detach() + soft, hard if isinstance(generator, list) else index.tolist()


def gumbel_softmax_soft(alpha: Tensor, tau: float, generator: Generators = None) -> Tensor:
    """SNAS soft sample of (E, M) α: softmax((α + g)/τ) over all ops (a list of generators: α (S, E, M),
    replica s's noise from generator s, as its single run draws it)."""
    return F.softmax((alpha + gumbel_noise(alpha.shape, alpha, generator)) / tau, dim=-1)


def linear_tau(epoch: int, epochs: int, tau_max: float = 10.0, tau_min: float = 0.1) -> float:
    """GDAS's τ: τ_max − (τ_max − τ_min)·epoch/(E − 1), epoch 0-based."""
    return tau_max - (tau_max - tau_min) * epoch / max(epochs - 1, 1)


def gdas_weights(alphas: Mapping[str, Tensor], tau: float | Tensor, generator: Generators = None
                 ) -> tuple[dict[str, Tensor], dict[str, list[int] | Tensor]]:
    """GDAS op weights for every cell kind: straight-through one-hot (E, M) and the sampled op per edge
    (replicas, a list of generators: (S, E, M) weights and one-hots; see `gumbel_softmax_hard`)."""
    samples = {k: gumbel_softmax_hard(a, tau, generator) for k, a in alphas.items()}
    return {k: w for k, (w, _) in samples.items()}, {k: i for k, (_, i) in samples.items()}
