"""Qt-free figures (matplotlib, Agg): the composite result figure (animations: gse_algo.animation).

Figures are matplotlib.figure.Figure objects built directly (no pyplot state). All values are in [0,1] pixel
units. Images may be given as [3,H,W] or [H,W,3] float arrays.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import cm, colors, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gse_algo import colours
from gse_algo.colours import CAM_CMAP, PERTURBATION_CMAP, PERTURBATION_GAMMA
from gse_algo.export import atomic_write_bytes

PANELS = ("original", "adversarial", "perturbation", "mask", "lambda", "cam")
DEFAULT_PANELS = PANELS[:5]
TITLES = {"original": "Original", "adversarial": "Adversarial", "perturbation": "Perturbation (signed)",
          "mask": "Perturbation mask", "lambda": "Lambda map (log)", "cam": "CAM overlay + mask"}
LAMBDA_CMAP = matplotlib.colormaps[colours.LAMBDA_CMAP].with_extremes(bad=str(colours.INF_GREY))  # +inf: grey
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


@dataclass
class FigureData:
    """What the composite figure shows. mask/lambda_map/cam are [H,W]; captions map a panel name to its text."""

    x: np.ndarray
    x_adv: np.ndarray
    mask: np.ndarray | None = None
    lambda_map: np.ndarray | None = None
    cam: np.ndarray | None = None
    captions: dict[str, str] = field(default_factory=dict)
    title: str | None = None

    @property
    def delta(self) -> np.ndarray:
        return hwc(self.x_adv) - hwc(self.x)


def parse_panels(spec: str) -> list[str]:
    """'original,mask,cam' -> ['original', 'mask', 'cam']; 'all' -> every panel; 'default' -> DEFAULT_PANELS."""
    names = [name.strip().lower() for name in spec.split(",") if name.strip()]
    if names == ["all"]:
        return list(PANELS)
    if names == ["default"]:
        return list(DEFAULT_PANELS)
    unknown = [name for name in names if name not in PANELS]
    if unknown or not names:
        raise ValueError(f"unknown figure panel(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(PANELS)}, 'all' or 'default'")
    if len(set(names)) != len(names):
        raise ValueError(f"figure panel listed twice in {spec!r}")
    return names


def hwc(image: np.ndarray) -> np.ndarray:
    """[3,H,W] or [H,W,3] -> float [H,W,3]."""
    image = np.asarray(image, dtype=np.float32)
    return image.transpose(1, 2, 0) if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3 else image


def signed_perturbation(delta: np.ndarray) -> np.ndarray:
    """[H,W]: per pixel the channel value of largest magnitude, sign kept (zero exactly where nothing changed)."""
    delta = hwc(delta)
    index = np.abs(delta).argmax(axis=2)[..., None]
    return np.take_along_axis(delta, index, axis=2)[..., 0]


AMPLIFY_DIM = 0.35  # the clean image is dimmed to this brightness under an amplified difference
AMPLIFY_TARGET = 0.6  # the 99th percentile of the changed values is lifted by this much


def amplified_difference(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, float]:
    """(image [H,W,3], gain k): AMPLIFY_DIM * x + k * |delta| per channel, clipped to [0,1], so a perturbation of a
    few 1/255 is visible at a glance. k = AMPLIFY_TARGET / (99th percentile of the changed |delta|), rounded down to
    1, 2 or 5 x 10^n (1 when nothing changed)."""
    magnitude = np.abs(hwc(delta))
    changed = magnitude[magnitude > 0]
    gain = 1.0
    if changed.size:
        raw = AMPLIFY_TARGET / float(np.percentile(changed, 99))
        power = 10.0 ** np.floor(np.log10(raw))
        gain = float(max(power * m for m in (1, 2, 5) if power * m <= raw * (1 + 1e-9)))
    return np.clip(AMPLIFY_DIM * hwc(x) + gain * magnitude, 0, 1).astype(np.float32), gain


def perturbation_norm(limit: float, gamma: float = PERTURBATION_GAMMA) -> colors.Normalize:
    """Symmetric [-limit, limit] colour scale stretched by sign(d)|d|^gamma; the colour bar shows true values."""
    limit = limit if limit > 0 else 1.0

    def forward(v):
        return np.sign(v) * np.abs(v) ** gamma

    def inverse(v):
        return np.sign(v) * np.abs(v) ** (1.0 / gamma)

    return colors.FuncNorm((forward, inverse), vmin=-limit, vmax=limit)


def perturbation_ticks(bar) -> None:
    """Ticks of a horizontal perturbation colour bar, evenly spaced on the stretched scale (perturbation_norm)."""
    bar.set_ticks(bar.mappable.norm.vmax * np.array([-1, -0.25, 0, 0.25, 1]))
    bar.ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%.2g"))


def lambda_norm(lambda_map: np.ndarray) -> tuple[np.ma.MaskedArray, colors.LogNorm]:
    """The lambda map with +inf / non-positive entries masked (drawn grey) and a log colour scale over the rest
    (colours.lambda_levels, the app's rule)."""
    values = np.ma.masked_where(~np.isfinite(lambda_map) | (lambda_map <= 0), lambda_map)
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = colours.lambda_levels(np.log10(lambda_map))
    return values, colors.LogNorm(10.0 ** low, 10.0 ** high)


def composite_figure(data: FigureData, panels: Sequence[str] = DEFAULT_PANELS, *,
                     panel_inches: float = 2.6) -> Figure:
    """One row of panels in the given order, each with a title and caption above and, where it has one, a colour
    bar below. Panels needing absent data (mask, lambda map, CAM) raise ValueError."""
    panels = list(panels)
    for name in panels:
        if name not in PANELS:
            raise ValueError(f"unknown panel {name!r}; choose from {', '.join(PANELS)}")
        missing = {"lambda": data.lambda_map, "cam": data.cam}.get(name, True)
        if missing is None:
            raise ValueError(f"panel {name!r} needs data the figure was not given")
    n_caption_lines = max([len(data.captions.get(name, "").splitlines()) for name in panels] + [0])
    height = panel_inches * 1.12 + 0.17 * (1 + n_caption_lines) + (0.3 if data.title else 0)
    fig = Figure(figsize=(panel_inches * len(panels), height), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.06)  # inches between the title, the captions and the panels
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(panels), height_ratios=[1, 0.05])
    for column, name in enumerate(panels):
        ax = fig.add_subplot(grid[0, column])
        bar_ax = fig.add_subplot(grid[1, column])
        mappable = _draw_panel(ax, name, data)
        if mappable is None:
            bar_ax.set_axis_off()
        else:
            bar = fig.colorbar(mappable, cax=bar_ax, orientation="horizontal")
            bar.ax.tick_params(labelsize=7)
            if name == "perturbation":
                perturbation_ticks(bar)
            if name == "lambda":  # a few plain ticks: log axes spanning under a decade get crowded minor labels
                low, high = mappable.norm.vmin, mappable.norm.vmax
                bar.set_ticks(np.geomspace(low, high, 3))
                bar.ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%.2g"))
                bar.ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks([])
        ax.set_yticks([])
        caption = data.captions.get(name, "")
        ax.set_title(TITLES[name] + ("\n" + caption if caption else ""), fontsize=8.5, loc="center")
    if data.title:
        fig.suptitle(data.title, fontsize=10)
    return fig


