"""Parity tests for the synthesizer text front end against the reference vectors."""

import json
from pathlib import Path

import pytest

from synthesizer.text import has_speakable_characters, sequence_to_text, symbols, text_to_sequence
from synthesizer.text.cleaners import basic_cleaners, english_cleaners, get_cleaner
from synthesizer.text.symbols import EOS_ID, NUM_SYMBOLS, PAD_ID

DATA = json.loads((Path(__file__).parent / "data" / "text_ids.json").read_text(encoding="utf-8"))
ENTRIES = DATA["entries"]


def _reference_cleaned(text: str, entry: dict) -> str:
    """Our cleaned text in the vector file's form (brace groups re-inserted raw)."""
    if "segments" not in entry:
        return english_cleaners(text)
    out = []
    for seg in entry["segments"]:
        if seg["kind"] == "text":
            assert english_cleaners(seg["raw"]) == seg["cleaned"]
            out.append(english_cleaners(seg["raw"]))
        else:
            out.append("{" + seg["raw"] + "}")
    return "".join(out)


def test_symbol_table_matches_reference():
    assert list(symbols) == DATA["symbols"]
    assert NUM_SYMBOLS == 66 and PAD_ID == 0 and EOS_ID == 1
    assert "".join(symbols[2:]) == "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!'\"(),-.:;? "


@pytest.mark.parametrize("entry", ENTRIES, ids=[str(i) for i in range(len(ENTRIES))])
def test_text_ids_parity(entry):
    ids = text_to_sequence(entry["text"])
    assert ids == entry["ids"]
    assert _reference_cleaned(entry["text"], entry) == entry["cleaned"]
    assert sequence_to_text(ids) == entry["kept"] + "~"


@pytest.mark.parametrize(
    "text, cleaned",
    [
        ("Hello world, this is a test.", "hello world, this is a test."),
        (
            "Dr. Smith paid $3.50 on the 2nd of May, 1999.",
            "doctor smith paid three dollars, fifty cents on the second of may, nineteen ninety-nine.",
        ),
        ("Café naïve — «quoted» 100%", "cafe naive -- <<quoted>> one hundred%"),
        ("3.14", "three point fourteen"),
        ("1.000", "one point zero"),
        ("$1.2.3", "one point two.three dollars"),
        ("Mr. and Mrs. Smith, St. Louis, Co. Ltd.", "mister and misess smith, saint louis, company limited"),
        ("2000", "two thousand"),
        ("2005", "two thousand five"),
        ("2010", "twenty ten"),
        ("3000", "three thousand"),
        ("1000", "one thousand"),
        ("1100", "eleven hundred"),
    ],
)
def test_facts_examples(text, cleaned):
    assert english_cleaners(text) == cleaned


def test_facts_hello_world_ids():
    expected = [35, 32, 39, 39, 42, 65, 50, 42, 45, 39, 31, 59, 65, 47, 35, 36, 46, 65, 36, 46, 65, 28, 65,
                47, 32, 46, 47, 61, 1]
    assert text_to_sequence("Hello world, this is a test.") == expected


def test_unknown_characters_are_dropped_from_ids():
    ids = text_to_sequence("Café naïve — «quoted» 100%")
    assert sequence_to_text(ids) == "cafe naive -- quoted one hundred~"


@pytest.mark.parametrize(
    "text, cleaned",
    [
        ("$3.5", "three dollars, five cents"),  # cents read as an integer
        ("$1", "one dollar"),
        ("$0.01", "one cent"),
        ("$.5", "five cents"),
        ("$0", "zero dollars"),
        ("$2.00", "two dollars"),
        ("21st", "twenty-first"),
        ("103rd", "one hundred and third"),  # ordinals keep inflect's "and"
        ("1th", "first"),
        ("101", "one hundred one"),  # cardinals drop "and"
        ("1234567", "one million, two hundred thirty-four thousand, five hundred sixty-seven"),
        ("1,234,567", "one million, two hundred thirty-four thousand, five hundred sixty-seven"),
        ("12,5", "one hundred twenty-five"),
        ("1900", "nineteen hundred"),
        ("1905", "nineteen oh five"),
        ("1001", "ten oh one"),
        ("1999", "nineteen ninety-nine"),
        ("2019", "twenty nineteen"),
        ("007", "seven"),
        ("0", "zero"),
        ("£1,000", "psone thousand"),  # pound rule is unreachable after Unidecode
        ("Mr Smith", "mr smith"),  # abbreviation needs a period
        ("MRS. X", "misess x"),
        ("  a \t\n b  ", " a b "),
    ],
)
def test_number_and_cleaner_edge_cases(text, cleaned):
    assert english_cleaners(text) == cleaned


def test_brace_segments_are_cleaned_separately():
    assert sequence_to_text(text_to_sequence("Turn left on {HH AW1 S S T AH0 N} Street.")) == "turn left on  street.~"


def test_newline_inside_braces_defeats_the_group():
    assert sequence_to_text(text_to_sequence("a {H\nH} b")) == "a h h b~"


def test_newline_after_group_drops_the_rest():
    assert sequence_to_text(text_to_sequence("a {HH} b\nc d")) == "a  b~"


def test_multiple_groups():
    assert sequence_to_text(text_to_sequence("x {A} y {B} z")) == "x  y  z~"


def test_empty_text_gives_eos_only():
    assert text_to_sequence("") == [1]
    assert text_to_sequence("🎉✨") == [1]
    assert text_to_sequence("{HH AH0}") == [1]


def test_pad_and_eos_characters_are_dropped():
    assert text_to_sequence("a_~b") == [28, 29, 1]


def test_text_is_not_stripped():
    assert text_to_sequence("  a  ") == [65, 28, 65, 1]


def test_has_speakable_characters():
    assert has_speakable_characters(text_to_sequence("Hi."))
    assert not has_speakable_characters(text_to_sequence("?! ..."))
    assert not has_speakable_characters([1])
    assert not has_speakable_characters([])
    assert has_speakable_characters([2])
    assert has_speakable_characters([53])
    assert not has_speakable_characters([0, 54, 65])


def test_other_cleaners_and_lookup():
    assert basic_cleaners("Café  1") == "café 1"
    assert get_cleaner("transliteration_cleaners")("Café  1") == "cafe 1"
    assert text_to_sequence("Ab 1", cleaner_names=("basic_cleaners",)) == [28, 29, 65, 1]
    with pytest.raises(ValueError):
        get_cleaner("nope")
