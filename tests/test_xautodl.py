"""Equivalence with the official NAS-Bench-201 search code, `xautodl` 1.0.0 (D-X-Y/AutoDL-Projects).

A test-only extra: `pip install --no-deps xautodl==1.0.0` (its metadata pins numpy<=1.19.5, so never with
its dependencies; `.ci/run` installs it this way). Without it these tests skip.

What is compared, in float64, with our weights copied into its `TinyNetworkDarts` (C=4, N=1):
- logits, ∇α and ∇w of the cross-entropy, for our reference `Supernet` and our `FastSupernet`;
- our derived arch string and its `genotype()` (argmax of α per edge), also at near ties (1e-8);
- GDAS: for one Gumbel draw, our hard sample and supernet against `TinyNetworkGDAS`'s sample formula and
  `forward_gdas` (logits, straight-through ∇α, ∇w); on the DARTS skeleton against `NASNetworkGDAS`'s cells
  (`NASNetSearchCell.forward_gdas`, the nasnet form, our default there; and the nb201 form);
- three DARTS-V1 steps: our `w_step`/`alpha_step` with the optimisers `SearchRun` builds, against the
  official loop body (exps/NAS-Bench-201-algos/DARTS-V1.py, `search_func`) with its optimisers
  (`get_optim_scheduler` with configs/nas-benchmark/algos/DARTS.config, Adam 3e-4 (0.5, 0.999) wd 1e-3).
  Gradient clipping at 5 with our default scope `w` does not trigger (asserted): the official clip also
  counts α and the stale α gradient, which agrees with `w` only while neither clips.
  With `--clip-scope official` (w_step's `norm_extra` = α) and a clip of 0.5 that triggers on every step
  (asserted), ours still follows the official loop.

The parameter counts differ, and why: at C=16, N=5 TinyNetworkDarts has 1,692,826 weight parameters, we
have 1,686,106. The 6,720 extra are not BN affine tensors: its cell ops' convolutions carry a bias
(`bias=not affine`, xautodl/models/cell_operations.py line 137, affine=False in the supernet) — 2 convs ×
6 edges × 5 cells × (16 + 32 + 64) channels. Each such conv feeds a BatchNorm with batch statistics, which
subtracts the per-channel batch mean and so cancels a per-channel constant exactly: the biases change no
output and get a zero gradient. They are left unmapped, set to random values below, and checked to be inert.
Everything else maps one to one (stem, cell convs, the residual blocks, last BN, classifier); its stem,
residual-block and last BNs track running statistics, which in training mode do not enter the output.
"""
from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch.nn import functional as F

from common.config import SearchConfig
from common.fast import FastSupernet
from common.genotypes import derive_from_alphas
from common.search import alpha_step, cosine_lr, w_step
from common.spaces import NB201_EDGES, NB201_OP_NAMES, SPACES
from common.supernet import Supernet

xautodl = pytest.importorskip("xautodl", reason="the official NB201 code is not installed: "
                                                "pip install --no-deps xautodl==1.0.0 (test-only extra)")
with warnings.catch_warnings():  # its sources hold "$\pm$" strings: invalid escapes warn when first compiled
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    from xautodl.config_utils import dict2config
    from xautodl.models.cell_searchs import TinyNetworkDarts
    from xautodl.procedures.optimizers import get_optim_scheduler

EDGE_KEYS = [f"{to}<-{src}" for to, src in NB201_EDGES]  # theirs: cell.edge_keys, sorted strings


def their_name(ours: str) -> str:
    """The TinyNetworkDarts parameter that holds our parameter `ours`."""
    m = re.fullmatch(r"cells\.(\d+)\.mixed\.(\d+)\.ops\.(\d+)\.(.+)", ours)
    if m:  # mixed op e, op o (ReLU→Conv→BN: .1 is the conv) → edges["to<-from"][o].op
        return f"cells.{m[1]}.edges.{EDGE_KEYS[int(m[2])]}.{m[3]}.op.{m[4]}"
    m = re.fullmatch(r"cells\.(\d+)\.(conv_a|conv_b)\.(.+)", ours)
    if m:  # residual block ReLUConvBN
        return f"cells.{m[1]}.{m[2]}.op.{m[3]}"
    return ours  # stem.*, cells.i.downsample.1, lastact.0.*, classifier.*


