"""Does a GAN run's generator copy its training images? The Samples page's copy check from the
command line: N samples (fixed seed) against the run's training images, with the run's own
held-out real images for scale (core.gan.nearest). Prints one JSON object.

    python bench/copy_check.py --run-dir /tmp/ship/gan-cxr-covid --n 64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.gan.runs import run_images, sample_run  # noqa: E402
from core.gan.nearest import copy_check  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a GAN run directory")
    parser.add_argument("--generator", help="a generator file to sample instead of the run's own")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    training, held = run_images(args.run_dir)
    fake, _, _ = sample_run(args.generator or args.run_dir, args.n, seed=args.seed)
    samples = np.asarray(fake)[:, :training.shape[1]]
    print(json.dumps(copy_check(samples, training, held).summary(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
