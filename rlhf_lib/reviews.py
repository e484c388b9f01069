"""The review language: a seeded generator of short film reviews and an exact grammar check.

Both come from one table, `GRAMMAR`, so they cannot drift apart. A review is 1 to 4
sentences; a sentence is one of the shapes under "sentence". Each alternative is a
string of symbols; a symbol that names a rule is expanded, any other symbol is a
word or punctuation mark. Two marks steer the generator and are ignored by the parser:

    "+ ..." / "- ..."   the alternative reads positive / negative; a review's mood
                        (drawn per review) decides how often each is chosen
    "... *3"            a weight (default 1)

`is_grammatical(text)` answers exactly whether `text` is a review of this language,
written the canonical way: words separated by single spaces, no space before , . !
and every sentence starting with a capital letter.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache

from rlhf_lib.runtime import check_probability

# ---- word lists (rules whose alternatives are single words)

ADJ_POS = ("good great superb brilliant lovely charming clever stunning beautiful delightful engaging powerful "
           "elegant thrilling solid fresh funny warm rich wonderful excellent fantastic remarkable impressive "
           "compelling gorgeous breathtaking confident heartfelt joyful exciting fun pleasant nice fine strong smart "
           "original bold graceful magnificent marvelous terrific perfect splendid lively sincere playful glorious "
           "inspired sweet hopeful")
ADJ_NEG = ("bad dull boring weak awful terrible messy painful silly dreadful horrible poor lazy annoying ugly "
           "grating dreary joyless disappointing awkward lame stupid weird empty miserable tired pathetic "
           "ridiculous repetitive gloomy nasty")
# adjectives whose tone a reader hears but VADER's lexicon does not score: honest noise for a gold annotator
ADJ_PLAIN = ("moving gripping witty tender vivid inventive memorable touching sharp masterful flat clumsy tedious "
             "bland predictable lifeless stale forgettable shallow slow sloppy stiff hollow pointless mediocre "
             "overlong pretentious thin muddled wooden cheesy incoherent bloated long quiet strange unusual loud "
             "familiar ambitious uneven")
INTENSIFIERS = "very really truly quite rather so incredibly remarkably deeply utterly extremely absolutely"
DAMPENERS = "somewhat fairly slightly"
ASPECTS_SG = ("acting plot script music score soundtrack pacing cinematography dialogue ending story direction "
              "editing humor lighting casting camerawork finale premise atmosphere design climax")
ASPECTS_PL = "characters effects costumes performances jokes twists songs landscapes visuals action scenes"
GENRES = "drama thriller comedy romance western musical mystery documentary fantasy satire adventure tragedy"
NOUNS = "film movie story ride debut experience evening journey"
TITLE_FIRST = ("Glass Silver Midnight Paper Iron Velvet Hollow Crimson Northern Golden Electric Distant Last Winter "
               "Amber")
TITLE_SECOND = ("Harbor Orchard Lanterns Tide Engine Garden Mirror Station River Summer Kingdom Letters Horizon Crown "
                "Signal")
FIRST_NAMES = "Mara Theo Ines Jonah Priya Felix Lena Omar Greta Tomas Nadia Rafael Iris Kofi Elena"
LAST_NAMES = "Voss Lind Okafor Brandt Castillo Moreau Sato Novak Quinn Hale Ferreira Adler"
ROLES = "detective mother villain soldier teacher pilot queen thief doctor stranger captain poet"
FEEL_POS = "thrilled delighted charmed impressed amused"
FEEL_NEG = "bored exhausted confused annoyed disappointed restless"
VERB_POS = "loved adored enjoyed admired liked"
VERB_NEG = "hated disliked loathed regretted resented"
AUDIENCES = "anyone everyone families friends students teenagers"
NUMBERS = "One Two Three Four Five Six Seven Eight Nine Ten"


def _words(rule_words: str, mark: str = "") -> list[str]:
    return [f"{mark}{w}".strip() for w in rule_words.split()]


GRAMMAR: dict[str, list[str]] = {
    "review": ["sentence *3", "sentence sentence *4", "sentence sentence sentence *3",
               "sentence sentence sentence sentence *2"],
    "sentence": [
        "aspect_sg was adjp . *4",                         # The plot was very dull.
        "aspect_pl were adjp . *2",                        # The characters were flat.
        "aspect_sg was adjp , but aspect_sg was adjp . *2",  # contrast
        "aspect_sg was adjp , and aspect_pl were adjp .",  # coordination of clauses
        "aspect_sg felt adj and adj .",                    # The pacing felt slow and clumsy.
        "title is a_adj genre .",                          # Glass Harbor is a gripping thriller.
        "name gave a_adj performance as the role .",       # Mara Voss gave a moving performance as the thief.
        "the direction by name was adjp .",
        "I opinion_verb aspect_sg .",                      # I loved the music.
        "I opinion_verb every minute of title .",
        "I expected expectation",                          # I expected a clever comedy, but it was dull.
        "what a_adj noun ! *0.6",                          # What a lovely film!
        "aspect_sg is never adj .",                        # The plot is never boring.
        "it was never adj .",
        "overall , subject was adjp . *2",                 # Overall, the film was superb.
        "by the end , I was feeling .",                    # By the end, I was bored.
        "+ I would recommend it to audience .",
        "- I would not recommend it to audience .",
        "number out of ten . *0.4",                        # Seven out of ten.
    ],
    "aspect_sg": ["the aspect_word_sg"],
    "aspect_pl": ["the aspect_word_pl"],
    "adjp": ["+ adj_pos *3", "- adj_neg *3", "adj_plain *2", "+ intensifier adj_pos *2", "- intensifier adj_neg *2",
             "intensifier adj_plain", "dampener adj_plain *0.5", "+ not adj_neg", "- not adj_pos",
             "- not intensifier adj_pos *0.5"],
    "adj": ["+ adj_pos *3", "- adj_neg *3", "adj_plain *2"],
    "expectation": ["more . *0.5", "less . *0.5", "a_adj genre , but it was adjp . *2",
                    "a_adj genre , and it was adjp .", "more , but it was adjp ."],
    "subject": ["it", "the film", "the movie", "title"],
    "feeling": ["+ feel_pos", "- feel_neg", "+ utterly feel_pos *0.3", "- utterly feel_neg *0.3"],
    "opinion_verb": ["+ verb_pos", "- verb_neg"],
    "title": ["title_first title_second"],
    "name": ["first_name last_name"],
    # word lists
    "adj_pos": _words(ADJ_POS),
    "adj_neg": _words(ADJ_NEG),
    "adj_plain": _words(ADJ_PLAIN),
    "intensifier": _words(INTENSIFIERS),
    "dampener": _words(DAMPENERS),
    "aspect_word_sg": _words(ASPECTS_SG),
    "aspect_word_pl": _words(ASPECTS_PL),
    "genre": _words(GENRES),
    "noun": _words(NOUNS),
    "title_first": _words(TITLE_FIRST),
    "title_second": _words(TITLE_SECOND),
    "first_name": _words(FIRST_NAMES),
    "last_name": _words(LAST_NAMES),
    "role": _words(ROLES),
    "feel_pos": _words(FEEL_POS),
    "feel_neg": _words(FEEL_NEG),
    "verb_pos": _words(VERB_POS),
    "verb_neg": _words(VERB_NEG),
    "audience": _words(AUDIENCES),
    "number": _words(NUMBERS),
}



def _with_articles(grammar: dict[str, list[str]]) -> None:
    """Add "a_adj": "a" before a consonant, "an" before a vowel, each weighted by its share of the words."""
    alts = []
    for mark, rule in (("+", "adj_pos"), ("-", "adj_neg"), ("", "adj_plain")):
        words = grammar[rule]
        vowel = [w for w in words if w[0] in "aeiou"]
        consonant = [w for w in words if w[0] not in "aeiou"]
        grammar[f"{rule}_an"], grammar[f"{rule}_a"] = vowel, consonant
        weight = 2 if rule == "adj_plain" else 3
        alts.append(f"{mark} a {rule}_a *{weight * len(consonant) / len(words):.3f}")
        alts.append(f"{mark} an {rule}_an *{weight * len(vowel) / len(words):.3f}")
    grammar["a_adj"] = alts


_with_articles(GRAMMAR)

# The prompts of the course: each is the beginning of many reviews of the language.
PROMPTS = ("The plot was", "The acting was", "The music was", "The ending was", "The dialogue was",
           "The characters were", "I expected", "Overall,")

PUNCTUATION = {",", ".", "!"}
SENTENCE_END = {".", "!"}


@dataclass(frozen=True)
class Alternative:
    symbols: tuple[str, ...]
    weight: float
    polarity: int  # +1 positive, -1 negative, 0 neither


def _parse_alternative(text: str) -> Alternative:
    parts = text.split()
    polarity = {"+": 1, "-": -1}.get(parts[0], 0) if parts else 0
    if polarity:
        parts = parts[1:]
    weight = 1.0
    if parts and parts[-1].startswith("*"):
        weight = float(parts.pop()[1:])
    return Alternative(tuple(parts), weight, polarity)


RULES: dict[str, tuple[Alternative, ...]] = {
    name: tuple(_parse_alternative(a) for a in alts) for name, alts in GRAMMAR.items()
}


def vocabulary() -> set[str]:
    """Every word (and punctuation mark) the language can use, as it appears mid-sentence."""
    return {s for alts in RULES.values() for alt in alts for s in alt.symbols if s not in RULES}


# ---- generating


def _expand(symbol: str, rng: random.Random, mood: float, out: list[str]) -> None:
    if symbol not in RULES:
        out.append(symbol)
        return
    alts = RULES[symbol]
    tilt = {1: 2 * mood, -1: 2 * (1 - mood), 0: 1.0}  # mood 0.5 leaves the weights as written
    weights = [a.weight * tilt[a.polarity] for a in alts]
    alt = rng.choices(alts, weights=weights)[0]
    for s in alt.symbols:
        _expand(s, rng, mood, out)


def render(tokens: list[str]) -> str:
    """Words joined by spaces, punctuation attached, each sentence capitalised."""
    text, start = [], True
    for tok in tokens:
        if start:
            tok = tok[:1].upper() + tok[1:]
        if text and tok not in PUNCTUATION:
            text.append(" ")
        text.append(tok)
        start = tok in SENTENCE_END
    return "".join(text)


def generate_review(rng: random.Random | int | None = None, mood: float | None = None) -> str:
    """One review. `mood` in [0, 1] is the chance that a sentiment-bearing choice is positive;
    by default it is drawn per review from a U-shaped Beta(0.6, 0.6), so most reviews lean one way."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    if mood is None:
        mood = rng.betavariate(0.6, 0.6)
    check_probability("mood", mood)
    tokens: list[str] = []
    _expand("review", rng, mood, tokens)
    return render(tokens)


