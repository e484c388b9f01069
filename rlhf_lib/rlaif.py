"""RLAIF at equal cost: a budget of human labels spent on a reward model directly, or on a judge that then labels
many more pairs for the reward model (Lee et al. 2023, "RLAIF"; Bai et al. 2022, "Constitutional AI").

Three reward models of one recipe (`reward_model_from`: the course model's backbone, summed per-token scores,
the head at zero, normalised on the course model's reviews), each from a different source of labels:

- "human": the budget's labels themselves (the simulated reading person, `loop.label_round`);
- "judge from the budget": a judge fine-tuned from the course model on the same labelled pairs only
  (`train_judge` with `critique=None`: it learns the verdict alone, since writing a rating word would take
  gold beyond the budget), which then labels `judge_labels` fresh pairs;
- "shipped judge": the same fresh pairs labelled by `assets/judge`, trained on 120,000 labelled pairs: a judge
  that knows far more than the budget, as a large model's judge does in practice.

Every reward model takes the same number of training steps, so no arm wins by more compute. Each is measured on
fresh pairs against the noise-free gold (`whole_reviews.gold_agreement`).
`benchmarks/rlaif.py` runs PPO from each and reports gold, grammar and KL.
"""

from __future__ import annotations

import time

from rlhf_lib.runtime import check_count, derive_seed

ARMS = ("human", "judge from the budget", "shipped judge")


def judge_sized_pairs(model, tokenizer, n: int, seed: int) -> list[tuple[str, str, str]]:
    """n (start, a, b) pairs of `model`'s whole reviews from one start each (`sample_whole_pairs`), each review at
    most `judge.MAX_REVIEW_TOKENS` tokens so a judge can read the pair; longer ones are left out and more drawn."""
    from rlhf_lib.judge import MAX_REVIEW_TOKENS, review_tokens
    from rlhf_lib.whole_reviews import review_starts, sample_whole_pairs

    check_count("n", n)
    out, draw = [], 0
    while len(out) < n:
        chunk = derive_seed(seed, "judge-sized pairs", draw)
        for p, a, b in sample_whole_pairs(model, tokenizer, min(1024, 2 * n), starts=review_starts(1024, chunk),
                                          seed=chunk):
            if max(review_tokens(tokenizer, p + a), review_tokens(tokenizer, p + b)) <= MAX_REVIEW_TOKENS:
                out.append((p, a, b))
        draw += 1
    return out[:n]


def reward_model_from(records, steps: int = 250, seed: int = 0, base=None, normalizing: list[str] | None = None,
                      progress: bool = False):
    """(reward model, tokenizer): the whole-review recipe's reward model (summed per-token scores, the head at
    zero) trained on preference records (ties left out) for about `steps` steps of 32 pairs whatever their number
    (the passes over them rounded, at least one), normalised on `normalizing` (default: the base model's reviews of
    `whole_reviews.normalizing_reviews`)."""
    from rlhf_lib.feedback import to_pairs
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import RewardConfig, make_reward_model, normalize_on, train_reward_model
    from rlhf_lib.whole_reviews import WholeRewardConfig, normalizing_reviews, zero_head

    check_count("steps", steps)
    recipe, pairs = WholeRewardConfig(), to_pairs(records)
    cfg = RewardConfig(epochs=max(1, round(steps * 32 / max(1, len(pairs)))), batch_size=32, lr=recipe.lr,
                       warmup=min(recipe.warmup, steps), seed=seed)
    model, tokenizer = make_reward_model(base, pooling=recipe.pooling, seed=seed)
    zero_head(model)
    train_reward_model(model, tokenizer, pairs, cfg, progress=progress)
    if normalizing is None:
        normalizing = normalizing_reviews(*load_model(base), recipe.n_normalize, recipe.seed, recipe.max_new_tokens)
    normalize_on(model, tokenizer, normalizing)
    return model.eval(), tokenizer


