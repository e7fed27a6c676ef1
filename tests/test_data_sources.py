"""core.data.sources: every source layout loads with the right classes, patients and metadata; bad files
are skipped with reasons; the data split options pick the classifier's patients; data-info runs."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import huge_png_header
from core import CLASSES
from core.data.config import DataConfig
from core.data.dataset import ImageDataset
from core.data.sources import describe, finding_class, load_dataset
from core.errors import UserError
from core.data.splits import split_by_patient, subsample_patients


def _img(path: Path, value: int = 128, size=(20, 16), mode="L") -> Path:
    """A small image whose mean encodes `value`, so tests can tell files apart after loading."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(size[::-1], value, np.uint8)
    arr[0, 0] = 255 - value  # not constant, like a real image
    im = Image.fromarray(arr)
    im = im.convert(mode) if mode != "L" else im
    im.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else im.save(path)
    return path


def _cfg(source, **kw) -> DataConfig:
    return DataConfig(source=str(source), size=kw.pop("size", 16), **kw)


# --- class-folder trees ----------------------------------------------------------------------

def test_class_folders_alias_mapping_and_canonical_order(tmp_path):
    for name, n in [("viral pneumonia", 3), ("Normal", 2), ("covid19", 1)]:
        for i in range(n):
            _img(tmp_path / name / f"{i}.png", 10 * i + 40)
    ds = load_dataset(_cfg(tmp_path))
    assert ds.classes == ["COVID-19", "NORMAL", "PNEUMONIA"]
    assert ds.class_counts() == {"COVID-19": 1, "NORMAL": 2, "PNEUMONIA": 3}
    assert ds.images.shape == (6, 1, 16, 16) and ds.images.dtype == np.uint8
    i = [m["file"] for m in ds.metas].index("covid19/0.png")
    x, y, meta = ds[i]
    assert x.shape == (1, 16, 16) and -1 <= float(x.min()) and float(x.max()) <= 1
    assert y == 0 and meta["source"] == "folder"
    assert meta["orig_shape"] == [16, 20]


def test_kaggle_radiography_layout_masks_and_extra_classes(tmp_path):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for cls in ("COVID", "Normal", "Viral Pneumonia", "Lung_Opacity"):
        for i in range(2):
            _img(root / cls / "images" / f"{cls}-{i}.png", 60 + i)
            _img(root / cls / "masks" / f"{cls}-{i}.png", 255)
    (root / "COVID.metadata.xlsx").write_bytes(b"PK\x03\x04 not really excel")
    ds = load_dataset(_cfg(tmp_path))
    assert ds.classes == list(CLASSES)
    assert ds.class_counts() == {"COVID-19": 2, "NORMAL": 2, "PNEUMONIA": 2}
    assert all("masks" not in m["file"] for m in ds.metas)
    reasons = " | ".join(r for _, r in ds.skipped)
    assert "8 segmentation masks ignored" in reasons
    assert "Lung_Opacity" in reasons and ".xlsx" in reasons
    kept = load_dataset(_cfg(tmp_path, keep_extra_classes=True))
    assert kept.classes == ["COVID-19", "NORMAL", "PNEUMONIA", "Lung_Opacity"]
    assert kept.class_counts()["Lung_Opacity"] == 2


def test_kermany_train_test_val_layout_with_patients(tmp_path):
    root = tmp_path / "chest_xray"
    files = {"train": ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg",
                       "person2_virus_3.jpeg"],
             "test": ["person3_virus_9.jpeg"], "val": ["person4_bacteria_10.jpeg"]}
    for split, names in files.items():
        for name in names:
            _img(root / split / "PNEUMONIA" / name, 90, mode="RGB")
        _img(root / split / "NORMAL" / f"IM-01{len(split)}5-0001.jpeg", 70, mode="RGB")
    ds = load_dataset(_cfg(tmp_path))
    assert ds.class_counts() == {"NORMAL": 3, "PNEUMONIA": 5}
    by_file = {Path(m["file"]).name: m for m in ds.metas}
    assert (by_file["person1_bacteria_1.jpeg"]["patient"]
            == by_file["person1_bacteria_2.jpeg"]["patient"] == "kermany:person1")
    assert by_file["person2_virus_3.jpeg"]["patient"] == "kermany:person2"
    assert by_file["person3_virus_9.jpeg"]["split"] == "test"
    assert len(set(ds.patients)) == 7  # person1 twice; the three IM-0xx5 differ by split length


