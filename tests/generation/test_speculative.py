"""Speculative decoding by prompt lookup: the drafts, and output equal to plain decoding."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.generation.engine import Engine
from tokenloom.generation.scheduler import RuntimeLimits, Scheduler
from tokenloom.generation.speculative import PromptLookup, speculative_config
from tokenloom.model.kv_cache import KVPool

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


# -- the drafts ------------------------------------------------------------------------------
@pytest.mark.parametrize("ids, lookup, limit, draft", [
    ([5, 6, 7, 8, 5, 6], PromptLookup(2), None, [7, 8]),  # the docstring's example
    ([1, 2, 3, 9, 2, 3, 4, 1, 2, 3], PromptLookup(2), None, [9, 2]),  # the 3-gram wins over the later 2-gram
    ([1, 9, 1, 8, 1], PromptLookup(3), None, [8, 1]),  # the latest occurrence of a 1-gram
    ([1, 2, 3, 4, 1, 2], PromptLookup(5), None, [3, 4, 1, 2]),  # a draft stops where the ids do
    ([1, 2, 3, 4, 1, 2], PromptLookup(5), 1, [3]),  # the budget's limit
    ([1, 2, 3, 4], PromptLookup(5), None, []),  # nothing recurs
    ([7, 7, 7], PromptLookup(4, max_ngram=2, min_ngram=2), None, [7]),
    ([1, 2, 3, 1], PromptLookup(4, max_ngram=2, min_ngram=2), None, []),  # 1-grams are not looked up
    ([4], PromptLookup(4), None, []),
])
def test_lookup_drafts_what_followed_the_latest_occurrence_of_the_longest_suffix(ids, lookup, limit, draft):
    assert lookup.draft(ids, limit) == draft


@pytest.mark.parametrize("call, message", [
    (lambda: speculative_config("medusa"), "speculative must be one of ngram (or None), got 'medusa'"),
    (lambda: speculative_config(None, 3), "draft_tokens needs speculative='ngram'"),
    (lambda: speculative_config("ngram", 0), "draft_tokens must be in [1, 64], got 0"),
    (lambda: PromptLookup(4, max_ngram=2, min_ngram=3), "min_ngram must be in [1, 2] (at most max_ngram), got 3"),
])
def test_bad_settings_say_what_is_allowed(call, message):
    with pytest.raises(InvalidArgument) as error:
        call()
    assert message in str(error.value)


# -- equal to plain decoding on a tiny Llama --------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pair(tiny_llama_dir):
    limits = RuntimeLimits(prefix_cache_tokens=0)
    return (tl.load(tiny_llama_dir, precision="float32", limits=limits),
            tl.load(tiny_llama_dir, precision="float32", limits=limits, speculative="ngram", draft_tokens=4))


PARAMS = [  # sampled ones at low temperatures: the tiny model's logits are nearly flat, and drafts need repeats
    tl.SamplingParams(temperature=0, max_tokens=16),
    tl.SamplingParams(temperature=0, max_tokens=5),
    tl.SamplingParams(temperature=0, max_tokens=16, repetition_penalty=1.2),
    tl.SamplingParams(temperature=0, max_tokens=16, stop=["at"]),
    tl.SamplingParams(temperature=0.2, top_p=0.9, seed=1, max_tokens=16),
    tl.SamplingParams(temperature=0.1, top_k=5, seed=2, max_tokens=16, logprobs=2),
    tl.SamplingParams(mirostat=2, temperature=0.1, seed=3, max_tokens=16),
]
PROMPTS = ["The cat sat on the mat. The cat sat on the", "12 and 345 and 12 and 345 and 12 and"]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: repr(p)[14:60])
def test_output_is_what_plain_decoding_gives(tiny_pair, params):
    plain, fast = tiny_pair
    before = fast.scheduler.speculator.stats.steps
    for prompt in PROMPTS:
        a, b = plain.generate(prompt, params), fast.generate(prompt, params)
        assert (b.token_ids, b.text, b.finish_reason) == (a.token_ids, a.text, a.finish_reason)
        if params.logprobs is not None:
            assert [t.id for t in b.logprobs] == [t.id for t in a.logprobs]
            assert [t.logprob for t in b.logprobs] == pytest.approx([t.logprob for t in a.logprobs], abs=1e-4)
    if params.greedy:  # (sampled tokens seldom repeat on this model; the bigram test below covers them)
        assert fast.scheduler.speculator.stats.steps > before  # the drafts were verified, not skipped


def test_drafts_are_accepted_on_a_repeating_continuation(tiny_pair):
    _, fast = tiny_pair
    stats = fast.scheduler.speculator.stats
    start = (stats.steps, stats.emitted)
    fast.generate(PROMPTS[0], tl.SamplingParams(temperature=0, max_tokens=40))
    steps, emitted = stats.steps - start[0], stats.emitted - start[1]
    assert steps and emitted / steps > 1.5  # the tiny model loops, and lookup drafts the loop
    assert fast.scheduler.stats()["tokens_per_step"] == pytest.approx(stats.tokens_per_step)


def test_several_running_sequences_decode_plainly(tiny_pair):
    plain, fast = tiny_pair
    params = tl.SamplingParams(temperature=0.8, seed=5, n=2, max_tokens=10)
    steps = fast.scheduler.speculator.stats.steps
    ours = fast.generate(PROMPTS[0], params)
    assert [c.token_ids for c in ours] == [c.token_ids for c in plain.generate(PROMPTS[0], params)]
    assert fast.scheduler.speculator.stats.steps - steps <= 2  # only when one of the two is left running


# -- the distribution under sampling: a bigram toy model, exact probabilities -------------------
class Bigram(torch.nn.Module):
    """Next-token logits that depend on the current token only: log P[token]. Needs no cache."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.log_probs = probs.log()  # (V, V)
        self.config = SimpleNamespace(max_seq_len=64, vocab_size=probs.shape[0])
        self.precision = "float32"

    def new_kv_pool(self) -> KVPool:
        return KVPool(1, 1, 1, self.config.max_seq_len)

    def forward(self, ids, cache=None, keep=None, last_only=False):
        logits = self.log_probs[ids]  # (B, T, V)
        keep = 1 if last_only else keep
        return logits[:, -keep:] if keep else logits


