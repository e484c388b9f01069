"""Human feedback: annotators and the preference records they produce.

An annotator sees a prompt and two completions, A and B, and says which is better
("a", "b"), that they are equally good ("tie"), or passes ("skip"). Three kinds:

- `SimulatedAnnotator`: a person whose taste is VADER's sentiment score s(text), who
  prefers A with the Bradley-Terry probability  P(A > B) = sigmoid((s_A - s_B) / temperature).
  A higher temperature means noisier labels and more disagreement between annotators.
- `gold_preference`: the same taste with no noise, for evaluation only.
- `ScoreJudge`: any scoring function (a reward model, a classifier) used as an "AI judge".

Each judgement is one JSON line, appended and flushed to disk the moment it is made
(`append_record`), so an interrupted session loses nothing it already wrote.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.runtime import check_positive

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

    def __post_init__(self):
        validate(asdict(self))


def validate(record: dict, where: str = "record") -> dict:
    """Raise ValueError with a clear message unless `record` is a well-formed preference record."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a preference record is a JSON object, got {type(record).__name__}")
    missing = [k for k in FIELDS if k not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    for k in FIELDS:
        if not isinstance(record[k], str):
            raise ValueError(f"{where}: field {k!r} must be text, got {record[k]!r}")
    if record["choice"] not in CHOICES:
        raise ValueError(f"{where}: choice must be one of {CHOICES}, got {record['choice']!r}")
    if record["completion_a"] == record["completion_b"]:
        raise ValueError(f"{where}: the two completions are identical, so there is nothing to prefer")
    return record


# ---- annotators


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def gold_preference(prompt: str, a: str, b: str) -> str:
    """The noise-free taste: the completion with the higher VADER score ("tie" when equal)."""
    s_a, s_b = gold_sentiment([prompt + a, prompt + b])
    return "a" if s_a > s_b else "b" if s_b > s_a else "tie"


class SimulatedAnnotator:
    """A person who likes positive reviews, with Bradley-Terry noise of the given temperature."""

    def __init__(self, temperature: float = 0.1, seed: int = 0, name: str | None = None):
        self.temperature = check_positive("temperature", temperature)
        self.rng = random.Random(seed)
        self.name = name or f"sim-{seed}"

    def prob_a(self, prompt: str, a: str, b: str) -> float:
        """P(this annotator prefers A)."""
        s_a, s_b = gold_sentiment([prompt + a, prompt + b])
        return sigmoid((s_a - s_b) / self.temperature)

    def compare(self, prompt: str, a: str, b: str) -> str:
        s_a, s_b = gold_sentiment([prompt + a, prompt + b])
        if s_a == s_b:  # the same score: nothing to tell them apart
            return "tie"
        return "a" if self.rng.random() < sigmoid((s_a - s_b) / self.temperature) else "b"

    def rate(self, prompt: str, completion: str) -> int:
        """A 1-5 rating: the score mapped onto five bands, blurred by the same noise."""
        s = float(gold_sentiment(prompt + completion)[0]) + self.rng.gauss(0.0, self.temperature)
        return int(min(5, max(1, math.floor((s + 1.0) / 0.4) + 1)))


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


# ---- the JSONL file


def append_record(path, record: PreferenceRecord | dict) -> int:
    """Append one record as a JSON line, flushed and fsynced before returning. Returns the byte
    offset where the line starts (for undo)."""
    data = validate(asdict(record) if isinstance(record, PreferenceRecord) else dict(record))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        offset = f.tell()
        f.write((json.dumps(data, ensure_ascii=False) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    return offset


def write_records(path, records) -> Path:
    """Append many records at once (one fsync at the end); the format is the widget's."""
    lines = [json.dumps(validate(asdict(r) if isinstance(r, PreferenceRecord) else dict(r)), ensure_ascii=False)
             for r in records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    return path


def read_records(path, allow_empty: bool = False) -> list[dict]:
    """Every record of a JSONL preference file, validated. Never writes to the file.
    A malformed line raises ValueError naming the file and the line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no preference file at {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg}); "
                                 "fix or remove that line, nothing was changed") from None
            records.append(validate(record, where=f"{path}, line {number}"))
    if not records and not allow_empty:
        raise ValueError(f"{path} holds no preference records")
    return records


def undo_last(path, offset: int) -> None:
    """Remove the last line (which starts at `offset`) and fsync."""
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())


def load_preferences(path, drop=("skip",)):
    """The records as a `datasets.Dataset` (skips dropped by default)."""
    import datasets

    records = [r for r in read_records(path) if r["choice"] not in drop]
    if not records:
        raise ValueError(f"{path} holds no usable records (all were {drop})")
    return datasets.Dataset.from_list(records)


def to_pairs(dataset) -> list[dict]:
    """chosen/rejected pairs from "a"/"b" records (ties carry no direction and are left out)."""
    out = []
    for r in dataset:
        if r["choice"] in ("a", "b"):
            chosen, rejected = (r["completion_a"], r["completion_b"]) if r["choice"] == "a" else (r["completion_b"], r["completion_a"])
            out.append({"prompt": r["prompt"], "chosen": chosen, "rejected": rejected})
    return out


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
