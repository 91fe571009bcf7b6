"""`ask`: retrieve passages, let the model answer with citations, abstain when unsupported.

    answer = ask(lm, store, "Who won Super Bowl 50?", k=3, samples=4, verify=True)
    answer.answer        # "The Denver Broncos won [1]."  or exactly ABSTAIN
    answer.citations     # [{"passage": 1, "chunk_id": ..., "title": ..., "text": ...}]
    answer.support       # max cosine of the answer with a sentence of the cited passages

The steps, in order:
1. retrieve k chunks (`Store.search`); if the best one's cosine with the question is
   below `min_retrieval`, abstain without generating (weak retrieval); with `sentences`
   = n > 0 the model is shown only the n sentences of those chunks closest to the
   question (`extract.excerpts`), each numbered as a passage of its own;
2. one prompt of numbered passages in the config's style (`prompt.short_prompt`, a few-shot
   completion, or `prompt.messages` through the chat template). Extractive (the short
   style's default): every span of the excerpts is scored as the answer
   (`extract.best_spans`) and the best one is kept, or for `samples` > 1 that many are
   drawn from the spans' scores at `temperature`. Otherwise `samples` candidates are
   generated together through the scheduler (greedy for 1, seeded sampling at
   `temperature` for more), each with per-token log-probabilities;
3. each candidate: citations checked against the given passages (unknown numbers
   removed and reported), a refusal ("I don't know") counts as abstaining, mean token
   log-probability and support (`support.support_many`) computed;
4. reject sampling: keep the best-supported candidate with mean log-probability >=
   `min_logprob`, support >= `min_support` and token overlap >= `min_overlap`; none
   passes: abstain;
5. verify: each sentence of the kept answer, retrieved for on its own, must have a
   passage sentence with cosine >= `min_support` and content-word overlap >=
   `min_overlap`; unsupported sentences are dropped, and none left means abstain.

Thresholds come from `benchmarks/rag_qa.py --calibrate` on SQuAD questions kept apart
from the benchmark's test questions (see its docstring for the rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenloom.errors import InvalidArgument
from tokenloom.generation.engine import Request
from tokenloom.generation.params import SamplingParams
from tokenloom.rag.extract import best_spans, draw, excerpts
from tokenloom.rag.prompt import ABSTAIN, STYLES, is_refusal, messages, short_prompt, short_reply, strip_hedge
from tokenloom.rag.store import MODES, Hit, Store
from tokenloom.rag.support import (check_citations, consistency, echoes_question, strip_citations, support_many,
                                   token_overlap)

# Thresholds per prompt style, from `python benchmarks/rag_qa.py --calibrate` on SQuAD questions
# kept apart from the benchmark's test questions (seed 0). The rule: min_retrieval keeps 95% of
# the answerable calibration questions; min_support and min_logprob keep 90% of the correct
# answers. AUC of "correct answer" against "answered an unanswerable question":
#   chat  (--style chat --k 3 --limit 48, 11 correct):  retrieval 0.92, token overlap 0.83,
#         mean log-probability 0.76, support cosine 0.69;
#   short (--style short --k 1 --limit 0, 191 questions, 37 correct): retrieval 0.91,
#         mean log-probability 0.82, token overlap 0.82, support cosine 0.69.
#   extract (the short style's default: one sentence from the 2 best chunks, extractive; --k 2
#         --limit 0, 191 questions, 75 correct): retrieval 0.90, mean log-probability 0.72,
#         support cosine 0.44 (no better than chance, so no cosine floor here either).
# min_overlap (the share of the answer's content words not in the question that the passages
# contain) is a rule, "most of them", not calibrated; it separates better than the cosine. An
# extractive answer quotes its passage, so its overlap is always 1.
THRESHOLDS = {  # kind: (min_retrieval, min_support, min_logprob, min_overlap)
    "chat": (0.30, 0.25, -0.5, 0.5),
    "short": (0.30, 0.0, -0.7, 0.5),
    "extract": (0.30, 0.0, -2.4, 0.5),
}
# The short style keeps no cosine floor: a span of a few words says little to a sentence
# embedder (on the tests' Panthers paragraph, right and wrong numbers alike score 0.13–0.24),
# while the share of its words found in the passage (overlap) tells them apart.
MIN_RETRIEVAL, MIN_SUPPORT, MIN_LOGPROB, MIN_OVERLAP = THRESHOLDS["chat"]


@dataclass(frozen=True)
class AskConfig:
    k: int = 2  # chunks retrieved; the excerpt's sentence is chosen among all of theirs
    mode: str = "hybrid"
    sentences: int | None = None  # sentences shown (extract.excerpts); 0 = whole chunks; None: 1 short, 0 chat
    extractive: bool | None = None  # answer with a scored span of the excerpts; None: True short, False chat
    max_words: int = 8  # longest extractive answer, in words
    samples: int = 1
    verify: bool = False
    hedge: bool = False
    style: str = "short"  # "short" | "chat" (prompt.py)
    closed_book: bool = False  # no passages at all (a baseline)
    abstain: bool = True  # False: answer whatever the scores (plain retrieval, a baseline)
    min_retrieval: float | None = None  # None: the style's calibrated value (THRESHOLDS)
    min_support: float | None = None
    min_logprob: float | None = None
    min_overlap: float | None = None
    max_tokens: int = 48
    temperature: float = 0.7  # for samples > 1
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.k, int) or self.k < 1:
            raise InvalidArgument(f"k (passages) must be a whole number >= 1, got {self.k!r}")
        if self.mode not in MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.style not in STYLES:
            raise InvalidArgument(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if not isinstance(self.samples, int) or not 1 <= self.samples <= 32:
            raise InvalidArgument(f"samples must be a whole number in [1, 32], got {self.samples!r}")
        if self.sentences is None:
            object.__setattr__(self, "sentences", 1 if self.style == "short" else 0)
        if not isinstance(self.sentences, int) or self.sentences < 0:
            raise InvalidArgument(f"sentences must be a whole number >= 0 (0 = whole chunks), got {self.sentences!r}")
        if self.extractive is None:
            object.__setattr__(self, "extractive", self.style == "short")
        if self.extractive and self.style != "short":
            raise InvalidArgument("extractive answers need style='short' (its worked examples end each answer "
                                  "with its citation, which the span scores read); use extractive=False with 'chat'")
        if not isinstance(self.max_words, int) or not 1 <= self.max_words <= 32:
            raise InvalidArgument(f"max_words must be a whole number in [1, 32], got {self.max_words!r}")
        names = ("min_retrieval", "min_support", "min_logprob", "min_overlap")
        for name, default in zip(names, THRESHOLDS[self.kind]):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    @property
    def kind(self) -> str:
        """The thresholds' key: "extract" for extractive answers from passages, else the style."""
        return "extract" if self.extractive and not self.closed_book else self.style

    def sampling(self) -> SamplingParams:
        stop = ("\n\n",) if self.style == "chat" else ("\n\n", "\nQuestion:", "\n[")
        if self.samples == 1:
            return SamplingParams(temperature=0, max_tokens=self.max_tokens, logprobs=0, stop=stop)
        return SamplingParams(temperature=self.temperature, top_p=0.95, seed=self.seed, max_tokens=self.max_tokens,
                              logprobs=0, stop=stop)