def build(C: int = 4, N: int = 1, fast: bool = False, seed: int = 0):
    """(ours, theirs, mapping ours→theirs, their unmapped biases), our weights copied into theirs."""
    torch.manual_seed(seed)
    ours = (FastSupernet if fast else Supernet)("nb201", C=C, N=N).double()
    theirs = TinyNetworkDarts(C, N, 4, 10, list(NB201_OP_NAMES), False, False).double()
    assert theirs.cells[0].edge_keys == EDGE_KEYS  # the same edge order
    their_params = dict(theirs.named_parameters())
    mapping = {name: their_params[their_name(name)] for name, _ in ours.named_parameters()
               if not name.startswith("alphas")}
    unmapped = {n: p for n, p in their_params.items() if n != "arch_parameters"
                and all(p is not q for q in mapping.values())}
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.startswith("alphas"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))  # far from uniform
                theirs.arch_parameters.copy_(p)
            else:
                assert mapping[name].shape == p.shape, name
                mapping[name].copy_(p)
        for p in unmapped.values():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))  # cancelled by batch-stat BN
    return ours, theirs, mapping, unmapped


def test_parameter_counts_and_the_unmapped_conv_biases() -> None:
    ours, theirs, mapping, unmapped = build(C=16, N=5)
    n_ours = sum(p.numel() for p in ours.weight_parameters())
    n_theirs = sum(p.numel() for p in theirs.get_weights())
    assert (n_ours, n_theirs) == (1_686_106, 1_692_826)
    # the whole difference: one bias per cell conv (1×1 and 3×3) per edge, cell and stage
    assert all(re.fullmatch(r"cells\.\d+\.edges\.\d<-\d\.[23]\.op\.1\.bias", n) for n in unmapped)
    assert len(unmapped) == 2 * 6 * 5 * 3 and sum(p.numel() for p in unmapped.values()) == 2 * 6 * 5 * (16 + 32 + 64)
    assert n_theirs - n_ours == 6_720
    assert len(set(map(id, mapping.values()))) == len(mapping)  # one to one


@pytest.mark.parametrize("fast", [False, True])
def test_logits_and_gradients_match_float64(fast: bool) -> None:
    ours, theirs, mapping, unmapped = build(fast=fast)
    ours.train(), theirs.train()
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 3, 16, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(10, (6,), generator=gen)
    ours_logits = ours(x, {"normal": F.softmax(ours.alphas["normal"], -1)})
    _, their_logits = theirs(x)
    assert torch.allclose(ours_logits, their_logits, rtol=1e-12, atol=1e-13)
    names = [n for n, _ in ours.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(F.cross_entropy(ours_logits, y), list(ours.parameters()),
                                                allow_unused=True)))
    F.cross_entropy(their_logits, y).backward()
    assert torch.allclose(grads["alphas.normal"], theirs.arch_parameters.grad, rtol=1e-10, atol=1e-14)
    for name, p in mapping.items():
        g = grads[name] if grads[name] is not None else torch.zeros_like(p)
        assert torch.allclose(g, p.grad, rtol=1e-9, atol=1e-13), name
    scale = max(p.grad.abs().max().item() for p in mapping.values())
    for name, p in unmapped.items():  # the conv biases before batch-statistics BN: inert
        assert p.grad.abs().max().item() < 1e-12 * max(scale, 1.0), name


def test_derived_arch_string_matches_official_genotype() -> None:
    _, theirs, _, _ = build()
    gen = torch.Generator().manual_seed(11)
    for trial in range(100):
        alpha = 1e-3 * torch.randn(6, 5, generator=gen)
        if trial % 2:  # near ties: a later op ahead of an earlier one by 1e-8
            for e in range(6):
                i, j = sorted(torch.randperm(5, generator=gen)[:2].tolist())
                alpha[e, j] = alpha[e].max() + 1e-3
                alpha[e, i] = alpha[e, j] - 1e-8
        with torch.no_grad():
            theirs.arch_parameters.copy_(alpha)
        official = theirs.genotype().tostr()
        assert derive_from_alphas({"normal": alpha}, SPACES["nb201"]) == official
        assert derive_from_alphas({"normal": theirs.arch_parameters}, SPACES["nb201"]) == official


