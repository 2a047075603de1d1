"""Train a derived DARTS-skeleton genotype from scratch: the evaluation phase of DARTS and S1–S4.

    python -m common.train RUN_DIR                 # the genotype a finished search found (result.json)
    python -m common.train genotype.json           # {"normal": [[op, input], ...], "normal_concat": ...}
    python -m common.train DARTS_V2 --preset darts # a named genotype: DARTS_V1, DARTS_V2, PC_DARTS
    python -m common.train RUN_DIR --preset robustdarts   # S1-S4: RobustDARTS's per-dataset protocol
    python -m common.train DARTS_V2 --preset smoke --data-dir ../shared/data   # one tiny epoch on CPU

Protocol (`--preset darts`, every value a flag; DARTS = Liu et al., ICLR 2019, code quark0/darts
`cnn/train.py`, read with the search tools): the evaluation network (`common/evalnet.py`) with 20 cells
(`--layers`, train.py:30) and C = 36 (`--C`, train.py:29), trained on the whole training set and tested on
the test set every epoch (train.py:86-105); 600 epochs (train.py:28), batch 96 (train.py:22); SGD lr
0.025 (train.py:23), momentum 0.9 (train.py:24), weight decay 3e-4 (train.py:25), no Nesterov
(train.py:78-83), cosine to 0 (train.py:95); cutout 16 (train.py:34-35 with README's `--cutout`);
auxiliary head weight 0.4 (train.py:33 with README's `--auxiliary`, train.py:123-126); gradient-norm
clip 5 over all parameters (train.py:40, 128). Drop-path probability p·epoch/epochs (train.py:100) with
p = 0.3: the value of the papers this project reproduces (AER paper Sec. 4.2.2 "drop-path of probability
0.3", following P-DARTS; PC-DARTS train.py:37); DARTS itself used 0.2 (train.py:36 and its paper),
one flag away: `--drop-path 0.2`. EDD and SP evaluated their DARTS-space cells with DrNAS's script
(paper 000 "Evaluations on DS", paper 002 Sec. IV-B), whose defaults are batch 64 and drop-path 0.3
(xiangning-chen/DrNAS DARTS-space/train.py:24, 38; cosine stepped after each epoch, as here):
`--batch-size 64` for their setting.

`--preset robustdarts` (S1–S4, Zela et al., ICLR 2020): the same recipe with drop-path 0.2
(automl/RobustDARTS src/evaluation/args.py:49), 600 epochs and batch 96 (args.py:32-33), cutout and
auxiliary head (scripts/DARTS_eval.sh:18); 20 cells / C = 36 on CIFAR-10 and 8 cells / C = 16 on
CIFAR-100 and SVHN, as the S1–S4 tables the methods compare against were produced (DARTS-PT
exp_scripts/eval.sh, eval-c100.sh:39, eval-svhn.sh:39; SA paper, appendix "Reduced Search Space": "20
cells with 36 initial channels for CIFAR-10"). RobustDARTS's own code trains every dataset at 8 cells / C = 16
(args.py:40-41): `--layers 8 --C 16`.

Authors' quirk, one flag away: DARTS calls `scheduler.step()` before each epoch (PyTorch 0.3 semantics,
train.py:97-99), so epoch e trains at the cosine value of e+1 and the last epoch at lr 0:
`--lr-step-first`. The default is the paper's cosine, epoch e at lr_min + (lr − lr_min)(1 + cos(πe/E))/2.

Run directory (as the searches): args.json, metrics.jsonl (per epoch: epoch, step, lr, drop_path,
train_loss (main head), train_acc, test_loss, test_acc, time), checkpoint.pt after every epoch
(`--resume` continues bit-identically on CPU), log.txt (one line per epoch, then the summary), and
result.json (params in M without the auxiliary head, final test error, wall time, device).
"""
from __future__ import annotations

from common.cli import answer_help_early

