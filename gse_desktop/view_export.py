"""A part of the window's graphics (one view with its colour bar, a plot, or a whole grid) as PNG or SVG bytes.

The region is what the user sees: the union of the items' scene rectangles, or for a whole grid the visible part
of its scene (a scene's own rectangle grows with every item it ever held, to metres). Both formats render the same
region with Qt (QSvgGenerator at 96 dpi, so the SVG's width and height are the widget's size in CSS pixels).
"""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsScene

SVG_DPI = 96  # CSS pixels per inch: width/height attributes in mm then equal the on-screen size


def region(items: list) -> tuple[QGraphicsScene, QRectF, QColor]:
    """(scene, scene rectangle, background colour) of a whole scene ([scene]) or of some of its items."""
    first = items[0]
    scene = first if isinstance(first, QGraphicsScene) else first.scene()
    view = scene.views()[0]
    if first is scene:
        rect = view.mapToScene(view.viewport().rect()).boundingRect()
    else:
        rect = QRectF()
        for item in items:
            rect = rect.united(item.sceneBoundingRect())
    return scene, rect, view.backgroundBrush().color()


def png_bytes(items: list, width: int | None = None) -> bytes:
    """The region as a PNG `width` pixels wide (height by aspect; its own size without `width`)."""
    scene, rect, background = region(items)
    width = int(width or round(rect.width()))
    height = max(1, round(width * rect.height() / max(rect.width(), 1e-9)))
    image = QImage(width, height, QImage.Format.Format_ARGB32)
    image.fill(background)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    scene.render(painter, QRectF(0, 0, width, height), rect, Qt.AspectRatioMode.IgnoreAspectRatio)
    painter.end()
    buffer = QBuffer()
    buffer.open(QBuffer.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("could not encode the view as PNG")
    return bytes(buffer.data())


def svg_bytes(items: list) -> bytes:
    """The region as SVG, its page the region's size."""
    scene, rect, _ = region(items)
    buffer = QBuffer()
    buffer.open(QBuffer.OpenModeFlag.WriteOnly)
    generator = QSvgGenerator()
    generator.setOutputDevice(buffer)
    generator.setResolution(SVG_DPI)
    generator.setSize(QSize(round(rect.width()), round(rect.height())))
    generator.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    painter = QPainter(generator)
    scene.render(painter, QRectF(0, 0, rect.width(), rect.height()), rect)
    painter.end()
    return bytes(buffer.data())
