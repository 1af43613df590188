"""Tuned voices: `sv2tts-finetune --tuned-voice` on the starter and on a Tacotron, the small file it
writes, and the voice speaking wherever a voice is asked for (Python, CLI, scripts, batches)."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_audio.batch import BatchItem, run_batch
from deepfake_audio.download import STARTER_MODELS_DIR
from deepfake_audio.pipeline import Pipeline
from deepfake_audio.training import finetune
from deepfake_audio.training import voice_tuning
from deepfake_audio.training.voice_tuning import read_progress
from deepfake_audio_core.errors import WeightsError
from deepfake_audio_core.tuned import MAX_BYTES, load_tuned_voice
from synthesizer.tuning import TUNABLE_PREFIXES, is_tunable
from vocoder.tuning import tunable_prefixes
from training_fixtures import one_thread, speech_corpus, trained_synthesizer  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = ["--workers", "0", "--quiet", "--batch-size", "2"]
TEXT = "The canoe slid over the calm water."


@pytest.fixture(scope="module")
def starter_voice(tmp_path_factory):
    """A voice tuned on the shipped starter for 2 steps, then resumed to 3 (work folder, file)."""
    voice = speech_corpus(tmp_path_factory) / "flite_slt"
    root = tmp_path_factory.mktemp("tuned")
    out = root / "slt.tuned.pt"
    args = [str(voice), "--out", str(root / "work"), "--tuned-voice", str(out), "--minutes", "3", *QUICK]
    finetune.main(args + ["--steps", "2"])
    first = read_progress(root / "work")
    finetune.main(args + ["--steps", "3"])  # the same command again continues the run
    return root / "work", out, first


def test_a_starter_voice_is_a_small_file_of_the_tuned_share(starter_voice):
    work, out, first = starter_voice
    assert out.stat().st_size <= MAX_BYTES
    voice = load_tuned_voice(out)
    assert voice.name == "slt" and voice.architecture == "fastspeech"
    progress = read_progress(work)
    # the file is the piece that validated best: its step, and the best validation score of the pieces
    pieces = [s for s in progress["samples"] if s["step"] > 0 and not s.get("vocoder")]
    assert voice.training["steps"] == progress["kept"]["step"] and voice.training["takes"] >= 3
    assert progress["kept"]["validation"] == max(s["validation"] for s in pieces)
    assert progress["validation_takes"] == 0  # a few takes: all of them train and validate
    assert progress["timbre_only"] is False and voice.training["timbre_only"] is False  # English takes
    assert set(voice.weights) and all(is_tunable(k, "fastspeech") for k in voice.weights)
    assert {k.split(".")[0] for k in voice.weights} >= {"decoder", "mel_proj", "speaker_proj"}
    assert all(v.dtype == torch.float16 for v in voice.weights.values())
    assert abs(float(np.linalg.norm(voice.embedding)) - 1) < 1e-4
    assert voice.pitch_hz is not None and 120 < voice.pitch_hz < 300  # slt, a female voice

    assert first["state"] == "done" and first["step"] == 2
    assert progress["state"] == "done" and progress["step"] == 3 and progress["spent_s"] > first["spent_s"]
    assert progress["tuned_voice"] == str(out) and progress["losses"]
    samples = [s for s in progress["samples"] if not s.get("vocoder")]
    # a sample before training (the base model speaking the takes' embedding), then one after each piece
    assert [s["step"] for s in samples] == [0, 2, 3] and all(__import__("os").path.isfile(s["path"]) for s in samples)
    # no voice's own vocoder: with every take training, none is held out to judge it on
    assert progress["vocoder"]["state"] == "skipped" and voice.vocoder is None
    assert progress["vocoder"]["reason"].startswith("too few takes to judge its own vocoder: 4 (with 20 or more")
    assert finetune._vocoder_outcome(progress["vocoder"]).startswith("Its own vocoder: skipped (too few takes")
    # each sample is scored against the takes (at their level): the starter knows slt, so near it already
    assert all(0.6 < s["similarity"] <= 1.0 for s in samples), samples
    assert all(0.5 < s["validation"] <= 1.0 for s in samples), samples


def test_the_job_keeps_the_piece_that_validates_best(tmp_path, tmp_path_factory, monkeypatch):
    """A later piece that validates worse (a voice drifting) does not replace the kept one; the
    file at the end is the kept piece, and a resumed job goes on from the last piece's run."""
    from deepfake_audio.training import voice_tuning
    voice = speech_corpus(tmp_path_factory) / "flite_slt"
    out, work = tmp_path / "slt.tuned.pt", tmp_path / "work"
    scripted = {0: 0.70, 1: 0.90, 2: 0.80, 3: 0.95}  # validation score by step
    speak = voice_tuning._SampleSpeaker.speak

    def scored(self, tuned, step):
        path, similarity, _ = speak(self, tuned, step)
        return path, similarity, scripted[step]
    monkeypatch.setattr(voice_tuning._SampleSpeaker, "speak", scored)
    args = [str(voice), "--out", str(work), "--tuned-voice", str(out), "--minutes", "3", "--vocoder-share", "0", *QUICK]
    for steps in (1, 2):
        finetune.main(args + ["--steps", str(steps)])
    assert read_progress(work)["kept"] == {"step": 1, "validation": 0.90}
    assert load_tuned_voice(out).training["steps"] == 1  # step 2 validated worse
    finetune.main(args + ["--steps", "3"])  # resumed: training went on from step 2, and step 3 is better
    progress = read_progress(work)
    assert progress["step"] == 3 and progress["kept"] == {"step": 3, "validation": 0.95}
    assert load_tuned_voice(out).training["steps"] == 3
    assert "vocoder" not in progress and load_tuned_voice(out).vocoder is None  # --vocoder-share 0: none tried


