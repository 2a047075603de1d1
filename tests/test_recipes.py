"""Issue 17: `--clip-scope official` against a literal transcription of the official NB201 loop, the
authors' temperature / p calendars as recorded facts read from their public scripts, and `--recipe`;
S1-S4 (the second half of the file): the authors' S1-S4 scripts' settings per method, space and dataset,
their swept values required, their w step (softmax applied twice) and genotype tie rules.

Sources of the recorded facts (read with the project's search tools; numbers copied, no code):
- EDD, NB201: github.com/chaoji90/PCDEDD, AutoDL-Projects_edd/exps/algos/DARTS-V1-10.py lines 187-214
  (t = 1, d = 0, interval 5, ρ = 0.5, warm-up 10; at the *start* of epoch e, if e == 10 or (e > 10 and
  e % interval == 0): H = entropy of softmax(α/t) summed over edges; λ = 0.04 if e <= 39 else 0.08 and
  interval 1; d = λ·0.5·H + 0.5·d; t = 0.000399/ln(1 + d·count); count += 1, count starting at 1).
- PCD, NB201: same repository, AutoDL-Projects_pcd/exps/algos/DARTS-V1-10.py lines 188-205 (warm-up 5)
  and DARTS-V1-100.py line 194 (warm-up 10): d = 0.11, t_n = 0.000399/ln(1 + 0.11·n); epochs >= warm-up
  and < 40 use [1, t1, t2, t3, t4, t5, t4, t3, t2, t1][epoch % 10], epochs >= 40 [t1 … t10][epoch % 10].
- PCD, DARTS space: PCDEDD-DARTS/train_search_cyc.py lines 109-126 (the same lists, warm-up 0).
- SP, NB201: github.com/chaoji90/SP-DARTS, AutoDL-Projects_sp/exps/algos/DARTS-V1-10.py line 196
  (epoch >= 1: t = 0.0011, C += 1/49) and DARTS-V1-100.py lines 192-197 (epoch >= 45: t = 0.0006, C
  unchanged; else t = 0.0013, C += 0.9/49); line 36 of both: smooth branch at 11·t, sparse at t, the
  sparse one when rand < C (so p = C).
"""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from aer_darts import AERConfig
from authors.edd import EDDConfig, pcd_updown_temperature
from authors.sp import SPConfig, epoch_schedule
from common.config import build_parser, parse_config
from common.fast import build_supernet
from common.search import alpha_step, w_step
from edd_darts import end_epoch_schedule, op_weights
from sa_darts import SAConfig

pytestmark = pytest.mark.usefixtures("lean_search_setup")  # conftest.py: the NB201 table read once

ROOT = Path(__file__).resolve().parents[1]
E_A_CODE = 0.000399  # their hard-coded E(a)


# ------------------------------------------------------------------------- clip scope "official"

def _batches(n: int, seed: int = 0, hw: int = 16) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, hw, hw, generator=g), torch.randint(0, 10, (8,), generator=g),
             torch.randn(8, 3, hw, hw, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


def _optimisers(model):
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return w_opt, a_opt


def official_loop(network, batches, t: float, clip: float) -> list[float]:
    """xautodl's DARTS-V1 search step, transcribed: zero_grad, backward, clip network.parameters(), step."""
    w_optimizer, a_optimizer = _optimisers(network)
    norms = []
    for base_inputs, base_targets, arch_inputs, arch_targets in batches:
        w_optimizer.zero_grad()
        logits = network(base_inputs, {k: F.softmax(a / t, dim=-1) for k, a in network.alphas.items()})
        base_loss = F.cross_entropy(logits, base_targets)
        base_loss.backward()
        norms.append(float(nn.utils.clip_grad_norm_(network.parameters(), clip)))
        w_optimizer.step()
        a_optimizer.zero_grad()
        logits = network(arch_inputs, {k: F.softmax(a / t, dim=-1) for k, a in network.alphas.items()})
        arch_loss = F.cross_entropy(logits, arch_targets)
        arch_loss.backward()
        a_optimizer.step()
    return norms


def ours(model, batches, t: float, clip: float, scope: str) -> None:
    w_opt, a_opt = _optimisers(model)
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    fwd = lambda x: model(x, {k: F.softmax(a / t, dim=-1) for k, a in model.alphas.items()})
    for x_t, y_t, x_v, y_v in batches:
        w_step(fwd, x_t, y_t, w_params, w_opt, clip, a_params if scope == "official" else None)
        alpha_step(fwd, x_v, y_v, a_params, a_opt)


@pytest.mark.parametrize("space,fast", [("nb201", False), ("nb201", True), ("darts", False)])
def test_official_clip_scope_equals_the_transcribed_official_loop(space, fast):
    torch.manual_seed(0)
    model = build_supernet(space, 4, 1 if space == "nb201" else 3, 10, fast=fast)  # DARTS: normal, 2 reduce
    reference, mine, w_only = (copy.deepcopy(model) for _ in range(3))
    batches, t, clip = _batches(4 if space == "nb201" else 3, hw=16 if space == "nb201" else 8), 1e-3, 5.0
    norms = official_loop(reference, batches, t, clip)
    assert min(norms) > clip  # the clip triggers on every step (α's ∝ 1/t gradient dominates the norm)
    ours(mine, batches, t, clip, "official")
    for p, q in zip(mine.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)
    if space == "darts":
        return
    ours(w_only, batches, t, clip, "w")  # and the scope matters: clipping w alone ends elsewhere
    assert not all(torch.equal(p, q) for p, q in zip(w_only.weight_parameters(), reference.weight_parameters()))


def test_official_scope_counts_the_stale_alpha_gradient():
    """First step: α.grad is empty, so the norm is w and ∇α L_train; later ones add the last α step's."""
    torch.manual_seed(1)
    model = build_supernet("nb201", 4, 1, 10)
    w_opt, a_opt = _optimisers(model)
    (x, y, xv, yv), = _batches(1, seed=3)
    fwd = lambda x: model(x, {k: F.softmax(a / 0.01, dim=-1) for k, a in model.alphas.items()})
    stale = [torch.full_like(a, 0.5) for a in model.arch_parameters()]
    for a, s in zip(model.arch_parameters(), stale):
        a.grad = s.clone()
    loss = F.cross_entropy(fwd(x), y)
    g = torch.autograd.grad(loss, model.weight_parameters() + model.arch_parameters(), allow_unused=True)
    n_w = len(model.weight_parameters())
    expected = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(d) for d in g[:n_w] if d is not None]
        + [torch.linalg.vector_norm(d + s) for d, s in zip(g[n_w:], stale)]))
    w_step(fwd, x, y, model.weight_parameters(), w_opt, 1.0, model.arch_parameters())  # clips: norm > 1
    coef = 1.0 / (float(expected) + 1e-6)  # torch's clip factor for the norm over w, ∇α L_train + stale
    assert coef < 1
    for a, d, s in zip(model.arch_parameters(), g[n_w:], stale):
        torch.testing.assert_close(a.grad, (d + s) * coef, rtol=1e-5, atol=0)
    alpha_step(fwd, xv, yv, model.arch_parameters(), a_opt)  # the α step overwrites that sum
    assert all(not torch.allclose(a.grad, (d + s) * coef) for a, d, s in zip(model.arch_parameters(), g[n_w:], stale))


