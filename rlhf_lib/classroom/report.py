"""The teacher's figures from the class's labels: who labelled how much and when, how students agree
with each other on the pairs they share, and how each agrees with the gold (the noise-free reading) taste."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime
from itertools import combinations

from rlhf_lib.classroom.agreement import cohens_kappa, krippendorff_alpha
from rlhf_lib.feedback import CHOICES

JUDGED = ("a", "b", "tie")  # a skip is no judgement: it takes no part in agreement


def _minutes(times: list[str], start: datetime) -> list[int]:
    return [int((datetime.fromisoformat(t) - start).total_seconds() // 60) for t in times]


def class_report(labels: list[dict], min_shared: int = 2) -> dict:
    """Figures from `Store.labels()`: students (labels, choices, gold agreement, labels per minute),
    pairs of students who judged at least `min_shared` pairs in common (raw agreement, Cohen's kappa),
    and Krippendorff's alpha over every pair judged by two or more students."""
    by_student: dict[str, list[dict]] = defaultdict(list)
    for r in labels:
        by_student[r["annotator"]].append(r)
    start = min((datetime.fromisoformat(r["time"]) for r in labels), default=None)
    span = max(_minutes([r["time"] for r in labels], start), default=-1) + 1 if labels else 0
    students = []
    for name, rows in sorted(by_student.items(), key=lambda kv: kv[0].lower()):
        choices = Counter(r["choice"] for r in rows)
        decided = [r["choice"] == r["gold"] for r in rows if r["choice"] in ("a", "b") and r["gold"] != "tie"]
        per_minute = [0] * span
        for m in _minutes([r["time"] for r in rows], start):
            per_minute[m] += 1
        students.append(dict(name=name, labels=len(rows), choices={c: choices[c] for c in CHOICES},
                             gold_agree=sum(decided), gold_compared=len(decided),
                             gold_agreement=sum(decided) / len(decided) if decided else math.nan,
                             first=rows[0]["time"], last=rows[-1]["time"], per_minute=per_minute))
    judged = {name: {r["pair_id"]: r["choice"] for r in rows if r["choice"] in JUDGED}
              for name, rows in by_student.items()}
    pairs_of_students = []
    for s, t in combinations(sorted(judged, key=str.lower), 2):
        common = sorted(judged[s].keys() & judged[t].keys())
        if len(common) < min_shared:
            continue
        x, y = [judged[s][i] for i in common], [judged[t][i] for i in common]
        pairs_of_students.append(dict(a=s, b=t, shared=len(common),
                                      agreement=sum(u == v for u, v in zip(x, y)) / len(common),
                                      kappa=cohens_kappa(x, y)))
    units: dict[int, list[str]] = defaultdict(list)
    for choices in judged.values():
        for pair_id, choice in choices.items():
            units[pair_id].append(choice)
    multi = [v for v in units.values() if len(v) >= 2]
    return dict(n_labels=len(labels), n_students=len(students), students=students,
                pairs_of_students=pairs_of_students, alpha=krippendorff_alpha(multi), alpha_units=len(multi),
                start=start.isoformat() if start else None, minutes=span)
