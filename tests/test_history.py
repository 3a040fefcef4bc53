"""Chat history in SQLite: order, interrupted replies, corrupt files moved aside, and only
those: a locked database is waited for, other failures leave every file alone."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hivetray.history import (
    SQLITE_CANTOPEN,
    SQLITE_FULL,
    SQLITE_IOERR,
    SQLITE_PERM,
    SQLITE_READONLY,
    STREAMING,
    History,
    HistoryError,
    HistoryUnavailable,
)


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
    assert history.db is not None
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


def test_corrupt_database_is_moved_aside_and_a_new_one_started(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    history = History(path)
    assert history.notice is not None and "kept as" in history.notice
    assert "is damaged (file is not a database)" in caplog.text
    caplog.clear()  # the expected warning
    backups = list(tmp_path.glob("history.sqlite3.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(b"this is not sqlite")
    assert history.conversations() == []
    assert sqlite3.connect(path).execute("PRAGMA quick_check").fetchone()[0] == "ok"


def _stored_history(path: Path, *, crashed_mid_reply: bool = False) -> int:
    """A history with one conversation in it, closed; the conversation id."""
    history = History(path)
    conversation = history.new_conversation("kept")
    history.add_message(conversation, "user", "my words")
    if crashed_mid_reply:  # the app died while this reply streamed: opening must mark it
        history.add_message(conversation, "assistant", "half a reply", status=STREAMING)
    history.close()
    return conversation


def _assert_untouched(path: Path, conversation: int) -> None:
    assert not list(path.parent.glob("*.corrupt-*")), "the live history was moved aside"
    again = History(path)
    assert again.notice is None
    assert again.messages(conversation)[0].content == "my words"
    again.close()


def _locked(path: Path) -> Iterator[sqlite3.Connection]:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield other
    other.close()


@pytest.fixture
def writer_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another program holding the write lock of tmp_path/history.sqlite3 (a stored history)."""
    _stored_history(tmp_path / "history.sqlite3")
    yield from _locked(tmp_path / "history.sqlite3")


