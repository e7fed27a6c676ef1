"""Any image file (PNG 8/16-bit, JPEG, RGB/RGBA/palette, DICOM) -> float32 (H, W) grayscale in
[0, 1], and back to a square uint8 array at the training size. Every failure is an ImageReadError
whose `reason` says, for a person, what is wrong with the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import ImageReadError

# Refuse images above this many pixels (a 7,000 x 7,000 X-ray fits). Pillow's own
# decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on as well; we check first so the
# message is ours and the limit does not depend on a global another library may change.
MAX_PIXELS = 50_000_000
# ... and above this many pixels on either side: a 1 x 50,000,000 strip passes the pixel count
# but is no radiograph, and resizing or overlaying it costs memory by its longest side.
MAX_SIDE = 16_384
# Refuse files above this size before reading them into memory.
MAX_FILE_BYTES = 512 * 1024 * 1024
# A DICOM's pixel data (declared, or a deflated dataset once inflated) may not exceed this:
# 50 M pixels of 64 bits, far above any radiograph.
MAX_DICOM_BYTES = MAX_PIXELS * 8

DICOM_SUFFIXES = (".dcm", ".dicom")

# What the DICOM header can tell before the model looks (DICOM PS3.3 C.7.3.1.1.1, C.8.11.7):
# radiographs are CR (computed), DX (digital) or RG; OT ("other") is what many secondary captures
# and anonymisers write, and DR is a common non-standard spelling. Anything else (CT, MR, US...)
# is a different kind of image.
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "OT", "DR"}
LATERAL_VIEWS = {"LL", "RL", "LLD", "RLD", "LAT", "LATERAL"}
CHEST_WORDS = ("CHEST", "THORAX", "TORAX", "THORAC", "LUNG", "TORSO")
# Mean absolute difference between colour channels (0..1) above which an image is called colour.
# Measured on phantoms: a gray image saved as an RGB JPEG (quality 30-95) stays under 1e-8; the
# same image tinted sepia, like a phone photo of a film under warm light, reaches 0.067.
COLOUR_THRESHOLD = 0.03


def _fail(name: str, reason: str) -> ImageReadError:
    exc = ImageReadError(f"{name}: {reason}")
    exc.reason = reason  # the bare reason, for skipped-file lists that already show the name
    return exc


def _read_bytes(src, name: str | None) -> tuple[bytes, str]:
    """All bytes of `src` and a display name; zero-byte and oversized inputs fail here."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        name = name or str(path)
        if not path.is_file():
            raise _fail(name, "file not found" if not path.exists() else "not a file")
        n = path.stat().st_size
        if n > MAX_FILE_BYTES:
            raise _fail(name, f"file too large ({n / 2**20:.0f} MiB > "
                              f"{MAX_FILE_BYTES // 2**20} MiB)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _fail(name, f"cannot read file ({exc.strerror or exc})") from exc
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data, name = bytes(src), name or "<bytes>"
    else:  # a binary file object, e.g. Streamlit's UploadedFile
        name = name or getattr(src, "name", None) or "<upload>"
        if hasattr(src, "seek"):
            src.seek(0)
        data = src.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise _fail(name, f"file too large (> {MAX_FILE_BYTES // 2**20} MiB)")
    if len(data) == 0:
        raise _fail(name, "zero-byte file")
    return data, str(name)


def is_dicom(data: bytes, name: str = "") -> bool:
    """DICOM by content (the 'DICM' tag after the 128-byte preamble) or by a .dcm name."""
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_SUFFIXES)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:  # a constant image carries no contrast; keep it black rather than divide by 0
        return np.zeros(x.shape, np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def _first(value) -> float:
    """Window centre/width may be multi-valued (alternative windows); use the first."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 VOI windowing to [0, 1]."""
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        y = (x - center) / width + 0.5
    else:  # LINEAR, the default; width 1 is a hard threshold
        y = (x - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5
    return np.clip(y, 0.0, 1.0).astype(np.float32)


class RulesOut(str):
    """A note saying the file is not a frontal chest radiograph at all (a CT, another body part,
    a lateral view, a colour photograph): prediction flags such an image whatever its features
    say (core.classify.predict.predict_file)."""


def _dicom_notes(ds, frames: int) -> list[str]:
    """Cautions from the header of a readable DICOM: not a radiograph, not the chest, a lateral
    view, several frames. Missing or empty fields say nothing (anonymisers often clear them)."""
    notes = []
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        notes.append(RulesOut(f"DICOM modality is {modality}, not a radiograph (CR or DX); the "
                              "model knows only chest radiographs"))
    part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if part and not any(w in part for w in CHEST_WORDS):
        notes.append(RulesOut(f"DICOM body part is {part}, not the chest"))
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view in LATERAL_VIEWS:
        notes.append(RulesOut(f"DICOM view position is {view}, a lateral view; the model knows "
                              "only frontal (PA or AP) views"))
    if frames > 1:
        notes.append(f"multi-frame DICOM ({frames} frames); frame {frames // 2 + 1} was used")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if photometric and not photometric.startswith("MONOCHROME"):
        notes.append(f"colour DICOM ({photometric}), converted to gray; X-rays are monochrome")
    return notes


def _header_int(ds, key: str, default: int | None) -> int | None:
    """An integer header field as written, or `default` when it is missing, empty or not a
    number (anonymisers and converters write 'abc', '' or 12.5 there)."""
    try:
        value = ds.get(key, None)
        value = value.value if hasattr(value, "value") else value
        if value in (None, "", b""):
            return default
        number = float(value[0] if isinstance(value, (list, tuple)) else value)
        return int(number) if number.is_integer() else default
    except Exception:  # noqa: BLE001 - any malformed element is "unreadable"
        return default


def _inflated_size(data: bytes, limit: int) -> int | None:
    """For a deflated-transfer-syntax DICOM: its dataset's inflated size, counting only up to
    `limit` bytes (so a bomb costs `limit`, not its 10 GiB); None for any other file."""
    import zlib

    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    try:
        fp = io.BytesIO(data)
        read_preamble(fp, force=True)
        meta = _read_file_meta_info(fp)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return None
        inflater, total, rest = zlib.decompressobj(-zlib.MAX_WBITS), 0, fp.read()
        for start in range(0, len(rest), 1 << 16):
            total += len(inflater.decompress(rest[start:start + (1 << 16)], limit + 1 - total))
            if total > limit:
                return total
        return total
    except Exception:  # noqa: BLE001 - not readable this way: dcmread says what is wrong
        return None


def _read_dicom(data: bytes, name: str, notes: list[str] | None = None) -> np.ndarray:
    """Decode a DICOM to float (H, W) in [0, 1]; cautions from its header go into `notes`.

    Header values are read defensively: an unreadable window, rescale or LUT falls back to the
    plain pixel range (said in the notes); only what cannot be displayed is refused. Declared
    sizes are checked before anything is inflated or decoded."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    notes = notes if notes is not None else []
    max_bytes = MAX_DICOM_BYTES
    inflated = _inflated_size(data, max_bytes)
    if inflated is not None and inflated > max_bytes:
        raise _fail(name, f"deflated DICOM inflates to more than {max_bytes // 2**20} MB; refused "
                          "as a possible decompression bomb")
    try:
        # force=True also reads files without the preamble, which some exporters write.
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise _fail(name, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise _fail(name, "DICOM file has no pixel data (a report or structured document?)")
    rows, cols = _header_int(ds, "Rows", None), _header_int(ds, "Columns", None)
    if not rows or not cols or rows < 0 or cols < 0:
        raise _fail(name, "DICOM header has no usable image size (Rows and Columns must be "
                          "positive whole numbers)")
    frames = _header_int(ds, "NumberOfFrames", None) if "NumberOfFrames" in ds else 1
    if frames is None or frames < 1:
        notes.append("the DICOM's NumberOfFrames is unreadable; one frame assumed")
        frames = 1
        if "NumberOfFrames" in ds:   # the decoder reads it too
            del ds.NumberOfFrames
    samples = max(_header_int(ds, "SamplesPerPixel", 1) or 1, 1)
    bits = max(_header_int(ds, "BitsAllocated", 16) or 16, 1)
    if rows * cols > MAX_PIXELS or max(rows, cols) > MAX_SIDE:
        raise _fail(name, f"image too large ({cols}x{rows} pixels; the limits are "
                          f"{MAX_PIXELS:,} pixels and {MAX_SIDE:,} on a side)")
    if rows * cols * frames * samples * -(-bits // 8) > max_bytes:
        raise _fail(name, f"DICOM declares {frames} frame(s) of {cols}x{rows}x{samples} at {bits} "
                          f"bits, more than {max_bytes // 2**20} MB; refused")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", None) or str(ts or "unknown")
        hint = ("; compressed DICOM needs a decoder such as pylibjpeg or gdcm"
                if getattr(ts, "is_compressed", False) else "")
        raise _fail(name, f"cannot decode DICOM pixel data (transfer syntax {ts_name}{hint}; "
                          f"{type(exc).__name__}: {exc})") from exc
    try:
        notes += _dicom_notes(ds, frames)
    except Exception:  # noqa: BLE001 - cautions are a courtesy; a bad tag must not stop the image
        pass
    if frames > 1 and arr.ndim >= 3 and arr.shape[0] == frames:  # (F, R, C[, 3]): the middle one
        arr = arr[frames // 2]
    if arr.ndim == 3:  # colour (R, C, 3), already RGB after pydicom's YBR conversion
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _minmax(arr)
    if arr.ndim != 2 or arr.size == 0:
        raise _fail(name, f"unsupported DICOM pixel array of shape {arr.shape}")
    try:
        x = apply_modality_lut(arr, ds).astype(np.float64)  # RescaleSlope/Intercept or a LUT
        if not np.isfinite(x).all():
            raise ValueError("non-finite values")
    except Exception:  # noqa: BLE001 - a text RescaleSlope, a broken Modality LUT
        notes.append("the DICOM's rescale or modality LUT is unreadable; raw pixel values used")
        x = arr.astype(np.float64)
    y = None
    try:
        if "WindowCenter" in ds and "WindowWidth" in ds:
            center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
            if width > 0 and np.isfinite(center) and np.isfinite(width):
                fn = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
                y = _window(x, center, width, fn)
        elif "VOILUTSequence" in ds:
            y = _minmax(apply_voi_lut(arr, ds).astype(np.float64))
    except Exception:  # noqa: BLE001 - an empty or text window, a broken VOI LUT
        y = None
    if y is None and ("WindowCenter" in ds or "VOILUTSequence" in ds):
        notes.append("the DICOM's display window is unreadable; the full pixel range is shown")
    if y is None or not np.isfinite(y).all():
        y = _minmax(np.nan_to_num(x))
    if str(ds.get("PhotometricInterpretation", "") or "").upper() == "MONOCHROME1":
        y = 1.0 - y  # MONOCHROME1: low values are white; flip so bone is bright as usual
    return np.ascontiguousarray(y, dtype=np.float32)


def _open_pil(data: bytes, name: str) -> Image.Image:
    """A fully decoded Pillow image (first frame), size-checked before decoding."""
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that; treat the warning as refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
                raise _fail(name, f"image too large ({w}x{h} pixels; the limits are "
                                  f"{MAX_PIXELS:,} pixels and {MAX_SIDE:,} on a side); refused "
                                  f"as a possible decompression bomb")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise _fail(name, "not an image (unrecognised file format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(name, f"image too large; refused as a possible decompression bomb "
                          f"({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _fail(name, f"truncated or corrupt image ({exc})") from exc
    except Exception as exc:  # a plugin bug must not take a data scan down
        raise _fail(name, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    if im.size[0] == 0 or im.size[1] == 0:
        raise _fail(name, "image has zero width or height")
    try:
        return ImageOps.exif_transpose(im)  # phone photos of films carry their rotation in EXIF
    except Exception:
        return im


def _colour_note(im: Image.Image) -> list[str]:
    """["a colour image ..."] when an RGB(A) image's channels differ visibly, else []."""
    if im.mode not in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr"):
        return []
    rgb = np.asarray(im.convert("RGB").reduce(max(1, max(im.size) // 256)), np.float32) / 255.0
    spread = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())
    if spread <= COLOUR_THRESHOLD:
        return []
    return [RulesOut("a colour image (a photograph?), converted to gray; X-rays are monochrome")]


def _pil_to_gray(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit PNG/TIFF: full-scale 0..65535
        return (np.asarray(im, dtype=np.float64) / 65535.0).astype(np.float32)
    if mode == "I":  # 32-bit int; 16-bit PNGs land here in older Pillow versions
        a = np.asarray(im, dtype=np.float64)
        if a.min() >= 0 and a.max() <= 65535:
            return (a / 65535.0).astype(np.float32)
        return _minmax(a)
    if mode == "F":
        return _minmax(np.asarray(im, dtype=np.float64))
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        # Transparent pixels become black, the background of a radiograph.
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        return (gray * rgba[..., 3]).astype(np.float32)
    if im.mode != "L":
        im = im.convert("L")  # RGB, CMYK, YCbCr, 1: ITU-R 601 luma
    return np.asarray(im, dtype=np.float32) / 255.0


def _decode(src, name: str | None, notes: list[str] | None) -> np.ndarray:
    data, name = _read_bytes(src, name)
    if is_dicom(data, name):
        img = _read_dicom(data, name, notes)
    else:
        im = _open_pil(data, name)
        if notes is not None:
            notes += _colour_note(im)
        img = _pil_to_gray(im)
    if not np.isfinite(img).all():
        img = np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)


def read_image(src: str | Path | bytes | BinaryIO, name: str | None = None) -> np.ndarray:
    """Read one image file, path, bytes or binary file object as float32 (H, W) in [0, 1].

    PNG (8/16-bit), JPEG and anything else Pillow reads are converted to grayscale (alpha over
    black). DICOM (found by its 'DICM' marker or a .dcm name) gets its rescale slope/intercept,
    the file's window centre/width when present (else min-max), MONOCHROME1 inversion, and the
    middle frame of a multi-frame file. Raises ImageReadError (with `.reason`) on zero-byte,
    truncated, non-image, oversized or undecodable input.
    """
    return _decode(src, name, None)


def read_image_notes(src: str | Path | bytes | BinaryIO,
                     name: str | None = None) -> tuple[np.ndarray, list[str]]:
    """read_image, plus cautions about what the file holds that decoding alone does not catch
    (a CT or ultrasound DICOM, another body part, a lateral view, several frames, a colour
    photograph), each a short phrase for a person. For one image shown to a user; data scans
    use read_image and skip the colour check."""
    notes: list[str] = []
    return _decode(src, name, notes), notes


def read_rgb(src: str | Path | bytes | BinaryIO, name: str | None = None) -> np.ndarray:
    """Like read_image but keeps colour: float32 (H, W, 3) in [0, 1]. Grayscale and DICOM inputs
    are repeated over the three channels; alpha is composited over black."""
    data, name = _read_bytes(src, name)
    if is_dicom(data, name):
        return np.repeat(_read_dicom(data, name)[..., None], 3, axis=2)
    im = _open_pil(data, name)
    if im.mode in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1"):
        return np.repeat(_pil_to_gray(im)[..., None], 3, axis=2)
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:4], dtype=np.float32)


def to_uint8(img: np.ndarray, size: int | None = None) -> np.ndarray:
    """float [0, 1] (H, W) or (H, W, 3) (or uint8 0..255) -> uint8 of the same layout, resized
    straight to (size, size) when `size` is given (aspect ratio not kept, as the real data was).

    Resizing runs on float data with Pillow's BILINEAR filter, which widens its support when
    shrinking, so downscaling averages over the source area instead of aliasing.
    """
    a = np.asarray(img)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {a.shape}")
    if size is not None and a.shape[:2] != (size, size):
        chans = [a] if a.ndim == 2 else [a[..., c] for c in range(a.shape[2])]
        chans = [Image.fromarray(np.ascontiguousarray(c)) for c in chans]  # mode "F"
        chans = [np.asarray(c.resize((size, size), Image.BILINEAR)) for c in chans]
        a = chans[0] if a.ndim == 2 else np.stack(chans, axis=2)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
