"""The decode loop: cache, batching, seeds, stopping, streaming, logprobs."""

import pytest
import torch

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.model.kv_cache import KVPool

GREEDY = dict(temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return tl.load(tiny_llama_dir)


@pytest.fixture(scope="module")
def tiny_gpt2(tiny_gpt2_dir):
    return tl.load(tiny_gpt2_dir)


@pytest.mark.parametrize("which", ["tiny", "tiny_gpt2"])
def test_cached_decoding_equals_full_recomputation(request, which):
    lm = request.getfixturevalue(which)
    out = lm.generate("The cat sat", tl.SamplingParams(max_tokens=24, **GREEDY))
    prompt = lm.tokenizer.encode("The cat sat")
    full = lm.logits(prompt + out.token_ids)  # (T, V) without any cache
    expected = full[len(prompt) - 1 : -1].argmax(-1).tolist()
    assert out.token_ids == expected
    engine, pool = lm.engine, lm.model.new_kv_pool()
    pool.reserve(1, len(prompt) + 8)
    with torch.inference_mode():
        steps = [engine.prefill(pool, 0, prompt, 0)[-1]]
        for i, token in enumerate(out.token_ids[:7]):
            steps.append(engine.decode(pool, [0], [len(prompt) + i], [token])[0])
    assert torch.allclose(torch.stack(steps), full[len(prompt) - 1 : len(prompt) + 7], atol=1e-4)


def test_a_prompt_prefilled_in_chunks_gives_the_logits_of_one_pass(tiny):
    prompt = tiny.tokenizer.encode("The cat sat on the mat and the dog ran in the park")
    full = tiny.logits(prompt)
    engine, pool = tiny.engine, tiny.model.new_kv_pool()
    pool.reserve(1, len(prompt))
    with torch.inference_mode():
        first = engine.prefill(pool, 0, prompt[:5], 0, keep=5)
        rest = engine.prefill(pool, 0, prompt[5:], 5, keep=len(prompt) - 5)
    assert torch.allclose(torch.cat([first, rest]), full, atol=1e-4)


@pytest.mark.parametrize("which", ["tiny", "tiny_gpt2"])
def test_batched_greedy_gives_the_same_tokens_as_one_at_a_time(request, which):
    lm = request.getfixturevalue(which)
    prompts = ["The cat", "A dog ran in the park and then", "Numbers like 12"]
    params = tl.SamplingParams(max_tokens=16, **GREEDY)
    batched = lm.generate(prompts, params)
    alone = [lm.generate(p, params) for p in prompts]
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]


@pytest.mark.slow
def test_batched_greedy_on_the_real_model(smollm):
    prompts = ["The cat sat on the", "Once upon a time in a small village by the sea, there", "2 + 2 ="]
    params = tl.SamplingParams(max_tokens=20, **GREEDY)
    batched = smollm.generate(prompts, params)
    assert [c.token_ids for c in batched] == [smollm.generate(p, params).token_ids for p in prompts]


def test_a_seeded_sample_does_not_depend_on_the_rest_of_the_batch(tiny):
    params = tl.SamplingParams(temperature=1.0, top_p=0.95, seed=7, max_tokens=12, ignore_eos=True)
    alone = tiny.generate("The cat", params)
    batched = tiny.generate(["A dog ran in the park", "The cat", "Numbers"], params)
    assert batched[1].token_ids == alone.token_ids
    assert tiny.generate("The cat", params).token_ids == alone.token_ids


def test_n_samples_differ_and_are_reproducible(tiny):
    params = tl.SamplingParams(temperature=1.0, seed=3, n=3, max_tokens=10, ignore_eos=True)
    first, second = tiny.generate("The cat", params), tiny.generate("The cat", params)
    assert [c.token_ids for c in first] == [c.token_ids for c in second]
    assert len({tuple(c.token_ids) for c in first}) > 1
    assert [c.index for c in first] == [0, 1, 2]


def test_max_tokens_ends_with_length(tiny):
    out = tiny.generate("The cat", tl.SamplingParams(max_tokens=5, **GREEDY))
    assert out.finish_reason == "length" and out.completion_tokens == 5


def test_eos_ends_generation_and_is_not_in_the_text(tiny):
    eos = tiny.tokenizer.eos_ids[0]
    out = tiny.generate("The cat", tl.SamplingParams(temperature=0, max_tokens=30, logit_bias={eos: 100}))
    assert out.finish_reason == "eos" and out.stop_reason == eos
    assert out.token_ids == [] and out.text == ""


def test_min_tokens_holds_back_eos(tiny):
    eos = tiny.tokenizer.eos_ids[0]
    params = tl.SamplingParams(temperature=0, max_tokens=30, min_tokens=4, logit_bias={eos: 100})
    out = tiny.generate("The cat", params)
    assert out.finish_reason == "eos" and out.completion_tokens == 4


def test_stop_token_ids_end_generation(tiny):
    first = tiny.generate("The cat", tl.SamplingParams(max_tokens=8, **GREEDY)).token_ids
    out = tiny.generate("The cat", tl.SamplingParams(max_tokens=8, stop_token_ids=[first[3]], **GREEDY))
    assert out.finish_reason == "stop" and out.stop_reason == first[3]
    assert out.token_ids == first[: first.index(first[3])]


@pytest.mark.slow
def test_a_stop_string_spanning_tokens_is_found_and_cut(smollm):
    params = tl.SamplingParams(max_tokens=40, **GREEDY)
    full = smollm.generate("The capital of France is", params)
    pieces = [smollm.tokenizer.decode([t]) for t in full.token_ids]
    # a stop string made of the end of token 5 and the start of token 6
    stop = pieces[5][-2:] + pieces[6][:2]
    assert len(stop) >= 3
    cut = full.text.find(stop)
    out = smollm.generate("The capital of France is", params.__class__(max_tokens=40, stop=[stop], **GREEDY))
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert out.text == full.text[:cut]
    streamed = "".join(smollm.stream("The capital of France is", max_tokens=40, stop=[stop], **GREEDY))
    assert streamed == out.text


