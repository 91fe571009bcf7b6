"""BLEU against sacrebleu 2.x: the oracle, on real WMT22/TED data and random cases."""

import dataclasses
from pathlib import Path

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from tokenloom.errors import InvalidArgument
from tokenloom.metrics import corpus_bleu, sentence_bleu
from tokenloom.metrics.bleu import _reference_info, closest_ref_len, one_reference_statistics, segment_statistics
from tokenloom.metrics.text import tokenize_13a

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WMT = DATA / "wmt22_general_de_en"
if not (WMT / "system-outputs").is_dir():
    pytest.skip(f"{WMT} is absent: these tests compare with sacrebleu on the shared WMT22 outputs",
                allow_module_level=True)
SYSTEMS = sorted(p.name.split(".")[-2] for p in (WMT / "system-outputs").iterdir())
TOKENIZERS = ["13a", "intl", "char", "none"]
SMOOTHING = ["exp", "floor", "add-k", "none"]


def lines(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


@pytest.fixture(scope="module")
def wmt():
    refs = [lines(WMT / f"generaltest2022.de-en.ref.{x}.en") for x in "AB"]
    hyps = {s: lines(WMT / "system-outputs" / f"generaltest2022.de-en.hyp.{s}.en") for s in SYSTEMS}
    return hyps, refs


def raw_peer_counts(peer, smooth_method):
    """sacrebleu's add-k adds k to its reported counts of orders >= 2; undo that."""
    k = [0, 1, 1, 1] if smooth_method == "add-k" and any(peer.counts) else [0, 0, 0, 0]
    return [c - x for c, x in zip(peer.counts, k)], [t - x for t, x in zip(peer.totals, k)]


def assert_same(ours, peer, smooth_method="exp"):
    counts, totals = raw_peer_counts(peer, smooth_method)
    assert abs(ours.score - peer.score) <= 1e-9
    assert list(ours.counts) == counts and list(ours.totals) == totals
    assert (ours.hyp_len, ours.ref_len) == (peer.sys_len, peer.ref_len)
    assert ours.precisions == pytest.approx(peer.precisions, abs=1e-9)
    assert ours.bp == pytest.approx(peer.bp, abs=1e-12)


@pytest.mark.parametrize("nrefs", [1, 2])
def test_corpus_bleu_equals_sacrebleu_on_all_nine_wmt22_systems(wmt, nrefs):
    hyps, refs = wmt
    peer_metric = BLEU(references=refs[:nrefs])
    assert len(SYSTEMS) == 9
    for system in SYSTEMS:
        assert_same(corpus_bleu(hyps[system], refs[:nrefs]), peer_metric.corpus_score(hyps[system], None))


@pytest.mark.parametrize("tokenize", TOKENIZERS)
@pytest.mark.parametrize("smooth", SMOOTHING)
def test_corpus_bleu_equals_sacrebleu_for_every_tokenizer_and_smoothing(wmt, tokenize, smooth):
    hyps, refs = wmt
    hyp, two_refs = hyps["Online-B"][:300], [r[:300] for r in refs]
    ours = corpus_bleu(hyp, two_refs, tokenize=tokenize, smooth_method=smooth)
    assert_same(ours, sacrebleu.corpus_bleu(hyp, two_refs, tokenize=tokenize, smooth_method=smooth), smooth)


def test_sentence_bleu_equals_sacrebleu_on_every_wmt22_segment_with_two_references(wmt):
    hyps, refs = wmt
    for hyp, ref_a, ref_b in zip(hyps["LT22"], *refs):
        assert_same(sentence_bleu(hyp, [ref_a, ref_b]), sacrebleu.sentence_bleu(hyp, [ref_a, ref_b]))


@pytest.mark.slow
@pytest.mark.parametrize("smooth", SMOOTHING)
def test_sentence_bleu_equals_sacrebleu_on_ted_for_every_smoothing(smooth):
    ted = DATA / "ted_sk_en_compare_mt"
    ref = lines(ted / "ted.ref.detok.eng")
    for hyp, r in zip(lines(ted / "ted.sys2.detok.eng"), ref):
        ours = sentence_bleu(hyp, [r], smooth_method=smooth)
        assert_same(ours, sacrebleu.sentence_bleu(hyp, [r], smooth_method=smooth), smooth)


def test_ted_neural_system_beats_phrase_based_and_both_equal_sacrebleu():
    ted = DATA / "ted_sk_en_compare_mt"
    ref = [lines(ted / "ted.ref.detok.eng")]
    scores = {}
    for system in ("sys1", "sys2"):
        hyp = lines(ted / f"ted.{system}.detok.eng")
        scores[system] = corpus_bleu(hyp, ref)
        assert_same(scores[system], sacrebleu.corpus_bleu(hyp, ref))
    assert scores["sys2"].score > scores["sys1"].score


# Pieces of text chosen to hit every tokenizer rule: ASCII and Unicode punctuation,
# digits around '.', ',' and '-', XML entities, CJK, symbols, odd whitespace.
PIECES = ["the", "The", "cat", "cat", "a", "dog", "1", "2019", "3.5", "1,000", ".", ",", "-", "!",
          "?", "(", ")", "'s", '"', "&amp;", "&quot;", "&lt;", "<skipped>", "$", "€", "%", "“", "”",
          "—", "…", "。", "、", "«", "»", "’", "猫", "日本語", "中文", "🙂", "²", "İ", "ß",
          " ", " ", " ", "  ", "\t", "\u00a0", "\n", "-\n"]
texts = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), tokenize=st.sampled_from(TOKENIZERS), smooth=st.sampled_from(SMOOTHING),
       lowercase=st.booleans(), effective=st.booleans())
