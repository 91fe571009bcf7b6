"""`tokenloom human ...` end to end in a subprocess-free runner; errors are one line, exit 2."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tokenloom.app.cli import app
from tokenloom.human import RatingStore

from .conftest import SHARED_DATA, SRC, item_rows, simulate, write_jsonl

runner = CliRunner()
HH = SHARED_DATA / "hh_rlhf_helpful_base_test" / "test_first500.jsonl"


def _items(tmp_path):
    return write_jsonl(tmp_path / "items.jsonl", [r for _, r in item_rows(5)])


def test_create_prints_one_link_per_rater_and_an_admin_token(tmp_path):
    result = runner.invoke(app, ["human", "create", "--db", str(tmp_path / "r.db"), "--study", "demo", "--items",
                                 str(_items(tmp_path)), "--kind", "likert", "--criteria", "fluency,coherence",
                                 "--raters", "4", "--per-item", "2", "--url", "http://rate.example:9000/", "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["study"] == "demo" and len(created["admin_token"]) >= 40
    assert [r["url"] for r in created["raters"]] == [f"http://rate.example:9000/r/{r['token']}" for r in created["raters"]]
    with RatingStore(tmp_path / "r.db") as store:
        assert store.study("demo").criteria == ("fluency", "coherence")
        assert store.rater_by_token(created["raters"][3]["token"]).name == "rater-04"


def test_create_with_gold_and_report_in_every_format(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"prompt": "g", "output": "fine", "expected": "yes"}])
    db = tmp_path / "r.db"
    result = runner.invoke(app, ["human", "create", "--db", str(db), "--study", "t", "--items", str(_items(tmp_path)),
                                 "--kind", "task", "--gold", str(gold), "--raters", "2", "--per-item", "1"])
    assert result.exit_code == 0 and "admin (keep private)" in result.stdout and "1 check items" in result.stdout
    with RatingStore(db) as store:
        simulate(store, _created(result.stdout), lambda *_: "yes")
    out = [tmp_path / "r.html", tmp_path / "r.csv", tmp_path / "r.jsonl"]
    report = runner.invoke(app, ["human", "report", "--db", str(db), "--html", str(out[0]), "--csv", str(out[1]),
                                 "--jsonl", str(out[2]), "--metrics", "chrf,rougeL", "--bootstrap", "50", "--json"])
    assert report.exit_code == 0, report.output
    parsed = json.loads(report.stdout)
    assert parsed["study"]["kind"] == "task" and parsed["raters"][0]["gold_accuracy"] == 1.0
    assert set(parsed["metrics"]["segment"]) == {"chrf", "rougeL"}
    assert "<svg" in out[0].read_text() and out[1].read_text().count("\n") == 1 + 15 + 2
    assert len(out[2].read_text().splitlines()) == 17
    text = runner.invoke(app, ["human", "report", "--db", str(db), "--bootstrap", "20"])
    assert "task success" in text.stdout and "Krippendorff" in text.stdout


def _created(stdout: str):
    """The CreatedStudy behind `create`'s text output (tokens from the printed links)."""
    from tokenloom.human.store import CreatedStudy, Invitation

    links = [line.split(": ", 1) for line in stdout.splitlines() if line.startswith("rater-")]
    return CreatedStudy("t", "", tuple(Invitation(name, url.rsplit("/", 1)[1]) for name, url in links))


@pytest.mark.skipif(not HH.exists(), reason=f"shared HH-RLHF data absent ({HH})")
def test_import_preferences_builds_a_blind_pairwise_study(tmp_path):
    result = runner.invoke(app, ["human", "import-preferences", str(HH), "--db", str(tmp_path / "hh.db"),
                                 "--limit", "40", "--raters", "4", "--per-item", "2", "--json"])
    assert result.exit_code == 0, result.output
    with RatingStore(tmp_path / "hh.db") as store:
        study = store.study("preferences")
        items = store.items(study)
        assert study.kind == "pairwise" and len(items) == 40
        assert all([s for s, _ in i["outputs"]] == ["chosen", "rejected"] for i in items)
        assert sum(r["total"] for r in store.rater_rows(study)) == 80


@pytest.mark.parametrize("args, message", [
    (["--kind", "stars"], "study kind must be one of likert, pairwise, task"),
    (["--kind", "likert", "--per-item", "9"], "--per-item must be between 1 and --raters (3)"),
    (["--kind", "likert", "--criteria", "flu ency"], "criterion 'flu ency'"),
    (["--kind", "task", "--criteria", "fluency"], "task-success study asks one question"),
])
def test_bad_options_exit_2_with_one_line_saying_what_is_allowed(tmp_path, args, message):
    command = [sys.executable, "-m", "tokenloom", "human", "create", "--db", str(tmp_path / "r.db"), "--study", "x",
               "--items", str(_items(tmp_path)), *args]
    done = subprocess.run(command, capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, timeout=60)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


def test_report_on_a_missing_database_or_study_says_so(tmp_path):
    missing = runner.invoke(app, ["human", "report", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code != 0 and "no such ratings database" in str(missing.exception)
    with RatingStore(tmp_path / "r.db"):
        pass
    empty = runner.invoke(app, ["human", "report", "--db", str(tmp_path / "r.db")])
    assert "no study yet" in str(empty.exception)
