"""Diagnose page under AppTest: no model gives a clear message; with a tiny classifier run, a
built-in example shows the same probabilities as core.classify.predict; a good PNG upload predicts and the
Grad-CAM toggle switches the image; corrupt, non-image, bad-DICOM and oversized uploads give
st.error, never an exception."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from core.runs.store import RunStore, runs_root  # noqa: E402

PAGE = str(REPO / "pages" / "diagnose.py")
SHIPPED = REPO / "checkpoints" / "classifier-phantom.safetensors"
SHIPPED_REAL = REPO / "checkpoints" / "classifier-cxr.safetensors"
FLAGGED = "This image is unlike the X-rays this model learned from"
RUN_NAME = "20260101-000000-classifier-report-cnn-diag"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished tiny classifier run on phantoms (with temperature and OOD statistics)."""
    from core.classify.model import ClassifierConfig
    from core.classify.config import ClassifierTrainConfig
    from core.classify.train import train_classifier
    from core.data.config import DataConfig

    path = tmp_path_factory.mktemp("clf") / RUN_NAME
    store = RunStore(path, create=True)
    train_classifier(store, DataConfig(source="phantom:10", size=32),
                     ClassifierConfig(size=32, width=0.125),
                     ClassifierTrainConfig(epochs=2, batch_size=8, val_fraction=0.3,
                                           test_fraction=0.0))
    store.close()
    return path


@pytest.fixture
def app_with_run(trained_run) -> AppTest:
    shutil.copytree(trained_run, runs_root() / RUN_NAME)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception and not at.error
    # The run's model, not the shipped one, so the numbers below are this test's checkpoint.
    run_label = next(o for o in at.selectbox(key="diagnose_model").options if RUN_NAME in o)
    at.selectbox(key="diagnose_model").set_value(run_label).run()
    return at


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _bars(at: AppTest) -> dict[str, float]:
    import base64
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    bar = spec["data"][0]
    x = bar["x"]
    if isinstance(x, dict):  # plotly's typed-array JSON
        x = np.frombuffer(base64.b64decode(x["bdata"]), x["dtype"]).tolist()
    return dict(zip(bar["y"], x))


def _only_the_flag(at: AppTest) -> None:
    """A flagged image: called "this image", with no class in headline type, no Grad-CAM (a
    heatmap "for COVID-19" on a photo) and no probability bars; the image itself, plain."""
    assert not at.metric and not at.get("plotly_chart")
    assert not at.toggle and not [s for s in at.selectbox if s.key.startswith("diagnose_cam_")]
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert captions and not any("Grad-CAM" in c for c in captions)
    texts = [el.value for kind in ("warning", "markdown", "caption") for el in getattr(at, kind)]
    assert not any("This X-ray" in t or "Closest class" in t for t in texts)


def _headline(at: AppTest):
    """The innermost block that holds the answer in headline type (the metric)."""
    from streamlit.testing.v1.element_tree import Block

    def walk(block):
        for child in getattr(block, "children", {}).values():
            if isinstance(child, Block):
                yield child
                yield from walk(child)

    return [b for b in walk(at.main) if len(b.metric) == 1][-1]


def test_loads_without_runs():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    assert any("not a medical device" in w.value for w in at.warning)
    if SHIPPED_REAL.is_file():  # the shipped real-X-ray model is the default
        assert at.selectbox(key="diagnose_model").value.startswith("Real X-rays: shipped")
    if SHIPPED.is_file():
        assert any("Phantoms: shipped" in o for o in at.selectbox(key="diagnose_model").options)
    else:
        assert any("No model is available" in i.value for i in at.info)


def test_example_shows_probabilities(app_with_run, trained_run):
    from core.classify.model import load_classifier
    from core.data.phantom import render
    from core.classify.predict import predict_image

    at = app_with_run
    run_label = at.selectbox(key="diagnose_model").value
    at.button(key="diagnose_example_PNEUMONIA").click().run()
    assert not at.exception and not at.error
    if SHIPPED.is_file():  # a phantom example picks the phantom model; the run's is one click away
        assert at.selectbox(key="diagnose_model").value.startswith("Phantoms: shipped")
        at.selectbox(key="diagnose_model").set_value(run_label).run()
    assert any("synthetic phantom" in im.proto.imgs[0].caption for im in at.get("image"))
    bars = _bars(at)
    assert sorted(bars) == sorted(["COVID-19", "NORMAL", "PNEUMONIA"])
    assert sum(bars.values()) == pytest.approx(1.0, abs=1e-6)
    # The same numbers as core.classify.predict on the same phantom.
    model, meta = load_classifier(trained_run / "checkpoints" / "best.safetensors")
    img, _ = render("PNEUMONIA", 0, size=32, seed=20_260_101)  # the model's input size
    expected = predict_image(model, meta, img.astype(np.float32) / 255.0)
    for k, v in expected["probabilities"].items():
        assert bars[k] == pytest.approx(v, abs=1e-4)
    assert at.metric[0].value == expected["predicted"]
    assert any("phantoms only" in c.value for c in at.caption)


