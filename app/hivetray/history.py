"""Quick-chat history: conversations and messages in SQLite (WAL) in the data folder.

Written as a message is sent, and again on every repaint of a streaming reply, so whatever the
user has seen is already committed: a crash of the app (or a worker) loses nothing shown. WAL
with ``synchronous=NORMAL`` makes each of those small commits cheap and durable across an app
crash. A database that cannot be opened or fails its integrity check is moved aside (never
deleted) and a new one is started; ``notice`` says so for the UI.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

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


class History:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.notice: str | None = None
        self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            backup = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):
                part = Path(str(self.path) + suffix)
                if part.exists():
                    part.replace(Path(str(backup) + suffix))
            self.notice = (f"The chat history could not be read ({exc}); it was kept as {backup} "
                           "and a new history was started.")
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: each write commits
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.executescript(SCHEMA)
            # replies that were streaming when the app died are kept, marked as interrupted
            db.execute("UPDATE messages SET status='interrupted' WHERE status=?", (STREAMING,))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self.db.close()

    # -- conversations --------------------------------------------------------------------------
    def new_conversation(self, title: str = "New chat") -> int:
        now = time.time()
        cur = self.db.execute("INSERT INTO conversations (title, created, updated) VALUES (?,?,?)",
                              (title, now, now))
        return int(cur.lastrowid or 0)

    def conversations(self, limit: int = 200) -> list[Conversation]:
        rows = self.db.execute("SELECT id, title, updated FROM conversations "
                               "ORDER BY updated DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [Conversation(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        self.db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id=?", (conversation_id,))

    # -- messages ---------------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, *,
                    status: str = "complete", image: bytes | None = None,
                    image_name: str | None = None) -> int:
        now = time.time()
        with self.db:  # one transaction: the message and the conversation's timestamp
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, image, image_name, status,"
                " created) VALUES (?,?,?,?,?,?,?)",
                (conversation_id, role, content, image, image_name, status, now))
            self.db.execute("UPDATE conversations SET updated=? WHERE id=?",
                            (now, conversation_id))
        return int(cur.lastrowid or 0)

    def update_message(self, message_id: int, content: str, *, status: str | None = None,
                       error: str | None = None) -> None:
        if status is None:
            self.db.execute("UPDATE messages SET content=? WHERE id=?", (content, message_id))
        else:
            self.db.execute("UPDATE messages SET content=?, status=?, error=? WHERE id=?",
                            (content, status, error, message_id))

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self.db.execute(
            "SELECT id, role, content, status, image, image_name, error FROM messages "
            "WHERE conversation_id=? ORDER BY id", (conversation_id,)).fetchall()
        return [Message(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5], r[6])
                for r in rows]
