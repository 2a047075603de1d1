"""The narrow run harness a method's search loop sees: one run, single or `--seeds`, step order, capture, RNG.

API (each call, one line; `run = open_run(...)`; a *half* is a function of the batch (x_t, y_t, x_v, y_v)
returning (loss, logits), detached; a *forward* is x → logits):

    open_run(cfg, script, state, run_class=None) → Harness  the run (a batched one with --seeds),
        resumed when asked; refuses --seeds it cannot batch (`seeds_refusal`); `state`: method_state, per seed
    run.cfg, run.model, run.alphas, run.device, run.seeds, run.start_epoch, run.epoch, run.w_lr   what it is now
    run.w_params, run.a_params, run.w_optimizer, run.a_optimizer, run.steps_per_epoch       for a custom half
    run.epochs()                               the epochs still to run (0-based); sets the cosine lr of w
    run.batches()                              this epoch's (x_t, y_t, x_v, y_v); --valid-batch, --seeds stacked
    run.forward(weights)                       forward with op weights weights() (a dict kind → (E, M)), per call
    run.gdas_forward(tau, sample=gdas_weights) GDAS's sampled-op forward: a fresh hard Gumbel sample per call
    run.w_step(fwd)                            half: one step on w (--grad-clip, --clip-scope), α fixed
    run.alpha_step(fwd, reg=None)              half: first-order α step on L_val + reg() (DARTS-V1)
    run.unrolled_alpha_step(fwd, reg=None)     half: DARTS-V2's second-order α step (ξ = the w lr); runs first
    run.valid_loss(fwd)                        half: the valid loss only, α frozen (a warm-up epoch)
    run.bilevel(batch, w, alpha, key=None)     one step: the halves in --step-order, CUDA-graph capture (eager
        for a sampled op on one seed), tracked loss/accuracy; `key`: one graph per value of a Python value
    run.generator(key, offset=0, device=None)  a named RNG per seed, seeded seed + offset, checkpointed in
        method_state[key]: what a draw passes as `generator=` (a Generator; with --seeds a list, one per seed);
        run.generators[key] is always the list
    run.global_generator()                     the global RNG as `generator=` (None; with --seeds a list)
    run.seed_generators(key, offset=0, device=None)  `generator`'s RNGs as a list, one per seed (draws seed by seed)
    run.per_seed(values)                       one number per seed as a step uses it (a float; (S, 1, 1))
    run.step_flag()                            a per-seed bool the step's forwards read (SP's φ): `flag.set(values)`
        before each step → the step's graph key; `flag.where(a, b)`: the weights a() where set, else b()
    run.cross_entropy(logits, y)               the loss a custom half reports: the mean cross-entropy; (S,) with --seeds
    run.state(key) / run.set_state(key, v)     method_state[key] of every seed (a list) / set (a list or one value)
    run.end_epoch(report)                      report(r) once per seed (r: that seed's own SearchRun) →
        (op weights used, metrics dict[, derive temperature]): measure, log, checkpoint
    run.finish(extra=None)                     result.json (extra: a dict, or extra(r) per seed)
    run.inner                                  the run beneath (its older API; P-DARTS's stage_epoch())

SA-DARTS's loop (sa_darts.py), the whole algorithm:

    run = open_run(cfg, "sa_darts", state={})
    gumbel = run.generator("gumbel_rng")                               # SNAS's noise: per seed, checkpointed
    for epoch in run.epochs():
        lam, reg = regulariser(cfg, run.alphas, epoch)                 # λ_e = e/5 and Eq. 7 (or β-DARTS)
        tau = linear_tau(epoch, cfg.epochs, cfg.tau_max, cfg.tau_min)
        fwd = run.forward(lambda: snas_weights(run.alphas, tau, gumbel) if cfg.backbone == "snas"
                          else softmax_weights(run.alphas))            # Eq. 1
        alpha = run.valid_loss(fwd) if epoch < cfg.warmup else run.alpha_step(fwd, reg)
        for batch in run.batches():
            run.bilevel(batch, w=run.w_step(fwd), alpha=alpha)         # Alg. 1 lines 6-7
        run.end_epoch(lambda r: epoch_report(cfg, r, ...))             # once per seed
    return run.finish()

Why halves take the batch: a captured CUDA graph replays on its own input buffers, so what a step reads
must come in through its arguments, not through a closure over the loop's tensors. The run beneath
(`inner`: common.run.SearchRun, or common.replica_run.ReplicaRun with --seeds) keeps its older API for the
loops not yet on the harness.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from common.config import SearchConfig
from common.replica_run import ReplicaRun
from common.replicas import gdas_refusal, replica_losses
from common.run import RunError, SearchRun
from common.sampling import Generators, gdas_weights
from common.search import alpha_step, ordered_step, unrolled_alpha_step, w_step

Batch = tuple[Tensor, Tensor, Tensor, Tensor]
Half = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
Forward = Callable[[Tensor], Tensor]
#: what `end_epoch`'s report and `finish`'s extra get: one seed's own run (model, cfg, epoch, method_state)
SeedRun = SearchRun
Report = Callable[[SeedRun], tuple]


def seeds_refusal(cfg: SearchConfig, run_class: Callable[..., Any] | None = None,
                  planning: bool = False) -> str | None:
    """Why `--seeds` cannot batch this run, or None: a run class that says so (its `seeds_refusal`, e.g.
    P-DARTS's staged supernet), the config's own reason (`cfg.seeds_refusal(planning)`), or GDAS's sampled
    ops (`cfg.uses_gdas()`) on a space with a noise op (`gdas_refusal`)."""
    cls = getattr(run_class, "func", run_class)  # a functools.partial of the class
    if why := getattr(cls, "seeds_refusal", None) or cfg.seeds_refusal(planning):
        return why
    return gdas_refusal(cfg.space) if getattr(cfg, "uses_gdas", lambda: False)() else None


def open_run(cfg: SearchConfig, script: str | None = None, state: Mapping[str, Any] | None = None,
             run_class: Callable[..., Any] | None = None) -> Harness:
    """Open (or resume) the search run of `cfg`: one seed, or with `--seeds` all of them batched.

    Args:
        cfg: the resolved config.
        script: the run directory's parent name (default: the running script's).
        state: the method's schedule state (per seed; checkpointed, restored on --resume).
        run_class: builds one seed's run, called (cfg, method_state=, script=); default `SearchRun`
            (e.g. `functools.partial(PdartsRun, schedule=...)`).
    """
    return Harness(build_run(cfg, script, state, run_class))


def build_run(cfg: SearchConfig, script: str | None = None, state: Mapping[str, Any] | None = None,
              run_class: Callable[..., Any] | None = None) -> SearchRun | ReplicaRun:
    """The run beneath `open_run`'s harness (same arguments): `run_class` for one seed, `ReplicaRun` of it
    for `--seeds`; the one place that chooses between them."""
    single = run_class or SearchRun
    if cfg.seeds:
        if why := seeds_refusal(cfg, single):
            raise RunError(why)
        return ReplicaRun(cfg, dict(state or {}), script, single=single)
    return single(cfg, method_state=dict(state or {}), script=script)


def _tagged(fn: Callable, sampled: bool, **tags: Any) -> Callable:
    fn.sampled = sampled  # type: ignore[attr-defined]  # draws its op on the host (GDAS): not capturable alone
    for name, value in tags.items():
        setattr(fn, name, value)
    return fn


class Harness:
    """A method's view of its run; see the module docstring for every call. `inner` is the run beneath."""

    def __init__(self, inner: SearchRun | ReplicaRun) -> None:
        self.inner = inner
        self.cfg = inner.cfg
        self.device = inner.device
        self.seeds = inner.seeds
        self.start_epoch = inner.start_epoch
        self.batched = isinstance(inner, ReplicaRun)  # stacked (S, …) parameters, one generator per seed
        self.generators: dict[str, list[torch.Generator]] = {}  # name → one per seed (checkpointed)
        inner.before_step_checkpoint = self._save_generators  # a mid-epoch checkpoint holds their positions

    # ------------------------------------------------------------------ what the run is now
    @property
    def model(self) -> Any:
        return self.inner.model  # a staged run (P-DARTS) builds a new one per stage

    @property
    def alphas(self) -> Mapping[str, Tensor]:
        return self.inner.model.alphas

    @property
    def epoch(self) -> int:
        return self.inner.epoch

    @property
    def w_lr(self) -> float:
        return self.inner.w_lr

    @property
    def w_params(self) -> list[Tensor]:
        return self.inner.w_params

    @property
    def a_params(self) -> list[Tensor]:
        return self.inner.a_params

    @property
    def w_optimizer(self) -> torch.optim.Optimizer:
        return self.inner.w_optimizer

    @property
    def a_optimizer(self) -> torch.optim.Optimizer:
        return self.inner.a_optimizer

    @property
    def steps_per_epoch(self) -> int:
        return len(self.inner.train_loader)

    # ------------------------------------------------------------------ the loop
    def epochs(self) -> Iterator[int]:
        return self.inner.epochs()

    def batches(self) -> Iterator[Batch]:
        for batch in self.inner.steps():
            if self.inner.resumed_step:  # a mid-epoch checkpoint was just applied: the generators' positions
                self.inner.resumed_step = False
                self._load_generators()
            yield batch

    def forward(self, weights: Callable[[], Mapping[str, Tensor]]) -> Forward:
        return _tagged(self.inner.forward(weights), False)

    def gdas_forward(self, tau: float | Tensor, sample: Callable[..., tuple] = gdas_weights) -> Forward:
        """`sample(alphas, tau, generator)` → (weights, index), by default common.sampling.gdas_weights; a method
        passes the name its own module holds, so that patching that name (a test recording every draw) works."""
        generator = self.global_generator()

        def fwd(x: Tensor) -> Tensor:
            weights, index = sample(self.inner.model.alphas, tau, generator)
            return self.inner.forward(lambda: weights, index)(x)
        return _tagged(fwd, not self.batched)  # batched: one-hots on the device, capturable

    def w_step(self, fwd: Forward) -> Half:
        run = self.inner
        return _tagged(lambda x_t, y_t, x_v, y_v: w_step(fwd, x_t, y_t, run.w_params, run.w_optimizer,
                                                         self.cfg.grad_clip, run.clip_extra),
                       getattr(fwd, "sampled", False))

    def alpha_step(self, fwd: Forward, reg: Callable[[], Tensor] | None = None) -> Half:
        run = self.inner
        return _tagged(lambda x_t, y_t, x_v, y_v: alpha_step(fwd, x_v, y_v, run.a_params, run.a_optimizer, reg),
                       getattr(fwd, "sampled", False))

    def unrolled_alpha_step(self, fwd: Forward, reg: Callable[[], Tensor] | None = None) -> Half:
        run = self.inner

        def half(x_t: Tensor, y_t: Tensor, x_v: Tensor, y_v: Tensor) -> tuple[Tensor, Tensor]:
            return unrolled_alpha_step(fwd, x_t, y_t, x_v, y_v, run.w_params, run.a_params, run.w_optimizer,
                                       run.a_optimizer, xi=run.w_lr, reg=reg)
        return _tagged(half, getattr(fwd, "sampled", False), order="alpha-first")  # w' from the w it steps

    def valid_loss(self, fwd: Forward) -> Half:
        def half(x_t: Tensor, y_t: Tensor, x_v: Tensor, y_v: Tensor) -> tuple[Tensor, Tensor]:
            with torch.no_grad():
                logits = fwd(x_v)
            return F.cross_entropy(logits, y_v), logits
        return _tagged(half, getattr(fwd, "sampled", False))

    def bilevel(self, batch: Batch, w: Half, alpha: Half, key: Any = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One bilevel step → (train loss, train logits, valid loss, valid logits)."""
        order = getattr(alpha, "order", None)

        def step(x_t: Tensor, y_t: Tensor, x_v: Tensor, y_v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            halves = (lambda: w(x_t, y_t, x_v, y_v), lambda: alpha(x_t, y_t, x_v, y_v))
            return ordered_step(order, *halves) if order else self.inner.ordered(*halves)  # --step-order
        sampled = getattr(w, "sampled", False) or getattr(alpha, "sampled", False)
        return self.inner.step(step, *batch, key=key, capture=not sampled)  # a host-side op choice stays eager

    # ------------------------------------------------------------------ per seed
    def generator(self, key: str, offset: int = 0, device: torch.device | str | None = None) -> Generators:
        """A named RNG per seed (seed + `offset`), on `device` (default the run's), registered for graph capture
        and checkpointed in method_state[key]: continues where it was on --resume."""
        if key not in self.generators:
            made = [torch.Generator(device=device or self.device).manual_seed(seed + offset) for seed in self.seeds]
            for generator, state in zip(made, self.inner.replica_values(key)):
                if state is not None:  # resumed: continue the stream
                    generator.set_state(state)
            for generator in made:
                self.inner.register_generator(generator)
            self.generators[key] = made
            self._save_generators()
        made = self.generators[key]
        return made if self.batched else made[0]

    def global_generator(self) -> Generators:
        return self.inner.global_generators()

    def seed_generators(self, key: str, offset: int = 0, device: torch.device | str | None = None
                        ) -> list[torch.Generator]:
        """The RNGs of `generator(key, offset, device)` as a list, one per seed (one without --seeds)."""
        self.generator(key, offset, device)
        return self.generators[key]

    def step_flag(self) -> StepFlag:
        """A per-seed bool that the step's forwards read (see `StepFlag`)."""
        return StepFlag(len(self.seeds) if self.batched else 0, self.device)

    def cross_entropy(self, logits: Tensor, y: Tensor) -> Tensor:
        """The mean cross-entropy as a half reports it: a scalar; with --seeds each seed's own, (S,)."""
        return replica_losses(logits, y, len(self.seeds)) if self.batched else F.cross_entropy(logits, y)

    def per_seed(self, values: list[float]) -> float | Tensor:
        return self.inner.replica_number(values, next(iter(self.alphas.values())))

    def state(self, key: str) -> list[Any]:
        return self.inner.replica_values(key)

    def set_state(self, key: str, values: Any) -> None:
        self.inner.set_replica_values(key, values if isinstance(values, list) else [values] * len(self.seeds))

    def _load_generators(self) -> None:
        for key, made in self.generators.items():
            for generator, state in zip(made, self.inner.replica_values(key)):
                generator.set_state(state)

    def _save_generators(self) -> None:
        for key, made in self.generators.items():
            self.inner.set_replica_values(key, [g.get_state() for g in made])

    def end_epoch(self, report: Report) -> Any:
        """report(r) of every seed's own run r → (op weights used, metrics[, derive temperature]); the
        named generators' positions go into the checkpoint first."""
        self._save_generators()

        def one(r: SeedRun) -> tuple:
            out = tuple(report(r))
            return out if len(out) == 3 else (*out, 1.0)
        return self.inner.end_epoch(*self.inner.per_replica(one))

    def finish(self, extra: Mapping[str, Any] | Callable[[SeedRun], Mapping[str, Any]] | None = None) -> dict:
        return self.inner.finish(self.inner.per_replica(extra) if callable(extra) else extra)


class StepFlag:
    """A bool per seed that changes every step and picks between two sets of op weights (SP-DARTS's φ).

    One seed: a Python bool, which `set` returns as the step's graph key (one CUDA graph per value), and
    `where(a, b)` computes only the picked weights. With --seeds: an (S, 1, 1) device buffer, filled outside
    the step (one graph reads it), and `where(a, b)` picks per seed from both.
    """

    def __init__(self, seeds: int, device: torch.device) -> None:
        self.value = False
        self.buffer = torch.zeros(seeds, 1, 1, dtype=torch.bool, device=device) if seeds else None

    def set(self, values: list[bool]) -> bool | None:
        """This step's value of every seed; returns the step's graph key (None with --seeds)."""
        if self.buffer is None:
            self.value = bool(values[0])
            return self.value
        self.buffer.copy_(torch.tensor(values).view(-1, 1, 1))
        return None

    def where(self, a: Callable[[], Mapping[str, Tensor]], b: Callable[[], Mapping[str, Tensor]]
              ) -> Mapping[str, Tensor]:
        """a() where the flag is set, else b(): the op weights (kind → (E, M); (S, E, M) with --seeds)."""
        if self.buffer is None:
            return a() if self.value else b()
        w_a, w_b = a(), b()
        return {k: torch.where(self.buffer, w_a[k], w_b[k]) for k in w_a}
