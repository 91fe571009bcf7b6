"""Sampler: order tables, chain building, selection, explain, and the peers' chains."""

import math

import pytest
import torch
from transformers.generation import logits_process as hf

from tokenloom.errors import InvalidArgument
from tokenloom.generation.history import TokenHistory
from tokenloom.generation.params import SamplingParams
from tokenloom.generation.processors import TopK, TopP
from tokenloom.generation.sampler import BUILDERS, ORDERS, Sampler

EVERYTHING_ON = dict(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05, typical_p=0.95, repetition_penalty=1.3,
                     presence_penalty=0.5, frequency_penalty=0.2, no_repeat_ngram_size=2, logit_bias={1: 1.0},
                     min_tokens=1, dry_multiplier=0.8, dry_sequence_breakers=(), top_n_sigma=2.0,
                     epsilon_cutoff=1e-4, eta_cutoff=1e-4, xtc_probability=1.0)


def seeded(seed: int) -> torch.Generator:
    """A row's generator, seeded as the runtime seeds one."""
    return torch.Generator().manual_seed(seed)


def names(sampler: Sampler) -> list[str]:
    return [p.name for p in sampler.processors]


# -- order tables ----------------------------------------------------------------------------

def test_default_order_is_bias_bans_penalties_temperature_then_filters():
    assert ORDERS["tokenloom"].steps == (
        "logit_bias", "min_tokens", "no_repeat_ngram", "repetition_penalty", "presence_penalty",
        "frequency_penalty", "dry", "temperature", "top_n_sigma", "top_k", "top_p", "typical_p",
        "epsilon_cutoff", "eta_cutoff", "min_p", "xtc")


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_every_order_lists_every_step_exactly_once(order):
    steps = ORDERS[order].steps
    penalties = {"penalties"} if ORDERS[order].penalties == "ours" else {
        "repetition_penalty", "presence_penalty", "frequency_penalty"}
    # mirostat replaces a chain; the structured-output mask goes before every chain (chains.chain_steps)
    outside = {"mirostat", "structured"}
    assert sorted(steps) == sorted(set(BUILDERS) - penalties - outside) and len(set(steps)) == len(steps)


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_chain_with_every_knob_on_follows_the_order_table(order):
    sampler = Sampler(SamplingParams(order=order, **EVERYTHING_ON), vocab_size=50, eos_token_ids=[0])
    assert names(sampler) == list(ORDERS[order].steps)


def test_hf_and_vllm_scale_by_temperature_before_top_k_and_top_p_llama_cpp_last():
    for order in ("hf", "vllm", "tokenloom"):
        steps = ORDERS[order].steps
        assert steps.index("temperature") < min(steps.index("top_k"), steps.index("top_p"))
    assert ORDERS["llama.cpp"].steps[-1] == "temperature"
    assert ORDERS["llama.cpp"].steps[-9:-1] == ("top_n_sigma", "top_k", "typical_p", "top_p", "min_p",
                                                 "epsilon_cutoff", "eta_cutoff", "xtc")
    assert ORDERS["vllm"].steps.index("min_p") < ORDERS["vllm"].steps.index("top_k")


def test_top_k_ties_keep_all_in_hf_and_vllm_and_exactly_k_in_llama_cpp_and_tokenloom():
    ties = {order: Sampler(SamplingParams(order=order, top_k=2), 10).processors[0].ties for order in ORDERS}
    assert ties == {"hf": "all", "vllm": "all", "llama.cpp": "lowest_id", "tokenloom": "lowest_id"}


def test_default_params_build_an_empty_chain_full_random_sampling():
    sampler = Sampler(SamplingParams(), vocab_size=50, eos_token_ids=[0])
    assert sampler.processors == [] and sampler.describe() == "draw"


