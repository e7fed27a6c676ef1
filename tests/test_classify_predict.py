"""core/classify/gradcam.py and core/classify/predict.py: Grad-CAM shape and range, the overlay, prediction on PNG
8/16-bit, JPEG RGB, DICOM, bytes, bad files (per-file errors), the OOD flag on foreign images,
and the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core import __main__ as cli
from core.classify.model import ClassifierConfig, build_classifier
from core.classify.gradcam import gradcam, overlay
from core.classify.predict import fit_ood, ood_distance, overlay_png, predict_file, to_json


@pytest.fixture(scope="module")
def phantom_model(tmp_path_factory):
    """A tiny report CNN trained for a few epochs on 32 px phantoms (with OOD statistics)."""
    from core.classify.model import load_classifier
    from core.classify.config import ClassifierTrainConfig
    from core.classify.train import train_classifier
    from core.data.config import DataConfig
    from core.runs.store import RunStore

    store = RunStore(tmp_path_factory.mktemp("clf") / "run", create=True)
    train_classifier(store, DataConfig(source="phantom:16", size=32),
                     ClassifierConfig(size=32, width=0.25),
                     ClassifierTrainConfig(epochs=4, batch_size=8, patience=4))
    path = store.checkpoints_dir / "best.safetensors"
    model, meta = load_classifier(path)
    return model, meta, path


def phantom_image(size=200, label="NORMAL", index=99) -> np.ndarray:
    from core.data.phantom import render

    return render(label, index, size)[0]  # uint8 (size, size), a patient not in training


@pytest.mark.parametrize("arch", ["report-cnn", "resnet"])
def test_gradcam_shape_and_range(arch):
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(arch=arch, size=32, width=0.25))
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    logits, heat, feats = gradcam(model, x)
    assert logits.shape == (3, 3) and heat.shape == (3, 32, 32) and feats.shape[0] == 3
    assert heat.min() >= 0 and heat.max() <= 1
    assert torch.allclose(logits, model.eval()(x), atol=1e-5)
    assert all(h.max() == pytest.approx(1.0) or h.max() == 0 for h in heat)
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_gradcam_finds_the_evidence():
    """A model whose last 'conv block' has two channels, the input's top-left quadrant and its
    bottom-right one, and whose class-0 logit averages the first: the class-0 map must light up
    the top-left quadrant only (and the class-1 map the bottom-right)."""
    class Quadrants(torch.nn.Module):
        def forward(self, x):                                   # (N, 1, 16, 16) -> (N, 2, 16, 16)
            tl, br = torch.zeros_like(x), torch.zeros_like(x)
            tl[..., :8, :8], br[..., 8:, 8:] = 1, 1
            return torch.cat([x * tl, x * br], 1)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cam_layer = Quadrants()
            self.head = torch.nn.Identity()

        def forward(self, x):
            return self.head(self.cam_layer(x).mean((2, 3)))     # (N, 2)

    x = torch.ones(1, 1, 16, 16)
    _, heat, _ = gradcam(Model(), x, target=0)
    assert heat[0, :6, :6].min() > 0.9 and heat[0, 10:, 10:].max() < 0.1
    _, heat, _ = gradcam(Model(), x, target=1)
    assert heat[0, 10:, 10:].min() > 0.9 and heat[0, :6, :6].max() < 0.1


def test_overlay():
    img = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    heat = np.zeros((8, 8), np.float32)
    heat[2, 2] = 1
    rgb = overlay(img, heat)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    cold = rgb[-1, -1]
    assert abs(int(cold[0]) - int(cold[2])) <= 1  # no heat: stays gray


def test_ood_distance():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 8, generator=gen)
    labels = torch.arange(300) % 3
    feats[labels == 1] += 5
    ood = fit_ood(feats, labels.numpy(), 3)
    near = ood_distance(feats[:10], ood)
    far = ood_distance(torch.full((1, 8), 40.0), ood)
    assert far.item() > 5 * near.max().item()


def _png_bytes(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, **{"format": "PNG", **kw})
    return buf.getvalue()


def _dicom_bytes(a16: np.ndarray) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "test"
    ds.Rows, ds.Columns = a16.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = a16.astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_predict_formats(phantom_model, tmp_path):
    model, meta, _ = phantom_model
    img = phantom_image(size=150)
    files = {
        "a.png": _png_bytes(img),
        "b16.png": _png_bytes((img.astype(np.uint16) * 257), format="PNG"),
        "c.jpg": _png_bytes(np.stack([img] * 3, -1), format="JPEG", quality=95),
        "d.dcm": _dicom_bytes(img.astype(np.uint16) * 16),
    }
    probs = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        r = predict_file(model, meta, tmp_path / name)
        assert r["ok"], r
        assert set(r["probabilities"]) == set(meta["classes"])
        assert sum(r["probabilities"].values()) == pytest.approx(1.0)
        assert r["predicted"] in meta["classes"] and r["heatmap"].shape == (32, 32)
        assert isinstance(r["ood"]["flag"], bool)
        assert "phantom" in r["warning"]  # a phantom-trained model says so
        json.dumps(to_json(r))  # JSON-ready without the arrays
        probs[name] = np.array(list(r["probabilities"].values()))
    # The same picture in four encodings gives (nearly) the same answer.
    for name in files:
        assert np.abs(probs[name] - probs["a.png"]).max() < 0.05, name
    r = predict_file(model, meta, files["a.png"], name="upload.png")  # bytes work too
    assert r["ok"] and r["file"] == "upload.png"
    png = overlay_png(r, tmp_path / "o.png")
    assert Image.open(png).mode == "RGB" and Image.open(png).size == (150, 150)


def test_predict_notes(phantom_model):
    """A phantom at a sane size has no notes; a tiny or very wide image says what was done to it."""
    model, meta, _ = phantom_model
    assert predict_file(model, meta, _png_bytes(phantom_image(64)), name="ok.png")["notes"] == []
    tiny = predict_file(model, meta, _png_bytes(phantom_image(32)[::4, ::4]), name="tiny.png")
    assert tiny["ok"]
    assert tiny["notes"] == ["the image is only 8x8 px, enlarged to 32x32 for the model"]
    wide = np.tile(phantom_image(64), (1, 2))  # 128 x 64
    notes = predict_file(model, meta, _png_bytes(wide), name="wide.png")["notes"]
    assert len(notes) == 1 and "far from square" in notes[0] and "128x64" in notes[0]


def test_predict_bad_files(phantom_model, tmp_path):
    model, meta, _ = phantom_model
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("this is not an X-ray\n")
    (tmp_path / "cut.png").write_bytes(_png_bytes(phantom_image(64))[:100])
    for name, words in (("empty.png", "zero-byte"), ("notes.txt", "not an image"),
                        ("cut.png", "corrupt"), ("missing.png", "not found")):
        r = predict_file(model, meta, tmp_path / name)
        assert r["ok"] is False and words in r["error"] and name in r["error"]


def test_ood_flags_foreign_images(phantom_model):
    model, meta, _ = phantom_model
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256] / 255.0
    noise = rng.random((256, 256)).astype(np.float32)
    gradient = xx.astype(np.float32)
    # A photo-like RGB scene: sky, a sun, a green hill, some texture.
    photo = np.zeros((256, 256, 3), np.float32)
    photo[..., 2] = 0.9
    photo[..., 1] = 0.6
    photo[yy > 0.6 + 0.1 * np.sin(xx * 9)] = (0.2, 0.6, 0.2)
    photo[(yy - 0.25) ** 2 + (xx - 0.75) ** 2 < 0.01] = (1.0, 0.9, 0.3)
    photo = np.clip(photo + 0.05 * rng.standard_normal(photo.shape), 0, 1)
    foreign = {"noise": noise, "gradient": gradient,
               "photo": _png_bytes((photo * 255).astype(np.uint8), format="JPEG")}
    foreign_ratio = []
    for name, item in foreign.items():
        data = item if isinstance(item, bytes) else _png_bytes((item * 255).astype(np.uint8))
        r = predict_file(model, meta, data, name=name)
        assert r["ok"] and r["ood"]["flag"] is True, (name, r["ood"])
        foreign_ratio.append(r["ood"]["ratio"])
    # ... while phantoms of unseen patients, rendered as the training ones were, score lower and
    # mostly pass (the threshold is the 99th percentile of only ~7 validation images here).
    ood = [predict_file(model, meta, _png_bytes(phantom_image(32, c, 500 + i)))["ood"]
           for c in ("COVID-19", "NORMAL", "PNEUMONIA") for i in range(4)]
    assert sum(o["flag"] for o in ood) <= 6
    assert np.median([o["ratio"] for o in ood]) < min(foreign_ratio) / 2


def test_cli(phantom_model, tmp_path, capsys):
    _, _, path = phantom_model
    good = tmp_path / "x.png"
    good.write_bytes(_png_bytes(phantom_image(96)))
    bad = tmp_path / "bad.txt"
    bad.write_text("nope")
    rc = cli.main(["predict", "--checkpoint", str(path), str(good), str(bad),
                   "--heatmap-dir", str(tmp_path / "maps")])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert rc == 2 and len(lines) == 2
    assert err.strip().splitlines() == [f"error: {lines[1]['error']}"]
    assert lines[0]["ok"] and Image.open(lines[0]["heatmap_png"]).mode == "RGB"
    assert lines[1]["ok"] is False and "bad.txt" in lines[1]["error"]


def test_empty_map_of_the_predicted_class_shows_the_next_class():
    """A class whose evidence only ever lowers its score has an all-zero Grad-CAM: the result
    says so (empty_maps) and shows the map of the next most likely class instead."""
    from core.classify.predict import predict_image

    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(size=32, width=0.25, dropout=0.0)).eval()
    with torch.no_grad():
        # Dense weights >= 0, so every conv activation can only raise the dense features; the
        # NORMAL logit reads them with negative weights (their gradient is negative everywhere,
        # so its map is ReLU(negative) = 0) and wins by its bias.
        model.embed[2].weight.abs_()
        model.head.weight[1] = -model.head.weight[1].abs() - 0.01
        model.head.weight[0] = model.head.weight[0].abs() + 0.01
        model.head.bias[:] = torch.tensor([0.0, 50.0, -50.0])
    meta = {"model": {"size": 32}, "classes": ["COVID-19", "NORMAL", "PNEUMONIA"]}
    r = predict_image(model, meta, phantom_image(64) / 255.0)
    assert r["predicted"] == "NORMAL" and "NORMAL" in r["empty_maps"]
    assert r["heatmap_class"] == "COVID-19" and r["heatmap"].max() == pytest.approx(1.0)
    assert set(r["heatmaps"]) == set(meta["classes"]) and r["heatmaps"]["NORMAL"].max() == 0
    assert "heatmaps" not in to_json(r)
    json.dumps(to_json(r))


def test_known_outliers_are_flagged(phantom_model):
    """outlier_means: an image nearer to a known outlier's mean than to every training class is
    flagged, whatever its distance."""
    from core.classify.model import ood_features
    from core.classify.predict import ood_outlier, outlier_means

    model, meta, _ = phantom_model
    ood = dict(meta["ood_tensors"])
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.random((6, 1, 32, 32), dtype=np.float32) * 2 - 1)
    feats = ood_features(model, noise)
    assert not ood_outlier(feats, ood).any()      # no outlier means saved: never
    ood["outlier_means"] = outlier_means(feats, np.zeros(6, int), ood)
    assert ood_outlier(feats, ood).all()
    x = torch.from_numpy(phantom_image(32)).float().div(127.5).sub(1)[None, None]
    assert not ood_outlier(ood_features(model, x), ood).any()


def test_a_dicom_header_that_rules_out_a_chest_film_flags_it(phantom_model):
    """A DICOM whose header says CT is flagged even when its pixels look in-distribution."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    model, meta, _ = phantom_model
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = fm, CTImageStorage, generate_uid()
    ds.Modality, ds.Rows, ds.Columns = "CT", 64, 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = phantom_image(64).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    r = predict_file(model, meta, buf.getvalue(), "ct.dcm")
    assert r["ok"] and r["ood"]["flag"] and r["ood"]["by_file"]
    assert any("modality is CT" in n for n in r["notes"])
    png = io.BytesIO()
    Image.fromarray(phantom_image(64)).save(png, format="PNG")
    plain = predict_file(model, meta, png.getvalue(), "same-pixels.png")
    assert not plain["ood"].get("by_file")
