"""One wording per error, rendered for each surface: the command line, and windows.

Why: an error is read in two places. On a terminal the next step is a command to type
("hivetray retry chat"); in a window it is a button or menu item to use ("press Retry"), and a
command in backticks there is noise. So an error is described once, as a :class:`Wording`: its
*problem* in words ("no model is set for the chat role") and its next step as a typed
:class:`Remedy` (``SET_MODEL`` for the chat role, ``RETRY``, ``FREE_MEMORY``…). Each surface
renders the remedy its own way — :func:`cli_hint` for the CLI (the error's ``str()``, which
stays word for word what the CLI always printed), :func:`window_hint` for windows, and
:func:`button_for` for the button that *is* the remedy where a banner has one.

Qt-free and free of Hivetray imports, so the errors, the pool, the CLI and the UI all use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Fix(StrEnum):
    """The kinds of next step an error can name (``Remedy.fix``)."""

    #: the role has no model: choose a file or download one
    SET_MODEL = "set_model"
    #: fix the cause, then retry the role (its load error is kept until then)
    RETRY = "retry"
    #: the breaker is open: it retries by itself, or now on request
    RETRY_NOW = "retry_now"
    #: the worker would not fit in memory: stop another role or lower the context, then retry
    FREE_MEMORY = "free_memory"
    #: the model file is gone (moved or deleted): choose it again
    RELOCATE_FILE = "relocate_file"
    #: the vision role needs its projector (mmproj) file
    SET_PROJECTOR = "set_projector"
    #: a projector was given as a role's model: it goes in the vision role's projector field
    MODEL_IS_PROJECTOR = "model_is_projector"
    #: the rerank role needs a reranker model
    PICK_RERANKER = "pick_reranker"
    #: the prompt does not fit the role's context
    RAISE_CONTEXT = "raise_context"
    #: another instance owns this home: use that one (or quit it)
    USE_RUNNING_INSTANCE = "use_running_instance"
    #: a bug in Hivetray: report it with the app log
    REPORT_BUG = "report_bug"
    #: the download could not reach the hub: no network
    CHECK_NETWORK = "check_network"
    #: the proxy named by ``setting`` (HTTPS_PROXY, HTTP_PROXY...) is set and fails
    CHECK_PROXY = "check_proxy"
    #: the mirror in HF_ENDPOINT cannot be reached
    CHECK_MIRROR = "check_mirror"
    #: HF_HUB_OFFLINE is set: huggingface_hub refuses to go online
    HUB_OFFLINE_MODE = "hub_offline_mode"
    #: the file or repository is not on the hub (404): pick another model
    NOT_ON_HUB = "not_on_hub"
    #: the hub refused access (401/403): a gated or private model
    HUB_ACCESS = "hub_access"
    #: the hub failed or did not answer in time: try again later (it resumes)
    TRY_LATER = "try_later"
    #: the disk holding ``path`` is full
    FREE_DISK = "free_disk"
    #: ``path`` cannot be written (permission denied, read-only)
    FIX_PERMISSIONS = "fix_permissions"
    #: an interrupted download: start it again and it resumes
    RESUME_DOWNLOAD = "resume_download"
    #: the download was damaged and deleted: download it again
    DOWNLOAD_AGAIN = "download_again"


@dataclass(frozen=True)
class Remedy:
    """A next step, with what it is about; rendered by :func:`cli_hint` / :func:`window_hint`."""

    fix: Fix
    role: str | None = None
    #: a file or folder the step is about (FREE_DISK, FIX_PERMISSIONS)
    path: str | None = None
    #: an environment variable the step is about (CHECK_PROXY: "HTTPS_PROXY")
    setting: str | None = None
    #: FREE_MEMORY: other roles to stop, biggest first, with their size ("vision (2.0 GiB)")
    stop: tuple[str, ...] = ()
    #: FREE_MEMORY: the role's context size (0: the model's own)
    n_ctx: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A plain-JSON form for the wire (an error's ``fields["remedy"]``)."""
        out: dict[str, Any] = {"fix": str(self.fix)}
        for name in ("role", "path", "setting"):
            if (value := getattr(self, name)) is not None:
                out[name] = value
        if self.stop:
            out["stop"] = list(self.stop)
        if self.n_ctx:
            out["n_ctx"] = self.n_ctx
        return out

    @classmethod
    def from_dict(cls, raw: object) -> Remedy | None:
        """Back from :meth:`to_dict`; None for anything else (an older or foreign peer)."""
        if not isinstance(raw, dict):
            return None
        try:
            fix = Fix(str(raw.get("fix")))
        except ValueError:
            return None

        def text(name: str) -> str | None:
            value = raw.get(name)
            return value if isinstance(value, str) else None

        stop = raw.get("stop")
        n_ctx = raw.get("n_ctx")
        return cls(fix, text("role"), text("path"), text("setting"),
                   tuple(str(s) for s in stop) if isinstance(stop, list) else (),
                   n_ctx if isinstance(n_ctx, int) else 0)


