"""Every exercise's solution passes its checker, a plausibly wrong one fails in the comparison, and the
helpers around them (hint, use_or_library, what a check cell displays) behave as the notebooks need."""

import numpy as np
import pytest
import torch

from rlhf_lib import solutions
from rlhf_lib.exercises import EXERCISES, Verdict, beyond_ppo, check, hint, reveal, silent_bugs, use_or_library


def _wrong_epsilon_greedy_probs(q_row, epsilon):  # all the greedy share to argmax's first pick
    probs = np.full(len(q_row), epsilon / len(q_row))
    probs[int(np.argmax(q_row))] += 1 - epsilon
    return probs


def _wrong_bellman_backup(env, V, s, gamma):  # bootstraps through terminal steps
    return max(sum(p * (r + gamma * V[s2]) for p, s2, r, _ in env.transitions(s, a)) for a in range(env.n_actions))


def _wrong_q_learning_episode(env, Q, alpha, gamma, epsilon, rng):  # a time limit treated as an end
    from rlhf_lib.tabular import epsilon_greedy

    s, _ = env.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
        target = r if done else r + gamma * Q[s_next].max()
        Q[s, a] += alpha * (target - Q[s, a])
        s, total, steps = s_next, total + r, steps + 1
    return total, steps


def _wrong_reinforce_update(policy, critic, optimizer, obs, actions, returns, use_baseline, normalize):
    """The baseline is not detached: the policy loss also trains the critic."""
    import torch

    logp = policy(obs).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)
    weights, v_loss = returns, torch.zeros(())
    if use_baseline:
        values = critic(obs).squeeze(-1)
        v_loss = 0.5 * ((values - returns) ** 2).mean()
        weights = returns - values
    if normalize:
        weights = weights / (weights.std() + 1e-8)
    pg_loss = -(logp * weights).mean()
    optimizer.zero_grad()
    (pg_loss + v_loss).backward()
    optimizer.step()
    return pg_loss.item(), v_loss.item()


def _wrong_ppo_update(actor, critic, optimizer, batch, cfg):
    """Raw advantages: no whitening per minibatch."""
    import torch

    from rlhf_lib.ppo import clipped_surrogate, entropy_from_logits, value_loss

    params = list(actor.parameters()) + list(critic.parameters())
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(batch.obs)).chunk(cfg.minibatches):
            logits = actor(batch.obs[idx])
            logp = logits.log_softmax(-1).gather(-1, batch.actions[idx, None]).squeeze(-1)
            pg_loss = clipped_surrogate(logp, batch.logp_old[idx], batch.advantages[idx], cfg.clip_eps)
            values = critic(batch.obs[idx]).squeeze(-1)
            v_loss = value_loss(values, batch.returns[idx], batch.values_old[idx], cfg.value_clip_eps)
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy_from_logits(logits).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()


def _wrong_gae(rewards, values, gamma, lam):  # forgets lambda
    return solutions.gae_one_episode(rewards, values, gamma, 1.0)


def _wrong_sft_loss(logits, labels):  # averages over every position, the prompt's too
    kept = sum(1 for label in labels if label != -100)
    return solutions.sft_loss(logits, labels) * kept / len(labels)


def _wrong_response_logprobs(logits, response_ids, response_mask):  # off by one: position t for token t
    R = response_ids.shape[1]
    logp = logits[:, -R:].float().log_softmax(-1).gather(-1, response_ids[..., None]).squeeze(-1)
    return logp * response_mask


def _wrong_sft_step(model, tokenizer, batch, opt):  # no shift: each position "predicts" its own token
    from rlhf_lib.sft import sft_batch

    ids, mask, labels = sft_batch(tokenizer, batch)
    logits = model(input_ids=ids, attention_mask=mask).logits
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def _wrong_label_into(path, annotator, pairs):  # labels every pair again: a rerun duplicates the file
    from rlhf_lib.feedback import PreferenceRecord, append_record

    for prompt, a, b in pairs:
        append_record(path, PreferenceRecord(prompt, a, b, annotator.compare(prompt, a, b), annotator.name))
    return len(pairs)


