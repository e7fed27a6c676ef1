"""De-identification of the DICOM files this app keeps (uploads saved on the Data page), and the
keyed pseudonym of a DICOM's patient: one patient's films stay one patient in the patient-level
split, while the PatientID itself is never stored, shown or logged."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import secrets
import threading
from pathlib import Path

from core.data.imageio import (MAX_DICOM_BYTES, MAX_FILE_BYTES, _fail, _inflated_size,
                               is_dicom)
from core.errors import ImageReadError, UserError
from core.paths import runs_root

KEY_NAME = ".patient-key"       # in the runs folder, beside the runs it keys
_KEY_BYTES = 32
# What a pseudonym looks like, in a saved file's PatientID and in an item's meta["patient"]:
# 64 bits of an HMAC-SHA256, so 50,000 patients collide with odds of about 1 in 10^10.
PSEUDONYM = re.compile(r"anon-[0-9a-f]{16}")
# DeidentificationMethod (an LO, at most 64 characters); the tables below are what it means.
METHOD = "PS3.15 Basic Profile subset, PatientID as a keyed hash"

# DICOM PS3.15 Annex E, Table E.1-1 (Application Level Confidentiality Profile Attributes), the
# Basic Profile column, for the attributes a radiograph's header plausibly carries; pydicom has
# no built-in profile, so the list is ours. Keywords found at any depth (sequences included).
# X: removed.
REMOVE = frozenset({
    # patient
    "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "OtherPatientIDs",
    "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "MedicalRecordLocator", "EthnicGroup", "Occupation",
    "MilitaryRank", "BranchOfService", "PatientReligiousPreference",
    "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence", "CountryOfResidence",
    "RegionOfResidence", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientComments", "AdditionalPatientHistory", "MedicalAlerts", "Allergies", "PatientState",
    "PregnancyStatus", "LastMenstrualDate", "SmokingStatus", "ResponsiblePerson",
    "ResponsibleOrganization", "ReferencedPatientSequence", "ReferencedPatientPhotoSequence",
    "PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar", "IdentifyingComments",
    # people and places of the study
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "RequestingPhysician",
    "ScheduledPerformingPhysicianName", "OperatorsName", "OperatorIdentificationSequence",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionCodeSequence", "StationName", "DeviceSerialNumber", "DetectorID", "PlateID",
    "CassetteID", "PersonName", "PersonAddress", "PersonTelephoneNumbers",
    # the visit and its free text
    "AdmissionID", "IssuerOfAdmissionIDSequence", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "StudyDescription", "SeriesDescription", "ProtocolName",
    "ImageComments", "AcquisitionComments", "DerivationDescription", "RequestAttributesSequence",
    "RequestedProcedureID", "RequestedProcedureDescription", "ScheduledProcedureStepID",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "PerformedLocation",
    "PerformedStationName", "PerformedStationAETitle", "ScheduledStationName",
    "ScheduledStationAETitle", "ReasonForTheRequestedProcedure", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "ContentSequence",
    # what an earlier editor changed, with the old values
    "OriginalAttributesSequence", "ModifiedAttributesSequence",
})
# Z: kept, empty (Type 2 in the radiograph IODs, so the file stays valid).
BLANK = frozenset({"PatientName", "PatientBirthDate", "AccessionNumber", "StudyID",
                   "ReferringPhysicianName"})
# Any element of these VRs, wherever it is, is emptied too: every person's name is a PN, and
# every date and time (birth, study, acquisition) can single a patient out. The Retain Patient
# Characteristics Option keeps PatientAge, PatientSex, PatientSize and PatientWeight (AS, CS, DS).
BLANK_VRS = frozenset({"PN", "DA", "DT", "TM"})
# U: instance UIDs, replaced by UIDs derived from them under the key, so references between
# files of one upload still match and nothing links them to the hospital's records.
REPLACE_UIDS = frozenset({
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID",
    "SynchronizationFrameOfReferenceUID", "IrradiationEventUID", "ConcatenationUID",
    "DimensionOrganizationUID", "StorageMediaFileSetUID", "InstanceCreatorUID", "DeviceUID",
    "UID", "TargetUID", "TransactionUID", "FiducialUID", "DoseReferenceUID",
    "ReferencedSOPInstanceUIDInFile", "MediaStorageSOPInstanceUID",
})
_PATIENT_ID = 0x00100020

_key_lock = threading.Lock()
_keys: dict[Path, bytes] = {}


def _is_dicom(head: bytes, name: str) -> bool:
    """imageio.is_dicom, or a dataset written without its preamble, as some exporters do (the
    image reader does not take those, but a kept copy would still carry its patient): its first
    element a (0002,xxxx) or (0008,xxxx) tag, little-endian."""
    return is_dicom(head, name) or (head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00")


def key_path() -> Path:
    """The key file: runs/.patient-key (in $XRAY_RUNS_DIR when set)."""
    return runs_root() / KEY_NAME


def patient_key() -> bytes:
    """The secret under which PatientIDs are hashed, created once (32 random bytes, file mode
    0600) and the same for every later run, page and job of this runs folder. A damaged key
    file is a UserError: a new key would split each patient's films from their earlier ones."""
    path = key_path()
    with _key_lock:
        if path in _keys:
            return _keys[path]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{KEY_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(secrets.token_bytes(_KEY_BYTES))
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)   # fails if another process made it first: theirs wins
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise UserError(f"Cannot read the patient key {path}: {exc.strerror or exc}") from None
        if len(key) != _KEY_BYTES:
            raise UserError(f"The patient key {path} is damaged ({len(key)} bytes, not "
                            f"{_KEY_BYTES}). Restore it from a backup; deleting it makes a new "
                            "key, and then films read from folders are no longer grouped with "
                            "those of the same patients saved before.")
        _keys[path] = key
        return key


