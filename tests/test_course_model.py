"""The shipped small GPT-2: loads the standard way, is small, fluent, and as positive as its corpus."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_lib.evaluate import sample_texts, text_report
from rlhf_lib.lm import COURSE_MODEL, load_model, logprobs_of, sample
from rlhf_lib.reviews import PROMPTS, generate_reviews


@pytest.fixture(scope="module")
def course():
    return load_model()


def test_loads_with_plain_transformers():
    model = AutoModelForCausalLM.from_pretrained(COURSE_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(COURSE_MODEL)
    assert model.config.model_type == "gpt2"
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"


def test_is_at_most_20_mb():
    size = sum(f.stat().st_size for f in COURSE_MODEL.iterdir() if f.is_file())
    assert size <= 20e6, f"{size / 1e6:.1f} MB"


def test_tokenizer_round_trips_reviews(course):
    _, tokenizer = course
    for review in generate_reviews(200, seed=5):
        ids = tokenizer(review, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == review


def test_samples_are_fluent_and_as_positive_as_the_corpus(course):
    model, tokenizer = course
    samples = text_report(sample_texts(model, tokenizer, n=500, temperature=1.0, seed=0))
    corpus = text_report(generate_reviews(5000, seed=1))
    assert samples["grammatical_rate"] >= 0.95, samples
    assert abs(samples["positive_rate"] - corpus["positive_rate"]) <= 0.10, (samples, corpus)


def test_model_card_states_its_figures():
    card = (COURSE_MODEL / "README.md").read_text()
    summary = json.loads((COURSE_MODEL / "summary.json").read_text())
    assert f"{summary['heldout_loss']:.3f}" in card
    assert f"{summary['corpus_reviews']:,}" in card and "grammatical" in card


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_recomputed_on_the_course_model(course, temperature):
    model, tokenizer = course
    s = sample(model, tokenizer, list(PROMPTS), max_new_tokens=48, temperature=temperature, seed=0)
    assert len({int(m.sum()) for m in s.prompt_mask}) > 1  # prompts of different lengths
    with torch.no_grad():
        torch.testing.assert_close(logprobs_of(model, s), s.logp, atol=1e-5, rtol=0)
