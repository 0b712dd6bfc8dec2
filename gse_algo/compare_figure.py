"""The comparison figure of several attacks on one image (Qt-free matplotlib; gse-compare and the app's export).

One row per run: its adversarial image and its signed perturbation (each row at its own colour scale, its bound in
the row's title, as in the app: amplitudes differ by orders of magnitude between attacks); beside them the clean
image and the supports of the first two runs overlaid (only A / only B / both, in gse_algo.compare's colours, with
their IoU; on images of 64 px or more, rings around clusters too small to see at print size); below, a table of
every metric with the best value of each column marked by gse_algo.compare.better. Takes plain NumPy arrays and
metrics, never tensors, so it needs no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch

from gse_algo import colours, compare
from gse_algo.figures import PERTURBATION_CMAP, hwc, perturbation_norm, perturbation_ticks, signed_perturbation

if TYPE_CHECKING:
    from gse_algo.attacks.measure import AttackMetrics

# (metric, column title); sizes (compare.SIZES) are ranked among successful runs only
COLUMNS = (("success", "fooled"), ("acp", "ACP"), ("channel_l0", "L0 (CxHxW)"), ("anc", "ANC"), ("d20", "d2,0"),
           ("l2", "l2"), ("linf", "linf"), ("fools_at_8bit", "8-bit"), ("time_s", "time"), ("n_forward", "fwd"),
           ("n_backward", "bwd"))
LABEL_CHARS = 20  # a run's label is cut to this many characters (names may have 80)
PAIR_CHARS = 26  # the two labels' characters that fit in the overlay's title
TITLE_CHARS = 95  # the title's characters on one line of the figure's width
LABEL_CHAR = 0.0075  # the width of one character of the table's 7.5 pt font, as a share of the figure's width
MARK = "#c7e9c0"  # the background of a best cell (light green; the text is bold too)


class ComparedRun(NamedTuple):
    """One run in the figure. metrics: an AttackMetrics, or a mapping with its fields (AttackMetrics.as_dict())."""

    label: str
    x_adv: np.ndarray  # [C,H,W] or [H,W,C] in [0,1]
    metrics: AttackMetrics | Mapping
    time_s: float
    n_forward: int | None = None
    n_backward: int | None = None


def short_label(text: str, limit: int = LABEL_CHARS) -> str:
    """The text as the figure shows it: at most `limit` characters, '…' where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _metric(run: ComparedRun, name: str) -> object:
    if name in ("time_s", "n_forward", "n_backward"):
        return getattr(run, name)
    m = run.metrics
    return m[name] if isinstance(m, Mapping) else getattr(m, name)


def ranked_value(run: ComparedRun, name: str) -> object:
    """The value the ranking compares: None for a failed run's sizes."""
    return None if name in compare.SIZES and not _metric(run, "success") else _metric(run, name)


def best_runs(runs: Sequence[ComparedRun], name: str) -> set[int]:
    """Indices of the runs whose value of `name` no other run beats and at least one run does not reach."""
    values = [ranked_value(r, name) for r in runs]
    marked = set()
    for i, v in enumerate(values):
        verdicts = [compare.better(name, v, w) for j, w in enumerate(values) if j != i]
        if v is not None and "b" not in verdicts and "a" in verdicts:
            marked.add(i)
    return marked


def _cell(name: str, value: object) -> str:
    if value is None:
        return "–"
    if name in ("success", "fools_at_8bit"):
        return "yes" if value else "no"
    if name in ("l2", "linf"):
        return f"{float(value):.4g}"
    if name == "time_s":
        return f"{float(value):.2f} s"
    return str(int(value))


