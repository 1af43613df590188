"""The starter-model corpus builder, on a handful of sentences and voices."""
import json

import soundfile as sf

from deepfake_audio.training.corpus import HELD_OUT, VOICES, build_corpus, load_sentences


def test_sentences_are_clean_and_bounded():
    sentences = load_sentences()
    assert len(sentences) > 1000
    for s in sentences[:500]:
        assert 4 <= len(s.split()) <= 16 and s[-1] in ".!?" and s.isascii()


def test_voice_registry_is_free_and_holds_out_two_voices():
    assert len(set(HELD_OUT)) >= 2 and set(HELD_OUT) <= {v.speaker for v in VOICES}
    assert all(v.licence for v in VOICES)
    assert not any("mbrola" in v.name.lower() for v in VOICES)


def test_tiny_build_layout_manifest_and_resume(tmp_path):
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "espeak_us_m3", "festival_kal"))
    manifest = build_corpus(tmp_path, n_sentences=3, augment=1, jobs=2, voices=voices,
                            held_out=("festival_kal",), eval_sentences=2, progress=False)
    assert set(manifest["speakers"]) == {"flite_slt", "flite_slt_aug1", "espeak_us_m3", "espeak_us_m3_aug1",
                                         "festival_kal"}
    assert not (tmp_path / "train" / "festival_kal").exists()
    eval_wavs = sorted((tmp_path / "eval" / "festival_kal").glob("*.wav"))
    assert len(eval_wavs) == 2
    train_texts = {p.read_text().strip() for p in (tmp_path / "train").rglob("*.txt")}
    assert not train_texts & set(manifest["eval_sentences"])
    for wav in (tmp_path / "train").rglob("*.wav"):
        info = sf.info(wav)
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.5
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["held_out_voices"] == ["festival_kal"] and on_disk["hours"] > 0
    assert all(v["licence"] for v in on_disk["voices"])
    again = build_corpus(tmp_path, n_sentences=3, augment=1, jobs=2, voices=voices,
                         held_out=("festival_kal",), eval_sentences=2, progress=False)
    assert again["made_this_run"] == 0
