"""Data & augmentation page under AppTest: phantoms load with counts and examples, an Augmentor
slider changes the live preview and the stored config, a bad folder and a bad ZIP give clear
messages, balancing stores its target, and uploaded class folders load."""

from __future__ import annotations

import io
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest

from conftest import identified_dicom, leaks, page_texts
from core.data.config import DataConfig
from core.runs.store import runs_root

PAGE = str(REPO / "pages" / "data.py")


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    # Small phantoms keep the test fast; the page reads its source from session state.
    at.session_state["data_config"] = DataConfig(source="phantom", size=32, phantom_per_class=20)
    return at


def _preview_url(at: AppTest) -> str:
    imgs = [im for im in at.get("image") if "augmented" in im.proto.imgs[0].caption]
    assert imgs, "no preview image"
    return imgs[0].proto.imgs[0].url


def test_phantoms_load_and_preview_follows_sliders():
    at = _app().run()
    assert not at.exception and not at.error
    assert [m.value for m in at.metric][:2] == ["60", "3"]
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert any(c.startswith("COVID-19") for c in captions)
    before = _preview_url(at)
    # Turn everything off: the preview shows 7 copies of the original image.
    for slider in at.slider:
        if slider.key.startswith("aug_") and slider.key.endswith("_p"):
            slider.set_value(0.0)
    at.run()
    assert not at.exception
    off = _preview_url(at)
    at.slider(key="aug_rotate_p").set_value(1.0).run()
    at.slider(key="aug_rotate_deg").set_value(20.0).run()
    on = _preview_url(at)
    assert len({before, off, on}) == 3
    cfg = at.session_state["augment_config"]
    assert cfg.rotate_p == 1.0 and cfg.rotate_deg == 20.0 and cfg.flip_lr_p == 0.0
    # Once the data and previews are cached, a rerun of the page is quick.
    t0 = time.perf_counter()
    at.run()
    assert time.perf_counter() - t0 < 1.0 and not at.exception


def test_bad_folder_is_a_clear_error(tmp_path):
    at = _app().run()
    at.radio(key="data_kind").set_value("folder").run()
    at.text_input(key="data_folder").set_value(str(tmp_path / "nope")).run()
    assert not at.exception
    assert any("There is no folder" in e.value and "nope" in e.value for e in at.error)
    (tmp_path / "a.txt").write_text("x")
    at.text_input(key="data_folder").set_value(str(tmp_path / "a.txt")).run()
    assert any("is a file, not a folder" in e.value for e in at.error)
    at.text_input(key="data_folder").set_value(str(tmp_path)).run()  # a folder with no images
    assert any("No usable images" in e.value for e in at.error)
    # The stored data config is only replaced by a source that loads.
    assert not at.exception and at.session_state["data_config"].source == "phantom"


