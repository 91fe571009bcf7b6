"""Human evaluation: studies, balanced assignment, a durable ratings store and
honest statistics (no model code, no web code; the rating app is in `web/`).

    from tokenloom.human import RatingStore, StudySpec, parse_items, read_jsonl, build_report
    store = RatingStore("ratings.db")
    created = store.create_study(StudySpec("demo", "likert", ("fluency",), raters=3, per_item=2),
                                 parse_items(read_jsonl("items.jsonl"), "likert"))
    build_report(store, store.study("demo"))
"""

from tokenloom.human.items import Item, Output, parse_gold, parse_items, preference_rows, read_jsonl
from tokenloom.human.report import build_report
from tokenloom.human.store import CreatedStudy, RatingStore, StudyClosed, StudySpec

__all__ = ["CreatedStudy", "Item", "Output", "RatingStore", "StudyClosed", "StudySpec", "build_report",
           "parse_gold", "parse_items", "preference_rows", "read_jsonl"]
