"""RLHF in rounds against one round: `pipeline --rounds 2` per seed and recipe, gathered into one table.

    python benchmarks/loop.py --seeds 0 1 2                       # the default recipe, about 17 min a seed
    python benchmarks/loop.py --seeds 0 --recipe whole-review-plain   # the loop with the plain PPO setting
    python benchmarks/loop.py --collect runs/loop-s0 ...          # add finished `pipeline --rounds` runs
    python benchmarks/loop.py --control runs/loop-s0              # round 2's PPO against round 1's reward model
    python benchmarks/loop.py --passes 1 4 8 --alone 4            # round 2's reward model, its new labels seen
                                                                  # 1, 4, 8 times (the old once), or 4 times alone
    python benchmarks/loop.py --chosen 6000                       # round 2's 2,000 labels on random pairs or on
                                                                  # the pairs of a 6,000 pool the reference finds
                                                                  # least likely

Each run is `rlhf_lib.pipeline.run_pipeline` with the command's defaults (`--rounds 2 --eval-samples 1000`), its
PPO setting taken from the named recipe (rlhf_lib/recipes.py). Per round: labels added and in total, the reward
model's agreement with gold on 1,000 fresh pairs of the policy it is about to train (before and after it learned
the round's labels, by gold gap), and from the course prompts and the start of text the positive rate, the
grammatical rate and the exact KL to the course model. The control is round 2 without its labels: the same PPO
from the round-1 policy against the round-1 reward model, so that what the labels did is told apart from what
more PPO did. Run it alone. Writes results/loop.json (--passes: results/loop_passes.json, --chosen:
results/loop_chosen.json; runs kept by recipe and seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "loop.json"
PASSES = ROOT / "benchmarks" / "results" / "loop_passes.json"
CHOSEN = ROOT / "benchmarks" / "results" / "loop_chosen.json"


def record(summary: dict, recipe: str, seed: int, seconds: float) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return dict(recipe=recipe, seed=seed, wall_seconds=round(seconds, 1), rounds=summary["rounds"],
                machine=f"{platform.machine()}, {os.cpu_count()} CPU cores", date=str(date.today()), commit=commit)


def save(entry: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[f"{entry['recipe']} seed {entry['seed']}"] = entry
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def table(results: dict) -> str:
    """One line a run and round: labels, agreement before -> after, positive / grammatical / KL from both starts."""
    lines = ["| seed | round | labels added | RM agreement | positive % course / start | grammatical % | KL |",
             "|---|---|---|---|---|---|---|"]

    def figures(after):
        c, e = after["course"], after["empty"]
        return (f"{100 * c['positive_rate']:.1f} / {100 * e['positive_rate']:.1f} | "
                f"{100 * c['grammatical_rate']:.1f} / {100 * e['grammatical_rate']:.1f} | "
                f"{c['kl_exact']:.2f} / {e['kl_exact']:.2f}")

    for run in results.values():
        for r in run["rounds"]:
            before, after = r["rm_gold_agreement_before"], r["rm_gold_agreement_after"]["overall"]
            agree = (f"{before['overall']:.1%} -> " if before else "") + f"{after:.1%}"
            lines.append(f"| {run['seed']} | {r['round']} | {r['labels_added']:,} | {agree} | {figures(r['after'])} |")
        if "control" in run:
            lines.append(f"| {run['seed']} | 2, no new labels | 0 | round 1's | {figures(run['control']['after'])} |")
    return "\n".join(lines)


def control(folder: Path) -> None:
    """Round 2's PPO, setting and seed, from the round-1 policy against the round-1 reward model; stored beside the
    run's rounds as "control"."""
    from rlhf_lib.lm import COURSE_MODEL
    from rlhf_lib.loop import policy_figures, round_config
    from rlhf_lib.pipeline import run_ppo
    from rlhf_lib.recipes import recipe_config

    settings = json.loads((folder / "pipeline.json").read_text())
    cfg = round_config(recipe_config("whole-review", iterations=settings["iterations"], seed=settings["seed"]), 2)
    start = time.perf_counter()
    ppo = run_ppo(folder / "control", str(folder / "round-1" / "ppo" / "policy"), folder / "round-1" / "reward_model",
                  cfg, 1000, task="whole", reference_name=str(COURSE_MODEL))
    results = json.loads(RESULTS.read_text())
    key = f"whole-review seed {settings['seed']}"
    results[key]["control"] = dict(what="round 2's PPO against round 1's reward model (no new labels)",
                                   after=policy_figures(ppo["after"]), seconds=round(time.perf_counter() - start, 1))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def passes(counts: list[int], alone: list[int]) -> None:
    """Round 2's reward model of seed 0 (from assets/loop's round 1) trained with its 2,000 new labels seen `n` times
    for each n in `counts` while the old labels are seen once, and seen n times with no old labels for each n in
    `alone`; agreement with gold on the 1,000 fresh pairs of the round-1 policy that the loop measures. Stored in
    results/loop_passes.json."""
    from rlhf_lib.feedback import to_pairs
    from rlhf_lib.lm import load_model
    from rlhf_lib.loop import (
        LOOP_ASSETS,
        agreement,
        continue_reward_model,
        label_round,
        mix_old_and_new,
        round_one_labels,
        round_pairs,
    )
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.runtime import derive_seed
    from rlhf_lib.whole_reviews import WholeRewardConfig

    one, cfg = LOOP_ASSETS / "round-1", WholeRewardConfig()
    policy, tokenizer = load_model(str(one / "policy"))
    seed = derive_seed(0, "loop round", 2)
    new = to_pairs([vars(r) for r in label_round(round_pairs(policy, tokenizer, 2000, seed), 0.1, seed)])
    heldout = round_pairs(policy, tokenizer, 1000, derive_seed(0, "loop heldout", 2))
    old = round_one_labels(one, cfg)
    rows = dict(before=agreement(*load_reward_model(one / "reward_model"), heldout))
    for n, with_old in [(n, True) for n in counts] + [(n, False) for n in alone]:
        model, tok = load_reward_model(one / "reward_model")
        continue_reward_model(model, tok, old, new, cfg, seed, progress=False,
                              mix=lambda o, pairs, n=n, w=with_old: mix_old_and_new(o if w else [], pairs * n))
        rows[f"new x{n}" + ("" if with_old else ", no old labels")] = agreement(model, tok, heldout)
        print(next(reversed(rows)), f"{rows[next(reversed(rows))]['overall']:.3f}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    PASSES.write_text(json.dumps(dict(rows=rows, machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                                      date=str(date.today()), commit=commit), indent=2) + "\n")


def least_likely_token(model, tokenizer, texts: list[str], batch_size: int = 64) -> list[float]:
    """Each text's lowest token log-probability under `model` (its most surprising token), text read after
    <|endoftext|>."""
    import torch

    from rlhf_lib.lm import position_ids_from_mask
    from rlhf_lib.reward_model import encode_ids

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts[i : i + batch_size]]
            ids, mask = encode_ids(tokenizer, rows, padding_side="right")
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
            logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            out += logp.masked_fill(mask[:, 1:] == 0, 0.0).min(-1).values.tolist()
    return out


