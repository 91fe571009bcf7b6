"""The chat messages `ask` sends: numbered passages, the question, how to answer and cite.

    messages(question, ["Paris is the capital of France."])
    # [{"role": "system", "content": "Answer the question using only the numbered passages. ..."},
    #  {"role": "user", "content": "[1] Paris is the capital of France.\\n\\nQuestion: ..."}]

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


def is_refusal(text: str) -> bool:
    """Whether a reply declines to answer ("The documents do not say.", "I don't know", ...)."""
    return bool(_REFUSAL.search(text))


def strip_hedge(text: str) -> tuple[str, bool]:
    """The reply without a leading "To my knowledge," and whether it had one."""
    stripped = _HEDGE_PREFIX.sub("", text, count=1)
    if stripped != text and stripped:
        return stripped[0].upper() + stripped[1:], True
    return text, False
