"""Decode, normalise, resize and encode images without TensorFlow.

Runs inside worker processes of the converter, so it imports only numpy and Pillow.
Every supported layout ends as one uint8 grey-scale plane: 8- and 16-bit grey,
grey+alpha, RGB, RGBA and palette PNGs, and JPEGs.

Images deeper than 8 bits are scaled by their real bit depth, not by 65535: a 12-bit
radiograph stored in a 16-bit PNG (values 0..4095) would otherwise come out nearly
black.  The depth is the PNG ``sBIT`` chunk where the file declares it, else the
smallest depth that holds the image's maximum (at least 8 bits).
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin, UnidentifiedImageError

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


def load_image(ref: ImageRef) -> np.ndarray:
    """Pixels of an item: a path, an array or a zero-argument callable."""
    if isinstance(ref, (str, os.PathLike)):
        return read_image_file(os.fspath(ref))
    if callable(ref):
        return to_grey_uint8(ref())
    return to_grey_uint8(ref)


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
