"""ask with the real default model on a tiny store of SQuAD paragraphs: citations, abstention, verify."""

import pytest

from tokenloom.rag.ask import ABSTAIN, AskConfig, ask, ask_many
from tokenloom.rag.readers import Document
from tokenloom.rag.store import Store
from tokenloom.rag.support import check_citations, consistency, strip_citations

from .conftest import squad_paragraphs


@pytest.fixture(scope="module")
def squad_store(tmp_path_factory):
    rows = squad_paragraphs(4)
    with Store(tmp_path_factory.mktemp("rag") / "squad.db") as store:
        store.ingest([Document(r["context"], f"p{i}", r["title"]) for i, r in enumerate(rows)])
        yield store, rows


def test_unknown_citation_numbers_are_removed_and_reported():
    checked = check_citations("It was Denver [2][5], not Carolina [0].", 3)
    assert checked.text == "It was Denver [2], not Carolina." and checked.cited == (2,) and checked.unknown == (5, 0)


def test_consistency_is_mean_pairwise_token_f1():
    assert consistency(["Denver", "Denver"]) == 1.0 and consistency(["Denver", "Carolina"]) == 0.0
    assert consistency(["one"]) is None


@pytest.mark.slow
def test_an_answerable_question_cites_a_given_passage(smollm_native, squad_store):
    store, rows = squad_store
    answer = ask(smollm_native, store, "How many tackles did Luke Kuechly register?")
    hits = store.search(answer.question, k=2, mode="hybrid")
    given = {h.chunk_id for h in hits}
    assert not answer.abstained and answer.answer != ABSTAIN
    assert answer.citations and {c["chunk_id"] for c in answer.citations} <= given
    assert all(c["passage"] == 1 for c in answer.citations) and "118" in answer.answer
    # extractive: the answer quotes the one sentence shown, which is the cited text
    cited = answer.citations[0]["text"]
    assert strip_citations(answer.answer) in cited and any(cited in h.text and cited != h.text for h in hits)
    assert answer.support >= AskConfig().min_support and answer.retrieval_score >= AskConfig().min_retrieval


@pytest.mark.slow
def test_a_question_about_something_absent_abstains(smollm_native, squad_store):
    store, _ = squad_store
    answer = ask(smollm_native, store, "What is the capital of Mongolia?", k=2)
    assert answer.abstained and answer.answer == "The documents do not say." and answer.citations == []


@pytest.mark.slow
def test_reject_sampling_and_verify_report_their_fields(smollm_native, squad_store):
    store, rows = squad_store
    config = AskConfig(k=2, samples=3, verify=True, max_tokens=32)
    answers = ask_many(smollm_native, store, [rows[0]["question"], rows[1]["question"]], config)
    for answer in answers:
        assert len(answer.candidates) == 3 and 0.0 <= answer.consistency <= 1.0
        for c in answer.candidates:
            assert {"text", "mean_logprob", "support", "overlap", "cited", "unknown"} <= set(c)
        assert answer.abstained == (answer.answer == ABSTAIN)
        if answer.checks is not None:
            for check in answer.checks:
                assert set(check) == {"sentence", "support", "overlap", "supported", "best_sentence", "passage"}
                assert check["supported"] == (check["support"] >= config.min_support
                                              and check["overlap"] >= config.min_overlap)
        elif not answer.abstained:
            pytest.fail("a kept answer under verify must carry its sentence checks")
