"""The semantic repetition guard: a sentence that says again what the output already said is resampled.

    SamplingParams(semantic_repetition_threshold=t, semantic_max_retries=r)

    token ──accept──▶ a sentence ended? ──no──▶ go on
                            │ yes: v = embed(sentence); cos_j = v · v_j over the output's earlier sentences
                            ├─ max_j cos_j < t, or r rollbacks of it already ─▶ keep it (v joins the v_j)
                            └─ otherwise ─▶ roll back to its first token, ban that token there, resample

Sentence rule (`next_sentence`): a sentence ends at `.`, `!` or `?` (a run of them, as
in "..." or "?!"), optionally followed by closing quotes or brackets, when whitespace
follows; or at a newline. The whitespace must be there, so "3.14" ends nothing, and an
end is seen when the token after the punctuation arrives (" The" after "."): until
then the period may still be the one of "3.14". A candidate holding fewer than
MIN_WORDS words ("1." of a numbered list, "Yes.") ends nothing: its sentence goes on
("1. Apples."). A blank line ends an empty sentence, which is skipped: its tokens
belong to the next sentence (a rollback takes them back too). Plain on
purpose: "Mr. Smith" and "e.g. this" end sentences too.

The comparison: all-MiniLM-L6-v2 (tokenloom.embed, unit vectors, so cos = v · v_j)
against the sentences this output kept, never the prompt. Each sentence is embedded
alone, so its vector never depends on a neighbour's padding (batch invariance).

A rollback restores the sequence to the state it had before the sentence's first
token (a `Sequence.mark()` taken after every token): ids, text, detokenizer and
stop-string state, logprobs, and the KV cache position (`length` and `pending`: the
next decode step recomputes that position; the stale positions after it are masked
by length and overwritten as decoding goes on). The scheduler rebuilds the penalty
history from the ids. So that a retry can differ under greedy decoding too, the
first token of every rejected attempt of a sentence is banned (logit -inf) at that
sentence's first position, and only there. After r rollbacks of one sentence the next
attempt is kept whatever its similarity. Sampled rows keep drawing from their own
generator (no reseeding): a seeded request stays reproducible and batch invariant.

Checked: the sentences that end while the sequence runs. The token that finishes a
sequence (EOS, a stop, length) is never rolled back, and the unterminated tail is kept.

Streaming: sent text cannot be taken back, so a guarded sequence hands out its tokens
(StepOutputs with their text and logprobs) only up to the start of its current
sentence: a client sees each sentence once it was accepted, one sentence late, and
never a token that was rolled back. At the finish (or a cancel) the rest follows, so
the streamed pieces concatenate to Completion.text and carry Completion.token_ids.
"""

from __future__ import annotations

import re

import torch

MIN_WORDS = 2
SENTENCE_END = re.compile(r"[.!?]+[\"'”’»)\]}]*(?=\s)|\n")


def next_sentence(text: str, start: int = 0) -> tuple[int, str] | None:
    """The first sentence of text[start:] that has ended: (where it ends, its stripped text), or None.

    An empty sentence is a blank line. Examples:
    next_sentence("1. Apples.\\nPears") -> (10, "1. Apples.")   ("1." alone has too few words)
    next_sentence("Pi is 3.14") -> None;  next_sentence("Done.") -> None (no whitespace after it yet)
    """
    for match in SENTENCE_END.finditer(text, start):
        sentence = text[start : match.end()].strip()
        if not sentence or len(sentence.split()) >= MIN_WORDS:
            return match.end(), sentence
    return None


def split_sentences(text: str) -> list[str]:
    """The ended, non-empty sentences of text in order; the unterminated tail is left out.

    split_sentences('He said "hi." Then left!\\n\\nOk') -> ['He said "hi."', 'Then left!']
    """
    sentences, start = [], 0
    while (found := next_sentence(text, start)) is not None:
        start, sentence = found
        if sentence:
            sentences.append(sentence)
    return sentences


