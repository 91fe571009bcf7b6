"""The runtime: requests that join and leave a running batch, threads, prefix cache, limits."""

from __future__ import annotations

import threading

import pytest

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.generation.engine import Request
from tokenloom.generation.generate import LanguageModel
from tokenloom.generation.scheduler import QueueFull, RuntimeLimits, Scheduler

GREEDY = dict(temperature=0, ignore_eos=True)
SEEDED = dict(temperature=1.0, top_p=0.95, ignore_eos=True)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return tl.load(tiny_llama_dir)


def fresh(lm, **limits) -> LanguageModel:
    """Another LanguageModel on the same weights, with its own runtime and limits."""
    return LanguageModel(lm.model, lm.tokenizer, limits=RuntimeLimits(**limits))


def test_two_interleaved_streams_give_what_each_gives_alone(tiny):
    a = tl.SamplingParams(max_tokens=20, seed=1, **SEEDED)
    b = tl.SamplingParams(max_tokens=20, seed=2, **SEEDED)
    alone = ["".join(tiny.stream("The cat", a)), "".join(tiny.stream("A dog ran", b))]
    first, second = tiny.stream("The cat", a), tiny.stream("A dog ran", b)
    pieces = [[], []]
    for x, y in zip(first, second):
        pieces[0].append(x)
        pieces[1].append(y)
    pieces[0] += list(first)
    pieces[1] += list(second)
    assert ["".join(p) for p in pieces] == alone


@pytest.mark.slow
def test_interleaved_streams_on_the_real_model(smollm_native):
    lm = smollm_native
    a = tl.SamplingParams(max_tokens=24, seed=5, **SEEDED)
    b = tl.SamplingParams(max_tokens=24, **GREEDY)
    alone = ["".join(lm.stream("Once upon a time", a)), "".join(lm.stream("The history of the", b))]
    streams = [lm.stream("Once upon a time", a), lm.stream("The history of the", b)]
    joined = ["", ""]
    for x, y in zip(*streams):
        joined[0], joined[1] = joined[0] + x, joined[1] + y
    joined = [joined[i] + "".join(streams[i]) for i in range(2)]
    assert joined == alone


def test_generate_from_8_threads_gives_the_tokens_of_each_alone(tiny):
    prompts = [f"The number {i} is" for i in range(8)]
    params = [tl.SamplingParams(max_tokens=12, seed=i, **SEEDED) if i % 2 else
              tl.SamplingParams(max_tokens=12, **GREEDY) for i in range(8)]
    alone = [tiny.generate(p, q).token_ids for p, q in zip(prompts, params)]
    together = [None] * 8
    barrier = threading.Barrier(8)

    def run(i):
        barrier.wait()
        together[i] = tiny.generate(prompts[i], params[i]).token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert together == alone


def test_a_seeded_request_ignores_unseeded_neighbours(tiny):
    seeded = tl.SamplingParams(max_tokens=16, seed=11, **SEEDED)
    alone = tiny.generate("The cat sat", seeded).token_ids
    noise = tl.SamplingParams(max_tokens=30, temperature=1.2, ignore_eos=True)  # no seed
    handles = [tiny.scheduler.submit(tiny.tokenizer.encode(f"Noise {i}"), noise) for i in range(5)]
    assert tiny.generate("The cat sat", seeded).token_ids == alone
    for h in handles:
        h.result()


def test_a_long_prompt_delays_a_running_stream_by_about_one_chunk(tiny):
    scheduler = Scheduler(tiny.engine, RuntimeLimits(prefill_chunk=16), background=False)
    greedy = tl.SamplingParams(max_tokens=40, **GREEDY)
    running = scheduler.submit(tiny.tokenizer.encode("The cat"), greedy)
    scheduler.step()  # prefill + first decode
    long_prompt = tiny.tokenizer.encode("word " * 20)
    assert len(long_prompt) > 64
    joining = scheduler.submit(long_prompt, tl.SamplingParams(max_tokens=4, **GREEDY))
    steps_until_first_token = 0
    while not joining._items:
        before = len(running._items)
        scheduler.step()
        steps_until_first_token += 1
        assert len(running._items) == before + 1  # the running stream got its token every step
    assert steps_until_first_token >= len(long_prompt) // 16
    while scheduler.running or scheduler.waiting:
        scheduler.step()
    alone = tiny.generate("word " * 20, tl.SamplingParams(max_tokens=4, **GREEDY)).token_ids
    assert joining.result().token_ids == alone  # chunked prefill changes nothing
    assert running.result().token_ids == tiny.generate("The cat", greedy).token_ids


