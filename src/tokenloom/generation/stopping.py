"""Turning token ids into text as they come, and deciding when to stop.

`IncrementalDetokenizer` never emits half a UTF-8 character: a token can end in
the middle of one (byte-level BPE splits emoji and CJK across tokens), and the
decoded text then ends in U+FFFD until the next token completes it.

`StopStrings` finds a stop string even when it spans several tokens, cuts the
text before it, and holds back any tail that could still grow into one, so a
stream never shows text that a later stop would have removed.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decode ids one at a time; `push(id)` returns the new, complete text.

    Decoding restarts a few tokens back (`prefix`) because a tokenizer may render a
    token differently depending on its neighbours; the text already read is
    subtracted. Example (emoji split over two tokens): push(a) -> "", push(b) -> "🙂".
    """

    def __init__(self, tokenizer, context: list[int] = (), skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        # The last prompt tokens give the first generated token its left neighbour.
        self.ids: list[int] = list(context)[-4:]
        self.prefix = 0  # where decoding restarts
        self.read = len(self.ids)  # ids[prefix:read] were already turned into emitted text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return ""  # an incomplete character: wait for the next token
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before) :]

    def state(self) -> tuple[int, int, int]:
        """Where it stands: ids only grow and prefix, read only move forward, so this is enough to rewind."""
        return len(self.ids), self.prefix, self.read

    def rewind(self, state: tuple[int, int, int]) -> None:
        """Back to an earlier `state()` (the semantic guard's rollback)."""
        size, self.prefix, self.read = state
        del self.ids[size:]

    def flush(self) -> str:
        """Whatever is left at the end (a dangling partial character shows as U+FFFD)."""
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return after[len(before) :]


class StopStrings:
    """Watch generated text for stop strings; release only text that is safe to show."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.text = ""  # everything generated so far (before any cut)
        self.released = 0  # characters of text already handed out
        self.matched: str | None = None

    def feed(self, piece: str) -> str:
        """Add new text; return the part that can be shown now."""
        if self.matched is not None:
            return ""
        search_from = max(len(self.text) - self.longest + 1, 0)
        self.text += piece
        cut = self._find(search_from)
        if cut is not None:
            out = self.text[self.released : cut]
            self.text, self.released = self.text[:cut], cut
            return out
        safe = len(self.text) - self._held_back()
        out = self.text[self.released : safe]
        self.released = max(self.released, safe)
        return out

    def state(self) -> tuple[int, int]:
        """Where it stands while nothing matched: the text only grows, so its length is enough."""
        return len(self.text), self.released

    def rewind(self, state: tuple[int, int]) -> None:
        """Back to an earlier `state()` (the semantic guard's rollback)."""
        size, self.released = state
        self.text, self.matched = self.text[:size], None

    def _find(self, start: int) -> int | None:
        best = None
        for stop in self.stops:
            at = self.text.find(stop, start)
            if at != -1 and (best is None or at < best):
                best, self.matched = at, stop
        return best

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        for size in range(min(self.longest - 1, len(self.text)), 0, -1):
            tail = self.text[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0

    def finish(self) -> str:
        """At the end of generation the held-back tail is released: it never became a stop."""
        out = self.text[self.released :]
        self.released = len(self.text)
        return out
