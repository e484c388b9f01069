"""Reward model: held-out agreement with the gold taste, and training time.

    python benchmarks/reward_model.py      # about 8 minutes on 2 cores; writes results/reward_model.json
                                           # and assets/figures/07_pooling.png

The target: trained on at most 2,000 pairs labelled by the simulated annotator (temperature 0.1),
agree with the noise-free gold preference on at least 90% of held-out pairs, in at most 3 minutes
of training on 2 cores. Pairs are two samples of the course model for the same course prompt.
Three settings, all with `RewardConfig()` defaults: the course's (responses end with the prompt's
sentence, head on the last real token), the same with the summing head, and whole reviews (responses
end at end-of-text) with the last-token head.
"""

import json
import platform
import time
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from rlhf_lib.feedback import SimulatedAnnotator, label_pairs, sample_pairs, to_pairs
from rlhf_lib.lm import load_model
from rlhf_lib.reward_model import RewardConfig, accuracy_by_gap, make_reward_model, pair_accuracy, train_reward_model

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_HELDOUT = 2000, 1000


SETTINGS = {"one sentence, last token": ("sentence", "last"), "one sentence, sum": ("sentence", "sum"),
            "whole review, last token": ("text", "last")}


def main():
    torch.manual_seed(0)
    policy, tok = load_model()
    data, runs = {}, {}
    for name, (stop_at, pooling) in SETTINGS.items():
        if stop_at not in data:
            start = time.perf_counter()
            pairs = sample_pairs(policy, tok, N_TRAIN + N_HELDOUT, seed=1, stop_at=stop_at)
            records = [vars(r) for r in label_pairs(SimulatedAnnotator(0.1, seed=0), pairs[:N_TRAIN])]
            heldout = [dict(prompt=p, chosen=a, rejected=b) for p, a, b in pairs[N_TRAIN:]]
            data[stop_at] = (to_pairs(records), heldout, time.perf_counter() - start)
        train, heldout, data_seconds = data[stop_at]
        model, tokenizer = make_reward_model(pooling=pooling)
        cfg = RewardConfig()
        result = train_reward_model(model, tokenizer, train, cfg, progress=False)
        report = pair_accuracy(model, tokenizer, heldout)
        runs[name] = dict(stop_at=stop_at, pooling=pooling, gold_accuracy=report["gold_accuracy"],
                          n_train_pairs=len(train), n_heldout=report["n_gold_decided"], by_gap=accuracy_by_gap(report),
                          training_seconds=round(result.seconds, 1),
                          sampling_and_labelling_seconds=round(data_seconds, 1), config=vars(cfg))
        print(name, json.dumps(runs[name]))
    result = dict(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                  torch=torch.__version__, n_labelled_pairs=N_TRAIN, n_heldout_pairs=N_HELDOUT,
                  annotator_temperature=0.1, runs=runs)
    (ROOT / "benchmarks/results/reward_model.json").write_text(json.dumps(result, indent=2))
    plot(runs, ROOT / "assets/figures/07_pooling.png")


def plot(runs: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(runs)
    for k, (name, run) in enumerate(runs.items()):
        bands = run["by_gap"]
        xs = [i + (k - (len(runs) - 1) / 2) * width for i in range(len(bands["bands"]))]
        ax.bar(xs, bands["accuracy"], width, label=f"{name}: {run['gold_accuracy']:.1%} overall")
    ax.set_xticks(range(len(bands["bands"])), bands["bands"])
    ax.axhline(0.9, color="gray", lw=0.8, ls="--")
    ax.set(xlabel="|gold score gap| of the held-out pair", ylabel="agreement with gold", ylim=(0.4, 1.0),
           title="reward models trained on 2,000 labelled pairs")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