# ------------------------------------------------------------------------- EDD / PCD calendars

EDD_DECAY_EPOCHS = [10, 15, 20, 25, 30, 35] + list(range(40, 50))  # decays at the start of these epochs


def _run_calendar(cfg, entropies):
    """Our schedule over cfg.epochs, fed `entropies[e]` as the entropy measured after epoch e."""
    state = {"t": cfg.t0, "k": 0, "d_exp": cfg.pcd_d if cfg.schedule == "pcd" else 0.0, "lam": cfg.lam}
    if cfg.schedule == "pcd" and cfg.pcd_shape == "updown":
        state["t"] = pcd_updown_temperature(0, cfg.e_a, cfg.t0, cfg.pcd_d, cfg.pcd_period, cfg.warmup,
                                            cfg.late_from, 1.0 if cfg.t0_exp_one else None)
    temps, lams = [], []
    for epoch in range(cfg.epochs):
        temps.append(state["t"])
        end_epoch_schedule(state, cfg, entropies[epoch], epoch, [])
        lams.append(state["lam"])
    return temps, lams


def test_edd_authors_nb201_calendar_both_lambda_phases():
    cfg = parse_config(EDDConfig, ["--recipe", "authors"])
    entropies = [8.0 - 0.13 * e + 0.05 * math.sin(e) for e in range(50)]  # any positive sequence
    temps, _ = _run_calendar(cfg, entropies)
    expected, t, d, count = [], 1.0, 0.0, 1
    for epoch in range(50):  # the recorded calendar (module docstring)
        if epoch in EDD_DECAY_EPOCHS:
            lam = 0.04 if epoch <= 39 else 0.08
            d = lam * entropies[epoch - 1] * 0.5 + 0.5 * d  # entropy of the epoch just finished
            t = E_A_CODE / math.log(1 + d * count)
            count += 1
        expected.append(t)
    assert temps == pytest.approx(expected, rel=1e-12, abs=0)
    assert temps[:10] == [1.0] * 10 and len(set(temps[10:15])) == 1 and len(set(temps[40:])) == 10
    # the pre-fix meaning of --late-from 40 (λ 0.04 for epoch 40's decay) changes epochs 40-49
    old = parse_config(EDDConfig, ["--recipe", "authors", "--late-from", "41"])
    old_temps, _ = _run_calendar(old, entropies)
    assert old_temps[:40] == temps[:40] and abs(old_temps[40] / temps[40] - 1) > 0.05


def test_edd_authors_darts_space_uses_normal_cell_mean_entropy():
    cfg = parse_config(EDDConfig, ["--recipe", "authors", "--space", "darts"])
    assert (cfg.warmup, cfg.decay_every, cfg.late_from, cfg.lam, cfg.lam_late) == (5, 5, 40, 0.06, 0.12)
    assert (cfg.entropy, cfg.entropy_cells, cfg.sn_cells, cfg.st_const, cfg.batch_size) == (
        "mean", "normal", "normal", True, 80)
    # PCDEDD-DARTS/model_search_cyc.py:163-194: 3 decimals, equal edges → the earlier input, equal ops → the first
    assert (cfg.derive_decimals, cfg.derive_ties, cfg.w_double_softmax) == (3, "earlier-input-first-op", False)
    alphas = {"normal": torch.randn(14, 8, dtype=torch.float64, requires_grad=True),
              "reduce": torch.randn(14, 8, dtype=torch.float64, requires_grad=True)}
    t = 0.3
    w = op_weights(alphas, t, 1 / t, "sn", ["normal"])
    g = torch.randn(14, 8, dtype=torch.float64)
    gn, gr = torch.autograd.grad((w["normal"] * g).sum() + (w["reduce"] * g).sum(), list(alphas.values()))
    plain = lambda a: torch.autograd.grad((F.softmax(a / t, -1) * g).sum(), a)[0]
    noise = lambda a: torch.autograd.grad((F.softmax(a, -1) * g).sum(), a)[0]  # st ≡ 1: 𝒜_1·g
    torch.testing.assert_close(gr, plain(alphas["reduce"]))  # reduce: plain softmax(α/t)
    torch.testing.assert_close(gn, plain(alphas["normal"]) + noise(alphas["normal"]))  # normal: sn-softmax


