"""A judge that is a language model: the critique kind of reward model (a generative judge).

The scalar reward model of notebook 07 gives a number (the *score* kind); `reward_model.plackett_luce_loss`
trains one from rankings of k responses (the *ranking* kind). A judge reads two reviews and writes, in the
review language's own words, what drives its verdict, then the verdict:

    <review A><|sep|><review B><|sep|><|A|>great.<|B|><|broken|><|verdict|><|A|>

Each review's critique rates it in the language's words ("excellent.", the word for its band of VADER's
score), or says <|broken|> when it is not a review of the language. The separators and marks are special tokens added
to the course tokenizer (a word outside the language would cost it 3-7 tokens). A pair fits the model's
128 tokens when each review (start and completion) is at most `MAX_REVIEW_TOKENS` tokens; a pair that does
not fit is refused (`check_pair`).

The judge labels wherever an annotator does: `compare(prompt, a, b)` -> "a" | "b" | "tie". Decoding is
greedy; the verdict is whichever of <|A|> and <|B|> the model finds likelier after <|verdict|>. A judge has
biases that must be measured (`measure_biases`, `self_preference`): reading the pair in the other order may
change its verdict, so `swap=True` reads both orders and answers "tie" where they disagree.

The shipped judge is `assets/judge/`, rebuilt by `python scripts/build_judge.py` (`train_judge`).
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf_lib.runtime import check_count
from rlhf_lib.threads import share_cores

SEP, MARK_A, MARK_B, VERDICT, BROKEN = "<|sep|>", "<|A|>", "<|B|>", "<|verdict|>", "<|broken|>"
SPECIAL_TOKENS = (SEP, MARK_A, MARK_B, VERDICT, BROKEN)
MAX_REVIEW_TOKENS = 40
"""the longest review (start and completion, in tokens) a pair for the judge may hold"""
MAX_CRITIQUE_TOKENS = 40
"""the most tokens the judge writes before its verdict (two critiques and their marks)"""
JUDGE = Path(__file__).resolve().parents[1] / "assets" / "judge"
"""the shipped judge (rebuilt by scripts/build_judge.py)"""


# ---- critiques and the judge's text


RATING_WORDS = ((0.95, "absolutely perfect"), (0.9, "perfect"), (0.8, "excellent"), (0.6, "great"), (0.3, "good"),
                 (0.05, "fine"), (-0.05, "uneven"), (-0.3, "weak"), (-0.6, "bad"), (-0.8, "awful"), (-0.9, "terrible"),
                 (-0.95, "dreadful"), (-2.0, "absolutely dreadful"))
"""how a critique words a fluent review's VADER compound score: the first band whose floor the score reaches"""


def critique_of(text: str) -> str:
    """What a reader says of one review, in the language's own words: the word for the band of its VADER score
    (`RATING_WORDS`) and a full stop ("excellent."), or <|broken|> when it is not a review of the language.
    Writing this first and the verdict after it is the judge's chain of thought: it rates each review, then
    compares."""
    from rlhf_lib.evaluate import gold_sentiment
    from rlhf_lib.reviews import is_grammatical

    if not is_grammatical(text):
        return BROKEN
    score = float(gold_sentiment(text)[0])
    return next(word for floor, word in RATING_WORDS if score >= floor) + "."


def judge_prompt(text_a: str, text_b: str) -> str:
    """What the judge reads: the two whole reviews, each followed by the separator."""
    return f"{text_a}{SEP}{text_b}{SEP}"


def judge_completion(text_a: str, text_b: str, choice: str, critique=critique_of) -> str:
    """What the judge learns to write after `judge_prompt`: both critiques (`critique(text)` of each review; None:
    the marks alone, a judge of the verdict only), then the verdict ("a" or "b")."""
    if choice not in ("a", "b"):
        raise ValueError(f"a verdict is 'a' or 'b', got {choice!r}")
    words = critique or (lambda text: "")
    return f"{MARK_A}{words(text_a)}{MARK_B}{words(text_b)}{VERDICT}{MARK_A if choice == 'a' else MARK_B}"


