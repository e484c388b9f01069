"""A real training process for tests/test_threads.py: PPO-RLHF iterations or sampling rounds for a while.

    python tests/threads_worker.py ppo|sample SECONDS OUT.json

Writes [{"start": wall time, "end": wall time, "threads": [torch's thread counts seen]}, ...], one a step."""

import json
import sys
import time

import torch

from rlhf_lib import set_seed
from rlhf_lib.lm import load_model, sample
from rlhf_lib.reviews import PROMPTS
from rlhf_lib.rlhf import RLHFConfig, ppo_iteration, train_rlhf


def main(kind: str, seconds: float, out: str) -> None:
    set_seed(0)
    policy, tok = load_model()
    steps, deadline = [], time.time() + seconds

    def record(work):
        start, before = time.time(), torch.get_num_threads()
        result = work()
        steps.append(dict(start=start, end=time.time(), threads=[before, torch.get_num_threads()]))
        return result

    if kind == "ppo":
        reference, _ = load_model()
        cfg = RLHFConfig(iterations=10_000, batch_size=16, minibatches=2, epochs=1, max_new_tokens=16)

        def iteration(setup, prompts, beta):
            if time.time() > deadline:
                raise TimeoutError  # the planned run is long; the deadline ends it
            return record(lambda: ppo_iteration(setup, prompts, beta))

        try:
            train_rlhf(policy, tok, None, None, reference, cfg, progress=False, iteration_fn=iteration,
                       score_fn=lambda texts, batch: torch.zeros(len(texts)))
        except TimeoutError:
            pass
    else:
        while time.time() < deadline:
            record(lambda: sample(policy, tok, list(PROMPTS) * 4, max_new_tokens=32, seed=len(steps)))
    with open(out, "w") as f:
        json.dump(steps, f)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3])
