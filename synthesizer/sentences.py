"""Splitting long text into pieces the Tacotron speaks well.

The published synthesizer was trained on utterances of a few seconds; past about 20
words its attention drifts, and one generate call stops at 25 s. Long text is therefore
cut at sentence ends, then (for long sentences) at clause punctuation, then between
words, so that every piece has at most `max_words` spoken words.
"""
from __future__ import annotations

import re

from synthesizer.text.cleaners import english_cleaners

MAX_WORDS = 20

# Abbreviations whose period does not end a sentence (the cleaners expand these).
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "drs", "st", "co", "jr", "sr", "maj", "gen", "rev", "lt", "hon",
                  "sgt", "capt", "esq", "ltd", "col", "ft", "vs", "etc", "no", "prof", "mt"}
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+|\s+(?=[-–—]{1,2}\s)")


def spoken_words(text: str) -> int:
    """Number of words the synthesizer will say, counted after number and abbreviation expansion."""
    return len(re.findall(r"[a-z]+", english_cleaners(text)))


def _sentences(paragraph: str) -> list[str]:
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        candidate = paragraph[start:match.start()]
        last_word = re.findall(r"([A-Za-z]+)\.$", candidate.rstrip("\"')]"))
        # "Dr." or an initial such as "J." does not end the sentence.
        if last_word and (last_word[0].lower() in _ABBREVIATIONS or len(last_word[0]) == 1):
            continue
        pieces.append(candidate)
        start = match.end()
    pieces.append(paragraph[start:])
    return [p.strip() for p in pieces if p.strip()]


def _pack(units: list[str], max_words: int) -> list[str]:
    """Greedily join consecutive units while the result stays within `max_words`."""
    out: list[str] = []
    for unit in units:
        if out and spoken_words(out[-1] + " " + unit) <= max_words:
            out[-1] = out[-1] + " " + unit
        else:
            out.append(unit)
    return out


def _split_long(sentence: str, max_words: int) -> list[str]:
    if spoken_words(sentence) <= max_words:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack([c for c in _CLAUSE_END.split(sentence) if c.strip()], max_words):
        if spoken_words(clause) <= max_words:
            pieces.append(clause)
        else:
            pieces.extend(_pack(clause.split(), max_words))
    return pieces


def split_sentences(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Cut `text` into pieces of at most `max_words` spoken words, in reading order.

    Newlines always separate pieces. Pieces keep their punctuation, so each still ends
    the way the text does.
    """
    pieces: list[str] = []
    for paragraph in text.splitlines():
        for sentence in _sentences(paragraph):
            pieces.extend(_split_long(sentence, max_words))
    return pieces
