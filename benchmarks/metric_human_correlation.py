"""How well do surface-overlap metrics agree with human judgement? WMT22 German→English.

    .venv/bin/python benchmarks/metric_human_correlation.py

Human scores: the WMT22 crowd-sourced, reference-based Direct Assessment (DA)
z-scores, per segment and per system (HUMAN-B, the second human reference, is
left out of the tables). Metrics: sentence BLEU and chrF (sacrebleu-exact) and
ROUGE-L F1 (rouge-score-exact), all against reference A. For every segment the
script also checks that our numbers equal sacrebleu's and rouge-score's, so the
tables are the peers' tables too.

System level compares the 9 systems' corpus scores (corpus BLEU and chrF, mean
ROUGE-L) with their mean z-scores; it needs no segment alignment.

Segment level pools every judged (system, segment) pair, taking the DA file's
segment id SID as line SID of the text files. The shared data's README says that
this "appears to be" the mapping; the checks printed below say it is not:

* two systems that produced the *same* sentence for a segment get z-scores no
  closer than two systems that produced different ones;
* the mean z-score of a SID over the systems agrees with HUMAN-B's z-score on
  that SID (so it carries a real per-segment signal), yet it is unrelated to how
  easy line SID is by any text measure (how many systems output the same
  sentence there, which does track the metrics' mean chrF on the line);
* the segment correlations fall inside the band obtained by shuffling the SIDs.

So segment ids and text lines are misaligned, the segment-level numbers measure
nothing, and they are printed only next to that shuffled-id band. Mapping the
ids to lines needs more than the shared set holds (for instance the document
ids of the original WMT22 test set and the raw DA annotations).
"""

import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

from tokenloom.metrics import corpus_bleu, corpus_chrf, rouge, sentence_bleu, sentence_chrf

WMT = Path(__file__).resolve().parents[2] / "shared" / "data" / "wmt22_general_de_en"


def pearson(x, y) -> float:
    return float(np.corrcoef(np.asarray(x, float), np.asarray(y, float))[0, 1])


def kendall_tau_b(x, y, chunk: int = 2000) -> float:
    """Kendall's tau-b: (C − D) / sqrt((P − T_x)(P − T_y)) over all pairs, ties corrected."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    concordance, untied_x, untied_y = 0.0, 0.0, 0.0
    for start in range(0, len(x), chunk):
        sx = np.sign(x[start:start + chunk, None] - x[None, :])
        sy = np.sign(y[start:start + chunk, None] - y[None, :])
        concordance += float((sx * sy).sum())
        untied_x += float(np.abs(sx).sum())
        untied_y += float(np.abs(sy).sum())
    return concordance / math.sqrt(untied_x * untied_y)


def load_judgements():
    """{system: {SID - 1: z-score}} (HUMAN-B included) and {system: system z-score}
    (HUMAN-B left out)."""
    segments: dict[str, dict[int, float]] = {}
    for row in (WMT / "human-da" / "ad-seg-scores-de-en.csv").read_text().splitlines()[1:]:
        system, sid, _raw, z, _n = row.split()
        segments.setdefault(system.rsplit(".", 1)[0], {})[int(sid) - 1] = float(z)
    systems = {}
    for row in (WMT / "human-da" / "ad-sys-scores-de-en.csv").read_text().splitlines()[1:]:
        _raw, z, _n, system, _all = row.split()
        if system != "HUMAN-B":
            systems[system.rsplit(".", 1)[0]] = float(z)
    return segments, systems


def segment_scores(hyps, refs, judged):
    """Our sentence BLEU, chrF and ROUGE-L F1 of the judged segments, checked against the peers."""
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    ids = sorted(judged)
    bleu = [sentence_bleu(hyps[i], [refs[i]]).score for i in ids]
    chrf = [sentence_chrf(hyps[i], [refs[i]]).score for i in ids]
    rouge_l = [s["rougeL"].fmeasure for s in rouge([hyps[i] for i in ids], [refs[i] for i in ids], ["rougeL"]).segments]
    for k, i in enumerate(ids):
        assert abs(bleu[k] - sacrebleu.sentence_bleu(hyps[i], [refs[i]]).score) <= 1e-9
        assert abs(chrf[k] - sacrebleu.sentence_chrf(hyps[i], [refs[i]]).score) <= 1e-9
        assert abs(rouge_l[k] - scorer.score(refs[i], hyps[i])["rougeL"].fmeasure) <= 1e-12
    return ids, {"sentence BLEU": bleu, "chrF": chrf, "ROUGE-L F1": rouge_l}


def identical_output_check(segments, outputs) -> tuple[float, int, float, int]:
    """If segment ids index the text lines, two systems that produced the *same*
    sentence should get clearly more similar z-scores than two systems that
    produced different ones. (r identical, pairs, r different, pairs)."""
    same, different = ([], []), ([], [])
    names = sorted(segments)
    for a_index, a in enumerate(names):
        for b in names[a_index + 1:]:
            for i in set(segments[a]) & set(segments[b]):
                target = same if outputs[a][i] == outputs[b][i] else different
                target[0].append(segments[a][i])
                target[1].append(segments[b][i])
    return pearson(*same), len(same[0]), pearson(*different), len(different[0])


def segment_signal_check(segments, human_b, outputs, chrf_by_line) -> tuple[float, float, float]:
    """Correlations over segment ids of the mean z-score across systems with:
    HUMAN-B's z-score on the same id (a human-side signal), and the number of
    systems that agree on the output of line id (a text-side ease signal); plus
    that text signal against the systems' mean chrF on the line, for scale."""
    ids = sorted(set().union(*(set(judged) for judged in segments.values())))
    mean_z = {i: float(np.mean([s[i] for s in segments.values() if i in s])) for i in ids}
    both = [i for i in ids if i in human_b]
    agree = {i: max(Counter(out[i] for out in outputs.values()).values()) for i in ids}
    mean_chrf = {i: float(np.mean([scores[i] for scores in chrf_by_line.values()])) for i in ids}
    return (pearson([mean_z[i] for i in both], [human_b[i] for i in both]),
            pearson([mean_z[i] for i in ids], [agree[i] for i in ids]),
            pearson([mean_chrf[i] for i in ids], [agree[i] for i in ids]))


