"""What a run reports: metrics.jsonl, loss.png and a `rich` progress bar.

`metrics.jsonl` holds one JSON object per evaluation:
{"step", "train_loss", "val_loss", "lr", "ms_per_step", "tokens_per_s"}; train_loss is the
mean loss of the training micro-batches since the previous evaluation (null at step 0). The
step-0 entry of a compiled run also holds "compile_s", the seconds torch.compile took.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def read_metrics(out: Path) -> list[dict]:
    """The entries of out/metrics.jsonl; a line cut short by a kill is skipped."""
    path = out / METRICS_FILE
    entries = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


class Logbook:
    """Metrics and progress; only the main process writes or draws anything."""

    def __init__(self, out: Path, total_steps: int, start_step: int, enabled: bool, show_progress: bool = True):
        self.out, self.enabled = out, enabled
        self.entries = [e for e in read_metrics(out) if e["step"] <= start_step] if start_step else []
        if enabled:
            out.mkdir(parents=True, exist_ok=True)
            (out / METRICS_FILE).write_text("".join(json.dumps(e) + "\n" for e in self.entries))
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} tok/s"), TimeRemainingColumn(), console=self.console,
            disable=not (enabled and show_progress), transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step, loss="-", speed="-")

    def __enter__(self) -> "Logbook":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def advance(self, loss: float | None = None, tokens_per_s: float | None = None) -> None:
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if tokens_per_s is not None:
            fields["speed"] = f"{tokens_per_s:,.0f}"
        self.progress.update(self.task, advance=1, **fields)

    def note(self, text: str) -> None:
        """Print one line (main process only), unwrapped and as written (a path may hold "[...]")."""
        if self.enabled:
            self.console.print(text, soft_wrap=True, markup=False, highlight=False)

    def record(self, entry: dict) -> None:
        """Append one evaluation to metrics.jsonl and print it."""
        self.entries.append(entry)
        if not self.enabled:
            return
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")
        train = "-" if entry["train_loss"] is None else f"{entry['train_loss']:.4f}"
        self.console.print(
            f"step {entry['step']}: train loss {train}, val loss {entry['val_loss']:.4f}, "
            f"{entry['ms_per_step']:.1f} ms/step, {entry['tokens_per_s']:,.0f} tokens/s"
        )

    def finish(self) -> None:
        """Draw loss.png from every entry of the run (also those before a resume)."""
        if self.enabled and self.entries:
            plot_losses(self.entries, self.out / PLOT_FILE)


def plot_losses(entries: list[dict], path: Path) -> None:
    """Train and validation loss against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    train = [(e["step"], e["train_loss"]) for e in entries if e["train_loss"] is not None]
    if train:
        ax.plot(*zip(*train), label="train")
    ax.plot([e["step"] for e in entries], [e["val_loss"] for e in entries], label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
