"""The vmapped math of many seeds as one search: S replicas' parameters, forward and steps stacked.

    python -m common.baseline --seeds 0 1 2 --space nb201 ...    # 3 searches, one process, one step

The batched run that drives this (data, run directories, the NaN stop, the epoch's commit) is
common/replica_run.py; a method's loop reaches both through the harness (common/harness.py).

Mechanism (measured: docs/seeds.md, docs/speed.md). Every parameter (w, α, PC-DARTS β) is one
tensor with a leading replica axis S, and so is every optimiser state; the forward is `torch.vmap` over
`torch.func.functional_call` of the (fast) supernet, so each operator of a step runs once for all S
replicas: a conv becomes one grouped conv, a batch norm one BN over S·C channels with every replica's own
batch statistics, and the aten operators a step dispatches stay about those of one search.

What stays per replica, and how:
- the objective: the forward returns logits (S·B, classes), so a method's unchanged
  `F.cross_entropy(logits, y)` is the mean over replicas of each replica's loss, and so is a regulariser
  that averages over all α entries or edges (SA's L_SA, β-DARTS, AER's H̄); the optimiser steps S times its
  gradient (`FlatGroup.gather_grad`): every replica gets exactly its own. (A regulariser that *sums* over
  α would need a 1/S.)
- the w gradient-norm clip: `clip_grad_norm_per_replica` (`common.search.clip_grad_norm` reaches it through a
  stacked parameter's `flat_group`; SP's two-pass step too, whose per-replica Σ c_k·CE_k reaches the metrics
  as an (S,) loss).
- S4's noise op: replica s draws from a generator holding its single run's global RNG state, outside the vmap,
  in the single forward's call order and layout (`NoiseSource`); its position is checkpointed as that RNG state.
- optimisers: torch's SGD (momentum, Nesterov, weight decay) and Adam are elementwise, so one optimiser
  over stacked tensors is S independent ones (Adam's step count is shared: replicas step together). It is
  built from the single run's optimiser (`type(opt)(groups, **opt.defaults)`), so it follows its settings,
  and each of its parameter groups is one flat (S, P) tensor (`FlatGroup`): the update, the clip and the
  NaN freeze cost a few operators, not a few per parameter tensor.
- the NaN freeze: a replica whose gradient is non-finite does not move (`FreezeNonFinite`: optimiser step
  hooks restore its parameters and state in that same step). Replicas never mix (grouped convs,
  per-channel BN), so its NaNs cannot reach the others.
- GDAS (aer_darts / edd_darts --backbone gdas): each replica's Gumbel noise from a generator holding its
  single run's global RNG, the sample as one-hots (S, E, M); every op runs for every replica, masked
  (`masked_mix`: the single run's values and gradients, in its --gdas-form), and `SampledOpsStep` leaves an
  unsampled op's weights and momentum buffer as torch's SGD leaves a parameter without gradient. A GDAS
  replica thus costs a DARTS step's arithmetic (all ops), not one op per edge. Not on a space with the noise
  op (`gdas_refusal`).

Capture-safe for --cuda-graphs: per-replica values (norms, clip coefficients, the alive mask) are device
tensors; nothing in the step reads a value on the host (GDAS included: the sample stays one-hots on the
device, from registered generators).
"""
from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from common.rundir import RunError
from common.search import load_values
from common.supernet import DartsCell, Index, MixedOp, NB201Cell, Supernet, Weights, edge_normalisation

# vmap runs adaptive_avg_pool2d's in-place as_strided_ slice by slice (one small op per replica, once per
# forward); torch warns about it on every process's first batched forward
warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented "
                                          "the batching rule for aten::as_strided_")


# ----------------------------------------------------------------------------- per-replica pieces

def _per(v: Tensor, like: Tensor) -> Tensor:
    """(S,) → (S, 1, …, 1), broadcastable against `like` (S, …)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def replica_losses(logits: Tensor, y: Tensor, S: int) -> Tensor:
    """Each replica's mean cross-entropy, (S,), from stacked logits (S·B, classes) and labels (S·B,)."""
    return F.cross_entropy(logits.view(S, -1, logits.shape[-1]).transpose(1, 2), y.view(S, -1),
                           reduction="none").mean(1)


