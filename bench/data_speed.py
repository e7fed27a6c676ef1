"""Data-path speed: phantom generation (target: 1,000 images at 128x128 in well under 10 s on
2 cores) and Augmentor balancing (300 -> 1,000 per class), wall and CPU time side by side.

    python bench/data_speed.py [--n 1000] [--size 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import CLASSES  # noqa: E402
from core.data.augment import AugmentConfig, balance  # noqa: E402
from core.data.dataset import ImageDataset  # noqa: E402
from core.data.phantom import generate  # noqa: E402


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="phantom images in all")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    per_class = -(-args.n // len(CLASSES))

    (images, labels, metas), wall, cpu = timed(lambda: generate(per_class, args.size, seed=0))
    print(f"phantom: {len(images)} images at {args.size}px in {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"({1000 * wall / len(images):.1f} ms/image)")

    small = ImageDataset(images[:: max(1, len(images) // 300)][:300],
                         labels[:: max(1, len(images) // 300)][:300], list(CLASSES))
    out, wall, cpu = timed(lambda: balance(small, 1000, AugmentConfig()))
    added = len(out) - len(small)
    print(f"balance: {len(small)} -> {len(out)} images ({added} augmented) in {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU ({1000 * wall / max(added, 1):.2f} ms/image)")


if __name__ == "__main__":
    main()
