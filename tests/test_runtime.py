"""Seeding, the fast setting, and the input checks."""

import random

import numpy as np
import pytest
import torch

from rlhf_lib import pick, set_seed
from rlhf_lib.runtime import check_count, check_positive, check_probability, is_fast


def draw():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_same_seed_same_numbers():
    set_seed(7)
    a = draw()
    set_seed(7)
    assert draw() == a
    set_seed(8)
    assert draw() != a


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