def test_a_voice_keeps_its_own_vocoder_only_where_it_validates_better(tmp_path, tmp_path_factory, monkeypatch):
    """After the synthesizer, the job tunes the starter vocoder on the takes; the voice file carries it
    when the same validation clones score higher with it, and then it speaks that voice (only)."""
    from deepfake_audio.training import voice_tuning
    voice = speech_corpus(tmp_path_factory) / "flite_slt"
    out, work = tmp_path / "slt.tuned.pt", tmp_path / "work"
    speak = voice_tuning._SampleSpeaker.speak
    gain = {"value": 0.02, "further": 0.02}

    def scored(self, tuned, step):  # the real clones, with a scripted score: the vocoder helps by `gain`
        path, similarity, _ = speak(self, tuned, step)
        return path, similarity, 0.8 + (gain["value"] if getattr(tuned, "vocoder", None) else 0.0)
    # takes held out to validate on (2 of these 4; from 20 takes on in use): the vocoder is judged on them
    monkeypatch.setattr(voice_tuning, "VALIDATION_SPLIT_FROM", 4)
    validate = voice_tuning._SampleSpeaker.validation_scores
    judged = []

    def validated(self, tuned, texts, first_seed):  # the vocoder's further clones, real, scored the same way
        own = bool(getattr(tuned, "vocoder", None))
        judged.append((own, len(validate(self, tuned, texts, first_seed)), first_seed))
        return [0.8 + (gain["further"] if own else 0.0)] * len(texts)
    monkeypatch.setattr(voice_tuning._SampleSpeaker, "speak", scored)
    monkeypatch.setattr(voice_tuning._SampleSpeaker, "validation_scores", validated)
    finetune.main([str(voice), "--out", str(work), "--tuned-voice", str(out), "--minutes", "3", "--steps", "2",
                   *QUICK])
    progress = read_progress(work)
    assert progress["state"] == "done" and progress["vocoder"]["state"] == "kept"
    assert progress["vocoder"]["step"] == 2 and abs(progress["vocoder"]["validation"] - 0.82) < 1e-9
    # judged on six clones each way: the validation's three and three more sentences after their seeds
    texts = len(voice_tuning.VOCODER_VALIDATION_TEXTS)
    assert [j for j in judged if j[2] == 3] == [(False, texts, 3), (True, texts, 3)]  # (speak's own start at 1)
    assert progress["vocoder"]["clones"] == 6
    assert abs(progress["vocoder"]["without"] - 0.8) < 1e-9
    assert finetune._vocoder_outcome(progress["vocoder"]) == "Its own vocoder: kept (validation 0.82 with it, 0.8 without)."
    assert progress["samples"][-1]["vocoder"] is True and Path(progress["samples"][-1]["path"]).is_file()
    assert out.stat().st_size <= MAX_BYTES
    tuned = load_tuned_voice(out)
    assert tuned.vocoder is not None and tuned.vocoder["training"]["steps"] == 2
    assert all(v.dtype == torch.float16 for v in tuned.vocoder["weights"].values() if v.is_floating_point())

    pipe = Pipeline(synthesizer=STARTER_MODELS_DIR / "synthesizer.pt", device="cpu")
    own = pipe.clone(text=TEXT, tuned=tuned, seed=1, vocoder="starter")
    plain = load_tuned_voice(out)
    plain.vocoder = None
    shipped = pipe.clone(text=TEXT, tuned=plain, seed=1, vocoder="starter")
    assert np.array_equal(own.mels[0], shipped.mels[0])  # the same synthesizer drew both...
    assert not np.allclose(own.wav, shipped.wav)  # ...and the voice's own vocoder spoke it
    mel = own.mels[0]
    assert np.array_equal(pipe.vocode(mel, "starter", 1), pipe.vocode(mel, "starter", 1, tuned=plain))
    # in a script, a sentence of another voice goes through the shipped vocoder
    plan = pipe.plan(text=f"{TEXT}\n[voice: Plain] {TEXT}", tuned=tuned, seed=1, vocoder="starter",
                     voices={"Plain": plain})
    assert not np.array_equal(pipe.vocode_sentence(plan, 0, mel), pipe.vocode_sentence(plan, 1, mel))
    assert np.array_equal(pipe.vocode_sentence(plan, 1, mel),
                          pipe.vocode(mel, "starter", plan.sentence_seed(1), pitch_hz=plan.pitch_hz_of(1)))
    assert set(tuned.vocoder["weights"]) == {k for k in pipe.starter_vocoder.model.state_dict()
                                              if k.startswith(tunable_prefixes(6))}  # its share only
    # tuned on another starter vocoder: the loaded one speaks it, and the plan says so
    elsewhere = load_tuned_voice(out)
    elsewhere.vocoder["base"] = "0" * 32
    plan = pipe.plan(text=TEXT, tuned=elsewhere, seed=1, vocoder="starter")
    assert "has its own vocoder, which does not fit the loaded starter vocoder, so that one speaks it" in plan.note
    assert np.array_equal(pipe.run(plan).wav, shipped.wav)
    assert pipe.plan(text=TEXT, tuned=elsewhere, vocoder="griffinlim").note == ""  # no matter to another vocoder

    # resumed with more steps: the vocoder is judged again; better on the validation's three clones but
    # worse on the further three, it is not kept
    gain["further"] = -0.02
    finetune.main([str(voice), "--out", str(work), "--tuned-voice", str(out), "--minutes", "3", "--steps", "3",
                   *QUICK])
    assert read_progress(work)["vocoder"]["state"] == "not kept" and load_tuned_voice(out).vocoder is None
    assert finetune._vocoder_outcome(read_progress(work)["vocoder"]).startswith("Its own vocoder: not kept (validation")

    def broken(argv):  # a vocoder that cannot train (here: a scripted failure) leaves the voice as it is
        raise voice_tuning.TrainingError("no room left on the disk")
    monkeypatch.setattr("deepfake_audio.training.starter_vocoder_train.main", broken)
    finetune.main([str(voice), "--out", str(work), "--tuned-voice", str(out), "--minutes", "3", "--steps", "4",
                   *QUICK])
    progress = read_progress(work)
    assert progress["state"] == "done" and progress["step"] == 4
    assert progress["vocoder"] == {"state": "skipped", "reason": "no room left on the disk"}
    assert load_tuned_voice(out).vocoder is None


