"""core.data.phantom: deterministic per (seed, index), every size from 32 to 512, radiograph
conventions, measurable class differences (COVID-19 bilateral haze, PNEUMONIA one-sided
consolidation), and the `phantom` CLI writing CLASS/*.png + metadata.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from core import CLASSES
from core.__main__ import main as cli
from core.errors import UserError
from core.data.phantom import (PhantomConfig, contact_sheet, generate, render, render_with_masks,
                          write_dataset)

S = 64  # small enough to keep every test well under a second


def _lung_haze(label: str, severity: float, n: int = 16) -> np.ndarray:
    """Per image: lung-field mean / the image's 95th percentile, i.e. haze with the patient's
    exposure divided out; (n,)."""
    values = []
    for i in range(n):
        img, _, masks = render_with_masks(label, i, S, seed=1, severity=severity)
        values.append(img[masks["lungs"]].mean() / np.percentile(img, 95))
    return np.array(values)


# --- determinism and shapes ---------------------------------------------------------------

def test_deterministic_for_seed_and_index():
    for label in CLASSES:
        a, meta_a = render(label, 3, S, seed=7)
        b, meta_b = render(label, 3, S, seed=7)
        np.testing.assert_array_equal(a, b)
        assert meta_a == meta_b
    images1, labels1, metas1 = generate(2, size=32, seed=5)
    images2, labels2, metas2 = generate(2, size=32, seed=5)
    np.testing.assert_array_equal(images1, images2)
    np.testing.assert_array_equal(labels1, labels2)
    assert metas1 == metas2


def test_indices_seeds_and_classes_give_different_images():
    base, _ = render("NORMAL", 0, S, seed=0)
    others = [render("NORMAL", 1, S, seed=0)[0], render("NORMAL", 0, S, seed=1)[0],
              render("COVID-19", 0, S, seed=0)[0]]
    for other in others:
        assert np.abs(base.astype(int) - other).mean() > 3
    # No two of a batch are the same patient picture.
    images, _, _ = generate(4, size=32, seed=0)
    flat = images.reshape(len(images), -1).astype(int)
    diffs = np.abs(flat[:, None] - flat[None]).mean(-1)
    assert diffs[~np.eye(len(images), dtype=bool)].min() > 1


@pytest.mark.parametrize("size", [32, 33, 64, 100, 128, 257, 512])
def test_every_size_gives_a_grayscale_uint8_square(size):
    img, meta = render("PNEUMONIA", 2, size)
    assert img.shape == (size, size) and img.dtype == np.uint8
    assert img.std() > 20                       # an image, not a flat field
    assert meta["patient"] == "phantom-0-PNEUMONIA-2" and meta["source"] == "phantom"


def test_same_patient_at_two_sizes_is_the_same_anatomy():
    small, _ = render("COVID-19", 4, 64, severity=0.6)
    large, _ = render("COVID-19", 4, 128, severity=0.6)
    down = large.reshape(64, 2, 64, 2).mean((1, 3))
    assert np.corrcoef(small.ravel(), down.ravel())[0, 1] > 0.95
    stranger, _ = render("COVID-19", 5, 64, severity=0.6)
    assert np.corrcoef(small.ravel(), stranger.ravel())[0, 1] < 0.95


def test_bad_class_or_size_is_a_user_error():
    with pytest.raises(UserError, match="class"):
        render("TUBERCULOSIS", 0)
    for size in (31, 513):
        with pytest.raises(UserError, match="between 32 and 512"):
            render("NORMAL", 0, size)


# --- radiograph conventions and metadata -----------------------------------------------------

def test_lungs_dark_body_bright_outside_black():
    for i in range(4):
        img, _, masks = render_with_masks("NORMAL", i, 128)
        lungs = img[masks["lungs"]].mean()
        spine = img[40:80, 60:68].mean()            # mediastinum over the spine
        abdomen = img[118:, 40:88].mean()            # below the diaphragm
        assert lungs + 40 < spine and lungs + 40 < abdomen
        right_lung, left_lung = masks["lungs"][:, :64].sum(), masks["lungs"][:, 64:].sum()
        # Two lung fields; the heart bulges into the patient's left (the image's right).
        assert 500 < left_lung < right_lung
        assert min(img[:4, :4].mean(), img[:4, -4:].mean()) < 40   # air above the shoulders


def test_metadata_and_masks_by_class():
    _, meta, masks = render_with_masks("NORMAL", 0, S, severity=0.9)
    assert meta["severity"] == 0.0 and meta["findings"] == "none" and not masks["lesion"].any()
    _, meta = render("COVID-19", 0, S, severity=0.4)
    assert meta["severity"] == 0.4 and meta["laterality"] == "bilateral"
    assert set(meta) >= {"patient", "severity", "laterality", "findings", "source"}
    cfg = PhantomConfig(severity_min=0.5, severity_max=0.5)
    _, _, metas = generate(2, size=32, config=cfg)
    assert [m["severity"] for m in metas] == [0.5, 0.5, 0.0, 0.0, 0.5, 0.5]


# --- class differences -----------------------------------------------------------------------

def test_disease_raises_lung_field_intensity_over_normal():
    normal = _lung_haze("NORMAL", 0.8).mean()
    covid = _lung_haze("COVID-19", 0.8).mean()
    pneumonia = _lung_haze("PNEUMONIA", 0.8).mean()
    assert covid > normal + 0.03 and pneumonia > normal + 0.02


def test_severity_grows_the_opacity_for_the_same_patient():
    for label in ("COVID-19", "PNEUMONIA"):
        grew = 0
        for i in range(8):
            mild, _, m_mild = render_with_masks(label, i, S, severity=0.15)
            severe, _, m_severe = render_with_masks(label, i, S, severity=1.0)
            lungs = m_mild["lungs"]
            grew += (severe[lungs].mean() > mild[lungs].mean()
                     and m_severe["lesion"].sum() > m_mild["lesion"].sum())
        assert grew >= 7, label


def test_pneumonia_is_more_one_sided_than_covid():
    # What severity adds to the same patient (severe minus mild image), left lung vs right lung:
    # about 1 for a one-sided consolidation, near 0 for bilateral ground glass.
    def asymmetry(label: str) -> float:
        values = []
        for i in range(8):
            severe, _, masks = render_with_masks(label, i, S, seed=1, severity=1.0)
            mild, _ = render(label, i, S, seed=1, severity=0.15)
            diff, lungs, half = severe.astype(np.float64) - mild, masks["lungs"], S // 2
            right, left = diff[:, :half][lungs[:, :half]].mean(), diff[:, half:][lungs[:, half:]].mean()
            values.append(abs(left - right) / (abs(left) + abs(right) + 1e-6))
        return float(np.mean(values))

    covid, pneumonia = asymmetry("COVID-19"), asymmetry("PNEUMONIA")
    assert covid < 0.4 and pneumonia > 0.7


def test_lesions_sit_where_the_class_says():
    # COVID-19: both lungs, outer and lower parts; PNEUMONIA: on its reported side (the
    # patient's left is the image's right, as a PA film is viewed).
    xs = np.abs(np.arange(S) - (S - 1) / 2)[None, :].repeat(S, 0)
    ys = np.arange(S)[:, None].repeat(S, 1)
    for i in range(6):
        _, _, m = render_with_masks("COVID-19", i, S, severity=0.8)
        lesion, lungs = m["lesion"], m["lungs"]
        assert lesion[:, :S // 2].any() and lesion[:, S // 2:].any()
        assert xs[lesion].mean() > xs[lungs].mean() and ys[lesion].mean() > ys[lungs].mean()
    sided = 0
    for i in range(10):
        _, meta, m = render_with_masks("PNEUMONIA", i, S, severity=0.8)
        if meta["laterality"] in ("left", "right"):
            on_right_of_image = m["lesion"][:, S // 2:].sum() > m["lesion"][:, :S // 2].sum()
            sided += 1
            assert on_right_of_image == (meta["laterality"] == "left"), meta
    assert sided >= 5


# --- writing ---------------------------------------------------------------------------------

def test_cli_writes_pngs_and_metadata(tmp_path, capsys):
    out = tmp_path / "phantoms"
    assert cli(["phantom", "--out", str(out), "--per-class", "2", "--size", "40", "--seed", "3"]) == 0
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == 2 * len(CLASSES)
    assert {p.parent.name for p in pngs} == set(CLASSES)
    with Image.open(pngs[0]) as im:
        assert im.size == (40, 40) and im.mode == "L"
    with open(out / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert set(rows[0]) >= {"file", "class", "source", "patient", "severity"}
    assert all((out / r["file"]).is_file() and r["file"].startswith(r["class"] + "/") for r in rows)
    assert len({r["patient"] for r in rows}) == 6 and rows[0]["patient"].startswith("phantom-3-")
    # The written file is exactly the rendered image.
    first = rows[0]
    index = int(first["patient"].rsplit("-", 1)[1])
    with Image.open(out / first["file"]) as im:
        np.testing.assert_array_equal(np.asarray(im), render(first["class"], index, 40, seed=3)[0])


def test_cli_rejects_bad_requests(tmp_path, capsys):
    assert cli(["phantom", "--out", str(tmp_path / "x"), "--size", "16"]) == 2
    assert cli(["phantom"]) == 2
    assert "between 32 and 512" in capsys.readouterr().err


def test_write_dataset_and_contact_sheet(tmp_path):
    out = write_dataset(tmp_path / "d", per_class=1, size=32, seed=2)
    assert len(list(out.glob("*/*.png"))) == 3 and (out / "metadata.csv").is_file()
    sheet = contact_sheet(tmp_path / "sheet.png", per_class=2, size=32)
    with Image.open(sheet) as im:
        assert im.height == 3 * 34 and im.width > 2 * 32
