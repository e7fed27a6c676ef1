"""Safe extraction of an uploaded ZIP of class folders: refuses path traversal, absolute paths,
symlinks, too many files and zip bombs (total size or compression ratio) with a message for a
person, and never trusts the sizes the archive claims while writing."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from core.data.dataset import IMAGE_SUFFIXES
from core.data.deid import deidentify_tree
from core.data.sources import canonical_class
from core.errors import UserError

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 2 * 1024**3       # uncompressed, all members together
MAX_RATIO = 200                     # uncompressed / compressed, per member and in total
_RATIO_MIN_BYTES = 1024 * 1024      # tiny members compress absurdly well and harm nobody
_SKIP_PARTS = ("__MACOSX",)         # macOS resource-fork folders: never images
_SKIP_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
_CHUNK = 1024 * 1024


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's safe relative path, or None for entries we skip; raises on unsafe names."""
    name = info.filename.replace("\\", "/")
    if "\x00" in name or any(ord(c) < 32 for c in name):
        raise UserError(f"The ZIP file contains a name with control characters "
                        f"({info.filename!r}); refusing to extract it.")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"The ZIP file contains an absolute path ({info.filename!r}); refusing to "
                        "extract it. Zip the class folders with relative paths.")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"The ZIP file contains a path that leaves its folder ({info.filename!r}); "
                        "refusing to extract it.")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UserError(f"The ZIP file contains a symbolic link ({info.filename!r}); links are "
                        "not allowed in uploads.")
    if not parts or any(p in _SKIP_PARTS for p in parts) or parts[-1] in _SKIP_NAMES:
        return None
    return PurePosixPath(*parts)


