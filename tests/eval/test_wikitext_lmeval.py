"""`perplexity(task="wikitext")` against lm-evaluation-harness 0.4.13's own `wikitext` task pieces.

The peer runs lm-eval's HFLM (over the transformers model of the same GGUF, float32) through
`loglikelihood_rolling` on `Instance`s whose text is the task's `doc_to_target` (its
detokenizer), then the task's `process_results` and lm-eval's registered aggregations.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.eval import perplexity, wikitext

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
RAW_TEST = DATA / "wikitext2" / "wiki.test.raw"
needs_data = pytest.mark.skipif(not RAW_TEST.is_file(), reason=f"{RAW_TEST} is not there (WikiText-2 raw test)")


def lm_eval_wikitext():
    """The task's own module (lm_eval/tasks/wikitext/preprocess_wikitext.py; the folder is no package)."""
    import lm_eval

    path = Path(lm_eval.__file__).parent / "tasks" / "wikitext" / "preprocess_wikitext.py"
    spec = importlib.util.spec_from_file_location("lm_eval_wikitext", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def raw_pages():
    if not RAW_TEST.is_file():
        pytest.skip(f"{RAW_TEST} is not there (WikiText-2 raw test)")
    return wikitext.split_pages(RAW_TEST.read_text(encoding="utf-8"))


@needs_data
def test_pages_are_the_document_level_articles(raw_pages):
    text = RAW_TEST.read_text(encoding="utf-8")
    assert len(raw_pages) == 62  # EleutherAI/wikitext_document_level, wikitext-2-raw-v1, test
    assert all(page.startswith(" = ") and wikitext._is_title(page.split("\n")[0]) for page in raw_pages)
    assert raw_pages[0].startswith(" = Robert Boulter = \n") and raw_pages[1].startswith(" = Du Fu = \n")
    assert "\n".join(raw_pages) == text[text.index(" = Robert Boulter = "):]  # only the blank first line is dropped
    # a file of pages joined by newlines splits back into the same pages (a user-given --data file)
    assert wikitext.split_pages("\n".join(raw_pages[3:6])) == raw_pages[3:6]


@needs_data
def test_detokenizer_is_lm_evals_on_every_test_page(raw_pages):
    theirs = lm_eval_wikitext()
    for page in raw_pages:
        assert wikitext.detokenize(page) == theirs.wikitext_detokenizer({"page": page})
        assert theirs.process_results({"page": page}, [-1.0])["word_perplexity"] == (-1.0, wikitext.word_count(page))


def hflm(hf_model, lm, **options):
    """lm-eval's HFLM over the transformers model, with the model's own tokenizer.

    transformers' GGUF conversion drops SmolLM2's digit-by-digit pre-tokenizer
    (tests/model/test_gguf_smollm.py), so lm-eval gets tokenloom's tokenizer (the one
    rebuilt from the GGUF metadata), wrapped for transformers, with SmolLM2's BOS and EOS.
    """
    import transformers
    from lm_eval.models.huggingface import HFLM

    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=copy.deepcopy(lm.tokenizer.backend), bos_token="<|im_start|>", eos_token="<|im_end|>")
    return HFLM(pretrained=hf_model, tokenizer=tokenizer, device="cpu", **options)


