"""Samples page under AppTest, on a tiny generator checkpoint written with core.gan.models: the fixed-z
progression, a generated grid that follows the seed, slerp interpolation, downloads, and export as
a class-folder dataset."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest

from core.runs.store import RunStore, runs_root

models = pytest.importorskip("core.gan.models", reason="core.gan.models (the generator) is not there yet")

PAGE = str(REPO / "pages" / "samples.py")


def _gan_run(name: str = "20260101-000000-gan-wgan-gp-aaaa") -> RunStore:
    store = RunStore(runs_root() / name, create=True)
    store.write_header_json({"kind": "gan", "train": {"loss": "wgan-gp"}})
    store.set_status("finished", step=20, total_steps=20, command=["train-gan"])
    for step, value in ((0, 30), (10, 120), (20, 200)):  # fixed-z grids, distinguishable
        Image.fromarray(np.full((40, 40), value, np.uint8)).save(store.sample_path(step))
    config = models.GeneratorConfig(latent_dim=8, size=16, width=0.125)
    models.save_generator(store.checkpoints_dir / "latest.safetensors", models.Generator(config),
                          config, {"step": 20, "loss": "wgan-gp", "classes": ["COVID-19"]})
    store.close()
    return store


def _urls(at: AppTest, caption_part: str) -> list[str]:
    return [im.proto.imgs[0].url for im in at.get("image") if caption_part in im.proto.imgs[0].caption]


def test_samples_page_end_to_end():
    store = _gan_run()
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("trained on: COVID-19" in c.value and "16x16" in c.value for c in at.caption)

    # The progression slider walks the saved fixed-z grids.
    last = _urls(at, "Fixed-z samples at step 20")
    at.select_slider(key="samples_step").set_value(0).run()
    first = _urls(at, "Fixed-z samples at step 0")
    assert last and first and last != first

    # The generated grid follows the seed; the interpolation is drawn.
    grid0 = _urls(at, "32 samples, seed 0")
    at.number_input(key="samples_seed").set_value(7).run()
    grid7 = _urls(at, "32 samples, seed 7")
    assert grid0 and grid7 and grid0 != grid7
    assert _urls(at, "slerp")
    assert len(at.get("download_button")) == 1          # the grid's PNG; the ZIP is made on demand
    assert at.get("download_button")[0].proto.label == "PNG of the grid"   # whole at 1024 px
    assert any("press **Make a ZIP**: the download button" in c.value for c in at.caption)

    # The ZIP holds the count typed in its form, offered only for the settings it was made with.
    at.number_input(key="samples_zip_n").set_value(6)
    at.button(key="samples_zip_make").click().run()
    assert not at.exception and not at.error
    downloads = at.get("download_button")
    assert len(downloads) == 2 and downloads[1].proto.label == "Download 6"
    with zipfile.ZipFile(io.BytesIO(at.session_state["samples_zip"][1])) as zf:
        assert len(zf.namelist()) == 6
    # A count typed but not sent with Make a ZIP changes nothing, and the page says so.
    at.number_input(key="samples_zip_n").set_value(9)
    at.run()
    assert at.get("download_button")[1].proto.label == "Download 6"
    assert any("holds the 6 samples made last" in c.value and "press **Make a ZIP** again" in c.value
               for c in at.caption)
    at.number_input(key="samples_seed").set_value(8).run()
    assert len(at.get("download_button")) == 1          # another seed: make it again

    # Export N samples as a dataset the classifier can read.
    at.number_input(key="samples_export_n").set_value(5).run()
    at.selectbox(key="samples_export_class").set_value("COVID-19").run()
    at.button(key="samples_export").click().run()
    assert not at.exception and not at.error
    exported = list((runs_root() / "exports").glob(f"{store.name}-*/COVID-19/*.png"))
    assert len(exported) == 5
    assert Image.open(exported[0]).size == (16, 16)
    assert any("Wrote 5 images" in s.value for s in at.success)


def test_no_gan_runs():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No GAN run" in i.value for i in at.info)
    shipped = REPO / "checkpoints" / "generator-cxr-covid.safetensors"
    # A fresh clone shows the shipped generator's samples at once, labelled as synthetic.
    captions = [im.proto.imgs[0].caption for im in at.get("image")]
    assert any("Synthetic chest X-rays, not patients" in c for c in captions) == shipped.is_file()


def test_corrupt_checkpoint_is_a_clear_error():
    store = _gan_run()
    (store.checkpoints_dir / "latest.safetensors").write_bytes(b"not a checkpoint")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("latest.safetensors" in e.value for e in at.error)


def test_zip_download_holds_n_pngs():
    # What the "ZIP of N samples" button builds when clicked (AppTest does not click downloads).
    import io
    import zipfile

    from ui.images import latents, sample_u8, zip_of_pngs

    config = models.GeneratorConfig(latent_dim=8, size=16, width=0.125)
    images = sample_u8(models.Generator(config).eval(), latents(3, 300, 8), batch=128)
    assert images.shape == (300, 16, 16) and images.dtype == np.uint8 and images.std() > 0
    with zipfile.ZipFile(io.BytesIO(zip_of_pngs(images, prefix="COVID-19"))) as zf:
        names = zf.namelist()
        assert len(names) == 300 and names[0] == "COVID-19_0000.png"
        assert np.array_equal(np.asarray(Image.open(zf.open(names[299]))), images[299])


def test_follows_the_run_picked_on_train_gan_and_says_when_it_is_live():
    old = _gan_run("20260101-000000-gan-wgan-gp-aaaa")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["gan_run"] = old.name
    at.run()
    assert at.selectbox(key="samples_run_pick").value == old.name
    assert any("WGAN-GP generator at step 20" in c.value for c in at.caption)
    # A new run started on Train GAN (session state gan_run) is shown on the next visit ...
    new = _gan_run("20260101-000001-gan-wgan-gp-bbbb")
    RunStore(new.path).set_status("running", step=5, total_steps=20)  # pid: this process, alive
    at.session_state["gan_run"] = new.name
    at.run()
    assert not at.exception and at.selectbox(key="samples_run_pick").value == new.name
    assert any("still training" in i.value for i in at.info)
    # ... while a run picked here afterwards stays picked.
    at.selectbox(key="samples_run_pick").set_value(old.name).run()
    at.run()
    assert at.selectbox(key="samples_run_pick").value == old.name
    assert not any("still training" in i.value for i in at.info)


def test_nearest_training_images_of_a_real_run():
    import argparse

    import torch

    from core.gan import job as gt

    parser = argparse.ArgumentParser()
    gt.add_arguments(parser)
    torch.set_num_threads(1)
    run = runs_root() / "20260101-000002-gan-wgan-gp-cccc"
    assert gt.main(parser.parse_args([
        "--data", "phantom:7", "--size", "32", "--steps", "2", "--batch-size", "4", "--n-critic", "1",
        "--gen-filters", "8", "--gen-latent-dim", "8", "--critic-filters", "4,8", "--holdout", "0.4",
        "--checkpoint-every", "2", "--n-samples", "4", "--run-dir", str(run)])) == 0
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["gan_run"] = run.name
    at.run()
    at.slider(key="samples_n").set_value(8).run()
    at.button(key="samples_nn").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    assert labels == ["Samples, median distance", "Unseen real, median", "Nearer than real"]
    assert at.metric[2].value.endswith("of 8")
    assert _urls(at, "Top: the samples nearest to a training image")
    # Another seed shows other samples: their search is made again on request.
    at.number_input(key="samples_seed").set_value(3).run()
    assert not at.metric and not _urls(at, "Top: the samples nearest")


def test_nearest_training_images_need_the_runs_config():
    _gan_run()                    # written without its data config
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key="samples_nn").click().run()
    assert not at.exception
    assert any("no GAN training config" in e.value for e in at.error)
