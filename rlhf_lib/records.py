"""Preference and rating records, and the JSONL file that keeps them (the store every labeller writes to).

Each judgement is one JSON line, appended and fsynced to disk the moment it is made
(`append_record`), so an interrupted session loses nothing it already wrote. A line holds the
fields of `PreferenceRecord`:

    {"prompt": ..., "completion_a": ..., "completion_b": ..., "choice": "a" | "b" | "tie" | "skip",
     "annotator": ..., "model": ..., "time": "2026-11-23T20:00:00+00:00", "id": "3f2a..."}

`id` (32 hex digits) is optional: files written before it existed load unchanged, and a record
written without one is given one. Undo removes the record with a given id (`remove_record`) and
nothing else. Writers lock the file (`flock`), so several labelers may share one file. A last
line cut off by a crash is reported (`TornTailError`) and repaired by `repair_torn_tail`, which
moves the cut-off bytes to `<file>.torn`; a last record that only lacks its end of line is read
as usual and ended before the next append. Files are UTF-8; a byte-order mark is accepted.

Ratings. In rating mode an annotator scores one completion from 1 (worst) to 5 (best). A rating is a
line of the same file with `completion` and `rating` in place of `completion_a`, `completion_b` and
`choice` (`RatingRecord`):

    {"prompt": ..., "completion": ..., "rating": 1 | 2 | 3 | 4 | 5, "annotator": ..., "model": ...,
     "time": ..., "id": ...}

Files without ratings load as before; `is_rating(record)` tells the two kinds apart. Who makes the records
(the annotators) and how they become the pairs the trainers take (`to_pairs`) is rlhf_lib/feedback.py.
"""

from __future__ import annotations

import codecs
import json
import os
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rlhf_lib.files import fsync_folder, write_atomic

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a single writer is still safe
    fcntl = None

CHOICES = ("a", "b", "tie", "skip")
FIELDS = ("prompt", "completion_a", "completion_b", "choice", "annotator", "time", "model")


@dataclass
class PreferenceRecord:
    prompt: str
    completion_a: str
    completion_b: str
    choice: str
    """"a", "b", "tie" or "skip\""""
    annotator: str
    """who judged: "sim-0", "you", "judge:reward-model" ..."""
    model: str = "course model"
    """which model wrote the completions"""
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    """when, in UTC"""
    id: str = field(default_factory=lambda: new_id())
    """a unique name for the record, so that an undo removes exactly this one (older files have none)"""

    def __post_init__(self):
        validate(asdict(self))


RATINGS = (1, 2, 3, 4, 5)
RATING_FIELDS = ("prompt", "completion", "annotator", "time", "model")


@dataclass
class RatingRecord:
    prompt: str
    completion: str
    rating: int
    """1 (worst) to 5 (best)"""
    annotator: str
    """who rated"""
    model: str = "course model"
    """which model wrote the completion"""
    time: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    """when, in UTC"""
    id: str = field(default_factory=lambda: new_id())
    """a unique name for the record, so that an undo removes exactly this one"""

    def __post_init__(self):
        validate(asdict(self))


def is_rating(record: dict) -> bool:
    """True for a rating record (it has a "rating" field), False for a preference record."""
    return "rating" in record


def _validate_rating(record: dict, where: str) -> dict:
    missing = [k for k in RATING_FIELDS if k not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing} of a rating record")
    for k in RATING_FIELDS:
        if not isinstance(record[k], str):
            raise ValueError(f"{where}: field {k!r} must be text, got {record[k]!r}")
    rating = record["rating"]
    if isinstance(rating, bool) or rating not in RATINGS:
        raise ValueError(f"{where}: field 'rating' must be one of {RATINGS}, got {rating!r}")
    if "id" in record and (not isinstance(record["id"], str) or not record["id"]):
        raise ValueError(f"{where}: field 'id' must be non-empty text, got {record['id']!r}")
    return record


