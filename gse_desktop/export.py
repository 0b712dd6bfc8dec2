"""The File menu's work: sessions, single views (PNG/SVG), composite figures, animations and raw data.

Every action has a method taking explicit paths (tests call these; the menu only adds the file dialogs). Failures
become one-line messages through the window's `show_error`; the figure and file code is gse_algo's (figures,
export), shared with `gse-attack`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters as pg_exporters
import torch
from PySide6.QtCore import QBuffer, QObject, QRectF
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator

from gse_algo import export, figures, images, metrics
from gse_algo.images import ImageError, read_image
from gse_desktop.history import Frame
from gse_desktop.panels.cam_panel import RunInfo
from gse_desktop.session import Session, SessionError, load_session, save_session
from gse_desktop.worker import resolve_preset

CHOSEN = "chosen"  # figure/data iteration: the engine's returned example (else "shown" or a (step, iteration))
SHOWN = "shown"


class FileActions(QObject):
    """Owns the File menu and toolbar of `window` (a MainWindow) and does what their entries ask."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.session: Session | None = None  # the reopened session while its run is shown
        self._run: dict = {}  # what the current run was started with (model spec, image, preset, device)
        self._tmp = tempfile.TemporaryDirectory(prefix="gse-session-")
        window.controller.prepared.connect(self._on_prepared)
        from gse_desktop.export_dialog import build_menu

        build_menu(self)

    # -- what is shown -------------------------------------------------------------------------------------------
    def _on_prepared(self, prepared) -> None:
        c = self.window.controls
        preset = c.preset()
        self.session = None
        self._run = {"image_path": self.window.image_path, "model_spec": c.model_spec(),
                     "preset": resolve_preset(preset, prepared.model.input_size),
                     "device": c.device_combo.currentText()}

    def _cam(self):
        return getattr(self.window, "cam_panel", None)

    def _cam_array(self) -> np.ndarray | None:
        """The CAM panel's shown CAM, else the reopened session's; None without one of the image's size."""
        cam = self._cam()
        array = cam.cam_array() if cam is not None and hasattr(cam, "cam_array") else None
        if array is None and self.session is not None:
            array = self.session.cam
        return array if array is not None and np.shape(array) == self._image().shape[:2] else None

    def info(self) -> dict | None:
        """The shown run's description (see gse_desktop.session), None when nothing has run."""
        w = self.window
        if not len(w.history):
            return None
        cam = self._cam()
        cam_state = cam.state() if cam is not None and hasattr(cam, "state") else None
        if self.session is not None:
            fresh = cam is not None and hasattr(cam, "cam_array") and cam.cam_array() is not None
            return {**self.session.info, **({"cam": cam_state} if fresh else {})}
        p = w.prepared
        if p is None:
            return None
        path = self._run.get("image_path") or w.image_path or "image"
        return {"image_name": Path(path).name, "image_path": str(path), "model_spec": self._run.get("model_spec", ""),
                "model_name": p.model.name, "class_names": list(p.model.class_names), "targeted": bool(p.targeted),
                "label": int(p.label), "clean_class": int(p.clean_class), "top_classes": p.top_classes.tolist(),
                "top_probs": p.top_probs.tolist(), "params": p.params.as_dict(), "preset": self._run.get("preset"),
                "device": self._run.get("device", "cpu"), "cam": cam_state}

    def _image(self) -> np.ndarray:
        """The model input image [H,W,3] the views show."""
        return self.window.views.original

    def _frame(self, which: str | tuple[int, int]) -> Frame:
        w = self.window
        if which == SHOWN:
            shown = w.views.frame
            which = (shown.step, shown.iteration) if shown is not None else w.history.latest()
        elif which == CHOSEN:
            result = w.history.result
            if result is None or result.chosen_step[0] < 0:
                raise ValueError("the run has no chosen adversarial example (not finished, or it failed)")
            step = int(result.chosen_step[0])
            which = (step, w.history.n_iterations(step) - 1)
        return w.history.frame(*which)

    def _delta(self, which: str | tuple[int, int], frame: Frame) -> np.ndarray:
        """[3,H,W]: the engine's returned delta for CHOSEN (as gse-attack uses), else the snapshot's."""
        result = self.window.history.result
        if which == CHOSEN and result is not None:
            return result.delta[0].detach().cpu().numpy()
        return frame.delta[0]

    def _provenance(self, info: dict, frame: Frame | None, **extra: object) -> dict[str, str]:
        iteration = None if frame is None else f"search step {frame.step}, iteration {frame.iteration}"
        return export.provenance(model=info["model_name"], params=info["params"], iteration=iteration,
                                 Source=info["image_name"], **extra)

    def _fail(self, text: str) -> bool:
        self.window.show_error(text)
        return False

    def _done(self, text: str) -> bool:
        self.window.message.setText(text)
        return True

    # -- sessions ------------------------------------------------------------------------------------------------
    def save_session(self, path: str | Path) -> bool:
        """Write the shown run to one session file (atomically)."""
        info = self.info()
        if info is None:
            return self._fail("nothing to save yet: run the attack first")
        try:
            source = self.session.source_png if self.session else images.encode_png16(
                read_image(info["image_path"]).transpose(2, 0, 1))
            shown = self.window.views.frame
            if shown is not None:  # reopening shows the same iteration
                info = {**info, "shown": [shown.step, shown.iteration]}
            save_session(path, Session(self.window.history, self._image(), source, info, self._cam_array()))
        except (ImageError, OSError, ValueError) as error:
            return self._fail(f"session not saved: {error}")
        return self._done(f"session saved to {path}")

    def open_session(self, path: str | Path) -> bool:
        """Show a saved run without recomputing; on a bad file keep everything and say why."""
        try:
            session = load_session(path)
        except SessionError as error:
            return self._fail(str(error))
        w, info = self.window, session.info
        if w.controller.running:
            w.stop_run()
        w.image_path = self._image_file(session)
        w.prepared = None
        w.controls.set_image_path(w.image_path)
        w.controls.set_class_names(info["class_names"])
        w.controls.model_combo.setCurrentText(info["model_spec"])
        w.controls.preset_combo.setCurrentText("custom")  # the run's effective parameters, exactly
        for name, spin in w.controls.spins.items():
            spin.setValue(info["params"][name])
        w.controls.set_target(info["label"] if info["targeted"] else None)
        w.views.show_original(session.image)
        w.top_table.set_before(np.array(info["top_classes"]), np.array(info["top_probs"], np.float32),
                               info["class_names"], info["label"])
        w.plots.set_phase_boundary(info["params"]["k_hat"])
        cam = self._cam()
        if cam is not None:  # the saved CAM, IS and settings, before the history's frames reach the panel
            target = info["label"] if info["targeted"] else None
            run = RunInfo.ended(None, session.image, session.history, info["clean_class"], target)
            cam.restore(info.get("cam") or {}, session.cam, run, info["class_names"])
        w.show_history(session.history, info.get("shown"))
        self.session = session
        return self._done(f"session {Path(path).name}: {info['image_name']}, {info['model_name']}, "
                          f"{len(session.history)} iterations")

    def _image_file(self, session: Session) -> str:
        """The original image file when it is still there unchanged, else the session's copy of it."""
        original = session.info.get("image_path")
        copy = Path(self._tmp.name) / (Path(session.info["image_name"]).stem + ".png")
        copy.write_bytes(session.source_png)
        try:
            if original and np.array_equal(read_image(original), read_image(copy)):
                return str(original)
        except ImageError:
            pass
        return str(copy)

    # -- single views ----------------------------------------------------------------------------------------------
    def view_items(self) -> dict[str, object]:
        """Exportable views: each image view, each metric plot, and both grids whole."""
        w = self.window
        items: dict[str, object] = {"images": w.views.scene(), "plots": w.plots.scene()}
        items.update(w.views.plots)
        items.update({name: curve.getViewBox().parentItem() for name, curve in w.plots.curves.items()})
        return items

    def export_view(self, name: str, path: str | Path, width: int | None = None) -> bool:
        """One view as PNG (`width` pixels wide, height by aspect; provenance in text chunks) or SVG."""
        item = self.view_items().get(name)
        if item is None:
            return self._fail(f"no view named {name!r}")
        suffix = Path(path).suffix.lower()
        info = self.info()
        frame = self.window.views.frame
        try:
            if suffix == ".png":
                exporter = pg_exporters.ImageExporter(item)
                if width:
                    exporter.parameters()["width"] = int(width)
                data = _qimage_png(exporter.export(toBytes=True))
                if info is not None:
                    data = export.add_png_text(data, self._provenance(info, frame, View=name))
            elif suffix == ".svg":
                data = _svg_bytes(item)
            else:
                return self._fail(f"cannot export a view as {Path(path).name!r}: use .png or .svg")
            export.atomic_write_bytes(path, data)
        except OSError as error:
            return self._fail(f"view not exported: {error}")
        return self._done(f"view {name} exported to {path}")

    # -- composite figure -------------------------------------------------------------------------------------------
    def figure_data(self, which: str | tuple[int, int] = SHOWN) -> tuple[figures.FigureData, Frame, dict]:
        """The composite figure's data for the shown iteration, the engine's CHOSEN one, or (step, iteration)."""
        info = self.info()
        if info is None:
            raise ValueError("nothing to show yet: run the attack first")
        frame = self._frame(which)
        x = self._image()
        delta = self._delta(which, frame)
        x_adv = np.clip(x + delta.transpose(1, 2, 0), 0, 1)
        lambda_map = (10.0 ** frame.log10_lambda[0].astype(np.float64)).astype(np.float32)
        cam_map = self._cam_array()
        m = self._summary(info, frame, x, x_adv, which)
        captions = figures.run_captions(m, _cam_caption(info.get("cam"), info["class_names"]), lambda_map)
        data = figures.FigureData(x=x, x_adv=x_adv, mask=frame.mask[0], lambda_map=lambda_map, cam=cam_map,
                                  captions=captions, title=figures.run_title(m))
        return data, frame, m

    def _summary(self, info: dict, frame: Frame, x: np.ndarray, x_adv: np.ndarray, which) -> dict:
        """The numbers gse-attack puts in metrics.json, as far as the trace knows them (no model needed)."""
        names = info["class_names"]
        delta = torch.from_numpy(np.ascontiguousarray((x_adv - x).transpose(2, 0, 1)))[None]
        clean, adv = info["clean_class"], int(frame.top_classes[0][0])
        success = bool(frame.success[0]) if which != CHOSEN else True
        return {"image": info["image_name"], "model": info["model_name"], "targeted": info["targeted"],
                "target": {"index": info["label"], "name": names[info["label"]]} if info["targeted"] else None,
                "preset": info.get("preset") or "custom", "success": success,
                "clean": {"index": clean, "name": names[clean], "probability": float(info["top_probs"][0])},
                "adversarial": {"index": adv, "name": names[adv], "probability": float(frame.top_probs[0][0])},
                "acp": int(metrics.acp(delta)[0]), "anc": int(metrics.anc(delta)[0]),
                "l2": float(metrics.l2(delta)[0]), "d20": int(metrics.d20(delta)[0]),
                "fools_at_8bit": None,  # unknown without the model
                "interpretability_score": {"70": math.nan},  # the CAM panel's IS goes in the CAM caption
                "figure_iterate": {"step": frame.step, "iteration": frame.iteration},
                "params": info["params"], "versions": export.versions()}

    def export_figure(self, path: str | Path, panels: list[str] | None = None,
                      which: str | tuple[int, int] = SHOWN, dpi: int = 300) -> bool:
        """The composite figure as PNG / SVG / PDF (by suffix); the CAM panel is left out when there is no CAM."""
        try:
            data, frame, _ = self.figure_data(which)
            panels = [p for p in (panels or figures.DEFAULT_PANELS) if p != "cam" or data.cam is not None]
            if not panels:
                raise ValueError("no panel to draw (the CAM panel needs a computed CAM)")
            info = self.info()
            fig = figures.composite_figure(data, panels)
            figures.save_figure(fig, path, dpi=dpi, metadata=self._provenance(
                info, frame, Title=f"GSE adversarial example of {info['image_name']}", Panels=",".join(panels)))
        except (ValueError, IndexError, KeyError, OSError) as error:
            return self._fail(f"figure not saved: {error}")
        return self._done(f"figure ({', '.join(panels)}) saved to {path}")

    # -- animation ------------------------------------------------------------------------------------------------
    def animation_frames(self, step: int | None, every: int, *, labelled: bool = True) -> tuple[list[np.ndarray],
                                                                                                 list[str]]:
        """Every `every`-th iteration (and the last) of one search step, or of all steps (step None); `labelled`
        writes each frame's label into it (GIF), otherwise the labels are only returned (strip titles)."""
        h = self.window.history
        steps = h.steps if step is None else [step]
        if step is not None and step not in h.steps:
            raise ValueError(f"no search step {step} in this run")
        picked = [h.frame(s, j) for s in steps for j in figures.select_frames(h.n_iterations(s), every)]
        if not picked:
            raise ValueError("nothing to animate yet: run the attack first")
        x = self._image()
        limit = max(float(np.abs(figures.signed_perturbation(f.delta[0])).max()) for f in picked)
        scale = max(1, 256 // x.shape[1])
        labels = [f"step {f.step}, j = {f.iteration}" for f in picked]
        frames = [figures.render_frame(x, f.delta[0], f.mask[0], limit=limit, label=label if labelled else "",
                                       scale=scale)
                  for f, label in zip(picked, labels)]
        return frames, labels

    def export_animation(self, path: str | Path, step: int | None = None, every: int = 10, fps: float = 5.0,
                         columns: int = 5) -> bool:
        """A GIF (.gif) or a strip of frames (.png/.svg/.pdf) of every Nth iteration."""
        try:
            gif = Path(path).suffix.lower() == ".gif"
            frames, labels = self.animation_frames(step, every, labelled=gif)
            if gif:
                figures.save_gif(frames, path, fps)
            else:
                info = self.info()
                strip = figures.frame_strip(frames, labels, columns=columns)
                figures.save_figure(strip, path, dpi=150, metadata=self._provenance(
                    info, None, Iterations=f"every {every}th of {'all steps' if step is None else f'step {step}'}"))
        except (ValueError, OSError) as error:
            return self._fail(f"animation not saved: {error}")
        return self._done(f"{len(frames)} frames saved to {path}")

    # -- raw data -------------------------------------------------------------------------------------------------
    def export_data(self, folder: str | Path, which: str | tuple[int, int] = SHOWN) -> bool:
        """adv.png (16-bit, provenance chunks), arrays.npz and metrics.json, as gse-attack writes them."""
        try:
            data, frame, m = self.figure_data(which)
            info = self.info()
            arrays = {"x": data.x.transpose(2, 0, 1), "x_adv": data.x_adv.transpose(2, 0, 1),
                      "delta": (data.x_adv - data.x).transpose(2, 0, 1), "mask": data.mask,
                      "lambda_map": data.lambda_map}
            if data.cam is not None:
                arrays["cam"] = np.asarray(data.cam, np.float32)
            m = {**m, "cam": info.get("cam"), "session_info": {k: v for k, v in info.items() if k != "class_names"}}
            export.write_run_outputs(folder, adv_png=images.encode_png16(arrays["x_adv"]), metrics=m, arrays=arrays,
                                     metadata=self._provenance(info, frame))
        except (ValueError, OSError) as error:
            return self._fail(f"data not exported: {error}")
        return self._done(f"adv.png, arrays.npz and metrics.json written to {folder}")


def _cam_caption(state: dict | None, names: list[str]) -> str:
    """figures.cam_caption from the CAM panel's settings (saved in a session, so possibly damaged)."""
    state = state if isinstance(state, dict) else {}
    index = state.get("class_index")
    is70 = (state.get("interpretability_score") or {}).get("70")
    return figures.cam_caption(str(state.get("method") or "CAM"),
                               names[index] if isinstance(index, int) and 0 <= index < len(names) else None,
                               is70 if isinstance(is70, (int, float)) else None, state.get("image"))


def _qimage_png(image) -> bytes:
    buffer = QBuffer()
    buffer.open(QBuffer.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("could not encode the view as PNG")
    return bytes(buffer.data())


def _svg_bytes(item) -> bytes:
    """pyqtgraph's SVG export; where it fails on Qt's closed paths (pyqtgraph issue #3495), Qt's SVG generator."""
    try:
        data = pg_exporters.SVGExporter(item).export(toBytes=True)
        return data if isinstance(data, bytes) else bytes(data)
    except ValueError:
        pass
    scene = item if isinstance(item, pg.QtWidgets.QGraphicsScene) else item.scene()
    rect = item.sceneRect() if item is scene else item.sceneBoundingRect()
    buffer = QBuffer()
    buffer.open(QBuffer.OpenModeFlag.WriteOnly)
    generator = QSvgGenerator()
    generator.setOutputDevice(buffer)
    generator.setSize(rect.size().toSize())
    generator.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    painter = QPainter(generator)
    scene.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
    painter.end()
    return bytes(buffer.data())
