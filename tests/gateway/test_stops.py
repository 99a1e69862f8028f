"""Stop sequences the Portal applies itself (gateway/stops.py)."""

from __future__ import annotations

import random

import pytest

from gateway.stops import StopScanner, cut


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("Hello world. Bye.", ["."], ("Hello world", ".")),
        ("Hello world. Bye.", ["Bye", "world"], ("Hello ", "world")),  # the first one met wins
        ("abcd", ["abcd", "c"], ("ab", "c")),  # "c" is complete before "abcd" is
        ("xabcd", ["abcd", "bcd"], ("x", "abcd")),  # complete at the same point: the longer
        ("Hello world", ["\n\n"], ("Hello world", None)),
        ("STOP at once", ["STOP"], ("", "STOP")),
        ("", ["x"], ("", None)),
        ("no stops asked", [], ("no stops asked", None)),
    ],
)
def test_cut_ends_the_text_before_the_first_stop_sequence(text, stops, expected):
    assert cut(text, stops) == expected


def _stream(pieces: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    scanner = StopScanner(stops)
    sent = [scanner.feed(piece) for piece in pieces]
    sent.append(scanner.flush())
    return sent, scanner.hit


def test_a_sequence_split_across_pieces_is_found_and_nothing_after_it_is_sent():
    sent, hit = _stream(["The answer", " is 4.\n", "\nHuman: more", " text"], ["\n\nHuman:"])
    assert "".join(sent) == "The answer is 4."
    assert hit == "\n\nHuman:"
    assert sent[1] == " is 4."  # the newline waits: it may begin the stop sequence


def test_held_text_that_begins_no_sequence_after_all_is_sent_with_the_next_piece():
    sent, hit = _stream(["line one\n", "line two", "\n"], ["\n\n"])
    assert sent == ["line one", "\nline two", "", "\n"]  # the last newline goes out at the end
    assert hit is None


def test_text_that_cannot_begin_a_sequence_is_never_held():
    sent, _ = _stream(["abc", "def"], ["XYZ"])
    assert sent == ["abc", "def", ""]


def test_streaming_gives_what_cutting_the_whole_text_gives():
    """However the router splits its text, the client gets exactly the cut whole answer."""
    for seed in range(500):
        rng = random.Random(seed)
        alphabet = "ab\n."
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        stops = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
            for _ in range(rng.randint(1, 4))
        ]
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 10))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]

        sent, hit = _stream(pieces, stops)

        assert ("".join(sent), hit) == cut(text, stops), (seed, pieces, stops)
