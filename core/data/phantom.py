"""Procedural phantom chest radiographs (frontal PA view) of three classes, the embedded default
data: anatomy from a few analytic shapes on a coordinate grid, per-patient variation, and
COVID-19 (bilateral peripheral ground glass) or PNEUMONIA (lobar consolidation, effusion)."""

from __future__ import annotations

import argparse
import csv
import ctypes
import functools
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import CLASSES
from core.config import add_arguments as add_config_arguments
from core.config import override
from core.errors import UserError

MIN_SIZE, MAX_SIZE = 32, 512


@dataclass
class PhantomConfig:
    size: int = 128
    seed: int = 0
    severity_min: float = 0.15   # include mild cases so the task is not trivial
    severity_max: float = 1.0
    rotation_deg: float = 4.0    # patient rotation, uniform in +-rotation_deg
    shift: float = 0.05          # patient position, +-shift of the half-width
    size_jitter: float = 0.07    # body and lung size, +-fraction
    exposure_jitter: float = 0.25  # +-fraction of the exposure (overall brightness) gain
    contrast_jitter: float = 0.2   # +-fraction of the display gamma
    noise_max: float = 0.012     # per-pixel noise std, uniform in [noise_max/4, noise_max]
    blur_max: float = 1.0        # Gaussian blur sigma in pixels at 128 px, uniform in [0.3, blur_max]
    effusion_prob: float = 0.35  # PNEUMONIA: chance of a small effusion blunting one angle
    bilateral_prob: float = 0.15  # PNEUMONIA: chance of a smaller second focus on the other side


