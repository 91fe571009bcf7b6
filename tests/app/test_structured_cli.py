"""`tokenloom generate --json-schema FILE | --regex | --choice a,b,c | --grammar FILE`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

from tokenloom.app.sampling_cli import sampling_params

pytest.importorskip("llguidance")
SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}


def test_the_structured_flags_parse_into_sampling_params(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    grammar = tmp_path / "yesno.gbnf"
    grammar.write_text('root ::= "yes" | "no"\n')
    assert json.loads(sampling_params({"json_schema": str(schema)}).json_schema) == SCHEMA
    assert sampling_params({"grammar": str(grammar)}).grammar == 'root ::= "yes" | "no"\n'
    assert sampling_params({"choice": "red, green,blue"}).choice == ("red", "green", "blue")
    assert sampling_params({"regex": "[0-9]+", "json_object": False}).regex == "[0-9]+"


def test_a_missing_schema_file_is_named(tmp_path):
    with pytest.raises(typer.BadParameter, match="--json-schema takes the path of a UTF-8 text file"):
        sampling_params({"json_schema": str(tmp_path / "absent.json")})


@pytest.mark.slow
def test_generate_with_a_schema_file_prints_json_that_follows_it(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    run = subprocess.run([sys.executable, "-c", "from tokenloom.app.cli import main; main()", "generate", "--chat",
                          "Is the sky blue?", "--json-schema", str(schema), "--temperature", "0", "--max-tokens", "20"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["answer"] in ("yes", "no")
    bad = subprocess.run([sys.executable, "-c", "from tokenloom.app.cli import main; main()", "generate", "x",
                          "--regex", "a(b"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unclosed group" in bad.stderr