def _wrong_reward_model_step(model, tokenizer, pairs, opt):  # chosen and rejected swapped
    swapped = [dict(p, chosen=p["rejected"], rejected=p["chosen"]) for p in pairs]
    return solutions.reward_model_step(model, tokenizer, swapped, opt)


def _wrong_ppo_iteration(setup, prompts, beta):  # the KL penalty with its sign flipped
    from rlhf_lib import rlhf

    cfg = setup.cfg
    batch = rlhf.rollout(setup.model.lm, setup.tokenizer, prompts, cfg, setup.sampler)
    score = rlhf.score_responses(setup.score_fn, batch, cfg.unfinished_penalty)
    logp_ref = rlhf.reference_logprobs(setup.reference, batch, cfg.temperature)
    values = rlhf.value_estimates(setup.model, batch, cfg.temperature)
    rewards = rlhf.kl_shaped_rewards(score, logp_ref, batch.logp, batch.mask, beta)
    advantages, returns = rlhf.advantages_and_returns(rewards, values, batch.mask, cfg.gamma, cfg.lam)
    stats = rlhf.ppo_update(setup, batch, advantages, returns, values)
    return rlhf.Iteration(batch, score, logp_ref, values, rewards, advantages, returns, stats)


def _wrong_ppo_loss(logp, logp_old, advantages, values, values_old, returns, mask, clip_eps, vf_coef, value_clip_eps):
    """Means over every position, the padding included (x.mean() where the real tokens were meant)."""
    return solutions.ppo_loss(logp, logp_old, advantages, values, values_old, returns, torch.ones_like(mask),
                              clip_eps, vf_coef, value_clip_eps)


