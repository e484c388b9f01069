"""PPO for language models: fine-tune a policy against a reward model, held near a reference.

One iteration:

1. rollout: sample one response per prompt from the current policy (plain sampling at the
   configured temperature, stopping at end-of-text), keeping the log-probs of the sampled tokens;
2. score: the reward model's (normalised) score of prompt + response, minus a penalty if the
   response never ended; the frozen reference model's log-probs of the same tokens;
3. reward per token:  r_t = -beta * (logp_t - logp_ref_t)  plus the score on the last real token;
4. GAE (gamma 1, lambda 0.95) with a value head on the policy, advantages whitened;
5. several epochs of minibatches of the clipped policy loss + clipped value loss, gradients clipped;
6. beta fixed, or adapted toward a target KL (Ziegler et al. 2019).

The PPO pieces (gae, whiten, clipped_surrogate, value_loss, approx_kl, ...) are those of
`rlhf_lib/ppo.py`, unchanged. The policy runs without dropout throughout, so at the first
epoch the recomputed log-probs equal the sampled ones and every ratio is 1.

Under `accelerate launch`, each process samples its share of the prompts and the gradients
are averaged across processes; the logged figures are averaged over all processes.
Shapes: B responses, R response tokens, P prompt tokens, V vocabulary.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlhf_lib.checkpoint import load_checkpoint, save_checkpoint
from rlhf_lib.lm import Samples, position_ids_from_mask, response_logits, sample, token_kl
from rlhf_lib.ppo import approx_kl, clip_fraction, clipped_surrogate, entropy_from_logits, explained_variance, gae, \
    masked_mean, value_loss, whiten
from rlhf_lib.runtime import check_count, check_finite_fields, check_optional_positive, check_positive, \
    check_probability


@dataclass
class RLHFConfig:
    iterations: int = 60
    """rollout-and-update rounds"""
    batch_size: int = 64
    """responses sampled per iteration (split across processes under accelerate)"""
    max_new_tokens: int = 32
    """longest response; one that has not ended by then gets `unfinished_penalty`"""
    stop_at: str = "sentence"
    """a response ends at the end of the prompt's sentence ("sentence") or at end-of-text ("text")"""
    temperature: float = 1.0
    """sampling temperature; the log-probs use the same one"""
    epochs: int = 4
    """passes over each rollout"""
    minibatches: int = 4
    """minibatches per pass"""
    lr: float = 1e-4
    """Adam learning rate (policy and value head), annealed linearly to 0"""
    adam_eps: float = 1e-5
    """Adam's epsilon; PyTorch's 1e-8 makes the first updates much larger"""
    kl_coef: float = 0.2
    """beta: weight of the per-token KL penalty against the reference model (the starting value if adapted)"""
    target_kl: float | None = 3.0
    """KL budget per response (nats): beta is adapted toward it (Ziegler et al.); None keeps beta fixed"""
    kl_horizon: int = 2_000
    """responses over which the adaptive controller moves beta by up to 20%"""
    forced_min_tokens: int = 0
    """only to see the mistake notebook 08 shows: ban the stop tokens for this many steps, log-probs unchanged"""
    unfinished_penalty: float | None = 1.0
    """subtracted from the score of a response that never ended (None: no penalty)"""
    gamma: float = 1.0
    """discount over tokens"""
    lam: float = 0.95
    """GAE lambda"""
    clip_eps: float = 0.2
    """clip range of the policy ratio"""
    value_clip_eps: float | None = 0.2
    """clip range of the value update (None: no value clipping)"""
    vf_coef: float = 0.1
    """weight of the value loss"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    seed: int = 0
    """seeds sampling, minibatch order and the value head"""

    def __post_init__(self):
        check_finite_fields(self)
        check_optional_positive("value_clip_eps", self.value_clip_eps)
        check_optional_positive("unfinished_penalty", self.unfinished_penalty, allow_zero=True)
        check_count("forced_min_tokens", self.forced_min_tokens, minimum=0)
        check_count("seed", self.seed, minimum=0)
        for name in ("iterations", "batch_size", "max_new_tokens", "epochs", "minibatches", "kl_horizon"):
            check_count(name, getattr(self, name))
        for name in ("temperature", "lr", "adam_eps", "clip_eps", "vf_coef", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        check_positive("kl_coef (beta)", self.kl_coef, allow_zero=True)
        check_probability("gamma", self.gamma)
        check_probability("lam", self.lam)
        if self.target_kl is not None:
            check_positive("target_kl", self.target_kl)
        if self.stop_at not in ("text", "sentence"):
            raise ValueError(f"stop_at must be 'text' or 'sentence', got {self.stop_at!r}")
        if self.minibatches > self.batch_size:
            raise ValueError(f"minibatches ({self.minibatches}) cannot exceed batch_size ({self.batch_size})")


# ---- the policy with a value head


class PolicyWithValue(nn.Module):
    """A causal LM and a value head on its last hidden state. The head starts at exactly zero."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, prompt_ids, prompt_mask, response_ids, response_mask, temperature: float = 1.0):
        """Logits predicting each response token (B, R, V) and the value of the state before it (B, R)."""
        ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P + R)
        mask = torch.cat([prompt_mask, response_mask], dim=1)
        out = self.lm(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                      output_hidden_states=True)
        P = prompt_ids.shape[1]
        logits = out.logits[:, P - 1 : -1].float() / temperature  # position t predicts response token t
        values = self.value_head(out.hidden_states[-1][:, P - 1 : -1].float()).squeeze(-1)  # (B, R)
        return logits, values


