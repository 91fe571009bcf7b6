"""`tokenloom demo`: the tour of next-token prediction and decoding on a real model.

Seeded throughout, so it prints the same every time on the same machine.
"""

from __future__ import annotations

import torch
from rich.table import Table

from tokenloom.app.render import console, print_explanation, print_next_tokens, shown

PROMPT = "The cat sat on the"
TEMPERATURES = (0.5, 1.0, 1.5, 2.0)
SEED = 0


def strategies(max_tokens: int):
    """The decoding strategies compared side by side: (name, SamplingParams)."""
    from tokenloom.generation.params import SamplingParams

    common = dict(max_tokens=max_tokens, seed=SEED)
    return [
        ("greedy", SamplingParams(temperature=0, **common)),
        ("full sampling (T=1)", SamplingParams.full_random(**common)),
        ("top-k (k=5)", SamplingParams(top_k=5, **common)),
        ("top-p (p=0.9)", SamplingParams(top_p=0.9, **common)),
        ("T=0.5", SamplingParams(temperature=0.5, **common)),
        ("T=1.5", SamplingParams(temperature=1.5, **common)),
    ]


def repetition_rate(token_ids: list[int], n: int = 3) -> float:
    """Share of the n-grams of a continuation that repeat an earlier n-gram of it."""
    from tokenloom.metrics import repetition_rate as rate

    return rate(token_ids, n=n)


def temperature_table(logits=(10.0, 5.0, 1.0)) -> Table:
    """P_i = exp(l_i/T) / Σ_j exp(l_j/T) for a toy vector of logits, computed live."""
    values = torch.tensor(logits, dtype=torch.float64)
    table = Table(title=f"Temperature reshapes the distribution of logits {list(logits)}")
    table.add_column("T", justify="right")
    for logit in logits:
        table.add_column(f"P(l={logit:g})", justify="right")
    for t in TEMPERATURES:
        probs = torch.softmax(values / t, dim=0).tolist()
        table.add_row(f"{t:g}", *(f"{p:.2%}" for p in probs))
    return table


def plot_temperatures(lm, path: str, top: int = 12) -> None:
    """A bar chart per temperature of the real next-token distribution after PROMPT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logits = lm.next_token_logits(PROMPT)
    ids = torch.softmax(logits, -1).topk(top).indices
    labels = [shown(lm.tokenizer.token_text(int(i))) for i in ids]
    fig, axes = plt.subplots(1, len(TEMPERATURES), figsize=(4 * len(TEMPERATURES), 4), sharex=True, sharey=True)
    for ax, t in zip(axes, TEMPERATURES):
        probs = torch.softmax(logits / t, -1)[ids]
        ax.barh(range(top), probs.tolist()[::-1], color="#4c72b0")
        ax.set_yticks(range(top), labels[::-1])
        ax.set_title(f"T = {t:g}  (top {top} hold {probs.sum():.0%})")
        ax.set_xlabel("probability")
    fig.suptitle(f"P(next token | {PROMPT!r}) at each temperature")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(model: str, out: str, max_tokens: int) -> None:
    import tokenloom as tl
    from tokenloom.generation.params import SamplingParams

    torch.manual_seed(SEED)
    with console.status(f"loading {model}"):
        lm = tl.load(model)
    console.print(f"[bold]{lm!r}[/bold]\n")
    print_next_tokens(PROMPT, lm.next_token_distribution(PROMPT, top=10))

    table = Table(title=f"{PROMPT!r} continued under each strategy (seed {SEED}, {max_tokens} tokens)")
    table.add_column("strategy")
    table.add_column("continuation")
    table.add_column("3-gram repetition", justify="right")
    with console.status("generating"):
        completions = lm.generate_batch([(PROMPT, params) for _, params in strategies(max_tokens)])
    for (name, _), completion in zip(strategies(max_tokens), completions):
        rate = repetition_rate(completion.token_ids)
        table.add_row(name, completion.text.replace("\n", " ⏎ "), f"{rate:.0%}")
    console.print(table)
    console.print("Greedy decoding always takes the argmax, so once a phrase repeats it tends to loop.\n")

    console.print(temperature_table())
    chain = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, min_p=0.02, seed=SEED)
    steps = lm.explain(PROMPT, chain, top=5)
    print_explanation(steps, lm.tokenizer.token_text, "The sampling chain, step by step (T=0.8, top-k 50, top-p 0.9, min-p 0.02)")
    plot_temperatures(lm, out)
    console.print(f"\nPlot of the next-token distribution at T = {', '.join(map(str, TEMPERATURES))}: {out}")
