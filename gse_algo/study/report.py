"""`gse-study report DIR`: DIR/report/summary.md and .csv (one line per attack configuration), for targeted
studies targets.csv (best / average / worst over each image's targets, spec 2.3), and one plot per attack and
swept setting (PNG and SVG, matplotlib's Agg backend: no Qt).

Conventions: ASR over every row; ACP, ANC, d2,0, l2 and the density shares over the successful rows (the
paper's means); l2 in [0,1] pixel units (half the paper's). Best / average / worst (spec 2.3, each metric on its
own): best = the minimum over an image's successful targets (images with a success), average = the mean over
all (image, target) pairs, failures included (a GSE failure returns delta = 0, so it counts 0), worst = the
maximum over the targets of images where every target succeeded; each then averaged over images. Plots: ASR
with its 95% Wilson interval; the sizes as median (dot), interquartile range (bar) and mean (cross) over the
successful rows, each row a small grey dot.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from gse_algo.defaults import IS_PERCENTILES
from gse_algo.study.table import read_rows, write_parquet

SIZES = (("acp", "ACP (changed pixels)"), ("anc", "ANC (clusters)"), ("d20", "d2,0 (8x8 windows)"),
         ("l2", "l2 ([0,1] units)"))
DENSITY = (("cam_pixel_share", "support inside the CAM's top region"),
           ("mask_pixel_share", "support inside the object mask"))
Z95 = 1.959964
IS_KEYS = tuple(f"is_{p}" for p in IS_PERCENTILES)  # the interpretability score per percentile (spec 2.4)


def write_report(folder: Path) -> list[Path]:
    """Write the report of a study folder; returns the files written."""
    manifest, rows = read_rows(folder)
    out = folder / "report"
    out.mkdir(exist_ok=True)
    configs = manifest["plan"]["configs"]
    lines = summary_lines(rows, configs)
    written = [_csv(out / "summary.csv", lines)]
    targeted = manifest["plan"]["targeted"]
    cases = target_cases(rows, configs) if targeted else []
    if cases:
        written.append(_csv(out / "targets.csv", cases))
    written.append(_markdown(out / "summary.md", manifest, rows, lines, cases))
    written += plots(out, rows, configs, manifest["name"])
    parquet = write_parquet(folder, rows)
    return written + ([parquet] if parquet else [])


def _mean(values: list) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else float("nan")


def _median(values: list) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.median(values)) if values else float("nan")


def _of(rows: list[dict], config: dict) -> list[dict]:
    return [r for r in rows if r["config_id"] == config["config_id"] and r["attack"] == config["attack"]]


def summary_lines(rows: list[dict], configs: list[dict]) -> list[dict]:
    """One dict per configuration: rows, ASR (float and 8-bit), the size means/medians over successes, time."""
    lines = []
    density = [key for key, _ in DENSITY if rows and key in rows[0]]
    for config in configs:
        mine = _of(rows, config)
        good = [r for r in mine if r["success"]]
        line = {"attack": config["attack"], "config": config["label"], **config["swept"], "rows": len(mine),
                "asr": _mean([r["success"] for r in mine]), "asr_8bit": _mean([r["fools_at_8bit"] for r in mine])}
        for key, _ in SIZES:
            line[f"{key}_mean"] = _mean([r[key] for r in good])
            line[f"{key}_median"] = _median([r[key] for r in good])
        for key in [k for k in IS_KEYS if k in (rows[0] if rows else {})]:
            line[f"{key}_mean"] = _mean([r[key] for r in good])
        for key in density:
            line[f"{key}_mean"] = _mean([r[key] for r in good])
            line[key.replace("pixel_share", "area") + "_mean"] = _mean([r[key.replace("pixel_share", "area")]
                                                                         for r in good])
        line["time_s_mean"] = _mean([r["time_s"] for r in mine])
        lines.append(line)
    return lines


def target_cases(rows: list[dict], configs: list[dict]) -> list[dict]:
    """Per configuration: best / average / worst over each image's targets (module docstring, spec 2.3)."""
    out = []
    for config in configs:
        by_image: dict[str, list[dict]] = {}
        for r in _of(rows, config):
            by_image.setdefault(r["image"], []).append(r)
        if not by_image:
            continue
        groups = list(by_image.values())
        for case in ("best", "average", "worst"):
            line = {"attack": config["attack"], "config": config["label"], **config["swept"], "case": case}
            if case == "average":
                line["asr"] = _mean([r["success"] for g in groups for r in g])
            else:
                pick = any if case == "best" else all
                line["asr"] = _mean([pick(r["success"] for r in g) for g in groups])
            for key, _ in SIZES:
                line[key] = _case(groups, key, case)
            line["images"] = len(groups)
            out.append(line)
    return out


