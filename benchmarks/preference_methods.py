"""Our DPO, RLOO and GRPO against TRL 1.16's DPOTrainer, RLOOTrainer and GRPOTrainer, in one run.

    python benchmarks/preference_methods.py     # about 12 minutes on 2 idle cores; results/preference_methods.json
    python benchmarks/preference_methods.py --task whole   # whole reviews (about 20 minutes);
                                                           # results/preference_methods_whole.json

--task whole: the policy writes whole reviews to end-of-text (at most 64 tokens) from `whole_review_prompts()`
(course prompts, other openings, nothing).
- DPO: 2,000 pairs of the course model's whole reviews labelled by the simulated annotator
  (`whole_review_labels`, the labels of benchmarks/dpo_whole.py and notebook 10; the same 90% for both
  trainers), ours `whole_review_dpo_config()`: beta 0.3, lr 3e-4, the chosen reviews' NLL added with weight
  1 (TRL: loss_type ["sigmoid", "sft"], loss_weights [1, 1]), 2 epochs of 32, end-of-text after each review.
- RLOO and GRPO: the shipped whole-review reward model (assets/whole_review_reward_model) minus 1 for a
  review cut off at 64 tokens; ours `whole_review_config(plain=True, responses_per_prompt=4)` (KL coefficient 0.3
  adapted toward a 2-nat budget, PPO-ptx on: TRL has no ptx) for 60 iterations; TRL's trainers with a fixed KL
  coefficient 0.3, 4 responses a prompt, 64 a rollout, 4 epochs of 4 minibatches, lr 1e-4, for 300 s each.
- The target: the mean gold positive rate of 3 rollouts reaching 85%; the final figures are 300 reviews from
  the course prompts and 300 from the start of text.

The same model (the shipped course model), data and reward for each pair of trainers:
- DPO: the 2,000 simulated preferences the shipped reward model was trained on (assets/reward_model/labels.jsonl;
  ties dropped, the same 90% for both trainers), end-of-text appended to every completion (TRL always does),
  beta 0.3, 2 epochs of batches of 32, AdamW lr 2e-4 with 10 warmup steps then linear decay, clipping at 1.
- RLOO and GRPO: the course prompts' sentences (stop at "." / "!" / end-of-text, at most 32 tokens), reward =
  the shipped reward model's normalised score minus 1 for a response that never ends, 4 responses for each of
  16 prompts a rollout, 4 epochs of 4 minibatches over it, lr 1e-4, clip 0.2, KL coefficient 0.2 (RLOO: k1 in
  the reward; GRPO: k3 in the loss, TRL's loss_type "grpo" = our per-sequence aggregation). Ours adapts the
  coefficient toward a KL budget of 3 nats (notebook 08); TRL's stays fixed.
Measured for each: training wall seconds (and CPU seconds), seconds until the mean gold positive rate of the
last 3 rollouts reached 90% (RL only), and 500 fresh samples of the trained model: gold positive rate,
grammatical rate, KL to the reference per response (exact, summed over the response).
"""

import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rlhf_lib.critic_free import CriticFreeConfig, critic_free_iteration
from rlhf_lib.dpo import DPOConfig, as_pairs, train_dpo
from rlhf_lib.evaluate import POSITIVE_THRESHOLD, gold_sentiment
from rlhf_lib.lm import COURSE_MODEL, load_model, stop_ids
from rlhf_lib.reviews import PROMPTS, is_grammatical
from rlhf_lib.reward_model import load_reward_model, score_texts
from rlhf_lib.rlhf import RLHFConfig, evaluate_policy, review_metrics, train_rlhf
from rlhf_lib.whole_reviews import (
    WHOLE_REVIEW_REWARD_MODEL,
    evaluate_whole,
    whole_review_config,
    whole_review_dpo_config,
    whole_review_labels,
    whole_review_prompts,
)

