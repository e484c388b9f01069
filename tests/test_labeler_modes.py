"""The labeler's other faces: posting to a classroom server, and rating one text 1-5; ratings turned into
preferences, checked against an enumeration of every pair of ratings."""

import itertools
import json
import random

import httpx
import pytest
from test_classroom_server import TOKEN, Server

from rlhf_lib.feedback import (
    PreferenceRecord,
    RatingRecord,
    append_record,
    load_preferences,
    ratings_to_preferences,
    read_records,
    to_pairs,
)
from rlhf_lib.widgets import Labeler

TEXTS = [("The plot was", " superb."), ("The plot was", " awful."), ("The plot was", " fine."),
         ("Overall,", " it was dull."), ("Overall,", " it was great.")]


# ---- the widget on a classroom server


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, n_pairs=6, shared=0.0)
    yield s
    s.stop()


def test_the_labeler_posts_each_click_to_the_server_and_undoes_there(server):
    server.start()
    lab = Labeler.from_server(server.url, "Ada")
    assert lab.path is None and lab.queue
    shown = []
    for choice in ("a", "b", "tie"):
        shown.append(lab.queue[0])
        lab.choose(choice)
    lab.undo()  # withdraws "tie" on the server; the server shows that pair again
    assert lab.queue == [shown[2]]
    lab._on_keys(dict(new="s"))  # the keyboard box posts too
    exported = [r for r in server.export() if r["annotator"] == "Ada"]
    assert [(r["prompt"], r["completion_a"], r["completion_b"], r["choice"]) for r in exported] == \
        [(*shown[0], "a"), (*shown[1], "b"), (*shown[2], "skip")]
    report = httpx.get(server.url + "/api/report", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    ada = [s for s in report["students"] if s["name"] == "Ada"]
    assert len(ada) == 1 and ada[0]["labels"] == 3 and ada[0]["choices"] == dict(a=1, b=1, tie=0, skip=1)
    assert "3</b> pairs judged" in lab.progress.value

    # a server error shows in the widget, the click handler does not raise, and the pair stays
    before = lab.queue[0]
    lab.choose("maybe")
    assert "Not saved" in lab.message.value and lab.queue == [before]
    server.stop()
    lab.client.retries, lab.client.backoff = 0, 0.0
    lab.choose("a")  # no server at all
    assert "Not saved" in lab.message.value and lab.queue == [before]


def test_the_labeler_on_a_server_reaches_the_end_of_the_pairs(server):
    server.start()
    lab = Labeler(server=server.url, annotator="Grace")
    seen = set()
    while lab.queue:
        seen.add(lab.queue[0])
        lab.choose("a")
    assert len(seen) == 6 and lab.buttons["a"].disabled and "All pairs judged" in lab.prompt_html.value
    assert len([r for r in server.export() if r["annotator"] == "Grace"]) == 6


def test_a_server_labeler_refuses_local_options():
    with pytest.raises(ValueError, match="rate"):
        Labeler(server="http://127.0.0.1:9", mode="rate")
    with pytest.raises(ValueError, match="mode"):
        Labeler(pairs=[], mode="score")


# ---- rating mode


def test_rating_clicks_undo_and_resume(tmp_path):
    path = tmp_path / "ratings.jsonl"
    append_record(path, PreferenceRecord("The plot was", " superb.", " awful.", "a", "you"))  # a mixed file
    lab = Labeler(path, TEXTS, mode="rate")
    lab.choose("5")
    lab._on_keys(dict(new="1"))
    lab.undo()  # takes back the 1 on the second text
    assert lab.queue[0] == TEXTS[1]
    lab.choose(2)
    lab.choose("9")  # not a rating: shown, not saved, the text stays
    assert "Not saved" in lab.message.value and lab.queue[0] == TEXTS[2]
    rows = read_records(path)
    assert [(r.get("completion"), r.get("rating")) for r in rows] == [(None, None), (" superb.", 5), (" awful.", 2)]
    resumed = Labeler(path, TEXTS, mode="rate")
    assert resumed.queue == TEXTS[2:] and [r["rating"] for r in resumed.records] == [5, 2]
    resumed.undo()  # nothing of this session yet: earlier ratings stay
    for k in (3, 4, 1):
        resumed.choose(k)
    assert not resumed.queue and resumed.buttons["1"].disabled
    assert len(read_records(path)) == 6
    # the pairwise labeler on the same file ignores the ratings and resumes after its own pair
    pairs = Labeler(path, [("The plot was", " superb.", " awful."), ("Overall,", " a.", " b.")])
    assert pairs.queue == [("Overall,", " a.", " b.")]


def test_rating_records_are_checked():
    with pytest.raises(ValueError, match="rating"):
        RatingRecord("p", " x", 0, "you")
    with pytest.raises(ValueError, match="rating"):
        RatingRecord("p", " x", True, "you")
    with pytest.raises(ValueError, match="completion"):
        append_record("/dev/null", dict(prompt="p", rating=3, annotator="you", time="t", model="m"))


def brute_force(ratings):
    """Every unordered pair of final ratings, same annotator and prompt, different texts, unequal scores:
    the set of (annotator, prompt, preferred, other)."""
    final = {}
    for r in ratings:
        final[(r["annotator"], r["prompt"], r["completion"])] = r["rating"]
    out = set()
    for (k1, s1), (k2, s2) in itertools.combinations(final.items(), 2):
        if k1[:2] == k2[:2] and s1 != s2:
            hi, lo = (k1, k2) if s1 > s2 else (k2, k1)
            out.add((k1[0], k1[1], hi[2], lo[2]))
    return out


def test_ratings_to_preferences_matches_an_enumeration_of_pairs():
    rng = random.Random(0)
    records = []
    for _ in range(200):
        annotator, prompt = rng.choice(["ann", "bob"]), rng.choice(["P1", "P2", "P3"])
        completion = rng.choice([" a", " b", " c", " d"])
        records.append(vars(RatingRecord(prompt, completion, rng.randint(1, 5), annotator)))
        if rng.random() < 0.2:
            records.append(vars(PreferenceRecord(prompt, " a", " b", "a", annotator)))  # passed over
    prefs = ratings_to_preferences(records)
    got = [(p["annotator"], p["prompt"], *((p["completion_a"], p["completion_b"]) if p["choice"] == "a"
                                          else (p["completion_b"], p["completion_a"]))) for p in prefs]
    assert len(got) == len(set(got))  # each pair of texts once
    assert set(got) == brute_force([r for r in records if "rating" in r])
    assert got  # the random data has pairs


def test_load_preferences_converts_ratings(tmp_path):
    path = tmp_path / "mixed.jsonl"
    append_record(path, PreferenceRecord("Overall,", " it was dull.", " it was great.", "b", "you"))
    for (prompt, completion), rating in zip(TEXTS, [5, 2, 2, 4, 4]):
        append_record(path, RatingRecord(prompt, completion, rating, "you"))
    pairs = to_pairs(load_preferences(path))
    assert sorted((p["prompt"], p["chosen"], p["rejected"]) for p in pairs) == sorted([
        ("Overall,", " it was great.", " it was dull."),  # the clicked one; the rated tie is dropped
        ("The plot was", " superb.", " awful."), ("The plot was", " superb.", " fine.")])
    assert json.loads(path.read_text().splitlines()[1])["rating"] == 5  # the file keeps the ratings as written
