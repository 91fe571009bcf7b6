"""Reference metrics for generated text: BLEU, chrF, ROUGE, repetition and diversity.

Pure text, no model and no torch: `import tokenloom.metrics` stays light. BLEU and
chrF give sacrebleu 2.x's numbers, ROUGE gives rouge-score 0.1.2's, faster.

    from tokenloom import metrics
    metrics.corpus_bleu(hypotheses, [references])        # one stream per reference set
    metrics.rouge(hypotheses, references, stem=True)      # each reference: str or list
    metrics.get_metric("chrf")(hypotheses, [references])
"""

from tokenloom.metrics.base import available_metrics, get_metric
from tokenloom.metrics.bleu import BleuResult, corpus_bleu, sentence_bleu, sentence_bleu_scores
from tokenloom.metrics.bootstrap import Interval, bootstrap_corpus, bootstrap_means
from tokenloom.metrics.chrf import ChrfResult, corpus_chrf, sentence_chrf
from tokenloom.metrics.diversity import (
    detect_loop,
    distinct_n,
    diversity_report,
    repetition_rate,
    self_bleu,
    zipf_coefficient,
)
from tokenloom.metrics.lcs import lcs_indices, lcs_length
from tokenloom.metrics.rouge import RougeResult, RougeScore, rouge, rouge_segment
from tokenloom.metrics.text import rouge_tokens, tokenize_13a

bleu = corpus_bleu
chrf = corpus_chrf

__all__ = [
    "BleuResult", "ChrfResult", "Interval", "RougeResult", "RougeScore",
    "available_metrics", "bleu", "bootstrap_corpus", "bootstrap_means", "chrf",
    "corpus_bleu", "corpus_chrf", "detect_loop", "distinct_n", "diversity_report",
    "get_metric", "lcs_indices", "lcs_length", "repetition_rate", "rouge", "rouge_segment",
    "rouge_tokens", "self_bleu", "sentence_bleu", "sentence_bleu_scores", "sentence_chrf",
    "tokenize_13a", "zipf_coefficient",
]
