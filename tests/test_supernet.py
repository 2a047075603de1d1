"""Supernet: one-hot weights equal the discrete cell exactly; shapes for every space; PC-DARTS; fast path."""
from __future__ import annotations

import itertools
import re

import pytest
import torch
from helpers import discrete_nb201
from hypothesis import given
from hypothesis import strategies as st
from torch.nn import functional as F

from common.fast import FastSupernet
from common.nb201 import NB201_OPS, arch_str_to_onehot, format_arch_str
from common.ops import channel_shuffle
from common.spaces import SPACES
from common.supernet import Supernet, edge_normalisation


@given(st.lists(st.sampled_from(NB201_OPS), min_size=6, max_size=6))
def test_nb201_one_hot_equals_discrete_cell(ops: list[str]) -> None:
    torch.manual_seed(0)
    model = Supernet("nb201", C=4, N=1).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    arch = format_arch_str(ops)
    y_super = model(x, {"normal": arch_str_to_onehot(arch, dtype=torch.float64)})
    y_disc = discrete_nb201(model, x, ops)
    assert torch.equal(y_super, y_disc)


def _discrete_darts_cell(cell, s0, s1, choice: dict[int, int]) -> torch.Tensor:
    nodes = [cell.pre0(s0), cell.pre1(s1)]
    for node in range(2, 6):
        terms = [cell.mixed[e].ops[choice[e]](nodes[src]) for e, (to, src) in enumerate(cell.edges)
                 if to == node and e in choice]
        nodes.append(sum(terms[1:], terms[0]))
    return torch.cat(nodes[2:], dim=1)


@pytest.mark.parametrize("space", ["darts", "darts-nonone", "s1", "s2", "s3"])
def test_darts_one_hot_equals_discrete_cell(space: str) -> None:
    # (S4 is left out: its `noise` op draws from the RNG on every edge of the supernet, so the two
    # passes consume different random streams.)
    torch.manual_seed(1)
    model = Supernet(space, C=4, N=3).double()
    gen = torch.Generator().manual_seed(2)
    weights, choices = {}, {}
    for kind in model.space.cell_kinds:
        E, M = model.space.alpha_shape(kind)
        w = torch.zeros(E, M, dtype=torch.float64)
        choice = {}
        for node in range(2, 6):  # two random incoming edges per node, a random op each
            inc = [e for e, (to, _) in enumerate(model.space.edges) if to == node]
            for e in torch.randperm(len(inc), generator=gen)[:2].tolist():
                choice[inc[e]] = int(torch.randint(M, (1,), generator=gen))
                w[inc[e], choice[inc[e]]] = 1.0
        weights[kind], choices[kind] = w, choice
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y_super = model(x, weights)
    s0 = s1 = model.stem(x)
    for cell in model.cells:
        s0, s1 = s1, _discrete_darts_cell(cell, s0, s1, choices[cell.kind])
    y_disc = model.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
    assert torch.equal(y_super, y_disc)


@pytest.mark.parametrize("space,K", list(itertools.product(SPACES, (1, 4))))  # a Collection (pytest 9.1)
def test_shapes_every_space(space: str, K: int) -> None:
    nb201 = SPACES[space].skeleton == "nb201"
    model = Supernet(space, C=8, N=1 if nb201 else 3, num_classes=7, partial_channels=K)
    kinds = ("normal",) if nb201 else ("normal", "reduce")
    assert tuple(model.alphas) == kinds
    E = 6 if nb201 else 14
    M = {"nb201": 5, "darts": 8, "darts-nonone": 7, "s1": 2, "s2": 2, "s3": 3, "s4": 2, "nb201-3op": 3}[space]
    for k in kinds:
        assert model.alphas[k].shape == (E, M)
        assert (model.alphas[k].abs() < 0.01).all()  # 1e-3·N(0,1) init
    assert set(map(id, model.arch_parameters())).isdisjoint(map(id, model.weight_parameters()))
    assert len(model.arch_parameters()) == len(kinds) * (2 if K > 1 else 1)
    y = model(torch.randn(2, 3, 16, 16), {k: F.softmax(a, -1) for k, a in model.alphas.items()})
    assert y.shape == (2, 7)
    assert set(model.state_dict()) >= {f"alphas.{k}" for k in kinds}


def test_edge_normalisation_per_node() -> None:
    for space in ("nb201", "darts"):
        edges = SPACES[space].edges
        beta = torch.randn(len(edges), dtype=torch.float64)
        gamma = edge_normalisation(beta, edges)
        for node in {to for to, _ in edges}:
            idx = [e for e, (to, _) in enumerate(edges) if to == node]
            assert torch.allclose(gamma[idx].sum(), torch.tensor(1.0, dtype=torch.float64))
            assert torch.allclose(gamma[idx], torch.softmax(beta[idx], 0))


