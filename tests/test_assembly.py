"""One timeline for a clone: the lead, each sentence, the pause after it, the peak."""
import numpy as np

from deepfake_audio.assembly import OUTPUT_PEAK, Timeline, normalize_peak
from deepfake_audio.pipeline import SENTENCE_PAUSE_SECONDS, ClonePlan


def _plan(n: int, gaps: tuple[float, ...] = (), lead: float = 0.0) -> ClonePlan:
    return ClonePlan(tuple("x" * n), ((1,),) * n, "griffinlim", 1, "fast", np.zeros(256, np.float32),
                     gaps=gaps, lead=lead)


def test_join_lays_out_lead_sentences_and_pauses_at_the_peak():
    timeline = Timeline(_plan(2, gaps=(0.5, 0.25), lead=0.1), sample_rate=100)
    pieces = [np.full(3, 0.5), np.full(2, -2.0)]
    wav = timeline.join(pieces)
    assert wav.dtype == np.float32 and len(wav) == 10 + 3 + 50 + 2 + 25
    assert not np.any(wav[:10]) and not np.any(wav[13:63]) and not np.any(wav[65:])
    np.testing.assert_allclose(wav[10:13], 0.5 * OUTPUT_PEAK / 2.0, rtol=1e-6)
    assert float(np.max(np.abs(wav))) == np.float32(OUTPUT_PEAK)


def test_the_usual_pauses_and_silence():
    timeline = Timeline(_plan(3), sample_rate=16000)
    assert len(timeline.lead()) == 0
    assert len(timeline.pause_after(0)) == round(SENTENCE_PAUSE_SECONDS * 16000)
    assert len(timeline.pause_after(2)) == 0  # none after the last sentence
    assert not np.any(timeline.join([np.zeros(5)] * 3))  # silence stays silence
    assert normalize_peak(np.zeros(0)).dtype == np.float32


def test_a_stream_is_levelled_by_the_loudest_sample_so_far():
    timeline = Timeline(_plan(1))
    quiet = np.full(4, 0.5)
    np.testing.assert_array_equal(timeline.level(quiet), quiet)  # quiet speech is left as made
    np.testing.assert_allclose(timeline.level(np.full(2, 1.94)), OUTPUT_PEAK)
    np.testing.assert_allclose(timeline.level(quiet), 0.25)  # and the peak so far stays
