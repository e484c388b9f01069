"""Sampling, log-probs and KL estimators, on tiny random GPT-2s (no assets, no hub)."""

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_lib.exercises.language_models import compare_response_logprobs
from rlhf_lib.lm import (
    encode_prompts,
    kl_estimates,
    load_model,
    logprobs_of,
    position_ids_from_mask,
    response_logprobs,
    sample,
    stop_ids,
    token_kl,
)
from rlhf_lib.pretrain import train_tokenizer
from rlhf_lib.reviews import generate_reviews


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(generate_reviews(300, seed=0), vocab_size=300)


def tiny_model(tokenizer, seed, vocab_size=None):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size or len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config).eval()


PROMPTS = ["The plot was", "I expected", "Overall, the film was very", "The"]


def test_prompts_are_left_padded_with_a_leading_bos(tokenizer):
    ids, mask = encode_prompts(tokenizer, PROMPTS)
    assert ids.shape[0] == 4 and (mask[:, -1] == 1).all()
    for row, m, p in zip(ids, mask, PROMPTS):
        real = row[m.bool()].tolist()
        assert real[0] == tokenizer.bos_token_id
        assert tokenizer.decode(real[1:]) == p
        assert (row[~m.bool()] == tokenizer.pad_token_id).all()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_recomputed(tokenizer, temperature):
    model = tiny_model(tokenizer, 0)
    s = sample(model, tokenizer, PROMPTS * 4, max_new_tokens=20, temperature=temperature, seed=1)
    recomputed = logprobs_of(model, s)
    torch.testing.assert_close(recomputed, s.logp, atol=1e-5, rtol=0)
    assert (s.logp[s.response_mask == 0] == 0).all()


def test_left_padding_changes_nothing(tokenizer):
    """A prompt's log-probs are the same alone and in a batch with longer prompts."""
    model = tiny_model(tokenizer, 0)
    s = sample(model, tokenizer, ["The", "Overall, the film was very"], max_new_tokens=8, seed=3)
    alone = (s.prompt_ids[:1, -2:], s.prompt_mask[:1, -2:], s.response_ids[:1], s.response_mask[:1])
    assert s.prompt_mask[0].sum() == 2  # bos + "The"
    torch.testing.assert_close(logprobs_of(model, alone), s.logp[:1], atol=1e-5, rtol=0)


def off_by_one(logits, response_ids, response_mask):
    """The classic mistake: read token j's log-prob from its own position instead of the one before."""
    R = response_ids.shape[1]
    return logits[:, -R:].log_softmax(-1).gather(-1, response_ids[..., None]).squeeze(-1) * response_mask


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_response_logprobs_from_full_logits_equal_the_sampled_ones(tokenizer, temperature):
    from rlhf_lib import solutions

    model = tiny_model(tokenizer, 0)
    s = sample(model, tokenizer, PROMPTS * 2, max_new_tokens=12, temperature=temperature, seed=2)
    mask = torch.cat([s.prompt_mask, s.response_mask], dim=1)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([s.prompt_ids, s.response_ids], 1), attention_mask=mask,
                       position_ids=position_ids_from_mask(mask)).logits / temperature
    for gather in (response_logprobs, solutions.response_logprobs):
        torch.testing.assert_close(gather(logits, s.response_ids, s.response_mask), s.logp, atol=1e-5, rtol=0)
    assert (off_by_one(logits, s.response_ids, s.response_mask) - s.logp).abs().max() > 0.1
    with torch.no_grad():  # the solution plugged into logprobs_of gives the library's numbers
        torch.testing.assert_close(logprobs_of(model, s, gather=solutions.response_logprobs), logprobs_of(model, s),
                                   atol=1e-6, rtol=0)


def test_the_logprob_checker_finds_plausible_mistakes():
    from rlhf_lib import solutions

    assert compare_response_logprobs(solutions.response_logprobs) is None  # on the course model
    assert "predict the token at t + 1" in compare_response_logprobs(off_by_one)
    assert "padding" in compare_response_logprobs(lambda logits, ids, mask:
                                                  response_logprobs(logits, ids, mask) + 1 - mask)


def test_stops_at_end_of_text(tokenizer):
    model = tiny_model(tokenizer, 0)
    s = sample(model, tokenizer, PROMPTS * 16, max_new_tokens=60, seed=0)
    assert s.finished.any() and not s.finished.all()  # some stop early, some run to the limit
    eos = tokenizer.eos_token_id
    for ids, m in zip(s.response_ids, s.response_mask):
        hits = (ids == eos).nonzero().flatten()
        if len(hits):
            first = hits[0].item()
            assert m[: first + 1].all() and not m[first + 1 :].any()
            assert (ids[first + 1 :] == tokenizer.pad_token_id).all()
        else:
            assert m.all()


def test_one_sentence_responses_stop_at_the_first_sentence_end():
    from rlhf_lib.reviews import is_grammatical

    model, tok = load_model()
    s = sample(model, tok, PROMPTS * 8, max_new_tokens=32, seed=0, stop_at="sentence")
    ends = set(stop_ids(tok, "sentence")) - {tok.eos_token_id}
    assert {tok.decode([i]) for i in ends} == {".", "!"}
    for ids, m, response in zip(s.response_ids, s.response_mask, s.responses):
        kept = ids[m.bool()].tolist()
        assert kept[-1] in ends and not set(kept[:-1]) & ends, response  # exactly one sentence end, at the end
    assert s.finished.all() and np.mean([is_grammatical(t) for t in s.texts]) > 0.9
    torch.testing.assert_close(logprobs_of(model, s), s.logp, atol=1e-5, rtol=0)  # stopping changes no probability
    with pytest.raises(ValueError, match="stop_at"):
        stop_ids(tok, "paragraph")


