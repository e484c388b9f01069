"""Checkers for the notebooks' exercises, hints, and a way to reveal their solutions.

In a notebook:

    def reward_to_go(rewards, gamma):
        ...                                   # your code
    check("reward_to_go", reward_to_go)       # compares with the library on fixed test cases
    # hint("reward_to_go")                    # one or two nudges about the usual mistakes
    # reveal("reward_to_go")                  # prints a solution (rlhf_lib/solutions.py)

A checker never raises: it prints one verdict (what differs: the case, the entry,
expected and got) and returns a `Verdict`, true when the function is right. An
unfinished exercise does not stop the rest of the notebook.

Build-it exercises are the core of a notebook's training loop (one Q-learning
episode, one REINFORCE update, one PPO update). Their reference IS the library
function with the same signature, so the notebook's real training run can use
the learner's code:

    episode_fn = use_or_library("q_learning_episode", q_learning_episode)
    q_learning(env, episode_fn=episode_fn)    # the learner's code if it passed, else the library's
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch

from rlhf_lib import solutions
from rlhf_lib.cartpole import one_thread, ppo_update
from rlhf_lib.policy_gradient import reinforce_update
from rlhf_lib.runtime import derive_seed
from rlhf_lib.tabular import q_learning_episode, sarsa_episode


@dataclass
class Exercise:
    notebook: str
    """the notebook that poses it"""
    reference: Callable
    """the library's answer, called with the same arguments"""
    cases: Callable
    """rng -> list of test cases: argument tuples, or dicts of keyword arguments"""
    hint: str
    """one or two nudges naming the usual mistakes, one a line"""
    run: Callable | None = None
    """(fn, *args) -> what is compared; None compares fn(*args) itself. Build-it exercises run a trainer."""
    atol: float = 1e-6
    """absolute tolerance of the comparison (relative tolerance 1e-5)"""
    compare: Callable | None = None
    """fn -> None if the learner's code does what the library's does inside a run, else what differs"""


class Verdict:
    """What `check` returns: true when the function passed. `message` is the verdict `check` printed.

    Jupyter displays nothing for it (the verdict was printed once already), so a check cell shows one
    message and no stray `True`/`False` under it.
    """

    def __init__(self, name: str, passed: bool, message: str):
        self.name, self.passed, self.message = name, passed, message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<check {self.name}: {'correct' if self.passed else 'not yet'}>"

    def _ipython_display_(self) -> None:
        pass  # already printed by check


def _ref_discounted_return(rewards, gamma):
    from rlhf_lib.policy_gradient import reward_to_go

    return reward_to_go(rewards, gamma)[0]


def _ref_softmax_with_temperature(logits, temperature):
    return torch.softmax(torch.tensor(logits) / temperature, -1).numpy()


def _ref_bellman_backup(env, V, s, gamma):
    from rlhf_lib.tabular import q_from_v

    return q_from_v(env, V, gamma)[s].max()


def _ref_epsilon_greedy_probs(q_row, epsilon):
    from rlhf_lib.tabular import epsilon_greedy_probs

    return epsilon_greedy_probs(np.asarray(q_row), epsilon)


def _ref_grad_log_softmax(theta, a):
    theta_t = torch.tensor(theta, requires_grad=True)
    theta_t.log_softmax(-1)[a].backward()
    return theta_t.grad.numpy()


def _ref_reward_to_go(rewards, gamma):
    from rlhf_lib.policy_gradient import reward_to_go

    return reward_to_go(rewards, gamma)


def _ref_gae_one_episode(rewards, values, gamma, lam):
    from rlhf_lib.ppo import gae

    dones = torch.zeros(len(rewards))
    dones[-1] = 1.0
    return gae(torch.tensor(rewards), torch.tensor(values), dones, gamma, lam)[0].numpy()


def _ref_clipped_objective(ratio, advantage, eps):
    from rlhf_lib.ppo import clipped_surrogate

    r, a = torch.tensor(ratio), torch.tensor(advantage)
    return np.array([-float(clipped_surrogate(torch.log(r[i : i + 1]), torch.zeros(1), a[i : i + 1], eps)) for i in range(len(r))])


def _ref_sequence_logprob(token_logps, mask):
    return float((torch.tensor(token_logps, dtype=torch.float64) * torch.tensor(mask)).sum())


def _ref_k3_estimate(logp, logp_ref):
    from rlhf_lib.lm import kl_estimates

    return kl_estimates(torch.tensor(logp), torch.tensor(logp_ref))["k3"].numpy()


