"""Reward models for WHOLE reviews: what it takes to agree with the gold taste on 90% of held-out pairs.

    python benchmarks/whole_review_pool.py heldout 1000 2   # the held-out pairs (cached in runs/whole_reviews)
    python benchmarks/whole_review_pool.py train 1000 4     # the training reviews: groups of 4 per start
    python benchmarks/whole_review_features.py             # frozen hidden states (for the "frozen" options)
    python benchmarks/whole_review_reward.py [OPTION ...]   # train and measure; writes results/whole_review_reward.json
    python benchmarks/whole_review_reward.py --max-seconds 900 OPTION   # stop training after 15 minutes, then measure
    python benchmarks/whole_review_reward.py recipe [FIELD=VALUE ...]   # the library's recipe end to end (no pool)
    python benchmarks/whole_review_reward.py recipe-asset   # record assets/whole_review_reward_model/summary.json

`recipe` runs `rlhf_lib.whole_reviews.train_whole_review_reward_model` with `WholeRewardConfig()` (what
`python -m rlhf_lib reward` runs by default), changed by FIELD=VALUE pairs (`epochs=2`, `pooling=last`):
it samples its own reviews and held-out pairs, so it needs no pool. `recipe-asset` records the build of the
shipped model (scripts/build_whole_review_reward_model.py), the same recipe with seed 0.

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
import torch.nn.functional as F

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.feedback import SimulatedAnnotator
from rlhf_lib.reward_model import RewardConfig, make_reward_model
from rlhf_lib.whole_reviews import gold_agreement, label_groups, train_on_groups, zero_head

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "runs/whole_reviews"
RESULTS = ROOT / "benchmarks/results/whole_review_reward.json"

# name -> (groups of the pool, pairing, pooling, epochs, lr, annotator temperature)
# pairing "disjoint": each group of 4 gives two pairs (reviews 1-2 and 3-4), as `sample_pairs` would;
# "all": every pair of the group's 4 reviews (6 judgements of the same 4 texts); "batch": the 64 whole
# reviews of 16 groups form one group, every pair judged (2,016 judgements, mostly of different starts).
OPTIONS = {
    "2k pairs, last token": (1000, "disjoint", "last", 8, 5e-4, 0.1),
    "2k pairs, sum": (1000, "disjoint", "sum", 8, 5e-4, 0.1),
    "2k pairs, mean": (1000, "disjoint", "mean", 8, 5e-4, 0.1),
    "2k pairs, sum, 2 epochs": (1000, "disjoint", "sum", 2, 5e-4, 0.1),
    "2k pairs, sum, temperature 0.05": (1000, "disjoint", "sum", 8, 5e-4, 0.05),
    "1k groups of 4 (6k pairs), last token": (1000, "all", "last", 8, 5e-4, 0.1),
    "1k groups of 4 (6k pairs), sum": (1000, "all", "sum", 8, 5e-4, 0.1),
    "1k groups of 4, every pair of a batch's 64 reviews (124k pairs), sum": (1000, "batch", "sum", 8, 5e-4, 0.1),
    "1k groups of 4, every pair of a batch's 64 reviews (124k pairs), sum, 2 epochs":
        (1000, "batch", "sum", 2, 5e-4, 0.1),
    "2k groups of 4 (12k pairs), sum, 4 epochs": (2000, "all", "sum", 4, 5e-4, 0.1),
    "3k groups of 4 (18k pairs), sum, 3 epochs": (3000, "all", "sum", 3, 5e-4, 0.1),
    "4k groups of 4 (24k pairs), sum, 2 epochs": (4000, "all", "sum", 2, 5e-4, 0.1),
    "1k groups of 4, every pair of a batch's 64 reviews (124k pairs), sum, zero-initialised head":
        (1000, "batch", "sum", 8, 5e-4, 0.1),
    "1k groups of 4, every pair of a batch's 64 reviews (124k pairs), last token, zero-initialised head":
        (1000, "batch", "last", 8, 5e-4, 0.1),
}
# options whose head starts at zero (`zero_head`): every reward 0 before the first step
ZERO_HEAD = {name for name in OPTIONS if name.endswith("zero-initialised head")}


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
        elif pairing != "batch":
            raise ValueError(f"unknown pairing {pairing!r}")
    if pairing == "batch":
        chunks = [pool[i : i + 16] for i in range(0, n_groups, 16)]
        out = [("", [start + r for start, rs in chunk for r in rs]) for chunk in chunks]
    return out


def run(name: str, pool, heldout, max_seconds=None) -> dict:
    n_groups, pairing, pooling, epochs, lr, temperature = OPTIONS[name]
    groups = training_groups(pool, n_groups, pairing)
    labelled = label_groups(SimulatedAnnotator(temperature, seed=0), groups)
    n_pairs = sum(map(len, labelled))
    # the same compute per step for every option: 64 texts (32 one-pair groups or 16 groups of 4)
    per_batch = {"all": 16, "disjoint": 32, "batch": 1}[pairing]
    model, tok = make_reward_model(pooling="sum" if pooling == "sum" else "last")
    model.config.reward_pooling = pooling
    if name in ZERO_HEAD:
        zero_head(model)
    cfg = RewardConfig(epochs=epochs, lr=lr)
    cpu = time.process_time()
    result = train_on_groups(model, tok, labelled, cfg, groups_per_batch=per_batch, progress=True,
                             max_seconds=max_seconds)
    cpu = time.process_time() - cpu
    report = gold_agreement(model, tok, heldout)
    return dict(n_groups=n_groups, pairing=pairing, pooling=pooling, epochs=epochs, lr=lr,
                annotator_temperature=temperature, n_train_pairs=n_pairs,
                n_train_reviews=sum(len(set(rs)) for _, rs in groups), steps=len(result.losses),
                planned_steps=epochs * max(1, len(labelled) // per_batch),
                gold_accuracy=report["gold_accuracy"], n_heldout=report["n_decided"], by_gap=report["by_gap"],
                training_seconds=round(result.seconds, 1), training_cpu_seconds=round(cpu, 1),
                final_train_loss=sum(result.losses[-20:]) / 20, zero_head=name in ZERO_HEAD,
                # mean training loss of each block of 25 steps
                loss_curve=[round(sum(c) / len(c), 4) for c in (result.losses[i : i + 25]
                                                                for i in range(0, len(result.losses), 25))])


# ---- frozen backbone: linear heads on the course model's hidden states (whole_review_features.py)

# name -> (groups of the pool, pairing, pooling, layers read, annotator temperature); layer 0 = the embeddings
PROBES = {
    "frozen, 2k pairs, last token": (1000, "disjoint", "last", (4,), 0.1),
    "frozen, 2k pairs, sum": (1000, "disjoint", "sum", (4,), 0.1),
    "frozen, 124k pairs (batches of 64), last token": (1000, "batch", "last", (4,), 0.1),
    "frozen, 124k pairs (batches of 64), sum": (1000, "batch", "sum", (4,), 0.1),
    **{f"frozen, 124k pairs (batches of 64), sum of layer {k}": (1000, "batch", "sum", (k,), 0.1) for k in range(4)},
    "frozen, 124k pairs (batches of 64), sum of all layers": (1000, "batch", "sum", (0, 1, 2, 3, 4), 0.1),
    "frozen, 124k pairs (batches of 64), sum and last of all layers": (1000, "batch", "sum+last", (0, 1, 2, 3, 4), 0.1),
    "frozen, 6k pairs (groups of 4), sum of all layers": (1000, "all", "sum", (0, 1, 2, 3, 4), 0.1),
    "frozen, 2k pairs, sum of all layers": (1000, "disjoint", "sum", (0, 1, 2, 3, 4), 0.1),
}
L2 = 1e-4


def probe_features(features, pooling: str, layers) -> torch.Tensor:
    """(N, len(layers) * d) features of every text: hidden states summed over tokens or at the last token."""
    parts = {"sum": [features["sums"]], "last": [features["lasts"]], "sum+last": [features["sums"], features["lasts"]]}
    return torch.cat([x[:, list(layers)].flatten(1) for x in parts[pooling]], 1)


def fit_probe(x, chosen, rejected) -> torch.Tensor:
    """A linear Bradley-Terry head on standardised features x (N, D), fitted by L-BFGS on index pairs;
    returns the reward of every text, (N,)."""
    used = torch.unique(torch.cat([chosen, rejected]))
    mu, sd = x[used].mean(0), x[used].std(0) + 1e-6
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -F.logsigmoid(x[chosen] @ w - x[rejected] @ w).mean() + L2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (x @ w).detach()


def run_probe(name: str, pool, heldout, features) -> dict:
    n_groups, pairing, pooling, layers, temperature = PROBES[name]
    groups = training_groups(pool, n_groups, pairing)
    pairs = [p for g in label_groups(SimulatedAnnotator(temperature, seed=0), groups) for p in g]
    index = {t: i for i, t in enumerate(features["texts"])}
    chosen = torch.tensor([index[p["prompt"] + p["chosen"]] for p in pairs])
    rejected = torch.tensor([index[p["prompt"] + p["rejected"]] for p in pairs])
    start, cpu = time.perf_counter(), time.process_time()
    scores = fit_probe(probe_features(features, pooling, layers), chosen, rejected)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    a = [index[s + x] for s, x, _ in heldout]
    b = [index[s + y] for s, _, y in heldout]
    gold = gold_sentiment(features["texts"])
    gap = gold[a] - gold[b]
    decided = gap != 0
    right = ((scores[a] - scores[b]).numpy() > 0) == (gap > 0)
    return dict(n_groups=n_groups, pairing=pairing, pooling=pooling, layers=list(layers), backbone="frozen",
                annotator_temperature=temperature, n_train_pairs=len(pairs), gold_accuracy=float(right[decided].mean()),
                n_heldout=int(decided.sum()), training_seconds=round(seconds, 1), training_cpu_seconds=round(cpu, 1))


def base_model_rates() -> dict:
    """The shipped model's whole reviews in the held-out pool (temperature 1.0, none cut off), by kind of
    start: share positive (VADER compound > POSITIVE_THRESHOLD) and share grammatical."""
    from rlhf_lib.evaluate import POSITIVE_THRESHOLD
    from rlhf_lib.reviews import PROMPTS, is_grammatical

    texts = {"course prompt": [], "other opening of the language": [], "start of text": []}
    for start, rs in load_pool("heldout"):
        kind = ("start of text" if start == "" else "course prompt" if start in PROMPTS
                else "other opening of the language")
        texts[kind] += [start + r for r in rs]
    return {kind: dict(n=len(ts), positive_rate=float((gold_sentiment(ts) > POSITIVE_THRESHOLD).mean()),
                       grammatical_rate=sum(map(is_grammatical, ts)) / len(ts)) for kind, ts in texts.items()}


def gold_structure(heldout) -> dict:
    """How the gold orders held-out pairs, against simpler tastes: VADER without its "but" rule (what a sum of
    per-token scores in a left-to-right model can follow: a token cannot see a "but" later in the text), the
    sum of each sentence's own compound score, and one simulated annotator at temperature 0.1."""
    import re

    import numpy as np
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    class NoBut(SentimentIntensityAnalyzer):
        @staticmethod
        def _but_check(words_and_emoticons, sentiments):
            return sentiments

    no_but = NoBut()
    a, b = [p + x for p, x, _ in heldout], [p + y for p, _, y in heldout]
    gap = gold_sentiment(a) - gold_sentiment(b)
    decided = gap != 0

    def agreement(score):
        other = np.array([score(x) - score(y) for x, y in zip(a, b)])
        return float(((other > 0) == (gap > 0))[decided].mean())

    by_sentence = lambda t: float(gold_sentiment(re.findall(r"[^.!]+[.!]", t) or [t]).sum())
    annotator = SimulatedAnnotator(0.1, seed=0)
    labels = np.array([annotator.compare("", x, y) == "a" for x, y in zip(a, b)])
    return dict(n_decided=int(decided.sum()), pairs_with_a_but=float(np.mean([" but " in x + y for x, y in zip(a, b)])),
                vader_without_but_rule=agreement(lambda t: no_but.polarity_scores(t)["compound"]),
                sum_of_sentence_scores=agreement(by_sentence),
                annotator_temperature_0_1=float((labels == (gap > 0))[decided].mean()))


