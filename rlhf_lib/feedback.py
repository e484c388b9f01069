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

Each judgement is a `PreferenceRecord` (a rating a `RatingRecord`), kept one JSON line each in a file that an
interrupted session cannot corrupt: rlhf_lib/records.py (`append_record`, `read_records`, ...; the names are
importable from here too).

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
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rlhf_lib.evaluate import gold_sentiment, gold_taste
from rlhf_lib.records import (  # noqa: F401  (the records and their file, importable from here as before)
    CHOICES,
    FIELDS,
    RATING_FIELDS,
    RATINGS,
    PreferenceRecord,
    RatingRecord,
    TornTailError,
    append_record,
    is_rating,
    new_id,
    parse_records,
    read_records,
    remove_record,
    repair_torn_tail,
    save_records,
    undo_last,
    validate,
    write_records,
)
from rlhf_lib.runtime import check_positive


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
