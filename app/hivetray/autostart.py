"""Start at login, per platform: XDG autostart on Linux, the Run key on Windows, a LaunchAgent
on macOS. Qt-free so it can be tested without a display."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

APP_ID = "hivetray"


def launch_command() -> list[str]:
    """How to start this Hivetray: the frozen executable, or this Python with ``-m``.

    Packaged builds: an AppImage is started through its file (``$APPIMAGE``), not through the
    extracted copy in the cache, which an update or a cache clean-up removes; on Windows the
    windowed ``hivetrayw.exe`` beside the console ``hivetray.exe``, so no console opens at login.
    """
    if getattr(sys, "frozen", False):
        appimage = os.environ.get("APPIMAGE")
        if appimage and os.path.isfile(appimage):
            return [appimage]
        windowed = Path(sys.executable).with_name("hivetrayw.exe")
        if sys.platform == "win32" and windowed.is_file():
            return [str(windowed)]
        return [sys.executable]
    return [sys.executable, "-m", "hivetray"]


def xdg_autostart_file() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "autostart" / f"{APP_ID}.desktop"


def macos_agent_file() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / "org.hivetray.Hivetray.plist"


def desktop_entry(command: list[str]) -> str:
    return ("[Desktop Entry]\nType=Application\nName=Hivetray\n"
            "Comment=Keep local AI models ready in the tray\n"
            f"Exec={shlex.join(command)}\nIcon=hivetray\nTerminal=false\n"
            "X-GNOME-Autostart-enabled=true\n")


def launch_agent(command: list[str]) -> str:
    args = "".join(f"<string>{part}</string>" for part in command)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC '
            '"-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
            '<plist version="1.0"><dict><key>Label</key><string>org.hivetray.Hivetray</string>'
            f'<key>ProgramArguments</key><array>{args}</array>'
            '<key>RunAtLoad</key><true/></dict></plist>\n')


def is_enabled() -> bool:
    if sys.platform == "win32":
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, _RUN_KEY) as key:
                winreg.QueryValueEx(key, "Hivetray")
            return True
        except OSError:
            return False
    path = macos_agent_file() if sys.platform == "darwin" else xdg_autostart_file()
    return path.exists()


_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def set_enabled(enabled: bool) -> None:
    """Turn start-at-login on or off; raises OSError with the path when it cannot."""
    command = launch_command()
    if sys.platform == "win32":
        import subprocess
        import winreg

        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, _RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            if enabled:
                winreg.SetValueEx(key, "Hivetray", 0, winreg.REG_SZ,
                                  subprocess.list2cmdline(command))
            else:
                try:
                    winreg.DeleteValue(key, "Hivetray")
                except FileNotFoundError:
                    pass
        return
    if sys.platform == "darwin":
        path, text = macos_agent_file(), launch_agent(command)
    else:
        path, text = xdg_autostart_file(), desktop_entry(command)
    if enabled:
        from hivetray.config import write_atomic

        write_atomic(path, text)
    else:
        path.unlink(missing_ok=True)