@pytest.fixture
def locked_after_crash(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The same, in a history whose last reply was cut by a crash: opening has to write."""
    _stored_history(tmp_path / "history.sqlite3", crashed_mid_reply=True)
    yield from _locked(tmp_path / "history.sqlite3")


def test_a_history_another_program_writes_to_opens_at_once_and_reads(
        tmp_path: Path, writer_lock: sqlite3.Connection) -> None:
    delays: list[float] = []
    history = History(tmp_path / "history.sqlite3", busy_timeout_s=0.05, sleep=delays.append)
    assert history.available and history.notice is None and delays == []
    [conversation] = history.conversations()
    assert [m.content for m in history.messages(conversation.id)] == ["my words"]
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_locked_database_is_waited_for_and_opened_not_moved_aside(
        tmp_path: Path, locked_after_crash: sqlite3.Connection) -> None:
    path = tmp_path / "history.sqlite3"
    delays: list[float] = []

    def sleep(seconds: float) -> None:  # the other program finishes while we wait
        delays.append(seconds)
        locked_after_crash.execute("ROLLBACK")

    history = History(path, busy_timeout_s=0.05, retry_delay_s=0.25, sleep=sleep)
    assert history.available and history.notice is None
    assert delays == [0.25]
    [conversation] = history.conversations()
    assert [(m.content, m.status) for m in history.messages(conversation.id)] == [
        ("my words", "complete"), ("half a reply", "interrupted")]
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_database_locked_for_good_is_left_alone_and_reported(
        tmp_path: Path, locked_after_crash: sqlite3.Connection,
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "history.sqlite3"
    delays: list[float] = []
    history = History(path, busy_timeout_s=0.05, open_attempts=3, sleep=delays.append)
    assert len(delays) == 2  # three attempts, bounded
    assert not history.available
    assert history.notice is not None and str(path) in history.notice
    assert "database is locked" in history.notice and "close that program" in history.notice
    assert "\n" not in history.notice
    # degraded, not broken: reads are empty, writes are refused with a typed error
    assert history.conversations() == [] and history.messages(1) == []
    with pytest.raises(HistoryUnavailable, match="database is locked"):
        history.new_conversation()
    assert history.notice in caplog.text
    caplog.clear()  # the expected warning
    locked_after_crash.execute("ROLLBACK")
    _assert_untouched(path, 1)


def _fail_with(code: int, name: str, message: str) -> Callable[[Path, float], sqlite3.Connection]:
    def connect(path: Path, timeout: float) -> sqlite3.Connection:
        error = sqlite3.OperationalError(message)
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
        error.sqlite_errorname = name  # type: ignore[attr-defined]
        raise error

    return connect


def _disk_full(path: Path, timeout: float) -> sqlite3.Connection:
    """A real SQLITE_FULL from SQLite: the database may not grow by a single page."""
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    db.execute("CREATE TABLE filler (x)")  # needs a page it may not have
    return db


@pytest.mark.parametrize(("connect", "reason", "advice"), [
    (_disk_full, "database or disk is full", "the disk is full; free some space"),
    (_fail_with(SQLITE_IOERR | (3 << 8), "SQLITE_IOERR_WRITE", "disk I/O error"),
     "disk I/O error", "check the disk"),
    (_fail_with(SQLITE_FULL, "SQLITE_FULL", "database or disk is full"),
     "database or disk is full", "free some space"),
    (_fail_with(SQLITE_READONLY, "SQLITE_READONLY", "attempt to write a readonly database"),
     "readonly", "check that you can write to"),
    (_fail_with(SQLITE_CANTOPEN, "SQLITE_CANTOPEN", "unable to open database file"),
     "unable to open", "check that you can write to"),
    (_fail_with(SQLITE_PERM, "SQLITE_PERM", "access permission denied"),
     "permission denied", "check that you can write to"),
], ids=["real-disk-full", "io-error", "full", "read-only", "cannot-open", "permission"])
def test_open_failures_other_than_corruption_move_nothing_and_degrade(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        connect: Callable[[Path, float], sqlite3.Connection], reason: str, advice: str) -> None:
    path = tmp_path / "history.sqlite3"
    conversation = _stored_history(path)
    before = path.read_bytes()
    history = History(path, connect=connect)
    assert not history.available
    assert history.notice is not None
    assert reason in history.notice and advice in history.notice and str(path) in history.notice
    assert "restart Hivetray" in history.notice and "\n" not in history.notice
    assert history.conversations() == []
    with pytest.raises(HistoryUnavailable):
        history.add_message(conversation, "user", "more")
    assert path.read_bytes() == before
    caplog.clear()  # the expected warning
    _assert_untouched(path, conversation)


def test_a_folder_that_cannot_be_created_degrades_instead_of_crashing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "data").write_text("a file where the folder should be")
    history = History(tmp_path / "data" / "history.sqlite3")
    assert not history.available and history.notice is not None
    assert str(tmp_path / "data" / "history.sqlite3") in history.notice
    assert (tmp_path / "data").read_text() == "a file where the folder should be"
    caplog.clear()  # the expected warning


def test_a_write_on_a_full_disk_raises_a_typed_error_and_keeps_what_was_stored(
        tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite3")
    assert history.db is not None
    conversation = history.new_conversation()
    history.add_message(conversation, "user", "my words")
    reply = history.add_message(conversation, "assistant", "so far", status=STREAMING)
    pages = history.db.execute("PRAGMA page_count").fetchone()[0]
    history.db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(HistoryError, match="disk is full") as failed:
        history.add_message(conversation, "user", "x" * 20_000)
    assert not isinstance(failed.value, sqlite3.Error) and "\n" not in str(failed.value)
    with pytest.raises(HistoryError, match="free some space"):
        history.update_message(reply, "so far" + "y" * 20_000)
    assert [m.content for m in history.messages(conversation)] == ["my words", "so far"]
    assert not history.db.in_transaction  # nothing half-done is left open
    history.db.execute("PRAGMA max_page_count=1000000")  # space freed: writing works again
    history.update_message(reply, "so far, and more", status="complete")
    assert history.messages(conversation)[-1].content == "so far, and more"


def test_a_write_to_a_locked_database_gives_up_soon_and_the_next_one_succeeds(
        tmp_path: Path, writer_lock: sqlite3.Connection) -> None:
    history = History(tmp_path / "history.sqlite3", write_busy_timeout_s=0.05)
    [conversation] = history.conversations()  # WAL: reading is not blocked by the writer
    started = time.monotonic()
    with pytest.raises(HistoryError, match=r"database is locked.*close that program"):
        history.add_message(conversation.id, "user", "while locked")
    assert time.monotonic() - started < 2.5  # not the open's wait: streamed writes run on the UI
    writer_lock.execute("ROLLBACK")
    history.add_message(conversation.id, "user", "after")
    assert [m.content for m in history.messages(conversation.id)] == ["my words", "after"]




def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.usefixtures("umask_022")
def test_database_and_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "home" / "data" / "history.sqlite3"
    history = History(path)
    conversation = history.new_conversation()
    history.add_message(conversation, "user", "private words")  # -wal and -shm now exist
    for suffix in ("", "-wal", "-shm"):
        part = Path(str(path) + suffix)
        assert part.exists() and _mode(part) == 0o600, part
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700
    history.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.usefixtures("umask_022")
def test_a_history_left_readable_by_an_older_version_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    path = folder / "history.sqlite3"
    conversation = _stored_history(path)
    path.chmod(0o644)
    folder.chmod(0o755)
    history = History(path)
    assert _mode(path) == 0o600 and _mode(folder) == 0o700
    history.add_message(conversation, "user", "more")
    assert _mode(Path(str(path) + "-wal")) == 0o600
    history.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_history_in_a_shared_sticky_folder_leaves_the_folder_alone(tmp_path: Path) -> None:
    """A history opened right in /tmp must not close /tmp to everyone else (it did once)."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    path = shared / "history.sqlite3"
    history = History(path)
    history.add_message(history.new_conversation(), "user", "words")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert _mode(path) == 0o600  # the file itself is still private
    history.close()
