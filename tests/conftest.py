"""Shared test fixtures: an isolated runs directory, the real-data folder (skip when absent)."""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

# One thread per process: the tests' tiny models gain nothing from two threads, and on a
# 2-core machine shared with job subprocesses (launch, DDP) two threads oversubscribe badly
# (one classifier test file: 63 s with 2 threads, 21 s with 1). Set before torch is imported so
# subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The playground's background compiler would take a core for ~15 s per page test;
# tests/test_toy_step.py drives it directly.
os.environ.setdefault("XRAY_TOY_COMPILE", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent


def write_dicom(path, pixels, photometric="MONOCHROME2", preamble=True, **attrs):
    """A minimal uncompressed secondary-capture DICOM with 16-bit pixels (F, R, C) or (R, C),
    DX unless `attrs` say otherwise; for the image-reading and data-layout tests."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if pixels is not None:
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path, enforce_file_format=preamble)
    return path


# A made-up patient (no such person): what a clinician's DICOM header carries, for the privacy
# tests that search everything the app wrote or showed for these strings (leaks below).
PATIENT = {"PatientName": "Quexbury^Zelphine", "PatientID": "QX-93827461",
           "PatientBirthDate": "19710203", "AccessionNumber": "ACQ55501234",
           "InstitutionName": "Zyzzogeton General Hospital"}
# ... and the forms those strings may take once shown or formatted.
PATIENT_STRINGS = ("Quexbury", "Zelphine", "QX-93827461", "93827461", "19710203", "1971-02-03",
                   "ACQ55501234", "Zyzzogeton")


def identified_dicom(path, value: int = 1000, patient_id: str = PATIENT["PatientID"], **attrs):
    """write_dicom of a 32x32 DX film carrying PATIENT's identity (with `patient_id` as its
    PatientID) and a study date; `value` sets its brightness."""
    import numpy as np

    pixels = (np.arange(32 * 32).reshape(32, 32) % 97 + value).astype(np.uint16)
    return write_dicom(path, pixels, **{**PATIENT, "PatientID": patient_id,
                                       "StudyDate": "20240105", **attrs})


def leaks(*places, texts=()) -> list[str]:
    """Where any of PATIENT_STRINGS occurs: in a file (names and contents) under the given
    folders or files, or in one of `texts`; [] when nowhere."""
    found = []
    needles = [s.encode() for s in PATIENT_STRINGS]
    for place in places:
        place = Path(place)
        paths = [place] if place.is_file() else sorted(place.rglob("*"))
        for path in paths:
            hit = [n.decode() for n in needles if n.decode() in str(path)]
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                hit += [n.decode() for n in needles if n in data]
            found += [f"{path}: {h}" for h in hit]
    for i, text in enumerate(texts):
        found += [f"text {i}: {s}" for s in PATIENT_STRINGS if s in str(text)]
    return found


def page_texts(at) -> list[str]:
    """Every element an AppTest run rendered, as text (its protobuf: values, labels, captions,
    chart specs), for leaks(texts=...)."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)

    walk(at._tree)
    return out


def saved_generator(run: Path, meta: dict, size: int = 32, width: float = 0.125) -> Path:
    """A GAN run directory holding only an untrained tiny generator's snapshot (seed 0)."""
    from core.gan.models import Generator, GeneratorConfig, save_generator

    torch.manual_seed(0)
    cfg = GeneratorConfig(latent_dim=8, size=size, width=width)
    save_generator(run / "checkpoints" / "latest.safetensors", Generator(cfg), cfg, meta)
    return run


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims width x height; the pixel data is a stub: a
    decompression bomb's header, for the bad-input tests."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


class LinearCritic(torch.nn.Module):
    """f(x) = w . flatten(x): every sample's input gradient is w, so ||grad|| = ||w|| exactly;
    pins the gradient penalty in the loss and trainer tests."""

    def __init__(self, shape, scale):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((math.prod(shape),), scale))

    def forward(self, x):
        return x.flatten(1) @ self.w


def real_data_dir() -> Path | None:
    """The licensed real X-rays beside the repo (../shared/data/cxr-real), or $XRAY_REAL_DATA."""
    path = Path(os.environ.get("XRAY_REAL_DATA") or REPO.parent / "shared" / "data" / "cxr-real")
    return path if (path / "metadata.csv").is_file() else None


def real_data_v2_dir() -> Path | None:
    """Version 2 of the real X-rays (../shared/data/cxr-real-v2), or $XRAY_REAL_DATA_V2."""
    path = Path(os.environ.get("XRAY_REAL_DATA_V2") or REPO.parent / "shared" / "data" / "cxr-real-v2")
    return path if (path / "metadata.csv").is_file() else None


def _present(path: Path | None, name: str) -> Path:
    if path is None:
        pytest.skip(f"real X-ray folder ../shared/data/{name} not present")
    return path


@pytest.fixture
def real_data_v2() -> Path:
    return _present(real_data_v2_dir(), "cxr-real-v2")


@pytest.fixture
def real_data() -> Path:
    return _present(real_data_dir(), "cxr-real")


def metadata_tree(root: Path, n: int, source=lambda i: "hospital",
                  patient=lambda i: f"p{i // 2}", size: int = 32) -> Path:
    """A folder of n small PNGs in class folders with a metadata.csv (file, class, source,
    patient); image i is of class i % 3, and the classes are dark, mid and bright, so a tiny
    model separates them. Returns root."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["file,class,source,patient"]
    for i in range(n):
        cls = ("COVID-19", "NORMAL", "PNEUMONIA")[i % 3]
        path = root / cls / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.integers(0, 60, (size, size)) + 70 * (i % 3)).astype(np.uint8)).save(path)
        rows.append(f"{cls}/{i}.png,{cls},{source(i)},{patient(i)}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path_factory, monkeypatch):
    # Jobs launched by tests (and pages under AppTest) write here, never into the repo's runs/.
    monkeypatch.setenv("XRAY_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