def readable(critique: str) -> str:
    """A critique as a person reads it: "A: ... B: ..." with a broken review called so."""
    text = critique.replace(BROKEN, "(broken)").replace(MARK_A, "A: ").replace(MARK_B, " B: ")
    return re.sub(r"\s+", " ", text).strip()


def unswapped(critique: str) -> str:
    """A critique written about the pair read the other way round (B first), put back in the pair's own order."""
    match = re.fullmatch(re.escape(MARK_A) + "(.*)" + re.escape(MARK_B) + "(.*)", critique, flags=re.DOTALL)
    if match is None:  # not the two critiques in their places: leave it as written
        return critique
    return f"{MARK_A}{match.group(2)}{MARK_B}{match.group(1)}"


def review_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_pair(tokenizer, prompt: str, a: str, b: str, where: str = "the pair") -> None:
    """Refuse a pair the judge cannot read: text fields only, two different completions, each whole review at
    most `MAX_REVIEW_TOKENS` tokens (so reviews, critiques and verdict fit the 128-token context)."""
    for name, value in (("prompt", prompt), ("completion_a", a), ("completion_b", b)):
        if not isinstance(value, str):
            raise ValueError(f"{where}: {name} must be text, got {type(value).__name__}")
    if a == b:
        raise ValueError(f"{where}: the two completions are identical")
    for name, text in (("A", prompt + a), ("B", prompt + b)):
        n = review_tokens(tokenizer, text)
        if n > MAX_REVIEW_TOKENS:
            raise ValueError(f"{where}: review {name} is {n} tokens; the judge reads reviews of at most "
                             f"{MAX_REVIEW_TOKENS} (with their start)")


# ---- the judge


@dataclass
class Verdict:
    choice: str
    """"a", "b", or with swap "tie" where the two orders disagree"""
    critique: str
    """what the judge wrote before its verdict, readable ("A: ... B: ...")"""
    critique_swapped: str | None = None
    """with swap: what it wrote reading B first, put back in the pair's order ("A:" is still completion A)"""


