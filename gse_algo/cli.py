"""`gse-attack`: run GSE (or any registered attack, --attack) on image files and write, per image, OUT/<stem>/
adv.png (16-bit), adv8.png and original.png (8-bit), figure.png/.svg, metrics.json and arrays.npz; print a short
table. All numbers are in [0,1] pixel units (l2 is half the paper's).

The command-line plumbing shared with `gse-compare` lives here too: the common options, the error handling of
main, the model/image loading and checks, the progress line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gse_algo import export, figures, images, models, quantize, registry_run
from gse_algo.attack import check_logits, check_targets, iterate_gse
from gse_algo.attacks import attack_names, checked_settings, get_attack
from gse_algo.attacks.library import LibraryError
from gse_algo.cam import CAM_METHODS, CAMError, cam_unsupported, compute_cam, resolve_layer
from gse_algo.entry import interrupt_exit
from gse_algo.params import AUTO, PRESETS, GSEParams, resolve_preset
from gse_algo.record import build_record, predict
from gse_algo.runtime import DEVICES, DTYPES, Runtime, default_threads, resolve_device
from gse_algo.status_line import StatusLine

DPI_RANGE = (20, 1200)
SEED_RANGE = (0, 2**63 - 1)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, handled in main like every other bad input
        raise ValueError(message)


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer (ASCII digits) in [low, high]."""
    def parse(text: str) -> int:
        if not text.strip().lstrip("+-").isascii() or not text.strip().lstrip("+-").isdigit():
            raise argparse.ArgumentTypeError(f"expects an integer, got {text!r:.40}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {text:.40}")
        return value
    return parse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options gse-attack and gse-compare share: model, target, output, device, threads, dtype, dpi, seed."""
    parser.add_argument("--model", default=models.DEFAULT_MODEL,
                        help="torchvision model name or model file (default: %(default)s)")
    parser.add_argument("--target", metavar="CLASS",
                        help="target class (index or name); without it the attack is untargeted against the "
                             "model's own clean prediction")
    parser.add_argument("--out", default="gse-out", help="output folder (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch threads (default: %(default)s; results depend on it, see README)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32",
                        help="floating-point type of the model and the attack (default: %(default)s)")
    parser.add_argument("--dpi", type=int_in(*DPI_RANGE), default=200,
                        help=f"resolution of the PNG figures, {DPI_RANGE[0]}..{DPI_RANGE[1]} (default: %(default)s)")
    parser.add_argument("--seed", type=int_in(*SEED_RANGE), default=0,
                        help="torch.manual_seed, 0..2^63-1 (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier result folder of the same name (default: write <name>-2, ...)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gse-attack", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help=f"image files (default: {images.DEFAULT_IMAGE.name} from resources/)")
    parser.add_argument("--attack", default="gse", metavar="NAME",
                        help=f"registered attack: {', '.join(attack_names())} (default: %(default)s; the others "
                             "need the baselines extra, see README)")
    parser.add_argument("--preset", choices=PRESETS,
                        help="official GSE hyper-parameters (default: imagenet for inputs >= 64 px, else cifar10)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one parameter of the attack in [0,1] units, e.g. --set mu=0.4 --set iters=100")
    add_common_arguments(parser)
    parser.add_argument("--figure", default="default", metavar="PANELS",
                        help=f"comma-separated panels of figure.png/.svg from {', '.join(figures.PANELS)}; "
                             "'all', 'default' (all but cam) or 'none' (a baseline has no lambda panel)")
    parser.add_argument("--cam", default="GradCAM", choices=list(CAM_METHODS),
                        help="CAM method of the cam panel (default: %(default)s)")
    parser.add_argument("--no-quantize", dest="quantize", action="store_false",
                        help="attack the resized image as it is, off the 8-bit grid, and write adv.png only, "
                             "rounded (by default the clean image is put on the 8-bit grid, written as "
                             "original.png, and adv8.png / adv.png are made to fool the model as saved)")
    parser.add_argument("--cam-layer", metavar="NAME",
                        help="layer of the cam panel, a dotted module name (default: the model's usual layer)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main("gse-attack", build_parser, _run, argv)


def run_main(prog: str, parser: Callable[[], argparse.ArgumentParser],
             run: Callable[[argparse.Namespace], int], argv: list[str] | None) -> int:
    """Parse and run; bad input is one line and exit status 2, an attack failing inside its library one line and
    status 1, an interrupt one line and 128 + the signal number."""
    try:
        return run(parser().parse_args(argv))
    except (images.ImageError, models.ModelError, ValueError, OSError, LibraryError) as error:
        print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1 if isinstance(error, LibraryError) else 2
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through gse_algo.entry
        return interrupt_exit(error, prog)


def parse_settings(items: list[str]) -> dict[str, str]:
    """['mu=0.4', 'iters=100'] -> {'mu': '0.4', 'iters': '100'} (GSEParams.replace converts and checks)."""
    settings = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        settings[name.strip()] = value.strip()
    return settings


def _run(args: argparse.Namespace) -> int:
    spec = get_attack(args.attack)
    runtime = start_runtime(args)
    panels = [] if args.figure.strip().lower() == "none" else figures.parse_panels(args.figure)
    settings = parse_settings(args.set)
    if spec.name != "gse":
        panels = registry_run.baseline_panels(spec, panels, args.figure, args.preset)
        settings = checked_settings(spec, settings, args.target is not None)
    loaded, target = load_model_and_target(args, runtime)
    if spec.name == "gse":
        preset = resolve_preset(args.preset or AUTO, loaded.input_size)
        params = GSEParams.preset(preset, targeted=target is not None).replace(**settings)
    panels, args.cam_layer = choose_cam_layer(loaded, panels, args.cam_layer)
    paths, inputs = load_inputs(args.images, loaded, runtime, target, args.quantize)
    if spec.name != "gse":
        spec.check_run(inputs[0][None], settings)
    out = export.make_dir(args.out)
    rows, taken = [], set()
    for number, (path, x) in enumerate(zip(paths, inputs), start=1):
        label = f"[{number}/{len(paths)}] {path.name}"
        if spec.name == "gse":
            record = attack_image(loaded, x, target, params, ProgressLine(label, params), image=str(path),
                                  preset=preset, runtime=runtime, quantized=args.quantize)
            shown = record["metrics"]["figure_iterate"]
            provenance = {"params": params.as_dict(),
                          "iteration": f"search step {shown['step']}, iteration {shown['iteration']}"}
        else:
            record = registry_run.attack_image(spec, settings, loaded, x, target, ProgressLine(label),
                                               image=str(path), runtime=runtime, quantized=args.quantize)
            provenance = {"params": settings, "iteration": None}
        folder, note = export.result_folder(out, export.safe_folder_name(path.stem), args.overwrite, taken)
        if note:
            print(f"gse-attack: {path.name}: {note}", file=sys.stderr)
        with export.staged_folder(folder, replace=args.overwrite) as stage:  # complete or absent, never partial
            write_image_outputs(stage, record, loaded, provenance, panels, args)
        rows.append((path.name, record["metrics"], folder))
    print(format_table(rows))
    return 0


def start_runtime(args: argparse.Namespace) -> Runtime:
    """The run's threads, seed, device and dtype from the options, applied to torch."""
    runtime = Runtime(threads=args.threads, seed=args.seed, device=str(resolve_device(args.device)), dtype=args.dtype)
    runtime.apply()
    return runtime