def run_recipe(changes: list[str]) -> tuple[str, dict]:
    """(name, summary) of the library's whole-review recipe with FIELD=VALUE changes to its config."""
    import dataclasses
    import os

    from rlhf_lib.whole_reviews import WholeRewardConfig, train_whole_review_reward_model

    defaults = {f.name: f.default for f in dataclasses.fields(WholeRewardConfig)}
    kw = {}
    for change in changes:
        field, _, value = change.partition("=")
        if field not in defaults:
            sys.exit(f"unknown field {field!r}; fields: {list(defaults)}")
        kind = type(defaults[field]) if defaults[field] is not None else float
        kw[field] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    load = os.getloadavg()
    _, _, summary = train_whole_review_reward_model(WholeRewardConfig(**kw), progress=True)
    summary.update(load_average_before=[round(x, 2) for x in load],
                   load_average_after=[round(x, 2) for x in os.getloadavg()])
    return "recipe" + "".join(f", {c}" for c in changes), summary


def main(names: list[str]):
    max_seconds = None
    if names[:1] == ["--max-seconds"]:
        if len(names) < 2 or not names[1].replace(".", "", 1).isdigit() or float(names[1]) <= 0:
            sys.exit("--max-seconds needs a positive number of seconds")
        max_seconds, names = float(names[1]), names[2:]
    if names and names[0] in ("recipe", "recipe-asset"):
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else dict(runs={})
        if names[0] == "recipe":
            name, summary = run_recipe(names[1:])
        else:
            name = "recipe (assets/whole_review_reward_model, scripts/build_whole_review_reward_model.py)"
            summary = json.loads((ROOT / "assets/whole_review_reward_model/summary.json").read_text())
        summary.setdefault("date", str(date.today()))
        summary.setdefault("machine", f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                                      f"torch {torch.__version__}")
        summary.setdefault("commit", subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                    text=True, cwd=ROOT).stdout.strip())
        results.setdefault("recipe", {})[name] = summary
        RESULTS.write_text(json.dumps(results, indent=2))
        print(f"{name}: {summary['gold_accuracy']:.1%} of {summary['n_heldout_pairs']} held-out, "
              f"{summary['steps']} of {summary['planned_steps']} steps, {summary['training_seconds']} s "
              f"({summary['training_cpu_seconds']} CPU s)")
        return
    if names == ["baseline"]:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else dict(runs={})
        results["base_model_whole_reviews"] = base_model_rates()
        results["gold_structure"] = gold_structure(heldout_pairs())
        RESULTS.write_text(json.dumps(results, indent=2))
        print(json.dumps({k: results[k] for k in ("base_model_whole_reviews", "gold_structure")}, indent=1))
        return
    unknown = [n for n in names if n not in OPTIONS and n not in PROBES]
    if unknown:
        sys.exit(f"unknown option(s) {unknown}; options: {list(OPTIONS) + list(PROBES)}")
    pool, heldout = load_pool("train"), heldout_pairs()
    features = None
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else dict(runs={})
    for name in names or list(OPTIONS):
        torch.manual_seed(0)
        if name in PROBES:
            features = features or torch.load(POOL / "features_layers.pt")
            results["runs"][name] = run_probe(name, pool, heldout, features)
        else:
            results["runs"][name] = run(name, pool, heldout, max_seconds)
        results.update(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                       torch=torch.__version__, n_heldout_pairs=len(heldout),
                       commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                             cwd=ROOT).stdout.strip())
        RESULTS.write_text(json.dumps(results, indent=2))  # after every option: nothing lost on interruption
        r = results["runs"][name]
        print(f"{name}: {r['gold_accuracy']:.1%} of {r['n_heldout']} held-out, {r['n_train_pairs']} pairs, "
              f"{r['training_seconds']} s ({r['training_cpu_seconds']} CPU s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