def no_dropout(model: nn.Module) -> nn.Module:
    """Eval mode for every submodule: dropout off, so sampling and scoring see the same network."""
    model.eval()
    return model


# ---- rewards


def token_rewards(score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, R): -beta * k1 on every response token, plus `score` on the last real one.
    Also returns the per-token k1 (B, R)."""
    kl = (logp - logp_ref) * mask  # k1 per token
    rewards = -beta * kl
    last = (torch.arange(mask.shape[1]) * mask).argmax(-1)  # (B,) index of the last real token
    rewards[torch.arange(len(score)), last] += score
    return rewards, kl


def last_token_dones(mask: torch.Tensor) -> torch.Tensor:
    """(B, R) 1 at the last real token of each response: the episode ends there."""
    dones = torch.zeros_like(mask, dtype=torch.float32)
    dones[torch.arange(len(mask)), (torch.arange(mask.shape[1]) * mask).argmax(-1)] = 1.0
    return dones


class AdaptiveKLController:
    """Ziegler et al.: beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)."""

    def __init__(self, beta: float, target: float, horizon: int):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n: int) -> float:
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        self.beta *= 1.0 + error * n / self.horizon
        return self.beta


# ---- training


@dataclass
class RLHFResult:
    history: list[dict] = field(default_factory=list)
    """one dict of figures per iteration"""
    samples: list[list[str]] = field(default_factory=list)
    """the first few texts of each iteration's rollout"""
    seconds: float = 0.0

    def series(self, key: str) -> np.ndarray:
        return np.array([h[key] for h in self.history])


def _score(reward_model, reward_tokenizer, samples: Samples, cfg: RLHFConfig) -> torch.Tensor:
    from rlhf_lib.reward_model import score_texts

    score = torch.as_tensor(score_texts(reward_model, reward_tokenizer, samples.texts), dtype=torch.float32)
    if cfg.unfinished_penalty is not None:
        score = score - cfg.unfinished_penalty * (~samples.finished).float()
    return score


def _prompts_for(iteration: int, batch: int, rank: int, world: int, prompts: list[str]) -> list[str]:
    """This process's prompts: the course prompts in turn, disjoint across processes."""
    start = (iteration * batch * world + rank * batch)
    return [prompts[(start + k) % len(prompts)] for k in range(batch)]


