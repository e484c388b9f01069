"""RLHF in rounds: the loop the field runs (InstructGPT, Anthropic's HH models and Llama 2 ran several rounds).

    round 1   the starting model's whole reviews, labelled -> reward model v1 -> PPO -> policy 1
    round k   pairs of policy k-1's own whole reviews -> fresh labels -> reward model v(k-1) trained further on
              the old labels and the new -> PPO again from policy k-1 (the reference stays the starting model)

A reward model is only trustworthy on the kind of text it was trained on. After one round, PPO has moved
the policy somewhere the reward model never saw a review from, and it finds what the model never learned
to judge. Labels on the policy's own reviews teach the reward model exactly there.

With `rounds >= 2` a pipeline run keeps each round in its own folder (`run_rounds`):

    DIR/pipeline.json           the settings (`--resume` continues only the same ones)
    DIR/round-1/                reviews.jsonl (the batches of reviews its labels judge), reward_model/, ppo/,
                                summary.json; its labels are made again from the seed when needed (`round_one_labels`)
    DIR/round-K/  (K >= 2)      round.json, pairs.jsonl ({prompt, completion_a, completion_b}, the classroom's
                                `serve --pairs` format), labels.jsonl, reward_model/, ppo/, summary.json
    DIR/summary.json            today's keys for the loop (`before`: the starting model, `after` and `policy`:
                                the last round's) and `rounds`, one entry a round

A label is one decided (a/b) judgement. Labels for a round come from the simulated person (the default)
or from outside: a labels file, or a class's export (`classroom serve --pairs DIR/round-K/pairs.jsonl`).
Then the run writes the round's pairs and stops (`LabelsNeeded`, exit code 3 on the command line) until
it is resumed with the file.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

from rlhf_lib.feedback import PreferenceRecord, SimulatedAnnotator, read_records, save_records, to_pairs
from rlhf_lib.files import write_atomic
from rlhf_lib.runtime import derive_seed

LOOP_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "loop"
"""round 1 of `pipeline --rounds 2 --seed 0` and the run's figures (rebuilt by scripts/build_loop_assets.py)"""
ROUND_PAIRS = 2000
"""pairs of the current policy's whole reviews labelled in each round after the first"""
NEW_PAIRS_PER_STEP = 32
"""a new round's pairs make training batches of 32 pairs (64 reviews, as many reviews as a batch of round 1's, which
holds every pair among them: 2,016)"""


class LabelsNeeded(Exception):
    """The round's pairs are written and wait for labels from outside; resume with --round-labels FILE."""

    def __init__(self, pairs_path: Path, k: int):
        self.pairs_path = Path(pairs_path)
        super().__init__(f"round {k}: its pairs are in {self.pairs_path}; label them (serve them to a class with "
                         f"`python -m rlhf_lib classroom serve --db NEW.db --pairs {self.pairs_path}` and export "
                         f"the labels), then continue with `--resume --round-labels FILE`")


def round_folder(out, k: int) -> Path:
    return Path(out) / f"round-{k}"


# ---- pairs and labels of a round


def round_pairs(policy, tokenizer, n: int, seed: int, progress: bool = False) -> list[tuple[str, str, str]]:
    """n (start, review A, review B) pairs of the policy's whole reviews, both from one start, the starts drawn as
    in `whole_review_prompts` (weighted 1:1:4 toward the start of text)."""
    from rlhf_lib.whole_reviews import sample_whole_pairs, whole_review_prompts

    return sample_whole_pairs(policy, tokenizer, n, starts=whole_review_prompts(n, seed), seed=seed, progress=progress)


def write_pairs(path, pairs) -> Path:
    """The pairs as JSONL {prompt, completion_a, completion_b}, written atomically."""
    lines = [json.dumps(dict(prompt=p, completion_a=a, completion_b=b), ensure_ascii=False) for p, a, b in pairs]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(Path(path), "\n".join(lines) + "\n")


def read_pairs(path) -> list[tuple[str, str, str]]:
    from rlhf_lib.classroom.store import read_pairs_file

    return read_pairs_file(path)


