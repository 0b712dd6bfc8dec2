"""The attack picker: a combo of the registered attacks (GSE first) and each attack's parameter form.

GSE keeps its own group of controls (gse_desktop.panels.controls, from params.RANGES / params.HELP); every other
attack gets a form built from its parameters (gse_desktop.records.ParamInfo: kind, default, range, tooltip). An
attack whose library is not installed is listed but disabled, its tooltip saying what to install. The engine checks
the values again (gse_algo.attacks.base) before a run starts.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QSettings, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QSizePolicy, QSpinBox, QVBoxLayout, QWidget)

from gse_desktop.records import GSE, GSE_INFO, AttackInfo, ParamInfo

INT_LIMIT = 2 ** 31 - 1  # QSpinBox holds a C int
FLOAT_LIMIT = 1e9  # an unbounded end of a float parameter
AUTO_TEXT = "auto"
EDITOR_WIDTH = 90  # px: a spin box's width does not follow its range's longest number (the column gives the rest)


def decimals_for(p: ParamInfo) -> int:
    """Enough decimals to show the default and the lower end exactly (3 to 8)."""
    shown = [abs(float(v)) for v in (p.default, p.low) if isinstance(v, (int, float)) and v not in (0, None)]
    needed = [max(0, -math.floor(math.log10(v)) + 2) for v in shown]
    return min(max([3, *needed]), 8)


def tooltip(p: ParamInfo) -> str:
    text = p.tip
    if p.interval:
        text += f"\nrange: {p.interval}"
    if p.choices:
        text += f"\none of: {', '.join(p.choices)}"
    if p.default is None:
        text += f"\n'{AUTO_TEXT}': the attack chooses"
    return text


class ParamField(QWidget):
    """One parameter's editor: a spin box (with its range), a check box, a choice or a text; 'auto' for None."""

    def __init__(self, p: ParamInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.param = p
        self.editor = self._editor(p)
        self.editor.setToolTip(tooltip(p))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.editor, 1)
        self.auto: QCheckBox | None = None
        if p.default is None:
            self.auto = QCheckBox(AUTO_TEXT, checked=True, toolTip="Let the attack choose this value")
            self.auto.toggled.connect(lambda on: self.editor.setEnabled(not on))
            self.editor.setEnabled(False)
            row.addWidget(self.auto)

    @staticmethod
    def _editor(p: ParamInfo) -> QWidget:
        if p.kind == "bool":
            return QCheckBox(checked=bool(p.default))
        if p.kind == "str":
            if p.choices:
                box = QComboBox()
                box.addItems(list(p.choices))
                if p.default is not None:
                    box.setCurrentText(str(p.default))
                return box
            return QLineEdit("" if p.default is None else str(p.default))
        if p.kind == "int":
            spin = QSpinBox()
            low = -INT_LIMIT if p.low is None else math.ceil(p.low) + (0 if p.low_ok else 1)
            high = INT_LIMIT if p.high is None else math.floor(p.high)
        else:
            spin = QDoubleSpinBox(decimals=decimals_for(p))
            step = 10.0 ** -spin.decimals()
            low = -FLOAT_LIMIT if p.low is None else p.low + (0 if p.low_ok else step)
            high = FLOAT_LIMIT if p.high is None else p.high
        spin.setRange(max(low, -INT_LIMIT) if p.kind == "int" else low, min(high, INT_LIMIT) if p.kind == "int"
                      else high)
        spin.setMinimumWidth(EDITOR_WIDTH)
        spin.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        if p.default is not None:
            spin.setValue(p.default)
        return spin

    def value(self) -> int | float | str | bool | None:
        if self.auto is not None and self.auto.isChecked():
            return None
        e = self.editor
        if isinstance(e, QCheckBox):
            return e.isChecked()
        if isinstance(e, QComboBox):
            return e.currentText()
        if isinstance(e, QLineEdit):
            return e.text()
        return e.value()

    def set_value(self, value: int | float | str | bool | None) -> None:
        """Show `value` (None: auto); ValueError, with the field unchanged, for a number it cannot hold (not a
        number, not finite, a fraction for an integer, outside the spin box's range)."""
        e = self.editor
        number = None if value is None or not isinstance(e, (QSpinBox, QDoubleSpinBox)) else self._number(value)
        if self.auto is not None:
            self.auto.setChecked(value is None)
        if value is None:
            return
        if isinstance(e, QCheckBox):
            e.setChecked(value in (True, "true", "1", 1))
        elif isinstance(e, QComboBox):
            if e.findText(str(value)) >= 0:
                e.setCurrentText(str(value))
        elif isinstance(e, QLineEdit):
            e.setText(str(value))
        else:
            e.setValue(int(number) if isinstance(e, QSpinBox) else number)

    def _number(self, value: object) -> float:
        e = self.editor
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        whole = number.is_integer() if isinstance(e, QSpinBox) else True
        if not (math.isfinite(number) and whole and e.minimum() <= number <= e.maximum()):
            raise ValueError(f"{self.param.name}: {value!r:.40} does not fit {e.minimum()}..{e.maximum()}")
        return number