class Letters:
    eos_ids = ()

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(97 + i) for i in ids)

    def token_text(self, i):
        return chr(97 + i)


def _chi_square_p(observed: torch.Tensor, expected: torch.Tensor) -> float:
    from scipy.stats import chisquare

    expected = expected.double() / expected.double().sum() * observed.sum().item()
    return float(chisquare(observed.double().numpy(), expected.numpy()).pvalue)


def test_sampled_tokens_follow_the_models_distribution(tiny_pair):
    """Drafts accepted and rejected alike, the first two tokens' joint frequencies (36 cells) and
    the 3rd and 4th tokens' frequencies match the exact probabilities (chi-square, p > 0.001)."""
    V, follow = 6, {0: 1, 1: 2, 2: 3, 3: 4, 4: 1, 5: 0}
    probs = torch.zeros(V, V)
    for a, b in follow.items():  # 0.55 to the token a draft proposes, the rest graded (no ties for top_k)
        others = [t for t in range(V) if t != b]
        probs[a, others] = torch.tensor([5.0, 4, 3, 2, 1]) / 15 * 0.45
        probs[a, b] = 0.55
    scheduler = Scheduler(Engine(Bigram(probs), Letters()), RuntimeLimits(prefix_cache_tokens=0),
                          speculative=PromptLookup(4))
    params = dict(temperature=0.8, top_k=4, max_tokens=4)
    # The chain's distribution: temperature 0.8, then the 4 most likely tokens (ties by lowest id).
    chain = torch.softmax(probs.log() / 0.8, dim=-1)
    keep = torch.zeros_like(chain, dtype=torch.bool).scatter_(1, chain.topk(4, dim=-1, sorted=True).indices, True)
    chain = torch.where(keep, chain, 0.0)
    chain /= chain.sum(-1, keepdim=True)
    prompt, n = [1, 2, 3, 4, 1, 2], 1500  # the draft is [3, 4, 1, 2]
    outs = torch.tensor([scheduler.submit(prompt, tl.SamplingParams(seed=s, **params)).result().token_ids
                         for s in range(n)])  # (n, 4)
    stats = scheduler.speculator.stats
    assert 0.2 < stats.acceptance < 0.8  # both branches of the rule ran, many times
    first = chain[2]  # P(t1)
    joint = (first[:, None] * chain).reshape(-1)  # P(t1, t2)
    observed = torch.bincount(outs[:, 0] * V + outs[:, 1], minlength=V * V)
    cells = joint > 0
    assert _chi_square_p(observed[cells], joint[cells]) > 1e-3
    marginal = first @ chain  # P(t2)
    for position in (2, 3):
        marginal = marginal @ chain
        observed = torch.bincount(outs[:, position], minlength=V)
        assert _chi_square_p(observed[marginal > 0], marginal[marginal > 0]) > 1e-3
        assert observed[marginal == 0].sum() == 0
    # One draw per emitted token from the row's generator: the same seed gives plain decoding's tokens.
    plain = Scheduler(Engine(Bigram(probs), Letters()), RuntimeLimits(prefix_cache_tokens=0))
    same = [plain.submit(prompt, tl.SamplingParams(seed=s, **params)).result().token_ids for s in range(300)]
    assert same == outs[:300].tolist()


