"""`tokenloom eval perplexity ...` and `tokenloom classify ...`."""

import typer

eval_app = typer.Typer(help="Score text with the model (perplexity, surprisal maps).", no_args_is_help=True)


def classify_command() -> None:
    """Zero-shot classification by a generative model."""
    raise typer.Exit(2)