@dataclass
class Candidate:
    text: str
    mean_logprob: float
    support: float
    overlap: float
    passage: int  # 0-based index into the given passages of the best-supporting one; -1 none
    cited: tuple[int, ...]
    unknown: tuple[int, ...]
    refusal: bool
    hedged: bool

    def passes(self, config: AskConfig) -> bool:
        return (not self.refusal and self.mean_logprob >= config.min_logprob and self.support >= config.min_support
                and self.overlap >= config.min_overlap)


@dataclass
class Answer:
    question: str
    answer: str
    abstained: bool
    reason: str  # "" | "weak retrieval" | "refusal" | "unsupported" | "verification"
    citations: list[dict]
    support: float
    retrieval_score: float
    mean_logprob: float | None = None
    consistency: float | None = None  # mean pairwise token F1 of the samples (samples > 1)
    unknown_citations: list[int] = field(default_factory=list)
    hedged: bool = False
    candidates: list[dict] = field(default_factory=list)
    checks: list[dict] | None = None  # verify: one per sentence
    raw: str = ""  # the kept candidate's text as generated

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def ask(lm, store: Store, question: str, k: int = 2, mode: str = "hybrid", samples: int = 1, verify: bool = False,
        hedge: bool = False, style: str = "short", config: AskConfig | None = None) -> Answer:
    """Answer one question from the store's passages (see the module docstring for the steps)."""
    config = config or AskConfig(k=k, mode=mode, samples=samples, verify=verify, hedge=hedge, style=style)
    return ask_many(lm, store, [question], config)[0]