class Judge:
    """A causal LM trained to write `judge_completion` after `judge_prompt`; `name` is the annotator its labels
    carry ("judge:<folder name>" when loaded with `load_judge`)."""

    def __init__(self, model, tokenizer, name: str = "judge"):
        missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"this tokenizer lacks the judge's tokens {missing}: it is not a judge "
                             "(build one with scripts/build_judge.py)")
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    @torch.no_grad()
    def _read(self, texts_a: list[str], texts_b: list[str]) -> list[tuple[str, str]]:
        """(choice, raw critique) for each pair of whole texts, greedy, in one batch."""
        from rlhf_lib.lm import encode_prompts, position_ids_from_mask

        ids, mask = encode_prompts(self.tokenizer, [judge_prompt(a, b) for a, b in zip(texts_a, texts_b)])
        B, verdict, a_id, b_id = len(ids), self.ids[VERDICT], self.ids[MARK_A], self.ids[MARK_B]
        positions, past, inputs = position_ids_from_mask(mask), None, ids
        written = [[] for _ in range(B)]
        choices: list[str | None] = [None] * B
        for step in range(MAX_CRITIQUE_TOKENS + 1):
            share_cores()
            out = self.model(input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=past,
                             use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
            token = logits.argmax(-1)
            for row in range(B):
                if choices[row] is not None:
                    continue
                if written[row] and written[row][-1] == verdict:  # the verdict: the likelier of the two marks
                    choices[row] = "a" if logits[row, a_id] >= logits[row, b_id] else "b"
                elif step >= MAX_CRITIQUE_TOKENS - 1:  # out of room: the verdict comes now
                    token[row] = verdict
            if all(c is not None for c in choices):
                break
            for row in range(B):
                if choices[row] is None:
                    written[row].append(int(token[row]))
            inputs, positions = token[:, None], positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], dim=1)
        critiques = [self.tokenizer.decode(w[:-1], skip_special_tokens=False) for w in written]
        return list(zip(choices, critiques))

    def judge_many(self, pairs, swap: bool = False, batch_size: int = 64, progress: bool = False) -> list[Verdict]:
        """A `Verdict` for each (prompt, a, b) pair; every pair is checked (`check_pair`) before any is judged.
        swap=True: each pair is read in both orders; the choice stands where they agree, else "tie"."""
        from tqdm.auto import tqdm

        check_count("batch_size", batch_size)
        pairs = [tuple(p) for p in pairs]
        for n, (p, a, b) in enumerate(pairs):
            check_pair(self.tokenizer, p, a, b, where=f"pair {n}")
        out = []
        for i in tqdm(range(0, len(pairs), batch_size), desc="judging", unit="batch", disable=not progress):
            chunk = pairs[i : i + batch_size]
            texts_a, texts_b = [p + a for p, a, b in chunk], [p + b for p, a, b in chunk]
            forward = self._read(texts_a, texts_b)
            backward = self._read(texts_b, texts_a) if swap else [None] * len(chunk)
            for (choice, critique), other in zip(forward, backward):
                if other is None:
                    out.append(Verdict(choice, readable(critique)))
                    continue
                out.append(Verdict(agreed([choice], [other[0]])[0], readable(critique), readable(unswapped(other[1]))))
        return out

    def judge(self, prompt: str, a: str, b: str) -> tuple[str, str]:
        """(choice, critique) for one pair: "a" or "b", and what the judge wrote before it."""
        v = self.judge_many([(prompt, a, b)])[0]
        return v.choice, v.critique

    def compare(self, prompt: str, a: str, b: str) -> str:
        """"a" | "b" like an annotator ("tie" for two identical completions), so the judge labels anywhere one does."""
        if a == b:
            return "tie"
        return self.judge(prompt, a, b)[0]


def load_judge(path=JUDGE) -> Judge:
    """The judge saved in `path` (default: the shipped one, assets/judge), named "judge:<its folder's name>" (the
    annotator its records carry)."""
    from rlhf_lib.lm import check_model_source, load_model

    check_model_source(path, "a judge")
    model, tokenizer = load_model(path)
    return Judge(model, tokenizer, name=f"judge:{Path(path).name}")


# ---- training data: pairs of whole reviews, a share with one broken


def break_review(text: str, rng: random.Random, others: list[str]) -> str:
    """`text` made ungrammatical the ways a policy breaks reviews: one sentence too many, a word swapped for one
    of the wrong kind, a word left out, a sentence cut and spliced into another, a lowercase start. Checked with
    `is_grammatical`; tried again until it is broken."""
    from rlhf_lib.reviews import is_grammatical, sentences, vocabulary

    words_of_language = sorted(vocabulary())
    while True:
        parts, kind = sentences(text), rng.randrange(5)
        other = sentences(rng.choice(others))
        if kind == 0:  # one sentence too many (the language has one to four)
            while len(parts) < 5:
                parts.append(rng.choice(other))
            broken = " ".join(parts)
        else:
            words = text.split(" ")
            k = rng.randrange(len(words))
            if kind == 1:
                words[k] = rng.choice(words_of_language) + ("." if words[k].endswith(".") else "")
            elif kind == 2 and len(words) > 2:
                del words[k]
            elif kind == 3:
                cut = rng.choice(other).split(" ")
                words = words[: max(1, k)] + cut[rng.randrange(len(cut)) :]
            else:
                words[0] = words[0].lower()
            broken = " ".join(words)
        if broken != text and not is_grammatical(broken):
            return broken