def validate(record: dict, where: str = "record") -> dict:
    """Raise ValueError with a clear message unless `record` is a well-formed preference or rating record."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a preference record is a JSON object, got {type(record).__name__}")
    if is_rating(record):
        return _validate_rating(record, where)
    missing = [k for k in FIELDS if k not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    for k in FIELDS:
        if not isinstance(record[k], str):
            raise ValueError(f"{where}: field {k!r} must be text, got {record[k]!r}")
    if record["choice"] not in CHOICES:
        raise ValueError(f"{where}: choice must be one of {CHOICES}, got {record['choice']!r}")
    if "id" in record and (not isinstance(record["id"], str) or not record["id"]):
        raise ValueError(f"{where}: field 'id' must be non-empty text, got {record['id']!r}")
    if record["completion_a"] == record["completion_b"]:
        raise ValueError(f"{where}: the two completions are identical, so there is nothing to prefer")
    return record


# ---- annotators


# ---- the JSONL file
#
# Every change happens under an exclusive `flock` of the file itself, so several writers (two tabs, two
# learners on a shared folder) never interleave. An append is one write of whole lines, fsynced before
# returning. Removing a record rewrites the whole file atomically (`rlhf_lib.files.write_atomic`: a temporary
# neighbour renamed over it); a writer that was waiting on the old file's lock notices the rename and locks
# the new one.


def new_id() -> str:
    return uuid.uuid4().hex


class TornTailError(ValueError):
    """The file's last line is cut off: a write was interrupted. `repair_torn_tail(path)` keeps the good records."""


@contextmanager
def _locked(path: Path, exclusive: bool = True):
    """The open file (append mode when exclusive), locked; retries if the file was replaced meanwhile."""
    if exclusive:
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+b" if exclusive else "rb")
        try:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if fcntl is None or os.fstat(f.fileno()).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:  # renamed away between open and stat: try again
            pass
        except BaseException:
            f.close()
            raise
        f.close()
    try:
        yield f
    finally:
        f.close()  # releases the lock


def _as_line(record) -> bytes:
    data = validate(asdict(record) if isinstance(record, (PreferenceRecord, RatingRecord)) else dict(record))
    data.setdefault("id", new_id())
    return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")


def _tail_is_record(tail: bytes) -> bool:
    """True when the bytes after the last end of line are a whole, valid record (only the newline is missing)."""
    try:
        validate(json.loads(tail.decode("utf-8")))
        return True
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
        return False


def _append_lines(f, path: Path, lines: list[bytes]) -> None:
    f.seek(0, os.SEEK_END)
    prefix = b""
    if f.tell():
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.seek(0)
            data = f.read()
            tail = data[data.rfind(b"\n") + 1 :]
            if not tail.strip() or _tail_is_record(tail):
                prefix = b"\n"  # a last record without its end of line: end it, then append
            else:
                raise _torn(path, data)
    f.write(prefix + b"".join(lines))  # append mode: always at the end
    f.flush()
    os.fsync(f.fileno())


def append_record(path, record: PreferenceRecord | RatingRecord | dict) -> str:
    """Append one record as a JSON line, flushed and fsynced before returning. Returns its id (a record
    without one gets one), which `remove_record` takes to remove exactly this record."""
    line = _as_line(record)
    path = Path(path)
    _refuse_folder(path)
    with _locked(path) as f:
        _append_lines(f, path, [line])
    return json.loads(line)["id"]


def write_records(path, records) -> Path:
    """Append many records at once (one fsync at the end); the format is the widget's."""
    lines = [_as_line(r) for r in records]
    path = Path(path)
    _refuse_folder(path)
    with _locked(path) as f:
        _append_lines(f, path, lines)
    return path


def save_records(path, records) -> Path:
    """Write the records as the whole content of the file, atomically (`rlhf_lib.files.write_atomic`): after a
    crash the file holds all of them or what it held before. For a file made in one go; the widget appends."""
    lines = [_as_line(r) for r in records]
    path = Path(path)
    _refuse_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, b"".join(lines))


