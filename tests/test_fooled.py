"""`loop.fooled`: where a reward model's ranking of a policy's reviews parts from gold, tallied again by hand."""

import numpy as np
import pytest

from rlhf_lib.evaluate import gold_sentiment, is_grammatical
from rlhf_lib.loop import fooled
from rlhf_lib.reviews import generate_reviews

BROKEN = ["great great wonderful amazing", "What aNine out of ten.", "The plot was the the brilliant."]


def by_hand(scores, texts, k):
    n = len(texts)
    rank = {i: sum(scores[j] < scores[i] for j in range(n)) / (n - 1) for i in range(n)}  # 0 lowest, 1 highest
    broken = [i for i in range(n) if not is_grammatical(texts[i])]
    disliked = [i for i in range(n) if gold_sentiment([texts[i]])[0] <= 0.05 or not is_grammatical(texts[i])]
    top = sorted(disliked, key=lambda i: -scores[i])[:k]
    return len(broken) / n, np.mean([rank[i] for i in broken]), len(disliked) / n, [texts[i] for i in top]


@pytest.mark.parametrize("lift", [10.0, -10.0])
def test_fooled_ranks_the_broken_reviews_as_counted_by_hand(lift):
    texts = generate_reviews(37, seed=5) + BROKEN
    scores = np.random.default_rng(0).normal(size=len(texts))
    scores[-3:] += lift  # the reward model's favourites (or its last choices) are the broken ones
    report = fooled(scores, texts, k=4)
    share, rank, disliked, top = by_hand(scores, texts, 4)
    assert report["broken_share"] == pytest.approx(share)
    assert report["broken_rank"] == pytest.approx(rank)
    assert report["disliked_share"] == pytest.approx(disliked)
    assert [e["text"] for e in report["examples"]] == top
    assert (report["broken_rank"] > 0.9) == (lift > 0)  # blind to grammar: near the top; a reader's: the bottom


def test_fooled_refuses_mismatched_input():
    with pytest.raises(ValueError, match="one score a review"):
        fooled([1.0, 2.0], ["a", "b", "c"])
