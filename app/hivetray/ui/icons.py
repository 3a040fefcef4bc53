"""The tray and app icons, drawn from SVG so they stay sharp at any scale.

The hive glyph follows the palette (dark glyph on light panels, light on dark), and a badge in
the corner says overall health: none when all is fine, amber while something starts or stops,
red when a role is cooling down or in error.
"""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer


class Health(StrEnum):
    OK = "ok"
    BUSY = "busy"
    TROUBLE = "trouble"


BADGE_COLOURS = {Health.BUSY: "#f0a30a", Health.TROUBLE: "#e5484d"}

_HIVE = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">
<g fill="none" stroke="{fg}" stroke-width="5" stroke-linejoin="round">
<path d="M32 6 L54 19 L54 45 L32 58 L10 45 L10 19 Z"/>
<path d="M10 32 H54 M20 19 H44 M20 45 H44"/>
</g>{badge}</svg>"""
_BADGE = '<circle cx="50" cy="50" r="13" fill="{colour}" stroke="{ring}" stroke-width="3"/>'


def svg_for(health: Health, *, dark: bool) -> str:
    fg = "#f2f2f2" if dark else "#262626"
    ring = "#1e1e1e" if dark else "#ffffff"
    badge = _BADGE.format(colour=BADGE_COLOURS[health], ring=ring) if health in BADGE_COLOURS \
        else ""
    return _HIVE.format(fg=fg, badge=badge)


def _render(svg: str, size: int) -> QPixmap:
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return QPixmap.fromImage(image)


def prefers_dark() -> bool:
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication):
        scheme = app.styleHints().colorScheme()
        if scheme == Qt.ColorScheme.Dark:
            return True
        if scheme == Qt.ColorScheme.Light:
            return False
        return app.palette().window().color().lightness() < 128
    return False


_cache: dict[tuple[Health, bool], QIcon] = {}


def health_icon(health: Health, dark: bool | None = None) -> QIcon:
    """A multi-size icon (16…256 px, HiDPI-ready) for ``health``; cached."""
    is_dark = prefers_dark() if dark is None else dark
    key = (health, is_dark)
    if key not in _cache:
        icon = QIcon()
        svg = svg_for(health, dark=is_dark)
        for size in (16, 22, 32, 48, 64):
            icon.addPixmap(_render(svg, size))
        _cache[key] = icon
    return _cache[key]
