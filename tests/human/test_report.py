"""Reports on simulated raters: the statistics find what the simulation put in."""

import csv
import io
import json

import numpy as np
import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.human import StudySpec, build_report, parse_items, preference_rows
from tokenloom.human.pairwise import Comparison, bradley_terry_table
from tokenloom.human.render import html_report, ratings_csv, ratings_jsonl, text_report

from .conftest import SHARED_DATA, item_rows, make_study, simulate

QUALITY = {"alpha": 4.2, "beta": 3.0, "gamma": 1.8}
HH = SHARED_DATA / "hh_rlhf_helpful_base_test" / "test_first500.jsonl"


def _system_at(store, rater, position, side: str) -> str:
    """The system behind display side 'A' or 'B' (what only the simulation may know)."""
    row = store._db().execute("SELECT flip, item_id FROM assignments WHERE rater_id = ? AND position = ?",
                              (rater.id, position)).fetchone()
    systems = [r[0] for r in store._db().execute("SELECT system FROM outputs WHERE item_id = ? ORDER BY slot",
                                                 (row["item_id"],))]
    shown = systems[::-1] if row["flip"] else systems
    return shown[0] if side == "A" else shown[1]


def _likert_answer(store, rng, noisy=frozenset()):
    def answer(rater, task, criterion):
        if rater.name in noisy:
            return str(rng.integers(1, 6))
        system = _system_at(store, rater, task.position, "A")
        if system == "gold":
            return "5"
        return str(int(np.clip(round(QUALITY[system] + rng.normal(0, 0.5)), 1, 5)))
    return answer


def test_likert_report_ranks_systems_and_flags_the_random_rater(store):
    rng = np.random.default_rng(0)
    gold = [{"prompt": f"g{k}", "output": "a perfect answer", "expected": 5} for k in range(4)]
    created = make_study(store, "likert", segments=20, raters=6, per_item=3, criteria=("fluency", "coherence"),
                         gold=gold)
    simulate(store, created, _likert_answer(store, rng, noisy={"rater-06"}))
    report = build_report(store, store.study("s"), n_bootstrap=300)
    assert [r["system"] for r in report["ranking"]] == ["alpha", "beta", "gamma"]
    fluency = {r["system"]: r for r in report["likert"]["fluency"]}
    assert fluency["alpha"]["low"] > fluency["beta"]["high"]
    assert fluency["alpha"]["n"] == 20 * 3
    assert report["agreement"]["fluency"]["level"] == "ordinal"
    assert report["agreement"]["fluency"]["krippendorff_alpha"] > 0.4
    raters = {r["rater"]: r for r in report["raters"]}
    assert raters["rater-01"]["gold_accuracy"] == 1.0 and raters["rater-01"]["done"] == raters["rater-01"]["total"]
    assert raters["rater-06"]["flagged"] and not raters["rater-01"]["flagged"]
    assert report["study"]["check_items"] == 4 and report["ratings"] == (20 * 3 * 3 + 4 * 6) * 2


def test_task_report_gives_wilson_intervals_per_system(store):
    rng = np.random.default_rng(1)
    created = make_study(store, "task", segments=30, raters=3, per_item=2)
    rates = {"alpha": 0.9, "beta": 0.5, "gamma": 0.1}

    def answer(rater, task, criterion):
        return "yes" if rng.random() < rates[_system_at(store, rater, task.position, "A")] else "no"

    simulate(store, created, answer)
    report = build_report(store, store.study("s"))
    rows = {r["system"]: r for r in report["task"]}
    assert rows["alpha"]["n"] == 60 and rows["alpha"]["success"]["low"] > rows["beta"]["success"]["high"]
    assert [r["system"] for r in report["ranking"]] == ["alpha", "beta", "gamma"]


def test_pairwise_report_finds_a_left_side_bias(store):
    created = make_study(store, "pairwise", segments=20, raters=4, per_item=4, systems=("a", "b"))
    simulate(store, created, lambda rater, task, criterion: "A")  # always the left one
    block = build_report(store, store.study("s"), n_bootstrap=200)["pairwise"]["overall"]
    assert block["position_bias"]["rate"] == 1.0 and block["position_bias"]["low"] > 0.5
    # the layouts were balanced, so always-left favours no system
    assert block["matrix"]["a"]["b"] == {"win": 40, "tie": 0, "loss": 40}
    assert abs(block["bradley_terry"]["systems"][0]["theta"]) < 1e-9


