"""Measuring text: gold sentiment (VADER), fluency (the grammar), and summaries of both.

Gold has two forms. A *policy* is judged by two figures: the share of its reviews that VADER calls
positive (compound score above 0.05, VADER's own convention) and the share that are grammatical
(`rlhf_lib.reviews.is_grammatical`). A *preference* between two texts is judged by the reading person's
taste (`gold_taste`): VADER's compound score in [-1, 1] plus 3 for a grammatical text, so a fluent review
beats a broken one whatever their words, and between two of a kind the more positive wins. The simulated
person who labels (`rlhf_lib.feedback.SimulatedAnnotator`) has this taste, with noise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from rlhf_lib.ratings import bradley_terry, elo, win_rate  # noqa: F401  (rating policies from their matches)
from rlhf_lib.reviews import is_grammatical

POSITIVE_THRESHOLD = 0.05
GRAMMAR_WEIGHT = 3.0
"""what being grammatical adds to the reading taste: more than VADER's whole range (2), so it decides first"""


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def gold_sentiment(texts) -> np.ndarray:
    """VADER compound score of each text, shape (N,)."""
    if isinstance(texts, str):
        texts = [texts]
    return np.array([_vader().polarity_scores(t)["compound"] for t in texts])


def gold_taste(texts) -> np.ndarray:
    """The reading person's taste of each text, shape (N,): VADER compound + 3 * is_grammatical, in [-1, 4]."""
    if isinstance(texts, str):
        texts = [texts]
    return gold_sentiment(texts) + GRAMMAR_WEIGHT * np.array([is_grammatical(t) for t in texts], dtype=float)


def positive_rate(texts) -> float:
    return float((gold_sentiment(texts) > POSITIVE_THRESHOLD).mean())


def grammatical_rate(texts) -> float:
    return float(np.mean([is_grammatical(t) for t in texts]))


def text_report(texts) -> dict:
    """The figures the course reports for a batch of reviews."""
    s = gold_sentiment(texts)
    return dict(n=len(texts), positive_rate=float((s > POSITIVE_THRESHOLD).mean()),
                negative_rate=float((s < -POSITIVE_THRESHOLD).mean()), mean_sentiment=float(s.mean()),
                grammatical_rate=grammatical_rate(texts))


def sample_texts(model, tokenizer, n: int = 500, prompts=None, temperature: float = 1.0, max_new_tokens: int = 64,
                 seed: int = 0, batch_size: int = 125, stop_at: str = "text") -> list[str]:
    """n texts (prompt + response) sampled from the model, cycling through the course prompts: whole
    reviews (stop_at="text") or the prompt's first sentence (stop_at="sentence")."""
    from rlhf_lib.lm import sample
    from rlhf_lib.reviews import PROMPTS

    prompts = list(prompts or PROMPTS)
    generator = torch.Generator().manual_seed(seed)
    texts = []
    for start in range(0, n, batch_size):
        batch = [prompts[i % len(prompts)] for i in range(start, min(n, start + batch_size))]
        texts += sample(model, tokenizer, batch, max_new_tokens, temperature, generator=generator,
                        stop_at=stop_at).texts
    return texts


def model_report(model, tokenizer, n: int = 500, temperature: float = 1.0, seed: int = 0, prompts=None) -> dict:
    """text_report of n samples from the course prompts."""
    return text_report(sample_texts(model, tokenizer, n, prompts=prompts, temperature=temperature, seed=seed))
