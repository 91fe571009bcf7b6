"""The `tokenloom` command line.

Each command parses its options, builds the library's own dataclasses, calls one
library function and prints. Heavy imports (torch, the model) happen inside the
commands, so `tokenloom --help` and `tokenloom score ...` start fast.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from tokenloom.app.eval_cli import classify_command, eval_app
from tokenloom.human.cli import human_app
from tokenloom.app.rag_cli import rag_app
from tokenloom.app.sampling_cli import sampling_params, with_sampling_options
from tokenloom.app.score_cli import score_app
from tokenloom.app.serve.config import ServeConfig
from tokenloom.app.train_cli import train_command
from tokenloom.errors import TokenloomError

app = typer.Typer(
    help="tokenloom: autoregressive language models, one token at a time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(score_app, name="score")
app.add_typer(eval_app, name="eval")
app.add_typer(rag_app, name="rag")
app.add_typer(human_app, name="human")
app.command("classify")(classify_command)
app.command("train")(train_command)

DEFAULT_MODEL = "smollm2-135m-instruct"
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Name, .gguf file, HF folder or checkpoint.")]
PrecisionOption = Annotated[str, typer.Option(
    help="auto (native for GGUF files, else float32) | native | float32 | bfloat16")]
DeviceOption = Annotated[str, typer.Option(
    help="cpu | cuda | cuda:N (on CUDA a GGUF file's auto precision is bfloat16)")]


def _load(model: str, precision: str, compile: bool = False, speculative: str | None = None,
          draft_tokens: int | None = None, device: str = "cpu"):
    import tokenloom as tl

    return tl.load(model, precision=precision, compile=compile, speculative=speculative, draft_tokens=draft_tokens,
                   device=device)


@app.command("next")
def next_command(
    text: Annotated[str, typer.Argument(help="The text whose next token is predicted.")],
    top: Annotated[int, typer.Option(help="How many tokens to list.")] = 10,
    temperature: Annotated[float, typer.Option(help="P_i = exp(l_i/T) / Σ_j exp(l_j/T)")] = 1.0,
    model: ModelOption = DEFAULT_MODEL,
    precision: PrecisionOption = "auto",
    device: DeviceOption = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {token, id, prob}.")] = False,
) -> None:
    """The most likely next tokens and their probabilities."""
    table = _load(model, precision, device=device).next_token_distribution(text, top=top, temperature=temperature)
    if as_json:
        print(json.dumps([row.to_dict() for row in table], ensure_ascii=False))
        return
    from tokenloom.app.render import print_next_tokens

    print_next_tokens(text, table)


def generate_command(
    prompts: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    model: ModelOption = DEFAULT_MODEL,
    precision: PrecisionOption = "auto",
    device: DeviceOption = "cpu",
    chat: Annotated[bool, typer.Option(help="Send the prompt as a user message through the chat template.")] = False,
    stream: Annotated[bool, typer.Option(help="Print text as it is generated.")] = False,
    compile: Annotated[bool, typer.Option(
        "--compile", help="Compile the decode step with torch.compile: faster steps after a one-time compilation.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON: text, token_ids, finish_reason, stop_reason, token counts, logprobs.")] = False,
    beams: Annotated[Optional[int], typer.Option(
        help="Beam search with this many beams instead of sampling: prints every hypothesis, best first, "
             "with its score.", rich_help_panel="Beam search")] = None,
    length_penalty: Annotated[float, typer.Option(
        help="Beam score = Σ log P / length ** this.", rich_help_panel="Beam search")] = 1.0,
    early_stopping: Annotated[str, typer.Option(
        help="false | true | never (as transformers' generate).", rich_help_panel="Beam search")] = "false",
    speculative: Annotated[Optional[str], typer.Option(
        help="ngram: draft tokens by prompt lookup and verify them in one pass (same output, fewer passes).",
        rich_help_panel="Speculative decoding")] = None,
    draft_tokens: Annotated[Optional[int], typer.Option(
        help="Tokens drafted per step under --speculative (default 5).",
        rich_help_panel="Speculative decoding")] = None,
    **sampling,
) -> None:
    """Continue one or more prompts with the chosen decoding strategy (every SamplingParams field is a flag)."""
    if beams is not None:
        search = _beam_params(beams, length_penalty, early_stopping, sampling)
    params = sampling_params(sampling)
    lm = _load(model, precision, compile, speculative, draft_tokens, device)
    if chat:
        prompts = [lm.tokenizer.apply_chat_template([{"role": "user", "content": p}]) for p in prompts]
    if beams is not None:
        _print_beams(lm, prompts, search, as_json, chat)
        return
    if stream:
        if as_json or len(prompts) != 1 or params.n != 1:
            raise typer.BadParameter("--stream takes one prompt, n = 1 and no --json")
        for piece in lm.stream(prompts[0], params):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    completions = lm.generate(prompts, params)
    if as_json:
        payload = [c.to_dict() for c in completions]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, ensure_ascii=False))
        return
    for i, completion in enumerate(completions):
        print(completion.text if chat else prompts[i // params.n] + completion.text)
        if len(completions) > 1:
            print("---")


app.command("generate")(with_sampling_options(generate_command))

_EARLY_STOPPING = {"false": False, "true": True, "never": "never"}


def _beam_params(beams: int, length_penalty: float, early_stopping: str, sampling: dict):
    """BeamParams from the flags; sampling flags (other than --max-tokens) have no meaning there."""
    from tokenloom.errors import InvalidArgument
    from tokenloom.generation.beam import BeamParams

    given = sorted(f"--{k.replace('_', '-')}" for k, v in sampling.items() if v is not None and k != "max_tokens")
    if given:
        raise InvalidArgument(f"--beams runs beam search, which takes --max-tokens, --length-penalty and "
                              f"--early-stopping; drop {', '.join(given)}")
    if early_stopping.lower() not in _EARLY_STOPPING:
        raise InvalidArgument(f"--early-stopping must be false, true or never, got {early_stopping!r}")
    max_tokens = sampling.get("max_tokens") or sampling_params({}).max_tokens
    return BeamParams(beams, max_tokens, length_penalty, _EARLY_STOPPING[early_stopping.lower()])


def _print_beams(lm, prompts: list[str], search, as_json: bool, chat: bool) -> None:
    results = [lm.beam_search(p, search.beam_width, search.max_tokens, search.length_penalty,
                              search.early_stopping) for p in prompts]
    if as_json:
        payload = [[b.to_dict() for b in beams] for beams in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, ensure_ascii=False))
        return
    for prompt, beams in zip(prompts, results):
        for b in beams:
            print(f"[{b.score:.4f}] " + (b.text if chat else prompt + b.text))
        print("---")


_SERVE = ServeConfig()  # the serve command's defaults are the config's declarations


@app.command("serve")
def serve_command(
    model: ModelOption = _SERVE.model,
    host: Annotated[str, typer.Option(help="Address to listen on; put a proxy or load balancer in front "
                                           "rather than exposing it.")] = _SERVE.host,
    port: Annotated[int, typer.Option(help="TCP port.")] = _SERVE.port,
    precision: PrecisionOption = _SERVE.precision,
    device: DeviceOption = _SERVE.device,
    compile: Annotated[bool, typer.Option(
        "--compile", help="Compile the decode step with torch.compile (slow first request).")] = _SERVE.compile,
    max_running: Annotated[Optional[int], typer.Option(
        help="Sequences decoded together (default: the runtime's).")] = _SERVE.max_running,
    max_queue: Annotated[Optional[int], typer.Option(
        help="Sequences waiting for a slot before requests get 429 (default: the runtime's).")] = _SERVE.max_queue,
    prefix_cache: Annotated[bool, typer.Option(
        help="Reuse the KV cache of prompt prefixes seen before.")] = _SERVE.prefix_cache,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="TOKENLOOM_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1/* and /tokenize.")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413.")] = _SERVE.max_body_bytes,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """An OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /metrics."""
    from tokenloom.app.serve.server import run

    run(ServeConfig(model=model, host=host, port=port, precision=precision, device=device, compile=compile,
                    max_running=max_running, max_queue=max_queue, prefix_cache=prefix_cache, api_key=api_key,
                    max_body_bytes=max_body_bytes), log_level=log_level)


@app.command("demo")
def demo_command(
    model: ModelOption = DEFAULT_MODEL,
    out: Annotated[str, typer.Option(help="Where to write the temperature plot (PNG).")] = "tokenloom-demo.png",
    max_tokens: Annotated[int, typer.Option(help="Tokens per continuation.")] = 60,
) -> None:
    """A tour: next-token table, every decoding strategy side by side, temperature at work."""
    from tokenloom.app.demo import run_demo

    run_demo(model, out, max_tokens)


@app.command("doctor")
def doctor_command() -> None:
    """This machine's CPU, compiler and PyTorch, and which fast paths tokenloom uses on them."""
    from tokenloom.app.doctor import run

    run()


def main() -> None:
    """Run the CLI; our own errors become one line on stderr and exit code 2."""
    try:
        app()
    except (TokenloomError, ValueError, FileNotFoundError, UnicodeDecodeError) as error:
        print(f"tokenloom: error: {error}", file=sys.stderr)
        sys.exit(2)
