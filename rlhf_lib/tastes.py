"""Your own taste: an annotator for any preference, and what a reward model and a policy learn from it.

The course's simulated annotator likes positive reviews (VADER). A taste here is any function
`taste(text) -> float`, higher = preferred; `TasteAnnotator` (rlhf_lib/feedback.py: every simulated annotator
of the course is one) judges pairs with it under the same Bradley-Terry noise,

    P(A preferred) = sigmoid((taste(prompt + a) - taste(prompt + b)) / temperature),

and says "tie" when the two scores are equal. With `taste=vader` it is the course's annotator.
A few ready-made tastes are below; write your own the same way (notebook 07); notebook 11 steers a policy
toward one (`follow_taste`).

Held-out checks compare with the NOISE-FREE taste: of two texts, the one it scores higher.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

# TasteAnnotator is re-exported: notebook 07 builds its stand-in as tastes.TasteAnnotator
from rlhf_lib.feedback import TasteAnnotator, cohens_kappa, to_pairs, vader  # noqa: F401
from rlhf_lib.runtime import check_count

MUSIC = re.compile(r"\b(music|score|soundtrack|songs?|melod(?:y|ies)|composer|sound)\b", re.IGNORECASE)


def harsh(text: str) -> float:
    """Prefers harsh reviews: the negative of VADER's score."""
    return -vader(text)


def about_music(text: str) -> float:
    """Prefers reviews about the music: how many times it is mentioned (music, score, soundtrack ...)."""
    return float(len(MUSIC.findall(text)))


def with_contrast(text: str) -> float:
    """Prefers a review that weighs two sides: 1 if it says "but", else 0."""
    return float(" but " in f" {text} ")


def short(text: str) -> float:
    """Prefers short reviews: minus the number of words, over 10."""
    return -len(text.split()) / 10.0


TASTES: dict[str, Callable[[str], float]] = {"harsh": harsh, "about the music": about_music,
                                             "with a contrast": with_contrast, "short": short, "VADER": vader}


def taste_choice(taste: Callable[[str], float], prompt: str, a: str, b: str) -> str:
    """The noise-free taste's choice: "a", "b" or "tie"."""
    s_a, s_b = taste(prompt + a), taste(prompt + b)
    return "a" if s_a > s_b else "b" if s_b > s_a else "tie"


def agreement_with(records, taste: Callable[[str], float]) -> dict:
    """How often labels agree with a taste's noise-free choice, on the pairs where both decided (a or b):
    the share that agree and Cohen's kappa (chance-corrected), and how many pairs that was."""
    mine, theirs = [], []
    for r in records:
        if r.get("choice") not in ("a", "b"):
            continue
        t = taste_choice(taste, r["prompt"], r["completion_a"], r["completion_b"])
        if t != "tie":
            mine.append(r["choice"])
            theirs.append(t)
    if not mine:
        return dict(n=0, agreement=float("nan"), kappa=float("nan"))
    return dict(n=len(mine), agreement=float(np.mean([x == y for x, y in zip(mine, theirs)])),
                kappa=cohens_kappa(mine, theirs))


def heldout_pairs(taste: Callable[[str], float], pairs) -> list[dict]:
    """(prompt, a, b) pairs as {prompt, chosen, rejected} by the noise-free taste; its ties left out."""
    return to_pairs([dict(prompt=prompt, completion_a=a, completion_b=b, choice=taste_choice(taste, prompt, a, b))
                     for prompt, a, b in pairs])


