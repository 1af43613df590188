"""Scripts: text with pauses and voice changes, for dialogues, podcasts and narration.

    [voice: Alice] Hello Bob. [pause 0.5] Did you sleep well?
    [voice: Bob] Not at all.
    [pause 2]
    The narrator goes on in the request's own voice... until another [voice: ...] line.

* `[pause S]` anywhere: S seconds of silence (0 < S <= 10), instead of the usual short
  pause between sentences; at most 60 seconds of pauses in one request.
* A line that starts with `[voice: Name]` is spoken, like the lines after it, by the saved
  voice `Name`, until another `[voice: ...]` line. `[voice: default]` goes back to the
  request's own voice.
* Anything else in square brackets is an error that says where it is (line and column),
  as is a name that is not a saved voice. Text without tags is spoken as before.

`parse_script` turns a text into `Part`s; the pipeline splits each part into sentences.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from deepfake_audio_core.errors import TextError

MAX_PAUSE_SECONDS = 10.0
# All the pauses of one request together: silence costs memory and watermarking time like speech.
MAX_TOTAL_PAUSE_SECONDS = 60.0
DEFAULT_VOICE = "default"
_TAG = re.compile(r"\[([^\[\]]*)\]")
_PAUSE = re.compile(r"pause\s+(\d+(?:\.\d*)?|\.\d+)\s*(?:s|sec|seconds?)?", re.IGNORECASE)
_VOICE = re.compile(r"voice\s*:\s*(.+)", re.IGNORECASE)


@dataclass(frozen=True)
class Part:
    """A stretch of text in one voice (`voice` None: the request's own), or a pause (`pause` seconds)."""

    text: str = ""
    voice: str | None = None
    pause: float = 0.0
    line: int = 1  # where it starts in the script (1-based), for error messages


def has_markup(text: str) -> bool:
    return _TAG.search(text or "") is not None


def parse_script(text: str, known_voices: Iterable[str] | None = None) -> list[Part]:
    """The text's parts in order. `known_voices` (names, case-insensitive) checks `[voice: ...]` tags;
    None accepts any name. Raises `TextError` naming the line and column of a bad tag."""
    known = None if known_voices is None else {name.casefold(): name for name in known_voices}
    parts: list[Part] = []
    voice: str | None = None
    for number, line in enumerate(text.splitlines() or [""], start=1):
        position = 0
        stripped = line.lstrip()
        lead = len(line) - len(stripped)
        match = _TAG.match(stripped)
        if match and _VOICE.fullmatch(match.group(1).strip()):
            name = _VOICE.fullmatch(match.group(1).strip()).group(1).strip()
            voice = _voice(name, known, number, lead + 1)
            position = lead + match.end()
        for tag in _TAG.finditer(line, position):
            parts.append(Part(line[position:tag.start()], voice, line=number))
            content = tag.group(1).strip()
            pause = _PAUSE.fullmatch(content)
            if pause is None:
                what = "a [voice: ...] tag must start its line" if _VOICE.fullmatch(content) else \
                    "use [pause SECONDS] or, at the start of a line, [voice: NAME]"
                raise TextError(f"Unknown tag [{content}] at line {number}, column {tag.start() + 1}: {what}.")
            seconds = float(pause.group(1))
            if not 0 < seconds <= MAX_PAUSE_SECONDS:
                raise TextError(f"[{content}] at line {number}, column {tag.start() + 1}: a pause is more than 0 "
                                f"and at most {MAX_PAUSE_SECONDS:g} seconds.")
            parts.append(Part(pause=seconds, line=number))
            position = tag.end()
        stray = [i for i in (line.find("[", position), line.find("]", position)) if i >= 0]
        if stray:
            raise TextError(f"An unclosed or stray bracket at line {number}, column {min(stray) + 1}: tags are "
                            "[pause SECONDS] and [voice: NAME].")
        parts.append(Part(line[position:] + "\n", voice, line=number))
    return _merged(parts)


def _voice(name: str, known: dict[str, str] | None, line: int, column: int) -> str | None:
    if name.casefold() == DEFAULT_VOICE:
        return None
    if known is None:
        return name
    if name.casefold() not in known:
        listed = ", ".join(sorted(known.values())) or "none saved yet"
        raise TextError(f"Unknown voice {name!r} at line {line}, column {column}: saved voices are {listed}.")
    return known[name.casefold()]


def _merged(parts: list[Part]) -> list[Part]:
    """Adjacent text of one voice joined; empty text dropped; pauses kept in place."""
    merged: list[Part] = []
    for part in parts:
        if part.pause:
            merged.append(part)
        elif part.text.strip():
            if merged and not merged[-1].pause and merged[-1].voice == part.voice:
                merged[-1] = Part(merged[-1].text + part.text, part.voice, line=merged[-1].line)
            else:
                merged.append(part)
    return [Part(p.text.strip(), p.voice, p.pause, p.line) if not p.pause else p for p in merged]


def spoken_characters(parts: Iterable[Part]) -> int:
    """The characters that are spoken, markup left out."""
    return sum(len(p.text) for p in parts if not p.pause)


def check_pauses(parts: Iterable[Part]) -> float:
    """The seconds of pause asked for in all; `TextError` above `MAX_TOTAL_PAUSE_SECONDS`."""
    total = sum(p.pause for p in parts)
    if total > MAX_TOTAL_PAUSE_SECONDS:
        raise TextError(f"The text asks for {total:g} seconds of pauses; at most {MAX_TOTAL_PAUSE_SECONDS:g} "
                        "seconds are allowed in one request.")
    return total
