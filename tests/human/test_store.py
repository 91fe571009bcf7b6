"""The ratings store: durable, unique, resumable, and parameterised."""

import ast
import sqlite3
from pathlib import Path

import pytest

from tokenloom.errors import InvalidArgument
from tokenloom.human import RatingStore, StudyClosed, StudySpec, parse_items
from tokenloom.human.schema import SCHEMA_VERSION
from tokenloom.human.store import canonical

from .conftest import HOSTILE, make_study

HUMAN = Path(__file__).resolve().parents[2] / "src" / "tokenloom" / "human"


def test_database_is_wal_with_full_sync_and_a_schema_version(store):
    db = store._db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_a_newer_schema_is_refused(tmp_path):
    RatingStore(tmp_path / "r.db").close()
    with sqlite3.connect(tmp_path / "r.db") as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(InvalidArgument, match="schema version 99 is newer"):
        RatingStore(tmp_path / "r.db")


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    with sqlite3.connect(tmp_path / "other.db") as raw:
        raw.execute("CREATE TABLE documents (id INTEGER)")
    with pytest.raises(InvalidArgument, match="holds other tables"):
        RatingStore(tmp_path / "other.db")


def test_a_file_that_is_not_sqlite_is_refused_in_one_line(tmp_path):
    (tmp_path / "notes.db").write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(InvalidArgument, match="not a ratings database"):
        RatingStore(tmp_path / "notes.db")


def test_tokens_are_stored_only_as_hashes(store, tmp_path):
    created = make_study(store, "likert")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("ratings.db*"))  # the database and any WAL left
    for token in [created.admin_token, *(r.token for r in created.raters)]:
        assert token.encode() not in raw


def test_tokens_open_only_their_own_study(store):
    one, two = make_study(store, "likert", "one"), make_study(store, "task", "two")
    rater = store.rater_by_token(one.raters[0].token)
    assert rater.study.name == "one" and rater.name == "rater-01"
    assert store.rater_by_token(two.raters[0].token).study.name == "two"
    assert store.rater_by_token(one.admin_token) is None
    assert store.rater_by_token(one.raters[0].token[:-1]) is None
    assert store.study_by_admin_token(one.raters[0].token) is None
    assert store.study_by_admin_token(two.admin_token).name == "two"


def test_same_answer_twice_is_one_rating_and_a_change_is_a_revision(store):
    created = make_study(store, "likert", criteria=("fluency", "tone"))
    rater = store.rater_by_token(created.raters[0].token)
    first = store.submit(rater, 1, {"fluency": "4", "tone": "2"})
    again = store.submit(rater, 1, {"fluency": "4", "tone": "2"})
    changed = store.submit(rater, 1, {"tone": "5"})
    assert first["ids"] == again["ids"] and again["changed"] == [] and changed["changed"] == ["tone"]
    rows = store.ratings(store.study("s"))
    assert [(r["criterion"], r["value"], r["revision"]) for r in rows] == [("fluency", "4", 0), ("tone", "5", 1)]


def test_the_unique_key_holds_even_against_direct_inserts(store):
    created = make_study(store, "task")
    rater = store.rater_by_token(created.raters[0].token)
    store.submit(rater, 1, {"success": "yes"})
    row = store._db().execute("SELECT * FROM ratings").fetchone()
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store._db().execute("INSERT INTO ratings (assignment_id, rater_id, item_id, criterion, value, shown, "
                            "created_at, updated_at) VALUES (?, ?, ?, ?, 'no', 'no', 0, 0)",
                            (row["assignment_id"], row["rater_id"], row["item_id"], row["criterion"]))


def test_a_rater_continues_at_the_first_unanswered_position(store):
    created = make_study(store, "likert", criteria=("fluency", "tone"))
    rater = store.rater_by_token(created.raters[0].token)
    store.submit(rater, 1, {"fluency": "3", "tone": "3"})
    store.submit(rater, 2, {"fluency": "3"})  # half answered: not done
    store.submit(rater, 3, {"fluency": "3", "tone": "1"})
    assert store.next_position(rater) == 2
    assert store.progress(rater) == (2, store.progress(rater)[1])