ROOT = Path(__file__).resolve().parents[1]
REWARD_MODEL = ROOT / "assets" / "reward_model"
K, LR = 4, 1e-4
TASKS = {  # TRL's RL runs stop after trl_budget seconds of training
    "sentence": dict(iterations=30, trl_budget=120, target=0.9, beta=0.2, results="preference_methods.json"),
    "whole": dict(iterations=60, trl_budget=300, target=0.85, beta=0.3, results="preference_methods_whole.json"),
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_to_target(curve: list[dict], target: float):
    """Seconds until the mean of the last 3 rollouts' gold positive rate first reaches target."""
    for i in range(2, len(curve)):
        if np.mean([c["gold_positive"] for c in curve[i - 2 : i + 1]]) >= target:
            return round(curve[i]["seconds"], 1)
    return None


def split_pairs(task: str):
    if task == "sentence":
        pairs = as_pairs(REWARD_MODEL / "labels.jsonl")
    else:
        pairs = as_pairs(whole_review_labels(*load_model(), 2000, seed=11))
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    return [pairs[i] for i in order[len(pairs) // 10 :]]  # the 90% both DPO trainers see


def ours_dpo(pairs, task: str):
    policy, tok = load_model()
    reference, _ = load_model()
    cfg = DPOConfig(add_eos=True, heldout=0.0) if task == "sentence" else whole_review_dpo_config(heldout=0.0)
    train_dpo(policy, reference, tok, pairs, cfg, progress=False)
    return policy, [], 0.0


def trl_dpo(pairs, task: str):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    _, tok = load_model()
    model = AutoModelForCausalLM.from_pretrained(COURSE_MODEL)
    bos = tok.decode([tok.bos_token_id])
    data = Dataset.from_dict({"prompt": [bos + p["prompt"] for p in pairs], "chosen": [p["chosen"] for p in pairs],
                              "rejected": [p["rejected"] for p in pairs]})
    ours = DPOConfig() if task == "sentence" else whole_review_dpo_config()
    losses = dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, ours.nll_coef]) if ours.nll_coef else {}
    args = TRLDPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, beta=ours.beta, learning_rate=ours.lr,
                        num_train_epochs=2, per_device_train_batch_size=32, warmup_steps=10, lr_scheduler_type="linear",
                        max_grad_norm=1.0, weight_decay=0.0, disable_dropout=True, report_to="none",
                        save_strategy="no", logging_steps=10, seed=0, **losses)
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.train()
    return trainer.model.eval(), [], 0.0


def ours_rl(method: str, reward, task: str):
    policy, tok = load_model()
    reference, _ = load_model()
    settings = TASKS[task]
    if task == "sentence":
        cfg, prompts = RLHFConfig(iterations=settings["iterations"], responses_per_prompt=K, kl_coef=settings["beta"],
                                  lr=LR, seed=0), None
    else:
        cfg = whole_review_config(plain=True, iterations=settings["iterations"], responses_per_prompt=K)
        prompts = whole_review_prompts(weights=(1, 1, 1))
    result = train_rlhf(policy, tok, *reward, reference, cfg, prompts=prompts, progress=False, metrics=review_metrics,
                        iteration_fn=critic_free_iteration(CriticFreeConfig(method)))
    curve = [dict(seconds=h["seconds"], gold_positive=h["gold_positive"], grammatical=h["grammatical"], kl=h["kl_k1"])
             for h in result.history]
    return policy, curve, 0.0


@torch.no_grad()
def rollout_kl(policy, reference, tok, starts: list[str], completion_ids: list[list[int]]) -> float:
    """Mean over a rollout of log pi(y|x) - log pi_ref(y|x), summed over each completion's tokens (k1 per
    response, the figure our trainer logs as kl_k1), from the token ids the trainer sampled."""
    from rlhf_lib.dpo import sequence_logps
    from rlhf_lib.lm import encode_prompts

    prompt_ids, prompt_mask = encode_prompts(tok, starts)
    R = max(1, max(map(len, completion_ids)))
    ids = torch.full((len(completion_ids), R), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(completion_ids), R, dtype=torch.long)
    for i, c in enumerate(completion_ids):
        ids[i, : len(c)], mask[i, : len(c)] = torch.tensor(c, dtype=torch.long), 1
    batch = (prompt_ids, prompt_mask, ids, mask)
    return float((sequence_logps(policy, batch)[0] - sequence_logps(reference, batch)[0]).mean())


