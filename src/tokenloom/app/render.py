"""Terminal rendering with `rich`: next-token tables, sampling steps, strategy comparisons."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def shown(token: str) -> str:
    """A token as text a reader can see: spaces and newlines made visible."""
    return repr(token)[1:-1].replace(" ", "␣")


def bar(prob: float, width: int = 30) -> str:
    return "█" * max(int(round(prob * width)), 1 if prob > 0 else 0)


def print_next_tokens(text: str, table, title: str | None = None) -> None:
    out = Table(title=title or f"P(next token | {text!r})")
    out.add_column("rank", justify="right")
    out.add_column("token")
    out.add_column("id", justify="right")
    out.add_column("prob", justify="right")
    out.add_column("")
    for rank, row in enumerate(table, 1):
        out.add_row(str(rank), shown(row.token), str(row.id), f"{row.prob:.2%}", bar(row.prob))
    console.print(out)


def print_explanation(steps, token_text, title: str, top: int = 5) -> None:
    """One row per processor: tokens kept, mass kept, the top candidates after it."""
    out = Table(title=title)
    out.add_column("step")
    out.add_column("what it does")
    out.add_column("kept", justify="right")
    out.add_column("mass kept", justify="right")
    out.add_column(f"top {top} after the step")
    for step in steps:
        after = ", ".join(f"{shown(token_text(i))} {p:.1%}" for i, p in step.top_after[:top])
        out.add_row(step.name, step.detail, f"{step.kept:,}", f"{step.mass_kept:.1%}", after)
    console.print(out)
