"""Reading what is to be rated: item files, gold files and preference pairs.

An item file is JSON Lines, one system's output per line:

    {"id": "q7", "prompt": "...", "system": "model-a", "output": "...", "reference": "..."}

`prompt`, `system` and `output` are required; `system_prompt` (alias `system_message`),
`reference` and `id` are optional. `id` names the segment: lines with the same id
(or, without ids, the same prompt) are outputs for one input, and a pairwise study
pairs the outputs of every two systems on it.

A gold file holds items with a known answer, mixed into every rater's queue:

    likert:   {"prompt": ..., "output": ..., "expected": 4}  (or {"fluency": 5, ...})
    task:     {"prompt": ..., "output": ..., "expected": "yes"}
    pairwise: {"prompt": ..., "output_a": ..., "output_b": ..., "expected": "A"}

`"attention": true` marks an attention check (an item whose text tells the rater
what to answer); it is scored like gold but reported apart.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tokenloom.errors import InvalidArgument

KINDS = ("likert", "pairwise", "task")
LIKERT_VALUES = ("1", "2", "3", "4", "5")
PAIRWISE_VALUES = ("A", "B", "tie", "both_bad")  # as shown: A is the left output
TASK_VALUES = ("yes", "partly", "no")
DEFAULT_CRITERIA = {"likert": ("overall",), "pairwise": ("overall",), "task": ("success",)}
# the five criteria the notes name for human judgement of generated text
KNOWN_CRITERIA = ("fluency", "coherence", "relevance", "helpfulness", "tone", "overall", "success")
MAX_FIELD_CHARS = 200_000  # one field of one item; longer text is refused, not cut


def allowed_values(kind: str) -> tuple[str, ...]:
    """The answers a rater may give for one criterion of a study of `kind`."""
    return {"likert": LIKERT_VALUES, "pairwise": PAIRWISE_VALUES, "task": TASK_VALUES}[check_kind(kind)]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument(f"study kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


@dataclass(frozen=True)
class Output:
    system: str
    text: str


@dataclass(frozen=True)
class Item:
    """One unit to rate: a prompt with one output (Likert, task) or two (pairwise).

    `role` is 'study' for the items whose ratings are the results, 'gold' or
    'attention' for checks; `expected` holds a check's answer per criterion (for
    pairwise in terms of outputs[0] = "A" and outputs[1] = "B")."""

    ext_id: str
    segment: str
    prompt: str
    outputs: tuple[Output, ...]
    system_prompt: str = ""
    reference: str | None = None
    role: str = "study"
    expected: dict | None = field(default=None)


def _text(record: dict, key: str, where: str, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"{where}: missing field {key!r} (required: prompt, system, output)")
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidArgument(f"{where}: field {key!r} has {len(value)} characters; at most {MAX_FIELD_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{where}: field {key!r} holds a lone surrogate (\\ud800-\\udfff escape), "
                              "which is not text; fix the file's encoding") from None
    return value


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """[(where, record)] of a JSON Lines file (.gz read transparently); blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"{path}: no such file")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rows = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        where = f"{path.name}:{number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise InvalidArgument(f"{where}: not UTF-8 ({error.reason} at byte {error.start})") from None
        except json.JSONDecodeError as error:
            raise InvalidArgument(f"{where}: not JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(record, dict):
            raise InvalidArgument(f"{where}: each line must be a JSON object, got {type(record).__name__}")
        rows.append((where, record))
    if not rows:
        raise InvalidArgument(f"{path}: no items")
    return rows


def _segment_key(record: dict, where: str, prompt: str, system_prompt: str) -> str:
    if record.get("id") is not None:
        if not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool):
            raise InvalidArgument(f"{where}: 'id' must be a string or an integer")
        return str(record["id"])
    # no id: outputs for the same (system prompt, prompt) are one segment
    return "p-" + hashlib.sha256(f"{system_prompt}\x00{prompt}".encode()).hexdigest()[:16]


