"""Item files: what is accepted, and the errors that say what was wrong."""

import gzip
import json

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.human.items import parse_gold, parse_items, preference_rows, read_jsonl, split_pair

from .conftest import HOSTILE, item_rows


def test_pairwise_pairs_every_two_systems_of_a_segment():
    items = parse_items(item_rows(2, ("a", "b", "c")), "pairwise")
    assert sorted(i.ext_id for i in items) == ["q0|a|b", "q0|a|c", "q0|b|c", "q1|a|b", "q1|a|c", "q1|b|c"]
    assert all(len(i.outputs) == 2 and i.reference == f"alpha says {i.segment[1:]}" for i in items)


def test_likert_makes_one_item_per_output():
    items = parse_items(item_rows(3, ("a", "b")), "likert")
    assert len(items) == 6 and {len(i.outputs) for i in items} == {1}


def test_segments_without_ids_are_grouped_by_prompt():
    rows = [("f:1", {"prompt": "p", "system": "a", "output": "x"}), ("f:2", {"prompt": "p", "system": "b", "output": "y"})]
    items = parse_items(rows, "pairwise")
    assert len(items) == 1 and [o.system for o in items[0].outputs] == ["a", "b"]


@pytest.mark.parametrize("record, message", [
    ({"system": "a", "output": "x"}, "missing field 'prompt'"),
    ({"prompt": "p", "output": "x"}, "missing field 'system'"),
    ({"prompt": "p", "system": "a", "output": 3}, "'output' must be a string"),
    ({"prompt": "p", "system": " ", "output": "x"}, "'system' is empty"),
    ({"prompt": "p", "system": "a", "output": "\ud800"}, "lone surrogate"),
    ({"prompt": "p", "system": "a", "output": "x" * 200_001}, "at most 200000"),
])
def test_bad_records_are_refused_with_the_reason(record, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_items([("items.jsonl:7", record)], "likert")


def test_pairwise_with_one_system_says_what_is_missing():
    with pytest.raises(InvalidArgument, match="at least two systems"):
        parse_items(item_rows(1, ("only",)), "pairwise")


def test_a_second_output_of_one_system_is_refused():
    rows = item_rows(1, ("a",)) * 2
    with pytest.raises(InvalidArgument, match="second output"):
        parse_items(rows, "likert")


def test_read_jsonl_names_the_line_of_bad_bytes_and_bad_json(tmp_path):
    bad_utf8 = tmp_path / "a.jsonl"
    bad_utf8.write_bytes(b'{"prompt": "ok"}\n{"prompt": "\xff\xfe"}\n')
    with pytest.raises(InvalidArgument, match=r"a.jsonl:2: not UTF-8"):
        read_jsonl(bad_utf8)
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text('{"prompt": "ok"}\n[1, 2]\n')
    with pytest.raises(InvalidArgument, match=r"b.jsonl:2: each line must be a JSON object"):
        read_jsonl(bad_json)
    with pytest.raises(InvalidArgument, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_hostile_strings_are_kept_verbatim():
    rows = [(f"f:{k}", {"id": k, "prompt": text, "system": text[:40] or "s", "output": text})
            for k, text in enumerate(HOSTILE)]
    items = parse_items(rows, "likert")
    assert [i.outputs[0].text for i in items] == HOSTILE


def test_gold_answers_are_checked_against_the_scale():
    gold = parse_gold([("g:1", {"prompt": "p", "output": "x", "expected": 5})], "likert", ("fluency", "tone"))
    assert gold[0].expected == {"fluency": "5", "tone": "5"} and gold[0].role == "gold"
    with pytest.raises(InvalidArgument, match="allowed: A, B, tie, both_bad"):
        parse_gold([("g:1", {"prompt": "p", "output_a": "x", "output_b": "y", "expected": "left"})],
                   "pairwise", ("overall",))
    attention = parse_gold([("g:1", {"prompt": "Pick B", "output_a": "x", "output_b": "y", "expected": "B",
                                     "attention": True})], "pairwise", ("overall",))
    assert attention[0].role == "attention"


def test_split_pair_cuts_at_the_last_shared_assistant_turn():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: more\n\nAssistant: sure"
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: more\n\nAssistant: no\n\nAssistant: really"
    assert split_pair(chosen, rejected) == ("Human: hi\n\nAssistant: hello\n\nHuman: more", "sure",
                                            "no\n\nAssistant: really")
    with pytest.raises(InvalidArgument, match="Assistant"):
        split_pair("Human: no reply", "Human: none")


def test_preference_rows_read_gzip_pairs(tmp_path):
    pairs = [{"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"}] * 3
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(p) + "\n" for p in pairs).encode()))
    rows = preference_rows(path, limit=2)
    assert [r["system"] for _, r in rows] == ["chosen", "rejected"] * 2
    assert rows[0][1]["output"] == "good" and rows[1][1]["prompt"] == "Human: q"