def match_labels(pairs, records, source: str = "the labels") -> list[dict]:
    """The preference records that judge the round's pairs, each turned to the pair's own order (a record of
    (p, b, a) with choice "a" becomes choice "b"); several records of one pair all count. A record for a pair
    that is not one of `pairs` is an error (the file is for another round or another run); so is a file that
    judges none of them."""
    index = {(p, a, b): False for p, a, b in pairs} | {(p, b, a): True for p, a, b in pairs}
    out, foreign = [], []
    for r in records:
        if "completion_a" not in r:  # a rating is not a judgement of a pair
            continue
        key = (r["prompt"], r["completion_a"], r["completion_b"])
        if key not in index:
            foreign.append(r)
            continue
        flipped = index[key]
        choice = {"a": "b", "b": "a"}.get(r["choice"], r["choice"]) if flipped else r["choice"]
        a, b = (key[2], key[1]) if flipped else (key[1], key[2])
        out.append({**r, "completion_a": a, "completion_b": b, "choice": choice})
    if foreign:
        raise ValueError(f"{source}: {len(foreign)} of {len(records)} records judge pairs that are not this round's "
                         f"(the first: prompt {foreign[0]['prompt']!r}); give the labels of this round's pairs")
    if not out:
        raise ValueError(f"{source} holds no judgement of this round's pairs")
    return out


def label_round(pairs, temperature: float, seed: int) -> list[PreferenceRecord]:
    """The simulated person's records of the round's pairs, one by one (`SimulatedAnnotator(temperature, seed)`)."""
    annotator = SimulatedAnnotator(temperature, seed=seed)
    annotator.prime([p + x for p, a, b in pairs for x in (a, b)])
    return [PreferenceRecord(p, a, b, annotator.compare(p, a, b), annotator.name, "policy") for p, a, b in pairs]


def decided(records) -> int:
    """How many labels the records hold: decided (a/b) judgements."""
    return sum(r["choice"] in ("a", "b") for r in records)


# ---- round 1's labels, made again from the seed


def write_batches(path, batches: list[tuple[str, list[str]]]) -> Path:
    """Round 1's batches of whole reviews (every pair within a batch is labelled), one JSON list per line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(Path(path), "".join(json.dumps(texts, ensure_ascii=False) + "\n" for _, texts in batches))


def round_one_labels(folder, reward_cfg) -> list[list[dict]]:
    """Round 1's labelled groups, made again: its batches of reviews (reviews.jsonl) judged pair by pair by the
    same simulated person with the same seed, so they equal the labels round 1's reward model learned from."""
    from rlhf_lib.whole_reviews import label_groups

    batches = [("", json.loads(line)) for line in (Path(folder) / "reviews.jsonl").read_text().splitlines() if line]
    annotator = SimulatedAnnotator(reward_cfg.annotator_temperature, seed=reward_cfg.seed)
    annotator.prime([t for _, texts in batches for t in texts])
    return label_groups(annotator, batches)


# ---- the reward model, trained on

def mix_old_and_new(old_groups: list[list[dict]], new_pairs: list[dict], per_step: int = NEW_PAIRS_PER_STEP
                    ) -> list[list[dict]]:
    """The training batches of a later round: every old batch that holds a pair, then the new pairs in batches
    of `per_step` (the last one may be smaller). Keeping the old labels (replay) is what stops the reward model
    from forgetting the fluent reviews while it learns the policy's new kind of text."""
    return [g for g in old_groups if g] + [new_pairs[i : i + per_step] for i in range(0, len(new_pairs), per_step)]


def continue_reward_model(model, tokenizer, old_groups: list[list[dict]], new_pairs: list[dict], reward_cfg,
                          seed: int, progress: bool = True, mix=mix_old_and_new):
    """Train the reward model on, in place: one pass over `mix(old_groups, new_pairs)` (the old labels' batches and
    the new pairs) in a random order, with the recipe's learning rate and warmup. Returns the `RewardResult`."""
    from rlhf_lib.reward_model import RewardConfig, train_on_groups

    cfg = RewardConfig(epochs=1, lr=reward_cfg.lr, warmup=reward_cfg.warmup, seed=seed)
    return train_on_groups(model, tokenizer, mix(old_groups, new_pairs), cfg, groups_per_batch=1, progress=progress)