def load_model_and_target(args: argparse.Namespace, runtime: Runtime) -> tuple[models.LoadedModel, int | None]:
    """The model (--model) in the run's device and dtype, and the target class index (--target) or None."""
    loaded = models.load_model(args.model, device=runtime.torch_device).to(dtype=runtime.torch_dtype)
    return loaded, loaded.class_index(args.target) if args.target is not None else None


def load_inputs(files: list[str], loaded: models.LoadedModel, runtime: Runtime, target: int | None,
                quantized: bool) -> tuple[list[Path], list[torch.Tensor]]:
    """Every image file loaded and checked before any attack: [3,H,W] model inputs in the run's device and dtype,
    on the 8-bit grid when `quantized` (the clean image as original.png holds it)."""
    paths = [Path(p) for p in files] or [images.DEFAULT_IMAGE]
    inputs = [images.load_image(p, loaded.input_size) for p in paths]
    inputs = [x.to(runtime.torch_device, runtime.torch_dtype) for x in inputs]
    if quantized:  # on the grid in the run's dtype, so float64 runs keep exact k / 255 values
        inputs = [quantize.to_grid(x, 8) for x in inputs]
    for path, x in zip(paths, inputs):
        check_image(loaded, x, target, path)
    return paths, inputs


def choose_cam_layer(loaded: models.LoadedModel, panels: list[str], layer: str | None) -> tuple[list[str], str]:
    """The CAM layer (--cam-layer or the model's default), checked before any attack; without CAM support (a
    TorchScript model) the cam panel is left out with a warning."""
    layer = layer or loaded.cam_layer
    if "cam" not in panels:
        return panels, layer
    unsupported = cam_unsupported(loaded.net)
    if unsupported:
        print(f"gse-attack: warning: the figure leaves out the cam panel: {unsupported}", file=sys.stderr)
        return [p for p in panels if p != "cam"], layer
    try:
        resolve_layer(loaded.net, layer)
    except CAMError as error:
        raise ValueError(f"--cam-layer {layer!r}: {error}") from None
    return panels, layer


