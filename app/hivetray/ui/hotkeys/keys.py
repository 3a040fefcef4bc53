"""Hotkey sequences: parse the Qt-style text the config holds ("Ctrl+Alt+Space") and map it to
what each native layer needs (X11 keysyms and masks, Windows VK codes and MOD_* flags, macOS
Carbon key codes and modifier masks, XDG shortcut-spec trigger strings).

Pure functions and tables only, so every platform's mapping is tested on any platform. Names
follow Qt's portable text (``QKeySequence.PortableText``): the settings dialog's key editor and
the config file then agree, and on macOS "Ctrl" means Command and "Meta" means Control, as in Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

#: modifiers in Qt's portable-text order
MODIFIERS = ("Meta", "Ctrl", "Alt", "Shift")
_MODIFIER_ALIASES = {
    "meta": "Meta", "super": "Meta", "win": "Meta", "logo": "Meta",
    "ctrl": "Ctrl", "control": "Ctrl",
    "alt": "Alt",
    "shift": "Shift",
}


class HotkeyError(ValueError):
    """A sequence that cannot be a global hotkey; the message is meant for the user."""


@dataclass(frozen=True)
class KeySpec:
    """One key: its Qt name and its code in every layer (None: that layer has no such key)."""

    name: str
    x11_keysym: int
    xkb_name: str           # keysym name without XKB_KEY_, for portal triggers
    windows_vk: int | None
    mac_keycode: int | None

    @property
    def function_key(self) -> bool:
        return self.name.startswith("F") and self.name[1:].isdigit()


def _letters() -> list[KeySpec]:
    mac = dict(zip("ASDFHGZXCVBQWERYT", [*range(0x00, 0x0A), *range(0x0B, 0x12)], strict=True))
    mac.update({"O": 0x1F, "U": 0x20, "I": 0x22, "P": 0x23, "L": 0x25, "J": 0x26, "K": 0x28,
                "N": 0x2D, "M": 0x2E})
    return [KeySpec(c, ord(c.lower()), c.lower(), ord(c), mac[c])
            for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]


def _digits() -> list[KeySpec]:
    mac = {"1": 0x12, "2": 0x13, "3": 0x14, "4": 0x15, "6": 0x16, "5": 0x17, "9": 0x19,
           "7": 0x1A, "8": 0x1C, "0": 0x1D}
    return [KeySpec(d, ord(d), d, ord(d), mac[d]) for d in "0123456789"]


_MAC_F = {1: 0x7A, 2: 0x78, 3: 0x63, 4: 0x76, 5: 0x60, 6: 0x61, 7: 0x62, 8: 0x64, 9: 0x65,
          10: 0x6D, 11: 0x67, 12: 0x6F, 13: 0x69, 14: 0x6B, 15: 0x71, 16: 0x6A, 17: 0x40,
          18: 0x4F, 19: 0x50, 20: 0x5A}


def _function_keys() -> list[KeySpec]:
    # X11 has F1..F35 (0xffbe..), Windows VK_F1..VK_F24 (0x70..), Carbon F1..F20
    return [KeySpec(f"F{n}", 0xFFBE + n - 1, f"F{n}", 0x70 + n - 1 if n <= 24 else None,
                    _MAC_F.get(n)) for n in range(1, 36)]


# Qt name, X11 keysym, xkb name, Windows VK, Carbon key code. Punctuation VKs and Carbon codes
# are the US-layout key positions (VK_OEM_*, kVK_ANSI_*): other layouts may put them elsewhere.
_NAMED: list[tuple[str, int, str, int | None, int | None]] = [
    ("Space", 0x0020, "space", 0x20, 0x31),
    ("Return", 0xFF0D, "Return", 0x0D, 0x24),
    ("Enter", 0xFF8D, "KP_Enter", 0x0D, 0x4C),  # keypad Enter; Windows has one VK for both
    ("Tab", 0xFF09, "Tab", 0x09, 0x30),
    ("Esc", 0xFF1B, "Escape", 0x1B, 0x35),
    ("Backspace", 0xFF08, "BackSpace", 0x08, 0x33),
    ("Ins", 0xFF63, "Insert", 0x2D, None),  # Macs have no Insert key
    ("Del", 0xFFFF, "Delete", 0x2E, 0x75),
    ("Home", 0xFF50, "Home", 0x24, 0x73),
    ("End", 0xFF57, "End", 0x23, 0x77),
    ("PgUp", 0xFF55, "Prior", 0x21, 0x74),
    ("PgDown", 0xFF56, "Next", 0x22, 0x79),
    ("Left", 0xFF51, "Left", 0x25, 0x7B),
    ("Up", 0xFF52, "Up", 0x26, 0x7E),
    ("Right", 0xFF53, "Right", 0x27, 0x7C),
    ("Down", 0xFF54, "Down", 0x28, 0x7D),
    ("Print", 0xFF61, "Print", 0x2C, None),
    ("Pause", 0xFF13, "Pause", 0x13, None),
    ("`", 0x60, "grave", 0xC0, 0x32),
    ("-", 0x2D, "minus", 0xBD, 0x1B),
    ("=", 0x3D, "equal", 0xBB, 0x18),
    ("[", 0x5B, "bracketleft", 0xDB, 0x21),
    ("]", 0x5D, "bracketright", 0xDD, 0x1E),
    ("\\", 0x5C, "backslash", 0xDC, 0x2A),
    (";", 0x3B, "semicolon", 0xBA, 0x29),
    ("'", 0x27, "apostrophe", 0xDE, 0x27),
    (",", 0x2C, "comma", 0xBC, 0x2B),
    (".", 0x2E, "period", 0xBE, 0x2F),
    ("/", 0x2F, "slash", 0xBF, 0x2C),
]

KEYS: dict[str, KeySpec] = {spec.name: spec for spec in [
    *_letters(), *_digits(), *_function_keys(), *(KeySpec(*row) for row in _NAMED)]}
_KEY_ALIASES = {name.lower(): name for name in KEYS} | {
    "escape": "Esc", "delete": "Del", "insert": "Ins", "pageup": "PgUp", "page up": "PgUp",
    "pagedown": "PgDown", "page down": "PgDown", "pgdn": "PgDown", "enter": "Enter",
    "return": "Return", "backtab": "Tab", "printscreen": "Print", "sysreq": "Print",
}
#: keys that may be grabbed without a modifier: grabbing a letter or Space alone would steal it
#: from every other program
_BARE_OK = {"Pause", "Print"}


@dataclass(frozen=True)
class Chord:
    """One key with its modifiers, e.g. Ctrl+Alt+Space."""

    modifiers: frozenset[str]
    key: KeySpec

    def __str__(self) -> str:
        return "+".join([*(m for m in MODIFIERS if m in self.modifiers), self.key.name])


def parse(sequence: str) -> Chord:
    """``"ctrl+alt+space"`` → ``Chord({"Ctrl", "Alt"}, Space)``; ``HotkeyError`` says what is
    wrong with anything that cannot be a global hotkey."""
    text = sequence.strip()
    if not text:
        raise HotkeyError("The shortcut is empty: press a key combination such as Ctrl+Alt+Space.")
    if "," in text.rstrip(",") and len(text) > 1:
        raise HotkeyError(f"{sequence!r} is several key presses in a row; a global shortcut is "
                          "one combination, e.g. Ctrl+Alt+Space.")
    if text.endswith("++") or text == "+":
        raise HotkeyError(f"{sequence!r}: '+' cannot be the key of a global shortcut; "
                          "use '=' (with Shift if you like).")
    parts = [p.strip() for p in text.split("+")]
    if any(not p for p in parts):
        raise HotkeyError(f"{sequence!r} has an empty part; write it like Ctrl+Alt+Space.")
    *mod_names, key_name = parts
    modifiers: set[str] = set()
    for name in mod_names:
        mod = _MODIFIER_ALIASES.get(name.lower())
        if mod is None:
            raise HotkeyError(f"{sequence!r}: {name!r} is not a modifier "
                              f"(use {', '.join(MODIFIERS)}).")
        if mod in modifiers:
            raise HotkeyError(f"{sequence!r} names {mod} twice.")
        modifiers.add(mod)
    if key_name.lower() in _MODIFIER_ALIASES:
        raise HotkeyError(f"{sequence!r} has no key after the modifiers; add one, "
                          "e.g. Ctrl+Alt+Space.")
    canonical = _KEY_ALIASES.get(key_name.lower())
    if canonical is None:
        raise HotkeyError(f"{sequence!r}: {key_name!r} is not a key Hivetray can grab "
                          "(letters, digits, F1–F35, Space, Return, Tab, Esc, arrows, "
                          "Home/End/PgUp/PgDown, Ins/Del, Print, Pause, ` - = [ ] \\ ; ' , . /).")
    spec = KEYS[canonical]
    if not (modifiers - {"Shift"}) and not spec.function_key and canonical not in _BARE_OK:
        raise HotkeyError(f"{sequence!r} would take {canonical} away from every other "
                          "program; add Ctrl, Alt or Meta.")
    return Chord(frozenset(modifiers), spec)


def normalize(sequence: str) -> str:
    """The canonical text of ``sequence`` (``"alt+CTRL+space"`` → ``"Ctrl+Alt+Space"``)."""
    return str(parse(sequence))


# -- X11 -------------------------------------------------------------------------------------------
X_SHIFT, X_LOCK, X_CONTROL, X_MOD1, X_MOD2, X_MOD4 = 1, 2, 4, 8, 16, 64
_X_MASKS = {"Shift": X_SHIFT, "Ctrl": X_CONTROL, "Alt": X_MOD1, "Meta": X_MOD4}


def x11_grab(chord: Chord) -> tuple[int, int]:
    """(keysym, modifier mask): Alt is Mod1 and Meta (Super) Mod4 on every common keymap."""
    mask = 0
    for mod in chord.modifiers:
        mask |= _X_MASKS[mod]
    return chord.key.x11_keysym, mask


def x11_lock_variants(mask: int, numlock_mask: int = X_MOD2) -> list[int]:
    """The grab must be repeated with Caps Lock and Num Lock on, or it fails while they are."""
    return [mask, mask | X_LOCK, mask | numlock_mask, mask | X_LOCK | numlock_mask]


# -- Windows ---------------------------------------------------------------------------------------
MOD_ALT, MOD_CONTROL, MOD_SHIFT, MOD_WIN, MOD_NOREPEAT = 0x1, 0x2, 0x4, 0x8, 0x4000
_WIN_MODS = {"Alt": MOD_ALT, "Ctrl": MOD_CONTROL, "Shift": MOD_SHIFT, "Meta": MOD_WIN}


def windows_hotkey(chord: Chord) -> tuple[int, int]:
    """(MOD_* flags including MOD_NOREPEAT, virtual-key code) for ``RegisterHotKey``."""
    if chord.key.windows_vk is None:
        raise HotkeyError(f"{chord.key.name} has no Windows key code; choose another key.")
    flags = MOD_NOREPEAT
    for mod in chord.modifiers:
        flags |= _WIN_MODS[mod]
    return flags, chord.key.windows_vk


# -- macOS -----------------------------------------------------------------------------------------
CMD_KEY, SHIFT_KEY, OPTION_KEY, CONTROL_KEY = 0x0100, 0x0200, 0x0800, 0x1000
# Qt's convention on macOS: Ctrl is Command, Meta is Control
_MAC_MODS = {"Ctrl": CMD_KEY, "Shift": SHIFT_KEY, "Alt": OPTION_KEY, "Meta": CONTROL_KEY}


def mac_hotkey(chord: Chord) -> tuple[int, int]:
    """(Carbon virtual key code, modifier mask) for ``RegisterEventHotKey``."""
    if chord.key.mac_keycode is None:
        raise HotkeyError(f"Macs have no {chord.key.name} key; choose another key.")
    mask = 0
    for mod in chord.modifiers:
        mask |= _MAC_MODS[mod]
    return chord.key.mac_keycode, mask


def mac_label(chord: Chord) -> str:
    """How a Mac user reads it: Ctrl+Alt+Space → ⌘⌥Space."""
    symbols = {"Meta": "⌃", "Alt": "⌥", "Shift": "⇧", "Ctrl": "⌘"}
    order = ("Meta", "Alt", "Shift", "Ctrl")  # Apple's order: ⌃⌥⇧⌘
    return "".join(symbols[m] for m in order if m in chord.modifiers) + chord.key.name


# -- XDG portal ------------------------------------------------------------------------------------
_PORTAL_MODS = {"Ctrl": "CTRL", "Alt": "ALT", "Shift": "SHIFT", "Meta": "LOGO"}
_PORTAL_ORDER = ("Ctrl", "Alt", "Shift", "Meta")


def portal_trigger(chord: Chord) -> str:
    """The shortcuts-spec trigger: XKB modifier names and keysym name, e.g. ``CTRL+ALT+space``."""
    mods = [_PORTAL_MODS[m] for m in _PORTAL_ORDER if m in chord.modifiers]
    return "+".join([*mods, chord.key.xkb_name])
