"""PPO for language models: fine-tune a policy against a reward, held near a reference.

The trainer is a handful of named pieces; `ppo_iteration` chains them, `train_rlhf` repeats it.

| piece                   | in                                    | out                                       |
|-------------------------|---------------------------------------|-------------------------------------------|
| `rollout`               | N prompts                             | `Rollout` of B = N x k responses          |
| `score_responses`       | Rollout, a score function             | score (B,), minus the unfinished penalty  |
| `reference_logprobs`    | reference model, Rollout              | logp_ref (B, R)                           |
| `value_estimates`       | policy with value head, Rollout       | values (B, R) before the update           |
| `kl_shaped_rewards`     | score, logp, logp_ref, mask, beta     | rewards (B, R)                            |
| `advantages_and_returns`| rewards, values, mask, gamma, lam     | advantages (B, R) whitened, returns (B, R)|
| `ppo_loss`              | one minibatch's logp, advantages, values | loss, policy_loss, value_loss (scalars) |
| `ppo_update`            | setup, Rollout, advantages, returns, values | figures of the update (dict)        |
| `iteration_figures`     | one `Iteration`                       | dict of figures (score, KL, losses, ...)  |

One iteration:

1. rollout: sample k responses per prompt from the current policy (plain sampling at the configured
   temperature, stopping at end-of-text or the sentence's end), keeping the log-probs of the sampled tokens;
2. score: the score function's number for prompt + response (the reward model's normalised score),
   minus a penalty if the response never ended; the frozen reference's log-probs of the same tokens; the
   value head's estimates before the update;
3. reward per token:  r_t = -beta * (logp_t - logp_ref_t)  plus the score on the last real token;
4. GAE (gamma 1, lambda 0.95) with a value head on the policy, advantages whitened;
5. several epochs of minibatches of the clipped policy loss + clipped value loss, gradients clipped;
6. beta fixed, or adapted toward a target KL (Ziegler et al. 2019), between iterations.

The PPO pieces (gae, whiten, clipped_surrogate, value_loss, approx_kl, ...) are those of
`rlhf_lib/ppo.py`, unchanged. The policy runs without dropout throughout, so at the first
epoch the recomputed log-probs equal the sampled ones and every ratio is 1.

Under `accelerate launch`, each process samples its share of the prompts and the gradients
are averaged across processes; the logged figures are averaged over all processes.
Shapes: N prompts, k responses per prompt, B = N * k responses, R response tokens, P prompt tokens,
V vocabulary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlhf_lib.checkpoint import load_checkpoint, save_checkpoint
from rlhf_lib.lm import Samples, position_ids_from_mask, response_logits, sample, token_kl
from rlhf_lib.ppo import (
    approx_kl,
    clip_fraction,
    clipped_surrogate,
    entropy_from_logits,
    explained_variance,
    gae,
    masked_mean,
    value_loss,
    whiten,
)
from rlhf_lib.runtime import (
    check_count,
    check_finite_fields,
    check_optional_positive,
    check_positive,
    check_probability,
    derive_seed,
)
from rlhf_lib.threads import share_cores


@dataclass
class RLHFConfig:
    iterations: int = 60
    """rollout-and-update rounds"""
    batch_size: int = 64
    """responses sampled per iteration (split across processes under accelerate)"""
    responses_per_prompt: int = 1
    """k: responses sampled for each prompt (group methods such as RLOO and GRPO compare them)"""
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
    """Adam learning rate (policy and value head)"""
    value_lr_scale: float = 1.0
    """the value head's learning rate as a multiple of `lr` (a fresh head learns slowly at the policy's rate)"""
    lr_schedule: str = "linear"
    """"linear": annealed linearly to 0 over the iterations; "constant": held at `lr`"""
    adam_eps: float = 1e-5
    """Adam's epsilon; PyTorch's 1e-8 makes the first updates much larger"""
    kl_coef: float = 0.2
    """beta: weight of the per-token KL penalty against the reference model (the starting value if adapted)"""
    target_kl: float | None = 3.0
    """KL target per response (nats): beta is adapted toward it (Ziegler et al.); the budget too, unless kl_budget
    draws a line above it; None keeps beta fixed"""
    kl_budget: float | None = None
    """the most KL per response the run may spend (nats), above target_kl: a batch whose KL is over it multiplies
    beta by 1.5 at once, on top of the adaptive rule, which moves beta at most 20% a horizon. target_kl is then a
    set point with room below the line: the trained policy's KL lands up to 0.4 nats either side of the set point
    from run to run (benchmarks/README.md, whole reviews). None: no line"""
    kl_horizon: int = 2_000
    """responses over which the adaptive controller moves beta by up to 20%"""
    hold_beta: bool = False
    """the adaptive controller does not lower beta until the KL has first reached target_kl"""
    kl_warmup: int = 0
    """iterations over which the adaptive controller's target rises in a straight line from 0 to target_kl
    (0: the whole budget from the start)"""
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
    ptx_coef: float = 0.0
    """PPO-ptx (InstructGPT): weight of the next-token loss on review text added to each minibatch's loss (0: off)"""
    ptx_batch_size: int = 8
    """review-text blocks in each minibatch's ptx loss"""
    ptx_block_size: int = 64
    """tokens in one ptx block"""
    ptx_reviews: int = 2_000
    """reviews generated (seeded by `seed`) for the ptx corpus"""
    reward_transform: str | None = None
    """None: the score as it is; "logsigmoid": log sigmoid(score - reward_centre), the log-probability that the
    annotator prefers the response to one scoring `reward_centre` (Wang et al. 2024): a bad response gains
    nearly its full score, a good one little more (the unfinished penalty is subtracted after it)"""
    reward_centre: float = 0.0
    """the reference score of the "logsigmoid" transform"""
    sentence_rewards: bool = False
    """score every sentence as it ends, not only the whole response: the reward model's (transformed) score of
    the text so far, paid as the change since the previous sentence end, the last change at the last token
    (potential-based shaping, Ng et al. 1999; per-sentence rewards as in Wu et al. 2023). The rewards still sum
    to the score, so the best policy is the same; a sentence's tokens are credited with what that sentence did"""
    implausible_coef: float = 0.0
    """weight of the policy's probability of the tokens the reference finds implausible there (below
    `implausible_below`), summed over the vocabulary at every response token of the minibatch, added to the loss
    (0: off). It aims at the ungrammatical splices PPO learns ("What aNine out of ten."): the KL penalty only
    sees such a token when it is sampled, this term pushes its probability down wherever the policy writes"""
    implausible_below: float = 1e-3
    """the reference probability under which a token counts as implausible"""
    kl_loss_coef: float = 0.0
    """weight of the exact KL to the reference, summed over the vocabulary at every response token of the
    minibatch (`token_kl`), added to the loss: it pulls back every token whose probability moved, sampled or
    not (0: off; the KL penalty in the reward, beta, is separate)"""

    def __post_init__(self):
        check_finite_fields(self)
        check_optional_positive("value_clip_eps", self.value_clip_eps)
        check_optional_positive("unfinished_penalty", self.unfinished_penalty, allow_zero=True)
        check_count("forced_min_tokens", self.forced_min_tokens, minimum=0)
        check_count("seed", self.seed, minimum=0)
        check_positive("ptx_coef", self.ptx_coef, allow_zero=True)
        check_positive("kl_loss_coef", self.kl_loss_coef, allow_zero=True)
        check_positive("implausible_coef", self.implausible_coef, allow_zero=True)
        if not 0 < self.implausible_below < 1:
            raise ValueError(f"implausible_below must be a probability between 0 and 1, got {self.implausible_below!r}")
        for name in ("ptx_batch_size", "ptx_block_size", "ptx_reviews"):
            check_count(name, getattr(self, name))
        for name in ("iterations", "batch_size", "responses_per_prompt", "max_new_tokens", "epochs", "minibatches",
                     "kl_horizon"):
            check_count(name, getattr(self, name))
        check_count("kl_warmup", self.kl_warmup, minimum=0)
        for name in ("temperature", "lr", "value_lr_scale", "adam_eps", "clip_eps", "vf_coef", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        check_positive("kl_coef (beta)", self.kl_coef, allow_zero=True)
        check_probability("gamma", self.gamma)
        check_probability("lam", self.lam)
        if self.target_kl is not None:
            check_positive("target_kl", self.target_kl)
        if self.kl_budget is not None and (self.target_kl is None or self.kl_budget < self.target_kl):
            raise ValueError(f"kl_budget must be at least target_kl (it is the line above the adaptive coefficient's "
                             f"set point), got kl_budget={self.kl_budget!r}, target_kl={self.target_kl!r}")
        if self.lr_schedule not in ("linear", "constant"):
            raise ValueError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        if self.reward_transform not in (None, "logsigmoid"):
            raise ValueError(f"reward_transform must be None or 'logsigmoid', got {self.reward_transform!r}")
        if self.stop_at not in ("text", "sentence"):
            raise ValueError(f"stop_at must be 'text' or 'sentence', got {self.stop_at!r}")
        if self.minibatches > self.batch_size:
            raise ValueError(f"minibatches ({self.minibatches}) cannot exceed batch_size ({self.batch_size})")
        if self.batch_size % self.responses_per_prompt:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of responses_per_prompt "
                             f"({self.responses_per_prompt})")

    @property
    def reads_reference_logits(self) -> bool:
        """Whether the loss reads the reference's logits over the vocabulary (the exact-KL loss, the implausible
        penalty), not only its log-probs of the sampled tokens."""
        return self.kl_loss_coef > 0 or self.implausible_coef > 0


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


