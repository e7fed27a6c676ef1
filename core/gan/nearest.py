"""Does a generator copy its training images? Each sample's nearest training image by pixel
distance, set against how near real images the GAN never saw (its run's held-out patients)
come to the same training set: samples much nearer to a training image than unseen real
images are near-copies. The held-out check of core.gan.job asks the same of the critic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.errors import UserError


def nearest(queries: np.ndarray, reference: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each uint8 query image (N, [C,] S, S): the index of its nearest reference image
    (M, [C,] S, S) and their root-mean-square pixel difference on a 0-1 scale."""
    q = torch.from_numpy(np.ascontiguousarray(queries)).reshape(len(queries), -1).float() / 255.0
    r = torch.from_numpy(np.ascontiguousarray(reference)).reshape(len(reference), -1).float() / 255.0
    if q.shape[1] != r.shape[1]:
        raise UserError(f"the images differ in size: {tuple(queries.shape[1:])} against "
                        f"{tuple(reference.shape[1:])}")
    idx, dist = [], []
    for part in q.split(chunk):                       # (chunk, D) against (M, D)
        d = torch.cdist(part, r)                      # Euclidean, (chunk, M)
        best = d.min(dim=1)
        idx.append(best.indices)
        dist.append(best.values)
    rmse = torch.cat(dist) / np.sqrt(q.shape[1])
    return torch.cat(idx).numpy(), rmse.numpy()


@dataclass
class CopyCheck:
    """Nearest training image of each sample, and of each held-out real image for scale."""
    training: np.ndarray         # uint8 (M, C, S, S): the images the GAN trained on
    sample_index: np.ndarray     # (N,) index into `training` of each sample's nearest image
    sample_rmse: np.ndarray      # (N,)
    heldout_rmse: np.ndarray     # (H,) each held-out image's distance to its nearest training
                                 # image; empty when the run held none out

    def summary(self) -> dict:
        out = {"samples": len(self.sample_rmse), "training_images": len(self.training),
               "sample_rmse_median": float(np.median(self.sample_rmse)),
               "sample_rmse_min": float(self.sample_rmse.min()),
               "heldout_images": len(self.heldout_rmse)}
        if len(self.heldout_rmse):
            floor = float(np.percentile(self.heldout_rmse, 5))
            out.update(heldout_rmse_median=float(np.median(self.heldout_rmse)),
                       heldout_rmse_p5=floor,
                       # Nearer to a training image than 95% of unseen real images are.
                       samples_nearer_than_heldout_p5=int((self.sample_rmse < floor).sum()))
        return out


def copy_check(samples: np.ndarray, training: np.ndarray, held: np.ndarray) -> CopyCheck:
    """`samples` (uint8 (N, [C,] S, S), e.g. from the run's generator) against the images the run
    trained on, and its held-out images against the same for scale (see run_images)."""
    samples = samples.reshape(len(samples), *training.shape[1:])
    sample_index, sample_rmse = nearest(samples, training)
    heldout_rmse = nearest(held, training)[1] if len(held) else np.array([], np.float32)
    return CopyCheck(training, sample_index, sample_rmse, heldout_rmse)
