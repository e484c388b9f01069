"""The one annotator class: its judgements equal, call for call, the Bradley-Terry draws worked out by hand
(a taste's scores, sigmoid of their difference over the temperature against random.Random(seed).random()),
for the course's VADER annotator, for any taste, and with the scores primed ahead."""

import math
import random

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from rlhf_lib import tastes
from rlhf_lib.feedback import SimulatedAnnotator, TasteAnnotator
from rlhf_lib.reviews import PROMPTS, is_grammatical

COMPLETIONS = [" superb.", " awful.", " a film.", " the film.", " fine, but slow.", " not good.", " lovely and warm.",
               " dull and far too long.", " a delight!", " a mess.", " moving.", " there."]
VADER = SentimentIntensityAnalyzer()


def vader_by_hand(text: str) -> float:
    return VADER.polarity_scores(text)["compound"]


def some_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    """n (prompt, a, b) pairs of different completions; neutral completions make some pairs tie."""
    rng = random.Random(seed)
    return [(rng.choice(PROMPTS), *rng.sample(COMPLETIONS, 2)) for _ in range(n)]


def by_hand(score, temperature: float, seed: int, calls) -> list:
    """What the annotator said before it was one class: for ("compare", p, a, b) "tie" on equal scores (no
    draw), else "a" when a uniform draw falls below sigmoid((s_a - s_b) / temperature); for ("rate", p, c) the
    score plus Gaussian noise, cut into five bands of width 0.4 from -1."""
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
            out.append(int(min(5, max(1, math.floor((s + 1.0) / 0.4) + 1))))
    return out


def judge(annotator, calls) -> list:
    return [annotator.compare(p, *texts) if kind == "compare" else annotator.rate(p, *texts)
            for kind, p, *texts in calls]


def mixed_calls(n: int, seed: int) -> list[tuple]:
    """n calls: mostly comparisons, every fifth a rating of the pair's first completion."""
    return [("rate", p, a) if i % 5 == 4 else ("compare", p, a, b) for i, (p, a, b) in enumerate(some_pairs(n, seed))]


@pytest.mark.parametrize("temperature, seed", [(0.1, 0), (0.5, 3), (2.0, 11)])
def test_simulated_annotator_draws_as_by_hand(temperature, seed):
    calls = mixed_calls(400, seed)
    want = by_hand(vader_by_hand, temperature, seed, calls)
    assert judge(SimulatedAnnotator(temperature, seed=seed), calls) == want
    assert {"a", "b", "tie"} <= set(want) and len({x for x in want if isinstance(x, int)}) > 1  # every kind of answer


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
    assert judge(annotator, calls) == by_hand(vader_by_hand, 0.3, 5, calls)


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
    assert isinstance(SimulatedAnnotator(), TasteAnnotator) and tastes.TasteAnnotator is TasteAnnotator
