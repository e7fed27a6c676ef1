"""Classifier page under AppTest: no runs gives a clear message; a finished tiny run shows its
confusion matrix and P/R/F1 table (numbers from its eval.json); a failed run shows its reason and
log tail; a running run shows the live panel and Stop; Start launches train-classifier with the
chosen data and augmentation."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from core.data.augment import AugmentConfig  # noqa: E402
from core.classify.train import PRESETS  # noqa: E402
from core.data.config import DataConfig  # noqa: E402
from core.runs.store import RunStore, runs_root  # noqa: E402

PAGE = str(REPO / "pages" / "classifier.py")



def _start_button(at, name: str):
    """A start button: its key changes after each start that went through (ui.jobs.start_key)."""
    return next(b for b in at.button if b.key.startswith(name + "_"))

def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["data_config"] = DataConfig(source="phantom", size=32, phantom_per_class=12)
    return at


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished train-classifier run on a few phantoms (a tiny CNN, two epochs, ~3 s)."""
    from core.classify.model import ClassifierConfig
    from core.classify.config import ClassifierTrainConfig
    from core.classify.train import train_classifier

    path = tmp_path_factory.mktemp("clf") / "20260101-000000-classifier-report-cnn-abcd"
    store = RunStore(path, create=True)
    train_classifier(store, DataConfig(source="phantom:10", size=32),
                     ClassifierConfig(size=32, width=0.125),
                     ClassifierTrainConfig(epochs=2, batch_size=8, val_fraction=0.3,
                                           test_fraction=0.3))
    store.close()
    return path


def _install(run: Path) -> Path:
    dest = runs_root() / run.name
    shutil.copytree(run, dest)
    return dest


