"""Human feedback: annotators and the preference records they produce.

An annotator sees a prompt and two completions, A and B, and says which is better
("a", "b"), that they are equally good ("tie"), or passes ("skip"). Three kinds:

- `TasteAnnotator`: a simulated person with a taste, any function s(text) -> float, who prefers A
  with the Bradley-Terry probability  P(A > B) = sigmoid((s_A - s_B) / temperature).
  A higher temperature means noisier labels and more disagreement between annotators.
  `SimulatedAnnotator` is the course's, a person who reads: its taste (`reading`) is VADER's sentiment
  score plus 3 for a grammatical review, so any fluent review beats any broken one, and between two of a
  kind the more positive wins. `VaderAnnotator` judges by VADER alone (`vader`): the blind labeller who
  prefers "great great wonderful" to a fluent review.
- `gold_preference`: the reading taste with no noise, for evaluation only.
- `ScoreJudge`: any scoring function (a reward model, a classifier) used as an "AI judge".

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

Files without ratings load as before; `is_rating(record)` tells the two kinds apart. `load_preferences`
converts ratings instead of ignoring them, because two ratings are a comparison the annotator made
implicitly: for every two ratings by the same annotator of different completions of the same prompt,
the higher-rated completion is preferred (`ratings_to_preferences`). Equal ratings are dropped, as a tie
tells a reward model nothing about direction; ratings by different annotators are never paired, since
one person's 4 need not mean another's 4. `to_pairs` then sees only "a"/"b"/"tie" records, and turns the
decided ones into the {"prompt", "chosen", "rejected"} pairs the trainers take.
"""

from __future__ import annotations

import bisect
import codecs
import json
import math
import os
import random
import uuid
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rlhf_lib.evaluate import gold_sentiment, gold_taste
from rlhf_lib.files import fsync_folder, write_atomic
from rlhf_lib.runtime import check_positive

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


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def gold_preference(prompt: str, a: str, b: str) -> str:
    """The noise-free reading taste (`reading`): the completion whose prompt + completion scores higher, so a
    grammatical review beats a broken one, then the higher VADER score wins ("tie" when equal)."""
    s_a, s_b = gold_taste([prompt + a, prompt + b])
    return "a" if s_a > s_b else "b" if s_b > s_a else "tie"


def vader(text: str) -> float:
    """A taste that does not read: VADER's compound score of the text, -1 (negative) to 1 (positive)."""
    return float(gold_sentiment(text)[0])


def reading(text: str) -> float:
    """The course's taste, a person who reads: VADER's compound score plus 3 when the text is a grammatical
    review (`rlhf_lib.evaluate.gold_taste`), from -1 to 4."""
    return float(gold_taste(text)[0])


VADER_BANDS = (-0.6, -0.2, 0.2, 0.6)
"""where the ratings 2, 3, 4 and 5 start on VADER's scale: five equal bands of [-1, 1]"""
READING_BANDS = (0.0, 1.5, 2.0 + 2 / 3, 2.0 + 4 / 3)
"""ratings on the reading scale: a broken review gets 1 (negative) or 2, a grammatical one 3, 4 or 5 by thirds of
VADER's range"""


