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

import random

from rlhf_lib.reviews import PROMPTS, generate_review, render_raw, sentences, tokenize
from rlhf_lib.runtime import check_count, check_positive

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
                                                      temperature, seed=seed * 1_000_003 + round_,
                                                      batch_size=2 * batch_size)
        round_ += 1
        for k in range(batch_size):
            a, b = responses[k], responses[k + batch_size]
            if not (finished[k] and finished[k + batch_size]) or len(out) == n:
                continue
            pair = (firsts[k], a, b) if same_start else ("", firsts[k] + a, seconds[k] + b)
            if pair[0] + pair[1] != pair[0] + pair[2]:
                out.append(pair)
                bar.update(1)
    bar.close()
    return out


# ---- reward models on groups of whole reviews

POOLINGS = ("last", "sum", "mean")


def label_groups(annotator, groups: list[tuple[str, list[str]]]) -> list[list[dict]]:
    """Every pair within each group of completions for one prompt, judged by `annotator` (anything with
    .compare(prompt, a, b)): one list of {"prompt", "chosen", "rejected"} per group, ties left out.
    A group of K completions gives K (K - 1) / 2 judgements, as when a labeller ranks K at once."""
    out = []
    for prompt, completions in groups:
        pairs = []
        for i in range(len(completions)):
            for j in range(i + 1, len(completions)):
                a, b = completions[i], completions[j]
                if a == b:
                    continue
                choice = annotator.compare(prompt, a, b)
                if choice in ("a", "b"):
                    chosen, rejected = (a, b) if choice == "a" else (b, a)
                    pairs.append(dict(prompt=prompt, chosen=chosen, rejected=rejected))
        out.append(pairs)
    return out


def pooled_rewards(model, ids, mask):
    """(B,) raw rewards under the model's `reward_pooling`: "last" and "sum" as in
    `rlhf_lib.reward_model.raw_rewards`, "mean" the head's per-token scores averaged over real tokens."""
    from rlhf_lib.lm import position_ids_from_mask
    from rlhf_lib.reward_model import raw_rewards

    pooling = getattr(model.config, "reward_pooling", "last")
    if pooling != "mean":
        return raw_rewards(model, ids, mask)
    hidden = model.transformer(input_ids=ids, attention_mask=mask,
                               position_ids=position_ids_from_mask(mask)).last_hidden_state  # (B, T, d)
    scores = model.score(hidden).squeeze(-1)  # (B, T)
    return (scores * mask).sum(-1) / mask.sum(-1)


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


def train_on_groups(model, tokenizer, groups: list[list[dict]], cfg=None, groups_per_batch: int = 16,
                    progress: bool = True, max_seconds: float | None = None):
    """Fit a reward model in place on labelled pairs that come in groups (`label_groups`): a batch is
    `groups_per_batch` groups, each distinct text is scored once, and the Bradley-Terry loss is the mean
    over every labelled pair of the batch. With groups of one pair this is `train_reward_model`'s step.
    `cfg` is a `RewardConfig` (epochs, lr, warmup, seed; its batch_size is not used).
    `max_seconds`: stop after the first step that ends past this many seconds of training (the learning-rate
    schedule stays the one planned for all the epochs); `len(result.losses)` says how many steps ran."""
    import time

    import torch
    from tqdm.auto import tqdm

    from rlhf_lib.reward_model import RewardConfig, RewardResult, bradley_terry_loss, encode

    cfg = cfg or RewardConfig()
    check_count("groups_per_batch", groups_per_batch)
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds)
    groups = [g for g in groups if g]
    if not groups:
        raise ValueError("no labelled pairs to train on (every group was empty or all ties)")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(groups) // groups_per_batch)
    total = cfg.epochs * steps_per_epoch
    result, start, step = RewardResult(), time.perf_counter(), 0
    model.train()
    bar = tqdm(total=total, desc="reward model", disable=not progress)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(groups), generator=gen).tolist()
        for b in range(steps_per_epoch):
            pairs = [p for g in order[b * groups_per_batch : (b + 1) * groups_per_batch] for p in groups[g]]
            index: dict[str, int] = {}
            for p in pairs:
                for text in (p["prompt"] + p["chosen"], p["prompt"] + p["rejected"]):
                    index.setdefault(text, len(index))
            r = pooled_rewards(model, *encode(tokenizer, list(index)))  # (U,) one per distinct text
            r_chosen = r[[index[p["prompt"] + p["chosen"]] for p in pairs]]  # (P,)
            r_rejected = r[[index[p["prompt"] + p["rejected"]] for p in pairs]]  # (P,)
            loss = bradley_terry_loss(r_chosen, r_rejected)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min((step + 1) / cfg.warmup, 1.0 - step / total)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            result.losses.append(loss.item())
            result.accuracies.append((r_chosen > r_rejected).float().mean().item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                break
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def gold_agreement(model, tokenizer, pairs: list[tuple[str, str, str]], batch_size: int = 128) -> dict:
    """Share of (prompt, a, b) pairs the reward model orders like the noise-free gold (VADER compound of
    prompt + completion); pairs gold calls a tie are left out. Also the share by |gold gap| band."""
    import torch

    from rlhf_lib.evaluate import gold_sentiment
    from rlhf_lib.reward_model import encode

    texts = [p + a for p, a, _ in pairs] + [p + b for p, _, b in pairs]
    model.eval()
    with torch.no_grad():
        r = torch.cat([pooled_rewards(model, *encode(tokenizer, texts[i : i + batch_size]))
                       for i in range(0, len(texts), batch_size)]).numpy()
    margin = r[: len(pairs)] - r[len(pairs) :]
    gold = gold_sentiment(texts)
    gap = gold[: len(pairs)] - gold[len(pairs) :]
    decided = gap != 0
    right = (margin > 0) == (gap > 0)
    edges = (0.0, 0.1, 0.2, 0.5, 2.0)
    bands = {f"{lo:g}-{hi:g}": [int((m := decided & (abs(gap) >= lo) & (abs(gap) < hi)).sum()),
                                 float(right[m].mean()) if m.any() else None]
             for lo, hi in zip(edges[:-1], edges[1:])}
    return dict(gold_accuracy=float(right[decided].mean()), n_decided=int(decided.sum()), by_gap=bands)
