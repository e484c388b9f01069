"""DPO on whole reviews: from 2,000 labelled pairs of whole reviews, how far DPO moves the gold positive rate and
what it costs in grammar and KL, from the course prompts and from the start of text.

    python benchmarks/dpo_whole.py          # about 9 minutes; results/dpo_whole.json

Labels: 2,000 pairs of whole reviews of the course model, both reviews of a pair from one start (`review_starts`:
a course prompt, another opening, or nothing), labelled by the simulated annotator (temperature 0.1; ties left
out; `whole_review_labels`). Each setting trains a fresh copy of the course model with `train_dpo` (2 epochs
of 32 pairs, 10% of the pairs held out, end-of-text appended to every completion: a whole review ends there)
and is measured with `whole_reviews.evaluate_whole` (300 reviews from the course prompts, 300 from the start
of text, seed 1234). `nll_coef` adds the chosen completions' negative log-likelihood per token (RPO); the
last-but-one setting is `whole_review_dpo_config()`. "mass": `where_the_mass_went` on the labels (per-token
log-ratio of the chosen and of the rejected reviews, the labelled reviews' total probability per start).
"""

import json
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

from rlhf_lib.dpo import DPOConfig, train_dpo, where_the_mass_went
from rlhf_lib.lm import load_model
from rlhf_lib.whole_reviews import evaluate_whole, whole_review_labels

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dpo_whole.json"
SETTINGS = [dict(beta=0.3, lr=2e-4), dict(beta=1.0, lr=1e-4), dict(beta=1.0, lr=3e-4),
            dict(beta=0.3, lr=2e-4, loss_type="ipo"), dict(beta=1.0, lr=4e-4, nll_coef=0.5),
            dict(beta=0.3, lr=3e-4, nll_coef=1.0), dict(beta=1.0, lr=5e-4, nll_coef=1.0)]


def figures(report: dict) -> dict:
    return {where: dict(positive=r["positive_rate"], grammatical=r["grammatical_rate"], kl_exact=r["kl_exact"],
                        finished=r["finished"], examples=r["examples"][:3]) for where, r in report.items()}


def main():
    start = time.perf_counter()
    policy, tokenizer = load_model()
    reference, _ = load_model()
    labels = whole_review_labels(policy, tokenizer, 2000, seed=11)
    rows = [dict(setting="course model", seconds=0.0, **figures(evaluate_whole(reference, reference, tokenizer)))]
    for setting in SETTINGS:
        policy, _ = load_model()
        cfg = DPOConfig(add_eos=True, **setting)
        run = train_dpo(policy, reference, tokenizer, labels, cfg, progress=False)
        rows.append(dict(setting=setting, seconds=round(run.seconds, 1), heldout_accuracy=run.heldout[-1]["accuracy"],
                         **figures(evaluate_whole(policy, reference, tokenizer))))
        mass = where_the_mass_went(policy, reference, tokenizer, labels, n_samples=200, add_eos=True, max_new_tokens=64,
                                   stop_at="text")
        rows[-1]["mass"] = {k: round(v, 4) for k, v in mass.items()}
        r = rows[-1]
        print(setting, f"{r['seconds']:.0f} s",
              *(f"{w}: {r[w]['positive']:.1%} positive, {r[w]['grammatical']:.1%} "
                f"grammatical, KL {r[w]['kl_exact']:.2f}" for w in ("course", "empty")),
              flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    RESULTS.write_text(json.dumps(dict(
        date=str(date.today()), commit=commit, torch=torch.__version__,
        machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads", labels=len(labels),
        rows=rows, seconds=round(time.perf_counter() - start, 1)), indent=1))


if __name__ == "__main__":
    main()
