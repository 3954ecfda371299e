"""DICOM as an image format: the pixel path, rejections with reasons, the parallel
converter (identical bytes for 1 and 2 workers) and what never leaves the header.

Real files: the RSNA original in ../shared/data/rsna_pneumonia/original_dicom/ and its
MONOCHROME1 copy; pydicom's own shipped test files (several transfer syntaxes,
big-endian, truncated, multi-frame, no pixel data).  The 12-bit CR and the files with
names and UIDs in their headers are made here with pydicom.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from tests.conftest import shard_hashes, shared, tfxr
from tfxr.data import imageio
from tfxr.data.imageio import ImageError, load_image_meta, read_dicom

CR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage


def make_cr(path: Path, pixels: np.ndarray, *, bits_stored=12, photometric="MONOCHROME2", slope=None,
            intercept=None, center=None, width=None, spacing=(0.15, 0.16), name="Doe^Jane",
            birth="19610203", uid_root="1.2.826.0.1.3680043.9.7777", view="PA") -> Path:
    """A single-frame CR DICOM written by pydicom (uncompressed, explicit VR little endian)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = f"{uid_root}.3.{int(path.stem.encode().hex()[:12], 16)}"
    ds.SOPClassUID, ds.SOPInstanceUID = CR_SOP_CLASS, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{uid_root}.1", f"{uid_root}.2"
    ds.PatientName, ds.PatientBirthDate, ds.PatientID = name, birth, "HOSP-0042"
    ds.Modality, ds.ViewPosition = "CR", view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if spacing:
        ds.PixelSpacing = list(spacing)
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------- real RSNA pair
def test_rsna_original_and_monochrome1_copy_are_negatives():
    folder = shared("rsna_pneumonia", "original_dicom")
    original = next(p for p in folder.iterdir() if p.name != "same_image_as_MONOCHROME1.dcm")
    a, meta = read_dicom(str(original))
    b, _ = read_dicom(str(folder / "same_image_as_MONOCHROME1.dcm"))
    assert pydicom.dcmread(folder / "same_image_as_MONOCHROME1.dcm").PhotometricInterpretation == "MONOCHROME1"
    assert a.shape == (1024, 1024) and a.dtype == np.uint8
    assert a.std() > 20                                   # a radiograph, not a flat plane
    np.testing.assert_array_equal(a.astype(int) + b.astype(int), 255)
    assert meta["pixel_spacing"] == (0.168, 0.168)


# --------------------------------------------------------------------------- pydicom's files
#: file -> None (decodes: same pixels as MR_small where it is a re-encoding of it) or the reason
PYDICOM_CASES = {
    "MR_small.dcm": None,
    "MR_small_bigendian.dcm": None,            # explicit VR big endian
    "MR_small_implicit.dcm": None,             # implicit VR little endian
    "MR_small_RLE.dcm": None,                  # RLE lossless
    "MR_small_jp2klossless.dcm": None,         # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm": None,     # JPEG-LS lossless
    "MR_small_padded.dcm": None,
    "JPEG2000.dcm": None,
    "JPGExtended.dcm": None,                   # JPEG extended, 12-bit
    "JPEGLSNearLossless_16.dcm": None,
    "CT_small.dcm": None,                      # signed, rescale intercept
    "SC_rgb_jpeg_dcmtk.dcm": None,             # JPEG baseline YBR -> RGB -> grey
    "SC_ybr_full_422_uncompressed.dcm": None,
    "SC_rgb_rle.dcm": None,
    "examples_palette.dcm": None,              # palette colour
    "ExplVR_BigEnd.dcm": None,
    "MR_truncated.dcm": "truncated DICOM pixel data",
    "rtplan.dcm": "DICOM without pixel data",
    "rtplan_truncated.dcm": "DICOM without pixel data",
    "SC_rgb_rle_2frame.dcm": "multi-frame DICOM (2 frames)",
    "rtdose.dcm": "multi-frame DICOM (15 frames)",
    "JPEG-lossy.dcm": "cannot decode DICOM pixel data (JPEG Extended",  # libjpeg refuses this file
    "badVR.dcm": "malformed DICOM header",
}


@pytest.mark.parametrize("name", sorted(PYDICOM_CASES))
def test_pydicom_test_files_decode_or_are_rejected_with_a_reason(name):
    path = get_testdata_file(name)
    assert path, f"pydicom no longer ships {name}"
    expected = PYDICOM_CASES[name]
    if expected is None:
        grey, meta = read_dicom(path)
        assert grey.dtype == np.uint8 and grey.ndim == 2 and grey.size > 0
        assert meta["shape"] == grey.shape
        if name.startswith("MR_small"):  # every encoding of MR_small is the same image
            np.testing.assert_array_equal(grey, read_dicom(get_testdata_file("MR_small.dcm"))[0])
            assert meta["voi"] == "window" and meta["pixel_spacing"] == (0.3125, 0.3125)
    else:
        with pytest.raises(ImageError, match=None) as e:
            read_dicom(path)
        assert expected in str(e.value), str(e.value)


def test_mr_small_window_matches_the_standard_formula():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    x = ds.pixel_array.astype(float) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    expected = np.rint(np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255)
    np.testing.assert_array_equal(read_dicom(get_testdata_file("MR_small.dcm"))[0], expected)


