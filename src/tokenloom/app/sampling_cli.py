"""`tokenloom generate`'s sampling flags, derived from SamplingParams' declarations.

Every declared field becomes one option (`top_p` -> `--top-p`), with the declaration's
help text and range and None as its default, meaning "the library's default": the CLI
never restates a default or a range. Shapes the command line cannot spell directly:

    logit_bias             --logit-bias ID=BIAS (repeatable)
    stop, stop_token_ids,
    dry_sequence_breakers  repeatable options
    samplers               one string, steps separated by ';' or ',' (as llama.cpp's --samplers)
    json_schema, grammar   --json-schema FILE, --grammar FILE: the file's text
    choice                 --choice a,b,c: one string split at ','
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tokenloom.generation.options import declared_fields
from tokenloom.generation.params import SamplingParams

# Where the CLI's own default differs from the library's, and why.
CLI_DEFAULTS = {"max_tokens": 64}  # a command-line continuation is read by a person: longer than 16
SHORT_FLAGS = {"n": "-n"}
_LIST_OF = {"stop": str, "dry_sequence_breakers": str, "stop_token_ids": int, "logit_bias": str}
_FROM_FILE = ("json_schema", "grammar")  # the flag names a file holding the value


def _cli_type(name: str, annotation: Any) -> Any:
    text = str(annotation)
    if name in _LIST_OF:
        return Optional[list[_LIST_OF[name]]]
    if name in ("samplers", "choice"):
        return Optional[str]
    for kind in (bool, float, int, str):
        if kind.__name__ in text:
            return Optional[kind]
    raise TypeError(f"no command-line shape for SamplingParams.{name}: {annotation}")


def _help(field: dataclasses.Field, declared) -> str:
    default = CLI_DEFAULTS.get(field.name, field.default)
    shown = json.dumps(list(default) if isinstance(default, tuple) else default)
    allowed = f" {declared.allowed()}." if declared.allowed() else ""
    extra = " Repeatable, ID=BIAS." if field.name == "logit_bias" else " Repeatable." \
        if field.name in _LIST_OF else " Takes a FILE." if field.name in _FROM_FILE else \
        " Comma-separated: a,b,c." if field.name == "choice" else ""
    return f"{declared.help}.{allowed}{extra} Default: {shown}."


def sampling_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per declared SamplingParams field, annotated for typer."""
    hints = {f.name: f.type for f in dataclasses.fields(SamplingParams)}
    out = []
    for field, declared in declared_fields(SamplingParams):
        if not declared.cli:
            continue
        flags = [f"--{field.name.replace('_', '-')}"] + ([SHORT_FLAGS[field.name]] if field.name in SHORT_FLAGS
                                                         else [])
        if "bool" in str(hints[field.name]):
            flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
        option = typer.Option(*flags, help=_help(field, declared), rich_help_panel="Sampling")
        annotation = Annotated[_cli_type(field.name, hints[field.name]), option]
        out.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                     annotation=annotation))
    return out


def _logit_bias(pairs: list[str]) -> dict[int, float]:
    bias = {}
    for pair in pairs:
        token, sep, value = pair.partition("=")
        try:
            bias[int(token)] = float(value)
        except ValueError:
            raise typer.BadParameter(f"--logit-bias takes ID=BIAS (e.g. 50256=-100), got {pair!r}") from None
        if not sep:
            raise typer.BadParameter(f"--logit-bias takes ID=BIAS (e.g. 50256=-100), got {pair!r}")
    return bias


def sampling_params(options: dict[str, Any]) -> SamplingParams:
    """SamplingParams from the parsed flags: the ones given, the CLI's defaults, the library's for the rest."""
    given = {**CLI_DEFAULTS, **{name: value for name, value in options.items() if value is not None}}
    if "logit_bias" in given:
        given["logit_bias"] = _logit_bias(given["logit_bias"])
    for name in _FROM_FILE:
        if name in given:
            given[name] = _read(name, given[name])
    if "choice" in given:
        given["choice"] = [part.strip() for part in given["choice"].split(",") if part.strip()]
    return SamplingParams(**given)


def _read(name: str, path: str) -> str:
    flag = f"--{name.replace('_', '-')}"
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise typer.BadParameter(f"{flag} takes the path of a UTF-8 text file; cannot read {path!r}: "
                                 f"{error.strerror if isinstance(error, OSError) else error}") from None


def with_sampling_options(command):
    """Give `command` (which takes **sampling) the derived flags, after its own parameters."""
    hints = typing.get_type_hints(command, include_extras=True)  # the command's own Annotated options
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()
           if p.kind != inspect.Parameter.VAR_KEYWORD]
    parameters = own + sampling_parameters()
    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command
