"""The controls: image, model, device, target (this widget); the attack (`params_box`: the attack picker with GSE's
preset + every parameter, or another attack's parameter form, gse_desktop.panels.attack_form) and
Run/Pause/Step/Stop (`run_buttons`), which the window places in panels and a toolbar of their own."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QIcon, QValidator
from PySide6.QtWidgets import (QAbstractSpinBox, QButtonGroup, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QMenu, QPushButton,
                               QRadioButton, QSpinBox, QStyle, QToolButton, QVBoxLayout, QWidget)

from gse_algo.defaults import DEFAULT_REG, REGULARISER_NAMES
from gse_algo.params import AUTO, HELP, PRESET_FIELDS, PRESETS, RANGES, GSEParams
from gse_desktop.panels.attack_form import AttackPicker
from gse_desktop.records import GSE, AttackInfo

# name -> decimals shown (None: an integer); tooltips and ranges are GSEParams' own (params.HELP, params.RANGES)
DECIMALS = {"mu": 6, "sigma": 7, "k_hat": None, "q": 4, "iters": None, "search_steps": None, "search_factor": 3,
            "blur_size": None, "blur_sigma": 3, "kappa": 3}
CUSTOM = "custom"
OFFLINE_TIP = "works offline: its weights file is in torch.hub.get_dir()/checkpoints (or ships with the app)"
ONLINE_TIP = "torchvision downloads its weights file when the model is first used"


class OddSpinBox(QSpinBox):
    """An integer box that takes odd values only (the blur kernel size): an even one is refused as it is typed."""

    def validate(self, text: str, pos: int):
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and self.valueFromText(text) % 2 == 0:
            state = QValidator.State.Intermediate
        return state, text, pos

    def fixup(self, text: str) -> str:
        value = self.valueFromText(text) if text.strip() else self.value()
        return self.textFromValue(value + 1 if value % 2 == 0 else value)


class ControlsPanel(QWidget):
    """Signals ask the window to act; `params()`, `target()` etc. read the current choices."""

    open_image = Signal(str)
    run_clicked = Signal()
    pause_toggled = Signal(bool)
    step_clicked = Signal()
    stop_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addWidget(self._image_group())
        layout.addWidget(self._model_group())
        layout.addWidget(self._target_group(), 1)
        self.attack_picker = AttackPicker(self._params_group())
        self.attack_picker.changed.connect(self._goals_allowed)
        self.params_box = self.attack_picker  # the window shows it in a panel of its own
        self.run_buttons = QWidget()  # the window keeps these always in view, outside the scrolling column
        self.run_buttons.setLayout(self._buttons())
        self._applying = False
        self.apply_preset()
        self.set_running(False)

    # -- building ------------------------------------------------------------------------------------------------
    def _image_group(self) -> QGroupBox:
        box = QGroupBox("Image")
        self.image_label = QLabel("(none)")
        self.image_label.setWordWrap(True)
        open_button = QPushButton("Open…")
        open_button.setToolTip("Open an image file (or drop one on the window)")
        open_button.clicked.connect(self._browse_image)
        self.examples_menu = QMenu(self)
        self.recent_menu = QMenu(self)
        row = QHBoxLayout()
        row.addWidget(open_button)
        for text, menu in (("Examples", self.examples_menu), ("Recent", self.recent_menu)):
            button = QToolButton(text=text)
            button.setMenu(menu)
            button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
            row.addWidget(button)
        inner = QVBoxLayout(box)
        inner.addLayout(row)
        inner.addWidget(self.image_label)
        return box

    def _model_group(self) -> QGroupBox:
        box = QGroupBox("Model")
        self.model_combo = QComboBox(editable=True)
        self.model_combo.setToolTip("The default offline model, a torchvision model name, or a checkpoint file")
        file_button = QPushButton("File…")
        file_button.clicked.connect(self._browse_model)
        self.device_combo = QComboBox(toolTip="Where the engine runs the model (the list comes from the engine)")
        self.device_combo.addItem("cpu")
        self.threads_spin = QSpinBox(minimum=1, maximum=256)
        self.threads_spin.setToolTip("torch CPU threads used by the attack")
        self.offline = {}  # torchvision name -> its weights are here (the engine's catalogue)
        self.offline_label = QLabel(wordWrap=True)
        self.model_combo.currentTextChanged.connect(self._show_offline)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(file_button)
        form = QFormLayout(box)
        form.addRow(row)
        form.addRow(self.offline_label)
        form.addRow("Device", self.device_combo)
        form.addRow("Threads", self.threads_spin)
        return box

    def _target_group(self) -> QGroupBox:
        box = QGroupBox("Target")
        self.untargeted = QRadioButton("untargeted", checked=True)
        self.targeted = QRadioButton("targeted:")
        group = QButtonGroup(box)
        group.addButton(self.untargeted)
        group.addButton(self.targeted)
        self.class_filter = QLineEdit(placeholderText="search classes…")
        self.class_filter.textChanged.connect(self._filter_classes)
        self.class_list = QListWidget()
        self.class_list.setMinimumHeight(60)
        self.class_list.currentRowChanged.connect(lambda _: self.targeted.setChecked(True))
        self.targeted.toggled.connect(lambda _: self.apply_preset())
        inner = QVBoxLayout(box)
        row = QHBoxLayout()
        row.addWidget(self.untargeted)
        row.addWidget(self.targeted)
        inner.addLayout(row)
        inner.addWidget(self.class_filter)
        inner.addWidget(self.class_list)
        return box

    def _params_group(self) -> QGroupBox:
        box = QGroupBox("GSE parameters ([0,1] pixel units)")
        form = QFormLayout(box)
        form.setVerticalSpacing(2)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([AUTO, *PRESETS, CUSTOM])
        self.preset_combo.setToolTip("Official per-dataset settings (mu, sigma, k_hat, q); 'auto' picks cifar10 for "
                                     "inputs <= 64 px, imagenet otherwise, when the run starts")
        self.preset_combo.currentTextChanged.connect(lambda _: self.apply_preset())
        reset = QPushButton("Reset", toolTip="Every parameter back to the chosen preset's values and the defaults "
                                             "('custom' goes back to 'auto')")
        reset.clicked.connect(self.reset_to_preset)
        row = QHBoxLayout()
        row.addWidget(self.preset_combo, 1)
        row.addWidget(reset)
        form.addRow("Preset", row)
        self.spins: dict[str, QAbstractSpinBox] = {}
        defaults = GSEParams()
        for name, decimals in DECIMALS.items():
            tip = HELP[name]
            spin = (OddSpinBox() if name == "blur_size" else QSpinBox()) if decimals is None \
                else QDoubleSpinBox(decimals=decimals)
            _, low, high, low_ok = RANGES[name]
            spin.setRange(low if low_ok else low + 10.0 ** -(decimals or 0), high)  # an open end: the next step
            if name == "blur_size":
                spin.setSingleStep(2)
            spin.setValue(getattr(defaults, name))
            spin.setToolTip(tip)
            spin.valueChanged.connect(lambda _, n=name: self._edited(n))
            label = QLabel(name)
            label.setToolTip(tip)
            form.addRow(label, spin)
            self.spins[name] = spin
        self.reg_combo = QComboBox(toolTip=HELP["reg"])
        self.reg_combo.addItems(list(REGULARISER_NAMES))
        self.reg_combo.setCurrentText(DEFAULT_REG)
        form.addRow("reg", self.reg_combo)
        return box

    def _buttons(self) -> QHBoxLayout:
        self.run_button = QPushButton("Run")
        self.pause_button = QPushButton("Pause", checkable=True)
        self.step_button = QPushButton("Step")
        self.stop_button = QPushButton("Stop")
        self.run_button.setToolTip("Start the attack (F5)")
        self.step_button.setToolTip("Run one iteration, then pause")
        self.run_button.clicked.connect(self.run_clicked)
        self.pause_button.toggled.connect(self._pause_toggled)
        self.step_button.clicked.connect(self.step_clicked)
        self.stop_button.clicked.connect(self.stop_clicked)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for b in (self.run_button, self.pause_button, self.step_button, self.stop_button):
            row.addWidget(b)
        return row

    # -- behaviour -----------------------------------------------------------------------------------------------
    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_toggled.emit(paused)

    def set_running(self, running: bool, paused: bool = False) -> None:
        self.run_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.step_button.setEnabled(running)
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(running and paused)
        self.pause_button.setText("Resume" if running and paused else "Pause")
        self.pause_button.blockSignals(False)

    def set_devices(self, devices: list[str]) -> None:
        """The devices the engine found (cpu, cuda:0, ...); the current choice is kept when still there."""
        current = self.device_combo.currentText()
        self.device_combo.clear()
        self.device_combo.addItems(devices)
        if current in devices:
            self.device_combo.setCurrentText(current)

    def apply_preset(self) -> None:
        """Fill mu, sigma, k_hat, q from the chosen preset ('auto' shows the imagenet values)."""
        name = self.preset_combo.currentText()
        if name == CUSTOM:
            return
        base = GSEParams.preset("imagenet" if name == AUTO else name, targeted=self.targeted.isChecked())
        self._applying = True
        for field in PRESET_FIELDS:
            self.spins[field].setValue(getattr(base, field))
        self._applying = False

    def reset_to_preset(self) -> None:
        """Every parameter to its default, then the preset's values (custom parameters go back to 'auto')."""
        if self.preset_combo.currentText() == CUSTOM:
            self.preset_combo.setCurrentText(AUTO)
        defaults = GSEParams()
        self._applying = True
        for name, spin in self.spins.items():
            spin.setValue(getattr(defaults, name))
        self.reg_combo.setCurrentText(defaults.reg)
        self._applying = False
        self.apply_preset()

    def _edited(self, name: str) -> None:
        if name in PRESET_FIELDS and not self._applying:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentText(CUSTOM)
            self.preset_combo.blockSignals(False)

    def params(self) -> GSEParams:
        """The parameters as shown; raises ValueError with a readable message."""
        return GSEParams().replace(reg=self.reg_combo.currentText(),
                                   **{name: spin.value() for name, spin in self.spins.items()})

    def attack(self) -> AttackInfo:
        return self.attack_picker.current()

    def attack_settings(self) -> dict:
        """The chosen library attack's parameters (GSE reads `params()` and `preset()`)."""
        return self.attack_picker.settings()

    def _goals_allowed(self, info: AttackInfo) -> None:
        """An attack that supports only untargeted (or only targeted) runs disables the other choice, saying why."""
        for button, allowed, kind in ((self.targeted, info.targeted, "untargeted"),
                                      (self.untargeted, info.untargeted, "targeted")):
            button.setEnabled(allowed)
            button.setToolTip("" if allowed else f"{info.title} supports {kind} runs only")
        for widget in (self.class_list, self.class_filter):  # the target is picked there: no target, no search
            widget.setEnabled(info.targeted)
            widget.setToolTip("" if info.targeted else self.targeted.toolTip())
        if not info.targeted:
            self.untargeted.setChecked(True)
        elif not info.untargeted:
            self.targeted.setChecked(True)

    def preset(self) -> str | None:
        name = self.preset_combo.currentText()
        return None if name == CUSTOM else name

    def target(self) -> int | None:
        """None for untargeted, else the class index (the row in the class list)."""
        if not self.targeted.isChecked() or self.class_list.currentRow() < 0:
            return None
        return self.class_list.currentRow()

    def set_target(self, index: int | None) -> None:
        if index is None:
            self.untargeted.setChecked(True)
        else:
            self.class_list.setCurrentRow(index)
            self.targeted.setChecked(True)

    def show_run(self, run) -> None:
        """Show a run's settings (a RunDescription): its model, attack, exact parameters and target."""
        self.model_combo.setCurrentText(run.spec.model_spec)
        if run.attack.name == GSE:
            self.attack_picker.select(GSE)
            self.preset_combo.setCurrentText(CUSTOM)  # the run's effective parameters, exactly
            for name, spin in self.spins.items():
                spin.setValue(getattr(run.params, name))
            self.reg_combo.setCurrentText(run.params.reg)
        else:
            self.attack_picker.show_settings(run.attack.name, run.settings)
        self.set_class_names(list(run.model.class_names))
        self.set_target(run.label if run.targeted else None)

    def set_class_names(self, names: list[str]) -> None:
        if [self.class_list.item(i).text() for i in range(self.class_list.count())] == list(names):
            return
        row = self.class_list.currentRow()
        self.class_list.clear()
        self.class_list.addItems(list(names))
        if 0 <= row < len(names):
            self.class_list.setCurrentRow(row)
        self._filter_classes(self.class_filter.text())

    def _filter_classes(self, text: str) -> None:
        text = text.lower()
        for i in range(self.class_list.count()):
            item = self.class_list.item(i)
            item.setHidden(text not in item.text().lower())

    def model_spec(self) -> str:
        return self.model_combo.currentText().strip()

    def set_model_names(self, names: list[str], current: str) -> None:
        self.model_combo.addItems(names)
        self.model_combo.setCurrentText(current)

    def set_models(self, models: list[tuple[str, bool]]) -> None:
        """The torchvision models the engine offers, (name, works offline): those whose weights are here first,
        marked with a tick; the typed or chosen model stays."""
        current = self.model_spec()
        self.offline = dict(models)
        tick = self.style().standardIcon(QStyle.StandardPixmap.SP_DialogApplyButton)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for name, offline in sorted(models, key=lambda m: (not m[1], m[0])):
            self.model_combo.addItem(tick if offline else QIcon(), name)
            self.model_combo.setItemData(self.model_combo.count() - 1, OFFLINE_TIP if offline else ONLINE_TIP,
                                         Qt.ItemDataRole.ToolTipRole)
        self.model_combo.setCurrentText(current)
        self.model_combo.blockSignals(False)
        self._show_offline(current)

    def _show_offline(self, spec: str) -> None:
        known = self.offline.get(spec.strip())
        self.offline_label.setText("" if known is None else "✓ works offline" if known else
                                   "⤓ downloads its weights when first used")

    def set_image_path(self, path: str) -> None:
        self.image_label.setText(Path(path).name)
        self.image_label.setToolTip(path)

    def set_examples(self, paths: list[Path]) -> None:
        self.examples_menu.clear()
        for p in paths:
            self.examples_menu.addAction(p.name, lambda p=p: self.open_image.emit(str(p)))

    def set_recent(self, paths: list[str]) -> None:
        self.recent_menu.clear()
        for p in paths:
            self.recent_menu.addAction(p, lambda p=p: self.open_image.emit(p))

    def _browse_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff "
                                                                       "*.webp);;All files (*)")
        if path:
            self.open_image.emit(path)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "", "PyTorch checkpoints (*.pt *.pth);;All (*)")
        if path:
            self.model_combo.setCurrentText(path)

    # -- settings ------------------------------------------------------------------------------------------------
    def save(self, settings: QSettings) -> None:
        settings.setValue("preset", self.preset_combo.currentText())
        for name, spin in self.spins.items():
            settings.setValue(f"params/{name}", spin.value())
        settings.setValue("params/reg", self.reg_combo.currentText())
        settings.setValue("device", self.device_combo.currentText())
        settings.setValue("threads", self.threads_spin.value())
        self.attack_picker.save(settings)

    def restore(self, settings: QSettings, default_threads: int) -> None:
        for name, spin in self.spins.items():
            value = settings.value(f"params/{name}")
            if value is not None:
                spin.setValue(float(value) if isinstance(spin, QDoubleSpinBox) else int(float(value)))
        reg = settings.value("params/reg", DEFAULT_REG)
        self.reg_combo.setCurrentText(reg if reg in REGULARISER_NAMES else DEFAULT_REG)
        preset = settings.value("preset", AUTO)
        self.preset_combo.setCurrentText(preset if preset in (AUTO, *PRESETS, CUSTOM) else AUTO)
        self.apply_preset()
        device = settings.value("device", "cpu")
        if self.device_combo.findText(device) >= 0:
            self.device_combo.setCurrentText(device)
        self.threads_spin.setValue(int(settings.value("threads", default_threads)))
        self.attack_picker.restore(settings)
