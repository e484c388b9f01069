"""Your own taste: the annotator's noise is Bradley-Terry's, VADER's taste reproduces the course's annotator,
agreement figures equal hand counts, and a taste's labels turn a policy toward that taste."""

import math

import numpy as np
import pytest

from rlhf_lib import tastes
from rlhf_lib.feedback import (
    PreferenceRecord,
    VaderAnnotator,
    append_record,
    sample_pairs,
    to_pairs,
)
from rlhf_lib.lm import load_model

PAIRS = [("The plot was", " wonderful.", " dull."), ("I expected", " more.", " a delightful film, but sad."),
         ("The music was", " fine.", " loud and awful."), ("Overall,", " a charming film.", " a film.")]


def test_vader_taste_is_the_vader_annotator():
    ours, course = tastes.TasteAnnotator(tastes.vader, 0.1, seed=4), VaderAnnotator(0.1, seed=4)
    for p in PAIRS * 5:
        assert ours.prob_a(*p) == pytest.approx(course.prob_a(*p), abs=1e-12)
        assert ours.compare(*p) == course.compare(*p)


def test_choices_follow_the_bradley_terry_probability():
    annotator = tastes.TasteAnnotator(tastes.short, temperature=0.2, seed=0)
    prompt, a, b = "The plot was", " dull.", " long, slow and rather dull."  # 4 words against 8
    want = 1 / (1 + math.exp(-((-len((prompt + a).split()) + len((prompt + b).split())) / 10) / 0.2))
    draws = [annotator.compare(prompt, a, b) for _ in range(4000)]
    got = np.mean([d == "a" for d in draws])
    assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / 4000), (got, want)
    assert annotator.compare(prompt, " fine.", " good.") == "tie"  # equal scores: nothing to tell apart
    again = tastes.TasteAnnotator(tastes.short, temperature=0.2, seed=0)
    assert [again.compare(prompt, a, b) for _ in range(4000)] == draws  # same seed, same labels


def test_bad_tastes_are_named():
    with pytest.raises(TypeError, match="taste"):
        tastes.TasteAnnotator("short")
    with pytest.raises(ValueError, match="temperature"):
        tastes.TasteAnnotator(tastes.short, temperature=0)
    with pytest.raises(ValueError, match="finite"):
        tastes.TasteAnnotator(lambda text: float("nan")).compare(*PAIRS[0])


def test_agreement_equals_a_hand_count():
    records = [dict(prompt=p, completion_a=a, completion_b=b, choice=c) for (p, a, b), c in
               zip(PAIRS, ["a", "a", "b", "skip"])]
    # short's choices on the whole texts: 4 vs 4 words (tie), 3 vs 7 -> a, 4 vs 6 -> a, 4 vs 3 -> b (skipped here)
    got = tastes.agreement_with(records, tastes.short)
    assert got["n"] == 2 and got["agreement"] == 0.5  # pair 2 agrees (a), pair 3 does not (b vs a)
    vader = tastes.agreement_with(records, tastes.vader)
    by_hand = [r["choice"] == tastes.taste_choice(tastes.vader, r["prompt"], r["completion_a"], r["completion_b"])
               for r in records[:3]]
    assert vader["n"] == 3 and vader["agreement"] == pytest.approx(np.mean(by_hand))


def test_your_labels_come_from_your_file_once_there_are_enough(tmp_path):
    path = tmp_path / "my_labels.jsonl"
    stand_in = tastes.TasteAnnotator(tastes.short, seed=0, name="stand-in")
    records, simulated = tastes.your_labels(path, PAIRS, stand_in, minimum=3)
    assert simulated and [r["annotator"] for r in records] == ["stand-in"] * 4
    for p, a, b in PAIRS:
        append_record(path, PreferenceRecord(p, a, b, "a", "you"))
    records, simulated = tastes.your_labels(path, PAIRS, stand_in, minimum=3)
    assert not simulated and [r["annotator"] for r in records] == ["you"] * 4
    assert tastes.your_labels(path, PAIRS, stand_in, minimum=3, use_file=False)[1]
    with pytest.raises(ValueError, match="labels asked for"):
        tastes.label_curve(to_pairs(records), [], counts=(10,))


@pytest.mark.slow
def test_labels_of_a_taste_turn_the_policy_toward_it():
    """200 labels of the "short" taste: a reward model on them ranks held-out pairs like the taste, and
    `follow_taste` (reward model, normalisation, a short PPO run) makes fresh samples clearly shorter. Its summary
    is recomputed apart: the taste over the course model's samples and over the samples it returns, and the shift
    in standard errors from those scores."""
    from rlhf_lib.feedback import label_pairs

    policy, tok = load_model()
    pairs = sample_pairs(policy, tok, 260, seed=3)
    labels = to_pairs([vars(r) for r in label_pairs(tastes.TasteAnnotator(tastes.short, seed=0), pairs[:200])])
    heldout = tastes.heldout_pairs(tastes.short, pairs[200:])
    rm, rm_tok = tastes.train_on_labels(labels)
    assert tastes.ranking_accuracy(rm, rm_tok, heldout) > 0.8

    follower, _, summary = tastes.follow_taste(labels, tastes.short, iterations=12, n=200)
    before, _ = tastes.taste_of_samples(policy, tok, tastes.short, n=200)  # the course model, untouched
    after = np.array([tastes.short(t) for t in summary["samples"]])
    assert summary["before"] == pytest.approx(before.mean()) and summary["after"] == pytest.approx(after.mean())
    z = (after.mean() - before.mean()) / math.sqrt(before.var() / 200 + after.var() / 200)
    assert summary["shift"] == pytest.approx(z) and z > 4, summary
    assert tastes.taste_of_samples(follower, tok, tastes.short, n=200)[1] == summary["samples"]  # its own samples


def test_heldout_pairs_follow_the_noise_free_taste():
    # short's choices, as counted above: a tie (left out), then a, a and b
    want = [dict(prompt=p, chosen=a, rejected=b) for p, a, b in PAIRS[1:3]] + \
           [dict(prompt=PAIRS[3][0], chosen=PAIRS[3][2], rejected=PAIRS[3][1])]
    assert tastes.heldout_pairs(tastes.short, PAIRS) == want
