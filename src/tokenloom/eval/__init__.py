"""Scoring with the model: perplexity, surprisal maps, likelihood classification.

    import tokenloom as tl
    lm = tl.load()
    tl.eval.perplexity(lm, Path("wiki.test.raw"), context=2048, stride=512).perplexity
    tl.eval.perplexity(lm, task="wikitext", data="wiki.test.raw").word_perplexity  # lm-eval's wikitext
    tl.eval.perplexity_from_probs([0.9, 0.8, 0.6, 0.4, 0.3, 0.2])        # 2.1415
    tl.eval.classify(lm, ["a gem of a film"], ["negative", "positive"])[0].label
    tl.eval.multiple_choice(lm, "Question: 2 + 2 =\\nAnswer:", ["4", "5"]).best
    tl.eval.fill_blank(lm, "The capital of France is ___.", ["Paris", "Rome"]).sentence
"""

from tokenloom.eval.classify import Classification, FillBlank, classify, classify_by_generation, fill_blank
from tokenloom.eval.likelihood import MultipleChoice, multiple_choice, multiple_choice_accuracy
from tokenloom.eval.perplexity import (
    PerplexityResult,
    perplexity,
    perplexity_from_logprobs,
    perplexity_from_probs,
)
from tokenloom.eval.report import ClassificationReport, read_labelled_tsv, report
from tokenloom.eval.surprisal import TokenSurprisal, render_html, surprisal_map

__all__ = [
    "Classification", "ClassificationReport", "FillBlank", "MultipleChoice", "PerplexityResult", "TokenSurprisal",
    "classify", "classify_by_generation", "fill_blank", "multiple_choice", "multiple_choice_accuracy",
    "perplexity", "perplexity_from_logprobs", "perplexity_from_probs", "read_labelled_tsv", "render_html",
    "report", "surprisal_map",
]
