"""Over-optimisation, measured: a learned (proxy) reward against the gold one, for best-of-n and for RL.

The gold judge of notebook 09 is the course's taste plus the fluency it takes for granted: a review's gold
score is its VADER compound score when the grammar accepts it, and -1 (the worst score) when it does not.
The reward models that learn from the simulated annotator see almost only fluent reviews (the course model
writes about 3% broken ones), and the annotator judges sentiment alone, so nothing tells them that broken text
is bad; the gold judge does.

    gold_scores(texts)               the gold score of each text
    gold_metrics(texts)              the figures `train_rlhf(metrics=...)` logs each iteration
    train_proxy_reward_model(...)    a whole-review reward model from n_pairs labelled pairs
    bon_pools(...)                   one pool of base-policy samples per start, scored by proxy and gold
    pools_base(pools)                the base policy's proxy, gold and grammar from those pools
    checkpoint_curve(history, ...)   proxy, gold and sqrt(KL) of an RL run, one point per few iterations
    gold_peak(curve)                 where the gold score of a curve is highest
    up_to_the_turn(curve)            the points Gao et al.'s forms are fitted to: the rise and the turn
    Snapshots(policy, every)         the policy's weights during a run, to look at a checkpoint later

Each RL iteration samples a fresh batch from the policy as it stands, so its figures measure that
checkpoint of the policy; `checkpoint_curve` averages `window` consecutive iterations into one point.
"""

from __future__ import annotations

import numpy as np

from rlhf_lib.runtime import check_count, check_positive, derive_seed

BROKEN = -1.0
"""the gold score of a review the grammar rejects"""


def gold_scores(texts) -> np.ndarray:
    """(N,) VADER compound score of each grammatical text, `BROKEN` (-1) for the others."""
    return _gold(texts)[0]