def _mask(data: FigureData) -> np.ndarray:
    return data.mask if data.mask is not None else np.abs(data.delta).max(axis=2) > 0


def _draw_panel(ax, name: str, data: FigureData):
    """Draw one panel; return the mappable for its colour bar, or None."""
    if name == "original":
        ax.imshow(np.clip(hwc(data.x), 0, 1), interpolation="nearest")
    elif name == "adversarial":
        ax.imshow(np.clip(hwc(data.x_adv), 0, 1), interpolation="nearest")
    elif name == "perturbation":
        signed = signed_perturbation(data.delta)
        norm = perturbation_norm(colours.perturbation_levels(signed)[1])
        return ax.imshow(signed, cmap=PERTURBATION_CMAP, norm=norm, interpolation="nearest")
    elif name == "mask":
        ax.imshow(_mask(data), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    elif name == "lambda":
        values, norm = lambda_norm(np.asarray(data.lambda_map, dtype=np.float64))
        return ax.imshow(values, cmap=LAMBDA_CMAP, norm=norm, interpolation="nearest")
    elif name == "cam":
        ax.imshow(np.clip(hwc(data.x), 0, 1), interpolation="nearest")
        ax.imshow(data.cam, cmap=CAM_CMAP, vmin=colours.CAM_LEVELS[0], vmax=colours.CAM_LEVELS[1], alpha=0.45,
                  interpolation="bilinear")
        mask = _mask(data)
        if mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.6)
        return cm.ScalarMappable(colors.Normalize(*colours.CAM_LEVELS), CAM_CMAP)  # the bar without the alpha
    return None


