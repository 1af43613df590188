"""Frame-level streaming: the vocoder starts on the synthesizer's first frames, and a stream
gives `clone(rolling=True)`'s audio exactly (before level and watermark), however the frames arrive."""
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from conftest import DATA, vector
from deepfake_audio import Pipeline
from deepfake_audio.pipeline import ClonePlan
from deepfake_audio_core.rng import make_generator
from deepfake_audio.streaming import AudioChunk, playback_gaps, stream_clone
from synthesizer import fast
from synthesizer.inference import Synthesizer
from synthesizer.model import postnet_blocks
from synthesizer.postnet_blocks import PostnetLane
from vocoder.inference import Vocoder
from vocoder.rolling import MelTimeline, RollingSchedule


def test_schedule_cuts_the_timeline_into_overlapping_folds():
    schedule = RollingSchedule(align=192)
    for total in (1, 900, 2400, 5000, 80_000, 200_000):
        folds = schedule.folds(total)
        assert folds[0][0] == 0 and folds[-1][0] + folds[-1][1] == total
        for i, ((s0, l0), (s1, _)) in enumerate(zip(folds, folds[1:])):
            assert s1 == s0 + l0 - schedule.overlap_before(i + 1)  # each join overlaps as planned
            assert l0 % 192 == 0 and l0 <= schedule.longest
        lengths = [n for _, n in folds[:-1]]
        assert lengths == sorted(lengths)  # short first folds, then longer ones


def test_postnet_blocks_tile_the_mel():
    for frames in (1, 15, 16, 47, 80, 81, 500):
        blocks = postnet_blocks(frames)
        assert blocks[0][0] == 0 and blocks[-1][1] == frames
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert postnet_blocks(500)[0] == (0, 16)  # short first blocks: a stream starts early


@pytest.fixture(scope="module")
def vocoder(seed1_dir):
    return Vocoder(seed1_dir / "vocoder.pt")


def _feed(timeline: MelTimeline, mel: np.ndarray, seed: int) -> threading.Thread:
    """Append `mel` to `timeline` from another thread, in random pieces at random moments."""
    def run():
        rng = np.random.default_rng(seed)
        k = 0
        while k < mel.shape[1]:
            n = int(rng.integers(1, 12))
            timeline.append(mel[:, k:k + n])
            k += n
            time.sleep(float(rng.uniform(0, 0.01)))
        timeline.finish()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_rolling_audio_does_not_depend_on_how_the_frames_arrive(vocoder):
    """Same samples and the same pieces: a stream levels and watermarks piece by piece, so where
    pieces end must not depend on timing either."""
    mel = vector("voc_input_mel.npy")[:, :90]
    whole = next(vocoder.rolling_waveform(mel, seed=3))
    assert len(whole) == 200 * (mel.shape[1] - 1)

    def pieces_of(timeline: MelTimeline) -> list[np.ndarray]:
        return list(vocoder.rolling_waveform(timeline, make_generator(3), first_samples=400, min_samples=800))

    complete = pieces_of(MelTimeline.complete(mel / 4))  # every frame there from the start
    layout = [len(p) for p in complete]
    assert len(layout) > 3 and layout[0] >= 400
    np.testing.assert_array_equal(np.concatenate(complete), whole)
    for feed_seed in (0, 1):
        timeline = MelTimeline()
        thread = _feed(timeline, mel / 4, feed_seed)
        pieces = pieces_of(timeline)
        thread.join()
        assert [len(p) for p in pieces] == layout
        np.testing.assert_array_equal(np.concatenate(pieces), whole)
    # a producer driven by the consumer itself (what streaming uses) gives the same pieces too
    for step in (1, 5, 30):
        timeline = MelTimeline()

        def produce(step=step):
            for k in range(0, mel.shape[1], step):
                timeline.append(mel[:, k:k + step] / 4)
                yield
        timeline.producer, timeline.lookahead = produce(), 10 * step
        pieces = pieces_of(timeline)
        assert [len(p) for p in pieces] == layout
        np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert not np.array_equal(whole, next(vocoder.rolling_waveform(mel, seed=4)))


