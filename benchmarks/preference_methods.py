"""Our DPO, RLOO and GRPO against TRL 1.16's DPOTrainer, RLOOTrainer and GRPOTrainer, in one run.

    python benchmarks/preference_methods.py     # about 12 minutes on 2 idle cores; results/preference_methods.json

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

ROOT = Path(__file__).resolve().parents[1]
REWARD_MODEL = ROOT / "assets" / "reward_model"
RESULTS = ROOT / "benchmarks" / "results" / "preference_methods.json"
ITERATIONS = 30  # our RL runs: 30 rollouts of 64 responses
TRL_BUDGET_SECONDS = 120  # TRL's RL runs stop after this much training time
TARGET = 0.9
K, BETA, LR = 4, 0.2, 1e-4


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_to_target(curve: list[dict]):
    """Seconds until the mean of the last 3 rollouts' gold positive rate first reaches TARGET."""
    for i in range(2, len(curve)):
        if np.mean([c["gold_positive"] for c in curve[i - 2 : i + 1]]) >= TARGET:
            return round(curve[i]["seconds"], 1)
    return None


def split_pairs():
    pairs = as_pairs(REWARD_MODEL / "labels.jsonl")
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    return [pairs[i] for i in order[len(pairs) // 10 :]]  # the 90% both DPO trainers see


def ours_dpo(pairs):
    policy, tok = load_model()
    reference, _ = load_model()
    train_dpo(policy, reference, tok, pairs, DPOConfig(add_eos=True, heldout=0.0), progress=False)
    return policy, []


def trl_dpo(pairs):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig as TRLDPOConfig, DPOTrainer

    _, tok = load_model()
    model = AutoModelForCausalLM.from_pretrained(COURSE_MODEL)
    bos = tok.decode([tok.bos_token_id])
    data = Dataset.from_dict({"prompt": [bos + p["prompt"] for p in pairs], "chosen": [p["chosen"] for p in pairs],
                              "rejected": [p["rejected"] for p in pairs]})
    args = TRLDPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True, beta=0.3, learning_rate=2e-4, num_train_epochs=2,
                        per_device_train_batch_size=32, warmup_steps=10, lr_scheduler_type="linear",
                        max_grad_norm=1.0, weight_decay=0.0, disable_dropout=True, report_to="none",
                        save_strategy="no", logging_steps=10, seed=0)
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    trainer.train()
    return trainer.model.eval(), []


def ours_rl(method: str, reward):
    policy, tok = load_model()
    reference, _ = load_model()
    cfg = RLHFConfig(iterations=ITERATIONS, responses_per_prompt=K, kl_coef=BETA, lr=LR, seed=0)
    result = train_rlhf(policy, tok, *reward, reference, cfg, progress=False, metrics=review_metrics,
                        iteration_fn=critic_free_iteration(CriticFreeConfig(method)))
    curve = [dict(seconds=h["seconds"], gold_positive=h["gold_positive"], grammatical=h["grammatical"])
             for h in result.history]
    return policy, curve


def trl_rl(method: str, reward):
    """TRL's RLOO or GRPO trainer on our task; returns the model and the per-rollout curve."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    _, tok = load_model()
    model = AutoModelForCausalLM.from_pretrained(COURSE_MODEL)
    model.generation_config.eos_token_id = list(stop_ids(tok, "sentence"))
    model.generation_config.pad_token_id = tok.pad_token_id
    bos = tok.decode([tok.bos_token_id])
    prompts = Dataset.from_dict({"prompt": [bos + PROMPTS[i % len(PROMPTS)] for i in range(64 * 400)]})
    curve, start = [], [None]

    def reward_fn(prompts, completions, **kwargs):
        texts = [p[len(bos):] + c for p, c in zip(prompts, completions)]
        score = score_texts(reward[0], reward[1], texts)
        finished = np.array([c.rstrip().endswith((".", "!")) for c in completions])
        if start[0] is not None:
            gold = gold_sentiment(texts)
            curve.append(dict(seconds=time.perf_counter() - start[0], gold_positive=float((gold > POSITIVE_THRESHOLD).mean()),
                              grammatical=float(np.mean([is_grammatical(t) for t in texts]))))
        return (score - 1.0 * ~finished).tolist()

    class Budget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            start[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            control.should_training_stop = time.perf_counter() - start[0] > TRL_BUDGET_SECONDS

    common = dict(output_dir=tempfile.mkdtemp(), use_cpu=True, learning_rate=LR, max_completion_length=32,
                  per_device_train_batch_size=16, steps_per_generation=4, num_iterations=4, num_generations=K,
                  beta=BETA, epsilon=0.2, max_grad_norm=1.0, max_steps=100_000, logging_steps=10, report_to="none",
                  disable_dropout=True, save_strategy="no", seed=0)
    if method == "grpo":
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, train_dataset=prompts, processing_class=tok,
                              args=GRPOConfig(loss_type="grpo", **common), callbacks=[Budget()])
    else:
        trainer = RLOOTrainer(model=model, reward_funcs=reward_fn, train_dataset=prompts, processing_class=tok,
                              args=RLOOConfig(**common), callbacks=[Budget()])
    trainer.train()
    return trainer.model.eval(), curve


def main():
    torch.manual_seed(0)
    reward = load_reward_model(REWARD_MODEL)
    reference, tok = load_model()
    pairs = split_pairs()
    runs = {"ours DPO": lambda: ours_dpo(pairs), "TRL DPO": lambda: trl_dpo(pairs),
            "ours RLOO": lambda: ours_rl("rloo", reward), "TRL RLOO": lambda: trl_rl("rloo", reward),
            "ours GRPO": lambda: ours_rl("grpo", reward), "TRL GRPO": lambda: trl_rl("grpo", reward)}
    results = {}
    for name, runner in runs.items():
        wall, cpu = time.perf_counter(), cpu_seconds()
        model, curve = runner()
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        final = evaluate_policy(model, reference, tok, *reward, n=500)
        results[name] = dict(training_seconds=round(wall, 1), training_cpu_seconds=round(cpu, 1),
                             seconds_to_90pct_positive=time_to_target(curve) if curve else None, rollouts=len(curve),
                             final={k: round(v, 4) for k, v in final.items() if k != "examples"},
                             examples=final["examples"][:3], curve=curve)
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "curve"}), flush=True)
    import trl

    out = dict(date=str(date.today()), machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, "
               f"{torch.get_num_threads()} torch threads", load_average=os.getloadavg(), torch=torch.__version__,
               trl=trl.__version__, results=results)
    out["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    RESULTS.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
