"""The `official` clip scope's norm vs the w-only norm, measured on real steps.

    python benchmarks/clip_norm.py                   # NB201 C=16 N=5, t = 1e-3, CIFAR-10 subset, 6 steps
    python benchmarks/clip_norm.py --t 1 --steps 4   # plain DARTS temperature, for comparison

Runs first-order bilevel steps (w step with `--clip-scope official`, then the α step) on the op weights
softmax(α/t) — what EDD, PCD and SP train with once t is small — and prints, per step, the gradient norm
the official scope clips (w and α.grad = last α step's gradient + this step's ∇α L_train) beside the
norm of w's gradient alone, and the factor min(1, clip/norm) the w gradient is scaled by under each
scope. The norms are read inside `w_step`'s own `clip_grad_norm_` call (wrapped for the measurement).

Measured (default command, OMP_NUM_THREADS=1, shared 2-core x86-64 CPU, 2 min 22 s): official norm
100.67, 211.97, 330.16, 319.06, 319.87, 396.17; w-only norm 4.015, 3.665, 3.994, 4.260, 4.301, 5.882;
w-gradient factor official 0.0497 → 0.0126, w-only 1.0 (0.85 at step 5). (Issue 17 saw 29–43 vs
1.8–2.4 on a C=4, N=1 supernet.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.data import MEAN, STD, make_loader, search_split  # noqa: E402
from common.fast import build_supernet  # noqa: E402
from common.search import alpha_step, w_step  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--t", type=float, default=1e-3, help="temperature of softmax(α/t)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    (x_t, y_t), (x_v, y_v) = search_split("cifar10", args.data_dir, None)
    kw = dict(device=torch.device("cpu"), mean=MEAN["cifar10"], std=STD["cifar10"], augment=True, shuffle=True,
              drop_last=True)
    train = iter(make_loader("torch", x_t, y_t, args.batch_size, seed=args.seed, **kw))
    valid = iter(make_loader("torch", x_v, y_v, args.batch_size, seed=args.seed + 1, **kw))
    model = build_supernet(args.space, args.C, args.N, 10)
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    w_opt = torch.optim.SGD(w_params, 0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(a_params, 3e-4, betas=(0.5, 0.999), weight_decay=0.0)
    fwd = lambda x: model(x, {k: F.softmax(a / args.t, dim=-1) for k, a in model.alphas.items()})

    clip_fn, seen = nn.utils.clip_grad_norm_, []

    def recording_clip(params, max_norm, *a, **k):  # w_step's call: params = w + α (official scope)
        params = list(params)
        w_norm = nn.utils.get_total_norm([p.grad for p in params[: len(w_params)] if p.grad is not None])
        total = clip_fn(params, max_norm, *a, **k)
        seen.append((float(total), float(w_norm)))
        return total

    nn.utils.clip_grad_norm_ = recording_clip
    try:
        print(f"{args.space} C={args.C} N={args.N} t={args.t:g} batch {args.batch_size} clip {args.clip}")
        print("step  official-norm  w-norm   w-grad factor official / w-only")
        for step in range(args.steps):
            x, y = next(train)
            xv, yv = next(valid)
            w_step(fwd, x, y, w_params, w_opt, args.clip, a_params)
            alpha_step(fwd, xv, yv, a_params, a_opt)
            total, w_norm = seen[-1]
            print(f"{step:4d}  {total:13.2f}  {w_norm:6.3f}   {min(1, args.clip / total):.4f} / "
                  f"{min(1, args.clip / w_norm):.4f}")
    finally:
        nn.utils.clip_grad_norm_ = clip_fn


if __name__ == "__main__":
    main()
