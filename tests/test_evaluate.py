"""Evaluation command: WER arithmetic and a run over a tiny corpus."""
import pytest

from deepfake_audio.training.corpus import VOICES, build_corpus
from deepfake_audio.training.evaluate import Recogniser, evaluate, word_error_rate, word_errors


def test_word_errors():
    assert word_errors("a b c".split(), "a b c".split()) == 0
    assert word_errors("a b c".split(), "a x c d".split()) == 2
    assert word_errors([], ["a"]) == 1
    assert word_error_rate(["It costs $5."], ["it costs five dollars"]) == 0.0


def test_recogniser_understands_a_clear_voice(tmp_path):
    import subprocess
    import soundfile as sf
    subprocess.run(["flite", "-voice", "slt", "-t", "my idea of roughing it is when room service is late",
                    "-o", str(tmp_path / "a.wav")], check=True)
    wav, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    assert sr == 16000
    assert word_error_rate(["My idea of roughing it is when room service is late."], [Recogniser()(wav)]) < 0.4


def test_evaluate_runs_on_a_tiny_corpus(tmp_path, quick_dir):
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "flite_awb", "espeak_us_m3"))
    build_corpus(tmp_path / "corpus", n_sentences=3, augment=0, voices=voices,
                 held_out=("flite_awb", "espeak_us_m3"), eval_sentences=2, progress=False)
    report = evaluate(tmp_path / "corpus", quick_dir, vocoder="griffinlim", limit=2, transforms=False, quality=False)
    assert [v.voice for v in report.voices] == ["flite_awb", "espeak_us_m3"]
    assert report.voices[0].floor_wer < 0.6  # the recogniser understands flite's natural-sounding voice
    # The summary is the sentence-weighted mean of the voices', each a count over its 2 clones.
    assert all(v.sentences == 2 and v.identified * 2 == round(v.identified * 2) for v in report.voices)
    assert report.identified == pytest.approx(sum(v.identified for v in report.voices) / 2)
    assert report.similarity == pytest.approx(sum(v.similarity for v in report.voices) / 2)
    assert report.similarity > 0  # ReLU embeddings: a clone is never orthogonal to its reference
    assert report.wer > report.floor_wer  # random weights do not speak


def test_evaluate_judges_pitch_quality_and_hard_candidates(tmp_path, quick_dir):
    """The measures no training loss sees: the held-out voices lower and higher, identification among
    pitch twins and other voices, pyin's F0 against the reference's, DNSMOS; another vocoder beside."""
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "flite_awb"))
    build_corpus(tmp_path / "corpus", n_sentences=3, augment=0, voices=voices, held_out=("flite_awb",),
                 eval_sentences=1, progress=False)
    report = evaluate(tmp_path / "corpus", quick_dir, vocoder="griffinlim", limit=1, vocoder_floor=False,
                      compare=("wavernn",))
    assert [v.voice for v in report.voices] == ["flite_awb", "flite_awb low", "flite_awb high"]
    low, plain, high = (report.voices[k].reference_f0 for k in (1, 0, 2))
    assert low < plain < high and 75 < low and high < 330  # the references span low to high voices
    # the voices themselves, their 3-semitone twins, and flite_slt as recorded and child-like
    assert report.candidates == 3 + 6 + 2
    for v in report.voices:
        assert 0 <= v.identified_hard <= v.identified <= 1 and 1 <= v.dnsmos <= 5 and 1 <= v.floor_dnsmos <= 5
        assert v.voiced_fraction is not None and v.f0_within_15 in (0.0, 1.0)
    assert set(report.others) == {"wavernn"} and report.others["wavernn"]["wer"] is not None


