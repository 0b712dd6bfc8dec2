"""Image files in and out: raster files -> RGB float [0,1]; the whole image resized to the model's input.

Safety:
- Only the raster formats in FORMATS are opened (Image.open(..., formats=FORMATS)): never PostScript/EPS/PDF or any
  plugin that starts an external program (Pillow's EPS plugin runs Ghostscript), whatever the file's name.
- The decoded size is checked on the header before any pixel is decoded: width x height <= MAX_PIXELS and
  width x height x channels x 4 bytes (the float32 working copy) <= MAX_DECODED_BYTES.
- Pixels must be finite (float TIFFs may hold NaN/inf): such files are refused, naming the file.

Conventions:
- Transparency (RGBA, LA, PA, palette with a transparent colour, a 16-bit PNG's tRNS colour) is composited over white.
- 16-bit PNGs keep their 16-bit precision (decoded by torchvision, as Pillow reduces 16-bit RGB to 8 bits);
  16-bit grayscale (I;16) from other formats too. Multi-frame files (GIF, TIFF) give their first frame.
- The EXIF orientation is applied, so the image looks as it does in a photo viewer.
- No crop: the whole image is resized (bilinear, antialiased), so every pixel the user sees is attacked.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from gse_algo.defaults import DEFAULT_IMAGE, RESOURCES, example_images  # noqa: F401 (re-exported)

MAX_PIXELS = 100_000_000  # width x height above which a file is refused, checked on the header before decoding
MAX_DECODED_BYTES = 1 << 30  # width x height x channels x 4 bytes (float32) above which a file is refused
# Pillow format names that may be opened: in-process raster decoders only (no EPS/PS/PDF, nothing external).
FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF", "PPM", "TGA")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(Exception):
    """An image file that cannot be used; the message names the file and says why."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as float32 RGB [H, W, 3] in [0, 1] (see the module docstring for the conventions)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is checked below
            with Image.open(path, formats=FORMATS) as image:
                _check_size(path, image.size, len(image.getbands()))
                if image.format == "PNG" and _png_bit_depth(path) == 16:
                    channels = _decode_png16(path)
                else:
                    channels = _pillow_channels(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: the image is too large (more than {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: {_unidentified(path)}") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode the image") from None
    except (OSError, SyntaxError, ValueError, RuntimeError, EOFError) as error:  # truncated/corrupt, no permission
        raise ImageError(f"{path}: unreadable or corrupt image ({_reason(error)})") from None
    if not np.isfinite(channels).all():
        raise ImageError(f"{path}: the image holds NaN or infinite pixel values")
    return _to_rgb(np.clip(channels, 0.0, 1.0))


def to_tensor(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """RGB [H, W, 3] in [0, 1] -> float32 tensor [3, *size], the whole image resized (bilinear, antialiased)."""
    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    resized = TF.resize(image, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return resized.clamp(0.0, 1.0).contiguous()  # clamp: float rounding may leave 1 + 1e-7


def load_image(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """read_image + to_tensor: a file -> float32 [3, *size] in [0, 1]."""
    return to_tensor(read_image(path), size)


def save_png16(path: str | Path, image: torch.Tensor | np.ndarray) -> None:
    """Write a [3, H, W] image in [0, 1] as a 16-bit RGB PNG (values rounded to multiples of 1/65535)."""
    Path(path).write_bytes(encode_png16(image))


def encode_png16(image: torch.Tensor | np.ndarray) -> bytes:
    """The bytes of a 16-bit RGB PNG of a [3, H, W] image in [0, 1] (Pillow writes 8-bit RGB only)."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"a 16-bit PNG needs a [3, H, W] image, got shape {array.shape}")
    _, height, width = array.shape
    pixels = np.round(np.clip(array, 0.0, 1.0) * 65535).astype(">u2").transpose(1, 2, 0)
    rows = np.zeros((height, 1 + width * 6), dtype=np.uint8)  # each row: filter type 0, then big-endian RGB
    rows[:, 1:] = pixels.reshape(height, width * 3).view(np.uint8)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits per sample, colour type 2 (RGB)
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(rows.tobytes(), 6)), (b"IEND", b"")]
    return PNG_SIGNATURE + b"".join(_png_chunk(kind, payload) for kind, payload in chunks)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _unidentified(path: Path) -> str:
    """Why no accepted decoder took the file: a damaged PNG or JPEG header, or another format."""
    with path.open("rb") as file:
        head = file.read(8)
    for signature, kind in ((PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG")):
        if head.startswith(signature):
            return f"unreadable or corrupt image (a {kind} file with a damaged header)"
    return f"not an image file in an accepted format ({', '.join(FORMATS)})"


def _reason(error: BaseException) -> str:
    """A decoder's message without the C++ source location torchvision puts in front of it."""
    text = " ".join(str(error).split()) or type(error).__name__
    if ".cpp:" in text:  # "operator(), /path/decode_png.cpp:79, Out of bound read ..." -> "Out of bound read ..."
        text = text.rsplit(".cpp:", 1)[1].partition(", ")[2] or "the data is damaged"
    return text


def _check_size(path: Path, size: tuple[int, int], bands: int) -> None:
    """Refuse, from the header, images whose pixels or float32 working copy would be too large."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{path}: the image is too large ({width}x{height} pixels; at most {MAX_PIXELS:,})")
    needed = width * height * max(bands, 3) * 4  # float32 [H, W, C]: C = the file's bands, at least RGB
    if needed > MAX_DECODED_BYTES:
        raise ImageError(f"{path}: the image is too large to decode ({width}x{height} pixels x {max(bands, 3)} "
                         f"channels needs {needed / 2**20:,.0f} MiB; at most {MAX_DECODED_BYTES / 2**20:,.0f} MiB)")


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as file:
        head = file.read(25)  # signature (8), IHDR length and type (8), width and height (8), bit depth (1)
    return head[24] if len(head) == 25 else 0


def _decode_png16(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 deprecates its codecs (still here)
        image = decode_image(data, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
    pixels = image.permute(1, 2, 0).numpy()
    key = _png16_transparent_colour(raw)
    channels = pixels.astype(np.float32) / 65535.0
    if key is not None and len(key) == pixels.shape[2]:  # tRNS: pixels of exactly this colour are transparent
        opaque = (pixels != np.array(key, dtype=pixels.dtype)).any(axis=2, keepdims=True)
        channels = np.concatenate([channels, opaque.astype(np.float32)], axis=2)
    return channels


def _png16_transparent_colour(raw: bytes) -> tuple[int, ...] | None:
    """The tRNS colour of a 16-bit gray or RGB PNG (PNG spec 11.3.2: 1 or 3 16-bit samples), or None."""
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[at:at + 8])
        if kind == b"tRNS" and length in (2, 6):
            return struct.unpack(f">{length // 2}H", raw[at + 8:at + 8 + length])
        if kind in (b"IDAT", b"IEND"):  # tRNS comes before the image data
            return None
        at += 12 + length
    return None


def _pillow_channels(image: Image.Image) -> np.ndarray:
    """float32 [H, W, C] in [0, 1], C = 1 (grayscale), 3 (RGB) or 4 (RGBA)."""
    if image.mode.startswith("I"):  # 16-bit (I;16, I;16B, ...) or 32-bit integer grayscale: 16-bit range
        return (np.asarray(image, dtype=np.float32) / 65535.0)[..., None]  # clipped to [0, 1] by read_image
    if image.mode == "F":  # float grayscale, taken as [0, 1] (clipped by read_image once checked finite)
        return np.asarray(image, dtype=np.float32)[..., None]
    has_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
    converted = image.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(converted, dtype=np.float32) / 255.0


def _to_rgb(channels: np.ndarray) -> np.ndarray:
    """[H, W, C] with C in 1..4 (gray, gray+alpha, RGB, RGBA) -> RGB [H, W, 3], alpha composited over white."""
    if channels.shape[2] in (2, 4):
        colour, alpha = channels[..., :-1], channels[..., -1:]
        channels = colour * alpha + (1.0 - alpha)
    if channels.shape[2] == 1:
        channels = np.repeat(channels, 3, axis=2)
    return np.ascontiguousarray(channels, dtype=np.float32)
