"""The reward model: Bradley-Terry loss equals TRL's, the head reads the last real token under any padding,
training beats chance against gold, and saving/loading keeps the normalisation."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlhf_lib.exercises.preferences import CHECK_PAIRS, compare_reward_model_step
from rlhf_lib.feedback import SimulatedAnnotator, label_pairs, to_pairs
from rlhf_lib.reward_model import (
    RewardConfig,
    bradley_terry_loss,
    calibration,
    encode,
    last_token_index,
    load_reward_model,
    make_reward_model,
    normalize_on,
    pair_accuracy,
    raw_rewards,
    reward_model_step,
    score_texts,
    train_reward_model,
)


def trl_loss(r_chosen, r_rejected, margin=None):
    """TRL's RewardTrainer.compute_loss, run on given rewards through a stub model and trainer."""
    from trl import RewardTrainer

    class StubModel(torch.nn.Module):
        def forward(self, **inputs):
            return SimpleNamespace(logits=torch.cat([r_chosen, r_rejected])[:, None])

    identity = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x)
    trainer = SimpleNamespace(model=SimpleNamespace(training=False),
                              args=SimpleNamespace(center_rewards_coefficient=None),
                              accelerator=identity, _total_train_tokens=0, _tp_size=1,
                              _metrics={"eval": {k: [] for k in ("min_reward", "mean_reward", "max_reward", "accuracy",
                                                                 "margin")}})
    inputs = {"attention_mask": torch.ones(2 * len(r_chosen), 3)}
    if margin is not None:
        inputs["margin"] = margin
    return RewardTrainer.compute_loss(trainer, StubModel(), inputs)


@pytest.mark.parametrize("with_margin", [False, True])
def test_bradley_terry_loss_equals_trl(with_margin):
    torch.manual_seed(0)
    r_c, r_r = torch.randn(16) * 3, torch.randn(16) * 3
    margin = torch.rand(16) if with_margin else None
    torch.testing.assert_close(bradley_terry_loss(r_c, r_r, margin), trl_loss(r_c, r_r, margin))


@pytest.fixture(scope="module")
def rm():
    torch.manual_seed(0)
    return make_reward_model()


def test_last_token_index():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [3, 2, 3, 0]


def test_reward_reads_the_last_real_token_under_left_and_right_padding(rm):
    model, tokenizer = rm
    texts = ["The plot was good.", "I expected more. The music was dull, but the ending was lovely.",
             "Overall, it was fine."]
    with torch.no_grad():
        left = raw_rewards(model, *encode(tokenizer, texts, "left"))
        right = raw_rewards(model, *encode(tokenizer, texts, "right"))
        alone = torch.cat([raw_rewards(model, *encode(tokenizer, [t])) for t in texts])
        # the head applied by hand to the final hidden state of an unpadded sequence
        ids, mask = encode(tokenizer, texts[:1])
        by_hand = model.score(model.transformer(ids).last_hidden_state[0, -1]).squeeze()
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left[0], by_hand, atol=1e-5, rtol=1e-5)


def test_sum_head_adds_the_scores_of_every_real_token_under_any_padding():
    torch.manual_seed(0)
    model, tokenizer = make_reward_model(pooling="sum")
    texts = ["The plot was good.", "I expected more. The music was dull, but the ending was lovely.",
             "Overall, it was fine."]
    with torch.no_grad():
        left = raw_rewards(model, *encode(tokenizer, texts, "left"))
        right = raw_rewards(model, *encode(tokenizer, texts, "right"))
        by_hand = []
        for t in texts:  # each text alone, no padding: the head on every hidden state, added up
            ids, _ = encode(tokenizer, [t])
            by_hand.append(model.score(model.transformer(ids).last_hidden_state[0]).sum())
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(left, torch.stack(by_hand), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        make_reward_model(pooling="max")


@pytest.mark.slow
def test_training_learns_the_annotators_taste_and_saves(tmp_path):
    from rlhf_lib.feedback import sample_pairs
    from rlhf_lib.lm import load_model

    policy, tok = load_model()
    pairs = sample_pairs(policy, tok, 800, seed=0)
    records = [vars(r) for r in label_pairs(SimulatedAnnotator(0.1, seed=0), pairs)]
    train, heldout = to_pairs(records[:600]), to_pairs(records[600:])
    model, tokenizer = make_reward_model()
    before = pair_accuracy(model, tokenizer, heldout)["gold_accuracy"]
    result = train_reward_model(model, tokenizer, train, RewardConfig(seed=0), progress=False)
    ev = pair_accuracy(model, tokenizer, heldout)
    # a clear rise above chance on held-out pairs (the course's 90% target needs more than this small run)
    assert ev["gold_accuracy"] >= 0.62 and ev["gold_accuracy"] > before + 0.1, (before, ev["gold_accuracy"])
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    mean, std = normalize_on(model, tokenizer, [p["prompt"] + p["chosen"] for p in heldout])
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tok = load_reward_model(tmp_path)
    texts = [p["prompt"] + p["chosen"] for p in heldout[:8]]
    np.testing.assert_allclose(score_texts(loaded, loaded_tok, texts), score_texts(model, tokenizer, texts), atol=1e-5)
    assert loaded.config.reward_mean == pytest.approx(mean) and loaded.config.reward_std == pytest.approx(std)


def test_normalisation_gives_mean_zero_std_one(rm):
    model, tokenizer = rm
    texts = ["The plot was good.", "The plot was awful.", "Seven out of ten.", "What a lovely film!"]
    normalize_on(model, tokenizer, texts)
    s = score_texts(model, tokenizer, texts)
    assert abs(s.mean()) < 1e-5 and abs(s.std() - 1) < 1e-4
    model.config.reward_mean, model.config.reward_std = 0.0, 1.0


def test_calibration_of_a_calibrated_predictor():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20_000)
    y = rng.uniform(size=20_000) < p
    cal = calibration(p, y, bins=10)
    assert cal["ece"] < 0.02
    np.testing.assert_allclose(cal["predicted"], cal["observed"], atol=0.03)


