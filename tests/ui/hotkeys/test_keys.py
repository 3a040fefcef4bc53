"""Sequence parsing and the per-platform mapping tables (pure functions, any platform)."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QKeySequence

from hivetray.ui.hotkeys import keys
from hivetray.ui.hotkeys.keys import HotkeyError, normalize, parse


@pytest.mark.parametrize(("text", "canonical"), [
    ("Ctrl+Alt+Space", "Ctrl+Alt+Space"),
    ("ctrl+alt+space", "Ctrl+Alt+Space"),
    ("Alt + Control + SPACE", "Ctrl+Alt+Space"),
    ("Shift+Meta+K", "Meta+Shift+K"),
    ("Super+Shift+k", "Meta+Shift+K"),
    ("Ctrl+Alt+F12", "Ctrl+Alt+F12"),
    ("F9", "F9"),
    ("Shift+F35", "Shift+F35"),
    ("Pause", "Pause"),
    ("Ctrl+Escape", "Ctrl+Esc"),
    ("Ctrl+Page Down", "Ctrl+PgDown"),
    ("Ctrl+Delete", "Ctrl+Del"),
    ("Ctrl+Alt+,", "Ctrl+Alt+,"),
    ("Ctrl+Alt+\\", "Ctrl+Alt+\\"),
])
def test_normalize(text: str, canonical: str) -> None:
    assert normalize(text) == canonical


@pytest.mark.parametrize("text", ["Ctrl+Alt+Space", "Meta+Shift+K", "Ctrl+Alt+F12", "Ctrl+PgUp",
                                  "Meta+Ctrl+Alt+Shift+Del", "Ctrl+Alt+`", "Alt+Return",
                                  "Ctrl+Enter", "Ctrl+Ins", "Ctrl+Print", "Meta+/"])
def test_canonical_text_is_qt_portable_text(qapp: object, text: str) -> None:
    """What QKeySequenceEdit writes into the config parses back to the same text."""
    portable = QKeySequence(text).toString(QKeySequence.SequenceFormat.PortableText)
    assert normalize(portable) == portable == text


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("   ", "empty"),
    ("Ctrl+Alt+Space, Ctrl+A", "several key presses"),
    ("Ctrl++", "'+' cannot be the key"),
    ("Ctrl++Alt", "empty part"),
    ("Hyper+A", "'Hyper' is not a modifier"),
    ("Ctrl+Ctrl+A", "names Ctrl twice"),
    ("Ctrl+Alt", "no key after the modifiers"),
    ("Ctrl+Alt+Banana", "'Banana' is not a key"),
    ("Ctrl+Alt+é", "'é' is not a key"),
    ("Space", "take Space away from every other program"),
    ("Shift+A", "add Ctrl, Alt or Meta"),
])
def test_bad_sequences_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(HotkeyError) as caught:
        parse(text)
    assert says in str(caught.value)


def test_every_key_has_distinct_codes_per_layer() -> None:
    specs = list(keys.KEYS.values())
    assert len(specs) == 26 + 10 + 35 + 29
    assert len({s.x11_keysym for s in specs}) == len(specs)
    assert len({s.xkb_name for s in specs}) == len(specs)
    mac = [s.mac_keycode for s in specs if s.mac_keycode is not None]
    assert len(set(mac)) == len(mac)
    vks = [s.windows_vk for s in specs if s.windows_vk is not None and s.name != "Enter"]
    assert len(set(vks)) == len(vks)  # Enter shares VK_RETURN with Return, on purpose


@pytest.mark.parametrize(("text", "keysym", "mask"), [
    ("Ctrl+Alt+Space", 0x20, 0x4 | 0x8),
    ("Meta+Shift+K", ord("k"), 0x40 | 0x1),
    ("Ctrl+Alt+F12", 0xFFC9, 0xC),
    ("F1", 0xFFBE, 0),
    ("Ctrl+Alt+F35", 0xFFE0, 0xC),
    ("Alt+Return", 0xFF0D, 0x8),
    ("Ctrl+Enter", 0xFF8D, 0x4),
    ("Ctrl+Esc", 0xFF1B, 0x4),
    ("Ctrl+Del", 0xFFFF, 0x4),
    ("Ctrl+PgDown", 0xFF56, 0x4),
    ("Ctrl+Alt+`", 0x60, 0xC),
    ("Ctrl+Alt+7", 0x37, 0xC),
])
def test_x11(text: str, keysym: int, mask: int) -> None:
    assert keys.x11_grab(parse(text)) == (keysym, mask)


def test_x11_lock_variants() -> None:
    assert keys.x11_lock_variants(0xC) == [0xC, 0xE, 0x1C, 0x1E]
    assert keys.x11_lock_variants(0xC, numlock_mask=0x80) == [0xC, 0xE, 0x8C, 0x8E]


@pytest.mark.parametrize(("text", "flags", "vk"), [
    ("Ctrl+Alt+Space", 0x4000 | 0x2 | 0x1, 0x20),
    ("Meta+Shift+K", 0x4000 | 0x8 | 0x4, 0x4B),
    ("Ctrl+Alt+F12", 0x4003, 0x7B),
    ("Ctrl+Alt+F24", 0x4003, 0x87),
    ("Ctrl+Alt+7", 0x4003, 0x37),
    ("Ctrl+PgUp", 0x4002, 0x21),
    ("Ctrl+Alt+`", 0x4003, 0xC0),
    ("Ctrl+Alt+/", 0x4003, 0xBF),
    ("Pause", 0x4000, 0x13),
])
def test_windows(text: str, flags: int, vk: int) -> None:
    assert keys.windows_hotkey(parse(text)) == (flags, vk)


def test_windows_has_no_f25() -> None:
    with pytest.raises(HotkeyError, match="no Windows key code"):
        keys.windows_hotkey(parse("Ctrl+F25"))


@pytest.mark.parametrize(("text", "code", "mask", "label"), [
    # Qt on macOS: Ctrl is Command (cmdKey 0x100), Meta is Control (controlKey 0x1000)
    ("Ctrl+Alt+Space", 0x31, 0x100 | 0x800, "⌥⌘Space"),
    ("Meta+Shift+K", 0x28, 0x1000 | 0x200, "⌃⇧K"),
    ("Ctrl+Alt+F12", 0x6F, 0x900, "⌥⌘F12"),
    ("Ctrl+A", 0x00, 0x100, "⌘A"),
    ("Ctrl+Alt+5", 0x17, 0x900, "⌥⌘5"),
    ("Ctrl+Del", 0x75, 0x100, "⌘Del"),
    ("Ctrl+Backspace", 0x33, 0x100, "⌘Backspace"),
    ("Ctrl+Enter", 0x4C, 0x100, "⌘Enter"),
    ("Ctrl+Left", 0x7B, 0x100, "⌘Left"),
])
def test_macos(text: str, code: int, mask: int, label: str) -> None:
    chord = parse(text)
    assert keys.mac_hotkey(chord) == (code, mask)
    assert keys.mac_label(chord) == label


@pytest.mark.parametrize("text", ["Ctrl+Ins", "Ctrl+Print", "Pause", "Ctrl+F21"])
def test_macos_lacks_some_keys(text: str) -> None:
    with pytest.raises(HotkeyError, match="Macs have no"):
        keys.mac_hotkey(parse(text))


@pytest.mark.parametrize(("text", "trigger"), [
    ("Ctrl+Alt+Space", "CTRL+ALT+space"),
    ("Meta+Shift+K", "SHIFT+LOGO+k"),
    ("Ctrl+Alt+F12", "CTRL+ALT+F12"),
    ("Ctrl+PgDown", "CTRL+Next"),
    ("Ctrl+Alt+`", "CTRL+ALT+grave"),
    ("Alt+Return", "ALT+Return"),
    ("Ctrl+Esc", "CTRL+Escape"),
])
def test_portal_trigger(text: str, trigger: str) -> None:
    assert keys.portal_trigger(parse(text)) == trigger


def test_xkb_names_are_identifiers() -> None:
    """The shortcuts spec: identifiers contain only letters, digits and underscores."""
    for spec in keys.KEYS.values():
        assert spec.xkb_name.replace("_", "").isalnum(), spec