def _ref_hindsight_rewards(score, length):
    from rlhf_lib.ppo import discounted_returns

    rewards = torch.zeros(length)
    rewards[-1] = score
    return np.stack([rewards.numpy(), discounted_returns(rewards, torch.zeros(length), 1.0).numpy()])


def _ref_completion_labels(ids, prompt_length, pad_id):
    ids_t = torch.tensor(ids)
    keep = (torch.arange(len(ids)) >= prompt_length) & (ids_t != pad_id)
    return torch.where(keep, ids_t, torch.full_like(ids_t, -100)).numpy()


def _ref_sft_loss(logits, labels):
    return float(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels), ignore_index=-100))


def _sft_loss_cases(rng):
    cases = []
    for T, V in ((4, 5), (7, 3)):
        labels = rng.integers(0, V, size=T)
        labels[: T // 2] = -100  # the prompt
        cases.append((rng.normal(size=(T, V)).round(3).tolist(), labels.tolist()))
    return cases


def _ref_bradley_terry_prob(score_a, score_b, temperature):
    from rlhf_lib.feedback import sigmoid

    return sigmoid((score_a - score_b) / temperature)


def _ref_agreement_rate(choices_x, choices_y):
    both = np.isin(choices_x, ["a", "b"]) & np.isin(choices_y, ["a", "b"])
    return float((np.asarray(choices_x)[both] == np.asarray(choices_y)[both]).mean())


def _ref_bt_loss(r_chosen, r_rejected):
    from rlhf_lib.reward_model import bradley_terry_loss

    return float(bradley_terry_loss(torch.tensor(r_chosen), torch.tensor(r_rejected)))


def _ref_last_real_index(mask):
    from rlhf_lib.reward_model import last_token_index

    return int(last_token_index(torch.tensor([mask]))[0])


def _gridworld_cases(rng):
    from rlhf_lib.envs import GridWorld

    cases = []
    for layout, slip in (("classic", 0.0), ("classic", 0.2), ("maze", 0.1)):
        env = GridWorld(layout, slip=slip)
        V = rng.normal(size=env.n_states)
        for s in range(env.n_states):
            if not env.is_wall(s) and not env.is_terminal(s):
                cases.append((env, V, s, float(rng.uniform(0.5, 1.0))))
    return cases


def _ref_kl_shaped_rewards(score, logp, logp_ref, mask, beta):
    from rlhf_lib.rlhf import kl_shaped_rewards

    return kl_shaped_rewards(score, logp, logp_ref, mask, beta)


def _kl_shaped_rewards_cases(rng):
    cases = []
    for lengths, beta in (([1], 0.0), ([4, 2, 6], 0.2), ([3, 3, 1, 5], 0.05)):
        R = max(lengths)
        mask = torch.tensor([[1.0] * n + [0.0] * (R - n) for n in lengths])
        logp = torch.tensor(rng.uniform(-4, 0, size=(len(lengths), R)), dtype=torch.float32) * mask
        logp_ref = torch.tensor(rng.uniform(-4, 0, size=(len(lengths), R)), dtype=torch.float32) * mask
        cases.append((torch.tensor(rng.normal(size=len(lengths)), dtype=torch.float32), logp, logp_ref, mask, beta))
    return cases


def _ref_response_logprobs(logits, response_ids, response_mask):
    from rlhf_lib.lm import response_logprobs

    return response_logprobs(logits, response_ids, response_mask)


def _compare_response_logprobs(fn):
    from rlhf_lib.lm import compare_response_logprobs

    return compare_response_logprobs(fn)


def _ref_reward_model_step(model, tokenizer, pairs, opt):
    from rlhf_lib.reward_model import reward_model_step

    return reward_model_step(model, tokenizer, pairs, opt)


def _compare_reward_model_step(fn):
    from rlhf_lib.reward_model import compare_reward_model_step

    return compare_reward_model_step(fn)


def _ref_sft_step(model, tokenizer, batch, opt):
    from rlhf_lib.sft import sft_step

    return sft_step(model, tokenizer, batch, opt)


def _compare_sft_step(fn):
    from rlhf_lib.sft import compare_sft_step

    return compare_sft_step(fn)


def _ref_label_into(path, annotator, pairs):
    from rlhf_lib.feedback import label_into

    return label_into(path, annotator, pairs)


def _compare_label_into(fn):
    from rlhf_lib.feedback import compare_label_into

    return compare_label_into(fn)


def _ref_ppo_iteration(setup, prompts, beta):
    from rlhf_lib.rlhf import ppo_iteration

    return ppo_iteration(setup, prompts, beta)


def _compare_ppo_iteration(fn):
    from rlhf_lib.rlhf import compare_ppo_iteration

    return compare_ppo_iteration(fn)


def _ref_adaptive_beta(beta, kl, target, n, horizon):
    from rlhf_lib.rlhf import AdaptiveKLController

    return AdaptiveKLController(beta, target, horizon).update(kl, n)


def _run_td_control(episode_fn, layout, slip, episodes, alpha, gamma, epsilon, seed):
    from rlhf_lib.envs import GridWorld
    from rlhf_lib.tabular import td_control

    result = td_control(GridWorld(layout, slip=slip), episode_fn, episodes, alpha, gamma, epsilon, seed)
    return dict(Q=result.Q, returns=result.returns, lengths=result.lengths)


def _td_control_cases(rng):
    return [
        dict(layout="classic", slip=0.0, episodes=1, alpha=0.5, gamma=0.9, epsilon=0.5, seed=0),
        dict(layout="cliff", slip=0.0, episodes=30, alpha=0.5, gamma=1.0, epsilon=0.1, seed=1),
        dict(layout="classic", slip=0.2, episodes=60, alpha=0.3, gamma=0.9, epsilon=0.3, seed=2),
        dict(layout="maze", slip=0.1, episodes=10, alpha=0.5, gamma=0.95, epsilon=1.0, seed=3),  # time limits
    ]


def _small_nets(seed: int):
    from rlhf_lib.cartpole import mlp

    torch.manual_seed(seed)
    return mlp(4, 2, 16, 0.5), mlp(4, 1, 16, 1.0)


def _make_optimizer(kind: str, params):
    params = list(params)
    return torch.optim.SGD(params, lr=0.05) if kind == "sgd" else torch.optim.Adam(params, lr=1e-2, eps=1e-5)


def _weights(**nets) -> dict:
    return {f"{name}.{key}": p.detach().numpy().copy() for name, net in nets.items() for key, p in net.named_parameters()}


def _run_reinforce_update(update_fn, seed, batch, use_baseline, normalize, optimizer):
    policy, critic = _small_nets(seed)
    opt = _make_optimizer(optimizer, list(policy.parameters()) + list(critic.parameters()))
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, 4, generator=g)  # (B, 4)
    actions = torch.randint(0, 2, (batch,), generator=g)  # (B,)
    returns = 30 * torch.rand(batch, generator=g)  # (B,)
    losses = []
    for _ in range(2):  # two steps: a gradient left over from the first shows in the second
        out = update_fn(policy, critic, opt, obs, actions, returns, use_baseline, normalize)
        losses.append([float(x) for x in out])
    return {"losses": np.array(losses), **_weights(policy=policy, critic=critic)}


