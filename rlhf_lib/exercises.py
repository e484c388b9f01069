"""Checkers for the notebooks' exercises, and a way to reveal their solutions.

In a notebook:

    def reward_to_go(rewards, gamma):
        ...                                   # your code
    check("reward_to_go", reward_to_go)       # compares with the library on random inputs
    # reveal("reward_to_go")                  # prints a solution (rlhf_lib/solutions.py)

A checker never raises: it prints what went wrong and returns False, so an
unfinished exercise does not stop the rest of the notebook.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from rlhf_lib import solutions


@dataclass
class Exercise:
    notebook: str
    """the notebook that poses it"""
    reference: Callable
    """the library's answer, called with the same arguments"""
    cases: Callable
    """rng -> list of argument tuples to try"""
    compare: Callable | None = None
    """for an exercise whose code a trainer runs: fn -> None if it does what the library does, else what differs"""


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


def _ref_ppo_iteration(setup, prompts, beta):
    from rlhf_lib.rlhf import ppo_iteration

    return ppo_iteration(setup, prompts, beta)


def _compare_ppo_iteration(fn):
    from rlhf_lib.rlhf import compare_ppo_iteration

    return compare_ppo_iteration(fn)


def _ref_adaptive_beta(beta, kl, target, n, horizon):
    from rlhf_lib.rlhf import AdaptiveKLController

    return AdaptiveKLController(beta, target, horizon).update(kl, n)


EXERCISES = {
    "discounted_return": Exercise("00", _ref_discounted_return,
        lambda rng: [(list(rng.normal(size=n)), g) for n in (1, 3, 10) for g in (0.0, 0.5, 0.99, 1.0)]),
    "softmax_with_temperature": Exercise("00", _ref_softmax_with_temperature,
        lambda rng: [(list(rng.normal(size=5) * 3), t) for t in (0.1, 0.7, 1.0, 2.0)] + [([1000.0, 999.0], 1.0)]),
    "bellman_backup": Exercise("01", _ref_bellman_backup, _gridworld_cases),
    "epsilon_greedy_probs": Exercise("01", _ref_epsilon_greedy_probs,
        lambda rng: [(list(rng.integers(0, 3, size=4).astype(float)), e) for e in (0.0, 0.1, 0.5, 1.0) for _ in range(3)]),
    "grad_log_softmax": Exercise("02", _ref_grad_log_softmax,
        lambda rng: [(list(rng.normal(size=4)), int(a)) for a in range(4)]),
    "reward_to_go": Exercise("02", _ref_reward_to_go,
        lambda rng: [(list(rng.normal(size=n)), g) for n in (1, 5, 20) for g in (0.0, 0.9, 1.0)]),
    "gae_one_episode": Exercise("03", _ref_gae_one_episode,
        lambda rng: [(list(rng.normal(size=n)), list(rng.normal(size=n)), g, l)
                     for n in (1, 4, 12) for g, l in ((0.99, 0.95), (1.0, 1.0), (0.9, 0.0))]),
    "clipped_objective": Exercise("03", _ref_clipped_objective,
        lambda rng: [(list(rng.uniform(0.5, 1.5, size=8)), list(rng.normal(size=8)), e) for e in (0.1, 0.2)]),
    "sequence_logprob": Exercise("04", _ref_sequence_logprob,
        lambda rng: [(rng.uniform(-6, 0, size=n).round(3).tolist(), [1] * k + [0] * (n - k)) for n, k in ((5, 5), (8, 3), (6, 1))]),
    "k3_estimate": Exercise("04", _ref_k3_estimate,
        lambda rng: [(rng.uniform(-5, 0, size=6).round(3).tolist(), rng.uniform(-5, 0, size=6).round(3).tolist()) for _ in range(3)]),
    "hindsight_rewards": Exercise("04", _ref_hindsight_rewards,
        lambda rng: [(float(rng.uniform(-1, 1)), n) for n in (1, 4, 9)]),
    "completion_labels": Exercise("05", _ref_completion_labels,
        lambda rng: [(rng.integers(2, 50, size=n).tolist() + [1] * pad, p, 1) for n, p, pad in ((6, 2, 0), (9, 4, 3), (3, 1, 1))]),
    "sft_loss": Exercise("05", _ref_sft_loss, _sft_loss_cases),
    "bradley_terry_prob": Exercise("06", _ref_bradley_terry_prob,
        lambda rng: [(float(a), float(b), t) for a, b in rng.uniform(-1, 1, size=(3, 2)) for t in (0.1, 1.0)]),
    "agreement_rate": Exercise("06", _ref_agreement_rate,
        lambda rng: [(rng.choice(["a", "b", "tie", "skip"], size=20, p=[.4, .4, .1, .1]).tolist(),
                      rng.choice(["a", "b", "tie"], size=20, p=[.45, .45, .1]).tolist()) for _ in range(3)]),
    "bt_loss": Exercise("07", _ref_bt_loss,
        lambda rng: [(rng.normal(size=n).round(3).tolist(), rng.normal(size=n).round(3).tolist()) for n in (1, 5, 20)]),
    "last_real_index": Exercise("07", _ref_last_real_index,
        lambda rng: [([0, 0, 1, 1, 1], ), ([1, 1, 1, 0, 0], ), ([1, 0, 0, 0], ), ([0, 0, 0, 1], )]),
    "response_logprobs": Exercise("04", _ref_response_logprobs, lambda rng: [], _compare_response_logprobs),
    "reward_model_step": Exercise("07", _ref_reward_model_step, lambda rng: [], _compare_reward_model_step),
    "kl_shaped_rewards": Exercise("08", _ref_kl_shaped_rewards, _kl_shaped_rewards_cases),
    "ppo_iteration": Exercise("08", _ref_ppo_iteration, lambda rng: [], _compare_ppo_iteration),
    "adaptive_beta": Exercise("08", _ref_adaptive_beta,
        lambda rng: [(0.2, kl, 3.0, 64, 2000) for kl in (0.5, 2.9, 3.0, 3.3, 12.0)] + [(0.05, 1.0, 6.0, 512, 10_000)]),
}