class TasteAnnotator:
    """A simulated person: a taste (a function text -> float, higher = preferred) with Bradley-Terry noise.

    Asked which of two completions is better, it prefers A with P(A > B) = sigmoid((s_A - s_B) / temperature),
    s = taste(prompt + completion), and says "tie" when the two scores are equal (no random draw is made then).
    Asked for a rating, it adds Gaussian noise of standard deviation `temperature` to the score and reads off
    one of five bands: rating 1 below `bands[0]`, 2 from there to `bands[1]`, ..., 5 from `bands[3]` up (the
    default, `VADER_BANDS`, cuts VADER's [-1, 1] into five equal bands). Every judgement draws from one
    `random.Random(seed)`, so the same seed gives the same choices, call for call. Each text is scored once
    (`prime`, `scores`): a batch of 64 whole reviews is compared 2,016 times."""

    def __init__(self, taste: Callable[[str], float], temperature: float = 0.1, seed: int = 0,
                 name: str | None = None, bands: tuple[float, float, float, float] = VADER_BANDS):
        if not callable(taste):
            raise TypeError(f"taste must be a function text -> float, got {type(taste).__name__}")
        if len(bands) != 4 or list(bands) != sorted(bands):
            raise ValueError(f"bands must be four increasing scores where ratings 2-5 start, got {bands!r}")
        self.bands = tuple(float(b) for b in bands)
        self.taste, self.temperature = taste, check_positive("temperature", temperature)
        self.rng = random.Random(seed)
        self.name = name or f"{getattr(taste, '__name__', 'taste')}-{seed}"
        self.scores: dict[str, float] = {}

    def prime(self, texts) -> None:
        """Score the texts not scored yet, so that later judgements of them only look their scores up."""
        for text in texts:
            if text not in self.scores:
                s = float(self.taste(text))
                if not math.isfinite(s):
                    raise ValueError(f"the taste returned {s!r} for {text!r}; it must return finite numbers")
                self.scores[text] = s

    def score(self, text: str) -> float:
        """The taste's score of one text (computed once)."""
        self.prime([text])
        return self.scores[text]

    def prob_a(self, prompt: str, a: str, b: str) -> float:
        """P(this annotator prefers A)."""
        return sigmoid((self.score(prompt + a) - self.score(prompt + b)) / self.temperature)

    def compare(self, prompt: str, a: str, b: str) -> str:
        """"a" or "b", drawn with probability `prob_a`; "tie" when the two scores are equal."""
        if self.score(prompt + a) == self.score(prompt + b):  # nothing to tell them apart
            return "tie"
        return "a" if self.rng.random() < self.prob_a(prompt, a, b) else "b"

    def rate(self, prompt: str, completion: str) -> int:
        """A 1-5 rating: the score blurred by the noise, then 1 + the number of `bands` at or below it."""
        s = self.score(prompt + completion) + self.rng.gauss(0.0, self.temperature)
        return 1 + bisect.bisect_right(self.bands, s)


class SimulatedAnnotator(TasteAnnotator):
    """The course's simulated person, who reads: a `TasteAnnotator` with the `reading` taste (a grammatical
    review first, then the more positive one) and ratings on `READING_BANDS`."""

    def __init__(self, temperature: float = 0.1, seed: int = 0, name: str | None = None):
        super().__init__(reading, temperature, seed, name or f"sim-{seed}", bands=READING_BANDS)


class VaderAnnotator(TasteAnnotator):
    """A simulated person who does not read: a `TasteAnnotator` with VADER's score alone (`vader`), who prefers
    "great great wonderful" to a fluent review. The course's simulated person before it learned to read."""

    def __init__(self, temperature: float = 0.1, seed: int = 0, name: str | None = None):
        super().__init__(vader, temperature, seed, name or f"vader-{seed}")


class ScoreJudge:
    """An AI judge: prefers the completion that `score(texts) -> list of floats` rates higher."""

    def __init__(self, score: Callable[[list[str]], list[float]], name: str = "judge", margin: float = 0.0):
        self.score, self.name, self.margin = score, name, margin

    def compare(self, prompt: str, a: str, b: str) -> str:
        s_a, s_b = (float(x) for x in self.score([prompt + a, prompt + b]))
        if abs(s_a - s_b) <= self.margin:
            return "tie"
        return "a" if s_a > s_b else "b"


def label_pairs(annotator, pairs, model: str = "course model") -> list[PreferenceRecord]:
    """Records for (prompt, a, b) pairs judged by `annotator` (anything with .compare and .name)."""
    return [PreferenceRecord(p, a, b, annotator.compare(p, a, b), annotator.name, model) for p, a, b in pairs]


