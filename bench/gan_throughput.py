"""Time one WGAN-GP iteration (n_critic critic steps + 1 generator step) two ways on identical
networks, data, resolution and batch: a tutorial-style loop and the project's GanTrainer.step();
plus what metrics logging and control polling add to a step. Usage: see docs/performance.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.gan import job as gt  # noqa: E402
from core.gan import live  # noqa: E402
from core.device import describe, pick_device  # noqa: E402
from core.gan.trainer import GanTrainer, TrainConfig  # noqa: E402
from core.gan.models import Critic, CriticConfig, Generator, GeneratorConfig  # noqa: E402
from core.runs.store import RunStore  # noqa: E402

# ---- (a) the reference: how popular WGAN-GP tutorials write the loop --------------------------

def tutorial_gradient_penalty(critic, real, fake, device):
    batch, c, h, w = real.shape
    alpha = torch.rand((batch, 1, 1, 1)).repeat(1, c, h, w).to(device)   # fresh CPU alpha
    interpolated = real * alpha + fake * (1 - alpha)                      # fake not detached
    mixed_scores = critic(interpolated)
    gradient = torch.autograd.grad(inputs=interpolated, outputs=mixed_scores,
                                   grad_outputs=torch.ones_like(mixed_scores),
                                   create_graph=True, retain_graph=True)[0]
    gradient_norm = gradient.view(gradient.shape[0], -1).norm(2, dim=1)
    return torch.mean((gradient_norm - 1) ** 2)


def tutorial_iteration(gen, critic, opt_gen, opt_critic, data_cpu, batch, latent_dim, n_critic,
                       lam, device):
    for _ in range(n_critic):
        idx = torch.randint(len(data_cpu), (batch,))
        real = data_cpu[idx].to(device)                                  # batch moved every step
        noise = torch.randn(batch, latent_dim, device=device)
        fake = gen(noise)
        critic_real = critic(real).reshape(-1)
        critic_fake = critic(fake).reshape(-1)
        gp = tutorial_gradient_penalty(critic, real, fake, device)
        loss_critic = -(torch.mean(critic_real) - torch.mean(critic_fake)) + lam * gp
        critic.zero_grad()
        loss_critic.backward(retain_graph=True)
        opt_critic.step()
    gen_fake = critic(fake).reshape(-1)                                  # reuses the last fake
    loss_gen = -torch.mean(gen_fake)
    gen.zero_grad()
    loss_gen.backward()
    opt_gen.step()


# ---- timing ---------------------------------------------------------------------------------

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, device, warmup: int, iters: int) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) per iteration. On a shared CPU the wall time includes
    waiting for other processes; the CPU time of a 1-thread run does not."""
    for _ in range(warmup):
        fn()
    _sync(device)
    wall, cpu = [], []
    for _ in range(iters):
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--iters", type=int, default=3, help="timed iterations per loop")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations first (compiles on GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--width", type=float, default=1.0, help="network width (1.0 = the report's nets)")
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--compile-mode", default="auto",
                   help="torch.compile mode for (b): auto (the trainer's choice: reduce-overhead on "
                        "one GPU), default, reduce-overhead, ...")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch's default)")
    p.add_argument("--log-every", type=int, default=10, help="log interval used for the overhead")
    p.add_argument("--n-images", type=int, default=512, help="size of the synthetic training set")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gen_cfg = GeneratorConfig(latent_dim=args.latent_dim, size=args.size, width=args.width)
    critic_cfg = CriticConfig(size=args.size, width=args.width)
    train_cfg = TrainConfig(loss="wgan-gp", batch_size=args.batch, n_critic=args.n_critic,
                               compile=args.compile, amp=args.amp, seed=0)
    g = torch.Generator().manual_seed(0)
    data_u8 = torch.randint(0, 256, (args.n_images, 1, args.size, args.size), dtype=torch.uint8, generator=g)
    lam = 10.0

    # (a) tutorial loop: fp32, same networks and initial weights as the project's trainer.
    torch.manual_seed(0)
    gen, critic = Generator(gen_cfg).to(device), Critic(critic_cfg).to(device)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=1e-4, betas=(0.0, 0.9))
    data_cpu = data_u8.float() / 127.5 - 1
    ref, ref_cpu = time_it(lambda: tutorial_iteration(gen, critic, opt_g, opt_c, data_cpu, args.batch,
                                             args.latent_dim, args.n_critic, lam, device),
                  device, args.warmup, args.iters)

    # (b) the project's step: data on the device, detached fakes, one critic forward per step,
    # on-device alpha and statistics; compiled + bf16 on CUDA.
    trainer = GanTrainer(gen_cfg, critic_cfg, train_cfg, data_u8.to(device), device)
    want_compile = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    if want_compile:
        # The backend settings core.gan.job.train makes on CUDA, for (b) only: tutorials
        # leave them at PyTorch's defaults.
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        trainer.use_compiled(None if args.compile_mode == "default" else args.compile_mode)
    ours, ours_cpu = time_it(trainer.step, device, args.warmup, args.iters)

    # (c) bookkeeping per step: control poll + heartbeat every step, stats read-back + SQLite
    # write every log_every steps (the loop's exact calls), amortised.
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp, create=True)
        store.set_status("running")
        store.send_control(gp_lambda=lam)
        control = gt._LiveControl(store, trainer, gt._Dist())
        n = 20 * args.log_every
        t, c = time.perf_counter(), time.process_time()
        for step in range(1, n + 1):
            control.sync(step)
            store.heartbeat(step)
            if step % args.log_every == 0:
                values = trainer.read_stats()
                values.update({"time/step_s": 0.1, "throughput/img_s": 1.0, **live.metrics(
                    {"lr_critic": 1e-4, "lr_gen": 1e-4, "gp_lambda": lam, "n_critic": 5})})
                store.log_metrics(step, values)
        overhead, overhead_cpu = (time.perf_counter() - t) / n, (time.process_time() - c) / n
        store.close()

    ref_ms, ours_ms = 1000 * statistics.median(ref), 1000 * statistics.median(ours)
    result = {
        "device": describe(device), "path": trainer.path, "compile_mode": args.compile_mode,
        "amp": str(trainer.amp_dtype),
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0],
        "size": args.size, "batch": args.batch, "n_critic": args.n_critic, "width": args.width,
        "iters": args.iters, "reference_ms": ref_ms, "project_ms": ours_ms,
        "reference_all_ms": [round(1000 * x, 1) for x in ref],
        "project_all_ms": [round(1000 * x, 1) for x in ours],
        "ratio": ref_ms / ours_ms, "overhead_ms_per_step": 1000 * overhead,
        "overhead_pct_of_step": 100 * overhead / statistics.median(ours),
        "reference_cpu_ms": 1000 * statistics.median(ref_cpu),
        "project_cpu_ms": 1000 * statistics.median(ours_cpu),
        "cpu_ratio": statistics.median(ref_cpu) / statistics.median(ours_cpu),
        "overhead_cpu_ms_per_step": 1000 * overhead_cpu,
        "overhead_cpu_pct_of_step": 100 * overhead_cpu / statistics.median(ours_cpu),
    }
    print(f"device {result['device']}, path {result['path']}, amp {result['amp']}, torch {result['torch']}, "
          f"{result['threads']} threads, load avg {result['load_avg_1min']:.1f}")
    print(f"{args.size}x{args.size}, batch {args.batch}, n_critic {args.n_critic}, width {args.width}, "
          f"median of {args.iters} iterations after {args.warmup} warm-up")
    print("                      wall ms/iter   process CPU ms/iter")
    print(f"(a) tutorial loop : {ref_ms:12.1f}   {result['reference_cpu_ms']:12.1f}   wall {result['reference_all_ms']}")
    print(f"(b) project step  : {ours_ms:12.1f}   {result['project_cpu_ms']:12.1f}   wall {result['project_all_ms']}")
    print(f"ratio (a)/(b)     : {result['ratio']:11.2f}x   {result['cpu_ratio']:11.2f}x")
    print(f"logging + control : {result['overhead_ms_per_step']:12.3f}   {result['overhead_cpu_ms_per_step']:12.3f}   "
          f"ms/step = {result['overhead_pct_of_step']:.3f}% (wall) / {result['overhead_cpu_pct_of_step']:.3f}% (CPU) "
          f"of a project step")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
