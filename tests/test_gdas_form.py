"""`--gdas-form` (common.config.GdasConfig): its default per skeleton, its refusals, and --resume of a
checkpoint made before the flag existed (GDAS then ran the nb201 form on every skeleton).

The forms' numerics are tested elsewhere: against xautodl (tests/test_xautodl.py), batched against single
(tests/test_replicas.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import aer_darts
import edd_darts
from common.config import ConfigError, parse_config
from common.run import NonFiniteLoss, RunError


@pytest.mark.parametrize("config", [aer_darts.AERConfig, edd_darts.EDDConfig])
@pytest.mark.parametrize("space,form", [("nb201", "nb201"), ("nb201-3op", "nb201"), ("darts", "nasnet"),
                                        ("darts-nonone", "nasnet"), ("s1", "nasnet"), ("s3", "nasnet")])
def test_the_default_form_is_the_official_codes_for_the_skeleton(config, space: str, form: str) -> None:
    cfg = config(space=space, backbone="gdas")
    cfg.resolve()
    assert cfg.gdas_form == form  # recorded so in args.json (config_dict)
    other = {"nb201": "nasnet", "nasnet": "nb201"}[form]
    cfg = config(space=space, backbone="gdas", gdas_form=other)
    cfg.resolve()
    assert cfg.gdas_form == other  # an explicit form wins
    assert cfg.former_value("gdas_form") == "nb201"  # what a checkpoint without the field ran


@pytest.mark.parametrize("argv", [["--gdas-form", "nasnet"], ["--backbone", "darts-v2", "--gdas-form", "nb201"],
                                  ["--backbone", "gdas", "--gdas-form", "nas"]])
def test_a_form_without_gdas_or_an_unknown_form_is_a_one_line_error(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(aer_darts.AERConfig, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "gdas-form" in err
    cfg = aer_darts.AERConfig(backbone="darts-v1")
    cfg.resolve()
    assert cfg.gdas_form is None and cfg.former_value("gdas_form") is None  # no GDAS: nothing to record
    with pytest.raises(ConfigError, match="--backbone gdas only"):
        edd_darts.EDDConfig(gdas_form="nasnet").resolve()


def test_an_old_darts_skeleton_checkpoint_resumes_only_in_the_nb201_form(tmp_path: Path) -> None:
    """A GDAS checkpoint of the DARTS skeleton without `gdas_form` (the code before the flag ran nb201 there):
    --resume in the new default (nasnet) is refused in one line naming the flag; with --gdas-form nb201 it
    resumes and finishes."""
    out = tmp_path / "run"
    kw = dict(space="darts", backbone="gdas", dataset="synthetic", C=2, N=2, limit_train=16, batch_size=8,
              epochs=2, eval_images=8, device="cpu", nb201="none", progress=False, out=str(out), lam=0.0)

    def search(**more):
        cfg = aer_darts.AERConfig(**{**kw, **more})
        cfg.resolve()
        return aer_darts.search(cfg)
    with pytest.raises(NonFiniteLoss):  # stopped in epoch 2: the epoch-1 checkpoint stays
        search(gdas_form="nb201", debug_nan_step=2)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["config"].pop("gdas_form") == "nb201"
    torch.save(ckpt, out / "checkpoint.pt")  # as the code before the flag wrote it (no sha256 sidecar yet)
    (out / "checkpoint.pt.sha256").unlink()
    with pytest.raises(RunError, match="made with --gdas-form nb201, not nasnet"):
        search(resume=True)
    assert search(resume=True, gdas_form="nb201")["epochs"] == 2
