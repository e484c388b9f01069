"""Model answers to the notebooks' discussion questions.

A discussion question has no checker: it asks you to run something, look, and explain. Each is
numbered notebook.question ("Question 3.1" is notebook 03's first) and has a model answer here.
In a notebook:

    from rlhf_lib.answers import answer
    answer("3.1")          # prints the model answer to Question 3.1

Try the question first: the answer is most useful as a check of your own. A teacher can read
every answer in this file, top to bottom, or print the whole key with `python -m rlhf_lib.answers`.
Figures quoted below were measured on the course's reference machine (2 CPU cores) with the
notebooks' seeds; yours may differ a little on another machine.
"""

from __future__ import annotations

import textwrap

ANSWERS: dict[str, tuple[str, str]] = {
    "1.1": (
        "Rerun the cliff with epsilon = 0.01. Which path does SARSA learn now, and why?",
        """
        SARSA learns the values of the policy it follows, exploration included. On each step next to
        the cliff, an epsilon-greedy agent takes a random action with probability epsilon, and one random
        action in four is "down": a fall (-100) with probability about epsilon / 4 per edge step. Along the
        10 edge cells that costs about 10 * epsilon / 4 * 100 in expectation.

        - epsilon = 0.1: about 25, far more than the detour's cost, so SARSA walks two rows up (17 steps).
        - epsilon = 0.01: about 2.5, against 2 extra steps for walking one row above the edge, where a
          random "down" lands on the edge, not in the cliff. SARSA moves one row closer and takes
          15 steps (seeds 0 and 1 of the notebook's settings; a noisy run may still keep 17).
        - As epsilon goes to 0 the expected cost of the edge goes to 0 and SARSA's path becomes
          Q-learning's 13-step edge path: with no exploration the two methods learn the same values.

        The lesson for RLHF: an on-policy method evaluates the behaviour that produced its data, so how
        much the policy explores (its temperature) is part of what it learns to be good.
        """,
    ),
    "1.2": (
        'Give the classic world no step cost, `GridWorld(dataclasses.replace(LAYOUTS["classic"], step_reward=0.0))` '
        '(with `import dataclasses` and `from rlhf_lib.envs import LAYOUTS`), and run `value_iteration` on it with '
        '$\\gamma = 1$. What are $V^*$ and the greedy policy, and which warning of the value-iteration section does '
        'this illustrate?',
        """
        With no step cost and no discount, every route that avoids the pit is worth the goal's +1, however
        long, so V* = 1 in every live state; value iteration from V = 0 finds that in a few sweeps. But the
        values no longer tell a useful move from a useless one: a move into a wall leaves the agent where it
        is, worth 1, just like a step toward the goal. Every action except a step into the pit ties at Q = 1,
        `argmax` takes the first tied action, in most states "up", and the greedy policy walks from the start
        to the top-left corner and pushes into the wall forever. Its real return is 0.

        This is the warning about an agent that can circle forever at no cost. The Bellman equation also loses
        its single solution: any constant c >= 1 in every live state satisfies it, and value iteration started
        there would never move. A step cost, or any gamma < 1, makes a wasted step cost something and breaks
        the ties. RLHF also has gamma = 1; there every episode ends, at the end-of-text token or the length
        limit.
        """,
    ),
    "2.1": (
        "Set normalize=True with baseline='none'. Why does dividing the returns by their standard "
        "deviation help?",
        """
        In CartPole the reward to go G_t of an early step grows with the episode's remaining length:
        about 20 for a random policy, up to about 100 for a good one (gamma = 0.99 caps it at
        1 / (1 - gamma)). The REINFORCE gradient is proportional to these numbers, so a fixed learning rate
        is too timid at first and far too large later, when one batch of 500-step episodes produces a huge
        step that can throw a good policy away.

        Dividing by the batch's standard deviation makes the size of the weights, and so of the step,
        about the same at every stage: an adaptive step size. It keeps the direction of each batch's
        gradient unchanged (all weights are divided by the same positive number), so it is not a
        baseline: `ReinforceConfig(normalize=True)` does not subtract the mean, every sampled action is
        still pushed up, and the variance that a baseline removes is still there. Subtracting the mean
        as well (whitening, as PPO does with its advantages) adds a batch-mean baseline; that is slightly
        biased because the mean includes the sample itself (the leave-one-out baseline of the bandit
        section avoids this).
        """,
    ),
    "2.2": (
        'Suppose the bandit of the 20-seed runs paid 0 for a success and $-1$ for a failure (every reward 1 lower): '
        'without a baseline, would more or fewer runs get stuck on a worse arm? Explain with the variance plot ("the '
        'best baseline is near the mean").',
        """
        Fewer. Taking 1 off every reward is the constant baseline b = 1: it does not depend on the action, so
        the expected gradient is unchanged (E[grad log pi] = 0), and only the noise changes. On the variance
        plot, b = 1 lies near the minimum (at the mean reward, 0.8), far below b = 0. For a 0/1 reward the
        factor (R - b)^2 averages to the success rate at b = 0 and to the failure rate at b = 1: about 0.8
        against 0.2 for these arms.

        The mechanism changes too. With rewards 0 and 1, a pull is ignored or pushes its own arm up, so an arm
        that happens to be drawn often is pushed more and drawn more still; with lr = 2 that can lock a run
        onto a worse arm. With 0 and -1, a pull pushes its arm down only when it fails: an arm drawn often is
        criticised often, which spreads the draws out again, and the best arm, failing least, is pushed down
        least. What matters is how far b lies from the mean reward: b = 3 would be far noisier than none.
        """,
    ),
    "3.1": (
        "Train PPO with epochs=1, minibatches=1 (vanilla actor-critic), then with clip_eps=10 and "
        "epochs=20. How much slower is the first, and what does approx_kl do in the second?",
        """
        With epochs=1, minibatches=1, PPO takes one gradient step per batch of 1,024 environment steps
        instead of 40 (10 epochs x 4 minibatches). At the first step of a batch the ratio is exactly 1, so
        the clip never acts: this is plain advantage actor-critic. With the same learning rate it makes
        40 times fewer updates from the same samples, so it needs many times more environment steps
        than PPO's defaults, which reach a return of 475 after about 58,000 steps on every seed
        (`benchmarks/README.md`); within the notebook's budget expect it to be still far from solved.
        Each batch of samples is used once and thrown away; reusing samples safely is what PPO is for.

        With clip_eps=10 the clip never binds (a ratio would have to reach 11 or 0), and 20 epochs push
        the policy as far as the gradient of rho * A leads on the same batch. The advantages were
        measured for the old policy and stop describing the new one, and nothing stops the push. Compare
        the approx_kl panel with the default run's: it is many times larger and spiky, the clip fraction
        is 0 by construction, and the return curve becomes erratic: it can rise, collapse and recover,
        and a run can get stuck on a bad policy. With the clip, each sample stops pushing once its ratio
        leaves [1 - eps, 1 + eps], so approx_kl per iteration stays small and steady.
        """,
    ),
    "3.2": (
        '`collect_rollout` bootstraps an episode cut off at 500 steps from $V$. Suppose it treated the cut like a '
        'fall instead (reward 1, nothing after): what value targets would the critic get for the last steps of a '
        '500-step episode, why can it not fit them, and what happens to the advantages?',
        """
        The last step would get a target of exactly 1 (advantage 1 - V, plus V). The steps before it lose the
        bootstrapped value, about 99, with the weight (gamma lambda)^k at k steps before the cut, so their
        targets fall toward 1 over the last few dozen steps, while mid-episode steps still get about 100.
        CartPole's four observed numbers contain no clock: a balanced state at step 495 looks like one at
        step 200. The critic gets targets near 100 and near 1 for the same kind of state and can only fit
        something in between: its loss cannot reach 0.

        The last steps' advantages become large and negative whatever action was taken: a penalty for the
        time, not the action. As the cut does not depend on the action, it pushes in roughly no consistent
        direction, but it adds large noise once the policy reaches 500, and in whitening these outliers
        inflate the standard deviation and shrink every other advantage. The consistent fixes: bootstrap at
        the cut, as the library does (the episode is not over), or put the time left into the observation,
        making the limit a visible end (Pardo et al., 2018).
        """,
    ),
    "4.1": (
        "k3 is unbiased and never negative, and k1 can be negative per token. Yet the penalty that goes into the "
        "reward is -beta k1, not -beta k3. Why?",
        """
        Because the reward is where an estimate belongs, and k1 is the one whose gradient is right there.
        In 08 the KL penalty enters as a reward, -beta * k1_t per token, and PPO then follows the
        policy-gradient estimator E[(reward) * grad log pi]. With k1 = log pi(y) - log pi_ref(y) and y
        sampled from pi, the policy gradient of E_pi[-k1] is exactly -grad KL(pi || pi_ref) (the extra
        term E_pi[grad log pi] is 0, the same fact that makes baselines free). An unbiased value
        estimate plus the score-function gradient gives an unbiased gradient.

        Used as a *loss*, differentiated directly (as some GRPO implementations do with k3, averaged over
        the sampled tokens), the story changes: the gradient of the sample mean of k3 with respect to the
        policy's log-probs, with the samples held fixed, is E_pi[(1 - pi_ref/pi) grad log pi], which is the
        gradient of KL(pi_ref || pi), the *reverse* KL, not of KL(pi || pi_ref). So k3 is an unbiased
        estimate of the value but a biased estimate of the gradient we wanted. k1 used directly as a loss
        is worse still: its expected gradient is E_pi[grad log pi] = 0. Which estimator is right depends
        on whether you need a number (k3: low variance, never negative) or a gradient (k1 in the reward).

        The sign of k1 per token is not a problem: its mean over samples from pi is the KL. It is a
        problem only when the samples do not come from pi (notebook 08's forced minimum length).
        """,
    ),
    "4.2": (
        'In the credit-assignment cell, call `discounted_returns` with `gamma=0.9` instead of 1. How much of the '
        'score reaches the first token of the review, and what would a policy trained on these returns learn about '
        'the length of its reviews?',
        """
        With gamma = 0.9 the return of token t is 0.9^(n - 1 - t) times the score: the last token keeps all
        of it, and the first token of a 20-token review gets 0.9^19, about 0.14 of it. That is backwards for
        a review. The first tokens after a prompt such as "The plot was" are the adjective (or a negation or
        intensifier before it), often the words that most decide the sentiment, yet they get the least credit.

        Discounting also changes what is best. From the first token the return is gamma^(n - 1) times the
        score, so a review judged positive is worth more the shorter it is, and one judged negative is worth
        more the longer it is (the verdict comes later and counts less). The policy would learn to be brief
        when it expects praise and to ramble when it expects a bad score: a length bias no reader asked for.
        With gamma = 1 every token gets the whole score, and no discount is needed to keep sums finite: every
        response ends, at end-of-text or at max_new_tokens. Notebook 08 keeps gamma = 1 and cuts
        the variance with a critic and GAE's lambda (0.95).
        """,
    ),
    "5.1": (
        "How many demonstrations did the first SFT run use, and how many words is that?",
        """
        The full setting used 2,000 demonstrations (1,000 in the fast setting), each a course prompt and
        a positive completion: about 16 words each, 32,000 words in all (28,000 of them written by the
        demonstrator, the completions). At typing speed, that is hours of a person's work for a single
        lesson ("write positively"), and the demonstrations had to be *filtered* first: we kept only
        reviews that VADER scores at 0.5 or more.

        That filter is itself feedback. Sampling reviews and keeping every one that passes a threshold is
        rejection sampling, and fine-tuning on the survivors is rejection-sampling fine-tuning: the judge's
        preference, not the writer's skill, decides what the model learns. (Best-of-n keeps the single best of
        n draws: a different distribution, whose KL from the writer is at most log n - (n - 1) / n, where
        rejection sampling's is -log P(accept).) A preference costs one click per pair;
        notebook 06 collects 2,000 of them in the time a person writes a few dozen reviews.
        """,
    ),
    "5.2": (
        'In Exercise 5.3, suppose `sft_step` compared the logits at each position with the label at the *same* '
        'position, forgetting the shift by one. What would the loss curve show, and what would the model write after '
        'training?',
        """
        The loss would fall fast, far below the real run's, and the model would be ruined. In a causal
        transformer the output at position t is computed from tokens 0 to t, the token at t included.
        Without the shift, each completion position's target is the token the model is reading there: the
        task becomes "copy your input", not "predict the next token". Copying is easy (the token's own
        embedding sits in the residual stream, and the course GPT-2 scores its outputs with the same, tied,
        embedding matrix), so the curve heads toward 0; an honest loss cannot go below the demonstrator's
        uncertainty about the next word.

        Sampling asks what follows the prompt, and the model has learned to answer with the token it last
        read, so it would most likely write "The plot was was was ..." up to the 64-token limit: end-of-text
        was a target only where end-of-text was the input. VADER calls such text neutral and the grammar
        rejects it, so the promise's checks fail. This is why the checker of 5.3 names the shift first when
        your first loss differs from the library's. A loss that looks too good is a bug until shown
        otherwise.
        """,
    ),
    "6.1": (
        "Copy the file labels_path, break one line of the copy and read it with read_records. What does the "
        "error say, and is the file changed?",
        """
        `read_records` (which `load_preferences` uses too) stops at the broken line with a
        ValueError naming the file and the line number, for example
        ".../labels.jsonl, line 17: not valid JSON (Expecting ',' delimiter); fix or remove that line,
        nothing was changed". A line that is valid JSON but not a valid record (a choice other than
        a, b, tie or skip, a missing field) is named the same way. The file is not changed: reading never
        writes, so the other lines, and the labels a person spent an hour on, are intact. That is the
        point of one JSON record a line, appended and flushed one at a time: one bad line costs one
        label, never the file.
        """,
    ),
    "6.2": (
        'Suppose you interrupt the labelling cell while `label_into` is at work (Kernel → Interrupt) and run the cell '
        'again. Are the labels it adds the ones an uninterrupted run would have written, and does the difference '
        'matter for the reward model of notebook 07?',
        """
        The labels will differ, but they are just as good. The rerun builds a new
        `SimulatedAnnotator(0.1, seed=0)`, whose `random.Random(0)` starts again from its first number.
        `label_into` skips the pairs already in the file without calling `compare`, so they draw nothing:
        the first pair not yet judged gets the number that pair 1 got in the first run, and so on (a tie,
        two equal tastes, draws nothing in either run). From there on, a label matches the uninterrupted
        run's only where the shifted number happens to fall on the same side of `prob_a`.

        For notebook 07 it does not matter. A generator's numbers are independent uniforms and the pairs
        were fixed before any was drawn, so each new label is still "a" with probability `prob_a`, the same
        Bradley-Terry noise. What is lost is reproducibility bit for bit: one seed gives one file only if
        the run was never interrupted. To keep it, make each judgement depend on the seed and the pair alone
        (a generator seeded from both), not on how many draws came before. Real annotators have no seed: the
        file is the record, which is why each line is on disk before the next pair.
        """,
    ),
    "7.1": (
        "Score 'The plot was superb superb superb.' under a last-token and a sum head. Which would PPO "
        "learn to exploit, and how would the grammar check catch it?",
        """
        The sum head adds one term per token, so each extra "superb" adds roughly the same positive
        amount: the score grows with the number of positive words, without limit. PPO follows the
        gradient of the reward, and the cheapest way up under a sum head is to write more adjectives:
        "The plot was superb superb wonderful great ...". That is what `benchmarks/README.md` reports for
        PPO against a sum head.

        The last-token head reads one hidden state, the end of the text. Repeating a word moves that
        state to places the model never saw in training, so the score may be high or low, but it is not
        built to grow with repetition; there is no ready-made direction to climb.

        `is_grammatical` parses the text against the review language, in which an aspect takes one
        adjective phrase (with an optional intensifier or negation): "superb superb superb" is not a
        sentence of the language, so the grammatical rate falls as the policy hacks the sum head. The
        reward model never sees that check; it is a gold measurement only we can make, and it is why
        notebook 08 watches the grammar of every batch.
        """,
    ),
    "7.2": (
        "The annotator's labels agree with the gold taste on about 92% of pairs. Is that a ceiling for the reward "
        "model's held-out agreement with gold, and what would it mean if the right panel of the training plot "
        '(agreement with the training labels) climbed well above 92% in the late epochs?',
        """
        No. The labels are noisy, but the noise is not biased: where taste(A) > taste(B), the annotator says
        A with probability sigma(gap / tau) > 1/2, on every such pair. Maximum likelihood fits that
        probability, not each label, and sigma is monotone, so a model that had learned the annotator
        exactly would rank every decided pair like the gold: 100%, learned from labels that are 92% right.
        Across many similar pairs the flipped labels average away, which is why more labels keep helping.
        The 90% or so of the last head is a limit of 2,000 labels and of the model, and it shows in the
        close calls, where flips are common: a pair 0.05 apart is flipped with probability sigma(-0.5),
        about 38%.

        The argument runs the other way for the training plot. A model that ranks exactly like gold agrees
        with a label only when the label agrees with gold, about 92% of the time. Agreement well above that,
        on pairs seen in earlier epochs, means the model is fitting the flipped labels themselves, the
        annotator's coin tosses: memorised noise that does not carry over to new pairs. Judge the model on
        held-out pairs.
        """,
    ),
    "8.1": (
        "Rerun the main run with a fixed coefficient, whole_review_config(plain=True, target_kl=None), and with "
        "adam_eps=1e-8. What changes in the KL and clip-fraction panels, and why?",
        """
        Fixed coefficient. With beta fixed at 0.3 nothing steers the KL toward the 2-nat target: the KL
        goes wherever the reward's gain per nat of drift balances beta (the optimum of notebook 08's
        objective, pi* proportional to pi_ref * exp(r / beta), has a KL set by beta and by how far the
        reward model's scores spread over what the reference writes, not by any target). The adaptive
        controller instead raises beta (by up to 20% per horizon of 256 responses, so up to 5% after a
        batch of 64) when the KL is over its target and lowers it when there is room left, so its KL curve
        rises to the target and stays near it. With a fixed beta the KL curve just follows the optimisation
        and can end above or below the target. The clip fraction and approx_kl of each update change little:
        they measure the step size of PPO, which beta does not set.

        adam_eps=1e-8. Adam's step for one weight is lr * m / (sqrt(v) + eps), with m and v running
        averages of the gradient and its square. Where a weight's gradient is much smaller than eps, the
        step is about lr * g / eps, small; where it is much larger, the step is about lr * sign(g), the
        full learning rate, however small the gradient. With eps = 1e-8 almost every weight of the policy
        is in the second regime from the very first step, so the first updates move every weight by about
        the full learning rate: approx_kl and the clip fraction of the first iterations jump, and the KL
        to the reference rises faster.

        Why 1e-5 in our config: the original RLHF code (Ziegler et al. 2019) used TensorFlow's Adam with
        eps = 1e-5, and TensorFlow adds eps to the square root of v *before* bias correction (the
        "epsilon hat" of the Adam paper's section 2), while PyTorch adds it after. Early in training the
        uncorrected sqrt(v) is small (after one step it is sqrt(1 - beta2) = 3% of the corrected one), so
        TensorFlow's 1e-5 acts like an eps of about 3e-4 in PyTorch's placement at the first step, some
        30,000 times PyTorch's default 1e-8. Reproductions that kept PyTorch's default found the early
        updates far more aggressive than the original's; eps = 1e-5 in PyTorch's placement comes much
        closer.
        """,
    ),
    "8.2": (
        "Before any PPO, the reward model ranked the course model's broken reviews at 0.43 on average, close to a "
        "grammar-blind model's 0.5, though its labels came from a reader who puts every fluent review above every "
        'broken one. Why did it not learn that rule, and why does the blind spot matter once PPO optimises against '
        'it?',
        """
        The labels rarely ask about grammar. The course model writes few broken reviews (4.7% of the 300
        here), so few pairs hold one (6% of the whole-review pairs in `benchmarks/README.md`, "The reading
        person"). In about half of those the fluent review is also the more positive one, so sentiment alone
        gives the right label. Grammar decides some 3% of labels, and a model that reads sentiment fits the
        rest. The sum head makes this worse: it builds the score from the words, but being broken is a
        property of the whole review, and a fifth positive sentence or a repeated positive phrase even adds
        tokens that the sum pays for. (A last-token head trained on the same labels is as blind:
        benchmarks/HISTORY.md.)

        On the course model's samples the blind spot cost little: broken reviews were rare and ranked as if
        at random. PPO moves probability toward whatever scores high, and broken reviews full of positive
        words score near the top (+3.76, against the policy's mean of 1.60 from the start of text). Nothing
        in the reward pushes back, so the broken share grew from 4.7% to 7.0%. The KL penalty and PPO-ptx
        slow the drift. Labels on the policy's own reviews (notebook 11) are the field's answer, and they must
        hold enough broken reviews to teach the rule: 2,000 labels of the round-1 policy's reviews did not
        (benchmarks/HISTORY.md).
        """,
    ),
    "9.1": (
        "Which of Manheim and Garrabrant's kinds of Goodhart do you see at the start of the PPO run, and which at "
        "the end? What in the data would have prevented it?",
        """
        At the start, regressional Goodhart. The proxy agrees with gold on most fresh pairs but not all:
        it is the gold plus an error. Picking the reviews with the highest proxy score also picks the
        ones whose error is most positive, so the proxy rises faster than the gold (best-of-n shows the
        same gap with no training at all). The gold still rises: the proxy's signal outweighs its noise.

        At the end, extremal Goodhart. The reward model learned from fluent reviews, where "more positive
        words" and "a more positive review" go together. Far from that region the relation breaks: a
        string of positive adjectives is not a review, but the reward model (a score per token, summed)
        pays for every positive word, and VADER counts them too. Only the grammar half of the gold sees the
        damage. There is an adversarial flavour as well: no one with a goal of their own games the reward
        model, but the optimiser searches for the reward model's errors as if someone did, and PPO is a
        strong searcher. Causal Goodhart (intervening on something that only correlates with the goal) is
        not what happens here.

        What would have helped: labels on what the policy writes as it moves (collect comparisons of the
        current policy's samples and refit the reward model, as InstructGPT and Anthropic's online RLHF did),
        so broken text gets labelled bad the moment it appears; broken or off-distribution negatives in the
        reward model's data; and, without new labels, staying where the proxy was trained: a KL budget
        (notebook 08), PPO-ptx, or stopping at the predicted peak.
        """,
    ),
    "9.2": (
        "Does a KL penalty move the frontier (more gold at the same KL) or only stop the run earlier? What does "
        "that mean for choosing the KL coefficient of notebook 08?",
        """
        As far as one seed per coefficient can tell, it only stops earlier, as Gao et al. found. In the
        benchmark's last panel (a proxy from 4,000 pairs, seed 0), the runs with coefficients 0, 0.05 and
        0.2 lie on one curve of gold against sqrt(KL) up to their peaks (about +0.5 over the base at 2.5-3.3
        nats): at a given distance from the course model, the penalty did not make the reviews better. What
        it changed is where the run ends. Without a penalty, and with 0.05, the policy went on past the peak
        into broken text (gold -1); with 0.2 the KL stayed at 3-4 nats for the rest of the run and the gold
        stayed near the peak (its points scatter between +0.3 and +0.65, 64 reviews each). Points of single
        runs are noisy, so a small shift of the frontier would not show; several seeds per coefficient would
        be needed to rule it out.

        So the coefficient is a stopping rule in disguise: it sets how far from the reference the policy
        settles, and that distance decides whether it settles before or after the gold peak. That is why
        notebook 08 states a KL target in nats and lets the adaptive coefficient find the value that holds
        it: the target is what you choose, and you choose it below the point where a proxy like yours starts
        to fail (measured here with a gold judge; in practice with held-out human labels). A higher frontier
        needs something else: a better proxy (the best-of-n curves rise with more labels), or labels on the
        policy's own new samples.
        """,
    ),
    "10.1": (
        "Can DPO's implicit reward, which leaves out beta log Z(x), compare answers to different prompts? "
        "And why did notebook 07's reward model need a normalisation that DPO never does?",
        """
        No. The implicit reward beta log pi(y|x) / pi_ref(y|x) equals the reward of the KL-regularised
        optimum only up to beta log Z(x), a different constant for every prompt. Between two answers to
        the SAME prompt the constant cancels, which is all Bradley-Terry needs; between two prompts it
        does not, so "0.4 for this answer, 0.1 for that one to another prompt" says nothing. It has a
        second bias: a long completion sums more log-ratios than a short one, so its implicit reward is
        larger in size for the same per-token change (IPO averages per token for this reason).

        The reward model of notebook 07 is fitted with the same pairwise loss, so it too is defined only up
        to a constant per prompt (and in practice one overall constant). PPO adds that number to a KL
        penalty measured in nats, so its offset and scale matter: a reward model shifted by +5 would make
        every response look good and the KL term relatively weak. Notebook 07 therefore sets mean 0 and
        standard deviation 1 on the reference's own samples. DPO never turns the reward into a number
        that is added to anything else: only differences of log-ratios of the same prompt enter its loss,
        so there is nothing to normalise. The price is that DPO gives no score for a single text, which is
        what best-of-n, PPO and the teacher's dashboard need.
        """,
    ),
    "10.2": (
        "RLOO and GRPO had no value head. What did they pay for that, compared with PPO, and what would "
        "happen to them with responses_per_prompt=1?",
        """
        They pay in samples per prompt. PPO's value head learns, across all prompts, how much reward to
        expect from each state, so one response per prompt is enough to compute an advantage at every
        token. RLOO and GRPO get their baseline from other responses to the same prompt: with the same 64
        responses an iteration they see 16 prompts instead of 64, and their advantage is one number for the
        whole response (no credit assignment between tokens: in a whole review of up to 64 tokens, one broken
        sentence is blamed on every token, the good sentences' too).
        What they save: the value head's forward and backward pass, its loss and its hyperparameters
        (vf_coef, value clipping, lambda), and a critic that is wrong early in training (notebook 03's
        explained variance starts near 0).

        With responses_per_prompt=1 there is no one else in the group. RLOO's leave-one-out mean divides
        by k - 1 = 0, so `rloo_advantages` refuses; GRPO's group mean is the reward itself, so every
        advantage is exactly 0 and nothing is learned (the library refuses both at the first iteration).
        A group where all k rewards are equal teaches nothing either: a verifier that every sample passes
        (or fails) gives no signal, which is why GRPO runs filter or resample such prompts.
        """,
    ),
    "11.1": (
        "Every round's KL is measured against the course model, not against the previous round's policy. Why? "
        "What would the KL budget mean if each round's reference were the previous policy, after five rounds?",
        """
        The KL penalty stands for "stay close to what we trust": the model whose language and
        behaviour we know (InstructGPT's supervised model, here the course model). Measured from that
        one fixed point, a budget of 3 nats is a budget for the whole loop: however many rounds run,
        the policy never strays more than that from the model we trusted.

        With each round's reference set to the previous policy, every round may spend its budget again:
        five rounds of 3 nats can move the policy far further than 3 nats from where the loop began
        (KL does not simply add up along a chain, but nothing bounds it either). Small steps each
        round, a long walk in total: exactly the drift into text no reward model was trained on that
        the penalty exists to prevent. Some pipelines do re-anchor (Llama 2 restarted each round from
        an earlier checkpoint and kept its reference fixed); whatever is done, the KL that is reported
        should say from what.
        """,
    ),
    "11.2": (
        "The model trained on the new labels alone lost ground on the course model's pairs. Why, and why does that "
        "matter for round 2's PPO, which only ever samples the current policy?",
        """
        The new labels are nearly all pairs of two positive, fluent reviews; trained only on
        them, the model fits that narrow slice and forgets what separated the rest (negative from positive,
        broken from fluent): catastrophic forgetting, the usual fate of a network fine-tuned on a shifted
        distribution. A thousand labels are also too few to learn the whole taste again.

        It matters because PPO searches the whole space the policy can reach, not only where it stands.
        If v2 no longer knows that a negative or broken review is worse, the policy can drift back toward
        them and be paid for it. Replaying the old labels keeps the reward model right where it was right,
        and lets the new labels correct it where the policy now writes.
        """,
    ),
    "11.3": (
        "You can afford 100 labels a round. Which 100 pairs of the policy's samples would you ask about: random "
        "ones, those v1 is least sure of (the smallest reward margin), or those it is most sure of?",
        """
        Random pairs are the honest baseline: they show the reward model the policy's text as the policy
        writes it, and the labels measure the model without bias.

        The least sure (uncertainty sampling, the classic of active learning) spends labels where the model
        cannot decide, so each label moves it most, but near the margin many pairs are close calls that
        the annotator finds hard too: noisy labels on questions that matter little.

        The dangerous errors are the confident ones: the blind spots above, where v1 prefers the broken or
        less positive review by a wide margin. PPO climbs exactly those margins. Uncertainty sampling never
        asks about them (the model is sure), and random sampling finds them only as often as they occur. A
        good plan mixes: mostly random pairs, plus pairs that contain the reviews the reward model scores
        highest, since the policy is about to write more of those. Llama 2 sampled pairs from different
        model variants and temperatures for the same reason: diversity where the policy is heading.
        """,
    ),
    "12.1": (
        "The judge agreed with gold less often than the scalar reward model, and in RLAIF its labels train a "
        "reward model rather than serving as PPO's reward themselves. Why train a reward model on a judge's labels "
        "instead of asking the judge during PPO?",
        """
        Cost first. PPO scores every sampled review, batch after batch: a reward model does it in one forward
        pass per review, the judge writes a critique token by token for every pair. And the judge answers a
        different question: it compares two reviews, while PPO wants a number for one. You could compare each
        sample against a fixed reference review, but then the reward is a win or a loss, with no size.

        A reward model trained on many judge labels also averages the judge's noise: where the judge's verdicts
        on similar pairs disagree, the reward model learns their tendency. It cannot average away the judge's
        biases, though: a bias that is consistent (the first place, the longer review) is learned like taste.
        And the reward model's agreement with gold sits below the judge's: it learns from labels, not from
        the knowledge behind them. Generative reward models used directly as the reward (a judge asked for a
        score during PPO, or a verifier in GRPO) pay that cost for the judge's reasoning.
        """,
    ),
    "12.2": (
        "The length preference of this judge sits near one half; judges studied by Zheng et al. (2023) prefer the "
        "longer answer. Where does a judge's length bias come from, and how would it show in a policy trained on "
        "its labels?",
        """
        From its training labels. This judge learned from labels that depend on the words' sentiment only, and
        one more neutral sentence changes nothing, so it had nothing to learn about length. A large judge learned
        from people, and people, given two answers, often prefer the one that says more: it looks more careful.
        Instruction tuning passes that preference on.

        A policy trained on a length-biased reward learns the cheapest way up the reward: say more. Its answers
        grow longer round after round while their quality does not, the length hacking seen in RLHF'd chat
        models (Singhal et al. 2023). The remedies measure the bias first, as this notebook does, then control
        for it: pairs of equal length for labelling, a length penalty in the reward, or a length-controlled win
        rate when evaluating (notebook 13).
        """,
    ),
    "12.3": (
        "The judge fine-tuned on the 200 labels was close to chance, and the labels of the shipped judge made the "
        "best reward model. What did the shipped judge bring that 200 labels could not, and what plays its part "
        "when RLAIF uses a large language model?",
        """
        Knowledge. A judge cannot know more than it learned: made from the course model and 200 labels, it has
        seen 200 verdicts, too few to learn a taste, and its thousands of labels repeat that ignorance. The
        shipped judge learned from 120,000 labelled pairs; its labels carry that knowledge to the reward model,
        which the budget alone could not buy.

        With a large model, pretraining and instruction tuning play the part of the 120,000 labels: the judge
        already knows what a helpful, harmless or fluent answer looks like before anyone spends a label. That is
        why RLAIF can match RLHF (Lee et al. 2023): the judge's prior is rich. The 200 human labels are then
        best spent checking the judge (its agreement with people, its biases) and on the cases it gets wrong,
        not on teaching it from scratch. The reward model trained on the judge's labels still agrees with gold
        less often than the judge does: each step from knowledge to labels to a model loses some.
        """,
    ),
}


def answer(number: str) -> None:
    """Print the model answer to the discussion question `number` ("notebook.question", e.g. "3.1")."""
    key = str(number).strip().removeprefix("Question").strip()
    if key not in ANSWERS:
        raise KeyError(f"no discussion question {number!r}; known: {', '.join(ANSWERS)}")
    question, text = ANSWERS[key]
    print(f"Question {key}. {question}\n")
    print(textwrap.dedent(text).strip())


def answer_key() -> str:
    """Every question and its model answer, in course order: the teacher's key."""
    parts = []
    for key in sorted(ANSWERS, key=lambda k: tuple(int(x) for x in k.split("."))):
        question, text = ANSWERS[key]
        parts.append(f"Question {key}. {question}\n\n{textwrap.dedent(text).strip()}\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(answer_key())
