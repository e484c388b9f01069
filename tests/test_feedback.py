"""Annotators, preference records on disk, and the labeler's logic (the browser test is separate)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.feedback import (
    PreferenceRecord,
    RatingRecord,
    ScoreJudge,
    SimulatedAnnotator,
    TornTailError,
    append_record,
    as_pairs,
    gold_preference,
    label_pairs,
    load_preferences,
    read_records,
    remove_record,
    repair_torn_tail,
    to_pairs,
)
from rlhf_lib.reviews import is_grammatical
from rlhf_lib.widgets import DEFAULT_LABELS, Labeler

PAIRS = [("The plot was", " superb.", " awful."), ("I expected", " more.", " a lovely drama, and it was great."),
         ("Overall,", " it was dull.", " it was fine."), ("The music was", " lovely.", " loud.")]


def test_simulated_annotator_follows_bradley_terry():
    prompt, a, b = "The plot was", " good.", " not good."
    s_a, s_b = gold_sentiment([prompt + a, prompt + b]) + 3.0 * np.array([is_grammatical(prompt + a),
                                                                          is_grammatical(prompt + b)])
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
    assert gold_preference("The plot was", " a film.", " the film.") == "tie"  # both broken, both neutral
    assert gold_preference("The plot was", " awful.", " superb superb superb") == "a"  # the fluent one, though negative
    ann = SimulatedAnnotator(0.01, seed=0)
    assert ann.rate("The plot was", " superb. I loved the music.") >= 4
    assert ann.rate("The plot was", " awful. I hated the music.") == 3  # fluent but negative
    assert ann.rate("The plot was", " superb superb superb") == 2  # positive but broken
    assert ann.rate("The plot was", " awful awful awful") == 1
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


def test_to_pairs_turns_each_shape_into_training_pairs():
    records = [vars(PreferenceRecord(p, a, b, choice, "you")) for (p, a, b), choice in zip(PAIRS, "ab")]
    records += [vars(PreferenceRecord(*PAIRS[2], "tie", "you")), vars(PreferenceRecord(*PAIRS[3], "skip", "you")),
                vars(RatingRecord("The plot was", " fine.", 3, "you"))]
    pair = dict(prompt="Overall,", chosen=" moving.", rejected=" a mess.", note="kept as a pair")
    want = [dict(prompt="The plot was", chosen=" superb.", rejected=" awful."),  # "a": A is chosen
            dict(prompt="I expected", chosen=" a lovely drama, and it was great.", rejected=" more."),  # "b"
            dict(prompt="Overall,", chosen=" moving.", rejected=" a mess.")]  # ties, skips, ratings dropped
    assert to_pairs(records + [pair]) == want
    assert to_pairs([PreferenceRecord(*PAIRS[0], "a", "you")]) == want[:1]  # as `label_pairs` returns them
    assert to_pairs([{k: r.get(k) for k in ("prompt", "completion_a", "completion_b", "choice")} for r in records]) \
        == want[:2]  # the fields that matter are enough
    for bad, message in [([("x", " a", " b")], "dict"), ([dict(prompt="x", chosen=" a")], "rejected"),
                         ([dict(prompt="x", completion_a=" a", choice="a")], "rejected"),
                         ([dict(prompt="x", chosen=" a", rejected=" a")], "same text")]:
        with pytest.raises(ValueError, match=message):
            to_pairs(bad)


def test_as_pairs_reads_a_file_as_load_preferences_does(tmp_path):
    from rlhf_lib import dpo

    path = tmp_path / "labels.jsonl"
    for r in label_pairs(SimulatedAnnotator(0.5, seed=3), PAIRS * 3):
        append_record(path, r)
    for completion, rating in ((" superb.", 5), (" dull.", 2)):
        append_record(path, RatingRecord("The plot was", completion, rating, "you"))
    assert as_pairs(path) == to_pairs(load_preferences(path))
    assert dict(prompt="The plot was", chosen=" superb.", rejected=" dull.") in as_pairs(path)  # from the ratings
    assert dpo.as_pairs is as_pairs
    with pytest.raises(ValueError, match="no 'a' or 'b'"):
        as_pairs([vars(PreferenceRecord(*PAIRS[0], "tie", "you"))])


def test_undo_removes_exactly_the_last_line(tmp_path):
    path = tmp_path / "labels.jsonl"
    append_record(path, PreferenceRecord(*PAIRS[0], "a", "you"))
    before = path.read_bytes()
    record_id = append_record(path, PreferenceRecord(*PAIRS[1], "b", "you"))
    assert remove_record(path, record_id)
    assert path.read_bytes() == before
    assert not remove_record(path, record_id)  # gone: a second removal changes nothing
    assert path.read_bytes() == before


@pytest.mark.parametrize("bad_line,message", [
    ("{not json", "line 2: not valid JSON"),
    (json.dumps({"prompt": "x", "completion_a": " a", "choice": "a"}), r"line 2: missing field\(s\)"),
    (json.dumps(dict(prompt="x", completion_a=" a", completion_b=" a", choice="a", annotator="u", time="t", model="m")),
     "line 2: the two completions are identical"),
    (json.dumps(dict(prompt="x", completion_a=" a", completion_b=" b", choice="A!", annotator="u", time="t",
                     model="m")),
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


# ---- nothing lost, nothing silently wrong


def choices_by_annotator(path):
    return [(r["annotator"], r["choice"]) for r in read_records(path, allow_empty=True)]


def test_undo_never_touches_another_labelers_records(tmp_path):
    """Two labelers on one file (two tabs, or two learners on a shared folder)."""
    path = tmp_path / "shared.jsonl"
    alice, bob = Labeler(path, PAIRS, annotator="alice"), Labeler(path, PAIRS, annotator="bob")
    alice.choose("a")
    alice.choose("b")
    for c in ("a", "tie", "skip"):
        bob.choose(c)
    alice.undo()  # takes back alice's "b", and only that
    assert choices_by_annotator(path) == [("alice", "a"), ("bob", "a"), ("bob", "tie"), ("bob", "skip")]
    bob.undo()
    assert choices_by_annotator(path) == [("alice", "a"), ("bob", "a"), ("bob", "tie")]
    assert b"\0" not in path.read_bytes()
    alice.choose("tie")  # the pair alice took back, judged again
    assert choices_by_annotator(path)[-1] == ("alice", "tie") and alice.queue[0] == PAIRS[2]


def test_a_last_record_without_end_of_line_is_kept_whole(tmp_path):
    path = tmp_path / "labels.jsonl"
    append_record(path, PreferenceRecord(*PAIRS[0], "a", "you"))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # as an editor that drops the final newline leaves it
    assert len(read_records(path)) == 1
    append_record(path, PreferenceRecord(*PAIRS[1], "b", "you"))
    assert [r["choice"] for r in read_records(path)] == ["a", "b"]
    assert path.read_bytes().count(b"\n") == 2


def test_a_cut_off_last_line_is_reported_then_repaired(tmp_path):
    path = tmp_path / "labels.jsonl"
    for p, c in zip(PAIRS[:3], "aba"):
        append_record(path, PreferenceRecord(*p, c, "you"))
    whole = path.read_bytes()
    cut = len(whole) - 40  # a crash in the middle of the third record
    path.write_bytes(whole[:cut])
    with pytest.raises(TornTailError, match=r"line 3: the last line is cut off.*repair_torn_tail"):
        read_records(path)
    with pytest.raises(TornTailError):  # an append would bury the cut line inside the file: refused
        append_record(path, PreferenceRecord(*PAIRS[3], "a", "you"))
    assert path.read_bytes() == whole[:cut]
    with pytest.warns(UserWarning, match="cut off"):
        side = repair_torn_tail(path)
    start = whole[:cut].rfind(b"\n") + 1
    assert side.read_bytes() == whole[start:cut] + b"\n"  # the torn bytes are kept aside, not lost
    assert [r["choice"] for r in read_records(path)] == ["a", "b"]
    assert repair_torn_tail(path) is None  # nothing more to repair


def test_the_labeler_opens_a_file_cut_off_by_a_crash(tmp_path):
    path = tmp_path / "labels.jsonl"
    for p in PAIRS[:2]:
        append_record(path, PreferenceRecord(*p, "a", "you"))
    path.write_bytes(path.read_bytes()[:-25])
    with pytest.warns(UserWarning):
        lab = Labeler(path, PAIRS)
    assert "cut off" in lab.message.value and (tmp_path / "labels.jsonl.torn").exists()
    assert lab.queue == [tuple(p) for p in PAIRS[1:]]  # the cut record's pair comes back
    lab.choose("b")
    assert [r["choice"] for r in read_records(path)] == ["a", "b"]


def test_a_pair_with_identical_completions_is_left_out(tmp_path):
    path = tmp_path / "labels.jsonl"
    same = ("The plot was", " good.", " good.")
    lab = Labeler(path, [PAIRS[0], same, PAIRS[1]])
    assert "identical" in lab.message.value and lab.total == 2
    for c in ("a", "b"):
        lab.choose(c)
    assert [(r["completion_a"], r["choice"]) for r in read_records(path)] == [(PAIRS[0][1], "a"), (PAIRS[1][1], "b")]
    assert lab.buttons["a"].disabled  # done: every real pair judged


def test_an_error_in_a_click_is_shown_in_the_widget(tmp_path):
    path = tmp_path / "labels.jsonl"
    lab = Labeler(path, PAIRS)
    path.mkdir()  # the file became a folder: the append must fail, and say so on screen
    lab.choose("a")
    assert "Not saved" in lab.message.value and "folder" in lab.message.value
    assert lab.queue[0] == PAIRS[0]  # nothing counted as saved


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\n", r"line 1: not UTF-8 text \(byte 0x89"),
    ("caf\u00e9\n".encode("latin-1"), r"line 1: not UTF-8 text \(byte 0xe9 at column 4"),
])
def test_a_file_that_is_not_utf8_names_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "labels.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        read_records(path)
    assert str(path) in str(err.value)


def test_a_cut_emoji_on_the_last_line_is_a_torn_write_and_a_bom_is_accepted(tmp_path):
    path = tmp_path / "labels.jsonl"
    good = json.dumps(vars(PreferenceRecord("The plot was", " \U0001f600 good.", " bad.", "a", "you")),
                      ensure_ascii=False).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n" + good[: good.index("\U0001f600".encode()) + 2])
    with pytest.raises(TornTailError, match="line 2"):
        read_records(path)
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n")  # a byte-order mark, as some Windows editors write
    assert read_records(path)[0]["completion_a"] == " \U0001f600 good."


def test_records_without_id_still_load(tmp_path):
    path = tmp_path / "old.jsonl"
    old = dict(prompt="x", completion_a=" a", completion_b=" b", choice="a", annotator="u", time="t", model="m")
    path.write_text(json.dumps(old) + "\n")
    assert read_records(path) == [old]
    append_record(path, PreferenceRecord(*PAIRS[0], "b", "you"))
    records = read_records(path)
    assert "id" not in records[0] and len(records[1]["id"]) == 32


def test_a_folder_is_not_a_preference_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder.*my_labels.jsonl"):
        Labeler(tmp_path, PAIRS)


def test_the_default_labels_file_is_stable_and_ignored_by_git():
    import subprocess

    root = Path(__file__).resolve().parents[1]
    assert DEFAULT_LABELS == root / "labels" / "my_labels.jsonl"
    assert Labeler(pairs=PAIRS).path == DEFAULT_LABELS  # the same file after a restart: the labeler resumes
    ignored = subprocess.run(["git", "check-ignore", "-q", str(DEFAULT_LABELS)], cwd=root)
    assert ignored.returncode == 0, "labels/ must be in .gitignore"