def training_pairs(n: int, seed: int = 0, broken_share: float = 0.1, close_share: float = 0.3,
                   tokenizer=None) -> list[tuple[str, str, str]]:
    """n (prompt "", review A, review B) pairs of reviews from the language's generator: a `broken_share` of them
    with one review broken (`break_review`), a `close_share` with both reviews strongly positive (the close calls
    of a trained policy), the rest two reviews of independent moods. With a tokenizer, every review fits the
    judge (`MAX_REVIEW_TOKENS`): a pair whose broken review grew too long is drawn again, so the longest kind of
    break (one sentence too many) is rarer than the others."""
    from rlhf_lib.reviews import generate_review

    rng = random.Random(seed)
    fits = (lambda t: True) if tokenizer is None else (lambda t: review_tokens(tokenizer, t) <= MAX_REVIEW_TOKENS)

    def review(mood=None):
        while True:
            text = generate_review(rng, mood)
            if fits(text):
                return text

    pool = [review() for _ in range(200)]
    out = []
    while len(out) < n:
        u = rng.random()
        if u < close_share:
            a, b = review(rng.uniform(0.85, 1.0)), review(rng.uniform(0.85, 1.0))
        else:
            a, b = review(), review()
        if u >= 1 - broken_share:
            b = break_review(b, rng, pool)
            if not fits(b):
                continue
            if rng.random() < 0.5:
                a, b = b, a
        if a != b:
            out.append(("", a, b))
    return out


def judge_demonstrations(records, critique=critique_of) -> list[dict]:
    """SFT demonstrations ({prompt, completion}) from decided preference records: the judge reads the two whole
    reviews and learns to write the critiques (`judge_completion`) and the recorded verdict."""
    out = []
    for r in records:
        if r["choice"] not in ("a", "b"):
            continue
        a, b = r["prompt"] + r["completion_a"], r["prompt"] + r["completion_b"]
        out.append(dict(prompt=judge_prompt(a, b), completion=judge_completion(a, b, r["choice"], critique)))
    if not out:
        raise ValueError("no decided (a/b) labels to train a judge on")
    return out


def make_judge(base=None):
    """(model, tokenizer): a causal LM of the course's family with the judge's tokens added (their embeddings
    start at the mean of the others)."""
    from rlhf_lib.lm import load_model

    model, tokenizer = load_model(base)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return model, tokenizer


def train_judge(records, base=None, cfg=None, critique=critique_of, progress: bool = True):
    """(judge, SFTResult): a judge fine-tuned from `base` (default: the course model) on the preference
    records' decided labels (`judge_demonstrations`, `rlhf_lib.sft.sft`: the loss on critiques and verdict).
    critique=None trains the verdict alone, from the labels and nothing else."""
    from rlhf_lib.sft import SFTConfig, sft

    model, tokenizer = make_judge(base)
    result = sft(model, tokenizer, judge_demonstrations(records, critique), cfg or SFTConfig(epochs=1),
                 progress=progress)
    return Judge(model, tokenizer), result


# ---- measuring a judge against gold


def evaluation_pairs(model, tokenizer, n: int = 1000, broken_share: float = 0.1, seed: int = 0,
                     progress: bool = False) -> tuple[list[tuple[str, str, str]], int]:
    """(pairs, refused): n fresh (start, a, b) pairs of `model`'s whole reviews from one start each
    (`sample_whole_pairs`), of which round(broken_share * n) hold one broken review and the rest two fluent ones,
    and how many sampled pairs were refused because a review does not fit the judge (`MAX_REVIEW_TOKENS`)."""
    from rlhf_lib.reviews import is_grammatical
    from rlhf_lib.runtime import derive_seed
    from rlhf_lib.whole_reviews import review_starts, sample_whole_pairs

    want_broken = round(broken_share * n)
    size = min(1024, max(128, 2 * n))  # pairs sampled a draw
    one_broken, fluent, refused, draw = [], [], 0, 0
    while len(one_broken) < want_broken or len(fluent) < n - want_broken:
        chunk_seed = derive_seed(seed, "judge evaluation", draw)
        for p, a, b in sample_whole_pairs(model, tokenizer, size, starts=review_starts(size, chunk_seed),
                                          seed=chunk_seed, progress=progress):
            if max(review_tokens(tokenizer, p + a), review_tokens(tokenizer, p + b)) > MAX_REVIEW_TOKENS:
                refused += 1
                continue
            broken = (not is_grammatical(p + a)) + (not is_grammatical(p + b))
            if broken == 1 and len(one_broken) < want_broken:
                one_broken.append((p, a, b))
            elif broken == 0 and len(fluent) < n - want_broken:
                fluent.append((p, a, b))
        draw += 1
    pairs = one_broken + fluent
    random.Random(seed).shuffle(pairs)
    return pairs, refused