class SemanticGuard:
    """One sequence's guard: its kept sentences' vectors, the current sentence, its retries and bans.

    marks[j] is the sequence's state before its j-th generated token (so there is one
    more mark than tokens while it runs); `start` is the current sentence's first token,
    `text_start` where its text begins in the generated text (StopStrings.text) and `scan`
    where the search for its end resumes (past blank lines).
    """

    def __init__(self, threshold: float, max_retries: int, embedder, mark):
        self.threshold, self.max_retries, self.embedder = threshold, max_retries, embedder
        self.vectors = torch.zeros(0, embedder.dimension)  # (M, d): the kept sentences
        self.marks = [mark]
        self.start = self.text_start = self.scan = 0
        self.retries, self.banned = 0, []  # of the current sentence
        self.rollbacks = 0  # in all
        self.emitted = self.text_out = 0  # tokens and characters of seq.text handed out

    @classmethod
    def for_params(cls, params, mark) -> "SemanticGuard | None":
        """A guard when the params ask for one (loading the shared embedder), else None."""
        if params.semantic_repetition_threshold is None:
            return None
        from tokenloom.embed import default_embedder

        return cls(params.semantic_repetition_threshold, params.semantic_max_retries, default_embedder(), mark)

    def banned_at(self, position: int) -> list[int]:
        """Token ids banned at this position of the output: the rejected first tokens, at the sentence start."""
        return self.banned if position == self.start else []

    def accepted(self, seq) -> bool:
        """After seq took a token and goes on: check every sentence that ended; True when it rolled back."""
        self.marks.append(seq.mark())
        while (found := next_sentence(seq.stops.text, self.scan)) is not None:
            end, sentence = found
            self.scan = end
            if not sentence:  # a blank line: it stays with the sentence that follows, retries and bans too
                continue
            vector = self.embedder.encode([sentence])[0]  # (d,)
            if self._repeats(vector) and self.start < len(seq.ids):
                self._roll_back(seq)
                return True
            self.vectors = torch.cat([self.vectors, vector[None]])
            self.start, self.text_start = self._first_token_at(end), end
            self.retries, self.banned = 0, []
        return False

    def _repeats(self, vector: torch.Tensor) -> bool:
        """Too close to a kept sentence, with retries left for this one."""
        if self.retries >= self.max_retries or not len(self.vectors):
            return False
        return float((self.vectors @ vector).max()) >= self.threshold

    def _first_token_at(self, end: int) -> int:
        """The first token whose text starts at or after `end` of the generated text (the next sentence's)."""
        return next(j for j in range(self.start, len(self.marks)) if self.marks[j].stops[0] >= end)

    def _roll_back(self, seq) -> None:
        k = self.start
        self.banned.append(seq.ids[k])
        self.retries += 1
        self.rollbacks += 1
        seq.rewind(k, self.marks[k])
        del self.marks[k + 1 :]
        self.scan = self.text_start

    def release(self, seq, upto: int | None = None) -> list[tuple[int, str, object]]:
        """(token id, text, logprob) of the tokens now final: up to the current sentence's start."""
        upto = self.start if upto is None else upto
        out = []
        for j in range(self.emitted, upto):
            end = self.marks[j + 1].text
            logprob = seq.logprobs[j] if seq.logprobs is not None else None
            out.append((seq.ids[j], seq.text[self.text_out : end], logprob))
            self.text_out = end
        self.emitted = max(self.emitted, upto)
        return out

    def finish(self, seq, token: int, logprob) -> list[tuple[int, str, object]]:
        """Everything not handed out yet; the last item is the finishing token with the rest of the text."""
        appended = len(seq.ids) == len(self.marks)  # the finishing token went into ids (length, stop string)
        out = self.release(seq, len(seq.ids) - appended)
        out.append((token, seq.text[self.text_out :], logprob))
        self.text_out = len(seq.text)
        return out


def ban_first_tokens(logits: torch.Tensor, sequences) -> torch.Tensor:
    """(B, V) logits with each guarded row's banned tokens at -inf: a copy, or the same tensor when none."""
    bans = [(i, s.guard.banned_at(len(s.ids))) for i, s in enumerate(sequences) if s.guard is not None]
    bans = [(i, banned) for i, banned in bans if banned]
    if not bans:
        return logits
    logits = logits.clone()
    for i, banned in bans:
        logits[i, banned] = float("-inf")
    return logits
