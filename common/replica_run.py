"""The batched run of `--seeds`: S searches as one, each replica ending exactly as its single run.

    python sa_darts.py --seeds 0 1 2 --space nb201 ...    # 3 searches, one process, one step

`ReplicaRun` drives the vmapped math of common/replicas.py and gives the loop the same interface as a
single run (common/loop.py's `RunLoop`); the harness (common/harness.py, `open_run`) builds it for `--seeds`
of two or more. It is no subclass of `common.run.SearchRun`: it is handed that class (`single`) and builds
one per replica.

What stays per replica, and how (the math: common/replicas.py):
- data: each replica keeps its seed's own loaders, so its order and augmentation are exactly its single
  run's (`--valid-batch random`: its single run's valid-batch generator too, checkpointed in its run
  directory); a step stacks the S batches: x (S, B, 3, H, W), y (S·B,).
- the global RNG: replica s's draws (S4's noise op, GDAS's Gumbel noise) come from a generator holding its
  single run's global RNG state (`global_generators`); its position is checkpointed as that RNG state.
- the NaN guard: a replica whose gradient is non-finite does not move (`FreezeNonFinite`), its loss marks it
  stopped, it is reported, and its run directory keeps its last good checkpoint, as its single run's would;
  the others go on and match their single runs.
- run directories: each replica is an ordinary `SearchRun` (args.json with its seed, metrics.jsonl,
  checkpoint.pt, result.json, RNG state), so report, run_all and --resume cannot tell it from a single
  run, and it resumes alone. At the end of an epoch the batched state is copied into the replicas' runs,
  which measure, log and checkpoint with the single-run code; an epoch's checkpoints are committed
  together (all written as checkpoint.next.pt, then all renamed; --resume completes a cut-off rename).

Supported: common.baseline (DARTS-V1, also with --partial-channels), sa_darts (darts and snas backbones),
aer_darts (darts-v1, darts-v2, gdas), edd_darts (darts and gdas backbones), sp_darts (all objectives), every
space (S4 included, but not with GDAS: `common.replicas.gdas_refusal`); the rest (AER's P-DARTS) refuses
--seeds with a one-line error naming what is missing.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from common.config import SearchConfig
from common.graphs import StepGraphs
from common.loop import RunLoop, next_batch
from common.replicas import (
    NoiseSource,
    _slice_state,
    _stack_states,
    batched_forward,
    gdas_refusal,
    replica_losses,
    stack_replicas,
)
from common.rundir import NonFiniteLoss, RunError, RunFinished, rng_state, set_rng_state, write_json

STAGED = "checkpoint.next.pt"  # an epoch's replica checkpoints are written here first, then renamed
#: scripts whose every per-search value is per replica; a script's own unsupported options refuse themselves
SUPPORTED = ("darts", "sa_darts", "aer_darts", "edd_darts", "sp_darts")


class PerReplica(list):
    """Values, one per replica (seeds order), where a single run has one: `ReplicaRun.end_epoch` /
    `finish` give replica k its k-th."""


def replica_config(cfg: SearchConfig, seed: int) -> SearchConfig:
    """The config of seed's single run: --seed seed, its own --out ({seed} filled in, else <out>/seed<k>)."""
    out = cfg.out
    if out is not None:
        out = out.replace("{seed}", str(seed)) if "{seed}" in out else str(Path(out) / f"seed{seed}")
    nan = cfg.debug_nan_step if cfg.debug_nan_seed in (None, seed) else None
    return dataclasses.replace(cfg, seed=seed, seeds=None, out=out, debug_nan_step=nan, debug_nan_seed=None)


def check_supported(script: str, cfg: SearchConfig) -> None:
    """RunError (one line) where --seeds cannot yet give every replica its single run."""
    if script not in SUPPORTED:
        raise RunError(f"--seeds (several seeds as one batched search) is not supported by {script} yet: it "
                       "needs its per-search values as per-replica tensors; run one --seed per process")


# ----------------------------------------------------------------------------- the run

#: a `common.run.SearchRun` (that module builds this one for its pre-harness `--seeds` path, so it is not imported)
SingleRun = Any