def clip_grad_norm_per_replica(params: list[Tensor], max_norm: float) -> Tensor:
    """`nn.utils.clip_grad_norm_` of each replica: ‖g_s‖ over all `params`, g_s ·= min(1, c/(‖g_s‖ + 1e-6)).

    `params` are stacked (S, …); where they are exactly whole `FlatGroup`s the norms and the scaling are
    a few operators on the groups' (S, P) gradients. Returns the (S,) norms before clipping. No host read.
    """
    groups = list({id(g): g for g in (getattr(p, "flat_group", None) for p in params) if g is not None}.values())
    if groups and {id(p) for p in params} == {id(leaf) for g in groups for leaf in g.leaves}:
        grads = [g.gather_grad() for g in groups]  # (S, P_g) each: the step uses these (clipped) gradients
    else:
        grads = [p.grad.flatten(1) for p in params if p.grad is not None]
    norms = torch.stack([torch.linalg.vector_norm(g, dim=1) for g in grads])  # (groups or params, S)
    total = torch.linalg.vector_norm(norms, dim=0)  # (S,) per-replica total norm
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # torch's formula, per replica
    for g in grads:
        g.mul_(coef[:, None])
    return total


class FlatGroup:
    """Stacked parameters (S, …) stored as views of one (S, P) buffer, the one tensor an optimiser steps.

    The model and the methods see `leaves` (leaf tensors sharing `flat`'s memory; autograd gives each its own
    gradient). The optimiser steps `flat`, whose gradient `gather_grad()` concatenates from the leaves'
    (`attach` does it before each step): the update, the per-replica clip and the NaN freeze are then a few
    operators whatever the number of parameters.

    Args:
        values: the stacked values (S, …) of the parameters, in order.
    """

    def __init__(self, values: list[Tensor]) -> None:
        self.S = values[0].shape[0]
        self.shapes = [tuple(v.shape[1:]) for v in values]
        self.sizes = [v[0].numel() for v in values]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(values))]
        self.flat = nn.Parameter(torch.cat([v.detach().reshape(self.S, -1) for v in values], 1))  # (S, P)
        self.flat.flat_group = self  # type: ignore[attr-defined]
        base = self.flat.detach()
        self.leaves = [base[:, o: o + n].view(self.S, *shape).requires_grad_()
                       for o, n, shape in zip(self.offsets, self.sizes, self.shapes)]
        for leaf in self.leaves:
            leaf.replicas = self.S  # type: ignore[attr-defined]  # read by common.search.clip_grad_norm
            leaf.flat_group = self  # type: ignore[attr-defined]

    def gather_grad(self) -> Tensor:
        """flat.grad = S × the leaves' gradients side by side (S, P), unless already gathered for this step.

        × S: the objective a method builds is the mean over the replicas of theirs (the cross-entropy over
        S·B samples, a regulariser's mean over S·E entries), so S times its gradient is each replica's own.
        """
        if self.flat.grad is None:
            grads = [leaf.grad.flatten(1) if leaf.grad is not None else leaf.new_zeros(self.S, n)
                     for leaf, n in zip(self.leaves, self.sizes)]
            self.flat.grad = torch.cat(grads, 1).mul_(self.S)
            FlatGroup._gathered.append(self)
        return self.flat.grad

    # the per-replica twins of `common.search`'s steps: it calls them through a stacked parameter's
    # `flat_group`, as a building block does not import this module
    @staticmethod
    def clip_grad_norm(params: list[Tensor], max_norm: float) -> Tensor:
        return clip_grad_norm_per_replica(params, max_norm)

    @staticmethod
    def unrolled_alpha_step(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return unrolled_alpha_step_per_replica(*args, **kwargs)

    #: groups whose flat.grad was gathered since the last optimiser step: every step clears them all, so a
    #: group gathered for a clip norm only (α with `--clip-scope official`) is gathered afresh for its own step
    _gathered: list[FlatGroup] = []

    def split(self, t: Tensor, s: int) -> list[Tensor]:
        """Replica s's slice of an (S, P) tensor, as one tensor per parameter (copies)."""
        return [t[s, o: o + n].view(shape).clone() for o, n, shape in zip(self.offsets, self.sizes, self.shapes)]

    def join(self, per_replica: list[list[Tensor]]) -> Tensor:
        """(S, P) from each replica's per-parameter tensors."""
        return torch.stack([torch.cat([t.reshape(-1) for t in ts]) for ts in per_replica])

    @staticmethod
    def attach(optimizer: torch.optim.Optimizer) -> None:
        """Step hooks: gather each flat parameter's gradient before the step, clear it after."""
        flats = [p for group in optimizer.param_groups for p in group["params"]]

        def gather(*_: Any) -> None:
            for p in flats:
                p.flat_group.gather_grad()

        def clear(*_: Any) -> None:
            for group in FlatGroup._gathered:
                group.flat.grad = None
            FlatGroup._gathered.clear()
        optimizer.register_step_pre_hook(gather)
        optimizer.register_step_post_hook(clear)


def _state_view(optimizer: torch.optim.Optimizer, leaf: Tensor, key: str) -> Tensor | None:
    """The (S, …) slice of `leaf` in its flat group's optimiser state `key` (None before the first step)."""
    group = leaf.flat_group  # type: ignore[attr-defined]
    state = optimizer.state.get(group.flat, {}).get(key)
    if state is None:
        return None
    i = next(i for i, other in enumerate(group.leaves) if other is leaf)
    return state[:, group.offsets[i]: group.offsets[i] + group.sizes[i]].view(group.S, *group.shapes[i])


def unrolled_alpha_step_per_replica(forward: Callable[[Tensor], Tensor], x_train: Tensor, y_train: Tensor,
                                    x_valid: Tensor, y_valid: Tensor, w_params: list[Tensor],
                                    a_params: list[Tensor], w_optimizer: torch.optim.SGD,
                                    a_optimizer: torch.optim.Optimizer, xi: float,
                                    reg: Callable[[], Tensor] | None = None,
                                    eps_scale: float = 0.01) -> tuple[Tensor, Tensor]:
    """`common.search.unrolled_alpha_step` (DARTS Eq. 6–8) for stacked replicas, each with its own ε.

    The losses are means over the S replicas, so each gradient autograd gives is 1/S of the replica's own:
    the virtual step w' and ε_s = 0.01/‖∇w' L_val,s‖ (Eq. 8) use S× them; the α gradient stays the mean's
    (`FlatGroup.gather_grad` multiplies it by S). Returns (L_val(w', α) over S·B, logits), detached.
    """
    S = w_params[0].replicas  # type: ignore[attr-defined]
    group = w_optimizer.param_groups[0]
    mu, wd = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
    w0 = [p.detach().clone() for p in w_params]
    # w' = w − ξ(μ·buf + ∇w L_train + wd·w), per replica (DARTS's momentum and weight-decay terms)
    g_train = torch.autograd.grad(F.cross_entropy(forward(x_train), y_train), w_params)
    virtual = []
    for p, g in zip(w_params, g_train):
        buf = _state_view(w_optimizer, p, "momentum_buffer")
        moment = mu * buf if buf is not None else torch.zeros_like(p)
        virtual.append(p.detach() - xi * (moment + S * g + wd * p.detach()))
    load_values(w_params, virtual)
    logits = forward(x_valid)
    loss = F.cross_entropy(logits, y_valid)
    total = loss + reg() if reg is not None else loss
    grads = torch.autograd.grad(total, a_params + w_params, allow_unused=True)
    d_alpha = [torch.zeros_like(p) if g is None else g for p, g in zip(a_params, grads[: len(a_params)])]
    d_w = [S * (torch.zeros_like(p) if g is None else g) for p, g in zip(w_params, grads[len(a_params):])]
    eps = eps_scale / torch.sqrt(sum((g * g).flatten(1).sum(1) for g in d_w))  # Eq. 8: ε_s, (S,)
    hvp = []
    for sign in (1.0, -1.0):  # w± = w ± ε_s ∇w' L_val,s around the original w
        load_values(w_params, [w + sign * _per(eps, w) * g for w, g in zip(w0, d_w)])
        l_t = F.cross_entropy(forward(x_train), y_train)
        hvp.append(torch.autograd.grad(l_t, a_params, allow_unused=True))
    load_values(w_params, w0)
    for p, da, gp, gm in zip(a_params, d_alpha, *hvp):
        gp = torch.zeros_like(p) if gp is None else gp
        gm = torch.zeros_like(p) if gm is None else gm
        p.grad = da - xi * (gp - gm) / (2 * _per(eps, p))  # denominator 2ε_s
    a_optimizer.step()
    return loss.detach(), logits.detach()


class NoiseSource:
    """S4's `noise` op for stacked replicas: replica s draws from its own generator exactly what its single
    run's `torch.randn_like` draws from the global RNG (same state, call order, shape, dtype and layout).

    `ReplicaSupernet.draw_noise_from` puts a `ReplicaNoise` in place of every `common.ops.Noise` of the
    vmapped template; its batching rule (`_ReplicaNoise.vmap`) runs outside the vmap, once per noise op and
    forward, in the order the single forward calls them, and fills slice s of one (S, …) buffer from
    generator s: no host read, so a CUDA graph captures it (the generators are registered with it).

    Args:
        generators: one per replica, each holding its replica's global RNG state (CPU, or the device's CUDA).
        memory_format: the single run's layout of the op's input (`torch.channels_last` where `SearchRun`
            runs channels_last): `randn_like` keeps it, and CPU `normal_` fills a channels_last tensor
            element by element in memory order, other values than a contiguous one's.
    """

    def __init__(self, generators: list[torch.Generator], memory_format: torch.memory_format) -> None:
        self.generators, self.memory_format = generators, memory_format

    def draw(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> Tensor:
        """N(0, 1) of (S, *shape): slice s from generator s."""
        S = len(self.generators)
        out = torch.empty(S * shape[0], *shape[1:], dtype=dtype, device=device, memory_format=self.memory_format)
        out = out.view(S, *shape)  # slice s has the single run's strides
        for s, generator in enumerate(self.generators):
            out[s].normal_(generator=generator)  # = randn_like of the single run's input
        return out


class _ReplicaNoise(torch.autograd.Function):
    """`randn_like(x)` of each replica under vmap, from `NoiseSource` (no gradient: noise does not depend on x)."""

    @staticmethod
    def forward(x: Tensor, source: NoiseSource) -> Tensor:  # noqa: ARG004 - only its vmap rule runs
        raise RuntimeError("ReplicaNoise runs under vmap only (the replicas' stacked forward)")

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, None], x: Tensor, source: NoiseSource) -> tuple[Tensor, int]:
        shape = x.shape if in_dims[0] is None else x.movedim(in_dims[0], 0).shape[1:]
        return source.draw(shape, x.dtype, x.device), 0