def gold_report(verdicts: list[str], pairs) -> dict:
    """Agreement of verdicts ("a" | "b" | "tie") with the noise-free gold on their (prompt, a, b) pairs, overall and
    by gold gap band (a tie is a disagreement); pairs gold calls a tie are left out."""
    import numpy as np

    from rlhf_lib.evaluate import gold_taste
    from rlhf_lib.reward_model import accuracy_by_gap

    _same_length(verdicts, pairs)
    gap = gold_taste([p + a for p, a, b in pairs]) - gold_taste([p + b for p, a, b in pairs])
    sign = np.array([{"a": 1.0, "b": -1.0, "tie": 0.0}[v] for v in verdicts])
    margin = np.where(sign == 0, -np.sign(gap), sign)  # a tie counts as wrong
    decided = gap != 0
    bands = accuracy_by_gap(dict(margin=margin, gold_gap=gap))
    return dict(gold_accuracy=float(((margin > 0) == (gap > 0))[decided].mean()), n_decided=int(decided.sum()),
                ties=int((sign == 0).sum()),
                by_gap={b: [n, None if acc != acc else acc] for b, n, acc in
                        zip(bands["bands"], bands["n"], bands["accuracy"])})


def check_judge(judge, pairs, progress: bool = False) -> dict:
    """The judge on (prompt, a, b) pairs against the noise-free gold: read once (`gold_once`) and in both orders
    (`gold_both_orders`, a tie where they disagree), its `flip_rate`, the shipped whole-review reward model's
    agreement on the same pairs (`reward_model`), pairs judged a second read once, and the first verdicts with
    their critiques (`examples`)."""
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.whole_reviews import WHOLE_REVIEW_REWARD_MODEL, gold_agreement

    clock = time.perf_counter()
    once = judge.judge_many(pairs, progress=progress)
    per_second = len(pairs) / (time.perf_counter() - clock)
    swapped = [v.choice for v in judge.judge_many([(p, b, a) for p, a, b in pairs], progress=progress)]
    choices = [v.choice for v in once]
    rm = gold_agreement(*load_reward_model(WHOLE_REVIEW_REWARD_MODEL), pairs)
    return dict(gold_once=gold_report(choices, pairs), gold_both_orders=gold_report(agreed(choices, swapped), pairs),
                flip_rate=flip_rate(choices, swapped), reward_model=dict(gold_accuracy=rm["gold_accuracy"],
                                                                         by_gap=rm["by_gap"]),
                pairs_per_second=round(per_second, 1),
                examples=[dict(prompt=p, a=a, b=b, verdict=v.choice, critique=v.critique)
                          for (p, a, b), v in list(zip(pairs, once))[:5]])


def flips(forward: list[str], backward: list[str]) -> list[float]:
    """1.0 for each pair whose verdict changes when A and B trade places, else 0.0 (`backward` holds the verdicts
    on the swapped pairs, in their own order)."""
    if len(forward) != len(backward) or not forward:
        raise ValueError("need one verdict in each order for every pair")
    return [float(f != {"a": "b", "b": "a"}.get(b, b)) for f, b in zip(forward, backward)]


def flip_rate(forward: list[str], backward: list[str]) -> float:
    """Position bias: the share of pairs whose verdict changes when A and B trade places (`flips`)."""
    return sum(flips(forward, backward)) / len(forward)