def _then(cli: bool) -> str:
    return "run the same command again" if cli else "press Download again"


def _and_then(cli: bool) -> str:
    """After a setting changed: the CLI runs the command again; a window says the variable must
    be set before Hivetray starts (it cannot change its own environment), then Download."""
    return " and run the same command again" if cli else \
        " before starting Hivetray, then press Download again"


def _memory_hint(remedy: Remedy, cli: bool) -> str:
    role = remedy.role or "the role"
    stop = " or ".join(remedy.stop)
    if cli:
        first = f"stop {stop}" if stop else "close other programs"
        context = f"lower n_ctx ({remedy.n_ctx})" if remedy.n_ctx else "set a smaller n_ctx"
        return f"; {first} or {context} in Settings, then: hivetray retry {role}"
    first = f"stop {stop} in the status window" if stop else "close other programs"
    context = (f"lower its Context size ({remedy.n_ctx})" if remedy.n_ctx
               else "set a smaller Context size")
    return f"; {first} or {context} in Settings, then press Retry"


def _download_hint(remedy: Remedy, cli: bool) -> str:
    """Download remedies: the CLI says to run the command again, a window to press Download."""
    fix, where = remedy.fix, remedy.path or "that folder"
    setting = remedy.setting or "the proxy variable"
    hints = {
        Fix.CHECK_NETWORK: f": connect to the network and {_then(cli)} (where huggingface.co "
                           "is blocked, set HF_ENDPOINT to a mirror's address"
                           f"{'' if cli else ' before starting Hivetray'})",
        Fix.CHECK_PROXY: f": check {setting}, or unset it,{_and_then(cli)}",
        Fix.CHECK_MIRROR: ": check the address in HF_ENDPOINT, or unset it to use "
                          f"huggingface.co,{_and_then(cli)}",
        Fix.HUB_OFFLINE_MODE: f": unset HF_HUB_OFFLINE{_and_then(cli)}",
        Fix.NOT_ON_HUB: (": pick another model (`hivetray models catalog`), or give REPO FILE"
                         if cli else ": pick another model in the list"),
        Fix.HUB_ACCESS: ": accept the model's terms on huggingface.co and set HF_TOKEN"
                        f"{_and_then(cli)} (or pick another model)",
        Fix.TRY_LATER: f": {_then(cli)} later (it resumes)",
        Fix.FREE_DISK: f": free some space in {where} and {_then(cli)} to resume",
        Fix.FIX_PERMISSIONS: f": make {where} writable for your user and {_then(cli)}",
        Fix.RESUME_DOWNLOAD: f"; {_then(cli)} to resume",
        Fix.DOWNLOAD_AGAIN: ": download it again" if cli else ": press Download to fetch it again",
    }
    return hints[fix]


_DOWNLOAD_FIXES = frozenset({Fix.CHECK_NETWORK, Fix.CHECK_PROXY, Fix.CHECK_MIRROR,
                             Fix.HUB_OFFLINE_MODE, Fix.NOT_ON_HUB, Fix.HUB_ACCESS, Fix.TRY_LATER,
                             Fix.FREE_DISK, Fix.FIX_PERMISSIONS, Fix.RESUME_DOWNLOAD,
                             Fix.DOWNLOAD_AGAIN})