class ReplicaNoise(nn.Module):
    """`common.ops.Noise` (N(0, 1) of the strided input's shape) with each replica's draws from `source`."""

    def __init__(self, stride: int, source: NoiseSource) -> None:
        super().__init__()
        self.stride, self.source = stride, source

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return _ReplicaNoise.apply(x.detach(), self.source)


def masked_mix(mix: Callable[[Tensor, Tensor, Any], Tensor], x: Tensor, w: Tensor, index: Any,
               form: str = "nb201") -> Tensor:
    """`MixedOp.mix` (`mix`, the op's own) of one replica under vmap, whose GDAS sample is the one-hot m (M,).

    The single run runs the sampled op only (`MixedOp.mix`, in the supernet's `gdas_form`): nb201,
    Σ_o [o = o*]·w_o·o(x) + [o ≠ o*]·w_o (the unselected w_o have value 0 and take ∂L/∂w_o = Σ ∂L/∂out,
    xautodl search_cells.py:72-84); nasnet, w_o*·o*(x) (the unselected w_o get no gradient, search_cells.py:
    163-164). Under vmap the replicas sample different ops, so every op runs: Σ_o m_o·w_o·o(x), plus
    Σ_o (1 − m_o)·w_o in the nb201 form — the same value and the same gradients (∂L/∂w_o, and exactly 0 for
    an unselected op's parameters). A non-tensor index (None: all ops, softmax weights) is the op's own mix.
    """
    if not torch.is_tensor(index):
        return mix(x, w, index)
    out = mix(x, index * w, None)  # Σ m_o w_o o(x)
    return out if form == "nasnet" else out + ((1 - index) * w).sum()  # nb201: + Σ (1 − m_o) w_o