def test_unsupported_transfer_syntax_is_named(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder installed
    ds.PixelData = encapsulate([ds.PixelData])
    ds.save_as(tmp_path / "mpeg2.dcm")
    with pytest.raises(ImageError, match=r"unsupported DICOM transfer syntax 1\.2\.840\.10008\.1\.2\.4\.100 "
                                         r"\(MPEG2 Main Profile / Main Level\)"):
        read_dicom(str(tmp_path / "mpeg2.dcm"))


def test_not_dicom_and_empty_files_with_dcm_names(tmp_path):
    (tmp_path / "text.dcm").write_text("hello, not a DICOM file\n" * 10)
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(ImageError, match="DICOM|not a readable"):
        load_image_meta(str(tmp_path / "text.dcm"))
    with pytest.raises(ImageError, match="empty file"):
        load_image_meta(str(tmp_path / "empty.dcm"))


# --------------------------------------------------------------------------- 12-bit CR
def test_12_bit_cr_with_rescale_and_window(tmp_path):
    raw = np.array([[0, 1000, 1549], [1550, 2000, 4095]], np.uint16)
    # slope 2, intercept -100: values -100, 1900, 2998, 3000, 3900, 8090; window 3000 / 2001
    p = make_cr(tmp_path / "cr.dcm", raw, slope=2, intercept=-100, center=3000, width=2001)
    grey, meta = read_dicom(str(p))
    x = raw * 2.0 - 100
    expected = np.rint(np.clip((x - 2999.5) / 2000 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(grey, expected)
    np.testing.assert_array_equal(grey, [[0, 0, 127], [128, 242, 255]])
    assert meta == {"pixel_spacing": (0.15, 0.16), "shape": (2, 3), "voi": "window"}
    # ignoring the window: the full 12-bit range through the rescale, -100 .. 8090
    full, meta = read_dicom(str(p), use_window=False)
    np.testing.assert_array_equal(full, np.rint((x + 100) / 8190 * 255).astype(np.uint8))
    np.testing.assert_array_equal(full, [[0, 62, 96], [97, 125, 255]])
    assert meta["voi"] == "full-range"
    # MONOCHROME1: the same values shown inverted
    m1 = make_cr(tmp_path / "cr1.dcm", raw, slope=2, intercept=-100, center=3000, width=2001,
                 photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_dicom(str(m1))[0], 255 - expected)


def test_bits_stored_masks_bits_above_it(tmp_path):
    """Bits above Bits Stored (an overlay or garbage) are not pixel values."""
    raw = np.array([[0, 4095], [0xF000 | 2048, 1024]], np.uint16)
    grey, _ = read_dicom(str(make_cr(tmp_path / "hb.dcm", raw)))
    np.testing.assert_array_equal(grey, np.rint(np.array([[0, 4095], [2048, 1024]]) / 4095 * 255))


# --------------------------------------------------------------------------- converter
def _dicom_class_folders(tmp_path: Path) -> Path:
    """Two class folders of real RSNA DICOMs (the sample), one damaged file, one made CR."""
    sample = shared("rsna_pneumonia", "sample_stage_2_train_images")
    files = sorted(sample.glob("*.dcm"))[:24]
    root = tmp_path / "cxr"
    for k, f in enumerate(files):
        d = root / ("NORMAL" if k % 2 else "PNEUMONIA")
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
    shutil.copy(get_testdata_file("MR_truncated.dcm"), root / "NORMAL" / "truncated.dcm")
    make_cr(root / "PNEUMONIA" / "made_cr.dcm", (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16),
            center=2048, width=4096)
    return root


def test_folder_of_dicoms_converts_identically_with_1_and_2_workers(tmp_path):
    root = _dicom_class_folders(tmp_path)
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        r = tfxr("tfxr.tfrecords", "write", "--source", "folder", "--images", "cxr", "--out", out.name,
                 "--image-size", "32", "--shards", "2", "--workers", str(workers), "--quiet", cwd=tmp_path)
        assert "truncated.dcm" in r.stderr and "truncated DICOM pixel data" in r.stderr
        outs[workers] = out
    a, b = shard_hashes(outs[1]), shard_hashes(outs[2])
    assert a and a == b
    m = json.loads((outs[1] / "manifest.json").read_text())
    assert sum(s["count"] for s in m["splits"].values()) == 25           # 24 RSNA + the made CR
    assert [r["reason"][:26] for r in m["rejected"]] == ["truncated DICOM pixel data"]
    assert m["source"]["dicom_voi"] == "window"


def test_header_identifiers_never_reach_records_or_manifest(tmp_path):
    root = tmp_path / "cxr"
    (root / "NORMAL").mkdir(parents=True)
    (root / "PNEUMONIA").mkdir()
    uid_root = "1.2.826.0.1.3680043.9.31337"
    made = [make_cr(root / cls / f"img{k}.dcm", np.full((16, 16), 100 * k, np.uint16), name=f"Smith^Alice{k}",
                    birth="19450517", uid_root=uid_root) for k, cls in enumerate(["NORMAL", "PNEUMONIA"] * 3)]
    tfxr("tfxr.tfrecords", "write", "--source", "folder", "--images", "cxr", "--out", "out",
         "--image-size", "16", "--shards", "1", "--quiet", cwd=tmp_path)
    ds = pydicom.dcmread(made[0])
    secrets = [str(ds.PatientName), "Smith^Alice", "19450517", ds.PatientID, uid_root, ds.SOPInstanceUID]
    blobs = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(blobs) >= 4
    for s in secrets:
        assert not any(s.encode() in b for b in blobs), f"{s!r} leaked into the output"
