"""The review language: generated reviews parse, mutated ones do not, and sentiment has both tails."""

import random

import pytest

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.reviews import (
    GRAMMAR,
    PROMPTS,
    RULES,
    generate_review,
    generate_reviews,
    is_grammatical,
    render,
    sentences,
    tokenize,
    vocabulary,
)


@pytest.mark.parametrize("seed", range(20))
def test_every_generated_review_is_grammatical(seed):
    for review in generate_reviews(200, seed=seed):
        assert is_grammatical(review), review


def test_generation_is_seeded():
    assert generate_reviews(50, seed=3) == generate_reviews(50, seed=3)
    assert generate_reviews(50, seed=3) != generate_reviews(50, seed=4)


def test_the_language_is_rich_enough():
    assert len(GRAMMAR["sentence"]) >= 8
    assert len({w for w in vocabulary() if w.isalpha()}) >= 300
    reviews = generate_reviews(3000, seed=0)
    assert len(set(reviews)) > 0.95 * len(reviews)
    counts = [len(sentences(r)) for r in reviews]
    assert min(counts) == 1 and max(counts) == 4
    joined = " ".join(reviews)
    for feature in (" not ", " never ", ", but ", "!", " very ", " were "):
        assert feature in joined, feature


def test_prompts_begin_reviews_of_the_language():
    reviews = generate_reviews(20_000, seed=1)
    for prompt in PROMPTS:
        assert any(r.startswith(prompt + " ") for r in reviews), prompt


def mutations(review, rng):
    tokens = tokenize(review)
    out = {}
    i = rng.randrange(len(tokens) - 1)
    while tokens[i] == tokens[i + 1]:
        i = rng.randrange(len(tokens) - 1)
    swapped = tokens[:i] + [tokens[i + 1], tokens[i]] + tokens[i + 2:]
    out["swapped"] = render(swapped)
    j = rng.randrange(len(tokens))
    out["repeated"] = render(tokens[: j + 1] + [tokens[j]] + tokens[j + 1:])
    last = sentences(review)[-1]
    cut = rng.randrange(1, len(tokenize(last)))  # drop 1 .. all-but-one tokens of the last sentence
    out["cut off"] = render(tokens[: len(tokens) - cut])
    k = rng.choice([n for n, t in enumerate(tokens) if t.isalpha()])
    out["unknown word"] = render(tokens[:k] + ["xylophone"] + tokens[k + 1:])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_mutated_reviews_are_not_grammatical(seed):
    rng = random.Random(seed)
    for review in generate_reviews(300, seed=100 + seed):
        for kind, text in mutations(review, rng).items():
            assert not is_grammatical(text), f"{kind}: {text!r} (from {review!r})"


def test_every_adjacent_swap_and_every_repeat_fails():
    """Exhaustively, on fewer reviews: no swap of two different adjacent words and no doubled word parses."""
    for review in generate_reviews(200, seed=7):
        tokens = tokenize(review)
        for i in range(len(tokens) - 1):
            if tokens[i] != tokens[i + 1]:
                assert not is_grammatical(render(tokens[:i] + [tokens[i + 1], tokens[i]] + tokens[i + 2:]))
            assert not is_grammatical(render(tokens[: i + 1] + [tokens[i]] + tokens[i + 1:]))


@pytest.mark.parametrize("text", [
    "", "The plot was good", "the plot was good.", "The plot was good .", "The plot  was good.",
    "The plot was good. ", " The plot was good.", "The plots was good.", "The characters was good.",
    "The plot were good.", "The plot was good,", "The plot was very very good.", "The plot was good!",
    "I loved the the music.", "Glass is a thriller.", "The Plot was good.", "Glass Harbor is a ugly thriller.",
    "Glass Harbor is an gripping thriller.",
])
def test_hand_made_non_reviews(text):
    assert not is_grammatical(text)


@pytest.mark.parametrize("text", [
    "The plot was good.", "The plot was not bad.", "The plot was dull, but the music was lovely.",
    "What a lovely film!", "Seven out of ten.", "Glass Harbor is a gripping thriller.",
    "Mara Voss gave a moving performance as the thief.", "I expected more.", "Overall, Last Summer was superb.",
    "The pacing felt slow and clumsy. I would not recommend it to anyone.", "The characters were flat.",
    "Glass Harbor is an ugly thriller.", "Glass Harbor is a gripping thriller.",
])
def test_hand_made_reviews(text):
    assert is_grammatical(text)


def test_is_grammatical_rejects_non_strings():
    assert not is_grammatical(None) and not is_grammatical(42)


def test_sentiment_has_headroom_and_both_tails():
    scores = gold_sentiment(generate_reviews(4000, seed=11))
    positive = (scores > 0.05).mean()
    assert 0.30 <= positive <= 0.70, positive
    assert (scores < -0.5).mean() > 0.1 and (scores > 0.5).mean() > 0.1  # both tails exist


def test_mood_outside_0_1_is_a_clear_error():
    with pytest.raises(ValueError, match="mood"):
        generate_review(0, mood=1.5)


def test_mood_steers_sentiment():
    rng = random.Random(0)
    happy = gold_sentiment([generate_review(rng, mood=0.95) for _ in range(500)]).mean()
    sad = gold_sentiment([generate_review(rng, mood=0.05) for _ in range(500)]).mean()
    assert happy > 0.4 and sad < -0.4


def test_rules_refer_only_to_rules_or_words():
    for name, alts in RULES.items():
        for alt in alts:
            assert alt.symbols, f"empty alternative in {name}"
            assert name not in alt.symbols, f"{name} is recursive"