def test_the_validation_takes_are_held_out_of_training():
    from deepfake_audio.training.voice_tuning import VALIDATION_SPLIT_FROM, validation_split
    few = [{"id": f"take_{k:03d}"} for k in range(VALIDATION_SPLIT_FROM - 1)]
    training, validation = validation_split(few)
    assert training == validation == few
    many = [{"id": f"take_{k:03d}"} for k in range(60)][::-1]
    training, validation = validation_split(many)
    assert len(validation) == 6 and len(training) == 54
    assert not {r["id"] for r in training} & {r["id"] for r in validation}
    assert validation_split(many[::-1])[1] == validation  # the same takes whatever the order
    assert len(validation_split([{"id": str(k)} for k in range(500)])[1]) == 8


def test_the_tuned_voice_speaks_with_its_own_weights(starter_voice):
    _, out, _ = starter_voice
    voice = load_tuned_voice(out)
    pipe = Pipeline(synthesizer=STARTER_MODELS_DIR / "synthesizer.pt", device="cpu")
    tuned = pipe.clone(text=TEXT, tuned=voice, seed=1, vocoder="griffinlim")
    plain = pipe.clone(text=TEXT, embedding=voice.embedding, seed=1, vocoder="griffinlim")
    assert tuned.mels[0].shape[0] == 80 and np.all(np.isfinite(tuned.wav))
    assert not np.array_equal(tuned.mels[0], plain.mels[0])  # the tuned weights drew it
    again = pipe.clone(text=TEXT, tuned=voice, seed=1, vocoder="griffinlim")
    assert np.array_equal(tuned.mels[0], again.mels[0])
    # the loaded synthesizer itself is untouched by the tuned copy
    assert np.array_equal(plain.mels[0], pipe.clone(text=TEXT, embedding=voice.embedding, seed=1,
                                                    vocoder="griffinlim").mels[0])
    # a script: a sentence in the tuned voice and one in a plain embedding, each drawn by its own model
    script = pipe.clone(text=f"{TEXT}\n[voice: Plain] {TEXT}", tuned=voice, seed=1, vocoder="griffinlim",
                        voices={"Plain": voice.embedding})
    assert np.array_equal(script.mels[0], tuned.mels[0]) and np.array_equal(script.mels[1], plain.mels[0])


