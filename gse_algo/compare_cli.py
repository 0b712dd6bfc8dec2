"""`gse-compare`: run several registered attacks on the same images and write one table and one figure per image.

OUT/comparison/ (or comparison-2, ... when it exists; --overwrite replaces it) holds comparison.csv and
comparison.md (one row per image and attack: success, ACP, channel-L0, ANC, d2,0, l2, linf, 8-bit, time, forward
and backward passes), metrics.json (the same with every setting, the runtime and the versions), and per image
<stem>/comparison.png/.svg (gse_algo.compare_figure) and arrays.npz (the clean image and each adversarial image).
Every attack sees the same input: the model's input on the 8-bit grid, as gse-attack attacks it; the numbers are
those of each attack's own result (measured by gse_algo.attacks.measure), with no 8-bit final step.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import torch

from gse_algo import cli, export, figures, registry_run
from gse_algo.models import LoadedModel
from gse_algo.record import predict
from gse_algo.runtime import Runtime
from gse_algo.attacks import AttackResult, AttackSpec, Value, attack_names, checked_settings, get_attack
from gse_algo.compare_figure import ComparedRun, comparison_figure

COLUMNS = ("attack", "image", "success", "ACP", "channel-L0", "ANC", "d2,0", "l2", "linf", "8-bit", "time_s",
           "forwards", "backwards")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.Parser(prog="gse-compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files (default: the default image from resources/)")
    parser.add_argument("--attacks", default="gse,sigma_zero", metavar="A,B,...",
                        help=f"comma-separated attacks from {', '.join(attack_names())}; the figure overlays the "
                             "supports of the first two (default: %(default)s; with the library defaults StrAttack "
                             "takes hours on a 224 px image on a CPU, see README)")
    parser.add_argument("--set", action="append", default=[], metavar="ATTACK.NAME=VALUE",
                        help="override one parameter of one attack, e.g. --set sigma_zero.num_steps=200")
    cli.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run_main("gse-compare", build_parser, _run, argv)


def parse_attacks(text: str) -> list[AttackSpec]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    specs = [get_attack(name) for name in names]
    if not specs:
        raise ValueError("--attacks names no attack")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"--attacks lists an attack twice: {text!r}")
    return specs


def attack_settings(specs: list[AttackSpec], items: list[str], targeted: bool) -> dict[str, dict[str, Value]]:
    """{attack: its checked settings} from ['sigma_zero.num_steps=200', ...] (ValueError for every problem)."""
    overrides: dict[str, dict[str, str]] = {s.name: {} for s in specs}
    for name, value in cli.parse_settings(items).items():
        attack, dot, key = name.partition(".")
        spec = get_attack(attack) if dot and key else None
        if spec is None or spec.name not in overrides:
            raise ValueError(f"--set {name}={value}: use ATTACK.NAME=VALUE with an attack of --attacks "
                             f"({', '.join(overrides)})")
        overrides[spec.name][key] = value
    return {s.name: checked_settings(s, overrides[s.name], targeted) for s in specs}


def _run(args: argparse.Namespace) -> int:
    specs = parse_attacks(args.attacks)
    runtime = cli.start_runtime(args)
    settings = attack_settings(specs, args.set, args.target is not None)
    loaded, target = cli.load_model_and_target(args, runtime)
    paths, inputs = cli.load_inputs(args.images, loaded, runtime, target, quantized=True)
    for spec in specs:
        spec.check_run(inputs[0][None], settings[spec.name])
    out = export.make_dir(args.out)
    folder, note = export.result_folder(out, "comparison", args.overwrite, set())
    if note:
        print(f"gse-compare: {note}", file=sys.stderr)
    rows, records = [], []
    with export.staged_folder(folder, replace=args.overwrite) as stage:
        taken: set[str] = set()
        for number, (path, x) in enumerate(zip(paths, inputs), start=1):
            batch = x.unsqueeze(0)
            labels = torch.tensor([predict(loaded.model, batch)[0] if target is None else target], device=x.device)
            results = []
            for spec in specs:  # each attack as if it ran alone (run_with_progress seeds torch), whatever the order
                progress = cli.ProgressLine(f"[{number}/{len(paths)}] {path.name}")
                results.append(registry_run.run_with_progress(spec, loaded.model, batch, labels, target is not None,
                                                              settings[spec.name], progress, runtime.seed))
            image_dir, _ = export.result_folder(stage, export.safe_folder_name(path.stem), False, taken)
            goal = "untargeted" if target is None else f"targeted at {loaded.class_names[target]}"
            write_image(image_dir, f"{path.name}: {loaded.name}, {goal}", path, x, results, loaded, runtime, args.dpi)
            rows += [table_row(path.name, r) for r in results]
            records.append({"image": str(path), "folder": image_dir.name,
                            "runs": [run_record(r) for r in results]})
        export.atomic_write_bytes(stage / "comparison.csv", csv_text(rows).encode("utf-8"))
        export.atomic_write_bytes(stage / "comparison.md", markdown(rows).encode("utf-8"))
        export.write_json(stage / export.RESULT_MARKER, {
            "model": loaded.name, "targeted": target is not None,
            "target": None if target is None else {"index": target, "name": loaded.class_names[target]},
            "attacks": [{"name": s.name, "title": s.title, "source": s.source, "norm": s.norm} for s in specs],
            "images": records, **runtime.as_dict(), "versions": export.versions(),
            "units": "[0,1] pixel space; channel_l0 counts changed values over C x H x W"})
    print(markdown(rows))
    print(f"written to {folder}")
    return 0


def write_image(folder: Path, title: str, path: Path, x: torch.Tensor, results: list[AttackResult],
                loaded: LoadedModel, runtime: Runtime, dpi: int) -> None:
    """One image's comparison figure (PNG and SVG) and arrays."""
    export.make_dir(folder)
    runs = [ComparedRun(r.attack, r.x_adv[0].cpu().numpy(), r.metrics[0], r.time_s, r.n_forward, r.n_backward)
            for r in results]
    fig = comparison_figure(x.cpu().numpy(), runs, class_names=loaded.class_names, title=title)
    info = export.provenance(model=loaded.name, Runtime=runtime.as_dict(), Source=str(path),
                             Title=f"Attacks compared on {path.name}",
                             Parameters={r.attack: r.settings for r in results})
    figures.save_figure(fig, folder / "comparison.png", dpi=dpi, metadata=info)
    figures.save_figure(fig, folder / "comparison.svg", metadata=info)
    export.write_npz(folder / "arrays.npz", {"x": x.cpu().numpy(),
                                             **{f"x_adv_{r.attack}": r.x_adv[0].cpu().numpy() for r in results}})


def table_row(image: str, result: AttackResult) -> list[str]:
    m = result.metrics[0]
    return [result.attack, image, "yes" if m.success else "no", str(m.acp), str(m.channel_l0), str(m.anc),
            str(m.d20), f"{m.l2:.4f}", f"{m.linf:.4f}", "yes" if m.fools_at_8bit else "no", f"{result.time_s:.2f}",
            str(result.n_forward), str(result.n_backward)]


def run_record(result: AttackResult) -> dict:
    return {"attack": result.attack, "settings": result.settings, **result.metrics[0].as_dict(),
            "time_s": result.time_s, "n_forward": result.n_forward, "n_backward": result.n_backward}


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
