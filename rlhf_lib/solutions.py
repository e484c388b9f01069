"""Solutions to the notebooks' exercises. Try first; `reveal("name")` prints one.

Each solution is written the plain way, with loops where the library uses
tensors, so that the checker's comparison with the library means something.
"""

from __future__ import annotations

import numpy as np
import torch

# ---- 00 welcome


def discounted_return(rewards, gamma):
    total = 0.0
    for t, r in enumerate(rewards):
        total += gamma**t * r
    return total


def softmax_with_temperature(logits, temperature):
    z = np.asarray(logits, dtype=float) / temperature
    z = z - z.max()  # subtracting the max changes nothing but avoids overflow
    p = np.exp(z)
    return p / p.sum()


# ---- 01 tabular RL


def bellman_backup(env, V, s, gamma):
    best = -np.inf
    for a in range(env.n_actions):
        q = 0.0
        for p, s_next, r, terminated in env.transitions(s, a):
            q += p * (r + (0.0 if terminated else gamma * V[s_next]))
        best = max(best, q)
    return best


def epsilon_greedy_probs(q_row, epsilon):
    q_row = np.asarray(q_row, dtype=float)
    n = len(q_row)
    best = [a for a in range(n) if q_row[a] == q_row.max()]
    probs = np.full(n, epsilon / n)
    for a in best:
        probs[a] += (1 - epsilon) / len(best)
    return probs


def q_learning_episode(env, Q, alpha, gamma, epsilon, rng):
    from rlhf_lib.tabular import epsilon_greedy

    s, _ = env.reset()
    total, steps = 0.0, 0
    while True:
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        if terminated:
            target = r  # the episode ended: no future to add
        else:
            best_next = max(Q[s_next, b] for b in range(env.n_actions))
            target = r + gamma * best_next
        Q[s, a] = Q[s, a] + alpha * (target - Q[s, a])
        total, steps = total + r, steps + 1
        if terminated or truncated:
            return total, steps
        s = s_next


def sarsa_episode(env, Q, alpha, gamma, epsilon, rng):
    from rlhf_lib.tabular import epsilon_greedy

    s, _ = env.reset()
    a = epsilon_greedy(Q[s], epsilon, rng)
    total, steps = 0.0, 0
    while True:
        s_next, r, terminated, truncated, _ = env.step(a)
        a_next = epsilon_greedy(Q[s_next], epsilon, rng)  # chosen before Q changes
        if terminated:
            target = r
        else:
            target = r + gamma * Q[s_next, a_next]  # the action we will really take
        Q[s, a] = Q[s, a] + alpha * (target - Q[s, a])
        total, steps = total + r, steps + 1
        if terminated or truncated:
            return total, steps
        s, a = s_next, a_next


# ---- 02 policy gradients


def grad_log_softmax(theta, a):
    theta = np.asarray(theta, dtype=float)
    pi = np.exp(theta - theta.max())
    pi = pi / pi.sum()
    onehot = np.zeros_like(theta)
    onehot[a] = 1.0
    return onehot - pi


def reward_to_go(rewards, gamma):
    out = []
    for t in range(len(rewards)):
        out.append(sum(gamma ** (k - t) * rewards[k] for k in range(t, len(rewards))))
    return np.array(out)


def reinforce_update(policy, critic, optimizer, obs, actions, returns, use_baseline, normalize):
    import torch

    log_probs = torch.log_softmax(policy(obs), dim=-1)  # (B, 2): log pi(. | s_t)
    logp = log_probs[torch.arange(len(actions)), actions]  # (B,): log pi(a_t | s_t)
    if use_baseline:
        values = critic(obs).squeeze(-1)  # (B,): V(s_t)
        value_loss = 0.5 * ((values - returns) ** 2).mean()
        weights = returns - values.detach()  # detach: the policy loss must not train the critic
    else:
        value_loss = torch.zeros(())
        weights = returns
    if normalize:
        weights = weights / (weights.std() + 1e-8)
    policy_loss = -(logp * weights).mean()  # minus: the optimizer descends, we want to climb
    optimizer.zero_grad()
    (policy_loss + value_loss).backward()
    optimizer.step()
    return policy_loss.item(), value_loss.item()


bug_reinforce_update = reinforce_update  # the silent bug fixed: one log-prob per sample, of its own action


# ---- 03 actor-critic and PPO