# A plausible mistake for every exercise: each must fail in the comparison, not by raising.
WRONG = {
    "discounted_return": lambda rewards, gamma: sum(gamma ** (t + 1) * r for t, r in enumerate(rewards)),
    "softmax_with_temperature": lambda logits, t: solutions.softmax_with_temperature(np.asarray(logits) * t * t, t),
    "bellman_backup": _wrong_bellman_backup,
    "epsilon_greedy_probs": _wrong_epsilon_greedy_probs,
    "q_learning_episode": _wrong_q_learning_episode,
    "sarsa_episode": solutions.q_learning_episode,  # the greedy max in the target: Q-learning, not SARSA
    "grad_log_softmax": lambda theta, a: -solutions.grad_log_softmax(theta, a),
    "reward_to_go": lambda rewards, gamma: np.cumsum(rewards),  # rewards so far, not to go
    "reinforce_update": _wrong_reinforce_update,
    "ppo_update": _wrong_ppo_update,
    "gae_one_episode": _wrong_gae,
    "clipped_objective": lambda ratio, adv, eps: np.maximum(np.asarray(ratio) * adv,
                                                            np.clip(ratio, 1 - eps, 1 + eps) * np.asarray(adv)),
    "sequence_logprob": lambda token_logps, mask: float(sum(token_logps)),  # drops the mask
    "k3_estimate": lambda logp, logp_ref: solutions.k3_estimate(logp_ref, logp),  # ratio inverted
    "broadcast_rewards": lambda score, n: (np.r_[score, np.zeros(n - 1)],
                                           np.r_[score, np.zeros(n - 1)]),  # pays the first token
    "completion_labels": lambda ids, p, pad_id: [-100 if t < p else tok for t, tok in enumerate(ids)],  # keeps padding
    "sft_loss": _wrong_sft_loss,
    "bradley_terry_prob": lambda a, b, t: solutions.bradley_terry_prob(a, b, 1.0),  # forgets the temperature
    "agreement_rate": lambda x, y: float(np.mean([a == b for a, b in zip(x, y)])),  # counts ties and skips
    "bt_loss": lambda c, r: solutions.bt_loss(r, c),  # chosen and rejected swapped
    "last_real_index": lambda mask: sum(mask) - 1,  # a count, not a position
    "response_logprobs": _wrong_response_logprobs,
    "reward_model_step": _wrong_reward_model_step,
    "sft_step": _wrong_sft_step,
    "label_into": _wrong_label_into,
    "kl_shaped_rewards": lambda score, lp, lr, mask, beta:
        solutions.kl_shaped_rewards(score, lr, lp, mask, beta),  # sign
    "bug_reinforce_update": silent_bugs.buggy_reinforce_update,  # the planted bug itself
    "bug_ppo_update": silent_bugs.buggy_ppo_update,
    "bug_reward_model_step": silent_bugs.buggy_reward_model_step,
    "bug_reference_logprobs": silent_bugs.buggy_reference_logprobs,
    "ppo_loss": _wrong_ppo_loss,
    "ppo_iteration": _wrong_ppo_iteration,
    "adaptive_beta": lambda beta, kl, target, n, horizon: beta * (1 + (kl / target - 1) * n / horizon),  # no clip
    "dpo_loss": lambda pc, pr, rc, rr, beta: -torch.nn.functional.logsigmoid(beta * (pc - pr)).mean(),  # no reference
    "best_of_n_expected": lambda proxy, gold, n: float(np.mean(np.asarray(gold)[np.argsort(proxy)][-n:])),  # top-n mean
    "fit_gao_rl": lambda d, y: np.linalg.lstsq(np.stack([np.asarray(d), -np.asarray(d) ** 2], 1), np.asarray(y),
                                               rcond=None)[0],  # best-of-n's form
    "pairs_from_samples": lambda starts, a, b, fa, fb: [(s, x, y) for s, x, y in zip(starts, a, b) if x != y],
    "mix_old_and_new": lambda old, new, per_step: [new[i : i + per_step] for i in range(0, len(new), per_step)],
    "leave_one_out": lambda rewards, k:
        rewards - rewards.view(-1, k).mean(-1).repeat_interleave(k),  # i in its own baseline
    "plackett_luce_loss": lambda scores, order:  # every choice a softmax over all k: chosen ones stay in the race
        -(scores.gather(1, order) - scores.logsumexp(1, keepdim=True))[:, :-1].sum(1).mean(),
    "swap_debias": lambda forward, backward: [f if f == b else "tie" for f, b in zip(forward, backward)],  # not turned
    "longer_preferred": lambda forward, backward, longer:  # a tie counts as a loss, not half
        float(np.mean([v == w for v, w in zip(solutions.swap_debias(forward, backward), longer)])),
}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_solution_passes_its_checker(name, capsys):
    assert check(name, getattr(solutions, name))
    assert capsys.readouterr().out.strip() == f"{name}: correct!"


def test_every_exercise_has_a_wrong_variant():
    assert sorted(WRONG) == sorted(EXERCISES)


# What the verdict on each build-it's mistake in WRONG must name: the quantity that differs, where it first differs.
WHAT_DIFFERS = {
    "response_logprobs": "response token",  # the token whose log-prob is off, not just "wrong"
    "sft_step": "step 1: loss expected",  # no shift: the loss is off from the first step
    "label_into": "with a file that already holds the first 3 pairs: the file ends with 9 records, expected 6",
    "reward_model_step": "step 1: r_chosen expected",  # swapped pairs: the first reward already differs
    "ppo_iteration": "rewards differs from the library's",  # the KL sign: the first tensor after the scores
    "ppo_update": "Look at the policy's loss",  # raw advantages: the probe with the policy's loss alone differs
}


