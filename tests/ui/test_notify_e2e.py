"""End to end on Xvfb + trayer (top right, its default place here): with no notification
service on the session, a notice is a window of the app's that stays on the screen, beside the
docked icon. The notice is the one a malformed config.toml gives at start-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers.waiting import wait_until
from tests.helpers.x11 import Win, XSession, pid_windows, window_tree
from tests.ui.test_tray_e2e import AppRun, launch, tray_x  # noqa: F401  (fixtures)

pytestmark = pytest.mark.real
SCREEN_W, SCREEN_H = 1280, 800  # tests.helpers.x11.start_xvfb's screen


def notice_windows(session: XSession, app: AppRun, icon: Win) -> list[Win]:
    """The app's mapped windows other than its tray icon (here: the notice)."""
    tree = window_tree(session)
    return [tree[w] for w in pid_windows(session, app.pid, visible=True)
            if w in tree and w != icon.wid and tree[w].w > 40 and tree[w].h > 20
            and (tree[w].x, tree[w].y) != (icon.x, icon.y)]


def test_the_notice_stays_on_the_screen_beside_the_tray_icon(
        tray_x: XSession, launch: Callable[[XSession], AppRun],  # noqa: F811
        home: Any) -> None:
    home.config_file.write_text('[roles.chat]\nmodel = "unterminated\n', encoding="utf-8")
    app = launch(tray_x)
    icon = app.wait_docked()
    shown = wait_until(lambda: notice_windows(tray_x, app, icon), 15,
                       what="a notice window of the app is mapped")
    notice = shown[0]
    assert notice.x >= 0 and notice.x + notice.w <= SCREEN_W, (notice, icon)
    assert notice.y >= 0 and notice.y + notice.h <= SCREEN_H, (notice, icon)
    assert notice.y >= icon.y + icon.h and notice.y - (icon.y + icon.h) <= 40, (notice, icon)
    assert notice.x <= icon.x + icon.w and icon.x <= notice.x + notice.w, (notice, icon)
    assert notice.name.startswith('"Hivetray notification"'), notice  # ours, not Qt's balloon
