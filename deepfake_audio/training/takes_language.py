"""Whether a voice's takes are read in English, from their transcripts alone (no model, no data file).

Takes in another language train only the parts of the synthesizer that colour the voice
(`synthesizer.tuning.timbre_prefixes`), so that the tuned voice's English words stay clear. Two
signs tell another language:

* its letters: more than half are not English (A-Z) ones: Cyrillic, Greek, Arabic, CJK, ...;
* in a language written in English letters (Spanish, German, Dutch, ...), its words: English
  prose is about a third function words ("the", "of", "and", "you", ...: `FUNCTION_WORDS`). On
  sentences of this project's prompt list, 5 takes together are at least 0.29 of them (median
  prompt 0.42); Spanish, German, French, Italian, Dutch and Polish sentences 0.00-0.07, where
  only a few short words ("in", "is", "me") are spelled as English ones. Below `ENGLISH_SHARE`,
  over at least `MIN_WORDS` words, the takes are taken for another language.
"""
from __future__ import annotations

import re

ENGLISH_SHARE = 0.12
MIN_WORDS = 20  # fewer words than this tell nothing by their share (two technical sentences can have none)
# English closed-class words: articles, pronouns, auxiliaries, prepositions, conjunctions.
FUNCTION_WORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for from
further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor
not of off on once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should
shouldn't so some such than that that's the their theirs them themselves then there there's these they they'd
they'll they're they've this those through to too under until up very was wasn't we we'd we'll we're we've were
weren't what what's when when's where where's which while who who's whom why why's will with won't would wouldn't
you you'd you'll you're you've your yours yourself yourselves
""".split())
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


def english_share(texts: list[str]) -> tuple[float, int]:
    """(share of the words of `texts` that are English function words, number of words)."""
    words = [w.replace("’", "'") for text in texts for w in _WORD.findall(text.lower())]
    return (sum(w in FUNCTION_WORDS for w in words) / len(words) if words else 0.0), len(words)


def other_language(texts: list[str]) -> bool:
    """Whether transcripts are in another language than English: mostly letters that are not
    A-Z, or (over `MIN_WORDS` words at least) fewer English function words than `ENGLISH_SHARE`."""
    letters = [c for text in texts for c in text if c.isalpha()]
    if not letters:
        return False  # no letters: nothing says it is another language
    if sum(not c.isascii() for c in letters) > len(letters) / 2:
        return True
    share, n_words = english_share(texts)
    return n_words >= MIN_WORDS and share < ENGLISH_SHARE