def _gold(texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gold scores, VADER scores, grammatical or not) of each text."""
    from rlhf_lib.evaluate import gold_sentiment
    from rlhf_lib.reviews import is_grammatical

    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    fluent = np.array([is_grammatical(t) for t in texts])
    vader = gold_sentiment(texts)
    return np.where(fluent, vader, BROKEN), vader, fluent


def gold_metrics(texts) -> dict:
    """Gold figures of a batch: mean gold score, mean VADER score (fluent or not), share grammatical."""
    gold, vader, fluent = _gold(texts)
    return dict(gold=float(gold.mean()), gold_sentiment=float(vader.mean()), grammatical=float(fluent.mean()))


def train_proxy_reward_model(n_pairs: int, policy=None, epochs: int = 2, lr: float = 5e-4, seed: int = 0,
                             n_heldout: int = 400, n_normalize: int = 256, progress: bool = True):
    """(reward model, tokenizer, summary): a whole-review reward model fitted to `n_pairs` pairs.

    Each pair is two whole reviews of the policy (default: the course model) from one start
    (`sample_whole_pairs`), labelled by the blind annotator (`VaderAnnotator`: VADER alone, so nothing in the
    labels says broken text is bad); the model (sum pooling, head at zero) is trained on 16 pairs a step for
    `epochs` epochs, checked on `n_heldout` fresh pairs against the gold preference (`gold_agreement`) and
    normalised on `n_normalize` base whole reviews. summary: n_pairs (labelled,
    ties left out), gold_accuracy, n_heldout (decided pairs), steps, seconds."""
    import time

    from rlhf_lib.feedback import VaderAnnotator
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import RewardConfig, make_reward_model, normalize_on
    from rlhf_lib.whole_reviews import (
        gold_agreement,
        label_groups,
        normalizing_reviews,
        sample_whole_pairs,
        train_on_groups,
        zero_head,
    )

    for name, value in (("n_pairs", n_pairs), ("epochs", epochs), ("n_heldout", n_heldout),
                        ("n_normalize", n_normalize)):
        check_count(name, value)
    check_count("seed", seed, minimum=0)
    check_positive("lr (the learning rate)", lr)
    start = time.perf_counter()
    model, tokenizer = policy if policy is not None else load_model()
    pairs = sample_whole_pairs(model, tokenizer, n_pairs, seed=derive_seed(seed, "proxy pairs"), progress=progress)
    labelled = label_groups(VaderAnnotator(0.1, seed=seed), [(p, [a, b]) for p, a, b in pairs])
    reward_model, reward_tokenizer = make_reward_model(None, pooling="sum", seed=seed)
    zero_head(reward_model)
    result = train_on_groups(reward_model, reward_tokenizer, labelled, RewardConfig(epochs=epochs, lr=lr, warmup=5,
                                                                                    seed=seed),
                             groups_per_batch=16, progress=progress)
    heldout = sample_whole_pairs(model, tokenizer, n_heldout, seed=derive_seed(seed, "proxy heldout"))
    report = gold_agreement(reward_model, reward_tokenizer, heldout)
    normalize_on(reward_model, reward_tokenizer, normalizing_reviews(model, tokenizer, n_normalize, seed))
    summary = dict(n_pairs=sum(map(len, labelled)), gold_accuracy=report["gold_accuracy"],
                   n_heldout=report["n_decided"], steps=len(result.losses),
                   seconds=round(time.perf_counter() - start, 1))
    return reward_model, reward_tokenizer, summary


def bon_pools(policy, tokenizer, reward_model, reward_tokenizer, starts: list[str], pool_size: int, seed: int = 0,
              max_new_tokens: int = 64,
              unfinished_penalty: float = 1.0) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """One (texts, proxy, gold) pool of `pool_size` whole reviews per start, sampled from `policy`.

    proxy: the reward model's score, minus `unfinished_penalty` for a review cut off at max_new_tokens (what
    the RL trainer pays, `score_responses`); gold: `gold_scores`. The pools feed `bon.best_of_n_curve`."""
    from rlhf_lib.reward_model import score_texts
    from rlhf_lib.whole_reviews import sample_whole_reviews

    check_count("pool_size", pool_size)
    starts = list(starts)
    if not starts:
        raise ValueError('starts is empty: give at least one start ("" is the start of text)')
    everything = [s for s in starts for _ in range(pool_size)]
    _, responses, finished = sample_whole_reviews(policy, tokenizer, everything, max_new_tokens, seed=seed,
                                                  batch_size=256)
    texts = [s + r for s, r in zip(everything, responses)]
    proxy = score_texts(reward_model, reward_tokenizer, texts) - unfinished_penalty * (~np.array(finished))
    gold = gold_scores(texts)
    return [(texts[k : k + pool_size], proxy[k : k + pool_size], gold[k : k + pool_size])
            for k in range(0, len(texts), pool_size)]


def pools_base(pools) -> dict:
    """The base policy's point of a curve from its best-of-n pools (`bon_pools`), i.e. best-of-1: mean proxy,
    mean gold and share grammatical, each averaged per start, then over starts."""
    from rlhf_lib.reviews import is_grammatical

    pools = list(pools)
    if not pools:
        raise ValueError("no pools: give one (texts, proxy, gold) per start")
    return dict(proxy=float(np.mean([np.mean(p) for _, p, _ in pools])),
                gold=float(np.mean([np.mean(g) for _, _, g in pools])),
                grammatical=float(np.mean([np.mean([is_grammatical(t) for t in texts]) for texts, _, _ in pools])))


def checkpoint_curve(history: list[dict], window: int = 5, base: dict | None = None) -> dict:
    """An RL run's curve from `train_rlhf`'s history (logged with `metrics=gold_metrics`): one point per
    `window` consecutive iterations, each the mean of their figures, after a first point for the base policy
    at KL 0: `base` (dict with proxy, gold and grammatical, measured on a large sample of the base policy, e.g.
    a best-of-n pool at n = 1) or, without it, the first iteration's figures (sampled before any update).

    Returns arrays: iteration (the last of each window; 0 for the base), kl (mean k1 per response, at least 0),
    d = sqrt(kl), proxy (the trainer's score), gold, gold_gain (gold minus the base's), grammatical."""
    check_count("window", window)
    needed = ("score", "kl_k1", "gold", "grammatical")
    if not history or any(k not in history[0] for k in needed):
        raise ValueError(f"history must be train_rlhf's, logged with metrics=gold_metrics (needs {needed})")
    first = base or dict(proxy=history[0]["score"], gold=history[0]["gold"], grammatical=history[0]["grammatical"])
    rows = [dict(iteration=0, kl=0.0, proxy=first["proxy"], gold=first["gold"], grammatical=first["grammatical"])]
    for end in range(window, len(history) + 1, window):
        part = history[end - window : end]
        rows.append(dict(iteration=part[-1]["iteration"], kl=max(0.0, float(np.mean([h["kl_k1"] for h in part]))),
                         proxy=float(np.mean([h["score"] for h in part])),
                         gold=float(np.mean([h["gold"] for h in part])),
                         grammatical=float(np.mean([h["grammatical"] for h in part]))))
    curve = {k: np.array([r[k] for r in rows], dtype=float) for k in rows[0]}
    curve["d"] = np.sqrt(curve["kl"])
    curve["gold_gain"] = curve["gold"] - curve["gold"][0]
    return curve


def up_to_the_turn(curve: dict) -> slice:
    """The points of a curve from the base through the gold peak to the last point after it whose gold is still
    above the base's: the rise and the turn that Gao et al.'s forms describe, without the collapse to the floor
    (every review broken: gold -1) that follows here."""
    peak = gold_peak(curve)
    below = np.flatnonzero(curve["gold_gain"][peak:] <= 0)
    return slice(0, peak + int(below[0]) if len(below) else len(curve["gold"]))


def gold_peak(curve: dict) -> int:
    """Index of the highest gold score of a curve (the first, if several tie)."""
    return int(np.argmax(curve["gold"]))


class Snapshots:
    """An `on_iteration` callback for `train_rlhf`: a copy of the policy's weights (on the CPU) at the start
    (key 0) and after every `every` iterations (key: the iterations done), so a checkpoint (the gold peak) can be
    looked at later. Iteration k samples with the weights after k - 1 updates: the policy that sampled a
    curve point's first iteration is `weights[point's iteration - window]`."""

    def __init__(self, policy, every: int):
        check_count("every", every)
        self.policy, self.every, self.weights = policy, every, {}
        self.weights[0] = self._copy()

    def _copy(self) -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.policy.state_dict().items()}

    def __call__(self, result) -> None:
        done = len(result.history)
        if done % self.every == 0:
            self.weights[done] = self._copy()

    def load(self, iteration: int, model):
        """`model` (a copy of the policy's architecture) with the weights kept after `iteration`; returns it."""
        if iteration not in self.weights:
            raise KeyError(f"no snapshot after iteration {iteration}; kept: {sorted(self.weights)}")
        model.load_state_dict(self.weights[iteration])
        return model.eval()
