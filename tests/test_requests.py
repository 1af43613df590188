"""The request values' one definition and check (`deepfake_audio_core.requests`)."""
from __future__ import annotations

import pytest

from deepfake_audio_core.errors import RequestError
from deepfake_audio_core.requests import (VOCODER_CHOICES, check_loudness, check_pace, check_pitch,
                                          check_vocoder)


def test_values_in_range_come_back_as_numbers_and_names():
    assert check_pace("1.5") == 1.5 and check_pitch(-12) == -12.0 and check_pitch("3.5") == 3.5
    assert check_loudness("-16") == -16.0 and check_loudness("") is None and check_loudness(None) is None
    assert [check_vocoder(v) for v in ("Griffin-Lim", " WaveRNN ", None, "", "starter")] == \
        ["griffinlim", "wavernn", "auto", "auto", "starter"]
    assert VOCODER_CHOICES == ("auto", "wavernn", "starter", "griffinlim")


@pytest.mark.parametrize("check, value, message", [
    (check_pace, 0.25, "pace must be from 0.5 to 2.0"), (check_pace, "fast", "pace must be a number"),
    (check_pace, float("nan"), "pace must be a number"),
    (check_pitch, 13, "pitch must be from -12 to 12 semitones"), (check_pitch, None, "pitch must be a number"),
    (check_loudness, -3, "from -40.0 to -9.0 LUFS"), (check_loudness, "loud", "number of LUFS"),
    (check_vocoder, "hifigan", "Unknown vocoder 'hifigan': choose wavernn, starter, griffinlim or auto"),
    (check_vocoder, 3, "Unknown vocoder 3"),
])
def test_each_bad_value_says_what_is_allowed(check, value, message):
    with pytest.raises(RequestError, match=message):
        check(value)
