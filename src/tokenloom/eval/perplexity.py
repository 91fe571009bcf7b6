"""Perplexity: how surprised the model is by real text.

    PPL = exp(-(1/T) Σ_t log P(x_t | x_<t))

over the T scored tokens, from one teacher-forced pass per window (windows are
laid out in `tokenloom.eval.scoring`: sliding with a stride, only the new tokens
of each window scored, as in the Hugging Face recipe; stride = context gives
disjoint windows, as in lm-evaluation-harness).

BOS handling. SmolLM2's tokenizer adds no BOS token (GGUF add_bos_token = False),
and neither does the Hugging Face recipe: by default the first token of each
text is context only and never scored, so a text of N tokens scores N - 1.
With `bos=True`, <|endoftext|> (the document separator the model was trained
with; else the tokenizer's BOS or first EOS) is put in front as context, so all
N tokens are scored: lm-evaluation-harness's convention for rolling
log-likelihoods.

Aggregation: each text (or file) is scored on its own, windows never cross texts;
the corpus perplexity is exp(Σ NLL / Σ T) over all of them (statistics are
summed, never averaged). Byte and word perplexity follow lm-evaluation-harness:

    bits_per_byte   = Σ NLL / (bytes · ln 2)
    byte_perplexity = exp(Σ NLL / bytes)
    word_perplexity = exp(Σ NLL / words)       words = whitespace-separated pieces

with bytes counted in UTF-8 over the whole text.

Tasks. `task="wikitext"` reproduces lm-evaluation-harness's `wikitext` task instead
(eval/wikitext.py): it scores the detokenized WikiText pages but counts words and
bytes on the raw ones, puts the tokenizer's BOS in front (lm-eval's prefix for
Hugging Face models; <|im_start|> for SmolLM2) and uses disjoint windows of the
model's whole context. Under torch.distributed (e.g.
`torchrun`), batches of windows are dealt to the ranks in turn and the sums are
all-reduced in float64, so every rank gets the one-process result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import tokenloom
from tokenloom.errors import InvalidArgument
from tokenloom.eval import wikitext
from tokenloom.eval.distributed import all_reduce_sums, shard
from tokenloom.eval.scoring import ScoredBatch, batches, run_batches

DEFAULT_CONTEXT = 2048
BATCH_TOKENS = 2048  # default windows per forward pass: about this many input tokens (see `check_windows`)
TASKS = ("wikitext",)  # presets that reproduce a peer's evaluation (see the module docstring)


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token, nats
    tokens: int  # tokens scored
    bits_per_byte: float
    byte_perplexity: float
    word_perplexity: float
    bytes: int
    words: int
    context: int
    stride: int
    signature: str

    def to_dict(self) -> dict:
        return asdict(self)


def perplexity_from_logprobs(logprobs: Sequence[float]) -> float:
    """exp(-(1/T) Σ log p_t) for natural-log probabilities.

    >>> round(perplexity_from_logprobs([math.log(0.5), math.log(0.25)]), 4)
    2.8284
    """
    values = [float(v) for v in logprobs]
    if not values:
        raise InvalidArgument("no log-probabilities given: perplexity needs at least one")
    if any(v > 0 or math.isnan(v) for v in values):
        raise InvalidArgument("log-probabilities must be <= 0 (natural log of a probability)")
    return math.exp(-math.fsum(values) / len(values))


def perplexity_from_probs(probs: Sequence[float]) -> float:
    """exp(-(1/T) Σ log p_t): the geometric mean of 1/p_t.

    >>> round(perplexity_from_probs([0.9, 0.8, 0.6, 0.4, 0.3, 0.2]), 4)
    2.1415
    """
    values = [float(p) for p in probs]
    if any(not 0 < p <= 1 for p in values):
        raise InvalidArgument("probabilities must lie in (0, 1]")
    return perplexity_from_logprobs([math.log(p) for p in values])


def read_texts(text_or_files) -> list[str]:
    """A str is one text; a Path is a file (UTF-8); a list may mix both."""
    items = [text_or_files] if isinstance(text_or_files, (str, Path)) else list(text_or_files)
    if not items:
        raise InvalidArgument("no text given: pass a string, a file path or a list of them")
    texts = []
    for item in items:
        if isinstance(item, Path):
            if not item.is_file():
                raise InvalidArgument(f"{item} is not a file")
            item = item.read_text(encoding="utf-8")
        if not isinstance(item, str):
            raise InvalidArgument(f"expected text (str) or a file (Path), got {type(item).__name__}")
        texts.append(item)
    return texts


def prefix_token_id(tokenizer) -> int:
    """<|endoftext|> if the vocabulary has it, else the BOS id, else the first EOS id."""
    token = tokenizer.backend.token_to_id("<|endoftext|>")
    if token is not None:
        return token
    if tokenizer.special.bos_id is not None:
        return tokenizer.special.bos_id
    if tokenizer.eos_ids:
        return tokenizer.eos_ids[0]
    raise InvalidArgument("bos=True needs a <|endoftext|>, BOS or EOS token; this tokenizer has none")


def encode_texts(lm, texts: list[str], bos: bool, prefix: int | None = None) -> list[torch.Tensor]:
    """Token ids of each text, as they will be scored: after `prefix` if given, else after
    `prefix_token_id` if bos."""
    if prefix is None and bos:
        prefix = prefix_token_id(lm.tokenizer)
    docs = []
    for i, text in enumerate(texts):
        if not text.strip():
            raise InvalidArgument(f"text {i} is empty: give some text to score")
        ids = lm.tokenizer.encode(text, add_bos=False)
        if prefix is not None:
            ids = [prefix] + ids
        if len(ids) < 2:
            raise InvalidArgument(
                f"text {i} has {len(ids)} token; perplexity needs at least 2 (one of context, one scored), "
                "or pass bos=True to score a one-token text after <|endoftext|>"
            )
        docs.append(torch.tensor(ids, dtype=torch.long))
    return docs


def check_windows(lm, context: int | None, stride: int | None, batch_size: int | None) -> tuple[int, int, int]:
    """Defaults and bounds: context <= the model's context, 1 <= stride <= context, batch_size >= 1.

    The default batch holds about BATCH_TOKENS input tokens: 4 windows of 512, 1 of 2,048.
    Larger batches gain nothing on a CPU once a pass has ~2,000 rows, and lose their
    activations' hold on the cache (measured in docs/performance.md, "Scoring").
    """
    limit = lm.config.max_seq_len
    context = min(limit, DEFAULT_CONTEXT) if context is None else int(context)
    if not 2 <= context <= limit:
        raise InvalidArgument(f"context must be between 2 and the model's context {limit}, got {context}")
    stride = max(1, context // 4) if stride is None else int(stride)
    if not 1 <= stride <= context:
        raise InvalidArgument(f"stride must be between 1 and the context ({context}), got {stride}")
    batch_size = max(1, BATCH_TOKENS // context) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be at least 1, got {batch_size}")
    return context, stride, batch_size


def signature(lm, context: int, stride: int, bos: bool | str, n_texts: int, task: str = "") -> str:
    """Every option that produced a number, sacrebleu-style; bos: a bool, or the prefix's name."""
    prefix = bos if isinstance(bos, str) else "endoftext" if bos else "no"
    return (
        f"{task}model:{lm.name or 'unnamed'}|precision:{lm.precision}|context:{context}|stride:{stride}"
        f"|bos:{prefix}|texts:{n_texts}|version:{tokenloom.__version__}"
    )