def test_shared_prefixes_are_reused_and_change_no_token(tiny):
    with_cache, without = fresh(tiny), fresh(tiny, prefix_cache_tokens=0)
    system = "The cat sat on the mat and the dog ran in the park. " * 3
    questions = ["What is a cat?", "Where do dogs live?", "Why is the sky blue?"]
    params = tl.SamplingParams(max_tokens=8, **GREEDY)
    ours = [with_cache.generate(system + q, params) for q in questions]
    theirs = [without.generate(system + q, params) for q in questions]
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
    stats = with_cache.scheduler.stats()
    assert stats["prefix_hits"] == 2 and stats["prefix_misses"] == 1
    assert ours[0].cached_tokens == 0 and ours[1].cached_tokens >= 16
    assert without.scheduler.stats()["prefix_hits"] == 0


def test_n_samples_share_their_prompt(tiny):
    lm = fresh(tiny)
    prompt = "The cat sat on the mat and looked at the dog for a long time, then"
    out = lm.generate(prompt, tl.SamplingParams(n=4, max_tokens=6, seed=3, **SEEDED))
    assert len(out) == 4 and lm.scheduler.stats()["prefix_hits"] == 3
    assert [c.token_ids for c in out] == [c.token_ids for c in tiny.generate(
        prompt, tl.SamplingParams(n=4, max_tokens=6, seed=3, **SEEDED))]


def test_the_prefix_cache_evicts_the_least_recently_used(tiny):
    lm = fresh(tiny, prefix_cache_tokens=64)
    params = tl.SamplingParams(max_tokens=2, **GREEDY)
    texts = ["alpha " * 10, "beta " * 15, "gamma " * 10]
    for text in texts:
        lm.generate(text, params)
    cache = lm.scheduler.prefix
    assert cache.tokens <= 64 and len(cache.entries) == 1
    lm.generate(texts[0], params)
    assert cache.stats()["prefix_hits"] == 0  # alpha's entry was evicted


def test_cancel_frees_the_sequence_at_the_next_step(tiny):
    lm = fresh(tiny)
    handle = lm.scheduler.submit(tiny.tokenizer.encode("The cat"), tl.SamplingParams(max_tokens=100, **GREEDY))
    steps = iter(handle)
    next(steps)
    handle.cancel()
    rest = list(steps)
    assert rest[-1].finished.finish_reason == "cancelled"
    assert lm.scheduler.stats()["running"] == 0


def test_a_stream_closed_early_frees_its_sequence(tiny):
    lm = fresh(tiny)
    stream = lm.stream("The cat", tl.SamplingParams(max_tokens=200, **GREEDY))
    next(stream)
    stream.close()
    for _ in range(100):
        if lm.scheduler.stats()["running"] == 0:
            break
        threading.Event().wait(0.02)
    assert lm.scheduler.stats()["running"] == 0


def test_a_full_queue_says_so(tiny):
    scheduler = Scheduler(tiny.engine, RuntimeLimits(max_queue=2), background=False)
    ids, params = tiny.tokenizer.encode("The cat"), tl.SamplingParams(max_tokens=2)
    scheduler.submit(ids, params)
    scheduler.submit(ids, params)
    with pytest.raises(QueueFull, match="max_queue=2"):
        scheduler.submit(ids, params)


def test_a_request_that_can_never_fit_is_refused_at_submission(tiny):
    lm = fresh(tiny, max_cache_tokens=32)
    with pytest.raises(InvalidArgument, match="max_cache_tokens"):
        lm.scheduler.submit(tiny.tokenizer.encode("The cat"), tl.SamplingParams(max_tokens=40))
    with pytest.raises(InvalidArgument, match="max_running must be"):
        RuntimeLimits(max_running=0)


def test_more_requests_than_running_slots_all_finish(tiny):
    lm = fresh(tiny, max_running=2, max_cache_tokens=512)
    params = tl.SamplingParams(max_tokens=6, **GREEDY)
    prompts = [f"Request {i} says" for i in range(7)]
    handles = lm.scheduler.submit_many([Request(tiny.tokenizer.encode(p), params) for p in prompts])
    got = [h.result().token_ids for h in handles]
    assert got == [tiny.generate(p, params).token_ids for p in prompts]
    assert lm.scheduler.pool.slots * lm.scheduler.pool.capacity <= 512


def test_score_gives_the_teacher_forced_logits(tiny):
    ids = tiny.tokenizer.encode("The cat sat on the mat")
    full = tiny.logits(ids)
    scored = tiny.scheduler.score(ids, keep=3)
    assert scored.shape == (3, full.shape[-1])
    assert (scored - full[-3:]).abs().max().item() < 1e-4


