"""SA-DARTS appendix: `--alpha-init`/`--alpha-init-mean` (Table 8's negative inits) and
the three-op NB201 space `nb201-3op` (Sec. 2.2, Fig. 5): op list, NB201 arch strings, one-hot = discrete."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from helpers import discrete_nb201
from torch.nn import functional as F

from common.config import SearchConfig, parse_config
from common.genotypes import derive_genotype, genotype_weights
from common.nb201 import NB201Table, parse_arch_str
from common.spaces import SPACES
from common.supernet import Supernet

THREE = ("skip_connect", "nor_conv_3x3", "avg_pool_3x3")


def test_alpha_init_scale_and_offset_exact():
    torch.manual_seed(3)
    ref = Supernet("darts", C=4, N=3)  # α = 1e-3·z
    for std, mean in ((2e-3, -5e-4), (0.0, -5e-3), (1e-3, 2e-3)):
        torch.manual_seed(3)  # the same draws z
        model = Supernet("darts", C=4, N=3, alpha_init_std=std, alpha_init_mean=mean)
        for k in ("normal", "reduce"):
            z = ref.alphas[k].detach() / 1e-3
            assert torch.allclose(model.alphas[k].detach(), mean + std * z, rtol=1e-6, atol=1e-12)
        if std == 0:  # a constant init: every α exactly the offset
            assert all(bool((a == torch.tensor(mean)).all()) for a in model.alphas.values())
    # the weights' draws do not depend on the α init (α is drawn last)
    assert torch.equal(ref.classifier.weight, model.classifier.weight)


def test_alpha_init_statistics():
    torch.manual_seed(0)
    a = torch.cat([Supernet("nb201", C=1, N=1, alpha_init_std=1e-3, alpha_init_mean=-2e-3).alphas["normal"]
                   .detach().flatten() for _ in range(100)])  # 3000 draws
    assert a.mean().item() == pytest.approx(-2e-3, abs=4 * 1e-3 / 3000 ** 0.5)
    assert a.std().item() == pytest.approx(1e-3, rel=0.07)


def test_alpha_init_flags_reach_the_run_and_errors(tmp_path, capsys):
    from common.run import SearchRun
    cfg = parse_config(SearchConfig, ["--dataset", "synthetic", "--C", "4", "--N", "1", "--device", "cpu",
                                      "--alpha-init", "0", "--alpha-init-mean=-1e-3", "--out", str(tmp_path / "r"), "--loader", "device",
                                      "--no-progress"])
    run = SearchRun(cfg, script="darts")
    assert bool((run.model.alphas["normal"] == torch.tensor(-1e-3)).all())
    assert json.loads((tmp_path / "r" / "args.json").read_text())["alpha_init_mean"] == -1e-3
    for bad in (["--alpha-init=-1e-3"], ["--alpha-init-mean", "nan"]):
        with pytest.raises(SystemExit) as err:
            parse_config(SearchConfig, bad)
        assert err.value.code == 2
        line = capsys.readouterr().err.strip()
        assert "--alpha-init" in line and "\n" not in line
    from edd_darts import EDDConfig, expected_positive_alpha
    edd = EDDConfig(alpha_init=2e-3)
    edd.resolve()
    assert edd.e_a == pytest.approx(2 * expected_positive_alpha(), rel=1e-12)  # E(a) follows the init


def test_three_op_space_ops_and_every_cell_is_nb201():
    space = SPACES["nb201-3op"]
    assert space.skeleton == "nb201" and space.edge_ops["normal"] == (THREE,) * 6
    assert space.alpha_shape("normal") == (6, 3) and not space.has_none("normal")
    seen = set()
    for choice in itertools.product(range(3), repeat=6):
        w = F.one_hot(torch.tensor(choice), 3).float()
        arch = derive_genotype({"normal": w}, space)
        assert parse_arch_str(arch) == [THREE[c] for c in choice]  # the official form, the chosen ops
        assert torch.equal(genotype_weights(arch, space)["normal"], w)  # and back
        seen.add(arch)
    assert len(seen) == 3 ** 6


def test_three_op_cells_are_answered_by_the_nb201_table(nb201_csv):
    table = NB201Table.load(nb201_csv)
    in_table = {a for a in table.arch_strs if set(parse_arch_str(a)) <= set(THREE)}
    derived = {derive_genotype({"normal": F.one_hot(torch.tensor(c), 3).float()}, SPACES["nb201-3op"])
               for c in itertools.product(range(3), repeat=6)}
    assert derived == in_table and len(in_table) == 729
    assert all(0 < table.query(a)["cifar10_test"] < 100 for a in list(derived)[:20])


@pytest.mark.parametrize("fast", [False, True])
def test_three_op_one_hot_supernet_equals_discrete_net(fast):
    from common.fast import FastSupernet
    torch.manual_seed(0)
    model = (FastSupernet if fast else Supernet)("nb201-3op", C=4, N=1).double()
    assert [m.op_names for m in model.cells[0].mixed] == [THREE] * 6
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        choice = tuple(torch.randint(3, (6,), generator=gen).tolist())
        w = F.one_hot(torch.tensor(choice), 3).double()
        assert torch.equal(model(x, {"normal": w}), discrete_nb201(model, x, [THREE[c] for c in choice]))


@pytest.mark.slow
def test_table8_plain_darts_on_three_op_space(shared_data, nb201_csv, tmp_path):
    """Plain DARTS (common.baseline) on nb201-3op from Table 8's α = 1e-3·(−2) + 1e-3·N(0, 1)."""
    from common.baseline import DartsConfig, search
    cfg = DartsConfig(space="nb201-3op", dataset="cifar10", data_dir=str(shared_data), limit_train=32, C=4, N=1,
                      epochs=1, batch_size=16, eval_images=16, out=str(tmp_path / "r"), progress=False,
                      device="cpu", nb201=str(nb201_csv), alpha_init_mean=-2e-3)
    cfg.resolve()
    result = search(cfg)
    assert set(parse_arch_str(result["genotype"])) <= set(THREE)
    assert result["nb201"] == NB201Table.load(nb201_csv).query(result["genotype"])
    assert len(result["alphas"]["normal"][0]) == 3


def test_table8_rows_carry_the_papers_numbers_in_the_report():
    from pathlib import Path

    from common.report import PAPER, label_of
    for suffix, c, acc in (("m0.5", "-0.5e-3", "54.30"), ("m1", "-1e-3", "54.30"), ("m2", "-2e-3", "70.92"),
                           ("m5", "-5e-3", "70.92")):  # SA-DARTS Table 8
        label = label_of(Path(f"runs/all/nb201/darts-init-{suffix}/cifar10/seed0"), {"dataset": "cifar10"})
        assert label == f"DARTS (α init {c})" and PAPER[label] == acc