def test_a_voice_tuned_on_other_weights_is_refused_clearly(starter_voice, tmp_path):
    _, out, _ = starter_voice
    voice = load_tuned_voice(out)
    voice.base = "0" * 32
    pipe = Pipeline(synthesizer=STARTER_MODELS_DIR / "synthesizer.pt", device="cpu")
    with pytest.raises(WeightsError, match="made for another synthesizer"):
        pipe.plan(text=TEXT, tuned=voice)
    broken = tmp_path / "broken.tuned.pt"
    broken.write_bytes(out.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="not a usable tuned voice .truncated.*copy it again, or tune the voice"):
        load_tuned_voice(broken)
    broken.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"not a usable tuned voice \(empty\)"):
        load_tuned_voice(broken)
    other = tmp_path / "other.tuned.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(WeightsError, match="not a tuned voice"):
        load_tuned_voice(other)


def test_the_cli_and_batches_take_a_tuned_voice(starter_voice, tmp_path):
    _, out, _ = starter_voice
    script = tmp_path / "script.txt"
    script.write_text(f"{TEXT}\n[voice: B] And a second voice.\n", encoding="utf-8")
    wav = tmp_path / "out.wav"
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone", "--voice", str(out), "--text-file",
                           str(script), "--speaker", f"B={out}", "--out", str(wav), "--seed", "1",
                           "--vocoder", "griffinlim"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert wav.stat().st_size > 10_000
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{TEXT}\n\nA second paragraph.\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "deepfake_audio", "clone-batch", "--input", str(lines), "--voice",
                           str(out), "--out", str(tmp_path / "cli.zip"), "--vocoder", "griffinlim"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len([n for n in zipfile.ZipFile(tmp_path / "cli.zip").namelist() if n.endswith(".wav")]) == 2
    pipe = Pipeline(synthesizer=STARTER_MODELS_DIR / "synthesizer.pt", device="cpu")
    voice = load_tuned_voice(out)
    zipped = run_batch(pipe, [BatchItem(TEXT, None, "one", "row 1")], tmp_path / "batch.zip", embedding=voice,
                       vocoder="griffinlim", seed=1)
    assert "one.wav" in zipfile.ZipFile(zipped).namelist()