def _reinforce_update_cases(rng):
    return [
        dict(seed=0, batch=6, use_baseline=False, normalize=False, optimizer="sgd"),
        dict(seed=1, batch=20, use_baseline=True, normalize=False, optimizer="sgd"),
        dict(seed=2, batch=20, use_baseline=True, normalize=True, optimizer="sgd"),
        dict(seed=3, batch=50, use_baseline=True, normalize=False, optimizer="adam"),
    ]


def _run_ppo_update(update_fn, seed, batch, optimizer, **settings):
    from rlhf_lib.cartpole import Batch, PPOConfig

    cfg = PPOConfig(**settings)
    actor, critic = _small_nets(seed)
    opt = _make_optimizer(optimizer, list(actor.parameters()) + list(critic.parameters()))
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, 4, generator=g)  # (B, 4)
    actions = torch.randint(0, 2, (batch,), generator=g)  # (B,)
    with torch.no_grad():
        logp = actor(obs).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)  # (B,)
        values_old = critic(obs).squeeze(-1) + 0.3 * torch.randn(batch, generator=g)  # (B,)
    logp_old = logp + 0.15 * torch.randn(batch, generator=g)  # ratios away from 1: some start clipped
    advantages = 1.0 + 2.0 * torch.randn(batch, generator=g)
    data = Batch(obs, actions, logp_old, values_old, advantages, advantages + values_old)
    torch.manual_seed(derive_seed(seed, "ppo update check"))  # the update's shuffles
    update_fn(actor, critic, opt, data, cfg)
    return _weights(actor=actor, critic=critic)


