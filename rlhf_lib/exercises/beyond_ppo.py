"""The exercises of notebooks 09-10 (over-optimisation, DPO, RLOO and GRPO): the references and the test cases."""

from __future__ import annotations

import numpy as np
import torch

# ---- notebook 09


def ref_best_of_n_expected(proxy, gold, n):
    from rlhf_lib.bon import best_of_n_expected

    return best_of_n_expected(np.asarray(proxy), np.asarray(gold), n)


def best_of_n_cases(rng):
    """Pools without ties in the proxy (the sort order is then the only order), N from 1 to 40."""
    cases = []
    for N, ns in ((1, (1,)), (5, (1, 2, 5)), (12, (1, 3, 7, 12)), (40, (2, 10, 39))):
        proxy, gold = rng.normal(size=N).round(4), rng.normal(size=N).round(4)
        while len(set(proxy)) < N:
            proxy = rng.normal(size=N).round(4)
        cases += [(list(proxy), list(gold), n) for n in ns]
    return cases


def ref_fit_gao_rl(d, gold_gain):
    from rlhf_lib.bon import fit_gao

    fit = fit_gao(d, gold_gain, "rl")
    return np.array([fit["alpha"], fit["beta"]])


def fit_gao_rl_cases(rng):
    cases = []
    for alpha, beta, K in ((1.0, 0.5, 6), (0.3, 0.4, 12), (2.0, -0.1, 20)):
        d = np.sort(rng.uniform(0.05, 4.0, size=K))
        noise = rng.normal(scale=0.02, size=K)
        cases.append((list(np.concatenate([[0.0], d])),
                      list(np.concatenate([[0.0], d * (alpha - beta * np.log(d)) + noise]))))
    return cases


# ---- notebook 10


def ref_dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    from rlhf_lib.dpo import dpo_loss

    return dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)[0]


def dpo_loss_cases(rng):
    cases = []
    for B, beta in ((1, 0.1), (4, 0.3), (16, 1.0)):
        logps = [torch.tensor(rng.normal(-12.0, 3.0, size=B), dtype=torch.float64) for _ in range(4)]  # 4 x (B,)
        cases.append((*logps, beta))
    return cases


def run_dpo_loss(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """The loss and its gradient with respect to the policy's log-probs: training needs both."""
    pc, pr = (t.clone().requires_grad_(True) for t in (policy_chosen_logps, policy_rejected_logps))
    loss = fn(pc, pr, ref_chosen_logps, ref_rejected_logps, beta)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("return a torch tensor computed from the inputs (no .item(), no numpy): training "
                        "needs its gradient")
    loss.backward()
    return dict(loss=float(loss.detach()), grad_chosen=pc.grad.numpy(), grad_rejected=pr.grad.numpy())


def ref_leave_one_out(rewards, k):
    from rlhf_lib.group_advantages import rloo_advantages

    return rloo_advantages(rewards, k)


def leave_one_out_cases(rng):
    equal = torch.tensor([0.5, 0.5, 0.5, 1.0, -1.0, 0.0])  # a group with nothing to learn, then a mixed one
    return [(torch.tensor(rng.normal(size=8).round(3), dtype=torch.float32), k) for k in (2, 4)] + [(equal, 3)]


def run_tensor(fn, *args):
    """fn(*args) as a float32 array, whatever array type it returned."""
    return np.asarray(torch.as_tensor(fn(*args), dtype=torch.float32))