def test_channel_shuffle_is_a_permutation_interleaving_groups() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert torch.equal(channel_shuffle(x, 1), x)


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_partial_channels_k1_equals_plain_and_gamma_scales_edges(space: str) -> None:
    N = 1 if space == "nb201" else 3
    torch.manual_seed(0)
    plain = Supernet(space, C=4, N=N).double()
    torch.manual_seed(0)
    pc = Supernet(space, C=4, N=N, partial_channels=1, edge_norm=True).double()
    with torch.no_grad():
        for b in pc.betas.values():
            b.copy_(torch.randn_like(b))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = {k: F.softmax(torch.randn_like(a), -1) for k, a in plain.alphas.items()}
    assert torch.equal(pc(x, w, use_gammas=False), plain(x, w))
    # the mixed op is linear in w, so scaling each edge by γ equals feeding γ·w to the plain net
    scaled = {k: w[k] * g[:, None] for k, g in pc.edge_gammas().items()}
    assert torch.allclose(pc(x, w), plain(x, scaled), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("space,K", [("nb201", 1), ("darts", 1), ("darts-nonone", 1), ("s1", 1), ("s2", 1), ("s3", 1),
                                     ("s4", 1), ("nb201", 2), ("darts", 2), ("nb201-3op", 1)])
def test_fast_supernet_matches_reference(space: str, K: int) -> None:
    """Same outputs and gradients (w and α) as the readable supernet, float64."""
    N = 2 if SPACES[space].skeleton == "nb201" else 3
    torch.manual_seed(0)
    ref = Supernet(space, C=4, N=N, partial_channels=K).double()
    torch.manual_seed(0)
    fast = FastSupernet(space, C=4, N=N, partial_channels=K).double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    grads = []
    for model in (ref, fast):
        torch.manual_seed(5)  # S4's noise op
        w = {k: F.softmax(a * 300, -1) for k, a in model.alphas.items()}
        y = model(x, w)
        grads.append((y, torch.autograd.grad((y ** 2).sum(), list(model.parameters()), allow_unused=True)))
    (y_r, g_r), (y_f, g_f) = grads
    assert torch.allclose(y_r, y_f, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_r, g_f):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


def test_gdas_index_runs_only_sampled_op_and_passes_gradient() -> None:
    torch.manual_seed(0)
    model = Supernet("nb201", C=4, N=1).double()
    alpha = model.alphas["normal"]
    soft = F.softmax(alpha * 100, -1)
    index = soft.argmax(-1)
    hard = F.one_hot(index, 5).double() - soft.detach() + soft
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y_idx = model(x, {"normal": hard}, {"normal": index.tolist()})
    y_all = model(x, {"normal": hard})
    assert torch.allclose(y_idx, y_all, atol=1e-12)
    g, = torch.autograd.grad(y_idx.sum(), alpha)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_gdas_forms_equal_in_value_and_differ_only_in_the_unsampled_weights_gradient(space: str) -> None:
    """The two GDAS edge forms (module docstring of common.supernet), float64, closed form: equal logits and
    ∇ of every network weight; ∂L/∂w_o* equal; off the sample ∂L/∂w_o is 0 in the nasnet form and, in the
    nb201 form, one value per edge (Σ ∂L/∂out of that edge) — nonzero somewhere."""
    from common.sampling import gdas_weights
    nets = {}
    for form in ("nb201", "nasnet"):
        torch.manual_seed(0)
        nets[form] = Supernet(space, C=2, N=1 if space == "nb201" else 3, gdas_form=form).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 7])
    out = {}
    for form, net in nets.items():
        weights, index = gdas_weights(net.alphas, 3.0, torch.Generator().manual_seed(2))
        w = {k: v.detach().requires_grad_() for k, v in weights.items()}  # ∂L/∂w itself
        logits = net(x, w, index)
        params = [p for _, p in net.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(F.cross_entropy(logits, y), [*w.values(), *params], allow_unused=True)
        out[form] = logits, dict(zip(w, grads[:len(w)])), grads[len(w):], index
    (l1, gw1, gp1, index), (l2, gw2, gp2, _) = out["nb201"], out["nasnet"]
    assert torch.equal(l1, l2)
    for a, b in zip(gp1, gp2):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, rtol=1e-12, atol=1e-15))
    for kind in gw1:
        sampled = F.one_hot(torch.tensor(index[kind]), gw1[kind].shape[1]).bool()  # (E, M)
        assert torch.allclose(gw1[kind][sampled], gw2[kind][sampled], rtol=1e-12, atol=1e-15)
        assert not gw2[kind][~sampled].any()  # nasnet: no gradient off the sample
        off = gw1[kind].masked_fill(sampled, float("nan"))
        per_edge = off.nanmean(1, keepdim=True)
        assert torch.allclose(off[~sampled], per_edge.expand_as(off)[~sampled], rtol=1e-12, atol=1e-15)
        assert per_edge.abs().max() > 0


@given(st.integers(1, 3), st.integers(1, 5), st.integers(3, 9), st.integers(0, 100))
def test_fast_avg_pool_equals_avg_pool2d_without_padding_count(B: int, C: int, H: int, seed: int) -> None:
    from common.fast import avg_pool3x3
    x = torch.randn(B, C, H, H + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed),
                    requires_grad=True)
    ref = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    out = avg_pool3x3(x)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-13)
    g = torch.randn_like(ref)
    assert torch.allclose(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0], rtol=1e-12, atol=1e-13)


def test_darts_nonone_supernet_has_the_darts_weights_without_none() -> None:
    """`none` has no parameters: the none-free supernet holds exactly the DARTS supernet's weights, each
    mixed op's modules shifted down by one; with `none`'s weight 0 both compute the same logits."""
    torch.manual_seed(0)
    darts = Supernet("darts", C=4, N=3).double()
    nonone = Supernet("darts-nonone", C=4, N=3).double()
    assert sum(p.numel() for p in nonone.weight_parameters()) == sum(p.numel() for p in darts.weight_parameters())
    theirs = darts.state_dict()  # a mixed op's module o here is module o + 1 there (`none` is op 0)
    nonone.load_state_dict({k: v if k.startswith("alphas.") else
                            theirs[re.sub(r"\.ops\.(\d+)\.", lambda m: f".ops.{int(m[1]) + 1}.", k)]
                            for k, v in nonone.state_dict().items()})
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w7 = {k: F.softmax(torch.randn(14, 7, dtype=torch.float64), -1) for k in ("normal", "reduce")}
    w8 = {k: torch.cat([torch.zeros(14, 1, dtype=torch.float64), w], 1) for k, w in w7.items()}
    assert torch.allclose(nonone(x, w7), darts(x, w8), rtol=1e-12, atol=1e-13)
