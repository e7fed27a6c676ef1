"""core/studies/ablation.py: the arm x fraction wiring on a tiny config (phantoms, 1 epoch), GAN samples
only in their arm, a missing arm skipped clearly, run specs parsed, and the CLI table."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from conftest import saved_generator
from core import __main__ as cli
from core.studies.ablation import markdown, parse_runs, run_ablation, summarise
from core.classify.model import ClassifierConfig
from core.classify.config import ClassifierTrainConfig
from core.classify.synthetic import synthetic_fraction
from core.classify.train import train_classifier
from core.config import to_dict
from core.data.config import DataConfig
from core.errors import UserError
from core.gan.models import Generator, GeneratorConfig, save_generator
from core.runs.store import RunStore


@pytest.fixture
def wgan_gp_run(tmp_path):
    return saved_generator(tmp_path / "covid-wgan-gp",
                           {"classes": ["COVID-19"], "loss": "wgan-gp", "step": 1})


def _run_on(tmp_path, name, **data):
    """A tiny WGAN-GP run whose checkpoint says it was trained on phantom:10 with `data`."""
    cfg = GeneratorConfig(latent_dim=8, size=32, width=0.125)
    run = tmp_path / name
    data_config = DataConfig(source="phantom:10", size=32, classes=("COVID-19",), **data)
    save_generator(run / "checkpoints" / "latest.safetensors", Generator(cfg), cfg,
                   {"classes": ["COVID-19"], "loss": "wgan-gp", "step": 1,
                    "data": to_dict(data_config)})
    return str(run)


def test_gan_runs_feed_only_the_fraction_they_were_trained_on(tmp_path):
    half = _run_on(tmp_path, "half", split="train", split_train_fraction=0.5)
    out = tmp_path / "abl"
    result = run_ablation(DataConfig(source="phantom:10", size=32), ClassifierConfig(width=0.25),
                          ClassifierTrainConfig(epochs=1, batch_size=8), out,
                          fractions=(0.5, 1.0), runs={"wgan-gp": [half]}, arms=("wgan-gp",),
                          synthetic_per_class=4)
    assert [(r["fraction"], r["n_synthetic"]) for r in result["rows"] if r["source"] == "all"] \
        == [(0.5, 4)]
    assert result["skipped"]["wgan-gp at 1"].endswith("(train one with --data-split train)")


@pytest.mark.parametrize("data, message", [
    ({}, "trained on all of phantom:10"),                                   # no split at all
    ({"split": "train", "split_seed": 3}, "another patient split"),
    ({"split": "train", "split_train_fraction": 1.0}, "more than the 0.5"),  # used at 0.5
    ({"split": "train", "keep_extra_classes": True}, "loaded phantom:10 differently"),
])
def test_classifier_refuses_gan_runs_that_saw_held_out_patients(tmp_path, data, message):
    run = _run_on(tmp_path, "leaky", **data)
    tc = ClassifierTrainConfig(train_fraction=0.5)
    with pytest.raises(UserError, match=message):
        synthetic_fraction(f"COVID-19={run}", DataConfig(source="phantom:10", size=32), tc)
    # Another source cannot carry these patients; the right split is accepted.
    assert synthetic_fraction(run, DataConfig(source=str(tmp_path), size=32), tc) is None
    ok = _run_on(tmp_path, "ok", split="train", split_train_fraction=0.5)
    assert synthetic_fraction(ok, DataConfig(source="phantom:10", size=32), tc) == 0.5
    # "phantom" with 10 per class loads what "phantom:10" loads; 12 per class would not.
    same = DataConfig(source="phantom", phantom_per_class=10, size=32)
    assert synthetic_fraction(ok, same, tc) == 0.5
    with pytest.raises(UserError, match="images per class 10 .here 12."):
        synthetic_fraction(ok, DataConfig(source="phantom:12", size=32), tc)
    # train_classifier checks before it loads or trains anything.
    with pytest.raises(UserError, match=message):
        train_classifier(RunStore(tmp_path / "clf", create=True),
                         DataConfig(source="phantom:10", size=32), ClassifierConfig(width=0.25),
                         replace(tc, synthetic_runs=(run,), synthetic_per_class=2))


def test_parse_runs(wgan_gp_run):
    assert parse_runs([str(wgan_gp_run)]) == {"wgan-gp": [str(wgan_gp_run)]}  # arm from its meta
    assert parse_runs([f"wgan:COVID-19={wgan_gp_run}"]) == {"wgan": [f"COVID-19={wgan_gp_run}"]}
    assert parse_runs([f"wgan-clip:{wgan_gp_run}"]) == {"wgan": [str(wgan_gp_run)]}   # its old name
    with pytest.raises(UserError):
        parse_runs([f"augmentor:{wgan_gp_run}"])


def test_tiny_ablation(tmp_path, wgan_gp_run):
    out = tmp_path / "abl"
    result = run_ablation(DataConfig(source="phantom:10", size=32), ClassifierConfig(width=0.25),
                          ClassifierTrainConfig(epochs=1, batch_size=8), out,
                          fractions=(0.5, 1.0), seeds=(0,),
                          runs={"wgan-gp": [str(wgan_gp_run)]},
                          arms=("real", "augmentor", "wgan-gp", "gan"), synthetic_per_class=6)
    table = pd.read_csv(out / "ablation.csv")
    overall = table[table.source == "all"]
    assert sorted(set(overall.arm)) == ["augmentor", "real", "wgan-gp"]
    assert len(overall) == 3 * 2  # arms x fractions
    assert set(result["skipped"]) == {"gan"}
    assert overall[overall.arm == "wgan-gp"].n_synthetic.eq(6).all()
    assert overall[overall.arm == "real"].n_synthetic.eq(0).all()
    assert overall[overall.arm == "augmentor"].n_augmented.gt(0).all()
    # Same split and patients across arms at one fraction; fewer patients at 0.5.
    for _, g in overall.groupby("fraction"):
        assert g.n_train.nunique() == 1 and g.n.nunique() == 1
    assert overall[overall.fraction == 0.5].n_train.max() < overall[overall.fraction == 1.0].n_train.min()
    assert overall.accuracy.between(0, 1).all()
    md = (out / "ablation.md").read_text()
    assert "| real | 0.5 | all |" in md and "gan: skipped" in md
    assert json.loads((out / "ablation.json").read_text())["skipped"]["gan"]


def test_markdown_spread_over_seeds():
    table = pd.DataFrame([{"arm": "real", "fraction": 1.0, "source": "all", "n": 10,
                           "accuracy": a, "macro_f1": a, "covid_sensitivity": None}
                          for a in (0.8, 1.0)])
    md = markdown(table)
    assert "90.0% ± 10.0" in md and "n/a" in md


def test_summarise_orders_and_averages_over_seeds():
    table = pd.DataFrame([{"arm": arm, "fraction": f, "seed": seed, "source": src, "n": 5,
                           "accuracy": 0.5 + 0.1 * seed, "macro_f1": 0.7,
                           "covid_sensitivity": None if src == "kids" else 1.0}
                          for f in (1.0, 0.25) for arm in ("gan", "real") for seed in (0, 1)
                          for src in ("kids", "all")])
    s = summarise(table)
    assert list(zip(s.fraction, s.arm, s.source))[:4] == [
        (0.25, "real", "all"), (0.25, "real", "kids"), (0.25, "gan", "all"), (0.25, "gan", "kids")]
    assert len(s) == 8 and s.seeds.eq(2).all()
    assert s.accuracy.tolist() == pytest.approx([0.55] * 8)
    assert s.accuracy_sd.tolist() == pytest.approx([0.05] * 8)
    assert s[s.source == "kids"].covid_sensitivity.isna().all()
    assert s.macro_f1_sd.eq(0).all()
    empty = summarise(table.iloc[:0])
    assert list(empty.columns)[:5] == ["fraction", "arm", "source", "seeds", "n"]


def test_cli_rejects_unknown_arm(tmp_path):
    assert cli.main(["ablation", "--data", "phantom:4", "--arms", "mixup",
                     "--out", str(tmp_path / "x")]) == 2


def test_a_gan_trained_on_a_filtered_copy_of_a_folder_is_not_matched_to_the_whole_folder(tmp_path):
    """The patient split is drawn over what DataConfig.where kept, so a GAN trained on a
    filtered folder was split differently from a classifier on all of it."""
    from conftest import metadata_tree

    folder = metadata_tree(tmp_path / "data", 12, source=lambda i: "a" if i < 6 else "b")
    cfg = GeneratorConfig(latent_dim=8, size=32, width=0.125)
    filtered = DataConfig(source=str(folder), size=32, classes=("COVID-19",), split="train",
                          where=("source=a",))
    save_generator(tmp_path / "gan" / "checkpoints" / "latest.safetensors", Generator(cfg), cfg,
                   {"classes": ["COVID-19"], "loss": "wgan-gp", "step": 1,
                    "data": to_dict(filtered)})
    tc = ClassifierTrainConfig()
    with pytest.raises(UserError, match="differently"):
        synthetic_fraction(str(tmp_path / "gan"), DataConfig(source=str(folder), size=32), tc)
    same = DataConfig(source=str(folder), size=32, where=("source=a",))
    assert synthetic_fraction(str(tmp_path / "gan"), same, tc) == 1.0


def test_the_ablation_command_keeps_a_run_directory_status(tmp_path):
    """Queued from a page, an ablation gets --run-dir like every job, and its folder's status
    says where it is and that it finished, so the queue and the pages follow it."""
    from core.runs.store import RunStore

    out = tmp_path / "abl"
    assert cli.main(["ablation", "--data", "phantom:6", "--size", "32", "--width", "0.25",
                     "--epochs", "1", "--batch-size", "8", "--arms", "real",
                     "--fractions", "1.0", "--run-dir", str(out)]) == 0
    status = RunStore(out).status()
    assert status["state"] == "finished" and status["step"] == 100
    header = RunStore(out).header()
    assert header.command == "ablation" and header.section("ablation")["seeds"]
    assert (out / "ablation.csv").is_file()
    assert cli.main(["ablation", "--data", "phantom:6", "--arms", "mixup",
                     "--run-dir", str(tmp_path / "bad")]) == 2
    assert RunStore(tmp_path / "bad").status()["state"] == "failed"


def test_an_ablation_starts_from_the_config_json_a_page_wrote(tmp_path):
    from core.studies.ablation import AblationConfig, header
    from core.classify.train import build_configs
    from core.runs.store import RunStore

    configs = build_configs(None, {"data": {"source": "phantom:6", "size": 32},
                                   "model": {"width": 0.25},
                                   "train": {"epochs": 1, "batch_size": 8}})
    store = RunStore(tmp_path / "abl", create=True)
    store.write_header(header(*configs, AblationConfig(fractions=(1.0,), arms=("real",))))
    assert cli.main(["ablation", "--from-config", "--run-dir", str(store.path)]) == 0
    assert store.status()["state"] == "finished" and (store.path / "ablation.csv").is_file()
    assert store.header().section("ablation")["arms"] == ["real"]
    assert cli.main(["ablation", "--from-config", "--run-dir", str(store.path), "--seeds", "1"]) == 2
    assert cli.main(["ablation", "--run-dir", str(tmp_path / "x")]) == 2    # no --data