def gae_one_episode(rewards, values, gamma, lam):
    T = len(rewards)
    advantages = np.zeros(T)
    for t in range(T):
        for k in range(t, T):
            v_next = values[k + 1] if k + 1 < T else 0.0  # the episode ends after step T - 1
            delta = rewards[k] + gamma * v_next - values[k]
            advantages[t] += (gamma * lam) ** (k - t) * delta
    return advantages


def clipped_objective(ratio, advantage, eps):
    ratio, advantage = np.asarray(ratio, dtype=float), np.asarray(advantage, dtype=float)
    return np.minimum(ratio * advantage, np.clip(ratio, 1 - eps, 1 + eps) * advantage)


def ppo_update(actor, critic, optimizer, batch, cfg):
    import torch

    params = list(actor.parameters()) + list(critic.parameters())
    for _ in range(cfg.epochs):
        order = torch.randperm(len(batch.obs))  # a new shuffle every epoch
        for idx in order.chunk(cfg.minibatches):
            # the policy: the clipped surrogate on whitened advantages
            log_probs = torch.log_softmax(actor(batch.obs[idx]), dim=-1)  # (b, 2)
            logp = log_probs[torch.arange(len(idx)), batch.actions[idx]]  # (b,)
            adv = batch.advantages[idx]
            adv = (adv - adv.mean()) * torch.rsqrt(((adv - adv.mean()) ** 2).mean() + 1e-8)
            ratio = torch.exp(logp - batch.logp_old[idx])
            clipped_ratio = torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps)
            policy_loss = -torch.minimum(ratio * adv, clipped_ratio * adv).mean()
            # the critic: squared error, optionally not rewarded for moving far from the old values
            values = critic(batch.obs[idx]).squeeze(-1)  # (b,)
            squared = (values - batch.returns[idx]) ** 2
            if cfg.value_clip_eps is not None:
                old = batch.values_old[idx]
                moved = old + torch.clamp(values - old, -cfg.value_clip_eps, cfg.value_clip_eps)
                squared = torch.maximum(squared, (moved - batch.returns[idx]) ** 2)
            value_loss = 0.5 * squared.mean()
            entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
            loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()


bug_ppo_update = ppo_update  # the silent bug fixed: the ratio is the new policy over the old, exp(logp - logp_old)


# ---- 04 language models as policies


def sequence_logprob(token_logps, mask):
    total = 0.0
    for lp, m in zip(token_logps, mask):
        if m:
            total += lp
    return total


def k3_estimate(logp, logp_ref):
    out = []
    for lp, lq in zip(logp, logp_ref):
        ratio = np.exp(lq - lp)  # pi_ref(token) / pi(token)
        out.append(ratio - 1 - np.log(ratio))
    return np.array(out)


def broadcast_rewards(score, length):
    rewards = np.zeros(length)
    rewards[-1] = score  # the whole review is judged once, at its last token
    returns = np.zeros(length)
    running = 0.0
    for t in reversed(range(length)):  # gamma = 1: every token's return is the final score
        running = rewards[t] + running
        returns[t] = running
    return rewards, returns


def response_logprobs(logits, response_ids, response_mask):
    B, R = response_ids.shape
    P = logits.shape[1] - R  # prompt positions: left padding puts every response at column P
    logp = torch.zeros(B, R)
    for b in range(B):
        for j in range(R):
            if response_mask[b, j]:
                log_probs = logits[b, P + j - 1].float().log_softmax(-1)  # position P + j - 1 predicts token P + j
                logp[b, j] = log_probs[response_ids[b, j]]
    return logp


# ---- 05 supervised fine-tuning


def completion_labels(ids, prompt_length, pad_id):
    labels = []
    for t, token in enumerate(ids):
        if t < prompt_length or token == pad_id:
            labels.append(-100)  # context or padding: not a target
        else:
            labels.append(token)
    return labels


def sft_loss(logits, labels):
    logits = np.asarray(logits, dtype=float)
    total, count = 0.0, 0
    for row, label in zip(logits, labels):
        if label == -100:
            continue
        log_probs = row - row.max() - np.log(np.exp(row - row.max()).sum())  # log-softmax
        total -= log_probs[label]
        count += 1
    return total / count


# ---- 06 human feedback


def sft_step(model, tokenizer, batch, opt):
    from rlhf_lib.sft import sft_batch

    ids, mask, labels = sft_batch(tokenizer, batch)  # labels: -100 on the prompt and the padding
    logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                                             ignore_index=-100)  # position t predicts token t + 1
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def bradley_terry_prob(score_a, score_b, temperature):
    return 1.0 / (1.0 + np.exp(-(score_a - score_b) / temperature))


