"""Sentences a user reads aloud to train a voice, and how much of English they cover.

`prompts_en.txt` holds about 150 phonetically rich English sentences written for this
project (CC0-1.0), in the order `greedy_order` gives them: each next sentence is the one
that adds the most not-yet-seen sounds, so whoever stops after the first few dozen has
still spoken most of the variety of the whole list.

Coverage is measured on the spelling, not on phones: letter bigrams (with word edges)
plus a grapheme proxy for phones (`th`, `sh`, `igh`, `tion`, ...). It needs no
pronunciation dictionary, and on English text it tracks phone variety well enough to
order sentences.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PROMPTS_FILE = Path(__file__).with_name("prompts_en.txt")
# Fine-tuning is measured with 5 minutes of recordings (about 70 of these prompts at a
# normal reading pace). Three to five takes (about 10 s) already bring most of the likeness;
# 5 minutes also made a voice's words clearer (bench/RESULTS.md).
PROMPT_TARGET_MINUTES = 5.0

# Spellings that stand for one sound (or one fixed sound pair), longest first so that
# "tch" wins over "ch" and "tion" over "ti".
GRAPHEMES = tuple(sorted((
    "tion", "sion", "sure", "ture", "ough", "augh", "eigh",
    "tch", "dge", "igh", "air", "ear", "eer", "our", "oor", "ure", "sch", "squ", "thr", "shr",
    "th", "sh", "ch", "ph", "wh", "ng", "nk", "ck", "qu", "kn", "wr", "gh", "mb",
    "ee", "ea", "oo", "ou", "ow", "oi", "oy", "ai", "ay", "au", "aw", "ar", "er", "ir", "ur", "or",
    "ew", "ie", "ei", "ey", "oa", "oe", "ue", "ui",
), key=len, reverse=True))
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def load_prompts(path: Path | str = PROMPTS_FILE) -> list[str]:
    """The prompts in reading order: one sentence per non-empty line, `#` lines skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def words(text: str) -> list[str]:
    """Lower-case words of `text` (letters and inner apostrophes; digits and punctuation dropped)."""
    return _WORD.findall(text.lower())


def graphemes(word: str) -> list[str]:
    """`word` cut into `GRAPHEMES` and single letters, longest match first ("watch" -> w, a, tch)."""
    out, k = [], 0
    while k < len(word):
        piece = next((g for g in GRAPHEMES if word.startswith(g, k)), word[k])
        out.append(piece)
        k += len(piece)
    return out


def coverage_units(text: str) -> set[str]:
    """The coverage units of `text`: "b:" letter bigrams ("^" and "$" mark word edges) and
    "g:" graphemes, with "gg:" grapheme pairs (a proxy for phone pairs such as clusters)."""
    units: set[str] = set()
    for word in words(text.replace("'", "")):
        edged = f"^{word}$"
        units.update("b:" + edged[k:k + 2] for k in range(len(edged) - 1))
        pieces = graphemes(word)
        units.update("g:" + g for g in pieces)
        units.update(f"gg:{a}+{b}" for a, b in zip(pieces, pieces[1:]))
    return units


def coverage(prompts: Iterable[str]) -> set[str]:
    """Union of the coverage units of `prompts`."""
    out: set[str] = set()
    for text in prompts:
        out |= coverage_units(text)
    return out


def coverage_share(first: Sequence[str], full: Sequence[str]) -> float:
    """Fraction (0-1) of the units of `full` that `first` already covers."""
    whole = coverage(full)
    return len(coverage(first) & whole) / max(len(whole), 1)


def greedy_order(prompts: Sequence[str]) -> list[str]:
    """`prompts` reordered so that each next one adds the most unseen variety.

    A unit seen n times so far is worth 1 / (1 + n)^2: at first this counts new units;
    once everything is seen it prefers sentences with the rarest units. Ties keep the
    input order, so ordering an ordered list again changes nothing.
    """
    units = [sorted(coverage_units(p)) for p in prompts]  # sorted: float sums in a fixed order
    seen: Counter[str] = Counter()
    left = list(range(len(prompts)))
    order: list[int] = []
    while left:
        scores = [sum(1.0 / (1 + seen[u]) ** 2 for u in units[k]) for k in left]
        best = left[max(range(len(left)), key=lambda i: (round(scores[i], 9), -i))]
        order.append(best)
        left.remove(best)
        seen.update(units[best])
    return [prompts[k] for k in order]
