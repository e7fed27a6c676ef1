"""core/data/deid.py: a saved DICOM loses its patient's identity (PS3.15 Basic Profile subset)
and keeps its image; the patient becomes a keyed pseudonym under a private key; uploaded ZIPs
and earlier uploads are de-identified; a folder's films are grouped by their header's patient
with nothing identifying in the cache or the output."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from conftest import PATIENT, identified_dicom, leaks
from core import __main__ as cli
from core.data import deid
from core.data.archive import extract_zip
from core.data.imageio import read_image
from core.errors import UserError
from core.runs.store import runs_root


def test_every_profile_keyword_is_a_dicom_keyword():
    # A misspelt keyword would silently remove nothing.
    from pydicom.datadict import tag_for_keyword

    for keyword in deid.REMOVE | deid.BLANK | deid.REPLACE_UIDS:
        assert tag_for_keyword(keyword) is not None, keyword


def test_a_saved_dicom_keeps_its_image_and_loses_its_patient(tmp_path):
    nested = Dataset()
    nested.PatientID, nested.PatientName = PATIENT["PatientID"], PATIENT["PatientName"]
    path = identified_dicom(tmp_path / "a.dcm", PatientAge="054Y", PatientSex="F",
                            BodyPartExamined="CHEST", StudyInstanceUID="1.2.3.4.5",
                            OtherPatientIDsSequence=Sequence([nested]),
                            ReferencedImageSequence=Sequence([nested]))
    ds = pydicom.dcmread(path)
    ds.add_new(0x00291010, "LO", PATIENT["PatientName"])   # a vendor's private copy
    ds.save_as(path)
    raw = path.read_bytes()
    assert leaks(path)
    clean = deid.deidentify(raw, "a.dcm")
    (tmp_path / "clean.dcm").write_bytes(clean)
    assert leaks(tmp_path / "clean.dcm") == []
    assert b"1.2.3.4.5\x00" not in clean
    out = pydicom.dcmread(io.BytesIO(clean))
    assert out.PatientID == deid.pseudonym(PATIENT["PatientID"])
    assert deid.PSEUDONYM.fullmatch(out.PatientID)
    assert out.PatientName == "" and out.PatientBirthDate == "" and out.StudyDate == ""
    assert out.PatientIdentityRemoved == "YES" and out.DeidentificationMethod == deid.METHOD
    # What the model and the reports use stays: modality, body part, age, sex, the pixels.
    assert (out.Modality, out.BodyPartExamined, out.PatientAge, out.PatientSex) == \
        ("DX", "CHEST", "054Y", "F")
    assert np.array_equal(read_image(clean, "a.dcm"), read_image(raw, "a.dcm"))
    # Applying it again changes nothing that matters: the pseudonym is not hashed twice.
    assert pydicom.dcmread(io.BytesIO(deid.deidentify(clean, "a.dcm"))).PatientID == out.PatientID
    # Any other file is kept as it came.
    assert deid.deidentify(b"\x89PNG not a dicom", "x.png") == b"\x89PNG not a dicom"


def test_the_patient_key_is_private_and_stable():
    a = deid.pseudonym(PATIENT["PatientID"])
    path = runs_root() / ".patient-key"
    assert path.is_file() and (path.stat().st_mode & 0o777) == 0o600
    assert deid.pseudonym(PATIENT["PatientID"]) == a != deid.pseudonym("QX-00000001")
    assert deid.pseudonym(a) == a and deid.pseudonym("  ") is None
    # Another runs folder has another key: the pseudonym is not a plain hash of the ID.
    deid._keys.clear()
    path.write_bytes(os.urandom(32))
    assert deid.pseudonym(PATIENT["PatientID"]) != a
    deid._keys.clear()
    path.write_bytes(b"short")
    with pytest.raises(UserError, match="damaged"):
        deid.pseudonym(PATIENT["PatientID"])
    deid._keys.clear()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_an_uploaded_zip_keeps_only_deidentified_dicoms(tmp_path):
    from core.data.config import DataConfig
    from core.data.sources import load_dataset

    src = tmp_path / "src"
    entries = {f"set/{cls}/{i}.dcm": identified_dicom(src / f"{cls}{i}.dcm", 500 * i + k * 2000,
                                                      patient_id=f"QX-4400{k}").read_bytes()
               for k, cls in enumerate(("COVID-19", "NORMAL")) for i in range(2)}
    entries["set/NORMAL/broken.dcm"] = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 20
    # No preamble and no .dcm: the reader skips it, but a kept copy would carry the patient.
    entries["set/NORMAL/IM0001"] = identified_dicom(src / "IM0001", preamble=False).read_bytes()
    folder = extract_zip(io.BytesIO(_zip(entries)), runs_root() / "uploads" / "zip-test")
    assert leaks(runs_root()) == []
    ids = {pydicom.dcmread(p).PatientID for p in (folder / "COVID-19").iterdir()}
    assert ids == {deid.pseudonym("QX-44000")}
    ds = load_dataset(DataConfig(source=str(folder), size=16))
    assert len(ds) == 4 and len(set(ds.patients)) == 2
    assert [f for f, _ in ds.skipped] == ["NORMAL/IM0001", "NORMAL/broken.dcm"]   # as before
    assert leaks(runs_root()) == []


def test_a_dicom_that_cannot_be_deidentified_is_not_kept(tmp_path, monkeypatch):
    from core.data.imageio import _fail

    def refuse(data, name=""):
        raise _fail(name, "cannot")

    kept = identified_dicom(tmp_path / "up" / "NORMAL" / "a.dcm")
    (tmp_path / "up" / "NORMAL" / "b.png").write_bytes(b"not a dicom")
    monkeypatch.setattr(deid, "deidentify", refuse)
    assert deid.deidentify_tree(tmp_path / "up") == ["NORMAL/a.dcm"]
    assert not kept.exists() and (tmp_path / "up" / "NORMAL" / "b.png").exists()


def test_earlier_uploads_are_deidentified_once(tmp_path):
    uploads = runs_root() / "uploads"
    old = identified_dicom(uploads / "files-0a1b2c3d" / "NORMAL" / "a.dcm")
    assert leaks(uploads)
    assert deid.deidentify_uploads(uploads) == []
    assert leaks(runs_root()) == []
    stamp = old.stat().st_mtime_ns
    assert deid.deidentify_uploads(uploads) == [] and old.stat().st_mtime_ns == stamp
    assert json.loads((uploads / ".deidentified").read_text()) == ["files-0a1b2c3d"]


def test_films_of_one_patient_are_one_patient_and_the_id_stays_out(tmp_path, capsys):
    """A user's own folder (read, not saved): the PatientID groups the films, as its keyed
    pseudonym; data-info, the decoded-data cache and the split never hold the ID itself."""
    from core.data.config import DataConfig
    from core.data.sources import load_dataset
    from core.data.splits import split_by_patient

    root = tmp_path / "films"
    for i in range(4):   # one patient's four films
        identified_dicom(root / "COVID-19" / f"c{i}.dcm", 300 + 10 * i)
    for i in range(4):   # four other patients
        identified_dicom(root / "NORMAL" / f"n{i}.dcm", 2000 + 10 * i, patient_id=f"QX-7700{i}")
    assert cli.main(["data-info", str(root), "--size", "16", "--json"]) == 0
    out, err = capsys.readouterr()
    info = json.loads(out)
    assert info["n_images"] == 8 and info["n_patients"] == 5 and info["n_with_patient_id"] == 8
    assert leaks(runs_root(), texts=[out, err]) == []
    assert any((runs_root() / "cache").iterdir())   # it was cached, and searched above
    ds = load_dataset(DataConfig(source=str(root), size=16))
    parts = split_by_patient(ds, 0.25, 0.25, seed=0)
    covid = set(np.flatnonzero(ds.labels == ds.classes.index("COVID-19")))
    assert [name for name, idx in parts.items() if covid & set(idx)] in (["train"], ["val"],
                                                                          ["test"])
