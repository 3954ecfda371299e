"""Tests for tfxr.data.imageio: every supported layout ends as one HxW uint8 grey plane.

Inputs are written with Pillow into tmp_path; the real NIH sample is read through
``shared(...)`` (skipped when absent).
"""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from tests.conftest import shared
from PIL.PngImagePlugin import PngInfo

from tfxr.data.imageio import (ImageError, decode_png, encode_png, load_image, png_significant_bits,
                               read_image_file, resize, to_grey_uint8)


def _ramp(h: int = 40, w: int = 56) -> np.ndarray:
    """A deterministic HxW uint8 pattern covering many grey levels."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 13) % 256).astype(np.uint8)


def _rgb(h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(tmp_path, name: str, im: Image.Image, **kw) -> str:
    p = tmp_path / name
    im.save(p, **kw)
    return str(p)


def _check_plane(a: np.ndarray, shape: tuple[int, int]) -> None:
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.uint8
    assert a.ndim == 2 and a.shape == shape


# --------------------------------------------------------------------------- layouts
def test_grey_8bit_png_is_returned_unchanged(tmp_path):
    g = _ramp()
    out = read_image_file(_save(tmp_path, "g.png", Image.fromarray(g)))
    _check_plane(out, g.shape)
    np.testing.assert_array_equal(out, g)


def test_grey_16bit_png_scales_full_range(tmp_path):
    a = np.zeros((4, 6), np.uint16)
    a[0, 0] = 65535
    a[0, 1] = 257 * 100
    a[0, 2] = 257 * 37
    a[0, 4] = 257 * 200  # /256 would give 201: the scale is the full 16-bit range
    a[1, :] = 257 * 255 - 1  # 65534 -> rint(254.996) = 255
    im = Image.fromarray(a)
    assert im.mode.startswith("I;16")
    p = _save(tmp_path, "g16.png", im)
    with Image.open(p) as check:  # the file really is 16-bit
        assert check.mode in ("I;16", "I;16B", "I;16L", "I")
    out = read_image_file(p)
    _check_plane(out, a.shape)
    assert out[0, 0] == 255
    assert out[0, 1] == 100
    assert out[0, 2] == 37
    assert out[0, 3] == 0
    assert out[0, 4] == 200
    assert (out[1] == 255).all()
    np.testing.assert_array_equal(out, np.rint(a / 257.0).astype(np.uint8))


def _twelve_bit(h: int = 16, w: int = 24) -> np.ndarray:
    """A 12-bit ramp (0..4095) as a radiograph converted from DICOM typically stores it."""
    y, x = np.mgrid[0:h, 0:w]
    a = ((y * w + x) * 4095 // (h * w - 1)).astype(np.uint16)
    a[0, 0], a[-1, -1] = 0, 4095
    return a


def _save_16bit(tmp_path, name: str, a: np.ndarray, sbit: int | None = None) -> str:
    info = PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    return _save(tmp_path, name, Image.fromarray(a), pnginfo=info)


def test_twelve_bit_png_without_sbit_is_scaled_by_its_depth_not_by_65535(tmp_path):
    a = _twelve_bit()
    path = _save_16bit(tmp_path, "g12.png", a)
    assert png_significant_bits(path) is None
    out = read_image_file(path)
    _check_plane(out, a.shape)
    np.testing.assert_array_equal(out, np.rint(a * (255.0 / 4095)).astype(np.uint8))
    assert out.max() == 255 and out.mean() > 100  # /257 would have given max 16: nearly black


def test_twelve_bit_png_with_sbit_uses_the_declared_depth(tmp_path):
    a = (_twelve_bit() // 2).astype(np.uint16)  # a dark 12-bit image: max 2047
    path = _save_16bit(tmp_path, "g12s.png", a, sbit=12)
    assert png_significant_bits(path) == 12
    out = read_image_file(path)
    # declared 12 bits: 2047 is mid-grey, not stretched to white as the max would
    np.testing.assert_array_equal(out, np.rint(a * (255.0 / 4095)).astype(np.uint8))
    assert out.max() == 127  # 2047 * 255 / 4095
    no_sbit = read_image_file(_save_16bit(tmp_path, "g11.png", a))
    assert no_sbit.max() == 255  # without sBIT the depth comes from the maximum (11 bits)


def test_sbit_image_shifted_to_16_bits_uses_the_full_range(tmp_path):
    a = (_twelve_bit().astype(np.uint32) << 4).astype(np.uint16)  # PNG-spec scaling of 12-bit data
    out = read_image_file(_save_16bit(tmp_path, "g12up.png", a, sbit=12))
    np.testing.assert_array_equal(out, np.rint(a / 257.0).astype(np.uint8))


def test_sixteen_bit_array_with_small_values_is_not_darkened():
    a = np.array([[0, 100, 255]], np.uint16)  # 8-bit data in a 16-bit container
    np.testing.assert_array_equal(to_grey_uint8(a), [[0, 100, 255]])
    np.testing.assert_array_equal(to_grey_uint8(a * 16, bits=12), [[0, 100, 254]])  # x 255 / 4095


def test_png_significant_bits_on_non_png_and_8bit(tmp_path):
    jpg = _save(tmp_path, "x.jpg", Image.fromarray(_ramp()))
    assert png_significant_bits(jpg) is None
    assert png_significant_bits(_save(tmp_path, "x.png", Image.fromarray(_ramp()))) is None


def test_grey_alpha_png_ignores_alpha(tmp_path):
    g = _ramp()
    alpha = np.where(_ramp() > 128, 0, 255).astype(np.uint8)
    im = Image.fromarray(np.dstack([g, alpha]), "LA")
    out = read_image_file(_save(tmp_path, "la.png", im))
    _check_plane(out, g.shape)
    np.testing.assert_array_equal(out, g)


def test_rgb_png_is_luma_exactly_as_pillow_L(tmp_path):
    rgb = _rgb(64, 64)
    out = read_image_file(_save(tmp_path, "rgb.png", Image.fromarray(rgb)))
    _check_plane(out, rgb.shape[:2])
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(rgb).convert("L")))
    # a hand value: ITU-R 601-2, 0.299*200 + 0.587*100 + 0.114*50 = 124.2 -> 124
    assert to_grey_uint8(np.array([[[200, 100, 50]]], np.uint8))[0, 0] == 124


def test_rgb_luma_matches_pillow_on_many_colours():
    """The array path (used for callables and in-memory items) equals Pillow's 'L'."""
    rgb = np.random.default_rng(1).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(to_grey_uint8(rgb), ref)