def comparison_figure(x: np.ndarray, runs: Sequence[ComparedRun | tuple], *,
                      class_names: Sequence[str] | None = None, title: str | None = None,
                      panel_inches: float = 2.4) -> Figure:
    """The figure of `runs` (ComparedRun or plain (label, x_adv, metrics, time_s[, n_forward, n_backward]) tuples)
    on the clean image x ([C,H,W] or [H,W,C] in [0,1]); class_names label the adversarial classes. Save it with
    gse_algo.figures.save_figure (PNG/SVG/PDF)."""
    runs = [r if isinstance(r, ComparedRun) else ComparedRun(*r) for r in runs]
    runs = [r._replace(label=short_label(r.label)) for r in runs]  # a long name would break the layout
    if not runs:
        raise ValueError("a comparison needs at least one run")
    clean = hwc(x)
    if any(hwc(r.x_adv).shape != clean.shape for r in runs):
        raise ValueError(f"every adversarial image must have the clean image's shape {clean.shape}")
    deltas = [hwc(r.x_adv) - clean for r in runs]
    n = len(runs)
    table_inches = 0.25 * (n + 1) + 0.45
    fig = Figure(figsize=(3 * panel_inches + 0.6, n * (panel_inches + 0.45) + table_inches + (0.35 if title else 0)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n + 1, 3, height_ratios=[panel_inches + 0.45] * n + [table_inches])
    signed = [signed_perturbation(d) for d in deltas]
    pert_ax = None
    for row, (run, s) in enumerate(zip(runs, signed)):
        adv_ax, pert_ax = fig.add_subplot(grid[row, 0]), fig.add_subplot(grid[row, 1])
        adv_ax.imshow(np.clip(hwc(run.x_adv), 0, 1), interpolation="nearest")
        adv_class = int(_metric(run, "adv_class"))
        name = class_names[adv_class] if class_names is not None else str(adv_class)
        fooled = "fooled" if _metric(run, "success") else "not fooled"
        adv_ax.set_title(f"{name} ({fooled})", fontsize=8.5)
        adv_ax.set_ylabel(run.label, fontsize=10)
        # each row at its own scale, as in the app: attacks' amplitudes differ by orders of magnitude
        bound = colours.perturbation_levels(s)[1]
        pert_ax.imshow(s, cmap=PERTURBATION_CMAP, norm=perturbation_norm(bound), interpolation="nearest")
        pert_ax.set_title(f"δ, ±{bound:g}: ACP {_metric(run, 'acp')}, l2 {float(_metric(run, 'l2')):.3g}",
                          fontsize=8.5)
        for ax in (adv_ax, pert_ax):
            ax.set_xticks([])
            ax.set_yticks([])
    shares = ScalarMappable(norm=perturbation_norm(1.0), cmap=PERTURBATION_CMAP)
    bar = fig.colorbar(shares, ax=pert_ax, location="bottom", shrink=0.9, aspect=25)
    bar.ax.tick_params(labelsize=7)
    perturbation_ticks(bar)
    bar.set_label("strongest channel's change, as a share of its row's ±bound (in the row's title)", fontsize=7)
    _draw_side(fig, grid, clean, runs, deltas)
    _draw_table(fig.add_subplot(grid[n, :]), runs)
    if title:
        fig.suptitle(short_label(title, TITLE_CHARS), fontsize=10)
    return fig


def _draw_side(fig: Figure, grid, clean: np.ndarray, runs: list[ComparedRun], deltas: list[np.ndarray]) -> None:
    """The clean image, and (two runs or more) the overlay of the first two supports with its legend and IoU."""
    ax = fig.add_subplot(grid[0, 2])
    ax.imshow(np.clip(clean, 0, 1), interpolation="nearest")
    ax.set_title("original", fontsize=8.5)
    ax.set_axis_off()
    if len(runs) < 2:
        return
    cell = grid[1, 2].subgridspec(2, 1, height_ratios=[4, 1])
    ax, legend_ax = fig.add_subplot(cell[0]), fig.add_subplot(cell[1])
    masks = [np.abs(d).max(axis=2) > 0 for d in deltas[:2]]
    codes = compare.overlay_codes(*masks)
    ax.imshow(compare.overlay_picture(clean, codes), interpolation="nearest")
    iou = compare.support_iou(*masks)
    a, b = runs[0].label, runs[1].label
    pair = f"{a} vs {b}" if len(a) + len(b) <= PAIR_CHARS else "rows 1 and 2"  # the legend names them too
    ax.set_title(f"supports: {pair}\nIoU = {'–' if math.isnan(iou) else f'{iou:.2f}'}", fontsize=8.5)
    ax.set_xticks([])
    ax.set_yticks([])
    names = {compare.ONLY_A: f"only {a}", compare.ONLY_B: f"only {b}", compare.BOTH: "both"}
    handles = [Patch(facecolor=colour, edgecolor="0.3", label=f"{names[code]} ({int((codes == code).sum())} px)")
               for code, colour in compare.OVERLAY_COLOURS.items()]
    small = compare.small_clusters(codes)
    for row, column, code in small:
        ax.add_patch(Circle((column, row), max(codes.shape) * compare.RING_RADIUS, fill=False,
                            edgecolor=compare.OVERLAY_COLOURS[code], linewidth=0.9))
    if small:
        handles.append(Line2D([], [], marker="o", markersize=7, fillstyle="none", linestyle="none", color="0.3",
                              label=compare.RING_LABEL))
    legend_ax.set_axis_off()
    legend_ax.legend(handles=handles, loc="center", fontsize=7, frameon=False, ncols=1)


def _draw_table(ax, runs: list[ComparedRun]) -> None:
    ax.set_axis_off()
    cells = [[r.label] + [_cell(name, _metric(r, name)) for name, _ in COLUMNS] for r in runs]
    share = 1 / (len(COLUMNS) + 1)  # a column's share of the width, the label column widened to its longest label
    label_share = max(share, LABEL_CHAR * max(len(r.label) for r in runs) + 0.025)
    widths = [label_share] + [(1 - label_share) / len(COLUMNS)] * len(COLUMNS)
    table = ax.table(cellText=cells, colLabels=["attack"] + [t for _, t in COLUMNS], bbox=(0, 0, 1, 1),
                     cellLoc="center", colWidths=widths)
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    for column, (name, _) in enumerate(COLUMNS, start=1):
        for row in best_runs(runs, name):
            cell = table[row + 1, column]
            cell.set_facecolor(MARK)
            cell.get_text().set_fontweight("bold")
    ax.set_title("green, bold: the column's best value (sizes among fooling runs only)\n[0,1] units; L0 (CxHxW): "
                 "changed values; 8-bit: still fools once rounded to 8 bits", fontsize=7, loc="left")