# ---- the judge's biases, each a share with a bootstrap interval


def length_pairs(n: int, seed: int = 0, tokenizer=None) -> list[tuple[str, str, str]]:
    """n (prompt "", shorter, longer) pairs of equal gold: the longer is the shorter review with one more sentence
    that VADER scores 0 (its adjective is one the lexicon does not know), so their compound scores are equal and
    both are grammatical. A judge without a length bias prefers each side half the time."""
    from rlhf_lib.evaluate import gold_taste
    from rlhf_lib.reviews import ADJ_PLAIN, ASPECTS_SG, generate_review, sentences

    rng = random.Random(seed)
    plain, aspects = ADJ_PLAIN.split(), ASPECTS_SG.split()
    out = []
    while len(out) < n:
        short = generate_review(rng)
        if len(sentences(short)) > 3:
            continue
        longer = f"{short} The {rng.choice(aspects)} was {rng.choice(plain)}."
        if tokenizer is not None and review_tokens(tokenizer, longer) > MAX_REVIEW_TOKENS:
            continue
        t_short, t_long = gold_taste([short, longer])
        if t_short == t_long:
            out.append(("", short, longer))
    return out


def negation_pairs(n: int, seed: int = 0, tokenizer=None) -> list[tuple[str, str, str]]:
    """n (prompt "", review, the same review with one "was ADJ" turned to "was not ADJ") pairs whose gold differs:
    "not bad" reads better than "bad", "not great" worse than "great" (VADER handles the negation). With a
    tokenizer, both reviews fit the judge (`MAX_REVIEW_TOKENS`)."""
    from rlhf_lib.evaluate import gold_taste
    from rlhf_lib.reviews import generate_review, is_grammatical

    rng = random.Random(seed)
    out = []
    while len(out) < n:
        text = generate_review(rng)
        spots = [m.start() for m in re.finditer(r" was (?!not |never )", text)]
        if not spots:
            continue
        at = rng.choice(spots)
        negated = text[:at] + " was not " + text[at + len(" was "):]
        if tokenizer is not None and review_tokens(tokenizer, negated) > MAX_REVIEW_TOKENS:
            continue
        if is_grammatical(negated) and len(set(gold_taste([text, negated]))) == 2:
            out.append(("", text, negated))
    return out


def share_with_interval(hits, bootstrap: int = 1000, seed: int = 0) -> dict:
    """A share of 0/1 (or 0.5) outcomes with the 2.5th and 97.5th percentiles of its bootstrap resamples."""
    from rlhf_lib.ratings import win_rate

    rate, (low, high) = win_rate(hits, bootstrap=bootstrap, seed=seed)
    return dict(rate=rate, low=low, high=high, n=len(hits))


def _same_length(*lists) -> None:
    if len({len(x) for x in lists}) != 1:
        raise ValueError(f"need one entry a pair in each list, got lengths {[len(x) for x in lists]}")


def agreed(forward: list[str], backward: list[str]) -> list[str]:
    """Swap-debiased verdicts: each pair's verdict where its two readings agree (`backward` read the pair swapped,
    in its own order), "tie" where they do not."""
    _same_length(forward, backward)
    back = [{"a": "b", "b": "a"}.get(v, v) for v in backward]
    return [f if f == b else "tie" for f, b in zip(forward, back)]


def hit_shares(verdicts: list[str], wanted: list[str]) -> list[float]:
    """1 where the verdict is the wanted side, 0.5 for a tie, 0 for the other side."""
    _same_length(verdicts, wanted)
    return [1.0 if v == w else 0.5 if v == "tie" else 0.0 for v, w in zip(verdicts, wanted)]


def read_both_ways(forward: list[str], backward: list[str], wanted: list[str], bootstrap: int, seed: int) -> dict:
    """How often the wanted side is chosen, with its interval: read once (`forward`) and debiased by both
    readings (`agreed`, a tie counted half)."""
    return dict(once=share_with_interval(hit_shares(forward, wanted), bootstrap, seed),
                both_orders=share_with_interval(hit_shares(agreed(forward, backward), wanted), bootstrap, seed))


