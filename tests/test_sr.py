"""Super-resolution pieces: MATLAB bicubic, Y/PSNR, the IMDN/DLSR spaces and counts, Eq. 18, data, search + retrain.

Real images come from scikit-image's bundled photographs (`skimage.data`); the SR datasets are not needed.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from common.data import DataError
from common.sr import data as srdata
from common.sr.metrics import cubic, imresize, psnr_y, resize_weights, rgb_to_y
from common.sr.search import SRSearchConfig, flops_loss, search
from common.sr.spaces import (
    DLSR_OPS,
    IMDN_OPS,
    IMDN_ORIGINAL,
    Choice,
    SRGenotype,
    SRSupernet,
    build,
    complexity,
    dlsr_op,
    imdn_op,
    op_costs,
)

SKIMAGE = "scikit-image (the `test` extra) ships the photographs these tests use: pip install scikit-image"


def photos() -> list[np.ndarray]:
    """Four real photographs bundled with scikit-image (the test skips without it)."""
    skdata = pytest.importorskip("skimage.data", reason=SKIMAGE)
    return [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]


# ----------------------------------------------------------------------------- metrics

def test_cubic_kernel_closed_form():
    # Keys (a = -0.5): 1.5|x|^3 - 2.5|x|^2 + 1 on [0, 1], -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on (1, 2]
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5, -1.5])
    assert np.allclose(cubic(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625, -0.0625])


def test_resize_weights_antialiased_width_and_partition_of_unity():
    W = resize_weights(64, 32, 0.5)
    assert np.allclose(W.sum(1), 1)
    interior = W[8:-8]
    assert ((np.abs(interior) > 1e-12).sum(1) == 8).all()  # 4/s = 8 taps when shrinking by 2 (antialiasing)
    assert ((np.abs(resize_weights(16, 32, 2.0)[4:-4]) > 1e-12).sum(1) == 4).all()  # 4 taps when enlarging


def test_imresize_constant_and_ramp():
    const = np.full((20, 30, 3), 0.3)
    assert np.allclose(imresize(const, 0.5), 0.3)
    ramp = np.tile(np.arange(1, 41, dtype=np.float64), (40, 1))  # value = column index (1-based)
    out = imresize(ramp, 0.5)
    j = np.arange(1, 21)
    # Keys' kernel reproduces linear functions: output column j sits at u = 2j - 0.5 in input coordinates
    assert np.allclose(out[5:-5, 3:-3], (2 * j - 0.5)[3:-3][None, :])


def test_imresize_uint8_differs_from_torch_bicubic():
    hr = photos()[0][:128, :128]
    ours = imresize(hr, 0.5).astype(np.float64)
    x = torch.from_numpy(hr.transpose(2, 0, 1).copy()).double()[None]
    theirs = F.interpolate(x, scale_factor=0.5, mode="bicubic", align_corners=False)[0].numpy().transpose(1, 2, 0)
    assert ours.shape == theirs.shape == (64, 64, 3)
    assert np.abs(ours - theirs).mean() > 0.5  # another degradation: LR must be made the MATLAB way


def test_y_matches_its_definition_and_skimage():
    rgb2ycbcr = pytest.importorskip("skimage.color", reason=SKIMAGE).rgb2ycbcr
    assert torch.allclose(rgb_to_y(torch.tensor([1.0, 0.0, 0.0])[:, None, None]), torch.tensor(16 + 65.481))
    assert torch.allclose(rgb_to_y(torch.ones(3, 1, 1)), torch.tensor(235.0))
    assert torch.allclose(rgb_to_y(torch.zeros(3, 1, 1)), torch.tensor(16.0))
    img = photos()[1]
    ours = rgb_to_y(torch.from_numpy(img.transpose(2, 0, 1).copy()).double() / 255).numpy()
    assert np.allclose(ours, rgb2ycbcr(img)[..., 0], atol=1e-9)


def test_psnr_closed_case_and_border_crop():
    a, b = 100 / 255, 110 / 255  # grey images: Y differs by (65.481 + 128.553 + 24.966)·(b - a) = 219·10/255
    hr, sr = (torch.full((1, 3, 12, 12), v, dtype=torch.float64) for v in (a, b))
    assert psnr_y(sr, hr, crop=2).item() == pytest.approx(20 * math.log10(255 / (219 * 10 / 255)), abs=1e-9)
    sr2 = hr.clone()
    sr2[..., :2, :] = 0  # damage the border only
    assert math.isinf(psnr_y(sr2, hr, crop=2).item())
    assert math.isfinite(psnr_y(sr2, hr, crop=1).item())


# ----------------------------------------------------------------------------- spaces

def test_imdn_candidates_names_shapes_and_param_counts():
    assert len(IMDN_OPS) == 12 and len(set(IMDN_OPS)) == 12
    assert set(IMDN_OPS) == {f"{k}_{s}x{s}{b}" for k in ("conv", "sep_conv", "dil_sep_conv") for s in (3, 5)
                             for b in ("", "_bn")}
    x = torch.randn(2, 48, 9, 11)
    for name in IMDN_OPS:
        op = imdn_op(name, 48, 16)
        assert op(x).shape == (2, 16, 9, 11), name
        k = 5 if "5x5" in name else 3
        bn = 2 * 16 if name.endswith("_bn") else 0
        hand = 48 * 16 * k * k + 16 if name.startswith("conv") else 48 * k * k + 48 * 16 + 16  # dw + pw
        assert sum(p.numel() for p in op.parameters()) == hand + bn, name
    dil = imdn_op("dil_sep_conv_3x3", 4, 4)[0]
    assert dil.dilation == (2, 2) and dil.groups == 4


def test_dlsr_candidates_shapes():
    assert len(DLSR_OPS) == 9
    x = torch.randn(1, 8, 10, 10)
    for name in DLSR_OPS:
        assert dlsr_op(name, 8)(x).shape == x.shape, name
    assert sum(p.numel() for p in dlsr_op("sep_conv_3x3", 8).parameters()) == 2 * (8 * 9 + 8 * 8)


def test_one_hot_mixed_op_equals_the_single_op():
    torch.manual_seed(0)
    ops = [imdn_op(n, 6, 5).double().eval() for n in IMDN_OPS]
    mixed = Choice(IMDN_OPS, ops)
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    for o in range(12):
        w = F.one_hot(torch.tensor(o), 12).double()
        assert torch.equal(mixed(x, w), ops[o](x))


def test_one_hot_imdn_supernet_equals_discrete_network():
    torch.manual_seed(0)
    sup = SRSupernet("imdn").double().eval()
    ops = ("sep_conv_5x5_bn", "dil_sep_conv_3x3", "conv_3x3", "conv_5x5_bn")
    idx = [IMDN_OPS.index(o) for o in ops]
    net = build(SRGenotype("imdn", ops)).double().eval()
    state = {}
    for k, v in sup.net.state_dict().items():
        parts = k.split(".")
        if ".ops." in k:  # blocks.i.c.p.ops.o.rest → keep o = the chosen candidate as ops.0
            p, o = int(parts[3]), int(parts[5])
            if o != idx[p]:
                continue
            parts[5] = "0"
        state[".".join(parts)] = v
    net.load_state_dict(state)
    x = torch.rand(1, 3, 12, 10, dtype=torch.float64)
    onehot = F.one_hot(torch.tensor(idx), 12).double()
    assert torch.allclose(sup.net(x, {"cell": onehot, "net": []}), net(x), atol=1e-12)


def test_partial_channels_pass_through_and_widths():
    torch.manual_seed(0)
    from common.sr.spaces import _choice
    same = _choice("dlsr", None, 8, 8, k=4)  # PC-DARTS: 2 channels searched, 6 passed, shuffled in 4 groups
    x = torch.randn(1, 8, 6, 6)
    w = F.softmax(torch.randn(9), -1)
    out = same(x, w)
    y = sum(w_o * op(x[:, :2]) for w_o, op in zip(w, same.ops))
    assert torch.allclose(out[:, 0::4], y, atol=1e-6)  # group 0: the mixed op's output
    for g in range(1, 4):  # groups 1..3: the passed channels 2..7, unchanged
        assert torch.equal(out[:, g::4], x[:, 2 * g:2 * g + 2])
    wide = _choice("imdn", None, 48, 64, k=4)  # widths differ: 12 input channels → all 64 outputs
    assert wide(torch.randn(1, 48, 5, 5), F.softmax(torch.randn(12), -1)).shape == (1, 64, 5, 5)
    assert wide.ops[0][0].in_channels == 12
    for space in ("imdn", "dlsr"):
        assert SRSupernet(space, partial_channels=4)(torch.rand(1, 3, 16, 16)).shape == (1, 3, 32, 32)


def test_derivation_argmax_and_dlsr_top2_inputs():
    sup = SRSupernet("dlsr")
    with torch.no_grad():
        sup.alpha.zero_()
        sup.alpha[0, 3] = sup.alpha[1, 8] = sup.alpha[2, 0] = 1.0
        for b in sup.betas:
            b.zero_()
            b[-1], b[0] = 2.0, 1.0
    g = sup.genotype()
    assert g.ops == ("conv_7x7", "dil_conv_5x5", "conv_1x1")
    assert g.inputs == ((0, 1), (0, 2), (0, 3), (0, 4))
    net = build(g)
    assert net(torch.rand(1, 3, 16, 18)).shape == (1, 3, 32, 36)
    assert SRGenotype.from_dict(json.loads(g.to_json())) == g
    with pytest.raises(ValueError, match="cell 4"):
        build(SRGenotype("dlsr", g.ops, ((0, 1), (1, 3), (0, 1), (0, 1))))  # cell 4 cannot read cell 4


def test_counts_small_network_by_hand():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
                              torch.nn.Conv2d(8, 4, 1), torch.nn.PixelShuffle(2))
    params, macs = complexity(net, (10, 12))
    assert params == (3 * 8 * 9 + 8) + (8 * 9 + 8) + (8 * 4 + 4)
    assert macs == 10 * 12 * (8 * 3 * 9 + 8 * 9 + 4 * 8)


def test_counts_match_table3_imdn_rows():
    params, macs = complexity(build(SRGenotype("imdn", IMDN_ORIGINAL), scale=4))
    assert params == 715_176  # Table 3 IMDN: 715.18 K (IMDN's default x4 constructor)
    assert macs / 1e9 == pytest.approx(654.53, rel=1e-3)  # Table 3: 654.53 G (ours 654.17 G)
    assert complexity(build(SRGenotype("imdn", IMDN_ORIGINAL), scale=2))[0] == 694_404  # IMDN_x2.pth
    beta = SRGenotype("imdn", ("conv_5x5_bn", "conv_5x5", "conv_5x5_bn", "conv_5x5_bn"))
    assert complexity(build(beta, scale=4))[0] == 1_773_672  # Table 3 IMDN + β-DARTS: 1773.67 K


@pytest.mark.parametrize("ops, params_k, macs_g", [
    (("sep_conv_5x5", "conv_1x1", "sep_conv_7x7"), 322.62, None),  # DLSR (reproduced)
    (("conv_7x7",) * 3, 2243.00, None),  # DLSR + β-DARTS
    (("sep_conv_3x3",) * 3, 309.37, None),  # SAC-DLSR
    (("dil_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"), 264.73, 215.90),  # SA-DLSR
])
def test_counts_match_table3_dlsr_rows(ops, params_k, macs_g):
    from common.sr.spaces import DLSR_NET_LEVEL
    params, macs = complexity(build(SRGenotype("dlsr", ops, DLSR_NET_LEVEL)))
    assert round(params / 1e3, 2) == params_k
    if macs_g is not None:
        assert round(macs / 1e9, 2) == macs_g


def test_op_costs_eq18_c():
    c = op_costs("imdn", (4, 5))
    assert c.shape == (4, 12)
    assert c[0, IMDN_OPS.index("conv_3x3")] == 4 * 5 * 64 * 64 * 9
    assert c[3, IMDN_OPS.index("sep_conv_5x5_bn")] == 4 * 5 * (48 * 25 + 48 * 16)
    assert op_costs("dlsr", (2, 2)).shape == (3, 9)


def test_flops_loss_gradient_by_finite_differences():
    costs = op_costs("imdn", (3, 3))
    alpha = (0.3 * torch.randn(4, 12, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: flops_loss(F.softmax(a, -1), costs), (alpha,))
    uniform = flops_loss(torch.full((4, 12), 1 / 12, dtype=torch.float64), costs)
    assert uniform.item() == pytest.approx(1 / 12)  # Σ_i β_i c_i / Σ c with β = 1/M everywhere


# ----------------------------------------------------------------------------- data

@pytest.fixture
def sr_root(tmp_path):
    """DATA/DIV2K (4 photographs, 96×96 crops) and DATA/benchmark/Set5 (2 photographs), LR by imresize."""
    div2k = tmp_path / "DIV2K"
    for i, im in enumerate(photos()):
        srdata.write_image(div2k / "DIV2K_train_HR" / f"{i + 1:04d}.png", np.ascontiguousarray(im[:96, :97]))
    srdata.write_lr_folder(div2k / "DIV2K_train_HR", div2k / "DIV2K_train_LR_bicubic" / "X2", 2)
    set5 = tmp_path / "benchmark" / "Set5"
    for name, im in (("astronaut", photos()[0][180:230, 200:261]), ("coffee", photos()[2][100:140, 200:240])):
        srdata.write_image(set5 / "HR" / f"{name}.png", np.ascontiguousarray(im))
    srdata.write_lr_folder(set5 / "HR", set5 / "LR_bicubic" / "X2", 2)
    return tmp_path


def test_readers_pairs_and_patches(sr_root):
    pairs = srdata.div2k_pairs(sr_root, 2, srdata.parse_range("2-3"))
    assert [n for n, _, _ in pairs] == ["0002", "0003"]
    for _, hr, lr in pairs:
        assert hr.shape == (96, 96, 3) and lr.shape == (48, 48, 3)  # 97 modcropped to 96
        assert np.array_equal(lr, imresize(hr, 0.5))
    s5 = srdata.benchmark_pairs(sr_root, "Set5", 2)
    assert [(n, hr.shape) for n, hr, _ in s5] == [("astronaut", (50, 60, 3)), ("coffee", (40, 40, 3))]
    sampler = srdata.PatchSampler(pairs, 2, 16, 5, np.random.default_rng(0), augment=False)
    lr_b, hr_b = sampler.batch()
    assert lr_b.shape == (5, 3, 8, 8) and hr_b.shape == (5, 3, 16, 16)
    for lo, hi in zip(lr_b, hr_b):  # each LR patch sits at (y, x) of some LR image, its HR patch at (2y, 2x)
        lo8 = (lo * 255).round().byte().permute(1, 2, 0).numpy()
        hi8 = (hi * 255).round().byte().permute(1, 2, 0).numpy()
        found = [(hr, y, x) for _, hr, lr in pairs for y in range(41) for x in range(41)
                 if np.array_equal(lr[y:y + 8, x:x + 8], lo8)]
        assert any(np.array_equal(hr[2 * y:2 * y + 16, 2 * x:2 * x + 16], hi8) for hr, y, x in found)


def test_augmented_patches_stay_aligned(sr_root):
    pairs = srdata.div2k_pairs(sr_root, 2, range(1, 5))
    sampler = srdata.PatchSampler(pairs, 2, 32, 24, np.random.default_rng(1), augment=True)
    lr_b, hr_b = sampler.batch()
    to8 = lambda t: (t * 255).round().byte().permute(1, 2, 0).numpy()  # noqa: E731
    worst = max(np.abs(imresize(to8(hi), 0.5).astype(int) - to8(lo).astype(int))[3:-3, 3:-3].max()
                for lo, hi in zip(lr_b, hr_b))
    assert worst <= 1  # the LR patch is the bicubic image of its HR patch (±1: rows/columns rounding order)
    shifted = np.abs(imresize(to8(hr_b[0]), 0.5)[3:-3, 4:-2].astype(int) - to8(lr_b[0])[3:-3, 3:-3].astype(int))
    assert shifted.max() > 1  # one pixel off is visible


def test_missing_folder_is_one_clear_line(tmp_path):
    with pytest.raises(DataError, match=r"DIV2K_train_HR.*https://data.vision.ee.ethz.ch/cvl/DIV2K"):
        srdata.div2k_pairs(tmp_path, 2, range(1, 3))
    with pytest.raises(DataError, match=r"benchmark/Urban100/HR.*benchmark.tar"):
        srdata.benchmark_pairs(tmp_path, "Urban100", 2)


# ----------------------------------------------------------------------------- search + retrain

def _search_cfg(root, out, **kw) -> SRSearchConfig:
    kw = {"space": "imdn", "reg": "sa", **kw}
    cfg = SRSearchConfig( data_dir=str(root), train_images="1-2", arch_images="3-4",
                         patch=kw.pop("patch", 16), batch_size=1, epochs=kw.pop("epochs", 2), steps=1, device="cpu", out=str(out), **kw)
    cfg.resolve()
    return cfg


@pytest.mark.slow  # ~12 s of CPU, 20-40 s on a busy machine
def test_search_resume_and_retrain_end_to_end(sr_root, tmp_path):
    sa_darts = pytest.importorskip("sa_darts")
    from common.sr.train import RetrainConfig, train
    regs = sa_darts.regulariser
    straight = search(_search_cfg(sr_root, tmp_path / "a", flops_weight=1.0), regs)
    first = _search_cfg(sr_root, tmp_path / "b", flops_weight=1.0)
    first.epochs = 1
    search(first, regs)
    search(_search_cfg(sr_root, tmp_path / "b", flops_weight=1.0, resume=True), regs)
    a = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in a] == [1, 2]
    from common.run import RunError, RunFinished
    with pytest.raises(RunError, match="--space"):  # a resume must keep the run's settings
        search(_search_cfg(sr_root, tmp_path / "b", space="dlsr", patch=32, resume=True, epochs=3), regs)
    with pytest.raises(RunFinished):  # --resume of a finished run: nothing to do (exit 0 under main_guard)
        search(_search_cfg(sr_root, tmp_path / "a", flops_weight=1.0, resume=True), regs)
    assert a[-1]["beta"] == b[-1]["beta"] and a[-1]["train_l1"] == b[-1]["train_l1"]  # resume = straight
    assert a[0]["lam"] == pytest.approx(0.2) and a[1]["lam"] == pytest.approx(0.4)  # λ_e = e/5
    assert 0 < a[0]["flops_loss"] < 1
    assert all(o in IMDN_OPS for o in straight["genotype"]["ops"])
    cfg = RetrainConfig(genotype=str(tmp_path / "a" / "result.json"), paper_row="sac-imdn", data_dir=str(sr_root),
                        train_images="1-4", test_sets=["Set5"], patch=32, batch_size=1, epochs=1, steps=1,
                        device="cpu", out=str(tmp_path / "r"))
    cfg.resolve()
    result = train(cfg)
    assert result["genotype"] == straight["genotype"]
    assert 0 < result["psnr"]["Set5"] < 60
    assert result["paper"]["Set5"] == 37.98
    assert "37.98" in (tmp_path / "r" / "log.txt").read_text()


def test_dlsr_sac_beta_search_one_epoch(sr_root, tmp_path):
    sa_darts = pytest.importorskip("sa_darts")
    regs = sa_darts.regulariser
    cfg = _search_cfg(sr_root, tmp_path / "d", space="dlsr", reg="beta", partial_channels=4, warmup=0, patch=32)
    cfg.epochs = 1
    result = search(cfg, regs)
    rec = json.loads((tmp_path / "d" / "metrics.jsonl").read_text())
    assert [len(b) for b in rec["net_beta"]] == [2, 3, 4, 5]  # dense network level: cells 3..6
    assert rec["lam"] == 0.0 and rec["reg_value"] == 0.0  # β-DARTS: λ = 0.5·epoch, 0 in epoch 0
    g = result["genotype"]
    assert len(g["ops"]) == 3 and all(o in DLSR_OPS for o in g["ops"]) and len(g["inputs"]) == 4
    assert json.loads((tmp_path / "d" / "args.json").read_text())["partial_channels"] == 4


def test_search_refuses_a_regulariser_it_was_not_given(sr_root, tmp_path):
    from common.run import RunError
    with pytest.raises(RunError, match="sa_darts.py --task sr"):
        search(_search_cfg(sr_root, tmp_path / "e"), None)


def test_run_all_sr_rows_parse_and_name_their_paper_rows(tmp_path):
    """`run_all.sh --spaces sr`: one search per Table 3/7 row, each line a valid SR search command (its flags
    parse), and `--eval` retrains each finished one beside the paper row its label names."""
    import shlex
    import subprocess
    from pathlib import Path

    from common.config import parse_config
    from common.sr.train import PAPER_ROWS, RetrainConfig
    root = Path(__file__).resolve().parents[1]
    runs = tmp_path / "runs"

    def dry(*flags):
        proc = subprocess.run(["bash", "run_all.sh", "--spaces", "sr", "--runs", str(runs), "--dry-run", *flags],
                              cwd=root, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return [shlex.split(line) for line in proc.stdout.splitlines()]
    searches = dry()
    labels = [Path(argv[argv.index("--out") + 1]).parts[-3] for argv in searches]
    assert len(searches) == 7 and set(labels) <= set(PAPER_ROWS)
    for argv in searches:
        assert argv[1:4] == ["sa_darts.py", "--task", "sr"]
        cfg = parse_config(SRSearchConfig, argv[4:])
        assert cfg.resume and cfg.seed == 0 and cfg.reg in ("sa", "beta", "none")
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "result.json").write_text("{}")
    evals = dry("--eval")
    assert len(evals) == 7
    for argv in evals:
        assert argv[1:3] == ["-m", "common.sr.train"]
        cfg = parse_config(RetrainConfig, argv[3:])
        assert cfg.paper_row in labels and cfg.genotype.endswith(f"{cfg.paper_row}/div2k/seed0/result.json")