def test_balance_sets_training_target():
    at = _app().run()
    at.number_input(key="bal_per_class").set_value(30).run()
    at.button(key="bal_go").click().run()
    assert not at.exception and not at.error
    assert at.session_state["balance_per_class"] == 30
    assert any("augmented copies" in c.value and "90" in c.value for c in at.caption)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_upload_is_extracted_and_loaded():
    entries = {f"set/{cls}/{i}.png": _png(40 * i + 10) for cls in ("COVID-19", "NORMAL") for i in range(3)}
    entries["set/NORMAL/broken.png"] = b"not an image"
    at = _app().run()
    at.radio(key="data_kind").set_value("zip").run()
    at.file_uploader(key="data_zip").set_value(("classes.zip", _zip(entries), "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["6", "2", "6", "1"]
    source = at.session_state["data_config"].source
    assert Path(source).name == "set" and Path(source).parent.parent == runs_root() / "uploads"
    assert any("skipped" in e.label for e in at.expander)


def _shown(at: AppTest) -> list[str]:
    """Every text the page shows: messages, captions, markdown, metric labels, table cells."""
    texts = [el.value for kind in ("error", "warning", "info", "caption", "markdown")
             for el in getattr(at, kind)]
    texts += [str(m.label) for m in at.metric] + [e.label for e in at.expander]
    texts += [df.value.to_csv() for df in at.dataframe]
    return texts


def test_a_zip_of_one_class_folder_loads():
    entries = {f"COVID-19/{i}.png": _png(30 * i + 20) for i in range(4)}
    at = _app().run()
    at.radio(key="data_kind").set_value("zip").run()
    at.file_uploader(key="data_zip").set_value(("covid.zip", _zip(entries), "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["4", "1", "4", "0"]
    assert any("One class: **COVID-19**" in i.value and "at least two" in i.value for i in at.info)
    assert at.session_state["data_config"].source.startswith(str(runs_root() / "uploads" / "zip-"))
    assert not any(str(runs_root()) in t for t in _shown(at)), _shown(at)


def test_a_zip_with_nothing_usable_names_it_as_the_user_knows_it():
    entries = {"my set/COVID-19/a.png": b"junk", "my set/NORMAL/b.png": b"junk"}
    at = _app().run()
    at.radio(key="data_kind").set_value("zip").run()
    at.file_uploader(key="data_zip").set_value(("bad.zip", _zip(entries), "application/zip")).run()
    assert not at.exception
    assert any("No usable images found in the uploaded ZIP 'my set'; 2 files skipped" in e.value
               for e in at.error), [e.value for e in at.error]
    assert not any(str(runs_root()) in t or "uploads/" in t for t in _shown(at)), _shown(at)


def test_malicious_zip_is_refused_with_a_message():
    at = _app().run()
    at.radio(key="data_kind").set_value("zip").run()
    bad = _zip({"NORMAL/a.png": _png(1), "../../escape.png": _png(2)})
    at.file_uploader(key="data_zip").set_value(("evil.zip", bad, "application/zip")).run()
    assert not at.exception
    assert any("leaves its folder" in e.value for e in at.error)
    assert at.session_state["data_config"].source == "phantom"
    assert any("training uses the last data that loaded: **built-in phantoms" in c.value
               for c in at.caption)
    assert not list(runs_root().rglob("escape.png")) and not (runs_root().parent / "escape.png").exists()


def test_uploaded_files_build_a_class_folder_set():
    at = _app().run()
    at.radio(key="data_kind").set_value("files").run()
    for k, (label, value) in enumerate((("COVID-19", 60), ("NORMAL", 180))):
        # The uploader is a new, empty one after each Add: nothing is added twice.
        at.file_uploader(key=f"data_files_{k}").set_value(
            [(f"{label}-{i}.png", _png(value + i), "image/png") for i in range(2)]
            + [("junk.png", b"junk", "image/png")]).run()
        at.selectbox(key="data_files_class").set_value(label).run()
        at.button(key="data_files_add").click().run()
        assert any("junk.png" in w.value for w in at.warning)
        assert not at.exception and not at.error, [e.value for e in at.error]
        if k == 0:  # one class so far: a note, and training keeps the data it had
            assert any("at least one more class" in i.value for i in at.info)
            assert at.session_state["data_config"].source == "phantom"
    assert [m.value for m in at.metric][:2] == ["4", "2"]
    assert "/uploads/files-" in at.session_state["data_config"].source


def test_choices_survive_leaving_the_page():
    # Streamlit drops a widget's state when its page is not rendered; seeded widgets come back as
    # they were left. Run the whole app (from outside the repo, see test_page_home.py).
    app = str(REPO / "streamlit_app.py")
    at = AppTest.from_string(f"import runpy\nrunpy.run_path({app!r}, run_name='__main__')\n",
                             default_timeout=60)
    at.session_state["data_config"] = DataConfig(source="phantom", size=32, phantom_per_class=20)
    at.switch_page(PAGE).run()
    at.slider(key="aug_rotate_deg").set_value(12.0).run()
    at.number_input(key="bal_per_class").set_value(40).run()
    at.switch_page(str(REPO / "pages" / "runs.py")).run()
    assert all(s.key != "aug_rotate_deg" for s in at.slider)
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.slider(key="aug_rotate_deg").value == 12.0
    assert at.number_input(key="bal_per_class").value == 40
    assert at.session_state["augment_config"].rotate_deg == 12.0


def _everything_said(at, caplog, capfd) -> list[str]:
    out, err = capfd.readouterr()
    return page_texts(at) + [r.getMessage() for r in caplog.records] + [out, err]


def test_uploaded_dicoms_are_saved_deidentified(tmp_path, caplog, capfd):
    """A clinician's DICOMs added on the page: saved without the patient's name, ID, birth date,
    accession number or institution (searched in every file of the runs folder, the page and
    the log), the page says so, and two films of one PatientID are one patient."""
    caplog.set_level("DEBUG")
    films = [identified_dicom(tmp_path / f"{i}.dcm", 500 + 300 * i).read_bytes() for i in range(2)]
    at = _app().run()
    at.radio(key="data_kind").set_value("files").run()
    assert any("de-identified as they are saved" in c.value for c in at.caption)
    for k, (label, files) in enumerate((
            ("COVID-19", [(f"film-{i}.dcm", d, "application/dicom") for i, d in enumerate(films)]),
            ("NORMAL", [(f"n-{i}.png", _png(150 + 20 * i), "image/png") for i in range(2)]))):
        at.file_uploader(key=f"data_files_{k}").set_value(files).run()
        at.selectbox(key="data_files_class").set_value(label).run()
        at.button(key="data_files_add").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["4", "2", "3", "0"]
    assert len(list(runs_root().rglob("film-*.dcm"))) == 2
    assert leaks(runs_root(), texts=_everything_said(at, caplog, capfd)) == []


def test_four_films_of_one_patient_in_a_zip_are_one_patient(tmp_path, caplog, capfd):
    caplog.set_level("DEBUG")
    entries = {f"set/COVID-19/{i}.dcm": identified_dicom(tmp_path / f"{i}.dcm", 300 + 50 * i)
               .read_bytes() for i in range(4)}
    entries.update({f"set/NORMAL/{i}.png": _png(150 + 20 * i) for i in range(4)})
    at = _app().run()
    at.radio(key="data_kind").set_value("zip").run()
    assert any("de-identified as they are saved" in c.value for c in at.caption)
    at.file_uploader(key="data_zip").set_value(("films.zip", _zip(entries),
                                                "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["8", "2", "5", "0"]   # 1 patient + 4 PNGs, each its own
    assert leaks(runs_root(), texts=_everything_said(at, caplog, capfd)) == []