def agreement_rate(choices_x, choices_y):
    both = [(x, y) for x, y in zip(choices_x, choices_y) if x in ("a", "b") and y in ("a", "b")]
    return sum(x == y for x, y in both) / len(both)


# ---- 07 reward modeling


def label_into(path, annotator, pairs):
    from rlhf_lib.feedback import PreferenceRecord, append_record, read_records

    done = set()
    if path.exists():  # resume: what this annotator already judged
        done = {(r["prompt"], r["completion_a"], r["completion_b"]) for r in read_records(path, allow_empty=True)
                if r["annotator"] == annotator.name and "completion_a" in r}
    added = 0
    for prompt, a, b in pairs:
        if (prompt, a, b) in done:
            continue
        choice = annotator.compare(prompt, a, b)
        append_record(path, PreferenceRecord(prompt, a, b, choice, annotator.name))  # on disk before the next
        done.add((prompt, a, b))
        added += 1
    return added


def bt_loss(r_chosen, r_rejected):
    losses = [np.logaddexp(0.0, -(c - r)) for c, r in zip(r_chosen, r_rejected)]  # -log sigmoid(c - r), no overflow
    return float(np.mean(losses))


def last_real_index(mask):
    last = 0
    for t, m in enumerate(mask):
        if m:
            last = t
    return last


def reward_model_step(model, tokenizer, pairs, opt):
    from rlhf_lib.reward_model import encode, raw_rewards

    chosen = [p["prompt"] + p["chosen"] for p in pairs]
    rejected = [p["prompt"] + p["rejected"] for p in pairs]
    ids, mask = encode(tokenizer, chosen + rejected)  # one batch: chosen rows, then rejected rows
    r = raw_rewards(model, ids.to(model.device), mask.to(model.device))
    r_chosen, r_rejected = r[: len(pairs)], r[len(pairs) :]
    loss = -torch.nn.functional.logsigmoid(r_chosen - r_rejected).mean()  # Bradley-Terry
    opt.zero_grad()  # gradients add up unless cleared
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach(), r_chosen.detach(), r_rejected.detach()


bug_reward_model_step = reward_model_step  # the silent bug fixed: a pair's chosen and rejected rows, split as stacked


# ---- 08 PPO-RLHF


def kl_shaped_rewards(score, logp, logp_ref, mask, beta):
    rewards = torch.zeros(logp.shape)
    for i in range(len(score)):
        n = int(mask[i].sum())  # real tokens; the padding comes after them
        for t in range(n):
            rewards[i, t] = -beta * (logp[i, t] - logp_ref[i, t])  # the KL penalty on every token
        rewards[i, n - 1] += score[i]  # the reward model's score on the last one
    return rewards


def ppo_loss(logp, logp_old, advantages, values, values_old, returns, mask, clip_eps, vf_coef, value_clip_eps):
    def masked_mean(x):  # over the real tokens only: the padding must not dilute the mean
        return (x * mask).sum() / mask.sum()

    ratio = torch.exp(logp - logp_old)  # pi_new / pi_old on each sampled token
    surrogate = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = -masked_mean(surrogate)  # maximise the pessimistic surrogate
    error = (values - returns) ** 2
    if value_clip_eps is not None:  # the value may move at most value_clip_eps from where it was
        clipped = values_old + torch.clamp(values - values_old, -value_clip_eps, value_clip_eps)
        error = torch.maximum(error, (clipped - returns) ** 2)
    value_loss = 0.5 * masked_mean(error)
    return policy_loss + vf_coef * value_loss, policy_loss, value_loss


def adaptive_beta(beta, kl, target, n, horizon):
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + error * n / horizon)


def ppo_iteration(setup, prompts, beta):
    from rlhf_lib.rlhf import (
        Iteration,
        advantages_and_returns,
        ppo_update,
        reference_logprobs,
        rollout,
        score_responses,
        value_estimates,
    )

    cfg = setup.cfg
    batch = rollout(setup.model.lm, setup.tokenizer, prompts, cfg, setup.sampler)  # 1. sample, keep log-probs
    score = score_responses(setup.score_fn, batch, cfg.unfinished_penalty)  # 2. score them ...
    logp_ref = reference_logprobs(setup.reference, batch, cfg.temperature)  # ... ask the reference ...
    values = value_estimates(setup.model, batch, cfg.temperature)  # ... and the value head, before any update
    rewards = kl_rewards(score, batch.logp, logp_ref, batch.mask, beta)  # 3. per-token rewards (8.1)
    advantages, returns = advantages_and_returns(rewards, values, batch.mask, cfg.gamma, cfg.lam)  # 4. GAE
    stats = ppo_update(setup, batch, advantages, returns, values, loss_fn=loss)  # 5. clipped updates, your loss (8.2)
    return Iteration(batch, score, logp_ref, values, rewards, advantages, returns, stats)