def trl_rl(method: str, reward, task: str):
    """TRL's RLOO or GRPO trainer on our task; returns the model, the per-rollout curve and the seconds spent
    measuring the rollouts' KL (whole reviews; taken off TRL's clock and its training time)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    _, tok = load_model()
    model = AutoModelForCausalLM.from_pretrained(COURSE_MODEL)
    settings = TASKS[task]
    stops = list(stop_ids(tok, "sentence" if task == "sentence" else "text"))
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tok.pad_token_id
    bos = tok.decode([tok.bos_token_id])
    starts = ([PROMPTS[i % len(PROMPTS)] for i in range(64 * 400)] if task == "sentence"
              else whole_review_prompts(64 * 400, weights=(1, 1, 1)))
    prompts = Dataset.from_dict({"prompt": [bos + p for p in starts]})
    curve, start, trainer, measuring = [], [None], None, [0.0]
    reference = AutoModelForCausalLM.from_pretrained(COURSE_MODEL).eval() if task == "whole" else None

    def reward_fn(prompts, completions, completion_ids=None, **kwargs):
        texts = [p[len(bos):] + c for p, c in zip(prompts, completions)]
        score = score_texts(reward[0], reward[1], texts)
        if task == "sentence":
            finished = np.array([c.rstrip().endswith((".", "!")) for c in completions])
        else:  # the completion's ids end with end-of-text when the review ended
            finished = np.array([bool(ids) and ids[-1] in stops for ids in completion_ids])
        if start[0] is not None:
            gold, now = gold_sentiment(texts), time.perf_counter()
            point = dict(seconds=now - start[0], gold_positive=float((gold > POSITIVE_THRESHOLD).mean()),
                         grammatical=float(np.mean([is_grammatical(t) for t in texts])))
            if reference is not None:  # whole reviews: the KL of this rollout, its time taken off TRL's clock
                point["kl"] = rollout_kl(trainer.model, reference, tok, [p[len(bos):] for p in prompts], completion_ids)
                start[0] += time.perf_counter() - now
                measuring[0] += time.perf_counter() - now
            curve.append(point)
        return (score - 1.0 * ~finished).tolist()

    class Budget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            start[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            control.should_training_stop = time.perf_counter() - start[0] > settings["trl_budget"]

    common = dict(output_dir=tempfile.mkdtemp(), use_cpu=True, learning_rate=LR,
                  max_completion_length=32 if task == "sentence" else 64,
                  per_device_train_batch_size=16, steps_per_generation=4, num_iterations=4, num_generations=K,
                  beta=settings["beta"], epsilon=0.2, max_grad_norm=1.0, max_steps=100_000, logging_steps=10,
                  report_to="none", disable_dropout=True, save_strategy="no", seed=0)
    if method == "grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, train_dataset=prompts, processing_class=tok,
                              args=GRPOConfig(loss_type="grpo", **common), callbacks=[Budget()])
    else:
        trainer = RLOOTrainer(model=model, reward_funcs=reward_fn, train_dataset=prompts, processing_class=tok,
                              args=RLOOConfig(**common), callbacks=[Budget()])
    trainer.train()
    return trainer.model.eval(), curve, measuring[0]


def final_figures(model, reference, tok, reward, task: str) -> dict:
    if task == "sentence":
        final = evaluate_policy(model, reference, tok, *reward, n=500)
        return dict(final={k: round(v, 4) for k, v in final.items() if k != "examples"}, examples=final["examples"][:3])
    final = evaluate_whole(model, reference, tok, *reward, n=300)
    return dict(final={where: {k: round(v, 4) for k, v in r.items() if k != "examples"} for where, r in final.items()},
                examples=final["empty"]["examples"][:3])


def main(task: str = "sentence"):
    torch.manual_seed(0)
    settings = TASKS[task]
    reward = load_reward_model(REWARD_MODEL if task == "sentence" else WHOLE_REVIEW_REWARD_MODEL)
    reference, tok = load_model()
    pairs = split_pairs(task)
    runs = {"ours DPO": lambda: ours_dpo(pairs, task), "TRL DPO": lambda: trl_dpo(pairs, task),
            "ours RLOO": lambda: ours_rl("rloo", reward, task), "TRL RLOO": lambda: trl_rl("rloo", reward, task),
            "ours GRPO": lambda: ours_rl("grpo", reward, task), "TRL GRPO": lambda: trl_rl("grpo", reward, task)}
    results = {}
    for name, runner in runs.items():
        wall, cpu = time.perf_counter(), cpu_seconds()
        model, curve, measuring = runner()
        wall, cpu = time.perf_counter() - wall - measuring, cpu_seconds() - cpu
        target = time_to_target(curve, settings["target"]) if curve else None
        at = next((i for i, c in enumerate(curve) if round(c["seconds"], 1) == target), None) if target else None
        kl_then = (float(np.mean([c["kl"] for c in curve[at - 2 : at + 1]])) if at is not None and "kl" in curve[at]
                   else None)
        results[name] = dict(training_seconds=round(wall, 1), training_cpu_seconds=round(cpu, 1),
                             **{f"seconds_to_{round(settings['target'] * 100)}pct_positive": target},
                             rollouts=len(curve), kl_at_target=kl_then,
                             **final_figures(model, reference, tok, reward, task), curve=curve)
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "curve"}), flush=True)
    import trl

    out = dict(date=str(date.today()), machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, "
               f"{torch.get_num_threads()} torch threads", load_average=os.getloadavg(), torch=torch.__version__,
               trl=trl.__version__, task=task, pairs=len(pairs), results=results)
    out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                   cwd=ROOT).stdout.strip()
    (ROOT / "benchmarks" / "results" / settings["results"]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(TASKS), default="sentence")
    main(parser.parse_args().task)