def in_both_orders(judge, pairs, progress: bool = False) -> tuple[list[str], list[str]]:
    """The verdicts on the pairs as given and on the pairs with A and B swapped (each in its own order)."""
    forward = [v.choice for v in judge.judge_many(pairs, progress=progress)]
    backward = [v.choice for v in judge.judge_many([(p, b, a) for p, a, b in pairs], progress=progress)]
    return forward, backward


def measure_biases(judge, pairs, n: int = 500, seed: int = 0, bootstrap: int = 1000, progress: bool = False) -> dict:
    """The judge's biases, each a share with its interval (`share_with_interval`), read once and debiased by
    reading both orders (a tie where they disagree, counted half):

    - position: on `pairs`, how often the verdict flips when A and B trade places (debiased: 0 by construction);
    - length: on `length_pairs` (equal gold), how often it prefers the longer review (unbiased: 0.5);
    - negation: on `negation_pairs`, how often it agrees with gold about a "was not ..." (unbiased: 1.0);
    - fluency: on the pairs of `pairs` with one broken review, how often it prefers the fluent one (1.0)."""
    from rlhf_lib.evaluate import gold_taste
    from rlhf_lib.reviews import is_grammatical
    from rlhf_lib.runtime import derive_seed

    check_count("bootstrap", bootstrap)
    out = {}
    forward, backward = in_both_orders(judge, pairs, progress)
    flipped = flips(forward, backward)
    out["position"] = dict(once=share_with_interval(flipped, bootstrap, seed),
                           both_orders=dict(rate=0.0, n=len(flipped)))  # agreed verdicts cannot flip
    lengths = length_pairs(n, seed, judge.tokenizer)
    rng = random.Random(derive_seed(seed, "length sides"))
    shown = [(p, a, b) if rng.random() < 0.5 else (p, b, a) for p, a, b in lengths]  # the longer on either side
    longer = ["b" if len(b) > len(a) else "a" for _, a, b in shown]
    forward, backward = in_both_orders(judge, shown, progress)
    out["length"] = read_both_ways(forward, backward, longer, bootstrap, seed)
    for name, chosen in (("negation", negation_pairs(n, seed + 1, judge.tokenizer)),
                         ("fluency", [(p, a, b) for p, a, b in pairs
                                      if is_grammatical(p + a) != is_grammatical(p + b)])):
        if not chosen:
            continue
        gold = ["a" if x > y else "b" for x, y in
                zip(gold_taste([p + a for p, a, b in chosen]), gold_taste([p + b for p, a, b in chosen]))]
        forward, backward = in_both_orders(judge, chosen, progress)
        out[name] = read_both_ways(forward, backward, gold, bootstrap, seed)
    return out


def self_preference_pairs(own, other, tokenizer, n: int, seed: int = 0,
                          max_gap: float = 0.02) -> list[tuple[str, str, str]]:
    """n (start, review by `own`, review by `other`) pairs from one start each, both reviews fluent and at most
    `max_gap` apart in gold, each at most `MAX_REVIEW_TOKENS` tokens. `own` and `other` are (model, tokenizer)
    pairs of two models of the language (say the judge's base and one pretrained with another seed)."""
    from rlhf_lib.evaluate import gold_taste
    from rlhf_lib.reviews import is_grammatical
    from rlhf_lib.runtime import derive_seed
    from rlhf_lib.whole_reviews import review_starts, sample_whole_reviews

    out, draw = [], 0
    while len(out) < n:
        chunk = derive_seed(seed, "self preference", draw)
        starts = review_starts(512, chunk)
        _, mine, ok_mine = sample_whole_reviews(*own, starts, seed=chunk)
        _, theirs, ok_theirs = sample_whole_reviews(*other, starts, seed=chunk + 1)
        for s, a, b, fa, fb in zip(starts, mine, theirs, ok_mine, ok_theirs):
            texts = [s + a, s + b]
            if not (fa and fb and a != b and all(map(is_grammatical, texts))):
                continue
            if max(review_tokens(tokenizer, t) for t in texts) > MAX_REVIEW_TOKENS:
                continue
            gap = gold_taste(texts)
            if abs(gap[0] - gap[1]) <= max_gap and len(out) < n:
                out.append((s, a, b))
        draw += 1
    return out


