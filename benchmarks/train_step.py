"""Time one training step and one test batch of the evaluation network; estimate an epoch and a full run.

    python benchmarks/train_step.py --device cpu --threads 2 --iters 3     # what docs/speed.md's evaluation cost uses
    python benchmarks/train_step.py --device cuda                          # bf16 autocast, channels_last

The step is `common.train`'s: forward (with the auxiliary head and drop-path), the loss with the head's
weight, backward, gradient clipping, SGD. An epoch is estimated per image (train_images × step/batch +
test_images × test batch/its size), so a smaller `--batch-size` (less memory) estimates the batch-96
epoch; the run is `--epochs` of them. Random inputs: the data path is
not timed (on CUDA the device-resident loader adds ~10 kernels per batch).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.evalnet import NAMED_GENOTYPES, EvalNetwork, eval_loss  # noqa: E402


def _timed(fn, device: torch.device, iters: int, warmup: int) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of `fn()` over `iters` calls after `warmup` calls.

    On a shared CPU the process time (all threads) is the steadier figure: wall time grows with the
    machine's load, CPU seconds much less."""
    walls, cpus = [], []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            walls.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genotype", default="DARTS_V2", choices=tuple(NAMED_GENOTYPES))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--C", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--train-images", type=int, default=50_000)
    p.add_argument("--test-images", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    layout = torch.channels_last if cuda else torch.contiguous_format
    torch.manual_seed(0)
    model = EvalNetwork(NAMED_GENOTYPES[args.genotype], args.C, args.layers, 10, auxiliary=True)
    model = model.to(device, memory_format=layout)
    model.drop_path_prob = 0.15  # mid-run value of 0.3·epoch/epochs
    opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    x_test = torch.randn(min(256, 2 * args.batch_size), 3, 32, 32, device=device).contiguous(memory_format=layout)

    def train_step() -> None:
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits, aux = model(x)
        loss = eval_loss(logits.float(), aux.float(), y, 0.4)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    @torch.no_grad()
    def test_batch() -> None:
        model.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model(x_test)

    step, step_cpu = _timed(train_step, device, args.iters, args.warmup)
    test, test_cpu = _timed(test_batch, device, args.iters, args.warmup)
    # per image, so that a smaller --batch-size (less memory) still estimates the batch-96 epoch
    train_img, test_img = step / args.batch_size, test / x_test.shape[0]
    epoch = args.train_images * train_img + args.test_images * test_img
    epoch_cpu = args.train_images * step_cpu / args.batch_size + args.test_images * test_cpu / x_test.shape[0]
    name = torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.genotype} C={args.C} layers={args.layers} batch {args.batch_size} on {name}, torch {torch.__version__}"
          f"{', bf16 autocast, channels_last' if cuda else ', fp32'} (median of {args.iters}):\n"
          f"  train step {step * 1e3:.0f} ms wall, {step_cpu * 1e3:.0f} ms CPU ({train_img * 1e3:.1f} ms/image wall); "
          f"test batch of {x_test.shape[0]} {test * 1e3:.0f} ms wall, {test_cpu * 1e3:.0f} ms CPU\n"
          f"  epoch ({args.train_images} train + {args.test_images} test images) {epoch / 60:.1f} min wall "
          f"({epoch_cpu / 60:.1f} CPU-min); {args.epochs} epochs {args.epochs * epoch / 3600:.1f} h wall "
          f"({args.epochs * epoch_cpu / 3600:.1f} CPU-h)")


if __name__ == "__main__":
    main()
