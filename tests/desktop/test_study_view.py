"""File > Open study…: a small study folder opens as a sortable, filtered table; a click on a row recomputes that
row in the main window (the engine's run has the row's image, target, parameters and seed, and gives its
numbers). The study is made by gse-study itself, on a TorchScript copy of the tests' tiny model."""

import json

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from conftest import TIMEOUT, tiny_model
from gse_algo.study.runner import run_study
from gse_algo.study.spec import parse_study
from gse_desktop.study_view import open_study

SETTINGS = {"preset": "cifar10", "iters": 30, "search_steps": 3, "k_hat": 5, "sigma": 0.01, "mu": 0.1}


@pytest.fixture
def study_folder(tmp_path, image_file):
    tiny = tiny_model()
    model = tmp_path / "tiny.pt"
    torch.jit.script(tiny.net).save(str(model))
    (tmp_path / "tiny.pt.json").write_text(json.dumps({"mean": list(tiny.mean), "std": list(tiny.std),
                                                      "input_size": 16, "class_names": tiny.class_names}))
    study = parse_study({"images": {"source": str(tmp_path)}, "model": {"name": str(model)}, "batch_size": 1,
                         "targeted": [2, 7], "attacks": [{"name": "gse", "settings": SETTINGS,
                                                          "grid": {"blur_size": [3, 5]}}]}, tmp_path)
    run_study(study, tmp_path / "study")
    return tmp_path / "study"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_study_opens_as_a_table_and_a_click_recomputes_the_row(qtbot, window, study_folder):
    view = open_study(window, study_folder)
    assert view is not None and window.messages == []
    qtbot.addWidget(view)
    rows = view.model.rows
    assert view.proxy.rowCount() == len(rows) == 4  # 1 image x 2 targets x 2 blur sizes
    column = view.model.names.index("acp")
    view.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    shown = [view.proxy.index(r, column).data(Qt.ItemDataRole.UserRole) for r in range(4)]
    assert shown == sorted((r["acp"] for r in rows), reverse=True)  # numbers sort as numbers
    config = next(c for c in view.manifest["plan"]["configs"] if c["settings"]["blur_size"] == 3)["label"]
    view.filter.setText(config)
    assert view.proxy.rowCount() == 2
    index = view.proxy.index(0, 0)
    row = rows[view.proxy.mapToSource(index).row()]
    view.table.clicked.emit(index)
    qtbot.waitUntil(lambda: window.state.run is not None and window.state.history.result is not None,
                    timeout=TIMEOUT)
    run = window.state.run
    assert run.spec.image_path == row["image_path"] and run.spec.target == row["target"] and run.targeted
    assert run.params.blur_size == 3 and run.params.iters == 30 and run.params.k_hat == 5
    assert window.messages == []
    result = window.state.history.result
    assert bool(result.success[0]) == row["success"]
    delta = result.delta[0]
    assert abs(int((np.asarray(delta) != 0).any(axis=0).sum()) - row["acp"]) <= max(1, 0.05 * row["acp"])


def test_a_folder_that_is_not_a_study_is_one_message(qtbot, window, tmp_path):
    assert open_study(window, tmp_path) is None
    assert len(window.messages) == 1 and "not a study folder" in window.messages[0]
    assert any(a.text() == "Open study…" for m in window.menuBar().actions() if m.menu()
               for a in m.menu().actions())