def next_reward_model(model, tokenizer, old_groups: list[list[dict]], new_pairs: list[dict], reward_cfg, seed: int,
                      base, progress: bool = True, mix=mix_old_and_new) -> dict:
    """A later round's reward model, in place: `continue_reward_model` on the old labels and the new, then
    normalised as round 1's was (rewards of `reward_cfg.n_normalize` whole reviews of `base`, the (model,
    tokenizer) the loop started from, get mean 0 and std 1). Returns its summary."""
    from rlhf_lib.reward_model import normalize_on
    from rlhf_lib.whole_reviews import normalizing_reviews

    result = continue_reward_model(model, tokenizer, old_groups, new_pairs, reward_cfg, seed, progress, mix)
    mean, std = normalize_on(model, tokenizer, normalizing_reviews(*base, reward_cfg.n_normalize, reward_cfg.seed,
                                                                   reward_cfg.max_new_tokens))
    return dict(steps=len(result.losses), final_train_loss=result.losses[-1], reward_mean=mean, reward_std=std,
                seconds=round(result.seconds, 1))


def round_config(ppo_cfg, k: int):
    """Round k's PPO setting: the recipe's, except that after round 1 the KL target holds from the first iteration
    (the policy already sits near it: a target rising from 0 again would pull it back to the reference)."""
    return ppo_cfg if k == 1 else replace(ppo_cfg, kl_warmup=0)


def agreement(model, tokenizer, pairs) -> dict:
    """Gold agreement of the reward model on (prompt, a, b) pairs, overall and by gold gap (`gold_agreement`)."""
    from rlhf_lib.whole_reviews import gold_agreement

    report = gold_agreement(model, tokenizer, pairs)
    return dict(overall=report["gold_accuracy"], n=report["n_decided"],
                by_gap={band: dict(n=n, accuracy=acc) for band, (n, acc) in report["by_gap"].items()})


def blind_spots(model, tokenizer, pairs, k: int = 5) -> list[dict]:
    """The k pairs the reward model gets most confidently wrong: it prefers one review by the largest reward margin
    while gold (the reading taste) prefers the other. Each: the start, the review it prefers, the one gold prefers,
    its margin."""
    from rlhf_lib.reward_model import pair_accuracy

    report = pair_accuracy(model, tokenizer, [dict(prompt=p, chosen=a, rejected=b) for p, a, b in pairs])
    wrong = [(abs(m), i) for i, (m, g) in enumerate(zip(report["margin"], report["gold_gap"]))
             if g != 0 and (m > 0) != (g > 0)]
    out = []
    for margin, i in sorted(wrong, reverse=True)[:k]:
        p, a, b = pairs[i]
        loved, gold = (a, b) if report["margin"][i] > 0 else (b, a)
        out.append(dict(start=p, preferred=loved, gold_prefers=gold, margin=margin))
    return out


def fooled(scores, texts, k: int = 5) -> dict:
    """Where a reward model is fooled by a policy's reviews (`scores`: its score of each of `texts`). A model with
    the reading person's taste ranks every broken review below every fluent one, so the broken reviews' mean rank
    (0: the lowest score, 1: the highest) stays under the share of broken reviews; a model blind to grammar ranks
    them like the others, about 0.5. Returns broken_share, broken_rank (None when no review is broken),
    disliked_share (not positive by VADER, or not grammatical) and the k reviews it scores highest of those gold
    dislikes (each: text, score, VADER compound, grammatical)."""
    import numpy as np

    from rlhf_lib.evaluate import POSITIVE_THRESHOLD, gold_sentiment, is_grammatical

    scores, texts = np.asarray(scores, dtype=float), list(texts)
    if len(scores) != len(texts) or len(texts) < 2:
        raise ValueError(f"need one score a review and at least 2 reviews, got {len(scores)} scores for "
                         f"{len(texts)} reviews")
    compound = gold_sentiment(texts)
    fluent = np.array([is_grammatical(t) for t in texts])
    disliked = (compound <= POSITIVE_THRESHOLD) | ~fluent
    order = np.argsort(-scores, kind="stable")  # highest score first
    rank = np.empty(len(texts))
    rank[order] = np.linspace(1.0, 0.0, len(texts))
    return dict(broken_share=float((~fluent).mean()),
                broken_rank=float(rank[~fluent].mean()) if (~fluent).any() else None,
                disliked_share=float(disliked.mean()),
                examples=[dict(text=texts[i], score=float(scores[i]), compound=float(compound[i]),
                               grammatical=bool(fluent[i])) for i in order if disliked[i]][:k])


