"""Image reading (formats, modes, 16 bits, EXIF, errors), resizing, the 16-bit PNG writer and the examples."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from gse_algo.images import (
    DEFAULT_IMAGE,
    MAX_PIXELS,
    RESOURCES,
    ImageError,
    encode_png16,
    example_images,
    load_image,
    read_image,
    save_png16,
    to_tensor,
)

# torchvision 0.29 deprecates its image codecs (still the only 16-bit PNG decoder at hand); the warning is noise here
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix,options", [(".png", {}), (".bmp", {}), (".tiff", {}), (".webp", {"lossless": True})])
def test_lossless_formats_round_trip(tmp_path, suffix, options):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(RGB8).save(path, **options)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (12, 10, 3)
    np.testing.assert_allclose(image, RGB8 / 255.0, atol=1e-7)


def test_jpeg_reads_close_to_the_original(tmp_path):
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, axis=0).repeat(3, axis=2)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(read_image(tmp_path / "a.jpg") - smooth / 255.0).mean() < 0.01


def test_grayscale_and_one_bit_become_three_equal_channels(tmp_path):
    gray = RGB8[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    np.testing.assert_allclose(read_image(tmp_path / "l.png"), np.repeat(gray[..., None], 3, 2) / 255.0, atol=1e-7)
    Image.fromarray(gray > 127).save(tmp_path / "bw.png")  # mode "1"
    assert set(np.unique(read_image(tmp_path / "bw.png"))) == {0.0, 1.0}
    np.testing.assert_array_equal(read_image(tmp_path / "bw.png")[..., 1], (gray > 127).astype(np.float32))


def test_palette_image_gives_its_palette_colours(tmp_path):
    palette = [255, 0, 0, 0, 128, 255] + [0] * (256 * 3 - 6)
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette)
    image.save(tmp_path / "p.png")
    expected = np.array([[[1, 0, 0], [0, 128 / 255, 1]], [[0, 128 / 255, 1], [1, 0, 0]]], dtype=np.float32)
    np.testing.assert_allclose(read_image(tmp_path / "p.png"), expected, atol=1e-7)
    image.save(tmp_path / "pt.png", transparency=0)  # index 0 transparent -> white
    expected[0, 0] = expected[1, 1] = 1.0
    np.testing.assert_allclose(read_image(tmp_path / "pt.png"), expected, atol=1e-7)


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 51]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    a = 51 / 255
    expected = [[[200 / 255, 100 / 255, 0], [1, 1, 1], [200 / 255 * a + 1 - a, 100 / 255 * a + 1 - a, 1 - a]]]
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), expected, atol=1e-6)
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    gray = [200 / 255, 1.0, 200 / 255 * a + 1 - a]
    np.testing.assert_allclose(read_image(tmp_path / "la.png")[0], np.repeat(np.array(gray)[:, None], 3, 1), atol=1e-6)


def test_16_bit_grayscale_keeps_16_bit_precision(tmp_path):
    values = np.array([[0, 1, 257, 1000], [30001, 65534, 65535, 12345]], dtype=np.uint16)  # not multiples of 257
    Image.fromarray(values).save(tmp_path / "g16.png")  # mode I;16
    Image.fromarray(values).save(tmp_path / "g16.tiff")
    for name in ("g16.png", "g16.tiff"):
        image = read_image(tmp_path / name)
        np.testing.assert_allclose(image, np.repeat(values[..., None], 3, 2) / 65535.0, atol=1e-7, rtol=0)


def test_save_png16_writes_a_standard_16_bit_rgb_png(tmp_path):
    counts = RNG.integers(0, 65536, size=(3, 9, 7))
    save_png16(tmp_path / "rgb16.png", torch.from_numpy(counts / 65535.0))
    decoded = decode_image(str(tmp_path / "rgb16.png"), mode=ImageReadMode.UNCHANGED)  # libpng, another decoder
    assert decoded.dtype == torch.uint16
    np.testing.assert_array_equal(decoded.numpy().astype(np.int64), counts)
    with Image.open(tmp_path / "rgb16.png") as pil:  # Pillow reads it too (reduced to 8 bits: the high byte)
        np.testing.assert_array_equal(np.asarray(pil.convert("RGB")), (counts >> 8).transpose(1, 2, 0))
    np.testing.assert_allclose(read_image(tmp_path / "rgb16.png"), counts.transpose(1, 2, 0) / 65535.0, atol=1e-7)


def test_save_png16_rounds_and_clips(tmp_path):
    image = np.array([[[-0.5, 0.25]], [[1.5, 0.5]], [[1.0, 1 / 65535 * 0.6]]])  # [3, 1, 2]
    save_png16(tmp_path / "x.png", image)
    counts = decode_image(str(tmp_path / "x.png"), mode=ImageReadMode.UNCHANGED).numpy().astype(np.int64)
    np.testing.assert_array_equal(counts, [[[0, 16384]], [[65535, 32768]], [[65535, 1]]])
    with pytest.raises(ValueError, match="3, H, W"):
        save_png16(tmp_path / "y.png", np.zeros((4, 4, 3)))
    assert encode_png16(image) == (tmp_path / "x.png").read_bytes()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.arange(6 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10  # 2 rows x 3 columns, all distinct
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    np.testing.assert_allclose(read_image(tmp_path / "rotated.png"), np.rot90(pixels, k=-1) / 255.0, atol=1e-7)


def test_to_tensor_matches_pillow_bilinear_resize():
    rgb = RNG.random((37, 53, 3), dtype=np.float32)
    for size in [(20, 30), (50, 70), (37, 53)]:
        tensor = to_tensor(rgb, size)
        assert tensor.shape == (3, *size) and tensor.dtype == torch.float32
        channels = [Image.fromarray(rgb[..., c], "F").resize(size[::-1], Image.BILINEAR) for c in range(3)]
        np.testing.assert_allclose(tensor.numpy(), np.stack([np.asarray(c) for c in channels]), atol=1e-5)


def test_load_image_resizes_the_whole_image(tmp_path):
    left_red = np.zeros((40, 80, 3), dtype=np.uint8)
    left_red[:, :40, 0] = 255
    Image.fromarray(left_red).save(tmp_path / "wide.png")
    tensor = load_image(tmp_path / "wide.png", (16, 16))
    assert tensor.shape == (3, 16, 16)
    red = tensor[0].numpy()  # squeezed, not cropped: the left half of the columns red, the right half not
    np.testing.assert_allclose(red[:, :7], 1.0, atol=1e-6)
    np.testing.assert_allclose(red[:, 9:], 0.0, atol=1e-6)


def _png_without_pixels(path, width, height):
    """A PNG whose header claims width x height but whose pixel data is a few bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(b"\0")), (b"IEND", b"")]
    data = b"".join(struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(k + p)) for k, p in chunks)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)