def figure_bytes(fig: Figure, fmt: str, dpi: float = 300, metadata: Mapping[str, str] | None = None) -> bytes:
    """The figure encoded as 'png', 'svg' or 'pdf', with provenance in the format's metadata where it has any."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_format_metadata(fmt, metadata or {}))
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: float = 300,
                metadata: Mapping[str, str] | None = None) -> Path:
    """Save as PNG / SVG / PDF (by suffix) atomically. PNG: every metadata entry as a text chunk; SVG and PDF:
    the entries their metadata schemes have (title, date, creator) plus all of it as a description/subject."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save a figure as {Path(path).name!r}: use .png, .svg or .pdf")
    return atomic_write_bytes(path, figure_bytes(fig, fmt, dpi, metadata))


def _format_metadata(fmt: str, info: Mapping[str, str]) -> dict:
    if fmt == "png":
        return dict(info)
    summary = "; ".join(f"{key}: {value}" for key, value in info.items())
    title = info.get("Title", "GSE adversarial example")
    if fmt == "svg":
        return {"Title": title, "Creator": info.get("Software", ""), "Date": info.get("Creation Time", ""),
                "Description": summary}
    return {"Title": title, "Creator": info.get("Software", ""), "Subject": summary}


def _class(entry: dict) -> str:
    return f"{entry['name']} ({entry['index']}), p = {entry['probability']:.2f}"


def run_title(m: dict) -> str:
    """Figure title from a run's metrics record (the metrics.json of gse-attack; a baseline's names its attack and
    has no preset)."""
    goal = f"targeted at {m['target']['name']}" if m["targeted"] else "untargeted"
    outcome = "success" if m["success"] else "failed"
    attack = m["attack"]["title"] if "attack" in m else "GSE"
    preset = f", preset {m['preset']}" if "preset" in m else ""
    views = " (no lambda map: only GSE has one)" if "attack" in m else ""
    return f"{attack} on {Path(m['image']).name}: {m['model']}, {goal}{preset} — {outcome}{views}"


def cam_caption(method: str, class_name: str | None = None, is70: float | None = None, image: str | None = None) -> str:
    """The CAM panel's caption: method, class, the image it was computed on, and IS(70) when known."""
    text = method + (f" of {class_name}" if class_name else "") + (f" ({image} image)" if image else "")
    return text + (f"\nIS(70) = {is70:.2f}" if is70 is not None and is70 == is70 else "")


def run_captions(m: dict, cam: str, lambda_map: np.ndarray | None) -> dict[str, str]:
    """Panel captions from a run's metrics record: classes, metrics in [0,1] units, where the lambda map comes from.

    `cam` is the CAM panel's caption (`cam_caption`); the 8-bit line is left out when `fools_at_8bit` is None; a
    run without a lambda map (a baseline, lambda_map None) has no lambda caption.
    """
    fools = m["fools_at_8bit"]
    captions = {
        "original": _class(m["clean"]),
        "adversarial": _class(m["adversarial"])
                       + ("" if fools is None else f"\n8-bit PNG still fools: {'yes' if fools else 'no'}"),
        "perturbation": f"l2 = {m['l2']:.3g} ([0,1] units)\nstrongest channel, colour ~ sqrt",
        "mask": f"ACP = {m['acp']} px, ANC = {m['anc']}\nd2,0 = {m['d20'] if m['d20'] >= 0 else '–'}",
        "cam": cam,
    }
    if lambda_map is not None:
        shown = m["figure_iterate"]
        captions["lambda"] = (f"search step {shown['step'] + 1}, iteration {shown['iteration'] + 1}"  # counted from 1
                              + ("\ngrey: +inf" if np.isinf(lambda_map).any() else ""))
    return captions
