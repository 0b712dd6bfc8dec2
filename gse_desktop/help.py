"""The Help menu: keyboard shortcuts, what each number means, About (with the engine's versions)."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow, QMessageBox

SHORTCUTS = (
    ("F5", "Run"), ("Left / Right", "previous / next iteration"), ("Home / End", "first / last iteration"),
    ("PageUp / PageDown", "previous / next search step"), ("F", "fit the whole image in every view"),
    ("Z", "zoom to the perturbed pixels"), ("Ctrl+O", "open an image"), ("Ctrl+Shift+O", "open a session"),
    ("Ctrl+S", "save the session"), ("Ctrl+E", "export the composite figure"),
)
# One owner for what each number means: the Help page and the tooltips read these.
MEANINGS = {
    "ACP": "Average changed pixels: pixels (all channels of one location) where the perturbation is not zero.",
    "ANC": "Average number of clusters: 4-connected groups of changed pixels.",
    "d2,0": "Group sparsity d2,0: the number of 8x8 patches (stride 1, spec 2.2) whose perturbation is not zero "
            "(the outer search keeps the success with the smallest d2,0).",
    "l2": "Euclidean norm of the perturbation over all channels, in [0,1] pixel units (half the paper's value).",
    "pixel share": "Share of the changed pixels that lie in the top q % most salient pixels of the CAM.",
    "l2 share": "Share of the perturbation's l2 norm inside the top q % of the CAM: "
                "sqrt(sum of squares inside / total).",
    "IoU": "Intersection over union of the changed pixels and the top q % region of the CAM.",
    "IS": "Interpretability score (spec 2.4): share of the perturbation's l2 norm where the adversarial saliency map "
          "exceeds its P-th percentile, for P = 50 .. 90.",
    "CW loss": "Carlini-Wagner margin loss max(0, margin + kappa); 0 once the decision has changed.",
    "margin": "Logit margin: true-class logit minus the largest other (untargeted), or largest other minus target "
              "(targeted); below 0 the attack succeeds.",
}


def build_help_menu(window: QMainWindow, versions: callable) -> None:
    """`versions()` returns the engine's versions (empty until it is ready)."""
    menu = window.menuBar().addMenu("&Help")
    menu.addAction("Keyboard shortcuts", lambda: _show(window, "Keyboard shortcuts", _table(SHORTCUTS)))
    menu.addAction("What the numbers mean", lambda: _show(window, "What the numbers mean",
                                                           _table(MEANINGS.items())))
    menu.addAction("About GSE Desktop", lambda: _show(window, "About GSE Desktop", _about(versions())))


def _table(rows) -> str:
    cells = "".join(f"<tr><td><b>{a}</b></td><td>{b}</td></tr>" for a, b in rows)
    return f"<table cellspacing='6'>{cells}</table>"


def _about(versions: dict) -> str:
    lines = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in versions.items())
    return ("<p>GSE Desktop: watch the GSE group-wise sparse attack (Sadiku, Wagner, Pokutta, arXiv 2311.17434) "
            "work, compare it with the model's CAM saliency, export figures.</p>"
            + (f"<table>{lines}</table>" if lines else "<p>(versions appear once the engine is ready)</p>"))


def _show(window: QMainWindow, title: str, html: str) -> None:
    box = QMessageBox(QMessageBox.Icon.Information, title, html, parent=window)
    box.setTextFormat(box.textFormat().RichText)
    box.open()