def _check_overlap(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse entries whose bytes overlap: a ZIP whose entries share one compressed block (the
    "overlapping" zip bomb, D. Fifield 2019) unpacks each entry to the full block, so a few
    hundred kB hold gigabytes while every entry's own ratio looks modest. An entry's local
    header (30 bytes and its name) and its compressed data must end before the next begins."""
    def name_bytes(info: zipfile.ZipInfo) -> int:   # as stored: UTF-8 when flagged, else cp437
        try:
            return len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))
        except UnicodeEncodeError:
            return 0   # too short a span only lets an overlap by; the write limit still holds

    spans = sorted((i.header_offset, i.header_offset + 30 + name_bytes(i) + i.compress_size,
                    i.filename) for i in infos)
    for (start, end, name), (nxt, _, other) in zip(spans, spans[1:]):
        if end > nxt:
            raise UserError(f"The ZIP file's entries overlap ({name!r} runs into {other!r}); "
                            f"this looks like a zip bomb.")


def _check_sizes(infos: list[zipfile.ZipInfo], max_files: int, max_total_bytes: int,
                 max_ratio: float, archive_bytes: int | None = None) -> None:
    """The claimed sizes within the limits: files, total bytes, each member's ratio and the
    total's, against the archive's real size when known (the members' compressed sizes can
    count one block many times)."""
    _check_overlap(infos)
    files = [i for i in infos if not i.is_dir()]
    if len(files) > max_files:
        raise UserError(f"The ZIP file holds {len(files):,} files; the limit is {max_files:,}.")
    # Folders count too: a 50 MB ZIP of empty folder entries makes a million folders.
    if len(infos) - len(files) > max_files:
        raise UserError(f"The ZIP file holds {len(infos) - len(files):,} folders; the limit is "
                        f"{max_files:,}.")
    total = sum(i.file_size for i in files)
    if total > max_total_bytes:
        raise UserError(f"The ZIP file would unpack to {total / 2**20:,.0f} MiB; the limit is "
                        f"{max_total_bytes / 2**20:,.0f} MiB.")
    packed = sum(i.compress_size for i in files)
    if archive_bytes is not None:
        packed = min(packed, archive_bytes)
    for i in files:
        if i.file_size > _RATIO_MIN_BYTES and i.file_size > max_ratio * max(i.compress_size, 1):
            raise UserError(f"{i.filename!r} in the ZIP file expands {i.file_size / max(i.compress_size, 1):,.0f}"
                            f" times (limit {max_ratio:g}); this looks like a zip bomb.")
    if total > _RATIO_MIN_BYTES and total > max_ratio * max(packed, 1):
        raise UserError(f"The ZIP file expands {total / max(packed, 1):,.0f} times (limit "
                        f"{max_ratio:g}); this looks like a zip bomb.")


def extract_zip(src: str | Path | BinaryIO, dest: str | Path, max_files: int = MAX_FILES,
                max_total_bytes: int = MAX_TOTAL_BYTES, max_ratio: float = MAX_RATIO) -> Path:
    """Extract the ZIP `src` (path or binary file object) into the new folder `dest`.

    Every member is checked before anything is written; while writing, bytes are counted again
    (the sizes in a ZIP header can lie). DICOM files are then de-identified in place, and one
    that cannot be is deleted (core.data.deid.deidentify_tree). On any refusal `dest` is removed
    and UserError raised. Returns the folder holding the data (see data_folder).
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise UserError(f"The folder to extract into ({dest.name}) already exists and is not empty.")
    try:
        zf = zipfile.ZipFile(src)
    except zipfile.BadZipFile:
        raise UserError("The uploaded file is not a valid ZIP archive.") from None
    except UnicodeDecodeError:   # a name flagged UTF-8 that is not (Python decodes them eagerly)
        raise UserError("The ZIP file has a file name that claims to be UTF-8 but is not; zip "
                        "the folders again with a current tool.") from None
    except OSError as exc:
        raise UserError(f"Cannot read the ZIP file: {exc.strerror or exc}") from None
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zf:
            infos = zf.infolist()
            archive_bytes = zf.fp.seek(0, 2)
            _check_sizes(infos, max_files, max_total_bytes, max_ratio, archive_bytes)
            plan = [(i, _member_path(i)) for i in infos]
            written = 0
            # What really unpacks, counted as it is written, whatever the headers claim.
            limit = min(max_total_bytes, max(_RATIO_MIN_BYTES, max_ratio * archive_bytes))
            for info, rel in plan:
                if rel is None:
                    continue
                target = dest.joinpath(*rel.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as fin, open(target, "xb") as fout:
                    while chunk := fin.read(_CHUNK):
                        written += len(chunk)
                        if written > max_total_bytes:
                            raise UserError("The ZIP file unpacks to more than "
                                            f"{max_total_bytes / 2**20:,.0f} MiB; refusing it.")
                        if written > limit:
                            raise UserError(f"The ZIP file unpacks to more than {max_ratio:g} "
                                            f"times its size; this looks like a zip bomb.")
                        fout.write(chunk)
            # An uploaded DICOM is kept only de-identified (core.data.deid): a clinician's film
            # carries its patient's name, ID and birth date.
            deidentify_tree(dest)
    except UserError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except FileExistsError as exc:  # two members with the same name (e.g. 'a/x' and 'a\\x')
        shutil.rmtree(dest, ignore_errors=True)
        raise UserError(f"The ZIP file holds the same path twice ({Path(exc.filename).name}).") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError,
            NotImplementedError) as exc:
        # RuntimeError: encrypted members; NotImplementedError: unsupported compression
        shutil.rmtree(dest, ignore_errors=True)
        raise UserError(f"The ZIP file is damaged or unsupported ({exc}).") from None
    if not any(dest.iterdir()):
        shutil.rmtree(dest, ignore_errors=True)
        raise UserError("The ZIP file holds no files.")
    return data_folder(dest)


def data_folder(dest: str | Path) -> Path:
    """The folder of an extracted ZIP that holds its data: its single top-level folder when that
    only wraps the data (zipping a folder of class folders), else `dest` itself. A lone class
    folder (`COVID-19/`, or any folder with images directly inside) is data, not a wrapper:
    unwrapped, its images would lie outside any class folder."""
    dest = Path(dest)
    entries = list(dest.iterdir())
    if len(entries) != 1 or not entries[0].is_dir():
        return dest
    inner = entries[0]
    holds_images = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in inner.iterdir())
    return dest if canonical_class(inner.name) or holds_images else inner