def generate_reviews(n: int, seed: int = 0) -> list[str]:
    """n reviews from one seeded stream."""
    rng = random.Random(seed)
    return [generate_review(rng) for _ in range(n)]


# ---- parsing

_TOKEN = re.compile(r"[A-Za-z]+|[,.!]")


def tokenize(text: str) -> list[str] | None:
    """The words and marks of `text`, or None if it is not written the canonical way."""
    tokens = _TOKEN.findall(text)
    if not tokens or render_raw(tokens) != text:
        return None
    return tokens


def render_raw(tokens: list[str]) -> str:
    return "".join(("" if i == 0 or t in PUNCTUATION else " ") + t for i, t in enumerate(tokens))


@cache
def _lexical(rule: str) -> frozenset[str] | None:
    """The words of a rule whose alternatives are all single words, else None."""
    alts = RULES[rule]
    if all(len(a.symbols) == 1 and a.symbols[0] not in RULES for a in alts):
        return frozenset(a.symbols[0] for a in alts)
    return None


def _recognizes(tokens: tuple[tuple[str, ...], ...]) -> bool:
    """Does "review" derive the whole token sequence? tokens[i] lists the forms token i may take."""
    n = len(tokens)
    memo: dict[tuple[str, int], frozenset[int]] = {}

    def ends(symbol: str, i: int) -> frozenset[int]:
        """Positions j such that `symbol` derives tokens[i:j]."""
        if symbol not in RULES:
            return frozenset({i + 1}) if i < n and symbol in tokens[i] else frozenset()
        key = (symbol, i)
        if key in memo:
            return memo[key]
        words = _lexical(symbol)
        if words is not None:
            result = frozenset({i + 1}) if i < n and words.intersection(tokens[i]) else frozenset()
        else:
            out: set[int] = set()
            for alt in RULES[symbol]:
                positions = {i}
                for s in alt.symbols:
                    positions = {j for p in positions for j in ends(s, p)}
                    if not positions:
                        break
                out |= positions
            result = frozenset(out)
        memo[key] = result
        return result

    return n in ends("review", 0)


def is_grammatical(text: str) -> bool:
    """True when `text` is a review of the language, written the canonical way."""
    if not isinstance(text, str):
        return False
    tokens = tokenize(text)
    if tokens is None:
        return False
    forms, start = [], True
    for tok in tokens:
        if start:  # a sentence must start with a capital; its first word may be a capitalised common word
            if not tok[:1].isupper():
                return False
            forms.append((tok, tok[:1].lower() + tok[1:]))
        else:
            forms.append((tok,))
        start = tok in SENTENCE_END
    if not start:  # the last sentence was cut off
        return False
    return _recognizes(tuple(forms))


def sentences(text: str) -> list[str]:
    """Split a review into its sentences (each with its closing mark)."""
    return [s.strip() for s in re.findall(r"[^.!]+[.!]", text)]
