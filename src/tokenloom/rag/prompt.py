"""The chat messages `ask` sends: numbered passages, the question, how to answer and cite.

    messages(question, ["Paris is the capital of France."])
    # [{"role": "system", "content": "Answer the question using only the numbered passages. ..."},
    #  {"role": "user", "content": "[1] Paris is the capital of France.\\n\\nQuestion: ..."}]

Two styles. "chat": a system instruction and the passages in a user turn, through the
model's chat template. "short" (the default of `ask`): a plain few-shot prompt whose
three worked examples answer in a span of a few words followed by its citation; a small
model copies that form far more faithfully than it follows an instruction to be brief
(`benchmarks/rag_qa.py` measures both).

Phrases that mean "I do not know" in a reply turn it into an abstention (`is_refusal`).
"""

from __future__ import annotations

import re

ABSTAIN = "The documents do not say."

INSTRUCTION = ("Answer the question using only the numbered passages. Answer briefly, in a few words, "
               "and cite the passage you used as [1], [2] and so on. If the passages do not contain the "
               f"answer, reply exactly: {ABSTAIN}")
CLOSED_BOOK = "Answer the question briefly, in a few words."
HEDGE = ("Only answer if you are sure. If you are not fully sure, begin with \"To my knowledge,\". "
         "If you do not know, say that you do not know. ")

_REFUSAL = re.compile(r"\b(do(es)? not say|don'?t say|do not know|don'?t know|not (mentioned|stated|say|provided"
                      r"|specified|given|contain)|no (information|mention)|cannot (answer|be determined)"
                      r"|unknown from)\b", re.IGNORECASE)
_HEDGE_PREFIX = re.compile(r"^\s*(to my knowledge|as far as i know)\s*,?\s*", re.IGNORECASE)


def passage_block(passages: list[tuple[str, str]]) -> str:
    """[1] (title) text, one passage a paragraph."""
    return "\n\n".join(f"[{i}] ({title}) {text}" if title else f"[{i}] {text}"
                       for i, (title, text) in enumerate(passages, 1))


def messages(question: str, passages: list[tuple[str, str]], hedge: bool = False) -> list[dict]:
    """Chat messages for a question; no passages means closed book."""
    instruction = INSTRUCTION if passages else CLOSED_BOOK
    system = (HEDGE + instruction) if hedge else instruction
    user = f"{passage_block(passages)}\n\nQuestion: {question}" if passages else f"Question: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


STYLES = ("chat", "short")

# The worked examples of the "short" style: made-up passages, an answer copied from each.
SHOTS = (
    ("Super Bowl 50 was an American football game to determine the champion of the National Football League "
     "(NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos defeated the "
     "National Football Conference (NFC) champion Carolina Panthers 24–10 to earn their third Super Bowl title.",
     "Which team won Super Bowl 50?", "Denver Broncos"),
    ("The Amazon rainforest covers 5,500,000 square kilometres, of which 60% is in Brazil. The name Amazonas "
     "was given by Francisco de Orellana in 1542.", "In what year was the name Amazonas given?", "1542"),
    ("Nikola Tesla was born in the village of Smiljan, in the Austrian Empire. He worked for Thomas Edison in "
     "New York before founding his own laboratory.", "Who did Tesla work for in New York?", "Thomas Edison"),
)
SHORT_HEDGE = f"Answer only from the passage. If it does not give the answer, write: {ABSTAIN}\n\n"


def short_prompt(question: str, passages: list[tuple[str, str]], hedge: bool = False) -> str:
    """The "short" style: worked examples, then the numbered passages and the question.

    short_prompt("Who?", [("T", "Ann came.")]) ends with
    "[1] Ann came.\nQuestion: Who?\nShort answer:"; no passages means closed book."""
    if passages:
        shots = "".join(f"[1] {text}\nQuestion: {q}\nShort answer: {a} [1]\n\n" for text, q, a in SHOTS)
        body = "\n".join(f"[{i}] {text}" for i, (_, text) in enumerate(passages, 1)) + "\n"
    else:
        shots = "".join(f"Question: {q}\nShort answer: {a}\n\n" for _, q, a in SHOTS)
        body = ""
    return f"{SHORT_HEDGE if hedge else ''}{shots}{body}Question: {question}\nShort answer:"


def short_reply(text: str) -> str:
    """A "short" completion's answer: its first non-empty line."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def is_refusal(text: str) -> bool:
    """Whether a reply declines to answer ("The documents do not say.", "I don't know", ...)."""
    return bool(_REFUSAL.search(text))


def strip_hedge(text: str) -> tuple[str, bool]:
    """The reply without a leading "To my knowledge," and whether it had one."""
    stripped = _HEDGE_PREFIX.sub("", text, count=1)
    if stripped != text and stripped:
        return stripped[0].upper() + stripped[1:], True
    return text, False