def test_covid_chestxray_metadata_layout(tmp_path):
    rows = [  # patientid, finding, view, modality, filename, exists
        ("1", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "a.jpg", True),
        ("1", "Pneumonia/Viral/COVID-19", "AP Supine", "X-ray", "b.png", True),
        ("2", "No Finding", "AP", "X-ray", "c.png", True),
        ("3", "Pneumonia/Bacterial/Streptococcus", "PA", "X-ray", "d.png", True),
        ("4", "SARS", "PA", "X-ray", "e.png", True),
        ("5", "Pneumonia/Viral/COVID-19", "L", "X-ray", "f.png", True),
        ("6", "Pneumonia/Viral/COVID-19", "Axial", "CT", "g.png", True),
        ("7", "Tuberculosis", "PA", "X-ray", "h.png", True),
        ("8", "COVID-19", "PA", "X-ray", "missing.png", False),
    ]
    lines = ["patientid,offset,sex,age,finding,view,modality,folder,filename,license"]
    for pid, finding, view, mod, fname, exists in rows:
        lines.append(f"{pid},0,M,50,{finding},{view},{mod},images,{fname},CC BY")
        if exists:
            _img(tmp_path / "images" / fname, 100, mode="RGB" if fname.endswith("jpg") else "L")
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(_cfg(tmp_path))
    assert ds.class_counts() == {"COVID-19": 2, "NORMAL": 1, "PNEUMONIA": 2}
    assert {m["patient"] for m in ds.metas} == {f"covid-chestxray:{k}" for k in "1234"}
    assert all(m["source"] == "covid-chestxray-dataset" for m in ds.metas)
    reasons = [r for _, r in ds.skipped]
    assert ("images/missing.png", "listed in metadata.csv but missing") in ds.skipped
    assert any("view L is not frontal" in r for r in reasons)
    assert any("not an X-ray" in r for r in reasons)
    assert any("Tuberculosis" in r for r in reasons)


def test_finding_mapping():
    assert finding_class("COVID-19, ARDS") == "COVID-19"
    assert finding_class("Pneumonia/Viral/SARS") == "PNEUMONIA"
    assert finding_class("Klebsiella") == "PNEUMONIA"
    assert finding_class("No Finding") == "NORMAL"
    assert finding_class("todo") is None and finding_class("Tuberculosis") is None


def test_metadata_csv_next_to_class_folders(tmp_path):
    lines = ["file,class,source,license,patient,view"]
    for i, (cls, pat, src) in enumerate([("COVID-19", "p1", "repoA"), ("COVID-19", "p1", "repoA"),
                                         ("NORMAL", "p2", "repoB"), ("PNEUMONIA", "p3", "repoB")]):
        _img(tmp_path / cls / f"{i}.png", 30 + 40 * i)
        lines.append(f"{cls}/{i}.png,{cls},{src},CC BY,{pat},PA")
    _img(tmp_path / "NORMAL" / "not_listed.png")  # the csv, not the folder, decides
    _img(tmp_path.parent / "outside.png")
    lines.append("../outside.png,NORMAL,repoB,,p9,PA")
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset(_cfg(tmp_path))
    assert ds.skipped == [("../outside.png", "listed in metadata.csv but outside the data folder")]
    assert len(ds) == 4 and ds.class_counts() == {"COVID-19": 2, "NORMAL": 1, "PNEUMONIA": 1}
    assert [m["patient"] for m in ds.metas] == ["p1", "p1", "p2", "p3"]
    assert [m["source"] for m in ds.metas] == ["repoA", "repoA", "repoB", "repoB"]
    assert ds.metas[0]["view"] == "PA" and ds.metas[2]["file"] == "NORMAL/2.png"
    assert describe(ds)["class_counts_by_source"] == {
        "repoA": {"COVID-19": 2, "NORMAL": 0, "PNEUMONIA": 0},
        "repoB": {"COVID-19": 0, "NORMAL": 1, "PNEUMONIA": 1}}
    # Row order and pixel content survive: image i was written with mean ~30 + 40 i.
    means = ds.images.reshape(4, -1).mean(1)
    assert np.all(np.diff(means) > 20)