def remove_record(path, record_id: str) -> bool:
    """Remove the record with this id (and nothing else) from the file, atomically (the whole file is
    rewritten with `rlhf_lib.files.write_atomic`). Returns False if no record has that id."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no preference file at {path}")
    with _locked(path) as f:
        f.seek(0)
        data = f.read()
        lines = data.split(b"\n")
        needle = record_id.encode()
        keep, removed = [], False
        for line in lines:
            if not removed and needle in line:
                try:
                    if json.loads(line.decode("utf-8")).get("id") == record_id:
                        removed = True
                        continue
                except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                    pass
            keep.append(line)
        if not removed:
            return False
        write_atomic(path, b"\n".join(keep))  # under the old file's lock: waiting writers retry on the new one
    return True


def undo_last(path, record_id: str) -> bool:
    """The Labeler's undo: `remove_record` (kept under this name for older notebooks)."""
    return remove_record(path, record_id)


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; a preference file is one JSONL file, "
                                f"for example {path / 'my_labels.jsonl'}")


def _torn(path: Path, data: bytes) -> TornTailError:
    cut = data.rfind(b"\n") + 1
    number = data[:cut].count(b"\n") + 1
    return TornTailError(
        f"{path}, line {number}: the last line is cut off ({len(data) - cut} bytes without an end of line), "
        "as when a write is interrupted. Nothing was changed. To keep every complete record and set the cut-off "
        f"bytes aside in {path.name}.torn, run  rlhf_lib.feedback.repair_torn_tail({str(path)!r})  "
        "(the Labeler does this itself when it opens the file).")


def repair_torn_tail(path) -> Path | None:
    """If the last line of the file is cut off (an interrupted write), move those bytes to `<file>.torn`
    (appended, so nothing is ever lost) and cut the file back to its last complete record. Returns the side
    file, or None when there was nothing to repair. Malformed lines elsewhere are left for a person to fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no preference file at {path}")
    with _locked(path) as f:
        f.seek(0)
        data = f.read()
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if not tail.strip() or _tail_is_record(tail):
            return None
        side = path.with_name(path.name + ".torn")
        with open(side, "ab") as s:
            s.write(tail + b"\n")
            s.flush()
            os.fsync(s.fileno())
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    fsync_folder(path.parent)
    kept = data[:cut].count(b"\n")
    warnings.warn(f"{path}: the last line was cut off by an interrupted write; its {len(tail)} bytes were "
                  f"moved to {side}; the {kept} lines before it are kept", stacklevel=2)
    return side


def read_records(path, allow_empty: bool = False) -> list[dict]:
    """Every record of a JSONL preference file, validated. Never writes to the file.
    A malformed line raises ValueError naming the file and the line number; a cut-off last line raises
    `TornTailError` (a ValueError) that says how to repair it. UTF-8, with or without a byte-order mark."""
    path = Path(path)
    _refuse_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"no preference file at {path}")
    with _locked(path, exclusive=False) as f:
        data = f.read()
    return parse_records(data, path, allow_empty)


def parse_records(data: bytes, where="data", allow_empty: bool = False) -> list[dict]:
    """The records of a preference file's bytes (see `read_records`)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines = data.split(b"\n")
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        last = number == len(lines)  # after the final end of line: maybe a cut-off write
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            if last:
                raise _torn(Path(str(where)), data) from None
            raise ValueError(f"{where}, line {number}: not UTF-8 text (byte {raw[err.start]:#04x} at column "
                             f"{err.start + 1}); a preference file is UTF-8 JSON, one record a line. "
                             "Fix or remove that line; nothing was changed") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            if last:
                raise _torn(Path(str(where)), data) from None
            raise ValueError(f"{where}, line {number}: not valid JSON ({err.msg}); "
                             "fix or remove that line, nothing was changed") from None
        records.append(validate(record, where=f"{where}, line {number}"))
    if not records and not allow_empty:
        raise ValueError(f"{where} holds no preference records")
    return records