# -- the real model ---------------------------------------------------------------------------
def summary_prompts(lm, count: int, article_tokens: int = 200) -> list[str]:
    if not (SHARED_DATA / "cnndm_pointer_generator").is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: the prompts are its CNN/DM articles")
    rows = [json.loads(line) for line in open(SHARED_DATA / "cnndm_pointer_generator" /
                                               "cnndm_test_stride23_500.jsonl")][:count]
    prompts = []
    for row in rows:
        article = lm.tokenizer.decode(lm.tokenizer.encode(row["article"])[:article_tokens])
        prompts.append(lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Summarize this article in three sentences.\n\n" + article}]))
    return prompts


@pytest.mark.slow
def test_greedy_output_equals_plain_greedy_on_smollm2_float32(smollm):
    fast = tl.LanguageModel(smollm.model, smollm.tokenizer, speculative=PromptLookup(5))
    params = tl.SamplingParams(temperature=0, max_tokens=48)
    for prompt in summary_prompts(smollm, 2):
        assert fast.generate(prompt, params).token_ids == smollm.generate(prompt, params).token_ids
    assert fast.scheduler.speculator.stats.tokens_per_step > 1.5


@pytest.mark.slow
def test_on_native_weights_speculation_gives_plain_greedy_token_for_token(smollm_native):
    """In native precision the verify pass is one fused decode step over the drafted positions of
    the same slot, each row computed as decoding it alone: the same tokens, and drafts do get accepted."""
    lm = smollm_native
    # Both sides start with empty prefix caches: in native precision a prefix cached from another
    # request (a short chunk, int8 activations) can differ in the last bits from the same prefix
    # prefilled in one long chunk (float32 dequantized weights), whatever the session ran before.
    plain = tl.LanguageModel(lm.model, lm.tokenizer)
    fast = tl.LanguageModel(lm.model, lm.tokenizer, speculative=PromptLookup(5))
    params = tl.SamplingParams(temperature=0, max_tokens=48)
    for prompt in summary_prompts(lm, 3):
        assert fast.generate(prompt, params).token_ids == plain.generate(prompt, params).token_ids
    stats = fast.scheduler.speculator.stats
    assert stats.accepted > 0 and stats.steps < stats.emitted


def test_draft_length_drops_drafts_that_cost_more_than_they_yield_and_probes_again():
    from tokenloom.generation.speculative import DraftLength

    length = DraftLength()
    assert length.choose(5) == 5  # nothing measured: verify everything, and learn
    length.observe_plain(0.004)
    length.observe_verify(rows=6, seconds=0.014, drafted=5, accepted=0)  # 2 ms a row, nothing held
    for _ in range(4):
        length.observe_verify(rows=2, seconds=0.006, drafted=1, accepted=0)
    choices = [length.choose(5) for _ in range(DraftLength.PROBE_EVERY)]
    assert choices[:-1] == [0] * (DraftLength.PROBE_EVERY - 1) and choices[-1] == 1  # a one-id probe
    cheap = DraftLength()  # rows nearly free, as one float32 row bound by memory
    cheap.observe_plain(0.010)
    cheap.observe_verify(rows=6, seconds=0.0105, drafted=5, accepted=2)
    assert cheap.choose(5) == 5


def test_native_speculation_adapts_and_still_gives_the_plain_greedy_tokens(smollm_native):
    lm = smollm_native
    speculative = tl.LanguageModel(lm.model, lm.tokenizer, speculative=PromptLookup())
    assert speculative.scheduler.speculator.adaptive  # native verify passes are exact decode steps
    prompt = "one two three four five six seven eight nine ten. one two three four five six seven eight nine"
    params = tl.SamplingParams(temperature=0, max_tokens=24)
    assert speculative.generate(prompt, params).token_ids == lm.generate(prompt, params).token_ids
