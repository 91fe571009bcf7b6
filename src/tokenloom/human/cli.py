"""`tokenloom human ...`: create a study, serve the rating app, read the results.

    tokenloom human create --db ratings.db --study demo --items outputs.jsonl --kind pairwise --raters 5 --per-item 3
    tokenloom human import-preferences ../shared/data/hh_rlhf_helpful_base_test/test_first500.jsonl --db hh.db
    tokenloom human serve --db ratings.db --port 8765
    tokenloom human report --db ratings.db --html report.html --csv ratings.csv --metrics bleu,chrf,rougeL

Each command builds the library's objects, calls it and prints. Errors are
TokenloomErrors: one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

human_app = typer.Typer(help="Human evaluation: Likert, blind pairwise preference, task success.",
                        no_args_is_help=True)

DB = Annotated[Path, typer.Option("--db", help="The ratings database (SQLite; created if missing).")]
STUDY = Annotated[str, typer.Option("--study", help="Study name (unique in the database).")]
RATERS = Annotated[int, typer.Option("--raters", help="How many raters (one invitation link each).")]
PER_ITEM = Annotated[int, typer.Option("--per-item", help="Raters per item (K <= raters).")]
SEED = Annotated[int, typer.Option("--seed", help="Seed of the assignment and the left/right layout.")]
URL = Annotated[str, typer.Option("--url", help="Base URL the app will be reachable at (for the links).")]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _print_created(created, url: str, items: int, checks: int, as_json: bool) -> None:
    base = url.rstrip("/")
    raters = [{"name": r.name, "token": r.token, "url": f"{base}/r/{r.token}"} for r in created.raters]
    if as_json:
        print(json.dumps({"study": created.study, "admin_token": created.admin_token,
                          "admin_url": f"{base}/admin/{created.admin_token}", "raters": raters}))
        return
    print(f"study {created.study}: {items} items, {checks} check items, {len(raters)} raters")
    print(f"admin (keep private): {base}/admin/{created.admin_token}")
    for r in raters:
        print(f"{r['name']}: {r['url']}")


@human_app.command("create")
def create_command(
    db: DB,
    study: STUDY,
    items: Annotated[Path, typer.Option("--items", help="JSONL: prompt, system, output, [reference], [id].")],
    kind: Annotated[str, typer.Option("--kind", help="likert | pairwise | task")],
    criteria: Annotated[str, typer.Option(
        help="Comma-separated, e.g. fluency,coherence,relevance,helpfulness,tone (default: overall).")] = "",
    raters: RATERS = 3,
    per_item: PER_ITEM = 3,
    gold: Annotated[Optional[Path], typer.Option("--gold", help="JSONL of check items with 'expected'.")] = None,
    seed: SEED = 0,
    url: URL = "http://127.0.0.1:8765",
    as_json: JSON = False,
) -> None:
    """Create a study: balanced assignment, one invitation link per rater, an admin link."""
    from tokenloom.human import RatingStore, StudySpec, parse_gold, parse_items, read_jsonl

    spec = StudySpec(study, kind, tuple(c.strip() for c in criteria.split(",") if c.strip()), raters, per_item,
                     seed)
    parsed = parse_items(read_jsonl(items), kind)
    checks = parse_gold(read_jsonl(gold), kind, spec.criteria) if gold else []
    with RatingStore(db) as store:
        created = store.create_study(spec, parsed, checks)
    _print_created(created, url, len(parsed), len(checks), as_json)


@human_app.command("import-preferences")
def import_preferences_command(
    file: Annotated[Path, typer.Argument(help="JSONL (.gz too) of {\"chosen\", \"rejected\"} transcripts.")],
    db: DB,
    study: STUDY = "preferences",
    raters: RATERS = 3,
    per_item: PER_ITEM = 1,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N pairs.")] = None,
    seed: SEED = 0,
    url: URL = "http://127.0.0.1:8765",
    as_json: JSON = False,
) -> None:
    """A blind pairwise study from chosen/rejected pairs (HH-RLHF's format)."""
    from tokenloom.human import RatingStore, StudySpec, parse_items, preference_rows

    parsed = parse_items(preference_rows(file, limit), "pairwise")
    with RatingStore(db) as store:
        created = store.create_study(StudySpec(study, "pairwise", (), raters, per_item, seed), parsed)
    _print_created(created, url, len(parsed), 0, as_json)


@human_app.command("serve")
def serve_command(
    db: DB,
    host: Annotated[str, typer.Option(help="Address to listen on; put a TLS proxy in front for the internet.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "warning",
) -> None:
    """The rating app: rater pages, admin page, JSON API (schema at /openapi.json)."""
    from tokenloom.errors import InvalidArgument
    from tokenloom.human.web.app import serve

    if not db.exists():
        raise InvalidArgument(f"{db}: no such ratings database; create a study with `tokenloom human create`")
    serve(db, host, port, log_level)


@human_app.command("report")
def report_command(
    db: DB,
    study: Annotated[Optional[str], typer.Option("--study", help="Which study (needed if there are several).")]
    = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write the HTML report here.")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Write every rating as CSV here.")] = None,
    jsonl: Annotated[Optional[Path], typer.Option("--jsonl", help="Write every rating as JSON Lines here.")] = None,
    metrics: Annotated[str, typer.Option(help="Correlate with people: comma-separated bleu,chrf,rougeL.")] = "",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the intervals.")] = 1000,
    seed: SEED = 0,
    as_json: JSON = False,
) -> None:
    """Results: means, Bradley-Terry, success rates with intervals, agreement, flagged raters."""
    from tokenloom.errors import InvalidArgument
    from tokenloom.human import RatingStore, build_report
    from tokenloom.human.metric_corr import check_metrics
    from tokenloom.human.render import html_report, ratings_csv, ratings_jsonl, text_report

    if not db.exists():
        raise InvalidArgument(f"{db}: no such ratings database")
    if bootstrap < 1:
        raise InvalidArgument(f"--bootstrap must be at least 1; got {bootstrap}")
    names = check_metrics(metrics.split(",")) if metrics else ()
    with RatingStore(db) as store:
        chosen = store.study(study)
        report = build_report(store, chosen, metrics=names, n_bootstrap=bootstrap, seed=seed)
        rows = store.ratings(chosen)
    if html:
        html.write_text(html_report(report), "utf-8")
    if csv:
        csv.write_text(ratings_csv(rows), "utf-8")
    if jsonl:
        jsonl.write_text(ratings_jsonl(rows), "utf-8")
    print(json.dumps(report, ensure_ascii=False) if as_json else text_report(report))