def check(name: str, fn: Callable, seed: int = 0) -> bool:
    """Run `fn` on the exercise's test cases and compare with the library. Prints a verdict."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; known: {', '.join(EXERCISES)}")
    ex = EXERCISES[name]
    if ex.compare is not None:
        return _check_by_running(name, ex, fn)
    for args in ex.cases(np.random.default_rng(seed)):
        try:
            got = fn(*args)
        except NotImplementedError:
            print(f"{name}: not done yet. Fill in the function, run the cell again.")
            return False
        except Exception as err:  # a learner's bug: show it, do not stop the notebook
            print(f"{name}: your function raised {type(err).__name__}: {err}")
            return False
        want = ex.reference(*args)
        shown = [_fmt(a) for a in args if not hasattr(a, "transitions")]
        try:
            close = np.allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), atol=1e-6)
        except (TypeError, ValueError):
            close = False
        if not close:
            print(f"{name}: not yet. For arguments {shown}\n  expected {_fmt(want)}\n  got      {_fmt(got)}")
            return False
    print(f"{name}: correct!")
    return True


def _check_by_running(name: str, ex: Exercise, fn: Callable) -> bool:
    """A build-it exercise: run the learner's code where the library's would run and compare."""
    try:
        problem = ex.compare(fn)
    except NotImplementedError:
        print(f"{name}: not done yet. Fill in the function, run the cell again.")
        return False
    except Exception as err:  # a learner's bug: show it, do not stop the notebook
        print(f"{name}: your function raised {type(err).__name__}: {err}")
        return False
    if problem:
        print(f"{name}: not yet. {problem}")
        return False
    print(f"{name}: correct!")
    return True


def _fmt(arg):
    if isinstance(arg, (list, tuple, np.ndarray, torch.Tensor)):
        try:
            return np.round(np.asarray(arg, dtype=float), 3).tolist()
        except (TypeError, ValueError):  # not numbers: show as they are
            return list(arg)
    return arg


def reveal(name: str) -> None:
    """Print the solution's source."""
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; known: {', '.join(EXERCISES)}")
    print(inspect.getsource(getattr(solutions, name)))


HINTS = {
    "response_logprobs": "The logits at position t predict the token at t + 1. With P = logits.shape[1] - R, "
                         "response token j sits at position P + j and is predicted by position P + j - 1, so "
                         "take logits[:, P - 1 : -1], log_softmax over the vocabulary, gather the response ids, "
                         "and multiply by response_mask.",
    "reward_model_step": "texts = prompt + chosen for every pair, then prompt + rejected; `encode` them in one batch, "
                         "`raw_rewards`, split the (2N,) rewards in halves, the Bradley-Terry loss; then "
                         "opt.zero_grad(), loss.backward(), torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0), "
                         "opt.step(). Return (loss, r_chosen, r_rejected), detached.",
    "kl_shaped_rewards": "rewards = -beta * (logp - logp_ref) * mask; the last real token of row i is at "
                         "int(mask[i].sum()) - 1: add score[i] there.",
    "ppo_iteration": "In order: rollout(setup.model.lm, setup.tokenizer, prompts, cfg, setup.sampler); "
                     "score_responses(setup.score_fn, batch, cfg.unfinished_penalty); reference_logprobs and "
                     "value_estimates of the batch (cfg.temperature); kl_shaped_rewards(score, batch.logp, logp_ref, "
                     "batch.mask, beta); advantages_and_returns(rewards, values, batch.mask, cfg.gamma, cfg.lam); "
                     "ppo_update(setup, batch, advantages, returns, values); return an Iteration of all of them.",
}


def use_or_library(name: str, fn: Callable) -> Callable:
    """`fn` if it passes check(name, fn); otherwise one line saying so, and the library's version."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        passed = check(name, fn)
    if passed:
        print(f"{name}: using your version")
        return fn
    print(f"{name}: yours does not pass check yet, so the library's version is used here")
    return EXERCISES[name].reference