class ParamForm(QGroupBox):
    """The parameters of one (non-GSE) attack, each with its range and tooltip."""

    def __init__(self, info: AttackInfo, parent: QWidget | None = None) -> None:
        super().__init__(f"{info.title} parameters ([0,1] pixel units)", parent)
        form = QFormLayout(self)
        form.setVerticalSpacing(2)
        about = QLabel(f"{info.source}; minimises {info.norm}" if info.source else "")
        about.setWordWrap(True)
        about.setToolTip(info.notes)
        form.addRow(about)
        self.fields: dict[str, ParamField] = {}
        for p in info.params:
            field = ParamField(p)
            label = QLabel(p.name)
            label.setToolTip(tooltip(p))
            form.addRow(label, field)
            self.fields[p.name] = field
        if not info.params:
            form.addRow(QLabel("(no parameters)"))

    def settings(self) -> dict:
        return {name: field.value() for name, field in self.fields.items()}

    def show_values(self, values: dict) -> None:
        """Show each value in its field; one a field cannot show (a session from elsewhere, a hand-edited settings
        file) leaves that field as it was."""
        for key, value in values.items():
            if key in self.fields:
                try:
                    self.fields[key].set_value(value)
                except ValueError:
                    pass


class AttackPicker(QWidget):
    """The attack combo over the parameter pages, only the chosen attack's shown (a hidden page takes no room, so
    the widest form does not set the panel's width); `gse_page` is GSE's. Emits `changed(AttackInfo)`."""

    changed = Signal(object)

    def __init__(self, gse_page: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox(toolTip="The attack to run; each has its own parameters below")
        self.gse_page = gse_page
        self.attacks: list[AttackInfo] = []
        self.forms: dict[str, ParamForm] = {}
        self._wanted = GSE  # the attack last picked (or remembered), selected again when the list changes
        self._saved: QSettings | None = None
        self.pages = QVBoxLayout()
        self.pages.setContentsMargins(0, 0, 0, 0)
        self.pages.addWidget(gse_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Attack"))
        row.addWidget(self.combo, 1)
        layout.addLayout(row)
        layout.addLayout(self.pages)
        self.combo.currentIndexChanged.connect(self._picked)
        self.set_attacks([GSE_INFO])

    def set_attacks(self, attacks: list[AttackInfo]) -> None:
        """The registry as the engine describes it; the current choice is kept when it is still there."""
        attacks = sorted(attacks, key=lambda a: a.name != GSE)  # GSE first
        self.combo.blockSignals(True)
        self.combo.clear()
        for form in self.forms.values():
            self.pages.removeWidget(form)
            form.deleteLater()
        self.attacks, self.forms = attacks, {}
        model: QStandardItemModel = self.combo.model()
        for info in attacks:
            self.combo.addItem(info.title, info.name)
            item = model.item(self.combo.count() - 1)
            item.setToolTip(info.missing or info.notes or f"{info.source}; minimises {info.norm}")
            item.setEnabled(info.missing is None)
            if info.name != GSE:
                self.forms[info.name] = ParamForm(info)
                self.forms[info.name].setVisible(False)
                self.pages.addWidget(self.forms[info.name])
        self.combo.blockSignals(False)
        wanted = self._wanted
        if self._saved is not None:
            self._apply_saved(self._saved)
        if not self.select(wanted):
            self.select(GSE)
        self._wanted = wanted

    def _usable(self, name: str) -> bool:
        return any(a.name == name and a.missing is None for a in self.attacks)

    def select(self, name: str) -> bool:
        """Pick an attack by registry name (False when it is not listed or cannot run here)."""
        index = self.combo.findData(name)
        if index < 0 or not self._usable(name):
            return False
        self.combo.setCurrentIndex(index)
        self._picked()
        return True

    def _picked(self, *_: object) -> None:
        info = self.current()
        self._wanted = info.name
        shown = self.forms.get(info.name, self.gse_page)
        for page in (self.gse_page, *self.forms.values()):
            page.setVisible(page is shown)
        self.changed.emit(info)

    def current(self) -> AttackInfo:
        name = self.combo.currentData()
        return next((a for a in self.attacks if a.name == name), GSE_INFO)

    def settings(self) -> dict:
        """The chosen (non-GSE) attack's values by parameter name."""
        form = self.forms.get(self.current().name)
        return form.settings() if form is not None else {}

    def show_settings(self, name: str, settings: dict) -> None:
        """Pick `name` and show these values (a reopened run)."""
        if self.select(name) and name in self.forms:
            self.forms[name].show_values(settings)

    # -- settings ------------------------------------------------------------------------------------------------
    def save(self, settings: QSettings) -> None:
        settings.setValue("attack", self.current().name)
        for name, form in self.forms.items():
            for key, value in form.settings().items():
                settings.setValue(f"attacks/{name}/{key}", "" if value is None else str(value))

    def restore(self, settings: QSettings) -> None:
        """The last attack and every form's values (applied again when the engine lists the attacks)."""
        self._saved = settings
        self._wanted = str(settings.value("attack", GSE))
        self._apply_saved(settings)
        self.select(self._wanted)

    def _apply_saved(self, settings: QSettings) -> None:
        for name, form in self.forms.items():
            saved = {key: settings.value(f"attacks/{name}/{key}") for key in form.fields}
            form.show_values({key: None if value == "" else value for key, value in saved.items() if value is not None})
