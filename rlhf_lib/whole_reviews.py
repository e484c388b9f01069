"""Whole reviews: where a review starts, and pairs of whole reviews to compare.

A whole review runs from the start of the text to end-of-text (sampling with stop_at="text"). The
policy writes one from a *start*, drawn from three kinds:

- a course prompt (`rlhf_lib.reviews.PROMPTS`): "The plot was", "I expected", ...
- another opening of the language: the first one to three words of the first sentence of a review
  the grammar generates ("Mara Voss gave", "What a", "By the end"),
- nothing at all (the empty string): the model writes the review from its first word.

A pair is two whole reviews for the simulated annotator to compare. Either both grow from the same
start (the usual reward-model data, `same_start=True`), or each from its own start; then the pair's
prompt is "" and each completion is the whole text, so prompt + completion is still the review.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from rlhf_lib.feedback import SimulatedAnnotator, to_pairs
from rlhf_lib.recipes import recipe, recipe_config
from rlhf_lib.reviews import PROMPTS, generate_review, render_raw, sentences, tokenize
from rlhf_lib.reward_model import POOLINGS, accuracy_by_gap, pair_accuracy, train_on_groups  # noqa: F401  (re-exported: they were defined here)
from rlhf_lib.runtime import check_count, check_positive, derive_seed

START_KINDS = ("course", "language", "empty")


def language_openings(n: int, seed: int = 0, max_words: int = 3) -> list[str]:
    """n openings: the first k words (or marks) of the first sentence of a generated review, k drawn
    uniformly from 1..max_words and always shorter than that sentence."""
    check_count("n", n)
    check_count("max_words", max_words)
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        first = tokenize(sentences(generate_review(rng))[0])  # the first sentence, as words and marks
        k = rng.randint(1, max_words)
        if k < len(first):
            out.append(render_raw(first[:k]))
    return out


def review_starts(n: int, seed: int = 0, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[str]:
    """n starts of whole reviews, each drawn independently: a course prompt, an opening of the language
    (`language_openings`) or "" (start of text), with the given relative weights (course, language, empty)."""
    check_count("n", n)
    if len(weights) != len(START_KINDS) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be three non-negative numbers for {START_KINDS} with a positive sum, "
                         f"got {weights!r}")
    rng = random.Random(seed)
    kinds = rng.choices(START_KINDS, weights=weights, k=n)
    openings = iter(language_openings(max(1, kinds.count("language")), seed=rng.randrange(2**31)))
    return [rng.choice(PROMPTS) if kind == "course" else next(openings) if kind == "language" else ""
            for kind in kinds]


def sample_whole_reviews(model, tokenizer, starts: list[str], max_new_tokens: int = 64, temperature: float = 1.0,
                         seed: int = 0, batch_size: int = 128) -> tuple[list[str], list[str], list[bool]]:
    """(starts, responses, finished): one whole review per start, sampled to end-of-text. `finished` is
    False where the review was cut off at max_new_tokens."""
    import torch

    from rlhf_lib.lm import sample

    check_count("batch_size", batch_size)
    generator = torch.Generator().manual_seed(seed)
    responses, finished = [], []
    for i in range(0, len(starts), batch_size):
        s = sample(model, tokenizer, starts[i : i + batch_size], max_new_tokens, temperature, generator=generator,
                   stop_at="text")
        responses += s.responses
        finished += s.finished.tolist()
    return list(starts), responses, finished


def pairs_from_samples(starts: list[str], a: list[str], b: list[str], finished_a: list[bool],
                       finished_b: list[bool]) -> list[tuple[str, str, str]]:
    """The pairs worth labelling among two samples from each start: (starts[i], a[i], b[i]) in order, leaving out
    a pair where either review was cut off before it ended (finished False: it would be judged for being cut
    off, not for what it says) and a pair of two identical reviews (there is nothing to prefer)."""
    return [(s, x, y) for s, x, y, fx, fy in zip(starts, a, b, finished_a, finished_b) if fx and fy and x != y]


def sample_whole_pairs(model, tokenizer, n: int, starts: list[str] | None = None, same_start: bool = True,
                       max_new_tokens: int = 64, temperature: float = 1.0, seed: int = 0,
                       batch_size: int = 128, progress: bool = False) -> list[tuple[str, str, str]]:
    """n (prompt, completion A, completion B) pairs of whole reviews from the model.

    starts: where reviews start, cycled in order (default: `review_starts(n, seed)`). same_start=True:
    both reviews of a pair grow from one start, which is the pair's prompt. same_start=False: each grows
    from its own start (two consecutive starts), the prompt is "" and the completions are whole texts.
    Reviews cut off at max_new_tokens are dropped, and so are pairs of two identical texts."""
    from tqdm.auto import tqdm

    check_count("n", n)
    check_count("max_new_tokens", max_new_tokens)
    check_positive("temperature", temperature)
    starts = list(review_starts(n, seed) if starts is None else starts)
    if not starts:
        raise ValueError("starts is empty: give at least one start (\"\" is the start of text)")
    batch_size = min(batch_size, n)  # a few pairs need no batch of 128
    out, i, round_ = [], 0, 0
    bar = tqdm(total=n, desc="whole-review pairs", disable=not progress)
    while len(out) < n:
        if same_start:
            batch = [starts[(i + k) % len(starts)] for k in range(batch_size)]
            firsts, seconds = batch, batch
        else:
            firsts = [starts[(i + 2 * k) % len(starts)] for k in range(batch_size)]
            seconds = [starts[(i + 2 * k + 1) % len(starts)] for k in range(batch_size)]
        i += batch_size * (1 if same_start else 2)
        _, responses, finished = sample_whole_reviews(model, tokenizer, firsts + seconds, max_new_tokens,
                                                      temperature, seed=derive_seed(seed, "pair round", round_),
                                                      batch_size=2 * batch_size)
        round_ += 1
        if same_start:
            new = pairs_from_samples(firsts, responses[:batch_size], responses[batch_size:], finished[:batch_size],
                                     finished[batch_size:])
        else:  # each review its own start: the prompt is "" and each completion the whole text
            new = pairs_from_samples([""] * batch_size, [s + r for s, r in zip(firsts, responses[:batch_size])],
                                     [s + r for s, r in zip(seconds, responses[batch_size:])], finished[:batch_size],
                                     finished[batch_size:])
        new = new[: n - len(out)]
        out += new
        bar.update(len(new))
    bar.close()
    return out


# ---- reward models on groups of whole reviews
# The poolings ("last", "sum", "mean": `rlhf_lib.reward_model.raw_rewards`) and the training
# loop on groups (`train_on_groups`) live in rlhf_lib/reward_model.py, beside the loop on single pairs.


def label_groups(annotator, groups: list[tuple[str, list[str]]]) -> list[list[dict]]:
    """Every pair within each group of completions for one prompt, judged by `annotator` (anything with
    .compare(prompt, a, b)): one list of {"prompt", "chosen", "rejected"} per group, ties left out.
    A group of K completions gives K (K - 1) / 2 judgements, as when a labeller ranks K at once."""
    out = []
    for prompt, completions in groups:
        records = [dict(prompt=prompt, completion_a=a, completion_b=b, choice=annotator.compare(prompt, a, b))
                   for i, a in enumerate(completions) for b in completions[i + 1 :] if a != b]
        out.append(to_pairs(records))
    return out


def normalizing_reviews(model, tokenizer, n: int, seed: int, max_new_tokens: int = 64) -> list[str]:
    """The model's finished whole reviews from n fresh starts (the seed's "whole normalization" stream): the texts
    whose rewards a whole-review reward model sets to mean 0, std 1 (`reward_model.normalize_on`)."""
    norm_seed = derive_seed(seed, "whole normalization")
    starts = review_starts(n, norm_seed)
    _, responses, finished = sample_whole_reviews(model, tokenizer, starts, max_new_tokens, seed=norm_seed)
    return [s + r for s, r, ok in zip(starts, responses, finished) if ok]


def zero_head(model):
    """Set the reward model's scalar head to zero, in place, and return the model: every reward is then
    exactly 0 before training, so the first steps start from "no preference" instead of a random ranking
    (with sum pooling a random head adds up to large, noisy rewards over a long review)."""
    import torch

    with torch.no_grad():
        model.score.weight.zero_()  # (1, d); the head has no bias
        if getattr(model.score, "bias", None) is not None:
            model.score.bias.zero_()
    return model


def gold_agreement(model, tokenizer, pairs: list[tuple[str, str, str]], batch_size: int = 128) -> dict:
    """Share of (prompt, a, b) pairs the reward model orders like the noise-free gold (the reading taste of
    prompt + completion, `gold_preference`); pairs gold calls a tie are left out. Also the number of pairs gold
    decides, and by |gold gap| band [pairs, share] (share None where a band is empty): `pair_accuracy` with a in
    the chosen place, and its `accuracy_by_gap`, in the form the whole-review summaries record."""
    report = pair_accuracy(model, tokenizer, [dict(prompt=p, chosen=a, rejected=b) for p, a, b in pairs], batch_size)
    bands = accuracy_by_gap(report)
    return dict(gold_accuracy=report["gold_accuracy"], n_decided=report["n_gold_decided"],
                by_gap={band: [n, None if math.isnan(acc) else acc]  # an empty band: None, not NaN (JSON)
                        for band, n, acc in zip(bands["bands"], bands["n"], bands["accuracy"])})


# ---- the recipe: a reward model for whole reviews, from sampling to a normalised, measured model

@dataclass
class WholeRewardConfig:
    """The whole-review reward model recipe (benchmarks/README.md, "Reward models for whole reviews"):
    92% held-out agreement with gold where a last-token head on 2k pairs reached 78%."""

    n_groups: int = 2000
    """training starts (`review_starts`); the policy writes `group_size` whole reviews from each"""
    group_size: int = 4
    """whole reviews sampled from each training start"""
    groups_per_batch: int = 16
    """groups whose reviews form one step's batch; every pair among the batch's reviews is labelled
    (16 groups of 4: 64 reviews, 2,016 judgements)"""
    epochs: int = 4
    """passes over the training batches (2,000 groups of 4 in batches of 16 groups: 125 steps an epoch, 500 in
    all; 1,000 groups for 4 epochs reached 86.9%, for 8 epochs stopped at step 245 92.1%)"""
    lr: float = 5e-4
    """AdamW learning rate, linear warmup then linear decay to 0"""
    warmup: int = 20
    """warmup steps"""
    annotator_temperature: float = 0.1
    """Bradley-Terry noise of the simulated annotator that labels the training pairs"""
    pooling: str = "sum"
    """where the head reads: "sum" adds a score per token (suits VADER's sum of word scores), "last" reads
    the last token"""
    zero_head: bool = True
    """start the head at zero, so every reward is 0 before training (`zero_head`)"""
    n_heldout: int = 1000
    """fresh pairs (two whole reviews from one fresh start) checked against the gold preference"""
    n_normalize: int = 512
    """base-model whole reviews from fresh starts whose rewards are set to mean 0, std 1"""
    max_new_tokens: int = 64
    """longest review sampled; longer ones are cut off and left out"""
    seed: int = 0
    """seeds the starts, the samples, the annotator, the batch order and dropout"""
    max_seconds: float | None = None
    """stop training after the first step past this many seconds (None: run every planned step)"""

    def __post_init__(self):
        for name in ("n_groups", "groups_per_batch", "epochs", "n_heldout", "n_normalize", "max_new_tokens"):
            check_count(name, getattr(self, name))
        check_count("group_size", self.group_size, minimum=2)
        check_count("warmup", self.warmup, minimum=1)
        check_count("seed", self.seed, minimum=0)
        check_positive("lr (the learning rate)", self.lr)
        check_positive("annotator_temperature", self.annotator_temperature)
        if self.pooling not in ("last", "sum"):
            raise ValueError(f"pooling must be 'last' or 'sum', got {self.pooling!r}")
        if self.max_seconds is not None:
            check_positive("max_seconds", self.max_seconds)
        if self.n_groups < self.groups_per_batch:
            raise ValueError(f"n_groups ({self.n_groups}) must be at least groups_per_batch "
                             f"({self.groups_per_batch}): a step needs a whole batch of groups")


def sample_groups(model, tokenizer, n: int, group_size: int, seed: int, max_new_tokens: int = 64,
                  progress: bool = False) -> list[tuple[str, list[str]]]:
    """n (start, whole reviews) groups: `group_size` samples from each of `review_starts(n, seed)`;
    reviews cut off at max_new_tokens are left out of their group."""
    from tqdm.auto import tqdm

    starts, out, chunk = review_starts(n, seed), [], max(1, 256 // group_size)
    for c in tqdm(range(0, n, chunk), desc="whole reviews", disable=not progress, unit="batch"):
        batch = [s for s in starts[c : c + chunk] for _ in range(group_size)]
        _, responses, finished = sample_whole_reviews(model, tokenizer, batch, max_new_tokens,
                                                      seed=derive_seed(seed, "group chunk", c), batch_size=len(batch))
        for g, s in enumerate(starts[c : c + chunk]):
            k = slice(g * group_size, (g + 1) * group_size)
            out.append((s, [r for r, ok in zip(responses[k], finished[k]) if ok]))
    return out


def batch_groups(groups: list[tuple[str, list[str]]], groups_per_batch: int) -> list[tuple[str, list[str]]]:
    """Every `groups_per_batch` consecutive groups merged into one group of whole texts (start + review,
    prompt ""), so `label_groups` judges every pair among a batch's reviews; a last, short chunk is dropped."""
    n = len(groups) // groups_per_batch * groups_per_batch
    return [("", [s + r for s, rs in groups[i : i + groups_per_batch] for r in rs])
            for i in range(0, n, groups_per_batch)]


def train_whole_review_reward_model(cfg: WholeRewardConfig | None = None, policy=None, base=None,
                                    progress: bool = True, batches: list[tuple[str, list[str]]] | None = None):
    """(reward model, tokenizer, summary): the whole-review recipe end to end.

    1. sample `n_groups` groups of `group_size` whole reviews from the policy (default: the course model);
    2. label every pair among each batch's reviews with `SimulatedAnnotator(annotator_temperature)`;
    3. fine-tune a reward model on the backbone `base` (default: the course model) with the head at zero,
       `train_on_groups`, one batch per step;
    4. measure agreement with gold on `n_heldout` fresh pairs (`gold_agreement`, by |gold gap| too);
    5. normalise: rewards of `n_normalize` fresh base-model whole reviews get mean 0, std 1.
    The summary holds the counts, the agreement, the normalisation, the config and the seconds. `batches`: step 1's
    batches of reviews (`batch_groups` of `sample_groups`) when the caller has sampled them already."""
    import time

    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import RewardConfig, make_reward_model, normalize_on

    cfg = cfg or WholeRewardConfig()
    clock, cpu = time.perf_counter(), time.process_time()
    policy_model, policy_tok = policy if policy is not None else load_model()
    if batches is None:
        groups = sample_groups(policy_model, policy_tok, cfg.n_groups, cfg.group_size,
                               seed=derive_seed(cfg.seed, "whole groups"), max_new_tokens=cfg.max_new_tokens,
                               progress=progress)
        batches = batch_groups(groups, cfg.groups_per_batch)
    annotator = SimulatedAnnotator(cfg.annotator_temperature, seed=cfg.seed)
    merged = batches
    annotator.prime([t for _, texts in merged for t in texts])
    labelled = label_groups(annotator, merged)
    sampled_s = time.perf_counter() - clock

    model, tokenizer = make_reward_model(base, pooling=cfg.pooling, seed=cfg.seed)
    if cfg.zero_head:
        zero_head(model)
    train_cpu = time.process_time()
    result = train_on_groups(model, tokenizer, labelled, RewardConfig(epochs=cfg.epochs, lr=cfg.lr, warmup=cfg.warmup,
                                                                      seed=cfg.seed),
                             groups_per_batch=1, progress=progress, max_seconds=cfg.max_seconds)
    train_cpu = time.process_time() - train_cpu

    heldout_seed = derive_seed(cfg.seed, "whole heldout")  # the starts and the samples
    heldout_starts = review_starts(cfg.n_heldout, heldout_seed)
    heldout = sample_whole_pairs(policy_model, policy_tok, cfg.n_heldout, starts=heldout_starts,
                                 max_new_tokens=cfg.max_new_tokens, seed=heldout_seed, progress=progress)
    report = gold_agreement(model, tokenizer, heldout)
    normal = normalizing_reviews(policy_model, policy_tok, cfg.n_normalize, cfg.seed, cfg.max_new_tokens)
    mean, std = normalize_on(model, tokenizer, normal)
    losses = result.losses
    summary = dict(
        task="whole", gold_accuracy=report["gold_accuracy"], n_heldout_pairs=report["n_decided"],
        by_gap={band: dict(n=n, accuracy=acc) for band, (n, acc) in report["by_gap"].items()},
        n_train_groups=len(merged) * cfg.groups_per_batch, n_train_reviews=sum(len(texts) for _, texts in merged),
        n_train_pairs=sum(map(len, labelled)), steps=len(losses),
        planned_steps=cfg.epochs * max(1, len([g for g in labelled if g])),
        final_train_loss=sum(losses[-20:]) / len(losses[-20:]),
        loss_curve=[round(sum(losses[i : i + 25]) / len(losses[i : i + 25]), 4) for i in range(0, len(losses), 25)],
        reward_mean=mean, reward_std=std, n_normalize_texts=len(normal), pooling=cfg.pooling,
        config=vars(cfg), sampling_seconds=round(sampled_s, 1), training_seconds=round(result.seconds, 1),
        training_cpu_seconds=round(train_cpu, 1), seconds=round(time.perf_counter() - clock, 1),
        cpu_seconds=round(time.process_time() - cpu, 1))
    return model, tokenizer, summary


# ---- PPO on whole reviews: the course's default task

WHOLE_REVIEW_REWARD_MODEL = Path(__file__).resolve().parents[1] / "assets" / "whole_review_reward_model"
"""the shipped whole-review reward model (rebuilt by scripts/build_whole_review_reward_model.py)"""

WHOLE_REVIEW_PLAIN = recipe("whole-review-plain")
"""the plain whole-review setting (`whole_review_config(plain=True)`; rlhf_lib/recipes.py says what it sets)"""

WHOLE_REVIEW_PPO = recipe("whole-review")
"""what `whole_review_config` changes in `RLHFConfig`'s defaults: the course's recipe for whole reviews
(rlhf_lib/recipes.py says what each field is for; benchmarks/README.md what it achieved)"""

WHOLE_REVIEW_START_WEIGHTS = (1.0, 1.0, 4.0)
"""the relative weights of the PPO starts (course prompt, other opening, start of text): the start of text is
the hardest, and gets most of the batch"""


def whole_review_config(plain: bool = False, **changes):
    """An `RLHFConfig` for whole reviews: responses run to end-of-text, at most 64 tokens, with the recipe
    measured on this task (`WHOLE_REVIEW_PPO`; plain=True: `WHOLE_REVIEW_PLAIN`); `changes` override any field."""
    return recipe_config("whole-review-plain" if plain else "whole-review", **changes)


def whole_review_prompts(n: int = 4096, seed: int = 0,
                         weights: tuple[float, float, float] = WHOLE_REVIEW_START_WEIGHTS) -> list[str]:
    """The PPO prompts of the whole-review task: n starts (`review_starts`: a course prompt, another opening
    of the language, or nothing, weighted 1:1:4 unless `weights` says otherwise), taken in turn by
    `train_rlhf`."""
    return review_starts(n, seed, weights)


def evaluate_whole(policy, reference, tokenizer, reward_model=None, reward_tokenizer=None, n: int = 300,
                   seed: int = 1234, max_new_tokens: int = 64) -> dict:
    """`evaluate_policy` of whole reviews (to end-of-text) twice: n from the course prompts ("course") and n
    from the start of text ("empty")."""
    from rlhf_lib.reviews import PROMPTS
    from rlhf_lib.rlhf import evaluate_policy

    return {where: evaluate_policy(policy, reference, tokenizer, reward_model, reward_tokenizer, n=n, seed=seed,
                                   max_new_tokens=max_new_tokens, stop_at="text", starts=starts)
            for where, starts in (("course", PROMPTS), ("empty", [""]))}


# ---- DPO on whole reviews

WHOLE_REVIEW_DPO = recipe("whole-review-dpo")
"""what `whole_review_dpo_config` changes in `DPOConfig`'s defaults (rlhf_lib/recipes.py)"""


def whole_review_dpo_config(**changes):
    """A `DPOConfig` for pairs of whole reviews, with the setting measured on this task (`WHOLE_REVIEW_DPO`);
    `changes` override any field."""
    return recipe_config("whole-review-dpo", **changes)


def whole_review_labels(model, tokenizer, n: int = 2000, seed: int = 11, temperature: float = 0.1,
                        progress: bool = False) -> list[dict]:
    """Preference pairs of whole reviews for DPO: `n` pairs of the model's whole reviews, both of a pair from
    one start (`sample_whole_pairs`), judged by the simulated annotator (`SimulatedAnnotator(temperature)`,
    seed 0); ties are left out, so a few fewer than n come back. {"prompt", "chosen", "rejected"} each."""
    pairs = sample_whole_pairs(model, tokenizer, n, seed=seed, progress=progress)
    groups = label_groups(SimulatedAnnotator(temperature, seed=0), [(p, [a, b]) for p, a, b in pairs])
    return [r for group in groups for r in group]
