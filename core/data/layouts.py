"""The folder layouts of the big public chest X-ray sets, read into (path, class, metadata) items
for core.data.sources: NIH ChestX-ray14 (a Data_Entry CSV beside images*/ folders), RSNA Pneumonia
Detection (DICOMs and two label CSVs) and the sources column of the COVID-19 Radiography
Database (its *.metadata.xlsx files; its class folders are core.data.sources's). Label conventions follow
torchxrayvision's NIH_Dataset and RSNA_Pneumonia_Dataset, without depending on it."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

NIH_CSVS = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
NIH_SOURCE = "NIH ChestX-ray14"
RSNA_LABELS, RSNA_DETAIL = "stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"
RSNA_SOURCE = "RSNA Pneumonia Detection"
# RSNA's third class: an opacity that is not pneumonia, or another abnormality. Left out by
# default (it is neither NORMAL nor PNEUMONIA); keep_extra_classes keeps it under this name.
RSNA_NOT_NORMAL = "NOT_NORMAL"
NIH_OTHER = "OTHER_FINDING"   # NIH images with findings but none counted as pneumonia


def find_nih_csv(root: Path) -> Path | None:
    return next((root / n for n in NIH_CSVS if (root / n).is_file()), None)


def is_rsna(root: Path) -> bool:
    return (root / RSNA_LABELS).is_file()


def _index(root: Path, suffixes: tuple[str, ...], folders=None) -> dict[str, Path]:
    """{file name: path} of the files under root (or only under `folders`, a predicate on a
    top-level folder's name) with one of `suffixes`; os.scandir, as 112,120 files must list in
    about a second."""
    out: dict[str, Path] = {}
    stack = [Path(e.path) for e in os.scandir(root)
             if e.is_dir() and not e.name.startswith(".") and (folders is None or folders(e.name))]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            elif e.name.lower().endswith(suffixes):
                out.setdefault(e.name, Path(e.path))
    return out


def _missing(skipped: list, n: int, what: str) -> None:
    if n:
        skipped.append((what, f"{n:,} rows name images not found under the folder (a partial "
                              f"download?); they are left out"))


def scan_nih(root: Path, df, keep_extra: bool, pneumonia_findings=("Pneumonia",)):
    """NIH ChestX-ray14: `df` is Data_Entry_2017(_v2020).csv; images in images*/ or
    images_0NN/images/ folders (the 12 archives, any subset). "No Finding" -> NORMAL; a finding
    in `pneumonia_findings` (default Pneumonia, as torchxrayvision's label) -> PNEUMONIA; other
    findings are left out, or kept as OTHER_FINDING with keep_extra. Patient id, age, sex and
    view from the CSV."""
    need = {"Image Index", "Finding Labels", "Patient ID"}
    if not need <= set(df.columns):
        raise ValueError(f"the NIH table lacks the columns {', '.join(sorted(need - set(df.columns)))}")
    files = _index(root, (".png",), folders=lambda n: n.lower().startswith("images"))
    pneumonia = {f.strip().lower() for f in pneumonia_findings}
    items, skipped, dropped, missing = [], [], Counter(), 0
    extra = [c for c in ("Patient Age", "Patient Gender", "View Position") if c in df.columns]
    columns = ["Image Index", "Finding Labels", "Patient ID", *extra]
    # Column by column, not df.to_dict("records"): 112,120 row dicts at once cost memory.
    for values in zip(*(df[c].tolist() for c in columns)):
        row = dict(zip(columns, values))
        name = str(row["Image Index"]).strip()
        findings = [f.strip() for f in str(row["Finding Labels"]).split("|") if f.strip()]
        if findings == ["No Finding"]:
            label = "NORMAL"
        elif any(f.lower() in pneumonia for f in findings):
            label = "PNEUMONIA"
        elif keep_extra:
            label = NIH_OTHER
        else:
            dropped["other findings"] += 1
            continue
        path = files.get(name)
        if path is None:
            missing += 1
            continue
        pid = str(row["Patient ID"]).strip()
        meta = {"file": str(path.relative_to(root)), "patient": f"nih:{pid}" if pid else None,
                "source": NIH_SOURCE, "finding": "|".join(findings)}
        for key, col in (("age", "Patient Age"), ("sex", "Patient Gender"), ("view", "View Position")):
            value = str(row.get(col) or "").strip()
            if value:
                meta[key] = value
        items.append((path, label, meta))
    _missing(skipped, missing, "Data_Entry csv")
    if dropped:
        skipped.append(("Data_Entry csv", f"{dropped['other findings']:,} images with findings "
                                          f"other than {', '.join(pneumonia_findings)} left out; "
                                          f"set keep_extra_classes to keep them as {NIH_OTHER}"))
    return items, skipped


def scan_rsna(root: Path, labels, detail, keep_extra: bool):
    """RSNA Pneumonia Detection: stage_2_train_labels.csv (patientId, Target; one row per box)
    and stage_2_detailed_class_info.csv (patientId, class), DICOMs named PATIENTID.dcm anywhere
    under the folder. Target 1 ("Lung Opacity") -> PNEUMONIA; class "Normal" -> NORMAL; "No Lung
    Opacity / Not Normal" is left out, or kept as NOT_NORMAL with keep_extra. Without the detail
    table a Target 0 image cannot be told Normal from Not Normal, so it is left out."""
    if not {"patientId", "Target"} <= set(labels.columns):
        raise ValueError(f"{RSNA_LABELS} lacks the columns patientId and Target")
    files = _index(root, (".dcm", ".dicom"))
    stems = {Path(n).stem: p for n, p in files.items()}
    target = labels.groupby("patientId")["Target"].agg(lambda t: max(int(float(v or 0)) for v in t))
    kind = {}
    if detail is not None and {"patientId", "class"} <= set(detail.columns):
        kind = detail.drop_duplicates("patientId").set_index("patientId")["class"].to_dict()
    items, skipped, left, missing = [], [], Counter(), 0
    for pid, t in target.items():
        pid = str(pid).strip()
        if t == 1:
            label = "PNEUMONIA"
        elif str(kind.get(pid, "")).strip().lower() == "normal":
            label = "NORMAL"
        elif pid in kind and keep_extra:
            label = RSNA_NOT_NORMAL
        else:
            left["no detailed class" if pid not in kind else "No Lung Opacity / Not Normal"] += 1
            continue
        path = stems.get(pid)
        if path is None:
            missing += 1
            continue
        items.append((path, label, {"file": str(path.relative_to(root)), "patient": f"rsna:{pid}",
                                    "source": RSNA_SOURCE, "finding": kind.get(pid, "")}))
    _missing(skipped, missing, RSNA_LABELS)
    if left["No Lung Opacity / Not Normal"]:
        skipped.append((RSNA_DETAIL, f"{left['No Lung Opacity / Not Normal']:,} 'No Lung Opacity "
                                     f"/ Not Normal' images left out; set keep_extra_classes to "
                                     f"keep them as {RSNA_NOT_NORMAL}"))
    if left["no detailed class"]:
        skipped.append((RSNA_LABELS, f"{left['no detailed class']:,} Target 0 images left out: "
                                     f"without {RSNA_DETAIL} they may be 'Not Normal'"))
    return items, skipped


def radiography_sources(root: Path) -> dict[str, str]:
    """{image name without suffix: source} from the COVID-19 Radiography Database's
    CLASS.metadata.xlsx files (FILE NAME, FORMAT, SIZE, URL): the site its images came from,
    e.g. "sirm.org", so results can be reported per source. {} without them (or without
    openpyxl)."""
    import pandas as pd

    out: dict[str, str] = {}
    for path in sorted(root.glob("*.metadata.xlsx")):
        try:
            df = pd.read_excel(path, dtype=str)
        except Exception:   # noqa: BLE001 - no openpyxl, or a damaged sheet: sources unknown
            continue
        cols = {str(c).strip().upper(): c for c in df.columns}
        if "FILE NAME" not in cols or "URL" not in cols:
            continue
        for name, url in zip(df[cols["FILE NAME"]], df[cols["URL"]]):
            if isinstance(name, str) and isinstance(url, str) and url.strip():
                host = re.sub(r"^https?://(www\.)?", "", url.strip()).split("/")[0]
                out[name.strip()] = host or url.strip()
    return out
