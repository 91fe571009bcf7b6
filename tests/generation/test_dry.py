"""DRY: llama.cpp's `llama_sampler_init_dry` as the oracle on real SmolLM2 logits, plus
validation, the worked example of the docstring and the chain position under each order.

The oracle comparison is exact (torch.equal on all 49,152 logits): both sides compute
the penalty as float32(float64(multiplier) · float64(base)^k) from float32 parameters
and subtract it from the float32 logit once, so there is no rounding to tolerate.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from tokenloom.errors import InvalidArgument
from tokenloom.generation.dry import DRY, repeat_lengths, sequence_breakers
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.sampler import ORDERS, Sampler

DEFAULT_BREAKERS = ("\n", ":", "\"", "*")
CONTEXT = 8192  # SmolLM2's training context: what "-1, the whole context" means for llama.cpp here

# Texts that repeat themselves, so that DRY fires on the model's own likely continuation.
TEXTS = {
    "plain": "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. "
             "The quick brown fox jumps over the",
    "newlines": "Roses are red\nviolets are blue\nsugar is sweet\nRoses are red\nviolets are blue\nsugar is",
    "colon_far_back": "Note: the cat sat on the mat and the dog sat on the log, the cat sat on the mat and the",
    "colon_last": "Name: Alice Smith, Age: 30\nName: Alice Smith, Age:",
    "quotes_stars": 'He said "go *now* and run" and then "go *now* and run" and then "go *now* and',
    "long_loop": "one two three four five six seven eight " * 24 + "one two three",
}

PARAMS = [  # multiplier, base, allowed_length, penalty_last_n
    (0.8, 1.75, 2, -1),  # llama-server's recommended values, whole context
    (1.0, 2.0, 1, -1),
    (0.5, 1.1, 3, 12),  # a window shorter than the repeats
    (2.0, 1.75, 0, -1),  # allowed_length 0: every token that followed anything is penalised
    (1.0, 1.0, 2, -1),  # base 1: a constant penalty
    (0.3, 100.0, 2, -1),  # 100^k overflows float32 beyond k = 19: llama.cpp caps the exponent
]


def llama_cpp_dry(oracle, logits: torch.Tensor, history: list[int], multiplier: float, base: float,
                  allowed_length: int, last_n: int, breakers: tuple[str, ...]) -> torch.Tensor:
    """(V,) logits after llama.cpp's DRY sampler has accepted `history`."""
    llama_cpp = oracle.module
    encoded = [b.encode("utf-8") for b in breakers]
    array = (ctypes.c_char_p * max(len(encoded), 1))(*encoded)
    sampler = llama_cpp.llama_sampler_init_dry(oracle.vocab, multiplier, base, allowed_length,
                                               CONTEXT if last_n == -1 else last_n, array, len(encoded))
    try:
        for token in history:
            llama_cpp.llama_sampler_accept(sampler, token)
        data = (llama_cpp.llama_token_data * logits.shape[0])()
        view = np.frombuffer(data, dtype=np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
        view["id"] = np.arange(logits.shape[0])
        view["logit"] = logits.numpy()
        candidates = llama_cpp.llama_token_data_array(data=data, size=logits.shape[0], selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        out = torch.empty_like(logits)
        out[torch.from_numpy(view["id"].astype(np.int64))] = torch.from_numpy(view["logit"].copy())
        return out
    finally:
        llama_cpp.llama_sampler_free(sampler)


class Oracle:
    def __init__(self, module, llm):
        self.module, self.llm = module, llm
        self.vocab = module.llama_model_get_vocab(llm.model)


@pytest.fixture(scope="module")
def oracle():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the DRY oracle) is not installed")
    from tokenloom.model.registry import resolve

    _, path = resolve("smollm2-135m-instruct")
    return Oracle(llama_cpp, llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False))


@pytest.fixture(scope="module")
def cases(smollm):
    """name -> (token ids, next-token logits (V,) float32) of each text."""
    out = {}
    for name, text in TEXTS.items():
        ids = smollm.encode_prompt(text)
        out[name] = (ids, smollm.next_token_logits(text).float())
    return out