def test_no_op_values_are_left_out_of_the_chain():
    params = SamplingParams(top_k=100, top_p=1.0, min_p=0.0, typical_p=1.0, repetition_penalty=1.0, min_tokens=3)
    assert names(Sampler(params, vocab_size=50)) == []  # top_k >= V keeps all; min_tokens without end ids


def test_greedy_keeps_only_the_steps_before_temperature_except_in_llama_cpp():
    params = dict(EVERYTHING_ON, temperature=0.0)
    assert names(Sampler(SamplingParams(order="vllm", **params), 50, [0])) == [
        "min_tokens", "logit_bias", "repetition_penalty", "frequency_penalty", "presence_penalty", "dry",
        "no_repeat_ngram"]
    assert "top_k" not in names(Sampler(SamplingParams(order="hf", **params), 50, [0]))
    assert names(Sampler(SamplingParams(order="llama.cpp", **params), 50, [0]))[-8:] == [
        "top_n_sigma", "top_k", "typical_p", "top_p", "min_p", "epsilon_cutoff", "eta_cutoff", "xtc"]


def test_llama_cpp_filters_before_temperature_so_a_high_temperature_keeps_fewer_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]])
    history = TokenHistory([[]], 6)
    kept = {order: int(Sampler(SamplingParams(order=order, temperature=3.0, top_p=0.8), 6)
                       .process(history, logits).isfinite().sum()) for order in ("hf", "llama.cpp")}
    assert kept == {"hf": 4, "llama.cpp": 2}


def test_describe_shows_the_chain_in_order():
    sampler = Sampler(SamplingParams(temperature=0.8, top_k=50), vocab_size=100)
    assert sampler.describe() == "temperature=0.8 → top_k=50 (ties: lowest_id) → draw"


# -- the hf order against transformers' own chain ------------------------------------------------

def test_hf_order_equals_a_transformers_logits_processor_list():
    params = SamplingParams(order="hf", temperature=0.7, top_k=8, top_p=0.9, min_p=0.02, typical_p=0.95,
                            repetition_penalty=1.3, no_repeat_ngram_size=2)
    prompts = [[3, 4, 3, 9], [1, 2, 1, 2]]
    history = TokenHistory(prompts, 20)
    logits = torch.randn(2, 20, generator=torch.Generator().manual_seed(0)) * 2  # (2, 20)
    chain = hf.LogitsProcessorList([
        hf.RepetitionPenaltyLogitsProcessor(1.3), hf.NoRepeatNGramLogitsProcessor(2),
        hf.TemperatureLogitsWarper(0.7), hf.TopKLogitsWarper(8), hf.TopPLogitsWarper(0.9),
        hf.MinPLogitsWarper(0.02), hf.TypicalLogitsWarper(0.95)])
    theirs = chain(torch.tensor(prompts), logits.clone())
    assert torch.equal(Sampler(params, 20).process(history, logits), theirs)


# -- selection -------------------------------------------------------------------------------

def test_greedy_ties_go_to_the_lowest_id():
    sampler = Sampler(SamplingParams(temperature=0), vocab_size=4)
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert sampler.select(scores, [None, None]).tolist() == [1, 0]


def test_seeded_draw_of_a_row_does_not_depend_on_the_other_rows():
    sampler = Sampler(SamplingParams(top_k=20, temperature=1.2, seed=7), vocab_size=100)
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))  # (3, V)
    history = TokenHistory([[1], [2], [3]], 100)
    batch_gens = [seeded(7), seeded(1), seeded(2)]
    alone_gen = [seeded(7)]
    for _ in range(20):
        together = sampler(history, logits, batch_gens)
        alone = sampler(history.rows([0]), logits[:1], alone_gen)
        assert together[0] == alone[0]


def test_same_seed_gives_the_same_draws():
    sampler = Sampler(SamplingParams(seed=3), vocab_size=50)
    scores = torch.zeros(1, 50)
    first = [int(sampler.select(scores, [g])) for g in [seeded(3)] for _ in range(10)]
    second = [int(sampler.select(scores, [g])) for g in [seeded(3)] for _ in range(10)]
    assert first == second and len(set(first)) > 1