def test_the_stages_say_where_a_voice_is_lost(tmp_path, capsys):
    """`evaluate --stages` scores the recordings, the vocoder on their own mels, the synthesizer
    taught them and the clones, with the shipped starter models (a pitch-aware FastSpeech)."""
    import json
    from deepfake_audio.training.evaluate import STAGES, main
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "flite_rms"))
    build_corpus(tmp_path / "corpus", n_sentences=3, augment=0, voices=voices, held_out=("flite_slt", "flite_rms"),
                 eval_sentences=1, progress=False)
    (tmp_path / "models").mkdir()  # no official weights: the starter models stand in
    assert main(["--corpus", str(tmp_path / "corpus"), "--models", str(tmp_path / "models"), "--vocoder", "starter",
                 "--limit", "1", "--no-transforms", "--fast", "--stages", "--out", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["stages"]) == list(STAGES)
    for voice in report["voices"]:
        stages = voice["stages"]
        assert stages["recording"]["identified"] == 1.0  # a woman and a man: the recordings are told apart
        assert all(0 <= row["identified"] <= 1 and 0 < row["similarity"] <= 1 for row in stages.values())
        # the clone stage is the report's own clones
        assert stages["clone"]["similarity"] == pytest.approx(voice["similarity"], abs=1e-6)
        assert stages["clone"]["identified"] == voice["identified"]
        # the recordings, and the vocoder rebuilding them, keep more of the voice than a clone from text
        assert min(stages["recording"]["similarity"], stages["copy_synthesis"]["similarity"]) > \
            stages["clone"]["similarity"], stages
    assert "teacher forced:" in capsys.readouterr().out


def test_a_limit_below_one_is_a_clear_error(tmp_path, capsys):
    from deepfake_audio.training.evaluate import main
    assert main(["--corpus", str(tmp_path), "--limit", "0"]) == 2
    assert "--limit is the number of sentences" in capsys.readouterr().err


def test_the_real_voices_bench_judges_clones_of_two_voices(tmp_path, capsys):
    """`bench/real_voices.py` (issue 24's measures on recordings of real people that Debian packages
    ship) runs on stand-ins for those recordings: a clone per reference and text, judged among the
    voices, their 3-semitone twins and the corpus's held-out voices."""
    import importlib.util
    import json
    import subprocess
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("real_voices", Path(__file__).parents[1] / "bench" / "real_voices.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    voices = tuple(v for v in VOICES if v.speaker in ("flite_slt", "flite_awb"))
    build_corpus(tmp_path / "corpus", n_sentences=3, augment=0, voices=voices, held_out=("flite_awb",),
                 eval_sentences=1, progress=False)
    man, woman = tmp_path / "nsh", tmp_path / "alsa"
    man.mkdir()
    woman.mkdir()
    words = ["one two three four", "the cat sat on the mat", "a bright morning in may", "five six seven",
             "water runs down the hill", "we sing a quiet song", "the red door opened", "eight nine ten",
             "bread and butter please", "a long road ahead"]
    for k, text in enumerate(words):
        subprocess.run(["espeak-ng", "-v", "en-us+m3", "-w", str(man / f"ru_{k:04d}.wav"), text], check=True)
    for k, text in enumerate(["front left", "front right", "rear left", "rear right", "front center",
                              "rear center", "side left", "side right", "noise"]):
        name = "Noise" if text == "noise" else text.title().replace(" ", "_")
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(woman / f"{name}.wav")], check=True)
    out = tmp_path / "real.json"
    assert bench.main(["--corpus", str(tmp_path / "corpus"), "--texts", "1", "--nsh", str(man), "--alsa", str(woman),
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["candidates"] == ["nsh", "nsh -3 st", "nsh +3 st", "alsa", "alsa -3 st", "alsa +3 st", "flite_awb"]
    assert set(report["voices"]) == {"nsh", "alsa"}
    for name, clones in (("nsh", 2), ("alsa", 1)):  # two references of nsh, one of alsa; one text each
        summary = report["voices"][name]["summary"]
        assert summary["clones"] == clones == sum(summary["taken_for"].values())
        assert 0 <= summary["identified_hard"] <= 1 and 1 <= summary["dnsmos"] <= 5 and 0 <= summary["voiced"] <= 1
    assert "| nsh | 2 |" in capsys.readouterr().out
    # a missing package is a note, not a traceback
    assert bench.main(["--corpus", str(tmp_path / "corpus"), "--nsh", str(tmp_path / "none"),
                       "--alsa", str(tmp_path / "none")]) == 1
    assert "apt-get install festvox-ru" in capsys.readouterr().out
    assert bench.main(["--corpus", str(tmp_path / "none")]) == 2  # no corpus: a sentence, not a traceback
    assert "manifest.json not found" in capsys.readouterr().out
