"""Bad image files for read_image / load_image: one ImageError line naming the file, the file unchanged, no
external program started. Bombs (headers declaring gigabytes) are read in a child under a memory limit."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_input import EPS, fake_ghostscript, messages_in_child, png_header_only
from gse_algo.images import ImageError, encode_png16, load_image, read_image

RGB = np.random.default_rng(0).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)


def _put(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _full_png(path: Path) -> bytes:
    Image.fromarray(RGB).save(path)
    return path.read_bytes()


def _float_tiff(path: Path, value: float) -> Path:
    pixels = np.full((8, 8), 0.5, np.float32)
    pixels[3, 4] = value
    Image.fromarray(pixels, mode="F").save(path, format="TIFF")
    return path


def _xbm(path: Path) -> Path:  # a format Pillow reads but that is not on the allowlist
    path.write_text("#define im_width 8\n#define im_height 1\nstatic char im_bits[] = { 0xff };\n")
    return path


# name -> (maker(folder) -> path, words the message must contain)
CASES = {
    "empty file": (lambda d: _put(d / "empty.png", b""), "empty"),
    "text named png": (lambda d: _put(d / "notes.png", "hello\n"), "accepted format"),
    "folder": (lambda d: (d / "dir.png").mkdir() or d / "dir.png", "not a file"),
    "missing": (lambda d: d / "missing.png", "no such file"),
    "truncated png": (lambda d: _put(d / "cut.png", _full_png(d / "f.png")[:300]), "corrupt"),
    "truncated 16-bit png": (lambda d: _put(d / "cut16.png", encode_png16(np.full((3, 40, 40), .3))[:70]),
                             "corrupt"),
    "truncated jpeg": (lambda d: (Image.fromarray(RGB).save(d / "f.jpg"),
                                  (d / "cut.jpg").write_bytes((d / "f.jpg").read_bytes()[:200]))
                       and d / "cut.jpg", "corrupt"),
    "float tiff with NaN": (lambda d: _float_tiff(d / "nan.tif", np.nan), "NaN or infinite"),
    "float tiff with inf": (lambda d: _float_tiff(d / "inf.tif", np.inf), "NaN or infinite"),
    "xbm named png": (lambda d: _xbm(d / "bits.png"), "accepted format"),
    "png with a bad CRC": (lambda d: _put(d / "crc.png", _full_png(d / "g.png")[:29] + b"\0\0\0\0"
                                          + _full_png(d / "g.png")[33:]), "corrupt"),
}
# Read in one child with a fake `gs` first on PATH and a memory limit.
CHILD_CASES = {
    "postscript named photo.png": (lambda d: _put(d / "photo.png", EPS), "accepted format"),
    "eps named drawing.eps": (lambda d: _put(d / "drawing.eps", EPS), "accepted format"),
    "100000000 x 1 png": (lambda d: png_header_only(d / "line.png", 100_000_000, 1), "too large"),
    "9500 x 9500 png": (lambda d: png_header_only(d / "square.png", 9_500, 9_500), "too large to decode"),
    "16-bit 12000 x 12000 png": (lambda d: png_header_only(d / "deep.png", 12_000, 12_000, 16), "too large"),
    "50000 x 50000 png": (lambda d: png_header_only(d / "bomb.png", 50_000, 50_000), "too large"),
    "rgba 9000 x 9000 png": (lambda d: png_header_only(d / "alpha.png", 9_000, 9_000, 8, 6), "too large"),
}


def _check(message: str, path: Path, words: str) -> None:
    assert str(path) in message and "\n" not in message and ".cpp" not in message, message
    assert words in message, message


@pytest.mark.parametrize("case", CASES)
def test_bad_image_gives_one_image_error(case, tmp_path):
    maker, words = CASES[case]
    path = maker(tmp_path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ImageError) as caught:
        load_image(path, (16, 16))
    _check(str(caught.value), path, words)
    assert (path.read_bytes() if path.is_file() else None) == before


@pytest.fixture(scope="module")
def child_messages(tmp_path_factory) -> tuple[dict[str, str], dict[str, Path], Path]:
    folder = tmp_path_factory.mktemp("images")
    bin_dir, marker = fake_ghostscript(folder / "bin")
    paths = {case: maker(folder) for case, (maker, _) in CHILD_CASES.items()}
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"  # the child inherits it
    try:
        messages = messages_in_child(paths, "gse_algo.images", "read_image", "ImageError")
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]
    return messages, paths, marker


@pytest.mark.parametrize("case", CHILD_CASES)
def test_postscript_and_bombs_are_refused_without_ghostscript_or_memory(case, child_messages):
    messages, paths, marker = child_messages
    _check(messages[case], paths[case], CHILD_CASES[case][1])
    assert not marker.exists()  # Ghostscript was never started


def test_16_bit_png_transparency_is_composited_over_white(tmp_path):
    """A 16-bit RGB PNG with a tRNS colour (PNG spec 11.3.2): pixels of exactly that colour are transparent."""
    pixels = np.zeros((2, 2, 3), ">u2")
    pixels[0, 0] = (65535, 0, 0)  # red, opaque; the rest black = the transparent colour
    rows = np.zeros((2, 1 + 2 * 6), np.uint8)
    rows[:, 1:] = pixels.reshape(2, 6).view(np.uint8)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0))
           + chunk(b"tRNS", struct.pack(">HHH", 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows.tobytes()))
           + chunk(b"IEND", b""))
    (tmp_path / "t.png").write_bytes(png)
    np.testing.assert_array_equal(read_image(tmp_path / "t.png"), [[[1, 0, 0], [1, 1, 1]], [[1, 1, 1], [1, 1, 1]]])