@pytest.mark.slow
def test_stream_joins_to_the_generated_text(smollm):
    params = tl.SamplingParams(max_tokens=30, **GREEDY)
    pieces = list(smollm.stream("List three fruits:", params))
    assert "".join(pieces) == smollm.generate("List three fruits:", params).text
    assert all("\ufffd" not in p for p in pieces)


def test_logprobs_are_log_softmax_of_the_model_logits(tiny):
    params = tl.SamplingParams(max_tokens=6, logprobs=3, **GREEDY)
    out = tiny.generate("The cat", params)
    prompt = tiny.tokenizer.encode("The cat")
    logp = torch.log_softmax(tiny.logits(prompt + out.token_ids), -1)
    for step, entry in enumerate(out.logprobs):
        row = logp[len(prompt) - 1 + step]
        assert entry.id == out.token_ids[step]
        assert entry.logprob == pytest.approx(row[entry.id].item(), abs=1e-4)
        assert [t[1] for t in entry.top] == row.topk(3).indices.tolist()


def test_completion_dict_carries_the_stop_reason_and_the_logprobs(tiny):
    first = tiny.generate("The cat", tl.SamplingParams(max_tokens=8, **GREEDY)).token_ids
    out = tiny.generate("The cat", tl.SamplingParams(max_tokens=8, stop_token_ids=[first[3]], logprobs=2, **GREEDY))
    d = out.to_dict()
    assert d["finish_reason"] == "stop" and d["stop_reason"] == first[3]
    kept = first.index(first[3])  # tokens before the first occurrence of the stop id
    assert len(d["logprobs"]) == len(out.logprobs) == len(out.token_ids) == kept > 0  # the stop id is in neither
    assert [e["id"] for e in d["logprobs"]] == out.token_ids
    entry, raw = d["logprobs"][0], out.logprobs[0]
    assert entry == {"token": raw.token, "id": raw.id, "logprob": raw.logprob,
                     "top": [{"token": s, "id": j, "logprob": v} for s, j, v in raw.top]}
    assert len(entry["top"]) == 2
    plain = tiny.generate("The cat", tl.SamplingParams(max_tokens=3, **GREEDY)).to_dict()
    assert plain["logprobs"] is None and plain["stop_reason"] is None and plain["finish_reason"] == "length"


def test_decode_view_masks_each_row_at_its_own_length():
    pool = KVPool(n_layers=1, kv_heads=1, head_dim=2, max_len=128)
    pool.reserve(2, 8)
    view = pool.decode_view([0, 1], [3, 1])  # reads 64 positions: a multiple of READ_ALIGN
    assert view.mask[:, 0, 0].tolist() == [[True] * 4 + [False] * 60, [True] * 2 + [False] * 62]
    k = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])  # (B=2, Hkv=1, 1, D=2)
    keys, _, _ = view.update(0, k, k)
    assert keys.shape == (2, 1, 64, 2)
    assert pool.k[0][0, 0, 3].tolist() == [1.0, 2.0] and pool.k[0][1, 0, 1].tolist() == [3.0, 4.0]
    assert pool.decode_view([0, 1], [63, 63]).mask is None  # every row reads all it holds


def test_a_decoding_sequence_rounds_the_same_alone_and_beside_a_longer_one(smollm):
    a = smollm.tokenizer.encode("The cat sat on the mat and")
    b = smollm.tokenizer.encode("Once upon a time in a land far away, a small dragon lived with")
    engine = smollm.engine
    together, alone = smollm.model.new_kv_pool(), smollm.model.new_kv_pool()
    together.reserve(2, 64)
    alone.reserve(1, 64)
    with torch.inference_mode():
        engine.prefill(together, 0, a, 0)
        engine.prefill(together, 1, b, 0)
        engine.prefill(alone, 0, a, 0)
        both = engine.decode(together, [0, 1], [len(a), len(b)], [5, 6])
        one = engine.decode(alone, [0], [len(a)], [5])
    assert torch.equal(both[0], one[0])  # bit for bit


def test_the_pool_grows_and_keeps_what_it_held():
    pool = KVPool(n_layers=2, kv_heads=1, head_dim=2, max_len=4096)
    pool.reserve(1, 10)
    pool.k[1][0, 0, 5] = 7.0
    pool.reserve(6, 600)
    assert pool.slots == 8 and pool.capacity == 1024
    assert pool.k[1][0, 0, 5].tolist() == [7.0, 7.0]
    pool.move(0, 3, 6)
    assert pool.k[1][3, 0, 5].tolist() == [7.0, 7.0]


@pytest.mark.parametrize(
    "prompt, message",
    [("", "empty"), ("word " * 200, "context")],
)
def test_bad_prompts_are_refused_with_a_clear_message(tiny, prompt, message):
    with pytest.raises(InvalidArgument, match=message):
        tiny.generate(prompt, tl.SamplingParams(max_tokens=2))


def test_streaming_several_samples_is_refused(tiny):
    with pytest.raises(InvalidArgument, match="n must be 1"):
        list(tiny.stream("The cat", tl.SamplingParams(n=2)))


def test_chat_applies_the_template(smollm):
    out = smollm.chat([{"role": "user", "content": "Say hello."}], tl.SamplingParams(temperature=0, max_tokens=30))
    assert out.prompt_tokens > 20 and out.text.strip()