def judge_records(judge, pairs, progress: bool = False) -> list[dict]:
    """Preference records of (start, a, b) pairs labelled by a judge (annotator: its name)."""
    from dataclasses import asdict

    from rlhf_lib.feedback import PreferenceRecord

    verdicts = judge.judge_many(pairs, progress=progress)
    return [asdict(PreferenceRecord(p, a, b, v.choice, judge.name, "course model")) for (p, a, b), v in
            zip(pairs, verdicts)]


def equal_cost(budget: int = 200, judge_labels: int = 4000, seed: int = 0, eval_pairs: int = 1000,
               judge_epochs: int = 8, rm_steps: int = 250, reward_models: bool = True, judge=None,
               progress: bool = True) -> dict:
    """The three arms (`ARMS`) at one budget of human labels, on the course model's whole reviews. Returns
    {"labels": {arm: decided labels}, "label_agreement": {arm: share of its labels that agree with the noise-free
    gold}, "judges": {judge: its agreement with gold on `eval_pairs` fresh pairs}, "seconds"}; with
    `reward_models`, also "models": {arm: (reward model, tokenizer)}, each trained for `rm_steps` steps
    (`reward_model_from`), and "agreement": {arm: its agreement with gold on the fresh pairs}. `judge`: the
    knowledgeable judge of the third arm (default: the shipped one)."""
    from dataclasses import asdict

    from rlhf_lib.judge import gold_report, load_judge, train_judge
    from rlhf_lib.lm import load_model
    from rlhf_lib.loop import label_round
    from rlhf_lib.sft import SFTConfig
    from rlhf_lib.whole_reviews import WholeRewardConfig, gold_agreement, normalizing_reviews

    for name, value in (("budget", budget), ("judge_labels", judge_labels), ("eval_pairs", eval_pairs),
                        ("judge_epochs", judge_epochs), ("rm_steps", rm_steps)):
        check_count(name, value)
    clock = time.perf_counter()
    judge = judge or load_judge()
    course, tokenizer = load_model()
    human_pairs = judge_sized_pairs(course, tokenizer, budget, derive_seed(seed, "rlaif human pairs"))
    human = [asdict(r) for r in label_round(human_pairs, temperature=0.1, seed=seed)]
    cheap, _ = train_judge(human, cfg=SFTConfig(epochs=judge_epochs, seed=seed), critique=None, progress=progress)
    cheap.name = "judge:from the budget"
    many = judge_sized_pairs(course, tokenizer, judge_labels, derive_seed(seed, "rlaif judge pairs"))
    labels = {"human": human, "judge from the budget": judge_records(cheap, many, progress),
              "shipped judge": judge_records(judge, many, progress)}
    fresh = judge_sized_pairs(course, tokenizer, eval_pairs, derive_seed(seed, "rlaif fresh pairs"))
    out = dict(labels={arm: sum(r["choice"] in ("a", "b") for r in labels[arm]) for arm in ARMS},
               label_agreement={arm: gold_report([r["choice"] for r in labels[arm]],
                                                 [(r["prompt"], r["completion_a"], r["completion_b"])
                                                  for r in labels[arm]])["gold_accuracy"] for arm in ARMS},
               judges={name: gold_report([v.choice for v in j.judge_many(fresh)], fresh)["gold_accuracy"]
                       for name, j in (("judge from the budget", cheap), ("shipped judge", judge))})
    if reward_models:
        recipe = WholeRewardConfig()
        normalizing = normalizing_reviews(course, tokenizer, recipe.n_normalize, recipe.seed, recipe.max_new_tokens)
        out["models"] = {arm: reward_model_from(labels[arm], rm_steps, seed, normalizing=normalizing,
                                                progress=progress) for arm in ARMS}
        out["agreement"] = {arm: gold_agreement(*out["models"][arm], fresh)["gold_accuracy"] for arm in ARMS}
    out["seconds"] = round(time.perf_counter() - clock, 1)
    return out