@pytest.mark.parametrize("fast,clip,scope", [(False, 5.0, "w"), (True, 5.0, "w"), (False, 0.5, "official"),
                                              (True, 0.5, "official")])
def test_three_darts_v1_steps_match_the_official_loop(fast: bool, clip: float, scope: str) -> None:
    ours, theirs, mapping, _ = build(fast=fast)
    ours.train(), theirs.train()
    cfg = SearchConfig()  # our defaults: the NB201 DARTS-V1 settings
    # SearchRun's optimisers (common/run.py) with the default config
    w_params, a_params = ours.weight_parameters(), ours.arch_parameters()
    w_opt = torch.optim.SGD(w_params, cosine_lr(0, cfg.epochs, cfg.w_lr, cfg.w_lr_min), momentum=cfg.w_momentum,
                            weight_decay=cfg.w_wd, nesterov=cfg.w_momentum > 0)
    a_opt = torch.optim.Adam(a_params, cfg.a_lr, betas=(cfg.a_beta1, 0.999), weight_decay=cfg.a_wd)
    # theirs: configs/nas-benchmark/algos/DARTS.config and DARTS-V1.py's Adam (arch lr 3e-4, wd 1e-3)
    config = dict2config({"scheduler": "cos", "eta_min": 0.001, "epochs": 50, "warmup": 0, "optim": "SGD",
                          "LR": 0.025, "decay": 0.0005, "momentum": 0.9, "nesterov": True,
                          "criterion": "Softmax", "batch_size": 64}, None)
    their_w_opt, scheduler, criterion = get_optim_scheduler(theirs.get_weights(), config)
    their_a_opt = torch.optim.Adam(theirs.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    scheduler.update(0, 0.0)  # epoch 0

    forward = lambda x: ours(x, {"normal": F.softmax(ours.alphas["normal"], -1)})
    alpha0 = ours.alphas["normal"].detach().clone()
    gen = torch.Generator().manual_seed(5)
    n_steps = 3
    for step in range(n_steps):
        x_t, x_v = (torch.randn(8, 3, 16, 16, generator=gen, dtype=torch.float64) for _ in range(2))
        y_t, y_v = (torch.randint(10, (8,), generator=gen) for _ in range(2))
        # ours
        w_step(forward, x_t, y_t, w_params, w_opt, clip, norm_extra=a_params if scope == "official" else None)
        alpha_step(forward, x_v, y_v, a_params, a_opt)
        # theirs: the body of search_func in DARTS-V1.py, verbatim in effect
        scheduler.update(None, 1.0 * step / n_steps)
        their_w_opt.zero_grad()
        _, logits = theirs(x_t)
        criterion(logits, y_t).backward()
        norm = torch.nn.utils.clip_grad_norm_(theirs.parameters(), clip)  # network.parameters(): α included
        their_w_opt.step()
        their_a_opt.zero_grad()
        _, logits = theirs(x_v)
        criterion(logits, y_v).backward()
        their_a_opt.step()
        if scope == "w":  # clipping did not trigger (measured 1.9-2.3; ours, w only, is smaller still)
            assert norm < clip == cfg.grad_clip == 5
        else:  # it did, on every step: w's gradients were scaled by clip/norm on both sides
            assert norm > 2 * clip
        assert w_opt.param_groups[0]["lr"] == their_w_opt.param_groups[0]["lr"] == 0.025
        assert torch.allclose(ours.alphas["normal"], theirs.arch_parameters, rtol=1e-10, atol=1e-13), step
        for name, p in ours.named_parameters():
            if not name.startswith("alphas"):
                assert torch.allclose(p, mapping[name], rtol=1e-10, atol=1e-13), (step, name)
    assert (ours.alphas["normal"] - alpha0).abs().max() > 5e-4  # three Adam steps of lr 3e-4 moved α


@pytest.mark.parametrize("fast", [False, True])
def test_gdas_forward_and_gradients_match_float64(fast: bool) -> None:
    """GDAS: given one Gumbel draw g, our hard sample (common.sampling) and supernet against its
    `TinyNetworkGDAS` sample formula and `NAS201SearchCell.forward_gdas` (search_model_gdas.py lines 114-142):
    logits, ∇α (straight-through) and ∇w."""
    from xautodl.models.cell_searchs import TinyNetworkGDAS

    from common.sampling import gumbel_noise, gumbel_softmax_hard

    ours, _, _, _ = build(fast=fast)
    theirs = TinyNetworkGDAS(4, 1, 4, 10, list(NB201_OP_NAMES), False, False).double()
    params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, p in ours.named_parameters():
            (theirs.arch_parameters if name.startswith("alphas") else params[their_name(name)]).copy_(p)
    tau = 3.0
    g = gumbel_noise((6, 5), ours.alphas["normal"], torch.Generator().manual_seed(2))
    weights, index = gumbel_softmax_hard(ours.alphas["normal"], tau, torch.Generator().manual_seed(2))
    # theirs, with the same g: softmax((log_softmax(α) + g)/τ), one-hot of its argmax, straight through
    probs = F.softmax((theirs.arch_parameters.log_softmax(dim=1) + g) / tau, dim=1)
    idx = probs.max(-1, keepdim=True)[1]
    hardwts = torch.zeros_like(probs).scatter_(-1, idx, 1.0) - probs.detach() + probs
    assert idx.flatten().tolist() == index
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(6, 3, 16, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(10, (6,), generator=gen)
    ours_logits = ours(x, {"normal": weights}, {"normal": index})
    h = theirs.stem(x)  # TinyNetworkGDAS.forward after its sampling loop
    for cell in theirs.cells:
        h = cell.forward_gdas(h, hardwts, idx) if hasattr(cell, "forward_gdas") else cell(h)
    their_logits = theirs.classifier(theirs.global_pooling(theirs.lastact(h)).flatten(1))
    assert torch.allclose(ours_logits, their_logits, rtol=1e-12, atol=1e-13)
    names = [n for n, _ in ours.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(F.cross_entropy(ours_logits, y), list(ours.parameters()),
                                                allow_unused=True)))
    F.cross_entropy(their_logits, y).backward()
    assert grads["alphas.normal"].abs().sum() > 0
    assert torch.allclose(grads["alphas.normal"], theirs.arch_parameters.grad, rtol=1e-10, atol=1e-14)
    _same_w_grads(grads, lambda name: params[their_name(name)].grad)


def _same_w_grads(grads: dict[str, torch.Tensor | None], theirs) -> None:
    """Our weight gradients (by parameter name; α skipped) equal theirs (`theirs(name)`: the mapped grad)."""
    for name, g_ours in grads.items():
        if not name.startswith("alphas"):
            g_theirs = theirs(name)
            if g_theirs is None or g_ours is None:  # an op no edge sampled: no gradient on either side
                assert (g_theirs is None or not g_theirs.any()) and (g_ours is None or not g_ours.any()), name
            else:
                assert torch.allclose(g_ours, g_theirs, rtol=1e-9, atol=1e-13), name


# ----------------------------------------------------------------------------- GDAS on the DARTS skeleton

# Our DARTS ops in our order, by their xautodl names (cell_operations.py: DualSepConv = our SepConv, SepConv with
# dilation 2 = our DilConv; POOLING, Identity / FactorizedReduce, Zero): α's columns then map one to one.
NASNET_OPS = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "dua_sepc_3x3", "dua_sepc_5x5", "dil_sepc_3x3",
              "dil_sepc_5x5"]


