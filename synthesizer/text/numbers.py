"""Spelling out numbers, currency, decimals and ordinals as English words.

Six regex substitutions run in a fixed order over the (already lowercased)
text; the order matters because each rule sees the output of the previous one.
"""

import functools
import re


@functools.cache
def _inflect_engine():
    """inflect's engine, made on first use: importing inflect takes seconds (its typeguard
    instrumentation), which every command, server start and worker process would pay even
    when no text has a digit in it."""
    import inflect
    return inflect.engine()

_COMMA_NUMBER_RE = re.compile(r"([0-9][0-9\,]+[0-9])")
# Unreachable from english_cleaners (Unidecode turns the pound sign into "PS"
# first) but kept so that direct callers behave like the reference.
_POUNDS_RE = re.compile(r"£([0-9\,]*[0-9]+)")
_DOLLARS_RE = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_DECIMAL_RE = re.compile(r"([0-9]+\.[0-9]+)")
_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER_RE = re.compile(r"[0-9]+")

# Integers strictly inside this range are read like years ("nineteen ninety").
YEAR_LIKE_MIN: int = 1000
YEAR_LIKE_MAX: int = 3000
# 2001..2009 are read "two thousand <unit>" rather than "twenty oh <unit>".
TWO_THOUSANDS_END: int = 2010


def _remove_commas(m: re.Match) -> str:
    return m.group(1).replace(",", "")


def _expand_pounds(m: re.Match) -> str:
    return f"{m.group(1)} pounds"


def _unit(count: int, singular: str) -> str:
    """``count`` followed by ``singular``, pluralised unless the count is 1."""
    return f"{count} {singular if count == 1 else singular + 's'}"


def _to_int(digits: str) -> int:
    # The reference would raise on a stray comma (e.g. "$,5"); ignore it instead.
    digits = digits.replace(",", "")
    return int(digits) if digits else 0


def _expand_dollars(m: re.Match) -> str:
    """Dollar amounts; cents are read as an integer, so "$3.5" is five cents."""
    match = m.group(1)
    parts = match.split(".")
    if len(parts) > 2:
        return f"{match} dollars"
    dollars = _to_int(parts[0])
    cents = _to_int(parts[1]) if len(parts) > 1 else 0
    if dollars and cents:
        return f"{_unit(dollars, 'dollar')}, {_unit(cents, 'cent')}"
    if dollars:
        return _unit(dollars, "dollar")
    if cents:
        return _unit(cents, "cent")
    return "zero dollars"


def _expand_decimal_point(m: re.Match) -> str:
    return m.group(1).replace(".", " point ")


def _expand_ordinal(m: re.Match) -> str:
    # inflect recognises the suffix itself and keeps its default "and".
    return _inflect_engine().number_to_words(m.group(0))


def _expand_number(m: re.Match) -> str:
    """Plain integers: year-like reading between 1000 and 3000, else cardinal."""
    num = int(m.group(0))
    if YEAR_LIKE_MIN < num < YEAR_LIKE_MAX:
        if num == 2000:
            return "two thousand"
        if 2000 < num < TWO_THOUSANDS_END:
            return "two thousand " + _inflect_engine().number_to_words(num % 100)
        if num % 100 == 0:
            return _inflect_engine().number_to_words(num // 100) + " hundred"
        words = _inflect_engine().number_to_words(num, andword="", zero="oh", group=2)
        return words.replace(", ", " ")
    # The ", " inflect puts between thousands groups is kept on purpose.
    return _inflect_engine().number_to_words(num, andword="")


def normalize_numbers(text: str) -> str:
    """Replace every number-like token in ``text`` with English words."""
    text = _COMMA_NUMBER_RE.sub(_remove_commas, text)
    text = _POUNDS_RE.sub(_expand_pounds, text)
    text = _DOLLARS_RE.sub(_expand_dollars, text)
    text = _DECIMAL_RE.sub(_expand_decimal_point, text)
    text = _ORDINAL_RE.sub(_expand_ordinal, text)
    text = _NUMBER_RE.sub(_expand_number, text)
    return text