PCD_N = {  # index n of t_n per epoch (0: t = 1), recorded from their lists (module docstring)
    5: [0] * 5 + [5, 4, 3, 2, 1] + [0, 1, 2, 3, 4, 5, 4, 3, 2, 1] * 3 + list(range(1, 11)),
    10: [0] * 10 + [0, 1, 2, 3, 4, 5, 4, 3, 2, 1] * 3 + list(range(1, 11)),
    0: [0, 1, 2, 3, 4, 5, 4, 3, 2, 1] * 4 + list(range(1, 11)),
}


@pytest.mark.parametrize("argv,warmup", [(["--dataset", "cifar10"], 5), (["--dataset", "cifar100"], 10),
                                         (["--space", "darts"], 0)])
def test_pcd_authors_calendar(argv, warmup):
    cfg = parse_config(EDDConfig, ["--recipe", "authors", "--schedule", "pcd", *argv])
    assert cfg.warmup == warmup
    temps, _ = _run_calendar(cfg, [1.0] * 50)
    expected = [1.0 if n == 0 else E_A_CODE / math.log(1 + 0.11 * n) for n in PCD_N[warmup]]
    assert temps == pytest.approx(expected, rel=1e-12, abs=0)


def test_pcd_paper_calendar_is_unchanged_sawtooth():
    cfg = parse_config(EDDConfig, ["--schedule", "pcd", "--warmup", "20"])
    temps, _ = _run_calendar(cfg, [1.0] * 50)
    e_a = cfg.e_a
    expected = [1.0] * 20 + [1.0 if n == 0 else e_a / math.log(math.exp(e_a) + 0.11 * n)
                             for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 0] * 3]
    assert temps == pytest.approx(expected, rel=1e-12, abs=0)


# ------------------------------------------------------------------------- SP calendars

def test_sp_authors_nb201_p_and_temperatures_per_epoch():
    c10 = parse_config(SPConfig, ["--recipe", "authors"])
    c100 = parse_config(SPConfig, ["--recipe", "authors", "--dataset", "cifar100"])
    C10, C100 = 0.0, 0.0
    for epoch in range(1, 50):  # the recorded calendars (module docstring); epoch 0 is their warm-up
        C10 += 1 / 49
        p, t_sp, t_sm = epoch_schedule(epoch, c10)
        assert (p, t_sp, t_sm) == pytest.approx((C10, 0.0011, 11 * 0.0011), rel=1e-12)
        if epoch >= 45:
            t = 0.0006
        else:
            t, C100 = 0.0013, C100 + 0.9 / 49
        assert epoch_schedule(epoch, c100) == pytest.approx((C100, t, 11 * t), rel=1e-12)
    assert C100 == pytest.approx(0.808, abs=5e-4)
    assert epoch_schedule(0, c10)[0] == 0.0 and epoch_schedule(0, c100)[0] == 0.0


def test_sp_authors_darts_space_warms_up_at_t10():
    cfg = parse_config(SPConfig, ["--recipe", "authors", "--space", "darts"])
    assert epoch_schedule(0, cfg) == (0.0, 10.0, 10.0)
    assert epoch_schedule(1, cfg) == pytest.approx((1 / 49, 1e-3, 1e-2), rel=1e-12)
    assert (cfg.batch_size, cfg.clip_scope, cfg.w_lr_min, cfg.w_nesterov) == (80, "w", None, False)
    assert parse_config(SPConfig, ["--recipe", "authors"]).w_nesterov  # NB201's code: Nesterov


# ------------------------------------------------------------------------- the recipe mechanism

@pytest.mark.parametrize("cls", [EDDConfig, SPConfig, AERConfig, SAConfig])
def test_paper_recipe_is_the_defaults(cls):
    assert parse_config(cls, []) == parse_config(cls, ["--recipe", "paper"])
    assert parse_config(cls, []).clip_scope == "w"
    text = build_parser(cls).format_help()  # --help renders (help strings go through %-formatting)
    assert "--recipe {paper,authors}" in text and "--clip-scope {w,official}" in text


def test_explicit_flags_override_the_recipe():
    cfg = parse_config(SPConfig, ["--recipe", "authors", "--t-sm-ratio", "10", "--clip-scope", "w",
                                  "--batch-size", "32"])
    assert (cfg.t_sm_ratio, cfg.clip_scope, cfg.batch_size, cfg.t_sp, cfg.w_lr) == (10.0, "w", 32, 1.1e-3, 0.05)
    edd = parse_config(EDDConfig, ["--recipe", "authors", "--no-t0-exp-one", "--lam=0.05", "--softmax", "sn"])
    assert (edd.t0_exp_one, edd.lam, edd.softmax, edd.lam_late, edd.entropy) == (False, 0.05, "sn", 0.08, "sum")
    aer = parse_config(AERConfig, ["--recipe", "authors"])
    assert (aer.clip_scope, aer.batch_size, aer.w_lr_min, aer.a_wd) == ("official", 64, 0.001, 1e-3)


def test_programmatic_configs_must_apply_the_recipe():
    from common.config import ConfigError, apply_recipe
    cfg = SPConfig(recipe="authors", batch_size=32)
    with pytest.raises(ConfigError, match="apply_recipe"):
        cfg.resolve()
    assert apply_recipe(cfg, explicit={"batch_size"})["t_sm_ratio"] == 11.0
    cfg.resolve()
    assert (cfg.batch_size, cfg.t_sm, cfg.clip_scope) == (32, pytest.approx(11 * 1.1e-3), "official")