def test_every_build_it_says_what_its_mistake_changes():
    assert sorted(WHAT_DIFFERS) == sorted(n for n, ex in EXERCISES.items()
                                          if ex.compare is not None and not n.startswith("bug_"))  # bugs say only that


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_checker_rejects_a_plausible_mistake_in_the_comparison(name, capsys):
    verdict = check(name, WRONG[name])
    out = capsys.readouterr().out
    assert not verdict
    if name.startswith("bug_"):  # a silent bug's check says it is still there, and not where
        assert out.startswith(f"{name}: not fixed yet") and "expected" not in out, out
        return
    assert out.startswith(f"{name}: not yet. "), out
    if EXERCISES[name].compare is None:  # value exercises show the expected and the got value
        assert "expected" in out and "got" in out, out
    else:  # build-its run inside the trainer and say which quantity differs
        assert WHAT_DIFFERS[name] in out, out
    assert "raised" not in out
    assert out.count(name + ":") == 1, "one verdict"


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_every_exercise_has_a_hint(name, capsys):
    """One bullet a sentence (a sentence wrapped over two lines of the registry prints as one), one to three."""
    hint(name)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Hints for {name}:" and all(line.startswith("  - ") for line in lines[1:]), lines
    bullets = [line[4:] for line in lines[1:]]
    assert " ".join(bullets) == " ".join(line.strip() for line in EXERCISES[name].hint.strip().splitlines())
    assert 1 <= len(bullets) <= 3, bullets
    assert all(b.endswith((".", "!", "?", ".)")) for b in bullets), bullets


def test_the_message_names_the_entry_that_differs(capsys):
    def almost(rewards, gamma):
        out = solutions.reward_to_go(rewards, gamma)
        if len(out) > 3:
            out[3] += 1.0
        return out

    assert not check("reward_to_go", almost)
    out = capsys.readouterr().out
    first_long_case = next(args for args in EXERCISES["reward_to_go"].cases(np.random.default_rng(0))
                           if len(args[0]) > 3)
    want = solutions.reward_to_go(*first_long_case)[3]
    assert f"at index [3]: expected {want:.6g}, got {want + 1:.6g} (1 of" in out
    assert str(round(first_long_case[1], 4)) in out  # the case's arguments


def test_a_wrong_shape_is_reported(capsys):
    assert not check("reward_to_go", lambda rewards, gamma: [0.0, 0.0])
    assert "expected shape" in capsys.readouterr().out


def test_unfinished_exercise_does_not_raise(capsys):
    def stub(rewards, gamma):
        raise NotImplementedError

    assert not check("reward_to_go", stub)
    assert "not done yet" in capsys.readouterr().out


def test_a_crashing_answer_is_reported(capsys):
    assert not check("reward_to_go", lambda rewards, gamma: rewards[100])
    assert "IndexError" in capsys.readouterr().out


def test_a_check_cell_displays_one_verdict(capsys):
    """IPython shows a cell's last value through its formatter: the verdict must add nothing to the print."""
    from IPython.core.formatters import DisplayFormatter

    for fn in (solutions.reward_to_go, WRONG["reward_to_go"]):
        verdict = check("reward_to_go", fn)
        assert isinstance(verdict, Verdict) and bool(verdict) == (fn is solutions.reward_to_go)
        assert DisplayFormatter().format(verdict) == ({}, {})
        assert verdict.message in capsys.readouterr().out
    assert repr(verdict) == "<check reward_to_go: not yet>"


def test_use_or_library_picks_the_learners_function_only_when_it_passes(capsys):
    assert use_or_library("reward_to_go", solutions.reward_to_go) is solutions.reward_to_go
    assert capsys.readouterr().out.count("\n") == 1

    def stub(rewards, gamma):
        raise NotImplementedError

    for unfinished in (stub, WRONG["reward_to_go"]):
        fn = use_or_library("reward_to_go", unfinished)
        assert fn is EXERCISES["reward_to_go"].reference
        assert capsys.readouterr().out == "reward_to_go: not finished yet, so this run uses the library's version\n"
        assert check("reward_to_go", fn, quiet=True)


def test_checking_a_build_it_exercise_leaves_the_random_state_alone():
    import torch

    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    check("ppo_update", solutions.ppo_update, quiet=True)
    torch.testing.assert_close(torch.rand(3), want)


