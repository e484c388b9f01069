"""Seeding, the fast setting, and the input checks."""

import random

import numpy as np
import pytest
import torch

from rlhf_lib import pick, set_seed
from rlhf_lib.runtime import SEED_STREAMS, check_count, check_positive, check_probability, derive_seed, is_fast


def draw():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_same_seed_same_numbers():
    set_seed(7)
    a = draw()
    set_seed(7)
    assert draw() == a
    set_seed(8)
    assert draw() != a


# the seeds each stream was given before derive_seed, written out again: (seed, index) -> seed of the stream
STREAMS_BEFORE = {"corpus sample": lambda s, i: s + 1, "sentence heldout": lambda s, i: s + 10_000,
                  "sentence normalization": lambda s, i: s + 20_000, "whole groups": lambda s, i: s + 1,
                  "whole heldout": lambda s, i: s + 1000, "whole normalization": lambda s, i: s + 2000,
                  "proxy pairs": lambda s, i: s + 7, "proxy heldout": lambda s, i: s + 99,
                  "dpo batches": lambda s, i: s + 1, "ppo update check": lambda s, i: s + 100,
                  "sampler": lambda s, i: s * 1000 + i, "pair round": lambda s, i: s * 1_000_003 + i,
                  "group chunk": lambda s, i: s * 100_003 + i, "environment": lambda s, i: s + i}
INDEXED = ("sampler", "pair round", "group chunk", "environment")


def test_derived_seeds_are_the_ones_each_stream_had():
    assert set(SEED_STREAMS) == set(STREAMS_BEFORE)
    for name, before in STREAMS_BEFORE.items():
        for seed in (0, 1, 2, 17, 1234):
            for index in (0, 1, 5, 999) if name in INDEXED else (0,):
                assert derive_seed(seed, name, index) == before(seed, index), (name, seed, index)


def test_a_new_stream_gets_its_own_seed_from_a_hash():
    seeds = {derive_seed(seed, name, index) for seed in (0, 1) for name in ("a stream", "another") for index in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(3, "a stream", 2) == derive_seed(3, "a stream", 2)
    torch.Generator().manual_seed(derive_seed(3, "a stream"))  # a seed torch takes
    torch.Generator().manual_seed(derive_seed(derive_seed(3, "a stream"), "pair round", 9))  # and a stream of it
    with pytest.raises(ValueError, match="seed"):
        derive_seed(-1, "sampler")
    with pytest.raises(ValueError, match="index"):
        derive_seed(0, "sampler", -1)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        set_seed(-1)
    with pytest.raises(ValueError, match="seed"):
        set_seed("42")


@pytest.mark.parametrize("value,fast", [("1", True), ("true", True), ("0", False), ("", False)])
def test_pick_follows_the_environment(monkeypatch, value, fast):
    monkeypatch.setenv("RLHF_FAST", value)
    assert is_fast() is fast
    assert pick(full=1000, fast=10) == (10 if fast else 1000)


def test_checks():
    assert check_probability("p", 0.5) == 0.5
    for bad in (-0.1, 1.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="p must be a number in"):
            check_probability("p", bad)
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        check_positive("lr", 0.0)
    assert check_positive("x", 0.0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match=">= 1"):
        check_count("n", 0)
    with pytest.raises(ValueError):
        check_count("n", 2.5)
