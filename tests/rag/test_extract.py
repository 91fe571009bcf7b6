"""Excerpts and extractive answers (tokenloom.rag.extract): the span scores are the model's own."""

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.eval.likelihood import continuation_logprobs
from tokenloom.rag.ask import AskConfig
from tokenloom.rag.extract import best_spans, candidate_spans, draw, excerpts
from tokenloom.rag.prompt import short_prompt
from tokenloom.rag.store import Hit

PASSAGE = ("The Amazon rainforest covers most of the Amazon basin. The name Amazonas was given by Francisco de "
           "Orellana in 1542, after a battle with a tribe of women warriors. Brazil holds 60% of the forest.")


def hit(text: str, chunk_id: int = 7) -> Hit:
    return Hit(chunk_id=chunk_id, document_id=1, title="Amazon", text=text, score=1.0, rank=1)


def test_the_excerpt_is_the_sentence_that_shares_the_question(embedder):
    shown = excerpts(embedder, "Who gave the name Amazonas?", [hit(PASSAGE)], 1)
    assert [h.text for h in shown] == ["The name Amazonas was given by Francisco de Orellana in 1542, after a "
                                       "battle with a tribe of women warriors."]
    assert shown[0].chunk_id == 7 and shown[0].title == "Amazon"
    assert excerpts(embedder, "Who?", [hit(PASSAGE)], 0) == [hit(PASSAGE)]
    two = excerpts(embedder, "How much of the forest does Brazil hold?", [hit(PASSAGE, 1), hit("Brazil is big.", 2)], 2)
    assert two[0].text == "Brazil holds 60% of the forest." and len(two) == 2


def test_spans_are_word_runs_trimmed_at_their_ends():
    spans = dict.fromkeys(s for _, s in candidate_spans("In 1542, (Orellana) named it.", 3))
    assert "1542" in spans and "Orellana" in spans and "In 1542, (Orellana" in spans and "it" in spans
    assert all(s == s.strip("\"'()[]{}.,;:!?") and 1 <= len(s.split()) <= 3 for s in spans)
    assert len(spans) == len(candidate_spans("In 1542, (Orellana) named it.", 3))  # no duplicates


@pytest.mark.slow
def test_every_span_scores_as_its_own_continuation(smollm):
    """One pass per first word must give what scoring each span alone gives."""
    question, excerpt = "Who gave the name Amazonas?", "The name was given by Francisco de Orellana in 1542."
    prompt = short_prompt(question, [("", excerpt)])
    spans = best_spans(smollm, prompt, excerpt, max_words=4)
    assert len(spans) == len(candidate_spans(excerpt, 4))
    assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)
    ids = smollm.encode_prompt(prompt.rstrip())
    for span in spans[:6] + spans[-3:]:
        cont = smollm.tokenizer.encode(f" {span.text} [", add_bos=False)
        alone = float(continuation_logprobs(smollm, [ids], [cont])[0].sum())
        assert span.tokens == len(cont) and span.score == pytest.approx(alone, abs=2e-3)
    assert "Orellana" in spans[0].text


def test_draws_are_seeded_and_follow_the_scores():
    scores = [-0.1, -9.0, -9.5]
    assert draw(scores, 5, 0.7, seed=3) == draw(scores, 5, 0.7, seed=3)
    assert draw(scores, 8, 0.7, seed=1).count(0) >= 7
    assert set(draw(scores, 60, 100.0, seed=1)) == {0, 1, 2}
    assert draw([], 3, 0.7, 0) == [] and draw(scores, 0, 0.7, 0) == []


def test_ask_config_checks_the_extractive_options():
    assert AskConfig().extractive and AskConfig().sentences == 1 and AskConfig().kind == "extract"
    assert not AskConfig(style="chat").extractive and AskConfig(style="chat").sentences == 0
    assert AskConfig(closed_book=True).kind == "short"
    for bad in (dict(style="chat", extractive=True), dict(sentences=-1), dict(sentences=1.5), dict(max_words=0)):
        with pytest.raises(InvalidArgument):
            AskConfig(**bad)
