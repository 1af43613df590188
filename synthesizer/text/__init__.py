"""Text front end of the synthesizer: raw text to symbol ids and back.

Curly-brace groups are ARPAbet; the symbol table has no ARPAbet entries, so
they contribute no ids (kept only for reference-compatible segmentation).
"""

import re
from typing import Iterable, Sequence

from .cleaners import clean_text
from .symbols import (
    ARPABET_PREFIX,
    EOS_ID,
    FIRST_LETTER_ID,
    ID_TO_SYMBOL,
    LAST_LETTER_ID,
    SYMBOL_TO_ID,
    SYMBOLS,
)

__all__ = [
    "text_to_sequence",
    "sequence_to_text",
    "has_speakable_characters",
    "symbols",
    "DEFAULT_CLEANERS",
]

symbols: tuple[str, ...] = SYMBOLS

DEFAULT_CLEANERS: tuple[str, ...] = ("english_cleaners",)

# Anchored via re.match; "." excludes newlines, which the reference relies on
# (a newline inside a group defeats it, a newline after one truncates the rest).
_CURLY_RE = re.compile(r"(.*?)\{(.+?)\}(.*)")

# Symbols that are in the table but never emitted from text.
_NON_TEXT_SYMBOLS = frozenset({ID_TO_SYMBOL[0], ID_TO_SYMBOL[EOS_ID]})


def _symbols_to_ids(chars: Iterable[str]) -> list[int]:
    """Ids of the symbols that are in the table; others, pad and EOS are dropped."""
    return [SYMBOL_TO_ID[s] for s in chars if s in SYMBOL_TO_ID and s not in _NON_TEXT_SYMBOLS]


def _arpabet_to_ids(text: str) -> list[int]:
    # Always empty with this table, but mirrors how the reference encodes phones.
    return _symbols_to_ids(ARPABET_PREFIX + token for token in text.split())


def text_to_sequence(text: str, cleaner_names: Sequence[str] = DEFAULT_CLEANERS) -> list[int]:
    """Convert ``text`` to symbol ids, with EOS appended.

    Text outside ``{...}`` is cleaned segment by segment (so whitespace is not
    collapsed across a brace group); brace contents are ARPAbet. The text is
    not stripped here: that is the caller's job.
    """
    sequence: list[int] = []
    while text:
        m = _CURLY_RE.match(text)
        if m is None:
            sequence += _symbols_to_ids(clean_text(text, cleaner_names))
            break
        sequence += _symbols_to_ids(clean_text(m.group(1), cleaner_names))
        sequence += _arpabet_to_ids(m.group(2))
        text = m.group(3)
    sequence.append(EOS_ID)
    return sequence


def sequence_to_text(ids: Iterable[int]) -> str:
    """Convert ids back to a string; EOS shows as ``~``, unknown ids are skipped."""
    parts: list[str] = []
    for symbol_id in ids:
        symbol = ID_TO_SYMBOL.get(int(symbol_id))
        if symbol is None:
            continue
        if symbol.startswith(ARPABET_PREFIX) and len(symbol) > 1:
            symbol = "{" + symbol[1:] + "}"
        parts.append(symbol)
    # Adjacent ARPAbet groups merge into one, as in the reference.
    return "".join(parts).replace("}{", " ")


def has_speakable_characters(ids: Iterable[int]) -> bool:
    """True when ``ids`` hold at least one letter (ids 2..53)."""
    return any(FIRST_LETTER_ID <= int(i) <= LAST_LETTER_ID for i in ids)
