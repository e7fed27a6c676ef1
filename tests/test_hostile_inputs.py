"""Hostile and broken inputs through every entry point (issue #17): the CLI commands, the library
calls behind the Data and Diagnose pages, and the ZIP extraction. Every input is made here;
nothing binary is committed.

All cases run in one worker process (one torch import) under an address-space limit; the worker
reports each case as a JSON line, and a case that takes longer than CASE_TIMEOUT_S is a hang
(the worker is killed and the test names the case). Each case must end in exit 0 with a sane
result or exit 2 with exactly one line on stderr that names the file or the problem; no
traceback. Before and after, the folders a hostile input points at, $HOME and the repository
are listed: nothing may appear or change there.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PHANTOM_MODEL = REPO / "checkpoints" / "classifier-phantom.safetensors"
MEMORY_LIMIT = 8 * 2**30      # address space of the worker: a bomb must fail inside it
CASE_TIMEOUT_S = 240          # generous: a loaded CI machine; a hang is minutes, not seconds

WORKER = r'''
import contextlib, io, json, resource, sys, traceback
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from core.__main__ import main
from core.errors import UserError

def library(call, args):
    """The calls the pages make, as the pages make them."""
    if call == "data-page":          # Data page: load a source (ui.cache.dataset) and show it
        from core.data.config import DataConfig
        from core.data.sources import describe, format_description, load_dataset
        ds = load_dataset(DataConfig(source=args[0], size=16, keep_extra_classes=True), download=True)
        return format_description(describe(ds))
    if call == "zip":                 # Data page: extract an uploaded ZIP
        from core.data.archive import extract_zip
        return str(extract_zip(args[0], args[1]))
    if call == "diagnose":            # Diagnose: predict uploaded bytes (ui.cache.prediction)
        from core.classify.model import load_classifier
        from core.classify.predict import predict_file
        model, meta = load_classifier(args[0], device="cpu")
        with open(args[1], "rb") as f:
            out = predict_file(model, meta, f.read(), name=args[1].rsplit("/", 1)[-1])
        if not out["ok"]:
            raise UserError(out["error"])
        return json.dumps(out, default=str, allow_nan=False)   # as the page's table gets it
    raise ValueError(call)

def utf8_stream():
    """Output as a UTF-8 terminal (or a page) takes it: text that cannot be encoded raises."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)

for case in json.load(open(sys.argv[1])):
    out, err, rc, exc = utf8_stream(), utf8_stream(), None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if case["call"] == "cli":
                rc = main(case["args"])
            else:
                try:
                    library(case["call"], case["args"]).encode("utf-8")   # a page sends UTF-8
                    rc = 0
                except UserError as e:   # what the page shows in its error box
                    print(f"error: {e}", file=sys.stderr)
                    rc = 2
    except SystemExit as e:
        rc = e.code
    except BaseException:
        exc = traceback.format_exc()
    text = [s.buffer.getvalue().decode("utf-8") for s in (out, err)]
    print(json.dumps({"name": case["name"], "rc": rc, "stderr": text[1],
                      "stdout": text[0][-2000:], "exc": exc}), flush=True)
