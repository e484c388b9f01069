"""Sample and cache the pool of whole reviews the reward-model benchmark trains and tests on.

    python benchmarks/whole_review_pool.py heldout 1000     # 1,000 groups of 2 (the held-out pairs)
    python benchmarks/whole_review_pool.py train 3000 4     # 3,000 groups of 4 reviews from one start each

Each line of runs/whole_reviews/<split>.jsonl is one group: a start and the model's whole reviews from it.
The file grows 64 groups at a time, so an interrupted run keeps what it wrote and resumes where it stopped.
"""

import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from rlhf_lib.lm import load_model
from rlhf_lib.whole_reviews import review_starts, sample_whole_reviews

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "runs/whole_reviews"
SEEDS = {"heldout": 1000, "train": 1}
CHUNK = 64


def main(split: str, n_groups: int, k: int = 2, max_new_tokens: int = 64):
    path = POOL / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = sum(1 for _ in open(path)) if path.exists() else 0
    starts = review_starts(n_groups, seed=SEEDS[split])
    model, tok = load_model()
    bar = tqdm(total=n_groups, initial=done, desc=f"{split} groups")
    for c in range(done, n_groups, CHUNK):
        chunk = starts[c : c + CHUNK]
        batch = [s for s in chunk for _ in range(k)]
        _, responses, finished = sample_whole_reviews(model, tok, batch, max_new_tokens,
                                                      seed=SEEDS[split] * 100_003 + c, batch_size=len(batch))
        with open(path, "a") as f:
            for g, s in enumerate(chunk):
                rs = [r for r, ok in zip(responses[g * k : (g + 1) * k], finished[g * k : (g + 1) * k]) if ok]
                f.write(json.dumps(dict(start=s, responses=rs)) + "\n")
        bar.update(len(chunk))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:]))