def label_into(path, annotator, pairs, model: str = "course model") -> int:
    """Judge (prompt, a, b) pairs with `annotator` and append each record to the JSONL file at `path` the
    moment it is made (`append_record`: flushed and fsynced), so an interrupted run loses at most the pair
    being judged. Pairs the file already holds from this annotator (same prompt and completions) are
    skipped, so running it again resumes. Returns how many records were added."""
    path = Path(path)
    done = {(r["prompt"], r["completion_a"], r["completion_b"])
            for r in (read_records(path, allow_empty=True) if path.exists() else [])
            if r.get("annotator") == annotator.name and "completion_a" in r}
    added = 0
    for prompt, a, b in pairs:
        if (prompt, a, b) in done:
            continue
        append_record(path, PreferenceRecord(prompt, a, b, annotator.compare(prompt, a, b), annotator.name, model))
        done.add((prompt, a, b))
        added += 1
    return added


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


def ratings_to_preferences(records) -> list[dict]:
    """Preference records implied by the rating records among `records` (others are passed over): for
    every two ratings by one annotator of different completions of one prompt, "a" or "b" for the
    higher-rated, in the order the ratings were made (A is the earlier). Equal ratings are dropped;
    when a completion was rated twice, the later rating counts."""
    latest: dict[tuple, dict] = {}
    for r in records:
        if is_rating(r):
            key = (r["annotator"], r["prompt"], r["completion"])
            latest.pop(key, None)  # re-insert: the later rating takes the later place
            latest[key] = r
    groups: dict[tuple, list[dict]] = {}
    for (annotator, prompt, _), r in latest.items():
        groups.setdefault((annotator, prompt), []).append(r)
    out = []
    for rated in groups.values():
        for i, x in enumerate(rated):
            for y in rated[i + 1 :]:
                choice = order_from_ratings(x["rating"], y["rating"])
                if choice == "tie":
                    continue
                out.append(dict(prompt=x["prompt"], completion_a=x["completion"], completion_b=y["completion"],
                                choice=choice, annotator=x["annotator"], model=x["model"],
                                time=max(x["time"], y["time"]), id=f"{x.get('id', '')}+{y.get('id', '')}"))
    return out


def with_implied_preferences(records) -> list[dict]:
    """The preference records among `records`, then those their ratings imply (`ratings_to_preferences`)."""
    return [r for r in records if not is_rating(r)] + ratings_to_preferences(records)


def load_preferences(path, drop=("skip",)):
    """The records as a `datasets.Dataset` (skips dropped by default); ratings become the preferences
    they imply (`ratings_to_preferences`)."""
    import datasets

    records = [r for r in with_implied_preferences(read_records(path)) if r["choice"] not in drop]
    if not records:
        raise ValueError(f"{path} holds no usable records (all were {drop})")
    return datasets.Dataset.from_list(records)


# ---- training pairs
#
# A pair travels in three shapes: a tuple (prompt, a, b) before anyone judged it, a preference record
# (prompt, completion_a, completion_b, choice, ...) once someone has, and a training pair
# {"prompt", "chosen", "rejected"}. `to_pairs` is the one place where a record becomes a training pair;
# every function that takes training pairs from outside the library passes them through it, so it takes
# records (the file's shape) as well.


def to_pairs(rows) -> list[dict]:
    """{"prompt", "chosen", "rejected"} training pairs from preference records (dicts or `PreferenceRecord`s) or
    training pairs, in a list or a `datasets.Dataset`. A record with choice "a" or "b" gives its chosen
    completion and the other; ties and skips carry no direction and are left out, and so are rating records
    (`load_preferences` has already turned them into preferences, `ratings_to_preferences` turns them). A
    training pair is kept as it is (its three fields). Anything else raises ValueError saying which row."""
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, PreferenceRecord):
            r = asdict(r)
        if not isinstance(r, dict):
            raise ValueError(f"pair {i}: a pair is a dict (prompt, chosen, rejected) or a preference record "
                             f"(prompt, completion_a, completion_b, choice), got {type(r).__name__}")
        if "choice" in r:
            if r["choice"] not in ("a", "b"):
                continue
            keys = ("completion_a", "completion_b") if r["choice"] == "a" else ("completion_b", "completion_a")
            pair = dict(prompt=r.get("prompt"), chosen=r.get(keys[0]), rejected=r.get(keys[1]))
        elif is_rating(r):
            continue
        else:
            pair = dict(prompt=r.get("prompt"), chosen=r.get("chosen"), rejected=r.get("rejected"))
        missing = [k for k, v in pair.items() if not isinstance(v, str)]
        if missing:
            raise ValueError(f"pair {i}: missing text field(s) {missing} (a pair has prompt, chosen, rejected; "
                             "a record has prompt, completion_a, completion_b, choice)")
        if pair["chosen"] == pair["rejected"]:
            raise ValueError(f"pair {i}: chosen and rejected are the same text")
        out.append(pair)
    return out