# --- MedMNIST --------------------------------------------------------------------------------

def _npz(path: Path, labels: dict[str, np.ndarray], size=28, rgb=False) -> Path:
    arrays = {}
    rng = np.random.default_rng(0)
    for split, y in labels.items():
        shape = (len(y), size, size) + ((3,) if rgb else ())
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = y
    np.savez(path, **arrays)
    return path


def test_pneumoniamnist_npz(tmp_path):
    path = _npz(tmp_path / "pneumoniamnist.npz", {"train": np.array([[0], [1], [1]]),
                                                   "val": np.array([[0]]), "test": np.array([[1]])})
    ds = load_dataset(_cfg(path, size=32))
    assert ds.class_counts() == {"NORMAL": 2, "PNEUMONIA": 3}
    assert ds.images.shape == (5, 1, 32, 32)
    assert [m["split"] for m in ds.metas] == ["train"] * 3 + ["val", "test"]
    same = load_dataset(_cfg(f"medmnist:{path}", size=28))
    raw = np.load(path)["train_images"]
    np.testing.assert_array_equal(same.images[:3, 0], raw)  # at the native size, pixels unchanged


def test_chestmnist_multilabel_mapping(tmp_path):
    y = np.zeros((4, 14), np.uint8)
    y[1, 6] = 1            # pneumonia -> PNEUMONIA
    y[2, [2, 6]] = 1       # effusion + pneumonia -> PNEUMONIA
    y[3, 0] = 1            # atelectasis only -> left out by default
    path = _npz(tmp_path / "chestmnist.npz", {"train": y})
    ds = load_dataset(_cfg(path))
    assert ds.class_counts() == {"NORMAL": 1, "PNEUMONIA": 2}
    assert any("1 images with findings other than pneumonia" in r for _, r in ds.skipped)
    kept = load_dataset(_cfg(path, keep_extra_classes=True))
    assert kept.class_counts()["OTHER_FINDING"] == 1


def test_npz_errors(tmp_path):
    with pytest.raises(UserError, match="download_medmnist"):
        load_dataset(_cfg(tmp_path / "pneumoniamnist.npz"))
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserError, match="not a MedMNIST"):
        load_dataset(_cfg(tmp_path / "other.npz"))


# --- bad input and errors --------------------------------------------------------------------


def test_bad_files_are_skipped_with_reasons(tmp_path):
    for cls in ("COVID-19", "NORMAL"):
        _img(tmp_path / cls / "good.png")
    bad = tmp_path / "NORMAL"
    (bad / "empty.png").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    (bad / "cut.png").write_bytes(buf.getvalue()[:1500])
    (bad / "notes.png").write_text("this is text")
    (bad / "bomb.png").write_bytes(huge_png_header(30_000, 30_000))
    _img(tmp_path / "loose.png")  # at the root: no class folder
    ds = load_dataset(_cfg(tmp_path))
    assert len(ds) == 2
    reasons = dict(ds.skipped)
    assert reasons["NORMAL/empty.png"] == "zero-byte file"
    assert reasons["NORMAL/cut.png"].startswith("truncated")
    assert reasons["NORMAL/notes.png"].startswith("not an image")
    assert reasons["NORMAL/bomb.png"].startswith("image too large")
    assert reasons["loose.png"] == "not inside a class folder"
    info = describe(ds)
    assert info["n_skipped"] == 5 and info["skipped_reasons"]["zero-byte file"] == 1


def test_empty_one_class_and_missing_sources(tmp_path):
    with pytest.raises(UserError, match="No usable images"):
        load_dataset(_cfg(tmp_path))
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "NORMAL" / "broken.png").write_bytes(b"")
    with pytest.raises(UserError, match="1 files skipped"):
        load_dataset(_cfg(tmp_path))
    _img(tmp_path / "NORMAL" / "a.png")
    one = load_dataset(_cfg(tmp_path))   # one class is a data set (for a GAN)
    assert one.classes == ["NORMAL"] and len(one) == 1 and one.labels.tolist() == [0]
    with pytest.raises(UserError, match="not found"):
        load_dataset(_cfg(tmp_path / "does-not-exist"))
    with pytest.raises(UserError, match="is a file"):
        load_dataset(_cfg(tmp_path / "NORMAL" / "a.png"))
    with pytest.raises(UserError, match="integer"):
        load_dataset("phantom:many")