def _hh_study(store, noise: float, seed: int):
    rows = preference_rows(HH, limit=300)
    created = store.create_study(StudySpec(f"hh-{noise}", "pairwise", (), 5, 1, seed), parse_items(rows, "pairwise"))
    rng = np.random.default_rng(seed)

    def answer(rater, task, criterion):
        chosen_side = "A" if _system_at(store, rater, task.position, "A") == "chosen" else "B"
        return chosen_side if rng.random() >= noise else {"A": "B", "B": "A"}[chosen_side]

    simulate(store, created, answer)
    return build_report(store, store.study(f"hh-{noise}"), n_bootstrap=500, seed=seed)["pairwise"]["overall"]


@pytest.mark.skipif(not HH.exists(), reason=f"shared HH-RLHF data absent ({HH})")
def test_hh_rlhf_raters_with_20_percent_noise_rank_chosen_above_rejected_beyond_a_tie(store):
    block = _hh_study(store, 0.2, seed=0)
    difference = block["bradley_terry"]["differences"]["chosen - rejected"]
    assert [r["system"] for r in block["bradley_terry"]["systems"]] == ["chosen", "rejected"]
    assert difference["low"] > 0, difference


@pytest.mark.skipif(not HH.exists(), reason=f"shared HH-RLHF data absent ({HH})")
def test_hh_rlhf_raters_with_50_percent_noise_leave_a_tie_inside_the_interval(store):
    block = _hh_study(store, 0.5, seed=0)
    difference = block["bradley_terry"]["differences"]["chosen - rejected"]
    assert difference["low"] <= 0 <= difference["high"], difference
    # and it is not luck of one seed: over 20 simulated panels the tie is inside about 95% of the time
    rng = np.random.default_rng(123)
    inside = 0
    for trial in range(20):
        found = [Comparison(0, 1, float(rng.random() >= 0.5), k) for k in range(300)]
        d = bradley_terry_table(["chosen", "rejected"], found, 300, n_samples=200, seed=trial)["differences"]
        inside += d["chosen - rejected"]["low"] <= 0 <= d["chosen - rejected"]["high"]
    assert inside >= 16


def test_metric_correlation_follows_the_people_when_they_agree_with_the_reference(store):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(15):
        reference = f"the cat number {i} sat on the mat near the door"
        for system, text in [("alpha", reference), ("beta", f"a cat number {i} sat on a mat"),
                             ("gamma", f"dogs {i} ran")]:
            rows.append((f"f:{len(rows)}", {"id": i, "prompt": "describe", "system": system, "output": text,
                                            "reference": reference}))
    created = store.create_study(StudySpec("m", "likert", (), 3, 2), parse_items(rows, "likert"))
    simulate(store, created, _likert_answer(store, rng))
    report = build_report(store, store.study("m"), metrics=("bleu", "chrf", "rougeL"), n_bootstrap=50)
    for metric in ("bleu", "chrf", "rougeL"):
        assert report["metrics"]["segment"][metric]["kendall"] > 0.5
        assert report["metrics"]["segment"][metric]["n"] == 45
        assert report["metrics"]["system"][metric]["spearman"] == pytest.approx(1.0)


def test_metrics_need_references_and_known_names(store):
    created = store.create_study(StudySpec("n", "likert", (), 2, 1), parse_items(item_rows(3, reference=False),
                                                                                 "likert"))
    simulate(store, created, lambda *_: "3")
    assert "no 'reference'" in build_report(store, store.study("n"), metrics=("chrf",))["metrics"]["skipped"]
    with pytest.raises(InvalidArgument, match="unknown metric.*bleu, chrf, rougeL"):
        build_report(store, store.study("n"), metrics=("meteor",))


def test_renderings_escape_hostile_names_and_defuse_spreadsheet_formulas(store):
    rows = [(f"f:{k}", {"id": 0, "prompt": "p", "system": name, "output": "x"})
            for k, name in enumerate(["<script>alert(1)</script>", "=cmd|'/c calc'!A0"])]
    created = store.create_study(StudySpec("h", "pairwise", (), 2, 2), parse_items(rows, "pairwise"))
    simulate(store, created, lambda *_: "A")
    report = build_report(store, store.study("h"), n_bootstrap=20)
    page = html_report(report)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<svg" in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    exported = list(csv.DictReader(io.StringIO(ratings_csv(store.ratings(store.study("h"))))))
    assert {r["first"] for r in exported} | {r["second"] for r in exported} >= {"'=cmd|'/c calc'!A0"}
    lines = ratings_jsonl(store.ratings(store.study("h"))).splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["criterion"] == "overall"
    assert "ranking:" in text_report(report) and json.dumps(report)  # JSON-ready: no NaN, no numpy types