answer_help_early(__name__, "common.train")  # --help before torch is imported

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.cli import (  # noqa: F401 - re-exported: tests and users import them from common.train
    EVAL_DATASETS,
    PRESETS,
    ROBUSTDARTS_SIZE,
    TRAIN_RANGES,
    TrainConfig,
    train_parser,
)
from common.config import ConfigError, config_dict
from common.data import MEAN, NUM_CLASSES, STD, DataError, load_arrays, make_loader
from common.evalnet import NAMED_GENOTYPES, EvalNetwork, GenotypeError, eval_loss, parse_genotype
from common.genotypes import Genotype, genotype_to_json
from common.rundir import (
    CHECKPOINT_VERSION,
    NonFiniteLoss,
    RunDir,
    RunError,
    RunFinished,
    finished_run,
    main_guard,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    write_json,
)
from common.search import cosine_lr
from common.threads import apply_threads, threads_text

#: Entries of an evaluation checkpoint (checked on resume).
TRAIN_CHECKPOINT_KEYS = ("version", "config", "genotype", "epoch", "step", "wall_time", "model", "optimizer",
                         "metrics", "rng")
#: Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {"resume", "out", "device", "progress", "log_every", "loader", "data_dir", "debug_nan_step"}


# ------------------------------------------------------------------------------------- the genotype
def load_source(source: str) -> tuple[Genotype, dict[str, Any]]:
    """(genotype, where it came from) for a run directory, a JSON file or string, or a named genotype."""
    if source in NAMED_GENOTYPES:
        return NAMED_GENOTYPES[source], {"kind": "named", "name": source}
    path, info = Path(source), {"kind": "json", "name": Path(source).stem}
    try:
        if path.is_dir():
            if not (path / "result.json").is_file():
                raise RunError(f"{path} holds no result.json: not a finished search run directory")
            obj = json.loads((path / "result.json").read_text())
            args_file = path / "args.json"
            search = json.loads(args_file.read_text()) if args_file.is_file() else {}
            info = {"kind": "run", "name": path.name, "run_dir": str(path), "search_dataset": search.get("dataset"),
                    "search_space": search.get("space")}
        elif path.is_file():
            obj = json.loads(path.read_text())
        elif source.lstrip().startswith("{"):
            obj, info = json.loads(source), {"kind": "json", "name": "genotype"}
        else:
            raise RunError(f"{source!r} is not a run directory, a genotype JSON file or a named genotype "
                           f"({', '.join(NAMED_GENOTYPES)})")
    except (OSError, ValueError) as err:  # unreadable file, malformed JSON
        raise RunError(f"cannot read a genotype from {source}: {type(err).__name__}: "
                       f"{' '.join(str(err).split())[:160]}") from None
    if isinstance(obj, dict) and "genotype" in obj:
        obj = obj["genotype"]
    if isinstance(obj, str):
        raise RunError(f"{source} holds the NB201 cell {obj}: NB201 cells need no training, look them up "
                       "(python -m common.nb201 query TABLE ARCH)")
    try:
        return parse_genotype(obj), info
    except GenotypeError as err:
        raise RunError(f"bad genotype in {source}: {err}") from None