def bug_reference_logprobs(reference, batch, temperature):
    from rlhf_lib.lm import position_ids_from_mask

    prompt_ids, prompt_mask, response_ids, response_mask = batch.ids(next(reference.parameters()).device)
    ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P + R): the prompt, then the response
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    with torch.no_grad():
        logits = reference(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    P = prompt_ids.shape[1]
    log_probs = (logits[:, P - 1 : -1] / temperature).log_softmax(-1)  # the fix: position t predicts token t + 1
    return log_probs.gather(-1, response_ids[..., None]).squeeze(-1).cpu() * batch.mask  # (B, R), 0 at pads


kl_rewards, loss = kl_shaped_rewards, ppo_loss  # the names notebook 08 gives exercises 8.1 and 8.2 once they pass


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    import torch.nn.functional as F

    h_chosen = policy_chosen_logps - ref_chosen_logps  # how much more likely than under the reference
    h_rejected = policy_rejected_logps - ref_rejected_logps
    return -F.logsigmoid(beta * (h_chosen - h_rejected)).mean()  # Bradley-Terry on the implicit rewards


def leave_one_out(rewards, k):
    r = rewards.view(-1, k)  # (G, k): one row per prompt
    baseline = (r.sum(-1, keepdim=True) - r) / (k - 1)  # the mean of the other k - 1 responses
    return (r - baseline).reshape(-1)


def best_of_n_expected(proxy, gold, n):
    import math

    order = np.argsort(proxy)  # lowest proxy first
    N = len(proxy)
    # the i-th lowest wins a random n-subset when the other n - 1 drawn are all below it
    p_win = np.array([math.comb(i - 1, n - 1) / math.comb(N, n) for i in range(1, N + 1)])
    return float(p_win @ np.asarray(gold, dtype=float)[order])


def fit_gao_rl(d, gold_gain):
    d, y = np.asarray(d, dtype=float), np.asarray(gold_gain, dtype=float)
    d_log_d = d * np.log(np.where(d > 0, d, 1.0))  # 0 at d = 0
    X = np.stack([d, -d_log_d], axis=1)  # R = alpha * d - beta * d log d
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    return np.array([alpha, beta])


# ---- 11 closing the loop


def pairs_from_samples(starts, a, b, finished_a, finished_b):
    pairs = []
    for start, x, y, done_x, done_y in zip(starts, a, b, finished_a, finished_b):
        if not (done_x and done_y):  # a review cut off at the length limit would be judged for that
            continue
        if x == y:  # nothing to prefer
            continue
        pairs.append((start, x, y))
    return pairs


def mix_old_and_new(old_groups, new_pairs, per_step):
    batches = [group for group in old_groups if len(group) > 0]  # replay every old batch that has a pair
    for i in range(0, len(new_pairs), per_step):
        batches.append(new_pairs[i : i + per_step])  # then the new pairs, per_step at a time
    return batches


# ---- 12 AI feedback


def plackett_luce_loss(scores, order):
    B, k = scores.shape
    total = torch.zeros(())
    for row in range(B):
        left = [int(i) for i in order[row]]  # best first
        for chosen in left[:-1]:  # the last choice is certain
            pool = scores[row, left]
            total = total + scores[row, chosen] - torch.logsumexp(pool, dim=0)  # log softmax of the pick
            left.remove(chosen)
    return -total / B


def swap_debias(forward, backward):
    turned = {"a": "b", "b": "a", "tie": "tie"}
    out = []
    for f, b in zip(forward, backward):
        back = turned[b]  # backward read B first: its "a" is completion B
        out.append(f if f == back else "tie")
    return out


def longer_preferred(forward, backward, longer):
    turned = {"a": "b", "b": "a", "tie": "tie"}
    total = 0.0
    for f, b, wanted in zip(forward, backward, longer):
        verdict = f if f == turned[b] else "tie"  # debiased as in swap_debias
        if verdict == "tie":
            total += 0.5  # half a preference either way
        elif verdict == wanted:
            total += 1.0
    return total / len(longer)