def test_a_failing_producer_fails_the_stream(vocoder):
    timeline = MelTimeline()

    def produce():
        timeline.append(np.zeros((80, 30), np.float32))
        yield
        raise RuntimeError("synthesizer broke")
    timeline.producer = produce()
    with pytest.raises(RuntimeError, match="synthesizer broke"):
        list(vocoder.rolling_waveform(timeline, make_generator(1), first_samples=400))


@pytest.fixture(scope="module")
def synthesizer(seed1_dir):
    synth = Synthesizer(seed1_dir / "synthesizer.pt")
    synth.hparams = replace(synth.hparams, max_decoder_frames=160)
    return synth


def test_streamed_frames_join_to_the_fast_mel(synthesizer):
    ids = synthesizer.text_ids("Hello world, this is a test.")
    embed = vector("embed.npy")
    (expected,) = synthesizer.synthesize_ids([ids], [embed], seed=2, mode="fast")
    pieces = list(synthesizer.stream_ids(ids, embed, make_generator(2), "fast", each_step=True))
    frames = [p for p, _ in pieces if p.shape[1]]
    np.testing.assert_array_equal(np.concatenate(frames, axis=1), expected)
    steps = [s for p, s in pieces if p.shape[1]]
    assert steps == sorted(steps) and steps[-1] == 80  # 160 frames at 2 per step
    assert steps[0] <= 24  # the first frames come after a few decoder steps, not after the sentence
    assert len(pieces) >= 80  # `each_step`: one yield per decoder step at least


def test_postnet_blocks_beside_the_decoder_give_the_same_frames(synthesizer):
    """With a lane, the later post-net blocks run on the worker pool beside the decoder steps
    (int8): the pieces are the same bits, only ready at other steps. Stepping a lane's
    `drain` finishes the block in flight without starting another."""
    ids = synthesizer.text_ids("Hello world, this is a test.")
    embed = vector("embed.npy")
    (expected,) = synthesizer.synthesize_ids([ids], [embed], seed=2, mode="fast")
    lane = PostnetLane()
    pieces = synthesizer.stream_ids(ids, embed, make_generator(2), "fast", each_step=True, lane=lane)
    frames = []

    def step() -> bool:  # what a timeline's producer step does: one more decoder step
        item = next(pieces, None)
        if item is not None:
            frames.append(item[0])
        return item is not None
    for piece, _ in pieces:
        frames.append(piece)
        lane.drain(step)
        assert not lane.busy()
    np.testing.assert_array_equal(np.concatenate(frames, axis=1), expected)
    assert lane.submitted >= 1  # 160 frames: blocks of 16, 16, 16, 32, then 64 and the rest
    # and both are the windowed post-net as the model defines it, made after the decoder
    import torch
    cells = synthesizer._lstm_cells("fast")
    with fast.decoding(cells):
        _, post, _ = synthesizer.model.generate(torch.tensor([ids]), torch.from_numpy(embed)[None],
                                                synthesizer.hparams.max_decoder_frames, make_generator(2), cells,
                                                windowed_postnet=True)
    np.testing.assert_array_equal(synthesizer.trim_trailing_silence(post[0].numpy()), expected)
    # fp16's split cells need the worker pool themselves: no lane for them
    assert fast.postnet_beside(synthesizer._lstm_cells("int8"))
    assert not fast.postnet_beside(synthesizer._lstm_cells("fp16"))


def test_a_timeline_drains_its_producer_before_the_consumer_runs():
    timeline, drained = MelTimeline(), []

    def produce():
        for _ in range(3):
            timeline.append(np.zeros((80, 2), np.float32))
            yield
    timeline.producer = produce()
    timeline.drain = lambda step: drained.append(step)
    timeline.wait(2)
    timeline.work(1.0, lookahead=100)
    assert len(drained) == 2 and all(callable(step) for step in drained)