def test_asyncio_consumers_get_the_same_steps(tiny):
    import asyncio

    params = tl.SamplingParams(max_tokens=10, **GREEDY)
    ids = [tiny.tokenizer.encode(p) for p in ("The cat", "A dog ran")]

    async def collect():
        handles = [tiny.scheduler.submit(i, params) for i in ids]

        async def one(handle):
            return [step.token_id async for step in handle.aiter()]

        return await asyncio.gather(*(one(h) for h in handles))

    got = asyncio.run(collect())
    assert got == [tiny.generate(p, params).token_ids for p in ("The cat", "A dog ran")]


@pytest.mark.slow
def test_seeded_requests_on_the_real_model_ignore_concurrent_neighbours(smollm_native):
    """Native precision, 6 seeded requests from 6 threads beside unseeded ones: each as alone, bit for bit."""
    lm = fresh(smollm_native)
    prompts = ["The history of the printing press", "Once upon a time", "def add(a, b):",
               "The capital of France is", "Three fruits are", "In 1492, Columbus"]
    seeded = [tl.SamplingParams(max_tokens=16, seed=i, temperature=0.9, top_p=0.95, ignore_eos=True)
              for i in range(len(prompts))]
    alone = [lm.generate(p, q).token_ids for p, q in zip(prompts, seeded)]
    noise = tl.SamplingParams(max_tokens=24, temperature=1.0, ignore_eos=True)
    neighbours = [lm.scheduler.submit(lm.tokenizer.encode(f"Some other text, number {i}, that"), noise)
                  for i in range(4)]
    together = [None] * len(prompts)

    def run(i):
        together[i] = lm.generate(prompts[i], seeded[i]).token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for h in neighbours:
        h.result()
    assert together == alone
    out = lm.generate(prompts[0], tl.SamplingParams(n=3, max_tokens=8, seed=4, temperature=1.0, ignore_eos=True))
    again = fresh(smollm_native).generate(prompts[0], tl.SamplingParams(
        n=3, max_tokens=8, seed=4, temperature=1.0, ignore_eos=True))
    assert [c.token_ids for c in out] == [c.token_ids for c in again]  # n > 1 reuses the prompt exactly


def test_submit_many_queues_all_or_none(tiny):
    scheduler = Scheduler(tiny.engine, RuntimeLimits(max_queue=3), background=False)
    ids, params = tiny.tokenizer.encode("The cat"), tl.SamplingParams(max_tokens=2)
    scheduler.submit(ids, params)
    with pytest.raises(QueueFull):
        scheduler.submit_many([Request(ids, params)] * 3)
    assert len(scheduler.waiting) == 1


# Stateful steps: mirostat's μ, penalties over each row's own output, each row's seeded draw.
MIROSTAT = dict(max_tokens=14, temperature=0.9, mirostat=2, mirostat_tau=3.0, seed=3, ignore_eos=True)
PENALIZED = dict(max_tokens=14, temperature=1.0, top_p=0.9, repetition_penalty=1.3, frequency_penalty=0.5,
                 seed=4, ignore_eos=True)


def test_equal_params_in_separate_objects_share_one_sampler(tiny):
    from tokenloom.generation.engine import Sequence, SamplerGroups

    a, b, c = tl.SamplingParams(**MIROSTAT), tl.SamplingParams(**MIROSTAT), tl.SamplingParams(**PENALIZED)
    assert a is not b and a == b
    seqs = [Sequence(Request([1, 2, 3], p), tiny.tokenizer, (0,), 8, p.seed) for p in (a, c, b)]
    groups = SamplerGroups(seqs, 320, (0,), tiny.tokenizer).groups
    assert [index for index, _ in groups] == [[0, 2], [1]]
    # same chain, different seeds: one sampler, each row with its own generator
    d = tl.SamplingParams(**{**MIROSTAT, "seed": 9})
    seqs = [Sequence(Request([1, 2, 3], p), tiny.tokenizer, (0,), 8, p.seed) for p in (a, d)]
    assert len(SamplerGroups(seqs, 320, (0,), tiny.tokenizer).groups) == 1


def test_rows_sharing_a_sampler_keep_their_own_state(tiny, monkeypatch):
    from tokenloom.generation.sampler import Sampler

    prompts = ["The cat", "A dog ran in the park", "Numbers like 12", "She said"]
    params = [tl.SamplingParams(**MIROSTAT), tl.SamplingParams(**MIROSTAT),
              tl.SamplingParams(**PENALIZED), tl.SamplingParams(**PENALIZED)]
    alone = [tiny.generate(p, q).token_ids for p, q in zip(prompts, params)]  # a sampler each
    batch_sizes = []
    call = Sampler.__call__
    monkeypatch.setattr(Sampler, "__call__", lambda self, h, logits, g=None: (
        batch_sizes.append(logits.shape[0]), call(self, h, logits, g))[1])
    batched = fresh(tiny).generate_batch(list(zip(prompts, params)))
    assert [c.token_ids for c in batched] == alone
    assert 2 in batch_sizes  # the equal-param rows were sampled by one sampler together