def test_finetune_refuses_budget_mistakes(tmp_path):
    from deepfake_audio.training import TrainingError
    (tmp_path / "a.wav").write_bytes(b"")  # a voice folder with a recording: the options are what is wrong
    with pytest.raises(TrainingError, match="--minutes"):
        finetune.main([str(tmp_path), "--out", str(tmp_path / "w"), "--tuned-voice", str(tmp_path / "v.tuned.pt"),
                       "--minutes", "0"])
    with pytest.raises(TrainingError, match="budget of --tuned-voice"):
        finetune.main([str(tmp_path), "--out", str(tmp_path / "w"), "--minutes", "5"])
    with pytest.raises(TrainingError, match="--takes-language is for --tuned-voice"):
        finetune.main([str(tmp_path), "--out", str(tmp_path / "w"), "--takes-language", "other"])
    for share in ("1", "-0.1"):
        with pytest.raises(TrainingError, match="--vocoder-share must be at least 0 and below 1"):
            finetune.main([str(tmp_path), "--out", str(tmp_path / "w"), "--tuned-voice", str(tmp_path / "v.tuned.pt"),
                           "--vocoder-share", share])
    with pytest.raises(TrainingError, match="--vocoder-share is for --tuned-voice"):
        finetune.main([str(tmp_path), "--out", str(tmp_path / "w"), "--vocoder-share", "0.2"])


def test_takes_in_another_language_tell_by_their_letters_or_words():
    from deepfake_audio.training.prompts import load_prompts
    from deepfake_audio.training.takes_language import other_language
    assert other_language(["Она завела прядь волос за ухо.", "И пошла через улицу."])
    assert other_language(["Η γάτα κάθεται.", "東京は大きい都市です。"])
    assert not other_language(["The canoe slid over the calm water.", "Crème brûlée, naïve café."])
    assert not other_language(["", "1234"])  # no letters: nothing says it is another language
    # In English letters, by their words: hardly any are English function words.
    assert other_language(["El viejo farero miraba la tormenta que llegaba del oeste.",
                           "Nadie esperaba que el tren llegara tan temprano un domingo.",
                           "Por favor, recuerda traer tu cuaderno a la reunión de mañana."])
    assert other_language(["Der alte Leuchtturmwärter sah den Sturm von Westen kommen.",
                           "Niemand hat erwartet, dass der Zug an einem Sonntag so früh ankommt.",
                           "Bitte denk daran, morgen früh dein Notizbuch mitzubringen."])
    assert other_language(["De oude vuurtorenwachter zag de storm vanuit het westen naderen.",
                           "Ik ben in de tuin en het is mooi weer vandaag.",
                           "Niemand had verwacht dat de trein op zondag zo vroeg zou komen."])
    assert not other_language(["Quantum chromodynamics describes gluons binding quarks.",
                               "Photosynthesis converts sunlight into chemical energy."])  # a few words: unsure
    prompts = load_prompts()
    assert not any(other_language(prompts[i:i + 5]) for i in range(0, len(prompts) - 4, 5))


