"""The window's dockable panels (QDockWidget): their default arrangement, the remembered one, and Reset layout.

The image views, the readout and the timeline are the central widget; everything else is a dock the user can
move, tabify, float or close (View > Panels). Run/Pause/Step/Stop sit in a toolbar, so they are reachable whatever
panel is shown. The default arrangement: Setup and Parameters on the left (tabbed in a short window, one above the
other in a tall one), Metrics, CAM comparison and Runs tabbed at the bottom, with Classes and Search steps as two
more tabs in a narrow window or beside them in a wide one. The arrangement is saved in the settings
(QMainWindow.saveState) when the window closes and restored at start.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QEvent, QObject, QSettings, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QScrollArea, QTabBar, QTabWidget, QToolBar, QWidget

LAYOUT_VERSION = 2  # bump when the docks change: an older saved layout is then ignored
STATE_KEY, GEOMETRY_KEY = "layout/state", "layout/geometry"
TALL = 900  # window height from which Setup and Parameters are shown one above the other
WIDE = 1600  # window width from which Classes and Search steps are shown beside the metrics, not as their tabs
BOTTOM_SHARE = 0.25  # of the window height for the bottom docks by default
LEFT_WIDTH = 300
SIDE_TABLES_WIDTH = 330
AREAS = Qt.DockWidgetArea
BOTTOM = ("metrics", "cam", "runs", "classes", "search")


def scrolled(widget: QWidget) -> QScrollArea:
    """`widget` in a vertical scroll area (a safety net for windows smaller than the laptop sizes)."""
    scroll = QScrollArea(widgetResizable=True)
    scroll.setWidget(widget)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    return scroll


class Docks(QObject):
    """The docks of `window`, by name: setup, params, metrics, cam, runs, classes, search (the default layout for the
    window's size when made; `arrange` makes it again)."""

    def __init__(self, window: QMainWindow, panels: dict[str, tuple[str, QWidget]], run_buttons: QWidget) -> None:
        super().__init__(window)
        self.window = window
        window.setCorner(Qt.Corner.BottomLeftCorner, AREAS.LeftDockWidgetArea)  # the left column is full height
        window.setTabPosition(AREAS.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        window.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks
                              | QMainWindow.DockOption.AllowNestedDocks)
        self.docks: dict[str, QDockWidget] = {}
        for name, (title, widget) in panels.items():
            dock = QDockWidget(title, window)
            dock.setObjectName(f"dock_{name}")
            if name in BOTTOM:  # a title at the side: the height goes to the panel (and the image views)
                dock.setFeatures(dock.features() | QDockWidget.DockWidgetFeature.DockWidgetVerticalTitleBar)
            dock.setWidget(widget)
            dock.dockLocationChanged.connect(lambda _: QTimer.singleShot(0, self.hide_stale_tab_bars))
            self.docks[name] = dock
        self.run_bar = QToolBar("Run", window)
        self.run_bar.setObjectName("run_toolbar")
        self.run_bar.addWidget(run_buttons)
        window.addToolBar(self.run_bar)
        self.arrange()
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Show:  # a restored layout's tabs are known now
            self.window.removeEventFilter(self)
            QTimer.singleShot(0, self.hide_stale_tab_bars)
        return False

    def __getitem__(self, name: str) -> QDockWidget:
        return self.docks[name]

    def arrange(self) -> None:
        """The default arrangement, sized for the window's current height."""
        w, d = self.window, self.docks
        size = w.size()  # a dock on its way between places can widen the window for a moment: kept as it was
        for dock in d.values():
            dock.setFloating(False)
            dock.show()
        self.run_bar.show()
        w.addDockWidget(AREAS.LeftDockWidgetArea, d["setup"])
        w.addDockWidget(AREAS.LeftDockWidgetArea, d["params"])
        if w.height() >= TALL:
            w.splitDockWidget(d["setup"], d["params"], Qt.Orientation.Vertical)
            params = d["params"].widget().widget().sizeHint().height() + 50  # its form whole, the rest to Setup
            w.resizeDocks([d["setup"], d["params"]], [w.height() - params, params], Qt.Orientation.Vertical)
        else:
            w.tabifyDockWidget(d["setup"], d["params"])
        w.addDockWidget(AREAS.BottomDockWidgetArea, d["metrics"])
        if w.width() >= WIDE:
            w.splitDockWidget(d["metrics"], d["classes"], Qt.Orientation.Horizontal)  # split first, then tabify
            w.tabifyDockWidget(d["classes"], d["search"])
            w.tabifyDockWidget(d["metrics"], d["cam"])
            w.tabifyDockWidget(d["cam"], d["runs"])
            w.resizeDocks([d["classes"]], [SIDE_TABLES_WIDTH], Qt.Orientation.Horizontal)
        else:
            for name in ("cam", "runs", "classes", "search"):
                w.tabifyDockWidget(d["metrics"], d[name])
        self.hide_stale_tab_bars()
        for first in ("setup", "classes", "metrics"):  # the tab shown first in each group
            d[first].raise_()
        w.resizeDocks([d["setup"]], [LEFT_WIDTH], Qt.Orientation.Horizontal)
        w.layout().activate()  # the minimum size it set while the dock was between places is recomputed
        w.resize(size)
        w.resizeDocks([d["metrics"]], [int(BOTTOM_SHARE * w.height())], Qt.Orientation.Vertical)

    def save(self, settings: QSettings) -> None:
        settings.setValue(STATE_KEY, self.window.saveState(LAYOUT_VERSION))
        settings.setValue(GEOMETRY_KEY, self.window.saveGeometry())

    def restore(self, settings: QSettings) -> bool:
        """The remembered window size and arrangement, when the settings hold one of this version."""
        geometry, state = settings.value(GEOMETRY_KEY), settings.value(STATE_KEY)
        if isinstance(geometry, QByteArray):
            self.window.restoreGeometry(geometry)
        return isinstance(state, QByteArray) and self.window.restoreState(state, LAYOUT_VERSION)

    def hide_stale_tab_bars(self) -> None:
        """Qt (6.11) leaves the tab bars of earlier tab groups on screen when docks are tabbed anew: hide every tab
        bar of the window that does not follow a tab group. Raising each tab of a group in turn tells: its own bar
        shows each one as current, a stale bar does not."""
        w = self.window
        bars = w.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
        current = [dock for dock in self.docks.values() if not dock.visibleRegion().isEmpty()]
        live: set[QTabBar] = set()
        for dock in self.docks.values():
            group = [dock, *w.tabifiedDockWidgets(dock)]
            if len(group) < 2 or dock.isHidden() or dock.isFloating():
                continue
            following = set(bars)
            for member in group:
                member.raise_()
                following &= {bar for bar in bars if bar.tabText(bar.currentIndex()) == member.windowTitle()}
            live |= following
        for bar in bars:
            bar.setVisible(bar in live)
        for dock in current:
            dock.raise_()

    def add_menu_entries(self, menu) -> None:
        """View > Panels (show or hide each dock) and View > Reset layout."""
        panels = menu.addMenu("Panels")
        for dock in self.docks.values():
            panels.addAction(dock.toggleViewAction())
        panels.addAction(self.run_bar.toggleViewAction())
        menu.addAction("Reset layout", self.arrange)