'''


# --- making the inputs -----------------------------------------------------------------------

def _png_of_size(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit gray PNG of any shape, all one grey, written by hand: no image object is
    built (the raw rows are, width x height bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    body = zlib.compress((b"\x00" + b"\x80" * width) * height, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def _xray(path: Path, size: int = 48, seed: int = 0) -> Path:
    from core.data import phantom

    img, _ = phantom.render("NORMAL", seed, size, 0)
    Image.fromarray(img).save(path)
    return path


def _dicom(path: Path, deflated_extra: int = 0, **text_elements) -> Path:
    """A DX DICOM with 16-bit pixels; header elements written as text whatever their VR should
    be (as anonymisers write them); `deflated_extra` bytes of zeros in a private element, the
    whole dataset deflated (a bomb: a few hundred kB that inflate to that many bytes)."""
    import pydicom
    from pydicom.dataelem import DataElement
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                             SecondaryCaptureImageStorage, generate_uid)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated_extra else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 32, 32, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(32 * 32, dtype=np.uint16) * 3).tobytes()
    if deflated_extra:
        ds.add_new(0x00091010, "OB", bytes(deflated_extra))
    for key, raw in text_elements.items():
        tag = tag_for_keyword(key)
        ds[tag] = DataElement(tag, "LO", raw)
    ds.save_as(path, enforce_file_format=True)
    del ds
    assert pydicom  # imported for its side effects on the writer
    return path


def _checkpoint(path: Path, change) -> Path:
    """A copy of the shipped phantom classifier whose metadata is `change(meta)` (any JSON)."""
    from safetensors.torch import save_file

    from core.checkpoint import load_model

    state, meta = load_model(PHANTOM_MODEL)
    meta = change(meta)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"xray_gan_studio": json.dumps(meta)})
    return path


def _zip_with_raw_name(path: Path, good: str, raw: bytes, utf8_flag: bool) -> Path:
    """A ZIP whose one member's name is replaced byte for byte by `raw` (same length)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(good, b"not really a png")
    data = bytearray(path.read_bytes())
    assert len(raw) == len(good)
    data = data.replace(good.encode(), raw)
    if utf8_flag:   # general-purpose flag bit 11 in the local and central headers
        for sig, offset in ((b"PK\x03\x04", 7), (b"PK\x01\x02", 9)):
            data[data.find(sig) + offset] |= 0x08
    path.write_bytes(bytes(data))
    return path


def _metadata_csv(root: Path, rows: list[str]) -> Path:
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            _xray(root / cls / f"{i}.png", 32, seed=i)
    (root / "metadata.csv").write_text("file,class,patient\n" + "\n".join(rows) + "\n")
    return root


def _mnist_claiming(root: Path, n_claimed: int, n_real: int) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n_claimed, 28, 28) + bytes(n_real * 784))
    with gzip.open(raw / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, n_claimed) + bytes(n_real))
    return root


def _tiny_gan_run(run: Path, *extra: str) -> Path:
    from core.__main__ import main

    rc = main(["train-gan", "--preset", "cpu-tiny", "--data", "phantom:4", "--steps", "2",
               "--batch-size", "4", "--checkpoint-every", "1", "--sample-every", "1",
               "--log-every", "1", "--n-samples", "4", "--holdout", "0", "--run-dir", str(run),
               *extra])
    assert rc == 0
    return run


def _edit_generator(run: Path, change) -> None:
    """The run's generator snapshot with its metadata replaced by `change(meta)` (any JSON)."""
    from safetensors.torch import save_file

    from core.checkpoint import load_model

    path = run / "checkpoints" / "latest.safetensors"
    state, meta = load_model(path)
    save_file(state, str(path), metadata={"xray_gan_studio": json.dumps(change(meta))})


def _edit_state(run: Path, change) -> None:
    """The run's training state replaced by `change(state)`; bytes are written as they are."""
    import torch

    path = run / "checkpoints" / "latest_state.pt"
    state = change(torch.load(path, weights_only=True))
    if isinstance(state, bytes):
        path.write_bytes(state)
    else:
        torch.save(state, path)


def _latin1_folder(root: Path) -> Path:
    """Class folders whose file names, one class folder's name and the root's name hold a
    Latin-1 byte (not UTF-8), as an older ZIP unpacked by the system's unzip leaves them."""
    top = Path(os.fsdecode(os.fsencode(root) + b"/donn\xe9es"))
    for cls in (b"NORMAL", b"PNEUMONIA", b"COVID-19", b"PNEUMONI\xc4"):
        folder = Path(os.fsdecode(os.fsencode(top) + b"/" + cls))
        folder.mkdir(parents=True)
        for i in range(3):
            _xray(Path(os.fsdecode(os.fsencode(folder) + b"/radiograf\xeda-%d.png" % i)), 32, seed=i)
    return top


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _npz_claiming(path: Path, shape: tuple) -> Path:
    """An .npz whose train_images and train_labels headers claim `shape` and (N,) (uint8),
    each followed by a few bytes of data."""
    with zipfile.ZipFile(path, "w") as z:
        for name, claimed in (("train_images", shape), ("train_labels", shape[:1])):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                          "shape": claimed})
            z.writestr(f"{name}.npy", header.getvalue() + bytes(1000))
    return path


def _checkpoint_tensors(path: Path, change) -> Path:
    """A copy of the shipped phantom classifier whose tensors are `change(state)`."""
    from safetensors.torch import save_file

    from core.checkpoint import load_model

    state, meta = load_model(PHANTOM_MODEL)
    save_file({k: v.contiguous() for k, v in change(dict(state)).items()}, str(path),
              metadata={"xray_gan_studio": json.dumps(meta)})
    return path


def _overlapping_zip(path: Path, n_entries: int = 300, kernel_bytes: int = 100_000) -> Path:
    """Entries whose data overlap (D. Fifield's quoted-overlap zip bomb): entry i's DEFLATE
    stream is a stored block quoting entry i+1's local header, then entry i+1's stream, down
    to one shared compressed kernel. Each entry is valid, with its own name and CRC, and
    unpacks to all the later headers plus the kernel: about 60 kB become 30 MB, while no
    entry's own ratio looks like a bomb."""
    plain = np.random.default_rng(0).integers(0, 4, kernel_bytes, dtype=np.uint8).tobytes()
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = co.compress(plain) + co.flush()
    names = [f"NORMAL/{i:04d}.png".encode() for i in range(n_entries)]

    def quote(header):   # a stored, non-final DEFLATE block holding `header` as it is
        return struct.pack("<BHH", 0, len(header), len(header) ^ 0xFFFF)

    outputs, datas, headers = [b""] * n_entries, [b""] * n_entries, [b""] * n_entries
    out, data = plain, kernel
    for i in reversed(range(n_entries)):   # back to front: entry i holds entry i+1
        outputs[i], datas[i] = out, data
        headers[i] = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, zlib.crc32(out),
                                 len(data), len(out), len(names[i]), 0) + names[i]
        out, data = headers[i] + out, quote(headers[i]) + headers[i] + data
    body, offsets = b"", []
    for i in range(n_entries):
        offsets.append(len(body))
        body += headers[i] + (quote(headers[i + 1]) if i + 1 < n_entries else kernel)
    central = b"".join(
        struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, zlib.crc32(outputs[i]),
                    len(datas[i]), len(outputs[i]), len(names[i]), 0, 0, 0, 0, 0, offsets[i]) + names[i]
        for i in range(n_entries))
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n_entries, n_entries, len(central), len(body), 0)
    path.write_bytes(body + central + end)
    return path


def _hostile_run(base: Path, path: Path, edit) -> Path:
    """A copy of the finished tiny run `base`, then `edit(run_dir)`."""
    shutil.copytree(base, path, symlinks=True)
    edit(path)
    return path


def _set_config(run: Path, **parts):
    config = json.loads((run / "config.json").read_text())
    configs = config["configs"]
    for key, value in parts.items():
        section, _, field = key.partition("__")
        if field:
            configs[section][field] = value
        else:
            configs[section] = value
    (run / "config.json").write_text(json.dumps(config))


def _listing(*roots: Path) -> dict[str, tuple]:
    out = {}
    skip = {".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".benchmarks"}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for name in filenames:
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


# --- the corpus --------------------------------------------------------------------------------

def _cases(tmp: Path) -> list[dict]:
    """(name, call, args, expected exit code, a text the one line must hold) for each case."""
    inp, work, outside = tmp / "in", tmp / "work", tmp / "outside"
    for d in (inp, work, outside):
        d.mkdir()
    (outside / "keep.txt").write_text("not yours")
    good = _xray(inp / "chest.png")
    model = str(PHANTOM_MODEL)
    cases = []

    def case(name, call, args, rc, says=""):
        cases.append({"name": name, "call": call, "args": [str(a) for a in args], "rc": rc,
                      "says": says})

    # Images: predict (CLI) and Diagnose (library), each kind.
    images = {
        "strip-1x5M.png": (_png_of_size(inp / "strip-1x5M.png", 1, 5_000_000), 2, "on a side"),
        "zero.png": ((inp / "zero.png"), 2, "zero-byte"),
        "truncated.png": ((inp / "truncated.png"), 2, "truncated.png"),
        "text.png": ((inp / "text.png"), 2, "text.png"),
        "empty-window.dcm": (_dicom(inp / "empty-window.dcm", WindowCenter="", WindowWidth=""), 0, ""),
        "text-slope.dcm": (_dicom(inp / "text-slope.dcm", RescaleSlope="steep"), 0, ""),
        "rows-abc.dcm": (_dicom(inp / "rows-abc.dcm", Rows="abc"), 2, "rows-abc.dcm"),
        "frames-abc.dcm": (_dicom(inp / "frames-abc.dcm", NumberOfFrames="abc"), 0, ""),
        # 420 MB of zeros deflated to well under a megabyte: above the 400 MB DICOM budget.
        "deflate-bomb.dcm": (_dicom(inp / "deflate-bomb.dcm", deflated_extra=420 * 2**20), 2,
                             "deflate-bomb.dcm"),
    }
    (inp / "zero.png").write_bytes(b"")
    (inp / "truncated.png").write_bytes(good.read_bytes()[:200])
    (inp / "text.png").write_text("this is not an image\n")
    assert (inp / "deflate-bomb.dcm").stat().st_size < 2 * 2**20
    for name, (path, rc, says) in images.items():
        case(f"predict {name}", "cli", ["predict", "--checkpoint", model, path], rc, says)
        case(f"diagnose {name}", "diagnose", [model, path], rc, says)

    # Checkpoints from elsewhere: predict and evaluate.
    def edited(section, **values):
        return lambda m: {**m, section: {**m.get(section, {}), **values}}

    ckpts = {
        "meta-list": (lambda m: [1, 2, 3], "not a JSON object"),
        "meta-null": (lambda m: None, "not a JSON object"),
        "meta-text": (lambda m: "a string", "not a JSON object"),
        "width-1e9": (edited("model", width=1e9), "width"),
        "text-classes": (edited("model", n_classes="three"), "n_classes"),
        "nan-temperature": (lambda m: {**m, "temperature": float("nan")}, "temperature"),
        "cuda-device": (edited("train", device="cuda"), ""),
    }
    for name, (change, says) in ckpts.items():
        path = _checkpoint(inp / f"{name}.safetensors", change)
        rc = 0 if name == "cuda-device" else 2
        case(f"predict with checkpoint {name}", "cli", ["predict", "--checkpoint", path, good], rc, says)
        case(f"diagnose with checkpoint {name}", "diagnose", [path, good], rc, says)
    # A data spec inside a checkpoint must not make evaluate download (or write) anything.
    spec = _checkpoint(inp / "mnist-spec.safetensors", edited("data", source=f"mnist:{outside / 'evil'}"))
    case("evaluate with a checkpoint naming MNIST", "cli", ["evaluate", "--checkpoint", spec], 2,
         "never downloaded")
    huge = _checkpoint(inp / "phantom-1e9.safetensors", edited("data", phantom_per_class=10**9))
    case("evaluate with a checkpoint naming phantom 1e9", "cli", ["evaluate", "--checkpoint", huge], 2,
         "phantom_per_class")
    # A checkpoint's patient split, read back by evaluate on its own data and on another folder.
    for name, split, extra in (("text", {"val_fraction": "abc"}, []),
                               ("list", [1, 2], ["--data", "phantom:4", "--split", "unseen"]),
                               ("seed -1", {"seed": -1}, ["--data", "phantom:4", "--split", "test"])):
        bad = _checkpoint(inp / f"split-{name.replace(' ', '')}.safetensors", lambda m, split=split: {
            **m, "data": {**m.get("data", {}), "source": "phantom:4"}, "split": split})
        case(f"evaluate with a checkpoint whose split is {name}", "cli",
             ["evaluate", "--checkpoint", bad, *extra], 2, "split")
    no_test = _checkpoint(inp / "no-test.safetensors", lambda m: {
        **m, "data": {**m.get("data", {}), "source": "phantom:4"},
        "split": {**m.get("split", {}), "test_fraction": 0.0}})
    for extra in ([], ["--data", "phantom:4"]):
        case(f"evaluate --split test {' '.join(extra)}with a checkpoint without test patients",
             "cli", ["evaluate", "--checkpoint", no_test, "--split", "test", *extra], 2, "no test part")

    # Run directories from elsewhere: train-gan --resume, gan-metrics, --synthetic.
    base = _tiny_gan_run(work / "base-run")
    (outside / "metrics-target.sqlite").write_bytes(b"")

    def garbage_db(r):
        (r / "metrics.sqlite").write_bytes(b"this is not sqlite" * 100)
        for suffix in ("-wal", "-shm"):
            (r / f"metrics.sqlite{suffix}").unlink(missing_ok=True)

    def linked_db(r):
        (r / "metrics.sqlite").unlink()
        (r / "metrics.sqlite").symlink_to(outside / "metrics-target.sqlite")

    runs = {
        "status-list": (lambda r: (r / "status.json").write_text("[1, 2]"), 0, ""),
        "control-latin1": (lambda r: (r / "control.json").write_bytes(b'{"n_critic": "\xe9"}'), 0, ""),
        "control-n-critic-1e9": (lambda r: (r / "control.json").write_text('{"n_critic": 1000000000}'), 0, ""),
        "garbage-metrics": (garbage_db, 2, "metrics.sqlite"),
        "linked-metrics": (linked_db, 2, "symbolic link"),
        "linked-samples": (lambda r: (shutil.rmtree(r / "samples"), (r / "samples").symlink_to(outside)),
                           2, "symbolic link"),
        "width-1e9": (lambda r: _set_config(r, generator__width=1e9), 2, "width"),
        "text-latent": (lambda r: _set_config(r, generator__latent_dim="big"), 2, "latent_dim"),
        "data-mnist": (lambda r: _set_config(r, data__source=f"mnist:{outside / 'evil'}"), 2,
                       "never downloaded"),
        "phantom-3e8": (lambda r: _set_config(r, data__source="phantom:300000000"), 2, "phantom"),
        "cuda-device": (lambda r: _set_config(r, train__device="cuda"), 0, ""),
        "config-list": (lambda r: (r / "config.json").write_text("[]"), 2, "config.json"),
        "config-latin1": (lambda r: (r / "config.json").write_bytes(b"{\"data\": \"\xff\"}"), 2,
                          "config.json"),
    }
    for name, (edit, rc, says) in runs.items():
        if name == "cuda-device" and _has_cuda():
            continue
        run = _hostile_run(base, work / f"run-{name}", edit)
        case(f"train-gan --resume {name}", "cli",
             ["train-gan", "--resume", "--run-dir", run, "--steps", "3"], rc, says)
    # A config.json the dashboard would have queued, from elsewhere: --from-config takes it as
    # it is, so its checks are the resume's, and a data spec in it is never downloaded.
    mnist = {"source": f"mnist:{outside / 'evil'}"}
    queued = [("train-classifier", "mnist", {"data": mnist, "model": {}, "train": {}}, "never downloaded"),
              ("train-classifier", "epochs-1e9", {"data": {"source": "phantom:4"}, "model": {},
                                                  "train": {"epochs": 1e9}}, "epochs"),
              ("ablation", "mnist", {"data": mnist, "model": {}, "train": {},
                                     "ablation": {"arms": ["real"]}}, "never downloaded")]
    for command, name, configs, says in queued:
        run = work / f"queued-{command}-{name}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"command": command, "version": 2,
                                                     "configs": configs}))
        case(f"{command} --from-config {name}", "cli",
             [command, "--from-config", "--run-dir", run], 2, says)

    # A generator snapshot from elsewhere: gan-metrics and train-classifier --synthetic. The base
    # trained on the classifier's training patients only, so the leak check lets it through.
    split_base = _tiny_gan_run(work / "base-split", "--data-split", "train")
    generators = {"meta-list": (lambda m: [1], "not a JSON object"),
                  "data-list": (lambda m: {**m, "data": [1]}, "data config"),
                  "width-1e9": (lambda m: {**m, "generator": {**m["generator"], "width": 1e9}}, "width"),
                  "text-size": (lambda m: {**m, "generator": {**m["generator"], "size": "big"}}, "size")}
    for name, (change, says) in generators.items():
        run = _hostile_run(split_base, work / f"gen-{name}", lambda r: _edit_generator(r, change))
        case(f"gan-metrics {name}", "cli",
             ["gan-metrics", "--run-dir", run, "--classifier", model, "--n", "8", "--real", "phantom:4"],
             0 if name == "data-list" else 2, says)   # gan-metrics needs no data config
        case(f"train-classifier --synthetic {name}", "cli",
             ["train-classifier", "--data", "phantom:4", "--size", "32", "--epochs", "1",
              "--synthetic", f"NORMAL={run}", "--synthetic-per-class", "2",
              "--run-dir", work / f"clf-syn-{name}"], 2, says)
    case("control n_critic 1e9", "cli", ["control", base, "--n-critic", "1000000000"], 2, "n_critic")

    # Augmentation configs: train-classifier --augment.
    augments = {"zoom-1e6.json": ('{"zoom_p": 1, "zoom_max": 1e6}', "zoom_max"),
                "grid-1e6.json": ('{"distortion_p": 1, "distortion_grid": 1000000}', "distortion_grid"),
                "list.json": ("[1, 2]", "not a JSON object"),
                "text-p.json": ('{"rotate_p": "often"}', "rotate_p")}
    for name, (text, says) in augments.items():
        (inp / name).write_text(text)
        case(f"train-classifier --augment {name}", "cli",
             ["train-classifier", "--data", "phantom:4", "--size", "32", "--epochs", "1",
              "--balance", "augment", "--augment", inp / name, "--run-dir", work / f"clf-{name}"],
             2, says)
    (inp / "latin1.json").write_bytes(b'{"rotate_p": "\xe9"}')
    case("train-classifier --augment latin1.json", "cli",
         ["train-classifier", "--data", "phantom:4", "--size", "32", "--epochs", "1",
          "--augment", inp / "latin1.json", "--run-dir", work / "clf-latin1"], 2, "latin1.json")

    # Data specs and folders: data-info (CLI) and the Data page (library).
    nul_csv = _metadata_csv(inp / "csv-nul", [f"{c}/{i}.png,{c},p{c}{i}" for c in ("NORMAL", "PNEUMONIA")
                                              for i in range(4)] + ["NORMAL/a\x00b.png,NORMAL,px"])
    repeat = _metadata_csv(inp / "csv-repeat", ["PNEUMONIA/0.png,PNEUMONIA,q"] +
                           [f"NORMAL/0.png,NORMAL,p{i}" for i in range(50_000)])
    rows = _metadata_csv(inp / "csv-rows", [f"NORMAL/{i % 4}.png,NORMAL,p{i}" for i in range(500_001)])
    sources = {
        "phantom:300000000": (2, "phantom"),
        "phantom:-5": (2, "phantom"),
        f"mnist:{_mnist_claiming(inp / 'mnist-3M', 3_000_000, 100)}": (2, "train-images-idx3-ubyte"),
        f"mnist:{outside / 'not-there'}": (0, ""),   # the user's own flag: tries, fails offline
        str(nul_csv): (0, ""),
        str(repeat): (0, ""),
        str(rows): (2, "rows"),
    }
    for spec, (rc, says) in sources.items():
        if spec.startswith(f"mnist:{outside}"):
            continue   # downloading is allowed here: not a test for an offline CI machine
        case(f"data-info {Path(spec).name or spec}", "cli", ["data-info", spec, "--size", "16"], rc, says)
        if spec != str(rows):   # the same loader; half a million rows read once is enough
            case(f"data page {Path(spec).name or spec}", "data-page", [spec], rc, says)

    # ZIP uploads: the Data page's extraction.
    zips = {
        "latin1-name-flagged-utf8.zip": (_zip_with_raw_name(inp / "z1.zip", "NORMAL/a.png", b"NORMAL/\xe9.png", True), 2, "UTF-8"),
        "traversal.zip": (_zip_with_raw_name(inp / "z2.zip", "NORMAL/a.png", b"../../ab.png", False), 2, "leaves its folder"),
        "control-char.zip": (_zip_with_raw_name(inp / "z3.zip", "NORMAL/a.png", b"NORMAL/\x07.png", False), 2, "control characters"),
    }
    for name, (path, rc, says) in zips.items():
        case(f"zip {name}", "zip", [path, work / f"unzip-{name}"], rc, says)
    _round3(case, base, inp, work, model, good)
    return cases


def _round3(case, base: Path, inp: Path, work: Path, model: str, good: Path) -> None:
    """Issue #30's kinds: a training state from elsewhere, names that are not UTF-8, control
    values that are not numbers, .npz arrays of the wrong shapes, unusable OOD statistics, a
    critic too wide to allocate, overlapping ZIP entries."""
    import torch

    def state(change):
        return lambda r: _edit_state(r, change)

    def opt(key, value):
        def change(s):
            s["opt_gen"]["param_groups"][0][key] = value
            return s
        return change

    def exp_avg(s):
        s["opt_gen"]["state"][0]["exp_avg"] = torch.zeros(3)
        return s

    states = {
        "zero-bytes": (lambda s: b"", "empty"),
        "keys-missing": (lambda s: {"step": s["step"]}, "lacks fixed_z"),
        "a-list": (lambda s: [1, 2], "list"),
        "fixed-z-shape": (lambda s: {**s, "fixed_z": torch.zeros(3, 7)}, "fixed_z"),
        "rng-length": (lambda s: {**s, "rng": {**s["rng"], "torch": s["rng"]["torch"][:100]}}, "rng.torch"),
        "python-rng-text": (lambda s: {**s, "rng": {**s["rng"], "python": {**s["rng"]["python"],
                                                                         "state": "abc"}}}, "rng.python"),
        "n-critic-1e9": (lambda s: {**s, "live": {**s["live"], "n_critic": 10**9}}, "n_critic"),
        "clip-on-wgan-gp": (lambda s: {**s, "live": {**s["live"], "clip": 0.5}}, "clip"),
        "step-negative": (lambda s: {**s, "step": -5}, "step"),
        "sums-shape": (lambda s: {**s, "sums": torch.zeros(3)}, "sums"),
        "counts-text": (lambda s: {**s, "counts": "ab"}, "counts"),
        "generator-shape": (lambda s: {**s, "generator": {**s["generator"], "fc.weight": torch.zeros(1)}},
                            "generator"),
        "adam-eps-negative": (opt("eps", -1.0), "eps"),
        "adam-lr-1e9": (opt("lr", 1e9), "learning rate"),
        "adam-moment-shape": (exp_avg, "exp_avg"),
        "adam-betas-tensor": (opt("betas", torch.zeros(5)), "betas"),
        "fixed-z-nan": (lambda s: {**s, "fixed_z": torch.full_like(s["fixed_z"], float("nan"))}, "fixed_z"),
    }
    for name, (change, says) in states.items():
        run = _hostile_run(base, work / f"state-{name}", state(change))
        case(f"train-gan --resume state {name}", "cli",
             ["train-gan", "--resume", "--run-dir", run, "--steps", "3"], 2, says)

    nested = "[" * 100_000 + "]" * 100_000
    controls = {
        "text-values": '{"n_critic": "abc", "lr_gen": [1], "seq": "x", "sample_now": "y"}',
        "sample-now-infinity": '{"sample_now": Infinity, "seq": 1e400}',
        "nested": nested,
    }
    for name, text in controls.items():
        def write(r, t=text):
            (r / "control.json").write_text(t)
        run = _hostile_run(base, work / f"control-{name}", write)
        case(f"train-gan --resume control.json {name}", "cli",
             ["train-gan", "--resume", "--run-dir", run, "--steps", "3"], 0)
        run = _hostile_run(base, work / f"control-cmd-{name}", write)
        case(f"control --sample-now on control.json {name}", "cli", ["control", run, "--sample-now"], 0)
    nested_config = _hostile_run(base, work / "config-nested",
                                 lambda r: (r / "config.json").write_text(nested))
    case("train-gan --resume config.json nested", "cli",
         ["train-gan", "--resume", "--run-dir", nested_config], 2, "config.json")

    for where, edit in (("config.json", lambda r: _set_config(r, critic__width=1e9)),
                        ("config.json filters", lambda r: _set_config(r, critic__filters=[4096] * 5,
                                                                      critic__width=16.0))):
        run = _hostile_run(base, work / f"critic-{where.replace(' ', '-')}", edit)
        case(f"train-gan --resume critic 1e9 wide in {where}", "cli",
             ["train-gan", "--resume", "--run-dir", run, "--steps", "3"], 2, "critic")
    case("train-gan --critic-width 1e9", "cli",
         ["train-gan", "--preset", "cpu-tiny", "--data", "phantom:4", "--steps", "1",
          "--critic-width", "1e9", "--run-dir", work / "critic-flag"], 2, "width")

    # Names that are not UTF-8: a run directory, a data folder, a class folder, file names.
    latin1 = _latin1_folder(inp)
    case("data-info on Latin-1 names", "cli", ["data-info", latin1, "--size", "16"], 0)
    case("data-info on Latin-1 names, extra class kept", "cli",
         ["data-info", latin1, "--size", "16", "--keep-extra-classes"], 0)
    case("data page on Latin-1 names", "data-page", [latin1], 0)
    case("evaluate on Latin-1 names", "cli", ["evaluate", "--checkpoint", model, "--data", latin1], 0)
    case("data-info folder: on Latin-1 names", "cli", ["data-info", f"folder:{latin1}", "--size", "16"], 0)
    run = _hostile_run(base, Path(os.fsdecode(os.fsencode(work) + b"/run-\xe9t\xe9")), lambda r: None)
    case("train-gan --resume a run named in Latin-1", "cli",
         ["train-gan", "--resume", "--run-dir", run, "--steps", "3"], 0)

    # MedMNIST .npz files of the wrong shapes, types or label values.
    images = np.zeros((4, 28, 28), np.uint8)
    npzs = {
        "images-2d.npz": (dict(train_images=np.zeros((4, 28), np.uint8), train_labels=np.zeros(4, int)), "train_images"),
        "images-float.npz": (dict(train_images=np.full((4, 28, 28), np.nan, np.float32),
                                  train_labels=np.array([0, 1, 0, 1])), "train_images"),
        "images-5-channels.npz": (dict(train_images=np.zeros((4, 28, 28, 5), np.uint8),
                                       train_labels=np.array([0, 1, 0, 1])), "train_images"),
        "labels-short.npz": (dict(train_images=images, train_labels=np.zeros(3, int)), "train_labels"),
        "labels-text.npz": (dict(train_images=images, train_labels=np.array(["x"] * 4)), "train_labels"),
        "labels-nan.npz": (dict(train_images=images, train_labels=np.array([0.5, 1e30, np.nan, 1])), "train_labels"),
        "labels-0-wide.npz": (dict(train_images=images, train_labels=np.zeros((4, 0), int)), "train_labels"),
        "pneumoniamnist.npz": (dict(train_images=images, train_labels=np.array([5, 7, -1, 0])), "between 0 and 1"),
    }
    for name, (arrays, says) in npzs.items():
        (inp / "npz").mkdir(exist_ok=True)
        path = _npz(inp / "npz" / name, **arrays)
        case(f"data-info {name}", "cli", ["data-info", path, "--size", "16"], 2, says)
        case(f"data page {name}", "data-page", [path], 2, says)
    claims = _npz_claiming(inp / "npz" / "claims-78GB.npz", (100_000_000, 28, 28))
    case("data-info claims-78GB.npz", "cli", ["data-info", claims, "--size", "16"], 2, "memory")

    # A classifier whose OOD statistics cannot score an image: it predicts, without the flag.
    oods = {
        "means-all-infinite": lambda s: {**s, "ood.means": torch.full_like(s["ood.means"], float("inf"))},
        "means-nan": lambda s: {**s, "ood.means": torch.full_like(s["ood.means"], float("nan"))},
        "precision-nan": lambda s: {**s, "ood.precision": torch.full_like(s["ood.precision"], float("nan"))},
        "scale-zero": lambda s: {**s, "ood.scale": torch.zeros_like(s["ood.scale"])},
        "outlier-means-empty": lambda s: {**s, "ood.outlier_means": torch.zeros(0, s["ood.means"].shape[1])},
    }
    for name, change in oods.items():
        path = _checkpoint_tensors(inp / f"ood-{name}.safetensors", change)
        case(f"predict with OOD {name}", "cli", ["predict", "--checkpoint", path, good], 0)
        case(f"diagnose with OOD {name}", "diagnose", [path, good], 0)

    case("zip overlapping entries", "zip", [_overlapping_zip(inp / "overlap.zip"), work / "unzip-overlap"],
         2, "overlap")

    # Found while looking for the next kinds: a snapshot whose name is no step, and a ZIP of
    # empty folder entries (a million of them fit in 50 MB).
    def odd_snapshot(r):
        (r / "checkpoints" / "step_abc.safetensors").write_bytes(b"")
    run = _hostile_run(base, work / "run-odd-snapshot", odd_snapshot)
    case("train-gan --resume a snapshot named step_abc", "cli",
         ["train-gan", "--resume", "--run-dir", run, "--steps", "3"], 0)
    with zipfile.ZipFile(inp / "folders.zip", "w") as z:
        for i in range(20_001):
            z.writestr(zipfile.ZipInfo(f"d{i}/"), b"")
        z.writestr("NORMAL/a.png", b"x")
    case("zip 20,001 folder entries", "zip", [inp / "folders.zip", work / "unzip-folders"], 2, "folders")
    deep = _metadata_csv(inp / "deep", [])
    (deep / "metadata.csv").unlink()
    leaf = deep / "NORMAL"
    for _ in range(DEEP):   # os.walk recursed, one frame a level (so does mkdir(parents=True))
        leaf = leaf / "a"
        leaf.mkdir()
    _xray(leaf / "x.png", 32)
    case("data-info a folder 1,100 deep", "cli", ["data-info", deep, "--size", "16"], 0)
    case("data-info folder: a folder 1,100 deep", "cli", ["data-info", f"folder:{deep}", "--size", "16"], 0)


DEEP = 1100   # folders nested in the deep case, past Python's recursion limit


def _remove_deep(root: Path) -> None:
    """Remove the deep case's chain of folders from the bottom up (shutil.rmtree recurses, one
    frame a level, and pytest's clean-up would meet the same RecursionError)."""
    for top in sorted(root.glob("*/")):
        chain = [top]
        while (chain[-1] / "a").is_dir():
            chain.append(chain[-1] / "a")
        for folder in reversed(chain):
            for f in folder.iterdir():
                if not f.is_dir():
                    f.unlink()
            folder.rmdir() if not any(folder.iterdir()) else None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- the test ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    home = tmp / "home"
    home.mkdir()
    cases = _cases(tmp)
    (tmp / "cases.json").write_text(json.dumps(cases))
    watched = [tmp / "outside", home, REPO]
    before = _listing(*watched)
    env = {**os.environ, "HOME": str(home), "XRAY_RUNS_DIR": str(tmp / "runs"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp / "cases.json"), str(MEMORY_LIMIT)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    got = {}
    try:
        for case in cases:
            ready, _, _ = select.select([proc.stdout], [], [], CASE_TIMEOUT_S)
            if not ready:
                pytest.fail(f"case '{case['name']}' hung: no answer in {CASE_TIMEOUT_S} s")
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the worker died at case '{case['name']}': {proc.stderr.read()[-3000:]}")
            result = json.loads(line)
            got[result["name"]] = result
    finally:
        proc.kill()
        proc.wait()
        _remove_deep(tmp / "in" / "deep")
    after = _listing(*watched)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    return cases, got, changed


def test_nothing_is_written_outside_its_folder(results):
    _, _, changed = results
    assert changed == []


def test_every_case_is_a_result_or_one_clear_line(results):
    cases, got, _ = results
    failures = []
    for case in cases:
        r = got[case["name"]]
        lines = [line for line in r["stderr"].splitlines() if line.strip()]
        why = None
        if r["exc"]:
            why = f"traceback: {r['exc'].strip().splitlines()[-1]}"
        elif r["rc"] != case["rc"]:
            why = f"exit {r['rc']}, expected {case['rc']}: {(lines or [r['stdout'][-300:]])[-1]}"
        elif case["rc"] == 2 and (len(lines) != 1 or not lines[0].startswith("error: ")):
            why = f"not one 'error:' line: {lines[:3]}"
        elif case["rc"] == 2 and case["says"].lower() not in lines[0].lower():
            why = f"the line does not say {case['says']!r}: {lines[0]}"
        elif any("Traceback" in s for s in (r["stderr"], r["stdout"])):
            why = "a traceback in the output"
        if why:
            failures.append(f"{case['name']}: {why}")
    assert not failures, "\n".join(failures)


def test_the_corpus_covers_every_entry_point(results):
    cases, _, _ = results
    names = " ".join(c["name"] for c in cases)
    for entry in ("predict", "diagnose", "evaluate", "train-gan --resume", "gan-metrics",
                  "--synthetic", "--augment", "data-info", "data page", "zip", "control"):
        assert entry in names, entry


# --- issue #30: a resume after a blow-up, and a disk that fills in torch.save ------------------

def test_a_resume_after_a_non_finite_failure_goes_on_with_the_checkpoints_values(tmp_path, monkeypatch):
    """Steered into a non-finite loss, a run fails and keeps its last good checkpoint; resumed,
    it goes on with the values in force at that checkpoint (saying so), not with control.json's
    that blew it up, unless --keep-control asks for them; a value set after the failure is the
    user's new choice and is applied."""
    from core.__main__ import main
    from core.gan import losses
    from core.runs.store import RunStore

    run = _tiny_gan_run(tmp_path / "run")                      # step 2 checkpointed
    at_checkpoint = RunStore(run).status()["live"]["lr_critic"]
    RunStore(run).send_control(lr_critic=0.5)                 # the steering that blows it up
    with monkeypatch.context() as m:
        m.setattr(losses, "wgan_generator_loss", lambda scores: scores.mean() * float("nan"))
        assert main(["train-gan", "--resume", "--run-dir", str(run), "--steps", "4"]) == 1
    failed = RunStore(run).status()
    assert failed["state"] == "failed" and "non-finite" in failed["reason"]
    copies = {name: shutil.copytree(run, tmp_path / name) for name in ("keep", "new")}
    RunStore(copies["new"]).send_control(lr_critic=5e-5)     # chosen after the failure

    def resumed(path, *extra):
        assert main(["train-gan", "--resume", "--run-dir", str(path), "--steps", "3", *extra]) == 0
        store = RunStore(path)
        lr = store.metrics(["live/lr_critic"]).set_index("step")["value"]
        return store, lr.loc[3]

    store, lr = resumed(run)
    assert lr == pytest.approx(at_checkpoint)
    assert store.control()["lr_critic"] == pytest.approx(at_checkpoint)
    (note,) = store.events("control-reset")["payload"]
    assert "non-finite" in note["reason"] and "--keep-control" in note["reason"]
    store, lr = resumed(copies["keep"], "--keep-control")
    assert lr == pytest.approx(0.5)
    assert "as --keep-control asks" in store.events("control-reset")["payload"].iloc[0]["reason"]
    store, lr = resumed(copies["new"])
    assert lr == pytest.approx(5e-5) and store.events("control-reset").empty
    assert main(["train-gan", "--run-dir", str(tmp_path / "fresh"), "--keep-control"]) == 2


@pytest.mark.slow   # two training processes on a real 3 MB disk: 80 s on a loaded CI machine;
# the path it checks runs in the default suite in tests/test_atomic.py
def test_a_disk_that_fills_during_torch_save_says_so(tmp_path):
    """A real full disk (a 3 MB tmpfs in a private mount namespace): torch.save reports it as
    its own "unexpected pos" error; the status must name the full disk, no half-written file
    may stay, and once there is room the run resumes to the end."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare on this machine")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    job = f"{sys.executable} -m core train-gan --threads 1 --run-dir {mnt}/run"
    first = ("--preset cpu-tiny --data phantom:4 --batch-size 4 --checkpoint-every 10 "
             "--sample-every 10 --log-every 10 --n-samples 4 --holdout 0 --steps 2000")
    script = (f"mount -t tmpfs -o size=3m tmpfs {mnt} || exit 99; cd {REPO}; "
              f"{job} {first} > {tmp_path}/first.log 2>&1; echo first=$?; "
              f"cp {mnt}/run/status.json {tmp_path}/status.json; "
              f"find {mnt}/run -name '*.tmp' > {tmp_path}/debris.txt; "
              f"mount -o remount,size=64m {mnt}; "
              f"{job} --resume --steps $(( $(python3 -c \"import json; print(json.load(open('{mnt}/run/status.json'))['step'])\") + 2 )) "
              f"> {tmp_path}/second.log 2>&1; echo second=$?")
    env = {**os.environ, "XRAY_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          timeout=900, env=env)
    if proc.returncode == 99 or "first=" not in proc.stdout:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()[:200]}")
    first_log = (tmp_path / "first.log").read_text()
    assert "first=1" in proc.stdout, first_log[-2000:]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and "full" in status["reason"], status["reason"]
    assert "Traceback" not in first_log and "unexpected pos" not in first_log
    assert (tmp_path / "debris.txt").read_text() == ""
    assert "second=0" in proc.stdout, (tmp_path / "second.log").read_text()[-2000:]
