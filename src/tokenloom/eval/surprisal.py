"""Surprisal maps: each token of a text coloured by how unexpected it was.

    surprisal(x_t) = -log2 P(x_t | x_<t)   bits

0 bits: the model was certain; 1 bit: a coin flip; 10 bits: about 1 in 1000.
`surprisal_map` scores a text with the perplexity windows and keeps, for every
token, its surprisal and the model's likeliest alternatives at that position;
`render_html` writes a page (hover a token to see the alternatives) and
`plot_png` draws surprisal along the text. The first token of a text is context
only (unless bos=True) and is shown without a colour.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from tokenloom.eval.perplexity import PerplexityResult, encode_texts, perplexity
from tokenloom.eval.scoring import ScoredBatch


@dataclass
class TokenSurprisal:
    text: str
    id: int
    bits: float | None  # None for a token that is context only
    top: list[tuple[str, float]] = field(default_factory=list)  # (token text, probability)


def surprisal_map(
    lm, text: str, *, context=None, stride=None, batch_size: int | None = None, bos: bool = False, top: int = 5
) -> tuple[list[TokenSurprisal], PerplexityResult]:
    """Per-token surprisal of `text` with its `top` alternatives, and the text's perplexity."""
    ids = encode_texts(lm, [text], bos)[0].tolist()
    token_text = lm.tokenizer.token_text
    tokens = [TokenSurprisal(token_text(i), i, None) for i in ids]

    def keep(scored: ScoredBatch) -> None:
        for m, position in enumerate(scored.position.tolist()):
            entry = tokens[position]
            entry.bits = float(scored.nll[m]) / math.log(2)
            if scored.top_ids is not None:
                pairs = zip(scored.top_ids[m].tolist(), scored.top_logp[m].tolist())
                entry.top = [(token_text(j), math.exp(lp)) for j, lp in pairs]

    result = perplexity(
        lm, text, context=context, stride=stride, batch_size=batch_size, bos=bos, top=top, on_batch=keep
    )
    return tokens, result


def colour(bits: float | None, scale: float = 12.0) -> str:
    """White (0 bits) to red (>= scale bits); grey for unscored tokens.

    >>> colour(0.0), colour(12.0)
    ('rgb(255,255,255)', 'rgb(255,80,80)')
    """
    if bits is None:
        return "rgb(225,225,225)"
    level = min(max(bits / scale, 0.0), 1.0)
    fade = round(255 - 175 * level)
    return f"rgb(255,{fade},{fade})"


def _token_span(token: TokenSurprisal) -> str:
    if token.bits is None:
        tip = "context only (not scored)"
    else:
        alternatives = "\n".join(f"{text!r}  p={prob:.3f}" for text, prob in token.top)
        tip = f"{token.text!r}: {token.bits:.2f} bits\n{alternatives}"
    body = html.escape(token.text).replace("\n", "↵<br>")
    return f'<span style="background:{colour(token.bits)}" title="{html.escape(tip, quote=True)}">{body}</span>'


def render_html(tokens: list[TokenSurprisal], result: PerplexityResult, title: str = "Surprisal map") -> str:
    """A standalone page: tokens coloured by surprisal, alternatives in each token's tooltip."""
    spans = "".join(_token_span(t) for t in tokens)
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "#text{font-family:monospace;white-space:pre-wrap;line-height:1.7}"
        "span:hover{outline:1px solid #333}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>perplexity {result.perplexity:.3f} over {result.tokens} tokens "
        f"({result.bits_per_byte:.4f} bits per byte). Colour: surprisal -log2 p, white = 0 bits, "
        "red = 12 bits or more, grey = not scored. Hover a token for the model's top alternatives.</p>"
        f"<p><small>{html.escape(result.signature)}</small></p>"
        f"<div id='text'>{spans}</div></body></html>\n"
    )


def plot_png(tokens: list[TokenSurprisal], path: str | Path, title: str = "Surprisal along the text") -> None:
    """Surprisal (bits) against token position, with a moving average over 50 tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(i, t.bits) for i, t in enumerate(tokens) if t.bits is not None]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    window = min(50, len(ys))
    smooth = [sum(ys[max(0, i - window + 1) : i + 1]) / len(ys[max(0, i - window + 1) : i + 1]) for i in range(len(ys))]
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot(xs, ys, linewidth=0.5, alpha=0.5, label="token")
    ax.plot(xs, smooth, linewidth=1.5, label=f"mean of the last {window}")
    ax.set_xlabel("token position")
    ax.set_ylabel("surprisal (bits)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
