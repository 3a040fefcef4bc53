"""Quick-chat history: conversations and messages in SQLite (WAL) in the data folder.

Written as a message is sent, and again on every repaint of a streaming reply, so whatever the
user has seen is already committed: a crash of the app (or a worker) loses nothing shown. WAL
with ``synchronous=NORMAL`` makes each of those small commits cheap and durable across an app
crash.

Failures are sorted by what they mean for the user's words:

* real corruption (SQLite says ``SQLITE_CORRUPT`` / ``SQLITE_NOTADB``, or ``quick_check`` fails)
  is the only case where the file is moved aside (never deleted) and a new history started;
* a busy or locked database (another program holds it) is waited for (``busy_timeout``) and the
  open retried a few times;
* anything else (disk full, I/O error, no permission, read-only) leaves every file as it is: the
  history is then *unavailable* for this run (``available`` is False, reads are empty, writes
  raise :class:`HistoryUnavailable`) and ``notice`` says what happened and what to do, so the
  app keeps running instead of showing an empty history the user would take for a loss.

A write that fails later raises :class:`HistoryError` (never sqlite3's own errors), so a caller
that streams a reply can keep streaming and report it once. The files are private to the user
(database 0600 — SQLite gives ``-wal``/``-shm`` the same mode — in a 0700 folder), whatever the
umask, because they hold everything the user typed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hivetray.errors import HivetrayError
from hivetray.paths import ensure_private_dir

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    image BLOB,
    image_name TEXT,
    status TEXT NOT NULL DEFAULT 'complete',
    error TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"""

#: a reply still being written; after a crash it reads back as 'interrupted'
STREAMING = "streaming"

# SQLite primary result codes (the low byte of the extended code Python reports)
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26
_BUSY_CODES = frozenset({SQLITE_BUSY, SQLITE_LOCKED})
_CORRUPTION_CODES = frozenset({SQLITE_CORRUPT, SQLITE_NOTADB})
_NO_ACCESS_CODES = frozenset({SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN})
_NO_ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

#: opens the database file; ``timeout`` is SQLite's busy timeout in seconds
Connect = Callable[[Path, float], sqlite3.Connection]


class HistoryError(HivetrayError):
    """Reading or writing the chat history failed; what was stored before is untouched.

    Raised instead of sqlite3's own errors so that a caller (the chat session) can keep a reply
    streaming and tell the user once, rather than crash on a full disk or a locked file.
    """


class HistoryUnavailable(HistoryError):
    """The history could not be opened at start-up, so nothing is saved during this run."""


