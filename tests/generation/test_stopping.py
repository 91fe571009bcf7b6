"""Incremental detokenizing (UTF-8 safe) and stop strings across token boundaries."""

import pytest

from tokenloom.generation.stopping import IncrementalDetokenizer, StopStrings


@pytest.mark.parametrize("text", ["Emoji 🙂 and 東京タワー, naïve café", "🙂🙂🙂", "plain ascii text"])
def test_pieces_never_split_a_character_and_join_to_the_text(smollm, text):
    ids = smollm.tokenizer.encode(text)
    detok = IncrementalDetokenizer(smollm.tokenizer)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text
    if text.startswith("🙂"):
        assert pieces[0] == ""  # the first byte-level token holds only part of the emoji


def test_stop_string_split_over_pieces_is_cut_and_never_shown():
    stops = StopStrings(("###",))
    shown = [stops.feed(p) for p in ["Hello #", "#", "# world"]]
    assert shown == ["Hello ", "", ""]
    assert stops.matched == "###" and stops.text == "Hello "


def test_a_tail_that_turns_out_not_to_be_a_stop_is_released():
    stops = StopStrings(("STOP",))
    assert stops.feed("go ST") == "go "
    assert stops.feed("ART") == "START"
    assert stops.feed("end ST") == "end "
    assert stops.finish() == "ST"


def test_earliest_of_several_stops_wins():
    stops = StopStrings(("world", "lo w"))
    assert stops.feed("hello world") == "hel"
    assert stops.matched == "lo w"
