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