def nasnet_name(ours: str) -> str:
    """The `NASNetworkGDAS` parameter that holds our DARTS-skeleton parameter `ours`."""
    from common.spaces import DARTS_EDGES, DARTS_OP_NAMES
    rest = lambda r: r.replace("conv_1", "convs.0").replace("conv_2", "convs.1")  # FactorizedReduce
    m = re.fullmatch(r"cells\.(\d+)\.mixed\.(\d+)\.ops\.(\d+)\.(.+)", ours)
    if m:  # edge e = (to, from) → edges["to-2<-from"]._ops[o]
        to, src = DARTS_EDGES[int(m[2])]
        op, r = DARTS_OP_NAMES[int(m[3])], m[4]
        if op.startswith("sep_conv"):  # two DilConvs ↔ DualSepConv's op_a, op_b
            half, tail = r.split(".", 1)
            r = f"{('op_a', 'op_b')[int(half)]}.op.{tail}"
        elif op.startswith("dil_conv"):
            r = f"op.{r}"
        return f"cells.{m[1]}.edges.{to - 2}<-{src}._ops.{m[3]}.{rest(r)}"
    m = re.fullmatch(r"cells\.(\d+)\.pre([01])\.(.+)", ours)
    if m:  # ReLUConvBN (.1 the conv) ↔ nor_conv_1x1's .op.1; FactorizedReduce ↔ skip_connect at stride 2
        return f"cells.{m[1]}.preprocess{m[2]}.{'op.' if m[3][0] == '1' else ''}{rest(m[3])}"
    return ours  # stem.*, classifier.*


