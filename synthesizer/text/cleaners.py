"""Text cleaners run on each text segment before it is mapped to ids.

``english_cleaners`` is the one the pretrained synthesizer was trained with;
the other two exist for completeness and for non-English experiments.
"""

import re
from typing import Callable, Sequence

from unidecode import unidecode

from .numbers import normalize_numbers

Cleaner = Callable[[str], str]

_WHITESPACE_RE = re.compile(r"\s+")

# Order matters: "mrs" must be tried before "mr". "misess" is the reference's spelling.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("mrs", "misess"),
    ("mr", "mister"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("drs", "doctors"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
)

_ABBREVIATION_RES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(rf"\b{abbr}\.", re.IGNORECASE), expansion) for abbr, expansion in ABBREVIATIONS
)


def expand_abbreviations(text: str) -> str:
    """Expand abbreviations that are directly followed by a period."""
    for pattern, expansion in _ABBREVIATION_RES:
        text = pattern.sub(expansion, text)
    return text


def collapse_whitespace(text: str) -> str:
    """Turn every whitespace run into one space; ends are deliberately not stripped."""
    return _WHITESPACE_RE.sub(" ", text)


def basic_cleaners(text: str) -> str:
    """Lowercase and collapse whitespace, without transliteration."""
    return collapse_whitespace(text.lower())


def transliteration_cleaners(text: str) -> str:
    """Transliterate to ASCII, lowercase and collapse whitespace."""
    return collapse_whitespace(unidecode(text).lower())


def english_cleaners(text: str) -> str:
    """ASCII, lowercase, spell out numbers, expand abbreviations, collapse whitespace."""
    text = unidecode(text)
    text = text.lower()
    text = normalize_numbers(text)
    text = expand_abbreviations(text)
    return collapse_whitespace(text)


CLEANERS: dict[str, Cleaner] = {
    "basic_cleaners": basic_cleaners,
    "transliteration_cleaners": transliteration_cleaners,
    "english_cleaners": english_cleaners,
}


def get_cleaner(name: str) -> Cleaner:
    """Return the cleaner function registered under ``name``."""
    try:
        return CLEANERS[name]
    except KeyError:
        raise ValueError(f"Unknown cleaner: {name!r} (known: {', '.join(CLEANERS)})") from None


def clean_text(text: str, cleaner_names: Sequence[str]) -> str:
    """Apply the named cleaners to ``text`` in order."""
    for name in cleaner_names:
        text = get_cleaner(name)(text)
    return text
