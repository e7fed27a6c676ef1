"""Where one training iteration (n_critic critic steps + 1 generator step) spends its time on
CUDA: kernel launches per iteration, GPU busy time, and torch.profiler's top operators.
Usage: python bench/gan_profile.py [--size 128] [--batch 64] [--compile-mode default]."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.gan.trainer import GanTrainer, TrainConfig  # noqa: E402
from core.gan.models import CriticConfig, GeneratorConfig  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--compile-mode", default="default",
                   help="default (compiled, no CUDA graphs), auto (the trainer's choice), off (eager)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs CUDA")
        return 1
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True          # as core.gan.job.train sets on CUDA
    data = torch.randint(0, 256, (512, 1, args.size, args.size), dtype=torch.uint8, device=dev)
    trainer = GanTrainer(GeneratorConfig(latent_dim=128, size=args.size), CriticConfig(size=args.size),
                         TrainConfig(loss="wgan-gp", batch_size=args.batch, n_critic=5, seed=0), data, dev)
    if args.compile_mode != "off":
        t = time.perf_counter()
        trainer.use_compiled(None if args.compile_mode == "default" else args.compile_mode)
        print(f"path {trainer.path} ({trainer.compile_error or 'ok'}), "
              f"compiled in {time.perf_counter() - t:.0f} s")
    for _ in range(5):
        trainer.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        for _ in range(args.iters):
            trainer.step()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t) / args.iters
    table = prof.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
    print(table.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=60))
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy_ms = sum(e.device_time for e in kernels) / 1e3 / args.iters
    print(f"{len(kernels) / args.iters:.0f} kernels per iteration, GPU busy {busy_ms:.1f} ms per "
          f"iteration, {1000 * wall:.1f} ms wall per iteration (under the profiler)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