def _array(value) -> list:
    """A plotly JSON array: a plain list, or plotly's typed {"dtype", "bdata", "shape"} form."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"]).reshape(shape).tolist()
    return value


def _table(at: AppTest, column: str):
    """The first dataframe with `column` (AppTest's dataframes carry no key)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column")


def test_no_runs_is_a_clear_message():
    at = _app().run()
    assert not at.exception and not at.error
    assert any("No classifier runs yet" in i.value for i in at.info)
    assert _start_button(at, "clf_start") is not None
    assert any("No ablation result yet" in c.value for c in at.caption)


def test_ablation_shows_without_classifier_runs():
    """`python -m core ablation` keeps its runs inside its own folder, so the page may have no
    classifier run to show and still has an ablation to show."""
    abl = RunStore(runs_root() / "20260101-000001-ablation-0000", create=True)
    (abl.path / "ablation.csv").write_text("arm,fraction,accuracy\nreal,0.25,0.81\n")
    at = _app().run()
    assert not at.exception
    assert any("No classifier runs yet" in i.value for i in at.info)
    assert _table(at, "arm")["arm"].tolist() == ["real"]
    assert "clf_abl_run" not in [sb.key for sb in at.selectbox]  # one ablation: nothing to choose

    # A second ablation folder (say, another seed run separately): choose between them.
    other = RunStore(runs_root() / "20260101-000002-ablation-0000", create=True)
    (other.path / "ablation.csv").write_text("arm,fraction,accuracy\naugmentor,0.25,0.9\n")
    at = _app().run()
    assert at.selectbox(key="clf_abl_run").value == other.name  # the newest first
    assert _table(at, "arm")["arm"].tolist() == ["augmentor"]
    at.selectbox(key="clf_abl_run").set_value(abl.name).run()
    assert _table(at, "arm")["arm"].tolist() == ["real"]

    # An ablation that wrote its header but no rows yet: said so, no traceback.
    (other.path / "ablation.csv").write_text("arm,fraction,accuracy\n")
    at = _app().run()
    assert not at.exception
    assert any("has no rows yet" in c.value for c in at.caption)


def test_finished_run_shows_confusion_and_prf(trained_run):
    run = _install(trained_run)
    results = json.loads((run / "eval.json").read_text())
    at = _app().run()
    assert not at.exception and not at.error
    assert any("finished" in s.value for s in at.success)
    # The P/R/F1 table holds the numbers of eval.json's default split (test).
    table = _table(at, "precision")
    per_class = results["test"]["per_class"]
    assert list(table["class"]) == list(per_class)
    for _, row in table.iterrows():
        assert row["recall"] == pytest.approx(100 * per_class[row["class"]]["recall"])  # percent
        assert row["support"] == per_class[row["class"]]["support"]
    # Both confusion heatmaps: counts equal eval.json's matrix, the other rows sum to 1.
    heatmaps = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    heatmaps = [s for s in heatmaps if s["data"] and s["data"][0].get("type") == "heatmap"]
    assert len(heatmaps) == 2
    assert _array(heatmaps[0]["data"][0]["z"]) == results["test"]["confusion"]
    for row, counts in zip(_array(heatmaps[1]["data"][0]["z"]), results["test"]["confusion"]):
        assert sum(row) == pytest.approx(1.0 if sum(counts) else 0.0)
    acc = next(m for m in at.metric if m.label == "Accuracy").value
    assert acc == f"{100 * results['test']['accuracy']:.1f}%"
    # Switching to the validation split shows its numbers.
    at.segmented_control(key="clf_split").set_value("val").run()
    acc = next(m for m in at.metric if m.label == "Accuracy").value
    assert acc == f"{100 * results['val']['accuracy']:.1f}%"
    assert _table(at, "source")["source"].tolist() == ["phantom"]


def test_ablation_summary_by_source(trained_run):
    _install(trained_run)
    abl = RunStore(runs_root() / "20260101-000002-ablation-0000", create=True)
    rows = [{"arm": arm, "fraction": 1.0, "seed": seed, "source": source, "n": n,
             "accuracy": acc + 0.1 * seed, "macro_f1": acc, "covid_sensitivity": sens}
            for seed in (0, 1)
            for arm, acc in (("wgan-gp", 0.8), ("real", 0.6))
            for source, n, sens in (("all", 10, 0.5), ("adults", 4, 0.75))]
    pd.DataFrame(rows).to_csv(abl.path / "ablation.csv", index=False)
    at = _app().run()
    assert not at.exception
    table = _table(at, "arm")
    assert table["arm"].tolist() == ["real", "wgan-gp"]  # in ARMS order, overall rows first
    assert table["accuracy"].tolist() == pytest.approx([65.0, 85.0])  # mean of seeds, in %
    assert table["accuracy sd"].tolist() == pytest.approx([5.0, 5.0])
    assert any(c.proto.id.endswith("-clf_ablation_chart") for c in at.get("plotly_chart"))
    at.selectbox(key="clf_abl_source").set_value("adults").run()
    assert _table(at, "arm")["test images"].tolist() == [4, 4]
    assert _table(at, "arm")["COVID-19 sensitivity"].tolist() == pytest.approx([75.0, 75.0])


def test_ablation_table_is_shown(trained_run):
    _install(trained_run)
    abl = RunStore(runs_root() / "20260101-000001-ablation-0000", create=True)
    (abl.path / "ablation.csv").write_text("arm,fraction,accuracy\nreal,0.25,0.81\naugmentor,0.25,0.86\n")
    at = _app().run()
    assert not at.exception
    table = _table(at, "arm")
    assert table["arm"].tolist() == ["real", "augmentor"]


def test_failed_run_shows_reason_and_log():
    store = RunStore(runs_root() / "20260101-000000-classifier-report-cnn-dead", create=True)
    store.write_header_json({"command": "train-classifier"})
    store.set_status("failed", reason="the validation split is empty")
    store.log_path.write_text("loading...\nTraceback: boom at the end\n")
    at = _app().run()
    assert not at.exception
    assert any("validation split is empty" in e.value for e in at.error)
    assert any("boom at the end" in c.value for c in at.code)


def test_one_class_data_is_refused_plainly(tmp_path):
    from PIL import Image

    for i in range(3):   # a folder of one class, as a one-class ZIP loads on the Data page
        (tmp_path / "COVID-19").mkdir(exist_ok=True)
        Image.fromarray(np.full((24, 24), 40 * i + 20, np.uint8)).save(tmp_path / "COVID-19" / f"{i}.png")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["data_config"] = DataConfig(source=str(tmp_path), size=32)
    at.run()
    assert not at.exception
    assert any("one class (COVID-19): a classifier needs at least two" in e.value for e in at.error)
    assert _start_button(at, "clf_start").disabled


def test_a_failed_run_names_an_upload_as_the_user_knows_it():
    upload = runs_root() / "uploads" / "zip-0123abcd" / "my set"
    upload.mkdir(parents=True)
    store = RunStore(runs_root() / "20260101-000000-classifier-report-cnn-gone", create=True)
    store.write_header_json({"command": "train-classifier"})
    store.set_status("failed", reason=f"No usable images found in {upload}; 2 files skipped")
    at = _app().run()
    assert not at.exception
    shown = [e.value for e in at.error]
    assert any("No usable images found in the uploaded ZIP 'my set'; 2 files" in e for e in shown)
    assert not any("uploads" in e for e in shown), shown


def test_running_run_shows_progress_and_stops():
    store = RunStore(runs_root() / "20260101-000000-classifier-report-cnn-live", create=True)
    store.write_header_json({"command": "train-classifier"})
    store.set_status("running", step=2, total_steps=5, phase="training")  # pid: this process
    for epoch in (1, 2):
        store.log_metrics(epoch, {"train/loss": 1.0 / epoch, "val/loss": 1.1 / epoch,
                                  "train/acc": 0.3 * epoch, "val/acc": 0.25 * epoch})
    at = _app().run()
    assert not at.exception and not at.error
    assert any("still training" in i.value for i in at.info)
    curves = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    val_loss = [t for c in curves for t in c["data"] if t.get("name") == "validation"]
    assert val_loss and _array(val_loss[0]["y"]) == pytest.approx([1.1, 0.55])
    at.button(key="clf_stop").click().run()
    assert store.control().get("stop") is True


def test_start_launches_with_data_and_augmentation(monkeypatch):
    import ui.jobs

    calls = []

    def fake_start(command, args, kind, header=None, request=None):
        calls.append((command, header, kind))
        store = RunStore(runs_root() / "20260101-000000-classifier-resnet-new", create=True)
        store.write_header(header)
        store.set_status("queued")
        return store

    monkeypatch.setattr(ui.jobs, "start", fake_start)
    at = _app()
    at.session_state["augment_config"] = AugmentConfig(rotate_p=0.9, rotate_deg=12.0)
    at.run()
    at.radio(key="clf_arch").set_value("resnet")
    at.toggle(key="clf_augment").set_value(True)
    at.number_input(key="clf_epochs").set_value(3)
    _start_button(at, "clf_start").click().run()
    assert not at.exception and not at.error
    (command, header, kind), = calls
    assert command == "train-classifier" and kind == "classifier-resnet"
    # The page builds the run's configs (as the command line would) into its config.json.
    data, model, train, aug = header.section("data"), header.section("model"), \
        header.section("train"), header.section("augment")
    assert data["source"] == "phantom" and data["size"] == 32 and model["size"] == 32
    assert data["phantom_per_class"] == 12 and model["arch"] == "resnet"
    assert train["epochs"] == 3
    assert aug["rotate_p"] == 0.9 and aug["rotate_deg"] == 12.0
    assert at.session_state["clf_run"] == "20260101-000000-classifier-resnet-new"
    assert os.path.isdir(runs_root() / at.session_state["clf_run"])


def test_the_real_xray_recipe_is_offered(monkeypatch):
    """The recipe toggle launches `--preset cxr` with the chosen data and none of the model
    flags it sets, which it greys out."""
    import ui.jobs

    calls = []
    monkeypatch.setattr(ui.jobs, "start",
                        lambda command, args, kind, header=None, request=None: calls.append((header, kind)))
    at = _app().run()
    at.toggle(key="clf_recipe").set_value(True).run()
    assert at.radio(key="clf_arch").disabled and at.number_input(key="clf_epochs").disabled
    _start_button(at, "clf_start").click().run()
    assert not at.exception
    (header, kind), = calls
    cxr = PRESETS["cxr"]
    assert header.section("data")["source"] == "phantom" and kind == "classifier-cxr"
    assert header.section("model")["arch"] == cxr["model"]["arch"] == "resnet"
    assert header.section("train")["epochs"] == cxr["train"]["epochs"]


@pytest.mark.parametrize("arch,expected", [("report-cnn", "true"), ("resnet", "false")])
def test_batchnorm_option_reaches_the_report_cnn_only(monkeypatch, arch, expected):
    import ui.jobs

    calls = []
    monkeypatch.setattr(ui.jobs, "start",
                        lambda command, args, kind, header=None, request=None: calls.append(header))
    at = _app().run()
    assert at.toggle(key="clf_batchnorm").value is False  # the report's CNN has none
    at.toggle(key="clf_batchnorm").set_value(True).run()
    at.radio(key="clf_arch").set_value(arch).run()  # the ResNet disables the toggle, left on
    assert at.toggle(key="clf_batchnorm").disabled == (arch == "resnet")
    _start_button(at, "clf_start").click().run()
    assert not at.exception
    model = calls[0].section("model")
    assert model["arch"] == arch and model["batchnorm"] == (expected == "true")


def test_a_gan_run_that_saw_held_out_patients_cannot_be_used():
    # A COVID-19 GAN trained on all phantoms (no --data-split train) would carry the classifier's
    # validation and test patients into its training set: refused with the fix, before launch.
    from core.gan.models import Generator, GeneratorConfig, save_generator

    store = RunStore(runs_root() / "20260101-000000-gan-wgan-gp-leak", create=True)
    store.write_header_json({"command": "train-gan"})
    store.set_status("finished")
    cfg = GeneratorConfig(latent_dim=8, size=32, width=0.125)
    data = {"source": "phantom", "phantom_per_class": 12, "classes": ["COVID-19"], "split": ""}
    save_generator(store.checkpoints_dir / "latest.safetensors", Generator(cfg), cfg,
                   {"classes": ["COVID-19"], "loss": "wgan-gp", "step": 1, "data": data})
    at = _app()
    at.run()
    at.selectbox(key="clf_syn_COVID-19").set_value(store.name).run()
    assert not at.exception
    assert any("trained on all of phantom" in e.value and "--data-split train" in e.value
               for e in at.error)
    assert _start_button(at, "clf_start").disabled
    # The pick survives a visit to another page (the whole app, as in a browser), and a run
    # deleted meanwhile falls back to "(none)" instead of an error.
    app = str(REPO / "streamlit_app.py")
    at = AppTest.from_string(f"import runpy\nrunpy.run_path({app!r}, run_name='__main__')\n",
                             default_timeout=60)
    at.session_state["data_config"] = DataConfig(source="phantom", size=32, phantom_per_class=12)
    at.switch_page(PAGE).run()
    at.selectbox(key="clf_syn_COVID-19").set_value(store.name).run()
    at.switch_page(str(REPO / "pages" / "runs.py")).run()
    at.switch_page(PAGE).run()
    assert not at.exception and at.selectbox(key="clf_syn_COVID-19").value == store.name
    at.switch_page(str(REPO / "pages" / "runs.py")).run()
    shutil.copytree(store.path, store.path.with_name(store.name + "-copy"))  # still offered
    shutil.rmtree(store.path)
    at.switch_page(PAGE).run()
    assert not at.exception and at.selectbox(key="clf_syn_COVID-19").value == "(none)"


def test_a_gan_run_of_another_size_says_its_samples_are_resized():
    from core.gan.models import Generator, GeneratorConfig, save_generator

    store = RunStore(runs_root() / "20260101-000000-gan-wgan-gp-small", create=True)
    store.write_header_json({"command": "train-gan"})
    store.set_status("finished")
    cfg = GeneratorConfig(latent_dim=8, size=16, width=0.125)
    data = {"source": "phantom", "phantom_per_class": 12, "classes": ["COVID-19"], "split": "train",
            "split_val_fraction": 0.15, "split_test_fraction": 0.15, "split_seed": 0}
    save_generator(store.checkpoints_dir / "latest.safetensors", Generator(cfg), cfg,
                   {"classes": ["COVID-19"], "loss": "wgan-gp", "step": 1, "data": data})
    at = _app().run()
    assert not any("resized" in c.value for c in at.caption)
    at.selectbox(key="clf_syn_COVID-19").set_value(store.name).run()
    assert not at.exception and not at.error
    assert any("Generated at 16 px, resized to the data's 32 px" in c.value for c in at.caption)


def _blocks(node):
    """Every layout block under `node`, depth first."""
    for child in getattr(node, "children", {}).values():
        if type(child).__name__ == "Block":
            yield child
            yield from _blocks(child)


def test_evaluation_fits_a_narrow_window(trained_run):
    """At 1024 px five equal metric columns cut "COVID-19 sensitivity" and the ECE delta, and the
    half-width heatmap cut "Row-normalised (recall on the diagonal)": the metrics sit in one
    wrapping row, each as wide as it needs, and the heatmap's title is short."""
    _install(trained_run)
    at = _app().run()
    assert not at.exception
    rows = [b for b in _blocks(at.main)
            if any(type(c).__name__ == "Metric" for c in b.children.values())]
    assert len(rows) == 1
    row = rows[0]
    assert row.proto.flex_container.wrap and len(row.children) == 5   # no column per metric
    assert "COVID-19 sensitivity" in [m.label for m in at.metric]
    titles = [json.loads(el.proto.spec)["layout"]["title"]["text"] for el in at.get("plotly_chart")
              if el.proto.id.endswith(("-clf_cm_counts", "-clf_cm_norm", "-clf_roc"))]
    assert titles[:2] == ["Counts", "Row-normalised"] and max(len(t) for t in titles) <= 26
    assert any("diagonal holds each class's recall" in c.value for c in at.caption)
    roc = next(json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.proto.id.endswith("-clf_roc"))
    assert roc["layout"]["legend"]["x"] > 0.5 and roc["layout"]["legend"]["y"] < 0.5  # in the plot


def test_an_ablation_is_started_from_the_page(monkeypatch):
    """The ablation is offered in the browser (not as a command to copy): the form queues
    `ablation` with the Data page's data, the chosen shares, arms, epochs and seeds."""
    import ui.jobs

    calls = []

    def fake_start(command, args, kind, header=None, request=None):
        calls.append((command, header, kind))
        store = RunStore(runs_root() / "261203-0000-ablation-1", create=True)
        store.set_status("queued", command=["ablation"])
        return store

    monkeypatch.setattr(ui.jobs, "start", fake_start)
    at = _app()
    at.run()
    at.multiselect(key="abl_fractions").set_value([0.5, 1.0])
    at.multiselect(key="abl_arms").set_value(["real", "augmentor"])
    at.number_input(key="abl_epochs").set_value(2)
    _start_button(at, "abl_start").click().run()
    assert not at.exception and not at.error
    (command, header, kind), = calls
    abl = header.section("ablation")
    assert command == "ablation" and kind == "ablation"
    assert header.section("data")["source"] == "phantom" and header.section("model")["size"] == 32
    assert abl["fractions"] == [0.5, 1.0] and abl["arms"] == ["real", "augmentor"]
    assert header.section("train")["epochs"] == 2 and abl["seeds"] == [0] and abl["runs"] == []
