"""Turning sampled tokens into text a person may see: whole characters only, no stop string.

Why its own module: both rules are pure text bookkeeping, easy to get subtly wrong, and easy to
test without a model. A token is a few *bytes* (``llama_token_to_piece``), and a character of
UTF-8 may be split across two or three tokens (emoji, CJK, accents in byte-level vocabularies):
emitting each piece as soon as it arrives would show half a character (``\\ufffd``) in the reply.
A stop string may likewise arrive split across tokens ("<end_" + "of_turn>"): text that could be
the start of one is held back until it is known not to be, and a stop string is never shown.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class Utf8Pieces:
    """Bytes in, whole characters out: a character split across pieces waits for its end.

    Invalid bytes (a model may sample any byte token) become U+FFFD rather than an error, and
    an incomplete character left at the end of a reply is dropped, never shown half.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)


class StopMatcher:
    """Cut the reply at the first stop string; hold back text that may be the start of one.

    ``feed`` returns the text that is safe to show now and whether a stop string was reached
    (everything from the stop string on is dropped). ``flush`` returns what is still held back,
    for a reply that ended another way (length, end-of-generation token, cancel): a partial
    match that never completed is ordinary text.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(dict.fromkeys(stop for stop in stops if stop))
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        combined = self._held + text
        cut = min((at for stop in self.stops if (at := combined.find(stop)) >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return combined[:cut], True
        keep = self._partial_suffix(combined)
        self._held = combined[len(combined) - keep:] if keep else ""
        return combined[:len(combined) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest end of ``text`` that a stop string starts with."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