# ------------------------------------------------------------------------------------- training
class Trainer:
    """Data, network, optimiser and run directory of one evaluation run; `run()` trains to the end."""

    def __init__(self, cfg: TrainConfig, genotype: Genotype, source: str, info: dict[str, Any]) -> None:
        self.cfg, self.genotype = cfg, genotype
        self.device = resolve_device(cfg.device)
        self.threads, self._threads_from = apply_threads(cfg.threads)  # set once, before any work (common/threads.py)
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.layout = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
        default_out = (Path(info["run_dir"]) / "eval" if info["kind"] == "run"
                       else Path("runs/train") / f"{info['name']}-{cfg.dataset}-seed{cfg.seed}")
        out = Path(cfg.out or default_out)
        if cfg.resume and (done := finished_run(out, cfg.epochs)):
            raise RunFinished(done)
        if out.exists() and not out.is_dir():
            raise RunError(f"--out {out} exists and is not a directory")
        self._build_data()  # missing data fails before the run directory is created
        self.dir = RunDir(out)  # locked: a second run on this --out stops here
        try:
            self._start(source, info)
        except BaseException:  # refused (or stopped) while starting: the folder as it was
            self.dir.abandon()
            raise

    def _start(self, source: str, info: dict[str, Any]) -> None:
        """Resume from the run directory's checkpoint, or start afresh."""
        cfg, genotype = self.cfg, self.genotype
        checkpoint = self.dir.load_checkpoint(TRAIN_CHECKPOINT_KEYS) if cfg.resume else None
        if checkpoint is None and self.dir.checkpoint.exists():
            raise RunError(f"{self.dir.path} already holds a run; pass --resume to continue it or choose another --out")
        if checkpoint is None:
            self.dir.refuse_earlier_run(cfg)  # metrics/result without a checkpoint are not replaced
        seed_everything(cfg.seed, cfg.deterministic)
        self.model = EvalNetwork(genotype, cfg.C, cfg.layers, NUM_CLASSES[cfg.dataset], auxiliary=cfg.aux_weight > 0)
        self.model = self.model.to(self.device, memory_format=self.layout)
        self.params = list(self.model.parameters())
        self.optimizer = torch.optim.SGD(self.params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.wd)
        self.start_epoch, self.step, self.wall_time, self.records = 0, 0, 0.0, []
        self.param_count = self.model.param_count()
        if checkpoint is not None:
            self._restore(checkpoint)
            self.log(f"resumed from {self.dir.checkpoint} after epoch {self.start_epoch}")
        else:
            write_json(self.dir.path / "args.json", {
                **config_dict(cfg), "script": "train", "source": source, "source_info": info,
                "genotype": genotype_to_json(genotype), "param_count": self.param_count,
                "argv": sys.argv, "torch": torch.__version__, "torch_threads": self.threads})
            self.log(f"training the genotype of {source} on {cfg.dataset}: {self.param_count / 1e6:.3f}M params, "
                     f"{cfg.layers} cells, C={cfg.C}, {cfg.epochs} epochs, preset {cfg.preset}, {self.device}, "
                     f"{threads_text(self.threads, self._threads_from)}")

    def _build_data(self) -> None:
        cfg = self.cfg
        try:
            x_tr, y_tr = load_arrays(cfg.dataset, cfg.data_dir, train=True)
            x_te, y_te = load_arrays(cfg.dataset, cfg.data_dir, train=False)
        except DataError as err:
            raise RunError(str(err)) from None
        x_tr, y_tr, x_te, y_te = x_tr[:cfg.limit_train], y_tr[:cfg.limit_train], x_te[:cfg.limit_test], y_te[:cfg.limit_test]
        common = dict(device=self.device, mean=MEAN[cfg.dataset], std=STD[cfg.dataset])
        self.train_loader = make_loader(cfg.loader, x_tr, y_tr, cfg.batch_size, augment=True, cutout=cfg.cutout,
                                        shuffle=True, drop_last=False, seed=cfg.seed, **common)
        self.test_loader = make_loader(cfg.loader, x_te, y_te, max(cfg.batch_size, 256), augment=False,
                                       shuffle=False, drop_last=False, seed=0, **common)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        old = ckpt.get("config", {})
        for key, value in config_dict(self.cfg).items():
            if key not in RESUMABLE_CHANGES and old.get(key) != value:
                raise RunError(f"checkpoint {self.dir.checkpoint} was made with --{key.replace('_', '-')} "
                               f"{old.get(key)}, not {value}: it is incompatible; use another --out")
        if ckpt.get("genotype") != genotype_to_json(self.genotype):
            raise RunError(f"checkpoint {self.dir.checkpoint} trains another genotype; use another --out")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise RunError(f"checkpoint {self.dir.checkpoint} does not fit this model "
                           f"({str(err).splitlines()[0][:120]})") from None
        self.start_epoch, self.step, self.wall_time = ckpt["epoch"], ckpt["step"], ckpt["wall_time"]
        self.records = list(ckpt["metrics"])
        self.dir.write_metrics(self.records)  # drop any record written after the checkpoint
        set_rng_state(ckpt["rng"])

    def log(self, line: str) -> None:
        """Print a plain line on stdout and append it to log.txt (the searches' RunDir.log: no timestamps, the
        records hold the times)."""
        self.dir.log(line)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits, aux = self.model(x.contiguous(memory_format=self.layout))
        return logits.float(), None if aux is None else aux.float()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from tqdm import tqdm
        cfg, model = self.cfg, self.model
        model.train()
        sums, n = torch.zeros(2, dtype=torch.float64, device=self.device), 0  # (loss·n, correct), images
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and sys.stderr.isatty()), dynamic_ncols=True)  # bars: terminal only
        for x, y in bar:
            if cfg.debug_nan_step is not None and self.step == cfg.debug_nan_step:
                x = x * float("nan")
            logits, aux = self.forward(x)
            loss = eval_loss(logits, aux, y, cfg.aux_weight)  # train.py:123-126
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)  # train.py:128
            self.optimizer.step()
            with torch.no_grad():
                main = nn.functional.cross_entropy(logits, y)
                sums += torch.stack([main.double() * y.numel(), (logits.argmax(-1) == y).sum().double()])
                n += y.numel()
                first_bad = torch.where(~torch.isfinite(loss) & (first_bad < 0), self.step, first_bad)
            self.step += 1
            if self.device.type == "cpu" or self.step % cfg.log_every == 0:
                self.check_finite(first_bad, epoch)
        self.check_finite(first_bad, epoch)
        loss_sum, correct = sums.tolist()
        return {"train_loss": loss_sum / n, "train_acc": 100 * correct / n}

    def check_finite(self, first_bad: torch.Tensor, epoch: int) -> None:
        bad = int(first_bad.item())
        if bad >= 0:
            kept = (f"the last good checkpoint (after epoch {self.records[-1]['epoch']}) is kept in "
                    f"{self.dir.checkpoint}" if self.records else "no checkpoint was written yet")
            raise NonFiniteLoss(f"loss became non-finite at global step {bad} (epoch {epoch + 1}); stopped; {kept}")

    @torch.no_grad()
    def test(self) -> dict[str, float]:
        self.model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in self.test_loader:
            logits, _ = self.forward(x)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            n += y.numel()
        return {"test_loss": loss_sum / n, "test_acc": 100.0 * correct / n}

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for epoch in range(self.start_epoch, cfg.epochs):
            start = time.perf_counter()
            lr = cosine_lr(epoch + int(cfg.lr_step_first), cfg.epochs, cfg.lr, cfg.lr_min)  # train.py:95-99
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.model.drop_path_prob = cfg.drop_path * epoch / cfg.epochs  # train.py:100
            self.train_loader.set_epoch(epoch)
            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "drop_path": self.model.drop_path_prob,
                                      **self.train_epoch(epoch)}
            record.update(self.test(), step=self.step, time=time.perf_counter() - start)
            self.wall_time += record["time"]
            self.records.append(record)
            self.dir.save_checkpoint({
                "version": CHECKPOINT_VERSION, "kind": "train", "config": config_dict(cfg),
                "genotype": genotype_to_json(self.genotype), "epoch": epoch + 1, "step": self.step,
                "wall_time": self.wall_time, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "metrics": self.records, "rng": rng_state()})
            self.dir.write_metrics(self.records)
            self.log(f"epoch {epoch + 1}/{cfg.epochs} lr {lr:.5f} drop_path {record['drop_path']:.4f} "
                     f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.2f}% "
                     f"test loss {record['test_loss']:.4f} acc {record['test_acc']:.2f}% ({record['time']:.1f} s)")
        return self.finish()

    def finish(self) -> dict[str, Any]:
        final = self.records[-1]
        device = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        result = {"genotype": genotype_to_json(self.genotype), "dataset": self.cfg.dataset,
                  "param_count": self.param_count, "params_M": round(self.param_count / 1e6, 3),
                  "test_acc": final["test_acc"], "test_error": 100.0 - final["test_acc"],
                  "test_loss": final["test_loss"], "epochs": self.cfg.epochs, "steps": self.step,
                  "wall_time_s": self.wall_time, "device": device, "final": final}
        write_json(self.dir.path / "result.json", result)
        self.log(f"summary: params {result['params_M']:.2f}M (auxiliary head excluded), test error "
                 f"{result['test_error']:.2f}% after {final['epoch']} epoch{'s' * (final['epoch'] != 1)} on {self.cfg.dataset}, wall time "
                 f"{self.wall_time / 3600:.2f} h on {device}")
        self.dir.release()
        return result


def main(argv: list[str] | None = None) -> None:
    ns = vars(train_parser().parse_args(argv))
    source = ns.pop("source")
    cfg = TrainConfig(**ns)

    def run() -> None:
        genotype, info = load_source(source)
        try:
            cfg.resolve(info.get("search_dataset"))
        except ConfigError as err:
            raise RunError(str(err)) from None
        Trainer(cfg, genotype, source, info).run()
    main_guard(run)


if __name__ == "__main__":
    main()
