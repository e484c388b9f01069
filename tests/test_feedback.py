"""Annotators, preference records on disk, and the labeler's logic (the browser test is separate)."""

import json
import math

import numpy as np
import pytest

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.feedback import (
    PreferenceRecord, ScoreJudge, SimulatedAnnotator, append_record, gold_preference, label_pairs, load_preferences,
    read_records, to_pairs, undo_last,
)
from rlhf_lib.widgets import Labeler

PAIRS = [("The plot was", " superb.", " awful."), ("I expected", " more.", " a lovely drama, and it was great."),
         ("Overall,", " it was dull.", " it was fine."), ("The music was", " lovely.", " loud.")]


def test_simulated_annotator_follows_bradley_terry():
    prompt, a, b = "The plot was", " good.", " not good."
    s_a, s_b = gold_sentiment([prompt + a, prompt + b])
    for temperature in (0.1, 0.5, 2.0):
        ann = SimulatedAnnotator(temperature, seed=0)
        expected = 1 / (1 + math.exp(-(s_a - s_b) / temperature))
        assert ann.prob_a(prompt, a, b) == pytest.approx(expected)
        freq = np.mean([ann.compare(prompt, a, b) == "a" for _ in range(4000)])
        assert freq == pytest.approx(expected, abs=0.03)


def test_noise_makes_annotators_disagree():
    def disagreement(temperature):
        x, y = SimulatedAnnotator(temperature, seed=1), SimulatedAnnotator(temperature, seed=2)
        return np.mean([x.compare(*p) != y.compare(*p) for p in PAIRS * 200])

    assert disagreement(0.05) < disagreement(1.0)


def test_gold_preference_and_ratings():
    assert gold_preference("The plot was", " superb.", " awful.") == "a"
    assert gold_preference("The plot was", " awful.", " superb.") == "b"
    assert gold_preference("Seven", " out of ten.", " out of ten!") == "tie"
    ann = SimulatedAnnotator(0.01, seed=0)
    assert ann.rate("The plot was", " superb. I loved the music.") >= 4
    assert ann.rate("The plot was", " awful. I hated the music.") <= 2
    assert {ann.rate(*p[:2]) for p in PAIRS} <= {1, 2, 3, 4, 5}


def test_score_judge():
    judge = ScoreJudge(lambda texts: [len(t) for t in texts], name="length-judge")
    assert judge.compare("x", " aaa", " a") == "a" and judge.compare("x", " a", " a!") == "b"


def test_records_round_trip(tmp_path):
    path = tmp_path / "labels.jsonl"
    for r in label_pairs(SimulatedAnnotator(0.1, seed=0), PAIRS):
        append_record(path, r)
    records = read_records(path)
    assert len(records) == 4 and all(r["annotator"] == "sim-0" for r in records)
    ds = load_preferences(path)
    assert ds.num_rows == sum(r["choice"] != "skip" for r in records)
    pairs = to_pairs(ds)
    for p, r in zip(pairs, [r for r in records if r["choice"] in ("a", "b")]):
        assert p["chosen"] == (r["completion_a"] if r["choice"] == "a" else r["completion_b"])


def test_undo_removes_exactly_the_last_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    append_record(path, PreferenceRecord(*PAIRS[0], "a", "you"))
    before = path.read_bytes()
    offset = append_record(path, PreferenceRecord(*PAIRS[1], "b", "you"))
    undo_last(path, offset)
    assert path.read_bytes() == before


@pytest.mark.parametrize("bad_line,message", [
    ("{not json", "line 2: not valid JSON"),
    (json.dumps({"prompt": "x", "completion_a": " a", "choice": "a"}), r"line 2: missing field\(s\)"),
    (json.dumps(dict(prompt="x", completion_a=" a", completion_b=" a", choice="a", annotator="u", time="t", model="m")),
     "line 2: the two completions are identical"),
    (json.dumps(dict(prompt="x", completion_a=" a", completion_b=" b", choice="A!", annotator="u", time="t", model="m")),
     "line 2: choice must be one of"),
])
def test_malformed_file_gets_a_clear_error_and_stays_unchanged(tmp_path, bad_line, message):
    path = tmp_path / "labels.jsonl"
    append_record(path, PreferenceRecord(*PAIRS[0], "a", "you"))
    with open(path, "a") as f:
        f.write(bad_line + "\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message):
        read_records(path)
    with pytest.raises(ValueError, match=message):
        Labeler(path, PAIRS)
    assert path.read_bytes() == before


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no preference records"):
        load_preferences(empty)
    with pytest.raises(FileNotFoundError, match="no preference file"):
        read_records(tmp_path / "nope.jsonl")


def test_identical_completions_are_refused():
    with pytest.raises(ValueError, match="identical"):
        PreferenceRecord("The plot was", " good.", " good.", "a", "you")


def test_labeler_clicks_undo_and_resume(tmp_path):
    path = tmp_path / "labels.jsonl"
    lab = Labeler(path, PAIRS, annotator="you")
    lab.choose("a")
    lab.choose("b")
    lab.undo()  # takes back "b" on the second pair
    lab.choose("tie")
    assert [r["choice"] for r in read_records(path)] == ["a", "tie"]
    assert lab.agreement_counts() == (1, 1)  # "superb" over "awful" agrees with the taste
    resumed = Labeler(path, PAIRS, annotator="you")  # a new session on the same file
    assert resumed.queue == [tuple(p) for p in PAIRS[2:]]
    resumed.choose("skip")
    resumed.undo()
    resumed.undo()  # nothing more of this session to undo: earlier records stay
    assert [r["choice"] for r in read_records(path)] == ["a", "tie"]
    for c in ("a", "b"):
        resumed.choose(c)
    resumed.choose("a")  # no pairs left: ignored
    assert len(read_records(path)) == 4 and resumed.buttons["a"].disabled


def test_labeler_keyboard_box(tmp_path):
    path = tmp_path / "keys.jsonl"
    lab = Labeler(path, PAIRS)
    lab.keys.value = "a"
    lab.keys.value = "T"
    lab.keys.value = "x"  # not a key: ignored
    lab.keys.value = "u"
    lab.keys.value = "s"
    assert [r["choice"] for r in read_records(path)] == ["a", "skip"] and lab.keys.value == ""
    assert lab.queue[0] == PAIRS[2]
