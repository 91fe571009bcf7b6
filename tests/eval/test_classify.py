"""Likelihood classification, contextual calibration, generation, fill in the blank, the report."""

from __future__ import annotations

import pytest
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.eval.classify import calibrate, classify, fill_blank, parse_label
from tokenloom.eval.report import read_labelled_tsv, report

LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def sst2_subset(sst2_path):
    texts, gold = read_labelled_tsv(sst2_path, "sentence", "label", LABELS)
    assert len(texts) == 872 and set(gold) == set(LABELS)
    return texts[:8], gold[:8]


def test_calibration_divides_by_the_content_free_distribution():
    q = calibrate(torch.tensor([[0.7, 0.3], [0.5, 0.5]]), torch.tensor([0.8, 0.2]))
    assert torch.allclose(q.sum(-1), torch.ones(2), atol=1e-6)
    assert q[0].tolist() == pytest.approx([0.368, 0.632], abs=1e-3) and q[1].tolist() == pytest.approx([0.2, 0.8])


@pytest.mark.parametrize("method", ["likelihood", "mean", "calibrated"])
def test_likelihood_methods_give_distributions_over_the_labels(smollm, sst2_subset, method):
    texts, gold = sst2_subset
    results = classify(smollm, texts, LABELS, method=method, batch_size=4)
    assert len(results) == len(texts)
    for r in results:
        assert set(r.probs) == set(LABELS) and sum(r.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert r.label == max(r.probs, key=r.probs.get)
        assert all(v < 0 for v in r.loglik.values())
    assert sum(r.label == g for r, g in zip(results, gold)) >= 5  # well above chance on easy sentences


def test_likelihood_probs_are_the_softmax_of_the_summed_logliks(smollm, sst2_subset):
    (r,) = classify(smollm, sst2_subset[0][:1], LABELS)
    logliks = torch.tensor([r.loglik[label] for label in LABELS], dtype=torch.float64)
    assert torch.softmax(logliks, 0).tolist() == pytest.approx([r.probs[label] for label in LABELS])


@pytest.mark.slow
def test_generate_method_maps_answers_to_labels(smollm):
    texts = ["a wonderful, moving film that I loved.", "a boring, awful mess; I hated every minute."]
    results = classify(smollm, texts, LABELS, method="generate")
    assert all(r.answer is not None for r in results)
    assert [r.label for r in results] == ["positive", "negative"]


@pytest.mark.parametrize(
    "answer, label",
    [("Positive.", "positive"), ("It is negative, not positive", "negative"), ("I cannot tell", None),
     ("positively", None)],
)
def test_parse_label_takes_the_first_label_named(answer, label):
    assert parse_label(answer, LABELS) == label


def test_fill_blank_ranks_candidates_by_sentence_likelihood(smollm):
    result = fill_blank(smollm, "The capital of France is ___.", ["Rome", "Paris", "banana"])
    assert result.sentence == "The capital of France is Paris."
    assert [c for c, _ in result.ranking][0] == "Paris" and result.ranking[0][1] > result.ranking[1][1]


@pytest.mark.slow
def test_fill_blank_generates_when_no_candidates_are_given(smollm):
    result = fill_blank(smollm, "The capital of France is ___.")
    assert "Paris" in result.sentence and len(result.ranking) == 1


def test_report_table():
    gold, pred = ["a", "a", "b"], ["a", "b", "b"]
    r = report(gold, pred, ["a", "b"])
    assert (r.accuracy, r.macro_f1, r.majority_baseline, r.n) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert r.confusion == {"a": {"a": 1, "b": 1}, "b": {"a": 0, "b": 1}}
    r = report(["a", "b"], [None, "b"], ["a", "b"])
    assert r.no_label == 1 and r.confusion["a"]["none"] == 1 and r.accuracy == 0.5


@pytest.mark.parametrize(
    "texts, labels, kwargs, message",
    [
        (["x"], ["pos"], {}, "at least 2"),
        (["x"], ["pos", "pos"], {}, "distinct"),
        (["x"], ["pos", " "], {}, "empty"),
        ([], LABELS, {}, "no texts"),
        (["x"], LABELS, {"method": "vote"}, "method"),
        (["x"], LABELS, {"template": "no placeholder"}, "template"),
    ],
)
def test_bad_classification_input_is_refused(smollm, texts, labels, kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        classify(smollm, texts, labels, **kwargs)


def test_tsv_with_a_missing_column_is_refused(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tgold\nfine\t1\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="no column 'sentence'"):
        read_labelled_tsv(path, "sentence", "gold", LABELS)
    with pytest.raises(InvalidArgument, match="neither"):
        read_labelled_tsv(path, "text", "gold", ["only"])
