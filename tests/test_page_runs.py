"""Runs page under AppTest: the table lists every run, the comparison chart draws the chosen
metric for each chosen run, a finished run can be deleted after confirming, an active one not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest

from core.runs.store import RunStore, runs_root

PAGE = str(REPO / "pages" / "runs.py")


def _fake_run(name: str, state: str, w: float) -> RunStore:
    store = RunStore(runs_root() / name, create=True)
    store.write_header_json({"kind": "gan", "data": {"source": "phantom", "size": 32},
                        "critic": {"size": 32}, "train": {"loss": "wgan-gp", "steps": 3}})
    store.set_status(state, step=3, total_steps=3, command=["train-gan"])
    for step in (1, 2, 3):
        store.log_metrics(step, {"wgan/w_estimate": w * step, "loss/critic": -w})
    store.close()
    return store


def test_table_compare_and_delete():
    done = _fake_run("20260101-000001-gan-wgan-gp-aaaa", "finished", 1.0)
    live = _fake_run("20260101-000002-gan-wgan-gp-bbbb", "running", 2.0)  # pid = this process
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table["run"]) == {done.name, live.name}
    assert dict(zip(table["run"], table["state"])) == {done.name: "finished",
                                                       live.name: "running · 100%"}
    assert list(table.loc[table["run"] == done.name, "size"]) == [32]   # data.size, not critic.size
    assert list(table.loc[table["run"] == done.name, "result"]) == ["W 3.000"]  # the last logged

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in spec["data"]} == {done.name, live.name}
    assert spec["layout"]["title"]["text"] == "Wasserstein estimate (wgan/w_estimate)"
    at.selectbox(key="runs_metric").set_value("loss/critic").run()
    title = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]
    assert title == "Critic loss (loss/critic)"
    # A metric only one run logged: the other is named, not silently left out.
    RunStore(done.path).log_metrics(3, {"heldout/gap": 0.5})
    RunStore(done.path).set_status("finished", step=3, total_steps=3, command=["train-gan"])  # new stamp
    at.run()
    at.selectbox(key="runs_metric").set_value("heldout/gap").run()
    assert any(c.value == f"Not logged by {live.name}." for c in at.caption)

    # An active run is refused, with its state in the message.
    at.selectbox(key="runs_delete_pick").set_value(live.name).run()
    at.checkbox(key="runs_delete_confirm").check().run()
    at.button(key="runs_delete_go").click().run()
    assert any("still running" in e.value for e in at.error)
    assert live.path.exists()

    # The finished one goes, and leaves the comparison.
    at.selectbox(key="runs_delete_pick").set_value(done.name).run()
    at.checkbox(key="runs_delete_confirm").check().run()
    at.button(key="runs_delete_go").click().run()
    assert not at.exception
    assert not done.path.exists()
    assert any(done.name in s.value for s in at.success)
    assert at.checkbox(key="runs_delete_confirm").value is False  # unticked for the next one
    assert set(at.dataframe[0].value["run"]) == {live.name}
    assert at.multiselect(key="runs_compare").value == [live.name]


def test_delete_needs_confirmation():
    done = _fake_run("20260101-000001-gan-wgan-gp-cccc", "finished", 1.0)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert at.button(key="runs_delete_go").disabled   # until the box is ticked
    # Its label whole in the narrow column at 1024 px ("Yes, delete this run per…" was cut).
    assert at.checkbox(key="runs_delete_confirm").label == "Yes, delete it permanently"
    at.checkbox(key="runs_delete_confirm").check().run()
    assert not at.button(key="runs_delete_go").disabled
    assert done.path.exists()


def test_no_runs_yet():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)


def test_classifier_runs_from_the_command_line_and_once_logged_metrics():
    """A train-classifier run started from a terminal is named as such, and a metric it logs once
    (test/accuracy, at its best epoch) is drawn as a bar per run: a one-point line is invisible."""
    stores = []
    for name, acc in (("20260101-000003-classifier-a", 0.9), ("20260101-000004-classifier-b", 0.8)):
        store = RunStore(runs_root() / name, create=True)
        store.write_header_json({"command": "train-classifier", "data": {"source": "phantom"}})
        store.set_status("finished", step=2, total_steps=2)
        store.log_metrics(1, {"val/loss": 1.0})
        store.log_metrics(2, {"val/loss": 0.5, "test/accuracy": acc})
        store.close()
        stores.append(store)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert set(at.dataframe[0].value["model"]) == {"classifier"}    # no arch in this config: the job
    at.selectbox(key="runs_metric").set_value("test/accuracy").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["type"] for t in spec["data"]] == ["bar"]
    assert dict(zip(spec["data"][0]["x"], spec["data"][0]["y"])) == {
        stores[0].name: 0.9, stores[1].name: 0.8}
    bars = dict(zip(spec["data"][0]["x"], spec["data"][0]["text"]))  # a rate: in percent
    assert bars == {stores[0].name: "90.0%", stores[1].name: "80.0%"}
    at.selectbox(key="runs_metric").set_value("val/loss").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["type"] for t in spec["data"]} == {"scatter"}
    assert all(t["mode"] == "lines+markers" for t in spec["data"])


def test_a_classifier_row_says_what_it_also_trained_on_and_its_test_accuracy():
    store = RunStore(runs_root() / "20260101-000003-classifier-report-cnn-cccc", create=True)
    store.write_header_json({"command": "train-classifier", "data": {"source": "phantom", "size": 64},
                        "augment": {"rotate_p": 0.5}, "model": {"arch": "report-cnn"},
                        "train": {"synthetic_runs": ["COVID-19=/runs/x"]}})
    store.set_status("finished", step=2, total_steps=2, command=["train-classifier"])
    store.log_metrics(2, {"test/accuracy": 0.891})
    store.close()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    row = at.dataframe[0].value.iloc[0]
    assert (row["extras"], row["result"], row["model"]) == ("GAN + Aug", "89.1%", "report-cnn")


def test_the_table_is_short_and_the_expander_has_the_full_device_and_data():
    """At 1280 px the grid has 818 px: the device as "H100" or "CPU ×2", a folder by its name,
    the three classes as "all", progress in percent; the full device name is in the expander."""
    gpu = RunStore(runs_root() / "261122-2341-gan-wgan-gp-2", create=True)
    gpu.write_header_json({"kind": "gan", "data": {"source": "/data/sets/cxr-real", "size": 128,
                                              "classes": ["COVID-19", "NORMAL", "PNEUMONIA"]},
                      "train": {"loss": "wgan-gp"}})
    gpu.set_status("running", step=1234, total_steps=20000, command=["train-gan"],
                   device="NVIDIA H100 80GB HBM3 (cuda)", world_size=2)
    cpu = RunStore(runs_root() / "261122-2300-classifier-resnet-1", create=True)
    cpu.write_header_json({"command": "train-classifier", "data": {"source": "phantom:300", "size": 64},
                      "model": {"arch": "resnet"}})
    cpu.set_status("finished", step=2, total_steps=2, command=["train-classifier"],
                   device="CPU (2 threads)")
    for store in (gpu, cpu):
        store.close()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[gpu.name, ["state", "data", "classes", "device"]].tolist() == [
        "running · 6%", "cxr-real", "all", "2× H100"]
    assert table.loc[cpu.name, ["data", "device"]].tolist() == ["phantoms", "CPU ×2"]
    assert max(len(str(v)) for v in table.drop(columns="run", errors="ignore").to_numpy().ravel()) <= 15

    at.selectbox(key="runs_config_pick").set_value(gpu.name).run()
    assert "Device: NVIDIA H100 80GB HBM3 (cuda)" in [c.value for c in at.caption]
    assert any("/data/sets/cxr-real" in j.value for j in at.json)


def test_default_comparison_keeps_to_the_newest_runs_kind():
    """A classifier run between GAN runs is not put into the GAN runs' W-estimate chart."""
    old = _fake_run("20260101-000001-gan-wgan-gp-old", "finished", 1.0)
    clf = RunStore(runs_root() / "20260101-000002-classifier-cnn", create=True)
    clf.write_header_json({"command": "train-classifier"})
    clf.set_status("finished", step=2, total_steps=2, command=["train-classifier"])
    clf.log_metrics(2, {"val/acc": 0.9})
    new = _fake_run("20260101-000003-gan-wgan-gp-new", "finished", 2.0)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.multiselect(key="runs_compare").value == [new.name, old.name]
    assert not any(c.value.startswith("Not logged by") for c in at.caption)
    from ui.plots import metric_label

    assert metric_label("d/fake_mean") == "Critic score, generated images (d/fake_mean)"
