"""Structured-output constraints as SamplingParams holds them: their checks and their compilation.

The mask that enforces them during generation, and why llguidance, are in structured.py.
Everything here runs when a SamplingParams is built, so a constraint the library cannot
compile is refused before any request runs, with llguidance's words for the part it rejects.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from tokenloom.errors import InvalidArgument

KINDS = ("json_schema", "json_object", "regex", "choice", "grammar")
STATE_KEY = "structured"  # where a row's matcher lives in its TokenHistory.states dict
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
INSTALL = "pip install 'tokenloom[structured]'"


def llguidance_module():
    try:
        import llguidance
    except ImportError:
        raise InvalidArgument(f"structured output (json_schema, json_object, regex, choice, grammar) needs the "
                              f"llguidance package: {INSTALL}") from None
    return llguidance


@dataclass(frozen=True)
class Constraint:
    """One constraint of SamplingParams: its kind and its text (JSON text for a schema or a choice)."""

    kind: str
    text: str

    def describe(self) -> str:
        shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"{self.kind} {shown}"


def constraint_of(params) -> Constraint | None:
    """The constraint a SamplingParams asks for, or None. At most one is set (SamplingParams checks)."""
    if params.json_schema is not None:
        return Constraint("json_schema", params.json_schema)
    if params.json_object:
        return Constraint("json_object", '{"type": "object"}')
    if params.regex is not None:
        return Constraint("regex", params.regex)
    if params.choice is not None:
        return Constraint("choice", json.dumps(list(params.choice)))
    if params.grammar is not None:
        return Constraint("grammar", params.grammar)
    return None


def closed_objects(schema: Any, in_all_of: bool = False) -> Any:
    """The schema with `additionalProperties: false` on every object that lists properties and says
    nothing about others (xgrammar's strict mode and OpenAI's strict schemas do the same).

    Whatever it produces still validates against the schema as given; without it a small
    model invents key after key until max_tokens cuts the JSON short. Members of an allOf,
    and objects that combine their properties with allOf, anyOf, oneOf or $ref, are left
    open, since there one part lists only some of the properties.
    {"properties": {"a": {}}} -> {"properties": {"a": {}}, "additionalProperties": false}
    """
    if isinstance(schema, list):
        return [closed_objects(item, in_all_of) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed_objects(value, key == "allOf") if key != "properties" else
           {name: closed_objects(sub) for name, sub in value.items()} if isinstance(value, dict) else value
           for key, value in schema.items()}
    opens = ("additionalProperties", "patternProperties", "unevaluatedProperties", "allOf", "anyOf", "oneOf",
             "$ref")
    if "properties" in out and not in_all_of and not any(key in out for key in opens):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=256)
def compile_grammar(kind: str, text: str) -> str:
    """The llguidance grammar of a constraint, checked; InvalidArgument names what it rejects.

    compile_grammar("regex", "a(b") raises "regex: llguidance cannot compile it: ...
    unclosed group". Cached, so a schema used by many requests is compiled once.
    """
    llg = llguidance_module()
    try:
        if kind in ("json_schema", "json_object"):
            schema = json.dumps(closed_objects(json.loads(text)))
            grammar = llg.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
        elif kind == "choice":
            grammar = llg.grammar_from("choice", text)
        else:  # regex, grammar (llguidance tells GBNF from Lark itself)
            grammar = llg.grammar_from(kind, text)
    except ValueError as error:
        raise InvalidArgument(f"{kind}: llguidance cannot read it: {error}") from None
    problem = llg.LLMatcher.validate_grammar(grammar)
    if problem:
        raise InvalidArgument(f"{kind}: llguidance cannot compile it: {problem.strip()}")
    return grammar


# -- checks SamplingParams runs on its fields ------------------------------------------
def check_json_schema(name: str, value: Any) -> str | None:
    """A JSON schema (a dict, or its JSON text) as compact JSON text, key order kept; compiled once here."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidArgument(f"{name} must be a JSON schema (an object), got text that is not JSON: "
                                  f"{error}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be a JSON schema (an object such as {{\"type\": \"object\"}}), "
                              f"got {type(value).__name__}")
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"{name} must hold JSON values only: {error}") from None
    compile_grammar(name, text)
    return text


def check_pattern(name: str, value: Any) -> str | None:
    """A regular expression or a grammar: a non-empty string that llguidance compiles."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{name} must be a non-empty string, got {value!r}")
    compile_grammar(name, value)
    return value


def check_choice(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(s, str) and s for s in value):
        raise InvalidArgument(f"{name} must be a non-empty list of non-empty strings, got {value!r}")
    compile_grammar(name, json.dumps(list(value)))
    return tuple(value)


def check_constraints(params) -> None:
    """At most one constraint; none together with the semantic guard, whose rollbacks a matcher cannot follow."""
    given = [kind for kind in KINDS if getattr(params, kind) not in (None, False)]
    if len(given) > 1:
        raise InvalidArgument(f"give at most one of {', '.join(KINDS)}; got {', '.join(given)}")
    if given and params.semantic_repetition_threshold is not None:
        raise InvalidArgument(f"{given[0]} cannot run with semantic_repetition_threshold: the guard's "
                              "rollbacks would take back tokens the constraint already accepted")
