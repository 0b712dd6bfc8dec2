"""Bad files through the app's open paths (offscreen): one message naming the file, and nothing changes.

Images are decoded by the engine process, so a hostile file reaches no decoder in the GUI; damaged sessions are
refused by the checked loader before anything is shown.
"""

import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import TIMEOUT, finished_run

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring width x height with a few bytes of pixel data (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def nan_tiff(path):
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(path)


IMAGES = {
    "postscript.png": lambda p: p.write_bytes(EPS),
    "bomb.png": lambda p: p.write_bytes(png_header(100_000, 100_000)),
    "truncated.png": lambda p: p.write_bytes(png_header(16, 16)[:40]),
    "empty.jpg": lambda p: p.write_bytes(b""),
    "nan.tif": nan_tiff,
    "folder.png": lambda p: p.mkdir(),
    "missing.png": lambda p: None,
}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_a_bad_image_gives_one_message_and_keeps_the_shown_one(qtbot, window, tmp_path, name):
    path = tmp_path / name
    IMAGES[name](path)
    before = window.state.image
    window.open_image(str(path))
    qtbot.waitUntil(lambda: bool(window.messages), timeout=TIMEOUT)
    assert len(window.messages) == 1 and name in window.messages[0] and "Traceback" not in window.messages[0]
    assert "\n" not in window.messages[0]
    assert window.state.image is before and window.engine.alive


def damaged_sessions(good: bytes, folder):
    out = {"truncated.gses": good[: len(good) // 3], "random.gses": bytes(range(256)) * 20, "empty.gses": b""}
    for name, path in out.items():
        (folder / name).write_bytes(path)
    with zipfile.ZipFile(folder / "good.gses") as src, zipfile.ZipFile(folder / "strings.gses", "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            dst.writestr(member, data.replace(b'"iters": 30', b'"iters": "thirty"') if member == "session.json"
                         else data)
    with zipfile.ZipFile(folder / "good.gses") as src, zipfile.ZipFile(folder / "label.gses", "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            dst.writestr(member, data.replace(b'"clean_class": ', b'"clean_class": 9999') if member == "session.json"
                         else data)
    return [*out, "strings.gses", "label.gses"]


def test_damaged_sessions_change_nothing(qtbot, window, tmp_path):
    finished_run(qtbot, window)
    good = tmp_path / "good.gses"
    assert window.files.save_session(good)
    history, image = window.state.history, window.state.image
    for name in damaged_sessions(good.read_bytes(), tmp_path):
        window.messages.clear()
        assert not window.files.open_session(tmp_path / name)
        assert len(window.messages) == 1 and name in window.messages[0] and "Traceback" not in window.messages[0]
        assert window.state.history is history and window.state.image is image
