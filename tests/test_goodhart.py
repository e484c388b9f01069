"""Over-optimisation pieces: the gold judge against VADER and the grammar computed directly, a run's curve
against hand-averaged iterations, the turn of a curve, best-of-n pools against scoring the same texts again,
weight snapshots against the weights at the time, and a learner's estimator inside the best-of-n curve."""

import numpy as np
import pytest
import torch

from rlhf_lib import solutions
from rlhf_lib.bon import best_of_n_curve
from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.goodhart import (
    BROKEN,
    Snapshots,
    bon_pools,
    checkpoint_curve,
    gold_metrics,
    gold_peak,
    gold_scores,
    pools_base,
    up_to_the_turn,
)
from rlhf_lib.reviews import is_grammatical
from rlhf_lib.threads import fixed


def test_gold_is_vader_for_fluent_reviews_and_the_floor_for_broken_ones():
    texts = ["The plot was wonderful.", "The plot was terrible.", "wonderful wonderful plot the was.",
             "The plot was boring, but the atmosphere was strong."]
    fluent = [is_grammatical(t) for t in texts]
    assert fluent == [True, True, False, True]
    vader = gold_sentiment(texts)
    want = [v if ok else BROKEN for v, ok in zip(vader, fluent)]
    np.testing.assert_allclose(gold_scores(texts), want)
    assert gold_scores(texts)[2] == -1.0 and vader[2] > 0.5  # VADER alone would call the salad very positive
    m = gold_metrics(texts)
    assert m == pytest.approx(dict(gold=np.mean(want), gold_sentiment=vader.mean(), grammatical=0.75))


def fake_history(n, seed=0):
    rng = np.random.default_rng(seed)
    return [dict(iteration=i + 1, score=float(rng.normal()), kl_k1=float(rng.normal(2, 2)), gold=float(rng.normal()),
                 grammatical=float(rng.uniform())) for i in range(n)]


def test_checkpoint_curve_averages_windows_after_the_base_point():
    history = fake_history(7)
    curve = checkpoint_curve(history, window=3)
    assert list(curve["iteration"]) == [0, 3, 6]  # the last, incomplete window is left out
    for point, lo in ((1, 0), (2, 3)):
        part = history[lo : lo + 3]
        assert curve["proxy"][point] == pytest.approx(sum(h["score"] for h in part) / 3)
        assert curve["gold"][point] == pytest.approx(sum(h["gold"] for h in part) / 3)
        assert curve["kl"][point] == pytest.approx(max(0.0, sum(h["kl_k1"] for h in part) / 3))
    assert curve["kl"][0] == 0 and curve["gold"][0] == history[0]["gold"]
    np.testing.assert_allclose(curve["d"], np.sqrt(curve["kl"]))
    base = dict(proxy=0.1, gold=-0.2, grammatical=0.9)
    with_base = checkpoint_curve(history, 3, base)
    assert with_base["gold"][0] == -0.2
    np.testing.assert_allclose(with_base["gold_gain"], with_base["gold"] + 0.2)
    with pytest.raises(ValueError, match="metrics=gold_metrics"):
        checkpoint_curve([dict(score=1.0, kl_k1=0.0)], 1)


def test_the_turn_is_the_first_point_back_at_the_base_after_the_peak():
    curve = dict(gold=np.array([0.0, 0.2, 0.5, 0.3, -0.1, -0.9, -1.0]))
    curve["gold_gain"] = curve["gold"] - curve["gold"][0]
    assert gold_peak(curve) == 2
    assert up_to_the_turn(curve) == slice(0, 4)  # base, rise, peak, turn; not the first point back below the base
    rising = dict(gold=np.array([0.0, 0.1, 0.2]), gold_gain=np.array([0.0, 0.1, 0.2]))
    assert up_to_the_turn(rising) == slice(0, 3)


def test_a_learners_estimator_gives_the_librarys_curve():
    rng = np.random.default_rng(0)
    pools = [([f"t{p}-{i}" for i in range(16)], rng.normal(size=16), rng.normal(size=16)) for p in range(3)]
    ours = best_of_n_curve(pools, [1, 2, 4, 16])
    theirs = best_of_n_curve(pools, [1, 2, 4, 16], expected=solutions.best_of_n_expected)
    for key in ("proxy", "gold", "gold_gain", "kl_empirical"):
        np.testing.assert_allclose(theirs[key], ours[key], atol=1e-12)


@pytest.fixture(scope="module")
def course():
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.whole_reviews import WHOLE_REVIEW_REWARD_MODEL

    with fixed(1):
        yield load_model(), load_reward_model(WHOLE_REVIEW_REWARD_MODEL)


def test_bon_pools_score_each_review_with_proxy_and_gold(course):
    from rlhf_lib.reward_model import score_texts

    (policy, tok), (rm, rtok) = course
    starts = ["", "The plot was"]
    pools = bon_pools(policy, tok, rm, rtok, starts, 6, seed=3, max_new_tokens=12)
    assert len(pools) == 2
    for start, (texts, proxy, gold) in zip(starts, pools):
        assert len(texts) == 6 and all(t.startswith(start) for t in texts)
        np.testing.assert_allclose(gold, gold_scores(texts))
        raw = score_texts(rm, rtok, texts)
        gap = raw - proxy  # 0 for a review that ended, the penalty 1 for one cut off at 12 tokens
        assert np.all((np.abs(gap) < 1e-4) | (np.abs(gap - 1.0) < 1e-4)), gap
    assert any(np.any(np.abs(raw - proxy) > 0.5) for texts, proxy, _ in pools for raw in [score_texts(rm, rtok, texts)])
    base = pools_base(pools)
    assert base["proxy"] == pytest.approx((np.mean(pools[0][1]) + np.mean(pools[1][1])) / 2)
    assert base["gold"] == pytest.approx(np.mean([g for _, _, gold in pools for g in gold]))  # pools of one size
    assert base["grammatical"] == pytest.approx(np.mean([is_grammatical(t) for texts, _, _ in pools for t in texts]))
    again = bon_pools(policy, tok, rm, rtok, starts, 6, seed=3, max_new_tokens=12)
    assert [p[0] for p in again] == [p[0] for p in pools]  # same seed, same reviews


def test_snapshots_keep_the_weights_of_their_time(course):
    from types import SimpleNamespace

    from rlhf_lib.lm import load_model

    (policy, _), _ = course
    model, _ = load_model()
    snaps = Snapshots(model, every=2)
    history = []
    for _ in range(4):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        history.append({})
        snaps(SimpleNamespace(history=history))
    assert sorted(snaps.weights) == [0, 2, 4]
    torch.testing.assert_close(next(iter(snaps.weights[0].values())), next(iter(policy.state_dict().values())))
    first = next(policy.parameters())  # the untouched course model
    other, _ = load_model()
    snaps.load(2, other)
    torch.testing.assert_close(next(other.parameters()), first + 2.0)
    with pytest.raises(KeyError, match="kept"):
        snaps.load(3, other)
