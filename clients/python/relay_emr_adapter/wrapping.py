"""Wrapped forms of an image, built in memory: a PDF for EMRs that take no image/jpeg (img2pdf
embeds a JPEG's bytes unchanged), and a DICOM VL Photographic Image (modality XC) for PACS
(the JPEG's bytes encapsulated unchanged as JPEG Baseline pixel data)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import img2pdf
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from relay_emr_adapter.errors import Refused
from relay_emr_adapter.fhir_mapping import Filing

VL_PHOTOGRAPHIC_IMAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"


def pdf(filing: Filing) -> tuple[str, bytes]:
    return "application/pdf", img2pdf.convert(filing.content)


def dicom(filing: Filing) -> tuple[str, bytes]:
    """A VL Photographic Image instance; UIDs derive from the stable identifier, so a retry
    makes the same instance."""
    if filing.content_type != "image/jpeg":
        raise Refused("unsupported_content", "dicom_needs_jpeg")
    seed = filing.identifier_value
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTOGRAPHIC_IMAGE
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[seed, "instance"])
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    data = Dataset()
    data.file_meta = meta
    data.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE
    data.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    data.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    data.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    data.Modality = "XC"
    data.PatientID = filing.patient_id
    captured = filing.clinical.captured_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data.ContentDate = data.StudyDate = captured[:10].replace("-", "")
    data.ContentTime = data.StudyTime = captured[11:19].replace(":", "")
    data.InstanceNumber = 1
    data.SeriesNumber = 1
    if filing.clinical.body_site:
        data.BodyPartExamined = filing.clinical.body_site[:16].upper()
    data.SamplesPerPixel = 3
    data.PhotometricInterpretation = "YBR_FULL_422"
    data.PlanarConfiguration = 0
    data.Rows, data.Columns = filing.height, filing.width
    data.BitsAllocated = data.BitsStored = 8
    data.HighBit = 7
    data.PixelRepresentation = 0
    data.LossyImageCompression = "01"
    data.PixelData = encapsulate([filing.content])
    data["PixelData"].VR = "OB"
    out = io.BytesIO()
    data.save_as(out, enforce_file_format=True)
    return "application/dicom", out.getvalue()
