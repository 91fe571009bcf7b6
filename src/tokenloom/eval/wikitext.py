"""WikiText-2 as lm-evaluation-harness 0.4.13 scores it (its `wikitext` task).

lm-eval's task reads `EleutherAI/wikitext_document_level` (wikitext-2-raw-v1): one
document per article, the raw lines from a top-level heading ` = Title = ` to the
line before the next one. It scores the *detokenized* page (WikiText's spaced
punctuation and `@-@` escapes undone, `detokenize` below) as one rolling
log-likelihood, but counts words and bytes on the *raw* page:

    word_perplexity = exp(Σ NLL / Σ words(raw))      words = len(re.split(r"\\s+", raw))
    byte_perplexity = exp(Σ NLL / Σ bytes(raw))      bytes = len(raw.encode("utf-8"))
    bits_per_byte   = Σ NLL / (Σ bytes(raw) · ln 2)

with the sums over pages (weighted, not a mean of per-page values). Windows are
disjoint and as long as the model's context; the first token of each page is
scored after a prefix token, lm-eval's `prefix_token_id` for Hugging Face models:
the tokenizer's BOS, else its EOS (for SmolLM2 that is BOS `<|im_start|>`, where
tokenloom's own `bos=True` uses `<|endoftext|>`).

The pages are built here from the raw file (`wiki.test.raw`, ...) the same way the
document-level data set builds them, so the task runs offline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tokenloom.errors import InvalidArgument

SPLIT_FILES = {"train": "wiki.train.raw", "validation": "wiki.valid.raw", "test": "wiki.test.raw"}
DATA_ENV = "TOKENLOOM_DATA"  # a folder holding wikitext2/wiki.<split>.raw

# lm-eval's `wikitext_detokenizer`, rule by rule and in its order: (regex?, pattern, replacement).
_RULES: tuple[tuple[bool, str, str], ...] = (
    (False, "s '", "s'"),  # plural possessive
    (True, r"/' [0-9]/", r"/'[0-9]/"),  # matches only the literal text "/' 7/"; kept, as lm-eval has it
    (False, " @-@ ", "-"), (False, " @,@ ", ","), (False, " @.@ ", "."),  # escaped hyphens and separators
    *((False, f" {mark} ", f"{mark} ") for mark in ":;.!?,"),  # no space before punctuation
    (True, r"\(\s*([^\)]*?)\s*\)", r"(\1)"),  # no space inside brackets and quotes
    (True, r"\[\s*([^\]]*?)\s*\]", r"[\1]"),
    (True, r"{\s*([^}]*?)\s*}", r"{\1}"),
    (True, r"\"\s*([^\"]*?)\s*\"", r'"\1"'),
    (True, r"'\s*([^']*?)\s*'", r"'\1'"),
    (False, "= = = =", "===="), (False, "= = =", "==="), (False, "= =", "=="),  # heading marks
    (False, " \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    (False, " \n", "\n"), (False, "\n ", "\n"),  # the space that starts and ends every raw line
    (False, " N ", " 1 "),
    (False, " 's", "'s"),
)
_COMPILED = tuple((re.compile(pattern) if is_regex else pattern, repl, is_regex) for is_regex, pattern, repl in _RULES)


def detokenize(page: str) -> str:
    """The page as lm-eval scores it.

    >>> detokenize(" The 1 @,@ 000 @-@ year ( old ) tree 's bark . \\n")
    " The 1,000-year (old) tree's bark.\\n"
    """
    for pattern, repl, is_regex in _COMPILED:
        page = pattern.sub(repl, page) if is_regex else page.replace(pattern, repl)
    return page


def _is_title(line: str) -> bool:
    """A top-level heading ` = Title = `; ` = = Section = = ` and deeper are not."""
    collapsed = line.replace("= = =", "===").replace("= =", "==").strip()
    return collapsed.startswith("= ") and collapsed.endswith(" =")


def split_pages(text: str) -> list[str]:
    """The articles of a raw WikiText file, as `EleutherAI/wikitext_document_level` has them.

    Lines are split on "\\n"; each title line starts a page, which holds the lines up to
    the next title, joined by "\\n". Lines before the first title form a page only if
    they hold more than whitespace; the last page is always kept.
    """
    pages, lines = [], []
    for line in text.split("\n"):
        if _is_title(line):
            page = "\n".join(lines)
            if page.strip():
                pages.append(page)
            lines = []
        lines.append(line)
    pages.append("\n".join(lines))
    return pages


def word_count(page: str) -> int:
    """Words as lm-eval counts them: pieces between runs of whitespace (on the raw page)."""
    return len(re.split(r"\s+", page))


def default_data(split: str) -> Path:
    """wikitext2/wiki.<split>.raw under $TOKENLOOM_DATA, else under the first `shared/data`
    folder found in the current directory or one of its parents."""
    name = Path("wikitext2") / SPLIT_FILES[split]
    roots = [Path(p) for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    roots += [folder / "shared" / "data" for folder in (Path.cwd(), *Path.cwd().parents)]
    for root in roots:
        if (root / name).is_file():
            return root / name
    raise InvalidArgument(f"no {name} found under ${DATA_ENV} or a shared/data folder of the current directory "
                          f"or its parents; give the raw WikiText-2 file with --data FILE (data= in Python)")


def load_pages(data: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[str]:
    """The raw pages of a split (the first `limit` of them), from `data` or the default file."""
    if split not in SPLIT_FILES:
        raise InvalidArgument(f"unknown WikiText split {split!r}; splits: {', '.join(SPLIT_FILES)}")
    if limit is not None and limit < 1:
        raise InvalidArgument(f"limit must be at least 1 page, got {limit}")
    path = default_data(split) if data is None else Path(data)
    if not path.is_file():
        raise InvalidArgument(f"{path} is not a file")
    pages = split_pages(path.read_text(encoding="utf-8"))
    return pages if limit is None else pages[:limit]


def prefix_token_id(tokenizer) -> int:
    """lm-eval's prefix for Hugging Face models: the tokenizer's BOS id, else its EOS id."""
    if tokenizer.special.bos_id is not None:
        return tokenizer.special.bos_id
    if tokenizer.eos_ids:
        return tokenizer.eos_ids[0]
    raise InvalidArgument("the wikitext task needs a BOS or EOS token as the prefix; this tokenizer has neither")
