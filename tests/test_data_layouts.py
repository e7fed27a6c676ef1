"""The big public sets' folder layouts (core/data/layouts.py), on small look-alike trees made here:
NIH ChestX-ray14, RSNA Pneumonia Detection and the COVID-19 Radiography Database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_dicom
from core.data.config import DataConfig
from core.data.sources import describe, load_dataset
from core.errors import UserError


def _png(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(path)


def _nih(root, rows, missing=()):
    """Data_Entry_2017_v2020.csv and the images of `rows` split over two archives' folders
    (images_001/images/ and images_002/images/), as the Kaggle download unpacks them."""
    records = []
    for i, (name, findings, pid, age) in enumerate(rows):
        if name not in missing:
            _png(root / f"images_00{1 + i % 2}" / "images" / name, i)
        records.append({"Image Index": name, "Finding Labels": findings, "Follow-up #": 0,
                        "Patient ID": pid, "Patient Age": age, "Patient Gender": "F",
                        "View Position": "PA", "OriginalImage[Width": 1024, "Height]": 1024})
    pd.DataFrame(records).to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    return root


NIH_ROWS = [("00000001_000.png", "No Finding", 1, 58), ("00000001_001.png", "Pneumonia|Effusion", 1, 58),
            ("00000002_000.png", "Effusion", 2, 40), ("00000003_000.png", "No Finding", 3, 9),
            ("00000004_000.png", "Pneumonia", 4, 70), ("00000005_000.png", "Consolidation", 5, 33),
            ("00000006_000.png", "No Finding", 6, 21)]


def test_nih_labels_patients_and_missing_archives(tmp_path):
    root = _nih(tmp_path / "nih", NIH_ROWS, missing=("00000006_000.png",))
    ds = load_dataset(DataConfig(source=str(root), size=32))
    assert ds.classes == ["NORMAL", "PNEUMONIA"]
    by_file = {m["file"].split("/")[-1]: (ds.classes[y], m) for y, m in zip(ds.labels, ds.metas)}
    assert by_file["00000001_001.png"][0] == "PNEUMONIA"          # Pneumonia among findings
    assert by_file["00000003_000.png"][0] == "NORMAL"
    assert "00000002_000.png" not in by_file                       # another finding: left out
    m = by_file["00000001_000.png"][1]
    assert m["patient"] == "nih:1" and m["source"] == "NIH ChestX-ray14"
    assert m["age"] == "58" and m["view"] == "PA" and m["sex"] == "F"
    reasons = " ".join(r for _, r in ds.skipped)
    assert "1 rows name images not found" in reasons and "other than Pneumonia left out" in reasons
    # The same patient's two images stay together in every split.
    assert len(set(ds.patients)) == len(ds) - 1


def test_nih_options_count_other_findings(tmp_path):
    root = _nih(tmp_path / "nih", NIH_ROWS)
    wider = load_dataset(DataConfig(source=str(root), size=32,
                                    pneumonia_findings=("Pneumonia", "Consolidation")))
    assert wider.class_counts()["PNEUMONIA"] == 3
    extra = load_dataset(DataConfig(source=str(root), size=32, keep_extra_classes=True))
    assert extra.classes == ["NORMAL", "PNEUMONIA", "OTHER_FINDING"]
    assert extra.class_counts()["OTHER_FINDING"] == 2


def test_a_nih_table_of_another_shape_is_one_line(tmp_path):
    root = tmp_path / "nih"
    root.mkdir()
    (root / "Data_Entry_2017.csv").write_text("Image,Labels\na.png,No Finding\n")
    with pytest.raises(UserError, match="Data_Entry_2017.csv: the NIH table lacks the columns"):
        load_dataset(DataConfig(source=str(root), size=32))


def _dicom(path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 4096, (32, 32), dtype=np.uint16)
    write_dicom(path, pixels, Modality="CR")


def _rsna(root, detail=True):
    """stage_2_train_labels.csv (one row per box: patient b has two), the detailed classes and
    the DICOMs in stage_2_train_images/."""
    patients = {"a": (0, "Normal"), "b": (1, "Lung Opacity"), "c": (0, "No Lung Opacity / Not Normal"),
                "d": (1, "Lung Opacity"), "e": (0, "Normal")}
    labels = []
    for i, (pid, (target, _)) in enumerate(patients.items()):
        _dicom(root / "stage_2_train_images" / f"{pid}.dcm", i)
        labels += [{"patientId": pid, "x": 1, "y": 2, "width": 3, "height": 4, "Target": target}] * \
            (2 if pid == "b" else 1)
    pd.DataFrame(labels).to_csv(root / "stage_2_train_labels.csv", index=False)
    if detail:
        pd.DataFrame([{"patientId": p, "class": c} for p, (_, c) in patients.items()]).to_csv(
            root / "stage_2_detailed_class_info.csv", index=False)
    return root


def test_rsna_targets_and_classes(tmp_path):
    ds = load_dataset(DataConfig(source=str(_rsna(tmp_path / "rsna")), size=32))
    assert ds.class_counts() == {"NORMAL": 2, "PNEUMONIA": 2}     # b once, though two boxes
    assert sorted(ds.patients) == ["rsna:a", "rsna:b", "rsna:d", "rsna:e"]
    assert {m["source"] for m in ds.metas} == {"RSNA Pneumonia Detection"}
    assert any("Not Normal' images left out" in r for _, r in ds.skipped)
    kept = load_dataset(DataConfig(source=str(tmp_path / "rsna"), size=32, keep_extra_classes=True))
    assert kept.class_counts()["NOT_NORMAL"] == 1


def test_rsna_without_the_detailed_classes_leaves_target_0_out(tmp_path):
    root = _rsna(tmp_path / "rsna", detail=False)
    ds = load_dataset(DataConfig(source=str(root), size=32))
    assert ds.classes == ["PNEUMONIA"]   # Target 1 alone remains


def test_covid_radiography_database_classes_and_sources(tmp_path):
    """COVID/, Normal/, Viral Pneumonia/ and Lung_Opacity/ with images/ and masks/ inside, and a
    CLASS.metadata.xlsx per class naming each image's site."""
    root = tmp_path / "COVID-19_Radiography_Dataset"
    names = {"COVID": "COVID", "Normal": "Normal", "Viral Pneumonia": "Viral Pneumonia",
             "Lung_Opacity": "Lung_Opacity"}
    for k, (folder, stem) in enumerate(names.items()):
        for i in range(1, 3):
            _png(root / folder / "images" / f"{stem}-{i}.png", 10 * k + i)
            _png(root / folder / "masks" / f"{stem}-{i}.png", 10 * k + i)
        pd.DataFrame({"FILE NAME": [f"{stem}-1", f"{stem}-2"], "FORMAT": ["PNG", "PNG"],
                      "SIZE": ["256*256"] * 2,
                      "URL": ["https://sirm.org/category/senza-categoria/covid-19/",
                              "https://github.com/ieee8023/covid-chestxray-dataset"]}
                     ).to_excel(root / f"{stem}.metadata.xlsx", index=False)
    ds = load_dataset(DataConfig(source=str(root), size=32))
    assert ds.class_counts() == {"COVID-19": 2, "NORMAL": 2, "PNEUMONIA": 2}
    assert describe(ds)["sources"] == {"sirm.org": 3, "github.com": 3}
    reasons = " ".join(r for _, r in ds.skipped)
    assert "segmentation masks ignored" in reasons and "Lung_Opacity' left out" in reasons
