"""Decode, normalise, resize and encode images without TensorFlow.

Runs inside worker processes of the converter, so it imports only numpy, Pillow and
pydicom.  Every supported layout ends as one uint8 grey-scale plane: 8- and 16-bit grey,
grey+alpha, RGB, RGBA and palette PNGs, JPEGs, and DICOM (``.dcm``; see
:func:`read_dicom` for the pixel path).

Images deeper than 8 bits are scaled by their real bit depth, not by 65535: a 12-bit
radiograph stored in a 16-bit PNG (values 0..4095) would otherwise come out nearly
black.  The depth is the PNG ``sBIT`` chunk where the file declares it, else the
smallest depth that holds the image's maximum (at least 8 bits).
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pydicom
import pydicom.pixels
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tfxr.data.types import ImageRef

# A truncated file must be an error, never a silently half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """An input image that cannot be used; the message says why."""


def png_significant_bits(path: str) -> int | None:
    """Bits per sample the PNG's ``sBIT`` chunk declares (e.g. 12), or None without one.

    Pillow reads but does not expose sBIT, so its chunk reader walks the chunks before
    the image data.  For colour images the largest channel depth is returned.
    """
    with open(path, "rb") as fh:
        if fh.read(len(PngImagePlugin._MAGIC)) != PngImagePlugin._MAGIC:
            return None
        stream = PngImagePlugin.ChunkStream(fh)
        while True:
            try:
                chunk, _pos, length = stream.read()
            except (SyntaxError, OSError, ValueError):  # damaged chunk list: the decoder will say so
                return None
            if chunk == b"sBIT":
                declared = fh.read(length)
                return max(declared) if declared else None
            if chunk in (b"IDAT", b"IEND"):
                return None
            fh.seek(length + 4, os.SEEK_CUR)  # chunk data and its CRC


def _deep_to_uint8(a: np.ndarray, bits: int | None) -> np.ndarray:
    """Scale an integer image deeper than 8 bits to 0..255 by its bit depth.

    ``bits`` is the declared depth (PNG sBIT).  A PNG encoder may have shifted such
    samples up to the full 16-bit range, as the PNG specification recommends; then the
    maximum exceeds the declared range and the full 16-bit range is the scale.
    """
    top = int(a.max(initial=0))
    if bits is None or top >= 1 << bits:
        bits = max(8, top.bit_length())
    return np.clip(np.rint(a.astype(np.float64) * (255.0 / ((1 << bits) - 1))), 0, 255).astype(np.uint8)


def to_grey_uint8(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Any HxW / HxWxC array (uint8, uint16, int, float in [0,1]) -> HxW uint8.

    ``bits``: the declared bit depth of integer samples (PNG sBIT), when known.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        if a.shape[2] == 1:
            a = a[..., 0]
        elif a.shape[2] in (2, 4):  # grey+alpha / RGBA: drop alpha
            a = a[..., :-1]
            a = a[..., 0] if a.shape[2] == 1 else a
    if a.ndim == 3 and a.shape[2] == 3:  # RGB -> luma (ITU-R 601-2, as Pillow's "L")
        if a.dtype == np.uint8:  # Pillow's own fixed-point formula: bit-identical to convert("L")
            a = ((a.astype(np.uint32) @ np.array([19595, 38470, 7471], np.uint32) + 0x8000) >> 16
                 ).astype(np.uint8)
        else:
            luma = a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            # integer input stays integer, so a dark image is not taken for floats in [0, 1]
            a = np.rint(luma).astype(a.dtype) if np.issubdtype(a.dtype, np.integer) else luma
    if a.ndim != 2:
        raise ImageError(f"unsupported image shape {np.asarray(arr).shape}")
    if a.size == 0:
        raise ImageError("image has no pixels")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255):
        return _deep_to_uint8(a, bits)
    if np.issubdtype(a.dtype, np.floating) and a.max(initial=0) <= 1.0:
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def read_image_file(path: str) -> np.ndarray:
    """Read an image file as HxW uint8 grey; ImageError names the problem."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise ImageError(f"unreadable: {e.strerror}") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.array(im, dtype=np.int64)
                bits = png_significant_bits(path) if im.format == "PNG" else None
                return to_grey_uint8(arr.astype(np.uint16) if arr.max(initial=0) <= 65535 else arr, bits)
            if mode in ("L", "LA", "RGB", "RGBA", "1"):
                return to_grey_uint8(np.array(im.convert("L") if mode == "1" else im))
            return to_grey_uint8(np.array(im.convert("L")))
    except UnidentifiedImageError:
        raise ImageError("not a recognised image (corrupt or wrong format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageError):
            raise
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower() or "end of file" in msg.lower() or "broken data stream" in msg.lower():
            raise ImageError(f"truncated image ({msg})") from None
        raise ImageError(f"corrupt image ({msg})") from None


DICOM_EXTENSIONS = (".dcm", ".dicom")


def is_dicom_path(path: str) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the DICOM preamble (``DICM`` at 128)."""
    if path.lower().endswith(DICOM_EXTENSIONS):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM VOI windowing (PS3.3 C.11.2.1.2) onto 0..1; LINEAR, LINEAR_EXACT or SIGMOID."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise ImageError(f"DICOM Window Width {width} is below 1 (LINEAR windowing needs >= 1)")
    if width == 1:  # a threshold at the centre
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value) -> float:
    """The first value of a multi-valued DICOM number (Window Center may hold several)."""
    return float(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)


def _monochrome_to_unit(ds, arr: np.ndarray, use_window: bool) -> tuple[np.ndarray, str]:
    """Modality LUT, then the VOI LUT or window (or the full stored range) onto 0..1."""
    x = pydicom.pixels.apply_modality_lut(arr, ds).astype(np.float64)
    if use_window and "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        y = pydicom.pixels.apply_voi(arr if "ModalityLUTSequence" in ds else x, ds, index=0)
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
        top = float(max(1, int(lut.max(initial=1)).bit_length()))
        return np.asarray(y, np.float64) / (2.0 ** top - 1.0), "voi-lut"
    if use_window and "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        return _window(x, _first(ds.WindowCenter), _first(ds.WindowWidth), function), "window"
    # full range: every value Bits Stored can hold, through the modality LUT
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if "ModalityLUTSequence" in ds:
        lut_bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, float((1 << lut_bits) - 1)
    else:
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0), "full-range"


def read_dicom(path: str, use_window: bool = True) -> tuple[np.ndarray, dict]:
    """A single-frame DICOM image as HxW uint8 grey, and what the pixel path used.

    The pixel path radiologists expect: pydicom decodes the pixel data (compressed
    transfer syntaxes through the pylibjpeg plugins) honouring Bits Stored and Pixel
    Representation; monochrome images then go through the modality LUT (Rescale
    Slope/Intercept or a Modality LUT Sequence) and the first VOI LUT or Window
    Center/Width (``use_window=False``: the full range Bits Stored can hold instead);
    MONOCHROME1 is inverted so that 0 is black; RGB, YBR and palette images become luma.

    Returned metadata holds only pixel facts: ``pixel_spacing`` (row, column mm from
    Pixel Spacing, else Imager Pixel Spacing, or None), ``shape`` and ``voi``.  Nothing
    that identifies a person is read out of the header here.

    Raises ImageError (file and reason are reported by the caller) for files that are not
    DICOM, truncated files, objects without pixel data, multi-frame objects and transfer
    syntaxes no installed decoder handles.
    """
    with warnings.catch_warnings():  # pydicom warns about every tolerated oddity, per worker
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
            raise ImageError(f"not a readable DICOM file ({type(e).__name__}: {e})") from None
        try:
            return _decode_dicom(ds, use_window)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
            if isinstance(e, ImageError):
                raise
            raise ImageError(f"malformed DICOM header ({type(e).__name__}: {str(e)[:200]})") from None


def _decode_dicom(ds, use_window: bool) -> tuple[np.ndarray, dict]:
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        raise ImageError("DICOM without pixel data" + (f" ({getattr(sop, 'name', sop)})" if sop else "")
                         + ": not an image")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise ImageError(f"multi-frame DICOM ({frames} frames): one radiograph per file is expected")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:  # no file meta: the encoding it was read with
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if implicit is None:
            raise ImageError("DICOM without a Transfer Syntax UID (no file meta) and of unknown encoding")
        ds.file_meta = meta if meta is not None else pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = ds.pixel_array
    except NotImplementedError as e:
        raise ImageError(f"unsupported DICOM transfer syntax {syntax} ({getattr(syntax, 'name', '?')}): {e}") from None
    except ValueError as e:
        msg = str(e)
        if "less than expected" in msg or "truncat" in msg.lower():
            raise ImageError(f"truncated DICOM pixel data ({msg.splitlines()[0]})") from None
        raise ImageError(f"damaged DICOM pixel data ({msg.splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - a decoder plugin failing is a rejected file, not a crash
        first = str(e).strip().splitlines()
        raise ImageError(f"cannot decode DICOM pixel data ({getattr(syntax, 'name', syntax)}): "
                         f"{type(e).__name__}: {' '.join(first[:2])[:300]}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise ImageError(f"DICOM {photometric} pixel array of shape {arr.shape} (expected rows x columns)")
        unit, voi = _monochrome_to_unit(ds, arr, use_window)
        if photometric == "MONOCHROME1":
            unit = 1.0 - unit
        grey = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    else:
        voi = "colour-luma"
        if photometric == "PALETTE COLOR":
            arr = pydicom.pixels.apply_color_lut(arr, ds)
        # YBR_* arrive as RGB: pydicom's pixel_array converts them (its default, as_rgb=True)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"DICOM {photometric} pixel array of shape {arr.shape} (expected 3 samples)")
        grey = to_grey_uint8(arr, int(ds.get("BitsStored") or 8) if arr.dtype != np.uint8 else None)
    if grey.size == 0:
        raise ImageError("DICOM image has no pixels")
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing = (float(spacing[0]), float(spacing[1])) if spacing and len(spacing) == 2 else None
    except (TypeError, ValueError):
        spacing = None
    return grey, {"pixel_spacing": spacing, "shape": grey.shape, "voi": voi}


def load_image_meta(ref: ImageRef, dicom_window: bool = True) -> tuple[np.ndarray, dict]:
    """Pixels of an item (a path, an array or a zero-argument callable) and pixel facts.

    The facts are ``shape`` (of the decoded image) and, for DICOM, ``pixel_spacing``.
    ``dicom_window=False`` ignores a DICOM file's VOI LUT and window (full range).
    """
    if isinstance(ref, (str, os.PathLike)):
        path = os.fspath(ref)
        if is_dicom_path(path):
            if not os.path.isfile(path):
                raise ImageError("unreadable: No such file or directory")
            if os.path.getsize(path) == 0:
                raise ImageError("empty file (0 bytes)")
            return read_dicom(path, use_window=dicom_window)
        grey = read_image_file(path)
    elif callable(ref):
        grey = to_grey_uint8(ref())
    else:
        grey = to_grey_uint8(ref)
    return grey, {"pixel_spacing": None, "shape": grey.shape}


def load_image(ref: ImageRef, dicom_window: bool = True) -> np.ndarray:
    """Pixels of an item: a path (PNG, JPEG, DICOM...), an array or a zero-argument callable."""
    return load_image_meta(ref, dicom_window)[0]


def resize(grey: np.ndarray, size: int) -> np.ndarray:
    """Resize HxW uint8 to size x size (bilinear with antialiasing, like CheXNet's stretch)."""
    if grey.shape == (size, size):
        return grey
    return np.asarray(Image.fromarray(grey, "L").resize((size, size), Image.Resampling.BILINEAR))


def encode_png(grey: np.ndarray) -> bytes:
    """Lossless, deterministic PNG bytes for an HxW uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(grey, "L").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)