def ranking_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Share of {prompt, chosen, rejected} pairs (or decided preference records) where the reward model scores
    chosen above rejected: the label accuracy of `rlhf_lib.reward_model.pair_accuracy` (its report has the gold
    accuracy too)."""
    from rlhf_lib.reward_model import pair_accuracy

    return pair_accuracy(model, tokenizer, pairs)["label_accuracy"]


def train_on_labels(pairs: list[dict], cfg=None, seed: int = 0):
    """A fresh reward model (the course model's backbone) trained on {prompt, chosen, rejected} pairs or on
    preference records."""
    from rlhf_lib.reward_model import RewardConfig, make_reward_model, train_reward_model

    pairs = to_pairs(pairs)
    if not pairs:
        raise ValueError("no decided labels to train on (ties and skips carry no direction)")
    model, tokenizer = make_reward_model(seed=seed)
    train_reward_model(model, tokenizer, pairs, cfg or RewardConfig(seed=seed), progress=False)
    return model.eval(), tokenizer


def follow_taste(labels: list[dict], taste: Callable[[str], float], iterations: int = 20, seed: int = 0,
                 n: int = 300, progress: bool = False) -> tuple:
    """The pipeline end to end on a taste: a reward model trained on `labels` (`train_on_labels`), normalised on 512
    of the course model's sentences, then PPO from the course model (`RLHFConfig`'s defaults: the one-sentence
    task) for `iterations`. Returns (policy, tokenizer, summary): the taste's mean score of `n` fresh samples
    before and after, the shift in standard errors of the difference, and the samples after."""
    from rlhf_lib.evaluate import sample_texts
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import normalize_on
    from rlhf_lib.rlhf import RLHFConfig, train_rlhf

    check_count("iterations", iterations)
    check_count("n", n)
    reward_model, reward_tokenizer = train_on_labels(labels, seed=seed)
    reference, tokenizer = load_model()
    normalize_on(reward_model, reward_tokenizer, sample_texts(reference, tokenizer, 512, seed=1, stop_at="sentence"))
    policy, _ = load_model()
    before, _ = taste_of_samples(policy, tokenizer, taste, n)
    train_rlhf(policy, tokenizer, reward_model, reward_tokenizer, reference,
               RLHFConfig(iterations=iterations, seed=seed), progress=progress)
    after, texts = taste_of_samples(policy, tokenizer, taste, n)
    shift = (after.mean() - before.mean()) / np.sqrt(before.var() / len(before) + after.var() / len(after))
    return policy, tokenizer, dict(before=float(before.mean()), after=float(after.mean()), shift=float(shift),
                                   n=n, iterations=iterations, samples=texts)


def label_curve(train: list[dict], heldout: list[dict], counts=(25, 50, 100, 200), cfg=None,
                mixed_with: list[dict] | None = None, progress: bool = True) -> dict:
    """Held-out ranking accuracy of reward models trained on the first n of `train` for each n in counts
    (each trained from scratch with the same settings); with mixed_with, the same n plus all of those
    pairs. Returns {"counts", "accuracy"}; train and heldout are {prompt, chosen, rejected} pairs or preference
    records (n counts decided labels)."""
    from tqdm.auto import tqdm

    train, heldout, mixed_with = to_pairs(train), to_pairs(heldout), to_pairs(mixed_with or [])
    counts = [check_count("count", n) for n in counts]
    if max(counts) > len(train):
        raise ValueError(f"{max(counts)} labels asked for, only {len(train)} decided labels to train on")
    accuracy = []
    for n in tqdm(counts, desc="reward models", disable=not progress):
        model, tokenizer = train_on_labels(train[:n] + mixed_with, cfg)
        accuracy.append(ranking_accuracy(model, tokenizer, heldout))
    return dict(counts=counts, accuracy=accuracy)


def taste_of_samples(policy, tokenizer, taste: Callable[[str], float], n: int = 300, seed: int = 1234,
                     max_new_tokens: int = 32) -> tuple[np.ndarray, list[str]]:
    """The taste's score of n samples of the course prompts' sentences (temperature 1), and the texts."""
    from rlhf_lib.evaluate import sample_texts

    texts = sample_texts(policy, tokenizer, n, seed=seed, max_new_tokens=max_new_tokens, stop_at="sentence")
    return np.array([float(taste(t)) for t in texts]), texts


def your_labels(path, pairs, stand_in, minimum: int = 50, use_file: bool = True) -> tuple[list[dict], bool]:
    """Your preference records from the labels file at `path` (notebook 06's widget writes it) when it holds
    at least `minimum` decided ones and use_file is true; otherwise `stand_in` (an annotator) labels
    `pairs`. Returns the records and whether they came from the stand-in."""
    from pathlib import Path

    from rlhf_lib.feedback import label_pairs, read_records

    path = Path(path)
    if use_file and path.exists():
        records = [r for r in read_records(path, allow_empty=True) if "completion_a" in r]
        if sum(r["choice"] in ("a", "b") for r in records) >= minimum:
            return records, False
    return [vars(r) for r in label_pairs(stand_in, pairs)], True
