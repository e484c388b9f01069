"""Silent-bug exercises: a trainer's update with one planted bug. It runs without an error and the trainer
still trains with it, badly; the learner finds the bug and fixes it in place. Each is registered as
`bug_<name>` beside the exercise whose reference it shares, and its check says only whether the bug is gone
(`hint` says where to look). The notebook shows the function below as it is, to be fixed there."""

from __future__ import annotations

import torch


def buggy_reinforce_update(policy, critic, optimizer, obs, actions, returns, use_baseline, normalize):
    log_probs = torch.log_softmax(policy(obs), dim=-1)
    logp = log_probs[:, actions]
    if use_baseline:
        values = critic(obs).squeeze(-1)
        value_loss = 0.5 * ((values - returns) ** 2).mean()
        weights = returns - values.detach()
    else:
        value_loss = torch.zeros(())
        weights = returns
    if normalize:
        weights = weights / (weights.std() + 1e-8)
    policy_loss = -(logp * weights).mean()
    optimizer.zero_grad()
    (policy_loss + value_loss).backward()
    optimizer.step()
    return policy_loss.item(), value_loss.item()



def buggy_ppo_update(actor, critic, optimizer, batch, cfg):
    params = list(actor.parameters()) + list(critic.parameters())
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(batch.obs)).chunk(cfg.minibatches):
            log_probs = torch.log_softmax(actor(batch.obs[idx]), dim=-1)  # (b, 2)
            logp = log_probs[torch.arange(len(idx)), batch.actions[idx]]  # (b,)
            adv = batch.advantages[idx]
            adv = (adv - adv.mean()) / torch.sqrt(((adv - adv.mean()) ** 2).mean() + 1e-8)
            ratio = torch.exp(batch.logp_old[idx] - logp)
            surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
            policy_loss = -surrogate.mean()
            values = critic(batch.obs[idx]).squeeze(-1)  # (b,)
            squared = (values - batch.returns[idx]) ** 2
            if cfg.value_clip_eps is not None:
                old = batch.values_old[idx]
                moved = old + torch.clamp(values - old, -cfg.value_clip_eps, cfg.value_clip_eps)
                squared = torch.maximum(squared, (moved - batch.returns[idx]) ** 2)
            entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
            loss = policy_loss + cfg.vf_coef * 0.5 * squared.mean() - cfg.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()


def buggy_reward_model_step(model, tokenizer, pairs, opt):
    from rlhf_lib.reward_model import encode, raw_rewards

    texts = [p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs]
    ids, mask = encode(tokenizer, texts)
    r = raw_rewards(model, ids.to(model.device), mask.to(model.device))
    r_chosen, r_rejected = r[0::2], r[1::2]
    loss = -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach(), r_chosen.detach(), r_rejected.detach()


def buggy_reference_logprobs(reference, batch, temperature):
    from rlhf_lib.lm import position_ids_from_mask

    prompt_ids, prompt_mask, response_ids, response_mask = batch.ids(next(reference.parameters()).device)
    ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P + R): the prompt, then the response
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    with torch.no_grad():
        logits = reference(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    P = prompt_ids.shape[1]
    log_probs = (logits[:, P:] / temperature).log_softmax(-1)  # (B, R, V)
    return log_probs.gather(-1, response_ids[..., None]).squeeze(-1).cpu() * batch.mask  # (B, R), 0 at pads