def test_reveal_prints_the_solution(capsys):
    reveal("gae_one_episode")
    assert "def gae_one_episode" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no exercise"):
        reveal("nope")
    with pytest.raises(KeyError, match="no exercise"):
        hint("nope")


def test_every_notebook_poses_enough_exercises():
    per_notebook = {}
    for ex in EXERCISES.values():
        per_notebook[ex.notebook] = per_notebook.get(ex.notebook, 0) + 1
    assert all(per_notebook.get(nb, 0) >= 2
               for nb in ("00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"))
    assert all(per_notebook[nb] >= 3 for nb in ("01", "02", "03")), per_notebook


@pytest.mark.parametrize("name,notebook", [("q_learning_episode", "01_tabular_rl"), ("sarsa_episode", "01_tabular_rl"),
                                           ("reinforce_update", "02_policy_gradients"),
                                           ("ppo_update", "03_actor_critic_ppo"),
                                           ("best_of_n_expected", "09_overoptimization"),
                                           ("fit_gao_rl", "09_overoptimization")])
def test_the_notebook_trains_with_the_learners_build_it_function(name, notebook):
    """The stub is checked, hinted, revealable, and the training run goes through use_or_library."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / f"{notebook}.ipynb"
    code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    stub = next(c for c in code if f"def {name}(" in c)
    assert "raise NotImplementedError" in stub and f'check("{name}", {name})' in stub
    assert f'# hint("{name}")' in stub and f'# reveal("{name}")' in stub
    assert any(f'use_or_library("{name}", {name})' in c for c in code)


def _spoil(value):
    """Overwrite a mutable input in place (lists, arrays, tensors, dicts, nested), as an in-place answer would."""
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            value.fill_(7.0) if value.is_floating_point() else value.fill_(1)
    elif isinstance(value, np.ndarray) and value.flags.writeable:
        value.fill(7)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (list, dict, np.ndarray, torch.Tensor)):
                _spoil(v)
            elif isinstance(v, float):
                value[i] = 7.0
    elif isinstance(value, dict):
        for v in value.values():
            _spoil(v)


@pytest.mark.parametrize("name", [n for n, ex in EXERCISES.items()
                                  if ex.compare is None and ex.run in (None, beyond_ppo.run_tensor)])
def test_a_right_answer_that_changes_its_inputs_in_place_passes(name, capsys):
    """check gives the learner's function and the reference each their own copy of a case: an answer that
    overwrites its inputs (reward_to_go computed in the rewards list, or leave_one_out in the rewards tensor, say)
    is still compared fairly. (The other exercises with a `run` are trainers: updating their tables and weights in
    place is their job.)"""
    import copy

    right = getattr(solutions, name)

    def in_place(*args, **kwargs):
        result = right(*copy.deepcopy(args), **copy.deepcopy(kwargs))
        for value in (*args, *kwargs.values()):
            _spoil(value)
        return result

    assert check(name, in_place), capsys.readouterr().out


def test_a_crash_names_the_line_of_the_learners_code(capsys):
    def to_go(rewards, gamma):
        out = list(rewards)
        return out[len(out)]  # one past the end

    assert not check("reward_to_go", to_go)
    out = capsys.readouterr().out
    assert "IndexError" in out and "return out[len(out)]  # one past the end" in out and "of to_go" in out, out


def test_the_per_token_rewards_check_sees_a_reward_that_ignores_the_mask(capsys):
    def unmasked(score, logp, logp_ref, mask, beta):  # the penalty paid on the padding too
        rewards = -beta * (logp - logp_ref)
        last = mask.sum(-1).long() - 1
        rewards[torch.arange(len(score)), last] += score
        return rewards

    assert not check("kl_shaped_rewards", unmasked)


def test_the_preference_loss_check_holds_at_large_margins(capsys):
    def naive(r_chosen, r_rejected):  # exp(800) overflows to inf
        return float(np.mean([np.log(1 + np.exp(-(c - r))) for c, r in zip(r_chosen, r_rejected)]))

    with np.errstate(over="ignore"):
        assert not check("bt_loss", naive)
    assert "expected" in capsys.readouterr().out


def test_the_silent_bug_runs_without_error_and_learns_worse_and_its_fix_passes(capsys):
    """Notebook 02's silent bug: the update as the notebook shows it trains CartPole without an error and ends far
    below the library's update on the same seed and steps; the fixed version passes the check."""
    import inspect
    import json
    from pathlib import Path

    from rlhf_lib.policy_gradient import ReinforceConfig, reinforce_update, train_reinforce_cartpole

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "02_policy_gradients.ipynb"
    shown = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
    assert inspect.getsource(silent_bugs.buggy_reinforce_update) in shown  # the notebook shows this very function
    runs = {fn: train_reinforce_cartpole(ReinforceConfig(total_steps=20_000, baseline="value", seed=0), progress=False,
                                         update_fn=fn).episode_returns
            for fn in (silent_bugs.buggy_reinforce_update, reinforce_update)}
    buggy, right = (np.mean(runs[fn][-20:]) for fn in (silent_bugs.buggy_reinforce_update, reinforce_update))
    assert buggy < 30 and right > 150, (buggy, right)  # no better than random, against clearly learning
    assert not check("bug_reinforce_update", silent_bugs.buggy_reinforce_update)
    assert check("bug_reinforce_update", solutions.bug_reinforce_update)


