"""Speed of tokenloom.metrics against sacrebleu and rouge-score, same inputs, one process.

    .venv/bin/python benchmarks/metrics_vs_peers.py [--pairs 20000] [--repeats 3]

The synthetic corpus is deterministic: a Zipfian vocabulary of pseudo-words,
hypotheses of 20-30 words with commas, numbers and a final period, and references
that keep about half of the hypothesis words. The real sets are WMT22 de-en
(PROMT vs reference A) and the CNN/DM pointer-generator summaries. Every row also
checks that both tools give the same numbers.

Times are CPU seconds of this process. Each of `--repeats` rounds runs a tool
twice on the same inputs:

* cold: right after every per-word cache is emptied (`text.clear_word_caches()`:
  our 13a tokens and Porter stems) and sacrebleu's line caches too (the
  `lru_cache` on its 13a and regexp tokenizers). This is what a first call in a
  fresh process costs, and the speed-up column is computed from it.
* warm: the same call again, every cache left as the cold run filled it. Ours
  then skip tokenizing and stemming known words. sacrebleu gains little: its
  cache key includes the tokenizer object, and each `corpus_bleu` or
  `sentence_bleu` call builds a new one, so only lines repeated within one call
  hit. rouge-score has no cache.

Each column reports the best of the rounds.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp

from tokenloom.metrics import corpus_bleu, rouge, sentence_bleu, text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def synthetic_pairs(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`count` (hypothesis, reference) pairs: Zipfian words, 20-30 per hypothesis,
    about half of the words shared with the reference."""
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "men", "sa", "lo", "ve", "nu", "dor", "pi", "tes", "ga", "lin", "ro"]
    vocabulary = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(40000)})
    rng.shuffle(vocabulary)
    weights = [1 / (rank + 1) ** 1.05 for rank in range(len(vocabulary))]
    cumulative, total = [], 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)

    def words(k: int) -> list[str]:
        drawn = rng.choices(vocabulary, cum_weights=cumulative, k=k)
        return [w + "," if rng.random() < 0.06 else (str(rng.randint(1, 2000)) if rng.random() < 0.02 else w)
                for w in drawn]

    hyps, refs = [], []
    for _ in range(count):
        hyp = words(rng.randint(20, 30))
        ref = [w if rng.random() < 0.5 else words(1)[0] for w in hyp] + words(rng.randint(0, 3))
        hyps.append(" ".join(hyp).capitalize() + ".")
        refs.append(" ".join(ref).capitalize() + ".")
    return hyps, refs


def clear_caches() -> None:
    """Empty our per-word caches and sacrebleu's per-line ones."""
    text.clear_word_caches()
    Tokenizer13a.__call__.cache_clear()
    TokenizerRegexp.__call__.cache_clear()


def timed(function, repeats: int):
    """(best cold CPU time, best warm CPU time, in seconds, over `repeats` rounds;
    the last result). CPU time rather than wall time, so that other work on a
    shared machine does not leak into the ratios."""
    cold = warm = float("inf")
    result = None
    for _ in range(repeats):
        clear_caches()
        start = time.process_time()
        function()
        cold = min(cold, time.process_time() - start)
        start = time.process_time()
        result = function()
        warm = min(warm, time.process_time() - start)
    return (cold, warm), result


def compare_bleu(hyps, refs, repeats):
    peer_t, peer = timed(lambda: sacrebleu.corpus_bleu(hyps, [refs]), repeats)
    ours_t, ours = timed(lambda: corpus_bleu(hyps, [refs]), repeats)
    same = abs(peer.score - ours.score) < 1e-9 and peer.counts == list(ours.counts)
    return peer_t, ours_t, same, f"{ours.score:.4f}"


def compare_sentence_bleu(hyps, refs, repeats):
    peer_t, peer = timed(lambda: [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)], repeats)
    ours_t, ours = timed(lambda: [sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)], repeats)
    same = all(abs(a - b) < 1e-9 for a, b in zip(peer, ours))
    return peer_t, ours_t, same, f"{sum(ours) / len(ours):.4f}"


def compare_rouge(hyps, refs, repeats, stem):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=stem)
    peer_t, peer = timed(lambda: [scorer.score(r, h) for h, r in zip(hyps, refs)], repeats)
    ours_t, ours = timed(lambda: rouge(hyps, refs, TYPES, stem=stem), repeats)
    same = all(abs(a[k][i] - b[k][i]) <= 1e-12 for a, b in zip(peer, ours.segments) for k in TYPES for i in range(3))
    return peer_t, ours_t, same, f"{ours.mean['rougeL'].fmeasure:.4f}"


def real_sets():
    wmt = DATA / "wmt22_general_de_en"
    hyps = (wmt / "system-outputs" / "generaltest2022.de-en.hyp.PROMT.en").read_text("utf-8").splitlines()
    refs = (wmt / "generaltest2022.de-en.ref.A.en").read_text("utf-8").splitlines()
    rows = [json.loads(line) for line in open(DATA / "cnndm_pointer_generator" / "cnndm_test_stride23_500.jsonl")]
    return (hyps, refs), ([r["pointer_gen_cov"] for r in rows], [r["reference"] for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    hyps, refs = synthetic_pairs(args.pairs)
    (wmt_h, wmt_r), (cnn_h, cnn_r) = real_sets()
    tokens = sum(len(h.split()) for h in hyps)
    print(f"synthetic: {len(hyps)} pairs, {tokens} hypothesis words; python {sys.version.split()[0]}")
    cases = [
        ("corpus BLEU", "synthetic", compare_bleu, (hyps, refs)),
        ("sentence BLEU, every pair", "synthetic", compare_sentence_bleu, (hyps, refs)),
        ("ROUGE-1/2/L/Lsum, stemming", "synthetic", compare_rouge, (hyps, refs, True)),
        ("ROUGE-1/2/L/Lsum, no stemming", "synthetic", compare_rouge, (hyps, refs, False)),
        ("corpus BLEU", "WMT22 de-en PROMT", compare_bleu, (wmt_h, wmt_r)),
        ("sentence BLEU, every pair", "WMT22 de-en PROMT", compare_sentence_bleu, (wmt_h, wmt_r)),
        ("ROUGE-1/2/L/Lsum, stemming", "CNN/DM pg+cov", compare_rouge, (cnn_h, cnn_r, True)),
        ("ROUGE-1/2/L/Lsum, no stemming", "CNN/DM pg+cov", compare_rouge, (cnn_h, cnn_r, False)),
    ]
    print(f"CPU seconds, best of {args.repeats} rounds; cold: caches emptied first, warm: the call repeated")
    print("| metric | data | peer cold (s) | tokenloom cold (s) | speed-up cold "
          "| peer warm (s) | tokenloom warm (s) | speed-up warm | identical | value |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|", flush=True)
    rows = []
    for name, data, compare, inputs in cases:
        (peer_cold, peer_warm), (ours_cold, ours_warm), same, value = compare(*inputs[:2], args.repeats, *inputs[2:])
        rows.append(same)
        print(f"| {name} | {data} | {peer_cold:.3f} | {ours_cold:.3f} | {peer_cold / ours_cold:.1f}× "
              f"| {peer_warm:.3f} | {ours_warm:.3f} | {peer_warm / ours_warm:.1f}× "
              f"| {'yes' if same else 'NO'} | {value} |", flush=True)
    return 0 if all(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