def test_sentences_are_grouped_first_alone_then_doubling():
    def groups(n, mode="fast"):
        return ClonePlan(tuple("x" * n), ((1,),) * n, "wavernn", 1, mode, np.zeros(256, np.float32)).groups()
    assert groups(1) == [[0]]
    assert groups(2) == [[0], [1]]
    assert groups(12) == [[0], [1], [2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert groups(5, "parity") == [[0, 1, 2, 3, 4]]


def test_a_batch_hands_over_its_first_sentence_as_it_is_made(synthesizer):
    """A stream's later sentences are synthesized in one batch; its first sentence's frames come
    while the batch runs (the vocoder would starve otherwise), the others at its end, and they
    join to the batch's mels, which are `synthesize_ids`'s."""
    texts = ("Hello world, this is a test.", "Bye now.", "One more sentence here.")
    ids, embeds = [synthesizer.text_ids(t) for t in texts], [vector("embed.npy")] * 3
    expected = synthesizer.synthesize_ids(ids, embeds, seed=2, mode="fast")
    got, when, row, steps = [[] for _ in texts], [], [0], 0

    def emit(frames, done):
        got[row[0]].append(frames)
        when.append((steps, row[0]))
        row[0] += done
    lane = PostnetLane()
    run = synthesizer.synthesize_steps(ids, embeds, make_generator(2), "fast", emit=emit, lane=lane)
    while True:
        try:
            next(run)
            steps += 1
        except StopIteration as stop:
            mels = stop.value
            break
    assert row[0] == 3
    for mel, pieces, want in zip(mels, got, expected):
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1), mel)
        np.testing.assert_array_equal(mel, want)
    first = [s for s, r in when if r == 0]
    assert first[0] <= 24 and len(set(first)) > 3  # frame by frame, from the first steps on
    assert {s for s, r in when if r > 0} == {steps}  # the others once the batch is done
    assert lane.submitted >= 1  # later post-net blocks ran beside the decoder: same mels


def test_windowed_postnet_stays_close_to_the_whole_one(synthesizer):
    """The fast modes run the post-net in windows (a stream cannot wait for the whole mel);
    with 16 frames of context either side the mel moves by a few thousandths."""
    ids = synthesizer.text_ids("Hello world, this is a test.")
    (windowed,) = synthesizer.synthesize_ids([ids], [vector("embed.npy")], seed=2, mode="fast")
    model = synthesizer.model
    import torch
    mels, _, _ = model.generate(torch.tensor([ids]), torch.from_numpy(vector("embed.npy"))[None],
                                synthesizer.hparams.max_decoder_frames, make_generator(2),
                                synthesizer._lstm_cells("fast"))
    whole = synthesizer.trim_trailing_silence(model.postnet_output(mels)[0].numpy())
    assert whole.shape == windowed.shape
    assert np.abs(whole - windowed).mean() < 0.01 and np.abs(whole - windowed).max() < 0.1


@pytest.fixture(scope="module")
def pipe(seed1_dir):
    pipe = Pipeline(seed1_dir, device="cpu")
    pipe.watermark = False  # compare the audio itself
    pipe.synthesizer.hparams = replace(pipe.synthesizer.hparams, max_decoder_frames=160)
    return pipe


def _same_up_to_level(chunks: list[AudioChunk], wav: np.ndarray) -> None:
    """Each piece is `clone`'s audio at that place, scaled (the stream scales by the peak so far)."""
    for chunk in chunks:
        a = chunk.audio.astype(np.float64)
        b = wav[chunk.start:chunk.start + len(a)].astype(np.float64)
        if not np.any(a):
            assert not np.any(b)
            continue
        np.testing.assert_allclose(a * (a @ b) / (a @ a), b, atol=1e-5)


@pytest.mark.parametrize("text, mode", [("Hello world, this is a test.", "fast"),
                                        ("Hello world. This is a test. Bye now.", "fp16"),
                                        ("Hello world. This is a test. Bye now.", "int8")])