CHI2_CRITICAL_DF4_P001 = 18.467  # chi-square quantile 0.999 with 4 degrees of freedom


def test_sampled_frequencies_follow_the_processed_distribution():
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0]])
    sampler = Sampler(SamplingParams(temperature=0.7, top_k=5, seed=0), vocab_size=8)
    history = TokenHistory([[]], 8)
    expected_p = sampler.process(history, logits).softmax(-1)[0]  # (V,)
    draws = 20000
    generator = seeded(0)
    scores = sampler.process(history, logits).expand(draws, -1)  # (N, V)
    picks = sampler.select(scores, [generator] * draws)  # (N,)
    observed = torch.bincount(picks, minlength=8).double()
    assert observed[5:].sum() == 0  # removed by top_k: never drawn
    expected = expected_p[:5].double() * draws
    chi2 = float(((observed[:5] - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRITICAL_DF4_P001


def test_select_needs_one_generator_per_row():
    sampler = Sampler(SamplingParams(), vocab_size=5)
    with pytest.raises(InvalidArgument, match="one generator"):
        sampler.select(torch.zeros(2, 5), [None])


def test_batched_process_equals_row_by_row():
    params = SamplingParams(**EVERYTHING_ON)
    sampler = Sampler(params, vocab_size=30, eos_token_ids=[0])
    history = TokenHistory([[1, 2, 1, 2], [5, 6, 7]], 30)
    history.append(torch.tensor([3, 5]))
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(2))  # (2, V)
    batched = sampler.process(history, logits)
    for row in range(2):
        assert torch.equal(batched[row], sampler.process(history.rows([row]), logits[row:row + 1])[0])


def test_min_tokens_bans_eos_and_stop_token_ids():
    sampler = Sampler(SamplingParams(min_tokens=2, stop_token_ids=[4]), vocab_size=6, eos_token_ids=[0])
    scores = sampler.process(TokenHistory([[1]], 6), torch.zeros(1, 6))
    assert torch.isinf(scores[0, [0, 4]]).all() and scores[0, [1, 2, 3, 5]].isfinite().all()


def test_sampler_rejects_end_ids_outside_the_vocabulary():
    with pytest.raises(InvalidArgument, match="< vocab_size 10"):
        Sampler(SamplingParams(stop_token_ids=[12]), vocab_size=10)


# -- explain ---------------------------------------------------------------------------------

def test_explain_gives_one_step_per_processor_then_the_selector():
    sampler = Sampler(SamplingParams(temperature=0.5, top_k=3, top_p=0.9), vocab_size=10)
    logits = torch.arange(10, dtype=torch.float32)
    steps = sampler.explain(TokenHistory([[]], 10), logits, top=4)
    assert [s.name for s in steps] == ["temperature", "top_k", "top_p", "draw"]
    assert steps[1].kept == 3 and steps[1].removed == 7
    assert steps[0].top_before[0][0] == 9 and steps[0].top_after[0][1] > steps[0].top_before[0][1]
    assert 0 < steps[2].mass_kept <= 1 and steps[-1].kept == steps[2].kept


def test_explain_of_greedy_ends_with_the_argmax():
    sampler = Sampler(SamplingParams(temperature=0), vocab_size=4)
    steps = sampler.explain(TokenHistory([[]], 4), torch.tensor([0.0, 2.0, 2.0, 1.0]))
    assert steps[-1].name == "greedy" and steps[-1].top_after == [(1, 1.0)]
    assert math.isclose(steps[-1].mass_kept, torch.tensor([0.0, 2.0, 2.0, 1.0]).softmax(-1)[1].item(), rel_tol=1e-6)


def test_explain_refuses_a_history_of_several_rows():
    sampler = Sampler(SamplingParams(), vocab_size=4)
    with pytest.raises(InvalidArgument, match="one row"):
        sampler.explain(TokenHistory([[], []], 4), torch.zeros(4))


def kept_and_draws(sampler: Sampler, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the chain keeps of each row, and 20 seeded draws per row: (B, V) bool, (20, B)."""
    rows, vocab = logits.shape
    history = TokenHistory([[1, 2, 3]] * rows, vocab)
    generators = [torch.Generator().manual_seed(i) for i in range(rows)]
    kept = torch.isfinite(sampler.process(history, logits))
    return kept, torch.stack([sampler(history, logits, generators) for _ in range(20)])


@pytest.mark.parametrize("order", ["hf", "vllm", "llama.cpp", "tokenloom"])
@pytest.mark.parametrize("extra", [dict(top_p=0.9, min_p=0.05), dict(typical_p=0.8), dict(top_p=0.5)])
@pytest.mark.parametrize("tied_edge", [False, True])
def test_a_chain_narrowed_after_top_k_keeps_and_draws_what_full_rows_do(monkeypatch, order, extra, tied_edge):
    """After top-k the value-only steps run on the surviving columns (top-k's own ranking when no
    tie crosses its k-th place, else columns.narrow); the kept sets and every seeded draw equal
    those of the same chain on full rows."""
    from tokenloom.generation import columns

    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(6, 4096, generator=gen) * 3
    if tied_edge:
        logits[1, 100:150] = logits[1].max() + 1  # 50 tokens tied at the top of a row: top-k 40 cuts them
    quick = TopK(40).narrowed(logits if order == "llama.cpp" else logits / 0.8)
    assert (quick is None) == tied_edge
    params = SamplingParams(order=order, temperature=0.8, top_k=40, seed=0, **extra)
    sampler = Sampler(params, vocab_size=4096)

    narrowed = kept_and_draws(sampler, logits)
    _, ids = sampler._chain(TokenHistory([[1, 2, 3]] * 6, 4096), logits, None)
    assert ids is not None and ids.shape[1] <= 50  # the chain did run narrowed (ties="all" may keep 50)
    monkeypatch.setattr(columns, "NARROW_SHARE", 10**9)  # never narrow
    full = kept_and_draws(sampler, logits)
    assert torch.equal(narrowed[0], full[0]) and narrowed[0].sum(-1).max() <= 50
    assert torch.equal(narrowed[1], full[1])


@pytest.mark.parametrize("order", ["hf", "vllm", "llama.cpp", "tokenloom"])
@pytest.mark.parametrize("flat", [False, True])
def test_a_chain_narrowed_after_top_p_keeps_and_draws_what_full_rows_do(monkeypatch, order, flat):
    """Without top-k, top-p's probe (the nucleus inside the best 1024 tokens) hands the rest of the
    chain and the draw 1024 columns instead of 16,384; a row too flat for the probe keeps full rows.
    Either way the kept sets and every seeded draw equal those of the chain on full rows."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 16384, generator=gen) * 4
    if flat:
        logits[2] = torch.randn(16384, generator=gen) * 0.1  # its 0.9 nucleus needs far more than 1024 tokens
    params = SamplingParams(order=order, temperature=0.8, top_p=0.9, min_p=0.02, top_k=0, seed=0)  # hf: no top-k 50
    sampler = Sampler(params, vocab_size=16384)

    narrowed = kept_and_draws(sampler, logits)
    _, ids = sampler._chain(TokenHistory([[1, 2, 3]] * 6, 16384), logits, None)
    assert (ids is None) == flat and (flat or ids.shape[1] <= 1024)  # the chain ran narrowed unless flat
    monkeypatch.setattr(TopP, "narrows", False)
    full = kept_and_draws(sampler, logits)
    assert torch.equal(narrowed[0], full[0]) and narrowed[0].sum(-1).max() > 1
    assert torch.equal(narrowed[1], full[1])
