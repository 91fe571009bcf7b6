"""The ratings database: tables, pragmas, schema version.

SQLite in WAL mode with `synchronous=FULL`: a commit returns only after the WAL
is fsynced, so a rating acknowledged to a rater survives a killed server (and a
power cut). Every write is one `BEGIN IMMEDIATE` transaction, which takes the
write lock up front and cannot deadlock on a read-to-write upgrade.

Version 1 is the first; `MIGRATIONS[v]` lists the statements taking a version
v - 1 database to v, applied in one transaction on open.
"""

from __future__ import annotations

import sqlite3

from tokenloom.errors import InvalidArgument

SCHEMA_VERSION = 1

TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('likert', 'pairwise', 'task')),
    criteria TEXT NOT NULL,                -- JSON list, in the order shown
    per_item INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    admin_hash TEXT NOT NULL UNIQUE,       -- SHA-256 of the admin token
    secret TEXT NOT NULL,                  -- HMAC key of the study's CSRF tokens
    created_at REAL NOT NULL,
    closed_at REAL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies (id),
    ext_id TEXT NOT NULL,
    segment TEXT NOT NULL,                 -- the input this item's outputs answer
    role TEXT NOT NULL CHECK (role IN ('study', 'gold', 'attention')),
    prompt TEXT NOT NULL,
    system_prompt TEXT NOT NULL DEFAULT '',
    reference TEXT,
    expected TEXT,                         -- JSON {criterion: answer} of a check item
    UNIQUE (study_id, ext_id)
);
CREATE TABLE outputs (
    item_id INTEGER NOT NULL REFERENCES items (id),
    slot INTEGER NOT NULL CHECK (slot IN (0, 1)),
    system TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (item_id, slot)
);
CREATE TABLE raters (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    UNIQUE (study_id, name)
);
CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    rater_id INTEGER NOT NULL REFERENCES raters (id),
    item_id INTEGER NOT NULL REFERENCES items (id),
    position INTEGER NOT NULL,             -- 1-based place in the rater's queue
    flip INTEGER NOT NULL CHECK (flip IN (0, 1)),  -- 1: outputs slot 1 shown on the left as "A"
    first_shown_at REAL,
    UNIQUE (rater_id, item_id),
    UNIQUE (rater_id, position)
);
CREATE TABLE ratings (
    id INTEGER PRIMARY KEY,
    assignment_id INTEGER NOT NULL REFERENCES assignments (id),
    rater_id INTEGER NOT NULL REFERENCES raters (id),
    item_id INTEGER NOT NULL REFERENCES items (id),
    criterion TEXT NOT NULL,
    value TEXT NOT NULL,                   -- canonical: pairwise 'first'/'second'/'tie'/'both_bad'
    shown TEXT NOT NULL,                   -- what the rater clicked ('A' is the left output)
    elapsed_ms INTEGER,                    -- time on task of the first answer
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,   -- how many times the answer was changed
    UNIQUE (rater_id, item_id, criterion)
);
CREATE INDEX ratings_by_assignment ON ratings (assignment_id);
CREATE INDEX items_by_study ON items (study_id, role);
"""

MIGRATIONS: dict[int, list[str]] = {}


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, FULL sync."""
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA busy_timeout = 30000")
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.DatabaseError as error:  # not a database at all (a text file, a truncated copy)
        connection.close()
        raise InvalidArgument(f"{path}: not a ratings database ({error}); give `--db` a new file or a ratings db")
    if mode.lower() != "wal" and path != ":memory:":
        raise InvalidArgument(f"{path}: SQLite would not switch to WAL mode (got {mode!r}); "
                              "use a file on a local disk")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def ensure_schema(connection: sqlite3.Connection) -> None:
    """Create the tables in an empty database, migrate an older one, refuse a newer one."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        exists = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not exists:
            others = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if others:
                raise InvalidArgument("this SQLite file holds other tables; give `--db` a new file or a ratings db")
            for statement in TABLES.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        else:
            version = int(connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise InvalidArgument(f"ratings database schema version {version} is newer than this tokenloom "
                                      f"understands ({SCHEMA_VERSION}); upgrade tokenloom")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    connection.execute(statement)
            connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
