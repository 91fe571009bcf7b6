"""The ratings store: studies, raters, their queues and their answers, in SQLite.

    store = RatingStore("ratings.db")
    created = store.create_study(StudySpec("demo", "pairwise"), items)
    rater = store.rater_by_token(created.raters[0].token)
    task = store.task(rater, store.next_position(rater))
    store.submit(rater, task.position, {"overall": "A"})

Every statement is parameterised; tokens are kept as hashes (see tokens.py).
One connection per thread; a rating is one transaction. An answer can be
changed until the study closes; sending the same answer again changes nothing,
so a client may retry a submission whose acknowledgement it never received.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tokenloom.errors import InvalidArgument
from tokenloom.human.assign import assign, check_design
from tokenloom.human.items import DEFAULT_CRITERIA, Item, allowed_values, check_kind
from tokenloom.human.schema import connect, ensure_schema
from tokenloom.human.tokens import new_token, same_digest, token_hash

MAX_ELAPSED_MS = 24 * 3600 * 1000


class StudyClosed(InvalidArgument):
    """A rating sent to a study that no longer takes answers."""


@dataclass(frozen=True)
class StudySpec:
    """What `tokenloom human create` asks for."""

    name: str
    kind: str
    criteria: tuple[str, ...] = ()
    raters: int = 3
    per_item: int = 3
    seed: int = 0

    def __post_init__(self):
        check_kind(self.kind)
        if not self.name.strip() or len(self.name) > 200:
            raise InvalidArgument("a study name must be 1 to 200 characters, not blank")
        criteria = tuple(self.criteria) or DEFAULT_CRITERIA[self.kind]
        if self.kind == "task" and criteria != ("success",):
            raise InvalidArgument("a task-success study asks one question (criterion 'success'); "
                                  "use --kind likert for several criteria")
        for criterion in criteria:
            if not criterion or len(criterion) > 64 or not criterion.replace("_", "").replace("-", "").isalnum():
                raise InvalidArgument(f"criterion {criterion!r}: use 1-64 letters, digits, '-' or '_'")
        if len(set(criteria)) != len(criteria):
            raise InvalidArgument(f"criteria repeat a name: {', '.join(criteria)}")
        object.__setattr__(self, "criteria", criteria)


@dataclass(frozen=True)
class Study:
    id: int
    name: str
    kind: str
    criteria: tuple[str, ...]
    per_item: int
    status: str
    secret: str
    admin_hash: str


@dataclass(frozen=True)
class Rater:
    id: int
    name: str
    study: Study
    token_hash: str


@dataclass(frozen=True)
class Invitation:
    name: str
    token: str


@dataclass(frozen=True)
class CreatedStudy:
    study: str
    admin_token: str
    raters: tuple[Invitation, ...]


@dataclass(frozen=True)
class Task:
    """What a rater sees for one queue position: no system name, no item id."""

    position: int
    total: int
    done: int
    kind: str
    criteria: tuple[str, ...]
    prompt: str
    system_prompt: str
    outputs: tuple[str, ...]          # in display order: "A" first
    answers: dict = field(default_factory=dict)  # criterion -> shown answer
    open: bool = True

    def to_dict(self) -> dict:
        labels = ("A", "B") if len(self.outputs) == 2 else ("response",)
        return {"position": self.position, "total": self.total, "done": self.done, "kind": self.kind,
                "criteria": list(self.criteria), "allowed": list(allowed_values(self.kind)),
                "prompt": self.prompt, "system_prompt": self.system_prompt,
                "outputs": [{"label": label, "text": text} for label, text in zip(labels, self.outputs)],
                "answers": self.answers, "open": self.open}


def canonical(kind: str, shown: str, flip: bool) -> str:
    """The stored value of a shown answer: pairwise 'A'/'B' become the item's
    'first'/'second' output (A is outputs[flip]); everything else is kept."""
    if kind != "pairwise" or shown in ("tie", "both_bad"):
        return shown
    left_is_first = not flip
    return "first" if (shown == "A") == left_is_first else "second"


class RatingStore:
    """A ratings database; safe to share between threads (one connection each)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._connections: list = []
        self._lock = threading.Lock()
        ensure_schema(self._db())

    def _db(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self, work):
        """Run `work(connection)` in one BEGIN IMMEDIATE transaction."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            db.execute("COMMIT")
            return result
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --- studies ---------------------------------------------------------------------------------

    def create_study(self, spec: StudySpec, items: list[Item], checks: list[Item] = ()) -> CreatedStudy:
        """Store a study, its items and every rater's queue; return the tokens (shown once)."""
        check_design(len(items), spec.raters, spec.per_item)
        queues = assign(len(items), spec.raters, spec.per_item, spec.seed,
                        tuple(range(len(items), len(items) + len(checks))))
        admin_token = new_token()
        tokens = [new_token() for _ in range(spec.raters)]
        width = max(2, len(str(spec.raters)))

        def work(db):
            if db.execute("SELECT 1 FROM studies WHERE name = ?", (spec.name,)).fetchone():
                raise InvalidArgument(f"a study named {spec.name!r} already exists in {self.path}; pick another name")
            study_id = db.execute(
                "INSERT INTO studies (name, kind, criteria, per_item, seed, admin_hash, secret, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (spec.name, spec.kind, json.dumps(spec.criteria), spec.per_item, spec.seed,
                 token_hash(admin_token), new_token(), time.time())).lastrowid
            every = [*items, *checks]
            item_ids = [self._insert_item(db, study_id, item) for item in every]
            for number, (token, queue) in enumerate(zip(tokens, queues), start=1):
                rater_id = db.execute("INSERT INTO raters (study_id, name, token_hash) VALUES (?, ?, ?)",
                                      (study_id, f"rater-{number:0{width}d}", token_hash(token))).lastrowid
                db.executemany("INSERT INTO assignments (rater_id, item_id, position, flip) VALUES (?, ?, ?, ?)",
                               [(rater_id, item_ids[s.item], p, int(s.flip and len(every[s.item].outputs) == 2))
                                for p, s in enumerate(queue, 1)])  # a single output has no layout

        self._write(work)
        invitations = tuple(Invitation(f"rater-{n:0{width}d}", t) for n, t in enumerate(tokens, start=1))
        return CreatedStudy(spec.name, admin_token, invitations)

    @staticmethod
    def _insert_item(db, study_id: int, item: Item) -> int:
        item_id = db.execute(
            "INSERT INTO items (study_id, ext_id, segment, role, prompt, system_prompt, reference, expected) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (study_id, item.ext_id, item.segment, item.role, item.prompt, item.system_prompt, item.reference,
             json.dumps(item.expected) if item.expected is not None else None)).lastrowid
        db.executemany("INSERT INTO outputs (item_id, slot, system, text) VALUES (?, ?, ?, ?)",
                       [(item_id, slot, o.system, o.text) for slot, o in enumerate(item.outputs)])
        return item_id

    @staticmethod
    def _study(row) -> Study:
        return Study(row["id"], row["name"], row["kind"], tuple(json.loads(row["criteria"])), row["per_item"],
                     row["status"], row["secret"], row["admin_hash"])

    def study(self, name: str | None = None) -> Study:
        """The study called `name`; without a name, the only study in the database."""
        rows = self._db().execute("SELECT * FROM studies ORDER BY id").fetchall()
        if not rows:
            raise InvalidArgument(f"{self.path}: no study yet; create one with `tokenloom human create`")
        if name is None:
            if len(rows) > 1:
                names = ", ".join(r["name"] for r in rows)
                raise InvalidArgument(f"{self.path} holds several studies ({names}); pick one with --study")
            return self._study(rows[0])
        for row in rows:
            if row["name"] == name:
                return self._study(row)
        raise InvalidArgument(f"no study named {name!r} in {self.path}; it has: {', '.join(r['name'] for r in rows)}")

    def studies(self) -> list[Study]:
        return [self._study(r) for r in self._db().execute("SELECT * FROM studies ORDER BY id")]

    def study_by_admin_token(self, token: str) -> Study | None:
        row = self._db().execute("SELECT * FROM studies WHERE admin_hash = ?", (token_hash(token),)).fetchone()
        return self._study(row) if row is not None and same_digest(row["admin_hash"], token) else None

    def close_study(self, study: Study) -> None:
        self._write(lambda db: db.execute("UPDATE studies SET status = 'closed', closed_at = ? WHERE id = ?",
                                          (time.time(), study.id)))

    # --- raters ----------------------------------------------------------------------------------

    def rater_by_token(self, token: str) -> Rater | None:
        """The rater whose invitation token this is, or None."""
        row = self._db().execute(
            "SELECT r.id AS rid, r.name AS rname, r.token_hash, s.* FROM raters r JOIN studies s "
            "ON s.id = r.study_id WHERE r.token_hash = ?", (token_hash(token),)).fetchone()
        if row is None or not same_digest(row["token_hash"], token):
            return None
        return Rater(row["rid"], row["rname"], self._study(row), row["token_hash"])

    def _queue(self, rater: Rater):
        return self._db().execute(
            "SELECT a.id, a.position, a.flip, a.item_id, a.first_shown_at, "
            "(SELECT count(*) FROM ratings g WHERE g.assignment_id = a.id) AS n_rated "
            "FROM assignments a WHERE a.rater_id = ? ORDER BY a.position", (rater.id,)).fetchall()

    def progress(self, rater: Rater) -> tuple[int, int]:
        """(positions fully answered, queue length)."""
        queue = self._queue(rater)
        need = len(rater.study.criteria)
        return sum(1 for a in queue if a["n_rated"] >= need), len(queue)

    def next_position(self, rater: Rater) -> int | None:
        """The first position not fully answered: where a rater continues; None when done."""
        need = len(rater.study.criteria)
        return next((a["position"] for a in self._queue(rater) if a["n_rated"] < need), None)

    def _assignment(self, rater: Rater, position: int):
        row = self._db().execute("SELECT * FROM assignments WHERE rater_id = ? AND position = ?",
                                 (rater.id, position)).fetchone()
        if row is None:
            total = len(self._queue(rater))
            raise InvalidArgument(f"position {position} is not in your queue; positions are 1 to {total}")
        return row

    def task(self, rater: Rater, position: int, mark_shown: bool = True) -> Task:
        """The item at `position` of the rater's queue, outputs in display order."""
        assignment = self._assignment(rater, position)
        db = self._db()
        item = db.execute("SELECT prompt, system_prompt FROM items WHERE id = ?", (assignment["item_id"],)).fetchone()
        texts = [r["text"] for r in db.execute("SELECT text FROM outputs WHERE item_id = ? ORDER BY slot",
                                               (assignment["item_id"],))]
        if assignment["flip"]:
            texts.reverse()
        answers = {r["criterion"]: r["shown"] for r in db.execute(
            "SELECT criterion, shown FROM ratings WHERE assignment_id = ?", (assignment["id"],))}
        if mark_shown and assignment["first_shown_at"] is None:
            self._write(lambda d: d.execute(
                "UPDATE assignments SET first_shown_at = ? WHERE id = ? AND first_shown_at IS NULL",
                (time.time(), assignment["id"])))
        done, total = self.progress(rater)
        status = db.execute("SELECT status FROM studies WHERE id = ?", (rater.study.id,)).fetchone()[0]
        return Task(position, total, done, rater.study.kind, rater.study.criteria, item["prompt"],
                    item["system_prompt"], tuple(texts), answers, status == "open")

    def submit(self, rater: Rater, position: int, answers: dict, elapsed_ms: int | None = None) -> dict:
        """Store (or change) the rater's answers for one position, in one transaction.

        `answers` maps criteria to shown answers (pairwise: 'A', 'B', 'tie', 'both_bad').
        Returns {"position", "ids": {criterion: rating id}, "changed": [criteria whose answer changed]}."""
        study = rater.study
        allowed = allowed_values(study.kind)
        if not isinstance(answers, dict) or not answers:
            raise InvalidArgument(f"send at least one answer; criteria: {', '.join(study.criteria)}")
        for criterion, value in answers.items():
            if criterion not in study.criteria:
                raise InvalidArgument(f"unknown criterion {str(criterion)[:64]!r}; this study asks: "
                                      f"{', '.join(study.criteria)}")
            if value not in allowed:
                raise InvalidArgument(f"answer {str(value)[:64]!r} for {criterion!r} is not allowed; "
                                      f"allowed: {', '.join(allowed)}")
        if elapsed_ms is not None and not (isinstance(elapsed_ms, int) and 0 <= elapsed_ms <= MAX_ELAPSED_MS):
            raise InvalidArgument(f"elapsed_ms must be an integer from 0 to {MAX_ELAPSED_MS}; got {elapsed_ms!r}")
        assignment = self._assignment(rater, position)

        def work(db):
            status = db.execute("SELECT status FROM studies WHERE id = ?", (study.id,)).fetchone()[0]
            if status != "open":
                raise StudyClosed(f"study {study.name!r} is closed; answers can no longer be changed")
            now = time.time()
            shown_at = assignment["first_shown_at"]
            spent = elapsed_ms if elapsed_ms is not None else (
                int(min(MAX_ELAPSED_MS, 1000 * (now - shown_at))) if shown_at else None)
            ids, changed = {}, []
            for criterion, shown in answers.items():
                value = canonical(study.kind, shown, bool(assignment["flip"]))
                before = db.execute("SELECT id, shown FROM ratings WHERE assignment_id = ? AND criterion = ?",
                                    (assignment["id"], criterion)).fetchone()
                if before is None:
                    ids[criterion] = db.execute(
                        "INSERT INTO ratings (assignment_id, rater_id, item_id, criterion, value, shown, "
                        "elapsed_ms, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (assignment["id"], rater.id, assignment["item_id"], criterion, value, shown, spent,
                         now, now)).lastrowid
                    changed.append(criterion)
                    continue
                ids[criterion] = before["id"]
                if before["shown"] != shown:
                    db.execute("UPDATE ratings SET value = ?, shown = ?, updated_at = ?, revision = revision + 1 "
                               "WHERE id = ?", (value, shown, now, before["id"]))
                    changed.append(criterion)
            return {"position": position, "ids": ids, "changed": changed}

        return self._write(work)

    # --- results ---------------------------------------------------------------------------------

    def rater_rows(self, study: Study) -> list[dict]:
        """Per rater: name, answered positions, queue length, median seconds per item."""
        need = len(study.criteria)
        rows = self._db().execute(
            "SELECT r.name, count(a.id) AS total, "
            "sum(CASE WHEN (SELECT count(*) FROM ratings g WHERE g.assignment_id = a.id) >= ? THEN 1 ELSE 0 END) "
            "AS done FROM raters r LEFT JOIN assignments a ON a.rater_id = r.id WHERE r.study_id = ? "
            "GROUP BY r.id ORDER BY r.name", (need, study.id)).fetchall()
        return [dict(r) for r in rows]

    def ratings(self, study: Study) -> list[dict]:
        """Every rating of the study with what the statistics need (systems, flip, role, expected)."""
        rows = self._db().execute(
            "SELECT g.id, r.name AS rater, i.ext_id AS item, i.segment, i.role, i.expected, g.criterion, "
            "g.value, g.shown, a.flip, a.position, o0.system AS first, o1.system AS second, g.elapsed_ms, "
            "g.created_at, g.updated_at, g.revision FROM ratings g "
            "JOIN assignments a ON a.id = g.assignment_id JOIN raters r ON r.id = g.rater_id "
            "JOIN items i ON i.id = g.item_id JOIN outputs o0 ON o0.item_id = i.id AND o0.slot = 0 "
            "LEFT JOIN outputs o1 ON o1.item_id = i.id AND o1.slot = 1 "
            "WHERE i.study_id = ? ORDER BY g.created_at, g.id", (study.id,)).fetchall()
        return [dict(r) for r in rows]

    def items(self, study: Study, role: str = "study") -> list[dict]:
        """Items with their outputs: {item, segment, prompt, reference, outputs: [(system, text)]}."""
        db = self._db()
        out = []
        for row in db.execute("SELECT id, ext_id, segment, prompt, reference FROM items "
                              "WHERE study_id = ? AND role = ? ORDER BY id", (study.id, role)):
            outputs = [(o["system"], o["text"]) for o in db.execute(
                "SELECT system, text FROM outputs WHERE item_id = ? ORDER BY slot", (row["id"],))]
            out.append({"item": row["ext_id"], "segment": row["segment"], "prompt": row["prompt"],
                        "reference": row["reference"], "outputs": outputs})
        return out