def test_stream_is_clone_before_level_and_watermark(pipe, text, mode):
    chunks = list(stream_clone(pipe, DATA / "ref.wav", text, seed=5, mode=mode))
    result = pipe.clone(DATA / "ref.wav", text, seed=5, rolling=True, mode=mode)
    assert sum(len(c.audio) for c in chunks) == len(result.wav)
    _same_up_to_level(chunks, result.wav)
    # the default clone runs lockstep folds: same length and sentences, other samples
    assert len(pipe.clone(DATA / "ref.wav", text, seed=5, mode=mode).wav) == len(result.wav)
    assert [c.at for c in chunks] == sorted(c.at for c in chunks)
    # the first piece needed only the first few decoder steps of the first sentence (80 in all);
    # int8's (and so fast's) first piece is longer than fp16's (0.25 s: see streaming.ROLLING_FIRST_SAMPLES)
    assert 0 < chunks[0].decoder_steps <= {"fast": 56, "int8": 56, "fp16": 40}[mode]
    assert chunks[-1].decoder_steps >= chunks[0].decoder_steps


def test_pieces_are_timed_from_the_call_and_a_stream_can_stop_early(pipe, monkeypatch):
    """`at` counts from the `stream_clone` call, so embedding the voice counts too; `close`
    stops a stream that is no longer listened to."""
    plan = pipe.plan

    def slow_plan(*args, **kwargs):
        time.sleep(0.3)
        return plan(*args, **kwargs)
    monkeypatch.setattr(pipe, "plan", slow_plan)
    stream = stream_clone(pipe, DATA / "ref.wav", "Hello world. This is a test.", seed=5)
    assert next(stream).at >= 0.3
    stream.close()
    assert next(stream, None) is None
    with pytest.raises(RuntimeError, match="closed early"):
        stream.result()  # what was played is not the clone


def test_a_finished_stream_gives_the_clone_it_played(pipe):
    """`CloneStream.result`: the pieces joined (lead, sentences, pauses), as a `CloneResult`."""
    stream = stream_clone(pipe, DATA / "ref.wav", "[pause 0.25] Hello world. [pause 0.5] Bye now.", seed=5)
    first = next(stream)
    with pytest.raises(RuntimeError, match="not run out"):
        stream.result()
    chunks = [first, *stream]
    result = stream.result()
    np.testing.assert_array_equal(result.wav, np.concatenate([c.audio for c in chunks]))
    assert result.wav.dtype == np.float32 and result.sample_rate == 16000
    assert not np.any(result.wav[:4000]) and chunks[0].sentence == 0  # the lead: 0.25 s of silence
    assert result.sentences == ["Hello world.", "Bye now."] and len(result.mels) == 2
    assert result.vocoder == "wavernn" and result.embedding.shape == (256,)
    assert result.seconds["streaming"] >= chunks[-1].at
    relayed = stream_clone(pipe, DATA / "ref.wav", "[pause 0.25] Hello world. [pause 0.5] Bye now.", seed=5,
                           keep_audio=False)  # a server relaying pieces holds none of them
    for chunk, again in zip(chunks, relayed, strict=True):
        np.testing.assert_array_equal(chunk.audio, again.audio)
    assert relayed._played == []
    with pytest.raises(RuntimeError, match="keep_audio=False"):
        relayed.result()


def test_playback_gaps_from_the_timestamps():
    def chunk(at, seconds):
        return AudioChunk(np.zeros(int(16000 * seconds), np.float32), 16000, 0, 0, at)
    assert playback_gaps([chunk(0.3, 0.5), chunk(0.5, 0.5), chunk(1.2, 0.5)]) == []
    gaps = playback_gaps([chunk(0.3, 0.1), chunk(0.6, 0.5), chunk(1.0, 0.5)])
    assert gaps == pytest.approx([0.2])  # the player waits 0.2 s for the second piece, then keeps up