def check_image(loaded: models.LoadedModel, x: torch.Tensor, target: int | None, path: Path) -> None:
    """One clean forward pass before any attack: finite logits, and a target the model does not already predict."""
    with torch.no_grad():
        logits = loaded.model(x.unsqueeze(0))
    try:
        check_logits(logits, f"on {path.name}")
        if target is not None:
            check_targets(logits.argmax(1), torch.tensor([target], device=logits.device))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


class ProgressLine:
    """The search step and iteration of the running attack, on one status line (gse_algo.status_line)."""

    def __init__(self, label: str, params: GSEParams | None = None, stream=None) -> None:
        self.label, self.params = label, params
        self.start = time.perf_counter()
        self.line = StatusLine(stream)

    def update(self, step: int, iteration: int, phase: int) -> None:
        """A GSE iterate (params given)."""
        self.show(lambda: f"search step {step + 1}/{self.params.search_steps}, iteration "
                          f"{iteration + 1}/{self.params.iters}, phase {phase}")

    def show(self, text: Callable[[], str]) -> None:
        """Show `label: text(), seconds` unless the last line is too recent (text is only built when shown)."""
        self.line.show(lambda: f"{self.label}: {text()}, {time.perf_counter() - self.start:.0f} s")

    def done(self) -> None:
        self.line.done()


def attack_image(loaded: models.LoadedModel, x: torch.Tensor, target: int | None, params: GSEParams,
                 progress: ProgressLine, *, image: str, preset: str, runtime: Runtime, quantized: bool = False) -> dict:
    """Attack one [3,H,W] image; return its metrics record (JSON dict) and the arrays the figure and files need.

    quantized: x is on the 8-bit grid, and the result is finalized on the 8- and 16-bit grids (gse_algo.quantize)
    for adv8.png and adv.png; otherwise adv.png is the float result rounded to 16 bits.
    """
    model, batch = loaded.model, x.unsqueeze(0)
    label = predict(model, batch)[0] if target is None else target
    run = iterate_gse(model, batch, torch.tensor([label], device=x.device), target is not None, params, trace=True)
    last = {}  # search step -> its latest snapshot (holds the lambda map of the step's final iterate)
    for snapshot in run:
        last[snapshot.step] = snapshot
        progress.update(snapshot.step, snapshot.iteration, snapshot.phase)
    progress.done()
    result = run.result
    step = int(result.chosen_step[0]) if result.chosen_step[0] >= 0 else max(last)
    shown = last[step]
    labels = torch.tensor([label], device=x.device)
    grids = {bits: quantize.finalize(model, batch, labels, target is not None, result.x_adv, bits)
             for bits in quantize.BITS} if quantized else {}
    record = build_record(loaded, image, preset, batch, target, result,
                          {"step": shown.step, "iteration": shown.iteration}, params, runtime, grids)
    return {"metrics": record.to_json(), "runtime": runtime.as_dict(), "x": batch[0].cpu().numpy(),
            "x_adv": result.x_adv[0].cpu().numpy(), "delta": result.delta[0].cpu().numpy(),
            "lambda_map": np.asarray(shown.lambda_map[0]), "grids": grids}


