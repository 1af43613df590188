"""One long recording and its transcript -> short (audio, text) pairs to fine-tune on.

    segments = split_long_recording(wav, sample_rate, transcript, aligner=BoundaryAligner())
    write_segments(segments, "my_voice/", "reading")   # my_voice/reading_001.wav + .txt, ...

The recording is cut at pauses (webrtcvad, as `takes.speech_frames` hears them) into
segments of `MIN_SEGMENT_S` to `MAX_SEGMENT_S` of speech span. The transcript's words are
then shared out so that every segment is spoken at about the recording's average rate
(letters per second of speech), preferring cuts after a sentence or a clause; a dynamic
programme finds the best sharing over all segments at once, so a slow passage early on
does not shift every later cut. With an `aligner` (the starter synthesizer's), each cut is
then moved by up to `MAX_SHIFT_WORDS` words to where the audio matches the texts best.
In Chinese and Japanese, written without spaces, each character counts as a word.

`write_segments` writes the layout `sv2tts-finetune` reads: a flat folder of <name>.wav +
<name>.txt (as `takes_zip.unpack_takes_zip` does for a ZIP of takes).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfake_audio_core.audio_io import resample, write_wav
from deepfake_audio_core.errors import AudioError, WeightsError
from deepfake_audio.training.takes import (HAN, KANA, LETTERS_PER_SECOND, VAD_FRAME_S, VAD_RATE, frame_energies,
                                           letter_count, safe_name, speech_frames)

logger = logging.getLogger(__name__)

MIN_PAUSE_S = 0.3  # a pause at least this long may end a segment (a comma's pause is shorter when read aloud)
# Segment lengths (first to last speech frame). Synthesizer preprocessing drops utterances
# under 1.6 s and over 900 mel frames (11.25 s once its VAD has trimmed the silences).
MIN_SEGMENT_S = 2.0  # shorter segments are merged into a neighbour
MAX_SEGMENT_S = 11.0  # longer ones are split
KEEP_SILENCE_S = 0.2  # silence kept before and after a segment's speech (never past the middle of a pause)
# Sharing out the words: a segment's cost is (ln(its rate / the recording's rate) / RATE_SPREAD)^2,
# less a bonus when its last word ends a sentence or a clause. A reader's rate varies from
# sentence to sentence (one flite voice over 20 prompts: within 17 % of its median); ending
# on a sentence is worth a 20 % rate error, on a comma 13 %.
RATE_SPREAD = 0.2
SENTENCE_BONUS = 1.0
CLAUSE_BONUS = 0.4
MAX_SHIFT_WORDS = 3  # how far the aligner may move a cut
# The aligner's log-likelihood (nats) worth one unit of the sharing cost above. A word on the
# wrong side of a cut costs the aligner tens to hundreds of nats, but a short word ("a", "the")
# next to it as little as a few, either way: there the rate and the sentence end should
# decide. Of 5, 8, 10 and 15, 5 and 8 placed the most cuts in the tests described under
# `BoundaryAligner` (100 and 100 of 108 segments, against 98).
ALIGNER_NATS_PER_COST = 5.0
MIN_LETTERS_WORD = 1  # each word counts this many letters more: the gap after it takes time too


@dataclass(frozen=True)
class Segment:
    """A piece of the recording: [start_s, end_s) seconds into it, its words, and its audio
    (samples,) float32 at `sample_rate` Hz (the recording's own rate)."""

    start_s: float
    end_s: float
    text: str
    wav: np.ndarray
    sample_rate: int
    speech_s: float = 0.0  # seconds of speech in it (VAD)


def split_long_recording(wav: np.ndarray, sample_rate: int, transcript: str,
                         aligner: "BoundaryAligner | None" = None) -> list[Segment]:
    """Cut `wav` (samples,) float in [-1, 1] at `sample_rate` Hz into segments with their words.

    Raises `AudioError` when the recording has no speech, or when the transcript cannot be
    what was read (far too many or too few words for the speech, fewer words than segments).
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"The recording must be mono audio (samples,), not of shape {wav.shape}.")
    wav16 = resample(wav, sample_rate, VAD_RATE)
    mask = speech_frames(wav16)
    spans = pause_spans(mask, frame_energies(wav16))
    if not spans:
        raise AudioError("No speech was heard in the recording: check the file and the microphone.")
    words = transcript_words(transcript)
    speech = np.array([mask[a:b].sum() * VAD_FRAME_S for a, b in spans])
    _check_transcript(words, speech, len(spans))
    cuts = assign_words(words, speech)
    bounds = _bounds(spans, len(wav) / sample_rate)
    if aligner is not None and len(spans) > 1:
        # the audio as it will be written, silences around included: cut to the speech frames,
        # a word's weak first or last sound was often lost and the aligner misplaced short words
        pieces = [wav16[int(round(a * VAD_RATE)):int(round(b * VAD_RATE))] for a, b in bounds]
        cuts = aligner.refine(pieces, words, cuts, speech)
    return [Segment(start, end, join_words(words[cuts[k]:cuts[k + 1]]),
                    wav[int(round(start * sample_rate)):int(round(end * sample_rate))].copy(), sample_rate,
                    round(float(speech[k]), 3))
            for k, (start, end) in enumerate(bounds)]


# Chinese and Japanese are written without spaces between words: there, each character (a
# syllable or a mora, with the punctuation after it) is a word of the transcript.
_UNSPACED = HAN + KANA + "\u30fc"  # and the long-vowel mark
_OPENING = "「『（【《〈“‘(\\["  # punctuation that belongs to the next word
_TOKEN = re.compile(rf"[^\w\s]*[{_UNSPACED}][^\w\s{_UNSPACED}{_OPENING}]*|[^\s{_UNSPACED}]+")
_HAS_UNSPACED = re.compile(rf"[{_UNSPACED}]")


def transcript_words(transcript: str) -> list[str]:
    """The transcript's words: what spaces separate, and each Chinese character or kana apart."""
    return _TOKEN.findall(transcript)


def join_words(words: Sequence[str]) -> str:
    """`words` as text again: a space between two words unless both are Chinese or Japanese."""
    out = ""
    for word in words:
        if out and not (_HAS_UNSPACED.search(out[-3:]) and _HAS_UNSPACED.search(word)):
            out += " "
        out += word
    return out


def _check_transcript(words: Sequence[str], speech: np.ndarray, n_spans: int) -> None:
    if len(words) < n_spans:
        raise AudioError(f"The transcript has {len(words)} words but the recording has {n_spans} separate phrases: "
                         "check that the transcript belongs to this recording.")
    rate = sum(letter_count(w) for w in words) / speech.sum()
    low, high = LETTERS_PER_SECOND
    if not low / 2 <= rate <= high * 2:  # per segment the bounds are tighter; this only catches the wrong text
        raise AudioError(f"The transcript does not fit the recording: {speech.sum():.0f} s of speech for "
                         f"{len(words)} words. Check that it is the whole text that was read, and only that.")


def pause_spans(mask: np.ndarray, energy: np.ndarray) -> list[tuple[int, int]]:
    """Speech spans [start, stop) in frames of `mask` (bool (frames,)), cut at pauses of at least
    `MIN_PAUSE_S`, with short spans merged and long ones split (`energy` (frames,) picks the cut
    where no pause is left)."""
    runs = _runs(mask)
    min_gap = round(MIN_PAUSE_S / VAD_FRAME_S)
    spans: list[tuple[int, int]] = []
    for a, b in runs:
        if spans and a - spans[-1][1] < min_gap:
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    longest = round(MAX_SEGMENT_S / VAD_FRAME_S)
    split: list[tuple[int, int]] = []
    for span in spans:
        split += _split_long(span, mask, energy, longest)
    return _merge_short(split, round(MIN_SEGMENT_S / VAD_FRAME_S), longest)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _split_long(span: tuple[int, int], mask: np.ndarray, energy: np.ndarray, longest: int) -> list[tuple[int, int]]:
    """`span` cut at its longest inner pause (one leaving both sides at least a minimum long if
    there is one), again and again until no piece is longer than `longest` frames."""
    a, b = span
    if b - a <= longest:
        return [span]
    shortest = round(MIN_SEGMENT_S / VAD_FRAME_S)
    gaps = [(a + x, a + y) for x, y in _runs(~mask[a:b]) if x > 0 and a + y < b]
    fair = [g for g in gaps if g[0] - a >= shortest and b - g[1] >= shortest]
    if fair or gaps:
        left_end, right_start = max(fair or gaps, key=lambda g: (g[1] - g[0], -abs((g[0] + g[1]) / 2 - (a + b) / 2)))
    else:  # no pause at all: the quietest frame of the middle half
        lo, hi = a + (b - a) // 4, b - (b - a) // 4
        left_end = right_start = lo + int(np.argmin(energy[lo:hi]))
        right_start += 1
    return (_split_long((a, left_end), mask, energy, longest)
            + _split_long((right_start, b), mask, energy, longest))


def _merge_short(spans: list[tuple[int, int]], shortest: int, longest: int) -> list[tuple[int, int]]:
    """Spans shorter than `shortest` frames joined to the neighbour across the shorter pause,
    as long as the result is at most `longest`; the shortest span first."""
    spans = list(spans)
    stuck: set[tuple[int, int]] = set()
    while True:
        short = [k for k, (a, b) in enumerate(spans) if b - a < shortest and (a, b) not in stuck]
        if not short:
            return spans
        k = min(short, key=lambda i: spans[i][1] - spans[i][0])
        options = []
        if k > 0 and spans[k][1] - spans[k - 1][0] <= longest:
            options.append((spans[k][0] - spans[k - 1][1], k - 1))
        if k + 1 < len(spans) and spans[k + 1][1] - spans[k][0] <= longest:
            options.append((spans[k + 1][0] - spans[k][1], k + 1))
        if not options:
            stuck.add(spans[k])
            continue
        _, other = min(options)
        first, second = sorted((k, other))
        spans[first:second + 1] = [(spans[first][0], spans[second][1])]


def _weights(words: Sequence[str]) -> np.ndarray:
    return np.array([letter_count(w) + MIN_LETTERS_WORD for w in words], dtype=np.float64)


def _bonus(words: Sequence[str]) -> np.ndarray:
    """Bonus for a cut after each word: a sentence end, a clause end, or none."""
    out = np.zeros(len(words))
    for k, word in enumerate(words):
        tail = word.rstrip("\"')]}»”’」』）】》〉")
        if tail.endswith((".", "!", "?", "…", "。", "！", "？")):
            out[k] = SENTENCE_BONUS
        elif tail.endswith((",", ";", ":", "-", "–", "—", "，", "、", "；", "：")):
            out[k] = CLAUSE_BONUS
    return out


class WordSharing:
    """The cost of giving segments their words: `words` of a transcript, `speech` (K,) seconds of
    speech of each segment. A segment's cost is `_rate_cost` of its letters (`letter_count`
    + `MIN_LETTERS_WORD` a word) against what its duration suggests at the recording's
    average rate, less the punctuation bonus of its last word unless it is the last segment.
    """

    def __init__(self, words: Sequence[str], speech: np.ndarray):
        self.speech = np.asarray(speech, dtype=np.float64)
        weights = _weights(words)
        self.cumulative = np.concatenate([[0.0], np.cumsum(weights)])  # letters before word j
        self.rate = self.cumulative[-1] / self.speech.sum()  # letters per second of speech
        self.bonus = np.concatenate([[0.0], _bonus(words)])  # bonus[j]: for a cut before word j
        self.mean_weight = float(weights.mean())

    def cost(self, k: int, start: int, stop: int) -> float:
        """Cost of segment k holding words[start:stop]."""
        cost = float(_rate_cost(self.cumulative[stop] - self.cumulative[start], self.rate * self.speech[k]))
        return cost - (self.bonus[stop] if k + 1 < len(self.speech) else 0.0)


def _rate_cost(letters, expected):
    """(ln(letters / expected) / RATE_SPREAD)^2, of scalars or arrays."""
    return (np.log(letters / expected) / RATE_SPREAD) ** 2


def assign_words(words: Sequence[str], speech: np.ndarray) -> list[int]:
    """Where the transcript's words are cut among segments with `speech` (K,) seconds of speech.

    Returns K + 1 word indices, 0 first and len(words) last; segment k gets
    words[cuts[k]:cuts[k + 1]] (at least one word). Minimises the summed `WordSharing`
    cost of all segments (dynamic programming over segments and cut positions).
    """
    sharing = WordSharing(words, speech)
    n, k_segments = len(words), len(speech)
    # Words a segment may take: about four times what the longest one's duration suggests
    # (the cost rules out more), so the programme costs K x widest vector steps, not K x n.
    widest = int(min(n, 4 * sharing.rate * sharing.speech.max() / sharing.mean_weight + 10))
    best = np.full((k_segments + 1, n + 1), np.inf)
    best[0, 0] = 0.0
    back = np.zeros((k_segments + 1, n + 1), dtype=np.int64)
    ends = np.arange(n + 1)
    for k in range(1, k_segments + 1):
        expected = sharing.rate * sharing.speech[k - 1]
        for take in range(1, widest + 1):
            stop = ends[take:]
            start = stop - take
            cost = best[k - 1, start] + _rate_cost(sharing.cumulative[stop] - sharing.cumulative[start], expected)
            if k < k_segments:
                cost = cost - sharing.bonus[stop]
            better = cost < best[k, stop]
            best[k, stop[better]] = cost[better]
            back[k, stop[better]] = take
    if not np.isfinite(best[k_segments, n]):
        raise AudioError("The transcript could not be shared out among the recording's phrases: check that it "
                         "is the text that was read.")
    cuts = [n]
    for k in range(k_segments, 0, -1):
        cuts.append(cuts[-1] - int(back[k, cuts[-1]]))
    return cuts[::-1]


class BoundaryAligner:
    """Moves cuts between segments to where the starter synthesizer's aligner matches audio and text best.

    The FastSpeech starter model learned a monotonic aligner between mel frames and
    characters (`synthesizer.fastspeech.Aligner`), trained with a forward-sum loss: the
    CTC log-likelihood of the text given the frames' soft alignment. That likelihood is
    the score here: a candidate cut is scored by the sum of both segments' likelihoods.
    Measured on recordings of 12 prompts by five voices (flite kal, slt, rms, awb; espeak-ng;
    rms and awb never trained on), each sentence at a random tempo of 0.7-1.4x and the
    transcript without punctuation: 58 of 60 segments got exactly their sentence, against 6
    of 60 without the aligner; with every cut first moved 0-3 words off at random, 60 of 60.
    Sentences alternating between 0.75x and 1.35x (or 0.85x and 1.2x), 8 recordings of 6:
    42 of 48 (0 without); the misses were short words that begin a sentence ("A", "Is")
    put at the end of the one before. A 40-sentence recording with punctuation and pauses
    of 0.15-0.6 s: 40 of 40 with or without. This likelihood placed more cuts than the
    best single path (Viterbi) through the aligner's raw or normalised scores (58 of 60
    against 52 and 54, in a first version; 42 of 48 against 31 in the alternating test)
    and than forced alignment of both segments' text through their joined audio, which
    drifted across the pause. Loads the official speaker encoder too (the aligner hears
    the voice through its embedding).
    """

    def __init__(self, synthesizer: Path | str | None = None, encoder: Path | str | None = None,
                 device: str = "cpu"):
        import torch
        from deepfake_audio.download import STARTER_MODELS_DIR
        from encoder.inference import Encoder
        from synthesizer.fastspeech import FastSpeech
        from synthesizer.inference import Synthesizer
        path = Path(synthesizer) if synthesizer is not None else STARTER_MODELS_DIR / "synthesizer.pt"
        synth = Synthesizer(path, device)
        if not isinstance(synth.model, FastSpeech):
            raise WeightsError(f"{path} is a {synth.architecture} synthesizer; cuts are refined with a FastSpeech "
                               "one (it has the aligner), such as the starter model.")
        self.model, self.text_ids, self.device = synth.model, synth.text_ids, torch.device(device)
        self.encoder = Encoder(encoder, device)

    def refine(self, pieces: Sequence[np.ndarray], words: Sequence[str], cuts: Sequence[int],
               speech: np.ndarray) -> list[int]:
        """`cuts` (as `assign_words` gives them) with each inner cut moved by up to `MAX_SHIFT_WORDS`
        words; `pieces` are the segments' audio (the silence around included), 16 kHz float32
        (samples,) each, and `speech` (K,) their seconds of speech.

        A candidate's score is both segments' log-likelihood less `ALIGNER_NATS_PER_COST`
        times their sharing cost (rate and punctuation). Left to right, twice: a cut is
        judged with its neighbours as they stand, and the first pass may have moved the
        next one since.
        """
        from encoder.audio import preprocess_wav
        voice = preprocess_wav(np.concatenate(pieces)[:30 * VAD_RATE])
        speaker = self._tensor(self.encoder.embed_utterance(voice))[None]
        mels = [self._mel(piece) for piece in pieces]
        sharing = WordSharing(words, speech)
        known: dict[tuple[int, int, int], float] = {}  # (segment, first word, end) -> score

        def fit(k: int, start: int, stop: int) -> float:
            if (k, start, stop) not in known:
                known[k, start, stop] = self.score(mels[k], join_words(words[start:stop]), speaker) \
                    - ALIGNER_NATS_PER_COST * sharing.cost(k, start, stop)
            return known[k, start, stop]

        cuts = list(cuts)
        for _ in range(2):
            before = list(cuts)
            for k in range(1, len(cuts) - 1):
                options = range(max(cuts[k] - MAX_SHIFT_WORDS, cuts[k - 1] + 1),
                                min(cuts[k] + MAX_SHIFT_WORDS, cuts[k + 1] - 1) + 1)
                cuts[k] = max((fit(k - 1, cuts[k - 1], c) + fit(k, c, cuts[k + 1]), -abs(c - cuts[k]), c)
                              for c in options)[2]
            if cuts == before:
                break
        return cuts

    def _tensor(self, array: np.ndarray):
        import torch
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    def _mel(self, wav16: np.ndarray):
        """(1, 80, frames) mel of 16 kHz speech, peak-rescaled as preprocessing does."""
        from synthesizer.audio import melspectrogram
        peak = float(np.max(np.abs(wav16))) if len(wav16) else 0.0
        return self._tensor(melspectrogram(wav16 / peak * 0.9 if peak > 0 else wav16))[None]

    def score(self, mel, text: str, speaker) -> float:
        """Log-likelihood of `text` given `mel` (1, 80, T) under the aligner (as its forward-sum loss)."""
        import torch
        import torch.nn.functional as F
        ids = self.text_ids(text)
        n, t = len(ids), mel.size(2)
        if n > t:  # more characters than frames: no alignment gives each one a frame
            return -np.inf
        with torch.inference_mode():
            chars = torch.tensor([ids], device=self.device)
            scores = self.model.aligner(self.model.embedding(chars), mel, speaker)
            # as `fastspeech_train.forward_sum_loss`: soft alignment plus a blank class of constant score
            with_blank = F.pad(torch.log_softmax(scores, dim=-1), (1, 0), value=-1.0)
            log_probs = torch.log_softmax(with_blank, dim=-1).transpose(0, 1)
            loss = F.ctc_loss(log_probs, torch.arange(1, n + 1, device=self.device)[None], torch.tensor([t]),
                              torch.tensor([n]), blank=0, reduction="sum")
        return -float(loss)


def _bounds(spans: Sequence[tuple[int, int]], total_s: float) -> list[tuple[float, float]]:
    """(start_s, end_s) of each span with up to `KEEP_SILENCE_S` either side, never past a pause's middle."""
    frame = VAD_FRAME_S
    out = []
    for k, (a, b) in enumerate(spans):
        start = max(a * frame - KEEP_SILENCE_S, 0.0 if k == 0 else (spans[k - 1][1] + a) * frame / 2)
        end = min(b * frame + KEEP_SILENCE_S, total_s if k + 1 == len(spans) else (b + spans[k + 1][0]) * frame / 2)
        out.append((round(start, 3), round(end, 3)))
    return out


def write_segments(segments: Sequence[Segment], folder: Path | str, name: str) -> list[Path]:
    """Write `<name>_001.wav` + `<name>_001.txt`, ... into `folder` (16-bit WAV); returns the WAV paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(name)
    width = max(3, len(str(len(segments))))
    paths = []
    for k, segment in enumerate(segments, start=1):
        path = write_wav(folder / f"{stem}_{k:0{width}d}.wav", segment.wav, segment.sample_rate)
        path.with_suffix(".txt").write_text(segment.text + "\n", encoding="utf-8")
        paths.append(path)
    return paths