def test_dark_rgb_is_not_mistaken_for_unit_floats(tmp_path):
    """An RGB image whose luma never exceeds 1 must stay dark (not be stretched x255)."""
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[0, 0] = (1, 1, 1)
    rgb[1, 1] = (0, 0, 1)
    rgb[2, 2] = (2, 0, 0)
    out = read_image_file(_save(tmp_path, "dark.png", Image.fromarray(rgb)))
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(rgb).convert("L")))
    assert out.max() <= 1


def test_rgba_png_ignores_alpha(tmp_path):
    rgb = _rgb(32, 48, seed=2)
    alpha = np.random.default_rng(3).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    opaque = read_image_file(_save(tmp_path, "rgb.png", Image.fromarray(rgb)))
    out = read_image_file(_save(tmp_path, "rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA")))
    _check_plane(out, rgb.shape[:2])
    np.testing.assert_array_equal(out, opaque)
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(rgb).convert("L")))


def test_palette_png(tmp_path):
    rgb = _rgb(30, 30, seed=4)
    pal = Image.fromarray(rgb).quantize(colors=16)
    assert pal.mode == "P"
    p = _save(tmp_path, "p.png", pal)
    with Image.open(p) as check:
        assert check.mode == "P"
        expected = np.asarray(check.convert("RGB").convert("L"))
    out = read_image_file(p)
    _check_plane(out, (30, 30))
    np.testing.assert_array_equal(out, expected)
    assert len(np.unique(out)) > 1