def test_missing_reward_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reward model at"):
        load_reward_model(tmp_path / "nope")


def test_no_pairs_is_a_clear_error(rm):
    with pytest.raises(ValueError, match="no preference pairs"):
        train_reward_model(*rm, [], progress=False)


def test_length_grouped_batches_cover_every_pair_once_and_group_lengths():
    from rlhf_lib.reward_model import _batches

    lengths = [int(x) for x in np.random.default_rng(0).integers(3, 60, size=200)]
    for grouped in (False, True):
        batches = _batches(200, 8, 25, torch.Generator().manual_seed(0), lengths if grouped else None)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(200)) and all(len(b) == 8 for b in batches)
    spread = lambda bs: np.mean([np.ptp([lengths[i] for i in b]) for b in bs])
    plain = _batches(200, 8, 25, torch.Generator().manual_seed(0))
    grouped = _batches(200, 8, 25, torch.Generator().manual_seed(0), lengths)
    assert spread(grouped) < spread(plain) / 2  # much less padding per batch


def fresh_reward_model():
    torch.manual_seed(0)
    model, tokenizer = make_reward_model()
    return model.eval(), tokenizer


def test_reward_model_step_equals_a_hand_step_text_by_text():
    """One step: rewards of each text scored alone (no padding), the loss -mean log sigmoid, the gradient
    clipped to norm 1, one SGD step: the same rewards, loss and weights as the batched step."""
    import copy

    model, tokenizer = fresh_reward_model()
    model.score.weight.data *= 30  # gradients well above norm 1, so the clipping shows
    hand = copy.deepcopy(model)
    pairs = CHECK_PAIRS[:4]
    alone = lambda text: raw_rewards(hand, *encode(tokenizer, [text]))[0]
    r_c = torch.stack([alone(p["prompt"] + p["chosen"]) for p in pairs])
    r_r = torch.stack([alone(p["prompt"] + p["rejected"]) for p in pairs])
    loss = torch.log1p(torch.exp(-(r_c - r_r))).mean()
    loss.backward()
    assert torch.nn.utils.clip_grad_norm_(hand.parameters(), 1.0) > 2
    before = [p.detach().clone() for p in model.parameters()]
    got = reward_model_step(model, tokenizer, pairs, torch.optim.SGD(model.parameters(), lr=0.1))
    torch.testing.assert_close(got[0], loss.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], r_c.detach(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got[2], r_r.detach(), atol=1e-4, rtol=1e-5)
    for p0, p1, q in zip(before, model.parameters(), hand.parameters()):
        torch.testing.assert_close(p0 - p1.detach(), 0.1 * q.grad, atol=1e-6, rtol=1e-4)


def test_the_solution_step_plugged_in_trains_like_the_library():
    from rlhf_lib import solutions

    pairs = CHECK_PAIRS * 2
    cfg = RewardConfig(epochs=2, batch_size=4, warmup=2)
    runs = []
    for step_fn in (reward_model_step, solutions.reward_model_step):
        model, tokenizer = fresh_reward_model()
        runs.append((train_reward_model(model, tokenizer, pairs, cfg, progress=False, step_fn=step_fn), model))
    (a, model_a), (b, model_b) = runs
    assert a.losses == b.losses and a.accuracies == b.accuracies and len(a.losses) == 8
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    assert compare_reward_model_step(solutions.reward_model_step) is None


