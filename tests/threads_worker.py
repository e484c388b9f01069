"""A real training process for tests/test_threads.py: PPO-RLHF iterations or sampling rounds for a while.

    python tests/threads_worker.py ppo|sample SECONDS OUT.json [WAIT_FOR]

Runs for SECONDS after its first step, or, given WAIT_FOR, until that file exists and then SECONDS more.
Touches OUT.json.started after its third step; writes OUT.json at the end:
[{"start": wall time, "end": wall time, "threads": [torch's thread counts seen]}, ...], one a step."""

import json
import sys
import time
from pathlib import Path

import torch

from rlhf_lib import set_seed
from rlhf_lib.lm import load_model, sample
from rlhf_lib.reviews import PROMPTS
from rlhf_lib.rlhf import RLHFConfig, ppo_iteration, train_rlhf


def main(kind: str, seconds: float, out: str, wait_for: str | None = None) -> None:
    set_seed(0)
    policy, tok = load_model()
    steps, deadline = [], None

    def record(work):
        nonlocal deadline
        start, before = time.time(), torch.get_num_threads()
        result = work()
        steps.append(dict(start=start, end=time.time(), threads=[before, torch.get_num_threads()]))
        if len(steps) == 3:
            Path(out + ".started").touch()
        if deadline is None and (wait_for is None or Path(wait_for).exists()):
            deadline = time.time() + seconds
        return result

    def done() -> bool:
        return deadline is not None and time.time() > deadline

    if kind == "ppo":
        reference, _ = load_model()
        cfg = RLHFConfig(iterations=10_000, batch_size=16, minibatches=2, epochs=1, max_new_tokens=16)

        def iteration(setup, prompts, beta):
            if done():
                raise TimeoutError  # the planned run is long; the deadline ends it
            return record(lambda: ppo_iteration(setup, prompts, beta))

        try:
            train_rlhf(policy, tok, None, None, reference, cfg, progress=False, iteration_fn=iteration,
                       score_fn=lambda texts, batch: torch.zeros(len(texts)))
        except TimeoutError:
            pass
    else:
        while not done():
            record(lambda: sample(policy, tok, list(PROMPTS) * 4, max_new_tokens=32, seed=len(steps)))
    with open(out, "w") as f:
        json.dump(steps, f)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3], *sys.argv[4:])
