"""Animations of a run (Qt-free): frames of the chosen panels, an animated GIF, a strip of frames.

Each frame shows the chosen panels side by side, each with its title above and, for the scalar ones, a colour bar
below (gse_algo.colours: the app's and the composite figure's colours and level rules, with the levels fixed over
all frames so that colours compare), then the frame's label. Small images are enlarged (nearest neighbour) to about
PANEL_PX, and the text is sized to the panel. The GIF shares one palette over all frames, without dithering, so
what does not change between frames costs (almost) nothing.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from gse_algo import colours
from gse_algo.export import atomic_write_bytes
from gse_algo.figures import PANELS, TITLES, hwc, signed_perturbation

DEFAULT_PANELS = ("adversarial", "perturbation", "mask")
PANEL_PX = 256  # small images are enlarged to about this width
CAM_ALPHA = 0.45  # as in the composite figure
PALETTE_SAMPLES = 8  # frames the shared GIF palette is made from


@dataclass(frozen=True)
class FrameData:
    """One iterate: x [H,W,3] (the clean image), delta [3,H,W], mask [H,W], log10 lambda [H,W] (for 'lambda'), the
    CAM [H,W] in [0,1] (for 'cam') and its label."""

    x: np.ndarray
    delta: np.ndarray
    mask: np.ndarray
    label: str
    log10_lambda: np.ndarray | None = None
    cam: np.ndarray | None = None


def check_panels(panels: Sequence[str], frame: FrameData) -> list[str]:
    """The panels, checked: known, each once, and with their data (ValueError with the reason)."""
    panels = list(panels)
    unknown = [p for p in panels if p not in PANELS]
    if not panels or unknown or len(set(panels)) != len(panels):
        raise ValueError(f"choose panels from {', '.join(PANELS)}, each once (got {', '.join(panels) or 'none'})")
    for name, data in (("lambda", frame.log10_lambda), ("cam", frame.cam)):
        if name in panels and data is None:
            raise ValueError(f"the {name} panel needs {'a computed CAM' if name == 'cam' else 'the lambda map'}")
    return panels


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


class _Renderer:
    """Draws frames of fixed panels and levels (the levels span every frame)."""

    def __init__(self, frames: Sequence[FrameData], panels: list[str], labels: bool) -> None:
        self.panels, self.labels = panels, labels
        h, w = frames[0].mask.shape
        self.scale = max(1, PANEL_PX // max(h, w))
        self.size = (h * self.scale, w * self.scale)
        self.font_px = max(11, round(self.size[1] / 16))
        self.font = _font(self.font_px)
        self.title_h = round(self.font_px * 1.6)
        self.bar_h = round(self.font_px * 0.8) + round(self.font_px * 1.4) if self._has_bars() else 0
        self.gap = max(4, self.font_px // 2)
        self.levels = {"perturbation": colours.perturbation_levels(np.stack([signed_perturbation(f.delta)
                                                                             for f in frames])),
                       "cam": colours.CAM_LEVELS}
        if "lambda" in panels:
            self.levels["lambda"] = colours.lambda_levels(np.stack([f.log10_lambda for f in frames]))
        self.tables = {name: colours.lookup_table(name)[:, :3] for name in self.levels}

    def _has_bars(self) -> bool:
        return any(p in ("perturbation", "lambda", "cam") for p in self.panels)

    def _mapped(self, name: str, values: np.ndarray) -> np.ndarray:
        """Values -> RGB uint8 through the view's lookup table and levels (non-finite lambda: grey)."""
        low, high = self.levels[name]
        table = self.tables[name]
        finite = np.isfinite(values)
        index = np.round((np.where(finite, values, low) - low) / (high - low) * (len(table) - 1))
        rgb = table[np.clip(index, 0, len(table) - 1).astype(int)]
        rgb[~finite] = round(colours.INF_GREY * 255)
        return rgb

    def _picture(self, name: str, f: FrameData) -> np.ndarray:
        x = np.clip(hwc(f.x), 0, 1)
        if name == "original":
            return (x * 255 + 0.5).astype(np.uint8)
        if name == "adversarial":
            return (np.clip(x + hwc(f.delta), 0, 1) * 255 + 0.5).astype(np.uint8)
        if name == "perturbation":
            return self._mapped(name, signed_perturbation(f.delta))
        if name == "mask":
            return np.repeat(np.where(f.mask, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        if name == "lambda":
            return self._mapped(name, f.log10_lambda)
        blend = (1 - CAM_ALPHA) * x * 255 + CAM_ALPHA * self._mapped("cam", f.cam)
        edges = f.mask & ~_inner(f.mask)
        blend[edges] = 255  # the support outlined in white, as in the figure
        return (blend + 0.5).astype(np.uint8)

    def _bar(self, name: str, width: int) -> Image.Image:
        band = Image.new("RGB", (width, self.bar_h), "white")
        if name not in self.levels:
            return band
        strip_h = round(self.font_px * 0.8)
        values = np.linspace(*self.levels[name], width)
        band.paste(Image.fromarray(np.repeat(self._mapped(name, values)[None], strip_h, axis=0)), (0, 2))
        low, high = self.levels[name]
        if name == "lambda":
            texts = [f"{10 ** low:.2g}", "lambda", f"{10 ** high:.2g}"]
        elif name == "perturbation":
            texts = [f"{low:.2g}", "0", f"{high:.2g}"]
        else:
            texts = [f"{low:g}", "CAM", f"{high:g}"]
        draw = ImageDraw.Draw(band)
        for text, anchor, x in zip(texts, ("la", "ma", "ra"), (0, width // 2, width - 1)):
            draw.text((x, strip_h + 3), text, fill="black", font=self.font, anchor=anchor)
        return band

    def frame(self, f: FrameData) -> np.ndarray:
        h, w = self.size
        label_h = self.title_h if self.labels else 0
        width = len(self.panels) * w + (len(self.panels) - 1) * self.gap + 2  # 1 px each side for the frames
        canvas = Image.new("RGB", (width, self.title_h + h + self.bar_h + label_h), "white")
        draw = ImageDraw.Draw(canvas)
        for i, name in enumerate(self.panels):
            left = 1 + i * (w + self.gap)
            picture = Image.fromarray(self._picture(name, f)).resize((w, h), Image.Resampling.NEAREST)
            draw.text((left + w // 2, self.title_h // 2), TITLES[name], fill="black", font=self.font, anchor="mm")
            canvas.paste(picture, (left, self.title_h))
            canvas.paste(self._bar(name, w), (left, self.title_h + h))
            draw.rectangle((left - 1, self.title_h - 1, left + w, self.title_h + h), outline=(160, 160, 160))
        if self.labels:
            draw.text((3, canvas.height - label_h // 2), f.label, fill="black", font=self.font, anchor="lm")
        return np.asarray(canvas)


def _inner(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` whose four neighbours are all in it (the rest of it is its edge)."""
    padded = np.pad(mask, 1)
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def render_frames(frames: Sequence[FrameData], panels: Sequence[str] = DEFAULT_PANELS, *, labels: bool = True,
                  progress: Callable[[float], None] | None = None) -> list[np.ndarray]:
    """uint8 [H', W', 3] pictures of the frames (labels written under them when `labels`); `progress(fraction)`
    after each."""
    if not frames:
        raise ValueError("no frames to animate")
    renderer = _Renderer(frames, check_panels(panels, frames[0]), labels)
    pictures = []
    for i, f in enumerate(frames):
        pictures.append(renderer.frame(f))
        if progress is not None:
            progress((i + 1) / len(frames))
    return pictures


def select_frames(n: int, every: int) -> list[int]:
    """Indices 0, every, 2*every, ... of n items, always ending with the last one."""
    if every < 1:
        raise ValueError(f"every must be >= 1 (got {every})")
    indices = list(range(0, n, every))
    if n and indices[-1] != n - 1:
        indices.append(n - 1)
    return indices


def gif_bytes(frames: Sequence[np.ndarray], fps: float = 5.0) -> bytes:
    """An endlessly looping animated GIF of uint8 [H,W,3] frames, one palette for all (made from a sample of the
    frames), no dithering. Pillow merges identical consecutive frames (adding up their durations), so the file may
    hold fewer frames than given when some repeat."""
    if not frames:
        raise ValueError("no frames to animate")
    arrays = [np.asarray(frame, dtype=np.uint8) for frame in frames]
    sample = np.concatenate(arrays[:: max(1, len(arrays) // PALETTE_SAMPLES)], axis=0)
    palette = Image.fromarray(sample).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(a).quantize(palette=palette, dither=Image.Dither.NONE) for a in arrays]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
    return buffer.getvalue()


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 5.0) -> Path:
    """Write the frames as an animated GIF, atomically."""
    return atomic_write_bytes(path, gif_bytes(frames, fps))


def frame_strip(frames: Sequence[np.ndarray], labels: Sequence[str] = (), *, columns: int = 5,
                frame_inches: float = 2.0) -> Figure:
    """A grid of frames (e.g. every Nth iteration, see select_frames) with a label above each."""
    if not frames:
        raise ValueError("no frames for the strip")
    columns = min(columns, len(frames))
    rows = -(-len(frames) // columns)
    aspect = frames[0].shape[0] / frames[0].shape[1]
    fig = Figure(figsize=(frame_inches * columns, (frame_inches * aspect + 0.3) * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for index, ax in enumerate(fig.subplots(rows, columns, squeeze=False).flat):
        ax.set_axis_off()
        if index < len(frames):
            ax.imshow(frames[index], interpolation="nearest")
            if index < len(labels):
                ax.set_title(labels[index], fontsize=8)
    return fig