def ours(tokenizer, ids: list[int], logits: torch.Tensor, multiplier, base, allowed_length, last_n,
         breakers) -> torch.Tensor:
    params = SamplingParams(dry_multiplier=multiplier, dry_base=base, dry_allowed_length=allowed_length,
                            dry_penalty_last_n=last_n, dry_sequence_breakers=breakers, order="llama.cpp")
    sampler = Sampler(params, logits.shape[0], tokenizer=tokenizer)
    split = len(ids) * 2 // 3  # part prompt, part generated: DRY scans both
    history = TokenHistory([ids[:split]], logits.shape[0])
    for token in ids[split:]:
        history.append(torch.tensor([token]))
    return sampler.process(history, logits[None])[0]


# -- the oracle ------------------------------------------------------------------------------

@pytest.mark.parametrize("params", PARAMS, ids=lambda p: "m{}-b{}-a{}-n{}".format(*p))
@pytest.mark.parametrize("breakers", [DEFAULT_BREAKERS, ()], ids=["default_breakers", "no_breakers"])
def test_dry_equals_llama_cpp_exactly_on_real_logits(oracle, cases, smollm, params, breakers):
    fired = 0
    for name, (ids, logits) in cases.items():
        theirs = llama_cpp_dry(oracle, logits, ids, *params, breakers)
        mine = ours(smollm.tokenizer, ids, logits, *params, breakers)
        assert torch.equal(mine, theirs), (name, (mine - theirs).abs().max())
        fired += int((mine != logits).any())
    assert fired >= 1  # the texts do repeat themselves


@pytest.mark.parametrize("breaker", [" brown fox", " over the lazy", "jumps over"])
def test_a_breaker_that_spans_tokens_limits_the_repeat_as_in_llama_cpp(oracle, cases, smollm, breaker):
    ids, logits = cases["plain"]
    found = sequence_breakers(smollm.tokenizer, (breaker,))
    assert any(len(tail) >= 1 for tails in found.heads.values() for tail in tails)  # a multi-token breaker
    params = (0.8, 1.75, 2, -1)
    theirs = llama_cpp_dry(oracle, logits, ids, *params, (breaker,))
    mine = ours(smollm.tokenizer, ids, logits, *params, (breaker,))
    assert torch.equal(mine, theirs)
    without = ours(smollm.tokenizer, ids, logits, *params, ())
    assert not torch.equal(mine, without)  # the breaker cut the repeat short


def test_breakers_that_end_the_context_switch_dry_off_as_in_llama_cpp(oracle, cases, smollm):
    ids, logits = cases["colon_last"]  # ends with ':' so nothing after the last breaker
    theirs = llama_cpp_dry(oracle, logits, ids, 0.8, 1.75, 2, -1, DEFAULT_BREAKERS)
    assert torch.equal(theirs, logits)
    assert torch.equal(ours(smollm.tokenizer, ids, logits, 0.8, 1.75, 2, -1, DEFAULT_BREAKERS), logits)


def test_breaker_tokens_on_their_own_are_never_penalised(smollm):
    ids = smollm.tokenizer.encode("a blue sky\nred blue\nred blue", add_bos=False)
    logits = torch.zeros(smollm.tokenizer.vocab_size)
    newline = smollm.tokenizer.encode("\n", add_bos=False)[0]
    assert ours(smollm.tokenizer, ids, logits, 1.0, 1.75, 1, -1, (":",))[newline] < 0  # "\n" followed " blue"
    kept = ours(smollm.tokenizer, ids, logits, 1.0, 1.75, 1, -1, ("\n",))
    sky = smollm.tokenizer.encode(" sky", add_bos=False)[0]
    assert kept[newline] == 0 and kept[sky] < 0  # DRY is active, the breaker itself is spared


# -- the algorithm on tiny inputs ------------------------------------------------------------

def test_docstring_example_penalises_the_token_that_followed_the_repeat():
    a, b, c, d = 1, 2, 3, 4
    dry = DRY(1.0, 2.0, 2, -1)
    assert dry.penalties([a, b, c, d, a, b, c], 6).tolist() == [0, 0, 0, 0, 2, 0]
    assert dry.penalties([a, b, c, d, a, b], 6).tolist() == [0, 0, 0, 1, 0, 0]
    assert dry.penalties([a, b, c, d, b], 6).tolist() == [0] * 6


