"""The exercises of notebooks 04-05 (language models as policies, supervised fine-tuning): the references, the
test cases, and the checkers of the two build-it exercises, `response_logprobs` and `sft_step`, which run the
learner's code on the course model where the library's would run."""

from __future__ import annotations

import numpy as np
import torch

# ---- notebook 04


def ref_sequence_logprob(token_logps, mask):
    return float((torch.tensor(token_logps, dtype=torch.float64) * torch.tensor(mask)).sum())


def ref_k3_estimate(logp, logp_ref):
    from rlhf_lib.lm import kl_estimates

    return kl_estimates(torch.tensor(logp), torch.tensor(logp_ref))["k3"].numpy()


def ref_broadcast_rewards(score, length):
    from rlhf_lib.ppo import discounted_returns

    rewards = torch.zeros(length)
    rewards[-1] = score
    return np.stack([rewards.numpy(), discounted_returns(rewards, torch.zeros(length), 1.0).numpy()])


def ref_response_logprobs(logits, response_ids, response_mask):
    from rlhf_lib.lm import response_logprobs

    return response_logprobs(logits, response_ids, response_mask)


@torch.no_grad()
def compare_response_logprobs(fn, model=None, tokenizer=None) -> str | None:
    """None if fn(logits, response_ids, response_mask) returns the log-probs `sample` recorded, on prompts
    of different lengths (left-padded) and one-sentence responses of different lengths (right-padded), at
    temperatures 1 and 0.7; otherwise a sentence saying what differs."""
    from rlhf_lib.lm import load_model, position_ids_from_mask, sample

    if model is None:
        model, tokenizer = load_model()
    prompts = ["The plot was", "Overall, the film was very", "I", "The music of this long film was"]
    for temperature, seed in ((1.0, 5), (0.7, 6)):
        s = sample(model, tokenizer, prompts, 12, temperature, seed=seed, stop_at="sentence")
        mask = torch.cat([s.prompt_mask, s.response_mask], dim=1)
        logits = model(input_ids=torch.cat([s.prompt_ids, s.response_ids], dim=1), attention_mask=mask,
                       position_ids=position_ids_from_mask(mask)).logits / temperature  # (B, P + R, V)
        got = torch.as_tensor(fn(logits.clone(), s.response_ids.clone(), s.response_mask.clone()), dtype=torch.float32)
        if got.shape != s.logp.shape:
            return f"expected shape {tuple(s.logp.shape)} (B, R), got {tuple(got.shape)}"
        real = s.response_mask.bool()
        if (got * ~real).abs().max() > 0:
            return "the padding after a response should get 0 (multiply by response_mask)"
        gap = (got - s.logp).abs() * real
        if gap.max() > 1e-4:
            b, j = divmod(int(gap.argmax()), gap.shape[1])
            return (f"at temperature {temperature}, row {b}, response token {j}: `sample` recorded "
                    f"{float(s.logp[b, j]):.4f}, you returned {float(got[b, j]):.4f}. The logits at position t "
                    f"predict the token at t + 1.")
    return None


# ---- notebook 05


def ref_completion_labels(ids, prompt_length, pad_id):
    ids_t = torch.tensor(ids)
    keep = (torch.arange(len(ids)) >= prompt_length) & (ids_t != pad_id)
    return torch.where(keep, ids_t, torch.full_like(ids_t, -100)).numpy()


def ref_sft_loss(logits, labels):
    return float(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), ignore_index=-100))


def sft_loss_cases(rng):
    cases = []
    for T, V in ((4, 5), (7, 3)):
        labels = rng.integers(0, V, size=T)
        labels[: T // 2] = -100  # the prompt
        cases.append((rng.normal(size=(T, V)).round(3).tolist(), labels.tolist()))
    return cases


def ref_sft_step(model, tokenizer, batch, opt):
    from rlhf_lib.sft import sft_step

    return sft_step(model, tokenizer, batch, opt)


def compare_sft_step(fn) -> str | None:
    """None if fn(model, tokenizer, batch, opt) -> loss trains like `sft_step` for three steps on the course
    model (the same losses within a relative 1e-4, the same weights within 1e-5); otherwise what differs.
    Dropout is off here; SGD steps, so a missed clip or a missed zero_grad shows in the weights."""
    import copy

    from rlhf_lib.lm import load_model
    from rlhf_lib.sft import sft_step

    base, tokenizer = load_model()
    base.eval()
    demos = [dict(prompt="The plot was", completion=" wonderful, and the music was moving."),
             dict(prompt="I expected", completion=" more."), dict(prompt="Overall,", completion=" a fine film."),
             dict(prompt="The acting was", completion=" bold, but the ending was dull.")]
    batches = [demos[:2], demos[2:], demos[1:3]]
    runs = []
    for step in (fn, sft_step):  # yours first: an unfinished one stops at once
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        runs.append((model, [step(model, tokenizer, b, opt) for b in batches]))
    (model_got, got), (model_want, want) = runs
    for i, (w, g) in enumerate(zip(want, got)):
        try:
            g = float(g)
        except (TypeError, ValueError):
            return f"step {i + 1}: return the loss as a number (loss.item()), got {type(g).__name__}"
        if abs(g - w) > 1e-4 * abs(w) + 1e-6:
            hint = (" The loss differs at the first step: shift by one (logits at t predict the token at t + 1) "
                    "and average over the completion tokens only (labels != -100).") if i == 0 else \
                   (" Step 1 agreed, so the update differs: zero the gradients, backward, clip the gradient norm "
                    "to 1, then the optimizer's step.")
            return f"step {i + 1}: loss expected {w:.5f}, got {g:.5f}.{hint}"
    with torch.no_grad():
        gap = max(float((p - q).abs().max()) for p, q in zip(model_want.parameters(), model_got.parameters()))
    if gap > 1e-5:
        return (f"after {len(batches)} steps the weights differ by up to {gap:.2e}: "
                "clip the gradient norm to 1 before the step")
    return None