def policy_figures(after: dict) -> dict:
    """From an `evaluate_whole` report: each start's positive rate, grammatical rate and exact KL."""
    return {where: {key: r[key] for key in ("positive_rate", "grammatical_rate", "kl_exact")}
            for where, r in after.items()}


# ---- the rounds

def check_round_folders(out, run_id: str) -> None:
    """Refuse, before any work, a round folder that another run made (its round.json names another run)."""
    for folder in sorted(Path(out).glob("round-*")):
        marker = folder / "round.json"
        if marker.is_file():
            made_by = json.loads(marker.read_text()).get("run")
            if made_by != run_id:
                raise ValueError(f"{folder} was made by another run ({made_by}, this run is {run_id}); "
                                 "move it away or choose another --out")
        elif any(folder.iterdir()):
            raise ValueError(f"{folder} holds files that no round of this run wrote; move it away or choose "
                             "another --out")


def _mark(folder: Path, run_id: str, k: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "round.json").is_file():
        write_atomic(folder / "round.json", json.dumps(dict(run=run_id, round=k)))


def run_rounds(out, settings, reward_cfg, ppo_cfg, eval_samples: int = 500, resume: bool = False,
               round_labels=None, start_model=None, progress: bool = True) -> dict:
    """`settings.rounds` rounds of RLHF on whole reviews into out/round-K/ (layout in this module's doc).

    Round 1 is the one-round pipeline's reward model and PPO. Every later round samples `settings.round_pairs`
    pairs of the current policy, labels them (the simulated person, or with settings.outside_labels the file
    `round_labels`), trains the reward model further on the old labels and the new, and runs PPO from the current
    policy. The reference of every round is `start_model` (None: the course model). A finished step is skipped
    on `resume`; PPO continues from its checkpoint. Raises `LabelsNeeded` when a round waits for labels."""
    from rlhf_lib.lm import COURSE_MODEL, load_model
    from rlhf_lib.pipeline import run_ppo, write_json, write_summary
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.whole_reviews import (
        batch_groups,
        sample_groups,
        train_whole_review_reward_model,
    )

    out, s = Path(out), settings
    run_id = json.loads((out / "pipeline.json").read_text())["run"]
    check_round_folders(out, run_id)
    start_model = COURSE_MODEL if start_model is None else start_model  # the reference of every round
    base_model, base_tok = load_model(start_model)
    entries, before = [], None
    labels_total = 0
    for k in range(1, s.rounds + 1):
        folder = round_folder(out, k)
        done = folder / "summary.json"
        if resume and done.is_file():
            entry = json.loads(done.read_text())
            entries.append(entry)
            labels_total = entry["labels_total"]
            before = before or entry.get("before")
            continue
        clock = time.perf_counter()
        _mark(folder, run_id, k)
        if k == 1:
            rm_dir = folder / "reward_model"
            if not (rm_dir / "summary.json").is_file():
                groups = sample_groups(base_model, base_tok, reward_cfg.n_groups, reward_cfg.group_size,
                                       seed=derive_seed(reward_cfg.seed, "whole groups"),
                                       max_new_tokens=reward_cfg.max_new_tokens, progress=progress)
                batches = batch_groups(groups, reward_cfg.groups_per_batch)
                write_batches(folder / "reviews.jsonl", batches)
                model, tok, rm_summary = train_whole_review_reward_model(reward_cfg, policy=(base_model, base_tok),
                                                                         progress=progress, batches=batches)
                model.save_pretrained(rm_dir)
                tok.save_pretrained(rm_dir)
                write_summary(rm_dir, rm_summary)
            rm_summary = json.loads((rm_dir / "summary.json").read_text())
            added = rm_summary["n_train_pairs"]
            rm_before, rm_after = None, dict(overall=rm_summary["gold_accuracy"], n=rm_summary["n_heldout_pairs"],
                                             by_gap=rm_summary["by_gap"])
            policy_name = str(start_model)
        else:
            previous = round_folder(out, k - 1)
            policy_name = str(previous / "ppo" / "policy")
            policy, tok = load_model(policy_name)
            seed = derive_seed(s.seed, "loop round", k)
            pairs_path, labels_path = folder / "pairs.jsonl", folder / "labels.jsonl"
            if not pairs_path.is_file():
                write_pairs(pairs_path, round_pairs(policy, tok, s.round_pairs, seed, progress))
            pairs = read_pairs(pairs_path)
            if not labels_path.is_file():
                if s.outside_labels:
                    given = [] if round_labels is None or not Path(round_labels).is_file() else \
                        read_records(round_labels, allow_empty=True)
                    if not given:
                        raise LabelsNeeded(pairs_path, k)
                    records = match_labels(pairs, given, f"--round-labels {round_labels}")
                else:
                    records = [vars(r) for r in label_round(pairs, s.annotator_temperature, seed)]
                if decided(records) < s.min_round_labels:
                    raise ValueError(f"round {k}: {decided(records)} decided labels, fewer than --min-round-labels "
                                     f"{s.min_round_labels}; label more of {pairs_path} (ties and skips do not count)")
                save_records(labels_path, records)
            records = read_records(labels_path)
            added = decided(records)
            heldout_seed = derive_seed(s.seed, "loop heldout", k)
            heldout = round_pairs(policy, tok, s.heldout, heldout_seed, progress)
            rm_dir = folder / "reward_model"
            old_rm, old_tok = load_reward_model(previous / "reward_model")
            rm_before = agreement(old_rm, old_tok, heldout)
            if not (rm_dir / "summary.json").is_file():
                old = round_one_labels(round_folder(out, 1), reward_cfg)
                for j in range(2, k):  # the later rounds' pairs in the batches they were learned in
                    old = mix_old_and_new(old, to_pairs(read_records(round_folder(out, j) / "labels.jsonl")))
                rm_summary = next_reward_model(old_rm, old_tok, old, to_pairs(records), reward_cfg, seed,
                                               (base_model, base_tok), progress)
                old_rm.save_pretrained(rm_dir)
                old_tok.save_pretrained(rm_dir)
                write_summary(rm_dir, rm_summary)
            rm_after = agreement(*load_reward_model(rm_dir), heldout)
            del policy, old_rm
        ppo_dir = folder / "ppo"
        if (ppo_dir / "summary.json").is_file():
            ppo = json.loads((ppo_dir / "summary.json").read_text())
        else:
            from rlhf_lib.checkpoint import find_checkpoint

            ppo = run_ppo(ppo_dir, policy_name, rm_dir, round_config(ppo_cfg, k), eval_samples, task="whole",
                          resume=find_checkpoint(ppo_dir / "checkpoint") is not None, reference_name=str(start_model))
            write_summary(ppo_dir, ppo)
        labels_total += added
        before = before or ppo["before"]
        entry = dict(round=k, labels_added=added, labels_total=labels_total, rm_gold_agreement_before=rm_before,
                     rm_gold_agreement_after=rm_after, after=policy_figures(ppo["after"]), policy=ppo["policy"],
                     seconds=round(time.perf_counter() - clock, 1), before=ppo["before"] if k == 1 else None)
        write_summary(folder, entry)
        entries.append(entry)
    last = json.loads((round_folder(out, s.rounds) / "ppo" / "summary.json").read_text())
    summary = dict(task="whole", before=before, after=last["after"], policy=last["policy"],
                   reward_model_gold_accuracy=entries[-1]["rm_gold_agreement_after"]["overall"],
                   rounds=[{k: v for k, v in e.items() if k not in ("before", "policy")} for e in entries],
                   seconds=round(sum(e["seconds"] for e in entries), 1))
    write_json(out / "summary.json", summary)
    return summary


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