def test_png_upload_and_gradcam_toggle(app_with_run):
    from core.data.phantom import render

    at = app_with_run
    # A phantom like the run's training images: noise would be flagged, and then has no heatmap.
    img, _ = render("PNEUMONIA", 0, size=32, seed=20_260_101)
    at.file_uploader(key="diagnose_upload").set_value(("chest.png", _png(img), "image/png")).run()
    assert not at.exception and not at.error
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert any("chest.png" in c and "32x32" in c and "Grad-CAM" in c for c in captions), captions
    at.toggle(key="diagnose_gradcam").set_value(False).run()
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert captions and not any("Grad-CAM" in c for c in captions)
    assert sum(_bars(at).values()) == pytest.approx(1.0, abs=1e-6)


def test_ct_dicom_upload_says_so(app_with_run):
    """A readable DICOM of the wrong kind still predicts, under a note from its header."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, CTImageStorage, generate_uid()
    ds.Modality, ds.BodyPartExamined, ds.Rows, ds.Columns = "CT", "HEAD", 64, 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    at = app_with_run
    upload = ("head.dcm", buf.getvalue(), "application/dicom")
    at.file_uploader(key="diagnose_upload").set_value(upload).run()
    assert not at.exception and not at.error
    about = [w.value for w in at.warning if "About this file" in w.value]
    assert len(about) == 1 and "modality is CT" in about[0] and "body part is HEAD" in about[0]
    # Its header says CT: flagged, and then only the flag and why: no class, heatmap or bars.
    assert any(FLAGGED in w.value and "the file itself says" in w.value for w in at.warning)
    _only_the_flag(at)


def test_example_buttons_are_named_by_their_class(app_with_run):
    # "PNEUMONIA phantom" was cut at 1024 px; the line above them says they are phantoms.
    at = app_with_run
    labels = [at.button(key=f"diagnose_example_{k}").label for k in ("COVID-19", "NORMAL", "PNEUMONIA")]
    assert labels == ["COVID-19", "NORMAL", "PNEUMONIA"]
    assert any("procedural radiograph of each class" in m.value for m in at.markdown)
    assert "phantom" in at.button(key="diagnose_example_PNEUMONIA").help


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's warnings on the broken DICOM
@pytest.mark.parametrize("name,data,needle", [
    ("broken.png", _png(np.zeros((64, 64), np.uint8))[:60], "broken.png"),
    ("notes.jpg", b"these are my notes, not an image at all", "notes.jpg"),
    ("scan.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 20, "scan.dcm"),
    ("empty.png", b"", "empty.png"),
], ids=["truncated-png", "not-an-image", "bad-dicom", "zero-bytes"])
def test_bad_upload_is_a_clear_error(app_with_run, name, data, needle):
    at = app_with_run
    at.file_uploader(key="diagnose_upload").set_value((name, data, "application/octet-stream")).run()
    assert not at.exception
    assert at.error and needle in at.error[0].value
    assert not at.get("plotly_chart")


def test_oversized_upload_is_refused(app_with_run):
    at = app_with_run
    at.file_uploader(key="diagnose_upload").set_value(
        ("huge.png", b"\x89PNG" + b"\0" * (31 * 2**20), "image/png")).run()
    assert not at.exception
    assert at.error and "limit is 30 MB" in at.error[0].value


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped phantom model is not in this copy")
@pytest.mark.parametrize("label", ["COVID-19", "NORMAL", "PNEUMONIA"])
def test_shipped_model_gets_its_examples_right(label):
    """A visitor's first clicks: each built-in example, with the default (shipped) model, is
    classified as what it was drawn as, and not flagged as unlike the training data."""
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key=f"diagnose_example_{label}").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="diagnose_model").value.startswith("Phantoms: shipped")
    assert at.metric[0].label == "Predicted" and at.metric[0].value == label
    assert not any(FLAGGED in w.value for w in at.warning)


def test_a_colour_photo_is_flagged_in_plain_words(app_with_run):
    """A photograph: the plain-language flag, no class in headline type, the numbers' details
    in the expander, the closest class only in small print."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    photo[..., 0] = 250  # strongly coloured
    at = app_with_run
    at.file_uploader(key="diagnose_upload").set_value(("holiday.png", _png(photo), "image/png")).run()
    assert not at.exception and not at.error
    assert any(FLAGGED in w.value for w in at.warning)
    _only_the_flag(at)
    assert any("colour image" in w.value for w in at.warning)
    details = [e for e in at.expander if e.label.startswith("Details")]
    assert details and any("Out-of-distribution distance" in m.value for m in details[0].markdown)
    assert not any("Out-of-distribution distance" in w.value for w in at.warning)


def test_card_under_the_result(app_with_run):
    at = app_with_run
    at.button(key="diagnose_example_NORMAL").click().run()
    assert not at.exception
    assert any("About this model" in m.value for m in at.markdown)