def sampled_op_of_parameters(model: Supernet) -> dict[str, tuple[str, int, int]]:
    """The parameters that live in a candidate op: name → (cell kind, edge, op), the entry of a GDAS sample
    (E, M) that decides whether the op runs (and gets a gradient) in a step."""
    out = {}
    for i, cell in enumerate(model.cells):
        if isinstance(cell, (NB201Cell, DartsCell)):
            kind = cell.kind if isinstance(cell, DartsCell) else "normal"
            for e, mixed in enumerate(cell.mixed):
                for o, op in enumerate(mixed.ops):
                    for name, _ in op.named_parameters():
                        out[f"cells.{i}.mixed.{e}.ops.{o}.{name}"] = (kind, e, o)
    return out


class ReplicaSupernet:
    """S supernets as one: stacked parameters (S, …) and a vmapped functional forward.

    Mirrors the `Supernet` interface the methods use: `space`, `alphas` / `betas` (cell kind → (S, E, M) /
    (S, E)), `weight_parameters()`, `arch_parameters()`, `edge_gammas()`, and `model(x, weights)`: images
    x (S, B, 3, H, W) (or (B, 3, H, W), shared) and weights[kind] (S, E, M) → logits (S, B, classes).

    Args:
        models: the replicas' supernets (same space and shape; their values are copied).
    """

    def __init__(self, models: list[Supernet], groups: list[list[str]] | None = None) -> None:
        self.S = len(models)
        self.template = copy.deepcopy(models[0])  # structure only: functional_call swaps its parameters
        self.space = self.template.space
        named = [dict(m.named_parameters()) for m in models]
        stacked = {name: torch.stack([n[name].detach() for n in named]) for name in named[0]}  # (S, …)
        self.groups = [FlatGroup([stacked[name] for name in names]) for names in groups or [list(stacked)]]
        self.params: dict[str, Tensor] = {}
        for names, group in zip(groups or [list(stacked)], self.groups):
            self.params.update(zip(names, group.leaves))
        self.params = {name: self.params[name] for name in stacked}  # the single model's order
        self.alphas = {k: self.params[f"alphas.{k}"] for k in self.template.alphas}
        self.betas = {k: self.params[f"betas.{k}"] for k in self.template.betas}
        arch = {id(p) for p in self.arch_parameters()}
        self._w = [p for p in self.params.values() if id(p) not in arch]
        self.op_of = sampled_op_of_parameters(self.template)  # parameter name → (kind, edge, op)
        self.ran: dict[str, Tensor] | None = None  # the last forward's GDAS one-hots (S, E, M); None: all ops
        for module in self.template.modules():
            if isinstance(module, MixedOp):  # a tensor index (one replica's one-hot): the masked mix
                module.mix = functools.partial(masked_mix, module.mix, form=module.gdas_form)  # type: ignore[method-assign]

    def arch_parameters(self) -> list[Tensor]:
        return list(self.alphas.values()) + list(self.betas.values())

    def weight_parameters(self) -> list[Tensor]:
        return list(self._w)

    def edge_gammas(self) -> dict[str, Tensor]:
        """γ per replica and cell kind, (S, E)."""
        norm = vmap(lambda b: edge_normalisation(b, self.space.edges, self.template.incoming))
        return {k: norm(b) for k, b in self.betas.items()}

    def __call__(self, x: Tensor, weights: Weights, index: Index | None = None, use_gammas: bool = True) -> Tensor:
        """`index[kind]`: GDAS's sample as each replica's one-hot (S, E, M) (`common.sampling.gdas_weights`
        with `run.global_generators()`): every op runs, masked (`masked_mix`); `ran` keeps it for the w step."""
        if index is not None and not all(torch.is_tensor(m) for m in index.values()):
            raise RunError("--seeds: a GDAS sample must come as (S, E, M) one-hots, drawn with "
                           "generator=run.global_generators(); run one --seed per process")
        self.ran = None if index is None else dict(index)

        def one(params: dict[str, Tensor], x: Tensor, w: dict[str, Tensor], m: dict[str, Tensor] | None) -> Tensor:
            return functional_call(self.template, params, (x, w, m, use_gammas))
        dims = (0, 0 if x.dim() == 5 else None, 0, None if index is None else 0)
        return vmap(one, in_dims=dims)(self.params, x, dict(weights), self.ran)

    def train(self, mode: bool = True) -> ReplicaSupernet:  # BN uses batch statistics either way
        return self

    def eval(self) -> ReplicaSupernet:
        return self

    def draw_noise_from(self, source: NoiseSource) -> bool:
        """S4: every `noise` op of the template draws each replica's noise from `source`. False: no noise op."""
        from common.ops import Noise
        found = False
        for module in list(self.template.modules()):
            for name, child in module.named_children():
                if isinstance(child, Noise):
                    setattr(module, name, ReplicaNoise(child.stride, source))  # ModuleList: by index name
                    found = True
        return found

    @torch.no_grad()
    def copy_to(self, s: int, model: Supernet) -> None:
        """Replica s's values into `model` (a single supernet of the same shape)."""
        for name, p in model.named_parameters():
            p.copy_(self.params[name][s])


