"""Direct preference optimisation: fit the policy to preferences without a reward model or sampling.

Notebook 08's objective, maximise E[r(x, y)] - beta KL(pi || pi_ref), has the closed-form optimum
pi*(y | x) = pi_ref(y | x) exp(r(x, y) / beta) / Z(x). Read backwards, every policy defines a reward,

    r(x, y) = beta log pi(y | x) / pi_ref(y | x) + beta log Z(x),

and in the Bradley-Terry probability of a pair only the difference of rewards appears, so Z(x) cancels.
With the log-ratios  h_c = log pi(y_c|x) - log pi_ref(y_c|x)  and  h_r  (chosen, rejected),
and the margin d = h_c - h_r, the losses are (one number per pair, averaged over the batch):

    "sigmoid"  (DPO)        -log sigmoid(beta d)
               with label_smoothing e > 0 (conservative DPO, cDPO: each label is wrong with probability e)
                            -(1 - e) log sigmoid(beta d) - e log sigmoid(-beta d)
    "robust"   (rDPO)       [-(1 - e) log sigmoid(beta d) + e log sigmoid(-beta d)] / (1 - 2e)
               an unbiased correction for labels flipped with probability e
    "ipo"      (IPO)        (d - 1 / (2 beta))^2, a squared loss around a target margin: it pulls a margin that
               overshoots the target back, where DPO's loss keeps pushing it out;
               d from log-probs averaged over each completion's tokens (see `dpo_loss`)

The implicit rewards beta * h_c and beta * h_r are what the policy "believes" of each completion.

A pair is encoded as lm.py's samples are: <|endoftext|> prompt (left-padded), then the completion
(right-padded), position ids from the mask. Shapes: B pairs, P prompt tokens, R completion tokens.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rlhf_lib.feedback import as_pairs
from rlhf_lib.lm import encode_prompts, logprobs_of
from rlhf_lib.runtime import check_count, check_positive, derive_seed
from rlhf_lib.threads import share_cores

LOSS_TYPES = ("sigmoid", "ipo", "robust")


# ---- log-probabilities of given completions


def encode_completions(tokenizer, prompts: list[str], completions: list[str], add_eos: bool = False):
    """(prompt_ids, prompt_mask) left-padded (B, P) and (completion_ids, completion_mask) right-padded (B, R),
    the layout of `lm.sample`'s output, so `lm.logprobs_of` scores them. add_eos appends end-of-text; an
    empty completion (the sampler ended at once) is scored as the end-of-text token alone."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    prompt_ids, prompt_mask = encode_prompts(tokenizer, list(prompts))
    eos = [tokenizer.eos_token_id]
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + (eos if add_eos else []) for c in completions]
    rows = [r or eos for r in rows]  # an empty completion is the model ending at once: the end-of-text token
    R = max(map(len, rows))
    completion_ids = torch.full((len(rows), R), tokenizer.pad_token_id, dtype=torch.long)
    completion_mask = torch.zeros(len(rows), R, dtype=torch.long)
    for i, r in enumerate(rows):
        completion_ids[i, : len(r)], completion_mask[i, : len(r)] = torch.tensor(r), 1
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def sequence_logps(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(completion | prompt) summed over the completion's tokens (B,), and the token counts (B,).
    `batch` is encode_completions' four tensors. Gradients flow unless called under torch.no_grad()."""
    logp = logprobs_of(model, batch, temperature=1.0)  # (B, R), 0 at pads
    n_tokens = batch[3].sum(-1).to(logp.device)  # (B,)
    return logp.sum(-1), n_tokens


def completion_logps(model, tokenizer, prompts, completions, add_eos: bool = False, batch_size: int = 64,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """sequence_logps of many (prompt, completion) pairs in batches, without gradients: (N,), (N,)."""
    logps, counts = [], []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            batch = encode_completions(tokenizer, prompts[i : i + batch_size], completions[i : i + batch_size], add_eos)
            lp, n = sequence_logps(model, batch)
            logps.append(lp.cpu())
            counts.append(n.cpu())
    return torch.cat(logps), torch.cat(counts)


# ---- the loss


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """(loss, chosen_rewards, rejected_rewards): the batch-mean loss of the module docstring and the implicit
    rewards beta * (logp - logp_ref) of each chosen and rejected completion (B,), detached.

    All four inputs are (B,) sequence log-probabilities. For "ipo" pass log-probabilities averaged over each
    completion's tokens (sum / token count): TRL 1.16 divides each log-ratio by the completion's length for
    IPO, and so does `train_dpo`; then beta means the same for short and long completions.
    label_smoothing is the probability that a label is flipped: cDPO (Mitchell 2023) for "sigmoid", rDPO
    (Chowdhury et al. 2024, TRL's "robust") for "robust". TRL 1.16's "sigmoid" ignores label_smoothing; here
    e = 0 gives exactly its loss."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    check_positive("beta", beta)
    e = float(label_smoothing)
    if not 0.0 <= e < 0.5:
        raise ValueError(f"label_smoothing (the probability that a label is flipped) must be in [0, 0.5), got {e!r}")
    if loss_type == "ipo" and e > 0:
        raise ValueError("label_smoothing applies to the 'sigmoid' and 'robust' losses, not to 'ipo'")
    h_chosen = policy_chosen_logps - ref_chosen_logps  # (B,) log-ratios
    h_rejected = policy_rejected_logps - ref_rejected_logps
    d = h_chosen - h_rejected  # (B,) the margin
    if loss_type == "sigmoid":
        losses = -(1 - e) * F.logsigmoid(beta * d) - e * F.logsigmoid(-beta * d)
    elif loss_type == "robust":
        losses = (-(1 - e) * F.logsigmoid(beta * d) + e * F.logsigmoid(-beta * d)) / (1 - 2 * e)
    else:  # ipo
        losses = (d - 1 / (2 * beta)) ** 2
    return losses.mean(), beta * h_chosen.detach(), beta * h_rejected.detach()


# ---- training


@dataclass
class DPOConfig:
    epochs: int = 2
    """passes over the preference pairs"""
    batch_size: int = 32
    """pairs per step (chosen and rejected go through the policy in one forward pass)"""
    lr: float = 2e-4
    """AdamW learning rate, linear warmup then linear decay to 0"""
    warmup: int = 10
    """warmup steps"""
    beta: float = 0.3
    """strength of the pull toward the reference (the KL coefficient of the objective DPO solves)"""
    loss_type: str = "sigmoid"
    """"sigmoid" (DPO; cDPO with label_smoothing), "robust" (rDPO) or "ipo\""""
    label_smoothing: float = 0.0
    """assumed probability that a label is flipped, in [0, 0.5) ("sigmoid" and "robust" only)"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    nll_coef: float = 0.0
    """weight of the chosen completions' negative log-likelihood per token, added to the loss (RPO, Pang et al.
    2024; in TRL 1.16 loss_type=["sigmoid", "sft"], loss_weights=[1, nll_coef]): it keeps probability on the
    labelled, fluent texts"""
    add_eos: bool = False
    """append end-of-text to each completion (whole reviews); the course's labels stop at the sentence's end"""
    heldout: float = 0.1
    """share of the pairs kept aside to measure preference accuracy (0: none)"""
    seed: int = 0
    """seeds the held-out split and the batch order"""

    def __post_init__(self):
        for name in ("epochs", "batch_size", "warmup"):
            check_count(name, getattr(self, name))
        for name in ("lr", "beta", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0.0 <= self.label_smoothing < 0.5):
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing!r}")
        if self.loss_type == "ipo" and self.label_smoothing > 0:
            raise ValueError("label_smoothing applies to the 'sigmoid' and 'robust' losses, not to 'ipo'")
        if not (isinstance(self.heldout, (int, float)) and 0.0 <= self.heldout < 1.0):
            raise ValueError(f"heldout must be a share in [0, 1), got {self.heldout!r}")
        check_count("seed", self.seed, minimum=0)
        if not (isinstance(self.nll_coef, (int, float)) and self.nll_coef >= 0):
            raise ValueError(f"nll_coef must be a number >= 0, got {self.nll_coef!r}")


@dataclass
class DPOResult:
    history: list[dict] = field(default_factory=list)
    """one dict of figures per step: loss (with nll_coef * nll), nll (the chosen completions' negative
    log-likelihood per token), accuracy (share of pairs whose chosen implicit reward is higher; a tie counts
    as wrong, as in TRL), margin, chosen and rejected implicit rewards"""
    heldout: list[dict] = field(default_factory=list)
    """figures on the held-out pairs, before training and after each epoch"""
    config: dict = field(default_factory=dict)
    """the DPOConfig as a dict"""
    seconds: float = 0.0

    def series(self, key: str) -> np.ndarray:
        return np.array([h[key] for h in self.history])


def _reference_logps(reference, tokenizer, pairs, cfg):
    """The frozen reference's log-probs of every chosen and rejected completion, computed once: (N,) each,
    and the token counts."""
    prompts = [p["prompt"] for p in pairs]
    ref_c, n_c = completion_logps(reference, tokenizer, prompts, [p["chosen"] for p in pairs], cfg.add_eos)
    ref_r, n_r = completion_logps(reference, tokenizer, prompts, [p["rejected"] for p in pairs], cfg.add_eos)
    return ref_c, ref_r, n_c, n_r


def _pair_step(policy, tokenizer, pairs, idx, ref, cfg, loss_fn=None):
    """Loss, implicit rewards and the chosen completions' NLL per token of the pairs `idx`: chosen and rejected
    in one forward pass. loss_fn (the notebook's own DPO loss, "sigmoid" only) replaces the library's loss; the
    implicit rewards stay its. The loss includes nll_coef * NLL."""
    batch = [pairs[i] for i in idx]
    prompts = [p["prompt"] for p in batch]
    enc = encode_completions(tokenizer, prompts + prompts,
                             [p["chosen"] for p in batch] + [p["rejected"] for p in batch], cfg.add_eos)
    logps, _ = sequence_logps(policy, enc)  # (2B,)
    logps = logps.cpu()
    ref_c, ref_r, n_c, n_r = (t[idx] for t in ref)
    pol_c, pol_r = logps[: len(idx)], logps[len(idx) :]
    if cfg.loss_type == "ipo":  # per-token averages, as TRL does for IPO
        pol_c, pol_r, ref_c, ref_r = pol_c / n_c, pol_r / n_r, ref_c / n_c, ref_r / n_r
    loss, r_c, r_r = dpo_loss(pol_c, pol_r, ref_c, ref_r, cfg.beta, cfg.loss_type, cfg.label_smoothing)
    if loss_fn is not None:
        loss = loss_fn(pol_c, pol_r, ref_c, ref_r, cfg.beta)
    nll = -logps[: len(idx)].sum() / n_c.sum()  # per chosen token of the batch, as TRL's "sft" loss
    if cfg.nll_coef:
        loss = loss + cfg.nll_coef * nll
    return loss, r_c, r_r, float(nll.detach())


@torch.no_grad()
def _evaluate_pairs(policy, tokenizer, pairs, idx, ref, cfg) -> dict:
    losses, margins, right = [], [], []
    for start in range(0, len(idx), 64):
        sub = idx[start : start + 64]
        loss, r_c, r_r, _ = _pair_step(policy, tokenizer, pairs, sub, ref, cfg)
        losses.append(float(loss) * len(sub))
        margins += (r_c - r_r).tolist()
        right += (r_c > r_r).tolist()
    return dict(loss=sum(losses) / len(idx), accuracy=float(np.mean(right)), margin=float(np.mean(margins)))


def train_dpo(policy, reference, tokenizer, pairs_or_records, cfg: DPOConfig | None = None,
              progress: bool = True, loss_fn=None) -> DPOResult:
    """Fine-tune `policy` in place with the DPO loss (cfg.loss_type) on preference pairs or records, held to
    the frozen `reference` (usually the same model before training; its log-probs are computed once).

    Dropout stays off, so at the first step the policy's log-probs equal the reference's (if it starts as a
    copy) and every implicit reward is 0. Returns per-step figures and held-out preference accuracy.
    loss_fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta) -> loss:
    your own DPO loss (notebook 10) in place of the library's; only with loss_type "sigmoid"."""
    from tqdm.auto import tqdm

    cfg = cfg or DPOConfig()
    if loss_fn is not None and cfg.loss_type != "sigmoid":
        raise ValueError(f"loss_fn replaces the DPO (\"sigmoid\") loss; loss_type is {cfg.loss_type!r}")
    pairs = as_pairs(pairs_or_records)
    split = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(pairs), generator=split).tolist()
    n_heldout = int(round(cfg.heldout * len(pairs)))
    heldout_idx, train_idx = order[:n_heldout], order[n_heldout:]
    if len(train_idx) < cfg.batch_size:
        raise ValueError(f"only {len(train_idx)} training pairs, fewer than batch_size ({cfg.batch_size})")
    policy.eval()  # no dropout: the log-ratios start at exactly 0
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    shuffler = torch.Generator().manual_seed(derive_seed(cfg.seed, "dpo batches"))
    ref = _reference_logps(reference, tokenizer, pairs, cfg)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = len(train_idx) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    result = DPOResult(config=asdict(cfg))
    start, step = time.perf_counter(), 0
    if heldout_idx:
        result.heldout.append(dict(epoch=0, **_evaluate_pairs(policy, tokenizer, pairs, heldout_idx, ref, cfg)))
    bar = tqdm(total=total, desc=f"DPO ({cfg.loss_type})", disable=not progress)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(train_idx), generator=shuffler).tolist()
        for b in range(steps_per_epoch):
            share_cores()
            idx = [train_idx[i] for i in perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            loss, r_c, r_r, nll = _pair_step(policy, tokenizer, pairs, idx, ref, cfg, loss_fn)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min((step + 1) / cfg.warmup, 1.0 - step / total)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
            step += 1
            result.history.append(dict(step=step, loss=loss.item(), nll=nll, accuracy=float((r_c > r_r).float().mean()),
                                       margin=float((r_c - r_r).mean()), chosen_reward=float(r_c.mean()),
                                       rejected_reward=float(r_r.mean()), seconds=time.perf_counter() - start))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{result.history[-1]['accuracy']:.0%}")
        if heldout_idx:
            result.heldout.append(dict(epoch=epoch + 1,
                                       **_evaluate_pairs(policy, tokenizer, pairs, heldout_idx, ref, cfg)))
    bar.close()
    policy.eval()
    result.seconds = time.perf_counter() - start
    return result


# ---- where did the probability go?


@torch.no_grad()
def where_the_mass_went(policy, reference, tokenizer, pairs_or_records, n_samples: int = 300, seed: int = 0,
                        add_eos: bool = False, max_new_tokens: int = 32, stop_at: str = "sentence") -> dict:
    """What DPO did to probabilities, beyond the pairs' margins. Per-token mean of log pi - log pi_ref on:
    the chosen completions ("chosen"), the rejected ones ("rejected"), and n_samples of the policy's own
    completions of the same prompts ("own_samples"); the total probability each model gives to the
    labelled completions of a prompt, averaged over prompts ("mass_policy", "mass_reference"); and the
    share of the policy's samples that are a labelled completion of their prompt ("covered")."""
    from rlhf_lib.lm import sample

    check_count("n_samples", n_samples)
    pairs = as_pairs(pairs_or_records)
    labelled: dict[str, set[str]] = {}
    for p in pairs:
        labelled.setdefault(p["prompt"], set()).update((p["chosen"], p["rejected"]))
    flat = [(x, y) for x, ys in labelled.items() for y in sorted(ys)]  # every labelled text once
    row = {xy: i for i, xy in enumerate(flat)}
    logp = {}
    for name, model in (("policy", policy), ("reference", reference)):
        logp[name], n_tokens = completion_logps(model, tokenizer, [x for x, _ in flat], [y for _, y in flat], add_eos)
    shift = {}
    for side in ("chosen", "rejected"):
        idx = torch.tensor([row[(p["prompt"], p[side])] for p in pairs])
        shift[side] = float(((logp["policy"][idx] - logp["reference"][idx]) / n_tokens[idx]).mean())
    mass = {}
    for name in ("policy", "reference"):
        per_prompt = {}
        for (x, _), prob in zip(flat, logp[name].exp().tolist()):
            per_prompt[x] = per_prompt.get(x, 0.0) + prob
        mass[name] = float(np.mean(list(per_prompt.values())))
    unique_prompts = sorted(labelled)
    s = sample(policy, tokenizer, [unique_prompts[i % len(unique_prompts)] for i in range(n_samples)], max_new_tokens,
               1.0, seed=seed, stop_at=stop_at)
    mask = s.response_mask.float()
    logp_ref = logprobs_of(reference, s)  # (B, R)
    own = float((((s.logp - logp_ref) * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean())
    covered = float(np.mean([r in labelled[x] for x, r in zip(s.prompts, s.responses)]))
    return dict(chosen=shift["chosen"], rejected=shift["rejected"], own_samples=own, mass_policy=mass["policy"],
                mass_reference=mass["reference"], covered=covered)