def ask_many(lm, store: Store | None, questions: list[str], config: AskConfig = AskConfig()) -> list[Answer]:
    """`ask` for many questions; every candidate of every question is generated in one batch."""
    if not questions or any(not isinstance(q, str) or not q.strip() for q in questions):
        raise InvalidArgument("questions must be non-empty strings")
    retrieved = retrieve(store, questions, config)
    todo = [i for i, (_, score) in enumerate(retrieved) if not weak_retrieval(score, config)]
    generated = generate(lm, [questions[i] for i in todo], [retrieved[i][0] for i in todo], config)
    texts = dict(zip(todo, generated))
    answers = [decide(store, q, *retrieved[i], texts.get(i, []), config) for i, q in enumerate(questions)]
    if config.verify:
        for answer, (hits, _) in zip(answers, retrieved):
            verify(store, answer, hits, config)
    return answers


def retrieve(store: Store | None, questions: list[str], config: AskConfig) -> list[tuple[list[Hit], float]]:
    """(hits, retrieval score) per question: the retrieval score is the best hit's cosine with the question
    whatever the mode, since BM25 and RRF scores have no fixed scale to threshold."""
    out = []
    for question in questions:
        hits = [] if config.closed_book else store.search(question, config.k, config.mode)
        score = max(store.cosines(question, [h.chunk_id for h in hits])) if hits else 0.0
        out.append((excerpts(store.embedder, question, hits, config.sentences), score))
    return out


def weak_retrieval(score: float, config: AskConfig) -> bool:
    return not config.closed_book and config.abstain and score < config.min_retrieval


def generate(lm, questions: list[str], hits: list[list[Hit]], config: AskConfig) -> list[list[tuple[str, float]]]:
    """(text, mean token log-probability) for each sample of each question."""
    if config.extractive and not config.closed_book:
        return [extract_answers(lm, question, found, config) for question, found in zip(questions, hits)]
    params, requests = config.sampling(), []
    for question, found in zip(questions, hits):
        passages = [(h.title, h.text) for h in found]
        if config.style == "short":
            ids = lm.encode_prompt(short_prompt(question, passages, hedge=config.hedge))
        else:
            chat = messages(question, passages, hedge=config.hedge)
            ids = lm.encode_prompt(lm.tokenizer.apply_chat_template(chat, add_generation_prompt=True))
        requests.extend(Request(ids, params, j) for j in range(config.samples))
    handles = lm.scheduler.submit_many(requests, block=True) if requests else []
    flat = []
    for handle in handles:
        c = handle.result()
        logprobs = [lp.logprob for lp in (c.logprobs or [])]
        text = short_reply(c.text) if config.style == "short" else c.text.strip()
        flat.append((text, sum(logprobs) / len(logprobs) if logprobs else float("-inf")))
    return [flat[j * config.samples:(j + 1) * config.samples] for j in range(len(questions))]


def extract_answers(lm, question: str, hits: list[Hit], config: AskConfig) -> list[tuple[str, float]]:
    """Extractive candidates: spans of the shown passages, each with its citation, by span score."""
    prompt = short_prompt(question, [(h.title, h.text) for h in hits], hedge=config.hedge)
    spans = []
    for number, hit in enumerate(hits, 1):
        spans += [(span, number) for span in best_spans(lm, prompt, hit.text, config.max_words)
                  if not echoes_question(span.text, question)]
    if not spans:
        return []
    spans.sort(key=lambda pair: (-pair[0].score, pair[1]))
    kept = [0] if config.samples == 1 else draw([s.score for s, _ in spans], config.samples, config.temperature,
                                                config.seed)
    return [(f"{spans[i][0].text} [{spans[i][1]}]", spans[i][0].mean_logprob) for i in kept]