def write_image_outputs(folder: Path, record: dict, loaded: models.LoadedModel, provenance: dict,
                        panels: list[str], args: argparse.Namespace) -> None:
    """The files of one attacked image. `record`: metrics (metrics.json), runtime, x, x_adv, delta, lambda_map
    (None for an attack without one) and grids; `provenance`: the params and the iteration text of the files."""
    m = record["metrics"]
    mask = np.abs(record["delta"]).max(axis=0) > 0
    arrays = {"x": record["x"], "x_adv": record["x_adv"], "delta": record["delta"], "mask": mask}
    if record["lambda_map"] is not None:
        arrays["lambda_map"] = record["lambda_map"]
    grids, eight_bit = record["grids"], {}
    adv16 = grids[16].x_adv[0] if grids else record["x_adv"]
    if grids:  # quantized: the integers of every file, and the 8-bit files
        arrays.update(x_8bit=quantize.to_integers(record["x"], 8), x_adv_8bit=grids[8].integers()[0],
                      x_adv_16bit=grids[16].integers()[0])
        eight_bit = {"adv8.png": quantize.encode_png(grids[8].x_adv[0], 8),
                     "original.png": quantize.encode_png(record["x"], 8)}
    if "cam" in panels:
        x = torch.from_numpy(record["x"]).to(loaded.device)
        try:
            arrays["cam"] = compute_cam(loaded.model, loaded.net, x, m["clean"]["index"], args.cam,
                                        layer=args.cam_layer, reshape=loaded.cam_reshape)
        except (CAMError, RuntimeError) as error:  # never lose the attack for its figure's CAM panel
            print(f"gse-attack: warning: the figure leaves out the cam panel: {' '.join(str(error).split())[:200]}",
                  file=sys.stderr)
            panels = [p for p in panels if p != "cam"]
    title = m["attack"]["title"] if "attack" in m else "GSE"
    info = export.provenance(model=loaded.name, params=provenance["params"], iteration=provenance["iteration"],
                             Runtime=record["runtime"],
                             Title=f"{title} adversarial example of {Path(m['image']).name}", Source=m["image"])
    export.write_run_outputs(folder, adv_png=images.encode_png16(adv16),
                             metrics=m, arrays=arrays, metadata=info, extra_pngs=eight_bit)
    if panels:
        data = figures.FigureData(x=record["x"], x_adv=record["x_adv"], mask=mask, lambda_map=record["lambda_map"],
                                  cam=arrays.get("cam"),
                                  captions=figures.run_captions(
                                      m, figures.cam_caption(args.cam, m["clean"]["name"],
                                                             m["interpretability_score"]["70"]),
                                      record["lambda_map"]),
                                  title=figures.run_title(m))
        fig = figures.composite_figure(data, panels)
        figures.save_figure(fig, folder / "figure.png", dpi=args.dpi, metadata=info)
        figures.save_figure(fig, folder / "figure.svg", metadata=info)


def format_table(rows: list[tuple[str, dict, Path]]) -> str:
    """One line per image: classes before/after, success, ACP, ANC, l2, d2,0, 8-bit check, time, folder."""
    header = f"{'image':<18} {'clean class':<22} {'adversarial class':<22} {'ok':<3} {'ACP':>6} {'ANC':>4} " \
             f"{'l2':>7} {'d2,0':>6} {'8bit':<4} {'time':>7}  output"
    lines = [header, "-" * len(header)]
    for name, m, folder in rows:
        lines.append(f"{name[:18]:<18} {m['clean']['name'][:22]:<22} {m['adversarial']['name'][:22]:<22} "
                     f"{'yes' if m['success'] else 'no':<3} {m['acp']:>6} {m['anc']:>4} {m['l2']:>7.4f} "
                     f"{m['d20']:>6} {'yes' if m['fools_at_8bit'] else 'no':<4} {m['time_s']:>6.1f}s  {folder}")
    lines.append("l2 in [0,1] pixel units (half the paper's [-1,1] value); 8bit: the 8-bit file (adv8.png; "
                 "with --no-quantize adv.png rounded to 8 bits) fools the model")
    return "\n".join(lines)


if __name__ == "__main__":
    from gse_algo.entry import attack_main
    sys.exit(attack_main())
