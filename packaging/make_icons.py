"""Write the app icon files in resources/ from the tray's own SVG (``svg_for(Health.OK)``).

    QT_QPA_PLATFORM=offscreen python packaging/make_icons.py

Why a script: the tray draws its icon from SVG in ``hivetray.ui.icons``; the desktop file, the
.deb, the AppImage, the Windows installer and the macOS bundle need the same picture as files.
Re-run it when the glyph changes; the outputs are committed (they are small).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT / "app"))
    from PySide6.QtCore import QByteArray, QRectF, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    from hivetray.ui.icons import Health, svg_for

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    svg = svg_for(Health.OK, dark=False)
    folder = ROOT / "resources" / "icons"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hivetray.svg").write_text(svg + "\n", encoding="utf-8")
    renderer = QSvgRenderer(QByteArray(svg.encode()))
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        out = folder / f"hivetray-{size}.png"
        if not image.save(str(out), "PNG"):
            print(f"could not write {out}", file=sys.stderr)
            return 1
        print(out.relative_to(ROOT))
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