def cli_hint(remedy: Remedy | None) -> str:
    """The remedy as the CLI has always said it, leading punctuation included ("" for None):
    appended to the problem it makes the error's ``str()``."""
    if remedy is None:
        return ""
    role = remedy.role or "ROLE"
    match remedy.fix:
        case Fix.SET_MODEL:
            return f": set one with `hivetray models set {role} FILE.gguf` or in Settings"
        case Fix.RETRY:
            return f" (after fixing it: hivetray retry {role})"
        case Fix.RETRY_NOW:
            return f" (or now: hivetray retry {role})"
        case Fix.FREE_MEMORY:
            return _memory_hint(remedy, cli=True)
        case Fix.RELOCATE_FILE:
            return " (moved or deleted? set it again with `hivetray models set`)"
        case Fix.SET_PROJECTOR:
            return ": set both with `hivetray models set vision MODEL.gguf --mmproj MMPROJ.gguf`"
        case Fix.MODEL_IS_PROJECTOR:
            return ": set it as the vision role's --mmproj and pick a model file"
        case Fix.PICK_RERANKER:
            return " (`hivetray models catalog`)"
        case Fix.RAISE_CONTEXT:
            return ": shorten the conversation or raise n_ctx for this role in Settings"
        case Fix.USE_RUNNING_INSTANCE:
            return "; talk to it with `hivetray status`, or stop it with `hivetray quit`"
        case Fix.REPORT_BUG:
            return "; please report it with the app log (`hivetray logs`)"
    return _download_hint(remedy, cli=True)


def window_hint(remedy: Remedy | None) -> str:
    """The same remedy for a window: the button or menu item to use, never a command."""
    if remedy is None:
        return ""
    tab = (remedy.role or "").capitalize()
    match remedy.fix:
        case Fix.SET_MODEL:
            where = f"Settings → {tab}" if tab else "Settings"
            return f": choose a model file (Browse…) or press Download in {where}"
        case Fix.RETRY:
            return " (after fixing it, press Retry)"
        case Fix.RETRY_NOW:
            return " (or press Retry to try now)"
        case Fix.FREE_MEMORY:
            return _memory_hint(remedy, cli=False)
        case Fix.RELOCATE_FILE:
            return " (moved or deleted? choose it again in Settings)"
        case Fix.SET_PROJECTOR:
            return ": choose it in Settings → Vision → Projector (mmproj)"
        case Fix.MODEL_IS_PROJECTOR:
            return (": choose it as the Projector (mmproj) in Settings → Vision, and pick a "
                    "model file")
        case Fix.PICK_RERANKER:
            return " (Settings → Rerank → Download offers one)"
        case Fix.RAISE_CONTEXT:
            return ": start a New chat, or raise the Context size for this role in Settings"
        case Fix.USE_RUNNING_INSTANCE:
            return "; use its tray icon, or choose Quit Hivetray in its tray menu first"
        case Fix.REPORT_BUG:
            return "; please report it with the app log (logs/hivetray.log in Hivetray's data " \
                "folder)"
    return _download_hint(remedy, cli=False)


class Act(StrEnum):
    """What a remedy's button does."""

    RETRY = "retry"
    OPEN_SETTINGS = "open_settings"
    DOWNLOAD = "download"
    #: the welcome window: where a person with no model at all gets their first one
    OPEN_WELCOME = "open_welcome"


@dataclass(frozen=True)
class Button:
    """The button that carries out a remedy in a window: its label, what it does, for which
    role (None: Settings in general)."""

    label: str
    act: Act
    role: str | None = None


#: remedies the button says completely: beside that button, the text names only the problem
_BUTTON_SAYS_IT_ALL = frozenset({Fix.SET_MODEL, Fix.RETRY, Fix.RETRY_NOW})