def _case(groups: list[list[dict]], key: str, case: str) -> float:
    if case == "average":
        return _mean([r[key] for g in groups for r in g])
    if case == "best":
        return _mean([min(r[key] for r in g if r["success"]) for g in groups if any(r["success"] for r in g)])
    return _mean([max(r[key] for r in g) for g in groups if all(r["success"] for r in g)])


def _csv(path: Path, lines: list[dict]) -> Path:
    names: list[str] = []
    for line in lines:
        names += [k for k in line if k not in names]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)
    return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return str(value)


def _table(lines: list[dict], keys: list[tuple[str, str]]) -> list[str]:
    out = ["| " + " | ".join(title for _, title in keys) + " |", "|" + "---|" * len(keys)]
    for line in lines:
        cells = [f"{line[k]:.0%}" if k.startswith("asr") and isinstance(line.get(k), float)
                 and not math.isnan(line[k]) else _fmt(line.get(k, "")) for k, _ in keys]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _markdown(path: Path, manifest: dict, rows: list[dict], lines: list[dict], cases: list[dict]) -> Path:
    plan = manifest["plan"]
    model = plan["model"]
    text = [f"# Study {manifest['name']}", "",
            f"{len(rows)} rows of {plan['rows']} planned; {len(plan['images'])} images "
            f"({len(plan['skipped'])} left out), model {model['name']} ({model['preprocessing']} preprocessing, "
            f"input {model['input_size'][0]}x{model['input_size'][1]}, mean {model['mean']}, std {model['std']}); "
            f"{'targeted' if plan['targeted'] else 'untargeted'}, labels: {plan['label_source']}; batch size "
            f"{plan['batch_size']}.", "",
            "ASR over all rows; sizes over the successful rows (mean / median); l2 in [0,1] units (half the "
            "paper's); IS 70: the paper's interpretability score at the 70th percentile (spec 2.4; every "
            "percentile in summary.csv).", ""]
    keys = [("attack", "attack"), ("config", "configuration"), ("rows", "rows"), ("asr", "ASR"),
            ("asr_8bit", "ASR 8-bit"), ("acp_mean", "ACP"), ("acp_median", "ACP median"), ("anc_mean", "ANC"),
            ("d20_mean", "d2,0"), ("l2_mean", "l2"), ("l2_median", "l2 median"), ("is_70_mean", "IS 70")]
    for key, title in DENSITY:
        if lines and f"{key}_mean" in lines[0]:
            area = key.replace("pixel_share", "area") + "_mean"
            keys += [(f"{key}_mean", title), (area, "region's share of the image")]
    keys.append(("time_s_mean", "s / row"))
    text += _table(lines, keys)
    if cases:
        text += ["", "Best / average / worst over each image's targets (spec 2.3):", ""]
        text += _table(cases, [("attack", "attack"), ("config", "configuration"), ("case", "case"),
                               ("images", "images"), ("asr", "ASR"), ("acp", "ACP"), ("anc", "ANC"),
                               ("d20", "d2,0"), ("l2", "l2")])
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return centre - half, centre + half


def _axes_of(configs: list[dict]) -> list[tuple[str, list]]:
    """(title, configs in x order) per plot of one attack: against each swept setting (other settings fixed
    at each of their values: one line each), or against the configuration list when it names them."""
    swept: list[str] = []
    for c in configs:
        swept += [k for k in c["swept"] if k not in swept]
    labelled = any(c["label"] != ", ".join(f"{k}={v}" for k, v in c["swept"].items()) for c in configs)
    if labelled or not swept:
        return [("configuration", configs)]
    return [(name, [c for c in configs if name in c["swept"]]) for name in swept]