def test_progress_is_reported(tmp_path):
    for cls in ("COVID", "NORMAL"):
        for i in range(3):
            _img(tmp_path / cls / f"{i}.png")
    calls = []
    load_dataset(_cfg(tmp_path), progress=lambda f, msg: calls.append((f, msg)))
    fractions = [f for f, _ in calls]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_three_channel_config_repeats_gray(tmp_path):
    for cls in ("COVID", "NORMAL"):
        _img(tmp_path / cls / "a.png", 77)
    ds = load_dataset(_cfg(tmp_path, channels=3))
    assert ds.images.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(ds.images[:, 0], ds.images[:, 2])


# --- other sources ---------------------------------------------------------------------------

def test_phantom_source():
    pytest.importorskip("core.data.phantom")
    ds = load_dataset(DataConfig(source="phantom:2", size=32, seed=3))
    assert ds.classes == list(CLASSES) and ds.class_counts() == {c: 2 for c in CLASSES}
    assert ds.images.shape == (6, 1, 32, 32)
    assert all(m["source"] == "phantom" for m in ds.metas)
    again = load_dataset(DataConfig(source="phantom:2", size=32, seed=3))
    np.testing.assert_array_equal(ds.images, again.images)
    n = len(load_dataset(DataConfig(source="phantom", size=32, phantom_per_class=1)))
    assert n == 3


@pytest.mark.parametrize("spec", ["digits", "mnist:/some/root", "fashion-mnist:r", "cifar10:r",
                                  "folder:/x"])
def test_natural_specs_dispatch_to_core_natural(monkeypatch, spec):
    from core.data import natural

    seen = {}

    def load(s, config, progress, download):
        seen.update(spec=s, config=config, download=download)
        return "dataset"
    monkeypatch.setattr(natural, "load", load)
    assert load_dataset(DataConfig(source=spec, size=8)) == "dataset"
    assert seen["spec"] == spec and seen["config"].size == 8
    assert seen["download"] is False   # only a caller holding the user's own flag downloads


# --- describe and the CLI --------------------------------------------------------------------

def test_describe_and_cli_json(tmp_path, capsys):
    from core.data import sources as data

    for cls, n in (("COVID", 2), ("NORMAL", 1)):
        for i in range(n):
            _img(tmp_path / cls / f"person{i}_virus_{i}.png", size=(30, 20))
    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    assert data.main(parser.parse_args([str(tmp_path), "--size", "8", "--json"])) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_images"] == 3 and info["class_counts"] == {"COVID-19": 2, "NORMAL": 1}
    assert info["image_size"] == 8 and info["sizes_found"] == {"30x20": 3}
    assert info["n_patients"] == 2  # person0 appears in both class folders
    assert data.main(parser.parse_args([str(tmp_path)])) == 0
    text = capsys.readouterr().out
    assert "COVID-19" in text and "patients: 2" in text


# --- real data (skipped when the licensed folder is absent) -----------------------------------

def test_real_data_loads(real_data):
    ds = load_dataset(DataConfig(source=str(real_data), size=32))
    assert len(ds) == 1108 and ds.classes == list(CLASSES)
    assert ds.class_counts() == {"COVID-19": 315, "NORMAL": 269, "PNEUMONIA": 524}
    assert ds.skipped == []
    info = describe(ds)
    assert info["n_with_patient_id"] == 1108 and 1 < info["n_patients"] < 1108
    assert len(info["sources"]) >= 3
    split = split_by_patient(ds, val_fraction=0.2, seed=0)
    train_p = {ds.patients[i] for i in split["train"]}
    assert not train_p & {ds.patients[i] for i in split["val"]}
    assert set(ds.labels[split["val"]]) == {0, 1, 2}


def test_class_filter_keeps_only_chosen_classes_renumbered():
    from core.data.sources import select_classes
    ds = ImageDataset(np.zeros((6, 4, 4), np.uint8), np.array([0, 1, 2, 2, 1, 0]),
                      ["COVID-19", "NORMAL", "PNEUMONIA"], [{"i": i} for i in range(6)])
    only = select_classes(ds, ("PNEUMONIA", "COVID-19"))
    assert only.classes == ["COVID-19", "PNEUMONIA"]  # canonical order kept, not the request's
    assert only.labels.tolist() == [0, 1, 1, 0] and [m["i"] for m in only.metas] == [0, 2, 3, 5]
    with pytest.raises(UserError, match="not in this data"):
        select_classes(ds, ("Lung_Opacity",))
    assert DataConfig().classes == ()  # empty filter = all classes