def button_for(remedy: Remedy | None) -> Button | None:
    """The button that is this remedy (None where no button can do it, e.g. connect to the
    network)."""
    if remedy is None:
        return None
    match remedy.fix:
        case Fix.SET_MODEL:
            return Button("Set one…", Act.OPEN_SETTINGS, remedy.role)
        case Fix.RETRY | Fix.FREE_MEMORY:
            return Button("Retry", Act.RETRY, remedy.role)
        case Fix.RETRY_NOW:
            return Button("Retry now", Act.RETRY, remedy.role)
        case Fix.SET_PROJECTOR | Fix.MODEL_IS_PROJECTOR:
            return Button("Open Settings…", Act.OPEN_SETTINGS, "vision")
        case Fix.RELOCATE_FILE | Fix.PICK_RERANKER:
            return Button("Open Settings…", Act.OPEN_SETTINGS, remedy.role)
    if remedy.fix in _DOWNLOAD_FIXES:
        return Button("Download", Act.DOWNLOAD, remedy.role)
    return None


def sentence(text: str) -> str:
    """A message as a window shows it: its first letter upper-case (the CLI writes them after
    'hivetray: ', lower-case)."""
    return text[:1].upper() + text[1:] if text[:1].islower() else text


@dataclass(frozen=True)
class Wording:
    """An error described once: the problem, and the next step as a type."""

    problem: str
    remedy: Remedy | None = None

    def for_cli(self) -> str:
        return self.problem + cli_hint(self.remedy)

    def for_window(self) -> str:
        """One paragraph for a window: the problem's first line (a crash's log tail stays in
        the log pane) and the remedy as the button or menu item to use."""
        return _plain(self.problem.split("\n", 1)[0]) + window_hint(self.remedy)

    def beside(self, button: Button | None) -> str:
        """The text next to ``button`` (from :func:`button_for`): where the button does all of
        the remedy, only the problem; else the whole window text."""
        if button is not None and self.remedy is not None and \
                self.remedy.fix in _BUTTON_SAYS_IT_ALL:
            return _plain(self.problem.split("\n", 1)[0])
        return self.for_window()

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem,
                "remedy": self.remedy.to_dict() if self.remedy else None}

    @classmethod
    def from_dict(cls, raw: object) -> Wording | None:
        if isinstance(raw, Wording):
            return raw
        if not isinstance(raw, dict) or not isinstance(raw.get("problem"), str):
            return None
        return cls(raw["problem"], Remedy.from_dict(raw.get("remedy")))

    @classmethod
    def from_cli_text(cls, text: str, remedy: Remedy | None) -> Wording:
        """Split an error's CLI text (as it crossed the wire) back into problem and remedy:
        the remedy's hint is at its end, exactly as :func:`cli_hint` rendered it."""
        hint = cli_hint(remedy)
        if remedy is not None and text.endswith(hint):
            return cls(text[:len(text) - len(hint)], remedy)
        return cls(text, None)


def _plain(text: str) -> str:
    """A problem with no typed remedy may still quote a command from elsewhere (a keyring
    tool): in a window it is quoted, not set in Markdown backticks."""
    if "`" not in text:
        return text
    parts = text.split("`")
    return "".join(f"“{part}”" if i % 2 else part for i, part in enumerate(parts))


class Worded(Protocol):
    """A pool event (``hivetray.pool.events.Event``) as the notifications see it."""

    @property
    def message(self) -> str: ...

    @property
    def wording(self) -> Wording | None: ...


def window_text(error: BaseException) -> str:
    """Any exception as a window shows it: its wording when it has one (every HivetrayError
    does), else its first line, else its type's name."""
    wording = getattr(error, "wording", None)
    if isinstance(wording, Wording):
        return wording.for_window()
    text = str(error).split("\n", 1)[0]
    return _plain(text) if text else type(error).__name__


#: a trailing "(… hivetray <command> …)" hint in an untyped message: the CLI's words
_COMMAND_HINT = re.compile(r"\s*\([^()]*`?hivetray [^()]*\)\s*$")


def window_line(event: Worded) -> str:
    """A pool event in one line, in a window's words: its wording for a window when it has one
    (a load error, the breaker opening), else its message's first line without a command-line
    hint (the tray menu and the status window carry the action)."""
    wording = event.wording
    if wording is not None:
        return wording.for_window()
    return _plain(_COMMAND_HINT.sub("", event.message.split("\n", 1)[0]))


def notification_text(event: Worded) -> str:
    """A desktop notification's text for a pool event: :func:`window_line`, as a sentence."""
    return sentence(window_line(event))
