"""How well do surface-overlap metrics agree with human judgement? WMT22 German→English.

    .venv/bin/python benchmarks/metric_human_correlation.py

Human scores: the WMT22 crowd-sourced, reference-based Direct Assessment (DA)
z-scores, per segment and per system (HUMAN-B, the second human reference, is
left out). Metrics: sentence BLEU and chrF (sacrebleu-exact) and ROUGE-L F1
(rouge-score-exact), all against reference A. Segment level pools every judged
(system, segment) pair; system level compares the 9 systems' corpus scores
(corpus BLEU and chrF, mean ROUGE-L) with their mean z-scores. For every
segment the script also checks that our numbers equal sacrebleu's and
rouge-score's, so the table is the peers' table too.
"""

import math
import sys
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
    """{system: {segment index (0-based): z-score}} and {system: system z-score}."""
    segments: dict[str, dict[int, float]] = {}
    for row in (WMT / "human-da" / "ad-seg-scores-de-en.csv").read_text().splitlines()[1:]:
        system, sid, _raw, z, _n = row.split()
        if system != "HUMAN-B":
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


def identical_output_check(segments, outputs) -> str:
    """If segment ids index the text lines and the DA is reliable, two systems that
    produced the *same* sentence should get clearly more similar z-scores than two
    systems that produced different ones. Returns both correlations."""
    same, different = ([], []), ([], [])
    names = sorted(segments)
    for a_index, a in enumerate(names):
        for b in names[a_index + 1:]:
            for i in set(segments[a]) & set(segments[b]):
                target = same if outputs[a][i] == outputs[b][i] else different
                target[0].append(segments[a][i])
                target[1].append(segments[b][i])
    return (f"z-score agreement between two systems on one segment: identical outputs r = "
            f"{pearson(*same):.3f} ({len(same[0])} pairs), different outputs r = {pearson(*different):.3f} "
            f"({len(different[0])} pairs)")


def main() -> int:
    segments, systems = load_judgements()
    refs = (WMT / "generaltest2022.de-en.ref.A.en").read_text("utf-8").splitlines()
    pooled = {"sentence BLEU": [], "chrF": [], "ROUGE-L F1": []}
    human, system_rows, outputs = [], [], {}
    for system in sorted(segments):
        hyps = (WMT / "system-outputs" / f"generaltest2022.de-en.hyp.{system}.en").read_text("utf-8").splitlines()
        outputs[system] = hyps
        ids, scores = segment_scores(hyps, refs, segments[system])
        for name, values in scores.items():
            pooled[name] += values
        human += [segments[system][i] for i in ids]
        system_rows.append((systems[system], corpus_bleu(hyps, [refs]).score, corpus_chrf(hyps, [refs]).score,
                            rouge(hyps, refs, ["rougeL"])["rougeL"].fmeasure, system))
    print(f"segment level: {len(human)} judged (system, segment) pairs; system level: {len(system_rows)} systems")
    print("| metric | segment Pearson r | segment Kendall τ_b | system Pearson r | system Kendall τ_b |")
    print("|---|---:|---:|---:|---:|")
    z = [row[0] for row in system_rows]
    for column, name in enumerate(pooled, start=1):
        system_values = [row[column] for row in system_rows]
        print(f"| {name} | {pearson(pooled[name], human):.3f} | {kendall_tau_b(pooled[name], human):.3f} "
              f"| {pearson(system_values, z):.3f} | {kendall_tau_b(system_values, z):.3f} |")
    print("\n" + identical_output_check(segments, outputs))
    print("\nsystem ranking by human z-score (with corpus BLEU / chrF / mean ROUGE-L):")
    for row in sorted(system_rows, reverse=True):
        print(f"  {row[4]:<18} z = {row[0]:+.3f}  BLEU {row[1]:.2f}  chrF {row[2]:.2f}  ROUGE-L {row[3]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
