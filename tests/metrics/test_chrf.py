"""chrF against sacrebleu 2.x on WMT22 and on random cases."""

from pathlib import Path

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import CHRF

from tokenloom.errors import InvalidArgument
from tokenloom.metrics import corpus_chrf, get_metric, sentence_chrf

WMT = Path(__file__).resolve().parents[3] / "shared" / "data" / "wmt22_general_de_en"
needs_wmt = pytest.mark.skipif(not (WMT / "system-outputs").is_dir(),
                               reason=f"{WMT} is absent: these tests compare with sacrebleu on the shared WMT22 outputs")


def lines(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


@needs_wmt
@pytest.mark.parametrize("system", ["JDExploreAcademy", "Online-Y"])
def test_corpus_chrf_equals_sacrebleu_on_wmt22_with_one_and_two_references(system):
    refs = [lines(WMT / f"generaltest2022.de-en.ref.{x}.en")[:600] for x in "AB"]
    hyp = lines(WMT / "system-outputs" / f"generaltest2022.de-en.hyp.{system}.en")[:600]
    for nrefs in (1, 2):
        ours, peer = corpus_chrf(hyp, refs[:nrefs]), sacrebleu.corpus_chrf(hyp, refs[:nrefs])
        assert abs(ours.score - peer.score) <= 1e-9
        assert str(ours) == peer.format()


@pytest.mark.slow
@needs_wmt
def test_corpus_chrf_equals_sacrebleu_on_all_nine_wmt22_systems():
    refs = [lines(WMT / "generaltest2022.de-en.ref.A.en")]
    peer_metric = CHRF(references=refs)
    for path in sorted((WMT / "system-outputs").iterdir()):
        hyp = lines(path)
        assert abs(corpus_chrf(hyp, refs).score - peer_metric.corpus_score(hyp, None).score) <= 1e-9


def test_signature_matches_sacrebleu_except_the_version():
    ours = corpus_chrf(["a b"], [["a c"]])
    metric = CHRF()
    metric.corpus_score(["a b"], [["a c"]])
    assert ours.signature.rsplit("|version:", 1)[0] == str(metric.get_signature()).rsplit("|version:", 1)[0]


def test_worked_example_from_the_docstring():
    assert sentence_chrf("ab", ["abc"], char_order=2).score == pytest.approx(100 * 35 / 55)


PIECES = ["the", "The", "cat", "cats", "a", "dog", ".", ",", "(hi)", "'", "“", "—", "猫", "ß", " ", " ", "  ", "\t"]
texts = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), word_order=st.sampled_from([0, 2]), eps=st.booleans(), whitespace=st.booleans())
def test_random_corpora_give_sacrebleu_chrf(data, word_order, eps, whitespace):
    size = data.draw(st.integers(1, 4))
    hyps = data.draw(st.lists(texts, min_size=size, max_size=size))
    refs = [data.draw(st.lists(texts, min_size=size, max_size=size)) for _ in range(data.draw(st.integers(1, 2)))]
    options = dict(word_order=word_order, eps_smoothing=eps, remove_whitespace=not whitespace)
    ours, peer = corpus_chrf(hyps, refs, **options), sacrebleu.corpus_chrf(hyps, refs, **options)
    assert abs(ours.score - peer.score) <= 1e-9
    seg = [r[0] for r in refs]
    assert abs(sentence_chrf(hyps[0], seg, **options).score - sacrebleu.sentence_chrf(hyps[0], seg, **options).score) <= 1e-9


def test_chrf_is_reachable_through_the_registry():
    assert get_metric("chrf") is corpus_chrf
    with pytest.raises(InvalidArgument, match="known metrics"):
        get_metric("meteor")