def _bad_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image\n")
    Image.fromarray(RGB8).resize((200, 200)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:1500])
    save_png16(tmp_path / "full16.png", np.full((3, 64, 64), 0.3))
    (tmp_path / "cut16.png").write_bytes((tmp_path / "full16.png").read_bytes()[:60])
    Image.fromarray(RGB8).save(tmp_path / "full.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    _png_without_pixels(tmp_path / "big.png", 12_000, MAX_PIXELS // 12_000 + 1)
    _png_without_pixels(tmp_path / "bomb.png", 50_000, 50_000)  # past Pillow's own decompression bomb limit
    (tmp_path / "folder.png").mkdir()
    return {
        "missing.png": "no such file",
        "folder.png": "not a file",
        "empty.png": "empty",
        "notes.png": "not an image",
        "cut.png": "corrupt",
        "cut16.png": "corrupt",
        "cut.jpg": "corrupt",
        "big.png": "too large",
        "bomb.png": "too large",
    }


def test_bad_files_raise_image_error_naming_the_file(tmp_path):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(ImageError, match=reason) as caught:
            read_image(tmp_path / name)
        assert str(tmp_path / name) in str(caught.value), name
        assert "\n" not in str(caught.value)


def test_examples_are_small_readable_and_licensed():
    examples = example_images()
    assert 3 <= len(examples) <= 5
    assert examples[0] == DEFAULT_IMAGE and sorted(examples[1:]) == examples[1:]
    licences = (RESOURCES / "LICENSES.md").read_text()
    for path in examples:
        assert path.stat().st_size < 150_000
        assert f"`{path.name}`" in licences
        assert max(read_image(path).shape[:2]) <= 512
