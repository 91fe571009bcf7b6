"""Beam search against transformers' generate(num_beams=..., do_sample=False) on the same weights."""

from __future__ import annotations

import warnings

import pytest
import torch

import tokenloom as tl
from tokenloom.errors import InvalidArgument
from tokenloom.generation.beam import BeamParams, _assign_slots

transformers = pytest.importorskip("transformers")

SETTINGS = [  # (beam_width, length_penalty, early_stopping)
    (2, 1.0, False),
    (4, 1.0, False),
    (4, 0.6, True),
    (2, 2.0, "never"),
    (4, -0.5, "never"),
    (3, 0.0, True),
]


def hf_beams(model, ids: list[int], width, penalty, early, max_tokens, eos: list[int], pad: int):
    """transformers' hypotheses, best first: (generated ids, EOS kept, padding cut), scores."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(torch.tensor([ids]), num_beams=width, num_return_sequences=width, do_sample=False,
                             max_new_tokens=max_tokens, length_penalty=penalty, early_stopping=early,
                             eos_token_id=eos, pad_token_id=pad, output_scores=True,
                             return_dict_in_generate=True)
    return [seq[len(ids):].tolist() for seq in out.sequences], out.sequences_scores.tolist()


def assert_same_hypotheses(ours, theirs, scores, eos: set[int], pad: int, tolerance: float):
    assert len(ours) == len(theirs)
    for mine, their_ids, their_score in zip(ours, theirs, scores):
        expected = mine.token_ids + ([their_ids[len(mine.token_ids)]] if mine.finish_reason == "eos" else [])
        assert their_ids[: len(expected)] == expected
        assert all(t == pad for t in their_ids[len(expected):])  # what follows is padding
        assert (mine.finish_reason == "eos") == (len(expected) > len(mine.token_ids) and expected[-1] in eos)
        assert mine.score == pytest.approx(their_score, rel=1e-6, abs=tolerance)


# -- a tiny random Llama: every rule, fast -------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    lm = tl.load(tiny_llama_dir, precision="float32")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    return lm, hf


@pytest.fixture
def declared_eos(tiny):
    """Declares EOS ids on the tiny model for one test (its own EOS never wins); restores them after."""
    lm, _ = tiny
    saved = lm.engine.eos_ids
    yield lambda ids: setattr(lm.engine, "eos_ids", tuple(ids))
    lm.engine.eos_ids = saved


def eos_on_the_way(lm, prompt: str, width: int) -> list[int]:
    """Two tokens the best hypothesis without EOS passes through (at its 3rd and 7th token): declared
    EOS, the search meets them early, so hypotheses end at different lengths."""
    lm.engine.eos_ids = ()
    best = lm.beam_search(prompt, beam_width=width, max_tokens=10)[0].token_ids
    return [best[2], best[6]] if best[2] != best[6] else [best[2]]


@pytest.mark.parametrize("width, penalty, early", SETTINGS)
@pytest.mark.parametrize("prompt", ["The cat sat", "Numbers like 12"])
def test_beams_equal_transformers_on_a_tiny_llama(tiny, declared_eos, prompt, width, penalty, early):
    lm, hf = tiny
    eos = eos_on_the_way(lm, prompt, width)
    declared_eos(eos)
    ours = lm.beam_search(prompt, beam_width=width, max_tokens=10, length_penalty=penalty, early_stopping=early)
    theirs, scores = hf_beams(hf, lm.encode_prompt(prompt), width, penalty, early, 10, eos, pad=eos[0])
    assert_same_hypotheses(ours, theirs, scores, set(eos), eos[0], tolerance=1e-5)


def test_early_eos_yields_shorter_hypotheses_ranked_by_normalised_score(tiny, declared_eos):
    lm, hf = tiny
    eos = eos_on_the_way(lm, "The cat sat", 4)
    declared_eos(eos)
    beams = lm.beam_search("The cat sat", beam_width=4, max_tokens=10)
    theirs, scores = hf_beams(hf, lm.encode_prompt("The cat sat"), 4, 1.0, False, 10, eos, pad=eos[0])
    assert_same_hypotheses(beams, theirs, scores, set(eos), eos[0], tolerance=1e-5)
    assert {b.finish_reason for b in beams} == {"eos", "length"}
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
    for b in beams:  # score = Σ log P / n ** 1.0, n counting the EOS
        n = len(b.token_ids) + (b.finish_reason == "eos")
        assert b.score == pytest.approx(b.logprob / n, rel=1e-6)


def test_width_one_is_greedy_decoding(tiny):
    lm, _ = tiny
    beam = lm.beam_search("The cat sat", beam_width=1, max_tokens=12)[0]
    greedy = lm.generate("The cat sat", tl.SamplingParams(temperature=0, max_tokens=12))
    assert beam.token_ids == greedy.token_ids


# -- the pieces ------------------------------------------------------------------------------
def test_first_child_keeps_its_parents_slot_and_others_get_copies():
    assert _assign_slots([0, 0, 2], [0, 1, 2], 3) == ([0, 1, 2], [(0, 1)])
    assert _assign_slots([1, 1, 1], [2, 0, 1], 3) == ([0, 1, 2], [(0, 1), (0, 2)])
    assert _assign_slots([0, 0, 0, 0], [0], 4) == ([0, 1, 2, 3], [(0, 1), (0, 2), (0, 3)])


@pytest.mark.parametrize("kwargs, message", [
    ({"beam_width": 0}, "beam_width must be in [1, 256], got 0"),
    ({"max_tokens": 0}, "max_tokens must be in [1, ∞), got 0"),
    ({"length_penalty": float("nan")}, "length_penalty must be a number"),
    ({"early_stopping": "always"}, "early_stopping must be False, True or 'never', got 'always'"),
    ({"early_stopping": 1}, "early_stopping must be False, True or 'never', got 1"),
])
def test_bad_parameters_say_what_is_allowed(kwargs, message):
    with pytest.raises(InvalidArgument) as error:
        BeamParams(**kwargs)
    assert message in str(error.value)


def test_a_search_too_large_for_the_cache_is_refused(tiny_llama_dir):
    lm = tl.load(tiny_llama_dir, precision="float32", limits=tl.generation.scheduler.RuntimeLimits(
        max_cache_tokens=64))
    with pytest.raises(InvalidArgument, match="lower beam_width or max_tokens"):
        lm.beam_search("The cat", beam_width=8, max_tokens=20)


# -- the real model ------------------------------------------------------------------------
SMOLLM_CASES = [  # (prompt, chat?, width, length_penalty, early_stopping)
    ("The history of the printing press", False, 2, 1.0, False),
    ("The history of the printing press", False, 4, 1.0, False),
    ("In 1492, Columbus sailed the ocean blue. Then", False, 4, 0.7, True),
    ("What is the capital of France? Answer in one word.", True, 4, 1.0, False),
    ("What is the capital of France? Answer in one word.", True, 2, 2.0, "never"),
    ("Name a primary colour.", True, 4, 0.5, True),
]


@pytest.mark.slow
@pytest.mark.parametrize("prompt, chat, width, penalty, early", SMOLLM_CASES)
def test_beams_equal_transformers_on_smollm2(smollm, hf_smollm, prompt, chat, width, penalty, early):
    if chat:
        prompt = smollm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
    ours = smollm.beam_search(prompt, beam_width=width, max_tokens=12, length_penalty=penalty,
                              early_stopping=early)
    eos = list(smollm.tokenizer.eos_ids)
    theirs, scores = hf_beams(hf_smollm, smollm.encode_prompt(prompt), width, penalty, early, 12, eos,
                              pad=smollm.tokenizer.pad_id)
    assert_same_hypotheses(ours, theirs, scores, set(eos), smollm.tokenizer.pad_id, tolerance=1e-4)
