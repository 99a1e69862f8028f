"""Stop sequences, applied by the Portal: routers may ignore `stop`, clients rely on it.

OpenAI's `stop` and Anthropic's `stop_sequences` both promise that the answer ends just
before the first stop sequence it would contain, which is left out. A whole answer is
cut with `cut`; a stream goes through a `StopScanner`, which holds back only the text
that could still turn out to begin a stop sequence, so everything else reaches the client
as soon as the router sends it, and a sequence split across two router chunks is found.
"""

from __future__ import annotations


def cut(text: str, stops: list[str]) -> tuple[str, str | None]:
    """(text before the stop sequence, that sequence), or (text, None) when none occurs.

    The sequence is the one a model writing the text would meet first: the one that is
    complete soonest (for "abcd" with stops "abcd" and "c", "c"); of two complete at the
    same point, the longer."""
    best: tuple[int, int, str] | None = None  # (end, start, sequence)
    for seq in stops:
        at = text.find(seq)
        if at != -1:
            # A later occurrence of this sequence cannot end sooner than the first one.
            found = (at + len(seq), at, seq)
            if best is None or found[:2] < best[:2]:
                best = found
    if best is None:
        return text, None
    return text[: best[1]], best[2]


class StopScanner:
    """Feed a stream's text pieces in order; get back what may be sent now."""

    __slots__ = ("_held", "_stops", "hit")

    def __init__(self, stops: list[str]):
        self._stops = stops
        self._held = ""
        self.hit: str | None = None  # the stop sequence found; nothing more is passed on after it

    def feed(self, text: str) -> str:
        """The text that can be sent now. Once a stop sequence is found (`hit`), the text
        before it is returned and everything after, now and later, is dropped."""
        if self.hit is not None:
            return ""
        buffer = self._held + text
        before, seq = cut(buffer, self._stops)
        if seq is not None:
            self.hit, self._held = seq, ""
            return before
        keep = self._pending_prefix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of the stream: the held-back text, which began no stop sequence after all."""
        held, self._held = self._held, ""
        return "" if self.hit is not None else held

    def _pending_prefix(self, buffer: str) -> int:
        """Length of the longest end of `buffer` that begins some stop sequence."""
        longest = 0
        for seq in self._stops:
            for size in range(min(len(seq) - 1, len(buffer)), longest, -1):
                if buffer.endswith(seq[:size]):
                    longest = size
                    break
        return longest
