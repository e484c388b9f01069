"""Golden group runs: what `train_on_groups` gave on labelled groups of whole reviews, to hold it fixed while the
reward model's training code is rearranged (tests/test_golden_groups.py compares a fresh run with these, exactly).

    python tests/data/make_golden_groups.py     # about 20 s; rewrites tests/data/golden_groups.json

The data: 48 generated reviews in 12 groups of 4, every pair within a group ordered by VADER (ties left out),
so the texts of a batch are shared between its pairs. The runs, each from the course model's backbone with a
head seeded 0: sum pooling with the head at zero (the whole-review recipe), 3 groups a step for 2 epochs; mean
pooling with the random head, 4 groups a step for 2 epochs. Each is recorded with its losses, accuracies and a
SHA-256 of its weights, on two threads, with the processor (as tests/data/make_golden.py does)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden_groups.json")
_spec = importlib.util.spec_from_file_location("make_golden", Path(__file__).with_name("make_golden.py"))
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)

# name -> (pooling, head at zero, groups a step, epochs, learning rate, warmup)
RUNS = {"sum, zero head": ("sum", True, 3, 2, 5e-4, 2), "mean, random head": ("mean", False, 4, 2, 1e-3, 3)}


def labelled_groups() -> list[list[dict]]:
    """12 groups of 4 whole reviews, every pair within a group as {prompt "", chosen, rejected} by VADER."""
    from rlhf_lib.evaluate import gold_sentiment
    from rlhf_lib.reviews import generate_reviews

    reviews = generate_reviews(48, seed=5)
    score = dict(zip(reviews, gold_sentiment(reviews)))
    groups = []
    for g in range(0, len(reviews), 4):
        pairs = [(a, b) if score[a] > score[b] else (b, a)
                 for a, b in combinations(reviews[g : g + 4], 2) if score[a] != score[b]]
        groups.append([dict(prompt="", chosen=c, rejected=r) for c, r in pairs])
    return groups


def run(pooling: str, zero: bool, groups_per_batch: int, epochs: int, lr: float, warmup: int) -> dict:
    from rlhf_lib.reward_model import RewardConfig, make_reward_model
    from rlhf_lib.whole_reviews import train_on_groups, zero_head

    model, tok = make_reward_model(seed=0)
    model.config.reward_pooling = pooling
    if zero:
        zero_head(model)
    cfg = RewardConfig(epochs=epochs, lr=lr, warmup=warmup, seed=0)
    result = train_on_groups(model, tok, labelled_groups(), cfg, groups_per_batch=groups_per_batch, progress=False)
    return dict(losses=result.losses, accuracies=result.accuracies, weights=make_golden.weights_digest(model),
                norm=make_golden.weights_norm(model))


def make() -> dict:
    from rlhf_lib.threads import fixed

    with fixed(make_golden.THREADS):
        return {name: run(*setting) for name, setting in RUNS.items()}


if __name__ == "__main__":
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    out = dict(commit=commit.strip(), cpu=make_golden.cpu(), torch=torch.__version__, threads=make_golden.THREADS,
               runs=make())
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {GOLDEN} at {out['commit']} on {out['cpu']}", file=sys.stderr)