def _shown_in(notebook_name, fn):
    import inspect
    import json
    from pathlib import Path

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / notebook_name
    shown = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
    return inspect.getsource(fn) in shown


@pytest.mark.slow
def test_the_silent_ppo_bug_runs_and_learns_worse_and_its_fix_passes(capsys):
    """Notebook 03's silent bug: CartPole trains with the update as shown, without an error, and ends below a random
    policy, where the library's update on the same seed and steps keeps the pole up for hundreds of steps."""
    from rlhf_lib.cartpole import PPOConfig, ppo_update, train_ppo_cartpole

    assert _shown_in("03_actor_critic_ppo.ipynb", silent_bugs.buggy_ppo_update)
    last = {fn: train_ppo_cartpole(PPOConfig(total_steps=30_000, seed=0), progress=False,
                                   update_fn=fn).mean_recent_return(20)
            for fn in (silent_bugs.buggy_ppo_update, ppo_update)}
    assert last[silent_bugs.buggy_ppo_update] < 22 and last[ppo_update] > 200, last  # random: about 22
    assert not check("bug_ppo_update", silent_bugs.buggy_ppo_update)
    assert check("bug_ppo_update", solutions.bug_ppo_update)


@pytest.mark.slow
def test_the_silent_reward_model_bug_runs_and_learns_nothing_and_its_fix_passes(capsys):
    """Notebook 07's silent bug: a reward model trained with the step as shown stays at chance on held-out pairs
    (the gold preference). The library's step on the same pairs, seed and settings reaches at least 62%:
    tests/test_reward_model.py::test_training_learns_the_annotators_taste_and_saves trains it."""
    from rlhf_lib.feedback import SimulatedAnnotator, label_pairs, sample_pairs, to_pairs
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import RewardConfig, make_reward_model, pair_accuracy, train_reward_model

    assert _shown_in("07_reward_modeling.ipynb", silent_bugs.buggy_reward_model_step)
    policy, tokenizer = load_model()
    pairs = sample_pairs(policy, tokenizer, 800, seed=0)
    records = [vars(r) for r in label_pairs(SimulatedAnnotator(0.1, seed=0), pairs)]
    train, heldout = to_pairs(records[:600]), to_pairs(records[600:])  # the reward-model test's split
    model, tok = make_reward_model()
    run = train_reward_model(model, tok, train, RewardConfig(seed=0), progress=False,
                             step_fn=silent_bugs.buggy_reward_model_step)
    assert np.mean(run.losses[-20:]) > 0.6  # about log 2: nothing to learn from which row comes second
    assert pair_accuracy(model, tok, heldout)["gold_accuracy"] < 0.58  # chance, where the library's is >= 0.62
    assert not check("bug_reward_model_step", silent_bugs.buggy_reward_model_step)
    assert check("bug_reward_model_step", solutions.bug_reward_model_step)