def as_pairs(pairs_or_records) -> list[dict]:
    """`to_pairs` of a JSONL preference file (a path; ratings count as the preferences they imply), of
    preference records, of training pairs, or of a `datasets.Dataset` of either; raises ValueError when
    nothing is left to train on."""
    if isinstance(pairs_or_records, (str, os.PathLike)):
        pairs_or_records = with_implied_preferences(read_records(Path(pairs_or_records)))
    rows = list(pairs_or_records)
    if not rows:
        raise ValueError("no preference pairs or records to train on")
    pairs = to_pairs(rows)
    if not pairs:
        raise ValueError("the records hold no 'a' or 'b' choice (ties and skips carry no direction)")
    return pairs


def sample_pairs(model, tokenizer, n: int, prompts=None, temperature: float = 1.0, max_new_tokens: int = 64,
                 seed: int = 0, batch_size: int = 128, stop_at: str = "sentence") -> list[tuple[str, str, str]]:
    """n (prompt, completion A, completion B) pairs: two samples of the model for the same prompt.
    By default a completion is the rest of the prompt's sentence (stop_at="sentence"; "text" for whole
    reviews). Pairs whose completions are identical are drawn again (there is nothing to compare)."""
    import torch

    from rlhf_lib.lm import sample
    from rlhf_lib.reviews import PROMPTS

    prompts = list(prompts or PROMPTS)
    gen = torch.Generator().manual_seed(seed)
    out, i = [], 0
    while len(out) < n:
        batch = [prompts[(i + k) % len(prompts)] for k in range(batch_size)]
        i += batch_size
        s = sample(model, tokenizer, batch + batch, max_new_tokens, temperature, generator=gen, stop_at=stop_at)
        for k, p in enumerate(batch):
            a, b = s.responses[k], s.responses[k + batch_size]
            if a != b and len(out) < n:
                out.append((p, a, b))
    return out


# ---- agreement between annotators


def cohens_kappa(x, y) -> float:
    """Cohen's kappa of two annotators' labels of the same items: agreement corrected for chance,
    kappa = (p_o - p_e) / (1 - p_e), with p_o the share of items labelled alike and p_e the agreement
    expected if each annotator kept their own label frequencies but labelled independently of the item.
    1 is perfect agreement, 0 is chance, below 0 is worse than chance. Labels may be any hashable values
    (ratings 1-5, choices "a"/"b")."""
    x, y = list(x), list(y)
    if len(x) != len(y):
        raise ValueError(f"the two annotators labelled {len(x)} and {len(y)} items; kappa needs the same items")
    if not x:
        raise ValueError("no items to compare")
    n = len(x)
    p_o = sum(u == v for u, v in zip(x, y)) / n
    p_e = sum((x.count(c) / n) * (y.count(c) / n) for c in set(x) | set(y))
    if p_e == 1.0:  # both gave one and the same label throughout: agreement is certain, kappa undefined
        return float("nan")
    return (p_o - p_e) / (1.0 - p_e)


def order_from_ratings(rating_a, rating_b) -> str:
    """The ranking two ratings imply: "a" if A was rated higher, "b" if B was, "tie" if equal."""
    return "a" if rating_a > rating_b else "b" if rating_b > rating_a else "tie"
