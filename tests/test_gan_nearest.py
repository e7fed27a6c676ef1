"""core/gan/nearest.py: each sample's nearest training image, and the scale real images the GAN
never saw give, on a tiny run trained here (phantoms, 32 px, 2 steps)."""

import argparse
import json

import numpy as np
import pytest
import torch

from core.gan import runs as gan_runs
from core.gan import job as gt
from core.errors import UserError
from core.gan.runs import run_images
from core.gan.nearest import copy_check, nearest
from core.runs.store import RunStore


def test_nearest_finds_exact_and_shifted_copies():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8)
    queries = reference[[3, 17]].copy()
    queries[1] = np.clip(queries[1].astype(int) + 51, 0, 255)      # brighter by 0.2
    idx, rmse = nearest(queries, reference, chunk=1)
    assert idx.tolist() == [3, 17]
    assert rmse[0] == 0 and 0 < rmse[1] <= 0.2 + 1e-6
    with pytest.raises(UserError, match="differ in size"):
        nearest(queries[:, :, :4], reference)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("nearest") / "run"
    parser = argparse.ArgumentParser()
    gt.add_arguments(parser)
    torch.set_num_threads(1)
    args = parser.parse_args([
        "--data", "phantom:7", "--size", "32", "--steps", "2", "--batch-size", "4", "--n-critic", "1",
        "--gen-filters", "8", "--gen-latent-dim", "8", "--critic-filters", "4,8", "--holdout", "0.4",
        "--sample-every", "2", "--checkpoint-every", "2", "--n-samples", "4", "--run-dir", str(run)])
    assert gt.main(args) == 0
    return run


def test_copy_check_reloads_the_runs_own_split(tiny_run):
    data, gen, _, train = gan_runs.saved_configs(RunStore(tiny_run).header())
    images, held, _ = gan_runs.load_images(data, gen, train)
    # A training image is a copy (distance 0, found); a held-out one (the farthest) is not.
    far = int(np.argmax(nearest(held.numpy(), images.numpy())[1]))
    samples = np.concatenate([images[[4]].numpy(), held[[far]].numpy()])[:, 0]    # (2, 32, 32)
    check = copy_check(samples, *run_images(tiny_run))
    assert len(check.training) == len(images) == 10 and len(check.heldout_rmse) == len(held) == 11
    assert check.sample_index[0] == 4 and check.sample_rmse[0] == 0
    assert check.sample_rmse[1] > 0 and (check.heldout_rmse > 0).all()
    summary = check.summary()
    assert summary["samples_nearer_than_heldout_p5"] == 1          # the copy, not the real image
    assert summary["heldout_rmse_median"] == pytest.approx(float(np.median(check.heldout_rmse)))


def test_copy_check_of_a_run_without_held_out_images(tiny_run, tmp_path):
    # A run from before the check: every image trained, so there is no real-image scale.
    saved = json.loads((tiny_run / "config.json").read_text())
    del saved["configs"]["train"]["holdout"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps(saved))
    check = copy_check(np.zeros((3, 32, 32), np.uint8), *run_images(old))
    assert len(check.training) == 21 and len(check.heldout_rmse) == 0
    assert "heldout_rmse_median" not in check.summary()
    with pytest.raises(UserError, match="no GAN training config"):
        run_images(tmp_path)