def test_a_renamed_exercise_answers_to_its_old_name(capsys):
    """04's exercise was called hindsight_rewards; a notebook copied before the rename still checks, hints and
    reveals with it, and is told the new name."""
    assert check("hindsight_rewards", solutions.broadcast_rewards)
    hint("hindsight_rewards")
    reveal("hindsight_rewards")
    out = capsys.readouterr().out
    assert out.count("(hindsight_rewards is now called broadcast_rewards)") == 3
    assert "broadcast_rewards: correct!" in out and "Hints for broadcast_rewards:" in out
    assert "def broadcast_rewards(score, length):" in out


def _notebook_namespace_before(cells, index):
    """What the learner's cell at `index` can use: every import of the code cells up to it, and the names they
    bind to exercises (`x = use_or_library(...)`), in a fresh namespace; nothing else of the notebook."""
    import ast

    namespace: dict = {}
    for cell in cells[: index + 1]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(body=imports, type_ignores=[]), "<notebook>", "exec"), namespace)
        for node in tree.body:  # `x = use_or_library("name", ...)`: the library's answer, as once the learner's passes
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "use_or_library"):
                namespace[node.targets[0].id] = EXERCISES[node.value.args[0].value].reference
    return namespace


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_solution_runs_with_only_its_notebooks_imports(name, capsys):
    """The model answer, pasted into its exercise cell, passes there: the notebook imports everything it needs
    (a missing `torch` or `F` would make a right answer fail with a NameError)."""
    import inspect
    import json
    from pathlib import Path

    number = EXERCISES[name].notebook
    path = next((Path(__file__).resolve().parents[1] / "notebooks").glob(f"{number}_*.ipynb"))
    cells = json.loads(path.read_text())["cells"]
    index = next(i for i, c in enumerate(cells) if f'check("{name}"' in "".join(c["source"]))
    namespace = _notebook_namespace_before(cells, index)
    solution = getattr(solutions, name)
    exec(inspect.getsource(solution), namespace)
    assert check(name, namespace[solution.__name__]), capsys.readouterr().out


def _ppo_update_variant(mistake: str = ""):
    """A PPO update for notebook 03's exercise written its own way (log-probs by cross-entropy, the value loss first,
    zero_grad before the forward pass, the whitening inline), right when `mistake` is "" and otherwise wrong in one
    named place."""
    import torch
    import torch.nn.functional as F

    from rlhf_lib.ppo import entropy_from_logits

    def update(actor, critic, optimizer, batch, cfg):
        params = list(actor.parameters()) + list(critic.parameters())
        first = torch.randperm(len(batch.obs))
        for epoch in range(cfg.epochs):
            order = first if mistake == "one shuffle" and epoch else (first if epoch == 0 else
                                                                       torch.randperm(len(batch.obs)))
            for idx in order.chunk(cfg.minibatches):
                optimizer.zero_grad()
                values = critic(batch.obs[idx]).squeeze(-1)
                squared = (values - batch.returns[idx]) ** 2
                if cfg.value_clip_eps is not None and mistake != "no value clip":
                    old = batch.values_old[idx]
                    moved = old + torch.clamp(values - old, -cfg.value_clip_eps, cfg.value_clip_eps)
                    squared = torch.maximum(squared, (moved - batch.returns[idx]) ** 2)
                v_loss = (0.25 if mistake == "half twice" else 0.5) * squared.mean()
                logits = actor(batch.obs[idx])
                logp = -F.cross_entropy(logits, batch.actions[idx], reduction="none")
                adv = batch.advantages[idx] - batch.advantages[idx].mean()
                std = adv.std() if mistake == "sample std" else adv.pow(2).mean().sqrt()
                adv = adv / (std + 1e-8) if mistake != "no whitening" else batch.advantages[idx]
                log_ratio = batch.logp_old[idx] - logp if mistake == "inverted ratio" else logp - batch.logp_old[idx]
                ratio = log_ratio.exp()
                clipped = ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv
                surrogate = clipped if mistake == "no min" else torch.minimum(ratio * adv, clipped)
                bonus = cfg.ent_coef * entropy_from_logits(logits).mean()
                loss = -surrogate.mean() + cfg.vf_coef * v_loss + (bonus if mistake == "entropy sign" else -bonus)
                loss.backward()
                if mistake == "clip apart":
                    torch.nn.utils.clip_grad_norm_(list(actor.parameters()), cfg.max_grad_norm)
                    torch.nn.utils.clip_grad_norm_(list(critic.parameters()), cfg.max_grad_norm)
                else:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()

    return update