def self_preference(judge, pairs, bootstrap: int = 1000, seed: int = 0, progress: bool = False) -> dict:
    """How often the judge prefers the first review of each (start, own, other) pair (`self_preference_pairs`),
    shown on a random side; read once and in both orders (a tie counted half). Unbiased: 0.5."""
    check_count("bootstrap", bootstrap)
    rng = random.Random(seed)
    flipped = [rng.random() < 0.5 for _ in pairs]
    shown = [(p, b, a) if f else (p, a, b) for (p, a, b), f in zip(pairs, flipped)]
    own_side = ["b" if f else "a" for f in flipped]
    forward, backward = in_both_orders(judge, shown, progress)
    return read_both_ways(forward, backward, own_side, bootstrap, seed)


# ---- a pairs file judged: the `judge` command


def judge_file(judge_dir, pairs_path, out_path, swap: bool = False, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Judge every pair of a JSONL pairs file (`{prompt, completion_a, completion_b}` objects, the classroom's
    `serve --pairs` format; preference records qualify) into `out_path`: one preference record a pair (choice,
    annotator "judge:<folder name>" or with swap "judge:<name>+swap", model from the input line or "unknown",
    time, id) plus its critique, and with swap the critique of the swapped reading. Every line is checked before
    any is judged (a bad line is an error naming it); an existing `out_path` is kept unless `overwrite`. The
    records are written at once, atomically, when all are judged. Returns a summary."""
    from dataclasses import asdict

    from rlhf_lib.classroom.store import read_pair_items
    from rlhf_lib.feedback import PreferenceRecord
    from rlhf_lib.files import write_atomic

    out_path = Path(out_path).expanduser()
    if out_path.is_dir():
        raise IsADirectoryError(f"--out {out_path} is a folder; give the JSONL file to write")
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"--out {out_path} exists; choose another file or add --overwrite to replace it")
    if not out_path.parent.is_dir():
        raise FileNotFoundError(f"--out {out_path}: there is no folder {out_path.parent}")
    items = read_pair_items(pairs_path)
    judge = load_judge(judge_dir)
    for item in items:
        check_pair(judge.tokenizer, item["prompt"], item["completion_a"], item["completion_b"],
                   where=f"--pairs {pairs_path}, line {item['line']}")
    started = time.perf_counter()
    verdicts = judge.judge_many([(i["prompt"], i["completion_a"], i["completion_b"]) for i in items], swap=swap,
                                progress=progress)
    seconds = time.perf_counter() - started
    annotator = judge.name + ("+swap" if swap else "")
    lines = []
    for item, v in zip(items, verdicts):
        model = item.get("model") if isinstance(item.get("model"), str) else "unknown"
        record = asdict(PreferenceRecord(item["prompt"], item["completion_a"], item["completion_b"], v.choice,
                                         annotator, model))
        record["critique"] = v.critique
        if swap:
            record["critique_swapped"] = v.critique_swapped
        lines.append(json.dumps(record, ensure_ascii=False))
    write_atomic(out_path, "\n".join(lines) + "\n")
    counts = {c: sum(v.choice == c for v in verdicts) for c in ("a", "b", "tie")}
    return dict(pairs=len(items), judge=str(judge_dir), annotator=annotator, choices=counts,
                seconds=round(seconds, 1), pairs_per_second=round(len(items) / max(seconds, 1e-9), 1),
                out=str(out_path))