def _check(label: str, size: int) -> None:
    if label not in CLASSES:
        raise UserError(f"unknown phantom class {label!r}; choose one of {', '.join(CLASSES)}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise UserError(f"phantom size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")


@functools.lru_cache(maxsize=1)
def _keep_freed_memory() -> None:
    """A render makes ~150 short-lived (S, S) float arrays. With glibc's defaults the heap is
    trimmed after each image (and arrays of 128 KiB or more are mmapped), so the next image
    page-faults the same memory back: about a third of the CPU time at 128 px. Keep up to
    64 MiB of freed heap for reuse instead; a no-op where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 64 << 20)   # M_TRIM_THRESHOLD
        libc.mallopt(-3, 4 << 20)    # M_MMAP_THRESHOLD: 512 x 512 float32 arrays stay on the heap
    except (OSError, AttributeError):
        pass


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], float32 (S, S): u across the image (patient's right
    to left, as a PA film is viewed), v downwards."""
    t = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    u, v = np.meshgrid(t, t)
    return u, v


@functools.lru_cache(maxsize=32)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """(S, cells) Gaussian interpolation weights from a coarse grid to pixels, scaled so that
    `up @ g @ up.T` has about unit variance for white unit-variance g (cells, cells)."""
    centres = (np.arange(cells) + 0.5) / cells
    t = (np.arange(size) + 0.5) / size
    w = np.exp(-0.5 * ((t[:, None] - centres[None]) * cells / 0.7) ** 2)
    w /= w.sum(1, keepdims=True)
    return (w / np.sqrt(np.mean((w * w).sum(1)))).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field (S, S) of about unit variance with about `cells` blobs across. The
    draws do not depend on `size`, so a patient keeps its texture at every resolution."""
    up = _upsampler(size, cells)
    return up @ rng.standard_normal((cells, cells), dtype=np.float32) @ up.T


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur by shifted slices (edges replicated); for the small kernels used
    here it is several times faster than scipy.ndimage.gaussian_filter; img (S, S)."""
    r = max(1, int(2.5 * sigma + 0.5))
    w = np.exp(-0.5 * (np.arange(r + 1) / sigma) ** 2)
    w = (w / (2 * w.sum() - w[0])).astype(np.float32)       # taps 0..r of a symmetric kernel
    n = img.shape[0]
    pad = np.pad(img, r, mode="edge")
    rows = w[0] * pad[:, r:r + n]
    for i in range(1, r + 1):
        rows += w[i] * (pad[:, r - i:r - i + n] + pad[:, r + i:r + i + n])
    out = w[0] * rows[r:r + n]
    for i in range(1, r + 1):
        out += w[i] * (rows[r - i:r - i + n] + rows[r + i:r + i + n])
    return out


def _soft(margin: np.ndarray, width: float) -> np.ndarray:
    """A soft inside-mask from a signed margin (positive inside): a linear ramp about 4*width
    wide in grid units (a clipped ramp is several times cheaper than tanh)."""
    return np.clip(0.5 + margin * (0.25 / width), 0.0, 1.0)


def _atan2(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """np.arctan2 to about 1e-5 rad, several times faster on float32 (a minimax polynomial)."""
    adx, ady = np.abs(dx), np.abs(dy)
    a = np.minimum(adx, ady) / (np.maximum(adx, ady) + 1e-12)
    s = a * a
    r = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * a + a
    # Unfold the octants with arithmetic on 0/1 masks (np.where is slower here).
    big = (ady > adx).astype(np.float32)
    r += big * (np.float32(np.pi / 2) - 2 * r)
    neg = (dx < 0).astype(np.float32)
    r += neg * (np.float32(np.pi) - 2 * r)
    return np.copysign(r, dy)


def _seed_for(seed: int, label: str, index: int, stream: int) -> list[int]:
    # Separate streams for anatomy, pathology and pixel noise keep a patient's anatomy the same
    # across sizes and severities.
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(label.encode()), int(index) & 0xFFFFFFFF, stream]


def _anatomy(rng: np.random.Generator, cfg: PhantomConfig) -> dict:
    """Per-patient anatomy and acquisition parameters (plain floats)."""
    j = cfg.size_jitter

    def u(a: float, b: float) -> float:
        return float(rng.uniform(a, b))

    return {
        "rot": float(np.deg2rad(u(-cfg.rotation_deg, cfg.rotation_deg))),
        "dx": u(-cfg.shift, cfg.shift), "dy": u(-cfg.shift, cfg.shift), "scale": u(1 - j, 1 + j),
        "body_w": u(0.92, 1.06), "neck": u(0.22, 0.3), "shoulder_y": u(-0.8, -0.7),
        "lung_w": u(0.76, 0.85) * u(1 - j, 1 + j), "apex": u(-0.86, -0.76), "dia": u(0.52, 0.64),
        "dome": u(0.1, 0.17), "right_up": u(0.02, 0.07),
        "heart_x": u(0.1, 0.16), "heart_up": u(0.2, 0.28), "heart_rx": u(0.34, 0.42),
        "heart_ry": u(0.27, 0.33), "rib_bend": u(0.85, 1.15), "rib_phase": u(-0.2, 0.2),
        "ph_right": u(0, 6.3), "ph_left": u(0, 6.3), "bubble": u(0, 1) < 0.6,
        "gain": 1.8 * u(1 - cfg.exposure_jitter, 1 + cfg.exposure_jitter),
        "gamma": u(1 - cfg.contrast_jitter, 1 + cfg.contrast_jitter),
        "floor": u(0.0, 0.05), "heel": u(-0.06, 0.06),
        "noise": u(cfg.noise_max / 4, cfg.noise_max), "blur": u(0.3, max(0.3, cfg.blur_max)),
    }


def _lungs(ax, y, leftf, p):
    """Both lungs at once in mirrored coordinates (ax = |x|, lateral is larger). Returns the soft
    mask, the air depth, the diaphragm height yd and the ellipse value e (0 centre, 1 edge),
    each (S, S); the right dome (patient's right, over the liver) sits higher."""
    medial0, lat = 0.06, p["lung_w"]
    dia = p["dia"] - p["right_up"] * (1 - leftf)
    cx, rx = (lat + medial0) / 2, (lat - medial0) / 2
    cy = dia + 0.1
    ry = cy - p["apex"]
    e = ((ax - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    # The dome peaks near the lung's middle and falls to a sharp costophrenic angle laterally.
    yd = dia - p["dome"] * np.clip(1 - ((ax - cx + 0.05) / (rx * 1.05)) ** 2, 0, 1)
    medial = 0.085 + 0.12 * np.clip((y - 0.2) / 0.3, 0, 1)   # widens under the heart
    mask = _soft((1 - e) * 0.25, 0.006) * _soft(yd - y, 0.006) * _soft(ax - medial, 0.008)
    # Air is thickest low and central; the apex overlaps shoulder muscles and is lighter.
    depth = mask * (0.72 + 0.28 * np.sqrt(np.clip(1 - e, 0, 1))) \
        * (0.7 + 0.3 * np.clip((y - p["apex"]) / 0.4, 0, 1))
    return mask, depth, yd, e


def _ribs(ax, y, p):
    """Posterior ribs (bright arcs from the spine, rising a little, then curving down along the
    chest wall) and fainter anterior ribs sloping down towards the middle; (S, S)."""
    s = np.clip((ax - 0.04) / (p["lung_w"] + 0.04), 0, 1.5)
    s2 = s * s
    bend = p["rib_bend"] * (-0.12 * s + 0.3 * s2 + 0.2 * s2 * s2)
    y0, y1, n = p["apex"] - 0.12, p["dia"] + 0.08, 10.5
    r = n * np.clip((y - bend - y0) / (y1 - y0), 0, 1.3) + p["rib_phase"]
    d = np.abs(r - np.round(r))                          # 0 at a rib's centre, 0.5 between ribs
    post = _soft(0.19 - d, 0.02) * (0.7 + 0.3 * _soft(d - 0.14, 0.015))  # brighter cortex
    # Ribs start at the spine but are faint where they cross the dense mediastinum.
    post *= _soft(r - 0.4, 0.08) * _soft(1.35 - s, 0.04) * (0.3 + 0.7 * _soft(s - 0.12, 0.03))
    q = np.clip(1 - s, 0, 1)
    ya = y - 0.35 * q * np.sqrt(q)
    ra = n * np.clip((ya - y0 + 0.06) / (y1 - y0), 0, 1.3) + p["rib_phase"]
    da = np.abs(ra - np.round(ra))
    ant = _soft(0.14 - da, 0.03) * _soft(s - 0.3, 0.05) * _soft(6.5 - ra, 0.2)
    return post + 0.35 * ant


def _vessels(ax, y, leftf, p, wobble, breaks):
    """Lung markings: wavy branching lines radiating from each hilum, thinning and fading towards
    the periphery (invisible in the outer third, as on a film); (S, S). `wobble` is a smooth
    random field (S, S) that bends the lines, `breaks` another that cuts them into segments."""
    dx, dy = ax - 0.12, y + 0.04
    rho = np.sqrt(dx * dx + dy * dy) + 1e-3
    th = _atan2(dy, dx) + (p["ph_right"] + (p["ph_left"] - p["ph_right"]) * leftf)
    a = 0.5 - 0.5 * np.cos(11 * th + 1.2 * wobble)          # 0 on a vessel's axis
    b = 0.5 - 0.5 * np.cos(23 * th - 2 * wobble)
    rho2 = rho * rho
    # Sharpen each line with distance so that it tapers in the image instead of widening with
    # its angle; the finer branches start away from the hilum and come and go along their length.
    sharp = 1 + 50 * rho2 + 150 * rho2 * rho2
    lines = np.clip(1 - a * sharp, 0, 1) * _soft(breaks + 0.8, 0.2) \
        + 0.7 * np.clip(1 - b * (3 * sharp), 0, 1) * _soft(rho - 0.15, 0.03) * _soft(breaks - 0.2, 0.2)
    hilum = np.exp(-((dx / 0.08) ** 2 + (dy / 0.14) ** 2))
    return lines * np.exp(-rho / 0.3) + hilum


def _covid(rng, ax, y, left, e, p, sev, size):
    """Bilateral, peripheral, lower-zone, patchy ground glass: the fraction of air to replace,
    hazy, so vessels stay visible (S, S)."""
    field = np.zeros_like(y)
    for side in (left, ~left):
        for _ in range(2 + round(float(rng.uniform(0.5, 2)) * (0.5 + sev))):
            # Centres sit in the outer half of the lung, mostly in its lower two thirds.
            cx = rng.uniform(0.45, 0.72)
            cy = p["dia"] - (rng.uniform(0.15, 0.7) if rng.uniform() < 0.8 else rng.uniform(0.7, 1.0))
            r = rng.uniform(0.13, 0.22) * (0.7 + 0.6 * sev)
            field += side * np.exp(-(((ax - cx) / (r * 0.8)) ** 2 + ((y - cy) / r) ** 2))
    field *= 0.4 + 0.6 * np.clip(e, 0, 1)                 # favour the outer rim of the lung
    patch = _soft(_smooth_noise(rng, size, 14) + 0.4, 0.35)   # patchy, not uniform
    return np.clip(field, 0, 1) * patch


def _pneumonia(rng, ax, y, left, yd, p, sev, cfg, size, meta):
    """Mostly unilateral lobar or segmental consolidation, dense with a sharp fissure edge, and
    sometimes an effusion blunting a costophrenic angle. Returns (consolidation, effusion)."""
    cons = np.zeros_like(y)
    main = int(rng.uniform() < 0.45)                     # 0: patient's right, 1: patient's left
    sides = [main] + ([1 - main] if rng.uniform() < cfg.bilateral_prob else [])
    lobes = []
    for k, si in enumerate(sides):
        side = left if si else ~left
        scale = 1.0 if k == 0 else 0.55
        names, probs = (["lower", "upper"], [0.65, 0.35]) if si else (["lower", "upper", "middle"],
                                                                        [0.5, 0.25, 0.25])
        lobe = str(rng.choice(names, p=probs))
        fiss = rng.uniform(-0.15, -0.02)
        if lobe == "upper":                                # sharp at the right's minor fissure
            region = _soft(fiss - y, 0.03 if si else 0.005)
            cy = rng.uniform(-0.5, fiss - 0.12)
        elif lobe == "middle":                             # hugs the right heart border
            region = _soft(y - fiss, 0.005) * _soft(0.45 - ax, 0.08)
            cy = rng.uniform(fiss + 0.15, p["dia"] - 0.2)
        else:                                              # oblique fissure: softer on a PA film
            region = _soft(y - (fiss + 0.1 + 0.25 * (ax - 0.2)), 0.015)
            cy = p["dia"] - rng.uniform(0.1, 0.4)
        cx = rng.uniform(0.35, 0.6)
        r = rng.uniform(0.2, 0.32) * (0.5 + 0.9 * sev) * scale
        # An irregular outline: the radius wobbles with a smooth random field.
        dist = np.sqrt(((ax - cx) / (r * 1.3)) ** 2 + ((y - cy) / r) ** 2)
        blob = _soft(1 - dist + 0.25 * _smooth_noise(rng, size, 8), 0.04)
        cons = np.maximum(cons, side * region * blob * scale)
        lobes.append(f"{'left' if si else 'right'} {lobe}")
    cons = np.clip(cons * (0.85 + 0.15 * _smooth_noise(rng, size, 16)), 0, 1)
    eff = None
    if rng.uniform() < cfg.effusion_prob:
        si = sides[0] if rng.uniform() < 0.8 else 1 - sides[0]
        # Meniscus: fluid fills the lateral base and climbs the chest wall.
        h = rng.uniform(0.06, 0.12) * (0.6 + 0.6 * sev)
        surf = yd - h * np.clip((ax - 0.25) / (p["lung_w"] - 0.25), 0, 1.2) ** 2
        eff = (left if si else ~left) * _soft(y - surf, 0.008) * _soft(ax - 0.2, 0.04)
        meta["effusion"] = "left" if si else "right"
    meta["laterality"] = "bilateral" if len(sides) > 1 else ("left" if main else "right")
    meta["findings"] = f"consolidation ({', '.join(lobes)})" + (" + effusion" if eff is not None else "")
    return cons, eff


def _make(label: str, index: int, size: int, seed: int, severity: float | None,
          cfg: PhantomConfig) -> tuple[np.ndarray, dict, dict]:
    p = _anatomy(np.random.default_rng(_seed_for(seed, label, index, 0)), cfg)
    p["heart_y"] = p["dia"] - p["heart_up"]
    path_rng = np.random.default_rng(_seed_for(seed, label, index, 1))
    if label == "NORMAL":
        sev = 0.0
    elif severity is None:
        sev = float(path_rng.uniform(cfg.severity_min, cfg.severity_max))
    else:
        sev = float(np.clip(severity, 0.0, 1.0))

    # Patient coordinates (S, S): the image grid rotated, shifted and scaled per patient.
    u, v = _grid(size)
    c, s_ = np.float32(np.cos(p["rot"])), np.float32(np.sin(p["rot"]))
    uu, vv = u - np.float32(p["dx"]), v - np.float32(p["dy"])
    k = np.float32(1 / p["scale"])
    x = (c * uu + s_ * vv) * k
    y = (c * vv - s_ * uu) * k
    ax, left = np.abs(x), x > 0                          # left: the patient's left (image right)
    leftf = left.astype(np.float32)

    # Body: shoulders round into the neck above shoulder_y; thicker (brighter) in the middle.
    sh, bw = p["shoulder_y"], p["body_w"]
    wb = np.where(y < sh, p["neck"] + (bw - p["neck"]) * np.sqrt(np.clip(1 - (sh - y) / 0.4, 0, 1)),
                  bw * (0.93 + 0.07 * np.clip(1 - ((y - 0.3) / 0.9) ** 2, 0, 1)))
    body = _soft(wb - ax, 0.01)
    tissue = body * 0.5 * np.sqrt(np.sqrt(np.clip(1 - (x / (wb + 0.03)) ** 2, 0, 1)))
    mu = tissue.copy()
    # Arms beside the chest (seen when the body is narrow), each with a humerus.
    arm_x = ax - bw - 0.05
    arm = 0.0
    if arm_x.max() > -0.1:                                  # skipped when out of the picture
        arm = _soft(arm_x, 0.008) * _soft(0.3 - arm_x, 0.02) * _soft(y - sh - 0.05, 0.04)
        humerus = _soft(0.055 - np.abs(arm_x - 0.12), 0.01) * _soft(y - sh, 0.02) * arm
        head = _soft(0.12 - np.sqrt((arm_x - 0.05) ** 2 + (y - sh - 0.1) ** 2), 0.01)
        mu += arm * 0.36 + 0.12 * np.maximum(humerus, head * body)

    # Mediastinum, aortic knob and heart (bulging to the patient's left).
    medw = 0.12 + 0.05 * np.clip((y + 0.3) / 0.45, 0, 1)
    medi = _soft(medw - np.abs(x - 0.01), 0.01) * _soft(p["heart_y"] - y, 0.04) \
        * _soft(y - p["apex"] + 0.05, 0.06)
    knob = _soft(0.07 - np.sqrt((x - 0.13) ** 2 + (y + 0.24) ** 2), 0.008)
    hx, hy = x - p["heart_x"], y - p["heart_y"]           # the heart sits on the diaphragm
    hx, hy = 0.93 * hx + 0.37 * hy, 0.93 * hy - 0.37 * hx      # long axis tilted down to the left
    heart = _soft((1 - (hx / p["heart_rx"]) ** 2 - (hy / p["heart_ry"]) ** 2) * 0.12, 0.01)
    central = np.maximum(np.maximum(medi, knob), heart)

    mask, depth, yd, e = _lungs(ax, y, leftf, p)
    mask = mask * (1 - central)
    air = depth * (1 - central)
    vessel_rng = np.random.default_rng(_seed_for(seed, label, index, 3))
    wobble, breaks = _smooth_noise(vessel_rng, size, 6), _smooth_noise(vessel_rng, size, 14)
    vessels = _vessels(ax, y, leftf, p, wobble, breaks) * mask

    meta: dict = {"laterality": "none", "findings": "none"}
    fill = None                                             # fraction of lung air replaced
    if label == "COVID-19":
        fill = (0.35 + 0.45 * sev) * _covid(path_rng, ax, y, left, e, p, sev, size)
        meta.update(laterality="bilateral", findings="ground-glass opacities (peripheral, lower zones)")
    elif label == "PNEUMONIA":
        cons, eff = _pneumonia(path_rng, ax, y, left, yd, p, sev, cfg, size, meta)
        # Air bronchograms: dark branching lines survive inside dense consolidation.
        fill = (0.7 + 0.25 * sev) * cons * (1 - 0.4 * np.clip(vessels, 0, 1) * (sev > 0.4))
        if eff is not None:                                 # fluid only where lung was
            fill = np.maximum(fill, eff * _soft(mask - 0.2, 0.1))

    # Heart, mediastinum and the abdomen below the domes are all dense soft tissue; they share
    # one density so that the heart's lower border melts into the diaphragm as on a film.
    below = _soft(y - yd - 0.01, 0.015) * _soft(p["lung_w"] + 0.08 - ax, 0.05)
    mu += 0.09 * np.maximum(central, below) * body
    # Uneven soft tissue (muscle, fat, bowel) so that no region is perfectly flat.
    lumps = _smooth_noise(np.random.default_rng(_seed_for(seed, label, index, 4)), size, 5)
    mu += 0.035 * lumps * body
    mu -= 0.74 * tissue * air * (1 if fill is None else 1 - fill)
    mu += 0.15 * vessels * (1 if fill is None else 1 - 0.5 * fill)  # still seen through haze
    # Spine: vertebral bodies with darker disc spaces; trachea as a dark air column.
    mu += 0.07 * _soft(0.07 - ax, 0.008) * (0.6 + 0.4 * np.cos((y + 0.04) * (np.pi / 0.09)) ** 2)
    mu -= 0.08 * _soft(0.03 - np.abs(x + 0.005), 0.008) * _soft(-0.2 - y, 0.03)
    if p["bubble"]:                                         # gastric air under the left dome
        bubble = np.sqrt(((x - 0.4) / 1.5) ** 2 + (y - yd - 0.12) ** 2)
        mu -= 0.1 * left * _soft(0.07 - bubble, 0.012)
    # Bones over the thorax: ribs and clavicles (both sides at once through ax).
    # Ribs show best against lung air and fade below the domes.
    mu += 0.11 * _ribs(ax, y, p) * body * (0.6 + 0.4 * mask) * _soft(yd + 0.1 - y, 0.04)
    t = (ax - 0.06) / 0.58
    yc = p["apex"] + 0.12 - 0.18 * t + 0.04 * np.sin(2 * np.pi * t)
    mu += 0.15 * _soft(0.032 - np.abs(y - yc), 0.008) * _soft(t, 0.02) * _soft(1 - t, 0.02)
    mu = np.maximum(mu * body + 0.36 * arm * (1 - body), 0)

    # Exposure: Beer-Lambert with a per-patient gain, then a display gamma and the heel effect.
    g = p["gain"]
    img = (1 - np.exp(-g * mu)) * np.float32(1 / (1 - np.exp(-g)))
    img = np.clip(img * (1 + p["heel"] * v), 1e-6, 1)
    img = np.exp(np.log(img) * np.float32(p["gamma"]))     # gamma; float powers are slow
    img = _blur(img, p["blur"] * size / 128)
    # Uniform noise of the drawn standard deviation: looks the same as Gaussian here, 4x cheaper.
    noise = np.random.default_rng(_seed_for(seed, label, index, 2)).random(img.shape, np.float32)
    img = p["floor"] + (1 - p["floor"]) * img + (noise - 0.5) * np.float32(p["noise"] * 12 ** 0.5)
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    meta = {"patient": f"phantom-{seed}-{label}-{index}", "class": label, "severity": round(sev, 4),
            **meta, "source": "phantom"}
    # Ground-truth masks in image space (S, S) bool, for tests and heatmap checks.
    lesion = np.zeros_like(left) if fill is None else (fill > 0.15) & (mask > 0.25)
    return out, meta, {"lungs": mask > 0.5, "lesion": lesion}


def render(label: str, index: int, size: int = 128, seed: int = 0, severity: float | None = None,
           config: PhantomConfig | None = None) -> tuple[np.ndarray, dict]:
    """One phantom radiograph: uint8 (size, size) and metadata {"patient", "class", "severity",
    "laterality", "findings", "source": "phantom"}. Deterministic for (label, index, size, seed);
    the same patient at another size has the same anatomy. `severity` in [0, 1] overrides the
    drawn one (NORMAL is always 0). `config` gives the variation ranges; `size` and `seed` here
    win over its fields."""
    image, meta, _ = render_with_masks(label, index, size, seed, severity, config)
    return image, meta


def render_with_masks(label: str, index: int, size: int = 128, seed: int = 0,
                      severity: float | None = None, config: PhantomConfig | None = None
                      ) -> tuple[np.ndarray, dict, dict[str, np.ndarray]]:
    """`render` plus ground-truth bool masks (size, size): "lungs" (the aerated lung fields,
    heart excluded) and "lesion" (opacity or effusion; all False for NORMAL)."""
    _check(label, size)
    _keep_freed_memory()
    return _make(label, int(index), int(size), int(seed), severity, config or PhantomConfig())


def generate(per_class: int, size: int = 128, seed: int = 0, classes=CLASSES,
             config: PhantomConfig | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """`per_class` images of each class: uint8 (N, size, size), labels (N,) indexing `classes`,
    and one metadata dict per image; class-major order."""
    if per_class < 0:
        raise UserError(f"per_class must be >= 0, got {per_class}")
    images = np.zeros((per_class * len(classes), size, size), np.uint8)
    labels = np.repeat(np.arange(len(classes)), per_class)
    metas = []
    for k, label in enumerate(classes):
        for i in range(per_class):
            images[k * per_class + i], meta = render(label, i, size, seed, config=config)
            metas.append(meta)
    return images, labels, metas


def write_dataset(out: str | Path, per_class: int, size: int = 128, seed: int = 0,
                  config: PhantomConfig | None = None) -> Path:
    """Write `out/CLASS/phantom_<index>.png` and `out/metadata.csv` (file, class, source, patient,
    severity, laterality, findings, effusion); returns `out`."""
    from PIL import Image

    out = Path(out)
    rows = []
    for label in CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img, meta = render(label, i, size, seed, config=config)
            name = f"{label}/phantom_{i:05d}.png"
            Image.fromarray(img).save(out / name)
            rows.append({"file": name, "class": label, "source": "phantom", "patient": meta["patient"],
                         "severity": meta["severity"], "laterality": meta["laterality"],
                         "findings": meta["findings"], "effusion": meta.get("effusion", "")})
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file", "class", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def contact_sheet(path: str | Path, per_class: int = 6, size: int = 128, seed: int = 0,
                  config: PhantomConfig | None = None) -> Path:
    """A labelled PNG grid, one row per class, to eyeball the phantoms (docs/phantoms.png is
    `contact_sheet("docs/phantoms.png")`)."""
    from PIL import Image, ImageDraw, ImageFont

    _check(CLASSES[0], size)
    label_w, pad = 104, 2
    sheet = Image.new("L", (label_w + per_class * (size + pad), len(CLASSES) * (size + pad)), 255)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for r, label in enumerate(CLASSES):
        y0 = r * (size + pad)
        sevs = []
        for i in range(per_class):
            img, meta = render(label, i, size, seed, config=config)
            sheet.paste(Image.fromarray(img), (label_w + i * (size + pad), y0))
            sevs.append(meta["severity"])
        draw.text((4, y0 + size // 2 - 16), label, fill=0, font=font)
        if label != "NORMAL":
            draw.text((4, y0 + size // 2 + 2), f"severity\n{min(sevs):.2f}-{max(sevs):.2f}",
                      fill=90, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output folder for CLASS/*.png and metadata.csv")
    parser.add_argument("--per-class", type=int, default=50, help="images per class (default 50)")
    parser.add_argument("--sheet", help="also write a labelled contact sheet PNG here")
    add_config_arguments(parser, PhantomConfig)


def main(args: argparse.Namespace) -> int:
    cfg = override(PhantomConfig(), args)
    _check(CLASSES[0], cfg.size)
    if not args.out and not args.sheet:
        raise UserError("give --out DIR for a data set and/or --sheet PNG for a contact sheet")
    if args.per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {args.per_class}")
    if args.sheet:
        print(f"contact sheet: {contact_sheet(args.sheet, size=cfg.size, seed=cfg.seed, config=cfg)}")
    if args.out:
        t0 = time.perf_counter()
        out = write_dataset(args.out, args.per_class, cfg.size, cfg.seed, cfg)
        print(f"wrote {args.per_class * len(CLASSES)} images of {cfg.size}x{cfg.size} and "
              f"metadata.csv to {out} in {time.perf_counter() - t0:.1f} s")
    return 0