def perplexity(
    lm,
    text_or_files=None,
    *,
    context: int | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    bos: bool = False,
    task: str | None = None,
    data: str | Path | None = None,
    split: str = "test",
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    top: int = 0,
    on_batch: Callable[[ScoredBatch], None] | None = None,
) -> PerplexityResult:
    """Perplexity of `lm` on a text, a file (Path) or a list of them, or on a task's data.

    context: input tokens per window (default min(model context, 2048)); stride:
    new tokens scored per window (default context // 4; = context for disjoint
    windows); batch_size: windows per forward pass (default: about 2,048 tokens' worth); bos: see the module docstring;
    progress(done, total) is called after each batch of windows of this rank;
    on_batch receives each `ScoredBatch` (with the `top` likeliest tokens at every
    scored position when top > 0), e.g. to draw a surprisal map.

    task="wikitext": lm-evaluation-harness's wikitext task on the pages of `data` (a raw
    WikiText file; default: the local WikiText-2 file of `split`), the first `limit` of
    them; context defaults to the model's whole context, windows are disjoint.
    """
    if task is not None:
        return _wikitext(lm, text_or_files, context, stride, batch_size, bos, task, data, split, limit,
                         progress=progress, top=top, on_batch=on_batch)
    if data is not None or limit is not None:
        raise InvalidArgument("data= and limit= belong to a task (task='wikitext'); pass plain text as text_or_files")
    if text_or_files is None:
        raise InvalidArgument("no text given: pass a string, a file path or a list of them (or task='wikitext')")
    context, stride, batch_size = check_windows(lm, context, stride, batch_size)
    texts = read_texts(text_or_files)
    docs = encode_texts(lm, texts, bos)
    return _score(lm, docs, texts, context, stride, batch_size, signature(lm, context, stride, bos, len(texts)),
                  progress, top, on_batch)