def batched_forward(model: ReplicaSupernet, weights_fn: Callable[[], Mapping[str, Tensor]],
                    index: Mapping[str, list[int]] | None = None, amp: bool = False,
                    cache: bool = True) -> Callable[[Tensor], Tensor]:
    """The closure x (S, B, 3, H, W) → logits (S·B, classes) (`SearchRun.forward`'s twin).

    `F.cross_entropy(logits, y)` is then (1/S)·Σ_s L_s; `FlatGroup.gather_grad` multiplies by S. `amp`: bf16 autocast (`cache`: its weight-cast cache, off under CUDA-graph capture).
    """
    def fwd(x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=cache):
            out = model(x, weights_fn(), index)  # (S, B, classes)
        return (out.float() if amp else out).flatten(0, 1)
    return fwd


def _slice_state(opt: torch.optim.Optimizer, s: int, single: dict[str, Any]) -> dict[str, Any]:
    """Replica s's optimiser state dict, laid out as `single` (its single run's state dict) lays it out."""
    state: dict[int, dict[str, Any]] = {}
    stacked = opt.state_dict()
    for j, (flat, _) in enumerate(_flats(opt)):
        indices = single["param_groups"][j]["params"]
        exists = stacked["state"].get(j, {}).get(MOMENTUM_EXISTS)  # GDAS: buffers of sampled ops only
        for k, v in stacked["state"].get(j, {}).items():
            if k == MOMENTUM_EXISTS:
                continue
            parts = flat.flat_group.split(v, s) if torch.is_tensor(v) and v.dim() else None
            for n, i in enumerate(indices):
                if k == "momentum_buffer" and exists is not None and not exists[s, n]:
                    continue  # never sampled by replica s: its single run has no state for it
                state.setdefault(i, {})[k] = parts[n] if parts is not None else copy.deepcopy(v)
    groups = [{**copy.deepcopy({k: v for k, v in g.items() if k != "params"}), "params": list(sg["params"])}
              for g, sg in zip(stacked["param_groups"], single["param_groups"])]
    return {"state": state, "param_groups": groups}