def test_the_step_checker_finds_plausible_mistakes():
    def without(clip=True, zero=True):
        def step(model, tokenizer, pairs, opt):
            texts = [p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs]
            r = raw_rewards(model, *encode(tokenizer, texts))
            loss = bradley_terry_loss(r[: len(pairs)], r[len(pairs) :])
            if zero:
                opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.detach(), r[: len(pairs)].detach(), r[len(pairs) :].detach()
        return step

    assert compare_reward_model_step(without()) is None
    assert "the update differs" in compare_reward_model_step(without(clip=False))
    assert "the update differs" in compare_reward_model_step(without(zero=False))
    swapped = lambda m, t, pairs, o: reward_model_step(m, t, [dict(p, chosen=p["rejected"], rejected=p["chosen"])
                                                              for p in pairs], o)
    assert "step 1: r_chosen" in compare_reward_model_step(swapped)


def test_preference_records_train_and_measure_like_their_pairs():
    """Records (the labels file's shape) go in where pairs do: the same losses and figures as the pairs they
    were written from, A chosen in one record and B in the next, and a tie that is left out."""
    from rlhf_lib.feedback import PreferenceRecord

    records = []
    for i, p in enumerate(CHECK_PAIRS):
        a, b, choice = (p["chosen"], p["rejected"], "a") if i % 2 == 0 else (p["rejected"], p["chosen"], "b")
        records.append(vars(PreferenceRecord(p["prompt"], a, b, choice, "you")))
    records.append(vars(PreferenceRecord("The plot was", " fine.", " good.", "tie", "you")))
    cfg = RewardConfig(epochs=1, batch_size=4, warmup=1)
    runs = []
    for data in (records, CHECK_PAIRS):
        model, tokenizer = fresh_reward_model()
        runs.append((train_reward_model(model, tokenizer, data, cfg, progress=False).losses,
                     pair_accuracy(model.eval(), tokenizer, data)))
    assert runs[0] == runs[1] and len(runs[0][0]) == 2


# ---- the ranking kind: Plackett-Luce


def _order_probability_by_hand(scores: list[float], order: tuple[int, ...]) -> float:
    """P(order) as k - 1 choices in turn, each a softmax over the responses not yet placed."""
    left, p = list(range(len(scores))), 1.0
    for pick in order[:-1]:
        weights = {i: math.exp(scores[i]) for i in left}
        p *= weights[pick] / sum(weights.values())
        left.remove(pick)
    return p


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_plackett_luce_orders_sum_to_one_and_match_sequential_choices(k):
    from rlhf_lib.reward_model import plackett_luce_loss

    gen = torch.Generator().manual_seed(k)
    scores = torch.randn(k, generator=gen, dtype=torch.float64) * 2
    total = 0.0
    for order in itertools.permutations(range(k)):
        loss = plackett_luce_loss(scores[None], torch.tensor([order]))
        p = math.exp(-loss.item())
        assert p == pytest.approx(_order_probability_by_hand(scores.tolist(), order), rel=1e-9)
        total += p
    assert total == pytest.approx(1.0, abs=1e-9)


def test_plackett_luce_at_two_is_bradley_terry_and_averages_over_the_batch():
    from rlhf_lib.reward_model import bradley_terry_loss, plackett_luce_loss

    scores = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    order = torch.tensor([[0, 1], [1, 0], [0, 1], [1, 0], [1, 0], [0, 1]])
    chosen, rejected = scores.gather(1, order[:, :1])[:, 0], scores.gather(1, order[:, 1:])[:, 0]
    torch.testing.assert_close(plackett_luce_loss(scores, order), bradley_terry_loss(chosen, rejected))
    rows = torch.stack([plackett_luce_loss(scores[b : b + 1], order[b : b + 1]) for b in range(6)])
    torch.testing.assert_close(plackett_luce_loss(scores, order), rows.mean())


@pytest.mark.parametrize("order, message", [
    ([[0, 0, 1]], "permutation"),
    ([[0, 1, 3]], "permutation"),
    ([[0, 1]], "both be"),
])
def test_plackett_luce_refuses_an_order_that_is_not_a_ranking(order, message):
    from rlhf_lib.reward_model import plackett_luce_loss

    with pytest.raises(ValueError, match=message):
        plackett_luce_loss(torch.zeros(1, 3), torch.tensor(order))
