"""Playground speed: critic steps per second (2D, 3x128 MLPs, batch 256) per loss and thread
count for the compiled and the eager critic update against the autograd reference, side by
side; the matmul floor of a WGAN-GP step; redraw frames per second (the plotly figures of one
refresh); a WGAN-GP run on the 8 Gaussians that counts covered modes; and WGAN-GP's toy lambda
0.1 against the image value 10. Usage: python bench/toy_speed.py [--seconds 3]"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.gan.losses import (  # noqa: E402
    LOSSES,
    clip_weights,
    gan_critic_loss,
    gradient_penalty,
    wgan_critic_loss,
)
from core.toy.trainer import ToyConfig, ToyTrainer, modes_covered  # noqa: E402
from ui import toy_plots  # noqa: E402


def timed(fn, seconds: float) -> tuple[int, float, float]:
    """Call fn until `seconds` of wall time pass: (calls, wall s, process CPU s)."""
    n, w0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - w0 < seconds:
        fn()
        n += 1
    return n, time.perf_counter() - w0, time.process_time() - c0


def compiled(t: ToyTrainer, timeout: float = 300.0) -> float:
    """Step t eagerly until its compiled critic update is in use: seconds waited."""
    t0 = time.perf_counter()
    with t.torch_threads():  # compiled code is built per thread count: the count it runs with
        while t.step_code != "compiled":
            if t.step_code.startswith("eager (") or time.perf_counter() - t0 > timeout:
                raise SystemExit(f"the compiled critic update did not build: {t.step_code}")
            t.critic_step()
    return time.perf_counter() - t0


def autograd_critic_step(t: ToyTrainer) -> None:
    """The generic route, as a reference: autograd through the critic module and core.gan.losses,
    the penalty by gradient_penalty's double backward (what core.toy.step writes out)."""
    c, B = t.config, t.config.batch_size
    real = t._real(B)
    with torch.no_grad():
        fake = t.generator(t._noise(B))
    real_s, fake_s = t.critic(torch.cat([real, fake])).chunk(2)
    loss = gan_critic_loss(real_s, fake_s) if c.loss == "gan" else wgan_critic_loss(real_s, fake_s)
    if c.gp_lambda > 0:
        alpha = torch.rand(B, 1, generator=t._rng)
        loss = loss + c.gp_lambda * gradient_penalty(t.critic, real, fake, alpha=alpha)[0]
    t.opt_critic.zero_grad(set_to_none=True)
    loss.backward()
    t.opt_critic.step()
    if c.clip > 0:
        clip_weights(t.critic, c.clip)


CODES = ("autograd", "eager", "compiled")


def critic_speeds(loss: str, threads: int, seconds: float, rounds: int) -> dict:
    """{code: (median critic steps/s wall, median per CPU-second)} for the three codes
    ("autograd": the reference; "eager"; "compiled"), measured in interleaved slices of
    seconds / rounds each, so a drift of this VM's speed hits all three alike. Also
    "built_after": the seconds of eager steps before the compiled update was in use."""
    trainers = {code: ToyTrainer(ToyConfig(dataset="8gaussians", loss=loss, hidden=128, depth=3,
                                           batch_size=256, threads=threads,
                                           compile=code == "compiled"))
                for code in CODES}
    out = {"built_after": compiled(trainers["compiled"])}
    steps = {code: (lambda t=t: autograd_critic_step(t)) if code == "autograd" else t.critic_step
             for code, t in trainers.items()}
    rates = {code: [] for code in CODES}
    for r in range(rounds + 1):  # round 0 warms up allocator and kernels, not counted
        for code in CODES:
            with trainers[code].torch_threads():  # what run() does around its loop
                n, wall, cpu = timed(steps[code], seconds / rounds)
            if r:
                rates[code].append((n / wall, n / cpu))
    for code in CODES:
        out[code] = tuple(statistics.median(x[i] for x in rates[code]) for i in (0, 1))
    return out


def matmul_floor(seconds: float) -> float:
    """Seconds for the matmuls of one WGAN-GP critic step alone (3x128, batch 256): generator
    forward 2 at B rows; critic forward 2, input-gradient chain 2 and weight gradients 2 at
    3B / 2B rows; the penalty's weight gradients 2 and its backward chain 2 at B rows."""
    B, H = 256, 128
    w = torch.randn(H, H) * 0.1
    x1, x2, x3 = torch.randn(B, H), torch.randn(2 * B, H), torch.randn(3 * B, H)

    def matmuls():
        for x in (x1, x3, x3):  # generator forward, critic forward, input-gradient chain
            (x @ w.t()) @ w.t()
        x2.t() @ x2, x2.t() @ x2, x1.t() @ x1, x1.t() @ x1  # weight gradients
        x1 @ w, x1 @ w  # the penalty's backward chain
    n, wall, _ = timed(matmuls, seconds)
    return wall / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=6,
                        help="interleaved slices per code in the critic-speed table")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to compare")
    parser.add_argument("--coverage-seeds", type=int, default=3,
                        help="seeds of the 8-Gaussians coverage run (0 skips it)")
    parser.add_argument("--lambda-seeds", type=int, default=2,
                        help="seeds of the lambda 0.1 vs 10 comparison (0 skips it)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}")

    print(f"\ncritic steps/s (8gaussians, 3x128 MLPs, batch 256): medians of {args.rounds} "
          "interleaved slices per code")
    print(f"{'threads':>7} {'loss':>8} {'code':>9} {'wall':>6} {'per CPU-s':>10}"
          f" {'vs autograd':>12}")
    for threads in [int(x) for x in args.threads.split(",")]:
        for loss in LOSSES:
            r = critic_speeds(loss, threads, args.seconds, args.rounds)
            for code in CODES:
                built = (f"   (in use after {r['built_after']:.0f} s of eager steps)"
                         if code == "compiled" else "")
                print(f"{threads:>7} {loss:>8} {code:>9} {r[code][0]:>6.0f} {r[code][1]:>10.0f}"
                      f" {r[code][0] / r['autograd'][0]:>11.2f}x{built}", flush=True)

    torch.set_num_threads(1)
    floor = matmul_floor(args.seconds)
    flops = 2 * 128 * 128 * 256 * (2 + 2 * 3 + 2 * 3 + 2 * 2 + 2 + 2)
    print(f"\nthe matmuls of one WGAN-GP critic step alone, 1 thread: {floor * 1e3:.2f} ms "
          f"({flops / floor / 1e9:.0f} GFLOP/s): at most {1 / floor:.0f} steps/s", flush=True)

    # As the page runs them: compiled critic updates.
    trainers = [ToyTrainer(ToyConfig(loss="wgan-gp", threads=1, compile=True)),
                ToyTrainer(ToyConfig(loss="gan", threads=1, compile=True))]
    for t in trainers:
        compiled(t)
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
    # What the playground runs by default: threads=0, auto (core.toy.trainer.ToyTrainer.threads_now).
    chosen = []
    for t in trainers:
        t.update(threads=0)
        t.threads_now = (lambda f: lambda: chosen.append(f()) or chosen[-1])(t.threads_now)
    report("the same with threads=auto (/s)", refresh)
    print(f"  auto chose 2 threads for {sum(n == 2 for n in chosen) / max(len(chosen), 1):.0%} "
          "of the runs", flush=True)

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
        # Why the toy's WGAN-GP default is lambda 0.1 (core.toy.trainer.TOY_OVERRIDES), not 10.
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