def test_a_ppo_update_written_its_own_way_passes(capsys):
    """Notebook 03: a right update need not copy the library's lines: log-probs by cross-entropy, the value loss
    first, zero_grad before the forward pass and the population-std whitening written out all pass."""
    assert check("ppo_update", _ppo_update_variant()), capsys.readouterr().out


@pytest.mark.parametrize("mistake, named", [
    ("inverted ratio", "the policy's loss"), ("no whitening", "the policy's loss"), ("no min", "the policy's loss"),
    ("sample std", "population std"), ("half twice", "0.5 times the library's"), ("entropy sign", "entropy term"),
    ("no value clip", "clipped value loss"), ("clip apart", "ONE torch.nn.utils.clip_grad_norm_"),
    ("one shuffle", "the loop")])
def test_the_ppo_update_check_names_the_part_that_is_wrong(mistake, named, capsys):
    """Each mistake fails, and the message names the part of the update it is in (it said the same for every
    mistake before: the first weight that differed)."""
    assert not check("ppo_update", _ppo_update_variant(mistake))
    assert named in capsys.readouterr().out


@pytest.mark.slow
def test_the_silent_reference_bug_runs_and_learns_worse_and_its_fix_passes(capsys):
    """Notebook 08's silent bug: with the reference's log-probs read one position late, PPO runs without an error; the
    KL it reports before any update (policy and reference are one model there, so the true KL is 0) is several
    nats, and after 8 iterations on the one-sentence task the policy writes fewer positive, grammatical sentences than
    with the library's reading, measured on fresh samples against gold."""
    from functools import partial

    from rlhf_lib.lm import COURSE_MODEL, load_model
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.rlhf import RLHFConfig, evaluate_policy, ppo_iteration, train_rlhf

    assert _shown_in("08_ppo_rlhf.ipynb", silent_bugs.buggy_reference_logprobs)
    reward_model, reward_tokenizer = load_reward_model(COURSE_MODEL.parent / "reward_model")
    reference, tokenizer = load_model()
    runs = {}
    for name, reading in (("buggy", silent_bugs.buggy_reference_logprobs), ("library", None)):
        policy, _ = load_model()
        iteration = ppo_iteration if reading is None else partial(ppo_iteration, reference_fn=reading)
        run = train_rlhf(policy, tokenizer, reward_model, reward_tokenizer, reference, RLHFConfig(iterations=8, seed=0),
                         progress=False, iteration_fn=iteration)
        runs[name] = (run.history[0]["kl_k1"], evaluate_policy(policy, reference, tokenizer, n=200))
    (kl_buggy, buggy), (kl_right, right) = runs["buggy"], runs["library"]
    assert kl_buggy > 5 and abs(kl_right) < 0.05, (kl_buggy, kl_right)
    assert buggy["positive_rate"] < right["positive_rate"] - 0.3, (buggy, right)
    assert buggy["grammatical_rate"] < right["grammatical_rate"] - 0.3, (buggy, right)
    assert not check("bug_reference_logprobs", silent_bugs.buggy_reference_logprobs)
    assert check("bug_reference_logprobs", solutions.bug_reference_logprobs)