def _wikitext(lm, text_or_files, context, stride, batch_size, bos, task, data, split, limit, **hooks):
    """lm-eval's wikitext task: detokenized pages scored, raw pages counted (eval/wikitext.py)."""
    if task not in TASKS:
        raise InvalidArgument(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if text_or_files is not None:
        raise InvalidArgument("task='wikitext' reads its pages from data= (a raw WikiText file), not from text")
    if bos:
        raise InvalidArgument("the wikitext task puts the tokenizer's BOS in front, as lm-eval does; leave bos out")
    context = lm.config.max_seq_len if context is None else context  # lm-eval's max_length: the model's context
    if stride is not None and stride != context:
        raise InvalidArgument(f"the wikitext task scores disjoint windows (stride = context = {context}), "
                              f"as lm-eval does; leave stride out (got {stride})")
    context, stride, batch_size = check_windows(lm, context, context, batch_size)
    pages = wikitext.load_pages(data, split, limit)
    prefix = wikitext.prefix_token_id(lm.tokenizer)
    docs = encode_texts(lm, [wikitext.detokenize(page) for page in pages], bos=False, prefix=prefix)
    source = f"split:{split}" if data is None else f"data:{Path(data).name}"
    sig = signature(lm, context, stride, lm.tokenizer.token_text(prefix), len(pages), f"task:wikitext|{source}|")
    return _score(lm, docs, pages, context, stride, batch_size, sig, **hooks)


def _score(lm, docs, counted: list[str], context, stride, batch_size, sig, progress=None, top=0, on_batch=None):
    """Score `docs` in windows; bytes and words are counted on the texts `counted`."""
    rank, world = shard()
    plan = batches(docs, context, stride, batch_size)[rank::world]
    nll_sum, tokens = 0.0, 0
    for done, scored in enumerate(run_batches(lm.model, docs, plan, top), start=1):
        if on_batch is not None:
            on_batch(scored)
        nll_sum += float(scored.nll.sum())
        tokens += scored.nll.numel()
        if progress is not None:
            progress(done, len(plan))
    nll_sum, tokens = all_reduce_sums(nll_sum, tokens)
    n_bytes = sum(len(t.encode("utf-8")) for t in counted)
    n_words = sum(map(wikitext.word_count, counted))  # as lm-evaluation-harness counts
    mean = nll_sum / tokens
    return PerplexityResult(
        perplexity=math.exp(mean), nll=mean, tokens=tokens,
        bits_per_byte=nll_sum / (n_bytes * math.log(2)), byte_perplexity=math.exp(nll_sum / n_bytes),
        word_perplexity=math.exp(nll_sum / n_words), bytes=n_bytes, words=n_words,
        context=context, stride=stride, signature=sig,
    )
