"""ROUGE against rouge-score 0.1.2 on CNN/DM pointer-generator outputs and random cases."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.stem import porter
from rouge_score import rouge_scorer, scoring
from rouge_score import tokenize as peer_tokenize

from tokenloom.errors import InvalidArgument
from tokenloom.metrics import rouge, rouge_segment, rouge_tokens
from tokenloom.metrics.text import rouge_line_tokens

CNNDM = Path(__file__).resolve().parents[3] / "shared" / "data" / "cnndm_pointer_generator" / "cnndm_test_stride23_500.jsonl"
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


@pytest.fixture(scope="module")
def cnndm():
    if not CNNDM.is_file():
        pytest.skip(f"{CNNDM} is absent: these tests compare with rouge-score on the shared CNN/DM outputs")
    return [json.loads(line) for line in CNNDM.read_text("utf-8").splitlines()]


def assert_scores_equal(ours: dict, peer: dict, types):
    for kind in types:
        assert tuple(ours[kind]) == pytest.approx(tuple(peer[kind]), abs=1e-12, rel=0), kind


def compare_system(rows, system, stem):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=stem)
    result = rouge([r[system] for r in rows], [r["reference"] for r in rows], stem=stem)
    peer = [scorer.score(r["reference"], r[system]) for r in rows]
    for ours, theirs in zip(result.segments, peer):
        assert_scores_equal(ours, theirs, TYPES)
    for kind in TYPES:
        assert result[kind].fmeasure == pytest.approx(np.mean([p[kind].fmeasure for p in peer]), abs=1e-12)


@pytest.mark.parametrize("system", ["pointer_gen_cov", "pointer_gen", "baseline"])
def test_rouge_equals_rouge_score_on_every_cnndm_summary_without_stemming(cnndm, system):
    compare_system(cnndm, system, stem=False)


@pytest.mark.parametrize("system", ["pointer_gen_cov", pytest.param("pointer_gen", marks=pytest.mark.slow),
                                    pytest.param("baseline", marks=pytest.mark.slow)])
def test_rouge_equals_rouge_score_on_every_cnndm_summary_with_stemming(cnndm, system):
    compare_system(cnndm, system, stem=True)


def test_pointer_generator_with_coverage_ranks_above_the_baseline(cnndm):
    refs = [r["reference"] for r in cnndm]
    best = rouge([r["pointer_gen_cov"] for r in cnndm], refs, types=["rougeL"])
    base = rouge([r["baseline"] for r in cnndm], refs, types=["rougeL"])
    assert best["rougeL"].fmeasure > base["rougeL"].fmeasure


WORDS = ["the", "cat", "cats", "running", "runs", "agreed", "a", "it's", "U.S.", "3-D", "größe", "naïve",
         "über", "日本", "x", "generously", "happiness", "ponies", "sky", "news", "caresses", "1,000"]
SEPARATORS = [" ", " ", " ", ", ", ". ", "\n", "\n\n", " - ", "!"]
texts = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=16).map(
    lambda pairs: "".join(w + s for w, s in pairs))


@settings(max_examples=150, deadline=None)
@given(hyp=texts, refs=st.lists(texts, min_size=1, max_size=3), stem=st.booleans())
def test_random_texts_give_rouge_score_numbers_single_and_multi_reference(hyp, refs, stem):
    types = ["rouge1", "rouge2", "rouge3", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=stem)
    assert_scores_equal(rouge_segment(hyp, refs[0], types, stem=stem), scorer.score(refs[0], hyp), types)
    assert_scores_equal(rouge_segment(hyp, refs, types, stem=stem), scorer.score_multi(refs, hyp), types)


@settings(max_examples=200, deadline=None)
@given(text=texts, stem=st.booleans())
def test_tokens_equal_rouge_score_tokenizer(text, stem):
    stemmer = porter.PorterStemmer() if stem else None
    assert list(rouge_tokens(text, stem=stem)) == peer_tokenize.tokenize(text, stemmer)


@settings(max_examples=200, deadline=None)
@given(text=texts, stem=st.booleans(), unicode=st.booleans())
def test_line_tokens_equal_the_tokens_of_each_non_empty_line(text, stem, unicode):
    expected = [rouge_tokens(line, stem=stem, unicode=unicode) for line in text.split("\n") if line]
    assert rouge_line_tokens(text, stem=stem, unicode=unicode) == expected


def test_bootstrap_interval_equals_rouge_score_aggregator_with_the_same_seed(cnndm):
    rows = cnndm[:120]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    np.random.seed(7)
    aggregator = scoring.BootstrapAggregator(n_samples=300)
    for r in rows:
        aggregator.add_scores(scorer.score(r["reference"], r["baseline"]))
    peer = aggregator.aggregate()
    ours = rouge([r["baseline"] for r in rows], [r["reference"] for r in rows], types=["rouge1", "rougeL"],
                 bootstrap=300, seed=7)
    for kind in ("rouge1", "rougeL"):
        for bound in ("low", "mid", "high"):
            expected = tuple(getattr(peer[kind], bound))
            got = tuple(getattr(interval, bound) for interval in ours.intervals[kind])
            assert got == pytest.approx(expected, abs=1e-12)
    assert "bs:300" in ours.signature


def test_unicode_tokenizer_scores_russian_text_that_rouge_score_scores_zero():
    hyp, ref = "Кошка сидит на ковре", "Кошка сидит"
    assert rouge([hyp], [ref], types=["rouge1"])["rouge1"].fmeasure == 0
    assert rouge_scorer.RougeScorer(["rouge1"]).score(ref, hyp)["rouge1"].fmeasure == 0
    unicode = rouge([hyp], [ref], types=["rouge1"], unicode=True)
    assert unicode["rouge1"].recall == 1.0
    assert "not-rouge-score" in unicode.signature


def test_worked_example_rouge1_clips_the_repeated_word():
    scores = rouge_segment("the cat the", "the cat sat", ["rouge1"])
    assert tuple(scores["rouge1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_lsum_unions_the_lcs_of_each_reference_sentence_over_hypothesis_sentences():
    # ref sentence 'a b c' shares 'a' with hyp line 1 and 'c' with hyp line 2
    scores = rouge_segment("a x\nc", "a b c", ["rougeL", "rougeLsum"])
    assert scores["rougeLsum"].recall == pytest.approx(2 / 3)
    assert scores["rougeL"].recall == pytest.approx(2 / 3)  # here L also finds 'a ... c'


@pytest.mark.parametrize("types", [["rouge0"], ["rougeX"], [], ["rouge10"], ["rouge1", "rouge12"], [1]])
def test_unknown_rouge_types_raise_invalid_argument(types):
    with pytest.raises(InvalidArgument, match="allowed: rouge1 ... rouge9, rougeL, rougeLsum"):
        rouge(["a"], ["a"], types=types)
    with pytest.raises(InvalidArgument, match="allowed: rouge1 ... rouge9, rougeL, rougeLsum"):
        rouge_segment("a", "a", types=types)


def test_rouge_types_are_the_ones_rouge_score_accepts():
    # rouge-score takes one digit after 'rouge'; rouge10 used to score zeros here
    text = " ".join(f"w{i}" for i in range(12))
    with pytest.raises(ValueError, match="Invalid rouge type"):
        rouge_scorer.RougeScorer(["rouge10"]).score(text, text)
    with pytest.raises(InvalidArgument, match="'rouge10'"):
        rouge_segment(text, text, types=["rouge10"])
    with pytest.raises(InvalidArgument, match="'rouge10'"):
        rouge([text], [text], types="rouge1,rouge10")
    peer = rouge_scorer.RougeScorer(["rouge9"]).score(text, text)
    assert_scores_equal(rouge_segment(text, text, types=["rouge9"]), peer, ["rouge9"])


def test_result_json_layout_has_precision_recall_fmeasure_per_type():
    result = rouge(["a b", "c"], [["a b", "x"], "d"], types="rouge1,rougeL")
    assert set(result.to_dict()) == {"rouge1", "rougeL"}
    assert set(result.to_dict()["rouge1"]) == {"precision", "recall", "fmeasure"}
    assert result.to_dict()["rouge1"]["fmeasure"] == pytest.approx(0.5)
    assert len(result.segment_dicts()) == 2


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=60), stem=st.booleans())
def test_ascii_fast_path_tokenizes_every_ascii_character_like_rouge_score(text, stem):
    stemmer = porter.PorterStemmer() if stem else None
    assert list(rouge_tokens(text, stem=stem)) == peer_tokenize.tokenize(text, stemmer)
