"""The File menu's work: sessions, single views (PNG/SVG), composite figures, animations and raw data.

Everything is read from the app state (gse_desktop.state), never from widgets: the run description, the history,
the cursor and the CAM the state shows (so a caption names the map that is really displayed). Every action has a
method taking explicit paths (tests call these; the menu only adds the file dialogs). Failures become one-line
messages through the window's `show_error`; the figure and file code is gse_algo's (figures, export), shared with
`gse-attack`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer

from gse_algo import animation, export, figures
from gse_algo.compare_figure import ComparedRun
from gse_algo.defaults import IS_PERCENTILES
from gse_algo.explain import overlap
from gse_desktop.file_jobs import (Cancelled, FileWorker, outcome, read_session, write_animation, write_comparison,
                                   write_figure, write_session)
from gse_desktop.history import Frame
from gse_desktop.panels.file_progress import FileProgress
from gse_desktop.records import GSE
from gse_desktop.session import SavedRun, Session, SessionError
from gse_desktop.session_records import measured_dict, run_parts, session_image
from gse_desktop.state import CamState, KeptRun
from gse_desktop.view_export import png_bytes, svg_bytes

CHOSEN = "chosen"  # figure/data iteration: the engine's returned example (else "shown" or a (step, iteration))
SHOWN = "shown"


class FileActions(QObject):
    """Owns the File menu and toolbar of `window` (a MainWindow) and does what their entries ask."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.state = window.state
        from gse_desktop.export_dialog import build_menu

        self.needs_run: list = []
        self.needs_pair: list = []
        self.worker = FileWorker()  # sessions, figures and animations: the window never waits for them
        self.progress = FileProgress()
        window.statusBar().addPermanentWidget(self.progress)
        self._worker_timer = QTimer(self, interval=50)
        self._worker_timer.timeout.connect(self.worker.poll)
        self._worker_timer.start()
        build_menu(self)
        for name in ("image", "history", "result", "compare"):
            self.state.events.connect(name, self._enable)
        self._enable()

    def _enable(self) -> None:
        """Saving and exporting are offered only when there is a run to save or export (two for a comparison)."""
        has_run = self.state.run is not None and len(self.state.history) > 0
        for action in self.needs_run:
            action.setEnabled(has_run)
        for action in self.needs_pair:
            action.setEnabled(self.state.compared is not None)

    # -- what is shown -------------------------------------------------------------------------------------------
    def info(self, kept: KeptRun | None = None) -> dict | None:
        """A kept run's description (the `info` of gse_desktop.session; default: the shown run), None when it has
        no frames."""
        s = self.state
        kept = kept or s.shown
        run, history = kept.description, kept.history
        if run is None or not len(history) or s.image is None:
            return None
        on_screen = kept is s.shown
        frame = s.frame() if on_screen else None
        return {"name": kept.name, "attack": run.attack.name, "attack_title": run.attack.title,
                "views": sorted(run.attack.views), "settings": dict(run.settings),
                "measured": None if kept.measured is None else measured_dict(kept.measured),
                "image_name": s.image.name, "image_path": s.image.path, "model_spec": run.spec.model_spec,
                "model_name": run.model.name, "class_names": list(run.model.class_names), "targeted": run.targeted,
                "label": run.label, "clean_class": run.clean_class, "top_classes": run.clean.classes.tolist(),
                "top_probs": run.clean.probs.tolist(), "params": run.params.as_dict() if run.params else None,
                "preset": run.preset, "device": run.spec.device, "threads": run.spec.threads, "seed": run.spec.seed,
                "versions": dict(run.versions), "cam_layer": run.model.cam_layer, "layers": list(run.model.layers),
                "cam": self._cam_info(kept.cam, frame), "shown": list(s.cursor) if on_screen and s.cursor else None,
                "record": kept.record or None}

    def _cam_info(self, cam: CamState, frame: Frame | None) -> dict | None:
        """The CAM on screen (its own key, not the pickers'), its numbers at the cursor, and the run's IS."""
        key = cam.shown
        scores = cam.final.scores if cam.final is not None else []
        numbers = {}
        if key is not None and frame is not None and cam.map is not None:
            numbers = overlap(frame.delta[0], cam.map, cam.top_percent)
        return {
            "method": key.method if key else None, "layer": key.layer if key else None,
            "class_index": key.class_index if key else None, "image": key.image if key else None,
            "top_percent": cam.top_percent, "opacity": cam.opacity,
            "shown_cam": None if key is None else {"image": key.image, "class_index": key.class_index,
                                                   "method": key.method, "layer": key.layer},
            "overlap": {k: (None if math.isnan(v) else v) for k, v in numbers.items()},
            "interpretability_score": {str(p): (None if math.isnan(v) else float(v))
                                       for p, v in zip(IS_PERCENTILES, scores)},
        }

    def _cam_caption(self) -> str:
        """figures.cam_caption of the CAM on screen (its own key) and the run's IS(70)."""
        cam, names = self.state.cam, self.state.run.model
        key = cam.shown
        is70 = float(cam.final.scores[IS_PERCENTILES.index(70)]) if cam.final is not None else None
        return figures.cam_caption(key.method, f"{key.class_index} {names.class_name(key.class_index)}", is70,
                                   key.image)

    def _cam_array(self, kept: KeptRun | None = None) -> np.ndarray | None:
        """The CAM shown of a run (default: the shown run), None without one of the image's size."""
        array = (kept or self.state.shown).cam.map
        return array if array is not None and np.shape(array) == self._image().shape[:2] else None

    def _image(self) -> np.ndarray:
        """The model input image [H,W,3] of the shown run."""
        return self.state.run.image

    def _frame(self, which: str | tuple[int, int]) -> Frame:
        history = self.state.history
        if which == SHOWN:
            which = self.state.cursor or history.latest()
        elif which == CHOSEN:
            result = history.result
            if result is None or result.chosen_step[0] < 0:
                raise ValueError("the run has no chosen adversarial example (not finished, or it failed)")
            step = int(result.chosen_step[0])
            which = (step, history.n_iterations(step) - 1)
        return history.frame(*which)

    def _delta(self, which: str | tuple[int, int], frame: Frame) -> np.ndarray:
        """[3,H,W]: the engine's returned delta for CHOSEN (as gse-attack uses), else the snapshot's."""
        result = self.state.history.result
        if which == CHOSEN and result is not None:
            return np.asarray(result.delta[0])
        return frame.delta[0]

    def _provenance(self, info: dict, frame: Frame | None, **extra: object) -> dict[str, str]:
        iteration = None if frame is None else f"search step {frame.step + 1}, iteration {frame.iteration + 1}"
        return export.provenance(model=info["model_name"], params=info["params"] or info["settings"],
                                 iteration=iteration, library_versions=info["versions"], Source=info["image_name"],
                                 Threads=str(info["threads"]), Seed=str(info["seed"]),
                                 Device=info["device"], **extra)

    def _fail(self, text: str) -> bool:
        self.window.show_error(text)
        return False

    def _done(self, text: str) -> bool:
        self.window.message.setText(text)
        return True

    # -- sessions ------------------------------------------------------------------------------------------------
    def save_session(self, path: str | Path, wait: bool = True, then: Callable[[], None] | None = None) -> bool:
        """Write every kept run of the image (the shown one marked) to one session file (atomically); wait=False
        packs and writes it in the file worker, with progress and Cancel. `then` runs once the session is saved."""
        s = self.state
        kept = [k for k in s.runs if self.info(k) is not None]
        if s.shown not in kept and self.info(s.shown) is not None:
            kept.append(s.shown)  # a run still going: what it has so far
        if not kept:
            return self._fail("nothing to save yet: run the attack first")
        image = self._image()
        runs = [SavedRun(k.history, self.info(k), self._cam_array(k),
                         None if np.array_equal(k.description.image, image) else k.description.image, dict(k.files))
                for k in kept]
        index = {k.key: i for i, k in enumerate(kept)}
        compared = None if s.compared is None else tuple(index.get(key) for key in s.compared)
        session = Session(image, s.image.source_png, runs, kept.index(s.shown) if s.shown in kept else len(kept) - 1,
                          compared if compared is not None and None not in compared else None)

        def saved(text: str) -> bool:
            self.state.mark_saved(str(path))
            self._done(text)
            if then is not None:
                then()
            return True

        return self._job("session not saved: ", write_session, (str(path), session), wait, saved,
                         f"saving {Path(path).name}")

    def open_session(self, path: str | Path, wait: bool = True) -> bool:
        """Show a saved run without recomputing; on a bad file keep everything and say why. wait=False reads and
        checks it in the file worker (with progress and Cancel); the state switches once it is complete."""
        name = Path(path).name

        def opened(session: Session) -> bool:
            try:
                image = session_image(session)
                runs = [self.state.new_run(**run_parts(session, saved)) for saved in session.runs]
            except (KeyError, TypeError, ValueError, IndexError) as error:
                return self._fail(f"{name}: damaged session file ({error})")
            info, shown = session.info, runs[session.shown]
            compared = None if session.compared is None else tuple(runs[i].key for i in session.compared)
            self.window.controls.show_run(shown.description)
            self.state.show_session(image, runs, shown, str(path),
                                    tuple(info["shown"]) if isinstance(info.get("shown"), list) else None, compared)
            return self._done(f"session {name}: {info['image_name']}, {len(runs)} run{'s' if len(runs) > 1 else ''}, "
                              f"{info['model_name']}, {len(session.history)} frames shown")

        return self._job("", read_session, (str(path),), wait, opened, f"opening {name}")

    # -- single views ----------------------------------------------------------------------------------------------
    def view_items(self) -> dict[str, list]:
        """Exportable views, each as the graphics it is drawn with: an image view and its colour bar, a metric
        plot, or a grid whole (its scene)."""
        w = self.window
        items: dict[str, list] = {"images": [w.views.scene()], "plots": [w.plots.scene()]}
        items.update({name: [plot, *([w.views.bars[name]] if name in w.views.bars else [])]
                      for name, plot in w.views.plots.items()})
        items.update({name: [curve.getViewBox().parentItem()] for name, curve in w.plots.curves.items()})
        return items

    def export_view(self, name: str, path: str | Path, width: int | None = None) -> bool:
        """One view as PNG (`width` pixels wide, height by aspect; provenance in text chunks) or SVG."""
        items = self.view_items().get(name)
        if items is None:
            return self._fail(f"no view named {name!r}")
        suffix = Path(path).suffix.lower()
        info = self.info()
        try:
            if suffix == ".png":
                data = png_bytes(items, width)
                if info is not None:
                    data = export.add_png_text(data, self._provenance(info, self.state.frame(), View=name))
            elif suffix == ".svg":
                data = svg_bytes(items)
            else:
                return self._fail(f"cannot export a view as {Path(path).name!r}: use .png or .svg")
            export.atomic_write_bytes(path, data)
        except OSError as error:
            return self._fail(f"view not exported: {error}")
        return self._done(f"view {name} exported to {path}")

    # -- composite figure -------------------------------------------------------------------------------------------
    def figure_data(self, which: str | tuple[int, int] = SHOWN,
                    info: dict | None = None) -> tuple[figures.FigureData, Frame, dict]:
        """The composite figure's data for the shown iteration, the engine's CHOSEN one, or (step, iteration);
        `info` is the shown run's (self.info()) when the caller has it already."""
        info = info or self.info()
        if info is None:
            raise ValueError("nothing to show yet: run the attack first")
        frame = self._frame(which)
        x = self._image()
        delta = self._delta(which, frame)
        x_adv = np.clip(x + delta.transpose(1, 2, 0), 0, 1)
        lambda_map = None if frame.log10_lambda is None else (
            10.0 ** frame.log10_lambda[0].astype(np.float64)).astype(np.float32)
        cam_map = self._cam_array()
        record = self.state.record
        if which == CHOSEN and record:  # the engine's metrics record of the returned example (as gse-attack's)
            m = {**record, "figure_iterate": {"step": frame.step, "iteration": frame.iteration}}
        else:
            m = self._summary(info, frame, x, x_adv, which)
        captions = figures.run_captions(m, self._cam_caption() if cam_map is not None else "CAM", lambda_map)
        data = figures.FigureData(x=x, x_adv=x_adv, mask=frame.mask[0], lambda_map=lambda_map, cam=cam_map,
                                  captions=captions, title=figures.run_title(m))
        return data, frame, m

    def _summary(self, info: dict, frame: Frame, x: np.ndarray, x_adv: np.ndarray, which) -> dict:
        """The numbers gse-attack puts in metrics.json, as far as the trace knows them (no model, no torch): ACP, ANC
        and d2,0 as the engine computed them for the snapshot (d2,0 is -1 before the step's success)."""
        names = info["class_names"]
        delta = (x_adv - x).astype(np.float64)
        clean, adv = info["clean_class"], int(frame.top_classes[0][0])
        success = bool(frame.success[0]) if which != CHOSEN else True
        # GSE's record names its preset; a baseline's its attack, as gse-attack --attack writes them
        own = {"preset": info.get("preset") or "custom"} if info["attack"] == GSE else {
            "attack": {"name": info["attack"], "title": info["attack_title"]}}
        return {"image": info["image_name"], "model": info["model_name"], "targeted": info["targeted"],
                "target": {"index": info["label"], "name": names[info["label"]]} if info["targeted"] else None,
                **own, "success": success,
                "clean": {"index": clean, "name": names[clean], "probability": float(info["top_probs"][0])},
                "adversarial": {"index": adv, "name": names[adv], "probability": float(frame.top_probs[0][0])},
                "acp": int(frame.acp[0]), "anc": int(frame.anc[0]), "l2": float(np.sqrt((delta ** 2).sum())),
                "d20": int(frame.d20[0]),
                "fools_at_8bit": None,  # unknown without the model
                "interpretability_score": {"70": math.nan},  # the CAM panel's IS goes in the CAM caption
                "figure_iterate": {"step": frame.step, "iteration": frame.iteration},
                "params": info["params"] or info["settings"], "versions": info["versions"],
                "threads": info["threads"], "seed": info["seed"], "device": info["device"]}

    def export_figure(self, path: str | Path, panels: list[str] | None = None,
                      which: str | tuple[int, int] = SHOWN, dpi: int = 300, wait: bool = True) -> bool:
        """The composite figure as PNG / SVG / PDF (by suffix); the CAM panel is left out when there is no CAM.
        wait=False draws and writes it in the file worker (the menu); the result then comes as a message."""
        try:
            info = self.info()
            data, frame, _ = self.figure_data(which, info)
            missing = {"cam": data.cam is None, "lambda": data.lambda_map is None}
            panels = [p for p in (panels or figures.DEFAULT_PANELS) if not missing.get(p)]
            if not panels:
                raise ValueError("no panel to draw (the CAM panel needs a computed CAM)")
            metadata = self._provenance(info, frame, Title=f"{info['attack_title']} adversarial example of "
                                                           f"{info['image_name']}",
                                        Panels=",".join(panels))
        except (ValueError, IndexError, KeyError) as error:
            return self._fail(f"figure not saved: {error}")
        return self._job("figure not saved: ", write_figure, (data, panels, str(path), dpi, metadata), wait,
                         self._done, "drawing the figure")

    # -- comparison -----------------------------------------------------------------------------------------------
    def comparison_runs(self) -> list[ComparedRun]:
        """The compared runs (A, B) as the comparison figure takes them; ValueError when they cannot be drawn."""
        if self.state.compared is None:
            raise ValueError("select two runs to compare first")
        runs = []
        for key in self.state.compared:
            kept = self.state.kept(key)
            if kept.measured is None:
                raise ValueError(f"{kept.name} was stopped: it has no measured result to compare")
            x, m = kept.description.image, kept.measured
            x_adv = np.clip(x + kept.outcome()[0].transpose(1, 2, 0), 0, 1)
            runs.append(ComparedRun(kept.name, x_adv, m.metrics, m.time_s, m.n_forward, m.n_backward))
        return runs

    def export_comparison(self, path: str | Path, dpi: int = 200, wait: bool = True) -> bool:
        """The comparison of the two compared runs as one figure (PNG / SVG / PDF by suffix), drawn by the same
        Qt-free code as gse-compare (wait: as export_figure)."""
        try:
            runs = self.comparison_runs()
            kept = [self.state.kept(key) for key in self.state.compared]
            a = kept[0].description
            goal = f"targeted at {a.model.class_name(a.label)}" if a.targeted else "untargeted"
            title = f"{runs[0].label} vs {runs[1].label} on {self.state.image.name}: {a.model.name}, {goal}"
            infos = [self.info(k) for k in kept]
            metadata = export.provenance(model=a.model.name, library_versions=infos[0]["versions"], Title=title,
                                         Source=self.state.image.name,
                                         Runs={r.label: {"attack": i["attack"], "settings": i["params"] or i["settings"]}
                                               for r, i in zip(runs, infos)})
        except (ValueError, KeyError) as error:
            return self._fail(f"comparison not saved: {error}")
        return self._job("comparison not saved: ", write_comparison,
                         (a.image, runs, list(a.model.class_names), title, str(path), dpi, metadata), wait, self._done,
                         "drawing the comparison")

    # -- animation ------------------------------------------------------------------------------------------------
    def animation_frames(self, step: int | None, every: int) -> list[animation.FrameData]:
        """Every `every`-th iteration (and the last) of one search step, or of all steps (step None), with the
        CAM on screen (when there is one)."""
        h = self.state.history
        steps = h.steps if step is None else [step]
        if step is not None and step not in h.steps:
            raise ValueError(f"no search step {step + 1} in this run")
        picked = [h.frame(s, j) for s in steps for j in animation.select_frames(h.n_iterations(s), every)]
        if not picked:
            raise ValueError("nothing to animate yet: run the attack first")
        x, cam = self._image(), self._cam_array()
        return [animation.FrameData(x, f.delta[0], f.mask[0], f"step {f.step + 1}, iteration {f.iteration + 1}",
                                    None if f.log10_lambda is None else f.log10_lambda[0], cam) for f in picked]

    def export_animation(self, path: str | Path, step: int | None = None, every: int = 10, fps: float = 5.0,
                         columns: int = 5, panels: list[str] | None = None, wait: bool = True) -> bool:
        """A GIF (.gif) or a strip of frames (.png/.svg/.pdf) of the chosen panels (gse_algo.animation) at every
        Nth iteration (wait: as export_figure)."""
        try:
            frames = self.animation_frames(step, every)
            panels = animation.check_panels(panels or animation.DEFAULT_PANELS, frames[0])
            which = "all steps" if step is None else f"step {step + 1}"
            metadata = self._provenance(self.info(), None, Iterations=f"every {every}th of {which}",
                                        Panels=",".join(panels))
        except ValueError as error:
            return self._fail(f"animation not saved: {error}")
        return self._job("animation not saved: ", write_animation, (frames, panels, str(path), fps, columns, metadata),
                         wait, self._done, "drawing the animation")

    def _job(self, failure: str, job, args: tuple, wait: bool, on_result: Callable[[object], bool],
             doing: str) -> bool:
        """Run a file job here (wait) or in the file worker (with progress and Cancel in the status bar); its
        result goes to `on_result`, an error becomes one message: `failure` followed by the reason."""
        if wait:
            try:
                return on_result(job(*args))
            except (ValueError, OSError, SessionError) as error:
                return self._fail(f"{failure}{error}")

        def done(future) -> None:
            if not self.worker.busy:
                self.progress.finish()
            result, error = outcome(future)
            if isinstance(error, Cancelled):
                self._done(f"{doing}: cancelled")
            elif error is not None:
                self._fail(f"{failure}{error}")
            else:
                on_result(result)

        token = self.worker.submit(job, *args, on_done=done, on_progress=self.progress.set_fraction)
        self.progress.start(doing, lambda: self.worker.cancel(token))
        self.window.message.setText(f"{doing} …")
        return True

    # -- raw data -------------------------------------------------------------------------------------------------
    def export_data(self, folder: str | Path, which: str | tuple[int, int] = SHOWN) -> bool:
        """adv.png (16-bit, provenance chunks), arrays.npz and metrics.json, as gse-attack writes them."""
        try:
            info = self.info()
            data, frame, m = self.figure_data(which, info)
            arrays = {"x": data.x.transpose(2, 0, 1), "x_adv": data.x_adv.transpose(2, 0, 1),
                      "delta": (data.x_adv - data.x).transpose(2, 0, 1), "mask": data.mask,
                      "lambda_map": data.lambda_map}
            if data.lambda_map is None:
                del arrays["lambda_map"]
            if data.cam is not None:
                arrays["cam"] = np.asarray(data.cam, np.float32)
            m = {**m, "cam": info.get("cam"), "session_info": {k: v for k, v in info.items() if k != "class_names"}}
            from gse_algo.quantize import encode_png, levels

            files = self.state.files if which == CHOSEN else {}
            extra = {}
            if files:  # quantisation-aware run: the engine's final step made these integers fool the model
                adv_png = encode_png(files[16] / levels(16), 16)
                extra = {"adv8.png": encode_png(files[8] / levels(8), 8), "original.png": encode_png(arrays["x"], 8)}
                arrays.update(x_adv_8bit=files[8], x_adv_16bit=files[16])
            else:
                adv_png = encode_png(arrays["x_adv"], 16)
            export.write_run_outputs(folder, adv_png=adv_png, metrics=m, arrays=arrays,
                                     metadata=self._provenance(info, frame), extra_pngs=extra)
        except (ValueError, OSError) as error:
            return self._fail(f"data not exported: {error}")
        return self._done(f"adv.png{', adv8.png' if which == CHOSEN and self.state.files else ''}, arrays.npz and "
                          f"metrics.json written to {folder}")
