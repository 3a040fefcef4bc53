"""Whole characters and no stop strings in what a reply shows (synthetic byte pieces, no model)."""

from __future__ import annotations

from hivetray.workers.detok import StopMatcher, Utf8Pieces


def feed_all(pieces: list[bytes]) -> list[str]:
    utf8 = Utf8Pieces()
    return [utf8.feed(piece) for piece in pieces]


def test_a_character_split_across_tokens_is_never_shown_half() -> None:
    # "é" is C3 A9; the bee emoji is F0 9F 90 9D, here split over three tokens
    shown = feed_all([b"caf", b"\xc3", b"\xa9 ", b"\xf0", b"\x9f\x90", b"\x9d!"])
    assert shown == ["caf", "", "é ", "", "", "\U0001f41d!"]
    assert all("\ufffd" not in text for text in shown)


def test_invalid_bytes_become_a_replacement_character_not_an_error() -> None:
    assert feed_all([b"a\xff", b"b"]) == ["a\ufffd", "b"]


def test_an_incomplete_character_at_the_end_is_dropped() -> None:
    assert "".join(feed_all([b"ok", b"\xe2\x82"])) == "ok"


def run(matcher: StopMatcher, pieces: list[str]) -> tuple[list[str], bool]:
    shown: list[str] = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        shown.append(text)
        if stopped:
            return shown, True
    return shown, False


def test_a_stop_string_split_across_pieces_is_held_back_and_never_shown() -> None:
    shown, stopped = run(StopMatcher(["<end_of_turn>"]), ["Hello <e", "nd_of", "_turn> more"])
    assert stopped
    assert shown == ["Hello ", "", ""]


def test_held_text_is_released_when_the_stop_string_does_not_follow() -> None:
    matcher = StopMatcher(["<end_of_turn>"])
    shown, stopped = run(matcher, ["a <en", "d", "ing>", " b <"])
    assert not stopped
    assert shown == ["a ", "", "<ending>", " b "]
    assert matcher.flush() == "<"
    assert matcher.flush() == ""


def test_text_before_the_stop_in_the_same_piece_is_shown() -> None:
    shown, stopped = run(StopMatcher(["\n\nUser:"]), ["one two\n\nUser: three"])
    assert stopped and shown == ["one two"]


def test_the_earliest_of_several_stop_strings_wins() -> None:
    shown, stopped = run(StopMatcher(["STOP", "END", ""]), ["a END b STOP"])
    assert stopped and shown == ["a "]


def test_without_stop_strings_text_passes_straight_through() -> None:
    matcher = StopMatcher([])
    assert matcher.feed("<end") == ("<end", False)
    assert matcher.flush() == ""
