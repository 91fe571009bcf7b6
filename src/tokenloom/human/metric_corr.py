"""How far do automatic metrics agree with the people? Correlation of sentence
BLEU, chrF and ROUGE-L with a study's human scores (items need a `reference`).

Segment level, one point per rated unit:
  Likert / task: the item's mean human score (Likert 1-5 averaged over raters and
  criteria; task yes 1, partly 0.5, no 0) against the metric of its output.
  Pairwise: the item's mean score of the first output (1 win, 0.5 tie, 0 loss)
  against metric(first) - metric(second).
System level, one point per system: the mean human score (pairwise: the
Bradley–Terry rating) against the corpus metric of the system's rated outputs
(corpus BLEU and chrF; mean ROUGE-L F1). Needs three systems or more.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from tokenloom.errors import InvalidArgument
from tokenloom.human.stats import correlations

METRICS = ("bleu", "chrf", "rougeL")


def check_metrics(names) -> tuple[str, ...]:
    names = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InvalidArgument(f"unknown metric(s) {', '.join(unknown)}; --metrics takes a comma-separated "
                              f"list of {', '.join(METRICS)}")
    return names


def sentence_score(metric: str, hypothesis: str, reference: str) -> float:
    from tokenloom import metrics as m

    if metric == "bleu":
        return m.sentence_bleu(hypothesis, [reference]).score
    if metric == "chrf":
        return m.sentence_chrf(hypothesis, [reference]).score
    return 100 * m.rouge_segment(hypothesis, reference, types=("rougeL",))["rougeL"].fmeasure


def corpus_score(metric: str, hypotheses: list[str], references: list[str]) -> float:
    from tokenloom import metrics as m

    if metric == "bleu":
        return m.corpus_bleu(hypotheses, [references]).score
    if metric == "chrf":
        return m.corpus_chrf(hypotheses, [references]).score
    return 100 * m.rouge(hypotheses, references, types=("rougeL",))["rougeL"].fmeasure


def metric_correlations(store, study, rows: list[dict], names) -> dict:
    """{"segment": {metric: correlations}, "system": {...}, "skipped": why} of a study."""
    from tokenloom.human.report import human_score

    names = check_metrics(names)
    items = {i["item"]: i for i in store.items(study)}
    missing = sum(1 for i in items.values() if not i["reference"])
    if missing:
        return {"skipped": f"{missing} of {len(items)} items have no 'reference'; metrics need one on every item"}
    human = defaultdict(list)
    for r in rows:
        human[r["item"]].append(human_score(study.kind, r["value"]))
    rated = [items[k] for k in human]
    out = {"segment": {}, "system": {}, "units": len(rated)}
    for metric in names:
        scores = [[sentence_score(metric, text, i["reference"]) for _, text in i["outputs"]] for i in rated]
        metric_side = [s[0] - s[1] if len(s) == 2 else s[0] for s in scores]
        out["segment"][metric] = correlations(metric_side, [np.mean(human[i["item"]]) for i in rated])
        out["system"][metric] = _system_level(study.kind, metric, rated, human)
    return out


def _system_level(kind: str, metric: str, rated: list[dict], human: dict) -> dict:
    outputs, refs, people = defaultdict(list), defaultdict(list), defaultdict(list)
    for item in rated:
        for slot, (system, text) in enumerate(item["outputs"]):
            outputs[system].append(text)
            refs[system].append(item["reference"])
            score = float(np.mean(human[item["item"]]))
            people[system].append(score if slot == 0 else 1 - score)
    systems = sorted(outputs)
    if kind == "pairwise":
        people = _pairwise_system_scores(rated, human, systems)
    else:
        people = {s: float(np.mean(people[s])) for s in systems}
    metric_side = [corpus_score(metric, outputs[s], refs[s]) for s in systems]
    return {**correlations(metric_side, [people[s] for s in systems]), "systems": systems}


def _pairwise_system_scores(rated, human, systems) -> dict:
    from tokenloom.human.pairwise import Comparison, fit_bradley_terry

    index = {s: k for k, s in enumerate(systems)}
    found = [Comparison(index[i["outputs"][0][0]], index[i["outputs"][1][0]], score)
             for i in rated for score in human[i["item"]]]
    theta, _ = fit_bradley_terry(len(systems), found)
    return {s: float(theta[index[s]]) for s in systems}