def chosen(pool: int, n: int = 2000) -> None:
    """Round 2's labels spent two ways on the round-1 policy of assets/loop (seed 0): n random pairs (the loop as it
    is) against the n pairs of a pool of `pool` whose least likely token, under the course model (the reference),
    is least likely: active selection of the pairs a reader's first rule decides (a broken review is often a
    surprising one). The reward model continues from round 1 on the old labels and each set of new ones; agreement
    with gold on the loop's 1,000 fresh pairs of the round-1 policy, by gold gap. Stored in
    results/loop_chosen.json."""
    from rlhf_lib.feedback import to_pairs
    from rlhf_lib.lm import load_model
    from rlhf_lib.loop import LOOP_ASSETS, agreement, continue_reward_model, label_round, round_one_labels, round_pairs
    from rlhf_lib.reviews import is_grammatical
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.runtime import derive_seed
    from rlhf_lib.whole_reviews import WholeRewardConfig

    one, cfg = LOOP_ASSETS / "round-1", WholeRewardConfig()
    policy, tokenizer = load_model(str(one / "policy"))
    reference, _ = load_model()
    seed = derive_seed(0, "loop round", 2)
    heldout = round_pairs(policy, tokenizer, 1000, derive_seed(0, "loop heldout", 2))
    candidates = round_pairs(policy, tokenizer, pool, derive_seed(0, "loop pool", 2), progress=True)
    surprise = least_likely_token(reference, tokenizer, [p + x for p, a, b in candidates for x in (a, b)])
    worst = [min(surprise[2 * i], surprise[2 * i + 1]) for i in range(len(candidates))]
    picked = [candidates[i] for i in sorted(range(len(candidates)), key=worst.__getitem__)[:n]]
    sets = {"random": round_pairs(policy, tokenizer, n, seed), "least likely": picked}
    old = round_one_labels(one, cfg)
    rows = dict(before=agreement(*load_reward_model(one / "reward_model"), heldout))
    for name, pairs in sets.items():
        broken = sum(not is_grammatical(p + a) or not is_grammatical(p + b) for p, a, b in pairs)
        model, tok = load_reward_model(one / "reward_model")
        continue_reward_model(model, tok, old, to_pairs([vars(r) for r in label_round(pairs, 0.1, seed)]), cfg, seed,
                              progress=False)
        rows[name] = dict(agreement(model, tok, heldout), pairs_with_a_broken_review=broken, pairs=len(pairs))
        print(name, broken, f"{rows[name]['overall']:.3f}", rows[name]["by_gap"], flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    CHOSEN.write_text(json.dumps(dict(rows=rows, pool=pool, n=n, machine=f"{platform.machine()}, {os.cpu_count()} "
                                      f"CPU cores", date=str(date.today()), commit=commit), indent=2) + "\n")


def main(argv=None):
    from rlhf_lib.pipeline import PipelineSettings, pipeline_configs, run_pipeline
    from rlhf_lib.recipes import recipe_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--recipe", default="whole-review", choices=["whole-review", "whole-review-plain"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "loop")
    parser.add_argument("--collect", type=Path, nargs="*", default=[],
                        help="finished `pipeline --rounds` folders to add (default recipe)")
    parser.add_argument("--control", type=Path, default=None,
                        help="a finished two-round run (default recipe): PPO of round 2 against round 1's reward model")
    parser.add_argument("--chosen", type=int, default=0,
                        help="a pool of this many pairs: round 2's labels on its least likely pairs, or random")
    parser.add_argument("--passes", type=int, nargs="*", default=[],
                        help="round 2's reward model with its new labels seen this many times (the old once)")
    parser.add_argument("--alone", type=int, nargs="*", default=[],
                        help="round 2's reward model with its new labels alone, seen this many times")
    args = parser.parse_args(argv)
    if args.chosen:
        chosen(args.chosen)
        return
    if args.passes or args.alone:
        passes(args.passes, args.alone)
        return
    if args.control is not None:
        control(args.control)
    for folder in args.collect:
        summary = json.loads((folder / "summary.json").read_text())
        settings = json.loads((folder / "pipeline.json").read_text())
        save(record(summary, "whole-review", settings["seed"], summary["seconds"]))
    for seed in args.seeds:
        settings = PipelineSettings(task="whole", model=None, sft=False, n_pairs=None, n_groups=2000,
                                    annotator_temperature=0.1, heldout=1000, iterations=85, seed=seed,
                                    rounds=args.rounds)
        reward_cfg, _ = pipeline_configs(settings)
        ppo_cfg = recipe_config(args.recipe, iterations=85, seed=seed)
        start = time.perf_counter()
        summary = run_pipeline(args.out / f"{args.recipe}-s{seed}", settings, reward_cfg, ppo_cfg, eval_samples=1000,
                               overwrite=True)
        save(record(summary, args.recipe, seed, time.perf_counter() - start))
    print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
