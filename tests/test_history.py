"""Chat history in SQLite: order, interrupted replies, corrupt files moved aside."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hivetray.history import STREAMING, History


def test_messages_round_trip_in_order_with_images(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite3")
    conversation = history.new_conversation("first")
    history.add_message(conversation, "user", "look", image=b"\x89PNG...", image_name="a.png")
    reply = history.add_message(conversation, "assistant", "", status=STREAMING)
    history.update_message(reply, "It is a cat.", status="complete")
    messages = history.messages(conversation)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "look", "complete"), ("assistant", "It is a cat.", "complete")]
    assert messages[0].image == b"\x89PNG..." and messages[0].image_name == "a.png"


def test_a_reply_streaming_when_the_app_died_is_kept_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    history = History(path)
    conversation = history.new_conversation()
    reply = history.add_message(conversation, "assistant", "", status=STREAMING)
    history.update_message(reply, "half a sent")
    # no close(): the app was killed; a second connection sees what was committed
    again = History(path)
    [message] = again.messages(conversation)
    assert message.content == "half a sent" and message.status == "interrupted"
    history.close()


def test_uses_write_ahead_logging(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite3")
    assert history.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_conversations_newest_first(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite3")
    old = history.new_conversation("old")
    new = history.new_conversation("new")
    history.add_message(old, "user", "bump")  # a new message makes it the most recent
    assert [c.id for c in history.conversations()] == [old, new]
    history.delete_conversation(old)
    assert [c.title for c in history.conversations()] == ["new"]
    assert history.messages(old) == []


def test_corrupt_database_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    history = History(path)
    assert history.notice is not None and "kept as" in history.notice
    backups = list(tmp_path.glob("history.sqlite3.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(b"this is not sqlite")
    assert history.conversations() == []
    assert sqlite3.connect(path).execute("PRAGMA quick_check").fetchone()[0] == "ok"