def test_authors_recipe_refusals_are_one_line_exit_2(capsys):
    proc = subprocess.run([sys.executable, "sa_darts.py", "--recipe", "authors"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "no public code" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    for cls, extra, needle in [(EDDConfig, ["--backbone", "gdas"], "EDD and PCD scripts only"),
                               (SPConfig, ["--space", "s2"], "give --t-sp"), (AERConfig, ["--space", "s3"], "no authors'")]:
        with pytest.raises(SystemExit) as err:
            parse_config(cls, ["--recipe", "authors", *extra])
        assert err.value.code == 2 and needle in capsys.readouterr().err


def test_args_json_records_recipe_and_resolved_values_pcd_run(shared_data, tmp_path):
    """A tiny PCD search with the authors' recipe: args.json, and the calendar inside the real loop."""
    from edd_darts import search
    out = tmp_path / "pcd"
    cfg = parse_config(EDDConfig, ["--recipe", "authors", "--schedule", "pcd", "--data-dir", str(shared_data),
                                   "--limit-train", "64", "--C", "4", "--N", "1", "--epochs", "2", "--warmup", "0",
                                   "--batch-size", "16", "--eval-images", "32", "--out", str(out),
                                   "--no-progress", "--device", "cpu", "--no-w-nesterov"])
    search(cfg)
    groups = torch.load(out / "checkpoint.pt", weights_only=False)["w_optimizer"]["param_groups"]
    assert [g["nesterov"] for g in groups] == [False]  # --w-nesterov reaches the optimiser
    args = json.loads((out / "args.json").read_text())
    assert (args["recipe"], args["clip_scope"], args["pcd_shape"], args["e_a"]) == ("authors", "official",
                                                                                    "updown", 3.99e-4)
    assert (args["batch_size"], args["warmup"], args["st_const"], args["w_lr_min"]) == (16, 0, True, None)
    temps = [json.loads(line)["temperature"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert temps == pytest.approx([1.0, E_A_CODE / math.log(1.11)], rel=1e-12)


def test_report_labels_name_the_recipe():
    from common.report import PAPER, base_label, label_of
    authors = {"dataset": "cifar10", "recipe": "authors", "script": "sp_darts"}
    assert label_of(Path("runs/nb201/sp-darts/cifar10/seed0"), authors) == "SP-DARTS [authors' recipe]"
    assert label_of(Path("runs/nb201/sp-darts-paper/cifar10/seed0"), {**authors, "recipe": "paper"}) == \
        "SP-DARTS [paper recipe]"
    assert label_of(Path("runs/nb201/sa-darts/cifar10/seed0"), {"dataset": "cifar10", "recipe": "paper"}) == "SA-DARTS"
    assert label_of(Path("x"), authors) == "SP-DARTS [authors' recipe]"  # a direct run: the method's name
    assert PAPER[base_label("PCD [authors' recipe]")] == PAPER[base_label("PCD [paper recipe]")] == "93.78±0.43"


def test_run_all_rows_authors_and_paper(tmp_path):
    proc = subprocess.run(["bash", "run_all.sh", "--dry-run", "--runs", str(tmp_path), "--seeds", "0",
                           "--datasets", "cifar10", "--spaces", "nb201 darts s1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    row = lambda space, label: [ln for ln in lines if f"/{space}/{label}/cifar10/" in ln]
    for label in ("edd-darts", "pcd", "sp-darts", "darts-v1-aer", "darts-v2-aer", "gdas-aer"):
        (authors,), (paper,) = row("nb201", label), row("nb201", f"{label}-paper")
        assert "--recipe authors" in authors and "--recipe" not in paper
    (sp_darts,) = row("darts", "sp-darts")
    assert "--space darts-nonone" in sp_darts and "--space darts " not in sp_darts
    s1 = [ln for ln in lines if "/s1/" in ln]  # S1-S4: the authors' recipe with the value they sweep given
    (sp_s1,), (sp_s1_paper,) = row("s1", "sp-darts-tsp4e-4"), row("s1", "sp-darts-tsp4e-4-paper")
    assert "--recipe authors --t-sp 4e-4 " in sp_s1 and "--recipe" not in sp_s1_paper
    assert "--recipe authors --lam 0.12 " in row("s1", "edd-darts-lam0.12")[0]
    assert "--recipe authors --schedule pcd --pcd-d 0.1 " in row("s1", "pcd-d0.1")[0]
    assert not any("--recipe" in ln for ln in s1 if "-paper/" in ln)


def test_sp_cifar100_late_phase_inside_the_search_loop(shared_data, tmp_path):
    """The authors' CIFAR-100 recipe with the freeze moved to epoch 2 of 3: metrics show p and t per epoch."""
    from sp_darts import search
    out = tmp_path / "sp"
    cfg = parse_config(SPConfig, ["--recipe", "authors", "--dataset", "cifar100", "--data-dir", str(shared_data),
                                  "--limit-train", "64", "--C", "4", "--N", "1", "--epochs", "3", "--freeze-from",
                                  "2", "--batch-size", "16", "--eval-images", "32", "--out", str(out),
                                  "--no-progress", "--device", "cpu"])
    search(cfg)
    rec = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    got = [r[k] for r in rec for k in ("p", "t_sp", "t_sm")]  # flat: pytest 9.2 refuses nested approx
    assert got == pytest.approx([0.0, 1.3e-3, 1.43e-2, 0.45, 1.3e-3, 1.43e-2, 0.45, 6e-4, 6.6e-3], rel=1e-12)
    assert json.loads((out / "args.json").read_text())["clip_scope"] == "official"


def test_checkpoints_from_before_the_new_flags_resume(shared_data, tmp_path):
    """A checkpoint without recipe / clip_scope / w_nesterov in its config ran their defaults: resumable."""
    from common.baseline import DartsConfig, search
    from common.run import RunError
    from common.safeio import DigestFile, sha256_of
    argv = ["--data-dir", str(shared_data), "--limit-train", "64", "--C", "4", "--N", "1", "--batch-size", "32",
            "--eval-images", "32", "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]
    with pytest.raises(RunError, match="non-finite"):  # stops in epoch 2, the checkpoint of epoch 1 kept
        search(parse_config(DartsConfig, argv + ["--epochs", "2", "--debug-nan-step", "2"]))
    ckpt_path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    for key in ("recipe", "clip_scope", "w_nesterov"):
        del ckpt["config"][key]
    torch.save(ckpt, ckpt_path)
    DigestFile(ckpt_path).write([sha256_of(ckpt_path)])  # the edited file's checksum sidecar
    with pytest.raises(RunError, match="--clip-scope w, not official"):
        search(parse_config(DartsConfig, argv + ["--epochs", "2", "--resume", "--clip-scope", "official"]))
    assert search(parse_config(DartsConfig, argv + ["--epochs", "2", "--resume"]))["epochs"] == 2


# ------------------------------------------------------------------------- S1-S4: the authors' scripts
# Recorded facts, read from the authors' public S1-S4 search scripts (numbers copied, no code):
# - EDD: github.com/chaoji90/PCDEDD SmoothDARTS/sota/pcdedd/train_search_pl.py: batch 192, lr 0.025 = lr_min,
#   momentum 0.9 (SGD, no Nesterov), wd 3e-4, 50 epochs, C 16, 8 layers, clip 5 of model.parameters() (α are
#   Variables, not parameters: model_search_cyc.py:150-151), α Adam 3e-4 (0.5, 0.999) wd 0 (:41-65, :129-133,
#   architect_cyc.py:18-20); warm-up 5, a decay at the start of epochs 5, 10, …, 35 with λ = --decay_strength
#   and of every epoch from 40 with 2λ (:167-190), entropy = mean over the normal cell's edges (:181-182),
#   t = 0.000399/ln(1 + d·count), count from 1; README sweeps --decay_strength 0.12, 0.24, 0.48, 0.96.
# - PCD: same folder, train_search_cyc.py: the same optimiser settings; warm-up 0, d = --decay_strength,
#   [1, t1…t5, t4…t1][epoch % 10] before epoch 40, [t1…t10][epoch % 10] after (:167-183); README sweeps
#   0.1, 0.11, 0.12, 0.13. Both: sn noise term 𝒜_1·g on the normal cell while t ≠ 1 (SmoothDARTS/optimizers/
#   darts/architect_cyc.py:48-60); the w step runs on softmax(softmax(α)/t) (softmax_arch_parameters, :255).
# - SP: github.com/chaoji90/SP-DARTS SmoothDARTS/sota/cnnmul/train_search.py: batch 128, lr 0.025 = lr_min,
#   wd 3e-4, 50 epochs, α Adam 3e-4 wd 0, clip 5 of model.parameters() (:39-63); temp 3e-4 hard-coded from
#   epoch 0, C = 0.8 + 0.3/50 per epoch from epoch 0, sparse branch (temp) when rand < C, smooth temp·10
#   (:165-172, :218-219); paper Sec. IV-C and README sweep t_sp 4e-4, 5e-4, 6e-4, 7e-4.
# - Genotype (both forks' S1-S4 model_search): softmax(α/t) rounded to 3 decimals; edges sorted by −max over
#   non-`none` ops (stable: equal edges keep the earlier input), op = the last of the maxima (`>=`).

S_EDD = dict(batch_size=192, w_lr=0.025, w_lr_min=None, w_momentum=0.9, w_nesterov=False, w_wd=3e-4, a_lr=3e-4,
             a_wd=0.0, a_beta1=0.5, epochs=50, C=16, N=8, grad_clip=5.0, clip_scope="w", softmax="sn", st_const=True,
             sn_unit_off=True, sn_cells="normal", e_a=3.99e-4, t0=1.0, t0_exp_one=True, w_double_softmax=True,
             derive_decimals=3, derive_ties="earlier-input-last-op", alpha_init=1e-3)


def _s_cfg(method: str, space: str, dataset: str, value: float, *extra: str):
    if method == "sp":
        return parse_config(SPConfig, ["--recipe", "authors", "--space", space, "--dataset", dataset,
                                       "--t-sp", str(value), *extra])
    flag = ["--schedule", "pcd", "--pcd-d", str(value)] if method == "pcd" else ["--lam", str(value)]
    return parse_config(EDDConfig, ["--recipe", "authors", "--space", space, "--dataset", dataset, *flag, *extra])


@pytest.mark.parametrize("space", ["s1", "s2", "s3", "s4"])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "svhn"])
def test_s_space_authors_recipes_resolve_to_their_scripts(space, dataset):
    edd = _s_cfg("edd", space, dataset, 0.24)
    assert {k: getattr(edd, k) for k in S_EDD} == S_EDD
    assert (edd.schedule, edd.warmup, edd.decay_every, edd.late_from, edd.lam, edd.lam_late, edd.rho, edd.entropy,
            edd.entropy_cells) == ("edd", 5, 5, 40, 0.24, 0.48, 0.5, "mean", "normal")
    pcd = _s_cfg("pcd", space, dataset, 0.12)
    assert {k: getattr(pcd, k) for k in S_EDD} == S_EDD
    assert (pcd.schedule, pcd.pcd_shape, pcd.pcd_d, pcd.pcd_period, pcd.warmup, pcd.late_from) == (
        "pcd", "updown", 0.12, 10, 0, 40)
    sp = _s_cfg("sp", space, dataset, 5e-4)
    assert (sp.batch_size, sp.w_lr, sp.w_lr_min, sp.w_momentum, sp.w_nesterov, sp.w_wd, sp.a_lr, sp.a_wd, sp.epochs,
            sp.C, sp.N, sp.grad_clip, sp.clip_scope) == (128, 0.025, None, 0.9, False, 3e-4, 3e-4, 0.0, 50, 16, 8,
                                                        5.0, "w")
    assert (sp.t_sp, sp.t_sm, sp.warmup, sp.t_warmup, sp.freeze_from, sp.w_double_softmax, sp.derive_decimals,
            sp.derive_ties) == (5e-4, pytest.approx(5e-3, rel=1e-12), 0, None, None, True, 3, "earlier-input-last-op")


@pytest.mark.parametrize("lam", [0.12, 0.96])
def test_edd_authors_s_space_calendar(lam):
    cfg = _s_cfg("edd", "s2", "cifar10", lam)
    entropies = [0.69 - 0.012 * e + 0.01 * math.cos(e) for e in range(50)]
    temps, _ = _run_calendar(cfg, entropies)
    expected, t, d, count = [], 1.0, 0.0, 1
    for epoch in range(50):  # the recorded calendar (above): decays at the start of these epochs
        if epoch in [5, 10, 15, 20, 25, 30, 35] + list(range(40, 50)):
            d = (lam if epoch <= 39 else 2 * lam) * entropies[epoch - 1] * 0.5 + 0.5 * d
            t = E_A_CODE / math.log(1 + d * count)
            count += 1
        expected.append(t)
    assert temps == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("d", [0.1, 0.13])
def test_pcd_authors_s_space_calendar(d):
    temps, _ = _run_calendar(_s_cfg("pcd", "s4", "svhn", d), [1.0] * 50)
    expected = [1.0 if n == 0 else E_A_CODE / math.log(1 + d * n) for n in PCD_N[0]]
    assert temps == pytest.approx(expected, rel=1e-12, abs=0)


def test_sp_authors_s_space_p_and_temperatures_per_epoch():
    cfg = _s_cfg("sp", "s3", "cifar100", 7e-4)
    C = 0.8
    for epoch in range(50):  # the recorded calendar: C grows from epoch 0; rand < C ≥ 1 always holds
        C += (1 - 0.8 + 0.1) / 50
        assert epoch_schedule(epoch, cfg) == pytest.approx((min(C, 1.0), 7e-4, 7e-3), rel=1e-12)
    assert [epoch_schedule(e, cfg)[0] for e in (32, 33)] == [pytest.approx(0.998), 1.0]


@pytest.mark.parametrize("method,flag,values", [("edd", "--lam", "0.12, 0.24, 0.48, 0.96"),
                                                ("pcd", "--pcd-d", "0.1, 0.11, 0.12, 0.13"),
                                                ("sp", "--t-sp", "4e-4, 5e-4, 6e-4, 7e-4")])
def test_s_space_authors_recipe_requires_the_swept_flag(method, flag, values, capsys):
    cls, argv = (SPConfig, []) if method == "sp" else (EDDConfig, ["--schedule", "pcd"] if method == "pcd" else [])
    for space in ("s1", "s4"):
        with pytest.raises(SystemExit) as err:
            parse_config(cls, ["--recipe", "authors", "--space", space, *argv])
        msg = capsys.readouterr().err
        assert err.value.code == 2 and len(msg.strip().splitlines()) == 1
        assert f"on {space}: give {flag} " in msg and values in msg
    with pytest.raises(SystemExit):  # their scripts search CIFAR-10/100 and SVHN only
        _s_cfg(method, "s2", "imagenet16-120", 0.12)
    assert "cifar10, cifar100 or svhn" in capsys.readouterr().err
    # the paper recipe needs nothing
    assert parse_config(cls, ["--space", "s1", *argv]).recipe == "paper"


def test_s_space_explicit_flags_win():
    edd = _s_cfg("edd", "s3", "cifar10", 0.24, "--lam-late", "0.3", "--batch-size", "64", "--no-w-double-softmax",
                 "--derive-decimals", "none")
    assert (edd.lam, edd.lam_late, edd.batch_size, edd.w_double_softmax, edd.derive_decimals, edd.warmup) == (
        0.24, 0.3, 64, False, None, 5)
    sp = _s_cfg("sp", "s1", "svhn", 4e-4, "--p-up", "1.0", "--t-sm-ratio", "11", "--warmup", "1")
    assert (sp.p_up, sp.t_sm, sp.warmup, sp.p_low) == (1.0, pytest.approx(4.4e-3), 1, 0.8)
    with pytest.raises(SystemExit):  # their S1-S4 clip holds no α: the double softmax refuses the official scope
        _s_cfg("sp", "s1", "svhn", 4e-4, "--clip-scope", "official")


class _Run:
    """What step_forwards / branch_forwards use of a SearchRun: .model and .forward(weights_fn)."""

    def __init__(self, model):
        self.model = model

    def forward(self, weights_fn):
        return lambda x: self.model(x, weights_fn())


def _authors_s_step(net, batch, t: float, sn_normal: bool, w_opt, a_opt) -> None:
    """The authors' S1-S4 step, transcribed: α step on softmax(α/t) (+ 𝒜_1·g on the normal cell), then
    α ← softmax(α) in place, the w step on softmax(α/t) of that, clip w (5), step, α restored."""
    x, y, xv, yv = batch
    a_opt.zero_grad()
    weights = {k: F.softmax(a / t, dim=-1) for k, a in net.alphas.items()}
    weights["normal"].retain_grad()
    F.cross_entropy(net(xv, weights), yv).backward()
    if sn_normal:
        F.softmax(net.alphas["normal"], dim=-1).backward(weights["normal"].grad)
    a_opt.step()
    saved = [a.detach().clone() for a in net.alphas.values()]
    with torch.no_grad():
        for a in net.alphas.values():
            a.copy_(F.softmax(a, dim=-1))
    for p in net.weight_parameters():
        p.grad = None
    F.cross_entropy(net(x, {k: F.softmax(a / t, dim=-1) for k, a in net.alphas.items()}), y).backward()
    nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0)
    w_opt.step()
    with torch.no_grad():
        for a, s in zip(net.alphas.values(), saved):
            a.copy_(s)


def _s_optimisers(model):
    return (torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4),
            torch.optim.Adam(model.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=0.0))


@pytest.mark.parametrize("method", ["edd", "sp"])
def test_w_double_softmax_equals_the_transcribed_authors_s_step(method):
    from authors.edd import step_forwards
    from authors.sp import branch_forwards
    torch.manual_seed(0)
    model = build_supernet("s2", 4, 3, 10).double()
    for a in model.alphas.values():  # a spread α, so that softmax(α) and α weigh the ops visibly apart
        a.data.normal_(0, 0.02)
    theirs, ours, single = (copy.deepcopy(model) for _ in range(3))
    batches = [tuple(b.double() if b.is_floating_point() else b for b in batch) for batch in _batches(2, hw=8)]
    t = 0.02
    opts = {id(m): _s_optimisers(m) for m in (theirs, ours, single)}
    for batch in batches:
        _authors_s_step(theirs, batch, t, method == "edd", *opts[id(theirs)])
    for net, double in ((ours, True), (single, False)):
        if method == "edd":
            f_a, f_w = step_forwards(_Run(net), t, 1 / t, "sn", ["normal"], double)
        else:
            f_a, _, _ = branch_forwards(_Run(net), t, 10 * t, torch.ones(1, 1, 1, dtype=torch.bool))
            f_w, _, _ = branch_forwards(_Run(net), t, 10 * t, torch.ones(1, 1, 1, dtype=torch.bool), double)
        w_opt, a_opt = opts[id(net)]
        for x, y, xv, yv in batches:  # their order: the α step first
            alpha_step(f_a, xv, yv, net.arch_parameters(), a_opt)
            w_step(f_w, x, y, net.weight_parameters(), w_opt, 5.0)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert not all(torch.allclose(p, q) for p, q in zip(single.weight_parameters(), theirs.weight_parameters()))


def _authors_s_parse(w, ops: tuple[tuple[str, ...], ...], last_op: bool = True) -> list[tuple[str, int]]:
    """The S1-S4 genotype rule (recorded above), written out: w rounded (E, M) numpy weights of one cell;
    `last_op` False: the first of equal ops (`>`, the EDD/PCD authors' DARTS-space genotype)."""
    gene, start = [], 0
    for node in range(4):
        n = node + 2
        rows = w[start:start + n]
        score = [max(v for k, v in enumerate(rows[j]) if ops[start + j][k] != "none") for j in range(n)]
        for j in sorted(sorted(range(n), key=lambda j: -score[j])[:2]):  # stable: equal → the earlier input
            best = (max if last_op else min)(
                k for k in range(len(rows[j])) if ops[start + j][k] != "none"
                and rows[j][k] == max(v for i, v in enumerate(rows[j]) if ops[start + j][i] != "none"))
            gene.append((ops[start + j][best], j))
        start += n
    return gene


@pytest.mark.parametrize("space,ties", [("s1", "earlier-input-last-op"), ("s2", "earlier-input-last-op"),
                                        ("s3", "earlier-input-last-op"), ("darts-nonone", "earlier-input-first-op")])
def test_earlier_input_ties_match_the_authors_s_genotype(space, ties):
    from common.genotypes import derive_from_alphas
    from common.spaces import SPACES
    g = torch.Generator().manual_seed(5)
    differs = 0
    for trial in range(40):
        alphas = {k: torch.randn(14, SPACES[space].alpha_shape(k)[1], generator=g) * 1e-2 for k in ("normal", "reduce")}
        t = [1e-3, 3e-3, 1.0][trial % 3]  # saturated (ties at 1.000), partly, and near-uniform (ties at 0.5)
        got = derive_from_alphas(alphas, SPACES[space], t, decimals=3, ties=ties)
        for kind in ("normal", "reduce"):
            w = torch.round(F.softmax(alphas[kind] / t, dim=-1), decimals=3).numpy()
            assert getattr(got, kind) == _authors_s_parse(w, SPACES[space].edge_ops[kind], ties.endswith("last-op"))
        differs += got != derive_from_alphas(alphas, SPACES[space], t, decimals=3, ties="later-input-first-op")
    assert differs > 10  # the tie rule decides many of these genotypes


def _count_double_forward_calls(monkeypatch, module, name: str, double_at: int, used: list[int]) -> None:
    """Wrap module.name (step_forwards / branch_forwards): every call of a forward it builds with `double`
    (keyword, or positional argument `double_at`) adds 1 to used[0]; only the w step uses those."""
    real = getattr(module, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        if not kwargs.get("double", len(args) > double_at and args[double_at]):
            return out

        def counted(f):
            def g(x):
                used[0] += 1
                return f(x)
            return g
        return tuple(counted(f) if i >= len(out) - (1 if name == "step_forwards" else 3) else f
                     for i, f in enumerate(out))
    monkeypatch.setattr(module, name, spy)


def test_edd_s_space_run_trains_w_on_the_double_softmax(shared_data, tmp_path, monkeypatch):
    """The authors' S2 PCD recipe in the real loop: its w steps go through the double-softmax forward."""
    from authors import edd as edd_darts
    used = [0]
    _count_double_forward_calls(monkeypatch, edd_darts, "step_forwards", 5, used)
    cfg = parse_config(EDDConfig, ["--recipe", "authors", "--space", "s2", "--schedule", "pcd", "--pcd-d", "0.11",
                                   "--data-dir", str(shared_data), "--limit-train", "32", "--C", "4", "--N", "3",
                                   "--epochs", "1", "--batch-size", "16", "--eval-images", "16", "--out",
                                   str(tmp_path / "pcd"), "--no-progress", "--device", "cpu"])
    edd_darts.search(cfg)
    assert used[0] == 2  # 32 images / batch 16: two w steps, each one forward
    assert json.loads((tmp_path / "pcd" / "args.json").read_text())["w_double_softmax"] is True


def test_sp_s_space_run_records_the_recipe(shared_data, tmp_path, monkeypatch):
    """A tiny SP search with the authors' S2 recipe: args.json, p per epoch, the 3-decimal genotype, and
    its w steps through the double-softmax forwards."""
    import sp_darts
    from common.genotypes import derive_from_alphas
    from common.spaces import SPACES
    from sp_darts import search
    used = [0]
    _count_double_forward_calls(monkeypatch, sp_darts, "branch_forwards", 4, used)
    out = tmp_path / "sp"
    cfg = parse_config(SPConfig, ["--recipe", "authors", "--space", "s2", "--t-sp", "1e-5", "--data-dir",
                                  str(shared_data), "--limit-train", "32", "--C", "4", "--N", "3", "--epochs", "2",
                                  "--batch-size", "16", "--eval-images", "32", "--out", str(out), "--no-progress",
                                  "--device", "cpu"])
    result = search(cfg)
    args = json.loads((out / "args.json").read_text())
    assert (args["recipe"], args["w_double_softmax"], args["p_low"], args["p_up"], args["derive_decimals"],
            args["derive_ties"], args["clip_scope"], args["w_nesterov"]) == (
        "authors", True, 0.8, 1.1, 3, "earlier-input-last-op", "w", False)
    rec = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    got = [v for r in rec for v in (r["p"], r["t_sp"], r["t_sm"])]
    assert got == pytest.approx([0.95, 1e-5, 1e-4, 1.0, 1e-5, 1e-4], rel=1e-12)  # 0.8 + 0.3·i/2, capped at 1
    assert rec[1]["sparse_fraction"] == 1.0
    alphas = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    alphas = {k: alphas[f"alphas.{k}"] for k in ("normal", "reduce")}
    expected = derive_from_alphas(alphas, SPACES["s2"], 1e-5, decimals=3, ties="earlier-input-last-op")
    # t_sp 1e-5: the rows round to 1.000 and tie, so the tie rule decides (run.py passes --derive-ties)
    assert expected != derive_from_alphas(alphas, SPACES["s2"], 1e-5, decimals=3, ties="later-input-first-op")
    assert json.loads(json.dumps(result["genotype"])) == json.loads(json.dumps(expected._asdict()))
    assert used[0] == 4  # 2 epochs × 2 w steps


def test_report_labels_of_the_s_space_sweep_rows():
    """run_all.sh's S1-S4 rows per swept value: recipe suffix, and the paper's error of their method."""
    from common.report import Run, label_of, paper_eval
    cases = [("edd-darts-lam0.24", "authors", "cifar100", "edd-darts-lam0.24 [authors' recipe]", "22.27"),
             ("pcd-d0.11", "authors", "svhn", "pcd-d0.11 [authors' recipe]", "—"),  # Table 2 lists EDD only
             ("sp-darts-tsp5e-4", "authors", "svhn", "sp-darts-tsp5e-4 [authors' recipe]", "2.33"),
             ("sp-darts-tsp5e-4-paper", "paper", "svhn", "sp-darts-tsp5e-4 [paper recipe]", "2.33"),
             ("edd-darts-paper", "paper", "svhn", "EDD-DARTS [paper recipe]", "2.23")]
    for folder, recipe, dataset, label, error in cases:
        path = Path(f"runs/s1/{folder}/{dataset}/seed0")
        args = {"dataset": dataset, "recipe": recipe, "space": "s1"}
        assert label_of(path, args) == label
        assert paper_eval(Run(path, label_of(path, args), args, [], None, True)) == error


@pytest.mark.slow
def test_w_double_softmax_replicas_equal_their_single_runs(shared_data, tmp_path):
    """--seeds with the authors' S1-S4 SP w step (softmax(softmax(α)/t) of each replica's φ branch, p = ½):
    each replica is its single run (float64; test_replicas' harness, 3 seeds, 1 step)."""
    from test_replicas import _equivalent

    from authors import sp as sp_darts
    _equivalent(shared_data, tmp_path, (sp_darts.SPConfig, sp_darts.search), space="s2", N=3, limit_train=8,
                eval_images=16, w_double_softmax=True, derive_decimals=3, derive_ties="earlier-input-last-op",
                w_nesterov=False, t_sp=4e-4, warmup=0, p_low=0.5, p_up=0.5)