def test_palette_png_with_transparency(tmp_path):
    idx = (_ramp(20, 20) % 4).astype(np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 255, 255, 255] + [0] * (256 * 3 - 12))
    p = _save(tmp_path, "pt.png", im, transparency=0)
    with Image.open(p) as check:
        assert "transparency" in check.info
    out = read_image_file(p)
    _check_plane(out, (20, 20))
    lut = np.array([0, 76, 150, 255], np.uint8)  # luma of black, red, green, white
    np.testing.assert_array_equal(out, lut[idx])


def test_grey_jpeg_close_to_source(tmp_path):
    g = np.clip(np.round(128 + 60 * np.sin(np.mgrid[0:64, 0:64][1] / 6.0)), 0, 255).astype(np.uint8)
    out = read_image_file(_save(tmp_path, "g.jpg", Image.fromarray(g), quality=95))
    _check_plane(out, g.shape)
    err = np.abs(out.astype(int) - g.astype(int))
    assert err.mean() < 2.0 and err.max() <= 12


def test_rgb_jpeg_close_to_pillow_luma(tmp_path):
    x = np.mgrid[0:64, 0:64][1]
    rgb = np.dstack([np.clip(50 + 3 * x, 0, 255), np.full_like(x, 120),
                     np.clip(200 - 2 * x, 0, 255)]).astype(np.uint8)
    out = read_image_file(_save(tmp_path, "c.jpeg", Image.fromarray(rgb), quality=95))
    _check_plane(out, (64, 64))
    ref = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    err = np.abs(out.astype(int) - ref)
    assert err.mean() < 2.0 and err.max() <= 12


def test_one_bit_png(tmp_path):
    bits = _ramp(16, 24) > 100
    p = _save(tmp_path, "b.png", Image.fromarray(bits).convert("1"))
    with Image.open(p) as check:
        assert check.mode == "1"
    out = read_image_file(p)
    _check_plane(out, bits.shape)
    np.testing.assert_array_equal(out, np.where(bits, 255, 0).astype(np.uint8))


# --------------------------------------------------------------------------- in-memory refs
def test_load_image_accepts_paths_arrays_and_callables(tmp_path):
    g = _ramp()
    p = _save(tmp_path, "g.png", Image.fromarray(g))
    np.testing.assert_array_equal(load_image(p), g)
    np.testing.assert_array_equal(load_image(tmp_path / "g.png"), g)  # os.PathLike
    np.testing.assert_array_equal(load_image(g), g)
    np.testing.assert_array_equal(load_image(lambda: g[..., None]), g)  # HxWx1
    np.testing.assert_array_equal(load_image(g.astype(np.uint16) * 257), g)
    np.testing.assert_array_equal(load_image(g / 255.0), g)  # float in [0, 1]


def test_to_grey_rejects_bad_shapes():
    with pytest.raises(ImageError, match="unsupported image shape"):
        to_grey_uint8(np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ImageError, match="no pixels"):
        to_grey_uint8(np.zeros((0, 5), np.uint8))
    with pytest.raises(ImageError, match="unsupported image shape"):
        to_grey_uint8(np.zeros((4, 4, 5), np.uint8))  # five channels: not a colour layout


def test_rgb_uint16_array_is_luma_then_scaled():
    a = np.zeros((1, 3, 3), np.uint16)
    a[0, 0] = 65535
    a[0, 1] = (257 * 200, 257 * 100, 257 * 50)  # luma 257 * 124.2 -> 124
    a[0, 2] = (1, 1, 1)  # very dark 16-bit stays dark
    np.testing.assert_array_equal(to_grey_uint8(a), [[255, 124, 0]])


