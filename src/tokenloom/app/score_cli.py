"""`tokenloom score ...`: reference metrics from the command line."""

import typer

score_app = typer.Typer(help="Score hypotheses against references (BLEU, chrF, ROUGE, diversity).", no_args_is_help=True)