def _ppo_update_cases(rng):
    return [
        dict(seed=0, batch=32, optimizer="sgd", epochs=1, minibatches=1, max_grad_norm=100.0),
        dict(seed=1, batch=64, optimizer="sgd", epochs=2, minibatches=4, ent_coef=0.05, max_grad_norm=0.5),
        dict(seed=2, batch=64, optimizer="sgd", epochs=3, minibatches=2, value_clip_eps=0.1, vf_coef=0.25,
             clip_eps=0.1, max_grad_norm=100.0),
        dict(seed=3, batch=64, optimizer="adam", epochs=2, minibatches=4),
    ]


# ---- notebook 10


def _ref_dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    from rlhf_lib.dpo import dpo_loss

    return dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)[0]


def _dpo_loss_cases(rng):
    cases = []
    for B, beta in ((1, 0.1), (4, 0.3), (16, 1.0)):
        logps = [torch.tensor(rng.normal(-12.0, 3.0, size=B), dtype=torch.float64) for _ in range(4)]
        cases.append((*logps, beta))
    return cases


def _run_dpo_loss(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """The loss and its gradient with respect to the policy's log-probs: training needs both."""
    pc, pr = (t.clone().requires_grad_(True) for t in (policy_chosen_logps, policy_rejected_logps))
    loss = fn(pc, pr, ref_chosen_logps, ref_rejected_logps, beta)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("return a torch tensor computed from the inputs (no .item(), no numpy): training "
                        "needs its gradient")
    loss.backward()
    return dict(loss=float(loss), grad_chosen=pc.grad.numpy(), grad_rejected=pr.grad.numpy())


def _ref_leave_one_out(rewards, k):
    from rlhf_lib.group_advantages import rloo_advantages

    return rloo_advantages(rewards, k)


def _leave_one_out_cases(rng):
    equal = torch.tensor([0.5, 0.5, 0.5, 1.0, -1.0, 0.0])  # a group with nothing to learn, then a mixed one
    return [(torch.tensor(rng.normal(size=8).round(3), dtype=torch.float32), k) for k in (2, 4)] + [(equal, 3)]


def _ref_best_of_n_expected(proxy, gold, n):
    from rlhf_lib.bon import best_of_n_expected

    return best_of_n_expected(np.asarray(proxy), np.asarray(gold), n)


def _best_of_n_cases(rng):
    """Pools without ties in the proxy (the sort order is then the only order), N from 1 to 40."""
    cases = []
    for N, ns in ((1, (1,)), (5, (1, 2, 5)), (12, (1, 3, 7, 12)), (40, (2, 10, 39))):
        proxy, gold = rng.normal(size=N).round(4), rng.normal(size=N).round(4)
        while len(set(proxy)) < N:
            proxy = rng.normal(size=N).round(4)
        cases += [(list(proxy), list(gold), n) for n in ns]
    return cases


def _ref_fit_gao_rl(d, gold_gain):
    from rlhf_lib.bon import fit_gao

    fit = fit_gao(d, gold_gain, "rl")
    return np.array([fit["alpha"], fit["beta"]])


def _fit_gao_rl_cases(rng):
    cases = []
    for alpha, beta, K in ((1.0, 0.5, 6), (0.3, 0.4, 12), (2.0, -0.1, 20)):
        d = np.sort(rng.uniform(0.05, 4.0, size=K))
        noise = rng.normal(scale=0.02, size=K)
        cases.append((list(np.concatenate([[0.0], d])),
                      list(np.concatenate([[0.0], d * (alpha - beta * np.log(d)) + noise]))))
    return cases


def _run_tensor(fn, *args):
    return np.asarray(torch.as_tensor(fn(*args), dtype=torch.float32))


EXERCISES = {
    "discounted_return": Exercise("00", _ref_discounted_return,
        lambda rng: [(list(rng.normal(size=n)), g) for n in (1, 3, 10) for g in (0.0, 0.5, 0.99, 1.0)],
        "The first reward is not discounted: its weight is gamma**0 = 1, not gamma.\n"
        "With gamma = 0 only the first reward counts (Python gives 0.0**0 == 1, as it should)."),
    "softmax_with_temperature": Exercise("00", _ref_softmax_with_temperature,
        lambda rng: [(list(rng.normal(size=5) * 3), t) for t in (0.1, 0.7, 1.0, 2.0)] + [([1000.0, 999.0], 1.0)],
        "Divide the logits by the temperature (do not multiply): a low temperature makes the largest logit win.\n"
        "Subtract the largest logit before exp, or exp(1000) overflows to inf and you get nan."),
    "bellman_backup": Exercise("01", _ref_bellman_backup, _gridworld_cases,
        "Sum over ALL outcomes of an action, each weighted by its probability, then take the max over actions.\n"
        "A step that ends the episode (terminated) adds no gamma * V[s_next]: nothing follows it."),
    "epsilon_greedy_probs": Exercise("01", _ref_epsilon_greedy_probs,
        lambda rng: [(list(rng.integers(0, 3, size=4).astype(float)), e) for e in (0.0, 0.1, 0.5, 1.0) for _ in range(3)],
        "Every action, the best ones included, gets epsilon / n from the random branch.\n"
        "The greedy share 1 - epsilon is split equally between ALL tied best actions, not given to argmax's one."),
    "q_learning_episode": Exercise("01", q_learning_episode, _td_control_cases,
        "Pick each action with epsilon_greedy(Q[s], epsilon, rng) just before its step (the checker replays the "
        "same random numbers), and move s to s' after the update.\n"
        "Bootstrap from max_a' Q(s', a') of the state you arrived in, not of the state you left.\n"
        "Only `terminated` drops the future (target = r); a time limit (`truncated`) ends the loop but the target "
        "keeps gamma * max Q(s'). (Forgetting the flag hides here, as Q of an end state stays 0; not elsewhere.)",
        run=_run_td_control),
    "sarsa_episode": Exercise("01", sarsa_episode, _td_control_cases,
        "Pick the first action before the loop; after each step pick a' = epsilon_greedy(Q[s'], epsilon, rng) "
        "BEFORE you update Q(s, a).\n"
        "The target is r + gamma * Q(s', a') with that a' (not the max), and then s, a = s', a'.\n"
        "As in Q-learning, only `terminated` drops the future from the target.",
        run=_run_td_control),
    "grad_log_softmax": Exercise("02", _ref_grad_log_softmax,
        lambda rng: [(list(rng.normal(size=4)), int(a)) for a in range(4)],
        "log pi(a) = theta_a - log sum_b exp(theta_b); differentiate each term by theta_j.\n"
        "Treat j = a and j != a separately; the second term gives the same expression for every j."),
    "reward_to_go": Exercise("02", _ref_reward_to_go,
        lambda rng: [(list(rng.normal(size=n)), g) for n in (1, 5, 20) for g in (0.0, 0.9, 1.0)],
        "G_t looks forward: rewards from t to the end, not the rewards collected so far.\n"
        "Walking the list backwards with one running total avoids a double loop; after the last step it is 0."),
    "reinforce_update": Exercise("02", reinforce_update, _reinforce_update_cases,
        "log pi(a_t | s_t): log_softmax of the policy's logits, then pick each row's action (gather), not the max.\n"
        "Detach the baseline in the weights (G - V.detach()): the policy loss must not train the critic; "
        "the critic learns from its own 0.5 * mean((V - G)^2).\n"
        "The loss is -mean(logp * weights) (minus: the optimizer descends); zero_grad, backward, step, in that "
        "order; return the two losses as floats.",
        run=_run_reinforce_update, atol=1e-5),
    "gae_one_episode": Exercise("03", _ref_gae_one_episode,
        lambda rng: [(list(rng.normal(size=n)), list(rng.normal(size=n)), g, l)
                     for n in (1, 4, 12) for g, l in ((0.99, 0.95), (1.0, 1.0), (0.9, 0.0))],
        "delta_t = r_t + gamma * V(s_{t+1}) - V(s_t), with V = 0 after the last step (the episode ended).\n"
        "The weight of delta_{t+k} is (gamma * lam)**k: lambda and gamma both, not gamma alone."),
    "clipped_objective": Exercise("03", _ref_clipped_objective,
        lambda rng: [(list(rng.uniform(0.5, 1.5, size=8)), list(rng.normal(size=8)), e) for e in (0.1, 0.2)],
        "Clip the ratio, not the product: clip(rho, 1 - eps, 1 + eps) * A.\n"
        "Take the min of the two terms (the pessimistic one), also when A < 0."),
    "ppo_update": Exercise("03", ppo_update, _ppo_update_cases,
        "Shuffle once per epoch with torch.randperm(len(batch.obs)) and split with .chunk(cfg.minibatches) "
        "(the checker replays the same shuffles); whiten the advantages of each minibatch.\n"
        "The ratio is exp(logp - batch.logp_old[idx]); the loss is clipped surrogate + vf_coef * value loss "
        "- ent_coef * entropy (a bonus: minus).\n"
        "zero_grad, backward, clip the gradient norm of actor AND critic parameters, then step.",
        run=_run_ppo_update, atol=1e-5),
    "sequence_logprob": Exercise("04", _ref_sequence_logprob,
        lambda rng: [(rng.uniform(-6, 0, size=n).round(3).tolist(), [1] * k + [0] * (n - k)) for n, k in ((5, 5), (8, 3), (6, 1))],
        "Log-probs add up (probabilities multiply); sum, do not average.\n"
        "Only tokens with mask 1 count: dropping the mask adds the padding's log-probs."),
    "k3_estimate": Exercise("04", _ref_k3_estimate,
        lambda rng: [(rng.uniform(-5, 0, size=6).round(3).tolist(), rng.uniform(-5, 0, size=6).round(3).tolist()) for _ in range(3)],
        "The ratio is rho = pi_ref / pi = exp(logp_ref - logp) (the samples come from pi), not its inverse.\n"
        "k3 is never negative for any token: a quick test of your sign."),
    "hindsight_rewards": Exercise("04", _ref_hindsight_rewards,
        lambda rng: [(float(rng.uniform(-1, 1)), n) for n in (1, 4, 9)],
        "The score is paid once, at the LAST token; every other token's reward is 0.\n"
        "With gamma = 1 the return of every token is the sum of the rewards from it onward: the score itself."),
    "completion_labels": Exercise("05", _ref_completion_labels,
        lambda rng: [(rng.integers(2, 50, size=n).tolist() + [1] * pad, p, 1) for n, p, pad in ((6, 2, 0), (9, 4, 3), (3, 1, 1))],
        "Positions before prompt_length are context: label -100, so the loss ignores them.\n"
        "Padding is not a target either: a pad_id token gets -100 too."),
    "sft_loss": Exercise("05", _ref_sft_loss, _sft_loss_cases,
        "Cross-entropy of one position is -log_softmax(logits)[label]; subtract the max before exp.\n"
        "Average over the positions whose label is not -100 only: divide by their count, not by the length."),
    "sft_step": Exercise("05", _ref_sft_step, lambda rng: [],
        "sft_batch(tokenizer, batch) gives ids, mask and labels; the logits at position t predict the token at\n"
        "t + 1: drop the last position's logits and the first label. Cross-entropy with ignore_index=-100.\n"
        "Then zero the gradients, backward, clip the norm to 1.0, step; return loss.item().",
        compare=_compare_sft_step),
    "bradley_terry_prob": Exercise("06", _ref_bradley_terry_prob,
        lambda rng: [(float(a), float(b), t) for a, b in rng.uniform(-1, 1, size=(3, 2)) for t in (0.1, 1.0)],
        "Divide the DIFFERENCE of the scores by the temperature, not each score on its own.\n"
        "Check the sign: a higher score_a must give a probability above 0.5."),
    "agreement_rate": Exercise("06", _ref_agreement_rate,
        lambda rng: [(rng.choice(["a", "b", "tie", "skip"], size=20, p=[.4, .4, .1, .1]).tolist(),
                      rng.choice(["a", "b", "tie"], size=20, p=[.45, .45, .1]).tolist()) for _ in range(3)],
        "Count only the pairs where BOTH annotators chose 'a' or 'b'; ties and skips drop out.\n"
        "Divide by the number of such pairs, not by the number of all pairs."),
    "label_into": Exercise("06", _ref_label_into, lambda rng: [],
        "Read the file first (read_records(path, allow_empty=True) if it exists) and remember which\n"
        "(prompt, a, b) this annotator already judged; skip those. For each new pair: PreferenceRecord(prompt,\n"
        "a, b, annotator.compare(prompt, a, b), annotator.name), then append_record at once; count them.",
        compare=_compare_label_into),
    "bt_loss": Exercise("07", _ref_bt_loss,
        lambda rng: [(rng.normal(size=n).round(3).tolist(), rng.normal(size=n).round(3).tolist()) for n in (1, 5, 20)],
        "Chosen first in the difference, and mind the minus: the loss falls as chosen scores above rejected.\n"
        "Average over the pairs, do not sum; np.log1p keeps the small values exact."),
    "last_real_index": Exercise("07", _ref_last_real_index,
        lambda rng: [([0, 0, 1, 1, 1], ), ([1, 1, 1, 0, 0], ), ([1, 0, 0, 0], ), ([0, 0, 0, 1], )],
        "You want a position, not a count: with left padding, sum(mask) - 1 is not the last real index.\n"
        "Walk the mask and remember the last t where it is 1."),
    "response_logprobs": Exercise("04", _ref_response_logprobs, lambda rng: [],
        "The logits at position t predict the token at t + 1: the first response token is predicted by the LAST\n"
        "prompt position, so the slice starts one before the response and ends one before the end.\n"
        "log_softmax over the vocabulary, then gather the response ids; padding gets log-prob 0 (the mask).",
        compare=_compare_response_logprobs),
    "reward_model_step": Exercise("07", _ref_reward_model_step, lambda rng: [],
        "Score chosen and rejected texts (prompt + completion) in ONE batch, chosen rows first, then split.\n"
        "Clear the old gradients before backward, and clip the gradient norm to 1.0 before the step.\n"
        "Return the loss and both rewards detached: they are figures to log, not part of the graph.",
        compare=_compare_reward_model_step),
    "kl_shaped_rewards": Exercise("08", _ref_kl_shaped_rewards, _kl_shaped_rewards_cases,
        "Every real token pays the KL penalty -beta * (logp - logp_ref): a penalty, so mind the sign, and the\n"
        "padding (mask 0) pays nothing. The score goes on the LAST real token of each row only, on top of its\n"
        "penalty: responses are right-padded, so find that index from the mask."),
    "ppo_iteration": Exercise("08", _ref_ppo_iteration, lambda rng: [],
        "Follow the loop's order: rollout, scores, reference log-probs (keep_logits=True) and old values,\n"
        "KL-shaped rewards (+ sentence_shaping(...) if cfg.sentence_rewards), advantages (GAE, then whitening),\n"
        "ppo_update(..., logits_ref). Use the batch's mask everywhere, and the current beta, not cfg.kl_coef.",
        compare=_compare_ppo_iteration),
    "adaptive_beta": Exercise("08", _ref_adaptive_beta,
        lambda rng: [(0.2, kl, 3.0, 64, 2000) for kl in (0.5, 2.9, 3.0, 3.3, 12.0)] + [(0.05, 1.0, 6.0, 512, 10_000)],
        "Clip the relative error of the KL to [-0.2, 0.2] BEFORE you scale it.\n"
        "The step grows with the responses in this batch (n), shrinks with the horizon; not one response."),
    "dpo_loss": Exercise("10", _ref_dpo_loss, _dpo_loss_cases,
        "Log-ratios first: policy minus reference, for chosen and for rejected; then their difference, times beta.\n"
        "-log sigmoid(x) is F.logsigmoid(x) with a minus (stable for large |x|); average over the pairs.",
        run=_run_dpo_loss),
    "best_of_n_expected": Exercise("09", _ref_best_of_n_expected, _best_of_n_cases,
        "Sort the pool by proxy. The i-th lowest (i = 1..N) wins when it is drawn and the other n - 1 drawn are\n"
        "all below it: C(i - 1, n - 1) subsets out of C(N, n). math.comb(a, b) is 0 when b > a, as it should be."),
    "fit_gao_rl": Exercise("09", _ref_fit_gao_rl, _fit_gao_rl_cases,
        "R(d) = alpha * d - beta * (d log d) is linear in (alpha, beta): two columns, d and -d log d.\n"
        "d log d is 0 at d = 0 (its limit), not nan: np.log(0) is -inf. Then np.linalg.lstsq."),
    "leave_one_out": Exercise("10", _ref_leave_one_out, _leave_one_out_cases,
        "rewards.view(-1, k) puts each prompt's k responses in one row; the baseline of response i is the mean\n"
        "of the OTHER k - 1 in its row: (row sum - r_i) / (k - 1). Return a flat (N,) tensor again.",
        run=_run_tensor),
}


def _exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; known: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def _call(ex: Exercise, fn: Callable, case):
    args, kwargs = ((), case) if isinstance(case, dict) else (case, {})
    if ex.run is None:
        return fn(*args, **kwargs)
    # build-it exercises train tiny networks, seeding torch: leave the notebook's random state as it was
    with one_thread(), torch.random.fork_rng(devices=[]):
        return ex.run(fn, *args, **kwargs)


def _describe(case) -> str:
    if isinstance(case, dict):
        return ", ".join(f"{k}={v!r}" for k, v in case.items())
    return "arguments " + str([_fmt(a) for a in case if not hasattr(a, "transitions")])


def check(name: str, fn: Callable, seed: int = 0, quiet: bool = False) -> Verdict:
    """Run `fn` on the exercise's test cases and compare with the library.

    Prints one verdict (unless quiet): correct, not done yet, what it raised, or for the first case that
    differs, which entry differs with the expected and the got value. Returns a `Verdict` (true if correct).
    """
    ex = _exercise(name)
    message = _run_comparison(name, ex, fn) if ex.compare is not None else _compare_cases(name, ex, fn, seed)
    verdict = Verdict(name, message.endswith("correct!"), message)
    if not quiet:
        print(message)
    return verdict


def _compare_cases(name: str, ex: Exercise, fn: Callable, seed: int) -> str:
    """The verdict of `fn` against the reference on the exercise's cases."""
    message = f"{name}: correct!"
    for case in ex.cases(np.random.default_rng(seed)):
        try:
            got = _call(ex, fn, case)
        except NotImplementedError:
            message = f"{name}: not done yet. Fill in the function, run the cell again."
            break
        except Exception as err:  # a learner's bug: show it, do not stop the notebook
            message = f"{name}: your function raised {type(err).__name__}: {err}"
            break
        difference = _difference(_call(ex, ex.reference, case), got, ex.atol)
        if difference:
            message = f"{name}: not yet. For {_describe(case)}\n  {difference}"
            break
    return message


def _difference(want, got, atol: float, label: str = "") -> str | None:
    """None if `got` matches `want`; otherwise a short description of the first difference."""
    if isinstance(want, dict):  # named outputs, e.g. the Q table and the returns of a training run
        if not isinstance(got, dict):
            return f"expected a dict with {sorted(want)}, got {type(got).__name__}"
        for key in want:
            found = _difference(want[key], got.get(key), atol, key)
            if found:
                return found
        return None
    try:
        w, g = np.asarray(want, dtype=float), np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return f"{label + ': ' if label else ''}expected {_fmt(want)}\n  got      {_fmt(got)} (not numbers of that shape)"
    if w.shape != g.shape:
        return (f"{label + ': ' if label else ''}expected shape {w.shape}, got shape {g.shape}\n"
                f"  expected {_fmt(want)}\n  got      {_fmt(got)}")
    bad = ~np.isclose(g, w, atol=atol, rtol=1e-5)
    if not bad.any():
        return None
    if w.ndim == 0:
        return f"{label + ': ' if label else ''}expected {float(w):.6g}, got {float(g):.6g}"
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"{label or 'index '}[{', '.join(map(str, index))}]"
    text = f"at {where}: expected {w[index]:.6g}, got {g[index]:.6g} ({int(bad.sum())} of {bad.size} entries differ)"
    if w.size <= 12:
        text += f"\n  expected {_fmt(want)}\n  got      {_fmt(got)}"
    return text


def _run_comparison(name: str, ex: Exercise, fn: Callable) -> str:
    """The verdict of a build-it exercise: run the learner's code where the library's would run, compare."""
    try:
        problem = ex.compare(fn)
    except NotImplementedError:
        return f"{name}: not done yet. Fill in the function, run the cell again."
    except Exception as err:  # a learner's bug: show it, do not stop the notebook
        return f"{name}: your function raised {type(err).__name__}: {err}"
    return f"{name}: not yet. {problem}" if problem else f"{name}: correct!"


def _fmt(arg):
    if isinstance(arg, (list, tuple, np.ndarray, torch.Tensor)):
        try:
            return np.round(np.asarray(arg, dtype=float), 4).tolist()
        except (TypeError, ValueError):  # not numbers: show as they are
            return list(arg)
    return arg


def hint(name: str) -> None:
    """Print one or two nudges about the usual mistakes in this exercise."""
    print(f"Hints for {name}:")
    for line in _exercise(name).hint.splitlines():
        print(f"  - {line}")


def reveal(name: str) -> None:
    """Print the solution's source."""
    _exercise(name)
    print(inspect.getsource(getattr(solutions, name)))


def use_or_library(name: str, fn: Callable) -> Callable:
    """`fn` if it passes `check(name, fn)`, otherwise the library's reference (same signature).

    Prints one line saying which one the run will use. The notebook's real training run calls it, so
    the plots show the learner's code at work once it is right, and the notebook still runs before.
    """
    ex = _exercise(name)
    if check(name, fn, quiet=True):
        print(f"{name}: your function passed its check, so this run uses it")
        return fn
    print(f"{name}: not finished yet, so this run uses the library's version")
    return ex.reference