@pytest.mark.slow
@needs_data
def test_wikitext_task_equals_lm_eval(smollm, hf_smollm, raw_pages, tmp_path):
    """The three shortest test pages (~900 tokens; 1, 2 and 3 windows of 256): a few seconds on 2 cores."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_metric_aggregation

    theirs = lm_eval_wikitext()
    by_length = sorted(range(len(raw_pages)), key=lambda i: len(raw_pages[i]))
    pages = [raw_pages[i] for i in sorted(by_length[:3])]
    peer = hflm(hf_smollm, smollm, max_length=256, batch_size=8)  # the 6 windows in one padded batch
    assert hflm(hf_smollm, smollm).max_length == smollm.config.max_seq_len  # the task's default context
    assert peer.prefix_token_id == wikitext.prefix_token_id(smollm.tokenizer) == 1  # <|im_start|>
    docs = [{"page": page} for page in pages]
    requests = [Instance("loglikelihood_rolling", doc, (theirs.wikitext_detokenizer(doc),), i)
                for i, doc in enumerate(docs)]
    for request, page in zip(requests, pages):
        assert peer.tok_encode(request.args[0]) == smollm.tokenizer.encode(wikitext.detokenize(page))
    loglikelihoods = peer.loglikelihood_rolling(requests, disable_tqdm=True)
    results = [theirs.process_results(doc, [ll]) for doc, ll in zip(docs, loglikelihoods)]
    expected = {name: get_metric_aggregation(name)([r[name] for r in results])
                for name in ("word_perplexity", "byte_perplexity", "bits_per_byte")}

    data = tmp_path / "pages.raw"
    data.write_text("\n".join(pages), encoding="utf-8")  # a user-given file with these pages
    ours = perplexity(smollm, task="wikitext", data=data, context=256)
    assert ours.words == sum(r["word_perplexity"][1] for r in results)
    assert ours.bytes == sum(r["byte_perplexity"][1] for r in results)
    assert ours.nll * ours.tokens == pytest.approx(-sum(loglikelihoods), rel=1e-5)
    for name, value in expected.items():
        assert getattr(ours, name) == pytest.approx(value, rel=1e-4), name  # 0.01%
    assert "task:wikitext" in ours.signature and "bos:<|im_start|>" in ours.signature


@needs_data
def test_limit_takes_the_first_pages_and_the_default_file_is_the_local_test_split(smollm, monkeypatch):
    monkeypatch.setenv(wikitext.DATA_ENV, str(DATA))
    assert wikitext.default_data("test") == RAW_TEST
    first = wikitext.load_pages(limit=2)
    assert first == wikitext.split_pages(RAW_TEST.read_text(encoding="utf-8"))[:2]


def test_word_and_byte_counts_are_on_the_raw_page_and_the_score_on_the_detokenized_one(smollm, tmp_path):
    page = " = Tea = \n \n Tea is a drink . It costs 2 @,@ 000 yen , or so . \n"
    data = tmp_path / "tea.raw"
    data.write_text(page, encoding="utf-8")
    ours = perplexity(smollm, task="wikitext", data=data)
    scored = " = Tea =\n\nTea is a drink. It costs 2,000 yen, or so.\n"
    assert wikitext.detokenize(page) == scored
    assert ours.tokens == len(smollm.tokenizer.encode(scored))  # every token, after the BOS prefix
    assert (ours.words, ours.bytes) == (len(page.split()) + 2, len(page.encode()))  # re.split counts the ends
    assert ours.word_perplexity == pytest.approx(math.exp(ours.nll * ours.tokens / ours.words))
    assert ours.context == ours.stride == smollm.config.max_seq_len


@pytest.mark.parametrize(
    "options, message",
    [
        ({"task": "lambada"}, "unknown task 'lambada'; tasks: wikitext"),
        ({"task": "wikitext", "split": "dev"}, "unknown WikiText split 'dev'; splits: train, validation, test"),
        ({"task": "wikitext", "limit": 0}, "limit must be at least 1 page"),
        ({"task": "wikitext", "stride": 64, "context": 128}, "disjoint windows"),
        ({"task": "wikitext", "bos": True}, "leave bos out"),
        ({"task": "wikitext", "data": "/no/such/wiki.raw"}, "is not a file"),
        ({"limit": 3}, "belong to a task"),
    ],
)
def test_bad_task_options_say_what_is_allowed(smollm, options, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        perplexity(smollm, **options)


def test_without_local_data_the_error_says_how_to_give_it(smollm, monkeypatch, tmp_path):
    monkeypatch.delenv(wikitext.DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidArgument, match="--data FILE"):
        perplexity(smollm, task="wikitext", split="validation")


def test_docstring_example_holds():
    import doctest

    assert doctest.testmod(wikitext).failed == 0