def test_takes_in_another_language_train_only_the_voice_colour(tmp_path, tmp_path_factory):
    """Russian transcripts (found by their letters) train only the parts that colour the voice
    (`timbre_prefixes`): the rest of the decoder, which says the words, and the duration predictor
    keep the base's weights, so English clones keep their words."""
    import shutil
    from deepfake_audio_core.checkpoint import read_checkpoint
    from synthesizer.tuning import TIMBRE_PREFIXES
    timbre = TIMBRE_PREFIXES["fastspeech"] + ("decoder.3.",)  # and the starter's last decoder block (of 4)
    takes = tmp_path / "takes"
    shutil.copytree(speech_corpus(tmp_path_factory) / "flite_slt", takes)
    for k, txt in enumerate(sorted(takes.glob("*.txt"))):
        txt.write_text(["Она завела прядь волос за ухо.", "Со спокойным мужеством он ждал."][k % 2], encoding="utf-8")
    out = tmp_path / "ru.tuned.pt"
    finetune.main([str(takes), "--out", str(tmp_path / "work"), "--tuned-voice", str(out), "--minutes", "3",
                   "--steps", "2", *QUICK])
    voice = load_tuned_voice(out)
    assert read_progress(tmp_path / "work")["timbre_only"] is True and voice.training["timbre_only"] is True
    base = read_checkpoint(STARTER_MODELS_DIR / "synthesizer.pt")["model_state"]
    trained = {k for k, v in voice.weights.items() if not torch.equal(v, base[k].to(torch.float16))}
    assert trained and all(k.startswith(timbre) for k in trained), sorted(trained)[:5]
    assert any(k.startswith("decoder.3.") for k in trained)
    assert any(k.startswith("decoder.0.") for k in voice.weights)  # the file holds the same share, untrained


def test_a_tacotron_voice_tunes_its_share_only(tmp_path, tmp_path_factory, seed1_dir):
    encoder = seed1_dir / "encoder.pt"
    synth = trained_synthesizer(tmp_path_factory, encoder)
    voice = speech_corpus(tmp_path_factory) / "espeak_m3"
    out = tmp_path / "m3.tuned.pt"
    finetune.main([str(voice), "--out", str(tmp_path / "work"), "--tuned-voice", str(out), "--synthesizer",
                   str(synth), "--encoder", str(encoder), "--steps", "2", "--minutes", "3", *QUICK])
    tuned = load_tuned_voice(out)
    assert tuned.architecture == "tacotron" and tuned.training["steps"] == 2
    assert {k.split(".")[0] for k in tuned.weights} == {"decoder", "encoder_proj", "postnet", "post_proj"}
    assert all(k.startswith(TUNABLE_PREFIXES["tacotron"]) for k in tuned.weights)
    assert not any(".res_rnn" in k for k in tuned.weights)  # the big LSTMs stay frozen
    pipe = Pipeline(synthesizer=synth, encoder=encoder, device="cpu")
    result = pipe.clone(text="The canoe.", tuned=tuned, seed=2, vocoder="griffinlim")
    assert len(result.wav) > 0 and np.all(np.isfinite(result.wav))
    assert json.loads((tmp_path / "work" / "progress.json").read_text())["state"] == "done"


def test_a_resumed_tuning_on_another_base_is_refused(starter_voice, tmp_path, tmp_path_factory, seed1_dir):
    """The frozen weights of a resumed run are its first base's: another --synthesizer would get a voice
    that does not fit it, so the command says so instead."""
    from deepfake_audio.training import TrainingError
    import shutil
    work = shutil.copytree(starter_voice[0], tmp_path / "work")  # the fixture's run stays as it is
    encoder = seed1_dir / "encoder.pt"
    other = trained_synthesizer(tmp_path_factory, encoder)
    voice = speech_corpus(tmp_path_factory) / "flite_slt"
    with pytest.raises(TrainingError, match="started on another synthesizer"):
        finetune.main([str(voice), "--out", str(work), "--tuned-voice", str(tmp_path / "x.tuned.pt"),
                       "--synthesizer", str(other), "--encoder", str(encoder), "--steps", "4", *QUICK])