def train_rlhf(policy_lm, tokenizer, reward_model, reward_tokenizer, reference, cfg: RLHFConfig | None = None,
               prompts: list[str] | None = None, progress: bool = True, on_iteration=None,
               checkpoint_dir: str | Path | None = None, resume: bool = False, accelerator=None) -> RLHFResult:
    """Fine-tune `policy_lm` in place with PPO against `reward_model`, KL-penalised toward `reference`.

    on_iteration(result) is called after every iteration (a notebook's live plot).
    checkpoint_dir: where a checkpoint is written after every iteration; with resume=True the run
    continues from the one found there. Returns the history of figures (RLHFResult)."""
    from tqdm.auto import tqdm

    from rlhf_lib.evaluate import POSITIVE_THRESHOLD, gold_sentiment
    from rlhf_lib.reviews import PROMPTS, is_grammatical

    cfg = cfg or RLHFConfig()
    prompts = list(prompts or PROMPTS)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    if cfg.batch_size % world or (cfg.batch_size // world) % cfg.minibatches:
        raise ValueError(f"batch_size {cfg.batch_size} must split evenly into {world} process(es) x "
                         f"{cfg.minibatches} minibatches")
    local_batch = cfg.batch_size // world

    torch.manual_seed(cfg.seed)
    model = PolicyWithValue(policy_lm)
    for m in (model, reference, reward_model):
        no_dropout(m)
    for p in list(reference.parameters()) + list(reward_model.parameters()):
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    sampler = torch.Generator().manual_seed(cfg.seed * 1000 + rank)  # different responses on every process
    shuffler = torch.Generator().manual_seed(cfg.seed)
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.target_kl else None
    beta = cfg.kl_coef
    result, start_iteration = RLHFResult(), 0
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        state = load_checkpoint(checkpoint_dir, model, opt, rank, config=cfg, world=world)
        sampler.set_state(state["sampler"])
        shuffler.set_state(state["shuffler"])
        beta, start_iteration = state["beta"], state["iteration"]
        result.history, result.samples = state["history"], state["samples"]
        if kl_ctl:
            kl_ctl.beta = beta
    device = accelerator.device if accelerator else next(policy_lm.parameters()).device
    for m in (model, reference, reward_model):
        m.to(device)
    wrapped = accelerator.prepare(model) if accelerator else model  # DDP averages the gradients across processes
    if accelerator:
        opt = accelerator.prepare(opt)

    def mean_over_processes(values: dict) -> dict:
        if not accelerator or world == 1:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=accelerator.device)
        t = accelerator.reduce(t, reduction="mean")
        return dict(zip(values, t.cpu().tolist()))

    begin = time.perf_counter() - (result.history[-1]["seconds"] if result.history else 0.0)
    bar = tqdm(range(start_iteration, cfg.iterations), desc="PPO-RLHF", disable=not progress or rank != 0,
               initial=start_iteration, total=cfg.iterations)
    for iteration in bar:
        for group in opt.param_groups:  # anneal the learning rate to 0
            group["lr"] = cfg.lr * (1.0 - iteration / cfg.iterations)
        # -- 1-2. rollout and scores
        batch_prompts = _prompts_for(iteration, local_batch, rank, world, prompts)
        s = sample(model.lm, tokenizer, batch_prompts, cfg.max_new_tokens, cfg.temperature, generator=sampler,
                   stop_at=cfg.stop_at, forced_min_tokens=cfg.forced_min_tokens)
        ids = tuple(t.to(device) for t in (s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask))
        mask = s.response_mask.float()  # rewards and advantages are computed on the CPU, the passes on `device`
        with torch.no_grad():
            _, values_old = model(*ids, temperature=cfg.temperature)
            values_old = values_old.cpu() * mask
            logits_ref = response_logits(reference, *ids, cfg.temperature)
            logp_ref = logits_ref.log_softmax(-1).gather(-1, ids[2][..., None]).squeeze(-1).cpu() * mask
            score = _score(reward_model, reward_tokenizer, s, cfg)
        # -- 3-4. rewards, advantages, returns
        rewards, kl = token_rewards(score, s.logp, logp_ref, mask, beta)
        advantages, returns = gae(rewards, values_old, last_token_dones(mask), cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask) * mask
        on_device = lambda x: x.to(device)
        mask_d, logp_old_d, adv_d, returns_d, values_old_d = map(on_device, (mask, s.logp, advantages, returns, values_old))
        # -- 5. update
        stats, first_ratio_gap = [], None
        mb = local_batch // cfg.minibatches
        for epoch in range(cfg.epochs):
            order = torch.randperm(local_batch, generator=shuffler)
            for k in range(cfg.minibatches):
                idx = order[k * mb : (k + 1) * mb].to(device)
                m, logp_old = mask_d[idx], logp_old_d[idx]
                logits, values = wrapped(*(t[idx] for t in ids), temperature=cfg.temperature)
                logp = logits.log_softmax(-1).gather(-1, ids[2][idx, :, None]).squeeze(-1)
                if epoch == 0 and k == 0:
                    first_ratio_gap = float(((logp.detach() - logp_old).abs() * m).max())
                pg_loss = clipped_surrogate(logp, logp_old, adv_d[idx], cfg.clip_eps, m)
                v_loss = value_loss(values, returns_d[idx], values_old_d[idx], cfg.value_clip_eps, m)
                loss = pg_loss + cfg.vf_coef * v_loss
                opt.zero_grad()
                (accelerator.backward(loss) if accelerator else loss.backward())
                nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                with torch.no_grad():
                    stats.append([float(pg_loss), float(v_loss), float(masked_mean(entropy_from_logits(logits), m)),
                                  float(approx_kl(logp, logp_old, m)), float(clip_fraction(logp, logp_old, cfg.clip_eps, m))])
        # -- 6. figures and beta
        sums = lambda x: (x * mask).sum(-1)  # (B,) per response
        log_r = logp_ref - s.logp
        k3 = (torch.expm1(log_r) - log_r) * mask
        gold = gold_sentiment(s.texts)
        st = np.mean(stats, axis=0)
        figures = mean_over_processes(dict(
            score=float(score.mean()), gold_positive=float((gold > POSITIVE_THRESHOLD).mean()),
            gold_sentiment=float(gold.mean()), grammatical=float(np.mean([is_grammatical(t) for t in s.texts])),
            kl_k1=float(sums(kl).mean()), kl_k3=float(sums(k3).mean()), length=float(mask.sum(-1).mean()),
            finished=float(s.finished.float().mean()), policy_loss=st[0], value_loss=st[1], entropy=st[2],
            approx_kl=st[3], clip_fraction=st[4], explained_variance=explained_variance(values_old, returns, mask),
            first_ratio_gap=first_ratio_gap))
        figures.update(iteration=iteration + 1, beta=beta, seconds=time.perf_counter() - begin,
                       episodes=(iteration + 1) * cfg.batch_size)
        result.history.append(figures)
        result.samples.append(s.texts[:4])
        if kl_ctl:
            beta = kl_ctl.update(figures["kl_k1"], cfg.batch_size)
        bar.set_postfix(score=f"{figures['score']:.2f}", pos=f"{figures['gold_positive']:.0%}",
                        kl=f"{figures['kl_k1']:.2f}")
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, model, opt, rank, dict(
                iteration=iteration + 1, beta=beta, sampler=sampler.get_state(), shuffler=shuffler.get_state(),
                history=result.history, samples=result.samples, config=asdict(cfg)), accelerator)
        if on_iteration is not None and rank == 0:
            on_iteration(result)
    bar.close()
    result.seconds = time.perf_counter() - begin
    if accelerator and world > 1:  # gradients were averaged, so every process must hold the same weights
        checksum = torch.tensor([sum(float(p.double().sum()) for p in model.parameters())], device=accelerator.device)
        spread = accelerator.gather(checksum)
        result.history[-1]["weight_checksum_spread"] = float(spread.max() - spread.min())
    return result