def _candidates(store: Store, question: str, hits: list[Hit], texts: list[tuple[str, float]]) -> list[Candidate]:
    parsed = []
    for text, mean_logprob in texts:
        cites = check_citations(text, len(hits))
        body, hedged = strip_hedge(cites.text)
        parsed.append((body, mean_logprob, cites, hedged))
    passages = [[hits[n - 1].text for n in c.cited] or [h.text for h in hits] for _, _, c, _ in parsed]
    supports = support_many(store.embedder, [strip_citations(b) for b, *_ in parsed], passages) if hits else []
    out = []
    for j, (body, mean_logprob, cites, hedged) in enumerate(parsed):
        s = supports[j] if supports else None
        passage = -1 if s is None or s.passage < 0 else (cites.cited[s.passage] - 1 if cites.cited else s.passage)
        refusal = not body or is_refusal(body) or echoes_question(body, question)
        out.append(Candidate(body, mean_logprob, s.score if s else 0.0, token_overlap(body, passages[j], question),
                             passage, cites.cited, cites.unknown, refusal, hedged))
    return out


def _citation(hits: list[Hit], number: int, attributed: bool = False) -> dict:
    hit = hits[number - 1]
    return {"passage": number, "chunk_id": hit.chunk_id, "title": hit.title, "text": hit.text,
            "attributed": attributed}


def decide(store, question: str, hits: list[Hit], retrieval: float, texts: list[tuple[str, float]],
           config: AskConfig) -> Answer:
    """The Answer from generated (text, mean log-probability) candidates under config's thresholds."""
    if weak_retrieval(retrieval, config) or not texts:
        reason = "weak retrieval" if weak_retrieval(retrieval, config) or not hits else "unsupported"
        return Answer(question, ABSTAIN, True, reason, [], 0.0, retrieval)
    candidates = _candidates(store, question, hits, texts)
    agreement = consistency([c.text for c in candidates]) if len(candidates) > 1 else None
    ranked = sorted(range(len(candidates)), key=lambda j: (-candidates[j].support, -candidates[j].mean_logprob, j))
    passing = [j for j in ranked if candidates[j].passes(config)] if config.abstain and not config.closed_book \
        else [j for j in ranked if not candidates[j].refusal]
    best = candidates[passing[0] if passing else ranked[0]]
    common = dict(support=best.support, retrieval_score=retrieval, mean_logprob=best.mean_logprob,
                  consistency=agreement, unknown_citations=list(best.unknown), hedged=best.hedged,
                  candidates=[c.__dict__ for c in candidates], raw=texts[candidates.index(best)][0])
    if not passing:
        reason = "refusal" if all(c.refusal for c in candidates) else "unsupported"
        return Answer(question, ABSTAIN, True, reason, [], **common)
    citations = [_citation(hits, n) for n in best.cited]
    if not citations and best.passage >= 0:  # the model cited nothing: name the passage that supports it
        citations = [_citation(hits, best.passage + 1, attributed=True)]
    return Answer(question, best.text, False, "", citations, **common)


def verify(store: Store, answer: Answer, hits: list[Hit], config: AskConfig) -> None:
    """Per-sentence checks; unsupported sentences are dropped, none left means abstain."""
    if answer.abstained:
        return
    from tokenloom.rag.chunking import split_sentences

    sentences = [s.text for s in split_sentences(answer.answer)] or [answer.answer]
    pools = []
    for sentence in sentences:
        pool = {h.chunk_id: h for h in hits}
        pool.update({h.chunk_id: h for h in store.search(strip_citations(sentence), config.k, config.mode)})
        pools.append(list(pool.values()))
    claims = [strip_citations(s) for s in sentences]
    supports = support_many(store.embedder, claims, [[h.text for h in pool] for pool in pools])
    checks = []
    for sentence, claim, pool, s in zip(sentences, claims, pools, supports):
        hit = pool[s.passage] if s.passage >= 0 else None
        overlap = token_overlap(claim, [hit.text], answer.question) if hit else 0.0
        ok = s.score >= config.min_support and overlap >= config.min_overlap
        checks.append({"sentence": sentence, "support": s.score, "overlap": overlap, "supported": ok,
                       "best_sentence": s.sentence,
                       "passage": {"chunk_id": hit.chunk_id, "title": hit.title, "text": hit.text} if hit else None})
    answer.checks = checks
    kept = [c["sentence"] for c in checks if c["supported"]]
    if not kept:
        answer.answer, answer.abstained, answer.reason, answer.citations = ABSTAIN, True, "verification", []
    elif len(kept) < len(checks):
        answer.answer = " ".join(kept)
