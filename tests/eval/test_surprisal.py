"""Surprisal maps: bits per token agree with the perplexity; the page and the plot get written."""

from __future__ import annotations

import math

import pytest

from tokenloom.eval.surprisal import colour, plot_png, render_html, surprisal_map


@pytest.fixture(scope="module")
def text_map(smollm):
    text = "The quick brown fox jumps over the lazy dog. <b>Bold</b> & more text follows here."
    return surprisal_map(smollm, text, context=16, stride=8, top=3)


def test_mean_surprisal_in_bits_is_the_nll_over_ln2(text_map):
    tokens, result = text_map
    assert tokens[0].bits is None  # context only without bos
    bits = [t.bits for t in tokens[1:]]
    assert len(bits) == result.tokens and all(b >= 0 for b in bits)
    assert sum(bits) / len(bits) == pytest.approx(result.nll / math.log(2), rel=1e-9)


def test_top_alternatives_are_sorted_probabilities(text_map):
    tokens, _ = text_map
    for t in tokens[1:]:
        probs = [p for _, p in t.top]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert 2 ** -t.bits <= probs[0] + 1e-6  # the actual token is at most as likely as the best one


def test_html_page_escapes_text_and_carries_tooltips(text_map, tmp_path):
    tokens, result = text_map
    page = render_html(tokens, result)
    assert page.startswith("<!doctype html>") and "&lt;" in page and "<b>" not in page
    assert page.count("<span ") == len(tokens) and "bits" in page and f"{result.perplexity:.3f}" in page


def test_png_is_written(text_map, tmp_path):
    path = tmp_path / "s.png"
    plot_png(text_map[0], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_colour_scale_runs_from_white_to_red():
    assert colour(0.0) == "rgb(255,255,255)" and colour(100.0) == "rgb(255,80,80)" and colour(None) != colour(0.0)