def test_random_corpora_give_sacrebleu_numbers(data, tokenize, smooth, lowercase, effective):
    size = data.draw(st.integers(1, 4))
    hyps = data.draw(st.lists(texts, min_size=size, max_size=size))
    refs = [data.draw(st.lists(texts, min_size=size, max_size=size)) for _ in range(data.draw(st.integers(1, 2)))]
    options = dict(tokenize=tokenize, smooth_method=smooth, lowercase=lowercase)
    ours = corpus_bleu(hyps, refs, use_effective_order=effective, **options)
    assert_same(ours, sacrebleu.corpus_bleu(hyps, refs, use_effective_order=effective, **options), smooth)
    seg = [r[0] for r in refs]
    assert_same(sentence_bleu(hyps[0], seg, **options), sacrebleu.sentence_bleu(hyps[0], seg, **options), smooth)


@settings(max_examples=200, deadline=None)
@given(line=texts)
def test_13a_word_cache_tokenizes_exactly_like_sacrebleu(line):
    peer = Tokenizer13a()
    assert tokenize_13a(line) == tuple(peer(line).split())


token_lists = st.lists(st.sampled_from("abcde"), max_size=12)


@settings(max_examples=500, deadline=None)
@given(hyp=token_lists, ref=token_lists, order=st.integers(1, 5))
def test_one_reference_shortcuts_count_what_the_general_statistics_count(hyp, ref, order):
    # a five-letter alphabet makes repeated n-grams on one side, both or neither
    assert one_reference_statistics(hyp, ref, order) == segment_statistics(hyp, _reference_info([ref], order), order)


def test_closest_reference_length_ties_go_to_the_shorter_reference():
    assert closest_ref_len(5, [3, 7, 6]) == 6
    assert closest_ref_len(5, [6, 4]) == 4
    assert closest_ref_len(5, [4, 6]) == 4


def test_effective_order_drops_only_orders_the_hypothesis_is_too_short_to_have():
    short = sentence_bleu("the cat", ["the cat sat"], tokenize="none")
    assert short.totals == (2, 1, 0, 0)
    # mean over the 2 orders it has: BP = exp(1 - 3/2), precisions 100/100
    assert short.score == pytest.approx(100 * 2.718281828459045 ** (1 - 1.5))
    miss = sentence_bleu("the dog", ["the cat"], tokenize="none")
    assert miss.totals[1] == 1 and miss.counts[1] == 0 and miss.score > 0  # zero-match order stays, smoothed


def test_add_k_adds_k_to_orders_two_and_up_but_not_unigrams():
    result = sentence_bleu("a b c", ["a b d"], tokenize="none", smooth_method="add-k", smooth_value=1)
    # p1 = 2/3; p2 = (1+1)/(2+1); p3 = (0+1)/(1+1); p4 total 0 -> k/k
    assert result.precisions == pytest.approx([200 / 3, 200 / 3, 50.0, 100.0])


def test_clipping_counts_a_repeated_word_only_as_often_as_the_reference_has_it():
    result = corpus_bleu(["the the the cat"], [["the cat"]], tokenize="none", verbose=True)
    assert result.counts[:2] == (2, 1) and result.totals[:2] == (4, 3)
    assert result.clipped[0] == 2  # two of the three 'the' were cut
    assert "clipping removed 2" in result.explain()


def test_summary_line_and_signature_read_like_sacrebleu(wmt):
    hyps, refs = wmt
    ours = corpus_bleu(hyps["PROMT"], refs[:1])
    peer_metric = BLEU()
    peer = peer_metric.corpus_score(hyps["PROMT"], refs[:1])
    assert str(ours) == peer.format()
    peer_sig = str(peer_metric.get_signature()).rsplit("|version:", 1)[0]
    assert ours.signature.rsplit("|version:", 1)[0] == peer_sig
    floor = sentence_bleu("a", ["a"], smooth_method="floor", use_effective_order=False)
    assert "smooth:floor[0.10]" in floor.signature and "eff:no" in floor.signature


def test_result_is_frozen_and_json_ready():
    result = sentence_bleu("a b", ["a b"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 0
    assert isinstance(result.to_dict()["precisions"], list)


@pytest.mark.parametrize("options", [dict(tokenize="zh"), dict(smooth_method="bogus"), dict(max_ngram_order=0)])
def test_unknown_options_raise_invalid_argument(options):
    with pytest.raises(InvalidArgument):
        corpus_bleu(["a"], [["a"]], **options)


def test_mismatched_reference_stream_is_rejected_with_its_length():
    with pytest.raises(InvalidArgument, match="1 segments, but there are 2"):
        corpus_bleu(["a", "b"], [["a"]])


def test_bootstrap_interval_brackets_the_corpus_score_and_is_reproducible(wmt):
    hyps, refs = wmt
    first = corpus_bleu(hyps["PROMT"][:400], [refs[0][:400]], n_bootstrap=200, seed=3)
    again = corpus_bleu(hyps["PROMT"][:400], [refs[0][:400]], n_bootstrap=200, seed=3)
    assert first.interval == again.interval
    assert first.interval.low < first.score < first.interval.high
    assert first.interval.high - first.interval.low < 10


@pytest.mark.slow
def test_13a_word_cache_tokenizes_every_line_of_the_shared_text_files_like_sacrebleu():
    peer = Tokenizer13a()
    files = [*WMT.glob("*.e[nd]"), *(WMT / "system-outputs").iterdir(), *(DATA / "ted_sk_en_compare_mt").iterdir(),
             DATA / "tiny_shakespeare" / "input.txt", DATA / "wikitext2" / "wiki.test.raw"]
    checked = 0
    for path in files:
        if path.suffix in (".md",):
            continue
        for line in lines(path):
            assert tokenize_13a(line) == tuple(peer(line).split()), (path.name, line)
            checked += 1
    assert checked > 70000
