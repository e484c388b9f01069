"""Whole reviews: the starts come from the language in the asked proportions, group labelling judges every
pair, the group trainer's loss equals a pair-by-pair recomputation, the mean head matches an unpadded
forward pass, and gold agreement equals a pair-by-pair tally."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.feedback import ScoreJudge
from rlhf_lib.reviews import PROMPTS, generate_reviews, is_grammatical
from rlhf_lib.reward_model import RewardConfig, encode, make_reward_model, raw_rewards, score_texts
from rlhf_lib.whole_reviews import (
    gold_agreement,
    label_groups,
    language_openings,
    review_starts,
    sample_whole_pairs,
    train_on_groups,
    zero_head,
)


def test_language_openings_begin_real_reviews():
    openings = language_openings(200, seed=3)
    assert openings == language_openings(200, seed=3)
    first_sentences = {r.split(".")[0].split("!")[0] for r in generate_reviews(20000, seed=11)}
    for o in openings:
        words = o.replace(",", " ,").split()
        assert 1 <= len(words) <= 3
        # some review of an independent sample starts with these words and goes on
        assert any(s.startswith(o) and len(s) > len(o) for s in first_sentences), o


def test_review_starts_mix_the_three_kinds_in_proportion():
    starts = review_starts(3000, seed=0, weights=(1, 2, 1))
    kinds = Counter("empty" if s == "" else "course" if s in PROMPTS else "other" for s in starts)
    # openings of the language coincide with a course prompt now and then ("The plot was"), so "other" < 1/2
    assert abs(kinds["empty"] / 3000 - 0.25) < 0.03
    assert 0.35 < kinds["other"] / 3000 < 0.5 and kinds["course"] / 3000 > 0.25
    assert set(review_starts(50, seed=1, weights=(1, 0, 0))) <= set(PROMPTS)
    assert review_starts(20, seed=1, weights=(0, 0, 1)) == [""] * 20
    assert review_starts(100, seed=5) == review_starts(100, seed=5)
    with pytest.raises(ValueError, match="weights"):
        review_starts(10, weights=(1, -1, 1))
    with pytest.raises(ValueError, match="weights"):
        review_starts(10, weights=(1, 1))


def test_label_groups_judges_every_pair_once():
    judge = ScoreJudge(lambda texts: gold_sentiment(texts), name="gold")
    groups = [("The plot was", [" great.", " awful.", " dull.", " fine. I loved the music.", " great."]),
              ("", ["I loved it.", "Fine.", "The ending was weak."])]
    labelled = label_groups(judge, groups)
    for (prompt, cs), pairs in zip(groups, labelled):
        expected = []
        for a, b in itertools.combinations(cs, 2):
            s_a, s_b = gold_sentiment([prompt + a, prompt + b])
            if a != b and s_a != s_b:
                expected.append((a, b) if s_a > s_b else (b, a))
        assert sorted((p["chosen"], p["rejected"]) for p in pairs) == sorted(expected)
        assert all(p["prompt"] == prompt for p in pairs)


@pytest.fixture
def rm_no_dropout():
    torch.manual_seed(0)
    model, tok = make_reward_model()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model, tok


@pytest.mark.parametrize("pooling", ["last", "sum", "mean"])
def test_group_step_loss_equals_pair_by_pair(rm_no_dropout, pooling):
    model, tok = rm_no_dropout
    model.config.reward_pooling = pooling
    groups = [[dict(prompt="The plot was", chosen=" great.", rejected=" dull."),
               dict(prompt="The plot was", chosen=" great.", rejected=" awful. I hated the music."),
               dict(prompt="The plot was", chosen=" dull.", rejected=" awful. I hated the music.")],
              [dict(prompt="", chosen="What a lovely film!", rejected="The ending was weak.")]]
    pairs = [p for g in groups for p in g]

    def alone(text):  # one unpadded text through the whole model, pooled by hand
        ids, mask = encode(tok, [text])
        hidden = model.transformer(input_ids=ids).last_hidden_state[0]  # (T, d)
        scores = model.score(hidden).squeeze(-1)  # (T,)
        return {"last": scores[-1], "sum": scores.sum(), "mean": scores.mean()}[pooling]

    with torch.no_grad():
        expected = torch.stack([-F.logsigmoid(alone(p["prompt"] + p["chosen"]) - alone(p["prompt"] + p["rejected"]))
                                for p in pairs]).mean()
    result = train_on_groups(model, tok, groups, RewardConfig(epochs=1, lr=1e-4), groups_per_batch=2, progress=False)
    assert len(result.losses) == 1
    assert result.losses[0] == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("pooling", ["last", "sum", "mean"])
def test_zero_head_starts_at_no_preference_and_still_learns(rm_no_dropout, pooling):
    model, tok = rm_no_dropout
    model.config.reward_pooling = pooling
    texts = ["The plot was good.", "I expected more. The music was dull, but the ending was lovely."]
    with torch.no_grad():
        before = raw_rewards(model, *encode(tok, texts))
        assert (before != 0).all()  # the fresh random head has an opinion
        zero_head(model)
        after = raw_rewards(model, *encode(tok, texts))
    assert torch.equal(after, torch.zeros(len(texts)))
    groups = [[dict(prompt="The plot was", chosen=" great.", rejected=" dull.")],
              [dict(prompt="", chosen="What a lovely film!", rejected="The ending was weak.")]]
    result = train_on_groups(model, tok, groups, RewardConfig(epochs=2, lr=1e-3, warmup=1), groups_per_batch=2,
                             progress=False)
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-7)  # Bradley-Terry at margin 0: -log sigmoid(0)
    assert result.losses[1] < math.log(2)  # the head (and, through it, the backbone) moves off zero


def test_max_seconds_stops_after_the_step_that_runs_past_it(rm_no_dropout):
    model, tok = rm_no_dropout
    groups = [[dict(prompt="The plot was", chosen=" great.", rejected=" dull.")],
              [dict(prompt="", chosen="What a lovely film!", rejected="The ending was weak.")]]
    cfg = RewardConfig(epochs=3, lr=1e-4)
    with pytest.raises(ValueError, match="max_seconds"):
        train_on_groups(model, tok, groups, cfg, groups_per_batch=1, progress=False, max_seconds=0)
    assert len(train_on_groups(model, tok, groups, cfg, groups_per_batch=1, progress=False,
                               max_seconds=1e-9).losses) == 1
    assert len(train_on_groups(model, tok, groups, cfg, groups_per_batch=1, progress=False).losses) == 3 * 2


def test_mean_pooling_ignores_padding(rm_no_dropout):
    model, tok = rm_no_dropout
    model.config.reward_pooling = "mean"
    texts = ["The plot was good.", "I expected more. The music was dull, but the ending was lovely."]
    with torch.no_grad():
        left = raw_rewards(model, *encode(tok, texts, "left"))
        right = raw_rewards(model, *encode(tok, texts, "right"))
        one = torch.cat([raw_rewards(model, *encode(tok, [t])) for t in texts])
    torch.testing.assert_close(left, one, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(right, one, rtol=1e-5, atol=1e-5)


def test_a_mean_pooled_model_is_scored_as_it_is_trained(rm_no_dropout):
    """Training (`train_on_groups`) and scoring (`score_texts`) read one pooling list: a mean-pooled model's
    score is the mean of its head's per-token scores, computed here by hand (scoring once read "mean" as
    "last", so a mean-pooled model was trained one way and scored another)."""
    model, tok = rm_no_dropout
    model.config.reward_pooling = "mean"
    model.config.reward_mean, model.config.reward_std = 0.0, 1.0
    texts = ["The plot was good.", "I expected more. The music was dull, but the ending was lovely."]
    with torch.no_grad():
        by_hand = []
        for t in texts:
            ids, _ = encode(tok, [t])
            per_token = model.score(model.transformer(input_ids=ids).last_hidden_state).squeeze(-1)  # (1, T)
            by_hand.append(float(per_token.mean()))
    np.testing.assert_allclose(score_texts(model, tok, texts), by_hand, rtol=1e-5, atol=1e-6)
    model.config.reward_pooling = "max"
    with pytest.raises(ValueError, match="reward_pooling='max'"):
        score_texts(model, tok, texts)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_gold_agreement_equals_a_pair_by_pair_tally(rm_no_dropout, pooling):
    """Each text scored alone (no padding, no batch) and judged by the reading taste worked out here (VADER,
    plus 3 for a grammatical text); the pairs counted by hand, broken reviews (cut short) among them."""
    model, tok = rm_no_dropout
    model.config.reward_pooling = pooling
    reviews = [r if i % 3 else r[: len(r) // 2] for i, r in enumerate(generate_reviews(120, seed=2))]
    pairs = [("", a, b) for a, b in zip(reviews[::2], reviews[1::2]) if a != b]
    taste = {t: gold_sentiment(t)[0] + 3.0 * is_grammatical(t) for _, a, b in pairs for t in (a, b)}
    with torch.no_grad():
        r = {t: raw_rewards(model, *encode(tok, [t])).item() for _, a, b in pairs for t in (a, b)}
    bands = {"0-0.1": (0.0, 0.1), "0.1-0.2": (0.1, 0.2), "0.2-0.5": (0.2, 0.5), "0.5-2": (0.5, 2.0),
             "2-inf": (2.0, float("inf"))}
    tally = {band: [0, 0] for band in bands}  # band: [decided pairs, ordered like gold]
    for _, a, b in pairs:
        gap = taste[a] - taste[b]
        if gap != 0:
            band = next(name for name, (lo, hi) in bands.items() if lo <= abs(gap) < hi)
            tally[band][0] += 1
            tally[band][1] += (r[a] > r[b]) == (gap > 0)
    ours = gold_agreement(model, tok, pairs, batch_size=16)
    assert ours["n_decided"] == sum(n for n, _ in tally.values()) > 40 and tally["2-inf"][0] > 5
    assert ours["gold_accuracy"] == pytest.approx(sum(k for _, k in tally.values()) / ours["n_decided"])
    assert ours["by_gap"] == {band: [n, pytest.approx(k / n) if n else None] for band, (n, k) in tally.items()}


def test_sample_whole_pairs_are_whole_and_follow_their_starts():
    from rlhf_lib.lm import load_model

    model, tok = load_model()
    starts = ["The plot was", "", "Mara Voss gave"]
    same = sample_whole_pairs(model, tok, 6, starts=starts, seed=0, batch_size=8)
    assert same == sample_whole_pairs(model, tok, 6, starts=starts, seed=0, batch_size=8)
    assert len(same) == 6 and all(p in starts and a != b for p, a, b in same)
    assert sum(is_grammatical(p + a) and is_grammatical(p + b) for p, a, b in same) >= 4  # whole reviews end well
    mixed = sample_whole_pairs(model, tok, 6, starts=starts, same_start=False, seed=0, batch_size=8)
    assert all(p == "" and a != b for p, a, b in mixed)
    # reviews cut off by the token limit are dropped: with 6 new tokens, only short reviews remain
    short = sample_whole_pairs(model, tok, 2, starts=["Overall,"], seed=0, batch_size=32, max_new_tokens=6)
    assert all(len(tok(a)["input_ids"]) <= 5 and len(tok(b)["input_ids"]) <= 5 for _, a, b in short)
    with pytest.raises(ValueError, match="starts"):
        sample_whole_pairs(model, tok, 2, starts=[])


def test_whole_review_labels_are_the_annotators_choices_pair_by_pair():
    """The DPO labels of whole reviews: the same pairs as `sample_whole_pairs`, each judged by a fresh
    `SimulatedAnnotator` one pair at a time (ties dropped); nearly noiseless, chosen has the higher VADER score."""
    from rlhf_lib.feedback import SimulatedAnnotator
    from rlhf_lib.lm import load_model
    from rlhf_lib.whole_reviews import whole_review_labels

    model, tok = load_model()
    labels = whole_review_labels(model, tok, 12, seed=3)
    judge, want = SimulatedAnnotator(0.1, seed=0), []
    for prompt, a, b in sample_whole_pairs(model, tok, 12, seed=3):
        choice = judge.compare(prompt, a, b)
        if choice != "tie":
            want.append(dict(prompt=prompt, chosen=a if choice == "a" else b, rejected=b if choice == "a" else a))
    assert labels == want and len(labels) >= 10
    sharp = whole_review_labels(model, tok, 12, seed=3, temperature=1e-6)
    assert all(s > r for s, r in zip(*(gold_sentiment([p["prompt"] + p[k] for p in sharp])
                                       for k in ("chosen", "rejected"))))