def _stack_states(opt: torch.optim.Optimizer, states: list[dict[str, Any]]) -> dict[str, Any]:
    """The stacked optimiser's state dict from its replicas' (shared scalars, e.g. Adam's step, from the first)."""
    stacked = opt.state_dict()
    state = {}
    for j, (flat, _) in enumerate(_flats(opt)):
        indices, group = states[0]["param_groups"][j]["params"], flat.flat_group
        has = [[i in st["state"] for i in indices] for st in states]  # GDAS: a never-sampled op has no state
        first = next((st["state"][i] for st in states for i in indices if i in st["state"]), None)
        if first is None:
            continue

        def value(st: dict[str, Any], i: int, n: int, k: str) -> Tensor:
            return st["state"][i][k] if i in st["state"] else first[k].new_zeros(group.shapes[n])
        state[j] = {k: group.join([[value(st, i, n, k) for n, i in enumerate(indices)] for st in states])
                    if torch.is_tensor(v) and v.dim() else v for k, v in first.items()}
        if not all(map(all, has)):
            state[j][MOMENTUM_EXISTS] = torch.tensor(has)
    return {"state": state, "param_groups": stacked["param_groups"]}


def _flats(opt: torch.optim.Optimizer) -> list[tuple[Tensor, dict[str, Any]]]:
    return [(group["params"][0], group) for group in opt.param_groups]


