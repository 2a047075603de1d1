"""EDD's comparators: LTS (Fig. 2B) and LPCD (Fig. 4A) against the paper's numbers and
PCD's list, the Fig. 2B entropy curve of common.report, and a tiny search with each schedule."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from common.report import collect_runs, init_entropy_at, make_plots
from edd_darts import (
    EDDConfig,
    advance_schedule,
    ets_temperatures,
    expected_positive_alpha,
    lpcd_temperature,
    lts_temperatures,
    pcd_temperature,
    search,
)

E_A = expected_positive_alpha()


@pytest.mark.numerics
def test_lts_is_the_papers_example():
    ts = lts_temperatures(1.0, 1e-3, 4)
    # printed in Sec. 2.2 as "LTS (1, 0.75, 0.5, 0.25, 0.001)"
    assert [round(t, 2) for t in ts[:4]] == [1.0, 0.75, 0.5, 0.25] and ts[4] == pytest.approx(1e-3, rel=1e-12)
    assert ts == pytest.approx([1.0, 0.75025, 0.5005, 0.25075, 0.001], rel=1e-12)  # the exact points
    assert lts_temperatures(2.0, 0.5, 0) == [2.0]


@pytest.mark.numerics
@given(st.floats(0.01, 10.0), st.floats(1e-4, 0.99), st.integers(1, 60))
def test_lts_linear_monotone_endpoints(t0, frac, n):
    ts = lts_temperatures(t0, t0 * frac, n)
    assert len(ts) == n + 1 and ts[0] == t0 and ts[-1] == pytest.approx(t0 * frac, rel=1e-9)
    assert np.diff(ts) == pytest.approx(np.full(n, (t0 * frac - t0) / n), rel=1e-9, abs=1e-12)
    assert all(t > 0 for t in ts)


@pytest.mark.numerics
def test_fig2b_ets_smoother_than_lts():
    """Fig. 2B: at DARTS's α init, LTS leaves the entropy at ln 5 until its last point, then drops it at once;
    ETS spends the same entropy drop in steps."""
    h_lts = init_entropy_at(lts_temperatures(1.0, 1e-3, 4))
    h_ets = init_entropy_at(ets_temperatures(E_A, 1.0, 1e-3, 4))
    assert h_lts[0] == pytest.approx(math.log(5), abs=1e-5) and h_ets[0] == pytest.approx(h_lts[0])
    assert h_lts[-1] == pytest.approx(h_ets[-1], rel=1e-9)  # same end point t_N = 1e-3
    drops_lts, drops_ets = -np.diff(h_lts), -np.diff(h_ets)
    total = h_lts[0] - h_lts[-1]  # ≈ 0.30 nats: a/t ~ N(0, 1) at t_N = 1e-3
    assert (drops_lts[:3] < 1e-5).all() and drops_lts[3] > 0.99 * total  # LTS: nothing, then everything
    assert (drops_ets > 0.02).all() and drops_ets.max() < 0.35 * total  # ETS: four comparable steps
    # closed ends: t → ∞ is uniform (ln M); t → 0 is the one-hot argmax (entropy 0)
    assert init_entropy_at([1e6], n_ops=8) == pytest.approx([math.log(8)], abs=1e-9)
    assert init_entropy_at([1e-9]) == pytest.approx([0.0], abs=1e-6)


@pytest.mark.numerics
def test_init_entropy_matches_torch_on_the_same_draw():
    a = 1e-3 * np.random.default_rng(0).standard_normal((20000, 5))
    for t in (1e-2, 1e-3, 3e-4):
        p = torch.softmax(torch.from_numpy(a / t), -1)
        want = torch.special.entr(p).sum(-1).mean().item()
        assert init_entropy_at([t]) == pytest.approx([want], rel=1e-9)


@pytest.mark.numerics
def test_lpcd_cycles_pcd_endpoints_linearly():
    period = 10
    pcd = [pcd_temperature(E_A, 1.0, 0.11, k, period) for k in range(period)]
    lpcd = [lpcd_temperature(1.0, pcd[-1], k, period) for k in range(25)]
    assert lpcd[0] == 1.0 and lpcd[9] == pytest.approx(pcd[-1], rel=1e-12)
    assert lpcd[10] == lpcd[0] and lpcd[23] == lpcd[3]  # the same calendar as PCD: k mod period
    assert np.diff(lpcd[:10]) == pytest.approx(np.full(9, (pcd[-1] - 1.0) / 9), rel=1e-12)  # linear in t
    assert all(lin > exp for lin, exp in zip(lpcd[1:9], pcd[1:9]))  # PCD's points fall faster (exp space)
    assert lpcd_temperature(0.5, 0.1, 7, period=1) == 0.5


def test_lpcd_refuses_the_updown_calendar(capsys):
    from common.config import parse_config
    with pytest.raises(SystemExit) as err:
        parse_config(EDDConfig, ["--schedule", "lpcd", "--pcd-shape", "updown"])
    assert err.value.code == 2 and "--pcd-shape updown is for pcd" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", ["lts", "lpcd"])
def test_advance_schedule_dispatch(schedule):
    cfg = EDDConfig(schedule=schedule, epochs=5, pcd_period=3)
    cfg.resolve()
    points = lts_temperatures(cfg.t0, cfg.t_end, 4)
    state = {"t": cfg.t0, "k": 0, "d_exp": 0.0, "lam": cfg.lam}
    seen = []
    for epoch in range(6):
        advance_schedule(state, cfg, 1.0, epoch, points)
        seen.append(state["t"])
    if schedule == "lts":
        assert seen == points[1:] + [points[-1], points[-1]]  # held at t_end after the last point
    else:
        t_last = pcd_temperature(cfg.e_a, 1.0, 0.11, 2, 3)
        assert seen == pytest.approx([(1 + t_last) / 2, t_last, 1.0] * 2, rel=1e-12)


@pytest.mark.slow
def test_search_follows_schedule_and_plots_fig2b(shared_data, tmp_path):
    for schedule in ("lts", "lpcd"):
        out = tmp_path / "edd" / schedule / "cifar10" / "seed0"
        cfg = EDDConfig(space="nb201", dataset="cifar10", data_dir=str(shared_data), limit_train=16, C=4, N=1,
                        epochs=3, batch_size=16, eval_images=16, out=str(out), progress=False, device="cpu",
                        schedule=schedule, softmax="normal", pcd_period=2)
        cfg.resolve()
        search(cfg)
        records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        temps = [r["temperature"] for r in records]
        if schedule == "lts":
            assert temps == pytest.approx(lts_temperatures(1.0, 1e-3, 2), rel=1e-12)
        else:
            t_last = pcd_temperature(cfg.e_a, 1.0, 0.11, 1, 2)
            assert temps == pytest.approx([1.0, t_last, 1.0], rel=1e-12)
    runs = collect_runs(tmp_path)
    assert sorted(r.label for r in runs) == ["LPCD-DARTS", "LTS-DARTS"]
    written = make_plots(runs, tmp_path / "report")
    assert Path(tmp_path / "report" / "schedule_entropy.png") in written