def _nb201_form(self, x, weights, index):
    """NAS201SearchCell.forward_gdas's edge (xautodl search_cells.py:80-83) in its NASNet MixedOp."""
    return sum(weights[i] * op(x) if i == index else weights[i] for i, op in enumerate(self._ops))


@pytest.mark.parametrize("form,fast", [("nasnet", False), ("nasnet", True), ("nb201", False)])
def test_gdas_on_the_darts_skeleton_matches_nasnet_gdas_float64(form: str, fast: bool, monkeypatch) -> None:
    """Our DARTS-skeleton GDAS forward against xautodl's `NASNetworkGDAS` (C=4, N=1: normal, reduce, reduce
    cells, our `--C 4 --N 3`) with our weights, for one Gumbel draw per cell kind: logits, ∇α (both cell
    kinds), ∇w in float64. nasnet: its `NASNetSearchCell.forward_gdas` (search_cells.py:220-232) as shipped,
    `MixedOp.forward_gdas` = the sampled op times its weight (163-164); nb201: that MixedOp given
    NAS201SearchCell's edge expression (72-84). Two differences of skeleton are bridged, not hidden: its
    DARTS-space pools have no BN (DARTS's search MixedOp, and ours, append BN(affine=False): appended to
    theirs), and our skeleton (DARTS's) has no final BN-ReLU (`lastact`, skipped on their side). Its convs'
    biases feed batch-statistics BN (inert, as in NB201 above). The two forms' ∇α differ (asserted)."""
    from xautodl.models.cell_searchs import NASNetworkGDAS
    from xautodl.models.cell_searchs.search_cells import MixedOp as TheirMixedOp

    from common.sampling import gumbel_noise, gumbel_softmax_hard
    from common.spaces import DARTS_EDGES

    if form == "nb201":
        monkeypatch.setattr(TheirMixedOp, "forward_gdas", _nb201_form)
    torch.manual_seed(0)
    ours = (FastSupernet if fast else Supernet)("darts", C=4, N=3, gdas_form=form).double()
    assert ours.gdas_form == form and Supernet("darts", C=4, N=3).gdas_form == "nasnet"  # the DARTS default
    theirs = NASNetworkGDAS(4, 1, 4, 4, 3, 10, NASNET_OPS, False, False).double()
    assert theirs.cells[0].edge_keys == [f"{to - 2}<-{src}" for to, src in DARTS_EDGES]  # the same edge order
    assert [c.reduction for c in theirs.cells] == [c.reduction for c in ours.cells] == [False, True, True]
    params = dict(theirs.named_parameters())
    gen = torch.Generator().manual_seed(1)
    mapped = set()
    with torch.no_grad():
        for kind, arch in (("normal", theirs.arch_normal_parameters), ("reduce", theirs.arch_reduce_parameters)):
            ours.alphas[kind].copy_(torch.randn(14, 8, generator=gen, dtype=torch.float64))  # far from uniform
            arch.copy_(ours.alphas[kind])
        for name, p in ours.named_parameters():
            if not name.startswith("alphas"):
                params[nasnet_name(name)].copy_(p)
                mapped.add(nasnet_name(name))
        unmapped = {n: p for n, p in params.items() if n not in mapped and not n.startswith(("arch_", "lastact"))}
        assert unmapped and all(n.endswith("bias") for n in unmapped)  # the conv biases
        for p in unmapped.values():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    for cell_ours, cell_theirs in zip(ours.cells, theirs.cells):  # BN(affine=False) after their pools
        for e, key in enumerate(cell_theirs.edge_keys):
            for o in (1, 2):
                pool = cell_theirs.edges[key]._ops[o]
                pool.op = torch.nn.Sequential(pool.op, cell_ours.mixed[e].ops[o][1])
    tau, seeds = 2.0, {"normal": 3, "reduce": 4}
    sample = lambda model: [gumbel_softmax_hard(model.alphas[k], tau, torch.Generator().manual_seed(seeds[k]))
                            for k in ("normal", "reduce")]
    (weights_n, index_n), (weights_r, index_r) = sample(ours)
    weights, index, hard = {"normal": weights_n, "reduce": weights_r}, {"normal": index_n, "reduce": index_r}, {}
    for kind, arch in (("normal", theirs.arch_normal_parameters), ("reduce", theirs.arch_reduce_parameters)):
        g = gumbel_noise((14, 8), ours.alphas[kind], torch.Generator().manual_seed(seeds[kind]))
        probs = F.softmax((arch.log_softmax(dim=1) + g) / tau, dim=1)  # search_model_gdas_nasnet.py:164-171
        idx = probs.max(-1, keepdim=True)[1]
        hard[kind] = (torch.zeros_like(probs).scatter_(-1, idx, 1.0) - probs.detach() + probs, idx)
        assert idx.flatten().tolist() == index[kind]
    assert set(index["normal"] + index["reduce"]) == set(range(8))  # every op runs somewhere
    assert index["reduce"][:2] == [3, 3]  # skip_connect at stride 2: FactorizedReduce
    x = torch.randn(6, 3, 16, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(10, (6,), generator=gen)
    ours.train(), theirs.train()
    ours_logits = ours(x, weights, index)
    s0 = s1 = theirs.stem(x)  # NASNetworkGDAS.forward (search_model_gdas_nasnet.py:185-195) without lastact
    for cell in theirs.cells:
        s0, s1 = s1, cell.forward_gdas(s0, s1, *hard["reduce" if cell.reduction else "normal"])
    their_logits = theirs.classifier(theirs.global_pooling(s1).flatten(1))
    assert torch.allclose(ours_logits, their_logits, rtol=1e-12, atol=1e-13)
    names = [n for n, _ in ours.named_parameters()]
    grads = dict(zip(names, torch.autograd.grad(F.cross_entropy(ours_logits, y), list(ours.parameters()),
                                                allow_unused=True)))
    F.cross_entropy(their_logits, y).backward()
    for kind, arch in (("normal", theirs.arch_normal_parameters), ("reduce", theirs.arch_reduce_parameters)):
        assert grads[f"alphas.{kind}"].abs().sum() > 0
        assert torch.allclose(grads[f"alphas.{kind}"], arch.grad, rtol=1e-10, atol=1e-14), kind
    _same_w_grads(grads, lambda name: params[nasnet_name(name)].grad)
    scale = max(p.grad.abs().max().item() for n, p in params.items() if n in mapped and p.grad is not None)
    assert all(p.grad is None or p.grad.abs().max() < 1e-12 * scale for p in unmapped.values())
    other = Supernet("darts", C=4, N=3, gdas_form="nb201" if form == "nasnet" else "nasnet").double()
    other.load_state_dict(ours.state_dict())
    (w_n, i_n), (w_r, i_r) = sample(other)
    logits = other(x, {"normal": w_n, "reduce": w_r}, {"normal": i_n, "reduce": i_r})
    assert torch.allclose(logits, ours_logits, rtol=1e-12, atol=1e-13)  # the same values
    grad_other = torch.autograd.grad(F.cross_entropy(logits, y), other.alphas["normal"])[0]
    assert not torch.allclose(grad_other, grads["alphas.normal"], rtol=1e-3, atol=0)  # the forms differ in ∇α