def _digest(value: bytes) -> str:
    return hmac.new(patient_key(), value, hashlib.sha256).hexdigest()


def pseudonym(patient_id: bytes | str) -> str | None:
    """"anon-" and 16 hex digits of HMAC-SHA256(key, PatientID); a PatientID that is already a
    pseudonym (a file this app saved) comes back as it is; None for an empty one."""
    raw = patient_id.encode("utf-8") if isinstance(patient_id, str) else bytes(patient_id)
    raw = raw.strip(b" \x00")
    if not raw:
        return None
    text = raw.decode("ascii", "replace")
    if PSEUDONYM.fullmatch(text):
        return text
    return "anon-" + _digest(raw)[:16]


def _raw_value(ds, tag: int) -> bytes | None:
    """An element's value as stored, without pydicom's conversion: converting validates, and a
    value it finds invalid is printed into the warnings and the log."""
    try:
        elem = ds.get_item(tag)
    except Exception:  # noqa: BLE001 - an unreadable element is no value
        return None
    if elem is None:
        return None
    value = elem.value
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode("utf-8")


def patient_of(ds) -> str | None:
    """The pseudonym of a read DICOM dataset's PatientID, or None when it has none."""
    raw = _raw_value(ds, _PATIENT_ID)
    return pseudonym(raw) if raw else None


def patient_of_file(path: str | Path) -> str | None:
    """The pseudonym of the PatientID in a DICOM file's header (read alone, pixels not loaded);
    None for a file that is not a DICOM, has no PatientID or cannot be read."""
    import pydicom

    try:
        with open(path, "rb") as f:
            head = f.read(132)
        if not _is_dicom(head, str(path)):
            return None
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=[_PATIENT_ID])
    except Exception:  # noqa: BLE001 - the image reader says what is wrong with the file
        return None
    return patient_of(ds)


def _vr(elem, tag) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return str(elem.VR or "")


def _clean(ds) -> None:
    """Apply the profile to `ds` and the items of its sequences, in place."""
    from pydicom.dataelem import DataElement
    from pydicom.datadict import keyword_for_tag
    from pydicom.uid import generate_uid

    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        keyword = keyword_for_tag(tag)
        vr = _vr(elem, tag)
        # Private elements (anything a vendor chose to put there), overlays and curves (burned
        # text, annotations): removed, as the Basic Profile does.
        if tag.is_private or (tag.group & 0xFF00) in (0x5000, 0x6000) or keyword in REMOVE:
            del ds[tag]
        elif tag == _PATIENT_ID:
            ds[tag] = DataElement(tag, "LO", patient_of(ds))
        elif keyword in BLANK or vr in BLANK_VRS:
            ds[tag] = DataElement(tag, vr, None)
        elif keyword in REPLACE_UIDS:
            raw = _raw_value(ds, tag)
            if raw:
                ds[tag] = DataElement(tag, "UI", generate_uid(entropy_srcs=[_digest(raw)]))
        elif vr == "SQ":
            for item in ds[tag].value:   # items' own elements stay raw (unconverted)
                _clean(item)


