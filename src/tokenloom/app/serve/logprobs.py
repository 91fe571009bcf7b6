"""Log probabilities in OpenAI's two shapes, from the runtime's `TokenLogprob`s.

A token's entry is (text, logprob, alternatives): the logprob is log P under the
model's raw distribution (before temperature or filters), the alternatives the
most likely tokens at that position as (text, id, logprob). Completions list, per
token, a dict of the alternatives plus the chosen token (so up to logprobs + 1
keys, as OpenAI documents); chat lists exactly `top_logprobs` alternatives.

Token text is each token decoded alone; a token that holds only part of a UTF-8
character reads as U+FFFD there, and `bytes` are the UTF-8 bytes of that text.
"""

from __future__ import annotations

import torch

from tokenloom.app.serve.schemas import ChatLogprobs, CompletionLogprobs, TokenLogprobOut, TopLogprob

Entry = tuple[str, float | None, list[tuple[str, int, float]] | None]


def entries(logprobs) -> list[Entry]:
    """(text, logprob, alternatives) of each generated token's `TokenLogprob`."""
    return [(t.token, t.logprob, list(t.top)) for t in logprobs or ()]


def prompt_entries(lm, ids: list[int], top: int) -> list[Entry]:
    """The prompt's own tokens, teacher-forced: log P(x_t | x_<t); the first token has none (null).

    lm.logits(ids) is (T, V) with row t scoring token t + 1, so token t reads row t - 1.
    """
    text = lm.tokenizer.token_text
    with torch.inference_mode():
        logp = torch.log_softmax(lm.logits(ids).float(), dim=-1)[:-1]  # (T-1, V)
        chosen = logp.gather(1, torch.tensor(ids[1:], dtype=torch.long)[:, None])[:, 0].tolist()  # (T-1,)
        values, index = logp.topk(top, dim=-1) if top else (None, None)  # (T-1, top)
    out: list[Entry] = [(text(ids[0]), None, None)]
    for t in range(1, len(ids)):
        alternatives = []
        if top:
            alternatives = [(text(j), j, v) for v, j in zip(values[t - 1].tolist(), index[t - 1].tolist())]
        out.append((text(ids[t]), chosen[t - 1], alternatives))
    return out


def completion_logprobs(items: list[Entry], offset: int = 0) -> CompletionLogprobs:
    """OpenAI's completions shape; `offset` is where the first token's text starts in the choice's text."""
    tokens, values, tops, offsets = [], [], [], []
    for token, logprob, alternatives in items:
        tokens.append(token)
        values.append(logprob)
        offsets.append(offset)
        offset += len(token)
        if alternatives is None:
            tops.append(None)
            continue
        top = {text: value for text, _, value in alternatives}
        top.setdefault(token, logprob)
        tops.append(top)
    return CompletionLogprobs(tokens=tokens, token_logprobs=values, top_logprobs=tops, text_offset=offsets)


def text_length(items: list[Entry]) -> int:
    """How far `completion_logprobs` moves the text offset over these tokens."""
    return sum(len(token) for token, _, _ in items)


def chat_logprobs(items: list[Entry]) -> ChatLogprobs:
    """OpenAI's chat shape: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}."""
    content = []
    for token, logprob, alternatives in items:
        top = [TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, _, v in alternatives or ()]
        content.append(TokenLogprobOut(token=token, logprob=logprob, bytes=list(token.encode()), top_logprobs=top))
    return ChatLogprobs(content=content)
