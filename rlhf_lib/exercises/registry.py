"""Every exercise of the course in one table: the notebook that poses it, the library's answer, the test cases,
the hints. `rlhf_lib/exercises/checking.py` runs a learner's function against it; the references, cases and
checkers live by topic beside this file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rlhf_lib.cartpole import ppo_update
from rlhf_lib.exercises import ai_feedback as aif
from rlhf_lib.exercises import beyond_ppo as beyond
from rlhf_lib.exercises import language_models as lm
from rlhf_lib.exercises import preferences as prefs
from rlhf_lib.exercises import rl_core as rl
from rlhf_lib.exercises import rlhf_loop as loop
from rlhf_lib.exercises import rounds
from rlhf_lib.policy_gradient import reinforce_update
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


EXERCISES = {
    "discounted_return": Exercise("00", rl.ref_discounted_return,
        lambda rng: [(list(rng.normal(size=n)), g) for n in (1, 3, 10) for g in (0.0, 0.5, 0.99, 1.0)],
        "The first reward is not discounted: its weight is gamma**0 = 1, not gamma.\n"
        "With gamma = 0 only the first reward counts (Python gives 0.0**0 == 1, as it should)."),
    "softmax_with_temperature": Exercise("00", rl.ref_softmax_with_temperature,
        lambda rng: [(list(rng.normal(size=5) * 3), t) for t in (0.1, 0.7, 1.0, 2.0)] + [([1000.0, 999.0], 1.0)],
        "Divide the logits by the temperature (do not multiply): a low temperature makes the largest logit win.\n"
        "Subtract the largest logit before exp, or exp(1000) overflows to inf and you get nan."),
    "bellman_backup": Exercise("01", rl.ref_bellman_backup, rl.gridworld_cases,
        "Sum over ALL outcomes of an action, each weighted by its probability, then take the max over actions.\n"
        "A step that ends the episode (terminated) adds no gamma * V[s_next]: nothing follows it."),
    "epsilon_greedy_probs": Exercise("01", rl.ref_epsilon_greedy_probs,
        lambda rng: [(list(rng.integers(0, 3, size=4).astype(float)), e)
                     for e in (0.0, 0.1, 0.5, 1.0) for _ in range(3)],
        "Every action, the best ones included, gets epsilon / n from the random branch.\n"
        "The greedy share 1 - epsilon is split equally between ALL tied best actions, not given to argmax's one."),
    "q_learning_episode": Exercise("01", q_learning_episode, rl.td_control_cases,
        "Pick each action with epsilon_greedy(Q[s], epsilon, rng) just before its step (the checker replays the "
        "same random numbers), and move s to s' after the update.\n"
        "Bootstrap from max_a' Q(s', a') of the state you arrived in, not of the state you left.\n"
        "Only `terminated` drops the future (target = r); a time limit (`truncated`) ends the loop but the target "
        "keeps gamma * max Q(s'). (Forgetting the flag hides here, as Q of an end state stays 0; not elsewhere.)",
        run=rl.run_td_control),
    "sarsa_episode": Exercise("01", sarsa_episode, rl.td_control_cases,
        "Pick the first action before the loop; after each step pick a' = epsilon_greedy(Q[s'], epsilon, rng) "
        "BEFORE you update Q(s, a).\n"
        "The target is r + gamma * Q(s', a') with that a' (not the max), and then s, a = s', a'.\n"
        "As in Q-learning, only `terminated` drops the future from the target.",
        run=rl.run_td_control),
    "grad_log_softmax": Exercise("02", rl.ref_grad_log_softmax,
        lambda rng: [(list(rng.normal(size=4)), int(a)) for a in range(4)],
        "log pi(a) = theta_a - log sum_b exp(theta_b); differentiate each term by theta_j.\n"
        "Treat j = a and j != a separately; the second term gives the same expression for every j."),
    "reward_to_go": Exercise("02", rl.ref_reward_to_go,
        lambda rng: [(list(rng.normal(size=n)), g) for n in (1, 5, 20) for g in (0.0, 0.9, 1.0)],
        "G_t looks forward: rewards from t to the end, not the rewards collected so far.\n"
        "Walking the list backwards with one running total avoids a double loop; after the last step it is 0."),
    "reinforce_update": Exercise("02", reinforce_update, rl.reinforce_update_cases,
        "log pi(a_t | s_t): log_softmax of the policy's logits, then pick each row's action (gather), not the max.\n"
        "Detach the baseline in the weights (G - V.detach()): the policy loss must not train the critic; "
        "the critic learns from its own 0.5 * mean((V - G)^2).\n"
        "The loss is -mean(logp * weights) (minus: the optimizer descends); with normalize, divide the weights by "
        "weights.std() + 1e-8 (torch's sample std); zero_grad, backward, step, in that order; return the two losses "
        "as floats.",
        run=rl.run_reinforce_update, atol=1e-5),
    "bug_reinforce_update": Exercise("02", reinforce_update, rl.reinforce_update_cases,
        "Look at which log-probabilities enter the loss: there should be one per sample, of its own action.\n"
        "Print logp.shape for a batch of 5 and compare it with the shape of the weights.",
        run=rl.run_reinforce_update, atol=1e-5),
    "gae_one_episode": Exercise("03", rl.ref_gae_one_episode,
        lambda rng: [(list(rng.normal(size=n)), list(rng.normal(size=n)), g, lam)
                     for n in (1, 4, 12) for g, lam in ((0.99, 0.95), (1.0, 1.0), (0.9, 0.0))],
        "delta_t = r_t + gamma * V(s_{t+1}) - V(s_t), with V = 0 after the last step (the episode ended).\n"
        "The weight of delta_{t+k} is (gamma * lam)**k: lambda and gamma both, not gamma alone."),
    "clipped_objective": Exercise("03", rl.ref_clipped_objective,
        lambda rng: [(list(rng.uniform(0.5, 1.5, size=8)), list(rng.normal(size=8)), e) for e in (0.1, 0.2)],
        "Clip the ratio, not the product: clip(rho, 1 - eps, 1 + eps) * A.\n"
        "Take the min of the two terms (the pessimistic one), also when A < 0."),
    "ppo_update": Exercise("03", ppo_update, rl.ppo_update_cases,
        "Shuffle once per epoch with torch.randperm(len(batch.obs)) and split with .chunk(cfg.minibatches) "
        "(the checker replays the same shuffles); whiten the advantages of each minibatch with `whiten` (the "
        "population std, divided by b, not torch's .std()).\n"
        "The ratio is exp(logp - batch.logp_old[idx]); the loss is clipped surrogate + vf_coef * value loss "
        "- ent_coef * entropy (a bonus: minus).\n"
        "zero_grad, backward, clip the gradient norm in ONE call over actor and critic parameters together "
        "(one norm for all), then step.",
        run=rl.run_ppo_update, atol=1e-5, compare=rl.compare_ppo_update),
    "bug_ppo_update": Exercise("03", ppo_update, rl.ppo_update_cases,
        "The policy's loss is where it goes wrong: the update pushes the policy away from what it should.\n"
        "Write the importance ratio as the text defines it and compare it, term by term, with the line that "
        "computes it.",
        run=rl.run_ppo_update, atol=1e-5),
    "sequence_logprob": Exercise("04", lm.ref_sequence_logprob,
        lambda rng: [(rng.uniform(-6, 0, size=n).round(3).tolist(), [1] * k + [0] * (n - k))
                     for n, k in ((5, 5), (8, 3), (6, 1))],
        "Log-probs add up (probabilities multiply); sum, do not average.\n"
        "Only tokens with mask 1 count: dropping the mask adds the padding's log-probs."),
    "k3_estimate": Exercise("04", lm.ref_k3_estimate,
        lambda rng: [(rng.uniform(-5, 0, size=6).round(3).tolist(), rng.uniform(-5, 0, size=6).round(3).tolist())
                     for _ in range(3)],
        "The ratio is rho = pi_ref / pi = exp(logp_ref - logp) (the samples come from pi), not its inverse.\n"
        "k3 is never negative for any token: a quick test of your sign."),
    "broadcast_rewards": Exercise("04", lm.ref_broadcast_rewards,
        lambda rng: [(float(rng.uniform(-1, 1)), n) for n in (1, 4, 9)],
        "The score is paid once, at the LAST token; every other token's reward is 0.\n"
        "With gamma = 1 the return of every token is the sum of the rewards from it onward: the score itself."),
    "completion_labels": Exercise("05", lm.ref_completion_labels,
        lambda rng: [(rng.integers(2, 50, size=n).tolist() + [1] * pad, p, 1)
                     for n, p, pad in ((6, 2, 0), (9, 4, 3), (3, 1, 1))],
        "Positions before prompt_length are context: label -100, so the loss ignores them.\n"
        "Padding is not a target either: a pad_id token gets -100 too."),
    "sft_loss": Exercise("05", lm.ref_sft_loss, lm.sft_loss_cases,
        "Cross-entropy of one position is -log_softmax(logits)[label]; subtract the max before exp.\n"
        "Average over the positions whose label is not -100 only: divide by their count, not by the length."),
    "sft_step": Exercise("05", lm.ref_sft_step, lambda rng: [],
        "sft_batch(tokenizer, batch) gives ids, mask and labels; the logits at position t predict the token at\n"
        "t + 1: drop the last position's logits and the first label. Cross-entropy with ignore_index=-100.\n"
        "Then zero the gradients, backward, clip the norm to 1.0, step; return loss.item().",
        compare=lm.compare_sft_step),
    "bradley_terry_prob": Exercise("06", prefs.ref_bradley_terry_prob,
        lambda rng: [(float(a), float(b), t) for a, b in rng.uniform(-1, 1, size=(3, 2)) for t in (0.1, 1.0)],
        "Divide the DIFFERENCE of the scores by the temperature, not each score on its own.\n"
        "Check the sign: a higher score_a must give a probability above 0.5."),
    "agreement_rate": Exercise("06", prefs.ref_agreement_rate,
        lambda rng: [(rng.choice(["a", "b", "tie", "skip"], size=20, p=[.4, .4, .1, .1]).tolist(),
                      rng.choice(["a", "b", "tie"], size=20, p=[.45, .45, .1]).tolist()) for _ in range(3)],
        "Count only the pairs where BOTH annotators chose 'a' or 'b'; ties and skips drop out.\n"
        "Divide by the number of such pairs, not by the number of all pairs."),
    "label_into": Exercise("06", prefs.ref_label_into, lambda rng: [],
        "Read the file first (read_records(path, allow_empty=True) if it exists) and remember which\n"
        "(prompt, a, b) this annotator already judged; skip those. For each new pair: PreferenceRecord(prompt,\n"
        "a, b, annotator.compare(prompt, a, b), annotator.name), then append_record at once; count them.",
        compare=prefs.compare_label_into),
    "bt_loss": Exercise("07", prefs.ref_bt_loss,
        lambda rng: [(rng.normal(size=n).round(3).tolist(), rng.normal(size=n).round(3).tolist()) for n in (1, 5, 20)]
        + [([800.0, -3.0, 40.0], [-1.0, 797.0, 0.5])],  # margins of +-800: exp overflows where it is written naively
        "Chosen first in the difference, and mind the minus: the loss falls as chosen scores above rejected.\n"
        "Average over the pairs, do not sum; -log sigmoid(d) is np.logaddexp(0, -d), which never overflows."),
    "last_real_index": Exercise("07", prefs.ref_last_real_index,
        lambda rng: [([0, 0, 1, 1, 1], ), ([1, 1, 1, 0, 0], ), ([1, 0, 0, 0], ), ([0, 0, 0, 1], )],
        "You want a position, not a count: with left padding, sum(mask) - 1 is not the last real index.\n"
        "Walk the mask and remember the last t where it is 1."),
    "response_logprobs": Exercise("04", lm.ref_response_logprobs, lambda rng: [],
        "The logits at position t predict the token at t + 1: the first response token is predicted by the LAST\n"
        "prompt position, so the slice starts one before the response and ends one before the end.\n"
        "log_softmax over the vocabulary, then gather the response ids; padding gets log-prob 0 (the mask).",
        compare=lm.compare_response_logprobs),
    "reward_model_step": Exercise("07", prefs.ref_reward_model_step, lambda rng: [],
        "Score chosen and rejected texts (prompt + completion) in ONE batch, chosen rows first, then split.\n"
        "The loss is -log sigmoid(r_chosen - r_rejected): chosen minus rejected, not the other way round.\n"
        "Clear the old gradients before backward and clip the gradient norm to 1.0 before the step;\n"
        "return the loss and both rewards detached: they are figures to log, not part of the graph.",
        compare=prefs.compare_reward_model_step),
    "bug_reward_model_step": Exercise("07", prefs.ref_reward_model_step, lambda rng: [],
        "The loss hardly falls below log 2 and nothing is learned: look at which rewards are compared with which.\n"
        "Print the texts behind r_chosen[0] and r_rejected[0] for a batch of 3 pairs: are they one pair's two texts?",
        compare=prefs.compare_reward_model_step),
    "kl_shaped_rewards": Exercise("08", loop.ref_kl_shaped_rewards, loop.kl_shaped_rewards_cases,
        "Every real token pays the KL penalty -beta * (logp - logp_ref): a penalty, so mind the sign, and the\n"
        "padding (mask 0) pays nothing. The score goes on the LAST real token of each row only, on top of its\n"
        "penalty: responses are right-padded, so find that index from the mask."),
    "ppo_loss": Exercise("08", loop.ref_ppo_loss, loop.ppo_loss_cases,
        "Every mean is over the REAL tokens: (x * mask).sum() / mask.sum(), never x.mean() over the padding.\n"
        "The ratio is exp(logp - logp_old); take the MINIMUM of ratio * A and clip(ratio) * A, then negate it.\n"
        "With value_clip_eps, clip the VALUES to values_old +- eps (not the error); keep the larger error; halve.",
        run=loop.run_ppo_loss),
    "ppo_iteration": Exercise("08", loop.ref_ppo_iteration, lambda rng: [],
        "Follow the table's order: rollout, scores, the reference's log-probs and the old values, then kl_rewards,\n"
        "advantages_and_returns (GAE, then whitening) and ppo_update(setup, batch, ..., loss_fn=loss).\n"
        "Pay the KL with the beta you are given (train_rlhf adapts it), not cfg.kl_coef; use the batch's mask.",
        compare=loop.compare_ppo_iteration),
    "bug_reference_logprobs": Exercise("08", loop.ref_reference_logprobs, loop.reference_logprobs_cases,
        "Before the first update the policy IS the reference, so the KL to it must start at 0; here it starts near "
        "11 nats.\n"
        "Which position's logits predict response token t? Compare the slice with notebook 04's response_logprobs.",
        run=loop.run_reference_logprobs),
    "adaptive_beta": Exercise("08", loop.ref_adaptive_beta,
        lambda rng: [(0.2, kl, 3.0, 64, 2000) for kl in (0.5, 2.9, 3.0, 3.3, 12.0)] + [(0.05, 1.0, 6.0, 512, 10_000)],
        "Clip the relative error of the KL to [-0.2, 0.2] BEFORE you scale it.\n"
        "The step grows with the responses in this batch (n), shrinks with the horizon; not one response."),
    "dpo_loss": Exercise("10", beyond.ref_dpo_loss, beyond.dpo_loss_cases,
        "Log-ratios first: policy minus reference, for chosen and for rejected; then their difference, times beta.\n"
        "-log sigmoid(x) is F.logsigmoid(x) with a minus (stable for large |x|); average over the pairs.",
        run=beyond.run_dpo_loss),
    "best_of_n_expected": Exercise("09", beyond.ref_best_of_n_expected, beyond.best_of_n_cases,
        "Sort the pool by proxy. The i-th lowest (i = 1..N) wins when it is drawn and the other n - 1 drawn are\n"
        "all below it: C(i - 1, n - 1) subsets out of C(N, n). math.comb(a, b) is 0 when b > a, as it should be."),
    "fit_gao_rl": Exercise("09", beyond.ref_fit_gao_rl, beyond.fit_gao_rl_cases,
        "R(d) = alpha * d - beta * (d log d) is linear in (alpha, beta): two columns, d and -d log d.\n"
        "d log d is 0 at d = 0 (its limit), not nan: np.log(0) is -inf. Then np.linalg.lstsq."),
    "leave_one_out": Exercise("10", beyond.ref_leave_one_out, beyond.leave_one_out_cases,
        "rewards.view(-1, k) puts each prompt's k responses in one row; the baseline of response i is the mean\n"
        "of the OTHER k - 1 in its row: (row sum - r_i) / (k - 1). Return a flat (N,) tensor again.",
        run=beyond.run_tensor),
    "pairs_from_samples": Exercise("11", rounds.ref_pairs_from_samples, rounds.pairs_from_samples_cases,
        "Keep a pair only when BOTH reviews finished: a review cut off at the length limit is judged for being cut\n"
        "off. Leave out a pair of two identical reviews: there is nothing to prefer. Keep the order you were given."),
    "mix_old_and_new": Exercise("11", rounds.ref_mix_old_and_new, rounds.mix_cases,
        "Keep the old batches (leave out the empty ones): without them the reward model forgets what it knew.\n"
        "Then cut the new pairs into batches of per_step in their order; the last batch may be shorter."),
    "plackett_luce_loss": Exercise("12", aif.ref_plackett_luce_loss, aif.plackett_luce_cases,
        "scores.gather(1, order) lines the scores up best first; choice t is a softmax over positions t..k-1.\n"
        "Not over all k: a chosen response leaves the race. torch.logsumexp of each suffix keeps large scores finite.\n"
        "Sum the k - 1 log-probabilities of a row (the last choice is certain), then minus the mean over rows.",
        run=beyond.run_tensor, atol=1e-4),
    "swap_debias": Exercise("12", aif.ref_swap_debias, aif.swap_debias_cases,
        "backward[i] was read with A and B swapped: its 'a' means completion B. Turn it back before comparing.\n"
        "Keep the verdict where the two readings agree; anything else, a tie in either reading included, is 'tie'."),
    "longer_preferred": Exercise("12", aif.ref_longer_preferred, aif.longer_preferred_cases,
        "Debias first: swap_debias(forward, backward), with backward put back in the pair's order.\n"
        "A debiased tie counts half a preference for the longer review; then the mean over all pairs."),
}
"""every exercise, by the name a notebook checks it under"""
