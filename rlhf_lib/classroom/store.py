"""The class's labels in one SQLite file: pairs, who was shown what, and every judgement.

SQLite in WAL mode: readers never wait for the writer, and one writer at a time. Every write
starts with `BEGIN IMMEDIATE` (it takes the write lock first, so it never fails half-way with
"database is locked"), and a call returns only after its COMMIT, so a label that was
acknowledged survives a killed server. Each thread gets its own connection; within one process the
writers also take turns on a lock, so none waits on SQLite's polling busy handler.

Tables:
    pairs     id, prompt, completion_a, completion_b, model, shared (0/1), gold (noise-free taste)
    handouts  which pair was shown to which annotator, and when
    labels    label_id (chosen by the client, so a retried post is stored once), pair, annotator,
              choice, time, undone_at (undo keeps the row, so a retry after undo is still recognised)

Who gets which pair: an annotator first gets back a pair they were shown and have not judged
(reloading the page shows the same pair; undo shows the undone pair again). Otherwise the
lowest-numbered pair they have not seen that still needs an annotator: a shared pair needs two,
any other pair one; a pair counts as taken while another annotator holds it for HANDOUT_SECONDS.
When every pair has its annotators, the one with the fewest so far. So shared pairs get their
second judgement early, while the students who hold them are labelling at the same time.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rlhf_lib.feedback import CHOICES, FIELDS, gold_preference, validate
from rlhf_lib.files import write_atomic

HANDOUT_SECONDS = 600.0
MAX_NAME = 40
MAX_LABEL_ID = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    id INTEGER PRIMARY KEY, prompt TEXT NOT NULL, completion_a TEXT NOT NULL, completion_b TEXT NOT NULL,
    model TEXT NOT NULL, shared INTEGER NOT NULL, gold TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS handouts (
    annotator TEXT NOT NULL, pair_id INTEGER NOT NULL REFERENCES pairs(id), time REAL NOT NULL,
    PRIMARY KEY (annotator, pair_id));
CREATE INDEX IF NOT EXISTS handouts_by_pair ON handouts(pair_id);
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, label_id TEXT NOT NULL UNIQUE,
    pair_id INTEGER NOT NULL REFERENCES pairs(id), annotator TEXT NOT NULL, choice TEXT NOT NULL,
    time TEXT NOT NULL, undone_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_label ON labels(annotator, pair_id) WHERE undone_at IS NULL;
"""


