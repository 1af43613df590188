"""Voices from several recordings, the reference clean-up, exports and history, through the studio."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from deepfake_audio_core.errors import AudioError, RequestError
from deepfake_audio.studio.library import MAX_CLIPS, VoiceError, mean_embedding
from deepfake_audio.studio.voices import saved_voice_pitch
from test_studio_api import models_folder, speechlike_wav


@pytest.fixture(scope="module")
def studio(quick_dir, tmp_path_factory):
    from deepfake_audio.studio import Studio
    models = models_folder(tmp_path_factory.mktemp("voices-models"), quick_dir)
    return Studio(models, tmp_path_factory.mktemp("voices-data"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("voices-audio")
    same = [speechlike_wav(folder / f"take{k}.wav", seconds=3.0 + k, f0=120.0 + 4 * k) for k in range(3)]
    odd = speechlike_wav(folder / "odd.wav", seconds=3.0, f0=260.0)
    silent = folder / "silent.wav"
    sf.write(str(silent), np.zeros(32000), 16000, subtype="PCM_16")
    wav, rate = sf.read(str(same[0]), dtype="float32")
    noisy = folder / "noisy.wav"
    sf.write(str(noisy), wav + 0.05 * np.random.default_rng(0).standard_normal(len(wav)), rate, subtype="PCM_16")
    return {"same": same, "odd": odd, "silent": silent, "noisy": noisy}


def test_a_voice_from_several_recordings(studio, clips):
    name = studio.save_voice("Takes", clips["same"][0], consent=True, more_clips=clips["same"][1:])
    voice = studio.voices.get(name)
    assert voice.clip_embeddings.shape == (3, 256)
    assert np.allclose(voice.embedding, mean_embedding(voice.clip_embeddings), atol=1e-6)
    assert np.isclose(np.linalg.norm(voice.embedding), 1.0, atol=1e-5)
    studio.add_clip("Takes", clips["odd"], consent=True)
    rows = studio.voice_clips("Takes")
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[3][1] < min(r[1] for r in rows[:3])  # the odd recording stands out
    with pytest.raises(AudioError, match="Recording 2 of 2: silent.wav is silent"):
        studio.save_voice("Broken", clips["same"][0], consent=True, more_clips=[clips["silent"]])
    with pytest.raises(RequestError, match="permission"):
        studio.add_clip("Takes", clips["odd"])
    for _ in range(MAX_CLIPS - 4):
        studio.add_clip("Takes", clips["same"][1], consent=True)
    with pytest.raises(VoiceError, match="already made from 10 recordings"):
        studio.add_clip("Takes", clips["same"][1], consent=True)
    with pytest.raises(VoiceError, match="at most 10 recordings"):
        studio.save_voice("Many", clips["same"][0], consent=True, more_clips=clips["same"] * 4)


def test_clean_up_reports_the_similarity_with_and_without(studio, clips):
    out = studio.clone(clips["noisy"], None, "Hello there.", 1, "griffinlim", consent=True, clean=True)
    assert "With the clean-up:" in out.reading and "without it:" in out.reading
    plain = studio.clone(clips["noisy"], None, "Hello there.", 1, "griffinlim", consent=True)
    assert "clean-up" not in plain.reading


def test_export_formats_loudness_and_history(studio, clips):
    import pyloudnorm
    text = "One. Two. Three. Four. Five. Six. Seven."
    out = studio.clone(clips["same"][0], None, text, 4, "griffinlim", consent=True, file_format="mp3",
                       loudness="-23")
    assert out.wav_path.suffix == ".mp3" and "MP3 at -23 LUFS" in out.status
    wav, rate = sf.read(str(out.wav_path))
    assert pyloudnorm.Meter(rate).integrated_loudness(wav) == pytest.approx(-23, abs=1.0)
    for bad_format, bad_loudness, message in (("aac", "", "Unknown file format 'aac'"),
                                              ("wav", "-3", "from -40.0 to -9.0 LUFS"),
                                              ("wav", "loud", "number of LUFS")):
        with pytest.raises(RequestError, match=message):
            studio.clone(clips["same"][0], None, "Hi.", 1, "griffinlim", consent=True, file_format=bad_format,
                         loudness=bad_loudness)
    history = studio.recent()
    assert history[0].file.suffix == ".mp3" and history[0].text == text and history[0].seed == 4
    assert history[0].file.read_bytes() == out.wav_path.read_bytes()  # the file as it was downloaded


def test_the_studio_mode_reaches_every_plan_of_a_saved_voice(studio, clips, tmp_path):
    """The speech API (/v1) plans saved voices through the clone service: in the studio's own mode."""
    from deepfake_audio.studio import Studio
    name = studio.save_voice("Moded", clips["same"][0], consent=True)
    precise = Studio(pipeline=studio.pipeline, data_dir=tmp_path, mode="fp16")
    saved = studio.voices.get(name)
    assert precise.clones.plan_saved_voice(saved, "Hello there.").mode == "fp16"
    assert studio.clones.plan_saved_voice(saved, "Hello there.").mode == "fast"


@pytest.mark.skipif(not (shutil.which("flite") and shutil.which("sox")), reason="flite and sox make the speech")
def test_saving_an_interview_clip_says_it_kept_the_voice_heard_most(studio, tmp_path):
    """The studio's Save and Add tell the user when a recording held a second voice, and the saved
    voice (its embedding, its preview and so its pitch) is that of the voice heard most."""
    from deepfake_audio.studio.ui.handlers import Handlers
    from test_speaker_turns import QUESTIONS, SENTENCES, _say
    gap = np.zeros(8000, np.float32)
    his = [_say(tmp_path, "rms", s) for s in SENTENCES]
    hers = [_say(tmp_path, "slt", q) for q in QUESTIONS]
    interview, alone = tmp_path / "interview.wav", tmp_path / "alone.wav"
    sf.write(str(interview), np.concatenate([x for w in [his[0], hers[0], his[1], his[2], hers[1], his[3]]
                                             for x in (w, gap)]), 16000)
    sf.write(str(alone), np.concatenate([x for w in his for x in (w, gap)]), 16000)
    handlers = Handlers(studio)
    said = handlers.save_voice("Interviewee", str(interview), consent=True)[1]
    assert said.startswith("Saved **Interviewee** from 1 recording.") and "two voices" in said
    assert handlers.save_voice("Alone", str(alone), consent=True)[1] == "Saved **Alone** from 1 recording."
    assert studio.recording_notes("Alone") == []
    interviewee, his_alone = studio.voices.get("Interviewee"), studio.voices.get("Alone")
    assert float(interviewee.embedding @ his_alone.embedding) > 0.95
    assert saved_voice_pitch(interviewee.preview) == pytest.approx(saved_voice_pitch(his_alone.preview), rel=0.05)
    out = studio.clone(str(interview), None, "Hello there.", 1, "griffinlim", consent=True)
    assert "two voices" in out.status  # a clone from the recording says it too
    said = handlers.add_clip("Alone", str(interview), consent=True)[0]
    assert said.startswith("Added a recording to **Alone** (2 now).") and "Recording 2:" in said
