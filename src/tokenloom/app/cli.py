"""The `tokenloom` command line.

Each command parses its options, builds the library's own dataclasses, calls one
library function and prints. Heavy imports (torch, the model) happen inside the
commands, so `tokenloom --help` and `tokenloom score ...` start fast.
"""

import sys

import typer

from tokenloom.app.eval_cli import classify_command, eval_app
from tokenloom.app.score_cli import score_app
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
app.command("classify")(classify_command)
app.command("train")(train_command)


def main() -> None:
    """Run the CLI; our own errors become one line on stderr and exit code 2."""
    try:
        app()
    except (TokenloomError, ValueError, FileNotFoundError, UnicodeDecodeError) as error:
        print(f"tokenloom: error: {error}", file=sys.stderr)
        sys.exit(2)
