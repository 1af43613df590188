"""Speaker encoder: parity with the reference vectors and clear errors on bad audio."""
import numpy as np
import pytest
import soundfile as sf

from conftest import DATA, vector
from deepfake_audio_core.errors import AudioError
from encoder.audio import preprocess_wav
from encoder.inference import Encoder, compute_partial_slices, prepare_reference


@pytest.fixture(scope="module")
def encoder(seed1_dir):
    return Encoder(seed1_dir / "encoder.pt")


def test_preprocess_matches_reference_exactly():
    wav = preprocess_wav(DATA / "ref.wav")
    expected = vector("ref_preprocessed.npy")
    assert wav.dtype == np.float32 and wav.shape == expected.shape
    assert np.array_equal(wav, expected)


def test_partial_slices_closed_form():
    for n in [0, 1, 19199, 19200, 31999, 32000, 44799, 44800, 47040, 160000, 399997]:
        wav_slices, mel_slices = compute_partial_slices(n)
        expected = 1 if n < 19200 else max(1, (n - 19200) // 12800 + 1)
        assert len(wav_slices) == expected, n
        assert [s.start for s in wav_slices] == [12800 * k for k in range(expected)]
        assert [s.start for s in mel_slices] == [80 * k for k in range(expected)]


def test_embedding_and_partials_match_reference(encoder):
    embed, partials, wav_slices = encoder.embed_utterance(vector("ref_preprocessed.npy"), return_partials=True)
    assert [(s.start, s.stop) for s in wav_slices] == [(0, 25600), (12800, 38400), (25600, 51200)]
    np.testing.assert_allclose(partials, vector("embed_partials.npy"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(embed, vector("embed.npy"), atol=1e-5, rtol=0)
    assert embed.dtype == np.float32
    assert float(np.dot(embed, vector("embed.npy"))) > 0.999999


def test_official_encoder_loads_from_resemblyzer_wheel():
    enc = Encoder()
    assert enc.step == 1564501
    wav = prepare_reference(DATA / "ref.wav")
    embed = enc.embed_utterance(wav)
    assert embed.shape == (256,) and abs(np.linalg.norm(embed) - 1) < 1e-5


def test_stereo_and_other_rates_and_formats(tmp_path):
    mono, sr = sf.read(DATA / "ref.wav", dtype="float32")
    stereo = np.stack([mono, mono], axis=1)
    for name, subtype in [("a.flac", "PCM_16"), ("a.ogg", "VORBIS"), ("a.mp3", "MPEG_LAYER_III")]:
        sf.write(tmp_path / name, stereo, sr, subtype=subtype)
        wav = prepare_reference(tmp_path / name)
        assert len(wav) > 16000
    import librosa
    sf.write(tmp_path / "b.wav", librosa.resample(mono, orig_sr=sr, target_sr=44100), 44100)
    assert abs(len(prepare_reference(tmp_path / "b.wav")) - 47040) < 2000


@pytest.mark.parametrize("case, message", [
    ("silent", "silent"),
    ("short", "only"),
    ("corrupt", "corrupt"),
    ("text_as_wav", "corrupt"),
    ("unsupported", "Unsupported audio format"),
    ("missing", "not found"),
    ("empty", "no audio"),
])
def test_bad_reference_audio_gets_clear_error(tmp_path, case, message):
    path = tmp_path / "voice.wav"
    if case == "silent":
        sf.write(path, np.zeros(48000, np.float32), 16000)
    elif case == "short":
        wav, sr = sf.read(DATA / "ref.wav", dtype="float32")
        sf.write(path, wav[4000:16000], sr)
    elif case == "corrupt":
        path.write_bytes((DATA / "ref.wav").read_bytes()[:30] + b"\x00garbage" * 10)
    elif case == "text_as_wav":
        path.write_text("this is not audio at all\n" * 50)
    elif case == "unsupported":
        path = tmp_path / "voice.m4a"
        path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 100)
    elif case == "empty":
        sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=message):
        prepare_reference(path)
