"""SFT: the loss covers the completion only, agrees with log-probs computed another way, and moves the model."""

import json

import pytest
import torch

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.lm import encode_prompts, load_model, logprobs_of
from rlhf_lib.sft import (
    SFTConfig,
    completion_loss,
    load_demonstrations,
    make_demonstrations,
    save_jsonl,
    sft,
    sft_batch,
)


@pytest.fixture(scope="module")
def course():
    return load_model()


def test_demonstrations_start_with_a_prompt_and_are_positive():
    demos = make_demonstrations(50, min_sentiment=0.5, seed=0)
    for d in demos:
        assert d["completion"].startswith(" ")
        assert gold_sentiment(d["prompt"] + d["completion"])[0] >= 0.5


def test_labels_mask_the_prompt_and_the_padding(course):
    _, tokenizer = course
    batch = [{"prompt": "The plot was", "completion": " good."},
             {"prompt": "I expected", "completion": " more. The music was dull."}]
    ids, mask, labels = sft_batch(tokenizer, batch)
    for row in range(2):
        n_prompt = 1 + len(tokenizer(batch[row]["prompt"], add_special_tokens=False)["input_ids"])
        assert (labels[row, :n_prompt] == -100).all()
        real = labels[row][labels[row] != -100]
        assert tokenizer.decode(real[:-1]) == batch[row]["completion"] and real[-1] == tokenizer.eos_token_id
        assert (labels[row][mask[row] == 0] == -100).all()


def test_completion_loss_equals_mean_negative_logprob_of_the_completion(course):
    """Two code paths: right-padded training batch vs left-padded prompt + response scoring."""
    model, tokenizer = course
    batch = [{"prompt": p, "completion": c} for p, c in
             (("The plot was", " good."), ("I expected", " more. The music was dull."), ("Overall,", " it was fine."))]
    with torch.no_grad():
        loss = completion_loss(model, *sft_batch(tokenizer, batch))
        prompt_ids, prompt_mask = encode_prompts(tokenizer, [b["prompt"] for b in batch])
        responses = [tokenizer(b["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                     for b in batch]
        R = max(map(len, responses))
        response_ids = torch.full((3, R), tokenizer.pad_token_id)
        response_mask = torch.zeros(3, R, dtype=torch.long)
        for i, r in enumerate(responses):
            response_ids[i, : len(r)], response_mask[i, : len(r)] = torch.tensor(r), 1
        logp = logprobs_of(model, (prompt_ids, prompt_mask, response_ids, response_mask))
    torch.testing.assert_close(loss, -logp.sum() / response_mask.sum(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_sft_on_positive_demonstrations_raises_the_positive_rate():
    from rlhf_lib.evaluate import model_report

    model, tokenizer = load_model()
    before = model_report(model, tokenizer, n=200, seed=1)
    sft(model, tokenizer, make_demonstrations(1000, seed=0), SFTConfig(epochs=1, seed=0), progress=False)
    after = model_report(model, tokenizer, n=200, seed=1)
    assert after["positive_rate"] - before["positive_rate"] >= 0.2, (before, after)
    assert after["grammatical_rate"] >= 0.9


def test_demonstration_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no demonstrations file"):
        load_demonstrations(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        load_demonstrations(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "The plot was", "completion": " good."}) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        load_demonstrations(bad)
    missing = tmp_path / "missing_field.jsonl"
    missing.write_text(json.dumps({"prompt": "The plot was"}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: missing text field\(s\) \['completion'\]"):
        load_demonstrations(missing)
    good = save_jsonl(make_demonstrations(3, seed=0), tmp_path / "good.jsonl")
    assert len(load_demonstrations(good)) == 3


def test_sft_step_equals_a_hand_step_sequence_by_sequence(course):
    """One step: the loss as the mean over every completion token of -log pi, each sequence run alone
    (no padding), the gradient clipped to norm 1, one SGD step: the same loss and weights as `sft_step`."""
    import copy

    from rlhf_lib.sft import sft_step

    model, tokenizer = copy.deepcopy(course[0]).eval(), course[1]
    hand = copy.deepcopy(model)
    batch = [{"prompt": "The plot was", "completion": " good."}, {"prompt": "I expected", "completion": " more. Sad."}]
    total, count = 0.0, 0
    for d in batch:
        p = [tokenizer.bos_token_id] + tokenizer(d["prompt"], add_special_tokens=False)["input_ids"]
        c = tokenizer(d["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        logp = hand(input_ids=torch.tensor([p + c])).logits[0].log_softmax(-1)
        total = total - sum(logp[len(p) - 1 + t, tok] for t, tok in enumerate(c))
        count += len(c)
    (total / count).backward()
    assert torch.nn.utils.clip_grad_norm_(hand.parameters(), 1.0) > 1.0  # the clipping matters here
    before = [p.detach().clone() for p in model.parameters()]
    loss = sft_step(model, tokenizer, batch, torch.optim.SGD(model.parameters(), lr=0.1))
    assert abs(loss - float(total / count)) < 1e-5
    for p0, p1, q in zip(before, model.parameters(), hand.parameters()):
        torch.testing.assert_close(p0 - p1.detach(), 0.1 * q.grad, atol=1e-6, rtol=1e-4)


def test_the_solution_step_plugged_in_trains_like_the_library(pinned_threads):
    from rlhf_lib import solutions
    from rlhf_lib.exercises.language_models import compare_sft_step

    demos = make_demonstrations(64, seed=0)
    runs = []
    for step_fn in ({}, dict(step_fn=solutions.sft_step)):
        model, tokenizer = load_model()
        runs.append((sft(model, tokenizer, demos, SFTConfig(epochs=1, batch_size=16, seed=0), progress=False,
                         **step_fn), model))
    (a, model_a), (b, model_b) = runs
    assert a.losses == pytest.approx(b.losses, rel=1e-6) and len(a.losses) == 4
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert compare_sft_step(solutions.sft_step) is None
