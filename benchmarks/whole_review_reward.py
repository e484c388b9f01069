"""Reward models for WHOLE reviews: what it takes to agree with the gold taste on 90% of held-out pairs.

    python benchmarks/whole_review_pool.py heldout 1000 2   # the held-out pairs (cached in runs/whole_reviews)
    python benchmarks/whole_review_pool.py train 4000 4     # the training reviews: groups of 4 per start
    python benchmarks/whole_review_reward.py [OPTION ...]   # train and measure; writes results/whole_review_reward.json

Reviews are sampled from the shipped course model to end-of-text, from starts drawn by
`rlhf_lib.whole_reviews.review_starts` (a third course prompts, a third other openings of the language,
a third nothing at all). The simulated annotator (Bradley-Terry on VADER, temperature 0.1 unless an option
says otherwise) labels training pairs; held-out pairs (two reviews from one fresh start) are judged by the
gold preference only, ties left out. Every option trains a fresh reward model on the course model's backbone.
"""

import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

from rlhf_lib.feedback import SimulatedAnnotator
from rlhf_lib.reward_model import RewardConfig, make_reward_model
from rlhf_lib.whole_reviews import gold_agreement, label_groups, train_on_groups

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "runs/whole_reviews"
RESULTS = ROOT / "benchmarks/results/whole_review_reward.json"

# name -> (groups of the pool, pairing, pooling, epochs, lr, annotator temperature)
# pairing "disjoint": each group of 4 gives two pairs (reviews 1-2 and 3-4), as `sample_pairs` would;
# "all": every pair of the group's 4 reviews (6 judgements of the same 4 texts).
OPTIONS = {
    "2k pairs, last token": (1000, "disjoint", "last", 8, 5e-4, 0.1),
    "2k pairs, sum": (1000, "disjoint", "sum", 8, 5e-4, 0.1),
    "2k pairs, mean": (1000, "disjoint", "mean", 8, 5e-4, 0.1),
    "2k pairs, sum, temperature 0.05": (1000, "disjoint", "sum", 8, 5e-4, 0.05),
    "1k groups of 4 (6k pairs), last token": (1000, "all", "last", 8, 5e-4, 0.1),
    "1k groups of 4 (6k pairs), sum": (1000, "all", "sum", 8, 5e-4, 0.1),
    "2k groups of 4 (12k pairs), sum, 4 epochs": (2000, "all", "sum", 4, 5e-4, 0.1),
    "3k groups of 4 (18k pairs), sum, 3 epochs": (3000, "all", "sum", 3, 5e-4, 0.1),
    "4k groups of 4 (24k pairs), sum, 2 epochs": (4000, "all", "sum", 2, 5e-4, 0.1),
}


def load_pool(split: str) -> list[tuple[str, list[str]]]:
    path = POOL / f"{split}.jsonl"
    if not path.exists():
        sys.exit(f"no pool at {path}: run benchmarks/whole_review_pool.py {split} first")
    return [(g["start"], g["responses"]) for g in map(json.loads, path.read_text().splitlines())]


def heldout_pairs(n: int = 1000) -> list[tuple[str, str, str]]:
    pairs = [(s, rs[0], rs[1]) for s, rs in load_pool("heldout") if len(rs) == 2 and rs[0] != rs[1]]
    return pairs[:n]


def training_groups(pool, n_groups: int, pairing: str) -> list[tuple[str, list[str]]]:
    if len(pool) < n_groups:
        sys.exit(f"the training pool has {len(pool)} groups, the option needs {n_groups}")
    out = []
    for start, rs in pool[:n_groups]:
        if pairing == "all":
            out.append((start, rs))
        elif pairing == "disjoint":
            out += [(start, rs[0:2]), (start, rs[2:4])]
        else:
            raise ValueError(f"unknown pairing {pairing!r}")
    return out


def run(name: str, pool, heldout) -> dict:
    n_groups, pairing, pooling, epochs, lr, temperature = OPTIONS[name]
    groups = training_groups(pool, n_groups, pairing)
    labelled = label_groups(SimulatedAnnotator(temperature, seed=0), groups)
    n_pairs = sum(map(len, labelled))
    # the same compute per step for every option: 64 texts (32 one-pair groups or 16 groups of 4)
    per_batch = 16 if pairing == "all" else 32
    model, tok = make_reward_model(pooling="sum" if pooling == "sum" else "last")
    model.config.reward_pooling = pooling
    cfg = RewardConfig(epochs=epochs, lr=lr)
    result = train_on_groups(model, tok, labelled, cfg, groups_per_batch=per_batch, progress=False)
    report = gold_agreement(model, tok, heldout)
    return dict(n_groups=n_groups, pairing=pairing, pooling=pooling, epochs=epochs, lr=lr,
                annotator_temperature=temperature, n_train_pairs=n_pairs,
                n_train_reviews=sum(len(set(rs)) for _, rs in groups), steps=len(result.losses),
                gold_accuracy=report["gold_accuracy"], n_heldout=report["n_decided"], by_gap=report["by_gap"],
                training_seconds=round(result.seconds, 1), final_train_loss=sum(result.losses[-20:]) / 20)


def main(names: list[str]):
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        sys.exit(f"unknown option(s) {unknown}; options: {list(OPTIONS)}")
    pool, heldout = load_pool("train"), heldout_pairs()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else dict(runs={})
    for name in names or list(OPTIONS):
        torch.manual_seed(0)
        results["runs"][name] = run(name, pool, heldout)
        results.update(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                       torch=torch.__version__, n_heldout_pairs=len(heldout),
                       commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                             cwd=ROOT).stdout.strip())
        RESULTS.write_text(json.dumps(results, indent=2))  # after every option: nothing lost on interruption
        r = results["runs"][name]
        print(f"{name}: {r['gold_accuracy']:.1%} of {r['n_heldout']} held-out, {r['n_train_pairs']} pairs, "
              f"{r['training_seconds']} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