def deidentify(data: bytes, name: str = "") -> bytes:
    """A DICOM file's bytes with its patient's identity removed (see REMOVE, BLANK, BLANK_VRS,
    REPLACE_UIDS: DICOM PS3.15 Table E.1-1, Basic Profile, keeping age, sex, size and weight),
    private elements and overlays dropped, the PatientID replaced by its pseudonym, and
    PatientIdentityRemoved set; pixels, windowing, modality, view and body part unchanged. Any
    other file comes back as it is. A DICOM that cannot be parsed and written again raises
    ImageReadError (without the file's values in its message): it is not kept."""
    import pydicom
    import pydicom.config

    if not _is_dicom(data[:132], name):
        return data
    inflated = _inflated_size(data, MAX_DICOM_BYTES)
    if inflated is not None and inflated > MAX_DICOM_BYTES:
        raise _fail(name, f"deflated DICOM inflates to more than {MAX_DICOM_BYTES // 2**20} MB; "
                          "refused as a possible decompression bomb")
    try:
        # Without validation: pydicom's warnings about an invalid value quote it, into the log.
        # (A process-wide setting, restored after; at worst another thread warns less meanwhile.)
        with pydicom.config.disable_value_validation():
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            _clean(ds)
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = METHOD
            ds.LongitudinalTemporalInformationModified = "REMOVED"
            meta = getattr(ds, "file_meta", None)
            if meta is not None and "MediaStorageSOPInstanceUID" in meta:   # the file's copy
                meta.MediaStorageSOPInstanceUID = (ds.get("SOPInstanceUID")
                                                   or pydicom.uid.generate_uid())
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=False)
    except ImageReadError:
        raise
    except Exception as exc:
        # The type only: pydicom's messages may quote the values this is meant to remove.
        raise _fail(name, f"a DICOM file whose header cannot be read to remove the patient's "
                          f"details ({type(exc).__name__}); not kept") from None
    return out.getvalue()


def _is_done(path: Path) -> bool:
    """True when the file's header says this profile has been applied to it."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=[0x00120062, 0x00120063])
        return (_raw_value(ds, 0x00120062) or b"").strip(b" \x00") == b"YES" and \
            (_raw_value(ds, 0x00120063) or b"").strip(b" \x00") == METHOD.encode()
    except Exception:  # noqa: BLE001 - unreadable: de-identifying it says what is wrong
        return False


def deidentify_tree(folder: str | Path, skip_done: bool = False) -> list[str]:
    """De-identify, in place, every DICOM file under `folder` (an extracted upload); with
    `skip_done`, those whose header says it was done already are left alone. A DICOM that cannot
    be de-identified is deleted: kept as it came it would carry its patient's identity. Returns
    the deleted files, relative to `folder`."""
    folder = Path(folder)
    dropped = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        with open(path, "rb") as f:
            head = f.read(132)
        if not _is_dicom(head, path.name) or (skip_done and _is_done(path)):
            continue
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise _fail(path.name, "file too large")
            clean = deidentify(path.read_bytes(), path.name)
        except ImageReadError:
            path.unlink()
            dropped.append(str(path.relative_to(folder)))
            continue
        tmp = path.with_name(f".{path.name}.deid")
        tmp.write_bytes(clean)
        tmp.replace(path)
    return dropped


def deidentify_uploads(uploads: str | Path) -> list[str]:
    """De-identify the DICOMs of every folder under `uploads` not yet swept (uploads saved
    before this step existed, or left by a save that was cut short); the swept folders' names
    are kept in uploads/.deidentified so each is read once. Returns the deleted files."""
    import json

    uploads = Path(uploads)
    if not uploads.is_dir():
        return []
    marker = uploads / ".deidentified"
    try:
        done = set(json.loads(marker.read_text()))
    except (OSError, ValueError, TypeError):
        done = set()
    dropped = []
    for folder in sorted(p for p in uploads.iterdir() if p.is_dir() and not p.is_symlink()):
        if folder.name not in done:
            dropped += [f"{folder.name}/{f}" for f in deidentify_tree(folder, skip_done=True)]
            done.add(folder.name)
    done &= {p.name for p in uploads.iterdir()}   # pruned folders leave the list
    tmp = marker.with_name(f".deidentified.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(sorted(done)))
    tmp.replace(marker)
    return dropped