# ---- evaluation


@torch.no_grad()
def evaluate_policy(policy, reference, tokenizer, reward_model=None, reward_tokenizer=None, n: int = 500,
                    seed: int = 1234, max_new_tokens: int = 32, temperature: float = 1.0, stop_at: str = "sentence") -> dict:
    """Figures of n samples from the course prompts: gold positive rate, grammatical rate, mean reward
    (if a reward model is given), and the KL to the reference per response (k1 mean, and the exact
    per-step KL summed along the sampled responses)."""
    from rlhf_lib.evaluate import text_report
    from rlhf_lib.reviews import PROMPTS
    from rlhf_lib.reward_model import score_texts

    generator = torch.Generator().manual_seed(seed)
    texts, k1, exact, finished = [], [], [], []
    for start in range(0, n, 125):
        batch = [PROMPTS[i % len(PROMPTS)] for i in range(start, min(n, start + 125))]
        s = sample(policy, tokenizer, batch, max_new_tokens, temperature, generator=generator, stop_at=stop_at)
        device = next(policy.parameters()).device
        ids = tuple(t.to(device) for t in (s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask))
        logits, logits_ref = response_logits(policy, *ids, temperature), response_logits(reference, *ids, temperature)
        logp_ref = logits_ref.log_softmax(-1).gather(-1, ids[2][..., None]).squeeze(-1).cpu()
        k1 += ((s.logp - logp_ref) * s.response_mask).sum(-1).tolist()
        exact += (token_kl(logits, logits_ref).cpu() * s.response_mask).sum(-1).tolist()
        texts += s.texts
        finished += s.finished.tolist()
    report = text_report(texts)
    report.update(kl_k1=float(np.mean(k1)), kl_exact=float(np.mean(exact)), finished=float(np.mean(finished)))
    if reward_model is not None:
        report["reward"] = float(score_texts(reward_model, reward_tokenizer, texts).mean())
    report["examples"] = texts[:8]
    return report
