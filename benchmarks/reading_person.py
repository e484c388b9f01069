"""What changes when the simulated person reads: the shipped labels and reward models against the reading taste.

    python benchmarks/reading_person.py        # about 3 minutes on 2 cores

The course's simulated person used to judge by VADER alone; now it reads (`rlhf_lib.feedback.SimulatedAnnotator`:
VADER + 3 for a grammatical review). The shipped reward models were trained on labels of the blind person. This
measures, on their training data and on fresh pairs of the course model:

- how many texts are broken and how many pairs hold a broken one;
- on how many pairs the noise-free choice changes (the blind person's against the reading one's);
- how often each shipped reward model agrees with the old gold (VADER) and with the new (the reading taste),
  on pairs of a grammatical and a broken review in particular.

Writes results/reading_person.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reading_person.json"


def relabelled(pairs) -> dict:
    """How many texts are broken, how many pairs hold one, and on how many pairs the noise-free choice of the blind
    person (VADER alone) and of the reading one differ (it can only differ where exactly one text is broken)."""
    from rlhf_lib.evaluate import gold_sentiment
    from rlhf_lib.feedback import gold_preference
    from rlhf_lib.reviews import is_grammatical

    def blind(p, a, b):
        s_a, s_b = gold_sentiment([p + a, p + b])
        return "a" if s_a > s_b else "b" if s_b > s_a else "tie"

    changed = [blind(*pair) != gold_preference(*pair) for pair in pairs]
    broken = [not is_grammatical(p + a) or not is_grammatical(p + b) for p, a, b in pairs]
    texts = {p + x for p, a, b in pairs for x in (a, b)}
    return dict(pairs=len(pairs), texts=len(texts), broken_texts=float(np.mean([not is_grammatical(t) for t in texts])),
                pairs_with_a_broken_text=float(np.mean(broken)), noise_free_choice_changed=float(np.mean(changed)))


def agreement(model, tokenizer, pairs) -> dict:
    """A reward model's agreement with the old gold and the new, overall and on pairs where exactly one is broken."""
    from rlhf_lib.evaluate import gold_sentiment
    from rlhf_lib.reviews import is_grammatical
    from rlhf_lib.reward_model import score_texts

    a = score_texts(model, tokenizer, [p + x for p, x, _ in pairs], normalize=False)
    b = score_texts(model, tokenizer, [p + y for p, _, y in pairs], normalize=False)
    out = {}
    firsts, seconds = [p + x for p, x, _ in pairs], [p + y for p, _, y in pairs]
    for name, grammar in (("vader", 0.0), ("reading", 3.0)):
        ga = gold_sentiment(firsts) + grammar * np.array([is_grammatical(t) for t in firsts])
        gb = gold_sentiment(seconds) + grammar * np.array([is_grammatical(t) for t in seconds])
        decided = ga != gb
        out[name] = float(((a > b) == (ga > gb))[decided].mean())
    mixed = np.array([is_grammatical(p + x) != is_grammatical(p + y) for p, x, y in pairs])
    fluent_first = np.array([is_grammatical(p + x) for p, x, _ in pairs])
    out["mixed_pairs"] = int(mixed.sum())
    out["prefers_the_grammatical_one"] = float(((a > b) == fluent_first)[mixed].mean()) if mixed.any() else None
    return out


def main():
    from rlhf_lib.feedback import read_records, sample_pairs
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.runtime import derive_seed
    from rlhf_lib.whole_reviews import WHOLE_REVIEW_REWARD_MODEL, WholeRewardConfig, sample_groups, sample_whole_pairs

    model, tok = load_model()
    cfg = WholeRewardConfig()
    results = {}
    sentence = [(r["prompt"], r["completion_a"], r["completion_b"])
                for r in read_records(ROOT / "assets" / "reward_model" / "labels.jsonl")]
    results["sentence labels (assets/reward_model)"] = relabelled(sentence)
    groups = sample_groups(model, tok, cfg.n_groups, cfg.group_size, seed=derive_seed(cfg.seed, "whole groups"),
                           progress=True)  # the whole-review model's training reviews, made again
    pairs = [(s, a, b) for s, reviews in groups for i, a in enumerate(reviews) for b in reviews[i + 1 :] if a != b]
    results["whole-review training pairs, within a start (assets/whole_review_reward_model)"] = relabelled(pairs)
    fresh_whole = sample_whole_pairs(model, tok, 1000, seed=derive_seed(7, "whole heldout"), progress=True)
    fresh_sentence = sample_pairs(model, tok, 1000, seed=derive_seed(7, "sentence heldout"))
    results["shipped whole-review reward model on 1000 fresh pairs"] = agreement(
        *load_reward_model(WHOLE_REVIEW_REWARD_MODEL), fresh_whole)
    results["shipped sentence reward model on 1000 fresh pairs"] = agreement(
        *load_reward_model(ROOT / "assets" / "reward_model"), fresh_sentence)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    results["date"], results["commit"] = str(date.today()), commit
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