def shuffled_band(scores, segments, order, shuffles: int = 200, seed: int = 0) -> tuple[float, float]:
    """2.5th and 97.5th percentile of Pearson r between `scores` and the z-scores
    when each system's z-scores are shuffled among its judged segments."""
    rng = np.random.default_rng(seed)
    blocks = [np.array([segments[system][i] for i in ids]) for system, ids in order]
    x = np.asarray(scores, float)
    rs = [pearson(x, np.concatenate([rng.permutation(block) for block in blocks])) for _ in range(shuffles)]
    return float(np.percentile(rs, 2.5)), float(np.percentile(rs, 97.5))


def main() -> int:
    segments, systems = load_judgements()
    human_b = segments.pop("HUMAN-B", {})
    refs = (WMT / "generaltest2022.de-en.ref.A.en").read_text("utf-8").splitlines()
    pooled = {"sentence BLEU": [], "chrF": [], "ROUGE-L F1": []}
    human, system_rows, outputs, order, chrf_by_line = [], [], {}, [], {}
    for system in sorted(segments):
        hyps = (WMT / "system-outputs" / f"generaltest2022.de-en.hyp.{system}.en").read_text("utf-8").splitlines()
        outputs[system] = hyps
        ids, scores = segment_scores(hyps, refs, segments[system])
        for name, values in scores.items():
            pooled[name] += values
        human += [segments[system][i] for i in ids]
        order.append((system, ids))
        chrf_by_line[system] = [sentence_chrf(h, [r]).score for h, r in zip(hyps, refs)]
        system_rows.append((systems[system], corpus_bleu(hyps, [refs]).score, corpus_chrf(hyps, [refs]).score,
                            rouge(hyps, refs, ["rougeL"])["rougeL"].fmeasure, system))

    z = [row[0] for row in system_rows]
    print(f"system level: {len(system_rows)} systems, corpus metric vs mean DA z-score")
    print("| metric | system Pearson r | system Kendall τ_b |")
    print("|---|---:|---:|")
    for column, name in enumerate(pooled, start=1):
        values = [row[column] for row in system_rows]
        print(f"| {name} | {pearson(values, z):.3f} | {kendall_tau_b(values, z):.3f} |")
    print("\nsystem ranking by human z-score (with corpus BLEU / chrF / mean ROUGE-L):")
    for row in sorted(system_rows, reverse=True):
        print(f"  {row[4]:<18} z = {row[0]:+.3f}  BLEU {row[1]:.2f}  chrF {row[2]:.2f}  ROUGE-L {row[3]:.4f}")

    same_r, same_n, diff_r, diff_n = identical_output_check(segments, outputs)
    human_r, ease_r, ease_chrf_r = segment_signal_check(segments, human_b, outputs, chrf_by_line)
    print("\nDo the DA segment ids index the lines of the text files?")
    print(f"  z agreement of two systems on one segment: identical outputs r = {same_r:.3f} ({same_n} pairs), "
          f"different outputs r = {diff_r:.3f} ({diff_n} pairs)")
    print(f"  mean z of a segment id vs HUMAN-B's z on it: r = {human_r:.3f}; vs how many systems agree "
          f"on line id: r = {ease_r:.3f} (that agreement vs the line's mean chrF: r = {ease_chrf_r:.3f})")
    print(f"\nsegment level, taking SID as the line number: {len(human)} judged (system, segment) pairs")
    print("| metric | segment Pearson r | shuffled-SID 95% band | segment Kendall τ_b |")
    print("|---|---:|---:|---:|")
    for name, values in pooled.items():
        low, high = shuffled_band(values, segments, order)
        print(f"| {name} | {pearson(values, human):.3f} | [{low:.3f}, {high:.3f}] | {kendall_tau_b(values, human):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