def _stacked_like(opt: torch.optim.Optimizer, model: ReplicaSupernet, names: list[list[str]]) -> torch.optim.Optimizer:
    """An optimiser of `opt`'s class, settings and groups, one flat parameter per group (`names[j]`)."""
    flats = {tuple(n): g.flat for n, g in zip(model_names(model), model.groups)}
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [flats[tuple(n)]]}
              for g, n in zip(opt.param_groups, names)]
    stacked = type(opt)(groups, **opt.defaults)
    FlatGroup.attach(stacked)
    return stacked


def stack_replicas(models: list[Supernet], w_optimizer: torch.optim.Optimizer, a_optimizer: torch.optim.Optimizer,
                   alive: Tensor) -> tuple[ReplicaSupernet, torch.optim.Optimizer, torch.optim.Optimizer]:
    """The batched model and its w and α optimisers, from replica 0's single-run optimisers (their class,
    settings and parameter groups: one flat parameter per group), with the NaN freeze on `alive`."""
    name_of = {id(p): name for name, p in models[0].named_parameters()}
    names = [[[name_of[id(p)] for p in g["params"]] for g in opt.param_groups] for opt in (w_optimizer, a_optimizer)]
    flat = [n for opt_names in names for group in opt_names for n in group]
    if sorted(flat) != sorted(name_of.values()):
        raise RunError("--seeds needs every supernet parameter in exactly one optimiser group")
    model = ReplicaSupernet(models, names[0] + names[1])
    w_opt, a_opt = _stacked_like(w_optimizer, model, names[0]), _stacked_like(a_optimizer, model, names[1])
    FreezeNonFinite(w_opt, alive)
    FreezeNonFinite(a_opt, alive)
    SampledOpsStep(w_opt, model)
    return model, w_opt, a_opt


def model_names(model: ReplicaSupernet) -> list[list[str]]:
    """The parameter names of each of the model's flat groups."""
    where = {id(p): name for name, p in model.params.items()}
    return [[where[id(leaf)] for leaf in g.leaves] for g in model.groups]