def plots(out: Path, rows: list[dict], configs: list[dict], study: str) -> list[Path]:
    """One figure per attack and swept setting: ASR, ACP, ANC, d2,0, l2 (and density) against its values."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    written = []
    density = [(k, t) for k, t in DENSITY if rows and k in rows[0]]
    panels = [("success", "ASR")] + list(SIZES) + [("is_70", "IS at the 70th percentile")] + density
    for attack in dict.fromkeys(c["attack"] for c in configs):
        for axis, chosen in _axes_of([c for c in configs if c["attack"] == attack]):
            lines = _lines(axis, chosen)
            xs = list(dict.fromkeys(_x(axis, c) for c in chosen))  # the study's order of its configurations
            if axis != "configuration":
                xs.sort(key=_order)
            cols, grid_rows = 3, math.ceil(len(panels) / 3)
            fig, axes = plt.subplots(grid_rows, cols, figsize=(12, 3.3 * grid_rows + 0.5), squeeze=False)
            for ax, (key, title) in zip(axes.flat, panels):
                for n, (name, members) in enumerate(lines.items()):
                    _draw(ax, key, members, rows, xs, axis, n, len(lines), name)
                ax.set_title(title, fontsize=10)
                ax.set_xticks(range(len(xs)), [str(x) for x in xs])
                ax.set_xlabel(axis)
                ax.grid(alpha=0.3)
            for ax in list(axes.flat)[len(panels):]:
                ax.axis("off")
            counts = sorted({len(_of(rows, c)) for c in chosen})
            fig.text(0.5, 0.01, f"rows per point: {', '.join(map(str, counts))}; sizes over the successful rows; "
                     "l2 in [0,1] pixel units (half the paper's)" +
                     ("; dotted: the region's share of the image (a support placed at random)" if density else ""),
                     ha="center", fontsize=9)
            if len(lines) > 1:
                axes.flat[0].legend(fontsize=8)
            fig.suptitle(f"{study}: {attack} against {axis} (median, IQR bar, mean x, rows grey; ASR with 95% "
                         "interval)",
                         fontsize=11)
            fig.tight_layout(rect=(0, 0.04, 1, 1))
            for suffix in ("png", "svg"):
                path = out / f"{attack}_{axis}.{suffix}"
                fig.savefig(path, dpi=110)
                written.append(path)
            plt.close(fig)
    return written


def _x(axis: str, config: dict) -> object:
    return config["label"] if axis == "configuration" else config["swept"][axis]


def _order(value: object) -> tuple:
    return (0, float(value), "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _lines(axis: str, configs: list[dict]) -> dict[str, list[dict]]:
    """Configurations grouped by their other swept settings (one plotted line each)."""
    groups: dict[str, list[dict]] = {}
    for c in configs:
        rest = ", ".join(f"{k}={v}" for k, v in c["swept"].items() if k != axis) if axis != "configuration" else ""
        groups.setdefault(rest or "all", []).append(c)
    return groups


def _draw(ax, key: str, members: list[dict], rows: list[dict], xs: list, axis: str, n: int, of: int,
          name: str) -> None:
    shift = (n - (of - 1) / 2) * 0.12
    points = []
    for c in members:
        mine = _of(rows, c)
        pos = xs.index(_x(axis, c)) + shift
        if key == "success":
            k = sum(bool(r["success"]) for r in mine)
            low, high = wilson(k, len(mine))
            rate = k / len(mine) if mine else float("nan")
            ax.errorbar(pos, rate, yerr=[[max(0.0, rate - low)], [max(0.0, high - rate)]], fmt="o", color=f"C{n}", capsize=3)
            points.append((pos, rate))
            ax.set_ylim(-0.05, 1.05)
            continue
        values = np.array([r[key] for r in mine if r["success"] and r[key] is not None], dtype=float)
        values = values[~np.isnan(values)]
        if not values.size:
            continue
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        jitter = np.random.default_rng(0).uniform(-0.1, 0.1, values.size)  # every row, spread sideways
        ax.plot(pos + jitter, values, ".", color="grey", alpha=0.35, ms=3)
        ax.vlines(pos, q1, q3, color=f"C{n}", lw=3, alpha=0.5)
        ax.plot(pos, med, "o", color=f"C{n}")
        ax.plot(pos, values.mean(), "x", color=f"C{n}")
        points.append((pos, med))
        if key.endswith("pixel_share"):
            area = _mean([r[key.replace("pixel_share", "area")] for r in mine])
            ax.plot([pos - 0.2, pos + 0.2], [area, area], ":", color="grey")
    if points:
        ax.plot(*zip(*sorted(points)), "-", color=f"C{n}", alpha=0.6, label=name)
