"""Grad-CAM (Selvaraju et al. 2017) on a classifier's last conv block, computed in the same pass
as the prediction, and a colour overlay of the heatmap on the X-ray."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# A "jet"-like colour map as control points (position, R, G, B): blue -> cyan -> yellow -> red.
_CMAP = np.array([[0.00, 0, 0, 128], [0.15, 0, 0, 255], [0.40, 0, 255, 255],
                  [0.60, 255, 255, 0], [0.85, 255, 0, 0], [1.00, 128, 0, 0]], dtype=np.float64)


def gradcam(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor | int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM heatmaps for images x (N, C, S, S) in [-1, 1].

    Returns (logits (N, K), heatmaps (N, S, S) in [0, 1], OOD features (N, D_ood), see
    core.classify.model.OODCapture), all detached, from one forward and one backward pass. `target` is the class explained (an int
    or (N,) tensor); default the predicted class. The model's `cam_layer` (its last conv block)
    is hooked; its activations A (N, C', h, w) are weighted by their spatially averaged
    gradients, summed, ReLU'd, upsampled bilinearly to (S, S) and scaled to max 1 per image
    (an all-zero map stays zero).
    """
    model.eval()
    saved: dict[str, torch.Tensor] = {}

    def keep_activation(_module, _inputs, output):
        output.retain_grad()
        saved["act"] = output

    from core.classify.model import OODCapture

    hooks = [model.cam_layer.register_forward_hook(keep_activation)]
    capture = OODCapture(model) if hasattr(model, "ood_layers") else None
    try:
        if capture is not None:
            capture.__enter__()
        with torch.enable_grad():
            # Grad w.r.t. the input as well: activations then carry a graph even when the
            # caller froze the weights (requires_grad False) or is inside no_grad.
            xi = x.detach().float().requires_grad_(True)
            logits = model(xi)                                    # (N, K)
            if target is None:
                target = logits.argmax(1)
            target = torch.as_tensor(target, device=logits.device).reshape(-1).expand(len(x))
            score = logits.gather(1, target[:, None]).sum()
            score.backward()
    finally:
        for h in hooks:
            h.remove()
        if capture is not None:
            capture.__exit__(None, None, None)
    act, grad = saved["act"].detach(), saved["act"].grad.detach()   # (N, C', h, w) each
    weights = grad.mean(dim=(2, 3), keepdim=True)                    # (N, C', 1, 1)
    cam = F.relu((weights * act).sum(1, keepdim=True))               # (N, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    cam = (cam / peak).clamp_(0, 1)                                  # (N, S, S) in [0, 1]
    model.zero_grad(set_to_none=True)
    feats = capture.features() if capture is not None else torch.zeros(len(x), 0)
    return logits.detach(), cam, feats


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 through a jet-like colour map."""
    # A 256-entry lookup table: one indexing pass instead of three interpolations per pixel.
    lut = np.stack([np.interp(np.linspace(0, 1, 256), _CMAP[:, 0], _CMAP[:, c]) for c in (1, 2, 3)],
                   axis=-1).round().astype(np.uint8)                  # (256, 3)
    idx = (np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.intp)
    return lut[idx]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a heatmap over a grayscale image: image (H, W) uint8 or float in [0, 1], heatmap
    (h, w) in [0, 1] (resized to (H, W)) -> RGB uint8 (H, W, 3). Weight of the colour is
    alpha * heat, so cold regions show the X-ray unchanged."""
    img = np.asarray(image)
    gray = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if gray.ndim == 3:
        gray = gray.mean(-1)
    H, W = gray.shape
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != (H, W):
        heat = np.asarray(Image.fromarray(heat).resize((W, H), Image.BILINEAR))
    heat = np.clip(heat, 0, 1)
    color = colorize(heat).astype(np.float32) / 255.0                # (H, W, 3)
    a = alpha * heat[..., None]
    out = (1 - a) * gray[..., None] + a * color
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