def parse_items(rows: list[tuple[str, dict]], kind: str) -> list[Item]:
    """Items of a study of `kind` from item-file records (see the module docstring)."""
    check_kind(kind)
    segments: dict[str, dict] = {}
    for where, record in rows:
        prompt = _text(record, "prompt", where)
        system = _text(record, "system", where)
        output = _text(record, "output", where)
        system_prompt = _text(record, "system_prompt", where, False) or _text(record, "system_message", where, False)
        reference = _text(record, "reference", where, False)
        if not system.strip():
            raise InvalidArgument(f"{where}: 'system' is empty; name the system that produced the output")
        key = _segment_key(record, where, prompt, system_prompt or "")
        segment = segments.setdefault(key, {"prompt": prompt, "system_prompt": system_prompt or "",
                                            "reference": reference, "outputs": {}, "where": where})
        if segment["prompt"] != prompt:
            raise InvalidArgument(f"{where}: id {key!r} was used at {segment['where']} with a different prompt")
        if system in segment["outputs"]:
            raise InvalidArgument(f"{where}: system {system!r} has a second output for segment {key!r}")
        segment["outputs"][system] = output
        segment["reference"] = segment["reference"] if segment["reference"] is not None else reference
    items = []
    for key, segment in segments.items():
        common = dict(segment=key, prompt=segment["prompt"], system_prompt=segment["system_prompt"],
                      reference=segment["reference"])
        systems = sorted(segment["outputs"])
        if kind != "pairwise":
            items += [Item(ext_id=f"{key}|{s}", outputs=(Output(s, segment["outputs"][s]),), **common)
                      for s in systems]
            continue
        if len(systems) < 2:
            raise InvalidArgument(f"{segment['where']}: a pairwise study needs outputs of at least two systems "
                                  f"for each prompt; segment {key!r} has only {systems[0]!r}")
        for a, b in itertools.combinations(systems, 2):
            outputs = (Output(a, segment["outputs"][a]), Output(b, segment["outputs"][b]))
            items.append(Item(ext_id=f"{key}|{a}|{b}", outputs=outputs, **common))
    return items


def _expected(value, kind: str, criteria: tuple[str, ...], where: str) -> dict:
    allowed = allowed_values(kind)
    per_criterion = value if isinstance(value, dict) else {c: value for c in criteria}
    unknown = set(per_criterion) - set(criteria)
    if unknown:
        raise InvalidArgument(f"{where}: 'expected' names criteria {sorted(unknown)} not in the study "
                              f"({', '.join(criteria)})")
    out = {}
    for criterion, answer in per_criterion.items():
        answer = str(answer)
        if answer not in allowed:
            raise InvalidArgument(f"{where}: expected answer {answer!r} for {criterion!r}; "
                                  f"allowed: {', '.join(allowed)}")
        out[criterion] = answer
    return out


def parse_gold(rows: list[tuple[str, dict]], kind: str, criteria: tuple[str, ...]) -> list[Item]:
    """Gold and attention-check items (see the module docstring)."""
    items = []
    for number, (where, record) in enumerate(rows):
        prompt = _text(record, "prompt", where)
        if kind == "pairwise":
            outputs = (Output("gold", _text(record, "output_a", where)), Output("gold", _text(record, "output_b", where)))
        else:
            outputs = (Output("gold", _text(record, "output", where)),)
        if "expected" not in record:
            raise InvalidArgument(f"{where}: a gold item needs 'expected' (the right answer)")
        role = "attention" if record.get("attention") else "gold"
        items.append(Item(ext_id=f"{role}-{record.get('id', number)}", segment=f"{role}-{number}", prompt=prompt,
                          outputs=outputs, system_prompt=_text(record, "system_prompt", where, False) or "",
                          role=role, expected=_expected(record["expected"], kind, criteria, where)))
    return items


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(shared dialogue, chosen reply, rejected reply) of two HH-RLHF transcripts:
    cut both at the last '\n\nAssistant:' inside their common prefix (a reply may
    itself contain that marker, so the last one of each transcript is not safe).

    ('\n\nHuman: hi\n\nAssistant: hello', '\n\nHuman: hi\n\nAssistant: go away')
    -> ('Human: hi', 'hello', 'go away')"""
    marker = "\n\nAssistant:"
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(marker)
    if cut < 0:
        raise InvalidArgument("a preference pair must share a dialogue ending in an '\\n\\nAssistant:' turn")
    return chosen[:cut].strip(), chosen[cut + len(marker):].strip(), rejected[cut + len(marker):].strip()


def preference_rows(path: Path, limit: int | None = None) -> list[tuple[str, dict]]:
    """Item-file records from chosen/rejected pairs (HH-RLHF's format): systems
    'chosen' and 'rejected' (the label the original annotators gave), one segment
    per pair, ids 'pair-0', 'pair-1', ... in file order."""
    rows = []
    for number, (where, record) in enumerate(read_jsonl(path)):
        if limit is not None and number >= limit:
            break
        for key in ("chosen", "rejected"):
            if not isinstance(record.get(key), str):
                raise InvalidArgument(f"{where}: a preference pair needs string fields 'chosen' and 'rejected'")
        try:
            prompt, chosen, rejected = split_pair(record["chosen"], record["rejected"])
        except InvalidArgument as error:
            raise InvalidArgument(f"{where}: {error}") from None
        rows.append((where, {"id": f"pair-{number}", "prompt": prompt, "system": "chosen", "output": chosen}))
        rows.append((where, {"id": f"pair-{number}", "prompt": prompt, "system": "rejected", "output": rejected}))
    return rows
