"""Labels for a round from outside (rlhf_lib/loop.py, `match_labels`): each record is matched to the round's pairs
by prompt and both completions in either order and turned to the pair's own order; records for other pairs and
files that judge none of the pairs are refused. Checked against the pairs turned by hand."""

import pytest

from rlhf_lib.loop import decided, match_labels

PAIRS = [("The plot was", " great.", " dull."), ("", "I loved it.", "I hated it."), ("What a", " film!", " mess!")]


def record(prompt, a, b, choice, who="student"):
    return dict(prompt=prompt, completion_a=a, completion_b=b, choice=choice, annotator=who, time="t", model="m")


def test_records_in_either_order_are_turned_to_the_pairs_order():
    given = [record("The plot was", " dull.", " great.", "b"),  # the pair reversed: "b" (great) -> "a"
             record("", "I loved it.", "I hated it.", "a"),
             record("What a", " mess!", " film!", "tie"),  # a tie stays a tie, the completions turned round
             record("The plot was", " great.", " dull.", "b", who="another")]  # two people, one pair: both count
    got = match_labels(PAIRS, given)
    want = [("The plot was", " great.", " dull.", "a"), ("", "I loved it.", "I hated it.", "a"),
            ("What a", " film!", " mess!", "tie"), ("The plot was", " great.", " dull.", "b")]
    assert [(r["prompt"], r["completion_a"], r["completion_b"], r["choice"]) for r in got] == want
    assert [r["annotator"] for r in got] == ["student", "student", "student", "another"]
    assert decided(got) == 3


def test_records_for_other_pairs_are_refused():
    given = [record("The plot was", " great.", " dull.", "a"), record("The plot was", " fine.", " dull.", "a")]
    with pytest.raises(ValueError, match="1 of 2 records judge pairs that are not this round's"):
        match_labels(PAIRS, given, "--round-labels class.jsonl")
    with pytest.raises(ValueError, match="holds no judgement of this round's pairs"):
        match_labels(PAIRS, [dict(prompt="The plot was", completion=" great.", rating=5, annotator="x", time="t",
                                  model="m")])