def test_bad_answers_are_refused_and_store_nothing(store):
    created = make_study(store, "pairwise")
    rater = store.rater_by_token(created.raters[0].token)
    with pytest.raises(InvalidArgument, match="allowed: A, B, tie, both_bad"):
        store.submit(rater, 1, {"overall": "C"})
    with pytest.raises(InvalidArgument, match="unknown criterion 'fluency'"):
        store.submit(rater, 1, {"overall": "A", "fluency": "A"})
    with pytest.raises(InvalidArgument, match="positions are 1 to"):
        store.submit(rater, 999, {"overall": "A"})
    with pytest.raises(InvalidArgument, match="elapsed_ms"):
        store.submit(rater, 1, {"overall": "A"}, elapsed_ms=-5)
    assert store.ratings(store.study("s")) == []


def test_a_closed_study_takes_no_more_answers(store):
    created = make_study(store, "task")
    rater = store.rater_by_token(created.raters[0].token)
    store.submit(rater, 1, {"success": "yes"})
    store.close_study(store.study("s"))
    rater = store.rater_by_token(created.raters[0].token)
    with pytest.raises(StudyClosed, match="closed"):
        store.submit(rater, 1, {"success": "no"})
    assert store.task(rater, 1).open is False
    assert [r["value"] for r in store.ratings(store.study("s"))] == ["yes"]


@pytest.mark.parametrize("shown, flip, stored", [("A", False, "first"), ("A", True, "second"), ("B", False, "second"),
                                                 ("B", True, "first"), ("tie", True, "tie"), ("both_bad", False, "both_bad")])
def test_pairwise_answers_are_stored_in_terms_of_the_items_outputs(shown, flip, stored):
    assert canonical("pairwise", shown, flip) == stored


def test_the_task_shows_the_flipped_pair_in_display_order(store):
    created = make_study(store, "pairwise", segments=4, raters=2, per_item=2)
    for invitation in created.raters:
        rater = store.rater_by_token(invitation.token)
        for a in store._queue(rater):
            task = store.task(rater, a["position"])
            outputs = [r["text"] for r in store._db().execute(
                "SELECT text FROM outputs WHERE item_id = ? ORDER BY slot", (a["item_id"],))]
            assert list(task.outputs) == (outputs[::-1] if a["flip"] else outputs)


def test_hostile_strings_round_trip_through_the_store(store):
    rows = [(f"f:{k}", {"id": k, "prompt": t, "system": f"sys {t[:30]}", "output": t}) for k, t in enumerate(HOSTILE)]
    created = store.create_study(StudySpec("'; DROP TABLE studies; --", "likert", (), 1, 1),
                                 parse_items(rows, "likert"))
    rater = store.rater_by_token(created.raters[0].token)
    texts = sorted(store.task(rater, p).outputs[0] for p in range(1, len(HOSTILE) + 1))
    assert texts == sorted(HOSTILE)
    assert store.study("'; DROP TABLE studies; --").kind == "likert"


def test_a_duplicate_study_name_is_refused(store):
    make_study(store, "likert", "dup")
    with pytest.raises(InvalidArgument, match="already exists"):
        make_study(store, "likert", "dup")


def _sql_arguments(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("execute", "executemany", "executescript") and node.args:
            yield path.name, node.lineno, node.args[0]


def test_every_sql_statement_is_a_constant_string():
    """Values travel as parameters: no statement is built from data (f-strings, %, format)."""
    offenders = []
    for path in HUMAN.rglob("*.py"):
        for name, line, arg in _sql_arguments(path):
            constant = isinstance(arg, ast.Constant) or (
                isinstance(arg, ast.BinOp) and all(isinstance(n, ast.Constant) for n in (arg.left, arg.right)))
            if not constant and not (name == "schema.py" and isinstance(arg, ast.Name)):  # the DDL split
                offenders.append(f"{name}:{line}")
    assert offenders == []
