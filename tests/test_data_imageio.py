"""core.data.imageio: every supported format decodes to float32 (H, W) in [0, 1] with the right values;
every bad input raises ImageReadError with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import core.data.imageio as imageio
from conftest import huge_png_header
from conftest import write_dicom as _dicom
from core.errors import ImageReadError
from core.data.imageio import read_image, read_image_notes, read_rgb, to_uint8

pydicom = pytest.importorskip("pydicom")
from pydicom.uid import JPEGLSLossless  # noqa: E402


def _png(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _ramp(h=24, w=32, hi=255, dtype=np.uint8) -> np.ndarray:
    return np.linspace(0, hi, h * w).reshape(h, w).round().astype(dtype)


# --- ordinary raster formats -----------------------------------------------------------------

def test_png_8bit_values_exact():
    arr = _ramp()
    img = read_image(_png(arr), "a.png")
    assert img.dtype == np.float32 and img.shape == (24, 32)
    np.testing.assert_allclose(img, arr / 255.0, atol=1e-6)


def test_png_16bit_full_scale():
    arr = _ramp(hi=65535, dtype=np.uint16)
    data = _png(arr)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit PNG
    img = read_image(data, "a16.png")
    np.testing.assert_allclose(img, arr / 65535.0, atol=1e-6)
    assert img.max() == pytest.approx(1.0) and 0 < img[12, 5] < 1


def test_jpeg_rgb_to_luma():
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[:] = (200, 100, 50)
    img = read_image(_png(arr, fmt="JPEG", quality=95), "c.jpg")
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255.0
    assert img.shape == (16, 16)
    assert abs(float(img.mean()) - expected) < 3 / 255


def test_rgba_alpha_over_black_and_la_and_palette():
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[:2, :, 3] = 0  # top half transparent white
    img = read_image(_png(rgba), "t.png")
    np.testing.assert_allclose(img[:2], 0.0, atol=1e-6)
    np.testing.assert_allclose(img[2:], 1.0, atol=1e-6)
    la = read_image(_png(rgba, mode="LA"), "la.png")
    np.testing.assert_allclose(la, img, atol=1e-6)
    gray = _ramp(8, 8)
    pal = read_image(_png(np.stack([gray] * 3, axis=2), mode="P"), "p.png")
    assert pal.shape == (8, 8) and pal[0, 0] < pal[-1, -1]


def test_path_bytes_and_file_object_agree(tmp_path):
    data = _png(_ramp())
    path = tmp_path / "x.png"
    path.write_bytes(data)
    a, b, c = read_image(path), read_image(data), read_image(io.BytesIO(data))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_read_rgb_keeps_colour():
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[..., 0] = 255
    rgb = read_rgb(_png(arr), "r.png")
    assert rgb.shape == (4, 4, 3)
    np.testing.assert_allclose(rgb[0, 0], [1.0, 0.0, 0.0], atol=1e-6)
    assert read_rgb(_png(_ramp(4, 4)), "g.png").shape == (4, 4, 3)


# --- DICOM -----------------------------------------------------------------------------------

def test_dicom_minmax_without_window(tmp_path):
    raw = _ramp(8, 8, hi=4000, dtype=np.uint16) + 50
    img = read_image(_dicom(tmp_path / "a.dcm", raw))
    np.testing.assert_allclose(img, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_dicom_rescale_and_window_numerically(tmp_path):
    raw = _ramp(8, 8, hi=4000, dtype=np.uint16)
    path = _dicom(tmp_path / "w.dcm", raw, RescaleSlope=2, RescaleIntercept=-1024,
                  WindowCenter=1000, WindowWidth=2000)
    img = read_image(path)
    hu = raw.astype(np.float64) * 2 - 1024  # the modality value the window applies to
    expected = np.clip((hu - (1000 - 0.5)) / (2000 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(img, expected, atol=1e-5)
    # Without the rescale the same window would give different numbers: the slope matters.
    assert not np.allclose(img, np.clip((raw - 999.5) / 1999 + 0.5, 0, 1), atol=1e-3)


def test_dicom_monochrome1_inverted(tmp_path):
    raw = _ramp(8, 8, hi=4000, dtype=np.uint16)
    m2 = read_image(_dicom(tmp_path / "m2.dcm", raw))
    m1 = read_image(_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m1[0, 0] == pytest.approx(1.0)  # the lowest stored value is white in MONOCHROME1


def test_dicom_found_by_content_and_by_name(tmp_path):
    raw = _ramp(8, 8, hi=4000, dtype=np.uint16)
    no_ext = _dicom(tmp_path / "scan_without_extension", raw)
    assert no_ext.read_bytes()[128:132] == b"DICM"
    assert read_image(no_ext).shape == (8, 8)
    no_preamble = _dicom(tmp_path / "raw.dcm", raw, preamble=False)
    assert no_preamble.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(no_preamble), read_image(no_ext), atol=1e-6)


def test_dicom_multiframe_takes_middle_frame(tmp_path):
    frames = np.zeros((3, 6, 6), np.uint16)
    for k in range(3):
        frames[k, k, k] = 1000  # frame k is bright only at (k, k)
    img = read_image(_dicom(tmp_path / "mf.dcm", frames))
    assert np.unravel_index(img.argmax(), img.shape) == (1, 1)


def test_dicom_header_notes(tmp_path):
    """The header says what decoding cannot: another modality, body part or view, several
    frames. A plain chest DX says nothing, nor do fields an anonymiser left empty."""
    px = np.arange(36, dtype=np.uint16).reshape(6, 6)
    plain = _dicom(tmp_path / "dx.dcm", px, BodyPartExamined="CHEST", ViewPosition="PA")
    assert read_image_notes(plain)[1] == []
    blank = _dicom(tmp_path / "blank.dcm", px, Modality="", BodyPartExamined="")
    assert read_image_notes(blank)[1] == []
    cases = {"ct": ({"Modality": "CT"}, "modality is CT"),
             "knee": ({"BodyPartExamined": "KNEE"}, "body part is KNEE"),
             "lateral": ({"ViewPosition": "LL"}, "lateral view")}
    for name, (attrs, words) in cases.items():
        img, notes = read_image_notes(_dicom(tmp_path / f"{name}.dcm", px, **attrs))
        assert len(notes) == 1 and words in notes[0], (name, notes)
        np.testing.assert_array_equal(img, read_image(plain))  # notes never change the pixels
    frames = np.stack([px] * 3)
    assert read_image_notes(_dicom(tmp_path / "mf.dcm", frames))[1] == [
        "multi-frame DICOM (3 frames); frame 2 was used"]


def test_colour_note_only_for_colour():
    gray = _ramp(64, 64)
    gray_jpeg = _png(np.stack([gray] * 3, -1), fmt="JPEG", quality=90)
    assert read_image_notes(gray_jpeg, "g.jpg")[1] == []
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 2], colour[32:, :, 1] = 220, 160  # blue sky over a green field
    img, notes = read_image_notes(_png(colour, fmt="JPEG"), "photo.jpg")
    assert len(notes) == 1 and "colour image" in notes[0]
    np.testing.assert_array_equal(img, read_image(_png(colour, fmt="JPEG"), "photo.jpg"))


def test_dicom_without_pixel_data(tmp_path):
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(_dicom(tmp_path / "sr.dcm", None))


def test_dicom_compressed_without_decoder(tmp_path):
    from pydicom.encaps import encapsulate

    path = _dicom(tmp_path / "c.dcm", _ramp(8, 8, hi=4000, dtype=np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match="cannot decode DICOM"):
        read_image(path)


# --- bad input -------------------------------------------------------------------------------


def _noise_png() -> bytes:
    data = _png(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    assert len(data) > 4000  # noise does not compress, so cutting at 2000 bytes truncates
    return data


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_bytes(b""), "zero-byte"),
    (lambda p: p.write_bytes(_noise_png()[:2000]), "truncated"),
    (lambda p: p.write_text("hello, I am not a picture\n"), "not an image"),
    (lambda p: p.write_bytes(huge_png_header(40_000, 40_000)), "too large"),
])
def test_bad_files_raise_with_reason(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert reason in info.value.reason and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")


def test_max_pixels_limit_applies(monkeypatch):
    data = _png(_ramp(20, 20))
    assert read_image(data).shape == (20, 20)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 399)
    with pytest.raises(ImageReadError, match="too large"):
        read_image(data)


def test_pillow_bomb_guard_stays_on():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0
    assert imageio.MAX_PIXELS <= 2 * Image.MAX_IMAGE_PIXELS


# --- to_uint8 --------------------------------------------------------------------------------

def test_to_uint8_resizes_straight_to_square():
    img = np.zeros((40, 80), np.float32)
    img[:, 40:] = 1.0  # right half white
    out = to_uint8(img, 16)
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out[:, :7].max() == 0 and out[:, 9:].min() == 255  # halves stay halves: no crop/pad


def test_to_uint8_values_and_area_average():
    np.testing.assert_array_equal(to_uint8(np.array([[0.0, 0.5, 1.0]])), [[0, 128, 255]])
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)  # 1-pixel checkerboard
    small = to_uint8(checker, 8)
    assert np.abs(small.astype(int) - 128).max() <= 2  # averaged, not aliased to 0 or 255
    u8 = _ramp(12, 12)
    np.testing.assert_array_equal(to_uint8(u8), u8)
    assert to_uint8(np.zeros((10, 12, 3), np.float32), 6).shape == (6, 6, 3)


# --- DICOM headers as real scanners and anonymisers write them -----------------------------

def _raw_dicom(path, rows=24, cols=32, transfer=None, **elements):
    """_dicom, then header elements written as text (VR LO) whatever their VR should be (a
    text WindowWidth, Rows 'abc'), as converters and anonymisers write them; pydicom reads them
    back as the strings they are."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement

    px = _ramp(rows, cols, hi=4000, dtype=np.uint16)
    _dicom(path, px)
    ds = pydicom.dcmread(path)
    for key, raw in elements.items():
        tag = tag_for_keyword(key)
        ds[tag] = DataElement(tag, "LO", raw)
    if transfer is not None:
        ds.file_meta.TransferSyntaxUID = transfer
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("elements, note", [
    ({"WindowCenter": "", "WindowWidth": ""}, "display window is unreadable"),
    ({"WindowCenter": "bright", "WindowWidth": "wide"}, "display window is unreadable"),
    ({"WindowCenter": "2000", "WindowWidth": "-5"}, None),                  # no usable width
    ({"RescaleSlope": "steep", "RescaleIntercept": "0"}, "rescale or modality LUT"),
    ({"NumberOfFrames": "abc"}, None),
], ids=["empty-window", "text-window", "negative-width", "text-slope", "text-frames"])
def test_broken_header_values_fall_back_and_say_so(tmp_path, elements, note):
    path = _raw_dicom(tmp_path / "x.dcm", **elements)
    img, notes = read_image_notes(path)
    assert img.shape == (24, 32) and np.isfinite(img).all() and img.max() > img.min()
    if note:
        assert any(note in n for n in notes), notes


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("elements", [{"Rows": "abc"}, {"Columns": ""}, {"Rows": "-24"}])
def test_an_unusable_image_size_is_one_clear_line(tmp_path, elements):
    path = _raw_dicom(tmp_path / "x.dcm", **elements)
    with pytest.raises(ImageReadError, match="x.dcm: .*(image size|cannot decode|unsupported)"):
        read_image(path)


def test_declared_size_beyond_the_budget_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "MAX_DICOM_BYTES", 10_000)
    path = _raw_dicom(tmp_path / "big.dcm", NumberOfFrames="50")
    with pytest.raises(ImageReadError, match="declares 50 frame"):
        read_image(path)


def test_a_deflated_dicom_bomb_is_refused_without_inflating_it_all(tmp_path, monkeypatch):
    """A deflated DICOM whose dataset inflates past the budget: refused after inflating at most
    the budget (the real budget is 400 MB; a 10 GiB bomb costs that, not 10 GiB)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    path = _raw_dicom(tmp_path / "bomb.dcm", rows=256, cols=256,
                      transfer=DeflatedExplicitVRLittleEndian)
    assert path.stat().st_size < 60_000              # 128 KB of pixels, well compressed
    assert read_image(path).shape == (256, 256)        # within the budget: read as usual
    monkeypatch.setattr(imageio, "MAX_DICOM_BYTES", 50_000)
    with pytest.raises(ImageReadError, match="inflates to more than"):
        read_image(path)
