"""A study's results: one dict (JSON-ready) that the CLI, the admin page and the
HTML report all show.

    report = build_report(store, store.study("demo"), metrics=("chrf",))

Check items (gold, attention) never enter the system results; they measure the
raters. Intervals resample items (see stats.py). Likert agreement is ordinal
(1-5 are ranked, not equally spaced for sure); pairwise and task agreement is
nominal.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np

from tokenloom.human.agreement import fleiss_kappa, krippendorff_alpha, outliers, rater_agreement
from tokenloom.human.pairwise import (
    SCORE,
    Comparison,
    bradley_terry_table,
    elo,
    position_bias,
    win_matrix,
)
from tokenloom.human.stats import DEFAULT_BOOTSTRAP, bootstrap_mean, wilson
from tokenloom.human.store import RatingStore, Study

TASK_SCORE = {"yes": 1.0, "partly": 0.5, "no": 0.0}
MIN_CHECKS = 3


def human_score(kind: str, value: str) -> float:
    """A rating as a number: Likert 1-5, task yes 1 / partly 0.5 / no 0, pairwise
    the first output's score (1, 0.5 for tie and both bad, 0)."""
    if kind == "likert":
        return float(value)
    return TASK_SCORE[value] if kind == "task" else SCORE[value]


def _likert(rows: list[dict], criteria, n_samples: int, seed: int) -> dict:
    out = {}
    for criterion in criteria:
        by_system = defaultdict(lambda: ([], []))
        for r in rows:
            if r["criterion"] == criterion:
                by_system[r["first"]][0].append(float(r["value"]))
                by_system[r["first"]][1].append(r["item"])
        table = [{"system": s, **bootstrap_mean(v, c, n_samples, seed=seed).to_dict()}
                 for s, (v, c) in by_system.items()]
        out[criterion] = sorted(table, key=lambda t: (-t["value"], t["system"]))
    return out


def _task(rows: list[dict]) -> list[dict]:
    by_system = defaultdict(list)
    for r in rows:
        by_system[r["first"]].append(r["value"])
    table = []
    for system, values in by_system.items():
        n = len(values)
        yes, partly = values.count("yes"), values.count("partly")
        table.append({"system": system, "n": n, "yes": yes, "partly": partly, "no": n - yes - partly,
                      "success": wilson(yes, n).to_dict(), "useful": wilson(yes + partly, n).to_dict()})
    return sorted(table, key=lambda t: (-t["success"]["value"], t["system"]))


def comparisons(rows: list[dict], criterion: str) -> tuple[list[str], list[Comparison], int]:
    """(systems, comparisons of one criterion, number of items) of pairwise rows."""
    picked = [r for r in rows if r["criterion"] == criterion]
    systems = sorted({r["first"] for r in picked} | {r["second"] for r in picked})
    index = {s: k for k, s in enumerate(systems)}
    items = {item: k for k, item in enumerate(dict.fromkeys(r["item"] for r in picked))}
    found = [Comparison(index[r["first"]], index[r["second"]], SCORE[r["value"]], items[r["item"]], not r["flip"])
             for r in picked]
    return systems, found, len(items)


def _pairwise(rows: list[dict], criteria, n_samples: int, seed: int) -> dict:
    out = {}
    for criterion in criteria:
        systems, found, n_items = comparisons(rows, criterion)
        if len(systems) < 2:
            continue
        out[criterion] = {"matrix": win_matrix(systems, found),
                          "bradley_terry": bradley_terry_table(systems, found, n_items, n_samples, seed=seed),
                          "elo": elo(systems, found), "position_bias": position_bias(found),
                          "comparisons": len(found)}
    return out


def _agreement(kind: str, rows: list[dict], criteria) -> dict:
    level = "ordinal" if kind == "likert" else "nominal"
    out = {}
    for criterion in criteria:
        units = defaultdict(list)
        for r in rows:
            if r["criterion"] == criterion:
                units[r["item"]].append(int(r["value"]) if kind == "likert" else r["value"])
        values = list(units.values())
        out[criterion] = {"level": level, "krippendorff_alpha": krippendorff_alpha(values, level) if values else None,
                          "fleiss_kappa": fleiss_kappa(values) if values else None,
                          "units": sum(1 for v in values if len(v) >= 2)}
    return out


