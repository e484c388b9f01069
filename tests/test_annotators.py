"""The one annotator class: its judgements equal, call for call, the Bradley-Terry draws worked out by hand
(a taste's scores, sigmoid of their difference over the temperature against random.Random(seed).random()),
for the course's reading person (VADER and the grammar computed directly), for the VADER-only person, for any
taste, and with the scores primed ahead."""

import math
import random

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from rlhf_lib import tastes
from rlhf_lib.feedback import SimulatedAnnotator, TasteAnnotator, VaderAnnotator, gold_preference
from rlhf_lib.reviews import PROMPTS, is_grammatical

COMPLETIONS = [" superb.", " awful.", " a film.", " the film.", " fine, but slow.", " not good.", " lovely and warm.",
               " dull and far too long.", " a delight!", " a mess.", " moving.", " there."]
VADER = SentimentIntensityAnalyzer()


def vader_by_hand(text: str) -> float:
    return VADER.polarity_scores(text)["compound"]


def reading_by_hand(text: str) -> float:
    return VADER.polarity_scores(text)["compound"] + (3.0 if is_grammatical(text) else 0.0)


def vader_rating(s: float) -> int:
    """Five bands of width 0.4 from -1."""
    return int(min(5, max(1, math.floor((s + 1.0) / 0.4) + 1)))


def reading_rating(s: float) -> int:
    """A broken review (score below 1.5) gets 1 if negative, else 2; a grammatical one 3, 4 or 5 by thirds of
    VADER's range above 2."""
    if s < 1.5:
        return 1 if s < 0 else 2
    return 3 if s < 2 + 2 / 3 else 4 if s < 2 + 4 / 3 else 5


def some_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    """n (prompt, a, b) pairs of different completions; neutral completions make some pairs tie."""
    rng = random.Random(seed)
    return [(rng.choice(PROMPTS), *rng.sample(COMPLETIONS, 2)) for _ in range(n)]


def by_hand(score, temperature: float, seed: int, calls, rating=vader_rating) -> list:
    """What the annotator says: for ("compare", p, a, b) "tie" on equal scores (no draw), else "a" when a
    uniform draw falls below sigmoid((s_a - s_b) / temperature); for ("rate", p, c) `rating` of the score plus
    Gaussian noise."""
    rng, out = random.Random(seed), []
    for kind, prompt, *texts in calls:
        if kind == "compare":
            s_a, s_b = score(prompt + texts[0]), score(prompt + texts[1])
            if s_a == s_b:
                out.append("tie")
            else:
                out.append("a" if rng.random() < 1 / (1 + math.exp(-(s_a - s_b) / temperature)) else "b")
        else:
            s = score(prompt + texts[0]) + rng.gauss(0.0, temperature)
            out.append(rating(s))
    return out


def judge(annotator, calls) -> list:
    return [annotator.compare(p, *texts) if kind == "compare" else annotator.rate(p, *texts)
            for kind, p, *texts in calls]


def mixed_calls(n: int, seed: int) -> list[tuple]:
    """n calls: mostly comparisons, every fifth a rating of the pair's first completion."""
    return [("rate", p, a) if i % 5 == 4 else ("compare", p, a, b) for i, (p, a, b) in enumerate(some_pairs(n, seed))]


@pytest.mark.parametrize("temperature, seed", [(0.1, 0), (0.5, 3), (2.0, 11)])
def test_simulated_annotator_reads_as_by_hand(temperature, seed):
    calls = mixed_calls(400, seed)
    want = by_hand(reading_by_hand, temperature, seed, calls, reading_rating)
    assert judge(SimulatedAnnotator(temperature, seed=seed), calls) == want
    assert {"a", "b", "tie"} <= set(want) and len({x for x in want if isinstance(x, int)}) > 2  # every kind of answer


@pytest.mark.parametrize("temperature, seed", [(0.1, 0), (0.5, 3)])
def test_vader_annotator_draws_as_by_hand(temperature, seed):
    calls = mixed_calls(400, seed)
    assert judge(VaderAnnotator(temperature, seed=seed), calls) == by_hand(vader_by_hand, temperature, seed, calls)


def test_the_reading_person_prefers_any_fluent_review_to_a_broken_one():
    fluent, salad = "The plot was dull.", "great great wonderful amazing"
    assert not is_grammatical(salad) and is_grammatical(fluent) and vader_by_hand(salad) > vader_by_hand(fluent)
    assert gold_preference("", fluent, salad) == "a" and gold_preference("", salad, fluent) == "b"
    assert SimulatedAnnotator(0.1, seed=0).prob_a("", fluent, salad) > 0.999
    assert VaderAnnotator(0.1, seed=0).prob_a("", fluent, salad) < 0.001  # the blind one prefers the salad
    pairs = some_pairs(300, 9)  # noise-free choices equal the by-hand taste's, ties included
    want = ["tie" if reading_by_hand(p + a) == reading_by_hand(p + b) else
            "a" if reading_by_hand(p + a) > reading_by_hand(p + b) else "b" for p, a, b in pairs]
    assert [gold_preference(*pair) for pair in pairs] == want
    mixed = [(p, a, b) for p, a, b in pairs if is_grammatical(p + a) != is_grammatical(p + b)]
    assert mixed and all(gold_preference(p, a, b) == ("a" if is_grammatical(p + a) else "b") for p, a, b in mixed)


def test_any_taste_draws_as_by_hand():
    def liked(text):  # VADER, and well-formed sentences much more so
        return vader_by_hand(text) + 3 * is_grammatical(text)

    calls = [("compare", *pair) for pair in some_pairs(300, 5)]
    for taste, temperature in ((tastes.short, 0.2), (liked, 0.1), (tastes.vader, 0.3)):
        assert judge(TasteAnnotator(taste, temperature, seed=7), calls) == by_hand(taste, temperature, 7, calls)


def test_primed_scores_leave_the_draws_unchanged():
    calls = [("compare", "", p + a, p + b) for p, a, b in some_pairs(300, 2)]  # whole texts, prompt ""
    annotator = SimulatedAnnotator(0.3, seed=5)
    annotator.prime([text for _, _, a, b in calls for text in (a, b)])
    assert judge(annotator, calls) == by_hand(reading_by_hand, 0.3, 5, calls, reading_rating)


def test_each_text_is_scored_once_and_checked():
    seen = []

    def counting(text):
        seen.append(text)
        return float(len(text))

    annotator = TasteAnnotator(counting, seed=0)
    for _ in range(50):
        annotator.compare("The plot was", " good.", " not good.")
        annotator.prob_a("The plot was", " good.", " not good.")
    assert sorted(seen) == ["The plot was good.", "The plot was not good."]
    with pytest.raises(ValueError, match="finite"):
        TasteAnnotator(lambda text: float("inf")).prime(["x"])


def test_names_and_kinds():
    assert SimulatedAnnotator(0.1, seed=4).name == "sim-4" and SimulatedAnnotator(name="ann").name == "ann"
    assert TasteAnnotator(tastes.short, seed=2).name == "short-2"
    assert VaderAnnotator(seed=3).name == "vader-3"
    assert isinstance(SimulatedAnnotator(), TasteAnnotator) and tastes.TasteAnnotator is TasteAnnotator