class StoreError(ValueError):
    """A request the store refuses; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Pair:
    id: int
    prompt: str
    completion_a: str
    completion_b: str


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_name(name) -> str:
    """An annotator's name: text of 1 to MAX_NAME characters, no control characters."""
    if not isinstance(name, str):
        raise StoreError(422, f"field 'annotator' must be text, got {type(name).__name__}")
    name = name.strip()
    if not name:
        raise StoreError(422, "field 'annotator' is empty: type your name")
    if len(name) > MAX_NAME:
        raise StoreError(422, f"field 'annotator' is {len(name)} characters long; at most {MAX_NAME}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise StoreError(422, "field 'annotator' contains control characters")
    return name


def read_pair_items(path, flag: str = "--pairs") -> list[dict]:
    """The objects of a JSONL pairs file, each with the text fields prompt, completion_a and completion_b (other
    fields kept as they are; preference records qualify). A bad line raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: no file at {path}")
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{flag} {path}, line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(item, dict):
                raise ValueError(f"{flag} {path}, line {number}: expected a JSON object")
            for key in ("prompt", "completion_a", "completion_b"):
                if not isinstance(item.get(key), str):
                    raise ValueError(f"{flag} {path}, line {number}: field {key!r} must be text")
            if item["completion_a"] == item["completion_b"]:
                raise ValueError(f"{flag} {path}, line {number}: the two completions are identical")
            items.append(dict(item, line=number))
    if not items:
        raise ValueError(f"{flag} {path} holds no pairs")
    return items


def read_pairs_file(path) -> list[tuple[str, str, str]]:
    """(prompt, completion A, completion B) from a JSONL file of objects with those three text fields
    (preference records qualify; other fields are ignored). A bad line raises ValueError naming it."""
    return [(item["prompt"], item["completion_a"], item["completion_b"]) for item in read_pair_items(path)]


class Store:
    """The class's SQLite database. Safe to share between threads (one connection each)."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"--db: the folder {self.path.parent} does not exist")
        self._local = threading.local()
        self._writer = threading.Lock()  # one writer at a time in this process, woken in turn (SQLite's busy
        # handler polls with sleeps of up to 100 ms, which gave acknowledgements a long tail)
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def _write(self, work, durable: bool = True):
        """Run work(db) inside one write transaction (BEGIN IMMEDIATE ... COMMIT). durable=False skips the
        fsync at COMMIT (for handouts, which a crash may lose); the next durable commit syncs them too."""
        db = self._db()
        with self._writer:
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return result

    # ---- pairs

    def n_pairs(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM pairs").fetchone()[0]

    def seed_pairs(self, pairs, shared: float = 0.2, seed: int = 0, model: str = "course model") -> int:
        """Put the pairs in an empty store, a `shared` share of them (drawn with `seed`) marked to be seen
        by two annotators. On a store that already has pairs, check they are the same and change nothing.
        Returns the number of pairs."""
        if not 0.0 <= shared <= 1.0:
            raise ValueError(f"--shared must be between 0 and 1, got {shared}")
        pairs = list(dict.fromkeys(tuple(p) for p in pairs))  # a pair given twice is one pair
        for p, a, b in pairs:
            validate(dict(prompt=p, completion_a=a, completion_b=b, choice="a", annotator="-", time="-", model=model))
        n_shared = round(shared * len(pairs))
        shared_ids = set(random.Random(seed).sample(range(1, len(pairs) + 1), n_shared))
        golds = [gold_preference(p, a, b) for p, a, b in pairs]

        def work(db):
            existing = db.execute("SELECT prompt, completion_a, completion_b FROM pairs ORDER BY id").fetchall()
            if existing:
                if [tuple(r) for r in existing] != pairs:
                    raise ValueError(f"{self.path} already holds {len(existing)} other pairs; use a new --db "
                                     "for new pairs (the labels there belong to those pairs)")
                return len(existing)
            db.executemany("INSERT INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(i, p, a, b, model, int(i in shared_ids), gold)
                            for i, ((p, a, b), gold) in enumerate(zip(pairs, golds), 1)])
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [("seed", str(seed)), ("shared", str(shared)), ("created", now_iso())])
            return len(pairs)

        return self._write(work)

    def get_meta(self, key: str, default=None):
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value)))

    def _pair(self, db, pair_id: int) -> Pair:
        row = db.execute("SELECT id, prompt, completion_a, completion_b FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if row is None:
            raise StoreError(404, f"unknown pair_id {pair_id}: the pairs are numbered 1 to {self.n_pairs()}")
        return Pair(*row)

    # ---- annotators

    def next_pair(self, annotator: str) -> Pair | None:
        """The pair to show `annotator` now (None when they have seen every pair); see the module doc."""
        annotator = check_name(annotator)

        def work(db):
            held = db.execute(
                "SELECT h.pair_id FROM handouts h WHERE h.annotator = ? AND NOT EXISTS (SELECT 1 FROM labels l "
                "WHERE l.annotator = h.annotator AND l.pair_id = h.pair_id AND l.undone_at IS NULL) "
                "ORDER BY h.rowid DESC LIMIT 1", (annotator,)).fetchone()
            if held is not None:
                return self._pair(db, held[0])
            now = time.time()
            row = db.execute(
                "WITH holders AS (SELECT annotator, pair_id FROM labels WHERE undone_at IS NULL "
                "                 UNION SELECT annotator, pair_id FROM handouts WHERE time > ?), "
                "     cover AS (SELECT p.id, p.shared, COUNT(h.annotator) AS n FROM pairs p "
                "               LEFT JOIN holders h ON h.pair_id = p.id GROUP BY p.id) "
                "SELECT id FROM cover WHERE id NOT IN (SELECT pair_id FROM handouts WHERE annotator = ?) "
                "ORDER BY n >= 1 + shared, CASE WHEN n >= 1 + shared THEN n ELSE 0 END, id LIMIT 1",
                (now - HANDOUT_SECONDS, annotator)).fetchone()
            if row is None:
                return None
            db.execute("INSERT INTO handouts VALUES (?, ?, ?)", (annotator, row[0], now))
            return self._pair(db, row[0])

        return self._write(work, durable=False)

    def add_label(self, pair_id: int, annotator: str, choice: str, label_id: str) -> dict:
        """Store one judgement, committed before returning. A label_id seen before returns that label
        (with duplicate=True) if it is the same judgement, and is refused (409) if it is another."""
        annotator = check_name(annotator)
        if choice not in CHOICES:
            raise StoreError(422, f"field 'choice' must be one of {', '.join(CHOICES)}; got {choice!r}")

        def work(db):
            old = db.execute("SELECT pair_id, annotator, choice, undone_at FROM labels WHERE label_id = ?",
                             (label_id,)).fetchone()
            if old is not None:
                if tuple(old[:3]) != (pair_id, annotator, choice):
                    raise StoreError(409, f"label_id {label_id!r} was already used for another judgement")
                return dict(label_id=label_id, pair_id=pair_id, duplicate=True, undone=old[3] is not None)
            self._pair(db, pair_id)
            live = db.execute("SELECT choice FROM labels WHERE annotator = ? AND pair_id = ? AND undone_at IS NULL",
                              (annotator, pair_id)).fetchone()
            if live is not None:
                raise StoreError(409, f"{annotator!r} already judged pair {pair_id} ({live[0]!r}); undo it first")
            db.execute("INSERT INTO labels (label_id, pair_id, annotator, choice, time) VALUES (?, ?, ?, ?, ?)",
                       (label_id, pair_id, annotator, choice, now_iso()))
            db.execute("INSERT OR IGNORE INTO handouts VALUES (?, ?, ?)", (annotator, pair_id, time.time()))
            return dict(label_id=label_id, pair_id=pair_id, duplicate=False, undone=False)

        return self._write(work)

    def undo(self, annotator: str, label_id: str | None = None) -> dict:
        """Withdraw the annotator's last live label (or the one named), and hand its pair out to them again.
        Undoing a label already undone changes nothing and says so."""
        annotator = check_name(annotator)

        def work(db):
            if label_id is None:
                row = db.execute("SELECT label_id, pair_id, undone_at FROM labels WHERE annotator = ? AND "
                                 "undone_at IS NULL ORDER BY seq DESC LIMIT 1", (annotator,)).fetchone()
                if row is None:
                    raise StoreError(404, f"{annotator!r} has no label to undo")
            else:
                row = db.execute("SELECT label_id, pair_id, undone_at FROM labels WHERE annotator = ? AND "
                                 "label_id = ?", (annotator, label_id)).fetchone()
                if row is None:
                    raise StoreError(404, f"{annotator!r} has no label with label_id {label_id!r}")
            if row[2] is None:
                db.execute("UPDATE labels SET undone_at = ? WHERE label_id = ?", (now_iso(), row[0]))
                # hand the pair out again, newest, so that it is shown next
                db.execute("DELETE FROM handouts WHERE annotator = ? AND pair_id = ?", (annotator, row[1]))
                db.execute("INSERT INTO handouts VALUES (?, ?, ?)", (annotator, row[1], time.time()))
            return dict(label_id=row[0], pair_id=row[1], already_undone=row[2] is not None)

        return self._write(work)

    def n_labels(self, annotator: str | None = None) -> int:
        if annotator is None:
            return self._db().execute("SELECT COUNT(*) FROM labels WHERE undone_at IS NULL").fetchone()[0]
        return self._db().execute("SELECT COUNT(*) FROM labels WHERE undone_at IS NULL AND annotator = ?",
                                  (annotator,)).fetchone()[0]

    # ---- reading it all (the teacher's side)

    def labels(self) -> list[dict]:
        """Every live label with its pair, oldest first (the fields of the export, plus pair_id, label_id, gold)."""
        rows = self._db().execute(
            "SELECT p.prompt, p.completion_a, p.completion_b, l.choice, l.annotator, l.time, p.model, "
            "l.pair_id, l.label_id, p.gold, p.shared FROM labels l JOIN pairs p ON p.id = l.pair_id "
            "WHERE l.undone_at IS NULL ORDER BY l.seq").fetchall()
        keys = FIELDS + ("pair_id", "label_id", "gold", "shared")
        return [dict(zip(keys, row)) for row in rows]

    def export_lines(self) -> list[str]:
        """The live labels as JSON lines of `rlhf_lib.feedback.PreferenceRecord` fields."""
        return [json.dumps(validate({k: r[k] for k in FIELDS}), ensure_ascii=False) for r in self.labels()]

    def export(self, path) -> int:
        """Write the export to a new JSONL file; returns the number of records."""
        path = Path(path)
        if path.exists():
            raise ValueError(f"{path} already exists; labels are never overwritten")
        lines = self.export_lines()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "".join(line + "\n" for line in lines))
        return len(lines)