class FreezeNonFinite:
    """Step hooks on a stacked optimiser: a replica not alive, or with a non-finite gradient, does not move.

    Before the step: ok = alive ∧ (every gradient of the replica finite), and a copy of the parameters and
    their state; after it, replicas that are not ok get their old values back. All on the device.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, alive: Tensor) -> None:
        self.alive, self.ok = alive, alive
        self.saved: list[tuple[Tensor, Tensor]] = []
        optimizer.register_step_pre_hook(self.pre)
        optimizer.register_step_post_hook(self.post)

    @torch.no_grad()
    def pre(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        ok, tensors = self.alive.clone(), []
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:  # a sum is non-finite iff some element is inf/NaN (or it overflows)
                    ok &= torch.isfinite(p.grad.flatten(1).sum(1))
                tensors += [p, *(v for v in opt.state.get(p, {}).values() if torch.is_tensor(v) and v.dim())]
        self.ok = ok
        self.saved = [(t, t.clone()) for t in tensors]

    @torch.no_grad()
    def post(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for t, old in self.saved:
            t.copy_(torch.where(_per(self.ok, t), t, old))
        self.alive.logical_and_(self.ok)
        self.saved = []


MOMENTUM_EXISTS = "momentum_exists"  # stacked SGD state: (S, tensors), which momentum buffers a replica's run has


class SampledOpsStep:
    """Step hooks on the stacked w optimiser (SGD): under GDAS each replica steps only the ops it sampled.

    In a single GDAS run an op that was not sampled gets no gradient (grad None) and torch's SGD skips it:
    no weight decay, no momentum update, and its momentum buffer is created (buf = d_p) at the first step
    the op is sampled. Batched, every op runs and an unsampled op's gradient is exactly 0 for that replica,
    so the flat step would move it: after the step, each (replica, parameter tensor) whose op did not run
    (`model.ran`, the forward's one-hots) gets its parameters and momentum buffer back. `MOMENTUM_EXISTS`
    in the optimiser state marks the buffers a replica's single run has (`_slice_state` leaves the others
    out of its checkpoint, `_stack_states` rebuilds it on --resume); a missing buffer is held at 0, so
    torch's μ·0 + d_p is exactly the first step's buf = d_p (SGD without dampening).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: ReplicaSupernet) -> None:
        if any(g.get("dampening", 0) for g in optimizer.param_groups):
            raise RunError("--seeds with GDAS needs SGD without dampening on w")
        self.model, self.saved = model, []
        where = {id(leaf): name for name, leaf in model.params.items()}
        self.kinds = list(model.alphas)
        first, col = 1, {}  # column 0 of the table: ran always (stem, classifier, …)
        for kind in self.kinds:
            E, M = model.alphas[kind].shape[1:]
            col[kind], first = first, first + E * M
        self.slots = {}  # flat parameter → (column of each of its tensors, their sizes)
        for group in optimizer.param_groups:
            flat = group["params"][0]
            ops = [model.op_of.get(where[id(leaf)]) for leaf in flat.flat_group.leaves]
            slots = [0 if op is None else col[op[0]] + op[1] * model.alphas[op[0]].shape[2] + op[2] for op in ops]
            self.slots[flat] = (torch.tensor(slots, device=flat.device),
                                torch.tensor(flat.flat_group.sizes, device=flat.device))
        optimizer.register_step_pre_hook(self.pre)
        optimizer.register_step_post_hook(self.post)

    @torch.no_grad()
    def pre(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        ran, self.saved = self.model.ran, []
        if ran is None:  # all ops ran (not GDAS): every tensor had a gradient
            return
        S = next(iter(ran.values())).shape[0]
        table = torch.cat([torch.ones(S, 1, dtype=torch.bool, device=ran[self.kinds[0]].device),
                           *(ran[k].flatten(1) > 0 for k in self.kinds)], 1)  # (S, 1 + Σ E·M)
        for flat, (slots, sizes) in self.slots.items():
            had = table[:, slots]  # (S, tensors): the tensor had a gradient in the replica's single run
            mask = had.repeat_interleave(sizes, dim=1, output_size=flat.shape[1])  # (S, P)
            buf = opt.state.get(flat, {}).get("momentum_buffer")
            self.saved.append((flat, had, mask, flat.detach().clone(), None if buf is None else buf.clone()))

    @torch.no_grad()
    def post(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for flat, had, mask, old, old_buf in self.saved:
            flat.copy_(torch.where(mask, flat, old))
            state = opt.state[flat]
            if state.get("momentum_buffer") is None:
                continue
            state["momentum_buffer"].copy_(torch.where(mask, state["momentum_buffer"], 0.0 if old_buf is None else old_buf))
            if MOMENTUM_EXISTS in state:  # in place: a captured step (CUDA graph) updates the same tensor
                state[MOMENTUM_EXISTS].copy_(state[MOMENTUM_EXISTS].bool() | had)
            else:
                state[MOMENTUM_EXISTS] = torch.full_like(had, old_buf is not None) | had
        self.saved = []


def gdas_refusal(space: str) -> str | None:
    """Why --seeds refuses GDAS sampling on `space`, or None: with a noise op (S4) a single run draws noise
    only on the edges its sample picks it on, a batched all-ops forward for every replica."""
    from common.spaces import SPACES
    if any("noise" in ops for edges in SPACES[space].edge_ops.values() for ops in edges):
        return (f"--seeds with GDAS sampling on {space} (--backbone gdas): a single run draws its noise op's "
                "numbers only where its sample picks it, a batched forward for every replica; run one --seed per "
                "process")
    return None