def test_a_script_spoken_only_by_another_voice_uses_that_voice(starter_voice):
    """Every sentence given to another saved voice: none is spoken by the request's own voice or weights."""
    _, out, _ = starter_voice
    voice = load_tuned_voice(out)
    pipe = Pipeline(synthesizer=STARTER_MODELS_DIR / "synthesizer.pt", device="cpu")
    other = np.roll(voice.embedding, 7)
    other /= np.linalg.norm(other)
    plan = pipe.plan(text=f"[voice: Bob] {TEXT}", tuned=voice, voices={"Bob": other})
    assert plan.tuned_of(0) is None and np.array_equal(plan.voice_of(0), other)
    plan = pipe.plan(text=f"[voice: Me] {TEXT}", embedding=other, voices={"Me": voice})
    assert plan.tuned_of(0) is voice


def test_the_likeness_bench_splits_a_real_mans_recordings(tmp_path, monkeypatch):
    """`bench/finetune_likeness.py --voices nsh` (README): festival's Russian recordings become takes
    from his first clips, 8 held-out recordings after them and a zero-shot reference after those,
    none shared; a missing package is a sentence."""
    import importlib.util
    import soundfile as sf
    spec = importlib.util.spec_from_file_location("finetune_likeness",
                                                  Path(__file__).parents[1] / "bench" / "finetune_likeness.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    nsh = tmp_path / "msu_ru_nsh_clunits"
    (nsh / "wav").mkdir(parents=True)
    (nsh / "etc").mkdir()
    lines = []
    for k in range(50):  # festival's layout: 22.05 kHz clips, transcripts with stress marks (+)
        seconds = 10.0 if k == bench.NSH_HELD_OUT + 8 else 1.0
        t = np.arange(int(22050 * seconds)) / 22050
        sf.write(nsh / "wav" / f"nsh_{k:04d}.wav", 0.3 * np.sin(2 * np.pi * (120 + k) * t), 22050)
        lines.append(f'( nsh_{k:04d} "Пр+ивет номер {k}" )')
    (nsh / "etc" / "txt.done.data").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = tmp_path / "corpus"
    (corpus / "train").mkdir(parents=True)
    (corpus / "eval" / "flite_rms").mkdir(parents=True)
    for k in range(40):
        (corpus / "eval" / "flite_rms" / f"{k:04d}.txt").write_text(f"English sentence {k}.\n")
    monkeypatch.setattr(bench, "NSH", nsh)

    clips = bench.nsh_clips()
    assert len(clips) == 50 and clips[3][1] == "Привет номер 3"
    takes = bench.nsh_takes(tmp_path / "takes", minutes=5 / 60)
    assert [t.name for t in takes] == [f"nsh_{k:04d}.wav" for k in range(5)]
    assert sf.info(takes[0]).samplerate == 16000 and takes[0].with_suffix(".txt").read_text() == "Привет номер 0\n"
    with pytest.raises(SystemExit, match="ask for fewer"):  # only 40 s come before the held-out clips
        bench.nsh_takes(tmp_path / "takes", minutes=1.0)

    folder = bench.nsh_corpus(corpus, tmp_path / "nsh_corpus")
    held = sorted((folder / "eval" / "nsh").glob("*.txt"))
    assert [p.read_text().strip() for p in held[:8]] == [f"Привет номер {k}" for k in range(40, 48)]
    assert held[8].read_text().strip() == "English sentence 8."  # then what the clones say
    reference = folder / "eval_ref" / "nsh" / "0000.wav"
    assert sf.info(reference).samplerate == 16000 and abs(sf.info(reference).duration - bench.REFERENCE_SECONDS) < 0.01

    monkeypatch.setattr(bench, "NSH", tmp_path / "none")
    with pytest.raises(SystemExit, match="apt-get install festvox-ru"):
        bench.nsh_clips()