# --------------------------------------------------------------------------- errors
def test_random_bytes_named_png(tmp_path):
    p = tmp_path / "noise.png"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match=r"not a recognised image|corrupt"):
        read_image_file(str(p))


def test_truncated_png(tmp_path):
    full = _save(tmp_path, "full.png", Image.fromarray(_rgb(128, 128, seed=5)))
    data = open(full, "rb").read()
    p = tmp_path / "half.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"(?i)truncated|corrupt") as e:
        read_image_file(str(p))
    assert "not a recognised" not in str(e.value)  # the header is fine; the body is not


def test_truncated_jpeg(tmp_path):
    full = _save(tmp_path, "full.jpg", Image.fromarray(_rgb(128, 128, seed=6)), quality=90)
    data = open(full, "rb").read()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"(?i)truncated|corrupt"):
        read_image_file(str(p))


def test_corrupted_png_body(tmp_path):
    full = _save(tmp_path, "full.png", Image.fromarray(_rgb(128, 128, seed=8)))
    data = bytearray(open(full, "rb").read())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"(?i)truncated|corrupt"):
        read_image_file(str(p))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image_file(str(p))


def test_dangling_symlink(tmp_path):
    p = tmp_path / "gone.png"
    os.symlink(tmp_path / "does-not-exist.png", p)
    with pytest.raises(ImageError, match="unreadable"):
        read_image_file(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="unreadable"):
        load_image(str(tmp_path / "nothing.png"))


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


# --------------------------------------------------------------------------- resize / png
@pytest.mark.parametrize("shape,size", [((40, 56), 32), ((20, 20), 64), ((512, 300), 224), ((7, 7), 7)])
def test_resize_gives_square(shape, size):
    g = _ramp(*shape)
    out = resize(g, size)
    _check_plane(out, (size, size))
    if shape == (size, size):
        assert out is g


def test_resize_keeps_constant_images_constant():
    out = resize(np.full((50, 70), 93, np.uint8), 32)
    assert (out == 93).all()


def test_png_round_trip_is_exact_and_deterministic():
    g = np.random.default_rng(7).integers(0, 256, (33, 47), dtype=np.uint8)
    b1, b2 = encode_png(g), encode_png(g.copy())
    assert b1 == b2
    assert b1[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_png(b1)
    assert back.dtype == np.uint8 and back.shape == g.shape
    np.testing.assert_array_equal(back, g)
    with Image.open(io.BytesIO(b1)) as im:
        assert im.mode == "L"


def test_png_round_trip_through_reader(tmp_path):
    g = _ramp(61, 17)
    p = tmp_path / "enc.png"
    p.write_bytes(encode_png(g))
    np.testing.assert_array_equal(read_image_file(str(p)), g)


# --------------------------------------------------------------------------- real data
def test_real_nih_rgba_pngs_read_as_grey():
    folder = shared("nih_chestxray14_sample", "images")
    rgba = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".png"):
            with Image.open(folder / name) as im:
                if im.mode == "RGBA":
                    rgba.append(name)
    assert len(rgba) == 6, rgba
    for name in rgba:
        out = read_image_file(str(folder / name))
        with Image.open(folder / name) as im:
            expected = np.asarray(im.convert("RGB").convert("L"))
        assert out.dtype == np.uint8 and out.ndim == 2, name
        assert out.shape == expected.shape, name
        np.testing.assert_array_equal(out, expected, err_msg=name)
        assert out.std() > 10, name  # a radiograph, not a blank plane


def test_real_nih_grey_png_unchanged():
    p = shared("nih_chestxray14_sample", "images", "00000075_000.png")
    out = read_image_file(str(p))
    with Image.open(p) as im:
        assert im.mode == "L"
        expected = np.asarray(im)
    _check_plane(out, expected.shape)
    np.testing.assert_array_equal(out, expected)
    assert out.shape == (512, 512)
