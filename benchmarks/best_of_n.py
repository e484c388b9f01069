"""Best-of-n on the course model: gold sentiment and KL against n, the analytic KL against the real one.

    python benchmarks/best_of_n.py        # writes results/best_of_n.json

For each course prompt, a pool of N one-sentence completions of the course model (seed 0) is scored by
the course reward model (the proxy, assets/reward_model) and by VADER (the gold). From the pools,
`bon.best_of_n_curve` gives, for each n, the expected proxy and gold score of best-of-n, the plug-in KL
of best-of-n from the base policy (completions repeat in this small language) and the bound
log n - (n - 1)/n. Gao et al.'s best-of-n form is fitted to gold gain against d = sqrt(KL), on the
empirical KL and on the bound.
"""

import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rlhf_lib.bon import best_of_n_curve, fit_gao
from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.lm import load_model, sample
from rlhf_lib.reviews import PROMPTS
from rlhf_lib.reward_model import load_reward_model, score_texts

ROOT = Path(__file__).resolve().parents[1]
N_POOL = 256
NS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def main():
    start = time.perf_counter()
    policy, tokenizer = load_model()
    reward_model, reward_tokenizer = load_reward_model(ROOT / "assets/reward_model")
    generator = torch.Generator().manual_seed(0)
    pools, distinct = [], []
    for prompt in PROMPTS:
        s = sample(policy, tokenizer, [prompt] * N_POOL, max_new_tokens=32, generator=generator, stop_at="sentence")
        texts = s.texts
        pools.append((texts, score_texts(reward_model, reward_tokenizer, texts), gold_sentiment(texts)))
        distinct.append(len(set(texts)))
    curve = best_of_n_curve(pools, NS)
    fits = {"empirical KL": fit_gao(curve["d"], curve["gold_gain"], "bon"),
            "analytic bound": fit_gao(np.sqrt(curve["kl_bound"]), curve["gold_gain"], "bon")}
    rows = {k: [round(float(x), 4) for x in v] for k, v in curve.items()}
    for k in ("n", "kl_bound", "kl_empirical", "proxy", "gold"):
        print(f"{k:>13}", rows[k])
    for name, fit in fits.items():
        print(name, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in fit.items()})
    out = dict(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
               torch=torch.__version__, pool_per_prompt=N_POOL, prompts=list(PROMPTS),
               distinct_per_prompt=distinct, curve=rows, fits=fits, seconds=round(time.perf_counter() - start, 1))
    (ROOT / "benchmarks/results/best_of_n.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
