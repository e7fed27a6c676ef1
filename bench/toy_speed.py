"""Playground speed: critic steps per second (2D, 3x128 MLPs, batch 256) per loss and thread
count, redraw frames per second (the plotly figures of one refresh), a WGAN-GP run on the
8 Gaussians that counts covered modes, and WGAN-GP's toy lambda 0.1 against the image value
10. Usage: python bench/toy_speed.py [--seconds 3]"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.losses import LOSSES  # noqa: E402
from core import toy  # noqa: E402
from core.toy import ToyConfig, ToyTrainer, modes_covered  # noqa: E402
from ui import toy_plots  # noqa: E402


def timed(fn, seconds: float) -> tuple[int, float, float]:
    """Call fn until `seconds` of wall time pass: (calls, wall s, process CPU s)."""
    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        fn()
        n += 1
    return n, time.perf_counter() - w0, time.process_time() - c0


def critic_speed(loss: str, threads: int, seconds: float) -> tuple[float, float, float]:
    """(critic steps/s wall, per CPU-second, full-loop critic steps/s incl. generator steps)."""
    t = ToyTrainer(ToyConfig(dataset="8gaussians", loss=loss, hidden=128, depth=3,
                             batch_size=256, threads=threads))
    with t.torch_threads():  # what run() does around its loop
        for _ in range(20):  # warm up allocator and kernels
            t.critic_step()
        n, wall, cpu = timed(t.critic_step, seconds)
        m, wall2, _ = timed(t.iteration, seconds)
    return n / wall, n / cpu, m * t.config.n_critic / wall2


def autograd_input_gradient(net, x):
    """The generic route (core.losses.gradient_penalty's): autograd's input gradient with
    create_graph, the reference that core.toy.mlp_input_gradient replaces."""
    x = x.requires_grad_(True)
    (grads,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
    return grads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    parser.add_argument("--coverage-seeds", type=int, default=3,
                        help="seeds of the 8-Gaussians coverage run (0 skips it)")
    parser.add_argument("--lambda-seeds", type=int, default=2,
                        help="seeds of the lambda 0.1 vs 10 comparison (0 skips it)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}")

    print("\ncritic steps/s (8gaussians, 3x128 MLPs, batch 256)")
    print(f"{'threads':>7} {'loss':>8} {'wall':>8} {'per CPU-s':>10} {'in loop':>8}")
    for threads in [int(x) for x in args.threads.split(",")]:
        rates = {}
        for loss in LOSSES:
            wall, cpu, loop = critic_speed(loss, threads, args.seconds)
            rates[loss] = wall
            print(f"{threads:>7} {loss:>8} {wall:>8.0f} {cpu:>10.0f} {loop:>8.0f}", flush=True)
        # Side by side, same run: the penalty through autograd's generic double backward.
        written_out = toy.mlp_input_gradient
        toy.mlp_input_gradient = autograd_input_gradient
        try:
            ref, ref_cpu, ref_loop = critic_speed("wgan-gp", threads, args.seconds)
        finally:
            toy.mlp_input_gradient = written_out
        print(f"{threads:>7} {'wgan-gp':>8} {ref:>8.0f} {ref_cpu:>10.0f} {ref_loop:>8.0f}"
              f"   <- autograd penalty; written-out gradient {rates['wgan-gp'] / ref:.2f}x",
              flush=True)

    torch.set_num_threads(1)
    trainers = [ToyTrainer(ToyConfig(loss="wgan-gp", threads=1)),
                ToyTrainer(ToyConfig(loss="gan", threads=1))]
    for t in trainers:
        t.run(20)  # some history for the curves
    print(f"\nredraw, two trainers side by side (4 figures: heatmap+contours, 512+512 points, "
          f"{toy_plots.N_ARROWS} arrows, curves), 1 thread:   per wall-s  per CPU-s")

    def report(label, fn):
        n, wall, cpu = timed(fn, args.seconds)
        print(f"  {label:<52} {n / wall:8.1f} {n / cpu:10.1f}", flush=True)

    report("build figures (frames/s)", lambda: toy_plots.refresh_figures(trainers))
    report("build + JSON, as st.plotly_chart sends (frames/s)",
           lambda: [f.to_json() for f in toy_plots.refresh_figures(trainers)])

    def refresh():  # what one live refresh does: 10 iterations each, then redraw
        for t in trainers:
            t.run(10)
        [f.to_json() for f in toy_plots.refresh_figures(trainers)]
    report("live refresh: 10 iterations x 2 + redraw (/s)", refresh)
    # What the playground runs by default: threads=0, auto (core.toy.ToyTrainer.threads_now).
    chosen = []
    for t in trainers:
        t.update(threads=0)
        t.critic.register_forward_pre_hook(lambda m, i: chosen.append(torch.get_num_threads()))
    report("the same with threads=auto (/s)", refresh)
    print(f"  auto used 2 threads in {sum(n == 2 for n in chosen) / max(len(chosen), 1):.0%} of "
          "critic calls", flush=True)

    if args.coverage_seeds:
        print("\nWGAN-GP on 8 Gaussians (3x128, batch 64, lambda 0.1; 300 iterations at lr 1e-3, "
              "then 100 at 1e-4), 1 thread:")
        for seed in range(args.coverage_seeds):
            t = ToyTrainer(ToyConfig(dataset="8gaussians", loss="wgan-gp", lr_critic=1e-3,
                                     lr_gen=1e-3, gp_lambda=0.1, batch_size=64, seed=seed,
                                     threads=1))
            w0, c0 = time.perf_counter(), time.process_time()
            t.run(300)
            before = modes_covered(t.sample(2000, fixed=False))
            t.update(lr_critic=1e-4, lr_gen=1e-4)
            t.run(100)
            after = modes_covered(t.sample(2000, fixed=False))
            print(f"  seed {seed}: {before}/8 modes after 300, {after}/8 after 400 iterations; "
                  f"{time.perf_counter() - w0:.1f} s wall, {time.process_time() - c0:.1f} s CPU",
                  flush=True)
    if args.lambda_seeds:
        # Why the toy's WGAN-GP default is lambda 0.1 (core.toy.TOY_OVERRIDES), not 10.
        print("\nWGAN-GP lambda 0.1 (toy default) vs 10 (image default): 3x128, batch 256, "
              "lr 1e-3, 1 thread")
        for lam in (0.1, 10.0):
            for seed in range(args.lambda_seeds):
                one = ToyTrainer(ToyConfig(dataset="gaussian-1d", loss="wgan-gp", lr_critic=1e-3,
                                           lr_gen=1e-3, gp_lambda=lam, seed=seed, threads=1))
                one.run(600)
                x = one.sample(4000, fixed=False)[:, 0]
                two = ToyTrainer(ToyConfig(dataset="8gaussians", loss="wgan-gp", lr_critic=1e-3,
                                           lr_gen=1e-3, gp_lambda=lam, seed=seed, threads=1))
                two.run(400)
                modes = modes_covered(two.sample(2000, fixed=False))
                print(f"  lambda {lam:>4g} seed {seed}: 1D N(2, 1) after 600 iterations: mean "
                      f"{x.mean():.2f}, std {x.std():.2f}; 8 Gaussians after 400: {modes}/8 "
                      "modes", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
