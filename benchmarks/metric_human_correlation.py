"""How well do surface-overlap metrics agree with human judgement?

    .venv/bin/python benchmarks/metric_human_correlation.py [--only mqm|wmt22]

Two human judgements of machine translation, from the shared data:

1. WMT21 TED talks, expert MQM (../shared/data/wmt21_ted_mqm): English→German and
   Chinese→English, 13 systems × 529 segments each, one professional MQM score per
   (system, segment), and text files aligned line by line with the scores. This is
   the segment-level comparison: sentence BLEU, chrF and ROUGE-L F1 (ours, checked
   equal to sacrebleu's and rouge-score's on every segment) against MQM, pooled over
   all 6,877 (system, segment) pairs of a language pair, as Pearson r, Spearman ρ and
   Kendall τ_b (tokenloom.human.stats, checked against scipy). Next to each Kendall τ
   is the band that shuffling every system's MQM scores over its segments gives, so
   a reader can see what "no agreement" looks like here. System level: the 13
   systems' corpus scores against their mean MQM.

2. WMT22 German→English, crowd-sourced DA z-scores (../shared/data/wmt22_general_de_en):
   system level only. Its segment ids do not index the lines of the text files (the
   checks below say so), so its segment-level numbers measure nothing and are
   printed only next to their shuffled-id band.

Details of part 2:

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

import argparse
import math
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

from tokenloom.metrics import corpus_bleu, corpus_chrf, rouge, sentence_bleu, sentence_chrf

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WMT = DATA / "wmt22_general_de_en"
MQM = DATA / "wmt21_ted_mqm"
MQM_PAIRS = {"en-de": ("ref.A", "de"), "zh-en": ("ref.B", "en")}  # the reference the data's README names


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


def wmt22() -> None:
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


def cpu_name() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and the instruction set torch dispatches to."""
    import torch

    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    return f"{model}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def load_mqm(pair: str):
    """{system: hypotheses}, references, and {system: MQM score per line} of one language pair."""
    ref_name, target = MQM_PAIRS[pair]
    folder = MQM / pair
    refs = (folder / f"ted.{pair}.{ref_name}.{target}").read_text("utf-8").splitlines()
    scores: dict[str, dict[int, float]] = {}
    for row in (folder / "mqm_scores.tsv").read_text("utf-8").splitlines()[1:]:
        system, seg_id, score = row.split("\t")[:3]
        scores.setdefault(system, {})[int(seg_id) - 1] = float(score)
    hyps = {s: (folder / "system-outputs" / f"ted.{pair}.hyp.{s}.{target}").read_text("utf-8").splitlines()
            for s in sorted(scores)}
    return hyps, refs, {s: [scores[s][i] for i in range(len(refs))] for s in sorted(scores)}


def mqm_segment_scores(hyps: dict, refs: list[str]) -> tuple[dict, dict]:
    """Our sentence BLEU, chrF and ROUGE-L F1 per (system, line), pooled system by system, checked
    equal to the peers' on every segment; and the seconds each side took."""
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pooled = {"sentence BLEU": [], "chrF": [], "ROUGE-L F1": []}
    ours_s = peers_s = 0.0
    for system, lines in hyps.items():
        start = time.perf_counter()
        bleu = [sentence_bleu(h, [r]).score for h, r in zip(lines, refs)]
        chrf = [sentence_chrf(h, [r]).score for h, r in zip(lines, refs)]
        rouge_l = [s["rougeL"].fmeasure for s in rouge(lines, refs, ["rougeL"]).segments]
        middle = time.perf_counter()
        peer_bleu = [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(lines, refs)]
        peer_chrf = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(lines, refs)]
        peer_rouge = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(lines, refs)]
        ours_s, peers_s = ours_s + middle - start, peers_s + time.perf_counter() - middle
        assert np.allclose(bleu, peer_bleu, atol=1e-9, rtol=0) and np.allclose(chrf, peer_chrf, atol=1e-9, rtol=0)
        assert np.allclose(rouge_l, peer_rouge, atol=1e-12, rtol=0)
        pooled["sentence BLEU"] += bleu
        pooled["chrF"] += chrf
        pooled["ROUGE-L F1"] += rouge_l
    return pooled, {"ours": ours_s, "peers": peers_s}