def test_repeat_lengths_are_common_suffix_lengths_capped():
    assert repeat_lengths(torch.tensor([5, 6, 7, 5, 6]), 99, 99).tolist() == [0, 2, 0, 0]
    assert repeat_lengths(torch.tensor([1, 1, 1, 1]), 99, 99).tolist() == [1, 2, 3]  # overlapping repeats
    assert repeat_lengths(torch.tensor([1, 1, 1, 1]), 2, 99).tolist() == [1, 2, 2]


def test_penalty_window_only_sees_the_last_n_tokens():
    seq = [1, 2, 3, 4, 9, 9, 9, 1, 2]
    assert DRY(1.0, 2.0, 2, -1).penalties(seq, 10)[3] == 1.0
    assert DRY(1.0, 2.0, 2, 5).penalties(seq, 10).abs().sum() == 0


# -- validation and chain position -----------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("dry_multiplier", -0.5, "dry_multiplier must be in [0, ∞) (0 = off), got -0.5"),
    ("dry_base", 0.9, "dry_base must be in [1, ∞), got 0.9"),
    ("dry_allowed_length", -1, "dry_allowed_length must be in [0, ∞), got -1"),
    ("dry_penalty_last_n", -2, "dry_penalty_last_n must be in [-1, ∞) (-1 = the whole context, 0 = off), got -2"),
    ("dry_sequence_breakers", ["\n", ""], "dry_sequence_breakers must be a list of non-empty strings"),
    ("dry_sequence_breakers", "\n", "dry_sequence_breakers must be a list of non-empty strings"),
])
def test_invalid_dry_fields_name_field_value_and_range(field, value, message):
    with pytest.raises(InvalidArgument, match=None) as error:
        SamplingParams(**{field: value})
    assert message in str(error.value)


def test_breakers_are_stored_as_a_tuple_and_params_stay_hashable():
    params = SamplingParams(dry_multiplier=0.8, dry_sequence_breakers=["\n", "###"])
    assert params.dry_sequence_breakers == ("\n", "###") and hash(params) == hash(SamplingParams(
        dry_multiplier=0.8, dry_sequence_breakers=("\n", "###")))


def test_breakers_without_a_tokenizer_are_refused_with_the_reason():
    with pytest.raises(InvalidArgument, match="need the tokenizer"):
        Sampler(SamplingParams(dry_multiplier=0.8), vocab_size=50)
    assert [p.name for p in Sampler(SamplingParams(dry_multiplier=0.8, dry_sequence_breakers=()), 50).processors] \
        == ["dry"]


def test_dry_is_off_by_default_and_with_a_zero_window():
    assert Sampler(SamplingParams(), 50).processors == []
    assert Sampler(SamplingParams(dry_multiplier=1.0, dry_penalty_last_n=0), 50).processors == []


@pytest.mark.parametrize("order, before, after", [
    ("llama.cpp", "no_repeat_ngram", "top_n_sigma"),  # penalties → dry → top_n_sigma, as llama.cpp's default chain
    ("tokenloom", "frequency_penalty", "temperature"),
    ("hf", "frequency_penalty", "no_repeat_ngram"),
    ("vllm", "presence_penalty", "no_repeat_ngram"),
])
def test_dry_sits_right_after_the_penalties(order, before, after):
    steps = ORDERS[order].steps
    assert steps[steps.index("dry") - 1] == before and steps[steps.index("dry") + 1] == after
    assert ("dry" in ORDERS[order].extensions) == (order in ("hf", "vllm"))


def test_rows_with_different_dry_settings_do_not_share_a_sampler():
    from tokenloom.generation.engine import chain_key

    assert chain_key(SamplingParams(dry_multiplier=0.8)) != chain_key(SamplingParams(dry_multiplier=0.9))
    assert chain_key(SamplingParams(dry_sequence_breakers=("\n",))) != chain_key(SamplingParams())