class _IntegrityCheckFailed(Exception):
    """``PRAGMA quick_check`` found damage: the one non-SQLite-error sign of corruption."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    updated: float


@dataclass(frozen=True)
class Message:
    id: int
    role: str
    content: str
    status: str
    image: bytes | None = None
    image_name: str | None = None
    error: str | None = None


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    # autocommit (isolation_level=None): each write commits on its own, or in an explicit BEGIN
    return sqlite3.connect(path, timeout=timeout, isolation_level=None)


class History:
    """The quick-chat history; see the module docstring for how failures are handled.

    Opening waits up to ``busy_timeout_s`` for a lock, ``open_attempts`` times, ``retry_delay_s``
    apart (at most ~4 s by default, once, at start-up). Later writes wait only
    ``write_busy_timeout_s``: they run on the UI thread for every streamed chunk, and a write
    that gave up is caught up by the next one (each stores the whole reply so far), so a long
    wait would only freeze the window. ``sleep`` and ``connect`` let tests drive a locked or
    failing database without waiting on the wall clock.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 1.0, open_attempts: int = 3,
                 retry_delay_s: float = 0.5, write_busy_timeout_s: float = 0.25,
                 sleep: Callable[[float], None] = time.sleep,
                 connect: Connect = _connect) -> None:
        self.path = path
        self.notice: str | None = None
        self._busy_timeout_s = busy_timeout_s
        self._write_busy_timeout_s = write_busy_timeout_s
        self._open_attempts = max(1, open_attempts)
        self._retry_delay_s = retry_delay_s
        self._sleep = sleep
        self._connect_file = connect
        self.db: sqlite3.Connection | None = self._open()

    @property
    def available(self) -> bool:
        """False when the history could not be opened: reads are empty, writes raise."""
        return self.db is not None

    # -- opening ------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection | None:
        try:
            return self._open_with_retries()
        except (sqlite3.Error, _IntegrityCheckFailed, OSError) as exc:
            if _is_corruption(exc):
                return self._start_afresh(exc)
            self._unavailable(exc)
            return None

    def _open_with_retries(self) -> sqlite3.Connection:
        attempt = 1
        while True:
            try:
                self._prepare_files()
                return self._connect()
            except sqlite3.Error as exc:
                if _sqlite_code(exc) not in _BUSY_CODES or attempt >= self._open_attempts:
                    raise
                log.info("the chat history %s is locked by another program; trying again (%d/%d)",
                         self.path, attempt, self._open_attempts)
                attempt += 1
                self._sleep(self._retry_delay_s)

    def _start_afresh(self, exc: BaseException) -> sqlite3.Connection | None:
        """Keep the damaged files under a new name and start an empty history next to them."""
        backup = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(str(self.path) + suffix)
                if part.exists():
                    part.replace(Path(str(backup) + suffix))
        except OSError as move_error:
            self._unavailable(move_error, f"is damaged ({_reason(exc)}) and could not be moved "
                                          "aside")
            return None
        log.warning("the chat history %s is damaged (%s); kept as %s", self.path, _reason(exc),
                    backup)
        try:
            db = self._open_with_retries()
        except (sqlite3.Error, _IntegrityCheckFailed, OSError) as again:
            self._unavailable(again)
            return None
        self.notice = (f"The chat history could not be read ({_reason(exc)}); it was kept as "
                       f"{backup} and a new history was started.")
        return db

    def _unavailable(self, exc: BaseException, what: str = "could not be opened") -> None:
        advice = _advice(exc, self.path)
        self.notice = (f"The chat history {self.path} {what} ({_reason(exc)}); nothing was "
                       f"moved or deleted, but chats are not saved for now: {advice}, then "
                       "restart Hivetray.")
        log.warning("%s", self.notice)

    def _prepare_files(self) -> None:
        """Create the folder (0700) and the database file (0600) before SQLite opens it.

        SQLite creates files with the process umask (often 0644) and gives ``-wal``/``-shm``
        the main file's mode, so the main file is made private first; files and folder left
        readable by an older version are tightened too.
        """
        ensure_private_dir(self.path.parent)
        _remove_others_access(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for suffix in ("", "-wal", "-shm"):
                _remove_others_access(Path(str(self.path) + suffix))
        else:
            os.close(fd)
            if os.name == "posix":
                os.chmod(self.path, 0o600)  # whatever the umask took away

    def _connect(self) -> sqlite3.Connection:
        db = self._connect_file(self.path, self._busy_timeout_s)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            check = db.execute("PRAGMA quick_check").fetchall()
            if [tuple(row) for row in check] != [("ok",)]:
                first_problem = check[0][0] if check else "no answer"
                raise _IntegrityCheckFailed(f"integrity check failed: {first_problem}")
            db.executescript(SCHEMA)
            # replies that were streaming when the app died are kept, marked as interrupted;
            # looked for first, so that opening takes no write lock when there are none
            # (another program writing to the file then does not keep the history closed)
            if db.execute("SELECT 1 FROM messages WHERE status=? LIMIT 1",
                          (STREAMING,)).fetchone():
                db.execute("UPDATE messages SET status='interrupted' WHERE status=?",
                           (STREAMING,))
            db.execute(f"PRAGMA busy_timeout={int(self._write_busy_timeout_s * 1000)}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    @contextlib.contextmanager
    def _using(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, with SQLite errors turned into one-line :class:`HistoryError`."""
        if self.db is None:
            raise HistoryUnavailable(self.notice or f"The chat history {self.path} is closed.")
        try:
            yield self.db
        except sqlite3.Error as exc:
            message = (f"The chat history {self.path} could not be {doing} ({_reason(exc)}); "
                       f"what is on screen is kept: {_advice(exc, self.path)}.")
            raise HistoryError(message) from exc  # logged by the caller, once, not per chunk

    # -- conversations --------------------------------------------------------------------------
    def new_conversation(self, title: str = "New chat") -> int:
        now = time.time()
        with self._using("saved") as db:
            cur = db.execute("INSERT INTO conversations (title, created, updated) VALUES (?,?,?)",
                             (title, now, now))
        return int(cur.lastrowid or 0)

    def conversations(self, limit: int = 200) -> list[Conversation]:
        if self.db is None:
            return []
        with self._using("read") as db:
            rows = db.execute("SELECT id, title, updated FROM conversations "
                              "ORDER BY updated DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [Conversation(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        with self._using("saved") as db:
            db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        with self._using("saved") as db:
            db.execute("DELETE FROM conversations WHERE id=?", (conversation_id,))

    # -- messages ---------------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, *,
                    status: str = "complete", image: bytes | None = None,
                    image_name: str | None = None) -> int:
        now = time.time()
        with self._using("saved") as db:
            # one transaction: the message and the conversation's timestamp. IMMEDIATE takes the
            # write lock up front, so a busy database is waited for instead of failing mid-way.
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO messages (conversation_id, role, content, image, image_name,"
                    " status, created) VALUES (?,?,?,?,?,?,?)",
                    (conversation_id, role, content, image, image_name, status, now))
                db.execute("UPDATE conversations SET updated=? WHERE id=?", (now, conversation_id))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        return int(cur.lastrowid or 0)

    def update_message(self, message_id: int, content: str, *, status: str | None = None,
                       error: str | None = None) -> None:
        with self._using("saved") as db:
            if status is None:
                db.execute("UPDATE messages SET content=? WHERE id=?", (content, message_id))
            else:
                db.execute("UPDATE messages SET content=?, status=?, error=? WHERE id=?",
                           (content, status, error, message_id))

    def messages(self, conversation_id: int) -> list[Message]:
        if self.db is None:
            return []
        with self._using("read") as db:
            rows = db.execute(
                "SELECT id, role, content, status, image, image_name, error FROM messages "
                "WHERE conversation_id=? ORDER BY id", (conversation_id,)).fetchall()
        return [Message(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5], r[6])
                for r in rows]


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_corruption(exc: BaseException) -> bool:
    return isinstance(exc, _IntegrityCheckFailed) or _sqlite_code(exc) in _CORRUPTION_CODES


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _advice(exc: BaseException, path: Path) -> str:
    """What the user can do about ``exc``, in a few words."""
    code = _sqlite_code(exc)
    err = exc.errno if isinstance(exc, OSError) else None
    if code in _BUSY_CODES:
        return "another program is using it; close that program"
    if code == SQLITE_FULL or err == errno.ENOSPC:
        return "the disk is full; free some space"
    if code in _NO_ACCESS_CODES or err in _NO_ACCESS_ERRNOS:
        return f"check that you can write to {path.parent}"
    return "check the disk it is on"


def _remove_others_access(path: Path) -> None:
    """Drop group/other permissions that a umask (or an older version) left on ``path``.

    A sticky folder is a shared one (``/tmp``, a history opened there by hand): closing it
    would break every other user and program on the machine, so it is left as it is."""
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & stat.S_ISVTX:
            return
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
    except FileNotFoundError:
        pass
    except OSError as exc:  # not ours to change (another owner): use it as it is, but say so
        log.warning("could not make %s private: %s", path, exc.strerror)