def test_split_option_keeps_only_training_patients_of_the_classifier_split():
    # What a GAN for augmentation trains on (`--data-split train`): exactly the training part of
    # the split train-classifier makes with the same fractions and seed, so no validation or test
    # patient reaches the classifier through GAN samples.
    full = load_dataset(DataConfig(source="phantom:12", size=32))
    parts = split_by_patient(full, 0.15, 0.15, 0)
    train = load_dataset(DataConfig(source="phantom:12", size=32, split="train"))
    assert sorted(m["patient"] for m in train.metas) == sorted(full.metas[i]["patient"] for i in parts["train"])
    covid = load_dataset(DataConfig(source="phantom:12", size=32, split="train", classes=("COVID-19",)))
    held_out = {full.metas[i]["patient"] for i in np.concatenate([parts["val"], parts["test"]])}
    assert covid.classes == ["COVID-19"] and not held_out & {m["patient"] for m in covid.metas}
    with pytest.raises(UserError, match="split must be one of"):
        load_dataset(DataConfig(source="phantom:12", size=32, split="holdout"))


def test_split_train_fraction_picks_the_classifier_ablation_patients():
    # The ablation's GAN run for fraction f must see exactly the patients the classifier arm at
    # train_fraction f trains on, or its samples would carry other patients into that arm.
    full = load_dataset(DataConfig(source="phantom:20", size=32))
    parts = split_by_patient(full, 0.15, 0.15, 0)
    expected = subsample_patients(full, parts["train"], 0.5, 0)  # what train-classifier calls
    half = load_dataset(DataConfig(source="phantom:20", size=32, split="train",
                                   split_train_fraction=0.5))
    patients = sorted(m["patient"] for m in half.metas)
    assert patients == sorted(full.metas[i]["patient"] for i in expected)
    n_train = len({full.metas[i]["patient"] for i in parts["train"]})
    assert 0.4 * n_train <= len(set(patients)) <= 0.6 * n_train
    assert set(half.labels.tolist()) == {0, 1, 2}  # stratified: every class keeps patients
    covid = load_dataset(DataConfig(source="phantom:20", size=32, split="train",
                                    split_train_fraction=0.5, classes=("COVID-19",)))
    assert {m["patient"] for m in covid.metas} < set(patients)
    with pytest.raises(UserError, match="training split only"):
        load_dataset(DataConfig(source="phantom:20", size=32, split_train_fraction=0.5))


def test_where_filter_keeps_matching_sources_and_licences(tmp_path):
    """DataConfig.where: several globs for one column are alternatives, columns must all match;
    it applies before decoding and says how many items it left out."""
    rows = [("COVID-19", "hospitalA", "CC BY 3.0"), ("COVID-19", "hospitalA", "CC BY-NC-SA"),
            ("NORMAL", "archiveB", "CC BY 4.0 (original)"), ("PNEUMONIA", "archiveB", ""),
            ("NORMAL", "other", "CC BY 3.0")]
    lines = ["file,class,source,license,patient"]
    for i, (cls, src, lic) in enumerate(rows):
        _img(tmp_path / cls / f"{i}.png", 30 + 40 * i)
        lines.append(f"{cls}/{i}.png,{cls},{src},{lic},p{i}")
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    where = ("source=hospital*", "source=archiveB", "license=CC BY 3.0", "license=CC BY 4.0*")
    ds = load_dataset(DataConfig(source=str(tmp_path), size=16, where=where))
    assert [m["file"] for m in ds.metas] == ["COVID-19/0.png", "NORMAL/2.png"]
    assert any("3 items left out by the data filter" in reason for _, reason in ds.skipped)
    with pytest.raises(UserError, match="COLUMN=PATTERN"):
        load_dataset(DataConfig(source=str(tmp_path), size=16, where=("no equals sign",)))
    with pytest.raises(UserError, match="keeps no image"):
        load_dataset(DataConfig(source="phantom:4", size=32, where=("source=nowhere",)))
