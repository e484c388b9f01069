"""Looking inside the reward model (rlhf_lib/interpret.py) against independent computations: each deletion scored
on its own, the completeness of integrated gradients, Spearman's closed form, a probe on separable features."""

import numpy as np
import pytest
import torch

from rlhf_lib.interpret import (
    integrated_gradients,
    layer_means,
    leave_one_out,
    lexicon_agreement,
    probe_layers,
    ranks,
    spearman,
    word_attributions,
)
from rlhf_lib.reward_model import encode_ids, load_reward_model, raw_rewards
from rlhf_lib.whole_reviews import WHOLE_REVIEW_REWARD_MODEL

TEXT = "The acting was superb, but the plot was dull. I would not recommend it to anyone."


@pytest.fixture(scope="module")
def reward_model():
    return load_reward_model(WHOLE_REVIEW_REWARD_MODEL)


def test_leave_one_out_equals_each_deletion_scored_on_its_own(reward_model):
    model, tokenizer = reward_model
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        full = raw_rewards(model, *encode_ids(tokenizer, [ids]))[0]
        expected = [float(full - raw_rewards(model, *encode_ids(tokenizer, [ids[:i] + ids[i + 1:]]))[0])
                    for i in range(len(ids))]
    got = leave_one_out(model, tokenizer, TEXT)
    assert [w for w, _ in got] == [tokenizer.decode([i]).strip() for i in ids]
    np.testing.assert_allclose([v for _, v in got], expected, atol=1e-4)


def test_integrated_gradients_add_up_to_the_change_of_reward(reward_model):
    model, tokenizer = reward_model
    coarse, check4 = integrated_gradients(model, tokenizer, TEXT, steps=4)
    fine, check = integrated_gradients(model, tokenizer, TEXT, steps=64)
    # the change of reward from the baseline (the text's token embeddings at zero) to the text, computed apart
    ids, mask = encode_ids(tokenizer, [tokenizer(TEXT, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        x = model.transformer.wte(ids)
        zero = x.clone()
        zero[:, 1:-1] = 0
        change = float(raw_rewards(model, ids, mask, inputs_embeds=x)[0] - raw_rewards(model, ids, mask,
                                                                                         inputs_embeds=zero)[0])
        assert float(raw_rewards(model, ids, mask, inputs_embeds=x)[0]) == pytest.approx(
            float(raw_rewards(model, ids, mask)[0]), abs=1e-5)  # the embeddings are the model's own
    total = sum(v for _, v in fine)
    assert abs(total - change) < 0.02 * abs(change) + 1e-3  # completeness, up to the path's discretisation
    assert check["change"] == pytest.approx(change, abs=1e-4)
    assert abs(check["gap"]) <= abs(check4["gap"]) + 1e-6  # more points on the path, a smaller gap
    words = dict(fine)
    assert words["superb"] > 0 > words["dull"]  # the shipped model credits and blames where VADER does


def test_spearman_equals_the_closed_form_without_ties_and_handles_ties():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    d = ranks(x) - ranks(y)
    assert spearman(x, y) == pytest.approx(1 - 6 * (d**2).sum() / (30 * (30**2 - 1)))
    np.testing.assert_array_equal(ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
    assert spearman([1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(np.corrcoef([1, 2, 3, 4], [1, 2.5, 2.5, 4])[0, 1])


def test_the_shipped_reward_model_ranks_words_like_the_lexicon(reward_model):
    from rlhf_lib.reviews import generate_reviews

    model, tokenizer = reward_model
    attributions = word_attributions(model, tokenizer, generate_reviews(60, seed=0))
    report = lexicon_agreement(attributions)
    assert report["spearman"] > 0.5 and report["n_words"] >= 20
    assert attributions["great"] > 0 > attributions["awful"]
    assert "The" not in attributions and "the" in attributions  # one entry a word, whatever its case
    with pytest.raises(ValueError, match="method"):
        word_attributions(model, tokenizer, [TEXT], method="saliency")


def test_a_probe_reads_a_label_from_the_layer_that_holds_it():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    noise = rng.normal(size=(3, 400, 8))
    noise[2, :, 0] += 4 * (labels - 0.5)  # only layer 2 carries the label
    accuracies = probe_layers(noise, labels)
    assert accuracies[2] > 0.9 and max(accuracies[:2]) < 0.65
    with pytest.raises(ValueError):
        probe_layers(noise[:, :1], labels[:1])
    ordered = np.argsort(labels, kind="stable")  # all the 0s, then all the 1s: shuffled before the split
    assert probe_layers(noise[:, ordered], labels[ordered])[2] > 0.9
    with pytest.raises(ValueError, match="labels"):
        probe_layers(noise[:, :10], labels)


def test_layer_means_average_the_real_tokens_only(reward_model):
    model, tokenizer = reward_model
    texts = ["The plot was dull.", TEXT]
    both = layer_means(model, tokenizer, texts)
    alone = layer_means(model, tokenizer, texts[:1])
    assert both.shape == (model.config.n_layer + 1, 2, model.config.n_embd)
    np.testing.assert_allclose(both[:, 0], alone[:, 0], atol=1e-4)  # the padding of the longer text changes nothing