def gather_logp(logits: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
    """log pi of each response token: (B, R, V) logits that predict them, (B, R) ids -> (B, R)."""
    return logits.log_softmax(-1).gather(-1, response_ids[..., None]).squeeze(-1)


# ---- 1. rollout


@dataclass
class Rollout(Samples):
    """One iteration's responses (`lm.Samples`: tokens, masks, log-probs recorded while sampling, texts,
    finished), B = N prompts x k responses, each prompt's k rows next to each other."""

    group: torch.Tensor | None = None
    """(B,) index of the row's prompt among the N: rows with the same index answer the same prompt"""

    @property
    def mask(self) -> torch.Tensor:
        """(B, R) the response mask as floats, for sums and means"""
        return self.response_mask.float()

    def ids(self, device=None) -> tuple[torch.Tensor, ...]:
        """(prompt_ids, prompt_mask, response_ids, response_mask) on `device`: a forward pass's inputs."""
        return tuple(t.to(device) for t in (self.prompt_ids, self.prompt_mask, self.response_ids, self.response_mask))


def rollout(policy_lm, tokenizer, prompts: list[str], cfg: RLHFConfig, generator: torch.Generator) -> Rollout:
    """Sample cfg.responses_per_prompt responses to each prompt from the policy (no gradients)."""
    k = cfg.responses_per_prompt
    s = sample(policy_lm, tokenizer, [p for p in prompts for _ in range(k)], cfg.max_new_tokens, cfg.temperature,
               generator=generator, stop_at=cfg.stop_at, forced_min_tokens=cfg.forced_min_tokens)
    group = torch.arange(len(prompts)).repeat_interleave(k)  # (B,)
    return Rollout(**vars(s), group=group)


# ---- 2. scoring


def reward_model_scorer(reward_model, reward_tokenizer, device=None) -> Callable:
    """A score function from a reward model: (texts, rollout) -> (B,) normalised rewards. The reward model
    is frozen, put in eval mode and moved to `device` (if given)."""
    from rlhf_lib.reward_model import score_texts

    no_dropout(reward_model.to(device) if device is not None else reward_model)
    for p in reward_model.parameters():
        p.requires_grad_(False)

    def score_fn(texts, batch=None):
        return torch.as_tensor(score_texts(reward_model, reward_tokenizer, texts), dtype=torch.float32)

    return score_fn


def score_responses(score_fn: Callable, batch: Rollout, unfinished_penalty: float | None) -> torch.Tensor:
    """(B,) the score of each text, minus `unfinished_penalty` where the response never ended."""
    score = torch.as_tensor(score_fn(batch.texts, batch), dtype=torch.float32).cpu()
    if score.shape != (len(batch.texts),):
        raise ValueError(f"the score function must return one number per text, shape ({len(batch.texts)},); "
                         f"it returned shape {tuple(score.shape)}")
    if unfinished_penalty is not None:
        score = score - unfinished_penalty * (~batch.finished).float()
    return score


@torch.no_grad()
def reference_logprobs(reference, batch: Rollout, temperature: float, keep_logits: bool = False):
    """(B, R) log pi_ref of the sampled tokens under the frozen reference (same temperature), 0 at pads; with
    keep_logits, also the reference's (B, R, V) logits (for the loss terms that compare whole distributions)."""
    ids = batch.ids(next(reference.parameters()).device)
    logits_ref = response_logits(reference, *ids, temperature)  # (B, R, V)
    logp_ref = gather_logp(logits_ref, ids[2]).cpu() * batch.mask
    return (logp_ref, logits_ref) if keep_logits else logp_ref


@torch.no_grad()
def value_estimates(model: PolicyWithValue, batch: Rollout, temperature: float) -> torch.Tensor:
    """(B, R) the value head's V(s_t) before the update, 0 at pads."""
    _, values = model(*batch.ids(next(model.parameters()).device), temperature=temperature)
    return values.cpu() * batch.mask


# ---- 3. rewards


def kl_shaped_rewards(score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor,
                      beta: float) -> torch.Tensor:
    """Per-token rewards (B, R): -beta * k1 on every response token, plus `score` (B,) on the last real one.
    k1 = logp - logp_ref (B, R) on the sampled token; 0 at pads (mask 0)."""
    kl = (logp - logp_ref) * mask  # k1 per token
    rewards = -beta * kl
    last = (torch.arange(mask.shape[1]) * mask).argmax(-1)  # (B,) index of the last real token
    rewards[torch.arange(len(score)), last] += score
    return rewards


def sentence_ends(tokenizer, batch: Rollout) -> list[list[int]]:
    """Per response, the positions of the tokens that end a sentence (text ending in ".", "!" or "?"), the
    response's last real token left out (its score is the whole text's)."""
    ends, cache, mask = [], {}, batch.response_mask
    for b in range(len(mask)):
        n = int(mask[b].sum())
        row = []
        for t in range(n - 1):
            tok = int(batch.response_ids[b, t])
            if tok not in cache:
                cache[tok] = tokenizer.decode([tok]).rstrip().endswith((".", "!", "?"))
            if cache[tok]:
                row.append(t)
        ends.append(row)
    return ends


def sentence_shaping(score_fn: Callable, tokenizer, batch: Rollout) -> torch.Tensor:
    """(B, R) shaping rewards for `RLHFConfig.sentence_rewards`: at each sentence end t_j (`sentence_ends`) the
    change of the potential, phi_j - phi_(j-1), phi_j = score_fn(prompt + response up to t_j), phi_0 = 0;
    minus the last phi_j at the last real token, so each row sums to 0 and, added to the rewards that pay the
    score at the last token, the rewards still sum to the score."""
    ends = sentence_ends(tokenizer, batch)
    texts = [batch.prompts[b] + tokenizer.decode(batch.response_ids[b, : t + 1], skip_special_tokens=True)
             for b, row in enumerate(ends) for t in row]
    phi = torch.as_tensor(score_fn(texts, None), dtype=torch.float32).cpu() if texts else torch.zeros(0)
    shaping, k = torch.zeros(batch.response_mask.shape), 0
    last = (torch.arange(shaping.shape[1]) * batch.response_mask).argmax(-1)
    for b, row in enumerate(ends):
        before = 0.0
        for t in row:
            shaping[b, t] += phi[k] - before
            before, k = phi[k], k + 1
        shaping[b, last[b]] -= before
    return shaping


def last_token_dones(mask: torch.Tensor) -> torch.Tensor:
    """(B, R) 1 at the last real token of each response: the episode ends there."""
    dones = torch.zeros_like(mask, dtype=torch.float32)
    dones[torch.arange(len(mask)), (torch.arange(mask.shape[1]) * mask).argmax(-1)] = 1.0
    return dones


# ---- 4. advantages


def advantages_and_returns(rewards, values, mask, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each response (ending at its last real token), advantages whitened over the batch's real
    tokens. rewards, values, mask: (B, R) -> advantages (B, R) (0 at pads), returns (B, R) (the value targets)."""
    advantages, returns = gae(rewards, values, last_token_dones(mask), gamma, lam)
    return whiten(advantages, mask) * mask, returns


# ---- 5. the update


@dataclass
class RLHFSetup:
    """What every iteration works with: the models, the optimizer, the random streams, the settings."""

    model: PolicyWithValue
    """the policy being trained, with its value head"""
    wrapped: nn.Module
    """`model` as the update calls it (under accelerate, wrapped so gradients are averaged)"""
    reference: nn.Module
    """the frozen reference policy"""
    tokenizer: object
    """the policy's tokenizer"""
    score_fn: Callable
    """(texts, rollout) -> (B,) scores"""
    opt: torch.optim.Optimizer
    """Adam over the policy and the value head"""
    sampler: torch.Generator
    """the random stream of the rollouts"""
    shuffler: torch.Generator
    """the random stream of the minibatch order"""
    cfg: RLHFConfig
    """the settings"""
    device: torch.device
    """where the forward and backward passes run"""
    accelerator: object = None
    """an `accelerate.Accelerator`, or None for one process"""
    ptx_blocks: torch.Tensor | None = None
    """(n_blocks, ptx_block_size + 1) token ids of review text for the ptx loss; None when ptx_coef is 0"""


def ptx_corpus(tokenizer, cfg: RLHFConfig) -> torch.Tensor:
    """Review text as the course model was pretrained on it: cfg.ptx_reviews generated reviews (seeded by
    cfg.seed), each as <eos> review, packed end to end into blocks: (n_blocks, ptx_block_size + 1)."""
    from rlhf_lib.pretrain import pack
    from rlhf_lib.reviews import generate_reviews

    return pack(tokenizer, generate_reviews(cfg.ptx_reviews, seed=cfg.seed), cfg.ptx_block_size)


def ptx_loss(lm, blocks: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of `lm` on blocks (b, T + 1): the pretraining loss, at temperature 1."""
    logits = lm(input_ids=blocks[:, :-1]).logits  # (b, T, V)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1))


def logsigmoid_scores(score_fn: Callable, centre: float) -> Callable:
    """score_fn's scores through log sigmoid(score - centre) (`RLHFConfig.reward_transform`)."""

    def transformed(texts, batch=None):
        score = torch.as_tensor(score_fn(texts, batch), dtype=torch.float32)
        return nn.functional.logsigmoid(score - centre)

    return transformed


def make_setup(policy_lm, tokenizer, reference, score_fn: Callable, cfg: RLHFConfig, accelerator=None) -> RLHFSetup:
    """Value head, optimizer and random streams for training `policy_lm` in place (seeded by cfg.seed)."""
    rank = accelerator.process_index if accelerator else 0
    torch.manual_seed(cfg.seed)
    model = PolicyWithValue(policy_lm)
    for m in (model, reference):
        no_dropout(m)
    for p in reference.parameters():
        p.requires_grad_(False)
    head = list(model.value_head.parameters())
    trunk = [p for p in model.parameters() if all(p is not q for q in head)]
    opt = torch.optim.Adam([dict(params=trunk, scale=1.0), dict(params=head, scale=cfg.value_lr_scale)],
                           lr=cfg.lr, eps=cfg.adam_eps)
    for group in opt.param_groups:
        group["lr"] = cfg.lr * group["scale"]
    sampler = torch.Generator().manual_seed(derive_seed(cfg.seed, "sampler", rank))  # other responses on each process
    shuffler = torch.Generator().manual_seed(cfg.seed)
    device = _device(policy_lm, accelerator)
    for m in (model, reference):
        m.to(device)
    wrapped = accelerator.prepare(model) if accelerator else model  # DDP averages the gradients across processes
    if accelerator:
        opt = accelerator.prepare(opt)
    ptx_blocks = ptx_corpus(tokenizer, cfg) if cfg.ptx_coef > 0 else None
    if cfg.reward_transform == "logsigmoid":
        score_fn = logsigmoid_scores(score_fn, cfg.reward_centre)
    return RLHFSetup(model, wrapped, reference, tokenizer, score_fn, opt, sampler, shuffler, cfg, device, accelerator,
                     ptx_blocks)


def anchor_losses(setup: RLHFSetup, ids: list[torch.Tensor], logits: torch.Tensor, mask: torch.Tensor,
                  logits_ref: torch.Tensor | None = None):
    """(loss, figures): what holds a minibatch's update near the language, added to any policy loss.
    cfg.ptx_coef x the next-token loss on cfg.ptx_batch_size blocks of review text, drawn with the minibatch
    order's random stream (PPO-ptx); cfg.kl_loss_coef x the exact per-step KL to the reference over the
    minibatch's response tokens; cfg.implausible_coef x the policy's probability of the tokens the reference
    gives less than cfg.implausible_below there. ids: the minibatch's (prompt_ids, prompt_mask, response_ids,
    response_mask); logits: the policy's (b, R, V) for them; logits_ref: the reference's, if already computed;
    figures: ptx_loss, kl_loss, implausible, each only when on."""
    cfg, total, figures = setup.cfg, logits.new_zeros(()), {}
    if cfg.ptx_coef > 0:  # PPO-ptx: keep the language of the pretraining corpus
        rows = torch.randint(len(setup.ptx_blocks), (cfg.ptx_batch_size,), generator=setup.shuffler)
        figures["ptx_loss"] = ptx_loss(setup.model.lm, setup.ptx_blocks[rows].to(setup.device))
        total = total + cfg.ptx_coef * figures["ptx_loss"]
    if cfg.reads_reference_logits and logits_ref is None:
        with torch.no_grad():
            logits_ref = response_logits(setup.reference, *ids, cfg.temperature)
    if cfg.kl_loss_coef > 0:  # the exact KL at every visited step, over the whole vocabulary
        figures["kl_loss"] = masked_mean(token_kl(logits, logits_ref), mask)
        total = total + cfg.kl_loss_coef * figures["kl_loss"]
    if cfg.implausible_coef > 0:  # the policy's mass on what the reference would almost never write there
        low = logits_ref.log_softmax(-1) < math.log(cfg.implausible_below)
        figures["implausible"] = masked_mean((logits.softmax(-1) * low).sum(-1), mask)
        total = total + cfg.implausible_coef * figures["implausible"]
    return total, figures


def minibatch_updates(setup: RLHFSetup, batch: Rollout, policy_loss: Callable, logits_ref=None) -> dict:
    """The update loop that PPO and the critic-free trainers share: cfg.epochs passes of cfg.minibatches
    shuffled minibatches over the rollout, each one forward pass of the policy, its loss, one clipped step.

    policy_loss(idx, logp, logp_old, values, mask) -> (loss, figures): the method's own loss on the minibatch
    `idx` (rows of the rollout), from the policy's log-probs logp (b, R) and values (b, R) now, the rollout's
    logp_old (b, R) and the response mask (b, R); figures: {name: scalar tensor}. `anchor_losses` (PPO-ptx, the
    exact KL, the implausible-token penalty) are added to every method's loss; they read the rollout's
    reference logits (B, R, V) when given, so the reference runs once a rollout, not once a minibatch.
    Returns the mean over minibatches of the method's figures, entropy, approx_kl, clip_fraction and the
    anchors' (each only when on), and first_ratio_gap: max |logp - logp_old| in the first minibatch (0 up to
    rounding: the ratio starts at 1)."""
    cfg, device, opt = setup.cfg, setup.device, setup.opt
    ids = batch.ids(device)
    mask, logp_old_all = batch.mask.to(device), batch.logp.to(device)
    B = len(batch.texts)
    mb = B // cfg.minibatches
    rows, names, first_ratio_gap = [], None, None
    for _ in range(cfg.epochs):
        order = torch.randperm(B, generator=setup.shuffler)
        for k in range(cfg.minibatches):
            idx = order[k * mb : (k + 1) * mb].to(device)
            m, logp_old = mask[idx], logp_old_all[idx]
            logits, v = setup.wrapped(*(t[idx] for t in ids), temperature=cfg.temperature)  # (b, R, V), (b, R)
            logp = gather_logp(logits, ids[2][idx])  # (b, R)
            if first_ratio_gap is None:
                first_ratio_gap = float(((logp.detach() - logp_old).abs() * m).max())
            loss, figures = policy_loss(idx, logp, logp_old, v, m)
            anchor, anchors = anchor_losses(setup, [t[idx] for t in ids], logits, m,
                                            None if logits_ref is None else logits_ref[idx])
            loss = loss + anchor
            opt.zero_grad()
            (setup.accelerator.backward(loss) if setup.accelerator else loss.backward())
            nn.utils.clip_grad_norm_(setup.model.parameters(), cfg.max_grad_norm)
            opt.step()
            with torch.no_grad():
                figures = {**figures, "entropy": masked_mean(entropy_from_logits(logits), m),
                           "approx_kl": approx_kl(logp, logp_old, m),
                           "clip_fraction": clip_fraction(logp, logp_old, cfg.clip_eps, m), **anchors}
                names = names or list(figures)
                rows.append([float(figures[name]) for name in names])
    return dict(zip(names, np.mean(rows, axis=0)), first_ratio_gap=first_ratio_gap)


def ppo_loss(logp, logp_old, advantages, values, values_old, returns, mask, clip_eps: float = 0.2,
             vf_coef: float = 0.1, value_clip_eps: float | None = 0.2):
    """PPO's loss on a minibatch of right-padded responses, every tensor (b, R) and each term a mean over the
    real tokens (mask 1), so a long response weighs more than a short one and the padding not at all:
    (loss, policy_loss, value_loss), loss = policy_loss + vf_coef x value_loss. policy_loss is the clipped
    surrogate of the ratio exp(logp - logp_old) (`clipped_surrogate`); value_loss is half the squared error of the
    values against the returns, the larger of it and that of the values clipped to values_old +- value_clip_eps
    when value_clip_eps is set (`value_loss`)."""
    policy_loss = clipped_surrogate(logp, logp_old, advantages, clip_eps, mask)
    v_loss = value_loss(values, returns, values_old, value_clip_eps, mask)
    return policy_loss + vf_coef * v_loss, policy_loss, v_loss


def ppo_update(setup: RLHFSetup, batch: Rollout, advantages, returns, values, logits_ref=None,
               loss_fn: Callable = ppo_loss) -> dict:
    """PPO's update (`minibatch_updates`): loss_fn (`ppo_loss`: the clipped policy loss + vf_coef x the clipped
    value loss) on each minibatch, + the anchors when on. advantages, returns, values (before the update):
    (B, R); logits_ref: the reference's (B, R, V) logits of the rollout when kept (otherwise each minibatch that
    needs them computes its own). Returns the mean over minibatches of policy_loss, value_loss, entropy,
    approx_kl, clip_fraction (and ptx_loss, kl_loss, implausible when on), and first_ratio_gap."""
    cfg, device = setup.cfg, setup.device
    adv, ret, values_old = (x.to(device) for x in (advantages, returns, values))

    def loss(idx, logp, logp_old, v, m):
        total, pg_loss, v_loss = loss_fn(logp, logp_old, adv[idx], v, values_old[idx], ret[idx], m, cfg.clip_eps,
                                         cfg.vf_coef, cfg.value_clip_eps)
        return total, {"policy_loss": pg_loss, "value_loss": v_loss}

    return minibatch_updates(setup, batch, loss, logits_ref)


# ---- one iteration


@dataclass
class Iteration:
    """Everything one iteration computed, for its figures and for a closer look."""

    batch: Rollout
    score: torch.Tensor
    """(B,) score of each response, penalty included"""
    logp_ref: torch.Tensor
    """(B, R) reference log-probs of the sampled tokens"""
    values: torch.Tensor
    """(B, R) value estimates before the update"""
    rewards: torch.Tensor
    """(B, R) KL-shaped rewards"""
    advantages: torch.Tensor
    """(B, R) whitened GAE advantages"""
    returns: torch.Tensor
    """(B, R) value targets"""
    stats: dict
    """the update's figures (`ppo_update`)"""


def ppo_iteration(setup: RLHFSetup, prompts: list[str], beta: float,
                  reference_fn: Callable = reference_logprobs) -> Iteration:
    """One rollout on `prompts` and the PPO update on it, the KL penalty weighted by `beta`. reference_fn(reference,
    batch, temperature) reads the reference's log-probs (`reference_logprobs`, or one to try); it is also asked for
    the logits (keep_logits=True) when the config's loss reads them (`reads_reference_logits`)."""
    cfg = setup.cfg
    batch = rollout(setup.model.lm, setup.tokenizer, prompts, cfg, setup.sampler)
    score = score_responses(setup.score_fn, batch, cfg.unfinished_penalty)
    whole = cfg.reads_reference_logits  # keep the reference's logits: one forward pass a rollout
    logp_ref, logits_ref = (reference_fn(setup.reference, batch, cfg.temperature, keep_logits=True) if whole
                            else (reference_fn(setup.reference, batch, cfg.temperature), None))
    values = value_estimates(setup.model, batch, cfg.temperature)
    rewards = kl_shaped_rewards(score, batch.logp, logp_ref, batch.mask, beta)
    if cfg.sentence_rewards:
        rewards = rewards + sentence_shaping(setup.score_fn, setup.tokenizer, batch)
    advantages, returns = advantages_and_returns(rewards, values, batch.mask, cfg.gamma, cfg.lam)
    stats = ppo_update(setup, batch, advantages, returns, values, logits_ref)
    return Iteration(batch, score, logp_ref, values, rewards, advantages, returns, stats)


def iteration_figures(it: Iteration) -> dict:
    """The figures of one iteration: mean score, KL to the reference per response (k1 and k3), length,
    share finished, the update's figures, and how much of the returns' variance the values explained."""
    mask = it.batch.mask
    log_r = it.logp_ref - it.batch.logp
    k1, k3 = -log_r * mask, (torch.expm1(log_r) - log_r) * mask
    return dict(score=float(it.score.mean()), kl_k1=float(k1.sum(-1).mean()), kl_k3=float(k3.sum(-1).mean()),
                length=float(mask.sum(-1).mean()), finished=float(it.batch.finished.float().mean()), **it.stats,
                explained_variance=explained_variance(it.values, it.returns, mask))


class AdaptiveKLController:
    """Ziegler et al.: beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon). With hold=True
    beta is not lowered until the KL has first reached the target (no winding down during the first climb).
    With warmup=w the target rises in a straight line over the first w updates (target x i / w at update i), so
    beta follows a KL that climbs at a set pace instead of winding down while the policy is slower. With a
    budget, a KL over it multiplies beta by 1.5 on top of the rule."""

    def __init__(self, beta: float, target: float, horizon: int, hold: bool = False, warmup: int = 0,
                 budget: float | None = None):
        self.beta, self.target, self.horizon, self.hold, self.warmup = beta, target, horizon, hold, warmup
        self.budget, self.reached, self.updates = budget, False, 0

    def target_at(self, update: int) -> float:
        """The target of the update-th update (1 for the first)."""
        return self.target * min(1.0, update / self.warmup) if self.warmup else self.target

    def update(self, kl: float, n: int) -> float:
        self.updates += 1
        self.reached = self.reached or kl >= self.target
        error = float(np.clip(kl / self.target_at(self.updates) - 1.0, -0.2, 0.2))
        if self.hold and not self.reached:
            error = max(error, 0.0)
        self.beta *= 1.0 + error * n / self.horizon
        if self.budget is not None and kl > self.budget:  # over the line: pull back at once
            self.beta *= 1.5
        return self.beta

    def restore(self, beta: float, kls: list[float]):
        """The state after the iterations whose batch KLs were `kls`, ending at `beta` (a resumed run)."""
        self.beta, self.reached, self.updates = beta, any(kl >= self.target for kl in kls), len(kls)


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


def _prompts_for(iteration: int, n: int, rank: int, world: int, prompts: list[str]) -> list[str]:
    """This process's n prompts: the course prompts in turn, disjoint across processes."""
    start = (iteration * n * world + rank * n)
    return [prompts[(start + k) % len(prompts)] for k in range(n)]


def _device(policy_lm, accelerator) -> torch.device:
    return accelerator.device if accelerator else next(policy_lm.parameters()).device


def _score_function(reward_model, reward_tokenizer, score_fn, device):
    if score_fn is not None and reward_model is not None:
        raise ValueError("give a reward model or a score_fn, not both")
    if score_fn is None and (reward_model is None or reward_tokenizer is None):
        raise ValueError("train_rlhf needs a reward model and its tokenizer, or a score_fn(texts, rollout)")
    return score_fn or reward_model_scorer(reward_model, reward_tokenizer, device)


def train_rlhf(policy_lm, tokenizer, reward_model, reward_tokenizer, reference, cfg: RLHFConfig | None = None,
               prompts: list[str] | None = None, progress: bool = True, on_iteration=None,
               checkpoint_dir: str | Path | None = None, resume: bool = False, accelerator=None, *,
               score_fn: Callable | None = None, metrics: Callable | None = None,
               iteration_fn: Callable = ppo_iteration) -> RLHFResult:
    """Fine-tune `policy_lm` in place with PPO against `reward_model`, KL-penalised toward `reference`.

    score_fn(texts, rollout) -> (B,) scores replaces the reward model (pass None, None for it).
    metrics(texts) -> dict of figures about each iteration's texts, logged beside the trainer's own
    (the course's gold taste: `review_metrics`). iteration_fn(setup, prompts, beta) -> Iteration: one
    round of rollout and update (`ppo_iteration`, or your own). on_iteration(result) is called after every
    iteration (a notebook's live plot). checkpoint_dir: where a checkpoint is written after every
    iteration; with resume=True the run continues from the one found there."""
    from tqdm.auto import tqdm

    from rlhf_lib.reviews import PROMPTS

    cfg = cfg or RLHFConfig()
    prompts = list(prompts or PROMPTS)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    if cfg.batch_size % world or (cfg.batch_size // world) % cfg.minibatches \
            or (cfg.batch_size // world) % cfg.responses_per_prompt:
        raise ValueError(f"batch_size {cfg.batch_size} must split evenly into {world} process(es) x "
                         f"{cfg.minibatches} minibatches and groups of {cfg.responses_per_prompt} responses")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir to resume from")
    n_prompts = cfg.batch_size // world // cfg.responses_per_prompt  # this process's prompts per iteration
    score_fn = _score_function(reward_model, reward_tokenizer, score_fn, _device(policy_lm, accelerator))
    setup = make_setup(policy_lm, tokenizer, reference, score_fn, cfg, accelerator)
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon, cfg.hold_beta, cfg.kl_warmup,
                                   cfg.kl_budget) if cfg.target_kl else None)
    beta, result, start_iteration = cfg.kl_coef, RLHFResult(), 0
    if resume:
        state = load_checkpoint(checkpoint_dir, setup.model, setup.opt, rank, config=cfg, world=world)
        setup.sampler.set_state(state["sampler"])
        setup.shuffler.set_state(state["shuffler"])
        beta, start_iteration = state["beta"], state["iteration"]
        result.history, result.samples = state["history"], state["samples"]
        if kl_ctl:
            kl_ctl.restore(beta, [h["kl_k1"] for h in result.history])
    begin = time.perf_counter() - (result.history[-1]["seconds"] if result.history else 0.0)
    bar = tqdm(range(start_iteration, cfg.iterations), desc="PPO-RLHF", disable=not progress or rank != 0,
               initial=start_iteration, total=cfg.iterations)
    for iteration in bar:
        share_cores()  # a fair share of the cores, re-checked every iteration (rlhf_lib/threads.py)
        for group in setup.opt.param_groups:  # anneal the learning rate to 0, or hold it
            group["lr"] = cfg.lr * group["scale"] * (1.0 - iteration / cfg.iterations if cfg.lr_schedule == "linear"
                                                     else 1.0)
        it = iteration_fn(setup, _prompts_for(iteration, n_prompts, rank, world, prompts), beta)
        figures = iteration_figures(it)
        if metrics is not None:
            figures.update(metrics(it.batch.texts))
        figures = _mean_over_processes(figures, accelerator)
        figures.update(iteration=iteration + 1, beta=beta, seconds=time.perf_counter() - begin,
                       episodes=(iteration + 1) * cfg.batch_size)
        result.history.append(figures)
        result.samples.append(it.batch.texts[:4])
        if kl_ctl:
            beta = kl_ctl.update(figures["kl_k1"], cfg.batch_size)
        bar.set_postfix(score=f"{figures['score']:.2f}", kl=f"{figures['kl_k1']:.2f}")
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, setup.model, setup.opt, rank, dict(
                iteration=iteration + 1, beta=beta, sampler=setup.sampler.get_state(),
                shuffler=setup.shuffler.get_state(), history=result.history, samples=result.samples,
                config=asdict(cfg)), accelerator)
        if on_iteration is not None and rank == 0:
            on_iteration(result)
    bar.close()
    result.seconds = time.perf_counter() - begin
    if accelerator and world > 1:  # gradients were averaged, so every process must hold the same weights
        model = setup.model
        checksum = torch.tensor([sum(float(p.double().sum()) for p in model.parameters())], device=accelerator.device)
        spread = accelerator.gather(checksum)
        result.history[-1]["weight_checksum_spread"] = float(spread.max() - spread.min())
    return result


def _mean_over_processes(values: dict, accelerator) -> dict:
    """The figures averaged over all processes (unchanged with one)."""
    if not accelerator or accelerator.num_processes == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=accelerator.device)
    t = accelerator.reduce(t, reduction="mean")
    return dict(zip(values, t.cpu().tolist()))


# ---- evaluation (the course's gold taste lives here, outside the trainer)


def review_metrics(texts: list[str]) -> dict:
    """The course's gold figures of a batch of reviews: share positive and mean sentiment by VADER, share
    grammatical. Pass as `train_rlhf(metrics=review_metrics)`; the trainer never optimises them."""
    from rlhf_lib.evaluate import POSITIVE_THRESHOLD, gold_sentiment
    from rlhf_lib.reviews import is_grammatical

    gold = gold_sentiment(texts)
    return dict(gold_positive=float((gold > POSITIVE_THRESHOLD).mean()), gold_sentiment=float(gold.mean()),
                grammatical=float(np.mean([is_grammatical(t) for t in texts])))


@torch.no_grad()
def evaluate_policy(policy, reference, tokenizer, reward_model=None, reward_tokenizer=None, n: int = 500,
                    seed: int = 1234, max_new_tokens: int = 32, temperature: float = 1.0, stop_at: str = "sentence",
                    starts: list[str] | None = None) -> dict:
    """Figures of n samples, one from each of `starts` in turn (default: the course prompts; [""] samples from
    the start of text): gold positive rate, grammatical rate, mean reward (if a reward model is given), the
    share that ended, and the KL to the reference per response (k1 mean, and the exact per-step KL summed
    along the sampled responses)."""
    from rlhf_lib.evaluate import text_report
    from rlhf_lib.reviews import PROMPTS
    from rlhf_lib.reward_model import score_texts

    starts = list(PROMPTS if starts is None else starts)
    if not starts:
        raise ValueError('starts is empty: give at least one start ("" is the start of text)')
    generator = torch.Generator().manual_seed(seed)
    texts, k1, exact, finished = [], [], [], []
    for start in range(0, n, 125):
        batch = [starts[i % len(starts)] for i in range(start, min(n, start + 125))]
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