@pytest.mark.skipif(not SHIPPED_REAL.is_file(), reason="no shipped real-X-ray model")
def test_real_model_is_the_default_and_shows_its_card():
    from core.checkpoint import read_meta

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="diagnose_model").value.startswith("Real X-rays: shipped")
    card = read_meta(SHIPPED_REAL)["card"]
    text = " ".join(m.value for m in at.markdown)
    assert card["results"][0] in text and "classifier-cxr.md" in " ".join(c.value for c in at.caption)


@pytest.mark.skipif(not (SHIPPED_REAL.is_file() and (REPO / "checkpoints" /
                                                     "generator-cxr-covid.safetensors").is_file()),
                    reason="no shipped real-X-ray models")
def test_generated_example_goes_to_the_real_model():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key="diagnose_example_NORMAL").click().run()     # to the phantom model first
    at.button(key="diagnose_generated_1").click().run()
    assert not at.exception and not at.error
    assert at.selectbox(key="diagnose_model").value.startswith("Real X-rays: shipped")
    assert any("generated X-ray 1 (synthetic)" in im.proto.imgs[0].caption for im in at.get("image"))
    assert sum(_bars(at).values()) == pytest.approx(1.0, abs=1e-6)


def test_a_card_in_a_checkpoint_from_elsewhere_is_not_shown(app_with_run):
    """Only the shipped models' cards are rendered: one in a run's checkpoint could carry a
    remote image or a link into the page."""
    from core.classify.modelcard import stamp

    ckpt = runs_root() / RUN_NAME / "checkpoints" / "best.safetensors"
    stamp(ckpt, {"summary": "![x](http://example.invalid/track.png) trust me"}, ckpt)
    at = app_with_run
    at.run()
    at.button(key="diagnose_example_NORMAL").click().run()
    run_label = next(o for o in at.selectbox(key="diagnose_model").options if RUN_NAME in o)
    at.selectbox(key="diagnose_model").set_value(run_label).run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "example.invalid" not in text and "phantoms only" in text


def test_a_dicoms_patient_is_never_shown_logged_or_kept(app_with_run, trained_run, tmp_path,
                                                       caplog, capfd):
    """A film carrying a made-up patient's name, ID, birth date, accession number and
    institution, through the page and `python -m core predict`: none of them appears on the
    page, in the log or output, or in any file under the runs folder or the heatmap folder."""
    from conftest import identified_dicom, leaks, page_texts

    from core import __main__ as cli

    caplog.set_level("DEBUG")
    film = identified_dicom(tmp_path / "in" / "film.dcm", BodyPartExamined="CHEST")
    at = app_with_run
    at.file_uploader(key="diagnose_upload").set_value(
        ("film.dcm", film.read_bytes(), "application/dicom")).run()
    assert not at.exception and not at.error
    ckpt = trained_run / "checkpoints" / "best.safetensors"
    assert cli.main(["predict", "--checkpoint", str(ckpt), str(film),
                     "--heatmap-dir", str(tmp_path / "maps")]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["ok"] and any((tmp_path / "maps").iterdir())
    texts = page_texts(at) + [r.getMessage() for r in caplog.records] + [out, err]
    assert leaks(runs_root(), tmp_path / "maps", texts=texts) == []
@pytest.mark.skipif(not SHIPPED_REAL.is_file(), reason="no shipped real-X-ray model")
@pytest.mark.parametrize("answer", ["NORMAL", "PNEUMONIA", "COVID-19"])
def test_the_real_models_answer_says_what_it_misses_in_the_headline(monkeypatch, answer):
    """An adult COVID-19 film from an unseen hospital is mostly called NORMAL by the shipped
    model (its card: 109 of 290 found). A NORMAL or PNEUMONIA headline says so in the same
    block; a COVID-19 one needs no such line. The model's answer is set here (no real film may
    live in the repository); the card and the page are the real ones."""
    import ui.cache
    from core.checkpoint import read_meta

    real = ui.cache.prediction

    def answered(*args, **kwargs):
        out = dict(real(*args, **kwargs))
        out["predicted"], out["ood"] = answer, {**out["ood"], "flag": False, "by_file": False}
        return out

    monkeypatch.setattr(ui.cache, "prediction", answered)
    film = np.tile(np.linspace(30, 220, 96, dtype=np.uint8), (96, 1))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.file_uploader(key="diagnose_upload").set_value(("adult.png", _png(film), "image/png")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="diagnose_model").value.startswith("Real X-rays: shipped")
    miss = read_meta(SHIPPED_REAL)["card"]["misses"][0]
    headline = _headline(at)
    assert headline.metric[0].value == answer and not headline.get("plotly_chart")
    cautions = [w.value for w in headline.warning]
    if answer == "COVID-19":
        assert not cautions
    else:
        assert len(cautions) == 1 and "misses most COVID-19 films from hospitals it never " \
            f"trained on**: in testing it found {miss['found']} of {miss['of']} (37.6%)" in cautions[0]
        assert f"A {answer} answer does not rule COVID-19 out" in cautions[0]
