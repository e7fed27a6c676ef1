"""Safe ZIP extraction: class folders come out; traversal, absolute paths, symlinks, too many
files and zip bombs are refused with a UserError and leave nothing behind."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from core.data.archive import data_folder, extract_zip
from core.errors import UserError


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_extracts_class_folders(tmp_path):
    src = _zip({"COVID-19/a.png": b"x1", "NORMAL/b.png": b"x2", "__MACOSX/._a.png": b"junk",
                "NORMAL/.DS_Store": b"junk"})
    out = extract_zip(src, tmp_path / "up")
    assert out == tmp_path / "up"
    assert (out / "COVID-19" / "a.png").read_bytes() == b"x1"
    assert (out / "NORMAL" / "b.png").read_bytes() == b"x2"
    assert not (out / "__MACOSX").exists() and not (out / "NORMAL" / ".DS_Store").exists()


def test_single_wrapping_folder_is_returned(tmp_path):
    src = _zip({"mydata/COVID-19/a.png": b"1", "mydata/NORMAL/b.png": b"2"})
    out = extract_zip(src, tmp_path / "up")
    assert out == tmp_path / "up" / "mydata" == data_folder(tmp_path / "up")
    assert sorted(p.name for p in out.iterdir()) == ["COVID-19", "NORMAL"]


@pytest.mark.parametrize("entries", [
    {"COVID-19/a.png": b"1", "COVID-19/b.png": b"2"},             # a class folder
    {"tb/a.png": b"1", "tb/notes.txt": b"2"},                     # images directly inside
    {"Normal/images/a.png": b"1", "Normal/masks/a.png": b"2"},    # Kaggle's one class
])
def test_a_lone_class_folder_is_the_data_not_a_wrapper(tmp_path, entries):
    out = extract_zip(_zip(entries), tmp_path / "up")
    assert out == tmp_path / "up"
    assert data_folder(out) == out   # as the dashboard finds it again on the next upload


@pytest.mark.parametrize("name, words", [
    ("../evil.png", "leaves its folder"),
    ("NORMAL/../../evil.png", "leaves its folder"),
    ("/etc/evil.png", "absolute path"),
    ("C:/evil.png", "absolute path"),
])
def test_refuses_unsafe_paths(tmp_path, name, words):
    src = _zip({"NORMAL/ok.png": b"1", name: b"2"})
    with pytest.raises(UserError, match=words):
        extract_zip(src, tmp_path / "up")
    assert not (tmp_path / "up").exists()
    assert not (tmp_path / "evil.png").exists()


def test_refuses_symlinks(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("NORMAL/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    buf.seek(0)
    with pytest.raises(UserError, match="symbolic link"):
        extract_zip(buf, tmp_path / "up")
    assert not (tmp_path / "up").exists()


def test_refuses_too_many_files(tmp_path):
    src = _zip({f"NORMAL/{i}.png": b"x" for i in range(12)})
    with pytest.raises(UserError, match="12 files"):
        extract_zip(src, tmp_path / "up", max_files=10)


def test_refuses_too_large_total(tmp_path):
    src = _zip({"NORMAL/a.png": b"\1" * 5000, "NORMAL/b.png": b"\2" * 5000}, zipfile.ZIP_STORED)
    with pytest.raises(UserError, match="unpack to"):
        extract_zip(src, tmp_path / "up", max_total_bytes=8000)


def test_refuses_zip_bomb_ratio(tmp_path):
    # 8 MiB of zeros deflates to a few KiB: a ratio in the thousands.
    src = _zip({"NORMAL/bomb.png": bytes(8 * 2**20)})
    with pytest.raises(UserError, match="zip bomb"):
        extract_zip(src, tmp_path / "up")
    assert not (tmp_path / "up").exists()


def test_lying_header_sizes_are_refused(tmp_path):
    # Claim 10 bytes in the central directory but store 5000: refused (zipfile's CRC check or our
    # byte count while writing), and nothing is left behind.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("NORMAL/a.png", b"\1" * 5000)
    raw = bytearray(buf.getvalue())
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (10).to_bytes(4, "little")  # uncompressed size in the central record
    with pytest.raises(UserError):
        extract_zip(io.BytesIO(bytes(raw)), tmp_path / "up", max_total_bytes=1000)
    assert not (tmp_path / "up").exists()


def test_not_a_zip(tmp_path):
    with pytest.raises(UserError, match="not a valid ZIP"):
        extract_zip(io.BytesIO(b"this is not a zip"), tmp_path / "up")


def test_empty_zip(tmp_path):
    with pytest.raises(UserError, match="no files"):
        extract_zip(_zip({}), tmp_path / "up")