def check_correct(kind: str, expected: str, value: str) -> bool:
    """Is a check item answered right? Likert within one point; pairwise 'A' is the
    gold file's output_a (stored as 'first'); task exactly."""
    if kind == "likert":
        return abs(int(value) - int(expected)) <= 1
    if kind == "pairwise":
        expected = {"A": "first", "B": "second"}.get(expected, expected)
    return value == expected


def _raters(store: RatingStore, study: Study, rows: list[dict], checks: list[dict]) -> list[dict]:
    level = "ordinal" if study.kind == "likert" else "nominal"
    units = defaultdict(dict)
    for r in rows:
        units[(r["item"], r["criterion"])][r["rater"]] = r["value"]
    agreement = rater_agreement(units, level)
    accuracy = defaultdict(lambda: {"gold": [], "attention": []})
    for r in checks:
        expected = json.loads(r["expected"])[r["criterion"]]
        accuracy[r["rater"]][r["role"]].append(check_correct(study.kind, expected, r["value"]))
    # flag on checks only with MIN_CHECKS answers or more: one missed gold item says little
    share = {rater: float(np.mean(a["gold"] + a["attention"])) for rater, a in accuracy.items()
             if len(a["gold"] + a["attention"]) >= MIN_CHECKS}
    flagged = outliers({r: a["agreement"] for r, a in agreement.items()}, share)
    seconds = defaultdict(list)
    for r in rows + checks:
        if r["elapsed_ms"] is not None:
            seconds[r["rater"]].append(r["elapsed_ms"] / 1000)
    table = []
    for row in store.rater_rows(study):
        name, got = row["name"], accuracy.get(row["name"], {"gold": [], "attention": []})
        table.append({"rater": name, "done": row["done"], "total": row["total"],
                      "agreement": agreement.get(name, {}).get("agreement"),
                      "agreement_units": agreement.get(name, {}).get("units", 0),
                      "gold_accuracy": float(np.mean(got["gold"])) if got["gold"] else None,
                      "attention_passed": float(np.mean(got["attention"])) if got["attention"] else None,
                      "median_seconds": float(np.median(seconds[name])) if seconds[name] else None,
                      "flagged": name in flagged, "reasons": flagged.get(name, [])})
    return table


def build_report(store: RatingStore, study: Study, metrics=(), n_bootstrap: int = DEFAULT_BOOTSTRAP,
                 seed: int = 0) -> dict:
    """Everything the study's ratings say, as plain JSON-ready data (NaN -> None)."""
    every = store.ratings(study)
    rows = [r for r in every if r["role"] == "study"]
    checks = [r for r in every if r["role"] != "study"]
    report = {"study": {"name": study.name, "kind": study.kind, "criteria": list(study.criteria),
                        "status": study.status, "per_item": study.per_item,
                        "items": len(store.items(study)), "check_items": len(store.items(study, "gold"))
                        + len(store.items(study, "attention"))},
              "ratings": len(every), "raters": _raters(store, study, rows, checks),
              "agreement": _agreement(study.kind, rows, study.criteria)}
    if study.kind == "likert":
        report["likert"] = _likert(rows, study.criteria, n_bootstrap, seed)
    elif study.kind == "task":
        report["task"] = _task(rows)
    else:
        report["pairwise"] = _pairwise(rows, study.criteria, n_bootstrap, seed)
    report["ranking"] = ranking(report)
    if metrics:
        from tokenloom.human.metric_corr import metric_correlations

        report["metrics"] = metric_correlations(store, study, rows, metrics)
    return clean(report)


def ranking(report: dict) -> list[dict]:
    """Systems best first by the study's headline number: mean over Likert criteria,
    task success rate, or pairwise Bradley–Terry rating of the first criterion."""
    kind = report["study"]["kind"]
    if kind == "likert":
        means = defaultdict(list)
        for table in report["likert"].values():
            for row in table:
                means[row["system"]].append(row["value"])
        rows = [{"system": s, "score": float(np.mean(v)), "measure": "mean Likert"} for s, v in means.items()]
    elif kind == "task":
        rows = [{"system": r["system"], "score": r["success"]["value"], "measure": "success rate"}
                for r in report["task"]]
    else:
        first = next(iter(report["pairwise"].values()), None)
        rows = [] if first is None else [{"system": r["system"], "score": r["rating"], "measure": "Bradley-Terry"}
                                         for r in first["bradley_terry"]["systems"]]
    rows.sort(key=lambda r: (-r["score"], r["system"]))
    return [{"rank": k, **r} for k, r in enumerate(rows, start=1)]


def clean(value):
    """Replace NaN and infinities with None and numpy scalars with Python ones, recursively."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