def test_forced_minimum_length_keeps_the_unconstrained_logprobs():
    model, tok = load_model()
    s = sample(model, tok, PROMPTS * 4, max_new_tokens=24, seed=0, stop_at="sentence", forced_min_tokens=6)
    assert (s.response_mask.sum(-1) > 6).all()
    # the recorded log-probs are the unconstrained policy's, not those of the distribution sampled from
    torch.testing.assert_close(logprobs_of(model, s), s.logp, atol=1e-5, rtol=0)


@pytest.mark.usefixtures("pinned_threads")
def test_same_seed_same_samples(tokenizer):
    model = tiny_model(tokenizer, 0)
    a = sample(model, tokenizer, PROMPTS, max_new_tokens=10, seed=5)
    b = sample(model, tokenizer, PROMPTS, max_new_tokens=10, seed=5)
    assert torch.equal(a.response_ids, b.response_ids) and a.responses == b.responses


def test_token_kl_matches_torch():
    logits, logits_ref = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    want = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=logits),
                                             torch.distributions.Categorical(logits=logits_ref))
    torch.testing.assert_close(token_kl(logits, logits_ref), want)
    assert token_kl(logits, logits).abs().max() < 1e-6


def exact_sequence_kl(policy, ref, tokenizer, prompt, length):
    """KL between the two models' distributions over all responses of up to `length` tokens
    (stopping at end-of-text), by summing over every sequence of the vocabulary."""
    V, eos = policy.config.vocab_size, tokenizer.eos_token_id
    prompt_ids, _ = encode_prompts(tokenizer, [prompt])
    seqs = torch.zeros(1, 0, dtype=torch.long)  # live prefixes
    logp_seq, logq_seq = torch.zeros(1), torch.zeros(1)
    total = 0.0
    for t in range(length):
        ids = torch.cat([prompt_ids.expand(len(seqs), -1), seqs], 1)
        with torch.no_grad():
            lp = policy(ids).logits[:, -1].log_softmax(-1)  # (N, V)
            lq = ref(ids).logits[:, -1].log_softmax(-1)
        # sequences end here when the token is eos or the length is reached
        joint_p, joint_q = logp_seq[:, None] + lp, logq_seq[:, None] + lq  # (N, V)
        ends = torch.zeros(V, dtype=torch.bool)
        ends[eos] = True
        if t == length - 1:
            ends[:] = True
        total += (joint_p[:, ends].exp() * (joint_p[:, ends] - joint_q[:, ends])).sum().item()
        keep = (~ends).nonzero().flatten()
        seqs = torch.cat([seqs.repeat_interleave(len(keep), 0), keep.repeat(len(seqs))[:, None]], 1)
        logp_seq, logq_seq = joint_p[:, keep].flatten(), joint_q[:, keep].flatten()
    return total


def test_k1_mean_matches_exact_kl_and_k3_is_never_negative(tokenizer):
    policy, ref = tiny_model(tokenizer, 0), tiny_model(tokenizer, 1)
    prompt, length = "The plot was", 2
    exact = exact_sequence_kl(policy, ref, tokenizer, prompt, length)
    s = sample(policy, tokenizer, [prompt] * 20_000, max_new_tokens=length, seed=0)
    logp_ref = logprobs_of(ref, s)
    k = kl_estimates(s.logp, logp_ref, s.response_mask)
    per_seq = k["k1"].sum(-1)
    stderr = per_seq.std().item() / math.sqrt(len(per_seq))
    assert abs(per_seq.mean().item() - exact) < 4 * stderr, (f"k1 {per_seq.mean():.4f} vs exact {exact:.4f} "
                                                             f"(se {stderr:.4f})")
    assert (k["k3"] >= 0).all()
    assert (k["k2"] >= 0).all()
    assert (k["k1"] < 0).any(), "k1 is negative for some tokens; only its mean is the KL"


def test_kl_of_a_model_with_itself_is_zero(tokenizer):
    model = tiny_model(tokenizer, 0)
    s = sample(model, tokenizer, PROMPTS, max_new_tokens=10, seed=0)
    k = kl_estimates(s.logp, logprobs_of(model, s), s.response_mask)
    for v in k.values():
        assert v.abs().max() < 1e-5


def test_unknown_model_name_gets_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="could not load the model 'no-such-org/no-such-model'.*course model"):
        load_model("no-such-org/no-such-model")


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(OSError, match="not a saved causal language model"):
        load_model(tmp_path)


def test_bad_sampling_arguments(tokenizer):
    model = tiny_model(tokenizer, 0)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, tokenizer, PROMPTS, temperature=0)
    with pytest.raises(ValueError, match="non-empty list"):
        sample(model, tokenizer, "The plot was")


def test_unknown_model_name_fails_fast_without_the_offline_flag(monkeypatch):
    """With the hub unreachable, the loader gives the message without attempting a download (and its retries)."""
    import transformers

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("rlhf_lib.lm._hub_reachable", lambda timeout=3.0: False)
    original = transformers.AutoTokenizer.from_pretrained
    downloads = []

    def spy(name, *args, **kwargs):
        if not kwargs.get("local_files_only"):
            downloads.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    with pytest.raises(OSError, match="could not load the model"):
        load_model("no-such-org/no-such-model")
    assert downloads == []