def shuffled_kendall(values, per_system: dict, shuffles: int = 20, seed: int = 0) -> tuple[float, float, float]:
    """Mean, min and max of Kendall τ_b when each system's MQM scores are permuted over its segments."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(seed)
    taus = [kendalltau(values, np.concatenate([rng.permutation(v) for v in per_system.values()]))[0]
            for _ in range(shuffles)]
    return float(np.mean(taus)), float(np.min(taus)), float(np.max(taus))


def mqm() -> None:
    from scipy.stats import kendalltau

    from tokenloom.human.stats import correlations

    print(f"WMT21 TED, expert MQM, segment level: every (system, segment) pair pooled; CPU: {cpu_name()}")
    print("| pair | metric | Pearson r | Spearman ρ | Kendall τ_b | τ_b, shuffled ids: mean [min, max] |")
    print("|---|---|---:|---:|---:|---|")
    system_rows, timing = [], []
    for pair in MQM_PAIRS:
        hyps, refs, mqm_scores = load_mqm(pair)
        pooled, seconds = mqm_segment_scores(hyps, refs)
        timing.append((pair, sum(len(v) for v in mqm_scores.values()), seconds))
        human = np.concatenate(list(mqm_scores.values()))
        for name, values in pooled.items():
            c = correlations(values, human)
            assert abs(c["kendall"] - kendalltau(values, human)[0]) < 1e-12
            mean, low, high = shuffled_kendall(values, mqm_scores)
            print(f"| {pair} | {name} | {c['pearson']:.3f} | {c['spearman']:.3f} | **{c['kendall']:.3f}** | "
                  f"{mean:.3f} [{low:.3f}, {high:.3f}] |")
        per_system = [correlations(pooled["chrF"][k * len(refs):(k + 1) * len(refs)], mqm_scores[s])["kendall"]
                      for k, s in enumerate(hyps)]
        system_rows.append((pair, hyps, refs, mqm_scores, min(per_system), max(per_system)))
    print("\nper system alone, chrF vs MQM Kendall τ_b: " + "; ".join(
        f"{pair} {low:.3f} to {high:.3f}" for pair, _, _, _, low, high in system_rows))
    print("\nsystem level (13 systems): corpus metric vs mean MQM")
    print("| pair | metric | Pearson r | Kendall τ_b |\n|---|---|---:|---:|")
    for pair, hyps, refs, mqm_scores, _, _ in system_rows:
        mean_mqm = [float(np.mean(mqm_scores[s])) for s in hyps]
        corpus = {"BLEU": [corpus_bleu(hyps[s], [refs]).score for s in hyps],
                  "chrF": [corpus_chrf(hyps[s], [refs]).score for s in hyps],
                  "ROUGE-L F1": [rouge(hyps[s], refs, ["rougeL"])["rougeL"].fmeasure for s in hyps]}
        for name, values in corpus.items():
            c = correlations(values, mean_mqm)
            print(f"| {pair} | {name} | {c['pearson']:.3f} | {c['kendall']:.3f} |")
    print("\nscoring time, 3 sentence metrics (ours vs sacrebleu + rouge-score):")
    for pair, n, seconds in timing:
        print(f"  {pair}: {n} segments, ours {seconds['ours']:.2f} s, peers {seconds['peers']:.2f} s "
              f"({seconds['peers'] / seconds['ours']:.1f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("mqm", "wmt22"), help="run one of the two parts")
    args = parser.parse_args()
    if args.only != "wmt22":
        if not MQM.exists():
            print(f"skipped MQM: {MQM} is absent", file=sys.stderr)
        else:
            mqm()
    if args.only != "mqm":
        print()
        if not WMT.exists():
            print(f"skipped WMT22: {WMT} is absent", file=sys.stderr)
        else:
            wmt22()
    return 0


if __name__ == "__main__":
    sys.exit(main())