class ReplicaRun(RunLoop):
    """S seeds at once (see the module docstring); `runs[k]` is seed k's own single run, of class `single`."""

    def __init__(self, cfg: SearchConfig, method_state: dict[str, Any] | None = None,
                 script: str | None = None, *, single: type) -> None:
        from common.config import script_name
        script = script or script_name()
        check_supported(script, cfg)
        self.cfg, self._seeds, self.S = cfg, list(cfg.seeds or ()), len(cfg.seeds or ())
        self.method_state: dict[str, Any] = dict(method_state or {})
        self.script = script
        self._make = lambda seed: single(replica_config(cfg, seed), method_state=method_state, script=script)
        self.runs: list[SingleRun] = []
        self._rng: list[dict[str, Any]] = []  # each replica's global RNG state, as its single run has it
        try:
            self._open_replicas()
        except BaseException:  # a refusal: every replica's folder as it was
            for run in self.runs:
                run.dir.abandon()
            raise

    def _open_replicas(self) -> None:
        cfg = self.cfg
        finished = []
        for seed in self.seeds:
            try:
                self.runs.append(self._make(seed))
            except RunFinished:
                finished.append(seed)
                continue
            self._rng.append(rng_state())
        for k, run in enumerate(self.runs):
            if run.started_fresh and not finished:  # args.json names the batched run it is part of
                _add_json(run.dir.path / "args.json", {"batched": self.batched_record(k)})
        if finished:
            if len(finished) == self.S:
                raise RunFinished(f"every replica (seeds {self.seeds}) holds a finished run; nothing to resume, "
                                  "nothing changed")
            raise RunError(f"seeds {finished} hold finished runs and the others do not: resume the others "
                           "with --seeds of them only")
        if cfg.resume:
            self._complete_commit()
        at = {(r.start_epoch, r.global_step) for r in self.runs}
        if len(at) > 1:
            where = ", ".join(f"seed {s}: epoch {r.start_epoch}" for s, r in zip(self.seeds, self.runs))
            raise RunError(f"the replicas' checkpoints are at different epochs ({where}); resume them one "
                           "--seed at a time")
        for p in (r.dir.path / STAGED for r in self.runs):
            p.unlink(missing_ok=True)  # a commit cut off before any rename: the epoch is redone
        steps = {None if r._step_state is None else r._step_state["global_step"] for r in self.runs}
        self._step_states = [r._step_state for r in self.runs] if len(steps) == 1 else [None] * self.S
        for run in self.runs:  # applied here, batched (`steps`); replicas cut at different steps: none is
            run._step_state = None
        self.resumed_step = False
        first = self.runs[0]
        self.device, self.table, self.dir = first.device, first.table, first.dir
        self.train_loader, self.valid_loader = first.train_loader, first.valid_loader
        self.channels_last = False  # not inside vmap (NYI); the replicas' own models keep their layout
        self.alive = torch.ones(self.S, dtype=torch.bool, device=self.device)
        self.model, self.w_optimizer, self.a_optimizer = stack_replicas(
            [r.model for r in self.runs], first.w_optimizer, first.a_optimizer, self.alive)
        self.w_params, self.a_params = self.model.weight_parameters(), self.model.arch_parameters()
        if first.w_optimizer.state:  # resumed: the replicas' optimiser states, stacked
            self.w_optimizer.load_state_dict(_stack_states(self.w_optimizer, [r.w_optimizer.state_dict() for r in self.runs]))
            self.a_optimizer.load_state_dict(_stack_states(self.a_optimizer, [r.a_optimizer.state_dict() for r in self.runs]))
        self.stopped: dict[int, str] = {}  # replica index → why it stopped
        self.graphs = StepGraphs(cfg.cuda_graphs)
        self._generators = self._global_rng_generators()  # each replica's global RNG stream (S4 noise, GDAS)
        self.noise_generators = self._noise_generators()  # S4: the same generators, [] elsewhere
        self.start_epoch, self.global_step, self.wall_time = first.start_epoch, first.global_step, 0.0
        self.records: list[dict[str, Any]] = []
        self.epoch = self.start_epoch
        self._saved_at = time.monotonic()
        self._reset_trackers()

    def batched_record(self, k: int) -> dict[str, Any]:
        """What args.json and result.json of replica k record: the seeds of the batched run and its index
        (`--seeds` with these seeds reruns it exactly; a single --seed run rounds differently in float32)."""
        return {"seeds": list(self.seeds), "replica": k}

    def _global_rng_generators(self) -> list[torch.Generator]:
        """One generator per replica holding its global RNG state (CPU, or this device's CUDA one): what its
        single run's S4 `noise` op and GDAS sampling draw from (`_sync_rng` writes their positions back)."""
        cuda = self.device.type == "cuda"
        index = (self.device.index if self.device.index is not None else torch.cuda.current_device()) if cuda else 0
        generators = []
        for state in self._rng:
            generator = torch.Generator(device=self.device)
            generator.set_state(state["cuda"][index] if cuda else state["torch"])
            generators.append(generator)
        return generators

    def _noise_generators(self) -> list[torch.Generator]:
        """The replicas' global RNG generators where the supernet has noise ops (S4), which then draw from
        them (`NoiseSource`); [] elsewhere."""
        layout = torch.channels_last if self.runs[0].channels_last else torch.contiguous_format
        if not self.model.draw_noise_from(NoiseSource(self._generators, layout)):
            return []
        for generator in self._generators:
            self.register_generator(generator)  # CUDA: registered with every captured graph
        return self._generators

    def global_generators(self) -> list[torch.Generator]:
        """The replicas' global RNG generators: replica k's GDAS noise is what its seed's run draws from
        torch's default generator (its position is checkpointed as the replica's RNG state). Registered
        for CUDA-graph capture here: call it before the steps."""
        if not self.noise_generators and not getattr(self, "_registered", False):
            for generator in self._generators:
                self.register_generator(generator)
            self._registered = True
        return self._generators

    def _sync_rng(self) -> None:
        """The generators' positions into the replicas' RNG states (checkpointed, as a single run's)."""
        for state, generator in zip(self._rng, self._generators):
            if generator.device.type == "cuda":
                index = generator.device.index if generator.device.index is not None else torch.cuda.current_device()
                state["cuda"] = [g.clone() for g in state["cuda"]]
                state["cuda"][index] = generator.get_state()
            else:
                state["torch"] = generator.get_state()

    @property
    def seeds(self) -> list[int]:
        return self._seeds

    def per_replica(self, fn: Callable[[SingleRun], Any]) -> Any:
        """`fn(run)` on each live replica's own run (its current state loaded): PerReplica results (a tuple
        of PerReplica where fn returns tuples); a stopped replica gets None."""
        out: list[Any] = [None] * self.S
        for k in self._live():
            self._load_into(k)
            self.runs[k].epoch = self.epoch  # as its single run's now (SNAS's report seeds its estimate by it)
            out[k] = fn(self.runs[k])
        first = next((o for o in out if o is not None), None)
        if isinstance(first, tuple):
            return tuple(PerReplica(None if o is None else o[i] for o in out) for i in range(len(first)))
        return PerReplica(out)

    def replica_values(self, key: str) -> list[Any]:
        return [run.method_state.get(key) for run in self.runs]

    def set_replica_values(self, key: str, values: list[Any]) -> None:
        for run, value in zip(self.runs, values):
            run.method_state[key] = value

    def replica_number(self, values: list[float], like: Tensor) -> float | Tensor:
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)

    def _complete_commit(self) -> None:
        """--resume after a kill between an epoch's renames: finish them (the staged files are complete)."""
        top = max(r.start_epoch for r in self.runs)
        for k, run in enumerate(self.runs):
            staged = run.dir.path / STAGED
            if run.start_epoch < top and staged.exists():
                try:
                    epoch = torch.load(staged, map_location="cpu", weights_only=False)["epoch"]
                except Exception:  # noqa: BLE001 - a partial file: not part of a finished commit
                    continue
                if epoch == top:
                    run.dir.digests.replace_target(staged)  # checkpoint.pt and its sha256, as a save does
                    run.dir.release()
                    self.runs[k] = self._make(self.seeds[k])
                    self._rng[k] = rng_state()

    # ------------------------------------------------------------------ the loop
    def ordered(self, w: Callable[[], tuple[Tensor, Tensor]],
                alpha: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A bilevel step from its w half and α half in `--step-order`, as every replica's single run orders it."""
        return self.runs[0].ordered(w, alpha)

    def epochs(self) -> Iterator[int]:
        for epoch in super().epochs():  # lr of the stacked w optimiser, graphs reset, epoch clock
            for run in self.runs:
                run.train_loader.set_epoch(epoch)
                run.valid_loader.set_epoch(epoch)
            yield epoch

    def steps(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """The S replicas' batches, stacked: x (S, B, 3, H, W), y (S·B,)."""
        states, self._step_states = self._step_states, [None] * self.S
        replay = states[0]["step_in_epoch"] if states[0] is not None and states[0]["epoch"] == self.epoch else 0
        yield from self._steps(self._batches(), replay, lambda: self._apply_step_states(states), self._log_all,
                               self._step_checkpoint_due, desc=f" ×{self.S}")

    def _batches(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """This epoch's batches of the S replicas, stacked, one a step (`steps`)."""
        valid = [iter(r.valid_loader) if r.valid_generator is None else iter(()) for r in self.runs]
        for train in zip(*(r.train_loader for r in self.runs)):
            batches = []
            for k, run in enumerate(self.runs):
                if run.valid_generator is not None:  # --valid-batch random: the replica's own draws
                    batches.append(run.random_valid_batch(self.global_step))
                    continue
                valid[k], batch = next_batch(valid[k], run.valid_loader)
                batches.append(batch)
            x_t, x_v = torch.stack([x for x, _ in train]), torch.stack([x for x, _ in batches])
            y_t, y_v = torch.cat([y for _, y in train]), torch.cat([y for _, y in batches])
            for k, run in enumerate(self.runs):  # --debug-nan-step: the replicas whose single run it hits
                if run.cfg.debug_nan_step is not None and self.global_step == run.cfg.debug_nan_step:
                    x_t[k] = x_t[k] * float("nan")
            yield x_t, y_t, x_v, y_v

    def _step_checkpoint_due(self) -> bool:
        """--checkpoint-every, as every replica's single run decides it; never after a replica stopped."""
        return not self.stopped and self.runs[0].step_checkpoint_due(self.step_in_epoch, self._saved_at)

    def _log_all(self, line: str) -> None:
        """A line on stdout and in every replica's log.txt."""
        self.runs[0].dir.log(line)
        for run in self.runs[1:]:
            run.dir.log_only(line)

    def save_step_checkpoint(self) -> None:
        """Every replica's mid-epoch checkpoint (`SearchRun.step_state`), as its single run writes it at this
        step. Not after a replica stopped (its run directory keeps its last good checkpoint). Written one
        replica after the other: a kill in between leaves them at different steps, and --resume then goes
        on from the epoch checkpoints."""
        if self.before_step_checkpoint is not None:
            self.before_step_checkpoint()
        self.check_finite()
        self._sync_rng()
        for k, run in enumerate(self.runs):
            self._load_into(k)
            run.epoch, run.global_step, run.step_in_epoch = self.epoch, self.global_step, self.step_in_epoch
            run._epoch_start = self._epoch_start
            run._sums = {split: s[k].clone() for split, s in self._sums.items()}
            run._counts, run._first_bad = dict(self._counts), self._first_bad[k].clone()
            set_rng_state(self._rng[k])
            run.check_parameters_finite()
            run.dir.save_step_checkpoint(run.step_state())
        self._saved_at = time.monotonic()

    @torch.no_grad()
    def _apply_step_states(self, states: list[dict[str, Any]]) -> None:
        """Every replica's mid-epoch checkpoint into its single run, then into the batched state."""
        for k, (run, state) in enumerate(zip(self.runs, states)):
            run._apply_step_state(state)
            run.resumed_step = False
            for name, p in run.model.named_parameters():
                self.model.params[name][k].copy_(p)
            self._rng[k] = state["rng"]
            for split in self._sums:
                self._sums[split][k] = run._sums[split]
            self._first_bad[k] = run._first_bad
        self.w_optimizer.load_state_dict(_stack_states(self.w_optimizer, [r.w_optimizer.state_dict() for r in self.runs]))
        self.a_optimizer.load_state_dict(_stack_states(self.a_optimizer, [r.a_optimizer.state_dict() for r in self.runs]))
        for generator, made in zip(self._generators, self._global_rng_generators()):
            generator.set_state(made.get_state())
        first = self.runs[0]
        self.global_step, self.step_in_epoch, self._counts = first.global_step, first.step_in_epoch, dict(first._counts)
        self._epoch_start = first._epoch_start
        self.resumed_step = True

    def forward(self, weights_fn: Callable[[], Mapping[str, Tensor]],
                index: Mapping[str, list[int]] | None = None) -> Callable[[Tensor], Tensor]:
        """x (S, B, 3, H, W) → logits (S·B, classes): a method's F.cross_entropy is the mean over replicas."""
        if index is not None and self.noise_generators:  # GDAS hard sampling on a space with the noise op
            raise RunError(gdas_refusal(self.cfg.space) or "--seeds: GDAS sampling with noise ops")
        return batched_forward(self.model, weights_fn, index, self.cfg.amp == "bf16", not self.cfg.cuda_graphs)

    def _reset_trackers(self) -> None:
        self._sums = {s: torch.zeros(self.S, 2, device=self.device, dtype=torch.float64) for s in ("train", "valid")}
        self._counts = {"train": 0, "valid": 0}
        self._first_bad = torch.full((self.S,), -1, dtype=torch.long, device=self.device)
        self.step_in_epoch = 0

    def track(self, split: str, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        """Per replica: its loss (`loss` if it is per replica, (S,), as SP's two-pass objectives give it;
        else its mean cross-entropy, from the logits), correct count, and the NaN watch."""
        per = loss if loss.dim() == 1 else replica_losses(logits, y, self.S)  # (S,) as each single run's
        logits, y = logits.view(self.S, -1, logits.shape[-1]), y.view(self.S, -1)
        n = y.shape[1]
        correct = (logits.argmax(-1) == y).sum(1)
        self._sums[split] += torch.stack([per.double() * n, correct.double()], dim=1)
        self._counts[split] += n
        bad = ~torch.isfinite(per) | ~self.alive  # ~alive: a gradient was non-finite (the replica froze)
        self.alive.logical_and_(~bad)
        self._first_bad = torch.where(bad & (self._first_bad < 0), self.global_step, self._first_bad)

    def check_finite(self) -> None:
        """Stop the replicas whose loss became non-finite (one line each); all stopped: NonFiniteLoss."""
        for k, first in enumerate(self._first_bad.tolist()):
            if first >= 0 and k not in self.stopped:
                run = self.runs[k]
                last = run.records[-1]["epoch"] if run.records else 0
                kept = (f"its last good checkpoint (after epoch {last}) is kept in {run.dir.checkpoint}"
                        if run.dir.checkpoint.exists() else "no checkpoint was written yet")
                self.stopped[k] = (f"seed {self.seeds[k]}: loss became non-finite at global step {first} "
                                   f"(epoch {self.epoch + 1}); this replica stopped, {kept}")
                print(self.stopped[k] + "; the other replicas go on", file=sys.stderr)
        if len(self.stopped) == self.S:
            raise NonFiniteLoss(f"every replica's loss became non-finite (seeds {self.seeds}); stopped; the "
                                "last good checkpoints are kept")

    def running_means(self) -> dict[str, str]:
        out = {}
        for split, s in self._sums.items():
            (loss, correct), n = s.sum(0).tolist(), self._counts[split] * self.S
            if n:
                out[f"{split}_loss"] = f"{loss / n:.3f}"
                out[f"{split}_acc"] = f"{100 * correct / n:.1f}"
        return out

    # ------------------------------------------------------------------ end of epoch
    def _load_into(self, k: int) -> None:
        """Replica k's parameters and optimiser states into its own SearchRun."""
        run = self.runs[k]
        self.model.copy_to(k, run.model)
        run.w_optimizer.load_state_dict(_slice_state(self.w_optimizer, k, run.w_optimizer.state_dict()))
        run.a_optimizer.load_state_dict(_slice_state(self.a_optimizer, k, run.a_optimizer.state_dict()))

    def _live(self) -> list[int]:
        return [k for k in range(self.S) if k not in self.stopped]

    def end_epoch(self, used_weights: Mapping[str, Tensor] | PerReplica,
                  schedule: Mapping[str, Any] | PerReplica | None = None,
                  derive_temperature: float | Tensor | PerReplica = 1.0) -> dict:
        """Each live replica measures, logs and checkpoints with the single-run code; one commit for all.

        Values may be per replica: PerReplica, or tensors with a leading replica axis."""
        self.check_finite()
        accuracy = self._discrete_accuracies(derive_temperature)
        self._sync_rng()  # after the evaluation's (noise) draws, as the single run's checkpoint has it
        staged: list[tuple[SingleRun, Path, int]] = []
        written: list[tuple[SingleRun, list[dict]]] = []
        records = {}
        for k in self._live():
            run = self.runs[k]
            run.discrete_accuracy = lambda onehot, acc=accuracy[k]: acc  # measured batched, below
            self._load_into(k)
            run.epoch, run.global_step, run._epoch_start = self.epoch, self.global_step, self._epoch_start
            run._sums = {split: s[k].clone() for split, s in self._sums.items()}
            run._counts = dict(self._counts)
            set_rng_state(self._rng[k])
            path = run.dir.path / STAGED
            run.dir.save_checkpoint = lambda state, path=path: _save_staged(state, path)  # written, not renamed
            # metrics.jsonl after the commit, as a single run writes it after its checkpoint: a kill before
            # the renames leaves no record that a checkpoint does not hold (a fresh start would refuse it)
            run.dir.write_metrics = lambda records, run=run: written.append((run, list(records)))
            try:
                used = used_weights[k] if isinstance(used_weights, PerReplica) else \
                    {kind: w[k] for kind, w in used_weights.items()}
                records[self.seeds[k]] = run.end_epoch(used, _split(schedule, k, self.S),
                                                       _one(derive_temperature, k))
            finally:
                del run.dir.save_checkpoint, run.dir.write_metrics, run.discrete_accuracy  # the run's own again
            staged.append((run, path, self.epoch + 1))
        self._saved_at = time.monotonic()
        for run, path, epoch in staged:  # the commit: every replica's epoch, or (after a kill) --resume finishes it
            run.dir.digests.replace_target(path)  # checkpoint.pt and checkpoint.pt.sha256
            run.dir.saved_epoch = epoch
        for run, lines in written:
            run.dir.write_metrics(lines)
        self._reset_trackers()
        return records

    @torch.no_grad()
    def _discrete_accuracies(self, derive_temperature: float | Tensor | PerReplica) -> dict[int, float]:
        """Each live replica's discretized-net accuracy (`SearchRun.discrete_accuracy`), in one batched pass
        over the eval split (the same images for every seed): the replicas' one-hot cells stacked."""
        live = self._live()
        onehots: list[dict[str, Tensor]] = []
        for k in range(self.S):
            run = self.runs[k if k in live else live[0]]  # a stopped replica computes a live one's cell, unused
            self.model.copy_to(k if k in live else live[0], run.model)
            onehots.append(run.discrete_weights(run.genotype(_one(derive_temperature, k if k in live else live[0]))))
        weights = {kind: torch.stack([o[kind] for o in onehots]) for kind in onehots[0]}  # (S, E, M)
        correct, n = torch.zeros(self.S, dtype=torch.long, device=self.device), 0
        for x, y in self.runs[live[0]].eval_loader:
            logits = self.model(x, weights, use_gammas=False)  # (S, B, classes): x shared by the replicas
            correct += (logits.argmax(-1) == y).sum(1)
            n += y.numel()
        return {k: 100.0 * correct[k].item() / max(n, 1) for k in live}

    def finish(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Each live replica writes its result.json; NonFiniteLoss afterwards if any replica stopped."""
        results = {}
        for k in self._live():
            self._load_into(k)
            set_rng_state(self._rng[k])
            results[self.seeds[k]] = self.runs[k].finish({**(_split(extra, k, self.S) or {}),
                                                          "batched": self.batched_record(k)})
        if self.stopped:
            seeds = [self.seeds[k] for k in sorted(self.stopped)]
            raise NonFiniteLoss(f"{len(seeds)} of {self.S} replicas stopped on a non-finite loss (seeds {seeds}); "
                                "the others finished and wrote result.json")
        return {"replicas": results}


def _add_json(path: Path, values: Mapping[str, Any]) -> None:
    write_json(path, {**json.loads(path.read_text()), **values})


def _save_staged(state: dict[str, Any], path: Path) -> None:
    """torch.save to `path` (a replica's checkpoint.next.pt); a failed write removes it, stops with one line."""
    try:
        torch.save(state, path)
    except (OSError, RuntimeError) as err:  # torch reports a full disk as RuntimeError
        path.unlink(missing_ok=True)
        raise RunError(f"cannot write {path} ({str(err).splitlines()[0][:120]}); the replicas' last "
                       "checkpoints are as before") from None


def _one(value: float | Tensor | PerReplica, k: int) -> float:
    """Replica k's number of a float, a PerReplica, or an (S, …) tensor of one value per replica."""
    if isinstance(value, PerReplica):
        return value[k]
    if torch.is_tensor(value):
        return value.reshape(value.shape[0], -1)[k, 0].item()
    return value


def _split(values: Mapping[str, Any] | PerReplica | None, k: int, S: int) -> dict[str, Any] | None:
    """Replica k's share of per-epoch values: tensors with a leading replica axis are indexed, others shared."""
    if isinstance(values, PerReplica):
        return values[k]
    if values is None:
        return None
    return {name: v[k] if isinstance(v, PerReplica) or (torch.is_tensor(v) and v.dim() and v.shape[0] == S)
            else v for name, v in values.items()}
